/* ember/langevin.h - Method C's sampler: Langevin MCMC chains on any energy with a gradient.
 *
 * Every chain starts uniform in [lo, hi] and takes `steps` steps
 *     g = dE/dy(y)
 *     delta = -a_k * lambda_k * g + noise_scale * sqrt(2 lambda_k) * xi,   xi ~ N(0, I)
 *     delta = clip(delta, -delta_max, delta_max)   (per component; delta_max <= 0: no clip)
 *     y = clip(y + delta, lo, hi)
 * with a_k = 1/2 for the method text's update (y <- y - (lambda_k / 2) g + omega, omega ~
 * N(0, 2 lambda_k)) and IBC's (its 0.5 gradient factor), and the step size lambda_k from one of
 * two schedules (k = 1..steps):
 *     EMBER_SCHEDULE_POLY : lambda_k = step_init * k^-gamma        (the method text, gamma 0.55;
 *                           read as SGLD's decreasing schedule that starts at step_init)
 *     EMBER_SCHEDULE_IBC  : lambda_k = (step_init - step_final) (1 - (k-1)/steps)^2 + step_final
 *                           (IBC's polynomial decay of power 2 from init to final)
 * IBC's update is dy = step (0.5 g + noise xi): its noise is step * noise, not sqrt(2 step);
 * EMBER_SCHEDULE_IBC uses that form. With noise_scale = sqrt(1/2) and a constant step
 * (gamma = 0) the POLY chain is the textbook Langevin sampler of exp(-E): delta =
 * -(lambda/2) g + sqrt(lambda) xi.
 *
 * Chains draw from their query's random stream, one chain after another, so results do not
 * depend on the thread count or on other queries. No gradient flows back through a chain.
 *
 * The workspace is memory only; what one run does beyond the sampler's options (go on from the
 * last run's states, skip the final evaluation, who may stop it) is said per call, in an
 * ember_langevin_ctl (NULL: none of it).
 *
 *     ember_langevin_opts o = EMBER_LANGEVIN_DEFAULTS;
 *     ember_langevin_ws ws;  ember_langevin_ws_init(&ws, 1, 512, 2, NULL);
 *     ember_langevin_run(&ws, energy_grad, ctx, 1, lo, hi, &o, 512, NULL, &rng, best_y, best_e, NULL);
 *     // IBC's second chain: the same chains go on from where the first run left them
 *     ember_langevin_opts small = o;  small.steps = 100;  small.step_init = small.step_final = 1e-5f;
 *     ember_langevin_ctl resume = {.resume = 1};
 *     ember_langevin_run(&ws, energy_grad, ctx, 1, lo, hi, &small, 512, &resume, &rng, best_y, best_e, NULL);
 */
#ifndef EMBER_LANGEVIN_H
#define EMBER_LANGEVIN_H

#include "ember/base.h"
#include "ember/dfo.h"

#ifdef __cplusplus
extern "C" {
#endif

int ember_langevin_opts_check(const ember_langevin_opts *o, ember_err *err);
/* lambda_k for k = 1..steps */
float ember_langevin_step(const ember_langevin_opts *o, int k);

typedef struct ember_langevin_ws {
  int max_queries, max_chains, ydim;
  float *y;     /* (max_queries, max_chains, ydim): the chains' current states */
  float *e;     /* (max_queries, max_chains): energies at the states */
  float *g;     /* (max_queries, max_chains, ydim): dE/dy */
  float *noise; /* (max_chains * ydim) */
  void *mem;
} ember_langevin_ws;

/* Per-call controls of ember_langevin_run; a NULL pointer means all zero. */
typedef struct ember_langevin_ctl {
  int resume;     /* non-zero: the chains start from the states in ws->y (the last run's final
                     states, e.g. IBC's second chain) instead of uniform ones */
  int skip_final; /* non-zero: the run ends after its last update without evaluating the final
                     states (ws->e is not filled; best_y and best_e must be NULL) */
  const atomic_int *cancel; /* non-NULL: once another thread raises it (base.h), the run stops
                               before its next step and returns EMBER_ECANCELED */
} ember_langevin_ctl;

int ember_langevin_ws_init(ember_langevin_ws *ws, int max_queries, int max_chains, int ydim,
                           ember_err *err);
/* Bytes ember_langevin_ws_init allocates for these sizes. */
size_t ember_langevin_ws_bytes(int max_queries, int max_chains, int ydim);
void ember_langevin_ws_free(ember_langevin_ws *ws);

/* Runs `chains` chains per query for nq queries. fn gives energies and dE/dy for
 * (nq, chains) states at once. After the call ws->y and ws->e hold the final states and their
 * energies; best_y (nq, ydim) and best_e (nq) get each query's lowest-energy state (either may
 * be NULL). ctl: this call's controls, or NULL. rngs: (nq) streams. */
int ember_langevin_run(ember_langevin_ws *ws, ember_energy_grad_fn fn, void *ctx, int nq,
                       const float *lo, const float *hi, const ember_langevin_opts *o, int chains,
                       const ember_langevin_ctl *ctl, ember_rng *rngs, float *best_y,
                       float *best_e, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
