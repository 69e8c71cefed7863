/* cmd_plot.c - `ember plot`: the energy landscape E(x, y) of a 1-input 1-output model as a PNG.
 *
 *   ember plot --model M --out FILE.png [--data FILE] [--scale prob|energy] [--modes K] ...
 *   ember plot curves --data CURVES.csv --out FILE.png ...   (learning curves: plot_curves.c)
 *   ember plot images --model M --data IMAGES.npz --out FILE.png ...   (plot_images.c)
 *
 * The plot area is a grid of pixel columns (x) by pixel rows (y). Each column is one
 * ember_infer_energy query: its x once, every row's y as a candidate, a few columns per call,
 * so the network projects x once per column and the library spreads the candidates over
 * --threads. Colour is a function of the column's energies relative to its own minimum, which
 * is all inference ever compares (energies at different x are not comparable):
 *   prob    log10 of p(y|x) / max_y p(y|x), where p(y|x) ~ exp(-E / T) is the density InfoNCE
 *           fits at the training temperature T: 0 (the column's best y) is hottest, --decades
 *           D below it (10^-D as likely) and less is coldest. On a linear scale a trained
 *           model's p(y|x) is a ridge one pixel wide; decades show how sure it is around it.
 *   energy  1 - (E - E_min(x)) / R clipped to [0, 1], R the 95th percentile of E - E_min(x)
 *           over the whole grid: the energy's shape, the same yardstick for every column
 * Each column's minimum also covers the model's sampling box when the y range leaves part of
 * it out, so zooming in never makes a y look likely that the model itself would not pick.
 * Over that go, in order: up to --modes K modes of every sixth column (hollow green squares,
 * larger and more opaque with more mass), the data (cyan plus signs) and ember_infer_predict's
 * answer for every column (a white pixel edged in black, so it reads on any colour). A frame,
 * ticks at 1-2-5 steps and their numbers (plot_draw.c, with a 3x5 pixel font of our own) make
 * the axes; the exact ranges and the plot area's place in the image are printed on stderr too.
 *
 * An explicit (mse) model has no energy: it gets a neutral background with the data and its
 * prediction curve. Models with more than one input or output are refused: a landscape needs
 * both axes. Every buffer is sized once before drawing; nothing is allocated per pixel.
 * The colour ramp (dark violet through plum and orange to pale yellow, lightness rising
 * throughout) is defined by five control points chosen here, interpolated linearly.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "plot_draw.h"
#include "png_write.h"

#define PLOT_BATCH_COLUMNS 16   /* columns per ember_infer_energy call */
#define PLOT_DEFAULT_SAMPLES 256 /* predictions and modes: at most this many unless --samples */
#define PLOT_MAX_MODES 16
#define PLOT_ENERGY_CLIP 0.95   /* energy scale: percentile of E - E_min that is coldest */
#define PLOT_MAX_DECADES 30
#define PLOT_MODE_EVERY 6       /* pixels between the columns whose modes are marked */

static const plot_rgb COL_MARGIN = {255, 255, 255}, COL_INK = {40, 40, 48}, COL_NEUTRAL = {58, 58, 66},
                      COL_DATA = {0, 200, 255}, COL_PRED = {255, 255, 255}, COL_EDGE = {0, 0, 0},
                      COL_MODE = {40, 230, 120};

/* ---- colour ramp --------------------------------------------------------------------- */

static const struct {
  double t;
  plot_rgb c;
} RAMP[] = {
    {0.00, {14, 8, 38}},    /* cold: near-black violet */
    {0.25, {68, 22, 112}},  /* violet */
    {0.50, {158, 42, 106}}, /* plum */
    {0.75, {236, 108, 42}}, /* orange */
    {1.00, {252, 238, 152}} /* hot: pale yellow */
};

static void ramp_lut(plot_rgb lut[256]) {
  const int nr = (int)(sizeof RAMP / sizeof *RAMP);
  for (int i = 0; i < 256; i++) {
    double t = i / 255.0;
    int k = 0;
    while (k < nr - 2 && t > RAMP[k + 1].t) k++;
    double u = (t - RAMP[k].t) / (RAMP[k + 1].t - RAMP[k].t);
    const plot_rgb a = RAMP[k].c, b = RAMP[k + 1].c;
    lut[i].r = (uint8_t)lround(a.r + u * (b.r - a.r));
    lut[i].g = (uint8_t)lround(a.g + u * (b.g - a.g));
    lut[i].b = (uint8_t)lround(a.b + u * (b.b - a.b));
  }
}

