/* test_train.c - training and inference through the library: the whole InfoNCE and MSE
 * training gradients against finite differences, statistics and bounds, reproducibility,
 * cancellation, bad data, and inference that does not depend on batching or threads. */
#define _GNU_SOURCE /* memmem */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"
#include "ember/spectral.h"
#include "ember/train.h"

/* y = sin(3 x0) + x1 > 0 ? 1 : -1 ... a small 2-in 1-out dataset with a jump */
static void make_data(ember_dataset *ds, int n, uint64_t seed) {
  tu_dataset_alloc(ds, n, 2, 1);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  for (int i = 0; i < n; i++) {
    float a = 2.0f * ember_rng_uniform(&rng) - 1.0f, b = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    ds->x[2 * i] = 3.0f + a; /* offset and scale: normalisation must handle it */
    ds->x[2 * i + 1] = 10.0f * b;
    ds->y[i] = (a + b > 0 ? 5.0f : 2.0f) + 0.1f * a;
  }
}

static void small_opts(ember_train_opts *o, ember_method method) {
  ember_train_opts_default(o);
  o->method = method;
  o->width = 8;
  o->depth = 2;
  o->batch = 7;        /* not a multiple of the task size */
  o->negatives = 300;  /* > 1024 / 4: tasks of 3 examples */
  o->steps = 3;
  o->seed = 5;
  o->infer.samples = 256;
}

/* keep_prefix > 0: a second y column (Method B's prefix-net training, counter-examples near
 * the true first coordinate with proposal-corrected InfoNCE) */
static void check_training_gradient_k(ember_method method, int threads, int keep_prefix) {
  ember_dataset ds;
  make_data(&ds, 50, 1);
  if (keep_prefix > 0) {
    float *y2 = malloc(sizeof(float) * 2 * (size_t)ds.n);
    for (int i = 0; i < ds.n; i++) y2[2 * i] = ds.y[i], y2[2 * i + 1] = 0.5f * ds.x[2 * i + 1] - ds.y[i];
    free(ds.y);
    ds.y = y2;
    ds.y_dim = 2;
  }
  ember_train_opts o;
  small_opts(&o, method);
  o.keep_prefix = keep_prefix;
  if (method == EMBER_METHOD_LANGEVIN) {
    /* chains whose gradient term is ~1e-7 of a step: their states do not move with the
     * parameters, so the finite difference sees InfoNCE over [chain states, uniform
     * counter-examples] and the penalty at the chains' states, as the analytic gradient does */
    o.negatives = 5;
    o.uniform_negatives = 7;
    o.langevin.steps = 2;
    o.langevin.step_init = 1e-7f;
    o.langevin.step_final = 1e-8f;
    o.langevin.delta_max = 0.0f;
    o.langevin.noise_scale = 1e6f; /* noise of ~0.1 per step: the states leave their start */
    o.penalty_margin = 0.2f;
  }
  ember_pool *pool = NULL;
  if (threads > 1) assert_int_equal(ember_pool_create(&pool, threads, NULL), 0);
  ember_model m;
  assert_int_equal(ember_model_init(&m, method, 2, ds.y_dim, EMBER_ARCH_RESNET, 8, 2, NULL), 0);
  ember_train_fit_stats(&m, &ds, 0.05f);
  ember_rng rng;
  ember_rng_seed(&rng, 3, 0);
  ember_net_init_params(&m.net, &rng);
  for (size_t i = 0; i < m.net.nparams; i++) m.net.params[i] *= 2.0f;
  ember_trainer *t;
  assert_int_equal(ember_trainer_create(&t, &m, &ds, &o, pool, NULL), 0);
  double loss;
  size_t np = m.net.nparams;
  float *g = malloc(np * sizeof(float));
  memcpy(g, ember_trainer_grad(t, 4, &loss), np * sizeof(float));
  assert_true(isfinite(loss) && loss > 0);
  int kinks = 0, checked = 0;
  for (size_t i = 0; i < np; i += (size_t)tu_fd_stride()) {
    checked++;
    float keep = m.net.params[i];
    double fd[2];
    const float hs[2] = {2e-3f, 1e-3f};
    for (int k = 0; k < 2; k++) {
      double a, b;
      m.net.params[i] = keep + hs[k];
      ember_trainer_grad(t, 4, &a);
      m.net.params[i] = keep - hs[k];
      ember_trainer_grad(t, 4, &b);
      fd[k] = (a - b) / (2.0 * hs[k]);
    }
    m.net.params[i] = keep;
    double scale = fmax(0.05, fabs(fd[1]));
    if (fabs(fd[0] - fd[1]) > 2e-2 * scale) {
      kinks++;
      continue;
    }
    if (fabs(fd[1] - g[i]) > 2e-2 * scale)
      fail_msg("%s param %zu: analytic %g, finite difference %g", ember_method_name(method), i,
               (double)g[i], fd[1]);
  }
  assert_true(kinks * 20 < checked);
  free(g);
  ember_trainer_destroy(t);
  ember_model_free(&m);
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
}

static void check_training_gradient(ember_method method, int threads) {
  check_training_gradient_k(method, threads, 0);
}

static void test_infonce_training_gradient(void **state) {
  (void)state;
  check_training_gradient(EMBER_METHOD_DFO, 1);
  check_training_gradient(EMBER_METHOD_DFO, 2);
  check_training_gradient_k(EMBER_METHOD_DFO, 2, 1); /* default share 0.5, noise 0.3 */
}

