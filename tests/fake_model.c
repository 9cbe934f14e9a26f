/* fake_model.c — forward and backward written by hand; see fake_model.h.
 *
 * State per sample (offsets in scalars), I inputs, H hidden, O outputs:
 *   u.y 0, u.z I, h.y 2I, h.z 2I+H, y.y 2I+2H, y.z 2I+2H+O.
 * A batch of B samples stores block data at B * offset, sample-major. */
#include <math.h>
#include <string.h>

#include "fake_model.h"

#define I 2
#define H 3


static void fwd(long O, const mach_real *p, const mach_real *const *inputs, mach_real *s,
                long B) {
  const mach_real *W1 = p, *b1 = W1 + I * H, *W2 = b1 + H, *b2 = W2 + H * O;
  mach_real *uy = s, *uz = s + B * I, *hy = s + B * 2 * I, *hz = s + B * (2 * I + H);
  mach_real *yy = s + B * (2 * I + 2 * H), *yz = s + B * (2 * I + 2 * H + O);
  memcpy(uy, inputs[0], (size_t)(B * I) * sizeof *uy);
  memcpy(uz, uy, (size_t)(B * I) * sizeof *uz);
  for (long b = 0; b < B; b++) {
    for (int j = 0; j < H; j++) {
      mach_real a = b1[j];
      for (int i = 0; i < I; i++)
        a += uz[b * I + i] * W1[i * H + j];
      hy[b * H + j] = a;
      hz[b * H + j] = tanh(a);
    }
    for (long o = 0; o < O; o++) {
      mach_real a = b2[o];
      for (int j = 0; j < H; j++)
        a += hz[b * H + j] * W2[j * O + o];
      yy[b * O + o] = a;
      yz[b * O + o] = a;
    }
  }
}

static void bwd(long O, const mach_real *p, const mach_real *s, const mach_real *const *cot,
                mach_real *d, mach_real *dp, long B) {
  const mach_real *W1 = p, *W2 = p + I * H + H;
  const mach_real *uz = s + B * I, *hz = s + B * (2 * I + H);
  mach_real *dW1 = dp, *db1 = dW1 + I * H, *dW2 = db1 + H, *db2 = dW2 + H * O;
  /* dual state: zbar at the y offset, ybar at the z offset */
  mach_real *zbar_u = d, *ybar_u = d + B * I, *zbar_h = d + B * 2 * I;
  mach_real *ybar_h = d + B * (2 * I + H), *zbar_y = d + B * (2 * I + 2 * H);
  mach_real *ybar_y = d + B * (2 * I + 2 * H + O);
  memset(dp, 0, (size_t)(I * H + H + H * O + O) * sizeof *dp);
  for (long b = 0; b < B; b++) {
    for (long o = 0; o < O; o++) {
      zbar_y[b * O + o] = cot[0][b * O + o];
      ybar_y[b * O + o] = zbar_y[b * O + o];
      db2[o] += ybar_y[b * O + o];
      for (int j = 0; j < H; j++)
        dW2[j * O + o] += hz[b * H + j] * ybar_y[b * O + o];
    }
    for (int j = 0; j < H; j++) {
      mach_real a = 0;
      for (long o = 0; o < O; o++)
        a += W2[j * O + o] * ybar_y[b * O + o];
      zbar_h[b * H + j] = a;
      ybar_h[b * H + j] = a * (1 - hz[b * H + j] * hz[b * H + j]);
      db1[j] += ybar_h[b * H + j];
      for (int i = 0; i < I; i++)
        dW1[i * H + j] += uz[b * I + i] * ybar_h[b * H + j];
    }
    for (int i = 0; i < I; i++) {
      mach_real a = 0;
      for (int j = 0; j < H; j++)
        a += W1[i * H + j] * ybar_h[b * H + j];
      zbar_u[b * I + i] = a;
      ybar_u[b * I + i] = a;
    }
  }
}

