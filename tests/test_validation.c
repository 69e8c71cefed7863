/* test_validation.c - validation during training: the held-out split (deterministic for the
 * seed, every row once, the file's order kept), the validation loss (exactly the chance level
 * for a model whose energy says nothing, below it once trained), ember_train's val and
 * val_split (the same model and loss either way), and the checkpoint keys that keep it. */
#define _GNU_SOURCE /* memmem */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/train.h"

/* n rows: x = (i, -i), y = (1000 + i): every row recognisable by its values */
static void numbered(ember_dataset *ds, int n) {
  tu_dataset_alloc(ds, n, 2, 1);
  for (int i = 0; i < n; i++) {
    ds->x[2 * i] = (float)i;
    ds->x[2 * i + 1] = (float)-i;
    ds->y[i] = 1000.0f + (float)i;
  }
}

/* y = sin(2 x0) + 0.5 x1 with x uniform in [-1, 1]^2: learnable by a small net */
static void smooth(ember_dataset *ds, int n, uint64_t seed) {
  tu_dataset_alloc(ds, n, 2, 1);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  for (int i = 0; i < n; i++) {
    float a = 2.0f * ember_rng_uniform(&rng) - 1.0f, b = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    ds->x[2 * i] = a;
    ds->x[2 * i + 1] = b;
    ds->y[i] = sinf(2.0f * a) + 0.5f * b;
  }
}

static void test_split_rows(void **state) {
  (void)state;
  assert_int_equal(ember_dataset_split_rows(10, 0.3f), 3);
  assert_int_equal(ember_dataset_split_rows(100, 0.25f), 25);
  assert_int_equal(ember_dataset_split_rows(2, 0.01f), 1);  /* at least one held out */
  assert_int_equal(ember_dataset_split_rows(10, 0.99f), 9); /* at least one to train on */
  assert_int_equal(ember_dataset_split_rows(1, 0.5f), 0);
  assert_int_equal(ember_dataset_split_rows(10, 0.0f), 0);
  assert_int_equal(ember_dataset_split_rows(10, 1.0f), 0);
}

/* both parts keep the file's column names: a model trained on a split has the file's signature */
static void test_split_keeps_names(void **state) {
  (void)state;
  ember_dataset ds, tr, va;
  numbered(&ds, 10);
  const char *xn[] = {"p", "q"}, *yn[] = {"r"};
  ds.x_names = ember_names_new(xn, 2, 'x');
  ds.y_names = ember_names_new(yn, 1, 'y');
  assert_int_equal(ember_dataset_split(&ds, 0.3f, 1, &tr, &va, NULL), 0);
  const ember_dataset *parts[2] = {&tr, &va};
  for (int k = 0; k < 2; k++) {
    assert_non_null(parts[k]->x_names);
    assert_string_equal(parts[k]->x_names[1], "q");
    assert_string_equal(parts[k]->y_names[0], "r");
  }
  ember_dataset_free(&tr);
  ember_dataset_free(&va);
  ember_dataset_free(&ds);
}

