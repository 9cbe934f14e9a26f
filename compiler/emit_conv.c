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
 * Pooling always uses the plain loops.
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

static const char *tap_off(Emit *e, const ConvAxis *ax, int a) {
  return arena_printf(e->a, "k%d * %d %c %d", a, ax->dilation, ax->pad0 < 0 ? '+' : '-',
                      ax->pad0 < 0 ? -ax->pad0 : ax->pad0);
}

/* Opens the loops over kernel taps and output positions. The window
 * [lo, hi) bounds the input positions (the grid, or on axis 0 the time
 * range being written when the arrow scatters); [olo, ohi) the outputs. */
static void open_taps(Emit *e, const IrArrow *ar, const Geom *g, const char *t0, const char *t1,
                      int *depth) {
  StrBuf *c = e->c;
  for (int a = 0; a < g->g; a++)
    sb_printf(c, "%*sfor (long k%d = 0; k%d < %d; k%d++) {\n", 4 * (*depth)++, "", a, a,
              ar->ax[a].kernel, a);
  for (int a = 0; a < g->g; a++) {
    bool time = a == 0 && t0;
    const char *lo = time && ar->adjoint ? t0 : "0";
    const char *hi = time && ar->adjoint ? t1 : arena_printf(e->a, "%d", g->in[a]);
    sb_printf(c, "%*slong f%d = o_first(%s, %d, %s), e%d = o_end(%s, %d, %s, %d);\n", 4 * *depth, "",
              a, tap_off(e, &ar->ax[a], a), ar->ax[a].stride, lo, a, tap_off(e, &ar->ax[a], a),
              ar->ax[a].stride, hi, g->out[a]);
    if (time && !ar->adjoint)
      sb_printf(c, "%*sif (f0 < %s) f0 = %s;\n%*sif (e0 > %s) e0 = %s;\n", 4 * *depth, "", t0, t0,
                4 * *depth, "", t1, t1);
  }
}

static const char *in_index(Emit *e, const IrArrow *ar, const Geom *g) {
  StrBuf sb = {0};
  for (int a = 0; a < g->g; a++)
    sb_printf(&sb, "%s(o%d * %d + k%d * %d %c %d) * %ld", a ? " + " : "", a, ar->ax[a].stride, a,
              ar->ax[a].dilation, ar->ax[a].pad0 < 0 ? '+' : '-', abs(ar->ax[a].pad0), g->in_str[a]);
  const char *s = arena_strdup(e->a, sb.data);
  sb_free(&sb);
  return s;
}

static const char *out_index(Emit *e, const Geom *g) {
  StrBuf sb = {0};
  for (int a = 0; a < g->g; a++)
    sb_printf(&sb, "%so%d * %ld", a ? " + " : "", a, g->out_str[a]);
  const char *s = arena_strdup(e->a, sb.data);
  sb_free(&sb);
  return s;
}

/* Index of W[k.., cin, cout] for the tap k and channels (ci, co) of the
 * arrow: a transposed weight is read flipped, with its channels swapped. */
static const char *weight_index(Emit *e, const IrArrow *ar, const char *ci, const char *co) {
  const IrParam *p = IR_PARAM(e->m, ar->w.param);
  const char *k = "0";
  for (int a = 0; a < ar->ngrid; a++) {
    const char *tap = ar->w.transposed
                          ? arena_printf(e->a, "%d - k%d", ar->w.k_off[a] + ar->ax[a].kernel - 1, a)
                          : arena_printf(e->a, "%d + k%d", ar->w.k_off[a], a);
    k = a == 0 ? arena_printf(e->a, "(%s)", tap)
               : arena_printf(e->a, "(%s * %d + %s)", k, p->shape[a], tap);
  }
  int rank = p->rank;
  /* a transposed weight, or an adjoint arrow, maps destination channels to
   * source channels: W's input axis is then indexed by co */
  bool swap = ar->w.transposed != ar->adjoint;
  const char *wi = swap ? co : ci, *wo = swap ? ci : co;
  return arena_printf(e->a, "(%s * %d + %d + %s) * %d + %d + %s", k, p->shape[rank - 2],
                      ar->w.in_off, wi, p->shape[rank - 1], ar->w.out_off, wo);
}

static void open_positions(StrBuf *c, int g, int *depth) {
  for (int a = 0; a < g; a++)
    sb_printf(c, "%*sfor (long o%d = f%d; o%d < e%d; o%d++)\n", 4 * (*depth)++, "", a, a, a, a, a);
}

static void close_to(StrBuf *c, int *depth, int target) {
  while (*depth > target) {
    (*depth)--;
    sb_printf(c, "%*s}\n", 4 * *depth, "");
  }
}

/* Below this many (source, destination) channel pairs, a tap's product is
 * too small for mm_grid and the plain loops are faster. */
enum { SMALL = 8 };

/* Opens the loops over samples and (destination, source) channel pairs of
 * an arrow of machine m, with zs and yd pointing at the pair's grids. */
