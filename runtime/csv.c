/* csv.c — small data as text: one sample per line, values flattened in C
 * order. By default fields are separated by commas, and blanks and tabs are
 * accepted too, so `seq 1 10 | ./model predict` works; `--sep C` makes one
 * character the only separator (';' as spreadsheets in many locales write).
 * A header line (column names) is detected: a first line that is not all
 * numbers followed by one that is; `--skip-header` skips the first line
 * whatever it holds. Values are written with enough digits to read back
 * exactly: %.9g for f32, %.17g for f64. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int mach_is_csv(const char *path) {
  static const char *const ext[] = {".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz"};
  size_t n = strlen(path);
  if (strcmp(path, "-") == 0)
    return 1;
  for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
    size_t e = strlen(ext[i]);
    if (n >= e && strcmp(path + n - e, ext[i]) == 0)
      return 1;
  }
  return 0;
}

static int is_blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r'; }

/* Where the field starting at p ends: at the separator (or, by default, at
 * a comma or a blank), or at the line's end. */
static const char *field_end(const char *p, const char *end, char sep) {
  while (p < end && (sep ? *p != sep : *p != ',' && !is_blank(*p)))
    p++;
  return p;
}

/* Steps over the blanks and the one separator after a field. */
static const char *next_field(const char *p, const char *end, char sep) {
  while (p < end && is_blank(*p) && *p != sep)
    p++;
  if (p < end && *p == (sep ? sep : ','))
    p++;
  return p;
}

/* Parses the fields of line [p, end) into out (when not NULL); returns the
 * field count or -1 with *bad pointing at the offending field. */
static long parse_line(const char *p, const char *end, char sep, double *out,
                       const char **bad) {
  long n = 0;
  while (p < end) {
    const char *fe;
    char *stop;
    double v;
    while (p < end && is_blank(*p) && *p != sep)
      p++;
    if (p == end && (!sep || n == 0))
      break;
    fe = field_end(p, end, sep);
    while (fe > p && is_blank(fe[-1]))
      fe--;
    errno = 0;
    v = strtod(p, &stop);
    if (stop == p || stop != fe) {
      *bad = p;
      return -1;
    }
    if (out)
      out[n] = v;
    n++;
    p = next_field(fe, end, sep);
    if (sep && p == end && end > fe && end[-1] == sep) { /* "1;2;" ends in an empty field */
      *bad = end;
      return -1;
    }
  }
  return n;
}

static void report_bad(const struct mach_ctx *c, const char *name, long line, const char *bad,
                       const char *end, char sep) {
  const char *fe = field_end(bad, end, sep);
  int len = (int)(fe - bad), shown = len > 60 ? 57 : len;
  const char *hint = "";
  while (len > 0 && is_blank(bad[len - 1]))
    shown = --len > 60 ? 57 : len;
  if (!sep && memchr(bad, ';', (size_t)len))
    hint = " (fields are separated by commas; for ';' use --sep ';')";
  else if (!sep && memchr(bad, '|', (size_t)len))
    hint = " (fields are separated by commas; for '|' use --sep '|')";
  if (len == 0)
    mach_err(c, "%s: line %ld: empty field, expected a number", name, line);
  else
    mach_err(c, "%s: line %ld: '%.*s%s' is not a number%s", name, line, shown, bad,
             shown < len ? "..." : "", hint);
}

/* The header's field names, in one allocation (the pointers, then the
 * text); quotes around a name are dropped. */
static char **header_names(const char *p, const char *end, char sep, long *n) {
  long cnt = 1;
  char **names, *text;
  if (!sep) /* the default: commas, or tabs in a file without any */
    sep = memchr(p, ',', (size_t)(end - p)) ? ',' : '\t';
  for (const char *q = p; q < end; q++)
    cnt += *q == sep;
  names = malloc((size_t)cnt * sizeof *names + (size_t)(end - p) + (size_t)cnt);
  if (!names)
    return NULL;
  text = (char *)(names + cnt);
  *n = 0;
  while (*n < cnt) {
    const char *fe = p;
    while (fe < end && *fe != sep)
      fe++;
    const char *s = p, *e = fe;
    while (s < e && (is_blank(*s) || *s == '"' || *s == '\''))
      s++;
    while (e > s && (is_blank(e[-1]) || e[-1] == '"' || e[-1] == '\''))
      e--;
    names[(*n)++] = text;
    memcpy(text, s, (size_t)(e - s));
    text += e - s;
    *text++ = 0;
    p = fe < end ? fe + 1 : end;
  }
  return names;
}

