/* test_softmax.c — softmax as an activation, end to end.
 *
 * - The forward pass against an independent softmax of the block's y over
 *   the channels (at every grid point of a grid block).
 * - Finite differences: the backward pass (the dual machine, whose softmax
 *   activation is the Jacobian-vector product z * (zbar - <z, zbar>)) gives
 *   the gradient of L = sum(z_out * G) for every parameter and input entry,
 *   for a flat block, a grid block, a recurrent (chunked) block and a
 *   softmax_jvp block whose gate is an input.
 * - The printed machine (--emit=mach) and the printed dual (--emit=dual,
 *   fed dsigma.NAME = softmax(y) for softmax blocks) compile and agree with
 *   the compiled machine and its backward pass.
 * - The runtime: --loss xent refuses a softmax output; predict --proba and
 *   --argmax on a logits output. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(softmax, .fini = e2e_cleanup, .timeout = 180);

static const char flat_src[] =
    "machine flat {\n"
    "    input  x : 3\n"
    "    block  h : 4 = tanh(dense(x) + bias)\n"
    "    block  s : 5 = softmax(dense(h) + bias)\n"
    "    output y : 2 = dense(s, h)\n"
    "    output p : 5 = dense(x) + s\n"
    "}\n";

static const char grid_src[] =
    "machine grid {\n"
    "    input  x : 2 @ [6, 5]\n"
    "    block  h : 3 @ [6, 5] = softmax(conv(x, k = 3, pad = same) + bias)\n"
    "    block  g : 4 @ [3, 2] = softmax(conv(h, k = [2, 3], stride = 2))\n"
    "    output y : 2 = dense(g, h) + bias\n"
    "}\n";

/* softmax on a block solved in chunks of time */
static const char recur_src[] =
    "machine rec {\n"
    "    set timeblock = 2\n"
    "    input  s : 2 @ [8]\n"
    "    block  h : 3 @ [8] = softmax(conv(s, lags = 0 ..= 1) + conv(h, lags = 2 ..= 3) + bias)\n"
    "    output y : 1 @ [8] = conv(h, k = 1) + bias\n"
    "}\n";

/* softmax_jvp(g, y) = g * (y - <g, y>), bilinear: the gate is an input */
static const char jvp_src[] =
    "machine jvp {\n"
    "    input  x : 3\n"
    "    input  g : 4\n"
    "    block  h : 4 = softmax_jvp(g, dense(x) + bias)\n"
    "    output y : 2 = tanh(dense(h))\n"
    "}\n";

static E2ePass run_new(const char *src, const char *prefix, long batch, uint64_t seed) {
  return e2e_pass_new(e2e_load_model(src, prefix), batch, seed, 1.2, 1.5);
}

/* Every softmax block's z is softmax(y) over its channels, computed here. */
static int check_softmax_values(E2ePass *r) {
  int checked = 0;
  e2e_pass_loss(r);
  for (int b = 0; b < r->m->n_blocks; b++) {
    const struct mach_block *bl = &r->m->blocks[b];
    if (strcmp(bl->activation, "softmax") != 0)
      continue;
    long C = bl->shape[0], G = bl->size / C;
    const double *y = e2e_pass_y(r, r->state, b), *z = e2e_pass_z(r, r->state, b);
    for (long n = 0; n < r->batch; n++)
      for (long g = 0; g < G; g++) {
        double sum = 0, zsum = 0;
        for (long c = 0; c < C; c++)
          sum += exp(y[n * bl->size + c * G + g]);
        for (long c = 0; c < C; c++) {
          long i = n * bl->size + c * G + g;
          double want = exp(y[i]) / sum;
          cr_assert(fabs(z[i] - want) <= 1e-14, "%s[%ld]: %.17g, softmax %.17g", bl->name, i,
                    z[i], want);
          zsum += z[i];
        }
        cr_assert(fabs(zsum - 1) < 1e-14);
      }
    checked++;
  }
  return checked;
}

/* Central differences, four points (softmax is smooth): every parameter and
 * every input entry. */
