/* e2e_util.c — see e2e_util.h. */
#include "e2e_util.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- small strings ---------------------------------------------------------- */

char *e2e_fmt(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  cr_assert(n >= 0, "vasprintf failed");
  return s;
}

char *e2e_path(const char *dir, const char *name) { return e2e_fmt("%s/%s", dir, name); }

/* ---- arrays ----------------------------------------------------------------- */

E2eArr e2e_arr(int ndim, const long *shape) {
  E2eArr a = {.ndim = ndim, .n = 1};
  cr_assert(ndim >= 0 && ndim <= E2E_MAX_NDIM);
  for (int i = 0; i < ndim; i++) {
    a.shape[i] = shape[i];
    a.n *= shape[i];
  }
  a.d = calloc((size_t)(a.n ? a.n : 1), sizeof(double));
  cr_assert(a.d);
  return a;
}

E2eArr e2e_arr2(long rows, long cols) { return e2e_arr(2, (long[]){rows, cols}); }

void e2e_arr_free(E2eArr *a) {
  free(a->d);
  a->d = NULL;
}

static void put_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++)
    v |= (uint64_t)p[i] << (8 * i);
  return v;
}

void e2e_npy_write(const char *path, const E2eArr *a, bool f32) {
  char dict[256];
  int dl = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (",
                    f32 ? "<f4" : "<f8");
  for (int i = 0; i < a->ndim; i++)
    dl += snprintf(dict + dl, sizeof dict - (size_t)dl, "%ld,%s", a->shape[i],
                   i + 1 < a->ndim ? " " : "");
  if (a->ndim > 1) /* numpy writes (3,) but (3, 4) */
    dl--;
  dl += snprintf(dict + dl, sizeof dict - (size_t)dl, "), }");
  /* magic (6) + version (2) + header length (2) + dict + padding + '\n' = 64k */
  int total = 10 + dl + 1;
  int pad = (64 - total % 64) % 64;
  int hlen = dl + pad + 1;
  size_t esz = f32 ? 4 : 8;
  size_t size = 10 + (size_t)hlen + esz * (size_t)a->n;
  unsigned char *buf = malloc(size);
  cr_assert(buf);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  put_le(buf + 8, (uint64_t)hlen, 2);
  memcpy(buf + 10, dict, (size_t)dl);
  memset(buf + 10 + dl, ' ', (size_t)pad);
  buf[10 + hlen - 1] = '\n';
  unsigned char *p = buf + 10 + hlen;
  for (long i = 0; i < a->n; i++) {
    if (f32) {
      float f = (float)a->d[i];
      uint32_t u;
      memcpy(&u, &f, 4);
      put_le(p + 4 * i, u, 4);
    } else {
      uint64_t u;
      memcpy(&u, &a->d[i], 8);
      put_le(p + 8 * i, u, 8);
    }
  }
  e2e_write_file(path, buf, size);
  free(buf);
}

/* Finds 'key': in the header dict and returns a pointer just after the colon. */
static const char *dict_value(const char *h, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "'%s':", key);
  const char *s = strstr(h, pat);
  if (!s)
    return NULL;
  s += strlen(pat);
  while (*s == ' ')
    s++;
  return s;
}

