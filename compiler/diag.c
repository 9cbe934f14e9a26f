/* diag.c — diagnostics: `file:line:col: error: message`, the source line and
 * a caret under the offending range.
 *
 * Locations are byte offsets; line and column are computed only here, when a
 * message is printed. Messages go to a sink (Diag.out) and are counted, never
 * acted on: no phase exits from an error routine. */
#include "machc.h"

#include <stdlib.h>
#include <string.h>

void diag_init(Diag *d, FILE *out) {
  *d = (Diag){0};
  d->out = out;
  d->max_errors = 20;
}

void diag_fini(Diag *d) {
  for (int i = 0; i < d->nfiles; i++) {
    free((char *)d->files[i].path);
    free((char *)d->files[i].text);
  }
  free(d->files);
  *d = (Diag){0};
}

int diag_add_source(Diag *d, const char *path, const char *text, int len) {
  if (d->nfiles == d->capfiles) {
    d->capfiles = d->capfiles ? 2 * d->capfiles : 8;
    d->files = realloc(d->files, sizeof *d->files * (size_t)d->capfiles);
    if (!d->files) {
      fputs("machc: out of memory\n", stderr);
      exit(1);
    }
  }
  char *copy = malloc((size_t)len + 1);
  char *pcopy = strdup(path);
  if (!copy || !pcopy) {
    fputs("machc: out of memory\n", stderr);
    exit(1);
  }
  memcpy(copy, text, (size_t)len);
  copy[len] = '\0';
  d->files[d->nfiles] = (Source){pcopy, copy, len};
  return d->nfiles++;
}

void diag_linecol(const Diag *d, Loc loc, int *line, int *col) {
  *line = *col = 0;
  if (loc.file < 0 || loc.file >= d->nfiles)
    return;
  const Source *s = &d->files[loc.file];
  int off = loc.off < 0 ? 0 : loc.off > s->len ? s->len : loc.off;
  int l = 1, linestart = 0;
  for (int i = 0; i < off; i++)
    if (s->text[i] == '\n') {
      l++;
      linestart = i + 1;
    }
  *line = l;
  *col = off - linestart + 1;
}

