/* test_encoder.c - the image encoder: forward against a naive convolution, finite-difference
 * checks of every parameter gradient for both heads, the gradient into the energy net's x
 * (ember_net_backward_x) and through both together, batch independence, the soft-argmax
 * finding a dot, and the layer-spec parser.
 *
 * ReLU kinks are handled as in test_net.c: a central difference that disagrees with itself at
 * two step sizes straddles a kink; such checks are counted, must be rare, and are skipped.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/encoder.h"
#include "ember/net.h"

typedef struct fixture {
  ember_encoder enc;
  ember_encoder_ws ws;
  int n;
  uint8_t *img;
  float *feat, *c;
} fixture;

/* pad: zero padding of 1 on both layers (PyTorch's Conv2d padding=1) */
static ember_encoder_shape small_shape(ember_head head, int pad) {
  ember_encoder_shape s = {.h = 9, .w = 8, .c = 2, .nconv = 2, .conv = {{3, 3, 2, pad}, {4, 2, 1, pad}}, .head = head};
  return s;
}

static void setup(fixture *f, const ember_encoder_shape *s, int n, uint64_t seed) {
  ember_err err;
  assert_int_equal(ember_encoder_init(&f->enc, s, &err), 0);
  assert_int_equal(ember_encoder_ws_init(&f->ws, s, n, &err), 0);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  ember_encoder_init_params(&f->enc, &rng);
  for (size_t i = 0; i < f->enc.nparams; i++) f->enc.params[i] *= 3.0f; /* every layer matters */
  f->n = n;
  size_t bytes = ember_encoder_image_bytes(s) * (size_t)n;
  f->img = malloc(bytes);
  for (size_t i = 0; i < bytes; i++) f->img[i] = (uint8_t)ember_rng_below(&rng, 256);
  f->feat = malloc(sizeof(float) * (size_t)n * f->enc.nfeat);
  f->c = malloc(sizeof(float) * (size_t)n * f->enc.nfeat);
  for (int i = 0; i < n * f->enc.nfeat; i++) f->c[i] = ember_rng_normal(&rng);
}

static void teardown(fixture *f) {
  ember_encoder_free(&f->enc);
  ember_encoder_ws_free(&f->ws);
  free(f->img);
  free(f->feat);
  free(f->c);
}

static double objective(fixture *f) {
  ember_encoder_forward(&f->enc, &f->ws, f->img, f->n, f->feat);
  double s = 0.0;
  for (int i = 0; i < f->n * f->enc.nfeat; i++) s += (double)f->c[i] * f->feat[i];
  return s;
}

typedef double (*objective_fn)(void *ctx);

static double central(objective_fn fn, void *ctx, float *p, float h) {
  float keep = *p;
  *p = keep + h;
  double a = fn(ctx);
  *p = keep - h;
  double b = fn(ctx);
  *p = keep;
  return (a - b) / (2.0 * h);
}

static void check_grad(objective_fn fn, void *ctx, float *const *ptrs, const float *g, int n,
                       const char *what) {
  int kinks = 0, checked = 0, stride = tu_fd_stride();
  for (int i = 0; i < n; i += stride) {
    checked++;
    double fd1 = central(fn, ctx, ptrs[i], 2e-3f), fd2 = central(fn, ctx, ptrs[i], 1e-3f);
    double scale = fmax(1.0, fabs(fd2));
    if (fabs(fd1 - fd2) > 2e-2 * scale) {
      kinks++;
      continue;
    }
    if (fabs(fd2 - g[i]) > 1e-2 * scale)
      fail_msg("%s[%d]: analytic %.6f vs finite difference %.6f", what, i, (double)g[i], fd2);
  }
  if (kinks * 10 > checked) fail_msg("%s: %d of %d checks straddled kinks", what, kinks, checked);
}

static double enc_objective(void *ctx) { return objective(ctx); }

