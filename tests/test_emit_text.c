/* test_emit_text.c — the text of the generated code for grids and time.
 *
 * The index builder (emit_index.c) must fold what a person would not write
 * (`* 1`, `+ 0`, `(0 + k)`, `0 * x`, constant sums) and keep the shape of a
 * row-major index; the line helper (emit_line.c) must leave out loops of one
 * trip and put braces where a block needs them. Then the generated C of the
 * grid and time examples, forward, dual, gradients, standalone and streaming,
 * must show none of that noise, and every argument comment of a kernel call
 * must name the parameter the prelude's definition has in that place. That
 * the numbers stay the same is the business of the equation and gradient
 * tests. */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"
#include "emit_internal.h"

TestSuite(emit_text, .fini = e2e_cleanup, .timeout = 60);

/* ---- the index builder -------------------------------------------------------- */

static Arena *A;
static const char *text(Ix x) { return ix_text(A, x); }

static void setup(void) { A = arena_new(); }
static void teardown(void) { arena_free(A); }

Test(emit_text, unit_terms_fold, .init = setup, .fini = teardown) {
  cr_assert_str_eq(text(ix_const(0)), "0");
  /* o0 * 1 + k0 * 1 - 4 (stride 1, dilation 1, pad 4) */
  Ix pos = ix_addc(ix_add(ix_scale(A, ix_var("o0"), 1), ix_scale(A, ix_var("k0"), 1)), -4);
  cr_assert_str_eq(text(pos), "o0 + k0 - 4");
  /* a position scaled by its grid stride keeps its parentheses; by 1, none */
  cr_assert_str_eq(text(ix_scale(A, pos, 13)), "(o0 + k0 - 4) * 13");
  cr_assert_str_eq(text(ix_scale(A, pos, 1)), "o0 + k0 - 4");
  cr_assert_str_eq(text(ix_scale(A, ix_var("x"), 0)), "0");
  cr_assert_str_eq(text(ix_addv(ix_var("k0"), "k0", -1)), "0", "terms that cancel vanish");
  cr_assert_str_eq(text(ix_addc(ix_addc(ix_const(3), 4), -7)), "0");
  cr_assert_str_eq(text(ix_addv(ix_const(2), "k0", -1)), "2 - k0");
  cr_assert_str_eq(text(ix_scale(A, ix_addv(ix_const(2), "k0", -1), 17)), "(2 - k0) * 17");
  cr_assert_str_eq(text(ix_scale(A, ix_addv(ix_var("t1"), "t0", -1), -1)), "-(t1 - t0)");
}

Test(emit_text, row_major_index_keeps_its_axes, .init = setup, .fini = teardown) {
  /* W[0 + k0, 1 + ci, 9 + co] of a [5, 17, 17] weight */
  Ix k = ix_add(ix_const(0), ix_var("k0"));
  Ix w = ix_nest(A, ix_nest(A, k, 17, ix_add(ix_const(1), ix_var("ci"))), 17, ix_add(ix_const(9), ix_var("co")));
  cr_assert_str_eq(text(w), "(k0 * 17 + 1 + ci) * 17 + 9 + co");
  /* one channel each side: the indices fixed at 0, the offsets summed */
  Ix w0 = ix_nest(A, ix_nest(A, k, 17, ix_const(1)), 17, ix_const(9));
  cr_assert_str_eq(text(w0), "(k0 * 17 + 1) * 17 + 9");
  Ix c = ix_nest(A, ix_nest(A, ix_const(2), 17, ix_const(1)), 17, ix_const(9));
  cr_assert_str_eq(text(c), "604", "2 * 289 + 17 + 9");
  /* (n * 1 + ci) * 32 with one channel: n * 32 */
  cr_assert_str_eq(text(ix_scale(A, ix_nest(A, ix_var("n"), 1, ix_const(0)), 32)), "n * 32");
}

