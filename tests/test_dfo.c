/* test_dfo.c - Method A's optimiser, resampling, modes and polishing on analytic energies. */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/dfo.h"

/* E_q(y) = a * |y - centre_q|^2, one centre per query (2-D) */
typedef struct bowl {
  const float *centres;
  float a;
  int calls;
} bowl;

static void bowl_energy(void *ctx, int nq, int n, const float *y, float *e) {
  bowl *b = ctx;
  b->calls++;
  for (int q = 0; q < nq; q++)
    for (int i = 0; i < n; i++) {
      const float *yi = y + ((size_t)q * n + i) * 2, *c = b->centres + 2 * q;
      e[(size_t)q * n + i] = b->a * ((yi[0] - c[0]) * (yi[0] - c[0]) + (yi[1] - c[1]) * (yi[1] - c[1]));
    }
}

static void bowl_energy_grad(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  bowl *b = ctx;
  bowl_energy(ctx, nq, n, y, e);
  for (int q = 0; q < nq; q++)
    for (int i = 0; i < n; i++)
      for (int j = 0; j < 2; j++) {
        size_t k = ((size_t)q * n + i) * 2 + j;
        dy[k] = 2.0f * b->a * (y[k] - b->centres[2 * q + j]);
      }
}

static const float lo2[2] = {-1, -1}, hi2[2] = {1, 1};

static void run(int nq, const float *centres, const ember_infer_opts *o, uint64_t seed,
                float *best, float *best_e) {
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, nq, o->samples, 2, NULL), 0);
  ember_rng rngs[8];
  for (int q = 0; q < nq; q++) ember_rng_seed(&rngs[q], seed, (uint64_t)q);
  bowl b = {centres, 50.0f, 0};
  ember_err err;
  assert_int_equal(ember_dfo_run(&ws, bowl_energy, &b, nq, lo2, hi2, o, NULL, rngs, best, best_e, &err), 0);
  /* iters evaluations, each covering all queries at once */
  assert_int_equal(b.calls, o->iters);
  ember_dfo_ws_free(&ws);
}

/* Method B's optimiser on analytic prefix energies in 16 dimensions: E_j = 20 sum_{k<=j}
 * (y_k - c_k)^2 + a wrinkle that makes each coordinate's best value depend on the one before
 * it. With the same number of energy evaluations (ardfo: 256 samples x 3 iterations x 16
 * prefixes; dfo: 4096 samples x 3 iterations), ardfo ends within 0.3 of the argmin in every
 * coordinate (measured: energy 1.3, max error 0.21) and dfo far from it (10.3, 1.1). */
enum { AR_D = 16 };
static float ar_centre(const float *y, int k) { /* c_k depends on the sign of y_{k-1} */
  return k == 0 ? 0.4f : (y[k - 1] > 0.0f ? -0.3f : 0.5f) + 0.02f * (float)k;
}
static void prefix_quadratic(void *ctx, int j, int nq, int n, const float *y, float *e) {
  int *calls = ctx;
  ++*calls;
  for (int r = 0; r < nq * n; r++) {
    const float *yr = y + (size_t)r * AR_D;
    float s = 0.0f;
    for (int k = 0; k < j; k++) s += 20.0f * (yr[k] - ar_centre(yr, k)) * (yr[k] - ar_centre(yr, k));
    e[r] = s;
  }
}
static void full_quadratic(void *ctx, int nq, int n, const float *y, float *e) {
  prefix_quadratic(ctx, AR_D, nq, n, y, e);
}

