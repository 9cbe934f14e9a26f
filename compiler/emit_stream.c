/* emit_stream.c — standalone streaming: a causal or recurrent machine run
 * one time step at a time, for a sensor stream.
 *
 * A machine streams when every block lives on the same one time axis and
 * every arrow is a causal convolution along it (stride 1, reading only the
 * current and earlier steps) or a skip. The stream then holds, per block,
 * a ring of its last z values, as many steps as the arrows reading it look
 * back; one step solves the blocks level by level for the current time only.
 * The levels order the lag-0 arrows (the filtration, chunked or not, puts a
 * block above every block it reads at lag 0), so the order is valid for
 * recurrent machines too; reads at lags >= 1 find earlier steps in the rings.
 * Zeroed rings are the zero padding before time 0, so step t gives what the
 * forward pass gives at time t.
 *
 * The per-step work is a few small dot products, so this emitter writes
 * plain loops over (channel, tap, input channel) and needs no kernels: it
 * shares nothing with the whole-sequence lowering of emit_conv.c. */
#include "emit_internal.h"

#include <string.h>

/* Steps an arrow looks back at tap k. */
static int lag(const IrArrow *ar, int k) { return ar->ax[0].pad0 - k * ar->ax[0].dilation; }

const char *emit_stream_why(Arena *a, const IrMachine *m) {
  if (!m->blocks.len)
    return "the machine has no blocks";
  int T = -1;
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    if (b->shape.ngrid != 1 || (T >= 0 && b->shape.grid[0] != T))
      return arena_printf(a, "block %s is not on the one time axis of the machine", b->name);
    if (b->act.kind == ACT_SOFTMAX || b->act.kind == ACT_SOFTMAX_JVP) /* not per channel */
      return arena_printf(a, "block %s applies %s over its channels, which streaming does not "
                             "support", b->name, ir_act_name(b->act.kind));
    T = b->shape.grid[0];
  }
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    const char *s = IR_BLOCK(m, ar->src)->name, *d = IR_BLOCK(m, ar->dst)->name;
    if (ar->kind == ARROW_IDENTITY)
      continue;
    if (ar->kind != ARROW_CONV || ar->ngrid != 1 || ar->w.transposed || ar->adjoint)
      return arena_printf(a, "the arrow %s -> %s is not a convolution in time", s, d);
    if (ar->ax[0].stride != 1)
      return arena_printf(a, "the arrow %s -> %s has stride %d", s, d, ar->ax[0].stride);
    if (lag(ar, ar->ax[0].kernel - 1) < 0)
      return arena_printf(a, "the arrow %s -> %s reads %d later step%s", s, d,
                  -lag(ar, ar->ax[0].kernel - 1), lag(ar, ar->ax[0].kernel - 1) == -1 ? "" : "s");
  }
  return NULL;
}

/* Slots in the ring of block b: 1 + the longest lag any arrow reads it at. */
static int ring_len(const IrMachine *m, int b) {
  int r = 1;
  for (int i = 0; i < m->arrows.len; i++) {
    const IrArrow *ar = IR_ARROW(m, i);
    if (ar->src == b && ar->kind == ARROW_CONV && lag(ar, 0) + 1 > r)
      r = lag(ar, 0) + 1;
  }
  return r;
}

void emit_stream_header(const IrMachine *m, const char *real, const char *prefix, const char *up,
                StrBuf *h) {
  sb_printf(h, "\n/* Streaming, one time step at a time: reset the stream, then each step takes\n"
           " * inputs_t[k] (the channels of input k at this step) and writes outputs_t[k]\n"
           " * (those of output k). Step t gives what %s_forward gives at time t of a\n"
           " * sequence that starts at the reset, for as long as the stream runs. The\n"
           " * stream keeps each block's last steps, a ring as deep as the arrows reading\n"
           " * it look back; allocate %s_STREAM_BYTES (or a struct %s_stream). */\n",
        prefix, up, prefix);
  sb_printf(h, "struct %s_stream {\n", prefix);
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    int r = ring_len(m, i);
    if (r > 1)
      sb_printf(h, "    int at_%s; /* the slot of the current step */\n", b->cname);
    sb_printf(h, "    %s z_%s[%d][%d]; /* %s: the last %d step%s, [slot][channel] */\n", real,
          b->cname, r, b->shape.channels, b->name, r, r == 1 ? "" : "s");
  }
  sb_printf(h, "};\n#define %s_STREAM_BYTES sizeof(struct %s_stream)\n", up, prefix);
  sb_printf(h, "void %s_stream_reset(void *stream);\n", prefix);
  sb_printf(h, "void %s_stream_step(const %s *params, void *stream, const %s *const *inputs_t,\n"
           "        %s *const *outputs_t);\n", prefix, real, real, real);
}

