/* tasks/evaldata.h - `ember eval data`: how well a model answers the user's own (x, y) pairs.
 *
 * Training loss says how well a model tells true y from counter-examples; a user wants to know
 * how far its answers are from the y they expect. For every row of a dataset with the model's
 * columns this runs inference as `ember predict` and `ember sample` would, and reports:
 *
 *   - action error: |y_pred - y|, the Euclidean distance in y's units, as mean, median and
 *     maximum over the rows, and the share of rows within `tol`;
 *   - mode coverage: the share of rows whose true y is within `tol` of one of the (up to k)
 *     modes ember_infer_modes returns. Where one x has several valid y (go left or right
 *     round an obstacle) a single prediction is right for only some rows, however good the
 *     model: coverage is what says whether it learned every branch;
 *
 * each at several inference sample counts (Langevin models: chains), to show what more samples
 * buy. An explicit (mse) model has one answer per row: one score, samples 0, its prediction as
 * the only mode.
 *
 *     ember_evaldata_opts o = EMBER_EVALDATA_DEFAULTS;
 *     o.nsamples = ember_evaldata_default_samples(&m, o.samples);   // 64 .. 16384 that fit
 *     ember_evaldata_score s[EMBER_EVALDATA_MAX_SAMPLES];
 *     int n;
 *     if (ember_evaldata_run(&m, &ds, &o, pool, s, &n, &err) < 0) ...;
 *
 * Randomness: row i's prediction draws from stream (seed, i) and its modes from (seed, n + i),
 * as `ember eval toy` does, so the numbers do not depend on how rows are cut into calls.
 */
#ifndef EMBER_EVALDATA_H
#define EMBER_EVALDATA_H

#include <stdint.h>

#include "ember/base.h"
#include "ember/dataset.h"
#include "ember/dfo.h"
#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_EVALDATA_MAX_SAMPLES 16

typedef struct ember_evaldata_opts {
  float tol;   /* error and coverage tolerance, y units, > 0 */
  int modes;   /* modes per row, 1..EMBER_MAX_MODES */
  int polish;  /* gradient-descent steps on E per mode, 0..EMBER_MAX_POLISH_STEPS */
  uint64_t seed;
  int nsamples; /* sample counts to score, 1..EMBER_EVALDATA_MAX_SAMPLES (ignored for mse) */
  int samples[EMBER_EVALDATA_MAX_SAMPLES];
} ember_evaldata_opts;

#define EMBER_EVALDATA_DEFAULTS {.tol = 0.1f, .modes = 2, .polish = 0, .seed = 0, .nsamples = 0}

typedef struct ember_evaldata_score {
  int samples;       /* inference samples (Langevin: chains); 0 for an explicit model */
  int rows;
  double err_mean, err_median, err_max; /* |prediction - y|, y units */
  double sq_err_mean; /* |prediction - y|^2: the mean squared error ("test MSE") */
  double within;     /* share of rows whose prediction is within tol of y */
  double coverage;   /* share of rows whose y is within tol of one of their modes */
  double modes_mean; /* modes found per row */
} ember_evaldata_score;

/* Scores n rows: y and pred (n, y_dim), modes mode_y (n, k, y_dim) with count (n) modes per row
 * (mode_y NULL: the prediction is each row's only mode). EMBER_EINVAL for n < 1, y_dim < 1,
 * tol not > 0, counts outside 0..k. */
int ember_evaldata_score_rows(const float *y, const float *pred, const float *mode_y, const int *count,
                              int n, int y_dim, int k, float tol, ember_evaldata_score *s, ember_err *err);

/* 0 if a query of `samples` samples (Langevin: chains), predict and modes each, fits what one
 * request may cost (EMBER_MAX_SAMPLES, EMBER_MAX_REQUEST_GFLOP) with the model's other inference
 * defaults; else EMBER_EINVAL naming the limit. */
int ember_evaldata_check_samples(const ember_model *m, int samples, const ember_modes_opts *mo,
                                 ember_err *err);

/* The default sample counts, 64, 256, 1024, 4096 and 16384, less those that do not fit
 * (ember_evaldata_check_samples with k = EMBER_EVALDATA_DEFAULTS's modes), into
 * out[EMBER_EVALDATA_MAX_SAMPLES]; returns how many (at least 1: 64 is the floor). */
int ember_evaldata_default_samples(const ember_model *m, int *out);

/* Runs the model on every row of ds (its x_dim and y_dim must be the model's) and scores it
 * at each of o's sample counts: out[EMBER_EVALDATA_MAX_SAMPLES], *nout scores (1 for mse). */
int ember_evaldata_run(const ember_model *m, const ember_dataset *ds, const ember_evaldata_opts *o,
                       ember_pool *pool, ember_evaldata_score *out, int *nout, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
