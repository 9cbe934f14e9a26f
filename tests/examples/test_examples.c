/* test_examples.c — the example trainings, run by `make test-examples` (and
 * CI), not by `make test`: each trains a model for thousands of steps.
 *
 * - examples/poly.mach learns the paper's polynomial (medians over five seeds,
 *   as `make demo` reports them);
 * - both machines of examples/sine.mach learn the shifted sine (as
 *   examples/run-sine.sh trains them);
 * - examples/waves.mach classifies wave shapes (as examples/run-waves.sh);
 * - examples/embed/run.sh bakes the trained waves model into standalone C
 *   and classifies with it, on this machine and (with the cross tools)
 *   under qemu-arm; then trains poly on the device with the standalone
 *   training step (examples/embed/train.c). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_machines.h"

TestSuite(examples, .fini = e2e_cleanup, .timeout = 180);

/* --- training sanity ------------------------------------------------------------------------------ */

static double poly_f(double x, double y) { return (2 * x - 1) * (2 * x - 1) + 2 * y + x * y - 3; }

static void grid(int n, E2eArr *X, E2eArr *T) {
  *X = e2e_arr2(n * n, 2);
  *T = e2e_arr2(n * n, 1);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      double x = (double)i / (n - 1), y = (double)j / (n - 1);
      X->d[2 * (i * n + j)] = x;
      X->d[2 * (i * n + j) + 1] = y;
      T->d[i * n + j] = poly_f(x, y);
    }
}

/* MSE of the binary on (X, T) computed by the test from `forward`, checked
 * against what `eval` prints. */
