/* test_filt.c — the depth filtration and the dual machine on hand-made IR.
 *
 * IrMachine graphs are built directly (arena_alloc, vec_push): chains,
 * diamonds, DenseNet-like graphs, graphs declared in shuffled order, gates;
 * filt_levels must give every block the length of the longest path from the
 * sources. Cycles (length 1, 2, 3, and a cycle with blocks hanging off it)
 * must make filt_levels fail with a diagnostic naming exactly the cycle:
 *     machc: error: machine 'M' has no finite depth: a -> b -> a
 * dual_machine must keep the blocks, swap src/dst of every arrow and flip
 * w.transposed of dense ones, reverse the levels (nlevels - 1 - level),
 * replace activations by their derivatives, and swap inputs and outputs. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "machc.h"

typedef struct G {
  Arena *a;
  IrMachine *m;
  Diag d;
  char *msg;
  size_t msglen;
  FILE *out;
} G;

static int find(const IrMachine *m, const char *name) {
  for (int i = 0; i < m->blocks.len; i++)
    if (strcmp(IR_BLOCK(m, i)->name, name) == 0)
      return i;
  return -1;
}

/* blocks: space-separated names, in declaration order; arrows: "a>b"
 * pairs, space-separated ("a>a" is a self-arrow; "a|b" an identity arrow).
 * Inputs are the blocks nothing reads into, outputs those read by nothing. */
static G *build(const char *name, const char *blocks, const char *arrows) {
  G *gp = calloc(1, sizeof *gp); /* the memstream writes into gp->msg: keep it in place */
  G g = {.a = arena_new()};
  gp->out = open_memstream(&gp->msg, &gp->msglen);
  cr_assert(gp->out);
  g.out = gp->out;
  diag_init(&g.d, g.out);
  IrMachine *m = arena_alloc(g.a, sizeof *m);
  m->name = name;
  g.m = m;
  char *bs = arena_strdup(g.a, blocks);
  for (char *t = strtok(bs, " "); t; t = strtok(NULL, " ")) {
    IrBlock *b = arena_alloc(g.a, sizeof *b);
    b->name = b->cname = arena_strdup(g.a, t);
    b->loc = LOC_NONE;
    b->shape.channels = 2;
    b->size = 2;
    b->act.kind = ACT_TANH;
    b->bias = -1;
    b->level = -7; /* filt_levels must overwrite it */
    vec_push(g.a, &m->blocks, b);
  }
  char *as = arena_strdup(g.a, arrows);
  for (char *t = strtok(as, " "); t; t = strtok(NULL, " ")) {
    char *sep = strpbrk(t, ">|");
    cr_assert(sep, "bad arrow %s", t);
    bool ident = *sep == '|';
    *sep = '\0';
    IrArrow *ar = arena_alloc(g.a, sizeof *ar);
    ar->kind = ident ? ARROW_IDENTITY : ARROW_DENSE;
    ar->src = find(m, t);
    ar->dst = find(m, sep + 1);
    cr_assert(ar->src >= 0 && ar->dst >= 0, "arrow %s -> %s: unknown block", t, sep + 1);
    ar->loc = LOC_NONE;
    ar->w.param = ident ? -1 : 0;
    vec_push(g.a, &m->arrows, ar);
  }
  int nb = m->blocks.len;
  m->inputs = arena_alloc(g.a, sizeof(int) * (size_t)(nb + 1));
  m->outputs = arena_alloc(g.a, sizeof(int) * (size_t)(nb + 1));
  for (int i = 0; i < nb; i++) {
    bool in = false, out = false;
    for (int k = 0; k < m->arrows.len; k++) {
      in |= IR_ARROW(m, k)->dst == i;
      out |= IR_ARROW(m, k)->src == i;
    }
    if (!in) {
      IR_BLOCK(m, i)->has_input = true;
      m->inputs[m->ninputs++] = i;
    }
    if (!out) {
      IR_BLOCK(m, i)->is_output = true;
      m->outputs[m->noutputs++] = i;
    }
  }
  gp->a = g.a;
  gp->m = g.m;
  gp->d = g.d;
  return gp;
}

static const char *finish(G *g) {
  fflush(g->out);
  return g->msg ? g->msg : "";
}

static void drop(G *g) {
  diag_fini(&g->d);
  fclose(g->out);
  free(g->msg);
  arena_free(g->a);
  free(g);
}

static int level(const IrMachine *m, const char *name) {
  int i = find(m, name);
  cr_assert(i >= 0, "no block %s", name);
  return IR_BLOCK(m, i)->level;
}

