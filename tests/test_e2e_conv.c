/* test_e2e_conv.c — machines on grids and in time: convolutions (1-D, 2-D,
 * 3-D; asymmetric pads, strides, dilation), pooling, the paper's ConvMachine
 * and RecurMachine, recurrences through one and two blocks.
 *
 * Each model is compiled by machc to C, built as a shared object and loaded
 * (e2e_load_model), so the checks run in-process:
 * - gradients against central finite differences of L = sum(output * G),
 *   for every parameter and input entry, in f64;
 * - the machine equations y = sum of arrows + b, z = sigma(y) on the computed
 *   state, against an independent convolution written here;
 * - the dual equations zbar = z0bar + sum of adjoint arrows, ybar =
 *   sigma'(y) zbar, against the same reference run backwards;
 * - the printed dual machine, compiled, gives the backward pass's numbers;
 * - the printed machine (--emit=mach) of a machine with every arrow kind and
 *   option, compiled, gives the same numbers;
 * - a recurrent machine gives the same numbers whatever its chunk length,
 *   and a batch whatever its groups of samples (the tiles --march picks:
 *   tests/long/test_conv_tiles.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

enum { BATCH = 3 };

TestSuite(conv_grad, .fini = e2e_cleanup, .timeout = 120);
TestSuite(conv_equations, .fini = e2e_cleanup);
TestSuite(conv_schedule, .fini = e2e_cleanup);
TestSuite(conv_dual, .fini = e2e_cleanup, .timeout = 120);
TestSuite(conv_print, .fini = e2e_cleanup, .timeout = 120);
TestSuite(conv_errors, .fini = e2e_cleanup);

/* ---- running a loaded model ------------------------------------------------ */

static E2ePass run_new(const char *src, const char *prefix, long batch, uint64_t seed) {
  return e2e_pass_new(e2e_load_model(src, prefix), batch, seed, 0.7, 1);
}

/* The full backward pass, after that of a training step (no dLoss/dinput),
 * whose parameter gradients must be bitwise the same. */
static void backward(E2ePass *r) {
  e2e_pass_loss(r);
  const struct mach_model *m = r->m;
  size_t np = sizeof(double) * (size_t)m->param_size;
  double *dp = malloc(np + 1); /* nan where the machine reads: each must be written */
  for (long i = 0; i < m->param_size; i++)
    dp[i] = e2e_param_read(m, i) ? NAN : 0;
  m->backward(r->params, r->state, (const double *const *)r->cot, r->dstate, dp, r->batch, 0, NULL, NULL);
  E2eReady ready = e2e_ready_new(r->dparams, m->param_size);
  m->backward(r->params, r->state, (const double *const *)r->cot, r->dstate, r->dparams, r->batch, 1,
              e2e_ready, &ready);
  e2e_ready_check(&ready);
  cr_assert(memcmp(dp, r->dparams, np) == 0, "parameter gradients differ without the input gradients");
  free(dp);
}

/* Central differences against the backward pass, every parameter and input
 * entry. The floor keeps tiny gradients from being judged on round-off. */
static void check_gradients(const char *src, const char *prefix) {
  E2ePass r = run_new(src, prefix, BATCH, 7);
  backward(&r);
  const double h = 1e-5, tol = 1e-6, floor = 1e-3;
  double worst = 0;
  for (long i = 0; i < r.m->param_size; i++) {
    double keep = r.params[i];
    r.params[i] = keep + h;
    double up = e2e_pass_loss(&r);
    r.params[i] = keep - h;
    double down = e2e_pass_loss(&r);
    r.params[i] = keep;
    double fd = (up - down) / (2 * h), err = e2e_reldiff(fd, r.dparams[i], floor);
    cr_expect(err < tol, "%s: parameter scalar %ld: finite difference %.12g, backward %.12g", prefix, i,
              fd, r.dparams[i]);
    worst = fmax(worst, err);
  }
  for (int k = 0; k < r.m->n_inputs; k++) {
    int b = r.m->inputs[k];
    long n = r.batch * r.m->blocks[b].size;
    double *g = malloc(sizeof(double) * (size_t)n);
    memcpy(g, e2e_pass_z(&r, r.dstate, b), sizeof(double) * (size_t)n); /* ybar = dL/dy0 */
    for (long i = 0; i < n; i++) {
      double keep = r.in[k][i];
      r.in[k][i] = keep + h;
      double up = e2e_pass_loss(&r);
      r.in[k][i] = keep - h;
      double down = e2e_pass_loss(&r);
      r.in[k][i] = keep;
      double fd = (up - down) / (2 * h), err = e2e_reldiff(fd, g[i], floor);
      cr_expect(err < tol, "%s: input '%s'[%ld]: finite difference %.12g, backward %.12g", prefix,
                r.m->blocks[b].name, i, fd, g[i]);
      worst = fmax(worst, err);
    }
    free(g);
  }
  cr_log_info("%s: worst relative error %.3g over %ld parameters", prefix, worst, r.m->param_size);
  e2e_pass_free(&r);
}

/* ---- the machines ---------------------------------------------------------- */

static const char conv1d_src[] =
    "machine conv1d {\n"
    "    input  x : 2 @ [9]\n"
    "    block  h : 3 @ [9] = tanh(conv(x, k = 3, pad = [2, 0]) + bias)   # causal, asymmetric\n"
    "    block  s : 2 @ [4] = sigmoid(conv(h, k = 3, stride = 2))\n"
    "    block  d : 2 @ [5] = conv(h, k = 3, dilation = 2)\n"
    "    output y : 3 = dense(s, d) + bias\n"
    "}\n";

static const char conv2d_src[] =
    "machine conv2d {\n"
    "    input  x : 2 @ [7, 6]\n"
    "    block  h : 3 @ [7, 6] = gelu(conv(x, k = [3, 2], pad = [1, 1, 0, 1]) + bias)\n"
    "    block  p : 3 @ [3, 3] = avgpool(h, k = 2, stride = 2)\n"
    "    block  s : 4 @ [3, 3] = softplus(conv(h, k = [3, 2], stride = [2, 2]))\n"
    "    block  g : 4 = global_avgpool(s)\n"
    "    output q : 3 @ [3, 3] = sin(p + conv(p, k = 3, pad = same, dilation = 1))\n"
    "    output y : 2 = dense(g, p) + bias\n"
    "}\n";

static const char conv3d_src[] =
    "machine conv3d {\n"
    "    input  x : 1 @ [4, 3, 5]\n"
    "    block  h : 2 @ [4, 3, 5] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  s : 2 @ [2, 2, 3] = conv(h, k = [2, 2, 3], stride = [2, 1, 1])\n"
    "    block  p : 2 @ [2, 3, 5] = avgpool(h, k = [2, 1, 1], stride = [2, 1, 1])\n"
    "    output y : 1 = dense(s, p)\n"
    "}\n";

/* Wide enough (>= 8 channel pairs per arrow) that the emitter writes the
 * convolutions as per-tap matrix products rather than plain loops. */
static const char wide1d_src[] =
    "machine wide1d {\n"
    "    input  x : 4 @ [10]\n"
    "    block  h : 4 @ [10] = tanh(conv(x, k = 3, pad = [2, 0]) + bias)\n"
    "    block  s : 3 @ [4] = sigmoid(conv(h, k = 4, stride = 2))\n"
    "    block  d : 4 @ [6] = conv(h, k = 3, dilation = 2)\n"
    "    output y : 2 = dense(s, d) + bias\n"
    "}\n";

static const char wide3d_src[] =
    "machine wide3d {\n"
    "    input  x : 3 @ [4, 3, 5]\n"
    "    block  h : 3 @ [4, 3, 5] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  s : 3 @ [2, 2, 3] = conv(h, k = [2, 2, 3], stride = [2, 1, 1])\n"
    "    output y : 1 = dense(s)\n"
    "}\n";

