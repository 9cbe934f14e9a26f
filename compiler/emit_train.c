/* emit_train.c — on-device training for standalone code (--train): one
 * step of forward pass, loss, backward pass (the dual machine and the
 * parameter gradients, as the binary has them) and optimizer update, with
 * no runtime and no heap.
 *
 * The loss and the update are the runtime's (runtime/loss.c, optim.c) with
 * its default hyperparameters, written out here so the step needs nothing
 * but libm: mse or softmax cross-entropy, means over the batch; sgd,
 * momentum 0.9 (heavy ball) or Adam (0.9, 0.999, 1e-8), no weight decay.
 * The arithmetic is in double, as the runtime's, so a float model loses no
 * small update to rounding either. */
#include "emit_internal.h"

#include <stdio.h>

static const char *optim_names[] = {"sgd", "momentum", "adam"};

long emit_opt_slots(int optimizer) { return optimizer; /* 0 sgd, 1 momentum, 2 adam */ }

void emit_train_header(const IrMachine *m, const EmitOptions *o, const char *real,
                       const char *prefix, const char *up, long state_size, long state_scratch,
                       StrBuf *h) {
  long P = m->param_size, out = IR_BLOCK(m, m->outputs[0])->size;
  sb_printf(h, "\n/* Training on the device (%s loss, %s): %s_train_step runs the forward pass,\n"
               " * the loss against targets, the backward pass and one update of params, and\n"
               " * returns the loss before the update. targets: batch x %ld values of the output\n"
               " * (mse) or batch class indices (xent). opt_state: %s_OPT_STATE_SIZE scalars,\n"
               " * zero before the first step; workspace: %s_TRAIN_WORKSPACE_BYTES(batch). */\n",
            o->loss_xent ? "xent" : "mse", optim_names[o->optimizer], prefix, out, up, up);
  sb_printf(h, "#define %s_OPT_STATE_SIZE %ldL\n", up,
            emit_opt_slots(o->optimizer) * P + (o->optimizer == 2));
  sb_printf(h, "#define %s_TRAIN_WORKSPACE_BYTES(batch) \\\n"
               "    (((unsigned long)(batch) * %ld + %ld) * sizeof(%s))\n",
            up, 2 * state_size + out, 2 * state_scratch + P, real);
  sb_printf(h, "%s %s_train_step(%s *params, %s *opt_state, const %s *const *inputs,\n"
               "        const %s *targets, long batch, %s lr, void *workspace);\n",
            real, prefix, real, real, real, real, real);
}

/* The loss of the batch and its gradient, the cotangent of output 0. */
static void emit_loss(const EmitOptions *o, long out, StrBuf *c) {
  if (!o->loss_xent) {
    sb_printf(c, "    /* mse: L = sum (z - t)^2 / (batch * %ld), dL/dz = 2 (z - t) / (batch * %ld) */\n"
                 "    const double norm = (double)batch * %ld;\n"
                 "    for (long i = 0; i < batch * %ld; i++) {\n"
                 "        double d = (double)z[i] - (double)targets[i];\n"
                 "        loss += d * d;\n"
                 "        cot[i] = (real)(2.0 * d / norm);\n"
                 "    }\n", out, out, out, out);
    return;
  }
  sb_printf(c, "    /* softmax cross-entropy: L = mean of logsumexp(z) - z[label],\n"
               "     * dL/dz = (softmax(z) - onehot(label)) / batch */\n"
               "    const double norm = (double)batch;\n"
               "    for (long b = 0; b < batch; b++) {\n"
               "        const real *zb = z + b * %ld;\n"
               "        long label = (long)targets[b];\n"
               "        double mx = zb[0], sum = 0, lse;\n"
               "        for (long j = 1; j < %ld; j++)\n"
               "            if (zb[j] > mx)\n"
               "                mx = zb[j];\n"
               "        for (long j = 0; j < %ld; j++)\n"
               "            sum += exp((double)zb[j] - mx);\n"
               "        lse = mx + log(sum);\n"
               "        for (long j = 0; j < %ld; j++)\n"
               "            cot[b * %ld + j] = (real)((exp((double)zb[j] - lse) - (j == label)) / norm);\n"
               "        loss += lse - (double)zb[label];\n"
               "    }\n", out, out, out, out, out);
}

/* The update splits its elements among the threads when compiled with
 * -fopenmp and the model has 2^16 parameters or more (the runtime's
 * threshold, machrt.h's par_for): element-wise, the same bits on any
 * number of threads. */
static const char *par_update(long P) {
  return P >= 1 << 16 ? "#ifdef _OPENMP\n#pragma omp parallel for schedule(static)\n#endif\n" : "";
}

/* The update's loop over the entries the machine reads: all of params, or
 * its runs live[] (the DenseMachine's W is 56% unread: its gradient there is
 * not written, and the parameter never changes), each element by the lines
 * of body. */
