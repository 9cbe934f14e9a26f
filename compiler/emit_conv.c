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

/* ---- stride-1 convolutions on 2-D and 3-D grids as one product per band ------
 *
 * Per tap, the product above has an inner dimension of only the input
 * channels, and every tap re-reads and re-writes the output. For a stride-1
 * conv on more than one axis the taps are folded into the inner dimension
 * instead: per sample and band of rows o0 (axis 0), the band's input is
 * copied to a zero-padded buffer on the stack, band[ci, x] with x = the
 * input position + p0, so that the patch matrix row (k, ci) is the window
 * band[ci, k*d + u] over the padded output positions u: read in place by
 * mm_win, one product (co x (k, ci)) ((k, ci) x u) per band. Positions u
 * past the output grid along the inner axes are computed and dropped. The
 * kernel gradient reads the same windows: per band, the product
 * ((k, ci) x u) (u x co) with the output's cotangent packed by position
 * (mm_rows). The stack buffers stay under PATCH_BYTES. */
enum { PATCH_BYTES = 40 * 1024 };

static long round_up(long v, long m) { return (v + m - 1) / m * m; }

/* "v - p" for a position v read p before its padded coordinate. */
static const char *minus_pad(Emit *e, const char *v, int p) {
  if (!p)
    return v;
  return arena_printf(e->a, "%s %c %d", v, p > 0 ? '-' : '+', p > 0 ? p : -p);
}

/* The band geometry of a stride-1 arrow: ext[a] the padded band's extent
 * (axis 0: rows + halo), bstr its strides; positions u = r * bstr[0] +
 * o1 * bstr[1] ...; a band of r rows spans (r - 1) * bstr[0] + tail of them. */
typedef struct Band {
  Geom g;
  long ci, co, taps, kk; /* channels, taps, inner dimension taps * ci */
  long nb, esz;          /* the prelude's NB, sizeof(real) */
  long ext[IR_MAX_GRID], bstr[IR_MAX_GRID], halo0, tail, rows;
  const char *u;         /* the text of u */
} Band;

static bool band_of(Emit *e, const IrMachine *m, const IrArrow *ar, Band *b) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  if (ar->adjoint || ar->ngrid < 2)
    return false;
  for (int a = 0; a < ar->ngrid; a++)
    if (ar->ax[a].stride != 1)
      return false;
  *b = (Band){.g = geom_of(m, ar), .ci = s->shape.channels, .co = d->shape.channels, .taps = 1};
  const Geom *g = &b->g;
  b->nb = e->o->f32 ? 32 : 16;
  b->esz = e->o->f32 ? 4 : 8;
  for (int a = 0; a < g->g; a++)
    b->taps *= ar->ax[a].kernel;
  b->kk = b->taps * b->ci;
  b->halo0 = (long)(ar->ax[0].kernel - 1) * ar->ax[0].dilation;
  for (int a = 1; a < g->g; a++)
    b->ext[a] = g->out[a] + (long)(ar->ax[a].kernel - 1) * ar->ax[a].dilation;
  b->bstr[g->g - 1] = 1;
  for (int a = g->g - 2; a >= 0; a--)
    b->bstr[a] = b->bstr[a + 1] * b->ext[a + 1];
  b->tail = 1;
  for (int a = 1; a < g->g; a++)
    b->tail += (g->out[a] - 1) * b->bstr[a];
  StrBuf u = {0};
  sb_printf(&u, "r * %ld", b->bstr[0]);
  for (int a = 1; a < g->g; a++)
    sb_printf(&u, b->bstr[a] == 1 ? " + o%d" : " + o%d * %ld", a, b->bstr[a]);
  b->u = arena_strdup(e->a, u.data);
  sb_free(&u);
  return true;
}

/* The rows per band: the most whose buffers fit, fixed + per_row(r) bytes
 * (0 when not even one row fits), then evened out over the bands. */
static long band_rows(Band *b, long mp, bool grad) {
  long rows = 0;
  for (long r = 1; r <= b->g.out[0]; r++) {
    long span = (r - 1) * b->bstr[0] + b->tail, elems = b->ci * (r + b->halo0) * b->bstr[0] + b->nb;
    elems += grad ? b->nb * span + mp * b->nb : mp * b->kk + mp * round_up(span, b->nb);
    if (b->esz * elems + 8 * (grad ? mp : b->kk) > PATCH_BYTES)
      break;
    rows = r;
  }
  if (rows) {
    long bands = (b->g.out[0] + rows - 1) / rows;
    rows = (b->g.out[0] + bands - 1) / bands;
  }
  b->rows = rows;
  b->ext[0] = rows + b->halo0;
  return rows;
}

