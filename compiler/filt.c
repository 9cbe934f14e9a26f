/* filt.c — the depth filtration.
 *
 * Block j must be solved before block i when an arrow j -> i exists (or j
 * gates i). The level of a block is the length of the longest path reaching
 * it from the sources; blocks of one level depend only on lower levels, so
 * the machine equation is solved in one sweep, level by level. A cycle means
 * the machine has no finite depth: that is an error naming the cycle. */
#include "machc.h"

#include <stdlib.h>
#include <string.h>

typedef struct Graph {
  int n;
  int *head, *next, *to, *arrow; /* adjacency lists: edge e from u goes to to[e] */
  int nedges;
} Graph;

static void add_edge(Graph *g, int u, int v, int arrow) {
  int e = g->nedges++;
  g->to[e] = v;
  g->arrow[e] = arrow;
  g->next[e] = g->head[u];
  g->head[u] = e;
}

static Graph graph_of(Arena *a, const IrMachine *m) {
  Graph g = {.n = m->blocks.len};
  int cap = m->arrows.len + m->blocks.len + 1;
  g.head = arena_alloc(a, sizeof(int) * (size_t)g.n);
  g.next = arena_alloc(a, sizeof(int) * (size_t)cap);
  g.to = arena_alloc(a, sizeof(int) * (size_t)cap);
  g.arrow = arena_alloc(a, sizeof(int) * (size_t)cap);
  for (int i = 0; i < g.n; i++)
    g.head[i] = -1;
  for (int i = 0; i < m->arrows.len; i++)
    add_edge(&g, IR_ARROW(m, i)->src, IR_ARROW(m, i)->dst, i);
  for (int i = 0; i < g.n; i++)
    if (IR_BLOCK(m, i)->act.kind == ACT_MUL)
      add_edge(&g, IR_BLOCK(m, i)->act.gate, i, -1);
  return g;
}

/* Finds a cycle among the blocks left with unresolved dependencies (each has
 * a predecessor that is also left) and reports it. Walking predecessors from
 * any left block must revisit a block within n steps. */
static void report_cycle(Arena *a, const IrMachine *m, const Graph *g, const int *indeg,
                         Diag *d) {
  int n = g->n;
  int *pred_edge = arena_alloc(a, sizeof(int) * (size_t)n);
  for (int i = 0; i < n; i++)
    pred_edge[i] = -1;
  for (int u = 0; u < n; u++)
    for (int e = g->head[u]; e >= 0; e = g->next[e])
      if (indeg[u] > 0 && indeg[g->to[e]] > 0)
        pred_edge[g->to[e]] = e;
  int *from = arena_alloc(a, sizeof(int) * (size_t)g->nedges);
  for (int u = 0; u < n; u++)
    for (int e = g->head[u]; e >= 0; e = g->next[e])
      from[e] = u;
  int start = 0;
  while (start < n && indeg[start] == 0)
    start++;
  int *seen = arena_alloc(a, sizeof(int) * (size_t)n);
  int v = start;
  for (int steps = 1; !seen[v]; steps++) { /* walk back until a block repeats */
    seen[v] = steps;
    v = from[pred_edge[v]];
  }
  /* v is on the cycle: collect it forwards */
  int len = 0, *cyc = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int u = v;
  do {
    cyc[len++] = u;
    u = from[pred_edge[u]];
  } while (u != v);
  StrBuf sb = {0};
  for (int i = len - 1; i >= 0; i--)
    sb_printf(&sb, "%s -> ", IR_BLOCK(m, cyc[i])->name);
  sb_printf(&sb, "%s", IR_BLOCK(m, cyc[len - 1])->name);
  int e0 = pred_edge[cyc[len - 1]];
  Loc loc = g->arrow[e0] >= 0 ? IR_ARROW(m, g->arrow[e0])->loc : IR_BLOCK(m, cyc[len - 1])->loc;
  diag_error(d, loc, "machine '%s' has no finite depth: %s", m->name, sb.data);
  for (int i = len - 1; i >= 0; i--) {
    int e = pred_edge[cyc[i]];
    int to = cyc[i];
    if (g->arrow[e] >= 0)
      diag_note(d, IR_ARROW(m, g->arrow[e])->loc, "'%s' reads '%s' here", IR_BLOCK(m, to)->name,
                IR_BLOCK(m, from[e])->name);
  }
  sb_free(&sb);
}

bool filt_levels(IrMachine *m, Diag *d) {
  Arena *a = arena_new();
  Graph g = graph_of(a, m);
  int n = g.n;
  int *indeg = arena_alloc(a, sizeof(int) * (size_t)n);
  int *queue = arena_alloc(a, sizeof(int) * (size_t)n);
  for (int u = 0; u < n; u++)
    for (int e = g.head[u]; e >= 0; e = g.next[e])
      indeg[g.to[e]]++;
  int qh = 0, qt = 0;
  for (int i = 0; i < n; i++) {
    IR_BLOCK(m, i)->level = 0;
    if (indeg[i] == 0)
      queue[qt++] = i;
  }
  /* Kahn's order: a block's level is final once all its predecessors are. */
  while (qh < qt) {
    int u = queue[qh++];
    for (int e = g.head[u]; e >= 0; e = g.next[e]) {
      IrBlock *v = IR_BLOCK(m, g.to[e]);
      if (v->level < IR_BLOCK(m, u)->level + 1)
        v->level = IR_BLOCK(m, u)->level + 1;
      if (--indeg[g.to[e]] == 0)
        queue[qt++] = g.to[e];
    }
  }
  bool ok = qt == n;
  if (!ok)
    report_cycle(a, m, &g, indeg, d);
  m->nlevels = 0;
  for (int i = 0; ok && i < n; i++)
    if (IR_BLOCK(m, i)->level + 1 > m->nlevels)
      m->nlevels = IR_BLOCK(m, i)->level + 1;
  arena_free(a);
  return ok;
}
