/* eval_value.h — values and drafts shared by the evaluator's files
 * (eval.c runs statements and expressions, draft.c merges machines and
 * builds the IR). Not part of the compiler's API: see machc.h for that. */
#ifndef EVAL_VALUE_H
#define EVAL_VALUE_H

#include "machc.h"

/* Compile-time values. One struct for all kinds (which fields a kind uses is
 * said next to it), like the AST. */
typedef enum VKind {
  V_INT,     /* i */
  V_FLOAT,   /* f */
  V_BOOL,    /* i */
  V_STR,     /* s */
  V_LIST,    /* items: Value* */
  V_SHAPE,   /* shape */
  V_ACT,     /* act: an activation not yet applied (e.g. a parameter `act`) */
  V_REF,     /* s = name of a block or parameter, items = index values not yet
                applied (ints or lists); transposed for transpose(W) */
  V_TERMS,   /* items: Term*: a linear part, a sum of terms */
  V_BEXPR,   /* act + items (Term*) + gate (ACT_MUL, ACT_SOFTMAX_JVP): a block's definition */
  V_MACHINE, /* def + call (its arguments, once called), or op + lhs/rhs for a composition */
  V_INIT,    /* init + f (scale): how a parameter starts */
  V_FUNC,    /* s: a builtin function (len, sum, min, max, ...) */
} VKind;

typedef struct Value Value;

/* The arguments of a machine call: only machine values that were called
 * carry them, so that every other value stays small. */
typedef struct VCall {
  PtrVec args;    /* Value* positional arguments */
  PtrVec kwnames; /* const char* keyword argument names */
  PtrVec kwargs;  /* Value* keyword argument values */
} VCall;

/* The fields of one kind only share memory: a block of 100,000 lines makes
 * about a million values, counted against the memory limit of evaluation
 * (docs/language.md §14), so a value is 96 bytes rather than 200. Which
 * fields a kind uses is said beside its name in VKind. */
struct Value {
  VKind kind;
  Loc loc;
  int64_t i;
  double f;
  const char *s;
  PtrVec items;
  int op; /* V_MACHINE: OP_ADD, OP_PAR, OP_SEQ for compositions */
  union {
    bool transposed; /* V_REF */
    InitKind init;   /* V_INIT */
    Shape shape;     /* V_SHAPE */
    struct {         /* V_ACT, V_BEXPR */
      Act act;
      Value *gate; /* V_BEXPR with ACT_MUL or ACT_SOFTMAX_JVP: a V_REF */
    };
    struct {          /* V_MACHINE */
      const Ast *def; /* AST_MACHINE, or NULL for a composition */
      VCall *call;    /* the arguments once called (NULL: none given) */
      Value *lhs, *rhs;
    };
  };
};

typedef enum TermKind {
  TERM_ARROW, /* an arrow from each of srcs */
  TERM_BIAS,  /* + b */
  TERM_INPUT, /* + y0: the block takes external input */
} TermKind;

/* One source name of an arrow, with where it was written. */
typedef struct SrcName {
  const char *name;
  Loc loc;
} SrcName;

typedef struct Term {
  TermKind kind;
  Loc loc;
  ArrowKind arrow;
  bool adjoint;         /* conv_t, avgpool_t, global_avgpool_t: the adjoint map */
  PtrVec srcs;          /* Value* as written, SrcName* once expanded */
  bool expanded;        /* srcs hold names: a term may stand twice in a linear
                           part (t + t), and is expanded once */
  Value *weight;        /* V_REF (maybe sliced/transposed) or NULL: own weight */
  int ngrid;            /* conv/pool: axes given */
  ConvAxis ax[IR_MAX_GRID];
  bool pad_same;        /* pad = same: computed from the kernel */
  int ngrid_in;         /* sum over sources of a shared weight's input extent */
  bool has_lags;        /* conv along axis 0 given as lags = a ..= b */
  int lag_lo, lag_hi;
  Value *kernel_v, *pad_v, *stride_v, *dilation_v; /* raw options, checked when the sources are known */
} Term;

/* A block or parameter declared while running a machine body. */
typedef struct DBlock {
  const char *name;
  Loc loc;
  Shape shape;
  Act act;
  const char *gate;     /* ACT_MUL, ACT_SOFTMAX_JVP: gate block name */
  Loc gate_loc;
  PtrVec terms;         /* Term* */
  bool has_input, is_output;
  bool instance;        /* came from a `use`: its input may be fed by a later declaration */
} DBlock;

typedef struct DParam {
  const char *name;
  Loc loc;
  int rank;
  int shape[IR_MAX_RANK];
  InitKind init;
  double scale;
} DParam;

typedef struct DMark {
  const char *name;
  Loc loc;
} DMark;

/* What a machine body produced: its blocks, parameters and settings, before
 * names are resolved (declarations may come in any order). */
typedef struct Draft {
  const char *name;
  PtrVec blocks; /* DBlock*, added with draft_add_block */
  PtrVec params; /* DParam*, added with draft_add_param */
  StrMap *block_map, *param_map; /* the same by name */
  PtrVec marks;  /* DMark*: `output NAME` lines */
  int timeblock; /* `set timeblock = N`, 0 if not set */
  Loc timeblock_loc;
} Draft;

typedef enum MergeMode {
  MERGE_USE, /* `use`: the used machine's outputs become internal blocks */
  MERGE_SUM, /* f + g: union of arrows; blocks with one name are one block */
  MERGE_PAR, /* f | g: like the sum, but no block may be in both */
} MergeMode;

/* draft.c */
Draft *draft_new(Arena *a, const char *name);
DBlock *draft_find(const Draft *d, const char *name);
void draft_add_block(Arena *a, Draft *d, DBlock *b);
void draft_add_param(Arena *a, Draft *d, DParam *p);
void draft_prefix(Arena *a, Draft *d, const char *label);
bool draft_merge(Arena *a, Diag *diag, Draft *into, Draft *from, MergeMode mode, Loc loc);
bool draft_feed(Diag *diag, DBlock *in, const DBlock *def);
bool draft_sequence(Arena *a, Diag *diag, Draft *left, Draft *right, Loc loc);
IrMachine *draft_build(Arena *a, Diag *diag, Draft *d, const char *source);

#endif