/* Declares band[] (and its comment) and the loop over samples and bands,
 * then copies the band's input: z[n, ci, b0 + x0 - p0, x1 - p1 ...]. */
static void band_open(Emit *e, const IrArrow *ar, const Band *b, const char *z, long src_block) {
  StrBuf *c = e->c;
  const Geom *g = &b->g;
  long bsize = b->ci * b->ext[0] * b->bstr[0];
  int p0 = ar->ax[0].pad0;
  sb_printf(c, "        real band[%ld + NB]; /* band[ci, x0", bsize);
  for (int a = 1; a < g->g; a++)
    sb_printf(c, ", x%d", a);
  sb_printf(c, "] = z[n, ci, %s", minus_pad(e, "b0 + x0", p0));
  for (int a = 1; a < g->g; a++)
    sb_printf(c, ", %s", minus_pad(e, arena_printf(e->a, "x%d", a), ar->ax[a].pad0));
  sb_puts(c, "], 0 off the grid */\n");
  sb_printf(c, "        memset(band, 0, sizeof band);\n"
               "        for (long n = 0; n < batch; n++)\n"
               "            for (long b0 = 0; b0 < %d; b0 += %ld) {\n"
               "                long rows = %d - b0 < %ld ? %d - b0 : %ld;\n",
            g->out[0], b->rows, g->out[0], b->rows, g->out[0], b->rows);
  /* rows x0 of the band whose input row b0 + x0 - p0 lies in [0, in0) */
  sb_printf(c, "                long lo = %d - b0 > 0 ? %d - b0 : 0, hi = %d - b0 < rows + %ld ? %d - b0 : rows + %ld;\n",
            p0, p0, g->in[0] + p0, b->halo0, g->in[0] + p0, b->halo0);
  sb_printf(c, "                /* the band's input, zero-padded */\n"
               "                memset(band, 0, sizeof(real) * %ld);\n"
               "                for (long ci = 0; ci < %ld; ci++)\n"
               "                    for (long x0 = lo; x0 < hi; x0++)\n",
            bsize, b->ci);
  int depth = 6;
  StrBuf bi = {0}, zi = {0};
  sb_printf(&bi, "ci * %ld + x0 * %ld", b->ext[0] * b->bstr[0], b->bstr[0]);
  sb_printf(&zi, "n * %ld + ci * %ld + (%s) * %ld", src_block, g->in_size, minus_pad(e, "b0 + x0", p0),
            g->in_str[0]);
  for (int a = 1; a < g->g; a++) {
    int pa = ar->ax[a].pad0;
    /* the padded positions x whose input x - pa lies in [0, in) */
    long lo = pa > 0 ? pa : 0, hi = g->in[a] + pa < b->ext[a] ? g->in[a] + pa : b->ext[a];
    sb_printf(c, "%*sfor (long x%d = %ld; x%d < %ld; x%d++)\n", 4 * depth++, "", a, lo, a, hi, a);
    const char *x = arena_printf(e->a, "x%d", a);
    sb_printf(&bi, b->bstr[a] == 1 ? " + x%d" : " + x%d * %ld", a, b->bstr[a]);
    if (g->in_str[a] == 1)
      sb_printf(&zi, " + %s", minus_pad(e, x, pa));
    else
      sb_printf(&zi, " + (%s) * %ld", minus_pad(e, x, pa), g->in_str[a]);
  }
  sb_printf(c, "%*sband[%s] = %s[%s];\n", 4 * depth, "", bi.data, z, zi.data);
  sb_free(&bi);
  sb_free(&zi);
}

/* Opens the loops over taps and input channels with p = (k, ci), sets
 * row_at[p] (where row (k, ci) of the patch matrix starts in band). */
