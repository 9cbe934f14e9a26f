/* run.c — the commands that run the model on data without training it:
 * `forward`, `predict` (forward reading and writing CSV on stdin/stdout) and
 * `grad` (vector-Jacobian product). Data is processed in minibatches of
 * --batch samples; inputs are passed to the model straight from the loaded
 * [N, shape] arrays (a batch of samples is contiguous there), and the state
 * buffer holds one batch. Over MPI each rank runs its shard of the samples
 * (mach_dist_shard) and rank 0 gathers the results and writes them. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

/* Copies the b samples of a block at state + b*off into dst rows start... */
static void gather(mach_real *dst, const mach_real *state, long b, long off, long size,
                   long start) {
  memcpy(dst + start * size, state + b * off, (size_t)(b * size) * sizeof *dst);
}

/* ---- whole-state dumps (--dump-state, --dump-dual) ------------------------ */

/* For every block, N samples of what lies at y_offset and at z_offset. */
struct dump {
  mach_real *buf; /* one allocation: per block, [N, size] at y then at z */
  long *at;       /* start of block i's first array in buf */
};

static int dump_alloc(const struct mach_ctx *c, struct dump *d, long n) {
  const struct mach_model *m = c->m;
  long total = 0;
  d->at = mach_alloc(c, (size_t)m->n_blocks + 1, sizeof *d->at);
  if (!d->at)
    return 1;
  for (int i = 0; i < m->n_blocks; i++) {
    d->at[i] = total;
    total += 2 * n * m->blocks[i].size;
  }
  d->buf = mach_alloc(c, (size_t)total + 1, sizeof *d->buf);
  return d->buf ? 0 : 1;
}

/* Rank 0 gets every rank's rows of the dumps. */
static void dump_gather(const struct mach_ctx *c, struct dump *d, long n) {
  if (!d->buf)
    return;
  for (int i = 0; i < c->m->n_blocks; i++) {
    mach_dist_gather_rows(c, d->buf + d->at[i], n, c->m->blocks[i].size);
    mach_dist_gather_rows(c, d->buf + d->at[i] + n * c->m->blocks[i].size, n, c->m->blocks[i].size);
  }
}

static void dump_batch(const struct mach_model *m, struct dump *d, const mach_real *state,
                       long b, long start, long n) {
  if (!d->buf)
    return;
  for (int i = 0; i < m->n_blocks; i++) {
    const struct mach_block *bl = &m->blocks[i];
    gather(d->buf + d->at[i], state, b, bl->y_offset, bl->size, start);
    gather(d->buf + d->at[i] + n * bl->size, state, b, bl->z_offset, bl->size, start);
  }
}

static int dump_save(const struct mach_ctx *c, struct dump *d, const char *path, long n,
                     const char *at_y, const char *at_z) {
  const struct mach_model *m = c->m;
  struct mach_npz_entry *e = mach_alloc(c, 2 * (size_t)m->n_blocks + 1, sizeof *e);
  int rc;
  if (!e)
    return 1;
  for (int i = 0; i < m->n_blocks; i++) {
    const struct mach_block *bl = &m->blocks[i];
    mach_npz_block_entry(&e[2 * i], at_y, bl, n, d->buf + d->at[i]);
    mach_npz_block_entry(&e[2 * i + 1], at_z, bl, n, d->buf + d->at[i] + n * bl->size);
  }
  rc = mach_npz_save(c, path, e, 2 * m->n_blocks);
  free(e);
  return rc;
}

static void dump_free(struct dump *d) {
  free(d->buf);
  free(d->at);
}

/* ---- writing outputs ------------------------------------------------------- */

static int save_npy(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                    long n, const mach_real *data) {
  struct mach_npz_entry e;
  struct mach_out o;
  mach_npz_block_entry(&e, "", b, n, data);
  if (mach_out_open(c, path, &o))
    return 1;
  if (mach_npy_write(o.f, e.rank, e.shape, data)) {
    mach_err(c, "%s: cannot write", path);
    mach_out_abort(&o);
    return 1;
  }
  return mach_out_close(c, &o);
}

