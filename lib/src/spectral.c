/* spectral.c - spectral normalisation: power iteration, the normalised weight, its gradient.
 *
 * Plain loops in double accumulation: the matrices are one layer's weights (at most a few
 * hundred thousand values), touched once per training step, so clarity wins over sgemv.
 */
#include "ember/spectral.h"

#include <math.h>
#include <stddef.h>

static void normalise(float *x, int n) {
  double s = 0.0;
  for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
  double inv = s > 0.0 ? 1.0 / sqrt(s) : 0.0;
  for (int i = 0; i < n; i++) x[i] = (float)(x[i] * inv);
}

void ember_sn_init(float *u, int out, float *v, int in) {
  double su = 0.0, sv = 0.0;
  for (int i = 0; i < out; i++) su += fabs(u[i]);
  for (int j = 0; j < in; j++) sv += fabs(v[j]);
  if (su == 0.0)
    for (int i = 0; i < out; i++) u[i] = 1.0f + 0.01f * (float)(i % 7); /* not orthogonal to much */
  if (sv == 0.0)
    for (int j = 0; j < in; j++) v[j] = 1.0f + 0.01f * (float)(j % 5);
  normalise(u, out);
  normalise(v, in);
}

float ember_sn_power_iteration(const float *w, int out, int in, float *u, float *v, int iters) {
  for (int t = 0; t < iters; t++) {
    for (int j = 0; j < in; j++) {
      double s = 0.0;
      for (int i = 0; i < out; i++) s += (double)w[(size_t)i * in + j] * u[i];
      v[j] = (float)s;
    }
    normalise(v, in);
    for (int i = 0; i < out; i++) {
      double s = 0.0;
      for (int j = 0; j < in; j++) s += (double)w[(size_t)i * in + j] * v[j];
      u[i] = (float)s;
    }
    normalise(u, out);
  }
  double sigma = 0.0;
  for (int i = 0; i < out; i++) {
    double s = 0.0;
    for (int j = 0; j < in; j++) s += (double)w[(size_t)i * in + j] * v[j];
    sigma += u[i] * s;
  }
  return (float)sigma;
}

void ember_sn_apply(const float *w, int out, int in, float sigma, float *w_sn) {
  const float inv = 1.0f / sigma;
  for (size_t k = 0; k < (size_t)out * in; k++) w_sn[k] = w[k] * inv;
}

void ember_sn_backward(const float *w, int out, int in, const float *u, const float *v,
                       float sigma, const float *g_sn, float *g) {
  const double inv = 1.0 / sigma;
  double c = 0.0; /* <g_sn, w_sn> */
  for (size_t k = 0; k < (size_t)out * in; k++) c += (double)g_sn[k] * w[k] * inv;
  for (int i = 0; i < out; i++)
    for (int j = 0; j < in; j++) {
      size_t k = (size_t)i * in + j;
      g[k] += (float)((g_sn[k] - c * u[i] * v[j]) * inv);
    }
}
