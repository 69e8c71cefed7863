/* train.c - the library's training loop for every method: InfoNCE with uniform counter-examples
 * (Method A, dfo), one net per y-prefix (Method B, ardfo), InfoNCE against Langevin chains with
 * the gradient penalty (Method C, langevin) and the MSE baseline; the weight average, spectral
 * normalisation and snapshots; the per-method defaults (ember_train_opts_for_method). emberd's
 * Train RPC, which runs this on a job thread and publishes the model, is server/train.c.
 *
 * A step is cut into tasks of a few examples (about EMBER_TASK_ROWS candidate rows). A task
 * builds its candidates (the true y first, then uniform counter-examples), runs the network
 * forward, the loss, and the backward pass into its thread's gradient buffer, all while the
 * task's activations are still in cache; the loop never materialises the whole batch x
 * candidates activation tensor (512 x 257 x 256 floats per layer at the paper's defaults).
 * Per-thread gradients are then summed in thread order and Adam updates the flat buffer.
 *
 * Image models (ember/encoder.h): a task also gathers its examples' images, encodes them into
 * the first columns of its x rows, and after the network's backward sends x's gradient
 * (ember_net_backward_x) through the encoder into the thread's gradient, whose slice holds the
 * network's parameters and then the encoder's; each has its own Adam with the same schedule.
 *
 * Reproducibility: the batch of step t is drawn from stream (seed, EMBER_BATCH_STREAM + t)
 * and example i's counter-examples from stream (seed, t * batch + i); tasks go to threads by
 * a fixed rule, so a fixed seed and thread count give bit-identical parameters.
 */
#include "ember/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/langevin.h"
#include "ember/loss.h"
#include "ember/net.h"
#include "ember/optim.h"
#include "ember/spectral.h"

#define EMBER_TASK_ROWS 1024
#define EMBER_BATCH_STREAM (UINT64_C(1) << 62)
#define EMBER_INIT_STREAM (UINT64_C(3) << 62)
#define EMBER_LOSS_WINDOW 100

void ember_train_opts_default(ember_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->method = EMBER_METHOD_DFO;
  o->arch = EMBER_ARCH_RESNET;
  o->width = 256;
  o->depth = 2;
  o->steps = 2000;
  o->batch = 512;
  o->negatives = 256;
  o->lr = 1e-3f;
  o->lr_decay = 0.99f;
  o->decay_steps = 100;
  o->temperature = 1.0f;
  o->bound_margin = EMBER_BOUND_MARGIN_AUTO;
  o->seed = 0;
  ember_infer_opts d = EMBER_INFER_DEFAULTS;
  o->infer = d;
  ember_langevin_opts l = EMBER_LANGEVIN_DEFAULTS;
  o->langevin = l;
  o->penalty_margin = 1.0f;
  o->penalty_weight = 1.0f;
  o->keep_prefix_share = 0.5f;
  o->prefix_noise = 0.3f;
}

void ember_train_opts_for_method(ember_train_opts *o, ember_method method) {
  ember_train_opts_default(o);
  o->method = method;
  /* Every method: a 128x2 ResNet and the weights' moving average (decay 0.999), which made
   * the particle task's learning curves steady and the final models less dependent on the
   * seed (docs/particle.md). Steps, batch and counter-examples per method: docs/particle.md
   * and bench/RESULTS.md have the measurements behind them. */
  o->width = 128;
  o->ema = 0.999f;
  switch (method) {
  case EMBER_METHOD_DFO:
    o->batch = 256;
    o->negatives = 64;
    o->steps = 8000;
    o->infer.samples = 1024; /* the paper's timing setting; 16,384 was no better here */
    break;
  case EMBER_METHOD_ARDFO:
    o->batch = 256;
    o->negatives = 64; /* per prefix net */
    o->steps = 4000;   /* each step trains y_dim nets */
    /* every prefix net is evaluated per iteration: y_dim x the passes of dfo */
    o->infer.samples = 512;
    break;
  case EMBER_METHOD_LANGEVIN:
    o->batch = 128;
    o->negatives = 8; /* moved by 25-step chains (the library's chain default) */
    /* chains that reach the data: IBC's D4RL step and change clip instead of its code's 0.1,
     * without which the counter-examples stay about uniform and from N = 4 the energy never
     * sharpens (docs/particle.md#langevin-method-c); inference chains take them too */
    o->langevin.step_init = 0.5f;
    o->langevin.delta_max = 0.5f;
    o->steps = 24000; /* success still rose from 12k to 16k steps on the particle task (docs/particle.md) */
    o->infer.samples = 64; /* chains, each 2 x chain steps long */
    break;
  case EMBER_METHOD_MSE:
    o->batch = 256;
    o->steps = 8000;
    break;
  }
}

void ember_train_opts_for_images(ember_train_opts *o) {
  if (o->method != EMBER_METHOD_DFO && o->method != EMBER_METHOD_MSE) return;
  o->width = 64;
  o->steps = 600;
  o->batch = 32;
  o->lr = 0.002f;
  o->ema = 0.0f;
}

static uint64_t train_bytes(const ember_train_opts *o, int n, int x_dim, int y_dim, int threads);
static int too_big(const ember_train_opts *o, uint64_t bytes, const char *what, ember_err *err);

int ember_train_opts_check(const ember_train_opts *o, ember_err *err) {
  if ((unsigned)o->method > EMBER_METHOD_LANGEVIN)
    return ember_fail(err, EMBER_ENOTSUP, "unknown training method %d", (int)o->method);
  if (o->method == EMBER_METHOD_ARDFO && o->spectral_norm)
    return ember_fail(err, EMBER_ENOTSUP, "spectral normalisation is not available for ardfo models");
  if (o->steps < 1 || o->steps > INT64_C(1) << 40)
    return ember_fail(err, EMBER_EINVAL, "steps must be 1..2^40, got %lld (a model with no training step answers nothing useful)", (long long)o->steps);
  if (o->batch < 1 || o->batch > 1 << 20)
    return ember_fail(err, EMBER_EINVAL, "batch must be 1..1048576, got %d", o->batch);
  if (o->method == EMBER_METHOD_LANGEVIN) {
    int rc = ember_langevin_opts_check(&o->langevin, err);
    if (rc < 0) return rc;
    if (!(o->penalty_margin >= 0.0f && o->penalty_weight >= 0.0f) || !isfinite(o->penalty_margin) ||
        !isfinite(o->penalty_weight))
      return ember_fail(err, EMBER_EINVAL, "penalty margin and weight must be >= 0, got %g and %g",
                        (double)o->penalty_margin, (double)o->penalty_weight);
  }
  if (o->uniform_negatives < 0 || o->uniform_negatives > 1 << 16)
    return ember_fail(err, EMBER_EINVAL, "uniform negatives must be 0..65536, got %d", o->uniform_negatives);
  if (o->keep_prefix < 0)
    return ember_fail(err, EMBER_EINVAL, "keep_prefix must be >= 0, got %d", o->keep_prefix);
  if (!(o->prefix_noise >= 0.0f && o->prefix_noise <= 10.0f))
    return ember_fail(err, EMBER_EINVAL, "prefix noise must be in [0, 10], got %g", (double)o->prefix_noise);
  if (!(o->keep_prefix_share >= 0.0f && o->keep_prefix_share <= 1.0f))
    return ember_fail(err, EMBER_EINVAL, "the share of counter-examples drawn near the true prefix (prefix share) must be in [0, 1], got %g",
                      (double)o->keep_prefix_share);
  if (o->method != EMBER_METHOD_MSE && (o->negatives < 1 || o->negatives > 1 << 16))
    return ember_fail(err, EMBER_EINVAL, "negatives must be 1..65536, got %d", o->negatives);
  if (!(o->lr > 0.0f && o->lr < 10.0f))
    return ember_fail(err, EMBER_EINVAL, "learning rate must be in (0, 10), got %g", (double)o->lr);
  if (!(o->lr_decay > 0.0f && o->lr_decay <= 1.0f))
    return ember_fail(err, EMBER_EINVAL, "lr decay must be in (0, 1], got %g", (double)o->lr_decay);
  if (o->decay_steps < 1)
    return ember_fail(err, EMBER_EINVAL, "decay steps must be >= 1, got %d", o->decay_steps);
  if (!(o->temperature > 1e-6f && o->temperature <= 1e6f))
    return ember_fail(err, EMBER_EINVAL, "temperature must be in (1e-6, 1e6], got %g",
                      (double)o->temperature);
  if (!(o->ema >= 0.0f && o->ema < 1.0f))
    return ember_fail(err, EMBER_EINVAL, "weight average decay (ema) must be in [0, 1) (0 = off), got %g", (double)o->ema);
  if (o->snapshot_every < 0)
    return ember_fail(err, EMBER_EINVAL, "snapshot interval must be >= 0, got %lld", (long long)o->snapshot_every);
  if (!(o->val_split >= 0.0f && o->val_split < 1.0f))
    return ember_fail(err, EMBER_EINVAL, "the validation share (val split) must be in [0, 1) (0 = none), got %g",
                      (double)o->val_split);
  if (o->val && o->val_split > 0.0f)
    return ember_fail(err, EMBER_EINVAL, "give validation data or a validation share (val split), not both");
  if (o->val_every < 0)
    return ember_fail(err, EMBER_EINVAL, "validation interval must be >= 0, got %lld", (long long)o->val_every);
  if (!(o->bound_margin >= 0.0f && o->bound_margin <= 10.0f) && o->bound_margin != EMBER_BOUND_MARGIN_AUTO)
    return ember_fail(err, EMBER_EINVAL, "bound margin must be in [0, 10] (or -1: the data's default), got %g",
                      (double)o->bound_margin);
  /* the smallest network of this width and depth: one x and one y input, one output */
  ember_net_shape s = {.arch = o->arch, .in_x = 1, .in_y = 1, .width = o->width, .depth = o->depth,
                       .out = 1};
  int rc = ember_net_shape_check(&s, err);
  if (rc < 0) return rc;
  /* what any data needs (one row of one x and one y column, one thread): absurd sizes stop
   * here, before any data is read */
  uint64_t least = train_bytes(o, 1, 1, 1, 1);
  if (least > EMBER_MAX_TRAIN_BYTES) return too_big(o, least, "at least ", err);
  return ember_infer_opts_check(&o->infer, o->method == EMBER_METHOD_LANGEVIN, err);
}

