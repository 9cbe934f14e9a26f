/* emit_desc.c — the model descriptor a generated binary hands to the runtime
 * (struct mach_model in runtime/machrt.h), and its main(). */
#include "emit_internal.h"

#include <string.h>

/* A C string literal for s. */
static void c_string(StrBuf *c, const char *s) {
  sb_puts(c, "\"");
  for (; *s; s++) {
    if (*s == '"' || *s == '\\')
      sb_printf(c, "\\%c", *s);
    else if ((unsigned char)*s < 32)
      sb_printf(c, "\\%03o", (unsigned char)*s);
    else
      sb_printf(c, "%c", *s);
  }
  sb_puts(c, "\"");
}

static void shape_init(StrBuf *c, const Shape *s) {
  sb_printf(c, "%d, {%d", 1 + s->ngrid, s->channels);
  for (int i = 0; i < s->ngrid; i++)
    sb_printf(c, ", %d", s->grid[i]);
  sb_puts(c, "}");
}

static const char *init_name(InitKind k) {
  switch (k) {
  case INIT_ZEROS: return "MACH_INIT_ZEROS";
  case INIT_ONES: return "MACH_INIT_ONES";
  case INIT_NORMAL: return "MACH_INIT_NORMAL";
  default: return "MACH_INIT_UNIFORM";
  }
}

static void int_array(StrBuf *c, const char *name, const int *v, int n) {
  sb_printf(c, "static const int %s[] = {", name);
  for (int i = 0; i < n; i++)
    sb_printf(c, "%s%d", i ? ", " : "", v[i]);
  sb_printf(c, "%s};\n", n ? "" : "0");
}

/* Calls fn(ctx, start, len) for each run of parameter p's entries (start
 * from p's first entry) that arrow ar reads: a dense weight's slice, a row
 * at a time, or a kernel's taps by channel slice (a transposed weight, or an
 * adjoint arrow, reads W's input axis with its destination channels). The
 * descriptor's live runs and the backward pass's gradient writes both come
 * from here, so the entries the optimizer updates are those it is given. */
void emit_weight_runs(const IrMachine *m, const IrArrow *ar, const IrParam *p,
                      void (*fn)(void *ctx, long start, long len), void *ctx) {
  const IrBlock *s = IR_BLOCK(m, ar->src), *d = IR_BLOCK(m, ar->dst);
  bool swap = ar->w.transposed != ar->adjoint;
  bool dense = ar->kind == ARROW_DENSE;
  long rows = dense ? (swap ? d->size : s->size) : (swap ? d->shape.channels : s->shape.channels);
  long cols = dense ? (swap ? s->size : d->size) : (swap ? s->shape.channels : d->shape.channels);
  int taps_axes = p->rank - 2;
  int k[IR_MAX_GRID] = {0};
  for (;;) { /* every tap (one pass for a dense weight): an odometer over the kernel axes */
    long tap = 0;
    for (int a = 0; a < taps_axes; a++)
      tap = tap * p->shape[a] + ar->w.k_off[a] + k[a];
    for (long r = 0; r < rows; r++)
      fn(ctx, (tap * p->shape[p->rank - 2] + ar->w.in_off + r) * p->shape[p->rank - 1] + ar->w.out_off, cols);
    int a = taps_axes - 1;
    while (a >= 0 && ++k[a] == ar->ax[a].kernel)
      k[a--] = 0;
    if (a < 0)
      break;
  }
}

static void mark_run(void *ctx, long start, long len) { memset((bool *)ctx + start, 1, (size_t)len); }

/* The arrows reading each parameter (a list per parameter: first[pi], then
 * next[arrow]) and whether a block reads it as its bias: gathered in one
 * pass, so that a machine of many parameters is not scanned once for each. */
typedef struct ParamUse {
  int *first, *next;
  bool *bias;
} ParamUse;

static ParamUse param_use(Arena *a, const IrMachine *m) {
  ParamUse u;
  u.first = arena_alloc(a, sizeof(int) * ((size_t)m->params.len + 1));
  u.next = arena_alloc(a, sizeof(int) * ((size_t)m->arrows.len + 1));
  u.bias = arena_alloc(a, (size_t)m->params.len + 1);
  for (int pi = 0; pi < m->params.len; pi++)
    u.first[pi] = -1;
  for (int i = m->arrows.len - 1; i >= 0; i--) {
    int pi = IR_ARROW(m, i)->w.param;
    if (pi >= 0) {
      u.next[i] = u.first[pi];
      u.first[pi] = i;
    }
  }
  for (int i = 0; i < m->blocks.len; i++)
    if (IR_BLOCK(m, i)->bias >= 0)
      u.bias[IR_BLOCK(m, i)->bias] = true;
  return u;
}

