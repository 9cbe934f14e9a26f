/* test_kernels.c — the prelude of the generated code (compiler/emit_kernels.c)
 * and its two sets of kernels.
 *
 * - The prelude itself, read as text: the tuned one defines each kernel
 *   once, after every kernel and constant it uses; a body gets exactly the
 *   kernels it names and what they call; the plain one (--kernels=plain)
 *   defines the same kernels with the same signatures and no tiling, SIMD
 *   or threading helper.
 * - Numbers: machines compiled both ways (f64) give the same forward state,
 *   dual state and parameter gradients to 1e-12 relative, for a dense
 *   machine with blocks wider than the register tiles, a 2-D convolution
 *   machine with strides, dilations and both pools, and a recurrent machine
 *   (causal convolutions in time); and a few training steps of the
 *   convolution machine write the same weights. Each machine is first shown
 *   to call the tiled kernels, so that the comparison reaches them. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_machines.h"
#include "e2e_util.h"
#include "emit_internal.h"

TestSuite(kernels_prelude);
TestSuite(kernels_plain, .fini = e2e_cleanup, .timeout = 240);

/* ---- the prelude as text ------------------------------------------------------ */

/* Every name the call sites of the generated code use from the prelude. */
static const char every_call[] =
    "mm_acc mm_nt mm_grid mm_taps mm_rows split_groups bias_set bias_grad o_first o_end add_to NB PAR_WORK "
    "act_tanh act_sigmoid act_relu act_leaky_relu act_gelu act_softplus act_sin d_tanh d_sigmoid "
    "d_relu d_leaky_relu d_gelu d_softplus d_sin softmax_ch softmax_jvp softmax_gate";

static char *prelude(bool plain, bool f32, int vec_bytes, const char *body) {
  EmitOptions o = {.f32 = f32, .vec_bytes = vec_bytes, .plain_kernels = plain};
  StrBuf c = {0};
  emit_kernels(&c, &o, body);
  return c.data;
}

