/* test_golden.c — golden outputs of machc, compared byte for byte.
 *
 * tests/golden/NAME.mach: `machc -S --dtype f64 NAME.mach -o NAME.c` must
 * write exactly NAME.c.expected and NAME.h.expected (and `--emit=dual`
 * NAME.dual.expected where the test asks for it); a few goldens take other
 * flags (f32, --standalone --train), listed with their tests below.
 * tests/errors/NAME.mach (NAME says the rule checked): `machc NAME.mach`
 * must exit with status 1, print nothing on stdout, write no output file,
 * and print exactly NAME.err.expected on stderr (file:line:col: error:
 * message, the source line, a caret). machc runs in the directory of the
 * file with a relative path, so the messages are stable.
 * Generated inputs (10^6 nested brackets, 10^6 unary minus, random bytes and
 * token soup) must fail with status 1, never a signal, and quickly.
 * Usage errors exit with status 2.
 *
 * To regenerate the expected files after an intended change, run the suite
 * with MACHC_UPDATE_GOLDEN=1 and review the diff. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"
#include "machc.h"

TestSuite(golden, .fini = e2e_cleanup, .timeout = 60);

static bool updating(void) {
  const char *u = getenv("MACHC_UPDATE_GOLDEN");
  return u && *u && strcmp(u, "0") != 0;
}

/* The first line where got and want differ, for the failure message. */
static char *first_diff(const char *got, const char *want) {
  int line = 1;
  const char *g = got, *w = want;
  while (*g && *g == *w) {
    if (*g == '\n')
      line++;
    g++, w++;
  }
  while (g > got && g[-1] != '\n')
    g--;
  while (w > want && w[-1] != '\n')
    w--;
  int gl = (int)strcspn(g, "\n"), wl = (int)strcspn(w, "\n");
  return e2e_fmt("first difference at line %d:\n  got:  %.*s\n  want: %.*s", line, gl, g, wl, w);
}

/* Compares got with the file `expected`; with MACHC_UPDATE_GOLDEN, rewrites it. */
static void expect_file(const char *got, size_t got_len, const char *expected) {
  if (updating()) {
    e2e_write_file(expected, got, got_len);
    return;
  }
  size_t wl;
  char *want = e2e_read_file(expected, &wl);
  cr_assert(want, "cannot read %s (run with MACHC_UPDATE_GOLDEN=1 to create it)", expected);
  bool same = wl == got_len && memcmp(got, want, wl) == 0;
  cr_assert(same, "output differs from %s (%zu bytes, want %zu): %s", expected, got_len, wl,
            first_diff(got, want));
  free(want);
}

static const char *golden_dir(void) { return e2e_path(e2e_root(), "tests/golden"); }
static const char *errors_dir(void) { return e2e_path(e2e_root(), "tests/errors"); }

/* --- generated C ------------------------------------------------------------------------------ */

/* machc -S [flags] MACH -o NAME.c must write NAME.c.expected and NAME.h.expected;
 * with dual, `machc --emit=dual MACH` must print NAME.dual.expected. The
 * kernels' tiles follow the target's vector width, so the target is fixed
 * (--march=x86-64-v4) for the goldens to hold on any host. */
static void check_c_golden_with(const char *name, const char *mach, const char *const *flags,
                                bool dual) {
  const char *tmp = e2e_tmpdir();
  char *cpath = e2e_fmt("%s/%s.c", tmp, name), *hpath = e2e_fmt("%s/%s.h", tmp, name);
  const char *argv[16] = {e2e_machc(), "-S", "--march=x86-64-v4"};
  int n = 3;
  for (; *flags; flags++)
    argv[n++] = *flags;
  argv[n++] = mach;
  argv[n++] = "-o";
  argv[n++] = cpath;
  argv[n] = NULL;
  E2eRun r = e2e_run(golden_dir(), 30, argv);
  e2e_check_ok(&r, e2e_fmt("machc -S %s (%s)", mach, name));
  cr_assert_str_empty(r.out, "machc -S printed on stdout: %s", r.out);
  cr_assert_str_empty(r.err, "machc -S printed on stderr: %s", r.err);
  e2e_run_free(&r);
  size_t cl, hl;
  char *c = e2e_read_file(cpath, &cl), *h = e2e_read_file(hpath, &hl);
  cr_assert(c && h, "machc -S did not write %s and %s", cpath, hpath);
  /* the C file includes its header by the name it was given */
  cr_assert(strstr(c, e2e_fmt("#include \"%s.h\"", name)), "%s.c does not include %s.h", name,
            name);
  expect_file(c, cl, e2e_fmt("%s/%s.c.expected", golden_dir(), name));
  expect_file(h, hl, e2e_fmt("%s/%s.h.expected", golden_dir(), name));
  free(c);
  free(h);
  /* the dual machine as .mach source */
  char *dual_path = e2e_fmt("%s/%s.dual.expected", golden_dir(), name);
  cr_assert(dual == (access(dual_path, F_OK) == 0) || updating(),
            "%s: %s.dual.expected %s", name, name, dual ? "is missing" : "has no test");
  if (dual) {
    r = e2e_runl(golden_dir(), 30, e2e_machc(), "--emit=dual", mach, NULL);
    e2e_check_ok(&r, "machc --emit=dual");
    expect_file(r.out, strlen(r.out), dual_path);
    e2e_run_free(&r);
  }
}

