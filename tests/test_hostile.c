/* test_hostile.c — hostile inputs, one table per kind: .mach sources, data
 * files, weight files and command-line options. Every case asserts the
 * exit status and the message (the first line of stderr for sources, a
 * substring naming the cause for the runtime), that nothing was killed by
 * a signal or waited on, and for the runtime that no output or temporary
 * was left behind by a failing command.
 *
 * The runtime cases run one compiled model (dense 3 -> 2, tanh, bias) in a
 * directory of prepared files; see setup_files for what each file holds. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "e2e_util.h"

TestSuite(hostile, .fini = e2e_cleanup, .timeout = 240);

/* ---- sources ------------------------------------------------------------------ */

typedef struct SrcCase {
  const char *src;  /* the machine body, inside "machine m {\n    input x : 2\n" ... "\n}" */
  const char *want; /* the first line of stderr, after "h.mach:" */
} SrcCase;

static const SrcCase src_cases[] = {
    {"output y : 9223372036854775807 + 1 = dense(x)",
     "3:36: error: integer overflow: 9223372036854775807 + 1 is outside the 64-bit range"},
    {"output y : -9223372036854775807 - 2 = dense(x)",
     "3:37: error: integer overflow: -9223372036854775807 - 2 is outside the 64-bit range"},
    {"output y : 3037000500 * 3037000500 = dense(x)",
     "3:27: error: integer overflow: 3037000500 * 3037000500 is outside the 64-bit range"},
    {"output y : (-9223372036854775807 - 1) / -1 = dense(x)",
     "3:43: error: integer overflow: -9223372036854775808 / -1 is outside the 64-bit range"},
    {"output y : (-9223372036854775807 - 1) % -1 = dense(x)",
     "3:43: error: integer overflow: -9223372036854775808 % -1 is outside the 64-bit range"},
    {"output y : 1 % 0 = dense(x)", "3:18: error: division by zero"},
    {"output y : abs(-9223372036854775807 - 1) = dense(x)",
     "3:41: error: integer overflow: abs(-9223372036854775808) is outside the 64-bit range"},
    {"output y : sum([9223372036854775807, 1]) = dense(x)",
     "3:16: error: integer overflow: 9223372036854775807 + 1 is outside the 64-bit range"},
    {"output y : sum([1.5e308, 1.5e308]) = dense(x)", "3:16: error: sum gives a non-finite number"},
    {"output y : 1e308 * 10 = dense(x)", "3:22: error: arithmetic gives a non-finite number"},
    {"output y : min([]) = dense(x)", "3:16: error: min of an empty list"},
    {"output y : max(\"a\", 1) = dense(x)", "3:16: error: max takes one list"},
    {"output y : len(0 ..= 9223372036854775807) = dense(x)",
     "3:20: error: range 0 ..= 9223372036854775807 has more than 1000000 elements"},
    {"output y : len(-9223372036854775807 - 1 .. 9223372036854775807) = dense(x)",
     "3:20: error: range -9223372036854775808 .. 9223372036854775807 has more than 1000000 elements"},
    {"output y : 2147483648 = dense(x)",
     "3:16: error: a block size must be between 1 and 16777216, not 2147483648"},
    {"output y : 4294967297 = dense(x)",
     "3:16: error: a block size must be between 1 and 16777216, not 4294967297"},
    {"output y : 4611686018427387904 @ [1] = dense(x)",
     "3:16: error: the channel count must be between 1 and 16777216, not 4611686018427387904"},
    {"output y : 1 @ [4294967296] = dense(x)",
     "3:21: error: a grid size must be between 1 and 16777216, not 4294967296"},
    {"param W : [4294967298, 2]\n    output y : 2 = dense(x, weight = W)",
     "3:16: error: a parameter axis must be between 1 and 16777216, not 4294967298"},
    {"param W : [2, 2]\n    output y : 2 = dense(x, weight = W[-9223372036854775807 - 1 .. 2, 0 .. 2])",
     "4:40: error: range -9223372036854775808 .. 2 has more than 1000000 elements"},
    {"param W : [2, 2]\n    output y : 2 = dense(x, weight = W[4294967296, 0 .. 2])",
     "4:40: error: slice 4294967296 .. 4294967297 is outside axis 0 of 'W' (size 2)"},
    {"output y : 1 = dense(x)[9223372036854775807]", "3:20: error: cannot index a linear map"},
    {"let l = [1, 2]\n    output y : l[9223372036854775807] = dense(x)",
     "4:18: error: index 9223372036854775807 is out of range for a list of 2"},
    {"let l = [1, 2]\n    output y : l[-9223372036854775807 - 1] = dense(x)",
     "4:39: error: index -9223372036854775808 is out of range for a list of 2"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, k = 3, pad = 2147483648)",
     "4:47: error: a pad must be between -16777216 and 16777216, not 2147483648"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, k = [9223372036854775807])",
     "4:39: error: the kernel size must be between 1 and 1048576, not 9223372036854775807"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, k = 1, dilation = -1)",
     "4:52: error: the dilation must be between 1 and 1048576, not -1"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, k = 1048576, pad = same, dilation = 1048576)",
     "4:53: error: pad = same needs pads of 1099510579200 along axis 0; the limit is 33554432"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, lags = [-1, 0])",
     "4:42: error: a lag must be between 0 and 16777216, not -1"},
    {"block g : 2 @ [8] = input\n    output y : 1 @ [8] = conv(g, lags = [0.5, 1])",
     "4:42: error: a lag must be an integer, not a number"},
    {"set timeblock = 0\n    output y : 1 = dense(x)", "3:21: error: timeblock must be between 1 and 16777216, not 0"},
    {"output y : 1 = dense(x[0 .. 1000, 0 .. 1000, 0 .. 1000])",
     "3:26: error: 'x' indexed so names more than 1000000 blocks"},
};

