/* emit_chunk.c — the convolutions in time into a block of a chunked level
 * (a recurrent machine's, and its dual's) as one windowed product per group
 * of samples.
 *
 * In a chunk of time [t0, t1), the arrows into a block read their sources
 * at a few lags each, not the same for every source (the RecurMachine: the
 * earlier blocks at every lag 0 ..= pad, itself and the later ones only at
 * lags >= timeblock). One mm_grid call per tap would gather each row of B
 * from every sample's row in runs of t1 - t0 steps and scatter its tile
 * into y the same way. Here every (arrow, tap) pair is a slot s of one
 * product, its input time the output's plus rel[s] = k d - p0. Per group of
 * samples, the times the arrows read are copied, the samples innermost, into
 *   pad[c, tau, n] = z_j[n0 + n, c - j ch, t0 + lo + tau]   (0 off the grid)
 * (arrow j's channels at j ch, lo the least rel), so that row (s, q) of the
 * patch matrix is the window of channel j ch + q starting at tau = rel[s] -
 * lo, over the chunk's outputs (tau, n): mm_taps reads it in place, one
 * product (co x (s, q)) ((s, q) x (tau, n)) of inner dimension slots x ch.
 * The product is added into y, or, when it takes every arrow into the block,
 * writes y (+ the input or the bias) and z = sigma(y). A slot skips the blocks of columns whose
 * window lies off the grid (tap_on, per chunk: the first steps of time read
 * no past). The weights are packed into the product's rows once, before the
 * chunks (wk_BLOCK[(s, q), co]), on the function's stack: at most
 * PACK_BYTES of them; standalone code, whose stack is small, keeps the
 * per-tap products. */
#include <limits.h>
#include <string.h>

#include "emit_internal.h"

enum {
  SLOTS_MAX = 256,           /* slots of one product */
  CHUNK_COLS = 512,          /* a group's columns: enough samples for this many (tau, n) */
  CHUNK_GROUP = 64,          /* samples in a group, at most */
  CHUNK_GROUP_BYTES = 384 * 1024, /* pad and prod of a group (in L2) */
  PACK_BYTES = 1024 * 1024,  /* all the packed weights of a function */
  ROWS = 4                   /* the product's rows come in MR = 4 */
};

typedef struct Chunked {
  const IrArrow *ar[SLOTS_MAX];
  const char *z[SLOTS_MAX]; /* the arrows' sources */
  int n;
  long slot0[SLOTS_MAX + 1]; /* arrow j's slots: slot0[j] .. slot0[j + 1] */
  long rel[SLOTS_MAX];       /* per slot, the input's time minus the output's */
  long lo[SLOTS_MAX], hi[SLOTS_MAX]; /* per arrow, its least and greatest rel */
  long slots, ch, co, mp;    /* slots, channels per source, destination channels, rows */
  long T, tb;                /* the time axis, the chunk */
  long low, span;            /* the least rel of all; pad's steps of time per channel */
  long group, ld, pad_sz, prod_sz, pack;
} Chunked;

static long round_to(long v, long m) { return (v + m - 1) / m * m; }

/* A causal (or anti-causal) convolution in time on a 1-D grid of the
 * machine's time axis, unit stride, with channels enough for a product
 * (emit_grid_groupable's rule). */
static bool in_time(const Emit *e, const IrArrow *ar, long T) {
  if (!emit_grid_groupable(e, ar) || ar->ngrid != 1)
    return false;
  const IrBlock *s = IR_BLOCK(e->m, ar->src), *d = IR_BLOCK(e->m, ar->dst);
  return s->size == s->shape.channels * T && d->size == d->shape.channels * T;
}

/* The arrows of list[0 .. n) not done that run in the product, with its
 * sizes; false when none does or the product does not fit. */
