/* emit.c — writes a machine as C: one function that solves the machine level
 * by level, each level a commented section quoting the equation it solves.
 *
 * The same emit_solve writes the forward pass (the primal machine) and the
 * dual solve of the backward pass (the dual machine from dual.c): it does not
 * know which direction it writes. Only the parameter gradients, the extra
 * kernels dW = z^T ybar and db = sum ybar, are written apart. */
#include "emit_internal.h"

#include <string.h>

/* ------------------------------------------------------------ layout */

void emit_layout(Arena *a, const IrMachine *m, Layout *lay) {
  int n = m->blocks.len;
  lay->y_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  lay->z_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  long off = 0;
  for (int i = 0; i < n; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    lay->y_off[i] = off;
    off += b->size;
    lay->z_off[i] = b->act.kind == ACT_IDENTITY ? lay->y_off[i] : off;
    if (b->act.kind != ACT_IDENTITY)
      off += b->size;
  }
  lay->state_size = off;
}

/* ------------------------------------------------------------ names */

static const char *ybuf(Emit *e, int i) {
  e->used_y[i] = true;
  return arena_printf(e->a, "%s%s", e->nm.y, IR_BLOCK(e->m, i)->cname);
}

static const char *zbuf(Emit *e, int i) {
  if (IR_BLOCK(e->m, i)->act.kind == ACT_IDENTITY)
    return ybuf(e, i);
  e->used_z[i] = true;
  return arena_printf(e->a, "%s%s", e->nm.z, IR_BLOCK(e->m, i)->cname);
}

const char *emit_pname(Emit *e, int p) {
  e->used_p[p] = true;
  return IR_PARAM(e->m, p)->cname;
}

#define pname emit_pname

static int input_slot(const IrMachine *m, int block) {
  for (int k = 0; k < m->ninputs; k++)
    if (m->inputs[k] == block)
      return k;
  return -1;
}

/* ------------------------------------------------------------ equations */

/* An arrow as the level comment writes it (ir_text.c), reading the source's
 * buffer; the gate of a dual machine, which has no .mach form, names the
 * primal's y beside the dual's. */
static const char *arrow_text(Emit *e, const IrArrow *ar) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src);
  if (ar->kind == ARROW_GATE && IR_BLOCK(e->primal, ar->src)->act.kind == ACT_SOFTMAX_JVP)
    return arena_printf(e->a, "softmax_gate(z_%s, y_%s, %s%s)", IR_BLOCK(e->m, ar->dst)->cname,
                        s->cname, e->nm.y, s->cname);
  if (ar->kind == ARROW_GATE)
    return arena_printf(e->a, "y_%s * %s%s", s->cname, e->nm.y, s->cname);
  const char *z = arena_printf(e->a, "%s%s", s->act.kind == ACT_IDENTITY ? e->nm.y : e->nm.z, s->cname);
  return ir_arrow_text(e->a, e->m, ar, z, IR_TEXT_MATH);
}

static const char *act_text(Emit *e, const IrBlock *b, const char *y) {
  const Act *a = &b->act;
  switch (a->kind) {
  case ACT_IDENTITY:
    return y;
  case ACT_MUL:
    return arena_printf(e->a, "%s%s * %s", e->nm.z, IR_BLOCK(e->m, a->gate)->cname, y);
  case ACT_SOFTMAX_JVP: {
    const char *s = arena_printf(e->a, "%s%s", e->nm.z, IR_BLOCK(e->m, a->gate)->cname);
    return arena_printf(e->a, "%s * (%s - <%s, %s>)", s, y, s, y);
  }
  case ACT_DERIV:
    if (a->deriv_of == ACT_SOFTMAX || a->deriv_of == ACT_SOFTMAX_JVP) {
      const char *s = arena_printf(e->a, "z_%s", a->deriv_of == ACT_SOFTMAX
                                                     ? b->cname
                                                     : IR_BLOCK(e->m, a->gate)->cname);
      return arena_printf(e->a, "%s * (%s - <%s, %s>)", s, y, s, y);
    }
    return arena_printf(e->a, "%s'(y_%s) * %s",
                        a->deriv_of == ACT_LEAKY_RELU ? "leaky_relu" : ir_act_name(a->deriv_of),
                        b->cname, y);
  default:
    return arena_printf(e->a, "%s(%s)", ir_act_text(e->a, a), y);
  }
}

/* Writes, as a comment, the equations of the blocks of one level. A sum too
 * long for one line puts each term on a line of its own, '+' under '='. */
static void level_comment(Emit *e, int level, const int *blocks, int nb) {
  StrBuf *c = e->c;
  bool dual = e->m->primal != NULL;
  sb_printf(c, "\n    /* ---- level %d", level);
  if (dual)
    sb_printf(c, " (primal level %d)", e->m->nlevels - 1 - level);
  sb_puts(c, " ----\n");
  for (int k = 0; k < nb; k++) {
    const IrBlock *b = IR_BLOCK(e->m, blocks[k]);
    const char *y = arena_printf(e->a, "%s%s", e->nm.y, b->cname);
    PtrVec terms = {0};
    if (b->has_input)
      vec_push(e->a, &terms, arena_printf(e->a, "%s[%d]", e->nm.inputs, input_slot(e->m, blocks[k])));
    for (int j = e->into.start[blocks[k]]; j < e->into.start[blocks[k] + 1]; j++)
      vec_push(e->a, &terms, (void *)arrow_text(e, IR_ARROW(e->m, e->into.order[j])));
    if (b->bias >= 0)
      vec_push(e->a, &terms, (void *)IR_PARAM(e->m, b->bias)->name);
    if (!terms.len)
      vec_push(e->a, &terms, "0");
    size_t width = 12 + strlen(y);
    for (int t = 0; t < terms.len; t++)
      width += 3 + strlen(terms.items[t]);
    sb_printf(c, "     *   %s = %s", y, (const char *)terms.items[0]);
    for (int t = 1; t < terms.len; t++) {
      if (width > 100)
        sb_printf(c, "\n     *   %*s", (int)strlen(y), "");
      sb_printf(c, " + %s", (const char *)terms.items[t]);
    }
    sb_puts(c, "\n");
    if (b->act.kind != ACT_IDENTITY)
      sb_printf(c, "     *   %s%s = %s\n", e->nm.z, b->cname, act_text(e, b, y));
  }
  sb_puts(c, "     */\n");
}

/* ------------------------------------------------------------ statements */

/* A dense arrow into a block solved in chunks of time: per channel c, only
 * the columns (or, W^T, the rows) of W that write the times [t0, t1) of c,
 * at c * row + t0 * inner of the block's row (inner: the points of one time
 * step). */
static void emit_dense_chunk(Emit *e, const IrArrow *ar, const char *w, long ld) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  long row = d->size / d->shape.channels, inner = row / d->shape.grid[0];
  Ix c;
  int base = emit_loops(e, &(EmitLoop){.var = "c", .n = d->shape.channels}, 1, false, &c);
  Ix at = ix_add(ix_scale(e->a, c, row), ix_term("t0", inner)); /* the chunk's first column */
  const char *n = ix_text(e->a, ix_scale(e->a, ix_addv(ix_var("t1"), "t0", -1), inner));
  const char *y = ix_at(e->a, ybuf(e, ar->dst), at), *z = zbuf(e, ar->src);
  if (!ar->w.transposed) /* y[B, cols] += z[B, S] W[S, cols] */
    emit_call(e, "mm_acc", (EmitArg[]){{"m", "batch"}, {"n", n}, {"k", arena_printf(e->a, "%ld", s->size)},
                                     {"a", z}, {"ars", arena_printf(e->a, "%ld", s->size)}, {"acs", "1"},
                                     {"b", ix_at(e->a, w, at)}, {"ldb", arena_printf(e->a, "%ld", ld)},
                                     {"c", y}, {"ldc", arena_printf(e->a, "%ld", d->size)}},
              (int[]){3, 3, 2, 2}, 4);
  else /* y[B, rows] += z[B, S] W[rows, S]^T */
    emit_call(e, "mm_nt", (EmitArg[]){{"m", "batch"}, {"n", n}, {"k", arena_printf(e->a, "%ld", s->size)},
                                    {"a", z}, {"lda", arena_printf(e->a, "%ld", s->size)},
                                    {"b", ix_at(e->a, w, ix_scale(e->a, at, ld))},
                                    {"ldb", arena_printf(e->a, "%ld", ld)},
                                    {"c", y}, {"ldc", arena_printf(e->a, "%ld", d->size)}},
              (int[]){3, 2, 2, 2}, 4);
  emit_close_to(e, base);
}

