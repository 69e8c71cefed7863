/* test_images.c - image models end to end in the library: the coordinate task's .npz read back
 * as images, training an energy model and the MSE baseline with an encoder (both learn the dot's
 * position), bit-identical training for a fixed seed and thread count, a checkpoint round trip
 * (PyTorch names, OIHW shapes, the same answers after loading), and the errors for data that
 * does not fit the model.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"
#include "ember/model.h"
#include "ember/train.h"
#include "tasks/coords.h"

#define SIDE 16

/* n coordinate-task images of one region, through the .npz bytes and the dataset reader */
static void coords_data(int n, uint64_t seed, int region, ember_dataset *ds) {
  ember_coords_opts o = EMBER_COORDS_DEFAULTS;
  o.size = SIDE;
  uint8_t *img = malloc((size_t)n * SIDE * SIDE * 3);
  float *y = malloc(sizeof(float) * 2 * (size_t)n);
  ember_err err;
  assert_int_equal(ember_coords_generate(&o, n, seed, region, img, y, &err), 0);
  for (int i = 0; i < n; i++)
    assert_int_equal(ember_coords_in_train(&o, y[2 * i], y[2 * i + 1]), region == EMBER_COORDS_TRAIN);
  uint8_t *npz;
  size_t len;
  assert_int_equal(ember_npz_images(&npz, &len, img, n, SIDE, SIDE, 3, y, 2, &err), 0);
  if (ember_dataset_read_mem(npz, len, "coords.npz", -1, -1, ds, &err) < 0) fail_msg("%s", err.msg);
  assert_int_equal(ds->n, n);
  assert_int_equal(ds->x_dim, 0);
  assert_null(ds->x);
  assert_int_equal(ds->img_h, SIDE);
  assert_int_equal(ds->img_w, SIDE);
  assert_int_equal(ds->img_c, 3);
  assert_memory_equal(ds->img, img, (size_t)n * SIDE * SIDE * 3);
  assert_memory_equal(ds->y, y, sizeof(float) * 2 * (size_t)n);
  free(npz);
  free(img);
  free(y);
}

static void small_opts(ember_train_opts *o, ember_method method, ember_encoder_shape *es) {
  ember_train_opts_for_method(o, method);
  memset(es, 0, sizeof *es);
  assert_int_equal(ember_conv_spec_parse("8:3:1", es, NULL), 0);
  es->head = EMBER_HEAD_SOFTARGMAX;
  o->encoder = es;
  o->width = 32;
  o->steps = 300;
  o->batch = 32;
  o->negatives = 32;
  o->lr = 3e-3f;
  o->ema = 0.0f;
  o->infer.samples = 512;
  o->seed = 3;
}

/* mean |y - truth| over the rows of ds (images), predicted by m */
static double mean_error(const ember_model *m, const ember_dataset *images) {
  ember_dataset ds = *images;
  ds.img = malloc((size_t)ds.n * SIDE * SIDE * 3);
  memcpy(ds.img, images->img, (size_t)ds.n * SIDE * SIDE * 3);
  ds.x = NULL;
  ds.y = NULL;
  ds.x_names = ds.y_names = NULL;
  ember_err err;
  if (ember_model_encode_dataset(m, &ds, &err) < 0) fail_msg("%s", err.msg);
  assert_int_equal(ds.x_dim, m->x_dim);
  ember_infer *inf;
  assert_int_equal(ember_infer_create(&inf, m, NULL, &err), 0);
  float *y = malloc(sizeof(float) * 2 * (size_t)ds.n);
  if (ember_infer_predict(inf, ds.x, ds.n, NULL, 1, 0, y, NULL, &err) < 0) fail_msg("%s", err.msg);
  double e = 0;
  for (int i = 0; i < 2 * ds.n; i++) e += fabs((double)y[i] - images->y[i]);
  ember_infer_destroy(inf);
  free(y);
  ember_dataset_free(&ds);
  return e / (2.0 * images->n);
}

