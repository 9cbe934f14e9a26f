/* draft.c — drafts of machines: composing them (use, +, |, >>) and turning
 * the final one into IR, resolving names and checking every size. */
#include "eval_value.h"

#include <limits.h>
#include <math.h>
#include <string.h>

enum {
  MAX_PARAMS_LOG2 = 31,
  MAX_CONV_OPTION = 1 << 20, /* kernel size, stride, dilation along one axis */
  MAX_PAD = 1 << 24,         /* |pad|, the largest grid axis */
};
#define MAX_PARAMS (1L << MAX_PARAMS_LOG2) /* scalars in all parameters */

Draft *draft_new(Arena *a, const char *name) {
  Draft *d = arena_alloc(a, sizeof *d);
  d->name = name;
  d->block_map = arena_alloc(a, sizeof *d->block_map);
  d->param_map = arena_alloc(a, sizeof *d->param_map);
  return d;
}

DBlock *draft_find(const Draft *d, const char *name) { return strmap_get(d->block_map, name); }

static DParam *find_param(const Draft *d, const char *name) { return strmap_get(d->param_map, name); }

void draft_add_block(Arena *a, Draft *d, DBlock *b) {
  vec_push(a, &d->blocks, b);
  strmap_put(a, d->block_map, b->name, b);
}

void draft_add_param(Arena *a, Draft *d, DParam *p) {
  vec_push(a, &d->params, p);
  strmap_put(a, d->param_map, p->name, p);
}

/* ------------------------------------------------------------ composition */

static const char *pre(Arena *a, const char *label, const char *name) {
  return arena_printf(a, "%s.%s", label, name);
}

/* `use m = f(...)`: every name of the instance gets the prefix "m.". */
void draft_prefix(Arena *a, Draft *d, const char *label) {
  for (int i = 0; i < d->blocks.len; i++) {
    DBlock *b = d->blocks.items[i];
    b->name = pre(a, label, b->name);
    if (b->gate)
      b->gate = pre(a, label, b->gate);
    for (int j = 0; j < b->terms.len; j++) {
      Term *t = b->terms.items[j];
      for (int k = 0; k < t->srcs.len; k++) {
        SrcName *s = t->srcs.items[k];
        s->name = pre(a, label, s->name);
      }
      if (t->weight) {
        Value *w = arena_alloc(a, sizeof *w);
        *w = *t->weight;
        w->s = pre(a, label, w->s);
        t->weight = w;
      }
    }
  }
  for (int i = 0; i < d->params.len; i++) {
    DParam *p = d->params.items[i];
    p->name = pre(a, label, p->name);
  }
  for (int i = 0; i < d->marks.len; i++) {
    DMark *m = d->marks.items[i];
    m->name = pre(a, label, m->name);
  }
  *d->block_map = (StrMap){0}; /* every name changed */
  *d->param_map = (StrMap){0};
  for (int i = 0; i < d->blocks.len; i++)
    strmap_put(a, d->block_map, ((DBlock *)d->blocks.items[i])->name, d->blocks.items[i]);
  for (int i = 0; i < d->params.len; i++)
    strmap_put(a, d->param_map, ((DParam *)d->params.items[i])->name, d->params.items[i]);
}

static bool pure_input(const DBlock *b) { return b->has_input && b->terms.len == 0; }

static bool same_shape(const Shape *x, const Shape *y) {
  if (x->channels != y->channels || x->ngrid != y->ngrid)
    return false;
  for (int i = 0; i < x->ngrid; i++)
    if (x->grid[i] != y->grid[i])
      return false;
  return true;
}

static bool merge_block(Arena *a, Diag *diag, Draft *into, DBlock *b, MergeMode mode, Loc loc) {
  DBlock *e = draft_find(into, b->name);
  if (mode == MERGE_USE)
    b->is_output = false;
  if (!e) {
    draft_add_block(a, into, b);
    return true;
  }
  if (mode == MERGE_PAR) {
    diag_error(diag, loc, "block '%s' is in both machines of a parallel composition", b->name);
    return false;
  }
  if (!same_shape(&e->shape, &b->shape)) {
    diag_error(diag, loc, "block '%s' is %s in one machine and %s in the other", b->name,
               ir_shape_text(a, &e->shape), ir_shape_text(a, &b->shape));
    diag_note(diag, loc, "composed machines share a block by its name; to keep two blocks "
                         "apart, instantiate with labels: use a = ...; use b = ...");
    return false;
  }
  if (!pure_input(e) && !pure_input(b)) {
    diag_error(diag, loc, "block '%s' is defined by both machines", b->name);
    diag_note(diag, e->loc, "one definition is here");
    diag_note(diag, b->loc, "the other is here");
    diag_note(diag, loc, "composed machines share a block by its name; to keep two blocks "
                         "apart, instantiate with labels: use a = ...; use b = ...");
    return false;
  }
  bool out = e->is_output || b->is_output;
  bool ok = true;
  if (pure_input(e) && !pure_input(b)) /* b feeds e's input */
    ok = draft_feed(diag, e, b);
  else if (pure_input(b) && !pure_input(e))
    ok = draft_feed(diag, b, e) && (*e = *b, true);
  e->is_output = out;
  return ok;
}

