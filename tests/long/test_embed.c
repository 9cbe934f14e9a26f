/* test_embed.c — standalone C for embedding: weights baked in by machc
 * (--weights), the header's parameter map, plain C99, reproducible floating
 * point (--fp-contract=off).
 *
 * Each test builds the examples' binaries with machc and checks the
 * standalone code against them: the bytes of the baked array against the
 * .npz (read by the tests' own reader), the standalone forward pass against
 * `BIN forward` bit for bit. A small driver program, written here, reads the
 * inputs as raw doubles and writes the outputs the same way; the model code
 * itself does no I/O. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "e2e_util.h"

TestSuite(embed, .fini = e2e_cleanup, .timeout = 240);

static void machc_ok(const char *dir, const char *what, const char *const *args) {
  const char *argv[24] = {e2e_machc()};
  int n = 1;
  while (*args && n < 23)
    argv[n++] = *args++;
  argv[n] = NULL;
  E2eRun r = e2e_run(dir, 170, argv); /* a binary of a conv machine under SANITIZE=1 takes a while */
  e2e_check_ok(&r, what);
  e2e_run_free(&r);
}

static char *example(const char *name) { return e2e_fmt("%s/examples/%s", e2e_root(), name); }

/* `machc --dtype DTYPE FILE -o BIN` and `BIN init --seed 7 --out w.npz`. */
static void binary_and_weights(const char *dir, const char *dtype, const char *mach,
                               const char *machine, const char *extra) {
  const char *args[] = {"--dtype", dtype, example(mach), "-o", "model", "-m", machine,
                        extra, NULL};
  machc_ok(dir, "machc (binary)", args);
  E2eRun r = e2e_runl(dir, 30, "./model", "init", "--seed", "7", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "model init");
  e2e_run_free(&r);
}

/* The driver: N samples of input 0 from x.bin to the state, output 0 to y.bin,
 * and the baked array to w.bin. */
