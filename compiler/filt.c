/* filt.c — the depth filtration.
 *
 * Block j must be solved before block i when an arrow j -> i exists (or j
 * gates i). The level of a block is the length of the longest path reaching
 * it from the sources; blocks of one level depend only on lower levels, so
 * the machine equation is solved in one sweep, level by level. A cycle means
 * the machine has no finite depth: that is an error naming the cycle.
 *
 * Recurrent machines. An arrow may read a block at earlier times: a
 * convolution along grid axis 0 (time) whose taps all lie in the past, by at
 * least `lag` steps. Cycles are then allowed when every cycle has a positive
 * total lag. The filtration runs over (time chunk, level): time is cut into
 * chunks of `timeblock` steps and, inside a chunk, an arrow with lag below
 * the chunk length is a dependency between levels while one with a larger
 * lag reads chunks already solved. A chunk length is legal when those
 * dependencies have no cycle; machc takes the largest legal one unless the
 * machine sets it (set timeblock = N). */
#include "machc.h"

#include <limits.h>
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

static Graph graph_new(Arena *a, int n, int cap) {
  Graph g = {.n = n};
  g.head = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  g.next = arena_alloc(a, sizeof(int) * (size_t)cap);
  g.to = arena_alloc(a, sizeof(int) * (size_t)cap);
  g.arrow = arena_alloc(a, sizeof(int) * (size_t)cap);
  for (int i = 0; i < n; i++)
    g.head[i] = -1;
  return g;
}

/* The dependency graph for chunks of tb steps: arrows whose lag is below tb
 * (every arrow, for lag == NULL), between blocks of stage `want` (every
 * block, for stage == NULL). */
static Graph graph_of(Arena *a, const IrMachine *m, const int *lag, int tb, const int *stage,
                      int want) {
  Graph g = graph_new(a, m->blocks.len, m->arrows.len + m->blocks.len + 1);
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    if ((!lag || lag[i] < tb) && (!stage || (stage[ar->src] == want && stage[ar->dst] == want)))
      add_edge(&g, ar->src, ar->dst, i);
  }
  for (int i = 0; i < g.n; i++) {
    int gate = IR_BLOCK(m, i)->act.gate;
    ActKind ak = IR_BLOCK(m, i)->act.kind;
    if ((ak == ACT_MUL || ak == ACT_SOFTMAX_JVP) && (!stage || (stage[gate] == want && stage[i] == want)))
      add_edge(&g, gate, i, -1);
  }
  return g;
}

/* The same graph with every edge reversed. */
static Graph graph_reversed(Arena *a, const Graph *f) {
  Graph g = graph_new(a, f->n, f->nedges + 1);
  for (int u = 0; u < f->n; u++)
    for (int e = f->head[u]; e >= 0; e = f->next[e])
      add_edge(&g, f->to[e], u, f->arrow[e]);
  return g;
}

/* Finds a cycle among the blocks left with unresolved dependencies (each has
 * a predecessor that is also left) and reports it. Walking predecessors from
 * any left block must revisit a block within n steps. */
static void report_cycle(Arena *a, const IrMachine *m, const Graph *g, const int *indeg,
                         Diag *d, Loc at, const char *what) {
  int n = g->n;
  int *pred_edge = arena_alloc(a, sizeof(int) * (size_t)n);
  int *from = arena_alloc(a, sizeof(int) * (size_t)(g->nedges + 1));
  for (int u = 0; u < n; u++)
    for (int e = g->head[u]; e >= 0; e = g->next[e]) {
      from[e] = u;
      if (indeg[u] > 0 && indeg[g->to[e]] > 0)
        pred_edge[g->to[e]] = e;
    }
  int start = 0;
  while (start < n && indeg[start] == 0)
    start++;
  int *seen = arena_alloc(a, sizeof(int) * (size_t)n);
  int v = start;
  while (!seen[v]) { /* walk back until a block repeats: it is on a cycle */
    seen[v] = 1;
    v = from[pred_edge[v]];
  }
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
  Loc loc = at.file >= 0 ? at
            : g->arrow[e0] >= 0 ? IR_ARROW(m, g->arrow[e0])->loc
                                : IR_BLOCK(m, cyc[len - 1])->loc;
  diag_error(d, loc, "%s: %s", what, sb.data);
  for (int i = len - 1; i >= 0; i--) {
    int e = pred_edge[cyc[i]];
    if (g->arrow[e] >= 0)
      diag_note(d, IR_ARROW(m, g->arrow[e])->loc, "'%s' reads '%s' here", IR_BLOCK(m, cyc[i])->name,
                IR_BLOCK(m, from[e])->name);
  }
  sb_free(&sb);
}

/* Longest-path levels by Kahn's order; false (and indeg left > 0 on the
 * blocks of some cycle) when the graph has a cycle. */