/* Which of parameter pi's entries the machine reads, or NULL when it reads
 * them all (a bias, or a weight on an arrow of another kind). */
static const bool *param_reads(Arena *a, const IrMachine *m, const ParamUse *u, int pi) {
  const IrParam *p = IR_PARAM(m, pi);
  if (u->bias[pi]) /* a bias is read whole */
    return NULL;
  bool *read = arena_alloc(a, (size_t)p->size + 1);
  for (int i = u->first[pi]; i >= 0; i = u->next[i]) {
    const IrArrow *ar = IR_ARROW(m, i);
    if (ar->kind != ARROW_DENSE && ar->kind != ARROW_CONV)
      return NULL;
    emit_weight_runs(m, ar, p, mark_run, read);
  }
  for (long i = 0; i < p->size; i++)
    if (!read[i])
      return read;
  return NULL;
}

/* The next run of entries read at or after *at (all of them without read):
 * false when there is none, else its start and *at just past it. */
static bool next_read_run(const bool *read, long size, long *at, long *start) {
  long i = *at;
  while (i < size && read && !read[i])
    i++;
  *start = i;
  while (i < size && (!read || read[i]))
    i++;
  *at = i;
  return *start < size;
}

/* static const long live_P[] = {start, length, ...}: the runs of parameter
 * pi's entries that the machine reads; returns the runs' count, or -1 when it
 * reads every entry. */
static int emit_live(Arena *a, const IrMachine *m, const ParamUse *u, int pi, StrBuf *c) {
  const IrParam *p = IR_PARAM(m, pi);
  const bool *read = param_reads(a, m, u, pi);
  if (!read)
    return -1;
  int runs = 0;
  sb_printf(c, "static const long live_%s[] = {", p->cname);
  for (long at = 0, i; next_read_run(read, p->size, &at, &i); runs++)
    sb_printf(c, "%s%ld, %ld", !runs ? "" : runs % 8 ? ", " : ",\n    ", i, at - i);
  sb_printf(c, "%s};\n", runs ? "" : "0, 0");
  return runs;
}

long emit_read_runs(Arena *a, const IrMachine *m, long **runs) {
  ParamUse use = param_use(a, m);
  long n = 0, cap = 16, end = -1; /* end: where the last run ends */
  long *r = arena_alloc(a, sizeof(long) * (size_t)cap);
  for (int pi = 0; pi < m->params.len; pi++) {
    const IrParam *p = IR_PARAM(m, pi);
    const bool *read = param_reads(a, m, &use, pi);
    for (long at = 0, i; next_read_run(read, p->size, &at, &i); end = p->offset + at) {
      if (p->offset + i == end) { /* goes on from the last run */
        r[2 * n - 1] += at - i;
        continue;
      }
      if (2 * n + 2 > cap) {
        long *more = arena_alloc(a, sizeof(long) * (size_t)(cap *= 2));
        memcpy(more, r, sizeof(long) * (size_t)(2 * n));
        r = more;
      }
      r[2 * n] = p->offset + i, r[2 * n + 1] = at - i;
      n++;
    }
  }
  *runs = r;
  return n;
}

