/* idx.c — the IDX format of the MNIST family (LeCun et al.): two zero bytes,
 * a type code, the number of axes, one big-endian uint32 per axis, then the
 * data, big-endian, in C order. train-images-idx3-ubyte is u8 [N, 28, 28],
 * train-labels-idx1-ubyte is u8 [N]. Files usually come gzipped; data.c
 * inflates them before they get here.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "rt.h"

static const struct {
  unsigned char code;
  enum mach_dtype t;
  const char *descr; /* the equivalent NumPy descr, for messages */
} types[] = {
  {0x08, MACH_DT_U1, "|u1"}, {0x09, MACH_DT_I1, "|i1"}, {0x0B, MACH_DT_I2, ">i2"},
  {0x0C, MACH_DT_I4, ">i4"}, {0x0D, MACH_DT_F4, ">f4"}, {0x0E, MACH_DT_F8, ">f8"},
};

static int type_of(unsigned char code) {
  for (int i = 0; i < (int)(sizeof types / sizeof types[0]); i++)
    if (types[i].code == code)
      return i;
  return -1;
}

int mach_idx_is(const unsigned char *buf, size_t len) {
  return len >= 4 && buf[0] == 0 && buf[1] == 0 && type_of(buf[2]) >= 0 && buf[3] >= 1 &&
         buf[3] <= MACH_NPY_MAX_RANK;
}

static int fail(char *why, size_t whylen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *why, size_t whylen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, whylen, fmt, ap);
  va_end(ap);
  return -1;
}

int mach_idx_parse(const unsigned char *buf, size_t len, struct mach_array *a, char *why,
                   size_t whylen) {
  size_t need, item;
  int t;
  memset(a, 0, sizeof *a);
  if (!mach_idx_is(buf, len))
    return fail(why, whylen, "not an IDX file (bad magic)");
  t = type_of(buf[2]);
  a->dtype = types[t].t;
  snprintf(a->descr, sizeof a->descr, "%s", types[t].descr);
  a->rank = buf[3];
  if (len < 4 + 4 * (size_t)a->rank)
    return fail(why, whylen, "truncated IDX header (%d axes need %d bytes)", a->rank,
                4 + 4 * a->rank);
  a->count = 1;
  for (int k = 0; k < a->rank; k++) {
    const unsigned char *p = buf + 4 + 4 * k;
    a->shape[k] = (long)((unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 |
                         (unsigned long)p[2] << 8 | p[3]);
    if (a->shape[k] && a->count > (long)(SIZE_MAX / 8) / a->shape[k])
      return fail(why, whylen, "shape is too large (its product overflows)");
    a->count *= a->shape[k];
  }
  item = mach_dtype_size(a->dtype);
  need = (size_t)a->count * item;
  a->data = buf + 4 + 4 * (size_t)a->rank;
  if (need != len - 4 - 4 * (size_t)a->rank) {
    char s[64];
    mach_shape_str(s, sizeof s, a->rank, a->shape);
    return fail(why, whylen, "IDX shape %s of %s needs %zu data bytes, found %zu", s,
                types[t].descr, need, len - 4 - 4 * (size_t)a->rank);
  }
  if (mach_array_normalize(a, 0, item > 1))
    return fail(why, whylen, "out of memory");
  return 0;
}