/* "a=0 b=1 ..." */
static void expect_levels(G *g, const char *want, int nlevels) {
  cr_assert(filt_levels(g->m, &g->d), "filt_levels failed:\n%s", finish(g));
  cr_assert_eq(g->d.nerrors, 0);
  cr_assert_str_empty(finish(g), "unexpected diagnostics: %s", g->msg);
  char *w = strdup(want);
  int count = 0;
  for (char *t = strtok(w, " "); t; t = strtok(NULL, " ")) {
    char *eq = strchr(t, '=');
    *eq = '\0';
    cr_assert_eq(level(g->m, t), atoi(eq + 1), "level of %s: got %d, want %d", t, level(g->m, t),
                 atoi(eq + 1));
    count++;
  }
  free(w);
  cr_assert_eq(count, g->m->blocks.len, "the test names %d of %d blocks", count, g->m->blocks.len);
  cr_assert_eq(g->m->nlevels, nlevels, "nlevels %d, want %d", g->m->nlevels, nlevels);
  /* a filtration: every arrow goes from a lower level to a higher one */
  for (int k = 0; k < g->m->arrows.len; k++) {
    const IrArrow *ar = IR_ARROW(g->m, k);
    cr_assert_lt(IR_BLOCK(g->m, ar->src)->level, IR_BLOCK(g->m, ar->dst)->level);
  }
}

Test(filt, single_block) {
  G *g = build("M", "x", "");
  expect_levels(g, "x=0", 1);
  drop(g);
}

Test(filt, chain) {
  G *g = build("M", "a b c d e", "a>b b>c c>d d>e");
  expect_levels(g, "a=0 b=1 c=2 d=3 e=4", 5);
  drop(g);
}

Test(filt, chain_declared_backwards) {
  G *g = build("M", "e d c b a", "d>e c>d b>c a>b");
  expect_levels(g, "a=0 b=1 c=2 d=3 e=4", 5);
  drop(g);
}

Test(filt, diamond) {
  G *g = build("M", "a b c d", "a>b a>c b>d c>d");
  expect_levels(g, "a=0 b=1 c=1 d=2", 3);
  drop(g);
}

Test(filt, longest_path_wins_over_shortcut) {
  /* d is read by a directly and through b -> c: it is at level 3, not 1 */
  G *g = build("M", "a b c d", "a>d a>b b>c c>d");
  expect_levels(g, "a=0 b=1 c=2 d=3", 4);
  drop(g);
}

Test(filt, densenet_every_earlier_block) {
  G *g = build("M", "x0 x1 x2 x3 x4 x5",
              "x0>x1 x0>x2 x1>x2 x0>x3 x1>x3 x2>x3 x0>x4 x1>x4 x2>x4 x3>x4 "
              "x0>x5 x1>x5 x2>x5 x3>x5 x4>x5");
  expect_levels(g, "x0=0 x1=1 x2=2 x3=3 x4=4 x5=5", 6);
  drop(g);
}

Test(filt, shuffled_declaration_and_arrow_order) {
  G *g = build("M", "h3 u h1 out h2 v",
              "h2>h3 u>h1 h1>h2 v>h2 h3>out u>out v>h3 h1>out");
  expect_levels(g, "u=0 v=0 h1=1 h2=2 h3=3 out=4", 5);
  drop(g);
}

Test(filt, several_components_and_isolated_blocks) {
  G *g = build("M", "p q r s lone", "p>q q>r s>r");
  expect_levels(g, "p=0 q=1 r=2 s=0 lone=0", 3);
  drop(g);
}

Test(filt, identity_arrows_count_as_dependencies) {
  G *g = build("M", "a b c", "a|b b|c a>c");
  expect_levels(g, "a=0 b=1 c=2", 3);
  drop(g);
}

Test(filt, gate_is_a_dependency) {
  /* z_m = z_g * y_m: m must come after its gate g even without an arrow */
  G *g = build("M", "m x g", "x>g x>m");
  IrBlock *mb = IR_BLOCK(g->m, find(g->m, "m"));
  mb->act.kind = ACT_MUL;
  mb->act.gate = find(g->m, "g");
  expect_levels(g, "x=0 g=1 m=2", 3);
  drop(g);
}

Test(filt, levels_are_recomputed) {
  G *g = build("M", "a b", "a>b");
  expect_levels(g, "a=0 b=1", 2);
  /* calling it again, after a change, gives the new levels */
  IR_ARROW(g->m, 0)->src = 1;
  IR_ARROW(g->m, 0)->dst = 0;
  expect_levels(g, "a=1 b=0", 2);
  drop(g);
}

/* --- cycles ------------------------------------------------------------------------------------ */

/* The diagnostic names a cycle of the graph: "machc: error: machine 'M' has
 * no finite depth: " then block names joined by " -> ", first == last, each
 * step an arrow of the machine, no other repeats; returns its length. */