static void mean_std(const float *v, int n, int d, int j, float *mean, float *std) {
  double s = 0.0, s2 = 0.0;
  for (int i = 0; i < n; i++) s += v[(size_t)i * d + j];
  double mu = s / n;
  for (int i = 0; i < n; i++) {
    double t = v[(size_t)i * d + j] - mu;
    s2 += t * t;
  }
  double sd = sqrt(s2 / n);
  *mean = (float)mu;
  *std = sd > 1e-6 * (1.0 + fabs(mu)) ? (float)sd : 1.0f; /* constant column: leave unscaled */
}

void ember_train_fit_stats(ember_model *m, const ember_dataset *ds, float bound_margin) {
  if (bound_margin == EMBER_BOUND_MARGIN_AUTO) bound_margin = m->enc ? EMBER_IMAGE_BOUND_MARGIN : EMBER_BOUND_MARGIN;
  if (m->enc) { /* features as they are; the extras (ds->x) normalised */
    const int F = m->enc->nfeat;
    for (int j = 0; j < F; j++) m->x_mean[j] = 0.0f, m->x_std[j] = 1.0f;
    for (int j = 0; j < ds->x_dim; j++) mean_std(ds->x, ds->n, ds->x_dim, j, &m->x_mean[F + j], &m->x_std[F + j]);
  } else {
    for (int j = 0; j < m->x_dim; j++) mean_std(ds->x, ds->n, m->x_dim, j, &m->x_mean[j], &m->x_std[j]);
  }
  if (m->method == EMBER_METHOD_LANGEVIN) { /* min-max to [-1, 1], which are the bounds */
    for (int j = 0; j < m->y_dim; j++) {
      float lo = INFINITY, hi = -INFINITY;
      for (int i = 0; i < ds->n; i++) {
        float v = ds->y[(size_t)i * m->y_dim + j];
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
      }
      float half = 0.5f * (hi - lo);
      m->y_mean[j] = 0.5f * (hi + lo);
      m->y_std[j] = half > 1e-6f * (1.0f + fabsf(m->y_mean[j])) ? half : 1.0f;
      m->y_lo[j] = -1.0f;
      m->y_hi[j] = 1.0f;
    }
    return;
  }
  for (int j = 0; j < m->y_dim; j++) {
    mean_std(ds->y, ds->n, m->y_dim, j, &m->y_mean[j], &m->y_std[j]);
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < ds->n; i++) {
      float v = (ds->y[(size_t)i * m->y_dim + j] - m->y_mean[j]) / m->y_std[j];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    float range = hi - lo;
    if (range < 1e-6f) range = 1.0f;
    m->y_lo[j] = lo - bound_margin * range;
    m->y_hi[j] = hi + bound_margin * range;
    if (!(m->y_lo[j] < m->y_hi[j])) m->y_lo[j] = lo - 0.5f, m->y_hi[j] = hi + 0.5f;
  }
}

/* ---- trainer ---------------------------------------------------------------------------- */

struct ember_trainer {
  ember_model *m;
  const ember_dataset *ds;
  ember_train_opts o;
  ember_pool *pool;
  int threads;
  ember_adam opt;
  ember_net_ws *ws; /* (threads) */
  float *tgrad;     /* (threads, gstride); thread 0's slice is the summed gradient */
  size_t gstride;   /* the net's parameters, then the encoder's (image models) */
  double *tloss;    /* (threads) */
  float *scratch;   /* (threads, scratch_stride) */
  size_t scratch_stride;
  float *xn, *yn; /* normalised data: (n, x_dim), (n, y_dim) */
  int *batch_idx; /* (batch) */
  int per_task;   /* examples per task */
  int cand;       /* candidates per example: negatives + 1, or 1 for mse */
  int64_t step, pass_step;
  /* langevin: per-thread chain workspaces, penalty buffers (dir, dt) and query streams */
  ember_langevin_ws *lws;
  float *pen;       /* (threads, per_task * (negatives + 1) * (2 * y_dim + 1)) */
  ember_rng *rngs;  /* (threads, per_task) */
  /* Method B: one sub-trainer per prefix net (the fields above are unused then). Sub-trainer j
   * sees a view of the model with y_dim = j and net = E_j (sharing its parameters) and of the
   * data with the first j columns of y (copied), and its counter-examples keep the true
   * y_1..y_{j-1} as keep_prefix says. */
  int nsub;
  ember_trainer **sub;
  ember_model *views;
  ember_dataset *data;
  float **ycols;
  /* spectral normalisation: raw parameters (Adam updates these; the model's sn_w mirrors their
   * weights), sigmas, scratch. The power-iteration vectors live in the model (sn_uv). */
  float *raw, *sn_sigma, *sn_tmp;
  /* the weights' moving average (o.ema > 0), of the vector Adam updates (raw with spectral
   * normalisation, else the model's parameters) */
  float *avg;
  /* image models: per thread, an encoder workspace for a task's images, the images gathered
   * from the batch (per_task, image bytes) and the features' gradient (per_task, nfeat); the
   * encoder's own Adam and weight average */
  ember_encoder_ws *ews;
  uint8_t *timg;
  float *tdfeat;
  ember_adam eopt;
  float *eavg;
  /* ember_trainer_val_loss's data while it runs */
  const ember_dataset *vds;
  int vrows;
};

static void thread_scratch(ember_trainer *t, int thread, float **xb, float **yb, float **e,
                           float **de) {
  const ember_model *m = t->m;
  size_t rows = (size_t)t->per_task * t->cand;
  int out = m->net.shape.out;
  *xb = t->scratch + (size_t)thread * t->scratch_stride;
  *yb = *xb + (size_t)t->per_task * m->x_dim;
  *e = *yb + rows * m->y_dim;
  *de = *e + rows * out;
}

