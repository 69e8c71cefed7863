/* ember/train.h - training an energy model (Method A, InfoNCE; Method B, one InfoNCE-trained
 * net per y-prefix; Method C, InfoNCE against Langevin chains with a gradient penalty) or the
 * explicit MSE baseline.
 *
 * Method A, as the method text and the paper's defaults say: x and y normalised per dimension
 * to zero mean / unit variance; sampling bounds = data min/max (normalised) widened by
 * `bound_margin` of the range on each side (EMBER_BOUND_MARGIN_AUTO: 5%, image data 70%); each step takes `batch` examples, pairs every
 * true y with `negatives` counter-examples drawn uniformly inside the bounds, and minimises
 * InfoNCE over softmax(-E / temperature) with Adam (0.9, 0.999), the learning rate decayed
 * x0.99 every 100 steps. The MSE baseline regresses normalised y from normalised x with the
 * same network family and optimiser. Method C normalises y min-max to [-1, 1] (its bounds),
 * runs each example's counter-examples through a Langevin chain from uniform starts (no
 * gradient through the chain), and adds the gradient penalty on the chains' final states, whose
 * parameter gradient goes through ember_net_tangent_backward. With spectral_norm every hidden
 * dense weight (ember_sn_layer: not the input projection, not the energy output) is used as
 * W / sigma(W) (ember/spectral.h) and the model keeps the normalised weights.
 *
 * A step's candidates are cut into tasks of a few examples each (every task does its own
 * forward, loss and backward while its activations are still in cache) and spread over the
 * pool; per-thread gradients are summed in a fixed order, and example i of step t draws its
 * counter-examples from stream (seed, t * batch + i), so a fixed seed and thread count give
 * a bit-identical model.
 *
 *     ember_train_opts o;
 *     ember_train_opts_default(&o);
 *     o.steps = 2000;  o.seed = 7;
 *     ember_model m;
 *     if (ember_train(&ds, &o, pool, &m, &err) < 0) ...;
 *     ember_model_save(&m, "model.safetensors", &err);
 */
#ifndef EMBER_TRAIN_H
#define EMBER_TRAIN_H

#include "ember/base.h"
#include "ember/dataset.h"
#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_train_progress {
  int64_t step, steps; /* steps done, steps planned */
  float loss;          /* mean loss of the last step */
  float loss_avg;      /* mean loss over the last (up to) 100 steps */
  float lr;            /* learning rate of the last step */
  double elapsed_s, steps_per_s, eta_s;
  /* validation (opts.val or val_split): the latest evaluation's loss and its chance level
   * (ember_trainer_val_loss), on val_rows rows; NaN and 0 before the first or without one */
  double val_loss, val_chance;
  int val_rows;
} ember_train_progress;

/* Called after every step; return non-zero to cancel training (ember_train then returns
 * EMBER_ECANCELED and no model). */
typedef int (*ember_progress_fn)(void *ctx, const ember_train_progress *p);

/* The sampling bounds' margin when bound_margin is EMBER_BOUND_MARGIN_AUTO: the method text's
 * 5% for vector data; for image data 70%, because what images are for is answers beyond the
 * training targets (the coordinate task's extrapolation, docs/images.md): DFO only searches
 * inside the bounds. Langevin's bounds are its min-max normalisation's [-1, 1], no margin. */
#define EMBER_BOUND_MARGIN_AUTO (-1.0f)
#define EMBER_BOUND_MARGIN 0.05f
#define EMBER_IMAGE_BOUND_MARGIN 0.7f

