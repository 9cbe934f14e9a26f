/* test_train.c — the training workflow of the runtime, against the
 * hand-written models of fake_model.c: checkpoints and exact resume, stop
 * signals, learning-rate schedules, gradient clipping, validation data,
 * early stopping and keep-best.
 *
 * Commands run in-process through mach_main with stdout and stderr sent to
 * files; the signal tests fork a child that trains until it is stopped. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_model.h"
#include "rt.h"

/* ---- helpers ---------------------------------------------------------------- */

static char tmpdir[512];
static char out_text[1 << 16], err_text[1 << 16];

static void remove_tmpdir(void) {
  DIR *d = opendir(tmpdir);
  struct dirent *ent;
  char path[1200];
  while (d && (ent = readdir(d)))
    if (strcmp(ent->d_name, ".") && strcmp(ent->d_name, "..")) {
      snprintf(path, sizeof path, "%s/%s", tmpdir, ent->d_name);
      unlink(path);
    }
  if (d)
    closedir(d);
  rmdir(tmpdir);
}

static void make_tmpdir(void) {
  const char *base = getenv("MACHC_TEST_TMP");
  if (!base || !*base)
    base = "/tmp";
  mkdir(base, 0777);
  snprintf(tmpdir, sizeof tmpdir, "%s/train.XXXXXX", base);
  cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp in %s", base);
}

TestSuite(train_ctl, .init = make_tmpdir, .fini = remove_tmpdir, .timeout = 120);

/* A path in the test's directory; 16 rotating buffers. */
static const char *P(const char *name) {
  static char bufs[16][600];
  static int next;
  char *b = bufs[next++ % 16];
  snprintf(b, 600, "%s/%s", tmpdir, name);
  return b;
}

static void slurp(const char *path, char *dst, size_t cap) {
  FILE *f = fopen(path, "rb");
  size_t n = f ? fread(dst, 1, cap - 1, f) : 0;
  dst[n] = 0;
  if (f)
    fclose(f);
}

/* argv for `fake ARGS...` from a NULL-terminated list. */
static int collect(char **argv, va_list ap) {
  int argc = 0;
  argv[argc++] = "/some/where/fake";
  for (const char *s; (s = va_arg(ap, const char *));)
    argv[argc++] = (char *)s;
  argv[argc] = NULL;
  return argc;
}

