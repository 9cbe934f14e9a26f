/* util.c — one-line messages, checked allocation, whole-file reads and
 * atomic file writes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rt.h"

void mach_err(const struct mach_ctx *c, const char *fmt, ...) {
  char line[4096];
  int n;
  va_list ap;
  fflush(stdout); /* keep stdout and stderr in order when both are a terminal */
  /* one write per line: under mpirun the ranks' stderr is merged, and a
   * line written in pieces would interleave with another rank's */
  if (c->nranks > 1)
    n = snprintf(line, sizeof line, "%s (rank %d): ", c->prog, c->rank);
  else
    n = snprintf(line, sizeof line, "%s: ", c->prog);
  if (n < 0 || (size_t)n >= sizeof line - 1)
    n = 0;
  va_start(ap, fmt);
  vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
  va_end(ap);
  n = (int)strlen(line);
  line[n] = '\n';
  fwrite(line, 1, (size_t)n + 1, stderr);
}

/* A large buffer (a training set, a batch's state) asks for huge pages,
 * which Linux gives on request (transparent huge pages in "madvise" mode):
 * with 4 KB pages a 200 MB training set cost 50,000 page faults and a TLB
 * miss every few samples of each pass (the MLP's epoch: 1.3 s of CPU, 0.4
 * with them). calloc's large blocks are fresh mappings that nothing has
 * touched yet; the 2 MB-aligned part of the block is advised. */
enum { HUGE_PAGE = 2 << 20, HUGE_FROM = 8 << 20 };