/* y += z W (or z W^T); set: y = z W, the first term of a y that starts at 0. */
static void emit_dense(Emit *e, const IrArrow *ar, bool chunked, bool set) {
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  const IrParam *p = IR_PARAM(e->m, ar->w.param);
  long ld = p->shape[1];
  const char *w = ix_at(e->a, pname(e, ar->w.param), ix_const((long)ar->w.in_off * ld + ar->w.out_off));
  if (chunked) {
    emit_dense_chunk(e, ar, w, ld);
    return;
  }
  if (!ar->w.transposed) /* y[B, D] += z[B, S] W[S, D] */
    sb_printf(e->c, "    %s(batch, %ld, %ld, %s, %ld, 1, %s, %ld, %s, %ld);\n", set ? "mm_set" : "mm_acc",
              d->size, s->size, zbuf(e, ar->src), s->size, w, ld, ybuf(e, ar->dst), d->size);
  else /* y[B, D] += z[B, S] W[D, S]^T */
    sb_printf(e->c, "    %s(batch, %ld, %ld, %s, %ld, %s, %ld, %s, %ld);\n", set ? "mm_nt_set" : "mm_nt",
              d->size, s->size, zbuf(e, ar->src), s->size, w, ld, ybuf(e, ar->dst), d->size);
}

/* Elements among the threads when a sample alone is worth it (an activation
 * costs some 16 multiply-adds); smaller blocks stay out of OpenMP, whose call
 * costs more than they do. */
static void omp_elements(Emit *e, const IrBlock *b) {
  if (b->size >= 256)
    emit_omp(e->c, "parallel for schedule(static) if (batch * %ld >= PAR_WORK / 16)", b->size);
}

/* Opens a loop over the elements k of block b: all of them, or in a chunk
 * of a recurrent machine the times [t0, t1) of each (sample, channel) row r. */
static void open_range(Emit *e, const IrBlock *b, bool chunked) {
  if (!chunked) {
    omp_elements(e, b);
    sb_printf(e->c, "    for (long k = 0; k < batch * %ld; k++)\n        ", b->size);
    return;
  }
  long row = b->size / b->shape.channels, inner = row / b->shape.grid[0];
  Ix r = ix_term("r", row);
  sb_printf(e->c, "    for (long r = 0; r < %s; r++)\n        %sfor (long k = %s; k < %s; k++)\n            ",
            ix_text(e->a, ix_term("batch", b->shape.channels)), emit_short(e, (long)e->primal->timeblock * inner),
            ix_text(e->a, ix_addv(r, "t0", inner)), ix_text(e->a, ix_addv(r, "t1", inner)));
}

/* The primal state of block i as the dual reads it: z, or y when z = y. */
static const char *primal_z(Emit *e, int i) {
  bool ident = IR_BLOCK(e->primal, i)->act.kind == ACT_IDENTITY;
  (ident ? e->used_py : e->used_pz)[i] = true;
  return arena_printf(e->a, "%s_%s", ident ? "y" : "z", IR_BLOCK(e->primal, i)->cname);
}

/* The grid points a softmax call covers: all, or a chunk's times. */
static const char *softmax_range(Emit *e, const IrBlock *b, bool chunked) {
  long G = b->size / b->shape.channels;
  if (!chunked)
    return arena_printf(e->a, "0, %ld", G);
  long inner = G / b->shape.grid[0];
  return arena_printf(e->a, "%s, %s", ix_text(e->a, ix_term("t0", inner)), ix_text(e->a, ix_term("t1", inner)));
}

/* The gradient through the gate s of z = softmax_jvp(s, y):
 * zbar_s += y * w - w <s, y> - y <s, w>, w = zbar of the block. */
static void emit_softmax_gate(Emit *e, const IrArrow *ar, bool chunked) {
  const IrBlock *b = IR_BLOCK(e->m, ar->src);
  sb_printf(e->c, "    softmax_gate(%s, y_%s, %s, %s, batch, %d, %ld, %s);\n", primal_z(e, ar->dst),
            b->cname, ybuf(e, ar->src), ybuf(e, ar->dst), b->shape.channels,
            b->size / b->shape.channels, softmax_range(e, b, chunked));
}

static void emit_arrow(Emit *e, const IrArrow *ar, bool chunked) {
  switch (ar->kind) {
  case ARROW_DENSE:
    emit_dense(e, ar, chunked, false);
    break;
  case ARROW_IDENTITY:
    if (!chunked) {
      sb_printf(e->c, "    add_to(%s, %s, batch * %ld);\n", ybuf(e, ar->dst), zbuf(e, ar->src),
                IR_BLOCK(e->m, ar->dst)->size);
      break;
    }
    open_range(e, IR_BLOCK(e->m, ar->dst), true);
    sb_printf(e->c, "%s[k] += %s[k];\n", ybuf(e, ar->dst), zbuf(e, ar->src));
    break;
  case ARROW_GATE: { /* zbar_gate += y_src * zbar_src, y_src from the primal state */
    e->used_py[ar->src] = true;
    if (IR_BLOCK(e->primal, ar->src)->act.kind == ACT_SOFTMAX_JVP) {
      emit_softmax_gate(e, ar, chunked);
      break;
    }
    open_range(e, IR_BLOCK(e->m, ar->dst), chunked);
    sb_printf(e->c, "%s[k] += y_%s[k] * %s[k];\n", ybuf(e, ar->dst), IR_BLOCK(e->m, ar->src)->cname,
              ybuf(e, ar->src));
    break;
  }
  default:
    emit_grid_arrow(e, ar, ybuf(e, ar->dst), zbuf(e, ar->src), chunked ? "t0" : NULL,
                    chunked ? "t1" : NULL);
    break;
  }
}

static long grid_of(const IrBlock *b) { return b->size / b->shape.channels; }

/* y = [input] [+ bias], or 0, before the arrows add to it. */
static void emit_init(Emit *e, int bi, bool chunked) {
  const IrBlock *b = IR_BLOCK(e->m, bi);
  StrBuf *c = e->c;
  const char *y = ybuf(e, bi);
  if (!chunked) {
    if (b->size >= 256 && (b->has_input || b->bias < 0)) {
      /* a large block's copy among the threads, each thread the elements its
       * share of the activation below reads; a copy costs less than an
       * activation, so it pays from a larger size */
      emit_omp(c, "parallel for schedule(static) if (batch * %ld >= PAR_WORK / 4)", b->size);
      sb_printf(c, "    for (long k = 0; k < batch * %ld; k++)\n        %s[k] = ", b->size, y);
      if (b->has_input)
        sb_printf(c, "%s[%d][k];\n", e->nm.inputs, input_slot(e->m, bi));
      else
        sb_puts(c, "0;\n");
    } else if (b->has_input)
      sb_printf(c, "    memcpy(%s, %s[%d], sizeof(real) * batch * %ld);\n", y, e->nm.inputs,
                input_slot(e->m, bi), b->size);
    else if (b->bias < 0)
      sb_printf(c, "    memset(%s, 0, sizeof(real) * batch * %ld);\n", y, b->size);
    if (b->bias >= 0)
      sb_printf(c, "    bias_set(%s, %s, batch, %d, %ld, %d);\n", y, pname(e, b->bias),
                b->shape.channels, grid_of(b), b->has_input);
    return;
  }
  open_range(e, b, true);
  sb_printf(c, "%s[k] = ", y);
  if (b->has_input)
    sb_printf(c, "%s[%d][k]%s", e->nm.inputs, input_slot(e->m, bi), b->bias >= 0 ? " + " : "");
  if (b->bias >= 0)
    sb_printf(c, b->shape.channels > 1 ? "%s[r %% %d]" : "%s[0]", pname(e, b->bias), b->shape.channels);
  if (!b->has_input && b->bias < 0)
    sb_puts(c, "0");
  sb_puts(c, ";\n");
}

/* softmax and its Jacobian-vector products act on all the channels of a grid
 * point at once: one call per block (per chunk of time), not a pointwise
 * loop. Returns false for the pointwise activations. */
static bool emit_softmax(Emit *e, int bi, const char *y, const char *z, bool chunked) {
  const IrBlock *b = IR_BLOCK(e->m, bi);
  const Act *a = &b->act;
  const char *s;
  if (a->kind == ACT_SOFTMAX) {
    sb_printf(e->c, "    softmax_ch(%s, %s, batch, %d, %ld, %s);\n", y, z, b->shape.channels,
              b->size / b->shape.channels, softmax_range(e, b, chunked));
    return true;
  }
  if (a->kind == ACT_SOFTMAX_JVP) /* s = the gate's z, in this machine */
    s = zbuf(e, a->gate);
  else if (a->kind == ACT_DERIV && a->deriv_of == ACT_SOFTMAX) /* s = this block's softmax */
    s = primal_z(e, bi);
  else if (a->kind == ACT_DERIV && a->deriv_of == ACT_SOFTMAX_JVP) /* the primal gate's z */
    s = primal_z(e, a->gate);
  else
    return false;
  sb_printf(e->c, "    softmax_jvp(%s, %s, %s, batch, %d, %ld, %s);\n", s, y, z, b->shape.channels,
            b->size / b->shape.channels, softmax_range(e, b, chunked));
  return true;
}

