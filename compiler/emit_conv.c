/* emit_conv.c — loop nests for arrows on grids: convolution (and its
 * transposed form), average pooling and global average pooling, and the
 * gradient of a convolution's kernel.
 *
 * A convolution (cross-correlation: out[o] reads in[o*s + k*d - p0]) is
 * written as "for each kernel tap: a matrix product over channels, (out
 * channels x in channels) (in channels x positions)", the positions those
 * of the tap's box of outputs whose input falls inside the grid (padding is
 * skipped, never read), run by the prelude's mm_grid. With very few channels
 * the plain loops are written instead: for each sample, channel pair and
 * tap, a loop over the box, the last grid axis innermost with unit stride.
 * Pooling always uses the plain loops. Most convolutions with channels
 * enough run neither way but as windowed products (further down): stride 1
 * over a zero-padded input, strided ones and their adjoints over the stride
 * phases of the grid.
 *
 * An arrow marked adjoint (the dual of a strided conv or of a pooling)
 * scatters instead: in[o*s + k*d - p0] += out[o], with the roles of its
 * source and destination grids swapped. A time range [t0, t1) on axis 0
 * restricts what is written, for the chunks of a recurrent filtration. */
#include "emit_internal.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static long prod_from(const int *v, int from, int n) {
  long p = 1;
  for (int i = from; i < n; i++)
    p *= v[i];
  return p;
}

/* The geometry of the forward map an arrow's fields describe: input grid
 * `in` (read at o*s + k*d - p0) and output grid `out`. */
typedef struct Geom {
  int g;                 /* grid axes */
  const int *in, *out;   /* grid sizes */
  long in_str[IR_MAX_GRID], out_str[IR_MAX_GRID];
  long in_size, out_size; /* per channel */
} Geom;

static Geom geom_of(const IrMachine *m, const IrArrow *ar) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  const IrBlock *fin = ar->adjoint ? d : s, *fout = ar->adjoint ? s : d;
  Geom g = {.g = ar->ngrid, .in = fin->shape.grid, .out = fout->shape.grid};
  for (int a = 0; a < g.g; a++) {
    g.in_str[a] = prod_from(g.in, a + 1, g.g);
    g.out_str[a] = prod_from(g.out, a + 1, g.g);
  }
  g.in_size = prod_from(g.in, 0, g.g);
  g.out_size = prod_from(g.out, 0, g.g);
  return g;
}

static const char *num(Emit *e, long v) { return arena_printf(e->a, "%ld", v); }

static const char *var(Emit *e, char c, int a) { return arena_printf(e->a, "%c%d", c, a); }

/* The kernel taps of an arrow: the index k<a> on each axis, 0 where the
 * kernel has one tap (its loop is left out). */
typedef struct Taps {
  Ix k[IR_MAX_GRID];
  int loops; /* axes with a loop over taps */
} Taps;

static Taps taps_of(Emit *e, const IrArrow *ar) {
  Taps t = {.loops = 0};
  for (int a = 0; a < ar->ngrid; a++) {
    bool loop = ar->ax[a].kernel > 1;
    t.k[a] = loop ? ix_var(var(e, 'k', a)) : ix_const(0);
    t.loops += loop;
  }
  return t;
}

/* The input position o*s + k*d - p0 on axis a of output position o at tap k. */
static Ix in_pos(Emit *e, const ConvAxis *x, Ix o, Ix k) {
  return ix_addc(ix_add(ix_scale(e->a, o, x->stride), ix_scale(e->a, k, x->dilation)), -x->pad0);
}

/* Opens the loops over the arrow's kernel taps (braced, or a bare block
 * when `scope` and every axis has one tap) and sets each axis's box [f, e)
 * of output positions whose input lies in the window [lo, hi): the grid, or
 * on axis 0 the time range being written when the arrow scatters; outputs
 * reading inside the grid are further cut to [t0, t1). */
static void open_taps(Emit *e, const IrArrow *ar, const Geom *g, const Taps *tp, const char *t0,
                      const char *t1, bool scope) {
  EmitLoop l[IR_MAX_GRID];
  Ix idx[IR_MAX_GRID];
  for (int a = 0; a < g->g; a++)
    l[a] = (EmitLoop){.var = var(e, 'k', a), .n = ar->ax[a].kernel};
  emit_loops(e, l, g->g, tp->loops || scope, idx);
  for (int a = 0; a < g->g; a++) {
    bool time = a == 0 && t0;
    const char *lo = time && ar->adjoint ? t0 : "0";
    const char *hi = time && ar->adjoint ? t1 : num(e, g->in[a]);
    const char *off = ix_text(e->a, in_pos(e, &ar->ax[a], ix_const(0), tp->k[a]));
    emit_line(e, "long f%d = o_first(%s, %d, %s), e%d = o_end(%s, %d, %s, %d);", a, off,
              ar->ax[a].stride, lo, a, off, ar->ax[a].stride, hi, g->out[a]);
    if (time && !ar->adjoint) {
      emit_line(e, "if (f0 < %s) f0 = %s;", t0, t0);
      emit_line(e, "if (e0 > %s) e0 = %s;", t1, t1);
    }
  }
}

/* The index of the input position read by output position o (o<a> the loop
 * variables) in a channel's grid, and of the output position. */
static Ix in_ix(Emit *e, const IrArrow *ar, const Geom *g, const Taps *tp) {
  Ix x = ix_const(0);
  for (int a = 0; a < g->g; a++)
    x = ix_add(x, ix_scale(e->a, in_pos(e, &ar->ax[a], ix_var(var(e, 'o', a)), tp->k[a]), g->in_str[a]));
  return x;
}

static Ix out_ix(Emit *e, const Geom *g) {
  Ix x = ix_const(0);
  for (int a = 0; a < g->g; a++)
    x = ix_addv(x, var(e, 'o', a), g->out_str[a]);
  return x;
}

/* Index of W[k.., cin, cout] for the taps k and channels (ci, co) of the
 * arrow: a transposed weight is read flipped, with its channels swapped. */
Ix emit_weight_ix(Emit *e, const IrArrow *ar, const Ix *k, Ix ci, Ix co) {
  const IrParam *p = IR_PARAM(e->m, ar->w.param);
  Ix at = ix_const(0);
  for (int a = 0; a < ar->ngrid; a++) {
    Ix tap = ar->w.transposed
                 ? ix_add(ix_const(ar->w.k_off[a] + ar->ax[a].kernel - 1), ix_scale(e->a, k[a], -1))
                 : ix_add(ix_const(ar->w.k_off[a]), k[a]);
    at = ix_nest(e->a, at, p->shape[a], tap);
  }
  int rank = p->rank;
  /* a transposed weight, or an adjoint arrow, maps destination channels to
   * source channels: W's input axis is then indexed by co */
  bool swap = ar->w.transposed != ar->adjoint;
  Ix wi = swap ? co : ci, wo = swap ? ci : co;
  at = ix_nest(e->a, at, p->shape[rank - 2], ix_add(ix_const(ar->w.in_off), wi));
  return ix_nest(e->a, at, p->shape[rank - 1], ix_add(ix_const(ar->w.out_off), wo));
}

/* The loops over the tap's box of outputs, the last axis innermost; each
 * has a single statement. In a chunk of time (chunked), axis 0 holds at most
 * the machine's timeblock of them. */
static void open_positions(Emit *e, const Geom *g, bool chunked) {
  for (int a = 0; a < g->g; a++) {
    long n = g->out[a], tb = e->primal->timeblock;
    if (a == 0 && chunked && tb > 0 && tb < n)
      n = tb;
    emit_head(e, "%sfor (long o%d = f%d; o%d < e%d; o%d++)", a + 1 == g->g ? emit_short(e, n) : "", a, a, a,
              a, a);
  }
}

/* Below this many (source, destination) channel pairs, a tap's product is
 * too small for mm_grid and the plain loops are faster. */
enum { SMALL = 8 };

/* Opens the loops over samples and (destination, source) channel pairs of
 * an arrow of machine m, with zs and yd pointing at the pair's grids; sets
 * the indices of the pair's channels. */
static void open_pairs(Emit *e, const IrMachine *m, const IrArrow *ar, const char *z, const char *y,
                       bool const_y, Ix *ci, Ix *co) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  EmitLoop l[] = {{.var = "n", .hi = "batch"}, {.var = "co", .n = d->shape.channels},
                  {.var = "ci", .n = s->shape.channels}};
  Ix idx[3];
  emit_loops(e, l, 3, true, idx);
  *co = idx[1];
  *ci = idx[2];
  Ix zi = ix_scale(e->a, ix_nest(e->a, idx[0], s->shape.channels, *ci), src_sz);
  Ix yi = ix_scale(e->a, ix_nest(e->a, idx[0], d->shape.channels, *co), dst_sz);
  emit_line(e, "const real *zs = %s;", ix_at(e->a, z, zi));
  emit_line(e, "%sreal *yd = %s;", const_y ? "const " : "", ix_at(e->a, y, yi));
}

/* Few channels (fewer than SMALL products of a source and a destination
 * channel): the plain loops, per sample, channel pair and tap, over the
 * tap's box of outputs. */
static void conv_loops(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  Geom g = geom_of(e->m, ar);
  Taps tp = taps_of(e, ar);
  Ix ci, co;
  int base = e->depth;
  open_pairs(e, e->m, ar, z, y, false, &ci, &co);
  open_taps(e, ar, &g, &tp, t0, t1, false);
  emit_line(e, "const real w = %s[%s];", emit_pname(e, ar->w.param),
            ix_text(e->a, emit_weight_ix(e, ar, tp.k, ci, co)));
  open_positions(e, &g, t0 != NULL);
  const char *in = ix_text(e->a, in_ix(e, ar, &g, &tp)), *out = ix_text(e->a, out_ix(e, &g));
  emit_line(e, "yd[%s] += w * zs[%s];", ar->adjoint ? in : out, ar->adjoint ? out : in);
  emit_close_to(e, base);
}

/* The kernel gradient with the plain loops (few channels). */
static void conv_grad_loops(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  Geom g = geom_of(e->primal, ar);
  Taps tp = taps_of(e, ar);
  Ix ci, co;
  int base = e->depth;
  open_pairs(e, e->primal, ar, z, ybar, true, &ci, &co);
  open_taps(e, ar, &g, &tp, NULL, NULL, false);
  emit_line(e, "real t = 0;");
  int inner = e->depth;
  open_positions(e, &g, false);
  const char *in = ix_text(e->a, in_ix(e, ar, &g, &tp)), *out = ix_text(e->a, out_ix(e, &g));
  emit_line(e, "t += zs[%s] * yd[%s];", ar->adjoint ? out : in, ar->adjoint ? in : out);
  emit_close_to(e, inner);
  emit_line(e, "%s[%s] += t;", dw, ix_text(e->a, emit_weight_ix(e, ar, tp.k, ci, co)));
  emit_close_to(e, base);
}

/* ---- convolutions as products over channels --------------------------------
 *
 * For one kernel tap k, a convolution is a matrix product over channels:
 *   y[n, co, o] += sum over ci of W[k, ci, co] z[n, ci, o*s + k*d - p0]
 * for the output positions o whose input lies in the grid: a box
 * [f, e) per axis. Its columns are (sample, position) on a 1-D grid and, per
 * sample, (row, column) of the last two axes on a 2-D or 3-D one (a 3-D grid
 * loops over its first axis), so each tap is one call of mm_grid, which
 * takes such two-level indices. An adjoint arrow scatters: the same product
 * with the roles of the position maps swapped (reads z at o, writes y at
 * o*s + k*d - p0). */

/* The positions of the equation a grid arrow's comment quotes: the output
 * position "o0, o1" and the input position it reads, "o0 * 2 + k0 - 1, ..". */
static void pos_texts(Emit *e, const IrArrow *ar, const Taps *tp, const char **out, const char **in) {
  StrBuf rd = {0}, wr = {0};
  for (int a = 0; a < ar->ngrid; a++) {
    Ix o = ix_var(var(e, 'o', a));
    sb_printf(&rd, "%s%s", a ? ", " : "", ix_text(e->a, in_pos(e, &ar->ax[a], o, tp->k[a])));
    sb_printf(&wr, "%s%s", a ? ", " : "", ix_text(e->a, o));
  }
  *in = arena_strdup(e->a, rd.data);
  *out = arena_strdup(e->a, wr.data);
  sb_free(&rd);
  sb_free(&wr);
}

/* How a buffer is addressed along the two-level index (j1, j0) of a tap's
 * product: the offset of its first element (the box's corner) and the
 * steps of j1 and j0. On a 1-D grid j1 is the sample (step: the block's size
 * per sample); on more axes the sample and the axes before the last two are
 * loop variables (n, o0, ...) inside the offset. `in` selects the arrow's
 * input grid (positions o*s + k*d - p0) or its output grid (positions o). */
typedef struct Cols {
  Ix off;
  long step1, step0;
} Cols;

static Cols cols_of(Emit *e, const IrArrow *ar, const Geom *g, const Taps *tp, bool in, long sample) {
  const long *str = in ? g->in_str : g->out_str;
  Cols c = {.off = g->g > 1 ? ix_term("n", sample) : ix_const(0)};
  for (int a = 0; a < g->g; a++) {
    Ix o = ix_var(var(e, a < g->g - 2 ? 'o' : 'f', a));
    c.off = ix_add(c.off, ix_scale(e->a, in ? in_pos(e, &ar->ax[a], o, tp->k[a]) : o, str[a]));
  }
  int last = g->g - 1;
  c.step0 = in ? ar->ax[last].stride : 1;
  c.step1 = g->g == 1 ? sample : (in ? ar->ax[last - 1].stride : 1) * str[last - 1];
  return c;
}

/* An mm_grid call of inner dimension k and m rows packs its panels in the
 * function's scratch, work (emit_grid_work). */
static void grid_work(Emit *e, long k, long m) {
  long need = emit_grid_work(k, m, emit_nb(e->o));
  if (need > e->work)
    e->work = need;
}

/* Opens the loops over taps, skips a tap whose box is empty, and on a grid
 * of more than one axis opens the loops over samples and the leading axes.
 * Sets the text of the two-level extent: total (j1 x j0) and inner (j0). */
static void open_products(Emit *e, const IrArrow *ar, const Geom *g, const Taps *tp, const char *t0,
                          const char *t1, const char **total, const char **inner) {
  open_taps(e, ar, g, tp, t0, t1, true);
  StrBuf empty = {0}, some = {0};
  for (int a = 0; a < g->g; a++) {
    sb_printf(&empty, "%sf%d >= e%d", a ? " || " : "", a, a);
    sb_printf(&some, "%sf%d < e%d", a ? " && " : "", a, a);
  }
  if (tp->loops) {
    int d = e->depth;
    emit_head(e, "if (%s)", empty.data);
    emit_line(e, "continue; /* no output reads this tap inside the grid */");
    emit_close_to(e, d);
  } else { /* no loop over taps to continue */
    emit_open(e, "if (%s)", some.data);
  }
  sb_free(&empty);
  sb_free(&some);
  int last = g->g - 1;
  *inner = arena_printf(e->a, "e%d - f%d", last, last);
  if (g->g == 1) {
    *total = "batch * (e0 - f0)";
    return;
  }
  *total = arena_printf(e->a, "(e%d - f%d) * (e%d - f%d)", last - 1, last - 1, last, last);
  emit_head(e, "for (long n = 0; n < batch; n++)");
  for (int a = 0; a + 2 < g->g; a++)
    emit_head(e, "for (long o%d = f%d; o%d < e%d; o%d++)", a, a, a, a, a);
}

/* The strides of W[k.., cin, cout] along the arrow's source and destination
 * channels: a transposed weight, or an adjoint arrow, maps destination
 * channels to source channels, so W's input axis is then the destination's. */