static int open_rows(Emit *e, const IrArrow *ar, const Band *b, bool set_row_at) {
  StrBuf *c = e->c;
  int depth = 2;
  for (int a = 0; a < b->g.g; a++)
    sb_printf(c, "%*sfor (long k%d = 0; k%d < %d; k%d++)\n", 4 * depth++, "", a, a, ar->ax[a].kernel, a);
  sb_printf(c, "%*sfor (long ci = 0; ci < %ld; ci++) {\n", 4 * depth, "", b->ci);
  StrBuf at = {0}; /* the window's start in band: k * d along each axis */
  for (int a = 0; a < b->g.g; a++) {
    long step = b->bstr[a] * ar->ax[a].dilation;
    sb_printf(&at, step == 1 ? " + k%d" : " + k%d * %ld", a, step);
  }
  const char *tp = "k0"; /* the tap's index, k0 * K1 + k1 ... */
  for (int a = 1; a < b->g.g; a++)
    tp = arena_printf(e->a, a == 1 ? "%s * %d + k%d" : "(%s) * %d + k%d", tp, ar->ax[a].kernel, a);
  sb_printf(c, "%*slong p = (%s) * %ld + ci;\n", 4 * depth + 4, "", tp, b->ci);
  if (set_row_at)
    sb_printf(c, "%*srow_at[p] = ci * %ld%s;\n", 4 * depth + 4, "", b->ext[0] * b->bstr[0], at.data);
  sb_free(&at);
  return depth;
}

/* Opens the loops over the output channels and positions of a band (co, r,
 * o1, ...) and returns the index of y[n, co, b0 + r, o1, ...] in block d. */
static const char *band_positions(Emit *e, const Band *b, const IrBlock *d, int *depth) {
  const Geom *g = &b->g;
  sb_printf(e->c, "                for (long co = 0; co < %ld; co++)\n"
                  "                    for (long r = 0; r < rows; r++)\n",
            b->co);
  *depth = 6;
  StrBuf yi = {0};
  sb_printf(&yi, "n * %ld + co * %ld + (b0 + r) * %ld", d->size, g->out_size, g->out_str[0]);
  for (int a = 1; a < g->g; a++) {
    sb_printf(e->c, "%*sfor (long o%d = 0; o%d < %d; o%d++)\n", 4 * (*depth)++, "", a, a, g->out[a], a);
    sb_printf(&yi, g->out_str[a] == 1 ? " + o%d" : " + o%d * %ld", a, g->out_str[a]);
  }
  const char *index = arena_strdup(e->a, yi.data);
  sb_free(&yi);
  return index;
}

/* Emits the banded form of conv_apply when the arrow fits it; false if not. */
static bool conv_patches(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0) {
  Band b;
  if (t0 || !band_of(e, e->m, ar, &b))
    return false;
  long mp = round_up(b.co, 4 /* MR */);
  if (!band_rows(&b, mp, false))
    return false;
  const Geom *g = &b.g;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  long ld = round_up((b.rows - 1) * b.bstr[0] + b.tail, b.nb);

  StrBuf *c = e->c;
  StrBuf rd = {0}, wr = {0};
  for (int a = 0; a < g->g; a++) {
    const char *o = arena_printf(e->a, "o%d", a);
    sb_printf(&rd, "%s%s", a ? ", " : "", pos_text(e, ar, a, true, o));
    sb_printf(&wr, "%s%s", a ? ", " : "", o);
  }
  sb_printf(c, "    /* y[n, co, %s] += sum over k, ci of W[k, ci, co] z[n, ci, %s]:\n", wr.data, rd.data);
  sb_printf(c, "     * per sample and band of %ld rows o0, one product (co x (k, ci)) ((k, ci) x positions)\n"
               "     * of inner dimension %ld, the patch matrix read in place from the band's\n"
               "     * zero-padded input */\n",
            b.rows, b.kk);
  sb_free(&rd);
  sb_free(&wr);
  sb_puts(c, "    {\n");
  sb_printf(c, "        real wk[%ld];   /* wk[(k, ci) * %ld + co] = W[k, ci, co]%s */\n", b.kk * mp, mp,
            mp > b.co ? ", 0 past the channels" : "");
  sb_printf(c, "        long row_at[%ld]; /* where row (k, ci) of the patch matrix starts in band */\n", b.kk);
  sb_printf(c, "        real prod[%ld]; /* prod[co, u], u = %s: padded positions of the band */\n", mp * ld,
            b.u);
  if (mp > b.co)
    sb_puts(c, "        memset(wk, 0, sizeof wk);\n");
  int depth = open_rows(e, ar, &b, true);
  sb_printf(c, "%*sfor (long co = 0; co < %ld; co++)\n", 4 * depth + 4, "", b.co);
  sb_printf(c, "%*swk[p * %ld + co] = %s[%s];\n", 4 * depth + 8, "", mp, emit_pname(e, ar->w.param),
            weight_index(e, ar, "ci", "co"));
  sb_printf(c, "%*s}\n", 4 * depth, "");
  band_open(e, ar, &b, z, s->size);
  sb_printf(c, "                /* prod[co, u] = sum over (k, ci) of wk[(k, ci) * %ld + co] band[row_at[(k, ci)] + u] */\n",
            mp);
  sb_printf(c, "                mm_win(%ld, (rows - 1) * %ld + %ld, %ld, wk, band, row_at, prod, %ld);\n", mp,
            b.bstr[0], b.tail, b.kk, ld);
  sb_printf(c, "                /* y[n, co, b0 + r%s] += prod[co, %s] */\n", g->g == 2 ? ", o1" : ", o1, o2", b.u);
  const char *yi = band_positions(e, &b, d, &depth);
  sb_printf(c, "%*s%s[%s] += prod[co * %ld + %s];\n", 4 * depth, "", y, yi, ld, b.u);
  sb_puts(c, "            }\n    }\n");
  return true;
}