/* A defined block `def` takes the place of the external input of block `in`
 * (both of one name): in's y0 becomes def's linear part. The activation is
 * the one of the two that is not the identity (an input block of the paper's
 * machines applies its own). */
bool draft_feed(Diag *diag, DBlock *in, const DBlock *def) {
  if (in->act.kind != ACT_IDENTITY && def->act.kind != ACT_IDENTITY) {
    diag_error(diag, def->loc, "'%s' already applies %s to its input; feed it a linear part "
                               "(arrows, bias), without an activation", in->name,
               ir_act_name(in->act.kind));
    diag_note(diag, in->loc, "'%s' is declared here", in->name);
    return false;
  }
  Act act = in->act.kind != ACT_IDENTITY ? in->act : def->act;
  const char *gate = in->act.kind != ACT_IDENTITY ? in->gate : def->gate;
  Loc gate_loc = in->act.kind != ACT_IDENTITY ? in->gate_loc : def->gate_loc;
  bool out = in->is_output || def->is_output;
  in->terms = def->terms;
  in->has_input = def->has_input;
  in->act = act;
  in->gate = gate;
  in->gate_loc = gate_loc;
  in->is_output = out;
  in->loc = def->loc;
  return true;
}

bool draft_merge(Arena *a, Diag *diag, Draft *into, Draft *from, MergeMode mode, Loc loc) {
  bool ok = true;
  for (int i = 0; i < from->blocks.len; i++)
    ok &= merge_block(a, diag, into, from->blocks.items[i], mode, loc);
  for (int i = 0; i < from->params.len; i++) {
    DParam *p = from->params.items[i];
    if (find_param(into, p->name)) {
      diag_error(diag, loc, "parameter '%s' is declared by both machines; "
                            "instantiate with a label (use m = ...) to keep them apart", p->name);
      ok = false;
      continue;
    }
    draft_add_param(a, into, p);
  }
  if (mode != MERGE_USE)
    for (int i = 0; i < from->marks.len; i++)
      vec_push(a, &into->marks, from->marks.items[i]);
  if (from->timeblock) {
    if (into->timeblock && into->timeblock != from->timeblock) {
      diag_error(diag, loc, "the machines set different timeblocks (%d and %d)",
                 into->timeblock, from->timeblock);
      ok = false;
    }
    into->timeblock = from->timeblock;
    into->timeblock_loc = from->timeblock_loc;
  }
  return ok;
}

static bool marked(StrMap *marks, const DBlock *b) {
  return b->is_output || strmap_get(marks, b->name);
}

/* f >> g: g's inputs, in order, read f's outputs, in order, through an
 * identity arrow; f's outputs become internal; then the two are summed. */
bool draft_sequence(Arena *a, Diag *diag, Draft *left, Draft *right, Loc loc) {
  PtrVec outs = {0}, ins = {0};
  StrMap marks = {0};
  for (int i = 0; i < left->marks.len; i++)
    strmap_put(a, &marks, ((DMark *)left->marks.items[i])->name, left->marks.items[i]);
  for (int i = 0; i < left->blocks.len; i++)
    if (marked(&marks, left->blocks.items[i]))
      vec_push(a, &outs, left->blocks.items[i]);
  for (int i = 0; i < right->blocks.len; i++)
    if (((DBlock *)right->blocks.items[i])->has_input)
      vec_push(a, &ins, right->blocks.items[i]);
  if (outs.len != ins.len) {
    diag_error(diag, loc, "'>>' joins %d output%s of '%s' to %d input%s of '%s'", outs.len,
               outs.len == 1 ? "" : "s", left->name, ins.len, ins.len == 1 ? "" : "s", right->name);
    return false;
  }
  for (int i = 0; i < outs.len; i++) {
    DBlock *o = outs.items[i], *in = ins.items[i];
    if (!same_shape(&o->shape, &in->shape)) {
      diag_error(diag, loc, "'>>' joins output '%s' (%s) to input '%s' (%s)", o->name,
                 ir_shape_text(a, &o->shape), in->name, ir_shape_text(a, &in->shape));
      return false;
    }
    Term *t = arena_alloc(a, sizeof *t);
    t->kind = TERM_ARROW;
    t->arrow = ARROW_IDENTITY;
    t->loc = loc;
    SrcName *s = arena_alloc(a, sizeof *s);
    s->name = o->name;
    s->loc = loc;
    vec_push(a, &t->srcs, s);
    vec_push(a, &in->terms, t);
    in->has_input = false;
    o->is_output = false;
  }
  left->marks = (PtrVec){0};
  return draft_merge(a, diag, left, right, MERGE_SUM, loc);
}

