/* print.c — prints a machine as .mach source that machc compiles back to
 * the same machine: every weight named explicitly, parameters declared.
 * A dual machine prints its derivative activations as mul(g, ...) with the
 * gate g = sigma'(y) of the primal block an extra input named dsigma.NAME;
 * a softmax block's as softmax_jvp(g, ...) with g = softmax(y), its primal
 * output, since the softmax's Jacobian is not diagonal. */
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

static const char *gate_name(Arena *a, const IrMachine *m, int b) {
  return arena_printf(a, "dsigma.%s", IR_BLOCK(m, b)->name);
}

static void print_block(Arena *a, const IrMachine *m, const IrGroups *into, int bi, StrBuf *o) {
  const IrBlock *b = IR_BLOCK(m, bi);
  char buf[40];
  StrBuf lin = {0};
  int terms = 0;
  for (int j = into->start[bi]; j < into->start[bi + 1]; j++) {
    const IrArrow *ar = IR_ARROW(m, into->order[j]);
    if (terms++)
      sb_puts(&lin, " + ");
    sb_puts(&lin, ir_arrow_text(a, m, ar, IR_BLOCK(m, ar->src)->name, IR_TEXT_MACH));
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
    sb_printf(o, "%s(%s, %s)\n", b->act.deriv_of == ACT_SOFTMAX ? "softmax_jvp" : "mul",
              gate_name(a, m, bi), lin.data);
    break;
  case ACT_MUL:
  case ACT_SOFTMAX_JVP:
    sb_printf(o, "%s(%s, %s)\n", ir_act_name(b->act.kind), IR_BLOCK(m, b->act.gate)->name, lin.data);
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
    sb_puts(o, "#   zbar_j = z0bar_j + sum over arrows j -> i of ybar_i W(j -> i)^T   (block j's linear part)\n"
               "#   ybar_j = sigma_j'(y_j) * zbar_j                                  (its pointwise part)\n"
               "# Inputs: the cotangents dLoss/dz of the primal outputs, and dsigma.NAME =\n"
               "# sigma'(y) of each block NAME at the primal state. Outputs: dLoss/dy0 of\n"
               "# the primal inputs. Weights are the primal's, read transposed.\n");
    for (int i = 0; i < m->blocks.len; i++)
      if (IR_BLOCK(m, i)->act.kind == ACT_DERIV && IR_BLOCK(m, i)->act.deriv_of == ACT_SOFTMAX) {
        sb_puts(o, "# For a softmax block dsigma.NAME is its output z = softmax(y) instead, and\n"
                   "# ybar = softmax_jvp(z, zbar) = z * (zbar - <z, zbar>) over the channels.\n");
        break;
      }
  }
  sb_printf(o, "machine %s {\n", m->name);
  print_params(m, o);
  if (m->time_length)
    sb_printf(o, "    set timeblock = %d\n", m->timeblock);
  IrGroups into = ir_arrows_by_dst(a, m), lv_blocks = ir_blocks_by_level(a, m);
  for (int k = 0; k < m->ninputs; k++) /* inputs first, in order */
    print_block(a, m, &into, m->inputs[k], o);
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->act.kind == ACT_DERIV)
      sb_printf(o, "    input %s : %s\n", gate_name(a, m, i), ir_shape_text(a, &IR_BLOCK(m, i)->shape));
  for (int k = 0; k < m->blocks.len; k++) { /* by level */
    int i = lv_blocks.order[k];
    if (!IR_BLOCK(m, i)->has_input)
      print_block(a, m, &into, i, o);
  }
  sb_puts(o, "}\n");
  arena_free(a);
}
