/* plan.c — the static memory plan of inference: where each block's buffers
 * live in one workspace, reusing memory across levels.
 *
 * The forward pass (NAME_forward) keeps y and z of every block, because the
 * backward pass reads them. Inference needs neither for long: nothing reads
 * y once z = sigma(y) is computed, elementwise, so z overwrites y in place,
 * and z is needed from the block's level to the last level of a block
 * reading it. These
 * lifetimes, in levels, are packed first-fit into one buffer, like a
 * register allocator's linear scan; two buffers share memory only when no
 * level sees both alive. A level of a recurrent machine that runs in chunks
 * of time repeats for every chunk, so every buffer alive during the chunked
 * levels stays alive through all of them. Outputs are written straight into
 * the caller's arrays and take no workspace.
 *
 * The live buffers form a list ordered by offset (they are pairwise alive
 * together, so they do not overlap); a gap is searched only when the free
 * space below the top could hold the buffer, so even machines of 100,000
 * blocks are planned in linear time when nothing is ever freed.
 *
 * Offsets are per sample: a batch of B samples places each buffer at
 * B * offset, as the state does, so one plan serves every batch size. */
#include "machc.h"

#include <stdlib.h>

typedef struct Buf {
  long *off;       /* where the offset goes */
  long size;       /* scalars per sample */
  int from, to;    /* levels alive, inclusive */
  int index;       /* the block, to break ties */
  int prev, next;  /* the live list, by offset; -1 at its ends */
} Buf;

static int by_birth(const void *x, const void *y) {
  const Buf *a = x, *b = y;
  if (a->from != b->from)
    return a->from < b->from ? -1 : 1;
  if (a->size != b->size) /* the largest first among equals */
    return a->size > b->size ? -1 : 1;
  return a->index - b->index;
}

typedef struct Live {
  Buf *b;
  int head, tail; /* lowest and highest offset; -1 when empty */
  long used;      /* scalars held by live buffers */
} Live;

static long end_of(const Live *l, int k) { return k < 0 ? 0 : *l->b[k].off + l->b[k].size; }

static void unlink_buf(Live *l, int k) {
  Buf *b = &l->b[k];
  if (b->prev >= 0)
    l->b[b->prev].next = b->next;
  else
    l->head = b->next;
  if (b->next >= 0)
    l->b[b->next].prev = b->prev;
  else
    l->tail = b->prev;
  l->used -= b->size;
}

/* Links k after p (p = -1: first), at the offset it was given. */
static void link_after(Live *l, int p, int k) {
  Buf *b = &l->b[k];
  b->prev = p;
  b->next = p < 0 ? l->head : l->b[p].next;
  if (b->next >= 0)
    l->b[b->next].prev = k;
  else
    l->tail = k;
  if (p >= 0)
    l->b[p].next = k;
  else
    l->head = k;
  l->used += b->size;
}

/* First fit: the lowest gap between live buffers that holds k, else the top. */
static void place(Live *l, int k) {
  long size = l->b[k].size, top = end_of(l, l->tail);
  if (top - l->used >= size) /* there may be a gap big enough */
    for (int p = -1, q = l->head; q >= 0; p = q, q = l->b[q].next)
      if (*l->b[q].off - end_of(l, p) >= size) {
        *l->b[k].off = end_of(l, p);
        link_after(l, p, k);
        return;
      }
  *l->b[k].off = top;
  link_after(l, l->tail, k);
}

void plan_inference(Arena *a, const IrMachine *m, Plan *plan) {
  int n = m->blocks.len;
  plan->y_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  plan->z_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  int *last = arena_alloc(a, sizeof(int) * (size_t)(n + 1)); /* last level reading z */
  bool *out = arena_alloc(a, (size_t)(n + 1));
  for (int i = 0; i < n; i++)
    last[i] = IR_BLOCK(m, i)->level;
  for (int k = 0; k < m->arrows.len; k++) {
    const IrArrow *ar = IR_ARROW(m, k);
    if (IR_BLOCK(m, ar->dst)->level > last[ar->src])
      last[ar->src] = IR_BLOCK(m, ar->dst)->level;
  }
  for (int i = 0; i < n; i++) {
    const IrBlock *b = IR_BLOCK(m, i);
    if (b->act.kind == ACT_MUL && b->level > last[b->act.gate])
      last[b->act.gate] = b->level;
  }
  for (int k = 0; k < m->noutputs; k++)
    out[m->outputs[k]] = true;
  Buf *bufs = arena_alloc(a, sizeof(Buf) * (size_t)(n + 1));
  int nb = 0;
  for (int i = 0; i < n; i++) {
    plan->y_off[i] = plan->z_off[i] = PLAN_OUTPUT;
    if (!out[i])
      bufs[nb++] = (Buf){&plan->z_off[i], IR_BLOCK(m, i)->size, IR_BLOCK(m, i)->level, last[i], i,
                         -1, -1};
  }
  if (m->time_length) /* chunked levels repeat: what lives in them lives through them */
    for (int k = 0; k < nb; k++)
      if (bufs[k].from < m->chunk_hi && bufs[k].to >= m->chunk_lo) {
        bufs[k].from = bufs[k].from < m->chunk_lo ? bufs[k].from : m->chunk_lo;
        bufs[k].to = bufs[k].to > m->chunk_hi - 1 ? bufs[k].to : m->chunk_hi - 1;
      }
  qsort(bufs, (size_t)nb, sizeof *bufs, by_birth);
  /* the buffers in order of death, to free them when their last level is past */
  int *dying = arena_alloc(a, sizeof(int) * (size_t)(nb + 1));
  int *count = arena_alloc(a, sizeof(int) * (size_t)(m->nlevels + 2));
  for (int k = 0; k < nb; k++)
    count[bufs[k].to + 1]++;
  for (int lv = 0; lv <= m->nlevels; lv++)
    count[lv + 1] += count[lv];
  for (int k = 0; k < nb; k++)
    dying[count[bufs[k].to]++] = k;
  Live live = {bufs, -1, -1, 0};
  plan->size = 0;
  for (int k = 0, d = 0; k < nb; k++) {
    for (; d < k && bufs[dying[d]].to < bufs[k].from; d++)
      unlink_buf(&live, dying[d]);
    place(&live, k);
    if (end_of(&live, k) > plan->size)
      plan->size = end_of(&live, k);
  }
  for (int i = 0; i < n; i++) /* z = sigma(y) in place */
    plan->y_off[i] = plan->z_off[i];
}
