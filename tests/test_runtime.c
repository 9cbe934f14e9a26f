/* test_runtime.c — the runtime (libmachrt_f64) against hand-written models
 * (fake_model.c). Commands run in-process through mach_main with stdout and
 * stderr redirected to files, so exact messages can be checked.
 * Suites: npy (formats), cli (commands), train (training and eval). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


#include "e2e_util.h"
#include "rt_harness.h"

/* ---- npy ---------------------------------------------------------------------- */

TestSuite(npy, .init = make_tmpdir, .fini = remove_tmpdir);

Test(npy, roundtrip_f64_header_is_numpy_style) {
  long shape[2] = {2, 3};
  double d[6] = {1, -2.5, 3e10, 0, -0.0, 1e-300};
  size_t len;
  unsigned char *b;
  struct mach_array a;
  char why[200];
  save_npy(P("a.npy"), 2, shape, d);
  b = read_bytes(P("a.npy"), &len);
  cr_assert_eq(len, 128 + 48); /* the header is padded to 64 bytes */
  cr_assert(strstr((char *)b + 10, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 3), }"));
  cr_assert_eq(mach_npy_parse(b, len, &a, why, sizeof why), 0, "%s", why);
  cr_assert_eq(a.dtype, MACH_DT_F8);
  cr_assert_eq(a.rank, 2);
  cr_assert_eq(a.shape[0], 2);
  cr_assert_eq(a.shape[1], 3);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(mach_array_get(&a, i), d[i]);
  free(b);
}

Test(npy, roundtrip_scalar_and_4d) {
  long s4[4] = {2, 1, 3, 2};
  double d[12], one = 42.5;
  size_t len;
  unsigned char *b;
  struct mach_array a;
  char why[200];
  for (int i = 0; i < 12; i++)
    d[i] = i * 0.5 - 3;
  save_npy(P("s.npy"), 0, NULL, &one);
  b = read_bytes(P("s.npy"), &len);
  cr_assert(strstr((char *)b + 10, "'shape': ()"));
  cr_assert_eq(mach_npy_parse(b, len, &a, why, sizeof why), 0, "%s", why);
  cr_assert_eq(a.rank, 0);
  cr_assert_eq(a.count, 1);
  cr_assert_eq(mach_array_get(&a, 0), 42.5);
  free(b);
  save_npy(P("4.npy"), 4, s4, d);
  b = read_bytes(P("4.npy"), &len);
  cr_assert_eq(mach_npy_parse(b, len, &a, why, sizeof why), 0, "%s", why);
  cr_assert_eq(a.rank, 4);
  cr_assert_eq(a.count, 12);
  cr_assert_eq(a.shape[2], 3);
  for (int i = 0; i < 12; i++)
    cr_assert_eq(mach_array_get(&a, i), d[i]);
  free(b);
}

Test(npy, reads_f32_and_integers_and_v2_headers) {
  struct {
    const char *descr;
    unsigned char bytes[16];
    size_t len;
    double v0, v1;
  } cases[] = {
    {"<f4", {0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc1}, 8, 1.5, -10},
    {"<i2", {0xff, 0xff, 7, 0}, 4, -1, 7},
    {"|u1", {200, 3}, 2, 200, 3},
    {"|i1", {0xfe, 3}, 2, -2, 3},
    {"<i8", {5, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 16, 5, -1},
    {"<u4", {1, 0, 0, 0, 0, 1, 0, 0}, 8, 1, 256},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    char dict[128], why[200];
    unsigned char buf[256];
    struct mach_array a;
    size_t hl;
    /* keys in another order, double quotes, no trailing comma, v2.0 header */
    hl = (size_t)snprintf(dict, sizeof dict, "{ \"shape\" : (2,) ,'fortran_order':False,'descr':'%s' }\n",
                          cases[k].descr);
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    buf[8] = (unsigned char)hl;
    buf[9] = buf[10] = buf[11] = 0;
    memcpy(buf + 12, dict, hl);
    memcpy(buf + 12 + hl, cases[k].bytes, cases[k].len);
    cr_assert_eq(mach_npy_parse(buf, 12 + hl + cases[k].len, &a, why, sizeof why), 0,
                 "%s: %s", cases[k].descr, why);
    cr_assert_eq(a.rank, 1);
    cr_assert_eq(mach_array_get(&a, 0), cases[k].v0, "%s", cases[k].descr);
    cr_assert_eq(mach_array_get(&a, 1), cases[k].v1, "%s", cases[k].descr);
  }
}

Test(npy, python2_long_shape) {
  double d[3] = {1, 2, 3};
  struct mach_array a;
  char why[200];
  size_t len;
  unsigned char *b;
  raw_npy(P("l.npy"), "{'descr': '<f8', 'fortran_order': False, 'shape': (3L,), }      \n", d,
          sizeof d);
  b = read_bytes(P("l.npy"), &len);
  cr_assert_eq(mach_npy_parse(b, len, &a, why, sizeof why), 0, "%s", why);
  cr_assert_eq(a.shape[0], 3);
  free(b);
}

Test(npy, crc32_check_value) {
  cr_assert_eq(mach_crc32(0, "123456789", 9), 0xCBF43926u);
  cr_assert_eq(mach_crc32(mach_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

Test(npy, npz_roundtrip_and_crc) {
  double w[13], back[13];
  struct mach_npz z;
  struct mach_array a;
  for (int i = 0; i < 13; i++)
    w[i] = known_w[i] * 3;
  save_weights(&fake_reg, P("w.npz"), w);
  cr_assert_eq(mach_npz_open(&tctx, P("w.npz"), &z), 0);
  cr_assert_eq(z.n, 4);
  cr_assert_str_eq(z.mem[0].name, "W_h_u");
  cr_assert_str_eq(z.mem[3].name, "b_y");
  for (int i = 0; i < z.n; i++) {
    cr_assert_eq(z.mem[i].method, 0);
    cr_assert_eq(mach_crc32(0, z.mem[i].data, z.mem[i].size), z.mem[i].crc);
  }
  cr_assert_eq(mach_npz_get(&tctx, &z, "nope", &a), -1);
  mach_npz_close(&z);
  cr_assert_eq(npz_entry(P("w.npz"), "W_h_u", back, 13, &a), 6);
  cr_assert_eq(a.shape[0], 2);
  cr_assert_eq(a.shape[1], 3);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(back[i], w[i]);
  cr_assert_eq(npz_entry(P("w.npz"), "b_y", back, 13, NULL), 1);
  cr_assert_eq(back[0], w[12]);
}

/* Each malformed input gives exactly one line, the file name and the reason. */
static void expect_input_error(const char *dict, const void *data, size_t len, const char *why) {
  char want[1024];
  save_weights(&fake_reg, P("w.npz"), known_w);
  raw_npy(P("x.npy"), dict, data, len);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 1, "%s", dict);
  snprintf(want, sizeof want, "fake: %s: %s\n", P("x.npy"), why);
  assert_err(want);
  cr_assert_eq(access(P("y.npy"), F_OK), -1);
}

Test(npy, rejects_malformed_inputs) {
  double d[8] = {0};
  short s[8] = {0};
  char want[1024];
  (void)s;
  expect_input_error("{'descr': '<c16', 'fortran_order': False, 'shape': (2, 2), }", d, 64,
                     "expected integer or float data, found '<c16'");
  expect_input_error("{'descr': '<f8', 'fortran_order': 1, 'shape': (2, 2), }", d, 32,
                     "bad header: 'fortran_order' is not True or False");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 2), }", d, 40,
                     "truncated data: shape [3, 2] needs 48 bytes, found 40");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }",
                     d, 32, "shape is too large (its product overflows)");
  expect_input_error("{descr: '<f8'}", d, 32, "bad header: expected a string");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), 'x': 1}", d, 32,
                     "bad header: unknown key 'x'");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, -2), }", d, 32,
                     "bad header: 'shape' holds something other than non-negative integers");
  expect_input_error("{'descr': '<f8', 'fortran_order': False}", d, 32, "bad header: missing 'shape'");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4, 3), }", d, 8 * 8,
                     "truncated data: shape [4, 3] needs 96 bytes, found 64");
  expect_input_error("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 4), }", d, 64,
                     "has shape [2, 4], expected [N, 2] for input 'u'");
  /* bad magic, empty file, header longer than the file */
  write_bytes(P("x.npy"), "hello world, this is text", 25);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 1);
  snprintf(want, sizeof want, "fake: %s: not a .npy file (bad magic)\n", P("x.npy"));
  assert_err(want);
  write_bytes(P("x.npy"), "", 0);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 1);
  snprintf(want, sizeof want, "fake: %s: truncated file (no .npy header)\n", P("x.npy"));
  assert_err(want);
  write_bytes(P("x.npy"), "\x93NUMPY\x01\x00\x76\x00{'descr'", 18);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 1);
  snprintf(want, sizeof want, "fake: %s: truncated file (header runs past the end)\n", P("x.npy"));
  assert_err(want);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("missing.npy"),
                   "--output", P("y.npy")), 1);
  snprintf(want, sizeof want, "fake: %s: cannot open: No such file or directory\n", P("missing.npy"));
  assert_err(want);
}

