/* fuzz_csv.c — libFuzzer target: the CSV reader (separators, header
 * detection, numbers) and column selection. The first byte picks the
 * options; a second line of the input after a NUL is a column spec. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const struct mach_ctx c = {"fuzz", NULL};
  static const char seps[] = {0, ',', ';', '\t', ' ', '|'};
  if (size < 1 || size > (1 << 16))
    return 0;
  struct mach_csv_opts o = {seps[data[0] % sizeof seps], (data[0] >> 4) & 1};
  char *text = malloc(size);
  memcpy(text, data + 1, size - 1);
  text[size - 1] = '\0';
  size_t len = strlen(text); /* the part before a NUL is the CSV */
  const char *spec = len + 1 < size - 1 ? text + len + 1 : NULL;
  struct mach_array a;
  char **names = NULL;
  long n_names = 0;
  if (mach_csv_parse(&c, "fuzz.csv", text, len, &o, &a, &names, &n_names) == 0) {
    long *idx = NULL, n = 0;
    if (spec && a.rank == 2 &&
        mach_csv_columns(&c, "fuzz.csv", spec, names, n_names, a.shape[1], &idx, &n) == 0)
      free(idx);
    mach_array_free(&a);
  }
  free(names);
  free(text);
  return 0;
}
