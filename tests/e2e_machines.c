/* e2e_machines.c — see e2e_machines.h. */
#include "e2e_machines.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hand-written machines ------------------------------------------------------ */

/* Two inputs (u; x also has an arrow and an activation), two outputs, every
 * kind of term: per-arrow weights, an identity skip (x -> h2), bias on h2
 * and p but not h1 or o, leaky_relu with alpha, gelu, sin, softplus.
 * Declared out of order. */
static const E2eBlock mixed_blocks[] = {
    {"u", 3, NULL, 0, true, false, NULL},
    {"x", 3, "softplus", 0, true, false, NULL},
    {"h1", 3, "leaky_relu", 0.2, false, false, NULL},
    {"h2", 3, "gelu", 0, false, false, "b_h2"},
    {"o", 2, "sin", 0, false, true, NULL},
    {"p", 1, NULL, 0, false, true, "b_p"},
};
static const E2eArrow mixed_arrows[] = {
    {"u", "x", "W_x_u", 0, 0, false},   {"x", "h1", "W_h1_x", 0, 0, false},
    {"u", "h1", "W_h1_u", 0, 0, false}, {"h1", "h2", "W_h2_h1", 0, 0, false},
    {"u", "h2", "W_h2_u", 0, 0, false}, {"x", "h2", NULL, 0, 0, false},
    {"h2", "o", "W_o_h2", 0, 0, false}, {"h1", "o", "W_o_h1", 0, 0, false},
    {"o", "p", "W_p_o", 0, 0, false},
};
const E2eSpec e2e_mixed = {
    "# every activation, two inputs, two outputs, a skip, bias on and off\n"
    "machine mixed {\n"
    "    block h2 : 3 = gelu(dense(h1, u) + x + bias)\n"
    "    output o : 2 = sin(dense(h2, h1))\n"
    "    input u : 3\n"
    "    block h1 : 3 = leaky_relu(dense(x, u), alpha = 0.2)\n"
    "    block x : 3 = softplus(input + dense(u))\n"
    "    output p : 1 = dense(o) + bias\n"
    "}\n",
    "mixed", 6, mixed_blocks, 9, mixed_arrows};

/* DenseNet-like: every block reads every earlier one (e reads b through an
 * identity skip), declared in shuffled order; the input block has an
 * activation (z = relu(y0)). */
static const E2eBlock shortcut_blocks[] = {
    {"v", 3, "relu", 0, true, false, NULL},
    {"a", 4, "sigmoid", 0, false, false, "b_a"},
    {"b", 3, "tanh", 0, false, false, NULL},
    {"c", 2, NULL, 0, false, true, "b_c"},
    {"e", 3, "softplus", 0, false, true, "b_e"},
};
static const E2eArrow shortcut_arrows[] = {
    {"v", "a", "W_a_v", 0, 0, false}, {"v", "b", "W_b_v", 0, 0, false},
    {"a", "b", "W_b_a", 0, 0, false}, {"v", "c", "W_c_v", 0, 0, false},
    {"a", "c", "W_c_a", 0, 0, false}, {"b", "c", "W_c_b", 0, 0, false},
    {"v", "e", "W_e_v", 0, 0, false}, {"a", "e", "W_e_a", 0, 0, false},
    {"c", "e", "W_e_c", 0, 0, false}, {"b", "e", NULL, 0, 0, false},
};
const E2eSpec e2e_shortcut = {
    "machine shortcut {\n"
    "    output e : 3 = softplus(dense(v, a, c) + b + bias)\n"
    "    block b : 3 = tanh(dense(v, a))\n"
    "    output c : 2 = dense(v, a, b) + bias\n"
    "    block v : 3 = relu(input)\n"
    "    block a : 4 = sigmoid(dense(v) + bias)\n"
    "}\n",
    "shortcut", 5, shortcut_blocks, 10, shortcut_arrows};

/* User parameters shared between arrows: P by u -> h, w -> h (rows 0..3 and
 * 3..7) and w -> p (the same rows 3..7 again); Q by h -> o and o -> p;
 * T read transposed. */
