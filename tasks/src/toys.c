/* toys.c - the IBC paper's 1-D toys: what is valid at each x, samples of it, and scores.
 *
 * Each toy is one switch case in toy_branches, which lists the branch intervals valid at x;
 * everything else (distances, generation, scores) is written once against that list, so a
 * new toy is a table row and a case. The formulas are chosen to make the paper's point
 * measurable: every gap between branches is at least 1.25 wide in y except where the
 * circle's halves meet at its ends, so a prediction halfway across a gap is far from both
 * sides, and branches are straight or smooth between breaks so that "error away from the
 * breaks" measures fit, not resolution. See docs/toys.md.
 *
 * What it does not do: toys with more than one x or y, or valid sets that are not finite
 * unions of intervals.
 */
#include "tasks/toys.h"

#include <math.h>
#include <string.h>

#define PI_F 3.14159265358979f

static const ember_toy toys[EMBER_TOY_COUNT] = {
    {EMBER_TOY_JUMP, "jump", "single-valued: y = 0.5x + 1, jumping to 0.5x + 4 at x = 0.3",
     -1.0f, 1.0f, 0.0f, 1, 1, {0.3f}},
    {EMBER_TOY_PIECEWISE, "piecewise",
     "single-valued: four sections of slopes 2, -1.5, 3, -0.5 with jumps at x = -0.5, 0, 0.5",
     -1.0f, 1.0f, 0.0f, 1, 3, {-0.5f, 0.0f, 0.5f}},
    {EMBER_TOY_NOISE, "noise", "single-valued: y = sin(pi x) observed with heavy N(0, 0.3^2) noise",
     -1.0f, 1.0f, 0.3f, 1, 0, {0.0f}},
    {EMBER_TOY_CIRCLE, "circle",
     "multi-valued: the unit circle split in halves, y = +sqrt(1 - x^2) or -sqrt(1 - x^2)",
     -1.0f, 1.0f, 0.0f, 2, 2, {-1.0f, 1.0f}},
    {EMBER_TOY_HYSTERESIS, "hysteresis",
     "multi-valued: a loop, y = 0.5x - 1 (x <= 0.4) or 0.5x + 1 (x >= -0.4); two y on [-0.4, 0.4]",
     -1.0f, 1.0f, 0.0f, 2, 2, {-0.4f, 0.4f}},
    {EMBER_TOY_DISJOINT, "disjoint",
     "multi-valued: y anywhere in [0.5x - 1.5, 0.5x - 0.5] or [0.5x + 0.5, 0.5x + 1.5]",
     -1.0f, 1.0f, 0.0f, 2, 0, {0.0f}},
};

const ember_toy *ember_toy_find(const char *name) {
  if (!name) return NULL;
  for (int i = 0; i < EMBER_TOY_COUNT; i++)
    if (strcmp(toys[i].name, name) == 0) return &toys[i];
  return NULL;
}

const ember_toy *ember_toy_at(int i) {
  return i >= 0 && i < EMBER_TOY_COUNT ? &toys[i] : NULL;
}

/* One point branch y = v. */
static int point(float *lo, float *hi, int nb, float v) {
  lo[nb] = hi[nb] = v;
  return nb + 1;
}

