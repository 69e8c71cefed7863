/* rpc_kserve.c - the Open Inference Protocol v2 (inference.GRPCInferenceService: KServe's v2,
 * Triton's gRPC API) on emberd's port, beside ember.v1.
 *
 * The protocol is proto/inference/v2/grpc_service.proto; what is served and how it maps onto
 * ember is docs/kserve.md. In short: a model is an ember model, a v2 version is an ember
 * version as a decimal string ("" = the default version), the input is `x` (FP32, [rows,
 * x_dim]) or, for an image model, `images` (UINT8, [rows, H, W, C]) and its extra observations
 * in `x` (FP32, [rows, extra]), the outputs are `y` (FP32, [rows, y_dim]) and `energy` (FP32,
 * [rows]).
 *
 * ModelInfer is a Predict in other clothes: the request is turned into what a Predict would
 * carry (x, and an ember.v1 InferenceOptions built from the request's parameters) and goes
 * through rpc_ember.c's own checks (rpc_ember_resolve, rpc_ember_check_infer) into the same
 * batcher, where it shares Predict's batches (srv_compute_rpc); limits, deadlines, auth and
 * metrics are Predict's. Only the envelope is this file's: parsing the tensors and parameters
 * here, and building the answer in rpc_kserve_complete, which rpc_ember_complete hands
 * ModelInfer's calls to.
 *
 * What it does not do: the protocol's optional extensions (model repository, configuration,
 * statistics, shared memory, ...), or other datatypes and inputs than the above.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inference/v2/grpc_service.pb-c.h"
#include "server.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "raw tensor contents are little-endian: rpc_kserve.c copies them as the host's floats"
#endif

/* c->v2_out: which outputs a ModelInfer asked for, and how to send them */
enum { OUT_Y = 1u, OUT_ENERGY = 2u, OUT_RAW = 4u };

#define PLATFORM "ember"
#define MAX_VERSION_TEXT 24

static void *unpack(const ProtobufCMessageDescriptor *desc, const uint8_t *bytes, long len, srv_status *st) {
  void *msg = len >= 0 ? protobuf_c_message_unpack(desc, NULL, (size_t)len, bytes) : NULL;
  if (!msg) srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid %s message", desc->name);
  return msg;
}

/* A v2 version string -> an ember version: "" is 0 (the default), else a positive decimal. */
static int parse_version(const char *text, int64_t *version, srv_status *st) {
  *version = 0;
  if (!text || !*text) return 0;
  char *end;
  errno = 0;
  long long v = strtoll(text, &end, 10);
  if (*end || errno || v < 1 || text[0] < '0' || text[0] > '9')
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "model version '%.40s' is not a version: expected a positive integer, or "
                          "\"\" for the model's default version",
                          text);
  *version = v;
  return 0;
}

/* The model and version a metadata request or ModelInfer names; NULL with *st. Unknown models
 * and versions are NOT_FOUND, as ember.v1 answers them. */
static model_version *find(srv_call *c, const char *name, const char *version, srv_status *st) {
  int64_t v;
  if (parse_version(version, &v, st) < 0) return NULL;
  return rpc_ember_resolve(c, name ? name : "", v, st);
}

/* ---- metadata and readiness ------------------------------------------------------------------ */

static void version_text(char *buf, int64_t v) { snprintf(buf, MAX_VERSION_TEXT, "%" PRId64, v); }

