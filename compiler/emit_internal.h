/* emit_internal.h — shared by the emitter's files. */
#ifndef EMIT_INTERNAL_H
#define EMIT_INTERNAL_H

#include "machc.h"

/* Where each block's buffers live in the state, per sample. Blocks with the
 * identity activation keep z in y's place (z = y), in both the primal and
 * the dual state (sigma' = 1 there). */
typedef struct Layout {
  long *y_off, *z_off;
  long state_size;
} Layout;

/* How the machine being solved names its buffers: the primal calls them
 * y_NAME and z_NAME and reads inputs[k]; the dual keeps zbar in y's place
 * and ybar in z's, and reads cotangents[k]. */
typedef struct Names {
  const char *y, *z;   /* prefixes of the linear and pointwise buffers */
  const char *inputs;  /* the array of external inputs */
} Names;

typedef struct Emit {
  Arena *a;
  StrBuf *c;
  const IrMachine *m;     /* the machine being solved (primal or dual) */
  const IrMachine *primal;
  const EmitOptions *o;
  const Layout *lay;
  Names nm;
  bool *used_y, *used_z;  /* buffers of m referenced by the body */
  bool *used_py, *used_pz; /* primal buffers referenced (dual: sigma') */
  bool *used_p;           /* parameters referenced */
  IrGroups into;          /* the arrows into each block of m */
  long work;              /* scalars of workspace the body uses (real work[]) */
  bool *optional;         /* dual blocks that only carry dLoss/dinput, solved
                             when input_grads is set (NULL: every block) */
  int depth;              /* emit_line.c: the indentation of the next line, in steps */
  unsigned long long braced; /* bit d: the block at depth d was opened with a brace */
  int *grads_left;        /* the dual solve also writes the parameter gradients:
                             arrows and biases of each parameter still to do
                             (NULL: it does not) */
  bool *used_dp;          /* parameter gradients the current level writes */
  unsigned char *dp_how;  /* per scalar of dparams, how its gradient is first
                             written: DP_NONE not yet (after the sweep: an
                             entry the machine never reads, left as it is),
                             DP_SET by a product that sets it, DP_ADDED
                             added to zeros written before the sweep (NULL:
                             every one zeroed) */
  bool *reported;         /* parameter gradients already reported final */
  IrGroups pinto;         /* the arrows into each block of the primal */
  StrBuf *before_chunks;  /* while the chunked levels are emitted: what runs
                             once before the loop over chunks of time */
  long chunk_packed;      /* scalars of weights packed there (emit_chunk.c) */
} Emit;

enum { DP_NONE, DP_SET, DP_ADDED };

/* emit_index.c: affine index expressions, c + sum of coef * atom, folded as
 * they are built (no `* 1`, `+ 0`, `0 * x`; constants summed) and printed
 * with parentheses only around a scaled sum. Values, built in e->a. */
enum { IX_TERMS = 16 };
typedef struct IxTerm {
  long coef;
  const char *atom; /* a loop variable, or a scaled sum's text; NULL: the constant */
  bool sum;         /* atom is a sum: parenthesised when scaled or negated */
} IxTerm;
typedef struct Ix {
  IxTerm t[IX_TERMS];
  int n;
} Ix;

Ix ix_const(long c);
Ix ix_var(const char *v);
Ix ix_term(const char *v, long coef);
Ix ix_add(Ix a, Ix b);
Ix ix_addc(Ix a, long c);
Ix ix_addv(Ix a, const char *v, long coef);
Ix ix_scale(Arena *ar, Ix a, long k);
/* outer * extent + inner: one more axis of a row-major index */
Ix ix_nest(Arena *ar, Ix outer, long extent, Ix inner);
bool ix_is_const(Ix a, long *c);
const char *ix_text(Arena *ar, Ix a);
/* base + off as a pointer expression ("base" alone when off is 0) */
const char *ix_at(Arena *ar, const char *base, Ix off);

/* emit_line.c: lines at the current depth e->depth (one step: 4 spaces).
 * emit_open writes `HEADER {` and goes one step deeper, emit_head a header
 * whose single statement follows one step deeper; emit_close_to returns to a
 * depth, writing `}` for the braced blocks it leaves; emit_scope opens a
 * bare `{` block. emit_loops opens nested counted loops, outermost first,
 * leaving out those of one trip: the innermost opened takes the brace when
 * `brace` (a bare block when none opens); idx[i] is the index to use for
 * loop i's variable (lo when left out). Returns the depth to close to.
 * emit_call writes fn(value, ...), each value after a comment naming its
 * parameter, lines[i] arguments on line i (the lines aligned). */
