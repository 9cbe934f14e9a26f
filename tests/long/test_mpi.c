/* test_mpi.c — data-parallel training over MPI (machc --mpi, runtime/dist.c).
 *
 * With K = 1, 2 and 4 ranks on this host (--oversubscribe), f64, the weights
 * trained by `mpirun -np K BIN train` equal those of the plain binary with
 * the same global batch to 1e-12 relative (only the order of the gradient
 * sum differs), for a dense, a conv and a recurrent machine; eval and
 * forward shard the samples and agree with one process; a bad data file on
 * one rank and a rank killed mid-training end the job with a message and
 * no checkpoint. Skipped, saying why, when mpirun is not installed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "e2e_util.h"

TestSuite(mpi, .fini = e2e_cleanup, .timeout = 240);

static const char *mpirun_path(void) {
  static char found[1024];
  const char *path = getenv("PATH");
  char *copy = strdup(path ? path : "/usr/bin:/bin");
  for (char *d = strtok(copy, ":"); d; d = strtok(NULL, ":")) {
    snprintf(found, sizeof found, "%s/mpirun", d);
    if (access(found, X_OK) == 0) {
      free(copy);
      return found;
    }
  }
  free(copy);
  return NULL;
}

/* Skips the test when there is no mpirun; otherwise sets up the environment
 * Open MPI needs in a container run as root. */
static void need_mpirun(void) {
  if (!mpirun_path())
    cr_skip_test("mpirun not found (install openmpi-bin and libopenmpi-dev: make deps)");
  setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  /* no cross-memory attach in containers: copy through shared memory */
  setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  setenv("MACHC_CFLAGS", "-O1", 1);
}

/* Compiles src in dir into `plain` and `mpi` (machc --mpi), f64. */
static void build(const char *dir, const char *src) {
  e2e_write_text(e2e_path(dir, "model.mach"), src);
  E2eRun r = e2e_runl(dir, 60, e2e_machc(), "model.mach", "-o", "plain", "--dtype", "f64", NULL);
  e2e_check_ok(&r, "machc");
  e2e_run_free(&r);
  r = e2e_runl(dir, 60, e2e_machc(), "--mpi", "model.mach", "-o", "mpi", "--dtype", "f64", NULL);
  e2e_check_ok(&r, "machc --mpi");
  e2e_run_free(&r);
}

/* Runs `mpirun -np K ./mpi ARGS...` (NULL-terminated) in dir. */
static E2eRun mpirun(const char *dir, int k, const char *const *args) {
  const char *argv[64];
  int n = 0;
  argv[n++] = mpirun_path();
  argv[n++] = "--oversubscribe";
  argv[n++] = "-np";
  argv[n++] = e2e_fmt("%d", k);
  argv[n++] = "./mpi";
  for (int i = 0; args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return e2e_run(dir, 120, argv);
}

static E2eRun plain(const char *dir, const char *const *args) {
  const char *argv[64];
  int n = 0;
  argv[n++] = "./plain";
  for (int i = 0; args[i]; i++)
    argv[n++] = args[i];
  argv[n] = NULL;
  return e2e_run(dir, 120, argv);
}

/* Largest difference over the weights entries (not train/...), relative to
 * the largest magnitude of each entry. */
static double weights_reldiff(const char *a_path, const char *b_path) {
  E2eNpz a = e2e_npz_read(a_path), b = e2e_npz_read(b_path);
  double worst = 0;
  int seen = 0;
  for (int i = 0; i < a.n; i++) {
    if (strncmp(a.names[i], "train/", 6) == 0)
      continue;
    const E2eArr *x = &a.arrs[i], *y = e2e_npz_get(&b, a.names[i]);
    double mag = 0, diff = 0;
    cr_assert_eq(x->n, y->n, "%s: sizes differ", a.names[i]);
    for (long j = 0; j < x->n; j++) {
      mag = fmax(mag, fabs(x->d[j]));
      diff = fmax(diff, fabs(x->d[j] - y->d[j]));
    }
    worst = fmax(worst, diff / fmax(mag, 1e-300));
    seen++;
  }
  cr_assert_gt(seen, 0, "%s has no weights entries", a_path);
  e2e_npz_free(&a);
  e2e_npz_free(&b);
  return worst;
}

static void write_data(const char *dir, int nd, const long *xshape, int td, const long *tshape,
                       bool labels, long classes) {
  E2eRng rng = {42};
  E2eArr x = e2e_arr(nd, xshape), t = e2e_arr(td, tshape);
  e2e_fill_uniform(&rng, &x, -1, 1);
  for (long i = 0; i < t.n; i++)
    t.d[i] = labels ? (double)((i * 7 + 3) % classes) : e2e_uniform(&rng, -1, 1);
  e2e_npy_write(e2e_path(dir, "x.npy"), &x, false);
  e2e_npy_write(e2e_path(dir, "t.npy"), &t, false);
  e2e_arr_free(&x);
  e2e_arr_free(&t);
}

static int count(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
    n++;
  return n;
}

/* Trains in dir (x.npy, t.npy written) with the plain binary and with 1, 2
 * and 4 ranks; the weights agree. */
static void check_equivalence(const char *dir, const char *src, const char *loss,
                              const char *optimizer) {
  build(dir, src);
  for (int k = 0; k <= 4; k = k ? 2 * k : 1) {
    const char *args[] = {"train", "--data", "x.npy", "--targets", "t.npy", "--loss", loss,
                          "--optimizer", optimizer, "--lr", "0.05", "--epochs", "3", "--batch",
                          "12", "--seed", "7", "--val-split", "0.1", "--out",
                          e2e_fmt("w%d.npz", k), NULL};
    E2eRun r = k ? mpirun(dir, k, args) : plain(dir, args);
    e2e_check_ok(&r, e2e_fmt("train on %d ranks", k));
    cr_assert_eq(count(r.out, "final:"), 1, "rank 0 alone prints:\n%s", r.out);
    cr_assert_eq(count(r.out, "epoch 3/3"), 1, "rank 0 alone reports:\n%s", r.out);
    e2e_run_free(&r);
    if (k) {
      double d = weights_reldiff(e2e_path(dir, "w0.npz"), e2e_path(dir, e2e_fmt("w%d.npz", k)));
      cr_assert_leq(d, 1e-12, "%d ranks: the weights differ from one process by %g relative", k,
                    d);
    }
  }
}

static const char dense_src[] = "machine dn {\n"
                                "    input x : 3\n"
                                "    block h : 6 = tanh(dense(x) + bias)\n"
                                "    block g : 4 = sigmoid(dense(h) + dense(x))\n"
                                "    output y : 2 = dense(g) + bias\n"
                                "}\n";

Test(mpi, dense_equals_one_process) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {41, 3}, ts[] = {41, 2};
  write_data(dir, 2, xs, 2, ts, false, 0);
  check_equivalence(dir, dense_src, "mse", "adam");
}