static void check_gradients(const char *src, const char *prefix) {
  E2ePass r = run_new(src, prefix, 3, 17);
  const double h = 1e-4;
  e2e_pass_loss(&r);
  r.m->backward(r.params, r.state, (const double *const *)r.cot, r.dstate, r.dparams, r.batch, 1, NULL, NULL);
  double *dp = malloc(sizeof(double) * (size_t)(r.m->param_size + 1));
  memcpy(dp, r.dparams, sizeof(double) * (size_t)r.m->param_size);
  double **din = calloc(8, sizeof(double *));
  for (int k = 0; k < r.m->n_inputs; k++) {
    int b = r.m->inputs[k];
    long n = r.batch * r.m->blocks[b].size;
    din[k] = malloc(sizeof(double) * (size_t)n);
    memcpy(din[k], e2e_pass_z(&r, r.dstate, b), sizeof(double) * (size_t)n);
  }
  for (long i = 0; i < r.m->param_size + 0; i++) {
    double *p = &r.params[i], keep = *p, f[4];
    const double off[4] = {-2 * h, -h, h, 2 * h};
    for (int s = 0; s < 4; s++) {
      *p = keep + off[s];
      f[s] = e2e_pass_loss(&r);
    }
    *p = keep;
    double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
    cr_assert(e2e_reldiff(dp[i], fd, 1e-8) < 1e-6, "%s: dparams[%ld] = %.12g, finite differences %.12g",
              prefix, i, dp[i], fd);
  }
  for (int k = 0; k < r.m->n_inputs; k++) {
    long n = r.batch * r.m->blocks[r.m->inputs[k]].size;
    for (long i = 0; i < n; i++) {
      double *p = &r.in[k][i], keep = *p, f[4];
      const double off[4] = {-2 * h, -h, h, 2 * h};
      for (int s = 0; s < 4; s++) {
        *p = keep + off[s];
        f[s] = e2e_pass_loss(&r);
      }
      *p = keep;
      double fd = (f[0] - 8 * f[1] + 8 * f[2] - f[3]) / (12 * h);
      cr_assert(e2e_reldiff(din[k][i], fd, 1e-8) < 1e-6,
                "%s: d input %s[%ld] = %.12g, finite differences %.12g", prefix,
                r.m->blocks[r.m->inputs[k]].name, i, din[k][i], fd);
    }
    free(din[k]);
  }
  free(din);
  free(dp);
  e2e_pass_free(&r);
}

Test(softmax, flat_block_values_and_gradients) {
  E2ePass r = run_new(flat_src, "flat", 4, 3);
  cr_assert_eq(check_softmax_values(&r), 1);
  e2e_pass_free(&r);
  check_gradients(flat_src, "flat");
}

Test(softmax, grid_block_over_channels_values_and_gradients) {
  E2ePass r = run_new(grid_src, "grid", 2, 4);
  cr_assert_eq(check_softmax_values(&r), 2);
  e2e_pass_free(&r);
  check_gradients(grid_src, "grid");
}

Test(softmax, recurrent_block_in_chunks) {
  E2ePass r = run_new(recur_src, "rec", 2, 5);
  cr_assert_eq(check_softmax_values(&r), 1);
  e2e_pass_free(&r);
  check_gradients(recur_src, "rec");
}

/* softmax_jvp against its formula, and its gradients, the gate's included */
Test(softmax, softmax_jvp_gate_and_gradients) {
  E2ePass r = run_new(jvp_src, "jvp", 3, 6);
  int h = e2e_model_block(r.m, "h"), g = e2e_model_block(r.m, "g");
  e2e_pass_loss(&r);
  for (long n = 0; n < 3; n++) {
    const double *y = e2e_pass_y(&r, r.state, h) + 4 * n, *z = e2e_pass_z(&r, r.state, h) + 4 * n;
    const double *s = e2e_pass_y(&r, r.state, g) + 4 * n;
    double dot = 0;
    for (int c = 0; c < 4; c++)
      dot += s[c] * y[c];
    for (int c = 0; c < 4; c++)
      cr_assert(fabs(z[c] - s[c] * (y[c] - dot)) < 1e-14);
  }
  e2e_pass_free(&r);
  check_gradients(jvp_src, "jvp");
}

/* ---- printing ---------------------------------------------------------------- */

