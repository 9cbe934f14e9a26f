/* ast.c — syntax tree nodes and their constructors.
 *
 * The grammar's actions are single calls to these functions, so all the
 * field-filling lives here and parser.y stays a readable grammar. Nodes and
 * lists come from the compilation arena and are never freed one by one.
 * Nothing here reports errors: the parser bounds the depth (parse_expr). */
#include "machc.h"

#include <string.h>

Ast *ast_new(Arena *a, AstKind kind, Loc loc) {
  Ast *n = arena_alloc(a, sizeof *n);
  n->kind = kind;
  n->loc = loc;
  return n;
}

void ast_push(Arena *a, AstList *l, Ast *node) {
  if (l->len == l->cap) {
    int cap = l->cap ? 2 * l->cap : 4;
    Ast **items = arena_alloc(a, sizeof *items * (size_t)cap);
    if (l->len)
      memcpy(items, l->items, sizeof *items * (size_t)l->len);
    l->items = items;
    l->cap = cap;
  }
  l->items[l->len++] = node;
}

/* Lists travel through Bison's value stack by value: the old copy is
 * dropped when the rule reduces, so growing the returned one is safe. A NULL
 * node is what an `error` rule yields; it is left out. */
AstList ast_append(Arena *a, AstList l, Ast *node) {
  if (node)
    ast_push(a, &l, node);
  return l;
}

AstList ast_list1(Arena *a, Ast *node) {
  return ast_append(a, (AstList){0}, node);
}

static int depth_of(const Ast *n) { return n ? n->depth : 0; }

static int max_int(int x, int y) { return x > y ? x : y; }

static int list_depth(const AstList *l) {
  int d = 0;
  for (int i = 0; i < l->len; i++)
    d = max_int(d, depth_of(l->items[i]));
  return d;
}

/* A leaf expression: depth 1. */
static Ast *leaf(Arena *a, AstKind kind, Loc loc) {
  Ast *n = ast_new(a, kind, loc);
  n->depth = 1;
  return n;
}

Ast *ast_int(Arena *a, int64_t v, Loc loc) {
  Ast *n = leaf(a, AST_INT, loc);
  n->ival = v;
  return n;
}

Ast *ast_float(Arena *a, double v, Loc loc) {
  Ast *n = leaf(a, AST_FLOAT, loc);
  n->fval = v;
  return n;
}

Ast *ast_bool(Arena *a, int v, Loc loc) {
  Ast *n = leaf(a, AST_BOOL, loc);
  n->ival = v != 0;
  return n;
}

Ast *ast_str(Arena *a, AstKind kind, const char *s, Loc loc) {
  Ast *n = leaf(a, kind, loc);
  n->str = s;
  return n;
}

Ast *ast_binop(Arena *a, int op, Ast *l, Ast *r, Loc loc) {
  Ast *n = ast_new(a, AST_BINOP, loc);
  n->op = op;
  n->lhs = l;
  n->rhs = r;
  n->depth = 1 + max_int(depth_of(l), depth_of(r));
  return n;
}

Ast *ast_unop(Arena *a, int op, Ast *e, Loc loc) {
  Ast *n = ast_new(a, AST_UNOP, loc);
  n->op = op;
  n->lhs = e;
  n->depth = 1 + depth_of(e);
  return n;
}

Ast *ast_range(Arena *a, int inclusive, Ast *l, Ast *r, Loc loc) {
  Ast *n = ast_binop(a, 0, l, r, loc);
  n->kind = AST_RANGE;
  n->ival = inclusive != 0;
  return n;
}

Ast *ast_member(Arena *a, Ast *e, const char *name, Loc loc) {
  Ast *n = ast_unop(a, 0, e, loc);
  n->kind = AST_MEMBER;
  n->str = name;
  return n;
}

Ast *ast_postfix(Arena *a, AstKind kind, Ast *e, AstList args, Loc loc) {
  Ast *n = ast_new(a, kind, loc);
  n->lhs = e;
  n->args = args;
  n->depth = 1 + max_int(depth_of(e), list_depth(&args));
  return n;
}

Ast *ast_comp(Arena *a, Ast *elem, const char *var, Ast *iter, Loc loc) {
  Ast *n = ast_new(a, AST_COMP, loc);
  n->lhs = elem;
  n->str = var;
  n->rhs = iter;
  n->depth = 1 + max_int(depth_of(elem), depth_of(iter));
  return n;
}

Ast *ast_list(Arena *a, AstList items, Loc loc) {
  return ast_postfix(a, AST_LIST, NULL, items, loc);
}

Ast *ast_kwarg(Arena *a, const char *name, Ast *value, Loc loc) {
  Ast *n = ast_unop(a, 0, value, loc);
  n->kind = AST_KWARG;
  n->str = name;
  return n;
}

Ast *ast_block(Arena *a, int flags, Ast *name, Ast *shape, Ast *rhs, Loc loc) {
  Ast *n = ast_new(a, AST_BLOCK, loc);
  n->flags = flags;
  n->lhs = name;
  n->shape = shape;
  n->rhs = rhs;
  return n;
}

Ast *ast_mark_output(Arena *a, AstList names, Loc loc) {
  Ast *n = ast_new(a, AST_MARK_OUTPUT, loc);
  n->args = names;
  return n;
}

Ast *ast_param(Arena *a, Ast *name, Ast *shape, Ast *rhs, Loc loc) {
  Ast *n = ast_new(a, AST_PARAM, loc);
  n->lhs = name;
  n->shape = shape;
  n->rhs = rhs;
  return n;
}

Ast *ast_named(Arena *a, AstKind kind, const char *name, Ast *rhs, Loc loc) {
  Ast *n = ast_new(a, kind, loc);
  n->str = name;
  n->rhs = rhs;
  return n;
}

Ast *ast_for(Arena *a, const char *var, Ast *range, AstList body, Loc loc) {
  Ast *n = ast_named(a, AST_FOR, var, range, loc);
  n->body = body;
  return n;
}

Ast *ast_if(Arena *a, Ast *cond, AstList body, AstList els, Loc loc) {
  Ast *n = ast_new(a, AST_IF, loc);
  n->cond = cond;
  n->body = body;
  n->els = els;
  return n;
}

Ast *ast_machine(Arena *a, const char *name, AstList params, AstList body,
                 Ast *rhs, Loc loc) {
  Ast *n = ast_named(a, AST_MACHINE, name, rhs, loc);
  n->params = params;
  n->body = body;
  return n;
}
