/* test_finite.c - inference never answers with NaN or Inf. A model whose weights overflow
 * float32 only away from its data's centre passes the loader's probe; every inference entry
 * point must then fail with EMBER_ERANGE for an x where it overflows, and answer where it
 * does not. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"

/* x_dim 1, y_dim 1, width 4: the input projection's x column is 1e30 and the hidden weights
 * 1e20, everything else 0, so E(x = x_mean) = 0 and E(x = x_mean + x_std) overflows. */
static void make_overflowing(ember_model *m, ember_method method) {
  ember_err err;
  ember_arch arch = method == EMBER_METHOD_MSE ? EMBER_ARCH_MLP : EMBER_ARCH_RESNET;
  if (ember_model_init(m, method, 1, 1, arch, 4, 2, &err) < 0) fail_msg("init: %s", err.msg);
  ember_net *net = &m->net;
  for (int i = 0; i < 4; i++) net->layers[0].w[(size_t)i * net->layers[0].in] = 1e30f;
  for (int l = 1; l < net->nlayers - 1; l++)
    for (int i = 0; i < net->layers[l].in * net->layers[l].out; i++) net->layers[l].w[i] = 1e20f;
  for (int i = 0; i < net->layers[net->nlayers - 1].in * net->layers[net->nlayers - 1].out; i++)
    net->layers[net->nlayers - 1].w[i] = 1.0f;
  m->infer.samples = 64;
}

static void check_method(ember_method method) {
  ember_model m, loaded;
  ember_err err;
  make_overflowing(&m, method);
  /* the loader's probe at the data's centre sees nothing wrong */
  const char *path = tu_path(0, "overflow.safetensors");
  if (ember_model_save(&m, path, &err) < 0) fail_msg("save: %s", err.msg);
  if (ember_model_load(path, &loaded, &err) < 0) fail_msg("load: %s", err.msg);
  ember_infer *inf;
  assert_int_equal(ember_infer_create(&inf, &loaded, NULL, &err), 0);
  const float centre[1] = {0.0f}, away[1] = {1.0f};
  float y[1], e[1], my[2], me[2], mw[2], py[64], pe[64];
  int count[1];
  const uint64_t seeds[1] = {1}, streams[1] = {0};
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = 2;

  assert_int_equal(ember_infer_predict(inf, centre, 1, NULL, 1, 0, y, e, &err), 0);
  assert_true(isfinite(y[0]) && isfinite(e[0]));
  assert_int_equal(ember_infer_predict(inf, away, 1, NULL, 1, 0, y, e, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "the model's answer is not finite"));
  assert_int_equal(ember_infer_predict_rows(inf, away, 1, NULL, seeds, streams, y, e, &err), EMBER_ERANGE);
  assert_int_equal(ember_infer_modes(inf, away, 1, NULL, &mo, 1, 0, my, me, mw, count, &err), EMBER_ERANGE);
  assert_int_equal(ember_infer_modes_rows(inf, away, 1, NULL, &mo, seeds, streams, my, me, mw, count, py,
                                          pe, &err),
                   EMBER_ERANGE);
  assert_int_equal(ember_infer_modes_rows(inf, centre, 1, NULL, &mo, seeds, streams, my, me, mw, count, py,
                                          pe, &err),
                   0);
  ember_infer_destroy(inf);
  ember_model_free(&loaded);
  ember_model_free(&m);
}

static void test_dfo(void **state) {
  (void)state;
  check_method(EMBER_METHOD_DFO);
}

static void test_mse(void **state) {
  (void)state;
  check_method(EMBER_METHOD_MSE);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dfo),
      cmocka_unit_test(test_mse),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
