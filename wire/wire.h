/* wire.h - ember's options <-> ember.v1 messages, for emberd and the CLI's remote mode alike.
 *
 * The library's option structs (ember_infer_opts, ember_modes_opts, ember_train_opts) and the
 * protobuf-c messages that carry them (InferenceOptions with its LangevinOptions, SampleRequest's
 * mode fields, TrainRequest) are mapped onto each other here and nowhere else, so that what the
 * CLI sends is what emberd reads, under one reading of the protocol's conventions:
 *
 *   - 0 (or an unset field) means "the default": the model's for inference options, the
 *     method's (ember_train_opts_for_method) for training options, EMBER_MODES_DEFAULTS for
 *     modes. The seed is the exception: 0 is a seed like any other.
 *   - Where 0 is a setting of its own ("off", "no clip") the field sits in a one-field oneof:
 *     set, even to 0, it overrides the default.
 *   - Counts are uint32 on the wire and int in the library: a request's counts are checked
 *     against the library's limits (EMBER_MAX_*) before they are converted, so a refusal names
 *     the value that was sent.
 *
 * Refusals are EMBER_EINVAL with the sentence emberd answers INVALID_ARGUMENT with. The
 * library's own checks (ember_infer_opts_check, ember_train_opts_check) follow the merge here
 * for training; for inference the caller runs them, after its own limits (emberd's
 * --max-samples).
 *
 *     // client: only the options the user gave
 *     Ember__V1__InferenceOptions w;  Ember__V1__LangevinOptions lw;
 *     ember_wire_infer_to_msg(&o, EMBER_WIRE_SAMPLES | EMBER_WIRE_ITERS, &w, &lw);
 *     // server: the model's defaults, overridden by what the request sets
 *     ember_infer_opts r = model->infer;
 *     if (ember_wire_infer_from_msg(req->options, name, model->method, &r, &err) < 0) ...;
 *
 * Also here, because both ends of a call need them: gRPC status codes' names, packing a
 * message into a byte buffer (grpc.c) and the keepalive policy.
 *
 * Also here: a Predict or Sample request's x and its row count (rows_send.c, rows.c), the
 * shape both ends must agree on, and an image model's images, their shape and extras.
 *
 * What it does not do: the request's other fields (model, version, the values of x, the
 * training data), server policy (emberd's limits), or anything with sockets.
 */
#ifndef EMBER_WIRE_H
#define EMBER_WIRE_H

#include <stddef.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>

#include "ember/dfo.h"
#include "ember/model.h"
#include "ember/train.h"
#include "ember/v1/ember.pb-c.h"

/* ---- inference options: InferenceOptions ------------------------------------------------- */

/* The fields of InferenceOptions and its LangevinOptions, one bit each; a set of them says
 * which fields a message carries. */
enum {
  EMBER_WIRE_SAMPLES = 1u << 0,
  EMBER_WIRE_ITERS = 1u << 1,
  EMBER_WIRE_SIGMA = 1u << 2,
  EMBER_WIRE_SHRINK = 1u << 3,
  EMBER_WIRE_TEMPERATURE = 1u << 4,
  EMBER_WIRE_REFINE_STEPS = 1u << 5,
  EMBER_WIRE_REFINE_LR = 1u << 6,
  EMBER_WIRE_CHAIN_STEPS = 1u << 7, /* langevin.chain_steps: ember_infer_opts.langevin.steps */
  EMBER_WIRE_SCHEDULE = 1u << 8,
  EMBER_WIRE_STEP_INIT = 1u << 9,
  EMBER_WIRE_STEP_FINAL = 1u << 10,
  EMBER_WIRE_GAMMA = 1u << 11,
  EMBER_WIRE_NOISE_SCALE = 1u << 12,
  EMBER_WIRE_DELTA_MAX = 1u << 13,
  EMBER_WIRE_AGAIN_STEPS = 1u << 14, /* langevin.again_steps: ember_infer_opts.again_steps */
  EMBER_WIRE_AGAIN_STEP = 1u << 15,
  EMBER_WIRE_OPTIMIZER = 1u << 16   /* InferenceOptions.optimizer */
};
/* The fields that travel in InferenceOptions.langevin: Langevin models only. */
#define EMBER_WIRE_LANGEVIN_FIELDS ((1u << 16) - EMBER_WIRE_CHAIN_STEPS)

/* The bit of the ember_infer_opts field at byte offset `off` (offsetof(ember_infer_opts,
 * langevin.gamma) -> EMBER_WIRE_GAMMA), 0 for an offset that is no field's: for callers that
 * keep their own tables of fields, such as the CLI's options. */
