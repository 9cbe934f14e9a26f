/* parse.c — glue around the generated parser: the token wrapper Bison
 * calls, the wording of syntax errors, the expression depth bound,
 * parse_file() and lex_dump().
 *
 * Error policy: everything goes to the Diag sink; nothing exits. Once the
 * sink has stopped printing (max_errors) the wrapper feeds end of file, so a
 * file of binary garbage costs no more than its first screenful of errors. */
#include "machc.h"
#include "parser.h"

#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------- locations */

/* YYLLOC_DEFAULT: rhs[1..n] are the rule's symbols, rhs[0] the symbol
 * before them (an empty rule is placed right after it). */
Loc parse_loc_rule(const Loc *rhs, int n) {
  if (n > 0)
    return loc_span(rhs[1], rhs[n]);
  return (Loc){rhs[0].file, rhs[0].off + rhs[0].len, 0};
}

/* ------------------------------------------------------ tree building */

static Ast *deepest_child(Ast *n) {
  Ast *best = n->lhs;
  if (n->rhs && (!best || n->rhs->depth > best->depth))
    best = n->rhs;
  for (int i = 0; i < n->args.len; i++)
    if (n->args.items[i] && (!best || n->args.items[i]->depth > best->depth))
      best = n->args.items[i];
  return best ? best : n;
}

/* Keeps every expression at most PARSE_MAX_DEPTH deep, so later phases may
 * recurse freely. A node that would go deeper is dropped in favour of its
 * deepest child: the tree stays bounded (and wrong, but the error is
 * reported, once per file, so no later phase runs on it). */
Ast *parse_expr(ParseCtx *ctx, Ast *node) {
  if (node->depth <= PARSE_MAX_DEPTH)
    return node;
  if (!ctx->depth_reported)
    diag_error(ctx->d, node->loc, "expression nested too deeply (limit %d)",
               PARSE_MAX_DEPTH);
  ctx->depth_reported = true;
  return deepest_child(node);
}

void parse_add_item(ParseCtx *ctx, Ast *item) {
  ctx->out->items = ast_append(ctx->a, ctx->out->items, item);
}

/* -------------------------------------------------------- token kinds */

static bool is_opener(int k) { return k == '(' || k == '[' || k == '{'; }
static bool is_closer(int k) { return k == ')' || k == ']' || k == '}'; }

static int opener_of(int closer) {
  return closer == ')' ? '(' : closer == ']' ? '[' : '{';
}

static int closer_of(int opener) {
  return opener == '(' ? ')' : opener == '[' ? ']' : '}';
}

/* Keywords that start a statement or an item: the context of an error. */
static bool is_stmt_kw(int k) {
  switch (k) {
  case T_MACHINE: case T_IMPORT: case T_INPUT: case T_OUTPUT: case T_BLOCK:
  case T_PARAM: case T_LET: case T_SET: case T_FOR: case T_IF: case T_USE:
    return true;
  default:
    return false;
  }
}

/* Tokens that can start an expression. */
static bool is_expr_start(int k) {
  switch (k) {
  case T_IDENT: case T_INT: case T_FLOAT: case T_STRING: case T_TRUE:
  case T_FALSE: case T_NOT: case T_INPUT: case '(': case '[': case '-':
    return true;
  default:
    return false;
  }
}

/* Tokens that continue an expression (binary and postfix operators). */
static bool is_operator(int k) {
  switch (k) {
  case '+': case '-': case '*': case '/': case '%': case '@': case '<':
  case '>': case '|': case '.': case '(': case '[': case T_DOTDOT:
  case T_DOTDOTEQ: case T_EQ: case T_NE: case T_LE: case T_GE: case T_SHR:
  case T_AND: case T_OR:
    return true;
  default:
    return false;
  }
}

/* --------------------------------------------------- the token wrapper */

static bool sink_full(const ParseCtx *ctx) {
  int max = ctx->d->max_errors ? ctx->d->max_errors : 20;
  return ctx->d->nerrors >= max;
}

static Token end_token(const ParseCtx *ctx) {
  int len = (int)(ctx->lx.lim - ctx->lx.text);
  return (Token){.kind = T_END, .loc = {ctx->file, len, 1}};
}

