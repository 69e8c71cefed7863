/* test_net_simd.c - the network's elementwise passes are compiled for AVX-512, AVX2 and plain
 * x86-64 and picked at load time by the CPU (EMBER_SIMD in net.c). Whatever the loader picked
 * must give the plain build's bits: this file compiles net.c a second time without the clones
 * (EMBER_NO_SIMD_CLONES, every function renamed ref_*) and compares forward, backward, the
 * tangent and its reverse, byte for byte, on nets of both architectures, widths that are and
 * are not multiples of the vector width, and one and several outputs. On a CPU with neither
 * AVX2 nor AVX-512 it compares the plain code with itself. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "ember/net.h"

#define EMBER_NO_SIMD_CLONES
#define ember_net_shape_check ref_net_shape_check
#define ember_net_shape_layers ref_net_shape_layers
#define ember_net_shape_params ref_net_shape_params
#define ember_net_row_macs ref_net_row_macs
#define ember_net_init ref_net_init
#define ember_net_free ref_net_free
#define ember_net_init_params ref_net_init_params
#define ember_net_layer_name ref_net_layer_name
#define ember_net_ws_bytes ref_net_ws_bytes
#define ember_net_ws_init ref_net_ws_init
#define ember_net_ws_enable_tangent ref_net_ws_enable_tangent
#define ember_net_ws_free ref_net_ws_free
#define ember_net_fuse_x ref_net_fuse_x
#define ember_net_forward ref_net_forward
#define ember_net_forward_packed ref_net_forward_packed
#define ember_net_pack ref_net_pack
#define ember_net_packed_free ref_net_packed_free
#define ember_net_backward ref_net_backward
#define ember_net_backward_x ref_net_backward_x
#define ember_net_tangent ref_net_tangent
#define ember_net_tangent_backward ref_net_tangent_backward
/* the two that net.c calls before it defines them (the header declared them under their own
 * names) */
size_t ember_net_shape_params(const ember_net_shape *s);
void ember_net_free(ember_net *net);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include "net.c"
#pragma GCC diagnostic pop
#undef ember_net_shape_check
#undef ember_net_shape_layers
#undef ember_net_shape_params
#undef ember_net_row_macs
#undef ember_net_init
#undef ember_net_free
#undef ember_net_init_params
#undef ember_net_layer_name
#undef ember_net_ws_bytes
#undef ember_net_ws_init
#undef ember_net_ws_enable_tangent
#undef ember_net_ws_free
#undef ember_net_fuse_x
#undef ember_net_forward
#undef ember_net_forward_packed
#undef ember_net_pack
#undef ember_net_packed_free
#undef ember_net_backward
#undef ember_net_backward_x
#undef ember_net_tangent
#undef ember_net_tangent_backward

static float *normals(ember_rng *rng, size_t n) {
  float *v = malloc(n * sizeof(float));
  assert_non_null(v);
  for (size_t i = 0; i < n; i++) v[i] = ember_rng_normal(rng);
  return v;
}

static void assert_same_bits(const float *a, const float *b, size_t n, const char *what) {
  if (memcmp(a, b, n * sizeof(float)) == 0) return;
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0)
      fail_msg("%s differs at %zu: %.9g (dispatched) against %.9g (plain)", what, i, (double)a[i], (double)b[i]);
}

/* One shape: the library's dispatched passes against the plain copy, on the same net and
 * inputs, each with its own workspace. */
