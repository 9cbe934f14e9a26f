/* test_e2e_grad.c — gradients and the dual machine, end to end.
 *
 * - Finite differences: for many dense machines (dims, activations, bias on
 *   and off, shared vs per-arrow weights, several inputs and outputs), the
 *   model compiled with `machc -S --dtype f64` is loaded with dlopen and the
 *   gradient of L = sum over outputs of sum(z_out * G) from backward is
 *   compared with central differences, for EVERY parameter entry and every
 *   input entry. In the same run, the dual state satisfies the dual
 *   equations and the parameter gradients are z (outer) ybar, checked against
 *   the test's own description of the arrows.
 * - The `grad` CLI: its gradients against finite differences and the test's
 *   formulas, and the dumped dual state (--dump-dual) against the dual
 *   equations, to 1e-12.
 * - The printed dual machine (`machc --emit=dual`), compiled and run as an
 *   ordinary machine on the cotangents and dsigma.NAME = sigma'(y_NAME),
 *   gives the input gradients of `grad`.
 *
 * The training of examples/poly.mach is in tests/examples (make test-examples). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_machines.h"

TestSuite(e2e_grad, .fini = e2e_cleanup, .timeout = 120);

/* Central differences. Machines with a kink (relu, leaky_relu) use the
 * two-point stencil with h = 1e-6, small enough never to step across a kink;
 * smooth machines the four-point stencil with h = 1e-4, whose truncation
 * error (h^4) is negligible and whose rounding error (eps |L| / h) is 100x
 * smaller: with the two-point stencil, rounding alone (~1e-9) exceeds
 * 1e-6 relative on the small gradient entries of the wider machines. */
#define FD_H_KINK 1e-6
#define FD_H_SMOOTH 1e-4
#define FD_TOL 1e-6
#define FD_FLOOR 1e-8

/* --- an in-process model with its buffers ------------------------------------------------ */

typedef struct Inst {
  const E2eSpec *s;
  bool kinked;
  E2eModel mod;
  const struct mach_model *m;
  long N;
  double *params, *state, *dstate, *dparams;
  double **x;   /* per model input */
  double **g;   /* per model output: cotangents */
  int *bi;      /* model block index -> spec block index */
} Inst;

static Inst inst_new(const E2eSpec *s, long N, uint64_t seed, double wscale) {
  Inst t = {.s = s, .N = N};
  for (int i = 0; i < s->nblocks; i++)
    t.kinked |= s->blocks[i].act && (strcmp(s->blocks[i].act, "relu") == 0 ||
                                     strcmp(s->blocks[i].act, "leaky_relu") == 0);
  t.mod = e2e_load_model(s->src, s->prefix);
  t.m = t.mod.m;
  const struct mach_model *m = t.m;
  cr_assert_eq(m->n_blocks, s->nblocks, "model has %d blocks, the test knows %d", m->n_blocks,
               s->nblocks);
  t.bi = calloc((size_t)m->n_blocks, sizeof(int));
  for (int i = 0; i < m->n_blocks; i++)
    t.bi[i] = e2e_spec_block(s, m->blocks[i].name);
  E2eRng rng = {seed};
  t.params = calloc((size_t)m->param_size, sizeof(double));
  t.dparams = calloc((size_t)m->param_size, sizeof(double));
  for (long k = 0; k < m->param_size; k++)
    t.params[k] = e2e_uniform(&rng, -wscale, wscale);
  t.state = calloc((size_t)(m->state_size * N), sizeof(double));
  t.dstate = calloc((size_t)(m->state_size * N), sizeof(double));
  t.x = calloc((size_t)m->n_inputs, sizeof(double *));
  for (int k = 0; k < m->n_inputs; k++) {
    const struct mach_block *b = &m->blocks[m->inputs[k]];
    cr_assert(s->blocks[t.bi[m->inputs[k]]].input, "model input %s is not an input in the spec",
              b->name);
    t.x[k] = calloc((size_t)(b->size * N), sizeof(double));
    for (long i = 0; i < b->size * N; i++)
      t.x[k][i] = e2e_uniform(&rng, -1.5, 1.5);
  }
  t.g = calloc((size_t)m->n_outputs, sizeof(double *));
  for (int k = 0; k < m->n_outputs; k++) {
    const struct mach_block *b = &m->blocks[m->outputs[k]];
    cr_assert(s->blocks[t.bi[m->outputs[k]]].output, "model output %s is not an output in the spec",
              b->name);
    t.g[k] = calloc((size_t)(b->size * N), sizeof(double));
    for (long i = 0; i < b->size * N; i++)
      t.g[k][i] = e2e_uniform(&rng, -1, 1);
  }
  int nin = 0, nout = 0;
  for (int i = 0; i < s->nblocks; i++)
    nin += s->blocks[i].input, nout += s->blocks[i].output;
  cr_assert_eq(m->n_inputs, nin);
  cr_assert_eq(m->n_outputs, nout);
  return t;
}

