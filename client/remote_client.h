/* remote_client.h - a small synchronous ember.v1 client over the gRPC core C API.
 *
 * One channel (to HOST:PORT, plaintext or TLS), one completion queue created for pluck, the four
 * methods registered once when the channel opens. Each call packs a protobuf-c request, runs
 * one unary call as a single batch (send metadata, message and close; receive metadata,
 * message and status) under a deadline, and unpacks the response. Calls return the gRPC
 * status code and fill a remote_status with its name and the details text.
 *
 *     remote_client c;  remote_status st;
 *     remote_init();
 *     if (remote_open(&c, "127.0.0.1:50051", 10000, &st) == GRPC_STATUS_OK) {
 *       Ember__V1__ModelInfo *info;
 *       if (remote_get_model(&c, "toy", 0, &info, &st) == GRPC_STATUS_OK) {
 *         ...;  ember__v1__model_info__free_unpacked(info, NULL);
 *       } else remote_report("info", &st);       // "ember info: server says NOT_FOUND: ..."
 *       remote_close(&c);
 *     }
 *     remote_shutdown();
 *
 * The channel and its registered methods are also what remote_bench.c drives asynchronously
 * on its own completion queue (remote_method_handle, remote_unpack, and ember_wire_pack).
 * Not thread-safe: one caller at a time.
 */
#ifndef EMBER_REMOTE_CLIENT_H
#define EMBER_REMOTE_CLIENT_H

#include <grpc/grpc.h>
#include <signal.h>

#include "ember/net.h"
#include "ember/v1/ember.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

typedef enum {
  REMOTE_PREDICT,
  REMOTE_SAMPLE,
  REMOTE_LIST_MODELS,
  REMOTE_GET_MODEL,
  REMOTE_HEALTH_CHECK, /* grpc.health.v1.Health/Check */
  REMOTE_TRAIN,        /* server streaming: remote_stream */
  REMOTE_NMETHODS
} remote_method;

#define REMOTE_DETAILS_MAX 1024

/* Who produced a status: the server (or the gRPC stack on its behalf), a connection that never
 * reached the server, or this client finding the answer malformed. */
typedef enum { REMOTE_FROM_SERVER, REMOTE_UNREACHABLE, REMOTE_FROM_CLIENT } remote_origin;

typedef struct remote_status {
  grpc_status_code code;
  remote_origin origin;
  char details[REMOTE_DETAILS_MAX]; /* the status details (server's message), or ours */
} remote_status;

/* Access control, for every remote verb: TLS (--tls-ca verifies the server; --tls-cert and
 * --tls-key present a client certificate) and a bearer token (--token-file, else the
 * EMBER_TOKEN environment variable) sent as `authorization: Bearer <token>` on every call.
 * Process-wide: the global options (`ember --server H:P --tls-ca F VERB`) and each remote
 * verb's own options (REMOTE_SECURITY_SPECS, which needs args.h) fill the same struct, and
 * remote_open reads it. TLS is on when --tls-ca or --tls-cert is given (without --tls-ca the
 * system's CA certificates verify the server). */
typedef struct remote_security {
  const char *tls_ca, *tls_cert, *tls_key, *token_file;
} remote_security;

remote_security *remote_security_opts(void);

#define REMOTE_SECURITY_SPECS(sec)                                                                   \
  {"tls-ca", OPT_STR, &(sec)->tls_ca, "FILE", "TLS: CA certificate(s) that verify the server (PEM)", 0, 0}, \
  {"tls-cert", OPT_STR, &(sec)->tls_cert, "FILE", "TLS: client certificate chain (PEM), with --tls-key", 0, 0}, \
  {"tls-key", OPT_STR, &(sec)->tls_key, "FILE", "TLS: client private key (PEM)", 0, 0},                  \
  {"token-file", OPT_STR, &(sec)->token_file, "FILE", "bearer token for the server (first line; default: $EMBER_TOKEN)", 0, 0}

typedef struct remote_client {
  const char *target;     /* HOST:PORT as given (not owned) */
  int deadline_ms;        /* per call */
  int reached;            /* some call got an answer from the server */
  int cluster;            /* several addresses or a resolver target: the service config applies */
  grpc_channel *channel;
  grpc_completion_queue *cq; /* pluck: the synchronous calls' queue */
  void *methods[REMOTE_NMETHODS];
  int tls;                   /* the channel uses TLS */
  grpc_metadata auth;        /* authorization: Bearer <token>, when a token is set */
  size_t nmetadata;          /* 1 with a token, else 0 */
} remote_client;

/* grpc_init / grpc_shutdown: once per process, around everything else here. */
void remote_init(void);
void remote_shutdown(void);