/* ---- layout ------------------------------------------------------------------------------ */

static double col_x(const plot_area *L, int c) { return L->xlo + (c + 0.5) * (L->xhi - L->xlo) / L->pw; }
static double row_y(const plot_area *L, int r) { return L->yhi - (r + 0.5) * (L->yhi - L->ylo) / L->ph; }

/* plot-area row of y, or -1 outside (checked in double before any conversion to int) */
static int y_row(const plot_area *L, double y) {
  double t = (L->yhi - y) / (L->yhi - L->ylo) * L->ph;
  return t >= 0.0 && t < L->ph ? (int)t : -1;
}
static int x_col(const plot_area *L, double x) {
  double t = (x - L->xlo) / (L->xhi - L->xlo) * L->pw;
  return t >= 0.0 && t < L->pw ? (int)t : -1;
}

/* a pixel of the plot area, clipped to it */
static void put_plot(plot_canvas *cv, const plot_area *L, int c, int r, plot_rgb col) {
  if (c >= 0 && r >= 0 && c < L->pw && r < L->ph) plot_put(cv, L->x0 + c, L->y0 + r, col);
}

/* The margins depend on the y labels' width, the x ticks on the plot's width: y ticks first. */
static void plan_layout(plot_area *L, int w, int h, plot_ticks *xt, plot_ticks *yt) {
  L->s = w >= 400 && h >= 300 ? 2 : 1;
  const int s = L->s, tick = 4, gap = 3;
  int top = 5 * s + 8, bottom = tick + gap + 5 * s + 6;
  L->y0 = top;
  L->ph = h - top - bottom;
  plot_ticks_make(L->ylo, L->yhi, L->ph, 40 * s, yt);
  int widest = plot_text_width("y", s);
  for (int i = 0; i < yt->n; i++) {
    int tw = plot_text_width(yt->label[i], s);
    widest = tw > widest ? tw : widest;
  }
  L->x0 = tick + gap + widest + 6;
  L->pw = w - L->x0 - 10 * s;
  plot_ticks_make(L->xlo, L->xhi, L->pw, 60 * s, xt);
}

/* The frame, ticks and numbers, and the axes' names "x" and "y". */
static void draw_axes(plot_canvas *cv, const plot_area *L, const plot_ticks *xt, const plot_ticks *yt) {
  const int s = L->s;
  plot_axes(cv, L, xt, yt, COL_INK);
  plot_text(cv, L->x0 + L->pw + 3 * s, L->y0 + L->ph - 5 * s / 2, s, "x", COL_INK);
  plot_text(cv, L->x0 - 8 - plot_text_width("y", s), 2, s, "y", COL_INK);
}

/* ---- options ------------------------------------------------------------------------------ */

typedef struct plot_cli {
  const char *model, *out, *data, *xrange, *yrange, *size, *scale;
  int modes, samples, threads, no_predict;
  float temperature, decades;
  uint64_t seed;
} plot_cli;

/* "LO:HI" with finite LO < HI */
static int parse_range(const char *opt, const char *v, double *lo, double *hi) {
  char *end;
  *lo = strtod(v, &end);
  if (end != v && *end == ':') {
    const char *p = end + 1;
    *hi = strtod(p, &end);
    if (end != p && !*end && isfinite(*lo) && isfinite(*hi) && *lo < *hi && *hi - *lo < HUGE_VAL &&
        (*hi - *lo) > 1e-9 * fmax(fabs(*lo), fabs(*hi)))
      return 0;
  }
  fprintf(stderr, "ember plot: --%s expects LO:HI with finite numbers, LO < HI, got '%s'\n", opt, v);
  return -1;
}

/* ---- the landscape ------------------------------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static float finite_min(const float *v, int n, float lo) {
  for (int i = 0; i < n; i++)
    if (isfinite(v[i]) && v[i] < lo) lo = v[i];
  return lo;
}

/* Energies of the plotted grid, e (pw, ph) column after column, row 0 at the top, and each
 * column's lowest energy, emin (pw). The lowest is taken over the plotted rows and, when the
 * y range leaves out part of the model's sampling box [box_lo, box_hi], over ph candidates
 * spread across the box as well: a zoomed plot must not glow where the column's best y lies
 * outside it. xs: (pw) column centres; ybuf, ybox, ebox: (PLOT_BATCH_COLUMNS, ph) scratch. */
