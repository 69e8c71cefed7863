/* cmd_toy.c - `ember data toy NAME` and `ember eval toy NAME`: the IBC paper's 1-D toys.
 *
 *   ember data toy NAME --out FILE [--rows N] [--seed S] [--noise SD]
 *       writes CSV `x,y` rows of the toy (tasks/toys.h has the definitions)
 *   ember eval toy NAME --model M [--points N] [--samples S] [--modes K] ...
 *       runs the model on a grid of x over the toy's range and prints error away from the
 *       breaks, stranded predictions and mode coverage (key: value lines, or --csv)
 *
 * The report is the result: eval exits 0 whenever it evaluated, however badly the model did.
 * The grid's predictions use stream (seed, i) for point i, as `ember predict` does, and the
 * modes the same seed with streams after the predictions', so the two are independent draws.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dfo.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "tasks/toys.h"
#include "infer_cli.h"
#include "outfile.h"

#define TOY_MAX_POINTS 1000000
#define TOY_MAX_MODES 64

static void list_toys(FILE *f) {
  fprintf(f, "\ntoys (x in [-1, 1]; docs/toys.md has the formulas):\n");
  for (int i = 0; i < EMBER_TOY_COUNT; i++) {
    const ember_toy *t = ember_toy_at(i);
    fprintf(f, "  %-12s %s\n", t->name, t->summary);
  }
}

static void toy_names(char *buf, size_t len) {
  size_t at = 0;
  buf[0] = 0;
  for (int i = 0; i < EMBER_TOY_COUNT && at < len; i++)
    at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? ", " : "", ember_toy_at(i)->name);
}

/* argv[0] must name a toy. Returns the toy, or NULL with *rc set: 0 after --help, 2 after an
 * error. */
static const ember_toy *pick_toy(const char *verb, const char *usage, opt_spec *specs, int nspecs,
                                 int argc, char **argv, int *rc) {
  char names[256];
  toy_names(names, sizeof names);
  *rc = 2;
  if (argc < 1 || strncmp(argv[0], "-", 1) == 0) {
    if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
      args_help(stdout, verb, usage, specs, nspecs);
      list_toys(stdout);
      *rc = 0;
      return NULL;
    }
    fprintf(stderr, "ember %s: name a toy first: %s (see ember %s --help)\n", verb, names, verb);
    return NULL;
  }
  const ember_toy *t = ember_toy_find(argv[0]);
  if (!t) fprintf(stderr, "ember %s: unknown toy '%s' (toys: %s)\n", verb, argv[0], names);
  return t;
}

/* Writes the rows to path ("-": stdout) whole or not at all (outfile.h). */
static int write_csv(const char *path, const float *x, const float *y, int n) {
  cli_outfile o;
  char why[512];
  if (cli_outfile_open(&o, path, why, sizeof why) < 0) {
    fprintf(stderr, "ember data toy: %s\n", why);
    return 1;
  }
  fprintf(o.f, "x,y:y\n"); /* y: marks y, so `ember train` needs no --y-dim */
  for (int i = 0; i < n; i++) fprintf(o.f, "%.7g,%.7g\n", (double)x[i], (double)y[i]);
  if (cli_outfile_commit(&o, why, sizeof why) < 0) {
    fprintf(stderr, "ember data toy: %s\n", why);
    return 1;
  }
  return 0;
}

#define DATA_USAGE "NAME --out FILE|- [--rows N] [--seed S] [--noise SD]"

