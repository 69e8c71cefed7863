/* dfo.c - Method A's derivative-free optimiser, mode extraction and gradient polishing.
 *
 * The optimiser works on whole populations: every iteration makes one call of the energy
 * callback for all queries' candidates together, so a network behind it runs one batched
 * pass (one sgemm per layer) per iteration. Everything between those calls (softmax,
 * resampling, noise, clipping) is O(samples) per query and allocation-free.
 *
 * Resampling is multinomial with replacement, as the method text says: a running sum of the
 * unnormalised weights exp(-(E - Emin)/T) and a binary search per draw. Energies that are not
 * finite get weight 0, and a query whose energies are all non-finite resamples uniformly, so a
 * broken model produces a useless answer, never a crash or NaN weights.
 *
 * Each query draws from its own random stream, so a query's answer does not depend on which
 * other queries share the batch or on the thread count.
 */
#include "ember/dfo.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ember_dfo_ws_init(ember_dfo_ws *ws, int max_queries, int max_samples, int ydim, ember_err *err) {
  memset(ws, 0, sizeof *ws);
  if (max_queries < 1 || max_samples < 1 || ydim < 1)
    return ember_fail(err, EMBER_EINVAL, "DFO workspace needs positive sizes");
  size_t pop = (size_t)max_queries * max_samples;
  size_t bytes = 3 * pop * ydim * sizeof(float) + 2 * pop * sizeof(float) +
                 (size_t)max_samples * sizeof(double) + (size_t)max_samples * ydim * sizeof(float);
  char *mem = malloc(bytes);
  if (!mem)
    return ember_fail(err, EMBER_ENOMEM, "out of memory: DFO workspace of %zu MiB", bytes >> 20);
  ws->mem = mem;
  ws->cdf = (double *)mem; /* doubles first, for alignment */
  ws->y = (float *)(ws->cdf + max_samples);
  ws->ynext = ws->y + pop * ydim;
  ws->e = ws->ynext + pop * ydim;
  ws->noise = ws->e + pop;
  ws->y0 = ws->noise + (size_t)max_samples * ydim;
  ws->e0 = ws->y0 + pop * ydim;
  ws->max_queries = max_queries;
  ws->max_samples = max_samples;
  ws->ydim = ydim;
  return 0;
}

void ember_dfo_ws_free(ember_dfo_ws *ws) {
  if (!ws) return;
  free(ws->mem);
  memset(ws, 0, sizeof *ws);
}

/* cdf[i] = sum_{j <= i} w_j with w = exp(-(E - Emin)/T) (non-finite E -> 0). Returns total. */
static double weights_cdf(const float *e, int n, float temperature, double *cdf) {
  float emin = INFINITY;
  for (int i = 0; i < n; i++)
    if (isfinite(e[i]) && e[i] < emin) emin = e[i];
  double acc = 0.0;
  if (!isfinite(emin)) { /* nothing finite: uniform */
    for (int i = 0; i < n; i++) cdf[i] = (double)(i + 1);
    return (double)n;
  }
  double inv_t = 1.0 / temperature;
  for (int i = 0; i < n; i++) {
    if (isfinite(e[i])) acc += exp(-((double)e[i] - emin) * inv_t);
    cdf[i] = acc;
  }
  return acc;
}

