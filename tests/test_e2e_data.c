/* test_e2e_data.c — data handling that needs a compiled machine with grid
 * blocks or a time axis: images given flat or without their channel axis,
 * and (see the ts suite) long series cut into windows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(data_shapes, .fini = e2e_cleanup);

static const char img_src[] =
    "machine img {\n"
    "    input  x : 1 @ [4, 4]\n"
    "    block  h : 2 @ [4, 4] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  g : 2 = global_avgpool(h)\n"
    "    output y : 3 = dense(g) + bias\n"
    "}\n";

/* The same 5 images as [N, 1, 4, 4], [N, 4, 4], [N, 16] and [N, 4, 4, 1]
 * give the same outputs; [N, 2, 8] is refused with both shapes named. */
Test(data_shapes, images_flat_or_without_channel_axis) {
  const char *bin = e2e_compile(img_src, "f64"), *dir = e2e_tmpdir();
  long shapes[4][4] = {{5, 1, 4, 4}, {5, 4, 4, 0}, {5, 16, 0, 0}, {5, 4, 4, 1}};
  int ranks[4] = {4, 3, 2, 4};
  E2eRng rng = {7};
  E2eArr x = e2e_arr(4, shapes[0]);
  char *first = NULL;
  e2e_fill_uniform(&rng, &x, -1, 1);
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "3", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  for (int k = 0; k < 4; k++) {
    x.ndim = ranks[k];
    memcpy(x.shape, shapes[k], sizeof shapes[k]);
    e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
    r = e2e_runl(dir, 30, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--output",
                 "-", NULL);
    e2e_check_ok(&r, "forward");
    if (!first)
      first = strdup(r.out);
    else
      cr_assert_str_eq(r.out, first, "shape %d", k);
    e2e_run_free(&r);
  }
  x.ndim = 3;
  x.shape[0] = 5, x.shape[1] = 2, x.shape[2] = 8;
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  r = e2e_runl(dir, 30, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--output", "-",
               NULL);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "x.npy: has shape [5, 2, 8], expected [N, 1, 4, 4] for input 'x'"), "%s",
            r.err);
  e2e_run_free(&r);
  free(first);
  e2e_arr_free(&x);
}

/* ---- time series: --windows, --warmup-steps, the one-step-ahead error ------ */

TestSuite(ts, .fini = e2e_cleanup);

/* A causal linear machine: y[t] = w0 x[t] + w1 x[t-1] + w2 x[t-2] + b. */
static const char ar_src[] =
    "machine ar {\n"
    "    input  x : 1 @ [16]\n"
    "    output y : 1 @ [16] = conv(x, lags = 0 ..= 2) + bias\n"
    "}\n";

/* Two series of 100 steps as CSV columns under a header. */
static void write_series(const char *path) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fprintf(f, "a,b\n");
  for (int i = 0; i < 100; i++)
    fprintf(f, "%.17g,%.17g\n", sin(0.3 * i), cos(0.7 * i));
  fclose(f);
}

/* eval's loss with --windows 16:8 --warmup-steps 2 equals the mse computed
 * here from `forward` on windows cut by hand, positions 2..15 only. */