/* ------------------------------------------------------------ building IR */

typedef struct Builder {
  Arena *a;
  Diag *d;
  Draft *draft;
  IrMachine *m;
  StrMap cnames;  /* C identifiers of blocks */
  StrMap pnames;  /* C identifiers of parameters */
  StrMap block_ix, param_ix; /* names to index + 1 in m->blocks, m->params */
  StrMap param_next; /* a clashing parameter name to the next suffix to try */
} Builder;

/* Indices by name, stored as index + 1 so that 0 (NULL) means absent. */
static int block_index(Builder *b, const char *name) {
  return (int)(intptr_t)strmap_get(&b->block_ix, name) - 1;
}

static int param_index(Builder *b, const char *name) {
  return (int)(intptr_t)strmap_get(&b->param_ix, name) - 1;
}

/* Saturates at LONG_MAX instead of overflowing. */
static long prod(const int *s, int n) {
  long p = 1;
  for (int i = 0; i < n; i++)
    if (__builtin_mul_overflow(p, (long)s[i], &p))
      return LONG_MAX;
  return p;
}

static IrParam *add_param(Builder *b, const char *name, Loc loc, int rank, const int *shape,
                          InitKind init, double scale) {
  IrParam *p = arena_alloc(b->a, sizeof *p);
  /* W_y_x, W_y_x_2, ...: each clash resumes at the base's next suffix, so
   * that n arrows between two blocks cost n lookups, not n^2 / 2 */
  if (param_index(b, name) >= 0 || block_index(b, name) >= 0) {
    const char *base = name;
    int *next = strmap_get(&b->param_next, base);
    if (!next) {
      next = arena_alloc(b->a, sizeof *next);
      *next = 2;
      strmap_put(b->a, &b->param_next, base, next);
    }
    do
      name = arena_printf(b->a, "%s_%d", base, (*next)++);
    while (param_index(b, name) >= 0 || block_index(b, name) >= 0);
  }
  p->name = name;
  p->cname = ir_cname(b->a, &b->pnames, "", name);
  p->loc = loc;
  p->rank = rank;
  memcpy(p->shape, shape, sizeof(int) * (size_t)rank);
  p->size = prod(shape, rank);
  p->init = init;
  p->init_scale = scale;
  p->decay = init != INIT_ZEROS && rank >= 2;
  p->glorot = init == INIT_GLOROT;
  if (init == INIT_GLOROT) {
    /* Glorot uniform as the paper: fan_in + fan_out = prod(kernel) * (in + out) */
    double fan = rank >= 2 ? (double)prod(shape, rank - 2) * (shape[rank - 2] + shape[rank - 1])
                           : 2.0 * shape[0];
    p->init = INIT_UNIFORM;
    p->init_scale = sqrt(6.0 / fan);
  }
  vec_push(b->a, &b->m->params, p);
  strmap_put(b->a, &b->param_ix, name, (void *)(intptr_t)b->m->params.len);
  return p;
}

/* "; did you mean 'x'?" among the blocks (or the parameters) built so far */
static const char *name_hint(const IrMachine *m, Suggest *sg, const char *name, bool params) {
  diag_suggest_init(sg, name);
  if (params)
    for (int i = 0; i < m->params.len; i++)
      diag_suggest_add(sg, IR_PARAM(m, i)->name);
  else
    for (int i = 0; i < m->blocks.len; i++)
      diag_suggest_add(sg, IR_BLOCK(m, i)->name);
  return diag_suggest_hint(sg);
}

