/* ember/optim.h - Adam over a flat parameter buffer, with the paper's learning-rate decay.
 *
 * The parameters, gradients and both moments share one layout (net->params), so a step is a
 * single loop. The learning rate at step t (0-based) is lr * decay^(t / decay_steps), the
 * continuous form of "x0.99 every 100 steps".
 *
 *     ember_adam opt;
 *     ember_adam_init(&opt, net.nparams, 1e-3f, NULL);
 *     for (t = 0; t < steps; t++) { ...grad...; ember_adam_step(&opt, net.params, grad); }
 *     ember_adam_free(&opt);
 */
#ifndef EMBER_OPTIM_H
#define EMBER_OPTIM_H

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_adam {
  size_t n;
  float lr, beta1, beta2, eps;
  float decay;      /* multiplicative lr decay per decay_steps (0.99) */
  int decay_steps;  /* (100) */
  float clip_norm;  /* clip the global gradient norm to this if > 0 (off by default) */
  int64_t t;        /* steps taken */
  float *m, *v;     /* (n) moments, one allocation */
} ember_adam;

int ember_adam_init(ember_adam *opt, size_t n, float lr, ember_err *err);
void ember_adam_free(ember_adam *opt);
/* Learning rate that the next step will use. */
float ember_adam_lr(const ember_adam *opt);
/* One update of params (n) from grad (n); grad may be rescaled in place by clipping. */
void ember_adam_step(ember_adam *opt, float *params, float *grad);

#ifdef __cplusplus
}
#endif
#endif
