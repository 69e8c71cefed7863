/* test_net.c - the energy network: forward against a naive reference, finite-difference checks
 * of every parameter gradient and of dE/dy, for both architectures and the regressor shape.
 *
 * ReLU kinks are handled knowingly: a central difference that straddles a kink disagrees
 * with itself at two step sizes; such parameters are counted, must be rare, and are not
 * compared. Every other parameter must match the analytic gradient.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/loss.h"
#include "ember/net.h"

typedef struct fixture {
  ember_net net;
  ember_net_ws ws;
  int nq, per;
  float *x, *y, *hx, *out, *c;
} fixture;

static void setup(fixture *f, ember_arch arch, int in_x, int in_y, int width, int depth, int out,
                  int nq, int per, uint64_t seed) {
  ember_net_shape s = {arch, in_x, in_y, width, depth, out};
  ember_err err;
  assert_int_equal(ember_net_init(&f->net, &s, &err), 0);
  assert_int_equal(ember_net_ws_init(&f->ws, &s, nq * per, nq, &err), 0);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  ember_net_init_params(&f->net, &rng);
  /* larger weights than the default init make the test sensitive to every layer */
  for (size_t i = 0; i < f->net.nparams; i++) f->net.params[i] *= 2.0f;
  f->nq = nq;
  f->per = per;
  int rows = nq * per;
  f->x = malloc(sizeof(float) * (size_t)nq * in_x);
  f->y = malloc(sizeof(float) * (size_t)rows * (in_y > 0 ? in_y : 1));
  f->hx = malloc(sizeof(float) * (size_t)nq * width);
  f->out = malloc(sizeof(float) * (size_t)rows * out);
  f->c = malloc(sizeof(float) * (size_t)rows * out);
  for (int i = 0; i < nq * in_x; i++) f->x[i] = ember_rng_normal(&rng);
  for (int i = 0; i < rows * in_y; i++) f->y[i] = ember_rng_normal(&rng);
  for (int i = 0; i < rows * out; i++) f->c[i] = ember_rng_normal(&rng);
}

static void teardown(fixture *f) {
  ember_net_free(&f->net);
  ember_net_ws_free(&f->ws);
  free(f->x);
  free(f->y);
  free(f->hx);
  free(f->out);
  free(f->c);
}

/* L = sum c * net(x, y), in double for the finite differences */
static double objective(fixture *f) {
  ember_net_fuse_x(&f->net, f->x, f->nq, f->hx);
  ember_net_forward(&f->net, &f->ws, f->hx, f->net.shape.in_y ? f->y : NULL, f->nq, f->per, f->out);
  double s = 0;
  for (int i = 0; i < f->nq * f->per * f->net.shape.out; i++) s += (double)f->c[i] * f->out[i];
  return s;
}

static double central(fixture *f, float *p, float h) {
  float keep = *p;
  *p = keep + h;
  double a = objective(f);
  *p = keep - h;
  double b = objective(f);
  *p = keep;
  return (a - b) / (2.0 * h);
}

/* compares analytic g with finite differences of the values at ptrs (every tu_fd_stride()-th);
 * returns kinks skipped */
static int check_grad(fixture *f, float **ptrs, const float *g, int n, const char *what) {
  int kinks = 0, checked = 0, stride = tu_fd_stride();
  for (int i = 0; i < n; i += stride) {
    checked++;
    double fd1 = central(f, ptrs[i], 2e-3f), fd2 = central(f, ptrs[i], 1e-3f);
    double scale = fmax(1.0, fabs(fd2));
    if (fabs(fd1 - fd2) > 2e-2 * scale) { /* the stencil crosses a ReLU kink */
      kinks++;
      continue;
    }
    double diff = fabs(fd2 - g[i]);
    if (diff > 1e-2 * scale)
      fail_msg("%s[%d]: analytic %.6f vs finite difference %.6f", what, i, (double)g[i], fd2);
  }
  if (kinks * 20 > checked) fail_msg("%s: %d of %d checks straddled kinks", what, kinks, checked);
  return kinks;
}

