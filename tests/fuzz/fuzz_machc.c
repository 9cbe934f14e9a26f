/* fuzz_machc.c — libFuzzer entry point for the whole front and middle end:
 * parse, elaborate, filtration, dual machine, printing and C emission of
 * arbitrary bytes. Built and run by `make fuzz` (clang -fsanitize=fuzzer). */
#include "machc.h"

#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  static FILE *sink;
  static const char *stdlib_dirs[] = {"stdlib"};
  if (!sink)
    sink = fopen("/dev/null", "w");
  if (size > (1 << 20))
    return 0;
  Diag d;
  diag_init(&d, sink);
  Arena *a = arena_new();
  Program *p = eval_load_text(a, &d, "fuzz.mach", (const char *)data, (int)size, stdlib_dirs, 1);
  IrMachine *m = p ? eval_machine(p, NULL) : NULL;
  if (m && filt_levels(m, &d)) {
    IrMachine *dual = dual_machine(a, m);
    StrBuf c = {0}, h = {0}, mach = {0};
    EmitOptions o = {.backward = true};
    emit_c(m, dual, &o, &c, &h);
    print_machine(m, &mach);
    print_machine(dual, &mach);
    sb_free(&c);
    sb_free(&h);
    sb_free(&mach);
  }
  arena_free(a);
  diag_fini(&d);
  return 0;
}
