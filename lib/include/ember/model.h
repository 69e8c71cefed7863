/* ember/model.h - a trained model and its safetensors checkpoint.
 *
 * A model is a network plus everything needed to use it: the method it was trained with,
 * x/y normalisation, the sampling bounds (in normalised y units) and default inference
 * options. Checkpoints are safetensors files: an 8-byte little-endian header length, a JSON
 * header, raw little-endian F32 tensors named as PyTorch's state_dict would name them
 * ("proj.weight", "blocks.0.0.bias", "out.weight", ...). `__metadata__` holds strings:
 *
 *   format=ember  format_version=1  method=dfo|ardfo|langevin|mse  x_dim  y_dim
 *   arch=resnet|mlp  width  depth
 *   x_mean x_std y_mean y_std y_lo y_hi   (JSON arrays of numbers, as text)
 *   x_names y_names   the columns' names (JSON arrays of strings, as text; a checkpoint
 *                     without them, from before they were kept, loads with x0.., y0..)
 *   infer.*   the default inference options        train.*   how it was trained (train.val_*:
 *                                                  the held-out loss, when it was validated)
 *   langevin.*  Langevin models' chains and penalty   spectral_norm=1  when it has it
 *
 * (every key, with the methods that have it, is one table in lib/src/checkpoint.c: meta_keys)
 *
 * Saving is atomic (temporary file in the same directory, fsync, rename). Loading validates
 * everything and names the problem: header size cap, offsets inside the file, no overlap or
 * gap between tensors, dtype, shapes, finite values, known names, sane metadata.
 *
 *     ember_model m;  ember_err err;
 *     if (ember_model_load("policy.safetensors", &m, &err) < 0) { puts(err.msg); return 1; }
 *     ...
 *     ember_model_free(&m);
 */
#ifndef EMBER_MODEL_H
#define EMBER_MODEL_H

#include "ember/base.h"
#include "ember/dataset.h"
#include "ember/encoder.h"
#include "ember/net.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  EMBER_METHOD_DFO = 0,      /* Method A: InfoNCE + derivative-free optimisation */
  EMBER_METHOD_MSE = 1,      /* explicit baseline: regress y from x */
  EMBER_METHOD_ARDFO = 2,    /* Method B: one energy net per y-prefix, autoregressive DFO */
  EMBER_METHOD_LANGEVIN = 3  /* Method C: InfoNCE against Langevin chains + gradient penalty */
} ember_method;

const char *ember_method_name(ember_method m);
int ember_method_parse(const char *s, ember_method *out);
const char *ember_arch_name(ember_arch a);
int ember_arch_parse(const char *s, ember_arch *out);

/* Langevin chain settings (Method C); see ember/langevin.h for the update they drive. */
typedef enum { EMBER_SCHEDULE_POLY = 0, EMBER_SCHEDULE_IBC = 1 } ember_schedule;

/* "poly" and "ibc": the names the CLI, checkpoints and TrainRequest use. */
const char *ember_schedule_name(ember_schedule s);
int ember_schedule_parse(const char *s, ember_schedule *out);

typedef struct ember_langevin_opts {
  int steps;             /* chain length (IBC code default 25; inference uses twice training's) */
  ember_schedule schedule;
  float step_init;       /* lambda at step 1 (IBC: 0.1) */
  float step_final;      /* IBC schedule: lambda at the last step (1e-5) */
  float gamma;           /* POLY schedule exponent (0.55) */
  float noise_scale;     /* multiplies the noise (1) */
  float delta_max;       /* per-step change clip, normalised y units (IBC: 0.1 x half-range); 0: none */
} ember_langevin_opts;

/* The chain settings of IBC's code with a chain of `n` steps: EMBER_LANGEVIN_DEFAULTS trains
 * with 25, EMBER_INFER_DEFAULTS infers with twice as many. */
#define EMBER__LANGEVIN_OPTS(n)                                                              \
  {.steps = (n), .schedule = EMBER_SCHEDULE_IBC, .step_init = 0.1f, .step_final = 1e-5f,     \
   .gamma = 0.55f, .noise_scale = 1.0f, .delta_max = 0.1f}
#define EMBER_LANGEVIN_DEFAULTS EMBER__LANGEVIN_OPTS(25)

/* The library's limits on inference options (ember_infer_opts_check): DFO samples (Langevin
 * chains) per query, DFO iterations, refining steps, and the steps of either Langevin chain
 * (ember_langevin_opts_check; again_steps too). EMBER_MAX_SAMPLES, below, is the lower limit
 * that a model's default options must fit. */
#define EMBER_MAX_INFER_SAMPLES (1 << 24)
#define EMBER_MAX_ITERS 1000
#define EMBER_MAX_REFINE_STEPS 10000
#define EMBER_MAX_CHAIN_STEPS 100000

