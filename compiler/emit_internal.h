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
} Emit;

/* The prelude: the real type's kernels and activations that `body` uses. */
void emit_kernels(StrBuf *c, bool f32, int vec_bytes, const char *body);
/* NB, the columns of the kernels' register tile: two vectors of the target. */
long emit_nb(bool f32, int vec_bytes);
/* The scratch of one mm_grid call of inner dimension k (LONG_MAX: known only
 * when it runs), in scalars: its packed panels. */
long emit_grid_work(long k, long nb);
const char *emit_pname(Emit *e, int param); /* a parameter's C name, marked used */
/* y_dst += the arrow applied to z_src (conv, pooling), writing only times
 * [t0, t1) on axis 0 when t0 is not NULL. */
void emit_grid_arrow(Emit *e, const IrArrow *ar, const char *y, const char *z, const char *t0,
                     const char *t1);
/* y += the stride-1 convolutions among the arrows list[0 .. n) into one
 * block (z[i] the source buffer of list[i]) that share one geometry, as one
 * windowed product over their stacked channels; marks them in done[] and
 * returns how many (0: none fits, emit each arrow alone). */
int emit_conv_windows(Emit *e, const int *list, const char *const *z, int n, const char *y, bool *done);
/* The same for their kernel gradients (dw[i] the gradient of list[i]'s
 * weight, ybar the block's cotangent), for arrows of the primal machine. */
int emit_conv_grad_windows(Emit *e, const int *list, const char *const *z, const char *const *dw, int n,
                           const char *ybar, bool *done);
/* dW += correlation of z_src with ybar_dst, for a primal conv arrow. */
void emit_conv_grad(Emit *e, const IrArrow *ar, const char *dw, const char *z, const char *ybar);
void emit_layout(Arena *a, const IrMachine *m, Layout *lay);
void emit_descriptor(const IrMachine *m, const Layout *lay, const EmitOptions *o, const char *prefix,
                     StrBuf *c);

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
