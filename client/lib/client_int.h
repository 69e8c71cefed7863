/* client_int.h - libember_client's inside, for the library's files and the ember CLI.
 *
 * The public header (ember/client.h) hides gRPC; this one is what the CLI's remote mode
 * (client/remote_*.c) builds on besides it: the client struct's channel, one unary call of any
 * method with protobuf-c messages, a server-streaming call (Train), the Predict and Sample
 * exchanges with the request options already in wire form (the CLI sends every option its
 * flags can say, wire/wire.h), and the words the CLI's messages use for the options.
 * Not installed.
 */
#ifndef EMBER_CLIENT_INT_H
#define EMBER_CLIENT_INT_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "ember/client.h"
#include "ember/v1/ember.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

typedef enum {
  EMBER__PREDICT,
  EMBER__SAMPLE,
  EMBER__LIST_MODELS,
  EMBER__GET_MODEL,
  EMBER__HEALTH_CHECK, /* grpc.health.v1.Health/Check */
  EMBER__TRAIN,        /* server streaming: ember__client_stream */
  EMBER__NMETHODS
} ember__method;

/* How messages name the settings: the public API's field names, or the CLI's flags. */
typedef struct ember__words {
  const char *target, *tls_ca, *tls_cert, *tls_key, *token, *token_file;
} ember__words;

extern const ember__words ember__api_words;

#define EMBER__CQ_POOL 16

struct ember_client {
  char *target;              /* as given (owned) */
  int deadline_ms;           /* per call, by default */
  int cluster;               /* several addresses or a resolver target: the service config applies */
  int tls;                   /* the channel uses TLS */
  const ember__words *words;
  grpc_channel *channel;
  void *methods[EMBER__NMETHODS];
  grpc_metadata auth;        /* authorization: Bearer <token>, when a token is set */
  size_t nmetadata;          /* 1 with a token, else 0 */
  atomic_int reached;        /* some call got an answer from the server */
  /* idle pluck queues: a call takes one (or creates one) and gives it back */
  pthread_mutex_t lock;
  grpc_completion_queue *idle[EMBER__CQ_POOL];
  int nidle;
};

/* ember_client_open with the messages in `words`' terms. */
int ember__client_open(ember_client **out, const char *target, const ember_client_config *cfg,
                       const ember__words *words, ember_client_status *st);

/* Fills st with a client-side error and returns code. */
int ember__fail(ember_client_status *st, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* One unary call of method m under deadline_ms (0: the client's): req packed, the answer
 * unpacked into *resp (caller frees with protobuf_c_message_free_unpacked) on OK, else *resp
 * = NULL and st says why. st must not be NULL. */
int ember__client_call(ember_client *c, ember__method m, const ProtobufCMessage *req,
                       ProtobufCMessage **resp, int deadline_ms, ember_client_status *st);

/* One server-streaming call of method m without a deadline: on_msg(ctx, msg) for every
 * message (freed after the callback). *cancel (a flag a signal handler raises) is looked at
 * every 100 ms; non-zero cancels the call (the status is then CANCELLED). */
int ember__client_stream(ember_client *c, ember__method m, const ProtobufCMessage *req,
                         void (*on_msg)(void *ctx, const ProtobufCMessage *msg), void *ctx,
                         volatile sig_atomic_t *cancel, ember_client_status *st);

/* What a Predict exchange fills: y (rows, y_dim), energy (rows; may be NULL: an answer without
 * energies, an explicit model's, leaves zeros unless need_energy, which calls it malformed),
 * z (rows; may be NULL) each row's x_max_abs_z, with have_z cleared when the server sends
 * none; version: the version that answered. */
typedef struct ember__predict_out {
  int y_dim;
  float *y, *energy, *z;
  int need_energy, have_z;
  int64_t version;
} ember__predict_out;

/* Predict on `rows` rows of x (rows, x_dim) with req's model, version and options (its x, rows
 * and row_offset are set here): the answer is checked (shape, and the version when req names
 * one) and copied out. */
int ember__client_predict(ember_client *c, const Ember__V1__PredictRequest *req, const float *x,
                          int rows, int x_dim, uint64_t row_offset, int deadline_ms,
                          ember__predict_out *out, ember_client_status *st);

/* Sample: as ember__client_predict, with req's mode fields; the outputs as ember_client_sample
 * says (k modes per row), z and version as in ember__predict_out. */
typedef struct ember__sample_out {
  int k, y_dim;
  float *y, *energy, *weight, *z;
  int *count;
  int have_z;
  int64_t version;
} ember__sample_out;

int ember__client_sample(ember_client *c, const Ember__V1__SampleRequest *req, const float *x,
                         int rows, int x_dim, uint64_t row_offset, int deadline_ms,
                         ember__sample_out *out, ember_client_status *st);

/* The same for an image model: `rows` images and their extras (im) instead of x. */
int ember__client_predict_images(ember_client *c, const Ember__V1__PredictRequest *req,
                                 const ember_client_images *im, int rows, uint64_t row_offset,
                                 int deadline_ms, ember__predict_out *out, ember_client_status *st);
int ember__client_sample_images(ember_client *c, const Ember__V1__SampleRequest *req,
                                const ember_client_images *im, int rows, uint64_t row_offset,
                                int deadline_ms, ember__sample_out *out, ember_client_status *st);

/* For asynchronous users of the channel (`ember bench serve`): the method handles, the
 * metadata every call sends (for GRPC_OP_SEND_INITIAL_METADATA), decoding, deadlines. */
void *ember__client_method(const ember_client *c, ember__method m);
grpc_metadata *ember__client_metadata(ember_client *c, size_t *count);
ProtobufCMessage *ember__unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);
gpr_timespec ember__deadline(int ms);

#endif
