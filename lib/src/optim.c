/* optim.c - Adam (Kingma & Ba) with bias correction, exponential lr decay, optional clipping.
 *
 * Matches torch.optim.Adam's update (eps added to the bias-corrected sqrt(v)), so a step here
 * and in the PyTorch reference agree to rounding.
 */
#include "ember/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ember_adam_init(ember_adam *opt, size_t n, float lr, ember_err *err) {
  memset(opt, 0, sizeof *opt);
  if (!(lr > 0.0f) || !isfinite(lr))
    return ember_fail(err, EMBER_EINVAL, "learning rate must be a positive number, got %g", (double)lr);
  opt->m = calloc(2 * n, sizeof(float));
  if (!opt->m) return ember_fail(err, EMBER_ENOMEM, "out of memory for Adam moments (%zu)", n);
  opt->v = opt->m + n;
  opt->n = n;
  opt->lr = lr;
  opt->beta1 = 0.9f;
  opt->beta2 = 0.999f;
  opt->eps = 1e-8f;
  opt->decay = 0.99f;
  opt->decay_steps = 100;
  return 0;
}

void ember_adam_free(ember_adam *opt) {
  free(opt->m);
  memset(opt, 0, sizeof *opt);
}

float ember_adam_lr(const ember_adam *opt) {
  if (opt->decay_steps <= 0) return opt->lr;
  return opt->lr * (float)pow(opt->decay, (double)opt->t / opt->decay_steps);
}

void ember_adam_step(ember_adam *opt, float *restrict params, float *restrict grad) {
  size_t n = opt->n;
  if (opt->clip_norm > 0.0f) {
    double sq = 0.0;
    for (size_t i = 0; i < n; i++) sq += (double)grad[i] * grad[i];
    double norm = sqrt(sq);
    if (norm > opt->clip_norm) {
      float s = (float)(opt->clip_norm / norm);
      for (size_t i = 0; i < n; i++) grad[i] *= s;
    }
  }
  float lr = ember_adam_lr(opt);
  opt->t++;
  const float b1 = opt->beta1, b2 = opt->beta2, eps = opt->eps;
  const float c1 = 1.0f - (float)pow(b1, (double)opt->t);
  const float c2 = 1.0f - (float)pow(b2, (double)opt->t);
  const float step = lr / c1, inv_sqrt_c2 = 1.0f / sqrtf(c2);
  float *restrict m = opt->m, *restrict v = opt->v;
  for (size_t i = 0; i < n; i++) {
    float g = grad[i];
    m[i] = b1 * m[i] + (1.0f - b1) * g;
    v[i] = b2 * v[i] + (1.0f - b2) * g * g;
    params[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_c2 + eps);
  }
}