static bool chunked_of(Emit *e, const int *list, const char *const *zs, int n, const bool *done,
                       Chunked *c) {
  const IrMachine *p = e->primal;
  *c = (Chunked){.T = p->time_length, .tb = p->timeblock, .n = 0};
  if (e->o->standalone || !e->before_chunks || c->T <= 0 || c->tb <= 0)
    return false;
  for (int i = 0; i < n && c->n < SLOTS_MAX; i++) {
    const IrArrow *ar = IR_ARROW(e->m, list[i]);
    if (done[i] || !in_time(e, ar, c->T))
      continue;
    long ch = IR_BLOCK(e->m, ar->src)->shape.channels, k = ar->ax[0].kernel;
    if (c->n && ch != c->ch)
      continue;
    if (c->slots + k > SLOTS_MAX)
      break;
    c->ch = ch;
    c->co = IR_BLOCK(e->m, ar->dst)->shape.channels;
    c->ar[c->n] = ar;
    c->z[c->n] = zs[i];
    c->slot0[c->n] = c->slots;
    c->lo[c->n] = LONG_MAX, c->hi[c->n] = LONG_MIN;
    for (long t = 0; t < k; t++, c->slots++) {
      long rel = t * ar->ax[0].dilation - ar->ax[0].pad0;
      c->rel[c->slots] = rel;
      c->lo[c->n] = rel < c->lo[c->n] ? rel : c->lo[c->n];
      c->hi[c->n] = rel > c->hi[c->n] ? rel : c->hi[c->n];
    }
    c->n++;
    c->slot0[c->n] = c->slots;
  }
  if (!c->n || c->co < ROWS) /* into fewer channels most of the product's rows would be zeros */
    return false;
  long hi = LONG_MIN, esz = e->o->f32 ? 4 : 8, nb = emit_nb(e->o);
  c->low = LONG_MAX;
  for (int j = 0; j < c->n; j++) {
    c->low = c->lo[j] < c->low ? c->lo[j] : c->low;
    hi = c->hi[j] > hi ? c->hi[j] : hi;
  }
  c->span = c->tb + hi - c->low;
  c->mp = round_to(c->co, ROWS);
  c->pack = c->slots * c->ch * c->mp;
  if (esz * (e->chunk_packed + c->pack) > PACK_BYTES)
    return false;
  long want = (CHUNK_COLS + c->tb - 1) / c->tb;
  for (long g = want < CHUNK_GROUP ? want : CHUNK_GROUP; g >= 1; g--) {
    c->group = g;
    c->ld = round_to(c->tb * g, nb);
    c->pad_sz = c->n * c->ch * c->span * g + nb; /* mm_taps reads up to NB past a row */
    c->prod_sz = c->mp * c->ld;
    if (esz * (c->pad_sz + c->prod_sz) <= CHUNK_GROUP_BYTES)
      break;
  }
  return true;
}

/* v + c as text ("t0 - 6", "t0") */
static const char *offset(Emit *e, const char *v, long c) { return ix_text(e->a, ix_addc(ix_var(v), c)); }

/* Before the chunks: wk_BLOCK[(s, q) * mp + co] = the weight of slot s at
 * channel q of its source and channel co of the destination (0 past co). */
static const char *emit_pack(Emit *e, const Chunked *c, const char *block) {
  const char *wk = arena_printf(e->a, "wk_%s", block);
  StrBuf *body = e->c;
  e->c = e->before_chunks;
  emit_line(e, "real %s[%ld]; /* %s[(s, q) * %ld + co]: the weights of the products into %s, slot s =", wk,
            c->pack, wk, c->mp, block);
  emit_line(e, " * (arrow, tap), q the source's channel%s */", c->mp > c->co ? ", 0 past the channels" : "");
  if (c->mp > c->co)
    emit_line(e, "memset(%s, 0, sizeof(real) * %ld);", wk, c->pack);
  for (int j = 0; j < c->n; j++) {
    const IrArrow *ar = c->ar[j];
    EmitLoop l[3] = {{.var = "k0", .n = ar->ax[0].kernel}, {.var = "ci", .n = c->ch}, {.var = "co", .n = c->co}};
    Ix idx[3];
    int base = emit_loops(e, l, 3, false, idx);
    Ix slot = ix_addc(idx[0], c->slot0[j]);
    Ix at = ix_add(ix_scale(e->a, ix_add(ix_scale(e->a, slot, c->ch), idx[1]), c->mp), idx[2]);
    emit_line(e, "%s[%s] = %s[%s];", wk, ix_text(e->a, at), emit_pname(e, ar->w.param),
              ix_text(e->a, emit_weight_ix(e, ar, idx, idx[1], idx[2])));
    emit_close_to(e, base);
  }
  e->c = body;
  e->chunk_packed += c->pack;
  return wk;
}