static void test_split(void **state) {
  (void)state;
  ember_dataset ds, tr, va, tr2, va2;
  numbered(&ds, 50);
  ember_err err;
  assert_int_equal(ember_dataset_split(&ds, 0.2f, 7, &tr, &va, &err), 0);
  assert_int_equal(va.n, 10);
  assert_int_equal(tr.n, 40);
  assert_int_equal(tr.x_dim * 10 + tr.y_dim, 21);
  assert_int_equal(va.x_dim * 10 + va.y_dim, 21);
  int seen[50] = {0};
  const ember_dataset *parts[2] = {&tr, &va};
  for (int p = 0; p < 2; p++)
    for (int i = 0; i < parts[p]->n; i++) {
      int row = (int)parts[p]->x[2 * i];
      assert_true(row >= 0 && row < 50);
      assert_float_equal(parts[p]->x[2 * i + 1], (float)-row, 0.0f); /* x and y move together */
      assert_float_equal(parts[p]->y[i], 1000.0f + (float)row, 0.0f);
      if (i > 0) assert_true(row > (int)parts[p]->x[2 * (i - 1)]); /* the file's order */
      seen[row]++;
    }
  for (int i = 0; i < 50; i++) assert_int_equal(seen[i], 1);
  /* the same seed gives the same rows; another seed other rows */
  assert_int_equal(ember_dataset_split(&ds, 0.2f, 7, &tr2, &va2, &err), 0);
  assert_memory_equal(va.x, va2.x, sizeof(float) * 20);
  ember_dataset_free(&tr2);
  ember_dataset_free(&va2);
  assert_int_equal(ember_dataset_split(&ds, 0.2f, 8, &tr2, &va2, &err), 0);
  assert_memory_not_equal(va.x, va2.x, sizeof(float) * 20);
  ember_dataset_free(&tr2);
  ember_dataset_free(&va2);
  ember_dataset_free(&tr);
  ember_dataset_free(&va);
  /* refusals leave both outputs empty */
  assert_int_equal(ember_dataset_split(&ds, 1.0f, 7, &tr, &va, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "the validation share must be in (0, 1), got 1");
  assert_null(tr.x);
  ds.n = 1;
  assert_int_equal(ember_dataset_split(&ds, 0.5f, 7, &tr, &va, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "holding rows out for validation needs at least 2 rows of x and y, got 1");
  assert_null(va.x);
  ds.n = 50;
  ember_dataset_free(&ds);
}

/* A model whose every weight is zero gives every candidate the same energy (and an mse model
 * always answers the training mean): its validation loss is the chance level, exactly. */
static void check_chance(ember_method method, int negatives, int uniform, int threads) {
  ember_dataset ds;
  smooth(&ds, 40, 1);
  if (method == EMBER_METHOD_ARDFO) { /* two y columns: the whole-y net is scored */
    float *y = malloc(sizeof(float) * 80);
    for (int i = 0; i < 40; i++) y[2 * i] = ds.y[i], y[2 * i + 1] = ds.x[2 * i];
    free(ds.y);
    ds.y = y;
    ds.y_dim = 2;
  }
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.method = method;
  o.width = 8;
  o.batch = 5;
  o.negatives = negatives;
  o.uniform_negatives = uniform;
  ember_model m;
  ember_err err;
  assert_int_equal(ember_model_init(&m, method, 2, ds.y_dim, EMBER_ARCH_RESNET, 8, 2, &err), 0);
  ember_train_fit_stats(&m, &ds, 0.05f);
  ember_pool *pool = NULL;
  if (threads > 1) assert_int_equal(ember_pool_create(&pool, threads, NULL), 0);
  ember_trainer *t;
  assert_int_equal(ember_trainer_create(&t, &m, &ds, &o, pool, &err), 0);
  double loss, chance;
  assert_int_equal(ember_trainer_val_loss(t, &ds, 33, &loss, &chance, &err), 0);
  if (method == EMBER_METHOD_MSE) {
    assert_true(fabs(loss - chance) <= 1e-6 * chance);
    assert_true(chance > 0.3 && chance < 3.0); /* the rows' spread, normalised: about 1 */
  } else {
    assert_true(fabs(chance - log(1.0 + negatives + uniform)) < 1e-12);
    assert_true(fabs(loss - chance) < 1e-9);
  }
  assert_int_equal(ember_trainer_val_loss(t, &ds, 41, &loss, &chance, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "validation rows must be 1..40, got 41");
  ember_trainer_destroy(t);
  ember_pool_destroy(pool);
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

static void test_val_loss_at_chance(void **state) {
  (void)state;
  check_chance(EMBER_METHOD_DFO, 300, 0, 1); /* tasks of 3 rows */
  check_chance(EMBER_METHOD_DFO, 16, 0, 2);
  check_chance(EMBER_METHOD_LANGEVIN, 8, 5, 2);
  check_chance(EMBER_METHOD_ARDFO, 12, 0, 1);
  check_chance(EMBER_METHOD_MSE, 0, 0, 2);
}

typedef struct seen_progress {
  int measured, unmeasured_after, last_rows;
  int64_t first_step;
  double last_loss;
} seen_progress;

static int watch(void *ctx, const ember_train_progress *p) {
  seen_progress *s = ctx;
  if (p->val_rows > 0) {
    if (!s->measured) s->first_step = p->step;
    s->measured++;
    s->last_rows = p->val_rows;
    s->last_loss = p->val_loss;
    assert_true(isfinite(p->val_loss) && p->val_chance > 0);
  } else {
    assert_true(isnan(p->val_loss));
    if (s->measured) s->unmeasured_after++;
  }
  return 0;
}

static void test_train_with_validation(void **state) {
  (void)state;
  ember_dataset ds;
  smooth(&ds, 240, 2);
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.width = 32;
  o.batch = 64;
  o.negatives = 32;
  o.steps = 300;
  o.lr = 3e-3f;
  o.seed = 11;
  o.val_split = 0.25f;
  o.val_every = 50;
  seen_progress sp = {0};
  o.progress = watch;
  o.progress_ctx = &sp;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_model a, b;
  ember_err err;
  assert_int_equal(ember_train(&ds, &o, pool, &a, &err), 0);
  assert_int_equal(a.train_val_rows, 60);
  assert_true(fabsf(a.train_val_chance - logf(33.0f)) < 1e-5f);
  /* trained: clearly better than chance on rows it never saw */
  assert_true(a.train_val_loss < 0.75f * a.train_val_chance);
  assert_int_equal(sp.first_step, 50);
  assert_int_equal(sp.unmeasured_after, 0); /* once measured, every report carries it */
  assert_int_equal(sp.last_rows, 60);
  assert_true(fabs(sp.last_loss - a.train_val_loss) < 1e-6);

  /* the same split made by hand and given as val: the very same model and loss */
  ember_dataset tr, va;
  assert_int_equal(ember_dataset_split(&ds, 0.25f, 11, &tr, &va, &err), 0);
  o.val_split = 0.0f;
  o.val = &va;
  o.progress = NULL;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), 0);
  assert_memory_equal(a.net.params, b.net.params, a.net.nparams * sizeof(float));
  assert_memory_equal(a.x_mean, b.x_mean, 2 * sizeof(float)); /* fitted on the training part only */
  assert_float_equal(a.train_val_loss, b.train_val_loss, 0.0f);
  ember_model_free(&b);

  /* refusals */
  o.val_split = 0.25f;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "give validation data or a validation share (val split), not both");
  o.val_split = 0.0f;
  va.y_dim = 0;
  va.x_dim = 3;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "validation data has 3 x and 0 y columns; the training data has 2 and 1");
  va.x_dim = 2;
  va.y_dim = 1;
  va.y[3] = NAN;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), EMBER_ERANGE);
  assert_string_equal(err.msg, "validation data: y[3,0] is not finite");
  o.val = NULL;
  o.val_split = 1.5f;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "the validation share (val split) must be in [0, 1) (0 = none), got 1.5");
  o.val_split = 0.5f;
  tr.n = 1;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), EMBER_EINVAL);
  assert_string_equal(err.msg, "holding out a share of the data for validation needs at least 2 rows, got 1");
  tr.n = 180;

  /* without validation the model says so: no rows, and no keys in its file */
  o.val_split = 0.0f;
  o.steps = 5;
  assert_int_equal(ember_train(&tr, &o, pool, &b, &err), 0);
  assert_int_equal(b.train_val_rows, 0);
  ember_model_free(&b);
  ember_dataset_free(&tr);
  ember_dataset_free(&va);
  ember_model_free(&a);
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
}