/* Creates the channel and queue (connecting is lazy: the first call connects), with TLS and
 * the token of remote_security_opts(). target: HOST:PORT (one server, fail-fast), or a cluster:
 * several IPv4:PORT (or [IPv6]:PORT) separated by commas, or a gRPC target with a scheme
 * (dns:///NAME:PORT, ipv4:..., ipv6:...), balanced per call with retries as
 * deploy/grpc/service-config.json says. Returns GRPC_STATUS_OK, or an error in st (bad target,
 * unreadable certificate or token file); on error nothing needs closing. */
/* The default deadline of a request, milliseconds: $EMBER_DEADLINE_MS when it is a positive
 * integer (a slow link, or a slow build such as the ThreadSanitizer one the tests run), else
 * 10000. --deadline-ms overrides it. */
int remote_default_deadline_ms(void);
grpc_status_code remote_open(remote_client *c, const char *target, int deadline_ms,
                             remote_status *st);
/* Destroys the channel and drains and destroys the queue. Safe on a zeroed client. */
void remote_close(remote_client *c);

/* One unary call of method m: req packed, the answer unpacked into *resp (caller frees with
 * protobuf_c_message_free_unpacked) on GRPC_STATUS_OK, else *resp = NULL and st says why. */
grpc_status_code remote_call(remote_client *c, remote_method m, const ProtobufCMessage *req,
                             ProtobufCMessage **resp, remote_status *st);

/* One server-streaming call of method m without a deadline: req sent, then on_msg(ctx, msg) for
 * every message (unpacked; freed after the callback). *cancel (a flag a signal handler raises,
 * hence sig_atomic_t) is looked at every 100 ms, and when it is non-zero the call is cancelled
 * (the status is then CANCELLED). Returns the final status, in st. */
grpc_status_code remote_stream(remote_client *c, remote_method m, const ProtobufCMessage *req,
                               void (*on_msg)(void *ctx, const ProtobufCMessage *msg), void *ctx,
                               volatile sig_atomic_t *cancel, remote_status *st);

grpc_status_code remote_get_model(remote_client *c, const char *name, int64_t version,
                                  Ember__V1__ModelInfo **out, remote_status *st);
grpc_status_code remote_list_models(remote_client *c, Ember__V1__ListModelsResponse **out,
                                    remote_status *st);
grpc_status_code remote_predict(remote_client *c, const Ember__V1__PredictRequest *req,
                                Ember__V1__PredictResponse **out, remote_status *st);
grpc_status_code remote_sample(remote_client *c, const Ember__V1__SampleRequest *req,
                               Ember__V1__SampleResponse **out, remote_status *st);

/* "INVALID_ARGUMENT" for GRPC_STATUS_INVALID_ARGUMENT (ember_wire_status_name); "CODE_<n>"
 * past the known ones (buf holds at least 16 bytes and is used only then). */
const char *remote_code_name(grpc_status_code code, char *buf);
/* Prints to stderr "ember VERB: server says CODE: details"; for a server never reached
 * "ember VERB: CODE: could not reach HOST:PORT (details)"; for a client-side error
 * "ember VERB: details". */
void remote_report(const char *verb, const remote_status *st);
/* Fills st with a client-side error (a malformed answer, an allocation) and returns code. */
grpc_status_code remote_fail(remote_status *st, grpc_status_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* For asynchronous users of the same channel. */
void *remote_method_handle(const remote_client *c, remote_method m);
/* The metadata every call sends (the authorization header, or none): for
 * GRPC_OP_SEND_INITIAL_METADATA's count and metadata. */
grpc_metadata *remote_call_metadata(remote_client *c, size_t *count);
/* Decodes bb as a message of type d, or NULL if it does not parse. */
ProtobufCMessage *remote_unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d);
/* A deadline ms milliseconds from now. */
gpr_timespec remote_deadline(int ms);

/* The network GetModel describes (arch, width, depth, dims; an mse model's net maps x to y),
 * for parameter and FLOP counts. 0, or -1 if the description is not a valid shape.
 * (Defined in remote_infer.c.) */
int remote_model_shape(const Ember__V1__ModelInfo *m, ember_net_shape *shape);

/* How many networks the model holds: an ardfo model one per y-prefix (y_dim: net j sees
 * y_1..y_j, with the shape above but in_y = j, and every optimiser round runs each of them
 * once), any other model 1. (Defined in remote_infer.c.) */
int remote_model_nets(const Ember__V1__ModelInfo *m);

/* Parameters in all of the model's networks, and multiply-adds per candidate per optimiser
 * round (ember_net_row_macs summed over the networks a round runs). 0, or -1 if the
 * description is not a valid shape. (Defined in remote_infer.c.) */
int remote_model_cost(const Ember__V1__ModelInfo *m, size_t *params, double *round_macs);

#endif