Test(hostile, sources) {
  const char *dir = e2e_tmpdir();
  size_t n = sizeof src_cases / sizeof *src_cases;
  for (size_t i = 0; i < n; i++) {
    e2e_write_text(e2e_path(dir, "h.mach"),
                   e2e_fmt("machine m {\n    input x : 2\n    %s\n}\n", src_cases[i].src));
    E2eRun r = e2e_runl(dir, 20, e2e_machc(), "explain", "h.mach", NULL);
    cr_assert(!r.timed_out, "case %zu: no answer in 20 s", i);
    cr_assert_eq(r.sig, 0, "case %zu: signal %d\n%s", i, r.sig, r.err);
    cr_assert_eq(r.status, 1, "case %zu: status %d\n%s", i, r.status, r.err);
    char *want = e2e_fmt("h.mach:%s\n", src_cases[i].want);
    cr_assert(strncmp(r.err, want, strlen(want)) == 0, "case %zu (%s):\n%s\nwant:\n%s", i,
              src_cases[i].src, r.err, want);
    e2e_run_free(&r);
  }
  cr_assert_geq(n, 30);
}

/* ---- the runtime: data, weights, options --------------------------------------- */

static const char model_src[] = "machine m {\n    input x : 3\n    output y : 2 = tanh(dense(x) + bias)\n}\n";

static size_t put(unsigned char *p, size_t at, uint32_t v, int bytes) {
  for (int i = 0; i < bytes; i++)
    p[at + (size_t)i] = (unsigned char)(v >> (8 * i));
  return at + (size_t)bytes;
}

/* A zip of one deflated member "x.npy" of 2 bytes (an empty final block)
 * that claims 1 GiB once inflated: found by fuzz_npz (the reader allocated
 * what the header claimed before inflating). */
