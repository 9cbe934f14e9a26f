/* test_data.c — data files read directly: .npy of every dtype, Fortran
 * order and big-endian; .npz with deflated members (np.savez_compressed);
 * IDX files plain and gzipped; CSV with headers, separators and column
 * selection; inputs whose shape differs by unit axes or flattening. The
 * files are written byte by byte here (zlib compresses), never by NumPy. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "rt_harness.h"

TestSuite(data, .init = make_tmpdir, .fini = remove_tmpdir);

/* ---- writers -------------------------------------------------------------- */

/* .npy v1.0 with the given descr, order and shape around raw bytes. */
static size_t npy_bytes(unsigned char *out, const char *descr, int fortran, const char *shape,
                        const void *data, size_t len) {
  char dict[256];
  size_t hl = (size_t)snprintf(dict, sizeof dict,
                               "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }\n", descr,
                               fortran ? "True" : "False", shape);
  memcpy(out, "\x93NUMPY\x01\x00", 8);
  out[8] = (unsigned char)hl;
  out[9] = 0;
  memcpy(out + 10, dict, hl);
  memcpy(out + 10 + hl, data, len);
  return 10 + hl + len;
}

static void write_npy(const char *path, const char *descr, int fortran, const char *shape,
                      const void *data, size_t len) {
  unsigned char b[4096];
  write_bytes(path, b, npy_bytes(b, descr, fortran, shape, data, len));
}

