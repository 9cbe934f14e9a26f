/* train.c — `BIN train`: minibatch training with per-epoch reporting.
 *
 * Memory: the parameters, their gradient, a backup and the optimizer state
 * are carved from one allocation; the forward and dual states, the gathered
 * minibatch and the cotangents from another. The backup holds the parameters
 * before the current update, so when a step goes wrong (non-finite loss,
 * gradient or parameters) the weights saved are the last good ones.
 *
 * Shuffling uses its own xoshiro256** stream, seeded from --seed xor a
 * constant so it does not replay the numbers init drew from the same seed.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rt.h"

struct cfg {
  struct mach_optim_cfg opt;
  long epochs, batch, print_every, checkpoint_every;
  uint64_t seed;
  double val_split;
  const char *out, *init, *log;
  int quiet, bar;
};

struct logrow {
  long epoch, step;
  double loss, val_loss, acc, seconds; /* NAN: not applicable */
};

/* Everything the loop touches. */
struct trainer {
  const struct mach_ctx *c;
  const struct mach_model *m;
  struct cfg cfg;
  struct mach_dataset d;
  long n_train, n_val, batch, step;
  long *perm, *lbatch;          /* [n_train], [batch] labels */
  mach_real *params, *grad, *backup, *ostate; /* one allocation */
  mach_real *state, *dstate, *xb[64], *tb, *cot[64]; /* one allocation */
  struct logrow *log;
  long n_log, cap_log;
  double t0, drawn; /* start time; when the progress bar was last drawn */
};