Test(mpi, conv_equals_one_process) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {30, 2, 6, 6}, ts[] = {30};
  write_data(dir, 4, xs, 1, ts, true, 3);
  check_equivalence(dir,
                    "machine cv {\n"
                    "    input x : 2 @ [6, 6]\n"
                    "    block h : 3 @ [6, 6] = tanh(conv(x, k = 3, pad = same) + bias)\n"
                    "    block p : 3 @ [3, 3] = avgpool(h, k = 2, stride = 2)\n"
                    "    block g : 3 = global_avgpool(p)\n"
                    "    output y : 3 = dense(g) + bias\n"
                    "}\n",
                    "xent", "momentum");
}

Test(mpi, recurrent_equals_one_process) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {27, 1, 10}, ts[] = {27, 1, 10};
  write_data(dir, 3, xs, 3, ts, false, 0);
  check_equivalence(dir,
                    "machine rc {\n"
                    "    input s : 1 @ [10]\n"
                    "    block r : 3 @ [10] = tanh(conv(s, lags = 0 ..= 1) + conv(r, lags = 1 ..= 2) + bias)\n"
                    "    output y : 1 @ [10] = conv(r, lags = 0 ..= 0) + bias\n"
                    "}\n",
                    "mse", "sgd");
}

/* K ranks x T threads: two ranks of two threads train the weights of two
 * ranks of one thread bit for bit (threads split no sum), and those of one
 * process to 1e-12. The convolution is wide enough for the threads' paths. */
Test(mpi, ranks_times_threads) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {24, 4, 12, 12}, ts[] = {24};
  write_data(dir, 4, xs, 1, ts, true, 3);
  build(dir, "machine ht {\n"
             "    input x : 4 @ [12, 12]\n"
             "    block h : 16 @ [12, 12] = tanh(conv(x, k = 3, pad = same) + bias)\n"
             "    block g : 16 = global_avgpool(h)\n"
             "    output y : 3 = dense(g) + bias\n"
             "}\n");
  for (int t = 0; t <= 2; t++) {
    const char *args[] = {"train", "--data", "x.npy", "--targets", "t.npy", "--loss", "xent",
                          "--lr", "0.05", "--epochs", "2", "--batch", "12", "--seed", "5",
                          "--threads", t ? e2e_fmt("%d", t) : "1", "--out", e2e_fmt("w%d.npz", t),
                          NULL};
    E2eRun r = t ? mpirun(dir, 2, args) : plain(dir, args);
    e2e_check_ok(&r, e2e_fmt("train, %s", t ? e2e_fmt("2 ranks x %d threads", t) : "one process"));
    e2e_run_free(&r);
  }
  cr_assert_eq(weights_reldiff(e2e_path(dir, "w1.npz"), e2e_path(dir, "w2.npz")), 0.0,
               "2 ranks: 2 threads each changed the weights");
  double d = weights_reldiff(e2e_path(dir, "w0.npz"), e2e_path(dir, "w2.npz"));
  cr_assert_leq(d, 1e-12, "2 ranks x 2 threads differ from one process by %g relative", d);
}