/* A stride-1 2-D conv wide enough that the emitter splits each sample into
 * bands of rows (the last one shorter), with asymmetric, cropping pads and a
 * dilation: h -> v and its flipped dual. */
static const char banded_src[] =
    "machine banded {\n"
    "    input  x : 1 @ [23, 18]\n"
    "    block  h : 8 @ [23, 18] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  v : 8 @ [23, 17] = tanh(conv(h, k = [3, 2], pad = [3, 1, 0, 0], dilation = [2, 1]))\n"
    "    block  g : 8 = global_avgpool(v)\n"
    "    output y : 2 = dense(g) + bias\n"
    "}\n";

/* Poolings that write all of their block in one pass: forward, each output
 * the sum of its window (with a bias and sigmoid, and alone); in the dual,
 * adjoints whose windows tile the grid, each position one term (onto the
 * cotangent of an output block, and alone), with sigma' in the same loop.
 * One channel (no loop over channels: the bias of channel 0). And a padded
 * strided convolution, read from the stride phases of h. */
static const char pooled_src[] =
    "machine pooled {\n"
    "    input  x : 2 @ [4, 6]\n"
    "    output h : 3 @ [4, 6] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  p : 3 @ [2, 3] = sigmoid(avgpool(h, k = 2, stride = 2) + bias)\n"
    "    block  g : 2 @ [4, 6] = softplus(conv(x, k = 1))\n"
    "    block  r : 2 @ [2, 2] = avgpool(g, k = [2, 3], stride = [2, 3])\n"
    "    block  v : 4 @ [2, 3] = tanh(conv(h, k = 3, stride = 2, pad = [1, 0, 1, 0]))\n"
    "    block  o : 1 @ [4, 6] = softplus(conv(x, k = 1))\n"
    "    block  q : 1 @ [2, 3] = sigmoid(avgpool(o, k = 2, stride = 2) + bias)\n"
    "    output y : 2 = dense(p, r, v, q) + bias\n"
    "}\n";

/* Strided convolutions of every shape the stride phases take: a stride on
 * one axis, 1x1 taps, stride with dilation, one input channel, beside
 * poolings that do not take the one-pass path (pads) and a 3-D one that does
 * (its dual tiles). */
static const char phases_src[] =
    "machine phases {\n"
    "    input  x : 1 @ [9, 8]\n"
    "    block  a : 3 @ [5, 8] = tanh(conv(x, k = [3, 1], stride = [2, 1], pad = [1, 1, 0, 0]))\n"
    "    block  b : 4 @ [3, 4] = sigmoid(conv(a, k = 1, stride = 2))\n"
    "    block  c : 4 @ [2, 3] = softplus(conv(a, k = 2, stride = [2, 3], dilation = [2, 1]) + bias)\n"
    "    block  d : 3 @ [3, 4] = avgpool(a, k = [2, 2], stride = [2, 2], pad = [0, 1, 0, 0])\n"
    "    input  g : 3 @ [4, 4, 4]\n"
    "    block  e : 3 @ [2, 2, 2] = tanh(avgpool(g, k = 2, stride = 2) + bias)\n"
    "    output y : 2 = dense(b, c, d, e) + bias\n"
    "}\n";

/* Strided convolutions with channels enough for the windowed products, the
 * adjoints included (one product per stride phase): stride on one axis, 1x1
 * taps with stride 2 (phases no tap writes), stride with dilation, stride 3
 * with asymmetric pads, a 3-D and a 1-D grid, and rows long enough for one
 * sample a group (101 = 50 x 2 + 1: a last position only phase 0 holds). */
static const char windowed_strides_src[] =
    "machine wstride {\n"
    "    input  x : 4 @ [9, 8]\n"
    "    block  a : 4 @ [5, 8] = tanh(conv(x, k = [3, 1], stride = [2, 1], pad = [1, 1, 0, 0]))\n"
    "    block  b : 5 @ [3, 4] = sigmoid(conv(a, k = 1, stride = 2))\n"
    "    block  c : 4 @ [2, 3] = softplus(conv(a, k = 2, stride = [2, 3], dilation = [2, 1]) + bias)\n"
    "    block  e : 4 @ [3, 3] = tanh(conv(x, k = 3, stride = 3, pad = [1, 1, 0, 1]))\n"
    "    input  g : 4 @ [7, 6, 5]\n"
    "    block  h : 4 @ [3, 3, 3] = tanh(conv(g, k = 3, stride = 2, pad = [1, 0, 0, 1, 1, 1]))\n"
    "    input  s : 4 @ [17]\n"
    "    block  t : 4 @ [8] = tanh(conv(s, k = 3, stride = 2))\n"
    "    input  w : 2 @ [11, 101]\n"
    "    block  v : 4 @ [11, 50] = tanh(conv(w, k = [1, 3], stride = [1, 2]))\n"
    "    output y : 2 = dense(b, c, e, h, t, v) + bias\n"
    "}\n";

static const char convmachine_src[] =
    "import \"conv.mach\"\n"
    "machine convm {\n"
    "    use m = conv_machine([1, 2, 3], softplus, [1, 1, 0, 2], [5, 4])\n"
    "    output m.x[2]\n"
    "}\n";

static const char two_block_src[] =
    "machine twoblock {\n"
    "    input  s : 1 @ [11]\n"
    "    block  h : 2 @ [11] = tanh(conv(s, lags = 0 ..= 1) + conv(g, lags = 1 ..= 2) + bias)\n"
    "    block  g : 2 @ [11] = sigmoid(conv(h, lags = 0 ..= 2))\n"
    "    output y : 1 @ [11] = conv(g, k = 1) + bias\n"
    "}\n";

/* A recurrent core with whole stages around it: a non-causal convolution
 * before the chunks, a flat context read at every step, pooling and a dense
 * readout after them. */
static const char staged_src[] =
    "machine staged {\n"
    "    input  s : 2 @ [10]\n"
    "    input  c : 3\n"
    "    block  p : 3 @ [10] = conv(s, k = 3, pad = same)\n"
    "    block  h : 4 @ [10] = tanh(conv(p, lags = 0 ..= 1) + dense(c) + conv(h, lags = 1 ..= 2) + bias)\n"
    "    block  g : 4 = global_avgpool(h)\n"
    "    output y : 2 = dense(g, c) + bias\n"
    "}\n";

static char *recur_src(int pad, int tb, int length) {
  return e2e_fmt("import \"recurrent.mach\"\n"
                 "machine recur {\n"
                 "    use m = recur_machine([2, 3, 2], tanh, %d, %d, %d)\n"
                 "    output y : 1 @ [%d] = conv(m.x[0 .. 3], k = 1) + bias\n"
                 "}\n", pad, tb, length, length);
}

/* Blocks of equal width: in each chunk of time, the arrows into a block from
 * x[0 .. 3) share a weight and a window, and run as one product per tap over
 * their channels in turn (the dual's too). */
static const char stacked_recur_src[] = "import \"recurrent.mach\"\n"
                                        "machine srecur {\n"
                                        "    use m = recur_machine([4, 4, 4], tanh, 3, 2, 9)\n"
                                        "    output y : 1 @ [9] = conv(m.x[0 .. 3], k = 1) + bias\n"
                                        "}\n";

/* ---- gradients ---------------------------------------------------------------- */