/* Runs `fake ARGS...`; stdout and stderr land in out_text and err_text. */
static int run(const struct mach_model *m, ...) {
  char *argv[96];
  int argc, rc, save1, save2, fd1, fd2;
  va_list ap;
  char o[600], e[600];
  snprintf(o, sizeof o, "%s", P(".stdout"));
  snprintf(e, sizeof e, "%s", P(".stderr"));
  va_start(ap, m);
  argc = collect(argv, ap);
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
  save1 = dup(1);
  save2 = dup(2);
  fd1 = open(o, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  fd2 = open(e, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd1, 1);
  dup2(fd2, 2);
  rc = mach_main(argc, argv, m);
  fflush(stdout);
  fflush(stderr);
  dup2(save1, 1);
  dup2(save2, 2);
  close(save1);
  close(save2);
  close(fd1);
  close(fd2);
  slurp(o, out_text, sizeof out_text);
  slurp(e, err_text, sizeof err_text);
  unlink(o);
  unlink(e);
  return rc;
}

#define RUN(m, ...) run(m, __VA_ARGS__, (const char *)NULL)

/* Starts `fake ARGS...` in a child process (stdout, stderr to files). */
static pid_t spawn(const struct mach_model *m, ...) {
  char *argv[96];
  int argc;
  va_list ap;
  pid_t pid;
  va_start(ap, m);
  argc = collect(argv, ap);
  va_end(ap);
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    int fd1 = open(P("child.stdout"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int fd2 = open(P("child.stderr"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd1, 1);
    dup2(fd2, 2);
    _exit(mach_main(argc, argv, m));
  }
  return pid;
}

static void save_npy(const char *path, int rank, const long *shape, const double *data) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(mach_npy_write(f, rank, shape, data), 0);
  fclose(f);
}

static const struct mach_ctx tctx = {.prog = "test", .m = &fake_reg};

/* Entry `name` of an .npz as doubles; returns the element count. */
static long npz_entry(const char *path, const char *name, double *dst, long cap) {
  struct mach_npz z;
  struct mach_array a;
  cr_assert_eq(mach_npz_open(&tctx, path, &z), 0, "open %s", path);
  cr_assert_eq(mach_npz_get(&tctx, &z, name, &a), 0, "%s: entry %s", path, name);
  cr_assert_leq(a.count, cap);
  for (long i = 0; i < a.count; i++)
    dst[i] = mach_array_get(&a, i);
  mach_npz_close(&z);
  return a.count;
}

static int has_entry(const char *path, const char *name) {
  struct mach_npz z;
  struct mach_array a;
  int rc;
  cr_assert_eq(mach_npz_open(&tctx, path, &z), 0, "open %s", path);
  rc = mach_npz_get(&tctx, &z, name, &a);
  mach_npz_close(&z);
  return rc == 0;
}

/* Counter `which` of a checkpoint (four 16-bit digits). */
static uint64_t counter(const char *path, int which) {
  double v[4 * MACH_CK_N];
  uint64_t u = 0;
  cr_assert_eq(npz_entry(path, "train/counters", v, 4 * MACH_CK_N), 4 * MACH_CK_N);
  for (int i = 0; i < 4; i++)
    u |= (uint64_t)v[4 * which + i] << (16 * i);
  return u;
}

/* All 13 parameters of fake_reg from a weights file, in buffer order. */
static void reg_weights(const char *path, double *w) {
  for (int p = 0; p < fake_reg.n_params; p++)
    npz_entry(path, fake_reg.params[p].name, w + fake_reg.params[p].offset,
              fake_reg.params[p].size);
}

static void assert_same_weights(const char *a, const char *b) {
  double wa[13], wb[13];
  reg_weights(a, wa);
  reg_weights(b, wb);
  for (int i = 0; i < 13; i++)
    cr_assert(memcmp(&wa[i], &wb[i], sizeof(double)) == 0, "%s and %s differ at %d: %.17g %.17g",
              a, b, i, wa[i], wb[i]);
}

static double lcg(unsigned long *s) {
  *s = *s * 6364136223846793005ul + 1442695040888963407ul;
  return (double)(*s >> 11) * 0x1.0p-52 - 1.0;
}

/* N samples of 0.7 tanh(0.8 x1 - 0.5 x2) + 0.1 plus noise, in x.npy, t.npy. */
static void regression_data(long n, double noise) {
  double *x = malloc(sizeof(double) * 2 * (size_t)n), *t = malloc(sizeof(double) * (size_t)n);
  long xs[2] = {n, 2}, ts[2] = {n, 1};
  unsigned long seed = 42;
  for (long i = 0; i < n; i++) {
    x[2 * i] = lcg(&seed);
    x[2 * i + 1] = lcg(&seed);
    t[i] = 0.7 * tanh(0.8 * x[2 * i] - 0.5 * x[2 * i + 1]) + 0.1 + noise * lcg(&seed);
  }
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("t.npy"), 2, ts, t);
  free(x);
  free(t);
}

/* Column col (0-based) of the data rows of a CSV log; returns the row count. */
static int log_column(const char *path, int col, double *v, int cap) {
  static char text[1 << 16];
  int rows = 0;
  char *line;
  slurp(path, text, sizeof text);
  line = strchr(text, '\n');
  while (line && line[1] && rows < cap) {
    char *p = line + 1;
    for (int k = 0; k < col; k++)
      p = strchr(p, ',') + 1;
    v[rows++] = *p == ',' || *p == '\n' ? NAN : strtod(p, NULL);
    line = strchr(line + 1, '\n');
  }
  return rows;
}

/* ---- exact resume ------------------------------------------------------------- */

#define REG_OPTS(out, ep)                                                                     \
  "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss", "mse", "--optimizer",     \
      "adam", "--lr", "0.02", "--batch", "3", "--seed", "7", "--val-split", "0.25",         \
      "--epochs", ep, "--out", out

Test(train_ctl, resume_is_bitwise_the_straight_run) {
  regression_data(22, 0.05);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("straight.npz"), "20"), "--log", P("straight.csv"),
                   "--quiet"), 0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("half.npz"), "10"), "--quiet"), 0, "%s", err_text);
  cr_assert_eq(counter(P("half.npz"), MACH_CK_EPOCH), 10);
  cr_assert_eq(counter(P("half.npz"), MACH_CK_STEP), 10 * 6); /* 17 samples, batches of 3 */
  cr_assert(has_entry(P("half.npz"), "train/optimizer"));
  cr_assert(has_entry(P("half.npz"), "train/rng"));
  cr_assert(has_entry(P("half.npz"), "train/perm"));
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("resumed.npz"), "20"), "--resume", P("half.npz"),
                   "--log", P("resumed.csv"), "--quiet"), 0, "%s", err_text);
  cr_assert(strstr(out_text, "(20 epochs, 120 steps, "), "%s", out_text);
  assert_same_weights(P("straight.npz"), P("resumed.npz"));
  /* the log continues: the same 20 losses */
  {
    double a[32], b[32];
    cr_assert_eq(log_column(P("straight.csv"), 2, a, 32), 20);
    cr_assert_eq(log_column(P("resumed.csv"), 2, b, 32), 20);
    for (int i = 0; i < 20; i++)
      cr_assert(a[i] == b[i], "epoch %d: loss %.17g vs %.17g", i + 1, a[i], b[i]);
  }
  /* the checkpoint's weights are ordinary weights: forward reads them */
  cr_assert_eq(RUN(&fake_reg, "forward", "--weights", P("resumed.npz"), "--input", P("x.npy"),
                   "--output", P("y.npy")), 0, "%s", err_text);
  /* nothing left to do, other options, not a checkpoint */
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r2.npz"), "20"), "--resume", P("resumed.npz")), 2);
  cr_assert(strstr(err_text, "is at epoch 20; --epochs 20 leaves nothing to do"), "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r2.npz"), "30"), "--resume", P("half.npz"), "--seed",
                   "8"), 1);
  cr_assert(strstr(err_text, "the checkpoint was written with --seed 7; resume with the same seed"),
            "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r2.npz"), "30"), "--resume", P("half.npz"),
                   "--optimizer", "sgd"), 1);
  cr_assert(strstr(err_text, "the checkpoint was written with --optimizer adam, not sgd"), "%s",
            err_text);
  cr_assert_eq(RUN(&fake_reg, "init", "--out", P("plain.npz")), 0);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r2.npz"), "30"), "--resume", P("plain.npz")), 1);
  cr_assert(strstr(err_text, "not a training checkpoint (no 'train/counters' entry); to start "
                             "from its weights use --init"), "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r2.npz"), "30"), "--resume", P("half.npz"), "--init",
                   P("plain.npz")), 2);
  cr_assert_str_eq(err_text, "fake: train: --init and --resume exclude each other (try 'fake train --help')\n");
}