/* Whether z = sigma(y) is a function of y[k] (and the same index of other
 * buffers) alone: not the identity (z is y), not softmax and its products
 * (they read every channel of a grid point). */
static bool pointwise(const Act *a) {
  if (a->kind == ACT_IDENTITY || a->kind == ACT_SOFTMAX || a->kind == ACT_SOFTMAX_JVP)
    return false;
  return a->kind != ACT_DERIV || (a->deriv_of != ACT_SOFTMAX && a->deriv_of != ACT_SOFTMAX_JVP);
}

/* sigma(y[k]) for block bi, k the text of an index into its buffers (a
 * dual block's sigma multiplies by the primal derivative at the same k). */
static const char *act_expr(Emit *e, int bi, const char *y, const char *k) {
  const Act *a = &IR_BLOCK(e->m, bi)->act;
  switch (a->kind) {
  case ACT_LEAKY_RELU:
    return arena_printf(e->a, "act_leaky_relu(%s[%s], (real)%.17g)", y, k, a->alpha);
  case ACT_MUL:
    return arena_printf(e->a, "%s[%s] * %s[%s]", zbuf(e, a->gate), k, y, k);
  case ACT_DERIV: {
    /* sigma'(y) at the primal state, from z where that is cheaper */
    const IrBlock *pb = IR_BLOCK(e->primal, bi);
    e->used_py[bi] = true;
    const char *py = arena_printf(e->a, "y_%s", pb->cname);
    const char *pz = py;
    if (pb->act.kind != ACT_IDENTITY && pb->act.kind != ACT_MUL) {
      e->used_pz[bi] = true;
      pz = arena_printf(e->a, "z_%s", pb->cname);
    }
    if (a->deriv_of == ACT_MUL) { /* the gate's primal activation */
      const IrBlock *g = IR_BLOCK(e->primal, a->gate);
      bool ident = g->act.kind == ACT_IDENTITY;
      (ident ? e->used_py : e->used_pz)[a->gate] = true;
      return arena_printf(e->a, "%s_%s[%s] * %s[%s]", ident ? "y" : "z", g->cname, k, y, k);
    }
    if (a->deriv_of == ACT_LEAKY_RELU)
      return arena_printf(e->a, "d_leaky_relu(%s[%s], %s[%s], (real)%.17g) * %s[%s]", py, k, pz, k, a->alpha, y, k);
    return arena_printf(e->a, "d_%s(%s[%s], %s[%s]) * %s[%s]", ir_act_name(a->deriv_of), py, k, pz, k, y, k);
  }
  default:
    return arena_printf(e->a, "act_%s(%s[%s])", ir_act_name(a->kind), y, k);
  }
}

/* In a chunk of time, the convolutions into a block that share a weight
 * and a window, their channels its next rows (the RecurMachine's x[0 .. k)
 * into x[k]), as one product per tap of inner dimension all their channels,
 * rather than a product per source of a few dozen. */
static void emit_grid_groups(Emit *e, const int *list, int n, bool *done) {
  const IrArrow **ars = arena_alloc(e->a, sizeof *ars * ((size_t)n + 1));
  const char **zs = arena_alloc(e->a, sizeof *zs * ((size_t)n + 1));
  int *member = arena_alloc(e->a, sizeof *member * ((size_t)n + 1)); /* indices into list */
  for (int j = 0; j < n; j++) {
    const IrArrow *first = IR_ARROW(e->m, list[j]);
    if (done[j] || !emit_grid_groupable(e, first))
      continue;
    int cnt = 0;
    for (int k = j; k < n; k++)
      if (!done[k] && (k == j || emit_grid_joins(e, first, IR_ARROW(e->m, list[k]), cnt)))
        member[cnt++] = k;
    if (cnt == 1) /* alone: emit_arrow's path */
      continue;
    for (int k = 0; k < cnt; k++) {
      ars[k] = IR_ARROW(e->m, list[member[k]]);
      zs[k] = zbuf(e, ars[k]->src);
      done[member[k]] = true;
    }
    emit_grid_group(e, ars, zs, cnt, ybuf(e, first->dst), "t0", "t1");
  }
}

/* The source buffers of the arrows list[0 .. n). */
static const char **sources_of(Emit *e, const int *list, int n) {
  const char **zs = arena_alloc(e->a, sizeof(char *) * ((size_t)n + 1));
  for (int j = 0; j < n; j++)
    zs[j] = zbuf(e, IR_ARROW(e->m, list[j])->src);
  return zs;
}

/* How the product that writes all of block bi's y starts (its bias or its
 * input), and a pointwise activation goes with it (in *act). */
static EmitFirst first_of(Emit *e, int bi, EmitAct *act) {
  const IrBlock *b = IR_BLOCK(e->m, bi);
  bool plain = pointwise(&b->act);
  *act = (EmitAct){.expr = act_expr, .block = bi, .z = plain ? zbuf(e, bi) : NULL};
  return (EmitFirst){.bias = !b->has_input && b->bias >= 0 ? pname(e, b->bias) : NULL,
                     .init = b->has_input ? arena_printf(e->a, "%s[%d]", e->nm.inputs, input_slot(e->m, bi)) : NULL,
                     .act = plain ? act : NULL};
}

/* Solves one block: y = [input] [+ bias] + arrows, then z = sigma(y). */
static void emit_block(Emit *e, int bi, bool chunked) {
  const IrBlock *b = IR_BLOCK(e->m, bi);
  StrBuf *c = e->c;
  const char *y = ybuf(e, bi);
  /* y starting at 0, at the bias or at the input is written, not set and
   * added to, by the first windowed product, which writes all of it (prod +
   * bias, input + prod: the same bits) */
  bool whole = !b->has_input || b->bias < 0;
  const int *list = e->into.order + e->into.start[bi];
  int n = e->into.start[bi + 1] - e->into.start[bi];
  if (!chunked && whole && !n && b->has_input && pointwise(&b->act)) {
    /* y = the input alone (the cotangent of an output nothing else reads):
     * z = sigma(y) in the same pass */
    omp_elements(e, b);
    sb_printf(c, "    for (long k = 0; k < batch * %ld; k++) {\n        %s[k] = %s[%d][k];\n        %s[k] = %s;\n    }\n",
              b->size, y, e->nm.inputs, input_slot(e->m, bi), zbuf(e, bi), act_expr(e, bi, y, "k"));
    return;
  }
  bool *done = arena_alloc(e->a, (size_t)n + 1);
  const char **zs = sources_of(e, list, n);
  bool plain = pointwise(&b->act);
  EmitAct act;
  EmitFirst first = first_of(e, bi, &act);
  if (chunked) {
    /* one product for all the arrows writes y (and z); else y first, then
     * the products and arrows add to it */
    if (whole && n && emit_chunk_windows(e, list, zs, n, y, &first, done) == n) {
      if (plain)
        return;
    } else {
      emit_init(e, bi, chunked);
      for (int more = 1; more;) /* a product per width of the sources */
        more = emit_chunk_windows(e, list, zs, n, y, NULL, done);
      emit_grid_groups(e, list, n, done);
    }
  } else if (whole) { /* the convolutions of one geometry as one product */
    int wrote; /* arrows the first pass wrote: one arrow in one pass, or windowed products */
    if (n == 1 && emit_one_pass(e, IR_ARROW(e->m, list[0]), y, zs[0], &first)) {
      done[0] = true;
      wrote = 1;
    } else {
      wrote = emit_conv_windows(e, list, zs, n, y, &first, done);
    }
    if (wrote && wrote == n && plain)
      return;
    for (int more = wrote; more;)
      more = emit_conv_windows(e, list, zs, n, y, NULL, done);
    if (!wrote) {
      int next = 0; /* the first arrow left */
      while (next < n && done[next])
        next++;
      if (!b->has_input && b->bias < 0 && next < n && IR_ARROW(e->m, list[next])->kind == ARROW_DENSE) {
        /* y = 0 + z W: the product writes y, no zeros first (the same bits) */
        emit_dense(e, IR_ARROW(e->m, list[next]), false, true);
        done[next] = true;
      } else
        emit_init(e, bi, chunked);
    }
  } else {
    emit_init(e, bi, chunked);
    for (int more = 1; more;)
      more = emit_conv_windows(e, list, zs, n, y, NULL, done);
  }
  for (int j = 0; j < n; j++)
    if (!done[j])
      emit_arrow(e, IR_ARROW(e->m, list[j]), chunked);
  if (b->act.kind == ACT_IDENTITY)
    return;
  const char *z = zbuf(e, bi);
  if (emit_softmax(e, bi, y, z, chunked))
    return;
  open_range(e, b, chunked);
  sb_printf(c, "%s[k] = %s;\n", z, act_expr(e, bi, y, "k"));
}