/* One text line: [p, le); next is where the following one starts. */
static const char *line_end(const char *p, const char *end, const char **next) {
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  *next = nl ? nl + 1 : end;
  return nl ? nl : end;
}

static int is_empty(const char *p, const char *le) {
  while (p < le && is_blank(*p))
    p++;
  return p == le;
}

/* Decides whether the first non-empty line is a header; sets *body to the
 * first data line. Returns 0 or 1 (message printed). */
static int find_header(const struct mach_ctx *c, const char *name, const char *p,
                       const char *end, const struct mach_csv_opts *o, const char **hstart,
                       const char **hend, const char **body) {
  const char *next, *le, *bad = NULL;
  long line = 1;
  *hstart = *hend = NULL;
  for (le = line_end(p, end, &next); p < end && is_empty(p, le); le = line_end(p, end, &next)) {
    p = next;
    line++;
  }
  *body = p;
  if (p >= end)
    return 0;
  if (!o->skip_header && parse_line(p, le, o->sep, NULL, &bad) >= 0)
    return 0;
  if (!o->skip_header) {
    /* not numbers: a header only if a numeric line follows */
    const char *q = next, *qn, *qe, *bad2 = NULL;
    for (qe = line_end(q, end, &qn); q < end && is_empty(q, qe); qe = line_end(q, end, &qn))
      q = qn;
    if (q >= end || parse_line(q, qe, o->sep, NULL, &bad2) < 0) {
      report_bad(c, name, line, bad, le, o->sep);
      return 1;
    }
  }
  *hstart = p;
  *hend = le;
  *body = next;
  return 0;
}

