/* threads.c — `--threads N`: how many threads the generated kernels use,
 * and the runtime's passes over the parameters among them.
 *
 * The kernels split their work with OpenMP (the generated code is compiled
 * with -fopenmp, which links the OpenMP library into the binary); the
 * runtime itself is built without it, since the unit tests link it into
 * plain programs. So omp_set_num_threads is a weak reference: the OpenMP
 * library's function in a generated binary, NULL elsewhere. Without
 * --threads OpenMP's default holds: OMP_NUM_THREADS, else every core. */
#include "rt.h"

extern void omp_set_num_threads(int n) __attribute__((weak));

int mach_threads_set(const struct mach_ctx *c, const struct mach_args *a) {
  long n;
  int rc = mach_arg_long(c, a, "threads", 0, 1, &n);
  if (rc || !mach_arg(a, "threads"))
    return rc;
  if (n > 4096) {
    mach_err(c, "%s: --threads %ld: at most 4096", a->cmd, n);
    return 2;
  }
  if (omp_set_num_threads)
    omp_set_num_threads((int)n);
  return 0;
}

/* The model's par_for (generated code, compiled with OpenMP) when it has
 * one; else the calling thread does it all. */
void mach_par_for(const struct mach_model *m, long n, void (*fn)(void *ctx, long lo, long hi),
                  void *ctx) {
  if (m->par_for)
    m->par_for(n, fn, ctx);
  else
    fn(ctx, 0, n);
}
