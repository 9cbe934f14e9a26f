/* parser.y — the grammar of .mach files (Bison 3.8, pure, LALR(1) + LAC).
 *
 * Every action is one call to a constructor from ast.c, wrapped in
 * parse_expr() for expressions so that their depth stays bounded. All the
 * other logic lives in compiler/parse.c: the token wrapper (invalid bytes,
 * bracket tracking), syntax-error wording and parse_file(). */

%require "3.8"
%define api.pure full
%define api.prefix {parse_yy}
%define api.token.prefix {T_}
%define api.location.type {Loc}
%locations
%parse-param {ParseCtx *ctx}
%lex-param {ParseCtx *ctx}
/* Custom messages ("expected ':' after block name, found '='") are built in
 * parse.c from the expected-token list; LAC makes that list exact even when
 * the error shows up after default reductions. */
%define parse.error custom
%define parse.lac full

/* The expression grammar is ambiguous; every conflict is resolved by the
 * precedence declarations below, so any reported conflict is a new bug. */
%expect 0

%code requires {
#include "machc.h"

/* Brackets the parser may have open at once; one more is an error, which
 * also bounds Bison's stack for inputs like 10^6 '(' (see parse_yylex). */
enum { PARSE_MAX_BRACKETS = PARSE_MAX_DEPTH };

/* State shared by the generated parser and the glue in parse.c. */
typedef struct ParseCtx {
  Arena *a;
  Diag *d;
  int file;
  Lexer lx;
  AstFile *out;
  /* Open brackets in the token stream (not the parser's view, so it stays
   * right during error recovery): kind and location of each opener. */
  int nbrk;
  int brk_kind[PARSE_MAX_BRACKETS];
  Loc brk_loc[PARSE_MAX_BRACKETS];
  /* The last token handed to Bison: always the lookahead at an error. */
  int tok_kind, prev_kind;   /* ... and the token before it */
  Loc tok_loc;
  int closer_state;         /* PARSE_CLOSER_*, for a ')' ']' '}' token */
  int closer_opener;        /* the innermost open bracket it did not match */
  Loc closer_opener_loc;
  int last_kw, ctx_kw;      /* statement keyword seen last / before tok */
  bool depth_reported;      /* "nested too deeply" is said once per file */
  bool unclosed_reported;   /* "unclosed '{'" likewise */
  bool stopped;             /* gave up: feed end of file, report nothing */
} ParseCtx;

enum { PARSE_CLOSER_OK, PARSE_CLOSER_STRAY, PARSE_CLOSER_MISMATCH };
}

%code provides {
int parse_yylex(PARSE_YYSTYPE *val, Loc *loc, ParseCtx *ctx);
void parse_yyerror(Loc *loc, ParseCtx *ctx, const char *msg);
const char *parse_token_name(int kind);
void parse_syntax_error(ParseCtx *ctx, Loc loc, const int *expected, int n);
Loc parse_loc_rule(const Loc *rhs, int n);
Ast *parse_expr(ParseCtx *ctx, Ast *node);
void parse_add_item(ParseCtx *ctx, Ast *item);
}

%code {
/* Loc has no line/column fields: a rule covers its first to last symbol,
 * an empty rule sits just after the previous symbol. */
#define YYLLOC_DEFAULT(Cur, Rhs, N) ((Cur) = parse_loc_rule((Rhs), (N)))
/* Bison's stack lives on the heap and grows to this many states; deeper
 * input (e.g. 10^5 unary minus) ends in parse_yyerror ("nesting too deep"). */
#define YYMAXDEPTH 10000
/* Shorthand for the arena in actions, to keep each action on one line. */
#define A (ctx->a)
}

%initial-action { @$ = (Loc){ctx->file, 0, 0}; }

%union {
  Ast *node;
  AstList list;
  const char *str;
  int64_t ival;
  double fval;
}

%token END 0 "end of file"
%token <str> IDENT "identifier"
%token <ival> INT "integer"
%token <fval> FLOAT "float"
%token <str> STRING "string"
%token INVALID "invalid character"
%token MACHINE "'machine'" INPUT "'input'" OUTPUT "'output'" BLOCK "'block'"
%token PARAM "'param'" LET "'let'" FOR "'for'" IN "'in'" IF "'if'"
%token ELSE "'else'" USE "'use'" IMPORT "'import'" SET "'set'"
%token AND "'and'" OR "'or'" NOT "'not'" TRUE "'true'" FALSE "'false'"
%token DOTDOT "'..'" DOTDOTEQ "'..='" EQ "'=='" NE "'!='" LE "'<='"
%token GE "'>='" SHR "'>>'"