static void test_ardfo_recovers_high_dimensional_argmin(void **state) {
  (void)state;
  float lo[AR_D], hi[AR_D], best[AR_D], want[AR_D], e_ar, e_dfo;
  for (int k = 0; k < AR_D; k++) lo[k] = -1.0f, hi[k] = 1.0f;
  for (int k = 0; k < AR_D; k++) want[k] = ar_centre(want, k);
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, 1, 4096, AR_D, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 3, 0);
  int calls = 0;
  ember_infer_opts o = DFO_OPTS(256, 3, 0.33f, 0.5f, 1.0f);
  assert_int_equal(ember_ardfo_run(&ws, prefix_quadratic, &calls, 1, lo, hi, &o, NULL, &rng, best, &e_ar, NULL), 0);
  assert_int_equal(calls, 3 * AR_D);
  float err_ar = 0.0f;
  for (int k = 0; k < AR_D; k++) err_ar = fmaxf(err_ar, fabsf(best[k] - want[k]));
  ember_rng_seed(&rng, 3, 0);
  calls = 0;
  o.samples = 4096;
  assert_int_equal(ember_dfo_run(&ws, full_quadratic, &calls, 1, lo, hi, &o, NULL, &rng, best, &e_dfo, NULL), 0);
  float err_dfo = 0.0f;
  for (int k = 0; k < AR_D; k++) err_dfo = fmaxf(err_dfo, fabsf(best[k] - want[k]));
  printf("16-D argmin, equal evaluations: ardfo energy %.4f max error %.4f; dfo energy %.4f max error %.4f\n",
         (double)e_ar, (double)err_ar, (double)e_dfo, (double)err_dfo);
  assert_true(err_ar < 0.3f);
  assert_true(err_dfo > 0.6f);
  assert_true(e_ar < 0.2f * e_dfo);
  ember_dfo_ws_free(&ws);
}

/* E_1 = 1e4 (y_0 - 0.3)^2, sharp enough that resampling keeps a handful of candidates;
 * E_2 = 1e4 (y_1 + 0.5)^2 on y_1 alone. */
static void sharp_prefix(void *ctx, int j, int nq, int n, const float *y, float *e) {
  (void)ctx;
  for (int r = 0; r < nq * n; r++) {
    const float v = j == 1 ? y[(size_t)r * 2] - 0.3f : y[(size_t)r * 2 + 1] + 0.5f;
    e[r] = 1e4f * v * v;
  }
}

/* ardfo resamples prefixes: after E_1 picks y_0, every candidate still carries its own y_1,
 * so E_2 searches all n values of y_1, not the few that the y_0 survivors happened to carry. */
static void test_ardfo_keeps_later_coordinates(void **state) {
  (void)state;
  enum { N = 256, Q = 16 };
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, Q, N, 2, NULL), 0);
  ember_rng rngs[Q];
  for (int q = 0; q < Q; q++) ember_rng_seed(&rngs[q], 5, (uint64_t)q);
  float best[Q * 2], start[Q * N], col[N];
  ember_infer_opts o = DFO_OPTS(N, 1, 0.33f, 0.5f, 1.0f);
  assert_int_equal(ember_ardfo_run(&ws, sharp_prefix, NULL, Q, lo, hi, &o, NULL, rngs, best, NULL, NULL), 0);
  for (int q = 0; q < Q; q++) { /* the uniform start, redrawn from the same streams */
    ember_rng r;
    ember_rng_seed(&r, 5, (uint64_t)q);
    for (int i = 0; i < N; i++) {
      (void)ember_rng_uniform(&r);
      start[q * N + i] = -1.0f + 2.0f * ember_rng_uniform(&r);
    }
  }
  for (int q = 0; q < Q; q++) {
    for (int i = 0; i < N; i++) col[i] = ws.y[((size_t)q * N + i) * 2 + 1];
    for (int i = 0; i < N; i++) assert_float_equal(col[i], start[q * N + i], 0.0f); /* own y_1 */
    float nearest = INFINITY;
    for (int i = 0; i < N; i++) nearest = fminf(nearest, fabsf(col[i] + 0.5f));
    assert_float_equal(best[2 * q + 1], -0.5f, nearest + 1e-6f); /* the best of all N */
    assert_true(fabsf(best[2 * q + 1] + 0.5f) < 0.05f);
  }
  ember_dfo_ws_free(&ws);
}