static void weight_strides(Emit *e, const IrArrow *ar, long *src, long *dst) {
  const IrParam *p = IR_PARAM(e->m, ar->w.param);
  long cout = p->shape[p->rank - 1];
  bool swap = ar->w.transposed != ar->adjoint;
  *src = swap ? 1 : cout;
  *dst = swap ? cout : 1;
}

/* ---- convolutions as one product over a zero-padded input --------------------
 *
 * Per tap, the product above has an inner dimension of only the input
 * channels, and every tap re-reads and re-writes the output. For a stride-1
 * conv the taps are folded into the inner dimension instead. Per group of
 * samples, the source is copied into a zero-padded buffer of the function's
 * workspace, pad[ci, x, n] with x = the input position + p0 on every axis
 * and the group's sample n innermost, so that row (k, ci) of the patch
 * matrix is the window pad[ci, k*d + u, n] over the padded output positions
 * u: read in place by mm_taps, one product (co x (k, ci)) ((k, ci) x (u, n))
 * per group, of inner dimension taps x ci. Along every axis but the first,
 * a row of pad holds in + max(p0, p1) positions, not in + p0 + p1: the
 * zeros between two rows are the right padding of one and the left of the
 * next (a 28-wide 3x3 conv computes 29 columns a row, not 30). Positions u
 * past the output grid along the axes before the last are computed and
 * dropped, as are those a row's zeros give along the last axis; a 1-D grid
 * (the sample innermost) wastes no column. The kernel
 * gradient reads the same windows: the product ((k, ci) x (u, n)) ((u, n) x
 * co) with the output's cotangent packed by position (mm_rows). A group holds
 * enough samples for COLS columns (one when a sample has that many); the
 * batch is cut into groups of gs samples, as equal as can be, and the index
 * steps of pad are multiples of gs. The
 * buffers stay within GROUP_BYTES (in L2) and the workspace under WORK_BYTES,
 * or the per-tap products above are used. The kernels skip a tap over a
 * block of columns whose window lies in the padding (tap_on, by rows of the
 * first axis). The product that writes all of a block's y adds the bias or
 * the block's input as it copies, and applies the activation there (rows)
 * or over the group's samples right after (EmitFirst). A product into one
 * channel of MR taps or more runs a product per tap and sums their rows
 * (tap_rows); with fewer, mm_taps_row, one row by 4 NB columns.
 *
 * A strided conv (not its adjoint) runs as the same windowed product over
 * its stride phases (see Phases below): along an axis of stride s, tap k
 * reads input (o + c) s + r, c = floor((k d - p0) / s) and r what is left,
 * so pad holds the grid split by r, pad[ci, r, u - cmin, n] = z[n, ci,
 * u s + r] (cmin the least c), and the tap's window starts at plane r,
 * position c - cmin: windows of unit stride again, one per tap. */
enum { GROUP_BYTES = 384 * 1024, WORK_BYTES = 2048 * 1024, MAX_GROUP = 64, COLS = 512, MR_ = 4 };
/* The scratch of the kernel gradients' sweep, per thread: within a core's
 * L2 (1 MB on the build machine's cores; conv2d[1,64*4]'s, 1.8 MB, made its
 * training step 1.7% slower than a loop per level) */
enum { SWEEP_BYTES = 1024 * 1024 };

static long round_up(long v, long m) { return (v + m - 1) / m * m; }


/* The columns of a kernel gradient's panel for co output channels: NB / 2
 * when they fit (mm_rows's narrow micro-kernel), else a multiple of NB. */
static long panel_cols(long co, long nb) { return co <= nb / 2 ? nb / 2 : round_up(co, nb); }


/* The padded geometry of a windowed arrow: ext[a] the padded extent per
 * axis of a plane (outputs + the kernel's reach on the first, rows sharing
 * their zeros on the others), pstr its strides, plane = one sample's padded
 * grid (one stride phase of it), span = the padded positions from the first
 * output to the last + 1, group samples per product, ld the product's row
 * length. */
typedef struct Win {
  Geom g;
  long ci, co, taps, kk;  /* channels, kernel taps, inner dimension taps * ci */
  long nb;                /* the prelude's NB */
  long ext[IR_MAX_GRID], pstr[IR_MAX_GRID], plane, span;
  long cmin[IR_MAX_GRID]; /* per axis, the least c of a tap: position u is held at u - cmin */
  long phases;            /* planes per channel: the product of the strides */
  long group, ld;
  long pad_sz, wk_sz, prod_sz, yu_sz, dwk_sz; /* workspace pieces, scalars */
  bool by_tap;            /* one output channel: a product per tap, then their sum (tap_rows) */
  long tp, ldq;           /* its rows (the taps, a multiple of MR) and their length */
} Win;

/* The rows of a windowed product: the output channels, a multiple of MR
 * for mm_taps, or the one of mm_taps_row. */
static long product_rows(const Win *w) { return w->co == 1 ? 1 : round_up(w->co, MR_); }

/* The arrows one windowed product computes together: arrows into one
 * block with the same kernel, pads, dilation and stride, their sources' channels
 * stacked in the padded buffer (source j's from off[j]). */
enum { SET_MAX = 64 }; /* arrows in one windowed product */

typedef struct Set {
  const IrArrow *ar[SET_MAX];
  const char *z[SET_MAX]; /* the sources' buffers */
  const char *dw[SET_MAX]; /* the weights' gradients (kernel gradient only) */
  long off[SET_MAX + 1];  /* channel offsets; off[n] = all channels */
  int n;
} Set;

static bool windowed(const IrArrow *ar) { return ar->kind == ARROW_CONV && !ar->adjoint; }

