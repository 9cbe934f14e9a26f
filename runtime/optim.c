/* optim.c — parameter updates. g is the gradient of the minibatch's mean
 * loss. Weight decay applies only to parameters with decay = 1 (weights,
 * not biases):
 *   sgd:      p -= lr * (g + wd p)
 *   momentum: v = m v + (g + wd p);  p -= lr v          (heavy ball)
 *   adam:     p -= lr wd p  (decoupled, AdamW), then
 *             m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
 *             p -= lr * (m / (1-b1^t)) / (sqrt(v / (1-b2^t)) + eps)
 * Arithmetic is in double whatever mach_real is, so f32 models do not lose
 * small updates to rounding in the intermediate terms.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "rt.h"

/* The updates are elementwise passes over every parameter each step: built
 * for the machine's vector width at run time (the runtime library itself is
 * built for any x86-64), the same operations in the same order, so the same
 * bits on every path. Only on static functions: clang 14 names the
 * dispatcher of an exported one NAME.ifunc, leaving NAME undefined for the
 * other files of a runtime it builds. */
#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VECTOR_CLONES
#define VECTOR_CLONES
#endif

/* inf and nan have every exponent bit set: the test as integer arithmetic,
 * which an OR over a stretch (no early exit) vectorizes. */
#ifdef MACH_F32
typedef uint32_t real_bits;
#define EXP_BITS 0x7f800000u
#else
typedef uint64_t real_bits;
#define EXP_BITS 0x7ff0000000000000u
#endif

static inline real_bits not_finite(mach_real x) {
  real_bits b;
  memcpy(&b, &x, sizeof b);
  return (b & EXP_BITS) == EXP_BITS;
}

int mach_optim_slots(enum mach_optim kind) {
  return kind == MACH_OPTIM_SGD ? 0 : kind == MACH_OPTIM_MOMENTUM ? 1 : 2;
}

/* Each update reads the parameters p and writes the new ones to q, and
 * returns whether one it wrote is not finite (checked as it is written: no
 * second pass over the parameters). */
VECTOR_CLONES static int sgd(const struct mach_optim_cfg *o, double wd, const mach_real *restrict p,
                             mach_real *restrict q, const mach_real *restrict g, long n) {
  const double lr = o->lr;
  real_bits bad = 0;
  for (long i = 0; i < n; i++) {
    mach_real pi = (mach_real)(p[i] - lr * (g[i] + wd * p[i]));
    q[i] = pi;
    bad |= not_finite(pi);
  }
  return bad != 0;
}

VECTOR_CLONES static int momentum(const struct mach_optim_cfg *o, double wd, const mach_real *restrict p,
                                  mach_real *restrict q, const mach_real *restrict g, mach_real *restrict v,
                                  long n) {
  const double lr = o->lr, mu = o->momentum;
  real_bits bad = 0;
  for (long i = 0; i < n; i++) {
    mach_real vi = (mach_real)(mu * v[i] + g[i] + wd * p[i]);
    v[i] = vi;
    mach_real pi = (mach_real)(p[i] - lr * vi);
    q[i] = pi;
    bad |= not_finite(pi);
  }
  return bad != 0;
}

VECTOR_CLONES static int adam(const struct mach_optim_cfg *o, double wd, const mach_real *restrict p,
                              mach_real *restrict q, const mach_real *restrict g, mach_real *restrict m,
                              mach_real *restrict v, long n, double c1, double c2) {
  const double lr = o->lr, b1 = o->beta1, b2 = o->beta2, eps = o->eps;
  real_bits bad = 0;
  for (long i = 0; i < n; i++) {
    double pd = p[i] - lr * wd * p[i];
    mach_real mi = (mach_real)(b1 * m[i] + (1.0 - b1) * g[i]);
    mach_real vi = (mach_real)(b2 * v[i] + (1.0 - b2) * (double)g[i] * g[i]);
    m[i] = mi;
    v[i] = vi;
    mach_real pi = (mach_real)(pd - lr * (mi / c1) / (sqrt(vi / c2) + eps));
    q[i] = pi;
    bad |= not_finite(pi);
  }
  return bad != 0;
}

/* One update's settings and buffers, shared by the pieces of the pass. */
struct optim_pass {
  const struct mach_optim_cfg *o;
  const struct mach_model *m;
  const mach_real *params;
  mach_real *next, *state;
  const mach_real *grad;
  double c1, c2; /* Adam's bias corrections 1 - beta1^t, 1 - beta2^t */
  atomic_int bad; /* set by any piece that wrote a non-finite parameter */
};