static void grad_test(ember_head head, int pad) {
  fixture f;
  ember_encoder_shape s = small_shape(head, pad);
  setup(&f, &s, 3, 5 + (uint64_t)head + 2 * (uint64_t)pad);
  size_t np = f.enc.nparams;
  float *grad = calloc(np, sizeof(float));
  objective(&f);
  ember_encoder_backward(&f.enc, &f.ws, f.img, f.n, f.c, grad);
  float **ptrs = malloc(np * sizeof *ptrs);
  for (size_t i = 0; i < np; i++) ptrs[i] = &f.enc.params[i];
  check_grad(enc_objective, &f, ptrs, grad, (int)np, ember_head_name(head));
  /* backward adds into grad */
  float *grad2 = malloc(np * sizeof(float));
  memcpy(grad2, grad, np * sizeof(float));
  objective(&f);
  ember_encoder_backward(&f.enc, &f.ws, f.img, f.n, f.c, grad2);
  for (size_t i = 0; i < np; i++) assert_float_equal(grad2[i], 2.0f * grad[i], 1e-5f * (1 + fabsf(grad[i])));
  free(grad2);
  free(ptrs);
  free(grad);
  teardown(&f);
}

static void test_softargmax_gradients(void **state) {
  (void)state;
  grad_test(EMBER_HEAD_SOFTARGMAX, 0);
  grad_test(EMBER_HEAD_SOFTARGMAX, 1);
}

static void test_pool_gradients(void **state) {
  (void)state;
  grad_test(EMBER_HEAD_POOL, 0);
  grad_test(EMBER_HEAD_POOL, 1);
}

/* naive NHWC convolution in double (zero outside the input), layer by layer, then the head */
static void naive_features(const ember_encoder *enc, const uint8_t *img, double *feat) {
  const ember_encoder_shape *s = &enc->shape;
  double *in = malloc(sizeof(double) * (size_t)s->h * s->w * s->c), *out = NULL;
  for (size_t i = 0; i < (size_t)s->h * s->w * s->c; i++) in[i] = img[i] / 255.0;
  for (int li = 0; li < enc->nlayers; li++) {
    const ember_conv *l = &enc->layers[li];
    out = malloc(sizeof(double) * (size_t)l->out_h * l->out_w * l->out_c);
    for (int oy = 0; oy < l->out_h; oy++)
      for (int ox = 0; ox < l->out_w; ox++)
        for (int o = 0; o < l->out_c; o++) {
          double v = l->b[o];
          for (int c = 0; c < l->in_c; c++)
            for (int ky = 0; ky < l->k; ky++)
              for (int kx = 0; kx < l->k; kx++) {
                int iy = oy * l->s + ky - l->p, ix = ox * l->s + kx - l->p;
                if (iy < 0 || iy >= l->in_h || ix < 0 || ix >= l->in_w) continue;
                v += (double)l->w[(((size_t)o * l->in_c + c) * l->k + ky) * l->k + kx] *
                     in[((size_t)iy * l->in_w + ix) * l->in_c + c];
              }
          if (l->relu && v < 0) v = 0;
          out[((size_t)oy * l->out_w + ox) * l->out_c + o] = v;
        }
    free(in);
    in = out;
  }
  const ember_conv *l = &enc->layers[enc->nlayers - 1];
  int P = l->out_h * l->out_w;
  for (int c = 0; c < l->out_c; c++) {
    if (s->head == EMBER_HEAD_POOL) {
      double m = 0;
      for (int p = 0; p < P; p++) m += in[(size_t)p * l->out_c + c];
      feat[c] = m / P;
      continue;
    }
    double mx = -1e300, z = 0, u = 0, v = 0;
    for (int p = 0; p < P; p++) mx = fmax(mx, in[(size_t)p * l->out_c + c]);
    for (int y = 0; y < l->out_h; y++)
      for (int x = 0; x < l->out_w; x++) {
        double e = exp(in[((size_t)y * l->out_w + x) * l->out_c + c] - mx);
        z += e;
        u += e * (l->out_w > 1 ? -1.0 + 2.0 * x / (l->out_w - 1) : 0.0);
        v += e * (l->out_h > 1 ? -1.0 + 2.0 * y / (l->out_h - 1) : 0.0);
      }
    feat[2 * c] = u / z;
    feat[2 * c + 1] = v / z;
  }
  free(in);
}

