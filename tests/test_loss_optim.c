/* test_loss_optim.c - InfoNCE and MSE values and gradients (finite differences), Adam's
 * update against hand-computed steps, the learning-rate decay. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/loss.h"
#include "ember/optim.h"

static void test_infonce_values(void **state) {
  (void)state;
  /* equal energies: loss = log(c) */
  float e[4] = {3, 3, 3, 3};
  assert_float_equal(ember_infonce(e, 1, 4, 1.0f, 1.0f, NULL), log(4.0), 1e-9);
  /* hand-computed: -log(e^-0 / (e^-0 + e^-1 + e^-2)) */
  float e2[3] = {0, 1, 2};
  double want = -log(1.0 / (1.0 + exp(-1.0) + exp(-2.0)));
  assert_float_equal(ember_infonce(e2, 1, 3, 1.0f, 1.0f, NULL), want, 1e-6);
  /* temperature divides the energies */
  float e3[3] = {0, 2, 4};
  assert_float_equal(ember_infonce(e3, 1, 3, 2.0f, 1.0f, NULL), want, 1e-6);
  /* huge energies neither overflow nor underflow */
  float e4[2] = {1e30f, 1e30f};
  assert_float_equal(ember_infonce(e4, 1, 2, 1.0f, 1.0f, NULL), log(2.0), 1e-9);
  float e5[2] = {-1e4f, 1e4f};
  assert_true(ember_infonce(e5, 1, 2, 1.0f, 1.0f, NULL) < 1e-12);
}

static void test_infonce_gradient(void **state) {
  (void)state;
  enum { NQ = 3, C = 5 };
  float e[NQ * C], de[NQ * C];
  ember_rng rng;
  ember_rng_seed(&rng, 3, 0);
  for (int i = 0; i < NQ * C; i++) e[i] = 2.0f * ember_rng_normal(&rng);
  const float temp = 0.7f, scale = 1.0f / NQ;
  ember_infonce(e, NQ, C, temp, scale, de);
  double row_sum = 0;
  for (int i = 0; i < NQ * C; i++) {
    float keep = e[i];
    double h = 1e-2;
    e[i] = keep + (float)h;
    double a = ember_infonce(e, NQ, C, temp, scale, NULL);
    e[i] = keep - (float)h;
    double b = ember_infonce(e, NQ, C, temp, scale, NULL);
    e[i] = keep;
    double fd = scale * (a - b) / (2 * h);
    if (fabs(fd - de[i]) > 1e-4) fail_msg("de[%d] = %g, finite difference %g", i, (double)de[i], fd);
    row_sum += de[i];
  }
  /* softmax gradients of each example sum to zero */
  assert_float_equal(row_sum, 0.0, 1e-6);
}

/* A confident example: counter-examples 100 and 200 energy units above the true y have
 * probabilities e^-100 (4e-44) and e^-200; their gradients are exactly zero, never float
 * denormals (which slowed training's sgemms ~5x), while a nearby one keeps its gradient. */
static void test_infonce_flushes_tiny_gradients(void **state) {
  (void)state;
  float e[4] = {0.0f, 100.0f, 200.0f, 30.0f}, de[4];
  double loss = ember_infonce(e, 1, 4, 1.0f, 1.0f, de);
  assert_true(loss > 0.0 && loss < 1e-12);
  assert_true(de[1] == 0.0f);
  assert_true(de[2] == 0.0f);
  assert_float_equal(de[3], -expf(-30.0f), 1e-18);
  for (int j = 0; j < 4; j++) assert_true(de[j] == 0.0f || fabsf(de[j]) >= FLT_MIN);
}

static void test_mse(void **state) {
  (void)state;
  float pred[4] = {1, 2, 3, 4}, y[4] = {1, 0, 3, 6}, d[4];
  assert_float_equal(ember_mse(pred, y, 2, 2, 0.25f, d), 0 + 4 + 0 + 4, 1e-9);
  float want[4] = {0, 2 * 0.25f * 2, 0, 2 * 0.25f * -2};
  for (int i = 0; i < 4; i++) assert_float_equal(d[i], want[i], 1e-7);
}

