/* test_signature.c - "no silent wrong answers" in the library: a model keeps the names of the
 * columns it was trained on (its signature), and says how far an x lies from its training
 * data (ember_model_x_max_abs_z, the one measure behind `ember predict`'s note and emberd's
 * x_max_abs_z). The names' own rules and their trip through a checkpoint are in
 * test_dataset.c and test_checkpoint.c. */
#include "testutil.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/dataset.h"
#include "ember/model.h"
#include "ember/train.h"

static void test_x_max_abs_z(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_DFO, 3, 1, EMBER_ARCH_MLP, 4, 2, &err), 0);
  const float mean[] = {1, -2, 10}, sd[] = {0.5f, 2, 4};
  memcpy(m.x_mean, mean, sizeof mean);
  memcpy(m.x_std, sd, sizeof sd);
  const float x[] = {
      1, -2, 10,     /* the mean: 0 */
      1.5f, -1, 12,  /* 1, 0.5, 0.5 sd: 1 at column 0 */
      1, -2, -30,    /* -40 / 4: 10 at column 2 */
      0, 18, 10,     /* 2 and 10: the larger, at column 1 */
      3e38f, 0, 0,   /* beyond float: saturates, never Inf */
  };
  float z[5];
  int col[5];
  ember_model_x_max_abs_z(&m, x, 5, z, col);
  const float want[] = {0, 1, 10, 10};
  const int wcol[] = {0, 0, 2, 1};
  for (int i = 0; i < 4; i++) {
    assert_float_equal(z[i], want[i], 1e-6);
    assert_int_equal(col[i], wcol[i]);
  }
  assert_true(isfinite(z[4]) && z[4] == FLT_MAX);
  /* col may be NULL */
  float z1;
  ember_model_x_max_abs_z(&m, x + 3, 1, &z1, NULL);
  assert_float_equal(z1, 1, 1e-6);
  ember_model_free(&m);
}

/* ember_train gives the model the data's names; data without names leaves the defaults */
static void test_train_keeps_names(void **state) {
  (void)state;
  const char *csv = "px,py,y:ax\n0.1,0.2,1\n0.3,0.1,2\n0.2,0.4,3\n0.5,0.5,4\n";
  ember_dataset ds;
  ember_err err;
  assert_int_equal(ember_dataset_read_mem(csv, strlen(csv), "d.csv", -1, -1, &ds, &err), 0);
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.steps = 2;
  o.batch = 4;
  o.negatives = 4;
  o.width = 4;
  o.infer.samples = 64;
  ember_model m;
  if (ember_train(&ds, &o, NULL, &m, &err) < 0) fail_msg("train: %s", err.msg);
  assert_string_equal(m.x_names[0], "px");
  assert_string_equal(m.x_names[1], "py");
  assert_string_equal(m.y_names[0], "ax");
  const char *path = tu_path(0, "named.safetensors");
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  ember_model_free(&m);
  assert_int_equal(ember_model_load(path, &m, &err), 0);
  assert_string_equal(m.y_names[0], "ax");
  ember_model_free(&m);
  free(ds.x_names);
  free(ds.y_names);
  ds.x_names = ds.y_names = NULL;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), 0);
  assert_string_equal(m.x_names[1], "x1");
  assert_string_equal(m.y_names[0], "y0");
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_x_max_abs_z),
      cmocka_unit_test(test_train_keeps_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
