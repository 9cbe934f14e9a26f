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
 * Offsets are per sample: a batch of B samples places each buffer at
 * B * offset, as the state does, so one plan serves every batch size. */
#include "machc.h"

typedef struct Buf {
  long *off;      /* where the offset goes */
  long size;      /* scalars per sample */
  int from, to;   /* levels alive, inclusive */
} Buf;

/* The last level at which block i's z is read. */
static int last_read(const IrMachine *m, int i) {
  int last = IR_BLOCK(m, i)->level;
  for (int k = 0; k < m->arrows.len; k++) {
    const IrArrow *ar = IR_ARROW(m, k);
    if (ar->src == i && IR_BLOCK(m, ar->dst)->level > last)
      last = IR_BLOCK(m, ar->dst)->level;
  }
  for (int k = 0; k < m->blocks.len; k++) {
    const IrBlock *b = IR_BLOCK(m, k);
    if (b->act.kind == ACT_MUL && b->act.gate == i && b->level > last)
      last = b->level;
  }
  return last;
}

static bool is_output(const IrMachine *m, int i) {
  for (int k = 0; k < m->noutputs; k++)
    if (m->outputs[k] == i)
      return true;
  return false;
}

/* Places b at the lowest offset clear of every placed buffer alive with it. */
static void place(Buf *placed, int n, Buf *b) {
  long off = 0;
  for (bool moved = true; moved;) {
    moved = false;
    for (int k = 0; k < n; k++) {
      const Buf *p = &placed[k];
      bool together = p->from <= b->to && b->from <= p->to;
      if (together && *p->off < off + b->size && off < *p->off + p->size) {
        off = *p->off + p->size;
        moved = true;
      }
    }
  }
  *b->off = off;
}

void plan_inference(Arena *a, const IrMachine *m, Plan *plan) {
  int n = m->blocks.len;
  plan->y_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  plan->z_off = arena_alloc(a, sizeof(long) * (size_t)(n + 1));
  Buf *bufs = arena_alloc(a, sizeof(Buf) * (size_t)(n + 1));
  int nb = 0;
  for (int i = 0; i < n; i++) {
    plan->y_off[i] = plan->z_off[i] = PLAN_OUTPUT;
    if (!is_output(m, i))
      bufs[nb++] = (Buf){&plan->z_off[i], IR_BLOCK(m, i)->size, IR_BLOCK(m, i)->level,
                         last_read(m, i)};
  }
  if (m->time_length) /* chunked levels repeat: what lives in them lives through them */
    for (int k = 0; k < nb; k++)
      if (bufs[k].from < m->chunk_hi && bufs[k].to >= m->chunk_lo) {
        bufs[k].from = bufs[k].from < m->chunk_lo ? bufs[k].from : m->chunk_lo;
        bufs[k].to = bufs[k].to > m->chunk_hi - 1 ? bufs[k].to : m->chunk_hi - 1;
      }
  /* first fit in order of birth, the largest first among equals */
  for (int i = 1; i < nb; i++)
    for (int k = i; k > 0 && (bufs[k].from < bufs[k - 1].from ||
                              (bufs[k].from == bufs[k - 1].from && bufs[k].size > bufs[k - 1].size));
         k--) {
      Buf t = bufs[k];
      bufs[k] = bufs[k - 1];
      bufs[k - 1] = t;
    }
  plan->size = 0;
  for (int k = 0; k < nb; k++) {
    place(bufs, k, &bufs[k]);
    if (*bufs[k].off + bufs[k].size > plan->size)
      plan->size = *bufs[k].off + bufs[k].size;
  }
  for (int i = 0; i < n; i++) /* z = sigma(y) in place */
    plan->y_off[i] = plan->z_off[i];
}