/* Several outputs in one CSV: each line is their samples side by side. */
static int save_csv(const struct mach_ctx *c, const char *path, long n, int k,
                    const int *blocks, mach_real *const *data) {
  long sizes[64];
  struct mach_out o;
  for (int i = 0; i < k && i < 64; i++)
    sizes[i] = c->m->blocks[blocks[i]].size;
  if (mach_out_open(c, path, &o))
    return 1;
  if (mach_csv_write(o.f, n, k < 64 ? k : 64, sizes, (const mach_real *const *)data)) {
    mach_err(c, "%s: cannot write", strcmp(path, "-") ? path : "<stdout>");
    mach_out_abort(&o);
    return 1;
  }
  return mach_out_close(c, &o);
}

static int save_npz_blocks(const struct mach_ctx *c, const char *path, long n, int k,
                           const int *blocks, mach_real *const *data) {
  struct mach_npz_entry *e = mach_alloc(c, (size_t)k + 1, sizeof *e);
  int rc;
  if (!e)
    return 1;
  for (int i = 0; i < k; i++)
    mach_npz_block_entry(&e[i], "", &c->m->blocks[blocks[i]], n, data[i]);
  rc = mach_npz_save(c, path, e, k);
  free(e);
  return rc;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* --output PATH: .npz gets every output, CSV every output side by side, .npy
 * only a single output; or --output NAME=PATH per output. */
static int save_outputs(const struct mach_ctx *c, const struct mach_args *a, const char *def,
                        long n, mach_real *const *ys) {
  const struct mach_model *m = c->m;
  int cnt = mach_arg_count(a, "output"), rc = 0;
  const char *one = cnt ? mach_arg_nth(a, "output", 0) : def, *path;
  if (!one)
    return mach_arg_missing(c, a, "output");
  if (cnt <= 1 && mach_named_block(m, m->outputs, m->n_outputs, one, &path) < 0) {
    if (ends_with(one, ".npz"))
      return save_npz_blocks(c, one, n, m->n_outputs, m->outputs, ys);
    if (mach_is_csv(one))
      return save_csv(c, one, n, m->n_outputs, m->outputs, ys);
    return save_npy(c, one, &m->blocks[m->outputs[0]], n, ys[0]);
  }
  for (int i = 0; i < cnt && !rc; i++) {
    int k = mach_named_block(m, m->outputs, m->n_outputs, mach_arg_nth(a, "output", i), &path);
    if (mach_is_csv(path))
      rc = save_csv(c, path, n, 1, &m->outputs[k], &ys[k]);
    else
      rc = save_npy(c, path, &m->blocks[m->outputs[k]], n, ys[k]);
  }
  return rc;
}

/* Usage errors in --output are found before any work is done. */
static int check_outputs(const struct mach_ctx *c, const struct mach_args *a) {
  const struct mach_model *m = c->m;
  int cnt = mach_arg_count(a, "output");
  const char *path;
  for (int i = 0; i < cnt; i++) {
    const char *v = mach_arg_nth(a, "output", i);
    if (mach_named_block(m, m->outputs, m->n_outputs, v, &path) >= 0)
      continue;
    if (cnt > 1) {
      mach_err(c, "%s: '%s' names no output; with several --output use NAME=PATH (try '%s %s --help')",
               a->cmd, v, c->prog, a->cmd);
      return 2;
    }
    if (m->n_outputs != 1 && !ends_with(v, ".npz") && !mach_is_csv(v)) {
      mach_err(c, "%s: the model has %d outputs; use --output Y.npz or --output NAME=Y.npy (try '%s %s --help')",
               a->cmd, m->n_outputs, c->prog, a->cmd);
      return 2;
    }
  }
  return 0;
}

/* ---- forward and predict ----------------------------------------------- */

static const struct mach_optspec forward_opts[] = {
  {"weights", MACH_OPT_VALUE},
  {"input", MACH_OPT_MULTI},
  {"output", MACH_OPT_MULTI},
  {"dump-state", MACH_OPT_VALUE},
  {"batch", MACH_OPT_VALUE},
  {"scale", MACH_OPT_VALUE}, {"sep", MACH_OPT_VALUE}, {"skip-header", MACH_OPT_FLAG},
  {"data-cols", MACH_OPT_VALUE},
  {"argmax", MACH_OPT_FLAG}, {"proba", MACH_OPT_FLAG},
  {"allow-nonfinite", MACH_OPT_FLAG},
  MACH_THREADS_OPT,
  {NULL, MACH_OPT_FLAG},
};

/* Everything a run over the data holds; freed by run_free. */
struct run {
  mach_real *params;  /* [param_size], then dparams and their sum for grad */
  struct mach_samples src[64]; /* the inputs, read a batch at a time */
  int opened;         /* src holds the model's inputs */
  mach_real *xb[64];  /* a batch of each input, [batch, size] */
  mach_real *ys[64];  /* outputs (forward: [n, size], or a batch when written as
                         they come) or input gradients (grad, [n, size]) */
  mach_real *gs[64];  /* cotangents (grad), NULL = zero */
  mach_real *state;   /* one allocation: state, dstate, zeros; each [batch, ...] */
  long n, batch;
  struct dump ds, dd;
};

static void run_free(const struct mach_model *m, struct run *r) {
  free(r->params);
  for (int k = 0; k < 64; k++) {
    if (r->opened && k < m->n_inputs)
      mach_samples_close(&r->src[k]);
    free(r->xb[k]);
    free(r->ys[k]);
    free(r->gs[k]);
  }
  free(r->state);
  dump_free(&r->ds);
  dump_free(&r->dd);
}

/* Loads weights, opens the inputs, sizes the batch. nparam: parameter
 * buffers. */
static int run_setup(const struct mach_ctx *c, const struct mach_args *a, const char *in_def,
                     int nparam, struct run *r) {
  const struct mach_model *m = c->m;
  const char *w;
  int rc;
  if (m->n_inputs > 64 || m->n_outputs > 64) {
    mach_err(c, "more than 64 inputs or outputs are not supported");
    return 1;
  }
  if ((rc = mach_threads_set(c, a)) || (rc = mach_arg_required(c, a, "weights", &w)) ||
      (rc = mach_arg_long(c, a, "batch", 256, 1, &r->batch)))
    return rc;
  r->params = mach_alloc(c, (size_t)m->param_size * (size_t)nparam + 1, sizeof *r->params);
  if (!r->params || mach_load_weights(c, w, r->params))
    return 1;
  if ((rc = mach_open_inputs(c, a, "input", in_def, r->src, &r->n)))
    return rc;
  r->opened = 1;
  if (!mach_arg(a, "allow-nonfinite") && mach_check_finite_params(c, w, r->params))
    return 1; /* NaN in, NaN out, silently: refused (inputs: as they are read) */
  if (r->batch > r->n) /* no need for a state bigger than the data */
    r->batch = r->n > 0 ? r->n : 1;
  for (int k = 0; k < m->n_inputs; k++)
    if (!(r->xb[k] = mach_alloc(c, (size_t)(r->batch * m->blocks[m->inputs[k]].size) + 1,
                                sizeof(mach_real))))
      return 1;
  return 0;
}

/* Samples [start, start + b) of every input into the batch buffers, which
 * in[] then points to; refused when not finite (unless --allow-nonfinite). */
static int read_batch(const struct mach_ctx *c, const struct mach_args *a, struct run *r,
                      long start, long b, const mach_real **in) {
  const struct mach_model *m = c->m;
  for (int k = 0; k < m->n_inputs; k++) {
    const struct mach_block *bl = &m->blocks[m->inputs[k]];
    if (mach_samples_read(c, &r->src[k], start, b, r->xb[k]) ||
        (!mach_arg(a, "allow-nonfinite") &&
         mach_check_finite_samples(c, a->cmd, bl->name, r->xb[k], start, b, bl->size)))
      return 1;
    in[k] = r->xb[k];
  }
  return 0;
}

static int ends_in_softmax(const struct mach_block *b) {
  return b->activation && strcmp(b->activation, "softmax") == 0;
}

/* --argmax and --proba, checked before any work: *om gets the model as its
 * outputs are written (with --argmax each flat output is one scalar, its
 * class index); om->blocks is m's, or a copy the caller frees. */
static int check_transforms(const struct mach_ctx *c, const struct mach_args *a,
                            struct mach_model *om) {
  const struct mach_model *m = c->m;
  struct mach_block *bl;
  *om = *m;
  if (mach_arg(a, "argmax") && mach_arg(a, "proba")) {
    mach_err(c, "%s: --argmax and --proba exclude each other (try '%s %s --help')", a->cmd,
             c->prog, a->cmd);
    return 2;
  }
  for (int k = 0; k < m->n_outputs && mach_arg(a, "proba"); k++)
    if (ends_in_softmax(&m->blocks[m->outputs[k]])) {
      mach_err(c, "%s: --proba: output '%s' already ends in softmax; its values are "
                  "probabilities (leave out --proba)",
               a->cmd, m->blocks[m->outputs[k]].name);
      return 2;
    }
  if (!mach_arg(a, "argmax"))
    return 0;
  if (!(bl = mach_alloc(c, (size_t)m->n_blocks, sizeof *bl)))
    return 1;
  memcpy(bl, m->blocks, (size_t)m->n_blocks * sizeof *bl);
  om->blocks = bl;
  for (int k = 0; k < m->n_outputs; k++) {
    struct mach_block *b = &bl[m->outputs[k]];
    if (b->rank != 1) {
      mach_err(c, "%s: --argmax needs flat outputs, but '%s' has %d axes", a->cmd, b->name,
               b->rank);
      return 2;
    }
    b->shape[0] = 1;
    b->size = 1;
  }
  return 0;
}

/* --proba: the softmax over the channels of output block b's n rows y, at
 * every grid point, the maximum subtracted first (outputs are logits). */
static void proba_rows(const struct mach_block *b, mach_real *y, long n) {
  long C = b->shape[0], G = b->size / C;
  for (long i = 0; i < n * G; i++) {
    mach_real *v = y + (i / G) * b->size + i % G;
    double mx = v[0], sum = 0;
    for (long ch = 1; ch < C; ch++)
      mx = v[ch * G] > mx ? v[ch * G] : mx;
    for (long ch = 0; ch < C; ch++)
      sum += exp((double)v[ch * G] - mx);
    for (long ch = 0; ch < C; ch++)
      v[ch * G] = (mach_real)(exp((double)v[ch * G] - mx) / sum);
  }
}

/* --argmax: each of the n rows of a flat output becomes its class index
 * (the first largest channel), y[i], in place. */
static void argmax_rows(const struct mach_block *b, mach_real *y, long n) {
  for (long i = 0; i < n; i++) {
    const mach_real *v = y + i * b->size;
    long arg = 0;
    for (long ch = 1; ch < b->size; ch++)
      arg = v[ch] > v[arg] ? ch : arg;
    y[i] = (mach_real)arg; /* row i is read before index i is written */
  }
}

static void transform_rows(const struct mach_ctx *c, const struct mach_args *a, struct run *r,
                           long n) {
  const struct mach_model *m = c->m;
  for (int k = 0; k < m->n_outputs; k++) {
    const struct mach_block *b = &m->blocks[m->outputs[k]];
    if (mach_arg(a, "proba"))
      proba_rows(b, r->ys[k], n);
    if (mach_arg(a, "argmax"))
      argmax_rows(b, r->ys[k], n);
  }
}

/* ---- outputs written as the batches come ------------------------------------ */

/* One output file: a .npy of one output, or a CSV of outputs side by side
 * (as save_outputs writes them). */
struct sink {
  const char *path;
  int csv, nk;
  int ks[64];         /* positions in m->outputs */
  struct mach_out o;
  int open;
};

/* The files save_outputs would write, when every one can be written a
 * batch at a time (not an .npz, not stdout); else 0 files. */
static int plan_sinks(const struct mach_ctx *c, const struct mach_args *a, const char *def,
                      struct sink *s) {
  const struct mach_model *m = c->m;
  int cnt = mach_arg_count(a, "output"), ns = 0;
  const char *one = cnt ? mach_arg_nth(a, "output", 0) : def, *path;
  if (!one)
    return 0;
  if (cnt <= 1 && mach_named_block(m, m->outputs, m->n_outputs, one, &path) < 0) {
    if (ends_with(one, ".npz") || strcmp(one, "-") == 0)
      return 0;
    memset(s, 0, sizeof *s);
    s->path = one;
    s->csv = mach_is_csv(one);
    s->nk = s->csv ? (m->n_outputs < 64 ? m->n_outputs : 64) : 1;
    for (int k = 0; k < s->nk; k++)
      s->ks[k] = k;
    return 1;
  }
  for (int i = 0; i < cnt; i++, ns++) {
    int k = mach_named_block(m, m->outputs, m->n_outputs, mach_arg_nth(a, "output", i), &path);
    if (strcmp(path, "-") == 0)
      return 0;
    memset(&s[ns], 0, sizeof *s);
    s[ns].path = path;
    s[ns].csv = mach_is_csv(path);
    s[ns].nk = 1;
    s[ns].ks[0] = k;
  }
  return ns;
}

/* Opens the files and writes the .npy headers, for n rows. */
static int sinks_open(const struct mach_ctx *c, struct sink *s, int ns, long n) {
  const struct mach_model *m = c->m;
  for (int i = 0; i < ns; i++) {
    struct mach_npz_entry e;
    if (mach_out_open(c, s[i].path, &s[i].o))
      return 1;
    s[i].open = 1;
    if (s[i].csv)
      continue;
    mach_npz_block_entry(&e, "", &m->blocks[m->outputs[s[i].ks[0]]], n, NULL);
    if (mach_npy_write_header(s[i].o.f, e.rank, e.shape)) {
      mach_err(c, "%s: cannot write", s[i].path);
      return 1;
    }
  }
  return 0;
}

/* The b rows of a batch, ys[k] holding output k's. */
static int sinks_write(const struct mach_ctx *c, struct sink *s, int ns, mach_real *const *ys,
                       long b) {
  const struct mach_model *m = c->m;
  for (int i = 0; i < ns; i++) {
    int bad;
    if (s[i].csv) {
      long sizes[64];
      const mach_real *parts[64];
      for (int j = 0; j < s[i].nk; j++) {
        sizes[j] = m->blocks[m->outputs[s[i].ks[j]]].size;
        parts[j] = ys[s[i].ks[j]];
      }
      bad = mach_csv_write(s[i].o.f, b, s[i].nk, sizes, parts) != 0;
    } else {
      size_t len = (size_t)(b * m->blocks[m->outputs[s[i].ks[0]]].size);
      bad = fwrite(ys[s[i].ks[0]], sizeof(mach_real), len, s[i].o.f) != len;
    }
    if (bad) {
      mach_err(c, "%s: cannot write", s[i].path);
      return 1;
    }
  }
  return 0;
}

/* Closes every file (renamed by mach_out_finish); on failure, or when rc,
 * removes them. */
static int sinks_end(const struct mach_ctx *c, struct sink *s, int ns, int rc) {
  for (int i = 0; i < ns; i++) {
    if (!s[i].open)
      continue;
    if (rc)
      mach_out_abort(&s[i].o);
    else
      rc = mach_out_close(c, &s[i].o);
    s[i].open = 0;
  }
  return rc;
}

/* ---- forward and predict ---------------------------------------------------- */

/* One process, no --dump-state and no .npz or stdout among the outputs: the
 * outputs are written as the batches come, so what is held is the model
 * and a batch, whatever the size of the data. Otherwise (MPI ranks gather
 * to rank 0; an .npz member is written whole) they are collected first. */
static int run_forward(const struct mach_ctx *c, const struct mach_args *a, const char *in_def,
                       const char *out_def) {
  const struct mach_model *m = c->m;
  struct run r = {0};
  struct mach_model om = *m; /* the outputs as written (--argmax) */
  struct mach_ctx oc = *c;
  struct sink sinks[64];
  const char *dump = mach_arg(a, "dump-state");
  const mach_real *in[64];
  long lo, hi;
  int ns = 0, rc = check_outputs(c, a);
  oc.m = &om;
  if (!rc)
    rc = check_transforms(c, a, &om);
  if (!rc && !(rc = run_setup(c, a, in_def, 1, &r))) {
    if (c->nranks <= 1 && !dump)
      ns = plan_sinks(&oc, a, out_def, sinks);
    r.state = mach_alloc(c, (size_t)(r.batch * m->state_size) + 1, sizeof *r.state);
    rc = !r.state || (dump && dump_alloc(c, &r.ds, r.n));
    for (int k = 0; k < m->n_outputs && !rc; k++)
      rc = !(r.ys[k] = mach_alloc(c, (size_t)((ns ? r.batch : r.n) * m->blocks[m->outputs[k]].size) + 1,
                                  sizeof(mach_real)));
    if (!rc && ns)
      rc = sinks_open(&oc, sinks, ns, r.n);
  }
  if ((rc = mach_dist_agree(c, a->cmd, rc)))
    goto done;
  mach_dist_shard(c, 0, r.n, &lo, &hi);
  for (long start = lo; start < hi && !rc; start += r.batch) {
    long b = hi - start < r.batch ? hi - start : r.batch;
    if ((rc = read_batch(c, a, &r, start, b, in)))
      break;
    m->forward(r.params, in, r.state, b);
    for (int k = 0; k < m->n_outputs; k++) {
      const struct mach_block *bl = &m->blocks[m->outputs[k]];
      gather(r.ys[k], r.state, b, bl->z_offset, bl->size, ns ? 0 : start);
    }
    if (ns) {
      transform_rows(c, a, &r, b);
      rc = sinks_write(&oc, sinks, ns, r.ys, b);
    }
    dump_batch(m, &r.ds, r.state, b, start, r.n);
  }
  if ((rc = mach_dist_agree(c, a->cmd, rc)) || ns)
    goto done;
  for (int k = 0; k < m->n_outputs; k++)
    mach_dist_gather_rows(c, r.ys[k], r.n, m->blocks[m->outputs[k]].size);
  dump_gather(c, &r.ds, r.n);
  if (!mach_dist_root(c))
    goto done;
  transform_rows(c, a, &r, r.n);
  rc = save_outputs(&oc, a, out_def, r.n, r.ys);
  if (!rc && dump)
    rc = dump_save(c, &r.ds, dump, r.n, "y.", "z.");
done:
  rc = sinks_end(&oc, sinks, ns, rc);
  if (om.blocks != m->blocks)
    free((void *)om.blocks);
  run_free(m, &r);
  return rc;
}

int mach_cmd_forward(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  int rc = mach_args_parse(c, "forward", forward_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "forward", stdout);
    return 0;
  }
  if (rc)
    return rc;
  if (!mach_arg(&a, "output"))
    return mach_arg_missing(c, &a, "output");
  mach_out_defer(); /* --output and --dump-state: all written, or none */
  return mach_out_finish(c, run_forward(c, &a, NULL, NULL));
}