static int create_ardfo(ember_trainer *t, ember_model *m, const ember_dataset *ds,
                        const ember_train_opts *o, ember_pool *pool, ember_err *err) {
  const int n = m->y_dim;
  t->views = calloc((size_t)n, sizeof *t->views);
  t->data = calloc((size_t)n, sizeof *t->data);
  t->ycols = calloc((size_t)n, sizeof *t->ycols);
  t->sub = calloc((size_t)n, sizeof *t->sub);
  if (!t->views || !t->data || !t->ycols || !t->sub)
    return ember_fail(err, EMBER_ENOMEM, "out of memory creating trainers");
  t->nsub = n;
  for (int j = 1; j <= n; j++) {
    ember_model *v = &t->views[j - 1];
    ember_dataset *d = &t->data[j - 1];
    *v = *m;
    v->method = EMBER_METHOD_DFO;
    v->y_dim = j;
    v->net = *ember_model_prefix_net(m, j);
    v->nar = 0;
    v->ar = NULL;
    v->sn_w = v->sn_uv = NULL;
    *d = *ds;
    d->y_dim = j;
    if (j < ds->y_dim) {
      float *yc = malloc((size_t)ds->n * j * sizeof(float));
      if (!yc) return ember_fail(err, EMBER_ENOMEM, "out of memory for y prefixes");
      for (size_t r = 0; r < (size_t)ds->n; r++)
        memcpy(yc + r * j, ds->y + r * ds->y_dim, (size_t)j * sizeof(float));
      t->ycols[j - 1] = yc;
      d->y = yc;
    }
    ember_train_opts oj = *o;
    oj.method = EMBER_METHOD_DFO;
    oj.keep_prefix = j - 1;
    oj.seed = o->seed + (uint64_t)(j - 1); /* prefix nets draw independent batches */
    int rc = ember_trainer_create(&t->sub[j - 1], v, d, &oj, pool, err);
    if (rc < 0) return rc;
  }
  return 0;
}

/* A step's tasks: cand candidate rows per example (1 for mse) and per_task examples per task,
 * about EMBER_TASK_ROWS rows. Tasks go to threads round-robin, so their number is made the
 * nearest multiple of the thread count (when there are enough examples) and every thread gets
 * the same share of the batch (512 examples of 17 candidates were 8 tasks of 60 and one of 32:
 * 272 vs 240 examples on 2 threads). */
static void task_size(const ember_train_opts *o, ember_method method, int threads, int *cand,
                      int *per_task) {
  *cand = method == EMBER_METHOD_MSE ? 1 : o->negatives + 1;
  if (method == EMBER_METHOD_LANGEVIN) *cand += o->uniform_negatives;
  int per = (EMBER_TASK_ROWS + *cand / 2) / *cand;
  if (per < 1) per = 1;
  if (per > o->batch) per = o->batch;
  if (o->batch >= threads && threads > 1) {
    int ntasks = (o->batch + per - 1) / per, T = threads, best = 0, best_load = 0;
    for (int r = ntasks / T * T; r <= (ntasks + T - 1) / T * T; r += T) {
      if (r < T) continue;
      int p = (o->batch + r - 1) / r, n = (o->batch + p - 1) / p;
      int load = p * ((n + T - 1) / T); /* thread 0's examples, at most */
      if (!best || load < best_load) best = p, best_load = load;
    }
    per = best;
  }
  *per_task = per;
}

/* What ember_trainer_create allocates for a net of shape s trained on dy y columns (an ardfo
 * model's prefix nets have a trainer each), item by item as it does. */
static uint64_t trainer_bytes(const ember_train_opts *o, ember_method method,
                              const ember_net_shape *s, int n, int x_dim, int dy, int threads) {
  int cand, per;
  task_size(o, method, threads, &cand, &per);
  const uint64_t rows = (uint64_t)per * cand, np = ember_net_shape_params(s), T = (uint64_t)threads;
  uint64_t f = T * np + 2 * np;                     /* gradients (thread 0's the sum), Adam */
  if (o->ema > 0.0f) f += np;                       /* the weights' average */
  if (o->spectral_norm) f += 2 * np;                /* raw weights, scratch */
  f += T * ((uint64_t)per * x_dim + rows * dy + 2 * rows * s->out); /* each task's candidates */
  f += (uint64_t)n * ((uint64_t)x_dim + dy);        /* the normalised data */
  const int langevin = method == EMBER_METHOD_LANGEVIN;
  uint64_t b = f * sizeof(float) + (uint64_t)o->batch * sizeof(int);
  b += T * ember_net_ws_bytes(s, (int)rows, per, langevin); /* activations */
  if (langevin)
    b += T * (rows * (2 * (uint64_t)dy + 1) * sizeof(float) + (uint64_t)per * sizeof(ember_rng) +
              ember_langevin_ws_bytes(per, o->negatives, dy));
  return b;
}

/* The model and every trainer, for options and sizes already checked. */
static uint64_t train_bytes(const ember_train_opts *o, int n, int x_dim, int y_dim, int threads) {
  size_t np = ember_model_params(o->method, x_dim, y_dim, o->arch, o->width, o->depth);
  uint64_t b = ((uint64_t)np * (o->spectral_norm ? 2 : 1) + 2 * (uint64_t)x_dim + 4 * (uint64_t)y_dim) *
               sizeof(float);
  if (o->val_split > 0.0f) /* the two parts of the split data (the trainers count all n rows) */
    b += (uint64_t)n * ((uint64_t)x_dim + y_dim) * sizeof(float) + (uint64_t)n * (sizeof(int) + 1);
  if (o->method != EMBER_METHOD_ARDFO) {
    ember_net_shape s = ember_model_net_shape(o->method, x_dim, y_dim, o->arch, o->width, o->depth);
    return b + trainer_bytes(o, o->method, &s, n, x_dim, y_dim, threads);
  }
  for (int j = 1; j <= y_dim; j++) { /* prefix net j: a dfo trainer on the first j columns */
    ember_net_shape s = ember_model_net_shape(EMBER_METHOD_DFO, x_dim, j, o->arch, o->width, o->depth);
    b += trainer_bytes(o, EMBER_METHOD_DFO, &s, n, x_dim, j, threads);
    if (j < y_dim) b += (uint64_t)n * j * sizeof(float); /* its copy of the y prefix */
  }
  return b;
}

static int too_big(const ember_train_opts *o, uint64_t bytes, const char *what, ember_err *err) {
  return ember_fail(err, EMBER_EINVAL,
                    "training a %s of width %d and depth %d with batch %d x %d negatives needs %s"
                    "%.3g GiB, more than the %d GiB a training run may hold (EMBER_MAX_TRAIN_BYTES)",
                    ember_arch_name(o->arch), o->width, o->depth, o->batch, o->negatives, what,
                    (double)bytes / (1 << 30), (int)(EMBER_MAX_TRAIN_BYTES >> 30));
}

int ember_train_memory(const ember_train_opts *o, int n, int x_dim, int y_dim, int threads,
                       size_t *params, uint64_t *bytes, ember_err *err) {
  int rc = ember_train_opts_check(o, err);
  if (rc < 0) return rc;
  if (n < 0 || threads < 1 || threads > 4096)
    return ember_fail(err, EMBER_EINVAL, "rows must be >= 0 and threads 1..4096, got %d and %d", n,
                      threads);
  if (x_dim < 1 || x_dim > EMBER_MAX_X_DIM || y_dim < 1 ||
      y_dim > (o->method == EMBER_METHOD_ARDFO ? EMBER_MAX_ARDFO_Y_DIM : EMBER_MAX_Y_DIM))
    return ember_fail(err, EMBER_EINVAL, "x_dim %d or y_dim %d is out of range", x_dim, y_dim);
  ember_net_shape s = ember_model_net_shape(o->method, x_dim, y_dim, o->arch, o->width, o->depth);
  if ((rc = ember_net_shape_check(&s, err)) < 0) return rc;
  if (params) *params = ember_model_params(o->method, x_dim, y_dim, o->arch, o->width, o->depth);
  if (bytes) *bytes = train_bytes(o, n, x_dim, y_dim, threads);
  return 0;
}

