/* rt.h — the runtime's internal header: one section per file, each declaring
 * that file's API. Nothing here is part of the contract with generated code
 * (that is machrt.h); names still carry the mach_ prefix because the runtime
 * is linked into the user's binary and must not collide with it.
 *
 * Error policy: functions that can fail print ONE line to stderr,
 * `prog: what: why`, and return a non-zero exit status (1 bad data, 2 usage);
 * callers just pass the status up. Nothing calls exit().
 */
#ifndef MACH_RT_H
#define MACH_RT_H

#include <stdint.h>
#include <stdio.h>

#include "machrt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
/* .npy data and zip headers are little-endian and we memcpy them. */
#error "the machc runtime assumes a little-endian host"
#endif

/* Everything a command needs to know about its invocation. */
struct mach_ctx {
  const char *prog;              /* argv[0] basename: prefix of every message */
  const struct mach_model *m;
  int rank, nranks;              /* this process among the MPI ranks (dist.c); nranks 0 or 1: alone */
};

/* ---- util.c: messages, memory, files -------------------------------------- */

/* Prints `prog: <fmt>` and a newline to stderr. */
void mach_err(const struct mach_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* calloc that reports `prog: out of memory` on failure. */
void *mach_alloc(const struct mach_ctx *c, size_t count, size_t size);
/* Reads a whole file ("-" = stdin). Returns 0 or 1 (message printed). */
int mach_read_file(const struct mach_ctx *c, const char *path,
                   unsigned char **buf, size_t *len);
/* Formats a shape as "[2, 3]" into buf (always terminated). */
void mach_shape_str(char *buf, size_t cap, int rank, const long *shape);
double mach_now(void); /* monotonic seconds */
/* forward and eval refuse NaN or infinite weights and inputs (unless
 * --allow-nonfinite): 0, or 1 after a message naming the first one. v holds
 * n samples of size scalars, the first of them sample number `first`. */
int mach_check_finite_params(const struct mach_ctx *c, const char *path, const mach_real *p);
int mach_check_finite_samples(const struct mach_ctx *c, const char *what, const char *block,
                              const mach_real *v, long first, long n, long size);

/* An output file written atomically: data goes to `path.tmp.<pid>`, which is
 * fsync'ed and renamed over `path` by mach_out_close, so a crash or a full
 * disk never leaves a half-written file under the real name. "-" is stdout.
 * Opening also removes `path.tmp.PID` files of processes that are gone. */
struct mach_out {
  FILE *f;
  const char *path;
  char *tmp; /* NULL for stdout */
};
int mach_out_open(const struct mach_ctx *c, const char *path, struct mach_out *o);
/* Flushes, fsyncs and renames; on any failure removes the temporary. */
int mach_out_close(const struct mach_ctx *c, struct mach_out *o);
void mach_out_abort(struct mach_out *o);
/* All or nothing: after mach_out_defer, mach_out_close writes and syncs the
 * temporary but leaves the rename to mach_out_finish(c, rc), which renames
 * every deferred file when rc is 0 and removes them all otherwise (so a
 * command that fails late leaves no output of its own behind, and an
 * existing file is replaced only when the whole command succeeded).
 * Returns rc, or 1 when a rename failed. Temporaries are also removed when
 * SIGINT, SIGTERM, SIGHUP or SIGPIPE (left at their default) kill the run. */
void mach_out_defer(void);
int mach_out_finish(const struct mach_ctx *c, int rc);

/* ---- npy.c: NumPy .npy format ------------------------------------------- */

enum mach_dtype {
  MACH_DT_UNKNOWN, /* descr not understood; only its text is kept */
  MACH_DT_F2, MACH_DT_F4, MACH_DT_F8, /* IEEE half, single, double */
  MACH_DT_B1,                         /* bool, one byte */
  MACH_DT_I1, MACH_DT_I2, MACH_DT_I4, MACH_DT_I8,
  MACH_DT_U1, MACH_DT_U2, MACH_DT_U4, MACH_DT_U8,
};

#define MACH_NPY_MAX_RANK 32 /* NumPy's own limit */

/* A parsed array, always little-endian and in C order by the time callers
 * see it. data points into the buffer that was parsed (possibly unaligned,
 * so elements are read with memcpy) or into `owned`. */
struct mach_array {
  enum mach_dtype dtype;
  char descr[16];            /* as written in the header, for messages */
  int rank;                  /* 0 = scalar */
  long shape[MACH_NPY_MAX_RANK];
  long count;                /* product of the shape */
  const unsigned char *data; /* count * itemsize bytes, little-endian, C order */
  void *owned;               /* freed by mach_array_free: a converted copy (CSV
                                values, a Fortran-order or big-endian array) */
  void *backing;             /* freed too: the inflated bytes data points into */
};

/* Parses a whole .npy image. Fortran-order and big-endian arrays are copied
 * into `owned` in C order, little-endian. On error writes the reason to why
 * and returns -1. */
int mach_npy_parse(const unsigned char *buf, size_t len, struct mach_array *a,
                   char *why, size_t whylen);
/* Where a .npy file's data lies and how it is laid out. */
struct mach_npy_layout {
  size_t data_off; /* the data's first byte in the file */
  int fortran;     /* column-major */
  int big;         /* big-endian items of more than one byte */
};
/* Parses the header at the start of a .npy file: buf holds the file's first
 * len bytes (at least the header), file_len is the whole file's length (the
 * data must fit in it). Sets a (data NULL) and l; -1 and why on error, with
 * the messages of mach_npy_parse. */
int mach_npy_parse_header(const unsigned char *buf, size_t len, size_t file_len,
                          struct mach_array *a, struct mach_npy_layout *l, char *why,
                          size_t whylen);
/* Rewrites a->data as a C-order little-endian copy in a->owned: from Fortran
 * order (column-major) and/or big-endian bytes. Returns 0, or -1 when out of
 * memory. */
int mach_array_normalize(struct mach_array *a, int fortran, int big_endian);
size_t mach_dtype_size(enum mach_dtype t);
int mach_dtype_is_float(enum mach_dtype t);
double mach_array_get(const struct mach_array *a, long i);
void mach_array_to_real(const struct mach_array *a, mach_real *dst);
void mach_array_free(struct mach_array *a);
/* The .npy header (magic, version 1.0, dict padded to 64 bytes) for an array
 * of mach_real. Returns its length; cap must be >= 256 + 24 * rank. */
size_t mach_npy_header(char *buf, size_t cap, int rank, const long *shape);
/* Writes header and data; returns 0 or -1 (errno set). */
int mach_npy_write(FILE *f, int rank, const long *shape, const mach_real *data);
/* The header alone, for data written after it in pieces. 0 or -1. */
int mach_npy_write_header(FILE *f, int rank, const long *shape);

/* ---- npz.c: zip archives of .npy members -------------------------------- */

uint32_t mach_crc32(uint32_t crc, const void *data, size_t len);

struct mach_npz_member {
  char *name;               /* without ".npy" */
  const unsigned char *data;
  size_t size;              /* bytes in the archive */
  size_t usize;             /* bytes once inflated (= size when stored) */
  uint32_t crc;
  int method;               /* 0 stored, 8 deflate, ... */
};

struct mach_npz {
  const char *path;
  unsigned char *buf;
  size_t len;
  int n;
  struct mach_npz_member *mem;
};

int mach_npz_open(const struct mach_ctx *c, const char *path, struct mach_npz *z);
/* The same on a file already read; takes buf (freed by mach_npz_close, also
 * on failure). */
int mach_npz_open_buf(const struct mach_ctx *c, const char *path, unsigned char *buf,
                      size_t len, struct mach_npz *z);
int mach_npz_is_zip(const unsigned char *buf, size_t len); /* starts like a zip */
void mach_npz_close(struct mach_npz *z);
/* Returns 0 and fills a (free it with mach_array_free: an inflated entry
 * lives in a->backing), -1 when there is no such entry (nothing printed), 1
 * when the entry is bad (message printed). */
int mach_npz_get(const struct mach_ctx *c, const struct mach_npz *z,
                 const char *name, struct mach_array *a);

/* One entry to write: a real array of the model's dtype. */
struct mach_npz_entry {
  char name[256];
  int rank;
  long shape[MACH_MAX_RANK + 1];
  const mach_real *data;
};
/* Writes a complete archive to path atomically. Returns 0 or 1. */
int mach_npz_save(const struct mach_ctx *c, const char *path,
                  const struct mach_npz_entry *e, int n);
/* Fills e with "prefix + block name" and shape [n, block shape]. */
void mach_npz_block_entry(struct mach_npz_entry *e, const char *prefix,
                          const struct mach_block *b, long n, const mach_real *data);

/* ---- inflate.c: zlib ---------------------------------------------------- */

int mach_is_gzip(const unsigned char *buf, size_t len); /* gzip magic 1f 8b */
/* Inflates raw deflate data (a zip member) into exactly outlen bytes.
 * Returns 0, or -1 with *why set. */
int mach_inflate_raw(const unsigned char *in, size_t len, unsigned char *out, size_t outlen,
                     const char **why);
/* Decompresses a whole gzip file (all its members) into a new buffer.
 * Returns 0 or 1 (message naming `name` printed). */
int mach_gunzip(const struct mach_ctx *c, const char *name, const unsigned char *in,
                size_t len, unsigned char **out, size_t *outlen);

/* ---- idx.c: the IDX format of MNIST ------------------------------------- */

/* Whether buf starts like an IDX file: two zero bytes, a known type code
 * (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64), 1 to 32 axes. */
int mach_idx_is(const unsigned char *buf, size_t len);
/* Parses an IDX image (big-endian) into a (converted to little-endian in
 * a->owned). On error writes the reason to why and returns -1. */
int mach_idx_parse(const unsigned char *buf, size_t len, struct mach_array *a, char *why,
                   size_t whylen);

/* ---- csv.c: one sample per line ----------------------------------------- */

struct mach_csv_opts {
  char sep;        /* the one field separator (--sep); 0: commas, blanks or tabs */
  int skip_header; /* 1: the first line is a header (--skip-header); 0: detect it */
};

/* Parses CSV text (text[len] must be a NUL): every non-empty line is a
 * sample and all lines must have as many fields. Result is f8 [rows, cols].
 * A header's names land in *names (one allocation, free it; NULL without a
 * header). Messages name `name`. Returns 0 or 1. */
int mach_csv_parse(const struct mach_ctx *c, const char *name, const char *text, size_t len,
                   const struct mach_csv_opts *o, struct mach_array *a, char ***names,
                   long *n_names);
/* Columns named by spec ("2", "-1", "1:4", "SUNACTIVITY", comma-separated;
 * "!SPEC": every column but those) among ncols, as indices in *idx (free
 * it). Returns 0 or 1. */
int mach_csv_columns(const struct mach_ctx *c, const char *name, const char *spec,
                     char *const *names, long n_names, long ncols, long **idx, long *n);
/* Writes n lines; line i is the concatenation of parts[k][i*sizes[k] ...]. */
int mach_csv_write(FILE *f, long n, int parts, const long *sizes,
                   const mach_real *const *data);
/* "-", or a name ending in .csv, .tsv or .txt (optionally .gz) */
int mach_is_csv(const char *path);

/* ---- rng.c: random numbers and initialisers ----------------------------- */

/* xoshiro256** (Blackman & Vigna), its 256-bit state filled by splitmix64
 * from the 64-bit seed, as the authors recommend. */
struct mach_rng {
  uint64_t s[4];
};
void mach_rng_seed(struct mach_rng *r, uint64_t seed);
uint64_t mach_rng_next(struct mach_rng *r);
double mach_rng_uniform(struct mach_rng *r); /* [0, 1), 53 bits */
uint64_t mach_rng_below(struct mach_rng *r, uint64_t n); /* [0, n), unbiased */
/* Fills every parameter per its init and init_scale, in parameter order. */
void mach_init_params(const struct mach_model *m, uint64_t seed, mach_real *params);

/* ---- args.c: command-line options --------------------------------------- */

enum mach_optkind {
  MACH_OPT_FLAG,  /* --quiet */
  MACH_OPT_VALUE, /* --lr 0.1 or --lr=0.1; the last one wins */
  MACH_OPT_MULTI, /* --input a=X.npy, repeatable */
};

struct mach_optspec {
  const char *name; /* without the dashes */
  enum mach_optkind kind;
};

#define MACH_MAX_OPTS 64
#define MACH_MAX_MULTI 64

struct mach_args {
  const char *cmd;
  int n_spec;
  const struct mach_optspec *spec;
  int count[MACH_MAX_OPTS];
  const char *val[MACH_MAX_OPTS][MACH_MAX_MULTI];
};

/* Returns 0, 2 (usage error, printed) or -1 when --help was given. */
int mach_args_parse(const struct mach_ctx *c, const char *cmd,
                    const struct mach_optspec *spec, int argc, char **argv,
                    struct mach_args *a);
const char *mach_arg(const struct mach_args *a, const char *name);
int mach_arg_count(const struct mach_args *a, const char *name);
const char *mach_arg_nth(const struct mach_args *a, const char *name, int i);
/* Value of a numeric option, def when absent; 2 and a message when bad. */
int mach_arg_double(const struct mach_ctx *c, const struct mach_args *a,
                    const char *name, double def, double lo, double hi, double *out);
int mach_arg_long(const struct mach_ctx *c, const struct mach_args *a,
                  const char *name, long def, long lo, long *out);
int mach_arg_u64(const struct mach_ctx *c, const struct mach_args *a,
                 const char *name, uint64_t def, uint64_t *out);
/* Prints `prog: cmd: missing --name (try 'prog cmd --help')`; returns 2. */
int mach_arg_missing(const struct mach_ctx *c, const struct mach_args *a,
                     const char *name);
/* Like mach_arg but a missing option is a usage error. */
int mach_arg_required(const struct mach_ctx *c, const struct mach_args *a,
                      const char *name, const char **out);

/* ---- samples.c: a plain .npy data file read by rows ----------------------- */

/* A C-order little-endian .npy file [N, ...] whose rows are read with pread
 * as they are wanted (converted to mach_real), rather than the file whole. */
struct mach_npy_rows {
  int fd;
  long n, row;            /* rows (the first axis), scalars per row */
  size_t off, item;       /* the data's offset, bytes per scalar */
  enum mach_dtype dtype;
  unsigned char *raw;     /* a chunk's bytes being converted, or NULL */
};
/* 0: open; hdr describes the array (data NULL). -1: not a plain .npy file
 * this reads by rows (stdin, gzip, another format, Fortran order,
 * big-endian, an unknown dtype, or anything wrong with it): nothing is
 * printed and the caller reads the file whole, which reports errors. */
int mach_npy_rows_open(const char *path, struct mach_npy_rows *r, struct mach_array *hdr);
/* Rows [start, start + count) into dst; 0, or -1 with errno (0: the file
 * ended early, having shrunk since it was opened). */
int mach_npy_rows_read(struct mach_npy_rows *r, long start, long count, mach_real *dst);
void mach_npy_rows_close(struct mach_npy_rows *r);

/* ---- data.c: model-aware loading and saving ----------------------------- */

/* The data options of a command: --sep, --skip-header, --scale, --data-cols,
 * --target-cols (absent from a command's table: the defaults). */
struct mach_dataopts {
  struct mach_csv_opts csv;
  double scale;                        /* inputs are multiplied by it (1) */
  const char *data_cols, *target_cols; /* column lists, or NULL for all */
};
int mach_dataopts_get(const struct mach_ctx *c, const struct mach_args *a,
                      struct mach_dataopts *o);
/* Their entries, for a command's option table. */
#define MACH_DATA_OPTS                                                                   \
  {"scale", MACH_OPT_VALUE}, {"sep", MACH_OPT_VALUE}, {"skip-header", MACH_OPT_FLAG},     \
  {"data-cols", MACH_OPT_VALUE}, {"target-cols", MACH_OPT_VALUE},                     \
  {"windows", MACH_OPT_VALUE}, {"warmup-steps", MACH_OPT_VALUE}

/* Loads B's samples from a data file (CSV, .npy, .npz of one array, IDX,
 * any of them gzipped): [N, shape], or a shape differing only by unit axes
 * or flattened to [N, size]. cols (may be NULL) keeps those columns of a
 * table [N, K] first; o may be NULL (defaults). */
int mach_load_samples_opt(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                          const char *role, const struct mach_dataopts *o, const char *cols,
                          mach_real **x, long *n);
int mach_load_samples(const struct mach_ctx *c, const char *path,
                      const struct mach_block *b, const char *role,
                      mach_real **x, long *n);
/* One input's samples, read a batch at a time: a plain .npy file by rows
 * (samples.c), anything else loaded whole on open. Values are multiplied
 * by scale as they are read. */
struct mach_samples {
  long n, size;           /* samples, scalars per sample */
  double scale;
  mach_real *all;         /* [n, size] when loaded whole, else NULL */
  struct mach_npy_rows rows;
  const char *path;       /* for messages */
};
/* Opens B's samples in path, checked as mach_load_samples_opt checks them
 * (the same messages). Returns 0 or 1. */
int mach_samples_open(const struct mach_ctx *c, const char *path, const struct mach_block *b,
                      const char *role, const struct mach_dataopts *o, const char *cols,
                      struct mach_samples *s);
/* Samples [start, start + count) into dst ([count, size]). 0 or 1. */
int mach_samples_read(const struct mach_ctx *c, struct mach_samples *s, long start,
                      long count, mach_real *dst);
void mach_samples_close(struct mach_samples *s);
/* Opens every input as mach_load_inputs loads them (the same options,
 * checks and messages; --scale applies as samples are read); s[k] gets
 * input k, all closed again on failure. */
int mach_open_inputs(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                     const char *def, struct mach_samples *s, long *n);
/* Loads every input block from repeated --OPT [name=]path options (a bare
 * path only with one input; def used when none given), with the command's
 * data options (--scale applies here). xs[k] gets input k. */
int mach_load_inputs(const struct mach_ctx *c, const struct mach_args *a,
                     const char *opt, const char *def, mach_real **xs, long *n);
/* The same with data options already read (and perhaps adjusted). */
int mach_load_inputs_opt(const struct mach_ctx *c, const struct mach_args *a, const char *opt,
                         const char *def, const struct mach_dataopts *o, mach_real **xs,
                         long *n);
/* Splits "name=path" when name is one of the n blocks listed in idx; returns
 * the block's position in idx (and *path), or -1 (bare path). */
int mach_named_block(const struct mach_model *m, const int *idx, int n,
                     const char *arg, const char **path);
/* A table [rows, cols] of doubles (a 1-D array is one column) from any data
 * file, keeping the columns cols (NULL: all). *v is freed by the caller. */
int mach_load_table(const struct mach_ctx *c, const char *path, const struct mach_dataopts *o,
                    const char *cols, double **v, long *rows, long *ncols);
/* Integer class labels in [0, classes), from ints or integral floats. */
int mach_load_labels_opt(const struct mach_ctx *c, const char *path, long classes,
                         const struct mach_dataopts *o, const char *cols, long **labels,
                         long *n);
int mach_load_labels(const struct mach_ctx *c, const char *path, long classes,
                     long **labels, long *n);
int mach_load_weights(const struct mach_ctx *c, const char *path, mach_real *params);
int mach_save_weights(const struct mach_ctx *c, const char *path,
                      const mach_real *params);

/* ---- loss.c -------------------------------------------------------------- */

enum mach_loss {
  MACH_LOSS_MSE,  /* mean over all elements of (z - t)^2 */
  MACH_LOSS_XENT, /* softmax cross-entropy, integer labels, mean over samples */
};

/* Sum over the batch (b samples of `size` scalars) of the per-sample loss
 * (for mse: summed squared errors), so batches can be added up exactly; the
 * caller divides. If grad is not NULL it receives d(mean loss)/dz for a mean
 * over `denom_samples` samples. hits counts correct argmax predictions (xent). */
double mach_loss_eval(enum mach_loss kind, const mach_real *z, const mach_real *t,
                      const long *labels, long b, long size, long denom_samples,
                      mach_real *grad, long *hits);
/* Divisor turning the summed loss of n samples into the reported mean. */
double mach_loss_norm(enum mach_loss kind, long n, long size);

/* ---- eval.c: labelled data sets and the `eval` command ----------------- */

/* --data/--targets/--loss/--target-output, loaded and checked. */
struct mach_dataset {
  enum mach_loss loss;
  int out;            /* position in model->outputs of the output trained on */
  long n;             /* samples */
  long size;          /* scalars per sample of that output */
  long counted;       /* of those, how many the loss counts: size less the
                         warm-up positions (--warmup-steps), whose targets are NaN */
  int next_step;      /* --windows without --targets: t is x one step ahead */
  mach_real *xs[64];  /* inputs, [n, size] each */
  mach_real *t;       /* mse targets, [n, size] */
  long *labels;       /* xent class labels, [n] */
};

int mach_dataset_load(const struct mach_ctx *c, const struct mach_args *a,
                      struct mach_dataset *d);

/* ---- window.c: long series cut into windows ----------------------------- */

/* --windows T[:S]: fills d's inputs and targets with windows of T steps,
 * every S steps, of the series in --data (and --targets, or the data one
 * step ahead). b is the output block trained on. Returns 0, 1 or 2. */
int mach_windows_load(const struct mach_ctx *c, const struct mach_args *a,
                      const struct mach_dataopts *o, const struct mach_block *b,
                      struct mach_dataset *d);
/* --warmup-steps K: the targets at the first K time steps of every sample
 * become NaN (left out of the loss); sets d->counted. Returns 0 or 2. */
int mach_windows_warmup(const struct mach_ctx *c, const struct mach_args *a,
                        const struct mach_block *b, struct mach_dataset *d);
/* The last-value forecast's mse (predict x[t] for x[t + 1]) over the counted
 * positions of next-step targets; NAN when it does not apply. */
double mach_windows_naive(const struct mach_ctx *c, const struct mach_dataset *d);
void mach_dataset_free(struct mach_dataset *d);
/* Summed loss (see mach_loss_eval) of samples [lo, hi), run in batches of at
 * most `batch` through state ([batch * state_size]); adds correct argmax
 * predictions to *hits. */
double mach_eval_range(const struct mach_model *m, const mach_real *params,
                       const struct mach_dataset *d, long lo, long hi, long batch,
                       mach_real *state, long *hits);
/* The same over MPI ranks: each evaluates its shard of [lo, hi); every rank
 * gets the sums. */
double mach_eval_shards(const struct mach_ctx *c, const mach_real *params,
                        const struct mach_dataset *d, long lo, long hi, long batch,
                        mach_real *state, long *hits);

/* ---- optim.c ------------------------------------------------------------- */

enum mach_optim {
  MACH_OPTIM_SGD,
  MACH_OPTIM_MOMENTUM,
  MACH_OPTIM_ADAM,
};

struct mach_optim_cfg {
  enum mach_optim kind;
  double lr, momentum, beta1, beta2, eps, weight_decay;
};

/* Scalars of optimizer state per parameter scalar (0, 1 or 2). */
int mach_optim_slots(enum mach_optim kind);
/* The parameter entries the machine reads (mach_param.live), laid end to
 * end: how many, and fn(ctx, off, n, decay) for each stretch of entries
 * [lo, hi) of that line covers, off an offset into the parameters. Passes
 * over them (the optimizer, train's checks) split the line among threads
 * with mach_par_for, in equal pieces however short the runs are. */
long mach_live_size(const struct mach_model *m);
void mach_live_stretches(const struct mach_model *m, long lo, long hi,
                         void (*fn)(void *ctx, long off, long n, int decay), void *ctx);
/* One update of the entries the machine reads, from params into next (its
 * other entries untouched); t counts steps from 1 (Adam's bias correction).
 * state holds mach_optim_slots * param_size zero-initialised scalars, updated
 * in place. Returns 0 when a parameter it wrote is not finite (1: all are). */
int mach_optim_step(const struct mach_optim_cfg *o, const struct mach_model *m, const mach_real *params,
                    mach_real *next, const mach_real *grad, mach_real *state, long t);

/* Learning-rate schedules, per step t = 0, 1, ... (S steps per epoch, T in
 * all, W warmup steps): the rate of step t is lr * warm(t) * decay(t), with
 * warm(t) = min(1, (t + 1) / W) and decay constant (1), step (G^floor(t / (E S)))
 * or cosine ((1 + cos(pi * min(1, (t - W) / (T - W)))) / 2, 1 during warmup). */
enum mach_sched_kind { MACH_SCHED_CONSTANT, MACH_SCHED_STEP, MACH_SCHED_COSINE };

struct mach_sched {
  enum mach_sched_kind kind;
  long every;          /* step: epochs between decays (E) */
  double gamma;        /* step: factor per decay (G) */
  long per_epoch;      /* S */
  long total;          /* T */
  long warmup;         /* W, 0 for none */
};

double mach_sched_lr(const struct mach_sched *s, double lr, long t);
/* Whether p[0, n) holds no inf and no nan. */
int mach_all_finite(const mach_real *p, long n);
/* Scales g (n scalars) down to L2 norm max_norm when it is longer; returns
 * the norm before scaling. */
double mach_clip_norm(mach_real *g, long n, double max_norm);

/* ---- checkpoint.c: resumable training state ------------------------------ */

#define MACH_CK_PREFIX "train/" /* reserved: no parameter name holds a '/' */

/* Columns of the training log (CSV and checkpoint), in CSV order. */
enum {
  MACH_LOG_EPOCH, MACH_LOG_STEP, MACH_LOG_LOSS, MACH_LOG_VAL_LOSS, MACH_LOG_ACC,
  MACH_LOG_SECONDS, MACH_LOG_LR, MACH_LOG_COLS
};
struct mach_logrow {
  double v[MACH_LOG_COLS]; /* NAN: not applicable */
};

/* Rows of train/counters. */
enum mach_ck_counter {
  MACH_CK_VERSION, MACH_CK_EPOCH, MACH_CK_POS, MACH_CK_STEP, MACH_CK_OPTIM, MACH_CK_N_TRAIN,
  MACH_CK_N_VAL, MACH_CK_SEED, MACH_CK_LOSS_SUM, MACH_CK_HITS, MACH_CK_SECONDS,
  MACH_CK_BEST_EPOCH, MACH_CK_BEST_LOSS, MACH_CK_BAD_EPOCHS, MACH_CK_N
};

/* Everything besides the weights that makes a resumed run continue as if
 * it had never stopped. Arrays belong to the trainer. */
struct mach_ckpt {
  long epoch;          /* epochs completed */
  long pos;            /* samples of the next epoch already stepped over */
  long step;           /* optimizer steps taken */
  int optim;           /* enum mach_optim */
  long n_train, n_val;
  uint64_t seed;
  uint64_t rng[4];     /* the shuffling stream */
  double loss_sum;     /* the unfinished epoch's summed loss and hits */
  long hits;
  double seconds;      /* training time so far */
  long best_epoch;     /* epoch of the lowest validation loss, 0 = none yet */
  double best_loss;
  long bad_epochs;     /* epochs since best_epoch */
  long *perm;          /* [n_train] this epoch's sample order */
  mach_real *ostate;   /* [slots * param_size] optimizer state */
  const mach_real *last; /* when the weights written are not the current ones */
  struct mach_logrow *log;
  long n_log;
};

/* Writes weights (the model's parameter entries) and k atomically. */
int mach_ckpt_save(const struct mach_ctx *c, const char *path, const mach_real *weights,
                   const struct mach_ckpt *k);
/* Reads a checkpoint written for the same data and options: k holds the
 * expected optim, n_train, n_val and seed, and the buffers perm and ostate,
 * which are filled; k->log is allocated (the caller frees it). weights gets
 * the weights entries; when the checkpoint has train/last (*has_last = 1),
 * last gets the current parameters. Returns 0 or 1 (message printed). */
int mach_ckpt_load(const struct mach_ctx *c, const char *path, mach_real *weights,
                   mach_real *last, int *has_last, struct mach_ckpt *k);

/* ---- dist.c: data parallelism over MPI ----------------------------------- */

/* Built twice: into libmachrt_f32/f64.a without MACH_MPI, where every
 * function is the single-process case, and with MACH_MPI into
 * libmachrt_mpi_f32/f64.a (machc --mpi), where they call MPI. Ranks run the
 * same command on the same files; each computes its shard of every batch,
 * and rank 0 alone writes files and prints results. A failure that only some
 * ranks see goes through mach_dist_agree so that all stop together. */

/* MPI_Init_thread (funneled: OpenMP threads never call MPI); sets c->rank
 * and c->nranks. Returns 0 or 1 (message printed). */
int mach_dist_init(struct mach_ctx *c, int *argc, char ***argv);
/* MPI_Finalize; returns rc. */
int mach_dist_end(const struct mach_ctx *c, int rc);
int mach_dist_root(const struct mach_ctx *c); /* 1 on rank 0 or when alone */
/* This rank's part [*mlo, *mhi) of [lo, hi): contiguous, in rank order,
 * sizes differing by at most one (possibly empty). */
void mach_dist_shard(const struct mach_ctx *c, long lo, long hi, long *mlo, long *mhi);
/* The largest rc of all ranks. When this rank's rc is 0 but another's is
 * not, rank 0 says which rank failed (that rank printed why). */
int mach_dist_agree(const struct mach_ctx *c, const char *cmd, int rc);
/* x[0 .. n) summed over the ranks, in place, on every rank: in buckets, each
 * its own non-blocking allreduce, so the transfers of one overlap the
 * reduction of the next. Every rank gets the same bits. */
void mach_dist_sum(const struct mach_ctx *c, mach_real *x, long n);
/* The same sum for the gradient of a training step, overlapped with the
 * backward pass: mach_allreduce_ready is its ready hook, and each bucket of x
 * is summed as soon as all of it is reported final. new returns NULL with
 * one rank (or out of memory: the caller then uses mach_dist_sum); begin
 * starts a step, end starts the buckets not yet started and waits for all. */
struct mach_allreduce;
struct mach_allreduce *mach_allreduce_new(const struct mach_ctx *c, mach_real *x, long n);
void mach_allreduce_begin(struct mach_allreduce *s);
void mach_allreduce_ready(void *s, long lo, long hi);
void mach_allreduce_end(struct mach_allreduce *s);
void mach_allreduce_free(struct mach_allreduce *s);
void mach_dist_sum_doubles(const struct mach_ctx *c, double *x, int n);
int mach_dist_max_int(const struct mach_ctx *c, int v);
/* Rows [0, n) of x ([n, size]) sharded by mach_dist_shard(0, n): gathers
 * every rank's rows into x on rank 0. */
void mach_dist_gather_rows(const struct mach_ctx *c, mach_real *x, long n, long size);
/* Whether x[0 .. n) holds the same bits on every rank (a hash compared). */
int mach_dist_same(const struct mach_ctx *c, const mach_real *x, long n);

/* ---- threads.c ---------------------------------------------------------- */

/* --threads N (absent: OpenMP's default, OMP_NUM_THREADS or every core): sets
 * the kernels' team size. Returns 0 or 2 (message printed). */
int mach_threads_set(const struct mach_ctx *c, const struct mach_args *a);
#define MACH_THREADS_OPT {"threads", MACH_OPT_VALUE}
/* fn(ctx, lo, hi) over pieces covering [0, n), among the threads through
 * the model's par_for (machrt.h) when it has one, else in one call. */
void mach_par_for(const struct mach_model *m, long n, void (*fn)(void *ctx, long lo, long hi),
                  void *ctx);

/* ---- json.c -------------------------------------------------------------- */

void mach_json_str(FILE *f, const char *s);
void mach_json_shape(FILE *f, int rank, const int *shape);

/* ---- commands: info.c, init (data.c), run.c, train.c, eval.c ------------- */

int mach_cmd_info(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_init(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_forward(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_predict(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_grad(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_train(const struct mach_ctx *c, int argc, char **argv);
int mach_cmd_eval(const struct mach_ctx *c, int argc, char **argv);
/* Usage text of one command (cli.c), printed by `BIN CMD --help`. */
void mach_usage_cmd(const struct mach_ctx *c, const char *cmd, FILE *f);

#endif /* MACH_RT_H */