static const E2eBlock shared_blocks[] = {
    {"u", 3, NULL, 0, true, false, NULL},
    {"w", 4, NULL, 0, true, false, NULL},
    {"h", 5, "sin", 0, false, false, NULL},
    {"o", 5, "gelu", 0, false, true, NULL},
    {"p", 5, "tanh", 0, false, true, "b_p"},
    {"q", 2, "leaky_relu", 0.01, false, true, NULL},
};
static const E2eArrow shared_arrows[] = {
    {"u", "h", "P", 0, 0, false}, {"w", "h", "P", 3, 0, false}, {"h", "o", "Q", 0, 0, false},
    {"h", "o", NULL, 0, 0, false}, {"o", "p", "Q", 0, 0, false}, {"w", "p", "P", 3, 0, false},
    {"h", "q", "T", 1, 0, true},
};
const E2eSpec e2e_shared = {
    "machine shared {\n"
    "    param P : [7, 5]\n"
    "    param Q : [5, 5]\n"
    "    param T : [3, 5]\n"
    "    input u : 3\n"
    "    input w : 4\n"
    "    block h : 5 = sin(dense(u, w, weight = P))\n"
    "    output o : 5 = gelu(dense(h, weight = Q) + h)\n"
    "    output p : 5 = tanh(dense(o, weight = Q) + dense(w, weight = P[3 .. 7, 0 .. 5]) + bias)\n"
    "    output q : 2 = leaky_relu(dense(h, weight = transpose(T[1 ..= 2, 0 .. 5])))\n"
    "}\n",
    "shared", 6, shared_blocks, 7, shared_arrows};

/* An input block with a bias and an activation (v = relu(y0 + b)), and
 * several arrows from one source into one block, each with its own weight
 * (W_h_x, W_h_x_2, W_h_x_3). */
static const E2eBlock repeat_blocks[] = {
    {"x", 3, NULL, 0, true, false, NULL},
    {"v", 3, "relu", 0, true, false, "b_v"},
    {"h", 4, "tanh", 0, false, false, NULL},
    {"y", 2, NULL, 0, false, true, "b_y"},
};
static const E2eArrow repeat_arrows[] = {
    {"x", "h", "W_h_x", 0, 0, false},   {"x", "h", "W_h_x_2", 0, 0, false},
    {"v", "h", "W_h_v", 0, 0, false},   {"x", "h", "W_h_x_3", 0, 0, false},
    {"h", "y", "W_y_h", 0, 0, false},
};
const E2eSpec e2e_repeat = {
    "machine repeat {\n"
    "    input x : 3\n"
    "    block v : 3 = relu(input + bias)\n"
    "    block h : 4 = tanh(dense(x) + dense(x) + dense(v, x))\n"
    "    output y : 2 = dense(h) + bias\n"
    "}\n",
    "repeat", 4, repeat_blocks, 5, repeat_arrows};

/* Sequential composition a >> b: b's input u reads a's output h through an
 * identity arrow and both become internal blocks. */
static const E2eBlock seq_blocks[] = {
    {"x", 2, NULL, 0, true, false, NULL},
    {"h", 3, "sin", 0, false, false, NULL},
    {"u", 3, NULL, 0, false, false, NULL},
    {"y", 2, "sigmoid", 0, false, true, "b_y"},
};
static const E2eArrow seq_arrows[] = {
    {"x", "h", "W_h_x", 0, 0, false},
    {"h", "u", NULL, 0, 0, false},
    {"u", "y", "W_y_u", 0, 0, false},
};
const E2eSpec e2e_seq = {
    "machine a {\n"
    "    input x : 2\n"
    "    output h : 3 = sin(dense(x))\n"
    "}\n"
    "machine b {\n"
    "    input u : 3\n"
    "    output y : 2 = sigmoid(dense(u) + bias)\n"
    "}\n"
    "machine seq = a >> b\n",
    "seq", 4, seq_blocks, 3, seq_arrows};

/* A pure input that is also an output (its cotangent adds to its
 * gradient), and an identity skip from an input. */
static const E2eBlock passthru_blocks[] = {
    {"x", 2, NULL, 0, true, true, NULL},
    {"u", 3, NULL, 0, true, false, NULL},
    {"h", 3, "sigmoid", 0, false, true, NULL},
};
static const E2eArrow passthru_arrows[] = {
    {"x", "h", "W_h_x", 0, 0, false},
    {"u", "h", NULL, 0, 0, false},
};
const E2eSpec e2e_passthru = {
    "machine passthru {\n"
    "    input x : 2\n"
    "    input u : 3\n"
    "    block h : 3 = sigmoid(dense(x) + u)\n"
    "    output x, h\n"
    "}\n",
    "passthru", 3, passthru_blocks, 2, passthru_arrows};

