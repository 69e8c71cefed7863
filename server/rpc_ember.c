/* rpc_ember.c - the ember.v1.Ember service: parse, validate, answer.
 *
 * Predict and Sample are validated completely on the loop (model, version, shape, finite
 * values, options against the server's limits) so that a bad request is answered at once with
 * a status that says what was expected, and only good ones reach the batcher. ListModels and
 * GetModel are answered from the registry without touching a worker. The options are read
 * from and written to their messages by wire/ (the CLI's remote mode uses the same code); this
 * file adds the server's own limits (--max-samples, --max-request-gflop, --max-message).
 * An image model's images are checked by shape and count only (every byte is a pixel), kept as
 * the bytes they arrived as, and encoded on the worker (batcher.c); their extras are checked
 * as x is.
 *
 * Decoding and validation (rpc_ember_decode) report a srv_status instead of answering, and
 * touch only the call's fields, the registry and the configuration: fuzz/fuzz_rpc.c feeds them
 * arbitrary bytes without a server running. rpc_ember_handle answers what they decide.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/v1/ember.pb-c.h"
#include "server.h"
#include "wire.h"

static void versions_text(const model_entry *e, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = 0;
  for (int i = 0; i < e->nversions && used + 24 < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "", (long long)e->versions[i]->version);
  if (e->nversions == 0) snprintf(buf, len, "none");
}

/* Finds the model and version of a request; NULL with *st NOT_FOUND or INVALID_ARGUMENT. */
model_version *rpc_ember_resolve(srv_call *c, const char *name, int64_t version, srv_status *st) {
  server *s = c->srv;
  if (!srv_valid_model_name(name)) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "model name '%.80s' is not valid: expected 1-64 characters of [A-Za-z0-9_.-], not starting with '.'", name ? name : "");
    return NULL;
  }
  model_entry *e = registry_find(s, name);
  if (!e) {
    char known[256] = "";
    size_t used = 0;
    for (model_entry *m = s->models; m && used + 70 < sizeof known; m = m->next)
      if (registry_listed(m))
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", used ? ", " : "", m->name);
    srv_status_set(st, GRPC_STATUS_NOT_FOUND, "model '%s' not found (serving: %s)", name, used ? known : "none");
    return NULL;
  }
  c->entry = e;
  if (srv_infer_rpc(c->rpc)) e->stats.requests++;
  if (version < 0) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "version must be >= 0 (0 = latest), got %lld", (long long)version);
    return NULL;
  }
  model_version *v = registry_version(e, version);
  if (!v) {
    char have[256];
    versions_text(e, have, sizeof have);
    if (version == 0 && e->nversions == 0)
      srv_status_set(st, GRPC_STATUS_NOT_FOUND, "model '%s' has no loaded version", name);
    else if (version == 0)
      srv_status_set(st, GRPC_STATUS_NOT_FOUND, "model '%s' has no default version (%.300s); name a version (loaded: %s)",
                     name, registry_no_default_reason(e), have);
    else
      srv_status_set(st, GRPC_STATUS_NOT_FOUND, "version %lld of model '%s' is not loaded (loaded: %s)",
                     (long long)version, name, have);
    return NULL;
  }
  return v;
}

/* Merges request options with the model's defaults and checks them against the limits. */
static int resolve_options(srv_call *c, const model_version *v, const Ember__V1__InferenceOptions *o,
                           srv_status *st) {
  const ember_model *m = &v->model;
  const srv_config *cfg = &c->srv->cfg;
  ember_infer_opts r = m->infer;
  ember_err err;
  if (ember_wire_infer_from_msg(o, v->entry->name, m->method, &r, &err) < 0) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
    return -1;
  }
  /* the optimiser by name, so that "default" and the model's own share batches */
  const ember_method how = ember_optimizer_method(m->method, r.optimizer);
  r.optimizer = ember_method_optimizer(how);
  const int langevin = how == EMBER_METHOD_LANGEVIN;
  if (m->method != EMBER_METHOD_MSE && r.samples > cfg->max_samples) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "options.samples is %u; this server allows at most %d samples per row (--max-samples)",
                   o ? o->samples : 0u, cfg->max_samples);
    return -1;
  }
  if (ember_infer_opts_check(&r, langevin, &err) < 0) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "options: %s", err.msg);
    return -1;
  }
  /* Sample does not refine (local `ember sample` ignores --refine too): off, so that the
   * compute estimate does not count it and Sample requests differing only there share batches */
  if (c->rpc == RPC_SAMPLE) {
    r.refine_steps = 0;
    r.refine_lr = m->infer.refine_lr;
  }
  c->opts = r;
  c->seed = o ? o->seed : 0;
  return 0;
}