typedef struct ember_train_opts {
  ember_method method;  /* dfo or mse */
  ember_arch arch;      /* resnet */
  int width, depth;     /* 256, 2 */
  int64_t steps;        /* 2000 */
  int batch;            /* 512 */
  int negatives;        /* 256 counter-examples per example */
  float lr;             /* 1e-3 */
  float lr_decay;       /* 0.99 ... */
  int decay_steps;      /* ... every 100 steps */
  float temperature;    /* InfoNCE temperature, 1 */
  float bound_margin;   /* of the range on each side; EMBER_BOUND_MARGIN_AUTO (the default): below */
  uint64_t seed;        /* 0 */
  ember_infer_opts infer; /* inference defaults stored in the model */
  /* langevin only: the training chain on the counter-examples (the model keeps one twice as
   * long for inference) and the gradient penalty max(0, ||dE/dy||_inf - margin)^2 x weight */
  ember_langevin_opts langevin;
  float penalty_margin, penalty_weight;
  /* langevin only: this many more counter-examples per example, drawn uniformly inside the
   * bounds and not moved by chains, join the chains' in InfoNCE (not in the penalty). 0 = the
   * method text's chains only. */
  int uniform_negatives;
  /* spectral normalisation of the hidden dense layers (ember_sn_layer; one power iteration per
   * step); the model keeps the normalised weights. Off by default; refused for ardfo. */
  int spectral_norm;
  /* Exponential moving average of the weights: after every step avg <- d avg + (1 - d) w with
   * d = min(ema, (1 + t) / (10 + t)) (t = steps taken), and the trained model gets the
   * average instead of the last step's weights. 0 = off. */
  float ema;
  /* Method B's counter-examples (ember_train sets keep_prefix = j - 1 for prefix net j): a
   * share keep_prefix_share of each example's counter-examples stay at the true y's first
   * keep_prefix coordinates, moved by N(0, prefix_noise^2) (normalised units), and draw the
   * rest uniformly; the others are uniform in every coordinate. With prefix_noise > 0 the
   * InfoNCE logits are corrected for that proposal (see docs/notes.md); prefix_noise = 0 copies
   * the prefix exactly, uncorrected: the method text's "keep the true prefix, draw y_j", which
   * leaves E_j's energies incomparable across prefixes. Defaults 0.5 and 0.3 (docs/notes.md
   * has the comparison). */
  int keep_prefix;
  float keep_prefix_share;
  float prefix_noise;
  /* Validation: the loss on rows the model does not train on, in progress reports and in the
   * model (train_val_*). Either `val`, a dataset with ds's columns (the caller's, not copied),
   * or val_split in (0, 1): that share of ds held out (ember_dataset_split with `seed`; the
   * normalisation is fitted on the rest); not both. It is measured every val_every steps (0:
   * steps / 20) on at most EMBER_VAL_PROGRESS_ROWS of the rows, and after the last step on all
   * of them: that value goes into the model. */
  const ember_dataset *val;
  float val_split;
  int64_t val_every;
  ember_progress_fn progress;
  void *progress_ctx;
  /* Image data (ds->img): the encoder to build; its image size and extras come from the data.
   * NULL: EMBER_ENCODER_DEFAULT_CONV with the soft-argmax head. Image models train dfo,
   * langevin or mse, without validation (docs/images.md). */
  const ember_encoder_shape *encoder;
  /* Every snapshot_every steps (0 = never), and not after the last, ember_train calls
   * snapshot with the model as it would return it at that point (averaged weights with ema):
   * e.g. to save it for a learning curve. Non-zero cancels training as progress does. */
  int64_t snapshot_every;
  int (*snapshot)(void *ctx, const ember_model *m, int64_t step);
  void *snapshot_ctx;
} ember_train_opts;

void ember_train_opts_default(ember_train_opts *o);
/* The defaults for one method: ember_train_opts_default, then that method's recipe (network,
 * batch, counter-examples, steps, weight average, inference defaults), the one that `ember train
 * --method M` and emberd's Train use when a field is not given. Each is measured to make a
 * working policy on the particle benchmark at N = 2 (bench/particle/recipes.tsv, RESULTS.md). */
void ember_train_opts_for_method(ember_train_opts *o, ember_method method);
/* Image data's recipe, on top of a method's (ember_train_opts_for_method): for dfo and mse a
 * 64-wide net, 600 steps of batch 32 at learning rate 0.002, no weight average; the other
 * methods keep theirs. On the coordinate task (docs/images.md#result) it trains in seconds, and
 * its models extrapolate beyond the training targets better than the vector recipe's (8,000
 * steps of batch 256), with which 10-image dfo models did worse than mse. `ember train` gives
 * image data this recipe for every option not given as a flag. */
void ember_train_opts_for_images(ember_train_opts *o);
/* Checks the options, and that training with them could fit EMBER_MAX_TRAIN_BYTES with the
 * smallest data (so that absurd sizes are refused before any data is read). */
int ember_train_opts_check(const ember_train_opts *o, ember_err *err);

/* The most memory one training run may hold: 32 GiB. ember_train refuses more before it
 * allocates anything; a server can bound its jobs lower with ember_train_memory. */