static void compare(ember_arch arch, int width, int depth, int out, int nq, int per, uint64_t seed) {
  const int in_x = 5, in_y = out == 1 ? 3 : 0, rows = nq * per;
  ember_net_shape s = {arch, in_x, in_y, width, depth, out};
  ember_err err;
  ember_net net;
  ember_net_ws ws, rws;
  assert_int_equal(ember_net_init(&net, &s, &err), 0);
  assert_int_equal(ember_net_ws_init(&ws, &s, rows, nq, &err), 0);
  assert_int_equal(ref_net_ws_init(&rws, &s, rows, nq, &err), 0);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  ember_net_init_params(&net, &rng);
  float *x = normals(&rng, (size_t)nq * in_x), *y = normals(&rng, (size_t)rows * (in_y ? in_y : 1));
  float *dout = normals(&rng, (size_t)rows * out), *dir = normals(&rng, (size_t)rows * (in_y ? in_y : 1));
  float *hx = malloc(sizeof(float) * (size_t)nq * width), *rhx = malloc(sizeof(float) * (size_t)nq * width);
  float *e = malloc(sizeof(float) * (size_t)rows * out), *re = malloc(sizeof(float) * (size_t)rows * out);
  float *g = calloc(net.nparams, sizeof(float)), *rg = calloc(net.nparams, sizeof(float));
  size_t ny = (size_t)rows * (in_y ? in_y : 1);
  float *dy = calloc(ny, sizeof(float)), *rdy = calloc(ny, sizeof(float));
  assert_true(hx && rhx && e && re && g && rg && dy && rdy);

  ember_net_fuse_x(&net, x, nq, hx);
  ref_net_fuse_x(&net, x, nq, rhx);
  assert_same_bits(hx, rhx, (size_t)nq * width, "hx");
  ember_net_forward(&net, &ws, hx, in_y ? y : NULL, nq, per, e);
  ref_net_forward(&net, &rws, rhx, in_y ? y : NULL, nq, per, re);
  assert_same_bits(e, re, (size_t)rows * out, "forward");
  ember_net_backward(&net, &ws, x, in_y ? y : NULL, nq, per, dout, g, in_y ? dy : NULL);
  ref_net_backward(&net, &rws, x, in_y ? y : NULL, nq, per, dout, rg, in_y ? rdy : NULL);
  assert_same_bits(g, rg, net.nparams, "parameter gradient");
  assert_same_bits(dy, rdy, ny, "dE/dy");
  if (out == 1) { /* the tangent pass and its reverse (Langevin's gradient penalty) */
    assert_int_equal(ember_net_ws_enable_tangent(&ws, &s, &err), 0);
    assert_int_equal(ref_net_ws_enable_tangent(&rws, &s, &err), 0);
    ember_net_tangent(&net, &ws, dir, nq, per, e);
    ref_net_tangent(&net, &rws, dir, nq, per, re);
    assert_same_bits(e, re, (size_t)rows, "tangent");
    memset(g, 0, net.nparams * sizeof(float));
    memset(rg, 0, net.nparams * sizeof(float));
    ember_net_tangent_backward(&net, &ws, dir, nq, per, dout, g);
    ref_net_tangent_backward(&net, &rws, dir, nq, per, dout, rg);
    assert_same_bits(g, rg, net.nparams, "tangent's parameter gradient");
  }
  free(x), free(y), free(dout), free(dir), free(hx), free(rhx), free(e), free(re);
  free(g), free(rg), free(dy), free(rdy);
  ember_net_ws_free(&ws);
  ref_net_ws_free(&rws);
  ember_net_free(&net);
}

static void test_resnet_same_bits(void **state) {
  (void)state;
  compare(EMBER_ARCH_RESNET, 128, 2, 1, 4, 33, 1);
  compare(EMBER_ARCH_RESNET, 37, 4, 1, 3, 17, 2); /* a width with a tail past every vector */
  compare(EMBER_ARCH_RESNET, 64, 2, 2, 5, 1, 3);  /* a regressor (mse): two outputs, no y */
}

static void test_mlp_same_bits(void **state) {
  (void)state;
  compare(EMBER_ARCH_MLP, 128, 3, 1, 4, 33, 4);
  compare(EMBER_ARCH_MLP, 21, 2, 1, 2, 50, 5);
  compare(EMBER_ARCH_MLP, 48, 2, 3, 6, 1, 6);
}

int main(void) {
#if defined(__GNUC__) && defined(__x86_64__)
  __builtin_cpu_init();
  print_message("the CPU (as this process sees it) has AVX-512F: %s, AVX2: %s\n",
                __builtin_cpu_supports("avx512f") ? "yes" : "no", __builtin_cpu_supports("avx2") ? "yes" : "no");
#endif
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resnet_same_bits),
      cmocka_unit_test(test_mlp_same_bits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
