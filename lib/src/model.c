/* model.c - the model struct: allocation, names of methods and architectures, normalisation.
 *
 * Checkpoint reading and writing live in checkpoint.c; training in train.c; inference in
 * infer.c. This file only knows how a model is laid out in memory.
 */
#include "ember/model.h"

#include "ember/infer.h"
#include "ember/langevin.h"
#include "ember/spectral.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_names[] = {"dfo", "mse", "ardfo", "langevin"};
static const char *const arch_names[] = {"mlp", "resnet"};
static const char *const schedule_names[] = {"poly", "ibc"};
static const char *const optimizer_names[] = {"default", "dfo", "langevin", "ardfo"};
_Static_assert(sizeof optimizer_names / sizeof *optimizer_names == EMBER_OPTIMIZER_COUNT,
               "a name for every ember_optimizer");

#define COUNT(a) (sizeof(a) / sizeof *(a))

static int lookup(const char *const *names, unsigned n, const char *s) {
  for (unsigned i = 0; s && i < n; i++)
    if (strcmp(s, names[i]) == 0) return (int)i;
  return EMBER_EINVAL;
}

const char *ember_method_name(ember_method m) {
  return (unsigned)m < COUNT(method_names) ? method_names[m] : "unknown";
}

int ember_method_parse(const char *s, ember_method *out) {
  int i = lookup(method_names, COUNT(method_names), s);
  if (i >= 0) *out = (ember_method)i;
  return i < 0 ? i : 0;
}

const char *ember_arch_name(ember_arch a) {
  return (unsigned)a < COUNT(arch_names) ? arch_names[a] : "unknown";
}

int ember_arch_parse(const char *s, ember_arch *out) {
  int i = lookup(arch_names, COUNT(arch_names), s);
  if (i >= 0) *out = (ember_arch)i;
  return i < 0 ? i : 0;
}

const char *ember_schedule_name(ember_schedule s) {
  return (unsigned)s < COUNT(schedule_names) ? schedule_names[s] : "unknown";
}

int ember_schedule_parse(const char *s, ember_schedule *out) {
  int i = lookup(schedule_names, COUNT(schedule_names), s);
  if (i >= 0) *out = (ember_schedule)i;
  return i < 0 ? i : 0;
}

const char *ember_optimizer_name(ember_optimizer o) {
  return (unsigned)o < COUNT(optimizer_names) ? optimizer_names[o] : "unknown";
}

int ember_optimizer_parse(const char *s, ember_optimizer *out) {
  int i = lookup(optimizer_names, COUNT(optimizer_names), s);
  if (i >= 0) *out = (ember_optimizer)i;
  return i < 0 ? i : 0;
}

ember_optimizer ember_method_optimizer(ember_method method) {
  switch (method) {
  case EMBER_METHOD_DFO: return EMBER_OPTIMIZER_DFO;
  case EMBER_METHOD_ARDFO: return EMBER_OPTIMIZER_ARDFO;
  case EMBER_METHOD_LANGEVIN: return EMBER_OPTIMIZER_LANGEVIN;
  default: return EMBER_OPTIMIZER_DEFAULT;
  }
}

ember_method ember_optimizer_method(ember_method method, ember_optimizer opt) {
  switch (opt) {
  case EMBER_OPTIMIZER_DFO: return EMBER_METHOD_DFO;
  case EMBER_OPTIMIZER_ARDFO: return EMBER_METHOD_ARDFO;
  case EMBER_OPTIMIZER_LANGEVIN: return EMBER_METHOD_LANGEVIN;
  default: return method;
  }
}

int ember_optimizer_check(ember_method method, ember_optimizer opt, ember_err *err) {
  if ((unsigned)opt >= EMBER_OPTIMIZER_COUNT)
    return ember_fail(err, EMBER_EINVAL, "optimizer must be default, dfo, langevin or ardfo, got %d", (int)opt);
  if (opt == EMBER_OPTIMIZER_DEFAULT) return 0;
  if (method == EMBER_METHOD_MSE)
    return ember_fail(err, EMBER_EINVAL,
                      "optimizer %s does not apply to an explicit (mse) model: it has no energy to "
                      "optimise (only optimizer default)",
                      ember_optimizer_name(opt));
  if (opt == EMBER_OPTIMIZER_ARDFO && method != EMBER_METHOD_ARDFO)
    return ember_fail(err, EMBER_EINVAL,
                      "optimizer ardfo needs the y-prefix nets of an ardfo model; this model's "
                      "method is %s (optimizers dfo and langevin apply to it)",
                      ember_method_name(method));
  return 0;
}