/* Stops the parse: Bison gets end of file and its complaint is muted. */
static Token stop(ParseCtx *ctx) {
  ctx->stopped = true;
  return end_token(ctx);
}

static void report_invalid(ParseCtx *ctx, const Token *t) {
  const char *bytes = ctx->lx.text + t->loc.off;
  diag_error(ctx->d, t->loc, "invalid character '%s'",
             lex_escape(ctx->a, bytes, t->loc.len));
}

/* The next token, with invalid bytes reported and skipped so the parse
 * goes on as if they were not there. */
static Token next_valid(ParseCtx *ctx) {
  Token t;
  for (;;) {
    if (ctx->stopped || sink_full(ctx))
      return stop(ctx);
    lex_next(&ctx->lx, &t);
    if (t.kind != T_INVALID)
      return t;
    report_invalid(ctx, &t);
  }
}

/* A closer pops its opener. A closer that matches a deeper opener closes
 * everything above it (so one missing ')' does not derail later messages);
 * one that matches nothing is stray. Either is remembered for the message
 * Bison is about to ask for. */
static void close_bracket(ParseCtx *ctx, int kind) {
  int i = ctx->nbrk - 1;
  while (i >= 0 && ctx->brk_kind[i] != opener_of(kind))
    i--;
  if (i < 0) {
    ctx->closer_state = PARSE_CLOSER_STRAY;
    return;
  }
  ctx->closer_state =
      i == ctx->nbrk - 1 ? PARSE_CLOSER_OK : PARSE_CLOSER_MISMATCH;
  ctx->closer_opener = ctx->brk_kind[ctx->nbrk - 1];
  ctx->closer_opener_loc = ctx->brk_loc[ctx->nbrk - 1];
  ctx->nbrk = i;
}

/* Returns false when the bracket nesting limit is passed. */
static bool track_bracket(ParseCtx *ctx, const Token *t) {
  if (is_closer(t->kind))
    close_bracket(ctx, t->kind);
  if (!is_opener(t->kind))
    return true;
  if (ctx->nbrk == PARSE_MAX_BRACKETS) {
    diag_error(ctx->d, t->loc, "nesting too deep: more than %d open brackets",
               PARSE_MAX_BRACKETS);
    return false;
  }
  ctx->brk_kind[ctx->nbrk] = t->kind;
  ctx->brk_loc[ctx->nbrk++] = t->loc;
  return true;
}

static void set_value(PARSE_YYSTYPE *val, const Token *t) {
  switch (t->kind) {
  case T_INT: val->ival = t->ival; break;
  case T_FLOAT: val->fval = t->fval; break;
  case T_IDENT: case T_STRING: val->str = t->str; break;
  default: break;
  }
}

int parse_yylex(PARSE_YYSTYPE *val, Loc *loc, ParseCtx *ctx) {
  Token t = next_valid(ctx);
  if (!track_bracket(ctx, &t))
    t = stop(ctx);
  ctx->prev_kind = ctx->tok_kind;
  ctx->tok_kind = t.kind;
  ctx->tok_loc = t.loc;
  ctx->ctx_kw = ctx->last_kw;
  if (is_stmt_kw(t.kind))
    ctx->last_kw = t.kind;
  set_value(val, &t);
  *loc = t.loc;
  return t.kind;
}

/* Bison calls this only when its stack is full (YYMAXDEPTH). */
void parse_yyerror(Loc *loc, ParseCtx *ctx, const char *msg) {
  if (ctx->stopped)
    return;
  if (strcmp(msg, "memory exhausted") == 0)
    diag_error(ctx->d, *loc, "nesting too deep (parser stack exhausted)");
  else
    diag_error(ctx->d, *loc, "%s", msg);
}

/* ----------------------------------------------------- syntax errors */

/* The lookahead as the user wrote it: "identifier 'x'", "'}'". */
static const char *describe_token(ParseCtx *ctx) {
  int k = ctx->tok_kind;
  const char *name = parse_token_name(k);
  if (k != T_IDENT && k != T_INT && k != T_FLOAT)
    return name;
  int len = ctx->tok_loc.len > 40 ? 40 : ctx->tok_loc.len;
  const char *text = lex_escape(ctx->a, ctx->lx.text + ctx->tok_loc.off, len);
  return arena_printf(ctx->a, "%s '%s%s'", name, text,
                      len < ctx->tok_loc.len ? "..." : "");
}

