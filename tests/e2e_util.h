/* e2e_util.h — helpers shared by the end-to-end tests (test_e2e_*.c,
 * test_golden.c): an independent .npy/.npz reader and writer (the runtime's
 * own npy code is deliberately not used: these tests check it), temporary
 * directories, running commands, compiling .mach sources to binaries and to
 * shared objects loaded with dlopen, and an independent reference model of
 * dense machines (blocks, arrows, activations) to check the machine and dual
 * equations against.
 *
 * Every helper that can fail asserts with Criterion (cr_assert_fail), so a
 * test calling it fails with a message saying what went wrong. */
#ifndef E2E_UTIL_H
#define E2E_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "machrt.h"

/* ---- arrays --------------------------------------------------------------- */

#define E2E_MAX_NDIM 8

/* An n-dimensional array of doubles, C order (whatever the file's dtype). */
typedef struct E2eArr {
  int ndim;
  long shape[E2E_MAX_NDIM];
  long n; /* number of elements */
  double *d;
} E2eArr;

E2eArr e2e_arr(int ndim, const long *shape); /* zeroed */
E2eArr e2e_arr2(long rows, long cols);       /* [rows, cols] */
void e2e_arr_free(E2eArr *a);

/* .npy: writes version 1.0, '<f8' or '<f4' (f32), C order. */
void e2e_npy_write(const char *path, const E2eArr *a, bool f32);
/* Parses .npy bytes: versions 1-3, '<f8', '<f4', '<i8', '<i4', C order.
 * Returns false (and sets *why) on anything else. */
bool e2e_npy_parse(const unsigned char *p, size_t len, E2eArr *out, const char **why);
E2eArr e2e_npy_read(const char *path); /* asserts */

/* .npz: a zip of stored (uncompressed) members; the CRC-32 of each member is
 * checked. Names are given without the ".npy" suffix. */
typedef struct E2eNpz {
  int n;
  char **names;
  E2eArr *arrs;
} E2eNpz;

E2eNpz e2e_npz_read(const char *path); /* asserts */
/* The array named name; asserts it exists. */
const E2eArr *e2e_npz_get(const E2eNpz *z, const char *name);
const E2eArr *e2e_npz_find(const E2eNpz *z, const char *name); /* NULL if absent */
void e2e_npz_free(E2eNpz *z);
/* Writes stored members NAME.npy ('<f8'), as np.savez. */
void e2e_npz_write(const char *path, int n, const char *const *names, const E2eArr *arrs);

/* ---- random numbers (splitmix64) ------------------------------------------ */

typedef struct E2eRng {
  uint64_t s;
} E2eRng;

double e2e_uniform(E2eRng *r, double lo, double hi);
void e2e_fill_uniform(E2eRng *r, E2eArr *a, double lo, double hi);

/* ---- files, directories, commands ----------------------------------------- */

/* Absolute path of machc ($MACHC, else <repo>/bin/machc) and of the repo root
 * (the directory above machc's holding compiler/machc.h). */
const char *e2e_machc(void);
const char *e2e_root(void);
/* A fresh directory under $MACHC_TEST_TMP (else /tmp), unique to this call;
 * removed by e2e_cleanup unless E2E_KEEP is set in the environment. */
const char *e2e_tmpdir(void);
void e2e_cleanup(void);
/* dir/name; the string lives until the process ends. */
char *e2e_path(const char *dir, const char *name);
char *e2e_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void e2e_write_file(const char *path, const void *data, size_t len);
void e2e_write_text(const char *path, const char *text);
/* Whole file, NUL-terminated; *len (if not NULL) without the NUL. NULL if it
 * cannot be read. */
char *e2e_read_file(const char *path, size_t *len);

typedef struct E2eRun {
  int status;  /* exit status, or -1 when killed by a signal or timed out */
  int sig;     /* the signal that ended it, 0 if none */
  bool timed_out;
  char *out, *err; /* captured stdout and stderr (NUL-terminated) */
  double seconds;     /* wall-clock */
  double cpu_seconds; /* user + system time of the command and what it waited for:
                         growth checks compare these, which other load does not inflate */
} E2eRun;

/* Runs argv (argv[0] looked up in PATH) in directory cwd (NULL: the current
 * one), stdin from /dev/null, with a timeout; captures stdout and stderr. */
E2eRun e2e_run(const char *cwd, double timeout, const char *const *argv);
/* The same with the arguments listed, NULL-terminated. */
E2eRun e2e_runl(const char *cwd, double timeout, const char *arg0, ...)
    __attribute__((sentinel));
void e2e_run_free(E2eRun *r);
/* Asserts exit status 0, printing the command's stderr otherwise. */
void e2e_check_ok(const E2eRun *r, const char *what);

/* ---- compiling machines ----------------------------------------------------- */

