/* cmd_evaldata.c - `ember eval data`: score a model on the user's own (x, y) pairs.
 *
 *   ember eval data --model M --data FILE [--tol T] [--samples a,b,c] [--modes K] [--csv]
 *
 * The numbers come from tasks/evaldata.c (action error and mode coverage at each sample
 * count); this file reads the flags and the files and prints a table (or CSV). The report is
 * the result: eval exits 0 whenever it evaluated, however badly the model did.
 */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/model.h"
#include "infer_cli.h"
#include "tasks/evaldata.h"

#define USAGE "--model MODEL --data FILE [--tol T] [--samples N[,N...]] [--modes K] [--csv]"

static void print_csv_field(const char *s) {
  putchar('"');
  for (const char *p = s; *p; p++) {
    if (*p == '"') putchar('"');
    putchar(*p);
  }
  putchar('"');
}

static void print_report(const char *model, const char *data, const ember_model *m, const ember_evaldata_opts *o,
                         const ember_evaldata_score *s, int ns, int csv, int no_header) {
  const int energy = m->method != EMBER_METHOD_MSE;
  if (csv) {
    if (!no_header)
      printf("model,data,method,samples,rows,tol,modes,error_mean,error_median,error_max,within_tol,coverage,"
             "modes_per_row,sq_error_mean\n");
    for (int i = 0; i < ns; i++) {
      print_csv_field(model);
      putchar(',');
      print_csv_field(data);
      printf(",%s,%d,%d,%g,%d,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g,%.6g\n", ember_method_name(m->method), s[i].samples,
             s[i].rows, (double)o->tol, energy ? o->modes : 1, s[i].err_mean, s[i].err_median, s[i].err_max,
             s[i].within, s[i].coverage, s[i].modes_mean, s[i].sq_err_mean);
    }
    return;
  }
  printf("%-10s %s (%s, x_dim %d, y_dim %d)\n", "model:", model, ember_method_name(m->method), m->x_dim, m->y_dim);
  printf("%-10s %s (%d rows)\n", "data:", data, s[0].rows);
  printf("%-10s %g (y units; error = distance from the prediction to the true y; sq_error_mean = the mean of its\n"
         "%-10s square, the \"test MSE\")\n", "tol:", (double)o->tol, "");
  if (energy)
    printf("%-10s up to %d per row; coverage = rows whose true y is within tol of one of them\n", "modes:", o->modes);
  else
    printf("%-10s the prediction (explicit model: one answer per row, no samples)\n", "modes:");
  printf("\n%8s  %10s  %12s  %10s  %10s  %8s  %13s  %13s\n", "samples", "error_mean", "error_median", "error_max",
         "within_tol", "coverage", "modes_per_row", "sq_error_mean");
  for (int i = 0; i < ns; i++) {
    char samples[16];
    if (energy) snprintf(samples, sizeof samples, "%d", s[i].samples);
    else snprintf(samples, sizeof samples, "-");
    printf("%8s  %10.4g  %12.4g  %10.4g  %10.4f  %8.4f  %13.2f  %13.4g\n", samples, s[i].err_mean, s[i].err_median,
           s[i].err_max, s[i].within, s[i].coverage, s[i].modes_mean, s[i].sq_err_mean);
  }
}

