/* main.c — the machc command line: parse options, run the phases, write C,
 * call the C compiler. Exit status: 0 success, 1 error in the user's input
 * (or a tool failure), 2 usage error. */
#include "machc.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef MACHC_ROOT
#define MACHC_ROOT "."
#endif
#ifndef MACHC_LIBDIR
#define MACHC_LIBDIR MACHC_ROOT "/build/lib"
#endif
#ifndef MACHC_SANFLAGS
#define MACHC_SANFLAGS ""
#endif
#ifndef MACHC_MPI_FLAGS /* Open MPI's compile and link flags, when machc was built */
#define MACHC_MPI_FLAGS ""
#endif

typedef enum Emit { EMIT_BIN, EMIT_C, EMIT_DUAL, EMIT_DOT, EMIT_MACH } EmitKind;

typedef struct Options {
  const char *input, *output, *machine;
  const char *weights; /* --weights W.npz: bake into NAME_weights.c */
  EmitKind emit;
  bool f32, standalone, backward, explain, fp_contract_off, dot_dual, mpi, train, loss_xent;
  bool plain_kernels; /* --kernels=plain */
  int optimizer; /* --optimizer for --train: 0 sgd, 1 momentum, 2 adam */
  const char *march; /* the target of the generated code: clang's -march */
  const char *stdlib[16];
  int nstdlib;
} Options;

static const char usage_text[] =
    "usage: machc [options] FILE.mach            compile a machine to a binary\n"
    "       machc explain [-m NAME] FILE.mach    levels, arrows, parameters, FLOPs, memory\n"
    "\n"
    "options:\n"
    "  -o FILE, -oFILE  output file (binary: default the .mach file's name without\n"
    "                   extension; with -S: the .c file, the .h is written beside it)\n"
    "  -S, --emit=c     write the C source and header instead of a binary\n"
    "  --emit=dual      print the dual machine (the backward pass) as .mach source\n"
    "  --emit=mach      print the machine as .mach source, after elaboration\n"
    "  --emit=dot       print the depth diagram, a Graphviz graph with the levels as ranks\n"
    "  --dual           with --emit=dot: draw the dual machine below the machine\n"
    "  --standalone     inference-only C (with -S): one .c and one .h, no runtime\n"
    "  --weights W.npz  with --standalone: also write NAME_weights.c, the weights\n"
    "                   of W.npz as a constant array (NAME.c the -o file)\n"
    "  --train          with --standalone: also NAME_train_step, one training step\n"
    "                   on the device; --loss mse|xent (default mse), --optimizer\n"
    "                   sgd|momentum|adam (default adam)\n"
    "  --march=TARGET   the processor to generate for (default native; e.g. x86-64-v3\n"
    "                   for AVX2): the kernels' tiles, and clang's -march for binaries\n"
    "  --kernels=tuned|plain  the kernels of the generated code: tuned (default:\n"
    "                   register tiles, packed panels, OpenMP) or plain (the obvious\n"
    "                   loops, same names and calls, for reading; much slower)\n"
    "  --fp-contract=off  never fuse a * b + c into an FMA: the code gives the same\n"
    "                   bits with any compiler flags (binaries: -ffp-contract=off)\n"
    "  --dtype f32|f64  scalar type of the generated code (default f32)\n"
    "  --no-backward    leave out the backward pass\n"
    "  --mpi            link against Open MPI: `mpirun -np K BIN train ...` trains on K\n"
    "                   ranks, each a shard of every minibatch (also eval, forward, grad)\n"
    "  -m NAME          the machine to compile (default: the last machine without\n"
    "                   parameters in FILE)\n"
    "  -I DIR           also search DIR for imports\n"
    "  -h, --help       this text\n"
    "  --version        the version\n"
    "\n"
    "environment: CC (default clang), MACHC_CFLAGS (default \"-O3 -march=native\")\n";

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "machc: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'machc --help'.\n");
  return 2;
}

/* Directory of this executable, to find the stdlib and runtime of an
 * installed copy (PREFIX/bin/machc -> PREFIX/share/machc, PREFIX/lib/machc). */
