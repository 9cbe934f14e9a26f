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

static void emit_update(const EmitOptions *o, long P, StrBuf *c) {
  switch (o->optimizer) {
  case 0:
    sb_printf(c, "    /* sgd: p -= lr g */\n"
                 "%s"
                 "    for (long i = 0; i < %ld; i++)\n"
                 "        params[i] = (real)(params[i] - (double)lr * dparams[i]);\n", par_update(P), P);
    break;
  case 1:
    sb_printf(c, "    /* momentum (heavy ball): v = 0.9 v + g, p -= lr v */\n"
                 "%s"
                 "    for (long i = 0; i < %ld; i++) {\n"
                 "        opt_state[i] = (real)(0.9 * opt_state[i] + dparams[i]);\n"
                 "        params[i] = (real)(params[i] - (double)lr * opt_state[i]);\n"
                 "    }\n", par_update(P), P);
    break;
  default:
    sb_printf(c, "    /* Adam: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,\n"
                 "     * p -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps); t counts the steps\n"
                 "     * in opt_state[%ld] */\n"
                 "    real *const m1 = opt_state, *const m2 = opt_state + %ld;\n"
                 "    const double t = (double)(opt_state[%ld] += 1);\n"
                 "    const double c1 = 1.0 - pow(0.9, t), c2 = 1.0 - pow(0.999, t);\n"
                 "%s"
                 "    for (long i = 0; i < %ld; i++) {\n"
                 "        double p = params[i];\n"
                 "        m1[i] = (real)(0.9 * m1[i] + (1.0 - 0.9) * dparams[i]);\n"
                 "        m2[i] = (real)(0.999 * m2[i] + (1.0 - 0.999) * (double)dparams[i] * dparams[i]);\n"
                 "        params[i] = (real)(p - (double)lr * (m1[i] / c1) / (sqrt(m2[i] / c2) + 1e-8));\n"
                 "    }\n", 2 * P, P, 2 * P, par_update(P), P);
    break;
  }
}

void emit_train(const IrMachine *m, const EmitOptions *o, const char *prefix, long state_size,
                long state_scratch, long out_off, StrBuf *c) {
  long P = m->param_size, out = IR_BLOCK(m, m->outputs[0])->size, S = state_size, X = state_scratch;
  char past[32] = "", each[64] = ""; /* the convolutions' scratch after each state */
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
  emit_update(o, P, c);
  sb_puts(c, "    return (real)(loss / norm);\n}\n");
}
