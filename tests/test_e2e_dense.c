/* test_e2e_dense.c — the machine equation, end to end.
 *
 * Compiles dense machines (the paper's DenseMachine from stdlib/dense.mach
 * with its one sliced W, dense_net with a weight and bias per arrow, and
 * hand-written graphs: shortcuts declared in shuffled order, several inputs
 * and outputs, every activation, bias on and off, identity skips, an input
 * block with an activation, a block both input and computed, shared and
 * transposed parameters) to f64 binaries, runs `forward --dump-state` on
 * random weights (every entry, biases too, written by the test's own npz
 * writer) and random inputs, and checks, for every block and sample,
 *     y = y0 + b + sum over arrows of W z,    z = sigma(y)
 * to 1e-12, the right-hand sides computed by the test from the weights and
 * its own description of the machine's arrows (e2e_machines.c). Also: f32
 * builds agree with f64 to ~1e-5, and results do not depend on --batch. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_machines.h"

TestSuite(e2e_dense, .fini = e2e_cleanup, .timeout = 60);

typedef struct Fwd {
  const char *dir, *bin, *weights;
  E2eNpz w;
  E2eArr *x;           /* inputs, indexed like spec blocks (n == 0 if not input) */
  const char *argv[64]; /* forward's --input arguments */
  int argc;
} Fwd;

/* Random weights and inputs for spec's binary, in a fresh directory. */
static Fwd setup(const E2eSpec *s, const char *bin, uint64_t seed, long N, double wscale) {
  Fwd f = {.dir = e2e_tmpdir(), .bin = bin};
  f.w = e2e_random_weights(bin, f.dir, seed, wscale);
  f.weights = e2e_path(f.dir, "w.npz");
  f.x = calloc((size_t)s->nblocks, sizeof *f.x);
  E2eRng rng = {seed + 12345};
  int ninputs = 0;
  for (int i = 0; i < s->nblocks; i++)
    ninputs += s->blocks[i].input;
  for (int i = 0; i < s->nblocks; i++) {
    if (!s->blocks[i].input)
      continue;
    f.x[i] = e2e_arr2(N, s->blocks[i].size);
    e2e_fill_uniform(&rng, &f.x[i], -2, 2);
    char *p = e2e_path(f.dir, e2e_fmt("in%d.npy", i));
    e2e_npy_write(p, &f.x[i], false);
    f.argv[f.argc++] = "--input";
    /* one input: a bare path; several: NAME=path */
    f.argv[f.argc++] = ninputs == 1 ? p : e2e_fmt("%s=%s", s->blocks[i].name, p);
  }
  return f;
}

/* BIN forward ... --output out.npz --dump-state state.npz [extra...] */
static void run_forward(const Fwd *f, const char *out, const char *state, const char *extra1,
                        const char *extra2) {
  const char *argv[96];
  int n = 0;
  argv[n++] = f->bin;
  argv[n++] = "forward";
  argv[n++] = "--weights";
  argv[n++] = f->weights;
  for (int i = 0; i < f->argc; i++)
    argv[n++] = f->argv[i];
  argv[n++] = "--output";
  argv[n++] = out;
  if (state) {
    argv[n++] = "--dump-state";
    argv[n++] = state;
  }
  if (extra1)
    argv[n++] = extra1;
  if (extra2)
    argv[n++] = extra2;
  argv[n] = NULL;
  E2eRun r = e2e_run(f->dir, 30, argv);
  e2e_check_ok(&r, "forward");
  e2e_run_free(&r);
}

static void check_shape(const E2eArr *a, long N, long size, const char *what) {
  cr_assert_eq(a->ndim, 2, "%s: rank %d, want 2", what, a->ndim);
  cr_assert(a->shape[0] == N && a->shape[1] == size, "%s: shape [%ld, %ld], want [%ld, %ld]",
            what, a->shape[0], a->shape[1], N, size);
}

/* The machine equations on the dumped state; also that the outputs written
 * are the z of the output blocks, and nothing else is in either file. */
