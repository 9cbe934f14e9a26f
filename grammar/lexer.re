/* lexer.re — the .mach scanner (re2c 3.0).
 *
 * Reentrant: all state is in a Lexer (machc.h). The source is NUL-terminated
 * but may hold NUL bytes, so the end is found with re2c's bounds-checked
 * end-of-input rule ($, sentinel 0, YYLIMIT) rather than by the NUL alone.
 * Malformed literals are reported here and still produce a token so the
 * parser can carry on; bytes that begin no token become T_INVALID and the
 * parser reports them. */
#include "machc.h"
#include "parser.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lex_init(Lexer *lx, Arena *a, Diag *d, int file) {
  const Source *s = &d->files[file];
  *lx = (Lexer){.a = a, .d = d, .file = file, .text = s->text};
  lx->cur = lx->tok = lx->mar = s->text;
  lx->lim = s->text + s->len;
}

static Loc tok_loc(const Lexer *lx) {
  return (Loc){lx->file, (int)(lx->tok - lx->text), (int)(lx->cur - lx->tok)};
}

char *lex_escape(Arena *a, const char *s, int n) {
  char *out = arena_alloc(a, 4 * (size_t)n + 1), *p = out;
  for (int i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f)
      *p++ = (char)c;
    else
      p += sprintf(p, "\\x%02X", c);
  }
  *p = '\0';
  return out;
}

/* Decimal digits to int64 with an explicit overflow check (strtoll would
 * clamp; signed overflow would be undefined). */
static void lex_int(Lexer *lx, Token *t) {
  int64_t v = 0;
  for (const char *p = lx->tok; p < lx->cur; p++) {
    int digit = *p - '0';
    if (v > (INT64_MAX - digit) / 10) {
      diag_error(lx->d, t->loc, "integer literal too large (the limit is %lld)",
                 (long long)INT64_MAX);
      v = 0;
      break;
    }
    v = 10 * v + digit;
  }
  t->ival = v;
}

/* The token is copied because strtod needs a terminator after it (machc
 * never calls setlocale, so strtod reads "." as the decimal point). Values
 * that underflow to 0 or a denormal are accepted; only infinity is not. */
static void lex_float(Lexer *lx, Token *t) {
  char *text = arena_strndup(lx->a, lx->tok, (size_t)(lx->cur - lx->tok));
  t->fval = strtod(text, NULL);
  if (isinf(t->fval)) {
    diag_error(lx->d, t->loc, "float literal too large");
    t->fval = 0;
  }
}

/* Unescapes a string literal; body is between the quotes. Only \" \\ \n \t
 * exist; another escape is reported at its backslash and kept as is. */
static void lex_string(Lexer *lx, Token *t, const char *body, const char *end) {
  char *out = arena_alloc(lx->a, (size_t)(end - body) + 1), *p = out;
  for (const char *s = body; s < end; s++) {
    if (*s != '\\' || s + 1 >= end) {
      *p++ = *s;
      continue;
    }
    switch (*++s) {
    case '"': *p++ = '"'; break;
    case '\\': *p++ = '\\'; break;
    case 'n': *p++ = '\n'; break;
    case 't': *p++ = '\t'; break;
    default: {
      Loc at = {lx->file, (int)(s - 1 - lx->text), 2};
      diag_error(lx->d, at, "unknown escape sequence '\\%s' in string",
                 lex_escape(lx->a, s, 1));
      *p++ = '\\';
      *p++ = *s;
    }
    }
  }
  *p = '\0';
  t->str = out;
}

static void lex_unterminated_string(Lexer *lx, Token *t) {
  Loc quote = {lx->file, (int)(lx->tok - lx->text), 1};
  diag_error(lx->d, quote, "unterminated string (missing closing '\"')");
  lex_string(lx, t, lx->tok + 1, lx->cur);
}

/* An unterminated block comment swallows the rest of the file. */
static void lex_unterminated_comment(Lexer *lx) {
  Loc open = {lx->file, (int)(lx->tok - lx->text), 2};
  diag_error(lx->d, open, "unterminated comment (missing '*/')");
  lx->cur = lx->lim;
  lx->eof_in_comment = true;
}

/* An identifier longer than LEX_MAX_IDENT is reported and cut there, so a
 * megabyte name costs one diagnostic, not megabyte copies in every table. */
