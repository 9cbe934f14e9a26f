/* ir_text.c — the text of an arrow, written in one place.
 *
 * An arrow is shown in five places: the printed machine (--emit=mach and
 * --emit=dual), `machc explain`, the DOT diagram, the level comments of the
 * generated C, and the names the evaluator accepts. All of them take its
 * words from here, so they cannot disagree: the kind ("conv_t" for the
 * adjoint of a conv), the options that differ from their defaults (kernel,
 * pads, stride, dilation, or lags for a causal convolution in time), and
 * the weight with its slice.
 *
 * Two styles, differing only in how a transposed weight is written:
 *   IR_TEXT_MACH  .mach source that compiles back to the same arrow:
 *                 dense(x, weight = transpose(W[0 .. 2, 4 .. 8]))
 *   IR_TEXT_MATH  for people, in the row-vector convention of the generated
 *                 code (y = z W, one sample per row): x W[0 .. 2, 4 .. 8]^T
 */
#include "machc.h"

#include <string.h>

/* The .mach function of each kind; NAME_t is the adjoint of a grid arrow. */
static const char *const arrow_fns[] = {
    [ARROW_DENSE] = "dense",     [ARROW_CONV] = "conv",
    [ARROW_IDENTITY] = "identity_map", [ARROW_AVGPOOL] = "avgpool",
    [ARROW_GAVGPOOL] = "global_avgpool", [ARROW_GATE] = "gate",
};

const char *ir_arrow_fn(ArrowKind k) { return arrow_fns[k]; }

bool ir_arrow_lookup(const char *name, ArrowKind *k, bool *adjoint) {
  size_t n = strlen(name);
  *adjoint = n > 2 && strcmp(name + n - 2, "_t") == 0;
  for (int i = ARROW_DENSE; i <= ARROW_GAVGPOOL; i++) {
    size_t m = strlen(arrow_fns[i]);
    bool grid = i == ARROW_CONV || i == ARROW_AVGPOOL || i == ARROW_GAVGPOOL;
    if ((*adjoint ? grid && m == n - 2 : m == n) && strncmp(name, arrow_fns[i], m) == 0) {
      *k = (ArrowKind)i;
      return true;
    }
  }
  return false;
}

const char *ir_arrow_kind(const IrArrow *ar) {
  static const char *const adj[] = {[ARROW_CONV] = "conv_t", [ARROW_AVGPOOL] = "avgpool_t",
                                    [ARROW_GAVGPOOL] = "global_avgpool_t"};
  if (ar->kind == ARROW_IDENTITY)
    return "skip";
  return ar->adjoint && adj[ar->kind] ? adj[ar->kind] : arrow_fns[ar->kind];
}

/* The extents of the weight slice along the parameter's two channel axes:
 * (source size, destination size) for dense, (C_in, C_out) of the forward
 * convolution for conv; swapped when the arrow reads the weight transposed. */
static void weight_extent(const IrMachine *m, const IrArrow *ar, long *rows, long *cols) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  if (ar->kind == ARROW_DENSE) {
    *rows = s->size;
    *cols = d->size;
  } else { /* an adjoint conv maps the forward conv's output to its input */
    *rows = (ar->adjoint ? d : s)->shape.channels;
    *cols = (ar->adjoint ? s : d)->shape.channels;
  }
  if (ar->w.transposed) {
    long t = *rows;
    *rows = *cols;
    *cols = t;
  }
}