/* Which optimiser answers a call. IBC runs DFO or Langevin on the same energy, so a call may
 * choose another optimiser than the one its model was trained with: DFO or Langevin chains on
 * any energy model (dfo, ardfo: its whole-y net, langevin), autoregressive DFO on an ardfo
 * model only (it needs the prefix nets). An explicit (mse) model has no energy: only DEFAULT.
 * ember_optimizer_check says which apply; the value names: "default", "dfo", "langevin",
 * "ardfo". */
typedef enum {
  EMBER_OPTIMIZER_DEFAULT = 0, /* the model's method's */
  EMBER_OPTIMIZER_DFO = 1,
  EMBER_OPTIMIZER_LANGEVIN = 2,
  EMBER_OPTIMIZER_ARDFO = 3
} ember_optimizer;
#define EMBER_OPTIMIZER_COUNT 4

const char *ember_optimizer_name(ember_optimizer o);
int ember_optimizer_parse(const char *s, ember_optimizer *out);

/* Inference options; a model stores defaults, every call may override them. */
typedef struct ember_infer_opts {
  int samples;       /* DFO population per query (default 16384); Langevin models: chains */
  int iters;         /* DFO iterations (3) */
  float sigma;       /* initial noise standard deviation, normalised y units (0.33) */
  float shrink;      /* sigma multiplier per iteration, in (0, 1] (0.5) */
  float temperature; /* probabilities are softmax(-E / temperature) (1) */
  /* Langevin models: the inference chain (the model's default is twice training's length) */
  ember_langevin_opts langevin;
  /* Langevin models: an optional second chain from the first one's final states, at a constant
   * small step (IBC's optimize_again; IBC uses 1e-5). 0 steps = off (default). */
  int again_steps;
  float again_step;
  /* Any energy model, predict only: sample-then-refine, gradient descent on E (with
   * backtracking, inside the bounds) from each query's EMBER_REFINE_TOP best candidates; the
   * lowest-energy result is the answer. 0 steps = off (default). */
  int refine_steps;
  float refine_lr;   /* initial step, normalised y units (0.05) */
  /* The optimiser (default: the model's method's). Every other field keeps its meaning: with
   * Langevin, samples counts chains and the langevin fields apply; with DFO, iters, sigma and
   * shrink. A model's stored defaults are for its own method (a dfo model's langevin fields
   * are EMBER_INFER_DEFAULTS's), so a caller that switches usually sets samples too. Models
   * store DEFAULT. */
  ember_optimizer optimizer;
} ember_infer_opts;

#define EMBER_REFINE_TOP 8
#define EMBER_INFER_DEFAULTS                                                                 \
  {.samples = 16384, .iters = 3, .sigma = 0.33f, .shrink = 0.5f, .temperature = 1.0f,        \
   .langevin = EMBER__LANGEVIN_OPTS(50), .again_steps = 0, .again_step = 1e-5f,              \
   .refine_steps = 0, .refine_lr = 0.05f, .optimizer = EMBER_OPTIMIZER_DEFAULT}

/* Checks an options struct; names the first bad field. Langevin fields are checked only when
 * `langevin` is set (the call runs Langevin chains: ember_optimizer_method), refine_lr and
 * again_step only when their steps are on; so {samples, iters, sigma, shrink, temperature} with
 * the rest zero is valid. The optimizer must be a known value; whether it applies to a model
 * is ember_optimizer_check's. */
int ember_infer_opts_check(const ember_infer_opts *o, int langevin, ember_err *err);