static bool exe_prefix(char *out, size_t n) {
  char self[PATH_MAX];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0)
    return false;
  self[len] = '\0';
  char *slash = strrchr(self, '/');
  if (!slash)
    return false;
  *slash = '\0';
  slash = strrchr(self, '/');
  if (!slash)
    return false;
  *slash = '\0';
  size_t len2 = strlen(self);
  if (len2 + 1 > n)
    return false;
  memcpy(out, self, len2 + 1);
  return true;
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

typedef struct Paths {
  char stdlib[PATH_MAX + 64], include[PATH_MAX + 64], lib[PATH_MAX + 64];
} Paths;

static void find_paths(Paths *p) {
  char prefix[PATH_MAX - 32];
  const char *env = getenv("MACHC_ROOT");
  if (env) {
    snprintf(p->stdlib, sizeof p->stdlib, "%s/stdlib", env);
    snprintf(p->include, sizeof p->include, "%s/runtime", env);
    snprintf(p->lib, sizeof p->lib, "%s/build/lib", env);
    return;
  }
  if (exe_prefix(prefix, sizeof prefix)) {
    char share[PATH_MAX + 64];
    snprintf(share, sizeof share, "%s/share/machc/stdlib", prefix);
    if (is_dir(share)) {
      snprintf(p->stdlib, sizeof p->stdlib, "%s", share);
      snprintf(p->include, sizeof p->include, "%s/include/machc", prefix);
      snprintf(p->lib, sizeof p->lib, "%s/lib/machc", prefix);
      return;
    }
  }
  snprintf(p->stdlib, sizeof p->stdlib, "%s/stdlib", MACHC_ROOT);
  snprintf(p->include, sizeof p->include, "%s/runtime", MACHC_ROOT);
  snprintf(p->lib, sizeof p->lib, "%s", MACHC_LIBDIR);
}