/* Writes the fake_reg weights with one parameter replaced or left out. */
static void weights_variant(const char *path, const char *skip, int bad_rank2) {
  struct mach_npz_entry e[4];
  int n = 0;
  for (int p = 0; p < 4; p++) {
    const struct mach_param *pp = &fake_reg.params[p];
    if (skip && strcmp(pp->name, skip) == 0)
      continue;
    snprintf(e[n].name, sizeof e[n].name, "%s", pp->name);
    e[n].rank = pp->rank;
    for (int k = 0; k < pp->rank; k++)
      e[n].shape[k] = pp->shape[k];
    if (p == 0 && bad_rank2)
      e[n].shape[1] = 4; /* [2, 4] instead of [2, 3] */
    e[n].data = known_w;
    n++;
  }
  cr_assert_eq(mach_npz_save(&tctx, path, e, n), 0);
}

static void expect_weights_error(const char *why) {
  char want[1024];
  double x[2] = {1, 2};
  long shape[2] = {1, 2};
  save_npy(P("x.npy"), 2, shape, x);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 1);
  snprintf(want, sizeof want, "fake: %s: %s\n", P("w.npz"), why);
  assert_err(want);
}

Test(npy, rejects_malformed_weights) {
  size_t len;
  unsigned char *b;
  weights_variant(P("w.npz"), NULL, 1);
  expect_weights_error("parameter 'W_h_u' has shape [2, 4], expected [2, 3]");
  weights_variant(P("w.npz"), "b_h", 0);
  expect_weights_error("no entry 'b_h'");
  /* method 12 (bzip2) in the central directory (offset 10); method 8
   * (deflate) over bytes that are not deflate data */
  weights_variant(P("w.npz"), NULL, 0);
  b = read_bytes(P("w.npz"), &len);
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(b + i, "PK\x01\x02", 4) == 0)
      b[i + 10] = 12;
  write_bytes(P("w.npz"), b, len);
  expect_weights_error("entry 'W_h_u' uses zip method 12; expected stored or deflate (np.savez "
                       "or np.savez_compressed)");
  for (size_t i = 0; i + 4 <= len; i++)
    if (memcmp(b + i, "PK\x01\x02", 4) == 0)
      b[i + 10] = 8;
  write_bytes(P("w.npz"), b, len);
  expect_weights_error("entry 'W_h_u' is corrupt (inflated size differs from the zip directory)");
  free(b);
  /* a flipped data byte */
  weights_variant(P("w.npz"), NULL, 0);
  b = read_bytes(P("w.npz"), &len);
  b[30 + 9 + 128 + 3] ^= 0x40; /* local header, "W_h_u.npy", npy header, data */
  write_bytes(P("w.npz"), b, len);
  expect_weights_error("entry 'W_h_u' is corrupt (CRC-32 mismatch)");
  /* cut in half */
  write_bytes(P("w.npz"), b, len / 2);
  expect_weights_error("not an .npz file (no zip end record; truncated?)");
  free(b);
  write_bytes(P("w.npz"), "not a zip at all, just some words here", 38);
  expect_weights_error("not an .npz file (no zip end record)");
}

