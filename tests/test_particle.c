/* test_particle.c - the N-D particle task: the dynamics against steps computed by hand (exact
 * rational arithmetic of the update rule, outside this code), the success rule on constructed
 * episodes, the oracle's switch and its success rate, resets, clipping and bad arguments. */
#include "testutil.h"

#include <math.h>
#include <string.h>

#include "tasks/particle.h"

static void test_one_dimension_matches_hand_steps(void **state) {
  (void)state;
  ember_particle p;
  assert_int_equal(ember_particle_init(&p, 1, NULL), 0);
  p.pos[0] = 0.25;
  p.vel[0] = 0.0;
  const float a = 0.75f;
  /* u = 10 (a - x) - 5 v; x += v dt; v += u dt, ten times per control step */
  const double want[3][2] = {{0.25525974491977949, 0.22298350138905584},
                             {0.27040848838466131, 0.39155401553188574},
                             {0.29291556349148651, 0.51400697067053147}};
  for (int s = 0; s < 3; s++) {
    ember_particle_step(&p, &a);
    assert_float_equal(p.pos[0], want[s][0], 1e-14);
    assert_float_equal(p.vel[0], want[s][1], 1e-14);
  }
  assert_int_equal(p.t, 3);
  ember_particle_free(&p);
}

static void test_two_dimensions_with_velocity(void **state) {
  (void)state;
  ember_particle p;
  assert_int_equal(ember_particle_init(&p, 2, NULL), 0);
  p.pos[0] = 0.5, p.pos[1] = 0.125;
  p.vel[0] = 1.0, p.vel[1] = -0.5;
  const float a[2] = {0.5f, 1.0f};
  ember_particle_step(&p, a);
  assert_float_equal(p.pos[0], 0.54459670027781115, 1e-14);
  assert_float_equal(p.pos[1], 0.11190620347070851, 1e-14);
  assert_float_equal(p.vel[0], 0.76649700877138516, 1e-14);
  assert_float_equal(p.vel[1], 0.0069726230451551338, 1e-14);
  ember_particle_free(&p);
}

static void test_observation_layout_and_reset(void **state) {
  (void)state;
  ember_particle p, q;
  assert_int_equal(ember_particle_init(&p, 3, NULL), 0);
  assert_int_equal(ember_particle_init(&q, 3, NULL), 0);
  ember_rng r1, r2;
  ember_rng_seed(&r1, 7, 4);
  ember_rng_seed(&r2, 7, 4);
  ember_particle_reset(&p, &r1);
  ember_particle_reset(&q, &r2);
  float obs[12], obs2[12];
  ember_particle_observe(&p, obs);
  ember_particle_observe(&q, obs2);
  assert_memory_equal(obs, obs2, sizeof obs); /* same seed and stream, same episode */
  for (int i = 0; i < 3; i++) {
    assert_true(obs[i] >= 0.0f && obs[i] < 1.0f);
    assert_true(obs[3 + i] == 0.0f); /* velocity starts at rest */
    assert_true(obs[6 + i] >= 0.0f && obs[6 + i] < 1.0f);
    assert_true(obs[9 + i] >= 0.0f && obs[9 + i] < 1.0f);
    assert_true(obs[i] == (float)p.pos[i] && obs[6 + i] == (float)p.goal1[i] && obs[9 + i] == (float)p.goal2[i]);
  }
  assert_true(isinf(p.min1) && isinf(p.min2) && p.t == 0 && p.oracle_phase == 0);
  ember_rng_seed(&r2, 7, 5); /* another stream: another episode */
  ember_particle_reset(&q, &r2);
  ember_particle_observe(&q, obs2);
  assert_true(memcmp(obs, obs2, sizeof obs) != 0);
  ember_particle_free(&p);
  ember_particle_free(&q);
}

static void test_actions_are_clipped(void **state) {
  (void)state;
  ember_particle p, q;
  assert_int_equal(ember_particle_init(&p, 2, NULL), 0);
  assert_int_equal(ember_particle_init(&q, 2, NULL), 0);
  p.pos[0] = q.pos[0] = 0.5;
  p.pos[1] = q.pos[1] = 0.5;
  const float wild[2] = {7.0f, NAN}, edge[2] = {1.0f, 0.0f};
  ember_particle_step(&p, wild);
  ember_particle_step(&q, edge);
  assert_true(p.pos[0] == q.pos[0] && p.pos[1] == q.pos[1]);
  assert_true(p.vel[0] == q.vel[0] && p.vel[1] == q.vel[1]);
  assert_true(isfinite(p.pos[1]));
  ember_particle_free(&p);
  ember_particle_free(&q);
}