static void fwd1(const mach_real *p, const mach_real *const *in, mach_real *s, long B) {
  fwd(1, p, in, s, B);
}
static void bwd1(const mach_real *p, const mach_real *s, const mach_real *const *cot,
                 mach_real *d, mach_real *dp, long B, int input_grads,
                 void (*ready)(void *, long, long), void *ctx) {
  (void)input_grads, (void)ready, (void)ctx; /* computed always, reported at the end */
  bwd(1, p, s, cot, d, dp, B);
}
static void fwd2(const mach_real *p, const mach_real *const *in, mach_real *s, long B) {
  fwd(2, p, in, s, B);
}
static void bwd2(const mach_real *p, const mach_real *s, const mach_real *const *cot,
                 mach_real *d, mach_real *dp, long B, int input_grads,
                 void (*ready)(void *, long, long), void *ctx) {
  (void)input_grads, (void)ready, (void)ctx;
  bwd(2, p, s, cot, d, dp, B);
}

static const int inputs[] = {0};
static const int outputs[] = {2};

#define BLOCKS(O)                                                                        \
  {                                                                                      \
    {"u", "identity", 1, {I}, I, 0, I, 0},                                               \
    {"h", "tanh", 1, {H}, H, 2 * I, 2 * I + H, 1},                                       \
    {"y", "identity", 1, {O}, O, 2 * I + 2 * H, 2 * I + 2 * H + O, 2},                   \
  }

#define PARAMS(O)                                                                        \
  {                                                                                      \
    {"W_h_u", 2, {I, H}, I * H, 0, MACH_INIT_UNIFORM, 0.9, 1, 0, NULL},                  \
    {"b_h", 1, {H}, H, I * H, MACH_INIT_ZEROS, 0, 0, 0, NULL},                           \
    {"W_y_h", 2, {H, O}, H * O, I * H + H, MACH_INIT_NORMAL, 0.5, 1, 0, NULL},           \
    {"b_y", 1, {O}, O, I * H + H + H * O, MACH_INIT_ZEROS, 0, 0, 0, NULL},               \
  }

static const struct mach_block reg_blocks[] = BLOCKS(1);
static const struct mach_param reg_params[] = PARAMS(1);
static const struct mach_block cls_blocks[] = BLOCKS(2);
static const struct mach_param cls_params[] = PARAMS(2);

const struct mach_model fake_reg = {
  "fake_reg", MACH_DTYPE, "tests/fake_model.c", 3, reg_blocks, 1, inputs, 1, outputs,
  4, reg_params, I * H + H + H * 1 + 1, 2 * I + 2 * H + 2 * 1, 3, 0, 0,
  2.0 * (I * H + H * 1) + H, fwd1, bwd1, NULL,
};

/* fake_live and fake_cut: fake_reg whose optimizer updates only some
 * entries (runs as machc writes them for parameters read in part: W_h_u
 * without its entries 2 and 3, b_y whole, b_h without entry 1), fake_cut
 * with a par_for that cuts [0, n) into pieces of 1, 2, 3, 1, 2, ... entries
 * and runs them last first: the updates must not depend on the cut. */
static const long live_W1[] = {0, 2, 4, 2};
static const long live_b1[] = {0, 1, 2, 1};
static const struct mach_param live_params[] = {
    {"W_h_u", 2, {I, H}, I * H, 0, MACH_INIT_UNIFORM, 0.9, 1, 2, live_W1},
    {"b_h", 1, {H}, H, I * H, MACH_INIT_UNIFORM, 0.3, 0, 2, live_b1},
    {"W_y_h", 2, {H, 1}, H, I * H + H, MACH_INIT_NORMAL, 0.5, 1, 0, NULL},
    {"b_y", 1, {1}, 1, I * H + H + H, MACH_INIT_ZEROS, 0, 0, 0, NULL},
};

static void cut_for(long n, void (*fn)(void *, long, long), void *ctx) {
  long lo[64], hi[64];
  int k = 0;
  if (n > 64) { /* not these models */
    fn(ctx, 0, n);
    return;
  }
  for (long at = 0; at < n; k++) {
    lo[k] = at;
    at += 1 + k % 3;
    hi[k] = at < n ? at : n;
  }
  while (k-- > 0)
    fn(ctx, lo[k], hi[k]);
}