static void test_recovers_argmin_of_quadratics(void **state) {
  (void)state;
  const float centres[6] = {0.3f, -0.5f, -0.8f, 0.9f, 0.0f, 0.05f};
  ember_infer_opts o = EMBER_INFER_DEFAULTS;
  o.samples = 4096;
  float best[6], best_e[3];
  run(3, centres, &o, 1, best, best_e);
  for (int q = 0; q < 3; q++) {
    float dx = best[2 * q] - centres[2 * q], dy = best[2 * q + 1] - centres[2 * q + 1];
    float d = sqrtf(dx * dx + dy * dy);
    if (d > 0.05f) fail_msg("query %d: found (%g, %g), argmin (%g, %g)", q, (double)best[2 * q],
                            (double)best[2 * q + 1], (double)centres[2 * q], (double)centres[2 * q + 1]);
    assert_float_equal(best_e[q], 50.0f * d * d, 1e-4);
  }
  /* more iterations refine further */
  ember_infer_opts o6 = DFO_OPTS(4096, 6, 0.33f, 0.5f, 1.0f);
  run(1, centres, &o6, 1, best, best_e);
  assert_true(hypotf(best[0] - 0.3f, best[1] + 0.5f) < 0.02f);
}

static void test_argmin_on_the_boundary(void **state) {
  (void)state;
  const float centres[2] = {1.5f, -3.0f}; /* outside the bounds: the answer is the corner */
  ember_infer_opts o = DFO_OPTS(2048, 3, 0.33f, 0.5f, 1.0f);
  float best[2];
  run(1, centres, &o, 9, best, NULL);
  assert_true(best[0] <= 1.0f && best[0] > 0.95f);
  assert_true(best[1] >= -1.0f && best[1] < -0.95f);
}

static void test_reproducible_and_independent_of_batch(void **state) {
  (void)state;
  const float centres[4] = {0.3f, -0.5f, -0.2f, 0.4f};
  ember_infer_opts o = DFO_OPTS(512, 3, 0.33f, 0.5f, 1.0f);
  float a[4], b[4], alone[2], other[4];
  run(2, centres, &o, 42, a, NULL);
  run(2, centres, &o, 42, b, NULL);
  assert_memory_equal(a, b, sizeof a);
  run(1, centres, &o, 42, alone, NULL); /* query 0 alone draws the same stream */
  assert_memory_equal(alone, a, sizeof alone);
  run(2, centres, &o, 43, other, NULL);
  assert_memory_not_equal(other, a, sizeof a);
}

static void test_rejects_bad_options(void **state) {
  (void)state;
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, 1, 64, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 1, 0);
  const float c[2] = {0, 0};
  bowl b = {c, 1.0f, 0};
  ember_err err;
  struct { ember_infer_opts o; const char *msg; } cases[] = {
      {DFO_OPTS(0, 3, 0.33f, 0.5f, 1.0f), "samples"},
      {DFO_OPTS(65, 3, 0.33f, 0.5f, 1.0f), "exceeds the workspace"},
      {DFO_OPTS(64, 0, 0.33f, 0.5f, 1.0f), "iterations"},
      {DFO_OPTS(64, 3, NAN, 0.5f, 1.0f), "sigma"},
      {DFO_OPTS(64, 3, 0.33f, 0.0f, 1.0f), "shrink"},
      {DFO_OPTS(64, 3, 0.33f, 1.5f, 1.0f), "shrink"},
      {DFO_OPTS(64, 3, 0.33f, 0.5f, 0.0f), "temperature"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    assert_int_equal(ember_dfo_run(&ws, bowl_energy, &b, 1, lo2, hi2, &cases[i].o, NULL, &rng, NULL, NULL, &err),
                     EMBER_EINVAL);
    if (!strstr(err.msg, cases[i].msg)) fail_msg("case %zu: message '%s'", i, err.msg);
  }
  const float empty_hi[2] = {-1, 1};
  ember_infer_opts ok = DFO_OPTS(64, 3, 0.33f, 0.5f, 1.0f);
  assert_int_equal(ember_dfo_run(&ws, bowl_energy, &b, 1, lo2, empty_hi, &ok, NULL, &rng, NULL, NULL, &err),
                   EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "bounds of y0"));
  assert_int_equal(b.calls, 0);
  ember_dfo_ws_free(&ws);
}

