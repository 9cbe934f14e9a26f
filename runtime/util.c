/* util.c — one-line messages, checked allocation, whole-file reads and
 * atomic file writes. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

void mach_err(const struct mach_ctx *c, const char *fmt, ...) {
  va_list ap;
  fflush(stdout); /* keep stdout and stderr in order when both are a terminal */
  fprintf(stderr, "%s: ", c->prog);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
}

void *mach_alloc(const struct mach_ctx *c, size_t count, size_t size) {
  void *p = NULL;
  if (count == 0 || size == 0)
    return calloc(1, 1);
  if (count <= SIZE_MAX / size)
    p = calloc(count, size);
  if (!p)
    mach_err(c, "out of memory (%zu x %zu bytes)", count, size);
  return p;
}

/* fread until EOF into a growing buffer: works for pipes, where the size is
 * not known in advance. */
static int slurp(FILE *f, unsigned char **buf, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  unsigned char *b = malloc(cap);
  while (b) {
    size_t got = fread(b + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
    if (n == cap) {
      unsigned char *nb = cap < SIZE_MAX / 2 ? realloc(b, cap * 2) : NULL;
      if (!nb) {
        free(b);
        b = NULL;
        errno = ENOMEM;
        break;
      }
      b = nb;
      cap *= 2;
    }
  }
  if (!b || ferror(f)) {
    free(b);
    return -1;
  }
  *buf = b;
  *len = n;
  return 0;
}

int mach_read_file(const struct mach_ctx *c, const char *path,
                   unsigned char **buf, size_t *len) {
  int is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : fopen(path, "rb");
  int rc;
  if (!f) {
    mach_err(c, "%s: cannot open: %s", path, strerror(errno));
    return 1;
  }
  errno = 0;
  rc = slurp(f, buf, len);
  if (rc)
    mach_err(c, "%s: cannot read: %s", is_stdin ? "<stdin>" : path,
             strerror(errno ? errno : EIO));
  if (!is_stdin)
    fclose(f);
  return rc ? 1 : 0;
}

void mach_shape_str(char *buf, size_t cap, int rank, const long *shape) {
  size_t n = 0;
  n += (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < rank && n < cap; i++)
    n += (size_t)snprintf(buf + n, cap - n, "%s%ld", i ? ", " : "", shape[i]);
  if (n < cap)
    snprintf(buf + n, cap - n, "]");
}

double mach_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Removes `path.tmp.PID` files whose process is gone: what a run killed
 * while writing left behind (SIGKILL, power loss), so they do not pile up.
 * A live process's temporary (another run writing the same file) is kept. */
static void sweep_stale(const char *path) {
  const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
  char dir[PATH_MAX], full[PATH_MAX];
  size_t blen = strlen(base);
  DIR *d;
  struct dirent *ent;
  if (slash && (size_t)(slash - path) + 1 >= sizeof dir)
    return;
  snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) + 1 : 2, slash ? path : "./");
  if (!(d = opendir(dir)))
    return;
  while ((ent = readdir(d))) {
    const char *n = ent->d_name, *digits = n + blen + 5;
    char *end;
    long pid;
    if (strncmp(n, base, blen) != 0 || strncmp(n + blen, ".tmp.", 5) != 0 || !*digits)
      continue;
    pid = strtol(digits, &end, 10);
    if (*end || pid <= 0 || pid == (long)getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH)
      continue;
    if ((size_t)snprintf(full, sizeof full, "%s%s", dir, n) < sizeof full)
      remove(full);
  }
  closedir(d);
}

int mach_out_open(const struct mach_ctx *c, const char *path, struct mach_out *o) {
  size_t n;
  o->path = path;
  o->tmp = NULL;
  if (strcmp(path, "-") == 0) {
    o->f = stdout;
    return 0;
  }
  sweep_stale(path);
  /* Same directory as the target, so rename() cannot cross file systems. */
  n = strlen(path) + 32;
  o->tmp = malloc(n);
  if (!o->tmp) {
    mach_err(c, "out of memory");
    return 1;
  }
  snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
  o->f = fopen(o->tmp, "wb");
  if (!o->f) {
    mach_err(c, "%s: cannot write: %s", path, strerror(errno));
    free(o->tmp);
    o->tmp = NULL;
    return 1;
  }
  return 0;
}

void mach_out_abort(struct mach_out *o) {
  if (o->tmp) {
    if (o->f)
      fclose(o->f);
    remove(o->tmp);
    free(o->tmp);
    o->tmp = NULL;
  }
  o->f = NULL;
}

int mach_out_close(const struct mach_ctx *c, struct mach_out *o) {
  int err = 0;
  if (!o->tmp) { /* stdout */
    if (fflush(o->f) != 0 || ferror(o->f)) {
      mach_err(c, "<stdout>: cannot write: %s", strerror(errno));
      return 1;
    }
    return 0;
  }
  if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0)
    err = errno ? errno : EIO;
  if (fclose(o->f) != 0 && !err)
    err = errno;
  o->f = NULL;
  if (!err && rename(o->tmp, o->path) != 0)
    err = errno;
  if (err) {
    mach_err(c, "%s: cannot write: %s", o->path, strerror(err));
    mach_out_abort(o);
    return 1;
  }
  free(o->tmp);
  o->tmp = NULL;
  return 0;
}