static const char driver_src[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include \"model.h\"\n"
    "int main(int argc, char **argv) {\n"
    "    long n = atol(argv[1]), in_size = atol(argv[2]), out_off = atol(argv[3]), out_size = atol(argv[4]);\n"
    "    REAL *x = malloc(sizeof(REAL) * (size_t)(n * in_size));\n"
    "    REAL *state = malloc(STATE_BYTES(n));\n"
    "    FILE *f = fopen(\"x.bin\", \"rb\");\n"
    "    if (!x || !state || !f || fread(x, sizeof(REAL), (size_t)(n * in_size), f) != (size_t)(n * in_size))\n"
    "        return 1;\n"
    "    fclose(f);\n"
    "    const REAL *inputs[1] = {x};\n"
    "    FORWARD(WEIGHTS, inputs, state, n);\n"
    "    f = fopen(\"y.bin\", \"wb\");\n"
    "    fwrite(state + n * out_off, sizeof(REAL), (size_t)(n * out_size), f);\n"
    "    fclose(f);\n"
    "    f = fopen(\"w.bin\", \"wb\");\n"
    "    fwrite(WEIGHTS, sizeof(REAL), PARAM_SIZE, f);\n"
    "    fclose(f);\n"
    "    free(x);\n"
    "    free(state);\n"
    "    return 0;\n"
    "}\n";

/* Compiles the driver with the standalone model.c and model_weights.c. */
static void build_driver(const char *dir, const char *cc, const char *prefix, const char *up,
                         bool f32, const char *const *flags) {
  e2e_write_text(e2e_path(dir, "driver.c"), driver_src);
  const char *argv[40] = {cc};
  int n = 1;
  while (*flags)
    argv[n++] = *flags++;
  argv[n++] = "-std=c99";
  argv[n++] = f32 ? "-DREAL=float" : "-DREAL=double";
  argv[n++] = e2e_fmt("-DFORWARD=%s_forward", prefix);
  argv[n++] = e2e_fmt("-DWEIGHTS=%s_weights", prefix);
  argv[n++] = e2e_fmt("-DSTATE_BYTES=%s_STATE_BYTES", up);
  argv[n++] = e2e_fmt("-DPARAM_SIZE=%s_PARAM_SIZE", up);
  argv[n++] = "driver.c";
  argv[n++] = "model.c";
  argv[n++] = "model_weights.c";
  argv[n++] = "-lm";
  argv[n++] = "-o";
  argv[n++] = "driver";
  argv[n] = NULL;
  E2eRun r = e2e_run(dir, 60, argv);
  e2e_check_ok(&r, e2e_fmt("%s on the standalone code and the driver", cc));
  e2e_run_free(&r);
}

/* Writes x (n samples of size doubles) as x.bin in the model's real type;
 * runs the driver, through runner (qemu-arm) unless that is NULL. */
static void run_driver(const char *dir, const E2eArr *x, bool f32, long out_off, long out_size,
                       const char *runner) {
  FILE *f = fopen(e2e_path(dir, "x.bin"), "wb");
  cr_assert(f);
  for (long i = 0; i < x->n; i++) {
    float s = (float)x->d[i];
    cr_assert(f32 ? fwrite(&s, sizeof s, 1, f) == 1 : fwrite(&x->d[i], sizeof(double), 1, f) == 1);
  }
  fclose(f);
  const char *argv[] = {runner ? runner : "./driver", "./driver", e2e_fmt("%ld", x->shape[0]),
                        e2e_fmt("%ld", x->n / x->shape[0]), e2e_fmt("%ld", out_off),
                        e2e_fmt("%ld", out_size), NULL};
  E2eRun r = e2e_run(dir, 60, runner ? argv : argv + 1);
  e2e_check_ok(&r, runner ? e2e_fmt("%s ./driver", runner) : "./driver");
  e2e_run_free(&r);
}

/* The reals in a raw file, widened to double. */
static double *read_reals(const char *path, bool f32, long *n) {
  size_t len;
  char *b = e2e_read_file(path, &len);
  cr_assert(b, "cannot read %s", path);
  size_t item = f32 ? sizeof(float) : sizeof(double);
  *n = (long)(len / item);
  double *d = calloc((size_t)*n + 1, sizeof *d);
  for (long i = 0; i < *n; i++) {
    if (f32) {
      float s;
      memcpy(&s, b + (size_t)i * item, item);
      d[i] = s;
    } else {
      memcpy(&d[i], b + (size_t)i * item, item);
    }
  }
  free(b);
  return d;
}

/* Bit-for-bit equality of doubles (NaNs included). */
static void assert_same_bits(const double *got, const double *want, long n, const char *what) {
  for (long i = 0; i < n; i++)
    cr_assert(memcmp(&got[i], &want[i], sizeof(double)) == 0, "%s[%ld]: %a, want %a", what, i,
              got[i], want[i]);
}

/* The poly example's 14 x 14 test grid on [0, 1]^2. */
static E2eArr poly_inputs(void) {
  E2eArr x = e2e_arr2(196, 2);
  for (int i = 0; i < 196; i++) {
    x.d[2 * i] = (i / 14) / 13.0;
    x.d[2 * i + 1] = (i % 14) / 13.0;
  }
  return x;
}

/* The per-sample offset of output 0 in the state, from the header's
 * line `#define UP_OUT_<name> OFFSET`, commented "output 0". */
static long output_offset(const char *dir) {
  char *h = e2e_read_file(e2e_path(dir, "model.h"), NULL);
  cr_assert(h);
  const char *at = strstr(h, "/* output 0: ");
  cr_assert(at, "%s", h);
  while (at > h && at[-1] != '\n')
    at--;
  long off = -1;
  cr_assert_eq(sscanf(at, "#define %*s %ld", &off), 1, "%s", h);
  free(h);
  return off;
}

/* ---- point 1: baked weights ---------------------------------------------------- */

static void round_trip(const char *dtype) {
  bool f32 = strcmp(dtype, "f32") == 0;
  const char *dir = e2e_tmpdir();
  binary_and_weights(dir, dtype, "poly.mach", "poly", NULL);
  const char *args[] = {"--standalone", "--dtype", dtype, example("poly.mach"), "-o", "model.c",
                        "--weights", "w.npz", NULL};
  machc_ok(dir, "machc --standalone --weights", args);
  char *h = e2e_read_file(e2e_path(dir, "model.h"), NULL);
  cr_assert(h);
  cr_assert(strstr(h, e2e_fmt("extern const %s poly_weights[POLY_PARAM_SIZE];",
                              f32 ? "float" : "double")), "%s", h);
  cr_assert(strstr(h, "#define POLY_OFF_m_W 0L /* m.W [14, 14] */\n"), "%s", h);
  cr_assert(strstr(h, "#define POLY_OFF_R 196L /* R [14, 1] */\n"), "%s", h);
  cr_assert(strstr(h, "#define POLY_OFF_b_y 210L /* b_y [1] */\n"), "%s", h);
  cr_assert(strstr(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n"), "%s", h);
  /* the header's offsets are those `BIN info --json` gives */
  E2eRun r = e2e_runl(dir, 30, "./model", "info", "--json", NULL);
  e2e_check_ok(&r, "info --json");
  cr_assert(strstr(r.out, "{\"name\": \"m.W\", \"shape\": [14, 14], \"size\": 196, \"offset\": 0}"), "%s", r.out);
  cr_assert(strstr(r.out, "{\"name\": \"R\", \"shape\": [14, 1], \"size\": 14, \"offset\": 196}"), "%s", r.out);
  cr_assert(strstr(r.out, "{\"name\": \"b_y\", \"shape\": [1], \"size\": 1, \"offset\": 210}"), "%s", r.out);
  e2e_run_free(&r);
  free(h);

  const char *flags[] = {"-O3", "-march=native", NULL}; /* as machc builds the binary */
  build_driver(dir, "clang", "poly", "POLY", f32, flags);
  E2eArr x = poly_inputs();
  cr_assert_eq(output_offset(dir), 28);
  run_driver(dir, &x, f32, 28, 1, NULL);
  /* the array holds the bytes of the file, parameter by parameter */
  long nw;
  double *w = read_reals(e2e_path(dir, "w.bin"), f32, &nw);
  cr_assert_eq(nw, 211);
  E2eNpz z = e2e_npz_read(e2e_path(dir, "w.npz"));
  const char *names[] = {"m.W", "R", "b_y"};
  const long offs[] = {0, 196, 210};
  for (int p = 0; p < 3; p++) {
    const E2eArr *a = e2e_npz_get(&z, names[p]);
    assert_same_bits(w + offs[p], a->d, a->n, names[p]);
  }
  e2e_npz_free(&z);
  /* and forward with it is `BIN forward --weights w.npz`, bit for bit */
  e2e_npy_write(e2e_path(dir, "X.npy"), &x, f32);
  r = e2e_runl(dir, 30, "./model", "forward", "--weights", "w.npz", "--input", "X.npy", "--output",
               "Y.npy", NULL);
  e2e_check_ok(&r, "model forward");
  e2e_run_free(&r);
  E2eArr want = e2e_npy_read(e2e_path(dir, "Y.npy"));
  long ny;
  double *y = read_reals(e2e_path(dir, "y.bin"), f32, &ny);
  cr_assert_eq(ny, want.n);
  assert_same_bits(y, want.d, ny, "y");
  free(y);
  free(w);
  e2e_arr_free(&want);
  e2e_arr_free(&x);
}

Test(embed, baked_weights_round_trip_and_forward_f64) { round_trip("f64"); }
Test(embed, baked_weights_round_trip_and_forward_f32) { round_trip("f32"); }

Test(embed, weights_errors) {
  const char *dir = e2e_tmpdir();
  binary_and_weights(dir, "f64", "poly.mach", "poly", NULL);
  E2eRun r = e2e_runl(dir, 30, e2e_machc(), "--standalone", example("poly.mach"), "-o", "p.c",
                      "--weights", "missing.npz", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "machc: missing.npz: cannot open: No such file or directory\n");
  cr_assert(!e2e_read_file(e2e_path(dir, "p.c"), NULL), "no C is written on error");
  e2e_run_free(&r);
  /* weights of another machine */
  r = e2e_runl(dir, 30, e2e_machc(), "--standalone", "-m", "sine_conv", example("sine.mach"), "-o",
               "s.c", "--weights", "w.npz", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "machc: w.npz: parameter 'm.W' has shape [14, 14], expected [4, 13, 13]\n");
  e2e_run_free(&r);
  /* not an .npz */
  e2e_write_text(e2e_path(dir, "bad.npz"), "hello");
  r = e2e_runl(dir, 30, e2e_machc(), "--standalone", example("poly.mach"), "-o", "p.c", "--weights",
               "bad.npz", NULL);
  cr_assert_eq(r.status, 1);
  cr_assert_str_eq(r.err, "machc: bad.npz: not an .npz file (no zip end record)\n");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, e2e_machc(), example("poly.mach"), "-o", "p", "--weights", "w.npz", NULL);
  cr_assert_eq(r.status, 2);
  cr_assert(strstr(r.err, "machc: --weights needs --standalone"), "%s", r.err);
  e2e_run_free(&r);
}

/* ---- point 5: portable, reproducible C ------------------------------------------- */

/* Undefined symbols of an object, one per line, sorted, leaving out the
 * memcpy, memmove and memset that the compilers call for copies and fills. */
static char *undefined_symbols(const char *dir, const char *obj) {
  E2eRun r = e2e_runl(dir, 30, "nm", "-u", "--format=just-symbols", obj, NULL);
  e2e_check_ok(&r, "nm -u");
  char *out = calloc(strlen(r.out) + 1, 1);
  for (char *line = strtok(r.out, "\n"); line; line = strtok(NULL, "\n"))
    if (strcmp(line, "memcpy") && strcmp(line, "memmove") && strcmp(line, "memset"))
      strcat(strcat(out, line), "\n");
  e2e_run_free(&r);
  return out;
}

/* Every example's standalone code, with and without --fp-contract=off, is
 * C99 that gcc and clang accept with every warning an error, its header
 * compiles as C++, and it calls nothing but the C library's memcpy, memmove
 * and memset and the libm functions its activations need. */
Test(embed, standalone_is_strict_c99) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "cxx.cc"), "#include \"model.h\"\nint main() { return 0; }\n");
  struct {
    const char *mach, *machine, *dtype, *libm;
  } cases[] = {
      /* f32 sigmoid and tanh go through exp_vec, no libm call */
      {"poly.mach", "poly", "f64", "exp\n"},          {"poly.mach", "poly", "f32", ""},
      {"sine.mach", "sine_conv", "f32", ""},          {"sine.mach", "sine_recur", "f64", "exp\n"},
      {"waves.mach", "waves", "f32", "expf\nlog1pf\n"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++)
    for (int contract = 0; contract < 2; contract++) {
      const char *args[] = {"--standalone", "--dtype", cases[k].dtype, "-m", cases[k].machine,
                            example(cases[k].mach), "-o", "model.c",
                            contract ? "--fp-contract=off" : NULL, NULL};
      machc_ok(dir, "machc --standalone", args);
      char *c = e2e_read_file(e2e_path(dir, "model.c"), NULL);
      cr_assert(c);
      cr_assert_eq(strstr(c, "#pragma STDC FP_CONTRACT OFF\n") != NULL, contract, "%s", cases[k].machine);
      free(c);
      const char *ccs[] = {"gcc", "clang"};
      for (int i = 0; i < 2; i++) {
        E2eRun r = e2e_runl(dir, 60, ccs[i], "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
                            "-O2", "-c", "model.c", "-o", "model.o", NULL);
        e2e_check_ok(&r, e2e_fmt("%s -std=c99 -pedantic on %s (%s)", ccs[i], cases[k].machine,
                                 cases[k].dtype));
        e2e_run_free(&r);
        char *u = undefined_symbols(dir, "model.o");
        cr_assert_str_eq(u, cases[k].libm, "%s %s (%s) calls:\n%s", ccs[i], cases[k].machine, cases[k].dtype, u);
        free(u);
      }
      E2eRun r = e2e_runl(dir, 60, "g++", "-Wall", "-Wextra", "-Werror", "-c", "cxx.cc", "-o",
                          "cxx.o", NULL);
      e2e_check_ok(&r, "g++ on the header");
      e2e_run_free(&r);
    }
}

