/* test_conv_tiles.c — the kernels' tiles follow the target, the numbers do
 * not: machc -S --march for AVX-512, AVX2 and baseline x86-64 writes tiles
 * of two vectors, and binaries built for each compute the same forward pass
 * of tests/machines/grouped.mach. In the long tier (make test-long): it
 * builds three binaries of a large machine, and of a recurrent one, with
 * clang -O3. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(conv_tiles, .fini = e2e_cleanup);

/* The forward pass of `mach` (in dir, weights from `init --seed 5`, inputs
 * in1 and, unless NULL, in2 as NAME=FILE) built in f64 for the native
 * target, AVX2 and baseline x86-64: the same numbers, to rounding (only the
 * native build may contract a * b + c into FMAs). */
static void same_forward(const char *dir, const char *mach, const char *in1, const char *in2) {
  const char *bins[] = {"native", "v3", "base"}, *flags[] = {"--march=native", "--march=x86-64-v3",
                                                              "--march=x86-64"};
  E2eArr out[3];
  for (int k = 0; k < 3; k++) {
    E2eRun r = e2e_runl(dir, 120, e2e_machc(), "-I", e2e_path(e2e_root(), "stdlib"), "--dtype", "f64", flags[k],
                        mach, "-o", bins[k], NULL);
    e2e_check_ok(&r, flags[k]);
    e2e_run_free(&r);
    const char *bin = e2e_path(dir, bins[k]);
    if (k == 0) {
      r = e2e_runl(dir, 30, bin, "init", "--seed", "5", "--out", "w.npz", NULL);
      e2e_check_ok(&r, "init");
      e2e_run_free(&r);
    }
    r = in2 ? e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", in1, "--input", in2, "--output",
                       "y.npy", NULL)
            : e2e_runl(dir, 60, bin, "forward", "--weights", "w.npz", "--input", in1, "--output", "y.npy", NULL);
    e2e_check_ok(&r, "forward");
    e2e_run_free(&r);
    out[k] = e2e_npy_read(e2e_path(dir, "y.npy"));
  }
  for (int k = 1; k < 3; k++)
    for (long i = 0; i < out[0].n; i++)
      cr_assert(fabs(out[k].d[i] - out[0].d[i]) <= 1e-12 * (1 + fabs(out[0].d[i])), "%s: y[%ld] %.17g vs %.17g",
                flags[k], i, out[k].d[i], out[0].d[i]);
  for (int k = 0; k < 3; k++)
    e2e_arr_free(&out[k]);
}

/* --march picks the kernels' tiles (two vectors: 32, 16 or 8 floats) and
 * clang's target; the numbers do not depend on the tiles (same_forward). */
Test(conv_tiles, march_picks_the_tiles_not_the_numbers) {
  const char *dir = e2e_tmpdir();
  char *grouped_src = e2e_read_file(e2e_path(e2e_root(), "tests/machines/grouped.mach"), NULL);
  cr_assert(grouped_src, "cannot read tests/machines/grouped.mach");
  e2e_write_text(e2e_path(dir, "g.mach"), grouped_src);
  free(grouped_src);
  static const char *const marchs[] = {"--march=x86-64-v4", "--march=x86-64-v3", "--march=x86-64"};
  static const char *const nbs[] = {"NB = 32,", "NB = 16,", "NB = 8,"};
  for (int k = 0; k < 3; k++) {
    E2eRun r = e2e_runl(dir, 60, e2e_machc(), "-S", "--dtype", "f32", marchs[k], "g.mach", "-o", "g.c", NULL);
    e2e_check_ok(&r, marchs[k]);
    e2e_run_free(&r);
    char *c = e2e_read_file(e2e_path(dir, "g.c"), NULL);
    cr_assert(c && strstr(c, nbs[k]), "%s: no '%s'", marchs[k], nbs[k]);
    free(c);
  }
  E2eRng rng = {9};
  long xs[] = {3, 2, 40, 40}, ss[] = {3, 8, 600};
  E2eArr x = e2e_arr(4, xs), s = e2e_arr(3, ss);
  for (long i = 0; i < x.n; i++)
    x.d[i] = e2e_uniform(&rng, -1, 1);
  for (long i = 0; i < s.n; i++)
    s.d[i] = e2e_uniform(&rng, -1, 1);
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_npy_write(e2e_path(dir, "s.npy"), &s, false);
  e2e_arr_free(&x);
  e2e_arr_free(&s);
  same_forward(dir, "g.mach", "x=x.npy", "s=s.npy");
}

/* A recurrent machine of 16-channel blocks: in each chunk of time the
 * arrows into a block run as one product per group of samples
 * (emit_chunk.c), its pad, product and stores laid out by the target's NB;
 * a batch of 70 in two groups, the last chunk shorter. */
Test(conv_tiles, march_keeps_the_chunk_products_numbers) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "r.mach"), "import \"recurrent.mach\"\n"
                                          "machine trecur {\n"
                                          "    use m = recur_machine([16, 16, 16], tanh, 3, 2, 21)\n"
                                          "    output y : 2 @ [21] = conv(m.x[0 .. 3], k = 1)\n"
                                          "}\n");
  E2eRng rng = {11};
  long xs[] = {70, 16, 21};
  E2eArr x = e2e_arr(3, xs);
  for (long i = 0; i < x.n; i++)
    x.d[i] = e2e_uniform(&rng, -1, 1);
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_arr_free(&x);
  same_forward(dir, "r.mach", "m.x[0]=x.npy", NULL);
}
