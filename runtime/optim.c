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

#include "rt.h"

int mach_optim_slots(enum mach_optim kind) {
  return kind == MACH_OPTIM_SGD ? 0 : kind == MACH_OPTIM_MOMENTUM ? 1 : 2;
}

static void sgd(const struct mach_optim_cfg *o, double wd, mach_real *p, const mach_real *g,
                long n) {
  for (long i = 0; i < n; i++)
    p[i] = (mach_real)(p[i] - o->lr * (g[i] + wd * p[i]));
}

static void momentum(const struct mach_optim_cfg *o, double wd, mach_real *p,
                     const mach_real *g, mach_real *v, long n) {
  for (long i = 0; i < n; i++) {
    v[i] = (mach_real)(o->momentum * v[i] + g[i] + wd * p[i]);
    p[i] = (mach_real)(p[i] - o->lr * v[i]);
  }
}

static void adam(const struct mach_optim_cfg *o, double wd, mach_real *p, const mach_real *g,
                 mach_real *m, mach_real *v, long n, long t) {
  double c1 = 1.0 - pow(o->beta1, (double)t), c2 = 1.0 - pow(o->beta2, (double)t);
  for (long i = 0; i < n; i++) {
    double pi = p[i] - o->lr * wd * p[i];
    m[i] = (mach_real)(o->beta1 * m[i] + (1.0 - o->beta1) * g[i]);
    v[i] = (mach_real)(o->beta2 * v[i] + (1.0 - o->beta2) * (double)g[i] * g[i]);
    p[i] = (mach_real)(pi - o->lr * (m[i] / c1) / (sqrt(v[i] / c2) + o->eps));
  }
}

void mach_optim_step(const struct mach_optim_cfg *o, const struct mach_model *m,
                     mach_real *params, const mach_real *grad, mach_real *state, long t) {
  long P = m->param_size;
  for (int k = 0; k < m->n_params; k++) {
    const struct mach_param *pp = &m->params[k];
    double wd = pp->decay ? o->weight_decay : 0.0;
    int runs = pp->live ? pp->n_live : 1;
    for (int r = 0; r < runs; r++) { /* only the entries the machine reads */
      long off = pp->offset + (pp->live ? pp->live[2 * r] : 0);
      long n = pp->live ? pp->live[2 * r + 1] : pp->size;
      switch (o->kind) {
      case MACH_OPTIM_SGD:
        sgd(o, wd, params + off, grad + off, n);
        break;
      case MACH_OPTIM_MOMENTUM:
        momentum(o, wd, params + off, grad + off, state + off, n);
        break;
      case MACH_OPTIM_ADAM:
        adam(o, wd, params + off, grad + off, state + off, state + P + off, n, t);
        break;
      }
    }
  }
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
