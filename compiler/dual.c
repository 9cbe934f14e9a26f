/* dual.c — the dual machine (machines.md, section 4).
 *
 * Given cotangents z0bar on the outputs, the gradient solves
 *     zbar_j = z0bar_j + sum over arrows j -> i of ybar_i W(j -> i)^T
 *     ybar_j = sigma_j'(y_j) * zbar_j
 * which is again a machine on the same blocks: its linear part (stored where
 * the primal keeps y) is zbar, its pointwise part (where the primal keeps z)
 * is ybar, every arrow is transposed, every activation becomes the diagonal
 * map sigma'(y) taken at the primal state, and levels run in reverse. The
 * emitter solves it with the code that solves any machine.
 *
 * softmax is not pointwise: its Jacobian at z = softmax(y) is diag(z) - z z^T
 * over the channels, symmetric, so the dual's activation is the
 * Jacobian-vector product ybar = z * (zbar - <z, zbar>) with z from the
 * primal state; still an activation of a block, and the dual still a
 * machine. softmax_jvp(s, y) = s * (y - <s, y>) is that same map, linear in
 * y with the symmetric matrix diag(s) - s s^T: its dual is itself. */
#include "machc.h"

#include <string.h>

/* The adjoint of one arrow, reading dst-shaped data and writing src-shaped. */
static IrArrow *transpose_arrow(Arena *a, const IrArrow *f) {
  IrArrow *t = arena_alloc(a, sizeof *t);
  *t = *f;
  t->src = f->dst;
  t->dst = f->src;
  switch (f->kind) {
  case ARROW_DENSE:
    t->w.transposed = !f->w.transposed;
    break;
  case ARROW_CONV: {
    bool strided = false;
    for (int i = 0; i < f->ngrid; i++)
      strided |= f->ax[i].stride != 1;
    if (strided || f->adjoint) { /* a transposed convolution: same fields */
      t->adjoint = !f->adjoint;
      break;
    }
    /* stride 1: the flipped kernel with channels swapped, pads
     * ((K-1)d - p0, (K-1)d - p1), i.e. (p1, p0) for a same-size conv */
    t->w.transposed = !f->w.transposed;
    for (int i = 0; i < f->ngrid; i++) {
      int span = (f->ax[i].kernel - 1) * f->ax[i].dilation;
      t->ax[i].pad0 = span - f->ax[i].pad0;
      t->ax[i].pad1 = span - f->ax[i].pad1;
    }
    break;
  }
  case ARROW_AVGPOOL:
  case ARROW_GAVGPOOL:
    t->adjoint = !f->adjoint;
    break;
  case ARROW_IDENTITY:
  case ARROW_GATE:
    break;
  }
  return t;
}

static Act deriv_act(const Act *f) {
  Act d = *f;
  if (f->kind == ACT_IDENTITY)
    return d; /* sigma' = 1: ybar is zbar */
  d.kind = ACT_DERIV;
  d.deriv_of = f->kind;
  return d;
}

IrMachine *dual_machine(Arena *a, const IrMachine *m) {
  IrMachine *d = arena_alloc(a, sizeof *d);
  d->name = arena_printf(a, "%s_dual", m->name);
  d->source = m->source;
  d->primal = m;
  d->params = m->params;
  d->param_size = m->param_size;
  d->nlevels = m->nlevels;
  d->time_length = m->time_length;
  d->timeblock = m->timeblock;
  d->reverse_time = !m->reverse_time; /* lags become leads: run time backwards */
  d->chunk_lo = m->nlevels - m->chunk_hi;
  d->chunk_hi = m->nlevels - m->chunk_lo;
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *f = IR_BLOCK(m, i);
    IrBlock *b = arena_alloc(a, sizeof *b);
    *b = *f;
    b->act = deriv_act(&f->act);
    b->has_input = f->is_output; /* the cotangent z0bar enters here */
    b->is_output = f->has_input; /* dLoss/dy0 = ybar leaves here */
    b->bias = -1;
    b->level = m->nlevels - 1 - f->level;
    vec_push(a, &d->blocks, b);
  }
  for (int i = 0; i < m->arrows.len; i++)
    vec_push(a, &d->arrows, transpose_arrow(a, IR_ARROW(m, i)));
  /* z = g * y and z = softmax_jvp(g, y) are bilinear: the gate g gets its
   * part of the gradient through an arrow of its own */
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *f = IR_BLOCK(m, i);
    if (f->act.kind != ACT_MUL && f->act.kind != ACT_SOFTMAX_JVP)
      continue;
    IrArrow *g = arena_alloc(a, sizeof *g);
    g->kind = ARROW_GATE;
    g->src = i;
    g->dst = f->act.gate;
    g->loc = f->loc;
    g->w.param = -1;
    vec_push(a, &d->arrows, g);
  }
  d->inputs = m->outputs;
  d->ninputs = m->noutputs;
  d->outputs = m->inputs;
  d->noutputs = m->ninputs;
  return d;
}