static void check_forward(const E2eSpec *s, uint64_t seed, long N, double wscale) {
  const char *bin = e2e_compile(s->src, "f64");
  Fwd f = setup(s, bin, seed, N, wscale);
  char *out = e2e_path(f.dir, "out.npz"), *st = e2e_path(f.dir, "state.npz");
  run_forward(&f, out, st, NULL, NULL);
  E2eNpz S = e2e_npz_read(st), Y = e2e_npz_read(out);
  cr_assert_eq(S.n, 2 * s->nblocks, "state has %d entries for %d blocks", S.n, s->nblocks);
  E2eView v = e2e_view_new(s, N);
  int nout = 0;
  for (int i = 0; i < s->nblocks; i++) {
    const E2eBlock *b = &s->blocks[i];
    const E2eArr *y = e2e_npz_get(&S, e2e_fmt("y.%s", b->name));
    const E2eArr *z = e2e_npz_get(&S, e2e_fmt("z.%s", b->name));
    check_shape(y, N, b->size, b->name);
    check_shape(z, N, b->size, b->name);
    v.y[i] = y->d;
    v.z[i] = z->d;
    v.y0[i] = b->input ? f.x[i].d : NULL;
    if (b->output) {
      nout++;
      const E2eArr *o = e2e_npz_get(&Y, b->name);
      check_shape(o, N, b->size, b->name);
      for (long k = 0; k < o->n; k++)
        cr_assert_eq(o->d[k], z->d[k], "output %s[%ld] is not z", b->name, k);
    }
  }
  cr_assert_eq(Y.n, nout, "outputs file has %d entries, the machine %d outputs", Y.n, nout);
  long total = 0;
  for (int i = 0; i < s->nblocks; i++)
    total += s->blocks[i].size;
  cr_assert_eq(e2e_check_forward_eq(s, &f.w, &v, 1e-12), 2 * N * total);
  e2e_view_free(&v);
  e2e_npz_free(&S);
  e2e_npz_free(&Y);
}

Test(e2e_dense, paper_dense_machine_2_4_7_1_tanh_shared_W) {
  const int dims[] = {2, 4, 7, 1};
  check_forward(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 1, 9, 1.0);
}

Test(e2e_dense, dense_net_per_arrow_weights_and_bias) {
  const int dims[] = {3, 5, 4, 2};
  check_forward(e2e_spec_dense("dense_net", dims, 4, "sigmoid", "sigmoid", 0), 2, 7, 1.0);
}

Test(e2e_dense, dense_machine_leaky_relu_alpha_and_gelu) {
  const int dims[] = {4, 3, 3, 2, 5};
  check_forward(e2e_spec_dense("dense_machine", dims, 5, "leaky_relu(alpha = 0.2)", "leaky_relu",
                               0.2),
                3, 6, 1.0);
  const int dims2[] = {1, 1, 6};
  check_forward(e2e_spec_dense("dense_net", dims2, 3, "gelu", "gelu", 0), 4, 5, 1.5);
}

Test(e2e_dense, mixed_activations_inputs_outputs_skip) {
  check_forward(&e2e_mixed, 5, 8, 1.0);
}

Test(e2e_dense, shortcut_graph_shuffled_relu_input) {
  check_forward(&e2e_shortcut, 6, 8, 1.0);
}

Test(e2e_dense, shared_and_transposed_parameters) {
  check_forward(&e2e_shared, 7, 8, 1.0);
}

Test(e2e_dense, input_block_with_bias_and_repeated_arrows) {
  check_forward(&e2e_repeat, 9, 6, 1.0);
}

Test(e2e_dense, sequential_composition) { check_forward(&e2e_seq, 10, 6, 1.0); }

Test(e2e_dense, input_that_is_an_output) { check_forward(&e2e_passthru, 15, 5, 1.0); }

/* Blocks wider than the kernels' register tiles (4 rows x 16 columns, dot
 * products in 8 lanes) and a batch that is not a multiple of 4. */
Test(e2e_dense, wide_blocks_exercise_tiled_kernels) {
  const int d1[] = {20, 33, 17};
  check_forward(e2e_spec_dense("dense_machine", d1, 3, "tanh", "tanh", 0), 13, 9, 0.3);
  const int d2[] = {19, 40, 5, 24};
  check_forward(e2e_spec_dense("dense_net", d2, 4, "gelu", "gelu", 0), 14, 11, 0.3);
}

Test(e2e_dense, poly_example_use_and_readout) {
  check_forward(e2e_spec_poly(), 8, 10, 2.0);
}

/* --- f32 against f64, and batch independence ------------------------------------------- */

static void forward_outputs(const Fwd *f, const char *bin, const char *name, const char *extra1,
                            const char *extra2, E2eNpz *out) {
  Fwd g = *f;
  g.bin = bin;
  char *p = e2e_path(f->dir, name);
  run_forward(&g, p, NULL, extra1, extra2);
  *out = e2e_npz_read(p);
}

