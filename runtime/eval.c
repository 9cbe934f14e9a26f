/* eval.c — labelled data (shared by train and eval) and `BIN eval`. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static int pick_output(const struct mach_ctx *c, const struct mach_args *a, int *out) {
  const struct mach_model *m = c->m;
  const char *name = mach_arg(a, "target-output");
  if (!name) {
    if (m->n_outputs != 1) {
      mach_err(c, "%s: the model has %d outputs; choose one with --target-output NAME (try '%s %s --help')",
               a->cmd, m->n_outputs, c->prog, a->cmd);
      return 2;
    }
    *out = 0;
    return 0;
  }
  for (int k = 0; k < m->n_outputs; k++)
    if (strcmp(m->blocks[m->outputs[k]].name, name) == 0) {
      *out = k;
      return 0;
    }
  mach_err(c, "%s: --target-output: '%s' is not an output block (try '%s info')", a->cmd, name,
           c->prog);
  return 2;
}

static int pick_loss(const struct mach_ctx *c, const struct mach_args *a,
                     const struct mach_block *b, enum mach_loss *loss) {
  const char *v;
  int rc = mach_arg_required(c, a, "loss", &v);
  if (rc)
    return rc;
  if (strcmp(v, "mse") == 0) {
    *loss = MACH_LOSS_MSE;
  } else if (strcmp(v, "xent") == 0) {
    *loss = MACH_LOSS_XENT;
    if (b->rank != 1) {
      mach_err(c, "%s: --loss xent needs a flat output block, but '%s' has %d axes", a->cmd,
               b->name, b->rank);
      return 2;
    }
    /* xent takes logits and applies the softmax itself: a second one would
     * train a different, badly conditioned loss */
    if (b->activation && strcmp(b->activation, "softmax") == 0) {
      mach_err(c, "%s: --loss xent applies the softmax itself, but output '%s' already ends in "
                  "softmax; make the output the logits (no activation) and use 'predict --proba' "
                  "for probabilities",
               a->cmd, b->name);
      return 2;
    }
  } else {
    mach_err(c, "%s: --loss: '%s' is not mse or xent (try '%s %s --help')", a->cmd, v, c->prog,
             a->cmd);
    return 2;
  }
  return 0;
}

/* --targets, or with --target-cols and one --data file, that file; then the
 * data columns default to the others. */
static int target_path(const struct mach_ctx *c, const struct mach_args *a,
                       struct mach_dataopts *o, char *not_targets, size_t cap,
                       const char **tpath) {
  const char *data = mach_arg_count(a, "data") == 1 ? mach_arg_nth(a, "data", 0) : NULL;
  *tpath = mach_arg(a, "targets");
  if (!*tpath && o->target_cols && data && !strchr(data, '='))
    *tpath = data;
  if (!*tpath)
    return mach_arg_missing(c, a, "targets");
  if (o->target_cols && !o->data_cols && data && strcmp(data, *tpath) == 0) {
    snprintf(not_targets, cap, "!%s", o->target_cols);
    o->data_cols = not_targets;
  }
  return 0;
}

int mach_dataset_load(const struct mach_ctx *c, const struct mach_args *a,
                      struct mach_dataset *d) {
  const struct mach_model *m = c->m;
  const struct mach_block *b;
  const char *tpath;
  struct mach_dataopts o;
  char not_targets[512];
  long nt;
  int rc;
  memset(d, 0, sizeof *d);
  if (m->n_inputs > 64) {
    mach_err(c, "more than 64 inputs are not supported");
    return 1;
  }
  if ((rc = pick_output(c, a, &d->out)))
    return rc;
  b = &m->blocks[m->outputs[d->out]];
  d->size = b->size;
  if ((rc = pick_loss(c, a, b, &d->loss)) || (rc = mach_dataopts_get(c, a, &o)))
    return rc;
  if (!mach_arg(a, "data"))
    return mach_arg_missing(c, a, "data");
  if (mach_arg(a, "windows"))
    return (rc = mach_windows_load(c, a, &o, b, d)) ? rc : mach_windows_warmup(c, a, b, d);
  if ((rc = target_path(c, a, &o, not_targets, sizeof not_targets, &tpath)) ||
      (rc = mach_load_inputs_opt(c, a, "data", NULL, &o, d->xs, &d->n)))
    return rc;
  if (d->loss == MACH_LOSS_MSE
          ? mach_load_samples_opt(c, tpath, b, "output", &o, o.target_cols, &d->t, &nt)
          : mach_load_labels_opt(c, tpath, b->size, &o, o.target_cols, &d->labels, &nt))
    return 1;
  if (nt != d->n) {
    mach_err(c, "%s: has %ld samples, but the data has %ld", tpath, nt, d->n);
    return 1;
  }
  if (d->n == 0) {
    mach_err(c, "%s: no samples", tpath);
    return 1;
  }
  return mach_windows_warmup(c, a, b, d);
}

