/* data.c — loading samples, inputs and labels and checking them against the
 * model's blocks. Data files are [N, <block shape>], batch first; they are
 * converted to the model's real type on load. */
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

/* [N, shape] exactly, or [N] for a block of one scalar. */
static int sample_shape_ok(const struct mach_array *a, const struct mach_block *b) {
  if (a->rank == 1)
    return b->size == 1;
  if (a->rank != b->rank + 1)
    return 0;
  for (int k = 0; k < b->rank; k++)
    if (a->shape[k + 1] != b->shape[k])
      return 0;
  return 1;
}

static int load_array(const struct mach_ctx *c, const char *path, unsigned char **buf,
                      struct mach_array *a) {
  size_t len;
  char why[200];
  *buf = NULL;
  if (mach_is_csv(path))
    return mach_csv_read(c, path, a);
  if (mach_read_file(c, path, buf, &len))
    return 1;
  if (mach_npy_parse(*buf, len, a, why, sizeof why)) {
    mach_err(c, "%s: %s", path, why);
    free(*buf);
    *buf = NULL;
    return 1;
  }
  return 0;
}

int mach_load_samples(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                      const char *role, mach_real **x, long *n) {
  unsigned char *buf;
  struct mach_array a;
  char want[80], got[80];
  int ok;
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (load_array(c, path, &buf, &a))
    return 1;
  if (!mach_dtype_is_float(a.dtype)) {
    mach_err(c, "%s: expected float32 or float64 .npy, found '%s'", name, a.descr);
    goto bad;
  }
  if (a.owned) /* CSV: samples are lines of flattened values */
    ok = a.shape[1] == b->size || a.shape[0] == 0;
  else
    ok = a.rank >= 1 && sample_shape_ok(&a, b);
  if (!ok) {
    block_shape_str(want, sizeof want, b, 1);
    if (a.owned)
      mach_err(c, "%s: lines have %ld values, expected %ld for %s '%s' %s", name,
               a.shape[1], b->size, role, b->name, want);
    else {
      mach_shape_str(got, sizeof got, a.rank, a.shape);
      mach_err(c, "%s: has shape %s, expected %s for %s '%s'", name, got, want, role,
               b->name);
    }
    goto bad;
  }
  *n = a.shape[0];
  *x = mach_alloc(c, (size_t)a.count + 1, sizeof **x);
  if (!*x)
    goto bad;
  mach_array_to_real(&a, *x);
  mach_array_free(&a);
  free(buf);
  return 0;
bad:
  mach_array_free(&a);
  free(buf);
  return 1;
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

int mach_load_inputs(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                     const char *def, mach_real **xs, long *n) {
  const struct mach_model *m = c->m;
  const char *paths[64] = {0};
  int rc;
  if (m->n_inputs > 64) {
    mach_err(c, "too many inputs");
    return 1;
  }
  if ((rc = assign_inputs(c, a, opt, def, paths)))
    return rc;
  for (int k = 0; k < m->n_inputs; k++) {
    long nk;
    if (mach_load_samples(c, paths[k], &m->blocks[m->inputs[k]], "input", &xs[k], &nk))
      return 1;
    if (k > 0 && nk != *n) {
      mach_err(c, "%s: has %ld samples, but %s has %ld", paths[k], nk, paths[0], *n);
      return 1;
    }
    *n = nk;
  }
  if (m->n_inputs == 0)
    *n = 0;
  return 0;
}

static int label_ok(const struct mach_ctx *c, const char *path, double v, long i,
                    long classes) {
  if (v != floor(v)) {
    mach_err(c, "%s: label %g (sample %ld) is not an integer", path, v, i);
    return 0;
  }
  if (v < 0 || v >= (double)classes) {
    mach_err(c, "%s: label %.0f (sample %ld) is out of range [0, %ld)", path, v, i, classes);
    return 0;
  }
  return 1;
}

int mach_load_labels(const struct mach_ctx *c, const char *path, long classes,
                     long **labels, long *n) {
  unsigned char *buf;
  struct mach_array a;
  char got[80];
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  if (load_array(c, path, &buf, &a))
    return 1;
  if (a.dtype == MACH_DT_UNKNOWN) {
    mach_err(c, "%s: expected integer or float labels, found '%s'", name, a.descr);
    goto bad;
  }
  if (!(a.rank == 1 || (a.rank == 2 && a.shape[1] == 1))) {
    mach_shape_str(got, sizeof got, a.rank, a.shape);
    mach_err(c, "%s: has shape %s, expected class labels [N]", name, got);
    goto bad;
  }
  *n = a.shape[0];
  *labels = mach_alloc(c, (size_t)*n + 1, sizeof **labels);
  if (!*labels)
    goto bad;
  for (long i = 0; i < *n; i++) {
    double v = mach_array_get(&a, i);
    if (!label_ok(c, name, v, i, classes)) {
      free(*labels);
      *labels = NULL;
      goto bad;
    }
    (*labels)[i] = (long)v;
  }
  mach_array_free(&a);
  free(buf);
  return 0;
bad:
  mach_array_free(&a);
  free(buf);
  return 1;
}