static const char *const f64[] = {"--dtype", "f64", NULL};

Test(golden, c_tiny_bias_tanh) { check_c_golden_with("tiny", "tiny.mach", f64, false); }
Test(golden, c_paper_dense_machine_shared_W) {
  check_c_golden_with("paper_dense", "paper_dense.mach", f64, false);
}
Test(golden, c_skips_transpose_leaky_two_inputs) {
  check_c_golden_with("skips", "skips.mach", f64, true);
}
/* grids: a strided conv, a dilated conv, avgpool with stride, dilation and
 * pads, global_avgpool; forward, dual and kernel gradients */
Test(golden, c_conv2d_stride_dilation_pools) {
  check_c_golden_with("conv2d", "conv2d.mach", f64, true);
}
/* time: lags, a block reading itself across chunks of 2 steps, solved
 * first to last forward and last to first in the dual */
Test(golden, c_recurrent_lags_chunks) { check_c_golden_with("recur", "recur.mach", f64, true); }
/* float: exp_vec, the float tanh and sigmoid, the float tiles */
Test(golden, c_f32_activations) {
  static const char *const f32[] = {"--dtype", "f32", NULL};
  check_c_golden_with("f32", "f32.mach", f32, false);
}
/* --standalone --train: no runtime, tiny_infer's shared workspace, one
 * training step with the defaults (mse, adam) */
Test(golden, c_standalone_train) {
  static const char *const st[] = {"--standalone", "--train", "--dtype", "f64", NULL};
  check_c_golden_with("tiny_standalone", "tiny.mach", st, false);
}

/* -S twice gives the same bytes: no timestamps, no addresses */
Test(golden, c_output_is_deterministic) {
  const char *tmp = e2e_tmpdir();
  char *out[2];
  for (int i = 0; i < 2; i++) {
    char *p = e2e_fmt("%s/run%d.c", tmp, i);
    E2eRun r = e2e_runl(golden_dir(), 30, e2e_machc(), "-S", "--dtype", "f64", "skips.mach", "-o",
                        p, NULL);
    e2e_check_ok(&r, "machc -S");
    e2e_run_free(&r);
    out[i] = e2e_read_file(p, NULL);
    cr_assert(out[i]);
  }
  /* only the file names differ: in the first comment and the #include */
  char *a = strstr(out[0], "#include \"run0.h\""), *b = strstr(out[1], "#include \"run1.h\"");
  cr_assert(a && b);
  a[13] = b[13] = 'X';
  a = strstr(out[0], "/* run0.c "), b = strstr(out[1], "/* run1.c ");
  cr_assert(a && b);
  a[6] = b[6] = 'X';
  cr_assert_str_eq(out[0], out[1]);
}

/* --- diagnostics ------------------------------------------------------------------------------- */

/* machc NAME.mach in tests/errors: status 1, stderr == NAME.err.expected. */
static void check_error(const char *name) {
  const char *tmp = e2e_tmpdir();
  char *bin = e2e_path(tmp, "should_not_exist");
  E2eRun r = e2e_runl(errors_dir(), 10, e2e_machc(), e2e_fmt("%s.mach", name), "-o", bin,
                      "--dtype", "f64", NULL);
  cr_assert(!r.timed_out, "machc on %s.mach did not finish in 10 s", name);
  cr_assert_eq(r.sig, 0, "machc on %s.mach was killed by signal %d\n%s", name, r.sig, r.err);
  cr_assert_eq(r.status, 1, "machc on %s.mach: exit status %d, want 1\n%s", name, r.status, r.err);
  cr_assert_lt(r.seconds, 2.0, "machc on %s.mach took %.2f s", name, r.seconds);
  cr_assert_str_empty(r.out, "stdout: %s", r.out);
  cr_assert(access(bin, F_OK) != 0, "machc wrote an output file despite the error");
  cr_assert(strstr(r.err, "error"), "no error reported:\n%s", r.err);
  expect_file(r.err, strlen(r.err), e2e_fmt("%s/%s.err.expected", errors_dir(), name));
  e2e_run_free(&r);
}