static void want_huge_pages(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  uintptr_t lo = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
  uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(HUGE_PAGE - 1);
  if (bytes >= HUGE_FROM && hi > lo)
    (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* a hint: refused, nothing changes */
#else
  (void)p, (void)bytes;
#endif
}

void *mach_alloc(const struct mach_ctx *c, size_t count, size_t size) {
  void *p = NULL;
  if (count == 0 || size == 0)
    return calloc(1, 1);
  if (count <= SIZE_MAX / size)
    p = calloc(count, size);
  if (!p)
    mach_err(c, "out of memory (%zu x %zu bytes)", count, size);
  else
    want_huge_pages(p, count * size);
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

/* Opens a regular file for reading. The open does not block (O_NONBLOCK: a
 * FIFO with no writer would wait forever) and fstat then refuses FIFOs,
 * devices (/dev/zero never ends) and directories at once. */
static FILE *open_regular(const struct mach_ctx *c, const char *path) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  FILE *f;
  if (fd < 0) {
    mach_err(c, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    mach_err(c, "%s: cannot open: not a regular file (a directory, FIFO or device)", path);
    close(fd);
    return NULL;
  }
  if (!(f = fdopen(fd, "rb"))) {
    mach_err(c, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
  }
  return f;
}

int mach_read_file(const struct mach_ctx *c, const char *path,
                   unsigned char **buf, size_t *len) {
  int is_stdin = strcmp(path, "-") == 0;
  FILE *f = is_stdin ? stdin : open_regular(c, path);
  int rc;
  if (!f)
    return 1;
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

/* The first non-finite value of v[0..n), reported as sample i / size. */
static int first_nonfinite(const mach_real *v, long n, long *at) {
  for (long i = 0; i < n; i++)
    if (!isfinite((double)v[i])) {
      *at = i;
      return 1;
    }
  return 0;
}

int mach_check_finite_params(const struct mach_ctx *c, const char *path, const mach_real *p) {
  const struct mach_model *m = c->m;
  long at;
  for (int k = 0; k < m->n_params; k++)
    if (first_nonfinite(p + m->params[k].offset, m->params[k].size, &at)) {
      mach_err(c, "%s: parameter '%s' has a non-finite value (%g) at index %ld; "
                  "pass --allow-nonfinite to run with it anyway",
               path, m->params[k].name, (double)p[m->params[k].offset + at], at);
      return 1;
    }
  return 0;
}

int mach_check_finite_samples(const struct mach_ctx *c, const char *what, const char *block,
                              const mach_real *v, long first, long n, long size) {
  long at;
  if (!first_nonfinite(v, n * size, &at))
    return 0;
  mach_err(c, "%s: input '%s' has a non-finite value (%g) in sample %ld, element %ld; "
              "pass --allow-nonfinite to run with it anyway",
           what, block, (double)v[at], first + at / size, at % size);
  return 1;
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

/* ---- temporaries: removed on every failure path and on signals -------------
 *
 * Every temporary being written, and every finished one whose rename is
 * deferred, is listed here, so that SIGINT, SIGTERM, SIGHUP or SIGPIPE
 * remove them before the process dies (unlink is async-signal-safe). This is
 * the runtime's other piece of global state besides train.c's stop flag: a
 * signal handler has no other way to find the files. A command that handles
 * these signals itself (train: it checkpoints) keeps its handler; its
 * temporaries are still removed by mach_out_abort and by the sweep above. */
enum { MAX_TEMPS = 160 };
static char *volatile temps[MAX_TEMPS]; /* the temporary, or NULL */
static const char *finals[MAX_TEMPS];   /* deferred: where it goes, else NULL */
static int deferring;
static const int cleanup_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};

static void on_fatal_signal(int sig) {
  for (int i = 0; i < MAX_TEMPS; i++)
    if (temps[i])
      unlink(temps[i]);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void install_cleanup(void) {
  for (size_t i = 0; i < sizeof cleanup_signals / sizeof *cleanup_signals; i++) {
    struct sigaction old, sa;
    if (sigaction(cleanup_signals[i], NULL, &old) != 0 || old.sa_handler != SIG_DFL ||
        (old.sa_flags & SA_SIGINFO))
      continue; /* ignored, or a handler of the command's own */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal_signal;
    sigfillset(&sa.sa_mask);
    sigaction(cleanup_signals[i], &sa, NULL);
  }
}

static int temp_add(char *tmp) {
  for (int i = 0; i < MAX_TEMPS; i++)
    if (!temps[i]) {
      finals[i] = NULL;
      temps[i] = tmp;
      return 0;
    }
  return 1;
}

static void temp_drop(const char *tmp) {
  for (int i = 0; i < MAX_TEMPS; i++)
    if (temps[i] == tmp) {
      temps[i] = NULL;
      finals[i] = NULL;
    }
}

void mach_out_defer(void) { deferring = 1; }

int mach_out_finish(const struct mach_ctx *c, int rc) {
  deferring = 0;
  for (int i = 0; i < MAX_TEMPS; i++) {
    char *tmp = temps[i];
    if (!tmp || !finals[i])
      continue;
    if (!rc && rename(tmp, finals[i]) != 0) {
      mach_err(c, "%s: cannot write: %s", finals[i], strerror(errno));
      rc = 1;
    }
    if (rc)
      remove(tmp);
    temps[i] = NULL;
    finals[i] = NULL;
    free(tmp);
  }
  return rc;
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
  if (temp_add(o->tmp)) {
    mach_err(c, "%s: cannot write: more than %d files at once", path, MAX_TEMPS);
    free(o->tmp);
    o->tmp = NULL;
    return 1;
  }
  install_cleanup();
  o->f = fopen(o->tmp, "wb");
  if (!o->f) {
    mach_err(c, "%s: cannot write: %s", path, strerror(errno));
    temp_drop(o->tmp);
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
    temp_drop(o->tmp);
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
  if (!err && deferring) { /* renamed by mach_out_finish, with the others */
    for (int i = 0; i < MAX_TEMPS; i++)
      if (temps[i] == o->tmp)
        finals[i] = o->path;
    o->tmp = NULL;
    return 0;
  }
  if (!err && rename(o->tmp, o->path) != 0)
    err = errno;
  if (err) {
    mach_err(c, "%s: cannot write: %s", o->path, strerror(err));
    mach_out_abort(o);
    return 1;
  }
  temp_drop(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
  return 0;
}
