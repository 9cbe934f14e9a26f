/* test_limits.c — the documented limits of the compiler hold, and compile
 * time stays linear up to them (docs/language.md §14).
 *
 * Growth is checked without timing where it can be (the probes of the name
 * tables are counted), and otherwise with bounds several times what the
 * linear implementation takes, so that a quadratic one (minutes at 100,000
 * blocks) fails and a loaded machine does not. Non-regular files (FIFOs,
 * devices, directories) must be refused at once, never waited on. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "e2e_util.h"
#include "machc.h"

TestSuite(limits, .fini = e2e_cleanup, .timeout = 120);

/* Lookups of n keys after n insertions: the total number of key comparisons. */
static long probes_for(int n) {
  Arena *a = arena_new();
  StrMap m = {0};
  char **keys = malloc(sizeof *keys * (size_t)n);
  for (int i = 0; i < n; i++) {
    keys[i] = arena_printf(a, "x[%d]", i);
    strmap_put(a, &m, keys[i], keys[i]);
  }
  cr_assert_eq(m.len, n);
  m.probes = 0;
  for (int i = 0; i < n; i++)
    cr_assert_eq(strmap_get(&m, arena_printf(a, "x[%d]", i)), keys[i]);
  cr_assert_null(strmap_get(&m, "absent"));
  long probes = m.probes;
  free(keys);
  arena_free(a);
  return probes;
}

/* 10x the keys must cost about 10x the comparisons (a list would cost 100x). */
Test(limits, name_table_lookups_stay_constant_per_name) {
  long small = probes_for(100000), big = probes_for(1000000);
  cr_assert_lt(small, 3L * 100000, "%ld probes for 100,000 lookups", small);
  cr_assert_lt(big, 3L * 1000000, "%ld probes for 1,000,000 lookups", big);
  cr_assert_lt((double)big / (double)small, 15.0, "10x the names cost %.1fx the probes",
               (double)big / (double)small);
}

Test(limits, name_table_replaces_and_keeps_every_key) {
  Arena *a = arena_new();
  StrMap m = {0};
  int v1 = 1, v2 = 2;
  strmap_put(a, &m, "w", &v1);
  strmap_put(a, &m, "w", &v2);
  cr_assert_eq(m.len, 1);
  cr_assert_eq(strmap_get(&m, "w"), &v2);
  cr_assert_null(strmap_get(NULL, "w"));
  arena_free(a);
}

/* machc explain on generated source: status, and seconds taken. */
static E2eRun explain(const char *name, const char *text, double timeout) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, name), text);
  E2eRun r = e2e_runl(dir, timeout, e2e_machc(), "explain", name, NULL);
  cr_assert(!r.timed_out, "machc explain %s: no answer in %.0f s", name, timeout);
  cr_assert_eq(r.sig, 0, "machc explain %s: signal %d", name, r.sig);
  return r;
}

/* The documented limit, 100,000 blocks, written out one line each (so the
 * parser, the variable and machine tables and the filtration all see them). */
Test(limits, hundred_thousand_blocks_compile_in_seconds) {
  StrBuf sb = {0};
  sb_puts(&sb, "machine big {\n    input x0 : 2\n");
  for (int i = 1; i < 99999; i++)
    sb_printf(&sb, "    block x%d : 2 = x%d\n", i, i - 1);
  sb_puts(&sb, "    output y : 1 = dense(x99998)\n}\n");
  E2eRun r = explain("big.mach", sb.data, 60);
  e2e_check_ok(&r, "machc explain on 100,000 blocks");
  cr_assert(strstr(r.out, "100000 blocks, 99999 arrows"), "%.300s", r.out);
  /* about 0.6 s of CPU on the development machine; minutes when name lookups were linear */
  cr_assert_lt(r.seconds, 20.0, "100,000 blocks took %.1f s", r.seconds);
  e2e_run_free(&r);
  sb_free(&sb);
}

/* The limit written as a loop, each block with an activation and a bias:
 * the values it makes (about a million) fit the memory limit of evaluation,
 * so the block limit is the one that holds. */
Test(limits, loop_of_limit_blocks_fits_the_value_memory) {
  E2eRun r = explain("loop.mach",
                     "machine m {\n    input x[0] : 2\n"
                     "    for i in 1 .. 99999 { block x[i] : 2 = tanh(x[i - 1] + bias) }\n"
                     "    output y : 1 = dense(x[99998])\n}\n", 60);
  e2e_check_ok(&r, "machc explain on a loop of 100,000 blocks");
  cr_assert(strstr(r.out, "100000 blocks, 99999 arrows"), "%.300s", r.out);
  e2e_run_free(&r);
}

