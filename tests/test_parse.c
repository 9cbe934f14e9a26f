/* test_parse.c — the front end: tokens (suite lexer), tree shapes, error
 * messages with their line:col, and hostile inputs (suite parser).
 *
 * Trees are compared as S-expressions printed by sx() below, so a test reads
 * like the shape it expects: `a + b * c` is "(+ a (* b c))". */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "machc.h"

/* ------------------------------------------------------------ helpers */

typedef struct Run {
  Arena *a;
  Diag d;
  AstFile *file;
  char *errs; /* everything printed to the sink */
  char *tokens;
  char *tree;
} Run;

static void sx(StrBuf *sb, const Ast *n);

static void sx_list(StrBuf *sb, const AstList *l) {
  for (int i = 0; i < l->len; i++) {
    sb_puts(sb, " ");
    sx(sb, l->items[i]);
  }
}

static void sx_body(StrBuf *sb, const AstList *l) {
  sb_puts(sb, " (");
  for (int i = 0; i < l->len; i++) {
    if (i)
      sb_puts(sb, " ");
    sx(sb, l->items[i]);
  }
  sb_puts(sb, ")");
}

static const char *op_name(int op) {
  switch (op) {
  case OP_ADD: return "+";
  case OP_SUB: return "-";
  case OP_MUL: return "*";
  case OP_DIV: return "/";
  case OP_MOD: return "%";
  case OP_AT: return "@";
  case OP_SEQ: return ">>";
  case OP_PAR: return "|";
  case OP_EQ: return "==";
  case OP_NE: return "!=";
  case OP_LT: return "<";
  case OP_LE: return "<=";
  case OP_GT: return ">";
  case OP_GE: return ">=";
  case OP_AND: return "and";
  case OP_OR: return "or";
  case OP_NOT: return "not";
  default: return "?";
  }
}

static void sx_stmt(StrBuf *sb, const Ast *n) {
  switch (n->kind) {
  case AST_BLOCK: {
    const char *k = n->flags == BLOCK_INPUT ? "input"
                    : n->flags == BLOCK_OUTPUT ? "output" : "block";
    sb_printf(sb, "(%s ", k);
    sx(sb, n->lhs);
    sb_puts(sb, " ");
    sx(sb, n->shape);
    if (n->rhs) {
      sb_puts(sb, " ");
      sx(sb, n->rhs);
    }
    sb_puts(sb, ")");
    break;
  }
  case AST_MARK_OUTPUT:
    sb_puts(sb, "(mark-output");
    sx_list(sb, &n->args);
    sb_puts(sb, ")");
    break;
  case AST_PARAM:
    sb_puts(sb, "(param ");
    sx(sb, n->lhs);
    sb_puts(sb, " ");
    sx(sb, n->shape);
    if (n->rhs) {
      sb_puts(sb, " ");
      sx(sb, n->rhs);
    }
    sb_puts(sb, ")");
    break;
  case AST_LET: case AST_SET: case AST_USE:
    sb_printf(sb, "(%s %s ",
              n->kind == AST_LET ? "let" : n->kind == AST_SET ? "set" : "use",
              n->str ? n->str : "_");
    sx(sb, n->rhs);
    sb_puts(sb, ")");
    break;
  case AST_FOR:
    sb_printf(sb, "(for %s ", n->str);
    sx(sb, n->rhs);
    sx_body(sb, &n->body);
    sb_puts(sb, ")");
    break;
  case AST_IF:
    sb_puts(sb, "(if ");
    sx(sb, n->cond);
    sx_body(sb, &n->body);
    sx_body(sb, &n->els);
    sb_puts(sb, ")");
    break;
  case AST_MACHINE:
    sb_printf(sb, "(machine %s", n->str);
    sx_body(sb, &n->params);
    if (n->rhs) {
      sb_puts(sb, " = ");
      sx(sb, n->rhs);
    } else {
      sx_body(sb, &n->body);
    }
    sb_puts(sb, ")");
    break;
  case AST_IMPORT:
    sb_printf(sb, "(import \"%s\")", n->str);
    break;
  default:
    sb_printf(sb, "?%d", (int)n->kind);
  }
}