static void grad_test(ember_arch arch, int in_y, int depth, int out) {
  fixture f;
  setup(&f, arch, 3, in_y, 6, depth, out, 2, 3, 11 + (uint64_t)depth);
  size_t np = f.net.nparams;
  int rows = f.nq * f.per;
  float *grad = calloc(np, sizeof(float));
  float *dy = calloc((size_t)rows * (in_y ? in_y : 1), sizeof(float));
  objective(&f);
  ember_net_backward(&f.net, &f.ws, f.x, in_y ? f.y : NULL, f.nq, f.per, f.c, grad,
                     in_y ? dy : NULL);

  float **ptrs = malloc(np * sizeof *ptrs);
  for (size_t i = 0; i < np; i++) ptrs[i] = &f.net.params[i];
  check_grad(&f, ptrs, grad, (int)np, "dparams");
  if (in_y) {
    for (int i = 0; i < rows * in_y; i++) ptrs[i] = &f.y[i];
    check_grad(&f, ptrs, dy, rows * in_y, "dy");
  }
  /* backward adds into grad: a second call doubles it */
  float *grad2 = malloc(np * sizeof(float));
  memcpy(grad2, grad, np * sizeof(float));
  objective(&f);
  ember_net_backward(&f.net, &f.ws, f.x, in_y ? f.y : NULL, f.nq, f.per, f.c, grad2, NULL);
  for (size_t i = 0; i < np; i++) assert_float_equal(grad2[i], 2.0f * grad[i], 1e-5f * (1 + fabsf(grad[i])));
  free(grad2);
  free(ptrs);
  free(grad);
  free(dy);
  teardown(&f);
}

static void test_resnet_gradients(void **state) {
  (void)state;
  grad_test(EMBER_ARCH_RESNET, 2, 2, 1);
  grad_test(EMBER_ARCH_RESNET, 2, 4, 1);
}

static void test_mlp_gradients(void **state) {
  (void)state;
  grad_test(EMBER_ARCH_MLP, 2, 1, 1);
  grad_test(EMBER_ARCH_MLP, 1, 3, 1);
}

static void test_regressor_gradients(void **state) {
  (void)state;
  grad_test(EMBER_ARCH_RESNET, 0, 2, 3);
  grad_test(EMBER_ARCH_MLP, 0, 2, 2);
}

/* naive reference: concatenate x and y, apply the layers one row at a time */
static void naive_dense(const ember_dense *l, const double *in, double *out) {
  for (int o = 0; o < l->out; o++) {
    double s = l->b[o];
    for (int i = 0; i < l->in; i++) s += (double)l->w[(size_t)o * l->in + i] * in[i];
    out[o] = s;
  }
}

static double naive_energy(const ember_net *net, const float *x, const float *y) {
  const ember_net_shape *s = &net->shape;
  double in[64], h[64], a[64], t[64], e[8];
  for (int i = 0; i < s->in_x; i++) in[i] = x[i];
  for (int i = 0; i < s->in_y; i++) in[s->in_x + i] = y[i];
  naive_dense(&net->layers[0], in, h);
  if (s->arch == EMBER_ARCH_RESNET) {
    for (int b = 0; b < s->depth / 2; b++) {
      for (int j = 0; j < s->width; j++) a[j] = h[j] > 0 ? h[j] : 0;
      naive_dense(&net->layers[1 + 2 * b], a, t);
      for (int j = 0; j < s->width; j++) a[j] = t[j] > 0 ? t[j] : 0;
      naive_dense(&net->layers[2 + 2 * b], a, t);
      for (int j = 0; j < s->width; j++) h[j] += t[j];
    }
  } else {
    for (int j = 0; j < s->width; j++) h[j] = h[j] > 0 ? h[j] : 0;
    for (int i = 1; i < s->depth; i++) {
      naive_dense(&net->layers[i], h, t);
      for (int j = 0; j < s->width; j++) h[j] = t[j] > 0 ? t[j] : 0;
    }
  }
  naive_dense(&net->layers[net->nlayers - 1], h, e);
  return e[0];
}

static void test_forward_matches_reference_and_fuses_x(void **state) {
  (void)state;
  for (int arch = 0; arch < 2; arch++) {
    fixture f;
    setup(&f, (ember_arch)arch, 5, 2, 16, 4, 1, 3, 7, 5);
    objective(&f);
    for (int q = 0; q < f.nq; q++)
      for (int r = 0; r < f.per; r++) {
        int row = q * f.per + r;
        double ref = naive_energy(&f.net, f.x + q * 5, f.y + row * 2);
        assert_float_equal(f.out[row], ref, 1e-4 * (1 + fabs(ref)));
      }
    teardown(&f);
  }
}

