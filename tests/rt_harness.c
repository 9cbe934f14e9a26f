/* rt_harness.c — what the runtime tests share: a temporary directory per
 * suite, commands run in-process through mach_main with stdout and stderr
 * captured, and small file writers. See rt_harness.h. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt_harness.h"

/* ---- helpers ---------------------------------------------------------------- */

char tmpdir[512];
char out_text[1 << 16], err_text[1 << 16];
const struct mach_ctx tctx = {.prog = "test", .m = &fake_reg};

void remove_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *ent;
  char path[1200];
  while (d && (ent = readdir(d)))
    if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", tmpdir, ent->d_name);
      unlink(path);
    }
  if (d)
    closedir(d);
  rmdir(tmpdir);
}

void make_tmpdir(void) {
  const char *base = getenv("MACHC_TEST_TMP");
  if (!base || !*base)
    base = "/tmp";
  mkdir(base, 0777);
  snprintf(tmpdir, sizeof tmpdir, "%s/machrt.XXXXXX", base);
  cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp in %s", base);
}

/* A path in the test's directory; 16 rotating buffers. */
const char *P(const char *name) {
  static char bufs[16][600];
  static int next;
  char *b = bufs[next++ % 16];
  snprintf(b, 600, "%s/%s", tmpdir, name);
  return b;
}

void write_bytes(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  fclose(f);
}

unsigned char *read_bytes(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  unsigned char *b;
  long n;
  cr_assert_not_null(f, "cannot open %s", path);
  fseek(f, 0, SEEK_END);
  n = ftell(f);
  fseek(f, 0, SEEK_SET);
  b = malloc((size_t)n + 1);
  cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  *len = (size_t)n;
  return b;
}

static void capture(int fd, const char *path, char *dst, size_t cap) {
  size_t len;
  unsigned char *b = read_bytes(path, &len);
  (void)fd;
  if (len >= cap)
    len = cap - 1;
  memcpy(dst, b, len);
  dst[len] = 0;
  free(b);
}

/* Runs `fake ARGS...` (NULL-terminated) with stdin from `in` (a path or NULL);
 * stdout and stderr land in out_text and err_text. Returns the status. */
int run_in(const struct mach_model *m, const char *in, ...) {
  char *argv[64];
  int argc = 0, rc, save1, save2, save0 = -1, fd1, fd2;
  va_list ap;
  const char *o = P(".stdout"), *e = P(".stderr");
  argv[argc++] = "/some/where/fake";
  va_start(ap, in);
  for (const char *s; (s = va_arg(ap, const char *));)
    argv[argc++] = (char *)s;
  va_end(ap);
  argv[argc] = NULL;
  fflush(stdout);
  fflush(stderr);
  save1 = dup(1);
  save2 = dup(2);
  fd1 = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  fd2 = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd1, 1);
  dup2(fd2, 2);
  if (in) {
    int fd0 = open(in, O_RDONLY);
    save0 = dup(0);
    dup2(fd0, 0);
    close(fd0);
    clearerr(stdin);
  }
  rc = mach_main(argc, argv, m);
  fflush(stdout);
  fflush(stderr);
  dup2(save1, 1);
  dup2(save2, 2);
  close(save1);
  close(save2);
  close(fd1);
  close(fd2);
  if (save0 >= 0) {
    dup2(save0, 0);
    close(save0);
    clearerr(stdin);
  }
  capture(1, o, out_text, sizeof out_text);
  capture(2, e, err_text, sizeof err_text);
  unlink(o);
  unlink(e);
  return rc;
}

void save_npy(const char *path, int rank, const long *shape, const double *data) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(mach_npy_write(f, rank, shape, data), 0);
  fclose(f);
}

/* Writes raw .npy bytes: v1.0 magic, the given header text, then data. */
void raw_npy(const char *path, const char *dict, const void *data, size_t len) {
  unsigned char b[1024];
  size_t hl = strlen(dict);
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (unsigned char)(hl & 0xff);
  b[9] = (unsigned char)(hl >> 8);
  memcpy(b + 10, dict, hl);
  memcpy(b + 10 + hl, data, len);
  write_bytes(path, b, 10 + hl + len);
}

/* Loads entry `name` of an .npz as doubles; returns the element count. */
long npz_entry(const char *path, const char *name, double *dst, long cap,
                      struct mach_array *shape_out) {
  struct mach_npz z;
  struct mach_array a;
  cr_assert_eq(mach_npz_open(&tctx, path, &z), 0, "open %s", path);
  cr_assert_eq(mach_npz_get(&tctx, &z, name, &a), 0, "%s: entry %s", path, name);
  cr_assert_leq(a.count, cap);
  for (long i = 0; i < a.count; i++)
    dst[i] = mach_array_get(&a, i);
  if (shape_out)
    *shape_out = a;
  mach_npz_close(&z);
  return a.count;
}

const double known_w[13] = {0.1, -0.2, 0.3, 0.4, 0.5, -0.6, /* W_h_u [2, 3] */
                                   0.01, 0.02, 0.03,               /* b_h */
                                   0.7, -0.8, 0.9,                 /* W_y_h [3, 1] */
                                   0.05};                          /* b_y */

void save_weights(const struct mach_model *m, const char *path, const double *w) {
  struct mach_ctx c = {.prog = "test", .m = m};
  cr_assert_eq(mach_save_weights(&c, path, w), 0);
}

/* Deterministic pseudo-random numbers in [-1, 1) for test data. */
double lcg(unsigned long *s) {
  *s = *s * 6364136223846793005ul + 1442695040888963407ul;
  return (double)(*s >> 11) * 0x1.0p-52 - 1.0;
}

void assert_err(const char *want) {
  cr_assert_str_eq(err_text, want, "stderr was: %s", err_text);
}