static char *machc_emit(const char *dir, const char *emit, const char *src) {
  e2e_write_text(e2e_path(dir, "m.mach"), src);
  E2eRun run = e2e_runl(dir, 60, e2e_machc(), emit, "m.mach", NULL);
  e2e_check_ok(&run, emit);
  char *out = run.out;
  run.out = NULL;
  e2e_run_free(&run);
  return out;
}

/* The printed machine compiles to the same function. */
static void check_printed_machine(const char *src, const char *prefix) {
  char *printed = machc_emit(e2e_tmpdir(), "--emit=mach", src);
  cr_assert(strstr(printed, "softmax("), "%s", printed);
  E2ePass a = run_new(src, prefix, 2, 9), b = run_new(printed, prefix, 2, 9);
  cr_assert_eq(a.m->param_size, b.m->param_size);
  for (int i = 0; i < a.m->n_params; i++) { /* by name: the printed order may differ */
    const struct mach_param *pa = &a.m->params[i], *pb = &b.m->params[e2e_model_param(b.m, pa->name)];
    cr_assert_eq(pa->size, pb->size);
    memcpy(b.params + pb->offset, a.params + pa->offset, sizeof(double) * (size_t)pa->size);
  }
  e2e_pass_loss(&a);
  e2e_pass_loss(&b);
  for (int k = 0; k < a.m->n_outputs; k++) {
    int ba = a.m->outputs[k], bb = e2e_model_block(b.m, a.m->blocks[ba].name);
    for (long i = 0; i < 2 * a.m->blocks[ba].size; i++)
      cr_assert(fabs(e2e_pass_z(&a, a.state, ba)[i] - e2e_pass_z(&b, b.state, bb)[i]) < 1e-14, "%s", printed);
  }
  e2e_pass_free(&a);
  e2e_pass_free(&b);
  free(printed);
}

/* The printed dual, fed the cotangents and dsigma.NAME (sigma'(y), or z for
 * softmax blocks), gives the input gradients of the backward pass. */
static void check_printed_dual(const char *src, const char *prefix) {
  E2ePass r = run_new(src, prefix, 2, 11);
  e2e_pass_loss(&r);
  r.m->backward(r.params, r.state, (const double *const *)r.cot, r.dstate, r.dparams, r.batch, 1, NULL, NULL);
  char *dual_src = machc_emit(e2e_tmpdir(), "--emit=dual", src);
  cr_assert(strstr(dual_src, "softmax_jvp(dsigma."), "%s", dual_src);
  E2ePass d = run_new(dual_src, e2e_fmt("%s_dual", prefix), 2, 1);
  memcpy(d.params, r.params, sizeof(double) * (size_t)r.m->param_size);
  for (int k = 0; k < d.m->n_inputs; k++) {
    const char *name = d.m->blocks[d.m->inputs[k]].name;
    long n = 2 * d.m->blocks[d.m->inputs[k]].size;
    if (strncmp(name, "dsigma.", 7) == 0) {
      int b = e2e_model_block(r.m, name + 7);
      const char *act = r.m->blocks[b].activation;
      for (long i = 0; i < n; i++)
        d.in[k][i] = strcmp(act, "softmax") == 0 ? e2e_pass_z(&r, r.state, b)[i]
                                                 : e2e_dact(act, 0.01, e2e_pass_y(&r, r.state, b)[i]);
    } else {
      int b = e2e_model_block(r.m, name), slot = -1;
      for (int j = 0; j < r.m->n_outputs; j++)
        slot = r.m->outputs[j] == b ? j : slot;
      cr_assert(slot >= 0);
      memcpy(d.in[k], r.cot[slot], sizeof(double) * (size_t)n);
    }
  }
  d.m->forward(d.params, (const double *const *)d.in, d.state, 2);
  for (int k = 0; k < d.m->n_outputs; k++) {
    int db = d.m->outputs[k], pb = e2e_model_block(r.m, d.m->blocks[db].name);
    for (long i = 0; i < 2 * d.m->blocks[db].size; i++)
      cr_assert(fabs(e2e_pass_z(&d, d.state, db)[i] - e2e_pass_z(&r, r.dstate, pb)[i]) < 1e-12,
                "%s: printed dual '%s'[%ld]: %.17g, backward %.17g\n%s", prefix,
                d.m->blocks[db].name, i, e2e_pass_z(&d, d.state, db)[i], e2e_pass_z(&r, r.dstate, pb)[i],
                dual_src);
  }
  e2e_pass_free(&d);
  e2e_pass_free(&r);
  free(dual_src);
}

