/* cmd_infer.c - `ember predict`, `ember sample` and `ember info`: run a checkpoint locally.
 *
 * Inputs hold x rows only (CSV with an optional header, or .npz with an `x` array; "-" reads
 * standard input); an image model takes an .npz of images or PNG files (png_read.h).
 * Results are CSV on stdout with a header:
 *   predict: y0..y{K-1} [,energy]           one row per input row
 *   sample:  row,rank,energy,weight,y0..     up to --modes rows per input row, rank 0 lowest
 * Input row i uses random stream (seed, i): the same seed gives the same answers however the
 * rows are split into calls, and emberd does the same per request. The option tables and the
 * printers live here and in infer_cli.h, shared with remote mode (remote_infer.c).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "infer_cli.h"
#include "png_read.h"

/* A note (not an error) when some x lies far outside the training data: the model answers,
 * but nothing it learned is about such x. Far = more than this many standard deviations from
 * the training mean in some column (z: ember_model_x_max_abs_z locally, the server's
 * x_max_abs_z remotely; the one note for both modes). */
#define FAR_X_SIGMA 10.0f

void cli_note_far_x(const char *verb, const float *z, int n) {
  int far = 0, worst = 0;
  for (int i = 0; i < n; i++) {
    far += z[i] > FAR_X_SIGMA;
    if (z[i] > z[worst]) worst = i;
  }
  if (far == 1)
    fprintf(stderr, "ember %s: note: row %d of x is %.3g standard deviations from the training data's "
                    "mean (in its farthest column); answers for x that far out are extrapolation\n",
            verb, worst, (double)z[worst]);
  else if (far > 1)
    fprintf(stderr, "ember %s: note: %d rows of x are more than %g standard deviations from the training "
                    "data's mean (the farthest: row %d, %.3g); answers for x that far out are extrapolation\n",
            verb, far, (double)FAR_X_SIGMA, worst, (double)z[worst]);
}

int cli_read_input_shape(const char *verb, const char *input, int x_dim, int channels, int extra,
                         ember_dataset *ds) {
  ember_err err;
  if (cli_is_png_input(input)) {
    char why[EMBER_ERR_MAX + 200];
    if (!channels) {
      fprintf(stderr, "ember %s: %s: PNG input is for image models; this model takes rows of %d "
              "numbers (CSV or .npz)\n", verb, input, x_dim);
      return -1;
    }
    if (extra > 0) {
      fprintf(stderr, "ember %s: %s: the model takes %d extra observations beside each image, which "
              "PNG cannot carry: give an .npz with x (the images) and x_extra\n", verb, input, extra);
      return -1;
    }
    if (cli_png_read_images(input, channels, ds, why, sizeof why) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, why);
      return -1;
    }
    return 0;
  }
  if (ember_dataset_read(input, channels ? -1 : x_dim, 0, ds, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return -1;
  }
  return 0;
}

int cli_read_input(const char *verb, const char *input, const ember_model *m, ember_dataset *ds) {
  return cli_read_input_shape(verb, input, m->x_dim, m->enc ? m->enc->shape.c : 0,
                              m->enc ? m->enc->shape.extra : 0, ds);
}