/* NaN above y0 = 0.5: the optimiser must ignore those candidates, not spread NaN */
static void nan_energy(void *ctx, int nq, int n, const float *y, float *e) {
  (void)ctx;
  for (int i = 0; i < nq * n; i++)
    e[i] = y[2 * i] > 0.5f ? NAN : (y[2 * i] - 0.4f) * (y[2 * i] - 0.4f) + y[2 * i + 1] * y[2 * i + 1];
}

static void test_non_finite_energies_are_ignored(void **state) {
  (void)state;
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, 1, 1024, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 5, 0);
  ember_infer_opts o = DFO_OPTS(1024, 3, 0.33f, 0.5f, 0.05f);
  float best[2], e;
  assert_int_equal(ember_dfo_run(&ws, nan_energy, NULL, 1, lo2, hi2, &o, NULL, &rng, best, &e, NULL), 0);
  assert_true(isfinite(e));
  assert_true(best[0] <= 0.5f);
  assert_true(fabsf(best[0] - 0.4f) < 0.1f);
  ember_dfo_ws_free(&ws);
}

static void test_resampling_follows_the_weights(void **state) {
  (void)state;
  enum { N = 4, DRAWS = 200000 };
  const float p[N] = {0.1f, 0.0f, 0.2f, 0.7f};
  double cdf[N];
  int idx[N], counts[N] = {0};
  ember_rng rng;
  ember_rng_seed(&rng, 17, 0);
  for (int r = 0; r < DRAWS / N; r++) {
    ember_resample(p, N, &rng, cdf, idx);
    for (int k = 0; k < N; k++) counts[idx[k]]++;
  }
  assert_int_equal(counts[1], 0);
  for (int k = 0; k < N; k++) assert_float_equal((double)counts[k] / DRAWS, p[k], 0.006);
  /* all-zero weights fall back to uniform */
  const float z[N] = {0, 0, 0, 0};
  memset(counts, 0, sizeof counts);
  for (int r = 0; r < DRAWS / N; r++) {
    ember_resample(z, N, &rng, cdf, idx);
    for (int k = 0; k < N; k++) counts[idx[k]]++;
  }
  for (int k = 0; k < N; k++) assert_float_equal((double)counts[k] / DRAWS, 0.25, 0.006);
}

/* 1-D double well: minima at -0.6 (depth 0) and 0.5 (depth 0.05) */
static void two_wells(void *ctx, int nq, int n, const float *y, float *e) {
  (void)ctx;
  for (int i = 0; i < nq * n; i++) {
    float a = 30.0f * (y[i] + 0.6f) * (y[i] + 0.6f), b = 30.0f * (y[i] - 0.5f) * (y[i] - 0.5f) + 0.05f;
    e[i] = a < b ? a : b;
  }
}

