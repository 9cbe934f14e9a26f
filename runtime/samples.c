/* samples.c — a plain .npy data file read a few rows at a time.
 *
 * Reading a data file whole and then converting it held the file twice
 * (its bytes and the converted copy): 2 GB of memory for a 1 GB input. A
 * .npy in C order and little-endian (what NumPy writes) needs neither: its
 * rows lie at fixed offsets, so `forward` and `grad` read each batch with
 * pread as they reach it, and the loaders convert straight into the array
 * they return. The pages read stay in the page cache, which the kernel
 * gives back under pressure, not in the process's own memory.
 *
 * Anything else (gzip, CSV, .npz, IDX, stdin, Fortran order, big-endian,
 * or a header this cannot use) is left to the whole-file readers, which
 * also say what is wrong with a bad file. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rt.h"

/* Converted a chunk at a time: the raw bytes of a chunk are held, never of
 * the whole file (when the file's type is the model's, rows are read
 * straight into their place instead). */
enum { RAW_CHUNK = 1 << 20 };

/* Reads len bytes at off; 0, or -1 with errno (0 at an early end of file). */
static int read_at(int fd, void *dst, size_t len, size_t off) {
  unsigned char *p = dst;
  while (len > 0) {
    ssize_t got = pread(fd, p, len, (off_t)off);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0) {
      if (got == 0)
        errno = 0;
      return -1;
    }
    p += got;
    off += (size_t)got;
    len -= (size_t)got;
  }
  return 0;
}

int mach_npy_rows_open(const char *path, struct mach_npy_rows *r, struct mach_array *hdr) {
  unsigned char head[12], *buf;
  struct mach_npy_layout l;
  struct stat st;
  size_t hlen, file_len;
  char why[200];
  int fd, rc;
  memset(r, 0, sizeof *r);
  r->fd = -1;
  if (strcmp(path, "-") == 0)
    return -1;
  fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 12 ||
      read_at(fd, head, sizeof head, 0) || memcmp(head, "\x93NUMPY", 6) != 0 ||
      (head[6] != 1 && head[6] != 2 && head[6] != 3)) {
    close(fd);
    return -1;
  }
  file_len = (size_t)st.st_size;
  hlen = head[6] == 1 ? 10 + ((size_t)head[8] | (size_t)head[9] << 8)
                      : 12 + ((size_t)head[8] | (size_t)head[9] << 8 |
                              (size_t)head[10] << 16 | (size_t)head[11] << 24);
  if (hlen > file_len || !(buf = malloc(hlen))) {
    close(fd);
    return -1;
  }
  rc = read_at(fd, buf, hlen, 0) ||
       mach_npy_parse_header(buf, hlen, file_len, hdr, &l, why, sizeof why);
  free(buf);
  r->item = mach_dtype_size(hdr->dtype);
  if (rc || r->item == 0 || hdr->rank < 1 || (l.fortran && hdr->rank > 1) || l.big) {
    close(fd);
    return -1;
  }
  r->fd = fd;
  r->off = l.data_off;
  r->dtype = hdr->dtype;
  r->n = hdr->shape[0];
  r->row = r->n ? hdr->count / r->n : 0;
  return 0;
}

int mach_npy_rows_read(struct mach_npy_rows *r, long start, long count, mach_real *dst) {
  size_t at = r->off + (size_t)start * (size_t)r->row * r->item;
  long total = count * r->row;
  struct mach_array a;
  if ((r->dtype == MACH_DT_F4 && sizeof(mach_real) == 4) ||
      (r->dtype == MACH_DT_F8 && sizeof(mach_real) == 8))
    return read_at(r->fd, dst, (size_t)total * r->item, at);
  if (!r->raw && !(r->raw = malloc(RAW_CHUNK)))
    return -1;
  memset(&a, 0, sizeof a);
  a.dtype = r->dtype;
  a.data = r->raw;
  for (long done = 0; done < total; done += a.count) {
    a.count = total - done < (long)(RAW_CHUNK / r->item) ? total - done : (long)(RAW_CHUNK / r->item);
    if (read_at(r->fd, r->raw, (size_t)a.count * r->item, at + (size_t)done * r->item))
      return -1;
    mach_array_to_real(&a, dst + done);
  }
  return 0;
}

void mach_npy_rows_close(struct mach_npy_rows *r) {
  if (r->fd >= 0)
    close(r->fd);
  free(r->raw);
  r->fd = -1;
  r->raw = NULL;
}