static bool build_blocks(Builder *b) {
  bool ok = true;
  for (int i = 0; i < b->draft->blocks.len; i++) {
    DBlock *db = b->draft->blocks.items[i];
    IrBlock *ib = arena_alloc(b->a, sizeof *ib);
    ib->name = db->name;
    ib->cname = ir_cname(b->a, &b->cnames, "", db->name);
    ib->loc = db->loc;
    ib->shape = db->shape;
    ib->size = ir_shape_size(&db->shape);
    if (ib->size > (1L << 28)) {
      diag_error(b->d, db->loc, "block '%s' has %s values per sample; the limit is %ld", db->name,
                 ib->size == LONG_MAX ? "more than 2^63" : arena_printf(b->a, "%ld", ib->size),
                 1L << 28);
      ok = false;
    }
    ib->act = db->act;
    ib->has_input = db->has_input;
    ib->is_output = db->is_output;
    ib->bias = -1;
    vec_push(b->a, &b->m->blocks, ib);
    if (block_index(b, ib->name) < 0) /* names are unique; the first wins anyway */
      strmap_put(b->a, &b->block_ix, ib->name, (void *)(intptr_t)b->m->blocks.len);
  }
  for (int i = 0; i < b->draft->marks.len; i++) {
    DMark *mk = b->draft->marks.items[i];
    int k = block_index(b, mk->name);
    if (k < 0) {
      Suggest sg;
      diag_error(b->d, mk->loc, "unknown block '%s'%s", mk->name,
                 name_hint(b->m, &sg, mk->name, false));
      ok = false;
    } else {
      IR_BLOCK(b->m, k)->is_output = true;
    }
  }
  return ok;
}

static bool build_user_params(Builder *b) {
  for (int i = 0; i < b->draft->params.len; i++) {
    DParam *p = b->draft->params.items[i];
    if (block_index(b, p->name) >= 0) {
      diag_error(b->d, p->loc, "parameter '%s' has the name of a block", p->name);
      return false;
    }
    add_param(b, p->name, p->loc, p->rank, p->shape, p->init, p->scale);
  }
  return true;
}

static void unknown_block(Builder *b, const SrcName *s) {
  if (param_index(b, s->name) >= 0)
    diag_error(b->d, s->loc, "'%s' is a parameter, not a block; pass it as weight = %s",
               s->name, s->name);
  else {
    Suggest sg;
    diag_error(b->d, s->loc, "unknown block '%s'%s", s->name, name_hint(b->m, &sg, s->name, false));
  }
}

/* --- weights ---------------------------------------------------------- */

/* A range index on a parameter axis: an int i means i .. i+1. The bounds
 * are compared in 64 bits, before anything is narrowed to an int. */
static bool axis_range(Builder *b, const Value *ix, int extent, const char *pname, int axis,
                       int *lo, int *hi) {
  int64_t l, h;
  if (ix->kind == V_INT) {
    l = ix->i;
    h = l == INT64_MAX ? l : l + 1;
  } else {
    int n = ix->items.len;
    l = n ? ((Value *)ix->items.items[0])->i : 0;
    for (int k = 0; k < n; k++) {
      int64_t want;
      if (ck_add(l, k, &want) || ((Value *)ix->items.items[k])->i != want) {
        diag_error(b->d, ix->loc, "a parameter slice must be a contiguous range");
        return false;
      }
    }
    if (ck_add(l, n, &h)) { /* the last index is INT64_MAX */
      diag_error(b->d, ix->loc, "slice %lld ..= %lld is outside axis %d of '%s' (size %d)",
                 (long long)l, (long long)INT64_MAX, axis, pname, extent);
      return false;
    }
  }
  if (l < 0 || h > extent || l >= h) {
    diag_error(b->d, ix->loc, "slice %lld .. %lld is outside axis %d of '%s' (size %d)",
               (long long)l, (long long)h, axis, pname, extent);
    return false;
  }
  *lo = (int)l; /* 0 <= l < h <= extent: both fit */
  *hi = (int)h;
  return true;
}

/* Resolves weight = W or W[...] for an arrow whose weight must have kernel
 * axes `kern` (ngrid of them; none for dense) and channel extents cin x cout
 * (the arrow's own, before transposition). */