static int grid_energies(ember_infer *inf, const plot_area *L, const float *xs, double box_lo,
                         double box_hi, float *ybuf, float *ybox, float *ebox, float *e,
                         float *emin, ember_err *err) {
  const int whole_box = box_lo >= L->ylo && box_hi <= L->yhi;
  for (int b = 0; b < PLOT_BATCH_COLUMNS; b++)
    for (int r = 0; r < L->ph; r++) {
      ybuf[(size_t)b * L->ph + r] = (float)row_y(L, r);
      ybox[(size_t)b * L->ph + r] = (float)(box_lo + (box_hi - box_lo) * r / (L->ph - 1));
    }
  for (int c0 = 0; c0 < L->pw; c0 += PLOT_BATCH_COLUMNS) {
    int nb = L->pw - c0 < PLOT_BATCH_COLUMNS ? L->pw - c0 : PLOT_BATCH_COLUMNS;
    float *ec = e + (size_t)c0 * L->ph;
    int rc = ember_infer_energy(inf, xs + c0, nb, ybuf, L->ph, ec, err);
    if (rc == 0 && !whole_box) rc = ember_infer_energy(inf, xs + c0, nb, ybox, L->ph, ebox, err);
    if (rc < 0) return rc;
    for (int b = 0; b < nb; b++) {
      float lo = finite_min(ec + (size_t)b * L->ph, L->ph, INFINITY);
      emin[c0 + b] = whole_box ? lo : finite_min(ebox + (size_t)b * L->ph, L->ph, lo);
    }
  }
  return 0;
}

/* Replaces each energy by its distance above its column's lowest, emin (pw); +inf where the
 * energy is not finite (coldest). */
static void column_deltas(float *e, const float *emin, const plot_area *L) {
  for (int c = 0; c < L->pw; c++) {
    float *col = e + (size_t)c * L->ph;
    for (int r = 0; r < L->ph; r++)
      col[r] = isfinite(col[r]) && isfinite(emin[c]) ? col[r] - emin[c] : INFINITY;
  }
}

/* Paints the heat map from deltas d (pw, ph): v = 1 - d / R, 0 and below coldest. For the
 * energy scale R is the grid's PLOT_ENERGY_CLIP percentile of d (sorted: (pw * ph) scratch);
 * for prob it is the energy drop of `decades` decades of probability, T decades ln 10.
 * Returns R. */
static double paint_heat(plot_canvas *cv, const plot_area *L, const float *d, int energy_scale, double temp,
                         double decades, float *sorted) {
  plot_rgb lut[256];
  ramp_lut(lut);
  const size_t cells = (size_t)L->pw * L->ph;
  double R = temp * decades * log(10.0);
  if (energy_scale) {
    size_t n = 0;
    for (size_t i = 0; i < cells; i++)
      if (isfinite(d[i])) sorted[n++] = d[i];
    R = 0.0;
    if (n > 0) {
      qsort(sorted, n, sizeof *sorted, cmp_float);
      R = sorted[(size_t)(PLOT_ENERGY_CLIP * (double)(n - 1))];
    }
    if (!(R > 0.0)) R = 1.0; /* a flat landscape: every pixel as hot as the best */
  }
  for (int c = 0; c < L->pw; c++)
    for (int r = 0; r < L->ph; r++) {
      double v = d[(size_t)c * L->ph + r]; /* +inf -> v = 0 below */
      v = 1.0 - v / R;
      if (!(v > 0.0)) v = 0.0;
      if (v > 1.0) v = 1.0;
      plot_put(cv, L->x0 + c, L->y0 + r, lut[(int)lround(v * 255.0)]);
    }
  return R;
}

/* Data: a plus of arm 2 per point, drawn over the modes and under the predictions, so that on a
 * good model the data shows as a fringe on both sides of the prediction line. */