/* floor(a / b) for b > 0 */
static long floor_div(long a, long b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* The whole strides c of tap k's offset k d - p0 along an axis: tap k reads
 * input (o + c) s + r, r what is left (its stride phase). */
static long tap_strides(const ConvAxis *x, long k) { return floor_div(k * x->dilation - x->pad0, x->stride); }

/* Tap t (row-major over the kernel's axes) split per axis: c[a] its whole
 * strides; returns its stride phase, the r of every axis in mixed radix
 * (the last axis fastest). */
static long tap_phase(const IrArrow *ar, long t, long *c) {
  long phase = 0, inner = 1;
  for (int a = ar->ngrid - 1; a >= 0; a--) {
    const ConvAxis *x = &ar->ax[a];
    long k = t % x->kernel;
    c[a] = tap_strides(x, k);
    phase += (k * x->dilation - x->pad0 - c[a] * x->stride) * inner;
    inner *= x->stride;
    t /= x->kernel;
  }
  return phase;
}

static bool same_window(const IrArrow *a, const IrArrow *b) {
  if (a->ngrid != b->ngrid)
    return false;
  for (int x = 0; x < a->ngrid; x++)
    if (a->ax[x].kernel != b->ax[x].kernel || a->ax[x].pad0 != b->ax[x].pad0 ||
        a->ax[x].pad1 != b->ax[x].pad1 || a->ax[x].dilation != b->ax[x].dilation ||
        a->ax[x].stride != b->ax[x].stride)
      return false;
  return true;
}

static bool win_of(Emit *e, const IrMachine *m, const Set *set, bool grad, Win *w) {
  const IrArrow *ar = set->ar[0];
  const IrBlock *d = IR_BLOCK(m, ar->dst);
  *w = (Win){.g = geom_of(m, ar), .ci = set->off[set->n], .co = d->shape.channels, .taps = 1};
  if (w->ci * w->co < SMALL)
    return false;
  const Geom *g = &w->g;
  w->nb = emit_nb(e->o);
  if (grad && 4 * w->co < w->nb) /* the gradient's panel would be mostly padding */
    return false;
  long esz = e->o->f32 ? 4 : 8;
  w->phases = 1;
  for (int a = 0; a < g->g; a++) {
    const ConvAxis *x = &ar->ax[a];
    w->taps *= x->kernel;
    w->phases *= x->stride;
    w->cmin[a] = tap_strides(x, 0);
    long cmax = tap_strides(x, x->kernel - 1);
    long held = (g->in[a] + x->stride - 1) / x->stride - w->cmin[a]; /* the longest phase, from u = cmin */
    w->ext[a] = g->out[a] + cmax - w->cmin[a];
    if (x->stride > 1 && held > w->ext[a])
      w->ext[a] = held;
    if (a > 0) { /* the zeros between two rows pad both: the left of one, the right of the other */
      if (x->stride == 1) {
        long p = x->pad0 > x->pad1 ? x->pad0 : x->pad1;
        held = g->in[a] + (p > 0 ? p : 0);
      } else { /* a window running past its row reads the next row's zeros before u = 0 */
        long need = g->out[a] + cmax - (w->cmin[a] > 0 ? w->cmin[a] : 0);
        held = held > need ? held : need;
      }
      w->ext[a] = held > g->out[a] ? held : g->out[a];
    }
  }
  w->kk = w->taps * w->ci;
  w->pstr[g->g - 1] = 1;
  for (int a = g->g - 2; a >= 0; a--)
    w->pstr[a] = w->pstr[a + 1] * w->ext[a + 1];
  w->plane = w->pstr[0] * w->ext[0];
  w->span = 1;
  for (int a = 0; a < g->g; a++)
    w->span += (g->out[a] - 1) * w->pstr[a];
  long mp = product_rows(w), kp = round_up(w->kk, MR_), cp = panel_cols(w->co, w->nb);
  w->by_tap = !grad && w->co == 1 && w->taps >= MR_ && w->phases == 1;
  w->tp = round_up(w->taps, MR_);
  long cb = !grad && w->co == 1 ? 4 * w->nb : w->nb; /* a block of the product's columns */
  /* standalone code, built for small memories, puts one sample in each
   * group of a product's columns: they are independent, so the outputs are
   * the same bits; a kernel gradient, which sums over its group, keeps them */
  long want = e->o->standalone && !grad ? 1 : (COLS + w->span - 1) / w->span;
  for (long n = want < MAX_GROUP ? want : MAX_GROUP; n >= 1; n--) {
    long cols = w->span * n;
    w->group = n;
    w->ld = round_up(cols, cb);
    w->pad_sz = w->ci * n * w->phases * w->plane + cb;
    if (grad) {
      w->yu_sz = cols * cp;
      w->dwk_sz = kp * cp;
    } else if (w->by_tap) {
      w->ldq = round_up(w->plane * n, w->nb);
      w->wk_sz = w->tp * w->ci;
      w->prod_sz = w->ld;
    } else {
      w->wk_sz = w->kk * mp;
      w->prod_sz = mp * w->ld;
    }
    long group = esz * (w->pad_sz + w->prod_sz + w->yu_sz + (w->by_tap ? w->tp * w->ldq : 0));
    long all = esz * (w->pad_sz + w->prod_sz + w->yu_sz + w->wk_sz + w->dwk_sz);
    if ((group <= GROUP_BYTES || n == 1) && all <= WORK_BYTES)
      return true;
  }
  return false;
}

/* pos * gs: an index over padded positions (and channels) scaled by the
 * samples of a group, innermost in pad; pos when groups hold one sample. */
static Ix by_gs(Emit *e, const Win *w, Ix pos) {
  if (w->group == 1)
    return pos;
  if (pos.n == 0)
    return pos;
  if (pos.n == 1 && !pos.t[0].atom)
    return ix_term("gs", pos.t[0].coef);
  bool bare = pos.n == 1 && !pos.t[0].sum && pos.t[0].coef == 1;
  return ix_var(arena_printf(e->a, bare ? "%s * gs" : "(%s) * gs", ix_text(e->a, pos)));
}

/* The step between two channels of pad: the padded planes of every sample. */
static const char *channel_step(Emit *e, const Win *w) {
  long step = w->phases * w->plane;
  return w->group == 1 ? num(e, step) : arena_printf(e->a, "%ld * gs", step);
}

/* Where the tap k starts in a sample's padded grid (k*d along each axis),
 * times gs; with more than one sample per group, also gs itself. */
static void emit_tap_at(Emit *e, const IrArrow *ar, const Win *w) {
  if (w->group > 1) { /* the batch cut into groups of at most w->group samples, as equal as can be */
    emit_line(e, "const long groups = (batch + %ld) / %ld;", w->group - 1, w->group);
    emit_line(e, "const long gs = (batch + groups - 1) / groups; /* samples per group */");
  }
  StrBuf sb = {0};
  for (long t = 0; t < w->taps; t++) {
    long c[IR_MAX_GRID], off = tap_phase(ar, t, c) * w->plane;
    for (int a = 0; a < w->g.g; a++)
      off += (c[a] - w->cmin[a]) * w->pstr[a];
    sb_printf(&sb, "%s%s", t ? ", " : "", ix_text(e->a, by_gs(e, w, ix_const(off))));
  }
  emit_line(e, "const long tap_at[%ld] = {%s};", w->taps, sb.data);
  sb_free(&sb);
  if (w->by_tap) { /* tap_rows's product of one tap over the whole plane */
    emit_line(e, "const long whole[1] = {0}, all[2] = {0, %s};", channel_step(e, w));
    return;
  }
  /* the rows o0 of outputs whose input o0 + k0 d - p0 lies in [0, in) on
   * the first axis, as columns: their padded positions times gs */
  const ConvAxis *x = &ar->ax[0];
  long per_k0 = w->taps / x->kernel, row = w->g.g > 1 ? w->pstr[0] : 1;
  StrBuf on = {0};
  for (long t = 0; t < w->taps; t++) {
    long k0 = t / per_k0, shift = k0 * x->dilation - x->pad0; /* o s + shift in [0, in) */
    long lo = -floor_div(shift, x->stride), hi = -floor_div(shift - w->g.in[0], x->stride);
    lo = lo > 0 ? lo : 0;
    hi = hi < w->g.out[0] ? hi : w->g.out[0];
    if (hi < lo)
      hi = lo;
    sb_printf(&on, "%s%s, %s", t ? ", " : "", ix_text(e->a, by_gs(e, w, ix_const(lo * row))),
              ix_text(e->a, by_gs(e, w, ix_const(hi * row))));
  }
  emit_line(e, "/* tap k reads the grid for the columns [tap_on[2 k], tap_on[2 k + 1]): zeros elsewhere */");
  emit_line(e, "const long tap_on[%ld] = {%s};", 2 * w->taps, on.data);
  sb_free(&on);
}

/* The columns of a group's product: (span - 1) * gs + group, the padded
 * positions from the first output to the last + 1, each with its samples. */
static const char *group_cols(Emit *e, const Win *w) {
  if (w->group == 1)
    return num(e, w->span);
  return arena_printf(e->a, "%ld * gs + group", w->span - 1);
}

/* Declares a buffer of a windowed product's scratch, `size` scalars: in a
 * binary, an array on the stack of the thread that runs the product (each
 * thread of a split its own); standalone code, which must run in a small
 * stack, takes them from the caller's workspace, at *at. */
static void emit_scratch(Emit *e, const char *name, long size, long *at, const char *what) {
  if (e->o->standalone)
    emit_line(e, "real *const %s = work + %ld; /* %s */", name, *at, what);
  else
    emit_line(e, "real %s[%ld]; /* %s */", name, size, what);
  *at += size;
}

static void emit_pad_decl(Emit *e, const Win *w, long *at) {
  const char *what = w->phases == 1 ? arena_printf(e->a, "pad[ci, x, n]: %ld x %ld", w->ci, w->plane)
                                    : arena_printf(e->a, "pad[ci, r, x, n]: %ld x %ld x %ld", w->ci, w->phases,
                                                   w->plane);
  emit_scratch(e, "pad", w->pad_sz, at,
               arena_printf(e->a, "%s x %s, + NB read past the end", what, w->group == 1 ? "1" : "gs"));
}

/* The loop over a group's samples: "group" of them, or the one sample n0
 * when groups hold one. */
static EmitLoop group_loop(const Win *w) {
  return w->group > 1 ? (EmitLoop){.var = "n", .hi = "group"} : (EmitLoop){.var = "n", .n = 1};
}

/* Opens the region in which the threads share out the groups of samples of
 * a windowed product (co x kk multiply-adds per padded position of a
 * sample) when split_groups says so (a binary built with OpenMP; otherwise
 * its kernels split each group's product): each thread declares its scratch
 * after this. */
static void open_group_region(Emit *e, const Win *w) {
  if (!e->o->standalone)
    emit_omp(e->c, "parallel if (split_groups(%s, (double)batch * %ld))", w->group > 1 ? "groups" : "batch",
             w->co * w->kk * w->span);
  emit_scope(e);
}

/* Where element ix (the loop indices ci, n, r0, x0, r1, x1, ...) of source
 * j lies in pad (*pi; the n of ix left out when `row`) and in z_j (*zi). */
static void pad_ixs(Emit *e, const Set *set, const Win *w, int j, const IrBlock *s, const Ix *ix, bool row,
                    Ix *pi, Ix *zi) {
  const Geom *g = &w->g;
  const IrArrow *ar = set->ar[0];
  Ix phase = ix_const(0);
  for (int a = 0; a < g->g; a++)
    phase = ix_nest(e->a, phase, ar->ax[a].stride, ix[2 + 2 * a]);
  *pi = ix_scale(e->a, ix_nest(e->a, ix_add(ix_const(set->off[j]), ix[0]), w->phases, phase), w->plane);
  *zi = ix_add(ix_scale(e->a, ix_add(ix_var("n0"), ix[1]), s->size), ix_scale(e->a, ix[0], g->in_size));
  for (int a = 0; a < g->g; a++) {
    Ix u = ix_addc(ix[3 + 2 * a], w->cmin[a]); /* input u s + r */
    *pi = ix_add(*pi, ix_scale(e->a, ix[3 + 2 * a], w->pstr[a]));
    *zi = ix_add(*zi, ix_scale(e->a, ix_add(ix_scale(e->a, u, ar->ax[a].stride), ix[2 + 2 * a]), g->in_str[a]));
  }
  *pi = ix_add(by_gs(e, w, *pi), row ? ix_const(0) : ix[1]);
}

/* The copy of one element (or with `row`, a row of that many) of source j
 * into pad, ix the loop indices (ci, n, r0, x0, r1, x1, ...). */
static void pad_line(Emit *e, const Set *set, const Win *w, int j, const IrBlock *s, const Ix *ix, long row) {
  Ix pi, zi;
  pad_ixs(e, set, w, j, s, ix, row > 0, &pi, &zi);
  if (row)
    emit_line(e, "memcpy(%s, %s, sizeof(real) * %ld);", ix_at(e->a, "pad", pi), ix_at(e->a, set->z[j], zi), row);
  else
    emit_line(e, "pad[%s] = %s[%s];", ix_text(e->a, pi), set->z[j], ix_text(e->a, zi));
}

/* base[ix] as text */
static const char *ix_at_text(Emit *e, const char *base, Ix ix) {
  return arena_printf(e->a, "%s[%s]", base, ix_text(e->a, ix));
}

/* A block of a transpose through run[tb][len]: run[q][x] = from (read as
 * it lies, x innermost), then to = run[q][x] (q innermost); from and to are
 * element texts in q and x, what the comment on run. */
static void emit_turn(Emit *e, long tb, long len, const char *what, const char *from, const char *to) {
  emit_line(e, "real run[%ld][%ld]; /* %s */", tb, len, what);
  int block = e->depth;
  emit_head(e, "for (int q = 0; q < %ld; q++)", tb);
  emit_head(e, "for (int x = 0; x < %ld; x++)", len);
  emit_line(e, "run[q][x] = %s;", from);
  emit_close_to(e, block);
  emit_head(e, "for (int x = 0; x < %ld; x++)", len);
  emit_head(e, "for (int q = 0; q < %ld; q++)", tb);
  emit_line(e, "%s = run[q][x];", to);
  emit_close_to(e, block);
}

/* pad holds the samples of a group innermost, z outermost: the copy is a
 * transpose. Element by element it is a scalar load and store each (clang
 * scatters the stores); through a block run[TB][L] of TB samples' rows of the
 * last axis, read as they lie and written turned, clang transposes with
 * shuffles (conv[32]*5's forward: 504 -> 471 us). Unit strides only, rows
 * of at most ROW_RUN; not in standalone code, whose stack is small. The
 * samples past the last whole block go one by one. */
enum { ROW_RUN = 64 };

static bool pad_by_blocks(const Emit *e, const Win *w, const EmitLoop *l, int last) {
  return !e->o->standalone && w->phases == 1 && !l[last].hi && l[last].n > 1 && l[last].n <= ROW_RUN;
}

static void pad_blocks(Emit *e, const Set *set, const Win *w, int j, const IrBlock *s, const EmitLoop *l, int last) {
  long tb = emit_nb(e->o) / 2, len = l[last].n;
  Ix idx[2 + 2 * IR_MAX_GRID], pi, zi;
  int base = emit_loops(e, l, 1, true, idx);
  emit_line(e, "long n = 0;");
  bool outer = false; /* axes before the last that open a loop */
  for (int i = 2; i < last; i++)
    outer |= l[i].hi || l[i].n != 1;
  if (outer) {
    emit_head(e, "for (; n + %ld <= group; n += %ld)", tb, tb);
    emit_loops(e, l + 2, last - 2, true, idx + 2);
  } else {
    emit_open(e, "for (; n + %ld <= group; n += %ld)", tb, tb);
    emit_loops(e, l + 2, last - 2, false, idx + 2);
  }
  idx[1] = ix_add(ix_var("n"), ix_var("q"));
  idx[last] = ix_addc(ix_var("x"), l[last].lo);
  pad_ixs(e, set, w, j, s, idx, false, &pi, &zi);
  emit_turn(e, tb, len, arena_printf(e->a, "%ld samples' rows, turned on their way into pad", tb),
            ix_at_text(e, set->z[j], zi), ix_at_text(e, "pad", pi));
  emit_close_to(e, base + 1);
  emit_head(e, "for (; n < group; n++)");
  emit_loops(e, l + 2, last - 1, false, idx + 2);
  idx[1] = ix_var("n");
  pad_line(e, set, w, j, s, idx, 0);
  emit_close_to(e, base);
}

/* Zeroes pad's first pad_sz scalars, once: every group writes the same
 * positions on the grid. Then opens the loop over groups of samples
 * (shared out among the threads of the region; `ordered`: their sums are
 * added in the order of the groups, so that any number of threads gives the
 * same bits). */
static void open_groups(Emit *e, const Win *w, long pad_sz, bool ordered) {
  emit_line(e, "memset(pad, 0, sizeof(real) * %ld);", pad_sz);
  if (!e->o->standalone)
    emit_omp(e->c, "for schedule(static%s", ordered ? ", 1) ordered" : ")");
  if (w->group > 1) {
    emit_open(e, "for (long n0 = 0; n0 < batch; n0 += gs)");
    emit_line(e, "const long group = batch - n0 < gs ? batch - n0 : gs;");
  } else {
    emit_open(e, "for (long n0 = 0; n0 < batch; n0++)");
  }
}

/* Copies a group's inputs into pad[c, x, n] = z_j[n0 + n, c - off[j], x - p0],
 * zero off the grid (inside the loop over groups), but those j with held[j]
 * (held NULL: none), already there. */
static void copy_group(Emit *e, const IrMachine *m, const Set *set, const Win *w, const bool *held) {
  const Geom *g = &w->g;
  const IrArrow *ar = set->ar[0];
  for (int j = 0; j < set->n; j++) {
    if (held && held[j])
      continue;
    const IrBlock *s = IR_BLOCK(m, set->ar[j]->src);
    /* per axis, the phase r (one when the stride is 1) and the position u of
     * the input u s + r, held at x = u - cmin: the x whose input lies in
     * [0, in) (within the plane for stride 1; a strided plane holds them all) */
    EmitLoop l[2 + 2 * IR_MAX_GRID] = {{.var = "ci", .n = s->shape.channels}, group_loop(w)};
    for (int a = 0; a < g->g; a++) {
      int st = ar->ax[a].stride;
      long lo = -w->cmin[a] > 0 ? -w->cmin[a] : 0;
      l[2 + 2 * a] = (EmitLoop){.var = var(e, 'r', a), .n = st};
      if (st == 1)
        l[3 + 2 * a] = (EmitLoop){.var = var(e, 'x', a), .lo = lo,
                                  .n = (g->in[a] - w->cmin[a] < w->ext[a] ? g->in[a] - w->cmin[a] : w->ext[a]) - lo};
      else
        l[3 + 2 * a] = (EmitLoop){.var = var(e, 'x', a), .lo = lo,
                                  .hi = arena_printf(e->a, "(%ld - r%d) / %d", g->in[a] + st - 1 - w->cmin[a] * st, a,
                                                     st)};
    }
    Ix idx[2 + 2 * IR_MAX_GRID];
    int last = 1 + 2 * g->g, st = ar->ax[g->g - 1].stride;
    if (w->group == 1 && st == 1) { /* the last axis, unit stride on both sides: one row copy */
      int base = emit_loops(e, l, last, false, idx);
      idx[last] = ix_const(l[last].lo);
      pad_line(e, set, w, j, s, idx, l[last].n);
      emit_close_to(e, base);
    } else if (w->group == 1) {
      /* a strided last axis: a row of z read as it lies, its phases dealt
       * out in turn (clang vectorizes the strided reads with shuffles), the
       * positions all phases hold first, then those of the first phases */
      long cm = w->cmin[g->g - 1], lo = l[last].lo, full = floor_div(g->in[g->g - 1] - cm * st, st);
      long rem = full >= lo ? g->in[g->g - 1] - (full + cm) * st : 0;
      int base = emit_loops(e, l, last - 1, rem > 0, idx);
      int inner = e->depth;
      EmitLoop xr[2] = {{.var = l[last].var, .lo = lo, .n = full > lo ? full - lo : 0}, l[last - 1]};
      Ix xi[2];
      if (xr[0].n > 0) {
        emit_loops(e, xr, 2, false, xi);
        idx[last] = xi[0], idx[last - 1] = xi[1];
        pad_line(e, set, w, j, s, idx, 0);
        emit_close_to(e, inner);
      }
      if (rem > 0) { /* x = full: the phases r < rem only */
        emit_loops(e, &(EmitLoop){.var = l[last - 1].var, .n = rem}, 1, false, &idx[last - 1]);
        idx[last] = ix_const(full);
        pad_line(e, set, w, j, s, idx, 0);
      }
      emit_close_to(e, base);
    } else if (pad_by_blocks(e, w, l, last)) {
      pad_blocks(e, set, w, j, s, l, last);
    } else {
      int base = emit_loops(e, l, last + 1, false, idx);
      pad_line(e, set, w, j, s, idx, 0);
      emit_close_to(e, base);
    }
  }
}

/* The loop over groups opened, and the group's inputs copied into pad. */
static void emit_pad(Emit *e, const IrMachine *m, const Set *set, const Win *w, bool ordered) {
  open_groups(e, w, w->pad_sz, ordered);
  copy_group(e, m, set, w, NULL);
}

/* For the indices idx = (co, n, o...) of a group's output: returns the
 * index of (u, n) in a row of the product, u = o . pstr, and sets *yi to
 * the index of y[n0 + n, co, o] in block d. */
static Ix outputs_ix(Emit *e, const Win *w, const IrBlock *d, const Ix *idx, Ix *yi) {
  const Geom *g = &w->g;
  Ix u = ix_const(0);
  *yi = ix_add(ix_scale(e->a, ix_add(ix_var("n0"), idx[1]), d->size), ix_scale(e->a, idx[0], g->out_size));
  for (int a = 0; a < g->g; a++) {
    u = ix_add(u, ix_scale(e->a, idx[2 + a], w->pstr[a]));
    *yi = ix_add(*yi, ix_scale(e->a, idx[2 + a], g->out_str[a]));
  }
  return w->group == 1 ? u : ix_add(by_gs(e, w, u), idx[1]);
}

/* The loops over (co, n, o...) of a group's outputs. */
static void output_loops(Emit *e, const Win *w, EmitLoop *l) {
  l[0] = (EmitLoop){.var = "co", .n = w->co}, l[1] = group_loop(w);
  for (int a = 0; a < w->g.g; a++)
    l[2 + a] = (EmitLoop){.var = var(e, 'o', a), .n = w->g.out[a]};
}

/* Opens the loops over (co, n, o...) of a group's outputs, all but the
 * last axis when `rows` (the caller moves a row); returns outputs_ix's
 * index of (u, n) and sets its *yi, and *co to the channel's index. */
static Ix open_outputs(Emit *e, const Win *w, const IrBlock *d, bool rows, Ix *yi, Ix *co) {
  const Geom *g = &w->g;
  EmitLoop l[2 + IR_MAX_GRID];
  output_loops(e, w, l);
  Ix idx[2 + IR_MAX_GRID];
  emit_loops(e, l, 1 + g->g + !rows, false, idx);
  if (rows)
    idx[1 + g->g] = ix_const(0);
  *co = idx[0];
  return outputs_ix(e, w, d, idx, yi);
}

/* yu[(u, n), co] = ybar[n0 + n, co, o] over a group's outputs: a transpose
 * of the channels and the positions, by blocks run[TB][L] of TB channels'
 * rows of the last axis where they fill one (as pad_blocks; the channels
 * past the last whole block one by one). */
static void emit_yu(Emit *e, const Win *w, const IrBlock *d, const char *ybar, long cp) {
  const Geom *g = &w->g;
  EmitLoop l[2 + IR_MAX_GRID];
  output_loops(e, w, l);
  Ix idx[2 + IR_MAX_GRID], yi;
  int last = 1 + g->g, base = e->depth;
  long tb = emit_nb(e->o) / 2, len = g->out[g->g - 1], whole = w->co / tb * tb;
  if (e->o->standalone || whole == 0 || len < 2 || len > ROW_RUN)
    whole = 0;
  if (whole > 0) {
    if (whole > tb)
      emit_head(e, "for (long c0 = 0; c0 < %ld; c0 += %ld)", whole, tb);
    emit_loops(e, l + 1, last - 1, true, idx + 1);
    idx[0] = whole > tb ? ix_add(ix_var("c0"), ix_var("q")) : ix_var("q");
    idx[last] = ix_var("x");
    Ix u = outputs_ix(e, w, d, idx, &yi);
    Ix c0 = whole > tb ? ix_var("c0") : ix_const(0);
    emit_turn(e, tb, len, arena_printf(e->a, "%ld channels' rows, turned on their way into yu", tb),
              ix_at_text(e, ybar, yi), ix_at_text(e, "yu", ix_add(ix_add(ix_scale(e->a, u, cp), c0), ix_var("q"))));
    emit_close_to(e, base);
    l[0] = (EmitLoop){.var = "co", .lo = whole, .n = w->co - whole};
  }
  if (w->co > whole) {
    emit_loops(e, l, last + 1, false, idx);
    Ix u = outputs_ix(e, w, d, idx, &yi);
    emit_line(e, "yu[%s] = %s[%s];", ix_text(e->a, ix_add(ix_scale(e->a, u, cp), idx[0])), ybar, ix_text(e->a, yi));
    emit_close_to(e, base);
  }
}

/* The loops over the taps and the channels of source j, p = (k, off[j] + ci)
 * the row of the stacked patch matrix, for reading or writing its W[k, ci, co]
 * beside the packed wk[p, co]; then the loop over co. Sets *wix to the index
 * of W[k, ci, co], *base to the depth to close to, and returns co's index.
 * With tap_ci, p is not declared: tap_ci gets the tap's index and the
 * stacked channel's, off[j] + ci. */
static Ix open_kernel_rows(Emit *e, const Set *set, int j, const Win *w, Ix *wix, int *base, Ix *tap_ci) {
  const IrArrow *ar = set->ar[j];
  EmitLoop l[1 + IR_MAX_GRID];
  for (int a = 0; a < w->g.g; a++)
    l[a] = (EmitLoop){.var = var(e, 'k', a), .n = ar->ax[a].kernel};
  l[w->g.g] = (EmitLoop){.var = "ci", .n = set->off[j + 1] - set->off[j]};
  Ix idx[1 + IR_MAX_GRID];
  *base = emit_loops(e, l, w->g.g + 1, !tap_ci, idx);
  Ix tap = ix_const(0); /* the tap's index, k0 * K1 + k1 ... */
  for (int a = 0; a < w->g.g; a++)
    tap = ix_nest(e->a, tap, ar->ax[a].kernel, idx[a]);
  Ix ci = idx[w->g.g];
  if (tap_ci) { /* the stacked channel's row of taps instead of p */
    tap_ci[0] = tap, tap_ci[1] = ix_addc(ci, set->off[j]);
  } else {
    emit_line(e, "const long p = %s;", ix_text(e->a, ix_add(ix_addc(ix_scale(e->a, tap, w->ci), set->off[j]), ci)));
  }
  Ix co;
  emit_loops(e, &(EmitLoop){.var = "co", .n = w->co}, 1, false, &co);
  *wix = emit_weight_ix(e, ar, idx, ci, co);
  return co;
}

/* The first lines of the comment over a windowed product: the arrows and
 * their equation; how it runs follows. */
static void win_comment(Emit *e, const Set *set, const char *y) {
  Taps tp = taps_of(e, set->ar[0]);
  const char *out, *in;
  pos_texts(e, set->ar[0], &tp, &out, &in);
  emit_line(e, "/* %s += %s", y, ir_arrow_text(e->a, e->m, set->ar[0], set->z[0], IR_TEXT_MATH));
  for (int j = 1; j < set->n; j++)
    emit_line(e, " *    + %s", ir_arrow_text(e->a, e->m, set->ar[j], set->z[j], IR_TEXT_MATH));
  emit_line(e, " * y[n, co, %s] += sum over k, ci of W[k, ci, co] z[n, ci, %s]%s:", out, in,
            set->n > 1 ? ", their channels stacked" : "");
}

/* The arrows of list[0 .. n) (into one block) that join the windowed product
 * of the first windowed one among them, with their sources' channels. */
static Set set_of(const IrMachine *m, const int *list, const char *const *zs, int n, const bool *done) {
  Set set = {.n = 0};
  for (int i = 0; i < n && set.n < SET_MAX; i++) {
    const IrArrow *ar = IR_ARROW(m, list[i]);
    if (done[i] || !windowed(ar) || (set.n && !same_window(set.ar[0], ar)))
      continue;
    set.ar[set.n] = ar;
    set.z[set.n] = zs[i];
    set.off[set.n + 1] = set.off[set.n] + IR_BLOCK(m, ar->src)->shape.channels;
    set.n++;
  }
  return set;
}

/* z[k] = sigma(y[k]) for the block act solves, k the text of an index. */
static void emit_act(Emit *e, const EmitAct *act, const char *y, const char *k) {
  emit_line(e, "%s[%s] = %s;", act->z, k, act->expr(e, act->block, y, k));
}

/* The product into one output channel, as many rows as taps: with a row of
 * C per tap, q[k, (x, n)] = sum over ci of wk[ci, k] pad[ci, x, n] over the
 * whole padded plane is mm_taps's product of one tap (MR rows of C for each
 * load of B); then prod[(u, n)] = sum over k of q[k, (u, n) + tap_at[k]], in
 * the order of the taps. mm_taps_row, one row of C, loads a vector of B for
 * each multiply-add: the input adjoint of conv2d[1,16*4] ran at a quarter of
 * the products' speed. */
static void tap_rows(Emit *e, const Win *w, const char *wk, const char *b) {
  const char *cols = group_cols(e, w), *plane = channel_step(e, w);
  emit_line(e, "/* q[k, (x, n)] = sum over ci of %s[ci, k] pad[ci, x, n]: each tap's product */", wk);
  emit_call(e, "mm_taps", (EmitArg[]){{"m", num(e, w->tp)}, {"n", plane}, {"taps", "1"},
                                      {"ch", num(e, w->ci)}, {"a", wk}, {"b", b},
                                      {"tap_at", "whole"}, {"tap_on", "all"},
                                      {"bcs", plane}, {"c", "q"}, {"ldc", num(e, w->ldq)}},
            (int[]){4, 4, 3}, 3);
  emit_line(e, "/* prod[(u, n)] = sum over k of q[k, (u, n) + tap_at[k]] */");
  int base = e->depth;
  emit_head(e, "for (long u = 0; u < %s; u++)", cols);
  emit_line(e, "prod[u] = q[tap_at[0] + u];");
  emit_close_to(e, base);
  emit_head(e, "for (long k = 1; k < %ld; k++)", w->taps);
  emit_head(e, "for (long u = 0; u < %s; u++)", cols);
  emit_line(e, "prod[u] += q[k * %ld + tap_at[k] + u];", w->ldq);
  emit_close_to(e, base);
}

/* wk = the weights of set, packed as the product reads them, at work + at. */
static void win_weights(Emit *e, const Set *set, const Win *w, const char *wk, long at) {
  long mp = product_rows(w);
  const char *where = at ? arena_printf(e->a, "work + %ld", at) : "work";
  if (w->by_tap)
    emit_line(e, "real *const %s = %s; /* %s[ci * %ld + k] = W[k, ci, 0], the one output channel%s */", wk, where,
              wk, w->tp, w->tp > w->taps ? ", 0 past the taps" : "");
  else if (mp == 1)
    emit_line(e, "real *const %s = %s; /* %s[(k, ci)] = W[k, ci, 0], the one output channel */", wk, where, wk);
  else
    emit_line(e, "real *const %s = %s; /* %s[(k, ci) * %ld + co] = W[k, ci, co]%s */", wk, where, wk, mp,
              mp > w->co ? ", 0 past the channels" : "");
  if (mp > w->co || (w->by_tap && w->tp > w->taps))
    emit_line(e, "memset(%s, 0, sizeof(real) * %ld);", wk, w->wk_sz);
  for (int j = 0; j < set->n; j++) {
    Ix wix, tap_ci[2];
    int rows;
    Ix co = open_kernel_rows(e, set, j, w, &wix, &rows, w->by_tap ? tap_ci : NULL);
    Ix wi = w->by_tap ? ix_add(ix_scale(e->a, tap_ci[1], w->tp), tap_ci[0]) : ix_add(ix_term("p", mp), co);
    emit_line(e, "%s[%s] = %s[%s];", wk, ix_text(e->a, wi), emit_pname(e, set->ar[j]->w.param), ix_text(e->a, wix));
    emit_close_to(e, rows);
  }
}

/* prod = the group's product of the weights wk and the padded inputs, from
 * pad's channel c0 on. */
static void win_product(Emit *e, const Win *w, const char *wk, long c0) {
  long mp = product_rows(w);
  const char *b = c0 ? arena_printf(e->a, "pad + %ld", c0 * w->phases * w->plane) : "pad";
  if (w->by_tap) {
    tap_rows(e, w, wk, b);
    return;
  }
  emit_line(e, "/* prod[co, (u, n)] = sum over k, ci of %s[(k, ci), co] pad[%sci, u + tap_at[k], n] */", wk,
            c0 ? arena_printf(e->a, "%ld + ", c0) : "");
  if (mp == 1)
    emit_call(e, "mm_taps_row", (EmitArg[]){{"n", group_cols(e, w)}, {"taps", num(e, w->taps)},
                                            {"ch", num(e, w->ci)}, {"a", wk}, {"b", b},
                                            {"tap_at", "tap_at"}, {"tap_on", "tap_on"},
                                            {"bcs", channel_step(e, w)}, {"c", "prod"}},
              (int[]){3, 4, 2}, 3);
  else
    emit_call(e, "mm_taps", (EmitArg[]){{"m", num(e, mp)}, {"n", group_cols(e, w)}, {"taps", num(e, w->taps)},
                                        {"ch", num(e, w->ci)}, {"a", wk}, {"b", b},
                                        {"tap_at", "tap_at"}, {"tap_on", "tap_on"},
                                        {"bcs", channel_step(e, w)}, {"c", "prod"}, {"ldc", num(e, w->ld)}},
              (int[]){4, 4, 3}, 3);
}

/* y (+)= the group's product (with first: as first says, and z = sigma(y)). */
static void win_outputs(Emit *e, const Set *set, const Win *w, const char *y, const EmitFirst *first) {
  const EmitAct *act = first ? first->act : NULL;
  const IrBlock *d = IR_BLOCK(e->m, set->ar[0]->dst);
  Ix yi, co;
  int outs = e->depth;
  bool rows = w->group == 1; /* then a row of y is a run of prod */
  Ix u = open_outputs(e, w, d, rows, &yi, &co);
  long row = w->g.out[w->g.g - 1];
  Ix pi = ix_add(ix_scale(e->a, co, w->ld), u);
  const char *bias = first ? first->bias : NULL, *init = first ? first->init : NULL;
  const char *yt = ix_text(e->a, yi), *pt = ix_text(e->a, pi), *ct = ix_text(e->a, co);
  if (act && rows) { /* y = prod (+ bias or init) and z = sigma(y) along a row, while y is in registers */
    const char *o = var(e, 'o', w->g.g - 1);
    const char *masked = emit_masked(e, row, act->expr(e, act->block, y, "yk"));
    emit_open(e, "%sfor (long %s = 0; %s < %ld; %s++)", masked, o, o, row, o);
    emit_line(e, "const long yk = %s;", ix_text(e->a, ix_add(yi, ix_var(o))));
    const char *pk = ix_text(e->a, ix_add(pi, ix_var(o)));
    if (init)
      emit_line(e, "%s[yk] = %s[yk] + prod[%s];", y, init, pk);
    else if (bias)
      emit_line(e, "%s[yk] = prod[%s] + %s[%s];", y, pk, bias, ct);
    else
      emit_line(e, "%s[yk] = prod[%s];", y, pk);
    emit_act(e, act, y, "yk");
  } else if (!rows) {
    if (!first)
      emit_line(e, "%s[%s] += prod[%s];", y, yt, pt);
    else if (init)
      emit_line(e, "%s[%s] = %s[%s] + prod[%s];", y, yt, init, yt, pt);
    else if (bias)
      emit_line(e, "%s[%s] = prod[%s] + %s[%s];", y, yt, pt, bias, ct);
    else
      emit_line(e, "%s[%s] = prod[%s];", y, yt, pt);
  } else if (first && bias) {
    emit_line(e, "copy_plus(%s, %s, %s[%s], %ld);", ix_at(e->a, y, yi), ix_at(e->a, "prod", pi), bias, ct, row);
  } else if (first && !init) {
    emit_line(e, "memcpy(%s, %s, sizeof(real) * %ld);", ix_at(e->a, y, yi), ix_at(e->a, "prod", pi), row);
  } else { /* a call, not a loop: clang would gather across the rows */
    if (init)
      emit_line(e, "memcpy(%s, %s, sizeof(real) * %ld);", ix_at(e->a, y, yi), ix_at(e->a, init, yi), row);
    emit_line(e, "add_to(%s, %s, %ld);", ix_at(e->a, y, yi), ix_at(e->a, "prod", pi), row);
  }
  emit_close_to(e, outs);
  if (act && !rows) { /* z = sigma(y) over the group's samples, while their y is in cache */
    long size = d->size;
    emit_head(e, "for (long k = %s; k < %s; k++)", ix_text(e->a, ix_term("n0", size)),
              ix_text(e->a, ix_term("(n0 + group)", size)));
    emit_act(e, act, y, "k");
  }
}

/* y += the arrows of set (with first: y = their sum, + first's bias or
 * init, and z = sigma(y) with its act), as one windowed product per group
 * of samples. */
static void conv_win(Emit *e, const Set *set, const Win *w, const char *y, const EmitFirst *first) {
  long mp = product_rows(w);
  win_comment(e, set, y);
  emit_line(e, " * per group of %ld sample%s, z zero-padded into the workspace, then one product", w->group,
            w->group > 1 ? "s" : "");
  if (w->by_tap) {
    emit_line(e, " * (k x ci) (ci x (x, n)) of inner dimension %ld, a row per tap over the whole padded", w->ci);
    emit_line(e, " * input, then the sum of the taps' rows, each shifted by its tap; the groups are");
  } else {
    emit_line(e, " * (co x (k, ci)) ((k, ci) x (u, n)) of inner dimension %ld, the patch matrix", w->kk);
    emit_line(e, " * read in place from the padded input (u: padded positions); the groups are");
  }
  emit_line(e, " * independent, shared out among the threads */");
  int base = e->depth;
  emit_scope(e);
  long at = 0;
  win_weights(e, set, w, "wk", 0);
  at += w->wk_sz;
  emit_tap_at(e, set->ar[0], w);
  open_group_region(e, w);
  emit_pad_decl(e, w, &at);
  emit_scratch(e, "prod", w->prod_sz, &at, arena_printf(e->a, "prod[co, (u, n)]: %ld x %ld", mp, w->ld));
  if (w->by_tap)
    emit_scratch(e, "q", w->tp * w->ldq, &at, arena_printf(e->a, "q[k, (x, n)]: %ld x %ld", w->tp, w->ldq));
  emit_pad(e, e->m, set, w, false);
  win_product(e, w, "wk", 0);
  win_outputs(e, set, w, y, first);
  emit_close_to(e, base);
  long need = e->o->standalone ? at : w->wk_sz;
  if (need > e->work)
    e->work = need;
}

/* dwk = the group's kernel gradient of the products of w: the padded
 * inputs from pad's channel c0 on against yu. */
static void grad_product(Emit *e, const Win *w, const char *dwk, long c0) {
  long cp = panel_cols(w->co, w->nb);
  const char *a = c0 ? arena_printf(e->a, "pad + %ld", c0 * w->phases * w->plane) : "pad";
  emit_line(e, "memset(%s, 0, sizeof(real) * %ld);", dwk, w->dwk_sz);
  emit_line(e, "/* %s[(k, ci), co] = sum over (u, n) of pad[%sci, u + tap_at[k], n] yu[(u, n), co] */", dwk,
            c0 ? arena_printf(e->a, "%ld + ", c0) : "");
  Ix j = ix_const(0); /* blocks of NB columns of co; one block: no loop */
  int blocks = e->depth;
  if (cp > w->nb) {
    emit_head(e, "for (long j = 0; j < %ld; j += NB)", cp);
    j = ix_var("j");
  }
  emit_call(e, "mm_rows", (EmitArg[]){{"m", num(e, w->kk)}, {"k", group_cols(e, w)}, {"ch", num(e, w->ci)},
                                      {"a", a}, {"tap_at", "tap_at"}, {"tap_on", "tap_on"},
                                      {"acs", channel_step(e, w)},
                                      {"panel", ix_at(e->a, "yu", j)}, {"ldp", num(e, cp)},
                                      {"cols", cp < w->nb ? "NB / 2" : "NB"},
                                      {"c", ix_at(e->a, dwk, j)}, {"ldc", num(e, cp)}}, (int[]){3, 4, 3, 2}, 4);
  emit_close_to(e, blocks);
}

/* dW of each arrow of set += its rows of dwk. */
static void grad_add(Emit *e, const Set *set, const Win *w, const char *dwk) {
  long cp = panel_cols(w->co, w->nb);
  for (int k = 0; k < set->n; k++) {
    emit_line(e, "/* d%s[k, ci, co] += %s[(k, ci), co] */", IR_PARAM(e->primal, set->ar[k]->w.param)->name, dwk);
    Ix wix;
    int rows;
    Ix c = open_kernel_rows(e, set, k, w, &wix, &rows, NULL);
    emit_line(e, "%s[%s] += %s[%s];", set->dw[k], ix_text(e->a, wix), dwk,
              ix_text(e->a, ix_add(ix_term("p", cp), c)));
    emit_close_to(e, rows);
  }
}

/* dW += the kernel gradients of the arrows of set, as one windowed product
 * per group of samples. */
static void conv_grad_win(Emit *e, const Set *set, const Win *w, const char *ybar) {
  const IrBlock *d = IR_BLOCK(e->primal, set->ar[0]->dst);
  long cp = panel_cols(w->co, w->nb), kp = round_up(w->kk, MR_);
  emit_line(e, "/* per group of %ld sample%s, z zero-padded into the workspace, then one product",
            w->group, w->group > 1 ? "s" : "");
  emit_line(e, " * ((k, ci) x (u, n)) ((u, n) x co) of inner dimension the group's padded positions,");
  emit_line(e, " * the patch matrix read in place from the padded input; the groups shared out");
  emit_line(e, " * among the threads, each group's sum added to dW in the order of the groups */");
  int base = e->depth;
  emit_scope(e);
  emit_tap_at(e, set->ar[0], w);
  open_group_region(e, w);
  long at = 0;
  emit_pad_decl(e, w, &at);
  emit_scratch(e, "yu", w->yu_sz, &at,
               arena_printf(e->a, "yu[(u, n), co] = ybar[n0 + n, co, o], 0 off the grid: %ld x %ld", w->ld, cp));
  emit_scratch(e, "dwk", w->dwk_sz, &at, arena_printf(e->a, "dwk[(k, ci), co]: %ld x %ld, a group's sum", kp, cp));
  emit_line(e, "memset(yu, 0, sizeof(real) * %ld);", w->yu_sz);
  emit_pad(e, e->primal, set, w, true);
  if (w->group > 1) {
    int last = e->depth;
    emit_head(e, "if (group < gs) /* the last group: zero past its samples */");
    emit_line(e, "memset(yu, 0, sizeof(real) * %ld);", w->yu_sz);
    emit_close_to(e, last);
  }
  emit_yu(e, w, d, ybar, cp);
  grad_product(e, w, "dwk", 0);
  if (!e->o->standalone)
    emit_omp(e->c, "ordered");
  int ordered = e->depth;
  emit_scope(e);
  grad_add(e, set, w, "dwk");
  emit_close_to(e, ordered);
  emit_close_to(e, base);
  if (e->o->standalone && at > e->work)
    e->work = at;
}

/* ---- levels solved sample by sample ----
 *
 * Consecutive levels of one block each, every block solved by one windowed
 * product (one sample a group) of one padded geometry with its activation,
 * can run in one loop over the samples, each sample's levels in turn: a
 * level then copies into pad the z that the levels before it have just
 * written, from cache, where level by level each level reads the z of the
 * whole batch back from memory (the ConvMachine's x[i] reads all of x[0 ..
 * i)). They share one pad: every level writes its channels at the same
 * positions on the grid, so the zeros off the grid are written once. The
 * same products in the same order: the same bits. */

/* Whether s is solved by one windowed product of one sample a group, with
 * z = sigma(y), in a binary (standalone code keeps its levels apart). */
static bool sweep_win(Emit *e, const EmitSolve *s, Set *set, Win *w) {
  if (e->o->standalone || !s->n || !s->first.act || s->n > SET_MAX)
    return false;
  bool done[SET_MAX] = {false};
  *set = set_of(e->m, s->list, s->zs, s->n, done);
  return set->n == s->n && win_of(e, e->m, set, false, w) && w->group == 1 &&
         (w->by_tap || product_rows(w) > 1);
}

/* The padded positions of a and b are the same (their products' rows may
 * differ in length). */
static bool same_grid(const Win *a, const Win *b) {
  if (a->g.g != b->g.g || a->plane != b->plane || a->span != b->span)
    return false;
  for (int x = 0; x < a->g.g; x++)
    if (a->g.in[x] != b->g.in[x] || a->g.out[x] != b->g.out[x])
      return false;
  return true;
}

bool emit_conv_sweeps(Emit *e, const EmitSolve *s) {
  Set set;
  Win w;
  if (!s->n) /* y = the input, z = sigma(y): a pass over the sample */
    return !e->o->standalone && s->first.act && s->first.init;
  return sweep_win(e, s, &set, &w);
}

bool emit_conv_sweep_joins(Emit *e, const EmitSolve *first, const EmitSolve *s, long *wk) {
  Set set0, set;
  Win w0, w;
  if (!sweep_win(e, first, &set0, &w0) || w0.by_tap || !sweep_win(e, s, &set, &w))
    return false;
  if (!*wk)
    *wk = w0.wk_sz;
  if (!same_window(set0.ar[0], set.ar[0]) || !same_grid(&w0, &w) ||
      (e->o->f32 ? 4 : 8) * (*wk + w.wk_sz) > WORK_BYTES)
    return false;
  *wk += w.wk_sz;
  return true;
}

/* The channel of pad from which the sources of set lie where those of the
 * widest set lie, in the same order (the ConvMachine's levels: a prefix of
 * the last level's sources; its dual's: a suffix), else 0. */
static long set_base(const Set *wide, const Set *set) {
  for (int i = 0; i + set->n <= wide->n; i++) {
    bool fits = true;
    for (int j = 0; fits && j < set->n; j++)
      fits = !strcmp(wide->z[i + j], set->z[j]) && wide->off[i + j] - wide->off[i] == set->off[j];
    if (fits)
      return wide->off[i];
  }
  return 0;
}

/* The level of no arrows in a sweep, for the sample n0: y = its input,
 * z = sigma(y). */
static void sweep_pointwise(Emit *e, const EmitSolve *s) {
  long size = IR_BLOCK(e->m, s->first.act->block)->size;
  emit_line(e, "/* the sample's %s = %s, and %s from it */", s->y, s->first.init, s->first.act->z);
  emit_open(e, "for (long k = n0 * %ld; k < (n0 + 1) * %ld; k++)", size, size);
  emit_line(e, "%s[k] = %s[k];", s->y, s->first.init);
  emit_act(e, s->first.act, s->y, "k");
  emit_close_to(e, e->depth - 1);
}

/* Places set's channels in pad where those of the widest set lie (from
 * set_base's channel on: returned, set->off shifted to it); held[j]: source
 * j is there already, as in[] and from[] say (see emit_conv_sweep), which
 * are updated; *copies: some is not. */
static long place_set(const Set *wide, Set *set, const char **in, long *from, bool *held, bool *copies) {
  long at = set_base(wide, set);
  for (int j = 0; j <= set->n; j++)
    set->off[j] += at;
  for (int j = 0; j < set->n; j++) {
    held[j] = true;
    for (long c = set->off[j]; c < set->off[j + 1]; c++)
      held[j] &= in[c] && !strcmp(in[c], set->z[j]) && from[c] == set->off[j];
    for (long c = set->off[j]; c < set->off[j + 1]; c++)
      in[c] = set->z[j], from[c] = set->off[j];
    *copies |= !held[j];
  }
  return at;
}

void emit_conv_sweep(Emit *e, const EmitSolve *s, int n, int level) {
  Set *sets = arena_alloc(e->a, sizeof(Set) * (size_t)n);
  Win *ws = arena_alloc(e->a, sizeof(Win) * (size_t)n);
  long pad = 0, prod = 0, rows = 0, macs = 0, q = 0;
  int widest = -1, first = -1; /* the level of the widest pad; the first product */
  for (int k = 0; k < n; k++) {
    if (!s[k].n)
      continue;
    sweep_win(e, &s[k], &sets[k], &ws[k]);
    if (first < 0)
      first = k;
    if (ws[k].pad_sz > pad)
      pad = ws[k].pad_sz, widest = k;
    if (ws[k].prod_sz > prod)
      prod = ws[k].prod_sz, rows = product_rows(&ws[k]);
    if (ws[k].by_tap && ws[k].tp * ws[k].ldq > q)
      q = ws[k].tp * ws[k].ldq;
    macs += ws[k].co * ws[k].kk * ws[k].span;
  }
  emit_line(e, "/* Levels %d to %d sample by sample: a level reads what the levels before", level,
            level + n - 1);
  emit_line(e, " * it wrote of the sample from cache, where level by level it would read");
  emit_line(e, " * the whole batch's back from memory. One pad for all: each level writes");
  emit_line(e, " * its inputs' channels at the same positions on the grid, the zeros off");
  emit_line(e, " * the grid are written once. The samples are independent, shared out");
  emit_line(e, " * among the threads. */");
  int base = e->depth;
  emit_scope(e);
  long at = 0;
  const char **wk = arena_alloc(e->a, sizeof(char *) * (size_t)n);
  for (int k = 0; k < n; k++) {
    if (!s[k].n)
      continue;
    wk[k] = arena_printf(e->a, "wk%d", level + k);
    win_weights(e, &sets[k], &ws[k], wk[k], at);
    at += ws[k].wk_sz;
  }
  emit_tap_at(e, sets[first].ar[0], &ws[first]);
  if (q) /* tap_rows's product of one tap over the whole plane */
    emit_line(e, "const long whole[1] = {0}, all[2] = {0, %s};", channel_step(e, &ws[first]));
  emit_omp(e->c, "parallel if (split_groups(batch, (double)batch * %ld))", macs);
  emit_scope(e);
  long scratch = 0;
  emit_pad_decl(e, &ws[widest], &scratch);
  emit_scratch(e, "prod", prod, &scratch, arena_printf(e->a, "prod[co, (u, n)]: %ld x %ld", rows, ws[first].ld));
  if (q)
    emit_scratch(e, "q", q, &scratch, "q[k, (x, n)]: tap_rows's");
  open_groups(e, &ws[first], pad, false);
  /* in[c]: the source (the buffer's name) whose channel c - from[c] holds
   * pad's channel c, in a sample's turn through the levels, NULL: none yet */
  long chans = sets[widest].off[sets[widest].n];
  const char **in = arena_alloc(e->a, sizeof(char *) * (size_t)chans);
  long *from = arena_alloc(e->a, sizeof(long) * (size_t)chans);
  int optional = -1; /* the depth before the levels only `grad` asks for */
  for (int k = 0; k < n; k++) {
    emit_line(e, "/* level %d */", level + k);
    if (s[k].optional && optional < 0) {
      optional = e->depth;
      emit_line(e, "/* dLoss/dinput, for grad; training needs none */");
      emit_open(e, "if (input_grads)");
    }
    if (!s[k].n) {
      sweep_pointwise(e, &s[k]);
      continue;
    }
    Set set = sets[k]; /* its channels where the widest level holds them */
    bool held[SET_MAX], copies = false;
    long at_c = place_set(&sets[widest], &set, in, from, held, &copies);
    win_comment(e, &set, s[k].y);
    const char *inputs = copies ? "its inputs not yet in pad copied into it" : "its inputs in pad already";
    if (ws[k].by_tap)
      emit_line(e, " * %s, then a product per tap of inner dimension %ld, their rows summed */", inputs, ws[k].ci);
    else {
      emit_line(e, " * %s, then one product (co x (k, ci)) ((k, ci) x u) of", inputs);
      emit_line(e, " * inner dimension %ld */", ws[k].kk);
    }
    copy_group(e, e->m, &set, &ws[k], held);
    win_product(e, &ws[k], wk[k], at_c);
    win_outputs(e, &sets[k], &ws[k], s[k].y, &s[k].first);
  }
  emit_close_to(e, base);
  if (at > e->work)
    e->work = at;
}

/* The set and window of the kernel gradients g, one sample a group, in a
 * binary; false when they are not one windowed product of all the arrows. */
static bool grad_sweep_win(Emit *e, const EmitGrads *g, Set *set, Win *w) {
  if (e->o->standalone || !g->n || g->n > SET_MAX)
    return false;
  bool done[SET_MAX] = {false};
  *set = set_of(e->primal, g->list, g->zs, g->n, done);
  if (set->n != g->n) /* then set->ar[j] is list[j]'s arrow */
    return false;
  for (int j = 0; j < set->n; j++)
    set->dw[j] = g->dws[j];
  return win_of(e, e->primal, set, true, w) && w->group == 1;
}

bool emit_conv_grad_sweeps(Emit *e, const EmitGrads *g, int n) {
  Set set0, set;
  Win w0, w;
  long pad = 0, yu = 0, dwk = 0;
  for (int k = 0; k < n; k++) {
    Set *sk = k ? &set : &set0;
    Win *wk = k ? &w : &w0;
    /* one grid, and yu's rows the same length: its zeros off the grid where
     * every level has them (its columns past a level's channels are read,
     * but their sums never added to dW) */
    if (!grad_sweep_win(e, &g[k], sk, wk) ||
        (k && (!same_window(set0.ar[0], set.ar[0]) || !same_grid(&w0, &w) ||
               panel_cols(w.co, w.nb) != panel_cols(w0.co, w0.nb))))
      return false;
    pad = wk->pad_sz > pad ? wk->pad_sz : pad;
    yu = wk->yu_sz > yu ? wk->yu_sz : yu;
    dwk += wk->dwk_sz;
  }
  return n >= 2 && (e->o->f32 ? 4 : 8) * (pad + yu + dwk) <= SWEEP_BYTES;
}

void emit_conv_grad_sweep(Emit *e, const EmitGrads *g, int n) {
  Set *sets = arena_alloc(e->a, sizeof(Set) * (size_t)n);
  Win *ws = arena_alloc(e->a, sizeof(Win) * (size_t)n);
  long pad = 0, yu = 0, macs = 0;
  int widest = 0;
  for (int k = 0; k < n; k++) {
    grad_sweep_win(e, &g[k], &sets[k], &ws[k]);
    if (ws[k].pad_sz > pad)
      pad = ws[k].pad_sz, widest = k;
    yu = ws[k].yu_sz > yu ? ws[k].yu_sz : yu;
    macs += ws[k].co * ws[k].kk * ws[k].span;
  }
  long cp = panel_cols(ws[0].co, ws[0].nb);
  emit_line(e, "/* The levels' kernel gradients sample by sample: the sample's z copied once");
  emit_line(e, " * into one pad, each level's where the widest level holds them, then each");
  emit_line(e, " * level's product ((k, ci) x u) (u x co) of them and of its ybar, then the");
  emit_line(e, " * sample's sums added to dW in the order of the samples. The samples shared");
  emit_line(e, " * out among the threads. */");
  int base = e->depth;
  emit_scope(e);
  emit_tap_at(e, sets[0].ar[0], &ws[0]);
  emit_omp(e->c, "parallel if (split_groups(batch, (double)batch * %ld))", macs);
  emit_scope(e);
  long at = 0;
  emit_pad_decl(e, &ws[widest], &at);
  emit_scratch(e, "yu", yu, &at,
               arena_printf(e->a, "yu[u, co] = ybar[n0, co, o], 0 off the grid: %ld x %ld", yu / cp, cp));
  const char **dwk = arena_alloc(e->a, sizeof(char *) * (size_t)n);
  for (int k = 0; k < n; k++) {
    dwk[k] = arena_printf(e->a, "dwk%d", k);
    emit_scratch(e, dwk[k], ws[k].dwk_sz, &at,
                 arena_printf(e->a, "%s[(k, ci), co]: %ld x %ld, the sample's", dwk[k], ws[k].dwk_sz / cp, cp));
  }
  emit_line(e, "memset(yu, 0, sizeof(real) * %ld);", yu);
  open_groups(e, &ws[0], pad, true);
  long chans = sets[widest].off[sets[widest].n];
  const char **in = arena_alloc(e->a, sizeof(char *) * (size_t)chans);
  long *from = arena_alloc(e->a, sizeof(long) * (size_t)chans);
  for (int k = 0; k < n; k++) {
    Set set = sets[k];
    bool held[SET_MAX], copies = false;
    long at_c = place_set(&sets[widest], &set, in, from, held, &copies);
    emit_line(e, "/* into %s: %s */", IR_BLOCK(e->primal, set.ar[0]->dst)->name,
              copies ? "the z not yet in pad copied into it" : "its z in pad already");
    copy_group(e, e->primal, &set, &ws[k], held);
    emit_yu(e, &ws[k], IR_BLOCK(e->primal, set.ar[0]->dst), g[k].ybar, cp);
    grad_product(e, &ws[k], dwk[k], at_c);
  }
  emit_omp(e->c, "ordered");
  emit_scope(e);
  for (int k = 0; k < n; k++)
    grad_add(e, &sets[k], &ws[k], dwk[k]);
  emit_close_to(e, base);
}

int emit_conv_windows(Emit *e, const int *list, const char *const *zs, int n, const char *y,
                      const EmitFirst *first, bool *done) {
  Set set = set_of(e->m, list, zs, n, done);
  Win w;
  if (!set.n || !win_of(e, e->m, &set, false, &w))
    return 0;
  EmitFirst all = first ? *first : (EmitFirst){0};
  if (set.n < n) /* other arrows follow: sigma waits for them */
    all.act = NULL;
  conv_win(e, &set, &w, y, first ? &all : NULL);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < set.n; j++)
      done[i] |= IR_ARROW(e->m, list[i]) == set.ar[j];
  return set.n;
}

