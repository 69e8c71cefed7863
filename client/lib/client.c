/* client.c - libember_client's calls: Predict and Sample rows (or an image model's images) in
 * and answers out, GetModel and ListModels as plain structs.
 *
 * A Predict or Sample exchange is written once, here (ember__client_predict and
 * ember__client_sample): the request's x and rows (wire/wire.h's ember_wire_predict_x), the
 * call, and the answer checked against the shape asked for and copied into the caller's
 * arrays. The public calls build the request from their option structs; the ember CLI's remote
 * mode builds it from its flags (wire/wire.h's option mapping) and calls the same functions.
 *
 * Options: the public structs carry the fields a robot tunes (samples, iterations, sigma,
 * shrink, temperature, refine steps, the seed); zero leaves a field unset, which the protocol
 * reads as the model's default. Langevin chain settings are not in them: a Langevin model runs
 * with its own defaults.
 *
 * What it does not do: print, exit, read the environment, or allocate anything the caller must
 * free except the model structs, which have their own free functions.
 */
#include "client_int.h"

#include "wire.h"

#include <stdlib.h>
#include <string.h>

/* A copy of st for callers that passed none. */
#define STATUS(st, scratch) ((st) ? (st) : &(scratch))

static int malformed(ember_client_status *st, uint64_t row_offset, const char *what) {
  return ember__fail(st, GRPC_STATUS_INTERNAL, "the server's answer for rows from %llu is malformed: %s",
                     (unsigned long long)row_offset, what);
}

/* The server must answer with the version asked for (when one was asked for). */
static int check_version(ember_client_status *st, const char *model, int64_t asked, int64_t answered) {
  if (asked == 0 || answered == 0 || answered == asked) return 0;
  return ember__fail(st, GRPC_STATUS_INTERNAL, "the server answered with version %lld of %s, not %lld",
                     (long long)answered, model, (long long)asked);
}

/* x_max_abs_z of an answer for `rows` rows into z (may be NULL); clears *have for none. */
static int take_z(ember_client_status *st, uint64_t off, const float *rz, size_t nz, int rows, float *z,
                  int *have) {
  if (nz == 0) {
    *have = 0;
    return 0;
  }
  if (nz != (size_t)rows) return malformed(st, off, "wrong number of x_max_abs_z values");
  if (z) memcpy(z, rz, (size_t)rows * sizeof *z);
  return 0;
}

static int check_rows(ember_client_status *st, const float *x, int rows, int x_dim) {
  if (!x || rows < 1 || x_dim < 1)
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "x must hold one or more rows of x_dim >= 1 values "
                       "(got %d rows of %d)", rows, x_dim);
  if ((uint64_t)rows * (uint64_t)x_dim > (uint64_t)INT32_MAX)
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%d rows of %d values is more than one request holds",
                       rows, x_dim);
  return 0;
}

static int check_images(ember_client_status *st, const ember_client_images *im, int rows) {
  if (!im || !im->pixels || rows < 1 || im->height < 1 || im->width < 1 || im->channels < 1 || im->n_extra < 0 ||
      (im->n_extra > 0 && !im->extra))
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "images must hold one or more rows of height x width x "
                       "channels >= 1 bytes, and extra n_extra >= 0 values per row (got %d rows of %dx%dx%d, "
                       "n_extra %d%s)", rows, im ? im->height : 0, im ? im->width : 0, im ? im->channels : 0,
                       im ? im->n_extra : 0, im && im->n_extra > 0 && !im->extra ? ", extra NULL" : "");
  const uint64_t bytes = (uint64_t)rows * (uint64_t)im->height * (uint64_t)im->width * (uint64_t)im->channels;
  if (bytes > (uint64_t)INT32_MAX || (uint64_t)rows * (uint64_t)im->n_extra > (uint64_t)INT32_MAX)
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%d images of %dx%dx%d are more than one request holds",
                       rows, im->height, im->width, im->channels);
  return 0;
}