Test(conv_grad, conv1d_asymmetric_pad_stride_dilation) { check_gradients(conv1d_src, "conv1d"); }
Test(conv_grad, conv2d_pooling_skip) { check_gradients(conv2d_src, "conv2d"); }
Test(conv_grad, conv3d_strided_pooled) { check_gradients(conv3d_src, "conv3d"); }
Test(conv_grad, poolings_written_in_one_pass) { check_gradients(pooled_src, "pooled"); }
Test(conv_grad, strided_convolutions_through_phases) { check_gradients(phases_src, "phases"); }
Test(conv_grad, strided_convolutions_as_windowed_products) { check_gradients(windowed_strides_src, "wstride"); }
Test(conv_grad, paper_conv_machine_2d_asymmetric) { check_gradients(convmachine_src, "convm"); }
Test(conv_grad, wide_1d_as_matrix_products) { check_gradients(wide1d_src, "wide1d"); }
Test(conv_grad, wide_3d_as_matrix_products) { check_gradients(wide3d_src, "wide3d"); }
Test(conv_grad, banded_2d_patch_products) { check_gradients(banded_src, "banded"); }
Test(conv_grad, recurrence_through_two_blocks) { check_gradients(two_block_src, "twoblock"); }
Test(conv_grad, recurrent_core_with_whole_stages) { check_gradients(staged_src, "staged"); }
Test(conv_grad, recur_machine_sources_stacked) { check_gradients(stacked_recur_src, "srecur"); }

/* (pad, timeblock, length): a timeblock above pad (no cycle), below it
 * (cycles through time), equal, one that does not divide the length. */
Test(conv_grad, recur_machine_pad_timeblock_pairs) {
  static const int cases[][3] = {{3, 5, 13}, {6, 5, 17}, {2, 2, 9}, {4, 3, 10}, {1, 1, 7}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *src = recur_src(cases[i][0], cases[i][1], cases[i][2]);
    check_gradients(src, "recur");
    free(src);
  }
}

/* ---- an independent convolution -------------------------------------------- */

typedef struct Geo {
  int g;                      /* grid axes */
  int in[3], out[3], k[3], p0[3], s[3], d[3];
} Geo;

/* Visits every (output position, tap) pair whose input position is inside
 * the grid: out[o] += W[k] in[o*s + k*d - p0], per axis. */
static void each_tap(const Geo *G, void (*f)(void *ctx, long o, long t, long k), void *ctx) {
  int o[3] = {0}, k[3] = {0};
  long nout = 1, nk = 1;
  for (int a = 0; a < G->g; a++) {
    nout *= G->out[a];
    nk *= G->k[a];
  }
  for (long oi = 0; oi < nout; oi++) {
    long rem = oi;
    for (int a = G->g - 1; a >= 0; a--) {
      o[a] = (int)(rem % G->out[a]);
      rem /= G->out[a];
    }
    for (long ki = 0; ki < nk; ki++) {
      long r2 = ki;
      for (int a = G->g - 1; a >= 0; a--) {
        k[a] = (int)(r2 % G->k[a]);
        r2 /= G->k[a];
      }
      long t = 0;
      bool inside = true;
      for (int a = 0; a < G->g; a++) {
        int pos = o[a] * G->s[a] + k[a] * G->d[a] - G->p0[a];
        inside &= pos >= 0 && pos < G->in[a];
        t = t * G->in[a] + pos;
      }
      if (inside)
        f(ctx, oi, t, ki);
    }
  }
}

typedef struct ConvCtx {
  const double *in, *w; /* w: the [k, cin, cout] slice for one (ci, co) pair, stride kstride */
  double *out;
  long kstride;
  double scale;
  bool adjoint;
} ConvCtx;

static void conv_tap(void *p, long o, long t, long k) {
  ConvCtx *c = p;
  double w = c->w ? c->w[k * c->kstride] : c->scale;
  if (!c->adjoint)
    c->out[o] += w * c->in[t];
  else
    c->out[t] += w * c->in[o];
}

/* y[n, co, :] += conv over ci of z[n, ci, :] with W[k.., ci, co] (own,
 * unsliced weight of shape [k.., cin, cout]); adjoint: the reverse map from
 * the output grid to the input grid. */
static void ref_conv(const Geo *G, const double *W, int cin, int cout, const double *src, double *dst,
                     long batch, bool adjoint) {
  long nin = 1, nout = 1;
  for (int a = 0; a < G->g; a++) {
    nin *= G->in[a];
    nout *= G->out[a];
  }
  for (long n = 0; n < batch; n++)
    for (int ci = 0; ci < cin; ci++)
      for (int co = 0; co < cout; co++) {
        ConvCtx c = {.w = W + (long)ci * cout + co, .kstride = (long)cin * cout, .adjoint = adjoint};
        c.in = adjoint ? src + (n * cout + co) * nout : src + (n * cin + ci) * nin;
        c.out = adjoint ? dst + (n * cin + ci) * nin : dst + (n * cout + co) * nout;
        each_tap(G, conv_tap, &c);
      }
}

/* The 2-D machine's arrow into h: conv(x, k = [3, 2], pad = [1, 1, 0, 1]). */
static const Geo h_geo = {2, {7, 6}, {7, 6}, {3, 2}, {1, 0}, {1, 1}, {1, 1}};
/* s = conv(h, k = [3, 2], stride = [2, 2]) */
static const Geo s_geo = {2, {7, 6}, {3, 3}, {3, 2}, {0, 0}, {2, 2}, {1, 1}};

static const double *param(const E2ePass *r, const char *name) {
  return r->params + r->m->params[e2e_model_param(r->m, name)].offset;
}

/* y_h = conv(x) + b_h and z_h = gelu(y_h); y_s = conv(h); z_s = softplus(y_s)
 * on the state computed by the generated forward pass. */
Test(conv_equations, machine_equations_2d) {
  E2ePass r = run_new(conv2d_src, "conv2d", BATCH, 11);
  e2e_pass_loss(&r);
  const struct mach_model *m = r.m;
  int x = e2e_model_block(m, "x"), h = e2e_model_block(m, "h"), s = e2e_model_block(m, "s");
  long nh = BATCH * m->blocks[h].size, ns = BATCH * m->blocks[s].size;
  double *yh = calloc((size_t)nh, sizeof(double)), *ys = calloc((size_t)ns, sizeof(double));
  ref_conv(&h_geo, param(&r, "W_h_x"), 2, 3, e2e_pass_z(&r, r.state, x), yh, BATCH, false);
  const double *bh = param(&r, "b_h");
  for (long i = 0; i < nh; i++)
    yh[i] += bh[(i / 42) % 3];
  ref_conv(&s_geo, param(&r, "W_s_h"), 3, 4, e2e_pass_z(&r, r.state, h), ys, BATCH, false);
  for (long i = 0; i < nh; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, h)[i] - yh[i]) < 1e-12, "y_h[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.state, h)[i], yh[i]);
    cr_assert(fabs(e2e_pass_z(&r, r.state, h)[i] - e2e_act("gelu", 0, yh[i])) < 1e-12, "z_h[%ld]", i);
  }
  for (long i = 0; i < ns; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, s)[i] - ys[i]) < 1e-12, "y_s[%ld]", i);
    cr_assert(fabs(e2e_pass_z(&r, r.state, s)[i] - e2e_act("softplus", 0, ys[i])) < 1e-12, "z_s[%ld]", i);
  }
  free(yh);
  free(ys);
  e2e_pass_free(&r);
}

/* zbar_h = adjoint conv of ybar_s + adjoint pool of ybar_p (h's readers),
 * ybar_h = gelu'(y_h) zbar_h; zbar_x = adjoint conv of ybar_h. */