int emit_conv_grad_windows(Emit *e, const int *list, const char *const *zs, const char *const *dws, int n,
                           const char *ybar, bool *done) {
  Set set = set_of(e->primal, list, zs, n, done);
  for (int j = 0, i = 0; j < set.n; i++)
    if (IR_ARROW(e->primal, list[i]) == set.ar[j])
      set.dw[j++] = dws[i];
  Win w;
  if (!set.n || !win_of(e, e->primal, &set, true, &w))
    return 0;
  conv_grad_win(e, &set, &w, ybar);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < set.n; j++)
      done[i] |= IR_ARROW(e->primal, list[i]) == set.ar[j];
  return set.n;
}

/* y_dst += conv(z_src) (or its scatter form for an adjoint arrow). */
/* A strided convolution on a 2-D grid reads its input at steps of the
 * stride (its adjoint, the dual's, writes at such steps), which mm_grid
 * would gather (scatter) one element at a time. The grid at those steps is
 * held split into its stride phases instead, per sample:
 *   phase[r0, r1][c][u0, u1] = grid[n, c, u0 * s0 + r0, u1 * s1 + r1]
 * so that tap k, at input o * s + k * d - p0 = (o + c) * s + r (c the floor
 * of (k d - p0) / s, r what is left), reads (writes) plane (r0, r1) from
 * (o0 + c0, o1 + c1) on: rows of unit stride. The forward and the kernel
 * gradient split z into the planes first; the adjoint zeroes them, adds each
 * tap's product there and then adds the planes to y. They take the grid's
 * size (rounded up to whole strides), after mm_grid's panels in work. */
