/* fuzz_labels.c — libFuzzer target: class label loading (any data format:
 * .npy, .npz, IDX, gzip, CSV) through its file path, as train and eval
 * read --targets. The first byte picks the file name's suffix (CSV is told
 * by its name) and the number of classes. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const struct mach_ctx c = {"fuzz", NULL};
  static const char *const suffix[] = {".npy", ".csv", ".npz", ".idx", ".csv.gz"};
  static char path[5][64];
  if (size < 1)
    return 0;
  int k = data[0] % 5;
  if (!path[k][0])
    snprintf(path[k], sizeof path[k], "/tmp/fuzz_labels_%ld%s", (long)getpid(), suffix[k]);
  FILE *f = fopen(path[k], "wb");
  if (!f)
    return 0;
  fwrite(data + 1, 1, size - 1, f);
  fclose(f);
  long *labels = NULL, n = 0;
  if (mach_load_labels(&c, path[k], 1 + data[0] / 5, &labels, &n) == 0)
    free(labels);
  unlink(path[k]);
  return 0;
}