/* The optimizer updates the entries the machine reads and no other, and
 * gives the same bits however the runtime's passes are cut among threads
 * (fake_cut's par_for: pieces of 1 to 3 entries straddling the runs and the
 * parameters, run last first), for every optimizer, with weight decay. */
Test(train_ctl, optimizer_pieces_change_nothing) {
  static const char *const opts[] = {"adam", "momentum", "sgd"};
  double w0[13], wa[13], wb[13];
  regression_data(22, 0.05);
  cr_assert_eq(RUN(&fake_live, "init", "--seed", "7", "--out", P("init.npz")), 0, "%s", err_text);
  reg_weights(P("init.npz"), w0);
  for (int k = 0; k < 3; k++) {
    cr_assert_eq(RUN(&fake_live, REG_OPTS(P("whole.npz"), "4"), "--optimizer", opts[k],
                     "--weight-decay", "0.01", "--quiet"), 0, "%s", err_text);
    cr_assert_eq(RUN(&fake_cut, REG_OPTS(P("cut.npz"), "4"), "--optimizer", opts[k],
                     "--weight-decay", "0.01", "--quiet"), 0, "%s", err_text);
    reg_weights(P("whole.npz"), wa);
    reg_weights(P("cut.npz"), wb);
    for (int i = 0; i < 13; i++) {
      int live = i != 2 && i != 3 && i != 7; /* W_h_u[2], W_h_u[3], b_h[1] are not read */
      cr_assert(memcmp(&wa[i], &wb[i], sizeof(double)) == 0, "%s: entry %d: %.17g vs %.17g",
                opts[k], i, wa[i], wb[i]);
      cr_assert(live ? wa[i] != w0[i] : wa[i] == w0[i], "%s: entry %d: %.17g from %.17g",
                opts[k], i, wa[i], w0[i]);
    }
  }
}