Test(conv_equations, dual_equations_2d) {
  E2ePass r = run_new(conv2d_src, "conv2d", BATCH, 12);
  backward(&r);
  const struct mach_model *m = r.m;
  int x = e2e_model_block(m, "x"), h = e2e_model_block(m, "h"), s = e2e_model_block(m, "s");
  int p = e2e_model_block(m, "p");
  long nh = BATCH * m->blocks[h].size, nx = BATCH * m->blocks[x].size;
  double *zbar_h = calloc((size_t)nh, sizeof(double)), *zbar_x = calloc((size_t)nx, sizeof(double));
  ref_conv(&s_geo, param(&r, "W_s_h"), 3, 4, e2e_pass_z(&r, r.dstate, s), zbar_h, BATCH, true);
  static const Geo pool = {2, {7, 6}, {3, 3}, {2, 2}, {0, 0}, {2, 2}, {1, 1}};
  const double *ybar_p = e2e_pass_z(&r, r.dstate, p);
  for (long n = 0; n < BATCH; n++)
    for (int c = 0; c < 3; c++) {
      ConvCtx cc = {.in = ybar_p + (n * 3 + c) * 9, .out = zbar_h + (n * 3 + c) * 42,
                    .scale = 0.25, .adjoint = true};
      each_tap(&pool, conv_tap, &cc);
    }
  for (long i = 0; i < nh; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, h)[i] - zbar_h[i]) < 1e-12, "zbar_h[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.dstate, h)[i], zbar_h[i]);
    double ybar = e2e_dact("gelu", 0, e2e_pass_y(&r, r.state, h)[i]) * zbar_h[i];
    cr_assert(fabs(e2e_pass_z(&r, r.dstate, h)[i] - ybar) < 1e-12, "ybar_h[%ld]", i);
  }
  ref_conv(&h_geo, param(&r, "W_h_x"), 2, 3, e2e_pass_z(&r, r.dstate, h), zbar_x, BATCH, true);
  for (long i = 0; i < nx; i++)
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, x)[i] - zbar_x[i]) < 1e-12, "zbar_x[%ld]", i);
  free(zbar_h);
  free(zbar_x);
  e2e_pass_free(&r);
}

/* dW[k, ci, co] += z[n, ci, t] ybar[n, co, o] for each (o, t, k) of each_tap. */
typedef struct GradCtx {
  const double *z, *ybar;
  double *dw; /* the [k, cin, cout] slice of one (ci, co) pair, stride kstride */
  long kstride;
} GradCtx;

static void grad_tap(void *p, long o, long t, long k) {
  GradCtx *c = p;
  c->dw[k * c->kstride] += c->z[t] * c->ybar[o];
}

/* Many samples on a small grid: each windowed product's group holds 19 of
 * the 37, which the copies into the padded buffer move in blocks of a
 * vector's width and then one by one (the last group, 18, too); the dual
 * into the one input channel is a product per tap, then their sum; dW's
 * product takes the 20 channels of ybar by blocks of a vector's width and
 * the last 4 one by one. The state, the dual state and dW against the
 * references. */
static const char many_src[] = "machine many {\n"
                               "    input  x : 1 @ [3, 5]\n"
                               "    output h : 20 @ [3, 5] = tanh(conv(x, k = 3, pad = same))\n"
                               "}\n";

Test(conv_equations, many_samples_to_a_group) {
  enum { N = 37, CI = 1, CO = 20, K = 9, P = 15 };
  static const Geo geo = {2, {3, 5}, {3, 5}, {3, 3}, {1, 1}, {1, 1}, {1, 1}};
  E2ePass r = run_new(many_src, "many", N, 19);
  backward(&r);
  const struct mach_model *m = r.m;
  int x = e2e_model_block(m, "x"), h = e2e_model_block(m, "h");
  long nh = N * m->blocks[h].size, nx = N * m->blocks[x].size;
  double *yh = calloc((size_t)nh, sizeof(double)), *zbar_x = calloc((size_t)nx, sizeof(double));
  double dw[K * CI * CO] = {0};
  const double *W = param(&r, "W_h_x"), *zx = e2e_pass_z(&r, r.state, x), *ybar = e2e_pass_z(&r, r.dstate, h);
  ref_conv(&geo, W, CI, CO, zx, yh, N, false);
  ref_conv(&geo, W, CI, CO, ybar, zbar_x, N, true);
  for (long n = 0; n < N; n++)
    for (int ci = 0; ci < CI; ci++)
      for (int co = 0; co < CO; co++) {
        GradCtx c = {zx + (n * CI + ci) * P, ybar + (n * CO + co) * P, dw + ci * CO + co, CI * CO};
        each_tap(&geo, grad_tap, &c);
      }
  for (long i = 0; i < nh; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, h)[i] - yh[i]) < 1e-12, "y_h[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.state, h)[i], yh[i]);
    cr_assert(fabs(e2e_pass_z(&r, r.state, h)[i] - tanh(yh[i])) < 1e-12, "z_h[%ld]", i);
  }
  for (long i = 0; i < nx; i++)
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, x)[i] - zbar_x[i]) < 1e-12, "zbar_x[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.dstate, x)[i], zbar_x[i]);
  const double *dW = r.dparams + m->params[e2e_model_param(m, "W_h_x")].offset;
  for (int i = 0; i < K * CI * CO; i++)
    cr_assert(fabs(dW[i] - dw[i]) < 1e-12, "dW[%d]: %.17g vs %.17g", i, dW[i], dw[i]);
  free(yh);
  free(zbar_x);
  e2e_pass_free(&r);
}

/* The recurrence through two blocks, solved chunk by chunk (timeblock 1):
 *   y_h = conv(s, lags 0..1) + conv(g, lags 1..2) + b_h,  z_h = tanh(y_h)
 *   y_g = conv(h, lags 0..2),                             z_g = sigmoid(y_g)
 * A lag range a ..= b is the kernel b - a + 1 with pad b before. */
static const Geo lag01 = {1, {11}, {11}, {2}, {1}, {1}, {1}};
static const Geo lag12 = {1, {11}, {11}, {2}, {2}, {1}, {1}};
static const Geo lag02 = {1, {11}, {11}, {3}, {2}, {1}, {1}};
static const Geo tap0 = {1, {11}, {11}, {1}, {0}, {1}, {1}};

Test(conv_equations, machine_equations_of_a_recurrence) {
  E2ePass r = run_new(two_block_src, "twoblock", BATCH, 13);
  e2e_pass_loss(&r);
  cr_assert_eq(r.m->timeblock, 1);
  int s = e2e_model_block(r.m, "s"), h = e2e_model_block(r.m, "h"), g = e2e_model_block(r.m, "g");
  long n = BATCH * 2 * 11;
  double *yh = calloc((size_t)n, sizeof(double)), *yg = calloc((size_t)n, sizeof(double));
  ref_conv(&lag01, param(&r, "W_h_s"), 1, 2, e2e_pass_z(&r, r.state, s), yh, BATCH, false);
  ref_conv(&lag12, param(&r, "W_h_g"), 2, 2, e2e_pass_z(&r, r.state, g), yh, BATCH, false);
  const double *bh = param(&r, "b_h");
  for (long i = 0; i < n; i++)
    yh[i] += bh[(i / 11) % 2];
  ref_conv(&lag02, param(&r, "W_g_h"), 2, 2, e2e_pass_z(&r, r.state, h), yg, BATCH, false);
  for (long i = 0; i < n; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, h)[i] - yh[i]) < 1e-12, "y_h[%ld]", i);
    cr_assert(fabs(e2e_pass_z(&r, r.state, h)[i] - tanh(yh[i])) < 1e-12, "z_h[%ld]", i);
    cr_assert(fabs(e2e_pass_y(&r, r.state, g)[i] - yg[i]) < 1e-12, "y_g[%ld]", i);
    cr_assert(fabs(e2e_pass_z(&r, r.state, g)[i] - e2e_act("sigmoid", 0, yg[i])) < 1e-12, "z_g[%ld]", i);
  }
  free(yh);
  free(yg);
  e2e_pass_free(&r);
}

