/* csv.c — small data as text: one sample per line, values flattened in C
 * order, separated by commas (blanks and tabs are accepted too, so
 * `seq 1 10 | ./model predict` works). Values are written with enough digits
 * to read back exactly: %.9g for f32, %.17g for f64. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int mach_is_csv(const char *path) {
  size_t n = strlen(path);
  return strcmp(path, "-") == 0 || (n >= 4 && strcmp(path + n - 4, ".csv") == 0);
}

static int is_sep(char ch) { return ch == ',' || ch == ' ' || ch == '\t' || ch == '\r'; }

/* Parses the fields of line [p, end) into out (when not NULL); returns the
 * field count or -1 with *bad pointing at the offending text. */
static long parse_line(const char *p, const char *end, double *out, const char **bad) {
  long n = 0;
  while (p < end) {
    char *stop;
    double v;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
      p++;
    if (p == end)
      break;
    errno = 0;
    v = strtod(p, &stop);
    if (stop == p || stop > end || (stop < end && !is_sep(*stop))) {
      *bad = p;
      return -1;
    }
    if (out)
      out[n] = v;
    n++;
    p = stop;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
      p++;
    if (p < end && *p == ',')
      p++;
  }
  return n;
}

static void report_bad(const struct mach_ctx *c, const char *path, long line,
                       const char *bad, const char *end) {
  int len = 0;
  while (bad + len < end && len < 20 && !is_sep(bad[len]))
    len++;
  mach_err(c, "%s: line %ld: '%.*s' is not a number", path, line, len, bad);
}

int mach_csv_read(const struct mach_ctx *c, const char *path, struct mach_array *a) {
  unsigned char *buf;
  size_t len;
  long rows = 0, cols = -1, line = 0, r = 0;
  const char *p, *end, *bad = NULL;
  const char *name = strcmp(path, "-") == 0 ? "<stdin>" : path;
  double *out;
  memset(a, 0, sizeof *a);
  if (mach_read_file(c, path, &buf, &len))
    return 1;
  /* Pass 1 counts and checks; pass 2 stores. The buffer gets a terminating
   * NUL so strtod never reads past it. */
  {
    unsigned char *nb = realloc(buf, len + 1);
    if (!nb) {
      free(buf);
      mach_err(c, "out of memory");
      return 1;
    }
    buf = nb;
    buf[len] = 0;
  }
  if (memchr(buf, 0, len)) {
    mach_err(c, "%s: not a text file (contains NUL bytes)", name);
    free(buf);
    return 1;
  }
  end = (const char *)buf + len;
  for (p = (const char *)buf; p < end; line++) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    long n = parse_line(p, le, NULL, &bad);
    if (n < 0) {
      report_bad(c, name, line + 1, bad, le);
      free(buf);
      return 1;
    }
    if (n > 0) {
      if (cols >= 0 && n != cols) {
        mach_err(c, "%s: line %ld has %ld values, line 1 has %ld", name, line + 1, n, cols);
        free(buf);
        return 1;
      }
      cols = n;
      rows++;
    }
    p = nl ? nl + 1 : end;
  }
  if (cols < 0)
    cols = 0;
  out = mach_alloc(c, (size_t)(rows * cols) + 1, sizeof *out);
  if (!out) {
    free(buf);
    return 1;
  }
  for (p = (const char *)buf; p < end && r < rows;) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    if (parse_line(p, le, out + r * cols, &bad) > 0)
      r++;
    p = nl ? nl + 1 : end;
  }
  free(buf);
  a->dtype = MACH_DT_F8;
  strcpy(a->descr, "<f8");
  a->rank = 2;
  a->shape[0] = rows;
  a->shape[1] = cols;
  a->count = rows * cols;
  a->owned = out;
  a->data = (const unsigned char *)out;
  return 0;
}

int mach_csv_write(FILE *f, long n, int parts, const long *sizes,
                   const mach_real *const *data) {
  const char *fmt = sizeof(mach_real) == 4 ? "%.9g" : "%.17g";
  for (long i = 0; i < n; i++) {
    int first = 1;
    for (int k = 0; k < parts; k++)
      for (long j = 0; j < sizes[k]; j++) {
        if (!first)
          fputc(',', f);
        fprintf(f, fmt, (double)data[k][i * sizes[k] + j]);
        first = 0;
      }
    if (fputc('\n', f) == EOF)
      return -1;
  }
  return ferror(f) ? -1 : 0;
}
