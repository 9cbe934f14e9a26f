/* cli.c — mach_main: picks the command and prints usage. Usage text names
 * the binary as invoked (argv[0]'s basename). */
#include <string.h>

#include "rt.h"

struct command {
  const char *name;
  int (*run)(const struct mach_ctx *c, int argc, char **argv);
  const char *args;   /* synopsis after `BIN name` */
  const char *help;   /* option descriptions, one per line */
};

static const struct command commands[] = {
  {"info", mach_cmd_info, "[--json]",
   "Describe the model: inputs, outputs, levels, parameters, FLOPs.\n"
   "  --json             one JSON object instead of text\n"},
  {"init", mach_cmd_init, "[--seed S] --out W.npz",
   "Initialise every parameter (xoshiro256** seeded by splitmix64).\n"
   "  --seed S           unsigned 64-bit seed (default 0); same seed, same bytes\n"
   "  --out W.npz        weights file to write\n"},
  {"forward", mach_cmd_forward,
   "--weights W.npz --input [NAME=]X.npy --output [NAME=]Y.npy|Y.npz|Y.csv|- [--dump-state S.npz] [--batch B]",
   "Run the model on N samples; X is [N, <input shape>], batch first.\n"
   "  --weights W.npz    parameters\n"
   "  --input X          .npy, .npz, IDX, .csv (any .gz) or - (CSV on stdin); NAME=X per input\n"
   "  --output Y         .npy (one output), .npz (every output), .csv or - (CSV on stdout),\n"
   "                     or NAME=Y per output\n"
   "  --dump-state S.npz y.NAME and z.NAME of every block, [N, shape]\n"
   "  --batch B          samples per minibatch (default 256; results do not depend on it)\n"
   "  --scale S          multiply the inputs by S (e.g. 0.00392156862745098 = 1/255)\n"
   "  --sep C, --skip-header, --data-cols COLS   CSV separator, header, columns\n"
   "  --argmax           write each flat output's class index (its largest channel)\n"
   "  --proba            write softmax(output) over the channels (outputs are logits)\n"
   "  --allow-nonfinite  run even when weights or inputs hold NaN or infinity (refused otherwise)\n"
   "  --threads N        threads (default: OMP_NUM_THREADS, else every core); same results for any N\n"
   "Outputs are written only when the whole command succeeds (none otherwise).\n"},
  {"predict", mach_cmd_predict,
   "--weights W.npz [--input X (default -)] [--output Y (default -)] [--argmax|--proba] [--batch B]",
   "Like forward, reading CSV from stdin and writing CSV to stdout by default.\n"
   "  --weights W.npz    parameters\n"
   "  --input X          .npy, .csv or - ; NAME=X per input when there are several\n"
   "  --scale S, --sep C, --skip-header, --data-cols COLS   as for forward\n"
   "  --output Y         .npy, .npz, .csv or - ; NAME=Y per output\n"
   "  --dump-state S.npz y.NAME and z.NAME of every block\n"
   "  --batch B          samples per minibatch (default 256)\n"
   "  --argmax           class indices: the largest channel of each flat output\n"
   "  --proba            probabilities: softmax over the channels of logits outputs\n"
   "  --allow-nonfinite  as for forward\n"
   "  --threads N        threads (default: OMP_NUM_THREADS, else every core); same results for any N\n"},
  {"grad", mach_cmd_grad,
   "--weights W.npz --input [NAME=]X.npy --cotangent [NAME=]G.npy --output D.npz [--dump-state S.npz] [--dump-dual B.npz] [--batch B]",
   "Vector-Jacobian product of loss = sum(output * G), summed over all samples.\n"
   "  --weights W.npz    parameters\n"
   "  --input X          as for forward\n"
   "  --cotangent G      [N, <output shape>]; NAME=G per output (missing outputs: zero)\n"
   "  --output D.npz     one entry per input block (its ybar, [N, shape]) and per parameter\n"
   "  --dump-state S.npz y.NAME and z.NAME of every block\n"
   "  --dump-dual B.npz  zbar.NAME and ybar.NAME of every block\n"
   "  --batch B          samples per minibatch (default 256)\n"
   "  --allow-nonfinite  as for forward; outputs are written only when all succeed\n"
   "  --threads N        threads (default: OMP_NUM_THREADS, else every core); same results for any N\n"},
  {"train", mach_cmd_train,
   "--data [NAME=]X.npy --targets T.npy --loss mse|xent --epochs E --out W.npz [options]",
   "Train with minibatches; --val-split F holds out a seeded random fraction.\n"
   "  --data X           inputs, [N, <input shape>]; NAME=X per input when there are several\n"
   "  --targets T        mse: [N, <output shape>]; xent: integer class labels [N]\n"
   "  --loss mse|xent    mean squared error, or softmax cross-entropy over channels\n"
   "  --target-output N  the output the loss applies to (needed with several outputs)\n"
   "  --scale S          multiply the inputs by S (e.g. 0.00392156862745098 = 1/255)\n"
   "  --sep C            CSV field separator, e.g. ';' or tab (default: commas or blanks)\n"
   "  --skip-header      the first CSV line is a header (default: detected)\n"
   "  --data-cols COLS   columns of a table [N, K] to use as inputs: names, indices, A:B, !COLS\n"
   "  --target-cols COLS columns to use as targets (--targets defaults to the --data file)\n"
   "  --windows T[:S]    series [steps, columns] cut into windows of T steps every S;\n"
   "                     without --targets the target is the series one step ahead\n"
   "  --warmup-steps K   leave the first K time steps of each sample out of the loss\n"
   "  --optimizer O      sgd, momentum or adam (default adam)\n"
   "  --lr R             learning rate (default 0.001)\n"
   "  --momentum M       for momentum (default 0.9)\n"
   "  --beta1 B1, --beta2 B2, --eps E   for adam (defaults 0.9, 0.999, 1e-8)\n"
   "  --weight-decay WD  on weights, not biases (adam: decoupled, AdamW) (default 0)\n"
   "  --epochs E         passes over the training samples\n"
   "  --batch B          samples per step (default 32; B >= N: full batch)\n"
   "  --seed S           initialisation and shuffling seed (default 0)\n"
   "  --init W.npz       start from these weights instead of initialising\n"
   "  --resume CK.npz    continue a run from its checkpoint (same data and options)\n"
   "  --lr-schedule S    constant, step:E:G (times G every E epochs) or cosine (default constant)\n"
   "  --warmup E         raise the rate linearly over the first E epochs (default 0)\n"
   "  --clip-norm C      scale the gradient down to L2 norm C when longer (default: no clipping)\n"
   "  --val-split F      fraction held out for validation, drawn with --seed (default 0)\n"
   "  --val-split-tail   hold out the last F of the samples instead\n"
   "  --val-data X, --val-targets T   validation samples from their own files\n"
   "  --patience P       stop when val_loss has not improved for P epochs\n"
   "  --keep-best        write the weights of the epoch with the lowest val_loss\n"
   "  --out W.npz        weights and training state, at the end, at checkpoints, on SIGINT/SIGTERM\n"
   "  --log FILE.csv     epoch,step,loss,val_loss,accuracy,seconds,lr per epoch, flushed each epoch\n"
   "  --print-every K    report every K epochs (default: about 50 reports)\n"
   "  --checkpoint-every K  also write --out every K epochs\n"
   "  --quiet            print only the final line\n"
   "  --threads N        threads (default: OMP_NUM_THREADS, else every core); same results for any N\n"},
  {"eval", mach_cmd_eval,
   "--weights W.npz --data [NAME=]X.npy --targets T.npy --loss mse|xent [--batch B]",
   "Print the loss (and for xent the argmax accuracy) on a data set.\n"
   "  --weights W.npz    parameters\n"
   "  --data X           inputs; NAME=X per input when there are several\n"
   "  --targets T        as for train\n"
   "  --loss mse|xent    as for train\n"
   "  --target-output N  the output the loss applies to (needed with several outputs)\n"
   "  --batch B          samples per minibatch (default 256)\n"
   "  --scale S, --sep C, --skip-header, --data-cols COLS, --target-cols COLS   as for train\n"
   "  --allow-nonfinite  evaluate even when weights or inputs hold NaN or infinity\n"
   "  --windows T[:S], --warmup-steps K   as for train; with next-step targets also the\n"
   "                     one-step-ahead error beside the last-value forecast\n"
   "  --threads N        threads (default: OMP_NUM_THREADS, else every core); same results for any N\n"},
};

