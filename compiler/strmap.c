/* strmap.c — a hash table from strings to pointers, for every name lookup
 * of the compiler (machines, blocks, parameters, variables, C names), so
 * that compile time stays linear in the number of names.
 *
 * Open addressing with linear probing over a power-of-two table kept at most
 * half full; FNV-1a hashes. Keys are not copied (they live in the arena like
 * everything else) and entries are never removed: a compilation only adds
 * names, and a later put of the same key replaces the value. */
#include "machc.h"

#include <string.h>

static uint64_t hash(const char *s) {
  uint64_t h = 1469598103934665603u;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211u;
  return h;
}

/* The slot holding key, or the empty slot where it would go. */
static int slot(StrMap *m, const char *key) {
  int mask = m->cap - 1;
  for (int i = (int)(hash(key) & (uint64_t)mask);; i = (i + 1) & mask) {
    if (!m->keys[i])
      return i;
    m->probes++;
    if (strcmp(m->keys[i], key) == 0)
      return i;
  }
}

void *strmap_get(StrMap *m, const char *key) {
  if (!m || m->cap == 0)
    return NULL;
  int i = slot(m, key);
  return m->keys[i] ? m->vals[i] : NULL;
}

static void grow(Arena *a, StrMap *m) {
  StrMap old = *m;
  m->cap = old.cap ? 2 * old.cap : 16;
  m->keys = arena_alloc(a, sizeof *m->keys * (size_t)m->cap);
  m->vals = arena_alloc(a, sizeof *m->vals * (size_t)m->cap);
  for (int i = 0; i < old.cap; i++)
    if (old.keys[i]) {
      int j = slot(m, old.keys[i]);
      m->keys[j] = old.keys[i];
      m->vals[j] = old.vals[i];
    }
}

void strmap_put(Arena *a, StrMap *m, const char *key, void *val) {
  if (2 * (m->len + 1) > m->cap)
    grow(a, m);
  int i = slot(m, key);
  if (!m->keys[i]) {
    m->keys[i] = key;
    m->len++;
  }
  m->vals[i] = val;
}