static int parse_args(int argc, char **argv, Options *o) {
  *o = (Options){.backward = true, .f32 = true, .optimizer = 2, .march = "native"};
  int i = 1;
  if (argc > 1 && strcmp(argv[1], "explain") == 0) {
    o->explain = true;
    i = 2;
  }
  for (; i < argc; i++) {
    const char *a = argv[i];
    bool has_next = i + 1 < argc;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      fputs(usage_text, stdout);
      return 0;
    } else if (strcmp(a, "--version") == 0) {
      printf("machc %s\n", MACHC_VERSION);
      return 0;
    } else if (strcmp(a, "-o") == 0 && has_next) {
      o->output = argv[++i];
    } else if (strncmp(a, "-o", 2) == 0 && a[2]) { /* -oFILE, as cc takes it */
      o->output = a + 2;
    } else if (strcmp(a, "-m") == 0 && has_next) {
      o->machine = argv[++i];
    } else if (strncmp(a, "-m", 2) == 0 && a[2]) {
      o->machine = a + 2;
    } else if ((strcmp(a, "-I") == 0 && has_next) || (strncmp(a, "-I", 2) == 0 && a[2])) {
      if (o->nstdlib == 15)
        return usage_error("too many -I directories%s", "");
      o->stdlib[o->nstdlib++] = a[2] ? a + 2 : argv[++i];
    } else if (strcmp(a, "-S") == 0 || strcmp(a, "--emit=c") == 0) {
      o->emit = EMIT_C;
    } else if (strcmp(a, "--emit=dual") == 0) {
      o->emit = EMIT_DUAL;
    } else if (strcmp(a, "--emit=dot") == 0) {
      o->emit = EMIT_DOT;
    } else if (strcmp(a, "--emit=mach") == 0) {
      o->emit = EMIT_MACH;
    } else if (strncmp(a, "--emit=", 7) == 0) {
      return usage_error("unknown --emit kind '%s' (c, dual, mach, dot)", a + 7);
    } else if (strcmp(a, "--dual") == 0) {
      o->dot_dual = true;
    } else if (strcmp(a, "--standalone") == 0) {
      o->standalone = true;
    } else if (strcmp(a, "--weights") == 0 && has_next) {
      o->weights = argv[++i];
    } else if (strcmp(a, "--train") == 0) {
      o->train = true;
    } else if (strcmp(a, "--loss") == 0 && has_next) {
      const char *v = argv[++i];
      if (strcmp(v, "mse") != 0 && strcmp(v, "xent") != 0)
        return usage_error("--loss must be mse or xent, not '%s'", v);
      o->loss_xent = strcmp(v, "xent") == 0;
    } else if (strcmp(a, "--optimizer") == 0 && has_next) {
      const char *v = argv[++i];
      o->optimizer = strcmp(v, "sgd") == 0 ? 0 : strcmp(v, "momentum") == 0 ? 1 : strcmp(v, "adam") == 0 ? 2 : -1;
      if (o->optimizer < 0)
        return usage_error("--optimizer must be sgd, momentum or adam, not '%s'", v);
    } else if (strncmp(a, "--march=", 8) == 0 && a[8]) {
      o->march = a + 8;
    } else if (strcmp(a, "--kernels=tuned") == 0 || strcmp(a, "--kernels=plain") == 0) {
      o->plain_kernels = strcmp(a + 10, "plain") == 0;
    } else if (strncmp(a, "--kernels=", 10) == 0 || strcmp(a, "--kernels") == 0) {
      return usage_error("--kernels must be tuned or plain, not '%s'", a[9] ? a + 10 : "");
    } else if (strcmp(a, "--fp-contract=off") == 0) {
      o->fp_contract_off = true;
    } else if (strncmp(a, "--fp-contract=", 14) == 0) {
      return usage_error("--fp-contract takes only 'off', not '%s'", a + 14);
    } else if (strcmp(a, "--mpi") == 0) {
      o->mpi = true;
    } else if (strcmp(a, "--no-backward") == 0) {
      o->backward = false;
    } else if (strcmp(a, "--dtype") == 0 && has_next) {
      const char *t = argv[++i];
      if (strcmp(t, "f32") != 0 && strcmp(t, "f64") != 0)
        return usage_error("--dtype must be f32 or f64, not '%s'", t);
      o->f32 = strcmp(t, "f32") == 0;
    } else if (strncmp(a, "--dtype=", 8) == 0) {
      if (strcmp(a + 8, "f32") != 0 && strcmp(a + 8, "f64") != 0)
        return usage_error("--dtype must be f32 or f64, not '%s'", a + 8);
      o->f32 = strcmp(a + 8, "f32") == 0;
    } else if (a[0] == '-' && a[1] != '\0') {
      if (strcmp(a, "-o") == 0 || strcmp(a, "-m") == 0 || strcmp(a, "-I") == 0 ||
          strcmp(a, "--dtype") == 0 || strcmp(a, "--weights") == 0 || strcmp(a, "--loss") == 0 ||
          strcmp(a, "--optimizer") == 0)
        return usage_error("option '%s' needs an argument", a);
      return usage_error("unknown option '%s'", a);
    } else if (o->input && strcmp(a, "explain") == 0) {
      return usage_error("'explain' is a command and comes first: machc explain %s", o->input);
    } else if (o->input) {
      return usage_error("more than one input file ('%s')", a);
    } else {
      o->input = a;
    }
  }
  if (!o->input)
    return usage_error("no input file%s", "");
  if (o->dot_dual && o->emit != EMIT_DOT)
    return usage_error("--dual goes with --emit=dot%s", "");
  if (o->standalone && o->emit == EMIT_BIN)
    o->emit = EMIT_C; /* standalone code has no main: it is source only */
  if (o->mpi && !*MACHC_MPI_FLAGS)
    return usage_error("--mpi: this machc was built without Open MPI (install %s and rebuild)",
                       "openmpi-bin and libopenmpi-dev");
  if (o->mpi && o->standalone)
    return usage_error("--mpi builds a binary; --standalone code has no runtime%s", "");
  if (o->train && (!o->standalone || !o->backward))
    return usage_error("--train needs --standalone (and the backward pass)%s", "");
  if (o->weights && !o->standalone)
    return usage_error("--weights needs --standalone (a binary reads its weights with --weights%s)",
                       " at run time");
  return -1;
}

/* Writes data to tmp, the temporary of path (named in the message). */
static bool write_tmp(const char *path, const char *tmp, const char *data, size_t len) {
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    fprintf(stderr, "machc: cannot write %s: %s\n", path, strerror(errno));
    return false;
  }
  bool ok = fwrite(data, 1, len, f) == len;
  ok &= fclose(f) == 0;
  if (!ok)
    fprintf(stderr, "machc: cannot write %s: %s\n", path, strerror(errno));
  return ok;
}

