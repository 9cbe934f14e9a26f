/* checkpoint.c — training checkpoints: the weights, as mach_save_weights
 * writes them, plus what a run needs to continue exactly where it stopped,
 * in entries under the reserved prefix "train/" (a '/' cannot occur in a
 * parameter name, and mach_load_weights ignores entries it does not know,
 * so `forward` and `--init` read a checkpoint like any weights file).
 *
 * Every entry is an array of the model's real type, so f32 checkpoints stay
 * f32. Integers, the RNG state and doubles (their IEEE bits) must come back
 * bit for bit, which a float cannot hold beyond 2^24: they are stored as
 * rows of four 16-bit digits, least significant first.
 *
 *   train/counters [MACH_CK_N, 4]   see enum mach_ck_counter
 *   train/rng      [4, 4]           the shuffling stream's xoshiro state
 *   train/perm     [n_train, 4]     the current epoch's sample order
 *   train/optimizer [slots, P]      momentum / Adam moments (absent for sgd)
 *   train/last     [P]              the current parameters, when the weights
 *                                   entries hold others (--keep-best)
 *   train/log      [epochs, MACH_LOG_COLS, 4]  the rows of the CSV log
 */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#define CK_VERSION 1

static void put_u64(mach_real *d, uint64_t v) {
  for (int i = 0; i < 4; i++)
    d[i] = (mach_real)((v >> (16 * i)) & 0xffffu);
}

/* 0, or -1 when the four digits are not integers in [0, 65535]. */
static int get_u64(const struct mach_array *a, long at, uint64_t *v) {
  *v = 0;
  for (int i = 0; i < 4; i++) {
    double x = mach_array_get(a, at + i);
    if (!(x >= 0 && x <= 65535) || x != (double)(uint64_t)x)
      return -1;
    *v |= (uint64_t)x << (16 * i);
  }
  return 0;
}

