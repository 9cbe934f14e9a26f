/* emit_line.c — the lines of the generated code, each at its depth.
 *
 * The emitters write statements, not indentation: emit_line puts a line at
 * the current depth, emit_open and emit_head open a block one step deeper
 * (a braced one, or the single statement under a `for`), emit_close_to
 * closes them again, writing `}` only where a brace was opened. emit_loops
 * opens counted loops, leaving out those of one trip and giving the index to
 * use for each variable (its fixed value when left out), so a loop of one
 * trip never appears.
 * emit_call writes a call with many sizes one group of arguments per line,
 * each argument after a comment naming it. */
#include "emit_internal.h"

#include <stdarg.h>
#include <string.h>

enum { STEP = 4, MAX_DEPTH = 63 }; /* spaces per level; braced holds a bit per level */

static void indent(Emit *e) { sb_printf(e->c, "%*s", STEP * e->depth, ""); }

static void vline(Emit *e, const char *tail, const char *fmt, va_list ap) {
  indent(e);
  sb_vprintf(e->c, fmt, ap);
  sb_puts(e->c, tail);
}

void emit_line(Emit *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline(e, "\n", fmt, ap);
  va_end(ap);
}

/* One step deeper; the bit of the new level says whether it owes a `}`. */
static void deeper(Emit *e, bool brace) {
  if (e->depth >= MAX_DEPTH) /* loop nests are a few levels deep */
    return;
  e->depth++;
  if (brace)
    e->braced |= 1ull << e->depth;
  else
    e->braced &= ~(1ull << e->depth);
}

void emit_open(Emit *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline(e, " {\n", fmt, ap);
  va_end(ap);
  deeper(e, true);
}

void emit_head(Emit *e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vline(e, "\n", fmt, ap);
  va_end(ap);
  deeper(e, false);
}

void emit_close_to(Emit *e, int depth) {
  while (e->depth > depth) {
    bool brace = e->braced >> e->depth & 1;
    e->depth--;
    if (brace)
      emit_line(e, "}");
  }
}

void emit_omp(StrBuf *c, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_puts(c, "#ifdef _OPENMP\n#pragma omp ");
  sb_vprintf(c, fmt, ap);
  sb_puts(c, "\n#endif\n");
  va_end(ap);
}

void emit_scope(Emit *e) {
  emit_line(e, "{");
  deeper(e, true);
}

int emit_loops(Emit *e, const EmitLoop *l, int count, bool brace, Ix *idx) {
  int base = e->depth, last = -1;
  for (int i = 0; i < count; i++)
    if (l[i].hi || l[i].n != 1)
      last = i;
  for (int i = 0; i < count; i++) {
    if (!l[i].hi && l[i].n == 1) { /* one trip: the body with the index fixed */
      idx[i] = ix_const(l[i].lo);
      continue;
    }
    const char *v = l[i].var;
    const char *hi = l[i].hi ? l[i].hi : arena_printf(e->a, "%ld", l[i].lo + l[i].n);
    if (brace && i == last)
      emit_open(e, "for (long %s = %ld; %s < %s; %s++)", v, l[i].lo, v, hi, v);
    else
      emit_head(e, "for (long %s = %ld; %s < %s; %s++)", v, l[i].lo, v, hi, v);
    idx[i] = ix_var(v);
  }
  if (brace && last < 0)
    emit_scope(e);
  return base;
}

void emit_call(Emit *e, const char *fn, const EmitArg *args, const int *lines, int nlines) {
  indent(e);
  sb_printf(e->c, "%s(", fn);
  int col = STEP * e->depth + (int)strlen(fn) + 1;
  for (int l = 0, i = 0; l < nlines; l++) {
    if (l)
      sb_printf(e->c, ",\n%*s", col, "");
    for (int k = 0; k < lines[l]; k++, i++)
      sb_printf(e->c, "%s/* %s */ %s", k ? ", " : "", args[i].name, args[i].val);
  }
  sb_puts(e->c, ");\n");
}
