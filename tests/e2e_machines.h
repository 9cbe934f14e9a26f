/* e2e_machines.h — the machines the end-to-end tests compile, each with what
 * the test knows of it independently of the compiler (its blocks and arrows,
 * E2eSpec), and checks of the machine and dual equations against that
 * knowledge. */
#ifndef E2E_MACHINES_H
#define E2E_MACHINES_H

#include "e2e_util.h"

/* Hand-written machines (sources in e2e_machines.c). */
extern const E2eSpec e2e_mixed;    /* several inputs/outputs, every activation, skip, bias on/off */
extern const E2eSpec e2e_shortcut; /* DenseNet-like, declared in shuffled order, relu(input) */
extern const E2eSpec e2e_shared;   /* a user parameter shared by several arrows, transpose() */
extern const E2eSpec e2e_repeat;   /* input block with bias, several arrows from one source */
extern const E2eSpec e2e_seq;      /* sequential composition a >> b */
extern const E2eSpec e2e_passthru; /* an input that is also an output */

/* `import "dense.mach"; machine net = FN([dims], ACT_SRC)`, FN being
 * dense_machine (one shared W, no bias) or dense_net (a weight per arrow and
 * a bias per non-input block). act/alpha: the activation for the reference. */
E2eSpec *e2e_spec_dense(const char *fn, const int *dims, int n, const char *act_src,
                        const char *act, double alpha);
/* examples/poly.mach (read from the repository), prefix "poly". */
E2eSpec *e2e_spec_poly(void);

/* Per-block views of a batch of N samples, indexed like spec->blocks. */
typedef struct E2eView {
  long N;
  const double **y0;    /* inputs; NULL for a block without input */
  const double **y, **z;
  const double **z0bar; /* cotangents; NULL: zero */
  const double **zbar, **ybar;
} E2eView;

E2eView e2e_view_new(const E2eSpec *s, long N);
void e2e_view_free(E2eView *v);

/* y = y0 + b + sum of arrows (W z or z), z = sigma(y), for every block and
 * sample: |lhs - rhs| <= tol * max(1, |rhs|). Returns the number of values checked. */
long e2e_check_forward_eq(const E2eSpec *s, const E2eNpz *w, const E2eView *v, double tol);
/* zbar_j = z0bar_j + sum over arrows j -> i of W^T ybar_i, ybar_j = sigma'(y_j) zbar_j. */
long e2e_check_dual_eq(const E2eSpec *s, const E2eNpz *w, const E2eView *v, double tol);
/* dW = sum over arrows using W (and samples) of z_src (outer) ybar_dst, db = sum of ybar,
 * against the gradients in g (named like the parameters); every entry. */
long e2e_check_param_grads(const E2eSpec *s, const E2eNpz *w, const E2eView *v, const E2eNpz *g,
                           double tol);

/* Parameters of a dlopen'ed model as a name -> array map, and back. */
E2eNpz e2e_params_npz(const struct mach_model *m, const double *flat);

/* Random weights for a compiled binary: `BIN init` gives the names and shapes,
 * then every entry (biases too) is drawn from U(-scale, scale) and the result
 * written to dir/w.npz with the test's own npz writer. */
E2eNpz e2e_random_weights(const char *bin, const char *dir, uint64_t seed, double scale);

#endif