int ember_trainer_create(ember_trainer **out, ember_model *m, const ember_dataset *ds,
                         const ember_train_opts *o, ember_pool *pool, ember_err *err) {
  *out = NULL;
  ember_trainer *t = calloc(1, sizeof *t);
  if (!t) return ember_fail(err, EMBER_ENOMEM, "out of memory creating a trainer");
  if (m->method == EMBER_METHOD_ARDFO) {
    t->m = m;
    t->o = *o;
    int rc = create_ardfo(t, m, ds, o, pool, err);
    if (rc < 0) {
      ember_trainer_destroy(t);
      return rc;
    }
    *out = t;
    return 0;
  }
  int rc = EMBER_ENOMEM;
  t->m = m;
  t->ds = ds;
  t->o = *o;
  t->pool = pool;
  t->threads = ember_pool_threads(pool);
  if (o->keep_prefix >= m->y_dim && m->method != EMBER_METHOD_MSE) {
    free(t);
    return ember_fail(err, EMBER_EINVAL, "keep_prefix %d leaves no y coordinate to draw (y_dim %d)",
                      o->keep_prefix, m->y_dim);
  }
  task_size(o, m->method, t->threads, &t->cand, &t->per_task);
  size_t rows = (size_t)t->per_task * t->cand;
  size_t np = m->net.nparams;
  const size_t nenc = m->enc ? m->enc->nparams : 0;
  t->gstride = np + nenc;
  if (m->enc && (!ds->img || ds->img_h != m->enc->shape.h || ds->img_w != m->enc->shape.w ||
                 ds->img_c != m->enc->shape.c || ds->x_dim != m->enc->shape.extra)) {
    free(t);
    return ember_fail(err, EMBER_EINVAL,
                      "the model's encoder takes %dx%dx%d images and %d extra observations; the data "
                      "has %s%dx%dx%d and %d", m->enc->shape.h, m->enc->shape.w, m->enc->shape.c,
                      m->enc->shape.extra, ds->img ? "" : "no images, ", ds->img_h, ds->img_w, ds->img_c,
                      ds->x_dim);
  }
  if (!m->enc && ds->img) {
    free(t);
    return ember_fail(err, EMBER_EINVAL, "the data is images; the model has no encoder");
  }
  t->scratch_stride = (size_t)t->per_task * m->x_dim + rows * m->y_dim + 2 * rows * m->net.shape.out;
  t->ws = calloc((size_t)t->threads, sizeof *t->ws);
  t->tgrad = malloc((size_t)t->threads * t->gstride * sizeof(float));
  t->tloss = calloc((size_t)t->threads, sizeof *t->tloss);
  t->scratch = malloc((size_t)t->threads * t->scratch_stride * sizeof(float));
  t->xn = malloc((size_t)ds->n * m->x_dim * sizeof(float));
  t->yn = malloc((size_t)ds->n * m->y_dim * sizeof(float));
  t->batch_idx = malloc((size_t)o->batch * sizeof(int));
  if (!t->ws || !t->tgrad || !t->tloss || !t->scratch || !t->xn || !t->yn || !t->batch_idx) {
    ember_fail(err, EMBER_ENOMEM, "out of memory creating a trainer for %d rows", ds->n);
    goto fail;
  }
  for (int i = 0; i < t->threads; i++) {
    rc = ember_net_ws_init(&t->ws[i], &m->net.shape, (int)rows, t->per_task, err);
    if (rc < 0) goto fail;
  }
  if (m->enc) {
    const size_t ib = ember_encoder_image_bytes(&m->enc->shape);
    t->ews = calloc((size_t)t->threads, sizeof *t->ews);
    t->timg = malloc((size_t)t->threads * t->per_task * ib);
    t->tdfeat = malloc((size_t)t->threads * t->per_task * m->enc->nfeat * sizeof(float));
    rc = EMBER_ENOMEM;
    if (!t->ews || !t->timg || !t->tdfeat) {
      ember_fail(err, EMBER_ENOMEM, "out of memory for the encoder's training buffers");
      goto fail;
    }
    for (int i = 0; i < t->threads; i++)
      if ((rc = ember_encoder_ws_init(&t->ews[i], &m->enc->shape, t->per_task, err)) < 0) goto fail;
    if ((rc = ember_adam_init(&t->eopt, nenc, o->lr, err)) < 0) goto fail;
    t->eopt.decay = o->lr_decay;
    t->eopt.decay_steps = o->decay_steps;
    if (o->ema > 0.0f) {
      if (!(t->eavg = malloc(nenc * sizeof(float)))) {
        rc = ember_fail(err, EMBER_ENOMEM, "out of memory for the encoder's moving average");
        goto fail;
      }
      memcpy(t->eavg, m->enc->params, nenc * sizeof(float));
    }
  }
  if (m->method == EMBER_METHOD_LANGEVIN) {
    t->lws = calloc((size_t)t->threads, sizeof *t->lws);
    t->pen = malloc((size_t)t->threads * t->per_task * t->cand * (2 * m->y_dim + 1) * sizeof(float));
    t->rngs = malloc((size_t)t->threads * t->per_task * sizeof *t->rngs);
    rc = EMBER_ENOMEM;
    if (!t->lws || !t->pen || !t->rngs) {
      ember_fail(err, EMBER_ENOMEM, "out of memory for Langevin chains");
      goto fail;
    }
    for (int i = 0; i < t->threads; i++) {
      if ((rc = ember_langevin_ws_init(&t->lws[i], t->per_task, o->negatives, m->y_dim, err)) < 0) goto fail;
      if ((rc = ember_net_ws_enable_tangent(&t->ws[i], &m->net.shape, err)) < 0) goto fail;
    }
  }
  if (!o->spectral_norm && m->sn_w) { /* training without it: the state would go stale */
    free(m->sn_w);
    m->sn_w = m->sn_uv = NULL;
  }
  if (o->spectral_norm) {
    size_t biggest = 0;
    for (int l = 0; l < m->net.nlayers; l++) {
      const ember_dense *d = &m->net.layers[l];
      if ((size_t)d->out * d->in > biggest) biggest = (size_t)d->out * d->in;
    }
    t->raw = malloc(np * sizeof(float));
    t->sn_sigma = malloc((size_t)m->net.nlayers * sizeof(float));
    t->sn_tmp = malloc(biggest * sizeof(float));
    rc = EMBER_ENOMEM;
    if (!t->raw || !t->sn_sigma || !t->sn_tmp) {
      ember_fail(err, EMBER_ENOMEM, "out of memory for spectral normalisation");
      goto fail;
    }
    /* a model without the state starts from its weights; one with it (a checkpoint trained
     * with spectral normalisation) goes on from its raw weights and vectors */
    if ((rc = ember_model_sn_enable(m, err)) < 0) goto fail;
    memcpy(t->raw, m->net.params, np * sizeof(float));
    const float *pw = m->sn_w;
    for (int l = 0; l < m->net.nlayers; l++) {
      if (!ember_sn_layer(&m->net, l)) continue;
      const ember_dense *d = &m->net.layers[l];
      memcpy(t->raw + (d->w - m->net.params), pw, (size_t)d->out * d->in * sizeof(float));
      pw += (size_t)d->out * d->in;
    }
  }
  rc = ember_adam_init(&t->opt, np, o->lr, err);
  if (rc < 0) goto fail;
  if (o->ema > 0.0f) {
    if (!(t->avg = malloc(np * sizeof(float)))) {
      rc = ember_fail(err, EMBER_ENOMEM, "out of memory for the weights' moving average");
      goto fail;
    }
    memcpy(t->avg, t->raw ? t->raw : m->net.params, np * sizeof(float));
  }
  t->opt.decay = o->lr_decay;
  t->opt.decay_steps = o->decay_steps;
  if (m->enc) { /* the extras, normalised, after feature columns that each step fills */
    const int F = m->enc->nfeat, E = m->enc->shape.extra;
    for (size_t r = 0; r < (size_t)ds->n; r++) {
      float *xr = t->xn + r * m->x_dim;
      for (int j = 0; j < F; j++) xr[j] = 0.0f;
      for (int j = 0; j < E; j++) xr[F + j] = (ds->x[r * E + j] - m->x_mean[F + j]) / m->x_std[F + j];
    }
  } else {
    ember_model_norm_x(m, ds->x, ds->n, t->xn);
  }
  ember_model_norm_y(m, ds->y, ds->n, t->yn);
  *out = t;
  return 0;
fail:
  ember_trainer_destroy(t);
  return rc;
}

void ember_trainer_destroy(ember_trainer *t) {
  if (!t) return;
  for (int j = 0; j < t->nsub; j++) {
    ember_trainer_destroy(t->sub[j]);
    free(t->ycols[j]);
  }
  free(t->sub);
  free(t->ycols);
  free(t->views);
  free(t->data);
  free(t->raw);
  free(t->avg);
  free(t->sn_sigma);
  free(t->sn_tmp);
  if (t->lws)
    for (int i = 0; i < t->threads; i++) ember_langevin_ws_free(&t->lws[i]);
  free(t->lws);
  free(t->pen);
  free(t->rngs);
  if (t->ews)
    for (int i = 0; i < t->threads; i++) ember_encoder_ws_free(&t->ews[i]);
  free(t->ews);
  free(t->timg);
  free(t->tdfeat);
  free(t->eavg);
  if (t->eopt.m) ember_adam_free(&t->eopt);
  if (t->ws)
    for (int i = 0; i < t->threads; i++) ember_net_ws_free(&t->ws[i]);
  free(t->ws);
  ember_adam_free(&t->opt);
  free(t->tgrad);
  free(t->tloss);
  free(t->scratch);
  free(t->xn);
  free(t->yn);
  free(t->batch_idx);
  free(t);
}

