/* train.c — `BIN train`: minibatch training with per-epoch reporting,
 * validation, early stopping, checkpoints and exact resume.
 *
 * The run is: setup (options, data, the validation split, buffers, initial
 * or resumed state), then the epoch loop; each epoch is a sequence of steps
 * (forward, loss, backward, clipping, one optimizer update at the scheduled
 * learning rate), then validation and bookkeeping; checkpoints are written
 * by save_checkpoint alone.
 *
 * Memory: the parameters, their gradient, a spare, the best epoch's
 * parameters and the optimizer state are carved from one allocation; the
 * forward and dual states, the gathered minibatch and the cotangents from
 * another. An update writes the new parameters into the spare, which then
 * trades places with them; when a step goes wrong (non-finite loss,
 * gradient or parameters) the parameters are still the last good ones,
 * and so are the weights saved.
 *
 * Shuffling uses its own xoshiro256** stream, seeded from --seed xor a
 * constant so it does not replay the numbers init drew from the same seed;
 * the validation split another. Everything a step depends on (parameters,
 * optimizer state, step, the stream, this epoch's order and how far into it
 * the run is) is in the checkpoint, so a resumed run is bitwise the run that
 * did not stop.
 *
 * SIGINT and SIGTERM only set a flag; the loop sees it between steps, writes
 * a checkpoint and exits 128 + the signal number.
 *
 * Over MPI (dist.c) every rank runs this loop on the same data, order and
 * parameters: a step gathers only the rank's shard of the global minibatch,
 * and the shards' gradients, losses and stop flags are summed (sync_step),
 * so every rank takes the same update and stops at the same step. Rank 0
 * alone prints, logs and writes checkpoints; what it alone can fail at is
 * agreed on (mach_dist_agree) before anyone goes on.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

struct cfg {
  struct mach_optim_cfg opt;
  struct mach_sched sched;
  long epochs, batch, print_every, checkpoint_every, patience;
  uint64_t seed;
  double val_split, clip_norm; /* clip_norm 0: none */
  const char *out, *init, *resume, *log;
  int quiet, bar, keep_best, val_tail, val_data;
};

/* Everything the loop touches. */
struct trainer {
  const struct mach_ctx *c;
  const struct mach_model *m;
  struct cfg cfg;
  struct mach_dataset d;  /* the training samples, then a validation split */
  struct mach_dataset vd; /* --val-data */
  const struct mach_dataset *val; /* where validation samples [vlo, vhi) are */
  long vlo, vhi;
  long n_train, n_val, batch;
  long step0;             /* k.step when this run began (resumed runs start late) */
  struct mach_ckpt k;     /* counters, stream and sums: all a resume needs */
  struct mach_rng rng;
  long *perm, *lbatch;    /* [n_train], [batch] labels */
  mach_real *mem; /* one allocation for the five below; params and spare trade places in it */
  mach_real *params, *grad, *spare, *best, *ostate;
  mach_real *state, *dstate, *xb[64], *tb, *cot[64]; /* one allocation */
  long cap_log;
  FILE *logf;             /* open for the whole run, flushed every epoch */
  double t0, drawn;       /* start time; when the progress bar was last drawn */
  int stop;               /* the stop signal every rank has agreed on (MPI) */
  struct mach_allreduce *sum; /* the gradient's sum over the ranks (NULL alone) */
};