static int expect_cycle(G *g, const char *want_exact_one_of[]) {
  cr_assert_not(filt_levels(g->m, &g->d), "filt_levels accepted a machine with a cycle");
  cr_assert_geq(g->d.nerrors, 1);
  const char *msg = finish(g);
  const char *prefix = "machc: error: machine 'M' has no finite depth: ";
  cr_assert(strncmp(msg, prefix, strlen(prefix)) == 0, "diagnostic:\n%s", msg);
  const char *nl = strchr(msg, '\n');
  cr_assert(nl, "no newline after the diagnostic");
  char *line = strndup(msg + strlen(prefix), (size_t)(nl - msg - (long)strlen(prefix)));
  if (want_exact_one_of) {
    bool hit = false;
    for (int i = 0; want_exact_one_of[i]; i++)
      hit |= strcmp(line, want_exact_one_of[i]) == 0;
    cr_assert(hit, "cycle named as '%s'", line);
  }
  int names[512], n = 0;
  for (char *s = line;;) {
    char *arrow = strstr(s, " -> ");
    if (arrow)
      *arrow = '\0';
    int b = find(g->m, s);
    cr_assert(b >= 0, "the cycle names '%s', not a block", s);
    cr_assert_lt(n, 512);
    names[n++] = b;
    if (!arrow)
      break;
    s = arrow + 4;
  }
  cr_assert_geq(n, 2);
  cr_assert_eq(names[0], names[n - 1], "the named cycle does not close: %s", msg);
  for (int i = 0; i + 1 < n; i++) {
    bool edge = false;
    for (int k = 0; k < g->m->arrows.len; k++)
      edge |= IR_ARROW(g->m, k)->src == names[i] && IR_ARROW(g->m, k)->dst == names[i + 1];
    cr_assert(edge, "no arrow %s -> %s in the machine (%s)", IR_BLOCK(g->m, names[i])->name,
              IR_BLOCK(g->m, names[i + 1])->name, msg);
    for (int j = 0; j < i; j++)
      cr_assert_neq(names[i], names[j], "the cycle repeats a block: %s", msg);
  }
  free(line);
  return n - 1;
}

Test(filt, self_arrow_is_a_cycle) {
  G *g = build("M", "x a", "x>a a>a");
  const char *want[] = {"a -> a", NULL};
  cr_assert_eq(expect_cycle(g, want), 1);
  drop(g);
}

Test(filt, two_cycle) {
  G *g = build("M", "x a b", "x>a a>b b>a");
  const char *want[] = {"a -> b -> a", "b -> a -> b", NULL};
  cr_assert_eq(expect_cycle(g, want), 2);
  drop(g);
}

Test(filt, three_cycle) {
  G *g = build("M", "a b c", "a>b b>c c>a");
  const char *want[] = {"a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c", NULL};
  cr_assert_eq(expect_cycle(g, want), 3);
  drop(g);
}

Test(filt, cycle_with_blocks_before_and_after_it) {
  /* in -> p -> q -> r -> p, and r -> out1 -> out2, s -> out2: only p q r are named */
  G *g = build("M", "out2 s in out1 q r p", "in>p p>q q>r r>p r>out1 out1>out2 s>out2 in>out2");
  const char *want[] = {"p -> q -> r -> p", "q -> r -> p -> q", "r -> p -> q -> r", NULL};
  cr_assert_eq(expect_cycle(g, want), 3);
  drop(g);
}

Test(filt, cycle_through_identity_arrow) {
  G *g = build("M", "a b", "a|b b>a");
  cr_assert_eq(expect_cycle(g, NULL), 2);
  drop(g);
}

Test(filt, two_cycles_one_is_named) {
  G *g = build("M", "a b c d", "a>b b>a c>d d>c");
  cr_assert_eq(expect_cycle(g, NULL), 2);
  drop(g);
}

Test(filt, long_cycle) {
  /* 200 blocks in a ring */
  char blocks[4096] = "", arrows[8192] = "";
  for (int i = 0; i < 200; i++) {
    snprintf(blocks + strlen(blocks), sizeof blocks - strlen(blocks), "b%d ", i);
    snprintf(arrows + strlen(arrows), sizeof arrows - strlen(arrows), "b%d>b%d ", i, (i + 1) % 200);
  }
  G *g = build("M", blocks, arrows);
  cr_assert_eq(expect_cycle(g, NULL), 200);
  drop(g);
}

Test(filt, notes_name_each_arrow_of_the_cycle) {
  G *g = build("M", "a b", "a>b b>a");
  cr_assert_not(filt_levels(g->m, &g->d));
  const char *msg = finish(g);
  cr_assert(strstr(msg, "machc: note: 'b' reads 'a' here"), "%s", msg);
  cr_assert(strstr(msg, "machc: note: 'a' reads 'b' here"), "%s", msg);
  drop(g);
}

/* --- the dual machine ------------------------------------------------------------------------- */