/* Loads model and inputs; options not given on the command line come from the model. */
static int open_all(const char *verb, infer_cli *c, const opt_spec *specs, int nspecs,
                    ember_model *m, ember_dataset *ds, ember_pool **pool, ember_infer **inf) {
  ember_err err;
  *pool = NULL;
  *inf = NULL;
  if (!c->model || !c->input) {
    fprintf(stderr, "ember %s: --model and --input are required (see ember %s --help)\n", verb, verb);
    return 2;
  }
  if (ember_model_load(c->model, m, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return 1;
  }
  if (infer_cli_resolve(c, specs, nspecs, m, verb) != 0) {
    ember_model_free(m);
    return 2;
  }
  /* an image model reads images (and their extras) and encodes them into its x rows */
  if (cli_read_input(verb, c->input, m, ds) < 0) {
    ember_model_free(m);
    return 1;
  }
  if (m->enc && ember_model_encode_dataset(m, ds, &err) < 0) {
    fprintf(stderr, "ember %s: %s: %s\n", verb, c->input, err.msg);
    ember_dataset_free(ds);
    ember_model_free(m);
    return 1;
  }
  float *z = malloc((size_t)ds->n * sizeof *z);
  if (!z) {
    fprintf(stderr, "ember %s: out of memory for %d rows\n", verb, ds->n);
    ember_dataset_free(ds);
    ember_model_free(m);
    return 1;
  }
  ember_model_x_max_abs_z(m, ds->x, ds->n, z, NULL);
  cli_note_far_x(verb, z, ds->n);
  free(z);
  if (cli_pool(verb, c->threads, pool) < 0) {
    ember_dataset_free(ds);
    ember_model_free(m);
    return 2;
  }
  if (ember_infer_create(inf, m, *pool, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    ember_pool_destroy(*pool);
    ember_dataset_free(ds);
    ember_model_free(m);
    return 1;
  }
  return 0;
}

static void close_all(ember_model *m, ember_dataset *ds, ember_pool *pool, ember_infer *inf) {
  ember_infer_destroy(inf);
  ember_pool_destroy(pool);
  ember_dataset_free(ds);
  ember_model_free(m);
}

/* Results are only complete if they reached stdout (a full disk or closed pipe is an error). */
int cli_finish_stdout(const char *verb) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  fprintf(stderr, "ember %s: could not write the results\n", verb);
  return 1;
}

void infer_cli_init(infer_cli *c) {
  memset(c, 0, sizeof *c);
  ember_infer_opts d = EMBER_INFER_DEFAULTS;
  c->o = d;
  c->threads = cli_default_threads();
}

int infer_cli_schedule(infer_cli *c, const char *verb) {
  if (c->optimizer && ember_optimizer_parse(c->optimizer, &c->o.optimizer) < 0) {
    fprintf(stderr, "ember %s: --optimizer must be default, dfo, langevin or ardfo, got '%s'\n", verb,
            c->optimizer);
    return -1;
  }
  if (!c->schedule) return 0;
  if (ember_schedule_parse(c->schedule, &c->o.langevin.schedule) == 0) return 0;
  fprintf(stderr, "ember %s: --schedule must be ibc or poly, got '%s'\n", verb, c->schedule);
  return -1;
}

int infer_cli_optimizer(const infer_cli *c, const opt_spec *specs, int nspecs, ember_method method,
                        const char *verb, int *langevin) {
  ember_optimizer opt = args_given(specs, nspecs, "optimizer") ? c->o.optimizer : EMBER_OPTIMIZER_DEFAULT;
  ember_err err;
  if (ember_optimizer_check(method, opt, &err) < 0) {
    fprintf(stderr, "ember %s: --optimizer: %s is a model of method %s: %s\n", verb, c->model,
            ember_method_name(method), err.msg);
    return 2;
  }
  *langevin = ember_optimizer_method(method, opt) == EMBER_METHOD_LANGEVIN;
  return 0;
}

const infer_cli_field infer_cli_fields[INFER_CLI_NFIELDS] = {
#define F(name, field, l) {name, offsetof(ember_infer_opts, field), sizeof(((ember_infer_opts *)0)->field), l}
    F("samples", samples, 0),           F("iters", iters, 0),
    F("sigma", sigma, 0),               F("shrink", shrink, 0),
    F("temperature", temperature, 0),   F("refine", refine_steps, 0),
    F("refine-lr", refine_lr, 0),       F("chain-steps", langevin.steps, 1),
    F("schedule", langevin.schedule, 1), F("step-init", langevin.step_init, 1),
    F("step-final", langevin.step_final, 1), F("gamma", langevin.gamma, 1),
    F("noise-scale", langevin.noise_scale, 1), F("delta-max", langevin.delta_max, 1),
    F("again-steps", again_steps, 1),   F("again-step", again_step, 1),
    F("optimizer", optimizer, 0),
#undef F
};
_Static_assert(sizeof(ember_infer_opts) == INFER_CLI_NFIELDS * 4,
               "ember_infer_opts changed: give the new field an option in INFER_SPECS and infer_cli_fields");

int infer_cli_refuse_langevin(const infer_cli_field *f, const char *verb, const char *model,
                              const char *method) {
  fprintf(stderr, "ember %s: --%s applies to Langevin models only (or to --optimizer langevin on "
                  "any energy model); %s is a model of method %s\n", verb, f->name, model, method);
  return 2;
}

int infer_cli_resolve(infer_cli *c, const opt_spec *specs, int nspecs, const ember_model *m,
                      const char *verb) {
  if (infer_cli_schedule(c, verb) < 0) return 2;
  int langevin, rc = infer_cli_optimizer(c, specs, nspecs, m->method, verb, &langevin);
  if (rc) return rc;
  for (size_t i = 0; i < INFER_CLI_NFIELDS; i++) {
    const infer_cli_field *f = &infer_cli_fields[i];
    int given = args_given(specs, nspecs, f->name);
    if (given && f->langevin && !langevin && m->method != EMBER_METHOD_MSE)
      return infer_cli_refuse_langevin(f, verb, c->model, ember_method_name(m->method));
    if (!given) memcpy((char *)&c->o + f->off, (const char *)&m->infer + f->off, f->size);
  }
  ember_err err;
  if (m->method != EMBER_METHOD_MSE && ember_infer_opts_check(&c->o, langevin, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return 2;
  }
  return 0;
}

/* y's column j as the header names it: the model's name, or y<j>. */
static void print_y_name(char *const *names, int j, const char *sep) {
  if (names) printf("%s%s", sep, names[j]);
  else printf("%sy%d", sep, j);
}

void cli_print_predict(const float *y, const float *e, int n, int d, int with_energy, char *const *names) {
  for (int j = 0; j < d; j++) print_y_name(names, j, j ? "," : "");
  printf(with_energy ? ",energy\n" : "\n");
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < d; j++) printf("%s%.7g", j ? "," : "", (double)y[(size_t)i * d + j]);
    if (with_energy) printf(",%.7g", (double)e[i]);
    putchar('\n');
  }
}