/* The signal that asked training to stop, 0 while none did. The one piece of
 * global state: a signal handler has no other way to say anything. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) { stop_signal = sig; }

static const struct mach_optspec train_opts[] = {
  {"data", MACH_OPT_MULTI},   {"targets", MACH_OPT_VALUE},   {"loss", MACH_OPT_VALUE},
  {"optimizer", MACH_OPT_VALUE}, {"lr", MACH_OPT_VALUE},     {"epochs", MACH_OPT_VALUE},
  {"batch", MACH_OPT_VALUE},  {"seed", MACH_OPT_VALUE},      {"out", MACH_OPT_VALUE},
  {"init", MACH_OPT_VALUE},   {"val-split", MACH_OPT_VALUE}, {"log", MACH_OPT_VALUE},
  {"momentum", MACH_OPT_VALUE}, {"beta1", MACH_OPT_VALUE},   {"beta2", MACH_OPT_VALUE},
  {"eps", MACH_OPT_VALUE},    {"weight-decay", MACH_OPT_VALUE}, {"print-every", MACH_OPT_VALUE},
  {"checkpoint-every", MACH_OPT_VALUE}, {"quiet", MACH_OPT_FLAG},
  {"target-output", MACH_OPT_VALUE}, {"resume", MACH_OPT_VALUE},
  {"lr-schedule", MACH_OPT_VALUE}, {"warmup", MACH_OPT_VALUE},  {"clip-norm", MACH_OPT_VALUE},
  {"val-data", MACH_OPT_MULTI}, {"val-targets", MACH_OPT_VALUE}, {"patience", MACH_OPT_VALUE},
  {"keep-best", MACH_OPT_FLAG}, {"val-split-tail", MACH_OPT_FLAG},
  MACH_THREADS_OPT, MACH_DATA_OPTS,
  {NULL, MACH_OPT_FLAG},
};

static int parse_optimizer(const struct mach_ctx *c, const struct mach_args *a,
                           enum mach_optim *kind) {
  const char *v = mach_arg(a, "optimizer");
  if (!v || strcmp(v, "adam") == 0)
    *kind = MACH_OPTIM_ADAM;
  else if (strcmp(v, "sgd") == 0)
    *kind = MACH_OPTIM_SGD;
  else if (strcmp(v, "momentum") == 0)
    *kind = MACH_OPTIM_MOMENTUM;
  else {
    mach_err(c, "train: --optimizer: '%s' is not sgd, momentum or adam (try '%s train --help')",
             v, c->prog);
    return 2;
  }
  return 0;
}

/* constant | cosine | step:E:G (every E epochs, times G). */
static int parse_schedule(const struct mach_ctx *c, const struct mach_args *a,
                          struct mach_sched *s) {
  const char *v = mach_arg(a, "lr-schedule");
  char *end;
  s->kind = MACH_SCHED_CONSTANT;
  if (!v || strcmp(v, "constant") == 0)
    return 0;
  if (strcmp(v, "cosine") == 0) {
    s->kind = MACH_SCHED_COSINE;
    return 0;
  }
  if (strncmp(v, "step:", 5) == 0) {
    s->kind = MACH_SCHED_STEP;
    s->every = strtol(v + 5, &end, 10);
    if (end != v + 5 && *end == ':' && s->every >= 1) {
      const char *g = end + 1;
      s->gamma = strtod(g, &end);
      if (end != g && !*end && isfinite(s->gamma) && s->gamma > 0)
        return 0;
    }
  }
  mach_err(c, "train: --lr-schedule: '%s' is not constant, cosine or step:E:G with E >= 1 "
              "and G > 0 (try '%s train --help')",
           v, c->prog);
  return 2;
}

static int parse_cfg(const struct mach_ctx *c, const struct mach_args *a, struct cfg *g) {
  int rc;
  memset(g, 0, sizeof *g);
  if ((rc = mach_threads_set(c, a)) || (rc = mach_arg_required(c, a, "out", &g->out)) ||
      (rc = mach_arg_long(c, a, "epochs", 0, 1, &g->epochs)) ||
      (!mach_arg(a, "epochs") && (rc = mach_arg_missing(c, a, "epochs"))) ||
      (rc = parse_optimizer(c, a, &g->opt.kind)) ||
      (rc = mach_arg_double(c, a, "lr", 1e-3, 0, HUGE_VAL, &g->opt.lr)) ||
      (rc = mach_arg_double(c, a, "momentum", 0.9, 0, 1, &g->opt.momentum)) ||
      (rc = mach_arg_double(c, a, "beta1", 0.9, 0, 1, &g->opt.beta1)) ||
      (rc = mach_arg_double(c, a, "beta2", 0.999, 0, 1, &g->opt.beta2)) ||
      (rc = mach_arg_double(c, a, "eps", 1e-8, 0, HUGE_VAL, &g->opt.eps)) ||
      (rc = mach_arg_double(c, a, "weight-decay", 0, 0, HUGE_VAL, &g->opt.weight_decay)) ||
      (rc = mach_arg_double(c, a, "val-split", 0, 0, 0.999999, &g->val_split)) ||
      (rc = mach_arg_long(c, a, "batch", 32, 1, &g->batch)) ||
      (rc = mach_arg_u64(c, a, "seed", 0, &g->seed)) ||
      (rc = mach_arg_long(c, a, "print-every", g->epochs <= 50 ? 1 : g->epochs / 50, 1,
                          &g->print_every)) ||
      (rc = mach_arg_long(c, a, "checkpoint-every", 0, 0, &g->checkpoint_every)) ||
      (rc = parse_schedule(c, a, &g->sched)) ||
      (rc = mach_arg_long(c, a, "warmup", 0, 0, &g->sched.warmup)) ||
      (rc = mach_arg_double(c, a, "clip-norm", 0, 0, HUGE_VAL, &g->clip_norm)) ||
      (rc = mach_arg_long(c, a, "patience", 0, 1, &g->patience)))
    return rc;
  if (g->opt.kind == MACH_OPTIM_ADAM && (g->opt.beta1 >= 1 || g->opt.beta2 >= 1)) {
    mach_err(c, "train: --beta1 and --beta2 must be below 1");
    return 2;
  }
  g->init = mach_arg(a, "init");
  g->resume = mach_arg(a, "resume");
  g->log = mach_arg(a, "log");
  g->quiet = mach_arg(a, "quiet") != NULL;
  g->keep_best = mach_arg(a, "keep-best") != NULL;
  g->val_tail = mach_arg(a, "val-split-tail") != NULL;
  g->val_data = mach_arg(a, "val-data") != NULL;
  g->bar = !g->quiet && isatty(fileno(stderr)) && mach_dist_root(c);
  if (g->init && g->resume) {
    mach_err(c, "train: --init and --resume exclude each other (try '%s train --help')", c->prog);
    return 2;
  }
  if (g->val_data != (mach_arg(a, "val-targets") != NULL)) {
    mach_err(c, "train: --val-data and --val-targets go together (try '%s train --help')",
             c->prog);
    return 2;
  }
  if (g->val_data && g->val_split > 0) {
    mach_err(c, "train: --val-data and --val-split exclude each other (try '%s train --help')",
             c->prog);
    return 2;
  }
  if ((g->patience || g->keep_best) && !g->val_data && g->val_split == 0) {
    mach_err(c, "train: --%s needs validation data: --val-split F or --val-data X --val-targets T",
             g->patience ? "patience" : "keep-best");
    return 2;
  }
  return 0;
}

