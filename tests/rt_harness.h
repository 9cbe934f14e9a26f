/* rt_harness.h — shared by the runtime tests (test_runtime.c, test_data.c):
 * each suite gets a temporary directory (make_tmpdir/remove_tmpdir as its
 * .init/.fini); commands run in-process through mach_main against the
 * hand-written models of fake_model.c, with stdout and stderr captured in
 * out_text and err_text so exact messages can be checked. */
#ifndef RT_HARNESS_H
#define RT_HARNESS_H

#include <stddef.h>

#include "fake_model.h"
#include "rt.h"

extern char tmpdir[512];
extern char out_text[1 << 16], err_text[1 << 16];
extern const struct mach_ctx tctx; /* prog "test", model fake_reg */
/* The fake_reg weights the known outputs are computed with. */
extern const double known_w[13];

void make_tmpdir(void);
void remove_tmpdir(void);
/* A path in the test's directory; 16 rotating buffers. */
const char *P(const char *name);
void write_bytes(const char *path, const void *data, size_t len);
unsigned char *read_bytes(const char *path, size_t *len); /* malloc'ed */

/* Runs `fake ARGS...` (NULL-terminated) with stdin from `in` (a path or NULL);
 * stdout and stderr land in out_text and err_text. Returns the status. */
int run_in(const struct mach_model *m, const char *in, ...);
#define RUN(m, ...) run_in(m, NULL, __VA_ARGS__, (const char *)NULL)

/* .npy of doubles through the runtime's writer. */
void save_npy(const char *path, int rank, const long *shape, const double *data);
/* Raw .npy bytes: v1.0 magic, the given header text, then data. */
void raw_npy(const char *path, const char *dict, const void *data, size_t len);
/* Loads entry `name` of an .npz as doubles; returns the element count. */
long npz_entry(const char *path, const char *name, double *dst, long cap,
               struct mach_array *shape_out);
void save_weights(const struct mach_model *m, const char *path, const double *w);
/* Deterministic pseudo-random numbers in [-1, 1) for test data. */
double lcg(unsigned long *s);
/* stderr equals want exactly. */
void assert_err(const char *want);

#endif
