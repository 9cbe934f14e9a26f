/* data.c — loading samples, inputs and labels and checking them against the
 * model's blocks. Data files are [N, <block shape>], batch first, in any
 * format load_array recognises; they are converted to the model's real type
 * on load. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static void block_shape_str(char *buf, size_t cap, const struct mach_block *b, int with_n) {
  long s[MACH_MAX_RANK + 1];
  size_t n;
  for (int k = 0; k < b->rank; k++)
    s[k] = b->shape[k];
  if (!with_n) {
    mach_shape_str(buf, cap, b->rank, s);
    return;
  }
  n = (size_t)snprintf(buf, cap, "[N%s", b->rank ? ", " : "");
  mach_shape_str(buf + n, cap - n, b->rank, s);
  memmove(buf + n, buf + n + 1, strlen(buf + n + 1) + 1); /* drop the inner '[' */
}

/* [N, shape], or a shape that differs only by unit axes ([N, 1, 28, 28] and
 * [N, 28, 28] for 1@[28, 28]; [N] for a block of one scalar) or by
 * flattening ([N, 784]): all keep the C-order layout of the block. */
static int sample_shape_ok(const struct mach_array *a, const struct mach_block *b) {
  long have[MACH_NPY_MAX_RANK], want[MACH_MAX_RANK], nh = 0, nw = 0, size = 1;
  if (a->rank < 1)
    return 0;
  for (int k = 1; k < a->rank; k++) {
    size *= a->shape[k];
    if (a->shape[k] != 1)
      have[nh++] = a->shape[k];
  }
  if (size != b->size)
    return 0;
  if (a->rank == 2)
    return 1;
  for (int k = 0; k < b->rank; k++)
    if (b->shape[k] != 1)
      want[nw++] = b->shape[k];
  if (nh != nw)
    return 0;
  for (long k = 0; k < nh; k++)
    if (have[k] != want[k])
      return 0;
  return 1;
}

/* A data file once read: the array, and what it points into. */
struct loaded {
  struct mach_array a;
  unsigned char *buf;   /* the file's bytes (inflated when gzipped) */
  struct mach_npz z;    /* an .npz of one array (owns the bytes then) */
  char **names;         /* CSV header names, or NULL */
  long n_names;
  char label[600];      /* the file (and entry) for messages */
};