/* With --fp-contract=off, the standalone code built with gcc or clang, with
 * FMA instructions available and contraction asked for, gives the bits of
 * the binary (clang -O3 -march=native -ffp-contract=off). */
static void contract_off_agrees(const char *mach, const char *machine, const char *prefix,
                                const char *up, const E2eArr *x) {
  const char *dir = e2e_tmpdir();
  binary_and_weights(dir, "f64", mach, machine, "--fp-contract=off");
  const char *args[] = {"--standalone", "--dtype", "f64", "-m", machine, example(mach), "-o",
                        "model.c", "--weights", "w.npz", "--fp-contract=off", NULL};
  machc_ok(dir, "machc --standalone --fp-contract=off", args);
  e2e_npy_write(e2e_path(dir, "X.npy"), x, false);
  E2eRun r = e2e_runl(dir, 30, "./model", "forward", "--weights", "w.npz", "--input", "X.npy",
                      "--output", "Y.npy", NULL);
  e2e_check_ok(&r, "model forward");
  e2e_run_free(&r);
  E2eArr want = e2e_npy_read(e2e_path(dir, "Y.npy"));
  long out_off = output_offset(dir);
  const char *gcc_flags[] = {"-O2", "-march=native", "-ffp-contract=fast", NULL};
  const char *clang_flags[] = {"-O2", "-march=native", NULL};
  const char *ccs[] = {"gcc", "clang"};
  const char *const *flags[] = {gcc_flags, clang_flags};
  for (int i = 0; i < 2; i++) {
    build_driver(dir, ccs[i], prefix, up, false, flags[i]);
    run_driver(dir, x, false, out_off, want.n / want.shape[0], NULL);
    long ny;
    double *y = read_reals(e2e_path(dir, "y.bin"), false, &ny);
    cr_assert_eq(ny, want.n);
    assert_same_bits(y, want.d, ny, e2e_fmt("%s with %s", machine, ccs[i]));
    free(y);
  }
  e2e_arr_free(&want);
}

Test(embed, fp_contract_off_poly_bit_for_bit) {
  E2eArr x = poly_inputs();
  contract_off_agrees("poly.mach", "poly", "poly", "POLY", &x);
  e2e_arr_free(&x);
}

Test(embed, fp_contract_off_sine_bit_for_bit) {
  E2eArr x = e2e_arr(3, (long[]){4, 1, 63});
  E2eRng rng = {5};
  e2e_fill_uniform(&rng, &x, -1.5, 1.5);
  contract_off_agrees("sine.mach", "sine_conv", "sine_conv", "SINE_CONV", &x);
  e2e_arr_free(&x);
}

/* ---- point 6: a real embedded target ---------------------------------------------- */

/* The cross tools come from Debian packages that `make test-long` installs when
 * it can (make deps-cross); without them these tests skip, saying so. */
TestSuite(embed_cross, .fini = e2e_cleanup, .timeout = 240);

static bool have_tool(const char *tool) {
  E2eRun r = e2e_runl(NULL, 10, "sh", "-c", e2e_fmt("command -v %s", tool), NULL);
  bool ok = r.status == 0;
  e2e_run_free(&r);
  return ok;
}

static void need_tools(const char *const *tools, const char *packages) {
  for (; *tools; tools++)
    if (!have_tool(*tools))
      cr_skip_test("%s is not installed (Debian: %s; `make deps-cross` installs it)", *tools,
                   packages);
}