/* ---- signals ------------------------------------------------------------------ */

static long count_lines(const char *path) {
  FILE *f = fopen(path, "rb");
  long n = 0;
  for (int ch; f && (ch = fgetc(f)) != EOF;)
    n += ch == '\n';
  if (f)
    fclose(f);
  return n;
}

/* Trains "forever", stops it with sig once the log shows two epochs, and
 * returns the exit status. */
static int train_and_stop(int sig, const char *out) {
  int status;
  pid_t pid = spawn(&fake_reg, REG_OPTS(out, "100000000"), "--batch", "1", "--log",
                    P("run.csv"), "--quiet", (const char *)NULL);
  for (int i = 0; i < 3000 && count_lines(P("run.csv")) < 3; i++)
    usleep(10000);
  if (count_lines(P("run.csv")) < 3) {
    char err[4096];
    int alive = waitpid(pid, &status, WNOHANG);
    kill(pid, SIGKILL);
    if (!alive) waitpid(pid, &status, 0);
    slurp(P("child.stderr"), err, sizeof err);
    cr_assert_fail("no progress in the log after 30 s; status %d stderr: %s lines %ld", status, err, count_lines(P("run.csv")));
  }
  kill(pid, sig);
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status), "the run did not exit: status %d", status);
  return WEXITSTATUS(status);
}

Test(train_ctl, sigterm_checkpoints_and_resumes_exactly) {
  char err[4096];
  long ep, steps, logged;
  regression_data(22, 0.05);
  cr_assert_eq(train_and_stop(SIGTERM, P("w.npz")), 143);
  slurp(P("child.stderr"), err, sizeof err);
  cr_assert(strncmp(err, "fake: SIGTERM: stopped ", 23) == 0, "%s", err);
  cr_assert(strstr(err, "(continue with --resume "), "%s", err);
  ep = (long)counter(P("w.npz"), MACH_CK_EPOCH);
  steps = (long)counter(P("w.npz"), MACH_CK_STEP);
  cr_assert_geq(ep, 2);
  cr_assert_eq(steps, ep * 17 + (long)counter(P("w.npz"), MACH_CK_POS));
  logged = count_lines(P("run.csv")) - 1;
  cr_assert_eq(logged, ep, "the log has %ld epochs, the checkpoint %ld", logged, ep);
  /* resumed to epoch ep + 2, it is the run that never stopped */
  {
    char e2[32];
    snprintf(e2, sizeof e2, "%ld", ep + 2);
    cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("resumed.npz"), e2), "--batch", "1", "--resume",
                     P("w.npz"), "--quiet"), 0, "%s", err_text);
    cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("straight.npz"), e2), "--batch", "1", "--quiet"), 0,
                 "%s", err_text);
    assert_same_weights(P("straight.npz"), P("resumed.npz"));
  }
}

Test(train_ctl, sigint_exits_130_and_stale_temporaries_go) {
  char err[4096];
  /* a temporary of a process that is gone, and one of a live process (init) */
  FILE *f = fopen(P("w.npz.tmp.999999999"), "w");
  cr_assert_not_null(f);
  fclose(f);
  f = fopen(P("w.npz.tmp.1"), "w");
  fclose(f);
  regression_data(22, 0.05);
  cr_assert_eq(train_and_stop(SIGINT, P("w.npz")), 130);
  slurp(P("child.stderr"), err, sizeof err);
  cr_assert(strncmp(err, "fake: SIGINT: stopped ", 22) == 0, "%s", err);
  cr_assert_eq(access(P("w.npz.tmp.999999999"), F_OK), -1, "a stale temporary was left");
  cr_assert_eq(access(P("w.npz.tmp.1"), F_OK), 0, "a live process's temporary was removed");
  cr_assert_geq((long)counter(P("w.npz"), MACH_CK_EPOCH), 2);
}

/* ---- schedules -------------------------------------------------------------------- */