static void test_modes_of_a_double_well(void **state) {
  (void)state;
  enum { N = 2048 };
  const float lo[1] = {-1}, hi[1] = {1};
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, 1, N, 1, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 2, 0);
  ember_infer_opts o = DFO_OPTS(N, 3, 0.33f, 0.5f, 1.0f);
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = 3;
  static float fscratch[N + EMBER_MODES_LINK];
  float my[3], me[3], mw[3];
  const ember_dfo_ctl keep = {.keep_initial = 1};
  assert_int_equal(ember_dfo_run(&ws, two_wells, NULL, 1, lo, hi, &o, &keep, &rng, NULL, NULL, NULL), 0);
  int c = ember_modes_find(ws.y, ws.e, N, ws.y0, ws.e0, N, 1, 1.0f, &mo, fscratch, my, me, mw);
  assert_int_equal(c, 2);
  /* sorted by energy: the deeper well first */
  assert_true(fabsf(my[0] + 0.6f) < 0.1f);
  assert_true(fabsf(my[1] - 0.5f) < 0.1f);
  assert_true(me[0] <= me[1]);
  /* masses estimate the wells' probabilities under exp(-E): equal widths, depths 0 and 0.05,
   * so exp(0.05) : 1 = 0.512 : 0.488 (the uniform population's estimate is within sampling error) */
  assert_float_equal(mw[0], 0.512, 0.04);
  assert_float_equal(mw[1], 0.488, 0.04);
  assert_float_equal(mw[0] + mw[1], 1.0, 1e-5);
  /* from the final population instead, both still get real mass */
  assert_int_equal(ember_modes_find(ws.y, ws.e, N, NULL, NULL, 0, 1, 1.0f, &mo, fscratch, my, me, mw), 2);
  assert_true(mw[0] > 0.05f && mw[1] > 0.05f);
  /* a "uniform" population of four samples, all by the shallow well, says nothing about the
   * deep one (effective sample size < EMBER_MODES_MIN_ESS); the masses then come from the
   * final population, and the deeper well keeps the larger share */
  mo.k = 3;
  float y0[4] = {0.45f, 0.9f, 0.95f, 1.0f}, e0[4];
  two_wells(NULL, 1, 4, y0, e0);
  assert_int_equal(ember_modes_find(ws.y, ws.e, N, y0, e0, 4, 1, 1.0f, &mo, fscratch, my, me, mw), 2);
  assert_true(fabsf(my[0] + 0.6f) < 0.1f);
  if (!(mw[0] > mw[1] && mw[1] > 0.0f)) fail_msg("masses %g %g", (double)mw[0], (double)mw[1]);
  /* k = 1 returns only the best */
  mo.k = 1;
  assert_int_equal(ember_modes_find(ws.y, ws.e, N, ws.y0, ws.e0, N, 1, 1.0f, &mo, fscratch, my, me, mw), 1);
  assert_true(fabsf(my[0] + 0.6f) < 0.1f);
  ember_dfo_ws_free(&ws);
}

/* wells at -0.6 (depth 0) and 0.5 (depth 1.0): many iterations starve the shallow well in the
 * final population, but it is still a mode, with its probability e^-1 / (1 + e^-1) = 0.27 */
static void unequal_wells(void *ctx, int nq, int n, const float *y, float *e) {
  (void)ctx;
  for (int i = 0; i < nq * n; i++) {
    float a = 30.0f * (y[i] + 0.6f) * (y[i] + 0.6f), b = 30.0f * (y[i] - 0.5f) * (y[i] - 0.5f) + 1.0f;
    e[i] = a < b ? a : b;
  }
}

/* Independent resampling groups: with ctl.groups = 8, a resample (here without noise) fills
 * each eighth of the population only with copies of that eighth's own candidates; with one
 * group, candidates cross. */
static int from_own_group(const ember_dfo_ws *ws, int n, int groups) {
  for (int i = 0; i < n; i++) {
    int k = (int)((int64_t)i * groups / n), found = 0; /* i's group: [k n / G, (k+1) n / G) */
    while ((int64_t)(k + 1) * n / groups <= i) k++;
    for (int j = (int)((int64_t)k * n / groups); j < (int)((int64_t)(k + 1) * n / groups) && !found; j++)
      found = ws->y[i] == ws->y0[j];
    if (!found) return 0;
  }
  return 1;
}

static void test_groups_resample_among_themselves(void **state) {
  (void)state;
  enum { N = 1000 }; /* not a multiple of 8 */
  const float lo[1] = {-1}, hi[1] = {1};
  for (int g = 0; g < 2; g++) {
    ember_dfo_ws ws;
    assert_int_equal(ember_dfo_ws_init(&ws, 1, N, 1, NULL), 0);
    const ember_dfo_ctl ctl = {.keep_initial = 1, .groups = g ? 8 : 1};
    ember_rng rng;
    ember_rng_seed(&rng, 4, 0);
    ember_infer_opts o = DFO_OPTS(N, 2, 0.0f, 1.0f, 1.0f);
    assert_int_equal(ember_dfo_run(&ws, two_wells, NULL, 1, lo, hi, &o, &ctl, &rng, NULL, NULL, NULL), 0);
    assert_int_equal(from_own_group(&ws, N, 8), g);
    ember_dfo_ws_free(&ws);
  }
}

/* Controls are per call: after a run that kept its uniform population and resampled in groups,
 * a run without controls in the same workspace leaves y0/e0 alone and is the run a fresh
 * workspace makes. */