/* An image request's extras, x (rows, E): finite and within EMBER_X_MAX_SIGMA of the training
 * data, as ember_model_check_x checks a vector row (the encoder's features are computed later,
 * on the worker, and need no check). */
static int check_extras(const ember_model *m, const float *x, int rows, srv_status *st) {
  const int F = m->enc->nfeat, E = m->enc->shape.extra;
  for (size_t i = 0; i < (size_t)rows * E; i++) {
    const size_t r = i / E, j = i % E;
    if (!isfinite(x[i]))
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "x[%zu,%zu] (extra observation %zu of image %zu) is %s: every value must be finite",
                            r, j, j, r, isnan(x[i]) ? "NaN" : "infinite");
    const float z = (x[i] - m->x_mean[F + j]) / m->x_std[F + j];
    if (!(fabsf(z) <= EMBER_X_MAX_SIGMA))
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "x[%zu,%zu] (extra observation %zu of image %zu) = %g is %.3g standard deviations "
                            "from the training data's mean (at most %g): far outside anything the model can answer",
                            r, j, j, r, (double)x[i], (double)fabsf(z), (double)EMBER_X_MAX_SIGMA);
  }
  return 0;
}

/* Copies x's `rows` rows (their number checked by wire/ against the request's x and rows), or
 * for images their extras, and takes the images' bytes over. */
static int take_x(srv_call *c, const model_version *v, const float *x, int rows, ProtobufCBinaryData *images,
                  srv_status *st) {
  const ember_model *m = &v->model;
  const int d = images ? m->enc->shape.extra : m->x_dim;
  const srv_config *cfg = &c->srv->cfg;
  if (rows > cfg->max_rows) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s has %d rows; this server takes at most %d rows per request "
                   "(--max-rows)", images ? "images" : "x", rows, cfg->max_rows);
    return -1;
  }
  ember_err err;
  if (images ? check_extras(m, x, rows, st) < 0 : ember_model_check_x(m, x, rows, &err) < 0) {
    if (!images) srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
    return -1;
  }
  size_t n = (size_t)rows * (size_t)d;
  srv_faults *f = &c->srv->faults;
  int injected = f->request_alloc > 0 && ++f->requests_copied == f->request_alloc;
  c->x = injected || n == 0 ? NULL : malloc(n * sizeof(float));
  if (injected || (n > 0 && !c->x)) {
    srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %d rows", rows);
    return -1;
  }
  if (n) memcpy(c->x, x, n * sizeof(float));
  if (images) { /* the unpacked request's own copy of the bytes: no float copy, no second copy */
    c->img = images->data;
    images->data = NULL;
    images->len = 0;
  }
  c->rows = rows;
  return 0;
}

/* Unpacks a request; NULL with *st INVALID_ARGUMENT if the bytes are not a valid message. */
static void *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes, long len, srv_status *st) {
  void *msg = len >= 0 ? protobuf_c_message_unpack(desc, NULL, (size_t)len, bytes) : NULL;
  if (!msg) srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid %s message", desc->name);
  return msg;
}

/* Options and x (rows, or -1 with the shape refusal in *shape) of a Predict/Sample on version
 * v, checked against the limits: 0 with the call ready for the batcher (v referenced in
 * c->version), or -1 with *st. */