/* ---- setup ------------------------------------------------------------------- */

static int check_finite(const struct mach_ctx *c, const char *path, const mach_real *p) {
  const struct mach_model *m = c->m;
  for (int k = 0; k < m->n_params; k++)
    for (long i = 0; i < m->params[k].size; i++)
      if (!isfinite(p[m->params[k].offset + i])) {
        mach_err(c, "%s: parameter '%s' has a non-finite value", path, m->params[k].name);
        return 1;
      }
  return 0;
}

static int alloc_buffers(struct trainer *t) {
  const struct mach_model *m = t->m;
  long P = m->param_size, B = t->batch, total, maxout = 1;
  int slots = mach_optim_slots(t->cfg.opt.kind);
  t->params = t->mem = mach_alloc(t->c, (size_t)(P * (4 + slots)) + 1, sizeof(mach_real));
  t->perm = mach_alloc(t->c, (size_t)(t->n_train + B) + 1, sizeof(long));
  if (!t->params || !t->perm)
    return 1;
  t->grad = t->params + P;
  t->sum = mach_allreduce_new(t->c, t->grad, P);
  t->spare = t->grad + P;
  t->best = t->spare + P;
  t->ostate = t->best + P;
  t->lbatch = t->perm + t->n_train;
  total = 2 * B * m->state_size + B * t->d.size;
  for (int k = 0; k < m->n_inputs; k++)
    total += B * m->blocks[m->inputs[k]].size;
  for (int k = 0; k < m->n_outputs; k++)
    maxout = m->blocks[m->outputs[k]].size > maxout ? m->blocks[m->outputs[k]].size : maxout;
  total += 2 * B * maxout; /* the trained output's cotangent, and zeros for the others */
  if (!(t->state = mach_alloc(t->c, (size_t)total + 1, sizeof(mach_real))))
    return 1;
  t->dstate = t->state + B * m->state_size;
  t->tb = t->dstate + B * m->state_size;
  {
    mach_real *p = t->tb + B * t->d.size, *zeros;
    for (int k = 0; k < m->n_inputs; k++, p += B * m->blocks[m->inputs[k - 1]].size)
      t->xb[k] = p;
    zeros = p + B * maxout;
    for (int k = 0; k < m->n_outputs; k++)
      t->cot[k] = k == t->d.out ? p : zeros;
  }
  return 0;
}

/* Reorders the samples of d by order (a permutation of [0, n)). */
static int reorder(const struct mach_ctx *c, struct mach_dataset *d, const long *order) {
  const struct mach_model *m = c->m;
  for (int k = 0; k <= m->n_inputs; k++) {
    long s = k < m->n_inputs ? m->blocks[m->inputs[k]].size : d->size;
    mach_real **x = k < m->n_inputs ? &d->xs[k] : &d->t, *nx;
    if (!*x)
      continue;
    if (!(nx = mach_alloc(c, (size_t)(d->n * s) + 1, sizeof *nx)))
      return 1;
    for (long i = 0; i < d->n; i++)
      memcpy(nx + i * s, *x + order[i] * s, (size_t)s * sizeof *nx);
    free(*x);
    *x = nx;
  }
  if (d->labels) {
    long *nl = mach_alloc(c, (size_t)d->n + 1, sizeof *nl);
    if (!nl)
      return 1;
    for (long i = 0; i < d->n; i++)
      nl[i] = d->labels[order[i]];
    free(d->labels);
    d->labels = nl;
  }
  return 0;
}