unsigned ember_wire_infer_field_at(size_t off);

/* The fields that apply to a model of this method, as GetModel reports its defaults: every
 * one for langevin; all but the Langevin ones for dfo and ardfo; samples to temperature for
 * mse (an explicit model does not refine). */
unsigned ember_wire_infer_fields(ember_method method);

/* o -> w: the fields in `fields` set from o (oneof cases included), every other field unset,
 * which the protocol reads as "the model's default". lw is storage for w->langevin, which is
 * attached when `fields` has a Langevin field (lw may be NULL otherwise). The seed is left
 * to the caller. A value of 0 in a field without presence reads as the default on the other
 * end: of the values ember_infer_opts_check accepts, only sigma 0 is lost that way (and unused
 * values: step_final under the poly schedule, refine_lr and again_step with their steps off). */
void ember_wire_infer_to_msg(const ember_infer_opts *o, unsigned fields,
                             Ember__V1__InferenceOptions *w, Ember__V1__LangevinOptions *lw);

/* Checks w as a request sent it (NULL: no options, valid): iterations, refine_steps,
 * langevin.chain_steps and langevin.again_steps within the library's limits, an optimizer that
 * applies to a model of this method (ember_optimizer_check), no Langevin field set unless the
 * call runs Langevin chains (the model's method or the chosen optimizer; `model` names the
 * model in that message), a known schedule.
 * 0, or EMBER_EINVAL with the message ("options: iterations must be 1..1000, got 5000"). */
int ember_wire_infer_check(const Ember__V1__InferenceOptions *w, const char *model,
                           ember_method method, ember_err *err);

/* w -> o: every field w sets replaces o's (0 and unset fields leave it); counts saturate at
 * the library's limits and an unknown schedule is passed over, so it never fails. For a
 * description (GetModel's defaults, merged onto EMBER_INFER_DEFAULTS); a request goes through
 * ember_wire_infer_from_msg. NULL w changes nothing. */
void ember_wire_infer_merge(const Ember__V1__InferenceOptions *w, ember_infer_opts *o);

/* A request's options onto o (the model's defaults): ember_wire_infer_check, then
 * ember_wire_infer_merge. 0, or EMBER_EINVAL with o unchanged. */
int ember_wire_infer_from_msg(const Ember__V1__InferenceOptions *w, const char *model,
                              ember_method method, ember_infer_opts *o, ember_err *err);

/* ---- mode options: SampleRequest's modes, radius, min_mass, polish_steps ------------------- */

enum {
  EMBER_WIRE_MODES_K = 1u << 0,
  EMBER_WIRE_MODES_RADIUS = 1u << 1,
  EMBER_WIRE_MODES_MIN_MASS = 1u << 2,
  EMBER_WIRE_MODES_POLISH = 1u << 3
};

/* mo -> req's mode fields in `fields` (the others untouched). min_mass 0 ("keep every mode")
 * is sent as -1, the protocol's "keep all" (0 would read as the default). polish_lr has no
 * field: the server polishes with EMBER_MODES_DEFAULTS's. */
void ember_wire_modes_to_msg(const ember_modes_opts *mo, unsigned fields,
                             Ember__V1__SampleRequest *req);

/* req's mode fields -> *mo, from EMBER_MODES_DEFAULTS: modes and polish_steps within the
 * library's limits as sent, min_mass < 0 keeps every mode, then ember_modes_opts_check.
 * 0, or EMBER_EINVAL with the message. */
int ember_wire_modes_from_msg(const Ember__V1__SampleRequest *req, ember_modes_opts *mo,
                              ember_err *err);

/* ---- training options: TrainRequest ----------------------------------------------------- */

/* o -> r's settings, every one explicit (method, arch and schedule by name, each oneof set)
 * and the method-specific ones only for their method, so that the server trains the model
 * that local training with o makes. r's model, data and dataset fields are left as they are;
 * its strings point to static names. */
void ember_wire_train_to_msg(const ember_train_opts *o, Ember__V1__TrainRequest *r);

/* r's settings -> *o: the method's defaults (ember_train_opts_for_method; "" is dfo), every
 * field r sets on top, then ember_train_opts_check. Refuses an unknown method, arch or
 * schedule, a field of another method, counts that could not be converted, negative steps.
 * 0, or EMBER_EINVAL with the message. */
int ember_wire_train_from_msg(const Ember__V1__TrainRequest *r, ember_train_opts *o,
                              ember_err *err);

/* ---- a request's x and its row count: PredictRequest, SampleRequest (rows_send.c, rows.c) ---- */

