/* arena.c — the compilation arena, pointer vectors and string buffers.
 *
 * Policy: everything the compiler allocates for one compilation comes from
 * one arena and is released at once by arena_free (chibicc's argument: a
 * compiler is a short-lived process; individual frees only add bugs). */
#include "machc.h"

#include <stdlib.h>
#include <string.h>

enum { CHUNK_MIN = 64 * 1024 };

typedef struct Chunk {
  struct Chunk *next;
  size_t used, cap;
  _Alignas(16) unsigned char data[];
} Chunk;

struct Arena {
  Chunk *head;
};

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (!p) {
    fputs("machc: out of memory\n", stderr);
    exit(1);
  }
  return p;
}

Arena *arena_new(void) {
  Arena *a = xmalloc(sizeof *a);
  a->head = NULL;
  return a;
}

void arena_free(Arena *a) {
  if (!a)
    return;
  for (Chunk *c = a->head, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  free(a);
}

/* size bytes, 16-aligned, not cleared: for text about to be written. */
static void *arena_alloc_nozero(Arena *a, size_t size) {
  size = (size + 15) & ~(size_t)15;
  Chunk *c = a->head;
  if (!c || c->cap - c->used < size) {
    size_t cap = size > CHUNK_MIN ? size : CHUNK_MIN;
    c = xmalloc(sizeof *c + cap);
    c->used = 0;
    c->cap = cap;
    c->next = a->head;
    a->head = c;
  }
  void *p = c->data + c->used;
  c->used += size;
  return p;
}

void *arena_alloc(Arena *a, size_t size) {
  void *p = arena_alloc_nozero(a, size);
  memset(p, 0, size);
  return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
  char *p = arena_alloc_nozero(a, n + 1);
  memcpy(p, s, n);
  p[n] = '\0';
  return p;
}

char *arena_strdup(Arena *a, const char *s) {
  return arena_strndup(a, s, strlen(s));
}

/* Formats straight into the free end of the current chunk when the text
 * fits (the common case: one pass of vsnprintf, not two). */
char *arena_printf(Arena *a, const char *fmt, ...) {
  va_list ap;
  Chunk *c = a->head;
  size_t room = c ? c->cap - c->used : 0;
  va_start(ap, fmt);
  int n = vsnprintf(room ? (char *)c->data + c->used : NULL, room, fmt, ap);
  va_end(ap);
  if (n < 0) {
    fputs("machc: out of memory\n", stderr);
    exit(1);
  }
  if ((size_t)n < room) /* it fits: claim what was written */
    return arena_alloc_nozero(a, (size_t)n + 1);
  char *p = arena_alloc(a, (size_t)n + 1);
  va_start(ap, fmt);
  vsnprintf(p, (size_t)n + 1, fmt, ap);
  va_end(ap);
  return p;
}

void vec_push(Arena *a, PtrVec *v, void *item) {
  if (v->len == v->cap) {
    int cap = v->cap ? 2 * v->cap : 8;
    void **items = arena_alloc(a, sizeof(void *) * (size_t)cap);
    if (v->len)
      memcpy(items, v->items, sizeof(void *) * (size_t)v->len);
    v->items = items;
    v->cap = cap;
  }
  v->items[v->len++] = item;
}

/* Room for n more bytes and the NUL, doubling (amortized linear). */
static void sb_reserve(StrBuf *sb, size_t n) {
  if (sb->len + n + 1 <= sb->cap)
    return;
  size_t cap = sb->cap ? sb->cap : 256;
  while (cap < sb->len + n + 1)
    cap *= 2;
  char *data = realloc(sb->data, cap);
  if (!data) {
    fputs("machc: out of memory\n", stderr);
    exit(1);
  }
  sb->data = data;
  sb->cap = cap;
}

/* One pass of vsnprintf into the free end of the buffer; a second only when
 * the text did not fit (the emitters write tens of MB through here). */
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap) {
  va_list ap2;
  va_copy(ap2, ap);
  size_t room = sb->cap - sb->len;
  int n = vsnprintf(room ? sb->data + sb->len : NULL, room, fmt, ap);
  if (n < 0) {
    fputs("machc: out of memory\n", stderr);
    exit(1);
  }
  if ((size_t)n >= room) {
    sb_reserve(sb, (size_t)n);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap2);
  }
  va_end(ap2);
  sb->len += (size_t)n;
}

void sb_printf(StrBuf *sb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  sb_vprintf(sb, fmt, ap);
  va_end(ap);
}

void sb_puts(StrBuf *sb, const char *s) {
  size_t n = strlen(s);
  sb_reserve(sb, n);
  memcpy(sb->data + sb->len, s, n + 1);
  sb->len += n;
}

void sb_free(StrBuf *sb) {
  free(sb->data);
  *sb = (StrBuf){0};
}