Test(softmax, printed_machines_round_trip) {
  check_printed_machine(flat_src, "flat");
  check_printed_machine(grid_src, "grid");
  check_printed_dual(flat_src, "flat");
  check_printed_dual(grid_src, "grid");
}

/* ---- the runtime -------------------------------------------------------------- */

Test(softmax, xent_refused_and_predict_proba_argmax) {
  const char *dir = e2e_tmpdir();
  const char *bin = e2e_compile(flat_src, "f64");
  const char *lbin = e2e_compile("machine logits {\n    input x : 3\n"
                                 "    output p : 4 = dense(x) + bias\n}\n", "f64");
  e2e_write_text(e2e_path(dir, "x.csv"), "0.1,0.2,0.3\n1,-2,3\n-1,0.5,2\n");
  e2e_write_text(e2e_path(dir, "l.csv"), "1\n0\n4\n");
  E2eRun r = e2e_runl(dir, 30, bin, "train", "--data", "x.csv", "--targets", "l.csv", "--loss", "xent",
               "--target-output", "p", "--epochs", "1", "--out", "w.npz", NULL);
  cr_assert_eq(r.status, 0, "%s", r.err); /* p adds a dense arrow to s: logits again */
  e2e_run_free(&r);
  /* a softmax output */
  const char *sbin = e2e_compile("machine probs {\n    input x : 3\n"
                                 "    output p : 4 = softmax(dense(x) + bias)\n}\n", "f64");
  r = e2e_runl(dir, 30, sbin, "train", "--data", "x.csv", "--targets", "l.csv", "--loss", "xent",
               "--epochs", "1", "--out", "w.npz", NULL);
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "model: train: --loss xent applies the softmax itself, but output 'p' "
                          "already ends in softmax; make the output the logits (no activation) "
                          "and use 'predict --proba' for probabilities\n");
  e2e_run_free(&r);
  /* logits, probabilities, classes */
  r = e2e_runl(dir, 30, lbin, "init", "--seed", "5", "--out", "lw.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, lbin, "predict", "--weights", "lw.npz", "--input", "x.csv", NULL);
  e2e_check_ok(&r, "predict");
  double logit[3][4];
  char *p = r.out;
  for (int i = 0; i < 12; i++) {
    logit[i / 4][i % 4] = strtod(p, &p);
    p++;
  }
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, lbin, "predict", "--weights", "lw.npz", "--input", "x.csv", "--proba",
               NULL);
  e2e_check_ok(&r, "predict --proba");
  p = r.out;
  for (int n = 0; n < 3; n++) {
    double sum = 0;
    for (int c = 0; c < 4; c++)
      sum += exp(logit[n][c]);
    for (int c = 0; c < 4; c++) {
      double v = strtod(p, &p);
      p++;
      cr_assert(fabs(v - exp(logit[n][c]) / sum) < 1e-15, "%s", r.out);
    }
  }
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, lbin, "predict", "--weights", "lw.npz", "--input", "x.csv", "--argmax",
               NULL);
  e2e_check_ok(&r, "predict --argmax");
  {
    char want[64] = "";
    for (int n = 0; n < 3; n++) {
      int arg = 0;
      for (int c = 1; c < 4; c++)
        arg = logit[n][c] > logit[n][arg] ? c : arg;
      snprintf(want + strlen(want), sizeof want - strlen(want), "%d\n", arg);
    }
    cr_assert_str_eq(r.out, want);
  }
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, sbin, "init", "--out", "sw.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, sbin, "predict", "--weights", "sw.npz", "--input", "x.csv", "--proba",
               NULL);
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "model: predict: --proba: output 'p' already ends in softmax; its "
                          "values are probabilities (leave out --proba)\n");
  e2e_run_free(&r);
}
