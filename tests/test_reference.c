/* test_reference.c - ember against PyTorch: checkpoints written by bench/torch_reference.py
 * (`fixture` subcommand, committed under tests/fixtures) load into ember, and ember's energies
 * and dE/dy for the fixture's inputs match the float64 values PyTorch computed. This pins the
 * tensor names, the [out, in] weight layout, the x-then-y input order and both architectures. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/model.h"

enum { ROWS = 20, PER = 5, NQ = 4 };

static void check_arch(const char *arch) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s.safetensors", EMBER_FIXTURES, arch);
  ember_model m;
  ember_err err;
  if (ember_model_load(path, &m, &err) < 0) fail_msg("%s", err.msg);
  assert_int_equal(m.x_dim, 3);
  assert_int_equal(m.y_dim, 2);
  snprintf(path, sizeof path, "%s/%s.csv", EMBER_FIXTURES, arch);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  char line[1024];
  assert_non_null(fgets(line, sizeof line, f)); /* header */
  float x[NQ * 3], y[ROWS * 2], want_e[ROWS], want_dy[ROWS * 2];
  for (int r = 0; r < ROWS; r++) {
    int q, c;
    float v[10];
    assert_non_null(fgets(line, sizeof line, f));
    assert_int_equal(sscanf(line, "%d,%d,%f,%f,%f,%f,%f,%f,%f,%f", &q, &c, &v[0], &v[1], &v[2], &v[3],
                            &v[4], &v[5], &v[6], &v[7]), 10);
    assert_int_equal(q * PER + c, r);
    memcpy(x + 3 * q, v, 3 * sizeof(float));
    y[2 * r] = v[3];
    y[2 * r + 1] = v[4];
    want_e[r] = v[5];
    want_dy[2 * r] = v[6];
    want_dy[2 * r + 1] = v[7];
  }
  fclose(f);
  ember_net_ws ws;
  assert_int_equal(ember_net_ws_init(&ws, &m.net.shape, ROWS, NQ, NULL), 0);
  float hx[NQ * 64], e[ROWS], ones[ROWS], dy[ROWS * 2];
  assert_true(m.net.shape.width <= 64);
  ember_net_fuse_x(&m.net, x, NQ, hx);
  ember_net_forward(&m.net, &ws, hx, y, NQ, PER, e);
  for (int r = 0; r < ROWS; r++) ones[r] = 1.0f;
  ember_net_backward(&m.net, &ws, x, y, NQ, PER, ones, NULL, dy);
  double worst_e = 0, worst_g = 0;
  for (int r = 0; r < ROWS; r++) worst_e = fmax(worst_e, fabs(e[r] - want_e[r]));
  for (int i = 0; i < ROWS * 2; i++) worst_g = fmax(worst_g, fabs(dy[i] - want_dy[i]));
  printf("%s: max |E - E_torch| = %.3g, max |dE/dy - torch| = %.3g\n", arch, worst_e, worst_g);
  assert_true(worst_e < 1e-5);
  assert_true(worst_g < 1e-5);
  ember_net_ws_free(&ws);
  ember_model_free(&m);
}

static void test_resnet_matches_pytorch(void **state) {
  (void)state;
  check_arch("resnet");
}

static void test_mlp_matches_pytorch(void **state) {
  (void)state;
  check_arch("mlp");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resnet_matches_pytorch),
      cmocka_unit_test(test_mlp_matches_pytorch),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