Test(golden, error_unknown_block) { check_error("unknown_block"); }
Test(golden, error_term_twice_after_an_error) { check_error("term_twice_after_an_error"); }
Test(golden, error_duplicate_block) { check_error("duplicate_block"); }
Test(golden, error_weight_slice_size_mismatch) { check_error("weight_slice_size_mismatch"); }
Test(golden, error_machine_too_few_arguments) { check_error("machine_too_few_arguments"); }
Test(golden, error_machine_too_many_arguments) { check_error("machine_too_many_arguments"); }
Test(golden, error_unknown_parameter) { check_error("unknown_parameter"); }
Test(golden, error_no_finite_depth_cycle) { check_error("no_finite_depth_cycle"); }
Test(golden, error_no_finite_depth_self_arrow) { check_error("no_finite_depth_self_arrow"); }
Test(golden, error_skip_shape_mismatch) { check_error("skip_shape_mismatch"); }
Test(golden, error_syntax_missing_colon) { check_error("syntax_missing_colon"); }
Test(golden, error_unknown_activation) { check_error("unknown_activation"); }
Test(golden, error_unknown_function) { check_error("unknown_function"); }
Test(golden, error_empty_file) { check_error("empty_file"); }
Test(golden, error_binary_garbage) { check_error("binary_garbage"); }
Test(golden, error_unterminated_comment) { check_error("unterminated_comment"); }
Test(golden, error_huge_integer_literal) { check_error("huge_integer_literal"); }
Test(golden, error_did_you_mean_activation) { check_error("did_you_mean_activation"); }
Test(golden, error_did_you_mean_arrow) { check_error("did_you_mean_arrow"); }
Test(golden, error_did_you_mean_block) { check_error("did_you_mean_block"); }
Test(golden, error_did_you_mean_parameter) { check_error("did_you_mean_parameter"); }
Test(golden, error_did_you_mean_machine_parameter) { check_error("did_you_mean_machine_parameter"); }
Test(golden, error_did_you_mean_machine) { check_error("did_you_mean_machine"); }
/* hardening: 64-bit values checked where they are narrowed, limits that hold */
Test(golden, error_range_near_int64_limits) { check_error("range_near_int64_limits"); }
Test(golden, error_abs_of_int64_min) { check_error("abs_of_int64_min"); }
Test(golden, error_negate_int64_min) { check_error("negate_int64_min"); }
Test(golden, error_multiply_overflow) { check_error("multiply_overflow"); }
Test(golden, error_kernel_above_2_32) { check_error("kernel_above_2_32"); }
Test(golden, error_pad_near_2_62) { check_error("pad_near_2_62"); }
Test(golden, error_stride_2_62) { check_error("stride_2_62"); }
Test(golden, error_dilation_2_31) { check_error("dilation_2_31"); }
Test(golden, error_lag_2_32) { check_error("lag_2_32"); }
Test(golden, error_slice_near_int64_max) { check_error("slice_near_int64_max"); }
Test(golden, error_block_size_2_32) { check_error("block_size_2_32"); }
Test(golden, error_timeblock_2_62) { check_error("timeblock_2_62"); }
Test(golden, error_import_directory) { check_error("import_directory"); }
Test(golden, error_memory_doubling_terms) { check_error("memory_doubling_terms"); }
Test(golden, error_memory_nested_comprehension) { check_error("memory_nested_comprehension"); }
Test(golden, error_identifier_too_long) { check_error("identifier_too_long"); }