static void check_f32(const E2eSpec *s, uint64_t seed) {
  const char *b64 = e2e_compile(s->src, "f64"), *b32 = e2e_compile(s->src, "f32");
  Fwd f = setup(s, b64, seed, 20, 1.0);
  E2eNpz y64, y32;
  forward_outputs(&f, b64, "y64.npz", NULL, NULL, &y64);
  forward_outputs(&f, b32, "y32.npz", NULL, NULL, &y32); /* f64 weights and inputs, read by f32 */
  cr_assert_eq(y64.n, y32.n);
  double worst = 0;
  for (int k = 0; k < y64.n; k++) {
    const E2eArr *a = &y64.arrs[k], *b = e2e_npz_get(&y32, y64.names[k]);
    cr_assert_eq(a->n, b->n);
    for (long i = 0; i < a->n; i++) {
      double d = fabs(a->d[i] - b->d[i]) / fmax(1.0, fabs(a->d[i]));
      worst = fmax(worst, d);
      cr_assert(d < 1e-5, "output %s[%ld]: f64 %.17g, f32 %.9g", y64.names[k], i, a->d[i],
                b->d[i]);
    }
  }
  /* f32 must really be f32: some difference, but of float size */
  cr_assert(worst > 0, "f32 and f64 outputs are identical: is the f32 build double?");
  /* weights written by the f32 binary's init are '<f4' */
  char *w32 = e2e_path(f.dir, "w32.npz");
  E2eRun r = e2e_runl(f.dir, 30, b32, "init", "--seed", "3", "--out", w32, NULL);
  e2e_check_ok(&r, "f32 init");
  e2e_run_free(&r);
  size_t len;
  char *raw = e2e_read_file(w32, &len);
  cr_assert(raw && memmem(raw, len, "'<f4'", 5), "f32 init did not write '<f4' arrays");
  free(raw);
  e2e_npz_free(&y64);
  e2e_npz_free(&y32);
}

Test(e2e_dense, f32_agrees_with_f64) {
  const int dims[] = {2, 4, 7, 1};
  check_f32(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 11);
  check_f32(&e2e_mixed, 12);
}

Test(e2e_dense, results_do_not_depend_on_batch_size) {
  const E2eSpec *s = &e2e_shortcut;
  const char *bin = e2e_compile(s->src, "f64");
  Fwd f = setup(s, bin, 21, 37, 1.0);
  E2eNpz full, b1, b5;
  forward_outputs(&f, bin, "full.npz", NULL, NULL, &full);
  forward_outputs(&f, bin, "b1.npz", "--batch", "1", &b1);
  forward_outputs(&f, bin, "b5.npz", "--batch", "5", &b5);
  for (int k = 0; k < full.n; k++) {
    const E2eArr *a = &full.arrs[k], *p = e2e_npz_get(&b1, full.names[k]),
                 *q = e2e_npz_get(&b5, full.names[k]);
    cr_assert(a->n == p->n && a->n == q->n);
    for (long i = 0; i < a->n; i++) {
      cr_assert(fabs(a->d[i] - p->d[i]) <= 1e-13 * fmax(1, fabs(a->d[i])),
                "%s[%ld]: batch 256 %.17g, batch 1 %.17g", full.names[k], i, a->d[i], p->d[i]);
      cr_assert(fabs(a->d[i] - q->d[i]) <= 1e-13 * fmax(1, fabs(a->d[i])),
                "%s[%ld]: batch 256 %.17g, batch 5 %.17g", full.names[k], i, a->d[i], q->d[i]);
    }
  }
}

/* --- the printed machine (--emit=mach) is the same machine ------------------------------------- */

/* `machc --emit=mach` prints the elaborated machine as .mach source; compiled
 * again, it must take the same weights file and give the same state. */
