/* npy.c — the NumPy .npy format (v1.0 written; v1.0, 2.0, 3.0 read).
 *
 * A file is: "\x93NUMPY", major, minor, header length (2 bytes in v1, 4 in
 * v2/v3), a Python dict literal such as
 *   {'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces and a newline, then the raw data in C order. The dict is
 * parsed by a small tokenizer rather than by matching NumPy's exact spelling,
 * since other writers order keys and space things differently.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static const struct {
  const char *name; /* without the byte-order character */
  enum mach_dtype t;
} dtypes[] = {
  {"f2", MACH_DT_F2}, {"b1", MACH_DT_B1}, {"f4", MACH_DT_F4}, {"f8", MACH_DT_F8}, {"i1", MACH_DT_I1}, {"i2", MACH_DT_I2},
  {"i4", MACH_DT_I4}, {"i8", MACH_DT_I8}, {"u1", MACH_DT_U1}, {"u2", MACH_DT_U2},
  {"u4", MACH_DT_U4}, {"u8", MACH_DT_U8},
};

size_t mach_dtype_size(enum mach_dtype t) {
  switch (t) {
  case MACH_DT_I1: case MACH_DT_U1: case MACH_DT_B1: return 1;
  case MACH_DT_F2: case MACH_DT_I2: case MACH_DT_U2: return 2;
  case MACH_DT_F4: case MACH_DT_I4: case MACH_DT_U4: return 4;
  case MACH_DT_F8: case MACH_DT_I8: case MACH_DT_U8: return 8;
  case MACH_DT_UNKNOWN: break;
  }
  return 0;
}

int mach_dtype_is_float(enum mach_dtype t) {
  return t == MACH_DT_F2 || t == MACH_DT_F4 || t == MACH_DT_F8;
}

/* '<' little-endian, '>' big-endian (*big set: the data is swapped on load);
 * '|' not applicable (1-byte); '=' native, which is little-endian here (rt.h
 * refuses other hosts). Anything else stays unknown and the caller reports
 * the descr. */
static enum mach_dtype parse_descr(const char *d, int *big) {
  *big = 0;
  if (!d[0] || strlen(d) != 3)
    return MACH_DT_UNKNOWN;
  for (size_t i = 0; i < sizeof dtypes / sizeof dtypes[0]; i++) {
    if (strcmp(d + 1, dtypes[i].name) != 0)
      continue;
    *big = d[0] == '>' && mach_dtype_size(dtypes[i].t) > 1;
    if (d[0] == '<' || d[0] == '=' || d[0] == '>' ||
        (d[0] == '|' && mach_dtype_size(dtypes[i].t) == 1))
      return dtypes[i].t;
  }
  return MACH_DT_UNKNOWN;
}

/* C-order copy of a Fortran-order array: walks the destination in C order
 * with an odometer over the multi-index, keeping the source offset (Fortran
 * strides: the first axis varies fastest) in step. */
static void fortran_to_c(const struct mach_array *a, size_t item, unsigned char *dst) {
  long idx[MACH_NPY_MAX_RANK] = {0}, stride[MACH_NPY_MAX_RANK], src = 0, s = 1;
  for (int k = 0; k < a->rank; k++) {
    stride[k] = s;
    s *= a->shape[k];
  }
  for (long i = 0; i < a->count; i++) {
    int k;
    memcpy(dst + (size_t)i * item, a->data + (size_t)src * item, item);
    for (k = a->rank - 1; k >= 0; k--) {
      src += stride[k];
      if (++idx[k] < a->shape[k])
        break;
      src -= stride[k] * idx[k];
      idx[k] = 0;
    }
  }
}