/* An anti-causal machine: h reads its own future (t + 1, t + 2), so the
 * cycle runs through negative lags and machc solves it backwards in time,
 * chunks last to first, and `explain` says so. */
static const char back_src[] =
    "machine back {\n"
    "  input s : 1 @ [11]\n"
    "  block h : 2 @ [11] = tanh(conv(s, k = 2, pad = [0, 1]) + conv(h, k = 2, pad = [-1, 2]))\n"
    "  output y : 1 @ [11] = conv(h, k = 1)\n"
    "}\n";

Test(conv_equations, machine_equations_of_an_anti_causal_recurrence) {
  E2ePass r = run_new(back_src, "back", BATCH, 17);
  e2e_pass_loss(&r);
  int s = e2e_model_block(r.m, "s"), h = e2e_model_block(r.m, "h");
  static const Geo now_next = {1, {11}, {11}, {2}, {0}, {1}, {1}}, leads12 = {1, {11}, {11}, {2}, {-1}, {1}, {1}};
  long n = BATCH * 2 * 11;
  double *yh = calloc((size_t)n, sizeof(double));
  ref_conv(&now_next, param(&r, "W_h_s"), 1, 2, e2e_pass_z(&r, r.state, s), yh, BATCH, false);
  ref_conv(&leads12, param(&r, "W_h_h"), 2, 2, e2e_pass_z(&r, r.state, h), yh, BATCH, false);
  for (long i = 0; i < n; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, h)[i] - yh[i]) < 1e-12, "y_h[%ld]", i);
    cr_assert(fabs(e2e_pass_z(&r, r.state, h)[i] - tanh(yh[i])) < 1e-12, "z_h[%ld]", i);
  }
  free(yh);
  e2e_pass_free(&r);
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "back.mach"), back_src);
  E2eRun x = e2e_runl(dir, 30, e2e_machc(), "explain", "back.mach", NULL);
  e2e_check_ok(&x, "machc explain");
  cr_assert(strstr(x.out, "\n  runs backwards in time: its cycles read only later steps, so the chunks are "
                          "solved last to first\n"), "%s", x.out);
  e2e_run_free(&x);
}

/* Its dual runs backwards in time: zbar_g = conv^T(ybar_h) + conv^T(ybar_y),
 * zbar_h = conv^T(ybar_g), ybar = sigma'(y) zbar. */
Test(conv_equations, dual_equations_of_a_recurrence) {
  E2ePass r = run_new(two_block_src, "twoblock", BATCH, 14);
  backward(&r);
  int h = e2e_model_block(r.m, "h"), g = e2e_model_block(r.m, "g"), y = e2e_model_block(r.m, "y");
  long n = BATCH * 2 * 11;
  double *zh = calloc((size_t)n, sizeof(double)), *zg = calloc((size_t)n, sizeof(double));
  ref_conv(&lag02, param(&r, "W_g_h"), 2, 2, e2e_pass_z(&r, r.dstate, g), zh, BATCH, true);
  ref_conv(&lag12, param(&r, "W_h_g"), 2, 2, e2e_pass_z(&r, r.dstate, h), zg, BATCH, true);
  ref_conv(&tap0, param(&r, "W_y_g"), 2, 1, e2e_pass_z(&r, r.dstate, y), zg, BATCH, true);
  for (long i = 0; i < n; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, h)[i] - zh[i]) < 1e-12, "zbar_h[%ld]", i);
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, g)[i] - zg[i]) < 1e-12, "zbar_g[%ld]", i);
    double th = tanh(e2e_pass_y(&r, r.state, h)[i]), sg = e2e_pass_z(&r, r.state, g)[i];
    cr_assert(fabs(e2e_pass_z(&r, r.dstate, h)[i] - (1 - th * th) * zh[i]) < 1e-12, "ybar_h[%ld]", i);
    cr_assert(fabs(e2e_pass_z(&r, r.dstate, g)[i] - sg * (1 - sg) * zg[i]) < 1e-12, "ybar_g[%ld]", i);
  }
  free(zh);
  free(zg);
  e2e_pass_free(&r);
}

/* The staged machine's recurrent block, every time step of it (the chunked
 * solve must write each step of y_h once, arrows from the whole stages
 * included): y_h = conv(p, lags 0..1) + W_h_c c + conv(h, lags 1..2) + b_h. */
Test(conv_equations, machine_equations_of_a_staged_recurrence) {
  E2ePass r = run_new(staged_src, "staged", BATCH, 15);
  e2e_pass_loss(&r);
  int p = e2e_model_block(r.m, "p"), h = e2e_model_block(r.m, "h"), c = e2e_model_block(r.m, "c");
  static const Geo l01 = {1, {10}, {10}, {2}, {1}, {1}, {1}}, l12 = {1, {10}, {10}, {2}, {2}, {1}, {1}};
  long n = BATCH * 40;
  double *yh = calloc((size_t)n, sizeof(double));
  ref_conv(&l01, param(&r, "W_h_p"), 3, 4, e2e_pass_z(&r, r.state, p), yh, BATCH, false);
  ref_conv(&l12, param(&r, "W_h_h"), 4, 4, e2e_pass_z(&r, r.state, h), yh, BATCH, false);
  const double *wc = param(&r, "W_h_c"), *bh = param(&r, "b_h"), *zc = e2e_pass_z(&r, r.state, c);
  for (long b = 0; b < BATCH; b++)
    for (int o = 0; o < 40; o++) {
      for (int i = 0; i < 3; i++)
        yh[b * 40 + o] += zc[b * 3 + i] * wc[i * 40 + o];
      yh[b * 40 + o] += bh[o / 10];
    }
  for (long i = 0; i < n; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.state, h)[i] - yh[i]) < 1e-12, "y_h[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.state, h)[i], yh[i]);
    cr_assert(fabs(e2e_pass_z(&r, r.state, h)[i] - tanh(yh[i])) < 1e-12, "z_h[%ld]", i);
  }
  free(yh);
  e2e_pass_free(&r);
}

/* Its dual, solved backwards in chunks: zbar_h = conv^T(ybar_h) (the lags
 * 1..2 read back) + ybar_g / 10 (the adjoint of the pooling, from the
 * whole stage solved first), at every time step. */
Test(conv_equations, dual_equations_of_a_staged_recurrence) {
  E2ePass r = run_new(staged_src, "staged", BATCH, 16);
  backward(&r);
  int h = e2e_model_block(r.m, "h"), g = e2e_model_block(r.m, "g");
  static const Geo l12 = {1, {10}, {10}, {2}, {2}, {1}, {1}};
  long n = BATCH * 40;
  double *zh = calloc((size_t)n, sizeof(double));
  ref_conv(&l12, param(&r, "W_h_h"), 4, 4, e2e_pass_z(&r, r.dstate, h), zh, BATCH, true);
  const double *ybar_g = e2e_pass_z(&r, r.dstate, g);
  for (long i = 0; i < n; i++)
    zh[i] += ybar_g[i / 10] / 10;
  for (long i = 0; i < n; i++) {
    cr_assert(fabs(e2e_pass_y(&r, r.dstate, h)[i] - zh[i]) < 1e-12, "zbar_h[%ld]: %.17g vs %.17g", i,
              e2e_pass_y(&r, r.dstate, h)[i], zh[i]);
    double t = e2e_pass_z(&r, r.state, h)[i];
    cr_assert(fabs(e2e_pass_z(&r, r.dstate, h)[i] - (1 - t * t) * zh[i]) < 1e-12, "ybar_h[%ld]", i);
  }
  free(zh);
  e2e_pass_free(&r);
}

