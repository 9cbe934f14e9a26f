/* weights.c — parameters as .npz (one entry per parameter, named as in the
 * model, in the model's dtype) and the `init` command. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static int shape_matches(const struct mach_array *a, const struct mach_param *p) {
  if (a->rank != p->rank)
    return 0;
  for (int k = 0; k < p->rank; k++)
    if (a->shape[k] != p->shape[k])
      return 0;
  return 1;
}

static int load_param(const struct mach_ctx *c, const struct mach_npz *z,
                      const struct mach_param *p, mach_real *dst) {
  struct mach_array a;
  int rc = mach_npz_get(c, z, p->name, &a);
  if (rc < 0)
    mach_err(c, "%s: no entry '%s'", z->path, p->name);
  if (rc)
    return 1;
  if (!mach_dtype_is_float(a.dtype)) {
    mach_err(c, "%s: entry '%s': expected float16, float32 or float64 .npy, found '%s'",
             z->path, p->name, a.descr);
    mach_array_free(&a);
    return 1;
  }
  if (!shape_matches(&a, p)) {
    char got[80], want[80];
    long s[MACH_MAX_RANK];
    for (int k = 0; k < p->rank; k++)
      s[k] = p->shape[k];
    mach_shape_str(got, sizeof got, a.rank, a.shape);
    mach_shape_str(want, sizeof want, p->rank, s);
    mach_err(c, "%s: parameter '%s' has shape %s, expected %s", z->path, p->name, got, want);
    mach_array_free(&a);
    return 1;
  }
  mach_array_to_real(&a, dst);
  mach_array_free(&a);
  return 0;
}

/* Entries that are not parameters of the model are ignored on purpose: a
 * weights file may carry extra arrays (a grad output, notes, ...). */
int mach_load_weights(const struct mach_ctx *c, const char *path, mach_real *params) {
  struct mach_npz z;
  int rc = 0;
  if (mach_npz_open(c, path, &z))
    return 1;
  for (int p = 0; p < c->m->n_params && !rc; p++)
    rc = load_param(c, &z, &c->m->params[p], params + c->m->params[p].offset);
  mach_npz_close(&z);
  return rc;
}

int mach_save_weights(const struct mach_ctx *c, const char *path, const mach_real *params) {
  const struct mach_model *m = c->m;
  struct mach_npz_entry *e = mach_alloc(c, (size_t)m->n_params + 1, sizeof *e);
  int rc;
  if (!e)
    return 1;
  for (int p = 0; p < m->n_params; p++) {
    snprintf(e[p].name, sizeof e[p].name, "%s", m->params[p].name);
    e[p].rank = m->params[p].rank;
    for (int k = 0; k < e[p].rank; k++)
      e[p].shape[k] = m->params[p].shape[k];
    e[p].data = params + m->params[p].offset;
  }
  rc = mach_npz_save(c, path, e, m->n_params);
  free(e);
  return rc;
}

static const struct mach_optspec init_opts[] = {
  {"seed", MACH_OPT_VALUE},
  {"out", MACH_OPT_VALUE},
  {NULL, MACH_OPT_FLAG},
};

int mach_cmd_init(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  const char *out;
  uint64_t seed;
  mach_real *params;
  int rc = mach_args_parse(c, "init", init_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "init", stdout);
    return 0;
  }
  if (rc || (rc = mach_arg_u64(c, &a, "seed", 0, &seed)) ||
      (rc = mach_arg_required(c, &a, "out", &out)))
    return rc;
  params = mach_alloc(c, (size_t)c->m->param_size + 1, sizeof *params);
  if (!params)
    return 1;
  mach_init_params(c->m, seed, params);
  rc = mach_save_weights(c, out, params);
  free(params);
  return rc;
}