/* The energy and dE/dy of a task's counter-examples for its examples' chains: the net's
 * forward and backward on the task's workspace (hx already fused). */
typedef struct chain_ctx {
  const ember_net *net;
  ember_net_ws *ws;
  const float *ones;
} chain_ctx;

static void chain_energy(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  chain_ctx *c = ctx;
  ember_net_forward(c->net, c->ws, c->ws->hx, y, nq, n, e);
  ember_net_backward(c->net, c->ws, NULL, y, nq, n, c->ones, NULL, dy);
}

/* Method C for one task: chains move the counter-examples, the penalty's gradient goes through
 * the tangent pass at their final states, then InfoNCE as for Method A. Returns the loss sum. */
static double langevin_task(ember_trainer *t, int thread, int i0, int ne, float *xb, float *yb,
                            float *e, float *de) {
  const ember_model *m = t->m;
  /* candidates per example: [true y, M chain states, U uniform counter-examples] */
  const int dy = m->y_dim, c = t->cand, M = t->o.negatives, B = t->o.batch;
  ember_net_ws *ws = &t->ws[thread];
  ember_langevin_ws *lws = &t->lws[thread];
  float *grad = t->tgrad + (size_t)thread * t->gstride;
  ember_rng *rngs = t->rngs + (size_t)thread * t->per_task;
  /* (per_task * c) rows each: dir (dy), dt (1), dE/dy (dy) */
  float *dir = t->pen + (size_t)thread * t->per_task * c * (2 * dy + 1), *dt = dir + (size_t)t->per_task * c * dy;
  for (int k = 0; k < ne; k++)
    ember_rng_seed(&rngs[k], t->o.seed, (uint64_t)t->pass_step * (uint64_t)B + (uint64_t)(i0 + k));
  /* de doubles as the ones vector for dE/dy: it is rewritten by the loss below */
  for (int r = 0; r < ne * M; r++) de[r] = 1.0f;
  chain_ctx cc = {&m->net, ws, de};
  /* the final states are evaluated below, in the InfoNCE layout */
  const ember_langevin_ctl ctl = {.skip_final = 1};
  ember_langevin_run(lws, chain_energy, &cc, ne, m->y_lo, m->y_hi, &t->o.langevin, M, &ctl, rngs, NULL, NULL, NULL);
  /* One forward pass over [positive, final negatives] serves the penalty and InfoNCE: the
   * loss first (it needs e, the tangent pass overwrites a buffer), then dE/dy of the negatives
   * (dout 1 on them, 0 on the positives), the penalty's tangent and its reverse, and the
   * InfoNCE backward, all on the same activations. */
  for (int k = 0; k < ne; k++) {
    float *yk = yb + (size_t)k * c * dy;
    memcpy(yk + dy, lws->y + (size_t)k * M * dy, (size_t)M * dy * sizeof(float));
    for (int j = 1 + M; j < c; j++) /* from the example's stream, after its chains */
      for (int a = 0; a < dy; a++)
        yk[(size_t)j * dy + a] = m->y_lo[a] + (m->y_hi[a] - m->y_lo[a]) * ember_rng_uniform(&rngs[k]);
  }
  ember_net_forward(&m->net, ws, ws->hx, yb, ne, c, e);
  double total = ember_infonce(e, ne, c, t->o.temperature, 1.0f / (float)B, de);
  if (t->o.penalty_weight > 0.0f) {
    const int rows = ne * c;
    float *sel = e, *g17 = dt + (size_t)t->per_task * c; /* e is free once the loss is taken */
    for (int r = 0; r < rows; r++) sel[r] = r % c >= 1 && r % c <= M ? 1.0f : 0.0f;
    ember_net_backward(&m->net, ws, NULL, yb, ne, c, sel, NULL, g17);
    float scale = t->o.penalty_weight / ((float)B * M);
    double pen = 0.0;
    for (int k = 0; k < ne; k++) {
      size_t r0 = (size_t)k * c;
      for (int a = 0; a < dy; a++) dir[r0 * dy + a] = 0.0f;
      dt[r0] = 0.0f;
      for (int j = 1 + M; j < c; j++) { /* uniform counter-examples: no penalty */
        for (int a = 0; a < dy; a++) dir[(r0 + j) * dy + a] = 0.0f;
        dt[r0 + j] = 0.0f;
      }
      pen += ember_grad_penalty(g17 + (r0 + 1) * dy, M, dy, t->o.penalty_margin, scale,
                                dir + (r0 + 1) * dy, dt + r0 + 1);
    }
    total += t->o.penalty_weight / (double)M * pen;
    ember_net_tangent(&m->net, ws, dir, ne, c, e);
    ember_net_tangent_backward(&m->net, ws, dir, ne, c, dt, grad);
  }
  ember_net_backward(&m->net, ws, xb, yb, ne, c, de, grad, NULL);
  return total;
}

/* Method B's prefix nets draw counter-examples from a mixture q = (1 - s) U(box) + s N(prefix;
 * true prefix, noise^2) U(y_j). InfoNCE against a non-uniform proposal learns E + log q unless
 * the logits are corrected: logits = -E/T - log q(y), for the true y and the counter-examples
 * alike (ranking NCE with a known proposal), so E_j still estimates -log p(y_1..y_j | x) up to
 * a function of x and energies stay comparable across prefixes, as Algorithm 2's resampling
 * needs. Adds T log q to each candidate's energy; the gradient is unchanged. */
static void proposal_offsets(const ember_trainer *t, const float *yb, int ne, float *e) {
  const ember_model *m = t->m;
  const int dy = m->y_dim, c = t->cand, keep = t->o.keep_prefix;
  const double s = t->o.keep_prefix_share, sd = t->o.prefix_noise, temp = t->o.temperature;
  double log_vol = 0.0, log_vol_rest = 0.0;
  for (int a = 0; a < dy; a++) {
    log_vol += log((double)(m->y_hi[a] - m->y_lo[a]));
    if (a >= keep) log_vol_rest += log((double)(m->y_hi[a] - m->y_lo[a]));
  }
  const double log_norm = -0.5 * keep * log(2.0 * 3.14159265358979323846 * sd * sd);
  for (int k = 0; k < ne; k++) {
    const float *tk = yb + (size_t)k * c * dy;
    for (int j = 0; j < c; j++) {
      const float *yj = tk + (size_t)j * dy;
      int inside = 1;
      for (int a = 0; a < dy; a++) inside &= yj[a] >= m->y_lo[a] && yj[a] <= m->y_hi[a];
      double z2 = 0.0;
      for (int a = 0; a < keep; a++) z2 += (double)(yj[a] - tk[a]) * (yj[a] - tk[a]);
      double lu = inside && s < 1.0 ? log1p(-s) - log_vol : -INFINITY;
      double lg = log(s) + log_norm - 0.5 * z2 / (sd * sd) - log_vol_rest;
      double hi = lu > lg ? lu : lg;
      double lq = hi + log(exp(lu - hi) + exp(lg - hi));
      e[(size_t)k * c + j] += (float)(temp * lq);
    }
  }
}

