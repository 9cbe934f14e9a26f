/* test_growth.c — every pass of the compiler grows linearly with the size of
 * the machine, up to the documented limit of 100,000 blocks (language.md
 * §14): each output (-S, --emit=dot with and without --dual, --emit=mach,
 * --emit=dual, explain) on machines of n and 10n blocks, for the shapes
 * that make a pass quadratic when it scans the whole machine per block or
 * per level: deep (a chain, one level per block), wide (one level of n
 * blocks, n arrows into one block, each with its own weight) and recurrent (a chain
 * closed through a time lag, solved in chunks).
 *
 * The measure is the CPU time of the command (user + system), which other
 * load on the machine does not inflate as it does wall time. A linear pass
 * takes about 10x at 10x the blocks, a quadratic one about 100x (the depth
 * diagram's levels x blocks loop took 20 s at 100,000 levels and 0.2 s at
 * 10,000); the bound is 30x. Name lookups are counted exactly in
 * test_limits.c; C names of clashing identifiers here, in the last test. */
#include <criterion/criterion.h>
#include <string.h>

#include "e2e_util.h"
#include "machc.h"

TestSuite(growth, .fini = e2e_cleanup, .timeout = 600);

typedef enum Shape3 { DEEP, WIDE, RECURRENT } Shape3;

/* A machine of n blocks of the given shape. */
static char *machine_of(Shape3 s, int n) {
  StrBuf sb = {0};
  switch (s) {
  case DEEP: /* one line each, as test_limits.c's 100,000 blocks */
    sb_puts(&sb, "machine deep {\n    input x0 : 2\n");
    for (int i = 1; i < n - 1; i++)
      sb_printf(&sb, "    block x%d : 2 = x%d\n", i, i - 1);
    sb_printf(&sb, "    output y : 1 = dense(x%d)\n}\n", n - 2);
    break;
  case WIDE: /* one line each (test_limits.c writes the limit as a loop) */
    sb_puts(&sb, "machine wide {\n    input x : 2\n");
    for (int i = 0; i < n - 2; i++)
      sb_printf(&sb, "    block h[%d] : 2 = x\n", i);
    sb_printf(&sb, "    output y : 1 = dense(h[0 .. %d])\n}\n", n - 2);
    break;
  case RECURRENT:
    sb_printf(&sb, "machine rec {\n    input s : 1 @ [4]\n"
                   "    block h[0] : 1 @ [4] = s + conv(h[%d], lags = 1 ..= 1)\n", n - 3);
    for (int i = 1; i < n - 2; i++)
      sb_printf(&sb, "    block h[%d] : 1 @ [4] = h[%d]\n", i, i - 1);
    sb_printf(&sb, "    output y : 1 @ [4] = h[%d]\n}\n", n - 3);
    break;
  }
  char *text = e2e_fmt("%s", sb.data);
  sb_free(&sb);
  return text;
}

static const char *const modes[][3] = {
    {"-S", "-o", "out.c"}, {"--emit=dot"}, {"--emit=dot", "--dual"}, {"--emit=mach"}, {"--emit=dual"}, {"explain"},
};
enum { NMODES = sizeof modes / sizeof *modes };

/* CPU seconds of each mode on a machine of n blocks; checks it succeeds. */
static void cpu_of(Shape3 s, int n, double *cpu) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "g.mach"), machine_of(s, n));
  for (int k = 0; k < NMODES; k++) {
    const char *argv[6] = {e2e_machc()};
    int c = 1;
    for (int j = 0; j < 3 && modes[k][j]; j++)
      argv[c++] = modes[k][j];
    argv[c++] = "g.mach";
    E2eRun r = e2e_run(dir, 120, argv);
    cr_assert(!r.timed_out, "machc %s on %d blocks: no answer in 120 s", modes[k][0], n);
    e2e_check_ok(&r, e2e_fmt("machc %s %s on %d blocks", modes[k][0], modes[k][1] ? modes[k][1] : "", n));
    if (k == NMODES - 1)
      cr_assert(strstr(r.out, e2e_fmt("  %d blocks, ", n)), "%.300s", r.out);
    cpu[k] = r.cpu_seconds;
    e2e_run_free(&r);
  }
}

static void check_growth(Shape3 s, const char *what) {
  double small[NMODES], big[NMODES];
  cpu_of(s, 10000, small);
  cpu_of(s, 100000, big);
  for (int k = 0; k < NMODES; k++) {
    /* 0.02 s: the resolution of the measure, so that a pass too quick to
     * time at 10,000 blocks does not fail on noise */
    double ratio = big[k] / (small[k] > 0.02 ? small[k] : 0.02);
    cr_log_info("%s, machc %s %s: %.3f s at 10,000 blocks, %.3f s at 100,000 (%.1fx)", what,
                modes[k][0], modes[k][1] && modes[k][1][0] == '-' && modes[k][1][1] == '-' ? modes[k][1] : "",
                small[k], big[k], ratio);
    cr_expect_lt(ratio, 30.0, "%s, machc %s %s: %.3f s of CPU at 10,000 blocks, %.3f s at 100,000: %.0fx",
                 what, modes[k][0], modes[k][1] ? modes[k][1] : "", small[k], big[k], ratio);
  }
}

Test(growth, deep_machine_every_output) { check_growth(DEEP, "a chain (100,000 levels)"); }
Test(growth, wide_machine_every_output) { check_growth(WIDE, "one wide level (100,000 arrows into one block)"); }
Test(growth, recurrent_machine_every_output) { check_growth(RECURRENT, "a recurrent chain"); }

/* C names: n source names that map to one C identifier ("x", "x_", "x__",
 * ... all give "x") take n lookups each for their suffix, not one per name
 * already handed out. */
static long cname_probes(int bases, int variants) {
  Arena *a = arena_new();
  StrMap used = {0};
  char name[300];
  for (int b = 0; b < bases; b++)
    for (int v = 0; v < variants; v++) {
      int len = snprintf(name, sizeof name, "b%d", b);
      memset(name + len, '_', (size_t)v);
      name[len + v] = '\0';
      const char *c = ir_cname(a, &used, "", name);
      cr_assert(strncmp(c, name, (size_t)len) == 0, "%s -> %s", name, c);
    }
  cr_assert_eq(used.len, bases * variants);
  long probes = used.probes;
  arena_free(a);
  return probes;
}

Test(growth, clashing_c_names_stay_linear) {
  Arena *a = arena_new();
  StrMap used = {0};
  cr_assert_str_eq(ir_cname(a, &used, "", "x"), "x");
  cr_assert_str_eq(ir_cname(a, &used, "", "x_"), "x_2");
  cr_assert_str_eq(ir_cname(a, &used, "", "x_2"), "x_2_2"); /* taken by the clash above */
  cr_assert_str_eq(ir_cname(a, &used, "", "x__"), "x_3");
  cr_assert_str_eq(ir_cname(a, &used, "", "x[3]"), "x_3_2");
  cr_assert_str_eq(ir_cname(a, &used, "", "m.x[4]"), "m_x_4");
  arena_free(a);
  long small = cname_probes(100, 25), big = cname_probes(100, 250);
  /* 25,000 names in 100 groups of 250: a scan of the suffixes would take 3 million */
  cr_assert_lt(big, 10L * 25000, "%ld probes for 25,000 names", big);
  cr_assert_lt((double)big / (double)small, 15.0, "10x the names cost %.1fx the probes",
               (double)big / (double)small);
}
