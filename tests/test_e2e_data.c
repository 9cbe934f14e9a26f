/* test_e2e_data.c — data handling that needs a compiled machine with grid
 * blocks or a time axis: images given flat or without their channel axis,
 * and (see the ts suite) long series cut into windows. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(data_shapes, .fini = e2e_cleanup);

static const char img_src[] =
    "machine img {\n"
    "    input  x : 1 @ [4, 4]\n"
    "    block  h : 2 @ [4, 4] = tanh(conv(x, k = 3, pad = same) + bias)\n"
    "    block  g : 2 = global_avgpool(h)\n"
    "    output y : 3 = dense(g) + bias\n"
    "}\n";

/* The same 5 images as [N, 1, 4, 4], [N, 4, 4], [N, 16] and [N, 4, 4, 1]
 * give the same outputs; [N, 2, 8] is refused with both shapes named. */
Test(data_shapes, images_flat_or_without_channel_axis) {
  const char *bin = e2e_compile(img_src, "f64"), *dir = e2e_tmpdir();
  long shapes[4][4] = {{5, 1, 4, 4}, {5, 4, 4, 0}, {5, 16, 0, 0}, {5, 4, 4, 1}};
  int ranks[4] = {4, 3, 2, 4};
  E2eRng rng = {7};
  E2eArr x = e2e_arr(4, shapes[0]);
  char *first = NULL;
  e2e_fill_uniform(&rng, &x, -1, 1);
  E2eRun r = e2e_runl(dir, 30, bin, "init", "--seed", "3", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  for (int k = 0; k < 4; k++) {
    x.ndim = ranks[k];
    memcpy(x.shape, shapes[k], sizeof shapes[k]);
    e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
    r = e2e_runl(dir, 30, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--output",
                 "-", NULL);
    e2e_check_ok(&r, "forward");
    if (!first)
      first = strdup(r.out);
    else
      cr_assert_str_eq(r.out, first, "shape %d", k);
    e2e_run_free(&r);
  }
  x.ndim = 3;
  x.shape[0] = 5, x.shape[1] = 2, x.shape[2] = 8;
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  r = e2e_runl(dir, 30, bin, "forward", "--weights", "w.npz", "--input", "x.npy", "--output", "-",
               NULL);
  cr_assert_eq(r.status, 1);
  cr_assert(strstr(r.err, "x.npy: has shape [5, 2, 8], expected [N, 1, 4, 4] for input 'x'"), "%s",
            r.err);
  e2e_run_free(&r);
  free(first);
  e2e_arr_free(&x);
}