static void test_mse_training_gradient(void **state) {
  (void)state;
  check_training_gradient(EMBER_METHOD_MSE, 1);
}

/* Method C's loss: InfoNCE over the chains' final states and uniform counter-examples plus the
 * gradient penalty at the chains' states only */
static void test_langevin_training_gradient(void **state) {
  (void)state;
  check_training_gradient(EMBER_METHOD_LANGEVIN, 1);
  check_training_gradient(EMBER_METHOD_LANGEVIN, 2);
}

static void test_statistics_and_bounds(void **state) {
  (void)state;
  float x[4] = {1, 2, 3, 4}, y[4 * 2] = {0, 7, 1, 7, 2, 7, 3, 7};
  ember_dataset ds = {.n = 4, .x_dim = 1, .y_dim = 2, .x = x, .y = y};
  ember_model m;
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_DFO, 1, 2, EMBER_ARCH_RESNET, 4, 2, NULL), 0);
  ember_train_fit_stats(&m, &ds, 0.05f);
  assert_float_equal(m.x_mean[0], 2.5, 1e-6);
  assert_float_equal(m.x_std[0], sqrt(1.25), 1e-6);
  assert_float_equal(m.y_mean[0], 1.5, 1e-6);
  /* normalised y0 spans [-1.5, 1.5] / sqrt(1.25); bounds add 5% of that range per side */
  double lo = -1.5 / sqrt(1.25), range = 3.0 / sqrt(1.25);
  assert_float_equal(m.y_lo[0], lo - 0.05 * range, 1e-5);
  assert_float_equal(m.y_hi[0], -lo + 0.05 * range, 1e-5);
  /* a constant column keeps std 1 and gets non-empty bounds */
  assert_float_equal(m.y_std[1], 1.0, 0);
  assert_true(m.y_lo[1] < 0.0f && m.y_hi[1] > 0.0f);
  /* the default margin (EMBER_BOUND_MARGIN_AUTO): 5% for vector data ... */
  ember_train_opts o;
  ember_train_opts_default(&o);
  assert_true(o.bound_margin == EMBER_BOUND_MARGIN_AUTO);
  ember_train_fit_stats(&m, &ds, o.bound_margin);
  assert_float_equal(m.y_lo[0], lo - 0.05 * range, 1e-5);
  assert_float_equal(m.y_hi[0], -lo + 0.05 * range, 1e-5);
  ember_model_free(&m);
  /* ... and 70% for an image model (its features are x; ds->x holds its extras, none here),
   * so that DFO can answer beyond the training targets */
  ember_encoder_shape es = {.h = 6, .w = 6, .c = 1, .nconv = 1, .conv = {{2, 3, 1, 0}}, .head = EMBER_HEAD_SOFTARGMAX};
  ember_dataset img = {.n = 4, .x_dim = 0, .y_dim = 2, .y = y};
  assert_int_equal(ember_model_init(&m, EMBER_METHOD_DFO, ember_encoder_features(&es), 2, EMBER_ARCH_RESNET, 4, 2, NULL), 0);
  assert_int_equal(ember_model_set_encoder(&m, &es, NULL), 0);
  ember_train_fit_stats(&m, &img, EMBER_BOUND_MARGIN_AUTO);
  assert_float_equal(m.y_lo[0], lo - 0.7 * range, 1e-5);
  assert_float_equal(m.y_hi[0], -lo + 0.7 * range, 1e-5);
  ember_train_fit_stats(&m, &img, 0.05f); /* a margin given is a margin taken */
  assert_float_equal(m.y_hi[0], -lo + 0.05 * range, 1e-5);
  ember_model_free(&m);
  /* the margin's range, -1 (the default) aside */
  o.bound_margin = -0.5f;
  ember_err err;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "bound margin must be in [0, 10]"));
}

/* Image data's recipe changes dfo's and mse's network and schedule, and nothing of the others */
static void test_image_recipe(void **state) {
  (void)state;
  const ember_method methods[] = {EMBER_METHOD_DFO, EMBER_METHOD_MSE, EMBER_METHOD_LANGEVIN, EMBER_METHOD_ARDFO};
  for (int i = 0; i < 4; i++) {
    const int changed = i < 2;
    ember_train_opts o, v;
    ember_train_opts_for_method(&v, methods[i]);
    o = v;
    ember_train_opts_for_images(&o);
    assert_int_equal(o.width, changed ? 64 : v.width);
    assert_int_equal(o.steps, changed ? 600 : v.steps);
    assert_int_equal(o.batch, changed ? 32 : v.batch);
    assert_true(o.lr == (changed ? 0.002f : v.lr));
    assert_true(o.ema == (changed ? 0.0f : v.ema));
    /* the rest is the method's: counter-examples, depth, inference defaults */
    assert_int_equal(o.negatives, v.negatives);
    assert_int_equal(o.depth, v.depth);
    assert_int_equal(o.infer.samples, v.infer.samples);
    assert_int_equal(o.method, methods[i]);
  }
}