int cmd_eval_data(int argc, char **argv) {
  const char *model = NULL, *data = NULL;
  ember_evaldata_opts o = EMBER_EVALDATA_DEFAULTS;
  int_list samples = {0, {0}};
  int threads = cli_default_threads(), csv = 0, no_header = 0;
  opt_spec specs[] = {
      {"model", OPT_STR, &model, "FILE", "model checkpoint (any method)", 0, 0},
      {"data", OPT_STR, &data, "FILE", "(x, y) pairs with the model's columns: CSV (the last y_dim columns are y) or .npz with x and y", 0, 0},
      {"tol", OPT_FLOAT, &o.tol, "T", "tolerance in y's units: a prediction this close to the true y is within tolerance, and a mode this close covers it", 0, 0},
      {"samples", OPT_LIST, &samples, NULL, "inference samples (Langevin: chains) to score, comma-separated (default 64,256,1024,4096,16384, less what a request may not cost with this model)", 0, 1},
      {"modes", OPT_INT, &o.modes, "K", "modes per row for coverage", 0, 0},
      {"polish", OPT_INT, &o.polish, NULL, "gradient-descent steps on E per mode", 0, 0},
      {"seed", OPT_U64, &o.seed, NULL, "random seed of inference", 0, 0},
      {"threads", OPT_INT, &threads, NULL, "worker threads (default: online CPUs)", 0, 1},
      {"csv", OPT_FLAG, &csv, NULL, "CSV: a header and one line per sample count", 0, 0},
      {"no-header", OPT_FLAG, &no_header, NULL, "with --csv: the lines only, to append to a table", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("eval data", USAGE, specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!model || !data) {
    fprintf(stderr, "ember eval data: --model and --data are required (see ember eval data --help)\n");
    return 2;
  }
  if (!(o.tol > 0.0f)) {
    fprintf(stderr, "ember eval data: --tol must be > 0 (in y's units), got %g\n", (double)o.tol);
    return 2;
  }
  if (o.modes < 1 || o.modes > EMBER_MAX_MODES) {
    fprintf(stderr, "ember eval data: --modes must be 1..%d, got %d\n", EMBER_MAX_MODES, o.modes);
    return 2;
  }
  if (o.polish < 0 || o.polish > EMBER_MAX_POLISH_STEPS) {
    fprintf(stderr, "ember eval data: --polish must be 0..%d, got %d\n", EMBER_MAX_POLISH_STEPS, o.polish);
    return 2;
  }
  if (no_header && !csv) {
    fprintf(stderr, "ember eval data: --no-header goes with --csv\n");
    return 2;
  }
  ember_model m;
  ember_err err;
  if (ember_model_load(model, &m, &err) < 0) {
    fprintf(stderr, "ember eval data: %s\n", err.msg);
    return 1;
  }
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  mo.k = o.modes;
  mo.polish_steps = o.polish;
  if (args_given(specs, nspecs, "samples")) {
    o.nsamples = samples.n;
    for (int i = 0; i < samples.n; i++) o.samples[i] = samples.v[i];
    for (int i = 0; i < samples.n && m.method != EMBER_METHOD_MSE; i++)
      if (ember_evaldata_check_samples(&m, samples.v[i], &mo, &err) < 0) {
        fprintf(stderr, "ember eval data: --samples: %s\n", err.msg);
        ember_model_free(&m);
        return 2;
      }
  } else {
    o.nsamples = ember_evaldata_default_samples(&m, o.samples);
  }
  ember_dataset ds;
  if (ember_dataset_read(data, m.enc ? -1 : m.x_dim, m.y_dim, &ds, &err) < 0) {
    fprintf(stderr, "ember eval data: %s (the model %s takes %d x and answers %d y columns)\n", err.msg, model,
            m.x_dim, m.y_dim);
    ember_model_free(&m);
    return 1;
  }
  if (m.enc && ember_model_encode_dataset(&m, &ds, &err) < 0) { /* images -> the model's x rows */
    fprintf(stderr, "ember eval data: %s: %s\n", data, err.msg);
    ember_dataset_free(&ds);
    ember_model_free(&m);
    return 1;
  }
  ember_pool *pool = NULL;
  ember_evaldata_score s[EMBER_EVALDATA_MAX_SAMPLES];
  int ns = 0;
  if (cli_pool("eval data", threads, &pool) < 0) {
    rc = 2;
  } else if (ember_evaldata_run(&m, &ds, &o, pool, s, &ns, &err) < 0) {
    fprintf(stderr, "ember eval data: %s\n", err.msg);
    rc = 1;
  } else {
    print_report(model, data, &m, &o, s, ns, csv, no_header);
    rc = cli_finish_stdout("eval data");
  }
  ember_pool_destroy(pool);
  ember_dataset_free(&ds);
  ember_model_free(&m);
  return rc;
}