static void test_image_models_learn_the_dot(void **state) {
  (void)state;
  ember_dataset train;
  coords_data(64, 1, EMBER_COORDS_TRAIN, &train);
  const ember_method methods[] = {EMBER_METHOD_DFO, EMBER_METHOD_MSE};
  for (int k = 0; k < 2; k++) {
    ember_train_opts o;
    ember_encoder_shape es;
    small_opts(&o, methods[k], &es);
    ember_model m;
    ember_err err;
    if (ember_train(&train, &o, NULL, &m, &err) < 0) fail_msg("%s", err.msg);
    assert_non_null(m.enc);
    assert_int_equal(m.x_dim, 16);
    /* the training region's targets span about 1.2 per coordinate: a model that ignored the
     * image would be off by about 0.3 on average */
    double e = mean_error(&m, &train);
    print_message("%s: mean |error| on the training images %.3f\n", ember_method_name(methods[k]), e);
    assert_true(e < 0.12);
    ember_model_free(&m);
  }
  ember_dataset_free(&train);
}

static void test_image_training_is_reproducible_and_checkpoints(void **state) {
  (void)state;
  ember_dataset train;
  coords_data(40, 2, EMBER_COORDS_TRAIN, &train);
  ember_train_opts o;
  ember_encoder_shape es;
  small_opts(&o, EMBER_METHOD_DFO, &es);
  o.steps = 20;
  o.ema = 0.99f;
  ember_pool *pool;
  ember_err err;
  assert_int_equal(ember_pool_create(&pool, 2, &err), 0);
  ember_model a, b, c;
  if (ember_train(&train, &o, pool, &a, &err) < 0) fail_msg("%s", err.msg);
  if (ember_train(&train, &o, pool, &b, &err) < 0) fail_msg("%s", err.msg);
  assert_memory_equal(a.enc->params, b.enc->params, a.enc->nparams * sizeof(float));
  assert_memory_equal(a.net.params, b.net.params, a.net.nparams * sizeof(float));

  const char *path = tu_path(0, "image.safetensors");
  if (ember_model_save(&a, path, &err) < 0) fail_msg("%s", err.msg);
  size_t len;
  char *file = tu_read_file(path, &len);
  /* PyTorch's Conv2d names and OIHW shape, and the encoder's metadata */
  char *header = strndup(file + 8, (size_t)(unsigned char)file[0] | (size_t)(unsigned char)file[1] << 8);
  assert_non_null(strstr(header, "\"encoder.conv.0.weight\":{\"dtype\":\"F32\",\"shape\":[8,3,3,3]"));
  assert_non_null(strstr(header, "\"encoder.conv\":\"8:3:1\""));
  assert_non_null(strstr(header, "\"encoder.image\":\"16x16x3\""));
  assert_non_null(strstr(header, "\"encoder.head\":\"softargmax\""));
  free(header);
  free(file);
  if (ember_model_load(path, &c, &err) < 0) fail_msg("%s", err.msg);
  assert_non_null(c.enc);
  assert_memory_equal(a.enc->params, c.enc->params, a.enc->nparams * sizeof(float));
  assert_true(fabs(mean_error(&a, &train) - mean_error(&c, &train)) == 0.0);

  /* data that does not fit the model */
  ember_dataset other;
  coords_data(3, 5, EMBER_COORDS_TEST, &other);
  other.img_w = 8; /* pretend: a narrower image */
  assert_int_equal(ember_model_encode_dataset(&c, &other, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "16x16x3 images; the data's are 16x8x3"));
  other.img_w = SIDE;
  free(other.img);
  other.img = NULL;
  assert_int_equal(ember_model_encode_dataset(&c, &other, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "takes 16x16x3 images"));
  ember_dataset_free(&other);
  /* ardfo and validation are refused for images */
  ember_model d;
  o.method = EMBER_METHOD_ARDFO;
  assert_int_equal(ember_train(&train, &o, pool, &d, &err), EMBER_ENOTSUP);
  o.method = EMBER_METHOD_DFO;
  o.val_split = 0.2f;
  assert_int_equal(ember_train(&train, &o, pool, &d, &err), EMBER_ENOTSUP);

  ember_model_free(&a);
  ember_model_free(&b);
  ember_model_free(&c);
  ember_pool_destroy(pool);
  ember_dataset_free(&train);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_image_models_learn_the_dot),
      cmocka_unit_test(test_image_training_is_reproducible_and_checkpoints),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