typedef struct ember_model {
  ember_method method;
  int x_dim, y_dim;
  ember_net net;          /* energy net (in_x = x_dim, in_y = y_dim, out = 1) or, for mse,
                             regressor (in_y = 0, out = y_dim) */
  /* ardfo: the prefix nets E_1 .. E_{y_dim-1} (ar[j] sees y_1..y_{j+1}: in_y = j + 1), all of
   * net's arch, width and depth; net itself is E_{y_dim}, the energy of a whole y. nar =
   * y_dim - 1 (0 for other methods, ar NULL). */
  int nar;
  ember_net *ar;
  float *x_mean, *x_std;  /* (x_dim): x_normalised = (x - mean) / std */
  float *y_mean, *y_std;  /* (y_dim) */
  float *y_lo, *y_hi;     /* (y_dim): sampling bounds in normalised y units */
  ember_infer_opts infer; /* default inference options (for langevin: samples = chains) */
  float penalty_margin, penalty_weight; /* langevin models: the gradient penalty used */
  /* how it was trained (informational, kept in the checkpoint) */
  int64_t train_steps;
  uint64_t train_seed;
  int train_batch, train_negatives;
  float train_lr, train_temperature, train_loss;
  float train_ema; /* the weights' moving-average decay (0: the last step's weights) */
  float train_prefix_share, train_prefix_noise; /* ardfo: the counter-examples' prefix settings */
  /* Validation at the end of training (ember_train_opts.val / val_split): the loss on
   * train_val_rows held-out rows (0: not validated) and its chance level (ember/train.h). */
  int train_val_rows;
  float train_val_loss, train_val_chance;
  float *stats; /* the one allocation behind the six vectors above */
  /* The model's signature: its columns' names, (x_dim) and (y_dim), each one allocation
   * (ember_names_new). ember_model_init names them x0.. and y0..; training takes the data's
   * names (a CSV header, an .npz's x_names / y_names); `ember predict` heads its output with
   * y_names. */
  char **x_names, **y_names;
  /* Spectral normalisation (models trained with it; NULL otherwise). sn_w: the raw weight W
   * (out, in) of every layer it covers (ember_sn_layer), layer after layer; sn_uv: those
   * layers' power-iteration vectors u (out) then v (in). The net's weights are W / sigma with sigma = u^T W v, so inference never
   * looks at these; training updates W and u, v, and checkpoints keep them (PyTorch's names:
   * <layer>.weight_orig, .weight_u, .weight_v). One allocation: sn_uv points into sn_w's. */
  float *sn_w, *sn_uv;
  /* Image models: the encoder (ember/encoder.h) whose features, then enc->shape.extra vector
   * observations, are the model's x (x_dim = features + extra); NULL for vector models. The
   * feature columns keep mean 0 and std 1 (they are not normalised); the extras are. */
  ember_encoder *enc;
} ember_model;

/* The energy net of y-prefix length j (1..y_dim) of an ardfo model: ar[j-1], or net for
 * j = y_dim. */
static inline const ember_net *ember_model_prefix_net(const ember_model *m, int j) {
  return j < m->y_dim ? &m->ar[j - 1] : &m->net;
}

/* The network a model of this method and size has: the energy net (in_y = y_dim, one output)
 * or, for mse, the regressor (in_y = 0, y_dim outputs). An ardfo model's prefix net j is the
 * same with in_y = j. */
ember_net_shape ember_model_net_shape(ember_method method, int x_dim, int y_dim, ember_arch arch,
                                      int width, int depth);
/* Parameters of a model of this method and size, every ardfo prefix net counted, for sizes
 * whose network ember_net_shape_check accepts (ember_model_init refuses more than
 * EMBER_MAX_PARAMS in all). */
size_t ember_model_params(ember_method method, int x_dim, int y_dim, ember_arch arch, int width,
                          int depth);

/* An ardfo model has a network per y dimension: its y_dim is at most this (other methods:
 * EMBER_MAX_Y_DIM). */
#define EMBER_MAX_ARDFO_Y_DIM 256

/* Allocates a model: network parameters zeroed, mean 0, std 1, bounds [-1, 1], default
 * inference options. The net's shape is derived from method and dims; arch, width and depth
 * come from the arguments. */
int ember_model_init(ember_model *m, ember_method method, int x_dim, int y_dim, ember_arch arch,
                     int width, int depth, ember_err *err);
void ember_model_free(ember_model *m);

/* Renames the model's columns: x_names (x_dim) and y_names (y_dim) are copied; either may be
 * NULL, which keeps the current names. Names are checked with ember_names_check (valid, all
 * distinct); on failure the model keeps its names. 0, EMBER_EINVAL or EMBER_ENOMEM. */
int ember_model_set_names(ember_model *m, const char *const *x_names, const char *const *y_names,
                          ember_err *err);

int ember_model_save(const ember_model *m, const char *path, ember_err *err);
int ember_model_load(const char *path, ember_model *m, ember_err *err);
/* The same from memory; name is used in messages only. */
int ember_model_load_mem(const void *buf, size_t len, const char *name, ember_model *m,
                         ember_err *err);

/* Which dense layers spectral normalisation covers: the hidden ones. The input projection
 * (layer 0) and the energy output (the last) stay plain, as in IBC, which normalises its
 * residual blocks: with every layer 1-Lipschitz the energy cannot be steeper than the inputs
 * allow, and trained models came out flat (answers on the bounds). */
static inline int ember_sn_layer(const ember_net *net, int l) { return l > 0 && l < net->nlayers - 1; }

/* Gives the model spectral-normalisation state: sn_w = the net's current weights, u and v at
 * their deterministic start. No-op if it has one. */
int ember_model_sn_enable(ember_model *m, ember_err *err);

