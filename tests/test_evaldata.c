/* test_evaldata.c - `ember eval data`'s numbers (tasks/evaldata.c): the scores of rows whose
 * answers are known, the sample counts that fit a request's limits, and a two-valued toy where
 * a single prediction is right for about half the rows while the modes cover both branches. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/train.h"
#include "tasks/evaldata.h"

static void test_score_known_rows(void **state) {
  (void)state;
  /* y_dim 2: errors are Euclidean distances 0.05, 0.5, 0 and 5 (a 3-4-5 triangle) */
  const float y[] = {0, 0, 1, 1, 2, 2, 3, 3};
  const float pred[] = {0.05f, 0, 1, 1.5f, 2, 2, 6, 7};
  ember_evaldata_score s = {.samples = 64};
  ember_err err;
  assert_int_equal(ember_evaldata_score_rows(y, pred, NULL, NULL, 4, 2, 1, 0.1f, &s, &err), 0);
  assert_int_equal(s.samples, 64); /* kept: the caller's label */
  assert_int_equal(s.rows, 4);
  assert_true(fabs(s.err_mean - (0.05 + 0.5 + 0 + 5) / 4) < 1e-6);
  assert_true(fabs(s.err_median - (0.05 + 0.5) / 2) < 1e-6);
  assert_true(fabs(s.err_max - 5.0) < 1e-6);
  assert_true(fabs(s.sq_err_mean - (0.05 * 0.05 + 0.25 + 0 + 25) / 4) < 1e-6);
  assert_true(fabs(s.within - 0.5) < 1e-12);
  assert_true(fabs(s.coverage - 0.5) < 1e-12); /* no modes: the prediction is the only one */
  assert_true(fabs(s.modes_mean - 1.0) < 1e-12);

  /* modes (k 3): row 0 has none, row 1 covers y with its second mode, row 2 with none of its
   * two, row 3 with its third */
  const float my[] = {9, 9, 9, 9, 9, 9,  0, 0, 1.05f, 1, 9, 9,  2.2f, 2, 1.9f, 2.3f, 9, 9,  0, 0, 1, 1, 3, 3.01f};
  const int count[] = {0, 2, 2, 3};
  assert_int_equal(ember_evaldata_score_rows(y, pred, my, count, 4, 2, 3, 0.1f, &s, &err), 0);
  assert_true(fabs(s.coverage - 0.5) < 1e-12);
  assert_true(fabs(s.modes_mean - 7.0 / 4) < 1e-12);
  assert_true(fabs(s.within - 0.5) < 1e-12); /* the prediction's share does not change */
  /* odd count: the median is the middle row */
  assert_int_equal(ember_evaldata_score_rows(y, pred, NULL, NULL, 3, 2, 1, 1.0f, &s, &err), 0);
  assert_true(fabs(s.err_median - 0.05) < 1e-6);
  assert_true(fabs(s.within - 1.0) < 1e-12);

  assert_int_equal(ember_evaldata_score_rows(y, pred, NULL, NULL, 4, 2, 1, 0.0f, &s, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "the tolerance must be a finite value > 0, got 0");
  const int bad[] = {0, 4, 0, 0};
  assert_int_equal(ember_evaldata_score_rows(y, pred, my, bad, 4, 2, 3, 0.1f, &s, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "row 1 has 4 modes, not 0..3");
}

static void test_sample_limits(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  /* a 256x8 MLP at 1000 iterations per query: 16384 and 4096 samples cost more than a request
   * may; 1024 does not */
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_DFO, 1, 1, EMBER_ARCH_MLP, 256, 8, &err), 0);
  m.infer.iters = 1000;
  int s[EMBER_EVALDATA_MAX_SAMPLES];
  int n = ember_evaldata_default_samples(&m, s);
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  assert_int_equal(n, 3);
  assert_int_equal(s[0], 64);
  assert_int_equal(s[2], 1024);
  assert_int_equal(ember_evaldata_check_samples(&m, 1024, &mo, &err), 0);
  assert_int_equal(ember_evaldata_check_samples(&m, 4096, &mo, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "4096 samples cost"));
  assert_non_null(strstr(err.msg, "more than the 2000 a request may (EMBER_MAX_REQUEST_GFLOP)"));
  m.infer.iters = 3;
  assert_int_equal(ember_evaldata_default_samples(&m, s), 5);
  assert_int_equal(s[4], 16384);
  assert_int_equal(ember_evaldata_check_samples(&m, 70000, &mo, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "samples must be 1..65536 (what a request may ask for), got 70000");
  ember_model_free(&m);
}