/* The success rule, on episodes put together by hand. */
static void test_success_rule(void **state) {
  (void)state;
  ember_particle p;
  assert_int_equal(ember_particle_init(&p, 1, NULL), 0);
  p.goal1[0] = 0.2;
  p.goal2[0] = 0.8;
  /* both visited (distances recorded after steps), ends at goal 2 */
  p.pos[0] = 0.79;
  p.min1 = 0.049, p.min2 = 0.01;
  assert_true(ember_particle_success(&p));
  /* goal 1 only came within 0.05 exactly: not below, not a visit */
  p.min1 = 0.05;
  assert_false(ember_particle_success(&p));
  p.min1 = 0.049;
  /* visited both but left goal 2 */
  p.pos[0] = 0.7;
  assert_false(ember_particle_success(&p));
  /* at goal 2 at the end but never near goal 1 */
  p.pos[0] = 0.8;
  p.min1 = 0.3;
  assert_false(ember_particle_success(&p));
  /* step records the distances at the end of the control step */
  p.pos[0] = 0.2, p.vel[0] = 0.0;
  p.min1 = p.min2 = INFINITY;
  const float stay = 0.2f;
  ember_particle_step(&p, &stay);
  assert_float_equal(p.min1, fabs(p.pos[0] - 0.2), 1e-12);
  assert_true(p.min1 < 1e-6);
  assert_float_equal(p.min2, fabs(p.pos[0] - 0.8), 1e-12);
  assert_float_equal(ember_particle_goal_dist(&p, 2), 0.6, 1e-6);
  ember_particle_free(&p);
}

/* The oracle heads for goal 1 until within 0.01, then for goal 2 and never back. */
static void test_oracle_switches_once(void **state) {
  (void)state;
  ember_particle p;
  assert_int_equal(ember_particle_init(&p, 2, NULL), 0);
  p.pos[0] = 0.1, p.pos[1] = 0.1;
  p.goal1[0] = 0.5, p.goal1[1] = 0.5;
  p.goal2[0] = 0.9, p.goal2[1] = 0.2;
  float a[2];
  ember_particle_oracle(&p, a);
  assert_true(a[0] == 0.5f && a[1] == 0.5f && p.oracle_phase == 0);
  p.pos[0] = 0.5 + 0.006, p.pos[1] = 0.5 + 0.006; /* 0.0085 away: switch */
  ember_particle_oracle(&p, a);
  assert_true(a[0] == 0.9f && a[1] == 0.2f && p.oracle_phase == 1);
  p.pos[0] = 0.5, p.pos[1] = 0.5; /* back at goal 1: stays on goal 2 */
  ember_particle_oracle(&p, a);
  assert_true(a[0] == 0.9f && a[1] == 0.2f);
  ember_particle_free(&p);
}

/* Whole episodes: the oracle succeeds on nearly all of them in every dimension; standing
 * still almost never does. */
static double rate(int dims, int episodes, int oracle) {
  ember_particle p;
  assert_int_equal(ember_particle_init(&p, dims, NULL), 0);
  float obs[4 * 32], a[32];
  int ok = 0;
  for (int e = 0; e < episodes; e++) {
    ember_rng rng;
    ember_rng_seed(&rng, 3, (uint64_t)e);
    ember_particle_reset(&p, &rng);
    while (!ember_particle_done(&p)) {
      ember_particle_observe(&p, obs);
      if (oracle) ember_particle_oracle(&p, a);
      else memcpy(a, obs, (size_t)dims * sizeof(float)); /* hold position */
      ember_particle_step(&p, a);
    }
    assert_int_equal(p.t, EMBER_PARTICLE_STEPS);
    ok += ember_particle_success(&p);
  }
  ember_particle_free(&p);
  return (double)ok / episodes;
}

static void test_oracle_succeeds(void **state) {
  (void)state;
  const int dims[] = {1, 2, 4, 8, 16, 32};
  for (int i = 0; i < 6; i++) {
    double r = rate(dims[i], 200, 1);
    print_message("oracle, N = %d: %.3f of 200 episodes\n", dims[i], r);
    assert_true(r >= 0.98);
  }
  assert_true(rate(2, 200, 0) <= 0.02);
}

static void test_bad_dimensions(void **state) {
  (void)state;
  ember_particle p;
  ember_err err;
  assert_int_equal(ember_particle_init(&p, 0, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "got 0"));
  assert_int_equal(ember_particle_init(&p, EMBER_PARTICLE_MAX_DIMS + 1, &err), EMBER_EINVAL);
  ember_particle_free(&p); /* safe after a failed init */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_dimension_matches_hand_steps),
      cmocka_unit_test(test_two_dimensions_with_velocity),
      cmocka_unit_test(test_observation_layout_and_reset),
      cmocka_unit_test(test_actions_are_clipped),
      cmocka_unit_test(test_success_rule),
      cmocka_unit_test(test_oracle_switches_once),
      cmocka_unit_test(test_oracle_succeeds),
      cmocka_unit_test(test_bad_dimensions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