bool e2e_npy_parse(const unsigned char *p, size_t len, E2eArr *out, const char **why) {
  *why = NULL;
  if (len < 10 || memcmp(p, "\x93NUMPY", 6) != 0)
    return *why = "bad magic", false;
  int major = p[6];
  size_t hlen, off;
  if (major == 1) {
    hlen = get_le(p + 8, 2);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (len < 12)
      return *why = "truncated", false;
    hlen = get_le(p + 8, 4);
    off = 12;
  } else {
    return *why = "unknown version", false;
  }
  if (off + hlen > len)
    return *why = "truncated header", false;
  char *h = strndup((const char *)p + off, hlen);
  const char *descr = dict_value(h, "descr");
  const char *fo = dict_value(h, "fortran_order");
  const char *sh = dict_value(h, "shape");
  int esz = 0;
  char kind = 0;
  if (!descr || !fo || !sh) {
    free(h);
    return *why = "header lacks a key", false;
  }
  if (strncmp(descr, "'<f8'", 5) == 0)
    esz = 8, kind = 'f';
  else if (strncmp(descr, "'<f4'", 5) == 0)
    esz = 4, kind = 'f';
  else if (strncmp(descr, "'<i8'", 5) == 0)
    esz = 8, kind = 'i';
  else if (strncmp(descr, "'<i4'", 5) == 0)
    esz = 4, kind = 'i';
  if (!esz || strncmp(fo, "False", 5) != 0 || *sh != '(') {
    free(h);
    return *why = "unsupported dtype or order", false;
  }
  E2eArr a = {.n = 1};
  const char *s = sh + 1;
  while (*s && *s != ')') {
    while (*s == ' ' || *s == ',')
      s++;
    if (*s == ')')
      break;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0 || a.ndim == E2E_MAX_NDIM) {
      free(h);
      return *why = "bad shape", false;
    }
    a.shape[a.ndim++] = v;
    a.n *= v;
    s = end;
    if (*s == 'L')
      s++;
  }
  free(h);
  off += hlen;
  if ((len - off) != (size_t)a.n * (size_t)esz)
    return *why = "data size does not match the shape", false;
  a.d = calloc((size_t)(a.n ? a.n : 1), sizeof(double));
  for (long i = 0; i < a.n; i++) {
    uint64_t u = get_le(p + off + (size_t)i * (size_t)esz, esz);
    if (kind == 'f' && esz == 8) {
      memcpy(&a.d[i], &u, 8);
    } else if (kind == 'f') {
      uint32_t u32 = (uint32_t)u;
      float f;
      memcpy(&f, &u32, 4);
      a.d[i] = f;
    } else if (esz == 8) {
      a.d[i] = (double)(int64_t)u;
    } else {
      a.d[i] = (double)(int32_t)(uint32_t)u;
    }
  }
  *out = a;
  return true;
}

E2eArr e2e_npy_read(const char *path) {
  size_t len;
  unsigned char *p = (unsigned char *)e2e_read_file(path, &len);
  cr_assert(p, "cannot read %s", path);
  E2eArr a;
  const char *why;
  bool ok = e2e_npy_parse(p, len, &a, &why);
  free(p);
  cr_assert(ok, "%s: not a valid .npy: %s", path, why);
  return a;
}

/* CRC-32 (IEEE, reflected), bit by bit: slow and independent. */
static uint32_t crc32_bitwise(const unsigned char *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1u)));
  }
  return ~c;
}