/* Raw deflate (as zip members hold it) of in; returns the length. */
static size_t deflate_raw(const unsigned char *in, size_t len, unsigned char *out, size_t cap) {
  z_stream s;
  memset(&s, 0, sizeof s);
  cr_assert_eq(deflateInit2(&s, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
  s.next_in = (unsigned char *)in;
  s.avail_in = (uInt)len;
  s.next_out = out;
  s.avail_out = (uInt)cap;
  cr_assert_eq(deflate(&s, Z_FINISH), Z_STREAM_END);
  deflateEnd(&s);
  return cap - s.avail_out;
}

static void gzip_file(const char *path, const void *data, size_t len) {
  gzFile f = gzopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(gzwrite(f, data, (unsigned)len), (int)len);
  cr_assert_eq(gzclose(f), Z_OK);
}

static void put16(unsigned char *p, unsigned v) {
  p[0] = (unsigned char)v;
  p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, unsigned long v) {
  put16(p, (unsigned)(v & 0xffff));
  put16(p + 2, (unsigned)(v >> 16));
}

/* A zip of n members NAME.npy, deflated (method 8) when deflated is set, as
 * np.savez_compressed writes them. */
static void write_zip(const char *path, int n, const char *const *names,
                      const unsigned char *const *blobs, const size_t *lens, int deflated) {
  static unsigned char z[1 << 16];
  unsigned char cd[4096], comp[8192];
  size_t off = 0, cdl = 0;
  for (int i = 0; i < n; i++) {
    char name[64];
    size_t nl = (size_t)snprintf(name, sizeof name, "%s.npy", names[i]);
    size_t cl = deflated ? deflate_raw(blobs[i], lens[i], comp, sizeof comp) : lens[i];
    unsigned long crc = crc32(0, blobs[i], (uInt)lens[i]);
    unsigned char h[30];
    memset(h, 0, sizeof h);
    put32(h, 0x04034b50);
    put16(h + 4, 20);
    put16(h + 8, deflated ? 8 : 0);
    put32(h + 14, crc);
    put32(h + 18, cl);
    put32(h + 22, lens[i]);
    put16(h + 26, (unsigned)nl);
    memset(cd + cdl, 0, 46);
    put32(cd + cdl, 0x02014b50);
    put16(cd + cdl + 4, 20);
    put16(cd + cdl + 6, 20);
    put16(cd + cdl + 10, deflated ? 8 : 0);
    put32(cd + cdl + 16, crc);
    put32(cd + cdl + 20, cl);
    put32(cd + cdl + 24, lens[i]);
    put16(cd + cdl + 28, (unsigned)nl);
    put32(cd + cdl + 42, off);
    memcpy(cd + cdl + 46, name, nl);
    cdl += 46 + nl;
    memcpy(z + off, h, 30);
    memcpy(z + off + 30, name, nl);
    memcpy(z + off + 30 + nl, deflated ? comp : blobs[i], cl);
    off += 30 + nl + cl;
  }
  memcpy(z + off, cd, cdl);
  memset(z + off + cdl, 0, 22);
  put32(z + off + cdl, 0x06054b50);
  put16(z + off + cdl + 8, (unsigned)n);
  put16(z + off + cdl + 10, (unsigned)n);
  put32(z + off + cdl + 12, cdl);
  put32(z + off + cdl + 16, off);
  write_bytes(path, z, off + cdl + 22);
}

/* IDX: zero, zero, type, rank, big-endian dims, data (already big-endian). */
static size_t idx_bytes(unsigned char *out, int type, int rank, const unsigned *dims,
                        const void *data, size_t len) {
  out[0] = out[1] = 0;
  out[2] = (unsigned char)type;
  out[3] = (unsigned char)rank;
  for (int k = 0; k < rank; k++) {
    out[4 + 4 * k] = (unsigned char)(dims[k] >> 24);
    out[5 + 4 * k] = (unsigned char)(dims[k] >> 16);
    out[6 + 4 * k] = (unsigned char)(dims[k] >> 8);
    out[7 + 4 * k] = (unsigned char)dims[k];
  }
  memcpy(out + 4 + 4 * rank, data, len);
  return 4 + 4 * (size_t)rank + len;
}

/* `forward` of fake_reg on path (extra args after it), stdout kept. */
static int forward(const char *path, const char *e1, const char *e2) {
  save_weights(&fake_reg, P("w.npz"), known_w);
  return RUN(&fake_reg, "forward", "--weights", P("w.npz"), "--input", path, "--output", "-",
             e1, e2);
}

/* The reference: forward on the same values written as f8 CSV. */
static char *reference(const double *x, int n) {
  char csv[2048];
  size_t k = 0;
  for (int i = 0; i < n; i++)
    k += (size_t)snprintf(csv + k, sizeof csv - k, "%.17g,%.17g\n", x[2 * i], x[2 * i + 1]);
  write_bytes(P("ref.csv"), csv, k);
  cr_assert_eq(forward(P("ref.csv"), NULL, NULL), 0, "%s", err_text);
  return strdup(out_text);
}

static void expect_same(const char *path, const char *ref, const char *e1, const char *e2) {
  cr_assert_eq(forward(path, e1, e2), 0, "%s: %s", path, err_text);
  cr_assert_str_eq(out_text, ref, "%s", path);
}

static void expect_fail(const char *path, const char *why) {
  char want[1024];
  cr_assert_eq(forward(path, NULL, NULL), 1, "%s", path);
  snprintf(want, sizeof want, "fake: %s\n", why);
  assert_err(want);
}

/* ---- .npy ----------------------------------------------------------------- */

Test(data, npy_integer_dtypes_are_converted_and_scaled) {
  unsigned char u8[6] = {0, 255, 128, 1, 200, 50};
  short i2[6] = {-3, 7, 0, 1, 2, -1};
  unsigned long long u8l[6] = {1, 2, 3, 4, 5, 6};
  double x[6];
  char *ref;
  for (int i = 0; i < 6; i++)
    x[i] = u8[i] / 255.0;
  ref = reference(x, 3);
  write_npy(P("u8.npy"), "|u1", 0, "(3, 2)", u8, 6);
  expect_same(P("u8.npy"), ref, "--scale", "0.00392156862745098");
  free(ref);
  for (int i = 0; i < 6; i++)
    x[i] = i2[i];
  ref = reference(x, 3);
  write_npy(P("i2.npy"), "<i2", 0, "(3, 2)", i2, sizeof i2);
  expect_same(P("i2.npy"), ref, NULL, NULL);
  free(ref);
  for (int i = 0; i < 6; i++)
    x[i] = (double)u8l[i];
  ref = reference(x, 3);
  write_npy(P("u8l.npy"), "<u8", 0, "(3, 2)", u8l, sizeof u8l);
  expect_same(P("u8l.npy"), ref, NULL, NULL);
  free(ref);
}

Test(data, npy_half_and_bool) {
  /* 1.0, -2.0, 0.5, 65504 (largest half), 2^-24 (smallest subnormal), -0 */
  unsigned short h[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
  double want[6] = {1, -2, 0.5, 65504, 0x1p-24, -0.0};
  unsigned char b[4] = {0, 1, 2, 0}, buf[512];
  struct mach_array a;
  char why[200];
  size_t n = npy_bytes(buf, "<f2", 0, "(6,)", h, sizeof h);
  cr_assert_eq(mach_npy_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(mach_array_get(&a, i), want[i], "half %d: %g", i, mach_array_get(&a, i));
  mach_array_free(&a);
  n = npy_bytes(buf, "|b1", 0, "(4,)", b, sizeof b);
  cr_assert_eq(mach_npy_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
  cr_assert_eq(mach_array_get(&a, 1) + mach_array_get(&a, 2) * 10 + mach_array_get(&a, 3), 11);
  mach_array_free(&a);
}

Test(data, npy_fortran_order_and_big_endian) {
  /* A = [[1, 2, 3], [4, 5, 6]] stored column by column (A.T saved as is) */
  double f[6] = {1, 4, 2, 5, 3, 6}, c[6] = {1, 2, 3, 4, 5, 6}, be[6];
  unsigned char buf[512];
  struct mach_array a;
  char why[200], *ref;
  size_t n = npy_bytes(buf, "<f8", 1, "(2, 3)", f, sizeof f);
  cr_assert_eq(mach_npy_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(mach_array_get(&a, i), c[i]);
  mach_array_free(&a);
  {
    /* [2, 3, 2] in Fortran order: element (i, j, k) at i + 2 j + 6 k */
    int src[12], shape[3] = {2, 3, 2};
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 3; j++)
        for (int k = 0; k < 2; k++)
          src[i + 2 * j + 6 * k] = 100 * i + 10 * j + k;
    n = npy_bytes(buf, "<i4", 1, "(2, 3, 2)", src, sizeof src);
    cr_assert_eq(mach_npy_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
    for (int i = 0, e = 0; i < shape[0]; i++)
      for (int j = 0; j < shape[1]; j++)
        for (int k = 0; k < shape[2]; k++, e++)
          cr_assert_eq(mach_array_get(&a, e), 100 * i + 10 * j + k);
    mach_array_free(&a);
  }
  for (int i = 0; i < 6; i++) { /* the bytes of c, reversed */
    unsigned char *p = (unsigned char *)&c[i], *q = (unsigned char *)&be[i];
    for (int k = 0; k < 8; k++)
      q[k] = p[7 - k];
  }
  ref = reference(c, 3);
  write_npy(P("be.npy"), ">f8", 0, "(3, 2)", be, sizeof be);
  expect_same(P("be.npy"), ref, NULL, NULL);
  {
    double ft[6] = {1, 3, 5, 2, 4, 6}; /* [3, 2] C = [[1,2],[3,4],[5,6]] in Fortran order */
    write_npy(P("f.npy"), "<f8", 1, "(3, 2)", ft, sizeof ft);
    expect_same(P("f.npy"), ref, NULL, NULL);
  }
  {
    unsigned char bi[12] = {0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0xfd}; /* 1, 2, -3 */
    n = npy_bytes(buf, ">i4", 0, "(3,)", bi, sizeof bi);
    cr_assert_eq(mach_npy_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
    cr_assert_eq(mach_array_get(&a, 0) + 10 * mach_array_get(&a, 1), 21);
    cr_assert_eq(mach_array_get(&a, 2), -3);
    mach_array_free(&a);
  }
  free(ref);
}

/* ---- .npz ----------------------------------------------------------------- */

/* fake_reg's weights as np.savez_compressed would write them. */
static void compressed_weights(const char *path) {
  const char *names[4] = {"W_h_u", "b_h", "W_y_h", "b_y"};
  const char *shapes[4] = {"(2, 3)", "(3,)", "(3, 1)", "(1,)"};
  static unsigned char blobs[4][512];
  const unsigned char *bp[4];
  size_t lens[4];
  for (int p = 0; p < 4; p++) {
    const struct mach_param *pp = &fake_reg.params[p];
    lens[p] = npy_bytes(blobs[p], "<f8", 0, shapes[p], known_w + pp->offset,
                        (size_t)pp->size * 8);
    bp[p] = blobs[p];
  }
  write_zip(path, 4, names, bp, lens, 1);
}

Test(data, npz_compressed_weights_and_data) {
  double x[2] = {1, 2};
  unsigned char blob[512];
  const unsigned char *bp[2] = {blob, blob};
  const char *one[1] = {"x"}, *two[2] = {"x", "y"};
  size_t len = npy_bytes(blob, "<f8", 0, "(1, 2)", x, sizeof x), lens[2] = {len, len};
  char want[1024];
  compressed_weights(P("wc.npz"));
  write_npy(P("x.npy"), "<f8", 0, "(1, 2)", x, sizeof x);
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("wc.npz"), "--input", P("x.npy"),
                   "--output", "-"), 0, "%s", err_text);
  cr_assert(fabs(strtod(out_text, NULL) - -0.6165000398616775) < 1e-15, "%s", out_text);
  /* an .npz of one array is read as data, compressed or not */
  write_zip(P("x.npz"), 1, one, bp, lens, 1);
  cr_assert_eq(forward(P("x.npz"), NULL, NULL), 0, "%s", err_text);
  cr_assert(fabs(strtod(out_text, NULL) - -0.6165000398616775) < 1e-15, "%s", out_text);
  /* several arrays: not a data file */
  write_zip(P("xy.npz"), 2, two, bp, lens, 0);
  snprintf(want, sizeof want, "%s: an .npz archive of 2 arrays is not a data file; expected "
                              ".npy, IDX or CSV data (or an .npz holding a single array)",
           P("xy.npz"));
  expect_fail(P("xy.npz"), want);
  /* errors name the file and the entry */
  len = npy_bytes(blob, "<f8", 0, "(1, 1)", x, 8);
  lens[0] = len;
  write_zip(P("x.npz"), 1, one, bp, lens, 1);
  snprintf(want, sizeof want, "%s: entry 'x': has shape [1, 1], expected [N, 2] for input 'u'",
           P("x.npz"));
  expect_fail(P("x.npz"), want);
}

/* ---- IDX ------------------------------------------------------------------ */

Test(data, idx_plain_and_gzipped_with_labels) {
  /* images u8 [4, 1, 2] (as [N, 28, 28] is for 1@[28, 28]); labels u8 [4] */
  unsigned char img[8] = {0, 255, 255, 0, 10, 20, 200, 100}, lab[4] = {1, 0, 0, 1};
  unsigned dims[3] = {4, 1, 2}, ldim[1] = {4};
  unsigned char buf[256];
  size_t n = idx_bytes(buf, 0x08, 3, dims, img, sizeof img);
  double x[8];
  char *ref, want[1024];
  for (int i = 0; i < 8; i++)
    x[i] = img[i] / 255.0;
  ref = reference(x, 4);
  write_bytes(P("train-images-idx3-ubyte"), buf, n);
  expect_same(P("train-images-idx3-ubyte"), ref, "--scale", "0.00392156862745098");
  gzip_file(P("train-images-idx3-ubyte.gz"), buf, n);
  expect_same(P("train-images-idx3-ubyte.gz"), ref, "--scale", "0.00392156862745098");
  free(ref);
  /* labels for a classifier, gzipped IDX too */
  n = idx_bytes(buf, 0x08, 1, ldim, lab, sizeof lab);
  gzip_file(P("labels.gz"), buf, n);
  {
    struct mach_ctx c = {.prog = "test", .m = &fake_cls};
    double w[17] = {0};
    cr_assert_eq(mach_save_weights(&c, P("wc.npz"), w), 0);
  }
  cr_assert_eq(RUN(&fake_cls, "eval", "--weights", P("wc.npz"), "--data",
                   P("train-images-idx3-ubyte.gz"), "--targets", P("labels.gz"), "--loss", "xent"),
               0, "%s", err_text);
  cr_assert_str_eq(out_text, "loss 0.693147181\naccuracy 0.5\n"); /* all logits 0: ln 2 */
  /* big-endian i16 IDX */
  {
    unsigned char s16[4] = {0xff, 0xfe, 0x01, 0x00}; /* -2, 256 */
    unsigned d2[2] = {1, 2};
    struct mach_array a;
    char why[200];
    n = idx_bytes(buf, 0x0B, 2, d2, s16, sizeof s16);
    cr_assert_eq(mach_idx_parse(buf, n, &a, why, sizeof why), 0, "%s", why);
    cr_assert_eq(mach_array_get(&a, 0), -2);
    cr_assert_eq(mach_array_get(&a, 1), 256);
    mach_array_free(&a);
  }
  /* truncated data and truncated gzip */
  n = idx_bytes(buf, 0x08, 3, dims, img, sizeof img);
  write_bytes(P("short-idx3-ubyte"), buf, n - 1);
  snprintf(want, sizeof want, "%s: IDX shape [4, 1, 2] of |u1 needs 8 data bytes, found 7",
           P("short-idx3-ubyte"));
  expect_fail(P("short-idx3-ubyte"), want);
  gzip_file(P("t.gz"), buf, n);
  {
    size_t gl;
    unsigned char *g = read_bytes(P("t.gz"), &gl);
    write_bytes(P("t.gz"), g, gl - 12);
    free(g);
  }
  snprintf(want, sizeof want, "%s: cannot decompress: truncated gzip data", P("t.gz"));
  expect_fail(P("t.gz"), want);
  write_bytes(P("x.bin"), "hello world, this is text", 25);
  snprintf(want, sizeof want, "%s: not a data file: expected .npy, .npz, IDX (MNIST) or gzip "
                              "data, or CSV in a file named *.csv", P("x.bin"));
  expect_fail(P("x.bin"), want);
}

/* ---- shapes ---------------------------------------------------------------- */

Test(data, unit_axes_and_flattening_are_accepted) {
  double x[4] = {1, 2, -0.5, 0.25};
  char *ref = reference(x, 2), want[1024];
  write_npy(P("a.npy"), "<f8", 0, "(2, 1, 2)", x, sizeof x);
  expect_same(P("a.npy"), ref, NULL, NULL);
  write_npy(P("b.npy"), "<f8", 0, "(2, 2, 1)", x, sizeof x);
  expect_same(P("b.npy"), ref, NULL, NULL);
  write_npy(P("c.npy"), "<f8", 0, "(1, 2, 2)", x, sizeof x); /* [1, 2, 2]: 1 sample of 4 */
  snprintf(want, sizeof want, "%s: has shape [1, 2, 2], expected [N, 2] for input 'u'", P("c.npy"));
  expect_fail(P("c.npy"), want);
  free(ref);
}

/* ---- CSV -------------------------------------------------------------------- */

Test(data, csv_header_detected_or_skipped) {
  double x[4] = {1, 2, -0.5, 0.25};
  char *ref = reference(x, 2), want[1024];
  write_bytes(P("h.csv"), "\"p0\",\"p1\"\n1,2\n-0.5,0.25\n", 24);
  expect_same(P("h.csv"), ref, NULL, NULL);
  write_bytes(P("n.csv"), "7,7\n1,2\n-0.5,0.25\n", 18);
  expect_same(P("n.csv"), ref, "--skip-header", NULL);
  gzip_file(P("g.csv.gz"), "p0\tp1\n1\t2\n-0.5\t0.25\n", 20);
  expect_same(P("g.csv.gz"), ref, NULL, NULL);
  /* a word on the first line and none after it is an error, not a header */
  write_bytes(P("bad.csv"), "p0,p1\nq,1\n", 10);
  snprintf(want, sizeof want, "%s: line 1: 'p0' is not a number", P("bad.csv"));
  expect_fail(P("bad.csv"), want);
  snprintf(want, sizeof want, "%s: line 3: 'x4' is not a number", P("bad.csv"));
  write_bytes(P("bad.csv"), "\n1,2\n3,x4\n", 10);
  expect_fail(P("bad.csv"), want);
  free(ref);
}

Test(data, csv_separator_and_whole_token_in_errors) {
  double x[4] = {1, 2, -0.5, 0.25};
  char *ref = reference(x, 2), want[1024];
  write_bytes(P("s.csv"), "a;b\n1;2\n-0.5 ; 0.25\n", 20);
  expect_same(P("s.csv"), ref, "--sep", ";");
  write_bytes(P("s.csv"), "0.123456789;0.987654321\n", 24);
  snprintf(want, sizeof want, "%s: line 1: '0.123456789;0.987654321' is not a number (fields are "
                              "separated by commas; for ';' use --sep ';')", P("s.csv"));
  expect_fail(P("s.csv"), want);
  write_bytes(P("s.csv"), "1;;2\n", 5);
  cr_assert_eq(forward(P("s.csv"), "--sep", ";"), 1);
  snprintf(want, sizeof want, "fake: %s: line 1: empty field, expected a number\n", P("s.csv"));
  assert_err(want);
  write_bytes(P("t.csv"), "1\t2\n-0.5\t0.25\n", 14);
  expect_same(P("t.csv"), ref, "--sep", "tab");
  cr_assert_eq(forward(P("t.csv"), "--sep", "ab"), 2);
  assert_err("fake: forward: --sep: 'ab' is not one character that cannot be part of a number, "
             "or 'tab' (try 'fake forward --help')\n");
  free(ref);
}

Test(data, csv_columns_for_data_and_targets) {
  char want[1024];
  /* y = x0 + 2 x1 in column 'y' between the two inputs, and a date column */
  write_bytes(P("d.csv"), "date,x0,y,x1\n1,0.5,2.5,1\n2,1,1,0\n3,-1,1,1\n4,0,-2,-1\n", 51);
  save_weights(&fake_reg, P("w.npz"), known_w);
  cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                   "--data-cols", "x0,x1", "--target-cols", "y", "--loss", "mse"), 0, "%s",
               err_text);
  {
    char *by_name = strdup(out_text);
    write_bytes(P("x.csv"), "0.5,1\n1,0\n-1,1\n0,-1\n", 20);
    write_bytes(P("y.csv"), "2.5\n1\n1\n-2\n", 11);
    cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("x.csv"),
                     "--targets", P("y.csv"), "--loss", "mse"), 0, "%s", err_text);
    cr_assert_str_eq(out_text, by_name);
    /* by index, a negative index and a range; and the other columns by default */
    cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                     "--targets", P("d.csv"), "--data-cols", "1,-1", "--target-cols", "2:3",
                     "--loss", "mse"), 0, "%s", err_text);
    cr_assert_str_eq(out_text, by_name);
    write_bytes(P("e.csv"), "x0,y,x1\n0.5,2.5,1\n1,1,0\n-1,1,1\n0,-2,-1\n", 38);
    cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("e.csv"),
                     "--target-cols", "y", "--loss", "mse"), 0, "%s", err_text);
    cr_assert_str_eq(out_text, by_name);
    free(by_name);
  }
  {
    /* '!' leaves columns out; any odd number of them is one (a fuzzer's
     * input of this shape once overflowed the stack) */
    enum { BANGS = 120001 };
    char *spec = malloc(BANGS + 16);
    memset(spec, '!', BANGS);
    strcpy(spec + BANGS, "date,y");
    char *by_name = strdup(out_text);
    cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                     "--targets", P("d.csv"), "--data-cols", spec, "--target-cols", "y",
                     "--loss", "mse"), 0, "%s", err_text);
    cr_assert_str_eq(out_text, by_name);
    free(by_name);
    free(spec);
  }
  cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                   "--data-cols", "x0,x1", "--target-cols", "z", "--loss", "mse"), 1);
  snprintf(want, sizeof want, "fake: %s: column 'z' is not a name in the header, an index or a "
                              "range A:B\n", P("d.csv"));
  assert_err(want);
  cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                   "--data-cols", "1,7", "--target-cols", "y", "--loss", "mse"), 1);
  snprintf(want, sizeof want, "fake: %s: column '7' is out of range: the file has 4 columns (0 to "
                              "3)\n", P("d.csv"));
  assert_err(want);
  cr_assert_eq(RUN(&fake_reg, "eval", "--weights", P("w.npz"), "--data", P("d.csv"),
                   "--target-cols", "y", "--loss", "mse"), 1);
  snprintf(want, sizeof want, "fake: %s: has shape [4, 3], expected [N, 2] for input 'u'\n",
           P("d.csv"));
  assert_err(want);
}

