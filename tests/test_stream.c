/* test_stream.c — `forward` over a .npy of many batches: the input is read
 * a batch at a time and the outputs written as they come (runtime/
 * samples.c, run.c), which must give exactly what reading the file whole
 * and collecting the outputs gives (a gzipped copy of the input and an .npz
 * output take that path); and a failure half-way through leaves no output
 * file, not even a temporary. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(stream, .fini = e2e_cleanup);

static const char cls_src[] =
    "machine cls {\n"
    "    input  x : 6\n"
    "    block  h : 5 = tanh(dense(x) + bias)\n"
    "    output y : 3 = dense(h) + bias\n"
    "}\n";

enum { N = 1001, D = 6 }; /* 15 batches of 64 and one of 41 */

static void write_input(const char *dir, const char *name, bool f32, long bad_sample) {
  E2eRng rng = {11};
  E2eArr x = e2e_arr2(N, D);
  e2e_fill_uniform(&rng, &x, -2, 2);
  if (bad_sample >= 0)
    x.d[bad_sample * D + 2] = NAN;
  e2e_npy_write(e2e_path(dir, name), &x, f32);
  e2e_arr_free(&x);
}

static void run_ok(const char *dir, const char *what, const char *const *argv) {
  E2eRun r = e2e_run(dir, 60, argv);
  e2e_check_ok(&r, what);
  e2e_run_free(&r);
}

static void gzip_copy(const char *dir, const char *from, const char *to) {
  char *cmd = e2e_fmt("gzip -c %s > %s", from, to);
  run_ok(dir, "gzip", (const char *const[]){"sh", "-c", cmd, NULL});
  free(cmd);
}

static char *slurp(const char *dir, const char *name, size_t *len) {
  char *s = e2e_read_file(e2e_path(dir, name), len);
  cr_assert_not_null(s, "%s was not written", name);
  return s;
}

static void assert_same_file(const char *dir, const char *a, const char *b) {
  size_t la, lb;
  char *x = slurp(dir, a, &la), *y = slurp(dir, b, &lb);
  cr_assert_eq(la, lb, "%s and %s differ in length", a, b);
  cr_assert(memcmp(x, y, la) == 0, "%s and %s differ", a, b);
  free(x);
  free(y);
}

/* The .npy streamed and the .npz member collected hold the same values. */
static void assert_npy_is_npz(const char *dir, const char *npy, const char *npz, long cols) {
  E2eArr a = e2e_npy_read(e2e_path(dir, npy));
  E2eNpz z = e2e_npz_read(e2e_path(dir, npz));
  const E2eArr *b = e2e_npz_get(&z, "y");
  cr_assert_eq(a.n, (long)N * cols);
  cr_assert_eq(b->n, a.n);
  for (long i = 0; i < a.n; i++)
    cr_assert_eq(a.d[i], b->d[i], "%s vs %s: element %ld", npy, npz, i);
  e2e_arr_free(&a);
  e2e_npz_free(&z);
}

#define FWD(bin, in, out, ...)                                                                  \
  run_ok(dir, out, (const char *const[]){bin, "forward", "--weights", "w.npz", "--input", in,   \
                                         "--batch", "64", "--output", out, __VA_ARGS__ NULL})

Test(stream, forward_by_batches_is_forward_of_the_whole_file) {
  const char *dir = e2e_tmpdir();
  const char *bins[2] = {e2e_compile(cls_src, "f32"), e2e_compile(cls_src, "f64")};
  run_ok(dir, "init", (const char *const[]){bins[0], "init", "--seed", "5", "--out", "w.npz", NULL});
  for (int f32 = 0; f32 < 2; f32++) /* the file's type: converted, or read in place */
    for (int k = 0; k < 2; k++) {
      const char *bin = bins[k];
      write_input(dir, "x.npy", f32, -1);
      gzip_copy(dir, "x.npy", "xz.npy.gz");
      FWD(bin, "x.npy", "y.npy", );
      FWD(bin, "xz.npy.gz", "yz.npy", ); /* read whole */
      assert_same_file(dir, "y.npy", "yz.npy");
      FWD(bin, "x.npy", "y.npz", ); /* collected, then written */
      assert_npy_is_npz(dir, "y.npy", "y.npz", 3);
      FWD(bin, "x.npy", "y=yn.npy", );
      assert_same_file(dir, "y.npy", "yn.npy");
      FWD(bin, "x.npy", "y.csv", );
      {
        E2eRun r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "x.npy",
                            "--batch", "64", "--output", "-", NULL);
        size_t len;
        char *csv = slurp(dir, "y.csv", &len);
        e2e_check_ok(&r, "forward to stdout");
        cr_assert_str_eq(csv, r.out, "the CSV written by batches differs from stdout's");
        cr_assert_eq(strlen(r.out) > 0 && r.out[strlen(r.out) - 1] == '\n', 1);
        free(csv);
        e2e_run_free(&r);
      }
      FWD(bin, "x.npy", "ya.npy", "--argmax", );
      FWD(bin, "x.npy", "ya.npz", "--argmax", );
      assert_npy_is_npz(dir, "ya.npy", "ya.npz", 1);
      FWD(bin, "x.npy", "yp.npy", "--proba", );
      FWD(bin, "x.npy", "yp.npz", "--proba", );
      assert_npy_is_npz(dir, "yp.npy", "yp.npz", 3);
      { /* the class indices are the argmax of the logits */
        E2eArr y = e2e_npy_read(e2e_path(dir, "y.npy")), a = e2e_npy_read(e2e_path(dir, "ya.npy"));
        for (long i = 0; i < N; i++) {
          long arg = 0;
          for (long c = 1; c < 3; c++)
            arg = y.d[i * 3 + c] > y.d[i * 3 + arg] ? c : arg;
          cr_assert_eq(a.d[i], (double)arg, "sample %ld", i);
        }
        e2e_arr_free(&y);
        e2e_arr_free(&a);
      }
    }
}