int ember_infer_opts_check(const ember_infer_opts *o, int langevin, ember_err *err) {
  if ((unsigned)o->optimizer >= EMBER_OPTIMIZER_COUNT)
    return ember_fail(err, EMBER_EINVAL, "optimizer must be default, dfo, langevin or ardfo, got %d",
                      (int)o->optimizer);
  if (o->samples < 1 || o->samples > EMBER_MAX_INFER_SAMPLES)
    return ember_fail(err, EMBER_EINVAL, "samples must be 1..%d, got %d", EMBER_MAX_INFER_SAMPLES,
                      o->samples);
  if (o->iters < 1 || o->iters > EMBER_MAX_ITERS)
    return ember_fail(err, EMBER_EINVAL, "iterations must be 1..%d, got %d", EMBER_MAX_ITERS, o->iters);
  if (!(o->sigma >= 0.0f && o->sigma <= 1e3f))
    return ember_fail(err, EMBER_EINVAL, "sigma must be a number in [0, 1000], got %g",
                      (double)o->sigma);
  if (!(o->shrink > 0.0f && o->shrink <= 1.0f))
    return ember_fail(err, EMBER_EINVAL, "shrink must be in (0, 1], got %g", (double)o->shrink);
  if (!(o->temperature > 1e-6f && o->temperature <= 1e6f))
    return ember_fail(err, EMBER_EINVAL, "temperature must be in (1e-6, 1e6], got %g",
                      (double)o->temperature);
  if (o->refine_steps < 0 || o->refine_steps > EMBER_MAX_REFINE_STEPS)
    return ember_fail(err, EMBER_EINVAL, "refine steps must be 0..%d, got %d", EMBER_MAX_REFINE_STEPS,
                      o->refine_steps);
  if (o->refine_steps > 0 && !(o->refine_lr > 0.0f && o->refine_lr <= 1e3f))
    return ember_fail(err, EMBER_EINVAL, "refine step must be in (0, 1000], got %g",
                      (double)o->refine_lr);
  if (!langevin) return 0;
  int rc = ember_langevin_opts_check(&o->langevin, err);
  if (rc < 0) return rc;
  if (o->again_steps < 0 || o->again_steps > EMBER_MAX_CHAIN_STEPS)
    return ember_fail(err, EMBER_EINVAL, "second-chain steps must be 0..%d, got %d",
                      EMBER_MAX_CHAIN_STEPS, o->again_steps);
  if (o->again_steps > 0 && !(o->again_step > 0.0f && o->again_step <= 10.0f))
    return ember_fail(err, EMBER_EINVAL, "second-chain step must be in (0, 10], got %g",
                      (double)o->again_step);
  return 0;
}

ember_net_shape ember_model_net_shape(ember_method method, int x_dim, int y_dim, ember_arch arch,
                                      int width, int depth) {
  ember_net_shape s = {.arch = arch, .in_x = x_dim, .in_y = y_dim, .width = width, .depth = depth,
                       .out = 1};
  if (method == EMBER_METHOD_MSE) {
    s.in_y = 0;
    s.out = y_dim;
  }
  return s;
}

size_t ember_model_params(ember_method method, int x_dim, int y_dim, ember_arch arch, int width,
                          int depth) {
  ember_net_shape s = ember_model_net_shape(method, x_dim, y_dim, arch, width, depth);
  size_t np = ember_net_shape_params(&s);
  for (int j = 1; method == EMBER_METHOD_ARDFO && j < y_dim; j++) { /* the prefix nets */
    s.in_y = j;
    np += ember_net_shape_params(&s);
  }
  return np;
}