/* Every .mach in tests/errors has a test above, and every expected file a .mach. */
Test(golden, every_error_file_is_checked) {
  static const char *known[] = {
      "unknown_block", "duplicate_block", "weight_slice_size_mismatch",
      "machine_too_few_arguments", "machine_too_many_arguments", "unknown_parameter",
      "no_finite_depth_cycle", "no_finite_depth_self_arrow", "skip_shape_mismatch",
      "syntax_missing_colon", "unknown_activation", "unknown_function", "empty_file",
      "binary_garbage", "unterminated_comment", "huge_integer_literal",
      "did_you_mean_activation", "did_you_mean_arrow", "did_you_mean_block",
      "did_you_mean_parameter", "did_you_mean_machine_parameter", "did_you_mean_machine",
      "range_near_int64_limits", "abs_of_int64_min", "negate_int64_min", "multiply_overflow",
      "kernel_above_2_32", "pad_near_2_62", "stride_2_62", "dilation_2_31", "lag_2_32",
      "slice_near_int64_max", "block_size_2_32", "timeblock_2_62", "import_directory",
      "memory_doubling_terms", "memory_nested_comprehension", "identifier_too_long",
      "term_twice_after_an_error", NULL};
  E2eRun r = e2e_runl(errors_dir(), 10, "ls", NULL);
  e2e_check_ok(&r, "ls tests/errors");
  int files = 0;
  for (char *t = strtok(r.out, "\n"); t; t = strtok(NULL, "\n")) {
    char *dot = strchr(t, '.');
    cr_assert(dot, "stray file tests/errors/%s", t);
    cr_assert(strcmp(dot, ".mach") == 0 || strcmp(dot, ".err.expected") == 0,
              "stray file tests/errors/%s", t);
    *dot = '\0';
    bool hit = false;
    for (int i = 0; known[i]; i++)
      hit |= strcmp(known[i], t) == 0;
    cr_assert(hit, "tests/errors/%s.* has no test", t);
    files++;
  }
  cr_assert_eq(files, 2 * 39, "tests/errors holds %d files, want a .mach and a .err.expected for 39 cases",
               files);
}

/* Runs machc on generated text in a temporary directory: status 1, no signal, fast. */
static E2eRun run_generated(const char *name, const char *text, size_t len, const char *mode) {
  const char *tmp = e2e_tmpdir();
  e2e_write_file(e2e_path(tmp, name), text, len);
  E2eRun r = mode ? e2e_runl(tmp, 10, e2e_machc(), mode, name, NULL)
                  : e2e_runl(tmp, 10, e2e_machc(), name, "-o", "out", NULL);
  cr_assert(!r.timed_out, "machc on %s did not finish in 10 s", name);
  cr_assert_eq(r.sig, 0, "machc on %s was killed by signal %d", name, r.sig);
  cr_assert_lt(r.seconds, 2.0, "machc on %s took %.2f s", name, r.seconds);
  cr_assert(access(e2e_path(tmp, "out"), F_OK) != 0, "machc wrote a binary for %s", name);
  return r;
}

static void first_line_is(const E2eRun *r, const char *want) {
  size_t n = strcspn(r->err, "\n");
  cr_assert(strlen(want) == n && strncmp(r->err, want, n) == 0, "first line of stderr:\n%.*s\nwant:\n%s",
            (int)n, r->err, want);
}

Test(golden, error_deeply_nested_brackets) {
  size_t n = 1000000;
  const char *head = "machine m {\n    input x : 2\n    output y : 1 = ";
  size_t hl = strlen(head);
  char *s = malloc(hl + 2 * n + 32);
  memcpy(s, head, hl);
  memset(s + hl, '(', n);
  memcpy(s + hl + n, "dense(x)", 8);
  memset(s + hl + n + 8, ')', n);
  memcpy(s + hl + 2 * n + 8, "\n}\n", 4);
  E2eRun r = run_generated("deep_brackets.mach", s, strlen(s), NULL);
  cr_assert_eq(r.status, 1, "exit status %d\n%.500s", r.status, r.err);
  /* the machine's '{' is the first open bracket: the 256th '(' is one too many */
  first_line_is(&r, "deep_brackets.mach:3:275: error: nesting too deep: more than 256 open brackets");
  cr_assert_lt(strlen(r.err), 4096, "a flood of diagnostics (%zu bytes)", strlen(r.err));
  free(s);
}

Test(golden, error_deeply_nested_lists_and_indices) {
  size_t n = 1000000;
  char *s = malloc(n + 64);
  strcpy(s, "machine m { input x : 2 output y : 1 = ");
  size_t hl = strlen(s);
  for (size_t i = 0; i < n; i++)
    s[hl + i] = "[x"[i % 2];
  s[hl + n] = '\0';
  E2eRun r = run_generated("deep_lists.mach", s, strlen(s), NULL);
  cr_assert_eq(r.status, 1, "exit status %d\n%.500s", r.status, r.err);
  cr_assert(strstr(r.err, "nesting too deep"), "%.500s", r.err);
  free(s);
}

