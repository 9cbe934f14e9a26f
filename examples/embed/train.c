/* train.c — trains the paper's polynomial model (examples/poly.mach) on the
 * device, from its initial weights, then predicts with what it learned.
 *
 * run.sh draws the initial weights (BIN init), bakes them into standalone C
 * with the training step (machc --standalone --train --loss mse --optimizer
 * adam --weights), and builds this file with poly.c and poly_weights.c. The
 * program makes its own data, f(x, y) = (2x - 1)^2 + 2y + xy - 3 on a 6 x 6
 * grid of [0, 1]^2 as examples/run-poly.sh does, copies the baked weights to
 * RAM and runs full-batch Adam steps, printing the loss as it falls; then it
 * predicts points between the grid's with poly_infer. Every buffer is
 * static: no file, no heap. The exit status is 1 when the loss did not fall
 * by the factor FALL. */
#include <stdio.h>
#include <string.h>

#include "poly.h"

enum { GRID = 6, BATCH = GRID * GRID, STEPS = 2000, EVERY = 250, FALL = 100 };

static float f(float x, float y) { return (2 * x - 1) * (2 * x - 1) + 2 * y + x * y - 3; }

/* RAM, all of it: the parameters being trained (the baked ones stay in
 * flash), Adam's two moments and step count, the step's workspace (state
 * and dual state, the output's cotangent, the gradients), the data. */
static float params[POLY_PARAM_SIZE];
static float opt_state[POLY_OPT_STATE_SIZE]; /* zero before the first step */
static float workspace[POLY_TRAIN_WORKSPACE_BYTES(BATCH) / sizeof(float)];
static float x[BATCH][2], t[BATCH];

/* One prediction with the trained parameters, in inference's own workspace. */
static float predict(float a, float b) {
    static float ws[POLY_WORKSPACE_SIZE + POLY_WORKSPACE_SCRATCH];
    const float in[2] = {a, b};
    float y;
    const float *inputs[POLY_N_INPUTS] = {in};
    float *outputs[POLY_N_OUTPUTS] = {&y};
    poly_infer(params, inputs, outputs, 1, ws);
    return y;
}

int main(void) {
    for (int i = 0; i < GRID; i++)
        for (int j = 0; j < GRID; j++) {
            float a = (float)i / (GRID - 1), b = (float)j / (GRID - 1);
            x[i * GRID + j][0] = a;
            x[i * GRID + j][1] = b;
            t[i * GRID + j] = f(a, b);
        }
    memcpy(params, poly_weights, sizeof params);
    printf("training poly on the device: %d samples, full batch, Adam at lr 0.1; RAM %lu bytes\n",
           BATCH, (unsigned long)(sizeof params + sizeof opt_state + sizeof workspace + sizeof x + sizeof t));
    const float *inputs[POLY_N_INPUTS] = {&x[0][0]};
    float first = 0, loss = 0;
    for (int step = 0; step <= STEPS; step++) {
        loss = poly_train_step(params, opt_state, inputs, t, BATCH, 0.1f, workspace);
        if (step == 0)
            first = loss;
        if (step % EVERY == 0)
            printf("step %4d: loss %.6g\n", step, loss);
    }
    printf("between the grid's points:\n%8s %8s %12s %12s\n", "x", "y", "predicted", "true");
    for (int k = 0; k < 4; k++) {
        float a = 0.1f + 0.27f * (float)k, b = 0.9f - 0.23f * (float)k;
        printf("%8.3f %8.3f %12.6f %12.6f\n", a, b, predict(a, b), f(a, b));
    }
    printf("loss fell from %.6g to %.6g, %.0f times lower\n", first, loss, first / loss);
    return first / loss >= FALL ? 0 : 1;
}