Test(emit_text, pointer_offsets, .init = setup, .fini = teardown) {
  cr_assert_str_eq(ix_at(A, "W", ix_const(0)), "W");
  cr_assert_str_eq(ix_at(A, "z", ix_addc(ix_var("k0"), -4)), "z + k0 - 4");
  cr_assert_str_eq(ix_at(A, "z", ix_addc(ix_term("k0", -1), 2)), "z - k0 + 2");
}

/* ---- the line helper ---------------------------------------------------------- */

Test(emit_text, loops_of_one_trip_are_left_out, .init = setup, .fini = teardown) {
  StrBuf sb = {0};
  Emit e = {.a = A, .c = &sb, .depth = 1};
  EmitLoop l[] = {{.var = "n", .hi = "batch"}, {.var = "co", .n = 3}, {.var = "ci", .n = 1},
                  {.var = "x0", .lo = 4, .n = 1}};
  Ix idx[4];
  int base = emit_loops(&e, l, 4, true, idx);
  emit_line(&e, "y[%s] += z[%s];", text(ix_nest(A, idx[0], 3, idx[1])), text(ix_add(idx[2], idx[3])));
  emit_close_to(&e, base);
  cr_assert_str_eq(sb.data, "    for (long n = 0; n < batch; n++)\n"
                            "        for (long co = 0; co < 3; co++) {\n"
                            "            y[n * 3 + co] += z[4];\n"
                            "        }\n");
  sb_free(&sb);
}

Test(emit_text, a_block_without_loops_is_a_scope, .init = setup, .fini = teardown) {
  StrBuf sb = {0};
  Emit e = {.a = A, .c = &sb, .depth = 1};
  Ix k;
  int base = emit_loops(&e, &(EmitLoop){.var = "k0", .n = 1}, 1, true, &k);
  emit_line(&e, "long f0 = %s;", text(ix_addc(k, -1)));
  emit_close_to(&e, base);
  cr_assert_str_eq(sb.data, "    {\n        long f0 = -1;\n    }\n");
  sb_free(&sb);
}

Test(emit_text, calls_name_their_arguments, .init = setup, .fini = teardown) {
  StrBuf sb = {0};
  Emit e = {.a = A, .c = &sb, .depth = 2};
  emit_call(&e, "f", (EmitArg[]){{"m", "8"}, {"n", "batch"}, {"a", "w + 4"}}, (int[]){2, 1}, 2);
  cr_assert_str_eq(sb.data, "        f(/* m */ 8, /* n */ batch,\n"
                            "          /* a */ w + 4);\n");
  sb_free(&sb);
}

/* ---- the generated code ------------------------------------------------------- */

/* `machc -S FLAGS FILE -o DIR/NAME.c`, the C it writes. */
static char *generate(const char *rel, const char *flag, const char *name) {
  const char *dir = e2e_tmpdir();
  const char *out = e2e_path(dir, e2e_fmt("%s.c", name));
  E2eRun r = flag ? e2e_runl(NULL, 60, e2e_machc(), "-S", flag, e2e_path(e2e_root(), rel), "-o", out, NULL)
                  : e2e_runl(NULL, 60, e2e_machc(), "-S", e2e_path(e2e_root(), rel), "-o", out, NULL);
  e2e_check_ok(&r, rel);
  e2e_run_free(&r);
  size_t len;
  return e2e_read_file(out, &len);
}

static int line_of(const char *code, const char *at) {
  int n = 1;
  for (const char *p = code; p < at; p++)
    n += *p == '\n';
  return n;
}

/* The functions after the prelude: where the emitters' text starts. */
static const char *functions(const char *code) {
  const char *f = strstr(code, "_forward(const real");
  cr_assert(f, "no forward pass");
  while (f > code && f[-1] != '\n')
    f--;
  return f;
}

/* No `* 1`, `+ 0` or `- 0` as a whole term, no `(0 + `, no `0 * `, no loop
 * whose bound is 1. */