/* No file of this name, nor a temporary of it, in dir. */
static void assert_absent(const char *dir, const char *name) {
  DIR *d = opendir(dir);
  struct dirent *e;
  cr_assert_not_null(d);
  while ((e = readdir(d)))
    cr_assert(strncmp(e->d_name, name, strlen(name)) != 0, "%s left behind", e->d_name);
  closedir(d);
}

/* Sample 700 is NaN: found in the 11th batch, after 10 were written. */
Test(stream, a_failure_half_way_leaves_no_output) {
  const char *dir = e2e_tmpdir(), *bin = e2e_compile(cls_src, "f32");
  E2eRun r;
  run_ok(dir, "init", (const char *const[]){bin, "init", "--seed", "5", "--out", "w.npz", NULL});
  write_input(dir, "x.npy", false, 700);
  r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--batch", "64",
               "--output", "y.npy", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "model: forward: input 'x' has a non-finite value (nan) in sample 700, "
                          "element 2; pass --allow-nonfinite to run with it anyway\n");
  e2e_run_free(&r);
  assert_absent(dir, "y.npy");
  /* an output already there is left as it was */
  e2e_write_text(e2e_path(dir, "y.csv"), "old\n");
  r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--batch", "64",
               "--output", "y.csv", NULL);
  cr_assert_eq(r.status, 1);
  e2e_run_free(&r);
  cr_assert_str_eq(e2e_read_file(e2e_path(dir, "y.csv"), NULL), "old\n");
  assert_absent(dir, "y.csv.");
  /* a .npy whose data ends before its shape says: refused before any work */
  {
    size_t len;
    char *x = slurp(dir, "x.npy", &len);
    e2e_write_file(e2e_path(dir, "xs.npy"), x, len - 400 * D * 8);
    free(x);
  }
  r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "xs.npy", "--batch", "64",
               "--output", "y.npy", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "model: xs.npy: truncated data: shape [1001, 6] needs 48048 bytes, "
                          "found 28848\n");
  e2e_run_free(&r);
  assert_absent(dir, "y.npy");
}

static const char two_src[] =
    "machine two {\n"
    "    input  x : 6\n"
    "    output y : 3 = tanh(dense(x) + bias)\n"
    "    output z : 2 @ [2] = dense(y) + bias\n"
    "}\n";

/* Two outputs: side by side in one CSV, and each in its own file (NAME=PATH,
 * a .npy and a CSV), written by batches as the collected run writes them. */
Test(stream, several_outputs_by_batches) {
  const char *dir = e2e_tmpdir(), *bin = e2e_compile(two_src, "f32");
  E2eRun r;
  run_ok(dir, "init", (const char *const[]){bin, "init", "--seed", "2", "--out", "w.npz", NULL});
  write_input(dir, "x.npy", true, -1);
  FWD(bin, "x.npy", "yz.csv", );
  r = e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--batch", "64",
               "--output", "-", NULL);
  e2e_check_ok(&r, "forward to stdout");
  {
    char *csv = slurp(dir, "yz.csv", NULL);
    cr_assert_str_eq(csv, r.out);
    cr_assert_eq(strlen(csv), strlen(r.out));
    free(csv);
  }
  run_ok(dir, "two files",
         (const char *const[]){bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--batch",
                               "64", "--output", "z=z.npy", "--output", "y=y.csv", NULL});
  FWD(bin, "x.npy", "all.npz", );
  {
    E2eArr z = e2e_npy_read(e2e_path(dir, "z.npy"));
    E2eNpz all = e2e_npz_read(e2e_path(dir, "all.npz"));
    const E2eArr *zz = e2e_npz_get(&all, "z"), *yy = e2e_npz_get(&all, "y");
    char *y = slurp(dir, "y.csv", NULL), *line = y;
    cr_assert_eq(z.ndim, 3);
    cr_assert_eq(z.shape[0], N);
    cr_assert_eq(z.n, zz->n);
    for (long i = 0; i < z.n; i++)
      cr_assert_eq(z.d[i], zz->d[i], "z element %ld", i);
    for (long i = 0; i < N; i++) { /* CSV rows: f32 values printed to round-trip */
      for (int j = 0; j < 3; j++) {
        char *end;
        cr_assert_eq((float)strtod(line, &end), (float)yy->d[i * 3 + j], "y[%ld, %d]", i, j);
        line = end + 1;
      }
    }
    cr_assert_eq(*line, 0, "more rows than samples");
    free(y);
    e2e_arr_free(&z);
    e2e_npz_free(&all);
  }
  e2e_run_free(&r);
}