/* forward and eval: each rank its shard of the samples, rank 0 the results. */
Test(mpi, forward_and_eval_shard_the_samples) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {23, 3}, ts[] = {23, 2};
  write_data(dir, 2, xs, 2, ts, false, 0);
  build(dir, dense_src);
  const char *init[] = {"init", "--seed", "3", "--out", "w.npz", NULL};
  E2eRun r = plain(dir, init);
  e2e_check_ok(&r, "init");
  e2e_run_free(&r);
  const char *fw1[] = {"forward", "--weights", "w.npz", "--input", "x.npy", "--output", "y1.npy",
                       "--batch", "4", NULL};
  const char *fw3[] = {"forward", "--weights", "w.npz", "--input", "x.npy", "--output", "y3.npy",
                       "--batch", "4", NULL};
  r = plain(dir, fw1);
  e2e_check_ok(&r, "forward");
  e2e_run_free(&r);
  r = mpirun(dir, 3, fw3);
  e2e_check_ok(&r, "mpirun -np 3 forward");
  e2e_run_free(&r);
  /* a forward pass is per sample: the same bits, whoever computes them */
  size_t n1, n3;
  char *y1 = e2e_read_file(e2e_path(dir, "y1.npy"), &n1), *y3 = e2e_read_file(e2e_path(dir, "y3.npy"), &n3);
  cr_assert(y1 && y3 && n1 == n3 && memcmp(y1, y3, n1) == 0, "forward on 3 ranks differs");
  free(y1);
  free(y3);
  const char *ev[] = {"eval", "--weights", "w.npz", "--data", "x.npy", "--targets", "t.npy",
                      "--loss", "mse", "--batch", "5", NULL};
  r = plain(dir, ev);
  e2e_check_ok(&r, "eval");
  double l1 = strtod(r.out + strlen("loss "), NULL);
  cr_assert(strncmp(r.out, "loss ", 5) == 0, "%s", r.out);
  e2e_run_free(&r);
  r = mpirun(dir, 2, ev);
  e2e_check_ok(&r, "mpirun -np 2 eval");
  cr_assert_eq(count(r.out, "loss "), 1, "rank 0 alone prints:\n%s", r.out);
  double l2 = strtod(r.out + strlen("loss "), NULL);
  cr_assert_leq(fabs(l1 - l2), 1e-12 * fabs(l1), "eval: %.17g on one process, %.17g on two", l1,
                l2);
  e2e_run_free(&r);
}

/* A bad data file on one rank (an MPMD job: rank 1 reads another file)
 * stops every rank before training, with the reason, and writes nothing. */
Test(mpi, bad_data_on_one_rank_stops_the_job) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {20, 3}, ts[] = {20, 2};
  write_data(dir, 2, xs, 2, ts, false, 0);
  e2e_write_text(e2e_path(dir, "bad.csv"), "1,2\n3,4\n");
  build(dir, dense_src);
  E2eRun r = e2e_runl(dir, 120, mpirun_path(), "--oversubscribe", "-np", "1", "./mpi", "train",
                      "--data", "x.npy", "--targets", "t.npy", "--loss", "mse", "--epochs", "2",
                      "--out", "w.npz", ":", "-np", "1", "./mpi", "train", "--data", "bad.csv",
                      "--targets", "t.npy", "--loss", "mse", "--epochs", "2", "--out", "w.npz",
                      NULL);
  cr_assert_neq(r.status, 0, "the job succeeded:\n%s", r.err);
  cr_assert(strstr(r.err, "mpi (rank 1): bad.csv: lines have 2 values, expected 3"), "%s", r.err);
  cr_assert(strstr(r.err, "mpi (rank 0): train: rank 1 of 2 failed (its message is above); "
                          "stopping every rank"),
            "%s", r.err);
  cr_assert(access(e2e_path(dir, "w.npz"), F_OK) != 0, "a checkpoint was written");
  e2e_run_free(&r);
}

/* A rank killed mid-training takes the job down; no checkpoint appears. */
Test(mpi, a_dead_rank_ends_the_job) {
  need_mpirun();
  const char *dir = e2e_tmpdir();
  long xs[] = {20, 3}, ts[] = {20, 2};
  write_data(dir, 2, xs, 2, ts, false, 0);
  build(dir, dense_src);
  E2eRun r = e2e_runl(dir, 120, mpirun_path(), "--oversubscribe", "-np", "2", "sh", "-c",
                      "if [ \"$OMPI_COMM_WORLD_RANK\" = 1 ]; then (sleep 1; kill -9 $$) & fi; "
                      "exec ./mpi train --data x.npy --targets t.npy --loss mse --epochs 100000000 "
                      "--quiet --out w.npz",
                      NULL);
  cr_assert(!r.timed_out, "the job did not end");
  cr_assert_neq(r.status, 0, "the job succeeded");
  cr_assert(strstr(r.err, "exited on signal 9"), "%s", r.err);
  cr_assert(access(e2e_path(dir, "w.npz"), F_OK) != 0, "a checkpoint was written");
  e2e_run_free(&r);
}