static void test_controls_are_per_call(void **state) {
  (void)state;
  enum { N = 1000 };
  const float lo[1] = {-1}, hi[1] = {1};
  ember_dfo_ws used, fresh;
  assert_int_equal(ember_dfo_ws_init(&used, 1, N, 1, NULL), 0);
  assert_int_equal(ember_dfo_ws_init(&fresh, 1, N, 1, NULL), 0);
  ember_infer_opts o = DFO_OPTS(N, 3, 0.33f, 0.5f, 1.0f);
  ember_rng rng;
  ember_rng_seed(&rng, 4, 0);
  const ember_dfo_ctl ctl = {.keep_initial = 1, .groups = 8};
  assert_int_equal(ember_dfo_run(&used, two_wells, NULL, 1, lo, hi, &o, &ctl, &rng, NULL, NULL, NULL), 0);
  static float y0[N], e0[N];
  memcpy(y0, used.y0, sizeof y0);
  memcpy(e0, used.e0, sizeof e0);
  float a[1], b[1], ea, eb;
  ember_rng_seed(&rng, 9, 0);
  assert_int_equal(ember_dfo_run(&used, two_wells, NULL, 1, lo, hi, &o, NULL, &rng, a, &ea, NULL), 0);
  ember_rng_seed(&rng, 9, 0);
  assert_int_equal(ember_dfo_run(&fresh, two_wells, NULL, 1, lo, hi, &o, NULL, &rng, b, &eb, NULL), 0);
  assert_memory_equal(used.y, fresh.y, N * sizeof(float));
  assert_true(a[0] == b[0] && ea == eb);
  assert_memory_equal(used.y0, y0, sizeof y0);
  assert_memory_equal(used.e0, e0, sizeof e0);
  ember_dfo_ws_free(&used);
  ember_dfo_ws_free(&fresh);
}

/* Another thread's cancel flag stops DFO and AR-DFO before their next energy pass. */
static atomic_int dfo_stop;
static int dfo_calls;
static void wells_then_stop(void *ctx, int nq, int n, const float *y, float *e) {
  two_wells(ctx, nq, n, y, e);
  if (++dfo_calls == 2) atomic_store(&dfo_stop, 1);
}
static void prefix_wells_then_stop(void *ctx, int j, int nq, int n, const float *y, float *e) {
  (void)j;
  wells_then_stop(ctx, nq, n, y, e);
}

static void test_run_cancels(void **state) {
  (void)state;
  const float lo[1] = {-1}, hi[1] = {1};
  ember_dfo_ws ws;
  assert_int_equal(ember_dfo_ws_init(&ws, 1, 64, 1, NULL), 0);
  ember_infer_opts o = DFO_OPTS(64, 5, 0.33f, 0.5f, 1.0f);
  ember_rng rng;
  ember_rng_seed(&rng, 1, 0);
  const ember_dfo_ctl ctl = {.cancel = &dfo_stop};
  ember_err err;
  assert_int_equal(ember_dfo_run(&ws, wells_then_stop, NULL, 1, lo, hi, &o, &ctl, &rng, NULL, NULL, &err),
                   EMBER_ECANCELED);
  assert_int_equal(dfo_calls, 2);
  atomic_store(&dfo_stop, 0);
  dfo_calls = 0;
  assert_int_equal(ember_ardfo_run(&ws, prefix_wells_then_stop, NULL, 1, lo, hi, &o, &ctl, &rng, NULL, NULL, &err),
                   EMBER_ECANCELED);
  assert_int_equal(dfo_calls, 2);
  ember_dfo_ws_free(&ws);
}