static void step_task(void *ctx, int task, int thread) {
  ember_trainer *t = ctx;
  const ember_model *m = t->m;
  const int dx = m->x_dim, dy = m->y_dim, c = t->cand, B = t->o.batch;
  int i0 = task * t->per_task;
  int ne = B - i0 < t->per_task ? B - i0 : t->per_task;
  float *xb, *yb, *e, *de;
  thread_scratch(t, thread, &xb, &yb, &e, &de);
  ember_net_ws *ws = &t->ws[thread];
  float *grad = t->tgrad + (size_t)thread * t->gstride;

  for (int k = 0; k < ne; k++) {
    int row = t->batch_idx[i0 + k];
    memcpy(xb + (size_t)k * dx, t->xn + (size_t)row * dx, (size_t)dx * sizeof(float));
    float *yk = yb + (size_t)k * c * dy;
    memcpy(yk, t->yn + (size_t)row * dy, (size_t)dy * sizeof(float));
    if (c > 1 && m->method != EMBER_METHOD_LANGEVIN) { /* uniform, past the kept prefix */
      ember_rng rng;
      ember_rng_seed(&rng, t->o.seed, (uint64_t)t->pass_step * (uint64_t)B + (uint64_t)(i0 + k));
      /* the first `share` of them stay near the true prefix (Gaussian, prefix_noise); the rest
       * are uniform everywhere */
      const int kept = t->o.keep_prefix > 0 ? (int)lroundf(t->o.keep_prefix_share * (float)(c - 1)) : 0;
      for (int j = 1; j < c; j++) {
        const int keep = j <= kept ? t->o.keep_prefix : 0;
        for (int a = 0; a < keep; a++)
          yk[(size_t)j * dy + a] = yk[a] + (t->o.prefix_noise > 0.0f ? t->o.prefix_noise * ember_rng_normal(&rng) : 0.0f);
        for (int a = keep; a < dy; a++)
          yk[(size_t)j * dy + a] = m->y_lo[a] + (m->y_hi[a] - m->y_lo[a]) * ember_rng_uniform(&rng);
      }
    }
  }
  const ember_encoder *enc = m->enc;
  uint8_t *imgs = NULL;
  float *dfeat = NULL;
  if (enc) { /* the task's images, gathered, encoded into x's first columns */
    const size_t ib = ember_encoder_image_bytes(&enc->shape);
    const int F = enc->nfeat;
    imgs = t->timg + (size_t)thread * t->per_task * ib;
    dfeat = t->tdfeat + (size_t)thread * t->per_task * F;
    for (int k = 0; k < ne; k++) memcpy(imgs + (size_t)k * ib, t->ds->img + (size_t)t->batch_idx[i0 + k] * ib, ib);
    ember_encoder_forward(enc, &t->ews[thread], imgs, ne, dfeat);
    for (int k = 0; k < ne; k++) memcpy(xb + (size_t)k * dx, dfeat + (size_t)k * F, sizeof(float) * F);
  }
  ember_net_fuse_x(&m->net, xb, ne, ws->hx);
  if (m->method == EMBER_METHOD_LANGEVIN) {
    t->tloss[thread] += langevin_task(t, thread, i0, ne, xb, yb, e, de);
  } else if (m->method == EMBER_METHOD_MSE) {
    ember_net_forward(&m->net, ws, ws->hx, NULL, ne, 1, e);
    float scale = 1.0f / ((float)B * dy);
    t->tloss[thread] += ember_mse(e, yb, ne, dy, scale, de) / dy;
    ember_net_backward(&m->net, ws, xb, NULL, ne, 1, de, grad, NULL);
  } else {
    ember_net_forward(&m->net, ws, ws->hx, yb, ne, c, e);
    if (t->o.keep_prefix > 0 && t->o.keep_prefix_share > 0.0f && t->o.prefix_noise > 0.0f)
      proposal_offsets(t, yb, ne, e);
    t->tloss[thread] += ember_infonce(e, ne, c, t->o.temperature, 1.0f / (float)B, de);
    ember_net_backward(&m->net, ws, xb, yb, ne, c, de, grad, NULL);
  }
  if (enc) { /* every branch ended with a backward into grad: x's gradient, into the encoder */
    ember_net_backward_x(&m->net, ws, ne, enc->nfeat, dfeat);
    ember_encoder_backward(enc, &t->ews[thread], imgs, ne, dfeat, grad + m->net.nparams);
  }
}

/* A task of ember_trainer_val_loss: per_task validation rows, their candidates built as a
 * step builds them (the true y first) but with every counter-example uniform, from the row's
 * own stream; the loss sum goes to the thread's tloss. */
static void val_task(void *ctx, int task, int thread) {
  ember_trainer *t = ctx;
  const ember_model *m = t->m;
  const ember_dataset *v = t->vds;
  const int dx = m->x_dim, dy = m->y_dim, c = t->cand;
  const int i0 = task * t->per_task, ne = t->vrows - i0 < t->per_task ? t->vrows - i0 : t->per_task;
  float *xb, *yb, *e, *de;
  thread_scratch(t, thread, &xb, &yb, &e, &de);
  ember_net_ws *ws = &t->ws[thread];
  ember_model_norm_x(m, v->x + (size_t)i0 * dx, ne, xb);
  for (int k = 0; k < ne; k++) {
    float *yk = yb + (size_t)k * c * dy;
    ember_model_norm_y(m, v->y + (size_t)(i0 + k) * dy, 1, yk);
    if (c == 1) continue;
    ember_rng rng;
    ember_rng_seed(&rng, t->o.seed, EMBER_VAL_STREAM + (uint64_t)(i0 + k));
    for (int j = 1; j < c; j++)
      for (int a = 0; a < dy; a++)
        yk[(size_t)j * dy + a] = m->y_lo[a] + (m->y_hi[a] - m->y_lo[a]) * ember_rng_uniform(&rng);
  }
  ember_net_fuse_x(&m->net, xb, ne, ws->hx);
  if (m->method == EMBER_METHOD_MSE) {
    ember_net_forward(&m->net, ws, ws->hx, NULL, ne, 1, e);
    t->tloss[thread] += ember_mse(e, yb, ne, dy, 0.0f, NULL) / dy;
  } else {
    ember_net_forward(&m->net, ws, ws->hx, yb, ne, c, e);
    t->tloss[thread] += ember_infonce(e, ne, c, t->o.temperature, 0.0f, NULL);
  }
}

int ember_trainer_val_loss(ember_trainer *t, const ember_dataset *val, int rows, double *loss,
                           double *chance, ember_err *err) {
  if (t->nsub > 0) /* Method B: the net of whole y values */
    return ember_trainer_val_loss(t->sub[t->nsub - 1], val, rows, loss, chance, err);
  const ember_model *m = t->m;
  *loss = *chance = NAN;
  if (m->enc)
    return ember_fail(err, EMBER_ENOTSUP, "validation of image models is not supported yet");
  if (!val || val->x_dim != m->x_dim || val->y_dim != m->y_dim || !val->x || !val->y)
    return ember_fail(err, EMBER_EINVAL, "validation data has x_dim %d and y_dim %d; the model has %d and %d",
                      val ? val->x_dim : 0, val ? val->y_dim : 0, m->x_dim, m->y_dim);
  if (rows < 1 || rows > val->n)
    return ember_fail(err, EMBER_EINVAL, "validation rows must be 1..%d, got %d", val->n, rows);
  t->vds = val;
  t->vrows = rows;
  memset(t->tloss, 0, (size_t)t->threads * sizeof(double));
  ember_pool_run(t->pool, (rows + t->per_task - 1) / t->per_task, val_task, t);
  t->vds = NULL;
  double total = 0.0;
  for (int k = 0; k < t->threads; k++) total += t->tloss[k];
  *loss = total / rows;
  if (m->method == EMBER_METHOD_MSE) { /* always answering the training data's mean: y_n = 0 */
    double sq = 0.0;
    for (size_t i = 0; i < (size_t)rows * m->y_dim; i++) {
      double z = ((double)val->y[i] - m->y_mean[i % m->y_dim]) / m->y_std[i % m->y_dim];
      sq += z * z;
    }
    *chance = sq / ((double)rows * m->y_dim);
  } else {
    *chance = log((double)t->cand);
  }
  if (!isfinite(*loss) || !isfinite(*chance))
    return ember_fail(err, EMBER_ERANGE, "the validation loss is not finite (%g; chance level %g)", *loss, *chance);
  return 0;
}

const float *ember_trainer_grad(ember_trainer *t, int64_t step, double *loss) {
  if (t->nsub > 0) { /* Method B: one gradient per prefix net, not one buffer */
    *loss = NAN;
    return NULL;
  }
  const size_t np = t->gstride;
  ember_rng rng;
  ember_rng_seed(&rng, t->o.seed, EMBER_BATCH_STREAM + (uint64_t)step);
  for (int i = 0; i < t->o.batch; i++) t->batch_idx[i] = (int)ember_rng_below(&rng, (uint32_t)t->ds->n);
  memset(t->tgrad, 0, (size_t)t->threads * np * sizeof(float));
  memset(t->tloss, 0, (size_t)t->threads * sizeof(double));
  t->pass_step = step;
  int ntasks = (t->o.batch + t->per_task - 1) / t->per_task;
  ember_pool_run(t->pool, ntasks, step_task, t);
  double total = 0.0;
  for (int k = 0; k < t->threads; k++) total += t->tloss[k];
  for (int k = 1; k < t->threads; k++) {
    const float *g = t->tgrad + (size_t)k * np;
    for (size_t i = 0; i < np; i++) t->tgrad[i] += g[i];
  }
  *loss = total / t->o.batch;
  return t->tgrad;
}