/* One Predict of a request whose input is set: the answer checked and copied out. */
static int predict_call(ember_client *c, const Ember__V1__PredictRequest *req, int rows, uint64_t row_offset,
                        int deadline_ms, ember__predict_out *out, ember_client_status *st) {
  const int d = out->y_dim;
  ProtobufCMessage *r;
  int rc = ember__client_call(c, EMBER__PREDICT, &req->base, &r, deadline_ms, st);
  if (rc) return rc;
  Ember__V1__PredictResponse *resp = (Ember__V1__PredictResponse *)r;
  if (resp->y_dim != 0 && resp->y_dim != (uint32_t)d) {
    rc = ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "the model's y_dim is %u, the call's y_dim %d",
                     resp->y_dim, d);
  } else if (resp->n_y != (size_t)rows * (size_t)d) {
    rc = malformed(st, row_offset, "wrong number of y values");
  } else if (resp->n_energy != (size_t)rows && !(resp->n_energy == 0 && !out->need_energy)) {
    rc = malformed(st, row_offset, "wrong number of energies");
  } else if ((rc = take_z(st, row_offset, resp->x_max_abs_z, resp->n_x_max_abs_z, rows, out->z, &out->have_z)) == 0) {
    rc = check_version(st, req->model, req->version, resp->model_version);
  }
  if (rc == 0) {
    memcpy(out->y, resp->y, (size_t)rows * d * sizeof(float));
    if (out->energy) {
      if (resp->n_energy) memcpy(out->energy, resp->energy, (size_t)rows * sizeof(float));
      else memset(out->energy, 0, (size_t)rows * sizeof(float));
    }
    out->version = resp->model_version;
  }
  ember__v1__predict_response__free_unpacked(resp, NULL);
  return rc;
}

int ember__client_predict(ember_client *c, const Ember__V1__PredictRequest *tmpl, const float *x,
                          int rows, int x_dim, uint64_t row_offset, int deadline_ms,
                          ember__predict_out *out, ember_client_status *st) {
  int rc = check_rows(st, x, rows, x_dim);
  if (rc) return rc;
  Ember__V1__PredictRequest req = *tmpl;
  ember_wire_predict_x(&req, x, rows, x_dim);
  req.row_offset = row_offset;
  return predict_call(c, &req, rows, row_offset, deadline_ms, out, st);
}

int ember__client_predict_images(ember_client *c, const Ember__V1__PredictRequest *tmpl,
                                 const ember_client_images *im, int rows, uint64_t row_offset,
                                 int deadline_ms, ember__predict_out *out, ember_client_status *st) {
  int rc = check_images(st, im, rows);
  if (rc) return rc;
  Ember__V1__PredictRequest req = *tmpl;
  Ember__V1__ImageShape shape;
  ember_wire_predict_images(&req, &shape, im->pixels, rows, im->height, im->width, im->channels, im->extra,
                            im->n_extra);
  req.row_offset = row_offset;
  return predict_call(c, &req, rows, row_offset, deadline_ms, out, st);
}

/* One Sample of a request whose input is set: the answer checked and copied out. */
static int sample_call(ember_client *c, const Ember__V1__SampleRequest *req, int rows, uint64_t row_offset,
                       int deadline_ms, ember__sample_out *out, ember_client_status *st) {
  const int d = out->y_dim, k = out->k;
  ProtobufCMessage *r;
  int rc = ember__client_call(c, EMBER__SAMPLE, &req->base, &r, deadline_ms, st);
  if (rc) return rc;
  Ember__V1__SampleResponse *resp = (Ember__V1__SampleResponse *)r;
  if (resp->y_dim != 0 && resp->y_dim != (uint32_t)d)
    rc = ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "the model's y_dim is %u, the call's y_dim %d",
                     resp->y_dim, d);
  else if (resp->n_rows != (size_t)rows) rc = malformed(st, row_offset, "wrong number of rows");
  else if ((rc = take_z(st, row_offset, resp->x_max_abs_z, resp->n_x_max_abs_z, rows, out->z, &out->have_z)) == 0)
    rc = check_version(st, req->model, req->version, resp->model_version);
  for (int i = 0; i < rows && rc == 0; i++) {
    const Ember__V1__SampleRow *row = resp->rows[i];
    if (row->n_modes > (size_t)k) {
      rc = malformed(st, row_offset, "more modes than asked for");
      break;
    }
    for (size_t m = 0; m < row->n_modes && rc == 0; m++) {
      const Ember__V1__Mode *md = row->modes[m];
      if (md->n_y != (size_t)d) {
        rc = malformed(st, row_offset, "a mode with the wrong number of y values");
        break;
      }
      size_t slot = (size_t)i * k + m;
      memcpy(out->y + slot * d, md->y, (size_t)d * sizeof(float));
      out->energy[slot] = md->energy;
      out->weight[slot] = md->weight;
    }
    out->count[i] = (int)row->n_modes;
  }
  if (rc == 0) out->version = resp->model_version;
  ember__v1__sample_response__free_unpacked(resp, NULL);
  return rc;
}