/* What a signal (Ctrl-C, a timeout's SIGTERM) must not leave behind: the
 * temporary of the file being written, the generated C of a binary and its
 * directory under /tmp, and the C compiler working on it. A handler reaches
 * them only through statics: the one global state of machc, set and cleared
 * around those steps. */
enum { MAX_OUTPUTS = 3 }; /* the .c, the .h and the baked weights */
static const char *volatile sig_tmp[MAX_OUTPUTS], *volatile sig_cfile, *volatile sig_hfile, *volatile sig_dir;
static volatile pid_t sig_child;

static void on_signal(int sig) {
  pid_t child = sig_child;
  if (child > 0) { /* the compiler removes its own partial output */
    kill(child, sig);
    waitpid(child, NULL, 0);
  }
  const char *paths[MAX_OUTPUTS + 2] = {sig_cfile, sig_hfile};
  for (int i = 0; i < MAX_OUTPUTS; i++)
    paths[2 + i] = sig_tmp[i];
  for (int i = 0; i < MAX_OUTPUTS + 2; i++)
    if (paths[i])
      unlink(paths[i]);
  if (sig_dir)
    rmdir(sig_dir);
  signal(sig, SIG_DFL);
  raise(sig);
}

static void catch_signals(void) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    sigaddset(&sa.sa_mask, sigs[i]); /* one cleanup at a time */
  for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
    sigaction(sigs[i], &sa, NULL);
}

/* Writes n files all or none: each to a temporary beside it (PATH.tmp.PID),
 * renamed only once every one is written, so that a failure replaces no
 * file and leaves no temporary. */
static bool write_files(int n, const char *const *path, const char *const *data, const size_t *len) {
  char tmp[MAX_OUTPUTS][PATH_MAX];
  bool ok = true;
  for (int i = 0; i < n; i++) {
    snprintf(tmp[i], sizeof tmp[i], "%s.tmp.%d", path[i], (int)getpid());
    sig_tmp[i] = tmp[i];
    ok = ok && write_tmp(path[i], tmp[i], data[i], len[i]);
  }
  for (int i = 0; i < n && ok; i++) { /* what rename would refuse, before any rename */
    struct stat st;
    if (stat(path[i], &st) == 0 && S_ISDIR(st.st_mode)) {
      fprintf(stderr, "machc: cannot write %s: %s\n", path[i], strerror(EISDIR));
      ok = false;
    }
  }
  for (int i = 0; i < n && ok; i++)
    if (rename(tmp[i], path[i]) != 0) {
      fprintf(stderr, "machc: cannot write %s: %s\n", path[i], strerror(errno));
      ok = false;
    }
  for (int i = 0; i < n; i++) { /* what was not renamed */
    unlink(tmp[i]);
    sig_tmp[i] = NULL;
  }
  return ok;
}

static bool write_file(const char *path, const char *data, size_t len) {
  return write_files(1, &path, &data, &len);
}

static char *strip_ext(Arena *a, const char *path, const char *ext) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base), e = strlen(ext);
  if (n > e && strcmp(base + n - e, ext) == 0)
    n -= e;
  return arena_strndup(a, base, n);
}

