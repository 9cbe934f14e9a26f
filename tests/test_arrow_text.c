/* test_arrow_text.c — the text of an arrow (ir_text.c) and the places that
 * show it.
 *
 * tests/machines/every_arrow.mach has every arrow kind and option. Its arrows
 * and those of its dual must render to the exact texts below, and every
 * view of the machine must show each arrow as the renderer writes it: the
 * printed machine (--emit=mach, --emit=dual), `machc explain`, the DOT
 * diagram and the level comments of the generated C. That the printed
 * machines compile back to the same numbers is checked in test_e2e_conv.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"
#include "machc.h"

typedef struct Compiled {
  Arena *a;
  Diag d;
  char *msg;
  size_t len;
  FILE *out;
  IrMachine *m, *dual;
} Compiled;

static Compiled *compile(const char *rel) {
  Compiled *c = calloc(1, sizeof *c);
  c->a = arena_new();
  c->out = open_memstream(&c->msg, &c->len);
  diag_init(&c->d, c->out);
  Program *p = eval_load(c->a, &c->d, e2e_path(e2e_root(), rel), NULL, 0);
  c->m = p ? eval_machine(p, NULL) : NULL;
  bool ok = c->m && filt_levels(c->m, &c->d);
  fflush(c->out);
  cr_assert(ok, "%s does not compile:\n%s", rel, c->msg);
  c->dual = dual_machine(c->a, c->m);
  return c;
}

static void compiled_free(Compiled *c) {
  diag_fini(&c->d);
  fclose(c->out);
  free(c->msg);
  arena_free(c->a);
  free(c);
}

static const IrArrow *arrow(const IrMachine *m, const char *src, const char *dst, int nth) {
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    if (strcmp(IR_BLOCK(m, ar->src)->name, src) == 0 && strcmp(IR_BLOCK(m, ar->dst)->name, dst) == 0 &&
        nth-- == 0)
      return ar;
  }
  cr_assert_fail("no arrow %s -> %s", src, dst);
  return NULL;
}

static void expect(const Compiled *c, const IrMachine *m, const char *src, const char *dst, int nth,
                   const char *kind, const char *args) {
  const IrArrow *ar = arrow(m, src, dst, nth);
  cr_assert_str_eq(ir_arrow_kind(ar), kind, "%s -> %s", src, dst);
  cr_assert_str_eq(ir_arrow_args(c->a, m, ar, IR_TEXT_MATH), args, "%s -> %s", src, dst);
}

Test(arrow_text, every_kind_and_option) {
  Compiled *c = compile("tests/machines/every_arrow.mach");
  IrMachine *m = c->m, *d = c->dual;
  expect(c, m, "img", "a", 0, "conv", "k = [3, 3], pad = [1, 1, 1, 1], weight = K[0 .. 3, 0 .. 3, 0 .. 2, 1 .. 4]");
  expect(c, m, "a", "b", 0, "conv", "k = [3, 2], pad = [1, 0, 2, 1], stride = [2, 2], dilation = [2, 1], weight = W_b_a");
  expect(c, m, "b", "p", 0, "avgpool", "k = [2, 2], pad = [0, 1, 0, 0], stride = [1, 2], dilation = [2, 1]");
  expect(c, m, "b", "w", 0, "conv_t", "k = [3, 3], stride = [2, 2], weight = W_w_b");
  expect(c, m, "p", "g", 0, "global_avgpool", "");
  expect(c, m, "p", "h", 0, "dense", "weight = D[6 .. 30, 0 .. 3]");
  expect(c, m, "s", "t", 0, "conv", "lags = 1 ..= 3, weight = W_t_s");
  expect(c, m, "s", "t", 1, "conv", "k = [2], pad = [1, 2], dilation = [3], weight = W_t_s_2");
  expect(c, m, "r", "r", 0, "conv", "lags = 2 ..= 3, weight = W_r_r");
  expect(c, m, "h", "q", 0, "skip", "");
  expect(c, m, "q", "y", 0, "dense", "weight = D[0 .. 2, 4 .. 7]^T");
  /* the dual: arrows reversed, weights transposed, strided maps adjoint */
  expect(c, d, "y", "q", 0, "dense", "weight = D[0 .. 2, 4 .. 7]");
  expect(c, d, "b", "a", 0, "conv_t", "k = [3, 2], pad = [1, 0, 2, 1], stride = [2, 2], dilation = [2, 1], weight = W_b_a");
  expect(c, d, "p", "b", 0, "avgpool_t", "k = [2, 2], pad = [0, 1, 0, 0], stride = [1, 2], dilation = [2, 1]");
  expect(c, d, "w", "b", 0, "conv", "k = [3, 3], stride = [2, 2], weight = W_w_b");
  expect(c, d, "g", "p", 0, "global_avgpool_t", "");
  expect(c, d, "r", "r", 0, "conv", "k = [2], pad = [-2, 3], weight = W_r_r^T");
  expect(c, d, "a", "img", 0, "conv", "k = [3, 3], pad = [1, 1, 1, 1], weight = K[0 .. 3, 0 .. 3, 0 .. 2, 1 .. 4]^T");
  /* whole terms, in both styles */
  const IrArrow *qy = arrow(m, "q", "y", 0), *hq = arrow(m, "h", "q", 0), *rr = arrow(m, "r", "r", 0);
  cr_assert_str_eq(ir_arrow_text(c->a, m, qy, "q", IR_TEXT_MACH), "dense(q, weight = transpose(D[0 .. 2, 4 .. 7]))");
  cr_assert_str_eq(ir_arrow_text(c->a, m, qy, "z_q", IR_TEXT_MATH), "z_q D[0 .. 2, 4 .. 7]^T");
  cr_assert_str_eq(ir_arrow_text(c->a, m, hq, "h", IR_TEXT_MACH), "h");
  cr_assert_str_eq(ir_arrow_text(c->a, m, rr, "r", IR_TEXT_MACH), "conv(r, lags = 2 ..= 3, weight = W_r_r)");
  cr_assert_str_eq(ir_arrow_text(c->a, d, arrow(d, "r", "r", 0), "r", IR_TEXT_MACH),
                   "conv(r, k = [2], pad = [-2, 3], weight = transpose(W_r_r))");
  compiled_free(c);
}