Test(golden, error_deeply_nested_unary_minus) {
  size_t n = 1000000;
  char *s = malloc(n + 64);
  strcpy(s, "machine m { input x : ");
  size_t hl = strlen(s);
  memset(s + hl, '-', n);
  strcpy(s + hl + n, "2\n output y : 1 = dense(x) }\n");
  E2eRun r = run_generated("deep_minus.mach", s, strlen(s), NULL);
  cr_assert_eq(r.status, 1, "exit status %d\n%.500s", r.status, r.err);
  cr_assert(strstr(r.err, "error: nesting too deep"), "%.500s", r.err);
  cr_assert_lt(strlen(r.err), 4096);
  free(s);
}

Test(golden, error_huge_file_of_one_token) {
  size_t n = 4000000;
  char *s = malloc(n + 1);
  memset(s, 'a', n);
  s[n] = '\0';
  E2eRun r = run_generated("long_ident.mach", s, n, NULL);
  cr_assert_eq(r.status, 1, "exit status %d\n%.500s", r.status, r.err);
  cr_assert_lt(strlen(r.err), 4096, "diagnostic of %zu bytes for one token", strlen(r.err));
  free(s);
}

/* Random bytes and random soups of the language's tokens: never a crash,
 * status 1 (or 0 when a soup happens to be a valid machine), for every mode. */
Test(golden, garbage_never_crashes, .timeout = 60) {
  static const char *toks[] = {
      "machine", "m", "{", "}", "(", ")", "[", "]", "input", "output", "block", "param", "let",
      "for", "in", "if", "else", "use", "set", "import", "\"dense.mach\"", "x", "y", ":", "=",
      ",", ".", "..", "..=", "+", "-", "*", "/", "%", "@", ">>", "|", "==", "<", "dense",
      "tanh", "bias", "weight", "transpose", "dense_machine", "1", "0", "2.5", "-3", "1e308",
      "9223372036854775807", "\n", " ", "#c\n", "/*", "*/", "W", "x[0]", "len", "sum", "mul",
      "conv", "k", "lags", "true", "not", "and"};
  const char *modes[] = {NULL, "--emit=mach", "--emit=dual", "explain", "--emit=dot"};
  E2eRng rng = {42};
  const char *tmp = e2e_tmpdir();
  for (int trial = 0; trial < 40; trial++) {
    char buf[2048];
    size_t n = 0;
    if (trial % 3 == 0) { /* random bytes */
      size_t len = (size_t)e2e_uniform(&rng, 1, 1500);
      for (; n < len; n++)
        buf[n] = (char)(int)e2e_uniform(&rng, 0, 256);
    } else { /* token soup, sometimes starting like a machine */
      if (trial % 2)
        n += (size_t)snprintf(buf, sizeof buf, "machine m { input x : 2 ");
      int count = (int)e2e_uniform(&rng, 1, 120);
      for (int k = 0; k < count; k++) {
        const char *t = toks[(int)e2e_uniform(&rng, 0, sizeof toks / sizeof *toks)];
        size_t tl = strlen(t);
        if (n + tl + 2 >= sizeof buf)
          break;
        memcpy(buf + n, t, tl);
        n += tl;
        buf[n++] = ' ';
      }
    }
    char *name = e2e_fmt("g%d.mach", trial);
    e2e_write_file(e2e_path(tmp, name), buf, n);
    const char *mode = modes[trial % 5];
    E2eRun r = mode ? e2e_runl(tmp, 10, e2e_machc(), mode, name, NULL)
                    : e2e_runl(tmp, 10, e2e_machc(), "-S", name, "-o", "g.c", NULL);
    cr_assert(!r.timed_out, "machc %s %s: no answer in 10 s", mode ? mode : "-S", name);
    cr_assert_eq(r.sig, 0, "machc %s on garbage %s: signal %d\n%s", mode ? mode : "-S", name,
                 r.sig, r.err);
    cr_assert(r.status == 1 || (r.status == 0 && trial % 3 != 0),
              "machc %s on garbage %s: exit status %d\n%.2000s", mode ? mode : "-S", name,
              r.status, r.err);
    if (r.status == 1)
      cr_assert(strstr(r.err, "error"), "status 1 without an error message:\n%s", r.err);
    cr_assert_lt(r.seconds, 2.0, "machc on %s took %.2f s", name, r.seconds);
    e2e_run_free(&r);
  }
}

