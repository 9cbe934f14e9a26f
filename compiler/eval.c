/* eval.c — runs a .mach program: compile-time expressions, machine bodies
 * (let, for, if, block, param, use, set) and compositions, producing a Draft
 * per machine instance. draft.c turns the final draft into IR.
 *
 * Every error is reported at the construct that caused it and evaluation
 * goes on where it can, returning NULL values that callers skip. Work is
 * bounded (statements executed, instantiation depth) so that no input can
 * make the compiler hang or overflow its stack. */
#include "eval_internal.h"

#include <math.h>
#include <string.h>

enum {
  MAX_STEPS = 2000000,  /* statements and expressions evaluated, in all */
  MAX_INSTANCE_DEPTH = 64,
  MAX_BLOCKS = 100000,
  MAX_LIST = 1000000,
  MAX_DIM = 1 << 24,    /* one axis of a block or parameter */
  SCOPE_LIST_MAX = 8,   /* variables of a scope searched by a plain list */
};
/* Memory of compile-time values, counted as they are made (also those no
 * longer used: the arena frees nothing), so that doubling lists or nested
 * comprehensions stop with an error long before the machine runs out. */
#define MAX_EVAL_BYTES (256L << 20)
enum { SLOT_BYTES = sizeof(void *), NAME_BYTES = 32 /* a block name made by expand_ref */ };

typedef struct Binding {
  const char *name;
  Value *value;
  struct Binding *next;
} Binding;

/* A scope's variables: a list, newest first, and past a few of them also a
 * hash table, so that a body of 100,000 lets stays linear. */
typedef struct Scope {
  Binding *vars;
  struct Scope *parent;
  int nvars;
  StrMap *map; /* NULL until nvars > SCOPE_LIST_MAX */
} Scope;

typedef struct Ev {
  Program *p;
  Arena *a;
  Diag *d;
  long steps;
  long bytes;   /* memory of the values made so far (MAX_EVAL_BYTES) */
  int depth;    /* machine instantiation depth */
  bool stopped; /* a resource limit was hit: unwind quietly */
  Draft *draft; /* the machine body being run */
} Ev;

static Value *eval(Ev *ev, Scope *sc, const Ast *n);
static bool exec_body(Ev *ev, Scope *sc, const AstList *body);
static Draft *draft_of(Ev *ev, Value *m, Loc loc);

/* ------------------------------------------------------------ values */