int cmd_data_toy(int argc, char **argv) {
  const char *out = NULL;
  int rows = 2000;
  uint64_t seed = 0;
  float noise = 0.0f;
  opt_spec specs[] = {
      {"out", OPT_STR, &out, "FILE|-", "where to write the CSV (x,y); - writes stdout", 0, 0},
      {"rows", OPT_INT, &rows, NULL, "rows, x uniform over the toy's range", 0, 0},
      {"seed", OPT_U64, &seed, NULL, "random seed; the same seed gives the same rows", 0, 0},
      {"noise", OPT_FLOAT, &noise, "SD", "N(0, SD^2) added to y (default: the toy's, 0.3 for noise, else 0)", 0, 1},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc;
  const ember_toy *t = pick_toy("data toy", DATA_USAGE, specs, nspecs, argc, argv, &rc);
  if (!t) return rc;
  rc = args_parse("data toy", DATA_USAGE, specs, nspecs, argc - 1, argv + 1);
  if (rc != 0) {
    if (rc > 0) list_toys(stdout);
    return rc < 0 ? 2 : 0;
  }
  if (!out) {
    fprintf(stderr, "ember data toy: --out is required (a file, or - for stdout)\n");
    return 2;
  }
  if (!args_given(specs, nspecs, "noise")) noise = t->noise;
  if (rows < 1 || rows > EMBER_TOY_MAX_ROWS) {
    fprintf(stderr, "ember data toy: --rows must be 1..%d, got %d\n", EMBER_TOY_MAX_ROWS, rows);
    return 2;
  }
  if (noise < 0.0f) {
    fprintf(stderr, "ember data toy: --noise must be >= 0, got %g\n", (double)noise);
    return 2;
  }
  float *x = malloc((size_t)rows * sizeof(float));
  float *y = malloc((size_t)rows * sizeof(float));
  ember_err err;
  if (!x || !y) {
    fprintf(stderr, "ember data toy: out of memory for %d rows\n", rows);
    rc = 1;
  } else if (ember_toy_generate(t, rows, seed, noise, x, y, &err) < 0) {
    fprintf(stderr, "ember data toy: %s\n", err.msg);
    rc = 2;
  } else {
    rc = write_csv(out, x, y, rows);
  }
  free(x);
  free(y);
  return rc;
}

/* ---- eval ------------------------------------------------------------------------------ */

typedef struct eval_cli {
  const char *model;
  int points, samples, modes, polish, threads, csv, no_header;
  uint64_t seed;
  ember_toy_score_opts so;
} eval_cli;

static void print_report(const ember_toy *t, const eval_cli *c, const ember_model *m, int k,
                         const ember_toy_score *s) {
  const char *method = ember_method_name(m->method);
  if (c->csv) {
    if (!c->no_header)
      printf("toy,model,method,points,away,error_mean,error_max,stranded,stranded_frac,modes,"
             "pairs,covered,coverage,modes_found,modes_stranded\n");
    printf("%s,\"", t->name);
    for (const char *p = c->model; *p; p++) {
      if (*p == '"') putchar('"');
      putchar(*p);
    }
    printf("\",%s,%d,%d,%.6g,%.6g,%d,%.6g,%d,%d,%d,%.6g,%d,%d\n", method, s->points, s->away,
           s->err_mean, s->err_max, s->stranded, s->stranded_frac, k, s->pairs, s->covered,
           s->coverage, s->modes, s->modes_stranded);
    return;
  }
  printf("%-16s %s\n", "toy:", t->name);
  printf("%-16s %s\n", "model:", c->model);
  printf("%-16s %s\n", "method:", method);
  printf("%-16s %d\n", "points:", s->points);
  printf("%-16s %d\n", "away:", s->away);
  printf("%-16s %g\n", "margin:", (double)c->so.margin);
  printf("%-16s %.6g\n", "error_mean:", s->err_mean);
  printf("%-16s %.6g\n", "error_max:", s->err_max);
  printf("%-16s %g\n", "threshold:", (double)c->so.threshold);
  printf("%-16s %g\n", "x_tol:", (double)c->so.x_tol);
  printf("%-16s %d\n", "stranded:", s->stranded);
  printf("%-16s %.6g\n", "stranded_frac:", s->stranded_frac);
  printf("%-16s %d%s\n", "modes:", k, m->method == EMBER_METHOD_MSE ? " (mse: its prediction)" : "");
  printf("%-16s %g\n", "tol:", (double)c->so.tol);
  printf("%-16s %d\n", "pairs:", s->pairs);
  printf("%-16s %d\n", "covered:", s->covered);
  printf("%-16s %.6g\n", "coverage:", s->coverage);
  printf("%-16s %d\n", "modes_found:", s->modes);
  printf("%-16s %d\n", "modes_stranded:", s->modes_stranded);
}

/* Predictions (and modes, for energy models) on the grid, then the scores. */
static int run_eval(const ember_toy *t, const eval_cli *c, const ember_model *m,
                    const ember_infer_opts *o, int k) {
  const int n = c->points, energy = m->method != EMBER_METHOD_MSE;
  ember_pool *pool = NULL;
  ember_infer *inf = NULL;
  ember_err err;
  float *x = malloc((size_t)n * sizeof(float));
  float *y = malloc((size_t)n * sizeof(float));
  float *my = energy ? malloc((size_t)n * k * sizeof(float)) : NULL;
  float *me = energy ? malloc((size_t)n * k * sizeof(float)) : NULL;
  float *mw = energy ? malloc((size_t)n * k * sizeof(float)) : NULL;
  int *count = energy ? malloc((size_t)n * sizeof(int)) : NULL;
  int rc = 1;
  if (!x || !y || (energy && (!my || !me || !mw || !count))) {
    fprintf(stderr, "ember eval toy: out of memory for %d points\n", n);
    goto done;
  }
  if (cli_pool("eval toy", c->threads, &pool) < 0) {
    rc = 2;
    goto done;
  }
  if (ember_infer_create(&inf, m, pool, &err) < 0) goto fail;
  ember_toy_grid(t, n, x);
  if (ember_infer_predict(inf, x, n, o, c->seed, 0, y, NULL, &err) < 0) goto fail;
  if (energy) {
    ember_modes_opts mo = EMBER_MODES_DEFAULTS;
    mo.k = k;
    mo.polish_steps = c->polish;
    if (ember_infer_modes(inf, x, n, o, &mo, c->seed, (uint64_t)n, my, me, mw, count, &err) < 0)
      goto fail;
  }
  ember_toy_score s;
  if (ember_toy_score_compute(t, &c->so, x, y, n, my, count, k, &s, &err) < 0) goto fail;
  print_report(t, c, m, k, &s);
  rc = cli_finish_stdout("eval toy");
  goto done;
fail:
  fprintf(stderr, "ember eval toy: %s\n", err.msg);
done:
  ember_infer_destroy(inf);
  ember_pool_destroy(pool);
  free(x);
  free(y);
  free(my);
  free(me);
  free(mw);
  free(count);
  return rc;
}

#define EVAL_USAGE "NAME --model MODEL [--points N] [--samples S] [--modes K] [options]"

int cmd_eval_toy(int argc, char **argv) {
  eval_cli c;
  memset(&c, 0, sizeof c);
  ember_toy_score_opts so = EMBER_TOY_SCORE_DEFAULTS;
  c.so = so;
  c.points = 200;
  c.threads = cli_default_threads();
  opt_spec specs[] = {
      {"model", OPT_STR, &c.model, "FILE", "model checkpoint (any method; 1 x, 1 y)", 0, 0},
      {"points", OPT_INT, &c.points, NULL, "grid points: cell centres across the toy's x range", 0, 0},
      {"samples", OPT_INT, &c.samples, NULL, "candidates per point: DFO samples or Langevin chains (default: the model's)", 0, 1},
      {"seed", OPT_U64, &c.seed, NULL, "random seed of inference", 0, 0},
      {"threads", OPT_INT, &c.threads, NULL, "worker threads (default: online CPUs)", 0, 1},
      {"modes", OPT_INT, &c.modes, "K", "modes per point for coverage (default: the toy's most branches, 1 or 2)", 0, 1},
      {"polish", OPT_INT, &c.polish, NULL, "gradient-descent steps on E per mode", 0, 0},
      {"margin", OPT_FLOAT, &c.so.margin, NULL, "error and coverage skip x this close to a break", 0, 0},
      {"threshold", OPT_FLOAT, &c.so.threshold, NULL, "stranded: farther than this from every valid y", 0, 0},
      {"x-tol", OPT_FLOAT, &c.so.x_tol, NULL, "stranded: this near a break, either side's branch counts as valid", 0, 0},
      {"tol", OPT_FLOAT, &c.so.tol, NULL, "coverage: a mode this near a branch covers it", 0, 0},
      {"csv", OPT_FLAG, &c.csv, NULL, "print a CSV header and one line instead of key: value lines", 0, 0},
      {"no-header", OPT_FLAG, &c.no_header, NULL, "with --csv: the line only, to append to a table", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc;
  const ember_toy *t = pick_toy("eval toy", EVAL_USAGE, specs, nspecs, argc, argv, &rc);
  if (!t) return rc;
  rc = args_parse("eval toy", EVAL_USAGE, specs, nspecs, argc - 1, argv + 1);
  if (rc != 0) {
    if (rc > 0) list_toys(stdout);
    return rc < 0 ? 2 : 0;
  }
  if (!c.model) {
    fprintf(stderr, "ember eval toy: --model is required (see ember eval toy --help)\n");
    return 2;
  }
  if (!args_given(specs, nspecs, "modes")) c.modes = t->max_branches;
  if (c.points < 1 || c.points > TOY_MAX_POINTS) {
    fprintf(stderr, "ember eval toy: --points must be 1..%d, got %d\n", TOY_MAX_POINTS, c.points);
    return 2;
  }
  if (c.modes < 1 || c.modes > TOY_MAX_MODES) {
    fprintf(stderr, "ember eval toy: --modes must be 1..%d, got %d\n", TOY_MAX_MODES, c.modes);
    return 2;
  }
  if (c.polish < 0 || c.polish > EMBER_MAX_POLISH_STEPS) {
    fprintf(stderr, "ember eval toy: --polish must be 0..%d, got %d\n", EMBER_MAX_POLISH_STEPS, c.polish);
    return 2;
  }
  if (c.so.margin < 0.0f || c.so.x_tol < 0.0f || c.so.threshold <= 0.0f || c.so.tol <= 0.0f) {
    fprintf(stderr, "ember eval toy: --margin and --x-tol must be >= 0, --threshold and --tol > 0\n");
    return 2;
  }
  if (c.no_header && !c.csv) {
    fprintf(stderr, "ember eval toy: --no-header goes with --csv\n");
    return 2;
  }
  ember_model m;
  ember_err err;
  if (ember_model_load(c.model, &m, &err) < 0) {
    fprintf(stderr, "ember eval toy: %s\n", err.msg);
    return 1;
  }
  ember_infer_opts o = m.infer;
  if (m.x_dim != 1 || m.y_dim != 1) {
    fprintf(stderr, "ember eval toy: %s has x_dim %d and y_dim %d; the toys have one x and one y\n",
            c.model, m.x_dim, m.y_dim);
    rc = 2;
  } else if (args_given(specs, nspecs, "samples") && c.samples < 1) {
    fprintf(stderr, "ember eval toy: --samples must be >= 1, got %d\n", c.samples);
    rc = 2;
  } else {
    if (args_given(specs, nspecs, "samples")) o.samples = c.samples;
    if (m.method != EMBER_METHOD_MSE &&
        ember_infer_opts_check(&o, m.method == EMBER_METHOD_LANGEVIN, &err) < 0) {
      fprintf(stderr, "ember eval toy: %s\n", err.msg);
      rc = 2;
    } else {
      rc = run_eval(t, &c, &m, &o, m.method == EMBER_METHOD_MSE ? 1 : c.modes);
    }
  }
  ember_model_free(&m);
  return rc;
}