Test(train_ctl, schedule_formulas) {
  struct mach_sched s = {MACH_SCHED_STEP, 2, 0.5, 4, 40, 0};
  for (long t = 0; t < 40; t++)
    cr_assert_eq(mach_sched_lr(&s, 0.1, t), 0.1 * pow(0.5, (double)(t / 8)));
  s.kind = MACH_SCHED_COSINE;
  s.warmup = 8;
  for (long t = 0; t < 40; t++) {
    double want = t < 8 ? 0.1 * (double)(t + 1) / 8
                        : 0.1 * 0.5 * (1 + cos(M_PI * (double)(t - 8) / 32));
    cr_assert(fabs(mach_sched_lr(&s, 0.1, t) - want) < 1e-15, "t %ld: %g vs %g", t,
              mach_sched_lr(&s, 0.1, t), want);
  }
  s.kind = MACH_SCHED_CONSTANT;
  cr_assert_eq(mach_sched_lr(&s, 0.1, 3), 0.1 * 4 / 8);
  cr_assert_eq(mach_sched_lr(&s, 0.1, 8), 0.1);
}

/* fake_two with a = 1 and target p = 0: the loss of a full-batch step is k^2
 * and SGD gives k <- k (1 - 2 lr). The logged losses give every step's
 * rate, which must follow the schedule. */
static void check_schedule(const char *sched, const char *warmup, double (*want)(long)) {
  const double a[4] = {1, 1, 1, 1}, b[8] = {0}, t[4] = {0};
  long as[1] = {4}, bs[2] = {4, 2};
  char a_arg[700], b_arg[700];
  double loss[64], lr[64];
  int n;
  save_npy(P("a.npy"), 1, as, a);
  save_npy(P("b.npy"), 2, bs, b);
  save_npy(P("t.npy"), 1, as, t);
  snprintf(a_arg, sizeof a_arg, "a=%s", P("a.npy"));
  snprintf(b_arg, sizeof b_arg, "b=%s", P("b.npy"));
  cr_assert_eq(RUN(&fake_two, "train", "--data", a_arg, "--data", b_arg, "--targets", P("t.npy"),
                   "--target-output", "p", "--loss", "mse", "--optimizer", "sgd", "--lr", "0.2",
                   "--epochs", "12", "--batch", "4", "--lr-schedule", sched, "--warmup", warmup,
                   "--log", P("s.csv"), "--out", P("s.npz"), "--quiet"), 0, "%s", err_text);
  cr_assert_eq(log_column(P("s.csv"), 2, loss, 64), 12);
  n = log_column(P("s.csv"), 6, lr, 64);
  cr_assert_eq(n, 12);
  for (long e = 0; e < 12; e++) {
    cr_assert(fabs(lr[e] - want(e)) < 1e-8, "%s: logged lr of step %ld: %.9g, want %.9g", sched,
              e, lr[e], want(e));
    if (e + 1 < 12) { /* the rate the step really used */
      double used = (1 - sqrt(loss[e + 1] / loss[e])) / 2;
      cr_assert(fabs(used - want(e)) < 1e-7, "%s: step %ld used lr %.9g, want %.9g", sched, e,
                used, want(e));
    }
  }
}

static double lr_step(long t) { return 0.2 * pow(0.5, (double)(t / 3)); }
static double lr_cos(long t) {
  return t < 2 ? 0.2 * (double)(t + 1) / 2 : 0.2 * 0.5 * (1 + cos(M_PI * (double)(t - 2) / 10));
}
static double lr_const(long t) { return t < 4 ? 0.2 * (double)(t + 1) / 4 : 0.2; }

Test(train_ctl, lr_schedules_per_step) {
  check_schedule("step:3:0.5", "0", lr_step);
  check_schedule("cosine", "2", lr_cos);
  check_schedule("constant", "4", lr_const);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", "x", "--targets", "t", "--loss", "mse",
                   "--epochs", "1", "--out", "w", "--lr-schedule", "step:0:0.5"), 2);
  cr_assert_str_eq(err_text, "fake: train: --lr-schedule: 'step:0:0.5' is not constant, cosine or "
                             "step:E:G with E >= 1 and G > 0 (try 'fake train --help')\n");
}

/* ---- clipping ---------------------------------------------------------------------- */

/* q = b + c with b = 0 and targets (3, 4): the gradient of c at 0 is
 * (-3, -4), norm 5; clipped to norm 1 it is (-0.6, -0.8). */