static uint64_t dbl_bits(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

static double bits_dbl(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}

static void counters_out(const struct mach_ckpt *k, uint64_t *v) {
  v[MACH_CK_VERSION] = CK_VERSION;
  v[MACH_CK_EPOCH] = (uint64_t)k->epoch;
  v[MACH_CK_POS] = (uint64_t)k->pos;
  v[MACH_CK_STEP] = (uint64_t)k->step;
  v[MACH_CK_OPTIM] = (uint64_t)k->optim;
  v[MACH_CK_N_TRAIN] = (uint64_t)k->n_train;
  v[MACH_CK_N_VAL] = (uint64_t)k->n_val;
  v[MACH_CK_SEED] = k->seed;
  v[MACH_CK_LOSS_SUM] = dbl_bits(k->loss_sum);
  v[MACH_CK_HITS] = (uint64_t)k->hits;
  v[MACH_CK_SECONDS] = dbl_bits(k->seconds);
  v[MACH_CK_BEST_EPOCH] = (uint64_t)k->best_epoch;
  v[MACH_CK_BEST_LOSS] = dbl_bits(k->best_loss);
  v[MACH_CK_BAD_EPOCHS] = (uint64_t)k->bad_epochs;
}

static void counters_in(struct mach_ckpt *k, const uint64_t *v) {
  k->epoch = (long)v[MACH_CK_EPOCH];
  k->pos = (long)v[MACH_CK_POS];
  k->step = (long)v[MACH_CK_STEP];
  k->optim = (int)v[MACH_CK_OPTIM];
  k->n_train = (long)v[MACH_CK_N_TRAIN];
  k->n_val = (long)v[MACH_CK_N_VAL];
  k->seed = v[MACH_CK_SEED];
  k->loss_sum = bits_dbl(v[MACH_CK_LOSS_SUM]);
  k->hits = (long)v[MACH_CK_HITS];
  k->seconds = bits_dbl(v[MACH_CK_SECONDS]);
  k->best_epoch = (long)v[MACH_CK_BEST_EPOCH];
  k->best_loss = bits_dbl(v[MACH_CK_BEST_LOSS]);
  k->bad_epochs = (long)v[MACH_CK_BAD_EPOCHS];
}

static void set_entry(struct mach_npz_entry *e, const char *name, int rank, long d0, long d1,
                      long d2, const mach_real *data) {
  snprintf(e->name, sizeof e->name, "%s%s", MACH_CK_PREFIX, name);
  e->rank = rank;
  e->shape[0] = d0;
  e->shape[1] = d1;
  e->shape[2] = d2;
  e->data = data;
}

int mach_ckpt_save(const struct mach_ctx *c, const char *path, const mach_real *weights,
                   const struct mach_ckpt *k) {
  const struct mach_model *m = c->m;
  long P = m->param_size, slots = mach_optim_slots((enum mach_optim)k->optim);
  long digits = 4 * (MACH_CK_N + 4 + k->n_train + k->n_log * MACH_LOG_COLS);
  struct mach_npz_entry *e = mach_alloc(c, (size_t)m->n_params + 6, sizeof *e);
  mach_real *buf = mach_alloc(c, (size_t)digits, sizeof *buf), *at = buf;
  uint64_t v[MACH_CK_N];
  int n = 0, rc = 1;
  if (!e || !buf)
    goto done;
  for (int p = 0; p < m->n_params; p++, n++) {
    snprintf(e[n].name, sizeof e[n].name, "%s", m->params[p].name);
    e[n].rank = m->params[p].rank;
    for (int d = 0; d < e[n].rank; d++)
      e[n].shape[d] = m->params[p].shape[d];
    e[n].data = weights + m->params[p].offset;
  }
  counters_out(k, v);
  for (int i = 0; i < MACH_CK_N; i++)
    put_u64(at + 4 * i, v[i]);
  set_entry(&e[n++], "counters", 2, MACH_CK_N, 4, 0, at);
  at += 4 * MACH_CK_N;
  for (int i = 0; i < 4; i++)
    put_u64(at + 4 * i, k->rng[i]);
  set_entry(&e[n++], "rng", 2, 4, 4, 0, at);
  at += 16;
  for (long i = 0; i < k->n_train; i++)
    put_u64(at + 4 * i, (uint64_t)k->perm[i]);
  set_entry(&e[n++], "perm", 2, k->n_train, 4, 0, at);
  at += 4 * k->n_train;
  if (slots)
    set_entry(&e[n++], "optimizer", 2, slots, P, 0, k->ostate);
  if (k->last)
    set_entry(&e[n++], "last", 1, P, 0, 0, k->last);
  for (long i = 0; i < k->n_log; i++)
    for (int j = 0; j < MACH_LOG_COLS; j++)
      put_u64(at + 4 * (i * MACH_LOG_COLS + j), dbl_bits(k->log[i].v[j]));
  set_entry(&e[n++], "log", 3, k->n_log, MACH_LOG_COLS, 4, at);
  rc = mach_npz_save(c, path, e, n);
done:
  free(e);
  free(buf);
  return rc;
}

/* ---- reading ------------------------------------------------------------ */

/* Entry `name` with exactly the given shape (rank entries of want). */
static int get_entry(const struct mach_ctx *c, const struct mach_npz *z, const char *name,
                     int rank, const long *want, struct mach_array *a) {
  char full[64], got[96], exp[96];
  int rc;
  snprintf(full, sizeof full, "%s%s", MACH_CK_PREFIX, name);
  rc = mach_npz_get(c, z, full, a);
  if (rc < 0)
    mach_err(c, "%s: not a complete training checkpoint: no entry '%s'", z->path, full);
  if (rc)
    return 1;
  if (a->rank == rank && memcmp(a->shape, want, sizeof(long) * (size_t)rank) == 0 &&
      mach_dtype_is_float(a->dtype))
    return 0;
  mach_shape_str(got, sizeof got, a->rank, a->shape);
  mach_shape_str(exp, sizeof exp, rank, want);
  mach_err(c, "%s: entry '%s' has shape %s (%s), expected %s of floats", z->path, full, got,
           a->descr, exp);
  return 1;
}

static int corrupt(const struct mach_ctx *c, const struct mach_npz *z, const char *name) {
  mach_err(c, "%s: entry '%s%s' is corrupt (not 16-bit digits)", z->path, MACH_CK_PREFIX, name);
  return 1;
}

static int read_counters(const struct mach_ctx *c, const struct mach_npz *z,
                         struct mach_ckpt *k) {
  struct mach_array a;
  uint64_t v[MACH_CK_N];
  long shape[2] = {MACH_CK_N, 4};
  struct mach_array probe;
  if (mach_npz_get(c, z, MACH_CK_PREFIX "counters", &probe) < 0) {
    mach_err(c, "%s: not a training checkpoint (no '%scounters' entry); to start from its "
                "weights use --init",
             z->path, MACH_CK_PREFIX);
    return 1;
  }
  if (get_entry(c, z, "counters", 2, shape, &a))
    return 1;
  for (int i = 0; i < MACH_CK_N; i++)
    if (get_u64(&a, 4 * i, &v[i]))
      return corrupt(c, z, "counters");
  if (v[MACH_CK_VERSION] != CK_VERSION) {
    mach_err(c, "%s: checkpoint format %llu, this binary reads %d", z->path,
             (unsigned long long)v[MACH_CK_VERSION], CK_VERSION);
    return 1;
  }
  counters_in(k, v);
  return 0;
}

/* Reads the arrays into the caller's buffers: perm [n_train], ostate
 * [slots * P]; last (when the checkpoint has one: *has_last = 1). */
static int read_arrays(const struct mach_ctx *c, const struct mach_npz *z, struct mach_ckpt *k,
                       mach_real *last, int *has_last) {
  const struct mach_model *m = c->m;
  struct mach_array a;
  long P = m->param_size, slots = mach_optim_slots((enum mach_optim)k->optim);
  long shape[3] = {4, 4, 0};
  uint64_t u;
  if (get_entry(c, z, "rng", 2, shape, &a))
    return 1;
  for (int i = 0; i < 4; i++)
    if (get_u64(&a, 4 * i, &k->rng[i]))
      return corrupt(c, z, "rng");
  shape[0] = k->n_train;
  if (get_entry(c, z, "perm", 2, shape, &a))
    return 1;
  for (long i = 0; i < k->n_train; i++) {
    if (get_u64(&a, 4 * i, &u) || u >= (uint64_t)k->n_train)
      return corrupt(c, z, "perm");
    k->perm[i] = (long)u;
  }
  shape[0] = slots;
  shape[1] = P;
  if (slots) {
    if (get_entry(c, z, "optimizer", 2, shape, &a))
      return 1;
    mach_array_to_real(&a, k->ostate);
  }
  *has_last = mach_npz_get(c, z, MACH_CK_PREFIX "last", &a) == 0;
  if (*has_last) {
    if (get_entry(c, z, "last", 1, &P, &a))
      return 1;
    mach_array_to_real(&a, last);
  }
  if (mach_npz_get(c, z, MACH_CK_PREFIX "log", &a) != 0 || a.rank != 3) {
    mach_err(c, "%s: not a complete training checkpoint: no entry '%slog' [epochs, %d, 4]",
             z->path, MACH_CK_PREFIX, MACH_LOG_COLS);
    return 1;
  }
  shape[0] = a.shape[0];
  shape[1] = MACH_LOG_COLS;
  shape[2] = 4;
  if (get_entry(c, z, "log", 3, shape, &a))
    return 1;
  k->n_log = a.shape[0];
  k->log = mach_alloc(c, (size_t)k->n_log + 1, sizeof *k->log);
  if (!k->log)
    return 1;
  for (long i = 0; i < k->n_log; i++)
    for (int j = 0; j < MACH_LOG_COLS; j++) {
      if (get_u64(&a, 4 * (i * MACH_LOG_COLS + j), &u))
        return corrupt(c, z, "log");
      k->log[i].v[j] = bits_dbl(u);
    }
  return 0;
}

int mach_ckpt_load(const struct mach_ctx *c, const char *path, mach_real *weights,
                   mach_real *last, int *has_last, struct mach_ckpt *k) {
  struct mach_npz z;
  struct mach_ckpt want = *k;
  int rc;
  if (mach_npz_open(c, path, &z))
    return 1;
  rc = read_counters(c, &z, k);
  if (!rc && k->optim != want.optim) {
    static const char *const names[] = {"sgd", "momentum", "adam"};
    mach_err(c, "%s: the checkpoint was written with --optimizer %s, not %s", path,
             k->optim >= 0 && k->optim < 3 ? names[k->optim] : "?", names[want.optim]);
    rc = 1;
  }
  if (!rc && (k->n_train != want.n_train || k->n_val != want.n_val)) {
    mach_err(c, "%s: the checkpoint trained on %ld samples and validated on %ld; this data "
                "gives %ld and %ld",
             path, k->n_train, k->n_val, want.n_train, want.n_val);
    rc = 1;
  }
  if (!rc && k->seed != want.seed) {
    mach_err(c, "%s: the checkpoint was written with --seed %llu; resume with the same seed",
             path, (unsigned long long)k->seed);
    rc = 1;
  }
  if (!rc && (k->pos < 0 || k->pos >= k->n_train || k->epoch < 0 || k->step < 0)) {
    mach_err(c, "%s: entry '%scounters' is corrupt", path, MACH_CK_PREFIX);
    rc = 1;
  }
  k->perm = want.perm;
  k->ostate = want.ostate;
  k->log = NULL;
  k->n_log = 0;
  if (!rc)
    rc = read_arrays(c, &z, k, last, has_last);
  mach_npz_close(&z);
  return rc || mach_load_weights(c, path, weights);
}
