/* args.c — GNU-style long options for the commands: `--name value`,
 * `--name=value`, flags, repeatable options, `--help` anywhere. Every
 * problem is one line ending in a hint, and status 2. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static int usage_error(const struct mach_ctx *c, const char *cmd, const char *msg,
                       const char *what) {
  mach_err(c, "%s: %s '%s' (try '%s %s --help')", cmd, msg, what, c->prog, cmd);
  return 2;
}

static int find_opt(const struct mach_optspec *spec, int n, const char *name, size_t len) {
  for (int i = 0; i < n; i++)
    if (strlen(spec[i].name) == len && strncmp(spec[i].name, name, len) == 0)
      return i;
  return -1;
}

int mach_args_parse(const struct mach_ctx *c, const char *cmd,
                    const struct mach_optspec *spec, int argc, char **argv,
                    struct mach_args *a) {
  int n_spec = 0;
  memset(a, 0, sizeof *a);
  while (spec[n_spec].name)
    n_spec++;
  a->cmd = cmd;
  a->spec = spec;
  a->n_spec = n_spec;
  for (int i = 0; i < argc; i++)
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      return -1;
  for (int i = 0; i < argc; i++) {
    const char *arg = argv[i], *eq, *val = NULL;
    int k;
    if (strncmp(arg, "--", 2) != 0 || !arg[2])
      return usage_error(c, cmd, "unexpected argument", arg);
    eq = strchr(arg + 2, '=');
    k = find_opt(spec, n_spec, arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
    if (k < 0)
      return usage_error(c, cmd, "unknown option", arg);
    if (spec[k].kind == MACH_OPT_FLAG) {
      if (eq)
        return usage_error(c, cmd, "option takes no value:", arg);
    } else if (eq) {
      val = eq + 1;
    } else if (i + 1 < argc) {
      val = argv[++i];
    } else {
      return usage_error(c, cmd, "missing value for", arg);
    }
    if (spec[k].kind == MACH_OPT_MULTI) {
      if (a->count[k] == MACH_MAX_MULTI)
        return usage_error(c, cmd, "too many uses of", arg);
      a->val[k][a->count[k]++] = val;
    } else {
      a->val[k][0] = val; /* the last one wins, as in GNU tools */
      a->count[k] = 1;
    }
  }
  return 0;
}

static int index_of(const struct mach_args *a, const char *name) {
  return find_opt(a->spec, a->n_spec, name, strlen(name));
}

int mach_arg_count(const struct mach_args *a, const char *name) {
  int k = index_of(a, name);
  return k < 0 ? 0 : a->count[k];
}

const char *mach_arg_nth(const struct mach_args *a, const char *name, int i) {
  int k = index_of(a, name);
  return k < 0 || i >= a->count[k] ? NULL : a->val[k][i];
}

const char *mach_arg(const struct mach_args *a, const char *name) {
  int k = index_of(a, name);
  if (k < 0 || a->count[k] == 0)
    return NULL;
  /* a flag has count 1 and no value: report it as present */
  return a->val[k][a->count[k] - 1] ? a->val[k][a->count[k] - 1] : "";
}

int mach_arg_missing(const struct mach_ctx *c, const struct mach_args *a, const char *name) {
  mach_err(c, "%s: missing --%s (try '%s %s --help')", a->cmd, name, c->prog, a->cmd);
  return 2;
}

int mach_arg_required(const struct mach_ctx *c, const struct mach_args *a,
                      const char *name, const char **out) {
  *out = mach_arg(a, name);
  return *out ? 0 : mach_arg_missing(c, a, name);
}

static int bad_value(const struct mach_ctx *c, const struct mach_args *a, const char *name,
                     const char *v, const char *want) {
  mach_err(c, "%s: --%s: '%s' is not %s (try '%s %s --help')", a->cmd, name, v, want,
           c->prog, a->cmd);
  return 2;
}

int mach_arg_double(const struct mach_ctx *c, const struct mach_args *a, const char *name,
                    double def, double lo, double hi, double *out) {
  const char *v = mach_arg(a, name);
  char *end;
  char want[96];
  *out = def;
  if (!v)
    return 0;
  errno = 0;
  *out = strtod(v, &end);
  snprintf(want, sizeof want, "a number in [%g, %g]", lo, hi);
  if (!*v || *end || errno || !isfinite(*out) || *out < lo || *out > hi)
    return bad_value(c, a, name, v, want);
  return 0;
}

int mach_arg_long(const struct mach_ctx *c, const struct mach_args *a, const char *name,
                  long def, long lo, long *out) {
  const char *v = mach_arg(a, name);
  char *end;
  char want[64];
  *out = def;
  if (!v)
    return 0;
  errno = 0;
  *out = strtol(v, &end, 10);
  /* counts (epochs, batch, steps): at most INT_MAX, so that products with
   * sizes stay far from overflowing a long */
  snprintf(want, sizeof want, "an integer in [%ld, %d]", lo, INT_MAX);
  if (!*v || *end || errno || *out < lo || *out > INT_MAX)
    return bad_value(c, a, name, v, want);
  return 0;
}

int mach_arg_u64(const struct mach_ctx *c, const struct mach_args *a, const char *name,
                 uint64_t def, uint64_t *out) {
  const char *v = mach_arg(a, name);
  char *end;
  *out = def;
  if (!v)
    return 0;
  errno = 0;
  *out = strtoull(v, &end, 10);
  if (!*v || *v == '-' || *end || errno)
    return bad_value(c, a, name, v, "an unsigned 64-bit integer");
  return 0;
}