Test(npy, extra_entries_in_weights_are_ignored) {
  struct mach_npz_entry e[5];
  double x[2] = {1, 2};
  long shape[2] = {1, 2};
  for (int p = 0; p < 4; p++) {
    const struct mach_param *pp = &fake_reg.params[p];
    snprintf(e[p].name, sizeof e[p].name, "%s", pp->name);
    e[p].rank = pp->rank;
    for (int k = 0; k < pp->rank; k++)
      e[p].shape[k] = pp->shape[k];
    e[p].data = known_w + pp->offset;
  }
  snprintf(e[4].name, sizeof e[4].name, "notes");
  e[4].rank = 1;
  e[4].shape[0] = 2;
  e[4].data = x;
  cr_assert_eq(mach_npz_save(&tctx, P("w.npz"), e, 5), 0);
  save_npy(P("x.npy"), 2, shape, x);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", "-"), 0, "%s", err_text);
  cr_assert_str_eq(err_text, "");
  cr_assert(fabs(strtod(out_text, NULL) - -0.6165000398616775) < 1e-15, "%s", out_text);
}

/* Reads the numpy-produced layout: ZIP64 local headers with 0xffffffff sizes
 * (np.savez forces them) and real sizes in the central directory. */
Test(npy, reads_zip64_local_headers) {
  unsigned char zip[1024], npy[256];
  double v = 2.5;
  long shape[1] = {1};
  size_t hl = mach_npy_header((char *)npy, sizeof npy, 1, shape), n = 0, size;
  uint32_t crc;
  struct mach_npz z;
  struct mach_array a;
  memcpy(npy + hl, &v, 8);
  size = hl + 8;
  crc = mach_crc32(0, npy, size);
  /* local header with a 20-byte zip64 extra */
  memcpy(zip, "PK\x03\x04\x2d\x00\x00\x00\x00\x00\x00\x00\x21\x00", 14);
  memcpy(zip + 14, &crc, 4);
  memset(zip + 18, 0xff, 8);
  memcpy(zip + 26, "\x05\x00\x14\x00", 4);
  memcpy(zip + 30, "a.npy", 5);
  memcpy(zip + 35, "\x01\x00\x10\x00", 4);
  memcpy(zip + 39, &(uint64_t){size}, 8);
  memcpy(zip + 47, &(uint64_t){size}, 8);
  n = 55;
  memcpy(zip + n, npy, size);
  n += size;
  {
    size_t cd = n;
    uint32_t s32 = (uint32_t)size, zero = 0;
    memcpy(zip + n, "PK\x01\x02\x2d\x03\x2d\x00\x00\x00\x00\x00\x00\x00\x21\x00", 16);
    memcpy(zip + n + 16, &crc, 4);
    memcpy(zip + n + 20, &s32, 4);
    memcpy(zip + n + 24, &s32, 4);
    memcpy(zip + n + 28, "\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\x01", 14);
    memcpy(zip + n + 42, &zero, 4);
    memcpy(zip + n + 46, "a.npy", 5);
    n += 51;
    memcpy(zip + n, "PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00", 12);
    s32 = (uint32_t)(n - cd);
    memcpy(zip + n + 12, &s32, 4);
    s32 = (uint32_t)cd;
    memcpy(zip + n + 16, &s32, 4);
    memcpy(zip + n + 20, "\x00\x00", 2);
    n += 22;
  }
  write_bytes(P("z.npz"), zip, n);
  cr_assert_eq(mach_npz_open(&tctx, P("z.npz"), &z), 0, "%s", err_text);
  cr_assert_eq(mach_npz_get(&tctx, &z, "a", &a), 0);
  cr_assert_eq(mach_array_get(&a, 0), 2.5);
  mach_npz_close(&z);
}

Test(npy, atomic_write_leaves_no_temporary) {
  DIR *d;
  struct dirent *ent;
  int files = 0;
  char want[1024];
  cr_assert_eq(RUN(&fake_reg, "init", "--out", P("w.npz")), 0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, "init", "--seed", "3", "--out", P("w.npz")), 0); /* overwrite */
  d = opendir(tmpdir);
  while ((ent = readdir(d)))
    if (ent->d_name[0] != '.') {
      cr_assert_str_eq(ent->d_name, "w.npz");
      files++;
    }
  closedir(d);
  cr_assert_eq(files, 1);
  cr_assert_eq(RUN(&fake_reg, "init", "--out", P("no/such/dir/w.npz")), 1);
  snprintf(want, sizeof want, "fake: %s: cannot write: No such file or directory\n",
           P("no/such/dir/w.npz"));
  assert_err(want);
}

/* ---- cli ---------------------------------------------------------------------- */

TestSuite(cli, .init = make_tmpdir, .fini = remove_tmpdir);

Test(cli, info_text_and_json) {
  cr_assert_eq(RUN(&fake_reg, "info"), 0);
  cr_assert(strstr(out_text, "model: fake_reg (f64)"));
  cr_assert(strstr(out_text, "  1: h\n"));
  cr_assert(strstr(out_text, "total parameters: 13\n"));
  cr_assert(strstr(out_text, "W_h_u"));
  cr_assert_eq(RUN(&fake_reg, "info", "--json"), 0);
  cr_assert(strstr(out_text, "{\"name\": \"fake_reg\", \"dtype\": \"f64\", \"source\": \"tests/fake_model.c\""));
  cr_assert(strstr(out_text, "\"inputs\": [{\"name\": \"u\", \"shape\": [2]}]"));
  cr_assert(strstr(out_text, "\"levels\": [[\"u\"], [\"h\"], [\"y\"]]"));
  /* where each parameter starts in the flat buffer */
  cr_assert(strstr(out_text, "{\"name\": \"b_h\", \"shape\": [3], \"size\": 3, \"offset\": 6}"));
  cr_assert(strstr(out_text, "{\"name\": \"h\", \"shape\": [3], \"activation\": \"tanh\", \"level\": 1}"));
  cr_assert(strstr(out_text, "\"param_count\": 13, \"forward_flops\": 21, \"time_length\": 0, \"timeblock\": 0}\n"));
  cr_assert_eq(strchr(out_text, '\n'), out_text + strlen(out_text) - 1); /* one line */
}