static double loss(Inst *t) {
  const struct mach_model *m = t->m;
  m->forward(t->params, (const double *const *)t->x, t->state, t->N);
  double L = 0;
  for (int k = 0; k < m->n_outputs; k++) {
    const struct mach_block *b = &m->blocks[m->outputs[k]];
    const double *z = t->state + t->N * b->z_offset;
    for (long i = 0; i < b->size * t->N; i++)
      L += z[i] * t->g[k][i];
  }
  return L;
}

static void backward(Inst *t) {
  const struct mach_model *m = t->m;
  m->forward(t->params, (const double *const *)t->x, t->state, t->N);
  /* poison: backward must write every dstate value it reads and every
   * gradient of an entry the machine reads (the others it leaves alone) */
  for (long i = 0; i < m->state_size * t->N; i++)
    t->dstate[i] = NAN;
  for (long i = 0; i < m->param_size; i++)
    t->dparams[i] = NAN;
  E2eReady ready = e2e_ready_new(t->dparams, m->param_size);
  m->backward(t->params, t->state, (const double *const *)t->g, t->dstate, t->dparams, t->N, 1,
              e2e_ready, &ready);
  e2e_ready_check(&ready);
}

/* The backward pass of a training step, which asks for no dLoss/dinput:
 * its parameter gradients must be bitwise those of the full pass (dp), and
 * a block of a pointwise activation keeps zbar in ybar's place, leaving
 * zbar's own the poison (a step writes one buffer per block, not two).
 * Returns how many input blocks it left unsolved (ybar still the poison). */
static int backward_without_input_grads(Inst *t, const double *dp) {
  const struct mach_model *m = t->m;
  for (long i = 0; i < m->state_size * t->N; i++)
    t->dstate[i] = NAN;
  for (long i = 0; i < m->param_size; i++)
    t->dparams[i] = NAN;
  m->backward(t->params, t->state, (const double *const *)t->g, t->dstate, t->dparams, t->N, 0, NULL, NULL);
  cr_assert(memcmp(t->dparams, dp, sizeof(double) * (size_t)m->param_size) == 0,
            "parameter gradients differ without the input gradients");
  for (int i = 0; i < m->n_blocks; i++) {
    const struct mach_block *b = &m->blocks[i];
    if (strcmp(b->activation, "identity") == 0 || strstr(b->activation, "softmax"))
      continue;
    const double *zbar = t->dstate + t->N * b->y_offset;
    for (long k = 0; k < b->size * t->N; k++)
      cr_assert(isnan(zbar[k]), "%s (%s): the training step wrote zbar[%ld] = %g", b->name, b->activation,
                k, zbar[k]);
  }
  int skipped = 0;
  for (int q = 0; q < m->n_inputs; q++)
    skipped += isnan(t->dstate[t->N * m->blocks[m->inputs[q]].z_offset]);
  return skipped;
}

static double loss_at(Inst *t, double *v, double x) {
  *v = x;
  return loss(t);
}