static int draw_data(plot_canvas *cv, const plot_area *L, const ember_dataset *ds) {
  int inside = 0;
  for (int i = 0; i < ds->n; i++) {
    int c = x_col(L, ds->x[i]), r = y_row(L, ds->y[i]);
    if (c < 0 || r < 0) continue;
    inside++;
    for (int d = -2; d <= 2; d++) {
      put_plot(cv, L, c + d, r, COL_DATA);
      put_plot(cv, L, c, r + d, COL_DATA);
    }
  }
  return inside;
}

/* The plot column of mode column i: modes are found every PLOT_MODE_EVERY columns, so their
 * marks stand apart and leave what is under them visible. */
static int mode_col(int i) { return i * PLOT_MODE_EVERY + PLOT_MODE_EVERY / 2; }

/* Modes: hollow squares, half-side 2 (less than half the column's mass) or 3, opacity 0.35 .. 1
 * by mass. my, mw: (nm, k); count: (nm). */
static void draw_modes(plot_canvas *cv, const plot_area *L, const float *my, const float *mw,
                       const int *count, int nm, int k) {
  for (int i = 0; i < nm; i++)
    for (int j = 0; j < count[i]; j++) {
      size_t slot = (size_t)i * k + j;
      int c = mode_col(i), r = y_row(L, my[slot]);
      if (r < 0) continue;
      double w = mw[slot] < 0 ? 0 : mw[slot] > 1 ? 1 : mw[slot];
      int half = w >= 0.5 ? 3 : 2;
      for (int dr = -half; dr <= half; dr++)
        for (int dc = -half; dc <= half; dc++) {
          int cc = c + dc, rr = r + dr;
          int edge = dr == -half || dr == half || dc == -half || dc == half;
          if (edge && cc >= 0 && rr >= 0 && cc < L->pw && rr < L->ph)
            plot_blend(cv, L->x0 + cc, L->y0 + rr, COL_MODE, 0.35 + 0.65 * w);
        }
    }
}

/* Predictions: a white pixel per column, edged above and below in black. */
static void draw_predictions(plot_canvas *cv, const plot_area *L, const float *yp) {
  for (int pass = 0; pass < 2; pass++)
    for (int c = 0; c < L->pw; c++) {
      int r = y_row(L, yp[c]);
      if (r < 0) continue;
      if (pass == 0) {
        put_plot(cv, L, c, r - 1, COL_EDGE);
        put_plot(cv, L, c, r + 1, COL_EDGE);
      } else
        put_plot(cv, L, c, r, COL_PRED);
    }
}

/* ---- the verb ----------------------------------------------------------------------------- */

/* Default ranges: x across the data when given (5% margin), else the training mean +- 2
 * standard deviations; y the model's sampling box, which is where inference looks. */
static void default_ranges(const ember_model *m, const ember_dataset *ds, plot_area *L,
                           int have_x, int have_y) {
  if (!have_x) {
    if (ds && ds->n > 0) {
      double lo = ds->x[0], hi = ds->x[0];
      for (int i = 1; i < ds->n; i++) lo = fmin(lo, ds->x[i]), hi = fmax(hi, ds->x[i]);
      double pad = hi > lo ? 0.05 * (hi - lo) : 0.5 * m->x_std[0];
      L->xlo = lo - pad, L->xhi = hi + pad;
    } else {
      L->xlo = (double)m->x_mean[0] - 2.0 * m->x_std[0];
      L->xhi = (double)m->x_mean[0] + 2.0 * m->x_std[0];
    }
  }
  if (!have_y) {
    L->ylo = (double)m->y_mean[0] + (double)m->y_lo[0] * m->y_std[0];
    L->yhi = (double)m->y_mean[0] + (double)m->y_hi[0] * m->y_std[0];
  }
}