/* Lowest to highest. */
%left '|'
%left SHR
%left OR
%left AND
%precedence NOT
%nonassoc EQ NE '<' LE '>' GE
%left '@'
%nonassoc DOTDOT DOTDOTEQ
%left '+' '-'
%left '*' '/' '%'
%precedence UMINUS

%type <node> item stmt if_stmt param call_arg expr postfix primary
%type <list> opt_params params param_list body stmts names
%type <list> call_args call_list expr_args expr_list

%%

file: items ;

items: %empty
     | items item   { parse_add_item(ctx, $2); }
     | items ';'
     ;

/* After an error, skip to the next 'machine' or 'import'. */
item: IMPORT STRING                        { $$ = ast_str(A, AST_IMPORT, $2, @$); }
    | MACHINE IDENT opt_params body        { $$ = ast_machine(A, $2, $3, $4, NULL, @$); }
    | MACHINE IDENT opt_params '=' expr    { $$ = ast_machine(A, $2, $3, (AstList){0}, $5, @$); }
    | error                                { $$ = NULL; }
    ;

opt_params: %empty                  { $$ = (AstList){0}; }
          | '(' params ')'          { $$ = $2; }
          ;

params: %empty                      { $$ = (AstList){0}; }
      | param_list opt_comma        { $$ = $1; }
      ;

param_list: param                   { $$ = ast_list1(A, $1); }
          | param_list ',' param    { $$ = ast_append(A, $1, $3); }
          ;

param: IDENT                        { $$ = ast_str(A, AST_NAME, $1, @$); }
     | IDENT '=' expr               { $$ = ast_kwarg(A, $1, $3, @$); }
     ;

opt_comma: %empty | ',' ;

body: '{' stmts '}'                 { $$ = $2; }
    ;

stmts: %empty                       { $$ = (AstList){0}; }
     | stmts stmt                   { $$ = ast_append(A, $1, $2); }
     | stmts ';'                    { $$ = $1; }
     ;

/* After an error, skip to the next statement keyword or '}'. */
stmt: INPUT postfix ':' expr                 { $$ = ast_block(A, BLOCK_INPUT, $2, $4, NULL, @$); }
    | BLOCK postfix ':' expr '=' expr        { $$ = ast_block(A, 0, $2, $4, $6, @$); }
    | OUTPUT postfix ':' expr '=' expr       { $$ = ast_block(A, BLOCK_OUTPUT, $2, $4, $6, @$); }
    | OUTPUT names                           { $$ = ast_mark_output(A, $2, @$); }
    | PARAM postfix ':' expr                 { $$ = ast_param(A, $2, $4, NULL, @$); }
    | PARAM postfix ':' expr '=' expr        { $$ = ast_param(A, $2, $4, $6, @$); }
    | LET IDENT '=' expr                     { $$ = ast_named(A, AST_LET, $2, $4, @$); }
    | SET IDENT '=' expr                     { $$ = ast_named(A, AST_SET, $2, $4, @$); }
    | FOR IDENT IN expr body                 { $$ = ast_for(A, $2, $4, $5, @$); }
    | if_stmt
    | USE expr                               { $$ = ast_named(A, AST_USE, NULL, $2, @$); }
    | USE IDENT '=' expr                     { $$ = ast_named(A, AST_USE, $2, $4, @$); }
    | error                                  { $$ = NULL; }
    ;

if_stmt: IF expr body                        { $$ = ast_if(A, $2, $3, (AstList){0}, @$); }
       | IF expr body ELSE body              { $$ = ast_if(A, $2, $3, $5, @$); }
       | IF expr body ELSE if_stmt           { $$ = ast_if(A, $2, $3, ast_list1(A, $5), @$); }
       ;

/* Block names: postfix expressions such as x, m.x, x[i]. */
names: postfix                               { $$ = ast_list1(A, $1); }
     | names ',' postfix                     { $$ = ast_append(A, $1, $3); }
     ;