static bool longest_paths(const Graph *g, int *level, int *indeg, int *queue) {
  int n = g->n;
  memset(indeg, 0, sizeof(int) * (size_t)n);
  for (int u = 0; u < n; u++)
    for (int e = g->head[u]; e >= 0; e = g->next[e])
      indeg[g->to[e]]++;
  int qh = 0, qt = 0;
  for (int i = 0; i < n; i++) {
    level[i] = 0;
    if (indeg[i] == 0)
      queue[qt++] = i;
  }
  while (qh < qt) {
    int u = queue[qh++];
    for (int e = g->head[u]; e >= 0; e = g->next[e]) {
      int v = g->to[e];
      if (level[v] < level[u] + 1)
        level[v] = level[u] + 1;
      if (--indeg[v] == 0)
        queue[qt++] = v;
    }
  }
  return qt == n;
}

/* The smallest number of steps an arrow looks back along time (axis 0), or
 * -1 when it is not causal in time: it reads ahead, changes the length of
 * the time axis, or mixes all times (dense, global pooling). */
static int arrow_lag(const IrMachine *m, const IrArrow *ar, int dir) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  if (s->shape.ngrid == 0 || d->shape.ngrid == 0 || s->shape.grid[0] != d->shape.grid[0])
    return -1;
  switch (ar->kind) {
  case ARROW_IDENTITY:
    return 0;
  case ARROW_CONV:
  case ARROW_AVGPOOL: {
    const ConvAxis *ax = &ar->ax[0];
    if (ar->adjoint || ax->stride != 1)
      return -1;
    /* taps read offsets -p0 .. (K-1)d - p0; a dual machine (dir < 0) runs
     * backwards in time and reads the future instead */
    int first = -ax->pad0, last = (ax->kernel - 1) * ax->dilation - ax->pad0;
    if (dir > 0)
      return last <= 0 ? -last : -1;
    return first >= 0 ? first : -1;
  }
  default:
    return -1;
  }
}

static void set_levels(IrMachine *m, const int *level) {
  m->nlevels = 0;
  for (int i = 0; i < m->blocks.len; i++) {
    IR_BLOCK(m, i)->level = level[i];
    if (level[i] + 1 > m->nlevels)
      m->nlevels = level[i] + 1;
  }
}

/* Which blocks run in chunks of time. The chunked stage (1) holds the blocks
 * on cycles, and those between two of them: what is downstream of a cycle
 * and upstream of one. Blocks feeding it (stage 0) are solved whole before
 * the chunks, the others (stage 2) whole after them: a recurrent core with
 * any preprocessing and readout. Without a cycle (a timeblock set on a
 * machine that has none) every block is chunked, as the paper's
 * RecurMachine is. */
static void stages_of(Arena *a, const IrMachine *m, int *stage) {
  int n = m->blocks.len;
  int *level = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *down = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *up = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *queue = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  Graph f = graph_of(a, m, NULL, 0, NULL, 0), r = graph_reversed(a, &f);
  longest_paths(&f, level, down, queue); /* left > 0: on or after a cycle */
  longest_paths(&r, level, up, queue);   /* left > 0: on or before a cycle */
  bool any = false;
  for (int i = 0; i < n; i++) {
    stage[i] = down[i] > 0 && up[i] > 0 ? 1 : 2;
    any |= stage[i] == 1;
  }
  if (!any) {
    for (int i = 0; i < n; i++)
      stage[i] = 1;
    return;
  }
  int qt = 0; /* every ancestor of the chunked stage is solved before it */
  for (int i = 0; i < n; i++)
    if (stage[i] == 1)
      queue[qt++] = i;
  for (int qh = 0; qh < qt; qh++)
    for (int e = r.head[queue[qh]]; e >= 0; e = r.next[e])
      if (stage[r.to[e]] == 2) {
        stage[r.to[e]] = 0;
        queue[qt++] = r.to[e];
      }
}

/* The chunked blocks: all on one time axis, every arrow between them causal
 * in the direction dir (+1 forward, -1 backward). Reports to d unless NULL.
 * lag[i] is set for the arrows inside the stage. */
static bool check_time(const IrMachine *m, Diag *d, const int *stage, int *lag, int *T, int dir) {
  *T = 0;
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    if (stage[i] != 1)
      continue;
    if (b->shape.ngrid == 0 || (*T && b->shape.grid[0] != *T)) {
      if (d)
        diag_error(d, b->loc, "machine '%s' is recurrent: '%s' is solved in chunks of time, so it "
                              "needs time as its first grid axis, of one length with the other "
                              "blocks of its cycles; it is %s", m->name, b->name,
                   b->shape.ngrid ? "on another time axis" : "flat");
      return false;
    }
    *T = b->shape.grid[0];
  }
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    lag[i] = 0;
    if (stage[ar->src] != 1 || stage[ar->dst] != 1)
      continue;
    lag[i] = arrow_lag(m, ar, dir);
    if (lag[i] < 0) {
      if (d)
        diag_error(d, ar->loc, "machine '%s' is recurrent, so every arrow between the blocks of its "
                               "cycles must read the present or the past along time (axis 0); "
                               "'%s' -> '%s' does not", m->name, IR_BLOCK(m, ar->src)->name,
                   IR_BLOCK(m, ar->dst)->name);
      return false;
    }
  }
  return true;
}