static void emit_level_grads(Emit *e, const int *blocks, int nb);
static bool emit_sweep_grads(Emit *e, const IrGroups *lv_blocks, int lv, int n);
static void declare_params(Emit *e, StrBuf *out, const bool *used, const char *src, const char *prefix,
                           bool cnst);

/* Appends body to out, each non-empty line one step further in but the
 * preprocessor's (#pragma omp), which stay in the first column. */
static void emit_indented(StrBuf *out, const char *body) {
  for (const char *line = body, *nl; line && *line; line = nl ? nl + 1 : NULL) {
    nl = strchr(line, '\n');
    size_t len = nl ? (size_t)(nl - line) : strlen(line);
    sb_printf(out, "%s%.*s\n", len && *line != '#' ? "    " : "", (int)len, line);
  }
}

/* The blocks of a level that only carry the cotangents of the inputs: `grad`
 * asks for them, a training step does not. */
static void emit_optional_blocks(Emit *e, const int *blocks, int nb, bool chunked) {
  StrBuf body = {0}, *out = e->c;
  e->c = &body;
  for (int k = 0; k < nb; k++)
    if (e->optional[blocks[k]])
      emit_block(e, blocks[k], chunked);
  e->c = out;
  if (body.len) {
    sb_puts(out, "    if (input_grads) { /* dLoss/dinput, for grad; training needs none */\n");
    emit_indented(out, body.data);
    sb_puts(out, "    }\n");
  }
  sb_free(&body);
}

/* The block of level lv as emit_conv_sweep takes it, in *t; false when it
 * cannot (a level of more blocks, a block not solved whole by its arrows,
 * or arrows not one windowed product). A block of no arrows is y = its
 * input alone, then sigma (the dual's first level: the cotangent). */
static bool solve_of(Emit *e, const IrGroups *lv_blocks, int lv, EmitSolve *t) {
  if (lv_blocks->start[lv + 1] - lv_blocks->start[lv] != 1)
    return false;
  int bi = lv_blocks->order[lv_blocks->start[lv]];
  const IrBlock *b = IR_BLOCK(e->m, bi);
  t->list = e->into.order + e->into.start[bi];
  t->n = e->into.start[bi + 1] - e->into.start[bi];
  t->optional = e->optional && e->optional[bi];
  if ((b->has_input && b->bias >= 0) || !pointwise(&b->act) || (!t->n && (!b->has_input || t->optional)))
    return false;
  t->zs = sources_of(e, t->list, t->n);
  t->y = ybuf(e, bi);
  t->first = first_of(e, bi, arena_alloc(e->a, sizeof(EmitAct)));
  return emit_conv_sweeps(e, t);
}

/* How many levels from `from` (before `to`) emit_conv_sweep solves sample
 * by sample (0: fewer than two of windowed products), their blocks in *s.
 * A level of no arrows may lead the run, the levels only `grad` asks for
 * close it. */
static int sweep_levels(Emit *e, const IrGroups *lv_blocks, int from, int to, EmitSolve **s) {
  PtrVec run = {0};
  const EmitSolve *first = NULL; /* the first product: the window of the others */
  long wk = 0;
  int products = 0;
  for (int lv = from; lv < to; lv++) {
    EmitSolve *t = arena_alloc(e->a, sizeof *t);
    const EmitSolve *last = run.len ? run.items[run.len - 1] : NULL;
    if (!solve_of(e, lv_blocks, lv, t) || (last && last->optional && !t->optional) || (!t->n && last) ||
        (t->n && first && !emit_conv_sweep_joins(e, first, t, &wk)))
      break;
    if (t->n && !first)
      first = t;
    products += t->n && !t->optional;
    vec_push(e->a, &run, t);
  }
  if (products < 2)
    return 0;
  *s = arena_alloc(e->a, sizeof(EmitSolve) * (size_t)run.len);
  for (int k = 0; k < run.len; k++)
    (*s)[k] = *(EmitSolve *)run.items[k];
  return run.len;
}

static void emit_levels(Emit *e, int from, int to, bool chunked) {
  IrGroups lv_blocks = ir_blocks_by_level(e->a, e->m);
  for (int lv = from; lv < to; lv++) {
    EmitSolve *sweep;
    int run = chunked ? 0 : sweep_levels(e, &lv_blocks, lv, to, &sweep);
    if (run) { /* a dual's parameter gradients after the sweep, level by level */
      for (int k = lv; k < lv + run; k++)
        level_comment(e, k, lv_blocks.order + lv_blocks.start[k], 1);
      emit_conv_sweep(e, sweep, run, lv);
      if (e->grads_left && !emit_sweep_grads(e, &lv_blocks, lv, run))
        for (int k = lv; k < lv + run; k++)
          emit_level_grads(e, lv_blocks.order + lv_blocks.start[k], 1);
      lv += run - 1;
      continue;
    }
    const int *blocks = lv_blocks.order + lv_blocks.start[lv];
    int nb = lv_blocks.start[lv + 1] - lv_blocks.start[lv];
    level_comment(e, lv, blocks, nb);
    for (int k = 0; k < nb; k++)
      if (!e->optional || !e->optional[blocks[k]])
        emit_block(e, blocks[k], chunked);
    if (e->optional)
      emit_optional_blocks(e, blocks, nb, chunked);
    if (e->grads_left && !chunked)
      emit_level_grads(e, blocks, nb);
  }
}

/* The machine solved level by level: the one sweep of the depth filtration.
 * A recurrent machine repeats its chunked levels for each chunk of time,
 * first to last (its dual, last to first); the levels before and after them
 * are solved whole. */
static void emit_solve(Emit *e) {
  const IrMachine *m = e->m;
  if (!m->time_length) {
    emit_levels(e, 0, m->nlevels, false);
    return;
  }
  emit_levels(e, 0, m->chunk_lo, false);
  StrBuf body = {0}, before = {0}, *out = e->c;
  e->c = &body;
  e->before_chunks = &before;
  emit_levels(e, m->chunk_lo, m->chunk_hi, true);
  e->before_chunks = NULL;
  e->c = out;
  if (before.len)
    sb_printf(out, "\n%s", before.data);
  sb_free(&before);
  long T = m->time_length, tb = m->timeblock, nchunks = (T + tb - 1) / tb;
  const char *which = m->chunk_hi - m->chunk_lo == 1
                          ? arena_printf(e->a, "Level %d runs over chunks", m->chunk_lo)
                          : arena_printf(e->a, "Levels %d to %d run over (chunk, level)", m->chunk_lo,
                                         m->chunk_hi - 1);
  sb_printf(out, "\n    /* %s: %ld steps of time in %ld chunk%s of %ld,\n"
                 "     * %s. */\n",
            which, T, nchunks, nchunks == 1 ? "" : "s", tb,
            m->reverse_time ? "solved last to first (the dual reads later times)"
                            : "solved first to last (arrows read earlier times)");
  if (m->reverse_time)
    sb_printf(out, "    for (long t0 = %ld; t0 >= 0; t0 -= %ld) {\n", (nchunks - 1) * tb, tb);
  else
    sb_printf(out, "    for (long t0 = 0; t0 < %ld; t0 += %ld) {\n", T, tb);
  sb_printf(out, "        const long t1 = t0 + %ld < %ld ? t0 + %ld : %ld;\n", tb, T, tb, T);
  emit_indented(out, body.data); /* the levels, inside the chunk loop */
  sb_puts(out, "    }\n");
  sb_free(&body);
  IrGroups lv_blocks = ir_blocks_by_level(e->a, m);
  for (int lv = m->chunk_lo; e->grads_left && lv < m->chunk_hi; lv++) /* need every time */
    emit_level_grads(e, lv_blocks.order + lv_blocks.start[lv], lv_blocks.start[lv + 1] - lv_blocks.start[lv]);
  emit_levels(e, m->chunk_hi, m->nlevels, false);
}

/* ------------------------------------------------------------ gradients */

/* The buffers an arrow's weight gradient reads, z of its source and the
 * cotangent ybar of its destination, marked used. */
static void grad_operands(Emit *e, const IrArrow *ar, const char **z, const char **yb) {
  const IrMachine *m = e->primal;
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  e->used_dp[ar->w.param] = true;
  e->used_pz[ar->src] |= s->act.kind != ACT_IDENTITY;
  e->used_py[ar->src] |= s->act.kind == ACT_IDENTITY;
  e->used_z[ar->dst] |= d->act.kind != ACT_IDENTITY;
  e->used_y[ar->dst] |= d->act.kind == ACT_IDENTITY;
  *z = arena_printf(e->a, "%s_%s", s->act.kind == ACT_IDENTITY ? "y" : "z", s->cname);
  *yb = arena_printf(e->a, "%s_%s", d->act.kind == ACT_IDENTITY ? "zbar" : "ybar", d->cname);
}

/* Marks the gradients rows x cols at off (row stride ld) of dparams as
 * written here, by a product that can set them (sets) or only add. Returns
 * true when it sets them: none was written before, and the zeroing before
 * the sweep skips them. Else those not written before are added to zeros. */