static void test_checkpoint_keys(void **state) {
  (void)state;
  ember_model m, back;
  ember_err err;
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_MSE, 2, 1, EMBER_ARCH_MLP, 4, 2, &err), 0);
  const char *path = tu_path(0, "val.safetensors");
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  size_t len;
  char *bytes = tu_read_file(path, &len);
  assert_null(memmem(bytes, len, "train.val_", 10)); /* not validated: no keys */
  free(bytes);
  m.train_val_rows = 12;
  m.train_val_loss = 0.3125f;
  m.train_val_chance = 1.0625f;
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  assert_int_equal(ember_model_load(path, &back, &err), 0);
  assert_int_equal(back.train_val_rows, 12);
  assert_float_equal(back.train_val_loss, 0.3125f, 0.0f);
  assert_float_equal(back.train_val_chance, 1.0625f, 0.0f);
  ember_model_free(&back);
  /* a file that says 0 rows were validated is not one ember wrote */
  bytes = tu_read_file(path, &len);
  char *at = memmem(bytes, len, "\"train.val_rows\":\"12\"", 21);
  assert_non_null(at);
  memcpy(at, "\"train.val_rows\":\"00\"", 21);
  assert_int_equal(ember_model_load_mem(bytes, len, "edited", &back, &err), EMBER_EFORMAT);
  assert_non_null(strstr(err.msg, "train.val_rows"));
  free(bytes);
  ember_model_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_split_rows),
      cmocka_unit_test(test_split),
      cmocka_unit_test(test_split_keeps_names),
      cmocka_unit_test(test_val_loss_at_chance),
      cmocka_unit_test(test_train_with_validation),
      cmocka_unit_test(test_checkpoint_keys),
  };
  ember_blas_single_thread();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