static double fd(Inst *t, double *v) {
  double keep = *v, d;
  if (t->kinked) {
    double h = FD_H_KINK;
    d = (loss_at(t, v, keep + h) - loss_at(t, v, keep - h)) / (2 * h);
  } else {
    double h = FD_H_SMOOTH;
    d = (8 * (loss_at(t, v, keep + h) - loss_at(t, v, keep - h)) -
         (loss_at(t, v, keep + 2 * h) - loss_at(t, v, keep - 2 * h))) /
        (12 * h);
  }
  *v = keep;
  return d;
}

static double worst_rel;

static void expect_grad(double fdv, double g, const char *what, const char *name, long k) {
  double rel = e2e_reldiff(fdv, g, FD_FLOOR);
  if (rel > worst_rel)
    worst_rel = rel;
  cr_assert(rel < FD_TOL && !isnan(g),
            "d L / d %s %s[%ld]: finite difference %.12g, backward %.12g (relative error %.3g)",
            what, name, k, fdv, g, rel);
}

/* Every parameter and input entry against central differences; the dual
 * equations and the parameter gradient formula on the dual state. */
static void check_fd(const E2eSpec *s, long N, uint64_t seed, double wscale) {
  Inst t = inst_new(s, N, seed, wscale);
  const struct mach_model *m = t.m;
  backward(&t);
  double *dp = malloc(sizeof(double) * (size_t)m->param_size);
  memcpy(dp, t.dparams, sizeof(double) * (size_t)m->param_size);
  double *dstate = malloc(sizeof(double) * (size_t)(m->state_size * N));
  memcpy(dstate, t.dstate, sizeof(double) * (size_t)(m->state_size * N));
  backward_without_input_grads(&t, dp);
  long checked = 0;
  for (int p = 0; p < m->n_params; p++) {
    const struct mach_param *mp = &m->params[p];
    for (long k = 0; k < mp->size; k++, checked++) {
      long i = mp->offset + k;
      if (e2e_param_read(m, i)) {
        expect_grad(fd(&t, &t.params[i]), dp[i], "parameter", mp->name, k);
        continue;
      }
      /* outside the live runs: the loss does not move, the poison stays */
      double d = fd(&t, &t.params[i]);
      cr_assert(d == 0 && isnan(dp[i]), "%s[%ld] is not read: finite difference %.12g (want 0), "
                "backward left %.12g (want the poison, nan)", mp->name, k, d, dp[i]);
      dp[i] = 0;
    }
  }
  for (int q = 0; q < m->n_inputs; q++) {
    const struct mach_block *b = &m->blocks[m->inputs[q]];
    const double *ybar = dstate + N * b->z_offset; /* dLoss/dy0 = ybar */
    for (long k = 0; k < b->size * N; k++, checked++)
      expect_grad(fd(&t, &t.x[q][k]), ybar[k], "input", b->name, k);
  }
  long nx = 0;
  for (int q = 0; q < m->n_inputs; q++)
    nx += m->blocks[m->inputs[q]].size * N;
  cr_assert_eq(checked, m->param_size + nx);
  /* the equations, on the state of the unperturbed parameters */
  loss(&t);
  E2eView v = e2e_view_new(s, N);
  for (int i = 0; i < m->n_blocks; i++) {
    int j = t.bi[i];
    v.y[j] = t.state + N * m->blocks[i].y_offset;
    v.z[j] = t.state + N * m->blocks[i].z_offset;
    v.zbar[j] = dstate + N * m->blocks[i].y_offset;
    v.ybar[j] = dstate + N * m->blocks[i].z_offset;
  }
  for (int q = 0; q < m->n_inputs; q++)
    v.y0[t.bi[m->inputs[q]]] = t.x[q];
  for (int q = 0; q < m->n_outputs; q++)
    v.z0bar[t.bi[m->outputs[q]]] = t.g[q];
  E2eNpz w = e2e_params_npz(m, t.params), g = e2e_params_npz(m, dp);
  cr_assert_gt(e2e_check_forward_eq(s, &w, &v, 1e-12), 0);
  cr_assert_gt(e2e_check_dual_eq(s, &w, &v, 1e-12), 0);
  cr_assert_eq(e2e_check_param_grads(s, &w, &v, &g, 1e-12), m->param_size);
  e2e_view_free(&v);
  e2e_npz_free(&w);
  e2e_npz_free(&g);
  free(dp);
  free(dstate);
}