/* The tables of the slots: where each starts in pad (its arrow's channels,
 * its time; times gs), and per chunk the columns that read the grid. */
static void emit_slot_tables(Emit *e, const Chunked *c) {
  StrBuf at = {0}, rel = {0};
  for (int j = 0; j < c->n; j++)
    for (long s = c->slot0[j]; s < c->slot0[j + 1]; s++) {
      sb_printf(&at, "%s%ld * gs", s ? ", " : "", j * c->ch * c->span + c->rel[s] - c->low);
      sb_printf(&rel, "%s%ld", s ? ", " : "", c->rel[s]);
    }
  emit_line(e, "const long tap_at[%ld] = {%s};", c->slots, at.data);
  emit_line(e, "const long rel[%ld] = {%s}; /* the input's time minus the output's */", c->slots, rel.data);
  sb_free(&at);
  sb_free(&rel);
  emit_line(e, "long tap_on[%ld]; /* slot s reads the grid for the columns [tap_on[2 s], tap_on[2 s + 1]) */",
            2 * c->slots);
  emit_open(e, "for (long s = 0; s < %ld; s++)", c->slots);
  emit_line(e, "const long f = -rel[s] - t0 > 0 ? -rel[s] - t0 : 0, l = %ld - rel[s] - t0 < t1 - t0 ? %ld - rel[s] - t0 : t1 - t0;",
            c->T, c->T);
  emit_line(e, "tap_on[2 * s] = f * gs;");
  emit_line(e, "tap_on[2 * s + 1] = (l > f ? l : f) * gs;");
  emit_close_to(e, e->depth - 1);
}

/* "ch * cs + ": where row ch of pad starts, "" for row 0. */
static const char *row_start(Emit *e, Ix ch) {
  long only;
  if (ix_is_const(ch, &only))
    return only ? arena_printf(e->a, "%ld * cs + ", only) : "";
  bool alone = ch.n == 1 && ch.t[0].coef == 1; /* a loop variable: no parentheses */
  return arena_printf(e->a, alone ? "%s * cs + " : "(%s) * cs + ", ix_text(e->a, ch));
}

/* pad[j ch + ci, t - t0 - low, n] = z_j[n0 + n, ci, t] over the times
 * [t0 + lo_j, t1 + hi_j) arrow j reads in this chunk: those on the grid,
 * [ta, te), copied, the others zero (a test per element made clang branch
 * on each). Element by element, the samples outside the times: blocks of
 * samples turned through shuffles (emit_turn), or the samples innermost,
 * gathered, were both slower (recur[32]*5's forward: 1.6 and 1.2 ms
 * against 1.14). */
static void emit_copy(Emit *e, const Chunked *c, int j) {
  const IrBlock *s = IR_BLOCK(e->m, c->ar[j]->src);
  const char *from = offset(e, "t0", c->lo[j]), *to = offset(e, "t1", c->hi[j]);
  int base = e->depth;
  emit_scope(e);
  emit_line(e, "/* [ta, te): the times on the grid, inside [%s, %s) */", from, to);
  emit_line(e, "const long ta = %s < 0 ? (%s < 0 ? %s : 0) : %s;", from, to, to, from);
  emit_line(e, "const long te = %s > %ld ? (%s > %ld ? %s : %ld) : %s;", to, c->T, from, c->T, from, c->T, to);
  EmitLoop l[2] = {{.var = "ci", .n = c->ch}, {.var = "n", .hi = "group"}};
  Ix idx[2];
  emit_loops(e, l, 2, true, idx);
  const char *row = row_start(e, ix_addc(idx[0], j * c->ch));
  const char *at = arena_printf(e->a, "pad[%s(%s) * gs + n]", row,
                                ix_text(e->a, ix_addc(ix_addv(ix_var("t"), "t0", -1), -c->low)));
  Ix zi = ix_addv(ix_add(ix_scale(e->a, ix_add(ix_var("n0"), idx[1]), s->size), ix_scale(e->a, idx[0], c->T)), "t", 1);
  int rows = e->depth;
  const char *shrt = emit_short(e, c->tb + c->hi[j] - c->lo[j]);
  emit_head(e, "%sfor (long t = %s; t < ta; t++)", shrt, from);
  emit_line(e, "%s = 0;", at);
  emit_close_to(e, rows);
  emit_head(e, "%sfor (long t = ta; t < te; t++)", shrt);
  emit_line(e, "%s = %s[%s];", at, c->z[j], ix_text(e->a, zi));
  emit_close_to(e, rows);
  emit_head(e, "%sfor (long t = te; t < %s; t++)", shrt, to);
  emit_line(e, "%s = 0;", at);
  emit_close_to(e, base);
}