int mach_array_normalize(struct mach_array *a, int fortran, int big_endian) {
  size_t item = mach_dtype_size(a->dtype);
  unsigned char *dst;
  if ((!fortran && !big_endian) || a->count == 0 || item == 0)
    return 0;
  dst = malloc((size_t)a->count * item);
  if (!dst)
    return -1;
  if (fortran && a->rank > 1)
    fortran_to_c(a, item, dst);
  else
    memcpy(dst, a->data, (size_t)a->count * item);
  if (big_endian && item > 1)
    for (long i = 0; i < a->count; i++)
      for (size_t lo = 0, hi = item - 1; lo < hi; lo++, hi--) {
        unsigned char tmp = dst[(size_t)i * item + lo];
        dst[(size_t)i * item + lo] = dst[(size_t)i * item + hi];
        dst[(size_t)i * item + hi] = tmp;
      }
  free(a->owned);
  a->owned = dst;
  a->data = dst;
  return 0;
}

/* ---- the header dict ------------------------------------------------------ */

struct hdr {
  const char *p, *end;
  char *why;
  size_t whylen;
};

static int fail(struct hdr *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(struct hdr *h, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(h->why, h->whylen, fmt, ap);
  va_end(ap);
  return -1;
}

static void skip_ws(struct hdr *h) {
  while (h->p < h->end && (*h->p == ' ' || *h->p == '\t' || *h->p == '\n' || *h->p == '\r'))
    h->p++;
}

static int accept(struct hdr *h, char ch) {
  skip_ws(h);
  if (h->p < h->end && *h->p == ch) {
    h->p++;
    return 1;
  }
  return 0;
}

/* string = "'" chars "'" | '"' chars '"'   (no escapes in NumPy headers) */
static int parse_string(struct hdr *h, char *out, size_t cap) {
  char q;
  size_t n = 0;
  skip_ws(h);
  if (h->p >= h->end || (*h->p != '\'' && *h->p != '"'))
    return fail(h, "bad header: expected a string");
  q = *h->p++;
  while (h->p < h->end && *h->p != q) {
    if (n + 1 >= cap)
      return fail(h, "bad header: string too long");
    out[n++] = *h->p++;
  }
  if (h->p >= h->end)
    return fail(h, "bad header: unterminated string");
  h->p++;
  out[n] = 0;
  return 0;
}

static int parse_word(struct hdr *h, const char *w) {
  size_t n = strlen(w);
  skip_ws(h);
  if ((size_t)(h->end - h->p) >= n && memcmp(h->p, w, n) == 0) {
    h->p += n;
    return 1;
  }
  return 0;
}

/* shape = "(" [ int { "," int } [ "," ] ] ")"   ints may carry Python 2's L */
static int parse_shape(struct hdr *h, struct mach_array *a) {
  if (!accept(h, '('))
    return fail(h, "bad header: 'shape' is not a tuple");
  a->rank = 0;
  while (!accept(h, ')')) {
    long v = 0;
    int digits = 0;
    skip_ws(h);
    while (h->p < h->end && *h->p >= '0' && *h->p <= '9') {
      if (v > (LONG_MAX - 9) / 10)
        return fail(h, "shape is too large (a dimension overflows)");
      v = v * 10 + (*h->p++ - '0');
      digits++;
    }
    if (!digits)
      return fail(h, "bad header: 'shape' holds something other than non-negative integers");
    if (h->p < h->end && *h->p == 'L')
      h->p++;
    if (a->rank == MACH_NPY_MAX_RANK)
      return fail(h, "bad header: more than %d dimensions", MACH_NPY_MAX_RANK);
    a->shape[a->rank++] = v;
    if (!accept(h, ',')) {
      if (!accept(h, ')'))
        return fail(h, "bad header: expected ',' or ')' in 'shape'");
      break;
    }
  }
  return 0;
}

/* dict = "{" { string ":" value "," } [ string ":" value ] "}" */
static int parse_dict(struct hdr *h, struct mach_array *a, int *fortran) {
  int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
  char key[32];
  if (!accept(h, '{'))
    return fail(h, "bad header: not a dict");
  while (!accept(h, '}')) {
    if (parse_string(h, key, sizeof key))
      return -1;
    if (!accept(h, ':'))
      return fail(h, "bad header: expected ':' after '%s'", key);
    if (strcmp(key, "descr") == 0) {
      if (parse_string(h, a->descr, sizeof a->descr))
        return -1;
      seen_descr = 1;
    } else if (strcmp(key, "fortran_order") == 0) {
      if (parse_word(h, "True"))
        *fortran = 1;
      else if (parse_word(h, "False"))
        *fortran = 0;
      else
        return fail(h, "bad header: 'fortran_order' is not True or False");
      seen_fortran = 1;
    } else if (strcmp(key, "shape") == 0) {
      if (parse_shape(h, a))
        return -1;
      seen_shape = 1;
    } else {
      return fail(h, "bad header: unknown key '%s'", key);
    }
    if (!accept(h, ',')) {
      if (!accept(h, '}'))
        return fail(h, "bad header: expected ',' or '}'");
      break;
    }
  }
  skip_ws(h);
  if (h->p != h->end)
    return fail(h, "bad header: text after the dict");
  if (!seen_descr || !seen_fortran || !seen_shape)
    return fail(h, "bad header: missing '%s'",
                !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
  return 0;
}

int mach_npy_parse_header(const unsigned char *buf, size_t len, size_t file_len,
                          struct mach_array *a, struct mach_npy_layout *l, char *why,
                          size_t whylen) {
  struct hdr h = {0};
  size_t hlen, start, item, need;
  int fortran = 0, big = 0;
  memset(a, 0, sizeof *a);
  memset(l, 0, sizeof *l);
  h.why = why;
  h.whylen = whylen;
  if (memcmp(buf, "\x93NUMPY", len < 6 ? len : 6) != 0)
    return fail(&h, "not a .npy file (bad magic)");
  if (len < 10)
    return fail(&h, "truncated file (no .npy header)");
  if (buf[6] == 1) {
    hlen = (size_t)buf[8] | (size_t)buf[9] << 8;
    start = 10;
  } else if (buf[6] == 2 || buf[6] == 3) {
    if (len < 12)
      return fail(&h, "truncated file (no .npy header)");
    hlen = (size_t)buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    start = 12;
  } else {
    return fail(&h, "unsupported .npy version %d.%d", buf[6], buf[7]);
  }
  if (hlen > len - start)
    return fail(&h, "truncated file (header runs past the end)");
  h.p = (const char *)buf + start;
  h.end = h.p + hlen;
  if (memchr(h.p, 0, hlen))
    return fail(&h, "bad header: contains a NUL byte");
  if (parse_dict(&h, a, &fortran))
    return -1;
  a->dtype = parse_descr(a->descr, &big);
  a->count = 1;
  for (int i = 0; i < a->rank; i++) {
    if (a->shape[i] != 0 && a->count > LONG_MAX / a->shape[i])
      return fail(&h, "shape is too large (its product overflows)");
    a->count *= a->shape[i];
  }
  item = mach_dtype_size(a->dtype);
  l->data_off = start + hlen;
  l->fortran = fortran;
  l->big = big;
  if (item == 0) /* unknown dtype: the caller reports it with the descr */
    return 0;
  if ((size_t)a->count > SIZE_MAX / item)
    return fail(&h, "shape is too large (its product overflows)");
  need = (size_t)a->count * item;
  if (need > file_len - start - hlen) {
    char s[64];
    mach_shape_str(s, sizeof s, a->rank, a->shape);
    return fail(&h, "truncated data: shape %s needs %zu bytes, found %zu", s, need,
                file_len - start - hlen);
  }
  return 0;
}

int mach_npy_parse(const unsigned char *buf, size_t len, struct mach_array *a,
                   char *why, size_t whylen) {
  struct mach_npy_layout l;
  if (mach_npy_parse_header(buf, len, len, a, &l, why, whylen))
    return -1;
  a->data = buf + l.data_off;
  if (mach_dtype_size(a->dtype) && mach_array_normalize(a, l.fortran, l.big)) {
    snprintf(why, whylen, "out of memory");
    return -1;
  }
  return 0;
}

/* IEEE 754 binary16 to double: sign, 5 exponent bits (bias 15), 10 bits. */
static double half_to_double(uint16_t h) {
  int e = (h >> 10) & 0x1f;
  double m = h & 0x3ff, v;
  if (e == 0)
    v = ldexp(m, -24); /* subnormal */
  else if (e == 31)
    v = m ? NAN : INFINITY;
  else
    v = ldexp(m + 1024, e - 25);
  return h & 0x8000 ? -v : v;
}

double mach_array_get(const struct mach_array *a, long i) {
  const unsigned char *p = a->data + (size_t)i * mach_dtype_size(a->dtype);
  union {
    float f4; double f8;
    int8_t i1; int16_t i2; int32_t i4; int64_t i8;
    uint8_t u1; uint16_t u2; uint32_t u4; uint64_t u8;
  } v;
  if (a->dtype == MACH_DT_UNKNOWN)
    return 0;
  memcpy(&v, p, mach_dtype_size(a->dtype));
  switch (a->dtype) {
  case MACH_DT_F2: return half_to_double(v.u2);
  case MACH_DT_B1: return v.u1 != 0;
  case MACH_DT_F4: return v.f4;
  case MACH_DT_F8: return v.f8;
  case MACH_DT_I1: return v.i1;
  case MACH_DT_I2: return v.i2;
  case MACH_DT_I4: return v.i4;
  case MACH_DT_I8: return (double)v.i8;
  case MACH_DT_U1: return v.u1;
  case MACH_DT_U2: return v.u2;
  case MACH_DT_U4: return v.u4;
  case MACH_DT_U8: return (double)v.u8;
  case MACH_DT_UNKNOWN: break;
  }
  return 0;
}

void mach_array_to_real(const struct mach_array *a, mach_real *dst) {
  if ((a->dtype == MACH_DT_F8 && sizeof(mach_real) == 8) ||
      (a->dtype == MACH_DT_F4 && sizeof(mach_real) == 4)) {
    memcpy(dst, a->data, (size_t)a->count * sizeof(mach_real));
    return;
  }
  for (long i = 0; i < a->count; i++)
    dst[i] = (mach_real)mach_array_get(a, i);
}

void mach_array_free(struct mach_array *a) {
  free(a->owned);
  free(a->backing);
  a->owned = a->backing = NULL;
  a->data = NULL;
}

/* ---- writing ---------------------------------------------------------------- */

size_t mach_npy_header(char *buf, size_t cap, int rank, const long *shape) {
  /* NumPy pads the whole header to a multiple of 64 bytes so the data is
   * aligned when the file is memory-mapped; we do the same. */
  char dict[64 + 24 * MACH_NPY_MAX_RANK];
  size_t n, total;
  n = (size_t)snprintf(dict, sizeof dict, "{'descr': '<%s', 'fortran_order': False, 'shape': (",
                       sizeof(mach_real) == 4 ? "f4" : "f8");
  for (int i = 0; i < rank; i++)
    n += (size_t)snprintf(dict + n, sizeof dict - n, "%ld,%s", shape[i],
                          i + 1 < rank ? " " : "");
  if (rank > 1) /* (3,) for rank 1 but (3, 4) for rank 2, as Python prints */
    n--;
  n += (size_t)snprintf(dict + n, sizeof dict - n, "), }");
  total = (10 + n + 1 + 63) / 64 * 64;
  if (total > cap)
    return 0;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (char)((total - 10) & 0xff);
  buf[9] = (char)((total - 10) >> 8);
  memcpy(buf + 10, dict, n);
  memset(buf + 10 + n, ' ', total - 10 - n - 1);
  buf[total - 1] = '\n';
  return total;
}

int mach_npy_write_header(FILE *f, int rank, const long *shape) {
  char hdr[64 + 24 * MACH_NPY_MAX_RANK + 64];
  size_t hl = mach_npy_header(hdr, sizeof hdr, rank, shape);
  return hl && fwrite(hdr, 1, hl, f) == hl ? 0 : -1;
}

int mach_npy_write(FILE *f, int rank, const long *shape, const mach_real *data) {
  size_t count = 1;
  for (int i = 0; i < rank; i++)
    count *= (size_t)shape[i];
  if (mach_npy_write_header(f, rank, shape))
    return -1;
  if (count && fwrite(data, sizeof(mach_real), count, f) != count)
    return -1;
  return 0;
}
