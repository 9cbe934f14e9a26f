/* fuzz_args.c — libFuzzer target: the runtime's argument parser with the
 * options of every command, then every value getter (integers, numbers,
 * seeds, the data options: --scale, --sep, columns) on what it parsed.
 * The input is the argument list, NUL-separated. Nothing is run: the
 * commands would write files. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const struct mach_optspec spec[] = {
  {"weights", MACH_OPT_VALUE}, {"input", MACH_OPT_MULTI}, {"output", MACH_OPT_MULTI},
  {"batch", MACH_OPT_VALUE},   {"epochs", MACH_OPT_VALUE}, {"lr", MACH_OPT_VALUE},
  {"seed", MACH_OPT_VALUE},    {"quiet", MACH_OPT_FLAG},   {"allow-nonfinite", MACH_OPT_FLAG},
  MACH_DATA_OPTS,
  {NULL, MACH_OPT_FLAG},
};

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static const struct mach_ctx c = {"fuzz", NULL};
  if (size > 4096)
    return 0;
  char *text = malloc(size + 1), *argv[256];
  int argc = 0;
  memcpy(text, data, size);
  text[size] = '\0';
  for (size_t i = 0; i <= size && argc < 256; i++) { /* NUL-separated arguments */
    argv[argc++] = text + i;
    i += strlen(text + i);
  }
  struct mach_args a;
  if (mach_args_parse(&c, "fuzz", spec, argc, argv, &a) == 0) {
    long l;
    double d;
    uint64_t u;
    struct mach_dataopts o;
    mach_arg_long(&c, &a, "batch", 1, 1, &l);
    mach_arg_long(&c, &a, "epochs", 0, 0, &l);
    mach_arg_double(&c, &a, "lr", 0.1, 0, 1e6, &d);
    mach_arg_u64(&c, &a, "seed", 0, &u);
    mach_dataopts_get(&c, &a, &o);
    for (int i = 0; i < mach_arg_count(&a, "input"); i++)
      (void)mach_arg_nth(&a, "input", i);
  }
  free(text);
  return 0;
}
