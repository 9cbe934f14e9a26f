/* test_memory.c — what a command holds while it reads a large input: the
 * peak resident memory (ru_maxrss, from wait4 on the command alone) of
 * `forward` and `train` over a 100 MB .npy. `forward` reads a batch at a
 * time and writes the outputs as they come, so it holds the model and a
 * few batches whatever the size of the file: less than half the file
 * here. `train` shuffles, so it holds the samples, once: less than 1.5
 * times the file (reading the file whole and then converting it held it
 * twice, 2x the file). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "e2e_util.h"

TestSuite(memory, .fini = e2e_cleanup, .timeout = 300);

enum { N = 24576, D = 1024 }; /* f32: 100.7 MB of data */

static const char src[] =
    "machine wide {\n"
    "    input  x : 1024\n"
    "    block  h : 8 = tanh(dense(x) + bias)\n"
    "    output y : 4 = dense(h) + bias\n"
    "}\n";

/* [N, D] f32 values in [-1, 1) and [N] labels in 0..3, as .npy v1.0. */
static long write_data(const char *dir) {
  static const char x_dict[] = "{'descr': '<f4', 'fortran_order': False, 'shape': (24576, 1024), }";
  static const char t_dict[] = "{'descr': '<i8', 'fortran_order': False, 'shape': (24576,), }";
  FILE *f = fopen(e2e_path(dir, "x.npy"), "wb"), *g = fopen(e2e_path(dir, "t.npy"), "wb");
  unsigned char head[128];
  uint64_t s = 99;
  float row[D];
  long size;
  cr_assert(f && g);
  for (int k = 0; k < 2; k++) {
    const char *dict = k ? t_dict : x_dict;
    size_t n = strlen(dict), total = 128;
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(total - 10);
    head[9] = 0;
    memcpy(head + 10, dict, n);
    memset(head + 10 + n, ' ', total - 10 - n - 1);
    head[total - 1] = '\n';
    cr_assert_eq(fwrite(head, 1, total, k ? g : f), total);
  }
  for (long i = 0; i < N; i++) {
    long long label = (long long)(i % 4);
    for (int j = 0; j < D; j++) {
      s = s * 6364136223846793005ULL + 1442695040888963407ULL;
      row[j] = (float)((double)(s >> 11) / 4503599627370496.0 - 1.0);
    }
    cr_assert_eq(fwrite(row, sizeof row, 1, f), 1);
    cr_assert_eq(fwrite(&label, sizeof label, 1, g), 1);
  }
  size = ftell(f);
  cr_assert_eq(fclose(f), 0);
  cr_assert_eq(fclose(g), 0);
  return size;
}

/* Runs argv in dir; returns the peak resident memory in bytes. */
static long peak_rss(const char *dir, char *const *argv) {
  struct rusage ru;
  int status;
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    if (chdir(dir) != 0 || !freopen("/dev/null", "w", stdout))
      _exit(127);
    execv(argv[0], argv);
    _exit(127);
  }
  cr_assert_eq(wait4(pid, &status, 0, &ru), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s %s failed (status %d)", argv[0],
            argv[1], status);
  return ru.ru_maxrss * 1024L; /* kilobytes on Linux */
}

Test(memory, forward_streams_and_train_holds_the_data_once) {
  const char *dir = e2e_tmpdir(), *bin = e2e_compile(src, "f32");
  long size = write_data(dir), fwd, train;
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "1", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  fwd = peak_rss(dir, (char *const[]){(char *)bin, "forward", "--weights", "w.npz", "--input",
                                      "x.npy", "--output", "y.npy", "--threads", "1", NULL});
  cr_assert_lt(fwd, size / 2, "forward peaked at %ld bytes over a %ld-byte input", fwd, size);
  train = peak_rss(dir, (char *const[]){(char *)bin, "train", "--data", "x.npy", "--targets",
                                        "t.npy", "--loss", "xent", "--epochs", "1", "--batch",
                                        "256", "--threads", "1", "--quiet", "--out", "w1.npz",
                                        NULL});
  cr_assert_lt(train, size + size / 2, "train peaked at %ld bytes over a %ld-byte input", train,
               size);
  {
    E2eArr y = e2e_npy_read(e2e_path(dir, "y.npy"));
    cr_assert_eq(y.ndim, 2);
    cr_assert_eq(y.shape[0], N);
    cr_assert_eq(y.shape[1], 4);
    e2e_arr_free(&y);
  }
}