int ember_model_init(ember_model *m, ember_method method, int x_dim, int y_dim, ember_arch arch,
                     int width, int depth, ember_err *err) {
  memset(m, 0, sizeof *m);
  if ((unsigned)method > EMBER_METHOD_LANGEVIN)
    return ember_fail(err, EMBER_ENOTSUP, "unknown method %d", (int)method);
  if (x_dim < 1 || x_dim > EMBER_MAX_X_DIM)
    return ember_fail(err, EMBER_EINVAL, "x_dim must be 1..%d, got %d", EMBER_MAX_X_DIM, x_dim);
  if (y_dim < 1 || y_dim > EMBER_MAX_Y_DIM)
    return ember_fail(err, EMBER_EINVAL, "y_dim must be 1..%d, got %d", EMBER_MAX_Y_DIM, y_dim);
  if (method == EMBER_METHOD_ARDFO && y_dim > EMBER_MAX_ARDFO_Y_DIM)
    return ember_fail(err, EMBER_EINVAL,
                      "an ardfo model has one network per y dimension: y_dim must be 1..%d, got %d",
                      EMBER_MAX_ARDFO_Y_DIM, y_dim);
  ember_net_shape s = ember_model_net_shape(method, x_dim, y_dim, arch, width, depth);
  int rc = ember_net_shape_check(&s, err);
  if (rc < 0) return rc;
  size_t np = ember_model_params(method, x_dim, y_dim, arch, width, depth);
  if (np > EMBER_MAX_PARAMS)
    return ember_fail(err, EMBER_EINVAL,
                      "%d %s networks of width %d and depth %d have %zu parameters, more than the "
                      "%zu a model may have (EMBER_MAX_PARAMS, 1 GiB of float32)",
                      y_dim, ember_arch_name(arch), width, depth, np, EMBER_MAX_PARAMS);
  rc = ember_net_init(&m->net, &s, err);
  if (rc < 0) return rc;
  if (method == EMBER_METHOD_ARDFO && y_dim > 1) {
    m->ar = calloc((size_t)y_dim - 1, sizeof *m->ar);
    if (!m->ar) {
      ember_model_free(m);
      return ember_fail(err, EMBER_ENOMEM, "out of memory allocating %d prefix networks", y_dim - 1);
    }
    for (int j = 1; j < y_dim; j++) {
      ember_net_shape sj = s;
      sj.in_y = j;
      if ((rc = ember_net_init(&m->ar[j - 1], &sj, err)) < 0) {
        ember_model_free(m);
        return rc;
      }
      m->nar = j;
    }
  }
  size_t nstats = 2 * (size_t)x_dim + 4 * (size_t)y_dim;
  m->stats = malloc(nstats * sizeof *m->stats);
  if (!m->stats) {
    ember_model_free(m);
    return ember_fail(err, EMBER_ENOMEM, "out of memory allocating model statistics");
  }
  m->x_names = ember_names_new(NULL, x_dim, 'x');
  m->y_names = ember_names_new(NULL, y_dim, 'y');
  if (!m->x_names || !m->y_names) {
    ember_model_free(m);
    return ember_fail(err, EMBER_ENOMEM, "out of memory allocating column names");
  }
  m->method = method;
  m->x_dim = x_dim;
  m->y_dim = y_dim;
  m->x_mean = m->stats;
  m->x_std = m->x_mean + x_dim;
  m->y_mean = m->x_std + x_dim;
  m->y_std = m->y_mean + y_dim;
  m->y_lo = m->y_std + y_dim;
  m->y_hi = m->y_lo + y_dim;
  for (int i = 0; i < x_dim; i++) m->x_mean[i] = 0.0f, m->x_std[i] = 1.0f;
  for (int i = 0; i < y_dim; i++) {
    m->y_mean[i] = 0.0f;
    m->y_std[i] = 1.0f;
    m->y_lo[i] = -1.0f;
    m->y_hi[i] = 1.0f;
  }
  ember_infer_opts d = EMBER_INFER_DEFAULTS;
  m->infer = d;
  m->penalty_margin = 1.0f;
  m->penalty_weight = 1.0f;
  return 0;
}

void ember_model_free(ember_model *m) {
  if (!m) return;
  ember_net_free(&m->net);
  for (int j = 0; j < m->nar; j++) ember_net_free(&m->ar[j]);
  free(m->ar);
  free(m->stats);
  free(m->sn_w);
  if (m->enc) ember_encoder_free(m->enc);
  free(m->enc);
  free(m->x_names);
  free(m->y_names);
  memset(m, 0, sizeof *m);
}

