/* test_langevin.c - Method C's sampler on analytic energies: the textbook chain samples
 * exp(-E) (histogram of a Gaussian mixture), IBC's schedule finds a minimum and polishing
 * sharpens it, the step schedules, bad options, reproducibility, and the per-call controls
 * (resume, skip_final, cancel). */
#include "testutil.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/langevin.h"

/* p(y) = 0.35 N(-0.35, 0.2^2) + 0.65 N(0.35, 0.25^2); E = -log p */
static const double W1 = 0.35, M1 = -0.35, S1 = 0.2, W2 = 0.65, M2 = 0.35, S2 = 0.25;

static double mixture(double y, double *dp) {
  double a = W1 / (S1 * sqrt(2 * 3.14159265358979323846)) * exp(-0.5 * (y - M1) * (y - M1) / (S1 * S1));
  double b = W2 / (S2 * sqrt(2 * 3.14159265358979323846)) * exp(-0.5 * (y - M2) * (y - M2) / (S2 * S2));
  if (dp) *dp = -a * (y - M1) / (S1 * S1) - b * (y - M2) / (S2 * S2);
  return a + b;
}

static void mixture_energy(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  (void)ctx;
  for (int i = 0; i < nq * n; i++) {
    double dp, p = mixture(y[i], &dp);
    e[i] = (float)-log(p);
    dy[i] = (float)(-dp / p);
  }
}

static void test_textbook_chain_samples_exp_minus_e(void **state) {
  (void)state;
  enum { CHAINS = 4000, BINS = 24 };
  const float lo[1] = {-1.5f}, hi[1] = {1.5f};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, CHAINS, 1, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 7, 0);
  /* constant step, noise sqrt(1/2): delta = -(lambda/2) g + sqrt(lambda) xi */
  ember_langevin_opts o = {2000, EMBER_SCHEDULE_POLY, 2e-3f, 0.0f, 0.0f, (float)sqrt(0.5), 0.0f};
  assert_int_equal(ember_langevin_run(&ws, mixture_energy, NULL, 1, lo, hi, &o, CHAINS, NULL, &rng, NULL, NULL, NULL), 0);
  double hist[BINS] = {0}, want[BINS] = {0}, width = 3.0 / BINS, z = 0;
  for (int i = 0; i < CHAINS; i++) {
    int b = (int)((ws.y[i] + 1.5f) / width);
    hist[b < 0 ? 0 : (b >= BINS ? BINS - 1 : b)] += 1.0 / CHAINS;
  }
  for (int b = 0; b < BINS; b++) {
    for (int s = 0; s < 50; s++) want[b] += mixture(-1.5 + (b + (s + 0.5) / 50.0) * width, NULL);
    z += want[b];
  }
  double tv = 0;
  for (int b = 0; b < BINS; b++) tv += 0.5 * fabs(hist[b] - want[b] / z);
  printf("total variation between the chains' histogram and exp(-E): %.4f\n", tv);
  assert_true(tv < 0.05);
  ember_langevin_ws_free(&ws);
}

/* E = 20 |y - c|^2 in 2-D */
static const float centre[2] = {0.3f, -0.6f};

static void bowl(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  (void)ctx;
  for (int i = 0; i < nq * n; i++) {
    float a = y[2 * i] - centre[0], b = y[2 * i + 1] - centre[1];
    e[i] = 20.0f * (a * a + b * b);
    dy[2 * i] = 40.0f * a;
    dy[2 * i + 1] = 40.0f * b;
  }
}

static void test_ibc_schedule_finds_and_refines_the_minimum(void **state) {
  (void)state;
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, 256, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 3, 0);
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  o.steps = 100;
  float best[2], e;
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &o, 256, NULL, &rng, best, &e, NULL), 0);
  float d = hypotf(best[0] - centre[0], best[1] - centre[1]);
  assert_true(d < 0.05f);
  /* sample, then refine: gradient descent from the best chain */
  float work[3 * 2 + 2];
  assert_int_equal(ember_polish(bowl, NULL, 1, 1, 2, best, &e, lo, hi, 30, 0.01f, work, NULL, NULL), 0);
  assert_true(hypotf(best[0] - centre[0], best[1] - centre[1]) < 1e-3f);
  assert_true(hypotf(best[0] - centre[0], best[1] - centre[1]) <= d);
  ember_langevin_ws_free(&ws);
}

/* IBC's second chain: a run with resume set goes on from the last run's states instead of
 * drawing new ones (each chain moves at most steps x delta_max), and at a small step it only
 * descends further. Resuming is this call's choice only: the next run without it starts anew. */