static void unclosed(ParseCtx *ctx, Loc loc) {
  int open = ctx->brk_kind[ctx->nbrk - 1];
  ctx->unclosed_reported = true;
  diag_error(ctx->d, loc, "unclosed '%c'", open);
  diag_note(ctx->d, ctx->brk_loc[ctx->nbrk - 1], "'%c' opened here", open);
}

static void bad_closer(ParseCtx *ctx, Loc loc) {
  int k = ctx->tok_kind;
  if (ctx->closer_state == PARSE_CLOSER_STRAY) {
    diag_error(ctx->d, loc, "stray '%c' without matching '%c'", k, opener_of(k));
    return;
  }
  int open = ctx->closer_opener;
  diag_error(ctx->d, loc, "expected '%c' to close '%c', found '%c'",
             closer_of(open), open, k);
  diag_note(ctx->d, ctx->closer_opener_loc, "'%c' opened here", open);
}

/* "after block name": what the single expected token follows, judged by
 * the token just before the error or else the statement keyword before it. */
static const char *phrase_for(int want, int kw, int prev) {
  if (want == T_IDENT && prev == '.')
    return "after '.'";
  static const struct {
    int want, kw;
    const char *phrase;
  } table[] = {
      {':', T_BLOCK, "after block name"},  {':', T_INPUT, "after block name"},
      {':', T_OUTPUT, "after block name"}, {':', T_PARAM, "after parameter name"},
      {'=', T_BLOCK, "after block shape"}, {'=', T_OUTPUT, "after block shape"},
      {'=', T_LET, "after variable name"}, {'=', T_SET, "after setting name"},
      {T_IDENT, T_LET, "after 'let'"},     {T_IDENT, T_SET, "after 'set'"},
      {T_IDENT, T_PARAM, "after 'param'"}, {T_IDENT, T_FOR, "after 'for'"},
      {T_IDENT, T_MACHINE, "after 'machine'"},
      {T_IN, T_FOR, "after loop variable"},
      {T_STRING, T_IMPORT, "after 'import'"},
      {'{', T_FOR, "to open the loop body"},
      {'{', T_IF, "to open the 'if' body"},
  };
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].want == want && table[i].kw == kw)
      return table[i].phrase;
  return NULL;
}

enum { MAX_ALTS = 6 };

typedef struct Alts {
  const char *name[MAX_ALTS];
  int n, single; /* single: the token kind when n == 1 and it is a token */
  bool overflow;
} Alts;

static void add_alt(Alts *al, const char *name, int kind) {
  if (al->n == MAX_ALTS) {
    al->overflow = true;
    return;
  }
  al->single = al->n == 0 ? kind : -1;
  al->name[al->n++] = name;
}

static bool contains(const int *v, int n, int k) {
  for (int i = 0; i < n; i++)
    if (v[i] == k)
      return true;
  return false;
}

/* Collapses the expected set into what a person would say: the tokens that
 * start an expression become "expression", statement keywords "statement";
 * ';' and, after an operand, the operators are possible almost everywhere
 * and only hide what was really missing. */
static Alts summarize(const int *exp, int n) {
  Alts al = {.single = -1};
  bool expr = contains(exp, n, T_INT), stmt = contains(exp, n, T_BLOCK);
  /* '.' is acceptable exactly after a complete operand; elsewhere '(' and
   * '[' are structure (machine parameters, lists), not operators. */
  bool after_operand = contains(exp, n, '.');
  if (expr)
    add_alt(&al, "expression", -1);
  if (stmt)
    add_alt(&al, "statement", -1);
  for (int i = 0; i < n; i++) {
    int k = exp[i];
    if ((expr && is_expr_start(k)) || (stmt && is_stmt_kw(k)) || k == ';' ||
        k == T_END || (after_operand && is_operator(k)))
      continue;
    add_alt(&al, parse_token_name(k), k);
  }
  if (contains(exp, n, T_END))
    add_alt(&al, parse_token_name(T_END), T_END);
  return al;
}

/* "A", "A or B", "A, B or C". */
static const char *join_alts(Arena *a, const Alts *al) {
  const char *s = al->name[0];
  for (int i = 1; i < al->n; i++)
    s = arena_printf(a, "%s%s%s", s, i == al->n - 1 ? " or " : ", ",
                     al->name[i]);
  return s;
}