int ember_model_set_names(ember_model *m, const char *const *x_names, const char *const *y_names,
                          ember_err *err) {
  /* the names the model will have, checked together: a new x name may not repeat an old y */
  const char *const *xs = x_names ? x_names : (const char *const *)m->x_names;
  const char *const *ys = y_names ? y_names : (const char *const *)m->y_names;
  int rc = ember_names_check(xs, m->x_dim, ys, m->y_dim, err);
  if (rc < 0) return rc;
  char **xn = x_names ? ember_names_new(x_names, m->x_dim, 'x') : NULL;
  char **yn = y_names ? ember_names_new(y_names, m->y_dim, 'y') : NULL;
  if ((x_names && !xn) || (y_names && !yn)) {
    free(xn);
    free(yn);
    return ember_fail(err, EMBER_ENOMEM, "out of memory for the column names");
  }
  if (xn) free(m->x_names), m->x_names = xn;
  if (yn) free(m->y_names), m->y_names = yn;
  return 0;
}

int ember_model_sn_enable(ember_model *m, ember_err *err) {
  if (m->sn_w) return 0;
  const ember_net *net = &m->net;
  size_t w = 0, uv = 0;
  for (int l = 0; l < net->nlayers; l++) {
    if (!ember_sn_layer(net, l)) continue;
    w += (size_t)net->layers[l].out * net->layers[l].in;
    uv += (size_t)net->layers[l].out + net->layers[l].in;
  }
  m->sn_w = calloc(w + uv, sizeof(float));
  if (!m->sn_w) return ember_fail(err, EMBER_ENOMEM, "out of memory for spectral normalisation");
  m->sn_uv = m->sn_w + w;
  float *pw = m->sn_w, *puv = m->sn_uv;
  for (int l = 0; l < net->nlayers; l++) {
    if (!ember_sn_layer(net, l)) continue;
    const ember_dense *d = &net->layers[l];
    memcpy(pw, d->w, (size_t)d->out * d->in * sizeof(float));
    ember_sn_init(puv, d->out, puv + d->out, d->in);
    pw += (size_t)d->out * d->in;
    puv += (size_t)d->out + d->in;
  }
  return 0;
}

int ember_model_check_defaults(const ember_model *m, ember_err *err) {
  if (m->infer.optimizer != EMBER_OPTIMIZER_DEFAULT) /* checkpoints do not store one */
    return ember_fail(err, EMBER_EINVAL, "a model's default optimizer is its method's (optimizer "
                      "default), got %s", ember_optimizer_name(m->infer.optimizer));
  if (m->method == EMBER_METHOD_MSE) return 0; /* one forward pass, whatever the options say */
  const ember_infer_opts *o = &m->infer;
  if (o->samples > EMBER_MAX_SAMPLES)
    return ember_fail(err, EMBER_EINVAL,
                      "default inference options ask for %d %s per query, more than the %d a "
                      "request may (EMBER_MAX_SAMPLES, emberd's --max-samples default)",
                      o->samples, m->method == EMBER_METHOD_LANGEVIN ? "chains" : "samples",
                      EMBER_MAX_SAMPLES);
  double gflop = ember_infer_flops(m, o) / 1e9;
  const int langevin = m->method == EMBER_METHOD_LANGEVIN;
  if (!(gflop <= EMBER_MAX_REQUEST_GFLOP))
    return ember_fail(err, EMBER_EINVAL,
                      "default inference options cost %.4g GFLOP per query (%d %s x %d %s, %d "
                      "refine steps), more than the %d a request may (EMBER_MAX_REQUEST_GFLOP, "
                      "emberd's --max-request-gflop default)",
                      gflop, o->samples, langevin ? "chains" : "samples",
                      langevin ? o->langevin.steps + o->again_steps : o->iters,
                      langevin ? "chain steps" : "iterations", o->refine_steps,
                      EMBER_MAX_REQUEST_GFLOP);
  return 0;
}