Loc loc_span(Loc a, Loc b) {
  if (a.file < 0)
    return b;
  if (b.file != a.file || b.off + b.len < a.off)
    return a;
  return (Loc){a.file, a.off, b.off + b.len - a.off};
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid. */
static int utf8_len(const unsigned char *s, int n) {
  int len = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
  if (s[0] >= 0xF5 || len == 0 || len > n)
    return 0;
  for (int i = 1; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

/* Prints the source line holding loc and a caret line under it. Bytes that
 * are not printable (control bytes, invalid UTF-8) are shown as '?' so a
 * binary file cannot garble the terminal; valid UTF-8 text is kept. */
static void show_line(Diag *d, Loc loc) {
  const Source *s = &d->files[loc.file];
  int off = loc.off < 0 ? 0 : loc.off > s->len ? s->len : loc.off;
  int start = off, end = off;
  while (start > 0 && s->text[start - 1] != '\n')
    start--;
  while (end < s->len && s->text[end] != '\n')
    end++;
  enum { MAXLINE = 200 };
  if (off - start > MAXLINE) /* very long line: show a window around off */
    start = off - MAXLINE / 2;
  if (end - start > MAXLINE)
    end = start + MAXLINE;
  fputs("  ", d->out);
  for (int i = start; i < end; i++) {
    const unsigned char *c = (const unsigned char *)s->text + i;
    int u = c[0] >= 128 ? utf8_len(c, end - i) : 0;
    if (u) {
      fwrite(c, 1, (size_t)u, d->out);
      i += u - 1;
    } else {
      fputc(c[0] == '\t' || (c[0] >= 32 && c[0] < 127) ? c[0] : '?', d->out);
    }
  }
  fputs("\n  ", d->out);
  for (int i = start; i < off; i++) { /* one column per character */
    const unsigned char *c = (const unsigned char *)s->text + i;
    int u = c[0] >= 128 ? utf8_len(c, off - i) : 0;
    i += u ? u - 1 : 0;
    fputc(c[0] == '\t' ? '\t' : ' ', d->out);
  }
  fputc('^', d->out);
  int len = loc.len;
  for (int i = 1; i < len && off + i < end; i++)
    fputc('~', d->out);
  fputc('\n', d->out);
}

static void report(Diag *d, const char *kind, Loc loc, const char *fmt,
                   va_list ap) {
  if (loc.file >= 0 && loc.file < d->nfiles) {
    int line, col;
    diag_linecol(d, loc, &line, &col);
    fprintf(d->out, "%s:%d:%d: %s: ", d->files[loc.file].path, line, col, kind);
  } else {
    fprintf(d->out, "machc: %s: ", kind);
  }
  vfprintf(d->out, fmt, ap);
  fputc('\n', d->out);
  if (loc.file >= 0 && loc.file < d->nfiles)
    show_line(d, loc);
}

void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap) {
  d->nerrors++;
  int max = d->max_errors ? d->max_errors : 20;
  if (d->nerrors > max)
    return;
  report(d, "error", loc, fmt, ap);
  if (d->nerrors == max)
    fprintf(d->out, "machc: too many errors; stopping\n");
}

void diag_error(Diag *d, Loc loc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  diag_verror(d, loc, fmt, ap);
  va_end(ap);
}

void diag_note(Diag *d, Loc loc, const char *fmt, ...) {
  int max = d->max_errors ? d->max_errors : 20;
  if (d->nerrors > max)
    return;
  va_list ap;
  va_start(ap, fmt);
  report(d, "note", loc, fmt, ap);
  va_end(ap);
}

/* --- "did you mean" ------------------------------------------------------ */

enum { SUGGEST_MAX = 64 }; /* longer names are not compared */

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and transpositions of adjacent characters, each costing one. Three rows
 * of the dynamic programme are enough. */
int diag_edit_distance(const char *a, const char *b) {
  int na = (int)strlen(a), nb = (int)strlen(b);
  if (na > SUGGEST_MAX || nb > SUGGEST_MAX)
    return SUGGEST_MAX;
  int rows[3][SUGGEST_MAX + 1];
  int *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
  for (int j = 0; j <= nb; j++)
    prev[j] = j;
  for (int i = 1; i <= na; i++) {
    cur[0] = i;
    for (int j = 1; j <= nb; j++) {
      int cost = a[i - 1] != b[j - 1];
      int d = prev[j - 1] + cost;
      if (prev[j] + 1 < d)
        d = prev[j] + 1;
      if (cur[j - 1] + 1 < d)
        d = cur[j - 1] + 1;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < d)
        d = prev2[j - 2] + 1;
      cur[j] = d;
    }
    int *t = prev2;
    prev2 = prev;
    prev = cur;
    cur = t;
  }
  return prev[nb];
}

void diag_suggest_init(Suggest *s, const char *name) {
  *s = (Suggest){.name = name, .dist = SUGGEST_MAX};
}

void diag_suggest_add(Suggest *s, const char *candidate) {
  if (!candidate || strcmp(candidate, s->name) == 0)
    return;
  int d = diag_edit_distance(s->name, candidate);
  if (d < s->dist) {
    s->dist = d;
    s->best = candidate;
  }
}

/* Close means at most a third of the name's length in edits (one for short
 * names), and fewer edits than the name has characters: 'x' for 'z' would
 * be a guess, not a hint. */
const char *diag_suggest_hint(Suggest *s) {
  int n = (int)strlen(s->name), limit = n / 3 > 1 ? n / 3 : 1;
  if (!s->best || s->dist > limit || s->dist >= n)
    return "";
  snprintf(s->hint, sizeof s->hint, "; did you mean '%.60s'?", s->best);
  return s->hint;
}
