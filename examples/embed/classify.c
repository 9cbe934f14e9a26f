/* classify.c — tells sine, square and sawtooth waves apart on a device, with
 * the weights of a trained examples/waves.mach baked into the program.
 *
 * run.sh trains the model, bakes its weights (machc --standalone --weights),
 * and builds this file with waves.c and waves_weights.c: no file is read, no
 * memory allocated. The waves here come from a small generator, as a sensor
 * would deliver them: 32 steps, random frequency and phase, some noise, as
 * in training (examples/run-waves.sh). Prints each verdict; the exit status
 * is the number of waves classified wrongly. */
#include <math.h>
#include <stdio.h>

#include "waves.h"

enum { STEPS = 32, CLASSES = 3, PER_CLASS = 10 };

static const char *const names[CLASSES] = {"sine", "square", "sawtooth"};

/* A uniform number in [0, 1): a 32-bit LCG, enough for test signals. */
static float uniform(unsigned long *s) {
    *s = (*s * 1664525UL + 1013904223UL) & 0xffffffffUL;
    return (float)(*s >> 8) / 16777216.0f;
}

/* One wave of class c, 32 steps. */
static void make_wave(int c, unsigned long *seed, float *x) {
    float f = 0.05f + 0.1f * uniform(seed), phase = uniform(seed);
    for (int t = 0; t < STEPS; t++) {
        float u = f * (float)t + phase, s = sinf(6.2831853f * u);
        float v = c == 0 ? s : c == 1 ? (s >= 0 ? 1.0f : -1.0f) : 2 * (u - floorf(u)) - 1;
        x[t] = v + 0.1f * (uniform(seed) - 0.5f);
    }
}

/* The class with the highest score, from one forward pass in the planned
 * workspace (WAVES_WORKSPACE_SIZE scalars per sample, less than half of the
 * state waves_forward would fill). */
static int classify(const float *wave) {
    static float workspace[WAVES_WORKSPACE_SIZE + WAVES_WORKSPACE_SCRATCH]; /* one sample */
    float score[3];                                /* output 0: y, 3 scores */
    const float *inputs[WAVES_N_INPUTS] = {wave};
    float *outputs[WAVES_N_OUTPUTS] = {score};
    waves_infer(waves_weights, inputs, outputs, 1, workspace);
    int best = 0;
    for (int k = 1; k < CLASSES; k++)
        if (score[k] > score[best])
            best = k;
    return best;
}

int main(void) {
    unsigned long seed = 2024;
    int wrong = 0;
    for (int n = 0; n < CLASSES * PER_CLASS; n++) {
        int c = n % CLASSES;
        float wave[STEPS];
        make_wave(c, &seed, wave);
        int got = classify(wave);
        wrong += got != c;
        printf("wave %2d: %-8s -> %-8s%s\n", n, names[c], names[got], got == c ? "" : "  (wrong)");
    }
    printf("classified %d of %d waves correctly\n", CLASSES * PER_CLASS - wrong, CLASSES * PER_CLASS);
    return wrong;
}
