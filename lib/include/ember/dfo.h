/* ember/dfo.h - Method A's derivative-free optimiser and mode extraction, on any energy.
 *
 * The optimiser only sees an energy callback, so it can be tested on analytic energies and
 * driven by a network, a batch of server requests or anything else. For each of nq queries:
 *
 *   population: `samples` candidates uniform in [lo, hi]
 *   repeat `iters` times:
 *     E = energy(population); p = softmax(-E / temperature)
 *     if not the last iteration:
 *       resample `samples` candidates with replacement by p; add N(0, sigma^2) noise;
 *       clip to [lo, hi]; sigma *= shrink
 *   answer: the candidate with the highest p (lowest E) of the last evaluation
 *
 * This is the method text's loop with its final resample left out: after the last evaluation
 * a resample/noise step cannot change which candidate has the highest probability, so it would
 * only cost time (IBC's code does the same). The last evaluated population and its energies
 * stay in the workspace for ember_modes.
 *
 * Modes: the distinct minimisers, found by mode seeking at scale `radius` over up to 2048
 * candidates (an even sample of the final population and the lowest-energy candidates of the
 * uniform starting population, which keeps branches that the iterations let vanish): in order
 * of energy, each links to the lowest-energy earlier candidate within the radius, and one
 * without such a neighbour is a local minimum that roots a mode. A mode's
 * mass estimates the probability of the mode's basin under p(y|x) = softmax(-E / temperature):
 * the self-normalised importance weights of the *uniform starting population* (an unbiased
 * sample of the bounds), each joining the nearest root. The final population cannot give that
 * estimate: resampling has already multiplied it by exp(-E) several times and lets one basin
 * drift ahead of another. Modes with less than `min_mass` are dropped; the others are returned
 * sorted by energy, at most k, each optionally polished by gradient descent on E (with
 * backtracking, inside the bounds).
 *
 * The workspace is memory only. What one run does beyond the method's options (keep the uniform
 * population for modes, resample in groups, who may stop it) is said per call, in an
 * ember_dfo_ctl (NULL: none of it), so one workspace serves calls that want different things.
 *
 *     ember_dfo_ws ws;
 *     ember_dfo_ws_init(&ws, 1, 1024, 2, NULL);
 *     ember_infer_opts o = EMBER_INFER_DEFAULTS;  o.samples = 1024;
 *     ember_dfo_run(&ws, my_energy, ctx, 1, lo, hi, &o, NULL, &rng, best_y, best_e, NULL);
 *     ember_dfo_ctl modes = {.keep_initial = 1};   // then ember_modes_find on ws.y0, ws.e0
 *     ember_dfo_run(&ws, my_energy, ctx, 1, lo, hi, &o, &modes, &rng, NULL, NULL, NULL);
 */
#ifndef EMBER_DFO_H
#define EMBER_DFO_H

#include "ember/base.h"
#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Energies of nq * n candidates: y (nq, n, ydim) -> e (nq, n). Query q's candidates are
 * rows [q*n, (q+1)*n). */
typedef void (*ember_energy_fn)(void *ctx, int nq, int n, const float *y, float *e);
/* The same plus dE/dy: dy (nq, n, ydim). Used to polish modes. */
typedef void (*ember_energy_grad_fn)(void *ctx, int nq, int n, const float *y, float *e, float *dy);

typedef struct ember_dfo_ws {
  int max_queries, max_samples, ydim;
  float *y;     /* (max_queries, max_samples, ydim): the population */
  float *ynext; /* same size: resampling target */
  float *e;     /* (max_queries, max_samples): energies of the last evaluation */
  double *cdf;  /* (max_samples) */
  float *noise; /* (max_samples * ydim) */
  float *y0;    /* (max_queries, max_samples, ydim): the uniform starting population ... */
  float *e0;    /* (max_queries, max_samples): ... and its energies, after a keep_initial run */
  void *mem;
} ember_dfo_ws;

int ember_dfo_ws_init(ember_dfo_ws *ws, int max_queries, int max_samples, int ydim, ember_err *err);
void ember_dfo_ws_free(ember_dfo_ws *ws);

/* Per-call controls of ember_dfo_run and ember_ardfo_run; a NULL pointer means all zero. */
typedef struct ember_dfo_ctl {
  int keep_initial; /* non-zero: ws->y0 and ws->e0 get the uniform starting population and its
                       energies (for ember_modes_find); otherwise they are left alone */
  int groups;       /* > 1: the population is cut into this many groups that resample only among
                       themselves (independent runs sharing the energy passes); 0 or 1: one */
  const atomic_int *cancel; /* non-NULL: once another thread raises it (base.h), the run stops
                               with EMBER_ECANCELED before its next energy evaluation */
} ember_dfo_ctl;

/* Runs the optimiser for nq <= max_queries queries with opts->samples <= max_samples.
 * lo, hi: (ydim) bounds. ctl: this call's controls, or NULL. rngs: (nq) one stream per query.
 * best_y: (nq, ydim), best_e: (nq); either may be NULL. Returns 0, EMBER_EINVAL for bad options
 * or sizes, or EMBER_ECANCELED. */