static const char *const m4_flags[] = {"-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                                       "-mfpu=fpv4-sp-d16", "-Os", "-std=c99", NULL};

/* A bare-metal Cortex-M4F program: the forward pass on baked weights, one
 * sample, the state in static memory; newlib's libm for the activations. */
static const char m4_main_src[] =
    "#include \"model.h\"\n"
    "volatile float sample[IN_SIZE];\n"
    "volatile float result;\n"
    "static float state[STATE_SIZE + STATE_SCRATCH];\n"
    "int main(void) {\n"
    "    float x[IN_SIZE];\n"
    "    for (int i = 0; i < IN_SIZE; i++)\n"
    "        x[i] = sample[i];\n"
    "    const float *inputs[1] = {x};\n"
    "    FORWARD(WEIGHTS, inputs, state, 1);\n"
    "    result = state[OUT_OFF];\n"
    "    return 0;\n"
    "}\n";

/* w.npz with uniform random values for every parameter the header's map
 * lists (#define UP_OFF_<param> OFFSET, then NAME [SHAPE] in a comment), written by the
 * tests' own .npz writer, in float64. */
static void random_weights(const char *dir) {
  char *h = e2e_read_file(e2e_path(dir, "model.h"), NULL);
  cr_assert(h);
  const char *names[64];
  E2eArr arrs[64];
  int n = 0;
  E2eRng rng = {11};
  for (const char *d = strstr(h, "_OFF_"); d; d = strstr(d + 1, "_OFF_")) {
    const char *c = strstr(d, "/* ");
    cr_assert(c && n < 64);
    char name[128];
    long shape[E2E_MAX_NDIM];
    int rank = 0, used;
    cr_assert_eq(sscanf(c + 3, "%127s [%n", name, &used), 1, "%s", c);
    for (const char *q = c + 3 + used; *q != ']'; rank++) {
      char *end;
      shape[rank] = strtol(q, &end, 10);
      q = *end == ',' ? end + 2 : end;
    }
    names[n] = strdup(name);
    arrs[n] = e2e_arr(rank, shape);
    e2e_fill_uniform(&rng, &arrs[n], -0.5, 0.5);
    n++;
  }
  cr_assert_gt(n, 0, "no parameter map in the header:\n%s", h);
  e2e_npz_write(e2e_path(dir, "w.npz"), n, names, arrs);
  for (int i = 0; i < n; i++)
    e2e_arr_free(&arrs[i]);
  free(h);
}

/* Cross-compiles dir/file.c for the Cortex-M4F with -fstack-usage and checks
 * the frame of every function: of static size (no VLA, no alloca) and within
 * the 1 KB of stack a small microcontroller can spare, the convolutions'
 * scratch being the caller's (the state, the workspace). */
static void m4_stack(const char *dir, const char *file, const char *machine, const char *const *want) {
  const char *argv[40] = {"arm-none-eabi-gcc"};
  int n = 1;
  for (const char *const *f = m4_flags; *f; f++)
    argv[n++] = *f;
  argv[n++] = "-Wall";
  argv[n++] = "-Wextra";
  argv[n++] = "-pedantic";
  argv[n++] = "-Werror";
  argv[n++] = "-fstack-usage";
  argv[n++] = "-c";
  argv[n++] = e2e_fmt("%s.c", file);
  argv[n] = NULL;
  E2eRun r = e2e_run(dir, 60, argv);
  e2e_check_ok(&r, e2e_fmt("arm-none-eabi-gcc on %s.c", file));
  e2e_run_free(&r);
  char *su = e2e_read_file(e2e_path(dir, e2e_fmt("%s.su", file)), NULL);
  cr_assert(su, "no %s.su from -fstack-usage", file);
  int found = 0, nwant = 0;
  while (want[nwant])
    nwant++;
  for (char *l = strtok(su, "\n"); l; l = strtok(NULL, "\n")) {
    char fn[256], kind[64];
    long bytes;
    const char *colon = strrchr(l, ':'); /* FILE.c:LINE:COL:NAME<TAB>BYTES<TAB>KIND */
    cr_assert(colon && sscanf(colon + 1, "%255s %ld %63s", fn, &bytes, kind) == 3, "%s", l);
    cr_log_info("%s, Cortex-M4F stack (%s.c): %-28s %6ld bytes (%s)", machine, file, fn, bytes, kind);
    cr_assert_str_eq(kind, "static", "%s: frame of %s is not of static size", machine, fn);
    cr_assert_leq(bytes, 1024, "%s: %s takes %ld bytes of stack", machine, fn, bytes);
    for (int k = 0; k < nwant; k++)
      found += strcmp(fn, want[k]) == 0;
  }
  cr_assert_eq(found, nwant, "%s: a function of %s.c is missing from %s.su", machine, file, file);
  free(su);
}

/* Cross-compiles the f32 standalone code of one example for the Cortex-M4F
 * and reports its code size and the stack of each function (-fstack-usage),
 * every frame within 1 KB, with and without the training step. Links it with
 * newlib into a program, to show nothing beyond libm is needed. */
static void cortex_m4(const char *mach, const char *machine, const char *prefix, const char *up,
                      long in_size) {
  const char *tools[] = {"arm-none-eabi-gcc", "arm-none-eabi-size", NULL};
  need_tools(tools, "gcc-arm-none-eabi libnewlib-arm-none-eabi");
  const char *dir = e2e_tmpdir();
  const char *plain[] = {"--standalone", "--dtype", "f32", "-m", machine, example(mach), "-o",
                         "model.c", NULL};
  machc_ok(dir, "machc --standalone", plain);
  random_weights(dir);
  const char *targs[] = {"--standalone", "--train", "--dtype", "f32", "-m", machine, example(mach), "-o",
                         "train.c", NULL};
  machc_ok(dir, "machc --standalone --train", targs);
  const char *args[] = {"--standalone", "--dtype", "f32", "-m", machine, example(mach), "-o",
                        "model.c", "--weights", "w.npz", NULL};
  machc_ok(dir, "machc --standalone --weights", args);
  const char *infer_fns[] = {e2e_fmt("%s_forward", prefix), e2e_fmt("%s_infer", prefix), NULL};
  m4_stack(dir, "model", machine, infer_fns);
  const char *train_fns[] = {e2e_fmt("%s_forward", prefix), e2e_fmt("%s_dual", prefix),
                             e2e_fmt("%s_backward", prefix), e2e_fmt("%s_train_step", prefix), NULL};
  m4_stack(dir, "train", machine, train_fns);
  const char *argv[40] = {"arm-none-eabi-gcc"};
  int n = 1;
  for (const char *const *f = m4_flags; *f; f++)
    argv[n++] = *f;
  int base = n;
  E2eRun r = e2e_runl(dir, 30, "arm-none-eabi-size", "model.o", NULL);
  e2e_check_ok(&r, "arm-none-eabi-size");
  long text = 0, data = 0, bss = 0;
  const char *line = strchr(r.out, '\n');
  cr_assert(line && sscanf(line + 1, "%ld %ld %ld", &text, &data, &bss) == 3, "%s", r.out);
  cr_assert_gt(text, 0);
  cr_log_info("%s, Cortex-M4F -Os: code %ld bytes, data %ld, bss %ld", machine, text, data, bss);
  e2e_run_free(&r);
  /* and a whole program, linked with newlib */
  e2e_write_text(e2e_path(dir, "main.c"), m4_main_src);
  n = base;
  argv[n++] = e2e_fmt("-DIN_SIZE=%ld", in_size);
  argv[n++] = e2e_fmt("-DSTATE_SIZE=%s_STATE_SIZE", up);
  argv[n++] = e2e_fmt("-DSTATE_SCRATCH=%s_STATE_SCRATCH", up);
  argv[n++] = e2e_fmt("-DOUT_OFF=%ld", output_offset(dir));
  argv[n++] = e2e_fmt("-DFORWARD=%s_forward", prefix);
  argv[n++] = e2e_fmt("-DWEIGHTS=%s_weights", prefix);
  argv[n++] = "--specs=nosys.specs";
  argv[n++] = "main.c";
  argv[n++] = "model.c";
  argv[n++] = "model_weights.c";
  argv[n++] = "-lm";
  argv[n++] = "-o";
  argv[n++] = "model.elf";
  argv[n] = NULL;
  r = e2e_run(dir, 60, argv);
  e2e_check_ok(&r, "arm-none-eabi-gcc linking a program");
  e2e_run_free(&r);
  r = e2e_runl(dir, 30, "arm-none-eabi-size", "model.elf", NULL);
  e2e_check_ok(&r, "arm-none-eabi-size");
  line = strchr(r.out, '\n');
  cr_assert(line && sscanf(line + 1, "%ld %ld %ld", &text, &data, &bss) == 3, "%s", r.out);
  cr_log_info("%s, Cortex-M4F program (model, weights, newlib): text %ld bytes, data %ld, bss %ld",
              machine, text, data, bss);
  e2e_run_free(&r);
}

Test(embed_cross, cortex_m4_poly) { cortex_m4("poly.mach", "poly", "poly", "POLY", 2); }
Test(embed_cross, cortex_m4_sine_conv) {
  cortex_m4("sine.mach", "sine_conv", "sine_conv", "SINE_CONV", 63);
}
Test(embed_cross, cortex_m4_sine_recur) {
  cortex_m4("sine.mach", "sine_recur", "sine_recur", "SINE_RECUR", 63);
}
/* pooling after chunked levels, and windowed kernel gradients */
Test(embed_cross, cortex_m4_waves) { cortex_m4("waves.mach", "waves", "waves", "WAVES", 32); }

/* A static arm-linux-gnueabihf program running the f32 model under qemu-arm
 * matches the host binary within 1e-5. */
static void qemu_arm(const char *mach, const char *machine, const char *prefix, const char *up,
                     const E2eArr *x) {
  const char *tools[] = {"arm-linux-gnueabihf-gcc", "qemu-arm", NULL};
  need_tools(tools, "gcc-arm-linux-gnueabihf qemu-user");
  const char *dir = e2e_tmpdir();
  binary_and_weights(dir, "f32", mach, machine, NULL);
  const char *args[] = {"--standalone", "--dtype", "f32", "-m", machine, example(mach), "-o",
                        "model.c", "--weights", "w.npz", NULL};
  machc_ok(dir, "machc --standalone", args);
  e2e_npy_write(e2e_path(dir, "X.npy"), x, true);
  E2eRun r = e2e_runl(dir, 30, "./model", "forward", "--weights", "w.npz", "--input", "X.npy",
                      "--output", "Y.npy", NULL);
  e2e_check_ok(&r, "model forward");
  e2e_run_free(&r);
  E2eArr want = e2e_npy_read(e2e_path(dir, "Y.npy"));
  const char *flags[] = {"-O2", "-static", NULL};
  build_driver(dir, "arm-linux-gnueabihf-gcc", prefix, up, true, flags);
  r = e2e_runl(dir, 30, "sh", "-c", "file driver", NULL);
  cr_assert(r.status != 0 || strstr(r.out, "ARM"), "%s", r.out); /* `file` may be absent */
  e2e_run_free(&r);
  run_driver(dir, x, true, output_offset(dir), want.n / want.shape[0], "qemu-arm");
  long ny;
  double *y = read_reals(e2e_path(dir, "y.bin"), true, &ny);
  cr_assert_eq(ny, want.n);
  double worst = 0;
  for (long i = 0; i < ny; i++) {
    double d = fabs(y[i] - want.d[i]);
    worst = d > worst ? d : worst;
    cr_assert(d <= 1e-5, "%s [%ld]: arm %.9g, host %.9g", machine, i, y[i], want.d[i]);
  }
  cr_log_info("%s: arm-linux-gnueabihf under qemu-arm vs host, largest difference %.3g", machine, worst);
  free(y);
  e2e_arr_free(&want);
}

Test(embed_cross, qemu_arm_poly) {
  E2eArr x = poly_inputs();
  qemu_arm("poly.mach", "poly", "poly", "POLY", &x);
  e2e_arr_free(&x);
}

Test(embed_cross, qemu_arm_sine) {
  E2eArr x = e2e_arr(3, (long[]){4, 1, 63});
  E2eRng rng = {9};
  e2e_fill_uniform(&rng, &x, -1.5, 1.5);
  qemu_arm("sine.mach", "sine_conv", "sine_conv", "SINE_CONV", &x);
  e2e_arr_free(&x);
}

/* ---- point 4: streaming ------------------------------------------------------------ */

/* Runs N sequences of T steps through the stream, one step at a time (a
 * reset before each), from x.bin [N, IN_C, T] to y.bin [N, OUT_C, T]. */
static const char stream_driver_src[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include \"model.h\"\n"
    "int main(int argc, char **argv) {\n"
    "    long n = atol(argv[1]);\n"
    "    double *x = malloc(sizeof(double) * (size_t)(n * IN_C * T));\n"
    "    double *y = malloc(sizeof(double) * (size_t)(n * OUT_C * T));\n"
    "    static struct STREAM s;\n"
    "    FILE *f = fopen(\"x.bin\", \"rb\");\n"
    "    if (argc != 2 || !x || !y || !f || fread(x, sizeof(double), (size_t)(n * IN_C * T), f) != (size_t)(n * IN_C * T))\n"
    "        return 1;\n"
    "    fclose(f);\n"
    "    if (STREAM_BYTES != sizeof s)\n"
    "        return 2;\n"
    "    for (long b = 0; b < n; b++) {\n"
    "        RESET(&s);\n"
    "        for (long t = 0; t < T; t++) {\n"
    "            double in[IN_C], out[OUT_C];\n"
    "            for (long c = 0; c < IN_C; c++)\n"
    "                in[c] = x[(b * IN_C + c) * T + t];\n"
    "            const double *inputs[1] = {in};\n"
    "            double *outputs[1] = {out};\n"
    "            STEP(WEIGHTS, &s, inputs, outputs);\n"
    "            for (long c = 0; c < OUT_C; c++)\n"
    "                y[(b * OUT_C + c) * T + t] = out[c];\n"
    "        }\n"
    "    }\n"
    "    f = fopen(\"y.bin\", \"wb\");\n"
    "    fwrite(y, sizeof(double), (size_t)(n * OUT_C * T), f);\n"
    "    fclose(f);\n"
    "    free(x);\n"
    "    free(y);\n"
    "    return 0;\n"
    "}\n";

/* Steps the f64 standalone stream of `machine` through x ([N, IN_C, T]) and
 * compares every step with `BIN forward` on the whole sequences. */
static void stream_matches_forward(const char *mach_path, const char *machine, const char *up,
                                   const E2eArr *x, long out_c) {
  const char *dir = e2e_tmpdir();
  setenv("MACHC_CFLAGS", "-O1", 1); /* quick to build; the check is not bit for bit */
  const char *bargs[] = {"--dtype", "f64", mach_path, "-o", "model", "-m", machine, NULL};
  machc_ok(dir, "machc (binary)", bargs);
  E2eRun r = e2e_runl(dir, 30, "./model", "init", "--seed", "3", "--out", "w.npz", NULL);
  e2e_check_ok(&r, "model init");
  e2e_run_free(&r);
  const char *args[] = {"--standalone", "--dtype", "f64", "-m", machine, mach_path, "-o",
                        "model.c", "--weights", "w.npz", NULL};
  machc_ok(dir, "machc --standalone", args);
  e2e_npy_write(e2e_path(dir, "X.npy"), x, false);
  r = e2e_runl(dir, 30, "./model", "forward", "--weights", "w.npz", "--input", "X.npy", "--output",
               "Y.npy", NULL);
  e2e_check_ok(&r, "model forward");
  e2e_run_free(&r);
  E2eArr want = e2e_npy_read(e2e_path(dir, "Y.npy"));
  e2e_write_text(e2e_path(dir, "driver.c"), stream_driver_src);
  long n = x->shape[0], in_c = x->shape[1], T = x->shape[2];
  r = e2e_runl(dir, 60, "cc", "-O2", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror",
               e2e_fmt("-DIN_C=%ld", in_c), e2e_fmt("-DOUT_C=%ld", out_c), e2e_fmt("-DT=%ld", T),
               e2e_fmt("-DSTREAM=%s_stream", machine), e2e_fmt("-DSTREAM_BYTES=%s_STREAM_BYTES", up),
               e2e_fmt("-DRESET=%s_stream_reset", machine), e2e_fmt("-DSTEP=%s_stream_step", machine),
               e2e_fmt("-DWEIGHTS=%s_weights", machine), "driver.c", "model.c", "model_weights.c",
               "-lm", "-o", "driver", NULL);
  e2e_check_ok(&r, "cc on the stream driver");
  e2e_run_free(&r);
  e2e_write_file(e2e_path(dir, "x.bin"), x->d, sizeof(double) * (size_t)x->n);
  r = e2e_runl(dir, 30, "./driver", e2e_fmt("%ld", n), NULL);
  e2e_check_ok(&r, "the stream driver");
  e2e_run_free(&r);
  long ny;
  double *y = read_reals(e2e_path(dir, "y.bin"), false, &ny);
  cr_assert_eq(ny, want.n);
  cr_assert_eq(ny, n * out_c * T);
  double worst = 0;
  for (long i = 0; i < ny; i++) {
    double d = fabs(y[i] - want.d[i]);
    worst = d > worst ? d : worst;
    cr_assert(d <= 1e-12, "%s: sample %ld, channel %ld, step %ld: stream %.17g, forward %.17g", machine,
              i / (out_c * T), i / T % out_c, i % T, y[i], want.d[i]);
  }
  cr_log_info("%s: %ld steps streamed, largest difference from forward %.3g", machine, n * T, worst);
  free(y);
  e2e_arr_free(&want);
}

static E2eArr sine_series(long n, long T) {
  E2eArr x = e2e_arr(3, (long[]){n, 1, T});
  E2eRng rng = {21};
  for (long b = 0; b < n; b++)
    for (long t = 0; t < T; t++)
      x.d[b * T + t] = sin(-M_PI + 0.1 * (double)t + (double)b) + 0.1 * e2e_uniform(&rng, -0.5, 0.5);
  return x;
}

Test(embed, stream_sine_conv_matches_forward) {
  E2eArr x = sine_series(3, 63);
  stream_matches_forward(example("sine.mach"), "sine_conv", "SINE_CONV", &x, 1);
  e2e_arr_free(&x);
}

Test(embed, stream_sine_recur_matches_forward) {
  E2eArr x = sine_series(3, 63);
  stream_matches_forward(example("sine.mach"), "sine_recur", "SINE_RECUR", &x, 1);
  e2e_arr_free(&x);
}

/* Blocks reading each other across chunks (pad 6 >= timeblock 5: cycles
 * through time), two channels in, a skip, dilation, tanh and relu. */
static const char cyclic_src[] =
    "import \"recurrent.mach\"\n"
    "machine cyc {\n"
    "    use m = recur_machine([2, 3, 3], tanh, 6, 5, 17)\n"
    "    block d : 2 @ [17] = relu(conv(m.x[2], k = 3, dilation = 2, pad = [4, 0]) + bias)\n"
    "    output y : 2 @ [17] = conv(m.x[1], d, k = 1) + d + bias\n"
    "}\n";

Test(embed, stream_recurrent_cycles_through_time) {
  const char *dir = e2e_tmpdir();
  char *src = e2e_path(dir, "cyc.mach");
  e2e_write_text(src, cyclic_src);
  E2eArr x = e2e_arr(3, (long[]){2, 2, 17});
  E2eRng rng = {4};
  e2e_fill_uniform(&rng, &x, -1, 1);
  stream_matches_forward(src, "cyc", "CYC", &x, 2);
  e2e_arr_free(&x);
}

/* A convolution reading later steps: no stream, and the header says why. */
Test(embed, no_stream_for_a_noncausal_machine) {
  const char *dir = e2e_tmpdir();
  e2e_write_text(e2e_path(dir, "nc.mach"),
                 "machine nc {\n    input u : 1 @ [8]\n"
                 "    output y : 1 @ [8] = conv(u, k = 3, pad = [1, 1])\n}\n");
  const char *args[] = {"--standalone", "nc.mach", "-o", "model.c", NULL};
  machc_ok(dir, "machc --standalone", args);
  char *h = e2e_read_file(e2e_path(dir, "model.h"), NULL);
  cr_assert(h);
  cr_assert(strstr(h, "/* No streaming (nc_stream_step): the arrow u -> y reads 1 later step. */"), "%s", h);
  cr_assert(!strstr(h, "nc_stream_reset"), "%s", h);
  free(h);
}

/* ---- point 2: the static memory plan of inference ------------------------------------- */

/* NAME_infer with a workspace of exactly NAME_WORKSPACE_BYTES(batch), filled
 * with NaNs, built with ASan and UBSan, gives NAME_forward's outputs bit for
 * bit, for batches of 1 and 5; NAME_forward runs in a state of exactly
 * NAME_STATE_BYTES(batch), filled with NaNs too (its scratch at the end). */
static const char infer_driver_src[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"model.h\"\n"
    "static const long in_sizes[] = IN_SIZES, out_sizes[] = OUT_SIZES, out_offs[] = OUT_OFFS;\n"
    "static double *fresh(long n) {\n"
    "    double *p = malloc(sizeof(double) * (size_t)(n ? n : 1));\n"
    "    for (long i = 0; i < n; i++)\n"
    "        p[i] = (double)rand() / RAND_MAX - 0.5;\n"
    "    return p;\n"
    "}\n"
    "int main(void) {\n"
    "    int bad = 0;\n"
    "    double *params = fresh(PARAM_SIZE);\n"
    "    for (long batch = 1; batch <= 5; batch += 4) {\n"
    "        const double *inputs[8];\n"
    "        double *outputs[8];\n"
    "        for (int k = 0; k < N_IN; k++)\n"
    "            inputs[k] = fresh(batch * in_sizes[k]);\n"
    "        double *state = malloc(STATE_BYTES(batch));\n"
    "        memset(state, 0xff, STATE_BYTES(batch));\n"
    "        FORWARD(params, inputs, state, batch);\n"
    "        size_t bytes = WORKSPACE_BYTES(batch);\n"
    "        void *ws = malloc(bytes ? bytes : 1);\n"
    "        memset(ws, 0xff, bytes); /* NaNs: nothing may be read unwritten */\n"
    "        for (int k = 0; k < N_OUT; k++)\n"
    "            outputs[k] = fresh(batch * out_sizes[k]);\n"
    "        INFER(params, inputs, outputs, batch, ws);\n"
    "        for (int k = 0; k < N_OUT; k++)\n"
    "            if (memcmp(outputs[k], state + batch * out_offs[k], sizeof(double) * (size_t)(batch * out_sizes[k]))) {\n"
    "                printf(\"batch %ld: output %d differs\\n\", batch, k);\n"
    "                bad = 1;\n"
    "            }\n"
    "        for (int k = 0; k < N_IN; k++)\n"
    "            free((void *)inputs[k]);\n"
    "        for (int k = 0; k < N_OUT; k++)\n"
    "            free(outputs[k]);\n"
    "        free(state);\n"
    "        free(ws);\n"
    "    }\n"
    "    free(params);\n"
    "    printf(\"workspace %ld of %ld scalars per sample\\n\", (long)WORKSPACE_SIZE, (long)STATE_SIZE);\n"
    "    return bad;\n"
    "}\n";

static void infer_matches_forward(const char *mach_path, const char *machine, const char *up,
                                  const char *in_sizes, const char *out_sizes, const char *out_offs,
                                  int nin, int nout, long want_ws) {
  const char *dir = e2e_tmpdir();
  const char *args[] = {"--standalone", "--dtype", "f64", "-m", machine, mach_path, "-o", "model.c",
                        NULL};
  machc_ok(dir, "machc --standalone", args);
  e2e_write_text(e2e_path(dir, "driver.c"), infer_driver_src);
  E2eRun r = e2e_runl(
      dir, 60, "cc", "-O1", "-g", "-std=c99", "-Wall", "-Wextra", "-Werror",
      "-fsanitize=address,undefined", "-fno-sanitize-recover=all", e2e_fmt("-DIN_SIZES={%s}", in_sizes),
      e2e_fmt("-DOUT_SIZES={%s}", out_sizes), e2e_fmt("-DOUT_OFFS={%s}", out_offs),
      e2e_fmt("-DN_IN=%d", nin), e2e_fmt("-DN_OUT=%d", nout), e2e_fmt("-DPARAM_SIZE=%s_PARAM_SIZE", up),
      e2e_fmt("-DSTATE_SIZE=%s_STATE_SIZE", up), e2e_fmt("-DSTATE_BYTES=%s_STATE_BYTES", up),
      e2e_fmt("-DWORKSPACE_SIZE=%s_WORKSPACE_SIZE", up),
      e2e_fmt("-DWORKSPACE_BYTES=%s_WORKSPACE_BYTES", up), e2e_fmt("-DFORWARD=%s_forward", machine),
      e2e_fmt("-DINFER=%s_infer", machine), "driver.c", "model.c", "-lm", "-o", "driver", NULL);
  e2e_check_ok(&r, "cc -fsanitize on the infer driver");
  e2e_run_free(&r);
  r = e2e_runl(dir, 60, "./driver", NULL);
  e2e_check_ok(&r, e2e_fmt("%s: infer against forward", machine));
  cr_log_info("%s: %s", machine, r.out);
  cr_assert(strstr(r.out, e2e_fmt("workspace %ld of ", want_ws)), "%s: %s", machine, r.out);
  e2e_run_free(&r);
}

Test(embed, infer_poly) {
  infer_matches_forward(example("poly.mach"), "poly", "POLY", "2", "1", "POLY_OUT_y", 1, 1, 14);
}
Test(embed, infer_sine_conv) {
  infer_matches_forward(example("sine.mach"), "sine_conv", "SINE_CONV", "63", "63",
                        "SINE_CONV_OUT_y", 1, 1, 819);
}
Test(embed, infer_sine_recur) {
  infer_matches_forward(example("sine.mach"), "sine_recur", "SINE_RECUR", "63", "63",
                        "SINE_RECUR_OUT_y", 1, 1, 819);
}
Test(embed, infer_waves_pooling_after_chunks) {
  infer_matches_forward(example("waves.mach"), "waves", "WAVES", "32", "3", "WAVES_OUT_y", 1, 1, 544);
}
/* Outputs that later blocks read, two inputs, skips, leaky relu */
Test(embed, infer_outputs_read_by_other_blocks) {
  infer_matches_forward(e2e_fmt("%s/tests/golden/paper_dense.mach", e2e_root()), "paper_dense",
                        "PAPER_DENSE", "2", "2, 3, 1",
                        "PAPER_DENSE_OUT_x_0, PAPER_DENSE_OUT_x_1, PAPER_DENSE_OUT_x_2", 1, 3, 0);
}
/* blocks reading each other across chunks of time */
Test(embed, infer_recurrent_cycles_through_time) {
  const char *dir = e2e_tmpdir();
  char *src = e2e_path(dir, "cyc.mach");
  e2e_write_text(src, cyclic_src);
  infer_matches_forward(src, "cyc", "CYC", "34", "34", "CYC_OUT_y", 1, 1, 136);
}

/* ---- point 3: training on the device ------------------------------------------------ */

/* `steps` full-batch steps of NAME_train_step from the baked weights, then
 * the parameters to w.bin and the first loss to stdout. */
static const char train_driver_src[] =
    "#include <stdio.h>\n"
    "#include <stdlib.h>\n"
    "#include <string.h>\n"
    "#include \"model.h\"\n"
    "static double params[PARAM_SIZE], opt[OPT_SIZE + 1];\n"
    "int main(int argc, char **argv) {\n"
    "    long n = atol(argv[1]), steps = atol(argv[2]);\n"
    "    double lr = atof(argv[3]), *x = malloc(sizeof(double) * (size_t)(n * IN)), *t = malloc(sizeof(double) * (size_t)(n * TSZ));\n"
    "    void *ws = malloc(TRAIN_BYTES(n));\n"
    "    if (ws)\n"
    "        memset(ws, 0xff, TRAIN_BYTES(n)); /* NaNs: nothing may be read unwritten */\n"
    "    FILE *f = fopen(\"x.bin\", \"rb\"), *g = fopen(\"t.bin\", \"rb\");\n"
    "    if (argc != 4 || !x || !t || !ws || !f || !g || fread(x, sizeof(double), (size_t)(n * IN), f) != (size_t)(n * IN)\n"
    "        || fread(t, sizeof(double), (size_t)(n * TSZ), g) != (size_t)(n * TSZ))\n"
    "        return 1;\n"
    "    fclose(f);\n"
    "    fclose(g);\n"
    "    memcpy(params, WEIGHTS, sizeof params);\n"
    "    const double *inputs[1] = {x};\n"
    "    for (long s = 0; s < steps; s++) {\n"
    "        double loss = STEP(params, opt, inputs, t, n, lr, ws);\n"
    "        if (s == 0)\n"
    "            printf(\"first loss %.17g\\n\", loss);\n"
    "    }\n"
    "    f = fopen(\"w.bin\", \"wb\");\n"
    "    fwrite(params, sizeof(double), PARAM_SIZE, f);\n"
    "    fclose(f);\n"
    "    free(x);\n"
    "    free(t);\n"
    "    free(ws);\n"
    "    return 0;\n"
    "}\n";

/* Trains `machine` for 100 full-batch steps with `BIN train` and with the
 * standalone step from the same initial weights; the weights agree to 1e-11
 * (rounding: waves, the deepest, ends about 2e-12 apart, the others within
 * 1e-14).
 * The step runs under ASan and UBSan in a workspace of exactly
 * NAME_TRAIN_WORKSPACE_BYTES(batch), filled with NaNs. */
static void train_agrees(const char *mach_path, const char *machine, const char *up,
                         const char *loss, const char *optimizer, const char *lr, const E2eArr *x,
                         const E2eArr *t) {
  const char *dir = e2e_tmpdir();
  setenv("MACHC_CFLAGS", "-O2 -ffp-contract=off", 1);
  const char *bargs[] = {"--dtype", "f64", mach_path, "-o", "model", "-m", machine, NULL};
  machc_ok(dir, "machc (binary)", bargs);
  E2eRun r = e2e_runl(dir, 30, "./model", "init", "--seed", "5", "--out", "w0.npz", NULL);
  e2e_check_ok(&r, "model init");
  e2e_run_free(&r);
  long n = x->shape[0], in = x->n / n, tsz = t->n / n;
  FILE *fx = fopen(e2e_path(dir, "x.csv"), "w"), *ft = fopen(e2e_path(dir, "t.csv"), "w");
  for (long i = 0; i < n; i++) {
    for (long j = 0; j < in; j++)
      fprintf(fx, "%s%.17g", j ? "," : "", x->d[i * in + j]);
    for (long j = 0; j < tsz; j++)
      fprintf(ft, "%s%.17g", j ? "," : "", t->d[i * tsz + j]);
    fputc('\n', fx);
    fputc('\n', ft);
  }
  fclose(fx);
  fclose(ft);
  r = e2e_runl(dir, 60, "./model", "train", "--data", "x.csv", "--targets", "t.csv", "--loss", loss,
               "--optimizer", optimizer, "--lr", lr, "--epochs", "100", "--batch", e2e_fmt("%ld", n),
               "--seed", "1", "--init", "w0.npz", "--quiet", "--out", "w1.npz", NULL);
  e2e_check_ok(&r, "model train");
  e2e_run_free(&r);
  const char *args[] = {"--standalone", "--train", "--loss", loss, "--optimizer", optimizer, "--dtype",
                        "f64", "-m", machine, mach_path, "-o", "model.c", "--weights", "w0.npz", NULL};
  machc_ok(dir, "machc --standalone --train", args);
  e2e_write_text(e2e_path(dir, "driver.c"), train_driver_src);
  e2e_write_file(e2e_path(dir, "x.bin"), x->d, sizeof(double) * (size_t)x->n);
  e2e_write_file(e2e_path(dir, "t.bin"), t->d, sizeof(double) * (size_t)t->n);
  r = e2e_runl(dir, 60, "cc", "-O2", "-ffp-contract=off", "-std=c99", "-Wall", "-Wextra", "-pedantic",
               "-Werror", "-fsanitize=address,undefined", "-fno-sanitize-recover=all", e2e_fmt("-DIN=%ld", in), e2e_fmt("-DTSZ=%ld", tsz),
               e2e_fmt("-DPARAM_SIZE=%s_PARAM_SIZE", up), e2e_fmt("-DOPT_SIZE=%s_OPT_STATE_SIZE", up),
               e2e_fmt("-DTRAIN_BYTES=%s_TRAIN_WORKSPACE_BYTES", up),
               e2e_fmt("-DSTEP=%s_train_step", machine), e2e_fmt("-DWEIGHTS=%s_weights", machine),
               "driver.c", "model.c", "model_weights.c", "-lm", "-o", "driver", NULL);
  e2e_check_ok(&r, "cc on the train driver");
  e2e_run_free(&r);
  r = e2e_runl(dir, 60, "./driver", e2e_fmt("%ld", n), "100", lr, NULL);
  e2e_check_ok(&r, "the train driver");
  e2e_run_free(&r);
  /* every parameter, at the offset `info --json` gives */
  r = e2e_runl(dir, 30, "./model", "info", "--json", NULL);
  e2e_check_ok(&r, "info --json");
  long nw;
  double *w = read_reals(e2e_path(dir, "w.bin"), false, &nw);
  E2eNpz z = e2e_npz_read(e2e_path(dir, "w1.npz")), z0 = e2e_npz_read(e2e_path(dir, "w0.npz"));
  double worst = 0, moved = 0;
  for (int p = 0; p < z0.n; p++) { /* w1.npz also holds the training counters */
    const char *at = strstr(r.out, e2e_fmt("{\"name\": \"%s\", ", z0.names[p]));
    cr_assert(at, "%s not in %s", z0.names[p], r.out);
    long off = -1;
    cr_assert_eq(sscanf(strstr(at, "\"offset\": ") + 10, "%ld", &off), 1);
    const E2eArr *a = e2e_npz_get(&z, z0.names[p]), *a0 = &z0.arrs[p];
    for (long i = 0; i < a->n; i++) {
      double d = fabs(w[off + i] - a->d[i]);
      worst = d > worst ? d : worst;
      moved = fmax(moved, fabs(a->d[i] - a0->d[i]));
      cr_assert(d <= 1e-11, "%s %s/%s: %s[%ld]: step %.17g, BIN train %.17g", machine, loss,
                optimizer, z0.names[p], i, w[off + i], a->d[i]);
    }
  }
  cr_assert_gt(moved, 1e-3, "training moved no weight");
  cr_log_info("%s, %s, %s: 100 steps, largest difference from BIN train %.3g (weights moved up to %.3g)",
              machine, loss, optimizer, worst, moved);
  e2e_run_free(&r);
  e2e_npz_free(&z);
  e2e_npz_free(&z0);
  free(w);
}

static void poly_data(E2eArr *x, E2eArr *t) {
  *x = e2e_arr2(36, 2);
  *t = e2e_arr2(36, 1);
  for (int i = 0; i < 36; i++) {
    double a = (i / 6) / 5.0, b = (i % 6) / 5.0;
    x->d[2 * i] = a;
    x->d[2 * i + 1] = b;
    t->d[i] = (2 * a - 1) * (2 * a - 1) + 2 * b + a * b - 3;
  }
}

Test(embed, train_step_adam_matches_binary) {
  E2eArr x, t;
  poly_data(&x, &t);
  train_agrees(example("poly.mach"), "poly", "POLY", "mse", "adam", "0.1", &x, &t);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

Test(embed, train_step_sgd_matches_binary) {
  E2eArr x, t;
  poly_data(&x, &t);
  train_agrees(example("poly.mach"), "poly", "POLY", "mse", "sgd", "0.5", &x, &t);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

/* softmax cross-entropy and momentum on a small classifier */
Test(embed, train_step_xent_momentum_matches_binary) {
  const char *dir = e2e_tmpdir();
  char *src = e2e_path(dir, "cls.mach");
  e2e_write_text(src, "machine cls {\n    input x : 2\n    block h : 5 = tanh(dense(x) + bias)\n"
                      "    output y : 3 = dense(h) + bias\n}\n");
  E2eArr x = e2e_arr2(30, 2), t = e2e_arr2(30, 1);
  E2eRng rng = {8};
  for (int i = 0; i < 30; i++) {
    x.d[2 * i] = e2e_uniform(&rng, -1, 1);
    x.d[2 * i + 1] = e2e_uniform(&rng, -1, 1);
    t.d[i] = x.d[2 * i] > 0.3 ? 0 : x.d[2 * i + 1] > 0 ? 1 : 2;
  }
  train_agrees(src, "cls", "CLS", "xent", "momentum", "0.2", &x, &t);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

/* The convolutions' scratch of the forward pass, the dual machine and the
 * kernel gradients, in the step's workspace: the windowed products of the
 * ConvMachine (a sine one step ahead, mse and Adam) */
Test(embed, train_step_conv_matches_binary) {
  E2eArr x = sine_series(6, 63), t = e2e_arr2(6, 63);
  for (long b = 0; b < 6; b++)
    for (long i = 0; i < 63; i++)
      t.d[b * 63 + i] = x.d[b * 63 + (i + 1) % 63];
  train_agrees(example("sine.mach"), "sine_conv", "SINE_CONV", "mse", "adam", "0.01", &x, &t);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

/* and mm_grid's panels, of the recurrent machine's chunked levels and of
 * waves' pooling after them, with cross-entropy and momentum */
Test(embed, train_step_waves_matches_binary) {
  E2eArr x = e2e_arr2(9, 32), t = e2e_arr2(9, 1);
  for (long b = 0; b < 9; b++) {
    for (long i = 0; i < 32; i++) {
      double ph = 0.37 * (double)b + (double)i / 8.0, u = ph - floor(ph);
      x.d[b * 32 + i] = b % 3 == 0 ? sin(2 * M_PI * u) : b % 3 == 1 ? (u < 0.5 ? 1 : -1) : 2 * u - 1;
    }
    t.d[b] = (double)(b % 3);
  }
  train_agrees(example("waves.mach"), "waves", "WAVES", "xent", "momentum", "0.05", &x, &t);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

/* ---- point 7: the example that trains on the device ------------------------------------ */

/* examples/embed/train.c, built as run.sh builds it (poly's initial weights
 * baked with the training step, f32), trains poly and says how far its loss
 * fell: at least 100 times, as the program itself demands; and under
 * qemu-arm, where installed, the same. */
static void trainer_falls(const char *dir, const char *runner, const char *exe) {
  E2eRun r = runner ? e2e_runl(dir, 120, runner, exe, NULL) : e2e_runl(dir, 60, exe, NULL);
  e2e_check_ok(&r, e2e_fmt("%s%s%s", runner ? runner : "", runner ? " " : "", exe));
  double first = 0, last = 0, prev = INFINITY;
  int steps = 0;
  for (const char *l = strstr(r.out, "step "); l; l = strstr(l + 1, "\nstep ")) {
    int step;
    double loss;
    cr_assert_eq(sscanf(*l == '\n' ? l + 1 : l, "step %d: loss %lf", &step, &loss), 2, "%s", r.out);
    cr_assert(steps > 0 || loss > 1, "%s: the first loss, %g, is already small", exe, loss);
    prev = loss;
    steps++;
  }
  cr_assert_eq(steps, 9, "%s", r.out);
  const char *fell = strstr(r.out, "loss fell from ");
  cr_assert(fell && sscanf(fell, "loss fell from %lf to %lf", &first, &last) == 2, "%s", r.out);
  cr_assert_eq(last, prev, "%s", r.out);
  cr_assert_geq(first / last, 100, "%s: the loss fell from %g to %g only", exe, first, last);
  cr_assert(strstr(r.out, "predicted"), "%s", r.out);
  cr_log_info("%s%s: loss %g -> %g", runner ? "qemu-arm " : "", exe, first, last);
  e2e_run_free(&r);
}

Test(embed, example_trains_on_device) {
  const char *dir = e2e_tmpdir();
  const char *bargs[] = {"--dtype", "f32", example("poly.mach"), "-o", "poly-bin", NULL};
  machc_ok(dir, "machc (binary)", bargs);
  E2eRun r = e2e_runl(dir, 30, "./poly-bin", "init", "--seed", "0", "--out", "init.npz", NULL);
  e2e_check_ok(&r, "poly-bin init");
  e2e_run_free(&r);
  const char *args[] = {"--standalone", "--train", "--loss", "mse", "--optimizer", "adam", "--dtype",
                        "f32", example("poly.mach"), "-o", "poly.c", "--weights", "init.npz", NULL};
  machc_ok(dir, "machc --standalone --train", args);
  const char *src = example("embed/train.c");
  r = e2e_runl(dir, 60, "cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-I.", src,
               "poly.c", "poly_weights.c", "-lm", "-o", "train", NULL);
  e2e_check_ok(&r, "cc on examples/embed/train.c");
  e2e_run_free(&r);
  trainer_falls(dir, NULL, "./train");
  if (!have_tool("arm-linux-gnueabihf-gcc") || !have_tool("qemu-arm"))
    return; /* embed_cross says why */
  r = e2e_runl(dir, 60, "arm-linux-gnueabihf-gcc", "-std=c99", "-O2", "-static", "-I.", src, "poly.c",
               "poly_weights.c", "-lm", "-o", "train-arm", NULL);
  e2e_check_ok(&r, "arm-linux-gnueabihf-gcc on examples/embed/train.c");
  e2e_run_free(&r);
  trainer_falls(dir, "qemu-arm", "./train-arm");
}
