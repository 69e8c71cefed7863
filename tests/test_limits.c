/* test_limits.c - what a model, a training run and a query may cost: every limit refuses before
 * anything big is allocated or computed, with a message naming the size and the limit, and a
 * size just inside it is accepted. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"
#include "ember/train.h"

/* n rows of x (2 columns) and y (1 column) on a line */
static void make_data(ember_dataset *ds, int n) {
  ds->n = n;
  ds->x_dim = 2;
  ds->y_dim = 1;
  ds->x = malloc(sizeof(float) * (size_t)n * 2);
  ds->y = malloc(sizeof(float) * (size_t)n);
  assert_non_null(ds->x);
  assert_non_null(ds->y);
  for (int i = 0; i < n; i++) {
    ds->x[2 * i] = (float)i / (float)n;
    ds->x[2 * i + 1] = 1.0f - (float)i / (float)n;
    ds->y[i] = 2.0f * (float)i / (float)n;
  }
}

static int count_steps(void *ctx, const ember_train_progress *p) {
  (void)p;
  ++*(int *)ctx;
  return 0;
}

static void small_opts(ember_train_opts *o, int *steps_seen) {
  ember_train_opts_default(o);
  o->width = 8;
  o->batch = 8;
  o->negatives = 8;
  o->steps = 2;
  o->infer.samples = 64;
  o->progress = count_steps;
  o->progress_ctx = steps_seen;
}

/* Default inference options beyond a request's limits are refused before the first step, not
 * after the last one when the checkpoint is saved. */
static void test_train_refuses_defaults_beyond_request_limits(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 20);
  ember_train_opts o;
  ember_model m;
  ember_err err;
  int steps = 0;
  small_opts(&o, &steps);
  o.infer.samples = EMBER_MAX_SAMPLES + 1;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "65537 samples per query, more than the 65536"));
  assert_int_equal(steps, 0);
  o.infer.samples = EMBER_MAX_SAMPLES; /* 3 iterations of an 8-wide net: well inside */
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), 0);
  assert_int_equal(steps, 2);
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_refuses_defaults_beyond_request_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
