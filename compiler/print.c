/* print.c — prints a machine as .mach source that machc compiles back to
 * the same machine: every weight named explicitly, parameters declared.
 * A dual machine prints its derivative activations as mul(g, ...) with the
 * gate g = sigma'(y) of the primal block an extra input named dsigma.NAME. */
#include "machc.h"

#include <stdlib.h>
#include <string.h>

/* The shortest decimal that reads back as x. */
static const char *num(char *buf, size_t n, double x) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, n, "%.*g", prec, x);
    if (strtod(buf, NULL) == x)
      break;
  }
  if (!strpbrk(buf, ".en")) /* keep it a float: 2 -> 2.0 */
    strncat(buf, ".0", n - strlen(buf) - 1);
  return buf;
}

static void print_weight(const IrMachine *m, const IrArrow *ar, long rows, long cols, StrBuf *o) {
  const IrParam *p = IR_PARAM(m, ar->w.param);
  bool whole = ar->w.in_off == 0 && ar->w.out_off == 0;
  for (int k = 0; k < p->rank - 2; k++)
    whole &= ar->w.k_off[k] == 0 && ar->ax[k].kernel == p->shape[k];
  whole &= rows == p->shape[p->rank - 2] && cols == p->shape[p->rank - 1];
  sb_puts(o, ", weight = ");
  if (ar->w.transposed)
    sb_puts(o, "transpose(");
  sb_puts(o, p->name);
  if (!whole) {
    sb_puts(o, "[");
    for (int k = 0; k < p->rank - 2; k++)
      sb_printf(o, "%d .. %d, ", ar->w.k_off[k], ar->w.k_off[k] + ar->ax[k].kernel);
    sb_printf(o, "%d .. %ld, %d .. %ld]", ar->w.in_off, ar->w.in_off + rows, ar->w.out_off,
              ar->w.out_off + cols);
  }
  if (ar->w.transposed)
    sb_puts(o, ")");
}

static void int_list(StrBuf *o, const char *name, const IrArrow *ar, int what) {
  sb_printf(o, ", %s = [", name);
  for (int k = 0; k < ar->ngrid; k++) {
    const ConvAxis *ax = &ar->ax[k];
    if (what == 'p')
      sb_printf(o, "%s%d, %d", k ? ", " : "", ax->pad0, ax->pad1);
    else
      sb_printf(o, "%s%d", k ? ", " : "", what == 'k' ? ax->kernel : what == 's' ? ax->stride : ax->dilation);
  }
  sb_puts(o, "]");
}

/* conv(x, k = [..], pad = [p0, p1, ..], stride = [..], dilation = [..]):
 * every field written out, pads flat per axis as the paper gives them. */
static void print_grid_arrow(const IrMachine *m, const IrArrow *ar, StrBuf *o) {
  const IrBlock *s = IR_BLOCK(m, ar->src);
  const char *name = ar->kind == ARROW_CONV ? "conv" : ar->kind == ARROW_AVGPOOL ? "avgpool"
                                                                                 : "global_avgpool";
  sb_printf(o, "%s%s(%s", name, ar->adjoint ? "_t" : "", s->name);
  if (ar->kind != ARROW_GAVGPOOL) {
    int_list(o, "k", ar, 'k');
    int_list(o, "pad", ar, 'p');
    int_list(o, "stride", ar, 's');
    if (ar->kind == ARROW_CONV)
      int_list(o, "dilation", ar, 'd');
  }
  if (ar->kind == ARROW_CONV) {
    const IrBlock *fin = IR_BLOCK(m, ar->adjoint ? ar->dst : ar->src);
    const IrBlock *fout = IR_BLOCK(m, ar->adjoint ? ar->src : ar->dst);
    bool swap = ar->w.transposed;
    print_weight(m, ar, swap ? fout->shape.channels : fin->shape.channels,
                 swap ? fin->shape.channels : fout->shape.channels, o);
  }
  sb_puts(o, ")");
}

static void print_arrow(const IrMachine *m, const IrArrow *ar, StrBuf *o) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  switch (ar->kind) {
  case ARROW_DENSE:
    sb_printf(o, "dense(%s", s->name);
    if (ar->w.transposed)
      print_weight(m, ar, d->size, s->size, o);
    else
      print_weight(m, ar, s->size, d->size, o);
    sb_puts(o, ")");
    break;
  case ARROW_IDENTITY:
    sb_puts(o, s->name);
    break;
  default:
    print_grid_arrow(m, ar, o);
    break;
  }
}

static const char *gate_name(Arena *a, const IrMachine *m, int b) {
  return arena_printf(a, "dsigma.%s", IR_BLOCK(m, b)->name);
}