/* A list written out with one element over the limit of 1,000,000. */
Test(limits, list_literal_over_the_limit_is_an_error) {
  StrBuf sb = {0};
  sb_puts(&sb, "machine m {\n    input x : 2\n    let a = [0");
  for (int i = 0; i < 1000000; i++)
    sb_puts(&sb, ",1");
  sb_puts(&sb, "]\n    output y : 1 = dense(x)\n}\n");
  E2eRun r = explain("list.mach", sb.data, 60);
  cr_assert_eq(r.status, 1);
  cr_assert(strncmp(r.err, "list.mach:3:13: error: list has more than 1000000 elements\n",
                    strlen("list.mach:3:13: error: list has more than 1000000 elements\n")) == 0,
            "%.300s", r.err);
  e2e_run_free(&r);
  sb_free(&sb);
}

/* One block over the limit is an error at the block, not a hang. */
Test(limits, block_limit_is_an_error_at_the_block) {
  E2eRun r = explain("over.mach",
                     "machine m {\n    input x[0] : 1\n"
                     "    for i in 1 .. 100001 { block x[i] : 1 = x[i - 1] }\n"
                     "    output y : 1 = x[100000]\n}\n", 60);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "over.mach:3:28: error: a machine may have at most 100000 blocks"),
            "%.500s", r.err);
  e2e_run_free(&r);
}

/* 100,000 lets in one scope and 20,000 machines in one file. */
Test(limits, many_variables_and_machines_stay_fast) {
  StrBuf sb = {0};
  for (int i = 0; i < 20000; i++)
    sb_printf(&sb, "machine f%d(n) { input x : n\n output y : 1 = dense(x) }\n", i);
  sb_puts(&sb, "machine m {\n    input x : 2\n");
  for (int i = 0; i < 100000; i++)
    sb_printf(&sb, "    let v%d = %d\n", i, i);
  sb_puts(&sb, "    use f = f19999(v99999 - 99997)\n    output y : v1 = dense(x, f.y)\n}\n");
  E2eRun r = explain("vars.mach", sb.data, 60);
  e2e_check_ok(&r, "machc explain on 100,000 lets");
  cr_assert_lt(r.seconds, 20.0, "took %.1f s", r.seconds);
  e2e_run_free(&r);
  sb_free(&sb);
}

/* A 1 MB identifier is refused at once with one short message. */
Test(limits, megabyte_identifier_is_refused_quickly) {
  size_t n = 1 << 20;
  char *name = malloc(n + 1);
  memset(name, 'a', n);
  name[n] = '\0';
  char *src = e2e_fmt("machine m {\n    input %s : 2\n    output y : 1 = dense(x)\n}\n", name);
  E2eRun r = explain("ident.mach", src, 30);
  cr_assert_eq(r.status, 1);
  cr_assert(strncmp(r.err, "ident.mach:2:11: error: identifier of 1048576 characters; the limit is 256\n",
                    strlen("ident.mach:2:11: error: identifier of 1048576 characters; the limit is 256\n")) == 0,
            "%.300s", r.err);
  cr_assert_lt(strlen(r.err), 4096, "%zu bytes of diagnostics", strlen(r.err));
  cr_assert_lt(r.seconds, 2.0, "took %.1f s", r.seconds);
  e2e_run_free(&r);
  free(name);
}

/* Exactly the limit is accepted. */
Test(limits, identifier_of_256_characters_is_accepted) {
  char name[257];
  memset(name, 'b', 256);
  name[256] = '\0';
  E2eRun r = explain("ident256.mach",
                     e2e_fmt("machine m {\n    input %s : 2\n    output y : 1 = dense(%s)\n}\n", name, name),
                     30);
  e2e_check_ok(&r, "machc explain with a 256-character name");
  e2e_run_free(&r);
}

/* FIFOs (with no writer: opening one for reading would block), devices and
 * directories, as the main file and as imports: refused at once. */
