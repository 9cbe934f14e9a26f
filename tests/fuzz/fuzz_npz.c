/* fuzz_npz.c — libFuzzer target: the .npz reader (zip directory, zip64
 * records, stored and deflated members through zlib, CRC checks) and the
 * .npy parser on every member. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const struct mach_ctx c = {"fuzz", NULL};
  struct mach_npz z;
  unsigned char *buf = malloc(size + 1); /* the reader takes ownership */
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  if (mach_npz_open_buf(&c, "fuzz.npz", buf, size, &z))
    return 0;
  for (int i = 0; i < z.n; i++) {
    struct mach_array a;
    if (mach_npz_get(&c, &z, z.mem[i].name, &a) == 0)
      mach_array_free(&a);
  }
  mach_npz_close(&z);
  return 0;
}