static bool resolve_weight(Builder *b, Term *t, int nk, const int *kern, int cin, int cout,
                           WeightRef *w) {
  Value *v = t->weight;
  int pi = param_index(b, v->s);
  if (pi < 0) {
    if (block_index(b, v->s) >= 0)
      diag_error(b->d, v->loc, "'%s' is a block, not a parameter", v->s);
    else {
      Suggest sg;
      const char *hint = name_hint(b->m, &sg, v->s, true);
      if (*hint)
        diag_error(b->d, v->loc, "unknown parameter '%s'%s", v->s, hint);
      else
        diag_error(b->d, v->loc, "unknown parameter '%s' (declare it with: param %s : [...])", v->s,
                   v->s);
    }
    return false;
  }
  IrParam *p = IR_PARAM(b->m, pi);
  w->param = pi;
  w->transposed = v->transposed;
  int rank = nk + 2;
  if (p->rank != rank) {
    diag_error(b->d, v->loc, "'%s' has %d axes but this arrow needs a weight with %d", v->s,
               p->rank, rank);
    return false;
  }
  int lo[IR_MAX_RANK], hi[IR_MAX_RANK];
  int nidx = v->items.len;
  if (nidx != 0 && nidx != 2 && nidx != rank) {
    diag_error(b->d, v->loc, "slice '%s' with %d indices: give none, the 2 channel axes, or all %d",
               v->s, nidx, rank);
    return false;
  }
  int first = nidx == 2 ? rank - 2 : 0; /* indices given for the channel axes only */
  for (int ax = 0; ax < rank; ax++) {
    lo[ax] = 0;
    hi[ax] = p->shape[ax];
    if (nidx && ax >= first &&
        !axis_range(b, v->items.items[ax - first], p->shape[ax], v->s, ax, &lo[ax], &hi[ax]))
      return false;
  }
  int want_in = w->transposed ? cout : cin, want_out = w->transposed ? cin : cout;
  for (int k = 0; k < nk; k++) {
    w->k_off[k] = lo[k];
    if (hi[k] - lo[k] != kern[k]) {
      diag_error(b->d, v->loc, "weight '%s' has %d kernel taps along axis %d; this arrow needs %d",
                 v->s, hi[k] - lo[k], k, kern[k]);
      return false;
    }
  }
  if (hi[nk] - lo[nk] != want_in || hi[nk + 1] - lo[nk + 1] != want_out) {
    diag_error(b->d, v->loc, "weight '%s' slice is %d x %d (in x out) but the arrow maps %d to %d",
               v->s, hi[nk] - lo[nk], hi[nk + 1] - lo[nk + 1], want_in, want_out);
    return false;
  }
  w->in_off = lo[nk];
  w->out_off = lo[nk + 1];
  return true;
}

static void own_weight(Builder *b, IrArrow *ar, int nk, const int *kern, int cin, int cout) {
  int shape[IR_MAX_RANK];
  for (int i = 0; i < nk; i++)
    shape[i] = kern[i];
  shape[nk] = cin;
  shape[nk + 1] = cout;
  /* from the C names, so that the parameter can be named in .mach source */
  const char *name = arena_printf(b->a, "W_%s_%s", IR_BLOCK(b->m, ar->dst)->cname,
                                  IR_BLOCK(b->m, ar->src)->cname);
  IrParam *p = add_param(b, name, ar->loc, nk + 2, shape, INIT_GLOROT, 0);
  ar->w.param = b->m->params.len - 1;
  (void)p;
}

/* --- conv options -------------------------------------------------------- */

/* An integer option as an int in [lo, hi], else an error at the value
 * with the real cause (never a value cut to 32 bits). */
static bool int_in(Builder *b, const Value *v, const char *what, int lo, int hi, int *out) {
  if (v->kind != V_INT) {
    diag_error(b->d, v->loc, "%s must be integers", what);
    return false;
  }
  if (!ck_narrow(v->i, lo, hi, out)) {
    diag_error(b->d, v->loc, "%s must be between %d and %d, not %lld", what, lo, hi,
               (long long)v->i);
    return false;
  }
  return true;
}

static bool int_list(Builder *b, Value *v, int n, const char *what, int lo, int *out) {
  if (v->kind == V_INT) {
    for (int i = 0; i < n; i++)
      if (!int_in(b, v, what, lo, MAX_CONV_OPTION, &out[i]))
        return false;
  } else if (v->kind == V_LIST && v->items.len == n) {
    for (int i = 0; i < n; i++)
      if (!int_in(b, v->items.items[i], what, lo, MAX_CONV_OPTION, &out[i]))
        return false;
  } else {
    diag_error(b->d, v->loc, "%s must be an integer or a list of %d integers", what, n);
    return false;
  }
  return true;
}

/* pad = p | [p per axis] | [p0, p1 per axis, flat, as the paper] | [[p0, p1], ...] | same */
static bool pad_option(Builder *b, Term *t, int n) {
  Value *v = t->pad_v;
  if (!v)
    return true;
  if (v->kind == V_REF && strcmp(v->s, "same") == 0 && v->items.len == 0) {
    t->pad_same = true;
    return true;
  }
  int flat[2 * IR_MAX_GRID];
  if (v->kind == V_INT) {
    int p;
    if (!int_in(b, v, "a pad", -MAX_PAD, MAX_PAD, &p))
      return false;
    for (int i = 0; i < n; i++)
      t->ax[i].pad0 = t->ax[i].pad1 = p;
    return true;
  }
  if (v->kind != V_LIST)
    goto bad;
  int len = v->items.len;
  if (len > 2 * n)
    goto bad;
  bool nested = len == n && len > 0 && ((Value *)v->items.items[0])->kind == V_LIST;
  for (int i = 0; i < len; i++) {
    Value *x = v->items.items[i];
    if (nested) {
      if (x->kind != V_LIST || x->items.len != 2)
        goto bad;
      if (!int_in(b, x->items.items[0], "a pad", -MAX_PAD, MAX_PAD, &flat[2 * i]) ||
          !int_in(b, x->items.items[1], "a pad", -MAX_PAD, MAX_PAD, &flat[2 * i + 1]))
        return false;
    } else if (x->kind == V_INT) {
      if (!int_in(b, x, "a pad", -MAX_PAD, MAX_PAD, &flat[i]))
        return false;
    } else {
      goto bad;
    }
  }
  if (nested || len == 2 * n) {
    for (int i = 0; i < n; i++) {
      t->ax[i].pad0 = flat[2 * i];
      t->ax[i].pad1 = flat[2 * i + 1];
    }
    return true;
  }
  if (len == n) {
    for (int i = 0; i < n; i++)
      t->ax[i].pad0 = t->ax[i].pad1 = flat[i];
    return true;
  }
bad:
  diag_error(b->d, v->loc, "pad must be an integer, 'same', %d integers (one per axis) or %d (p0, p1 per axis)",
             n, 2 * n);
  return false;
}

