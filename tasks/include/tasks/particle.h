/* tasks/particle.h - the N-D particle task of the IBC paper (its scaling benchmark).
 *
 * A point agent in [0, 1]^N must visit a first goal, then a second one and stay there. The
 * policy sees 4N numbers (agent position, agent velocity, goal 1, goal 2) and answers a
 * position set-point a in [0, 1]^N; a PD controller tracks it for 10 sub-steps of dt = 0.005:
 *     u = 10 (a - p) - 5 v;   p <- p + v dt;   v <- v + u dt      (both from the old p, v)
 * An episode is 50 control steps. After every control step the distances to both goals are
 * taken; the episode succeeds when the smallest distance to goal 1 and the smallest to goal 2
 * were both below 0.05 and the final distance to goal 2 is below 0.05. The oracle commands
 * goal 1 until the agent is within 0.01 of it, then goal 2 for the rest of the episode.
 *
 * The state is kept in double precision; observations and actions are float, as a policy
 * sees them. Actions are clipped to [0, 1] (NaN counts as 0). Nothing here allocates after
 * ember_particle_init, so a caller can step thousands of episodes in a loop.
 *
 *     ember_particle p;   ember_rng rng;   float obs[8], a[2];
 *     ember_particle_init(&p, 2, &err);
 *     ember_rng_seed(&rng, seed, episode);
 *     ember_particle_reset(&p, &rng);
 *     while (!ember_particle_done(&p)) {
 *       ember_particle_observe(&p, obs);
 *       ember_particle_oracle(&p, a);          // or a policy's answer for obs
 *       ember_particle_step(&p, a);
 *     }
 *     int ok = ember_particle_success(&p);
 *     ember_particle_free(&p);
 */
#ifndef EMBER_PARTICLE_H
#define EMBER_PARTICLE_H

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_PARTICLE_STEPS 50       /* control steps per episode */
#define EMBER_PARTICLE_SUBSTEPS 10    /* integration steps per control step */
#define EMBER_PARTICLE_DT 0.005       /* seconds per integration step */
#define EMBER_PARTICLE_KP 10.0        /* PD gains */
#define EMBER_PARTICLE_KV 5.0
#define EMBER_PARTICLE_GOAL_DIST 0.05 /* success: within this of a goal */
#define EMBER_PARTICLE_ORACLE_DIST 0.01 /* the oracle turns to goal 2 within this of goal 1 */
#define EMBER_PARTICLE_MAX_DIMS 4096

typedef struct ember_particle {
  int dims;          /* N */
  double *pos, *vel; /* (N) each: the agent */
  double *goal1, *goal2; /* (N) each */
  double min1, min2; /* smallest distance to each goal after a control step (inf before one) */
  int t;             /* control steps taken */
  int oracle_phase;  /* 0: the oracle heads for goal 1; 1: for goal 2 */
} ember_particle;

/* Allocates the state of an N-dimensional episode (1 <= N <= EMBER_PARTICLE_MAX_DIMS). */
int ember_particle_init(ember_particle *p, int dims, ember_err *err);
void ember_particle_free(ember_particle *p);
/* A new episode: position, goal 1 and goal 2 uniform in [0, 1]^N (drawn in that order),
 * velocity 0. */
void ember_particle_reset(ember_particle *p, ember_rng *rng);
/* obs (4N): position, velocity, goal 1, goal 2. */
void ember_particle_observe(const ember_particle *p, float *obs);
/* One control step with set-point action (N); then records the goal distances. */
void ember_particle_step(ember_particle *p, const float *action);
/* The oracle's action (N) for the current state; updates its phase. */
void ember_particle_oracle(ember_particle *p, float *action);
/* 1 once EMBER_PARTICLE_STEPS control steps were taken. */
int ember_particle_done(const ember_particle *p);
/* 1 if the episode (so far) meets the success rule. */
int ember_particle_success(const ember_particle *p);
/* Euclidean distance from the agent to goal (1 or 2). */
double ember_particle_goal_dist(const ember_particle *p, int goal);

#ifdef __cplusplus
}
#endif
#endif