Test(limits, non_regular_files_are_refused_at_once) {
  const char *dir = e2e_tmpdir();
  char *fifo = e2e_path(dir, "pipe.mach");
  cr_assert_eq(mkfifo(fifo, 0600), 0);
  const char *body = "machine m {\n    input x : 2\n    output y : 1 = dense(x)\n}\n";
  e2e_write_text(e2e_path(dir, "imp_fifo.mach"), e2e_fmt("import \"pipe.mach\"\n%s", body));
  e2e_write_text(e2e_path(dir, "imp_dev.mach"), e2e_fmt("import \"/dev/zero\"\n%s", body));
  e2e_write_text(e2e_path(dir, "imp_dir.mach"), e2e_fmt("import \"/tmp\"\n%s", body));
  static const struct {
    const char *file, *want;
  } cases[] = {
      {"pipe.mach", "machc: error: cannot read pipe.mach: not a regular file (a directory, FIFO or device)\n"},
      {"/dev/zero", "machc: error: cannot read /dev/zero: not a regular file (a directory, FIFO or device)\n"},
      {"imp_fifo.mach", "imp_fifo.mach:1:1: error: cannot read ./pipe.mach: not a regular file"},
      {"imp_dev.mach", "imp_dev.mach:1:1: error: cannot read /dev/zero: not a regular file"},
      {"imp_dir.mach", "imp_dir.mach:1:1: error: cannot read /tmp: not a regular file"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    E2eRun r = e2e_runl(dir, 10, e2e_machc(), "explain", cases[i].file, NULL);
    cr_assert(!r.timed_out, "machc explain %s waited on it", cases[i].file);
    cr_assert_eq(r.status, 1, "%s: status %d\n%s", cases[i].file, r.status, r.err);
    cr_assert(strncmp(r.err, cases[i].want, strlen(cases[i].want)) == 0, "%s:\n%s\nwant:\n%s",
              cases[i].file, r.err, cases[i].want);
    cr_assert_lt(r.seconds, 2.0);
    e2e_run_free(&r);
  }
}

/* Every builtin, on every kind of argument at the edges: a value or an error
 * with a location, never a silent NULL (status 1 with no message) or a crash. */
Test(limits, builtins_are_total) {
  static const char *const args[] = {
      "-9223372036854775807 - 1", "9223372036854775807", "0", "-1", "2.5", "-0.0", "[]", "[1]",
      "[-9223372036854775807 - 1, 9223372036854775807]", "[9223372036854775807, 1]", "[1.5e308, 1.5e308]",
      "\"s\"", "true", "[[1]]", "x", "tanh", "glorot", "m2", "[\"a\", 1]", "9007199254740993"};
  static const char *const fns[] = {"abs", "min", "max", "len", "sum", "uniform", "normal", "transpose",
                                    "mul"};
  const char *dir = e2e_tmpdir();
  int n = 0;
  for (size_t f = 0; f < sizeof fns / sizeof *fns; f++)
    for (size_t i = 0; i < sizeof args / sizeof *args; i++)
      for (int two = 0; two < 2; two++) {
        char *call = two ? e2e_fmt("%s(%s, %s)", fns[f], args[i], args[i]) : e2e_fmt("%s(%s)", fns[f], args[i]);
        e2e_write_text(e2e_path(dir, "b.mach"),
                       e2e_fmt("machine m2 { input u : 1\n output v : 1 = u }\n"
                               "machine m {\n    input x : 2\n    let v = %s\n    output y : 1 = dense(x)\n}\n",
                               call));
        E2eRun r = e2e_runl(dir, 10, e2e_machc(), "explain", "-m", "m", "b.mach", NULL);
        cr_assert_eq(r.sig, 0, "%s: signal %d", call, r.sig);
        cr_assert(r.status == 0 || r.status == 1, "%s: status %d", call, r.status);
        if (r.status == 1)
          cr_assert(strncmp(r.err, "b.mach:5:", 9) == 0 && strstr(r.err, ": error: "),
                    "%s: an error without its location:\n%s", call, r.err);
        e2e_run_free(&r);
        n++;
      }
  cr_assert_eq(n, 9 * 20 * 2);
}

/* 32,768 arrows from x to y, each with its own weight W_y_x, W_y_x_2, ...:
 * naming each one must not scan the suffixes taken before it (quadratic:
 * half a billion lookups; linear: well under a second). */
Test(limits, many_arrows_between_two_blocks_are_named_in_linear_time) {
  StrBuf sb = {0};
  sb_puts(&sb, "machine m {\n    input x : 2\n    let t0 = dense(x)\n");
  for (int i = 1; i <= 15; i++)
    sb_printf(&sb, "    let t%d = t%d + t%d\n", i, i - 1, i - 1);
  sb_puts(&sb, "    output y : 1 = t15\n}\n");
  E2eRun r = explain("arrows.mach", sb.data, 120);
  e2e_check_ok(&r, "machc explain on 32,768 arrows");
  cr_assert(strstr(r.out, "W_y_x_32768"), "no parameter W_y_x_32768 in:\n%.2000s", r.out);
  cr_assert_lt(r.cpu_seconds, 10.0, "took %.1f s of CPU", r.cpu_seconds);
  e2e_run_free(&r);
  sb_free(&sb);
}