Test(cli, json_escaping) {
  FILE *f = fopen(P("j.txt"), "w");
  char buf[128];
  size_t len;
  unsigned char *b;
  mach_json_str(f, "a\"b\\c\nd\x01");
  fclose(f);
  b = read_bytes(P("j.txt"), &len);
  memcpy(buf, b, len);
  buf[len] = 0;
  cr_assert_str_eq(buf, "\"a\\\"b\\\\c\\nd\\u0001\"");
  free(b);
}

Test(cli, init_is_reproducible) {
  size_t l1, l2, l3;
  unsigned char *a, *b, *c;
  double w[13];
  cr_assert_eq(RUN(&fake_reg, "init", "--seed", "7", "--out", P("a.npz")), 0);
  cr_assert_eq(RUN(&fake_reg, "init", "--seed", "7", "--out", P("b.npz")), 0);
  cr_assert_eq(RUN(&fake_reg, "init", "--seed", "8", "--out", P("c.npz")), 0);
  a = read_bytes(P("a.npz"), &l1);
  b = read_bytes(P("b.npz"), &l2);
  c = read_bytes(P("c.npz"), &l3);
  cr_assert_eq(l1, l2);
  cr_assert_eq(memcmp(a, b, l1), 0);
  cr_assert_eq(l1, l3);
  cr_assert_neq(memcmp(a, c, l1), 0);
  cr_assert_eq(npz_entry(P("a.npz"), "W_h_u", w, 13, NULL), 6);
  for (int i = 0; i < 6; i++)
    cr_assert(fabs(w[i]) < 0.9 && w[i] != 0);
  cr_assert_eq(npz_entry(P("a.npz"), "b_h", w, 13, NULL), 3);
  cr_assert(w[0] == 0 && w[1] == 0 && w[2] == 0);
  free(a);
  free(b);
  free(c);
}

Test(cli, forward_known_numbers_any_batch) {
  double x[6] = {1, 2, -0.5, 0.25, 0, 0}, y[3];
  const double want[3] = {-0.6165000398616775, -0.3374829712035267, 0.06799380258299301};
  long shape[2] = {3, 2};
  size_t l1, l2;
  unsigned char *a, *b;
  struct mach_array arr;
  char why[200];
  save_weights(&fake_reg, P("w.npz"), known_w);
  save_npy(P("x.npy"), 2, shape, x);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y1.npy"), "--batch", "1"), 0, "%s", err_text);
  a = read_bytes(P("y.npy"), &l1);
  b = read_bytes(P("y1.npy"), &l2);
  cr_assert_eq(l1, l2);
  cr_assert_eq(memcmp(a, b, l1), 0);
  cr_assert_eq(mach_npy_parse(a, l1, &arr, why, sizeof why), 0);
  cr_assert_eq(arr.rank, 2);
  cr_assert_eq(arr.shape[0], 3);
  cr_assert_eq(arr.shape[1], 1);
  for (int i = 0; i < 3; i++) {
    y[i] = mach_array_get(&arr, i);
    cr_assert(fabs(y[i] - want[i]) < 1e-15, "y[%d] = %.17g", i, y[i]);
  }
  free(a);
  free(b);
}

Test(cli, forward_dump_state) {
  double x[4] = {1, 2, -0.5, 0.25}, v[16];
  long shape[2] = {2, 2};
  struct mach_array a;
  save_weights(&fake_reg, P("w.npz"), known_w);
  save_npy(P("x.npy"), 2, shape, x);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--output", P("y.npz"), "--dump-state", P("s.npz"), "--batch", "1"), 0,
               "%s", err_text);
  cr_assert_eq(npz_entry(P("y.npz"), "y", v, 16, &a), 2);
  cr_assert(fabs(v[0] - -0.6165000398616775) < 1e-15);
  cr_assert_eq(npz_entry(P("s.npz"), "y.h", v, 16, &a), 6);
  cr_assert_eq(a.shape[0], 2);
  cr_assert_eq(a.shape[1], 3);
  cr_assert(fabs(v[0] - 0.91) < 1e-15 && fabs(v[5] - -0.27) < 1e-15);
  cr_assert_eq(npz_entry(P("s.npz"), "z.h", v, 16, NULL), 6);
  cr_assert(fabs(v[0] - tanh(0.91)) < 1e-15);
  cr_assert_eq(npz_entry(P("s.npz"), "z.u", v, 16, NULL), 4);
  cr_assert_eq(v[2], -0.5);
}

/* The three known outputs, one per line, with all 17 digits. */
static void check_csv_y(const char *text) {
  const double want[3] = {-0.6165000398616775, -0.3374829712035267, 0.06799380258299301};
  char *end;
  for (int i = 0; i < 3; i++) {
    double v = strtod(text, &end);
    cr_assert(end > text && *end == '\n', "%s", text);
    cr_assert(fabs(v - want[i]) < 1e-15, "%s", text);
    cr_assert_geq(end - text, 17);
    text = end + 1;
  }
  cr_assert_eq(*text, 0);
}

Test(cli, predict_csv_stdin_stdout) {
  save_weights(&fake_reg, P("w.npz"), known_w);
  write_bytes(P("x.csv"), "1,2\n-0.5 0.25\n\n0,0\n", 19);
  cr_assert_eq(run_in(&fake_reg, P("x.csv"), "predict", "--weights", P("w.npz"), (const char *)NULL),
               0, "%s", err_text);
  check_csv_y(out_text);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("x.csv"),
                   "--output", P("y.csv")), 0);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", "u=" /* named */,
                   "--output", P("y.csv")), 1);
  write_bytes(P("bad.csv"), "1,2\n3,abc\n", 10);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("bad.csv"),
                   "--output", "-"), 1);
  {
    char want[1024];
    snprintf(want, sizeof want, "fake: %s: line 2: 'abc' is not a number\n", P("bad.csv"));
    assert_err(want);
  }
  write_bytes(P("bad.csv"), "1,2\n3,4,5\n", 10);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", P("bad.csv"),
                   "--output", "-"), 1);
}

