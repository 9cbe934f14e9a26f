/* test_bench.c — the benchmark tooling (bench/) still works with the
 * compiler and the runtime as they are: every configuration of
 * bench/configs.sh is a machine machc accepts, with the shapes the
 * configuration promises, and bench/run.sh builds, times and reports a small
 * one (machc's side only: PyTorch is optional and left out, BENCH_TORCH=0).
 * The timings are cut to milliseconds: only the plumbing and the figures'
 * consistency are checked, never a speed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(bench, .fini = e2e_cleanup, .timeout = 120);

/* The compiler flags for bench/bench.c and the generated C: under
 * sanitizers the runtime library is instrumented, so they must be too. */
#if defined(__SANITIZE_ADDRESS__)
#define BENCH_SAN " -fsanitize=address,undefined -fno-omit-frame-pointer"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BENCH_SAN " -fsanitize=address,undefined -fno-omit-frame-pointer"
#endif
#endif
#ifndef BENCH_SAN
#define BENCH_SAN ""
#endif

/* Is r, printed with 2 decimals, num / den where num and den were printed
 * with 2 decimals too (each off by up to 0.005)? */
static bool ratio_of_rounded(double r, double num, double den) {
  double lo = (num - 0.005) / (den + 0.005), hi = den > 0.005 ? (num + 0.005) / (den - 0.005) : 1e300;
  return r >= lo - 0.0051 && r <= hi + 0.0051;
}

/* sh bench/run.sh MACHC PATTERN with the harness's budgets cut short. */
static E2eRun run_bench(const char *out, const char *clock, const char *pattern) {
  return e2e_runl(NULL, 100, "env", "BENCH_TORCH=0", e2e_fmt("BENCH_OUT=%s", out),
                  "BENCH_MIN_TIME=0.001", "BENCH_MAX_TIME=0.01", "BENCH_MIN_REPS=1",
                  "BENCH_ROUNDS=2", e2e_fmt("BENCH_CLOCK=%s", clock),
                  "BENCH_CFLAGS=-O1 -march=native" BENCH_SAN, "sh",
                  e2e_path(e2e_root(), "bench/run.sh"), e2e_machc(), pattern, NULL);
}

Test(bench, every_configuration_is_a_machine_of_the_promised_shape) {
  const char *dir = e2e_tmpdir();
  /* Generate every configuration and explain it; print NAME: the summary. */
  const char *script =
      ". \"$1/bench/configs.sh\"\n"
      "bench_configs '' | while IFS='|' read -r file name kind batch a1 a2 a3; do\n"
      "  bench_gen \"$kind\" \"$2/$file.mach\" \"$a1\" \"$a2\" \"$a3\" || exit 1\n"
      "  printf '%s: ' \"$name\"\n"
      "  \"$3\" explain \"$2/$file.mach\" | sed -n 2p\n"
      "done\n";
  E2eRun r = e2e_runl(NULL, 60, "sh", "-ec", script, "sh", e2e_root(), dir, e2e_machc(), NULL);
  e2e_check_ok(&r, "generating and explaining the bench configurations");
  int n = 0;
  for (const char *p = r.out; (p = strchr(p, '\n')); p++)
    n++;
  cr_assert_geq(n, 12, "%d configurations:\n%s", n, r.out);
  cr_assert_null(strstr(r.out, ": \n"), "a configuration machc does not explain:\n%s", r.out);
  /* The shapes: the CNN 1@28x28 -> conv 32, pool, conv 64, pool,
   * dense 3136 -> 128 -> 10 with biases; the MLP 784-128-10 with biases;
   * the 2-D ConvMachines [1, 32*4] and [1, 64*4] with 3x3 kernels
   * (9 * 129^2 and 9 * 257^2 parameters: one shared kernel tensor). */
  cr_assert(strstr(r.out, "cnn-fmnist:   7 blocks, 6 arrows, depth 6 (7 levels), 421642 parameters, "
                          "1 input, 1 output\n"),
            "%s", r.out);
  cr_assert(strstr(r.out, "mlp[784,128,10]:   3 blocks, 2 arrows, depth 2 (3 levels), 101770 "
                          "parameters, 1 input, 1 output\n"),
            "%s", r.out);
  cr_assert(strstr(r.out, "conv2d[1,32*4]:   5 blocks, 10 arrows, depth 4 (5 levels), 149769 "
                          "parameters"),
            "%s", r.out);
  cr_assert(strstr(r.out, "conv2d[1,64*4]:   5 blocks, 10 arrows, depth 4 (5 levels), 594441 "
                          "parameters"),
            "%s", r.out);
  e2e_run_free(&r);
}