static void write_bomb(const char *path) {
  unsigned char b[160] = {0};
  size_t at = 0;
  const uint32_t csize = 2, usize = 1u << 30;
  at = put(b, at, 0x04034b50, 4), at = put(b, at, 20, 2), at = put(b, at, 0, 2), at = put(b, at, 8, 2);
  at = put(b, at, 0, 4), at = put(b, at, 0, 4), at = put(b, at, csize, 4), at = put(b, at, usize, 4);
  at = put(b, at, 5, 2), at = put(b, at, 0, 2);
  memcpy(b + at, "x.npy", 5), at += 5;
  b[at++] = 0x03, b[at++] = 0x00;
  size_t cd = at;
  at = put(b, at, 0x02014b50, 4), at = put(b, at, 20, 2), at = put(b, at, 20, 2), at = put(b, at, 0, 2);
  at = put(b, at, 8, 2), at = put(b, at, 0, 4), at = put(b, at, 0, 4), at = put(b, at, csize, 4);
  at = put(b, at, usize, 4), at = put(b, at, 5, 2), at = put(b, at, 0, 2), at = put(b, at, 0, 2);
  at = put(b, at, 0, 2), at = put(b, at, 0, 2), at = put(b, at, 0, 4), at = put(b, at, 0, 4);
  memcpy(b + at, "x.npy", 5), at += 5;
  size_t cdlen = at - cd;
  at = put(b, at, 0x06054b50, 4), at = put(b, at, 0, 2), at = put(b, at, 0, 2), at = put(b, at, 1, 2);
  at = put(b, at, 1, 2), at = put(b, at, (uint32_t)cdlen, 4), at = put(b, at, (uint32_t)cd, 4);
  at = put(b, at, 0, 2);
  e2e_write_file(path, b, at);
}

/* The one weights file a good run uses, and what the cases break. */
static void setup_files(const char *dir, const char *bin) {
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "1", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  E2eArr x = e2e_arr2(4, 3), t = e2e_arr2(4, 2), x5 = e2e_arr2(4, 5);
  for (long i = 0; i < x.n; i++)
    x.d[i] = 0.1 * (double)i;
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_npy_write(e2e_path(dir, "t.npy"), &t, false);
  e2e_npy_write(e2e_path(dir, "x5.npy"), &x5, false);
  x.d[7] = NAN;
  e2e_npy_write(e2e_path(dir, "xnan.npy"), &x, false);
  x.d[7] = INFINITY;
  e2e_npy_write(e2e_path(dir, "xinf.npy"), &x, false);
  for (long i = 0; i < t.n; i++)
    t.d[i] = 1e300; /* (y - t)^2 overflows at the first step */
  e2e_npy_write(e2e_path(dir, "thuge.npy"), &t, false);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
  e2e_arr_free(&x5);
  /* weights: the real ones with one NaN / inf, a missing entry, a wrong shape */
  E2eNpz w = e2e_npz_read(e2e_path(dir, "w.npz"));
  const char *names[2] = {w.names[0], w.names[1]};
  E2eArr arrs[2] = {w.arrs[0], w.arrs[1]};
  arrs[0].d[0] = NAN;
  e2e_npz_write(e2e_path(dir, "wnan.npz"), 2, names, arrs);
  arrs[0].d[0] = -INFINITY;
  e2e_npz_write(e2e_path(dir, "winf.npz"), 2, names, arrs);
  e2e_npz_write(e2e_path(dir, "wmissing.npz"), 1, names, arrs);
  E2eArr wrong = e2e_arr2(3, 3);
  E2eArr arrs2[2] = {arrs[0], arrs[1]};
  arrs2[strcmp(names[0], "W_y_x") == 0 ? 0 : 1] = wrong;
  e2e_npz_write(e2e_path(dir, "wshape.npz"), 2, names, arrs2);
  e2e_arr_free(&wrong);
  e2e_npz_free(&w);
  /* hostile bytes */
  e2e_write_text(e2e_path(dir, "empty.npy"), "");
  e2e_write_file(e2e_path(dir, "badmagic.npy"), "\x93NUMPX\x01\x00\x10\x00{'descr': '<f8'}", 26);
  static const char trunc_hdr[] = "\x93NUMPY\x01\x00\x76\x00{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), }";
  e2e_write_file(e2e_path(dir, "trunc.npy"), trunc_hdr, sizeof trunc_hdr - 1);
  char big[128 + 10] = "\x93NUMPY\x01\x00\x76\x00";
  snprintf(big + 10, sizeof big - 10, "%-117s\n",
           "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4611686018427387904), }");
  e2e_write_file(e2e_path(dir, "hugeshape.npy"), big, 128);
  e2e_write_text(e2e_path(dir, "garbage.csv"), "1,2,3\n4,five,6\n");
  e2e_write_text(e2e_path(dir, "ragged.csv"), "1,2,3\n4,5\n");
  e2e_write_text(e2e_path(dir, "nan.csv"), "1,2,3\nnan,5,6\n");
  e2e_write_text(e2e_path(dir, "cols.csv"), "1,2,3,4\n5,6,7,8\n");
  e2e_write_text(e2e_path(dir, "notzip.npz"), "this is not a zip file at all, not even close\n");
  e2e_write_file(e2e_path(dir, "garbage.npy.gz"), "\x1f\x8b\x08\x00garbage", 11);
  write_bomb(e2e_path(dir, "bomb.npz"));
  char *w_bytes;
  size_t wl;
  w_bytes = e2e_read_file(e2e_path(dir, "w.npz"), &wl);
  e2e_write_file(e2e_path(dir, "wtrunc.npz"), w_bytes, wl / 2);
  free(w_bytes);
  cr_assert_eq(mkfifo(e2e_path(dir, "fifo.npy"), 0600), 0);
  cr_assert_eq(mkdir(e2e_path(dir, "adir.npy"), 0700), 0);
  e2e_write_text(e2e_path(dir, "keep.npy"), "an existing output: must survive failed runs\n");
  e2e_write_text(e2e_path(dir, "keep.npz"), "existing weights: must survive a failed training\n");
}