/* Client: x (rows, x_dim), row-major, as the request's x, with `rows` set: a client always
 * says how many rows it means, so a server can tell a shape mistake from a batch of rows. */
void ember_wire_predict_x(Ember__V1__PredictRequest *req, const float *x, int rows, int x_dim);
void ember_wire_sample_x(Ember__V1__SampleRequest *req, const float *x, int rows, int x_dim);

/* Server: how many rows of a model's x_dim the request's x holds. With `rows` set, x must hold
 * exactly rows x x_dim values; without, a positive multiple of x_dim. 0 with *rows, or
 * EMBER_EINVAL with the message emberd answers INVALID_ARGUMENT with ("x has 4 values = 2 rows
 * of x_dim 2, request says rows 1"). */
int ember_wire_predict_rows(const Ember__V1__PredictRequest *req, int x_dim, int *rows,
                            ember_err *err);
int ember_wire_sample_rows(const Ember__V1__SampleRequest *req, int x_dim, int *rows,
                           ember_err *err);

/* ---- an image model's input: images, image_shape and extras (rows_send.c, rows.c) ---------- */

/* Client: `rows` images of h x w x c uint8 (row-major NHWC, rows * h * w * c bytes) as the
 * request's images, with image_shape (stored in *shape, which must outlive the request) and
 * rows set, and their extra observations (rows, extra) as x (extra 0: x empty; extra_x may
 * be NULL). Pointers are stored, nothing is copied. */
void ember_wire_predict_images(Ember__V1__PredictRequest *req, Ember__V1__ImageShape *shape,
                               const uint8_t *img, int rows, int h, int w, int c,
                               const float *extra_x, int extra);
void ember_wire_sample_images(Ember__V1__SampleRequest *req, Ember__V1__ImageShape *shape,
                              const uint8_t *img, int rows, int h, int w, int c,
                              const float *extra_x, int extra);

/* Server: how many rows a request holds for a model with x_dim x values and encoder shape
 * enc (NULL: a vector model). A vector model takes x as ember_wire_predict_rows reads it and
 * refuses images; an image model takes images, image_shape equal to enc's h, w, c, exactly
 * rows images when `rows` is set (else a positive whole number of images), and x holding
 * rows x enc->extra values, and refuses x without images. The bytes are not looked at.
 * 0 with *rows, or EMBER_EINVAL with the message emberd answers INVALID_ARGUMENT with, which
 * names the shape expected ("image_shape is 12x12x1; the model takes 12x12x3 images"). */
int ember_wire_predict_input(const Ember__V1__PredictRequest *req, int x_dim,
                             const ember_encoder_shape *enc, int *rows, ember_err *err);
int ember_wire_sample_input(const Ember__V1__SampleRequest *req, int x_dim,
                            const ember_encoder_shape *enc, int *rows, ember_err *err);

/* ---- gRPC glue (grpc.c) --------------------------------------------------------------------- */

/* How many status codes gRPC defines: 0 (OK) to 16 (UNAUTHENTICATED). Counters by code have
 * this many slots. */
#define EMBER_WIRE_NCODES 17

/* "INVALID_ARGUMENT" for GRPC_STATUS_INVALID_ARGUMENT, and so on; NULL past the codes gRPC
 * defines (callers say "UNKNOWN" or "CODE_<n>"). */
const char *ember_wire_status_name(grpc_status_code code);

/* A new byte buffer holding msg's encoding (caller destroys it). */
grpc_byte_buffer *ember_wire_pack(const ProtobufCMessage *msg);

/* The keepalive policy both ends agree on. A client pings a connection that has been silent
 * for EMBER_KEEPALIVE_TIME_MS (calls or not) and drops it when no answer comes within
 * EMBER_KEEPALIVE_TIMEOUT_MS, so a replica whose host vanished without closing its connections
 * is noticed in half a minute, not when the kernel gives up. emberd accepts pings that far
 * apart and more (EMBER_KEEPALIVE_MIN_PING_MS, without calls too); gRPC's default server policy
 * (5 minutes, none without calls) would answer them with GOAWAY "too_many_pings". Other
 * clients (Python grpcio, the balancers) use the same numbers: docs/cluster.md. */
#define EMBER_KEEPALIVE_TIME_MS 20000
#define EMBER_KEEPALIVE_TIMEOUT_MS 10000
#define EMBER_KEEPALIVE_MIN_PING_MS 10000
_Static_assert(EMBER_KEEPALIVE_TIME_MS >= EMBER_KEEPALIVE_MIN_PING_MS,
               "clients would ping more often than emberd allows");

#endif