static void shuffle(long *perm, long n, struct mach_rng *r) {
  for (long i = n - 1; i > 0; i--) {
    long j = (long)mach_rng_below(r, (uint64_t)i + 1), tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
}

/* --val-split: which samples are held out is drawn from the seed (its own
 * stream), unless --val-split-tail keeps the last ones. The samples are
 * reordered so that the held-out ones come last. */
static int split(struct trainer *t) {
  long *order;
  struct mach_rng r;
  int rc;
  t->n_val = (long)floor(t->cfg.val_split * (double)t->d.n);
  t->n_train = t->d.n - t->n_val;
  if (t->n_train < 1) {
    mach_err(t->c, "train: --val-split %g leaves no training samples", t->cfg.val_split);
    return 2;
  }
  t->val = &t->d;
  t->vlo = t->n_train;
  t->vhi = t->d.n;
  if (t->n_val == 0 || t->cfg.val_tail)
    return 0;
  if (!(order = mach_alloc(t->c, (size_t)t->d.n, sizeof *order)))
    return 1;
  for (long i = 0; i < t->d.n; i++)
    order[i] = i;
  mach_rng_seed(&r, t->cfg.seed ^ 0x56414c53504c4954u); /* "VALSPLIT" */
  shuffle(order, t->d.n, &r);
  rc = reorder(t->c, &t->d, order);
  free(order);
  return rc;
}

/* --val-data/--val-targets: read as --data/--targets are. */
static int load_val_data(struct trainer *t, const struct mach_args *a) {
  struct mach_args va = *a;
  int di = -1, ti = -1, vdi = -1, vti = -1;
  for (int i = 0; i < a->n_spec; i++) {
    const char *n = a->spec[i].name;
    di = strcmp(n, "data") == 0 ? i : di;
    ti = strcmp(n, "targets") == 0 ? i : ti;
    vdi = strcmp(n, "val-data") == 0 ? i : vdi;
    vti = strcmp(n, "val-targets") == 0 ? i : vti;
  }
  va.count[di] = a->count[vdi];
  memcpy(va.val[di], a->val[vdi], sizeof va.val[di]);
  va.count[ti] = a->count[vti];
  memcpy(va.val[ti], a->val[vti], sizeof va.val[ti]);
  if (mach_dataset_load(t->c, &va, &t->vd))
    return 1;
  t->val = &t->vd;
  t->vlo = 0;
  t->vhi = t->n_val = t->vd.n;
  return 0;
}

static int resume(struct trainer *t) {
  int has_last = 0;
  t->k.perm = t->perm;
  t->k.ostate = t->ostate;
  if (mach_ckpt_load(t->c, t->cfg.resume, t->params, t->spare, &has_last, &t->k))
    return 1;
  t->cap_log = t->k.n_log;
  if (has_last) { /* the weights entries hold the best epoch's */
    memcpy(t->best, t->params, (size_t)t->m->param_size * sizeof(mach_real));
    memcpy(t->params, t->spare, (size_t)t->m->param_size * sizeof(mach_real));
  } else if (t->cfg.keep_best && t->k.best_epoch > 0) {
    mach_err(t->c, "%s: written without --keep-best; its best epoch's weights are not in it",
             t->cfg.resume);
    return 1;
  }
  memcpy(t->rng.s, t->k.rng, sizeof t->rng.s);
  if (t->k.epoch >= t->cfg.epochs) {
    mach_err(t->c, "train: %s is at epoch %ld; --epochs %ld leaves nothing to do", t->cfg.resume,
             t->k.epoch, t->cfg.epochs);
    return 2;
  }
  return check_finite(t->c, t->cfg.resume, t->params);
}

static int setup(struct trainer *t, const struct mach_args *a) {
  const struct mach_ctx *c = t->c;
  int rc;
  if ((rc = parse_cfg(c, a, &t->cfg)) || (rc = mach_dataset_load(c, a, &t->d)) ||
      (rc = split(t)) || (t->cfg.val_data && (rc = load_val_data(t, a))))
    return rc;
  t->batch = t->cfg.batch < t->n_train ? t->cfg.batch : t->n_train;
  t->cfg.sched.per_epoch = (t->n_train + t->batch - 1) / t->batch;
  t->cfg.sched.total = t->cfg.sched.per_epoch * t->cfg.epochs;
  t->cfg.sched.warmup *= t->cfg.sched.per_epoch;
  if (alloc_buffers(t))
    return 1;
  t->k.optim = (int)t->cfg.opt.kind;
  t->k.n_train = t->n_train;
  t->k.n_val = t->n_val;
  t->k.seed = t->cfg.seed;
  t->k.best_loss = HUGE_VAL;
  for (long i = 0; i < t->n_train; i++)
    t->perm[i] = i;
  mach_rng_seed(&t->rng, t->cfg.seed ^ 0x53485546464c45u); /* "SHUFFLE" */
  if (t->cfg.resume) {
    if ((rc = resume(t)))
      return rc;
  } else if (t->cfg.init) {
    if (mach_load_weights(c, t->cfg.init, t->params) || check_finite(c, t->cfg.init, t->params))
      return 1;
  } else {
    mach_init_params(t->m, t->cfg.seed, t->params);
  }
  /* the entries no update writes keep their first values in both */
  memcpy(t->spare, t->params, (size_t)t->m->param_size * sizeof(mach_real));
  t->t0 = mach_now() - t->k.seconds;
  return 0;
}

/* ---- one step ---------------------------------------------------------------- */

static void gather_batch(struct trainer *t, long start, long b) {
  const struct mach_model *m = t->m;
  for (int k = 0; k < m->n_inputs; k++) {
    long s = m->blocks[m->inputs[k]].size;
    for (long i = 0; i < b; i++)
      memcpy(t->xb[k] + i * s, t->d.xs[k] + t->perm[start + i] * s, (size_t)s * sizeof(mach_real));
  }
  for (long i = 0; i < b; i++) {
    if (t->d.t)
      memcpy(t->tb + i * t->d.size, t->d.t + t->perm[start + i] * t->d.size,
             (size_t)t->d.size * sizeof(mach_real));
    else
      t->lbatch[i] = t->d.labels[t->perm[start + i]];
  }
}

/* The check of the gradient before an update, among the threads
 * (mach_par_for), on the entries the machine reads: whether check is finite
 * there. bad is set by any piece that finds a non-finite value, so the
 * answer does not depend on the cut. */
struct guard_pass {
  const struct mach_model *m;
  const mach_real *check;
  atomic_int bad;
};

static void guard_stretch(void *ctx, long off, long n, int decay) {
  struct guard_pass *g = ctx;
  (void)decay;
  if (!mach_all_finite(g->check + off, n))
    atomic_store_explicit(&g->bad, 1, memory_order_relaxed);
}

static void guard_piece(void *ctx, long lo, long hi) {
  struct guard_pass *g = ctx;
  mach_live_stretches(g->m, lo, hi, guard_stretch, ctx);
}

/* Whether check is finite on the entries the machine reads (the others
 * are 0 in a gradient: the machine never reads them). */
static int guard(const struct trainer *t, const mach_real *check) {
  struct guard_pass g = {t->m, check, 0};
  mach_par_for(t->m, mach_live_size(t->m), guard_piece, &g);
  return !atomic_load(&g.bad);
}

/* The learning rate of the next step. */
static double current_lr(const struct trainer *t) {
  return mach_sched_lr(&t->cfg.sched, t->cfg.opt.lr, t->k.step);
}

/* With several ranks: sums the shards' gradients, losses and hits, and
 * agrees on a stop signal that reached any rank. */
static void sync_step(struct trainer *t, double *loss, long *hits) {
  double v[2] = {*loss, (double)*hits};
  if (t->c->nranks <= 1)
    return;
  if (t->sum)
    mach_allreduce_end(t->sum); /* most buckets started during the backward pass */
  else
    mach_dist_sum(t->c, t->grad, t->m->param_size);
  mach_dist_sum_doubles(t->c, v, 2);
  *loss = v[0];
  *hits = (long)v[1];
  t->stop = mach_dist_max_int(t->c, stop_signal);
}

/* The stop signal the loop acts on: the agreed one with several ranks. */
static int stopping(const struct trainer *t) {
  return t->c->nranks > 1 ? t->stop : stop_signal;
}

/* One update on the samples perm[start .. start + b), of which this rank
 * computes its shard. Returns NULL or what went wrong; *loss gets the batch's
 * summed loss, *hits has its correct argmaxes added. */
static const char *step(struct trainer *t, long start, long b, double *loss, long *hits) {
  const struct mach_model *m = t->m;
  const struct mach_block *ob = &m->blocks[m->outputs[t->d.out]];
  struct mach_optim_cfg o = t->cfg.opt;
  long P = m->param_size, lo, hi, h = 0;
  mach_dist_shard(t->c, start, start + b, &lo, &hi);
  *loss = 0;
  if (hi > lo) {
    long n = hi - lo;
    gather_batch(t, lo, n);
    m->forward(t->params, (const mach_real *const *)t->xb, t->state, n);
    /* the cotangent is of the mean over the global batch b */
    *loss = mach_loss_eval(t->d.loss, t->state + n * ob->z_offset, t->tb, t->lbatch, n,
                           t->d.size, b, t->cot[t->d.out], &h);
    mach_allreduce_begin(t->sum);
    if (isfinite(*loss) || t->c->nranks > 1)
      m->backward(t->params, t->state, (const mach_real *const *)t->cot, t->dstate, t->grad, n, 0,
                  t->sum ? mach_allreduce_ready : NULL, t->sum);
  } else {
    memset(t->grad, 0, (size_t)P * sizeof *t->grad);
    mach_allreduce_begin(t->sum);
  }
  sync_step(t, loss, &h);
  *hits += h;
  if (!isfinite(*loss))
    return isnan(*loss) ? "loss is nan" : "loss is inf";
  if (!guard(t, t->grad))
    return "gradient is not finite";
  if (t->cfg.clip_norm > 0)
    mach_clip_norm(t->grad, P, t->cfg.clip_norm);
  o.lr = current_lr(t);
  if (!mach_optim_step(&o, m, t->params, t->spare, t->grad, t->ostate, t->k.step + 1))
    return "parameters are not finite after the update"; /* params: still the last good ones */
  mach_real *old = t->params;
  t->params = t->spare, t->spare = old;
  t->k.step++;
  return NULL;
}

/* ---- reporting --------------------------------------------------------------- */

/* "loss L<sep>val_loss V<sep>acc A", the optional parts when they apply. */
static void format_row(char *buf, size_t cap, const struct mach_logrow *r, const char *sep) {
  size_t n = (size_t)snprintf(buf, cap, "loss %.6g", r->v[MACH_LOG_LOSS]);
  if (!isnan(r->v[MACH_LOG_VAL_LOSS]))
    n += (size_t)snprintf(buf + n, cap - n, "%sval_loss %.6g", sep, r->v[MACH_LOG_VAL_LOSS]);
  if (!isnan(r->v[MACH_LOG_ACC]))
    snprintf(buf + n, cap - n, "%sacc %.4g", sep, r->v[MACH_LOG_ACC]);
}

static void draw_bar(struct trainer *t, long epoch, const struct mach_logrow *r) {
  char stats[160], eta[32] = "";
  int width = 24, fill = (int)(width * epoch / t->cfg.epochs);
  double now = mach_now(), el = now - t->t0;
  /* A terminal cannot show more than ~10 frames a second; more is just cost. */
  if (epoch < t->cfg.epochs && epoch > 1 && now - t->drawn < 0.1)
    return;
  t->drawn = now;
  format_row(stats, sizeof stats, r, "  ");
  if (epoch < t->cfg.epochs)
    snprintf(eta, sizeof eta, "  ETA %.0fs", el / (double)epoch * (double)(t->cfg.epochs - epoch));
  fprintf(stderr, "\r%s: epoch %ld/%ld [%.*s%*s] %s%s\033[K", t->c->prog, epoch, t->cfg.epochs,
          fill, "========================", width - fill, "", stats, eta);
  fflush(stderr);
}

static void report(struct trainer *t, const struct mach_logrow *r) {
  char stats[160];
  long e = t->k.epoch;
  if (t->cfg.bar) {
    draw_bar(t, e, r);
    return;
  }
  if (t->cfg.quiet || (e % t->cfg.print_every != 0 && e != t->cfg.epochs))
    return;
  format_row(stats, sizeof stats, r, "  ");
  printf("epoch %ld/%ld  %s\n", e, t->cfg.epochs, stats);
  fflush(stdout);
}

static void log_line(FILE *f, const struct mach_logrow *r) {
  static const char *const fmt[MACH_LOG_COLS] = {"%.0f", "%.0f", "%.9g", "%.9g", "%.6g",
                                                 "%.3f", "%.9g"};
  for (int j = 0; j < MACH_LOG_COLS; j++) {
    if (j)
      fputc(',', f);
    if (!isnan(r->v[j]))
      fprintf(f, fmt[j], r->v[j]);
  }
  fputc('\n', f);
}

/* --log: the header and the rows so far (a resumed run's from its checkpoint). */
static int open_log(struct trainer *t) {
  if (!t->cfg.log)
    return 0;
  t->logf = strcmp(t->cfg.log, "-") == 0 ? stdout : fopen(t->cfg.log, "w");
  if (!t->logf) {
    mach_err(t->c, "%s: cannot write: %s", t->cfg.log, strerror(errno));
    return 1;
  }
  fprintf(t->logf, "epoch,step,loss,val_loss,accuracy,seconds,lr\n");
  for (long i = 0; i < t->k.n_log; i++)
    log_line(t->logf, &t->k.log[i]);
  return fflush(t->logf) == 0 ? 0 : 1;
}

static int close_log(struct trainer *t) {
  int bad;
  if (!t->logf)
    return 0;
  bad = fflush(t->logf) != 0 || ferror(t->logf);
  if (t->logf != stdout)
    bad |= fclose(t->logf) != 0;
  t->logf = NULL;
  if (bad)
    mach_err(t->c, "%s: cannot write", t->cfg.log);
  return bad;
}

static int add_log(struct trainer *t, const struct mach_logrow *r) {
  if (t->k.n_log == t->cap_log) {
    long cap = t->cap_log ? 2 * t->cap_log : 64;
    struct mach_logrow *nl = realloc(t->k.log, (size_t)cap * sizeof *nl);
    if (!nl) {
      mach_err(t->c, "out of memory");
      return 1;
    }
    t->k.log = nl;
    t->cap_log = cap;
  }
  t->k.log[t->k.n_log++] = *r;
  if (!t->logf)
    return 0;
  log_line(t->logf, r);
  if (fflush(t->logf) != 0) {
    mach_err(t->c, "%s: cannot write", t->cfg.log);
    return 1;
  }
  return 0;
}

/* ---- checkpoints ---------------------------------------------------------------- */

/* --out: the kept weights (the best epoch's with --keep-best, else the
 * current ones) and the state to resume from. */
static int save_checkpoint(struct trainer *t) {
  int best = t->cfg.keep_best && t->k.best_epoch > 0;
  t->k.seconds = mach_now() - t->t0;
  memcpy(t->k.rng, t->rng.s, sizeof t->k.rng);
  t->k.perm = t->perm;
  t->k.ostate = t->ostate;
  t->k.last = best ? t->params : NULL;
  return mach_dist_agree(t->c, "train",
                         mach_dist_root(t->c)
                             ? mach_ckpt_save(t->c, t->cfg.out, best ? t->best : t->params, &t->k)
                             : 0);
}

/* ---- the loop ----------------------------------------------------------------- */

/* Runs epoch k.epoch + 1 (or what is left of it after a resume) up to its
 * end, or to the first step after a stop signal. Returns NULL or the failure. */
static const char *run_epoch(struct trainer *t) {
  double bl;
  while (t->k.pos < t->n_train && !stopping(t)) {
    long s = t->k.pos, b = t->n_train - s < t->batch ? t->n_train - s : t->batch;
    if (s == 0) { /* only with a step to follow: a stop signal arriving before it
                     checkpoints the epoch unshuffled, as a resume expects */
      shuffle(t->perm, t->n_train, &t->rng);
      t->k.loss_sum = 0;
      t->k.hits = 0;
    }
    const char *why = step(t, s, b, &bl, &t->k.hits);
    if (why)
      return why;
    t->k.loss_sum += bl;
    t->k.pos += b;
  }
  return NULL;
}

/* The finished epoch's row: training loss, validation, accuracy. */
static void close_epoch(struct trainer *t, struct mach_logrow *r) {
  long vhits = 0;
  for (int j = 0; j < MACH_LOG_COLS; j++)
    r->v[j] = NAN;
  t->k.epoch++;
  t->k.pos = 0;
  r->v[MACH_LOG_EPOCH] = (double)t->k.epoch;
  r->v[MACH_LOG_STEP] = (double)t->k.step;
  r->v[MACH_LOG_LOSS] = t->k.loss_sum / mach_loss_norm(t->d.loss, t->n_train, t->d.counted);
  if (t->n_val > 0)
    r->v[MACH_LOG_VAL_LOSS] = mach_eval_shards(t->c, t->params, t->val, t->vlo, t->vhi,
                                               t->batch, t->state, &vhits) /
                              mach_loss_norm(t->d.loss, t->n_val, t->d.counted);
  if (t->d.loss == MACH_LOSS_XENT)
    r->v[MACH_LOG_ACC] = t->n_val > 0 ? (double)vhits / (double)t->n_val
                                      : (double)t->k.hits / (double)t->n_train;
  r->v[MACH_LOG_SECONDS] = mach_now() - t->t0;
  r->v[MACH_LOG_LR] = mach_sched_lr(&t->cfg.sched, t->cfg.opt.lr, t->k.step - 1);
}

/* Tracks the best validation epoch; returns 1 when patience has run out. */
static int track_best(struct trainer *t, const struct mach_logrow *r) {
  if (t->n_val == 0)
    return 0;
  if (r->v[MACH_LOG_VAL_LOSS] < t->k.best_loss) {
    t->k.best_loss = r->v[MACH_LOG_VAL_LOSS];
    t->k.best_epoch = t->k.epoch;
    t->k.bad_epochs = 0;
    if (t->cfg.keep_best)
      memcpy(t->best, t->params, (size_t)t->m->param_size * sizeof(mach_real));
    return 0;
  }
  t->k.bad_epochs++;
  return t->cfg.patience > 0 && t->k.bad_epochs >= t->cfg.patience;
}

static int fail(struct trainer *t, const char *why) {
  int rc;
  if (t->cfg.bar)
    fputs("\n", stderr);
  if (t->k.step == t->step0) { /* no good step: what --out holds is no worse */
    close_log(t);
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; no step succeeded, so %s "
                   "was not written",
             t->k.epoch + 1, t->k.step + 1, why, t->cfg.out);
    return 1;
  }
  rc = save_checkpoint(t);
  close_log(t);
  if (!mach_dist_root(t->c))
    return 1;
  if (rc)
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; could not save the weights",
             t->k.epoch + 1, t->k.step + 1, why);
  else if (t->cfg.keep_best && t->k.best_epoch > 0)
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; kept the best epoch's weights "
                   "(epoch %ld) in %s",
             t->k.epoch + 1, t->k.step + 1, why, t->k.best_epoch, t->cfg.out);
  else
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; kept the last good weights in %s",
             t->k.epoch + 1, t->k.step + 1, why, t->cfg.out);
  return 1;
}