Test(train_ctl, clip_norm_by_hand) {
  const double a[2] = {1, 1}, b[4] = {0}, t[4] = {3, 4, 3, 4};
  long as[1] = {2}, bs[2] = {2, 2};
  char a_arg[700], b_arg[700];
  double c[2];
  save_npy(P("a.npy"), 1, as, a);
  save_npy(P("b.npy"), 2, bs, b);
  save_npy(P("t.npy"), 2, bs, t);
  snprintf(a_arg, sizeof a_arg, "a=%s", P("a.npy"));
  snprintf(b_arg, sizeof b_arg, "b=%s", P("b.npy"));
  cr_assert_eq(RUN(&fake_two, "train", "--data", a_arg, "--data", b_arg, "--targets", P("t.npy"),
                   "--target-output", "q", "--loss", "mse", "--optimizer", "sgd", "--lr", "1",
                   "--epochs", "1", "--batch", "2", "--clip-norm", "1", "--out", P("c.npz")),
               0, "%s", err_text);
  npz_entry(P("c.npz"), "c", c, 2);
  cr_assert(fabs(c[0] - 0.6) < 1e-15 && fabs(c[1] - 0.8) < 1e-15, "c = %.17g %.17g", c[0], c[1]);
  /* a norm below the bound is left alone */
  cr_assert_eq(RUN(&fake_two, "train", "--data", a_arg, "--data", b_arg, "--targets", P("t.npy"),
                   "--target-output", "q", "--loss", "mse", "--optimizer", "sgd", "--lr", "1",
                   "--epochs", "1", "--batch", "2", "--clip-norm", "5.5", "--out", P("c.npz")),
               0, "%s", err_text);
  npz_entry(P("c.npz"), "c", c, 2);
  cr_assert(c[0] == 3 && c[1] == 4, "c = %.17g %.17g", c[0], c[1]);
}

/* ---- validation, early stopping, keep-best -------------------------------------------- */

Test(train_ctl, val_data_file_equals_the_tail_split) {
  /* the last 6 of 24 samples as a separate file give the same run as
   * --val-split 0.25 --val-split-tail */
  double x[48], t[24];
  long xs[2] = {18, 2}, ts[2] = {18, 1}, vxs[2] = {6, 2}, vts[2] = {6, 1};
  unsigned long seed = 3;
  double va[64], vb[64];
  for (int i = 0; i < 24; i++) {
    x[2 * i] = lcg(&seed);
    x[2 * i + 1] = lcg(&seed);
    t[i] = sin(x[2 * i]) - x[2 * i + 1];
  }
  save_npy(P("x.npy"), 2, xs, x);
  save_npy(P("t.npy"), 2, ts, t);
  save_npy(P("vx.npy"), 2, vxs, x + 36);
  save_npy(P("vt.npy"), 2, vts, t + 18);
  xs[0] = ts[0] = 24;
  save_npy(P("ax.npy"), 2, xs, x);
  save_npy(P("at.npy"), 2, ts, t);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--epochs", "8", "--batch", "4", "--lr", "0.05", "--val-data",
                   P("vx.npy"), "--val-targets", P("vt.npy"), "--log", P("a.csv"), "--out",
                   P("a.npz")), 0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("ax.npy"), "--targets", P("at.npy"), "--loss",
                   "mse", "--epochs", "8", "--batch", "4", "--lr", "0.05", "--val-split", "0.25",
                   "--val-split-tail", "--log", P("b.csv"), "--out", P("b.npz")), 0, "%s",
               err_text);
  assert_same_weights(P("a.npz"), P("b.npz"));
  cr_assert_eq(log_column(P("a.csv"), 3, va, 64), 8);
  cr_assert_eq(log_column(P("b.csv"), 3, vb, 64), 8);
  for (int i = 0; i < 8; i++)
    cr_assert(va[i] == vb[i] && isfinite(va[i]));
  /* the shuffled split holds out other samples: other validation losses */
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("ax.npy"), "--targets", P("at.npy"), "--loss",
                   "mse", "--epochs", "8", "--batch", "4", "--lr", "0.05", "--val-split", "0.25",
                   "--log", P("c.csv"), "--out", P("c.npz")), 0, "%s", err_text);
  cr_assert_eq(log_column(P("c.csv"), 3, vb, 64), 8);
  cr_assert(va[0] != vb[0]);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--epochs", "8", "--val-data", P("vx.npy"), "--out", P("a.npz")), 2);
  cr_assert_str_eq(err_text, "fake: train: --val-data and --val-targets go together (try 'fake train --help')\n");
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--epochs", "8", "--patience", "2", "--out", P("a.npz")), 2);
  cr_assert_str_eq(err_text, "fake: train: --patience needs validation data: --val-split F or --val-data X --val-targets T\n");
}