static void test_layer_names_and_sizes(void **state) {
  (void)state;
  ember_net net;
  ember_net_shape s = {EMBER_ARCH_RESNET, 8, 2, 256, 2, 1};
  assert_int_equal(ember_net_init(&net, &s, NULL), 0);
  assert_int_equal(net.nlayers, 4);
  /* proj 256x10+256, two 256x256+256, out 256+1 */
  assert_int_equal(net.nparams, 256 * 10 + 256 + 2 * (256 * 256 + 256) + 257);
  char name[32];
  const char *want[] = {"proj", "blocks.0.0", "blocks.0.1", "out"};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ember_net_layer_name(&net, i, name, sizeof name), 0);
    assert_string_equal(name, want[i]);
  }
  assert_int_equal(ember_net_layer_name(&net, 4, name, sizeof name), EMBER_EINVAL);
  /* late fusion: the x part is not counted per row */
  assert_float_equal(ember_net_row_macs(&s), 2 * 256 + 2 * 256 * 256 + 256, 0.5);
  ember_net_free(&net);

  ember_net_shape bad = {EMBER_ARCH_RESNET, 8, 2, 256, 3, 1};
  ember_err err;
  assert_int_equal(ember_net_init(&net, &bad, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "even"));
  ember_net_shape mlp = {EMBER_ARCH_MLP, 1, 1, 4, 3, 1};
  assert_int_equal(ember_net_init(&net, &mlp, NULL), 0);
  assert_int_equal(ember_net_layer_name(&net, 2, name, sizeof name), 0);
  assert_string_equal(name, "hidden.2");
  ember_net_free(&net);
}

/* Finite-difference check of grad against obj over every parameter (every tu_fd_stride()-th),
 * with ReLU-kink detection as in check_grad (two step sizes must agree). */
typedef double (*param_objective)(fixture *f, void *ctx);

static void check_params_fd(fixture *f, const float *grad, param_objective obj, void *ctx,
                            const char *what) {
  size_t np = f->net.nparams, stride = (size_t)tu_fd_stride();
  int kinks = 0, checked = 0;
  for (size_t i = 0; i < np; i += stride) {
    checked++;
    float keep = f->net.params[i];
    double fd[2];
    const float hs[2] = {2e-3f, 1e-3f};
    for (int k = 0; k < 2; k++) {
      f->net.params[i] = keep + hs[k];
      double a = obj(f, ctx);
      f->net.params[i] = keep - hs[k];
      double b = obj(f, ctx);
      fd[k] = (a - b) / (2.0 * hs[k]);
    }
    f->net.params[i] = keep;
    double scale = fmax(1.0, fabs(fd[1]));
    if (fabs(fd[0] - fd[1]) > 2e-2 * scale) {
      kinks++;
      continue;
    }
    if (fabs(fd[1] - grad[i]) > 1e-2 * scale)
      fail_msg("%s: d/dparam[%zu] analytic %g, finite difference %g", what, i, (double)grad[i], fd[1]);
  }
  if (kinks * 20 > checked) fail_msg("%s: %d of %d checks straddled kinks", what, kinks, checked);
}

/* T = sum_r c_r (dE/dy_r . dir_r), through forward + backward to the input */
typedef struct grad_ctx {
  const float *dir;
  float *dy;
  const float *ones;
} grad_ctx;

static double input_grad_objective(fixture *f, void *ctx) {
  grad_ctx *g = ctx;
  const float *dir = g->dir, *ones = g->ones;
  float *dy = g->dy;
  objective(f);
  ember_net_backward(&f->net, &f->ws, f->x, f->y, f->nq, f->per, ones, NULL, dy);
  double s = 0;
  for (int r = 0; r < f->nq * f->per; r++) {
    double t = 0;
    for (int k = 0; k < f->net.shape.in_y; k++) t += (double)dy[r * f->net.shape.in_y + k] * dir[r * f->net.shape.in_y + k];
    s += (double)f->c[r] * t;
  }
  return s;
}

/* The tangent pass gives the directional derivative dE/dy . dir, and its reverse gives the
 * parameter gradient of c . (dE/dy . dir): the double derivative a gradient penalty needs. */
