/* npz.c — .npz archives: a zip of NAME.npy members, as np.savez writes.
 *
 * Reading goes through the central directory (NumPy's writer forces ZIP64
 * local headers whose size fields are 0xffffffff, so the local header is only
 * used to find where a member's data begins). Members are stored (np.savez)
 * or deflated (np.savez_compressed, inflated through zlib in inflate.c).
 * Writing streams members one by one with STORE; timestamps are fixed at
 * 1980-01-01 so equal arrays give byte-identical archives (init
 * reproducibility is checked on the bytes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"

static const uint32_t crc_table[256] = {
  0x00000000u, 0x77073096u, 0xee0e612cu, 0x990951bau, 0x076dc419u, 0x706af48fu,
  0xe963a535u, 0x9e6495a3u, 0x0edb8832u, 0x79dcb8a4u, 0xe0d5e91eu, 0x97d2d988u,
  0x09b64c2bu, 0x7eb17cbdu, 0xe7b82d07u, 0x90bf1d91u, 0x1db71064u, 0x6ab020f2u,
  0xf3b97148u, 0x84be41deu, 0x1adad47du, 0x6ddde4ebu, 0xf4d4b551u, 0x83d385c7u,
  0x136c9856u, 0x646ba8c0u, 0xfd62f97au, 0x8a65c9ecu, 0x14015c4fu, 0x63066cd9u,
  0xfa0f3d63u, 0x8d080df5u, 0x3b6e20c8u, 0x4c69105eu, 0xd56041e4u, 0xa2677172u,
  0x3c03e4d1u, 0x4b04d447u, 0xd20d85fdu, 0xa50ab56bu, 0x35b5a8fau, 0x42b2986cu,
  0xdbbbc9d6u, 0xacbcf940u, 0x32d86ce3u, 0x45df5c75u, 0xdcd60dcfu, 0xabd13d59u,
  0x26d930acu, 0x51de003au, 0xc8d75180u, 0xbfd06116u, 0x21b4f4b5u, 0x56b3c423u,
  0xcfba9599u, 0xb8bda50fu, 0x2802b89eu, 0x5f058808u, 0xc60cd9b2u, 0xb10be924u,
  0x2f6f7c87u, 0x58684c11u, 0xc1611dabu, 0xb6662d3du, 0x76dc4190u, 0x01db7106u,
  0x98d220bcu, 0xefd5102au, 0x71b18589u, 0x06b6b51fu, 0x9fbfe4a5u, 0xe8b8d433u,
  0x7807c9a2u, 0x0f00f934u, 0x9609a88eu, 0xe10e9818u, 0x7f6a0dbbu, 0x086d3d2du,
  0x91646c97u, 0xe6635c01u, 0x6b6b51f4u, 0x1c6c6162u, 0x856530d8u, 0xf262004eu,
  0x6c0695edu, 0x1b01a57bu, 0x8208f4c1u, 0xf50fc457u, 0x65b0d9c6u, 0x12b7e950u,
  0x8bbeb8eau, 0xfcb9887cu, 0x62dd1ddfu, 0x15da2d49u, 0x8cd37cf3u, 0xfbd44c65u,
  0x4db26158u, 0x3ab551ceu, 0xa3bc0074u, 0xd4bb30e2u, 0x4adfa541u, 0x3dd895d7u,
  0xa4d1c46du, 0xd3d6f4fbu, 0x4369e96au, 0x346ed9fcu, 0xad678846u, 0xda60b8d0u,
  0x44042d73u, 0x33031de5u, 0xaa0a4c5fu, 0xdd0d7cc9u, 0x5005713cu, 0x270241aau,
  0xbe0b1010u, 0xc90c2086u, 0x5768b525u, 0x206f85b3u, 0xb966d409u, 0xce61e49fu,
  0x5edef90eu, 0x29d9c998u, 0xb0d09822u, 0xc7d7a8b4u, 0x59b33d17u, 0x2eb40d81u,
  0xb7bd5c3bu, 0xc0ba6cadu, 0xedb88320u, 0x9abfb3b6u, 0x03b6e20cu, 0x74b1d29au,
  0xead54739u, 0x9dd277afu, 0x04db2615u, 0x73dc1683u, 0xe3630b12u, 0x94643b84u,
  0x0d6d6a3eu, 0x7a6a5aa8u, 0xe40ecf0bu, 0x9309ff9du, 0x0a00ae27u, 0x7d079eb1u,
  0xf00f9344u, 0x8708a3d2u, 0x1e01f268u, 0x6906c2feu, 0xf762575du, 0x806567cbu,
  0x196c3671u, 0x6e6b06e7u, 0xfed41b76u, 0x89d32be0u, 0x10da7a5au, 0x67dd4accu,
  0xf9b9df6fu, 0x8ebeeff9u, 0x17b7be43u, 0x60b08ed5u, 0xd6d6a3e8u, 0xa1d1937eu,
  0x38d8c2c4u, 0x4fdff252u, 0xd1bb67f1u, 0xa6bc5767u, 0x3fb506ddu, 0x48b2364bu,
  0xd80d2bdau, 0xaf0a1b4cu, 0x36034af6u, 0x41047a60u, 0xdf60efc3u, 0xa867df55u,
  0x316e8eefu, 0x4669be79u, 0xcb61b38cu, 0xbc66831au, 0x256fd2a0u, 0x5268e236u,
  0xcc0c7795u, 0xbb0b4703u, 0x220216b9u, 0x5505262fu, 0xc5ba3bbeu, 0xb2bd0b28u,
  0x2bb45a92u, 0x5cb36a04u, 0xc2d7ffa7u, 0xb5d0cf31u, 0x2cd99e8bu, 0x5bdeae1du,
  0x9b64c2b0u, 0xec63f226u, 0x756aa39cu, 0x026d930au, 0x9c0906a9u, 0xeb0e363fu,
  0x72076785u, 0x05005713u, 0x95bf4a82u, 0xe2b87a14u, 0x7bb12baeu, 0x0cb61b38u,
  0x92d28e9bu, 0xe5d5be0du, 0x7cdcefb7u, 0x0bdbdf21u, 0x86d3d2d4u, 0xf1d4e242u,
  0x68ddb3f8u, 0x1fda836eu, 0x81be16cdu, 0xf6b9265bu, 0x6fb077e1u, 0x18b74777u,
  0x88085ae6u, 0xff0f6a70u, 0x66063bcau, 0x11010b5cu, 0x8f659effu, 0xf862ae69u,
  0x616bffd3u, 0x166ccf45u, 0xa00ae278u, 0xd70dd2eeu, 0x4e048354u, 0x3903b3c2u,
  0xa7672661u, 0xd06016f7u, 0x4969474du, 0x3e6e77dbu, 0xaed16a4au, 0xd9d65adcu,
  0x40df0b66u, 0x37d83bf0u, 0xa9bcae53u, 0xdebb9ec5u, 0x47b2cf7fu, 0x30b5ffe9u,
  0xbdbdf21cu, 0xcabac28au, 0x53b39330u, 0x24b4a3a6u, 0xbad03605u, 0xcdd70693u,
  0x54de5729u, 0x23d967bfu, 0xb3667a2eu, 0xc4614ab8u, 0x5d681b02u, 0x2a6f2b94u,
  0xb40bbe37u, 0xc30c8ea1u, 0x5a05df1bu, 0x2d02ef8du,
};

/* CRC-32 (IEEE 802.3, reflected, as zip uses); chain calls by passing the
 * previous result, starting from 0. */
