/* test_spectral.c - spectral normalisation: the normalised weight's top singular value is 1,
 * and the gradient through W / sigma(W) (u, v fixed within a step) matches finite differences. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>

#include "ember/spectral.h"

enum { OUT = 7, IN = 5 };

/* largest singular value by many power iterations on a copy, in double */
static double top_singular(const float *w, int out, int in) {
  float u[64] = {0}, v[64] = {0};
  ember_sn_init(u, out, v, in);
  return ember_sn_power_iteration(w, out, in, u, v, 500);
}

static void test_normalised_weight_has_unit_norm(void **state) {
  (void)state;
  ember_rng rng;
  ember_rng_seed(&rng, 1, 0);
  float w[OUT * IN], w_sn[OUT * IN], u[OUT] = {0}, v[IN] = {0};
  for (int k = 0; k < OUT * IN; k++) w[k] = 3.0f * ember_rng_normal(&rng);
  ember_sn_init(u, OUT, v, IN);
  /* one iteration per "step": over steps sigma converges to the top singular value */
  float sigma = 0;
  for (int step = 0; step < 60; step++) sigma = ember_sn_power_iteration(w, OUT, IN, u, v, 1);
  double s1 = top_singular(w, OUT, IN);
  assert_float_equal(sigma, s1, 1e-3 * s1);
  ember_sn_apply(w, OUT, IN, sigma, w_sn);
  assert_float_equal(top_singular(w_sn, OUT, IN), 1.0, 1e-3);
  /* a diagonal matrix: the top singular value is its largest entry */
  float d[3 * 3] = {2, 0, 0, 0, -5, 0, 0, 0, 1};
  assert_float_equal(top_singular(d, 3, 3), 5.0, 1e-4);
}

/* L(W) = sum C . (W / sigma), sigma = u^T W v with u, v fixed */
static double loss(const float *w, const float *u, const float *v, const float *c) {
  double sigma = 0;
  for (int i = 0; i < OUT; i++)
    for (int j = 0; j < IN; j++) sigma += (double)u[i] * w[i * IN + j] * v[j];
  double l = 0;
  for (int k = 0; k < OUT * IN; k++) l += (double)c[k] * w[k] / sigma;
  return l;
}

static void test_gradient_matches_finite_differences(void **state) {
  (void)state;
  ember_rng rng;
  ember_rng_seed(&rng, 2, 0);
  float w[OUT * IN], c[OUT * IN], u[OUT] = {0}, v[IN] = {0}, g[OUT * IN] = {0};
  for (int k = 0; k < OUT * IN; k++) w[k] = ember_rng_normal(&rng), c[k] = ember_rng_normal(&rng);
  ember_sn_init(u, OUT, v, IN);
  float sigma = ember_sn_power_iteration(w, OUT, IN, u, v, 3);
  ember_sn_backward(w, OUT, IN, u, v, sigma, c, g); /* dL/dW_sn = C */
  for (int k = 0; k < OUT * IN; k++) {
    float keep = w[k];
    double h = 1e-3;
    w[k] = keep + (float)h;
    double a = loss(w, u, v, c);
    w[k] = keep - (float)h;
    double b = loss(w, u, v, c);
    w[k] = keep;
    double fd = (a - b) / (2 * h);
    if (fabs(fd - g[k]) > 1e-3 * fmax(1.0, fabs(fd))) fail_msg("dW[%d]: analytic %g, finite difference %g", k, (double)g[k], fd);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_normalised_weight_has_unit_norm),
      cmocka_unit_test(test_gradient_matches_finite_differences),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
