/* fake_model.h — hand-written models with the exact layout machc generates,
 * so the runtime can be tested without the compiler.
 *
 * fake_reg: u[2] -> h[3] (tanh) -> y[1] (identity), dense with biases.
 * fake_cls: the same with y[2], for softmax cross-entropy.
 * Parameters: W_h_u [2, H], b_h [H], W_y_h [H, O], b_y [O] (dense is [in, out]).
 *
 * fake_live, fake_cut: fake_reg with an optimizer that updates only some
 *   entries; fake_cut runs the runtime's passes in odd pieces (its par_for).
 * fake_two: two inputs and two outputs, for the NAME=PATH options:
 *   inputs a[1], b[2]; outputs p[1] = k * a, q[2] = b + c; parameters k [1], c [2].
 */
#ifndef FAKE_MODEL_H
#define FAKE_MODEL_H

#include "machrt.h"

extern const struct mach_model fake_reg;
extern const struct mach_model fake_cls;
extern const struct mach_model fake_two;
extern const struct mach_model fake_live;
extern const struct mach_model fake_cut;

#endif
