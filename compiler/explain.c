/* explain.c — `machc explain`: what the filtration found and what one pass
 * costs. */
#include "machc.h"

#include <string.h>

static void human(double x, const char *unit, FILE *out) {
  const char *pre[] = {"", "k", "M", "G", "T"};
  int i = 0;
  while (x >= 1000 && i < 4) {
    x /= 1000;
    i++;
  }
  fprintf(out, "%.3g %s%s", x, pre[i], unit);
}

static long state_scalars(const IrMachine *m) {
  long n = 0;
  for (int i = 0; i < m->blocks.len; i++)
    n += IR_BLOCK(m, i)->size * (IR_BLOCK(m, i)->act.kind == ACT_IDENTITY ? 1 : 2);
  return n;
}

static void explain_levels(Arena *a, const IrMachine *m, FILE *out) {
  fprintf(out, "\nlevels (longest path from the sources; each level reads only lower ones)\n");
  IrGroups lv_blocks = ir_blocks_by_level(a, m);
  for (int lv = 0; lv < m->nlevels; lv++)
    for (int k = lv_blocks.start[lv]; k < lv_blocks.start[lv + 1]; k++) {
      const IrBlock *b = IR_BLOCK(m, lv_blocks.order[k]);
      const char *marks = arena_printf(a, "%s%s", b->has_input ? " input" : "", b->is_output ? " output" : "");
      fprintf(out, "  %3d  %-16s %-14s %-*s%s\n", lv, b->name, ir_shape_text(a, &b->shape),
              *marks ? 22 : 0, ir_act_text(a, &b->act), marks); /* no trailing blanks */
    }
}

/* One line per arrow: source, destination, kind, then the options and the
 * weight as the printed machine writes them. */
static void explain_arrows(Arena *a, const IrMachine *m, FILE *out) {
  fprintf(out, "\narrows\n");
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    const char *args = ir_arrow_args(a, m, ar, IR_TEXT_MATH);
    fprintf(out, "  %-16s -> %-16s %-8s %s%s", IR_BLOCK(m, ar->src)->name, IR_BLOCK(m, ar->dst)->name,
            ir_arrow_kind(ar), args, *args ? "   " : "");
    human(ir_arrow_flops(m, ar), "FLOP", out);
    fputc('\n', out);
  }
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->bias >= 0)
      fprintf(out, "  bias %-40s %s\n", IR_BLOCK(m, i)->name, IR_PARAM(m, IR_BLOCK(m, i)->bias)->name);
}

static void explain_params(const IrMachine *m, FILE *out) {
  fprintf(out, "\nparameters (%ld scalars)\n", m->param_size);
  for (int i = 0; i < m->params.len; i++) {
    const IrParam *p = IR_PARAM(m, i);
    char shape[96];
    int n = snprintf(shape, sizeof shape, "[");
    for (int k = 0; k < p->rank; k++)
      n += snprintf(shape + n, sizeof shape - (size_t)n, "%s%d", k ? ", " : "", p->shape[k]);
    snprintf(shape + n, sizeof shape - (size_t)n, "]");
    fprintf(out, "  %-24s %-14s %8ld  ", p->name, shape, p->size);
    if (p->init == INIT_ZEROS || p->init == INIT_ONES)
      fprintf(out, "%s\n", p->init == INIT_ZEROS ? "zeros" : "ones");
    else
      fprintf(out, "%s(%.4g)\n", p->glorot ? "glorot uniform" : p->init == INIT_UNIFORM ? "uniform" : "normal",
              p->init_scale);
  }
}

/* RAM of inference (the workspace of standalone NAME_infer, from plan.c)
 * and of training (state and dual state per sample; parameters, gradients
 * and Adam's two moments once), per sample and per batch, in f32. */
static void explain_ram(Arena *a, const IrMachine *m, long st, FILE *out) {
  Plan plan;
  plan_inference(a, m, &plan);
  long outs = 0, P = m->param_size, B = 32;
  for (int k = 0; k < m->noutputs; k++)
    outs += IR_BLOCK(m, m->outputs[k])->size;
  fprintf(out, "\nRAM (f32; f64 doubles every figure)\n");
  fprintf(out, "  inference:  %ld bytes per sample: the workspace of standalone _infer, %ld scalars\n"
               "              (z overwrites y, blocks share memory by liveness), and %ld of outputs;\n"
               "              plus the convolutions' scratch (NAME_WORKSPACE_SCRATCH in the header);\n"
               "              parameters %ld bytes, in flash when baked in\n",
          4 * (plan.size + outs), plan.size, outs, 4 * P);
  fprintf(out, "  training:   %ld bytes per sample: state and dual state, 2 x %ld scalars;\n"
               "              %ld bytes once: parameters, gradients and Adam's two moments, 4 x %ld;\n"
               "              plus the convolutions' scratch, twice (NAME_STATE_SCRATCH in the header)\n",
          8 * st, st, 16 * P, P);
  fprintf(out, "  batch of %ld: inference %ld bytes + parameters, training %ld bytes + %ld\n", B,
          4 * B * (plan.size + outs), 8 * B * st, 16 * P);
}

void explain_machine(const IrMachine *m, FILE *out) {
  Arena *a = arena_new();
  fprintf(out, "machine %s (%s)\n", m->name, m->source);
  fprintf(out, "  %d blocks, %d arrows, depth %d (%d levels), %ld parameters, %d input%s, %d output%s\n",
          m->blocks.len, m->arrows.len, m->nlevels - 1, m->nlevels, m->param_size, m->ninputs,
          m->ninputs == 1 ? "" : "s", m->noutputs, m->noutputs == 1 ? "" : "s");
  if (m->time_length) {
    int nchunks = (m->time_length + m->timeblock - 1) / m->timeblock;
    int nc = m->chunk_hi - m->chunk_lo;
    fprintf(out, "  recurrent: %d time steps in %d chunk%s of %d; the filtration runs over "
                 "(chunk, level): %d x %d = %d steps", m->time_length, nchunks,
            nchunks == 1 ? "" : "s", m->timeblock, nchunks, nc, nchunks * nc);
    if (nc < m->nlevels)
      fprintf(out, " for levels %d to %d, %d level%s solved whole%s%s", m->chunk_lo, m->chunk_hi - 1,
              m->nlevels - nc, m->nlevels - nc == 1 ? "" : "s",
              m->chunk_lo ? " before" : "", m->chunk_hi < m->nlevels ? (m->chunk_lo ? " and after" : " after") : "");
    fputc('\n', out);
    if (m->reverse_time) /* anti-causal: the cycles read only later time steps */
      fprintf(out, "  runs backwards in time: its cycles read only later steps, so the chunks are "
                   "solved last to first\n");
  }
  explain_levels(a, m, out);
  explain_arrows(a, m, out);
  explain_params(m, out);
  double f = ir_forward_flops(m);
  long st = state_scalars(m);
  fprintf(out, "\ncost per sample\n  forward pass:   ");
  human(f, "FLOP", out);
  fprintf(out, "\n  backward pass:  the dual machine, same arrows transposed (");
  human(f, "FLOP", out);
  fprintf(out, ") + parameter gradients\n  state memory:   %ld scalars (y and z of every block; "
               "%ld bytes in f32, %ld in f64)\n", st, 4 * st, 8 * st);
  fprintf(out, "  parameters:     %ld bytes in f32, %ld in f64\n", 4 * m->param_size, 8 * m->param_size);
  explain_ram(a, m, st, out);
  arena_free(a);
}