/* ---- every view shows the renderer's text ---------------------------------- */

static char *captured(void (*fn)(const IrMachine *, FILE *), const IrMachine *m) {
  char *s = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&s, &n);
  fn(m, f);
  fclose(f);
  return s;
}

static void dot_primal(const IrMachine *m, FILE *f) { dot_write(m, NULL, f); }

/* The DOT label writes an arrow's options one to a line. */
static char *dot_label(Arena *a, const char *kind, const char *args) {
  char *s = arena_printf(a, "label=\"%s%s%s\"", kind, *args ? "\\n" : "", args);
  char *w = s;
  int depth = 0;
  for (char *r = s; *r; r++) {
    depth += *r == '[' ? 1 : *r == ']' ? -1 : 0;
    if (depth == 0 && r[0] == ',' && r[1] == ' ') {
      *w++ = '\\';
      *w++ = 'n';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
  return s;
}

/* The buffer an arrow reads in the generated C: z of its source, or y when
 * the source has no activation (zbar and ybar in the dual solve). */
static const char *buffer(Arena *a, const IrMachine *m, const IrArrow *ar) {
  const IrBlock *s = IR_BLOCK(m, ar->src);
  bool dual = m->primal != NULL, lin = s->act.kind == ACT_IDENTITY;
  return arena_printf(a, "%s%s", dual ? (lin ? "zbar_" : "ybar_") : (lin ? "y_" : "z_"), s->cname);
}

static void check_views(const Compiled *c, const IrMachine *m, const char *code) {
  StrBuf printed = {0};
  print_machine(m, &printed);
  char *explained = m->primal ? NULL : captured(explain_machine, m);
  char *dot = m->primal ? NULL : captured(dot_primal, m);
  if (explained) /* a causal machine: explain must not say it runs backwards */
    cr_assert_null(strstr(explained, "backwards"), "%s", explained);
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    const char *src = IR_BLOCK(m, ar->src)->name, *dst = IR_BLOCK(m, ar->dst)->name;
    const char *mach = ir_arrow_text(c->a, m, ar, src, IR_TEXT_MACH);
    const char *math = ir_arrow_text(c->a, m, ar, buffer(c->a, m, ar), IR_TEXT_MATH);
    const char *args = ir_arrow_args(c->a, m, ar, IR_TEXT_MATH);
    cr_assert(strstr(printed.data, mach), "%s -> %s: '%s' not in the printed machine:\n%s", src, dst,
              mach, printed.data);
    cr_assert(strstr(code, math), "%s -> %s: '%s' not in the C comments", src, dst, math);
    if (explained) {
      const char *line = arena_printf(c->a, "%-8s %s", ir_arrow_kind(ar), args);
      cr_assert(strstr(explained, line), "%s -> %s: '%s' not in explain:\n%s", src, dst, line, explained);
    }
    if (dot) {
      const char *label = dot_label(c->a, ir_arrow_kind(ar), args);
      cr_assert(strstr(dot, label), "%s -> %s: '%s' not in the DOT graph:\n%s", src, dst, label, dot);
    }
  }
  sb_free(&printed);
  free(explained);
  free(dot);
}

Test(arrow_text, every_view_agrees) {
  Compiled *c = compile("tests/machines/every_arrow.mach");
  EmitOptions eo = {.backward = true, .header_name = "every.h", .c_name = "every.c"};
  StrBuf code = {0}, h = {0};
  emit_c(c->m, c->dual, &eo, &code, &h);
  check_views(c, c->m, code.data);
  check_views(c, c->dual, code.data);
  sb_free(&code);
  sb_free(&h);
  compiled_free(c);
}