typedef struct Phases {
  long C, u[2], plane, size; /* channels, plane extents, one plane, all */
  long grid;                 /* mm_grid's panels before them in work */
  const char *at_phase, *at_grid; /* element (c, x0, x1) in the planes, in the grid */
} Phases;

/* The phases of arrow ar's strided grid (buf, of block side) for mm_grid
 * calls of k and m, their scratch reserved in e->work; false, reserving
 * nothing, where they do not apply (other grids, a grid too large for the
 * scratch; the callers leave out chunks of time). */
static bool phases_of(Emit *e, const IrArrow *ar, const Geom *g, const IrBlock *side, const char *buf, long k,
                      long m, Phases *ph) {
  const ConvAxis *x = ar->ax;
  if (g->g != 2 || (x[0].stride == 1 && x[1].stride == 1))
    return false;
  ph->C = side->shape.channels;
  for (int a = 0; a < 2; a++)
    ph->u[a] = (g->in[a] + x[a].stride - 1) / x[a].stride;
  ph->plane = ph->u[0] * ph->u[1];
  ph->size = (long)x[0].stride * x[1].stride * ph->C * ph->plane;
  ph->grid = emit_grid_work(k, m, emit_nb(e->o));
  if ((ph->grid + ph->size) * (e->o->f32 ? 4 : 8) > WORK_BYTES)
    return false;
  ph->at_phase = arena_printf(e->a, "phase[((x0 %% %d * %d + x1 %% %d) * %ld + c) * %ld + x0 / %d * %ld + x1 / %d]",
                              x[0].stride, x[1].stride, x[1].stride, ph->C, ph->plane, x[0].stride, ph->u[1],
                              x[1].stride);
  ph->at_grid = arena_printf(e->a, "%s[n * %ld + c * %ld + x0 * %d + x1]", buf, side->size, side->size / ph->C,
                             g->in[1]);
  if (ph->grid + ph->size > e->work)
    e->work = ph->grid + ph->size;
  return true;
}

