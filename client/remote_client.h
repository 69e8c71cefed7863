/* remote_client.h - the ember CLI's remote mode over libember_client (client/lib/).
 *
 * The connection, its security, the calls and the Predict/Sample exchanges are the library's
 * (ember/client.h, and client_int.h for the parts that take protobuf-c messages); what is
 * here is the CLI's side of them: the security flags every remote verb takes, the default
 * deadline, opening a client with messages in the flags' words, and printing a failure.
 *
 *     remote_client *c;  remote_status st;
 *     remote_init();
 *     if (remote_open(&c, "127.0.0.1:50051", 10000, &st) == GRPC_STATUS_OK) {
 *       Ember__V1__ModelInfo *info;
 *       if (remote_get_model(c, "toy", 0, &info, &st) == GRPC_STATUS_OK) {
 *         ...;  ember__v1__model_info__free_unpacked(info, NULL);
 *       } else remote_report("info", &st);       // "ember info: server says NOT_FOUND: ..."
 *     }
 *     remote_close(c);
 *     remote_shutdown();
 *
 * A client is the library's, so it may be used from several threads; the CLI uses one.
 */
#ifndef EMBER_REMOTE_CLIENT_H
#define EMBER_REMOTE_CLIENT_H

#include <grpc/grpc.h>

#include "client_int.h"
#include "ember/net.h"

typedef ember_client remote_client;
typedef ember_client_status remote_status;

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

/* Quiets gRPC's own log lines unless GRPC_VERBOSITY asks for them, and grpc_init; once per
 * process, around everything else here. */
void remote_init(void);
void remote_shutdown(void);

/* The default deadline of a request, milliseconds: $EMBER_DEADLINE_MS when it is a positive
 * integer (a slow link, or a slow build such as the ThreadSanitizer one the tests run), else
 * 10000. --deadline-ms overrides it. */
int remote_default_deadline_ms(void);

/* ember_client_open with the security flags of remote_security_opts() (and $EMBER_TOKEN
 * without --token-file), messages in the flags' words (--server, --tls-ca, ...). *c is NULL
 * on error. */
grpc_status_code remote_open(remote_client **c, const char *target, int deadline_ms, remote_status *st);
/* ember_client_close; NULL is allowed. */
void remote_close(remote_client *c);

/* One unary call under the client's deadline (ember__client_call). */
grpc_status_code remote_call(remote_client *c, ember__method m, const ProtobufCMessage *req,
                             ProtobufCMessage **resp, remote_status *st);
grpc_status_code remote_get_model(remote_client *c, const char *name, int64_t version,
                                  Ember__V1__ModelInfo **out, remote_status *st);
grpc_status_code remote_list_models(remote_client *c, Ember__V1__ListModelsResponse **out,
                                    remote_status *st);

/* "INVALID_ARGUMENT" for GRPC_STATUS_INVALID_ARGUMENT (ember_wire_status_name); "CODE_<n>"
 * past the known ones (buf holds at least 16 bytes and is used only then). */
const char *remote_code_name(grpc_status_code code, char *buf);
/* Prints to stderr "ember VERB: server says CODE: details"; for a server never reached
 * "ember VERB: CODE: could not reach HOST:PORT (details)"; for a client-side error
 * "ember VERB: details". */
void remote_report(const char *verb, const remote_status *st);

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
