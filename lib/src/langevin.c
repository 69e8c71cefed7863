/* langevin.c - Langevin MCMC chains (Method C's sampler) on an energy with a gradient.
 *
 * Like the DFO optimiser, the sampler sees only a callback, here one that returns energies and
 * dE/dy for all chains of all queries at once, so a network evaluates every chain of a step in
 * one batched forward and backward pass. The update and the two step schedules are in
 * ember/langevin.h; everything between callback calls is O(chains) and allocation-free.
 */
#include "ember/langevin.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ember_langevin_opts_check(const ember_langevin_opts *o, ember_err *err) {
  if (o->steps < 1 || o->steps > EMBER_MAX_CHAIN_STEPS)
    return ember_fail(err, EMBER_EINVAL, "Langevin chain steps must be 1..%d, got %d",
                      EMBER_MAX_CHAIN_STEPS, o->steps);
  if (o->schedule != EMBER_SCHEDULE_POLY && o->schedule != EMBER_SCHEDULE_IBC)
    return ember_fail(err, EMBER_EINVAL, "unknown Langevin step schedule %d", (int)o->schedule);
  if (!(o->step_init > 0.0f) || !isfinite(o->step_init))
    return ember_fail(err, EMBER_EINVAL, "Langevin initial step (step init) must be positive, got %g", (double)o->step_init);
  if (o->schedule == EMBER_SCHEDULE_IBC && !(o->step_final > 0.0f && o->step_final <= o->step_init))
    return ember_fail(err, EMBER_EINVAL, "Langevin final step must be in (0, initial step], got %g",
                      (double)o->step_final);
  if (!(o->gamma >= 0.0f && o->gamma <= 10.0f))
    return ember_fail(err, EMBER_EINVAL, "Langevin gamma must be in [0, 10], got %g", (double)o->gamma);
  if (!(o->noise_scale >= 0.0f) || !isfinite(o->noise_scale))
    return ember_fail(err, EMBER_EINVAL, "Langevin noise scale must be >= 0, got %g", (double)o->noise_scale);
  if (!(o->delta_max >= 0.0f) || !isfinite(o->delta_max))
    return ember_fail(err, EMBER_EINVAL, "Langevin change clip (delta max) must be >= 0 (0 = no clip), got %g",
                      (double)o->delta_max);
  return 0;
}

float ember_langevin_step(const ember_langevin_opts *o, int k) {
  if (o->schedule == EMBER_SCHEDULE_POLY) return o->step_init * powf((float)k, -o->gamma);
  float t = 1.0f - (float)(k - 1) / (float)o->steps;
  return (o->step_init - o->step_final) * t * t + o->step_final;
}

size_t ember_langevin_ws_bytes(int max_queries, int max_chains, int ydim) {
  size_t pop = (size_t)max_queries * max_chains;
  return (2 * pop * ydim + pop + (size_t)max_chains * ydim) * sizeof(float);
}

int ember_langevin_ws_init(ember_langevin_ws *ws, int max_queries, int max_chains, int ydim,
                           ember_err *err) {
  memset(ws, 0, sizeof *ws);
  if (max_queries < 1 || max_chains < 1 || ydim < 1)
    return ember_fail(err, EMBER_EINVAL, "Langevin workspace needs positive sizes");
  size_t pop = (size_t)max_queries * max_chains;
  size_t floats = ember_langevin_ws_bytes(max_queries, max_chains, ydim) / sizeof(float);
  float *mem = malloc(floats * sizeof(float));
  if (!mem)
    return ember_fail(err, EMBER_ENOMEM, "out of memory: Langevin workspace of %zu MiB",
                      floats * sizeof(float) >> 20);
  ws->mem = mem;
  ws->y = mem;
  ws->g = ws->y + pop * ydim;
  ws->e = ws->g + pop * ydim;
  ws->noise = ws->e + pop;
  ws->max_queries = max_queries;
  ws->max_chains = max_chains;
  ws->ydim = ydim;
  return 0;
}

void ember_langevin_ws_free(ember_langevin_ws *ws) {
  if (!ws) return;
  free(ws->mem);
  memset(ws, 0, sizeof *ws);
}

int ember_langevin_run(ember_langevin_ws *ws, ember_energy_grad_fn fn, void *ctx, int nq,
                       const float *lo, const float *hi, const ember_langevin_opts *o, int chains,
                       const ember_langevin_ctl *ctl, ember_rng *rngs, float *best_y,
                       float *best_e, ember_err *err) {
  static const ember_langevin_ctl none = {0};
  if (!ctl) ctl = &none;
  int rc = ember_langevin_opts_check(o, err);
  if (rc < 0) return rc;
  if (ctl->skip_final && (best_y || best_e))
    return ember_fail(err, EMBER_EINVAL, "a Langevin run that skips its final evaluation has no best state to return");
  const int d = ws->ydim;
  if (nq < 1 || nq > ws->max_queries || chains < 1 || chains > ws->max_chains)
    return ember_fail(err, EMBER_EINVAL,
                      "Langevin batch of %d queries x %d chains exceeds the workspace (%d x %d)",
                      nq, chains, ws->max_queries, ws->max_chains);
  for (int j = 0; j < d; j++)
    if (!(lo[j] < hi[j]))
      return ember_fail(err, EMBER_EINVAL, "bounds of y%d are empty: [%g, %g]", j, (double)lo[j],
                        (double)hi[j]);
  const size_t qstride = (size_t)chains * d;
  for (int q = 0; q < nq && !ctl->resume; q++)
    for (size_t i = 0; i < qstride; i++) {
      int j = (int)(i % (size_t)d);
      ws->y[q * qstride + i] = lo[j] + (hi[j] - lo[j]) * ember_rng_uniform(&rngs[q]);
    }
  const int ibc = o->schedule == EMBER_SCHEDULE_IBC;
  for (int k = 1; k <= o->steps; k++) {
    if (ember_cancel_requested(ctl->cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
    fn(ctx, nq, chains, ws->y, ws->e, ws->g);
    const float lambda = ember_langevin_step(o, k);
    const float drift = 0.5f * lambda;
    const float noise = o->noise_scale * (ibc ? lambda : sqrtf(2.0f * lambda));
    for (int q = 0; q < nq; q++) {
      float *yq = ws->y + q * qstride;
      const float *gq = ws->g + q * qstride;
      ember_rng_normal_fill(&rngs[q], ws->noise, qstride);
      for (size_t i = 0; i < qstride; i++) {
        int j = (int)(i % (size_t)d);
        float g = isfinite(gq[i]) ? gq[i] : 0.0f;
        float delta = -drift * g + noise * ws->noise[i];
        if (o->delta_max > 0.0f) delta = delta < -o->delta_max ? -o->delta_max : (delta > o->delta_max ? o->delta_max : delta);
        float v = yq[i] + delta;
        yq[i] = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);
      }
    }
  }
  if (ctl->skip_final) return 0;
  fn(ctx, nq, chains, ws->y, ws->e, ws->g); /* energies of the final states */
  for (int q = 0; q < nq; q++) {
    const float *eq = ws->e + (size_t)q * chains;
    int best = 0;
    for (int i = 1; i < chains; i++)
      if (eq[i] < eq[best] || (!isfinite(eq[best]) && isfinite(eq[i]))) best = i;
    if (best_y) memcpy(best_y + (size_t)q * d, ws->y + q * qstride + (size_t)best * d, (size_t)d * sizeof(float));
    if (best_e) best_e[q] = eq[best];
  }
  return 0;
}