/* first index i with cdf[i] > u (cdf non-decreasing, u < cdf[n-1]) */
static int cdf_search(const double *cdf, int n, double u) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (cdf[mid] > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

void ember_resample(const float *p, int n, ember_rng *rng, double *cdf, int *idx) {
  double acc = 0.0;
  for (int i = 0; i < n; i++) {
    acc += p[i] > 0.0f ? p[i] : 0.0f;
    cdf[i] = acc;
  }
  if (!(acc > 0.0))
    for (int i = 0; i < n; i++) cdf[i] = (double)(i + 1), acc = (double)n;
  for (int k = 0; k < n; k++) idx[k] = cdf_search(cdf, n, ember_rng_uniform(rng) * acc);
}

/* Checks sizes and bounds and fills the population uniformly inside [lo, hi]. */
static int start_population(ember_dfo_ws *ws, int nq, const float *lo, const float *hi,
                            const ember_infer_opts *opts, ember_rng *rngs, ember_err *err) {
  int rc = ember_infer_opts_check(opts, 0, err);
  if (rc < 0) return rc;
  const int n = opts->samples, d = ws->ydim;
  if (nq < 1 || nq > ws->max_queries || n > ws->max_samples)
    return ember_fail(err, EMBER_EINVAL,
                      "DFO batch of %d queries x %d samples exceeds the workspace (%d x %d)", nq,
                      n, ws->max_queries, ws->max_samples);
  for (int j = 0; j < d; j++)
    if (!(lo[j] < hi[j]))
      return ember_fail(err, EMBER_EINVAL, "bounds of y%d are empty: [%g, %g]", j,
                        (double)lo[j], (double)hi[j]);
  const size_t qstride = (size_t)n * d;
  for (int q = 0; q < nq; q++) {
    float *yq = ws->y + q * qstride;
    for (int i = 0; i < n; i++)
      for (int j = 0; j < d; j++)
        yq[(size_t)i * d + j] = lo[j] + (hi[j] - lo[j]) * ember_rng_uniform(&rngs[q]);
  }
  return 0;
}

/* One resampling step for every query: draw n candidates of y (coord < 0) or of the prefix
 * y_0..y_coord with replacement by softmax(-e / T) within each of `groups` groups, add
 * N(0, sigma^2) noise to every coordinate (coord < 0) or to coordinate coord only, clip, into
 * ynext. */
static void resample_all(ember_dfo_ws *ws, int nq, int n, const float *y, float *ynext,
                         const float *lo, const float *hi, float temperature, float sigma,
                         int coord, int groups, ember_rng *rngs) {
  const int d = ws->ydim;
  const size_t qstride = (size_t)n * d;
  for (int q = 0; q < nq; q++) {
    const float *yq = y + q * qstride;
    float *yn = ynext + q * qstride;
    ember_rng_normal_fill(&rngs[q], ws->noise, coord < 0 ? qstride : (size_t)n);
    int k = 0, g0 = 0, g1 = 0;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
      if (i == g1) { /* group k: candidates [g0, g1) resample among themselves */
        g0 = g1;
        g1 = (int)((int64_t)++k * n / groups);
        total = weights_cdf(ws->e + (size_t)q * n + g0, g1 - g0, temperature, ws->cdf);
      }
      int src = g0 + cdf_search(ws->cdf, g1 - g0, ember_rng_uniform(&rngs[q]) * total);
      /* ardfo (coord >= 0) resamples the prefix y_0..y_coord only: candidate i keeps its own
       * later coordinates, which E_{coord+1} did not see. Copying whole candidates would give
       * the next prefix net only as many distinct values of y_{coord+1} as there were
       * survivors (docs/particle.md measures the difference). */
      const int ncopy = coord < 0 ? d : coord + 1;
      memcpy(yn + (size_t)i * d, yq + (size_t)src * d, (size_t)ncopy * sizeof(float));
      if (ncopy < d)
        memcpy(yn + (size_t)i * d + ncopy, yq + (size_t)i * d + ncopy, (size_t)(d - ncopy) * sizeof(float));
      for (int j = coord < 0 ? 0 : coord; j < (coord < 0 ? d : coord + 1); j++) {
        float v = yn[(size_t)i * d + j] + sigma * ws->noise[coord < 0 ? (size_t)i * d + j : (size_t)i];
        yn[(size_t)i * d + j] = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);
      }
    }
  }
}

/* The last population (in ynext or y) to ws->y, and each query's lowest-energy candidate. */
static void finish(ember_dfo_ws *ws, const float *y, int nq, int n, float *best_y, float *best_e) {
  const int d = ws->ydim;
  const size_t qstride = (size_t)n * d;
  if (y != ws->y) memcpy(ws->y, y, (size_t)nq * qstride * sizeof(float));
  for (int q = 0; q < nq; q++) {
    const float *eq = ws->e + (size_t)q * n;
    int best = 0;
    for (int i = 1; i < n; i++)
      if (eq[i] < eq[best] || (!isfinite(eq[best]) && isfinite(eq[i]))) best = i;
    if (best_y) memcpy(best_y + (size_t)q * d, ws->y + q * qstride + (size_t)best * d, (size_t)d * sizeof(float));
    if (best_e) best_e[q] = eq[best];
  }
}

