/* dist.c — data-parallel training and inference over MPI.
 *
 * Every rank runs the same command on the same files: it loads the data,
 * computes its contiguous shard of each global minibatch (mach_dist_shard),
 * and the shards' parameter gradients are summed with allreduce, so every
 * rank holds the same summed gradient and takes the same optimizer step.
 * Rank 0 alone writes checkpoints, logs and results.
 *
 * Compiled twice (see rt.h): without MACH_MPI everything below is the
 * one-process case, so the runtime of a plain binary has no MPI in it.
 *
 * MPI keeps its own global state; this file keeps none (the rank and the
 * number of ranks live in the mach_ctx). Communication errors stay fatal
 * (MPI_ERRORS_ARE_FATAL, the default): a rank that dies takes the job down
 * through mpirun, before rank 0 can write anything half-done. */
#include <stdlib.h>
#include <string.h>

#include "rt.h"

#ifdef MACH_MPI
#include <limits.h>
#include <mpi.h>

#ifdef MACH_F32
#define REAL_MPI MPI_FLOAT
#else
#define REAL_MPI MPI_DOUBLE
#endif

/* Scalars per allreduce bucket: 4 MiB of f64. Large enough that latency is
 * paid rarely, small enough that several are in flight at once. */
#define BUCKET (1L << 19)
#define MAX_BUCKETS 4096

int mach_dist_init(struct mach_ctx *c, int *argc, char ***argv) {
  int provided;
  if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    mach_err(c, "MPI_Init failed");
    return 1;
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
  MPI_Comm_size(MPI_COMM_WORLD, &c->nranks);
  return 0;
}

int mach_dist_end(const struct mach_ctx *c, int rc) {
  MPI_Finalize();
  return rc;
}

int mach_dist_agree(const struct mach_ctx *c, const char *cmd, int rc) {
  struct {
    int v, rank;
  } in = {rc, c->rank}, out;
  if (c->nranks <= 1)
    return rc;
  MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD);
  if (out.v != 0 && rc == 0 && c->rank == 0)
    mach_err(c, "%s: rank %d of %d failed (its message is above); stopping every rank", cmd,
             out.rank, c->nranks);
  return out.v;
}

void mach_dist_sum(const struct mach_ctx *c, mach_real *x, long n) {
  MPI_Request req[MAX_BUCKETS];
  long bucket = BUCKET;
  int k = 0;
  if (c->nranks <= 1 || n <= 0)
    return;
  while ((n + bucket - 1) / bucket > MAX_BUCKETS)
    bucket *= 2;
  for (long s = 0; s < n; s += bucket, k++)
    MPI_Iallreduce(MPI_IN_PLACE, x + s, (int)(n - s < bucket ? n - s : bucket), REAL_MPI, MPI_SUM,
                   MPI_COMM_WORLD, &req[k]);
  MPI_Waitall(k, req, MPI_STATUSES_IGNORE);
}

struct mach_allreduce {
  mach_real *x;
  long n, bucket;
  int nb;
  long *left;        /* [nb] scalars of each bucket not yet reported final */
  MPI_Request *req;  /* [nb] MPI_REQUEST_NULL until the bucket starts */
};

struct mach_allreduce *mach_allreduce_new(const struct mach_ctx *c, mach_real *x, long n) {
  struct mach_allreduce *s;
  long bucket = BUCKET;
  if (c->nranks <= 1 || n <= 0)
    return NULL;
  while ((n + bucket - 1) / bucket > MAX_BUCKETS)
    bucket *= 2;
  s = calloc(1, sizeof *s);
  if (!s)
    return NULL;
  s->x = x, s->n = n, s->bucket = bucket, s->nb = (int)((n + bucket - 1) / bucket);
  s->left = calloc((size_t)s->nb, sizeof *s->left);
  s->req = calloc((size_t)s->nb, sizeof *s->req);
  if (!s->left || !s->req) {
    mach_allreduce_free(s);
    return NULL;
  }
  return s;
}

void mach_allreduce_begin(struct mach_allreduce *s) {
  for (int k = 0; s && k < s->nb; k++) {
    s->left[k] = (k + 1 < s->nb ? (k + 1) * s->bucket : s->n) - k * s->bucket;
    s->req[k] = MPI_REQUEST_NULL;
  }
}

static void start_bucket(struct mach_allreduce *s, int k) {
  long lo = k * s->bucket, hi = lo + s->bucket < s->n ? lo + s->bucket : s->n;
  s->left[k] = -1; /* started */
  MPI_Iallreduce(MPI_IN_PLACE, s->x + lo, (int)(hi - lo), REAL_MPI, MPI_SUM, MPI_COMM_WORLD,
                 &s->req[k]);
}