int ember_model_check_x(const ember_model *m, const float *x, int n, ember_err *err) {
  const int d = m->x_dim;
  for (size_t i = 0; i < (size_t)n * d; i++) {
    size_t r = i / d, c = i % d;
    if (!isfinite(x[i]))
      return ember_fail(err, EMBER_ERANGE, "x[%zu,%zu] is %s: every value must be finite", r, c,
                        isnan(x[i]) ? "NaN" : "infinite");
    float z = (x[i] - m->x_mean[c]) / m->x_std[c];
    if (!(fabsf(z) <= EMBER_X_MAX_SIGMA))
      return ember_fail(err, EMBER_ERANGE,
                        "x[%zu,%zu] = %g is %.3g standard deviations from the training data's "
                        "mean (at most %g): far outside anything the model can answer",
                        r, c, (double)x[i], (double)fabsf(z), (double)EMBER_X_MAX_SIGMA);
  }
  return 0;
}

void ember_model_x_max_abs_z(const ember_model *m, const float *x, int n, float *z, int *col) {
  const int d = m->x_dim;
  for (int i = 0; i < n; i++) {
    double worst = 0.0;
    int at = 0;
    for (int j = 0; j < d; j++) {
      double v = fabs(((double)x[(size_t)i * d + j] - m->x_mean[j]) / m->x_std[j]);
      if (v > worst) worst = v, at = j;
    }
    z[i] = worst < FLT_MAX ? (float)worst : FLT_MAX;
    if (col) col[i] = at;
  }
}

int ember_model_set_encoder(ember_model *m, const ember_encoder_shape *shape, ember_err *err) {
  int rc = ember_encoder_shape_check(shape, err);
  if (rc < 0) return rc;
  const int F = ember_encoder_features(shape);
  if (m->x_dim != F + shape->extra)
    return ember_fail(err, EMBER_EINVAL,
                      "an encoder with %d features and %d extra observations gives %d x values; the "
                      "model has x_dim %d", F, shape->extra, F + shape->extra, m->x_dim);
  ember_encoder *enc = calloc(1, sizeof *enc);
  if (!enc) return ember_fail(err, EMBER_ENOMEM, "out of memory for an encoder");
  if ((rc = ember_encoder_init(enc, shape, err)) < 0) {
    free(enc);
    return rc;
  }
  if (m->enc) ember_encoder_free(m->enc);
  free(m->enc);
  m->enc = enc;
  for (int j = 0; j < F; j++) m->x_mean[j] = 0.0f, m->x_std[j] = 1.0f;
  return 0;
}

void ember_model_encode(const ember_model *m, ember_encoder_ws *ws, const uint8_t *img,
                        const float *extra, int n, float *x) {
  const ember_encoder *enc = m->enc;
  const int F = enc->nfeat, E = enc->shape.extra, d = m->x_dim, G = ws->max_images;
  const size_t ib = ember_encoder_image_bytes(&enc->shape);
  /* the features land in x's first columns; encode into the tail of each group's rows first */
  for (int i0 = 0; i0 < n; i0 += G) {
    int g = n - i0 < G ? n - i0 : G;
    float *xg = x + (size_t)i0 * d;
    ember_encoder_forward(enc, ws, img + (size_t)i0 * ib, g, xg);
    /* (g, F) packed -> (g, d) rows, last row first so nothing is overwritten before it moves */
    for (int i = g - 1; i >= 0; i--) {
      memmove(xg + (size_t)i * d, xg + (size_t)i * F, sizeof(float) * F);
      for (int j = 0; j < E; j++) xg[(size_t)i * d + F + j] = extra[(size_t)(i0 + i) * E + j];
    }
  }
}

