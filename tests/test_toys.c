/* test_toys.c - the 1-D toys: generators (row counts, range, every y valid, every branch
 * present, determinism), the valid sets and distances at chosen x, and the scores on
 * hand-made predictions whose answers are known.
 */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tasks/toys.h"

#define ROWS 4000

static void gen(const ember_toy *t, int n, uint64_t seed, float noise, float *x, float *y) {
  ember_err err;
  int rc = ember_toy_generate(t, n, seed, noise, x, y, &err);
  if (rc != 0) fail_msg("%s: %s", t->name, err.msg);
}

static void test_table(void **state) {
  (void)state;
  const char *names[] = {"jump", "piecewise", "noise", "circle", "hysteresis", "disjoint"};
  for (int i = 0; i < EMBER_TOY_COUNT; i++) {
    const ember_toy *t = ember_toy_at(i);
    assert_non_null(t);
    assert_string_equal(t->name, names[i]);
    assert_ptr_equal(ember_toy_find(names[i]), t);
    assert_int_equal((int)t->id, i);
    assert_true(t->x_lo < t->x_hi);
    assert_true(t->nbreaks >= 0 && t->nbreaks <= EMBER_TOY_MAX_BREAKS);
    for (int k = 1; k < t->nbreaks; k++) assert_true(t->breaks[k - 1] < t->breaks[k]);
  }
  assert_null(ember_toy_find("Jump"));
  assert_null(ember_toy_find(""));
  assert_null(ember_toy_find(NULL));
  assert_null(ember_toy_at(-1));
  assert_null(ember_toy_at(EMBER_TOY_COUNT));
}

/* Without noise every generated y is valid, x covers the range, and every branch of a
 * multi-valued toy gets a fair share of the rows. */
static void test_generate_valid_and_branches(void **state) {
  (void)state;
  float *x = malloc(ROWS * sizeof(float)), *y = malloc(ROWS * sizeof(float));
  assert_non_null(x);
  assert_non_null(y);
  for (int i = 0; i < EMBER_TOY_COUNT; i++) {
    const ember_toy *t = ember_toy_at(i);
    gen(t, ROWS, 3, 0.0f, x, y);
    float xmin = INFINITY, xmax = -INFINITY;
    int on[EMBER_TOY_MAX_BRANCHES] = {0}, multi = 0;
    for (int r = 0; r < ROWS; r++) {
      assert_true(x[r] >= t->x_lo && x[r] <= t->x_hi);
      if (x[r] < xmin) xmin = x[r];
      if (x[r] > xmax) xmax = x[r];
      float d = ember_toy_distance(t, x[r], y[r]);
      if (!(d <= 1e-6f)) fail_msg("%s row %d: (%g, %g) is %g from the valid set", t->name, r,
                                  (double)x[r], (double)y[r], (double)d);
      float lo[EMBER_TOY_MAX_BRANCHES], hi[EMBER_TOY_MAX_BRANCHES];
      int nb = ember_toy_valid(t, x[r], lo, hi);
      assert_true(nb >= 1 && nb <= t->max_branches);
      if (nb < 2) continue;
      multi++;
      for (int b = 0; b < nb; b++)
        if (y[r] >= lo[b] - 1e-6f && y[r] <= hi[b] + 1e-6f) on[b]++;
    }
    float span = t->x_hi - t->x_lo;
    assert_true(xmin < t->x_lo + 0.01f * span);
    assert_true(xmax > t->x_hi - 0.01f * span);
    if (t->max_branches == 1) {
      assert_int_equal(multi, 0);
      continue;
    }
    /* two branches, each about half of the rows where both are valid */
    assert_true(multi > ROWS / 4);
    for (int b = 0; b < 2; b++)
      if (on[b] < multi * 2 / 5 || on[b] > multi * 3 / 5)
        fail_msg("%s: branch %d has %d of %d rows", t->name, b, on[b], multi);
  }
  free(x);
  free(y);
}

/* The noise toy's default noise is heavy and zero-mean around sin(pi x). */
static void test_generate_noise(void **state) {
  (void)state;
  const ember_toy *t = ember_toy_find("noise");
  assert_true(t->noise > 0.2f);
  float *x = malloc(ROWS * sizeof(float)), *y = malloc(ROWS * sizeof(float));
  assert_non_null(x);
  assert_non_null(y);
  gen(t, ROWS, 9, t->noise, x, y);
  double sum = 0, sq = 0;
  for (int r = 0; r < ROWS; r++) {
    double e = y[r] - sin(3.14159265358979 * x[r]);
    sum += e, sq += e * e;
  }
  double mean = sum / ROWS, sd = sqrt(sq / ROWS - mean * mean);
  assert_true(fabs(mean) < 0.03);
  assert_true(fabs(sd - t->noise) < 0.03);
  /* noise on another toy moves y off its branch by about the same */
  const ember_toy *j = ember_toy_find("jump");
  gen(j, ROWS, 9, 0.1f, x, y);
  double far = 0;
  for (int r = 0; r < ROWS; r++) far += ember_toy_distance(j, x[r], y[r]);
  assert_true(fabs(far / ROWS - 0.1 * sqrt(2 / 3.14159265358979)) < 0.01);
  free(x);
  free(y);
}