Test(filt, dual_reverses_levels_and_transposes_arrows) {
  G *g = build("M", "h3 u h1 out h2 v", "h2>h3 u>h1 h1>h2 v>h2 h3>out u>out v|h3 h1>out");
  IR_BLOCK(g->m, find(g->m, "u"))->act.kind = ACT_IDENTITY;
  IR_BLOCK(g->m, find(g->m, "h1"))->act = (Act){.kind = ACT_LEAKY_RELU, .alpha = 0.2};
  IR_BLOCK(g->m, find(g->m, "h2"))->bias = 3;
  IR_ARROW(g->m, 0)->w.transposed = true; /* already transposed: flips back */
  expect_levels(g, "u=0 v=0 h1=1 h2=2 h3=3 out=4", 5);
  const IrMachine *m = g->m;
  IrMachine *d = dual_machine(g->a, m);
  cr_assert_eq(d->primal, m);
  cr_assert_eq(d->nlevels, m->nlevels);
  cr_assert_eq(d->blocks.len, m->blocks.len);
  cr_assert_eq(d->arrows.len, m->arrows.len);
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *p = IR_BLOCK(m, i), *q = IR_BLOCK(d, i);
    cr_assert_str_eq(q->name, p->name);
    cr_assert_eq(q->size, p->size);
    cr_assert_eq(q->level, m->nlevels - 1 - p->level, "dual level of %s: %d", p->name, q->level);
    cr_assert_eq(q->has_input, p->is_output, "%s", p->name);
    cr_assert_eq(q->is_output, p->has_input, "%s", p->name);
    cr_assert_eq(q->bias, -1, "the dual of %s has a bias", p->name);
    if (p->act.kind == ACT_IDENTITY) {
      cr_assert_eq(q->act.kind, ACT_IDENTITY);
    } else {
      cr_assert_eq(q->act.kind, ACT_DERIV, "%s", p->name);
      cr_assert_eq(q->act.deriv_of, p->act.kind, "%s", p->name);
      cr_assert_eq(q->act.alpha, p->act.alpha);
    }
  }
  for (int k = 0; k < m->arrows.len; k++) {
    const IrArrow *p = IR_ARROW(m, k), *q = IR_ARROW(d, k);
    cr_assert_eq(q->src, p->dst);
    cr_assert_eq(q->dst, p->src);
    cr_assert_eq(q->kind, p->kind);
    cr_assert_eq(q->w.param, p->w.param);
    if (p->kind == ARROW_DENSE)
      cr_assert_eq(q->w.transposed, !p->w.transposed, "arrow %d", k);
    else
      cr_assert_eq(q->w.transposed, p->w.transposed);
    /* the reversed levels are a filtration of the dual */
    cr_assert_lt(IR_BLOCK(d, q->src)->level, IR_BLOCK(d, q->dst)->level);
  }
  cr_assert_eq(d->ninputs, m->noutputs);
  cr_assert_eq(d->noutputs, m->ninputs);
  for (int i = 0; i < d->ninputs; i++)
    cr_assert_eq(d->inputs[i], m->outputs[i]);
  for (int i = 0; i < d->noutputs; i++)
    cr_assert_eq(d->outputs[i], m->inputs[i]);
  /* the dual of the dual has the primal's arrows */
  IrMachine *dd = dual_machine(g->a, d);
  for (int k = 0; k < m->arrows.len; k++) {
    cr_assert_eq(IR_ARROW(dd, k)->src, IR_ARROW(m, k)->src);
    cr_assert_eq(IR_ARROW(dd, k)->dst, IR_ARROW(m, k)->dst);
    cr_assert_eq(IR_ARROW(dd, k)->w.transposed, IR_ARROW(m, k)->w.transposed);
  }
  /* and the filtration of the dual itself succeeds with a valid order */
  cr_assert(filt_levels(d, &g->d), "%s", finish(g));
  for (int k = 0; k < d->arrows.len; k++)
    cr_assert_lt(IR_BLOCK(d, IR_ARROW(d, k)->src)->level, IR_BLOCK(d, IR_ARROW(d, k)->dst)->level);
  drop(g);
}

Test(filt, dual_of_densenet_is_densenet_reversed) {
  G *g = build("M", "x0 x1 x2 x3", "x0>x1 x0>x2 x1>x2 x0>x3 x1>x3 x2>x3");
  expect_levels(g, "x0=0 x1=1 x2=2 x3=3", 4);
  IrMachine *d = dual_machine(g->a, g->m);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(IR_BLOCK(d, i)->level, 3 - i);
  cr_assert(filt_levels(d, &g->d));
  for (int i = 0; i < 4; i++)
    cr_assert_eq(IR_BLOCK(d, i)->level, 3 - i, "filt_levels of the dual: x%d at %d", i,
                 IR_BLOCK(d, i)->level);
  drop(g);
}