static bool word_char(char c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* A function defined in the prelude: its name and where its text lies, from
 * its "static" line to its closing brace at the start of a line. */
typedef struct Def {
  char name[32];
  const char *start, *end;
} Def;

/* The functions the prelude defines (at most max), in order. */
static int defs_of(const char *text, Def *out, int max) {
  int n = 0;
  for (const char *l = text; *l && n < max; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
    if (strncmp(l, "static ", 7) != 0)
      continue;
    const char *paren = strchr(l, '('), *w = paren;
    while (w > l && word_char(w[-1]))
      w--;
    Def *d = &out[n++];
    snprintf(d->name, sizeof d->name, "%.*s", (int)(paren - w), w);
    d->start = l;
    const char *brace = strchr(paren, '{'), *end = brace;
    if (strchr(paren, '\n') > brace) /* a one-line function */
      end = strchr(brace, '\n');
    else
      end = strstr(paren, "\n}\n") + 2;
    d->end = end;
  }
  return n;
}

static int find_def(const Def *d, int n, const char *name) {
  for (int i = 0; i < n; i++)
    if (strcmp(d[i].name, name) == 0)
      return i;
  return -1;
}

/* Whether text [s, e) names `name` as a whole word. */
static bool names(const char *s, const char *e, const char *name) {
  size_t n = strlen(name);
  for (const char *p = s; p + n <= e; p++)
    if (memcmp(p, name, n) == 0 && (p == s || !word_char(p[-1])) && (p + n == e || !word_char(p[n])))
      return true;
  return false;
}

/* Each function is defined once; the functions and the enum constants it
 * uses are defined before it. Returns the number of functions. */
static int check_order(const char *text, const char *what) {
  Def d[64];
  int n = defs_of(text, d, 64);
  cr_assert_gt(n, 0, "%s: no function", what);
  const char *enum_at = strstr(text, "enum {");
  for (int i = 0; i < n; i++) {
    cr_assert_eq(find_def(d, n, d[i].name), i, "%s: %s defined twice", what, d[i].name);
    for (int j = 0; j < n; j++)
      if (j != i && names(strchr(d[i].start, '('), d[i].end, d[j].name))
        cr_assert_lt(j, i, "%s: %s calls %s, defined after it", what, d[i].name, d[j].name);
    static const char *const consts[] = {"NB", "MR", "KC", "PAR_WORK"};
    for (int k = 0; k < 4; k++)
      if (names(d[i].start, d[i].end, consts[k]))
        cr_assert(enum_at && enum_at < d[i].start && names(enum_at, strchr(enum_at, ';'), consts[k]),
                  "%s: %s uses %s before its enum", what, d[i].name, consts[k]);
  }
  cr_assert_null(strchr(text, '$'), "%s: a parameter left unsubstituted", what);
  return n;
}

Test(kernels_prelude, tuned_defines_each_kernel_once_after_what_it_calls) {
  for (int f32 = 0; f32 <= 1; f32++) {
    char *t = prelude(false, f32, 64, every_call);
    int n = check_order(t, f32 ? "tuned f32" : "tuned f64");
    Def d[64];
    defs_of(t, d, 64);
    /* the helpers of the tiled kernels are there, after their own helpers */
    static const char *const chain[][3] = {{"mm_micro", "mm_gen_seq", "mm_gen"}, {"mm_gen", "mm_acc", "mm_nt"},
                                           {"taps_micro", "taps_cols", "mm_taps"},
                                           {"rows_micro", "rows_block", "mm_rows"},
                                           {"rows_narrow", "rows_block", "mm_rows"}};
    for (int c = 0; c < 5; c++) {
      int a = find_def(d, n, chain[c][0]), b = find_def(d, n, chain[c][1]), e = find_def(d, n, chain[c][2]);
      cr_assert(a >= 0 && a < b && b < e, "%s, %s, %s out of order", chain[c][0], chain[c][1], chain[c][2]);
    }
    cr_assert_eq(find_def(d, n, "exp_vec") >= 0, f32, "exp_vec only in the tuned float prelude");
    if (f32)
      cr_assert_lt(find_def(d, n, "exp_vec"), find_def(d, n, "act_tanh"));
    cr_assert_lt(find_def(d, n, "act_sigmoid"), find_def(d, n, "d_softplus"));
    free(t);
  }
}

/* The closure: what the body names, what that calls, nothing else. */
Test(kernels_prelude, a_body_gets_what_it_names_and_what_that_calls) {
  char *t = prelude(false, false, 64, "    mm_acc(batch, 3, 4, z, 4, 1, W, 3, y, 3);\n");
  Def d[64];
  int n = defs_of(t, d, 64);
  static const char *const want[] = {"mm_micro", "mm_micro_half", "mm_gen_seq", "mm_gen", "mm_acc"};
  cr_assert_eq(n, 5, "%d functions", n);
  for (int i = 0; i < 5; i++)
    cr_assert_str_eq(d[i].name, want[i]);
  cr_assert(strstr(t, "enum { MR = 4,"), "the tiles' enum");
  free(t);
  t = prelude(true, false, 64, "    mm_acc(batch, 3, 4, z, 4, 1, W, 3, y, 3);\n");
  n = defs_of(t, d, 64);
  cr_assert_eq(n, 1);
  cr_assert_str_eq(d[0].name, "mm_acc");
  cr_assert_null(strstr(t, "enum"), "plain mm_acc needs no constant:\n%s", t);
  free(t);
  t = prelude(false, true, 64, "z[k] = d_softplus(y[k], z[k]) * zbar[k];");
  n = defs_of(t, d, 64);
  cr_assert_eq(n, 3, "exp_vec, act_sigmoid, d_softplus:\n%s", t);
  cr_assert_str_eq(d[0].name, "exp_vec");
  cr_assert_str_eq(d[1].name, "act_sigmoid");
  cr_assert_str_eq(d[2].name, "d_softplus");
  free(t);
}

/* NB: two vectors of the target, in the enum of both preludes. */
Test(kernels_prelude, nb_follows_the_vector_width) {
  static const struct { bool f32; int bytes; const char *nb; } cases[] = {
      {true, 64, "NB = 32,"}, {true, 32, "NB = 16,"}, {false, 64, "NB = 16,"}, {false, 16, "NB = 4,"}};
  for (int i = 0; i < 4; i++)
    for (int plain = 0; plain <= 1; plain++) {
      char *t = prelude(plain, cases[i].f32, cases[i].bytes, "mm_rows");
      cr_assert(strstr(t, cases[i].nb), "%s expected:\n%s", cases[i].nb, t);
      free(t);
    }
}

/* The signature of function d: its text up to the opening brace, blanks
 * squeezed. */
static char *signature(const Def *d) {
  const char *brace = strchr(d->start, '{');
  char *s = malloc((size_t)(brace - d->start) + 1), *o = s;
  for (const char *p = d->start; p < brace; p++)
    if (!(*p == ' ' || *p == '\n') || (o > s && o[-1] != ' '))
      *o++ = *p == '\n' ? ' ' : *p;
  while (o > s && o[-1] == ' ')
    o--;
  *o = '\0';
  return s;
}

Test(kernels_prelude, plain_has_the_same_kernels_and_no_tiling) {
  for (int f32 = 0; f32 <= 1; f32++) {
    char *p = prelude(true, f32, 64, every_call), *t = prelude(false, f32, 64, every_call);
    const char *what = f32 ? "plain f32" : "plain f64";
    int np = check_order(p, what);
    Def dp[64], dt[64];
    int nt = defs_of(t, dt, 64);
    defs_of(p, dp, 64);
    /* every kernel the call sites use, with the tuned signature */
    int kernels = 0;
    for (const char *w = every_call; *w;) {
      size_t len = strcspn(w, " ");
      char name[32];
      snprintf(name, sizeof name, "%.*s", (int)len, w);
      w += len + (w[len] == ' ');
      if (strcmp(name, "NB") == 0 || strcmp(name, "PAR_WORK") == 0) {
        cr_assert(names(strstr(p, "enum {"), strchr(strstr(p, "enum {"), ';'), name), "%s: %s", what, name);
        continue;
      }
      kernels++;
      int i = find_def(dp, np, name), j = find_def(dt, nt, name);
      cr_assert(i >= 0 && j >= 0, "%s: %s missing", what, name);
      char *a = signature(&dp[i]), *b = signature(&dt[j]);
      cr_assert_str_eq(a, b, "%s: %s's signature differs", what, name);
      free(a);
      free(b);
    }
    /* and nothing else: no helper of the tiled kernels, no threads, no
     * register tiles, no vector exp */
    cr_assert_eq(np, kernels, "%s: %d functions for %d kernels", what, np, kernels);
    static const char *const banned[] = {"mm_micro", "mm_micro_half", "mm_gen", "mm_gen_seq", "taps_micro", "taps_cols",
                                         "rows_micro", "rows_narrow", "rows_block", "bias_grad_ch", "bias_sample", "exp_vec", "MR",
                                         "KC", "omp", "pragma", "_OPENMP"};
    for (size_t k = 0; k < sizeof banned / sizeof *banned; k++)
      cr_assert(!names(p, p + strlen(p), banned[k]), "%s names %s", what, banned[k]);
    free(p);
    free(t);
  }
}

/* ---- the numbers, both ways ------------------------------------------------------ */

/* A 2-D machine with every kind of grid arrow: stride-1 convolutions wide
 * enough for the windowed products (mm_taps, and mm_rows for their kernel
 * gradients), a dilated one, strided ones (per-tap mm_grid), average pooling
 * with stride and dilation, global pooling, a dense readout. */
static const char conv_src[] =
    "machine c2 {\n"
    "    input  x : 3 @ [12, 10]\n"
    "    block  h : 8 @ [12, 10] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  d : 8 @ [8, 6] = sigmoid(conv(h, k = 3, dilation = 2) + bias)\n"
    "    block  s : 6 @ [5, 5] = softplus(conv(h, k = [3, 2], stride = 2))\n"
    "    block  p : 8 @ [6, 5] = avgpool(h, k = 2, stride = 2)\n"
    "    block  q : 8 @ [3, 2] = gelu(avgpool(d, k = 2, stride = 2, dilation = 2)\n"
    "                                 + conv(p, k = 2, stride = 2, dilation = [1, 2]))\n"
    "    block  g : 8 = global_avgpool(q)\n"
    "    output y : 4 = dense(g) + dense(s) + bias\n"
    "}\n";

/* The paper's RecurMachine: causal convolutions in time, cycles through
 * earlier chunks (timeblock 5 <= pad 6). */
static const char recur_src[] = "import \"recurrent.mach\"\n"
                                "machine rec {\n"
                                "    use m = recur_machine([4, 8, 8], tanh, 6, 5, 16)\n"
                                "    output y : 2 @ [16] = conv(m.x[0 .. 3], k = 1) + bias\n"
                                "}\n";

/* Whether the generated code (after the prelude) calls kernel k. */
static bool calls(const char *c_path, const char *k) {
  char *c = e2e_read_file(c_path, NULL);
  cr_assert(c, "cannot read %s", c_path);
  const char *body = strstr(c, "\n/* ---- activations");
  cr_assert(body, "%s: no prelude", c_path);
  char *call = e2e_fmt("%s(", k);
  bool found = strstr(body, call) != NULL;
  free(call);
  free(c);
  return found;
}

/* Worst relative difference over n values, and the count above tol. The
 * floor of 1 judges values below 1 by their absolute difference: sums that
 * cancel to near 0 keep only the round-off of their terms. */
static double compare(const char *what, const double *a, const double *b, long n, double tol) {
  double worst = 0;
  for (long i = 0; i < n; i++) {
    double e = fabs(a[i] - b[i]) / fmax(1, fmax(fabs(a[i]), fabs(b[i])));
    cr_expect(e <= tol, "%s[%ld]: tuned %.17g, plain %.17g", what, i, a[i], b[i]);
    worst = fmax(worst, e);
  }
  return worst;
}

/* Forward, then backward (the whole dual machine, input gradients included,
 * and the parameter gradients), into buffers poisoned with nan: a kernel
 * that writes its result (mm_set) must not read what was there. */
static E2ePass run_pass(const char *src, const char *prefix, const char *flag, long batch) {
  E2ePass p = e2e_pass_new(e2e_load_model_with(src, prefix, flag), batch, 11, 0.5, 1);
  for (long i = 0; i < batch * p.m->state_size; i++)
    p.state[i] = p.dstate[i] = NAN;
  for (long i = 0; i < p.m->param_size; i++)
    p.dparams[i] = NAN;
  p.m->forward(p.params, (const double *const *)p.in, p.state, batch);
  p.m->backward(p.params, p.state, (const double *const *)p.cot, p.dstate, p.dparams, batch, 1, NULL,
                NULL);
  return p;
}

/* The machine compiled with the tuned and the plain kernels: the tuned code
 * calls each kernel of `kernels` (space-separated); state, dual state and
 * parameter gradients agree. */
static void check_both_ways(const char *src, const char *prefix, long batch, const char *kernels) {
  E2ePass t = run_pass(src, prefix, NULL, batch), p = run_pass(src, prefix, "--kernels=plain", batch);
  for (const char *w = kernels; *w;) {
    size_t n = strcspn(w, " ");
    char *k = e2e_fmt("%.*s", (int)n, w);
    cr_assert(calls(t.mod.c_path, k), "%s: the tuned code does not call %s", prefix, k);
    free(k);
    w += n + (w[n] == ' ');
  }
  char *plain_c = e2e_read_file(p.mod.c_path, NULL);
  cr_assert(plain_c && !strstr(plain_c, "mm_micro"), "%s: plain code with mm_micro", prefix);
  free(plain_c);
  const struct mach_model *m = t.mod.m;
  long ns = batch * m->state_size;
  double w1 = compare("state", t.state, p.state, ns, 1e-12);
  double w2 = compare("dstate", t.dstate, p.dstate, ns, 1e-12);
  for (long i = 0; i < m->param_size; i++) /* unread: both leave the poison */
    if (!e2e_param_read(m, i)) {
      cr_expect(isnan(t.dparams[i]) && isnan(p.dparams[i]), "dparams[%ld] is not read, but written", i);
      t.dparams[i] = p.dparams[i] = 0;
    }
  double w3 = compare("dparams", t.dparams, p.dparams, m->param_size, 1e-12);
  cr_log_info("%s: worst relative differences state %.2g, dstate %.2g, dparams %.2g", prefix, w1, w2, w3);
  e2e_pass_free(&t);
  e2e_pass_free(&p);
}

/* Blocks wider than the register tiles (4 x NB) and panels, last blocks of
 * NB / 2 columns (40 with NB = 16) and fewer, a batch that is not a multiple
 * of 4. */
Test(kernels_plain, dense_wide_blocks) {
  const int dims[] = {70, 133, 40};
  E2eSpec *s = e2e_spec_dense("dense_net", dims, 3, "gelu", "gelu", 0);
  check_both_ways(s->src, s->prefix, 13, "mm_acc mm_nt bias_grad");
}

Test(kernels_plain, dense_every_activation) { check_both_ways(e2e_mixed.src, e2e_mixed.prefix, 6, "mm_acc mm_nt"); }

Test(kernels_plain, conv_2d_strides_dilations_pools) {
  check_both_ways(conv_src, "c2", 5, "mm_taps mm_rows bias_grad");
}

Test(kernels_plain, recurrent_machine) { check_both_ways(recur_src, "rec", 3, "mm_taps mm_rows mm_grid"); }

/* A few training steps through the binaries (compiled with OpenMP): the
 * weights written agree. */
Test(kernels_plain, training_steps_write_the_same_weights) {
  const char *tuned = e2e_compile_with(conv_src, "f64", NULL);
  const char *plain = e2e_compile_with(conv_src, "f64", "--kernels=plain");
  const char *dir = e2e_tmpdir();
  E2eRng r = {5};
  E2eArr x = e2e_arr(4, (long[]){24, 3, 12, 10}), y = e2e_arr2(24, 4);
  e2e_fill_uniform(&r, &x, -1, 1);
  e2e_fill_uniform(&r, &y, -1, 1);
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_npy_write(e2e_path(dir, "t.npy"), &y, false);
  const char *bins[2] = {tuned, plain}, *outs[2] = {"wt.npz", "wp.npz"};
  for (int i = 0; i < 2; i++) {
    E2eRun run = e2e_runl(dir, 120, bins[i], "train", "--data", "x.npy", "--targets", "t.npy", "--loss",
                          "mse", "--epochs", "2", "--batch", "8", "--quiet", "--out", outs[i], NULL);
    e2e_check_ok(&run, outs[i]);
    e2e_run_free(&run);
  }
  E2eNpz a = e2e_npz_read(e2e_path(dir, "wt.npz")), b = e2e_npz_read(e2e_path(dir, "wp.npz"));
  int seen = 0;
  for (int i = 0; i < a.n; i++) {
    if (strncmp(a.names[i], "train/", 6) == 0)
      continue;
    const E2eArr *u = &a.arrs[i], *v = e2e_npz_get(&b, a.names[i]);
    cr_assert_eq(u->n, v->n);
    double worst = compare(a.names[i], u->d, v->d, u->n, 1e-12);
    cr_log_info("%s: worst relative difference %.2g after 2 epochs", a.names[i], worst);
    seen++;
  }
  cr_assert_gt(seen, 0);
  e2e_npz_free(&a);
  e2e_npz_free(&b);
  e2e_arr_free(&x);
  e2e_arr_free(&y);
}

/* ---- the option ---------------------------------------------------------------- */

Test(kernels_plain, unknown_kernel_set_is_a_usage_error) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "m.mach"), conv_src);
  E2eRun r = e2e_runl(dir, 30, e2e_machc(), "-S", "m.mach", "--kernels=fast", NULL);
  cr_assert_eq(r.status, 2, "%s", r.err);
  cr_assert(strstr(r.err, "machc: --kernels must be tuned or plain, not 'fast'\n"), "%s", r.err);
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, e2e_machc(), "--help", NULL);
  cr_assert(strstr(r.out, "--kernels=tuned|plain"), "%s", r.out);
  e2e_run_free(&r);
}