/* The RecurMachine's arrow from x[j] into x[i], of one weight W[pad + 1,
 * 24, 24]: for j < i every lag 0 ..= pad (W[0 ..= pad]), else the lags tb
 * ..= pad (W[0 ..= pad - tb]); an independent reference copies W's slice
 * out and runs ref_conv (the adjoint: the dual's arrow back). */
enum { GW = 8, GB = 3, GPAD = 3, GTB = 2, GT = 9, GBATCH = 71 };

static void ref_recur_arrow(const double *W, int j, int i, const double *src, double *dst, bool adjoint) {
  int k = j < i ? GPAD + 1 : GPAD - GTB + 1;
  const Geo g = {1, {GT}, {GT}, {k}, {GPAD}, {1}, {1}};
  double *sub = malloc(sizeof(double) * k * GW * GW);
  for (int t = 0; t < k; t++)
    for (int a = 0; a < GW; a++)
      for (int b = 0; b < GW; b++)
        sub[(t * GW + a) * GW + b] = W[(t * GW * GB + j * GW + a) * GW * GB + i * GW + b];
  ref_conv(&g, sub, GW, GW, src, dst, GBATCH, adjoint);
  free(sub);
}

/* Blocks of 8 channels on 9 steps, every one an output, a batch of 71: in
 * each chunk the arrows into a block run as one product of all their taps
 * per group of samples (groups of 36 and 35; the last chunk one step), which
 * writes y and z, and in the dual zbar and ybar (sigma' read from the
 * primal state). Every block's equation against the reference, both ways. */
static const char wide_recur_src[] = "import \"recurrent.mach\"\n"
                                     "machine wrecur {\n"
                                     "    use m = recur_machine([8, 8, 8], tanh, 3, 2, 9)\n"
                                     "    output m.x[0 .. 3]\n"
                                     "}\n";

Test(conv_equations, recur_machine_in_groups_of_samples) {
  E2ePass r = run_new(wide_recur_src, "wrecur", GBATCH, 19);
  backward(&r);
  const double *W = param(&r, "m.W");
  int blk[GB];
  for (int i = 0; i < GB; i++)
    blk[i] = e2e_model_block(r.m, e2e_fmt("m.x[%d]", i));
  long n = (long)GBATCH * GW * GT;
  double *want = malloc(sizeof(double) * n);
  for (int i = 0; i < GB; i++) { /* y_i = input + sum over j of conv_ji(z_j) */
    for (long k = 0; k < n; k++)
      want[k] = i == 0 ? r.in[0][k] : 0;
    for (int j = 0; j < GB; j++)
      ref_recur_arrow(W, j, i, e2e_pass_z(&r, r.state, blk[j]), want, false);
    const double *y = e2e_pass_y(&r, r.state, blk[i]), *z = e2e_pass_z(&r, r.state, blk[i]);
    for (long k = 0; k < n; k++) {
      cr_assert(fabs(y[k] - want[k]) < 1e-12, "y of x[%d] at %ld: %.17g vs %.17g", i, k, y[k], want[k]);
      cr_assert(fabs(z[k] - tanh(want[k])) < 1e-12, "z of x[%d] at %ld", i, k);
    }
  }
  for (int j = 0; j < GB; j++) { /* zbar_j = cot_j + sum over i of conv_ji^T(ybar_i) */
    memcpy(want, r.cot[j], sizeof(double) * n);
    for (int i = 0; i < GB; i++)
      ref_recur_arrow(W, j, i, e2e_pass_z(&r, r.dstate, blk[i]), want, true);
    const double *zbar = e2e_pass_y(&r, r.dstate, blk[j]), *ybar = e2e_pass_z(&r, r.dstate, blk[j]);
    const double *z = e2e_pass_z(&r, r.state, blk[j]);
    for (long k = 0; k < n; k++) {
      cr_assert(fabs(zbar[k] - want[k]) < 1e-12, "zbar of x[%d] at %ld: %.17g vs %.17g", j, k, zbar[k], want[k]);
      cr_assert(fabs(ybar[k] - (1 - z[k] * z[k]) * want[k]) < 1e-12, "ybar of x[%d] at %ld", j, k);
    }
  }
  free(want);
  e2e_pass_free(&r);
}

/* ---- the schedule does not change the numbers ------------------------------ */

/* h reads itself at lags 3 ..= 4: chunks of 1, 2 or 3 steps are legal and
 * machc picks 3; a chunk of 4 would put a cycle inside a chunk. */
static char *lagged_src(int tb) {
  return e2e_fmt("machine lagged {\n"
                 "    %s\n"
                 "    input  s : 2 @ [14]\n"
                 "    block  h : 3 @ [14] = tanh(conv(s, lags = 0 ..= 2) + conv(h, lags = 3 ..= 4) + bias)\n"
                 "    output y : 1 @ [14] = conv(h, lags = 0 ..= 1)\n"
                 "}\n", tb ? e2e_fmt("set timeblock = %d", tb) : "");
}

Test(conv_schedule, chunk_length_does_not_change_the_numbers) {
  E2ePass ref = run_new(lagged_src(0), "lagged", BATCH, 21);
  cr_assert_eq(ref.m->timeblock, 3, "machc should choose the largest legal chunk, 3; got %d",
               ref.m->timeblock);
  e2e_pass_loss(&ref);
  int y = e2e_model_block(ref.m, "y");
  for (int tb = 1; tb <= 3; tb++) {
    E2ePass r = run_new(lagged_src(tb), "lagged", BATCH, 21);
    cr_assert_eq(r.m->timeblock, tb);
    e2e_pass_loss(&r);
    for (long i = 0; i < BATCH * 14; i++)
      cr_assert(fabs(e2e_pass_z(&r, r.state, y)[i] - e2e_pass_z(&ref, ref.state, y)[i]) < 1e-12,
                "timeblock %d: y[%ld] differs", tb, i);
    e2e_pass_free(&r);
  }
  e2e_pass_free(&ref);
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "big.mach"), lagged_src(4));
  E2eRun run = e2e_runl(dir, 30, e2e_machc(), "explain", "big.mach", NULL);
  cr_assert_eq(run.status, 1, "timeblock 4 must be refused: %s", run.err);
  cr_assert(strstr(run.err, "timeblock 4 is too large for machine 'lagged'"), "%s", run.err);
  cr_assert(strstr(run.err, "h -> h"), "the cycle must be named: %s", run.err);
  e2e_run_free(&run);
}

/* ---- the printed dual machine ------------------------------------------------ */

/* Compiles `machc --emit=dual` of src, feeds it the cotangents and sigma'(y)
 * of the primal state, and compares its outputs with the backward pass. */