/* The update of one stretch of entries, which share their weight decay. */
static void update(void *ctx, long off, long n, int decay) {
  struct optim_pass *s = ctx;
  const struct mach_optim_cfg *o = s->o;
  double wd = decay ? o->weight_decay : 0.0;
  long P = s->m->param_size;
  int bad = 0;
  switch (o->kind) {
  case MACH_OPTIM_SGD:
    bad = sgd(o, wd, s->params + off, s->next + off, s->grad + off, n);
    break;
  case MACH_OPTIM_MOMENTUM:
    bad = momentum(o, wd, s->params + off, s->next + off, s->grad + off, s->state + off, n);
    break;
  case MACH_OPTIM_ADAM:
    bad = adam(o, wd, s->params + off, s->next + off, s->grad + off, s->state + off, s->state + P + off, n,
               s->c1, s->c2);
    break;
  }
  if (bad)
    atomic_store_explicit(&s->bad, 1, memory_order_relaxed);
}

long mach_live_size(const struct mach_model *m) {
  long n = 0;
  for (int k = 0; k < m->n_params; k++) {
    const struct mach_param *pp = &m->params[k];
    for (int r = 0; r < (pp->live ? pp->n_live : 1); r++)
      n += pp->live ? pp->live[2 * r + 1] : pp->size;
  }
  return n;
}

/* Every parameter's runs in turn (the DenseMachine reads its weight in runs
 * of one block row). */
void mach_live_stretches(const struct mach_model *m, long lo, long hi,
                         void (*fn)(void *ctx, long off, long n, int decay), void *ctx) {
  long at = 0; /* where the current run starts end to end */
  for (int k = 0; k < m->n_params && at < hi; k++) {
    const struct mach_param *pp = &m->params[k];
    int runs = pp->live ? pp->n_live : 1;
    for (int r = 0; r < runs && at < hi; r++) {
      long off = pp->offset + (pp->live ? pp->live[2 * r] : 0);
      long n = pp->live ? pp->live[2 * r + 1] : pp->size;
      long from = lo > at ? lo : at, to = hi < at + n ? hi : at + n;
      if (from < to)
        fn(ctx, off + from - at, to - from, pp->decay);
      at += n;
    }
  }
}

/* A piece of the pass (mach_par_for). Each entry's update depends on that
 * entry alone, so any cut gives the same bits. */
static void optim_piece(void *ctx, long lo, long hi) {
  struct optim_pass *s = ctx;
  mach_live_stretches(s->m, lo, hi, update, ctx);
}

int mach_optim_step(const struct mach_optim_cfg *o, const struct mach_model *m, const mach_real *params,
                    mach_real *next, const mach_real *grad, mach_real *state, long t) {
  struct optim_pass s = {o, m, params, next, state, grad, 1.0 - pow(o->beta1, (double)t),
                         1.0 - pow(o->beta2, (double)t), 0};
  mach_par_for(m, mach_live_size(m), optim_piece, &s);
  return !atomic_load(&s.bad);
}

/* ---- learning-rate schedules and gradient clipping ------------------------ */

double mach_sched_lr(const struct mach_sched *s, double lr, long t) {
  double f = 1;
  if (s->warmup > 0 && t < s->warmup)
    f = (double)(t + 1) / (double)s->warmup;
  switch (s->kind) {
  case MACH_SCHED_CONSTANT:
    break;
  case MACH_SCHED_STEP:
    f *= pow(s->gamma, (double)(t / (s->every * s->per_epoch)));
    break;
  case MACH_SCHED_COSINE:
    if (t >= s->warmup && s->total > s->warmup) {
      double p = (double)(t - s->warmup) / (double)(s->total - s->warmup);
      f *= 0.5 * (1 + cos(3.14159265358979323846 * (p < 1 ? p : 1)));
    }
    break;
  }
  return lr * f;
}

/* An OR over the stretch, with no early exit: a loop that returns at the
 * first non-finite value does not vectorize (train runs this over the
 * gradient every step); its clones stay static, behind the exported name. */
VECTOR_CLONES static int all_finite(const mach_real *p, long n) {
  real_bits bad = 0;
  for (long i = 0; i < n; i++)
    bad |= not_finite(p[i]);
  return !bad;
}

int mach_all_finite(const mach_real *p, long n) { return all_finite(p, n); }

double mach_clip_norm(mach_real *g, long n, double max_norm) {
  double sq = 0, norm;
  for (long i = 0; i < n; i++)
    sq += (double)g[i] * (double)g[i];
  norm = sqrt(sq);
  if (norm > max_norm) {
    double s = max_norm / norm;
    for (long i = 0; i < n; i++)
      g[i] = (mach_real)(g[i] * s);
  }
  return norm;
}