/* `train` solves only the dual blocks the parameter gradients read: the
 * cotangents of inputs that carry no bias are left out. */
static int inputs_skipped(const E2eSpec *s, long N, uint64_t seed) {
  Inst t = inst_new(s, N, seed, 1.0);
  backward(&t);
  double *dp = malloc(sizeof(double) * (size_t)t.m->param_size);
  memcpy(dp, t.dparams, sizeof(double) * (size_t)t.m->param_size);
  int skipped = backward_without_input_grads(&t, dp);
  free(dp);
  return skipped;
}

Test(e2e_grad, training_backward_skips_the_input_cotangents) {
  const int dims[] = {2, 4, 7, 1};
  cr_assert_eq(inputs_skipped(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 3, 121), 1);
  cr_assert_eq(inputs_skipped(e2e_spec_poly(), 3, 122), 1);
  cr_assert_eq(inputs_skipped(&e2e_mixed, 3, 123), 1); /* u; x = softplus(input + dense(u)) is needed */
}

Test(e2e_grad, fd_paper_dense_machine_tanh) {
  const int dims[] = {2, 4, 7, 1};
  check_fd(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 3, 101, 1.0);
}

Test(e2e_grad, fd_dense_machine_sigmoid_relu_sin) {
  const int d1[] = {3, 2, 5};
  check_fd(e2e_spec_dense("dense_machine", d1, 3, "sigmoid", "sigmoid", 0), 4, 102, 1.0);
  const int d2[] = {4, 6, 3, 2};
  check_fd(e2e_spec_dense("dense_machine", d2, 4, "relu", "relu", 0), 3, 103, 1.0);
  const int d3[] = {2, 2, 2, 2, 2, 2};
  check_fd(e2e_spec_dense("dense_machine", d3, 6, "sin", "sin", 0), 2, 104, 1.0);
}

Test(e2e_grad, fd_dense_net_bias_gelu_softplus_leaky) {
  const int d1[] = {3, 5, 4, 2};
  check_fd(e2e_spec_dense("dense_net", d1, 4, "gelu", "gelu", 0), 3, 105, 1.0);
  const int d2[] = {1, 4, 1};
  check_fd(e2e_spec_dense("dense_net", d2, 3, "softplus", "softplus", 0), 5, 106, 1.0);
  const int d3[] = {5, 3, 3, 4};
  check_fd(e2e_spec_dense("dense_net", d3, 4, "leaky_relu(alpha = 0.2)", "leaky_relu", 0.2), 3,
           107, 1.0);
  const int d4[] = {2, 3};
  check_fd(e2e_spec_dense("dense_net", d4, 2, "identity", NULL, 0), 4, 108, 1.0);
}

Test(e2e_grad, fd_hand_written_machines) {
  check_fd(&e2e_mixed, 3, 109, 1.0);
  check_fd(&e2e_shortcut, 3, 110, 1.0);
  check_fd(&e2e_shared, 3, 111, 1.0);
  check_fd(e2e_spec_poly(), 4, 112, 1.0);
  check_fd(&e2e_repeat, 3, 113, 1.0);
  check_fd(&e2e_seq, 3, 114, 1.0);
  check_fd(&e2e_passthru, 3, 117, 1.0);
}

/* Blocks wider than the kernels' register tiles, batches of 5 and 9. */
Test(e2e_grad, fd_wide_blocks_exercise_tiled_kernels) {
  const int d1[] = {20, 33, 17};
  check_fd(e2e_spec_dense("dense_machine", d1, 3, "tanh", "tanh", 0), 9, 115, 0.3);
  const int d2[] = {19, 40, 5, 24};
  check_fd(e2e_spec_dense("dense_net", d2, 4, "softplus", "softplus", 0), 5, 116, 0.3);
}

/* --- the grad CLI ------------------------------------------------------------------------------ */

