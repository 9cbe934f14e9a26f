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
  sb_puts(c, "static const struct mach_param params[] = {\n");
  for (int i = 0; i < m->params.len; i++) {
    const IrParam *p = IR_PARAM(m, i);
    sb_puts(c, "    {");
    c_string(c, p->name);
    sb_printf(c, ", %d, {", p->rank);
    for (int k = 0; k < p->rank; k++)
      sb_printf(c, "%s%d", k ? ", " : "", p->shape[k]);
    sb_printf(c, "}, %ld, %ld, %s, %.17g, %d},\n", p->size, p->offset, init_name(p->init),
              p->init_scale, p->decay);
  }
  if (!m->params.len)
    sb_puts(c, "    {\"\", 0, {0}, 0, 0, MACH_INIT_ZEROS, 0, 0},\n");
  sb_puts(c, "};\n\n");
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
  sb_puts(c, "};\n\n");
  sb_printf(c, "#ifndef MACH_NO_MAIN\nint main(int argc, char **argv)\n{\n"
               "    return mach_main(argc, argv, &%s_model);\n}\n#endif\n", prefix);
  arena_free(a);
}
