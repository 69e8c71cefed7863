/* remote_client.c - the CLI's side of libember_client: the security flags, the default
 * deadline, opening a client in the flags' words, and the one-line failure reports.
 *
 * Everything that talks to the server is the library's (client/lib/); this file only maps the
 * CLI's process-wide flags onto an ember_client_config and a status onto stderr.
 */
#include "remote_client.h"

#include "wire.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include <grpc/support/log.h>

static const ember__words cli_words = {"--server", "--tls-ca", "--tls-cert", "--tls-key", "EMBER_TOKEN",
                                       "--token-file"};

static remote_security security;

remote_security *remote_security_opts(void) { return &security; }

const char *remote_code_name(grpc_status_code code, char *buf) {
  const char *name = ember_wire_status_name(code);
  if (name) return name;
  snprintf(buf, 16, "CODE_%d", (int)code);
  return buf;
}

void remote_report(const char *verb, const remote_status *st) {
  char buf[16];
  const char *name = remote_code_name((grpc_status_code)st->code, buf);
  switch (st->origin) {
  case EMBER_CLIENT_FROM_CLIENT:
    fprintf(stderr, "ember %s: %s\n", verb, st->details);
    break;
  case EMBER_CLIENT_UNREACHABLE:
    fprintf(stderr, "ember %s: %s: %s\n", verb, name, st->details);
    break;
  default:
    if (st->details[0]) fprintf(stderr, "ember %s: server says %s: %s\n", verb, name, st->details);
    else fprintf(stderr, "ember %s: server says %s\n", verb, name);
    break;
  }
}

/* gRPC's own log lines (a failed TLS handshake logs one at ERROR) would add a second, less
 * clear line to the one each failure prints; they stay off unless GRPC_VERBOSITY asks. */
static void quiet_log(gpr_log_func_args *args) { (void)args; }

void remote_init(void) {
  if (!getenv("GRPC_VERBOSITY")) gpr_set_log_function(quiet_log);
  grpc_init();
}

void remote_shutdown(void) { grpc_shutdown(); }

int remote_default_deadline_ms(void) {
  const char *s = getenv("EMBER_DEADLINE_MS");
  char *end = NULL;
  long v = s && *s ? strtol(s, &end, 10) : 0;
  return end && !*end && v >= 1 && v <= INT_MAX ? (int)v : 10000;
}

grpc_status_code remote_open(remote_client **c, const char *target, int deadline_ms, remote_status *st) {
  ember_client_config cfg = EMBER_CLIENT_CONFIG_INIT;
  cfg.deadline_ms = deadline_ms;
  cfg.tls_ca_file = security.tls_ca;
  cfg.tls_cert_file = security.tls_cert;
  cfg.tls_key_file = security.tls_key;
  cfg.token_file = security.token_file;
  if (!security.token_file) cfg.token = getenv("EMBER_TOKEN");
  return (grpc_status_code)ember__client_open(c, target, &cfg, &cli_words, st);
}

void remote_close(remote_client *c) { ember_client_close(c); }

grpc_status_code remote_call(remote_client *c, ember__method m, const ProtobufCMessage *req,
                             ProtobufCMessage **resp, remote_status *st) {
  return (grpc_status_code)ember__client_call(c, m, req, resp, 0, st);
}

/* The typed wrappers convert through a local ProtobufCMessage pointer rather than by casting
 * the caller's pointer-to-pointer, which strict aliasing would not allow. */
grpc_status_code remote_get_model(remote_client *c, const char *name, int64_t version,
                                  Ember__V1__ModelInfo **out, remote_status *st) {
  Ember__V1__GetModelRequest req = EMBER__V1__GET_MODEL_REQUEST__INIT;
  req.model = (char *)name;
  req.version = version;
  ProtobufCMessage *r;
  grpc_status_code rc = remote_call(c, EMBER__GET_MODEL, &req.base, &r, st);
  *out = (Ember__V1__ModelInfo *)r;
  return rc;
}

grpc_status_code remote_list_models(remote_client *c, Ember__V1__ListModelsResponse **out,
                                    remote_status *st) {
  Ember__V1__ListModelsRequest req = EMBER__V1__LIST_MODELS_REQUEST__INIT;
  ProtobufCMessage *r;
  grpc_status_code rc = remote_call(c, EMBER__LIST_MODELS, &req.base, &r, st);
  *out = (Ember__V1__ListModelsResponse *)r;
  return rc;
}
