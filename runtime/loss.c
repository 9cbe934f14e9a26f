/* loss.c — the two training losses and their gradients with respect to the
 * output block's z (the cotangent handed to backward).
 *
 * mse:  L = 1/(B*size) * sum (z - t)^2           dL/dz = 2 (z - t) / (B*size)
 * xent: L = 1/B * sum_i (logsumexp(z_i) - z_i[label_i])
 *       dL/dz_i = (softmax(z_i) - onehot(label_i)) / B
 * Both match the mean reductions of PyTorch/Flux. The log-sum-exp subtracts
 * the row maximum first, so large logits do not overflow.
 *
 * A NaN target is a value left out of the mse (the warm-up positions of a
 * time window, --warmup-steps): it adds nothing, its gradient is zero, and
 * the mean is over the values that count (the caller's norm says how many
 * there are per sample: mach_dataset.counted).
 */
#include <math.h>

#include "rt.h"

double mach_loss_norm(enum mach_loss kind, long n, long size) {
  return kind == MACH_LOSS_MSE ? (double)n * (double)size : (double)n;
}

static double mse(const mach_real *z, const mach_real *t, long count, double norm,
                  mach_real *grad) {
  double sum = 0;
  long counted = 0;
  for (long i = 0; i < count; i++)
    counted += !isnan(t[i]);
  if (counted < count && counted > 0) /* warm-up positions: a mean over the rest */
    norm *= (double)counted / (double)count;
  for (long i = 0; i < count; i++) {
    double d = isnan(t[i]) ? 0 : (double)z[i] - (double)t[i];
    sum += d * d;
    if (grad)
      grad[i] = (mach_real)(2.0 * d / norm);
  }
  return sum;
}

/* One sample's cross-entropy; writes its gradient row when grad != NULL. */
static double xent_row(const mach_real *z, long label, long classes, double norm,
                       mach_real *grad, long *hits) {
  double mx = z[0], sum = 0, lse;
  long arg = 0;
  for (long j = 1; j < classes; j++)
    if (z[j] > mx) {
      mx = z[j];
      arg = j;
    }
  for (long j = 0; j < classes; j++)
    sum += exp((double)z[j] - mx);
  lse = mx + log(sum);
  if (grad)
    for (long j = 0; j < classes; j++)
      grad[j] = (mach_real)((exp((double)z[j] - lse) - (j == label)) / norm);
  if (hits && arg == label)
    (*hits)++;
  return lse - (double)z[label];
}

double mach_loss_eval(enum mach_loss kind, const mach_real *z, const mach_real *t,
                      const long *labels, long b, long size, long denom_samples,
                      mach_real *grad, long *hits) {
  double norm = mach_loss_norm(kind, denom_samples, size), sum = 0;
  if (kind == MACH_LOSS_MSE)
    return mse(z, t, b * size, norm, grad);
  for (long i = 0; i < b; i++)
    sum += xent_row(z + i * size, labels[i], size, norm, grad ? grad + i * size : NULL, hits);
  return sum;
}