typedef struct RtCase {
  const char *kind; /* data, weights, options, outputs */
  int status;
  const char *err;  /* a substring of stderr */
  const char *argv[20];
} RtCase;

#define FWD "forward", "--weights", "w.npz", "--input", "x.npy", "--output", "y.npy"
#define TRAIN "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse", "--out", "wt.npz"

static const RtCase rt_cases[] = {
    /* options */
    {"options", 2, "--batch: '0' is not an integer in [1, 2147483647]", {FWD, "--batch", "0"}},
    {"options", 2, "--batch: '2147483648' is not an integer in [1, 2147483647]", {FWD, "--batch", "2147483648"}},
    {"options", 2, "--batch: '4294967296' is not an integer", {FWD, "--batch", "4294967296"}},
    {"options", 2, "--batch: '4611686018427387904' is not an integer", {FWD, "--batch", "4611686018427387904"}},
    {"options", 2, "--batch: '9223372036854775807' is not an integer", {FWD, "--batch", "9223372036854775807"}},
    {"options", 2, "--batch: '9223372036854775808' is not an integer", {FWD, "--batch", "9223372036854775808"}},
    {"options", 2, "--batch: '-9223372036854775808' is not an integer", {FWD, "--batch", "-9223372036854775808"}},
    {"options", 2, "--batch: '1e3' is not an integer", {FWD, "--batch", "1e3"}},
    {"options", 2, "--batch: '' is not an integer", {FWD, "--batch="}},
    {"options", 2, "--epochs: '4611686018427387904' is not an integer", {TRAIN, "--epochs", "4611686018427387904"}},
    {"options", 2, "--epochs: '-1' is not an integer", {TRAIN, "--epochs", "-1"}},
    {"options", 2, "--checkpoint-every: '4294967296' is not an integer",
     {TRAIN, "--epochs", "1", "--checkpoint-every", "4294967296"}},
    {"options", 2, "--lr: 'nan' is not a number", {TRAIN, "--epochs", "1", "--lr", "nan"}},
    {"options", 2, "--lr: 'inf' is not a number", {TRAIN, "--epochs", "1", "--lr", "inf"}},
    {"options", 2, "--lr: '1e999' is not a number", {TRAIN, "--epochs", "1", "--lr", "1e999"}},
    {"options", 2, "--seed: '18446744073709551616' is not an unsigned 64-bit integer",
     {"init", "--seed", "18446744073709551616", "--out", "wi.npz"}},
    {"options", 2, "--seed: '-1' is not an unsigned 64-bit integer", {"init", "--seed", "-1", "--out", "wi.npz"}},
    {"options", 2, "unknown option '--frob'", {FWD, "--frob"}},
    {"options", 2, "missing value for '--weights'", {"forward", "--weights"}},
    {"options", 2, "option takes no value: '--argmax=1'", {FWD, "--argmax=1"}},
    {"options", 2, "unknown command 'frobnicate'", {"frobnicate"}},
    {"options", 2, "unexpected argument 'stray'", {FWD, "stray"}},
    /* data */
    {"data", 1, "missing.npy", {"forward", "--weights", "w.npz", "--input", "missing.npy", "--output", "y.npy"}},
    {"data", 1, "adir.npy", {"forward", "--weights", "w.npz", "--input", "adir.npy", "--output", "y.npy"}},
    {"data", 1, "fifo.npy", {"forward", "--weights", "w.npz", "--input", "fifo.npy", "--output", "y.npy"}},
    {"data", 1, "/dev/zero", {"forward", "--weights", "w.npz", "--input", "/dev/zero", "--output", "y.npy"}},
    {"data", 1, "empty.npy", {"forward", "--weights", "w.npz", "--input", "empty.npy", "--output", "y.npy"}},
    {"data", 1, "badmagic.npy", {"forward", "--weights", "w.npz", "--input", "badmagic.npy", "--output", "y.npy"}},
    {"data", 1, "trunc.npy", {"forward", "--weights", "w.npz", "--input", "trunc.npy", "--output", "y.npy"}},
    {"data", 1, "hugeshape.npy", {"forward", "--weights", "w.npz", "--input", "hugeshape.npy", "--output", "y.npy"}},
    {"data", 1, "x5.npy", {"forward", "--weights", "w.npz", "--input", "x5.npy", "--output", "y.npy"}},
    {"data", 1, "garbage.csv", {"forward", "--weights", "w.npz", "--input", "garbage.csv", "--output", "y.npy"}},
    {"data", 1, "ragged.csv", {"forward", "--weights", "w.npz", "--input", "ragged.csv", "--output", "y.npy"}},
    {"data", 1, "notzip.npz", {"forward", "--weights", "w.npz", "--input", "notzip.npz", "--output", "y.npy"}},
    {"data", 1, "bomb.npz: corrupt zip (entry 'x' claims 1073741824 bytes from 2 compressed)",
     {"forward", "--weights", "w.npz", "--input", "bomb.npz", "--output", "y.npy"}},
    {"weights", 1, "bomb.npz: no entry 'W_y_x'", {"forward", "--weights", "bomb.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"data", 1, "cols.csv: column '9223372036854775807' is out of range: the file has 4 columns (0 to 3)",
     {"forward", "--weights", "w.npz", "--input", "cols.csv", "--data-cols", "9223372036854775807", "--output",
      "y.npy"}},
    {"data", 1, "cols.csv: column '-9223372036854775808' is out of range: the file has 4 columns (0 to 3)",
     {"forward", "--weights", "w.npz", "--input", "cols.csv", "--data-cols", "-9223372036854775808", "--output",
      "y.npy"}},
    {"data", 1, "cols.csv: columns '1:4294967296' is out of range: the file has 4 columns (0 to 3)",
     {"forward", "--weights", "w.npz", "--input", "cols.csv", "--data-cols", "1:4294967296", "--output", "y.npy"}},
    {"data", 1, "cols.csv: column '9223372036854775808' is not an index or a range A:B (the file has no header)",
     {"forward", "--weights", "w.npz", "--input", "cols.csv", "--data-cols", "9223372036854775808", "--output",
      "y.npy"}},
    {"data", 0, "", {"forward", "--weights", "w.npz", "--input", "cols.csv", "--data-cols", "1:4", "--output", "yc.npy"}},
    {"data", 1, "garbage.npy.gz", {"forward", "--weights", "w.npz", "--input", "garbage.npy.gz", "--output", "y.npy"}},
    {"data", 1, "forward: input 'x' has a non-finite value (nan) in sample 2, element 1; pass --allow-nonfinite",
     {"forward", "--weights", "w.npz", "--input", "xnan.npy", "--output", "y.npy"}},
    {"data", 1, "forward: input 'x' has a non-finite value (inf) in sample 2, element 1",
     {"forward", "--weights", "w.npz", "--input", "xinf.npy", "--output", "y.npy"}},
    {"data", 1, "forward: input 'x' has a non-finite value (nan) in sample 1, element 0",
     {"forward", "--weights", "w.npz", "--input", "nan.csv", "--output", "y.npy"}},
    {"data", 1, "eval: input 'x' has a non-finite value (nan) in sample 2, element 1",
     {"eval", "--weights", "w.npz", "--data", "xnan.npy", "--targets", "t.npy", "--loss", "mse"}},
    {"data", 1, "grad: input 'x' has a non-finite value (inf)",
     {"grad", "--weights", "w.npz", "--input", "xinf.npy", "--cotangent", "t.npy", "--output", "g.npz"}},
    {"data", 1, "x5.npy", {"eval", "--weights", "w.npz", "--data", "x.npy", "--targets", "x5.npy", "--loss", "mse"}},
    {"data", 0, "", {"forward", "--weights", "w.npz", "--input", "xnan.npy", "--output", "ynan.npy", "--allow-nonfinite"}},
    /* weights */
    {"weights", 1, "wnan.npz: parameter 'W_y_x' has a non-finite value (nan) at index 0; pass --allow-nonfinite",
     {"forward", "--weights", "wnan.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "winf.npz: parameter 'W_y_x' has a non-finite value (-inf) at index 0",
     {"eval", "--weights", "winf.npz", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse"}},
    {"weights", 1, "winf.npz: parameter 'W_y_x' has a non-finite value (-inf)",
     {"grad", "--weights", "winf.npz", "--input", "x.npy", "--cotangent", "t.npy", "--output", "g.npz"}},
    {"weights", 1, "wmissing.npz", {"forward", "--weights", "wmissing.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "wshape.npz", {"forward", "--weights", "wshape.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "notzip.npz", {"forward", "--weights", "notzip.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "wtrunc.npz", {"forward", "--weights", "wtrunc.npz", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "adir.npy", {"forward", "--weights", "adir.npy", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "fifo.npy", {"forward", "--weights", "fifo.npy", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 1, "empty.npy", {"forward", "--weights", "empty.npy", "--input", "x.npy", "--output", "y.npy"}},
    {"weights", 0, "", {"forward", "--weights", "wnan.npz", "--input", "x.npy", "--output", "ynan2.npy", "--allow-nonfinite"}},
    /* outputs: all or nothing, nothing replaced by a failed run */
    {"outputs", 1, "nodir/s.npz", {"forward", "--weights", "w.npz", "--input", "x.npy", "--output", "keep.npy",
                                   "--dump-state", "nodir/s.npz"}},
    {"outputs", 1, "nodir/y.npy", {"forward", "--weights", "w.npz", "--input", "x.npy", "--output", "nodir/y.npy"}},
    {"outputs", 1, "nodir/b.npz", {"grad", "--weights", "w.npz", "--input", "x.npy", "--cotangent", "t.npy",
                                   "--output", "keep.npy", "--dump-dual", "nodir/b.npz"}},
    {"outputs", 1, "non-finite", {"forward", "--weights", "wnan.npz", "--input", "x.npy", "--output", "keep.npy"}},
    {"outputs", 1, "no step succeeded, so keep.npz was not written",
     {"train", "--data", "x.npy", "--targets", "thuge.npy", "--loss", "mse", "--epochs", "3", "--out", "keep.npz",
      "--quiet"}},
};

/* Names in dir that are temporaries (NAME.tmp.PID). */
static char *temporaries(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert(d);
  struct dirent *e;
  char *found = NULL;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp."))
      found = e2e_fmt("%s%s ", found ? found : "", e->d_name);
  closedir(d);
  return found;
}

Test(hostile, runtime_data_weights_options_outputs) {
  const char *bin = e2e_compile(model_src, "f64");
  const char *dir = e2e_tmpdir();
  setup_files(dir, bin);
  char *keep = e2e_read_file(e2e_path(dir, "keep.npy"), NULL), *keepw = e2e_read_file(e2e_path(dir, "keep.npz"), NULL);
  size_t n = sizeof rt_cases / sizeof *rt_cases;
  int kinds[4] = {0};
  for (size_t i = 0; i < n; i++) {
    const RtCase *c = &rt_cases[i];
    const char *argv[22] = {bin};
    for (int k = 0; c->argv[k]; k++)
      argv[k + 1] = c->argv[k];
    E2eRun r = e2e_run(dir, 30, argv);
    cr_assert(!r.timed_out, "case %zu (%s %s): no answer in 30 s", i, c->kind, c->argv[0]);
    cr_assert_eq(r.sig, 0, "case %zu: signal %d\n%s", i, r.sig, r.err);
    cr_assert_eq(r.status, c->status, "case %zu (%s, %s %s %s): status %d, want %d\n%s", i, c->kind,
                 c->argv[0], c->argv[3] ? c->argv[3] : "", c->argv[4] ? c->argv[4] : "", r.status, c->status, r.err);
    if (c->status)
      cr_assert(strstr(r.err, c->err), "case %zu (%s): stderr\n%s\nlacks: %s", i, c->kind, r.err, c->err);
    else
      cr_assert_str_empty(r.err, "case %zu: %s", i, r.err);
    char *tmps = temporaries(dir);
    cr_assert_null(tmps, "case %zu left temporaries: %s", i, tmps);
    if (c->status) { /* a failed run writes nothing and replaces nothing */
      cr_assert(access(e2e_path(dir, "y.npy"), F_OK) != 0, "case %zu wrote y.npy", i);
      cr_assert(access(e2e_path(dir, "g.npz"), F_OK) != 0, "case %zu wrote g.npz", i);
      cr_assert(access(e2e_path(dir, "wt.npz"), F_OK) != 0, "case %zu wrote wt.npz", i);
      cr_assert_str_eq(e2e_read_file(e2e_path(dir, "keep.npy"), NULL), keep, "case %zu replaced keep.npy", i);
      cr_assert_str_eq(e2e_read_file(e2e_path(dir, "keep.npz"), NULL), keepw, "case %zu replaced keep.npz", i);
    }
    kinds[c->kind[0] == 'o' && c->kind[1] == 'p' ? 0 : c->kind[0] == 'd' ? 1 : c->kind[0] == 'w' ? 2 : 3]++;
    e2e_run_free(&r);
  }
  /* --allow-nonfinite runs and writes */
  cr_assert(access(e2e_path(dir, "ynan.npy"), F_OK) == 0);
  cr_assert(access(e2e_path(dir, "ynan2.npy"), F_OK) == 0);
  cr_assert(kinds[0] >= 15 && kinds[1] >= 15 && kinds[2] >= 8 && kinds[3] >= 4, "%d %d %d %d", kinds[0],
            kinds[1], kinds[2], kinds[3]);
  cr_assert_geq(n + sizeof src_cases / sizeof *src_cases, 60);
}

/* The baseline: the same files and options work when nothing is hostile. */
Test(hostile, the_good_run_works) {
  const char *bin = e2e_compile(model_src, "f64");
  const char *dir = e2e_tmpdir();
  setup_files(dir, bin);
  E2eRun r = e2e_runl(dir, 30, bin, FWD, "--dump-state", "s.npz", NULL);
  e2e_check_ok(&r, "forward");
  e2e_run_free(&r);
  cr_assert(access(e2e_path(dir, "y.npy"), F_OK) == 0 && access(e2e_path(dir, "s.npz"), F_OK) == 0);
  r = e2e_runl(dir, 30, bin, TRAIN, "--epochs", "2", "--quiet", NULL);
  e2e_check_ok(&r, "train");
  e2e_run_free(&r);
  cr_assert(access(e2e_path(dir, "wt.npz"), F_OK) == 0);
  cr_assert_null(temporaries(dir));
}

/* A signal while the C compiler works on a binary (Ctrl-C, a timeout's
 * SIGTERM): machc stops the compiler and removes the generated C and its
 * directory under /tmp, then dies of the signal. The "compiler" here logs
 * its arguments (so the test learns the temporary directory) and sleeps. */
static void signal_during_cc(int sig) {
  const char *dir = e2e_tmpdir();
  char *cc = e2e_path(dir, "slowcc.sh"), *log = e2e_path(dir, "cc.log");
  e2e_write_text(cc, "#!/bin/sh\necho \"$$ $*\" > \"$SLOWCC_LOG.tmp\"\nmv \"$SLOWCC_LOG.tmp\" \"$SLOWCC_LOG\"\n"
                     "exec sleep 60\n");
  cr_assert_eq(chmod(cc, 0755), 0);
  e2e_write_text(e2e_path(dir, "m.mach"), model_src);
  pid_t pid = fork();
  cr_assert(pid >= 0);
  if (pid == 0) {
    setenv("CC", cc, 1);
    setenv("SLOWCC_LOG", log, 1);
    if (chdir(dir) != 0)
      _exit(126);
    execl(e2e_machc(), e2e_machc(), "m.mach", "-o", "m.bin", (char *)NULL);
    _exit(127);
  }
  char *text = NULL;
  for (int i = 0; i < 2000 && !text; i++) { /* up to 20 s for the compile to start */
    struct timespec ts = {0, 10000000};
    nanosleep(&ts, NULL);
    text = e2e_read_file(log, NULL);
  }
  if (!text)
    kill(pid, SIGKILL);
  cr_assert(text, "the C compiler never started");
  int ccpid = atoi(text);
  char *cfile = strstr(text, "/model.c");
  cr_assert(cfile, "%s", text);
  char *start = cfile;
  while (start > text && start[-1] != ' ')
    start--;
  char *tmpdir = e2e_fmt("%.*s", (int)(cfile - start), start);
  cr_assert(access(e2e_fmt("%s/model.c", tmpdir), F_OK) == 0, "%s/model.c is not there while compiling", tmpdir);
  kill(pid, sig);
  int st;
  cr_assert_eq(waitpid(pid, &st, 0), pid);
  cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == sig, "machc: status %#x, want death by signal %d", st, sig);
  cr_assert(access(tmpdir, F_OK) != 0, "%s left behind", tmpdir);
  cr_assert(access(e2e_path(dir, "m.bin"), F_OK) != 0, "m.bin written");
  cr_assert(kill(ccpid, 0) != 0, "the C compiler (pid %d) still runs", ccpid);
  free(text);
}

Test(hostile, sigterm_during_the_c_compiler_leaves_nothing) { signal_during_cc(SIGTERM); }
Test(hostile, sigint_during_the_c_compiler_leaves_nothing) { signal_during_cc(SIGINT); }

/* machc's outputs are written all or none: when one cannot be (the header's
 * name is taken by a directory, a weights file is a FIFO) no other is
 * replaced and no temporary is left. */
Test(hostile, machc_writes_all_outputs_or_none) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), model_src);
  e2e_write_text(e2e_path(dir, "keep.c"), "keep\n");
  cr_assert_eq(mkdir(e2e_path(dir, "keep.h"), 0700), 0);
  cr_assert_eq(mkfifo(e2e_path(dir, "w.npz"), 0600), 0);
  static const struct {
    const char *argv[8];
    const char *err;
  } cases[] = {
      {{"-S", "-o", "keep.c", "m.mach"}, "machc: cannot write keep.h: Is a directory\n"},
      {{"-S", "--standalone", "--weights", "w.npz", "-o", "keep.c", "m.mach"},
       "machc: w.npz: cannot open: not a regular file (a directory, FIFO or device)\n"},
      {{"-S", "--standalone", "--weights", "keep.h", "-o", "sa.c", "m.mach"},
       "machc: keep.h: cannot open: not a regular file (a directory, FIFO or device)\n"},
      {{"-S", "-o", "nodir/x.c", "m.mach"}, "machc: cannot write nodir/x.c: No such file or directory\n"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *argv[10] = {e2e_machc()};
    for (int k = 0; cases[i].argv[k]; k++)
      argv[k + 1] = cases[i].argv[k];
    E2eRun r = e2e_run(dir, 20, argv);
    cr_assert(!r.timed_out, "case %zu waited", i);
    cr_assert_eq(r.status, 1, "case %zu: status %d\n%s", i, r.status, r.err);
    cr_assert_str_eq(r.err, cases[i].err, "case %zu", i);
    cr_assert_str_eq(e2e_read_file(e2e_path(dir, "keep.c"), NULL), "keep\n", "case %zu replaced keep.c", i);
    cr_assert(access(e2e_path(dir, "sa.c"), F_OK) != 0 && access(e2e_path(dir, "sa.h"), F_OK) != 0);
    cr_assert_null(temporaries(dir), "case %zu left temporaries", i);
    e2e_run_free(&r);
  }
}
