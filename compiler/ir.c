/* ir.c — small facts about the IR: activation names, shape texts, C names,
 * sizes and FLOP counts. */
#include "machc.h"

#include <ctype.h>
#include <limits.h>
#include <string.h>

static const char *const act_names[] = {
    [ACT_IDENTITY] = "identity", [ACT_TANH] = "tanh",
    [ACT_SIGMOID] = "sigmoid",   [ACT_RELU] = "relu",
    [ACT_LEAKY_RELU] = "leaky_relu", [ACT_GELU] = "gelu",
    [ACT_SOFTPLUS] = "softplus", [ACT_SIN] = "sin",
    [ACT_SOFTMAX] = "softmax",   [ACT_MUL] = "mul",
    [ACT_SOFTMAX_JVP] = "softmax_jvp", [ACT_DERIV] = "deriv",
};

const char *ir_act_name(ActKind k) { return act_names[k]; }

/* The activations a user may write by name (not the gated ones). */
bool ir_act_lookup(const char *name, ActKind *k) {
  for (int i = ACT_IDENTITY; i <= ACT_SOFTMAX; i++)
    if (strcmp(name, act_names[i]) == 0) {
      *k = (ActKind)i;
      return true;
    }
  return false;
}

char *ir_act_text(Arena *a, const Act *act) {
  if (act->kind == ACT_LEAKY_RELU)
    return arena_printf(a, "leaky_relu(alpha = %g)", act->alpha);
  if (act->kind == ACT_DERIV)
    return arena_printf(a, "%s'", act->deriv_of == ACT_LEAKY_RELU
                                      ? arena_printf(a, "leaky_relu(alpha = %g)", act->alpha)
                                      : act_names[act->deriv_of]);
  return arena_strdup(a, act_names[act->kind]);
}

char *ir_shape_text(Arena *a, const Shape *s) {
  if (s->ngrid == 0)
    return arena_printf(a, "%d", s->channels);
  char buf[128];
  int n = snprintf(buf, sizeof buf, "%d @ [", s->channels);
  for (int i = 0; i < s->ngrid; i++)
    n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%d", i ? ", " : "", s->grid[i]);
  snprintf(buf + n, sizeof buf - (size_t)n, "]");
  return arena_strdup(a, buf);
}

/* Saturates at LONG_MAX instead of overflowing: callers compare with limits. */
long ir_shape_size(const Shape *s) {
  long n = s->channels;
  for (int i = 0; i < s->ngrid; i++)
    if (__builtin_mul_overflow(n, (long)s->grid[i], &n))
      return LONG_MAX;
  return n;
}

/* Maps a .mach name to a C identifier: "m.x[2]" -> "m_x_2". A clash with a
 * name already handed out gets a numeric suffix. The value kept for each
 * name handed out is the next suffix to try when it is the base of a clash,
 * so that n names mapping to one base ("x", "x_", "x__", ...) cost n
 * lookups each, not n^2 in all. */
const char *ir_cname(Arena *a, StrMap *used, const char *prefix, const char *name) {
  size_t n = strlen(prefix) + strlen(name);
  char *buf = arena_alloc(a, n + 24);
  strcpy(buf, prefix);
  char *p = buf + strlen(prefix);
  for (const char *s = name; *s; s++) {
    if (isalnum((unsigned char)*s) || *s == '_')
      *p++ = *s;
    else if (p > buf && p[-1] != '_')
      *p++ = '_';
  }
  while (p > buf && p[-1] == '_')
    p--;
  *p = '\0';
  int *next = strmap_get(used, buf);
  if (next) {
    char *base = arena_strdup(a, buf);
    do
      snprintf(buf, n + 24, "%s_%d", base, (*next)++);
    while (strmap_get(used, buf));
  }
  char *out = arena_strdup(a, buf);
  int *mine = arena_alloc(a, sizeof *mine);
  *mine = 2;
  strmap_put(a, used, out, mine);
  return out;
}

/* In 64 bits: a kernel and a dilation of up to 2^20 each and pads of up to
 * 2^24 cannot overflow there; an extent beyond INT_MAX saturates (callers
 * compare it with a block's grid size, at most 2^24). */
int ir_conv_out(int in, const ConvAxis *ax) {
  int64_t span = ((int64_t)ax->kernel - 1) * ax->dilation + 1;
  int64_t n = (int64_t)in + ax->pad0 + ax->pad1 - span;
  if (n < 0 || ax->stride < 1)
    return 0;
  n = n / ax->stride + 1;
  return n > INT_MAX ? INT_MAX : (int)n;
}

static IrGroups group(Arena *a, int n, int ngroups, const int *key) {
  IrGroups g;
  g.start = arena_alloc(a, sizeof(int) * (size_t)(ngroups + 2));
  g.order = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    g.start[key[i] + 2]++;
  for (int k = 2; k < ngroups + 2; k++)
    g.start[k] += g.start[k - 1];
  for (int i = 0; i < n; i++) /* start[k + 1] is the next free slot of group k */
    g.order[g.start[key[i] + 1]++] = i;
  return g;
}

IrGroups ir_blocks_by_level(Arena *a, const IrMachine *m) {
  int n = m->blocks.len;
  int *key = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    key[i] = IR_BLOCK(m, i)->level;
  return group(a, n, m->nlevels, key);
}

IrGroups ir_arrows_by_dst(Arena *a, const IrMachine *m) {
  int n = m->arrows.len;
  int *key = arena_alloc(a, sizeof(int) * (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    key[i] = IR_ARROW(m, i)->dst;
  return group(a, n, m->blocks.len, key);
}

double ir_arrow_flops(const IrMachine *m, const IrArrow *ar) {
  const IrBlock *src = IR_BLOCK(m, ar->src), *dst = IR_BLOCK(m, ar->dst);
  switch (ar->kind) {
  case ARROW_DENSE:
    return 2.0 * (double)src->size * (double)dst->size;
  case ARROW_CONV: {
    double k = 1;
    for (int i = 0; i < ar->ngrid; i++)
      k *= ar->ax[i].kernel;
    return 2.0 * k * src->shape.channels * (double)dst->size;
  }
  case ARROW_AVGPOOL: {
    double k = 1;
    for (int i = 0; i < ar->ngrid; i++)
      k *= ar->ax[i].kernel;
    return k * (double)dst->size;
  }
  case ARROW_IDENTITY:
  case ARROW_GATE:
    return (double)dst->size;
  case ARROW_GAVGPOOL:
    return (double)src->size;
  }
  return 0;
}

double ir_forward_flops(const IrMachine *m) {
  double f = 0;
  for (int i = 0; i < m->arrows.len; i++)
    f += ir_arrow_flops(m, IR_ARROW(m, i));
  for (int i = 0; i < m->blocks.len; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    f += (b->bias >= 0 ? 1.0 : 0.0) * (double)b->size;
    if (b->act.kind != ACT_IDENTITY)
      f += (double)b->size;
  }
  return f;
}