static void test_second_chain_resumes(void **state) {
  (void)state;
  enum { N = 64 };
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, N, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 5, 0);
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  o.steps = 10;
  float best[2], e1, e2;
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &o, N, NULL, &rng, best, &e1, NULL), 0);
  float before[2 * N];
  memcpy(before, ws.y, sizeof before);
  ember_langevin_opts again = o;
  again.steps = 20;
  again.step_init = again.step_final = 1e-3f;
  again.delta_max = 0.01f;
  const ember_langevin_ctl resume = {.resume = 1};
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &again, N, &resume, &rng, best, &e2, NULL), 0);
  for (int i = 0; i < 2 * N; i++) assert_true(fabsf(ws.y[i] - before[i]) <= 20 * 0.01f + 1e-6f);
  assert_true(e2 <= e1);
  ember_rng_seed(&rng, 5, 0); /* the first run again, in the same workspace: the same chains */
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &o, N, NULL, &rng, best, &e2, NULL), 0);
  assert_memory_equal(ws.y, before, sizeof before);
  assert_true(e2 == e1);
  ember_langevin_ws_free(&ws);
}

/* Another thread's cancel flag stops a run before its next step. */
static atomic_int stop_flag;
static int bowl_calls;
static void bowl_then_stop(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  bowl(ctx, nq, n, y, e, dy);
  if (++bowl_calls == 3) atomic_store(&stop_flag, 1);
}

static void test_cancel_stops_the_chain(void **state) {
  (void)state;
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, 16, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 1, 0);
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  const ember_langevin_ctl ctl = {.cancel = &stop_flag};
  ember_err err;
  assert_int_equal(ember_langevin_run(&ws, bowl_then_stop, NULL, 1, lo, hi, &o, 16, &ctl, &rng, NULL, NULL, &err),
                   EMBER_ECANCELED);
  assert_int_equal(bowl_calls, 3);
  ember_langevin_ws_free(&ws);
}

/* The flag raised by another thread, which synchronises with nothing else: the run stops
 * after at most 2 steps (step 2's energy pass waits, with relaxed loads that order nothing,
 * until the store is visible). Under `make tsan` this is the check that the library reads the
 * flag as an atomic: a plain or volatile read is reported as a race with the store. */
static atomic_int cross_flag, cross_calls;
static void *raise_flag(void *arg) {
  (void)arg;
  atomic_store_explicit(&cross_flag, 1, memory_order_relaxed);
  return NULL;
}
static void bowl_wait_for_flag(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  bowl(ctx, nq, n, y, e, dy);
  if (atomic_fetch_add_explicit(&cross_calls, 1, memory_order_relaxed) + 1 == 2)
    while (!atomic_load_explicit(&cross_flag, memory_order_relaxed)) sched_yield();
}

static void test_cancel_from_another_thread(void **state) {
  (void)state;
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, 16, 2, NULL), 0);
  ember_rng rng;
  ember_rng_seed(&rng, 1, 0);
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  const ember_langevin_ctl ctl = {.cancel = &cross_flag};
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, raise_flag, NULL), 0);
  ember_err err;
  int rc = ember_langevin_run(&ws, bowl_wait_for_flag, NULL, 1, lo, hi, &o, 16, &ctl, &rng, NULL, NULL, &err);
  pthread_join(t, NULL);
  assert_int_equal(rc, EMBER_ECANCELED);
  assert_true(atomic_load(&cross_calls) <= 2);
  ember_langevin_ws_free(&ws);
}

/* skip_final (training evaluates the final states itself): the same chains, one energy pass
 * fewer, and no best state to return. */
static int counted_calls;
static void bowl_counted(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  bowl(ctx, nq, n, y, e, dy);
  counted_calls++;
}

static void test_skip_final_saves_the_last_pass(void **state) {
  (void)state;
  enum { N = 32 };
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 1, N, 2, NULL), 0);
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  o.steps = 7;
  ember_rng rng;
  ember_rng_seed(&rng, 3, 0);
  assert_int_equal(ember_langevin_run(&ws, bowl_counted, NULL, 1, lo, hi, &o, N, NULL, &rng, NULL, NULL, NULL), 0);
  assert_int_equal(counted_calls, o.steps + 1);
  float full[2 * N];
  memcpy(full, ws.y, sizeof full);
  const ember_langevin_ctl skip = {.skip_final = 1};
  float best[2];
  ember_err err;
  assert_int_equal(ember_langevin_run(&ws, bowl_counted, NULL, 1, lo, hi, &o, N, &skip, &rng, best, NULL, &err),
                   EMBER_EINVAL);
  counted_calls = 0;
  ember_rng_seed(&rng, 3, 0);
  assert_int_equal(ember_langevin_run(&ws, bowl_counted, NULL, 1, lo, hi, &o, N, &skip, &rng, NULL, NULL, NULL), 0);
  assert_int_equal(counted_calls, o.steps);
  assert_memory_equal(ws.y, full, sizeof full);
  ember_langevin_ws_free(&ws);
}

