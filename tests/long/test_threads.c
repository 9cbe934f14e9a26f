/* test_threads.c — the generated kernels' threads (OpenMP) change nothing
 * but speed: training with --threads 1, 2, 3 and 9 writes the same weights
 * bit for bit, and forward and grad write the same bytes, for a dense machine
 * and a convolution large enough that every parallel kernel splits (the
 * dense products by rows, the bias gradient by channels, the activations by
 * elements, the windowed convolutions by groups of samples, their kernel
 * gradients summed group by group in order; with 9 threads a minibatch has
 * fewer groups than twice the threads, so each group's product is split
 * instead, by columns and by rows). The conv's minibatch of 31 leaves its
 * last group of samples short. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(threads, .fini = e2e_cleanup, .timeout = 240);

/* Above every kernel's PAR_WORK at these batches. */
static const char dense_src[] = "machine dt {\n"
                                "    input x : 64\n"
                                "    block h : 512 = tanh(dense(x) + bias)\n"
                                "    block g : 128 = sigmoid(dense(h) + dense(x))\n"
                                "    output y : 8 = dense(g) + bias\n"
                                "}\n";

static const char conv_src[] = "machine ct {\n"
                               "    input x : 4 @ [16, 16]\n"
                               "    block h : 16 @ [16, 16] = tanh(conv(x, k = 3, pad = same) + bias)\n"
                               "    block p : 16 @ [8, 8] = avgpool(h, k = 2, stride = 2)\n"
                               "    block g : 16 = global_avgpool(p)\n"
                               "    output y : 8 = dense(g) + bias\n"
                               "}\n";

static void write_inputs(const char *dir, int nd, const long *shape) {
  E2eRng rng = {7};
  E2eArr x = e2e_arr(nd, shape), t = e2e_arr2(shape[0], 8);
  e2e_fill_uniform(&rng, &x, -1, 1);
  e2e_fill_uniform(&rng, &t, -1, 1);
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, true);
  e2e_npy_write(e2e_path(dir, "t.npy"), &t, true);
  e2e_npy_write(e2e_path(dir, "g.npy"), &t, true);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

/* The weights entries of two checkpoints are equal bit for bit. */
static void same_weights(const char *pa, const char *pb, const char *what) {
  E2eNpz a = e2e_npz_read(pa), b = e2e_npz_read(pb);
  int seen = 0;
  for (int i = 0; i < a.n; i++) {
    if (strncmp(a.names[i], "train/", 6) == 0)
      continue;
    const E2eArr *x = &a.arrs[i], *y = e2e_npz_get(&b, a.names[i]);
    cr_assert_eq(x->n, y->n);
    cr_assert(memcmp(x->d, y->d, (size_t)x->n * sizeof *x->d) == 0, "%s: %s differs", what,
              a.names[i]);
    seen++;
  }
  cr_assert_gt(seen, 0);
  e2e_npz_free(&a);
  e2e_npz_free(&b);
}

static void same_bytes(const char *pa, const char *pb, const char *what) {
  size_t na, nb;
  char *a = e2e_read_file(pa, &na), *b = e2e_read_file(pb, &nb);
  cr_assert(a && b, "%s: missing output", what);
  cr_assert(na == nb && memcmp(a, b, na) == 0, "%s: %s and %s differ", what, pa, pb);
  free(a);
  free(b);
}

static void check_threads(const char *src, int nd, const long *shape, const char *batch) {
  const char *bin = e2e_compile(src, "f32"), *dir = e2e_tmpdir();
  write_inputs(dir, nd, shape);
  static const int counts[] = {1, 2, 3, 9};
  for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
    int t = counts[c];
    const char *n = e2e_fmt("%d", t);
    E2eRun r = e2e_runl(dir, 120, bin, "train", "--data", "x.npy", "--targets", "t.npy", "--loss",
                        "mse", "--epochs", "2", "--batch", batch, "--quiet", "--threads", n,
                        "--out", e2e_fmt("w%d.npz", t), NULL);
    e2e_check_ok(&r, e2e_fmt("train --threads %d", t));
    e2e_run_free(&r);
    r = e2e_runl(dir, 120, bin, "forward", "--weights", "w1.npz", "--input", "x.npy", "--output",
                 e2e_fmt("y%d.npy", t), "--threads", n, NULL);
    e2e_check_ok(&r, e2e_fmt("forward --threads %d", t));
    e2e_run_free(&r);
    r = e2e_runl(dir, 120, bin, "grad", "--weights", "w1.npz", "--input", "x.npy", "--cotangent",
                 "g.npy", "--output", e2e_fmt("d%d.npz", t), "--threads", n, NULL);
    e2e_check_ok(&r, e2e_fmt("grad --threads %d", t));
    e2e_run_free(&r);
    if (t > 1) {
      same_weights(e2e_path(dir, "w1.npz"), e2e_path(dir, e2e_fmt("w%d.npz", t)),
                   e2e_fmt("train --threads %d", t));
      same_bytes(e2e_path(dir, "y1.npy"), e2e_path(dir, e2e_fmt("y%d.npy", t)), "forward");
      same_bytes(e2e_path(dir, "d1.npz"), e2e_path(dir, e2e_fmt("d%d.npz", t)), "grad");
    }
  }
}

Test(threads, dense_bitwise_for_any_thread_count) {
  long shape[] = {256, 64};
  check_threads(dense_src, 2, shape, "256");
}

Test(threads, conv_bitwise_for_any_thread_count) {
  long shape[] = {64, 4, 16, 16};
  check_threads(conv_src, 4, shape, "31");
}

Test(threads, bad_thread_count_is_a_usage_error) {
  const char *bin = e2e_compile(dense_src, "f32"), *dir = e2e_tmpdir();
  E2eRun r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "x.npy",
                      "--output", "y.npy", "--threads", "0", NULL);
  cr_assert_eq(r.status, 2, "%s", r.err);
  cr_assert(strstr(r.err, "--threads"), "%s", r.err);
  e2e_run_free(&r);
}