static void tangent_test(ember_arch arch, int depth) {
  fixture f;
  setup(&f, arch, 3, 2, 6, depth, 1, 2, 3, 31 + (uint64_t)depth);
  assert_int_equal(ember_net_ws_enable_tangent(&f.ws, &f.net.shape, NULL), 0);
  int rows = f.nq * f.per;
  size_t np = f.net.nparams;
  float dir[12], dy[12], ones[6], t[6];
  ember_rng rng;
  ember_rng_seed(&rng, 77, 0);
  for (int i = 0; i < rows * 2; i++) dir[i] = ember_rng_normal(&rng);
  for (int r = 0; r < rows; r++) ones[r] = 1.0f;
  grad_ctx gc = {dir, dy, ones};
  input_grad_objective(&f, &gc);
  objective(&f);
  ember_net_tangent(&f.net, &f.ws, dir, f.nq, f.per, t);
  for (int r = 0; r < rows; r++) {
    double want = dy[2 * r] * dir[2 * r] + dy[2 * r + 1] * dir[2 * r + 1];
    assert_float_equal(t[r], want, 1e-4 * (1 + fabs(want)));
  }
  float *grad = calloc(np, sizeof(float));
  ember_net_tangent_backward(&f.net, &f.ws, dir, f.nq, f.per, f.c, grad);
  check_params_fd(&f, grad, input_grad_objective, &gc, "c.(dE/dy.dir)");
  free(grad);
  teardown(&f);
}

/* The gradient penalty's parameter gradient, end to end: ember_grad_penalty's (dir, dt) through
 * the tangent's reverse pass equals finite differences of the penalty of dE/dy. */
static double penalty_objective(fixture *f, void *ctx) {
  grad_ctx *g = ctx;
  objective(f);
  ember_net_backward(&f->net, &f->ws, f->x, f->y, f->nq, f->per, g->ones, NULL, g->dy);
  return ember_grad_penalty(g->dy, f->nq * f->per, 2, 0.05f, 1.0f, NULL, NULL);
}

static void test_gradient_penalty_parameter_gradient(void **state) {
  (void)state;
  fixture f;
  setup(&f, EMBER_ARCH_RESNET, 3, 2, 6, 2, 1, 2, 3, 91);
  assert_int_equal(ember_net_ws_enable_tangent(&f.ws, &f.net.shape, NULL), 0);
  const int rows = 6;
  size_t np = f.net.nparams;
  float dy[12], ones[6], dir[12], dt[6], t[6];
  for (int r = 0; r < rows; r++) ones[r] = 1.0f;
  grad_ctx gc = {NULL, dy, ones};
  double p = penalty_objective(&f, &gc);
  assert_true(p > 0.0); /* the margin is small: rows are penalised */
  ember_grad_penalty(dy, rows, 2, 0.05f, 1.0f, dir, dt);
  ember_net_tangent(&f.net, &f.ws, dir, f.nq, f.per, t);
  float *grad = calloc(np, sizeof(float));
  ember_net_tangent_backward(&f.net, &f.ws, dir, f.nq, f.per, dt, grad);
  check_params_fd(&f, grad, penalty_objective, &gc, "gradient penalty");
  free(grad);
  teardown(&f);
}

static void test_tangent_and_double_derivative(void **state) {
  (void)state;
  tangent_test(EMBER_ARCH_RESNET, 2);
  tangent_test(EMBER_ARCH_RESNET, 4);
  tangent_test(EMBER_ARCH_MLP, 3);
}

/* A row's energy and dE/dy are bit-identical whatever rows share the call, as long as it
 * keeps its position modulo 12 (OpenBLAS treats ragged row tails differently, which is why the
 * network pads to its row block, ember_blas_row_block, and its Haswell/Zen kernels round by
 * position modulo 12, which is why inference starts every query on a multiple of 12: test_dfo
 * and test_infer check that level): the
 * server's answers must not depend on how requests were batched. */
static void test_rows_independent_of_batching(void **state) {
  (void)state;
  fixture f;
  enum { N = 300 };
  setup(&f, EMBER_ARCH_RESNET, 8, 2, 64, 2, 1, 1, N, 21);
  float *e1 = malloc(N * sizeof(float)), *e2 = malloc(N * sizeof(float));
  float *d1 = malloc(2 * N * sizeof(float)), *d2 = malloc(2 * N * sizeof(float));
  float *ones = malloc(N * sizeof(float));
  for (int i = 0; i < N; i++) ones[i] = 1.0f;
  ember_net_fuse_x(&f.net, f.x, 1, f.hx);
  ember_net_forward(&f.net, &f.ws, f.hx, f.y, 1, N, e1);
  ember_net_backward(&f.net, &f.ws, NULL, f.y, 1, N, ones, NULL, d1);
  for (int off = 0; off < 250; off += 12)
    for (int n = 1; n <= 40; n += 3) {
      ember_net_forward(&f.net, &f.ws, f.hx, f.y + 2 * off, 1, n, e2);
      ember_net_backward(&f.net, &f.ws, NULL, f.y + 2 * off, 1, n, ones, NULL, d2);
      if (memcmp(e1 + off, e2, sizeof(float) * n) || memcmp(d1 + 2 * off, d2, sizeof(float) * 2 * n))
        fail_msg("rows %d..%d computed alone differ from the same rows in a call of %d", off, off + n - 1, N);
    }
  free(e1);
  free(e2);
  free(d1);
  free(d2);
  free(ones);
  teardown(&f);
}