E2eNpz e2e_npz_read(const char *path) {
  size_t len;
  unsigned char *p = (unsigned char *)e2e_read_file(path, &len);
  cr_assert(p, "cannot read %s", path);
  cr_assert(len >= 22, "%s: too short for a zip", path);
  /* end of central directory: the last PK\5\6 */
  long eocd = -1;
  for (long i = (long)len - 22; i >= 0 && i >= (long)len - 22 - 65535; i--)
    if (get_le(p + i, 4) == 0x06054b50u) {
      eocd = i;
      break;
    }
  cr_assert(eocd >= 0, "%s: no end of central directory", path);
  uint64_t nent = get_le(p + eocd + 10, 2);
  uint64_t cd_off = get_le(p + eocd + 16, 4);
  if (cd_off == 0xffffffffu || nent == 0xffffu) { /* zip64: locator before eocd */
    cr_assert(eocd >= 20 && get_le(p + eocd - 20, 4) == 0x07064b50u, "%s: bad zip64", path);
    uint64_t e64 = get_le(p + eocd - 20 + 8, 8);
    cr_assert(e64 + 56 <= len && get_le(p + e64, 4) == 0x06064b50u, "%s: bad zip64 eocd", path);
    nent = get_le(p + e64 + 32, 8);
    cd_off = get_le(p + e64 + 48, 8);
  }
  E2eNpz z = {0};
  z.names = calloc(nent + 1, sizeof(char *));
  z.arrs = calloc(nent + 1, sizeof(E2eArr));
  size_t q = cd_off;
  for (uint64_t k = 0; k < nent; k++) {
    cr_assert(q + 46 <= len && get_le(p + q, 4) == 0x02014b50u, "%s: bad central header %d",
              path, (int)k);
    int method = (int)get_le(p + q + 10, 2);
    uint32_t crc = (uint32_t)get_le(p + q + 16, 4);
    uint64_t csize = get_le(p + q + 20, 4), usize = get_le(p + q + 24, 4);
    int nlen = (int)get_le(p + q + 28, 2), xlen = (int)get_le(p + q + 30, 2),
        clen = (int)get_le(p + q + 32, 2);
    uint64_t loff = get_le(p + q + 42, 4);
    const unsigned char *x = p + q + 46 + nlen, *xend = x + xlen;
    while (x + 4 <= xend) { /* zip64 extra field */
      int id = (int)get_le(x, 2), sz = (int)get_le(x + 2, 2);
      if (id == 1) {
        const unsigned char *f = x + 4;
        if (usize == 0xffffffffu)
          usize = get_le(f, 8), f += 8;
        if (csize == 0xffffffffu)
          csize = get_le(f, 8), f += 8;
        if (loff == 0xffffffffu)
          loff = get_le(f, 8);
      }
      x += 4 + sz;
    }
    cr_assert_eq(method, 0, "%s: member %d is compressed (method %d)", path, (int)k, method);
    cr_assert_eq(csize, usize);
    char *name = strndup((const char *)p + q + 46, (size_t)nlen);
    size_t nl = strlen(name);
    cr_assert(nl > 4 && strcmp(name + nl - 4, ".npy") == 0, "%s: member '%s' is not .npy",
              path, name);
    name[nl - 4] = '\0';
    cr_assert(loff + 30 <= len && get_le(p + loff, 4) == 0x04034b50u, "%s: bad local header",
              path);
    size_t data = loff + 30 + get_le(p + loff + 26, 2) + get_le(p + loff + 28, 2);
    cr_assert(data + csize <= len, "%s: member '%s' truncated", path, name);
    cr_assert_eq(crc32_bitwise(p + data, csize), crc, "%s: CRC mismatch in '%s'", path, name);
    const char *why;
    cr_assert(e2e_npy_parse(p + data, csize, &z.arrs[z.n], &why), "%s: member '%s': %s", path,
              name, why);
    z.names[z.n++] = name;
    q += 46 + (size_t)nlen + (size_t)xlen + (size_t)clen;
  }
  free(p);
  return z;
}

void e2e_npz_write(const char *path, int n, const char *const *names, const E2eArr *arrs) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s: %s", path, strerror(errno));
  unsigned char *central = NULL;
  size_t clen = 0;
  uint64_t off = 0;
  char *tmp = e2e_fmt("%s.member.npy", path);
  for (int k = 0; k < n; k++) {
    e2e_npy_write(tmp, &arrs[k], false);
    size_t dlen;
    unsigned char *data = (unsigned char *)e2e_read_file(tmp, &dlen);
    cr_assert(data);
    char *name = e2e_fmt("%s.npy", names[k]);
    size_t nlen = strlen(name);
    uint32_t crc = crc32_bitwise(data, dlen);
    unsigned char h[30];
    put_le(h, 0x04034b50u, 4);
    put_le(h + 4, 20, 2);      /* version needed */
    put_le(h + 6, 0, 2);       /* flags */
    put_le(h + 8, 0, 2);       /* stored */
    put_le(h + 10, 0, 2);      /* time */
    put_le(h + 12, 0x21, 2);   /* date: 1980-01-01 */
    put_le(h + 14, crc, 4);
    put_le(h + 18, dlen, 4);
    put_le(h + 22, dlen, 4);
    put_le(h + 26, nlen, 2);
    put_le(h + 28, 0, 2);
    cr_assert(fwrite(h, 1, 30, f) == 30 && fwrite(name, 1, nlen, f) == nlen &&
              fwrite(data, 1, dlen, f) == dlen);
    central = realloc(central, clen + 46 + nlen);
    unsigned char *c = central + clen;
    memset(c, 0, 46);
    put_le(c, 0x02014b50u, 4);
    put_le(c + 4, 20, 2);
    put_le(c + 6, 20, 2);
    put_le(c + 12, 0, 2);
    put_le(c + 14, 0x21, 2);
    put_le(c + 16, crc, 4);
    put_le(c + 20, dlen, 4);
    put_le(c + 24, dlen, 4);
    put_le(c + 28, nlen, 2);
    put_le(c + 42, off, 4);
    memcpy(c + 46, name, nlen);
    clen += 46 + nlen;
    off += 30 + nlen + dlen;
    free(name);
    free(data);
  }
  unlink(tmp);
  free(tmp);
  unsigned char e[22] = {0};
  put_le(e, 0x06054b50u, 4);
  put_le(e + 8, (uint64_t)n, 2);
  put_le(e + 10, (uint64_t)n, 2);
  put_le(e + 12, clen, 4);
  put_le(e + 16, off, 4);
  cr_assert(fwrite(central, 1, clen, f) == clen && fwrite(e, 1, 22, f) == 22);
  cr_assert_eq(fclose(f), 0);
  free(central);
}