static bool conv_options(Builder *b, Term *t, int n) {
  int k[IR_MAX_GRID], s[IR_MAX_GRID], dl[IR_MAX_GRID];
  for (int i = 0; i < n; i++)
    k[i] = s[i] = dl[i] = 1;
  if (t->has_lags && n != 1) {
    diag_error(b->d, t->loc, "lags apply to blocks with one grid axis (time), not %d", n);
    return false;
  }
  if (t->kernel_v && !int_list(b, t->kernel_v, n, "the kernel size", 1, k))
    return false;
  if (t->stride_v && !int_list(b, t->stride_v, n, "the stride", 1, s))
    return false;
  if (t->dilation_v && !int_list(b, t->dilation_v, n, "the dilation", 1, dl))
    return false;
  t->ngrid = n;
  for (int i = 0; i < n; i++)
    t->ax[i] = (ConvAxis){k[i], 0, 0, s[i], dl[i]};
  if (t->has_lags) {
    if (t->kernel_v || t->pad_v || t->stride_v || t->dilation_v) {
      diag_error(b->d, t->loc, "lags replace k, pad, stride and dilation; give only lags");
      return false;
    }
    t->ax[0] = (ConvAxis){t->lag_hi - t->lag_lo + 1, t->lag_hi, -t->lag_lo, 1, 1};
    return true;
  }
  if (!pad_option(b, t, n))
    return false;
  if (t->pad_same)
    for (int i = 0; i < n; i++) {
      int64_t total = (int64_t)(t->ax[i].kernel - 1) * t->ax[i].dilation; /* < 2^40 */
      if (total > 2 * (int64_t)MAX_PAD) {
        diag_error(b->d, t->pad_v->loc, "pad = same needs pads of %lld along axis %d; the limit is %d",
                   (long long)total, i, 2 * MAX_PAD);
        return false;
      }
      t->ax[i].pad0 = (int)(total / 2);
      t->ax[i].pad1 = (int)(total - total / 2);
    }
  return true;
}

/* --- arrows ------------------------------------------------------------- */

static bool check_grid(Builder *b, IrArrow *ar, const Term *t) {
  /* an adjoint arrow runs its map backwards: the map's input is dst's grid */
  const IrBlock *src = IR_BLOCK(b->m, ar->adjoint ? ar->dst : ar->src);
  const IrBlock *dst = IR_BLOCK(b->m, ar->adjoint ? ar->src : ar->dst);
  for (int i = 0; i < ar->ngrid; i++) {
    int out = ir_conv_out(src->shape.grid[i], &ar->ax[i]);
    if (out != dst->shape.grid[i]) {
      diag_error(b->d, t->loc,
                 "along axis %d, '%s' (%d) gives %d (kernel %d, pads (%d, %d), stride %d, dilation %d) "
                 "but '%s' has %d", i, src->name, src->shape.grid[i], out, ar->ax[i].kernel,
                 ar->ax[i].pad0, ar->ax[i].pad1, ar->ax[i].stride, ar->ax[i].dilation, dst->name,
                 dst->shape.grid[i]);
      return false;
    }
  }
  return true;
}

/* Builds the arrow from source s of term t into block dst. `shared` is the
 * term's resolved weight = ... (NULL: the arrow gets its own parameter);
 * in_off advances over consecutive sources sharing it. */