static void model_metadata(srv_call *c, const Inference__ModelMetadataRequest *req) {
  srv_status st;
  model_version *v = find(c, req->name, req->version, &st);
  if (!v) {
    srv_call_fail_status(c, &st);
    return;
  }
  const model_entry *e = c->entry;
  const ember_model *m = &v->model;
  char *texts = malloc((size_t)e->nversions * MAX_VERSION_TEXT + 1);
  char **versions = malloc(((size_t)e->nversions + 1) * sizeof *versions);
  if (!texts || !versions) {
    free(texts);
    free(versions);
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory describing model '%s'", e->name);
    return;
  }
  for (int i = 0; i < e->nversions; i++) {
    versions[i] = texts + (size_t)i * MAX_VERSION_TEXT;
    version_text(versions[i], e->versions[i]->version);
  }
  Inference__ModelMetadataResponse__TensorMetadata x = INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT,
                                                   im = INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT,
                                                   y = INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT,
                                                   en = INFERENCE__MODEL_METADATA_RESPONSE__TENSOR_METADATA__INIT;
  /* an image model takes its images and, with extra observations, x = those (take_inputs) */
  const ember_encoder_shape *enc = m->enc ? &m->enc->shape : NULL;
  int64_t xs[2] = {-1, enc ? enc->extra : m->x_dim}, ys[2] = {-1, m->y_dim}, es[1] = {-1},
          ims[4] = {-1, enc ? enc->h : 0, enc ? enc->w : 0, enc ? enc->c : 0};
  x.name = "x";
  x.datatype = y.datatype = en.datatype = "FP32";
  x.n_shape = 2;
  x.shape = xs;
  im.name = "images";
  im.datatype = "UINT8";
  im.n_shape = 4;
  im.shape = ims;
  y.name = "y";
  y.n_shape = 2;
  y.shape = ys;
  en.name = "energy";
  en.n_shape = 1;
  en.shape = es;
  Inference__ModelMetadataResponse__TensorMetadata *in[2] = {enc ? &im : &x, &x}, *out[2] = {&y, &en};
  Inference__ModelMetadataResponse r = INFERENCE__MODEL_METADATA_RESPONSE__INIT;
  r.name = (char *)e->name;
  r.n_versions = (size_t)e->nversions;
  r.versions = versions;
  r.platform = PLATFORM;
  r.n_inputs = enc && enc->extra ? 2 : 1;
  r.inputs = in;
  r.n_outputs = 2;
  r.outputs = out;
  srv_call_reply(c, &r);
  free(texts);
  free(versions);
}

/* Ready: the version is loaded and the server is not going away. An unknown model or version
 * is not ready (an answer, not an error); a version that is not a version is an error. */
static void model_ready(srv_call *c, const Inference__ModelReadyRequest *req) {
  int64_t version;
  srv_status st;
  if (parse_version(req->version, &version, &st) < 0) {
    srv_call_fail_status(c, &st);
    return;
  }
  model_entry *e = srv_valid_model_name(req->name) ? registry_find(c->srv, req->name) : NULL;
  Inference__ModelReadyResponse r = INFERENCE__MODEL_READY_RESPONSE__INIT;
  r.ready = e && registry_version(e, version) && !c->srv->draining;
  srv_call_reply(c, &r);
}

/* ---- ModelInfer: request -> a Predict ---------------------------------------------------------- */

/* An integer parameter's value (int64 or uint64 in the protocol) in [lo, hi]. */
static int int_param(const char *key, const Inference__InferParameter *p, uint64_t lo, uint64_t hi,
                     uint64_t *out, srv_status *st) {
  if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM && p->int64_param >= 0)
    *out = (uint64_t)p->int64_param;
  else if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_UINT64_PARAM)
    *out = p->uint64_param;
  else if (p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "parameter '%s' must be %" PRIu64 "..%" PRIu64 ", got %" PRId64,
                          key, lo, hi, p->int64_param);
  else
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "parameter '%s' must be an integer (int64_param or uint64_param)", key);
  if (*out < lo || *out > hi)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "parameter '%s' must be %" PRIu64 "..%" PRIu64 ", got %" PRIu64,
                          key, lo, hi, *out);
  return 0;
}

/* The request's parameters -> ember.v1 InferenceOptions (unset: the model's defaults). Every
 * parameter must be one of these; the option checks themselves are Predict's. */