int rpc_ember_check_infer(srv_call *c, model_version *v, const Ember__V1__InferenceOptions *options,
                          const float *x, int rows, ProtobufCBinaryData *images, const ember_err *shape,
                          uint64_t row_offset, srv_status *st) {
  if (resolve_options(c, v, options, st) < 0) return -1;
  if (rows < 0) return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", shape->msg);
  const ember_encoder_shape *es = v->model.enc ? &v->model.enc->shape : NULL;
  if (!es != !images) /* the decoders pass images exactly for image models */
    return srv_status_set(st, GRPC_STATUS_INTERNAL, "images %s for a%s model", images ? "given" : "missing",
                          es ? "n image" : " vector");
  if (take_x(c, v, x, rows, images, st) < 0) return -1;
  /* ember_infer_flops counts what these options run: DFO rounds (an ardfo round runs each
   * of its y_dim prefix nets), or chain steps (and the second chain), plus refine steps;
   * ember_infer_modes_flops adds Sample's mode finding and polishing; an image is encoded
   * once per row */
  const int sample = c->rpc == RPC_SAMPLE;
  double gflop = c->rows * ((sample ? ember_infer_modes_flops(&v->model, &c->opts, &c->modes)
                                    : ember_infer_flops(&v->model, &c->opts)) +
                            (es ? 2.0 * ember_encoder_macs(es) : 0.0)) / 1e9;
  if (gflop > c->srv->cfg.max_request_gflop) {
    const ember_infer_opts *o = &c->opts;
    const ember_method how = ember_optimizer_method(v->model.method, o->optimizer);
    char what[160];
    if (how == EMBER_METHOD_LANGEVIN)
      snprintf(what, sizeof what, "%d rows x %d chains x %d chain steps%s", c->rows, o->samples,
               o->langevin.steps + o->again_steps, o->again_steps ? " (both chains)" : "");
    else if (how == EMBER_METHOD_ARDFO)
      snprintf(what, sizeof what, "%d rows x %d samples x %d iterations x %d prefix nets", c->rows,
               o->samples, o->iters, v->model.nar + 1);
    else
      snprintf(what, sizeof what, "%d rows x %d samples x %d iterations", c->rows, o->samples, o->iters);
    if (o->refine_steps > 0)
      snprintf(what + strlen(what), sizeof what - strlen(what), ", %d refine steps", o->refine_steps);
    if (sample && c->modes.polish_steps > 0)
      snprintf(what + strlen(what), sizeof what - strlen(what), ", %d modes x %d polish steps",
               c->modes.k, c->modes.polish_steps);
    if (es)
      snprintf(what + strlen(what), sizeof what - strlen(what), ", %d images through the encoder", c->rows);
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "this request needs %.0f GFLOP (%s); this server takes at most %d per request "
                          "(--max-request-gflop): send fewer rows or samples%s%s",
                          gflop, what, c->srv->cfg.max_request_gflop,
                          how == EMBER_METHOD_LANGEVIN ? ", or shorter chains" : "",
                          sample && c->modes.polish_steps > 0 ? ", or fewer modes or polish steps" : "");
  }
  double bytes = 4.0 * c->rows * c->opts.samples * (v->model.y_dim + 1);
  if (c->want_samples && bytes > (double)c->srv->cfg.max_message)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "return_samples: %d rows x %d samples x %d values would exceed the %d-byte "
                          "message limit (--max-message); ask for fewer rows or samples",
                          c->rows, c->opts.samples, v->model.y_dim + 1, c->srv->cfg.max_message);
  c->row_offset = row_offset;
  version_ref(v);
  c->version = v;
  return 0;
}

static int decode_predict(srv_call *c, const uint8_t *bytes, long len, srv_status *st) {
  Ember__V1__PredictRequest *req = unpack(&ember__v1__predict_request__descriptor, bytes, len, st);
  if (!req) return -1;
  model_version *v = rpc_ember_resolve(c, req->model, req->version, st);
  int rc = -1, rows = -1;
  ember_err shape;
  const ember_encoder_shape *es = v && v->model.enc ? &v->model.enc->shape : NULL;
  if (v && ember_wire_predict_input(req, v->model.x_dim, es, &rows, &shape) < 0) rows = -1;
  if (v) rc = rpc_ember_check_infer(c, v, req->options, req->x, rows, es ? &req->images : NULL, &shape,
                                    req->row_offset, st);
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return rc;
}