static void test_forward_matches_reference(void **state) {
  (void)state;
  for (int head = 0; head < 2; head++)
    for (int pad = 0; pad < 2; pad++) {
      fixture f;
      ember_encoder_shape s = small_shape((ember_head)head, pad);
      setup(&f, &s, 4, 21);
      objective(&f);
      double ref[16];
      for (int i = 0; i < f.n; i++) {
        naive_features(&f.enc, f.img + (size_t)i * ember_encoder_image_bytes(&s), ref);
        for (int j = 0; j < f.enc.nfeat; j++)
          assert_float_equal(f.feat[i * f.enc.nfeat + j], ref[j], 1e-4 * (1 + fabs(ref[j])));
      }
      teardown(&f);
    }
}

/* An image's features are the same bits whether it is encoded alone or among others, at any
 * position of the call, in a workspace of any size (groups are padded to one size per layer). */
static void test_features_do_not_depend_on_the_batch(void **state) {
  (void)state;
  ember_encoder_shape s = {.h = 20, .w = 20, .c = 3, .nconv = 2, .conv = {{8, 4, 2, 1}, {6, 3, 1, 0}},
                           .head = EMBER_HEAD_SOFTARGMAX};
  fixture f;
  setup(&f, &s, 37, 3);
  objective(&f);
  float one[12];
  /* and whatever the workspace's size: one sized for a single image, for a few, for all */
  const int sizes[] = {37, 1, 5};
  for (int k = 0; k < 3; k++) {
    ember_encoder_ws ws1;
    assert_int_equal(ember_encoder_ws_init(&ws1, &s, sizes[k], NULL), 0);
    for (int i = 0; i < f.n; i += 5) {
      ember_encoder_forward(&f.enc, &ws1, f.img + (size_t)i * ember_encoder_image_bytes(&s), 1, one);
      assert_memory_equal(one, f.feat + (size_t)i * f.enc.nfeat, sizeof(float) * f.enc.nfeat);
    }
    ember_encoder_ws_free(&ws1);
  }
  teardown(&f);
}

/* One 1x1 convolution that passes the red channel with a large gain: the soft-argmax lands on
 * the red dot, in grid coordinates. */
static void test_softargmax_finds_a_dot(void **state) {
  (void)state;
  ember_encoder_shape s = {.h = 16, .w = 12, .c = 3, .nconv = 1, .conv = {{1, 1, 1, 0}}, .head = EMBER_HEAD_SOFTARGMAX};
  ember_encoder enc;
  ember_encoder_ws ws;
  assert_int_equal(ember_encoder_init(&enc, &s, NULL), 0);
  assert_int_equal(ember_encoder_ws_init(&ws, &s, 1, NULL), 0);
  enc.layers[0].w[0] = 40.0f; /* red */
  uint8_t img[16 * 12 * 3];
  memset(img, 0, sizeof img);
  int dy = 11, dx = 3;
  img[(dy * 12 + dx) * 3 + 0] = 255;
  img[(dy * 12 + dx) * 3 + 2] = 255; /* blue does not count */
  float feat[2];
  ember_encoder_forward(&enc, &ws, img, 1, feat);
  assert_float_equal(feat[0], -1.0f + 2.0f * dx / 11.0f, 1e-3f);
  assert_float_equal(feat[1], -1.0f + 2.0f * dy / 15.0f, 1e-3f);
  ember_encoder_free(&enc);
  ember_encoder_ws_free(&ws);
}

/* ember_net_backward_x against finite differences of x, and the chain encoder -> net. */
typedef struct chain {
  fixture f;
  ember_net net;
  ember_net_ws ws;
  float *x, *y, *e, *dout;
  int per, extra;
} chain;

