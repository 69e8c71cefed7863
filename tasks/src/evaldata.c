/* evaldata.c - scoring a model on the user's own (x, y) pairs: action error and mode coverage
 * against the number of inference samples (tasks/evaldata.h).
 *
 * Inference runs in chunks of rows small enough that a chunk's candidate population stays
 * around EVAL_CHUNK_CANDIDATES, whatever the dataset's size; each row keeps its own random
 * streams, so chunking changes nothing in the numbers. Scoring is separate (score_rows) and
 * takes plain arrays, so that its arithmetic is tested on rows whose answers are known.
 *
 * What it does not do: pick a tolerance (the caller knows y's units), weigh rows, or judge
 * the modes' masses; coverage asks only whether some returned mode is near the true y.
 */
#include "tasks/evaldata.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/infer.h"

#define EVAL_CHUNK_CANDIDATES (1 << 18)

static double distance(const float *a, const float *b, int d) {
  double s = 0.0;
  for (int j = 0; j < d; j++) {
    double t = (double)a[j] - b[j];
    s += t * t;
  }
  return sqrt(s);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int ember_evaldata_score_rows(const float *y, const float *pred, const float *mode_y, const int *count,
                              int n, int y_dim, int k, float tol, ember_evaldata_score *s, ember_err *err) {
  if (!y || !pred || !s || n < 1 || y_dim < 1)
    return ember_fail(err, EMBER_EINVAL, "scoring needs rows (got %d) of y (y_dim %d) and predictions", n, y_dim);
  if (!(tol > 0.0f) || !isfinite(tol))
    return ember_fail(err, EMBER_EINVAL, "the tolerance must be a finite value > 0, got %g", (double)tol);
  if (mode_y && (!count || k < 1)) return ember_fail(err, EMBER_EINVAL, "modes need counts and k >= 1");
  for (int i = 0; mode_y && i < n; i++)
    if (count[i] < 0 || count[i] > k)
      return ember_fail(err, EMBER_EINVAL, "row %d has %d modes, not 0..%d", i, count[i], k);
  double *e = malloc((size_t)n * sizeof *e);
  if (!e) return ember_fail(err, EMBER_ENOMEM, "out of memory scoring %d rows", n);
  const int samples = s->samples;
  memset(s, 0, sizeof *s);
  s->samples = samples;
  s->rows = n;
  double sum = 0.0, sq = 0.0, modes = 0.0;
  int within = 0, covered = 0;
  for (int i = 0; i < n; i++) {
    const float *yi = y + (size_t)i * y_dim;
    e[i] = distance(pred + (size_t)i * y_dim, yi, y_dim);
    sum += e[i];
    sq += e[i] * e[i];
    if (e[i] > s->err_max) s->err_max = e[i];
    within += e[i] <= tol;
    const float *my = mode_y ? mode_y + (size_t)i * k * y_dim : pred + (size_t)i * y_dim;
    const int nm = mode_y ? count[i] : 1;
    modes += nm;
    for (int j = 0; j < nm; j++)
      if (distance(my + (size_t)j * y_dim, yi, y_dim) <= tol) {
        covered++;
        break;
      }
  }
  qsort(e, (size_t)n, sizeof *e, cmp_double);
  s->err_mean = sum / n;
  s->sq_err_mean = sq / n;
  s->err_median = n % 2 ? e[n / 2] : 0.5 * (e[n / 2 - 1] + e[n / 2]);
  s->within = (double)within / n;
  s->coverage = (double)covered / n;
  s->modes_mean = modes / n;
  free(e);
  return 0;
}

int ember_evaldata_check_samples(const ember_model *m, int samples, const ember_modes_opts *mo,
                                 ember_err *err) {
  const char *what = m->method == EMBER_METHOD_LANGEVIN ? "chains" : "samples";
  if (samples < 1 || samples > EMBER_MAX_SAMPLES)
    return ember_fail(err, EMBER_EINVAL, "%s must be 1..%d (what a request may ask for), got %d", what,
                      EMBER_MAX_SAMPLES, samples);
  ember_infer_opts o = m->infer;
  o.samples = samples;
  double gflop = ember_infer_flops(m, &o) / 1e9, mgflop = ember_infer_modes_flops(m, &o, mo) / 1e9;
  double worst = gflop > mgflop ? gflop : mgflop;
  if (!(worst <= EMBER_MAX_REQUEST_GFLOP))
    return ember_fail(err, EMBER_EINVAL,
                      "%d %s cost %.4g GFLOP per row with this model's other inference defaults, more than "
                      "the %d a request may (EMBER_MAX_REQUEST_GFLOP)",
                      samples, what, worst, EMBER_MAX_REQUEST_GFLOP);
  return 0;
}

int ember_evaldata_default_samples(const ember_model *m, int *out) {
  static const int list[] = {64, 256, 1024, 4096, 16384};
  ember_evaldata_opts d = EMBER_EVALDATA_DEFAULTS;
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = d.modes;
  int n = 0;
  for (size_t i = 0; i < sizeof list / sizeof *list; i++)
    if (i == 0 || ember_evaldata_check_samples(m, list[i], &mo, NULL) == 0) out[n++] = list[i];
  return n;
}

int ember_evaldata_run(const ember_model *m, const ember_dataset *ds, const ember_evaldata_opts *o,
                       ember_pool *pool, ember_evaldata_score *out, int *nout, ember_err *err) {
  *nout = 0;
  if (ds->x_dim != m->x_dim || ds->y_dim != m->y_dim || !ds->y || ds->n < 1)
    return ember_fail(err, EMBER_EINVAL, "the data has %d rows of %d x and %d y columns; the model takes %d x and answers %d y",
                      ds->n, ds->x_dim, ds->y_dim, m->x_dim, m->y_dim);
  const int energy = m->method != EMBER_METHOD_MSE, n = ds->n, dy = m->y_dim;
  const int k = energy ? o->modes : 1, runs = energy ? o->nsamples : 1;
  if (energy && (runs < 1 || runs > EMBER_EVALDATA_MAX_SAMPLES))
    return ember_fail(err, EMBER_EINVAL, "give 1..%d sample counts, got %d", EMBER_EVALDATA_MAX_SAMPLES, runs);
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = k;
  mo.polish_steps = o->polish;
  int rc = energy ? ember_modes_opts_check(&mo, err) : 0;
  for (int r = 0; r < runs && energy && rc == 0; r++)
    rc = ember_evaldata_check_samples(m, o->samples[r], &mo, err);
  if (rc < 0) return rc;
  float *pred = malloc((size_t)n * dy * sizeof(float));
  float *my = energy ? malloc((size_t)n * k * dy * sizeof(float)) : NULL;
  float *me = energy ? malloc((size_t)n * k * sizeof(float)) : NULL;
  float *mw = energy ? malloc((size_t)n * k * sizeof(float)) : NULL;
  int *count = energy ? malloc((size_t)n * sizeof(int)) : NULL;
  ember_infer *inf = NULL;
  if (!pred || (energy && (!my || !me || !mw || !count))) {
    rc = ember_fail(err, EMBER_ENOMEM, "out of memory for %d rows", n);
    goto done;
  }
  if ((rc = ember_infer_create(&inf, m, pool, err)) < 0) goto done;
  for (int r = 0; r < runs; r++) {
    ember_infer_opts io = m->infer;
    if (energy) io.samples = o->samples[r];
    const int chunk = !energy ? 4096 : io.samples < EVAL_CHUNK_CANDIDATES ? EVAL_CHUNK_CANDIDATES / io.samples : 1;
    for (int i0 = 0; i0 < n && rc == 0; i0 += chunk) {
      const int nq = n - i0 < chunk ? n - i0 : chunk;
      const float *x = ds->x + (size_t)i0 * m->x_dim;
      rc = ember_infer_predict(inf, x, nq, &io, o->seed, (uint64_t)i0, pred + (size_t)i0 * dy, NULL, err);
      if (rc == 0 && energy)
        rc = ember_infer_modes(inf, x, nq, &io, &mo, o->seed, (uint64_t)n + (uint64_t)i0, my + (size_t)i0 * k * dy,
                               me + (size_t)i0 * k, mw + (size_t)i0 * k, count + i0, err);
    }
    if (rc < 0) goto done;
    out[r].samples = energy ? io.samples : 0;
    if ((rc = ember_evaldata_score_rows(ds->y, pred, my, count, n, dy, k, o->tol, &out[r], err)) < 0) goto done;
    *nout = r + 1;
  }
done:
  ember_infer_destroy(inf);
  free(pred);
  free(my);
  free(me);
  free(mw);
  free(count);
  return rc;
}
