/* dot.c — --emit=dot: the depth diagram, a Graphviz graph of the machine.
 *
 * Levels are ranks, left to right: every arrow of a machine of finite depth
 * runs from a lower level to a higher one, so the filtration is what the eye
 * sees. Blocks show their shape, activation, bias and level; arrows their
 * kind and options as the printed machine writes them (ir_text.c); inputs
 * and outputs hang off small labels. In a recurrent machine the levels
 * solved chunk by chunk sit in a cluster saying so, and the arrows that go
 * back (to the same or a lower level) are drawn dashed: they read other time
 * steps, so the cycles they close run through time lags. With the dual
 * machine (--emit=dot --dual) both are drawn, the dual below the machine:
 * the same blocks, arrows transposed and reversed, levels reversed. */
#include "machc.h"

#include <string.h>

static const char *const colors[] = {"#e0f3db", "#ccebc5", "#a8ddb5", "#7bccc4",
                                     "#4eb3d3", "#2b8cbe", "#0868ac", "#084081"};

typedef struct Dot {
  Arena *a;
  FILE *out;
  const IrMachine *m;
  const char *id; /* node names are id + block name: "p:x" for the machine, "d:x" for its dual */
  IrGroups lv_blocks; /* the blocks of each level, so that drawing the ranks stays linear */
} Dot;

static const char *node(const Dot *g, int b) {
  return arena_printf(g->a, "\"%s%s\"", g->id, IR_BLOCK(g->m, b)->name);
}

/* An arrow's options one to a line: ", " outside brackets becomes "\n". */
static char *one_per_line(Arena *a, const char *args) {
  char *s = arena_alloc(a, 2 * strlen(args) + 1), *p = s;
  int depth = 0;
  for (const char *q = args; *q; q++) {
    depth += *q == '[' || *q == '(' ? 1 : *q == ']' || *q == ')' ? -1 : 0;
    if (depth == 0 && q[0] == ',' && q[1] == ' ') {
      *p++ = '\\';
      *p++ = 'n';
      q++;
    } else {
      *p++ = *q;
    }
  }
  *p = '\0';
  return s;
}

static bool chunked(const IrMachine *m, int level) {
  return m->time_length && level >= m->chunk_lo && level < m->chunk_hi;
}

/* An arrow that does not go up a level reads another time step. */
static bool goes_back(const IrMachine *m, const IrArrow *ar) {
  return IR_BLOCK(m, ar->src)->level >= IR_BLOCK(m, ar->dst)->level;
}

static void block_node(const Dot *g, int i) {
  const IrMachine *m = g->m;
  const IrBlock *b = IR_BLOCK(m, i);
  int lv = b->level;
  fprintf(g->out, "    %s [label=\"%s\\n%s\\n%s", node(g, i), b->name, ir_shape_text(g->a, &b->shape),
          ir_act_text(g->a, &b->act));
  if (b->bias >= 0)
    fprintf(g->out, "\\n+ bias %s", IR_PARAM(m, b->bias)->name);
  fprintf(g->out, "\\nlevel %d", lv);
  if (m->primal)
    fprintf(g->out, " (primal %d)", m->nlevels - 1 - lv);
  fprintf(g->out, "\", fillcolor=\"%s\"%s];\n", colors[lv % 8], lv % 8 >= 5 ? ", fontcolor=white" : "");
}

static void level_rank(const Dot *g, int lv) {
  fprintf(g->out, "  subgraph \"%slevel%d\" { rank=same;\n", g->id, lv);
  for (int k = g->lv_blocks.start[lv]; k < g->lv_blocks.start[lv + 1]; k++)
    block_node(g, g->lv_blocks.order[k]);
  fprintf(g->out, "  }\n");
}

/* Inputs and outputs: a plain label with an arrow into (out of) the block. */
static void ends(const Dot *g) {
  bool dual = g->m->primal != NULL;
  for (int k = 0; k < g->m->ninputs; k++) {
    int b = g->m->inputs[k];
    fprintf(g->out, "  \"%sin:%s\" [shape=plaintext, style=\"\", label=\"%s\"];\n", g->id,
            IR_BLOCK(g->m, b)->name, dual ? "cotangent\\ndLoss/dz" : "input");
    fprintf(g->out, "  \"%sin:%s\" -> %s [style=bold];\n", g->id, IR_BLOCK(g->m, b)->name, node(g, b));
  }
  for (int k = 0; k < g->m->noutputs; k++) {
    int b = g->m->outputs[k];
    fprintf(g->out, "  \"%sout:%s\" [shape=plaintext, style=\"\", label=\"%s\"];\n", g->id,
            IR_BLOCK(g->m, b)->name, dual ? "gradient\\ndLoss/dy0" : "output");
    fprintf(g->out, "  %s -> \"%sout:%s\" [style=bold];\n", node(g, b), g->id, IR_BLOCK(g->m, b)->name);
  }
}