static int take_params(const Inference__ModelInferRequest *req, Ember__V1__InferenceOptions *w, srv_status *st) {
  ember__v1__inference_options__init(w);
  for (size_t i = 0; i < req->n_parameters; i++) {
    const char *key = req->parameters[i]->key ? req->parameters[i]->key : "";
    const Inference__InferParameter *p = req->parameters[i]->value;
    if (!p || p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE__NOT_SET)
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "parameter '%.64s' has no value", key);
    uint64_t u;
    if (strcmp(key, "samples") == 0) {
      if (int_param(key, p, 1, UINT32_MAX, &u, st) < 0) return -1;
      w->samples = (uint32_t)u;
    } else if (strcmp(key, "iterations") == 0) {
      if (int_param(key, p, 1, UINT32_MAX, &u, st) < 0) return -1;
      w->iterations = (uint32_t)u;
    } else if (strcmp(key, "seed") == 0) {
      if (int_param(key, p, 0, UINT64_MAX, &u, st) < 0) return -1;
      w->seed = u;
    } else if (strcmp(key, "temperature") == 0) {
      double t = p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_DOUBLE_PARAM ? p->double_param
                 : p->parameter_choice_case == INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_INT64_PARAM ? (double)p->int64_param
                                                                                                      : -1.0;
      if (!(t > 0.0 && t <= 3.4e38))
        return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                              "parameter 'temperature' must be a positive number (double_param or int64_param)");
      w->temperature = (float)t;
    } else if (strcmp(key, "optimizer") == 0) {
      ember_optimizer o;
      if (p->parameter_choice_case != INFERENCE__INFER_PARAMETER__PARAMETER_CHOICE_STRING_PARAM ||
          ember_optimizer_parse(p->string_param, &o) < 0)
        return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                              "parameter 'optimizer' must be a string_param: default, dfo, langevin or ardfo");
      w->optimizer = (Ember__V1__InferenceOptions__Optimizer)o;
    } else {
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "unknown parameter '%.64s': emberd takes samples, iterations, seed, "
                            "temperature and optimizer (docs/kserve.md)",
                            key);
    }
  }
  return 0;
}

/* Which outputs the request asks for (none listed: both). */
static int take_outputs(const Inference__ModelInferRequest *req, unsigned *out, srv_status *st) {
  *out = req->n_outputs ? 0 : OUT_Y | OUT_ENERGY;
  for (size_t i = 0; i < req->n_outputs; i++) {
    const char *name = req->outputs[i]->name ? req->outputs[i]->name : "";
    if (strcmp(name, "y") == 0) *out |= OUT_Y;
    else if (strcmp(name, "energy") == 0) *out |= OUT_ENERGY;
    else
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "unknown output '%.64s': the model's outputs are y and energy", name);
  }
  return 0;
}

/* "[a, b, ...]" of a tensor's shape (at most 5 dimensions shown) into buf */
static const char *shape_text(char *buf, size_t size, const Inference__ModelInferRequest__InferInputTensor *in) {
  snprintf(buf, size, "[");
  for (size_t i = 0; i < in->n_shape && i < 5; i++)
    snprintf(buf + strlen(buf), size - strlen(buf), "%s%" PRId64, i ? ", " : "", in->shape[i]);
  snprintf(buf + strlen(buf), size - strlen(buf), "%s]", in->n_shape > 5 ? ", ..." : "");
  return buf;
}

/* How the request carries its tensors: all in raw_input_contents (one entry per input, in
 * order) or all typed; *raw = OUT_RAW or 0. */
static int contents_kind(const Inference__ModelInferRequest *req, unsigned *raw, srv_status *st) {
  *raw = req->n_raw_input_contents ? OUT_RAW : 0;
  if (!*raw) return 0;
  if (req->n_raw_input_contents != req->n_inputs)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "raw_input_contents has %zu entries for %zu input%s",
                          req->n_raw_input_contents, req->n_inputs, req->n_inputs == 1 ? "" : "s");
  for (size_t k = 0; k < req->n_inputs; k++)
    if (req->inputs[k]->contents)
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "input %s has both contents and raw_input_contents: send one of them",
                            req->inputs[k]->name ? req->inputs[k]->name : "");
  return 0;
}

/* Input k's data is n values of its datatype (uint8: UINT8 in uint_contents, else FP32 in
 * fp32_contents): raw_input_contents[k] of n x size bytes, or typed contents with exactly n
 * values in that one field. 0, or -1 with *st. */
static int check_data(const Inference__ModelInferRequest *req, size_t k, const char *name, int uint8, size_t n,
                      unsigned raw, srv_status *st) {
  const Inference__ModelInferRequest__InferInputTensor *in = req->inputs[k];
  const char *type = uint8 ? "UINT8" : "FP32", *field = uint8 ? "uint_contents" : "fp32_contents";
  const size_t size = uint8 ? 1 : sizeof(float);
  char got[96];
  if (raw) {
    if (req->raw_input_contents[k].len != n * size)
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "raw_input_contents of %s has %zu bytes; shape %s of %s needs %zu",
                            name, req->raw_input_contents[k].len, shape_text(got, sizeof got, in), type, n * size);
    return 0;
  }
  const Inference__InferTensorContents *t = in->contents;
  const size_t have = !t ? 0 : uint8 ? t->n_uint_contents : t->n_fp32_contents;
  if (have == 0)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input %s has no data: send contents.%s or raw_input_contents",
                          name, field);
  if (t->n_bool_contents + t->n_int_contents + t->n_int64_contents + t->n_uint_contents + t->n_uint64_contents +
          t->n_fp32_contents + t->n_fp64_contents + t->n_bytes_contents != have)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input %s is %s: its contents go in %s only", name, type, field);
  if (have != n)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "contents of %s has %zu values; shape %s needs %zu", name,
                          have, shape_text(got, sizeof got, in), n);
  return 0;
}