typedef struct Cli {
  const char *dir, *bin, *weights;
  E2eNpz w;
  E2eArr *x, *g; /* per spec block */
  const char *argv[64];
  int argc;
  const char *batch; /* grad's --batch; NULL: 2 */
} Cli;

static Cli cli_setup(const E2eSpec *s, long N, uint64_t seed) {
  Cli c = {.dir = e2e_tmpdir()};
  c.bin = e2e_compile(s->src, "f64");
  c.w = e2e_random_weights(c.bin, c.dir, seed, 1.0);
  c.weights = e2e_path(c.dir, "w.npz");
  c.x = calloc((size_t)s->nblocks, sizeof *c.x);
  c.g = calloc((size_t)s->nblocks, sizeof *c.g);
  E2eRng rng = {seed + 99};
  for (int i = 0; i < s->nblocks; i++) {
    const E2eBlock *b = &s->blocks[i];
    if (b->input) {
      c.x[i] = e2e_arr2(N, b->size);
      e2e_fill_uniform(&rng, &c.x[i], -1.5, 1.5);
      char *p = e2e_path(c.dir, e2e_fmt("x%d.npy", i));
      e2e_npy_write(p, &c.x[i], false);
      c.argv[c.argc++] = "--input";
      c.argv[c.argc++] = e2e_fmt("%s=%s", b->name, p);
    }
    if (b->output) {
      c.g[i] = e2e_arr2(N, b->size);
      e2e_fill_uniform(&rng, &c.g[i], -1, 1);
      char *p = e2e_path(c.dir, e2e_fmt("g%d.npy", i));
      e2e_npy_write(p, &c.g[i], false);
      c.argv[c.argc++] = "--cotangent";
      c.argv[c.argc++] = e2e_fmt("%s=%s", b->name, p);
    }
  }
  return c;
}

/* BIN grad ...: returns D, S (state) and B (dual state). */
static void cli_grad(const Cli *c, E2eNpz *D, E2eNpz *S, E2eNpz *B) {
  const char *argv[96];
  int n = 0;
  argv[n++] = c->bin;
  argv[n++] = "grad";
  argv[n++] = "--weights";
  argv[n++] = c->weights;
  for (int i = 0; i < c->argc; i++)
    argv[n++] = c->argv[i];
  char *d = e2e_path(c->dir, "d.npz"), *st = e2e_path(c->dir, "s.npz"),
       *b = e2e_path(c->dir, "b.npz");
  const char *tail[] = {"--output", d, "--dump-state", st, "--dump-dual", b, "--batch", c->batch ? c->batch : "2"};
  for (int i = 0; i < 8; i++)
    argv[n++] = tail[i];
  argv[n] = NULL;
  E2eRun r = e2e_run(c->dir, 30, argv);
  e2e_check_ok(&r, "grad");
  e2e_run_free(&r);
  *D = e2e_npz_read(d);
  *S = e2e_npz_read(st);
  *B = e2e_npz_read(b);
}

static E2eView cli_view(const E2eSpec *s, const Cli *c, const E2eNpz *S, const E2eNpz *B, long N) {
  E2eView v = e2e_view_new(s, N);
  for (int i = 0; i < s->nblocks; i++) {
    const char *nm = s->blocks[i].name;
    v.y[i] = e2e_npz_get(S, e2e_fmt("y.%s", nm))->d;
    v.z[i] = e2e_npz_get(S, e2e_fmt("z.%s", nm))->d;
    v.zbar[i] = e2e_npz_get(B, e2e_fmt("zbar.%s", nm))->d;
    v.ybar[i] = e2e_npz_get(B, e2e_fmt("ybar.%s", nm))->d;
    cr_assert_eq(e2e_npz_get(B, e2e_fmt("ybar.%s", nm))->n, N * s->blocks[i].size);
    v.y0[i] = s->blocks[i].input ? c->x[i].d : NULL;
    v.z0bar[i] = s->blocks[i].output ? c->g[i].d : NULL;
  }
  return v;
}