static bool build_arrow(Builder *b, int dst, Term *t, const SrcName *s, const WeightRef *shared,
                        int *in_off) {
  int src = block_index(b, s->name);
  IrBlock *bs = IR_BLOCK(b->m, src), *bd = IR_BLOCK(b->m, dst);
  IrArrow *ar = arena_alloc(b->a, sizeof *ar);
  ar->kind = t->arrow;
  ar->src = src;
  ar->dst = dst;
  ar->loc = s->loc;
  ar->w.param = -1;
  ar->adjoint = t->adjoint;
  switch (t->arrow) {
  case ARROW_DENSE:
    if (shared) {
      ar->w = *shared;
      ar->w.in_off += *in_off;
      *in_off += (int)bs->size;
    } else {
      own_weight(b, ar, 0, NULL, (int)bs->size, (int)bd->size);
    }
    break;
  case ARROW_IDENTITY:
    if (!same_shape(&bs->shape, &bd->shape)) {
      diag_error(b->d, s->loc, "a skip from '%s' (%s) to '%s' (%s) needs equal shapes", bs->name,
                 ir_shape_text(b->a, &bs->shape), bd->name, ir_shape_text(b->a, &bd->shape));
      return false;
    }
    break;
  case ARROW_CONV:
  case ARROW_AVGPOOL:
    if (bs->shape.ngrid == 0 || bs->shape.ngrid != bd->shape.ngrid) {
      if (bs->shape.ngrid == 0)
        diag_error(b->d, t->loc, "%s needs a source on a grid; '%s' is flat (%s)",
                   t->arrow == ARROW_CONV ? "conv" : "avgpool", bs->name, ir_shape_text(b->a, &bs->shape));
      else
        diag_error(b->d, t->loc, "%s maps between blocks with the same number of grid axes; '%s' has %d and '%s' has %d",
                   t->arrow == ARROW_CONV ? "conv" : "avgpool", bs->name, bs->shape.ngrid, bd->name,
                   bd->shape.ngrid);
      return false;
    }
    if (!conv_options(b, t, bs->shape.ngrid))
      return false;
    ar->ngrid = t->ngrid;
    memcpy(ar->ax, t->ax, sizeof ar->ax);
    if (!check_grid(b, ar, t))
      return false;
    if (t->arrow == ARROW_AVGPOOL) {
      if (bs->shape.channels != bd->shape.channels) {
        diag_error(b->d, t->loc, "avgpool keeps channels: '%s' has %d, '%s' has %d", bs->name,
                   bs->shape.channels, bd->name, bd->shape.channels);
        return false;
      }
      break;
    }
    int kern[IR_MAX_GRID];
    for (int i = 0; i < ar->ngrid; i++)
      kern[i] = ar->ax[i].kernel;
    if (ar->adjoint) { /* W maps dst's channels to src's: [k.., dst, src] */
      if (!t->weight)
        own_weight(b, ar, ar->ngrid, kern, bd->shape.channels, bs->shape.channels);
      else if (!resolve_weight(b, t, ar->ngrid, kern, bd->shape.channels, bs->shape.channels, &ar->w))
        return false;
      break;
    }
    if (t->weight) {
      /* the kernel is known only now: resolve per source, then offset */
      if (!resolve_weight(b, t, ar->ngrid, kern, t->srcs.len == 1 ? bs->shape.channels : t->ngrid_in,
                          bd->shape.channels, &ar->w))
        return false;
      ar->w.in_off += *in_off;
      *in_off += bs->shape.channels;
    } else {
      own_weight(b, ar, ar->ngrid, kern, bs->shape.channels, bd->shape.channels);
    }
    break;
  case ARROW_GAVGPOOL:
    if (ar->adjoint) { /* spreads C onto C @ [grid] */
      IrBlock *tmp = bs;
      bs = bd;
      bd = tmp;
    }
    if (bs->shape.ngrid == 0 || bd->shape.ngrid != 0 || bs->shape.channels != bd->shape.channels) {
      diag_error(b->d, t->loc, "global_avgpool maps C @ [grid] to C: '%s' is %s, '%s' is %s", bs->name,
                 ir_shape_text(b->a, &bs->shape), bd->name, ir_shape_text(b->a, &bd->shape));
      return false;
    }
    break;
  case ARROW_GATE: /* made only by dual.c; no syntax writes one */
    return false;
  }
  vec_push(b->a, &b->m->arrows, ar);
  return true;
}

/* Every source of t must be a block; t->ngrid_in becomes the sum of what a
 * shared weight's input axis covers: sizes for dense, channels for conv. */
static bool sources_known(Builder *b, Term *t) {
  int64_t total = 0; /* sources of at most 2^28 values, fewer than 2^31 of them */
  bool ok = true;
  for (int j = 0; j < t->srcs.len; j++) {
    const SrcName *s = t->srcs.items[j];
    int k = block_index(b, s->name);
    if (k < 0) {
      unknown_block(b, s);
      ok = false;
      continue;
    }
    const IrBlock *bs = IR_BLOCK(b->m, k);
    total += t->arrow == ARROW_DENSE ? bs->size : bs->shape.channels;
  }
  /* saturated: no parameter axis (at most 2^24) matches an extent this large */
  t->ngrid_in = total > INT_MAX ? INT_MAX : (int)total;
  return ok;
}