/* Input k, FP32 of shape [rows, cols] (rows given by want_rows >= 1, or any >= 1 when it is
 * 0), raw or typed, into *x (a copy, caller frees) and *rows; -1 with *st. */
static int take_fp32(const Inference__ModelInferRequest *req, size_t k, int cols, int64_t want_rows,
                     unsigned raw, float **x, int *rows, srv_status *st) {
  const Inference__ModelInferRequest__InferInputTensor *in = req->inputs[k];
  const char *type = in->datatype ? in->datatype : "";
  char got[96];
  *x = NULL;
  if (strcmp(type, "FP32") != 0)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input x must be of datatype FP32, got '%.32s'", type);
  if (in->n_shape != 2 || in->shape[0] < 1 || in->shape[1] != cols || (want_rows && in->shape[0] != want_rows)) {
    shape_text(got, sizeof got, in);
    if (want_rows)
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "input x must have shape [%" PRId64 ", %d] (the extra observations of each image), got %s",
                            want_rows, cols, got);
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "input x must have shape [rows, %d] with rows >= 1, got %s", cols, got);
  }
  if (in->shape[0] > (int64_t)INT32_MAX / cols)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input x has too many rows (%" PRId64 ")", in->shape[0]);
  const size_t n = (size_t)in->shape[0] * (size_t)cols;
  if (check_data(req, k, "x", 0, n, raw, st) < 0) return -1;
  const void *src = raw ? (const void *)req->raw_input_contents[k].data : in->contents->fp32_contents;
  *x = malloc(n * sizeof(float));
  if (!*x) return srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for x");
  memcpy(*x, src, n * sizeof(float));
  *rows = (int)in->shape[0];
  return 0;
}

/* Input k, the images: UINT8 [rows, H, W, C] as the model's encoder takes them, raw (the
 * bytes are taken over from the request, no copy) or typed (uint_contents, each 0..255, copied
 * to bytes). *img gets them (the caller frees img->data if it is still set). */
static int take_images(Inference__ModelInferRequest *req, size_t k, const ember_encoder_shape *es,
                       unsigned raw, ProtobufCBinaryData *img, int *rows, srv_status *st) {
  const Inference__ModelInferRequest__InferInputTensor *in = req->inputs[k];
  const char *type = in->datatype ? in->datatype : "";
  char got[96];
  img->data = NULL;
  img->len = 0;
  if (strcmp(type, "UINT8") != 0)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input images must be of datatype UINT8, got '%.32s'", type);
  if (in->n_shape != 4 || in->shape[0] < 1 || in->shape[1] != es->h || in->shape[2] != es->w || in->shape[3] != es->c)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                          "input images must have shape [rows, %d, %d, %d] with rows >= 1 (the model's "
                          "%dx%dx%d images, height x width x channels), got %s",
                          es->h, es->w, es->c, es->h, es->w, es->c, shape_text(got, sizeof got, in));
  const size_t per = (size_t)es->h * es->w * es->c;
  if (in->shape[0] > (int64_t)(INT32_MAX / per))
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "input images has too many rows (%" PRId64 ")", in->shape[0]);
  const size_t n = (size_t)in->shape[0] * per;
  *rows = (int)in->shape[0];
  if (check_data(req, k, "images", 1, n, raw, st) < 0) return -1;
  if (raw) { /* taken over: the request no longer frees them */
    ProtobufCBinaryData *b = &req->raw_input_contents[k];
    *img = *b;
    b->data = NULL;
    b->len = 0;
    return 0;
  }
  const Inference__InferTensorContents *t = in->contents;
  uint8_t *bytes = malloc(n);
  if (!bytes) return srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the images");
  for (size_t i = 0; i < n; i++) {
    if (t->uint_contents[i] > 255) {
      free(bytes);
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                            "contents of images: value %zu is %" PRIu32 "; UINT8 values are 0..255", i,
                            t->uint_contents[i]);
    }
    bytes[i] = (uint8_t)t->uint_contents[i];
  }
  img->data = bytes;
  img->len = n;
  return 0;
}