/* sum(output * G) evaluated directly with the model, for finite differences. */
static double objective(const double *w, const double *x, const double *g, long n) {
  double *s = calloc((size_t)(n * fake_reg.state_size), sizeof *s), sum = 0;
  const double *in[1] = {x};
  fake_reg.forward(w, in, s, n);
  for (long i = 0; i < n; i++)
    sum += s[n * fake_reg.blocks[2].z_offset + i] * g[i];
  free(s);
  return sum;
}

static void check_fd(double an, double fd, const char *what, int i) {
  cr_assert(fabs(an - fd) <= 1e-6 * fmax(1.0, fabs(an)), "%s[%d]: grad %.12g, finite differences %.12g",
            what, i, an, fd);
}

Test(cli, grad_matches_finite_differences) {
  enum { N = 5 };
  double x[2 * N], g[N], w[13], d[3 * N];
  long xs[2] = {N, 2}, gs[2] = {N, 1};
  unsigned long seed = 1;
  const double h = 1e-5;
  for (int i = 0; i < 2 * N; i++)
    x[i] = lcg(&seed);
  for (int i = 0; i < N; i++)
    g[i] = lcg(&seed);
  for (int i = 0; i < 13; i++)
    w[i] = lcg(&seed);
  save_weights(&fake_reg, P("w.npz"), w);
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("g.npy"), 2, gs, g);
  cr_assert_eq(RUN(&fake_reg, "grad", "--weights", P("w.npz"), "--input", P("x.npy"),
                   "--cotangent", P("g.npy"), "--output", P("d.npz"), "--batch", "2",
                   "--dump-dual", P("dd.npz"), "--dump-state", P("ds.npz")), 0, "%s", err_text);
  for (int p = 0; p < 4; p++) {
    const struct mach_param *pp = &fake_reg.params[p];
    cr_assert_eq(npz_entry(P("d.npz"), pp->name, d, 2 * N, NULL), pp->size);
    for (long i = 0; i < pp->size; i++) {
      double keep = w[pp->offset + i], fp, fm;
      w[pp->offset + i] = keep + h;
      fp = objective(w, x, g, N);
      w[pp->offset + i] = keep - h;
      fm = objective(w, x, g, N);
      w[pp->offset + i] = keep;
      check_fd(d[i], (fp - fm) / (2 * h), pp->name, (int)i);
    }
  }
  cr_assert_eq(npz_entry(P("d.npz"), "u", d, 2 * N, NULL), 2 * N);
  for (int i = 0; i < 2 * N; i++) {
    double keep = x[i], fp, fm;
    x[i] = keep + h;
    fp = objective(w, x, g, N);
    x[i] = keep - h;
    fm = objective(w, x, g, N);
    x[i] = keep;
    check_fd(d[i], (fp - fm) / (2 * h), "u", i);
  }
  cr_assert_eq(npz_entry(P("dd.npz"), "zbar.y", d, 2 * N, NULL), N);
  for (int i = 0; i < N; i++)
    cr_assert_eq(d[i], g[i]);
  cr_assert_eq(npz_entry(P("dd.npz"), "ybar.h", d, 3 * N, NULL), 3 * N);
  cr_assert_eq(npz_entry(P("ds.npz"), "z.y", d, 3 * N, NULL), N);
}

Test(cli, usage_errors_exit_2) {
  cr_assert_eq(RUN(&fake_reg, "--help"), 0);
  cr_assert(strncmp(out_text, "usage: fake COMMAND", 19) == 0, "%s", out_text);
  cr_assert_eq(RUN(&fake_reg, "train", "--help"), 0);
  cr_assert(strncmp(out_text, "usage: fake train ", 18) == 0);
  cr_assert_str_eq(err_text, "");
  cr_assert_eq(run_in(&fake_reg, NULL, (const char *)NULL), 2);
  cr_assert(strncmp(err_text, "usage: fake", 11) == 0);
  cr_assert_eq(RUN(&fake_reg, "frobnicate"), 2);
  assert_err("fake: unknown command 'frobnicate' (try 'fake --help')\n");
  cr_assert_eq(RUN(&fake_reg, "forward", "--frob"), 2);
  assert_err("fake: forward: unknown option '--frob' (try 'fake forward --help')\n");
  cr_assert_eq(RUN(&fake_reg, "forward", "--input", "x.npy", "--output", "y.npy"), 2);
  assert_err("fake: forward: missing --weights (try 'fake forward --help')\n");
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights"), 2);
  assert_err("fake: forward: missing value for '--weights' (try 'fake forward --help')\n");
  cr_assert_eq(RUN(&fake_reg, "init", "--seed", "-1", "--out", "w.npz"), 2);
  assert_err("fake: init: --seed: '-1' is not an unsigned 64-bit integer (try 'fake init --help')\n");
  cr_assert_eq(RUN(&fake_reg, "info", "stray"), 2);
  assert_err("fake: info: unexpected argument 'stray' (try 'fake info --help')\n");
  cr_assert_eq(RUN(&fake_reg, "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse",
                   "--epochs", "3", "--out", "w.npz", "--batch", "0"), 2);
  assert_err("fake: train: --batch: '0' is not an integer in [1, 2147483647] (try 'fake train --help')\n");
  cr_assert_eq(RUN(&fake_reg, "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "l1",
                   "--epochs", "3", "--out", "w.npz"), 2);
  assert_err("fake: train: --loss: 'l1' is not mse or xent (try 'fake train --help')\n");
  cr_assert_eq(RUN(&fake_reg, "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse",
                   "--epochs", "3", "--out", "w.npz", "--optimizer", "lbfgs"), 2);
  assert_err("fake: train: --optimizer: 'lbfgs' is not sgd, momentum or adam (try 'fake train --help')\n");
  cr_assert_eq(RUN(&fake_reg, "train", "--data", "x.npy", "--targets", "t.npy", "--loss", "mse",
                   "--out", "w.npz"), 2);
  assert_err("fake: train: missing --epochs (try 'fake train --help')\n");
}