static void test_generate_seeds(void **state) {
  (void)state;
  float x1[500], y1[500], x2[500], y2[500];
  for (int i = 0; i < EMBER_TOY_COUNT; i++) {
    const ember_toy *t = ember_toy_at(i);
    gen(t, 500, 42, t->noise, x1, y1);
    gen(t, 500, 42, t->noise, x2, y2);
    assert_memory_equal(x1, x2, sizeof x1);
    assert_memory_equal(y1, y2, sizeof y1);
    gen(t, 500, 43, t->noise, x2, y2);
    int same = 0;
    for (int r = 0; r < 500; r++) same += x1[r] == x2[r];
    assert_true(same < 5);
    /* a shorter run is a prefix of a longer one */
    gen(t, 100, 42, t->noise, x2, y2);
    assert_memory_equal(x1, x2, 100 * sizeof(float));
    assert_memory_equal(y1, y2, 100 * sizeof(float));
  }
}

static void test_generate_refused(void **state) {
  (void)state;
  const ember_toy *t = ember_toy_find("circle");
  float x[4], y[4];
  ember_err err;
  assert_int_equal(ember_toy_generate(t, 0, 1, 0.0f, x, y, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "rows"));
  assert_int_equal(ember_toy_generate(t, -3, 1, 0.0f, x, y, &err), EMBER_EINVAL);
  assert_int_equal(ember_toy_generate(t, EMBER_TOY_MAX_ROWS + 1, 1, 0.0f, x, y, &err), EMBER_EINVAL);
  assert_int_equal(ember_toy_generate(t, 4, 1, -0.1f, x, y, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "noise"));
  assert_int_equal(ember_toy_generate(t, 4, 1, NAN, x, y, &err), EMBER_EINVAL);
  assert_int_equal(ember_toy_generate(t, 4, 1, INFINITY, x, y, &err), EMBER_EINVAL);
  assert_int_equal(ember_toy_generate(NULL, 4, 1, 0.0f, x, y, &err), EMBER_EINVAL);
  assert_int_equal(ember_toy_generate(t, 4, 1, 0.0f, NULL, y, &err), EMBER_EINVAL);
}

/* Valid sets and distances at chosen x, against the formulas of docs/toys.md. */
static void test_valid_sets(void **state) {
  (void)state;
  float lo[EMBER_TOY_MAX_BRANCHES], hi[EMBER_TOY_MAX_BRANCHES];
  const ember_toy *jump = ember_toy_find("jump");
  assert_int_equal(ember_toy_valid(jump, 0.2f, lo, hi), 1);
  assert_float_equal(lo[0], 1.1f, 1e-6f);
  assert_int_equal(ember_toy_valid(jump, 0.3f, lo, hi), 1); /* a break belongs to its right */
  assert_float_equal(lo[0], 4.15f, 1e-6f);
  assert_int_equal(ember_toy_valid(jump, 1.01f, lo, hi), 0);
  assert_true(isinf(ember_toy_distance(jump, -1.5f, 0.0f)));
  assert_float_equal(ember_toy_distance(jump, 0.2f, 2.0f), 0.9f, 1e-6f);
  /* next to the jump the other side's level is not a gap, within x_tol only */
  assert_float_equal(ember_toy_distance(jump, 0.295f, 4.15f), 3.0025f, 1e-5f);
  assert_float_equal(ember_toy_distance_near(jump, 0.295f, 4.15f, 0.01f), 0.0f, 1e-5f);
  assert_float_equal(ember_toy_distance_near(jump, 0.305f, 1.15f, 0.01f), 0.0f, 1e-5f);
  assert_float_equal(ember_toy_distance_near(jump, 0.295f, 2.5f, 0.01f), 1.35f, 1e-5f);
  assert_float_equal(ember_toy_distance_near(jump, 0.28f, 4.15f, 0.01f), 3.01f, 1e-5f);
  assert_float_equal(ember_toy_break_distance(jump, 0.1f), 0.2f, 1e-6f);

  const ember_toy *pw = ember_toy_find("piecewise");
  const float px[] = {-0.75f, -0.25f, 0.25f, 0.75f}, py[] = {0.5f, -0.625f, 1.75f, 0.125f};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(ember_toy_valid(pw, px[i], lo, hi), 1);
    assert_float_equal(lo[0], py[i], 1e-6f);
  }
  assert_float_equal(ember_toy_break_distance(pw, 0.1f), 0.1f, 1e-6f);

  const ember_toy *circle = ember_toy_find("circle");
  assert_int_equal(ember_toy_valid(circle, 0.6f, lo, hi), 2);
  assert_float_equal(lo[0], -0.8f, 1e-6f);
  assert_float_equal(lo[1], 0.8f, 1e-6f);
  assert_float_equal(ember_toy_distance(circle, 0.6f, 0.7f), 0.1f, 1e-6f);
  assert_float_equal(ember_toy_distance(circle, 0.6f, 0.0f), 0.8f, 1e-6f);
  assert_true(isinf(ember_toy_distance(circle, 0.6f, NAN)));

  const ember_toy *hy = ember_toy_find("hysteresis");
  assert_int_equal(ember_toy_valid(hy, -0.6f, lo, hi), 1);
  assert_float_equal(lo[0], -1.3f, 1e-6f);
  assert_int_equal(ember_toy_valid(hy, 0.0f, lo, hi), 2);
  assert_float_equal(lo[0], -1.0f, 1e-6f);
  assert_float_equal(lo[1], 1.0f, 1e-6f);
  assert_int_equal(ember_toy_valid(hy, 0.6f, lo, hi), 1);
  assert_float_equal(lo[0], 1.3f, 1e-6f);

  const ember_toy *dj = ember_toy_find("disjoint");
  assert_int_equal(ember_toy_valid(dj, 0.0f, lo, hi), 2);
  assert_float_equal(lo[0], -1.5f, 1e-6f);
  assert_float_equal(hi[0], -0.5f, 1e-6f);
  assert_float_equal(lo[1], 0.5f, 1e-6f);
  assert_float_equal(hi[1], 1.5f, 1e-6f);
  assert_float_equal(ember_toy_distance(dj, 0.0f, 0.9f), 0.0f, 0);
  assert_float_equal(ember_toy_distance(dj, 0.0f, 0.1f), 0.4f, 1e-6f);
  assert_float_equal(ember_toy_distance(dj, 0.0f, 2.0f), 0.5f, 1e-6f);
  assert_true(isinf(ember_toy_break_distance(dj, 0.0f)));
}