static void loaded_free(struct loaded *L) {
  mach_array_free(&L->a);
  mach_npz_close(&L->z);
  free(L->buf);
  free(L->names);
  L->buf = NULL;
  L->names = NULL;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* An .npz as data: its one array, or an error saying what it holds. */
static int load_npz(const struct mach_ctx *c, const char *name, size_t len, struct loaded *L) {
  unsigned char *buf = L->buf;
  L->buf = NULL;
  if (mach_npz_open_buf(c, name, buf, len, &L->z))
    return 1;
  if (L->z.n != 1) {
    mach_err(c, "%s: an .npz archive of %d arrays is not a data file; expected .npy, IDX or "
                "CSV data (or an .npz holding a single array)", name, L->z.n);
    return 1;
  }
  snprintf(L->label, sizeof L->label, "%s: entry '%s'", name, L->z.mem[0].name);
  return mach_npz_get(c, &L->z, L->z.mem[0].name, &L->a) ? 1 : 0;
}

/* Reads any data file: CSV (by its name), else .npy, .npz, IDX, each
 * possibly gzipped, told apart by their first bytes. */
static int load_array(const struct mach_ctx *c, const char *path, const struct mach_csv_opts *o,
                      struct loaded *L) {
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  static const struct mach_csv_opts plain = {0, 0};
  size_t len;
  char why[200];
  memset(L, 0, sizeof *L);
  snprintf(L->label, sizeof L->label, "%s", name);
  if (mach_read_file(c, path, &L->buf, &len))
    return 1;
  if (mach_is_gzip(L->buf, len)) {
    unsigned char *raw;
    if (mach_gunzip(c, name, L->buf, len, &raw, &len))
      return 1;
    free(L->buf);
    L->buf = raw;
  }
  if (mach_is_csv(path)) {
    unsigned char *nb = realloc(L->buf, len + 1); /* strtod needs a NUL at the end */
    if (!nb) {
      mach_err(c, "out of memory");
      return 1;
    }
    L->buf = nb;
    L->buf[len] = 0;
    return mach_csv_parse(c, name, (const char *)L->buf, len, o ? o : &plain, &L->a, &L->names,
                          &L->n_names);
  }
  if ((len >= 6 && memcmp(L->buf, "\x93NUMPY", 6) == 0) || ends_with(path, ".npy") ||
      ends_with(path, ".npy.gz")) {
    if (mach_npy_parse(L->buf, len, &L->a, why, sizeof why) == 0)
      return 0;
  } else if (mach_npz_is_zip(L->buf, len) || ends_with(path, ".npz")) {
    return load_npz(c, name, len, L);
  } else if (mach_idx_is(L->buf, len)) {
    if (mach_idx_parse(L->buf, len, &L->a, why, sizeof why) == 0)
      return 0;
  } else {
    snprintf(why, sizeof why, "not a data file: expected .npy, .npz, IDX (MNIST) or gzip data, "
                              "or CSV in a file named *.csv");
  }
  mach_err(c, "%s: %s", name, why);
  return 1;
}

/* Keeps the columns named by spec of a [N, K] (or [N]) array, as f8. */
static int select_columns(const struct mach_ctx *c, struct loaded *L, const char *spec) {
  long ncols, *idx, k, rows;
  double *out;
  if (L->a.rank != 1 && L->a.rank != 2) {
    char got[80];
    mach_shape_str(got, sizeof got, L->a.rank, L->a.shape);
    mach_err(c, "%s: has shape %s; columns can only be chosen from a table [N, K]", L->label,
             got);
    return 1;
  }
  rows = L->a.shape[0];
  ncols = L->a.rank == 2 ? L->a.shape[1] : 1;
  if (mach_csv_columns(c, L->label, spec, L->names, L->n_names, ncols, &idx, &k))
    return 1;
  out = mach_alloc(c, (size_t)(rows * k) + 1, sizeof *out);
  if (!out) {
    free(idx);
    return 1;
  }
  for (long i = 0; i < rows; i++)
    for (long j = 0; j < k; j++)
      out[i * k + j] = mach_array_get(&L->a, i * ncols + idx[j]);
  free(idx);
  mach_array_free(&L->a);
  L->a.dtype = MACH_DT_F8;
  strcpy(L->a.descr, "<f8");
  L->a.rank = 2;
  L->a.shape[1] = k;
  L->a.count = rows * k;
  L->a.owned = out;
  L->a.data = (const unsigned char *)out;
  return 0;
}

/* mach_load_samples_opt by reading the whole file: every format. */
static int load_whole(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                      const char *role, const struct mach_dataopts *o, const char *cols,
                      mach_real **x, long *n) {
  struct loaded L;
  char want[80], got[80];
  if (load_array(c, path, o ? &o->csv : NULL, &L) || (cols && select_columns(c, &L, cols)))
    goto bad;
  if (L.a.dtype == MACH_DT_UNKNOWN) {
    mach_err(c, "%s: expected integer or float data, found '%s'", L.label, L.a.descr);
    goto bad;
  }
  if (!sample_shape_ok(&L.a, b) && !(L.a.rank == 2 && L.a.shape[0] == 0)) {
    block_shape_str(want, sizeof want, b, 1);
    if (mach_is_csv(path) && !cols)
      mach_err(c, "%s: lines have %ld values, expected %ld for %s '%s' %s", L.label,
               L.a.shape[1], b->size, role, b->name, want);
    else {
      mach_shape_str(got, sizeof got, L.a.rank, L.a.shape);
      mach_err(c, "%s: has shape %s, expected %s for %s '%s'", L.label, got, want, role,
               b->name);
    }
    goto bad;
  }
  *n = L.a.shape[0];
  *x = mach_alloc(c, (size_t)L.a.count + 1, sizeof **x);
  if (!*x)
    goto bad;
  mach_array_to_real(&L.a, *x);
  loaded_free(&L);
  return 0;
bad:
  loaded_free(&L);
  return 1;
}

int mach_samples_open(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                      const char *role, const struct mach_dataopts *o, const char *cols,
                      struct mach_samples *s) {
  struct mach_array hdr;
  memset(s, 0, sizeof *s);
  s->scale = 1;
  s->size = b->size;
  s->path = path;
  if (!cols && mach_npy_rows_open(path, &s->rows, &hdr) == 0) {
    if (sample_shape_ok(&hdr, b)) {
      s->n = s->rows.n;
      return 0;
    }
    mach_npy_rows_close(&s->rows); /* read whole, to say what is wrong */
  }
  s->rows.fd = -1;
  return load_whole(c, path, b, role, o, cols, &s->all, &s->n);
}

int mach_samples_read(const struct mach_ctx *c, struct mach_samples *s, long start,
                      long count, mach_real *dst) {
  long len = count * s->size;
  if (s->all)
    memcpy(dst, s->all + start * s->size, (size_t)len * sizeof *dst);
  else if (count > 0 && mach_npy_rows_read(&s->rows, start, count, dst)) {
    if (errno)
      mach_err(c, "%s: cannot read: %s", s->path, strerror(errno));
    else
      mach_err(c, "%s: truncated data: the file ends before sample %ld", s->path,
               start + count);
    return 1;
  }
  if (s->scale != 1)
    for (long i = 0; i < len; i++)
      dst[i] *= (mach_real)s->scale;
  return 0;
}

void mach_samples_close(struct mach_samples *s) {
  mach_npy_rows_close(&s->rows);
  free(s->all);
  s->all = NULL;
}

/* All of s, as one array the caller frees; s is closed. */
static int samples_take(const struct mach_ctx *c, struct mach_samples *s, mach_real **x) {
  int rc = 0;
  if (s->all) { /* scaled in place: no second copy */
    *x = s->all;
    s->all = NULL;
    if (s->scale != 1)
      for (long i = 0; i < s->n * s->size; i++)
        (*x)[i] *= (mach_real)s->scale;
  } else if (!(*x = mach_alloc(c, (size_t)(s->n * s->size) + 1, sizeof **x)) ||
             mach_samples_read(c, s, 0, s->n, *x)) {
    free(*x);
    *x = NULL;
    rc = 1;
  }
  mach_samples_close(s);
  return rc;
}

int mach_load_samples_opt(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                          const char *role, const struct mach_dataopts *o, const char *cols,
                          mach_real **x, long *n) {
  struct mach_samples s;
  if (mach_samples_open(c, path, b, role, o, cols, &s))
    return 1;
  *n = s.n;
  return samples_take(c, &s, x);
}

int mach_load_table(const struct mach_ctx *c, const char *path, const struct mach_dataopts *o,
                    const char *cols, double **v, long *rows, long *ncols) {
  struct loaded L;
  char got[80];
  *v = NULL;
  if (load_array(c, path, o ? &o->csv : NULL, &L) || (cols && select_columns(c, &L, cols)))
    goto bad;
  if (L.a.dtype == MACH_DT_UNKNOWN || (L.a.rank != 1 && L.a.rank != 2)) {
    mach_shape_str(got, sizeof got, L.a.rank, L.a.shape);
    if (L.a.dtype == MACH_DT_UNKNOWN)
      mach_err(c, "%s: expected integer or float data, found '%s'", L.label, L.a.descr);
    else
      mach_err(c, "%s: has shape %s, expected series as a table [steps, columns]", L.label, got);
    goto bad;
  }
  *rows = L.a.shape[0];
  *ncols = L.a.rank == 2 ? L.a.shape[1] : 1;
  if (!(*v = mach_alloc(c, (size_t)L.a.count + 1, sizeof **v)))
    goto bad;
  for (long i = 0; i < L.a.count; i++)
    (*v)[i] = mach_array_get(&L.a, i);
  loaded_free(&L);
  return 0;
bad:
  loaded_free(&L);
  return 1;
}

int mach_load_samples(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                      const char *role, mach_real **x, long *n) {
  return mach_load_samples_opt(c, path, b, role, NULL, NULL, x, n);
}

int mach_named_block(const struct mach_model *m, const int *idx, int n, const char *arg,
                     const char **path) {
  const char *eq = strchr(arg, '=');
  if (!eq)
    return -1;
  for (int k = 0; k < n; k++) {
    const char *name = m->blocks[idx[k]].name;
    if (strlen(name) == (size_t)(eq - arg) && strncmp(name, arg, (size_t)(eq - arg)) == 0) {
      *path = eq + 1;
      return k;
    }
  }
  return -1;
}

/* Which input each --OPT value is for: names[k] = path for input k. */
static int assign_inputs(const struct mach_ctx *c, const struct mach_args *a,
                         const char *opt, const char *def, const char **paths) {
  const struct mach_model *m = c->m;
  int cnt = mach_arg_count(a, opt);
  for (int i = 0; i < (cnt ? cnt : 1); i++) {
    const char *v = cnt ? mach_arg_nth(a, opt, i) : def, *path = v;
    int k;
    if (!v)
      return mach_arg_missing(c, a, opt);
    k = mach_named_block(m, m->inputs, m->n_inputs, v, &path);
    if (k < 0 && m->n_inputs != 1) {
      mach_err(c, "%s: the model has %d inputs; use --%s NAME=PATH for each (try '%s %s --help')",
               a->cmd, m->n_inputs, opt, c->prog, a->cmd);
      return 2;
    }
    if (k < 0)
      k = 0;
    if (paths[k]) {
      mach_err(c, "%s: input '%s' given twice", a->cmd, m->blocks[m->inputs[k]].name);
      return 2;
    }
    paths[k] = path;
  }
  for (int k = 0; k < m->n_inputs; k++)
    if (!paths[k]) {
      mach_err(c, "%s: missing --%s %s=PATH (try '%s %s --help')", a->cmd, opt,
               m->blocks[m->inputs[k]].name, c->prog, a->cmd);
      return 2;
    }
  return 0;
}

int mach_dataopts_get(const struct mach_ctx *c, const struct mach_args *a,
                      struct mach_dataopts *o) {
  const char *sep = mach_arg(a, "sep");
  int rc;
  memset(o, 0, sizeof *o);
  if ((rc = mach_arg_double(c, a, "scale", 1, -HUGE_VAL, HUGE_VAL, &o->scale)))
    return rc;
  o->csv.skip_header = mach_arg(a, "skip-header") != NULL;
  o->data_cols = mach_arg(a, "data-cols");
  o->target_cols = mach_arg(a, "target-cols");
  if (sep) {
    if (strcmp(sep, "tab") == 0 || strcmp(sep, "\\t") == 0)
      o->csv.sep = '\t';
    else if (strlen(sep) == 1 && sep[0] != '.' && sep[0] != '-' && sep[0] != '+' &&
             !(sep[0] >= '0' && sep[0] <= '9') && sep[0] != '\n')
      o->csv.sep = sep[0];
    else {
      mach_err(c, "%s: --sep: '%s' is not one character that cannot be part of a number, or "
                  "'tab' (try '%s %s --help')", a->cmd, sep, c->prog, a->cmd);
      return 2;
    }
  }
  return 0;
}

/* Opens every input named by --OPT (o: the data options already read). */
static int open_inputs(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                       const char *def, const struct mach_dataopts *o, struct mach_samples *s,
                       long *n) {
  const struct mach_model *m = c->m;
  const char *paths[64] = {0};
  int rc;
  if (m->n_inputs > 64) {
    mach_err(c, "too many inputs");
    return 1;
  }
  if ((rc = assign_inputs(c, a, opt, def, paths)))
    return rc;
  *n = 0;
  for (int k = 0; k < m->n_inputs; k++) {
    const struct mach_block *b = &m->blocks[m->inputs[k]];
    rc = mach_samples_open(c, paths[k], b, "input", o, o->data_cols, &s[k]);
    if (!rc && k > 0 && s[k].n != *n) {
      mach_err(c, "%s: has %ld samples, but %s has %ld", paths[k], s[k].n, paths[0], *n);
      mach_samples_close(&s[k]);
      rc = 1;
    }
    if (rc) {
      while (k-- > 0)
        mach_samples_close(&s[k]);
      return rc;
    }
    s[k].scale = o->scale;
    *n = s[k].n;
  }
  return 0;
}

int mach_open_inputs(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                     const char *def, struct mach_samples *s, long *n) {
  struct mach_dataopts o;
  int rc = mach_dataopts_get(c, a, &o);
  return rc ? rc : open_inputs(c, a, opt, def, &o, s, n);
}

int mach_load_inputs(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                     const char *def, mach_real **xs, long *n) {
  struct mach_dataopts o;
  int rc = mach_dataopts_get(c, a, &o);
  return rc ? rc : mach_load_inputs_opt(c, a, opt, def, &o, xs, n);
}

int mach_load_inputs_opt(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                         const char *def, const struct mach_dataopts *op, mach_real **xs,
                         long *n) {
  struct mach_samples s[64];
  int rc = open_inputs(c, a, opt, def, op, s, n);
  for (int k = 0; k < c->m->n_inputs && !rc; k++)
    if ((rc = samples_take(c, &s[k], &xs[k])))
      while (++k < c->m->n_inputs)
        mach_samples_close(&s[k]);
  return rc;
}

static int label_ok(const struct mach_ctx *c, const char *name, double v, long i,
                    long classes) {
  if (v != floor(v)) {
    mach_err(c, "%s: label %g (sample %ld) is not an integer", name, v, i);
    return 0;
  }
  if (v < 0 || v >= (double)classes) {
    mach_err(c, "%s: label %.0f (sample %ld) is out of range [0, %ld)", name, v, i, classes);
    return 0;
  }
  return 1;
}

int mach_load_labels_opt(const struct mach_ctx *c, const char *path, long classes,
                         const struct mach_dataopts *o, const char *cols, long **labels,
                         long *n) {
  struct loaded L;
  char got[80];
  if (load_array(c, path, o ? &o->csv : NULL, &L) || (cols && select_columns(c, &L, cols)))
    goto bad;
  if (L.a.dtype == MACH_DT_UNKNOWN) {
    mach_err(c, "%s: expected integer or float labels, found '%s'", L.label, L.a.descr);
    goto bad;
  }
  if (!(L.a.rank == 1 || (L.a.rank == 2 && L.a.shape[1] == 1))) {
    mach_shape_str(got, sizeof got, L.a.rank, L.a.shape);
    mach_err(c, "%s: has shape %s, expected class labels [N]", L.label, got);
    goto bad;
  }
  *n = L.a.shape[0];
  *labels = mach_alloc(c, (size_t)*n + 1, sizeof **labels);
  if (!*labels)
    goto bad;
  for (long i = 0; i < *n; i++) {
    double v = mach_array_get(&L.a, i);
    if (!label_ok(c, L.label, v, i, classes)) {
      free(*labels);
      *labels = NULL;
      goto bad;
    }
    (*labels)[i] = (long)v;
  }
  loaded_free(&L);
  return 0;
bad:
  loaded_free(&L);
  return 1;
}

int mach_load_labels(const struct mach_ctx *c, const char *path, long classes,
                     long **labels, long *n) {
  return mach_load_labels_opt(c, path, classes, NULL, NULL, labels, n);
}