static void test_training_is_reproducible(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 64, 2);
  ember_train_opts o;
  small_opts(&o, EMBER_METHOD_DFO);
  o.steps = 20;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_model a, b, c;
  assert_int_equal(ember_train(&ds, &o, pool, &a, NULL), 0);
  assert_int_equal(ember_train(&ds, &o, pool, &b, NULL), 0);
  assert_memory_equal(a.net.params, b.net.params, a.net.nparams * sizeof(float));
  assert_int_equal(a.train_steps, 20);
  o.seed = 6;
  assert_int_equal(ember_train(&ds, &o, pool, &c, NULL), 0);
  assert_memory_not_equal(a.net.params, c.net.params, a.net.nparams * sizeof(float));
  ember_model_free(&a);
  ember_model_free(&b);
  ember_model_free(&c);
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
}

static int cancel_at_3(void *ctx, const ember_train_progress *p) {
  int *calls = ctx;
  (*calls)++;
  assert_true(p->step >= 1 && p->step <= p->steps);
  assert_true(isfinite(p->loss) && p->lr > 0);
  return p->step == 3;
}

static void test_cancel_and_bad_data(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 32, 3);
  ember_train_opts o;
  small_opts(&o, EMBER_METHOD_DFO);
  o.steps = 100;
  int calls = 0;
  o.progress = cancel_at_3;
  o.progress_ctx = &calls;
  ember_model m;
  ember_err err;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_ECANCELED);
  assert_int_equal(calls, 3);
  assert_null(m.net.params);
  o.progress = NULL;
  ds.y[7] = NAN;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "y[7,0]"));
  ds.y[7] = 1;
  o.method = EMBER_METHOD_ARDFO;
  o.spectral_norm = 1;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_ENOTSUP);
  assert_non_null(strstr(err.msg, "spectral"));
  o.spectral_norm = 0;
  o.method = EMBER_METHOD_DFO;
  o.depth = 3;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "even"));
  ember_dataset_free(&ds);
}

/* Spectral normalisation during training: every dense layer of the trained model has top
 * singular value ~1 (at least 1, since sigma is estimated by a Rayleigh quotient u^T W v <=
 * the top singular value, and at most 15% above it: one power iteration per step lags a
 * little behind the moving weights), and training still learns. */
static void test_spectral_norm_training(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 200, 8);
  ember_train_opts o;
  small_opts(&o, EMBER_METHOD_DFO);
  o.width = 16;
  o.negatives = 15;
  o.batch = 32;
  o.steps = 150;
  o.lr = 3e-3f;
  o.spectral_norm = 1;
  ember_model m;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, NULL), 0);
  int normalised = 0;
  for (int l = 0; l < m.net.nlayers; l++) {
    if (!ember_sn_layer(&m.net, l)) continue; /* the input projection and output stay plain */
    const ember_dense *d = &m.net.layers[l];
    float u[64] = {0}, v[64] = {0};
    ember_sn_init(u, d->out, v, d->in);
    float s1 = ember_sn_power_iteration(d->w, d->out, d->in, u, v, 500);
    if (!(s1 > 0.99f && s1 < 1.15f)) fail_msg("layer %d: top singular value %g", l, (double)s1);
    normalised++;
  }
  assert_int_equal(normalised, m.net.nlayers - 2);
  assert_true(m.train_loss < 0.9f * logf(16.0f));
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

/* Method C with spectral normalisation: the model keeps raw weights and power-iteration
 * vectors consistent with its normalised weights; checkpoints keep them (as PyTorch's
 * weight_orig / weight_u / weight_v) and refuse files where they disagree; inference options
 * can be overridden per call (chain, second chain, refinement) and do not depend on threads. */