void cli_print_modes(const float *my, const float *me, const float *mw, const int *count, int n,
                     int k, int d, char *const *names) {
  printf("row,rank,energy,weight");
  for (int j = 0; j < d; j++) print_y_name(names, j, ",");
  putchar('\n');
  for (int i = 0; i < n; i++)
    for (int r = 0; r < count[i]; r++) {
      size_t slot = (size_t)i * k + r;
      printf("%d,%d,%.7g,%.5g", i, r, (double)me[slot], (double)mw[slot]);
      for (int j = 0; j < d; j++) printf(",%.7g", (double)my[slot * d + j]);
      putchar('\n');
    }
}

#define LOCAL_MODEL_HELP "model checkpoint (.safetensors)"
#define LOCAL_THREADS_HELP "worker threads (default: online CPUs)"

int cmd_predict(int argc, char **argv) {
  infer_cli c;
  infer_cli_init(&c);
  int with_energy = 0;
  opt_spec specs[] = {INFER_SPECS(c, "FILE", LOCAL_MODEL_HELP, LOCAL_THREADS_HELP),
                      {"energy", OPT_FLAG, &with_energy, NULL, "add an energy column", 0, 0}};
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("predict", "--model MODEL --input FILE|- [options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  ember_model m;
  ember_dataset ds;
  ember_pool *pool;
  ember_infer *inf;
  rc = open_all("predict", &c, specs, nspecs, &m, &ds, &pool, &inf);
  if (rc) return rc;
  if (with_energy && m.method == EMBER_METHOD_MSE) {
    fprintf(stderr, "ember predict: --energy: %s is an explicit (mse) model, which has no energy\n", c.model);
    close_all(&m, &ds, pool, inf);
    return 2;
  }
  float *y = malloc((size_t)ds.n * m.y_dim * sizeof(float));
  float *e = malloc((size_t)ds.n * sizeof(float));
  ember_err err;
  if (!y || !e) {
    fprintf(stderr, "ember predict: out of memory for %d rows\n", ds.n);
    rc = 1;
  } else if (ember_infer_predict(inf, ds.x, ds.n, &c.o, c.seed, 0, y, e, &err) < 0) {
    fprintf(stderr, "ember predict: %s\n", err.msg);
    rc = 1;
  } else {
    cli_print_predict(y, e, ds.n, m.y_dim, with_energy, m.y_names);
    rc = cli_finish_stdout("predict");
  }
  free(y);
  free(e);
  close_all(&m, &ds, pool, inf);
  return rc;
}

int cmd_sample(int argc, char **argv) {
  infer_cli c;
  infer_cli_init(&c);
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  opt_spec specs[] = {INFER_SPECS(c, "FILE", LOCAL_MODEL_HELP, LOCAL_THREADS_HELP), MODES_SPECS(mo)};
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("sample", "--model MODEL --input FILE|- --modes K [options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  ember_err err;
  if (ember_modes_opts_check(&mo, &err) < 0) {
    fprintf(stderr, "ember sample: %s\n", err.msg);
    return 2;
  }
  ember_model m;
  ember_dataset ds;
  ember_pool *pool;
  ember_infer *inf;
  rc = open_all("sample", &c, specs, nspecs, &m, &ds, &pool, &inf);
  if (rc) return rc;
  if (m.method == EMBER_METHOD_MSE) {
    fprintf(stderr, "ember sample: %s is an explicit (mse) model: it has one answer per input and "
                    "no energy to find modes in; use ember predict\n", c.model);
    close_all(&m, &ds, pool, inf);
    return 2;
  }
  const int k = mo.k, d = m.y_dim;
  float *my = malloc((size_t)ds.n * k * d * sizeof(float));
  float *me = malloc((size_t)ds.n * k * sizeof(float));
  float *mw = malloc((size_t)ds.n * k * sizeof(float));
  int *count = malloc((size_t)ds.n * sizeof(int));
  if (!my || !me || !mw || !count) {
    fprintf(stderr, "ember sample: out of memory for %d rows x %d modes\n", ds.n, k);
    rc = 1;
  } else if (ember_infer_modes(inf, ds.x, ds.n, &c.o, &mo, c.seed, 0, my, me, mw, count, &err) < 0) {
    fprintf(stderr, "ember sample: %s\n", err.msg);
    rc = 1;
  } else {
    cli_print_modes(my, me, mw, count, ds.n, k, d, m.y_names);
    rc = cli_finish_stdout("sample");
  }
  free(my);
  free(me);
  free(mw);
  free(count);
  close_all(&m, &ds, pool, inf);
  return rc;
}

void cli_print_names(const char *name, char *const *names, int n) {
  printf("%-18s [", name);
  for (int i = 0; i < n; i++) printf("%s%s", i ? ", " : "", names[i]);
  printf("]\n");
}

void cli_print_vec(const char *name, const float *v, int n) {
  printf("%-18s [", name);
  for (int i = 0; i < n; i++) printf("%s%.6g", i ? ", " : "", (double)v[i]);
  printf("]\n");
}

int cmd_info(int argc, char **argv) {
  const char *path = NULL;
  opt_spec specs[] = {{"model", OPT_STR, &path, "FILE", LOCAL_MODEL_HELP, 0, 0}};
  int rc = args_parse("info", "--model MODEL", specs, 1, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!path) {
    fprintf(stderr, "ember info: --model is required\n");
    return 2;
  }
  ember_model m;
  ember_err err;
  if (ember_model_load(path, &m, &err) < 0) {
    fprintf(stderr, "ember info: %s\n", err.msg);
    return 1;
  }
  printf("%-18s %s\n", "method", ember_method_name(m.method));
  printf("%-18s %d\n%-18s %d\n", "x_dim", m.x_dim, "y_dim", m.y_dim);
  size_t params = m.net.nparams;
  for (int j = 0; j < m.nar; j++) params += m.ar[j].nparams;
  if (m.nar > 0) /* ardfo: the count covers every prefix net */
    printf("%-18s %s %dx%d (%zu parameters in %d nets, one per y-prefix)\n", "network",
           ember_arch_name(m.net.shape.arch), m.net.shape.width, m.net.shape.depth, params, m.nar + 1);
  else
    printf("%-18s %s %dx%d (%zu parameters%s)\n", "network", ember_arch_name(m.net.shape.arch),
           m.net.shape.width, m.net.shape.depth, params, m.sn_w ? ", spectrally normalised" : "");
  if (m.enc) { /* an image model: x is the encoder's features, then the extras */
    char conv[EMBER_MAX_CONV * 20];
    ember_conv_spec_text(&m.enc->shape, conv, sizeof conv);
    printf("%-18s %dx%dx%d images, conv %s, head %s: %d features + %d extra (%zu parameters)\n", "encoder",
           m.enc->shape.h, m.enc->shape.w, m.enc->shape.c, conv, ember_head_name(m.enc->shape.head),
           m.enc->nfeat, m.enc->shape.extra, m.enc->nparams);
  }
  cli_print_names("x_names", m.x_names, m.x_dim);
  cli_print_names("y_names", m.y_names, m.y_dim);
  cli_print_vec("x_mean", m.x_mean, m.x_dim);
  cli_print_vec("x_std", m.x_std, m.x_dim);
  cli_print_vec("y_mean", m.y_mean, m.y_dim);
  cli_print_vec("y_std", m.y_std, m.y_dim);
  cli_print_vec("y_lo (normalised)", m.y_lo, m.y_dim);
  cli_print_vec("y_hi (normalised)", m.y_hi, m.y_dim);
  if (m.method == EMBER_METHOD_MSE)
    printf("%-18s one forward pass (explicit model)\n", "inference");
  else if (m.method == EMBER_METHOD_LANGEVIN)
    printf("%-18s %d chains of %d steps, %s schedule, step %g -> %g, gamma %g, noise %g, "
           "change clip %g; gradient penalty margin %g weight %g\n",
           "inference", m.infer.samples, m.infer.langevin.steps,
           ember_schedule_name(m.infer.langevin.schedule),
           (double)m.infer.langevin.step_init, (double)m.infer.langevin.step_final,
           (double)m.infer.langevin.gamma, (double)m.infer.langevin.noise_scale,
           (double)m.infer.langevin.delta_max, (double)m.penalty_margin, (double)m.penalty_weight);
  else
    printf("%-18s samples %d, iters %d, sigma %g, shrink %g, temperature %g\n", "inference",
           m.infer.samples, m.infer.iters, (double)m.infer.sigma, (double)m.infer.shrink,
           (double)m.infer.temperature);
  if (m.method == EMBER_METHOD_LANGEVIN && m.infer.again_steps > 0)
    printf("%-18s %d steps at step %g\n", "second chain", m.infer.again_steps, (double)m.infer.again_step);
  if (m.method != EMBER_METHOD_MSE && m.infer.refine_steps > 0)
    printf("%-18s %d gradient steps from the best candidates, step %g\n", "refine",
           m.infer.refine_steps, (double)m.infer.refine_lr);
  if (m.method == EMBER_METHOD_ARDFO)
    printf("%-18s %g of the counter-examples near the true prefix, noise %g\n", "prefix nets",
           (double)m.train_prefix_share, (double)m.train_prefix_noise);
  printf("%-18s %lld steps, batch %d, negatives %d, lr %g, temperature %g, seed %llu, final loss %.4f\n",
         "training", (long long)m.train_steps, m.train_batch, m.train_negatives, (double)m.train_lr,
         (double)m.train_temperature, (unsigned long long)m.train_seed, (double)m.train_loss);
  if (m.train_val_rows > 0 && m.method == EMBER_METHOD_MSE)
    printf("%-18s MSE %.4f on %d held-out rows (normalised units; answering the training mean: %.4f)\n",
           "validation", (double)m.train_val_loss, m.train_val_rows, (double)m.train_val_chance);
  else if (m.train_val_rows > 0)
    printf("%-18s loss %.4f on %d held-out rows (chance level %.4f: log of %.0f candidates per row)\n",
           "validation", (double)m.train_val_loss, m.train_val_rows, (double)m.train_val_chance,
           exp((double)m.train_val_chance));
  else
    printf("%-18s none (train with --val FILE or --val-split F)\n", "validation");
  ember_model_free(&m);
  return 0;
}