#define N_COMMANDS (int)(sizeof commands / sizeof commands[0])

static const struct command *find_command(const char *name) {
  for (int i = 0; i < N_COMMANDS; i++)
    if (strcmp(commands[i].name, name) == 0)
      return &commands[i];
  return NULL;
}

void mach_usage_cmd(const struct mach_ctx *c, const char *cmd, FILE *f) {
  const struct command *k = find_command(cmd);
  if (!k)
    return;
  fprintf(f, "usage: %s %s %s\n%s", c->prog, k->name, k->args, k->help);
}

static void usage(const struct mach_ctx *c, FILE *f) {
  fprintf(f, "usage: %s COMMAND [options]   (model '%s', %s, from %s)\n\ncommands:\n", c->prog,
          c->m->name, c->m->dtype, c->m->source ? c->m->source : "?");
  for (int i = 0; i < N_COMMANDS; i++)
    fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].args);
  fprintf(f, "\n'%s COMMAND --help' describes the options of a command; '%s --version' says\n"
             "which machc compiled it.\n", c->prog, c->prog);
}

static const char *basename_of(const char *path) {
  const char *s = path ? strrchr(path, '/') : NULL;
  return s ? s + 1 : path && *path ? path : "model";
}

/* Commands that run sharded over MPI ranks; the others run on rank 0 alone. */
static int is_sharded(const struct command *k) {
  return k->run == mach_cmd_train || k->run == mach_cmd_eval || k->run == mach_cmd_forward ||
         k->run == mach_cmd_predict || k->run == mach_cmd_grad;
}