/* ---- generated dense machines ------------------------------------------------------ */

static void spec_dense_into(E2eBlock *b, E2eArrow *ar, int *nb, int *na, const char *label,
                            bool shared, const int *dims, int n, const char *act, double alpha) {
  int off[64];
  off[0] = 0;
  for (int i = 0; i < n; i++)
    off[i + 1] = off[i] + dims[i];
  const char *pre = label ? e2e_fmt("%s.", label) : "";
  const char *cpre = label ? e2e_fmt("%s_", label) : "";
  for (int i = 0; i < n; i++) {
    E2eBlock *bl = &b[(*nb)++];
    *bl = (E2eBlock){e2e_fmt("%sx[%d]", pre, i), dims[i], act, alpha, i == 0, !label, NULL};
    if (!shared && i > 0)
      bl->bias = e2e_fmt("b_%sx_%d", cpre, i);
    for (int j = 0; j < i; j++) {
      E2eArrow *a = &ar[(*na)++];
      a->src = e2e_fmt("%sx[%d]", pre, j);
      a->dst = bl->name;
      if (shared) {
        a->param = e2e_fmt("%sW", pre);
        a->in_off = off[j];
        a->out_off = off[i];
      } else {
        a->param = e2e_fmt("W_%sx_%d_%sx_%d", cpre, i, cpre, j);
      }
    }
  }
}

E2eSpec *e2e_spec_dense(const char *fn, const int *dims, int n, const char *act_src,
                        const char *act, double alpha) {
  cr_assert(n >= 1 && n < 60);
  E2eSpec *s = calloc(1, sizeof *s);
  E2eBlock *b = calloc((size_t)n, sizeof *b);
  E2eArrow *ar = calloc((size_t)(n * n), sizeof *ar);
  char list[512] = "";
  for (int i = 0; i < n; i++)
    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%d", i ? ", " : "", dims[i]);
  s->src = e2e_fmt("import \"dense.mach\"\nmachine net = %s([%s], %s)\n", fn, list, act_src);
  s->prefix = "net";
  int nb = 0, na = 0;
  spec_dense_into(b, ar, &nb, &na, NULL, strcmp(fn, "dense_machine") == 0, dims, n, act, alpha);
  s->nblocks = nb;
  s->blocks = b;
  s->narrows = na;
  s->arrows = ar;
  return s;
}

E2eSpec *e2e_spec_poly(void) {
  char *path = e2e_path(e2e_root(), "examples/poly.mach");
  char *src = e2e_read_file(path, NULL);
  cr_assert(src, "cannot read %s", path);
  E2eSpec *s = calloc(1, sizeof *s);
  E2eBlock *b = calloc(8, sizeof *b);
  E2eArrow *ar = calloc(16, sizeof *ar);
  int nb = 0, na = 0;
  const int dims[] = {2, 4, 4, 4};
  spec_dense_into(b, ar, &nb, &na, "m", true, dims, 4, "sigmoid", 0);
  b[nb] = (E2eBlock){"y", 1, NULL, 0, false, true, "b_y"};
  for (int j = 0, off = 0; j < 4; off += dims[j], j++)
    ar[na++] = (E2eArrow){b[j].name, "y", "R", off, 0, false};
  nb++;
  s->src = src;
  s->prefix = "poly";
  s->nblocks = nb;
  s->blocks = b;
  s->narrows = na;
  s->arrows = ar;
  return s;
}

/* ---- views and checks ----------------------------------------------------------------- */

E2eView e2e_view_new(const E2eSpec *s, long N) {
  E2eView v = {.N = N};
  size_t n = (size_t)s->nblocks;
  v.y0 = calloc(n, sizeof *v.y0);
  v.y = calloc(n, sizeof *v.y);
  v.z = calloc(n, sizeof *v.z);
  v.z0bar = calloc(n, sizeof *v.z0bar);
  v.zbar = calloc(n, sizeof *v.zbar);
  v.ybar = calloc(n, sizeof *v.ybar);
  return v;
}