/* The grad CLI on the machine of spec: its dumped dual state satisfies the
 * dual equations, its gradients are the formulas' and the finite
 * differences' (computed in process on the same weights and inputs). */
static void check_grad_cli(const E2eSpec *s, long N, uint64_t seed) {
  Cli c = cli_setup(s, N, seed);
  E2eNpz D, S, B;
  cli_grad(&c, &D, &S, &B);
  cr_assert_eq(B.n, 2 * s->nblocks);
  E2eView v = cli_view(s, &c, &S, &B, N);
  cr_assert_gt(e2e_check_forward_eq(s, &c.w, &v, 1e-12), 0);
  cr_assert_gt(e2e_check_dual_eq(s, &c.w, &v, 1e-12), 0);
  cr_assert_gt(e2e_check_param_grads(s, &c.w, &v, &D, 1e-12), 0);
  int nin = 0;
  for (int i = 0; i < s->nblocks; i++) {
    if (!s->blocks[i].input)
      continue;
    nin++;
    const E2eArr *gx = e2e_npz_get(&D, s->blocks[i].name);
    cr_assert(gx->ndim == 2 && gx->shape[0] == N && gx->shape[1] == s->blocks[i].size);
    for (long k = 0; k < gx->n; k++)
      cr_assert_eq(gx->d[k], v.ybar[i][k], "input gradient %s[%ld] is not ybar", s->blocks[i].name,
                   k);
  }
  cr_assert_eq(D.n, nin + c.w.n, "D has %d entries: want %d inputs and %d parameters", D.n, nin,
               c.w.n);

  /* finite differences in process, on the CLI's weights and inputs */
  Inst t = inst_new(s, N, seed, 1.0);
  const struct mach_model *m = t.m;
  for (int p = 0; p < m->n_params; p++) {
    const E2eArr *a = e2e_npz_get(&c.w, m->params[p].name);
    cr_assert_eq(a->n, m->params[p].size);
    memcpy(t.params + m->params[p].offset, a->d, sizeof(double) * (size_t)a->n);
  }
  for (int q = 0; q < m->n_inputs; q++)
    memcpy(t.x[q], c.x[t.bi[m->inputs[q]]].d, sizeof(double) * (size_t)(N * m->blocks[m->inputs[q]].size));
  for (int q = 0; q < m->n_outputs; q++)
    memcpy(t.g[q], c.g[t.bi[m->outputs[q]]].d, sizeof(double) * (size_t)(N * m->blocks[m->outputs[q]].size));
  for (int p = 0; p < m->n_params; p++) {
    const E2eArr *gp = e2e_npz_get(&D, m->params[p].name);
    for (long k = 0; k < gp->n; k++)
      expect_grad(fd(&t, &t.params[m->params[p].offset + k]), gp->d[k], "parameter (CLI)",
                  m->params[p].name, k);
  }
  for (int q = 0; q < m->n_inputs; q++) {
    const char *nm = m->blocks[m->inputs[q]].name;
    const E2eArr *gx = e2e_npz_get(&D, nm);
    for (long k = 0; k < gx->n; k++)
      expect_grad(fd(&t, &t.x[q][k]), gx->d[k], "input (CLI)", nm, k);
  }
  e2e_view_free(&v);
  e2e_npz_free(&D);
  e2e_npz_free(&S);
  e2e_npz_free(&B);
}

Test(e2e_grad, cli_grad_mixed_two_inputs_two_outputs) { check_grad_cli(&e2e_mixed, 5, 201); }

Test(e2e_grad, cli_grad_shared_parameters) { check_grad_cli(&e2e_shared, 5, 202); }

Test(e2e_grad, cli_grad_input_that_is_an_output) { check_grad_cli(&e2e_passthru, 4, 205); }

Test(e2e_grad, cli_grad_paper_dense_machine) {
  const int dims[] = {2, 4, 7, 1};
  check_grad_cli(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 5, 203);
}