static bool grad_first(Emit *e, long off, long rows, long cols, long ld, bool sets) {
  unsigned char *how = e->dp_how;
  if (!how)
    return false;
  bool first = sets;
  for (long r = 0; r < rows; r++)
    for (long c = 0; c < cols; c++)
      first &= how[off + r * ld + c] == DP_NONE;
  for (long r = 0; r < rows; r++)
    for (long c = 0; c < cols; c++)
      if (how[off + r * ld + c] == DP_NONE)
        how[off + r * ld + c] = first ? DP_SET : DP_ADDED;
  return first;
}

/* A gradient added to all of parameter p (a bias's). */
static void grad_adds(Emit *e, int p) {
  const IrParam *q = IR_PARAM(e->primal, p);
  grad_first(e, q->offset, 1, q->size, q->size, false);
}

struct added_run {
  Emit *e;
  long offset;
};

static void grad_adds_run(void *ctx, long start, long len) {
  struct added_run *r = ctx;
  grad_first(r->e, r->offset + start, 1, len, len, false);
}

/* A gradient added to the entries of its weight that conv arrow ar reads
 * (the others, never read, are left alone). */
static void grad_adds_read(Emit *e, const IrArrow *ar) {
  const IrParam *p = IR_PARAM(e->primal, ar->w.param);
  struct added_run r = {e, p->offset};
  if (e->dp_how)
    emit_weight_runs(e->primal, ar, p, grad_adds_run, &r);
}

/* dW += z_src^T ybar_dst for one weighted arrow (dW = z^T ybar when it is
 * the first gradient written there). */
static void emit_weight_grad(Emit *e, const IrArrow *ar) {
  const IrMachine *m = e->primal;
  StrBuf *c = e->c;
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  const IrParam *p = IR_PARAM(m, ar->w.param);
  const char *z, *yb;
  grad_operands(e, ar, &z, &yb);
  if (ar->kind == ARROW_CONV) {
    sb_printf(c, "    /* d%s += correlation of %s with %s */\n", ir_arrow_weight(e->a, m, ar, IR_TEXT_MATH),
              z, yb);
    emit_conv_grad(e, ar, arena_printf(e->a, "d%s", p->cname), z, yb);
    return;
  }
  long ld = p->shape[1], at = (long)ar->w.in_off * ld + ar->w.out_off;
  const char *dw = ix_at(e->a, arena_printf(e->a, "d%s", p->cname), ix_const(at));
  /* the arrow read W^T: its gradient lands transposed */
  long rows = ar->w.transposed ? d->size : s->size, cols = ar->w.transposed ? s->size : d->size;
  bool set = grad_first(e, p->offset + at, rows, cols, ld, true);
  sb_printf(c, "    /* d%s %s %s^T %s */\n", ir_arrow_weight(e->a, m, ar, IR_TEXT_MATH), set ? "=" : "+=", z, yb);
  if (!ar->w.transposed)
    sb_printf(c, "    %s(%ld, %ld, batch, %s, 1, %ld, %s, %ld, %s, %ld);\n", set ? "mm_set" : "mm_acc",
              s->size, d->size, z, s->size, yb, d->size, dw, ld);
  else
    sb_printf(c, "    %s(%ld, %ld, batch, %s, 1, %ld, %s, %ld, %s, %ld);\n", set ? "mm_set" : "mm_acc",
              d->size, s->size, yb, d->size, z, s->size, dw, ld);
}

/* dW += z_src^T ybar_dst for each weighted arrow into block bi (the
 * convolutions of one geometry as one product), db += sum of ybar. */
static void emit_block_grads(Emit *e, int bi) {
  const IrMachine *m = e->primal;
  const IrBlock *b = IR_BLOCK(m, bi);
  const int *list = e->pinto.order + e->pinto.start[bi];
  int n = e->pinto.start[bi + 1] - e->pinto.start[bi];
  bool *done = arena_alloc(e->a, (size_t)n + 1);
  const char **zs = arena_alloc(e->a, sizeof(char *) * ((size_t)n + 1));
  const char **dws = arena_alloc(e->a, sizeof(char *) * ((size_t)n + 1));
  const char *yb = NULL;
  for (int j = 0; j < n; j++) {
    const IrArrow *ar = IR_ARROW(m, list[j]);
    done[j] = ar->kind != ARROW_DENSE && ar->kind != ARROW_CONV;
    if (!done[j]) {
      if (ar->kind == ARROW_CONV)
        grad_adds_read(e, ar);
      grad_operands(e, ar, &zs[j], &yb);
      dws[j] = arena_printf(e->a, "d%s", IR_PARAM(m, ar->w.param)->cname);
      e->grads_left[ar->w.param]--;
    }
  }
  while (yb && emit_conv_grad_windows(e, list, zs, dws, n, yb, done))
    ;
  for (int j = 0; j < n; j++)
    if (!done[j])
      emit_weight_grad(e, IR_ARROW(m, list[j]));
  if (b->bias < 0)
    return;
  e->used_dp[b->bias] = true;
  e->grads_left[b->bias]--;
  grad_adds(e, b->bias);
  e->used_z[bi] |= b->act.kind != ACT_IDENTITY;
  e->used_y[bi] |= b->act.kind == ACT_IDENTITY;
  sb_printf(e->c, "    bias_grad(d%s, %s_%s, batch, %d, %ld);\n", IR_PARAM(m, b->bias)->cname,
            b->act.kind == ACT_IDENTITY ? "zbar" : "ybar", b->cname, b->shape.channels, grid_of(b));
}

/* Tells the caller which scalars of dparams are final: the parameters with
 * no gradient left to add, not yet reported, neighbours in one range. */
static void emit_ready(Emit *e) {
  const IrMachine *m = e->primal;
  for (int p = 0; p < m->params.len; p++) {
    if (e->grads_left[p] || e->reported[p])
      continue;
    int q = p;
    StrBuf names = {0};
    for (; q < m->params.len && !e->grads_left[q] && !e->reported[q]; q++) {
      e->reported[q] = true;
      sb_printf(&names, "%s%s", q > p ? ", " : "", IR_PARAM(m, q)->name);
    }
    const IrParam *last = IR_PARAM(m, q - 1);
    sb_printf(e->c, "    if (ready) ready(ctx, %ld, %ld); /* %s: final */\n", IR_PARAM(m, p)->offset,
              last->offset + last->size, names.data);
    sb_free(&names);
    p = q - 1;
  }
}

/* Writes the body to out as one `if (dparams)` section, the gradients it
 * writes declared at its top. */
static void emit_grads_section(Emit *e, StrBuf *out, const char *why, const char *body) {
  StrBuf decl = {0};
  declare_params(e, &decl, e->used_dp, "dparams", "d", false);
  sb_printf(out, "    if (dparams) { /* %s */\n", why);
  if (decl.len)
    emit_indented(out, decl.data);
  emit_indented(out, body);
  sb_puts(out, "    }\n");
  sb_free(&decl);
}

/* After a level of the dual machine: the gradients of the parameters on
 * arrows into its blocks, whose cotangents are now known. */
static void emit_level_grads(Emit *e, const int *blocks, int nb) {
  StrBuf body = {0}, *out = e->c;
  memset(e->used_dp, 0, (size_t)e->primal->params.len + 1);
  e->c = &body;
  for (int k = 0; k < nb; k++)
    emit_block_grads(e, blocks[k]);
  if (body.len)
    emit_ready(e);
  e->c = out;
  if (body.len)
    emit_grads_section(e, out, "dW += z^T ybar, db += sum of ybar: this level's gradients", body.data);
  sb_free(&body);
}

/* After a sweep of the dual's levels from lv on (n of them): their kernel
 * gradients sample by sample (emit_conv_grad_sweep), when every weighted
 * arrow into their blocks is a convolution of one padded geometry and no
 * block has a bias; false, writing nothing, otherwise. */