int ember__client_sample(ember_client *c, const Ember__V1__SampleRequest *tmpl, const float *x,
                         int rows, int x_dim, uint64_t row_offset, int deadline_ms,
                         ember__sample_out *out, ember_client_status *st) {
  int rc = check_rows(st, x, rows, x_dim);
  if (rc) return rc;
  Ember__V1__SampleRequest req = *tmpl;
  ember_wire_sample_x(&req, x, rows, x_dim);
  req.row_offset = row_offset;
  return sample_call(c, &req, rows, row_offset, deadline_ms, out, st);
}

int ember__client_sample_images(ember_client *c, const Ember__V1__SampleRequest *tmpl,
                                const ember_client_images *im, int rows, uint64_t row_offset,
                                int deadline_ms, ember__sample_out *out, ember_client_status *st) {
  int rc = check_images(st, im, rows);
  if (rc) return rc;
  Ember__V1__SampleRequest req = *tmpl;
  Ember__V1__ImageShape shape;
  ember_wire_sample_images(&req, &shape, im->pixels, rows, im->height, im->width, im->channels, im->extra,
                           im->n_extra);
  req.row_offset = row_offset;
  return sample_call(c, &req, rows, row_offset, deadline_ms, out, st);
}

/* ---- the public calls ------------------------------------------------------------------------ */

/* The public options as InferenceOptions: zero fields stay unset. */
static void infer_msg(const ember_client_infer_opts *o, Ember__V1__InferenceOptions *w) {
  ember__v1__inference_options__init(w);
  w->samples = o->samples;
  w->iterations = o->iterations;
  w->sigma = o->sigma;
  w->shrink = o->shrink;
  w->temperature = o->temperature;
  w->seed = o->seed;
  if (o->refine_steps >= 0) {
    w->optional_refine_steps_case = EMBER__V1__INFERENCE_OPTIONS__OPTIONAL_REFINE_STEPS_REFINE_STEPS;
    w->refine_steps = (uint32_t)o->refine_steps;
  }
}

static int check_call(ember_client *c, const char *model, ember_client_status *st) {
  if (!c) return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "no client (ember_client_open failed?)");
  if (!model || !*model) return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "no model name given");
  return 0;
}

/* Predict on x (rows, x_dim), or with im on rows images. */
static int predict_public(ember_client *c, const char *model, const ember_client_infer_opts *opts, const float *x,
                          int x_dim, const ember_client_images *im, int rows, float *y, int y_dim, float *energy,
                          ember_client_status *st) {
  static const ember_client_infer_opts defaults = EMBER_CLIENT_INFER_OPTS_INIT;
  ember_client_status scratch;
  st = STATUS(st, scratch);
  memset(st, 0, sizeof *st);
  if (!opts) opts = &defaults;
  int rc = check_call(c, model, st);
  if (rc) return rc;
  if (!y || y_dim < 1) return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "y must hold rows x y_dim values, y_dim >= 1");
  Ember__V1__InferenceOptions w;
  infer_msg(opts, &w);
  Ember__V1__PredictRequest req = EMBER__V1__PREDICT_REQUEST__INIT;
  req.model = (char *)model;
  req.version = opts->version;
  req.options = &w;
  ember__predict_out out = {.y_dim = y_dim, .y = y, .energy = energy, .have_z = 1};
  if (im) return ember__client_predict_images(c, &req, im, rows, opts->row_offset, opts->deadline_ms, &out, st);
  return ember__client_predict(c, &req, x, rows, x_dim, opts->row_offset, opts->deadline_ms, &out, st);
}

int ember_client_predict(ember_client *c, const char *model, const ember_client_infer_opts *opts,
                         const float *x, int rows, int x_dim, float *y, int y_dim, float *energy,
                         ember_client_status *st) {
  return predict_public(c, model, opts, x, x_dim, NULL, rows, y, y_dim, energy, st);
}

int ember_client_predict_images(ember_client *c, const char *model, const ember_client_infer_opts *opts,
                                const ember_client_images *images, int rows, float *y, int y_dim, float *energy,
                                ember_client_status *st) {
  ember_client_status scratch;
  st = STATUS(st, scratch);
  if (!images) {
    memset(st, 0, sizeof *st);
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "no images given");
  }
  return predict_public(c, model, opts, NULL, 0, images, rows, y, y_dim, energy, st);
}