void emit_line(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void emit_open(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void emit_head(Emit *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void emit_close_to(Emit *e, int depth);
void emit_scope(Emit *e);
/* "#pragma omp <fmt>" at the start of a line, under #ifdef _OPENMP. */
void emit_omp(StrBuf *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
typedef struct EmitLoop {
  const char *var;
  long lo, n;     /* for (var = lo; var < lo + n; var++), left out when n is 1 */
  const char *hi; /* or, when not NULL, the bound known only at run time */
} EmitLoop;
int emit_loops(Emit *e, const EmitLoop *l, int count, bool brace, Ix *idx);
typedef struct EmitArg {
  const char *name, *val;
} EmitArg;
void emit_call(Emit *e, const char *fn, const EmitArg *args, const int *lines, int nlines);

/* The prelude: the kernels and activations that `body` uses, with what they
 * call, each once, callees first; tuned or plain (o->plain_kernels). */
void emit_kernels(StrBuf *c, const EmitOptions *o, const char *body);
/* NB, the columns of the kernels' register tile: two vectors of the target
 * (--march's; AVX-512's 64 bytes when none is set). */
long emit_nb(const EmitOptions *o);
/* The prefix of a loop head of at most n iterations: "SHORT_LOOP " (the
 * prelude's hint not to vectorize) when n is less than a vector, else "". */
const char *emit_short(const Emit *e, long n);
/* The prefix of the head of a loop of n activations, stmt the text of what
 * it computes: "MASKED_TAIL " (the prelude's hint to mask the last vector)
 * when n is a few vectors long and not a multiple of one and every call in
 * stmt vectorizes, else "". */
const char *emit_masked(const Emit *e, long n, const char *stmt);
/* The scratch of one mm_grid call of inner dimension k (LONG_MAX: known only
 * when it runs) and m rows, in scalars: its packed panels. */
long emit_grid_work(long k, long m, long nb);
const char *emit_pname(Emit *e, int param); /* a parameter's C name, marked used */
/* Whether conv arrow ar takes the per-tap product of emit_grid_arrow, and
 * whether ar can be source pos of one with first: the same weight, taps and
 * window, its channels the next rows of the weight. */
bool emit_grid_groupable(const Emit *e, const IrArrow *ar);
bool emit_grid_joins(const Emit *e, const IrArrow *first, const IrArrow *ar, int pos);
/* y_dst += the n arrows ars (emit_grid_joins) applied to their sources zs:
 * one product per tap, their channels in turn. */
void emit_grid_group(Emit *e, const IrArrow *const *ars, const char *const *zs, int n, const char *y,
                     const char *t0, const char *t1);
/* y_dst += the arrow applied to z_src (conv, pooling), writing only times
 * [t0, t1) on axis 0 when t0 is not NULL. */
void emit_grid_arrow(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                     const char *t1);
/* A block's pointwise activation: expr(e, block, y, k) is the text of
 * sigma(y[k]), to be stored at z[k] of the block. */
typedef struct EmitAct {
  const char *(*expr)(Emit *e, int block, const char *y, const char *k);
  int block;
  const char *z; /* the block's z */
} EmitAct;
/* How the first product into a block writes all of its y: y = bias[channel]
 * + the product, or init[...] (an input, laid out as y) + the product, or
 * the product alone (both NULL); then, unless act is NULL and when no other
 * arrow follows, z = sigma(y): the block is solved. */
typedef struct EmitFirst {
  const char *bias, *init;
  const EmitAct *act;
} EmitFirst;
/* Index of W[k.., cin, cout] for the taps k and channels (ci, co) of conv
 * arrow ar: a transposed weight is read flipped, with its channels swapped. */
Ix emit_weight_ix(Emit *e, const IrArrow *ar, const Ix *k, Ix ci, Ix co);
/* emit_chunk.c: y += the convolutions in time among the arrows list[0 .. n)
 * into one block of a chunked level (z[i] the source of list[i]), as one
 * product per group of samples over all their taps; marks them in done[]
 * and returns how many (0: none fits). With first, only when the product
 * takes every arrow: it writes y (and z) as first says. */
int emit_chunk_windows(Emit *e, const int *list, const char *const *z, int n, const char *y,
                       const EmitFirst *first, bool *done);
/* y += (with first: y = as first says) the convolutions (not adjoints) among the
 * arrows list[0 .. n) into one block (z[i] the source buffer of list[i])
 * that share one geometry, as one windowed product over their stacked
 * channels; marks them in done[] and returns how many (0: none fits, emit
 * each arrow alone). */
int emit_conv_windows(Emit *e, const int *list, const char *const *z, int n, const char *y,
                      const EmitFirst *first, bool *done);
/* A block solved whole by its arrows list[0 .. n) (zs[i] the source of
 * list[i]): y as first says, then z = sigma(y); with no arrows, y = its
 * input (first.init) alone. `optional`: solved only for the inputs'
 * cotangents (input_grads). */
typedef struct EmitSolve {
  const int *list;
  const char *const *zs;
  int n;
  const char *y;
  EmitFirst first;
  bool optional;
} EmitSolve;
/* Whether emit_conv_sweep can solve s: one windowed product of all its
 * arrows, one sample a group, and sigma (or, with no arrows, sigma of the
 * input alone). */
bool emit_conv_sweeps(Emit *e, const EmitSolve *s);
/* Whether s, the block of the level after the last of a sweep that starts
 * with first, joins it: one padded geometry, and the weights of all packed
 * within the workspace (*wk: scalars of them so far, 0 at first; updated). */
bool emit_conv_sweep_joins(Emit *e, const EmitSolve *first, const EmitSolve *s, long *wk);
/* Solves s[0 .. n), each the block of a level of its own (levels from
 * `level` on), sample by sample: one loop over the samples, each sample's
 * levels in turn. */
void emit_conv_sweep(Emit *e, const EmitSolve *s, int n, int level);
/* The kernel gradients of the arrows list[0 .. n) of the primal machine
 * into one block: zs[i] the source of list[i], dws[i] the gradient of its
 * weight, ybar the block's cotangent. */
typedef struct EmitGrads {
  const int *list;
  const char *const *zs, *const *dws;
  int n;
  const char *ybar;
} EmitGrads;
/* Whether emit_conv_grad_sweep can compute g[0 .. n): each one windowed
 * product of all its arrows, one sample a group, one padded geometry. */
bool emit_conv_grad_sweeps(Emit *e, const EmitGrads *g, int n);
/* dW += the kernel gradients g[0 .. n) (the levels of a sweep) sample by
 * sample: one loop over the samples, each sample's inputs copied once into
 * one pad, each level's product of them, then the sample's sums added to
 * dW in the order of the samples. */
void emit_conv_grad_sweep(Emit *e, const EmitGrads *g, int n);
/* y = as first says, the one arrow ar of z, when one pass writes every
 * position of y: an average pooling (every tap reads inside the grid; or an
 * adjoint whose windows tile the grid), or the adjoint of a strided conv
 * whose every stride phase has taps; false, writing nothing, otherwise. */
bool emit_one_pass(Emit *e, const IrArrow *ar, const char *y, const char *z, const EmitFirst *first);
/* The same for their kernel gradients (dw[i] the gradient of list[i]'s
 * weight, ybar the block's cotangent), for arrows of the primal machine. */
int emit_conv_grad_windows(Emit *e, const int *list, const char *const *z, const char *const *dw, int n,
                           const char *ybar, bool *done);
/* dW += correlation of z_src with ybar_dst, for a primal conv arrow. */
void emit_conv_grad(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar);
void emit_layout(Arena *a, const IrMachine *m, Layout *lay);
void emit_descriptor(const IrMachine *m, const Layout *lay, const EmitOptions *o, const char *prefix,
                     StrBuf *c);
/* fn(ctx, start, len) for each run of p's entries (from p's first) that the
 * dense or conv arrow ar reads. */
void emit_weight_runs(const IrMachine *m, const IrArrow *ar, const IrParam *p,
                      void (*fn)(void *ctx, long start, long len), void *ctx);
/* The runs of dparams the machine reads, (start, length) pairs in *runs
 * (adjacent runs merged, in a); returns their count. */
long emit_read_runs(Arena *a, const IrMachine *m, long **runs);

/* emit_stream.c: why machine m cannot stream (NULL when it can: every block
 * on one time axis, every arrow a causal convolution in time or a skip); the
 * header's struct PREFIX_stream and prototypes; the two functions. */
const char *emit_stream_why(Arena *a, const IrMachine *m);
void emit_stream_header(const IrMachine *m, const char *real, const char *prefix, const char *up,
                        StrBuf *h);
void emit_stream(const IrMachine *m, const char *prefix, const char *up, StrBuf *c);

/* emit_train.c: NAME_train_step and its header part (--standalone --train). */
long emit_opt_slots(int optimizer);
/* state_scratch: the scalars of scratch after the batch's state and dual
 * state (PREFIX_STATE_SCRATCH). */
void emit_train_header(const IrMachine *m, const EmitOptions *o, const char *real,
                       const char *prefix, const char *up, long state_size, long state_scratch,
                       StrBuf *h);
void emit_train(const IrMachine *m, const EmitOptions *o, const char *prefix, long state_size,
                long state_scratch, long out_off, StrBuf *c);

#endif