/* Whether sigma(y[k]) reads y alone (not the primal state, or a gate): then
 * it runs over the product's rows, the samples innermost. */
static bool self_act(const Emit *e, const EmitAct *act) {
  ActKind k = IR_BLOCK(e->m, act->block)->act.kind;
  return k != ACT_DERIV && k != ACT_MUL;
}

/* y[k] = init[k] + prod (+ bias[co]), z[k] = sigma(y[k]) as first says, or
 * y[k] += prod. A sigma of y alone runs over prod's rows (vectors of
 * samples), then y and z are written element by element; one that reads
 * the primal state at k runs along the chunk's times of each (sample,
 * channel), masked vectors of a few steps. */
static void emit_output(Emit *e, const Chunked *c, const char *y, const EmitFirst *first) {
  const IrBlock *d = IR_BLOCK(e->m, c->ar[0]->dst);
  const EmitAct *act = first ? first->act : NULL;
  Ix co;
  int base = emit_loops(e, &(EmitLoop){.var = "co", .n = c->co}, 1, true, &co);
  const char *k = ix_text(e->a, ix_addv(ix_add(ix_scale(e->a, ix_add(ix_var("n0"), ix_var("n")), d->size),
                                               ix_scale(e->a, co, c->T)), "t", 1));
  const char *cot = ix_text(e->a, co);
  emit_line(e, "real *const v = %s; /* v[(t - t0) * gs + n] */", ix_at(e->a, "prod", ix_scale(e->a, co, c->ld)));
  int rows = e->depth;
  if (act && !self_act(e, act)) {
    const char *yk = first->init  ? arena_printf(e->a, "%s[k] + v[(t - t0) * gs + n]", first->init)
                     : first->bias ? arena_printf(e->a, "v[(t - t0) * gs + n] + %s[%s]", first->bias, cot)
                                   : "v[(t - t0) * gs + n]";
    const char *zk = act->expr(e, act->block, y, "k");
    emit_head(e, "for (long n = 0; n < group; n++)");
    emit_open(e, "%sfor (long t = t0; t < t1; t++)", emit_masked(e, c->tb, zk));
    emit_line(e, "const long k = %s;", k);
    emit_line(e, "%s[k] = %s;", y, yk);
    emit_line(e, "%s[k] = %s;", act->z, zk);
    emit_close_to(e, base);
    return;
  }
  if (first && first->init) {
    emit_head(e, "for (long n = 0; n < group; n++)");
    emit_head(e, "%sfor (long t = t0; t < t1; t++)", emit_short(e, c->tb));
    emit_line(e, "v[(t - t0) * gs + n] += %s[%s];", first->init, k);
    emit_close_to(e, rows);
  }
  if (first && first->bias) {
    emit_head(e, "for (long u = 0; u < (t1 - t0) * gs; u++)");
    emit_line(e, "v[u] += %s[%s];", first->bias, cot);
    emit_close_to(e, rows);
  }
  if (act) {
    emit_line(e, "real *const w = zrow; /* sigma of v */");
    emit_head(e, "for (long u = 0; u < (t1 - t0) * gs; u++)");
    emit_line(e, "w[u] = %s;", act->expr(e, act->block, "v", "u"));
    emit_close_to(e, rows);
  }
  emit_head(e, "for (long n = 0; n < group; n++)");
  emit_open(e, "%sfor (long t = t0; t < t1; t++)", emit_short(e, c->tb));
  emit_line(e, "const long k = %s;", k);
  emit_line(e, "%s[k] %s= v[(t - t0) * gs + n];", y, first ? "" : "+");
  if (act)
    emit_line(e, "%s[k] = w[(t - t0) * gs + n];", act->z);
  emit_close_to(e, base);
}

