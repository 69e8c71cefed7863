/* particle.c - the N-D particle task: PD-controlled point mass, two goals, an oracle.
 *
 * The numbers are the paper's (tasks/particle.h states them). Distances are recorded at the
 * end of each control step only, as the reference environment records them when it computes
 * the step's reward; a trajectory that sweeps through a goal between two control steps does
 * not count as a visit.
 */
#include "tasks/particle.h"

#include <math.h>
#include <stdlib.h>

int ember_particle_init(ember_particle *p, int dims, ember_err *err) {
  p->pos = NULL;
  if (dims < 1 || dims > EMBER_PARTICLE_MAX_DIMS)
    return ember_fail(err, EMBER_EINVAL, "particle dimensions must be 1..%d, got %d",
                      EMBER_PARTICLE_MAX_DIMS, dims);
  double *block = calloc((size_t)4 * dims, sizeof(double));
  if (!block) return ember_fail(err, EMBER_ENOMEM, "out of memory for a %d-D particle", dims);
  p->dims = dims;
  p->pos = block;
  p->vel = block + dims;
  p->goal1 = block + 2 * (size_t)dims;
  p->goal2 = block + 3 * (size_t)dims;
  p->min1 = p->min2 = INFINITY;
  p->t = 0;
  p->oracle_phase = 0;
  return 0;
}

void ember_particle_free(ember_particle *p) {
  free(p->pos);
  p->pos = p->vel = p->goal1 = p->goal2 = NULL;
}

void ember_particle_reset(ember_particle *p, ember_rng *rng) {
  const int n = p->dims;
  for (int i = 0; i < n; i++) p->pos[i] = ember_rng_uniform(rng);
  for (int i = 0; i < n; i++) p->goal1[i] = ember_rng_uniform(rng);
  for (int i = 0; i < n; i++) p->goal2[i] = ember_rng_uniform(rng);
  for (int i = 0; i < n; i++) p->vel[i] = 0.0;
  p->min1 = p->min2 = INFINITY;
  p->t = 0;
  p->oracle_phase = 0;
}

void ember_particle_observe(const ember_particle *p, float *obs) {
  const int n = p->dims;
  for (int i = 0; i < n; i++) {
    obs[i] = (float)p->pos[i];
    obs[n + i] = (float)p->vel[i];
    obs[2 * n + i] = (float)p->goal1[i];
    obs[3 * n + i] = (float)p->goal2[i];
  }
}

double ember_particle_goal_dist(const ember_particle *p, int goal) {
  const double *g = goal == 1 ? p->goal1 : p->goal2;
  double s = 0.0;
  for (int i = 0; i < p->dims; i++) s += (p->pos[i] - g[i]) * (p->pos[i] - g[i]);
  return sqrt(s);
}

void ember_particle_step(ember_particle *p, const float *action) {
  const int n = p->dims;
  const double dt = EMBER_PARTICLE_DT;
  for (int i = 0; i < n; i++) {
    /* fmax/fmin return the number when the other argument is NaN: NaN becomes 0 */
    double a = fmin(1.0, fmax(0.0, (double)action[i]));
    if (isnan((double)action[i])) a = 0.0;
    double x = p->pos[i], v = p->vel[i];
    for (int k = 0; k < EMBER_PARTICLE_SUBSTEPS; k++) {
      double u = EMBER_PARTICLE_KP * (a - x) - EMBER_PARTICLE_KV * v;
      x += v * dt;
      v += u * dt;
    }
    p->pos[i] = x;
    p->vel[i] = v;
  }
  p->t++;
  p->min1 = fmin(p->min1, ember_particle_goal_dist(p, 1));
  p->min2 = fmin(p->min2, ember_particle_goal_dist(p, 2));
}

void ember_particle_oracle(ember_particle *p, float *action) {
  if (p->oracle_phase == 0 && ember_particle_goal_dist(p, 1) < EMBER_PARTICLE_ORACLE_DIST)
    p->oracle_phase = 1;
  const double *g = p->oracle_phase == 0 ? p->goal1 : p->goal2;
  for (int i = 0; i < p->dims; i++) action[i] = (float)g[i];
}

int ember_particle_done(const ember_particle *p) { return p->t >= EMBER_PARTICLE_STEPS; }

int ember_particle_success(const ember_particle *p) {
  return p->min1 < EMBER_PARTICLE_GOAL_DIST && p->min2 < EMBER_PARTICLE_GOAL_DIST &&
         ember_particle_goal_dist(p, 2) < EMBER_PARTICLE_GOAL_DIST;
}