static void test_grad_penalty(void **state) {
  (void)state;
  /* rows: under the margin; over it through a positive component; through a negative one */
  float g[3 * 2] = {0.5f, -0.9f, 1.5f, 0.2f, 0.1f, -3.0f}, dir[6], dt[3];
  double p = ember_grad_penalty(g, 3, 2, 1.0f, 0.5f, dir, dt);
  assert_float_equal(p, 0.25 + 4.0, 1e-6);
  const float want_dir[6] = {0, 0, 1, 0, 0, 1};
  for (int i = 0; i < 6; i++) assert_float_equal(dir[i], want_dir[i], 0);
  assert_float_equal(dt[0], 0.0, 0);
  assert_float_equal(dt[1], 0.5 * 2 * 0.5, 1e-6);
  assert_float_equal(dt[2], 0.5 * 2 * 2.0 * -1, 1e-6);
  /* dt is the derivative of scale * penalty along dir: finite differences on g */
  for (int r = 1; r < 3; r++) {
    int k = r == 1 ? 0 : 1;
    float keep = g[2 * r + k];
    g[2 * r + k] = keep + 1e-3f;
    double a = ember_grad_penalty(g, 3, 2, 1.0f, 0.5f, NULL, NULL);
    g[2 * r + k] = keep - 1e-3f;
    double b = ember_grad_penalty(g, 3, 2, 1.0f, 0.5f, NULL, NULL);
    g[2 * r + k] = keep;
    assert_float_equal(0.5 * (a - b) / 2e-3, dt[r], 1e-3);
  }
}

static void test_adam_matches_hand_computation(void **state) {
  (void)state;
  ember_adam opt;
  assert_int_equal(ember_adam_init(&opt, 2, 0.1f, NULL), 0);
  opt.decay = 1.0f;
  float p[2] = {1.0f, -1.0f}, g[2] = {0.5f, -2.0f};
  /* step 1: m = 0.1 g, v = 0.001 g^2, mhat = g, vhat = g^2 -> p -= lr * g / (|g| + eps) */
  ember_adam_step(&opt, p, g);
  assert_float_equal(p[0], 1.0f - 0.1f, 1e-6);
  assert_float_equal(p[1], -1.0f + 0.1f, 1e-6);
  /* step 2 with g' : m = 0.9*0.1g + 0.1g', v = 0.999*0.001g^2 + 0.001g'^2 */
  float g2[2] = {0.25f, 1.0f};
  double m0 = 0.9 * 0.05 + 0.1 * 0.25, v0 = 0.999 * 0.001 * 0.25 + 0.001 * 0.0625;
  double mh = m0 / (1 - 0.81), vh = v0 / (1 - 0.998001);
  double want0 = 0.9 - 0.1 * mh / (sqrt(vh) + 1e-8);
  ember_adam_step(&opt, p, g2);
  assert_float_equal(p[0], want0, 1e-5);
  ember_adam_free(&opt);
  ember_err err;
  assert_int_equal(ember_adam_init(&opt, 2, -1.0f, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "learning rate"));
}

static void test_lr_decay(void **state) {
  (void)state;
  ember_adam opt;
  assert_int_equal(ember_adam_init(&opt, 1, 1e-3f, NULL), 0);
  float p = 0, g = 1;
  assert_float_equal(ember_adam_lr(&opt), 1e-3, 1e-9);
  for (int i = 0; i < 100; i++) {
    g = 1;
    ember_adam_step(&opt, &p, &g);
  }
  assert_float_equal(ember_adam_lr(&opt), 0.99e-3, 1e-9);
  for (int i = 0; i < 100; i++) {
    g = 1;
    ember_adam_step(&opt, &p, &g);
  }
  assert_float_equal(ember_adam_lr(&opt), 0.99 * 0.99e-3, 1e-9);
  ember_adam_free(&opt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_infonce_values),
      cmocka_unit_test(test_infonce_gradient),
      cmocka_unit_test(test_infonce_flushes_tiny_gradients),
      cmocka_unit_test(test_mse),
      cmocka_unit_test(test_grad_penalty),
      cmocka_unit_test(test_adam_matches_hand_computation),
      cmocka_unit_test(test_lr_decay),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