static void open_pairs(Emit *e, const IrMachine *m, const IrArrow *ar, const char *z, const char *y,
                       bool const_y) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  sb_printf(e->c, "    for (long n = 0; n < batch; n++)\n"
                  "        for (long co = 0; co < %d; co++)\n"
                  "            for (long ci = 0; ci < %d; ci++) {\n"
                  "                const real *zs = %s + (n * %d + ci) * %ld;\n"
                  "                %sreal *yd = %s + (n * %d + co) * %ld;\n",
            d->shape.channels, s->shape.channels, z, s->shape.channels, src_sz,
            const_y ? "const " : "", y, d->shape.channels, dst_sz);
}

/* Few channels (fewer than SMALL products of a source and a destination
 * channel): the plain loops, per sample, channel pair and tap, over the
 * tap's box of outputs. */
static void conv_loops(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  StrBuf *c = e->c;
  Geom g = geom_of(e->m, ar);
  open_pairs(e, e->m, ar, z, y, false);
  int depth = 4;
  open_taps(e, ar, &g, t0, t1, &depth);
  sb_printf(c, "%*sconst real w = %s[%s];\n", 4 * depth, "", emit_pname(e, ar->w.param),
            weight_index(e, ar, "ci", "co"));
  open_positions(c, g.g, &depth);
  if (!ar->adjoint)
    sb_printf(c, "%*syd[%s] += w * zs[%s];\n", 4 * depth, "", out_index(e, &g), in_index(e, ar, &g));
  else
    sb_printf(c, "%*syd[%s] += w * zs[%s];\n", 4 * depth, "", in_index(e, ar, &g), out_index(e, &g));
  depth -= g.g;
  close_to(c, &depth, 3);
}