/* Spectral normalisation of the hidden layers (ember_sn_layer): `iters` power iterations per layer on the raw weights (one per step;
 * none to re-normalise after an update), and the model's weights set to raw / sigma (biases
 * as they are). */
static void sn_refresh(ember_trainer *t, int iters) {
  ember_model *m = t->m;
  ember_net *net = &m->net;
  memcpy(net->params, t->raw, net->nparams * sizeof(float));
  float *uvp = m->sn_uv, *pw = m->sn_w;
  for (int l = 0; l < net->nlayers; l++) {
    if (!ember_sn_layer(net, l)) continue;
    const ember_dense *d = &net->layers[l];
    const float *raw_w = t->raw + (d->w - net->params);
    size_t n = (size_t)d->out * d->in;
    t->sn_sigma[l] = ember_sn_power_iteration(raw_w, d->out, d->in, uvp, uvp + d->out, iters);
    ember_sn_apply(raw_w, d->out, d->in, t->sn_sigma[l], d->w);
    memcpy(pw, raw_w, n * sizeof(float));
    uvp += d->out + d->in;
    pw += n;
  }
}

/* the gradient with respect to the normalised weights -> with respect to the raw ones */
static void sn_backward(ember_trainer *t) {
  ember_net *net = &t->m->net;
  const float *uvp = t->m->sn_uv;
  for (int l = 0; l < net->nlayers; l++) {
    if (!ember_sn_layer(net, l)) continue;
    const ember_dense *d = &net->layers[l];
    size_t off = (size_t)(d->w - net->params), n = (size_t)d->out * d->in;
    memset(t->sn_tmp, 0, n * sizeof(float));
    ember_sn_backward(t->raw + off, d->out, d->in, uvp, uvp + d->out, t->sn_sigma[l], t->tgrad + off, t->sn_tmp);
    memcpy(t->tgrad + off, t->sn_tmp, n * sizeof(float));
    uvp += d->out + d->in;
  }
}

int ember_trainer_step(ember_trainer *t, float *loss) {
  if (t->nsub > 0) { /* Method B: every prefix net, the loss their mean */
    double total = 0.0;
    int rc = 0;
    for (int j = 0; j < t->nsub; j++) {
      float l = 0.0f;
      if (ember_trainer_step(t->sub[j], &l) < 0) rc = EMBER_ERANGE;
      total += l;
    }
    t->step++;
    if (loss) *loss = (float)(total / t->nsub);
    return rc;
  }
  double l;
  if (t->raw) sn_refresh(t, 1);
  ember_trainer_grad(t, t->step, &l);
  float *w = t->raw ? t->raw : t->m->net.params;
  if (t->raw) sn_backward(t);
  ember_adam_step(&t->opt, w, t->tgrad);
  if (t->m->enc) ember_adam_step(&t->eopt, t->m->enc->params, t->tgrad + t->m->net.nparams);
  if (t->raw) sn_refresh(t, 0); /* the model always holds normalised weights */
  if (t->avg) {
    /* TensorFlow's ExponentialMovingAverage with num_updates: a short run is not dominated by
     * the initial weights */
    float d = (float)(1 + t->step) / (float)(10 + t->step);
    if (d > t->o.ema) d = t->o.ema;
    const float a = 1.0f - d;
    for (size_t i = 0; i < t->m->net.nparams; i++) t->avg[i] += a * (w[i] - t->avg[i]);
    for (size_t i = 0; t->eavg && i < t->m->enc->nparams; i++)
      t->eavg[i] += a * (t->m->enc->params[i] - t->eavg[i]);
  }
  t->step++;
  if (loss) *loss = (float)l;
  return isfinite(l) ? 0 : EMBER_ERANGE;
}

void ember_trainer_swap_average(ember_trainer *t) {
  for (int j = 0; j < t->nsub; j++) ember_trainer_swap_average(t->sub[j]);
  if (!t->avg) return;
  for (size_t i = 0; t->eavg && i < t->m->enc->nparams; i++) {
    float v = t->m->enc->params[i];
    t->m->enc->params[i] = t->eavg[i];
    t->eavg[i] = v;
  }
  float *w = t->raw ? t->raw : t->m->net.params;
  for (size_t i = 0; i < t->m->net.nparams; i++) {
    float v = w[i];
    w[i] = t->avg[i];
    t->avg[i] = v;
  }
  /* normalised weights from the swapped raw ones with the current u, v: swapping back gives the
   * same weights as before, and a saved model is consistent (weight = weight_orig / u^T W v) */
  if (t->raw) sn_refresh(t, 0);
}

float ember_trainer_lr(const ember_trainer *t) {
  return t->nsub > 0 ? ember_trainer_lr(t->sub[0]) : ember_adam_lr(&t->opt);
}

double ember_train_step_flops(const ember_model *m, const ember_train_opts *o) {
  double rows = (double)o->batch * (m->method == EMBER_METHOD_MSE ? 1 : o->negatives + 1 +
                                    (m->method == EMBER_METHOD_LANGEVIN ? o->uniform_negatives : 0));
  double fwd = 2.0 * ember_net_row_macs(&m->net.shape);
  for (int j = 0; j < m->nar; j++) fwd += 2.0 * ember_net_row_macs(&m->ar[j].shape); /* ardfo */
  if (m->method == EMBER_METHOD_MSE) fwd += 2.0 * m->x_dim * m->net.shape.width;
  /* a backward pass of a one-output ResNet does no GEMM for the last block's second layer
   * (rank one, net.c): one width x width product fewer for the input gradient, and one more
   * for the weight gradient */
  const ember_net_shape *s = &m->net.shape;
  double skip = s->arch == EMBER_ARCH_RESNET && s->out == 1 ? 2.0 * s->width * s->width * (1 + m->nar) : 0.0;
  double bwd_in = fwd - skip, bwd_full = 2.0 * (fwd - skip);
  double flops = (fwd + bwd_full) * rows;
  /* an image model encodes each example once: forward, and backward for weights and inputs */
  if (m->enc) flops += 3.0 * 2.0 * ember_encoder_macs(&m->enc->shape) * o->batch;
  /* Langevin: each chain step a forward and an input backward of the negatives; the final
   * states share InfoNCE's pass; the penalty adds an input backward, the tangent (a forward's
   * worth) and its reverse (a full backward's) over all candidates */
  if (m->method == EMBER_METHOD_LANGEVIN) {
    flops += (double)o->batch * o->negatives * (fwd + bwd_in) * o->langevin.steps;
    if (o->penalty_weight > 0.0f) flops += (bwd_in + fwd + bwd_full) * rows;
  }
  return flops;
}

/* ---- the whole run ---------------------------------------------------------------------- */

static int check_data(const ember_dataset *ds, ember_err *err) {
  if (ds->n < 1) return ember_fail(err, EMBER_EINVAL, "the dataset has no rows");
  if (ds->img && (ds->x_dim < 0 || (ds->x_dim > 0 && !ds->x) || ds->y_dim < 1 || !ds->y))
    return ember_fail(err, EMBER_EINVAL, "training needs y columns (y_dim %d)", ds->y_dim);
  if (!ds->img && (ds->x_dim < 1 || ds->y_dim < 1 || !ds->x || !ds->y))
    return ember_fail(err, EMBER_EINVAL, "training needs x and y columns (x_dim %d, y_dim %d)",
                      ds->x_dim, ds->y_dim);
  for (size_t i = 0; i < (size_t)ds->n * ds->x_dim; i++)
    if (!isfinite(ds->x[i]))
      return ember_fail(err, EMBER_ERANGE, "x[%zu,%zu] is not finite", i / ds->x_dim, i % ds->x_dim);
  for (size_t i = 0; i < (size_t)ds->n * ds->y_dim; i++)
    if (!isfinite(ds->y[i]))
      return ember_fail(err, EMBER_ERANGE, "y[%zu,%zu] is not finite", i / ds->y_dim, i % ds->y_dim);
  return 0;
}

/* Validation data of the run: opts.val (checked against ds), or ds split by opts.val_split into
 * *train_part and *val_part (then ds and val point at them). */