void mach_dataset_free(struct mach_dataset *d) {
  for (int k = 0; k < 64; k++)
    free(d->xs[k]);
  free(d->t);
  free(d->labels);
}

double mach_eval_range(const struct mach_model *m, const mach_real *params,
                       const struct mach_dataset *d, long lo, long hi, long batch,
                       mach_real *state, long *hits) {
  const struct mach_block *ob = &m->blocks[m->outputs[d->out]];
  const mach_real *in[64];
  double sum = 0;
  for (long s = lo; s < hi; s += batch) {
    long b = hi - s < batch ? hi - s : batch;
    for (int k = 0; k < m->n_inputs; k++)
      in[k] = d->xs[k] + s * m->blocks[m->inputs[k]].size;
    m->forward(params, in, state, b);
    sum += mach_loss_eval(d->loss, state + b * ob->z_offset, d->t ? d->t + s * d->size : NULL,
                          d->labels ? d->labels + s : NULL, b, d->size, b, NULL, hits);
  }
  return sum;
}

double mach_eval_shards(const struct mach_ctx *c, const mach_real *params,
                        const struct mach_dataset *d, long lo, long hi, long batch,
                        mach_real *state, long *hits) {
  long mlo, mhi, h = 0;
  double v[2];
  mach_dist_shard(c, lo, hi, &mlo, &mhi);
  v[0] = mach_eval_range(c->m, params, d, mlo, mhi, batch, state, &h);
  v[1] = (double)h;
  mach_dist_sum_doubles(c, v, 2);
  *hits += (long)v[1];
  return v[0];
}

static const struct mach_optspec eval_opts[] = {
  {"weights", MACH_OPT_VALUE},
  {"data", MACH_OPT_MULTI},
  {"targets", MACH_OPT_VALUE},
  {"loss", MACH_OPT_VALUE},
  {"target-output", MACH_OPT_VALUE},
  {"batch", MACH_OPT_VALUE},
  {"allow-nonfinite", MACH_OPT_FLAG},
  MACH_THREADS_OPT,
  MACH_DATA_OPTS,
  {NULL, MACH_OPT_FLAG},
};

/* NaN or infinite weights or inputs give a NaN loss that says nothing of
 * where it came from: refused, unless --allow-nonfinite. */
static int check_finite(const struct mach_ctx *c, const struct mach_args *a, const char *w,
                        const mach_real *params, const struct mach_dataset *d) {
  const struct mach_model *m = c->m;
  if (mach_arg(a, "allow-nonfinite"))
    return 0;
  if (mach_check_finite_params(c, w, params))
    return 1;
  for (int k = 0; k < m->n_inputs; k++) {
    const struct mach_block *b = &m->blocks[m->inputs[k]];
    if (mach_check_finite_samples(c, "eval", b->name, d->xs[k], 0, d->n, b->size))
      return 1;
  }
  return 0;
}

static int run_eval(const struct mach_ctx *c, const struct mach_args *a) {
  const struct mach_model *m = c->m;
  struct mach_dataset d;
  mach_real *params = NULL, *state = NULL;
  const char *w;
  long batch, hits = 0;
  double sum;
  int rc;
  if ((rc = mach_threads_set(c, a)) || (rc = mach_arg_required(c, a, "weights", &w)) ||
      (rc = mach_arg_long(c, a, "batch", 256, 1, &batch)))
    return rc;
  if ((rc = mach_dataset_load(c, a, &d)) == 0) {
    if (batch > d.n)
      batch = d.n;
    params = mach_alloc(c, (size_t)m->param_size + 1, sizeof *params);
    state = mach_alloc(c, (size_t)(batch * m->state_size) + 1, sizeof *state);
    rc = !params || !state || mach_load_weights(c, w, params) ||
         check_finite(c, a, w, params, &d);
  }
  if ((rc = mach_dist_agree(c, "eval", rc)))
    goto done;
  sum = mach_eval_shards(c, params, &d, 0, d.n, batch, state, &hits);
  if (!mach_dist_root(c))
    goto done;
  printf("loss %.9g\n", sum / mach_loss_norm(d.loss, d.n, d.counted));
  if (d.loss == MACH_LOSS_XENT)
    printf("accuracy %.9g\n", (double)hits / (double)d.n);
  if (d.next_step) /* the loss is then the one-step-ahead error */
    printf("one-step-ahead mse %.9g over %ld windows x %ld values; last-value forecast %.9g\n",
           sum / mach_loss_norm(d.loss, d.n, d.counted), d.n, d.counted,
           mach_windows_naive(c, &d));
  rc = fflush(stdout) == 0 ? 0 : 1;
done:
  free(params);
  free(state);
  mach_dataset_free(&d);
  return rc;
}

int mach_cmd_eval(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  int rc = mach_args_parse(c, "eval", eval_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "eval", stdout);
    return 0;
  }
  return rc ? rc : run_eval(c, &a);
}