/* A large learning rate on noisy data: the validation loss bottoms out
 * early. Early stopping must stop exactly `patience` epochs after the best
 * epoch, and --keep-best must write that epoch's weights. */
Test(train_ctl, early_stopping_and_keep_best) {
  double vl[512];
  int n, best = 0;
  char want[128];
  regression_data(40, 0.4);
  cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                   "mse", "--optimizer", "adam", "--lr", "0.05", "--batch", "4", "--epochs", "400",
                   "--val-split", "0.3", "--patience", "5", "--keep-best", "--log", P("l.csv"),
                   "--out", P("best.npz"), "--quiet"), 0, "%s", err_text);
  n = log_column(P("l.csv"), 3, vl, 512);
  cr_assert_lt(n, 400, "did not stop early");
  for (int i = 1; i < n; i++)
    if (vl[i] < vl[best])
      best = i;
  cr_assert_eq(n, best + 1 + 5, "best epoch %d, stopped after %d", best + 1, n);
  snprintf(want, sizeof want, "; stopped early: no better val_loss in 5 epochs; kept epoch %d ",
           best + 1);
  cr_assert(strstr(out_text, want), "%s", out_text);
  { /* and gives the kept epoch's validation loss */
    const char *k = strstr(out_text, want) + strlen(want);
    cr_assert(strncmp(k, "(val_loss ", 10) == 0, "%s", out_text);
    cr_assert(fabs(strtod(k + 10, NULL) - vl[best]) <= 1e-5 * vl[best], "%s", out_text);
  }
  /* the kept weights are the best epoch's: the same run cut at that epoch */
  {
    char e[16];
    snprintf(e, sizeof e, "%d", best + 1);
    cr_assert_eq(RUN(&fake_reg, "train", "--data", P("x.npy"), "--targets", P("t.npy"), "--loss",
                     "mse", "--optimizer", "adam", "--lr", "0.05", "--batch", "4", "--epochs", e,
                     "--val-split", "0.3", "--out", P("cut.npz"), "--quiet"), 0, "%s", err_text);
    assert_same_weights(P("best.npz"), P("cut.npz"));
    cr_assert(has_entry(P("best.npz"), "train/last"));
  }
}

/* With --keep-best the weights entries hold the best epoch and train/last
 * the current parameters: a resumed run still equals the straight one. */
Test(train_ctl, keep_best_resumes_exactly) {
  double a[13], b[13];
  regression_data(30, 0.4);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("s.npz"), "16"), "--lr", "0.1", "--keep-best", "--quiet"),
               0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("h.npz"), "8"), "--lr", "0.1", "--keep-best", "--quiet"),
               0, "%s", err_text);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("r.npz"), "16"), "--lr", "0.1", "--keep-best", "--quiet",
                   "--resume", P("h.npz")), 0, "%s", err_text);
  assert_same_weights(P("s.npz"), P("r.npz"));
  cr_assert_eq(npz_entry(P("s.npz"), "train/last", a, 13), 13);
  cr_assert_eq(npz_entry(P("r.npz"), "train/last", b, 13), 13);
  cr_assert_eq(memcmp(a, b, sizeof a), 0);
  cr_assert_eq(counter(P("s.npz"), MACH_CK_BEST_EPOCH), counter(P("r.npz"), MACH_CK_BEST_EPOCH));
  /* a checkpoint without train/last cannot give back its best epoch */
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("p.npz"), "8"), "--lr", "0.1", "--quiet"), 0);
  cr_assert_eq(RUN(&fake_reg, REG_OPTS(P("q.npz"), "16"), "--lr", "0.1", "--keep-best",
                   "--resume", P("p.npz")), 1);
  cr_assert(strstr(err_text, "written without --keep-best; its best epoch's weights are not in it"),
            "%s", err_text);
}