static void test_grid(void **state) {
  (void)state;
  float x[4];
  ember_toy_grid(ember_toy_find("jump"), 4, x);
  const float want[] = {-0.75f, -0.25f, 0.25f, 0.75f};
  for (int i = 0; i < 4; i++) assert_float_equal(x[i], want[i], 1e-6f);
}

/* Scores of hand-made answers on the jump and the circle. */
static void test_score(void **state) {
  (void)state;
  const ember_toy *jump = ember_toy_find("jump");
  ember_toy_score_opts o = EMBER_TOY_SCORE_DEFAULTS;
  ember_toy_score s;
  ember_err err;
  /* x: away, away, near the jump (not away), away; y: exact, 0.2 off, halfway up the jump,
   * exact */
  const float x[] = {-0.5f, 0.0f, 0.31f, 0.8f};
  const float y[] = {0.75f, 1.2f, 2.6f, 4.4f};
  assert_int_equal(ember_toy_score_compute(jump, &o, x, y, 4, NULL, NULL, 0, &s, &err), 0);
  assert_int_equal(s.points, 4);
  assert_int_equal(s.away, 3);
  assert_float_equal(s.err_mean, 0.2 / 3, 1e-6);
  assert_float_equal(s.err_max, 0.2, 1e-6);
  assert_int_equal(s.stranded, 1);
  assert_float_equal(s.stranded_frac, 0.25, 1e-12);
  assert_int_equal(s.pairs, 3);
  assert_int_equal(s.covered, 2); /* the 0.2-off answer is beyond tol 0.1 */
  assert_int_equal(s.modes, 3);
  assert_int_equal(s.modes_stranded, 0);

  /* the circle at x = 0 and 0.6: one point with both branches among its modes, one with one
   * branch and a mode in the gap */
  const ember_toy *circle = ember_toy_find("circle");
  const float cx[] = {0.0f, 0.6f}, cy[] = {1.0f, 0.0f};
  const float my[] = {1.02f, -0.97f, 0.75f, 0.1f};
  const int count[] = {2, 2};
  assert_int_equal(ember_toy_score_compute(circle, &o, cx, cy, 2, my, count, 2, &s, &err), 0);
  assert_int_equal(s.away, 2);
  assert_int_equal(s.stranded, 1);
  assert_float_equal(s.err_max, 0.8, 1e-6);
  assert_int_equal(s.pairs, 4);
  assert_int_equal(s.covered, 3);
  assert_float_equal(s.coverage, 0.75, 1e-12);
  assert_int_equal(s.modes, 4);
  assert_int_equal(s.modes_stranded, 1);

  /* refused: no points, bad options, counts beyond k */
  assert_int_equal(ember_toy_score_compute(circle, &o, cx, cy, 0, NULL, NULL, 0, &s, &err), EMBER_EINVAL);
  const int too_many[] = {3, 1};
  assert_int_equal(ember_toy_score_compute(circle, &o, cx, cy, 2, my, too_many, 2, &s, &err), EMBER_EINVAL);
  o.tol = 0.0f;
  assert_int_equal(ember_toy_score_compute(circle, &o, cx, cy, 2, NULL, NULL, 0, &s, &err), EMBER_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table),
      cmocka_unit_test(test_generate_valid_and_branches),
      cmocka_unit_test(test_generate_noise),
      cmocka_unit_test(test_generate_seeds),
      cmocka_unit_test(test_generate_refused),
      cmocka_unit_test(test_valid_sets),
      cmocka_unit_test(test_grid),
      cmocka_unit_test(test_score),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