/* Emits the banded form of emit_conv_grad when the arrow fits it. */
static bool conv_grad_patches(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  Band b;
  if (!band_of(e, e->primal, ar, &b) || b.co > b.nb)
    return false;
  long kp = round_up(b.kk, 4 /* MR */);
  if (!band_rows(&b, kp, true))
    return false;
  const Geom *g = &b.g;
  const IrBlock *s = IR_BLOCK(e->primal, ar->src), *d = IR_BLOCK(e->primal, ar->dst);
  long span = (b.rows - 1) * b.bstr[0] + b.tail;
  StrBuf *c = e->c;
  sb_printf(c, "    /* per sample and band of %ld rows o0, one product ((k, ci) x positions) (positions x co)\n"
               "     * of inner dimension the band's padded positions u = %s, the patch\n"
               "     * matrix read in place from the band's zero-padded input */\n",
            b.rows, b.u);
  sb_puts(c, "    {\n");
  sb_printf(c, "        long row_at[%ld]; /* where row (k, ci) of the patch matrix starts in band%s */\n", kp,
            kp > b.kk ? " (0 past the rows)" : "");
  sb_printf(c, "        real dwk[%ld * NB]; /* dwk[(k, ci) * NB + co] = dW[k, ci, co] of this arrow */\n", kp);
  sb_printf(c, "        real yu[%ld * NB]; /* yu[u * NB + co] = ybar[n, co, b0 + r%s], 0 at padded positions */\n",
            span, g->g == 2 ? ", o1" : ", o1, o2");
  sb_puts(c, "        memset(row_at, 0, sizeof row_at);\n"
             "        memset(dwk, 0, sizeof dwk);\n"
             "        memset(yu, 0, sizeof yu);\n");
  int depth = open_rows(e, ar, &b, true);
  sb_printf(c, "%*s}\n", 4 * depth, "");
  band_open(e, ar, &b, z, s->size);
  const char *yi = band_positions(e, &b, d, &depth);
  sb_printf(c, "%*syu[(%s) * NB + co] = %s[%s];\n", 4 * depth, "", b.u, ybar, yi);
  sb_printf(c, "                /* dwk[(k, ci), co] += sum over u of band[row_at[(k, ci)] + u] yu[u, co] */\n"
               "                mm_rows(%ld, (rows - 1) * %ld + %ld, band, row_at, yu, dwk);\n"
               "            }\n",
            kp, b.bstr[0], b.tail);
  sb_puts(c, "        /* dW[k, ci, co] += dwk[(k, ci) * NB + co] */\n");
  depth = open_rows(e, ar, &b, false);
  sb_printf(c, "%*sfor (long co = 0; co < %ld; co++)\n", 4 * depth + 4, "", b.co);
  sb_printf(c, "%*s%s[%s] += dwk[p * NB + co];\n", 4 * depth + 8, "", dw, weight_index(e, ar, "ci", "co"));
  sb_printf(c, "%*s}\n", 4 * depth, "");
  sb_puts(c, "    }\n");
  return true;
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
  if (conv_patches(e, ar, y, z, t0))
    return;
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
  sb_printf(c, "%*s        %s + %s, %ld, %ld, %ld);\n", in, "", y, yc.off, dst_sz, yc.step1, yc.step0);
  depth -= g.g > 1 ? g.g - 1 : 0;
  close_to(c, &depth, 1);
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
  if (conv_grad_patches(e, ar, dw, z, ybar))
    return;
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
  sb_printf(c, "%*s        %s + %s, %ld, 0, %ld);\n", in, "", dw, weight_index(e, ar, "0", "0"), wsrc,
            wdst);
  depth -= g.g > 1 ? g.g - 1 : 0;
  close_to(c, &depth, 1);
}