static int input_slot(const IrMachine *m, int b) {
  for (int k = 0; k < m->ninputs; k++)
    if (m->inputs[k] == b)
      return k;
  return -1;
}

/* The slot of block b's ring that holds the step `lag` steps back. */
static const char *slot(Arena *a, const IrMachine *m, int b, int lg) {
  const char *cn = IR_BLOCK(m, b)->cname;
  int r = ring_len(m, b);
  if (r == 1)
    return "0";
  if (lg == 0)
    return arena_printf(a, "s->at_%s", cn);
  return arena_printf(a, "(s->at_%s + %d) %% %d", cn, r - lg, r);
}

/* y += the arrow at the current step, for the channel c of the block it
 * writes: the taps k (lag p0 - k*d) and source channels ci, the loops of
 * one trip left out. */
static void stream_arrow(Emit *e, const IrMachine *m, const IrArrow *ar, Ix c) {
  Arena *a = e->a;
  const IrBlock *s = IR_BLOCK(m, ar->src);
  const char *z = arena_printf(a, "s->z_%s", s->cname);
  if (ar->kind == ARROW_IDENTITY) {
    emit_line(e, "y += %s[%s][%s]; /* skip from %s */", z, slot(a, m, ar->src, 0), ix_text(a, c), s->name);
    return;
  }
  const IrParam *p = IR_PARAM(m, ar->w.param);
  int in = p->shape[1], out = p->shape[2], K = ar->ax[0].kernel, d = ar->ax[0].dilation;
  int r = ring_len(m, ar->src), p0 = ar->ax[0].pad0;
  long w0 = ((long)ar->w.k_off[0] * in + ar->w.in_off) * out + ar->w.out_off;
  emit_line(e, "/* %s: %s%d%s%s steps back */", ir_arrow_text(a, m, ar, s->name, IR_TEXT_MATH),
            K > 1 ? "tap k reads " : "reads ", p0, K > 1 ? " - k" : "",
            K > 1 && d > 1 ? arena_printf(a, " * %d", d) : "");
  EmitLoop l[] = {{.var = "k", .n = K}, {.var = "ci", .n = s->shape.channels}};
  Ix idx[2];
  int base = emit_loops(e, l, 2, false, idx);
  Ix k = idx[0], ci = idx[1];
  const char *at = "0";
  if (r > 1) /* the slot p0 - k*d steps back of a ring of r: at + r - p0 + k*d, mod r */
    at = arena_printf(a, "(%s) %% %d", ix_text(a, ix_add(ix_addc(ix_term(arena_printf(a, "s->at_%s", s->cname), 1), r - p0),
                                                    ix_scale(a, k, d))), r);
  Ix wi = ix_add(ix_add(ix_add(ix_const(w0), ix_scale(a, k, (long)in * out)), ix_scale(a, ci, out)), c);
  emit_line(e, "y += %s[%s][%s] * %s[%s];", z, at, ix_text(a, ci), p->cname, ix_text(a, wi));
  emit_close_to(e, base);
}

/* z = sigma(y) at the current step, into the block's ring. */
static const char *stream_act(Arena *a, const IrMachine *m, const IrBlock *b, const char *c) {
  switch (b->act.kind) {
  case ACT_IDENTITY:
    return "y";
  case ACT_LEAKY_RELU:
    return arena_printf(a, "act_leaky_relu(y, (real)%.17g)", b->act.alpha);
  case ACT_MUL: {
    const IrBlock *g = IR_BLOCK(m, b->act.gate);
    return arena_printf(a, "s->z_%s[%s][%s] * y", g->cname, slot(a, m, b->act.gate, 0), c);
  }
  default:
    return arena_printf(a, "act_%s(y)", ir_act_name(b->act.kind));
  }
}