static bool emit_sweep_grads(Emit *e, const IrGroups *lv_blocks, int lv, int n) {
  const IrMachine *m = e->primal;
  EmitGrads *g = arena_alloc(e->a, sizeof(EmitGrads) * (size_t)n);
  int count = 0;
  for (int k = lv; k < lv + n; k++) {
    int bi = lv_blocks->order[lv_blocks->start[k]];
    EmitGrads *t = &g[count];
    t->list = e->pinto.order + e->pinto.start[bi];
    t->n = e->pinto.start[bi + 1] - e->pinto.start[bi];
    if (!t->n) /* an input of the primal machine: no weight into it */
      continue;
    if (IR_BLOCK(m, bi)->bias >= 0)
      return false;
    const char **zs = arena_alloc(e->a, sizeof(char *) * (size_t)t->n);
    const char **dws = arena_alloc(e->a, sizeof(char *) * (size_t)t->n);
    for (int j = 0; j < t->n; j++) {
      const IrArrow *ar = IR_ARROW(m, t->list[j]);
      if (ar->kind != ARROW_CONV)
        return false;
      grad_operands(e, ar, &zs[j], &t->ybar); /* the buffers it reads marked as used either way */
      dws[j] = arena_printf(e->a, "d%s", IR_PARAM(m, ar->w.param)->cname);
    }
    t->zs = zs, t->dws = dws;
    count++;
  }
  if (!emit_conv_grad_sweeps(e, g, count))
    return false;
  StrBuf body = {0}, *out = e->c;
  memset(e->used_dp, 0, (size_t)m->params.len + 1);
  e->c = &body;
  for (int k = 0; k < count; k++)
    for (int j = 0; j < g[k].n; j++) {
      const IrArrow *ar = IR_ARROW(m, g[k].list[j]);
      grad_adds_read(e, ar);
      e->used_dp[ar->w.param] = true;
      e->grads_left[ar->w.param]--;
    }
  emit_conv_grad_sweep(e, g, count);
  emit_ready(e);
  e->c = out;
  emit_grads_section(e, out, "dW += z^T ybar: the levels' gradients, sample by sample", body.data);
  sb_free(&body);
  return true;
}

/* Zeros count runs of len scalars of dparams, step apart, from lo: a short
 * run as a loop clang writes inline (a call per row of a shared weight's
 * unread columns cost more than the zeros), a long one by memset. */
static void emit_zero_runs(Arena *a, StrBuf *c, long lo, long len, long step, long count) {
  Ix at = count > 1 ? ix_addv(ix_const(lo), "r", step) : ix_const(lo);
  const char *run = len == 1 ? arena_printf(a, "dparams[%s] = 0;", ix_text(a, at))
                    : len < 1024
                        ? arena_printf(a, "for (long c = 0; c < %ld; c++)\n%*sdparams[%s] = 0;", len,
                                       count > 1 ? 16 : 12, "", ix_text(a, ix_addv(at, "c", 1)))
                        : arena_printf(a, "memset(%s, 0, sizeof(real) * %ld);", ix_at(a, "dparams", at), len);
  if (count * len >= 1 << 17) /* PAR_WORK: zeroing megabytes pays on several threads */
    emit_omp(c, "parallel for schedule(static)");
  if (count > 1)
    sb_printf(c, "        for (long r = 0; r < %ld; r++)\n            %s\n", count, run);
  else if (len >= 1 << 17)
    sb_printf(c, "        for (long k = %ld; k < %ld; k++)\n            dparams[k] = 0;\n", lo, lo + len);
  else
    sb_printf(c, "        %s\n", run);
}

/* Zeros dparams where a gradient is added to what is there (how[k] ==
 * DP_ADDED; all of it without how): not where a product sets it first, nor
 * where the machine never reads the parameter (DP_NONE, left as it is).
 * Each run once; runs of equal length at equal steps in one loop. */
static void emit_grad_zeros(Arena *a, const unsigned char *how, long size, StrBuf *c) {
  long lo = 0, len = 0, step = 0, count = 0; /* the progression of runs so far */
  if (how) {
    long k = 0;
    while (k < size && how[k] != DP_ADDED)
      k++;
    if (k == size)
      return; /* every gradient set by a product */
    sb_puts(c, "        /* zeros where a gradient is added to them */\n");
  }
  for (long k = 0; k < size;) {
    if (how && how[k] != DP_ADDED) {
      k++;
      continue;
    }
    long at = k;
    while (k < size && (!how || how[k] == DP_ADDED))
      k++;
    if (count && k - at == len && (count == 1 || at == lo + count * step)) {
      step = count == 1 ? at - lo : step;
      count++;
      continue;
    }
    if (count)
      emit_zero_runs(a, c, lo, len, step, count);
    lo = at, len = k - at, count = 1;
  }
  if (count)
    emit_zero_runs(a, c, lo, len, step, count);
}

/* ------------------------------------------------------------ functions */

/* The parameters marked in used, as pointers into src named prefix + C name. */
static void declare_params(Emit *e, StrBuf *out, const bool *used, const char *src, const char *prefix,
                           bool cnst) {
  for (int p = 0; p < e->m->params.len; p++) {
    if (!used[p])
      continue;
    const IrParam *q = IR_PARAM(e->m, p);
    sb_printf(out, "    %sreal *const %s%s = %s; /* [", cnst ? "const " : "", prefix, q->cname,
              ix_at(e->a, src, ix_const(q->offset)));
    for (int i = 0; i < q->rank; i++)
      sb_printf(out, "%s%d", i ? ", " : "", q->shape[i]);
    sb_puts(out, "] */\n");
  }
}

static void declare_state(Emit *e, StrBuf *out, const char *buf, bool cnst, const char *yp,
                          const char *zp, const bool *uy, const bool *uz, const char *own_y) {
  for (int i = 0; i < e->m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(e->m, i);
    const char *shape = ir_shape_text(e->a, &b->shape);
    const char *y = ix_at(e->a, buf, ix_term("batch", e->lay->y_off[i]));
    const char *z = ix_at(e->a, buf, ix_term("batch", e->lay->z_off[i]));
    if (own_y && uy[i] && uz[i] && pointwise(&b->act)) /* y in z's place unless the condition own_y holds */
      sb_printf(out, "    %sreal *const %s%s = %s ? %s : %s; /* [batch, %s] */\n", cnst ? "const " : "", yp,
                b->cname, own_y, y, z, shape);
    else if (uy[i])
      sb_printf(out, "    %sreal *const %s%s = %s; /* [batch, %s] */\n", cnst ? "const " : "", yp, b->cname, y,
                shape);
    if (uz[i] && b->act.kind != ACT_IDENTITY)
      sb_printf(out, "    %sreal *const %s%s = %s;\n", cnst ? "const " : "", zp, b->cname, z);
  }
}

/* The scratch of the convolutions (padded inputs and products, at most
 * WORK_BYTES in emit_conv.c; mm_grid's panels): a binary keeps it on the
 * stack, standalone code, which must run in a small stack, after the batch
 * x state-size scalars of `buf`, the state or dual state it writes
 * (PREFIX_STATE_SCRATCH in the header). */
static void declare_work(const Emit *e, StrBuf *out, const char *buf) {
  if (!e->work)
    return;
  if (e->o->standalone)
    sb_printf(out, "    real *const work = %s + batch * %ld; /* scratch of the convolutions */\n", buf,
              e->lay->state_size);
  else
    sb_printf(out, "    real work[%ld]; /* scratch: padded inputs and products of the convolutions */\n", e->work);
}

static Emit emit_new(Arena *a, const IrMachine *m, const IrMachine *primal, const EmitOptions *o,
                     const Layout *lay, StrBuf *body) {
  int n = m->blocks.len + 1, np = m->params.len + 1;
  Emit e = {.a = a, .c = body, .m = m, .primal = primal, .o = o, .lay = lay, .depth = 1};
  e.into = ir_arrows_by_dst(a, m);
  e.used_y = arena_alloc(a, (size_t)n);
  e.used_z = arena_alloc(a, (size_t)n);
  e.used_py = arena_alloc(a, (size_t)n);
  e.used_pz = arena_alloc(a, (size_t)n);
  e.used_p = arena_alloc(a, (size_t)np);
  return e;
}

/* The functions below return the scalars of scratch their convolutions take. */
static long emit_forward(Arena *a, const IrMachine *m, const EmitOptions *o, const Layout *lay,
                         const char *prefix, StrBuf *c) {
  StrBuf body = {0};
  Emit e = emit_new(a, m, m, o, lay, &body);
  e.nm = (Names){"y_", "z_", "inputs"};
  emit_solve(&e);
  sb_printf(c, "\n/* Solves the machine equation y = y0 + z W + b, z = sigma(y) in one sweep,\n"
               " * level by level. A state is one row per sample, so a dense arrow adds z W, a\n"
               " * [batch, source] by [source, destination] product (a convolution or a pool,\n"
               " * the loop nest its comment quotes). inputs[k] holds batch samples of input\n"
               " * block k; every y and z is written to state. */\n"
               "void %s_forward(const real *restrict params, const real *const *inputs,\n"
               "        real *restrict state, long batch)\n{\n", prefix);
  declare_params(&e, c, e.used_p, "params", "", true);
  declare_state(&e, c, "state", false, "y_", "z_", e.used_y, e.used_z, NULL);
  declare_work(&e, c, "state");
  sb_puts(c, body.data);
  sb_puts(c, "}\n");
  sb_free(&body);
  return e.work;
}

/* The forward pass for inference (standalone code): the same solve, its
 * buffers placed by plan.c in one workspace and the outputs written to the
 * caller's arrays. */
