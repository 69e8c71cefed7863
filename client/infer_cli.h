/* infer_cli.h - what `ember predict` and `ember sample` share between local mode (cmd_infer.c)
 * and remote mode (remote_infer.c, `ember --server HOST:PORT ...`): the option tables and the
 * CSV printers. Both modes parse the same options into the same structs and print through the
 * same functions, so a remote answer that carries the same floats prints the same bytes.
 */
#ifndef EMBER_INFER_CLI_H
#define EMBER_INFER_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "args.h"
#include "ember/dfo.h"
#include "ember/model.h"

typedef struct infer_cli {
  const char *model, *input;
  const char *schedule; /* --schedule as given (NULL: the model's) */
  const char *optimizer; /* --optimizer as given (NULL: the model's method's) */
  ember_infer_opts o;
  uint64_t seed;
  int threads;
} infer_cli;

/* Options common to predict and sample. The --model text differs between modes (a file
 * locally, a name on the server), and so does what --threads means. */
#define INFER_SPECS(c, model_meta, model_help, threads_help)                                    \
  {"model", OPT_STR, &(c).model, model_meta, model_help, 0, 0},                                   \
  {"input", OPT_STR, &(c).input, "FILE|-", "x rows: CSV or .npz (array x; image models: uint8 images, docs/images.md) or PNG files a.png,b.png (image models); - reads stdin", 0, 0}, \
  {"samples", OPT_INT, &(c).o.samples, NULL, "candidates per row: DFO samples or Langevin chains (default: the model's)", 0, 1}, \
  {"iters", OPT_INT, &(c).o.iters, NULL, "DFO iterations (default: the model's)", 0, 1},         \
  {"sigma", OPT_FLOAT, &(c).o.sigma, NULL, "initial noise, normalised units (default: the model's)", 0, 1}, \
  {"shrink", OPT_FLOAT, &(c).o.shrink, NULL, "noise factor per iteration (default: the model's)", 0, 1},   \
  {"temperature", OPT_FLOAT, &(c).o.temperature, NULL, "softmax temperature (default: the model's)", 0, 1}, \
  {"optimizer", OPT_STR, &(c).optimizer, "NAME", "dfo, langevin (chains; --samples counts them), ardfo (ardfo models) or default (the model's method's; the default)", 0, 1}, \
  {"refine", OPT_INT, &(c).o.refine_steps, "N", "predict: gradient-descent steps on E from the 8 best candidates (sample-then-refine; default: the model's, 0)", 0, 1}, \
  {"refine-lr", OPT_FLOAT, &(c).o.refine_lr, NULL, "predict: initial refine step, normalised units (default: the model's, 0.05)", 0, 1}, \
  {"chain-steps", OPT_INT, &(c).o.langevin.steps, NULL, "langevin: inference chain length (default: the model's, twice training's)", 0, 1}, \
  {"schedule", OPT_STR, &(c).schedule, "S", "langevin: step schedule ibc or poly (default: the model's)", 0, 1}, \
  {"step-init", OPT_FLOAT, &(c).o.langevin.step_init, NULL, "langevin: first step size (default: the model's)", 0, 1}, \
  {"step-final", OPT_FLOAT, &(c).o.langevin.step_final, NULL, "langevin: last step size, ibc schedule (default: the model's)", 0, 1}, \
  {"gamma", OPT_FLOAT, &(c).o.langevin.gamma, NULL, "langevin: poly schedule exponent (default: the model's)", 0, 1}, \
  {"noise-scale", OPT_FLOAT, &(c).o.langevin.noise_scale, NULL, "langevin: noise factor (default: the model's)", 0, 1}, \
  {"delta-max", OPT_FLOAT, &(c).o.langevin.delta_max, NULL, "langevin: per-step change clip, 0 = none (default: the model's)", 0, 1}, \
  {"again-steps", OPT_INT, &(c).o.again_steps, NULL, "langevin: second chain at a constant small step, IBC's optimize_again (default: the model's, 0 = off)", 0, 1}, \
  {"again-step", OPT_FLOAT, &(c).o.again_step, NULL, "langevin: the second chain's step (default: the model's, 1e-5)", 0, 1}, \
  {"seed", OPT_U64, &(c).seed, NULL, "random seed", 0, 0},                                        \
  {"threads", OPT_INT, &(c).threads, NULL, threads_help, 0, 1}

/* sample's own options. */
#define MODES_SPECS(mo)                                                                          \
  {"modes", OPT_INT, &(mo).k, "K", "modes (distinct minimisers) per row", 0, 0},                 \
  {"radius", OPT_FLOAT, &(mo).radius, NULL, "mode-finding scale, normalised y units", 0, 0},     \
  {"min-mass", OPT_FLOAT, &(mo).min_mass, NULL, "drop modes with less probability mass", 0, 0},  \
  {"polish", OPT_INT, &(mo).polish_steps, NULL, "gradient-descent steps on E per mode", 0, 0},   \
  {"polish-lr", OPT_FLOAT, &(mo).polish_lr, NULL, "initial polishing step", 0, 0}