/* Block bi at the current step, channel by channel (a block of one channel
 * without the loop). */
static void stream_block(Emit *e, const IrMachine *m, int bi) {
  Arena *a = e->a;
  const IrBlock *b = IR_BLOCK(m, bi);
  emit_line(e, "/* %s */", b->name);
  Ix ch;
  int base = emit_loops(e, &(EmitLoop){.var = "c", .n = b->shape.channels}, 1, true, &ch);
  const char *c = ix_text(a, ch);
  const char *bias = b->bias >= 0 ? arena_printf(a, "%s[%s]", IR_PARAM(m, b->bias)->cname, c) : NULL;
  if (b->has_input)
    emit_line(e, "real y = inputs_t[%d][%s]%s%s;", input_slot(m, bi), c, bias ? " + " : "", bias ? bias : "");
  else
    emit_line(e, "real y = %s;", bias ? bias : "0");
  for (int i = 0; i < m->arrows.len; i++)
    if (IR_ARROW(m, i)->dst == bi)
      stream_arrow(e, m, IR_ARROW(m, i), ch);
  emit_line(e, "s->z_%s[%s][%s] = %s;", b->cname, slot(a, m, bi, 0), c, stream_act(a, m, b, c));
  emit_close_to(e, base);
}

void emit_stream(const IrMachine *m, const char *prefix, const char *up, StrBuf *c) {
  Arena *a = arena_new();
  Emit e = {.a = a, .c = c, .depth = 1}; /* for its lines and indices only */
  sb_printf(c, "\n/* Clears the stream: every earlier step reads as zero, as the zero padding\n"
           " * before time 0 of %s_forward. */\n"
           "void %s_stream_reset(void *stream)\n{\n"
           "    memset(stream, 0, sizeof(struct %s_stream));\n}\n",
        prefix, prefix, prefix);
  sb_printf(c, "\n/* One time step: each ring moves on one slot (the oldest step gives way to\n"
           " * this one), then the blocks are solved level by level at this step only. */\n"
           "void %s_stream_step(const real *params, void *stream, const real *const *inputs_t,\n"
           "        real *const *outputs_t)\n{\n"
           "    struct %s_stream *s = stream;\n", prefix, prefix);
  for (int p = 0; p < m->params.len; p++) {
    const IrParam *q = IR_PARAM(m, p);
    bool used = false;
    for (int i = 0; i < m->arrows.len; i++)
      used |= IR_ARROW(m, i)->kind == ARROW_CONV && IR_ARROW(m, i)->w.param == p;
    for (int i = 0; i < m->blocks.len; i++)
      used |= IR_BLOCK(m, i)->bias == p;
    if (used)
      sb_printf(c, "    const real *const %s = params + %s_OFF_%s;\n", q->cname, up, q->cname);
  }
  for (int i = 0; i < m->blocks.len; i++) {
    int r = ring_len(m, i);
    if (r > 1)
      sb_printf(c, "    s->at_%s = s->at_%s == %d ? 0 : s->at_%s + 1;\n", IR_BLOCK(m, i)->cname,
            IR_BLOCK(m, i)->cname, r - 1, IR_BLOCK(m, i)->cname);
  }
  for (int lv = 0; lv < m->nlevels; lv++) {
    sb_printf(c, "\n    /* ---- level %d */\n", lv);
    for (int i = 0; i < m->blocks.len; i++)
      if (IR_BLOCK(m, i)->level == lv)
        stream_block(&e, m, i);
  }
  sb_puts(c, "\n");
  for (int k = 0; k < m->noutputs; k++) {
    const IrBlock *b = IR_BLOCK(m, m->outputs[k]);
    sb_printf(c, "    memcpy(outputs_t[%d], s->z_%s[%s], %s);\n", k, b->cname, slot(a, m, m->outputs[k], 0),
              ix_text(a, ix_term("sizeof(real)", b->shape.channels)));
  }
  sb_puts(c, "}\n");
  arena_free(a);
}