/* Runs argv; returns its exit status, or -1 if it could not start. */
static int run(char **argv) {
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old); /* until the child is known to the handler */
  pid_t pid = fork();
  if (pid < 0) {
    sigprocmask(SIG_SETMASK, &old, NULL);
    return -1;
  }
  if (pid == 0) {
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
      signal(sigs[i], SIG_DFL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    execvp(argv[0], argv);
    fprintf(stderr, "machc: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  sig_child = pid;
  sigprocmask(SIG_SETMASK, &old, NULL);
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) {
      sig_child = 0;
      return -1;
    }
  sig_child = 0;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* The vector width of a -march target, in bytes, for the kernels' tiles:
 * AVX-512 64, AVX2 32, anything else 16 (SSE, NEON: what any C99 compiler
 * vectorizes for). "native" asks the processor machc runs on. */
static int vector_bytes(const char *march) {
  static const char *const avx512[] = {"x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake",
                                       "icelake-client", "icelake-server", "tigerlake", "sapphirerapids",
                                       "znver4", "znver5"};
  static const char *const avx2[] = {"x86-64-v3", "haswell", "broadwell", "skylake", "alderlake",
                                     "znver1", "znver2", "znver3"};
  if (strcmp(march, "native") == 0) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") ? 64 : __builtin_cpu_supports("avx2") ? 32 : 16;
#else
    return 16;
#endif
  }
  for (size_t i = 0; i < sizeof avx512 / sizeof *avx512; i++)
    if (strcmp(march, avx512[i]) == 0)
      return 64;
  for (size_t i = 0; i < sizeof avx2 / sizeof *avx2; i++)
    if (strcmp(march, avx2[i]) == 0)
      return 32;
  return 16;
}

static int compile_c(Arena *a, const Options *o, const Paths *paths, const char *cfile,
                     const char *out) {
  const char *cc = getenv("CC");
  if (!cc || !*cc)
    cc = "clang";
  const char *flags = getenv("MACHC_CFLAGS");
  if (!flags)
    flags = arena_printf(a, "-O3 -march=%s", o->march);
  char *argv[64];
  int n = 0;
  argv[n++] = (char *)cc;
  char *fl = arena_strdup(a, flags);
  for (char *t = strtok(fl, " \t"); t && n < 40; t = strtok(NULL, " \t"))
    argv[n++] = t;
  char *san = arena_strdup(a, MACHC_SANFLAGS);
  for (char *t = strtok(san, " \t"); t && n < 50; t = strtok(NULL, " \t"))
    argv[n++] = t;
  argv[n++] = "-std=c99";
  argv[n++] = "-fopenmp"; /* the kernels' threads; OMP_NUM_THREADS or BIN --threads pick how many */
  if (o->fp_contract_off)
    argv[n++] = "-ffp-contract=off";
  argv[n++] = arena_printf(a, "-I%s", paths->include);
  argv[n++] = (char *)cfile;
  argv[n++] = arena_printf(a, "-L%s", paths->lib);
  if (o->mpi) {
    char *mpi = arena_strdup(a, MACHC_MPI_FLAGS);
    argv[n++] = o->f32 ? "-lmachrt_mpi_f32" : "-lmachrt_mpi_f64";
    for (char *t = strtok(mpi, " \t"); t && n < 58; t = strtok(NULL, " \t"))
      argv[n++] = t;
  } else {
    argv[n++] = o->f32 ? "-lmachrt_f32" : "-lmachrt_f64";
  }
  argv[n++] = "-lz"; /* the runtime reads compressed .npz and .gz data through zlib */
  argv[n++] = "-lm";
  argv[n++] = "-o";
  argv[n++] = (char *)out;
  argv[n] = NULL;
  int st = run(argv);
  if (st != 0) {
    fprintf(stderr, "machc: the C compiler '%s' failed on the generated code (exit %d)%s\n", cc, st,
            st == 127 ? "; set CC to a C compiler" : "");
    return 1;
  }
  return 0;
}

static int emit_output(Arena *a, const Options *o, const Paths *paths, IrMachine *m) {
  IrMachine *dual = dual_machine(a, m);
  if (o->emit == EMIT_DUAL)
    for (int i = 0; i < m->blocks.len; i++)
      if (IR_BLOCK(m, i)->act.kind == ACT_MUL || IR_BLOCK(m, i)->act.kind == ACT_SOFTMAX_JVP) {
        fprintf(stderr, "machc: %s: the dual of a machine with %s gates ('%s') is bilinear in the "
                        "gate and has no .mach form\n", o->input, ir_act_name(IR_BLOCK(m, i)->act.kind),
                IR_BLOCK(m, i)->name);
        return 1;
      }
  if (o->emit == EMIT_DUAL || o->emit == EMIT_MACH) {
    StrBuf sb = {0};
    print_machine(o->emit == EMIT_DUAL ? dual : m, &sb);
    bool ok = o->output ? write_file(o->output, sb.data, sb.len) : fputs(sb.data, stdout) >= 0;
    sb_free(&sb);
    return ok ? 0 : 1;
  }
  if (o->emit == EMIT_DOT) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    dot_write(m, o->dot_dual ? dual : NULL, f);
    fclose(f);
    bool ok = o->output ? write_file(o->output, text, len) : fputs(text, stdout) >= 0;
    free(text);
    return ok ? 0 : 1;
  }
  EmitOptions eo = {.f32 = o->f32, .backward = o->backward, .standalone = o->standalone,
                    .fp_contract_off = o->fp_contract_off, .train = o->train,
                    .loss_xent = o->loss_xent, .optimizer = o->optimizer,
                    .vec_bytes = vector_bytes(o->march), .plain_kernels = o->plain_kernels};
  if (o->train && m->noutputs != 1) {
    fprintf(stderr, "machc: %s: --train needs a machine with one output; %s has %d\n", o->input,
            m->name, m->noutputs);
    return 1;
  }
  const char *cpath, *hpath;
  char tmpdir[] = "/tmp/machc.XXXXXX";
  if (o->emit == EMIT_C) {
    cpath = o->output ? o->output : arena_printf(a, "%s.c", strip_ext(a, o->input, ".mach"));
    hpath = arena_printf(a, "%s.h", arena_strndup(a, cpath, strlen(cpath) - (strlen(cpath) > 2 &&
                                                  strcmp(cpath + strlen(cpath) - 2, ".c") == 0 ? 2 : 0)));
  } else {
    if (!mkdtemp(tmpdir)) {
      fprintf(stderr, "machc: cannot create a temporary directory: %s\n", strerror(errno));
      return 1;
    }
    cpath = arena_printf(a, "%s/model.c", tmpdir);
    hpath = arena_printf(a, "%s/model.h", tmpdir);
    sig_dir = tmpdir, sig_cfile = cpath, sig_hfile = hpath;
  }
  const char *hbase = strrchr(hpath, '/');
  eo.header_name = hbase ? hbase + 1 : hpath;
  const char *cbase = strrchr(cpath, '/');
  eo.c_name = cbase ? cbase + 1 : cpath;
  StrBuf c = {0}, h = {0}, w = {0};
  const char *wpath = NULL;
  if (o->weights) { /* poly.c -> poly_weights.c */
    const char *stem = arena_strndup(a, hpath, strlen(hpath) - 2);
    wpath = arena_printf(a, "%s_weights.c", stem);
    const char *wbase = strrchr(wpath, '/');
    eo.weights_name = wbase ? wbase + 1 : wpath;
  }
  bool ok = !o->weights || bake_weights(m, &eo, o->weights, eo.weights_name, &w);
  if (ok)
    emit_c(m, dual, &eo, &c, &h);
  const char *outs[MAX_OUTPUTS] = {cpath, hpath, wpath}, *texts[MAX_OUTPUTS] = {c.data, h.data, w.data};
  size_t lens[MAX_OUTPUTS] = {c.len, h.len, w.len};
  ok = ok && write_files(wpath ? 3 : 2, outs, texts, lens);
  sb_free(&c);
  sb_free(&h);
  sb_free(&w);
  int status = ok ? 0 : 1;
  if (o->emit == EMIT_BIN) {
    if (ok)
      status = compile_c(a, o, paths, cpath,
                         o->output ? o->output : strip_ext(a, o->input, ".mach"));
    remove(cpath);
    remove(hpath);
    rmdir(tmpdir);
    sig_dir = sig_cfile = sig_hfile = NULL;
  }
  return status;
}

int main(int argc, char **argv) {
  Options o;
  int st = parse_args(argc, argv, &o);
  if (st >= 0)
    return st;
  catch_signals();
  Paths paths;
  find_paths(&paths);
  o.stdlib[o.nstdlib++] = paths.stdlib;
  Diag d;
  diag_init(&d, stderr);
  Arena *a = arena_new();
  int status = 1;
  Program *p = eval_load(a, &d, o.input, o.stdlib, o.nstdlib);
  IrMachine *m = p ? eval_machine(p, o.machine) : NULL;
  if (m && filt_levels(m, &d)) {
    if (o.explain) {
      explain_machine(m, stdout);
      status = 0;
    } else {
      status = emit_output(a, &o, &paths, m);
    }
  }
  if (d.nerrors)
    status = 1;
  arena_free(a);
  diag_fini(&d);
  return status;
}