static void check_no_noise(const char *code, const char *what) {
  static const char *const units[] = {" * 1", " + 0", " - 0"};
  const char *body = functions(code);
  for (int u = 0; u < 3; u++)
    for (const char *p = strstr(body, units[u]); p; p = strstr(p + 1, units[u])) {
      char next = p[strlen(units[u])];
      cr_assert(isdigit((unsigned char)next) || next == '.' || next == 'x' || next == 'e' || next == 'f',
                "%s, line %d: '%s' as a term: %.60s", what, line_of(code, p), units[u], p);
    }
  static const char *const never[] = {"(0 + ", "[0 + ", " 0 * ", "(0 * ", "; c < 1;", "; ci < 1;",
                                      "; co < 1;", "; k0 < 1;", "; k1 < 1;", "; ch < 1;", "; q < 1;"};
  for (size_t i = 0; i < sizeof never / sizeof *never; i++) {
    const char *p = strstr(body, never[i]);
    cr_assert_null(p, "%s, line %d: '%s': %.60s", what, p ? line_of(code, p) : 0, never[i], p);
  }
}

/* The parameter names of `static void fn(...)` in the prelude, or 0 names
 * when the code does not define it. */
static int params_of(const char *code, const char *fn, char names[][16], int max) {
  const char *d = strstr(code, e2e_fmt("static void %s(", fn));
  if (!d)
    return 0;
  d += strlen(fn) + strlen("static void (");
  int n = 0;
  while (*d && *d != ')' && n < max) {
    const char *end = d + strcspn(d, ",)");
    const char *w = end;
    while (w > d && (isalnum((unsigned char)w[-1]) || w[-1] == '_'))
      w--;
    snprintf(names[n++], 16, "%.*s", (int)(end - w), w);
    d = *end == ',' ? end + 1 : end;
  }
  return n;
}

/* Every call `fn(/\* name *\/ value, ...)` names the parameters of fn's
 * definition, in order; returns the calls checked. */
static int check_named_calls(const char *code, const char *fn, const char *what) {
  char want[24][16];
  int nw = params_of(code, fn, want, 24);
  int calls = 0;
  const char *call = e2e_fmt("%s(/* ", fn);
  for (const char *p = strstr(code, call); p; p = strstr(p + 1, call)) {
    const char *end = strstr(p, ");");
    int k = 0;
    for (const char *c = strstr(p, "/* "); c && c < end; c = strstr(c + 1, "/* "), k++) {
      cr_assert_lt(k, nw, "%s, line %d: %s has %d parameters", what, line_of(code, p), fn, nw);
      size_t len = strcspn(c + 3, " ");
      cr_assert(len == strlen(want[k]) && strncmp(c + 3, want[k], len) == 0,
                "%s, line %d: argument %d of %s named '%.*s', the definition says '%s'", what,
                line_of(code, p), k + 1, fn, (int)len, c + 3, want[k]);
    }
    cr_assert_eq(k, nw, "%s, line %d: %d named arguments of %s, %d parameters", what, line_of(code, p),
                 k, fn, nw);
    calls++;
  }
  return calls;
}

/* Inside a function, every line is indented: a comment's continuation lines
 * too (" * " at the start of a line belongs between functions). */
static void check_indented(const char *code, const char *what) {
  int depth = 0;
  for (const char *l = functions(code); *l;) {
    size_t len = strcspn(l, "\n");
    bool indented = len == 0 || l[0] == ' ' || l[0] == '#' || l[0] == '}';
    cr_assert(depth == 0 || indented, "%s, line %d: not indented: %.*s", what, line_of(code, l), (int)len, l);
    cr_assert(depth == 0 || strncmp(l, " * ", 3) != 0, "%s, line %d: a comment line not indented: %.*s", what,
              line_of(code, l), (int)len, l);
    for (size_t i = 0; i < len; i++)
      depth += l[i] == '{' ? 1 : l[i] == '}' ? -1 : 0;
    l += len + (l[len] == '\n');
  }
}

static void check_code(const char *rel, const char *flag, const char *what, int min_calls) {
  char *code = generate(rel, flag, what);
  check_no_noise(code, what);
  check_indented(code, what);
  int calls = 0;
  static const char *const fns[] = {"mm_grid", "mm_taps", "mm_taps_row", "mm_rows", "mm_acc", "mm_nt"};
  for (int i = 0; i < 6; i++)
    calls += check_named_calls(code, fns[i], what);
  cr_assert_geq(calls, min_calls, "%s: %d kernel calls with named arguments", what, calls);
  free(code);
}