/* Sample on x (rows, x_dim), or with im on rows images. */
static int sample_public(ember_client *c, const char *model, const ember_client_infer_opts *opts,
                         const ember_client_modes_opts *mo, const float *x, int x_dim, const ember_client_images *im,
                         int rows, int modes, float *mode_y, int y_dim, float *mode_energy, float *mode_weight,
                         int *count, ember_client_status *st) {
  static const ember_client_infer_opts defaults = EMBER_CLIENT_INFER_OPTS_INIT;
  static const ember_client_modes_opts mdefaults = EMBER_CLIENT_MODES_OPTS_INIT;
  ember_client_status scratch;
  st = STATUS(st, scratch);
  memset(st, 0, sizeof *st);
  if (!opts) opts = &defaults;
  if (!mo) mo = &mdefaults;
  int rc = check_call(c, model, st);
  if (rc) return rc;
  if (modes < 1 || y_dim < 1 || !mode_y || !mode_energy || !mode_weight || !count)
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT,
                       "sample needs modes >= 1, y_dim >= 1 and the four output arrays");
  Ember__V1__InferenceOptions w;
  infer_msg(opts, &w);
  Ember__V1__SampleRequest req = EMBER__V1__SAMPLE_REQUEST__INIT;
  req.model = (char *)model;
  req.version = opts->version;
  req.options = &w;
  req.modes = (uint32_t)modes;
  req.radius = mo->radius;
  req.min_mass = mo->min_mass;
  if (mo->polish_steps >= 0) req.polish_steps = (uint32_t)mo->polish_steps;
  ember__sample_out out = {.k = modes, .y_dim = y_dim, .y = mode_y, .energy = mode_energy,
                           .weight = mode_weight, .count = count, .have_z = 1};
  if (im) return ember__client_sample_images(c, &req, im, rows, opts->row_offset, opts->deadline_ms, &out, st);
  return ember__client_sample(c, &req, x, rows, x_dim, opts->row_offset, opts->deadline_ms, &out, st);
}

int ember_client_sample(ember_client *c, const char *model, const ember_client_infer_opts *opts,
                        const ember_client_modes_opts *mo, const float *x, int rows, int x_dim,
                        int modes, float *mode_y, int y_dim, float *mode_energy, float *mode_weight,
                        int *count, ember_client_status *st) {
  return sample_public(c, model, opts, mo, x, x_dim, NULL, rows, modes, mode_y, y_dim, mode_energy, mode_weight,
                       count, st);
}

int ember_client_sample_images(ember_client *c, const char *model, const ember_client_infer_opts *opts,
                               const ember_client_modes_opts *mo, const ember_client_images *images, int rows,
                               int modes, float *mode_y, int y_dim, float *mode_energy, float *mode_weight,
                               int *count, ember_client_status *st) {
  ember_client_status scratch;
  st = STATUS(st, scratch);
  if (!images) {
    memset(st, 0, sizeof *st);
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "no images given");
  }
  return sample_public(c, model, opts, mo, NULL, 0, images, rows, modes, mode_y, y_dim, mode_energy, mode_weight,
                       count, st);
}

/* ---- models ----------------------------------------------------------------------------------- */

static void model_clear(ember_client_model *m) {
  free(m->name);
  free(m->method);
  free(m->arch);
  free(m->versions);
  for (int i = 0; m->x_names && i < m->x_dim; i++) free(m->x_names[i]);
  for (int i = 0; m->y_names && i < m->y_dim; i++) free(m->y_names[i]);
  free(m->x_names);
  free(m->y_names);
  free(m->y_lo);
  free(m->y_hi);
  free(m->image_conv);
  free(m->image_head);
  memset(m, 0, sizeof *m);
}

static char **copy_names(char *const *names, size_t n, uint32_t want, int *ok) {
  if (n == 0 || n != want) return NULL; /* a server without names */
  char **out = calloc(n, sizeof *out);
  for (size_t i = 0; out && i < n; i++)
    if (!(out[i] = strdup(names[i]))) *ok = 0;
  if (!out) *ok = 0;
  return out;
}

static float *copy_floats(const float *v, size_t n, uint32_t want, int *ok) {
  if (n == 0 || n != want) return NULL;
  float *out = malloc(n * sizeof *out);
  if (out) memcpy(out, v, n * sizeof *out);
  else *ok = 0;
  return out;
}