/* The toy's branches at x, ascending, without the range check. */
static int toy_branches(const ember_toy *t, float x, float *lo, float *hi) {
  int nb = 0;
  switch (t->id) {
  case EMBER_TOY_JUMP:
    nb = point(lo, hi, nb, 0.5f * x + (x < 0.3f ? 1.0f : 4.0f));
    break;
  case EMBER_TOY_PIECEWISE: {
    float y;
    if (x < -0.5f) y = 2.0f * x + 2.0f;          /* 0 .. 1 */
    else if (x < 0.0f) y = -1.5f * x - 1.0f;     /* -0.25 .. -1 */
    else if (x < 0.5f) y = 3.0f * x + 1.0f;      /* 1 .. 2.5 */
    else y = -0.5f * x + 0.5f;                   /* 0.25 .. 0 */
    nb = point(lo, hi, nb, y);
    break;
  }
  case EMBER_TOY_NOISE:
    nb = point(lo, hi, nb, sinf(PI_F * x));
    break;
  case EMBER_TOY_CIRCLE: {
    float r = 1.0f - x * x;
    float s = r > 0.0f ? sqrtf(r) : 0.0f;
    nb = point(lo, hi, nb, -s);
    nb = point(lo, hi, nb, s);
    break;
  }
  case EMBER_TOY_HYSTERESIS:
    if (x <= 0.4f) nb = point(lo, hi, nb, 0.5f * x - 1.0f);
    if (x >= -0.4f) nb = point(lo, hi, nb, 0.5f * x + 1.0f);
    break;
  case EMBER_TOY_DISJOINT:
    lo[0] = 0.5f * x - 1.5f, hi[0] = 0.5f * x - 0.5f;
    lo[1] = 0.5f * x + 0.5f, hi[1] = 0.5f * x + 1.5f;
    nb = 2;
    break;
  default:
    break;
  }
  return nb;
}

int ember_toy_valid(const ember_toy *t, float x, float *lo, float *hi) {
  if (!t || !(x >= t->x_lo && x <= t->x_hi)) return 0;
  return toy_branches(t, x, lo, hi);
}

/* Distance from y to the nearest of nb intervals. */
static float interval_distance(const float *lo, const float *hi, int nb, float y) {
  float best = INFINITY;
  if (!isfinite(y)) return INFINITY;
  for (int b = 0; b < nb; b++) {
    float d = y < lo[b] ? lo[b] - y : (y > hi[b] ? y - hi[b] : 0.0f);
    if (d < best) best = d;
  }
  return best;
}

float ember_toy_distance(const ember_toy *t, float x, float y) {
  float lo[EMBER_TOY_MAX_BRANCHES], hi[EMBER_TOY_MAX_BRANCHES];
  int nb = ember_toy_valid(t, x, lo, hi);
  return interval_distance(lo, hi, nb, y);
}

float ember_toy_distance_near(const ember_toy *t, float x, float y, float dx) {
  float best = ember_toy_distance(t, x, y);
  if (!t || !(dx > 0.0f)) return best;
  for (int k = 0; k < t->nbreaks; k++) {
    float b = t->breaks[k];
    if (!(fabsf(x - b) <= dx)) continue;
    /* the left-hand limit (the float just below the break) and the value at it */
    float sides[2] = {nextafterf(b, -INFINITY), b};
    for (int s = 0; s < 2; s++) {
      float d = ember_toy_distance(t, sides[s], y);
      if (d < best) best = d;
    }
  }
  return best;
}

float ember_toy_break_distance(const ember_toy *t, float x) {
  float best = INFINITY;
  for (int k = 0; t && k < t->nbreaks; k++) {
    float d = fabsf(x - t->breaks[k]);
    if (d < best) best = d;
  }
  return best;
}