/* ---- train -------------------------------------------------------------------- */

TestSuite(train, .init = make_tmpdir, .fini = remove_tmpdir);

/* The finiteness check of train's guards: one inf or nan anywhere in a
 * stretch (first, last, inside a vector or in the scalar tail) makes it
 * non-finite; the largest double, subnormals and -0 are finite. */
Test(train, all_finite_finds_any_inf_or_nan) {
  enum { N = 67 };
  double p[N];
  for (int i = 0; i < N; i++)
    p[i] = (i % 3 ? 1.0 : -1.0) * (i + 0.5);
  p[5] = DBL_MAX, p[6] = -DBL_MAX, p[7] = 4.9e-324, p[8] = -0.0;
  for (long n = 0; n <= N; n++)
    cr_assert(mach_all_finite(p, n), "%ld finite values", n);
  const double bad[] = {INFINITY, -INFINITY, NAN, -NAN};
  for (int b = 0; b < 4; b++)
    for (int at = 0; at < N; at++) {
      double keep = p[at];
      p[at] = bad[b];
      cr_assert_not(mach_all_finite(p, N), "%g at %d", bad[b], at);
      cr_assert(mach_all_finite(p, at), "before %d", at);
      p[at] = keep;
    }
}

/* The same check in a runtime that clang built (see VECTOR_CLONES in
 * optim.c: machc did not link with CC=clang): optim.c, built by clang into
 * a shared object, exports mach_all_finite, and its clones answer. */
Test(train, all_finite_exported_when_clang_builds_the_runtime) {
  const char *dir = e2e_tmpdir(), *so = e2e_path(dir, "optim.so");
  E2eRun r = e2e_runl(dir, 120, "clang", "-std=c11", "-D_GNU_SOURCE", "-O2", "-fPIC", "-shared",
                      e2e_fmt("-I%s/runtime", e2e_root()), "-o", so,
                      e2e_path(e2e_root(), "runtime/optim.c"), "-lm", NULL);
  e2e_check_ok(&r, "clang -shared runtime/optim.c");
  e2e_run_free(&r);
  void *h = dlopen(so, RTLD_LAZY | RTLD_LOCAL);
  cr_assert(h, "dlopen %s: %s", so, dlerror());
  int (*all_finite)(const double *, long);
  *(void **)&all_finite = dlsym(h, "mach_all_finite");
  cr_assert(all_finite, "optim.c built by clang does not export mach_all_finite");
  double p[21];
  for (int i = 0; i < 21; i++)
    p[i] = i - 10.5;
  cr_expect(all_finite(p, 21));
  p[17] = NAN;
  cr_expect_not(all_finite(p, 21));
  cr_expect(all_finite(p, 17));
  dlclose(h);
  e2e_cleanup();
}

/* N samples of a target the net can represent: 0.7 tanh(0.8 x1 - 0.5 x2) + 0.1 */
static void regression_data(long n) {
  double *x = malloc(sizeof(double) * 2 * (size_t)n), *t = malloc(sizeof(double) * (size_t)n);
  long xs[2] = {n, 2}, ts[2] = {n, 1};
  unsigned long seed = 42;
  for (long i = 0; i < n; i++) {
    x[2 * i] = lcg(&seed);
    x[2 * i + 1] = lcg(&seed);
    t[i] = 0.7 * tanh(0.8 * x[2 * i] - 0.5 * x[2 * i + 1]) + 0.1;
  }
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("t.npy"), 2, ts, t);
  free(x);
  free(t);
}

static double final_loss(void) {
  const char *f = strstr(out_text, "final: loss ");
  cr_assert_not_null(f, "stdout: %s", out_text);
  return strtod(f + 12, NULL);
}

Test(train, adam_fits_regression) {
  double before, after;
  regression_data(64);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--optimizer", "adam", "--lr", "0.01", "--epochs", "1", "--batch", "64",
                   "--seed", "1", "--out", P("w0.npz"), "--quiet"), 0, "%s", err_text);
  before = final_loss();
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--optimizer", "adam", "--lr", "0.02", "--epochs", "400", "--batch", "16",
                   "--seed", "1", "--out", P("w.npz"), "--log", P("log.csv"), "--val-split",
                   "0.25"), 0, "%s", err_text);
  after = final_loss();
  cr_assert(after < 2e-3 && after < before / 10, "loss %g -> %g", before, after);
  cr_assert(strstr(out_text, "epoch 8/400  loss "));
  cr_assert(strstr(out_text, "val_loss"));
  cr_assert(strstr(out_text, "(400 epochs, 1200 steps, "), "%s", out_text);
  cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("x.npy"), "--targets",
                   P("t.npy"), "--loss", "mse"), 0, "%s", err_text);
  cr_assert(strncmp(out_text, "loss ", 5) == 0 && strtod(out_text + 5, NULL) < 4e-3, "%s", out_text);
  {
    size_t len;
    unsigned char *b = read_bytes(P("log.csv"), &len);
    int lines = 0;
    cr_assert(strncmp((char *)b, "epoch,step,loss,val_loss,accuracy,seconds,lr\n1,3,", 49) == 0);
    for (size_t i = 0; i < len; i++)
      lines += b[i] == '\n';
    cr_assert_eq(lines, 401);
    free(b);
  }
}

/* An update that overflows (lr times a gradient of 2e4: past the largest
 * double) stops training with the reason: at the first step (lr 1e308),
 * with nothing written; at the second (lr 1e-3, then 1e304 from epoch 2 on),
 * keeping the first step's weights, which are finite (train --init takes
 * them). */