/* ---- a .npy read by rows --------------------------------------------------- */

/* A plain .npy is read a batch at a time, converted as it comes: the rows
 * asked for, in any order, and a clean error when the file has shrunk
 * under the reader (the header's length checked at open no longer holds). */
Test(data, npy_read_by_rows_and_shrunk_under_the_reader) {
  struct mach_ctx c = {.prog = "fake", .m = &fake_reg};
  const struct mach_block *b = &fake_reg.blocks[fake_reg.inputs[0]];
  struct mach_samples s;
  int rows[400];
  mach_real got[8];
  char want[1024];
  for (int i = 0; i < 400; i++)
    rows[i] = 3 * i - 500;
  write_npy(P("i4.npy"), "<i4", 0, "(200, 2)", rows, sizeof rows);
  cr_assert_eq(mach_samples_open(&c, P("i4.npy"), b, "input", NULL, NULL, &s), 0, "%s", err_text);
  cr_assert_null(s.all, "a plain .npy is not loaded whole");
  cr_assert_eq(s.n, 200);
  s.scale = 0.5;
  cr_assert_eq(mach_samples_read(&c, &s, 197, 3, got), 0);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(got[i], 0.5 * rows[394 + i]);
  cr_assert_eq(mach_samples_read(&c, &s, 0, 1, got), 0);
  cr_assert_eq(got[0], 0.5 * rows[0]);
  cr_assert_eq(got[1], 0.5 * rows[1]);
  cr_assert_eq(truncate(P("i4.npy"), 1000), 0); /* header and some 110 rows left */
  {
    int save = dup(2), fd = open(P("err.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    fflush(stderr);
    dup2(fd, 2);
    cr_assert_eq(mach_samples_read(&c, &s, 150, 4, got), 1);
    fflush(stderr);
    dup2(save, 2);
    close(save);
    close(fd);
  }
  snprintf(want, sizeof want, "fake: %s: truncated data: the file ends before sample 154\n",
           P("i4.npy"));
  {
    size_t len;
    unsigned char *err = read_bytes(P("err.txt"), &len);
    err[len] = 0;
    cr_assert_str_eq((char *)err, want);
    free(err);
  }
  mach_samples_close(&s);
}