Test(ts, windows_and_warmup_match_a_reference) {
  const char *bin = e2e_compile(ar_src, "f64"), *dir = e2e_tmpdir();
  double v[100], sum = 0, naive = 0;
  long shape[2] = {11, 16};
  E2eArr x = e2e_arr(2, shape);
  write_series(e2e_path(dir, "s.csv"));
  for (int i = 0; i < 100; i++)
    v[i] = sin(0.3 * i);
  for (int w = 0; w < 11; w++)
    for (int t = 0; t < 16; t++)
      x.d[w * 16 + t] = v[w * 8 + t];
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "5", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--output",
               "y.npy", NULL);
  e2e_check_ok(&r, "forward");
  e2e_run_free(&r);
  E2eArr y = e2e_npy_read(e2e_path(dir, "y.npy"));
  for (int w = 0; w < 11; w++)
    for (int t = 2; t < 16; t++) {
      double e = y.d[w * 16 + t] - v[w * 8 + t + 1];
      sum += e * e;
      naive += (v[w * 8 + t] - v[w * 8 + t + 1]) * (v[w * 8 + t] - v[w * 8 + t + 1]);
    }
  r = e2e_runl(dir, 30, bin, "eval", "--weights", "w.npz", "--data", "s.csv", "--data-cols", "a",
               "--windows", "16:8", "--warmup-steps", "2", "--loss", "mse", NULL);
  e2e_check_ok(&r, "eval --windows");
  double loss = 0, one = 0, last = 0;
  cr_assert_eq(sscanf(r.out, "loss %lf\none-step-ahead mse %lf over 11 windows x 14 values; "
                             "last-value forecast %lf", &loss, &one, &last), 3, "%s", r.out);
  cr_assert(e2e_reldiff(loss, sum / (11 * 14), 1e-300) < 1e-8, "%.17g vs %.17g", loss,
            sum / (11 * 14));
  cr_assert_eq(one, loss);
  cr_assert(e2e_reldiff(last, naive / (11 * 14), 1e-300) < 1e-8, "%.17g", last);
  e2e_run_free(&r);
  /* without the warm-up, the first two positions count too: a different mean */
  r = e2e_runl(dir, 30, bin, "eval", "--weights", "w.npz", "--data", "s.csv", "--data-cols", "a",
               "--windows", "16:8", "--loss", "mse", NULL);
  e2e_check_ok(&r, "eval --windows, no warm-up");
  cr_assert(strstr(r.out, "over 11 windows x 16 values"), "%s", r.out);
  e2e_run_free(&r);
  e2e_arr_free(&x);
  e2e_arr_free(&y);
}

/* Both columns are series (22 windows); training beats the last-value
 * forecast on held-out steps; the errors say what was expected. */
Test(ts, train_forecasts_better_than_last_value) {
  const char *bin = e2e_compile(ar_src, "f64"), *dir = e2e_tmpdir();
  write_series(e2e_path(dir, "s.csv"));
  {
    FILE *f = fopen(e2e_path(dir, "test.csv"), "w");
    for (int i = 100; i < 160; i++)
      fprintf(f, "%.17g\n", sin(0.3 * i));
    fclose(f);
  }
  E2eRun r = e2e_runl(dir, 60, bin, "train", "--data", "s.csv", "--windows", "16:4",
                      "--warmup-steps", "2", "--loss", "mse", "--epochs", "300", "--lr", "0.05",
                      "--batch", "8", "--out", "w.npz", "--quiet", NULL);
  e2e_check_ok(&r, "train --windows");
  cr_assert(strstr(r.out, "(300 epochs, 1800 steps"), "%s", r.out); /* 2 x 21 windows, batch 8 */
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, bin, "eval", "--weights", "w.npz", "--data", "test.csv", "--windows",
               "16:1", "--warmup-steps", "2", "--loss", "mse", NULL);
  e2e_check_ok(&r, "eval on held-out steps");
  double loss, one, last;
  cr_assert_eq(sscanf(r.out, "loss %lf\none-step-ahead mse %lf over 44 windows x 14 values; "
                             "last-value forecast %lf", &loss, &one, &last), 3, "%s", r.out);
  cr_assert_lt(one, last / 10, "%s", r.out);
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, bin, "eval", "--weights", "w.npz", "--data", "s.csv", "--windows", "20",
               "--loss", "mse", NULL);
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "model: eval: --windows 20: the input 'x' has 16 time steps; windows "
                          "must be as long\n");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, bin, "eval", "--weights", "w.npz", "--data", "s.csv", "--windows", "16",
               "--warmup-steps", "16", "--loss", "mse", NULL);
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "model: eval: --warmup-steps 16 leaves nothing of the 16 time steps of "
                          "'y'\n");
  e2e_run_free(&r);
}