/* A stop signal arrived: checkpoint, flush, say where, exit 128 + signal. */
static int interrupted(struct trainer *t) {
  int sig = stopping(t), rc;
  if (t->cfg.bar)
    fputs("\n", stderr);
  rc = save_checkpoint(t) | close_log(t);
  if (!mach_dist_root(t->c))
    return rc ? 1 : 128 + sig;
  if (t->k.pos > 0)
    mach_err(t->c, "%s: stopped in epoch %ld/%ld after step %ld (sample %ld of %ld); %s %s "
                   "(continue with --resume %s)",
             sig == SIGINT ? "SIGINT" : "SIGTERM", t->k.epoch + 1, t->cfg.epochs, t->k.step,
             t->k.pos, t->n_train, rc ? "could not write" : "checkpoint in", t->cfg.out,
             t->cfg.out);
  else
    mach_err(t->c, "%s: stopped after epoch %ld/%ld, step %ld; %s %s (continue with --resume %s)",
             sig == SIGINT ? "SIGINT" : "SIGTERM", t->k.epoch, t->cfg.epochs, t->k.step,
             rc ? "could not write" : "checkpoint in", t->cfg.out, t->cfg.out);
  return rc ? 1 : 128 + sig;
}

static int finish(struct trainer *t, const struct mach_logrow *r, int early) {
  char stats[160];
  if (t->cfg.bar)
    fputs("\n", stderr);
  if (!mach_dist_same(t->c, t->params, t->m->param_size)) {
    mach_err(t->c, "train: the ranks' parameters differ (the allreduce was not deterministic)");
    return mach_dist_agree(t->c, "train", 1);
  }
  if (save_checkpoint(t) || close_log(t))
    return 1;
  if (!mach_dist_root(t->c))
    return 0;
  format_row(stats, sizeof stats, r, " ");
  printf("final: %s (%ld epochs, %ld steps, %.2f s)", stats, t->k.epoch, t->k.step,
         mach_now() - t->t0);
  if (early)
    printf("; stopped early: no better val_loss in %ld epochs", t->cfg.patience);
  if (t->cfg.keep_best)
    printf("; kept epoch %ld (val_loss %.6g)", t->k.best_epoch, t->k.best_loss);
  else if (early)
    printf("; kept epoch %ld (the last)", t->k.epoch);
  printf("\n");
  return fflush(stdout) == 0 ? 0 : 1;
}