static void generic_error(ParseCtx *ctx, Loc loc, const int *exp, int n) {
  Alts al = summarize(exp, n);
  const char *found = describe_token(ctx);
  if (al.n == 0 || al.overflow) {
    diag_error(ctx->d, loc, "unexpected %s", found);
    return;
  }
  const char *phrase = al.n == 1 ? phrase_for(al.single, ctx->ctx_kw, ctx->prev_kind) : NULL;
  diag_error(ctx->d, loc, "expected %s%s%s, found %s", join_alts(ctx->a, &al),
             phrase ? " " : "", phrase ? phrase : "", found);
}

/* Called by yyreport_syntax_error with the lookahead's location and the
 * tokens that would have been accepted. */
void parse_syntax_error(ParseCtx *ctx, Loc loc, const int *expected, int n) {
  if (ctx->stopped)
    return;
  if (sink_full(ctx)) /* not printed anyway: just count it */
    diag_error(ctx->d, loc, "syntax error");
  else if (ctx->tok_kind == T_END && ctx->lx.eof_in_comment)
    return; /* already said: the comment swallowed the rest */
  else if (ctx->tok_kind == T_END && ctx->nbrk > 0)
    unclosed(ctx, loc);
  else if (is_closer(ctx->tok_kind) && ctx->closer_state != PARSE_CLOSER_OK)
    bad_closer(ctx, loc);
  else
    generic_error(ctx, loc, expected, n);
}

/* ------------------------------------------------------------- entry */

/* Bison stays silent when end of file arrives while it is still skipping
 * tokens after an error; an open bracket is then worth a message of its own. */
static void report_unclosed_at_end(ParseCtx *ctx) {
  if (ctx->tok_kind == T_END && ctx->nbrk > 0 && !ctx->stopped &&
      !ctx->unclosed_reported && !ctx->lx.eof_in_comment)
    unclosed(ctx, ctx->tok_loc);
}

AstFile *parse_file(Arena *a, Diag *d, int file) {
  AstFile *out = arena_alloc(a, sizeof *out);
  out->file = file;
  if (file < 0 || file >= d->nfiles) {
    diag_error(d, LOC_NONE, "parse_file: no source file %d", file);
    return out;
  }
  ParseCtx *ctx = arena_alloc(a, sizeof *ctx);
  *ctx = (ParseCtx){.a = a, .d = d, .file = file, .out = out};
  lex_init(&ctx->lx, a, d, file);
  int before = d->nerrors;
  if (parse_yyparse(ctx) != 0 && d->nerrors == before)
    diag_error(d, ctx->tok_loc, "syntax error"); /* never silently fail */
  report_unclosed_at_end(ctx);
  return out;
}

/* "KW", "PUNCT", ...: the token classes lex_dump prints. */
static const char *token_class(int k) {
  switch (k) {
  case T_IDENT: return "IDENT";
  case T_INT: return "INT";
  case T_FLOAT: return "FLOAT";
  case T_STRING: return "STRING";
  case T_INVALID: return "ERROR";
  case T_END: return "EOF";
  case T_AND: case T_OR: case T_NOT: case T_TRUE: case T_FALSE: case T_IN:
  case T_ELSE:
    return "KW";
  default:
    return is_stmt_kw(k) ? "KW" : "PUNCT";
  }
}

char *lex_dump(Arena *a, Diag *d, int file) {
  if (file < 0 || file >= d->nfiles)
    return arena_strdup(a, "");
  Lexer lx;
  Token t;
  StrBuf sb = {0};
  lex_init(&lx, a, d, file);
  do {
    lex_next(&lx, &t);
    const char *text = lx.text + t.loc.off;
    sb_puts(&sb, token_class(t.kind));
    if (t.kind == T_INVALID)
      sb_printf(&sb, " %s", lex_escape(a, text, t.loc.len));
    else if (t.kind != T_END)
      sb_printf(&sb, " %.*s", t.loc.len, text);
    sb_puts(&sb, "\n");
  } while (t.kind != T_END);
  char *out = arena_strndup(a, sb.data, sb.len);
  sb_free(&sb);
  return out;
}