static int prepare_val(const ember_train_opts *o, const ember_dataset **ds, const ember_dataset **val,
                       ember_dataset *train_part, ember_dataset *val_part, ember_err *err) {
  *val = o->val;
  if (o->val) {
    if (o->val->x_dim != (*ds)->x_dim || o->val->y_dim != (*ds)->y_dim)
      return ember_fail(err, EMBER_EINVAL, "validation data has %d x and %d y columns; the training data has %d and %d",
                        o->val->x_dim, o->val->y_dim, (*ds)->x_dim, (*ds)->y_dim);
    ember_err e;
    if (check_data(o->val, &e) < 0) return ember_fail(err, e.code, "validation data: %s", e.msg);
    return 0;
  }
  if (!(o->val_split > 0.0f)) return 0;
  if ((*ds)->n < 2)
    return ember_fail(err, EMBER_EINVAL, "holding out a share of the data for validation needs at least 2 rows, got %d",
                      (*ds)->n);
  int rc = ember_dataset_split(*ds, o->val_split, o->seed, train_part, val_part, err);
  if (rc < 0) return rc;
  *ds = train_part;
  *val = val_part;
  return 0;
}

int ember_train(const ember_dataset *ds, const ember_train_opts *o, ember_pool *pool,
                ember_model *out, ember_err *err) {
  ember_trainer *t = NULL;
  ember_dataset train_part, val_part;
  memset(&train_part, 0, sizeof train_part);
  memset(&val_part, 0, sizeof val_part);
  const ember_dataset *val = NULL;
  memset(out, 0, sizeof *out);
  uint64_t bytes = 0;
  ember_encoder_shape es;
  int x_dim = ds->x_dim;
  int rc = ember_train_opts_check(o, err);
  if (rc == 0) rc = check_data(ds, err);
  if (rc == 0 && ds->img) { /* image data: the encoder's features and the extras are x */
    if (o->encoder) {
      es = *o->encoder;
    } else {
      memset(&es, 0, sizeof es);
      ember_conv_spec_parse(EMBER_ENCODER_DEFAULT_CONV, &es, NULL);
      es.head = EMBER_HEAD_SOFTARGMAX;
    }
    es.h = ds->img_h, es.w = ds->img_w, es.c = ds->img_c, es.extra = ds->x_dim;
    if (o->method == EMBER_METHOD_ARDFO)
      rc = ember_fail(err, EMBER_ENOTSUP, "image models are dfo, langevin or mse; ardfo is not supported");
    else if (o->val || o->val_split > 0.0f)
      rc = ember_fail(err, EMBER_ENOTSUP, "validation of image models is not supported yet");
    else if ((rc = ember_encoder_shape_check(&es, err)) == 0)
      x_dim = ember_encoder_features(&es) + es.extra;
  }
  if (rc == 0) rc = ember_train_memory(o, ds->n, x_dim, ds->y_dim, ember_pool_threads(pool), NULL, &bytes, err);
  if (rc == 0 && ds->img) bytes += (uint64_t)ember_pool_threads(pool) * ember_encoder_ws_bytes(&es, 1024);
  if (rc == 0 && bytes > EMBER_MAX_TRAIN_BYTES) rc = too_big(o, bytes, "", err);
  if (rc == 0) rc = prepare_val(o, &ds, &val, &train_part, &val_part, err);
  if (rc == 0) rc = ember_model_init(out, o->method, x_dim, ds->y_dim, o->arch, o->width, o->depth, err);
  if (rc == 0 && ds->img && (rc = ember_model_set_encoder(out, &es, err)) < 0) ember_model_free(out);
  if (rc < 0) {
    ember_dataset_free(&train_part);
    ember_dataset_free(&val_part);
    return rc;
  }
  ember_train_fit_stats(out, ds, o->bound_margin);
  /* the data's column names, if it has them, are the model's signature (an image model's x
   * keeps x0..: its features have no names in the data) */
  rc = ember_model_set_names(out, out->enc ? NULL : (const char *const *)ds->x_names,
                             (const char *const *)ds->y_names, err);
  if (rc < 0) goto fail;
  ember_rng rng;
  ember_rng_seed(&rng, o->seed, EMBER_INIT_STREAM);
  ember_net_init_params(&out->net, &rng);
  for (int j = 0; j < out->nar; j++) ember_net_init_params(&out->ar[j], &rng);
  if (out->enc) ember_encoder_init_params(out->enc, &rng);
  out->infer = o->infer;
  out->train_seed = o->seed;
  out->train_batch = o->batch;
  out->train_negatives = o->method == EMBER_METHOD_MSE ? 0 : o->negatives;
  out->train_lr = o->lr;
  out->train_temperature = o->temperature;
  out->train_ema = o->ema;
  if (o->method == EMBER_METHOD_ARDFO) {
    out->train_prefix_share = o->keep_prefix_share;
    out->train_prefix_noise = o->prefix_noise;
  }
  if (o->method == EMBER_METHOD_LANGEVIN) {
    out->infer.langevin = o->langevin;
    out->infer.langevin.steps = 2 * o->langevin.steps; /* inference chains: twice training's */
    out->penalty_margin = o->penalty_margin;
    out->penalty_weight = o->penalty_weight;
  }
  /* defaults beyond what a request may cost: the checkpoint would be refused after training */
  if ((rc = ember_model_check_defaults(out, err)) < 0) goto fail;

  rc = ember_trainer_create(&t, out, ds, o, pool, err);
  if (rc < 0) goto fail;
  float window[EMBER_LOSS_WINDOW];
  double wsum = 0.0;
  double t0 = ember_now();
  const int64_t val_every = o->val_every > 0 ? o->val_every : (o->steps / 20 > 0 ? o->steps / 20 : 1);
  double val_loss = NAN, val_chance = NAN;
  int val_rows = 0;
  for (int64_t s = 0; s < o->steps; s++) {
    float lr = ember_trainer_lr(t), loss;
    if (ember_trainer_step(t, &loss) < 0) {
      rc = ember_fail(err, EMBER_ERANGE,
                      "training diverged at step %lld (loss is not finite); try a lower --lr",
                      (long long)s);
      goto fail;
    }
    int slot = (int)(s % EMBER_LOSS_WINDOW);
    if (s >= EMBER_LOSS_WINDOW) wsum -= window[slot];
    window[slot] = loss;
    wsum += loss;
    int64_t nwin = s + 1 < EMBER_LOSS_WINDOW ? s + 1 : EMBER_LOSS_WINDOW;
    out->train_steps = s + 1;
    out->train_loss = (float)(wsum / nwin);
    if (o->snapshot && o->snapshot_every > 0 && (s + 1) % o->snapshot_every == 0 && s + 1 < o->steps) {
      ember_trainer_swap_average(t);
      int stop = o->snapshot(o->snapshot_ctx, out, s + 1);
      ember_trainer_swap_average(t);
      if (stop) {
        rc = ember_fail(err, EMBER_ECANCELED, "training cancelled at step %lld", (long long)(s + 1));
        goto fail;
      }
    }
    if (val && ((s + 1) % val_every == 0 || s + 1 == o->steps)) {
      /* the model as it would be returned now (averaged weights with ema); every row at the end */
      int rows = s + 1 == o->steps || val->n < EMBER_VAL_PROGRESS_ROWS ? val->n : EMBER_VAL_PROGRESS_ROWS;
      ember_trainer_swap_average(t);
      rc = ember_trainer_val_loss(t, val, rows, &val_loss, &val_chance, err);
      ember_trainer_swap_average(t);
      if (rc < 0) goto fail;
      val_rows = rows;
    }
    if (o->progress) {
      ember_train_progress p;
      p.val_loss = val_loss;
      p.val_chance = val_chance;
      p.val_rows = val_rows;
      p.step = s + 1;
      p.steps = o->steps;
      p.loss = loss;
      p.loss_avg = out->train_loss;
      p.lr = lr;
      p.elapsed_s = ember_now() - t0;
      p.steps_per_s = p.elapsed_s > 0 ? (double)p.step / p.elapsed_s : 0.0;
      p.eta_s = p.steps_per_s > 0 ? (double)(o->steps - p.step) / p.steps_per_s : 0.0;
      if (o->progress(o->progress_ctx, &p)) {
        rc = ember_fail(err, EMBER_ECANCELED, "training cancelled at step %lld", (long long)p.step);
        goto fail;
      }
    }
  }
  ember_trainer_swap_average(t); /* the model keeps the averaged weights */
  ember_trainer_destroy(t);
  if (val) {
    out->train_val_rows = val_rows;
    out->train_val_loss = (float)val_loss;
    out->train_val_chance = (float)val_chance;
  }
  ember_dataset_free(&train_part);
  ember_dataset_free(&val_part);
  return 0;
fail:
  ember_trainer_destroy(t);
  ember_model_free(out);
  ember_dataset_free(&train_part);
  ember_dataset_free(&val_part);
  return rc;
}