static void emit_chunk_product(Emit *e, const Chunked *c, const char *wk, const char *y, const EmitFirst *first) {
  for (int j = 0; j < c->n; j++)
    emit_line(e, "%s%s%s", j ? " *    + " : arena_printf(e->a, "/* %s += ", y),
              ir_arrow_text(e->a, e->m, c->ar[j], c->z[j], IR_TEXT_MATH), j + 1 == c->n ? ":" : "");
  emit_line(e, " * per group of samples, the times the arrows read copied into pad[c, tau, n] (arrow j's");
  emit_line(e, " * %s, time %s + tau), then one product (co x (s, q)) ((s, q) x (tau, n))",
            c->ch > 1 ? arena_printf(e->a, "channels from c = %ld j", c->ch) : "channel at c = j",
            offset(e, "t0", c->low));
  emit_line(e, " * of inner dimension %ld slots x %ld channels, slot s = (arrow, tap) reading pad from", c->slots,
            c->ch);
  emit_line(e, " * tau = %s, %s; the groups are independent */", offset(e, "rel[s]", -c->low),
            first ? "written into y" : "added into y");
  int base = e->depth;
  emit_scope(e);
  emit_line(e, "const long groups = (batch + %ld) / %ld;", c->group - 1, c->group);
  emit_line(e, "const long gs = (batch + groups - 1) / groups; /* samples per group */");
  emit_line(e, "const long cs = %ld * gs; /* pad's step between channels */", c->span);
  emit_slot_tables(e, c);
  emit_omp(e->c, "parallel if (split_groups(groups, (double)batch * %ld))", c->co * c->slots * c->ch * c->tb);
  emit_scope(e);
  emit_line(e, "real pad[%ld]; /* pad[c, tau, n]: %ld x %ld x gs, + NB read past the end */", c->pad_sz,
            c->n * c->ch, c->span);
  emit_line(e, "real prod[%ld]; /* prod[co, (tau, n)]: %ld x %ld */", c->prod_sz, c->mp, c->ld);
  if (first && first->act && self_act(e, first->act))
    emit_line(e, "real zrow[%ld]; /* sigma of a row of prod */", c->ld);
  emit_omp(e->c, "for schedule(static)");
  emit_open(e, "for (long n0 = 0; n0 < batch; n0 += gs)");
  emit_line(e, "const long group = batch - n0 < gs ? batch - n0 : gs;");
  emit_line(e, "/* the product's columns: past the last whole block of NB, or samples past the group,");
  emit_line(e, " * it reads pad beyond what the copies write; then zeros there */");
  emit_head(e, "if (group < gs || ((t1 - t0 - 1) * gs + group) %% %ld)", emit_nb(e->o));
  emit_line(e, "memset(pad, 0, sizeof(real) * (%ld * cs + %ld));", c->n * c->ch, emit_nb(e->o));
  emit_close_to(e, e->depth - 1);
  for (int j = 0; j < c->n; j++)
    emit_copy(e, c, j);
  emit_call(e, "mm_taps", (EmitArg[]){{"m", arena_printf(e->a, "%ld", c->mp)}, {"n", "(t1 - t0 - 1) * gs + group"},
                                      {"taps", arena_printf(e->a, "%ld", c->slots)},
                                      {"ch", arena_printf(e->a, "%ld", c->ch)}, {"a", wk}, {"b", "pad"},
                                      {"tap_at", "tap_at"}, {"tap_on", "tap_on"}, {"bcs", "cs"},
                                      {"c", "prod"}, {"ldc", arena_printf(e->a, "%ld", c->ld)}},
            (int[]){4, 4, 3}, 3);
  emit_output(e, c, y, first);
  emit_close_to(e, base);
}

int emit_chunk_windows(Emit *e, const int *list, const char *const *zs, int n, const char *y,
                       const EmitFirst *first, bool *done) {
  Chunked c;
  if (!chunked_of(e, list, zs, n, done, &c) || (first && c.n < n))
    return 0;
  int before = 0; /* arrows of earlier products into the block: a name of its own */
  for (int i = 0; i < n; i++)
    before += done[i];
  const char *block = IR_BLOCK(e->m, c.ar[0]->dst)->cname;
  const char *wk = emit_pack(e, &c, before ? arena_printf(e->a, "%s_%d", block, before) : block);
  emit_chunk_product(e, &c, wk, y, first);
  for (int i = 0; i < n; i++)
    for (int j = 0; j < c.n; j++)
      done[i] |= IR_ARROW(e->m, list[i]) == c.ar[j];
  return c.n;
}