static void print_block(Arena *a, const IrMachine *m, int bi, StrBuf *o) {
  const IrBlock *b = IR_BLOCK(m, bi);
  char buf[40];
  StrBuf lin = {0};
  int terms = 0;
  for (int i = 0; i < m->arrows.len; i++)
    if (IR_ARROW(m, i)->dst == bi) {
      if (terms++)
        sb_puts(&lin, " + ");
      print_arrow(m, IR_ARROW(m, i), &lin);
    }
  if (b->bias >= 0)
    sb_printf(&lin, "%sbias", terms++ ? " + " : "");
  const char *shape = ir_shape_text(a, &b->shape);
  if (terms == 0 && b->act.kind == ACT_IDENTITY) {
    if (!b->has_input)
      sb_printf(o, "    # nothing reaches '%s': its value is zero\n", b->name);
    sb_printf(o, "    input %s : %s\n", b->name, shape);
    if (b->is_output)
      sb_printf(o, "    output %s\n", b->name);
    sb_free(&lin);
    return;
  }
  if (b->has_input)
    sb_printf(&lin, "%sinput", terms++ ? " + " : "");
  sb_printf(o, "    %s %s : %s = ", b->is_output ? "output" : "block ", b->name, shape);
  switch (b->act.kind) {
  case ACT_IDENTITY:
    sb_printf(o, "%s\n", lin.data);
    break;
  case ACT_DERIV:
    sb_printf(o, "mul(%s, %s)\n", gate_name(a, m, bi), lin.data);
    break;
  case ACT_MUL:
    sb_printf(o, "mul(%s, %s)\n", IR_BLOCK(m, b->act.gate)->name, lin.data);
    break;
  case ACT_LEAKY_RELU:
    sb_printf(o, "leaky_relu(%s, alpha = %s)\n", lin.data, num(buf, sizeof buf, b->act.alpha));
    break;
  default:
    sb_printf(o, "%s(%s)\n", ir_act_name(b->act.kind), lin.data);
    break;
  }
  sb_free(&lin);
}

static void print_params(const IrMachine *m, StrBuf *o) {
  bool dual = m->primal != NULL;
  char buf[40];
  for (int i = 0; i < m->params.len; i++) {
    const IrParam *p = IR_PARAM(m, i);
    if (p->is_bias && !dual)
      continue; /* re-created by the block's `bias` term */
    sb_printf(o, "    param %s : [", p->name);
    for (int k = 0; k < p->rank; k++)
      sb_printf(o, "%s%d", k ? ", " : "", p->shape[k]);
    sb_puts(o, "]");
    if (p->glorot)
      sb_puts(o, "\n");
    else if (p->init == INIT_ZEROS || p->init == INIT_ONES)
      sb_printf(o, " = %s\n", p->init == INIT_ZEROS ? "zeros" : "ones");
    else
      sb_printf(o, " = %s(%s)\n", p->init == INIT_UNIFORM ? "uniform" : "normal",
                num(buf, sizeof buf, p->init_scale));
  }
}

void print_machine(const IrMachine *m, StrBuf *o) {
  Arena *a = arena_new();
  bool dual = m->primal != NULL;
  sb_printf(o, "# machine '%s', printed by machc %s from %s\n", m->name, MACHC_VERSION, m->source);
  if (dual) {
    sb_puts(o, "# The dual machine of '");
    sb_printf(o, "%s': the backward pass, solved in reverse level order.\n", m->primal->name);
    sb_puts(o, "#   zbar_j = z0bar_j + sum over arrows j -> i of W_ij^T ybar_i   (block j's linear part)\n"
               "#   ybar_j = sigma_j'(y_j) * zbar_j                              (its pointwise part)\n"
               "# Inputs: the cotangents dLoss/dz of the primal outputs, and dsigma.NAME =\n"
               "# sigma'(y) of each block NAME at the primal state. Outputs: dLoss/dy0 of\n"
               "# the primal inputs. Weights are the primal's, read transposed.\n");
  }
  sb_printf(o, "machine %s {\n", m->name);
  print_params(m, o);
  if (m->time_length)
    sb_printf(o, "    set timeblock = %d\n", m->timeblock);
  for (int k = 0; k < m->ninputs; k++) /* inputs first, in order */
    print_block(a, m, m->inputs[k], o);
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->act.kind == ACT_DERIV)
      sb_printf(o, "    input %s : %s\n", gate_name(a, m, i), ir_shape_text(a, &IR_BLOCK(m, i)->shape));
  for (int lv = 0; lv < m->nlevels; lv++)
    for (int i = 0; i < m->blocks.len; i++)
      if (IR_BLOCK(m, i)->level == lv && !IR_BLOCK(m, i)->has_input)
        print_block(a, m, i, o);
  sb_puts(o, "}\n");
  arena_free(a);
}