/* resampling groups a run uses: ctl's, when it fits the population, else one */
static int ctl_groups(const ember_dfo_ctl *ctl, int n) {
  return ctl->groups > 1 && ctl->groups <= n ? ctl->groups : 1;
}

int ember_dfo_run(ember_dfo_ws *ws, ember_energy_fn fn, void *ctx, int nq, const float *lo,
                  const float *hi, const ember_infer_opts *opts, const ember_dfo_ctl *ctl,
                  ember_rng *rngs, float *best_y, float *best_e, ember_err *err) {
  static const ember_dfo_ctl none = {0};
  if (!ctl) ctl = &none;
  int rc = start_population(ws, nq, lo, hi, opts, rngs, err);
  if (rc < 0) return rc;
  const int n = opts->samples, groups = ctl_groups(ctl, n);
  const size_t pop = (size_t)nq * n * ws->ydim;
  float *y = ws->y, *ynext = ws->ynext;
  float sigma = opts->sigma;
  for (int it = 0; it < opts->iters; it++) {
    if (ember_cancel_requested(ctl->cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
    fn(ctx, nq, n, y, ws->e);
    if (it == 0 && ctl->keep_initial) {
      memcpy(ws->y0, y, pop * sizeof(float));
      memcpy(ws->e0, ws->e, (size_t)nq * n * sizeof(float));
    }
    if (it == opts->iters - 1) break;
    resample_all(ws, nq, n, y, ynext, lo, hi, opts->temperature, sigma, -1, groups, rngs);
    float *t = y;
    y = ynext;
    ynext = t;
    sigma *= opts->shrink;
  }
  finish(ws, y, nq, n, best_y, best_e);
  return 0;
}

int ember_ardfo_run(ember_dfo_ws *ws, ember_prefix_energy_fn fn, void *ctx, int nq,
                    const float *lo, const float *hi, const ember_infer_opts *opts,
                    const ember_dfo_ctl *ctl, ember_rng *rngs, float *best_y, float *best_e,
                    ember_err *err) {
  static const ember_dfo_ctl none = {0};
  if (!ctl) ctl = &none;
  int rc = start_population(ws, nq, lo, hi, opts, rngs, err);
  if (rc < 0) return rc;
  const int n = opts->samples, d = ws->ydim, groups = ctl_groups(ctl, n);
  const size_t pop = (size_t)nq * n * d;
  float *y = ws->y, *ynext = ws->ynext;
  if (ctl->keep_initial) { /* the uniform population under the whole-y energy, for modes */
    if (ember_cancel_requested(ctl->cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
    memcpy(ws->y0, y, pop * sizeof(float));
    fn(ctx, d, nq, n, ws->y0, ws->e0);
  }
  float sigma = opts->sigma;
  for (int it = 0; it < opts->iters; it++) {
    for (int j = 1; j <= d; j++) {
      if (ember_cancel_requested(ctl->cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
      fn(ctx, j, nq, n, y, ws->e);
      if (it == opts->iters - 1 && j == d) break;
      resample_all(ws, nq, n, y, ynext, lo, hi, opts->temperature, sigma, j - 1, groups, rngs);
      float *t = y;
      y = ynext;
      ynext = t;
    }
    sigma *= opts->shrink;
  }
  finish(ws, y, nq, n, best_y, best_e);
  return 0;
}

/* ---- modes ------------------------------------------------------------------------------ */

int ember_modes_opts_check(const ember_modes_opts *o, ember_err *err) {
  if (o->k < 1 || o->k > EMBER_MAX_MODES)
    return ember_fail(err, EMBER_EINVAL, "modes must be 1..%d, got %d", EMBER_MAX_MODES, o->k);
  if (!(o->radius > 0.0f) || !isfinite(o->radius))
    return ember_fail(err, EMBER_EINVAL, "mode radius must be positive, got %g", (double)o->radius);
  if (!(o->min_mass >= 0.0f && o->min_mass < 1.0f))
    return ember_fail(err, EMBER_EINVAL, "minimum mode mass must be in [0, 1), got %g",
                      (double)o->min_mass);
  if (o->polish_steps < 0 || o->polish_steps > EMBER_MAX_POLISH_STEPS)
    return ember_fail(err, EMBER_EINVAL, "polish steps must be 0..%d, got %d", EMBER_MAX_POLISH_STEPS,
                      o->polish_steps);
  if (!(o->polish_lr > 0.0f) || !isfinite(o->polish_lr))
    return ember_fail(err, EMBER_EINVAL, "polish step must be positive, got %g", (double)o->polish_lr);
  return 0;
}

/* Stable bottom-up merge sort of idx by e (NaN last): qsort has no context argument, and a
 * global would make the module non-re-entrant. */
static void sort_by_energy(int *idx, int *tmp, int n, const float *e) {
  for (int width = 1; width < n; width *= 2) {
    for (int lo = 0; lo < n; lo += 2 * width) {
      int mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
      int i = lo, j = mid, k = lo;
      while (i < mid && j < hi) {
        float a = e[idx[i]], b = e[idx[j]];
        int take_right = (b < a) || (isnan(a) && !isnan(b));
        tmp[k++] = take_right ? idx[j++] : idx[i++];
      }
      while (i < mid) tmp[k++] = idx[i++];
      while (j < hi) tmp[k++] = idx[j++];
    }
    memcpy(idx, tmp, (size_t)n * sizeof *idx);
  }
}

static float dist2(const float *a, const float *b, int d) {
  float s = 0.0f;
  for (int j = 0; j < d; j++) {
    float t = a[j] - b[j];
    s += t * t;
  }
  return s;
}

#define EMBER_MAX_CENTRES 256 /* roots kept; more are folded into their nearest root */

/* softmax(-e / temperature) into w (n); all-non-finite energies give uniform weights */
static void softmax_weights(const float *e, int n, float temperature, float *w) {
  float emin = INFINITY;
  for (int i = 0; i < n; i++)
    if (isfinite(e[i]) && e[i] < emin) emin = e[i];
  double z = 0.0;
  for (int i = 0; i < n; i++) {
    double v = isfinite(e[i]) && isfinite(emin) ? exp(-((double)e[i] - emin) / temperature) : 0.0;
    w[i] = (float)v;
    z += v;
  }
  for (int i = 0; i < n; i++) w[i] = z > 0.0 ? (float)(w[i] / z) : 1.0f / (float)n;
}

/* k-th smallest (0-based) of a (n), reordering a: quickselect */
static float kth_smallest(float *a, int n, int k) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    float pivot = a[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        float t = a[i];
        a[i++] = a[j];
        a[j--] = t;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
  return a[k];
}

/* The candidates that take part in mode finding: "link points". Index v < n is final
 * population candidate v, v >= n is uniform-population candidate v - n. */
typedef struct link_set {
  const float *y, *e, *y0, *e0;
  int n, ydim;
} link_set;

static const float *lp_y(const link_set *s, int v) {
  return v < s->n ? s->y + (size_t)v * s->ydim : s->y0 + (size_t)(v - s->n) * s->ydim;
}

static float lp_e(const link_set *s, int v) { return v < s->n ? s->e[v] : s->e0[v - s->n]; }

static int nearest_root(const link_set *s, const float *yi, const int *root_v, const int *alive,
                        int nc) {
  int c0 = 0;
  float cd = INFINITY;
  for (int c = 0; c < nc; c++) {
    if (!alive[c]) continue;
    float dd = dist2(yi, lp_y(s, root_v[c]), s->ydim);
    if (dd < cd) cd = dd, c0 = c;
  }
  return c0;
}

/* Mode seeking at scale `radius` over the link points, in order of energy: each links to the
 * lowest-energy earlier point within the radius (a steepest-descent step at that scale); one
 * with no such neighbour is a local minimum and roots a mode. Unlike clustering by distance to
 * the best points, the edge of a wide basin links inward instead of starting a mode of its own,
 * and the scan stops at the first hit, so the usual cost is far below nl^2.
 *
 * Link points: an even sample of the final population (not its lowest energies: resampling
 * can fill those with one branch), plus the lowest-energy candidates of the uniform starting
 * population, which still holds every branch that the iterations let shrink or vanish. A root
 * that only the uniform population supports, with fewer than 3 link points leading to it, is
 * an isolated sample rather than a basin (common in high dimensions) and is dissolved. */
int ember_modes_find(const float *y, const float *e, int n, const float *y0, const float *e0,
                     int n0, int ydim, float temperature, const ember_modes_opts *mo,
                     float *fscratch, float *mode_y, float *mode_e, float *mode_w) {
  if (n < 1) return 0;
  enum { L = EMBER_MODES_LINK };
  int lv[L], order[L], tmp[L], root[L];
  float key[L];
  int root_v[EMBER_MAX_CENTRES], size[EMBER_MAX_CENTRES], alive[EMBER_MAX_CENTRES];
  float mass[EMBER_MAX_CENTRES];
  int uniform = y0 && e0 && n0 > 0;
  link_set s = {y, e, y0, e0, n, ydim};

  int nl = 0, half = uniform ? L / 2 : L;
  if (n <= half)
    for (int i = 0; i < n; i++) lv[nl++] = i;
  else
    for (int k = 0; k < half; k++) lv[nl++] = (int)((int64_t)k * n / half);
  if (uniform) {
    int take = n0 < L / 2 ? n0 : L / 2;
    float thr = INFINITY;
    if (take < n0) {
      for (int i = 0; i < n0; i++) fscratch[i] = isfinite(e0[i]) ? e0[i] : INFINITY;
      thr = kth_smallest(fscratch, n0, take - 1);
    }
    for (int i = 0; i < n0 && nl < L; i++)
      if (isfinite(e0[i]) && e0[i] <= thr) lv[nl++] = n + i;
  }
  for (int k = 0; k < nl; k++) order[k] = k, key[k] = lp_e(&s, lv[k]);
  sort_by_energy(order, tmp, nl, key);

  /* link points in energy order, one contiguous row per dimension, so the O(nl^2) distance
   * scan below is a vectorised stream */
  float *pts = fscratch + (n > n0 ? n : n0), *dd = key; /* key is free once sorted */
  for (int k = 0; k < nl; k++) {
    const float *src = lp_y(&s, lv[order[k]]);
    for (int j = 0; j < ydim; j++) pts[(size_t)j * nl + k] = src[j];
  }
  const float r2 = mo->radius * mo->radius;
  int nc = 0;
  for (int k = 0; k < nl; k++) {
    /* the first (lowest-energy) earlier point within the radius, scanned in blocks */
    int best = -1;
    for (int b0 = 0; b0 < k && best < 0; b0 += 64) {
      int b1 = b0 + 64 < k ? b0 + 64 : k;
      for (int k2 = b0; k2 < b1; k2++) dd[k2] = 0.0f;
      for (int j = 0; j < ydim; j++) {
        const float *row = pts + (size_t)j * nl, c = row[k];
        for (int k2 = b0; k2 < b1; k2++) {
          float t = row[k2] - c;
          dd[k2] += t * t;
        }
      }
      for (int k2 = b0; k2 < b1; k2++)
        if (dd[k2] <= r2) {
          best = k2;
          break;
        }
    }
    const float *yi = lp_y(&s, lv[order[k]]);
    if (best >= 0) {
      root[k] = root[best];
    } else if (nc < EMBER_MAX_CENTRES) {
      root[k] = nc;
      root_v[nc] = lv[order[k]];
      alive[nc] = 1;
      size[nc++] = 0;
    } else { /* too many roots: join the nearest */
      root[k] = nearest_root(&s, yi, root_v, alive, nc);
    }
    size[root[k]]++;
  }
  for (int c = 1; c < nc; c++)
    if (root_v[c] >= n && size[c] < 3) alive[c] = 0;

  /* mass: importance weights of the uniform population, or the final population's when there
   * is none or when its weights rest on too few samples to mean anything (high dimensions:
   * hardly any uniform sample falls near a mode) */
  for (int c = 0; c < nc; c++) mass[c] = 0.0f;
  if (uniform) {
    softmax_weights(e0, n0, temperature, fscratch);
    double s2 = 0.0;
    for (int i = 0; i < n0; i++) s2 += (double)fscratch[i] * fscratch[i];
    if (s2 * EMBER_MODES_MIN_ESS > 1.0) uniform = 0; /* effective sample size 1 / s2 */
  }
  const float *my = uniform ? y0 : y, *me = uniform ? e0 : e;
  int mn = uniform ? n0 : n;
  if (!uniform) softmax_weights(me, mn, temperature, fscratch);
  for (int i = 0; i < mn; i++)
    mass[nearest_root(&s, my + (size_t)i * ydim, root_v, alive, nc)] += fscratch[i];

  /* roots are in energy order; keep those with enough mass (always the first) */
  int out = 0;
  for (int c = 0; c < nc && out < mo->k; c++) {
    if (!alive[c] || (c > 0 && mass[c] < mo->min_mass)) continue;
    memcpy(mode_y + (size_t)out * ydim, lp_y(&s, root_v[c]), (size_t)ydim * sizeof(float));
    mode_e[out] = lp_e(&s, root_v[c]);
    mode_w[out] = mass[c];
    out++;
  }
  return out;
}

/* The linking scan compares each link point with at most every earlier one (3 operations a
 * coordinate); the masses put every weighted candidate against every root. */
double ember_modes_find_flops(int n, int n0, int ydim) {
  const int half = n0 > 0 ? EMBER_MODES_LINK / 2 : EMBER_MODES_LINK;
  const double nl = (n < half ? n : half) + (n0 < EMBER_MODES_LINK / 2 ? n0 : EMBER_MODES_LINK / 2);
  return 1.5 * nl * nl * ydim + 3.0 * (n > n0 ? n : n0) * EMBER_MAX_CENTRES * ydim;
}

int ember_polish(ember_energy_grad_fn fn, void *ctx, int nq, int m, int ydim, float *y, float *e,
                 const float *lo, const float *hi, int steps, float lr, float *work,
                 const atomic_int *cancel, ember_err *err) {
  size_t npts = (size_t)nq * m, nv = npts * ydim;
  float *g = work, *yt = g + nv, *gt = yt + nv, *et = gt + nv, *step = et + npts;
  if (steps <= 0) return 0;
  if (ember_cancel_requested(cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
  fn(ctx, nq, m, y, e, g);
  for (size_t i = 0; i < npts; i++) step[i] = lr;
  for (int s = 0; s < steps; s++) {
    if (ember_cancel_requested(cancel)) return ember_fail(err, EMBER_ECANCELED, "cancelled");
    for (size_t i = 0; i < npts; i++) {
      /* a step moves no coordinate farther than step[i]: trained energies are steep near
       * their minima, where lr * g alone would leap across the box */
      float gmax = 1.0f;
      for (int j = 0; j < ydim; j++) gmax = fabsf(g[i * ydim + j]) > gmax ? fabsf(g[i * ydim + j]) : gmax;
      const float a = isfinite(gmax) ? step[i] / gmax : 0.0f;
      for (int j = 0; j < ydim; j++) {
        float v = y[i * ydim + j] - a * g[i * ydim + j];
        yt[i * ydim + j] = v < lo[j] ? lo[j] : (v > hi[j] ? hi[j] : v);
      }
    }
    fn(ctx, nq, m, yt, et, gt);
    for (size_t i = 0; i < npts; i++) {
      if (et[i] <= e[i]) {
        memcpy(y + i * ydim, yt + i * ydim, (size_t)ydim * sizeof(float));
        memcpy(g + i * ydim, gt + i * ydim, (size_t)ydim * sizeof(float));
        e[i] = et[i];
        step[i] *= 1.2f;
      } else {
        step[i] *= 0.5f;
      }
    }
  }
  return 0;
}