static void declare_planned(Emit *e, StrBuf *out, const Plan *plan) {
  const IrMachine *m = e->m;
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    int k = 0;
    while (k < m->noutputs && m->outputs[k] != i)
      k++;
    for (int z = 0; z < 2; z++) {
      if (!(z ? e->used_z[i] && b->act.kind != ACT_IDENTITY : e->used_y[i]))
        continue;
      long off = z ? plan->z_off[i] : plan->y_off[i];
      const char *at = off == PLAN_OUTPUT ? arena_printf(e->a, "outputs[%d]", k)
                                          : ix_at(e->a, "ws", ix_addv(ix_const(e->work), "batch", off));
      sb_printf(out, "    real *const %s_%s = %s; /* [batch, %s] */\n", z ? "z" : "y", b->cname, at,
                ir_shape_text(e->a, &b->shape));
    }
  }
}

/* Returns the scalars of scratch the convolutions take at the start of the
 * workspace (the forward pass keeps them on the stack). */
static long emit_infer(Arena *a, const IrMachine *m, const EmitOptions *o, const Layout *lay,
                       const char *prefix, const char *up, StrBuf *c) {
  Plan plan;
  plan_inference(a, m, &plan);
  StrBuf body = {0};
  Emit e = emit_new(a, m, m, o, lay, &body);
  e.nm = (Names){"y_", "z_", "inputs"};
  emit_solve(&e);
  sb_printf(c, "\n/* The forward pass for inference: what %s_forward computes, the outputs\n"
               " * written to outputs[k] (batch samples of output k), every other buffer in\n"
               " * workspace (%s_WORKSPACE_BYTES(batch)): first the convolutions' scratch,\n"
               " * then the blocks, sharing memory where no level needs both. */\n"
               "void %s_infer(const real *restrict params, const real *const *inputs,\n"
               "        real *const *outputs, long batch, void *workspace)\n{\n", prefix, up, prefix);
  if (plan.size || e.work)
    sb_puts(c, "    real *const ws = workspace;\n");
  else
    sb_puts(c, "    (void)workspace;\n");
  if (e.work)
    sb_printf(c, "    real *const work = ws; /* scratch: padded inputs and products of the convolutions */\n");
  declare_params(&e, c, e.used_p, "params", "", true);
  declare_planned(&e, c, &plan);
  sb_puts(c, body.data);
  sb_puts(c, "}\n");
  sb_free(&body);
  return e.work;
}

/* The dual blocks whose cotangents the parameter gradients read (those a
 * weighted arrow or a bias writes to in the primal), and every dual block
 * they read, transitively; the others only carry dLoss/dinput. Returns
 * optional[i]: block i is not needed for the parameter gradients. */
static bool *dual_optional_blocks(Arena *a, const IrMachine *dual) {
  const IrMachine *m = dual->primal;
  int n = dual->blocks.len, top = 0;
  bool *need = arena_alloc(a, (size_t)n + 1), *optional = arena_alloc(a, (size_t)n + 1);
  int *stack = arena_alloc(a, sizeof(int) * ((size_t)n + 1));
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    if (ar->w.param >= 0 && !need[ar->dst])
      need[stack[top++] = ar->dst] = true;
  }
  for (int i = 0; i < n; i++)
    if (IR_BLOCK(m, i)->bias >= 0 && !need[i])
      need[stack[top++] = i] = true;
  IrGroups into = ir_arrows_by_dst(a, dual);
  while (top > 0) {
    int bi = stack[--top];
    const Act *act = &IR_BLOCK(dual, bi)->act;
    if ((act->kind == ACT_MUL || act->kind == ACT_SOFTMAX_JVP) && !need[act->gate])
      need[stack[top++] = act->gate] = true;
    for (int k = into.start[bi]; k < into.start[bi + 1]; k++) {
      int src = IR_ARROW(dual, into.order[k])->src;
      if (!need[src])
        need[stack[top++] = src] = true;
    }
  }
  for (int i = 0; i < n; i++)
    optional[i] = !need[i];
  return optional;
}

/* The backward pass: the dual machine solved level by level, each level
 * followed by the parameter gradients its cotangents give, and the caller
 * told (ready) as soon as a parameter's gradient is final, so that summing
 * it over processes can start while the sweep goes on. */
static long emit_backward_fn(Arena *a, const IrMachine *dual, const EmitOptions *o,
                             const Layout *lay, const char *prefix, StrBuf *c) {
  const IrMachine *m = dual->primal;
  StrBuf body = {0};
  Emit e = emit_new(a, dual, m, o, lay, &body);
  e.nm = (Names){"zbar_", "ybar_", "cotangents"};
  e.optional = dual_optional_blocks(a, dual);
  e.pinto = ir_arrows_by_dst(a, m);
  e.grads_left = arena_alloc(a, sizeof(int) * ((size_t)m->params.len + 1));
  e.used_dp = arena_alloc(a, (size_t)m->params.len + 1);
  e.reported = arena_alloc(a, (size_t)m->params.len + 1);
  if (m->param_size <= 1L << 26) /* a byte per gradient at compile time */
    e.dp_how = arena_alloc(a, (size_t)m->param_size + 1);
  for (int i = 0; i < m->arrows.len; i++)
    if (IR_ARROW(m, i)->w.param >= 0)
      e.grads_left[IR_ARROW(m, i)->w.param]++;
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->bias >= 0)
      e.grads_left[IR_BLOCK(m, i)->bias]++;
  StrBuf unread = {0}; /* parameters no arrow reads: final from the start */
  e.c = &unread;
  emit_ready(&e);
  e.c = &body;
  emit_solve(&e);
  sb_printf(c, "\n/* The backward pass: solves the dual machine in one sweep over the levels in\n"
               " * reverse, zbar = z0bar + ybar W^T, ybar = sigma'(y) * zbar, cotangents[k]\n"
               " * holding dLoss/dz of output block k; zbar and ybar go to dstate (laid out\n"
               " * like state) of every block when input_grads is set; else ybar alone, of\n"
               " * the blocks the parameter gradients read, and zbar in ybar's place (only\n"
               " * ybar is computed from it). With dparams, each level is followed by the\n"
               " * parameter gradients it gives (dW = z^T ybar, db = sum of ybar: every\n"
               " * entry the machine reads is overwritten, the others are left as they are),\n"
               " * and ready(ctx, lo, hi), when given, is told as soon as dparams[lo, hi) is\n"
               " * final. */\n"
               "void %s_backward(const real *restrict params, const real *restrict state,\n"
               "        const real *const *cotangents, real *restrict dstate,\n"
               "        real *restrict dparams, long batch, int input_grads,\n"
               "        void (*ready)(void *ctx, long lo, long hi), void *ctx)\n{\n",
            prefix);
  bool inputs_only = false; /* some block is solved only under input_grads */
  for (int i = 0; i < dual->blocks.len; i++)
    inputs_only |= e.optional[i];
  if (!inputs_only)
    sb_puts(c, "    (void)input_grads; /* every block carries parameter gradients */\n");
  if (!m->params.len) /* every parameter is reported once: none, no call */
    sb_puts(c, "    (void)ready, (void)ctx;\n");
  declare_params(&e, c, e.used_p, "params", "", true);
  declare_state(&e, c, "state", true, "y_", "z_", e.used_py, e.used_pz, NULL);
  /* zbar is read only by its own level's sigma' pass, index by index (ybar
   * = sigma'(y) * zbar): a training step, which wants no zbar, keeps it in
   * ybar's place and writes one buffer per block instead of two */
  declare_state(&e, c, "dstate", false, "zbar_", "ybar_", e.used_y, e.used_z, "input_grads");
  declare_work(&e, c, "dstate");
  StrBuf zeros = {0};
  emit_grad_zeros(a, e.dp_how, m->param_size, &zeros);
  if (zeros.len || unread.len) {
    sb_printf(c, "    if (dparams) {\n%s", zeros.len ? zeros.data : "");
    if (unread.len)
      emit_indented(c, unread.data);
    sb_puts(c, "    }\n");
  }
  sb_free(&zeros);
  sb_puts(c, body.data ? body.data : "");
  sb_puts(c, "}\n");
  sb_printf(c, "\n/* The dual machine alone: the backward pass without parameter gradients. */\n"
               "void %s_dual(const real *restrict params, const real *restrict state,\n"
               "        const real *const *cotangents, real *restrict dstate, long batch,\n"
               "        int input_grads)\n{\n"
               "    %s_backward(params, state, cotangents, dstate, 0, batch, input_grads, 0, 0);\n}\n",
            prefix, prefix);
  sb_free(&unread);
  sb_free(&body);
  return e.work;
}

const char *emit_prefix(Arena *a, const IrMachine *m) {
  StrMap none = {0};
  return ir_cname(a, &none, "", m->name);
}

const char *emit_macro_prefix(Arena *a, const IrMachine *m) {
  char *up = arena_strdup(a, emit_prefix(a, m));
  for (char *p = up; *p; p++)
    if (*p >= 'a' && *p <= 'z')
      *p = (char)(*p - 'a' + 'A');
  return up;
}