/* The f32 binary's gradients, from the same weights, inputs and cotangents,
 * agree with the f64 one's to float rounding: blocks wide enough for the
 * tiled kernels' f32 paths (full NB = 32 column blocks of W^T transposed TR
 * rows at a time, and the rows left over; last blocks of exactly NB / 2 and
 * of fewer columns), batches of 2 MR + 1 samples. */
Test(e2e_grad, cli_grad_f32_agrees_with_f64) {
  const int dims[] = {48, 70, 37};
  const E2eSpec *s = e2e_spec_dense("dense_net", dims, 3, "tanh", "gelu", 0);
  Cli c = cli_setup(s, 9, 206);
  c.batch = "9";
  E2eNpz D64, D32, S, B;
  cli_grad(&c, &D64, &S, &B);
  e2e_npz_free(&S);
  e2e_npz_free(&B);
  c.bin = e2e_compile(s->src, "f32");
  cli_grad(&c, &D32, &S, &B);
  cr_assert_eq(D32.n, D64.n);
  double worst = 0;
  for (int k = 0; k < D64.n; k++) {
    const E2eArr *a = &D64.arrs[k], *b = e2e_npz_get(&D32, D64.names[k]);
    cr_assert_eq(a->n, b->n, "%s", D64.names[k]);
    for (long i = 0; i < a->n; i++) {
      double d = fabs(a->d[i] - b->d[i]) / fmax(1.0, fabs(a->d[i]));
      worst = fmax(worst, d);
      cr_assert(d < 1e-4, "%s[%ld]: f64 %.17g, f32 %.9g", D64.names[k], i, a->d[i], b->d[i]);
    }
  }
  cr_assert(worst > 0, "f32 and f64 gradients are identical: is the f32 build double?");
  e2e_npz_free(&D64);
  e2e_npz_free(&D32);
  e2e_npz_free(&S);
  e2e_npz_free(&B);
}

/* Without --cotangent for an output, its cotangent is zero. */
Test(e2e_grad, cli_missing_cotangent_is_zero) {
  const E2eSpec *s = &e2e_mixed;
  Cli c = cli_setup(s, 4, 204);
  E2eNpz D, S, B;
  cli_grad(&c, &D, &S, &B);
  /* drop the cotangent of o; its g becomes zero */
  Cli c2 = c;
  c2.argc = 0;
  int io = e2e_spec_block(s, "o");
  for (int i = 0; i < c.argc; i += 2)
    if (!(strcmp(c.argv[i], "--cotangent") == 0 && strncmp(c.argv[i + 1], "o=", 2) == 0)) {
      c2.argv[c2.argc++] = c.argv[i];
      c2.argv[c2.argc++] = c.argv[i + 1];
    }
  cr_assert_eq(c2.argc, c.argc - 2);
  E2eNpz D2, S2, B2;
  cli_grad(&c2, &D2, &S2, &B2);
  c.g[io] = e2e_arr2(4, 2); /* zero */
  E2eView v = cli_view(s, &c, &S2, &B2, 4);
  cr_assert_gt(e2e_check_dual_eq(s, &c.w, &v, 1e-12), 0);
  cr_assert_gt(e2e_check_param_grads(s, &c.w, &v, &D2, 1e-12), 0);
  /* and it differs from the gradient with the cotangent */
  const E2eArr *a = e2e_npz_get(&D, "u"), *b = e2e_npz_get(&D2, "u");
  double diff = 0;
  for (long k = 0; k < a->n; k++)
    diff += fabs(a->d[k] - b->d[k]);
  cr_assert_gt(diff, 1e-6);
  e2e_view_free(&v);
}

/* --- the printed dual machine ------------------------------------------------------------------ */

