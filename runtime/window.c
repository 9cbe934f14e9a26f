/* window.c — time series for machines with a time axis (causal convolutions,
 * recurrent machines): `--windows T[:S]` cuts long series into samples of T
 * steps, one every S steps, and `--warmup-steps K` leaves the first K steps
 * of every sample out of the loss, while the machine's state through time
 * is still filling.
 *
 * A series file is a table [steps, columns] (CSV lines or a 1- or 2-D
 * array); --data-cols and --target-cols choose columns. The input block
 * C @ [T] takes C columns per series, so a table of m*C columns holds m
 * series side by side (one column each for C = 1). Targets come from
 * --targets, cut at the same places, or else from the data one step ahead
 * (next-step forecasting: the target at step t is the series at t + 1).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

struct table {
  double *v; /* [rows, cols] */
  long rows, cols;
};

static int parse_windows(const struct mach_ctx *c, const struct mach_args *a, long *T, long *S) {
  const char *v = mach_arg(a, "windows");
  char *end;
  *T = strtol(v, &end, 10);
  *S = *T;
  if (*end == ':')
    *S = strtol(end + 1, &end, 10);
  if (*v < '0' || *v > '9' || *end || *T < 1 || *S < 1) {
    mach_err(c, "%s: --windows: '%s' is not T or T:S, window length and stride >= 1 (try '%s "
                "%s --help')", a->cmd, v, c->prog, a->cmd);
    return 2;
  }
  return 0;
}

/* C @ [T]: the block's channels and time length, or 0 and a message. */
static int time_block(const struct mach_ctx *c, const struct mach_args *a,
                      const struct mach_block *b, const char *role, long T, long *C) {
  if (b->rank != 2) {
    mach_err(c, "%s: --windows needs a machine whose %s has one time axis (C @ [T]); '%s' has "
                "%d grid axes", a->cmd, role, b->name, b->rank - 1);
    return 2;
  }
  if (b->shape[1] != T) {
    mach_err(c, "%s: --windows %ld: the %s '%s' has %d time steps; windows must be as long",
             a->cmd, T, role, b->name, b->shape[1]);
    return 2;
  }
  *C = b->shape[0];
  return 0;
}

/* Window w of series j: C channels of T steps from step s, channel-major. */
static void cut(const struct table *tb, long j, long C, long s, long T, mach_real *dst) {
  for (long ch = 0; ch < C; ch++)
    for (long t = 0; t < T; t++)
      dst[ch * T + t] = (mach_real)tb->v[(s + t) * tb->cols + j * C + ch];
}

static int series_count(const struct mach_ctx *c, const char *path, const struct table *tb,
                        long C, const char *role, const char *name, long *m) {
  if (tb->cols % C != 0 || tb->cols == 0) {
    mach_err(c, "%s: has %ld columns, expected a multiple of %ld (the channels of %s '%s', one "
                "group per series)", path, tb->cols, C, role, name);
    return 1;
  }
  *m = tb->cols / C;
  return 0;
}