static int dispatch(const struct mach_ctx *c, int argc, char **argv);

int mach_main(int argc, char **argv, const struct mach_model *model) {
  struct mach_ctx c = {basename_of(argc > 0 ? argv[0] : NULL), model, 0, 1};
  if (mach_dist_init(&c, &argc, &argv))
    return 1;
  return mach_dist_end(&c, dispatch(&c, argc, argv));
}

static int dispatch(const struct mach_ctx *cp, int argc, char **argv) {
  const struct mach_ctx c = *cp;
  const struct mach_model *model = c.m;
  const struct command *k = argc >= 2 ? find_command(argv[1]) : NULL;
  /* help, version, info and init: one answer, from rank 0 */
  if (!mach_dist_root(&c) && !(k && is_sharded(k)))
    return 0;
  if (!model->dtype || strcmp(model->dtype, MACH_DTYPE) != 0) {
    mach_err(&c, "model is %s but was linked with the %s runtime", model->dtype, MACH_DTYPE);
    return 2;
  }
  if (argc < 2) {
    usage(&c, stderr);
    return 2;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    if (argc > 2 && find_command(argv[2]))
      mach_usage_cmd(&c, argv[2], stdout);
    else
      usage(&c, stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("%s: machine %s (%s) from %s, compiled by machc %s\n", c.prog, model->name,
           model->dtype, model->source ? model->source : "?", MACH_VERSION);
    return fflush(stdout) == 0 ? 0 : 1;
  }
  if (!k) {
    mach_err(&c, "unknown command '%s' (try '%s --help')", argv[1], c.prog);
    return 2;
  }
  return k->run(&c, argc - 2, argv + 2);
}