Test(emit_text, recurrent_machine_reads_clean) {
  check_code("examples/waves.mach", NULL, "waves", 16); /* products of stacked sources among them */
  check_code("examples/sine.mach", "--standalone", "sine", 0); /* the stream too */
}

Test(emit_text, every_arrow_kind_reads_clean) {
  check_code("tests/machines/every_arrow.mach", NULL, "every_arrow", 4);
  check_code("examples/fmnist.mach", NULL, "fmnist", 4);
  check_code("examples/sine.mach", "-msine_conv", "sine_conv", 4); /* windowed products of stacked sources */
}

/* Every one of want[0 .. n) is somewhere in code. */
static void expect_all(const char *code, const char *const *want, size_t n) {
  for (size_t i = 0; i < n; i++)
    cr_assert(strstr(code, want[i]), "'%s' not in the generated C", want[i]);
}

/* None of never[0 .. n) is anywhere in code (what it would be: why). */
static void expect_none(const char *code, const char *const *never, size_t n, const char *why) {
  for (size_t i = 0; i < n; i++)
    cr_assert_null(strstr(code, never[i]), "%s: '%s'", why, never[i]);
}

/* Every string of the array want in code and none of never (why they would
 * be), then code freed. */
#define EXPECT_TEXT(code, want, never, why)                                                                \
  do {                                                                                                     \
    expect_all(code, want, sizeof want / sizeof *want);                                                    \
    expect_none(code, never, sizeof never / sizeof *never, why);                                           \
    free(code);                                                                                            \
  } while (0)

/* The Fashion-MNIST CNN: a block one windowed product solves gets z with y,
 * in the product's loop over a row (c1, one sample a group) or right after
 * the group's copy (c2, samples innermost), never in a pass of its own; the
 * 1-channel image's cotangent runs the one-row kernel; a tap skips the
 * columns where it reads padding only. */
Test(emit_text, windowed_products_write_z_with_y) {
  char *code = generate("examples/fmnist.mach", NULL, "fmnist_fused");
  static const char *const want[] = {
      "z_c1[yk] = act_relu(y_c1[yk]);",
      "z_c2[k] = act_relu(y_c2[k]);",
      "const long tap_on[18] = {29, 812, 29, 812, 29, 812, 0, 812",
      /* the input's adjoint, into one channel: a row per tap, then their sum */
      "mm_taps(/* m */ 12, /* n */ 870, /* taps */ 1, /* ch */ 32,",
      "prod[u] += q[k * 896 + tap_at[k] + u];",
  };
  static const char *const never[] = {
      "for (long k = 0; k < batch * 25088; k++)\n        z_c1[k]",
      "for (long k = 0; k < batch * 12544; k++)\n        z_c2[k]",
  };
  EXPECT_TEXT(code, want, never, "a pass of its own");
}

/* A loop that holds fewer iterations than a vector carries SHORT_LOOP (not
 * vectorized): a chunk of 5 steps of time of a 2-channel RecurMachine, its
 * positions and its element-wise passes; a loop over all 16 steps (a kernel
 * gradient) is as long as a vector of 16 floats and does not. */
/* The f32 C of machine src for an AVX-512 target (x86-64-v4). */
static char *f32_avx512_code(const char *src) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), src);
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "-S", "--march=x86-64-v4", "--dtype", "f32", "m.mach", "-o", "m.c",
                      NULL);
  e2e_check_ok(&r, "machc -S m.mach");
  e2e_run_free(&r);
  return e2e_read_file(e2e_path(dir, "m.c"), NULL);
}