int mach_windows_load(const struct mach_ctx *c, const struct mach_args *a,
                      const struct mach_dataopts *o, const struct mach_block *b,
                      struct mach_dataset *d) {
  const struct mach_model *m = c->m;
  const struct mach_block *in = &m->blocks[m->inputs[0]];
  const char *dpath = mach_arg(a, "data"), *tpath = mach_arg(a, "targets");
  struct table x = {0}, y = {0};
  long T, S, Cin, Cout, mx, my, shift, per, n = 0;
  int rc;
  if ((rc = parse_windows(c, a, &T, &S)))
    return rc;
  if (m->n_inputs != 1 || mach_arg_count(a, "data") != 1 || d->loss != MACH_LOSS_MSE) {
    mach_err(c, "%s: --windows needs one input, one --data file and --loss mse", a->cmd);
    return 2;
  }
  if ((rc = time_block(c, a, in, "input", T, &Cin)) || (rc = time_block(c, a, b, "output", T, &Cout)))
    return rc;
  d->next_step = !tpath;
  shift = d->next_step ? 1 : 0;
  rc = 1;
  if (mach_load_table(c, dpath, o, o->data_cols, &x.v, &x.rows, &x.cols) ||
      mach_load_table(c, tpath ? tpath : dpath, o, o->target_cols ? o->target_cols : o->data_cols,
                      &y.v, &y.rows, &y.cols) ||
      series_count(c, dpath, &x, Cin, "input", in->name, &mx) ||
      series_count(c, tpath ? tpath : dpath, &y, Cout, "output", b->name, &my))
    goto done;
  if (mx != my || x.rows != y.rows) {
    mach_err(c, "%s: holds %ld series of %ld steps, but %s holds %ld of %ld", tpath ? tpath : dpath,
             my, y.rows, dpath, mx, x.rows);
    goto done;
  }
  per = x.rows - shift >= T ? (x.rows - shift - T) / S + 1 : 0;
  if (per == 0) {
    mach_err(c, "%s: %ld steps are too few for one window of %ld steps%s", dpath, x.rows, T,
             shift ? " and the step after it" : "");
    goto done;
  }
  d->n = per * mx;
  d->xs[0] = mach_alloc(c, (size_t)(d->n * in->size) + 1, sizeof(mach_real));
  d->t = mach_alloc(c, (size_t)(d->n * b->size) + 1, sizeof(mach_real));
  if (!d->xs[0] || !d->t)
    goto done;
  for (long j = 0; j < mx; j++)
    for (long w = 0; w < per; w++, n++) {
      cut(&x, j, Cin, w * S, T, d->xs[0] + n * in->size);
      cut(&y, j, Cout, w * S + shift, T, d->t + n * b->size);
    }
  if (o->scale != 1) /* next-step targets are the same series: scaled alike */
    for (long i = 0; i < d->n * in->size; i++)
      d->xs[0][i] *= (mach_real)o->scale;
  if (o->scale != 1 && d->next_step)
    for (long i = 0; i < d->n * b->size; i++)
      d->t[i] *= (mach_real)o->scale;
  rc = 0;
done:
  free(x.v);
  free(y.v);
  return rc;
}

int mach_windows_warmup(const struct mach_ctx *c, const struct mach_args *a,
                        const struct mach_block *b, struct mach_dataset *d) {
  long K, T;
  int rc = mach_arg_long(c, a, "warmup-steps", 0, 0, &K);
  d->counted = d->size;
  if (rc || K == 0)
    return rc;
  if (b->rank != 2 || d->loss != MACH_LOSS_MSE) {
    mach_err(c, "%s: --warmup-steps needs --loss mse and an output with one time axis (C @ [T]); "
                "'%s' has %d grid axes", a->cmd, b->name, b->rank - 1);
    return 2;
  }
  T = b->shape[1];
  if (K >= T) {
    mach_err(c, "%s: --warmup-steps %ld leaves nothing of the %ld time steps of '%s'", a->cmd, K,
             T, b->name);
    return 2;
  }
  for (long i = 0; i < d->n; i++)
    for (long ch = 0; ch < b->shape[0]; ch++)
      for (long t = 0; t < K; t++)
        d->t[i * d->size + ch * T + t] = (mach_real)NAN;
  d->counted = b->shape[0] * (T - K);
  return 0;
}

double mach_windows_naive(const struct mach_ctx *c, const struct mach_dataset *d) {
  const struct mach_block *in = &c->m->blocks[c->m->inputs[0]];
  double sum = 0;
  long cnt = 0;
  if (!d->next_step || in->size != d->size)
    return NAN;
  for (long i = 0; i < d->n * d->size; i++)
    if (!isnan(d->t[i])) {
      double e = (double)d->xs[0][i] - (double)d->t[i];
      sum += e * e;
      cnt++;
    }
  return cnt ? sum / (double)cnt : NAN;
}