static void sx(StrBuf *sb, const Ast *n) {
  if (!n) {
    sb_puts(sb, "NULL");
    return;
  }
  switch (n->kind) {
  case AST_INT: sb_printf(sb, "%lld", (long long)n->ival); break;
  case AST_FLOAT: sb_printf(sb, "%g", n->fval); break;
  case AST_STRING: sb_printf(sb, "\"%s\"", n->str); break;
  case AST_BOOL: sb_puts(sb, n->ival ? "true" : "false"); break;
  case AST_NAME: sb_puts(sb, n->str); break;
  case AST_MEMBER:
    sb_puts(sb, "(. ");
    sx(sb, n->lhs);
    sb_printf(sb, " %s)", n->str);
    break;
  case AST_INDEX: case AST_CALL:
    sb_puts(sb, n->kind == AST_INDEX ? "(index " : "(call ");
    sx(sb, n->lhs);
    sx_list(sb, &n->args);
    sb_puts(sb, ")");
    break;
  case AST_KWARG:
    sb_printf(sb, "(kw %s ", n->str);
    sx(sb, n->lhs);
    sb_puts(sb, ")");
    break;
  case AST_LIST:
    sb_puts(sb, "(list");
    sx_list(sb, &n->args);
    sb_puts(sb, ")");
    break;
  case AST_RANGE: case AST_BINOP:
    sb_printf(sb, "(%s ", n->kind == AST_RANGE ? (n->ival ? "..=" : "..")
                                              : op_name(n->op));
    sx(sb, n->lhs);
    sb_puts(sb, " ");
    sx(sb, n->rhs);
    sb_puts(sb, ")");
    break;
  case AST_UNOP:
    sb_printf(sb, "(%s ", n->op == '-' ? "neg" : op_name(n->op));
    sx(sb, n->lhs);
    sb_puts(sb, ")");
    break;
  default:
    sx_stmt(sb, n);
  }
}

/* Parses (or token-dumps) len bytes of src under the name "t.mach". */
static Run run_n(const char *src, size_t len, bool dump) {
  Run r = {0};
  char *buf = NULL;
  size_t size = 0;
  FILE *out = open_memstream(&buf, &size);
  cr_assert(out);
  diag_init(&r.d, out);
  r.a = arena_new();
  int id = diag_add_source(&r.d, "t.mach", src, (int)len);
  if (dump) {
    r.tokens = lex_dump(r.a, &r.d, id);
  } else {
    r.file = parse_file(r.a, &r.d, id);
    StrBuf sb = {0};
    sb_puts(&sb, "");
    sx_body(&sb, &r.file->items);
    r.tree = arena_strdup(r.a, sb.data + 1); /* drop the leading blank */
    sb_free(&sb);
  }
  fclose(out);
  r.errs = arena_strdup(r.a, buf);
  free(buf);
  return r;
}

static Run run(const char *src) { return run_n(src, strlen(src), false); }

static void done(Run *r) {
  diag_fini(&r->d);
  arena_free(r->a);
}

/* The tree of `machine m = <expr>`, as an S-expression. */
static char *expr_tree(const char *expr, char *buf, size_t size) {
  char src[512];
  snprintf(src, sizeof src, "machine m = %s", expr);
  Run r = run(src);
  cr_expect_eq(r.d.nerrors, 0, "errors in %s:\n%s", src, r.errs);
  snprintf(buf, size, "%s", r.tree);
  done(&r);
  return buf;
}

#define EXPECT_EXPR(src, want)                                             \
  do {                                                                     \
    char buf_[1024];                                                       \
    cr_expect_str_eq(expr_tree(src, buf_, sizeof buf_),                    \
                     "((machine m () = " want "))");                       \
  } while (0)

/* The first error line (without the source line and caret). */
static const char *first_error(Run *r) {
  char *nl = strchr(r->errs, '\n');
  return nl ? arena_strndup(r->a, r->errs, (size_t)(nl - r->errs)) : r->errs;
}