static int epochs(struct trainer *t, struct mach_logrow *r) {
  while (t->k.epoch < t->cfg.epochs) {
    const char *why;
    int early;
    if (stopping(t))
      return interrupted(t);
    if ((why = run_epoch(t)))
      return fail(t, why);
    if (t->k.pos < t->n_train) /* a signal cut the epoch short */
      return interrupted(t);
    close_epoch(t, r);
    early = track_best(t, r);
    if (mach_dist_agree(t->c, "train", add_log(t, r)))
      return 1;
    if (mach_dist_root(t->c))
      report(t, r);
    if (early)
      return finish(t, r, 1);
    if (t->cfg.checkpoint_every && t->k.epoch % t->cfg.checkpoint_every == 0 &&
        t->k.epoch < t->cfg.epochs && save_checkpoint(t))
      return 1;
  }
  return finish(t, r, 0);
}

static int loop(struct trainer *t) {
  struct sigaction sa, old_int, old_term;
  struct mach_logrow r;
  int rc;
  if (mach_dist_agree(t->c, "train", mach_dist_root(t->c) ? open_log(t) : 0))
    return 1;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESETHAND; /* a second Ctrl-C stops at once */
  sigemptyset(&sa.sa_mask);
  stop_signal = 0;
  t->step0 = t->k.step;
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  rc = epochs(t, &r);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  close_log(t);
  return rc;
}

int mach_cmd_train(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  struct trainer t;
  int rc = mach_args_parse(c, "train", train_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "train", stdout);
    return 0;
  }
  if (rc)
    return rc;
  if (!c->m->backward) {
    mach_err(c, "train: this model was compiled without a backward pass");
    return 2;
  }
  memset(&t, 0, sizeof t);
  t.c = c;
  t.m = c->m;
  rc = mach_dist_agree(c, "train", setup(&t, &a));
  if (!rc)
    rc = loop(&t);
  mach_dataset_free(&t.d);
  mach_dataset_free(&t.vd);
  mach_allreduce_free(t.sum);
  free(t.mem);
  free(t.perm);
  free(t.state);
  free(t.k.log);
  return rc;
}