/* Which input carries `name`: its index, or -1. */
static int input_index(const Inference__ModelInferRequest *req, const char *name) {
  for (size_t k = 0; k < req->n_inputs; k++)
    if (strcmp(req->inputs[k]->name ? req->inputs[k]->name : "", name) == 0) return (int)k;
  return -1;
}

/* The inputs of a model: x (FP32 [rows, x_dim]) for a vector model; images (UINT8 [rows, H, W,
 * C]) and, with extra observations, x (FP32 [rows, extra]) for an image model. Every input
 * must be one of these and each is given once. */
static int take_inputs(Inference__ModelInferRequest *req, const ember_model *m, unsigned *raw, float **x,
                       int *rows, ProtobufCBinaryData *img, srv_status *st) {
  const ember_encoder_shape *es = m->enc ? &m->enc->shape : NULL;
  const int want = es ? 1 + (es->extra > 0) : 1;
  char expect[128];
  if (es)
    snprintf(expect, sizeof expect, "images (UINT8 [rows, %d, %d, %d])%s", es->h, es->w, es->c,
             es->extra ? " and x (FP32 [rows, extra])" : "");
  else
    snprintf(expect, sizeof expect, "x (FP32 [rows, %d])", m->x_dim);
  for (size_t k = 0; k < req->n_inputs; k++) {
    const char *name = req->inputs[k]->name ? req->inputs[k]->name : "";
    const int known = (es && strcmp(name, "images") == 0) || (strcmp(name, "x") == 0 && (!es || es->extra));
    if (!known || input_index(req, name) != (int)k)
      return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s input '%.64s': the model's input%s %s",
                            known ? "repeated" : "unknown", name, want > 1 ? "s are" : " is", expect);
  }
  if (req->n_inputs != (size_t)want)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "expected %d input tensor%s, %s; got %zu", want,
                          want > 1 ? "s" : "", expect, req->n_inputs);
  if (contents_kind(req, raw, st) < 0) return -1;
  if (!es) return take_fp32(req, 0, m->x_dim, 0, *raw, x, rows, st);
  if (take_images(req, (size_t)input_index(req, "images"), es, *raw, img, rows, st) < 0) return -1;
  int xrows;
  return es->extra ? take_fp32(req, (size_t)input_index(req, "x"), es->extra, *rows, *raw, x, &xrows, st) : 0;
}

/* 0 with the call ready for the batcher, or -1 with *st. */
static int decode_infer(srv_call *c, Inference__ModelInferRequest *req, srv_status *st) {
  model_version *v = find(c, req->model_name, req->model_version, st);
  if (!v) return -1;
  Ember__V1__InferenceOptions w;
  unsigned out, raw = 0;
  float *x = NULL;
  int rows = 0;
  ProtobufCBinaryData img = {0, NULL};
  int rc = -1;
  if (take_params(req, &w, st) == 0 && take_outputs(req, &out, st) == 0 &&
      take_inputs(req, &v->model, &raw, &x, &rows, &img, st) == 0)
    rc = rpc_ember_check_infer(c, v, &w, x, rows, v->model.enc ? &img : NULL, NULL, 0, st);
  free(x);
  free(img.data); /* NULL once the call took the images over */
  if (rc < 0) return -1;
  c->v2_out = out | raw;
  if (req->id && *req->id && !(c->v2_id = strdup(req->id)))
    return srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the request's id");
  return 0;
}