/* Levels of one stage, numbered from `first`; returns the stage's count. */
static int stage_levels(const Graph *g, const int *stage, int want, int first, int *out, int *level,
                        int *indeg, int *queue) {
  longest_paths(g, level, indeg, queue);
  int count = 0;
  for (int i = 0; i < g->n; i++)
    if (stage[i] == want) {
      out[i] = first + level[i];
      count = level[i] + 1 > count ? level[i] + 1 : count;
    }
  return count;
}

/* The largest chunk length whose intra-chunk dependencies have no cycle:
 * legality only shrinks as chunks grow. */
static int largest_timeblock(Arena *a, const IrMachine *m, const int *lag, const int *stage, int T,
                             int *level, int *indeg, int *queue) {
  int lo = 1, hi = T;
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    Graph g = graph_of(a, m, lag, mid, stage, 1);
    if (longest_paths(&g, level, indeg, queue))
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

static bool recurrent_levels(Arena *a, IrMachine *m, Diag *d) {
  int n = m->blocks.len;
  int *lag = arena_alloc(a, sizeof(int) * (size_t)(m->arrows.len + 1));
  int *stage = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *out = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *level = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *indeg = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *queue = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int T;
  stages_of(a, m, stage);
  m->reverse_time = false;
  if (!check_time(m, NULL, stage, lag, &T, 1)) {
    /* a machine reading only the future (a printed dual) runs backwards */
    m->reverse_time = check_time(m, NULL, stage, lag, &T, -1);
    if (!m->reverse_time && !check_time(m, d, stage, lag, &T, 1))
      return false;
  }
  Graph g1 = graph_of(a, m, lag, 1, stage, 1);
  if (!longest_paths(&g1, level, indeg, queue)) {
    report_cycle(a, m, &g1, indeg, d, LOC_NONE,
                 arena_printf(a, "machine '%s' has no finite depth (a cycle without time lag)", m->name));
    return false;
  }
  int tb = m->timeblock;
  if (tb) {
    Graph g = graph_of(a, m, lag, tb, stage, 1);
    if (!longest_paths(&g, level, indeg, queue)) {
      report_cycle(a, m, &g, indeg, d, m->timeblock_loc,
                   arena_printf(a, "timeblock %d is too large for machine '%s': inside a chunk of %d "
                                   "steps this cycle has lags below %d", tb, m->name, tb, tb));
      return false;
    }
  } else {
    tb = largest_timeblock(a, m, lag, stage, T, level, indeg, queue);
  }
  /* stage 0 whole, stage 1 in chunks, stage 2 whole */
  Graph g0 = graph_of(a, m, NULL, 0, stage, 0), gc = graph_of(a, m, lag, tb, stage, 1),
        g2 = graph_of(a, m, NULL, 0, stage, 2);
  int n0 = stage_levels(&g0, stage, 0, 0, out, level, indeg, queue);
  int nc = stage_levels(&gc, stage, 1, n0, out, level, indeg, queue);
  stage_levels(&g2, stage, 2, n0 + nc, out, level, indeg, queue);
  set_levels(m, out);
  m->time_length = T;
  m->timeblock = tb < T ? tb : T;
  m->chunk_lo = n0;
  m->chunk_hi = n0 + nc;
  return true;
}

bool filt_levels(IrMachine *m, Diag *d) {
  Arena *a = arena_new();
  int n = m->blocks.len;
  int *level = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *indeg = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  int *queue = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  Graph g = graph_of(a, m, NULL, 0, NULL, 0);
  bool ok = longest_paths(&g, level, indeg, queue);
  if (ok && !m->timeblock) {
    set_levels(m, level);
    m->time_length = m->timeblock = 0;
  } else if (!ok && !m->timeblock) {
    /* a cycle is legal only through time lags: name it if it has none */
    int *lag = arena_alloc(a, sizeof(int) * (size_t)(m->arrows.len + 1));
    for (int i = 0; i < m->arrows.len; i++) {
      int fwd = arrow_lag(m, IR_ARROW(m, i), 1), bwd = arrow_lag(m, IR_ARROW(m, i), -1);
      lag[i] = fwd > bwd ? fwd : bwd;
    }
    Graph g0 = graph_of(a, m, lag, 1, NULL, 0);
    if (!longest_paths(&g0, level, indeg, queue))
      report_cycle(a, m, &g0, indeg, d, LOC_NONE,
                   arena_printf(a, "machine '%s' has no finite depth", m->name));
    else
      ok = recurrent_levels(a, m, d);
  } else {
    ok = recurrent_levels(a, m, d);
  }
  arena_free(a);
  return ok;
}