static bool build_terms(Builder *b, int dst, DBlock *db) {
  IrBlock *bd = IR_BLOCK(b->m, dst);
  bool ok = true;
  for (int i = 0; i < db->terms.len; i++) {
    Term *t = db->terms.items[i];
    if (t->kind == TERM_INPUT) {
      bd->has_input = true;
      continue;
    }
    if (t->kind == TERM_BIAS) {
      if (bd->bias >= 0) {
        diag_error(b->d, t->loc, "block '%s' has two bias terms", bd->name);
        ok = false;
        continue;
      }
      int shape[1] = {bd->shape.channels};
      add_param(b, arena_printf(b->a, "b_%s", bd->cname), t->loc, 1, shape, INIT_ZEROS, 0);
      bd->bias = b->m->params.len - 1;
      IR_PARAM(b->m, bd->bias)->is_bias = true;
      continue;
    }
    if (t->weight && t->weight->transposed && t->srcs.len != 1) {
      diag_error(b->d, t->loc, "an arrow with a transposed weight takes one source");
      ok = false;
      continue;
    }
    if (!sources_known(b, t)) {
      ok = false;
      continue;
    }
    WeightRef shared = {0};
    if (t->weight && t->arrow == ARROW_DENSE &&
        !resolve_weight(b, t, 0, NULL, t->ngrid_in, (int)bd->size, &shared)) {
      ok = false;
      continue;
    }
    int in_off = 0;
    for (int j = 0; j < t->srcs.len; j++)
      ok &= build_arrow(b, dst, t, t->srcs.items[j], t->weight ? &shared : NULL, &in_off);
  }
  if (db->act.kind == ACT_MUL || db->act.kind == ACT_SOFTMAX_JVP) {
    bd->act.gate = block_index(b, db->gate);
    if (bd->act.gate < 0) {
      Suggest sg;
      diag_error(b->d, db->gate_loc, "unknown block '%s'%s", db->gate,
                 name_hint(b->m, &sg, db->gate, false));
      ok = false;
    } else if (!same_shape(&IR_BLOCK(b->m, bd->act.gate)->shape, &bd->shape)) {
      diag_error(b->d, db->gate_loc, "gate '%s' must have the shape of '%s'", db->gate, bd->name);
      ok = false;
    }
  }
  return ok;
}

static void collect_io(Builder *b) {
  IrMachine *m = b->m;
  m->inputs = arena_alloc(b->a, sizeof(int) * (size_t)(m->blocks.len + 1));
  m->outputs = arena_alloc(b->a, sizeof(int) * (size_t)(m->blocks.len + 1));
  for (int i = 0; i < m->blocks.len; i++) {
    if (IR_BLOCK(m, i)->has_input)
      m->inputs[m->ninputs++] = i;
    if (IR_BLOCK(m, i)->is_output)
      m->outputs[m->noutputs++] = i;
  }
}

IrMachine *draft_build(Arena *a, Diag *diag, Draft *d, const char *source) {
  Builder b = {.a = a, .d = diag, .draft = d};
  b.m = arena_alloc(a, sizeof *b.m);
  b.m->name = d->name;
  b.m->source = source;
  b.m->timeblock = d->timeblock;
  b.m->timeblock_loc = d->timeblock_loc;
  if (!build_blocks(&b) || !build_user_params(&b))
    return NULL;
  bool ok = true;
  for (int i = 0; i < d->blocks.len; i++)
    ok &= build_terms(&b, i, d->blocks.items[i]);
  if (!ok)
    return NULL;
  collect_io(&b);
  if (b.m->noutputs == 0) {
    diag_error(diag, LOC_NONE, "machine '%s' has no output block (declare one with 'output')", d->name);
    return NULL;
  }
  if (b.m->ninputs == 0) {
    diag_error(diag, LOC_NONE, "machine '%s' has no input block (declare one with 'input')", d->name);
    return NULL;
  }
  long off = 0;
  for (int i = 0; i < b.m->params.len; i++) {
    IrParam *p = IR_PARAM(b.m, i);
    if (p->size > MAX_PARAMS - off) {
      diag_error(diag, p->loc, "parameter '%s' brings the machine over %ld parameters", p->name,
                 MAX_PARAMS);
      return NULL;
    }
    p->offset = off;
    off += p->size;
  }
  b.m->param_size = off;
  return b.m;
}
