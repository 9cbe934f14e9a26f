/* test_compose.c — composing machines: `use` with and without labels,
 * feeding an instance's input, the sum, parallel and sequential operators,
 * and which machine of a file is compiled. Each case runs machc on a small
 * program and checks the machine it elaborates (printed with --emit=mach)
 * or the error it reports. */
#include <criterion/criterion.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(compose, .fini = e2e_cleanup, .timeout = 60);

/* Runs machc ARGS... on src written to m.mach; returns the run. */
static E2eRun machc_src(const char *src, const char *a1, const char *a2, const char *a3) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), src);
  return e2e_runl(dir, 30, e2e_machc(), a1, a2 ? a2 : "m.mach", a2 ? a3 : NULL, a2 ? "m.mach" : NULL,
                  NULL);
}

static char *printed(const char *src, const char *machine) {
  E2eRun r = machine ? machc_src(src, "--emit=mach", "-m", machine) : machc_src(src, "--emit=mach", NULL, NULL);
  e2e_check_ok(&r, "machc --emit=mach");
  char *out = strdup(r.out);
  e2e_run_free(&r);
  return out;
}

static const char feed_src[] =
    "import \"dense.mach\"\n"
    "machine after {\n"
    "    input u : 3\n"
    "    use a = dense_net([3, 4], tanh)\n"
    "    block a.x[0] : 3 = u\n"
    "    output a.x[1]\n"
    "}\n"
    "machine before {\n"
    "    input u : 3\n"
    "    block a.x[0] : 3 = u\n"
    "    use a = dense_net([3, 4], tanh)\n"
    "    output a.x[1]\n"
    "}\n";

Test(compose, feeding_an_instance_input_keeps_its_activation) {
  char *after = printed(feed_src, "after"), *before = printed(feed_src, "before");
  cr_assert(strstr(after, "block  a.x[0] : 3 = tanh(u)"), "%s", after);
  cr_assert(strstr(before, "block  a.x[0] : 3 = tanh(u)"), "%s", before);
  cr_assert(!strstr(after, "input a.x[0]"), "a.x[0] must no longer be an input: %s", after);
  free(after);
  free(before);
}

Test(compose, feeding_with_a_second_activation_is_an_error) {
  E2eRun r = machc_src("import \"dense.mach\"\nmachine m {\n    input u : 3\n"
                       "    use a = dense_net([3, 4], tanh)\n    block a.x[0] : 3 = relu(u)\n"
                       "    output a.x[1]\n}\n", "explain", NULL, NULL);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "m.mach:5:11: error: 'a.x[0]' already applies tanh to its input"), "%s", r.err);
  e2e_run_free(&r);
}

Test(compose, declaring_an_instance_block_twice_is_an_error) {
  E2eRun r = machc_src("import \"dense.mach\"\nmachine m {\n    input u : 3\n"
                       "    use a = dense_net([3, 4], tanh)\n    block a.x[1] : 4 = dense(u)\n"
                       "    output a.x[1]\n}\n", "explain", NULL, NULL);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "block 'a.x[1]' is declared twice"), "%s", r.err);
  e2e_run_free(&r);
}

static const char ops_src[] =
    "machine enc(n = 4) {\n    input u : 2\n    output h : n = tanh(dense(u) + bias)\n}\n"
    "machine dec(n = 4) {\n    input k : n\n    output y : 1 = dense(k)\n}\n"
    "machine half {\n    input h : 4\n    output y : 1 = dense(h)\n}\n"
    "machine seq = enc(4) >> dec(4)\n"
    "machine sum = enc(4) + half\n"
    "machine par = enc(4) | dec(3)\n"
    "machine clash = enc(4) | half\n";

Test(compose, sequential_joins_outputs_to_inputs) {
  char *p = printed(ops_src, "seq");
  cr_assert(strstr(p, "block  k : 4 = h"), "dec's input reads enc's output through a skip: %s", p);
  cr_assert(strstr(p, "output y : 1"), "%s", p);
  cr_assert(!strstr(p, "output h"), "enc's output becomes internal: %s", p);
  free(p);
}

Test(compose, sum_merges_blocks_by_name) {
  char *p = printed(ops_src, "sum");
  cr_assert(strstr(p, "h : 4 = tanh(dense(u, weight = W_h_u) + bias)"), "%s", p);
  cr_assert(strstr(p, "output y : 1 = dense(h, weight = W_y_h)"), "%s", p);
  cr_assert(!strstr(p, "input h"), "h is computed by enc: %s", p);
  free(p);
}

Test(compose, parallel_needs_disjoint_blocks) {
  char *p = printed(ops_src, "par");
  cr_assert(strstr(p, "input u : 2") && strstr(p, "input k : 3"), "%s", p);
  free(p);
  E2eRun r = machc_src(ops_src, "explain", "-m", "clash");
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "block 'h' is in both machines of a parallel composition"), "%s", r.err);
  e2e_run_free(&r);
}

Test(compose, a_label_may_be_named_like_its_machine) {
  char *p = printed("import \"dense.mach\"\nmachine m {\n    use dense_net = dense_net([2, 3], tanh)\n"
                    "    output y : 1 = dense(dense_net.x[1])\n}\n", NULL);
  cr_assert(strstr(p, "dense_net.x[1]"), "%s", p);
  free(p);
}

Test(compose, the_last_machine_needing_no_argument_is_compiled) {
  char *p = printed("machine a {\n    input u : 1\n    output y : 1 = dense(u)\n}\n"
                    "machine b(n = 3) {\n    input u : n\n    output y : 1 = dense(u)\n}\n"
                    "machine c(n) {\n    input u : n\n    output y : 1 = dense(u)\n}\n", NULL);
  cr_assert(strstr(p, "machine b {") && strstr(p, "input u : 3"), "%s", p);
  free(p);
}

/* A linear part named once and added to itself holds the same terms twice:
 * each is an arrow with its own weight, options and all. */
Test(compose, a_linear_part_added_to_itself_is_two_arrows) {
  char *out = printed("machine m {\n"
                      "    input x : 2 @ [8]\n"
                      "    let t = conv(x, k = 3, pad = same) + dense(x)\n"
                      "    output y : 1 @ [8] = t + t\n"
                      "}\n", NULL);
  cr_assert(strstr(out, "output y : 1 @ [8] = conv(x, k = [3], pad = [1, 1], weight = W_y_x) + "
                        "dense(x, weight = W_y_x_2) + conv(x, k = [3], pad = [1, 1], weight = W_y_x_3) + "
                        "dense(x, weight = W_y_x_4)\n"), "%s", out);
  free(out);
}
