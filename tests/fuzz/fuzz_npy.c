/* fuzz_npy.c — libFuzzer target: the .npy parser (header dictionary, dtypes,
 * shapes, Fortran order, byte order) and the conversion to reals. */
#include <stdlib.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  struct mach_array a;
  char why[200];
  if (mach_npy_parse(data, size, &a, why, sizeof why) == 0) {
    long n = 1;
    for (int i = 0; i < a.rank; i++)
      n *= a.shape[i];
    if (a.dtype != MACH_DT_UNKNOWN && n <= (1 << 20)) {
      mach_real *dst = malloc(sizeof *dst * (size_t)(n + 1));
      if (dst)
        mach_array_to_real(&a, dst);
      free(dst);
    }
    mach_array_free(&a);
  }
  return 0;
}