/* The ModelInfo message as a struct: 0, or RESOURCE_EXHAUSTED (m cleared). */
static int model_from_msg(const Ember__V1__ModelInfo *in, ember_client_model *m, ember_client_status *st) {
  int ok = 1;
  memset(m, 0, sizeof *m);
  m->x_dim = (int)in->x_dim;
  m->y_dim = (int)in->y_dim;
  m->width = (int)in->width;
  m->depth = (int)in->depth;
  m->version = in->version;
  m->default_version = in->default_version;
  m->n_load_errors = in->n_load_errors;
  if (in->defaults) {
    m->samples = in->defaults->samples;
    m->iterations = in->defaults->iterations;
  }
  if (!(m->name = strdup(in->name)) || !(m->method = strdup(in->method)) || !(m->arch = strdup(in->arch))) ok = 0;
  if (in->n_versions) {
    if ((m->versions = malloc(in->n_versions * sizeof *m->versions))) {
      memcpy(m->versions, in->versions, in->n_versions * sizeof *m->versions);
      m->n_versions = in->n_versions;
    } else {
      ok = 0;
    }
  }
  m->x_names = copy_names(in->x_names, in->n_x_names, in->x_dim, &ok);
  m->y_names = copy_names(in->y_names, in->n_y_names, in->y_dim, &ok);
  m->y_lo = copy_floats(in->y_lo, in->n_y_lo, in->y_dim, &ok);
  m->y_hi = copy_floats(in->y_hi, in->n_y_hi, in->y_dim, &ok);
  const Ember__V1__ImageEncoder *enc = in->encoder;
  if (enc && enc->shape) { /* an image model */
    m->image_height = (int)enc->shape->height;
    m->image_width = (int)enc->shape->width;
    m->image_channels = (int)enc->shape->channels;
    m->image_extra = (int)enc->extra;
    m->image_features = (int)enc->features;
    if (!(m->image_conv = strdup(enc->conv ? enc->conv : "")) || !(m->image_head = strdup(enc->head ? enc->head : "")))
      ok = 0;
  }
  if (ok) return 0;
  model_clear(m);
  return ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the model's description");
}

int ember_client_get_model(ember_client *c, const char *model, int64_t version, ember_client_model **out,
                           ember_client_status *st) {
  ember_client_status scratch;
  st = STATUS(st, scratch);
  memset(st, 0, sizeof *st);
  *out = NULL;
  int rc = check_call(c, model, st);
  if (rc) return rc;
  Ember__V1__GetModelRequest req = EMBER__V1__GET_MODEL_REQUEST__INIT;
  req.model = (char *)model;
  req.version = version;
  ProtobufCMessage *r;
  rc = ember__client_call(c, EMBER__GET_MODEL, &req.base, &r, 0, st);
  if (rc) return rc;
  ember_client_model *m = calloc(1, sizeof *m);
  if (!m) rc = ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  else if ((rc = model_from_msg((const Ember__V1__ModelInfo *)r, m, st)) != 0) free(m);
  else *out = m;
  protobuf_c_message_free_unpacked(r, NULL);
  return rc;
}

void ember_client_model_free(ember_client_model *m) {
  if (!m) return;
  model_clear(m);
  free(m);
}

int ember_client_list_models(ember_client *c, ember_client_model **out, size_t *n, ember_client_status *st) {
  ember_client_status scratch;
  st = STATUS(st, scratch);
  memset(st, 0, sizeof *st);
  *out = NULL;
  *n = 0;
  if (!c) return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "no client (ember_client_open failed?)");
  Ember__V1__ListModelsRequest req = EMBER__V1__LIST_MODELS_REQUEST__INIT;
  ProtobufCMessage *r;
  int rc = ember__client_call(c, EMBER__LIST_MODELS, &req.base, &r, 0, st);
  if (rc) return rc;
  const Ember__V1__ListModelsResponse *list = (const Ember__V1__ListModelsResponse *)r;
  ember_client_model *models = list->n_models ? calloc(list->n_models, sizeof *models) : NULL;
  if (list->n_models && !models) rc = ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  size_t done = 0;
  for (; rc == 0 && done < list->n_models; done++) rc = model_from_msg(list->models[done], &models[done], st);
  if (rc) {
    ember_client_models_free(models, done);
  } else {
    *out = models;
    *n = list->n_models;
  }
  protobuf_c_message_free_unpacked(r, NULL);
  return rc;
}

void ember_client_models_free(ember_client_model *models, size_t n) {
  for (size_t i = 0; models && i < n; i++) model_clear(&models[i]);
  free(models);
}