/* scratch: of _infer's workspace; state_scratch: of the state (and dual
 * state) of standalone code, after the batch's y and z. */
static void emit_header(const IrMachine *m, const Layout *lay, const EmitOptions *o,
                        const char *prefix, long scratch, long state_scratch, StrBuf *h) {
  Arena *a = arena_new();
  const char *up = emit_macro_prefix(a, m);
  char *guard = arena_printf(a, "%s_H", up);
  const char *real = o->f32 ? "float" : "double";
  sb_printf(h, "/* %s — generated by machc %s from %s. Do not edit. */\n",
            o->header_name ? o->header_name : arena_printf(a, "%s.h", prefix), MACHC_VERSION, m->source);
  sb_printf(h, "#ifndef %s\n#define %s\n\n#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n", guard, guard);
  sb_printf(h, "/* Scalars: %s. Batches are batch-first, C order. */\n", real);
  sb_printf(h, "#define %s_PARAM_SIZE %ldL /* scalars in the parameter buffer */\n", up, m->param_size);
  sb_printf(h, "#define %s_STATE_SIZE %ldL /* scalars of state per sample */\n", up, lay->state_size);
  sb_printf(h, "#define %s_N_INPUTS %d\n#define %s_N_OUTPUTS %d\n", up, m->ninputs, up,
            m->noutputs);
  for (int k = 0; k < m->ninputs; k++) {
    const IrBlock *b = IR_BLOCK(m, m->inputs[k]);
    sb_printf(h, "/* input %d: %s, %s */\n", k, b->name, ir_shape_text(a, &b->shape));
  }
  for (int k = 0; k < m->noutputs; k++) {
    const IrBlock *b = IR_BLOCK(m, m->outputs[k]);
    sb_printf(h, "#define %s_OUT_%s %ldL /* output %d: %s, %s, at state + batch * %s_OUT_%s */\n",
              up, b->cname, lay->z_off[m->outputs[k]], k, b->name, ir_shape_text(a, &b->shape), up,
              b->cname);
  }
  bake_offsets(m, up, h);
  if (o->standalone) {
    Plan plan;
    plan_inference(a, m, &plan);
    sb_printf(h, "\n/* The workspace of %s_infer: %ld scalars per sample (the state holds %ld;\n"
                 " * z overwrites y, blocks share memory where no level needs both), and %ld of\n"
                 " * scratch for the convolutions, whatever the batch. */\n"
                 "#define %s_WORKSPACE_SIZE %ldL\n#define %s_WORKSPACE_SCRATCH %ldL\n"
                 "#define %s_WORKSPACE_BYTES(batch) \\\n"
                 "    (((unsigned long)(batch) * %s_WORKSPACE_SIZE + %s_WORKSPACE_SCRATCH) * sizeof(%s))\n",
              prefix, plan.size, lay->state_size, scratch, up, plan.size, up, scratch, up, up, up, real);
    sb_printf(h, "\n/* The state of %s_forward%s%s: batch x\n"
                 " * %s_STATE_SIZE scalars of y and z, then %ld of scratch for the\n"
                 " * convolutions, whatever the batch. */\n"
                 "#define %s_STATE_SCRATCH %ldL\n"
                 "#define %s_STATE_BYTES(batch) \\\n"
                 "    (((unsigned long)(batch) * %s_STATE_SIZE + %s_STATE_SCRATCH) * sizeof(%s))\n",
              prefix, o->train ? " and the dual state of " : "", o->train ? arena_printf(a, "%s_backward", prefix) : "",
              up, state_scratch, up, state_scratch, up, up, up, real);
  }
  sb_printf(h, "\nvoid %s_forward(const %s *params, const %s *const *inputs, %s *state, long batch);\n",
            prefix, real, real, real);
  if (o->standalone)
    sb_printf(h, "void %s_infer(const %s *params, const %s *const *inputs, %s *const *outputs, long batch,\n"
                 "        void *workspace);\n", prefix, real, real, real);
  if (o->weights_name)
    sb_printf(h, "/* The trained parameters, defined in %s: pass them as params. */\n"
                 "extern const %s %s_weights[%s_PARAM_SIZE];\n", o->weights_name, real, prefix, up);
  if (o->standalone && o->train)
    emit_train_header(m, o, real, prefix, up, lay->state_size, state_scratch, h);
  if (o->standalone) {
    const char *why = emit_stream_why(a, m);
    bool grid = false;
    for (int i = 0; i < m->blocks.len; i++)
      grid |= IR_BLOCK(m, i)->shape.ngrid > 0;
    if (!why)
      emit_stream_header(m, real, prefix, up, h);
    else if (grid)
      sb_printf(h, "\n/* No streaming (%s_stream_step): %s. */\n", prefix, why);
  }
  if (o->backward && (!o->standalone || o->train)) {
    sb_printf(h, "void %s_backward(const %s *params, const %s *state, const %s *const *cotangents,\n"
                 "        %s *dstate, %s *dparams, long batch, int input_grads,\n"
                 "        void (*ready)(void *ctx, long lo, long hi), void *ctx);\n", prefix, real,
              real, real, real, real);
    sb_printf(h, "void %s_dual(const %s *params, const %s *state, const %s *const *cotangents,\n"
                 "        %s *dstate, long batch, int input_grads);\n", prefix, real, real, real, real);
  }
  sb_printf(h, "\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
  arena_free(a);
}

void emit_c(const IrMachine *m, const IrMachine *dual, const EmitOptions *o, StrBuf *c,
            StrBuf *h) {
  Arena *a = arena_new();
  Layout lay;
  emit_layout(a, m, &lay);
  const char *prefix = emit_prefix(a, m);
  sb_printf(c, "/* %s — generated by machc %s from %s. Do not edit: edit the .mach file.\n *\n",
            o->c_name ? o->c_name : arena_printf(a, "%s.c", prefix), MACHC_VERSION, m->source);
  sb_printf(c, " * machine %s: %d blocks in %d levels, %ld parameters, %s.\n", m->name,
            m->blocks.len, m->nlevels, m->param_size, o->f32 ? "float" : "double");
  IrGroups lv_blocks = ir_blocks_by_level(a, m);
  for (int lv = 0; lv < m->nlevels; lv++) {
    sb_printf(c, " *   level %d:", lv);
    for (int k = lv_blocks.start[lv]; k < lv_blocks.start[lv + 1]; k++)
      sb_printf(c, " %s", IR_BLOCK(m, lv_blocks.order[k])->name);
    sb_puts(c, "\n");
  }
  sb_puts(c, " */\n");
  sb_printf(c, "#include \"%s\"\n\n#include <math.h>\n%s#include <string.h>\n\n",
            o->header_name ? o->header_name : arena_printf(a, "%s.h", prefix),
            o->f32 && !o->plain_kernels ? "#include <stdint.h> /* exp_vec */\n" : "");
  if (!o->standalone)
    sb_printf(c, "%s#include \"machrt.h\"\n\n", o->f32 ? "#define MACH_F32\n" : "");
  if (o->fp_contract_off) /* gcc ignores the standard pragma; clang honours it */
    sb_puts(c, "/* --fp-contract=off: no a * b + c is fused into one FMA instruction, so every\n"
               " * sum rounds as written, with any compiler and flags (clang: unless given\n"
               " * -ffp-contract=fast, which overrides the pragma). */\n"
               "#if defined(__GNUC__) && !defined(__clang__)\n"
               "#pragma GCC optimize(\"fp-contract=off\")\n"
               "#else\n"
               "#pragma STDC FP_CONTRACT OFF\n"
               "#endif\n\n");
  sb_printf(c, "typedef %s real;\n\n", o->f32 ? "float" : "double");
  StrBuf fns = {0}; /* the functions first: the prelude holds what they use */
  long scratch = 0;  /* of the workspace of _infer */
  long state_scratch = emit_forward(a, m, o, &lay, prefix, &fns);
  if (o->standalone)
    scratch = emit_infer(a, m, o, &lay, prefix, emit_macro_prefix(a, m), &fns);
  if (o->standalone && !emit_stream_why(a, m))
    emit_stream(m, prefix, emit_macro_prefix(a, m), &fns);
  if (o->backward && dual && (!o->standalone || o->train)) {
    long d = emit_backward_fn(a, dual, o, &lay, prefix, &fns);
    state_scratch = d > state_scratch ? d : state_scratch;
  }
  if (o->standalone && o->train)
    emit_train(m, o, prefix, lay.state_size, state_scratch, lay.z_off[m->outputs[0]], &fns);
  if (!o->standalone)
    emit_descriptor(m, &lay, o, prefix, &fns);
  emit_kernels(c, o, fns.data);
  sb_puts(c, fns.data);
  sb_free(&fns);
  emit_header(m, &lay, o, prefix, scratch, state_scratch, h);
  arena_free(a);
}