static void check_round_trip(const E2eSpec *s, uint64_t seed) {
  const char *bin = e2e_compile(s->src, "f64");
  Fwd f = setup(s, bin, seed, 7, 1.0);
  e2e_write_text(e2e_path(f.dir, "model.mach"), s->src);
  E2eRun r = e2e_runl(f.dir, 30, e2e_machc(), "--emit=mach", "model.mach", NULL);
  e2e_check_ok(&r, "machc --emit=mach");
  char *printed = r.out;
  r.out = NULL;
  e2e_run_free(&r);
  Fwd g = f;
  g.bin = e2e_compile(printed, "f64");
  char *s1 = e2e_path(f.dir, "s1.npz"), *s2 = e2e_path(f.dir, "s2.npz");
  run_forward(&f, e2e_path(f.dir, "o1.npz"), s1, NULL, NULL);
  run_forward(&g, e2e_path(f.dir, "o2.npz"), s2, NULL, NULL);
  E2eNpz a = e2e_npz_read(s1), b = e2e_npz_read(s2);
  cr_assert_eq(a.n, b.n, "the printed machine has %d state entries, the original %d\n%s", b.n, a.n,
               printed);
  for (int k = 0; k < a.n; k++) {
    const E2eArr *x = &a.arrs[k], *y = e2e_npz_get(&b, a.names[k]);
    cr_assert_eq(x->n, y->n);
    for (long i = 0; i < x->n; i++)
      cr_assert(fabs(x->d[i] - y->d[i]) <= 1e-14 * fmax(1, fabs(x->d[i])),
                "%s[%ld]: original %.17g, printed machine %.17g\n%s", a.names[k], i, x->d[i],
                y->d[i], printed);
  }
  e2e_npz_free(&a);
  e2e_npz_free(&b);
  free(printed);
}

Test(e2e_dense, printed_machine_round_trips) {
  const int dims[] = {2, 4, 7, 1};
  check_round_trip(e2e_spec_dense("dense_machine", dims, 4, "tanh", "tanh", 0), 31);
  check_round_trip(&e2e_mixed, 32);
  check_round_trip(&e2e_shared, 33);
  check_round_trip(&e2e_repeat, 34);
  check_round_trip(&e2e_seq, 35);
  check_round_trip(e2e_spec_poly(), 36);
}

/* The optimizer updates only the parameter entries the machine reads: after
 * training, the entries of the shared DenseMachine W that the filtration
 * never reads (a block reading itself or a later block) keep their initial
 * values bit for bit, while every entry it reads has moved. */
Test(e2e_dense, optimizer_skips_the_entries_never_read) {
  const char *src = "import \"dense.mach\"\n"
                    "machine dm {\n"
                    "    use m = dense_machine([2, 3, 2], tanh)\n"
                    "    output m.x[2]\n"
                    "}\n";
  const char *bin = e2e_compile(src, "f64"), *dir = e2e_tmpdir();
  E2eArr x = e2e_arr2(8, 2), t = e2e_arr2(8, 2);
  for (long i = 0; i < x.n; i++) {
    x.d[i] = sin(0.7 * (double)i);
    t.d[i] = cos(0.3 * (double)i);
  }
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_npy_write(e2e_path(dir, "t.npy"), &t, false);
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "3", "--out", "w0.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, bin, "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse",
               "--optimizer", "adam", "--lr", "0.01", "--epochs", "5", "--batch", "4", "--init", "w0.npz",
               "--weight-decay", "0.1", "--out", "w1.npz", "--quiet", NULL);
  e2e_check_ok(&r, "train");
  e2e_run_free(&r);
  E2eNpz z0 = e2e_npz_read(e2e_path(dir, "w0.npz")), z1 = e2e_npz_read(e2e_path(dir, "w1.npz"));
  const E2eArr *w0 = e2e_npz_get(&z0, "m.W"), *w1 = e2e_npz_get(&z1, "m.W");
  cr_assert_eq(w0->n, 49);
  static const int off[] = {0, 2, 5, 7}; /* the blocks' rows and columns in W */
  int moved = 0, kept = 0;
  for (int row = 0; row < 7; row++)
    for (int col = 0; col < 7; col++) {
      int rb = 0, cb = 0;
      while (row >= off[rb + 1])
        rb++;
      while (col >= off[cb + 1])
        cb++;
      double a = w0->d[row * 7 + col], b = w1->d[row * 7 + col];
      if (rb < cb) { /* block rb feeds the later block cb: read */
        cr_assert(a != b, "W[%d, %d] (read) did not move", row, col);
        moved++;
      } else {
        cr_assert(a == b, "W[%d, %d] (never read) moved: %.17g -> %.17g", row, col, a, b);
        kept++;
      }
    }
  cr_assert_eq(moved, 16); /* x0 -> x1, x2: 2 x 5; x1 -> x2: 3 x 2 */
  cr_assert_eq(kept, 33);
  e2e_npz_free(&z0);
  e2e_npz_free(&z1);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}