Test(train, update_to_inf_stops_with_a_reason) {
  double x[2 * 16], t[16];
  long xs[2] = {16, 2}, ts[2] = {16, 1};
  unsigned long seed = 7;
  for (int i = 0; i < 16; i++)
    x[2 * i] = lcg(&seed), x[2 * i + 1] = lcg(&seed), t[i] = 1e4;
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("t.npy"), 2, ts, t);
  const char *opts[] = {"sgd", "momentum"};
  for (int k = 0; k < 2; k++) {
    int rc = RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss", "mse",
                 "--optimizer", opts[k], "--lr", "1e308", "--epochs", "1", "--batch", "16", "--seed", "1",
                 "--out", P("inf.npz"), "--quiet");
    cr_assert_neq(rc, 0, "%s: %s", opts[k], out_text);
    cr_assert(strstr(err_text, "step 1: parameters are not finite after the update; no step succeeded"),
              "%s: %s", opts[k], err_text);
    rc = RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss", "mse", "--optimizer",
             opts[k], "--lr", "1e-3", "--lr-schedule", "step:1:1e307", "--epochs", "2", "--batch", "16",
             "--seed", "1", "--out", P("kept.npz"), "--quiet");
    cr_assert_neq(rc, 0, "%s: %s", opts[k], out_text);
    cr_assert(strstr(err_text, "epoch 2, step 2: parameters are not finite after the update; kept the last "
                               "good weights"),
              "%s: %s", opts[k], err_text);
    cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss", "mse",
                     "--init", P("kept.npz"), "--epochs", "1", "--batch", "16", "--out", P("ok.npz"), "--quiet"),
                 0, "%s: %s", opts[k], err_text);
  }
}

Test(train, same_seed_same_weights) {
  regression_data(20);
  for (int k = 0; k < 2; k++)
    cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                     "mse", "--optimizer", "momentum", "--lr", "0.05", "--epochs", "5", "--batch",
                     "3", "--seed", "9", "--out", k ? P("b.npz") : P("a.npz"), "--quiet"), 0);
  /* the weights entries (the checkpoint's train/ entries hold timings) */
  for (int p = 0; p < fake_reg.n_params; p++) {
    double wa[13], wb[13];
    long n = npz_entry(P("a.npz"), fake_reg.params[p].name, wa, 13, NULL);
    cr_assert_eq(npz_entry(P("b.npz"), fake_reg.params[p].name, wb, 13, NULL), n);
    cr_assert_eq(memcmp(wa, wb, sizeof(double) * (size_t)n), 0);
  }
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--optimizer", "sgd", "--lr", "0.1", "--epochs", "2", "--batch", "100",
                   "--init", P("a.npz"), "--out", P("c.npz"), "--weight-decay", "0.01"), 0);
  cr_assert(strstr(out_text, "(2 epochs, 2 steps, "), "%s", out_text);
}

Test(train, xent_reaches_full_accuracy) {
  enum { N = 40 };
  double x[2 * N], lab[N];
  long xs[2] = {N, 2}, ls[1] = {N};
  unsigned long seed = 5;
  for (int i = 0; i < N;) {
    double a = lcg(&seed), b = lcg(&seed);
    if (fabs(a + b) < 0.3)
      continue;
    x[2 * i] = a;
    x[2 * i + 1] = b;
    lab[i] = a + b > 0;
    i++;
  }
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("l.npy"), 1, ls, lab);
  cr_assert_eq(RUN(&fake_cls, "train", "--data", P("x.npy"), "--targets", P("l.npy"), "--loss",
                   "xent", "--lr", "0.05", "--epochs", "150", "--batch", "8", "--out", P("w.npz"),
                   "--print-every", "50"), 0, "%s", err_text);
  cr_assert(strstr(out_text, "acc 1 ("), "%s", out_text);
  cr_assert_eq(RUN(&fake_cls, "eval", "--weights", P("w.npz"), "--data", P("x.npy"), "--targets",
                   P("l.npy"), "--loss", "xent"), 0, "%s", err_text);
  cr_assert(strstr(out_text, "\naccuracy 1\n"), "%s", out_text);
  lab[3] = 2;
  save_npy(P("l.npy"), 1, ls, lab);
  cr_assert_eq(RUN(&fake_cls, "eval", "--weights", P("w.npz"), "--data", P("x.npy"), "--targets",
                   P("l.npy"), "--loss", "xent"), 1);
  {
    char want[1024];
    snprintf(want, sizeof want, "fake: %s: label 2 (sample 3) is out of range [0, 2)\n", P("l.npy"));
    assert_err(want);
  }
}

Test(train, sample_count_mismatch) {
  char want[1024];
  regression_data(6);
  {
    double t[5] = {0};
    long ts[2] = {5, 1};
    save_npy(P("t5.npy"), 2, ts, t);
  }
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t5.npy"), "--loss",
                   "mse", "--epochs", "1", "--out", P("w.npz")), 1);
  snprintf(want, sizeof want, "fake: %s: has 5 samples, but the data has 6\n", P("t5.npy"));
  assert_err(want);
}

Test(train, nan_keeps_last_good_weights) {
  double w[13];
  regression_data(64);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--optimizer", "sgd", "--lr", "1e30", "--epochs", "50", "--batch", "8",
                   "--out", P("w.npz"), "--quiet"), 1);
  cr_assert(strncmp(err_text, "fake: training stopped at epoch ", 32) == 0, "%s", err_text);
  cr_assert(strstr(err_text, "; kept the last good weights in "), "%s", err_text);
  for (int p = 0; p < 4; p++) {
    long n = npz_entry(P("w.npz"), fake_reg.params[p].name, w, 13, NULL);
    for (long i = 0; i < n; i++)
      cr_assert(isfinite(w[i]));
  }
}

/* ---- several inputs and outputs (fake_two) ------------------------------------ */

static void two_setup(void) {
  const double w[3] = {2, 10, 20}, a[3] = {1, 2, 3}, b[6] = {1, 2, 3, 4, 5, 6};
  long as[1] = {3}, bs[2] = {3, 2};
  save_weights(&fake_two, P("w.npz"), w);
  save_npy(P("a.npy"), 1, as, a); /* [N] for a block of one scalar */
  save_npy(P("b.npy"), 2, bs, b);
}