static double mse_of(const char *dir, const char *bin, const char *w, const char *xp,
                     const char *tp, const E2eArr *T) {
  char *yp = e2e_path(dir, "pred.npy");
  E2eRun r = e2e_runl(dir, 30, bin, "forward", "--weights", w, "--input", xp, "--output", yp, NULL);
  e2e_check_ok(&r, "forward");
  e2e_run_free(&r);
  E2eArr Y = e2e_npy_read(yp);
  cr_assert_eq(Y.n, T->n);
  double mse = 0;
  for (long k = 0; k < Y.n; k++)
    mse += (Y.d[k] - T->d[k]) * (Y.d[k] - T->d[k]);
  mse /= (double)Y.n;
  r = e2e_runl(dir, 30, bin, "eval", "--weights", w, "--data", xp, "--targets", tp, "--loss", "mse",
               NULL);
  e2e_check_ok(&r, "eval");
  double printed = NAN;
  const char *l = strstr(r.out, "loss ");
  cr_assert(l && sscanf(l, "loss %lf", &printed) == 1, "eval printed no loss:\n%s", r.out);
  cr_assert(fabs(printed - mse) <= 1e-6 * mse + 1e-12, "eval says loss %.9g, the test computes %.9g",
            printed, mse);
  e2e_run_free(&r);
  e2e_arr_free(&Y);
  return mse;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

Test(examples, poly_fits_polynomial, .timeout = 120) {
  const E2eSpec *s = e2e_spec_poly();
  const char *bin = e2e_compile(s->src, "f64");
  const char *dir = e2e_tmpdir();
  E2eArr X, T, X2, T2;
  grid(6, &X, &T);
  grid(14, &X2, &T2);
  char *xp = e2e_path(dir, "x.npy"), *tp = e2e_path(dir, "t.npy");
  char *xp2 = e2e_path(dir, "x2.npy"), *tp2 = e2e_path(dir, "t2.npy");
  e2e_npy_write(xp, &X, false);
  e2e_npy_write(tp, &T, false);
  e2e_npy_write(xp2, &X2, false);
  e2e_npy_write(tp2, &T2, false);
  double train[5], test[5];
  for (int seed = 0; seed < 5; seed++) {
    char *w = e2e_path(dir, e2e_fmt("w%d.npz", seed));
    char *sd = e2e_fmt("%d", seed);
    E2eRun r = e2e_runl(dir, 60, bin, "train", "--data", xp, "--targets", tp, "--loss", "mse",
                        "--optimizer", "adam", "--lr", "0.1", "--batch", "36", "--epochs", "10000",
                        "--seed", sd, "--out", w, "--quiet", NULL);
    e2e_check_ok(&r, "train");
    e2e_run_free(&r);
    train[seed] = mse_of(dir, bin, w, xp, tp, &T);
    test[seed] = mse_of(dir, bin, w, xp2, tp2, &T2);
  }
  char msg[256];
  snprintf(msg, sizeof msg, "train %.3g %.3g %.3g %.3g %.3g, test %.3g %.3g %.3g %.3g %.3g",
           train[0], train[1], train[2], train[3], train[4], test[0], test[1], test[2], test[3],
           test[4]);
  qsort(train, 5, sizeof(double), cmp_double);
  qsort(test, 5, sizeof(double), cmp_double);
  cr_assert_lt(train[2], 1e-3, "median training MSE %.3g >= 1e-3 (%s)", train[2], msg);
  cr_assert_lt(test[2], 1e-3, "median MSE on the 14 x 14 grid %.3g >= 1e-3 (%s)", test[2], msg);
}

/* ---- the paper's sine example ------------------------------------------------- */

/* Trains both machines of examples/sine.mach as run-sine.sh does and checks
 * the final training MSE is below a tenth of the MSE of predicting zero. */
Test(examples, sine_learns, .timeout = 120) {
  const char *dir = e2e_tmpdir();
  FILE *fx = fopen(e2e_path(dir, "x.csv"), "w"), *fy = fopen(e2e_path(dir, "y.csv"), "w");
  E2eRng rng = {1};
  double zero = 0;
  for (int b = 0; b < 32; b++) {
    double v[63];
    for (int i = 0; i < 63; i++)
      v[i] = sin(-M_PI + 0.1 * i) + 0.1 * (e2e_uniform(&rng, 0, 1) - 0.5);
    for (int i = 0; i < 63; i++) {
      double t = v[(i - 10 + 63) % 63];
      fprintf(fx, "%s%.17g", i ? "," : "", v[i]);
      fprintf(fy, "%s%.17g", i ? "," : "", t);
      zero += t * t / (32 * 63);
    }
    fputc('\n', fx);
    fputc('\n', fy);
  }
  fclose(fx);
  fclose(fy);
  const char *machines[] = {"sine_conv", "sine_recur"};
  for (int k = 0; k < 2; k++) {
    const char *bin = e2e_path(dir, machines[k]);
    E2eRun c = e2e_runl(dir, 60, e2e_machc(), "--dtype", "f64", "-m", machines[k],
                        e2e_fmt("%s/examples/sine.mach", e2e_root()), "-o", bin, NULL);
    e2e_check_ok(&c, "machc sine.mach");
    e2e_run_free(&c);
    E2eRun t = e2e_runl(dir, 100, bin, "train", "--data", "x.csv", "--targets", "y.csv", "--loss",
                        "mse", "--optimizer", "adam", "--lr", "0.1", "--epochs", "1000", "--batch",
                        "32", "--seed", "0", "--quiet", "--out", "w.npz", NULL);
    e2e_check_ok(&t, "train");
    const char *f = strstr(t.out, "final: loss ");
    cr_assert(f, "%s", t.out);
    double mse = atof(f + 12);
    cr_log_info("%s: final training MSE %.4g, predicting zero %.4g", machines[k], mse, zero);
    cr_assert(mse < 0.1 * zero, "%s: final MSE %g is not below a tenth of %g", machines[k], mse, zero);
    e2e_run_free(&t);
  }
}

/* ---- classification with a recurrent core: examples/waves.mach ---------------- */

/* The data of run-waves.sh: sine (0), square (1) and sawtooth (2) waves. */
static void write_waves(const char *dir) {
  FILE *fx = fopen(e2e_path(dir, "x.csv"), "w"), *ft = fopen(e2e_path(dir, "t.csv"), "w");
  E2eRng rng = {7};
  for (int n = 0; n < 600; n++) {
    int c = n % 3;
    double f = 0.05 + 0.1 * e2e_uniform(&rng, 0, 1), ph = e2e_uniform(&rng, 0, 1);
    for (int t = 0; t < 32; t++) {
      double u = f * t + ph, s = sin(2 * M_PI * u);
      double v = c == 0 ? s : c == 1 ? (s >= 0 ? 1 : -1) : 2 * (u - floor(u)) - 1;
      fprintf(fx, "%s%.6f", t ? "," : "", v + 0.1 * (e2e_uniform(&rng, 0, 1) - 0.5));
    }
    fputc('\n', fx);
    fprintf(ft, "%d\n", c);
  }
  fclose(fx);
  fclose(ft);
}

/* Softmax cross-entropy through pooling after the chunks: at least two of
 * three seeds reach 90% accuracy on the held-out quarter. */
Test(examples, waves_are_classified, .timeout = 180) {
  const char *dir = e2e_tmpdir();
  write_waves(dir);
  const char *bin = e2e_path(dir, "waves");
  E2eRun c = e2e_runl(dir, 60, e2e_machc(), "--dtype", "f64",
                      e2e_fmt("%s/examples/waves.mach", e2e_root()), "-o", bin, NULL);
  e2e_check_ok(&c, "machc waves.mach");
  e2e_run_free(&c);
  const char *seeds[] = {"0", "1", "3"};
  int good = 0;
  for (int k = 0; k < 3; k++) {
    E2eRun t = e2e_runl(dir, 150, bin, "train", "--data", "x.csv", "--targets", "t.csv", "--loss",
                        "xent", "--optimizer", "adam", "--lr", "0.01", "--epochs", "100", "--batch",
                        "32", "--seed", seeds[k], "--val-split", "0.25", "--quiet", "--out", "w.npz",
                        NULL);
    e2e_check_ok(&t, "train");
    const char *a = strstr(t.out, " acc ");
    cr_assert(a, "%s", t.out);
    double acc = atof(a + 5);
    cr_log_info("waves, seed %s: held-out accuracy %.4g", seeds[k], acc);
    good += acc >= 0.9;
    e2e_run_free(&t);
  }
  cr_assert(good >= 2, "only %d of 3 seeds reached 90%% held-out accuracy", good);
}

/* The embedded walk-through: train, bake, build classify.c, run it; train.c. */
Test(examples, embedded_classifier, .timeout = 180) {
  E2eRun r = e2e_runl(e2e_root(), 170, "sh", e2e_fmt("%s/examples/embed/run.sh", e2e_root()),
                      e2e_machc(), NULL);
  e2e_check_ok(&r, "examples/embed/run.sh");
  int right = 0, total = 0;
  const char *line = strstr(r.out, "classified ");
  cr_assert(line && sscanf(line, "classified %d of %d waves correctly", &right, &total) == 2, "%s",
            r.out);
  cr_assert_eq(total, 30);
  cr_assert_geq(right, 27, "%s", r.out);
  line = strstr(r.out, "qemu-arm: classified ");
  if (line) { /* the same program, the same weights on ARM */
    int arm = 0;
    cr_assert_eq(sscanf(line, "qemu-arm: classified %d of", &arm), 1);
    cr_assert_eq(arm, right, "%s", r.out);
  }
  /* and poly trained on the device by train.c, its loss 100 times lower */
  double first = 0, last = 0;
  line = strstr(r.out, "\nloss fell from ");
  cr_assert(line && sscanf(line + 1, "loss fell from %lf to %lf", &first, &last) == 2, "%s", r.out);
  cr_assert_geq(first / last, 100, "%s", r.out);
  line = strstr(r.out, "qemu-arm: loss fell from ");
  if (line) {
    double arm_first = 0, arm_last = 0;
    cr_assert_eq(sscanf(line, "qemu-arm: loss fell from %lf to %lf", &arm_first, &arm_last), 2);
    cr_assert_geq(arm_first / arm_last, 100, "%s", r.out);
  }
  e2e_run_free(&r);
}