static void check_printed_dual(const char *src, const char *prefix) {
  E2ePass r = run_new(src, prefix, BATCH, 31);
  backward(&r);
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), src);
  E2eRun run = e2e_runl(dir, 60, e2e_machc(), "--emit=dual", "m.mach", "-o", "dual.mach", NULL);
  e2e_check_ok(&run, "machc --emit=dual");
  e2e_run_free(&run);
  char *dual_src = e2e_read_file(e2e_path(dir, "dual.mach"), NULL);
  cr_assert(dual_src);
  E2ePass d = run_new(dual_src, e2e_fmt("%s_dual", prefix), BATCH, 1);
  memcpy(d.params, r.params, sizeof(double) * (size_t)r.m->param_size);
  cr_assert_eq(d.m->param_size, r.m->param_size);
  for (int k = 0; k < d.m->n_inputs; k++) {
    const char *name = d.m->blocks[d.m->inputs[k]].name;
    long n = BATCH * d.m->blocks[d.m->inputs[k]].size;
    if (strncmp(name, "dsigma.", 7) == 0) { /* sigma'(y) of the primal block */
      int b = e2e_model_block(r.m, name + 7);
      const char *act = r.m->blocks[b].activation;
      for (long i = 0; i < n; i++)
        d.in[k][i] = e2e_dact(act, 0.01, e2e_pass_y(&r, r.state, b)[i]);
    } else { /* the cotangent of a primal output */
      int b = e2e_model_block(r.m, name), slot = -1;
      for (int j = 0; j < r.m->n_outputs; j++)
        if (r.m->outputs[j] == b)
          slot = j;
      cr_assert(slot >= 0, "dual input '%s' is not a primal output", name);
      memcpy(d.in[k], r.cot[slot], sizeof(double) * (size_t)n);
    }
  }
  d.m->forward(d.params, (const double *const *)d.in, d.state, BATCH);
  for (int k = 0; k < d.m->n_outputs; k++) {
    int db = d.m->outputs[k], pb = e2e_model_block(r.m, d.m->blocks[db].name);
    for (long i = 0; i < BATCH * d.m->blocks[db].size; i++)
      cr_assert(fabs(e2e_pass_z(&d, d.state, db)[i] - e2e_pass_z(&r, r.dstate, pb)[i]) < 1e-12,
                "%s: printed dual, output '%s'[%ld]: %.17g, backward pass %.17g", prefix,
                d.m->blocks[db].name, i, e2e_pass_z(&d, d.state, db)[i], e2e_pass_z(&r, r.dstate, pb)[i]);
  }
  e2e_pass_free(&d);
  e2e_pass_free(&r);
}

Test(conv_dual, printed_dual_of_a_conv_machine) { check_printed_dual(conv2d_src, "conv2d"); }
Test(conv_dual, printed_dual_of_poolings_written_in_one_pass) { check_printed_dual(pooled_src, "pooled"); }
Test(conv_dual, printed_dual_of_a_strided_1d_machine) { check_printed_dual(conv1d_src, "conv1d"); }
Test(conv_dual, printed_dual_of_a_wide_3d_machine) { check_printed_dual(wide3d_src, "wide3d"); }
Test(conv_dual, printed_dual_of_a_banded_2d_machine) { check_printed_dual(banded_src, "banded"); }
Test(conv_dual, printed_dual_of_a_staged_recurrent_machine) { check_printed_dual(staged_src, "staged"); }
Test(conv_dual, printed_dual_of_a_recurrent_machine) {
  char *src = recur_src(6, 5, 17);
  check_printed_dual(src, "recur");
  free(src);
}

static char *every_arrow_src(void) {
  char *src = e2e_read_file(e2e_path(e2e_root(), "tests/machines/every_arrow.mach"), NULL);
  cr_assert(src, "cannot read tests/machines/every_arrow.mach");
  return src;
}

/* Every arrow kind and option transposed: conv_t and avgpool_t with pads,
 * stride and dilation, global_avgpool_t, conv of a conv_t, lags read
 * backwards in time, dense and conv weights read transposed. */
Test(conv_dual, printed_dual_of_every_arrow_option) {
  char *src = every_arrow_src();
  check_printed_dual(src, "every");
  free(src);
}

static char *emit_mach(const char *src) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), src);
  E2eRun run = e2e_runl(dir, 30, e2e_machc(), "--emit=mach", "m.mach", NULL);
  e2e_check_ok(&run, "machc --emit=mach");
  char *out = run.out;
  run.out = NULL;
  e2e_run_free(&run);
  return out;
}

/* The printed machine, compiled, computes the same state from the same
 * parameters and inputs (matched by name: the printed machine may declare
 * them in another order), and printing it again gives the same text. */
Test(conv_print, printed_machine_of_every_arrow_option) {
  char *src = every_arrow_src();
  char *printed = emit_mach(src);
  cr_assert(strstr(printed, "avgpool(b, k = [2, 2], pad = [0, 1, 0, 0], stride = [1, 2], dilation = [2, 1])"),
            "%s", printed);
  E2ePass r = run_new(src, "every", BATCH, 41), q = run_new(printed, "every", BATCH, 1);
  cr_assert_eq(q.m->param_size, r.m->param_size);
  for (int k = 0; k < r.m->n_params; k++) {
    const struct mach_param *pr = &r.m->params[k];
    const struct mach_param *pq = &q.m->params[e2e_model_param(q.m, pr->name)];
    cr_assert_eq(pq->size, pr->size, "%s", pr->name);
    memcpy(q.params + pq->offset, r.params + pr->offset, sizeof(double) * (size_t)pr->size);
  }
  for (int k = 0; k < r.m->n_inputs; k++) {
    int b = r.m->inputs[k], bq = e2e_model_block(q.m, r.m->blocks[b].name), slot = -1;
    for (int j = 0; j < q.m->n_inputs; j++)
      slot = q.m->inputs[j] == bq ? j : slot;
    cr_assert(slot >= 0, "'%s' is not an input of the printed machine", r.m->blocks[b].name);
    memcpy(q.in[slot], r.in[k], sizeof(double) * (size_t)(BATCH * r.m->blocks[b].size));
  }
  e2e_pass_loss(&r);
  e2e_pass_loss(&q);
  for (int b = 0; b < r.m->n_blocks; b++) {
    int bq = e2e_model_block(q.m, r.m->blocks[b].name);
    for (long i = 0; i < BATCH * r.m->blocks[b].size; i++) {
      cr_assert(fabs(e2e_pass_y(&r, r.state, b)[i] - e2e_pass_y(&q, q.state, bq)[i]) < 1e-13,
                "y of '%s'[%ld]: original %.17g, printed %.17g\n%s", r.m->blocks[b].name, i,
                e2e_pass_y(&r, r.state, b)[i], e2e_pass_y(&q, q.state, bq)[i], printed);
      cr_assert(fabs(e2e_pass_z(&r, r.state, b)[i] - e2e_pass_z(&q, q.state, bq)[i]) < 1e-13,
                "z of '%s'[%ld]", r.m->blocks[b].name, i);
    }
  }
  char *again = emit_mach(printed);
  const char *body1 = strstr(printed, "\nmachine "), *body2 = strstr(again, "\nmachine ");
  cr_assert(body1 && body2);
  cr_assert_str_eq(body2, body1, "printing the printed machine changed it");
  e2e_pass_free(&r);
  e2e_pass_free(&q);
  free(again);
  free(printed);
  free(src);
}

/* ---- diagnostics --------------------------------------------------------------- */

static E2eRun machc_on(const char *src) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "bad.mach"), src);
  return e2e_runl(dir, 30, e2e_machc(), "explain", "bad.mach", NULL);
}

Test(conv_errors, cycle_without_lag_is_named) {
  E2eRun r = machc_on("machine z {\n  input s : 1 @ [8]\n"
                      "  block h : 2 @ [8] = tanh(conv(s, lags = 0 ..= 1) + conv(g, lags = 0 ..= 2))\n"
                      "  output g : 2 @ [8] = conv(h, lags = 0 ..= 1)\n}\n");
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert(strstr(r.err, "machine 'z' has no finite depth"), "%s", r.err);
  cr_assert(strstr(r.err, "h -> g -> h") || strstr(r.err, "g -> h -> g"), "%s", r.err);
  e2e_run_free(&r);
}

/* Reading the future of an input is fine (it is known before the chunks);
 * reading the future of a block on the cycle is not. */
Test(conv_errors, recurrent_arrow_reading_the_future) {
  E2eRun r = machc_on("machine f {\n  input s : 1 @ [8]\n"
                      "  block h : 2 @ [8] = tanh(conv(s, lags = 0 ..= 1) + conv(g, k = 3, pad = same))\n"
                      "  block g : 2 @ [8] = conv(h, lags = 1 ..= 2)\n"
                      "  output y : 1 @ [8] = conv(h, k = 1)\n}\n");
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert(strstr(r.err, "bad.mach:3:") && strstr(r.err, "'g' -> 'h' does not"), "%s", r.err);
  e2e_run_free(&r);
}