static int decode_sample(srv_call *c, const uint8_t *bytes, long len, srv_status *st) {
  Ember__V1__SampleRequest *req = unpack(&ember__v1__sample_request__descriptor, bytes, len, st);
  if (!req) return -1;
  model_version *v = rpc_ember_resolve(c, req->model, req->version, st);
  int rc = -1;
  if (v) {
    ember_modes_opts mo;
    ember_err err;
    if (v->model.method == EMBER_METHOD_MSE) {
      srv_status_set(st, GRPC_STATUS_FAILED_PRECONDITION,
                     "model '%s' is explicit (mse): it has one answer per input and no energy to sample; use Predict",
                     req->model);
    } else if (ember_wire_modes_from_msg(req, &mo, &err) < 0) {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
    } else {
      int rows = -1;
      ember_err shape;
      const ember_encoder_shape *es = v->model.enc ? &v->model.enc->shape : NULL;
      if (ember_wire_sample_input(req, v->model.x_dim, es, &rows, &shape) < 0) rows = -1;
      c->modes = mo;
      c->want_samples = req->return_samples;
      rc = rpc_ember_check_infer(c, v, req->options, req->x, rows, es ? &req->images : NULL, &shape,
                                 req->row_offset, st);
    }
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return rc;
}

/* The entry and version GetModel describes: version 0 with no loaded version describes the
 * entry alone (its load errors); anything resolve refuses is answered as resolve says. */
static int decode_get_model(srv_call *c, const uint8_t *bytes, long len, srv_status *st) {
  Ember__V1__GetModelRequest *req = unpack(&ember__v1__get_model_request__descriptor, bytes, len, st);
  if (!req) return -1;
  model_entry *e = srv_valid_model_name(req->model) ? registry_find(c->srv, req->model) : NULL;
  model_version *v = e ? registry_version(e, req->version) : NULL;
  int rc = 0;
  if (!e || (req->version != 0 && !v)) {
    rpc_ember_resolve(c, req->model, req->version, st); /* fails, saying why */
    rc = -1;
  } else {
    c->entry = e;
    if (v) version_ref(v);
    c->version = v;
  }
  protobuf_c_message_free_unpacked(&req->base, NULL);
  return rc;
}

int rpc_ember_decode(srv_call *c, const uint8_t *bytes, long len, srv_status *st) {
  switch (c->rpc) {
  case RPC_PREDICT: return decode_predict(c, bytes, len, st);
  case RPC_SAMPLE: return decode_sample(c, bytes, len, st);
  case RPC_GET_MODEL: return decode_get_model(c, bytes, len, st);
  case RPC_LIST_MODELS: {
    Ember__V1__ListModelsRequest *req = unpack(&ember__v1__list_models_request__descriptor, bytes, len, st);
    if (!req) return -1;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    return 0;
  }
  default: return srv_status_set(st, GRPC_STATUS_INTERNAL, "unexpected method");
  }
}

/* ---- ModelInfo ------------------------------------------------------------------------------ */

/* Everything a ModelInfo points to, freed together. */
typedef struct info_mem {
  Ember__V1__ModelInfo info;
  Ember__V1__InferenceOptions defaults;
  Ember__V1__LangevinOptions langevin;
  Ember__V1__ImageEncoder encoder; /* image models */
  Ember__V1__ImageShape image;
  char conv[8 * 24];
  Ember__V1__ModelStats stats;
  Ember__V1__ModelStats__FailuresEntry fail[EMBER_WIRE_NCODES];
  Ember__V1__ModelStats__FailuresEntry *failp[EMBER_WIRE_NCODES];
  Ember__V1__LoadError *errors;
  Ember__V1__LoadError **errorp;
  int64_t *versions;
  float *lo, *hi;
} info_mem;

static int fill_info(info_mem *im, const model_entry *e, const model_version *v) {
  memset(im, 0, sizeof *im);
  ember__v1__model_info__init(&im->info);
  ember__v1__model_stats__init(&im->stats);
  Ember__V1__ModelInfo *info = &im->info;
  info->name = (char *)e->name;
  const int nprob = registry_problems(e);
  im->versions = malloc(sizeof(int64_t) * (size_t)(e->nversions + 1));
  im->errors = calloc((size_t)nprob + 1, sizeof *im->errors);
  im->errorp = calloc((size_t)nprob + 1, sizeof *im->errorp);
  if (!im->versions || !im->errors || !im->errorp) return -1;
  for (int i = 0; i < e->nversions; i++) im->versions[i] = e->versions[i]->version;
  info->n_versions = (size_t)e->nversions;
  info->versions = im->versions;
  for (int i = 0; i < nprob; i++) {
    load_error le;
    registry_problem(e, i, &le);
    ember__v1__load_error__init(&im->errors[i]);
    im->errors[i].version = le.version;
    im->errors[i].path = le.path ? le.path : (char *)"";
    im->errors[i].message = le.message ? le.message : (char *)"";
    im->errors[i].unix_time = le.when;
    im->errorp[i] = &im->errors[i];
  }
  info->n_load_errors = (size_t)nprob;
  info->load_errors = im->errorp;
  info->default_version = e->default_version;
  info->pinned_version = e->policy_ok ? e->policy.pin : 0;
  if (v) {
    const ember_model *m = &v->model;
    info->version = v->version;
    info->method = (char *)ember_method_name(m->method);
    info->x_dim = (uint32_t)m->x_dim;
    info->y_dim = (uint32_t)m->y_dim;
    info->n_x_names = (size_t)m->x_dim; /* the signature: the model's own arrays */
    info->x_names = m->x_names;
    info->n_y_names = (size_t)m->y_dim;
    info->y_names = m->y_names;
    info->arch = (char *)ember_arch_name(m->net.shape.arch);
    info->width = (uint32_t)m->net.shape.width;
    info->depth = (uint32_t)m->net.shape.depth;
    im->lo = malloc(sizeof(float) * (size_t)m->y_dim);
    im->hi = malloc(sizeof(float) * (size_t)m->y_dim);
    if (!im->lo || !im->hi) return -1;
    ember_model_denorm_y(m, m->y_lo, 1, im->lo);
    ember_model_denorm_y(m, m->y_hi, 1, im->hi);
    info->n_y_lo = info->n_y_hi = (size_t)m->y_dim;
    info->y_lo = im->lo;
    info->y_hi = im->hi;
    /* every field that applies to the model: a client merges them onto the library's defaults */
    ember_wire_infer_to_msg(&m->infer, ember_wire_infer_fields(m->method), &im->defaults, &im->langevin);
    info->defaults = &im->defaults;
    if (m->enc) { /* what Predict and Sample must send */
      const ember_encoder_shape *es = &m->enc->shape;
      ember__v1__image_encoder__init(&im->encoder);
      ember__v1__image_shape__init(&im->image);
      im->image.height = (uint32_t)es->h;
      im->image.width = (uint32_t)es->w;
      im->image.channels = (uint32_t)es->c;
      ember_conv_spec_text(es, im->conv, sizeof im->conv);
      im->encoder.shape = &im->image;
      im->encoder.extra = (uint32_t)es->extra;
      im->encoder.conv = im->conv;
      im->encoder.head = (char *)ember_head_name(es->head);
      im->encoder.features = (uint32_t)m->enc->nfeat;
      info->encoder = &im->encoder;
    }
  }
  const model_stats *st = &e->stats;
  im->stats.requests = st->requests;
  im->stats.ok = st->ended[0][GRPC_STATUS_OK] + st->ended[1][GRPC_STATUS_OK];
  size_t nf = 0;
  for (int code = 1; code < EMBER_WIRE_NCODES; code++)
    if (st->ended[0][code] + st->ended[1][code]) {
      ember__v1__model_stats__failures_entry__init(&im->fail[nf]);
      im->fail[nf].key = (char *)srv_status_name((grpc_status_code)code);
      im->fail[nf].value = st->ended[0][code] + st->ended[1][code];
      im->failp[nf] = &im->fail[nf];
      nf++;
    }
  im->stats.n_failures = nf;
  im->stats.failures = im->failp;
  im->stats.batches = st->batches;
  im->stats.batched_requests = st->batched_requests;
  im->stats.batched_rows = st->batched_rows;
  if (st->batches) {
    im->stats.avg_batch_requests = (double)st->batched_requests / (double)st->batches;
    im->stats.avg_batch_rows = (double)st->batched_rows / (double)st->batches;
    im->stats.avg_compute_ms = st->compute_ms_sum / (double)st->batches;
  }
  if (st->batched_requests) im->stats.avg_queue_ms = st->queue_ms_sum / (double)st->batched_requests;
  info->stats = &im->stats;
  return 0;
}

static void free_info(info_mem *im) {
  free(im->versions);
  free(im->errors);
  free(im->errorp);
  free(im->lo);
  free(im->hi);
}

static void describe_model(srv_call *c) {
  info_mem im;
  if (fill_info(&im, c->entry, c->version) == 0) srv_call_reply(c, &im.info);
  else srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory describing model '%s'", c->entry->name);
  free_info(&im);
}

static void list_models(srv_call *c) {
  server *s = c->srv;
  int n = 0;
  for (model_entry *e = s->models; e; e = e->next) n += registry_listed(e);
  info_mem *ims = calloc((size_t)n + 1, sizeof *ims);
  Ember__V1__ModelInfo **infos = calloc((size_t)n + 1, sizeof *infos);
  int ok = ims && infos;
  int i = 0;
  for (model_entry *e = s->models; ok && e; e = e->next) {
    if (!registry_listed(e)) continue;
    ok = fill_info(&ims[i], e, registry_version(e, 0)) == 0;
    infos[i] = &ims[i].info;
    i++;
  }
  if (ok) {
    Ember__V1__ListModelsResponse resp = EMBER__V1__LIST_MODELS_RESPONSE__INIT;
    resp.n_models = (size_t)n;
    resp.models = infos;
    srv_call_reply(c, &resp);
  } else {
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory listing models");
  }
  for (int k = 0; ims && k < i; k++) free_info(&ims[k]);
  free(ims);
  free(infos);
}

void rpc_ember_handle(srv_call *c) {
  server *s = c->srv;
  /* Draining answers every call as usual: balancers and clients are still learning that this
   * replica is going away (main.c). Only once the grace period is over is it too late. */
  if (s->grace_over && (c->rpc == RPC_PREDICT || c->rpc == RPC_SAMPLE)) {
    srv_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
    return;
  }
  uint8_t *bytes;
  long len = srv_bytes(c->payload, &bytes);
  srv_status st;
  int rc = rpc_ember_decode(c, bytes, len, &st);
  free(bytes);
  if (rc < 0) {
    srv_call_fail_status(c, &st);
    return;
  }
  switch (c->rpc) {
  case RPC_PREDICT:
  case RPC_SAMPLE: batcher_submit(s, c); break;
  case RPC_GET_MODEL: describe_model(c); break;
  default: list_models(c); break;
  }
}

/* ---- answers after compute ------------------------------------------------------------------ */

void rpc_ember_complete(srv_call *c, const float *x, const float *y, const float *e,
                        const float *my, const float *me, const float *mw, const int *count,
                        const float *pop_y, const float *pop_e) {
  if (c->rpc == RPC_KS_MODEL_INFER) {
    rpc_kserve_complete(c, y, e);
    return;
  }
  const ember_model *m = &c->version->model;
  const int d = m->y_dim;
  /* each row's distance from the training data, as local `ember predict` measures it */
  float *z = malloc((size_t)c->rows * sizeof *z);
  if (!z) {
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory building the answer");
    return;
  }
  ember_model_x_max_abs_z(m, x, c->rows, z, NULL);
  if (c->rpc == RPC_PREDICT) {
    Ember__V1__PredictResponse resp = EMBER__V1__PREDICT_RESPONSE__INIT;
    resp.n_y = (size_t)c->rows * (size_t)d;
    resp.y = (float *)y;
    resp.n_energy = (size_t)c->rows;
    resp.energy = (float *)e;
    resp.model_version = c->version->version;
    resp.y_dim = (uint32_t)d;
    resp.n_x_max_abs_z = (size_t)c->rows;
    resp.x_max_abs_z = z;
    srv_call_reply(c, &resp);
    free(z);
    return;
  }
  const int k = c->modes.k;
  int total = 0;
  for (int r = 0; r < c->rows; r++) total += count[r];
  Ember__V1__SampleRow *rows = calloc((size_t)c->rows, sizeof *rows);
  Ember__V1__SampleRow **rowp = calloc((size_t)c->rows, sizeof *rowp);
  Ember__V1__Mode *modes = calloc((size_t)total + 1, sizeof *modes);
  Ember__V1__Mode **modep = calloc((size_t)total + 1, sizeof *modep);
  if (!rows || !rowp || !modes || !modep) {
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory building the answer");
  } else {
    int at = 0;
    for (int r = 0; r < c->rows; r++) {
      ember__v1__sample_row__init(&rows[r]);
      rows[r].n_modes = (size_t)count[r];
      rows[r].modes = modep + at;
      if (c->want_samples && pop_y && pop_e) {
        size_t n = (size_t)c->opts.samples;
        rows[r].n_samples = n * d;
        rows[r].samples = (float *)pop_y + (size_t)r * n * d;
        rows[r].n_sample_energy = n;
        rows[r].sample_energy = (float *)pop_e + (size_t)r * n;
      }
      for (int j = 0; j < count[r]; j++, at++) {
        size_t slot = (size_t)r * k + j;
        ember__v1__mode__init(&modes[at]);
        modes[at].n_y = (size_t)d;
        modes[at].y = (float *)my + slot * d;
        modes[at].energy = me[slot];
        modes[at].weight = mw[slot];
        modep[at] = &modes[at];
      }
      rowp[r] = &rows[r];
    }
    Ember__V1__SampleResponse resp = EMBER__V1__SAMPLE_RESPONSE__INIT;
    resp.n_rows = (size_t)c->rows;
    resp.rows = rowp;
    resp.model_version = c->version->version;
    resp.y_dim = (uint32_t)d;
    resp.n_x_max_abs_z = (size_t)c->rows;
    resp.x_max_abs_z = z;
    srv_call_reply(c, &resp);
  }
  free(z);
  free(rows);
  free(rowp);
  free(modes);
  free(modep);
}