static void check_printed_dual(const E2eSpec *s, long N, uint64_t seed) {
  Cli c = cli_setup(s, N, seed);
  E2eNpz D, S, B;
  cli_grad(&c, &D, &S, &B);
  /* the dual machine as .mach source */
  char *src = e2e_path(c.dir, "model.mach");
  e2e_write_text(src, s->src);
  E2eRun r = e2e_runl(c.dir, 30, e2e_machc(), "--emit=dual", "model.mach", NULL);
  e2e_check_ok(&r, "machc --emit=dual");
  char *dual_src = r.out;
  r.out = NULL;
  e2e_run_free(&r);
  cr_assert(strstr(dual_src, "machine "), "--emit=dual printed no machine:\n%s", dual_src);
  const char *dbin = e2e_compile(dual_src, "f64");
  /* its inputs: the cotangents (named like the primal outputs) and
   * dsigma.NAME = sigma'(y_NAME) for every block with an activation */
  const char *argv[128];
  int n = 0;
  argv[n++] = dbin;
  argv[n++] = "forward";
  argv[n++] = "--weights";
  argv[n++] = c.weights;
  int ndsigma = 0;
  for (int i = 0; i < s->nblocks; i++) {
    const E2eBlock *b = &s->blocks[i];
    if (b->output) {
      argv[n++] = "--input";
      argv[n++] = e2e_fmt("%s=%s", b->name, e2e_path(c.dir, e2e_fmt("g%d.npy", i)));
    }
    if (b->act && strcmp(b->act, "identity") != 0) {
      const E2eArr *y = e2e_npz_get(&S, e2e_fmt("y.%s", b->name));
      E2eArr ds = e2e_arr2(N, b->size);
      for (long k = 0; k < ds.n; k++)
        ds.d[k] = e2e_dact(b->act, b->alpha, y->d[k]);
      char *p = e2e_path(c.dir, e2e_fmt("dsigma%d.npy", i));
      e2e_npy_write(p, &ds, false);
      argv[n++] = "--input";
      argv[n++] = e2e_fmt("dsigma.%s=%s", b->name, p);
      ndsigma++;
    }
  }
  cr_assert_gt(ndsigma, 0);
  char *out = e2e_path(c.dir, "dual_out.npz");
  argv[n++] = "--output";
  argv[n++] = out;
  argv[n] = NULL;
  r = e2e_run(c.dir, 30, argv);
  e2e_check_ok(&r, e2e_fmt("forward of the printed dual machine\n%s", dual_src));
  e2e_run_free(&r);
  E2eNpz O = e2e_npz_read(out);
  int nin = 0;
  for (int i = 0; i < s->nblocks; i++) {
    const E2eBlock *b = &s->blocks[i];
    if (!b->input)
      continue;
    nin++;
    const E2eArr *got = e2e_npz_get(&O, b->name), *want = e2e_npz_get(&D, b->name);
    cr_assert_eq(got->n, want->n);
    for (long k = 0; k < got->n; k++)
      cr_assert(fabs(got->d[k] - want->d[k]) <= 1e-12 * fmax(1, fabs(want->d[k])),
                "dual machine output %s[%ld] = %.17g, grad says %.17g\n%s", b->name, k, got->d[k],
                want->d[k], dual_src);
  }
  cr_assert_eq(O.n, nin, "the dual machine has %d outputs, the primal %d inputs", O.n, nin);
  free(dual_src);
}

Test(e2e_grad, printed_dual_machine_paper_dense_machine) {
  const int dims[] = {2, 4, 7, 1};
  check_printed_dual(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 4, 301);
}

Test(e2e_grad, printed_dual_machine_mixed) { check_printed_dual(&e2e_mixed, 4, 302); }

Test(e2e_grad, printed_dual_machine_shared_and_shortcut) {
  check_printed_dual(&e2e_shared, 4, 303);
  check_printed_dual(&e2e_shortcut, 4, 304);
}

Test(e2e_grad, printed_dual_machine_poly_repeat_seq) {
  check_printed_dual(e2e_spec_poly(), 3, 306);
  check_printed_dual(&e2e_repeat, 3, 307);
  check_printed_dual(&e2e_seq, 3, 308);
  check_printed_dual(&e2e_passthru, 3, 309);
}

Test(e2e_grad, printed_dual_machine_dense_net_leaky) {
  const int dims[] = {3, 4, 2};
  check_printed_dual(e2e_spec_dense("dense_net", dims, 3, "leaky_relu(alpha = 0.2)", "leaky_relu",
                                    0.2),
                     4, 305);
}
