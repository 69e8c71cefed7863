/* loss.c - InfoNCE and MSE with their gradients.
 *
 * InfoNCE is a log-softmax over each example's candidates, computed with the max subtracted
 * so that energies of any magnitude neither overflow nor underflow. Sums are accumulated in
 * double: a batch holds 512 x 257 terms and the loss is reported to the user.
 */
#include "ember/loss.h"

#include <math.h>
#include <stddef.h>

/* gradients below this are flushed to zero (far above FLT_MIN = 1.2e-38, so that products
 * with weights further down the backward pass stay normal too) */
#define EMBER_LOSS_FLUSH 1e-30

double ember_infonce(const float *e, int nq, int c, float temperature, float scale, float *de) {
  double total = 0.0;
  const double inv_t = 1.0 / (double)temperature;
  for (int i = 0; i < nq; i++) {
    const float *ei = e + (size_t)i * c;
    /* logits l_j = -E_j / tau; max logit = -min E / tau */
    float emin = ei[0];
    for (int j = 1; j < c; j++) emin = ei[j] < emin ? ei[j] : emin;
    double z = 0.0;
    for (int j = 0; j < c; j++) z += exp(-((double)ei[j] - emin) * inv_t);
    double log_z = log(z); /* logsumexp(l) - max l */
    total += ((double)ei[0] - emin) * inv_t + log_z;
    if (de) {
      /* d loss / d E_j = (1/tau) (1[j == 0] - p_j) */
      float *di = de + (size_t)i * c;
      for (int j = 0; j < c; j++) {
        double p = exp(-((double)ei[j] - emin) * inv_t - log_z);
        double g = scale * inv_t * ((j == 0 ? 1.0 : 0.0) - p);
        /* a trained model gives most counter-examples probabilities far below FLT_MIN: as
         * float denormals they changed nothing but slowed every sgemm of the backward pass
         * about 5x (measured: 25 -> 3.5 steps/s by step 1,500 on the particle task; x86
         * sgemm kernels do not flush denormals), so they are zero */
        di[j] = fabs(g) < EMBER_LOSS_FLUSH ? 0.0f : (float)g;
      }
    }
  }
  return total;
}

double ember_mse(const float *pred, const float *y, int n, int d, float scale, float *dpred) {
  double total = 0.0;
  size_t count = (size_t)n * d;
  for (size_t k = 0; k < count; k++) {
    double diff = (double)pred[k] - y[k];
    total += diff * diff;
    if (dpred) dpred[k] = (float)(2.0 * scale * diff);
  }
  return total;
}

double ember_grad_penalty(const float *g, int n, int d, float margin, float scale, float *dir,
                          float *dt) {
  double total = 0.0;
  for (int r = 0; r < n; r++) {
    const float *gr = g + (size_t)r * d;
    int k = 0;
    for (int j = 1; j < d; j++)
      if (fabsf(gr[j]) > fabsf(gr[k])) k = j;
    double excess = (double)fabsf(gr[k]) - margin;
    if (dir)
      for (int j = 0; j < d; j++) dir[(size_t)r * d + j] = 0.0f;
    if (excess > 0.0) {
      total += excess * excess;
      if (dir) dir[(size_t)r * d + k] = 1.0f;
      if (dt) dt[r] = (float)(scale * 2.0 * excess * (gr[k] < 0.0f ? -1.0 : 1.0));
    } else if (dt) {
      dt[r] = 0.0f;
    }
  }
  return total;
}