/* The inference options of INFER_SPECS, in its order (the first refused option is the same in
 * both modes): the field of ember_infer_opts each sets, and whether it applies to Langevin
 * models only. One option per field of ember_infer_opts. */
#define INFER_CLI_NFIELDS 17
typedef struct infer_cli_field {
  const char *name; /* the option, without "--" */
  size_t off, size;
  int langevin;
} infer_cli_field;
extern const infer_cli_field infer_cli_fields[INFER_CLI_NFIELDS];
/* "ember VERB: --NAME applies to Langevin models only (or to --optimizer langevin on any
 * energy model); MODEL is a model of method METHOD"; returns 2, the usage exit status. */
int infer_cli_refuse_langevin(const infer_cli_field *f, const char *verb, const char *model,
                              const char *method);

/* Zeroes c, sets the library's default inference options and --threads to online CPUs. */
void infer_cli_init(infer_cli *c);

/* --schedule's text -> c->o.langevin.schedule, --optimizer's -> c->o.optimizer. 0, or -1 after
 * saying what is wrong. */
int infer_cli_schedule(infer_cli *c, const char *verb);

/* Local mode: every inference option not given on the command line takes the model's default
 * (d); then the whole set is checked for the model. 0, or 2 after printing the problem. */
/* --optimizer (if given) for a model of this method: 0 with *langevin set when the call runs
 * Langevin chains, or 2 after printing why the optimizer does not apply. Both modes. */
int infer_cli_optimizer(const infer_cli *c, const opt_spec *specs, int nspecs, ember_method method,
                        const char *verb, int *langevin);
int infer_cli_resolve(infer_cli *c, const opt_spec *specs, int nspecs, const ember_model *m,
                      const char *verb);

/* predict's CSV: header y0..y{d-1}[,energy] (names[j] instead of yj when names is not NULL:
 * the model's y names), then n rows. y: (n, d); e: (n), read only when with_energy. */
void cli_print_predict(const float *y, const float *e, int n, int d, int with_energy, char *const *names);
/* sample's CSV: header row,rank,energy,weight,y0.. (or names); then count[i] modes of each
 * row i. my: (n, k, d); me, mw: (n, k); count: (n). */
void cli_print_modes(const float *my, const float *me, const float *mw, const int *count, int n,
                     int k, int d, char *const *names);
/* The note on stderr when rows of x lie far from the training data: z (n) holds each row's
 * largest |z-score| (ember_model_x_max_abs_z, or the server's x_max_abs_z). Local and remote
 * predict and sample note through this one function, at one threshold. */
void cli_note_far_x(const char *verb, const float *z, int n);
/* 0 if everything printed reached stdout, else 1 after saying so (full disk, closed pipe). */
int cli_finish_stdout(const char *verb);
/* --input for model m as a dataset: CSV or .npz, or PNG file(s) (one image each, "a.png,b.png")
 * for an image model without extras. 0, or -1 after saying why on stderr. */
int cli_read_input(const char *verb, const char *input, const ember_model *m, ember_dataset *ds);
/* The same for a model known by its shape (remote mode: GetModel's): x_dim, and for an image
 * model its channels (0: a vector model) and extras. */
int cli_read_input_shape(const char *verb, const char *input, int x_dim, int channels, int extra,
                         ember_dataset *ds);
/* "name               [v0, v1]" as `ember info` prints vectors, and lists of names. */
void cli_print_vec(const char *name, const float *v, int n);
void cli_print_names(const char *name, char *const *names, int n);

#ifdef EMBER_REMOTE
/* Remote inference for a closed-loop caller (ember eval particle): GetModel once (the version
 * it names is pinned), the given inference options checked and wired as predict does, then
 * Predict on whatever rows the caller has. Defined in remote_infer.c. */
typedef struct remote_policy remote_policy;
typedef struct remote_policy_desc {
  int x_dim, y_dim;
  int64_t version;
  char method[16];
} remote_policy_desc;
/* 0, or the exit status (1, 2) after printing why; *out is NULL then. */
int remote_policy_open(remote_policy **out, const char *verb, const char *server, infer_cli *c,
                       const opt_spec *specs, int nspecs, int64_t version, int deadline_ms,
                       remote_policy_desc *desc);
/* y (n, y_dim) for x (n, x_dim); row i uses random stream (seed, row_offset + i). 0 or 1. */
int remote_policy_act(remote_policy *p, const float *x, int n, uint64_t row_offset, float *y);
void remote_policy_close(remote_policy *p);
#endif

#endif
