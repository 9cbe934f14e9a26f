/* test_docs.c — the doc test: every command shown in the documentation runs
 * and prints what the documentation says.
 *
 * In docs/tutorial.md and docs/language.md, a fenced block tagged `console`
 * is a session: lines starting with "$ " are commands (a line ending in "\"
 * continues on the next), the lines after a command up to the next one are
 * its expected output, stdout and stderr together. A line "..." stands for
 * any number of lines. The commands run one after another with sh in a fresh
 * directory holding links to the repository's docs/, examples/ and stdlib/,
 * with machc first in PATH, so files one command writes the next can read. */
#include <criterion/criterion.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"

TestSuite(docs, .fini = e2e_cleanup, .timeout = 120);

typedef struct Lines {
  char **s;
  int n, cap;
} Lines;

static void push(Lines *l, char *s) {
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 16;
    l->s = realloc(l->s, sizeof(char *) * (size_t)l->cap);
  }
  l->s[l->n++] = s;
}

static Lines split(const char *text) {
  Lines l = {0};
  const char *p = text;
  while (*p) {
    const char *e = strchr(p, '\n');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    push(&l, strndup(p, n));
    p += n + (e != NULL);
  }
  return l;
}

/* want[i..] matches got[j..]; "..." matches any run of lines. */
static bool match(const Lines *want, int i, const Lines *got, int j) {
  if (i == want->n)
    return j == got->n;
  if (strcmp(want->s[i], "...") == 0) {
    for (int k = j; k <= got->n; k++)
      if (match(want, i + 1, got, k))
        return true;
    return false;
  }
  return j < got->n && strcmp(want->s[i], got->s[j]) == 0 && match(want, i + 1, got, j + 1);
}

static char *joined(const Lines *l, int from, int to) {
  size_t n = 1;
  for (int i = from; i < to; i++)
    n += strlen(l->s[i]) + 1;
  char *s = calloc(n, 1);
  for (int i = from; i < to; i++) {
    strcat(s, l->s[i]);
    strcat(s, "\n");
  }
  return s;
}

/* A directory to run a document's commands in. */
static const char *session_dir(void) {
  const char *dir = e2e_tmpdir();
  const char *links[] = {"docs", "examples", "stdlib"};
  for (size_t k = 0; k < sizeof links / sizeof *links; k++)
    cr_assert(symlink(e2e_path(e2e_root(), links[k]), e2e_path(dir, links[k])) == 0, "symlink %s",
              links[k]);
  return dir;
}

static E2eRun run_command(const char *dir, const char *cmd) {
  char *m = strdup(e2e_machc());
  const char *script = e2e_fmt("PATH='%s':\"$PATH\"; export PATH; exec 2>&1; %s", dirname(m), cmd);
  free(m);
  return e2e_runl(dir, 60, "sh", "-c", script, NULL);
}

/* Runs every console session of the document; returns how many commands. */
static int check_document(const char *rel) {
  char *text = e2e_read_file(e2e_path(e2e_root(), rel), NULL);
  cr_assert(text, "cannot read %s", rel);
  Lines doc = split(text);
  const char *dir = session_dir();
  int commands = 0;
  for (int i = 0; i < doc.n; i++) {
    if (strcmp(doc.s[i], "```console") != 0)
      continue;
    int end = i + 1;
    while (end < doc.n && strncmp(doc.s[end], "```", 3) != 0)
      end++;
    cr_assert(end < doc.n, "%s:%d: unterminated console block", rel, i + 1);
    for (int c = i + 1; c < end;) {
      cr_assert(strncmp(doc.s[c], "$ ", 2) == 0, "%s:%d: output before any command", rel, c + 1);
      int line = c + 1;
      char *cmd = strdup(doc.s[c] + 2);
      while (cmd[strlen(cmd) - 1] == '\\' && c + 1 < end) {
        cmd[strlen(cmd) - 1] = '\n';
        char *more = e2e_fmt("%s%s", cmd, doc.s[++c]);
        free(cmd);
        cmd = strdup(more);
      }
      int out = ++c;
      while (c < end && strncmp(doc.s[c], "$ ", 2) != 0)
        c++;
      Lines want = {.s = doc.s + out, .n = c - out};
      E2eRun r = run_command(dir, cmd);
      cr_assert(!r.timed_out && r.sig == 0, "%s:%d: '%s' did not finish", rel, line, cmd);
      Lines got = split(r.out);
      cr_assert(match(&want, 0, &got, 0), "%s:%d: '%s' printed\n%s\nbut the document says\n%s", rel,
                line, cmd, r.out, joined(&want, 0, want.n));
      e2e_run_free(&r);
      free(cmd);
      commands++;
    }
    i = end;
  }
  return commands;
}

Test(docs, tutorial_commands_print_what_it_says) {
  cr_assert_gt(check_document("docs/tutorial.md"), 10);
}

Test(docs, language_commands_print_what_it_says) {
  cr_assert_gt(check_document("docs/language.md"), 0);
}

/* The matcher itself: "..." spans zero or more lines, nothing else is loose. */
Test(docs, ellipsis_matches_any_lines) {
  Lines want = split("a\n...\nd\n"), got = split("a\nb\nc\nd\n"), tight = split("a\nd\n");
  Lines other = split("a\nb\nc\n"), exact = split("a\nb\n");
  cr_assert(match(&want, 0, &got, 0));
  cr_assert(match(&want, 0, &tight, 0));
  cr_assert_not(match(&want, 0, &other, 0));
  cr_assert_not(match(&exact, 0, &got, 0));
}