int ember_model_encode_dataset(const ember_model *m, ember_dataset *ds, ember_err *err) {
  if (!m->enc) return ember_fail(err, EMBER_EINVAL, "the model takes vectors of %d x values, not images", m->x_dim);
  const ember_encoder_shape *s = &m->enc->shape;
  if (!ds->img)
    return ember_fail(err, EMBER_EINVAL, "the model takes %dx%dx%d images (x as uint8 (n, %d, %d, %d)); the data's x is %d float columns",
                      s->h, s->w, s->c, s->h, s->w, s->c, ds->x_dim);
  if (ds->img_h != s->h || ds->img_w != s->w || ds->img_c != s->c)
    return ember_fail(err, EMBER_EINVAL, "the model takes %dx%dx%d images; the data's are %dx%dx%d", s->h, s->w,
                      s->c, ds->img_h, ds->img_w, ds->img_c);
  if (ds->x_dim != s->extra)
    return ember_fail(err, EMBER_EINVAL, "the model takes %d extra observations (x_extra) per image; the data has %d",
                      s->extra, ds->x_dim);
  ember_encoder_ws ws;
  int rc = ember_encoder_ws_init(&ws, s, ds->n < EMBER_ENCODE_BATCH ? ds->n : EMBER_ENCODE_BATCH, err);
  if (rc < 0) return rc;
  float *x = malloc((size_t)ds->n * m->x_dim * sizeof(float));
  if (!x) {
    ember_encoder_ws_free(&ws);
    return ember_fail(err, EMBER_ENOMEM, "out of memory encoding %d images", ds->n);
  }
  ember_model_encode(m, &ws, ds->img, ds->x, ds->n, x);
  ember_encoder_ws_free(&ws);
  free(ds->x);
  free(ds->img);
  free(ds->x_names);
  ds->x_names = NULL;
  ds->img = NULL;
  ds->x = x;
  ds->x_dim = m->x_dim;
  return 0;
}

ember_signature ember_model_signature(const ember_model *m) {
  ember_signature s = {.x_dim = m->x_dim,
                       .y_dim = m->y_dim,
                       .x_names = (const char *const *)m->x_names,
                       .y_names = (const char *const *)m->y_names};
  return s;
}

static int names_equal(const char *const *a, const char *const *b, int n) {
  if (!a || !b) return a == b;
  for (int i = 0; i < n; i++)
    if (strcmp(a[i], b[i]) != 0) return 0;
  return 1;
}

int ember_signature_equal(const ember_signature *a, const ember_signature *b) {
  return a->x_dim == b->x_dim && a->y_dim == b->y_dim && names_equal(a->x_names, b->x_names, a->x_dim) &&
         names_equal(a->y_names, b->y_names, a->y_dim);
}

/* "[a,b,c]" of n names appended at buf + *at, cut to fit len */
static void names_text(const char *const *names, int n, char *buf, size_t len, size_t *at) {
  for (int i = 0; i < n && names && *at + 1 < len; i++) {
    int w = snprintf(buf + *at, len - *at, "%s%s", i ? "," : "[", names[i]);
    *at += w > 0 ? (size_t)w : 0;
  }
  if (names && *at + 1 < len) *at += (size_t)snprintf(buf + *at, len - *at, "]");
  if (*at >= len) *at = len - 1;
}

const char *ember_signature_text(const ember_signature *s, char *buf, size_t len) {
  if (len == 0) return buf;
  int w = snprintf(buf, len, "x_dim=%d y_dim=%d", s->x_dim, s->y_dim);
  size_t at = w > 0 ? (size_t)w : 0;
  if (at >= len) return buf;
  if (s->x_names && at + 4 < len) at += (size_t)snprintf(buf + at, len - at, " x=");
  if (at >= len) at = len - 1;
  names_text(s->x_names, s->x_dim, buf, len, &at);
  if (s->y_names && at + 4 < len) at += (size_t)snprintf(buf + at, len - at, " y=");
  if (at >= len) at = len - 1;
  names_text(s->y_names, s->y_dim, buf, len, &at);
  return buf;
}

void ember_model_norm_x(const ember_model *m, const float *x, int n, float *xn) {
  int d = m->x_dim;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      xn[(size_t)i * d + j] = (x[(size_t)i * d + j] - m->x_mean[j]) / m->x_std[j];
}

void ember_model_norm_y(const ember_model *m, const float *y, int n, float *yn) {
  int d = m->y_dim;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      yn[(size_t)i * d + j] = (y[(size_t)i * d + j] - m->y_mean[j]) / m->y_std[j];
}

void ember_model_denorm_y(const ember_model *m, const float *yn, int n, float *y) {
  int d = m->y_dim;
  for (int i = 0; i < n; i++)
    for (int j = 0; j < d; j++)
      y[(size_t)i * d + j] = yn[(size_t)i * d + j] * m->y_std[j] + m->y_mean[j];
}