int ember_dfo_run(ember_dfo_ws *ws, ember_energy_fn fn, void *ctx, int nq, const float *lo,
                  const float *hi, const ember_infer_opts *opts, const ember_dfo_ctl *ctl,
                  ember_rng *rngs, float *best_y, float *best_e, ember_err *err);

/* Energies of the y-prefixes of length j (1..ydim) of nq * n candidates y (nq, n, ydim) under
 * the prefix-j energy E_j(x, y_1..y_j): e (nq, n). */
typedef void (*ember_prefix_energy_fn)(void *ctx, int j, int nq, int n, const float *y, float *e);

/* Method B's optimiser (the method text's Algorithm 2): as ember_dfo_run, but each iteration
 * walks the coordinates j = 1..ydim in order: E_j on the prefixes, softmax(-E_j / T), resample
 * whole candidates with replacement, add N(0, sigma^2) noise to coordinate j only, clip; sigma
 * *= shrink after each iteration. iters x ydim energy passes; as in ember_dfo_run the
 * resample after the very last evaluation (iteration iters, j = ydim) is skipped, and the
 * answer is the candidate with the lowest E_ydim, the energy of a whole y. With
 * ctl->keep_initial, y0/e0 get the uniform population and its E_ydim energies (one more pass),
 * for modes. */
int ember_ardfo_run(ember_dfo_ws *ws, ember_prefix_energy_fn fn, void *ctx, int nq,
                    const float *lo, const float *hi, const ember_infer_opts *opts,
                    const ember_dfo_ctl *ctl, ember_rng *rngs, float *best_y, float *best_e,
                    ember_err *err);

/* Draws n indices with replacement from non-negative weights p (n, any positive total) into
 * idx: a running sum and a binary search per draw. Exposed for tests. cdf: (n) scratch. */
void ember_resample(const float *p, int n, ember_rng *rng, double *cdf, int *idx);

typedef struct ember_modes_opts {
  int k;            /* at most this many modes per query (>= 1) */
  float radius;     /* linking scale of mode finding, normalised y units (0.25) */
  float min_mass;   /* modes with less probability mass are dropped (0.01) */
  int polish_steps; /* gradient-descent steps on E per mode, 0 = off (0) */
  float polish_lr;  /* initial step of polishing, normalised units (0.05) */
} ember_modes_opts;

/* Masses come from the uniform population only while its importance weights have an
 * effective sample size (sum w)^2 / sum w^2 of at least this; below, from the final
 * population's softmax weights (biased toward what the optimiser concentrated on, but not
 * decided by one or two samples). */
#define EMBER_MODES_MIN_ESS 16

/* most candidates mode finding links (its cost grows with the square of this) */
#define EMBER_MODES_LINK 2048

#define EMBER_MODES_DEFAULTS \
  {.k = 2, .radius = 0.25f, .min_mass = 0.01f, .polish_steps = 0, .polish_lr = 0.05f}

/* The most modes per query and polishing steps per mode ember_modes_opts_check accepts. */
#define EMBER_MAX_MODES 1024
#define EMBER_MAX_POLISH_STEPS 10000

int ember_modes_opts_check(const ember_modes_opts *o, ember_err *err);

/* Modes of one query from its final population y (n, ydim) with energies e (n) and its uniform
 * starting population y0 (n0, ydim) with energies e0 (n0): writes up to mo->k modes to mode_y
 * (k, ydim), mode_e (k), mode_w (k) and returns how many (>= 1 when n >= 1). With y0 NULL only
 * the final population is used, for roots and masses.
 * fscratch: (max(n, n0) + EMBER_MODES_LINK * ydim) floats. */
int ember_modes_find(const float *y, const float *e, int n, const float *y0, const float *e0,
                     int n0, int ydim, float temperature, const ember_modes_opts *mo,
                     float *fscratch, float *mode_y, float *mode_e, float *mode_w);

/* An upper bound on the arithmetic of ember_modes_find with n final and n0 uniform candidates
 * (the linking scan and the masses), for compute limits. */
double ember_modes_find_flops(int n, int n0, int ydim);

/* Polishes nq * m points y (nq, m, ydim) in place by gradient descent on E with per-point
 * backtracking: y -= step * g / max(1, ||g||_inf), so no coordinate moves farther than the
 * point's step (lr at first); a step that raises E is undone and the step halved, an accepted
 * one grows it by 1.2. Points stay inside [lo, hi]. e (nq, m) gets the final energies.
 * work: (3 * nq * m * ydim + 2 * nq * m) floats. Returns 0, or EMBER_ECANCELED when the cancel
 * flag (NULL: none; see base.h) is raised before a step's energy pass; y and e then hold the points as the
 * last accepted steps left them. */
int ember_polish(ember_energy_grad_fn fn, void *ctx, int nq, int m, int ydim, float *y, float *e,
                 const float *lo, const float *hi, int steps, float lr, float *work,
                 const atomic_int *cancel, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