const struct mach_model fake_live = {
  "fake_live", MACH_DTYPE, "tests/fake_model.c", 3, reg_blocks, 1, inputs, 1, outputs,
  4, live_params, I * H + H + H * 1 + 1, 2 * I + 2 * H + 2 * 1, 3, 0, 0,
  2.0 * (I * H + H * 1) + H, fwd1, bwd1, NULL,
};

const struct mach_model fake_cut = {
  "fake_live", MACH_DTYPE, "tests/fake_model.c", 3, reg_blocks, 1, inputs, 1, outputs,
  4, live_params, I * H + H + H * 1 + 1, 2 * I + 2 * H + 2 * 1, 3, 0, 0,
  2.0 * (I * H + H * 1) + H, fwd1, bwd1, cut_for,
};

const struct mach_model fake_cls = {
  "fake_cls", MACH_DTYPE, "tests/fake_model.c", 3, cls_blocks, 1, inputs, 1, outputs,
  4, cls_params, I * H + H + H * 2 + 2, 2 * I + 2 * H + 2 * 2, 3, 0, 0,
  2.0 * (I * H + H * 2) + H, fwd2, bwd2, NULL,
};

/* fake_two. State per sample: a.y 0, a.z 1, b.y 2, b.z 4, p.y 6, p.z 7,
 * q.y 8, q.z 10; 12 scalars. Parameters: k at 0, c at 1..2. */
static void two_fwd(const mach_real *w, const mach_real *const *in, mach_real *s, long B) {
  for (long n = 0; n < B; n++) {
    s[0 * B + n] = s[1 * B + n] = in[0][n];
    for (int i = 0; i < 2; i++) {
      s[2 * B + 2 * n + i] = s[4 * B + 2 * n + i] = in[1][2 * n + i];
      s[8 * B + 2 * n + i] = s[10 * B + 2 * n + i] = in[1][2 * n + i] + w[1 + i];
    }
    s[6 * B + n] = s[7 * B + n] = w[0] * in[0][n];
  }
}

static void two_bwd(const mach_real *w, const mach_real *s, const mach_real *const *cot,
                    mach_real *d, mach_real *dw, long B, int input_grads,
                    void (*ready)(void *, long, long), void *ctx) {
  (void)input_grads, (void)ready, (void)ctx;
  dw[0] = dw[1] = dw[2] = 0;
  for (long n = 0; n < B; n++) {
    d[6 * B + n] = d[7 * B + n] = cot[0][n];
    dw[0] += s[1 * B + n] * cot[0][n];
    d[0 * B + n] = d[1 * B + n] = w[0] * cot[0][n];
    for (int i = 0; i < 2; i++) {
      mach_real g = cot[1][2 * n + i];
      d[8 * B + 2 * n + i] = d[10 * B + 2 * n + i] = g;
      d[2 * B + 2 * n + i] = d[4 * B + 2 * n + i] = g;
      dw[1 + i] += g;
    }
  }
}

static const struct mach_block two_blocks[] = {
  {"a", "identity", 1, {1}, 1, 0, 1, 0},
  {"b", "identity", 1, {2}, 2, 2, 4, 0},
  {"p", "identity", 1, {1}, 1, 6, 7, 1},
  {"q", "identity", 1, {2}, 2, 8, 10, 1},
};
static const struct mach_param two_params[] = {
  {"k", 1, {1}, 1, 0, MACH_INIT_ONES, 0, 1, 0, NULL},
  {"c", 1, {2}, 2, 1, MACH_INIT_ZEROS, 0, 0, 0, NULL},
};
static const int two_inputs[] = {0, 1};
static const int two_outputs[] = {2, 3};

const struct mach_model fake_two = {
  "fake_two", MACH_DTYPE, "tests/fake_model.c", 4, two_blocks, 2, two_inputs, 2, two_outputs,
  2, two_params, 3, 12, 2, 0, 0, 3.0, two_fwd, two_bwd, NULL,
};
