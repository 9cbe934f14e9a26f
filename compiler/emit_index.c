/* emit_index.c — the index expressions of the generated code.
 *
 * Every index of a grid arrow is affine in its loop variables: a sum of
 * terms coef * variable and one constant. Built here from terms instead of
 * pasted from format strings, an index prints the way one would write it by
 * hand: `* 1`, `+ 0` and `0 * x` vanish, constants are summed, a loop that
 * was left out (one trip) contributes its fixed value, and parentheses stay
 * only around a sum that is scaled. A row-major index keeps its shape,
 * (k0 * 17 + ci) * 17 + co for W[k0, ci, co], rather than being expanded into
 * k0 * 289 + ci * 17 + co, so the reader sees the tensor's axes. The terms
 * keep the order they were added in (the constant where it first appeared),
 * so the text follows the order of the axes.
 *
 * Only the text changes: the compiler evaluates integer index arithmetic
 * exactly, so the folded index addresses the same element. */
#include "emit_internal.h"

#include <stdlib.h>
#include <string.h>

Ix ix_const(long c) { return ix_term(NULL, c); }

Ix ix_var(const char *v) { return ix_term(v, 1); }

Ix ix_term(const char *v, long coef) {
  Ix x = {.n = 0};
  if (coef)
    x.t[x.n++] = (IxTerm){.coef = coef, .atom = v};
  return x;
}

/* Adds one term, merged with an equal atom (or the constant) already there. */
static Ix add_term(Ix a, IxTerm t) {
  if (!t.coef)
    return a;
  for (int i = 0; i < a.n; i++) {
    bool same = t.atom ? a.t[i].atom && strcmp(a.t[i].atom, t.atom) == 0 : !a.t[i].atom;
    if (!same)
      continue;
    a.t[i].coef += t.coef;
    if (!a.t[i].coef) { /* the terms cancel */
      for (int j = i + 1; j < a.n; j++)
        a.t[j - 1] = a.t[j];
      a.n--;
    }
    return a;
  }
  if (a.n == IX_TERMS) /* the emitters build at most a dozen terms */
    abort();
  a.t[a.n++] = t;
  return a;
}

Ix ix_add(Ix a, Ix b) {
  for (int i = 0; i < b.n; i++)
    a = add_term(a, b.t[i]);
  return a;
}

Ix ix_addc(Ix a, long c) { return add_term(a, (IxTerm){.coef = c}); }

Ix ix_addv(Ix a, const char *v, long coef) { return add_term(a, (IxTerm){.coef = coef, .atom = v}); }

/* A sum of several terms is scaled as one parenthesised atom, not
 * distributed: (o0 * 2 + k0 - 1) * 13 keeps the position visible. */
Ix ix_scale(Arena *ar, Ix a, long k) {
  if (k == 0)
    return ix_const(0);
  if (k == 1 || a.n == 0)
    return a;
  if (a.n == 1) {
    a.t[0].coef *= k;
    return a;
  }
  Ix x = ix_term(ix_text(ar, a), k);
  x.t[0].sum = true;
  return x;
}

Ix ix_nest(Arena *ar, Ix outer, long extent, Ix inner) {
  return ix_add(ix_scale(ar, outer, extent), inner);
}

bool ix_is_const(Ix a, long *c) {
  if (a.n > 1 || (a.n == 1 && a.t[0].atom))
    return false;
  *c = a.n ? a.t[0].coef : 0;
  return true;
}

static void term_text(StrBuf *sb, const IxTerm *t, bool first) {
  long mag = labs(t->coef);
  if (first)
    sb_puts(sb, t->coef < 0 ? "-" : "");
  else
    sb_puts(sb, t->coef < 0 ? " - " : " + ");
  if (!t->atom) {
    sb_printf(sb, "%ld", mag);
    return;
  }
  bool paren = t->sum && (mag != 1 || t->coef < 0);
  sb_printf(sb, paren ? "(%s)" : "%s", t->atom);
  if (mag != 1)
    sb_printf(sb, " * %ld", mag);
}

const char *ix_text(Arena *ar, Ix a) {
  if (!a.n)
    return "0";
  StrBuf sb = {0};
  for (int i = 0; i < a.n; i++)
    term_text(&sb, &a.t[i], i == 0);
  const char *s = arena_strdup(ar, sb.data);
  sb_free(&sb);
  return s;
}

const char *ix_at(Arena *ar, const char *base, Ix off) {
  if (!off.n)
    return base;
  const char *t = ix_text(ar, off);
  return t[0] == '-' ? arena_printf(ar, "%s - %s", base, t + 1) : arena_printf(ar, "%s + %s", base, t);
}