void emit_descriptor(const IrMachine *m, const Layout *lay, const EmitOptions *o, const char *prefix,
                     StrBuf *c) {
  Arena *a = arena_new();
  sb_puts(c, "\n/* ---- the model, as the runtime sees it ---------------------------------- */\n\n");
  sb_puts(c, "static const struct mach_block blocks[] = {\n");
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    sb_puts(c, "    {");
    c_string(c, b->name);
    sb_puts(c, ", ");
    c_string(c, ir_act_text(a, &b->act));
    sb_puts(c, ", ");
    shape_init(c, &b->shape);
    sb_printf(c, ", %ld, %ld, %ld, %d},\n", b->size, lay->y_off[i], lay->z_off[i], b->level);
  }
  sb_puts(c, "};\n");
  int_array(c, "inputs", m->inputs, m->ninputs);
  int_array(c, "outputs", m->outputs, m->noutputs);
  /* the parts of the parameters the machine reads (the optimizer's runs) */
  int *runs = arena_alloc(a, sizeof(int) * ((size_t)m->params.len + 1));
  ParamUse use = param_use(a, m);
  for (int i = 0; i < m->params.len; i++)
    runs[i] = emit_live(a, m, &use, i, c);
  sb_puts(c, "static const struct mach_param params[] = {\n");
  for (int i = 0; i < m->params.len; i++) {
    const IrParam *p = IR_PARAM(m, i);
    sb_puts(c, "    {");
    c_string(c, p->name);
    sb_printf(c, ", %d, {", p->rank);
    for (int k = 0; k < p->rank; k++)
      sb_printf(c, "%s%d", k ? ", " : "", p->shape[k]);
    sb_printf(c, "}, %ld, %ld, %s, %.17g, %d", p->size, p->offset, init_name(p->init), p->init_scale,
              p->decay);
    if (runs[i] >= 0)
      sb_printf(c, ", %d, live_%s},\n", runs[i], p->cname);
    else
      sb_puts(c, ", 0, 0},\n");
  }
  if (!m->params.len)
    sb_puts(c, "    {\"\", 0, {0}, 0, 0, MACH_INIT_ZEROS, 0, 0, 0, 0},\n");
  sb_puts(c, "};\n\n");
  /* the optimizer step of `train` among the threads, for a model whose
   * parameters are worth it (the threshold below); the runtime, built without
   * OpenMP, calls it back */
  bool par_for = o->backward && m->param_size >= 1 << 16;
  if (par_for)
    sb_puts(c, "#ifdef _OPENMP\n#include <omp.h>\n#endif\n\n"
               "/* The runtime's passes over the parameters in train (the optimizer step,\n"
               " * the finiteness checks) split among the threads: [0, n) in one contiguous\n"
               " * piece per thread. */\n"
               "static void par_for(long n, void (*fn)(void *, long, long), void *ctx)\n{\n"
               "#ifdef _OPENMP\n"
               "    if (n >= 1 << 16 && omp_get_max_threads() > 1) {\n"
               "#pragma omp parallel\n"
               "        {\n"
               "            long t = omp_get_thread_num(), T = omp_get_num_threads();\n"
               "            fn(ctx, n * t / T, n * (t + 1) / T);\n"
               "        }\n"
               "        return;\n"
               "    }\n"
               "#endif\n"
               "    fn(ctx, 0, n);\n}\n\n");
  sb_printf(c, "const struct mach_model %s_model = {\n", prefix);
  sb_puts(c, "    .name = ");
  c_string(c, m->name);
  sb_printf(c, ",\n    .dtype = \"%s\",\n    .source = ", o->f32 ? "f32" : "f64");
  c_string(c, m->source);
  sb_printf(c, ",\n    .n_blocks = %d, .blocks = blocks,\n", m->blocks.len);
  sb_printf(c, "    .n_inputs = %d, .inputs = inputs,\n", m->ninputs);
  sb_printf(c, "    .n_outputs = %d, .outputs = outputs,\n", m->noutputs);
  sb_printf(c, "    .n_params = %d, .params = params,\n", m->params.len);
  sb_printf(c, "    .param_size = %ld, .state_size = %ld,\n", m->param_size, lay->state_size);
  sb_printf(c, "    .n_levels = %d, .time_length = %d, .timeblock = %d,\n", m->nlevels,
            m->time_length, m->timeblock);
  sb_printf(c, "    .forward_flops = %.17g,\n", ir_forward_flops(m));
  sb_printf(c, "    .forward = %s_forward,\n", prefix);
  sb_printf(c, "    .backward = %s,\n", o->backward ? arena_printf(a, "%s_backward", prefix) : "0");
  if (par_for)
    sb_puts(c, "    .par_for = par_for,\n");
  sb_puts(c, "};\n\n");
  sb_printf(c, "#ifndef MACH_NO_MAIN\nint main(int argc, char **argv)\n{\n"
               "    return mach_main(argc, argv, &%s_model);\n}\n#endif\n", prefix);
  arena_free(a);
}