/* --- usage errors: status 2 ------------------------------------------------------------------ */

static void check_usage(const char *want_err, const char *a1, const char *a2, const char *a3) {
  const char *argv[8] = {e2e_machc(), a1, a2, a3, NULL};
  E2eRun r = e2e_run(errors_dir(), 10, argv);
  cr_assert_eq(r.sig, 0);
  cr_assert_eq(r.status, 2, "machc %s %s %s: exit status %d, want 2\n%s", a1 ? a1 : "",
               a2 ? a2 : "", a3 ? a3 : "", r.status, r.err);
  cr_assert_str_eq(r.err, want_err);
  cr_assert_str_empty(r.out);
  e2e_run_free(&r);
}

Test(golden, usage_no_input_file) {
  check_usage("machc: no input file\nTry 'machc --help'.\n", NULL, NULL, NULL);
  check_usage("machc: no input file\nTry 'machc --help'.\n", "--dtype", "f64", NULL);
}

Test(golden, usage_unknown_option) {
  check_usage("machc: unknown option '--frobnicate'\nTry 'machc --help'.\n", "--frobnicate",
              "unknown_block.mach", NULL);
}

Test(golden, usage_bad_dtype) {
  check_usage("machc: --dtype must be f32 or f64, not 'f16'\nTry 'machc --help'.\n", "--dtype",
              "f16", "unknown_block.mach");
  check_usage("machc: --dtype must be f32 or f64, not 'double'\nTry 'machc --help'.\n",
              "--dtype=double", "unknown_block.mach", NULL);
}

Test(golden, usage_option_needs_argument) {
  check_usage("machc: option '-o' needs an argument\nTry 'machc --help'.\n", "unknown_block.mach",
              "-o", NULL);
}

Test(golden, usage_two_input_files) {
  check_usage("machc: more than one input file ('empty_file.mach')\nTry 'machc --help'.\n",
              "unknown_block.mach", "empty_file.mach", NULL);
}

Test(golden, usage_explain_after_the_file) {
  check_usage("machc: 'explain' is a command and comes first: machc explain unknown_block.mach\n"
              "Try 'machc --help'.\n", "unknown_block.mach", "explain", NULL);
}

/* -oFILE and -mNAME as cc takes them; BIN --version names machc's version. */
Test(golden, joined_options_and_binary_version) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "two.mach"), "machine a {\n    input x : 1\n    output y : 1 = dense(x)\n}\n"
                                            "machine b {\n    input x : 2\n    output y : 1 = dense(x)\n}\n");
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "-oout", "-ma", "two.mach", NULL);
  e2e_check_ok(&r, "machc -oout -ma two.mach");
  e2e_run_free(&r);
  r = e2e_runl(dir, 10, e2e_path(dir, "out"), "--version", NULL);
  e2e_check_ok(&r, "out --version");
  cr_assert_str_eq(r.out, "out: machine a (f32) from two.mach, compiled by machc " MACHC_VERSION "\n");
  e2e_run_free(&r);
}

Test(golden, usage_unknown_emit_kind) {
  check_usage("machc: unknown --emit kind 'asm' (c, dual, mach, dot)\nTry 'machc --help'.\n",
              "--emit=asm", "unknown_block.mach", NULL);
}

Test(golden, missing_file_is_status_1) {
  E2eRun r = e2e_runl(errors_dir(), 10, e2e_machc(), "no_such_file.mach", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "machc: error: cannot read no_such_file.mach: No such file or directory\n");
  e2e_run_free(&r);
}

Test(golden, help_and_version_are_status_0) {
  E2eRun r = e2e_runl(NULL, 10, e2e_machc(), "--help", NULL);
  cr_assert_eq(r.status, 0);
  cr_assert(strncmp(r.out, "usage: machc", 12) == 0, "%s", r.out);
  e2e_run_free(&r);
  r = e2e_runl(NULL, 10, e2e_machc(), "--version", NULL);
  cr_assert_eq(r.status, 0);
  cr_assert(strncmp(r.out, "machc ", 6) == 0, "%s", r.out);
  e2e_run_free(&r);
}
