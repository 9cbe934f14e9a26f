/* info.c — `BIN info [--json]`: what the model is, for people and scripts.
 * Shapes are per sample (no batch axis). */
#include <math.h>
#include <string.h>

#include "rt.h"

/* "[2, 3]" padded to a column. */
static void shape_text(FILE *f, int rank, const int *shape, int width) {
  long s[MACH_MAX_RANK];
  char buf[160];
  for (int k = 0; k < rank && k < MACH_MAX_RANK; k++)
    s[k] = shape[k];
  mach_shape_str(buf, sizeof buf, rank < MACH_MAX_RANK ? rank : MACH_MAX_RANK, s);
  fprintf(f, "%-*s", width, buf);
}

static void blocks_text(FILE *f, const struct mach_model *m, const char *title,
                        int n, const int *idx) {
  fprintf(f, "%s:\n", title);
  for (int k = 0; k < n; k++) {
    const struct mach_block *b = &m->blocks[idx[k]];
    fprintf(f, "  %-16s ", b->name);
    shape_text(f, b->rank, b->shape, 0);
    fputc('\n', f);
  }
}

static void info_text(FILE *f, const struct mach_model *m) {
  long total = 0;
  fprintf(f, "model: %s (%s)\nsource: %s\n", m->name, m->dtype, m->source ? m->source : "");
  blocks_text(f, m, "inputs", m->n_inputs, m->inputs);
  blocks_text(f, m, "outputs", m->n_outputs, m->outputs);
  fprintf(f, "levels:\n");
  for (int l = 0; l < m->n_levels; l++) {
    fprintf(f, "  %d:", l);
    for (int i = 0; i < m->n_blocks; i++)
      if (m->blocks[i].level == l)
        fprintf(f, " %s", m->blocks[i].name);
    fputc('\n', f);
  }
  fprintf(f, "parameters:\n");
  for (int p = 0; p < m->n_params; p++) {
    fprintf(f, "  %-16s ", m->params[p].name);
    shape_text(f, m->params[p].rank, m->params[p].shape, 14);
    fprintf(f, " %ld\n", m->params[p].size);
    total += m->params[p].size;
  }
  fprintf(f, "total parameters: %ld\n", total);
  fprintf(f, "forward FLOPs per sample: %.0f\n", m->forward_flops);
  if (m->time_length)
    fprintf(f, "time length: %d (timeblock %d)\n", m->time_length, m->timeblock);
}

static void json_blocks(FILE *f, const struct mach_model *m, int n, const int *idx) {
  fputc('[', f);
  for (int k = 0; k < n; k++) {
    const struct mach_block *b = &m->blocks[idx[k]];
    fprintf(f, "%s{\"name\": ", k ? ", " : "");
    mach_json_str(f, b->name);
    fprintf(f, ", \"shape\": ");
    mach_json_shape(f, b->rank, b->shape);
    fputc('}', f);
  }
  fputc(']', f);
}

static void json_levels(FILE *f, const struct mach_model *m) {
  fputc('[', f);
  for (int l = 0; l < m->n_levels; l++) {
    int first = 1;
    fprintf(f, "%s[", l ? ", " : "");
    for (int i = 0; i < m->n_blocks; i++)
      if (m->blocks[i].level == l) {
        if (!first)
          fputs(", ", f);
        mach_json_str(f, m->blocks[i].name);
        first = 0;
      }
    fputc(']', f);
  }
  fputc(']', f);
}

static void json_all_blocks(FILE *f, const struct mach_model *m) {
  fputc('[', f);
  for (int i = 0; i < m->n_blocks; i++) {
    const struct mach_block *b = &m->blocks[i];
    fprintf(f, "%s{\"name\": ", i ? ", " : "");
    mach_json_str(f, b->name);
    fprintf(f, ", \"shape\": ");
    mach_json_shape(f, b->rank, b->shape);
    fprintf(f, ", \"activation\": ");
    mach_json_str(f, b->activation);
    fprintf(f, ", \"level\": %d}", b->level);
  }
  fputc(']', f);
}

static void info_json(FILE *f, const struct mach_model *m) {
  long total = 0;
  fprintf(f, "{\"name\": ");
  mach_json_str(f, m->name);
  fprintf(f, ", \"dtype\": ");
  mach_json_str(f, m->dtype);
  fprintf(f, ", \"source\": ");
  mach_json_str(f, m->source);
  fprintf(f, ", \"inputs\": ");
  json_blocks(f, m, m->n_inputs, m->inputs);
  fprintf(f, ", \"outputs\": ");
  json_blocks(f, m, m->n_outputs, m->outputs);
  fprintf(f, ", \"parameters\": [");
  for (int p = 0; p < m->n_params; p++) {
    fprintf(f, "%s{\"name\": ", p ? ", " : "");
    mach_json_str(f, m->params[p].name);
    fprintf(f, ", \"shape\": ");
    mach_json_shape(f, m->params[p].rank, m->params[p].shape);
    /* where it starts in the flat buffer: NAME_OFF_<param> of standalone code */
    fprintf(f, ", \"size\": %ld, \"offset\": %ld}", m->params[p].size, m->params[p].offset);
    total += m->params[p].size;
  }
  fprintf(f, "], \"levels\": ");
  json_levels(f, m);
  fprintf(f, ", \"blocks\": ");
  json_all_blocks(f, m);
  fprintf(f, ", \"param_count\": %ld, \"forward_flops\": ", total);
  if (isfinite(m->forward_flops)) /* JSON has no NaN */
    fprintf(f, "%.17g", m->forward_flops);
  else
    fputs("null", f);
  fprintf(f, ", \"time_length\": %d, \"timeblock\": %d}\n", m->time_length, m->timeblock);
}

static const struct mach_optspec info_opts[] = {
  {"json", MACH_OPT_FLAG},
  {NULL, MACH_OPT_FLAG},
};

int mach_cmd_info(const struct mach_ctx *c, int argc, char **argv) {
  struct mach_args a;
  int rc = mach_args_parse(c, "info", info_opts, argc, argv, &a);
  if (rc < 0) {
    mach_usage_cmd(c, "info", stdout);
    return 0;
  }
  if (rc)
    return rc;
  if (mach_arg(&a, "json"))
    info_json(stdout, c->m);
  else
    info_text(stdout, c->m);
  return fflush(stdout) == 0 ? 0 : 1;
}