Test(cli, named_inputs_and_outputs) {
  double v[8];
  char a_arg[700], b_arg[700], p_arg[700], q_arg[700];
  two_setup();
  snprintf(a_arg, sizeof a_arg, "a=%s", P("a.npy"));
  snprintf(b_arg, sizeof b_arg, "b=%s", P("b.npy"));
  snprintf(p_arg, sizeof p_arg, "p=%s", P("p.npy"));
  snprintf(q_arg, sizeof q_arg, "q=%s", P("q.csv"));
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", b_arg, "--input",
                   a_arg, "--output", P("y.npz")), 0, "%s", err_text);
  cr_assert_eq(npz_entry(P("y.npz"), "p", v, 8, NULL), 3);
  cr_assert(v[0] == 2 && v[1] == 4 && v[2] == 6);
  cr_assert_eq(npz_entry(P("y.npz"), "q", v, 8, NULL), 6);
  cr_assert(v[0] == 11 && v[1] == 22 && v[5] == 26);
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", b_arg, "--input",
                   a_arg, "--output", p_arg, "--output", q_arg), 0, "%s", err_text);
  {
    size_t len;
    unsigned char *q = read_bytes(P("q.csv"), &len);
    cr_assert_eq(len, 18);
    cr_assert(memcmp(q, "11,22\n13,24\n15,26\n", 18) == 0);
    free(q);
  }
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", b_arg, "--input",
                   a_arg, "--output", "-"), 0);
  cr_assert_str_eq(out_text, "2,11,22\n4,13,24\n6,15,26\n");
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", P("a.npy"),
                   "--output", P("y.npz")), 2);
  assert_err("fake: forward: the model has 2 inputs; use --input NAME=PATH for each (try 'fake forward --help')\n");
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", a_arg, "--output",
                   P("y.npz")), 2);
  assert_err("fake: forward: missing --input b=PATH (try 'fake forward --help')\n");
  cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", a_arg, "--input",
                   b_arg, "--output", P("y.npy")), 2);
  assert_err("fake: forward: the model has 2 outputs; use --output Y.npz or --output NAME=Y.npy (try 'fake forward --help')\n");
  {
    double a4[4] = {0};
    long s4[1] = {4};
    char want[1024];
    save_npy(P("a4.npy"), 1, s4, a4);
    snprintf(a_arg, sizeof a_arg, "a=%s", P("a4.npy"));
    cr_assert_eq(RUN(&fake_two, "forward", "--weights", P("w.npz"), "--input", a_arg, "--input",
                     b_arg, "--output", P("y.npz")), 1);
    snprintf(want, sizeof want, "fake: %s: has 3 samples, but %s has 4\n", P("b.npy"), P("a4.npy"));
    assert_err(want);
  }
}

Test(cli, grad_missing_cotangent_is_zero) {
  const double g[6] = {1, -1, 0.5, 2, 3, 4};
  long gs[2] = {3, 2};
  double v[8];
  char a_arg[700], b_arg[700], g_arg[700];
  two_setup();
  save_npy(P("g.npy"), 2, gs, g);
  snprintf(a_arg, sizeof a_arg, "a=%s", P("a.npy"));
  snprintf(b_arg, sizeof b_arg, "b=%s", P("b.npy"));
  snprintf(g_arg, sizeof g_arg, "q=%s", P("g.npy"));
  cr_assert_eq(RUN(&fake_two, "grad", "--weights", P("w.npz"), "--input", a_arg, "--input", b_arg,
                   "--cotangent", g_arg, "--output", P("d.npz")), 0, "%s", err_text);
  cr_assert_eq(npz_entry(P("d.npz"), "k", v, 8, NULL), 1);
  cr_assert_eq(v[0], 0);
  cr_assert_eq(npz_entry(P("d.npz"), "c", v, 8, NULL), 2);
  cr_assert(v[0] == 1 + 0.5 + 3 && v[1] == -1 + 2 + 4);
  cr_assert_eq(npz_entry(P("d.npz"), "a", v, 8, NULL), 3);
  cr_assert(v[0] == 0 && v[1] == 0 && v[2] == 0);
  cr_assert_eq(npz_entry(P("d.npz"), "b", v, 8, NULL), 6);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(v[i], g[i]);
}

Test(train, target_output_with_several_outputs) {
  const double t[6] = {1, 2, 3, 4, 5, 6}; /* q = b + c: c should become 0 */
  long ts[2] = {3, 2};
  char a_arg[700], b_arg[700];
  double v[8];
  two_setup();
  save_npy(P("t.npy"), 2, ts, t);
  snprintf(a_arg, sizeof a_arg, "a=%s", P("a.npy"));
  snprintf(b_arg, sizeof b_arg, "b=%s", P("b.npy"));
  cr_assert_eq(RUN(&fake_two, "train", "--data", a_arg, "--data", b_arg, "--targets", P("t.npy"),
                   "--loss", "mse", "--epochs", "5", "--out", P("o.npz")), 2);
  assert_err("fake: train: the model has 2 outputs; choose one with --target-output NAME (try 'fake train --help')\n");
  cr_assert_eq(RUN(&fake_two, "train", "--data", a_arg, "--data", b_arg, "--targets", P("t.npy"),
                   "--loss", "mse", "--epochs", "200", "--optimizer", "sgd", "--lr", "0.5",
                   "--target-output", "q", "--init", P("w.npz"), "--out", P("o.npz"), "--quiet"),
               0, "%s", err_text);
  cr_assert_eq(npz_entry(P("o.npz"), "c", v, 8, NULL), 2);
  cr_assert(fabs(v[0]) < 1e-9 && fabs(v[1]) < 1e-9, "c = %g %g", v[0], v[1]);
  cr_assert_eq(npz_entry(P("o.npz"), "k", v, 8, NULL), 1);
  cr_assert_eq(v[0], 2); /* p was not trained */
}