static void test_schedules(void **state) {
  (void)state;
  ember_langevin_opts p = {50, EMBER_SCHEDULE_POLY, 0.1f, 0.0f, 0.55f, 1.0f, 0.0f};
  assert_float_equal(ember_langevin_step(&p, 1), 0.1, 1e-7);
  assert_float_equal(ember_langevin_step(&p, 10), 0.1 * pow(10, -0.55), 1e-7);
  for (int k = 2; k <= 50; k++) assert_true(ember_langevin_step(&p, k) < ember_langevin_step(&p, k - 1));
  ember_langevin_opts b = {50, EMBER_SCHEDULE_IBC, 0.1f, 1e-5f, 0.0f, 1.0f, 0.1f};
  assert_float_equal(ember_langevin_step(&b, 1), 0.1, 1e-7);
  assert_float_equal(ember_langevin_step(&b, 50), (0.1 - 1e-5) / 2500.0 + 1e-5, 1e-8);
  for (int k = 2; k <= 50; k++) assert_true(ember_langevin_step(&b, k) < ember_langevin_step(&b, k - 1));
}

static void test_bad_options_and_reproducibility(void **state) {
  (void)state;
  const float lo[2] = {-1, -1}, hi[2] = {1, 1};
  ember_langevin_ws ws;
  assert_int_equal(ember_langevin_ws_init(&ws, 2, 64, 2, NULL), 0);
  ember_rng rngs[2];
  ember_err err;
  struct { ember_langevin_opts o; const char *msg; } bad[] = {
      {{0, EMBER_SCHEDULE_IBC, 0.1f, 1e-5f, 0.55f, 1.0f, 0.1f}, "steps"},
      {{10, EMBER_SCHEDULE_IBC, -0.1f, 1e-5f, 0.55f, 1.0f, 0.1f}, "initial step"},
      {{10, EMBER_SCHEDULE_IBC, 0.1f, 0.5f, 0.55f, 1.0f, 0.1f}, "final step"},
      {{10, EMBER_SCHEDULE_POLY, 0.1f, 0.0f, -1.0f, 1.0f, 0.1f}, "gamma"},
      {{10, EMBER_SCHEDULE_POLY, 0.1f, 0.0f, 0.55f, -1.0f, 0.1f}, "noise"},
      {{10, EMBER_SCHEDULE_POLY, 0.1f, 0.0f, 0.55f, 1.0f, -0.1f}, "change clip"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &bad[i].o, 64, NULL, rngs, NULL, NULL, &err), EMBER_EINVAL);
    if (!strstr(err.msg, bad[i].msg)) fail_msg("case %zu: '%s'", i, err.msg);
  }
  ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &o, 65, NULL, rngs, NULL, NULL, &err), EMBER_EINVAL);
  float a[4], b[4], alone[2];
  for (int r = 0; r < 2; r++) {
    for (int q = 0; q < 2; q++) ember_rng_seed(&rngs[q], 5, (uint64_t)q);
    assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 2, lo, hi, &o, 64, NULL, rngs, r ? b : a, NULL, NULL), 0);
  }
  assert_memory_equal(a, b, sizeof a);
  ember_rng_seed(&rngs[0], 5, 0);
  assert_int_equal(ember_langevin_run(&ws, bowl, NULL, 1, lo, hi, &o, 64, NULL, rngs, alone, NULL, NULL), 0);
  assert_memory_equal(alone, a, sizeof alone); /* a query's chains do not depend on the others */
  ember_langevin_ws_free(&ws);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_textbook_chain_samples_exp_minus_e),
      cmocka_unit_test(test_ibc_schedule_finds_and_refines_the_minimum),
      cmocka_unit_test(test_second_chain_resumes),
      cmocka_unit_test(test_cancel_stops_the_chain),
      cmocka_unit_test(test_cancel_from_another_thread),
      cmocka_unit_test(test_skip_final_saves_the_last_pass),
      cmocka_unit_test(test_schedules),
      cmocka_unit_test(test_bad_options_and_reproducibility),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