static void emit_update_loop(long P, long nruns, const char *const *body, StrBuf *c) {
  const char *in = nruns >= 0 ? "            " : "        ";
  sb_puts(c, par_update(P));
  if (nruns > 0)
    sb_printf(c, "    for (long r = 0; r < %ld; r++)\n"
                 "        for (long i = live[2 * r]; i < live[2 * r] + live[2 * r + 1]; i++) {\n",
              nruns);
  else
    sb_printf(c, "    for (long i = 0; i < %ld; i++) {\n", P);
  for (; *body; body++)
    sb_printf(c, "%s%s\n", in, *body);
  sb_printf(c, "%s}\n", in + 4);
}

static void emit_update(const EmitOptions *o, long P, long nruns, StrBuf *c) {
  static const char *const sgd[] = {"params[i] = (real)(params[i] - (double)lr * dparams[i]);", NULL};
  static const char *const momentum[] = {"opt_state[i] = (real)(0.9 * opt_state[i] + dparams[i]);",
                                         "params[i] = (real)(params[i] - (double)lr * opt_state[i]);", NULL};
  static const char *const adam[] = {
      "double p = params[i];",
      "m1[i] = (real)(0.9 * m1[i] + (1.0 - 0.9) * dparams[i]);",
      "m2[i] = (real)(0.999 * m2[i] + (1.0 - 0.999) * (double)dparams[i] * dparams[i]);",
      "params[i] = (real)(p - (double)lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + 1e-8));", NULL};
  if (!nruns) {
    sb_puts(c, "    (void)lr, (void)opt_state; /* the machine reads none of its parameters */\n");
    return;
  }
  switch (o->optimizer) {
  case 0:
    sb_puts(c, "    /* sgd: p -= lr g */\n");
    emit_update_loop(P, nruns, sgd, c);
    break;
  case 1:
    sb_puts(c, "    /* momentum (heavy ball): v = 0.9 v + g, p -= lr v */\n");
    emit_update_loop(P, nruns, momentum, c);
    break;
  default:
    sb_printf(c, "    /* Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,\n"
                 "     * p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps); t counts the steps\n"
                 "     * in opt_state[%ld] */\n"
                 "    real *const m1 = opt_state, *const m2 = opt_state + %ld;\n"
                 "    const double t = (double)(opt_state[%ld] += 1);\n"
                 "    const double c1 = 1.0 - pow(0.9, t), c2 = 1.0 - pow(0.999, t);\n",
              2 * P, P, 2 * P);
    emit_update_loop(P, nruns, adam, c);
    break;
  }
}

/* static const long live[]: the runs of params the machine reads, when it
 * does not read them all; returns their count (-1: all of them). */
static long emit_live_table(const IrMachine *m, StrBuf *c) {
  Arena *a = arena_new();
  long *runs, n = emit_read_runs(a, m, &runs);
  if (n == 1 && runs[0] == 0 && runs[1] == m->param_size)
    n = -1;
  if (n > 0) {
    sb_printf(c, "\n/* The parameters the machine reads, (start, length) runs: the update leaves\n"
                 " * the others alone, as the backward pass leaves their gradient. */\n"
                 "static const long live[%ld] = {", 2 * n);
    for (long r = 0; r < n; r++)
      sb_printf(c, "%s%ld, %ld", !r ? "" : r % 6 ? ", " : ",\n    ", runs[2 * r], runs[2 * r + 1]);
    sb_puts(c, "};\n");
  }
  arena_free(a);
  return n;
}

void emit_train(const IrMachine *m, const EmitOptions *o, const char *prefix, long state_size,
                long state_scratch, long out_off, StrBuf *c) {
  long P = m->param_size, out = IR_BLOCK(m, m->outputs[0])->size, S = state_size, X = state_scratch;
  char past[32] = "", each[64] = ""; /* the convolutions' scratch after each state */
  long nruns = emit_live_table(m, c);
  if (X) {
    snprintf(past, sizeof past, " + %ld", X);
    snprintf(each, sizeof each, ", then %ld of scratch", X);
  }
  sb_printf(c, "\n/* One training step on the batch: forward, loss, backward, update. Returns\n"
               " * the loss before the update. The workspace holds the state and the dual\n"
               " * state (batch x %ld each%s), the cotangent of the output (batch x %ld)\n"
               " * and the gradient of every parameter (%ld). */\n"
               "real %s_train_step(real *params, real *opt_state, const real *const *inputs,\n"
               "        const real *targets, long batch, real lr, void *workspace)\n{\n",
            S, each, out, P, prefix);
  sb_printf(c, "    real *const state = workspace, *const dstate = state + batch * %ld%s;\n"
               "    real *const cot = dstate + batch * %ld%s, *const dparams = cot + batch * %ld;\n"
               "    const real *const cots[1] = {cot};\n"
               "    const real *const z = state + batch * %ld; /* output 0 */\n"
               "    double loss = 0;\n",
            S, past, S, past, out, out_off);
  if (o->optimizer == 0)
    sb_puts(c, "    (void)opt_state;\n");
  sb_printf(c, "    %s_forward(params, inputs, state, batch);\n", prefix);
  emit_loss(o, out, c);
  sb_printf(c, "    %s_backward(params, state, cots, dstate, dparams, batch, 0, 0, 0);\n", prefix);
  emit_update(o, P, nruns, c);
  sb_puts(c, "    return (real)(loss / norm);\n}\n");
}