static void arrows(const Dot *g) {
  for (int i = 0; i < g->m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(g->m, i);
    const char *args = ir_arrow_args(g->a, g->m, ar, IR_TEXT_MATH);
    fprintf(g->out, "  %s -> %s [label=\"%s%s%s\"%s];\n", node(g, ar->src), node(g, ar->dst),
            ir_arrow_kind(ar), *args ? "\\n" : "", one_per_line(g->a, args),
            goes_back(g->m, ar) ? ", style=dashed, color=\"#b2182b\", fontcolor=\"#b2182b\", constraint=false"
                                : "");
  }
}

/* The title of a machine: its depth, and how a recurrent one is solved. */
static const char *note(const Dot *g) {
  const IrMachine *m = g->m;
  const char *s = arena_printf(g->a, "%s%s: %d blocks, depth %d (%d levels)",
                               m->primal ? "dual machine " : "machine ", m->name, m->blocks.len,
                               m->nlevels - 1, m->nlevels);
  if (m->primal)
    s = arena_printf(g->a, "%s: the backward pass of %s,\\nthe same blocks, arrows transposed, levels reversed",
                     s, m->primal->name);
  bool back = false;
  for (int i = 0; i < m->arrows.len; i++)
    back |= goes_back(m, IR_ARROW(m, i));
  if (!back)
    return arena_printf(g->a, "%s\\nevery arrow reads a lower level", s);
  return arena_printf(g->a, "%s\\nsolid arrows read lower levels; dashed arrows read %s time steps,\\n"
                            "closing cycles through %s time lags: over (chunk of time, level) the depth is finite",
                      s, m->reverse_time ? "later" : "earlier", m->reverse_time ? "negative" : "positive");
}

static void machine(const Dot *g) {
  const IrMachine *m = g->m;
  fprintf(g->out, "  label=\"%s\";\n", note(g));
  bool open = false;
  for (int lv = 0; lv < m->nlevels; lv++) {
    if (chunked(m, lv) && !open) {
      int n = (m->time_length + m->timeblock - 1) / m->timeblock, nc = m->chunk_hi - m->chunk_lo;
      fprintf(g->out, "  subgraph \"cluster_%schunks\" { style=\"dashed,rounded\"; color=\"#666666\";\n"
                      "  label=\"%d time steps in %d chunks of %d%s: (chunk, level) takes %d x %d = %d steps\";\n",
              g->id, m->time_length, n, m->timeblock, m->reverse_time ? ", solved last to first" : "", n, nc,
              n * nc);
      open = true;
    }
    if (open && !chunked(m, lv)) {
      fprintf(g->out, "  }\n");
      open = false;
    }
    level_rank(g, lv);
  }
  if (open)
    fprintf(g->out, "  }\n");
  ends(g);
  arrows(g);
}

void dot_write(const IrMachine *m, const IrMachine *dual, FILE *out) {
  Arena *a = arena_new();
  fprintf(out, "digraph \"%s\" {\n  rankdir=LR; newrank=true; nodesep=0.4; ranksep=0.8; labelloc=t; fontname=\"Helvetica\";\n"
               "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=11];\n"
               "  edge [fontname=\"Helvetica\", fontsize=9];\n", m->name);
  Dot g = {a, out, m, dual ? "p:" : "", ir_blocks_by_level(a, m)};
  if (!dual) {
    machine(&g);
  } else {
    Dot d = {a, out, dual, "d:", ir_blocks_by_level(a, dual)}; /* written first, dot draws it below */
    fprintf(out, "  subgraph cluster_dual {\n");
    machine(&d);
    fprintf(out, "  }\n  subgraph cluster_machine {\n");
    machine(&g);
    fprintf(out, "  }\n");
  }
  fprintf(out, "}\n");
  arena_free(a);
}
