/* machc.h — the compiler's one internal header.
 *
 * One section per source file, declaring that file's API; every name a file
 * exports carries its prefix (arena_, strmap_, ck_, diag_, lex_, parse_, ast_,
 * eval_, ir_, filt_, dual_, emit_, print_, explain_, dot_, driver_), so the
 * prefix says who owns a function.
 *
 * Memory policy: one arena per compilation; nothing is freed individually.
 * No global mutable state: everything a phase needs hangs off its context
 * struct, so tests can run many compilations in one process.
 */
#ifndef MACHC_H
#define MACHC_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MACHC_VERSION "0.1.0"

/* ---------------------------------------------------------------- arena.c */

typedef struct Arena Arena;

Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t size); /* zeroed, aligned to 16 */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Growable array of pointers, memory from an arena. */
typedef struct PtrVec {
  void **items;
  int len, cap;
} PtrVec;

void vec_push(Arena *a, PtrVec *v, void *item);

/* Growable string, memory from malloc (used by the emitter and printer). */
typedef struct StrBuf {
  char *data;
  size_t len, cap;
} StrBuf;

void sb_printf(StrBuf *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap);
void sb_puts(StrBuf *sb, const char *s);
void sb_free(StrBuf *sb);

/* --------------------------------------------------------------- strmap.c
 * Strings to pointers (NULL = absent), memory from an arena; keys are not
 * copied. `probes` counts key comparisons, so tests can check that lookups
 * stay O(1) without timing anything. A zeroed StrMap is empty. */
typedef struct StrMap {
  const char **keys;
  void **vals;
  int len, cap;
  long probes;
} StrMap;

void *strmap_get(StrMap *m, const char *key);
void strmap_put(Arena *a, StrMap *m, const char *key, void *val); /* adds or replaces */

/* -------------------------------------------------------- checked integers
 * Every compile-time integer operation that can overflow goes through these
 * (true = overflow, as the GCC/Clang builtins), and every 64-bit value that
 * becomes an int goes through ck_narrow, so nothing wraps or is cut. */