Test(conv_errors, size_mismatch_names_the_axis) {
  E2eRun r = machc_on("machine a {\n  input x : 1 @ [8, 8]\n"
                      "  output y : 2 @ [8, 7] = conv(x, k = 3, pad = same)\n}\n");
  cr_assert_eq(r.status, 1, "%s", r.err);
  cr_assert(strstr(r.err, "bad.mach:3:") && strstr(r.err, "along axis 1") &&
                strstr(r.err, "gives 8") && strstr(r.err, "'y' has 7"), "%s", r.err);
  e2e_run_free(&r);
}

Test(conv_errors, explain_shows_the_chunks) {
  char *src = recur_src(6, 5, 17);
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "r.mach"), src);
  E2eRun r = e2e_runl(dir, 30, e2e_machc(), "explain", "r.mach", NULL);
  e2e_check_ok(&r, "machc explain");
  cr_assert(strstr(r.out, "17 time steps in 4 chunks of 5"), "%s", r.out);
  e2e_run_free(&r);
  free(src);
}

/* A ConvMachine whose grid, 24 x 24, fills a product's columns with one
 * sample: all its levels run in one loop over the samples, each sample's
 * levels in turn (emit_conv_sweep), x[0] = tanh(input) first, a level's
 * product reading the channels of x[0] where the levels before it put them;
 * the dual's levels too: x[3]'s cotangent first, then x[2]'s and x[1]'s
 * products, each reading the cotangents where the one before put them, and
 * last, for the input's gradient alone, x[0]'s product into its one channel
 * (a product per tap); after them, the kernel gradients of all the levels
 * in one loop over the samples, each sample's z copied once. Gradients
 * against finite differences, and the machine equations of every block
 * against the reference. */
static const char sweep_src[] = "import \"conv.mach\"\n"
                                "machine sweep {\n"
                                "    use m = conv_machine([1, 8, 4, 4], tanh, [1, 1, 0, 2], [24, 24])\n"
                                "    output m.x[3]\n"
                                "}\n";

Test(conv_schedule, levels_solved_sample_by_sample) {
  check_gradients(sweep_src, "sweep");

  enum { C = 17, G = 576 };
  static const Geo geo = {2, {24, 24}, {24, 24}, {3, 3}, {1, 0}, {1, 1}, {1, 1}};
  static const int dims[] = {1, 8, 4, 4}, off[] = {0, 1, 9, 13};
  E2ePass r = run_new(sweep_src, "sweep", BATCH, 23);
  char *code = e2e_read_file(r.mod.c_path, NULL);
  const char *fwd = code ? strstr(code, "Levels 0 to 3 sample by sample") : NULL;
  const char *dual = fwd ? strstr(fwd + 1, "Levels 0 to 3 sample by sample") : NULL;
  cr_assert(dual, "the levels of the machine or of its dual not solved in one sweep");
  cr_assert(strstr(dual, "pad[8 + ci, u + tap_at[k], n]"), "the dual's sweep does not share its pad");
  cr_assert(strstr(dual, "q[k, (x, n)]: tap_rows's"), "x[0]'s cotangent not in the dual's sweep");
  cr_assert(strstr(dual, "the levels' gradients, sample by sample"), "the kernel gradients not in one loop");
  free(code);
  e2e_pass_loss(&r);
  const double *W = param(&r, "m.W"); /* [3, 3, C, C] */
  for (int i = 1; i < 4; i++) {
    int bi = e2e_model_block(r.m, e2e_fmt("m.x[%d]", i));
    long n = BATCH * (long)dims[i] * G;
    double *y = calloc((size_t)n, sizeof(double));
    for (int j = 0; j < i; j++) {
      double w[9 * 8 * 4]; /* W[k, off[j] + ci, off[i] + co], as [k, ci, co] */
      for (int k = 0; k < 9; k++)
        for (int ci = 0; ci < dims[j]; ci++)
          for (int co = 0; co < dims[i]; co++)
            w[(k * dims[j] + ci) * dims[i] + co] = W[(k * C + off[j] + ci) * C + off[i] + co];
      int bj = e2e_model_block(r.m, e2e_fmt("m.x[%d]", j));
      ref_conv(&geo, w, dims[j], dims[i], e2e_pass_z(&r, r.state, bj), y, BATCH, false);
    }
    for (long k = 0; k < n; k++) {
      cr_assert(fabs(e2e_pass_y(&r, r.state, bi)[k] - y[k]) < 1e-12, "y of x[%d] [%ld]: %.17g vs %.17g", i, k,
                e2e_pass_y(&r, r.state, bi)[k], y[k]);
      cr_assert(fabs(e2e_pass_z(&r, r.state, bi)[k] - tanh(y[k])) < 1e-12, "z of x[%d] [%ld]", i, k);
    }
    free(y);
  }
  e2e_pass_free(&r);
}

/* Convolutions read through zero-padded copies of their input, a group of
 * samples at a time (tests/machines/grouped.mach). Every sample's state,
 * dual state and share of the parameter gradient must be what a batch of
 * that one sample gives. */
Test(conv_schedule, sample_groups_do_not_change_the_numbers) {
  enum { B = 7 };
  char *grouped_src = e2e_read_file(e2e_path(e2e_root(), "tests/machines/grouped.mach"), NULL);
  cr_assert(grouped_src, "cannot read tests/machines/grouped.mach");
  E2ePass all = run_new(grouped_src, "grouped", B, 21);
  backward(&all);
  const struct mach_model *m = all.m;
  double *dsum = calloc((size_t)m->param_size + 1, sizeof(double));
  for (long n = 0; n < B; n++) {
    E2ePass one = run_new(grouped_src, "grouped", 1, 22);
    memcpy(one.params, all.params, sizeof(double) * (size_t)m->param_size);
    for (int k = 0; k < m->n_inputs; k++) {
      long sz = m->blocks[m->inputs[k]].size;
      memcpy(one.in[k], all.in[k] + n * sz, sizeof(double) * (size_t)sz);
    }
    for (int k = 0; k < m->n_outputs; k++) {
      long sz = m->blocks[m->outputs[k]].size;
      memcpy(one.cot[k], all.cot[k] + n * sz, sizeof(double) * (size_t)sz);
    }
    backward(&one);
    for (int b = 0; b < m->n_blocks; b++) {
      long sz = m->blocks[b].size;
      const double *ya = e2e_pass_y(&all, all.state, b) + n * sz, *y1 = e2e_pass_y(&one, one.state, b);
      const double *da = e2e_pass_y(&all, all.dstate, b) + n * sz, *d1 = e2e_pass_y(&one, one.dstate, b);
      for (long i = 0; i < sz; i++) {
        cr_assert(fabs(ya[i] - y1[i]) <= 1e-12 * (1 + fabs(y1[i])), "sample %ld, block %s, y[%ld]: %.17g vs %.17g",
                  n, m->blocks[b].name, i, ya[i], y1[i]);
        cr_assert(fabs(da[i] - d1[i]) <= 1e-12 * (1 + fabs(d1[i])), "sample %ld, block %s, zbar[%ld]: %.17g vs %.17g",
                  n, m->blocks[b].name, i, da[i], d1[i]);
      }
    }
    for (long i = 0; i < m->param_size; i++)
      dsum[i] += one.dparams[i];
    e2e_pass_free(&one);
  }
  for (long i = 0; i < m->param_size; i++)
    cr_assert(fabs(all.dparams[i] - dsum[i]) <= 1e-10 * (1 + fabs(dsum[i])), "dparams[%ld]: %.17g vs %.17g", i,
              all.dparams[i], dsum[i]);
  free(dsum);
  e2e_pass_free(&all);
  free(grouped_src);
}
