/* test_limits.c - what a model, a training run and a query may cost: every limit refuses before
 * anything big is allocated or computed, with a message naming the size and the limit, and a
 * size just inside it is accepted. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"
#include "ember/train.h"

#if defined(__SANITIZE_ADDRESS__) /* the ASan runtime counts the bytes malloc has handed out */
size_t __sanitizer_get_current_allocated_bytes(void);
#define HAVE_ALLOCATED_BYTES 1
#endif

/* n rows of x (2 columns) and y (1 column) on a line */
static void make_data(ember_dataset *ds, int n) {
  tu_dataset_alloc(ds, n, 2, 1);
  for (int i = 0; i < n; i++) {
    ds->x[2 * i] = (float)i / (float)n;
    ds->x[2 * i + 1] = 1.0f - (float)i / (float)n;
    ds->y[i] = 2.0f * (float)i / (float)n;
  }
}

/* err's message must contain s */
#define assert_msg(err, s)                                                                     \
  do {                                                                                         \
    if (!strstr((err).msg, (s))) fail_msg("message \"%s\" lacks \"%s\"", (err).msg, (s));      \
  } while (0)

static int count_steps(void *ctx, const ember_train_progress *p) {
  (void)p;
  ++*(int *)ctx;
  return 0;
}

/* A small training run on 20 rows that counts the steps it takes. */
typedef struct run {
  ember_dataset ds;
  ember_train_opts o;
  ember_model m;
  ember_err err;
  int steps;
} run;

static void run_init(run *r) {
  make_data(&r->ds, 20);
  ember_train_opts_default(&r->o);
  r->o.width = 8;
  r->o.batch = 8;
  r->o.negatives = 8;
  r->o.steps = 2;
  r->o.infer.samples = 64;
  r->o.progress = count_steps;
  r->o.progress_ctx = &r->steps;
  r->steps = 0;
}

/* Default inference options beyond a request's limits are refused before the first step, not
 * after the last one when the checkpoint is saved. */
static void test_train_refuses_defaults_beyond_request_limits(void **state) {
  (void)state;
  run r;
  run_init(&r);
  r.o.infer.samples = EMBER_MAX_SAMPLES + 1;
  assert_int_equal(ember_train(&r.ds, &r.o, NULL, &r.m, &r.err), EMBER_EINVAL);
  assert_msg(r.err, "65537 samples per query, more than the 65536");
  assert_int_equal(r.steps, 0);
  r.o.infer.samples = EMBER_MAX_SAMPLES; /* 3 iterations of an 8-wide net: well inside */
  assert_int_equal(ember_train(&r.ds, &r.o, NULL, &r.m, &r.err), 0);
  assert_int_equal(r.steps, 2);
  ember_model_free(&r.m);
  ember_dataset_free(&r.ds);
}

/* ---- model and training sizes ------------------------------------------------------------ */

/* Width 16384 x depth 256 is 68.7 billion parameters: refused by the option check (what
 * `ember train` runs before reading data, exit 2) and by ember_model_init (training, loading)
 * before anything is allocated; the sanitizer build used to abort in calloc. */
static void test_params_limit(void **state) {
  (void)state;
  ember_train_opts o;
  ember_err err;
  ember_train_opts_default(&o);
  o.width = 16384;
  o.depth = 256;
  assert_int_equal(ember_train_opts_check(&o, &err), EMBER_EINVAL);
  assert_msg(err, "a ResNet of width 16384 and depth 256 has 68723736577 parameters, "
                  "more than the 268435456 a model may have (EMBER_MAX_PARAMS");
  ember_model m;
  memset(&m, 0x5a, sizeof m);
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_DFO, 4, 2, EMBER_ARCH_MLP, 16384, 256, &err), EMBER_EINVAL);
  assert_msg(err, "more than the 268435456");
  /* an ardfo model's nets together: 256 nets of 2.1 million parameters each */
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_ARDFO, 4, 256, EMBER_ARCH_RESNET, 1024, 2, &err),
                   EMBER_EINVAL);
  assert_msg(err, "256 resnet networks of width 1024 and depth 2 have");
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_ARDFO, 4, 16, EMBER_ARCH_RESNET, 1024, 2, &err), 0);
  ember_model_free(&m);
  /* 8192 x 2 is within the library's limits: emberd's budget is what refuses it there */
  o.width = 8192;
  o.depth = 2;
  assert_int_equal(ember_train_opts_check(&o, &err), 0);
  size_t params;
  uint64_t bytes;
  assert_int_equal(ember_train_memory(&o, 1000, 8, 2, 1, &params, &bytes, &err), 0);
  assert_int_equal(params, 134332417);
  assert_true(bytes > ((uint64_t)2 << 30) && bytes < ((uint64_t)3 << 30)); /* mostly gradients and Adam */
  assert_int_equal(ember_train_memory(&o, 1000, 70000, 2, 1, &params, &bytes, &err), EMBER_EINVAL);
}

/* Activations grow with width x candidates per example x threads: 65,536 negatives of a
 * 4096-wide net on 8 threads would hold 49 GiB; refused before ember_train allocates. */