/* The loops over the planes' elements: a statement follows. */
static void open_phase_elems(Emit *e, const Geom *g, const Phases *ph) {
  emit_head(e, "for (long c = 0; c < %ld; c++)", ph->C);
  emit_head(e, "for (long x0 = 0; x0 < %d; x0++)", g->in[0]);
  emit_head(e, "%sfor (long x1 = 0; x1 < %d; x1++)", emit_short(e, g->in[1]), g->in[1]);
}

/* Opens the sample loop with the planes (split from the grid, or zeroed),
 * then the taps, skipping empty boxes, with each tap's (c, r). Returns the
 * depth of the sample loop's body. */
static int open_phase_taps(Emit *e, const IrArrow *ar, const Geom *g, const Taps *tp, const Phases *ph,
                           bool split) {
  const ConvAxis *x = ar->ax;
  emit_open(e, "for (long n = 0; n < batch; n++)");
  int body = e->depth;
  emit_line(e, "real *const phase = work + %ld; /* after mm_grid's panels */", ph->grid);
  if (split) {
    open_phase_elems(e, g, ph);
    emit_line(e, "%s = %s;", ph->at_phase, ph->at_grid);
  } else {
    emit_head(e, "for (long q = 0; q < %ld; q++)", ph->size);
    emit_line(e, "phase[q] = 0;");
  }
  e->depth = body;
  open_taps(e, ar, g, tp, NULL, NULL, true);
  if (tp->loops) {
    int dd = e->depth;
    emit_head(e, "if (f0 >= e0 || f1 >= e1)");
    emit_line(e, "continue; /* no output reads this tap inside the grid */");
    emit_close_to(e, dd);
  } else {
    emit_open(e, "if (f0 < e0 && f1 < e1)");
  }
  /* c = floor((k d - p0) / s) and r = k d - p0 - c s, for k >= 0 and p0 >= 0:
   * shifted by m whole strides so that C's division rounds down */
  for (int a = 0; a < 2; a++) {
    long m = (x[a].pad0 + x[a].stride - 1) / x[a].stride, v;
    Ix kd = ix_addc(ix_scale(e->a, tp->k[a], x[a].dilation), m * x[a].stride - x[a].pad0);
    if (ix_is_const(kd, &v)) {
      emit_line(e, "const long c%d = %ld, r%d = %ld;", a, v / x[a].stride - m, a, v % x[a].stride);
      continue;
    }
    const char *t = ix_text(e->a, kd);
    if (strchr(t, ' ')) /* a sum: parenthesised */
      t = arena_printf(e->a, "(%s)", t);
    const char *shift = m ? arena_printf(e->a, " - %ld", m) : "";
    emit_line(e, "const long c%d = %s / %d%s, r%d = %s %% %d;", a, t, x[a].stride, shift, a, t, x[a].stride);
  }
  return body;
}

/* Where tap (c, r) starts in the planes. */
static const char *phase_at(Emit *e, const IrArrow *ar, const Phases *ph) {
  return arena_printf(e->a, "phase + (r0 * %d + r1) * %ld + (f0 + c0) * %ld + f1 + c1", ar->ax[1].stride,
                      ph->C * ph->plane, ph->u[1]);
}

/* y += the strided conv ar of z through the phases; false, writing nothing,
 * where they do not apply. */
static bool conv_phases(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  Geom g = geom_of(e->m, ar);
  Phases ph;
  if (t0 || !phases_of(e, ar, &g, ar->adjoint ? d : s, ar->adjoint ? y : z, s->shape.channels, d->shape.channels,
                       &ph))
    return false;
  Taps tp = taps_of(e, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels, wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  const char *out, *in;
  pos_texts(e, ar, &tp, &out, &in);
  emit_line(e, " * for each tap k: y[n, co, %s] += sum over ci of W[k, ci, co] z[n, ci, %s],",
            ar->adjoint ? in : out, ar->adjoint ? out : in);
  emit_line(e, " * the product (co x ci) (ci x positions) over the tap's box [f, e) of outputs, %s %s",
            ar->adjoint ? "y" : "z", ar->adjoint ? "written" : "read");
  emit_line(e, " * through its stride phases: phase[r0, r1][c][u0, u1] = %s[n, c, u0 * %d + r0, u1 * %d + r1] */",
            ar->adjoint ? "y" : "z", ar->ax[0].stride, ar->ax[1].stride);
  int base = e->depth;
  int body = open_phase_taps(e, ar, &g, &tp, &ph, !ar->adjoint);
  Ix w0 = emit_weight_ix(e, ar, tp.k, ix_const(0), ix_const(0));
  const char *strided = phase_at(e, ar, &ph);
  /* the other side, on the grid of outputs o: the box's corner, rows of out1 */
  const char *plain = arena_printf(e->a, "%s + n * %ld + f0 * %d + f1", ar->adjoint ? z : y,
                                   (ar->adjoint ? s : d)->size, g.out[1]);
  const char *plain_step = num(e, ar->adjoint ? src_sz : dst_sz);
  emit_call(e, "mm_grid", (EmitArg[]){
      {"m", num(e, d->shape.channels)}, {"n", "(e0 - f0) * (e1 - f1)"}, {"k", num(e, s->shape.channels)},
      {"kn", num(e, s->shape.channels)}, {"nn", "e1 - f1"},
      {"a", ix_at(e->a, emit_pname(e, ar->w.param), w0)}, {"ai", num(e, wdst)}, {"ap1", "0"},
      {"ap0", num(e, wsrc)},
      {"b", ar->adjoint ? plain : strided}, {"bs", "0"}, {"bp1", "0"}, {"bp0", ar->adjoint ? plain_step : num(e, ph.plane)},
      {"bj1", ar->adjoint ? num(e, g.out[1]) : num(e, ph.u[1])}, {"bj0", "1"},
      {"c", ar->adjoint ? strided : plain}, {"ci", ar->adjoint ? num(e, ph.plane) : plain_step},
      {"cj1", ar->adjoint ? num(e, ph.u[1]) : num(e, g.out[1])}, {"cj0", "1"}, {"work", "work"}},
      (int[]){5, 4, 6, 5}, 4);
  emit_close_to(e, body);
  if (ar->adjoint) { /* the planes onto y */
    open_phase_elems(e, &g, &ph);
    emit_line(e, "%s += %s;", ph.at_grid, ph.at_phase);
  }
  emit_close_to(e, base);
  return true;
}

/* dW += the correlation of z with ybar for a strided conv, z read through
 * its phases (samples outermost: each tap's dW still adds the samples in
 * order); false, writing nothing, where they do not apply. */
static bool conv_grad_phases(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  const IrBlock *s = IR_BLOCK(e->primal, ar->src), *d = IR_BLOCK(e->primal, ar->dst);
  Geom g = geom_of(e->primal, ar);
  Phases ph;
  if (ar->adjoint || !phases_of(e, ar, &g, s, z, LONG_MAX, s->shape.channels, &ph))
    return false;
  Taps tp = taps_of(e, ar);
  long dst_sz = d->size / d->shape.channels, wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  int base = e->depth;
  open_phase_taps(e, ar, &g, &tp, &ph, true);
  Ix w0 = emit_weight_ix(e, ar, tp.k, ix_const(0), ix_const(0));
  emit_call(e, "mm_grid", (EmitArg[]){
      {"m", num(e, s->shape.channels)}, {"n", num(e, d->shape.channels)}, {"k", "(e0 - f0) * (e1 - f1)"},
      {"kn", "e1 - f1"}, {"nn", num(e, d->shape.channels)},
      {"a", phase_at(e, ar, &ph)}, {"ai", num(e, ph.plane)}, {"ap1", num(e, ph.u[1])}, {"ap0", "1"},
      {"b", arena_printf(e->a, "%s + n * %ld + f0 * %d + f1", ybar, d->size, g.out[1])},
      {"bs", "0"}, {"bp1", num(e, g.out[1])}, {"bp0", "1"}, {"bj1", "0"}, {"bj0", num(e, dst_sz)},
      {"c", ix_at(e->a, dw, w0)}, {"ci", num(e, wsrc)}, {"cj1", "0"}, {"cj0", num(e, wdst)}, {"work", "work"}},
      (int[]){5, 4, 6, 5}, 4);
  emit_close_to(e, base);
  return true;
}

/* The adjoint of a strided conv (the dual's), y[n, ci, x] += sum over k, co
 * of W[k, ci, co] z[n, co, o] at x = o s + k d - p0, as windowed products:
 * split x into its phase, x = u s + r, and the taps that write phase r are
 * those of that r (c, r as for the forward), each reading z at o = u - c.
 * Per sample, z is copied once into pad[co, o + cmax] (zeros around, rows
 * sharing them as the forward's do); each phase is then one product
 * (ci x (k of r, co)) ((k of r, co) x u) by mm_taps, its taps' windows
 * starting at cmax - c, and its columns are added to y at the phase's
 * positions. False, writing nothing, where the products do not apply (few
 * channels, chunks of time, buffers too large). */
/* The padded geometry of a strided conv's adjoint: per axis, cmin / cmax
 * the least and greatest whole strides c of a tap, nu the positions u of a
 * phase of y, ext the padded extent of z's plane (rows sharing their zeros)
 * and pstr its strides; span the columns of a phase's product, mp its rows
 * (ci rounded up to MR), ld its row length; the workspace pieces. */
typedef struct AdjWin {
  Geom g;
  long cs, cd, taps, phases;
  long cmin[IR_MAX_GRID], cmax[IR_MAX_GRID], nu[IR_MAX_GRID], ext[IR_MAX_GRID], pstr[IR_MAX_GRID];
  long plane, span, mp, ld;
  long pad_sz, prod_sz, wk_sz;
} AdjWin;

/* False where the products do not apply (few channels, chunks of time,
 * buffers too large). */
static bool adjoint_win_of(Emit *e, const IrArrow *ar, const char *t0, AdjWin *w) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  *w = (AdjWin){.g = geom_of(e->m, ar)}; /* g.in: y's grid, written; g.out: z's, read */
  Geom g = w->g;
  long cs = w->cs = s->shape.channels, cd = w->cd = d->shape.channels, nb = emit_nb(e->o);
  if (t0 || !ar->adjoint || ar->kind != ARROW_CONV || cd < MR_ || cs * cd < SMALL)
    return false;
  w->taps = w->phases = 1;
  for (int a = 0; a < g.g; a++) {
    const ConvAxis *x = &ar->ax[a];
    w->taps *= x->kernel;
    w->phases *= x->stride;
    w->cmin[a] = tap_strides(x, 0);
    w->cmax[a] = tap_strides(x, x->kernel - 1);
    w->nu[a] = (g.in[a] + x->stride - 1) / x->stride;
    long reach = w->nu[a] + w->cmax[a] - w->cmin[a], data = g.out[a] + w->cmax[a]; /* the indices read, written */
    w->ext[a] = reach > data ? reach : data;
    if (a > 0) { /* a window past its row reads the next row's zeros before o = 0 */
      long wrap = reach - (w->cmax[a] > 0 ? w->cmax[a] : 0);
      w->ext[a] = data > w->nu[a] ? data : w->nu[a];
      w->ext[a] = wrap > w->ext[a] ? wrap : w->ext[a];
    }
  }
  w->pstr[g.g - 1] = 1;
  for (int a = g.g - 2; a >= 0; a--)
    w->pstr[a] = w->pstr[a + 1] * w->ext[a + 1];
  w->plane = w->pstr[0] * w->ext[0], w->span = 1;
  for (int a = 0; a < g.g; a++)
    w->span += (w->nu[a] - 1) * w->pstr[a];
  w->mp = round_up(cd, MR_), w->ld = round_up(w->span, nb);
  long esz = e->o->f32 ? 4 : 8;
  w->pad_sz = cs * w->plane + nb, w->prod_sz = w->mp * w->ld, w->wk_sz = w->taps * cs * w->mp;
  return esz * (w->pad_sz + w->prod_sz) <= GROUP_BYTES && esz * (w->pad_sz + w->prod_sz + w->wk_sz) <= WORK_BYTES;
}