static double chain_objective(void *ctx) {
  chain *ch = ctx;
  fixture *f = &ch->f;
  int F = f->enc.nfeat, in_x = F + ch->extra;
  ember_encoder_forward(&f->enc, &f->ws, f->img, f->n, f->feat);
  for (int i = 0; i < f->n; i++) memcpy(ch->x + (size_t)i * in_x, f->feat + (size_t)i * F, sizeof(float) * F);
  ember_net_fuse_x(&ch->net, ch->x, f->n, ch->ws.hx);
  ember_net_forward(&ch->net, &ch->ws, ch->ws.hx, ch->y, f->n, ch->per, ch->e);
  double s = 0;
  for (int r = 0; r < f->n * ch->per; r++) s += (double)ch->dout[r] * ch->e[r];
  return s;
}

static void test_gradient_through_encoder_and_net(void **state) {
  (void)state;
  chain ch;
  ember_encoder_shape s = small_shape(EMBER_HEAD_SOFTARGMAX, 1);
  setup(&ch.f, &s, 3, 9);
  ch.per = 4;
  ch.extra = 2;
  int F = ch.f.enc.nfeat, in_x = F + ch.extra, n = ch.f.n, rows = n * ch.per;
  ember_net_shape ns = {EMBER_ARCH_RESNET, in_x, 2, 8, 2, 1};
  assert_int_equal(ember_net_init(&ch.net, &ns, NULL), 0);
  assert_int_equal(ember_net_ws_init(&ch.ws, &ns, rows, n, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 4, 1);
  ember_net_init_params(&ch.net, &rng);
  for (size_t i = 0; i < ch.net.nparams; i++) ch.net.params[i] *= 2.0f;
  ch.x = malloc(sizeof(float) * (size_t)n * in_x);
  ch.y = malloc(sizeof(float) * (size_t)rows * 2);
  ch.e = malloc(sizeof(float) * (size_t)rows);
  ch.dout = malloc(sizeof(float) * (size_t)rows);
  for (int i = 0; i < n * in_x; i++) ch.x[i] = ember_rng_normal(&rng); /* the extras stay */
  for (int i = 0; i < rows * 2; i++) ch.y[i] = ember_rng_normal(&rng);
  for (int i = 0; i < rows; i++) ch.dout[i] = ember_rng_normal(&rng);

  chain_objective(&ch);
  float *ngrad = calloc(ch.net.nparams, sizeof(float)), *egrad = calloc(ch.f.enc.nparams, sizeof(float));
  float *dx = malloc(sizeof(float) * (size_t)n * in_x), *dfeat = malloc(sizeof(float) * (size_t)n * F);
  ember_net_backward(&ch.net, &ch.ws, ch.x, ch.y, n, ch.per, ch.dout, ngrad, NULL);
  ember_net_backward_x(&ch.net, &ch.ws, n, in_x, dx);
  for (int i = 0; i < n; i++) memcpy(dfeat + (size_t)i * F, dx + (size_t)i * in_x, sizeof(float) * F);
  ember_encoder_backward(&ch.f.enc, &ch.f.ws, ch.f.img, n, dfeat, egrad);

  /* the extras' gradient: finite differences of x itself (its feature columns are rewritten
   * by every forward, so only the extras can be moved) */
  float *ptrs_x[8], dx_extra[8];
  int k = 0;
  for (int i = 0; i < n; i++)
    for (int j = F; j < in_x; j++) ptrs_x[k] = &ch.x[(size_t)i * in_x + j], dx_extra[k++] = dx[(size_t)i * in_x + j];
  check_grad(chain_objective, &ch, ptrs_x, dx_extra, k, "dx (extras)");
  float **ptrs = malloc(ch.f.enc.nparams * sizeof *ptrs);
  for (size_t i = 0; i < ch.f.enc.nparams; i++) ptrs[i] = &ch.f.enc.params[i];
  check_grad(chain_objective, &ch, ptrs, egrad, (int)ch.f.enc.nparams, "encoder through net");
  free(ptrs);
  free(ngrad);
  free(egrad);
  free(dx);
  free(dfeat);
  free(ch.x);
  free(ch.y);
  free(ch.e);
  free(ch.dout);
  ember_net_free(&ch.net);
  ember_net_ws_free(&ch.ws);
  teardown(&ch.f);
}

static void test_spec_parse_and_checks(void **state) {
  (void)state;
  ember_encoder_shape s = {.h = 32, .w = 32, .c = 3};
  ember_err err;
  assert_int_equal(ember_conv_spec_parse("16:5:2,32:3:1", &s, &err), 0);
  assert_int_equal(s.nconv, 2);
  assert_int_equal(s.conv[1].channels, 32);
  char text[64];
  ember_conv_spec_text(&s, text, sizeof text);
  assert_string_equal(text, "16:5:2,32:3:1");
  assert_int_equal(ember_encoder_shape_check(&s, &err), 0);
  assert_int_equal(ember_encoder_features(&s), 64);
  assert_int_equal(s.conv[1].pad, 0);
  /* zero padding: a fourth field, kept in the text only when not 0 */
  assert_int_equal(ember_conv_spec_parse("16:5:2:2,32:3:1", &s, &err), 0);
  assert_int_equal(s.conv[0].pad, 2);
  assert_int_equal(s.conv[1].pad, 0);
  ember_conv_spec_text(&s, text, sizeof text);
  assert_string_equal(text, "16:5:2:2,32:3:1");
  assert_int_equal(ember_encoder_shape_check(&s, &err), 0);
  ember_encoder enc;
  assert_int_equal(ember_encoder_init(&enc, &s, &err), 0);
  assert_int_equal(enc.layers[0].out_h, 16); /* (32 + 4 - 5) / 2 + 1 */
  assert_int_equal(enc.layers[1].out_w, 14);
  ember_encoder_free(&enc);
  assert_int_equal(ember_conv_spec_parse("16:5:2:5", &s, &err), 0);
  assert_int_equal(ember_encoder_shape_check(&s, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "padding must be 0..kernel - 1 (4), got 5"));
  assert_int_equal(ember_conv_spec_parse("16:5:2:", &s, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "channels:kernel:stride:pad"));
  assert_int_equal(ember_conv_spec_parse("16:5:2:1:1", &s, &err), EMBER_EINVAL);
  /* a kernel that fits only once padded */
  ember_encoder_shape tiny = {.h = 3, .w = 3, .c = 1, .nconv = 1, .conv = {{2, 5, 1, 1}}};
  assert_int_equal(ember_encoder_shape_check(&tiny, &err), 0);
  tiny.conv[0].pad = 0;
  assert_int_equal(ember_encoder_shape_check(&tiny, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "does not fit"));
  assert_int_equal(ember_conv_spec_parse("16:5", &s, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "channels:kernel:stride"));
  assert_int_equal(ember_conv_spec_parse("16:5:2;3:3:1", &s, &err), EMBER_EINVAL);
  assert_int_equal(ember_conv_spec_parse("0:5:2", &s, &err), EMBER_EINVAL);
  assert_int_equal(ember_conv_spec_parse("8:9:1,8:9:1,8:9:1,8:9:1", &s, &err), 0);
  assert_int_equal(ember_encoder_shape_check(&s, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "does not fit"));
  ember_head h;
  assert_int_equal(ember_head_parse("pool", &h), 0);
  assert_int_equal(h, EMBER_HEAD_POOL);
  assert_int_equal(ember_head_parse("max", &h), EMBER_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_forward_matches_reference),
      cmocka_unit_test(test_softargmax_gradients),
      cmocka_unit_test(test_pool_gradients),
      cmocka_unit_test(test_gradient_through_encoder_and_net),
      cmocka_unit_test(test_features_do_not_depend_on_the_batch),
      cmocka_unit_test(test_softargmax_finds_a_dot),
      cmocka_unit_test(test_spec_parse_and_checks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