const E2eArr *e2e_npz_find(const E2eNpz *z, const char *name) {
  for (int i = 0; i < z->n; i++)
    if (strcmp(z->names[i], name) == 0)
      return &z->arrs[i];
  return NULL;
}

const E2eArr *e2e_npz_get(const E2eNpz *z, const char *name) {
  const E2eArr *a = e2e_npz_find(z, name);
  if (!a) {
    char list[2048] = "";
    for (int i = 0; i < z->n; i++)
      snprintf(list + strlen(list), sizeof list - strlen(list), " %s", z->names[i]);
    cr_assert_fail("npz has no entry '%s'; it has:%s", name, list);
  }
  return a;
}

void e2e_npz_free(E2eNpz *z) {
  for (int i = 0; i < z->n; i++) {
    free(z->names[i]);
    e2e_arr_free(&z->arrs[i]);
  }
  free(z->names);
  free(z->arrs);
  *z = (E2eNpz){0};
}

/* ---- random ----------------------------------------------------------------- */

double e2e_uniform(E2eRng *r, double lo, double hi) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return lo + (hi - lo) * ((double)(z >> 11) / 9007199254740992.0);
}

void e2e_fill_uniform(E2eRng *r, E2eArr *a, double lo, double hi) {
  for (long i = 0; i < a->n; i++)
    a->d[i] = e2e_uniform(r, lo, hi);
}

double e2e_reldiff(double a, double b, double floor) {
  double den = fabs(a) + fabs(b);
  if (den < floor)
    den = floor;
  return fabs(a - b) / den;
}

/* ---- files and directories -------------------------------------------------- */

void e2e_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "cannot write %s: %s", path, strerror(errno));
  cr_assert_eq(fwrite(data, 1, len, f), len, "short write to %s", path);
  cr_assert_eq(fclose(f), 0);
}

void e2e_write_text(const char *path, const char *text) { e2e_write_file(path, text, strlen(text)); }

char *e2e_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap + 1);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      cap *= 2;
      buf = realloc(buf, cap + 1);
    }
  }
  fclose(f);
  buf[n] = '\0';
  if (len)
    *len = n;
  return buf;
}

static bool has_file(const char *dir, const char *rel) {
  char *p = e2e_path(dir, rel);
  bool ok = access(p, F_OK) == 0;
  free(p);
  return ok;
}

const char *e2e_machc(void) {
  static char path[PATH_MAX];
  if (path[0])
    return path;
  const char *env = getenv("MACHC");
  if (env && *env) {
    if (!realpath(env, path))
      snprintf(path, sizeof path, "%s", env);
  } else {
    char cwd[PATH_MAX - 16];
    cr_assert(getcwd(cwd, sizeof cwd));
    snprintf(path, sizeof path, "%s/bin/machc", cwd);
  }
  return path;
}

const char *e2e_root(void) {
  static char root[PATH_MAX];
  if (root[0])
    return root;
  /* machc lives in <root>/bin or <root>/build/san/bin: walk up to the
   * directory holding compiler/machc.h */
  snprintf(root, sizeof root, "%s", e2e_machc());
  for (int up = 0; up < 6; up++) {
    char *slash = strrchr(root, '/');
    if (!slash || slash == root)
      break;
    *slash = '\0';
    if (has_file(root, "compiler/machc.h") && has_file(root, "runtime/machrt.h"))
      return root;
  }
  char cwd[PATH_MAX];
  cr_assert(getcwd(cwd, sizeof cwd));
  snprintf(root, sizeof root, "%s", cwd);
  cr_assert(has_file(root, "runtime/machrt.h"), "cannot find the repository root");
  return root;
}

