/* load.c — reads the main .mach file and its imports, parses them, and keeps
 * the table of machine definitions every file contributes. */
#include "eval_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { MAX_SOURCE_BYTES = 16 << 20 };

/* Reads a whole file; NULL with errno set on failure. Files over the limit
 * are refused rather than read: a .mach file is text written by a person.
 * Only regular files are read: the open does not block (O_NONBLOCK, for a
 * FIFO with no writer) and fstat then refuses FIFOs, devices and
 * directories at once (EINVAL), whatever the path was when stat saw it. */
static char *read_file(const char *path, int *len, bool *too_big) {
  *too_big = false;
  struct stat st;
  if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
    errno = EINVAL;
    return NULL;
  }
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    errno = EINVAL;
    return NULL;
  }
  FILE *f = fdopen(fd, "rb");
  if (!f) {
    close(fd);
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (n == cap) {
      if (cap >= MAX_SOURCE_BYTES) {
        *too_big = true;
        break;
      }
      cap *= 2;
      char *nb = realloc(buf, cap);
      if (!nb)
        break;
      buf = nb;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0)
      break;
  }
  bool err = ferror(f) || *too_big;
  int saved = errno;
  fclose(f);
  if (err) {
    free(buf);
    errno = saved ? saved : EIO;
    return NULL;
  }
  *len = (int)n;
  return buf;
}

static char *dir_of(Arena *a, const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? arena_strndup(a, path, (size_t)(slash - path)) : arena_strdup(a, ".");
}

static bool already_loaded(Program *p, const char *real) {
  for (int i = 0; i < p->loaded.len; i++) /* a handful of files */
    if (strcmp(p->loaded.items[i], real) == 0)
      return true;
  return false;
}

static void add_machines(Program *p, AstFile *f) {
  for (int i = 0; i < f->items.len; i++) {
    Ast *item = f->items.items[i];
    if (item->kind != AST_MACHINE)
      continue;
    const Ast *prev = prog_find_machine(p, item->str);
    if (prev) {
      diag_error(p->diag, item->loc, "machine '%s' is defined twice", item->str);
      diag_note(p->diag, prev->loc, "first definition of '%s' is here", item->str);
      continue;
    }
    vec_push(p->arena, &p->machines, item);
    strmap_put(p->arena, p->machine_map, item->str, item);
  }
}

static bool load_file(Program *p, const char *path, Loc from);
static bool load_source(Program *p, const char *path, const char *text, int len);

/* Finds an import next to the importing file, then in the stdlib dirs. */
static void load_import(Program *p, const Ast *imp, const char *dir) {
  const char *name = imp->str;
  char *cand = name[0] == '/' ? arena_strdup(p->arena, name)
                              : arena_printf(p->arena, "%s/%s", dir, name);
  /* found = exists; opening it is load_file's job (it refuses a FIFO or a
   * device without blocking on it) */
  struct stat st;
  bool found = stat(cand, &st) == 0;
  for (int i = 0; !found && name[0] != '/' && i < p->nstdlib; i++) {
    cand = arena_printf(p->arena, "%s/%s", p->stdlib_dirs[i], name);
    found = stat(cand, &st) == 0;
  }
  if (!found) {
    diag_error(p->diag, imp->loc, "cannot find import \"%s\" (looked next to this file%s)",
               name, p->nstdlib ? " and in the standard library" : "");
    return;
  }
  load_file(p, cand, imp->loc);
}

static bool load_file(Program *p, const char *path, Loc from) {
  char real[PATH_MAX];
  if (!realpath(path, real))
    snprintf(real, sizeof real, "%s", path);
  if (already_loaded(p, real))
    return true;
  vec_push(p->arena, &p->loaded, arena_strdup(p->arena, real));
  int len = 0;
  bool too_big;
  char *text = read_file(path, &len, &too_big);
  if (!text) {
    if (too_big)
      diag_error(p->diag, from, "%s: file is larger than %d MiB", path, MAX_SOURCE_BYTES >> 20);
    else
      diag_error(p->diag, from, "cannot read %s: %s", path,
                 errno == EINVAL ? "not a regular file (a directory, FIFO or device)" : strerror(errno));
    return false;
  }
  bool ok = load_source(p, path, text, len);
  free(text);
  return ok;
}

/* Parses a source text and loads what it imports. */
static bool load_source(Program *p, const char *path, const char *text, int len) {
  int file = diag_add_source(p->diag, path, text, len);
  int before = p->diag->nerrors;
  AstFile *af = parse_file(p->arena, p->diag, file);
  if (!af || p->diag->nerrors > before)
    return false;
  if (p->main_file < 0)
    p->main_file = file;
  char *dir = dir_of(p->arena, path);
  for (int i = 0; i < af->items.len; i++) {
    Ast *item = af->items.items[i];
    if (item->kind == AST_IMPORT)
      load_import(p, item, dir);
  }
  add_machines(p, af);
  return true;
}

const Ast *prog_find_machine(const Program *p, const char *name) {
  return strmap_get(p->machine_map, name);
}

static Program *program_new(Arena *a, Diag *d, const char *path, const char **stdlib_dirs,
                            int nstdlib) {
  Program *p = arena_alloc(a, sizeof *p);
  p->arena = a;
  p->diag = d;
  p->main_file = -1;
  p->stdlib_dirs = stdlib_dirs;
  p->nstdlib = nstdlib;
  p->main_path = path;
  p->machine_map = arena_alloc(a, sizeof *p->machine_map);
  return p;
}

Program *eval_load(Arena *a, Diag *d, const char *path, const char **stdlib_dirs,
                   int nstdlib) {
  Program *p = program_new(a, d, path, stdlib_dirs, nstdlib);
  return load_file(p, path, LOC_NONE) && !d->nerrors ? p : NULL;
}

Program *eval_load_text(Arena *a, Diag *d, const char *name, const char *text, int len,
                        const char **stdlib_dirs, int nstdlib) {
  Program *p = program_new(a, d, name, stdlib_dirs, nstdlib);
  vec_push(a, &p->loaded, arena_strdup(a, name));
  return load_source(p, name, text, len) && !d->nerrors ? p : NULL;
}

void eval_list_machines(Program *p, FILE *out) {
  for (int i = 0; i < p->machines.len; i++) {
    const Ast *m = p->machines.items[i];
    if (m->loc.file == p->main_file)
      fprintf(out, "%s%s\n", m->str, m->params.len ? "(...)" : "");
  }
}