Test(bench, run_sh_times_a_configuration_and_reports_consistent_figures) {
  const char *dir = e2e_tmpdir();
  E2eRun r = run_bench(dir, "thread", "dense[2]");
  e2e_check_ok(&r, "sh bench/run.sh MACHC 'dense[2]'");
  cr_assert(strstr(r.out, "(f32, per call, thread CPU time, minimum over interleaved rounds;"),
            "%s", r.out);
  const char *line = strstr(r.out, "\ndense[2]*5 ");
  cr_assert_not_null(line, "no line for dense[2]*5:\n%s", r.out);
  long batch;
  double fwd, gflops, dual, dual_fwd, step, step_fwd, spread;
  cr_assert_eq(sscanf(line + 1, "dense[2]*5 %ld %lf %lf %lf %lf %lf %lf %lf%%", &batch, &fwd,
                      &gflops, &dual, &dual_fwd, &step, &step_fwd, &spread),
               8, "%s", line);
  cr_assert_eq(batch, 2);
  cr_assert(fwd > 0 && dual > 0 && step > 0 && gflops > 0 && spread >= 0, "%s", line);
  /* The printed ratios are those of the times, and GFLOP/s is forward FLOPs
   * (90 per sample: 2 * (2*2 + 4*2 + 6*2 + 8*2) for the arrows, 10
   * sigmoids) * batch / fwd time, up to the rounding of the printed figures. */
  cr_assert(ratio_of_rounded(dual_fwd, dual, fwd), "%s", line);
  cr_assert(ratio_of_rounded(step_fwd, step, fwd), "%s", line);
  cr_assert(ratio_of_rounded(gflops, 90.0 * 2 * 1e-3, fwd), "%s", line);
  cr_assert(strstr(r.out, "\ntotal "), "%s", r.out);
  e2e_run_free(&r);

  /* --raw, as bench/run.sh reads it beside PyTorch: NAME BATCH FLOPS FWD
   * DUAL STEP SPREAD FWD1 STEP1; on one thread FWD1 and STEP1 are FWD and
   * STEP, on two they are timed on one thread beside them */
  for (int threads = 1; threads <= 2; threads++) {
    r = e2e_runl(NULL, 60, "env", e2e_fmt("OMP_NUM_THREADS=%d", threads), e2e_path(dir, "dense_2__5"),
                 "--raw", "x", "3", NULL);
    e2e_check_ok(&r, "bench --raw");
    double flops, t[5], s;
    char name[8];
    cr_assert_eq(sscanf(r.out, "%7s %ld %lf %lf %lf %lf %lf %lf %lf", name, &batch, &flops, &t[0], &t[1],
                        &t[2], &s, &t[3], &t[4]),
                 9, "%s", r.out);
    cr_assert_str_eq(name, "x");
    cr_assert_eq(batch, 3);
    cr_assert_eq(flops, 90);
    cr_assert(t[0] > 0 && t[1] > 0 && t[2] > 0 && t[3] > 0 && t[4] > 0 && s >= 0, "%s", r.out);
    if (threads == 1)
      cr_assert(t[3] == t[0] && t[4] == t[2], "one thread: %s", r.out);
    e2e_run_free(&r);
  }
  /* and the table's speedup columns with two */
  r = e2e_runl(NULL, 60, "env", "OMP_NUM_THREADS=2", e2e_path(dir, "dense_2__5"), "x", "3", NULL);
  e2e_check_ok(&r, "bench on two threads");
  double v[9];
  cr_assert_eq(sscanf(r.out, "x %ld %lf %lf %lf %lf %lf %lf %lf %lf %lf%%", &batch, &v[0], &v[1], &v[2],
                      &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]),
               10, "%s", r.out);
  cr_assert(v[6] > 0 && v[7] > 0, "%s", r.out);
  e2e_run_free(&r);
}

Test(bench, clocks_and_bad_input) {
  const char *dir = e2e_tmpdir();
  E2eRun r = run_bench(dir, "wall", "dense[2]");
  e2e_check_ok(&r, "BENCH_CLOCK=wall");
  cr_assert(strstr(r.out, "per call, wall time, minimum"), "%s", r.out);
  e2e_run_free(&r);

  r = e2e_runl(NULL, 30, "env", "BENCH_CLOCK=process", e2e_path(dir, "dense_2__5"), "--legend",
               NULL);
  e2e_check_ok(&r, "BENCH_CLOCK=process");
  cr_assert(strstr(r.out, "per call, process CPU time, minimum"), "%s", r.out);
  e2e_run_free(&r);

  r = e2e_runl(NULL, 30, "env", "BENCH_CLOCK=cycles", e2e_path(dir, "dense_2__5"), "x", "2",
               NULL);
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "bench: BENCH_CLOCK must be thread, process or wall\n");
  e2e_run_free(&r);

  r = run_bench(dir, "thread", "no-such-configuration");
  cr_assert_eq(r.status, 2);
  cr_assert_str_eq(r.err, "bench/run.sh: no configuration name contains 'no-such-configuration'\n");
  e2e_run_free(&r);
}