#define EXPECT_ERROR(src, want)                                            \
  do {                                                                     \
    Run r_ = run(src);                                                     \
    cr_expect_geq(r_.d.nerrors, 1, "no error for %s", src);                \
    cr_expect_str_eq(first_error(&r_), want);                              \
    done(&r_);                                                             \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *EXAMPLE =
    "import \"dense.mach\"\n"
    "machine dense_machine(dims, act, shared = 1) {\n"
    "    let n = sum(dims)\n"
    "    param W : [n, n] = glorot\n"
    "    block x[0] : dims[0] = act(input)\n"
    "    for i in 1 .. len(dims) {\n"
    "        let lo = sum(dims[0 .. i])\n"
    "        block x[i] : dims[i] = act(dense(x[0 .. i], weight = W[0 .. lo, lo .. lo + dims[i]]))\n"
    "    }\n"
    "    output x[0], x[1]\n"
    "}\n"
    "machine poly {\n"
    "    input  u  : 2\n"
    "    block  h  : 4 @ [28, 28] = tanh(dense(u) + bias)\n"
    "    output y  : 1 = dense(u, h) + bias;\n"
    "    use m = dense_machine([2, 4, 4], sigmoid)\n"
    "    if n > 2 and not (n == 3) { set timeblock = 5 } else { let k = -n % 2 }\n"
    "}\n"
    "machine both = a(1) | b >> c(k = 2)\n";

/* -------------------------------------------------------------- lexer */

static char *tokens_of(const char *src, size_t len) {
  Run r = run_n(src, len, true);
  char *s = strdup(r.tokens);
  done(&r);
  return s;
}

#define EXPECT_TOKENS(src, want)                                           \
  do {                                                                     \
    char *got_ = tokens_of(src, sizeof(src) - 1);                          \
    cr_expect_str_eq(got_, want);                                          \
    free(got_);                                                            \
  } while (0)

Test(lexer, sample_tokens) {
  EXPECT_TOKENS("import \"dense.mach\"\nmachine poly { block h : 4 @ [28] = f(x, w = 0.1) }",
                "KW import\nSTRING \"dense.mach\"\nKW machine\nIDENT poly\n"
                "PUNCT {\nKW block\nIDENT h\nPUNCT :\nINT 4\nPUNCT @\n"
                "PUNCT [\nINT 28\nPUNCT ]\nPUNCT =\nIDENT f\nPUNCT (\n"
                "IDENT x\nPUNCT ,\nIDENT w\nPUNCT =\nFLOAT 0.1\nPUNCT )\n"
                "PUNCT }\nEOF\n");
}

Test(lexer, all_punctuation) {
  EXPECT_TOKENS("{}()[],:;=+-*/%@. .. ..= == != < <= > >= >> |",
                "PUNCT {\nPUNCT }\nPUNCT (\nPUNCT )\nPUNCT [\nPUNCT ]\n"
                "PUNCT ,\nPUNCT :\nPUNCT ;\nPUNCT =\nPUNCT +\nPUNCT -\n"
                "PUNCT *\nPUNCT /\nPUNCT %\nPUNCT @\nPUNCT .\nPUNCT ..\n"
                "PUNCT ..=\nPUNCT ==\nPUNCT !=\nPUNCT <\nPUNCT <=\nPUNCT >\n"
                "PUNCT >=\nPUNCT >>\nPUNCT |\nEOF\n");
}

Test(lexer, keywords_and_identifiers) {
  EXPECT_TOKENS("machine input output block param let for in if else use "
                "import set and or not true false machines _x1 Input",
                "KW machine\nKW input\nKW output\nKW block\nKW param\nKW let\n"
                "KW for\nKW in\nKW if\nKW else\nKW use\nKW import\nKW set\n"
                "KW and\nKW or\nKW not\nKW true\nKW false\nIDENT machines\n"
                "IDENT _x1\nIDENT Input\nEOF\n");
}

Test(lexer, numbers) {
  EXPECT_TOKENS("0..4 1. 0.1 1e-3 2.5E+4 7e 3..=5",
                "INT 0\nPUNCT ..\nINT 4\nINT 1\nPUNCT .\nFLOAT 0.1\n"
                "FLOAT 1e-3\nFLOAT 2.5E+4\nINT 7\nIDENT e\nINT 3\nPUNCT ..=\n"
                "INT 5\nEOF\n");
}

Test(lexer, comments_and_whitespace) {
  EXPECT_TOKENS("a # line comment\r\n/* block\n * comment ** */ b/**/c #end",
                "IDENT a\nIDENT b\nIDENT c\nEOF\n");
}

Test(lexer, invalid_bytes) {
  EXPECT_TOKENS("a\x01$\0b\xe2\x82\xac", "IDENT a\nERROR \\x01\nERROR $\n"
                "ERROR \\x00\nIDENT b\nERROR \\xE2\\x82\\xAC\nEOF\n");
}

Test(lexer, string_escapes) {
  Run r = run("machine m = \"a\\\"b\\\\c\\nd\\te\"");
  cr_expect_eq(r.d.nerrors, 0);
  cr_expect_str_eq(r.file->items.items[0]->rhs->str, "a\"b\\c\nd\te");
  done(&r);
}

Test(lexer, empty_input) {
  EXPECT_TOKENS("", "EOF\n");
}

Test(lexer, int64_limits) {
  Run r = run("machine m = 9223372036854775807");
  cr_expect_eq(r.d.nerrors, 0);
  cr_expect_eq(r.file->items.items[0]->rhs->ival, INT64_MAX);
  done(&r);
  EXPECT_ERROR("machine m = 9223372036854775808",
               "t.mach:1:13: error: integer literal too large (the limit is "
               "9223372036854775807)");
}

Test(lexer, huge_integer) {
  EXPECT_ERROR("machine m = 1000000000000000000000000000000",
               "t.mach:1:13: error: integer literal too large (the limit is "
               "9223372036854775807)");
}

Test(lexer, huge_float) {
  EXPECT_ERROR("machine m = 1e999", "t.mach:1:13: error: float literal too large");
  Run r = run("machine m = 1e-999"); /* underflow to 0 is fine */
  cr_expect_eq(r.d.nerrors, 0);
  done(&r);
}

Test(lexer, unterminated_comment) {
  Run r = run("machine m {\n  /* never closed\n  block x : 1 = 2\n");
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect_str_eq(first_error(&r),
                   "t.mach:2:3: error: unterminated comment (missing '*/')");
  done(&r);
}

Test(lexer, unterminated_string) {
  EXPECT_ERROR("import \"abc\nmachine m = 1",
               "t.mach:1:8: error: unterminated string (missing closing '\"')");
  EXPECT_ERROR("import \"abc",
               "t.mach:1:8: error: unterminated string (missing closing '\"')");
  EXPECT_ERROR("import \"abc\\",
               "t.mach:1:8: error: unterminated string (missing closing '\"')");
}

Test(lexer, unknown_escape) {
  EXPECT_ERROR("import \"a\\qb\"",
               "t.mach:1:10: error: unknown escape sequence '\\q' in string");
}

/* ---------------------------------------------------- parser: shapes */

Test(parser, empty_file) {
  Run r = run("");
  cr_expect_eq(r.d.nerrors, 0);
  cr_expect_eq(r.file->items.len, 0);
  cr_expect_str_eq(r.errs, "");
  done(&r);
  r = run("  # only a comment\n\n");
  cr_expect_eq(r.d.nerrors, 0);
  cr_expect_eq(r.file->items.len, 0);
  done(&r);
}

Test(parser, example_program) {
  Run r = run(EXAMPLE);
  cr_assert_eq(r.d.nerrors, 0, "%s", r.errs);
  cr_expect_str_eq(
      r.tree,
      "((import \"dense.mach\") "
      "(machine dense_machine (dims act (kw shared 1)) ("
      "(let n (call sum dims)) "
      "(param W (list n n) glorot) "
      "(block (index x 0) (index dims 0) (call act input)) "
      "(for i (.. 1 (call len dims)) ("
      "(let lo (call sum (index dims (.. 0 i)))) "
      "(block (index x i) (index dims i) (call act (call dense (index x (.. 0 i)) "
      "(kw weight (index W (.. 0 lo) (.. lo (+ lo (index dims i))))))))))"
      " (mark-output (index x 0) (index x 1)))) "
      "(machine poly () ("
      "(input u 2) "
      "(block h (@ 4 (list 28 28)) (call tanh (+ (call dense u) bias))) "
      "(output y 1 (+ (call dense u h) bias)) "
      "(use m (call dense_machine (list 2 4 4) sigmoid)) "
      "(if (and (> n 2) (not (== n 3))) ((set timeblock 5)) "
      "((let k (% (neg n) 2)))))) "
      "(machine both () = (| (call a 1) (>> b (call c (kw k 2))))))");
  done(&r);
}

Test(parser, precedence) {
  EXPECT_EXPR("a + b * c", "(+ a (* b c))");
  EXPECT_EXPR("a - b - c", "(- (- a b) c)");
  EXPECT_EXPR("a | b >> c", "(| a (>> b c))");
  EXPECT_EXPR("a >> b | c", "(| (>> a b) c)");
  EXPECT_EXPR("a or b and c", "(or a (and b c))");
  EXPECT_EXPR("not a == b and c", "(and (not (== a b)) c)");
  EXPECT_EXPR("16 @ [28, 28]", "(@ 16 (list 28 28))");
  EXPECT_EXPR("1 + 2 @ [n .. n + 1]", "(@ (+ 1 2) (list (.. n (+ n 1))))");
  EXPECT_EXPR("a .. b + 1 == c", "(== (.. a (+ b 1)) c)");
  EXPECT_EXPR("-a * b", "(* (neg a) b)");
  EXPECT_EXPR("- - a.b[1](2)", "(neg (neg (call (index (. a b) 1) 2)))");
  EXPECT_EXPR("(a + b) * c", "(* (+ a b) c)");
  EXPECT_EXPR("0 ..= 4", "(..= 0 4)");
}

Test(parser, postfix_and_args) {
  EXPECT_EXPR("x[0 .. i]", "(index x (.. 0 i))");
  EXPECT_EXPR("f(x, k = 2, )", "(call f x (kw k 2))");
  EXPECT_EXPR("f()", "(call f)");
  EXPECT_EXPR("[]", "(list)");
  EXPECT_EXPR("[1, 2.5, \"s\", true, false,]", "(list 1 2.5 \"s\" true false)");
  EXPECT_EXPR("m.x.y", "(. (. m x) y)");
  EXPECT_EXPR("W[0 .. lo, lo .. 2]", "(index W (.. 0 lo) (.. lo 2))");
}

Test(parser, statements) {
  Run r = run("machine m(a, b = 2,) {\n"
              "  input x : 1 @ [4];\n"
              "  output y, m.z\n"
              "  param P : [2]\n"
              "  use f(x)\n"
              "  if a { } else if b { let c = 1 } else { }\n"
              "  ;;\n"
              "}\n");
  cr_assert_eq(r.d.nerrors, 0, "%s", r.errs);
  cr_expect_str_eq(r.tree,
                   "((machine m (a (kw b 2)) ((input x (@ 1 (list 4))) "
                   "(mark-output y (. m z)) (param P (list 2)) "
                   "(use _ (call f x)) "
                   "(if a () ((if b ((let c 1)) ()))))))");
  done(&r);
}

Test(parser, locations) {
  Run r = run("machine m {\n  let v = f(a, b)[1] + 2\n}");
  cr_assert_eq(r.d.nerrors, 0, "%s", r.errs);
  Ast *let = r.file->items.items[0]->body.items[0];
  const char *text = r.d.files[0].text;
  cr_expect_eq(let->loc.off, (int)(strstr(text, "let") - text));
  cr_expect_eq(let->loc.len, (int)strlen("let v = f(a, b)[1] + 2"));
  Ast *plus = let->rhs;
  cr_expect_eq(plus->loc.off, (int)(strchr(text, '+') - text));
  cr_expect_eq(plus->loc.len, 1);
  Ast *index = plus->lhs;
  cr_expect_eq(index->kind, AST_INDEX);
  cr_expect_eq(index->loc.len, (int)strlen("f(a, b)[1]"));
  cr_expect_eq(index->depth, 3); /* index > call > name */
  done(&r);
}

Test(parser, crlf_and_no_trailing_newline) {
  Run r = run("machine m {\r\n  input x : 1\r\n  output y : 1 = x\r\n}");
  cr_expect_eq(r.d.nerrors, 0, "%s", r.errs);
  cr_expect_str_eq(r.tree, "((machine m () ((input x 1) (output y 1 x))))");
  done(&r);
  EXPECT_ERROR("machine m {\r\n  block x = 1\r\n}\r\n",
               "t.mach:2:11: error: expected ':' after block name, found '='");
}

/* ---------------------------------------------------- parser: errors */

Test(parser, error_missing_colon) {
  EXPECT_ERROR("machine m {\n  block x = 3\n}",
               "t.mach:2:11: error: expected ':' after block name, found '='");
  EXPECT_ERROR("machine m { param W = [3] }",
               "t.mach:1:21: error: expected ':' after parameter name, found '='");
}

Test(parser, error_missing_equals) {
  EXPECT_ERROR("machine m {\n  output y : 1 dense(u)\n}",
               "t.mach:2:16: error: expected '=' after block shape, found "
               "identifier 'dense'");
  EXPECT_ERROR("machine m { let k 5 }",
               "t.mach:1:19: error: expected '=' after variable name, found "
               "integer '5'");
}

Test(parser, error_unclosed_brace) {
  Run r = run("machine m {\n  input x : 1\n");
  cr_expect_eq(r.d.nerrors, 1);
  cr_expect_str_eq(r.errs,
                   "t.mach:2:14: error: unclosed '{'\n"
                   "    input x : 1\n"
                   "               ^\n"
                   "t.mach:1:11: note: '{' opened here\n"
                   "  machine m {\n"
                   "            ^\n");
  done(&r);
}

Test(parser, error_unclosed_brace_after_other_error) {
  Run r = run("machine m {\n  block x = 3\n");
  cr_expect_eq(r.d.nerrors, 2, "%s", r.errs);
  cr_expect_str_eq(first_error(&r),
                   "t.mach:2:11: error: expected ':' after block name, found '='");
  cr_expect(strstr(r.errs, "t.mach:2:14: error: unclosed '{'"), "%s", r.errs);
  cr_expect(strstr(r.errs, "t.mach:1:11: note: '{' opened here"), "%s", r.errs);
  done(&r);
}

Test(parser, error_unclosed_paren_inside_brace) {
  Run r = run("machine m {\n  block x : 1 = f(a, g(b)\n}\n");
  cr_expect_str_eq(first_error(&r),
                   "t.mach:3:1: error: expected ')' to close '(', found '}'");
  cr_expect(strstr(r.errs, "t.mach:2:18: note: '(' opened here"), "%s", r.errs);
  done(&r);
}

Test(parser, error_stray_paren) {
  EXPECT_ERROR("machine m {\n  let x = 3 )\n}",
               "t.mach:2:13: error: stray ')' without matching '('");
  EXPECT_ERROR("}", "t.mach:1:1: error: stray '}' without matching '{'");
}

Test(parser, error_invalid_character) {
  Run r = run("machine m {\n  let x = 3 $ 4\n  let y = \x01\n}");
  cr_expect_str_eq(first_error(&r), "t.mach:2:13: error: invalid character '$'");
  cr_expect(strstr(r.errs, "t.mach:3:11: error: invalid character '\\x01'"),
            "%s", r.errs);
  done(&r);
}

Test(parser, error_expected_expression) {
  EXPECT_ERROR("machine m { let x = }",
               "t.mach:1:21: error: expected expression, found '}'");
  EXPECT_ERROR("machine m =", "t.mach:1:12: error: expected expression, found "
                              "end of file");
}

Test(parser, error_other_contexts) {
  EXPECT_ERROR("machine m { x = 4 }",
               "t.mach:1:13: error: expected statement or '}', found "
               "identifier 'x'");
  EXPECT_ERROR("machine m { for i 0 .. 3 { } }",
               "t.mach:1:19: error: expected 'in' after loop variable, found "
               "integer '0'");
  EXPECT_ERROR("machine m { for i in 0 .. 3 let x = 1 }",
               "t.mach:1:29: error: expected '{' to open the loop body, found "
               "'let'");
  EXPECT_ERROR("machine m x", "t.mach:1:11: error: expected '=', '(' or '{', "
                              "found identifier 'x'");
  EXPECT_ERROR("import 5",
               "t.mach:1:8: error: expected string after 'import', found "
               "integer '5'");
  EXPECT_ERROR("machine m {} block", "t.mach:1:14: error: expected 'machine', "
                                     "'import' or end of file, found 'block'");
  EXPECT_ERROR("machine m = a.1",
               "t.mach:1:15: error: expected identifier after '.', found "
               "integer '1'");
  EXPECT_ERROR("machine m = f(a b)",
               "t.mach:1:17: error: expected '=', ')' or ',', found "
               "identifier 'b'");
}

Test(parser, error_recovery_reports_several) {
  Run r = run("machine m {\n"
              "  block a = 1\n"
              "  input ok : 1\n"
              "  let b 2\n"
              "  output c : 1 = ok\n"
              "}\n"
              "machine n { x }\n"
              "machine good = a >> b\n");
  cr_expect_eq(r.d.nerrors, 3, "%s", r.errs);
  cr_expect(strstr(r.errs, "t.mach:2:11: error: expected ':' after block name"));
  cr_expect(strstr(r.errs, "t.mach:4:9: error: expected '=' after variable name"));
  cr_expect(strstr(r.errs, "t.mach:7:13: error: expected statement or '}'"));
  /* the good parts survive */
  cr_expect_str_eq(r.tree, "((machine m () ((input ok 1) (output c 1 ok))) "
                           "(machine n () ()) (machine good () = (>> a b)))");
  done(&r);
}

/* ------------------------------------------------ parser: robustness */

static char *repeat(const char *prefix, const char *unit, int n,
                    const char *suffix) {
  size_t lp = strlen(prefix), lu = strlen(unit), ls = strlen(suffix);
  char *s = malloc(lp + lu * (size_t)n + ls + 1), *p = s;
  memcpy(p, prefix, lp);
  p += lp;
  for (int i = 0; i < n; i++, p += lu)
    memcpy(p, unit, lu);
  memcpy(p, suffix, ls + 1);
  return s;
}

static Run run_big(char *src) {
  double t0 = now();
  Run r = run(src);
  double dt = now() - t0;
  cr_expect_lt(dt, 1.0, "took %.3f s", dt);
  free(src);
  return r;
}

Test(parser, million_open_parens, .timeout = 10) {
  Run r = run_big(repeat("machine m = ", "(", 1000000, ""));
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect(strstr(r.errs, "nesting too deep"), "%s", r.errs);
  done(&r);
  r = run_big(repeat("", "(", 1000000, ""));
  cr_expect_geq(r.d.nerrors, 1);
  done(&r);
}

Test(parser, million_open_brackets, .timeout = 10) {
  Run r = run_big(repeat("machine m = ", "[", 1000000, ""));
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect(strstr(r.errs, "nesting too deep"), "%s", r.errs);
  done(&r);
}

Test(parser, deep_but_legal_list) {
  char *open = repeat("machine m = ", "[", 200, "1");
  char *src = repeat(open, "]", 200, "");
  free(open);
  Run r = run_big(src);
  cr_expect_eq(r.d.nerrors, 0, "%s", r.errs);
  cr_expect_eq(r.file->items.items[0]->rhs->depth, 201);
  done(&r);
}

Test(parser, deep_list_too_deep) {
  /* 250 brackets pass the bracket limit but `- ` adds expression depth */
  char *open = repeat("machine m = ", "[-", 250, "1");
  char *src = repeat(open, "]", 250, "");
  free(open);
  Run r = run_big(src);
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect(strstr(r.errs, "error: expression nested too deeply (limit 256)"),
            "%s", r.errs);
  done(&r);
}

Test(parser, long_addition_chain, .timeout = 10) {
  Run r = run_big(repeat("machine m = 1", "+1", 100000, "\nmachine ok = 2"));
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect(strstr(r.errs, "error: expression nested too deeply (limit 256)"));
  cr_expect_eq(r.file->items.len, 2);
  cr_expect_leq(r.file->items.items[0]->rhs->depth, PARSE_MAX_DEPTH);
  done(&r);
}

Test(parser, long_unary_chain, .timeout = 10) {
  Run r = run_big(repeat("machine m = ", "-", 100000, "1"));
  cr_expect_eq(r.d.nerrors, 1, "%s", r.errs);
  cr_expect(strstr(r.errs, "nesting too deep"), "%s", r.errs);
  done(&r);
}

Test(parser, long_else_if_chain, .timeout = 10) {
  Run r = run_big(repeat("machine m { ", "if a { } else ", 100000, "{ } }"));
  cr_expect_geq(r.d.nerrors, 1);
  done(&r);
}

Test(parser, binary_garbage, .timeout = 20) {
  enum { N = 100000 };
  char *buf = malloc(N);
  uint32_t x = 12345;
  for (int seed = 0; seed < 20; seed++) {
    for (int i = 0; i < N; i++) {
      x = x * 1664525u + 1013904223u; /* LCG: reproducible bytes */
      buf[i] = (char)(x >> 24);
    }
    Run r = run_n(buf, N, false);
    cr_expect_geq(r.d.nerrors, 1);
    done(&r);
    r = run_n(buf, N, true);
    done(&r);
  }
  free(buf);
}

Test(parser, token_soup) {
  /* Valid tokens in random order exercise the recovery paths. */
  static const char *toks[] = {
      "machine", "m",   "{",  "}",   "(",   ")",   "[",   "]",     "=",  ":",
      ",",       "1",   "x",  "let", "for", "in",  "if",  "else",  ";",  "+",
      "..",      "..=", "@",  ">>",  "|",   "not", "and", "block", "use", "\"s\"",
      "output",  "input", "param", "set", "import", ".", "-", "2.5"};
  enum { NT = sizeof toks / sizeof toks[0] };
  uint32_t x = 99;
  for (int round = 0; round < 200; round++) {
    StrBuf sb = {0};
    for (int i = 0; i < 300; i++) {
      x = x * 1664525u + 1013904223u;
      sb_printf(&sb, "%s ", toks[(x >> 16) % NT]);
    }
    Run r = run(sb.data);
    sb_free(&sb);
    done(&r);
  }
}

Test(parser, nul_inside_source) {
  static const char src[] = "machine m = 1\0 + 2";
  Run r = run_n(src, sizeof src - 1, false);
  cr_expect_eq(r.d.nerrors, 1);
  cr_expect_str_eq(first_error(&r), "t.mach:1:14: error: invalid character '\\x00'");
  done(&r);
}

Test(parser, too_many_errors_stops) {
  Run r = run_big(repeat("", "$", 100000, ""));
  cr_expect_eq(r.d.nerrors, 20);
  done(&r);
}

Test(parser, mutated_example) {
  /* Deleting, duplicating or overwriting bytes of a valid program reaches
   * error paths in every grammar context; none may crash or hang. */
  size_t len = strlen(EXAMPLE);
  char *buf = malloc(2 * len + 1);
  uint32_t x = 7;
  for (int round = 0; round < 3000; round++) {
    memcpy(buf, EXAMPLE, len + 1);
    size_t n = len;
    for (int k = 0; k < 1 + round % 4; k++) {
      x = x * 1664525u + 1013904223u;
      size_t at = (x >> 8) % n;
      int how = (int)(x >> 28) % 3;
      if (how == 0) { /* delete a byte */
        memmove(buf + at, buf + at + 1, n - at);
        n--;
      } else if (how == 1) { /* duplicate a byte */
        memmove(buf + at + 1, buf + at, n - at + 1);
        n++;
      } else { /* overwrite with a punctuation or keyword byte */
        buf[at] = "{}()[]=:,.;\"#/*x1"[(x >> 4) % 17];
      }
    }
    Run r = run_n(buf, n, false);
    done(&r);
  }
  free(buf);
}