static void test_modes_survive_a_starved_branch(void **state) {
  (void)state;
  const float lo[1] = {-1}, hi[1] = {1};
  const int sizes[2] = {2048, 65536}, iters[2] = {8, 3};
  for (int t = 0; t < 2; t++) {
    int n = sizes[t];
    ember_dfo_ws ws;
    assert_int_equal(ember_dfo_ws_init(&ws, 1, n, 1, NULL), 0);
    const ember_dfo_ctl keep = {.keep_initial = 1};
    ember_rng rng;
    ember_rng_seed(&rng, 4, 0);
    ember_infer_opts o = DFO_OPTS(n, iters[t], 0.33f, 0.5f, 1.0f);
    assert_int_equal(ember_dfo_run(&ws, unequal_wells, NULL, 1, lo, hi, &o, &keep, &rng, NULL, NULL, NULL), 0);
    int in_shallow = 0;
    for (int i = 0; i < n; i++) in_shallow += ws.y[i] > 0.0f;
    ember_modes_opts mo = EMBER_MODES_DEFAULTS;
    float *fscratch = malloc(sizeof(float) * ((size_t)n + EMBER_MODES_LINK)), my[2], me[2], mw[2];
    int c = ember_modes_find(ws.y, ws.e, n, ws.y0, ws.e0, n, 1, 1.0f, &mo, fscratch, my, me, mw);
    if (c != 2) fail_msg("n=%d iters=%d: %d modes (%d of the final population in the shallow well)", n,
                         iters[t], c, in_shallow);
    assert_true(fabsf(my[0] + 0.6f) < 0.05f && fabsf(my[1] - 0.5f) < 0.05f);
    assert_float_equal(mw[1], 0.269, 0.04);
    free(fscratch);
    ember_dfo_ws_free(&ws);
  }
}

static void test_polish_descends(void **state) {
  (void)state;
  const float centres[4] = {0.3f, -0.5f, -0.2f, 0.4f};
  bowl b = {centres, 5.0f, 0};
  /* two queries, two points each */
  float y[8] = {0.9f, 0.9f, -0.9f, -0.9f, 0.0f, 0.0f, 0.5f, -0.5f}, e[4], work[3 * 8 + 2 * 4];
  assert_int_equal(ember_polish(bowl_energy_grad, &b, 2, 2, 2, y, e, lo2, hi2, 40, 0.05f, work, NULL, NULL), 0);
  for (int p = 0; p < 4; p++) {
    const float *c = centres + 2 * (p / 2);
    assert_true(hypotf(y[2 * p] - c[0], y[2 * p + 1] - c[1]) < 1e-3f);
    assert_true(e[p] < 1e-5f);
  }
}

/* Another thread's cancel flag stops polishing before its next step's energy pass. */
static atomic_int polish_stop;
static void bowl_grad_then_stop(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  bowl_energy_grad(ctx, nq, n, y, e, dy);
  if (((bowl *)ctx)->calls == 3) atomic_store(&polish_stop, 1);
}

static void test_polish_cancels(void **state) {
  (void)state;
  const float centres[2] = {0.3f, -0.5f};
  bowl b = {centres, 5.0f, 0};
  float y[2] = {0.9f, 0.9f}, e[1], work[3 * 2 + 2];
  ember_err err;
  assert_int_equal(ember_polish(bowl_grad_then_stop, &b, 1, 1, 2, y, e, lo2, hi2, 10000, 0.05f, work,
                                &polish_stop, &err), EMBER_ECANCELED);
  assert_int_equal(b.calls, 3);
  assert_int_equal(ember_polish(bowl_energy_grad, &b, 1, 1, 2, y, e, lo2, hi2, 5, 0.05f, work, &polish_stop, &err),
                   EMBER_ECANCELED);
  assert_int_equal(b.calls, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_recovers_argmin_of_quadratics),
      cmocka_unit_test(test_argmin_on_the_boundary),
      cmocka_unit_test(test_reproducible_and_independent_of_batch),
      cmocka_unit_test(test_rejects_bad_options),
      cmocka_unit_test(test_non_finite_energies_are_ignored),
      cmocka_unit_test(test_resampling_follows_the_weights),
      cmocka_unit_test(test_modes_of_a_double_well),
      cmocka_unit_test(test_modes_survive_a_starved_branch),
      cmocka_unit_test(test_groups_resample_among_themselves),
      cmocka_unit_test(test_controls_are_per_call),
      cmocka_unit_test(test_run_cancels),
      cmocka_unit_test(test_polish_descends),
      cmocka_unit_test(test_polish_cancels),
      cmocka_unit_test(test_ardfo_recovers_high_dimensional_argmin),
      cmocka_unit_test(test_ardfo_keeps_later_coordinates),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