/* Whether a tap of every stride phase writes y (so one pass writes all of it). */
static bool every_phase_written(const IrArrow *ar, const AdjWin *w) {
  for (long ph = 0; ph < w->phases; ph++) {
    bool written = false;
    for (long t = 0; t < w->taps; t++) {
      long c[IR_MAX_GRID];
      written |= tap_phase(ar, t, c) == ph;
    }
    if (!written)
      return false;
  }
  return true;
}

/* The taps sorted by phase, as tables: slot[t] a tap's place, tap_at and
 * tap_on by slot (where its window starts in pad, the rows it reads inside
 * the grid), ph_first / ph_taps each phase's slots; and the weights packed
 * by slot, wk[(slot[k], co) * mp + ci] = W[k, ci, co]. */
static void emit_adjoint_tables(Emit *e, const IrArrow *ar, const AdjWin *w) {
  const Geom *g = &w->g;
  long taps = w->taps, cs = w->cs, cd = w->cd, mp = w->mp;
  long *slot = arena_alloc(e->a, sizeof(long) * (size_t)taps), *phase = arena_alloc(e->a, sizeof(long) * (size_t)taps);
  long *at = arena_alloc(e->a, sizeof(long) * (size_t)taps), *on = arena_alloc(e->a, sizeof(long) * 2 * (size_t)taps);
  for (long t = 0; t < taps; t++) {
    long c[IR_MAX_GRID];
    phase[t] = tap_phase(ar, t, c);
    at[t] = 0;
    for (int a = 0; a < g->g; a++)
      at[t] += (w->cmax[a] - c[a]) * w->pstr[a];
    /* the rows u0 whose o0 = u0 - c lies in [0, out0) */
    long lo = c[0] > 0 ? c[0] : 0, hi = g->out[0] + c[0] < w->nu[0] ? g->out[0] + c[0] : w->nu[0];
    on[2 * t] = lo * (g->g > 1 ? w->pstr[0] : 1);
    on[2 * t + 1] = (hi > lo ? hi : lo) * (g->g > 1 ? w->pstr[0] : 1);
  }
  StrBuf sl = {0}, ta = {0}, to = {0}, pf = {0}, pt = {0};
  long n = 0;
  for (long ph = 0; ph < w->phases; ph++) {
    sb_printf(&pf, "%s%ld", ph ? ", " : "", n);
    long count = 0;
    for (long t = 0; t < taps; t++)
      if (phase[t] == ph)
        slot[t] = n + count++;
    sb_printf(&pt, "%s%ld", ph ? ", " : "", count);
    n += count;
  }
  long *by_slot = arena_alloc(e->a, sizeof(long) * (size_t)taps);
  for (long t = 0; t < taps; t++) {
    by_slot[slot[t]] = t;
    sb_printf(&sl, "%s%ld", t ? ", " : "", slot[t]);
  }
  for (long j = 0; j < taps; j++) {
    sb_printf(&ta, "%s%ld", j ? ", " : "", at[by_slot[j]]);
    sb_printf(&to, "%s%ld, %ld", j ? ", " : "", on[2 * by_slot[j]], on[2 * by_slot[j] + 1]);
  }
  long wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  emit_line(e, "real *const wk = work; /* wk[(slot[k], co) * %ld + ci] = W[k, ci, co]%s */", mp,
            mp > cd ? ", 0 past the channels" : "");
  if (mp > cd)
    emit_line(e, "memset(wk, 0, sizeof(real) * %ld);", w->wk_sz);
  emit_line(e, "const long slot[%ld] = {%s}; /* the taps in the order of their phases */", taps, sl.data);
  EmitLoop l[IR_MAX_GRID + 2];
  Ix idx[IR_MAX_GRID + 2];
  for (int a = 0; a < g->g; a++)
    l[a] = (EmitLoop){.var = var(e, 'k', a), .n = ar->ax[a].kernel};
  l[g->g] = (EmitLoop){.var = "co", .n = cs};
  l[g->g + 1] = (EmitLoop){.var = "ci", .n = cd};
  int rows = emit_loops(e, l, g->g + 2, false, idx);
  Ix tap = ix_const(0);
  for (int a = 0; a < g->g; a++)
    tap = ix_nest(e->a, tap, ar->ax[a].kernel, idx[a]);
  Ix wi = ix_add(ix_add(emit_weight_ix(e, ar, idx, ix_const(0), ix_const(0)), ix_scale(e->a, idx[g->g], wsrc)),
                 ix_scale(e->a, idx[g->g + 1], wdst));
  emit_line(e, "wk[(slot[%s] * %ld + co) * %ld + ci] = %s[%s];", ix_text(e->a, tap), cs, mp,
            emit_pname(e, ar->w.param), ix_text(e->a, wi));
  emit_close_to(e, rows);
  emit_line(e, "const long tap_at[%ld] = {%s}; /* by slot: where the window starts in pad */", taps, ta.data);
  emit_line(e, "/* by slot: the tap reads the grid for the columns [tap_on[2 j], tap_on[2 j + 1]) */");
  emit_line(e, "const long tap_on[%ld] = {%s};", 2 * taps, to.data);
  emit_line(e, "const long ph_first[%ld] = {%s}, ph_taps[%ld] = {%s}; /* each phase's slots */", w->phases,
            pf.data, w->phases, pt.data);
  sb_free(&sl), sb_free(&ta), sb_free(&to), sb_free(&pf), sb_free(&pt);
}

/* y's positions of phase (r...) from prod: added to (or, with first, y set
 * as first says and z = sigma(y) beside it). */
static void emit_adjoint_out(Emit *e, const IrArrow *ar, const AdjWin *w, const Ix *r, const char *y,
                             const EmitFirst *first) {
  const Geom *g = &w->g;
  const IrBlock *d = IR_BLOCK(e->m, ar->dst);
  EmitLoop l[IR_MAX_GRID + 1] = {{.var = "ci", .n = w->cd}};
  Ix idx[IR_MAX_GRID + 1];
  for (int a = 0; a < g->g; a++) {
    int st = ar->ax[a].stride;
    l[1 + a] = st == 1 ? (EmitLoop){.var = var(e, 'u', a), .n = g->in[a]}
                       : (EmitLoop){.var = var(e, 'u', a),
                                    .hi = arena_printf(e->a, "(%ld - r%d) / %d", g->in[a] + st - 1L, a, st)};
  }
  int outs = emit_loops(e, l, g->g + 1, first != NULL, idx);
  Ix yi = ix_add(ix_term("n0", d->size), ix_scale(e->a, idx[0], g->in_size)), pi = ix_scale(e->a, idx[0], w->ld);
  for (int a = 0; a < g->g; a++) {
    yi = ix_add(yi, ix_scale(e->a, ix_add(ix_scale(e->a, idx[1 + a], ar->ax[a].stride), r[a]), g->in_str[a]));
    pi = ix_add(pi, ix_scale(e->a, idx[1 + a], w->pstr[a]));
  }
  const char *pk = ix_text(e->a, pi);
  if (!first) {
    emit_line(e, "%s[%s] += prod[%s];", y, ix_text(e->a, yi), pk);
  } else { /* every position written once: y set, and z = sigma(y) beside it */
    emit_line(e, "const long yk = %s;", ix_text(e->a, yi));
    if (first->init)
      emit_line(e, "%s[yk] = %s[yk] + prod[%s];", y, first->init, pk);
    else if (first->bias)
      emit_line(e, "%s[yk] = prod[%s] + %s[ci];", y, pk, first->bias);
    else
      emit_line(e, "%s[yk] = prod[%s];", y, pk);
    if (first->act)
      emit_act(e, first->act, y, "yk");
  }
  emit_close_to(e, outs);
}

static bool conv_adjoint_win(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                             const EmitFirst *first) {
  AdjWin w;
  if (!adjoint_win_of(e, ar, t0, &w) || (first && !every_phase_written(ar, &w)))
    return false;
  const Geom *g = &w.g;
  const IrBlock *s = IR_BLOCK(e->m, ar->src);
  Taps tp = taps_of(e, ar);
  const char *out, *in;
  pos_texts(e, ar, &tp, &out, &in);
  if (first)
    emit_line(e, "/* %s = %s%s%s", y, first->init ? arena_printf(e->a, "%s + ", first->init) : "",
              ir_arrow_text(e->a, e->m, ar, z, IR_TEXT_MATH),
              first->bias ? arena_printf(e->a, " + %s", first->bias) : "");
  emit_line(e, " * y[n, ci, %s] += sum over k, co of W[k, ci, co] z[n, co, %s]:", in, out);
  emit_line(e, " * per phase r of the positions x = u s + r of y, one product (ci x (k, co))");
  emit_line(e, " * ((k, co) x u) over the taps of phase r, each reading z at o = u - c, z");
  emit_line(e, " * zero-padded into the workspace per sample (pad[co, o + cmax]) */");
  int base = e->depth;
  emit_scope(e);
  emit_adjoint_tables(e, ar, &w);
  if (!e->o->standalone)
    emit_omp(e->c, "parallel if (split_groups(batch, (double)batch * %ld))", w.cd * w.cs * w.taps / w.phases * w.span);
  emit_scope(e);
  long wat = w.wk_sz;
  emit_scratch(e, "pad", w.pad_sz, &wat, arena_printf(e->a, "pad[co, x]: %ld x %ld, + NB read past the end", w.cs, w.plane));
  emit_scratch(e, "prod", w.prod_sz, &wat, arena_printf(e->a, "prod[ci, u]: %ld x %ld", w.mp, w.ld));
  emit_line(e, "memset(pad, 0, sizeof(real) * %ld);", w.pad_sz);
  if (!e->o->standalone)
    emit_omp(e->c, "for schedule(static)");
  emit_open(e, "for (long n0 = 0; n0 < batch; n0++)");
  int sample = e->depth;
  { /* pad[co, o + cmax] = z[n0, co, o], a row of the last axis at a time */
    EmitLoop l[IR_MAX_GRID + 1] = {{.var = "co", .n = w.cs}};
    Ix idx[IR_MAX_GRID + 1];
    for (int a = 0; a < g->g; a++) {
      long lo = -w.cmax[a] > 0 ? -w.cmax[a] : 0;
      l[1 + a] = (EmitLoop){.var = var(e, 'o', a), .lo = lo, .n = g->out[a] - lo};
    }
    emit_loops(e, l, g->g, false, idx);
    idx[g->g] = ix_const(l[g->g].lo);
    Ix pi = ix_scale(e->a, idx[0], w.plane), zi = ix_add(ix_term("n0", s->size), ix_scale(e->a, idx[0], g->out_size));
    for (int a = 0; a < g->g; a++) {
      pi = ix_add(pi, ix_scale(e->a, ix_addc(idx[1 + a], w.cmax[a]), w.pstr[a]));
      zi = ix_add(zi, ix_scale(e->a, idx[1 + a], g->out_str[a]));
    }
    emit_line(e, "memcpy(%s, %s, sizeof(real) * %ld);", ix_at(e->a, "pad", pi), ix_at(e->a, z, zi), l[g->g].n);
    e->depth = sample;
  }
  EmitLoop rl[IR_MAX_GRID];
  Ix r[IR_MAX_GRID];
  for (int a = 0; a < g->g; a++)
    rl[a] = (EmitLoop){.var = var(e, 'r', a), .n = ar->ax[a].stride};
  emit_loops(e, rl, g->g, true, r);
  Ix ph = ix_const(0);
  for (int a = 0; a < g->g; a++)
    ph = ix_nest(e->a, ph, ar->ax[a].stride, r[a]);
  emit_line(e, "const long ph = %s;", ix_text(e->a, ph));
  int body = e->depth;
  emit_head(e, "if (!ph_taps[ph])");
  emit_line(e, "continue; /* no tap writes this phase */");
  emit_close_to(e, body);
  emit_line(e, "/* prod[ci, u] = sum over the phase's k, co of wk[(slot[k], co), ci] pad[co, u + tap_at[slot[k]]] */");
  emit_call(e, "mm_taps", (EmitArg[]){{"m", num(e, w.mp)}, {"n", num(e, w.span)}, {"taps", "ph_taps[ph]"},
                                      {"ch", num(e, w.cs)}, {"a", arena_printf(e->a, "wk + ph_first[ph] * %ld", w.cs * w.mp)},
                                      {"b", "pad"}, {"tap_at", "tap_at + ph_first[ph]"},
                                      {"tap_on", "tap_on + 2 * ph_first[ph]"}, {"bcs", num(e, w.plane)},
                                      {"c", "prod"}, {"ldc", num(e, w.ld)}},
            (int[]){4, 4, 3}, 3);
  emit_adjoint_out(e, ar, &w, r, y, first);
  emit_close_to(e, base);
  long need = e->o->standalone ? wat : w.wk_sz;
  if (need > e->work)
    e->work = need;
  return true;
}

/* The per-tap products of the n sources zs of a group (one arrow: n = 1):
 * rows p = (source, ci) of B, read where each source lies (mm_grid's bs),
 * and of W the next channels of each source. */
static void conv_apply_n(Emit *e, const IrArrow *ar, int n, const char *const *zs, const char *y,
                         const char *t0, const char *t1) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  Geom g = geom_of(e->m, ar);
  Taps tp = taps_of(e, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  long wsrc, wdst, ch = s->shape.channels;
  weight_strides(e, ar, &wsrc, &wdst);
  Cols zc = cols_of(e, ar, &g, &tp, !ar->adjoint, s->size), yc = cols_of(e, ar, &g, &tp, ar->adjoint, d->size);
  const char *out, *in;
  pos_texts(e, ar, &tp, &out, &in);
  emit_line(e, " * for each tap k: y[n, co, %s] += sum over ci of W[k, ci, co] z[n, ci, %s],",
            ar->adjoint ? in : out, ar->adjoint ? out : in);
  if (n > 1)
    emit_line(e, " * ci over the %d sources' channels in turn (the rows of W after one another),", n);
  emit_line(e, " * the product (co x ci) (ci x %s) over the tap's box [f, e) of outputs */",
            g.g == 1 ? "(n, o0)" : "positions");
  int base = e->depth;
  const char *total, *inner;
  open_products(e, ar, &g, &tp, t0, t1, &total, &inner);
  if (n > 1) {
    emit_line(e, "const real *const from[%d] = { /* each source where the tap's box starts */", n);
    for (int j = 0; j < n; j++)
      emit_line(e, "    %s%s", ix_at(e->a, zs[j], zc.off), j + 1 < n ? "," : "};");
  }
  Ix w0 = emit_weight_ix(e, ar, tp.k, ix_const(0), ix_const(0));
  emit_call(e, "mm_grid", (EmitArg[]){
      {"m", num(e, d->shape.channels)}, {"n", total}, {"k", num(e, n * ch)},
      {"kn", num(e, ch)}, {"nn", inner},
      {"a", ix_at(e->a, emit_pname(e, ar->w.param), w0)}, {"ai", num(e, wdst)},
      {"ap1", num(e, n > 1 ? ch * wsrc : 0)}, {"ap0", num(e, wsrc)},
      {"b", n > 1 ? "from[0]" : ix_at(e->a, zs[0], zc.off)}, {"bs", n > 1 ? "from" : "0"}, {"bp1", "0"},
      {"bp0", num(e, src_sz)}, {"bj1", num(e, zc.step1)}, {"bj0", num(e, zc.step0)},
      {"c", ix_at(e->a, y, yc.off)}, {"ci", num(e, dst_sz)}, {"cj1", num(e, yc.step1)},
      {"cj0", num(e, yc.step0)}, {"work", "work"}}, (int[]){5, 4, 6, 5}, 4);
  emit_close_to(e, base);
  grid_work(e, n * ch, d->shape.channels);
}