static void err(Ev *ev, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Counts n items of `each` bytes against MAX_EVAL_BYTES; past it, an error
 * at loc, and evaluation stops. */
static bool charge(Ev *ev, int64_t n, int64_t each, Loc loc) {
  int64_t bytes;
  if (ev->stopped)
    return false;
  if (ck_mul(n, each, &bytes) || ck_add(bytes, ev->bytes, &bytes) || bytes > MAX_EVAL_BYTES) {
    err(ev, loc, "compile-time values take more than %ld MiB; is a list or a loop too large?",
        MAX_EVAL_BYTES >> 20);
    ev->stopped = true;
    return false;
  }
  ev->bytes = (long)bytes;
  return true;
}

/* Appends x to list v, counting the slot. */
static void lpush(Ev *ev, Value *v, void *x) {
  ev->bytes += SLOT_BYTES;
  vec_push(ev->a, &v->items, x);
}

static Value *vnew(Ev *ev, VKind k, Loc loc) {
  charge(ev, 1, sizeof(Value), loc); /* past the limit, evaluation stops at the next step */
  Value *v = arena_alloc(ev->a, sizeof *v);
  v->kind = k;
  v->loc = loc;
  return v;
}

static Value *vint(Ev *ev, int64_t i, Loc loc) {
  Value *v = vnew(ev, V_INT, loc);
  v->i = i;
  return v;
}

static const char *kind_name(VKind k) {
  static const char *const names[] = {
      [V_INT] = "an integer",      [V_FLOAT] = "a number",
      [V_BOOL] = "a boolean",      [V_STR] = "a string",
      [V_LIST] = "a list",         [V_SHAPE] = "a shape",
      [V_ACT] = "an activation",   [V_REF] = "a block name",
      [V_TERMS] = "a linear map",  [V_BEXPR] = "a block definition",
      [V_MACHINE] = "a machine",   [V_INIT] = "an initializer",
      [V_FUNC] = "a function",
  };
  return names[k];
}

static void err(Ev *ev, Loc loc, const char *fmt, ...) {
  if (ev->stopped)
    return;
  va_list ap;
  va_start(ap, fmt);
  diag_verror(ev->d, loc, fmt, ap);
  va_end(ap);
}

static bool want(Ev *ev, Value *v, VKind k, const char *what) {
  if (!v)
    return false;
  if (v->kind == k)
    return true;
  err(ev, v->loc, "%s must be %s, not %s", what, kind_name(k), kind_name(v->kind));
  return false;
}

/* An integer, for sizes, indices and counts. */
static bool want_int(Ev *ev, Value *v, const char *what, int64_t *out) {
  if (!want(ev, v, V_INT, what))
    return false;
  *out = v->i;
  return true;
}

/* An integer narrowed to an int in [lo, hi], else an error at the value. */
static bool want_int_in(Ev *ev, Value *v, const char *what, int lo, int hi, int *out) {
  int64_t i;
  if (!want_int(ev, v, what, &i))
    return false;
  if (!ck_narrow(i, lo, hi, out)) {
    err(ev, v->loc, "%s must be between %d and %d, not %lld", what, lo, hi, (long long)i);
    return false;
  }
  return true;
}

static bool want_dim(Ev *ev, Value *v, const char *what, int *out) {
  return want_int_in(ev, v, what, 1, MAX_DIM, out);
}

static bool truthy(Ev *ev, Value *v, bool *out) {
  if (!v)
    return false;
  if (v->kind == V_BOOL || v->kind == V_INT) {
    *out = v->i != 0;
    return true;
  }
  err(ev, v->loc, "condition must be a boolean, not %s", kind_name(v->kind));
  return false;
}

static bool step(Ev *ev, Loc loc) {
  if (ev->stopped)
    return false;
  if (++ev->steps > MAX_STEPS) {
    err(ev, loc, "evaluation takes more than %d steps; is a loop too long?", MAX_STEPS);
    ev->stopped = true;
    return false;
  }
  return true;
}

/* ------------------------------------------------------------ scopes */

static void bind(Ev *ev, Scope *sc, const char *name, Value *v) {
  Binding *b = arena_alloc(ev->a, sizeof *b);
  b->name = name;
  b->value = v;
  b->next = sc->vars;
  sc->vars = b;
  if (++sc->nvars > SCOPE_LIST_MAX) {
    if (!sc->map) { /* oldest first, so that a later let shadows an earlier one */
      sc->map = arena_alloc(ev->a, sizeof *sc->map);
      PtrVec order = {0};
      for (Binding *x = sc->vars; x; x = x->next)
        vec_push(ev->a, &order, x);
      for (int i = order.len - 1; i >= 0; i--)
        strmap_put(ev->a, sc->map, ((Binding *)order.items[i])->name, order.items[i]);
    } else {
      strmap_put(ev->a, sc->map, name, b);
    }
  }
}

static Value *lookup_var(Scope *sc, const char *name) {
  for (; sc; sc = sc->parent) {
    if (sc->map) {
      Binding *b = strmap_get(sc->map, name);
      if (b)
        return b->value;
      continue;
    }
    for (Binding *b = sc->vars; b; b = b->next)
      if (strcmp(b->name, name) == 0)
        return b->value;
  }
  return NULL;
}

static const char *const builtin_funcs[] = {"len", "sum", "min", "max", "abs",
                                            "uniform", "normal", "transpose", "mul",
                                            "softmax_jvp"};

static Term *term_new(Ev *ev, TermKind k, Loc loc) {
  Term *t = arena_alloc(ev->a, sizeof *t);
  t->kind = k;
  t->loc = loc;
  return t;
}

static Value *terms_of(Ev *ev, Term *t) {
  Value *v = vnew(ev, V_TERMS, t->loc);
  vec_push(ev->a, &v->items, t);
  return v;
}

/* The hint for a name that is not callable: the closest builtin, arrow,
 * activation or machine. */
static const char *callable_hint(Ev *ev, Suggest *sg, const char *name) {
  diag_suggest_init(sg, name);
  for (size_t i = 0; i < sizeof builtin_funcs / sizeof *builtin_funcs; i++)
    diag_suggest_add(sg, builtin_funcs[i]);
  for (int i = 0; i <= ARROW_GAVGPOOL; i++)
    diag_suggest_add(sg, ir_arrow_fn((ArrowKind)i));
  for (int i = 0; i < ACT_MUL; i++) {
    ActKind k;
    if (ir_act_lookup(ir_act_name((ActKind)i), &k))
      diag_suggest_add(sg, ir_act_name((ActKind)i));
  }
  for (int i = 0; i < ev->p->machines.len; i++)
    diag_suggest_add(sg, ((const Ast *)ev->p->machines.items[i])->str);
  return diag_suggest_hint(sg);
}

/* A bare name: a variable, a machine, an activation, a builtin, a special
 * term, or else a reference to a block or parameter resolved later (blocks
 * may be declared after their use). */
static Value *eval_name(Ev *ev, Scope *sc, const Ast *n) {
  Value *v = lookup_var(sc, n->str);
  if (v) {
    Value *copy = vnew(ev, v->kind, n->loc);
    Loc keep = copy->loc;
    *copy = *v;
    copy->loc = keep;
    return copy;
  }
  const Ast *m = prog_find_machine(ev->p, n->str);
  if (m) {
    v = vnew(ev, V_MACHINE, n->loc);
    v->def = m;
    return v;
  }
  ActKind ak;
  if (ir_act_lookup(n->str, &ak)) {
    v = vnew(ev, V_ACT, n->loc);
    v->act.kind = ak;
    v->act.alpha = 0.01;
    return v;
  }
  if (strcmp(n->str, "bias") == 0)
    return terms_of(ev, term_new(ev, TERM_BIAS, n->loc));
  if (strcmp(n->str, "input") == 0)
    return terms_of(ev, term_new(ev, TERM_INPUT, n->loc));
  if (strcmp(n->str, "glorot") == 0 || strcmp(n->str, "zeros") == 0 ||
      strcmp(n->str, "ones") == 0) {
    v = vnew(ev, V_INIT, n->loc);
    v->init = n->str[0] == 'g' ? INIT_GLOROT : n->str[0] == 'z' ? INIT_ZEROS : INIT_ONES;
    return v;
  }
  ArrowKind k;
  bool adj;
  for (size_t i = 0; i < sizeof builtin_funcs / sizeof *builtin_funcs; i++)
    if (strcmp(n->str, builtin_funcs[i]) == 0 || ir_arrow_lookup(n->str, &k, &adj)) {
      v = vnew(ev, V_FUNC, n->loc);
      v->s = n->str;
      return v;
    }
  v = vnew(ev, V_REF, n->loc);
  v->s = n->str;
  return v;
}

/* ------------------------------------------------------------ arithmetic */

static bool num(Value *v, double *out) {
  if (v->kind == V_INT) {
    *out = (double)v->i;
    return true;
  }
  if (v->kind == V_FLOAT) {
    *out = v->f;
    return true;
  }
  return false;
}

static Value *int_binop(Ev *ev, int op, int64_t x, int64_t y, Loc loc) {
  int64_t r = 0;
  bool overflow = false;
  switch (op) {
  case OP_ADD: overflow = ck_add(x, y, &r); break;
  case OP_SUB: overflow = ck_sub(x, y, &r); break;
  case OP_MUL: overflow = ck_mul(x, y, &r); break;
  case OP_DIV:
  case OP_MOD:
    if (y == 0) {
      err(ev, loc, "division by zero");
      return NULL;
    }
    if (x == INT64_MIN && y == -1) {
      overflow = true;
      break;
    }
    /* floor division, so that a loop index splits evenly whatever its sign */
    r = x / y;
    if ((x % y != 0) && ((x < 0) != (y < 0)))
      r--;
    if (op == OP_MOD)
      r = x - r * y;
    break;
  default: break;
  }
  if (overflow) {
    err(ev, loc, "integer overflow: %lld %s %lld is outside the 64-bit range", (long long)x,
        op == OP_ADD ? "+" : op == OP_SUB ? "-" : op == OP_MUL ? "*" : op == OP_DIV ? "/" : "%",
        (long long)y);
    return NULL;
  }
  return vint(ev, r, loc);
}

static Value *compare(Ev *ev, int op, Value *l, Value *r, Loc loc) {
  double x, y;
  int c;
  if (l->kind == V_INT && r->kind == V_INT) /* exact: doubles lose bits past 2^53 */
    c = l->i < r->i ? -1 : l->i > r->i ? 1 : 0;
  else if (num(l, &x) && num(r, &y))
    c = x < y ? -1 : x > y ? 1 : 0;
  else if (l->kind == V_STR && r->kind == V_STR)
    c = strcmp(l->s, r->s);
  else if ((op == OP_EQ || op == OP_NE) && l->kind == V_BOOL && r->kind == V_BOOL)
    c = l->i != r->i;
  else {
    err(ev, loc, "cannot compare %s with %s", kind_name(l->kind), kind_name(r->kind));
    return NULL;
  }
  bool res = op == OP_EQ ? c == 0 : op == OP_NE ? c != 0 : op == OP_LT ? c < 0
           : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0;
  Value *v = vnew(ev, V_BOOL, loc);
  v->i = res;
  return v;
}

/* A bare block reference used as a linear term is the identity arrow (a skip). */
static Value *as_terms(Ev *ev, Value *v) {
  if (v->kind == V_TERMS)
    return v;
  if (v->kind == V_REF || v->kind == V_LIST) {
    Term *t = term_new(ev, TERM_ARROW, v->loc);
    t->arrow = ARROW_IDENTITY;
    vec_push(ev->a, &t->srcs, v); /* expanded to names by expand_sources */
    return terms_of(ev, t);
  }
  return NULL;
}

static Value *add_terms(Ev *ev, Value *l, Value *r, Loc loc) {
  Value *tl = as_terms(ev, l), *tr = as_terms(ev, r);
  if (!tl || !tr) {
    Value *bad = tl ? r : l;
    if (bad->kind == V_BEXPR)
      err(ev, loc, "an activation applies to a block's whole linear part; write act(a + b), not act(a) + b");
    else
      err(ev, loc, "cannot add %s and %s", kind_name(l->kind), kind_name(r->kind));
    return NULL;
  }
  /* each term of a linear part becomes an arrow (with its own weight): it
   * counts as a value, not as a slot */
  if (!charge(ev, (int64_t)tl->items.len + tr->items.len, sizeof(Value), loc))
    return NULL;
  Value *v = vnew(ev, V_TERMS, loc);
  for (int i = 0; i < tl->items.len; i++)
    vec_push(ev->a, &v->items, tl->items.items[i]);
  for (int i = 0; i < tr->items.len; i++)
    vec_push(ev->a, &v->items, tr->items.items[i]);
  return v;
}

static Value *composition(Ev *ev, int op, Value *l, Value *r, Loc loc) {
  Value *v = vnew(ev, V_MACHINE, loc);
  v->op = op;
  v->lhs = l;
  v->rhs = r;
  return v;
}

static Value *eval_binop(Ev *ev, Scope *sc, const Ast *n) {
  if (n->op == OP_AND || n->op == OP_OR) {
    bool x, y;
    Value *l = eval(ev, sc, n->lhs);
    if (!truthy(ev, l, &x))
      return NULL;
    if (x == (n->op == OP_OR)) {
      Value *v = vnew(ev, V_BOOL, n->loc);
      v->i = x;
      return v;
    }
    Value *r = eval(ev, sc, n->rhs);
    if (!truthy(ev, r, &y))
      return NULL;
    Value *v = vnew(ev, V_BOOL, n->loc);
    v->i = y;
    return v;
  }
  Value *l = eval(ev, sc, n->lhs), *r = eval(ev, sc, n->rhs);
  if (!l || !r)
    return NULL;
  Loc loc = n->loc;
  switch (n->op) {
  case OP_EQ: case OP_NE: case OP_LT: case OP_LE: case OP_GT: case OP_GE:
    return compare(ev, n->op, l, r, loc);
  case OP_AT: {
    int64_t c;
    if (!want_int(ev, l, "the channel count", &c) || !want(ev, r, V_LIST, "a grid"))
      return NULL;
    Value *v = vnew(ev, V_SHAPE, loc_span(l->loc, r->loc));
    if (c < 1 || c > MAX_DIM) {
      err(ev, l->loc, "the channel count must be between 1 and %d, not %lld", MAX_DIM, (long long)c);
      return NULL;
    }
    v->shape.channels = (int)c;
    if (r->items.len < 1 || r->items.len > IR_MAX_GRID) {
      err(ev, r->loc, "a grid has 1 to %d axes, not %d", IR_MAX_GRID, r->items.len);
      return NULL;
    }
    v->shape.ngrid = r->items.len;
    for (int i = 0; i < r->items.len; i++)
      if (!want_dim(ev, r->items.items[i], "a grid size", &v->shape.grid[i]))
        return NULL;
    return v;
  }
  case OP_SEQ: case OP_PAR:
    if (!want(ev, l, V_MACHINE, "an operand of a composition") ||
        !want(ev, r, V_MACHINE, "an operand of a composition"))
      return NULL;
    return composition(ev, n->op, l, r, loc);
  default: break;
  }
  if (n->op == OP_ADD && l->kind == V_MACHINE && r->kind == V_MACHINE)
    return composition(ev, OP_ADD, l, r, loc);
  if (n->op == OP_ADD && l->kind == V_LIST && r->kind == V_LIST) {
    if ((int64_t)l->items.len + r->items.len > MAX_LIST) {
      err(ev, loc, "list has more than %d elements", MAX_LIST);
      return NULL;
    }
    if (!charge(ev, (int64_t)l->items.len + r->items.len, SLOT_BYTES, loc))
      return NULL;
    Value *v = vnew(ev, V_LIST, loc);
    for (int i = 0; i < l->items.len; i++)
      vec_push(ev->a, &v->items, l->items.items[i]);
    for (int i = 0; i < r->items.len; i++)
      vec_push(ev->a, &v->items, r->items.items[i]);
    return v;
  }
  if (l->kind == V_INT && r->kind == V_INT)
    return int_binop(ev, n->op, l->i, r->i, loc);
  double x, y;
  if (num(l, &x) && num(r, &y)) {
    double res = n->op == OP_ADD ? x + y : n->op == OP_SUB ? x - y
               : n->op == OP_MUL ? x * y : n->op == OP_DIV ? x / y : fmod(x, y);
    if (!isfinite(res)) {
      err(ev, loc, "arithmetic gives a non-finite number");
      return NULL;
    }
    Value *v = vnew(ev, V_FLOAT, loc);
    v->f = res;
    return v;
  }
  if (n->op == OP_ADD) {
    Value *v = add_terms(ev, l, r, loc);
    return v;
  }
  err(ev, loc, "operator '%c' does not apply to %s and %s", n->op == OP_SUB ? '-' : n->op,
      kind_name(l->kind), kind_name(r->kind));
  return NULL;
}

static Value *eval_range(Ev *ev, Scope *sc, const Ast *n) {
  int64_t lo, hi;
  if (!want_int(ev, eval(ev, sc, n->lhs), "a range bound", &lo) ||
      !want_int(ev, eval(ev, sc, n->rhs), "a range bound", &hi))
    return NULL;
  /* the count in 64 bits, checked: lo and hi may be anywhere in the range */
  int64_t count;
  if (ck_sub(hi, lo, &count) || (n->ival && ck_add(count, 1, &count)) || count > MAX_LIST) {
    err(ev, n->loc, "range %lld %s %lld has more than %d elements", (long long)lo,
        n->ival ? "..=" : "..", (long long)hi, MAX_LIST);
    return NULL;
  }
  if (!charge(ev, count, sizeof(Value) + SLOT_BYTES, n->loc))
    return NULL;
  Value *v = vnew(ev, V_LIST, n->loc);
  for (int64_t k = 0; k < count; k++) /* lo + k <= hi: no overflow */
    vec_push(ev->a, &v->items, vint(ev, lo + k, n->loc)); /* charged above */
  return v;
}

/* list[i], list[list], ref[i...] */
static Value *eval_index(Ev *ev, Scope *sc, const Ast *n) {
  Value *base = eval(ev, sc, n->lhs);
  if (!base)
    return NULL;
  Value *idx[IR_MAX_RANK + 1];
  int nidx = n->args.len;
  if (nidx > IR_MAX_RANK) {
    err(ev, n->loc, "too many indices");
    return NULL;
  }
  for (int i = 0; i < nidx; i++) {
    idx[i] = eval(ev, sc, n->args.items[i]);
    if (!idx[i])
      return NULL;
    if (idx[i]->kind == V_LIST)
      for (int j = 0; j < idx[i]->items.len; j++)
        if (((Value *)idx[i]->items.items[j])->kind != V_INT) {
          err(ev, idx[i]->loc, "an index list must hold integers");
          return NULL;
        }
    if (idx[i]->kind != V_INT && idx[i]->kind != V_LIST) {
      err(ev, idx[i]->loc, "an index must be an integer or a range, not %s", kind_name(idx[i]->kind));
      return NULL;
    }
  }
  Loc loc = n->loc;
  if (base->kind == V_REF) {
    Value *v = vnew(ev, V_REF, loc);
    v->s = base->s;
    for (int i = 0; i < base->items.len; i++)
      vec_push(ev->a, &v->items, base->items.items[i]);
    for (int i = 0; i < nidx; i++)
      vec_push(ev->a, &v->items, idx[i]);
    return v;
  }
  if (base->kind != V_LIST || nidx != 1) {
    err(ev, loc, "cannot index %s%s", kind_name(base->kind), base->kind == V_LIST ? " with several indices" : "");
    return NULL;
  }
  int len = base->items.len;
  if (idx[0]->kind == V_INT) {
    int64_t i = idx[0]->i < 0 ? idx[0]->i + len : idx[0]->i;
    if (i < 0 || i >= len) {
      err(ev, idx[0]->loc, "index %lld is out of range for a list of %d", (long long)idx[0]->i, len);
      return NULL;
    }
    return base->items.items[i];
  }
  Value *v = vnew(ev, V_LIST, loc);
  if (!charge(ev, idx[0]->items.len, SLOT_BYTES, loc))
    return NULL;
  for (int j = 0; j < idx[0]->items.len; j++) {
    int64_t i = ((Value *)idx[0]->items.items[j])->i;
    if (i < 0 || i >= len) {
      err(ev, idx[0]->loc, "index %lld is out of range for a list of %d", (long long)i, len);
      return NULL;
    }
    vec_push(ev->a, &v->items, base->items.items[i]);
  }
  return v;
}

static Value *eval_member(Ev *ev, Scope *sc, const Ast *n) {
  Value *base = eval(ev, sc, n->lhs);
  if (!base)
    return NULL;
  if (base->kind == V_MACHINE && base->def && !base->call &&
      n->lhs->kind == AST_NAME) { /* `use dense_net = dense_net(...)`: the label */
    Value *r = vnew(ev, V_REF, base->loc);
    r->s = n->lhs->str;
    base = r;
  }
  if (base->kind != V_REF) {
    err(ev, n->loc, "'.%s' applies to an instance name, not %s", n->str, kind_name(base->kind));
    return NULL;
  }
  /* m.x[2]: apply pending indices to the name first */
  const char *name = base->s;
  for (int i = 0; i < base->items.len; i++) {
    Value *ix = base->items.items[i];
    if (ix->kind != V_INT) {
      err(ev, n->loc, "a range cannot name an instance");
      return NULL;
    }
    name = arena_printf(ev->a, "%s[%lld]", name, (long long)ix->i);
  }
  Value *v = vnew(ev, V_REF, loc_span(base->loc, n->loc));
  v->s = arena_printf(ev->a, "%s.%s", name, n->str);
  return v;
}

/* ------------------------------------------------------------ calls */

typedef struct Args {
  Value *pos[16];
  int npos;
  const char *kwname[16];
  Value *kw[16];
  Loc kwloc[16];
  int nkw;
  bool ok;
} Args;

static void eval_args(Ev *ev, Scope *sc, const Ast *call, Args *a) {
  *a = (Args){.ok = true};
  for (int i = 0; i < call->args.len; i++) {
    const Ast *arg = call->args.items[i];
    bool kw = arg->kind == AST_KWARG;
    if ((kw ? a->nkw : a->npos) >= 16) {
      err(ev, arg->loc, "too many arguments");
      a->ok = false;
      return;
    }
    Value *v = eval(ev, sc, kw ? arg->lhs : arg);
    if (!v)
      a->ok = false;
    if (kw) {
      for (int j = 0; j < a->nkw; j++)
        if (strcmp(a->kwname[j], arg->str) == 0) {
          err(ev, arg->loc, "argument '%s' is given twice", arg->str);
          a->ok = false;
        }
      a->kwname[a->nkw] = arg->str;
      a->kwloc[a->nkw] = arg->loc;
      a->kw[a->nkw++] = v;
    } else {
      a->pos[a->npos++] = v;
    }
  }
}

/* Takes keyword argument `name` out of a (NULL if absent). */
static Value *take_kw(Args *a, const char *name) {
  for (int i = 0; i < a->nkw; i++)
    if (a->kw[i] && strcmp(a->kwname[i], name) == 0) {
      Value *v = a->kw[i];
      a->kw[i] = NULL;
      return v;
    }
  return NULL;
}

static bool no_more_kw(Ev *ev, Args *a, const char *fn) {
  for (int i = 0; i < a->nkw; i++)
    if (a->kw[i]) {
      err(ev, a->kwloc[i], "%s has no argument '%s'", fn, a->kwname[i]);
      return false;
    }
  return true;
}

static Value *list_arg(Ev *ev, Args *a, const char *fn, Loc loc) {
  Value *l = a->npos == 1 && a->pos[0]->kind == V_LIST ? a->pos[0] : NULL;
  if (!l) {
    if (a->npos >= 1 && (a->pos[0]->kind == V_INT || a->pos[0]->kind == V_FLOAT) &&
        (fn[1] == 'i' || fn[1] == 'a')) { /* min(a, b, ...) / max(a, b, ...) */
      l = vnew(ev, V_LIST, loc);
      for (int i = 0; i < a->npos; i++)
        vec_push(ev->a, &l->items, a->pos[i]);
      return l;
    }
    err(ev, loc, "%s takes one list", fn);
  }
  return l;
}

static Value *call_builtin(Ev *ev, const char *fn, Args *a, Loc loc) {
  if (strcmp(fn, "len") == 0) {
    Value *l = list_arg(ev, a, fn, loc);
    return l ? vint(ev, l->items.len, loc) : NULL;
  }
  if (strcmp(fn, "sum") == 0 || strcmp(fn, "min") == 0 || strcmp(fn, "max") == 0) {
    Value *l = list_arg(ev, a, fn, loc);
    if (!l)
      return NULL;
    if (l->items.len == 0 && fn[0] != 's') {
      err(ev, loc, "%s of an empty list", fn);
      return NULL;
    }
    Value *acc = fn[0] == 's' ? vint(ev, 0, loc) : l->items.items[0];
    for (int i = fn[0] == 's' ? 0 : 1; i < l->items.len && acc; i++) {
      Value *x = l->items.items[i];
      double dx, dacc;
      if (!num(x, &dx) || !num(acc, &dacc)) {
        err(ev, x->loc, "%s needs numbers, not %s", fn, kind_name(x->kind));
        return NULL;
      }
      if (fn[0] == 's') {
        if (acc->kind == V_INT && x->kind == V_INT)
          acc = int_binop(ev, OP_ADD, acc->i, x->i, loc);
        else {
          acc = vnew(ev, V_FLOAT, loc);
          acc->f = dacc + dx;
          if (!isfinite(acc->f)) {
            err(ev, loc, "sum gives a non-finite number");
            return NULL;
          }
        }
      } else if ((fn[1] == 'i') == (x->kind == V_INT && acc->kind == V_INT ? x->i < acc->i
                                                                         : dx < dacc)) {
        acc = x; /* integers compared exactly: doubles lose bits past 2^53 */
      }
    }
    return acc;
  }
  if (strcmp(fn, "abs") == 0) {
    if (a->npos != 1 || (a->pos[0]->kind != V_INT && a->pos[0]->kind != V_FLOAT)) {
      err(ev, loc, "abs takes one number");
      return NULL;
    }
    Value *x = a->pos[0];
    if (x->kind == V_INT) {
      if (x->i == INT64_MIN) {
        err(ev, x->loc, "integer overflow: abs(%lld) is outside the 64-bit range", (long long)x->i);
        return NULL;
      }
      return vint(ev, x->i < 0 ? -x->i : x->i, loc);
    }
    Value *v = vnew(ev, V_FLOAT, loc);
    v->f = fabs(x->f);
    return v;
  }
  if (strcmp(fn, "uniform") == 0 || strcmp(fn, "normal") == 0) {
    double s;
    if (a->npos != 1 || !num(a->pos[0], &s) || s < 0) {
      err(ev, loc, "%s takes one non-negative scale, e.g. %s(0.1)", fn, fn);
      return NULL;
    }
    Value *v = vnew(ev, V_INIT, loc);
    v->init = fn[0] == 'u' ? INIT_UNIFORM : INIT_NORMAL;
    v->f = s;
    return v;
  }
  if (strcmp(fn, "transpose") == 0) {
    if (a->npos != 1 || a->pos[0]->kind != V_REF) {
      err(ev, loc, "transpose takes one parameter, e.g. transpose(W)");
      return NULL;
    }
    Value *v = vnew(ev, V_REF, loc);
    *v = *a->pos[0];
    v->loc = loc;
    v->transposed = !v->transposed;
    return v;
  }
  Suggest sg;
  err(ev, loc, "unknown function '%s'%s", fn, callable_hint(ev, &sg, fn));
  return NULL;
}

/* dense(a, b, ...), conv(...), avgpool(...), global_avgpool(x), identity_map(x),
 * and the adjoints conv_t(...), avgpool_t(...), global_avgpool_t(x) */
static Value *call_arrow(Ev *ev, ArrowKind k, bool adjoint, Args *a, Loc loc) {
  const char *fn = adjoint ? arena_printf(ev->a, "%s_t", ir_arrow_fn(k)) : ir_arrow_fn(k);
  if (adjoint && (a->npos != 1 || a->pos[0]->kind != V_REF)) {
    err(ev, loc, "%s takes one source block", fn);
    return NULL;
  }
  if (a->npos == 0) {
    err(ev, loc, "%s needs at least one source block", fn);
    return NULL;
  }
  Term *t = term_new(ev, TERM_ARROW, loc);
  t->arrow = k;
  t->adjoint = adjoint;
  for (int i = 0; i < a->npos; i++) {
    Value *s = a->pos[i];
    if (s->kind != V_REF && s->kind != V_LIST) {
      err(ev, s->loc, "a source of %s must be a block, not %s", fn, kind_name(s->kind));
      return NULL;
    }
    vec_push(ev->a, &t->srcs, s);
  }
  if (k == ARROW_DENSE || k == ARROW_CONV) {
    t->weight = take_kw(a, "weight");
    if (t->weight && t->weight->kind != V_REF) {
      err(ev, t->weight->loc, "weight must name a parameter, e.g. weight = W[0 .. 4, 4 .. 8]");
      return NULL;
    }
  }
  if (k == ARROW_CONV || k == ARROW_AVGPOOL) {
    t->kernel_v = take_kw(a, "k");
    t->pad_v = take_kw(a, "pad");
    t->stride_v = take_kw(a, "stride");
    t->dilation_v = take_kw(a, "dilation");
    Value *lags = k == ARROW_CONV ? take_kw(a, "lags") : NULL;
    if (lags) {
      if (lags->kind != V_LIST || lags->items.len == 0) {
        err(ev, lags->loc, "lags must be a range of time lags, e.g. lags = 0 ..= 3");
        return NULL;
      }
      t->has_lags = true;
      Value *first = lags->items.items[0], *last = lags->items.items[lags->items.len - 1];
      if (!want_int_in(ev, first, "a lag", 0, MAX_DIM, &t->lag_lo) ||
          !want_int_in(ev, last, "a lag", 0, MAX_DIM, &t->lag_hi))
        return NULL;
      if (t->lag_hi < t->lag_lo) {
        err(ev, lags->loc, "lags must be an increasing range of lags >= 0");
        return NULL;
      }
    }
    if (!t->kernel_v && !t->has_lags) {
      err(ev, loc, "%s needs a kernel size, e.g. k = 3 or k = [3, 3]", fn);
      return NULL;
    }
  }
  if (!no_more_kw(ev, a, fn))
    return NULL;
  return terms_of(ev, t);
}

static Value *apply_act(Ev *ev, Value *f, Args *a, Loc loc) {
  Value *alpha = take_kw(a, "alpha");
  Act act = f->act;
  if (alpha) {
    if (act.kind != ACT_LEAKY_RELU) {
      err(ev, alpha->loc, "only leaky_relu takes alpha");
      return NULL;
    }
    if (!num(alpha, &act.alpha)) {
      err(ev, alpha->loc, "alpha must be a number");
      return NULL;
    }
  }
  if (!no_more_kw(ev, a, ir_act_name(act.kind)))
    return NULL;
  if (a->npos == 0) { /* leaky_relu(alpha = 0.2): an activation value */
    Value *v = vnew(ev, V_ACT, loc);
    v->act = act;
    return v;
  }
  if (a->npos != 1) {
    err(ev, loc, "an activation takes one argument, the block's linear part");
    return NULL;
  }
  Value *lin = as_terms(ev, a->pos[0]);
  if (!lin) {
    err(ev, a->pos[0]->loc, "%s applies to a linear part (arrows, bias, input), not %s",
        ir_act_name(act.kind), kind_name(a->pos[0]->kind));
    return NULL;
  }
  Value *v = vnew(ev, V_BEXPR, loc);
  v->act = act;
  v->items = lin->items;
  return v;
}

/* mul(gate, linear): z = z_gate * y; softmax_jvp(gate, linear): z = s * (y - <s, y>)
 * with s = z_gate. Used by printed dual machines. */
static Value *apply_gated(Ev *ev, Args *a, ActKind kind, Loc loc) {
  const char *fn = ir_act_name(kind);
  if (a->npos != 2 || a->pos[0]->kind != V_REF || !no_more_kw(ev, a, fn)) {
    err(ev, loc, "%s takes a gate block and a linear part: %s(g, dense(x))", fn, fn);
    return NULL;
  }
  Value *lin = as_terms(ev, a->pos[1]);
  if (!lin) {
    err(ev, a->pos[1]->loc, "%s applies to a linear part", fn);
    return NULL;
  }
  Value *v = vnew(ev, V_BEXPR, loc);
  v->act.kind = kind;
  v->gate = a->pos[0];
  v->items = lin->items;
  return v;
}

static Value *eval_call(Ev *ev, Scope *sc, const Ast *n) {
  Value *f = eval(ev, sc, n->lhs);
  if (!f)
    return NULL;
  Args a;
  eval_args(ev, sc, n, &a);
  if (!a.ok)
    return NULL;
  switch (f->kind) {
  case V_ACT:
    return apply_act(ev, f, &a, n->loc);
  case V_MACHINE: {
    if (!f->def || f->call) {
      err(ev, n->loc, "this machine is already instantiated");
      return NULL;
    }
    Value *v = vnew(ev, V_MACHINE, n->loc);
    v->def = f->def;
    if (a.npos + a.nkw == 0)
      return v;
    charge(ev, 1, sizeof(VCall), n->loc);
    v->call = arena_alloc(ev->a, sizeof *v->call);
    for (int i = 0; i < a.npos; i++)
      vec_push(ev->a, &v->call->args, a.pos[i]);
    for (int i = 0; i < a.nkw; i++) {
      vec_push(ev->a, &v->call->kwnames, (void *)a.kwname[i]);
      vec_push(ev->a, &v->call->kwargs, a.kw[i]);
    }
    return v;
  }
  case V_FUNC: {
    ArrowKind k;
    bool adjoint;
    if (ir_arrow_lookup(f->s, &k, &adjoint))
      return call_arrow(ev, k, adjoint, &a, n->loc);
    if (strcmp(f->s, "mul") == 0 || strcmp(f->s, "softmax_jvp") == 0)
      return apply_gated(ev, &a, f->s[0] == 'm' ? ACT_MUL : ACT_SOFTMAX_JVP, n->loc);
    return call_builtin(ev, f->s, &a, n->loc);
  }
  case V_REF: {
    Suggest sg;
    err(ev, n->lhs->loc, "'%s' is not a function, activation or machine%s", f->s,
        callable_hint(ev, &sg, f->s));
    return NULL;
  }
  default:
    err(ev, n->lhs->loc, "%s cannot be called", kind_name(f->kind));
    return NULL;
  }
}

static Value *eval(Ev *ev, Scope *sc, const Ast *n) {
  if (!n || !step(ev, n->loc))
    return NULL;
  Value *v;
  switch (n->kind) {
  case AST_INT:
    return vint(ev, n->ival, n->loc);
  case AST_FLOAT:
    v = vnew(ev, V_FLOAT, n->loc);
    v->f = n->fval;
    return v;
  case AST_BOOL:
    v = vnew(ev, V_BOOL, n->loc);
    v->i = n->ival;
    return v;
  case AST_STRING:
    v = vnew(ev, V_STR, n->loc);
    v->s = n->str;
    return v;
  case AST_NAME:
    return eval_name(ev, sc, n);
  case AST_MEMBER:
    return eval_member(ev, sc, n);
  case AST_INDEX:
    return eval_index(ev, sc, n);
  case AST_CALL:
    return eval_call(ev, sc, n);
  case AST_LIST:
    if (n->args.len > MAX_LIST) { /* a literal, as a range or a concatenation */
      err(ev, n->loc, "list has more than %d elements", MAX_LIST);
      return NULL;
    }
    v = vnew(ev, V_LIST, n->loc);
    for (int i = 0; i < n->args.len; i++) {
      Value *x = eval(ev, sc, n->args.items[i]);
      if (!x)
        return NULL;
      lpush(ev, v, x);
    }
    return v;
  case AST_RANGE:
    return eval_range(ev, sc, n);
  case AST_COMP: {
    Value *it = eval(ev, sc, n->rhs);
    if (!want(ev, it, V_LIST, "what a comprehension runs over"))
      return NULL;
    v = vnew(ev, V_LIST, n->loc);
    for (int i = 0; i < it->items.len; i++) {
      Scope inner = {.parent = sc};
      bind(ev, &inner, n->str, it->items.items[i]);
      Value *x = eval(ev, &inner, n->lhs);
      if (!x)
        return NULL;
      lpush(ev, v, x);
    }
    return v;
  }
  case AST_BINOP:
    return eval_binop(ev, sc, n);
  case AST_UNOP: {
    Value *x = eval(ev, sc, n->lhs);
    if (!x)
      return NULL;
    if (n->op == OP_NOT) {
      bool b;
      if (!truthy(ev, x, &b))
        return NULL;
      v = vnew(ev, V_BOOL, n->loc);
      v->i = !b;
      return v;
    }
    if (x->kind == V_INT) {
      if (x->i == INT64_MIN) {
        err(ev, n->loc, "integer overflow: -(%lld) is outside the 64-bit range", (long long)x->i);
        return NULL;
      }
      return vint(ev, -x->i, n->loc);
    }
    if (x->kind == V_FLOAT) {
      v = vnew(ev, V_FLOAT, n->loc);
      v->f = -x->f;
      return v;
    }
    err(ev, n->loc, "cannot negate %s", kind_name(x->kind));
    return NULL;
  }
  case AST_KWARG:
    err(ev, n->loc, "a keyword argument is allowed only in a call");
    return NULL;
  default:
    err(ev, n->loc, "a statement is not an expression");
    return NULL;
  }
}

/* ------------------------------------------------------------ names */

/* Expands a reference (maybe indexed by ranges) into block names:
 * x[0 .. 3] -> x[0], x[1], x[2]. */
static bool expand_ref(Ev *ev, Value *v, PtrVec *out) {
  if (v->kind == V_LIST) {
    for (int i = 0; i < v->items.len; i++)
      if (!expand_ref(ev, v->items.items[i], out))
        return false;
    return true;
  }
  if (v->kind != V_REF) {
    err(ev, v->loc, "expected a block name, not %s", kind_name(v->kind));
    return false;
  }
  PtrVec names = {0};
  vec_push(ev->a, &names, (void *)v->s);
  for (int i = 0; i < v->items.len; i++) {
    Value *ix = v->items.items[i];
    PtrVec next = {0};
    int64_t count;
    if (ck_mul(names.len, ix->kind == V_INT ? 1 : ix->items.len, &count) || count > MAX_LIST) {
      err(ev, v->loc, "'%s' indexed so names more than %d blocks", v->s, MAX_LIST);
      return false;
    }
    if (!charge(ev, count, NAME_BYTES + SLOT_BYTES, v->loc))
      return false;
    for (int j = 0; j < names.len; j++) {
      if (ix->kind == V_INT) {
        vec_push(ev->a, &next, arena_printf(ev->a, "%s[%lld]", (char *)names.items[j], (long long)ix->i));
        continue;
      }
      for (int k = 0; k < ix->items.len; k++)
        vec_push(ev->a, &next, arena_printf(ev->a, "%s[%lld]", (char *)names.items[j],
                                            (long long)((Value *)ix->items.items[k])->i));
    }
    names = next;
  }
  for (int j = 0; j < names.len; j++) {
    SrcName *s = arena_alloc(ev->a, sizeof *s);
    s->name = names.items[j];
    s->loc = v->loc;
    vec_push(ev->a, out, s);
  }
  return true;
}

static const char *single_name(Ev *ev, const Ast *n, Scope *sc) {
  Value *v = eval(ev, sc, n);
  if (!v)
    return NULL;
  PtrVec names = {0};
  if (!expand_ref(ev, v, &names))
    return NULL;
  if (names.len != 1) {
    err(ev, n->loc, "a declaration names one block, not %d", names.len);
    return NULL;
  }
  return ((SrcName *)names.items[0])->name;
}

/* Turns every term's source values into names, now that loops are done. */
static bool expand_terms(Ev *ev, PtrVec *terms) {
  for (int i = 0; i < terms->len; i++) {
    Term *t = terms->items[i];
    PtrVec names = {0};
    if (t->expanded)
      continue;
    for (int j = 0; j < t->srcs.len; j++)
      if (!expand_ref(ev, t->srcs.items[j], &names))
        return false;
    if (t->kind == TERM_ARROW && names.len == 0) {
      err(ev, t->loc, "%s has no source block (empty range?)", ir_arrow_fn(t->arrow));
      return false;
    }
    t->srcs = names;
    t->expanded = true;
  }
  return true;
}

/* ------------------------------------------------------------ statements */

static bool eval_shape(Ev *ev, Scope *sc, const Ast *n, Shape *out) {
  Value *v = eval(ev, sc, n);
  if (!v)
    return false;
  if (v->kind == V_SHAPE) {
    *out = v->shape;
    return true;
  }
  *out = (Shape){0};
  return want_dim(ev, v, "a block size", &out->channels);
}

static void exec_block(Ev *ev, Scope *sc, const Ast *n) {
  const char *name = single_name(ev, n->lhs, sc);
  Shape shape;
  bool shape_ok = eval_shape(ev, sc, n->shape, &shape);
  if (!name || !shape_ok)
    return;
  DBlock *prev = draft_find(ev->draft, name);
  bool feed = prev && prev->instance && prev->has_input && !prev->terms.len && n->rhs;
  if (prev && !feed) {
    err(ev, n->lhs->loc, "block '%s' is declared twice", name);
    diag_note(ev->d, prev->loc, "first declaration of '%s' is here", name);
    return;
  }
  if (ev->draft->blocks.len >= MAX_BLOCKS) {
    err(ev, n->loc, "a machine may have at most %d blocks", MAX_BLOCKS);
    ev->stopped = true;
    return;
  }
  DBlock *b = arena_alloc(ev->a, sizeof *b);
  b->name = name;
  b->loc = n->lhs->loc;
  b->shape = shape;
  b->is_output = (n->flags & BLOCK_OUTPUT) != 0;
  if (!n->rhs) { /* input NAME : shape */
    b->has_input = true;
    draft_add_block(ev->a, ev->draft, b);
    return;
  }
  Value *v = eval(ev, sc, n->rhs);
  if (!v)
    return;
  if (v->kind == V_REF || v->kind == V_LIST)
    v = as_terms(ev, v);
  if (v->kind != V_TERMS && v->kind != V_BEXPR) {
    err(ev, n->rhs->loc, "a block is defined by arrows, bias and input, e.g. tanh(dense(x) + bias); "
                         "this is %s", kind_name(v->kind));
    return;
  }
  b->act = v->kind == V_BEXPR ? v->act : (Act){.kind = ACT_IDENTITY};
  if (v->kind == V_BEXPR && v->gate) {
    PtrVec g = {0};
    if (!expand_ref(ev, v->gate, &g) || g.len != 1) {
      err(ev, v->gate->loc, "%s needs exactly one gate block", ir_act_name(v->act.kind));
      return;
    }
    b->gate = ((SrcName *)g.items[0])->name;
    b->gate_loc = v->gate->loc;
  }
  if (!expand_terms(ev, &v->items))
    return;
  for (int i = 0; i < v->items.len; i++) { /* the input term becomes a flag */
    Term *t = v->items.items[i];
    if (t->kind == TERM_INPUT)
      b->has_input = true;
    else
      vec_push(ev->a, &b->terms, t);
  }
  if (!feed) {
    draft_add_block(ev->a, ev->draft, b);
    return;
  }
  if (shape_ok && memcmp(&prev->shape, &b->shape, sizeof b->shape) != 0) {
    err(ev, n->shape->loc, "'%s' is %s, not %s", name, ir_shape_text(ev->a, &prev->shape),
        ir_shape_text(ev->a, &b->shape));
    return;
  }
  draft_feed(ev->d, prev, b); /* an instance's input, fed by this definition */
}

static void exec_param(Ev *ev, Scope *sc, const Ast *n) {
  const char *name = single_name(ev, n->lhs, sc);
  Value *shape = eval(ev, sc, n->shape);
  if (!shape || !name)
    return;
  if (shape->kind == V_INT) { /* param b : 4 */
    Value *l = vnew(ev, V_LIST, shape->loc);
    vec_push(ev->a, &l->items, shape);
    shape = l;
  }
  if (!want(ev, shape, V_LIST, "a parameter shape"))
    return;
  if (shape->items.len < 1 || shape->items.len > IR_MAX_RANK) {
    err(ev, shape->loc, "a parameter has 1 to %d axes, not %d", IR_MAX_RANK, shape->items.len);
    return;
  }
  DParam *p = arena_alloc(ev->a, sizeof *p);
  p->name = name;
  p->loc = n->lhs->loc;
  p->rank = shape->items.len;
  for (int i = 0; i < p->rank; i++)
    if (!want_dim(ev, shape->items.items[i], "a parameter axis", &p->shape[i]))
      return;
  p->init = INIT_GLOROT;
  if (n->rhs) {
    Value *init = eval(ev, sc, n->rhs);
    if (!want(ev, init, V_INIT, "a parameter's initializer (glorot, zeros, ones, uniform(a), normal(s))"))
      return;
    p->init = init->init;
    p->scale = init->f;
  }
  DParam *q = strmap_get(ev->draft->param_map, p->name);
  if (q) {
    err(ev, n->loc, "parameter '%s' is declared twice", p->name);
    diag_note(ev->d, q->loc, "first declaration of '%s' is here", p->name);
    return;
  }
  draft_add_param(ev->a, ev->draft, p);
}

static void exec_set(Ev *ev, Scope *sc, const Ast *n) {
  Value *v = eval(ev, sc, n->rhs);
  if (!v)
    return;
  if (strcmp(n->str, "timeblock") == 0) {
    int tb;
    if (!want_dim(ev, v, "timeblock", &tb))
      return;
    ev->draft->timeblock = tb;
    ev->draft->timeblock_loc = n->loc;
    return;
  }
  err(ev, n->loc, "unknown setting '%s' (known: timeblock)", n->str);
}

static void exec_use(Ev *ev, Scope *sc, const Ast *n) {
  Value *m = eval(ev, sc, n->rhs);
  if (!want(ev, m, V_MACHINE, "what 'use' instantiates"))
    return;
  Draft *sub = draft_of(ev, m, n->loc);
  if (!sub)
    return;
  if (n->str)
    draft_prefix(ev->a, sub, n->str);
  for (int i = 0; i < sub->blocks.len; i++)
    ((DBlock *)sub->blocks.items[i])->instance = true;
  draft_merge(ev->a, ev->d, ev->draft, sub, MERGE_USE, n->loc);
}

static void exec_stmt(Ev *ev, Scope *sc, const Ast *n) {
  if (!step(ev, n->loc))
    return;
  switch (n->kind) {
  case AST_BLOCK:
    exec_block(ev, sc, n);
    break;
  case AST_MARK_OUTPUT:
    for (int i = 0; i < n->args.len; i++) { /* output x[0 .. 3] marks several */
      Value *v = eval(ev, sc, n->args.items[i]);
      PtrVec names = {0};
      if (!v || !expand_ref(ev, v, &names))
        continue;
      for (int k = 0; k < names.len; k++) {
        DMark *mk = arena_alloc(ev->a, sizeof *mk);
        mk->name = ((SrcName *)names.items[k])->name;
        mk->loc = ((Ast *)n->args.items[i])->loc;
        vec_push(ev->a, &ev->draft->marks, mk);
      }
    }
    break;
  case AST_PARAM:
    exec_param(ev, sc, n);
    break;
  case AST_LET: {
    Value *v = eval(ev, sc, n->rhs);
    if (v)
      bind(ev, sc, n->str, v);
    break;
  }
  case AST_SET:
    exec_set(ev, sc, n);
    break;
  case AST_FOR: {
    Value *it = eval(ev, sc, n->rhs);
    if (!want(ev, it, V_LIST, "what a for loop runs over"))
      break;
    for (int i = 0; i < it->items.len && !ev->stopped; i++) {
      Scope inner = {.parent = sc};
      bind(ev, &inner, n->str, it->items.items[i]);
      exec_body(ev, &inner, &n->body);
    }
    break;
  }
  case AST_IF: {
    bool c;
    if (!truthy(ev, eval(ev, sc, n->cond), &c))
      break;
    /* no new scope: a `let` in a branch is seen after the if (as in Python) */
    exec_body(ev, sc, c ? &n->body : &n->els);
    break;
  }
  case AST_USE:
    exec_use(ev, sc, n);
    break;
  default:
    err(ev, n->loc, "this is not allowed inside a machine");
    break;
  }
}

static bool exec_body(Ev *ev, Scope *sc, const AstList *body) {
  for (int i = 0; i < body->len && !ev->stopped; i++)
    exec_stmt(ev, sc, body->items[i]);
  return !ev->stopped;
}

/* ------------------------------------------------------------ instances */

/* Binds a machine's parameters from a call's arguments (defaults are
 * evaluated in the machine's own scope, after the arguments before them). */
static bool bind_params(Ev *ev, Scope *sc, Value *m, Loc loc) {
  static const VCall none;
  const VCall *c = m->call ? m->call : &none;
  const Ast *def = m->def;
  int np = def->params.len;
  if (c->args.len > np) {
    err(ev, loc, "machine '%s' takes %d argument%s, but %d %s given", def->str, np,
        np == 1 ? "" : "s", c->args.len, c->args.len == 1 ? "was" : "were");
    diag_note(ev->d, def->loc, "'%s' is defined here", def->str);
    return false;
  }
  for (int k = 0; k < c->kwnames.len; k++) {
    bool found = false;
    for (int i = 0; i < np && !found; i++) {
      const Ast *p = def->params.items[i];
      found = strcmp(p->str, c->kwnames.items[k]) == 0;
    }
    if (!found) {
      Suggest sg;
      diag_suggest_init(&sg, c->kwnames.items[k]);
      for (int i = 0; i < np; i++)
        diag_suggest_add(&sg, ((const Ast *)def->params.items[i])->str);
      err(ev, ((Value *)c->kwargs.items[k])->loc, "machine '%s' has no parameter '%s'%s",
          def->str, (char *)c->kwnames.items[k], diag_suggest_hint(&sg));
      return false;
    }
  }
  for (int i = 0; i < np; i++) {
    const Ast *p = def->params.items[i];
    Value *v = i < c->args.len ? c->args.items[i] : NULL;
    for (int k = 0; k < c->kwnames.len; k++)
      if (strcmp(p->str, c->kwnames.items[k]) == 0) {
        if (v) {
          err(ev, ((Value *)c->kwargs.items[k])->loc, "parameter '%s' is given twice", p->str);
          return false;
        }
        v = c->kwargs.items[k];
      }
    if (!v && p->kind == AST_KWARG)
      v = eval(ev, sc, p->lhs);
    if (!v) {
      err(ev, loc, "machine '%s' needs a value for parameter '%s'", def->str, p->str);
      diag_note(ev->d, def->loc, "'%s' is defined here", def->str);
      return false;
    }
    bind(ev, sc, p->str, v);
  }
  return true;
}

static Draft *instantiate(Ev *ev, Value *m, Loc loc) {
  if (ev->depth >= MAX_INSTANCE_DEPTH) {
    err(ev, loc, "machines are instantiated more than %d deep; is a machine using itself?",
        MAX_INSTANCE_DEPTH);
    ev->stopped = true;
    return NULL;
  }
  Scope sc = {0};
  if (!bind_params(ev, &sc, m, loc))
    return NULL;
  ev->depth++;
  Draft *saved = ev->draft, *d = NULL;
  if (m->def->rhs) { /* machine c = f >> g */
    Value *comp = eval(ev, &sc, m->def->rhs);
    if (want(ev, comp, V_MACHINE, "a machine defined by '='"))
      d = draft_of(ev, comp, m->def->rhs->loc);
    if (d)
      d->name = m->def->str;
  } else {
    d = draft_new(ev->a, m->def->str);
    ev->draft = d;
    exec_body(ev, &sc, &m->def->body);
  }
  ev->draft = saved;
  ev->depth--;
  return ev->stopped ? NULL : d;
}

static Draft *draft_of(Ev *ev, Value *m, Loc loc) {
  if (m->def)
    return instantiate(ev, m, loc);
  Draft *l = draft_of(ev, m->lhs, m->lhs->loc);
  Draft *r = l ? draft_of(ev, m->rhs, m->rhs->loc) : NULL;
  if (!r)
    return NULL;
  bool ok = m->op == OP_SEQ ? draft_sequence(ev->a, ev->d, l, r, m->loc)
                            : draft_merge(ev->a, ev->d, l, r, m->op == OP_PAR ? MERGE_PAR : MERGE_SUM, m->loc);
  return ok ? l : NULL;
}

static const Ast *pick_machine(Program *p, const char *name) {
  if (name) {
    const Ast *m = prog_find_machine(p, name);
    if (!m) {
      Suggest sg;
      diag_suggest_init(&sg, name);
      for (int i = 0; i < p->machines.len; i++)
        diag_suggest_add(&sg, ((const Ast *)p->machines.items[i])->str);
      diag_error(p->diag, LOC_NONE, "%s: no machine named '%s'%s", p->main_path, name,
                 diag_suggest_hint(&sg));
    }
    return m;
  }
  const Ast *last = NULL; /* the last machine that needs no argument */
  for (int i = 0; i < p->machines.len; i++) {
    const Ast *m = p->machines.items[i];
    bool all_default = true;
    for (int k = 0; k < m->params.len; k++)
      all_default &= ((const Ast *)m->params.items[k])->kind == AST_KWARG;
    if (m->loc.file == p->main_file && all_default)
      last = m;
  }
  if (!last)
    diag_error(p->diag, LOC_NONE, "%s: no machine to compile: define a machine without parameters "
                                  "(or name one with -m NAME)", p->main_path);
  return last;
}

IrMachine *eval_machine(Program *p, const char *name) {
  const Ast *def = pick_machine(p, name);
  if (!def)
    return NULL;
  Ev ev = {.p = p, .a = p->arena, .d = p->diag};
  Value *m = vnew(&ev, V_MACHINE, def->loc);
  m->def = def;
  int before = p->diag->nerrors;
  Draft *d = instantiate(&ev, m, def->loc);
  if (!d || p->diag->nerrors > before)
    return NULL;
  return draft_build(p->arena, p->diag, d, p->main_path);
}