void e2e_view_free(E2eView *v) {
  free(v->y0);
  free(v->y);
  free(v->z);
  free(v->z0bar);
  free(v->zbar);
  free(v->ybar);
}

/* The weight entry an arrow applies from source index i to destination index o. */
static double weight_at(const E2eArrow *a, const E2eArr *W, int i, int o) {
  cr_assert_eq(W->ndim, 2, "parameter %s is not a matrix", a->param);
  long r = a->transposed ? a->in_off + o : a->in_off + i;
  long c = a->transposed ? a->out_off + i : a->out_off + o;
  cr_assert(r < W->shape[0] && c < W->shape[1], "arrow %s -> %s reads outside %s", a->src,
            a->dst, a->param);
  return W->d[r * W->shape[1] + c];
}

static void expect_close(double got, double want, double tol, const char *what, const char *name,
                         long n, long k) {
  double scale = fmax(1.0, fabs(want));
  cr_assert(fabs(got - want) <= tol * scale && !isnan(got),
            "%s of block %s, sample %ld, index %ld: got %.17g, want %.17g (diff %.3g)", what,
            name, n, k, got, want, got - want);
}

long e2e_check_forward_eq(const E2eSpec *s, const E2eNpz *w, const E2eView *v, double tol) {
  long checked = 0;
  for (int bi = 0; bi < s->nblocks; bi++) {
    const E2eBlock *b = &s->blocks[bi];
    cr_assert(v->y[bi] && v->z[bi], "no state for block %s", b->name);
    const E2eArr *bias = b->bias ? e2e_npz_get(w, b->bias) : NULL;
    if (bias)
      cr_assert_eq(bias->n, b->size, "bias %s has %ld entries", b->bias, bias->n);
    for (long n = 0; n < v->N; n++)
      for (int o = 0; o < b->size; o++) {
        double rhs = 0;
        if (b->input) {
          cr_assert(v->y0[bi], "no input for block %s", b->name);
          rhs += v->y0[bi][n * b->size + o];
        }
        if (bias)
          rhs += bias->d[o];
        for (int k = 0; k < s->narrows; k++) {
          const E2eArrow *a = &s->arrows[k];
          if (strcmp(a->dst, b->name) != 0)
            continue;
          int si = e2e_spec_block(s, a->src);
          int ns = s->blocks[si].size;
          const double *zs = v->z[si] + n * ns;
          if (!a->param) {
            cr_assert_eq(ns, b->size);
            rhs += zs[o];
            continue;
          }
          const E2eArr *W = e2e_npz_get(w, a->param);
          for (int i = 0; i < ns; i++)
            rhs += zs[i] * weight_at(a, W, i, o);
        }
        double y = v->y[bi][n * b->size + o], z = v->z[bi][n * b->size + o];
        expect_close(y, rhs, tol, "y = y0 + b + W z", b->name, n, o);
        expect_close(z, e2e_act(b->act, b->alpha, y), tol, "z = sigma(y)", b->name, n, o);
        checked += 2;
      }
  }
  return checked;
}

long e2e_check_dual_eq(const E2eSpec *s, const E2eNpz *w, const E2eView *v, double tol) {
  long checked = 0;
  for (int bj = 0; bj < s->nblocks; bj++) {
    const E2eBlock *b = &s->blocks[bj];
    cr_assert(v->zbar[bj] && v->ybar[bj] && v->y[bj], "no dual state for block %s", b->name);
    for (long n = 0; n < v->N; n++)
      for (int i = 0; i < b->size; i++) {
        double rhs = v->z0bar[bj] ? v->z0bar[bj][n * b->size + i] : 0;
        for (int k = 0; k < s->narrows; k++) {
          const E2eArrow *a = &s->arrows[k];
          if (strcmp(a->src, b->name) != 0)
            continue;
          int di = e2e_spec_block(s, a->dst);
          int nd = s->blocks[di].size;
          const double *yb = v->ybar[di] + n * nd;
          if (!a->param) {
            rhs += yb[i];
            continue;
          }
          const E2eArr *W = e2e_npz_get(w, a->param);
          for (int o = 0; o < nd; o++)
            rhs += weight_at(a, W, i, o) * yb[o];
        }
        double zbar = v->zbar[bj][n * b->size + i], ybar = v->ybar[bj][n * b->size + i];
        double y = v->y[bj][n * b->size + i];
        expect_close(zbar, rhs, tol, "zbar = z0bar + W^T ybar", b->name, n, i);
        expect_close(ybar, e2e_dact(b->act, b->alpha, y) * zbar, tol, "ybar = sigma'(y) zbar",
                     b->name, n, i);
        checked += 2;
      }
  }
  return checked;
}