void rpc_kserve_handle(srv_call *c) {
  server *s = c->srv;
  if (s->grace_over && c->rpc == RPC_KS_MODEL_INFER) {
    srv_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
    return;
  }
  uint8_t *bytes;
  long len = srv_bytes(c->payload, &bytes);
  srv_status st;
  switch (c->rpc) {
  case RPC_KS_SERVER_LIVE: {
    Inference__ServerLiveRequest *req = unpack(&inference__server_live_request__descriptor, bytes, len, &st);
    if (!req) break;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    Inference__ServerLiveResponse r = INFERENCE__SERVER_LIVE_RESPONSE__INIT;
    r.live = 1;
    srv_call_reply(c, &r);
    free(bytes);
    return;
  }
  case RPC_KS_SERVER_READY: {
    Inference__ServerReadyRequest *req = unpack(&inference__server_ready_request__descriptor, bytes, len, &st);
    if (!req) break;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    Inference__ServerReadyResponse r = INFERENCE__SERVER_READY_RESPONSE__INIT;
    r.ready = health_not_ready(s) == NULL; /* what /readyz says */
    srv_call_reply(c, &r);
    free(bytes);
    return;
  }
  case RPC_KS_SERVER_METADATA: {
    Inference__ServerMetadataRequest *req = unpack(&inference__server_metadata_request__descriptor, bytes, len, &st);
    if (!req) break;
    protobuf_c_message_free_unpacked(&req->base, NULL);
    Inference__ServerMetadataResponse r = INFERENCE__SERVER_METADATA_RESPONSE__INIT;
    r.name = "emberd";
    r.version = EMBER_VERSION_STRING; /* the project's version (CMakeLists.txt) */
    srv_call_reply(c, &r); /* no extensions */
    free(bytes);
    return;
  }
  case RPC_KS_MODEL_READY: {
    Inference__ModelReadyRequest *req = unpack(&inference__model_ready_request__descriptor, bytes, len, &st);
    if (!req) break;
    model_ready(c, req);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    free(bytes);
    return;
  }
  case RPC_KS_MODEL_METADATA: {
    Inference__ModelMetadataRequest *req = unpack(&inference__model_metadata_request__descriptor, bytes, len, &st);
    if (!req) break;
    model_metadata(c, req);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    free(bytes);
    return;
  }
  default: { /* RPC_KS_MODEL_INFER */
    Inference__ModelInferRequest *req = unpack(&inference__model_infer_request__descriptor, bytes, len, &st);
    if (!req) break;
    int rc = decode_infer(c, req, &st);
    protobuf_c_message_free_unpacked(&req->base, NULL);
    if (rc < 0) break;
    free(bytes);
    batcher_submit(s, c);
    return;
  }
  }
  free(bytes);
  srv_call_fail_status(c, &st);
}

/* ---- ModelInfer: the answer ------------------------------------------------------------------- */

void rpc_kserve_complete(srv_call *c, const float *y, const float *e) {
  const int d = c->version->model.y_dim, raw = (c->v2_out & OUT_RAW) != 0;
  char version[MAX_VERSION_TEXT];
  version_text(version, c->version->version);
  Inference__ModelInferResponse__InferOutputTensor t[2];
  Inference__ModelInferResponse__InferOutputTensor *tp[2];
  Inference__InferTensorContents tc[2];
  ProtobufCBinaryData bin[2];
  int64_t shape[2][2] = {{c->rows, d}, {c->rows, 0}};
  size_t n = 0;
  for (int k = 0; k < 2; k++) {
    if (!(c->v2_out & (k == 0 ? OUT_Y : OUT_ENERGY))) continue;
    const float *v = k == 0 ? y : e;
    const size_t count = (size_t)c->rows * (k == 0 ? (size_t)d : 1);
    inference__model_infer_response__infer_output_tensor__init(&t[n]);
    t[n].name = k == 0 ? "y" : "energy";
    t[n].datatype = "FP32";
    t[n].n_shape = k == 0 ? 2 : 1;
    t[n].shape = shape[k];
    if (raw) { /* answered as asked: raw for raw, typed for typed */
      bin[n].len = count * sizeof(float);
      bin[n].data = (uint8_t *)v;
    } else {
      inference__infer_tensor_contents__init(&tc[n]);
      tc[n].n_fp32_contents = count;
      tc[n].fp32_contents = (float *)v;
      t[n].contents = &tc[n];
    }
    tp[n] = &t[n];
    n++;
  }
  Inference__ModelInferResponse r = INFERENCE__MODEL_INFER_RESPONSE__INIT;
  r.model_name = c->entry->name;
  r.model_version = version;
  r.id = c->v2_id ? c->v2_id : "";
  r.n_outputs = n;
  r.outputs = tp;
  if (raw) {
    r.n_raw_output_contents = n;
    r.raw_output_contents = bin;
  }
  srv_call_reply(c, &r);
}
