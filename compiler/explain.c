/* explain.c — `machc explain`: what the filtration found and what one pass
 * costs; and --emit=dot, the machine as a Graphviz graph coloured by level. */
#include "machc.h"

#include <string.h>

static const char *arrow_kind(const IrArrow *ar) {
  switch (ar->kind) {
  case ARROW_DENSE: return "dense";
  case ARROW_CONV: return ar->adjoint ? "conv_t" : "conv";
  case ARROW_IDENTITY: return "skip";
  case ARROW_AVGPOOL: return ar->adjoint ? "avgpool_t" : "avgpool";
  case ARROW_GAVGPOOL: return ar->adjoint ? "global_avgpool_t" : "global_avgpool";
  case ARROW_GATE: return "gate";
  }
  return "?";
}

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
  for (int lv = 0; lv < m->nlevels; lv++)
    for (int i = 0; i < m->blocks.len; i++) {
      const IrBlock *b = IR_BLOCK(m, i);
      if (b->level != lv)
        continue;
      fprintf(out, "  %3d  %-16s %-14s %-22s%s%s\n", lv, b->name, ir_shape_text(a, &b->shape),
              ir_act_text(a, &b->act), b->has_input ? " input" : "", b->is_output ? " output" : "");
    }
}

static void explain_arrows(Arena *a, const IrMachine *m, FILE *out) {
  fprintf(out, "\narrows\n");
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    fprintf(out, "  %-16s -> %-16s %-8s", IR_BLOCK(m, ar->src)->name, IR_BLOCK(m, ar->dst)->name,
            arrow_kind(ar));
    if (ar->kind == ARROW_CONV || ar->kind == ARROW_AVGPOOL) {
      fprintf(out, " k [");
      for (int k = 0; k < ar->ngrid; k++)
        fprintf(out, "%s%d", k ? ", " : "", ar->ax[k].kernel);
      fprintf(out, "] pad [");
      for (int k = 0; k < ar->ngrid; k++)
        fprintf(out, "%s(%d, %d)", k ? ", " : "", ar->ax[k].pad0, ar->ax[k].pad1);
      fprintf(out, "]");
      for (int k = 0; k < ar->ngrid; k++)
        if (ar->ax[k].stride != 1 || ar->ax[k].dilation != 1)
          fprintf(out, " axis %d stride %d dilation %d", k, ar->ax[k].stride, ar->ax[k].dilation);
      if (m->time_length && ar->ax[0].pad1 <= 0)
        fprintf(out, " lags %d ..= %d", -ar->ax[0].pad1, ar->ax[0].pad0);
    }
    if (ar->w.param >= 0) {
      const IrParam *p = IR_PARAM(m, ar->w.param);
      fprintf(out, " weight %s", p->name);
      bool koff = false;
      for (int k = 0; k < ar->ngrid; k++)
        koff |= ar->w.k_off[k] != 0;
      if (ar->w.in_off || ar->w.out_off || koff) {
        fprintf(out, " at [");
        for (int k = 0; k < p->rank - 2; k++)
          fprintf(out, "%d, ", ar->w.k_off[k]);
        fprintf(out, "%d, %d]", ar->w.in_off, ar->w.out_off);
      }
      if (ar->w.transposed)
        fprintf(out, " transposed");
    }
    fprintf(out, "   ");
    human(ir_arrow_flops(m, ar), "FLOP", out);
    fputc('\n', out);
  }
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->bias >= 0)
      fprintf(out, "  bias %-40s %s\n", IR_BLOCK(m, i)->name, IR_PARAM(m, IR_BLOCK(m, i)->bias)->name);
  (void)a;
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
  arena_free(a);
}

void explain_dot(const IrMachine *m, FILE *out) {
  static const char *colors[] = {"#e0f3db", "#ccebc5", "#a8ddb5", "#7bccc4",
                                 "#4eb3d3", "#2b8cbe", "#0868ac", "#084081"};
  Arena *a = arena_new();
  fprintf(out, "digraph \"%s\" {\n  rankdir=LR;\n  node [shape=box, style=filled];\n", m->name);
  for (int lv = 0; lv < m->nlevels; lv++) {
    fprintf(out, "  subgraph level%d { rank=same;\n", lv);
    for (int i = 0; i < m->blocks.len; i++) {
      const IrBlock *b = IR_BLOCK(m, i);
      if (b->level != lv)
        continue;
      fprintf(out, "    \"%s\" [label=\"%s\\n%s\\n%s\\nlevel %d\", fillcolor=\"%s\"%s];\n", b->name,
              b->name, ir_shape_text(a, &b->shape), ir_act_text(a, &b->act), lv,
              colors[lv % 8], lv % 8 >= 5 ? ", fontcolor=white" : "");
    }
    fprintf(out, "  }\n");
  }
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    fprintf(out, "  \"%s\" -> \"%s\" [label=\"%s\"];\n", IR_BLOCK(m, ar->src)->name,
            IR_BLOCK(m, ar->dst)->name, arrow_kind(ar));
  }
  fprintf(out, "}\n");
  arena_free(a);
}