uint32_t mach_crc32(uint32_t crc, const void *data, size_t len) {
  const unsigned char *p = data;
  crc = ~crc;
  while (len--)
    crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static uint32_t rd16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t rd32(const unsigned char *p) { return rd16(p) | rd16(p + 2) << 16; }
static uint64_t rd64(const unsigned char *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define ZIP_LIMIT 0xffffffffu

/* The end record sits in the last 22 + 65535 (comment) bytes. */
static long find_end(const unsigned char *b, size_t len) {
  size_t lo = len > 22 + 65535 ? len - 22 - 65535 : 0;
  for (size_t i = len - 22 + 1; i-- > lo;)
    if (rd32(b + i) == SIG_END)
      return (long)i;
  return -1;
}

/* Replaces 0xffffffff sizes/offset by their values from the ZIP64 extra. */
static void zip64_extra(const unsigned char *x, size_t xlen, uint64_t *usize,
                        uint64_t *csize, uint64_t *off) {
  while (xlen >= 4) {
    uint32_t id = rd16(x), n = rd16(x + 2);
    if (n > xlen - 4)
      return;
    if (id == 1) {
      const unsigned char *p = x + 4, *end = x + 4 + n;
      uint64_t *f[3] = {usize, csize, off};
      for (int i = 0; i < 3; i++)
        if (*f[i] == ZIP_LIMIT && p + 8 <= end) {
          *f[i] = rd64(p);
          p += 8;
        }
      return;
    }
    x += 4 + n;
    xlen -= 4 + n;
  }
}

/* Parses one central directory record at b + *pos into m. */
static int read_member(const struct mach_ctx *c, const struct mach_npz *z, size_t *pos,
                       struct mach_npz_member *m) {
  const unsigned char *b = z->buf, *e;
  size_t nlen, xlen, clen, dstart, nl;
  uint64_t usize, csize, off;
  if (*pos > z->len || z->len - *pos < 46 || rd32(b + *pos) != SIG_CENTRAL) {
    mach_err(c, "%s: corrupt zip (bad central directory)", z->path);
    return 1;
  }
  e = b + *pos;
  nlen = rd16(e + 28);
  xlen = rd16(e + 30);
  clen = rd16(e + 32);
  if (z->len - *pos - 46 < nlen + xlen + clen) {
    mach_err(c, "%s: corrupt zip (central directory runs past the end)", z->path);
    return 1;
  }
  m->method = (int)rd16(e + 10);
  m->crc = rd32(e + 16);
  csize = rd32(e + 20);
  usize = rd32(e + 24);
  off = rd32(e + 42);
  zip64_extra(e + 46 + nlen, xlen, &usize, &csize, &off);
  nl = nlen >= 4 && memcmp(e + 46 + nlen - 4, ".npy", 4) == 0 ? nlen - 4 : nlen;
  m->name = malloc(nl + 1);
  if (!m->name) {
    mach_err(c, "out of memory");
    return 1;
  }
  memcpy(m->name, e + 46, nl);
  m->name[nl] = 0;
  *pos += 46 + nlen + xlen + clen;
  if (rd16(e + 8) & 1) {
    mach_err(c, "%s: entry '%s' is encrypted", z->path, m->name);
    return 1;
  }
  if (off > z->len || z->len - off < 30 || rd32(b + off) != SIG_LOCAL) {
    mach_err(c, "%s: corrupt zip (bad local header for '%s')", z->path, m->name);
    return 1;
  }
  dstart = (size_t)off + 30 + rd16(b + off + 26) + rd16(b + off + 28);
  if (dstart > z->len || z->len - dstart < csize) {
    mach_err(c, "%s: truncated file (entry '%s' runs past the end)", z->path, m->name);
    return 1;
  }
  m->data = b + dstart;
  m->size = (size_t)csize;
  m->usize = (size_t)usize;
  if (m->method == 0 && csize != usize) {
    mach_err(c, "%s: corrupt zip (sizes of '%s' disagree)", z->path, m->name);
    return 1;
  }
  return 0;
}

int mach_npz_open(const struct mach_ctx *c, const char *path, struct mach_npz *z) {
  unsigned char *buf;
  size_t len;
  if (mach_read_file(c, path, &buf, &len))
    return 1;
  return mach_npz_open_buf(c, path, buf, len, z);
}

int mach_npz_is_zip(const unsigned char *buf, size_t len) {
  return len >= 4 && (rd32(buf) == SIG_LOCAL || rd32(buf) == SIG_END);
}

int mach_npz_open_buf(const struct mach_ctx *c, const char *path, unsigned char *buf,
                      size_t len, struct mach_npz *z) {
  long end;
  size_t pos;
  uint32_t n;
  memset(z, 0, sizeof *z);
  z->path = path;
  z->buf = buf;
  z->len = len;
  if (z->len > ZIP_LIMIT) {
    mach_err(c, "%s: larger than 4 GiB (ZIP64 archives are not supported)", path);
    goto bad;
  }
  end = z->len >= 22 ? find_end(z->buf, z->len) : -1;
  if (end < 0) {
    mach_err(c, "%s: not an .npz file (no zip end record%s)", path,
             z->len >= 4 && rd32(z->buf) == SIG_LOCAL ? "; truncated?" : "");
    goto bad;
  }
  n = rd16(z->buf + end + 10);
  pos = rd32(z->buf + end + 16);
  if (n == 0xffff || pos == ZIP_LIMIT) {
    mach_err(c, "%s: ZIP64 archives are not supported", path);
    goto bad;
  }
  z->mem = calloc(n ? n : 1, sizeof *z->mem);
  if (!z->mem) {
    mach_err(c, "out of memory");
    goto bad;
  }
  for (z->n = 0; z->n < (int)n; z->n++)
    if (read_member(c, z, &pos, &z->mem[z->n])) {
      z->n++; /* so its name is freed */
      goto bad;
    }
  return 0;
bad:
  mach_npz_close(z);
  return 1;
}

void mach_npz_close(struct mach_npz *z) {
  for (int i = 0; i < z->n; i++)
    free(z->mem[i].name);
  free(z->mem);
  free(z->buf);
  memset(z, 0, sizeof *z);
}

/* The bytes of member m: the stored bytes, or inflated into a new buffer
 * (*owned, which the caller frees). Returns 0 or 1 (message printed). */
static int member_bytes(const struct mach_ctx *c, const struct mach_npz *z,
                        const struct mach_npz_member *m, const unsigned char **data,
                        size_t *size, unsigned char **owned) {
  const char *why;
  *owned = NULL;
  *data = m->data;
  *size = m->size;
  if (m->method == 0)
    return 0;
  if (m->method != 8) {
    mach_err(c, "%s: entry '%s' uses zip method %d; expected stored or deflate (np.savez or "
                "np.savez_compressed)", z->path, m->name, m->method);
    return 1;
  }
  /* deflate expands at most 1032:1, so a larger claim is a lie (or a bomb):
   * refused before anything that size is allocated */
  if (m->usize / 1032 > m->size + 64) {
    mach_err(c, "%s: corrupt zip (entry '%s' claims %zu bytes from %zu compressed)", z->path,
             m->name, m->usize, m->size);
    return 1;
  }
  *owned = malloc(m->usize + 1);
  if (!*owned) {
    mach_err(c, "%s: entry '%s': out of memory (%zu bytes inflated)", z->path, m->name, m->usize);
    return 1;
  }
  if (mach_inflate_raw(m->data, m->size, *owned, m->usize, &why)) {
    mach_err(c, "%s: entry '%s' is corrupt (%s)", z->path, m->name, why);
    free(*owned);
    *owned = NULL;
    return 1;
  }
  *data = *owned;
  *size = m->usize;
  return 0;
}

static int get_member(const struct mach_ctx *c, const struct mach_npz *z,
                      const struct mach_npz_member *m, struct mach_array *a) {
  const unsigned char *data;
  unsigned char *owned;
  size_t size;
  char why[200];
  memset(a, 0, sizeof *a);
  if (member_bytes(c, z, m, &data, &size, &owned))
    return 1;
  if (mach_crc32(0, data, size) != m->crc) {
    mach_err(c, "%s: entry '%s' is corrupt (CRC-32 mismatch)", z->path, m->name);
    free(owned);
    return 1;
  }
  if (mach_npy_parse(data, size, a, why, sizeof why)) {
    mach_err(c, "%s: entry '%s': %s", z->path, m->name, why);
    free(owned);
    return 1;
  }
  a->backing = owned;
  return 0;
}

int mach_npz_get(const struct mach_ctx *c, const struct mach_npz *z, const char *name,
                 struct mach_array *a) {
  for (int i = 0; i < z->n; i++) {
    const struct mach_npz_member *m = &z->mem[i];
    if (strcmp(m->name, name) != 0)
      continue;
    return get_member(c, z, m, a);
  }
  return -1;
}

/* ---- writing ---------------------------------------------------------------- */

struct zw {
  FILE *f;
  uint64_t off; /* bytes written so far */
};

static void put16(unsigned char *p, uint32_t v) { p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static void put32(unsigned char *p, uint32_t v) { put16(p, v & 0xffff); put16(p + 2, v >> 16); }

static int zwrite(struct zw *w, const void *p, size_t n) {
  if (n && fwrite(p, 1, n, w->f) != n)
    return -1;
  w->off += n;
  return 0;
}

/* The fields local and central headers share, from "version needed" on. */
static void common_fields(unsigned char *p, uint32_t crc, uint32_t size, size_t nlen) {
  put16(p + 0, 20);     /* version needed: 2.0 */
  put16(p + 2, 0);      /* flags */
  put16(p + 4, 0);      /* method: stored */
  put16(p + 6, 0);      /* time 00:00:00 */
  put16(p + 8, 0x21);   /* date 1980-01-01 */
  put32(p + 10, crc);
  put32(p + 14, size);  /* compressed */
  put32(p + 18, size);  /* uncompressed */
  put16(p + 22, (uint32_t)nlen);
  put16(p + 24, 0);     /* extra length */
}

struct central {
  uint32_t crc, size, off;
};

static int write_entries(const struct mach_ctx *c, struct zw *w,
                         const struct mach_npz_entry *e, int n, struct central *cd) {
  for (int i = 0; i < n; i++) {
    char hdr[64 + 24 * MACH_NPY_MAX_RANK + 64], name[270];
    unsigned char lh[30];
    size_t hl = mach_npy_header(hdr, sizeof hdr, e[i].rank, e[i].shape);
    size_t count = 1, nlen = (size_t)snprintf(name, sizeof name, "%s.npy", e[i].name);
    uint64_t size;
    uint32_t crc;
    for (int k = 0; k < e[i].rank; k++)
      count *= (size_t)e[i].shape[k];
    size = hl + (uint64_t)count * sizeof(mach_real);
    if (size + w->off + 30 + nlen > ZIP_LIMIT) {
      mach_err(c, "archive would exceed 4 GiB (ZIP64 is not supported)");
      return 1;
    }
    crc = mach_crc32(mach_crc32(0, hdr, hl), e[i].data, count * sizeof(mach_real));
    cd[i].crc = crc;
    cd[i].size = (uint32_t)size;
    cd[i].off = (uint32_t)w->off;
    put32(lh, SIG_LOCAL);
    common_fields(lh + 4, crc, (uint32_t)size, nlen);
    if (zwrite(w, lh, 30) || zwrite(w, name, nlen) || zwrite(w, hdr, hl) ||
        zwrite(w, e[i].data, count * sizeof(mach_real)))
      return -1;
  }
  return 0;
}

static int write_directory(struct zw *w, const struct mach_npz_entry *e, int n,
                           const struct central *cd) {
  uint64_t start = w->off;
  unsigned char end[22];
  for (int i = 0; i < n; i++) {
    unsigned char ch[46];
    char name[270];
    size_t nlen = (size_t)snprintf(name, sizeof name, "%s.npy", e[i].name);
    put32(ch, SIG_CENTRAL);
    put16(ch + 4, 3u << 8 | 20); /* made by: Unix, zip 2.0 (so modes apply) */
    common_fields(ch + 6, cd[i].crc, cd[i].size, nlen);
    put16(ch + 32, 0);           /* comment length */
    put16(ch + 34, 0);           /* disk */
    put16(ch + 36, 0);           /* internal attributes */
    put32(ch + 38, 0100644u << 16); /* regular file, rw-r--r-- */
    put32(ch + 42, cd[i].off);
    if (zwrite(w, ch, 46) || zwrite(w, name, nlen))
      return -1;
  }
  memset(end, 0, sizeof end);
  put32(end, SIG_END);
  put16(end + 8, (uint32_t)n);
  put16(end + 10, (uint32_t)n);
  put32(end + 12, (uint32_t)(w->off - start));
  put32(end + 16, (uint32_t)start);
  return zwrite(w, end, 22);
}

int mach_npz_save(const struct mach_ctx *c, const char *path,
                  const struct mach_npz_entry *e, int n) {
  struct mach_out o;
  struct zw w = {0};
  struct central *cd;
  int rc;
  if (n > 0xfffe) {
    mach_err(c, "%s: too many entries for a zip without ZIP64", path);
    return 1;
  }
  cd = mach_alloc(c, (size_t)n + 1, sizeof *cd);
  if (!cd)
    return 1;
  if (mach_out_open(c, path, &o)) {
    free(cd);
    return 1;
  }
  w.f = o.f;
  rc = write_entries(c, &w, e, n, cd);
  if (rc == 0)
    rc = write_directory(&w, e, n, cd);
  free(cd);
  if (rc) {
    if (rc < 0)
      mach_err(c, "%s: cannot write: %s", path, strerror(errno ? errno : EIO));
    mach_out_abort(&o);
    return 1;
  }
  return mach_out_close(c, &o);
}

void mach_npz_block_entry(struct mach_npz_entry *e, const char *prefix,
                          const struct mach_block *b, long n, const mach_real *data) {
  snprintf(e->name, sizeof e->name, "%s%s", prefix, b->name);
  e->rank = b->rank + 1;
  e->shape[0] = n;
  for (int k = 0; k < b->rank; k++)
    e->shape[k + 1] = b->shape[k];
  e->data = data;
}
