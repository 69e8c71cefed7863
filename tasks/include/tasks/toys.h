/* tasks/toys.h - the IBC paper's 1-D toys (Florence et al. 2021, Figs. 2-3): generators, the
 * set of valid y at each x, and the scores `ember eval toy` reports.
 *
 * Every toy lives on x in [-1, 1] and has one y. At each x its valid y form up to
 * EMBER_TOY_MAX_BRANCHES *branches*, each a closed interval [lo, hi] of y: a point (lo == hi)
 * for the curves, a real interval for `disjoint`. Single-valued toys have one branch
 * everywhere; multi-valued ones have two where the figure shows two. A toy's *breaks* are the
 * x where its valid set jumps or branches appear, vanish or meet; scores keep a margin from
 * them. docs/toys.md has the exact formulas.
 *
 *   jump        y = 0.5x + 1 for x < 0.3, y = 0.5x + 4 for x >= 0.3
 *   piecewise   four sections of slopes 2, -1.5, 3, -0.5 with jumps at -0.5, 0, 0.5
 *   noise       y = sin(pi x), observed with N(0, 0.3^2) noise
 *   circle      y = +sqrt(1 - x^2) or -sqrt(1 - x^2): the circle split into two halves
 *   hysteresis  y = 0.5x - 1 for x <= 0.4 and y = 0.5x + 1 for x >= -0.4: a loop, two y
 *               over [-0.4, 0.4]
 *   disjoint    y anywhere in [0.5x - 1.5, 0.5x - 0.5] or in [0.5x + 0.5, 0.5x + 1.5]
 *
 *     const ember_toy *t = ember_toy_find("circle");
 *     float x[500], y[500];
 *     ember_toy_generate(t, 500, 7, t->noise, x, y, &err);   // 500 (x, y) rows, seed 7
 *     float lo[EMBER_TOY_MAX_BRANCHES], hi[EMBER_TOY_MAX_BRANCHES];
 *     int nb = ember_toy_valid(t, 0.6f, lo, hi);               // 2: {-0.8}, {0.8}
 *     float d = ember_toy_distance(t, 0.6f, 0.7f);             // 0.1
 *
 * The table of toys is constant data; nothing here allocates or keeps state.
 */
#ifndef EMBER_TOYS_H
#define EMBER_TOYS_H

#include <stdint.h>

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMBER_TOY_MAX_BRANCHES 4
#define EMBER_TOY_MAX_BREAKS 4
#define EMBER_TOY_MAX_ROWS 100000000

typedef enum ember_toy_id {
  EMBER_TOY_JUMP = 0,
  EMBER_TOY_PIECEWISE,
  EMBER_TOY_NOISE,
  EMBER_TOY_CIRCLE,
  EMBER_TOY_HYSTERESIS,
  EMBER_TOY_DISJOINT,
  EMBER_TOY_COUNT
} ember_toy_id;

typedef struct ember_toy {
  ember_toy_id id;
  const char *name;
  const char *summary;           /* one line for --help */
  float x_lo, x_hi;              /* the training range of x */
  float noise;                   /* default observation noise, standard deviation of y */
  int max_branches;              /* most branches at any x: 1 for single-valued toys */
  int nbreaks;
  float breaks[EMBER_TOY_MAX_BREAKS]; /* ascending */
} ember_toy;

/* The toy called name, or NULL. */
const ember_toy *ember_toy_find(const char *name);
/* The i-th toy (0 <= i < EMBER_TOY_COUNT), in the order above; NULL out of range. */
const ember_toy *ember_toy_at(int i);

/* Branches of the valid set at x, ascending: lo, hi (EMBER_TOY_MAX_BRANCHES) get their
 * bounds. Returns how many (0 outside [x_lo, x_hi]). At a break x belongs to the right-hand
 * side (x >= break), except where the toy's own formula says otherwise (hysteresis). */
int ember_toy_valid(const ember_toy *t, float x, float *lo, float *hi);

/* |y - nearest valid y at x|: the distance to the nearest branch interval (0 inside one);
 * INFINITY where nothing is valid. */
float ember_toy_distance(const ember_toy *t, float x, float y);

/* As ember_toy_distance, but also against the valid sets on both sides of every break within
 * dx of x (their limits at the break): a y on the far side's branch next to a jump misplaces
 * the jump by less than dx; it is not in a gap. dx = 0 is ember_toy_distance. */
float ember_toy_distance_near(const ember_toy *t, float x, float y, float dx);

/* |x - nearest break|, INFINITY for a toy without breaks. */
float ember_toy_break_distance(const ember_toy *t, float x);

/* n rows: x uniform in [x_lo, x_hi], y uniform over the branches valid at x (each curve
 * branch equally likely; a `disjoint` y uniform over the union), plus N(0, noise^2). Rows come
 * from ember_rng stream (seed, 0): the same seed gives the same rows. x, y: (n).
 * EMBER_EINVAL for n outside 1..EMBER_TOY_MAX_ROWS or a negative or non-finite noise. */
int ember_toy_generate(const ember_toy *t, int n, uint64_t seed, float noise, float *x, float *y,
                       ember_err *err);

/* The evaluation grid: n cell centres x_i = x_lo + (i + 0.5) (x_hi - x_lo) / n, so no grid
 * point sits on the range's ends. x: (n). */
void ember_toy_grid(const ember_toy *t, int n, float *x);

typedef struct ember_toy_score_opts {
  float margin;    /* error and coverage skip x within this of a break (0.05) */
  float threshold; /* a y farther than this from every valid y is stranded (0.25) */
  float x_tol;     /* dx of ember_toy_distance_near for stranded (0.05, the margin) */
  float tol;       /* a mode within this of a branch covers it (0.1) */
} ember_toy_score_opts;

#define EMBER_TOY_SCORE_DEFAULTS {0.05f, 0.25f, 0.05f, 0.1f}

typedef struct ember_toy_score {
  int points;           /* grid points scored */
  int away;             /* of those, more than margin from every break */
  double err_mean;      /* mean |y - nearest valid y| over the away points (NAN if none) */
  double err_max;       /* max of the same */
  int stranded;         /* points whose y is stranded (ember_toy_distance_near > threshold) */
  double stranded_frac; /* stranded / points */
  int pairs;            /* (x, branch) pairs over the away points */
  int covered;          /* pairs with a mode within tol of the branch */
  double coverage;      /* covered / pairs (NAN if none) */
  int modes;            /* modes scored, over the away points */
  int modes_stranded;   /* of those, farther than threshold from every valid y */
} ember_toy_score;

/* Scores predictions y (n) at x (n) and, when mode_y is not NULL, modes mode_y (n, k) with
 * count (n) of them per point; mode_y NULL takes each y as its point's only mode. */
int ember_toy_score_compute(const ember_toy *t, const ember_toy_score_opts *o, const float *x,
                            const float *y, int n, const float *mode_y, const int *count, int k,
                            ember_toy_score *s, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