int ember_toy_generate(const ember_toy *t, int n, uint64_t seed, float noise, float *x, float *y,
                       ember_err *err) {
  if (!t) return ember_fail(err, EMBER_EINVAL, "no toy given");
  if (n < 1 || n > EMBER_TOY_MAX_ROWS)
    return ember_fail(err, EMBER_EINVAL, "rows must be 1..%d, got %d", EMBER_TOY_MAX_ROWS, n);
  if (!isfinite(noise) || noise < 0.0f)
    return ember_fail(err, EMBER_EINVAL, "noise must be a finite standard deviation >= 0, got %g",
                      (double)noise);
  if (!x || !y) return ember_fail(err, EMBER_EINVAL, "no output arrays");
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  const float span = t->x_hi - t->x_lo;
  for (int i = 0; i < n; i++) {
    float xi = t->x_lo + span * ember_rng_uniform(&rng);
    if (xi > t->x_hi) xi = t->x_hi; /* rounding of lo + span * u */
    float lo[EMBER_TOY_MAX_BRANCHES] = {0}, hi[EMBER_TOY_MAX_BRANCHES] = {0};
    int nb = toy_branches(t, xi, lo, hi); /* >= 1: every toy covers its whole range */
    int b = nb > 1 ? (int)ember_rng_below(&rng, (uint32_t)nb) : 0;
    float yi = lo[b];
    if (hi[b] > lo[b]) yi = lo[b] + (hi[b] - lo[b]) * ember_rng_uniform(&rng);
    if (noise > 0.0f) yi += noise * ember_rng_normal(&rng);
    x[i] = xi;
    y[i] = yi;
  }
  return 0;
}

void ember_toy_grid(const ember_toy *t, int n, float *x) {
  for (int i = 0; i < n; i++)
    x[i] = (float)(t->x_lo + ((double)i + 0.5) * ((double)t->x_hi - t->x_lo) / n);
}

int ember_toy_score_compute(const ember_toy *t, const ember_toy_score_opts *o, const float *x,
                            const float *y, int n, const float *mode_y, const int *count, int k,
                            ember_toy_score *s, ember_err *err) {
  if (!t || !o || !x || !y || !s) return ember_fail(err, EMBER_EINVAL, "missing argument");
  if (n < 1) return ember_fail(err, EMBER_EINVAL, "no points to score");
  if (!(o->margin >= 0.0f) || !(o->threshold > 0.0f) || !(o->tol > 0.0f) || !(o->x_tol >= 0.0f) ||
      !isfinite(o->margin) || !isfinite(o->threshold) || !isfinite(o->tol) || !isfinite(o->x_tol))
    return ember_fail(err, EMBER_EINVAL,
                      "margin and x tolerance must be finite and >= 0, threshold and tolerance > 0");
  if (mode_y && (!count || k < 1)) return ember_fail(err, EMBER_EINVAL, "modes need counts and k >= 1");
  for (int i = 0; mode_y && i < n; i++)
    if (count[i] < 0 || count[i] > k)
      return ember_fail(err, EMBER_EINVAL, "point %d has %d modes, not 0..%d", i, count[i], k);
  memset(s, 0, sizeof *s);
  s->points = n;
  double sum = 0.0, max = 0.0;
  for (int i = 0; i < n; i++) {
    if (ember_toy_distance_near(t, x[i], y[i], o->x_tol) > o->threshold) s->stranded++;
    if (!(ember_toy_break_distance(t, x[i]) > o->margin)) continue;
    s->away++;
    double d = ember_toy_distance(t, x[i], y[i]);
    sum += d;
    if (d > max || isnan(d)) max = d;
    float lo[EMBER_TOY_MAX_BRANCHES], hi[EMBER_TOY_MAX_BRANCHES];
    int nb = ember_toy_valid(t, x[i], lo, hi);
    const float *my = mode_y ? mode_y + (size_t)i * k : &y[i];
    int nm = mode_y ? count[i] : 1;
    for (int b = 0; b < nb; b++) {
      s->pairs++;
      for (int m = 0; m < nm; m++)
        if (interval_distance(&lo[b], &hi[b], 1, my[m]) <= o->tol) {
          s->covered++;
          break;
        }
    }
    for (int m = 0; m < nm; m++) {
      s->modes++;
      if (ember_toy_distance_near(t, x[i], my[m], o->x_tol) > o->threshold) s->modes_stranded++;
    }
  }
  s->stranded_frac = (double)s->stranded / n;
  s->err_mean = s->away ? sum / s->away : NAN;
  s->err_max = s->away ? max : NAN;
  s->coverage = s->pairs ? (double)s->covered / s->pairs : NAN;
  return 0;
}