/* The kernel gradient with the plain loops (few channels). */
static void conv_grad_loops(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  StrBuf *c = e->c;
  Geom g = geom_of(e->primal, ar);
  open_pairs(e, e->primal, ar, z, ybar, true);
  int depth = 4;
  open_taps(e, ar, &g, NULL, NULL, &depth);
  sb_printf(c, "%*sreal t = 0;\n", 4 * depth, "");
  int inner = depth;
  open_positions(c, g.g, &depth);
  if (!ar->adjoint)
    sb_printf(c, "%*st += zs[%s] * yd[%s];\n", 4 * depth, "", in_index(e, ar, &g), out_index(e, &g));
  else
    sb_printf(c, "%*st += zs[%s] * yd[%s];\n", 4 * depth, "", out_index(e, &g), in_index(e, ar, &g));
  depth = inner;
  sb_printf(c, "%*s%s[%s] += t;\n", 4 * depth, "", dw, weight_index(e, ar, "ci", "co"));
  close_to(c, &depth, 3);
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

/* A position on axis a of the arrow's input grid for output position o
 * (the text of o*s + k*d - p0), or the output position o itself. */
static const char *pos_text(Emit *e, const IrArrow *ar, int a, bool in, const char *o) {
  if (!in)
    return o;
  const ConvAxis *x = &ar->ax[a];
  const char *t = x->stride == 1 ? o : arena_printf(e->a, "%s * %d", o, x->stride);
  t = x->dilation == 1 ? arena_printf(e->a, "%s + k%d", t, a)
                       : arena_printf(e->a, "%s + k%d * %d", t, a, x->dilation);
  if (x->pad0)
    t = arena_printf(e->a, "%s %c %d", t, x->pad0 > 0 ? '-' : '+', x->pad0 > 0 ? x->pad0 : -x->pad0);
  return t;
}

/* How a buffer is addressed along the two-level index (j1, j0) of a tap's
 * product: the offset of its first element (the box's corner) and the
 * steps of j1 and j0. On a 1-D grid j1 is the sample (step: the block's size
 * per sample); on more axes the sample and the axes before the last two are
 * loop variables (n, o0, ...) inside the offset. `in` selects the arrow's
 * input grid (positions o*s + k*d - p0) or its output grid (positions o). */
typedef struct Cols {
  const char *off;
  long step1, step0;
} Cols;

static Cols cols_of(Emit *e, const IrArrow *ar, const Geom *g, bool in, long sample) {
  const long *str = in ? g->in_str : g->out_str;
  StrBuf sb = {0};
  if (g->g > 1)
    sb_printf(&sb, "n * %ld + ", sample);
  for (int a = 0; a < g->g; a++) {
    const char *v = arena_printf(e->a, "%c%d", a < g->g - 2 ? 'o' : 'f', a);
    const char *p = pos_text(e, ar, a, in, v);
    if (str[a] == 1 || p == v)
      sb_printf(&sb, "%s%s%s%s", a ? " + " : "", p, str[a] == 1 ? "" : " * ",
                str[a] == 1 ? "" : arena_printf(e->a, "%ld", str[a]));
    else
      sb_printf(&sb, "%s(%s) * %ld", a ? " + " : "", p, str[a]);
  }
  int last = g->g - 1;
  Cols c = {.off = arena_strdup(e->a, sb.data), .step0 = in ? ar->ax[last].stride : 1};
  c.step1 = g->g == 1 ? sample : (in ? ar->ax[last - 1].stride : 1) * str[last - 1];
  sb_free(&sb);
  return c;
}

/* An mm_grid call of inner dimension k packs its panels in the function's
 * scratch, work (emit_grid_work). */
static void grid_work(Emit *e, long k) {
  long need = emit_grid_work(k, emit_nb(e->o->f32, e->o->vec_bytes ? e->o->vec_bytes : 64));
  if (need > e->work)
    e->work = need;
}

/* Opens the loops over taps, skips a tap whose box is empty, and on a grid
 * of more than one axis opens the loops over samples and the leading axes.
 * Sets the text of the two-level extent: total (j1 x j0) and inner (j0). */
static void open_products(Emit *e, const IrArrow *ar, const Geom *g, const char *t0,
                          const char *t1, int *depth, const char **total, const char **inner) {
  StrBuf *c = e->c;
  open_taps(e, ar, g, t0, t1, depth);
  sb_printf(c, "%*sif (", 4 * *depth, "");
  for (int a = 0; a < g->g; a++)
    sb_printf(c, "%sf%d >= e%d", a ? " || " : "", a, a);
  sb_puts(c, ")\n");
  sb_printf(c, "%*scontinue; /* no output reads this tap inside the grid */\n", 4 * *depth + 4, "");
  int last = g->g - 1;
  *inner = arena_printf(e->a, "e%d - f%d", last, last);
  if (g->g == 1) {
    *total = "batch * (e0 - f0)";
    return;
  }
  *total = arena_printf(e->a, "(e%d - f%d) * (e%d - f%d)", last - 1, last - 1, last, last);
  sb_printf(c, "%*sfor (long n = 0; n < batch; n++)\n", 4 * (*depth)++, "");
  for (int a = 0; a + 2 < g->g; a++)
    sb_printf(c, "%*sfor (long o%d = f%d; o%d < e%d; o%d++)\n", 4 * (*depth)++, "", a, a, a, a, a);
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

/* ---- stride-1 convolutions as one product over a zero-padded input -----------
 *
 * Per tap, the product above has an inner dimension of only the input
 * channels, and every tap re-reads and re-writes the output. For a stride-1
 * conv the taps are folded into the inner dimension instead. Per group of
 * samples, the source is copied into a zero-padded buffer of the function's
 * workspace, pad[ci, n, x] with x = the input position + p0 on every axis,
 * so that row (k, ci) of the patch matrix is the window pad[ci, n, k*d + u]
 * over the padded output positions u: read in place by mm_taps, one product
 * (co x (k, ci)) ((k, ci) x (n, u)) per group, of inner dimension taps x ci.
 * Positions u past the output grid along the inner axes (and between two
 * samples) are computed and dropped. The kernel gradient reads the same
 * windows: the product ((k, ci) x (n, u)) ((n, u) x co) with the output's
 * cotangent packed by position (mm_rows). Groups hold as many samples as keep
 * the buffers within GROUP_BYTES (in L2); the workspace stays under
 * WORK_BYTES, or the per-tap products above are used. */
enum { GROUP_BYTES = 384 * 1024, WORK_BYTES = 2048 * 1024, MAX_GROUP = 64, MR_ = 4 };

static long round_up(long v, long m) { return (v + m - 1) / m * m; }

/* "v - p" for a position v read p before its padded coordinate. */
static const char *minus_pad(Emit *e, const char *v, int p) {
  if (!p)
    return v;
  return arena_printf(e->a, "%s %c %d", v, p > 0 ? '-' : '+', p > 0 ? p : -p);
}

/* The padded geometry of a stride-1 arrow: ext[a] the padded extent per
 * axis (outputs + the kernel's reach), pstr its strides, plane = one
 * sample's padded grid, span = the padded positions from the first output
 * to the last + 1, group samples per product, ld the product's row length. */
typedef struct Win {
  Geom g;
  long ci, co, taps, kk;  /* channels, kernel taps, inner dimension taps * ci */
  long nb;                /* the prelude's NB */
  long ext[IR_MAX_GRID], pstr[IR_MAX_GRID], plane, span;
  long group, ld;
  long pad_sz, wk_sz, prod_sz, yu_sz, dwk_sz; /* workspace pieces, scalars */
} Win;

/* The stride-1 arrows one windowed product computes together: arrows into
 * one block with the same kernel, pads and dilation, their sources' channels
 * stacked in the padded buffer (source j's from off[j]). */
enum { SET_MAX = 64 }; /* arrows in one windowed product */

typedef struct Set {
  const IrArrow *ar[SET_MAX];
  const char *z[SET_MAX]; /* the sources' buffers */
  const char *dw[SET_MAX]; /* the weights' gradients (kernel gradient only) */
  long off[SET_MAX + 1];  /* channel offsets; off[n] = all channels */
  int n;
} Set;

static bool windowed(const IrArrow *ar) {
  if (ar->kind != ARROW_CONV || ar->adjoint)
    return false;
  for (int a = 0; a < ar->ngrid; a++)
    if (ar->ax[a].stride != 1)
      return false;
  return true;
}

static bool same_window(const IrArrow *a, const IrArrow *b) {
  if (a->ngrid != b->ngrid)
    return false;
  for (int x = 0; x < a->ngrid; x++)
    if (a->ax[x].kernel != b->ax[x].kernel || a->ax[x].pad0 != b->ax[x].pad0 ||
        a->ax[x].pad1 != b->ax[x].pad1 || a->ax[x].dilation != b->ax[x].dilation)
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
  w->nb = emit_nb(e->o->f32, e->o->vec_bytes ? e->o->vec_bytes : 64);
  if (grad && 4 * w->co < w->nb) /* the gradient's panel would be mostly padding */
    return false;
  long esz = e->o->f32 ? 4 : 8;
  for (int a = 0; a < g->g; a++) {
    w->taps *= ar->ax[a].kernel;
    w->ext[a] = g->out[a] + (long)(ar->ax[a].kernel - 1) * ar->ax[a].dilation;
  }
  w->kk = w->taps * w->ci;
  w->pstr[g->g - 1] = 1;
  for (int a = g->g - 2; a >= 0; a--)
    w->pstr[a] = w->pstr[a + 1] * w->ext[a + 1];
  w->plane = w->pstr[0] * w->ext[0];
  w->span = 1;
  for (int a = 0; a < g->g; a++)
    w->span += (g->out[a] - 1) * w->pstr[a];
  long mp = round_up(w->co, MR_), kp = round_up(w->kk, MR_), cp = round_up(w->co, w->nb);
  /* standalone code, built for small memories, puts one sample in each
   * group of a product's columns: they are independent, so the outputs are
   * the same bits; a kernel gradient, which sums over its group, keeps them */
  for (long n = e->o->standalone && !grad ? 1 : MAX_GROUP; n >= 1; n--) {
    long cols = (n - 1) * w->plane + w->span;
    w->group = n;
    w->ld = round_up(cols, w->nb);
    w->pad_sz = w->ci * n * w->plane + w->nb;
    if (grad) {
      w->yu_sz = cols * cp;
      w->dwk_sz = kp * cp;
    } else {
      w->wk_sz = w->kk * mp;
      w->prod_sz = mp * w->ld;
    }
    long group = esz * (w->pad_sz + w->prod_sz + w->yu_sz);
    long all = esz * (w->pad_sz + w->prod_sz + w->yu_sz + w->wk_sz + w->dwk_sz);
    if ((group <= GROUP_BYTES || n == 1) && all <= WORK_BYTES)
      return true;
  }
  return false;
}

/* Where the tap k starts in a sample's padded grid: k*d along each axis. */
static void emit_tap_at(Emit *e, const IrArrow *ar, const Win *w) {
  StrBuf *c = e->c;
  sb_printf(c, "        const long tap_at[%ld] = {", w->taps);
  for (long t = 0; t < w->taps; t++) {
    long off = 0, rest = t;
    for (int a = w->g.g - 1; a >= 0; a--) {
      off += rest % ar->ax[a].kernel * ar->ax[a].dilation * w->pstr[a];
      rest /= ar->ax[a].kernel;
    }
    sb_printf(c, "%s%ld", t ? ", " : "", off);
  }
  sb_puts(c, "};\n");
}

/* Opens the loop over groups of samples and copies the group's inputs into
 * pad[c, n, x] = z_j[n0 + n, c - off[j], x - p0], zero off the grid. */
static void emit_pad(Emit *e, const IrMachine *m, const Set *set, const Win *w) {
  StrBuf *c = e->c;
  const Geom *g = &w->g;
  const IrArrow *ar = set->ar[0];
  sb_printf(c, "        for (long n0 = 0; n0 < batch; n0 += %ld) {\n", w->group);
  if (w->group > 1)
    sb_printf(c, "            const long group = batch - n0 < %ld ? batch - n0 : %ld;\n", w->group, w->group);
  else
    sb_puts(c, "            const long group = 1;\n");
  sb_printf(c, "            memset(pad, 0, sizeof(real) * %ld);\n", w->pad_sz);
  for (int j = 0; j < set->n; j++) {
    const IrBlock *s = IR_BLOCK(m, set->ar[j]->src);
    sb_printf(c, "            for (long n = 0; n < group; n++)\n"
                 "                for (long ci = 0; ci < %d; ci++)\n", s->shape.channels);
    int depth = 5;
    StrBuf pi = {0}, zi = {0};
    if (set->off[j])
      sb_printf(&pi, "((%ld + ci) * %ld + n) * %ld", set->off[j], w->group, w->plane);
    else
      sb_printf(&pi, "(ci * %ld + n) * %ld", w->group, w->plane);
    sb_printf(&zi, "(n0 + n) * %ld + ci * %ld", s->size, g->in_size);
    for (int a = 0; a < g->g; a++) {
      int pa = ar->ax[a].pad0;
      /* the padded positions x whose input x - pa lies in [0, in) */
      long lo = pa > 0 ? pa : 0, hi = g->in[a] + pa < w->ext[a] ? g->in[a] + pa : w->ext[a];
      const char *x = arena_printf(e->a, "x%d", a);
      sb_printf(c, "%*sfor (long %s = %ld; %s < %ld; %s++)\n", 4 * depth++, "", x, lo, x, hi, x);
      sb_printf(&pi, w->pstr[a] == 1 ? " + %s" : " + %s * %ld", x, w->pstr[a]);
      if (g->in_str[a] == 1)
        sb_printf(&zi, " + %s", minus_pad(e, x, pa));
      else
        sb_printf(&zi, " + (%s) * %ld", minus_pad(e, x, pa), g->in_str[a]);
    }
    sb_printf(c, "%*spad[%s] = %s[%s];\n", 4 * depth, "", pi.data, set->z[j], zi.data);
    sb_free(&pi);
    sb_free(&zi);
  }
}

/* Opens the loops over (n, co, o...) of a group's outputs; returns the
 * index of u = n * plane + o . pstr in a row of the product and sets *yi to
 * the index of y[n0 + n, co, o] in block d. */
static const char *open_outputs(Emit *e, const Win *w, const IrBlock *d, const char **yi, int *depth) {
  StrBuf *c = e->c;
  const Geom *g = &w->g;
  sb_printf(c, "            for (long n = 0; n < group; n++)\n"
               "                for (long co = 0; co < %ld; co++)\n", w->co);
  *depth = 5;
  StrBuf ui = {0}, di = {0};
  sb_printf(&ui, "n * %ld", w->plane);
  sb_printf(&di, "(n0 + n) * %ld + co * %ld", d->size, g->out_size);
  for (int a = 0; a < g->g; a++) {
    sb_printf(c, "%*sfor (long o%d = 0; o%d < %d; o%d++)\n", 4 * (*depth)++, "", a, a, g->out[a], a);
    sb_printf(&ui, w->pstr[a] == 1 ? " + o%d" : " + o%d * %ld", a, w->pstr[a]);
    sb_printf(&di, g->out_str[a] == 1 ? " + o%d" : " + o%d * %ld", a, g->out_str[a]);
  }
  const char *u = arena_strdup(e->a, ui.data);
  *yi = arena_strdup(e->a, di.data);
  sb_free(&ui);
  sb_free(&di);
  return u;
}

/* The loops over the taps and the channels of source j, p = (k, off[j] + ci)
 * the row of the stacked patch matrix, for reading or writing its W[k, ci, co]
 * beside the packed wk[p, co]. */
static int open_kernel_rows(Emit *e, const Set *set, int j, const Win *w) {
  StrBuf *c = e->c;
  const IrArrow *ar = set->ar[j];
  int depth = 2;
  for (int a = 0; a < w->g.g; a++)
    sb_printf(c, "%*sfor (long k%d = 0; k%d < %d; k%d++)\n", 4 * depth++, "", a, a, ar->ax[a].kernel, a);
  sb_printf(c, "%*sfor (long ci = 0; ci < %ld; ci++) {\n", 4 * depth, "", set->off[j + 1] - set->off[j]);
  const char *tp = "k0"; /* the tap's index, k0 * K1 + k1 ... */
  for (int a = 1; a < w->g.g; a++)
    tp = arena_printf(e->a, a == 1 ? "%s * %d + k%d" : "(%s) * %d + k%d", tp, ar->ax[a].kernel, a);
  const char *off = set->off[j] ? arena_printf(e->a, " + %ld", set->off[j]) : "";
  sb_printf(c, "%*sconst long p = %s%s%s * %ld%s + ci;\n", 4 * depth + 4, "", w->g.g > 1 ? "(" : "", tp,
            w->g.g > 1 ? ")" : "", w->ci, off);
  return depth;
}

/* The comment over a windowed product: the equation, then how it runs. */
static void win_comment(Emit *e, const Set *set, const Win *w, const char *how) {
  StrBuf rd = {0}, wr = {0}, zs = {0};
  for (int a = 0; a < w->g.g; a++) {
    const char *o = arena_printf(e->a, "o%d", a);
    sb_printf(&rd, "%s%s", a ? ", " : "", pos_text(e, set->ar[0], a, true, o));
    sb_printf(&wr, "%s%s", a ? ", " : "", o);
  }
  for (int j = 0; j < set->n; j++)
    sb_printf(&zs, "%s%s", j ? ", " : "", set->z[j]);
  sb_printf(e->c, "    /* y[n, co, %s] += sum over k, ci of W[k, ci, co] z[n, ci, %s]%s%s%s:\n%s", wr.data,
            rd.data, set->n > 1 ? "\n     * for z = " : "", set->n > 1 ? zs.data : "",
            set->n > 1 ? " (their channels stacked)" : "", how);
  sb_free(&rd);
  sb_free(&wr);
  sb_free(&zs);
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

/* y += the arrows of set, as one windowed product per group of samples. */
static void conv_win(Emit *e, const Set *set, const Win *w, const char *y) {
  const IrBlock *d = IR_BLOCK(e->m, set->ar[0]->dst);
  long mp = round_up(w->co, MR_);
  StrBuf *c = e->c;
  win_comment(e, set, w, arena_printf(e->a,
      "     * per group of %ld sample%s, z zero-padded into the workspace, then one product\n"
      "     * (co x (k, ci)) ((k, ci) x (n, u)) of inner dimension %ld, the patch matrix\n"
      "     * read in place from the padded input (u: padded positions) */\n",
      w->group, w->group > 1 ? "s" : "", w->kk));
  sb_puts(c, "    {\n");
  sb_printf(c, "        real *const pad = work;  /* pad[ci, n, x]: %ld x %ld x %ld, + NB read past the end */\n",
            w->ci, w->group, w->plane);
  sb_printf(c, "        real *const wk = work + %ld; /* wk[(k, ci) * %ld + co] = W[k, ci, co]%s */\n", w->pad_sz,
            mp, mp > w->co ? ", 0 past the channels" : "");
  sb_printf(c, "        real *const prod = work + %ld; /* prod[co, (n, u)]: %ld x %ld */\n", w->pad_sz + w->wk_sz,
            mp, w->ld);
  if (mp > w->co)
    sb_printf(c, "        memset(wk, 0, sizeof(real) * %ld);\n", w->wk_sz);
  for (int j = 0; j < set->n; j++) {
    int depth = open_kernel_rows(e, set, j, w);
    sb_printf(c, "%*sfor (long co = 0; co < %ld; co++)\n", 4 * depth + 4, "", w->co);
    sb_printf(c, "%*swk[p * %ld + co] = %s[%s];\n", 4 * depth + 8, "", mp, emit_pname(e, set->ar[j]->w.param),
              weight_index(e, set->ar[j], "ci", "co"));
    sb_printf(c, "%*s}\n", 4 * depth, "");
  }
  emit_tap_at(e, set->ar[0], w);
  emit_pad(e, e->m, set, w);
  sb_printf(c, "            /* prod[co, u] = sum over k, ci of wk[(k, ci), co] pad[ci, u + tap_at[k]] */\n"
               "            mm_taps(%ld, (group - 1) * %ld + %ld, %ld, %ld, wk, pad, tap_at, %ld, prod, %ld);\n",
            mp, w->plane, w->span, w->taps, w->ci, w->group * w->plane, w->ld);
  const char *yi;
  int depth;
  const char *u = open_outputs(e, w, d, &yi, &depth);
  sb_printf(c, "%*s%s[%s] += prod[co * %ld + %s];\n", 4 * depth, "", y, yi, w->ld, u);
  sb_puts(c, "        }\n    }\n");
  long need = w->pad_sz + w->wk_sz + w->prod_sz;
  if (need > e->work)
    e->work = need;
}

/* dW += the kernel gradients of the arrows of set, as one windowed product
 * per group of samples. */
static void conv_grad_win(Emit *e, const Set *set, const Win *w, const char *ybar) {
  const IrBlock *d = IR_BLOCK(e->primal, set->ar[0]->dst);
  long cp = round_up(w->co, w->nb), kp = round_up(w->kk, MR_);
  StrBuf *c = e->c;
  sb_printf(c, "    /* per group of %ld sample%s, z zero-padded into the workspace, then one product\n"
               "     * ((k, ci) x (n, u)) ((n, u) x co) of inner dimension the group's padded positions,\n"
               "     * the patch matrix read in place from the padded input */\n",
            w->group, w->group > 1 ? "s" : "");
  sb_puts(c, "    {\n");
  sb_printf(c, "        real *const pad = work;  /* pad[ci, n, x]: %ld x %ld x %ld, + NB read past the end */\n",
            w->ci, w->group, w->plane);
  sb_printf(c, "        real *const yu = work + %ld; /* yu[(n, u), co] = ybar[n0 + n, co, o], 0 off the grid: %ld x %ld */\n",
            w->pad_sz, w->ld, cp);
  sb_printf(c, "        real *const dwk = work + %ld; /* dwk[(k, ci), co]: %ld x %ld */\n",
            w->pad_sz + w->yu_sz, kp, cp);
  sb_printf(c, "        memset(dwk, 0, sizeof(real) * %ld);\n", w->dwk_sz);
  emit_tap_at(e, set->ar[0], w);
  emit_pad(e, e->primal, set, w);
  sb_printf(c, "            memset(yu, 0, sizeof(real) * %ld);\n", w->yu_sz);
  int depth;
  const char *yi;
  const char *u = open_outputs(e, w, d, &yi, &depth);
  sb_printf(c, "%*syu[(%s) * %ld + co] = %s[%s];\n", 4 * depth, "", u, cp, ybar, yi);
  sb_printf(c, "            /* dwk[(k, ci), co] += sum over (n, u) of pad[ci, u + tap_at[k]] yu[(n, u), co] */\n"
               "            for (long j = 0; j < %ld; j += NB)\n"
               "                mm_rows(%ld, (group - 1) * %ld + %ld, %ld, pad, tap_at, %ld, yu + j, %ld, dwk + j, %ld);\n"
               "        }\n",
            cp, w->kk, w->plane, w->span, w->ci, w->group * w->plane, cp, cp);
  for (int j = 0; j < set->n; j++) {
    sb_printf(c, "        /* d%s[k, ci, co] += dwk[(k, ci), co] */\n", IR_PARAM(e->primal, set->ar[j]->w.param)->name);
    depth = open_kernel_rows(e, set, j, w);
    sb_printf(c, "%*sfor (long co = 0; co < %ld; co++)\n", 4 * depth + 4, "", w->co);
    sb_printf(c, "%*s%s[%s] += dwk[p * %ld + co];\n", 4 * depth + 8, "", set->dw[j],
              weight_index(e, set->ar[j], "ci", "co"), cp);
    sb_printf(c, "%*s}\n", 4 * depth, "");
  }
  sb_puts(c, "    }\n");
  long need = w->pad_sz + w->yu_sz + w->dwk_sz;
  if (need > e->work)
    e->work = need;
}

int emit_conv_windows(Emit *e, const int *list, const char *const *zs, int n, const char *y, bool *done) {
  Set set = set_of(e->m, list, zs, n, done);
  Win w;
  if (!set.n || !win_of(e, e->m, &set, false, &w))
    return 0;
  conv_win(e, &set, &w, y);
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
static void conv_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  if ((long)s->shape.channels * d->shape.channels < SMALL) {
    conv_loops(e, ar, y, z, t0, t1);
    return;
  }
  Geom g = geom_of(e->m, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  long wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  Cols zc = cols_of(e, ar, &g, !ar->adjoint, s->size), yc = cols_of(e, ar, &g, ar->adjoint, d->size);
  StrBuf rd = {0}, wr = {0};
  for (int a = 0; a < g.g; a++) {
    const char *o = arena_printf(e->a, "o%d", a);
    sb_printf(&rd, "%s%s", a ? ", " : "", pos_text(e, ar, a, true, o));
    sb_printf(&wr, "%s%s", a ? ", " : "", o);
  }
  sb_printf(c, "    /* for each tap k: y[n, co, %s] += sum over ci of W[k, ci, co] z[n, ci, %s]: */\n",
            ar->adjoint ? rd.data : wr.data, ar->adjoint ? wr.data : rd.data);
  sb_printf(c, "    /* the product (co x ci) (ci x %s) over the tap's box [f, e) of outputs */\n",
            g.g == 1 ? "(n, o0)" : "positions");
  sb_free(&rd);
  sb_free(&wr);
  int depth = 1;
  const char *total, *inner;
  open_products(e, ar, &g, t0, t1, &depth, &total, &inner);
  int in = 4 * depth;
  sb_printf(c, "%*smm_grid(%d, %s, %d, %d, %s,\n", in, "", d->shape.channels, total,
            s->shape.channels, s->shape.channels, inner);
  sb_printf(c, "%*s        %s + %s, %ld, 0, %ld,\n", in, "", emit_pname(e, ar->w.param),
            weight_index(e, ar, "0", "0"), wdst, wsrc);
  sb_printf(c, "%*s        %s + %s, 0, %ld, %ld, %ld,\n", in, "", z, zc.off, src_sz, zc.step1, zc.step0);
  sb_printf(c, "%*s        %s + %s, %ld, %ld, %ld, work);\n", in, "", y, yc.off, dst_sz, yc.step1, yc.step0);
  depth -= g.g > 1 ? g.g - 1 : 0;
  close_to(c, &depth, 1);
  grid_work(e, s->shape.channels);
}

/* Average pooling: one channel to the same channel, weight 1 / taps. */
static void pool_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  Geom g = geom_of(e->m, ar);
  long taps = 1;
  for (int a = 0; a < g.g; a++)
    taps *= ar->ax[a].kernel;
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  sb_printf(c, "    for (long n = 0; n < batch; n++)\n"
               "        for (long ch = 0; ch < %d; ch++) {\n"
               "            const real *zs = %s + (n * %d + ch) * %ld;\n"
               "            real *yd = %s + (n * %d + ch) * %ld;\n"
               "            const real w = (real)1 / %ld;\n",
            d->shape.channels, z, s->shape.channels, src_sz, y, d->shape.channels, dst_sz, taps);
  int depth = 3;
  open_taps(e, ar, &g, t0, t1, &depth);
  open_positions(c, g.g, &depth);
  if (!ar->adjoint)
    sb_printf(c, "%*syd[%s] += w * zs[%s];\n", 4 * depth, "", out_index(e, &g), in_index(e, ar, &g));
  else
    sb_printf(c, "%*syd[%s] += w * zs[%s];\n", 4 * depth, "", in_index(e, ar, &g), out_index(e, &g));
  depth -= g.g;
  close_to(c, &depth, 2);
}

static void gpool_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                        const char *t1) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  const IrBlock *grid = ar->adjoint ? d : s;
  long n = grid->size / grid->shape.channels;
  if (!ar->adjoint) /* y[n, c] += mean over the grid of z[n, c, :] */
    sb_printf(e->c, "    for (long n = 0; n < batch * %d; n++) {\n"
                    "        real t = 0;\n"
                    "        for (long q = 0; q < %ld; q++)\n            t += %s[n * %ld + q];\n"
                    "        %s[n] += t / %ld;\n    }\n",
              s->shape.channels, n, z, n, y, n);
  else if (!t0) /* y[n, c, :] += z[n, c] / grid size */
    sb_printf(e->c, "    for (long n = 0; n < batch * %d; n++)\n"
                    "        for (long q = 0; q < %ld; q++)\n            %s[n * %ld + q] += %s[n] / %ld;\n",
              d->shape.channels, n, y, n, z, n);
  else { /* the same, for the times [t0, t1) of a chunk */
    long inner = n / d->shape.grid[0];
    sb_printf(e->c, "    for (long n = 0; n < batch * %d; n++)\n"
                    "        for (long q = %s * %ld; q < %s * %ld; q++)\n"
                    "            %s[n * %ld + q] += %s[n] / %ld;\n",
              d->shape.channels, t0, inner, t1, inner, y, n, z, n);
  }
}

void emit_grid_arrow(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                     const char *t1) {
  sb_printf(e->c, "    /* %s", ar->adjoint ? "adjoint of " : "");
  switch (ar->kind) {
  case ARROW_CONV: {
    sb_printf(e->c, "conv: kernel [");
    for (int a = 0; a < ar->ngrid; a++)
      sb_printf(e->c, "%s%d", a ? ", " : "", ar->ax[a].kernel);
    sb_puts(e->c, "], pads [");
    for (int a = 0; a < ar->ngrid; a++)
      sb_printf(e->c, "%s(%d, %d)", a ? ", " : "", ar->ax[a].pad0, ar->ax[a].pad1);
    sb_puts(e->c, "], stride [");
    for (int a = 0; a < ar->ngrid; a++)
      sb_printf(e->c, "%s%d", a ? ", " : "", ar->ax[a].stride);
    sb_puts(e->c, "], dilation [");
    for (int a = 0; a < ar->ngrid; a++)
      sb_printf(e->c, "%s%d", a ? ", " : "", ar->ax[a].dilation);
    sb_printf(e->c, "]%s */\n", ar->w.transposed ? ", kernel flipped, channels swapped" : "");
    conv_apply(e, ar, y, z, t0, t1);
    break;
  }
  case ARROW_AVGPOOL:
    sb_puts(e->c, "average pooling */\n");
    pool_apply(e, ar, y, z, t0, t1);
    break;
  case ARROW_GAVGPOOL:
    sb_puts(e->c, "global average pooling */\n");
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
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(e->primal, ar->src), *d = IR_BLOCK(e->primal, ar->dst);
  if ((long)s->shape.channels * d->shape.channels < SMALL) {
    conv_grad_loops(e, ar, dw, z, ybar);
    return;
  }
  Geom g = geom_of(e->primal, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  long wsrc, wdst;
  weight_strides(e, ar, &wsrc, &wdst);
  Cols zc = cols_of(e, ar, &g, !ar->adjoint, s->size), yc = cols_of(e, ar, &g, ar->adjoint, d->size);
  int depth = 1;
  const char *total, *inner;
  open_products(e, ar, &g, NULL, NULL, &depth, &total, &inner);
  int in = 4 * depth;
  sb_printf(c, "%*smm_grid(%d, %d, %s, %s, %d,\n", in, "", s->shape.channels, d->shape.channels,
            total, inner, d->shape.channels);
  sb_printf(c, "%*s        %s + %s, %ld, %ld, %ld,\n", in, "", z, zc.off, src_sz, zc.step1, zc.step0);
  sb_printf(c, "%*s        %s + %s, %ld, %ld, 0, %ld,\n", in, "", ybar, yc.off, yc.step1, yc.step0,
            dst_sz);
  sb_printf(c, "%*s        %s + %s, %ld, 0, %ld, work);\n", in, "", dw, weight_index(e, ar, "0", "0"), wsrc,
            wdst);
  depth -= g.g > 1 ? g.g - 1 : 0;
  close_to(c, &depth, 1);
  grid_work(e, LONG_MAX); /* k: the positions of a tap's box, times the batch */
}