int cmd_plot(int argc, char **argv) {
  if (argc >= 1 && strcmp(argv[0], "curves") == 0) return cmd_plot_curves(argc - 1, argv + 1);
  if (argc >= 1 && strcmp(argv[0], "images") == 0) return cmd_plot_images(argc - 1, argv + 1);
  plot_cli c = {0};
  c.size = "640x480";
  c.scale = "prob";
  c.decades = 4.0f;
  c.threads = cli_default_threads();
  opt_spec specs[] = {
      {"model", OPT_STR, &c.model, "FILE", "model checkpoint (.safetensors) with one input and one output", 0, 0},
      {"out", OPT_STR, &c.out, "FILE.png", "where to write the PNG (written atomically)", 0, 0},
      {"data", OPT_STR, &c.data, "FILE", "(x, y) pairs drawn as dots: CSV x,y or .npz", 0, 0},
      {"x-range", OPT_STR, &c.xrange, "LO:HI", "x across (default: the data's range + 5%, without --data the training mean +- 2 std)", 0, 1},
      {"y-range", OPT_STR, &c.yrange, "LO:HI", "y up (default: the model's sampling bounds)", 0, 1},
      {"size", OPT_STR, &c.size, "WxH", "image size in pixels", 0, 0},
      {"scale", OPT_STR, &c.scale, "prob|energy", "colour: p(y|x) against the column's best in decades, or E - min E clipped at the grid's 95th percentile", 0, 0},
      {"decades", OPT_FLOAT, &c.decades, "D", "prob scale: coldest at 10^-D times the column's best p(y|x)", 0, 0},
      {"temperature", OPT_FLOAT, &c.temperature, "X", "prob scale: p(y|x) ~ exp(-E / X) (default: the training temperature)", 0, 1},
      {"modes", OPT_INT, &c.modes, "K", "mark up to K modes of every sixth column, sized and shaded by mass", 0, 0},
      {"no-predict", OPT_FLAG, &c.no_predict, NULL, "leave out the prediction marks", 0, 0},
      {"samples", OPT_INT, &c.samples, "N", "candidates per column for predictions and modes (default: the model's, at most 256)", 0, 1},
      {"seed", OPT_U64, &c.seed, NULL, "random seed of predictions and modes", 0, 0},
      {"threads", OPT_INT, &c.threads, NULL, "worker threads (default: online CPUs)", 0, 1},
  };
  const int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("plot",
                      "--model MODEL --out FILE.png [--data FILE] [options]\n"
                      "       ember plot curves --data CURVES.csv --out FILE.png [--x steps|wall_s] [--title TEXT] [--size WxH]\n"
                      "       ember plot images --model MODEL [--model2 MODEL] --data IMAGES.npz --out FILE.png [options]\n"
                      "\nThe first form draws a model's energy landscape (options below); the second, learning\n"
                      "curves from a CSV (its options: ember plot curves --help); the third, an image model's\n"
                      "answers (image positions) on its images (ember plot images --help).",
                      specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;

  plot_area L = {0};
  int w = 0, h = 0, energy_scale = 0;
  if (!c.model || !c.out) {
    fprintf(stderr, "ember plot: --model and --out are required (see ember plot --help)\n");
    return 2;
  }
  if (plot_parse_size("plot", c.size, &w, &h) < 0) return 2;
  if (c.xrange && parse_range("x-range", c.xrange, &L.xlo, &L.xhi) < 0) return 2;
  if (c.yrange && parse_range("y-range", c.yrange, &L.ylo, &L.yhi) < 0) return 2;
  if (strcmp(c.scale, "energy") == 0) energy_scale = 1;
  else if (strcmp(c.scale, "prob") != 0) {
    fprintf(stderr, "ember plot: --scale must be prob or energy, got '%s'\n", c.scale);
    return 2;
  }
  if (c.modes < 0 || c.modes > PLOT_MAX_MODES) {
    fprintf(stderr, "ember plot: --modes must be 0..%d, got %d\n", PLOT_MAX_MODES, c.modes);
    return 2;
  }
  if (!(c.decades > 0.0f && c.decades <= PLOT_MAX_DECADES)) {
    fprintf(stderr, "ember plot: --decades must be in (0, %d], got %g\n", PLOT_MAX_DECADES, (double)c.decades);
    return 2;
  }
  if (args_given(specs, nspecs, "temperature") && !(c.temperature > 0.0f)) {
    fprintf(stderr, "ember plot: --temperature must be positive, got %g\n", (double)c.temperature);
    return 2;
  }

  ember_model m;
  ember_err err;
  ember_dataset ds = {0};
  ember_pool *pool = NULL;
  ember_infer *inf = NULL;
  plot_canvas cv = {NULL, w, h};
  float *xs = NULL, *ybuf = NULL, *ybox = NULL, *ebox = NULL, *e = NULL, *emin = NULL;
  float *sorted = NULL, *yp = NULL, *xm = NULL, *my = NULL, *me = NULL, *mw = NULL;
  int *count = NULL;
  if (ember_model_load(c.model, &m, &err) < 0) {
    fprintf(stderr, "ember plot: %s\n", err.msg);
    return 1;
  }
  rc = 2;
  if (m.x_dim != 1 || m.y_dim != 1) {
    fprintf(stderr, "ember plot: %s has %d input%s and %d output%s; plot draws models with one input (x) "
                    "and one output (y)\n",
            c.model, m.x_dim, m.x_dim == 1 ? "" : "s", m.y_dim, m.y_dim == 1 ? "" : "s");
    goto done;
  }
  const int explicit_model = m.method == EMBER_METHOD_MSE;
  ember_infer_opts o = m.infer;
  o.samples = args_given(specs, nspecs, "samples") ? c.samples
              : m.infer.samples < PLOT_DEFAULT_SAMPLES ? m.infer.samples
                                                       : PLOT_DEFAULT_SAMPLES;
  if (!explicit_model && ember_infer_opts_check(&o, m.method == EMBER_METHOD_LANGEVIN, &err) < 0) {
    fprintf(stderr, "ember plot: %s\n", err.msg);
    goto done;
  }
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  int k = explicit_model ? 0 : c.modes;
  if (explicit_model && c.modes > 0)
    fprintf(stderr, "ember plot: note: %s is an explicit (mse) model, with one answer per x: no modes to mark\n", c.model);
  if (k > 0) {
    mo.k = k;
    if (ember_modes_opts_check(&mo, &err) < 0) {
      fprintf(stderr, "ember plot: %s\n", err.msg);
      goto done;
    }
  }
  const double temp = args_given(specs, nspecs, "temperature") ? c.temperature
                      : m.train_temperature > 0.0f                  ? m.train_temperature
                                                                    : 1.0;
  if (c.data && ember_dataset_read(c.data, 1, 1, &ds, &err) < 0) {
    fprintf(stderr, "ember plot: %s\n", err.msg);
    rc = 1;
    goto done;
  }
  default_ranges(&m, c.data ? &ds : NULL, &L, c.xrange != NULL, c.yrange != NULL);
  plot_ticks xt, yt;
  plan_layout(&L, w, h, &xt, &yt);
  if (L.pw < 32 || L.ph < 32) {
    fprintf(stderr, "ember plot: --size %s leaves a plot area of %dx%d pixels after the axes; make it larger\n",
            c.size, L.pw, L.ph);
    goto done;
  }

  /* every buffer, once */
  const size_t cells = (size_t)L.pw * L.ph;
  cv.rgb = malloc((size_t)w * h * 3);
  xs = malloc((size_t)L.pw * sizeof *xs);
  yp = malloc((size_t)L.pw * sizeof *yp);
  const size_t batch = (size_t)PLOT_BATCH_COLUMNS * L.ph;
  const int nm = (L.pw - PLOT_MODE_EVERY / 2 + PLOT_MODE_EVERY - 1) / PLOT_MODE_EVERY;
  if (!explicit_model) {
    ybuf = malloc(batch * sizeof *ybuf);
    ybox = malloc(batch * sizeof *ybox);
    ebox = malloc(batch * sizeof *ebox);
    e = malloc(cells * sizeof *e);
    emin = malloc((size_t)L.pw * sizeof *emin);
    if (energy_scale) sorted = malloc(cells * sizeof *sorted);
  }
  if (k > 0) {
    xm = malloc((size_t)nm * sizeof *xm);
    my = malloc((size_t)nm * k * sizeof *my);
    me = malloc((size_t)nm * k * sizeof *me);
    mw = malloc((size_t)nm * k * sizeof *mw);
    count = malloc((size_t)nm * sizeof *count);
  }
  if (!cv.rgb || !xs || !yp ||
      (!explicit_model && (!ybuf || !ybox || !ebox || !e || !emin || (energy_scale && !sorted))) ||
      (k > 0 && (!xm || !my || !me || !mw || !count))) {
    fprintf(stderr, "ember plot: out of memory for a %dx%d image\n", w, h);
    rc = 1;
    goto done;
  }
  for (int col = 0; col < L.pw; col++) xs[col] = (float)col_x(&L, col);
  for (int i = 0; i < nm && k > 0; i++) xm[i] = xs[mode_col(i)];
  if (ember_model_check_x(&m, xs, L.pw, &err) < 0) {
    fprintf(stderr, "ember plot: --x-range %g:%g: %s\n", L.xlo, L.xhi, err.msg);
    goto done;
  }
  if (cli_pool("plot", c.threads, &pool) < 0) goto done;
  rc = 1;
  if (ember_infer_create(&inf, &m, pool, &err) < 0) {
    fprintf(stderr, "ember plot: %s\n", err.msg);
    goto done;
  }

  plot_fill(&cv, 0, 0, w, h, COL_MARGIN);
  double R = 0.0;
  if (explicit_model) {
    fprintf(stderr, "ember plot: note: %s is an explicit (mse) model, which has no energy: the background "
                    "is blank, the curve is its prediction\n", c.model);
    plot_fill(&cv, L.x0, L.y0, L.pw, L.ph, COL_NEUTRAL);
  } else {
    double box_lo = (double)m.y_mean[0] + (double)m.y_lo[0] * m.y_std[0];
    double box_hi = (double)m.y_mean[0] + (double)m.y_hi[0] * m.y_std[0];
    if (grid_energies(inf, &L, xs, box_lo, box_hi, ybuf, ybox, ebox, e, emin, &err) < 0) {
      fprintf(stderr, "ember plot: %s\n", err.msg);
      goto done;
    }
    column_deltas(e, emin, &L);
    R = paint_heat(&cv, &L, e, energy_scale, temp, c.decades, sorted);
  }
  if (k > 0) {
    if (ember_infer_modes(inf, xm, nm, &o, &mo, c.seed, 0, my, me, mw, count, &err) < 0) {
      fprintf(stderr, "ember plot: %s\n", err.msg);
      goto done;
    }
    draw_modes(&cv, &L, my, mw, count, nm, k);
  }
  int inside = c.data ? draw_data(&cv, &L, &ds) : 0;
  if (!c.no_predict) {
    if (ember_infer_predict(inf, xs, L.pw, &o, c.seed, 0, yp, NULL, &err) < 0) {
      fprintf(stderr, "ember plot: %s\n", err.msg);
      goto done;
    }
    draw_predictions(&cv, &L, yp);
  }
  draw_axes(&cv, &L, &xt, &yt);

  char why[512];
  if (cli_png_write(c.out, cv.rgb, w, h, why, sizeof why) < 0) {
    fprintf(stderr, "ember plot: %s\n", why);
    goto done;
  }
  fprintf(stderr, "ember plot: wrote %s, %dx%d pixels\n", c.out, w, h);
  fprintf(stderr, "  plot area    left %d, top %d, %dx%d pixels (one energy column per pixel)\n", L.x0, L.y0, L.pw, L.ph);
  fprintf(stderr, "  x            %.6g .. %.6g across\n  y            %.6g .. %.6g up\n", L.xlo, L.xhi, L.ylo, L.yhi);
  if (explicit_model)
    fprintf(stderr, "  colour       none (explicit model)\n");
  else if (energy_scale)
    fprintf(stderr, "  colour       energy: E - min over the column, hottest 0, coldest %.4g and above\n", R);
  else
    fprintf(stderr, "  colour       prob: log10 p(y|x) / max over the column, hottest 0, coldest -%g and below "
                    "(E - min E >= %.4g at temperature %g)\n", (double)c.decades, R, temp);
  if (c.data) fprintf(stderr, "  data         %d of %d points inside the plot\n", inside, ds.n);
  if (!c.no_predict || k > 0)
    fprintf(stderr, "  predictions  %s%s%s, %d candidates per column\n", c.no_predict ? "" : "marked (white)",
            !c.no_predict && k > 0 ? ", " : "", k > 0 ? "modes (green)" : "", explicit_model ? 1 : o.samples);
  rc = 0;
done:
  free(cv.rgb);
  free(xs);
  free(yp);
  free(ybuf);
  free(ybox);
  free(ebox);
  free(e);
  free(emin);
  free(xm);
  free(sorted);
  free(my);
  free(me);
  free(mw);
  free(count);
  ember_infer_destroy(inf);
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
  ember_model_free(&m);
  return rc;
}