static void lex_ident(Lexer *lx, Token *t) {
  t->kind = T_IDENT;
  t->loc = tok_loc(lx);
  size_t n = (size_t)(lx->cur - lx->tok);
  if (n > LEX_MAX_IDENT) {
    diag_error(lx->d, (Loc){lx->file, t->loc.off, 1},
               "identifier of %zu characters; the limit is %d", n, LEX_MAX_IDENT);
    n = LEX_MAX_IDENT;
  }
  t->str = arena_strndup(lx->a, lx->tok, n);
}

/* End of file: if the text ends in a newline, point at that newline, so a
 * message about the end shows the last line rather than an empty one. */
static Loc eof_loc(const Lexer *lx) {
  int len = (int)(lx->lim - lx->text);
  int off = len > 0 && lx->text[len - 1] == '\n' ? len - 1 : len;
  return (Loc){lx->file, off, 1};
}

/*!re2c
  re2c:define:YYCTYPE = "unsigned char";
  re2c:define:YYCURSOR = "lx->cur";
  re2c:define:YYMARKER = "lx->mar";
  re2c:define:YYLIMIT = "lx->lim";
  re2c:yyfill:enable = 0;
  re2c:eof = 0;

  space    = [ \t\r\n\v\f]+;
  linecmt  = "#" [^\n]*;
  blockcmt = "/*" ([^*] | "*"+ [^*/])* "*"+ "/";
  ident    = [A-Za-z_][A-Za-z0-9_]*;
  dec      = [0-9]+;
  exp      = [eE] [+-]? dec;
  float    = dec "." dec exp? | dec exp;
  strchar  = [^"\\\n] | "\\" [^\n];
  utf8     = [\xc0-\xff] [\x80-\xbf]{0,3};
*/

/* Scans the next token into t, skipping blanks and comments. */
void lex_next(Lexer *lx, Token *t) {
  *t = (Token){0};
  for (;;) {
    lx->tok = lx->cur;
#define TOK(k) do { t->kind = (k); t->loc = tok_loc(lx); return; } while (0)
    /*!re2c
      $        { t->kind = T_END; t->loc = eof_loc(lx); return; }
      space    { continue; }
      linecmt  { continue; }
      blockcmt { continue; }
      "/*"     { lex_unterminated_comment(lx); continue; }

      "machine" { TOK(T_MACHINE); }
      "input"   { TOK(T_INPUT); }
      "output"  { TOK(T_OUTPUT); }
      "block"   { TOK(T_BLOCK); }
      "param"   { TOK(T_PARAM); }
      "let"     { TOK(T_LET); }
      "for"     { TOK(T_FOR); }
      "in"      { TOK(T_IN); }
      "if"      { TOK(T_IF); }
      "else"    { TOK(T_ELSE); }
      "use"     { TOK(T_USE); }
      "import"  { TOK(T_IMPORT); }
      "set"     { TOK(T_SET); }
      "and"     { TOK(T_AND); }
      "or"      { TOK(T_OR); }
      "not"     { TOK(T_NOT); }
      "true"    { TOK(T_TRUE); }
      "false"   { TOK(T_FALSE); }

      ident { lex_ident(lx, t); return; }
      dec   { t->kind = T_INT; t->loc = tok_loc(lx); lex_int(lx, t); return; }
      float { t->kind = T_FLOAT; t->loc = tok_loc(lx); lex_float(lx, t); return; }
      ["] strchar* ["] {
        t->kind = T_STRING; t->loc = tok_loc(lx);
        lex_string(lx, t, lx->tok + 1, lx->cur - 1);
        return;
      }
      ["] strchar* "\\"? {
        t->kind = T_STRING; t->loc = tok_loc(lx);
        lex_unterminated_string(lx, t);
        return;
      }

      ".."  { TOK(T_DOTDOT); }
      "..=" { TOK(T_DOTDOTEQ); }
      "=="  { TOK(T_EQ); }
      "!="  { TOK(T_NE); }
      "<="  { TOK(T_LE); }
      ">="  { TOK(T_GE); }
      ">>"  { TOK(T_SHR); }
      [{}()[\],:;=+\-*/%@.<>|] { TOK((unsigned char)*lx->tok); }

      utf8 { TOK(T_INVALID); }
      *    { TOK(T_INVALID); }
    */
#undef TOK
  }
}