static inline bool ck_add(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline bool ck_sub(int64_t a, int64_t b, int64_t *r) { return __builtin_sub_overflow(a, b, r); }
static inline bool ck_mul(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
/* v as an int when lo <= v <= hi; false (out untouched) otherwise. */
static inline bool ck_narrow(int64_t v, int lo, int hi, int *out) {
  if (v < lo || v > hi)
    return false;
  *out = (int)v;
  return true;
}

/* ----------------------------------------------------------------- diag.c */

/* A location is a byte range in one source file; line and column are
 * computed only when a diagnostic is printed (like jq's locfile). */
typedef struct Loc {
  int file; /* index into Diag.files; -1 for "no location" */
  int off;  /* byte offset of the first character */
  int len;  /* bytes covered (>= 1 when known) */
} Loc;

#define LOC_NONE ((Loc){-1, 0, 0})

typedef struct Source {
  const char *path; /* as given by the user */
  const char *text; /* NUL-terminated copy of the file */
  int len;
} Source;

typedef struct Diag {
  Source *files;
  int nfiles, capfiles;
  int nerrors;
  int max_errors; /* stop reporting after this many; 0 = 20 */
  FILE *out;      /* sink for messages (stderr, or a memstream in tests) */
  bool color;
} Diag;

void diag_init(Diag *d, FILE *out);
void diag_fini(Diag *d);
/* Registers a source text (copied); returns its file index. */
int diag_add_source(Diag *d, const char *path, const char *text, int len);
void diag_error(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_note(Diag *d, Loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void diag_verror(Diag *d, Loc loc, const char *fmt, va_list ap);
/* 1-based line and column of a location (column counts bytes). */
void diag_linecol(const Diag *d, Loc loc, int *line, int *col);
Loc loc_span(Loc a, Loc b); /* from the start of a to the end of b */

/* "Did you mean ...?" for an unknown name: offer every name in scope with
 * diag_suggest_add, then diag_suggest_hint gives "; did you mean 'X'?" for
 * the closest one within a small edit distance (adjacent transpositions
 * count as one edit), or "" when none is close. */
typedef struct Suggest {
  const char *name, *best;
  int dist;
  char hint[96];
} Suggest;
void diag_suggest_init(Suggest *s, const char *name);
void diag_suggest_add(Suggest *s, const char *candidate);
const char *diag_suggest_hint(Suggest *s);
int diag_edit_distance(const char *a, const char *b);

/* ------------------------------------------------------------------ ast.h
 * The syntax tree. One fat node struct (chibicc style) rather than a union:
 * the front end builds a few thousand nodes at most, and one shape keeps the
 * evaluator's switch simple. Which fields a kind uses is said next to it. */

typedef enum AstKind {
  /* expressions */
  AST_INT,    /* ival */
  AST_FLOAT,  /* fval */
  AST_STRING, /* str (unescaped) */
  AST_BOOL,   /* ival: 0 or 1 */
  AST_NAME,   /* str: identifier */
  AST_MEMBER, /* lhs . str                 e.g. m.x */
  AST_INDEX,  /* lhs [ args ]              e.g. x[i], W[0 .. 4, 2 .. 6] */
  AST_CALL,   /* lhs ( args ); args may hold AST_KWARG */
  AST_KWARG,  /* str = lhs                 only inside call args */
  AST_LIST,   /* [ args ] */
  AST_RANGE,  /* lhs .. rhs (ival = 0), lhs ..= rhs (ival = 1) */
  AST_BINOP,  /* lhs op rhs; op is one of the BinOp values */
  AST_UNOP,   /* op lhs; op is '-' or '!' (not) */
  AST_COMP,   /* [ lhs for str in rhs ]: a list comprehension */
  /* statements (inside machine bodies) */
  AST_BLOCK,  /* lhs = block name (NAME or INDEX or MEMBER expression),
                 shape = channels expr (maybe with @ grid), rhs = definition
                 (NULL for 'input NAME : shape'), flags = BLOCK_* */
  AST_MARK_OUTPUT, /* 'output' args: names of existing blocks */
  AST_PARAM,  /* 'param' lhs ':' shape ['=' rhs]: explicit parameter tensor;
                 lhs is a name expression (W, or m.W as printed for instances) */
  AST_LET,    /* 'let' str '=' rhs */
  AST_FOR,    /* 'for' str 'in' rhs '{' body '}' */
  AST_IF,     /* 'if' cond '{' body '}' ['else' '{' els '}'] */
  AST_USE,    /* 'use' [str '='] rhs (a call or name of a machine) */
  AST_SET,    /* 'set' str '=' rhs: a machine setting, e.g. set timeblock = 5 */
  /* top level */
  AST_MACHINE, /* 'machine' str [ '(' params ')' ] '{' body '}'
                  or 'machine' str [ '(' params ')' ] '=' rhs (composition) */
  AST_IMPORT,  /* 'import' str */
} AstKind;

typedef enum BinOp {
  OP_ADD = '+', OP_SUB = '-', OP_MUL = '*', OP_DIV = '/', OP_MOD = '%',
  OP_AT = '@',  /* channels @ [grid] */
  OP_SEQ = 'S', /* f >> g, sequential composition */
  OP_PAR = '|', /* f | g, parallel composition */
  OP_EQ = 'e', OP_NE = 'n', OP_LT = '<', OP_LE = 'l', OP_GT = '>', OP_GE = 'g',
  OP_AND = '&', OP_OR = 'o', OP_NOT = '!',
} BinOp;

enum { BLOCK_INPUT = 1, BLOCK_OUTPUT = 2 };

typedef struct AstList {
  struct Ast **items;
  int len, cap;
} AstList;

typedef struct Ast {
  AstKind kind;
  Loc loc;          /* whole construct; for binops, the operator token */
  int op;           /* BinOp for AST_BINOP / AST_UNOP */
  int flags;        /* BLOCK_* for AST_BLOCK */
  int depth;        /* nesting depth of this expression (bounded by parser) */
  int64_t ival;
  double fval;
  const char *str;
  struct Ast *lhs, *rhs, *shape, *cond;
  AstList args;     /* call/index/list args; MARK_OUTPUT names */
  AstList params;   /* AST_MACHINE: AST_NAME or AST_KWARG (with default) */
  AstList body;     /* statements of machine / for / if-then */
  AstList els;      /* if-else */
} Ast;

/* The parsed file: imports and machines in source order. */
typedef struct AstFile {
  int file; /* Diag file index */
  AstList items;
} AstFile;

Ast *ast_new(Arena *a, AstKind kind, Loc loc);
void ast_push(Arena *a, AstList *l, Ast *node);

/* --------------------------------------------------- lexer.re / parser.y */

/* Maximum nesting of brackets/expressions the parser accepts; deeper input
 * gets a diagnostic instead of exhausting any stack. */
#define PARSE_MAX_DEPTH 256
/* Longest identifier, in bytes (names built from them, like m.x[3], may be
 * longer). */
#define LEX_MAX_IDENT 256

/* Parses one registered source file. Returns the tree (possibly partial);
 * errors are reported to d, and d->nerrors tells whether it succeeded. */
AstFile *parse_file(Arena *a, Diag *d, int file);

/* Token dump for tests: one token kind name per line, e.g. "IDENT x". */
char *lex_dump(Arena *a, Diag *d, int file);

/* One token from the scanner. kind is a parser token kind (T_IDENT, '{',
 * T_END, ... from the generated parser.h); the payload depends on it. */
typedef struct Token {
  int kind;
  Loc loc;          /* the token's bytes in the source */
  int64_t ival;     /* T_INT */
  double fval;      /* T_FLOAT */
  const char *str;  /* T_IDENT (name), T_STRING (unescaped) */
} Token;

/* The re2c scanner's whole state: reentrant, no globals. Literal errors
 * (too large, unterminated) are reported to d here; bytes that start no
 * token come back as T_INVALID for the parser to report. */
typedef struct Lexer {
  Arena *a;
  Diag *d;
  int file;
  const char *text;       /* start of the source (Source.text) */
  const char *cur, *lim;  /* lim = text + len; *lim is the NUL sentinel */
  const char *mar, *tok;  /* re2c backtracking marker; current token start */
  bool eof_in_comment;    /* an unterminated comment ate the rest */
} Lexer;

void lex_init(Lexer *lx, Arena *a, Diag *d, int file);
void lex_next(Lexer *lx, Token *t);
/* s[0..n) made printable: bytes outside 0x20..0x7e become \xNN. */
char *lex_escape(Arena *a, const char *s, int n);

/* ast.c constructors called from parser.y's actions. Expression nodes get
 * depth = 1 + the deepest child; lists are values grown in the arena. */
AstList ast_append(Arena *a, AstList l, Ast *node); /* NULL is skipped */
AstList ast_list1(Arena *a, Ast *node);
Ast *ast_int(Arena *a, int64_t v, Loc loc);
Ast *ast_float(Arena *a, double v, Loc loc);
Ast *ast_bool(Arena *a, int v, Loc loc);
Ast *ast_str(Arena *a, AstKind kind, const char *s, Loc loc); /* NAME, STRING, IMPORT */
Ast *ast_binop(Arena *a, int op, Ast *l, Ast *r, Loc loc);
Ast *ast_unop(Arena *a, int op, Ast *e, Loc loc);
Ast *ast_range(Arena *a, int inclusive, Ast *l, Ast *r, Loc loc);
Ast *ast_member(Arena *a, Ast *e, const char *name, Loc loc);
Ast *ast_postfix(Arena *a, AstKind kind, Ast *e, AstList args, Loc loc); /* CALL, INDEX */
Ast *ast_list(Arena *a, AstList items, Loc loc);
Ast *ast_comp(Arena *a, Ast *elem, const char *var, Ast *iter, Loc loc);
Ast *ast_kwarg(Arena *a, const char *name, Ast *value, Loc loc);
Ast *ast_block(Arena *a, int flags, Ast *name, Ast *shape, Ast *rhs, Loc loc);
Ast *ast_mark_output(Arena *a, AstList names, Loc loc);
Ast *ast_param(Arena *a, Ast *name, Ast *shape, Ast *rhs, Loc loc);
Ast *ast_named(Arena *a, AstKind kind, const char *name, Ast *rhs, Loc loc); /* LET, SET, USE */
Ast *ast_for(Arena *a, const char *var, Ast *range, AstList body, Loc loc);
Ast *ast_if(Arena *a, Ast *cond, AstList body, AstList els, Loc loc);
Ast *ast_machine(Arena *a, const char *name, AstList params, AstList body,
                 Ast *rhs, Loc loc);

/* ------------------------------------------------------------------- ir.c
 * The machine IR: blocks (subspaces) and arrows (linear maps between them),
 * separate from the syntax tree. A dual machine is an IrMachine too: same
 * blocks, transposed arrows, derivative activations, reversed levels. */

#define IR_MAX_GRID 4 /* grid axes of a block (time and/or space) */
#define IR_MAX_RANK 6 /* rank of a parameter tensor */

typedef enum ActKind {
  ACT_IDENTITY,   /* z = y */
  ACT_TANH,
  ACT_SIGMOID,
  ACT_RELU,
  ACT_LEAKY_RELU, /* alpha: slope for y < 0 */
  ACT_GELU,       /* exact: y * Phi(y) */
  ACT_SOFTPLUS,
  ACT_SIN,
  ACT_SOFTMAX,    /* not pointwise: z = exp(y - max) / sum exp(y - max) over the
                     channels, at each grid point (a flat block: all of it) */
  ACT_MUL,        /* z = z[gate] * y; gate is a block (an input) of this machine */
  ACT_SOFTMAX_JVP, /* z = s * (y - <s, y>), s = z[gate], the inner product over
                     the channels: the softmax's Jacobian at s times y. Printed
                     dual machines use it; gate is a block like mul's */
  ACT_DERIV,      /* dual machines only: z = sigma'(y_primal) * y, where sigma
                     is deriv_of (with alpha) and the primal state is that of
                     the same block in IrMachine.primal; for softmax (and
                     softmax_jvp) the Jacobian-vector product z_p * (y - <z_p, y>)
                     with z_p the primal softmax output (the primal gate's z) */
} ActKind;

typedef struct Act {
  ActKind kind;
  double alpha;     /* ACT_LEAKY_RELU (and ACT_DERIV of it) */
  int gate;         /* ACT_MUL, ACT_SOFTMAX_JVP (and their ACT_DERIV): block index */
  ActKind deriv_of; /* ACT_DERIV */
} Act;

typedef struct Shape {
  int channels;
  int ngrid;              /* 0 for a flat block */
  int grid[IR_MAX_GRID];
} Shape;

typedef struct IrBlock {
  const char *name;  /* as in the source, with instance prefixes: "m.x[2]" */
  const char *cname; /* a C identifier, unique in the machine: "m_x_2" */
  Loc loc;
  Shape shape;
  long size;         /* channels * grid */
  Act act;
  bool has_input;    /* y0 is given from outside: an input of the model */
  bool is_output;
  int bias;          /* parameter index, -1 without bias */
  int level;         /* filled by the filtration */
} IrBlock;

typedef enum ArrowKind {
  ARROW_DENSE,    /* y_dst[o] += sum_i z_src[i] W[in_off + i, out_off + o] (flattened) */
  ARROW_CONV,     /* y_dst[co, t] += sum_ci,k z_src[ci, t*s + k*d - p0] W[k.., ci, co] */
  ARROW_IDENTITY, /* y_dst += z_src (same shape) */
  ARROW_AVGPOOL,  /* average over windows (kernel, stride, pads per axis) */
  ARROW_GAVGPOOL, /* average over the whole grid, per channel */
  ARROW_GATE,     /* dual machines only: the gradient through the gate of a
                     mul block src, y_dst += y_src(primal) * y_src (zbar); of a
                     softmax_jvp block src (s = the gate's primal z, y = y_src
                     primal, w = zbar_src): y_dst += y w - w <s, y> - y <s, w> */
} ArrowKind;

typedef struct ConvAxis {
  int kernel, pad0, pad1, stride, dilation;
} ConvAxis;

typedef struct WeightRef {
  int param;            /* parameter index, -1 when the arrow has none */
  int in_off, out_off;  /* offsets into the parameter's two channel axes */
  int k_off[IR_MAX_GRID]; /* offsets into its kernel axes (lag masks) */
  bool transposed;      /* dual arrows: read W^T (dense) or the flipped
                           kernel with in/out channels swapped (conv) */
} WeightRef;

typedef struct IrArrow {
  ArrowKind kind;
  int src, dst; /* block indices */
  Loc loc;
  WeightRef w;
  int ngrid;
  ConvAxis ax[IR_MAX_GRID];
  bool adjoint; /* dual arrows whose adjoint is not of their own kind: the
                   map from dst-shaped to src-shaped data described by the
                   fields (strided conv -> transposed conv, pooling -> spread) */
} IrArrow;

typedef enum InitKind { INIT_ZEROS, INIT_ONES, INIT_UNIFORM, INIT_NORMAL, INIT_GLOROT } InitKind;

typedef struct IrParam {
  const char *name;  /* npz entry name */
  const char *cname; /* C identifier */
  Loc loc;
  int rank;
  int shape[IR_MAX_RANK];
  long size, offset;
  InitKind init;
  double init_scale; /* UNIFORM / NORMAL; GLOROT is resolved to UNIFORM */
  bool decay;        /* weight decay applies (weights, not biases) */
  bool glorot;       /* initialised as Glorot uniform (init_scale from fans) */
  bool is_bias;      /* made by a `bias` term */
} IrParam;

typedef struct IrMachine {
  const char *name;
  const char *source; /* path of the main .mach file */
  PtrVec blocks;      /* IrBlock* */
  PtrVec arrows;      /* IrArrow* */
  PtrVec params;      /* IrParam* */
  int *inputs, ninputs;   /* block indices: model inputs, in order */
  int *outputs, noutputs; /* block indices: model outputs, in order */
  int nlevels;        /* filled by the filtration */
  int time_length, timeblock; /* recurrent machines: the filtration runs over
                                 (chunk of timeblock steps, level); 0 otherwise */
  Loc timeblock_loc;  /* where `set timeblock` was written, if it was */
  int chunk_lo, chunk_hi; /* recurrent machines: levels [lo, hi) run in chunks of
                             time; those before and after run whole */
  bool reverse_time;  /* dual machines: chunks are solved last to first */
  long param_size;
  const struct IrMachine *primal; /* dual machines: the forward machine */
} IrMachine;

#define IR_BLOCK(m, i) ((IrBlock *)(m)->blocks.items[i])
#define IR_ARROW(m, i) ((IrArrow *)(m)->arrows.items[i])
#define IR_PARAM(m, i) ((IrParam *)(m)->params.items[i])

const char *ir_act_name(ActKind k);
bool ir_act_lookup(const char *name, ActKind *k);
char *ir_act_text(Arena *a, const Act *act); /* "leaky_relu(alpha = 0.2)" */
char *ir_shape_text(Arena *a, const Shape *s); /* "16 @ [28, 28]" */
long ir_shape_size(const Shape *s);
/* A C identifier for name, unique among those already in used (which it extends). */
const char *ir_cname(Arena *a, StrMap *used, const char *prefix, const char *name);
/* Indices grouped by key, in index order inside a group (a counting sort,
 * so that printing "for each level, its blocks" or "for each block, the
 * arrows into it" stays linear): group g is order[start[g] .. start[g+1]). */
typedef struct IrGroups {
  int *start; /* ngroups + 1 */
  int *order;
} IrGroups;
IrGroups ir_blocks_by_level(Arena *a, const IrMachine *m);
IrGroups ir_arrows_by_dst(Arena *a, const IrMachine *m);
/* FLOPs of one forward pass per sample (multiply-adds count 2). */
double ir_arrow_flops(const IrMachine *m, const IrArrow *ar);
double ir_forward_flops(const IrMachine *m);
/* Output grid size of a conv/pool arrow along one axis. */
int ir_conv_out(int in, const ConvAxis *ax);

/* -------------------------------------------------------------- ir_text.c
 * The text of an arrow, for every place that shows one (printer, explain,
 * DOT, C comments) and the names the evaluator accepts. */

typedef enum IrTextStyle {
  IR_TEXT_MACH, /* .mach source: weight = transpose(W[0 .. 2, 4 .. 8]) */
  IR_TEXT_MATH, /* for people, y = z W: a dense term is "z W[0 .. 2, 4 .. 8]^T" */
} IrTextStyle;

/* The .mach function of a kind ("dense", "conv", "identity_map", ...). */
const char *ir_arrow_fn(ArrowKind k);
/* Parses an arrow function name; NAME_t is the adjoint of a grid arrow. */
bool ir_arrow_lookup(const char *name, ArrowKind *k, bool *adjoint);
/* The kind as shown: "dense", "conv", "conv_t", "avgpool", "skip", ... */
const char *ir_arrow_kind(const IrArrow *ar);
/* The weight and its slice, "m.W[0 .. 2, 6 .. 10]"; NULL without a weight. */
char *ir_arrow_weight(Arena *a, const IrMachine *m, const IrArrow *ar, IrTextStyle st);
/* The options that differ from their defaults, then the weight:
 * "k = [3, 3], pad = [1, 1, 1, 1], stride = [2, 2], weight = K"; or
 * "lags = 1 ..= 2, weight = W" for a causal convolution in time; "" for none. */
char *ir_arrow_args(Arena *a, const IrMachine *m, const IrArrow *ar, IrTextStyle st);
/* The whole term reading src (a block name, or a C buffer in comments):
 * "conv(src, k = [3], weight = W)", "src" for a skip, and for dense
 * "dense(src, weight = W)" (MACH) or "src W" (MATH). */
char *ir_arrow_text(Arena *a, const IrMachine *m, const IrArrow *ar, const char *src, IrTextStyle st);

/* ----------------------------------------------------------------- eval.c
 * Elaboration: runs the .mach program (parameters, loops, instantiations,
 * compositions) and builds the IR of one machine. */

typedef struct Program Program;

/* Loads a file and, recursively, its imports (searched next to the importing
 * file, then in each stdlib directory). */
Program *eval_load(Arena *a, Diag *d, const char *path, const char **stdlib_dirs,
                   int nstdlib);
/* The same for a source text held in memory (tests, fuzzing); imports are
 * searched in the stdlib directories and next to `name`. */
Program *eval_load_text(Arena *a, Diag *d, const char *name, const char *text, int len,
                        const char **stdlib_dirs, int nstdlib);
/* The machine to compile: `name`, or the last machine without parameters in
 * the main file when name is NULL. Returns NULL after reporting errors. */
IrMachine *eval_machine(Program *p, const char *name);
/* Names of the machines defined in the main file, for diagnostics/--list. */
void eval_list_machines(Program *p, FILE *out);

/* ----------------------------------------------------------------- filt.c
 * The depth filtration: levels from the longest path from the sources, or
 * an error naming a cycle when the machine has no finite depth. */

bool filt_levels(IrMachine *m, Diag *d);

/* ----------------------------------------------------------------- dual.c */

/* The dual machine: same blocks, every arrow transposed, activations
 * replaced by their derivative at the primal state, levels reversed.
 * Inputs are the primal's outputs (cotangents), outputs the primal's inputs. */
IrMachine *dual_machine(Arena *a, const IrMachine *m);

/* ----------------------------------------------------------------- emit.c */

typedef struct EmitOptions {
  bool f32;        /* float instead of double */
  bool backward;   /* emit the dual solve and parameter gradients */
  bool standalone; /* inference only: no runtime, no main */
  bool fp_contract_off; /* the C forbids contracting a * b + c into an FMA */
  bool train;      /* standalone: also NAME_train_step (emit_train.c) */
  bool loss_xent;  /* its loss: softmax cross-entropy, else mse */
  int optimizer;   /* its update: 0 sgd, 1 momentum, 2 adam */
  int vec_bytes;   /* the target's vector width (--march): the kernels' tiles */
  bool plain_kernels; /* --kernels=plain: the prelude's kernels as naive loops */
  const char *header_name; /* "model.h": what the .c includes */
  const char *c_name;      /* "model.c": named in the files' first comment */
  const char *weights_name; /* "model_weights.c" from --weights, else NULL: the
                               header declares PREFIX_weights, defined there */
} EmitOptions;

/* Writes the C source and header of machine m (levels computed). */
void emit_c(const IrMachine *m, const IrMachine *dual, const EmitOptions *o,
            StrBuf *c, StrBuf *h);
/* The prefix of the generated names (poly_forward) and of the macros
 * (POLY_PARAM_SIZE). */
const char *emit_prefix(Arena *a, const IrMachine *m);
const char *emit_macro_prefix(Arena *a, const IrMachine *m);

/* ----------------------------------------------------------------- plan.c */

#define PLAN_OUTPUT (-1L) /* the buffer is the caller's output array */

/* Inference's memory plan: per-sample offsets of each block's y and z in one
 * workspace (PLAN_OUTPUT for an output's); z overwrites y, and blocks share
 * memory when no level needs both; size is the workspace in scalars per
 * sample. */
typedef struct Plan {
  long *y_off, *z_off;
  long size;
} Plan;

void plan_inference(Arena *a, const IrMachine *m, Plan *p);

/* ----------------------------------------------------------------- bake.c */

/* The header's parameter map: `#define UP_OFF_<param> offset` and a shape
 * comment per parameter (UP: the uppercased prefix of the header's macros). */
void bake_offsets(const IrMachine *m, const char *up, StrBuf *h);
/* Reads the weights file npz (the runtime's loader, its messages on stderr)
 * and writes cname, the C file defining `const real PREFIX_weights[]` in hex
 * floats. Returns false after printing why. */
bool bake_weights(const IrMachine *m, const EmitOptions *o, const char *npz, const char *cname,
                  StrBuf *c);

/* ---------------------------------------------------------------- print.c */

/* Prints m as valid .mach source (used for --emit=dual). */
void print_machine(const IrMachine *m, StrBuf *out);

/* -------------------------------------------------------------- explain.c */

void explain_machine(const IrMachine *m, FILE *out);

/* ------------------------------------------------------------------ dot.c */

/* The depth diagram as a Graphviz graph: levels as ranks; with dual (not
 * NULL), the dual machine drawn below the machine. */
void dot_write(const IrMachine *m, const IrMachine *dual, FILE *out);

#endif /* MACHC_H */