char *ir_arrow_weight(Arena *a, const IrMachine *m, const IrArrow *ar, IrTextStyle st) {
  if (ar->w.param < 0)
    return NULL;
  const IrParam *p = IR_PARAM(m, ar->w.param);
  long rows, cols;
  weight_extent(m, ar, &rows, &cols);
  int nk = p->rank - 2; /* kernel axes before the two channel axes */
  bool whole = ar->w.in_off == 0 && ar->w.out_off == 0 && rows == p->shape[nk] &&
               cols == p->shape[nk + 1];
  for (int k = 0; k < nk; k++)
    whole &= ar->w.k_off[k] == 0 && ar->ax[k].kernel == p->shape[k];
  StrBuf sb = {0};
  sb_puts(&sb, st == IR_TEXT_MACH && ar->w.transposed ? "transpose(" : "");
  sb_puts(&sb, p->name);
  if (!whole) {
    sb_puts(&sb, "[");
    for (int k = 0; k < nk; k++)
      sb_printf(&sb, "%d .. %d, ", ar->w.k_off[k], ar->w.k_off[k] + ar->ax[k].kernel);
    sb_printf(&sb, "%d .. %ld, %d .. %ld]", ar->w.in_off, ar->w.in_off + rows, ar->w.out_off,
              ar->w.out_off + cols);
  }
  if (ar->w.transposed)
    sb_puts(&sb, st == IR_TEXT_MACH ? ")" : "^T");
  char *s = arena_strdup(a, sb.data);
  sb_free(&sb);
  return s;
}

/* A conv that is a causal convolution in time, conv(x, lags = lo ..= hi):
 * one axis, kernel hi - lo + 1, pads (hi, -lo), stride and dilation 1. Lag 0
 * alone is left as k = [1]. */
static bool lag_form(const IrArrow *ar, int *lo, int *hi) {
  const ConvAxis *x = &ar->ax[0];
  if (ar->kind != ARROW_CONV || ar->adjoint || ar->ngrid != 1 || x->stride != 1 ||
      x->dilation != 1 || x->pad1 > 0 || x->kernel != x->pad0 + x->pad1 + 1 ||
      (x->pad0 == 0 && x->pad1 == 0))
    return false;
  *lo = -x->pad1;
  *hi = x->pad0;
  return true;
}

static void axis_list(StrBuf *sb, const char *name, const IrArrow *ar, int what) {
  sb_printf(sb, "%s%s = [", sb->len ? ", " : "", name);
  for (int k = 0; k < ar->ngrid; k++) {
    const ConvAxis *x = &ar->ax[k];
    if (what == 'p')
      sb_printf(sb, "%s%d, %d", k ? ", " : "", x->pad0, x->pad1);
    else
      sb_printf(sb, "%s%d", k ? ", " : "", what == 'k' ? x->kernel : what == 's' ? x->stride : x->dilation);
  }
  sb_puts(sb, "]");
}

char *ir_arrow_args(Arena *a, const IrMachine *m, const IrArrow *ar, IrTextStyle st) {
  StrBuf sb = {0};
  int lo, hi;
  if (lag_form(ar, &lo, &hi)) {
    sb_printf(&sb, "lags = %d ..= %d", lo, hi);
  } else if (ar->kind == ARROW_CONV || ar->kind == ARROW_AVGPOOL) {
    bool pad = false, stride = false, dil = false;
    for (int k = 0; k < ar->ngrid; k++) {
      pad |= ar->ax[k].pad0 != 0 || ar->ax[k].pad1 != 0;
      stride |= ar->ax[k].stride != 1;
      dil |= ar->ax[k].dilation != 1;
    }
    axis_list(&sb, "k", ar, 'k');
    if (pad) /* flat, (p0, p1) per axis, as the paper gives them */
      axis_list(&sb, "pad", ar, 'p');
    if (stride)
      axis_list(&sb, "stride", ar, 's');
    if (dil)
      axis_list(&sb, "dilation", ar, 'd');
  }
  const char *w = ir_arrow_weight(a, m, ar, st);
  if (w)
    sb_printf(&sb, "%sweight = %s", sb.len ? ", " : "", w);
  char *s = arena_strdup(a, sb.len ? sb.data : "");
  sb_free(&sb);
  return s;
}

char *ir_arrow_text(Arena *a, const IrMachine *m, const IrArrow *ar, const char *src, IrTextStyle st) {
  switch (ar->kind) {
  case ARROW_IDENTITY:
    return arena_strdup(a, src);
  case ARROW_DENSE:
    if (st == IR_TEXT_MATH) /* a row of src times the matrix */
      return arena_printf(a, "%s %s", src, ir_arrow_weight(a, m, ar, st));
    break;
  default:
    break;
  }
  const char *args = ir_arrow_args(a, m, ar, st);
  return arena_printf(a, "%s(%s%s%s)", ir_arrow_kind(ar), src, *args ? ", " : "", args);
}