/* ember's hidden-layer kernel over packed weights gives OpenBLAS's bits: every row count,
 * both architectures, several depths and widths. It is used exactly where that was measured
 * (the SkylakeX kernel family on an AVX-512 CPU, widths that are multiples of 16 up to
 * EMBER_PACKED_MAX_WIDTH); elsewhere nothing is packed and the pass is OpenBLAS's. CTest also
 * runs this file under OPENBLAS_CORETYPE=Haswell (test_net_haswell), where nothing may be. */
static void test_packed_forward_same_bits(void **state) {
  (void)state;
  int usable = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  usable = __builtin_cpu_supports("avx512f") && ember_blas_row_quantum() == 1;
#endif
  const struct {
    ember_arch arch;
    int width, depth;
  } shapes[] = {{EMBER_ARCH_RESNET, 256, 2}, {EMBER_ARCH_RESNET, 64, 4}, {EMBER_ARCH_MLP, 128, 3},
                {EMBER_ARCH_RESNET, 16, 2}, {EMBER_ARCH_MLP, 48, 2},   {EMBER_ARCH_RESNET, 40, 2},
                {EMBER_ARCH_MLP, 512, 2}};
  const int counts[] = {1, 5, 16, 33, 64, 200};
  for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
    fixture f;
    setup(&f, shapes[i].arch, 6, 2, shapes[i].width, shapes[i].depth, 1, 1, 200, 40 + i);
    ember_net_packed pk;
    ember_err err;
    assert_int_equal(ember_net_pack(&f.net, &pk, &err), 0);
    const int want = usable && shapes[i].width % 16 == 0 && shapes[i].width <= EMBER_PACKED_MAX_WIDTH;
    assert_int_equal(pk.nhidden, want ? f.net.nlayers - 2 : 0);
    float *e1 = malloc(200 * sizeof(float)), *e2 = malloc(200 * sizeof(float));
    /* every activation, not only the energies (a ReLU or the output layer could hide a
     * difference) */
    const size_t nact = (size_t)f.ws.nact * f.ws.max_rows * f.ws.width;
    float *act = malloc(nact * sizeof(float));
    ember_net_fuse_x(&f.net, f.x, 1, f.hx);
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
      const int n = counts[c];
      ember_net_forward(&f.net, &f.ws, f.hx, f.y, 1, n, e1);
      memcpy(act, f.ws.act, nact * sizeof(float));
      memset(e2, 0xff, 200 * sizeof(float));
      ember_net_forward_packed(&f.net, &pk, &f.ws, f.hx, f.y, 1, n, e2);
      if (memcmp(e1, e2, (size_t)n * sizeof(float)) || memcmp(act, f.ws.act, nact * sizeof(float)))
        fail_msg("width %d depth %d arch %d, %d rows: the packed kernel's activations differ from OpenBLAS's",
                 shapes[i].width, shapes[i].depth, (int)shapes[i].arch, n);
    }
    free(act);
    ember_net_packed_free(&pk);
    assert_int_equal(pk.nhidden, 0);
    free(e1);
    free(e2);
    teardown(&f);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_matches_reference_and_fuses_x),
      cmocka_unit_test(test_resnet_gradients),
      cmocka_unit_test(test_mlp_gradients),
      cmocka_unit_test(test_regressor_gradients),
      cmocka_unit_test(test_layer_names_and_sizes),
      cmocka_unit_test(test_rows_independent_of_batching),
      cmocka_unit_test(test_packed_forward_same_bits),
      cmocka_unit_test(test_tangent_and_double_derivative),
      cmocka_unit_test(test_gradient_penalty_parameter_gradient),
  };
  ember_blas_single_thread();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