int mach_csv_parse(const struct mach_ctx *c, const char *name, const char *text, size_t len,
                   const struct mach_csv_opts *o, struct mach_array *a, char ***names,
                   long *n_names) {
  long rows = 0, cols = -1, line = 1, r = 0, first_line = 0;
  const char *p, *end = text + len, *bad = NULL, *body, *hs, *he, *next;
  double *out;
  memset(a, 0, sizeof *a);
  *names = NULL;
  *n_names = 0;
  if (memchr(text, 0, len)) {
    mach_err(c, "%s: not a text file (contains NUL bytes)", name);
    return 1;
  }
  if (find_header(c, name, text, end, o, &hs, &he, &body))
    return 1;
  for (p = text; p < body; p++)
    line += *p == '\n';
  /* Pass 1 counts and checks; pass 2 stores. The text ends in a NUL (the
   * caller's promise) so strtod never reads past it. */
  for (p = body; p < end; line++) {
    const char *le = line_end(p, end, &next);
    long n = is_empty(p, le) ? 0 : parse_line(p, le, o->sep, NULL, &bad);
    if (n < 0) {
      report_bad(c, name, line, bad, le, o->sep);
      return 1;
    }
    if (n > 0) {
      if (cols >= 0 && n != cols) {
        mach_err(c, "%s: line %ld has %ld values, line %ld has %ld", name, line, n, first_line,
                 cols);
        return 1;
      }
      if (cols < 0)
        first_line = line;
      cols = n;
      rows++;
    }
    p = next;
  }
  if (cols < 0)
    cols = 0;
  out = mach_alloc(c, (size_t)(rows * cols) + 1, sizeof *out);
  if (!out)
    return 1;
  for (p = body; p < end && r < rows; p = next) {
    const char *le = line_end(p, end, &next);
    if (!is_empty(p, le) && parse_line(p, le, o->sep, out + r * cols, &bad) > 0)
      r++;
  }
  if (hs && !(*names = header_names(hs, he, o->sep, n_names))) {
    free(out);
    mach_err(c, "out of memory");
    return 1;
  }
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

/* ---- column selection ------------------------------------------------------- */

/* One item of a column list: an index (negative counts from the end), a
 * range A:B (half-open, as Python slices; either end may be left out), or a
 * header name. Appends the columns to idx. */
/* Reads a whole integer; 0 when s is not one. */
static int whole_long(const char *s, long *v) {
  char *e;
  errno = 0;
  *v = strtol(s, &e, 10);
  return *s && !*e && !errno;
}

static int column_item(const struct mach_ctx *c, const char *name, const char *item, size_t len,
                       char *const *names, long n_names, long ncols, long *idx, long *n) {
  char buf[256], *colon;
  long lo = 0, hi = ncols;
  int ok;
  snprintf(buf, sizeof buf, "%.*s", (int)len, item);
  for (long k = 0; k < n_names; k++)
    if (strcmp(names[k], buf) == 0) {
      idx[(*n)++] = k;
      return 0;
    }
  colon = strchr(buf, ':');
  if (colon) {
    *colon = 0;
    ok = (!buf[0] || whole_long(buf, &lo)) && (!colon[1] || whole_long(colon + 1, &hi));
  } else {
    ok = whole_long(buf, &lo);
  }
  if (!ok) {
    mach_err(c, "%s: column '%.*s' is not %s", name, (int)len, item,
             n_names ? "a name in the header, an index or a range A:B"
                     : "an index or a range A:B (the file has no header)");
    return 1;
  }
  if (lo < 0)
    lo += ncols;
  if (colon && hi < 0)
    hi += ncols;
  if (!colon && lo >= 0 && lo < ncols) /* lo + 1 cannot overflow (an index up to LONG_MAX may be asked) */
    hi = lo + 1;
  if (lo < 0 || lo >= ncols || hi > ncols || hi <= lo) {
    mach_err(c, "%s: column%s '%.*s' is out of range: the file has %ld columns (0 to %ld)", name,
             colon ? "s" : "", (int)len, item, ncols, ncols - 1);
    return 1;
  }
  for (long k = lo; k < hi; k++)
    idx[(*n)++] = k;
  return 0;
}

/* "!SPEC": the columns SPEC leaves out, in order (SPEC has no '!' left). */
static int complement(const struct mach_ctx *c, const char *name, const char *spec,
                      char *const *names, long n_names, long ncols, long **idx, long *n) {
  long *sel, k, kept = 0;
  if (mach_csv_columns(c, name, spec, names, n_names, ncols, &sel, &k))
    return 1;
  *idx = mach_alloc(c, (size_t)ncols + 1, sizeof **idx);
  for (long j = 0; *idx && j < ncols; j++) {
    int taken = 0;
    for (long i = 0; i < k && !taken; i++)
      taken = sel[i] == j;
    if (!taken)
      (*idx)[kept++] = j;
  }
  free(sel);
  *n = kept;
  if (*idx && kept == 0) {
    mach_err(c, "%s: no columns are left besides '%s'", name, spec);
    free(*idx);
    *idx = NULL;
  }
  return *idx ? 0 : 1;
}

int mach_csv_columns(const struct mach_ctx *c, const char *name, const char *spec,
                     char *const *names, long n_names, long ncols, long **idx, long *n) {
  long cap = 1;
  int negated = 0;
  for (; spec[0] == '!'; spec++) /* "!!SPEC" is SPEC: counted, not recursed into */
    negated ^= 1;
  if (negated)
    return complement(c, name, spec, names, n_names, ncols, idx, n);
  for (const char *p = spec; *p; p++)
    cap += *p == ',';
  cap *= ncols + 1;
  *n = 0;
  if (!(*idx = mach_alloc(c, (size_t)cap, sizeof **idx)))
    return 1;
  for (const char *p = spec;;) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (column_item(c, name, p, len, names, n_names, ncols, *idx, n)) {
      free(*idx);
      *idx = NULL;
      return 1;
    }
    if (!e)
      break;
    p = e + 1;
  }
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