expr: expr '|' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_PAR, $1, $3, @2)); }
    | expr SHR expr               { $$ = parse_expr(ctx, ast_binop(A, OP_SEQ, $1, $3, @2)); }
    | expr OR expr                { $$ = parse_expr(ctx, ast_binop(A, OP_OR, $1, $3, @2)); }
    | expr AND expr               { $$ = parse_expr(ctx, ast_binop(A, OP_AND, $1, $3, @2)); }
    | NOT expr                    { $$ = parse_expr(ctx, ast_unop(A, OP_NOT, $2, @$)); }
    | expr EQ expr                { $$ = parse_expr(ctx, ast_binop(A, OP_EQ, $1, $3, @2)); }
    | expr NE expr                { $$ = parse_expr(ctx, ast_binop(A, OP_NE, $1, $3, @2)); }
    | expr '<' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_LT, $1, $3, @2)); }
    | expr LE expr                { $$ = parse_expr(ctx, ast_binop(A, OP_LE, $1, $3, @2)); }
    | expr '>' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_GT, $1, $3, @2)); }
    | expr GE expr                { $$ = parse_expr(ctx, ast_binop(A, OP_GE, $1, $3, @2)); }
    | expr '@' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_AT, $1, $3, @2)); }
    | expr DOTDOT expr            { $$ = parse_expr(ctx, ast_range(A, 0, $1, $3, @$)); }
    | expr DOTDOTEQ expr          { $$ = parse_expr(ctx, ast_range(A, 1, $1, $3, @$)); }
    | expr '+' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_ADD, $1, $3, @2)); }
    | expr '-' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_SUB, $1, $3, @2)); }
    | expr '*' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_MUL, $1, $3, @2)); }
    | expr '/' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_DIV, $1, $3, @2)); }
    | expr '%' expr               { $$ = parse_expr(ctx, ast_binop(A, OP_MOD, $1, $3, @2)); }
    | '-' expr %prec UMINUS       { $$ = parse_expr(ctx, ast_unop(A, '-', $2, @$)); }
    | postfix
    ;

/* Postfix operators bind tightest; a separate level needs no precedence. */
postfix: primary
       | postfix '(' call_args ')'   { $$ = parse_expr(ctx, ast_postfix(A, AST_CALL, $1, $3, @$)); }
       | postfix '[' expr_args ']'   { $$ = parse_expr(ctx, ast_postfix(A, AST_INDEX, $1, $3, @$)); }
       | postfix '.' IDENT           { $$ = parse_expr(ctx, ast_member(A, $1, $3, @$)); }
       ;

/* 'input' is a keyword that also names the machine's input in expressions,
 * e.g. `block x : 4 = act(input)`; no statement starts with an expression,
 * so this adds no conflict. A parenthesised expression is its inner node. */
primary: INT                         { $$ = ast_int(A, $1, @$); }
       | FLOAT                       { $$ = ast_float(A, $1, @$); }
       | STRING                      { $$ = ast_str(A, AST_STRING, $1, @$); }
       | TRUE                        { $$ = ast_bool(A, 1, @$); }
       | FALSE                       { $$ = ast_bool(A, 0, @$); }
       | IDENT                       { $$ = ast_str(A, AST_NAME, $1, @$); }
       | INPUT                       { $$ = ast_str(A, AST_NAME, "input", @$); }
       | '(' expr ')'                { $$ = $2; }
       | '[' expr_args ']'           { $$ = parse_expr(ctx, ast_list(A, $2, @$)); }
       | '[' expr FOR IDENT IN expr ']'  { $$ = parse_expr(ctx, ast_comp(A, $2, $4, $6, @$)); }
       ;

/* Call arguments may be keyword arguments; index and list items may not. */
call_args: %empty                    { $$ = (AstList){0}; }
         | call_list opt_comma       { $$ = $1; }
         ;

call_list: call_arg                  { $$ = ast_list1(A, $1); }
         | call_list ',' call_arg    { $$ = ast_append(A, $1, $3); }
         ;

call_arg: expr
        | IDENT '=' expr             { $$ = ast_kwarg(A, $1, $3, @$); }
        ;

expr_args: %empty                    { $$ = (AstList){0}; }
         | expr_list opt_comma       { $$ = $1; }
         ;

expr_list: expr                      { $$ = ast_list1(A, $1); }
         | expr_list ',' expr        { $$ = ast_append(A, $1, $3); }
         ;

%%

const char *parse_token_name(int kind) {
  return yysymbol_name(YYTRANSLATE(kind));
}

/* Bison reports symbol kinds; parse.c words messages with token kinds. */
static int token_of_symbol(yysymbol_kind_t sym) {
  for (int t = 0; t <= YYMAXUTOK; t++)
    if (YYTRANSLATE(t) == sym)
      return t;
  return T_PARSE_YYUNDEF;
}

static int yyreport_syntax_error(const yypcontext_t *yc, ParseCtx *ctx) {
  yysymbol_kind_t syms[YYNTOKENS];
  int expected[YYNTOKENS];
  int n = yypcontext_expected_tokens(yc, syms, YYNTOKENS);
  for (int i = 0; i < n; i++)
    expected[i] = token_of_symbol(syms[i]);
  parse_syntax_error(ctx, *yypcontext_location(yc), expected, n < 0 ? 0 : n);
  return 0;
}
