/* emit_conv.c — loop nests for arrows on grids: convolution (and its
 * transposed form), average pooling and global average pooling, and the
 * gradient of a convolution's kernel.
 *
 * Every arrow is written as "for each sample, output channel, input channel
 * and kernel tap: a loop over the output positions whose input position
 * falls inside the grid" (cross-correlation: out[o] reads in[o*s + k*d - p0]).
 * The innermost loop runs over the last grid axis with unit stride, so it
 * vectorizes; positions outside the grid (padding) are skipped, never read.
 *
 * An arrow marked adjoint (the dual of a strided conv or of a pooling)
 * scatters instead: in[o*s + k*d - p0] += out[o], with the roles of its
 * source and destination grids swapped. A time range [t0, t1) on axis 0
 * restricts what is written, for the chunks of a recurrent filtration. */
#include "emit_internal.h"

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
  return arena_printf(e->a, "k%d * %d - %d", a, ax->dilation, ax->pad0);
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
    sb_printf(&sb, "%s(o%d * %d + k%d * %d - %d) * %ld", a ? " + " : "", a, ar->ax[a].stride, a,
              ar->ax[a].dilation, ar->ax[a].pad0, g->in_str[a]);
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

/* y_dst += conv(z_src) (or its scatter form for an adjoint arrow). */
static void conv_apply(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                       const char *t1) {
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  Geom g = geom_of(e->m, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  sb_printf(c, "    for (long n = 0; n < batch; n++)\n"
               "        for (long co = 0; co < %d; co++)\n"
               "            for (long ci = 0; ci < %d; ci++) {\n"
               "                const real *zs = %s + (n * %d + ci) * %ld;\n"
               "                real *yd = %s + (n * %d + co) * %ld;\n",
            d->shape.channels, s->shape.channels, z, s->shape.channels, src_sz, y,
            d->shape.channels, dst_sz);
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

static void gpool_apply(Emit *e, const IrArrow *ar, const char *y, const char *z) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  const IrBlock *grid = ar->adjoint ? d : s;
  long n = grid->size / grid->shape.channels;
  if (!ar->adjoint) /* y[n, c] += mean over the grid of z[n, c, :] */
    sb_printf(e->c, "    for (long n = 0; n < batch * %d; n++) {\n"
                    "        real t = 0;\n"
                    "        for (long q = 0; q < %ld; q++)\n            t += %s[n * %ld + q];\n"
                    "        %s[n] += t / %ld;\n    }\n",
              s->shape.channels, n, z, n, y, n);
  else /* y[n, c, :] += z[n, c] / grid size */
    sb_printf(e->c, "    for (long n = 0; n < batch * %d; n++)\n"
                    "        for (long q = 0; q < %ld; q++)\n            %s[n * %ld + q] += %s[n] / %ld;\n",
              d->shape.channels, n, y, n, z, n);
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
    gpool_apply(e, ar, y, z);
    break;
  default:
    break;
  }
}

/* dW[k, cin, cout] += sum over batch and positions of z_src * ybar_dst
 * (the correlation of the input with the output's cotangent). */
void emit_conv_grad(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar) {
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(e->primal, ar->src), *d = IR_BLOCK(e->primal, ar->dst);
  Geom g = geom_of(e->primal, ar);
  long src_sz = s->size / s->shape.channels, dst_sz = d->size / d->shape.channels;
  sb_printf(c, "    for (long n = 0; n < batch; n++)\n"
               "        for (long co = 0; co < %d; co++)\n"
               "            for (long ci = 0; ci < %d; ci++) {\n"
               "                const real *zs = %s + (n * %d + ci) * %ld;\n"
               "                const real *yd = %s + (n * %d + co) * %ld;\n",
            d->shape.channels, s->shape.channels, z, s->shape.channels, src_sz, ybar,
            d->shape.channels, dst_sz);
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