static const char *tmp_base(void) {
  static char base[PATH_MAX];
  if (!base[0]) {
    const char *env = getenv("MACHC_TEST_TMP");
    snprintf(base, sizeof base, "%s", env && *env ? env : "/tmp/machc-tests");
    /* mkdir -p */
    for (char *s = base + 1; *s; s++)
      if (*s == '/') {
        *s = '\0';
        mkdir(base, 0777);
        *s = '/';
      }
    mkdir(base, 0777);
  }
  return base;
}

static char *tmpdirs[256];
static int ntmpdirs;

const char *e2e_tmpdir(void) {
  char *t = e2e_fmt("%s/e2e.%d.XXXXXX", tmp_base(), (int)getpid());
  cr_assert(mkdtemp(t), "mkdtemp %s: %s", t, strerror(errno));
  if (ntmpdirs < 256)
    tmpdirs[ntmpdirs++] = t;
  return t;
}

static void rmtree(const char *path) {
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      char *p = e2e_path(path, e->d_name);
      struct stat st;
      if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
        rmtree(p);
      else
        unlink(p);
      free(p);
    }
    closedir(d);
  }
  rmdir(path);
}

void e2e_cleanup(void) {
  if (getenv("E2E_KEEP"))
    return;
  for (int i = 0; i < ntmpdirs; i++)
    rmtree(tmpdirs[i]);
  ntmpdirs = 0;
}

/* ---- running commands -------------------------------------------------------- */

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