static void conv_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  if (conv_adjoint_win(e, ar, y, z, t0, NULL) || conv_phases(e, ar, y, z, t0))
    return;
  conv_apply_n(e, ar, 1, &z, y, t0, t1);
}

bool emit_grid_groupable(const Emit *e, const IrArrow *ar) {
  if (ar->kind != ARROW_CONV || ar->adjoint)
    return false;
  for (int a = 0; a < ar->ngrid; a++)
    if (ar->ax[a].stride != 1) /* strided: conv_phases */
      return false;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  return (long)s->shape.channels * d->shape.channels >= SMALL;
}

bool emit_grid_joins(const Emit *e, const IrArrow *first, const IrArrow *ar, int pos) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *s0 = IR_BLOCK(e->m, first->src);
  if (!emit_grid_groupable(e, ar) || ar->dst != first->dst || ar->w.param != first->w.param ||
      ar->w.transposed != first->w.transposed || !same_window(first, ar) ||
      s->shape.channels != s0->shape.channels || s->size != s0->size)
    return false;
  for (int a = 0; a < ar->ngrid; a++)
    if (ar->w.k_off[a] != first->w.k_off[a])
      return false;
  long next = (long)pos * s0->shape.channels; /* the weight's rows after the first's */
  if (ar->w.transposed) /* W's input axis indexed by the destination's channels */
    return ar->w.in_off == first->w.in_off && ar->w.out_off == first->w.out_off + next;
  return ar->w.out_off == first->w.out_off && ar->w.in_off == first->w.in_off + next;
}

void emit_grid_group(Emit *e, const IrArrow *const *ars, const char *const *zs, int n, const char *y,
                     const char *t0, const char *t1) {
  for (int j = 0; j < n; j++)
    emit_line(e, "%s%s%s", j ? " *    + " : arena_printf(e->a, "/* %s += ", y),
              ir_arrow_text(e->a, e->m, ars[j], zs[j], IR_TEXT_MATH), j + 1 == n ? ":" : "");
  conv_apply_n(e, ars[0], n, zs, y, t0, t1);
}

/* Whether every output of arrow ar reads inside the grid at every tap (no
 * padding reached): o * s + k * d - p0 in [0, in) for all o and k. */
static bool whole_boxes(const IrArrow *ar, const Geom *g) {
  for (int a = 0; a < g->g; a++) {
    const ConvAxis *x = &ar->ax[a];
    if (x->pad0 > 0 || (long)(g->out[a] - 1) * x->stride + (long)(x->kernel - 1) * x->dilation - x->pad0 >= g->in[a])
      return false;
  }
  return true;
}

/* The loops over every output position, the last axis innermost. */
static void open_positions_whole(Emit *e, const Geom *g) {
  for (int a = 0; a + 1 < g->g; a++)
    emit_head(e, "for (long o%d = 0; o%d < %d; o%d++)", a, a, g->out[a], a);
  int a = g->g - 1;
  emit_open(e, "%sfor (long o%d = 0; o%d < %d; o%d++)", emit_short(e, g->out[a]), a, a, g->out[a], a);
}

/* The adjoint of an average pooling whose windows tile the grid (stride =
 * kernel, no padding or dilation, in = out * kernel on every axis): each
 * position x of its destination receives one term, from x / kernel. */
static bool tiles(const IrArrow *ar, const Geom *g) {
  for (int a = 0; a < g->g; a++) {
    const ConvAxis *x = &ar->ax[a];
    if (x->stride != x->kernel || x->dilation != 1 || x->pad0 != 0 || (long)g->out[a] * x->kernel != g->in[a])
      return false;
  }
  return true;
}

/* What y[yk] starts from when the pooling writes all of y (first): the
 * input, the bias of channel ch (an index), or nothing. */
static const char *first_term(Emit *e, const EmitFirst *first, Ix ch) {
  if (first->init)
    return arena_printf(e->a, "%s[yk]", first->init);
  return first->bias ? arena_printf(e->a, "%s[%s]", first->bias, ix_text(e->a, ch)) : NULL;
}

/* The longest row of a pooling adjoint's terms kept on the stack (4 KB in f32). */
enum { ROW_TERMS = 1024 };

/* Average pooling: one channel to the same channel, weight 1 / taps. With
 * first (one pass writes every position of y: taps inside the grid, or an
 * adjoint that tiles), y = what first says + the pooling, then z = sigma(y). */
static void pool_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1, const EmitFirst *first) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  Geom g = geom_of(e->m, ar);
  Taps tp = taps_of(e, ar);
  long taps = 1;
  for (int a = 0; a < g.g; a++)
    taps *= ar->ax[a].kernel;
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  EmitLoop l[] = {{.var = "n", .hi = "batch"}, {.var = "ch", .n = d->shape.channels}};
  Ix idx[2];
  /* each sample writes its own outputs: any split gives the same bits;
   * small samples stay out of OpenMP (as the activations do) */
  long values = s->size > d->size ? s->size : d->size;
  if (values >= 256)
    emit_omp(e->c, "parallel for schedule(static) if (batch * %ld >= PAR_WORK / 16)", values);
  int base = emit_loops(e, l, 2, true, idx);
  Ix row = ix_scale(e->a, ix_nest(e->a, idx[0], d->shape.channels, idx[1]), dst_sz);
  emit_line(e, "const real *zs = %s;",
            ix_at(e->a, z, ix_scale(e->a, ix_nest(e->a, idx[0], s->shape.channels, idx[1]), src_sz)));
  if (!first)
    emit_line(e, "real *yd = %s;", ix_at(e->a, y, row));
  emit_line(e, "const real w = (real)1 / %ld;", taps);
  const EmitAct *act = first ? first->act : NULL;
  if (first && ar->adjoint) {
    /* one pass over y, each position's one term: y[x] = w z[x / kernel];
     * along the last axis, when its row fits a small array, from a row of
     * those terms written first, so that the pass reads and writes in order
     * and clang vectorizes it (reading z[x / kernel] there kept it scalar) */
    Ix at = ix_const(0), from = ix_const(0);
    int last = g.g - 1;
    bool by_row = g.in[last] <= ROW_TERMS;
    for (int a = 0; a < g.g; a++) {
      const char *x = var(e, 'x', a);
      if (a == last && by_row) {
        int kl = ar->ax[last].kernel;
        emit_line(e, "real v[%d]; /* the terms of this row of y: each of z's %d times */", g.in[last], kl);
        int terms = e->depth;
        emit_head(e, "for (long u = 0; u < %d; u++)", g.out[last]);
        emit_head(e, "for (long k = 0; k < %d; k++)", kl);
        emit_line(e, "v[u * %d + k] = w * zs[%s];", kl, ix_text(e->a, ix_addv(from, "u", g.out_str[last])));
        emit_close_to(e, terms);
      }
      bool open = a + 1 == g.g || (a + 2 == g.g && by_row); /* the row's loops hold several statements */
      (open ? emit_open : emit_head)(e, "%sfor (long %s = 0; %s < %d; %s++)",
                                     a == last ? emit_short(e, g.in[a]) : "", x, x, g.in[a], x);
      at = ix_addv(at, x, g.in_str[a]);
      if (a < last || !by_row)
        from = ix_addv(from, arena_printf(e->a, "%s / %d", x, ar->ax[a].kernel), g.out_str[a]);
    }
    emit_line(e, "const long yk = %s;", ix_text(e->a, ix_add(row, at)));
    const char *t = first_term(e, first, idx[1]);
    const char *term = by_row ? arena_printf(e->a, "v[%s]", var(e, 'x', last))
                              : arena_printf(e->a, "w * zs[%s]", ix_text(e->a, from));
    emit_line(e, "%s[yk] = %s%s%s;", y, t ? t : "", t ? " + " : "", term);
    if (act)
      emit_act(e, act, y, "yk");
    emit_close_to(e, base);
    return;
  }
  if (!ar->adjoint && !t0 && whole_boxes(ar, &g)) {
    /* every tap reads inside the grid for every output: one pass over y,
     * the taps innermost, adding in the order of the taps as below */
    open_positions_whole(e, &g);
    const char *out = ix_text(e->a, out_ix(e, &g));
    if (first) {
      emit_line(e, "const long yk = %s;", ix_text(e->a, ix_add(row, out_ix(e, &g))));
      const char *t = first_term(e, first, idx[1]);
      emit_line(e, "real t = %s;", t ? t : "0");
    } else {
      emit_line(e, "real t = yd[%s];", out);
    }
    EmitLoop kl[IR_MAX_GRID];
    Ix k[IR_MAX_GRID];
    for (int a = 0; a < g.g; a++)
      kl[a] = (EmitLoop){.var = var(e, 'k', a), .n = ar->ax[a].kernel};
    int inner = emit_loops(e, kl, g.g, false, k);
    emit_line(e, "t += w * zs[%s];", ix_text(e->a, in_ix(e, ar, &g, &tp)));
    emit_close_to(e, inner);
    if (first) {
      emit_line(e, "%s[yk] = t;", y);
      if (act)
        emit_act(e, act, y, "yk");
    } else {
      emit_line(e, "yd[%s] = t;", out);
    }
    emit_close_to(e, base);
    return;
  }
  open_taps(e, ar, &g, &tp, t0, t1, false);
  open_positions(e, &g, t0 != NULL);
  const char *in = ix_text(e->a, in_ix(e, ar, &g, &tp)), *out = ix_text(e->a, out_ix(e, &g));
  emit_line(e, "yd[%s] += w * zs[%s];", ar->adjoint ? in : out, ar->adjoint ? out : in);
  emit_close_to(e, base);
}

bool emit_one_pass(Emit *e, const IrArrow *ar, const char *y, const char *z, const EmitFirst *first) {
  if (ar->kind == ARROW_CONV)
    return conv_adjoint_win(e, ar, y, z, NULL, first);
  if (ar->kind != ARROW_AVGPOOL)
    return false;
  Geom g = geom_of(e->m, ar);
  if (ar->adjoint ? !tiles(ar, &g) : !whole_boxes(ar, &g))
    return false;
  const char *t = first->init ? arena_printf(e->a, "%s + ", first->init) : "";
  emit_line(e, "/* %s = %s%s%s */", y, t, ir_arrow_text(e->a, e->m, ar, z, IR_TEXT_MATH),
            first->bias ? arena_printf(e->a, " + %s", first->bias) : "");
  pool_apply(e, ar, y, z, NULL, NULL, first);
  return true;
}

/* Global average pooling: y[n, c] += the mean over the grid of z[n, c, :];
 * its adjoint spreads y[n, c] / grid size over the grid (in a chunk of a
 * recurrent machine, over the times [t0, t1) only). */
static void gpool_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                        const char *t1) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  const IrBlock *grid = ar->adjoint ? d : s;
  long n = grid->size / grid->shape.channels;
  const char *rows = ix_text(e->a, ix_term("batch", d->shape.channels));
  int base = e->depth;
  Ix q;
  if (!ar->adjoint) {
    emit_open(e, "for (long n = 0; n < %s; n++)", rows);
    emit_line(e, "real t = 0;");
    emit_loops(e, &(EmitLoop){.var = "q", .n = n}, 1, false, &q);
    emit_line(e, "t += %s[%s];", z, ix_text(e->a, ix_add(ix_term("n", n), q)));
    emit_close_to(e, base + 1);
    emit_line(e, "%s[n] += t / %ld;", y, n);
  } else {
    emit_head(e, "for (long n = 0; n < %s; n++)", rows);
    if (!t0) {
      emit_loops(e, &(EmitLoop){.var = "q", .n = n}, 1, false, &q);
    } else {
      long inner = n / d->shape.grid[0];
      emit_head(e, "for (long q = %s; q < %s; q++)", ix_text(e->a, ix_term("t0", inner)),
                ix_text(e->a, ix_term("t1", inner)));
      q = ix_var("q");
    }
    emit_line(e, "%s[%s] += %s[n] / %ld;", y, ix_text(e->a, ix_add(ix_term("n", n), q)), z, n);
  }
  emit_close_to(e, base);
}

void emit_grid_arrow(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                     const char *t1) {
  const char *eq = arena_printf(e->a, "/* %s += %s", y, ir_arrow_text(e->a, e->m, ar, z, IR_TEXT_MATH));
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  switch (ar->kind) {
  case ARROW_CONV:
    if (ar->w.transposed) /* the dual's form of a stride-1 conv */
      eq = arena_printf(e->a, "%s (W^T: the kernel flipped, its channels swapped)", eq);
    if ((long)s->shape.channels * d->shape.channels < SMALL) {
      emit_line(e, "%s */", eq);
      conv_loops(e, ar, y, z, t0, t1);
    } else {
      emit_line(e, "%s:", eq);
      conv_apply(e, ar, y, z, t0, t1);
    }
    break;
  case ARROW_AVGPOOL:
    emit_line(e, "%s */", eq);
    pool_apply(e, ar, y, z, t0, t1, NULL);
    break;
  case ARROW_GAVGPOOL:
    emit_line(e, "%s */", eq);
    gpool_apply(e, ar, y, z, t0, t1);
    break;
  default:
    break;
  }
}

/* dW[k, cin, cout] += sum over batch and positions of z_src * ybar_dst
 * (the correlation of the input with the output's cotangent): per tap, the
 * product (ci x positions) (positions x co), the positions those of the
 * tap's box (with the samples on a 1-D grid). */
void emit_conv_grad(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  const IrBlock *s = IR_BLOCK(e->primal, ar->src), *d = IR_BLOCK(e->primal, ar->dst);
  if ((long)s->shape.channels * d->shape.channels < SMALL) {
    conv_grad_loops(e, ar, dw, z, ybar);
    return;
  }
  if (conv_grad_phases(e, ar, dw, z, ybar))
    return;
  Geom g = geom_of(e->primal, ar);
  Taps tp = taps_of(e, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  long wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  Cols zc = cols_of(e, ar, &g, &tp, !ar->adjoint, s->size), yc = cols_of(e, ar, &g, &tp, ar->adjoint, d->size);
  int base = e->depth;
  const char *total, *inner;
  open_products(e, ar, &g, &tp, NULL, NULL, &total, &inner);
  Ix w0 = emit_weight_ix(e, ar, tp.k, ix_const(0), ix_const(0));
  emit_call(e, "mm_grid", (EmitArg[]){
      {"m", num(e, s->shape.channels)}, {"n", num(e, d->shape.channels)}, {"k", total}, {"kn", inner},
      {"nn", num(e, d->shape.channels)},
      {"a", ix_at(e->a, z, zc.off)}, {"ai", num(e, src_sz)}, {"ap1", num(e, zc.step1)},
      {"ap0", num(e, zc.step0)},
      {"b", ix_at(e->a, ybar, yc.off)}, {"bs", "0"}, {"bp1", num(e, yc.step1)}, {"bp0", num(e, yc.step0)},
      {"bj1", "0"}, {"bj0", num(e, dst_sz)},
      {"c", ix_at(e->a, dw, w0)}, {"ci", num(e, wsrc)}, {"cj1", "0"}, {"cj0", num(e, wdst)}, {"work", "work"}}, (int[]){5, 4, 6, 5}, 4);
  emit_close_to(e, base);
  grid_work(e, LONG_MAX, s->shape.channels); /* k: the positions of a tap's box, times the batch */
}