long e2e_check_param_grads(const E2eSpec *s, const E2eNpz *w, const E2eView *v, const E2eNpz *g,
                           double tol) {
  long checked = 0;
  for (int p = 0; p < w->n; p++) {
    const char *name = w->names[p];
    const E2eArr *W = &w->arrs[p];
    E2eArr want = e2e_arr(W->ndim, W->shape);
    bool used = false;
    for (int bi = 0; bi < s->nblocks; bi++) {
      const E2eBlock *b = &s->blocks[bi];
      if (b->bias && strcmp(b->bias, name) == 0) {
        used = true;
        for (long n = 0; n < v->N; n++)
          for (int o = 0; o < b->size; o++)
            want.d[o] += v->ybar[bi][n * b->size + o];
      }
    }
    for (int k = 0; k < s->narrows; k++) {
      const E2eArrow *a = &s->arrows[k];
      if (!a->param || strcmp(a->param, name) != 0)
        continue;
      used = true;
      int si = e2e_spec_block(s, a->src), di = e2e_spec_block(s, a->dst);
      int ns = s->blocks[si].size, nd = s->blocks[di].size;
      for (long n = 0; n < v->N; n++)
        for (int i = 0; i < ns; i++)
          for (int o = 0; o < nd; o++) {
            long r = a->transposed ? a->in_off + o : a->in_off + i;
            long c = a->transposed ? a->out_off + i : a->out_off + o;
            want.d[r * W->shape[1] + c] += v->z[si][n * ns + i] * v->ybar[di][n * nd + o];
          }
    }
    cr_assert(used, "the test's spec does not use parameter %s", name);
    const E2eArr *got = e2e_npz_get(g, name);
    cr_assert_eq(got->n, want.n, "gradient %s has %ld entries, want %ld", name, got->n, want.n);
    for (long k = 0; k < want.n; k++) {
      cr_assert(fabs(got->d[k] - want.d[k]) <= tol * fmax(1.0, fabs(want.d[k])),
                "dLoss/d%s[%ld]: got %.17g, want %.17g", name, k, got->d[k], want.d[k]);
      checked++;
    }
    e2e_arr_free(&want);
  }
  return checked;
}

E2eNpz e2e_params_npz(const struct mach_model *m, const double *flat) {
  E2eNpz z = {0};
  z.names = calloc((size_t)m->n_params + 1, sizeof(char *));
  z.arrs = calloc((size_t)m->n_params + 1, sizeof(E2eArr));
  for (int p = 0; p < m->n_params; p++) {
    const struct mach_param *mp = &m->params[p];
    long shape[E2E_MAX_NDIM];
    for (int k = 0; k < mp->rank; k++)
      shape[k] = mp->shape[k];
    z.arrs[p] = e2e_arr(mp->rank, shape);
    cr_assert_eq(z.arrs[p].n, mp->size);
    memcpy(z.arrs[p].d, flat + mp->offset, sizeof(double) * (size_t)mp->size);
    z.names[p] = strdup(mp->name);
    z.n++;
  }
  return z;
}

E2eNpz e2e_random_weights(const char *bin, const char *dir, uint64_t seed, double scale) {
  char *w0 = e2e_path(dir, "w_init.npz");
  char *sd = e2e_fmt("%llu", (unsigned long long)seed);
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", sd, "--out", w0, NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  E2eNpz z = e2e_npz_read(w0);
  E2eRng rng = {seed * 7919 + 1};
  for (int p = 0; p < z.n; p++)
    e2e_fill_uniform(&rng, &z.arrs[p], -scale, scale);
  char *w = e2e_path(dir, "w.npz");
  e2e_npz_write(w, z.n, (const char *const *)z.names, z.arrs);
  free(w0);
  free(sd);
  free(w);
  return z;
}