void mach_allreduce_ready(void *ctx, long lo, long hi) {
  struct mach_allreduce *s = ctx;
  int done;
  for (long k = lo / s->bucket; lo < hi && k < s->nb; k++) {
    long b0 = k * s->bucket, b1 = b0 + s->bucket;
    s->left[k] -= (hi < b1 ? hi : b1) - (lo > b0 ? lo : b0);
    if (s->left[k] == 0)
      start_bucket(s, (int)k);
  }
  MPI_Testall(s->nb, s->req, &done, MPI_STATUSES_IGNORE); /* lets the started ones progress */
}

void mach_allreduce_end(struct mach_allreduce *s) {
  for (int k = 0; k < s->nb; k++)
    if (s->left[k] >= 0)
      start_bucket(s, k);
  MPI_Waitall(s->nb, s->req, MPI_STATUSES_IGNORE);
}

void mach_allreduce_free(struct mach_allreduce *s) {
  if (!s)
    return;
  free(s->left);
  free(s->req);
  free(s);
}

void mach_dist_sum_doubles(const struct mach_ctx *c, double *x, int n) {
  if (c->nranks > 1)
    MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int mach_dist_max_int(const struct mach_ctx *c, int v) {
  if (c->nranks > 1)
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  return v;
}

/* FNV-1a of the bytes: a divergence check, not a security measure. */
static unsigned long long hash(const mach_real *x, long n) {
  const unsigned char *p = (const unsigned char *)x;
  unsigned long long h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < (size_t)n * sizeof *x; i++)
    h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

int mach_dist_same(const struct mach_ctx *c, const mach_real *x, long n) {
  unsigned long long h = hash(x, n), lo = h, hi = h;
  if (c->nranks <= 1)
    return 1;
  MPI_Allreduce(&h, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(&h, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

void mach_dist_gather_rows(const struct mach_ctx *c, mach_real *x, long n, long size) {
  MPI_Datatype row;
  int *counts, *displs;
  long lo, hi;
  if (c->nranks <= 1 || size <= 0)
    return;
  /* counts and displacements are ints in rows: n < INT_MAX samples */
  counts = calloc(2 * (size_t)c->nranks, sizeof *counts);
  if (!counts || n > INT_MAX || size > INT_MAX) {
    mach_err(c, "out of memory, or more than %d samples to gather", INT_MAX);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  displs = counts + c->nranks;
  for (int r = 0; r < c->nranks; r++) {
    struct mach_ctx rc = *c;
    rc.rank = r;
    mach_dist_shard(&rc, 0, n, &lo, &hi);
    counts[r] = (int)(hi - lo);
    displs[r] = (int)lo;
  }
  MPI_Type_contiguous((int)size, REAL_MPI, &row);
  MPI_Type_commit(&row);
  if (c->rank == 0)
    MPI_Gatherv(MPI_IN_PLACE, 0, row, x, counts, displs, row, 0, MPI_COMM_WORLD);
  else
    MPI_Gatherv(x + displs[c->rank] * size, counts[c->rank], row, NULL, NULL, NULL, row, 0,
                MPI_COMM_WORLD);
  MPI_Type_free(&row);
  free(counts);
}

#else /* one process */

int mach_dist_init(struct mach_ctx *c, int *argc, char ***argv) {
  c->rank = 0;
  c->nranks = 1;
  return 0;
}

int mach_dist_end(const struct mach_ctx *c, int rc) {
  return rc;
}

int mach_dist_agree(const struct mach_ctx *c, const char *cmd, int rc) {
  return rc;
}

void mach_dist_sum(const struct mach_ctx *c, mach_real *x, long n) {
}

void mach_dist_sum_doubles(const struct mach_ctx *c, double *x, int n) {
}

struct mach_allreduce *mach_allreduce_new(const struct mach_ctx *c, mach_real *x, long n) {
  return NULL;
}
void mach_allreduce_begin(struct mach_allreduce *s) {}
void mach_allreduce_ready(void *s, long lo, long hi) {}
void mach_allreduce_end(struct mach_allreduce *s) {}
void mach_allreduce_free(struct mach_allreduce *s) {}

int mach_dist_max_int(const struct mach_ctx *c, int v) {
  return v;
}

void mach_dist_gather_rows(const struct mach_ctx *c, mach_real *x, long n, long size) {}

int mach_dist_same(const struct mach_ctx *c, const mach_real *x, long n) { return 1; }

#endif

int mach_dist_root(const struct mach_ctx *c) { return c->nranks <= 1 || c->rank == 0; }

void mach_dist_shard(const struct mach_ctx *c, long lo, long hi, long *mlo, long *mhi) {
  long n = hi - lo, k = c->nranks > 1 ? c->nranks : 1, r = c->nranks > 1 ? c->rank : 0;
  *mlo = lo + n / k * r + (r < n % k ? r : n % k);
  *mhi = *mlo + n / k + (r < n % k ? 1 : 0);
}