/* x uniform in [-1, 1], y = +1 or -1 at random: two valid y at every x */
static void two_valued(ember_dataset *ds, int n, uint64_t seed) {
  tu_dataset_alloc(ds, n, 1, 1);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  for (int i = 0; i < n; i++) {
    ds->x[i] = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    ds->y[i] = ember_rng_below(&rng, 2) ? 1.0f : -1.0f;
  }
}

static void test_two_valued_toy(void **state) {
  (void)state;
  ember_dataset train, test;
  two_valued(&train, 400, 1);
  two_valued(&test, 200, 2);
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.width = 32;
  o.batch = 64;
  o.negatives = 64;
  o.steps = 300;
  o.lr = 3e-3f;
  o.seed = 3;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_model m;
  ember_err err;
  assert_int_equal(ember_train(&train, &o, pool, &m, &err), 0);
  ember_evaldata_opts eo = EMBER_EVALDATA_DEFAULTS;
  eo.tol = 0.2f;
  eo.nsamples = 2;
  eo.samples[0] = 256;
  eo.samples[1] = 1024;
  ember_evaldata_score s[EMBER_EVALDATA_MAX_SAMPLES];
  int ns;
  assert_int_equal(ember_evaldata_run(&m, &test, &eo, pool, s, &ns, &err), 0);
  assert_int_equal(ns, 2);
  for (int i = 0; i < ns; i++) {
    assert_int_equal(s[i].samples, eo.samples[i]);
    assert_int_equal(s[i].rows, 200);
    /* one answer per row picks a branch without knowing which one this row took */
    assert_true(s[i].within > 0.3 && s[i].within < 0.7);
    assert_true(s[i].err_median < 2.2);
    /* the two modes find both */
    assert_true(s[i].coverage > 0.9);
    assert_true(s[i].modes_mean > 1.8);
  }
  /* the same seed gives the same numbers; rows are scored independently of how they are cut */
  ember_evaldata_score again[EMBER_EVALDATA_MAX_SAMPLES];
  assert_int_equal(ember_evaldata_run(&m, &test, &eo, pool, again, &ns, &err), 0);
  assert_memory_equal(s, again, sizeof s[0] * 2);

  /* data with other columns than the model's is refused */
  test.x_dim = 2;
  assert_int_equal(ember_evaldata_run(&m, &test, &eo, pool, s, &ns, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "the data has 200 rows of 2 x and 1 y columns; the model takes 1 x and answers 1 y");
  test.x_dim = 1;

  /* an explicit model: one score, its prediction the only mode; on this data it answers the
   * mean, 0, which is within 0.2 of no row */
  o.method = EMBER_METHOD_MSE;
  o.steps = 100;
  ember_model mse;
  assert_int_equal(ember_train(&train, &o, pool, &mse, &err), 0);
  assert_int_equal(ember_evaldata_run(&mse, &test, &eo, pool, s, &ns, &err), 0);
  assert_int_equal(ns, 1);
  assert_int_equal(s[0].samples, 0);
  assert_true(s[0].within < 0.1);
  assert_true(fabs(s[0].coverage - s[0].within) < 1e-12);
  assert_true(fabs(s[0].modes_mean - 1.0) < 1e-12);
  ember_model_free(&mse);
  ember_model_free(&m);
  ember_pool_destroy(pool);
  ember_dataset_free(&train);
  ember_dataset_free(&test);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_score_known_rows),
      cmocka_unit_test(test_sample_limits),
      cmocka_unit_test(test_two_valued_toy),
  };
  ember_blas_single_thread();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