/* What one query may cost when a request leaves the options to the model. emberd's
 * --max-samples and --max-request-gflop default to these, and a model whose default inference
 * options ask for more (samples per query, or ember_infer_flops of one query) is refused when
 * saved or loaded, and by ember_train before it trains: a model's defaults are then a request
 * that every emberd with default limits serves and that a local `ember predict` finishes.
 * ember_model_check_defaults says which limit the defaults break (EMBER_EINVAL). */
#define EMBER_MAX_SAMPLES 65536
#define EMBER_MAX_REQUEST_GFLOP 2000
int ember_model_check_defaults(const ember_model *m, ember_err *err);

/* Whether optimiser `opt` applies to a model of this method (ember_optimizer says which do):
 * 0, or EMBER_EINVAL with the reason ("optimizer ardfo needs the y-prefix nets of an ardfo
 * model; this model's method is dfo ..."). */
int ember_optimizer_check(ember_method method, ember_optimizer opt, ember_err *err);
/* The method whose optimiser `opt` runs on a model of this method: the model's own for
 * DEFAULT, else the chosen one's (EMBER_OPTIMIZER_LANGEVIN -> EMBER_METHOD_LANGEVIN, ...). */
ember_method ember_optimizer_method(ember_method method, ember_optimizer opt);
/* The optimiser a method trains for (mse: DEFAULT, it has none). */
ember_optimizer ember_method_optimizer(ember_method method);

/* Checks n rows of x: every value finite and within EMBER_X_MAX_SIGMA standard deviations of
 * the training data's mean (farther, the network's arithmetic overflows into NaN energies).
 * Names the first bad value. */
#define EMBER_X_MAX_SIGMA 1e6f
int ember_model_check_x(const ember_model *m, const float *x, int n, ember_err *err);

/* How far each of n rows of x lies from the training data: z[i] = the largest |x - x_mean| /
 * x_std over row i's columns, in standard deviations (the data's own rows mostly lie within 3;
 * `ember predict` notes rows beyond 10, emberd answers it as x_max_abs_z). col, if not NULL,
 * gets the column where each row's largest lies. x: (n, x_dim); z, col: (n). */
void ember_model_x_max_abs_z(const ember_model *m, const float *x, int n, float *z, int *col);

/* A model's signature: what a client that sends x and reads y relies on: the dimensions and
 * the columns' names. Two versions of a model with equal signatures can replace each other
 * under a client; emberd does not switch its default version to one whose signature differs
 * unless the repository says the change is intended (docs/versions-and-eval.md). Compared field
 * by field in ember_signature_equal and printed by ember_signature_text. The names point into
 * the model's own arrays: a signature lives no longer than its model. */
typedef struct ember_signature {
  int x_dim, y_dim;
  const char *const *x_names, *const *y_names; /* x_dim and y_dim names */
} ember_signature;

ember_signature ember_model_signature(const ember_model *m);
int ember_signature_equal(const ember_signature *a, const ember_signature *b);
/* "x_dim=2 y_dim=1 x=[px,py] y=[a]" into buf (cut to fit len); returns buf. */
const char *ember_signature_text(const ember_signature *s, char *buf, size_t len);

/* Gives the model an image encoder of this shape (parameters zeroed); x_dim must be its
 * features + shape->extra. Feature columns get mean 0, std 1. 0, EMBER_EINVAL or EMBER_ENOMEM. */
int ember_model_set_encoder(ember_model *m, const ember_encoder_shape *shape, ember_err *err);

/* An image model's x rows from images: x (n, x_dim) = [features of img[i], extra[i]]. img:
 * (n, h, w, c) uint8; extra: (n, enc->shape.extra), NULL when it is 0. Encodes in calls of at
 * most ws->max_images images (a workspace of the model's encoder shape). */
void ember_model_encode(const ember_model *m, ember_encoder_ws *ws, const uint8_t *img,
                        const float *extra, int n, float *x);

/* Turns an image dataset (ds->img, extras in ds->x) into the model's x rows in place: checks
 * the images' shape and the extras' count against the encoder, encodes every image (a
 * workspace of EMBER_ENCODE_BATCH images, allocated once), and leaves ds->x (n, x_dim), ds->img
 * NULL. EMBER_EINVAL naming the mismatch, or EMBER_ENOMEM. */
#define EMBER_ENCODE_BATCH 64
int ember_model_encode_dataset(const ember_model *m, ember_dataset *ds, ember_err *err);

/* Normalisation helpers: n rows of x or y, raw <-> normalised. */
void ember_model_norm_x(const ember_model *m, const float *x, int n, float *xn);
void ember_model_norm_y(const ember_model *m, const float *y, int n, float *yn);
void ember_model_denorm_y(const ember_model *m, const float *yn, int n, float *y);

#ifdef __cplusplus
}
#endif
#endif