static void test_langevin_model_state_and_options(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 200, 5);
  ember_train_opts o;
  small_opts(&o, EMBER_METHOD_LANGEVIN);
  o.width = 16;
  o.negatives = 8;
  o.batch = 16;
  o.steps = 30;
  o.langevin.steps = 5;
  o.spectral_norm = 1;
  o.infer.samples = 64;
  ember_model m;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, NULL), 0);
  assert_non_null(m.sn_w);
  assert_int_equal(m.infer.langevin.steps, 10);
  const float *pw = m.sn_w, *puv = m.sn_uv;
  for (int l = 0; l < m.net.nlayers; l++) {
    if (!ember_sn_layer(&m.net, l)) continue;
    const ember_dense *d = &m.net.layers[l];
    double sigma = 0;
    for (int r = 0; r < d->out; r++)
      for (int c = 0; c < d->in; c++) sigma += (double)puv[r] * pw[(size_t)r * d->in + c] * puv[d->out + c];
    for (size_t k = 0; k < (size_t)d->out * d->in; k++)
      assert_float_equal(d->w[k], pw[k] / sigma, 1e-6 * (1 + fabs(pw[k] / sigma)));
    pw += (size_t)d->out * d->in;
    puv += d->out + d->in;
  }

  const char *path = tu_path(0, "sn.safetensors");
  assert_int_equal(ember_model_save(&m, path, NULL), 0);
  ember_model b;
  assert_int_equal(ember_model_load(path, &b, NULL), 0);
  size_t nsn = (size_t)(m.sn_uv - m.sn_w);
  for (int l = 0; l < m.net.nlayers; l++)
    if (ember_sn_layer(&m.net, l)) nsn += (size_t)m.net.layers[l].out + m.net.layers[l].in;
  assert_non_null(b.sn_w);
  assert_memory_equal(b.sn_w, m.sn_w, nsn * sizeof(float));
  assert_memory_equal(b.net.params, m.net.params, m.net.nparams * sizeof(float));
  assert_memory_equal(&b.infer, &m.infer, sizeof m.infer);
  ember_model_free(&b);
  /* u doubled: sigma doubles and the stored weights no longer match */
  size_t len;
  unsigned char *buf = tu_read_file(path, &len);
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)buf[i] << (8 * i);
  /* the first normalised layer's weight_u follows its weight_orig, after the plain tensors */
  size_t u0 = 8 + hlen + 4 * (m.net.nparams + (size_t)m.net.layers[1].out * m.net.layers[1].in);
  for (int r = 0; r < m.net.layers[1].out; r++) {
    float f;
    memcpy(&f, buf + u0 + 4 * r, 4);
    f *= 2.0f;
    memcpy(buf + u0 + 4 * r, &f, 4);
  }
  ember_err err;
  assert_int_equal(ember_model_load_mem(buf, len, "doubled-u", &b, &err), EMBER_EFORMAT);
  if (!strstr(err.msg, "blocks.0.0.weight is not blocks.0.0.weight_orig / sigma")) fail_msg("%s", err.msg);
  free(buf);

  /* per-call options: the model's own = NULL; a shorter chain, a second chain and refinement
   * each change the answer; one thread = two */
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_infer *one, *two;
  assert_int_equal(ember_infer_create(&one, &m, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
  enum { Q = 4 };
  float y0[Q], e0[Q], y1[Q], e1[Q], y2[Q], e2[Q];
  assert_int_equal(ember_infer_predict(one, ds.x, Q, NULL, 3, 0, y0, e0, NULL), 0);
  ember_infer_opts io = m.infer;
  assert_int_equal(ember_infer_predict(two, ds.x, Q, &io, 3, 0, y1, e1, NULL), 0);
  assert_memory_equal(y0, y1, sizeof y0);
  io.langevin.steps = 3;
  assert_int_equal(ember_infer_predict(one, ds.x, Q, &io, 3, 0, y1, e1, NULL), 0);
  assert_memory_not_equal(y0, y1, sizeof y0);
  io = m.infer;
  io.again_steps = 10;
  io.again_step = 1e-3f;
  io.refine_steps = 10;
  assert_int_equal(ember_infer_predict(one, ds.x, Q, &io, 3, 0, y1, e1, NULL), 0);
  assert_int_equal(ember_infer_predict(two, ds.x, Q, &io, 3, 0, y2, e2, NULL), 0);
  assert_memory_equal(y1, y2, sizeof y1);
  assert_memory_equal(e1, e2, sizeof e1);
  assert_memory_not_equal(y0, y1, sizeof y0);
  io.again_step = 0.0f;
  assert_int_equal(ember_infer_predict(one, ds.x, 1, &io, 3, 0, y1, e1, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "second-chain step"));
  io = m.infer;
  io.langevin.step_init = -1.0f;
  assert_int_equal(ember_infer_predict(one, ds.x, 1, &io, 3, 0, y1, e1, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "initial step"));
  ember_infer_destroy(one);
  ember_infer_destroy(two);
  ember_pool_destroy(pool);
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

/* Method B: y2 = +-0.6 by the sign of y1 + 0.2 x0, y1 = 0.8 x0 (x0 in [-1, 1]); a few hundred
 * steps give one energy net per prefix; the model answers close to the truth, identically with
 * 1 and 2 threads and after a checkpoint round trip (tensors nets.J.*), its trainer has no
 * single gradient, and a y_dim 1 ardfo model is a dfo model under another name. */
static void test_ardfo_model(void **state) {
  (void)state;
  enum { N = 600, Q = 6 };
  ember_dataset ds = {.n = N, .x_dim = 1, .y_dim = 2, .x = malloc(sizeof(float) * N), .y = malloc(sizeof(float) * 2 * N)};
  ember_rng rng;
  ember_rng_seed(&rng, 4, 0);
  for (int i = 0; i < N; i++) {
    float x = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    ds.x[i] = x;
    ds.y[2 * i] = 0.8f * x;
    ds.y[2 * i + 1] = (x > 0 ? 0.6f : -0.6f) + 0.2f * x;
  }
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.method = EMBER_METHOD_ARDFO;
  o.width = 32;
  o.batch = 64;
  o.negatives = 64;
  o.steps = 300;
  o.lr = 3e-3f;
  o.seed = 2;
  o.infer.samples = 512;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_model m;
  assert_int_equal(ember_train(&ds, &o, pool, &m, NULL), 0);
  assert_int_equal(m.nar, 1);
  assert_int_equal(m.ar[0].shape.in_y, 1);
  assert_int_equal(m.net.shape.in_y, 2);
  const float xq[Q] = {-0.8f, -0.5f, -0.2f, 0.2f, 0.5f, 0.8f};
  float y1[2 * Q], y2[2 * Q], e1[Q];
  ember_infer *one, *two;
  assert_int_equal(ember_infer_create(&one, &m, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
  assert_int_equal(ember_infer_predict(one, xq, Q, NULL, 5, 0, y1, e1, NULL), 0);
  assert_int_equal(ember_infer_predict(two, xq, Q, NULL, 5, 0, y2, NULL, NULL), 0);
  assert_memory_equal(y1, y2, sizeof y1);
  for (int q = 0; q < Q; q++) {
    float t0 = 0.8f * xq[q], t1 = (xq[q] > 0 ? 0.6f : -0.6f) + 0.2f * xq[q];
    if (fabsf(y1[2 * q] - t0) > 0.15f || fabsf(y1[2 * q + 1] - t1) > 0.15f)
      fail_msg("x %g: (%g, %g), want (%g, %g)", (double)xq[q], (double)y1[2 * q], (double)y1[2 * q + 1],
               (double)t0, (double)t1);
  }
  /* DFO on the whole-y net E_ydim, without the prefix nets, finds the same answers */
  ember_infer_opts io = m.infer;
  io.optimizer = EMBER_OPTIMIZER_DFO;
  io.temperature = 1.0f;
  float yo[2 * Q];
  assert_int_equal(ember_infer_predict(one, xq, Q, &io, 5, 0, yo, NULL, NULL), 0);
  for (int q = 0; q < 2 * Q; q++)
    if (fabsf(yo[q] - y1[q]) > 0.15f) fail_msg("value %d: dfo %g, ardfo %g", q, (double)yo[q], (double)y1[q]);
  double loss;
  ember_trainer *t;
  assert_int_equal(ember_trainer_create(&t, &m, &ds, &o, NULL, NULL), 0);
  assert_null(ember_trainer_grad(t, 0, &loss));
  ember_trainer_destroy(t);

  const char *path = tu_path(0, "ardfo.safetensors");
  assert_int_equal(ember_model_save(&m, path, NULL), 0);
  ember_model b;
  assert_int_equal(ember_model_load(path, &b, NULL), 0);
  assert_int_equal(b.method, EMBER_METHOD_ARDFO);
  assert_memory_equal(b.ar[0].params, m.ar[0].params, m.ar[0].nparams * sizeof(float));
  assert_memory_equal(b.net.params, m.net.params, m.net.nparams * sizeof(float));
  size_t len;
  char *file = tu_read_file(path, &len);
  assert_non_null(memmem(file, len, "\"nets.0.proj.weight\"", 20));
  assert_non_null(memmem(file, len, "\"nets.1.out.bias\"", 17));
  free(file);
  ember_infer *lb;
  assert_int_equal(ember_infer_create(&lb, &b, NULL, NULL), 0);
  assert_int_equal(ember_infer_predict(lb, xq, Q, NULL, 5, 0, y2, NULL, NULL), 0);
  assert_memory_equal(y1, y2, sizeof y1);
  ember_infer_destroy(lb);
  ember_model_free(&b);
  ember_infer_destroy(one);
  ember_infer_destroy(two);
  ember_model_free(&m);

  /* y_dim 1: the same training and optimiser as dfo */
  ds.y_dim = 1;
  for (int i = 0; i < N; i++) ds.y[i] = ds.y[2 * i + 1];
  o.steps = 30;
  ember_model a1, d1;
  assert_int_equal(ember_train(&ds, &o, NULL, &a1, NULL), 0);
  o.method = EMBER_METHOD_DFO;
  assert_int_equal(ember_train(&ds, &o, NULL, &d1, NULL), 0);
  assert_int_equal(a1.nar, 0);
  assert_memory_equal(a1.net.params, d1.net.params, d1.net.nparams * sizeof(float));
  assert_int_equal(ember_infer_create(&one, &a1, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &d1, NULL, NULL), 0);
  assert_int_equal(ember_infer_predict(one, xq, Q, NULL, 5, 0, y1, NULL, NULL), 0);
  assert_int_equal(ember_infer_predict(two, xq, Q, NULL, 5, 0, y2, NULL, NULL), 0);
  assert_memory_equal(y1, y2, Q * sizeof(float));
  ember_infer_destroy(one);
  ember_infer_destroy(two);
  ember_model_free(&a1);
  ember_model_free(&d1);
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
}

/* A trained model answers row i the same alone, in a batch, and with 1 or 2 threads. */
/* The weights' moving average (opts.ema): after each step avg <- d avg + (1 - d) w with
 * d = min(ema, (1 + t) / (10 + t)); swapping gives the average and swapping back the trained
 * weights bit for bit; ember_train returns the average, and a snapshot at step k is the model a
 * k-step run returns. With spectral normalisation the average is of the raw weights and the
 * model stays consistent (weight = weight_orig / sigma). */
typedef struct snap_rec {
  int calls;
  int64_t steps[4];
  float *params[4];
} snap_rec;

static int record_snapshot(void *ctx, const ember_model *m, int64_t step) {
  snap_rec *r = ctx;
  assert_true(r->calls < 4);
  r->steps[r->calls] = step;
  r->params[r->calls] = malloc(m->net.nparams * sizeof(float));
  memcpy(r->params[r->calls], m->net.params, m->net.nparams * sizeof(float));
  r->calls++;
  return 0;
}

/* the vector Adam updates: the model's parameters, with the raw weights (sn_w) in place of the
 * normalised ones under spectral normalisation */
static void raw_weights(const ember_model *m, int sn, float *out) {
  memcpy(out, m->net.params, m->net.nparams * sizeof(float));
  const float *pw = m->sn_w;
  for (int l = 0; sn && l < m->net.nlayers; l++) {
    if (!ember_sn_layer(&m->net, l)) continue;
    size_t n = (size_t)m->net.layers[l].out * m->net.layers[l].in;
    memcpy(out + (m->net.layers[l].w - m->net.params), pw, n * sizeof(float));
    pw += n;
  }
}

static void check_average(ember_method method, int sn) {
  ember_dataset ds;
  make_data(&ds, 64, 3);
  ember_train_opts o;
  small_opts(&o, method);
  o.negatives = 7;
  o.ema = 0.5f;
  o.spectral_norm = sn;
  if (method == EMBER_METHOD_LANGEVIN) o.langevin.steps = 2;
  ember_model m;
  assert_int_equal(ember_model_init(&m, method, ds.x_dim, ds.y_dim, o.arch, o.width, o.depth, NULL), 0);
  ember_train_fit_stats(&m, &ds, o.bound_margin);
  ember_rng rng;
  ember_rng_seed(&rng, 1, 2);
  ember_net_init_params(&m.net, &rng);
  ember_trainer *t;
  assert_int_equal(ember_trainer_create(&t, &m, &ds, &o, NULL, NULL), 0);
  const size_t np = m.net.nparams;
  double *avg = malloc(np * sizeof(double));
  float *w = malloc(np * sizeof(float)), *trained = malloc(np * sizeof(float));
  raw_weights(&m, sn, w);
  for (size_t i = 0; i < np; i++) avg[i] = w[i];
  for (int s = 0; s < 4; s++) {
    float loss;
    assert_int_equal(ember_trainer_step(t, &loss), 0);
    raw_weights(&m, sn, w);
    double d = (1.0 + s) / (10.0 + s);
    if (d > o.ema) d = o.ema;
    for (size_t i = 0; i < np; i++) avg[i] = d * avg[i] + (1.0 - d) * w[i];
  }
  memcpy(trained, m.net.params, np * sizeof(float));
  ember_trainer_swap_average(t);
  raw_weights(&m, sn, w);
  for (size_t i = 0; i < np; i++)
    if (fabs(w[i] - avg[i]) > 1e-5 * (1.0 + fabs(avg[i]))) fail_msg("param %zu: average %g, expected %g", i, (double)w[i], avg[i]);
  if (sn) { /* the normalised weights follow the averaged raw ones */
    const float *pw = m.sn_w, *uv = m.sn_uv;
    for (int l = 0; l < m.net.nlayers; l++) {
      if (!ember_sn_layer(&m.net, l)) continue;
      const ember_dense *dl = &m.net.layers[l];
      float u[64], v[64];
      memcpy(u, uv, dl->out * sizeof(float));
      memcpy(v, uv + dl->out, dl->in * sizeof(float));
      float sigma = ember_sn_power_iteration(pw, dl->out, dl->in, u, v, 0);
      for (int i = 0; i < dl->out * dl->in; i++) assert_float_equal(dl->w[i], pw[i] / sigma, 1e-5);
      pw += (size_t)dl->out * dl->in;
      uv += dl->out + dl->in;
    }
  }
  ember_trainer_swap_average(t);
  assert_memory_equal(m.net.params, trained, np * sizeof(float));
  ember_trainer_destroy(t);
  ember_model_free(&m);

  /* ember_train: the snapshot at step 2 is what a 2-step run returns; the end is the average */
  snap_rec rec = {0};
  o.steps = 5;
  o.snapshot_every = 2;
  o.snapshot = record_snapshot;
  o.snapshot_ctx = &rec;
  ember_model a, b;
  assert_int_equal(ember_train(&ds, &o, NULL, &a, NULL), 0);
  assert_int_equal(rec.calls, 2);
  assert_int_equal(rec.steps[0], 2);
  assert_int_equal(rec.steps[1], 4);
  assert_float_equal(a.train_ema, 0.5f, 0.0f);
  o.steps = 2;
  o.snapshot = NULL;
  assert_int_equal(ember_train(&ds, &o, NULL, &b, NULL), 0);
  assert_memory_equal(rec.params[0], b.net.params, np * sizeof(float));
  assert_memory_not_equal(rec.params[1], a.net.params, np * sizeof(float));
  /* a checkpoint records the decay */
  const char *path = tu_path(0, "ema.safetensors");
  assert_int_equal(ember_model_save(&a, path, NULL), 0);
  ember_model c;
  assert_int_equal(ember_model_load(path, &c, NULL), 0);
  assert_float_equal(c.train_ema, 0.5f, 0.0f);
  assert_memory_equal(c.net.params, a.net.params, np * sizeof(float));
  ember_model_free(&c);
  for (int k = 0; k < rec.calls; k++) free(rec.params[k]);
  ember_model_free(&a);
  ember_model_free(&b);
  free(avg);
  free(w);
  free(trained);
  ember_dataset_free(&ds);
}

static void test_weight_average(void **state) {
  (void)state;
  check_average(EMBER_METHOD_DFO, 0);
  check_average(EMBER_METHOD_DFO, 1);
  check_average(EMBER_METHOD_LANGEVIN, 1);
}

static void test_inference_independent_of_batching(void **state) {
  (void)state;
  ember_dataset ds;
  make_data(&ds, 200, 4);
  ember_train_opts o;
  small_opts(&o, EMBER_METHOD_DFO);
  o.width = 32;
  o.steps = 30;
  o.negatives = 32;
  o.batch = 32;
  ember_model m;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, NULL), 0);
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_infer *one, *two;
  assert_int_equal(ember_infer_create(&one, &m, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
  ember_infer_opts io = DFO_OPTS(2048, 3, 0.33f, 0.5f, 1.0f);
  enum { Q = 5 };
  float yb[Q], eb[Q], y2[Q], e2[Q], ya, ea;
  assert_int_equal(ember_infer_predict(one, ds.x, Q, &io, 9, 0, yb, eb, NULL), 0);
  assert_int_equal(ember_infer_predict(two, ds.x, Q, &io, 9, 0, y2, e2, NULL), 0);
  assert_memory_equal(yb, y2, sizeof yb);
  for (int q = 0; q < Q; q++) {
    assert_int_equal(ember_infer_predict(one, ds.x + 2 * q, 1, &io, 9, (uint64_t)q, &ya, &ea, NULL), 0);
    assert_float_equal(ya, yb[q], 0);
    assert_float_equal(ea, eb[q], 0);
  }
  /* rows with their own seeds and streams answer as they would alone */
  uint64_t seeds[Q], streams[Q];
  float yr[Q], er[Q];
  for (int q = 0; q < Q; q++) seeds[q] = 100 + (uint64_t)q, streams[q] = 7;
  assert_int_equal(ember_infer_predict_rows(two, ds.x, Q, &io, seeds, streams, yr, er, NULL), 0);
  for (int q = 0; q < Q; q++) {
    assert_int_equal(ember_infer_predict(one, ds.x + 2 * q, 1, &io, 100 + (uint64_t)q, 7, &ya, &ea, NULL), 0);
    assert_float_equal(ya, yr[q], 0);
  }
  /* the reported energy is the model's energy at the answer */
  float echeck[Q];
  assert_int_equal(ember_infer_energy(one, ds.x, Q, yb, 1, echeck, NULL), 0);
  for (int q = 0; q < Q; q++) assert_float_equal(echeck[q], eb[q], 1e-4 * (1 + fabsf(eb[q])));
  /* sample-then-refine: gradient descent from the 8 best candidates never ends higher than the
   * plain answer (the best candidate is among them and polishing only accepts descents), and
   * the reported energy is still the model's energy at the answer (this little model's answers
   * sit on the bounds, where refinement rightly stays; tests/cli/jump.sh sees it move) */
  ember_infer_opts ro = io;
  ro.refine_steps = 20;
  ro.refine_lr = 0.05f;
  float yref[Q], eref[Q];
  assert_int_equal(ember_infer_predict(two, ds.x, Q, &ro, 9, 0, yref, eref, NULL), 0);
  assert_int_equal(ember_infer_energy(one, ds.x, Q, yref, 1, echeck, NULL), 0);
  for (int q = 0; q < Q; q++) {
    assert_true(eref[q] <= eb[q]);
    assert_float_equal(echeck[q], eref[q], 1e-4 * (1 + fabsf(eref[q])));
  }
  assert_int_equal(ember_infer_predict(one, ds.x, Q, &ro, 9, 0, y2, e2, NULL), 0);
  assert_memory_equal(y2, yref, sizeof yref);
  /* bad input is refused, naming it */
  ember_err err;
  ro.refine_lr = -1.0f;
  assert_int_equal(ember_infer_predict(one, ds.x, 1, &ro, 9, 0, &ya, &ea, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "refine step"));
  float bad[2] = {1.0f, INFINITY};
  assert_int_equal(ember_infer_predict(one, bad, 1, &io, 9, 0, &ya, &ea, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "x[0,1]"));
  io.samples = 0;
  assert_int_equal(ember_infer_predict(one, ds.x, 1, &io, 9, 0, &ya, &ea, &err), EMBER_EINVAL);
  ember_infer_destroy(one);
  ember_infer_destroy(two);
  ember_pool_destroy(pool);
  ember_model_free(&m);
  ember_dataset_free(&ds);
}

/* The chosen optimiser (ember_infer_opts.optimizer): a dfo-trained model of y = 0.8 x answers
 * close to the truth with its own DFO and with Langevin chains on the same energy (each answer's
 * reported energy is the model's energy there, and the two differ as optimisers do), the
 * optimiser named explicitly equals the default, the cost estimate follows the optimiser, and
 * optimisers that do not apply are refused naming why. */
static void test_chosen_optimizer(void **state) {
  (void)state;
  enum { N = 400, Q = 5 };
  ember_dataset ds;
  tu_dataset_alloc(&ds, N, 1, 1);
  ember_rng rng;
  ember_rng_seed(&rng, 8, 0);
  for (int i = 0; i < N; i++) {
    ds.x[i] = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    ds.y[i] = 0.8f * ds.x[i];
  }
  ember_train_opts o;
  ember_train_opts_default(&o);
  o.width = 32;
  o.batch = 64;
  o.negatives = 64;
  o.steps = 300;
  o.lr = 3e-3f;
  o.seed = 3;
  o.infer.samples = 256;
  ember_model m;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, NULL), 0);
  ember_infer *inf;
  assert_int_equal(ember_infer_create(&inf, &m, NULL, NULL), 0);
  const float xq[Q] = {-0.8f, -0.4f, 0.0f, 0.4f, 0.8f};
  float yd[Q], ed[Q], yl[Q], el[Q], y2[Q], e2[Q], echeck[Q];
  ember_infer_opts io = m.infer;
  assert_int_equal(io.optimizer, EMBER_OPTIMIZER_DEFAULT);
  assert_int_equal(ember_infer_predict(inf, xq, Q, &io, 4, 0, yd, ed, NULL), 0);
  io.optimizer = EMBER_OPTIMIZER_DFO; /* the model's own, by name */
  assert_int_equal(ember_infer_predict(inf, xq, Q, &io, 4, 0, y2, e2, NULL), 0);
  assert_memory_equal(yd, y2, sizeof yd);
  io.optimizer = EMBER_OPTIMIZER_LANGEVIN; /* samples = 256 chains of the library's 50 steps */
  assert_int_equal(ember_infer_predict(inf, xq, Q, &io, 4, 0, yl, el, NULL), 0);
  assert_memory_not_equal(yd, yl, sizeof yd);
  for (int q = 0; q < Q; q++) {
    if (fabsf(yd[q] - 0.8f * xq[q]) > 0.15f || fabsf(yl[q] - 0.8f * xq[q]) > 0.15f)
      fail_msg("x %g: dfo %g, langevin %g, want %g", (double)xq[q], (double)yd[q], (double)yl[q],
               (double)(0.8f * xq[q]));
  }
  assert_int_equal(ember_infer_energy(inf, xq, Q, yl, 1, echeck, NULL), 0);
  for (int q = 0; q < Q; q++) assert_float_equal(echeck[q], el[q], 1e-4 * (1 + fabsf(el[q])));
  /* modes with chains: found, and the population is the chains' final states */
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = 2;
  float my[2], me[2], mw[2];
  int count;
  assert_int_equal(ember_infer_modes(inf, xq + 4, 1, &io, &mo, 4, 0, my, me, mw, &count, NULL), 0);
  assert_true(count >= 1);
  assert_true(fabsf(my[0] - 0.8f * xq[4]) < 0.15f);
  /* the cost follows the optimiser: forward and backward per chain step */
  ember_infer_opts dio = io;
  dio.optimizer = EMBER_OPTIMIZER_DEFAULT;
  double row = 2.0 * ember_net_row_macs(&m.net.shape);
  assert_float_equal(ember_infer_flops(&m, &dio), row * io.samples * io.iters, 1e-6 * row);
  assert_float_equal(ember_infer_flops(&m, &io), 2.0 * row * io.samples * (io.langevin.steps + 1), 1e-6 * row);
  /* refusals */
  ember_err err;
  io.optimizer = EMBER_OPTIMIZER_ARDFO;
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "optimizer ardfo needs the y-prefix nets"));
  io.optimizer = (ember_optimizer)7;
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "optimizer must be"));
  io.optimizer = EMBER_OPTIMIZER_LANGEVIN;
  io.langevin.step_init = -1.0f; /* Langevin settings are checked once chains run */
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, &err), EMBER_EINVAL);
  io.optimizer = EMBER_OPTIMIZER_DFO; /* and not otherwise */
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, NULL), 0);
  ember_infer_destroy(inf);
  ember_model_free(&m);
  /* an explicit model has no energy: only the default */
  o.method = EMBER_METHOD_MSE;
  o.steps = 5;
  assert_int_equal(ember_train(&ds, &o, NULL, &m, NULL), 0);
  assert_int_equal(ember_infer_create(&inf, &m, NULL, NULL), 0);
  io = m.infer;
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, NULL), 0);
  io.optimizer = EMBER_OPTIMIZER_LANGEVIN;
  assert_int_equal(ember_infer_predict(inf, xq, 1, &io, 4, 0, y2, e2, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "no energy"));
  ember_infer_destroy(inf);
  /* a model's stored default is always its method's */
  m.infer.optimizer = EMBER_OPTIMIZER_DFO;
  assert_int_equal(ember_model_save(&m, tu_path(0, "opt.safetensors"), &err), EMBER_EINVAL);
  ember_model_free(&m);
  /* names */
  ember_optimizer parsed;
  for (int k = 0; k < EMBER_OPTIMIZER_COUNT; k++) {
    assert_int_equal(ember_optimizer_parse(ember_optimizer_name((ember_optimizer)k), &parsed), 0);
    assert_int_equal(parsed, k);
  }
  assert_int_equal(ember_optimizer_parse("sgd", &parsed), EMBER_EINVAL);
  ember_dataset_free(&ds);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_infonce_training_gradient),
      cmocka_unit_test(test_mse_training_gradient),
      cmocka_unit_test(test_langevin_training_gradient),
      cmocka_unit_test(test_statistics_and_bounds),
      cmocka_unit_test(test_image_recipe),
      cmocka_unit_test(test_training_is_reproducible),
      cmocka_unit_test(test_weight_average),
      cmocka_unit_test(test_cancel_and_bad_data),
      cmocka_unit_test(test_inference_independent_of_batching),
      cmocka_unit_test(test_spectral_norm_training),
      cmocka_unit_test(test_langevin_model_state_and_options),
      cmocka_unit_test(test_ardfo_model),
      cmocka_unit_test(test_chosen_optimizer),
  };
  ember_blas_single_thread();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