static const struct mach_optspec train_opts[] = {
  {"data", MACH_OPT_MULTI},   {"targets", MACH_OPT_VALUE},   {"loss", MACH_OPT_VALUE},
  {"optimizer", MACH_OPT_VALUE}, {"lr", MACH_OPT_VALUE},     {"epochs", MACH_OPT_VALUE},
  {"batch", MACH_OPT_VALUE},  {"seed", MACH_OPT_VALUE},      {"out", MACH_OPT_VALUE},
  {"init", MACH_OPT_VALUE},   {"val-split", MACH_OPT_VALUE}, {"log", MACH_OPT_VALUE},
  {"momentum", MACH_OPT_VALUE}, {"beta1", MACH_OPT_VALUE},   {"beta2", MACH_OPT_VALUE},
  {"eps", MACH_OPT_VALUE},    {"weight-decay", MACH_OPT_VALUE}, {"print-every", MACH_OPT_VALUE},
  {"checkpoint-every", MACH_OPT_VALUE}, {"quiet", MACH_OPT_FLAG},
  {"target-output", MACH_OPT_VALUE},
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

static int parse_cfg(const struct mach_ctx *c, const struct mach_args *a, struct cfg *g) {
  int rc;
  memset(g, 0, sizeof *g);
  if ((rc = mach_arg_required(c, a, "out", &g->out)) ||
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
      (rc = mach_arg_long(c, a, "checkpoint-every", 0, 0, &g->checkpoint_every)))
    return rc;
  if (g->opt.kind == MACH_OPTIM_ADAM && (g->opt.beta1 >= 1 || g->opt.beta2 >= 1)) {
    mach_err(c, "train: --beta1 and --beta2 must be below 1");
    return 2;
  }
  g->init = mach_arg(a, "init");
  g->log = mach_arg(a, "log");
  g->quiet = mach_arg(a, "quiet") != NULL;
  g->bar = !g->quiet && isatty(fileno(stderr));
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
  t->params = mach_alloc(t->c, (size_t)(P * (3 + slots)) + 1, sizeof(mach_real));
  t->perm = mach_alloc(t->c, (size_t)(t->n_train + B) + 1, sizeof(long));
  if (!t->params || !t->perm)
    return 1;
  t->grad = t->params + P;
  t->backup = t->grad + P;
  t->ostate = t->backup + P;
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

static int setup(struct trainer *t, const struct mach_args *a) {
  const struct mach_ctx *c = t->c;
  int rc;
  if ((rc = parse_cfg(c, a, &t->cfg)) || (rc = mach_dataset_load(c, a, &t->d)))
    return rc;
  t->n_val = (long)floor(t->cfg.val_split * (double)t->d.n);
  t->n_train = t->d.n - t->n_val;
  if (t->n_train < 1) {
    mach_err(c, "train: --val-split %g leaves no training samples", t->cfg.val_split);
    return 2;
  }
  t->batch = t->cfg.batch < t->n_train ? t->cfg.batch : t->n_train;
  if (alloc_buffers(t))
    return 1;
  if (t->cfg.init) {
    if (mach_load_weights(c, t->cfg.init, t->params) || check_finite(c, t->cfg.init, t->params))
      return 1;
  } else {
    mach_init_params(t->m, t->cfg.seed, t->params);
  }
  for (long i = 0; i < t->n_train; i++)
    t->perm[i] = i;
  t->t0 = mach_now();
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

static int all_finite(const mach_real *p, long n) {
  for (long i = 0; i < n; i++)
    if (!isfinite(p[i]))
      return 0;
  return 1;
}

/* Returns NULL or what went wrong. *loss gets the batch's summed loss. */
static const char *step(struct trainer *t, long start, long b, double *loss, long *hits) {
  const struct mach_model *m = t->m;
  const struct mach_block *ob = &m->blocks[m->outputs[t->d.out]];
  long P = m->param_size;
  gather_batch(t, start, b);
  m->forward(t->params, (const mach_real *const *)t->xb, t->state, b);
  *loss = mach_loss_eval(t->d.loss, t->state + b * ob->z_offset, t->tb, t->lbatch, b, t->d.size,
                         b, t->cot[t->d.out], hits);
  if (!isfinite(*loss))
    return isnan(*loss) ? "loss is nan" : "loss is inf";
  m->backward(t->params, t->state, (const mach_real *const *)t->cot, t->dstate, t->grad, b);
  if (!all_finite(t->grad, P))
    return "gradient is not finite";
  memcpy(t->backup, t->params, (size_t)P * sizeof(mach_real));
  mach_optim_step(&t->cfg.opt, m, t->params, t->grad, t->ostate, t->step + 1);
  if (!all_finite(t->params, P)) {
    memcpy(t->params, t->backup, (size_t)P * sizeof(mach_real));
    return "parameters are not finite after the update";
  }
  t->step++;
  return NULL;
}

/* ---- reporting --------------------------------------------------------------- */

/* "loss L<sep>val_loss V<sep>acc A", the optional parts when they apply. */
static void format_row(char *buf, size_t cap, const struct logrow *r, const char *sep) {
  size_t n = (size_t)snprintf(buf, cap, "loss %.6g", r->loss);
  if (!isnan(r->val_loss))
    n += (size_t)snprintf(buf + n, cap - n, "%sval_loss %.6g", sep, r->val_loss);
  if (!isnan(r->acc))
    snprintf(buf + n, cap - n, "%sacc %.4g", sep, r->acc);
}

static void draw_bar(struct trainer *t, long epoch, const struct logrow *r) {
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

static void report(struct trainer *t, const struct logrow *r) {
  char stats[160];
  if (t->cfg.bar) {
    draw_bar(t, r->epoch, r);
    return;
  }
  if (t->cfg.quiet || (r->epoch % t->cfg.print_every != 0 && r->epoch != t->cfg.epochs))
    return;
  format_row(stats, sizeof stats, r, "  ");
  printf("epoch %ld/%ld  %s\n", r->epoch, t->cfg.epochs, stats);
  fflush(stdout);
}

static int add_log(struct trainer *t, const struct logrow *r) {
  if (t->n_log == t->cap_log) {
    long cap = t->cap_log ? 2 * t->cap_log : 64;
    struct logrow *nl = realloc(t->log, (size_t)cap * sizeof *nl);
    if (!nl) {
      mach_err(t->c, "out of memory");
      return 1;
    }
    t->log = nl;
    t->cap_log = cap;
  }
  t->log[t->n_log++] = *r;
  return 0;
}

static void cell(FILE *f, double v, const char *fmt) {
  fputc(',', f);
  if (!isnan(v))
    fprintf(f, fmt, v);
}

static int write_log(struct trainer *t) {
  struct mach_out o;
  if (!t->cfg.log)
    return 0;
  if (mach_out_open(t->c, t->cfg.log, &o))
    return 1;
  fprintf(o.f, "epoch,step,loss,val_loss,accuracy,seconds\n");
  for (long i = 0; i < t->n_log; i++) {
    const struct logrow *r = &t->log[i];
    fprintf(o.f, "%ld,%ld", r->epoch, r->step);
    cell(o.f, r->loss, "%.9g");
    cell(o.f, r->val_loss, "%.9g");
    cell(o.f, r->acc, "%.6g");
    cell(o.f, r->seconds, "%.3f");
    fputc('\n', o.f);
  }
  return mach_out_close(t->c, &o);
}

/* ---- the loop ----------------------------------------------------------------- */

static void shuffle(long *perm, long n, struct mach_rng *r) {
  for (long i = n - 1; i > 0; i--) {
    long j = (long)mach_rng_below(r, (uint64_t)i + 1), tmp = perm[i];
    perm[i] = perm[j];
    perm[j] = tmp;
  }
}

/* Runs one epoch; returns NULL or the failure, with *fail_step set. */
static const char *epoch(struct trainer *t, struct mach_rng *rng, struct logrow *r) {
  double sum = 0, bl;
  long hits = 0, vhits = 0;
  shuffle(t->perm, t->n_train, rng);
  for (long s = 0; s < t->n_train; s += t->batch) {
    long b = t->n_train - s < t->batch ? t->n_train - s : t->batch;
    const char *why = step(t, s, b, &bl, &hits);
    if (why)
      return why;
    sum += bl;
  }
  r->step = t->step;
  r->loss = sum / mach_loss_norm(t->d.loss, t->n_train, t->d.size);
  r->val_loss = r->acc = NAN;
  if (t->n_val > 0)
    r->val_loss = mach_eval_range(t->m, t->params, &t->d, t->n_train, t->d.n, t->batch, t->state,
                                  &vhits) /
                  mach_loss_norm(t->d.loss, t->n_val, t->d.size);
  if (t->d.loss == MACH_LOSS_XENT)
    r->acc = t->n_val > 0 ? (double)vhits / (double)t->n_val : (double)hits / (double)t->n_train;
  r->seconds = mach_now() - t->t0;
  return NULL;
}

static int fail(struct trainer *t, long e, const char *why) {
  int rc;
  if (t->cfg.bar)
    fputs("\n", stderr);
  rc = mach_save_weights(t->c, t->cfg.out, t->params);
  write_log(t);
  if (rc)
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; could not save the weights", e,
             t->step + 1, why);
  else
    mach_err(t->c, "training stopped at epoch %ld, step %ld: %s; kept the last good weights in %s",
             e, t->step + 1, why, t->cfg.out);
  return 1;
}

static int loop(struct trainer *t) {
  struct mach_rng rng;
  struct logrow r = {0};
  char stats[160];
  long e;
  mach_rng_seed(&rng, t->cfg.seed ^ 0x53485546464c45u); /* "SHUFFLE" */
  for (e = 1; e <= t->cfg.epochs; e++) {
    const char *why = epoch(t, &rng, &r);
    if (why)
      return fail(t, e, why);
    r.epoch = e;
    if (add_log(t, &r))
      return 1;
    report(t, &r);
    if (t->cfg.checkpoint_every && e % t->cfg.checkpoint_every == 0 && e < t->cfg.epochs &&
        mach_save_weights(t->c, t->cfg.out, t->params))
      return 1;
  }
  if (t->cfg.bar)
    fputs("\n", stderr);
  if (mach_save_weights(t->c, t->cfg.out, t->params) || write_log(t))
    return 1;
  format_row(stats, sizeof stats, &r, " ");
  printf("final: %s (%ld epochs, %ld steps, %.2f s)\n", stats, t->cfg.epochs, t->step,
         mach_now() - t->t0);
  return fflush(stdout) == 0 ? 0 : 1;
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
  rc = setup(&t, &a);
  if (!rc)
    rc = loop(&t);
  mach_dataset_free(&t.d);
  free(t.params);
  free(t.perm);
  free(t.state);
  free(t.log);
  return rc;
}
