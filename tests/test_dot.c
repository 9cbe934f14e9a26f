/* test_dot.c — the depth diagram, `machc --emit=dot [--dual]`.
 *
 * Levels are ranks (one rank=same subgraph per level holding exactly the
 * blocks of that level), inputs and outputs hang off labels, the chunked
 * levels of a recurrent machine sit in a cluster, the arrows closing cycles
 * through time lags are dashed with their lags, and --dual draws the dual
 * machine with its levels reversed. The arrow labels themselves are checked
 * against the arrow renderer in test_arrow_text.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(dot, .fini = e2e_cleanup);

static char *dot_of(const char *rel, const char *extra) {
  E2eRun r = e2e_runl(NULL, 30, e2e_machc(), "--emit=dot", e2e_path(e2e_root(), rel), extra, NULL);
  e2e_check_ok(&r, "machc --emit=dot");
  char *out = r.out;
  r.out = NULL;
  e2e_run_free(&r);
  return out;
}

/* The text of the rank=same subgraph named name. */
static char *rank_of(const char *dot, const char *name) {
  const char *s = strstr(dot, e2e_fmt("subgraph \"%s\" { rank=same;\n", name));
  cr_assert(s, "no rank '%s' in\n%s", name, dot);
  const char *e = strstr(s, "\n  }\n");
  cr_assert(e);
  return strndup(s, (size_t)(e - s));
}

Test(dot, levels_are_ranks_with_inputs_and_outputs) {
  char *d = dot_of("examples/poly.mach", NULL);
  const char *names[] = {"m.x[0]", "m.x[1]", "m.x[2]", "m.x[3]", "y"};
  for (int lv = 0; lv < 5; lv++) {
    char *r = rank_of(d, e2e_fmt("level%d", lv));
    for (int k = 0; k < 5; k++)
      cr_assert_eq(strstr(r, e2e_fmt("\"%s\" [label=", names[k])) != NULL, k == lv, "level %d:\n%s", lv, r);
    cr_assert(strstr(r, e2e_fmt("level %d\"", lv)), "%s", r);
    free(r);
  }
  cr_assert(strstr(d, "\"in:m.x[0]\" [shape=plaintext, style=\"\", label=\"input\"];"), "%s", d);
  cr_assert(strstr(d, "\"in:m.x[0]\" -> \"m.x[0]\" [style=bold];"), "%s", d);
  cr_assert(strstr(d, "\"y\" -> \"out:y\" [style=bold];"), "%s", d);
  cr_assert(strstr(d, "\"y\" [label=\"y\\n1\\nidentity\\n+ bias b_y\\nlevel 4\""), "%s", d);
  cr_assert(strstr(d, "\"m.x[1]\" -> \"m.x[3]\" [label=\"dense\\nweight = m.W[2 .. 6, 10 .. 14]\"];"), "%s", d);
  cr_assert(strstr(d, "every arrow reads a lower level"), "%s", d);
  cr_assert_null(strstr(d, "dashed"), "%s", d);
  free(d);
}

Test(dot, recurrent_machine_shows_chunks_and_lags) {
  char *d = dot_of("tests/machines/every_arrow.mach", NULL);
  const char *c = strstr(d, "subgraph \"cluster_chunks\"");
  cr_assert(c, "%s", d);
  cr_assert(strstr(c, "label=\"12 time steps in 6 chunks of 2: (chunk, level) takes 6 x 1 = 6 steps\""), "%s", d);
  /* the chunked level (2, block r) is inside the cluster, level 1 is not */
  cr_assert(strstr(c, "subgraph \"level2\"") && !strstr(c, "subgraph \"level1\""), "%s", d);
  cr_assert(strstr(d, "\"r\" -> \"r\" [label=\"conv\\nlags = 2 ..= 3\\nweight = W_r_r\", style=dashed"), "%s", d);
  cr_assert(strstr(d, "dashed arrows read earlier time steps,\\nclosing cycles through positive time lags"),
            "%s", d);
  /* an arrow going up a level is solid, even in time */
  cr_assert(strstr(d, "\"t\" -> \"r\" [label=\"conv\\nlags = 0 ..= 1\\nweight = W_r_t\"];"), "%s", d);
  free(d);
}

Test(dot, dual_is_drawn_with_levels_reversed) {
  char *d = dot_of("examples/poly.mach", "--dual");
  cr_assert(strstr(d, "subgraph cluster_machine {") && strstr(d, "subgraph cluster_dual {"), "%s", d);
  cr_assert(strstr(d, "label=\"dual machine poly_dual: 5 blocks, depth 4 (5 levels): the backward pass of poly"),
            "%s", d);
  /* the dual's level 0 is the primal's output, its last level the input */
  char *r0 = rank_of(d, "d:level0"), *r4 = rank_of(d, "d:level4");
  cr_assert(strstr(r0, "\"d:y\" [label=\"y\\n1\\nidentity\\nlevel 0 (primal 4)\""), "%s", r0);
  cr_assert(strstr(r4, "\"d:m.x[0]\" [label=\"m.x[0]\\n2\\nsigmoid'\\nlevel 4 (primal 0)\""), "%s", r4);
  cr_assert(strstr(d, "\"d:m.x[3]\" -> \"d:m.x[1]\" [label=\"dense\\nweight = m.W[2 .. 6, 10 .. 14]^T\"];"), "%s", d);
  cr_assert(strstr(d, "\"d:in:y\" [shape=plaintext, style=\"\", label=\"cotangent\\ndLoss/dz\"];"), "%s", d);
  cr_assert(strstr(d, "\"p:m.x[0]\" -> \"p:m.x[1]\""), "%s", d);
  free(r0);
  free(r4);
  free(d);
}

Test(dot, dual_flag_needs_emit_dot) {
  E2eRun r = e2e_runl(NULL, 30, e2e_machc(), "--dual", e2e_path(e2e_root(), "examples/poly.mach"), NULL);
  cr_assert_eq(r.status, 2, "%s", r.err);
  cr_assert(strstr(r.err, "machc: --dual goes with --emit=dot"), "%s", r.err);
  e2e_run_free(&r);
}