int mach_cmd_predict(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  int rc = mach_args_parse(c, "predict", forward_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "predict", stdout);
    return 0;
  }
  if (rc)
    return rc;
  mach_out_defer();
  return mach_out_finish(c, run_forward(c, &a, "-", "-"));
}

/* ---- grad ------------------------------------------------------------------ */

static const struct mach_optspec grad_opts[] = {
  {"weights", MACH_OPT_VALUE},
  {"input", MACH_OPT_MULTI},
  {"cotangent", MACH_OPT_MULTI},
  {"output", MACH_OPT_VALUE},
  {"dump-state", MACH_OPT_VALUE},
  {"dump-dual", MACH_OPT_VALUE},
  {"batch", MACH_OPT_VALUE},
  {"allow-nonfinite", MACH_OPT_FLAG},
  MACH_THREADS_OPT,
  {NULL, MACH_OPT_FLAG},
};

/* --cotangent [NAME=]G.npy per output; outputs without one get zeros. */
static int load_cotangents(const struct mach_ctx *c, const struct mach_args *a, struct run *r) {
  const struct mach_model *m = c->m;
  int cnt = mach_arg_count(a, "cotangent");
  if (cnt == 0)
    return mach_arg_missing(c, a, "cotangent");
  for (int i = 0; i < cnt; i++) {
    const char *v = mach_arg_nth(a, "cotangent", i), *path = v;
    int k = mach_named_block(m, m->outputs, m->n_outputs, v, &path);
    long n;
    if (k < 0 && m->n_outputs != 1) {
      mach_err(c, "grad: the model has %d outputs; use --cotangent NAME=G.npy (try '%s grad --help')",
               m->n_outputs, c->prog);
      return 2;
    }
    k = k < 0 ? 0 : k;
    if (r->gs[k]) {
      mach_err(c, "grad: cotangent for '%s' given twice", m->blocks[m->outputs[k]].name);
      return 2;
    }
    if (mach_load_samples(c, path, &m->blocks[m->outputs[k]], "output", &r->gs[k], &n))
      return 1;
    if (n != r->n) {
      mach_err(c, "%s: has %ld samples, but the inputs have %ld", path, n, r->n);
      return 1;
    }
  }
  return 0;
}

