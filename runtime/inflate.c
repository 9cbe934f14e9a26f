/* inflate.c — decompression through zlib: deflate members of an .npz
 * (np.savez_compressed) and gzip files (.gz, as the MNIST IDX files ship).
 *
 * Both decompress a whole buffer into a new one; data files are read whole
 * anyway, and this keeps zlib's streaming state out of every reader.
 */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rt.h"

int mach_is_gzip(const unsigned char *buf, size_t len) {
  return len >= 2 && buf[0] == 0x1f && buf[1] == 0x8b;
}

/* zlib counts in uInt; feed it at most this much at a time. */
#define CHUNK ((size_t)1 << 30)

static void feed(z_stream *s, const unsigned char **in, size_t *left) {
  if (s->avail_in == 0 && *left) {
    size_t n = *left < CHUNK ? *left : CHUNK;
    s->next_in = (unsigned char *)*in;
    s->avail_in = (uInt)n;
    *in += n;
    *left -= n;
  }
}

int mach_inflate_raw(const unsigned char *in, size_t len, unsigned char *out, size_t outlen,
                     const char **why) {
  z_stream s;
  int rc;
  size_t done = 0;
  memset(&s, 0, sizeof s);
  if (inflateInit2(&s, -MAX_WBITS) != Z_OK) { /* raw deflate, as zip stores it */
    *why = "cannot start zlib";
    return -1;
  }
  for (;;) {
    size_t n = outlen - done < CHUNK ? outlen - done : CHUNK;
    feed(&s, &in, &len);
    s.next_out = out + done;
    s.avail_out = (uInt)n;
    rc = inflate(&s, Z_NO_FLUSH);
    done += n - s.avail_out;
    if (rc != Z_OK || (!s.avail_in && !len && s.avail_out == n))
      break; /* the end, an error, or no progress possible */
  }
  inflateEnd(&s);
  if (rc != Z_STREAM_END || done != outlen) {
    *why = rc == Z_STREAM_END || rc == Z_BUF_ERROR ? "inflated size differs from the zip directory"
                                                   : "corrupt deflate data";
    return -1;
  }
  return 0;
}

int mach_gunzip(const struct mach_ctx *c, const char *name, const unsigned char *in,
                size_t len, unsigned char **out, size_t *outlen) {
  z_stream s;
  size_t cap = len * 4 + 1024, done = 0;
  unsigned char *buf = malloc(cap);
  int rc = Z_OK;
  memset(&s, 0, sizeof s);
  if (!buf || inflateInit2(&s, 16 + MAX_WBITS) != Z_OK) { /* 16: gzip wrapper */
    free(buf);
    mach_err(c, "%s: cannot decompress: out of memory", name);
    return 1;
  }
  for (;;) {
    size_t n;
    if (done == cap) {
      unsigned char *nb = cap < SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
      if (!nb) {
        rc = Z_MEM_ERROR;
        break;
      }
      buf = nb;
      cap *= 2;
    }
    n = cap - done < CHUNK ? cap - done : CHUNK;
    feed(&s, &in, &len);
    s.next_out = buf + done;
    s.avail_out = (uInt)n;
    rc = inflate(&s, Z_NO_FLUSH);
    done += n - s.avail_out;
    if (rc == Z_STREAM_END) {
      /* gzip allows several members back to back (cat a.gz b.gz) */
      while (len && s.avail_in == 0)
        feed(&s, &in, &len);
      if (s.avail_in == 0)
        break;
      if (inflateReset(&s) != Z_OK)
        break;
      rc = Z_OK;
    } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
      break;
    } else if (rc == Z_BUF_ERROR && s.avail_in == 0 && len == 0) {
      break; /* input ended inside a member */
    }
  }
  inflateEnd(&s);
  if (rc != Z_STREAM_END) {
    free(buf);
    mach_err(c, "%s: cannot decompress: %s", name,
             rc == Z_MEM_ERROR ? "out of memory"
             : rc == Z_BUF_ERROR || rc == Z_OK ? "truncated gzip data"
                                               : "corrupt gzip data");
    return 1;
  }
  *out = buf;
  *outlen = done;
  return 0;
}