/* Compiles .mach source text with `machc FILE.mach -o BIN --dtype DTYPE`
 * (extra machc arguments may follow, NULL-terminated) and returns the
 * binary's path. Binaries are cached by content (and the compiler's and the
 * runtime's timestamps) under $MACHC_TEST_TMP/cache, so tests running in
 * different processes share them. */
const char *e2e_compile(const char *src, const char *dtype);
/* The same with one more machc argument (e.g. "--kernels=plain"); NULL: none. */
const char *e2e_compile_with(const char *src, const char *dtype, const char *flag);

/* A model compiled with `machc -S --dtype f64` and `cc -shared -DMACH_NO_MAIN`,
 * loaded with dlopen. */
typedef struct E2eModel {
  void *so;
  const struct mach_model *m;
  void (*dual)(const double *params, const double *state, const double *const *cot,
               double *dstate, long batch, int input_grads);
  const char *c_path; /* the generated model.c */
} E2eModel;

/* prefix: the machine name as a C identifier (the <prefix>_model symbol). */
E2eModel e2e_load_model(const char *src, const char *prefix);
/* The same with one more machc argument; NULL: none. */
E2eModel e2e_load_model_with(const char *src, const char *prefix, const char *flag);
int e2e_model_block(const struct mach_model *m, const char *name);  /* asserts */
int e2e_model_param(const struct mach_model *m, const char *name);  /* asserts */

/* ---- an independent reference of dense machines ---------------------------- */

/* Activations by name, as in .mach: identity tanh sigmoid relu leaky_relu gelu
 * softplus sin; alpha for leaky_relu. */
double e2e_act(const char *act, double alpha, double y);
double e2e_dact(const char *act, double alpha, double y); /* sigma'(y) */

typedef struct E2eBlock {
  const char *name;
  int size;
  const char *act; /* NULL = identity */
  double alpha;
  bool input;       /* y0 comes from outside */
  bool output;
  const char *bias; /* parameter name of the bias, NULL without */
} E2eBlock;

typedef struct E2eArrow {
  const char *src, *dst;
  const char *param; /* dense weight; NULL = identity arrow */
  int in_off, out_off; /* offsets of the slice along the parameter's axes 0, 1 */
  bool transposed;   /* false: y_dst[o] += z_src[i] P[in_off + i, out_off + o];
                        true (weight = transpose(P[...])): P[in_off + o, out_off + i] */
} E2eArrow;

/* What a test knows of a machine it wrote: blocks and arrows. */
typedef struct E2eSpec {
  const char *src;  /* .mach source */
  const char *prefix; /* machine name as a C identifier */
  int nblocks;
  const E2eBlock *blocks;
  int narrows;
  const E2eArrow *arrows;
} E2eSpec;

int e2e_spec_block(const E2eSpec *s, const char *name); /* asserts */

/* A loaded model and the buffers of one forward and backward pass over
 * batch samples: parameters uniform in [-wscale, wscale], inputs in
 * [-xscale, xscale], output cotangents in [-1, 1], drawn in that order from
 * seed; gradients and states zero. */
typedef struct E2ePass {
  const struct mach_model *m;
  E2eModel mod;
  double *params, *dparams, *state, *dstate;
  double *in[8], *cot[8];
  long batch;
} E2ePass;
E2ePass e2e_pass_new(E2eModel mod, long batch, uint64_t seed, double wscale, double xscale);
void e2e_pass_free(E2ePass *p);
/* Block b's y or z in a state (or zbar, ybar in a dual state) of the pass. */
const double *e2e_pass_y(const E2ePass *p, const double *state, int b);
const double *e2e_pass_z(const E2ePass *p, const double *state, int b);
/* The forward pass, then L = sum over outputs of z . cotangent. */
double e2e_pass_loss(E2ePass *p);

/* The ready hook of a generated backward pass, checked: pass e2e_ready as
 * ready and an E2eReady as ctx; e2e_ready_check then asserts that every
 * scalar of dparams was reported exactly once and held its final value
 * when it was. */
typedef struct E2eReady {
  const double *dparams;
  long n;
  double *snap;          /* dparams[i] when i was reported */
  unsigned char *seen;
} E2eReady;
E2eReady e2e_ready_new(const double *dparams, long n);
void e2e_ready(void *ctx, long lo, long hi);
void e2e_ready_check(E2eReady *r); /* and frees */

/* Whether the machine reads entry i of the flat parameter buffer (it lies
 * in one of its parameter's live runs, or the parameter has none). The
 * backward pass leaves dparams as it is at the others. */
bool e2e_param_read(const struct mach_model *m, long i);

/* Relative difference |a-b| / max(|a| + |b|, floor). */
double e2e_reldiff(double a, double b, double floor);

#endif