static int save_grad(const struct mach_ctx *c, const char *path, const struct run *r,
                     const mach_real *dsum) {
  const struct mach_model *m = c->m;
  struct mach_npz_entry *e = mach_alloc(c, (size_t)(m->n_inputs + m->n_params) + 1, sizeof *e);
  int rc, n = 0;
  if (!e)
    return 1;
  for (int k = 0; k < m->n_inputs; k++)
    mach_npz_block_entry(&e[n++], "", &m->blocks[m->inputs[k]], r->n, r->ys[k]);
  for (int p = 0; p < m->n_params; p++, n++) {
    snprintf(e[n].name, sizeof e[n].name, "%s", m->params[p].name);
    e[n].rank = m->params[p].rank;
    for (int k = 0; k < e[n].rank; k++)
      e[n].shape[k] = m->params[p].shape[k];
    e[n].data = dsum + m->params[p].offset;
  }
  rc = mach_npz_save(c, path, e, n);
  free(e);
  return rc;
}

/* One minibatch: forward, backward, sum dparams, collect input gradients. */
static void grad_batch(const struct mach_model *m, struct run *r, const mach_real *const *in,
                       long start, long b, mach_real *dstate, const mach_real *zeros) {
  const mach_real *cot[64];
  mach_real *dp = r->params + m->param_size, *dsum = dp + m->param_size;
  for (int k = 0; k < m->n_outputs; k++)
    cot[k] = r->gs[k] ? r->gs[k] + start * m->blocks[m->outputs[k]].size : zeros;
  m->forward(r->params, in, r->state, b);
  m->backward(r->params, r->state, cot, dstate, dp, b, 1, NULL, NULL);
  for (long i = 0; i < m->param_size; i++)
    dsum[i] += dp[i];
  for (int k = 0; k < m->n_inputs; k++) {
    const struct mach_block *bl = &m->blocks[m->inputs[k]];
    gather(r->ys[k], dstate, b, bl->z_offset, bl->size, start);
  }
  dump_batch(m, &r->ds, r->state, b, start, r->n);
  dump_batch(m, &r->dd, dstate, b, start, r->n);
}