E2eRun e2e_run(const char *cwd, double timeout, const char *const *argv) {
  E2eRun r = {.status = -1};
  /* output goes to unlinked temporary files: no pipe can fill up */
  char outp[] = "/tmp/e2e-out.XXXXXX", errp[] = "/tmp/e2e-err.XXXXXX";
  int fo = mkstemp(outp), fe = mkstemp(errp);
  cr_assert(fo >= 0 && fe >= 0, "mkstemp: %s", strerror(errno));
  unlink(outp);
  unlink(errp);
  double t0 = now();
  pid_t pid = fork();
  cr_assert(pid >= 0, "fork: %s", strerror(errno));
  if (pid == 0) {
    setpgid(0, 0);
    int fin = open("/dev/null", O_RDONLY);
    if (fin >= 0)
      dup2(fin, 0);
    dup2(fo, 1);
    dup2(fe, 2);
    if (cwd && chdir(cwd) != 0) {
      fprintf(stderr, "e2e_run: cannot chdir to %s: %s\n", cwd, strerror(errno));
      _exit(126);
    }
    execvp(argv[0], (char *const *)argv);
    fprintf(stderr, "e2e_run: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  int st = 0;
  struct rusage ru = {0};
  for (;;) {
    pid_t w = wait4(pid, &st, WNOHANG, &ru);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR)
      cr_assert_fail("waitpid: %s", strerror(errno));
    if (now() - t0 > timeout) {
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      wait4(pid, &st, 0, &ru);
      r.timed_out = true;
      break;
    }
    struct timespec ts = {0, 2000000}; /* 2 ms */
    nanosleep(&ts, NULL);
  }
  r.seconds = now() - t0;
  r.cpu_seconds = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                  1e-6 * (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  if (!r.timed_out) {
    if (WIFEXITED(st))
      r.status = WEXITSTATUS(st);
    else if (WIFSIGNALED(st))
      r.sig = WTERMSIG(st);
  }
  char **dst[2] = {&r.out, &r.err};
  int fds[2] = {fo, fe};
  for (int k = 0; k < 2; k++) {
    off_t n = lseek(fds[k], 0, SEEK_END);
    lseek(fds[k], 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ssize_t got = 0;
    while (got < n) {
      ssize_t g = read(fds[k], buf + got, (size_t)(n - got));
      if (g <= 0)
        break;
      got += g;
    }
    buf[got] = '\0';
    *dst[k] = buf;
    close(fds[k]);
  }
  return r;
}

E2eRun e2e_runl(const char *cwd, double timeout, const char *arg0, ...) {
  const char *argv[128];
  int n = 0;
  argv[n++] = arg0;
  va_list ap;
  va_start(ap, arg0);
  const char *s;
  while ((s = va_arg(ap, const char *)) && n < 127)
    argv[n++] = s;
  va_end(ap);
  argv[n] = NULL;
  return e2e_run(cwd, timeout, argv);
}

void e2e_run_free(E2eRun *r) {
  free(r->out);
  free(r->err);
  r->out = r->err = NULL;
}

void e2e_check_ok(const E2eRun *r, const char *what) {
  cr_assert(!r->timed_out, "%s: timed out after %.1f s", what, r->seconds);
  cr_assert(r->sig == 0, "%s: killed by signal %d\nstderr:\n%s", what, r->sig, r->err);
  cr_assert_eq(r->status, 0, "%s: exit status %d\nstderr:\n%s", what, r->status, r->err);
}

/* ---- compiling ----------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = data;
  for (size_t i = 0; i < n; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static uint64_t stamp(uint64_t h, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0) {
    h = fnv(h, &st.st_mtim, sizeof st.st_mtim);
    h = fnv(h, &st.st_size, sizeof st.st_size);
  }
  return fnv(h, path, strlen(path));
}

/* The cache directory for a build of src in mode `kind`. */
static char *cache_key(const char *src, const char *kind) {
  uint64_t h = 0xcbf29ce484222325ull;
  h = fnv(h, src, strlen(src));
  h = fnv(h, kind, strlen(kind) + 1);
  h = stamp(h, e2e_machc());
  const char *root = e2e_root();
  const char *deps[] = {"runtime/machrt.h", "build/lib/libmachrt_f64.a",
                        "build/lib/libmachrt_f32.a", "build/san/lib/libmachrt_f64.a",
                        "build/san/lib/libmachrt_f32.a", "stdlib/dense.mach"};
  for (size_t i = 0; i < sizeof deps / sizeof *deps; i++) {
    char *p = e2e_path(root, deps[i]);
    h = stamp(h, p);
    free(p);
  }
  char *cache = e2e_fmt("%s/cache", tmp_base());
  mkdir(cache, 0777);
  char *dir = e2e_fmt("%s/%016llx", cache, (unsigned long long)h);
  free(cache);
  return dir;
}

/* Builds into a private directory, then renames it into the cache; a racing
 * process that lost keeps using the winner's. */
static const char *cached_build(const char *src, const char *kind, const char *product,
                                void (*build)(const char *dir, const char *src, const char *kind)) {
  char *dir = cache_key(src, kind);
  char *out = e2e_path(dir, product);
  if (access(out, F_OK) == 0)
    return out;
  char *tmp = e2e_fmt("%s.tmp.XXXXXX", dir);
  cr_assert(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
  build(tmp, src, kind);
  if (rename(tmp, dir) != 0)
    rmtree(tmp);
  cr_assert(access(out, F_OK) == 0, "build of %s failed", out);
  return out;
}

/* A build's kind is "WHAT" or "WHAT FLAG": FLAG, one more machc argument
 * (NULL without; passed last to e2e_runl, where a NULL ends the list). */
static const char *kind_flag(const char *kind) {
  const char *sp = strchr(kind, ' ');
  return sp ? sp + 1 : NULL;
}

static void build_bin(const char *dir, const char *src, const char *kind) {
  char *mach = e2e_path(dir, "model.mach");
  e2e_write_text(mach, src);
  char *dtype = e2e_fmt("%.*s", (int)strcspn(kind, " "), kind);
  /* -O1: the tests check results, not speed, and build many binaries */
  setenv("MACHC_CFLAGS", "-O1", 1);
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "model.mach", "-o", "model", "--dtype", dtype,
                      kind_flag(kind), NULL);
  e2e_check_ok(&r, e2e_fmt("machc --dtype %s %s on\n%s\n", dtype, kind_flag(kind) ? kind_flag(kind) : "", src));
  e2e_run_free(&r);
  free(dtype);
}

const char *e2e_compile(const char *src, const char *dtype) { return e2e_compile_with(src, dtype, NULL); }

const char *e2e_compile_with(const char *src, const char *dtype, const char *flag) {
  char *kind = flag ? e2e_fmt("%s %s", dtype, flag) : e2e_fmt("%s", dtype);
  const char *bin = cached_build(src, kind, "model", build_bin);
  free(kind);
  return bin;
}

static void build_so(const char *dir, const char *src, const char *kind) {
  char *mach = e2e_path(dir, "model.mach");
  e2e_write_text(mach, src);
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "-S", "model.mach", "-o", "model.c", "--dtype", "f64",
                      kind_flag(kind), NULL);
  e2e_check_ok(&r, e2e_fmt("machc -S on\n%s\n", src));
  e2e_run_free(&r);
  char *inc = e2e_fmt("-I%s/runtime", e2e_root());
  /* under SANITIZE=1 the generated code is checked too (a write past a
   * scratch buffer would otherwise pass unseen) */
  const char *san = getenv("MACHC_TEST_SO_SANITIZE");
  r = e2e_runl(dir, 60, "cc", "-O2", "-fPIC", "-shared", "-DMACH_NO_MAIN", inc, "model.c", "-o",
               "model.so", "-lm", san && *san ? san : "-O2", NULL);
  e2e_check_ok(&r, "cc -shared on the generated model.c");
  e2e_run_free(&r);
}

E2eModel e2e_load_model(const char *src, const char *prefix) { return e2e_load_model_with(src, prefix, NULL); }

E2eModel e2e_load_model_with(const char *src, const char *prefix, const char *flag) {
  char *kind = flag ? e2e_fmt("so %s", flag) : e2e_fmt("so");
  const char *so = cached_build(src, kind, "model.so", build_so);
  free(kind);
  E2eModel m = {0};
  m.so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
  cr_assert(m.so, "dlopen %s: %s", so, dlerror());
  char *sym = e2e_fmt("%s_model", prefix);
  m.m = dlsym(m.so, sym);
  cr_assert(m.m, "%s: no symbol %s", so, sym);
  free(sym);
  sym = e2e_fmt("%s_dual", prefix);
  *(void **)&m.dual = dlsym(m.so, sym);
  cr_assert(m.dual, "%s: no symbol %s", so, sym);
  free(sym);
  cr_assert_str_eq(m.m->dtype, "f64");
  cr_assert(m.m->forward && m.m->backward);
  char *c = e2e_fmt("%.*s/model.c", (int)(strrchr(so, '/') - so), so);
  m.c_path = c;
  return m;
}

int e2e_model_block(const struct mach_model *m, const char *name) {
  for (int i = 0; i < m->n_blocks; i++)
    if (strcmp(m->blocks[i].name, name) == 0)
      return i;
  cr_assert_fail("model %s has no block '%s'", m->name, name);
  return -1;
}

int e2e_model_param(const struct mach_model *m, const char *name) {
  for (int i = 0; i < m->n_params; i++)
    if (strcmp(m->params[i].name, name) == 0)
      return i;
  cr_assert_fail("model %s has no parameter '%s'", m->name, name);
  return -1;
}

/* ---- reference activations ------------------------------------------------------ */

static bool is(const char *act, const char *name) { return act && strcmp(act, name) == 0; }

double e2e_act(const char *act, double alpha, double y) {
  if (!act || is(act, "identity"))
    return y;
  if (is(act, "tanh"))
    return tanh(y);
  if (is(act, "sigmoid"))
    return 1.0 / (1.0 + exp(-y));
  if (is(act, "relu"))
    return y > 0 ? y : 0.0;
  if (is(act, "leaky_relu"))
    return y > 0 ? y : alpha * y;
  if (is(act, "gelu"))
    return 0.5 * y * (1.0 + erf(y / sqrt(2.0)));
  if (is(act, "softplus"))
    return y > 0 ? y + log1p(exp(-y)) : log1p(exp(y));
  if (is(act, "sin"))
    return sin(y);
  cr_assert_fail("unknown activation %s", act);
  return 0;
}

double e2e_dact(const char *act, double alpha, double y) {
  if (!act || is(act, "identity"))
    return 1.0;
  if (is(act, "tanh"))
    return 1.0 / (cosh(y) * cosh(y));
  if (is(act, "sigmoid"))
    return exp(-y) / ((1.0 + exp(-y)) * (1.0 + exp(-y)));
  if (is(act, "relu"))
    return y > 0 ? 1.0 : 0.0;
  if (is(act, "leaky_relu"))
    return y > 0 ? 1.0 : alpha;
  if (is(act, "gelu")) /* Phi(y) + y phi(y) */
    return 0.5 * (1.0 + erf(y / sqrt(2.0))) + y * exp(-0.5 * y * y) / sqrt(2.0 * M_PI);
  if (is(act, "softplus"))
    return 1.0 / (1.0 + exp(-y));
  if (is(act, "sin"))
    return cos(y);
  cr_assert_fail("unknown activation %s", act);
  return 0;
}

int e2e_spec_block(const E2eSpec *s, const char *name) {
  for (int i = 0; i < s->nblocks; i++)
    if (strcmp(s->blocks[i].name, name) == 0)
      return i;
  cr_assert_fail("spec has no block '%s'", name);
  return -1;
}

E2eReady e2e_ready_new(const double *dparams, long n) {
  E2eReady r = {dparams, n, calloc((size_t)n + 1, sizeof(double)), calloc((size_t)n + 1, 1)};
  cr_assert(r.snap && r.seen);
  return r;
}

void e2e_ready(void *ctx, long lo, long hi) {
  E2eReady *r = ctx;
  cr_assert(0 <= lo && lo < hi && hi <= r->n, "ready(%ld, %ld) outside [0, %ld)", lo, hi, r->n);
  for (long i = lo; i < hi; i++) {
    cr_assert(!r->seen[i], "dparams[%ld] reported twice", i);
    r->seen[i] = 1;
    r->snap[i] = r->dparams[i];
  }
}

void e2e_ready_check(E2eReady *r) {
  for (long i = 0; i < r->n; i++) {
    cr_assert(r->seen[i], "dparams[%ld] never reported final", i);
    cr_assert(memcmp(&r->snap[i], &r->dparams[i], sizeof(double)) == 0,
              "dparams[%ld] changed after it was reported final: %.17g then %.17g", i, r->snap[i],
              r->dparams[i]);
  }
  free(r->snap);
  free(r->seen);
}

bool e2e_param_read(const struct mach_model *m, long i) {
  for (int k = 0; k < m->n_params; k++) {
    const struct mach_param *p = &m->params[k];
    if (i < p->offset || i >= p->offset + p->size)
      continue;
    if (!p->live)
      return true;
    for (int r = 0; r < p->n_live; r++)
      if (i - p->offset >= p->live[2 * r] && i - p->offset < p->live[2 * r] + p->live[2 * r + 1])
        return true;
    return false;
  }
  return false;
}

static double *uniform_draws(E2eRng *rng, long n, double scale) {
  double *v = calloc((size_t)n + 1, sizeof *v);
  cr_assert(v);
  for (long i = 0; i < n; i++)
    v[i] = e2e_uniform(rng, -scale, scale);
  return v;
}

E2ePass e2e_pass_new(E2eModel mod, long batch, uint64_t seed, double wscale, double xscale) {
  E2ePass p = {.m = mod.m, .mod = mod, .batch = batch};
  E2eRng rng = {seed};
  cr_assert(p.m->n_inputs <= 8 && p.m->n_outputs <= 8);
  p.params = uniform_draws(&rng, p.m->param_size, wscale);
  for (int k = 0; k < p.m->n_inputs; k++)
    p.in[k] = uniform_draws(&rng, batch * p.m->blocks[p.m->inputs[k]].size, xscale);
  for (int k = 0; k < p.m->n_outputs; k++)
    p.cot[k] = uniform_draws(&rng, batch * p.m->blocks[p.m->outputs[k]].size, 1);
  p.dparams = calloc((size_t)p.m->param_size + 1, sizeof(double));
  p.state = calloc((size_t)(batch * p.m->state_size) + 1, sizeof(double));
  p.dstate = calloc((size_t)(batch * p.m->state_size) + 1, sizeof(double));
  return p;
}

void e2e_pass_free(E2ePass *p) {
  free(p->params);
  free(p->dparams);
  free(p->state);
  free(p->dstate);
  for (int k = 0; k < p->m->n_inputs; k++)
    free(p->in[k]);
  for (int k = 0; k < p->m->n_outputs; k++)
    free(p->cot[k]);
}

const double *e2e_pass_y(const E2ePass *p, const double *state, int b) {
  return state + p->batch * p->m->blocks[b].y_offset;
}

const double *e2e_pass_z(const E2ePass *p, const double *state, int b) {
  return state + p->batch * p->m->blocks[b].z_offset;
}

double e2e_pass_loss(E2ePass *p) {
  double l = 0;
  p->m->forward(p->params, (const double *const *)p->in, p->state, p->batch);
  for (int k = 0; k < p->m->n_outputs; k++) {
    int b = p->m->outputs[k];
    const double *z = e2e_pass_z(p, p->state, b);
    for (long i = 0; i < p->batch * p->m->blocks[b].size; i++)
      l += z[i] * p->cot[k][i];
  }
  return l;
}