#define EMBER_MAX_TRAIN_BYTES ((uint64_t)32 << 30)

/* What training with these options on n rows of x_dim + y_dim columns with `threads` threads
 * costs, computed before anything is allocated: the model's parameters (every ardfo prefix net
 * counted; EMBER_MAX_PARAMS at most) in *params, and in *bytes the memory ember_train holds at
 * its peak, allocation by allocation as ember_trainer_create makes them: the model, each
 * thread's gradients, Adam's two moments, the weight average and spectral normalisation's
 * copies, each thread's activations and candidates for one task (about 1024 candidate rows, or
 * one example's negatives + 1), and the normalised data (not the dataset, which the caller
 * holds). BLAS's own buffers are not counted. Either output may be NULL. Fails, naming the
 * problem, for options ember_train_opts_check refuses and dimensions no model can have. */
int ember_train_memory(const ember_train_opts *o, int n, int x_dim, int y_dim, int threads,
                       size_t *params, uint64_t *bytes, ember_err *err);

/* Trains a new model on ds (n >= 1 rows, y_dim >= 1). pool may be NULL. On success *out is a
 * model the caller frees with ember_model_free. */
int ember_train(const ember_dataset *ds, const ember_train_opts *o, ember_pool *pool,
                ember_model *out, ember_err *err);

/* ---- pieces, exposed for tests and benchmarks ---------------------------------------- */

/* Sets the model's normalisation and bounds from the data (bound_margin may be
 * EMBER_BOUND_MARGIN_AUTO). */
void ember_train_fit_stats(ember_model *m, const ember_dataset *ds, float bound_margin);

/* A training session on a prepared model: one step at a time. */
typedef struct ember_trainer ember_trainer;
int ember_trainer_create(ember_trainer **out, ember_model *m, const ember_dataset *ds,
                         const ember_train_opts *o, ember_pool *pool, ember_err *err);
void ember_trainer_destroy(ember_trainer *t);
/* One optimisation step; returns the batch's mean loss in *loss. */
int ember_trainer_step(ember_trainer *t, float *loss);
/* Computes the mean loss and its gradient (trainer's gradient buffer, returned) of step
 * `step`'s batch at the current parameters, without updating them. NULL (loss NaN) for an
 * ardfo model, whose trainer steps one sub-trainer per prefix net. */
const float *ember_trainer_grad(ember_trainer *t, int64_t step, double *loss);
/* Swaps the weights being trained with their moving average (opts.ema), so that a caller can
 * look at or save the averaged model between steps; a second call swaps them back. Nothing
 * happens without ema. */
void ember_trainer_swap_average(ember_trainer *t);
/* Learning rate the next step will use. */
float ember_trainer_lr(const ember_trainer *t);
/* The validation loss of the trainer's model as it is now (for an ardfo model: its whole-y
 * net E(x, y)) on the first `rows` rows of val (raw units, the model's columns):
 *   - energy models: InfoNCE at the training temperature with as many counter-examples per
 *     row as a training example has (negatives, + uniform_negatives for langevin), all drawn
 *     uniformly inside the sampling bounds from stream (seed, EMBER_VAL_STREAM + row), the same
 *     at every call. *chance = log(candidates per row): the loss of a model whose energy says
 *     nothing (every candidate alike). For dfo this is the training loss's own quantity; the
 *     training loss of langevin (chain-moved counter-examples, gradient penalty) and ardfo
 *     (every prefix net, prefix-kept counter-examples) is another, so compare their
 *     validation loss with its chance level, not with the training loss.
 *   - mse: the mean squared error per y value in normalised units (as its training loss), and
 *     *chance that of always answering the training mean.
 * The trainer's workspaces serve the evaluation: it allocates nothing. With a moving average
 * (ema) it measures the weights being trained; ember_train swaps the average in first. */
#define EMBER_VAL_STREAM (UINT64_C(6) << 60)
#define EMBER_VAL_PROGRESS_ROWS 2048
int ember_trainer_val_loss(ember_trainer *t, const ember_dataset *val, int rows, double *loss,
                           double *chance, ember_err *err);

/* FLOPs of one training step (dense layers, forward + backward). */
double ember_train_step_flops(const ember_model *m, const ember_train_opts *o);

#ifdef __cplusplus
}
#endif
#endif