static int run_grad(const struct mach_ctx *c, const struct mach_args *a) {
  const struct mach_model *m = c->m;
  struct run r = {0};
  const char *out, *ds = mach_arg(a, "dump-state"), *dd = mach_arg(a, "dump-dual");
  const mach_real *in[64];
  long maxout = 1, lo, hi;
  int rc;
  if ((rc = mach_arg_required(c, a, "output", &out)))
    goto done;
  if (!(rc = run_setup(c, a, NULL, 3, &r)) && !(rc = load_cotangents(c, a, &r))) {
    for (int k = 0; k < m->n_outputs; k++)
      if (m->blocks[m->outputs[k]].size > maxout)
        maxout = m->blocks[m->outputs[k]].size;
    r.state = mach_alloc(c, (size_t)(r.batch * (2 * m->state_size + maxout)) + 1,
                         sizeof *r.state);
    rc = !r.state || (ds && dump_alloc(c, &r.ds, r.n)) || (dd && dump_alloc(c, &r.dd, r.n));
    for (int k = 0; k < m->n_inputs && !rc; k++)
      rc = !(r.ys[k] = mach_alloc(c, (size_t)(r.n * m->blocks[m->inputs[k]].size) + 1,
                                  sizeof(mach_real)));
  }
  if ((rc = mach_dist_agree(c, "grad", rc)))
    goto done;
  mach_dist_shard(c, 0, r.n, &lo, &hi);
  for (long start = lo; start < hi; start += r.batch) {
    long b = hi - start < r.batch ? hi - start : r.batch;
    if ((rc = read_batch(c, a, &r, start, b, in)))
      break;
    grad_batch(m, &r, in, start, b, r.state + r.batch * m->state_size,
               r.state + 2 * r.batch * m->state_size);
  }
  if ((rc = mach_dist_agree(c, "grad", rc)))
    goto done;
  mach_dist_sum(c, r.params + 2 * m->param_size, m->param_size);
  for (int k = 0; k < m->n_inputs; k++)
    mach_dist_gather_rows(c, r.ys[k], r.n, m->blocks[m->inputs[k]].size);
  dump_gather(c, &r.ds, r.n);
  dump_gather(c, &r.dd, r.n);
  if (!mach_dist_root(c))
    goto done;
  rc = save_grad(c, out, &r, r.params + 2 * m->param_size);
  if (!rc && ds)
    rc = dump_save(c, &r.ds, ds, r.n, "y.", "z.");
  if (!rc && dd)
    rc = dump_save(c, &r.dd, dd, r.n, "zbar.", "ybar.");
done:
  run_free(m, &r);
  return rc;
}

int mach_cmd_grad(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  int rc = mach_args_parse(c, "grad", grad_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "grad", stdout);
    return 0;
  }
  if (rc)
    return rc;
  if (!c->m->backward) {
    mach_err(c, "grad: this model was compiled without a backward pass");
    return 2;
  }
  mach_out_defer(); /* --output, --dump-state, --dump-dual: all written, or none */
  return mach_out_finish(c, run_grad(c, &a));
}