Test(emit_text, short_loops_are_not_vectorized) {
  char *code = f32_avx512_code("import \"recurrent.mach\"\n"
                               "machine r {\n"
                               "    use m = recur_machine([2, 2, 2], sigmoid, 6, 5, 16)\n"
                               "    output y : 2 @ [16] = conv(m.x[0 .. 3], k = 1) + bias\n"
                               "}\n");
  static const char *const want[] = {
      "#define SHORT_LOOP _Pragma(\"clang loop vectorize(disable) interleave(disable)\")",
      "SHORT_LOOP for (long o0 = f0; o0 < e0; o0++)\n                            yd[o0] += w * zs[o0 + k0 - 6];",
      "SHORT_LOOP for (long k = r * 16 + t0; k < r * 16 + t1; k++)\n                z_m_x_0[k] = act_sigmoid(",
      "                    for (long o0 = f0; o0 < e0; o0++)\n                        t += zs[o0] * yd[o0];",
  };
  static const char *const never[] = {"SHORT_LOOP for (long o0 = f0; o0 < e0; o0++)\n                        t +="};
  EXPECT_TEXT(code, want, never, "a kernel gradient over 16 steps marked short");
}

/* A row of activations 28 floats long (16 + 12 with AVX-512) carries
 * MASKED_TAIL, its last vector masked; a row of 32, two whole vectors, does
 * not, nor does a row whose activation calls libm (gelu's erf: clang could
 * not vectorize it and would warn). */
Test(emit_text, rows_of_activations_mask_their_last_vector) {
  char *code = f32_avx512_code("machine m {\n"
                               "    input  x : 8 @ [28, 28]\n"
                               "    block  a : 8 @ [28, 28] = sigmoid(conv(x, k = 3, pad = same))\n"
                               "    input  w : 8 @ [32, 32]\n"
                               "    block  b : 8 @ [32, 32] = sigmoid(conv(w, k = 3, pad = same))\n"
                               "    block  c : 8 @ [28, 28] = gelu(conv(x, k = 3, pad = same))\n"
                               "    output y : 2 = dense(a, b, c)\n"
                               "}\n");
  const char *gelu = strstr(code, "z_c[yk] = act_gelu(y_c[yk]);");
  cr_assert(gelu, "no row of gelu");
  const char *row = NULL;
  for (const char *p = strstr(code, "for (long o1 = 0; o1 < 28; o1++) {"); p && p < gelu;
       p = strstr(p + 1, "for (long o1 = 0; o1 < 28; o1++) {"))
    row = p;
  cr_assert(row && strncmp(row - 12, "MASKED_TAIL ", 12) != 0, "gelu's row is masked");
  static const char *const want[] = {
      "#define MASKED_TAIL _Pragma(\"clang loop vectorize_predicate(enable)\")",
      "MASKED_TAIL for (long o1 = 0; o1 < 28; o1++) {",
      "for (long o1 = 0; o1 < 32; o1++) {",
  };
  static const char *const never[] = {"MASKED_TAIL for (long o1 = 0; o1 < 32; o1++)"};
  EXPECT_TEXT(code, want, never, "a row of whole vectors masked");
}

/* A grid arrow's comment quotes it as the IR writes it; the dual's, in its
 * transposed form. */
Test(emit_text, arrow_comments_quote_the_arrow) {
  char *code = generate("tests/machines/every_arrow.mach", NULL, "every_comments");
  static const char *const want[] = {
      "/* y_b += conv(z_a, k = [3, 2], pad = [1, 0, 2, 1], stride = [2, 2], dilation = [2, 1], weight = W_b_a)",
      "/* y_w += conv_t(z_b, k = [3, 3], stride = [2, 2], weight = W_w_b)",
      "/* zbar_b += avgpool_t(zbar_p, k = [2, 2], pad = [0, 1, 0, 0], stride = [1, 2], dilation = [2, 1]) */",
      "/* y_q += global_avgpool(z_r) */",
      "/* y_t += conv(y_s, lags = 1 ..= 3, weight = W_t_s) */",
  };
  expect_all(code, want, sizeof want / sizeof *want);
  cr_assert_null(strstr(code, "/* conv: kernel"), "the old private rendering");
  cr_assert_null(strstr(code, "adjoint of "), "the old private rendering");
  free(code);
}