static void test_train_memory_limit(void **state) {
  (void)state;
  run r;
  run_init(&r);
  r.o.width = 4096;
  r.o.negatives = 65536;
  assert_int_equal(ember_train_opts_check(&r.o, &r.err), 0); /* 6.4 GiB on one thread */
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 8, &r.err), 0);
  assert_int_equal(ember_train(&r.ds, &r.o, pool, &r.m, &r.err), EMBER_EINVAL);
  assert_msg(r.err, "training a resnet of width 4096 and depth 2 with batch 8 x 65536 negatives needs 49.4 GiB");
  assert_msg(r.err, "more than the 32 GiB a training run may hold (EMBER_MAX_TRAIN_BYTES)");
  assert_int_equal(r.steps, 0);
  ember_pool_destroy(pool);
  /* the option check alone refuses what no data could fit: a Langevin chain's tangents too */
  r.o.method = EMBER_METHOD_LANGEVIN;
  r.o.width = 11560;
  assert_int_equal(ember_train_opts_check(&r.o, &r.err), EMBER_EINVAL);
  assert_msg(r.err, "needs at least 32.2 GiB");
  ember_dataset_free(&r.ds);
}

/* ---- the training memory estimate against what training allocates ---------------------- */

#ifdef HAVE_ALLOCATED_BYTES
typedef struct heap_probe {
  size_t base, peak;
} heap_probe;

static int note_heap(void *ctx, const ember_train_progress *p) {
  (void)p;
  heap_probe *h = ctx;
  size_t now = __sanitizer_get_current_allocated_bytes() - h->base;
  if (now > h->peak) h->peak = now;
  return 0;
}
#endif

/* ember_train_memory against the bytes ember_train has allocated (ASan's allocator count) while
 * it trains, for every method and the options that add buffers: within 2% plus 16 KiB (the
 * trainer's small tables are not counted; spectral normalisation's copies are bounded above). */
static void test_train_memory_matches_allocations(void **state) {
  (void)state;
#ifndef HAVE_ALLOCATED_BYTES
  skip();
#else
  const struct {
    ember_method method;
    int width, negatives, threads, y_dim, sn;
    float ema;
  } cases[] = {
      {EMBER_METHOD_DFO, 64, 16, 1, 1, 0, 0.0f},      {EMBER_METHOD_DFO, 256, 255, 2, 2, 0, 0.99f},
      {EMBER_METHOD_MSE, 128, 16, 1, 2, 0, 0.0f},     {EMBER_METHOD_LANGEVIN, 32, 8, 2, 2, 0, 0.0f},
      {EMBER_METHOD_ARDFO, 32, 16, 1, 3, 0, 0.0f},    {EMBER_METHOD_DFO, 64, 2000, 1, 1, 1, 0.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ember_dataset ds;
    make_data(&ds, 300);
    if (cases[i].y_dim > 1) { /* more y columns: x repeated */
      float *y = malloc(sizeof(float) * 300 * (size_t)cases[i].y_dim);
      for (int r = 0; r < 300; r++)
        for (int c = 0; c < cases[i].y_dim; c++) y[r * cases[i].y_dim + c] = ds.y[r] + (float)c;
      free(ds.y);
      ds.y = y;
      ds.y_dim = cases[i].y_dim;
    }
    ember_train_opts o;
    ember_train_opts_for_method(&o, cases[i].method);
    o.width = cases[i].width;
    o.negatives = cases[i].negatives;
    o.batch = 64;
    o.steps = 1;
    o.spectral_norm = cases[i].sn;
    o.ema = cases[i].ema;
    o.infer.samples = 64;
    if (cases[i].method == EMBER_METHOD_LANGEVIN) o.langevin.steps = 2;
    ember_pool *pool = NULL;
    if (cases[i].threads > 1) assert_int_equal(ember_pool_create(&pool, cases[i].threads, NULL), 0);
    uint64_t want = 0;
    size_t params = 0;
    ember_err err;
    if (ember_train_memory(&o, ds.n, ds.x_dim, ds.y_dim, cases[i].threads, &params, &want, &err) < 0)
      fail_msg("case %zu: %s", i, err.msg);
    heap_probe h = {__sanitizer_get_current_allocated_bytes(), 0};
    o.progress = note_heap;
    o.progress_ctx = &h;
    ember_model m;
    if (ember_train(&ds, &o, pool, &m, &err) < 0) fail_msg("case %zu: %s", i, err.msg);
    size_t have = m.net.nparams;
    for (int j = 0; j < m.nar; j++) have += m.ar[j].nparams;
    assert_int_equal(params, have);
    double off = fabs((double)h.peak - (double)want);
    print_message("case %zu: estimate %llu bytes, allocated %zu (off by %.2f%%)\n", i,
                  (unsigned long long)want, h.peak, 100.0 * off / (double)h.peak);
    if (off > 0.02 * (double)h.peak + 16384)
      fail_msg("case %zu: estimate %llu bytes, allocated %zu", i, (unsigned long long)want, h.peak);
    ember_model_free(&m);
    ember_pool_destroy(pool);
    ember_dataset_free(&ds);
  }
#endif
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_refuses_defaults_beyond_request_limits),
      cmocka_unit_test(test_params_limit),
      cmocka_unit_test(test_train_memory_limit),
      cmocka_unit_test(test_train_memory_matches_allocations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
