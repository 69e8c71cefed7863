/* channel.c - libember_client's connection: the channel, its security, and synchronous calls
 * to emberd over the gRPC core C API.
 *
 * Each call is one batch of all six client operations on a call created from a method handle
 * registered when the channel opened, plucked by its tag (the call's state struct) from a
 * completion queue the call has to itself: queues are taken from a small pool under the
 * client's lock and given back, so any number of threads can call at once (gRPC allows only a
 * few concurrent pluckers per queue) without creating a queue per call. Everything a call
 * allocates - the request's byte buffer, the response's, both metadata arrays, the details
 * slice, the call itself - is released on the one exit path of ember__client_call, whatever
 * happened. The rest of the client (target, credentials, token, method handles) is written
 * once by ember_client_open and only read afterwards; `reached` is atomic.
 *
 * A call that fails with UNAVAILABLE or DEADLINE_EXCEEDED before any call of this client got
 * an answer, on a channel that is not connected, is reported as "could not reach HOST:PORT":
 * that is what a refused or black-holed connection looks like from here. Calls to one
 * HOST:PORT are fail-fast (no wait-for-ready), so a refused connection fails at once, with
 * gRPC's reason, rather than at the deadline.
 *
 * A cluster target (several comma-separated addresses, or a dns:/ipv4:/ipv6: target, which may
 * resolve to several) gets the service config of deploy/grpc/service-config.json, embedded at
 * build time: round_robin over every address, per call; Predict, Sample, GetModel and ListModels
 * wait for a ready replica and are retried on UNAVAILABLE or CANCELLED (a replica that went
 * away, or was stopping); Train is never retried (a second job would train a second model).
 * Every channel keeps the keepalive policy emberd accepts (wire.h). docs/cluster.md has the
 * why and the Python equivalent.
 *
 * Shutdown order (ember_client_close): every call is already unreferenced when it returned;
 * destroy the channel; shut each pooled queue down and pluck until it says
 * GRPC_QUEUE_SHUTDOWN; destroy the queues; grpc_shutdown (ember_client_open's grpc_init).
 */
#include "client_int.h"

#include "wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

static const char *const method_paths[EMBER__NMETHODS] = {
    [EMBER__PREDICT] = "/ember.v1.Ember/Predict",
    [EMBER__SAMPLE] = "/ember.v1.Ember/Sample",
    [EMBER__LIST_MODELS] = "/ember.v1.Ember/ListModels",
    [EMBER__GET_MODEL] = "/ember.v1.Ember/GetModel",
    [EMBER__HEALTH_CHECK] = "/grpc.health.v1.Health/Check",
    [EMBER__TRAIN] = "/ember.v1.Ember/Train",
};

static const ProtobufCMessageDescriptor *const response_types[EMBER__NMETHODS] = {
    [EMBER__PREDICT] = &ember__v1__predict_response__descriptor,
    [EMBER__SAMPLE] = &ember__v1__sample_response__descriptor,
    [EMBER__LIST_MODELS] = &ember__v1__list_models_response__descriptor,
    [EMBER__GET_MODEL] = &ember__v1__model_info__descriptor,
    [EMBER__HEALTH_CHECK] = &grpc__health__v1__health_check_response__descriptor,
    [EMBER__TRAIN] = &ember__v1__train_progress__descriptor,
};

_Static_assert((int)EMBER_CLIENT_UNAUTHENTICATED == (int)GRPC_STATUS_UNAUTHENTICATED &&
                   (int)EMBER_CLIENT_INVALID_ARGUMENT == (int)GRPC_STATUS_INVALID_ARGUMENT &&
                   (int)EMBER_CLIENT_UNAVAILABLE == (int)GRPC_STATUS_UNAVAILABLE &&
                   (int)EMBER_CLIENT_DEADLINE_EXCEEDED == (int)GRPC_STATUS_DEADLINE_EXCEEDED,
               "ember/client.h's codes are gRPC's numbers");

const ember__words ember__api_words = {"target", "tls_ca_file", "tls_cert_file", "tls_key_file",
                                       "token", "token_file"};

const char *ember_client_code_name(int code) {
  const char *name = ember_wire_status_name((grpc_status_code)code);
  return name ? name : "UNKNOWN_CODE";
}

int ember__fail(ember_client_status *st, int code, const char *fmt, ...) {
  st->code = code;
  st->origin = EMBER_CLIENT_FROM_CLIENT;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(st->details, sizeof st->details, fmt, ap);
  va_end(ap);
  return code;
}

gpr_timespec ember__deadline(int ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* ---- access control --------------------------------------------------------------------- */

#define PEM_MAX (1 << 20)
#define TOKEN_MAX 4096
#define DEFAULT_DEADLINE_MS 10000

/* A small file's bytes, NUL-terminated (caller frees), or NULL with st filled. */
static char *read_small_file(const char *flag, const char *path, size_t *len, ember_client_status *st) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%s %s: cannot open: %s", flag, path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(PEM_MAX + 1);
  size_t n = buf ? fread(buf, 1, PEM_MAX + 1, f) : 0;
  int err = ferror(f);
  fclose(f);
  if (!buf || err || n > PEM_MAX) {
    ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%s %s: %s", flag, path,
                !buf ? "out of memory" : err ? "cannot read" : "larger than 1 MiB");
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

static void wipe_free(char *p, size_t n) {
  if (!p) return;
  explicit_bzero(p, n);
  free(p);
}

static int blank(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

/* Builds c->auth from the token: cfg->token, else the first line of cfg->token_file that is
 * neither empty nor a '#' comment, trimmed. No token (or an empty one): no metadata. */
static int load_token(ember_client *c, const ember_client_config *cfg, ember_client_status *st) {
  char *text = NULL;
  size_t len = 0;
  const char *from = NULL, *tok = NULL;
  size_t n = 0;
  if (cfg->token) {
    from = c->words->token;
    tok = cfg->token;
    n = strlen(tok);
    while (n && blank(*tok)) tok++, n--;
    while (n && blank(tok[n - 1])) n--;
    if (!n) return GRPC_STATUS_OK; /* set but empty: no token */
  } else if (cfg->token_file) {
    text = read_small_file(c->words->token_file, cfg->token_file, &len, st);
    if (!text) return st->code;
    from = c->words->token_file;
    for (char *p = text; *p;) {
      char *eol = strchr(p, '\n');
      char *end = eol ? eol : p + strlen(p);
      while (p < end && blank(*p)) p++;
      while (end > p && blank(end[-1])) end--;
      if (end > p && *p != '#') {
        tok = p;
        n = (size_t)(end - p);
        break;
      }
      p = eol ? eol + 1 : end;
    }
    if (!tok) {
      wipe_free(text, len);
      return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%s %s holds no token", c->words->token_file,
                         cfg->token_file);
    }
  } else {
    return GRPC_STATUS_OK;
  }
  int rc = GRPC_STATUS_OK;
  for (size_t i = 0; i < n && rc == GRPC_STATUS_OK; i++)
    if ((unsigned char)tok[i] <= 0x20 || (unsigned char)tok[i] >= 0x7f)
      rc = ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT,
                       "the token from %s holds a character other than printable ASCII (or a blank inside)", from);
  if (rc == GRPC_STATUS_OK && n > TOKEN_MAX)
    rc = ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "the token from %s is longer than %d characters", from, TOKEN_MAX);
  if (rc == GRPC_STATUS_OK) {
    char value[TOKEN_MAX + 8];
    memcpy(value, "Bearer ", 7);
    memcpy(value + 7, tok, n);
    c->auth.key = grpc_slice_from_static_string("authorization");
    c->auth.value = grpc_slice_from_copied_buffer(value, n + 7);
    c->nmetadata = 1;
    explicit_bzero(value, sizeof value);
  }
  wipe_free(text, len);
  return rc;
}

/* TLS channel credentials, or insecure ones when no TLS setting is given; NULL with st. */
static grpc_channel_credentials *channel_credentials(ember_client *c, const ember_client_config *cfg,
                                                     ember_client_status *st) {
  const ember__words *w = c->words;
  if (!cfg->tls && !cfg->tls_ca_file && !cfg->tls_cert_file && !cfg->tls_key_file)
    return grpc_insecure_credentials_create();
  if (!cfg->tls_cert_file != !cfg->tls_key_file) {
    ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%s and %s go together (a client certificate and its key)",
                w->tls_cert, w->tls_key);
    return NULL;
  }
  char *ca = NULL, *cert = NULL, *key = NULL;
  size_t calen = 0, certlen = 0, keylen = 0;
  grpc_channel_credentials *creds = NULL;
  if (cfg->tls_ca_file && !(ca = read_small_file(w->tls_ca, cfg->tls_ca_file, &calen, st))) goto done;
  if (cfg->tls_cert_file) {
    if (!(cert = read_small_file(w->tls_cert, cfg->tls_cert_file, &certlen, st))) goto done;
    if (!(key = read_small_file(w->tls_key, cfg->tls_key_file, &keylen, st))) goto done;
  }
  grpc_ssl_pem_key_cert_pair pair = {key, cert};
  creds = grpc_ssl_credentials_create_ex(ca, cert ? &pair : NULL, NULL, NULL);
  if (!creds) ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "could not set up TLS from the given files");
  else c->tls = 1;
done:
  free(ca);
  free(cert);
  wipe_free(key, keylen);
  return creds;
}

grpc_metadata *ember__client_metadata(ember_client *c, size_t *count) {
  *count = c->nmetadata;
  return c->nmetadata ? &c->auth : NULL;
}

/* deploy/grpc/service-config.json, embedded by client/embed_service_config.cmake */
extern const char ember_service_config[];

/* One "IPv4:PORT" or "[IPv6]:PORT" of a list, the bytes [p, end): its family, or 0. */
static int list_item_family(const char *p, const char *end) {
  const char *host = p, *host_end, *port;
  int family = AF_INET;
  if (p < end && *p == '[') { /* [IPv6]:PORT */
    family = AF_INET6;
    host = p + 1;
    host_end = memchr(host, ']', (size_t)(end - host));
    if (!host_end || host_end + 1 >= end || host_end[1] != ':') return 0;
    port = host_end + 2;
  } else { /* IPv4:PORT */
    host_end = memchr(p, ':', (size_t)(end - p));
    if (!host_end) return 0;
    port = host_end + 1;
  }
  char text[64];
  long v = 0;
  if (host_end == host || (size_t)(host_end - host) >= sizeof text || port == end || end - port > 5) return 0;
  for (const char *q = port; q < end; q++) {
    if (*q < '0' || *q > '9') return 0;
    v = v * 10 + (*q - '0');
  }
  memcpy(text, host, (size_t)(host_end - host));
  text[host_end - host] = '\0';
  unsigned char addr[16];
  return v >= 1 && v <= 65535 && inet_pton(family, text, addr) == 1 ? family : 0;
}

/* The channel target for the given one, in *out (caller frees): a gRPC target with a scheme
 * (dns:, ipv4:, ipv6:) as it is; several comma-separated IPv4:PORT (or [IPv6]:PORT) as gRPC
 * core's ipv4: (ipv6:) list; anything else, one HOST:PORT, as it is. *cluster: the first two,
 * which get the service config. */
static int channel_target(const char *given, const ember__words *w, char **out, int *cluster,
                          ember_client_status *st) {
  static const char *const schemes[] = {"dns:", "ipv4:", "ipv6:"};
  *cluster = 0;
  const char *prefix = "";
  if (!given || !*given) return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "%s: no address given", w->target);
  for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
    if (strncmp(given, schemes[i], strlen(schemes[i])) == 0) *cluster = 1;
  if (!*cluster && strchr(given, ',')) {
    int family = 0;
    for (const char *p = given;;) {
      const char *comma = strchr(p, ',');
      const char *end = comma ? comma : p + strlen(p);
      int f = list_item_family(p, end);
      if (!f || (family && f != family))
        return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT,
                           "%s %s: several addresses must each be IPv4:PORT, or each [IPv6]:PORT "
                           "(for a name, give dns:///NAME:PORT: it balances over every address NAME has)",
                           w->target, given);
      family = f;
      if (!comma) break;
      p = comma + 1;
    }
    prefix = family == AF_INET ? "ipv4:" : "ipv6:";
    *cluster = 1;
  }
  size_t n = strlen(prefix) + strlen(given) + 1;
  if (!(*out = malloc(n))) return ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  snprintf(*out, n, "%s%s", prefix, given);
  return GRPC_STATUS_OK;
}

int ember__client_open(ember_client **out, const char *target, const ember_client_config *cfg,
                       const ember__words *words, ember_client_status *st) {
  static const ember_client_config defaults = EMBER_CLIENT_CONFIG_INIT;
  ember_client_status scratch;
  if (!st) st = &scratch;
  memset(st, 0, sizeof *st);
  *out = NULL;
  if (!cfg) cfg = &defaults;
  if (cfg->deadline_ms < 0)
    return ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "deadline_ms must be >= 0 (0: %d), got %d",
                       DEFAULT_DEADLINE_MS, cfg->deadline_ms);
  ember_client *c = calloc(1, sizeof *c);
  if (!c) return ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
  grpc_init(); /* ember_client_close's grpc_shutdown balances it */
  pthread_mutex_init(&c->lock, NULL);
  atomic_init(&c->reached, 0);
  c->words = words;
  c->deadline_ms = cfg->deadline_ms ? cfg->deadline_ms : DEFAULT_DEADLINE_MS;
  c->target = target ? strdup(target) : NULL;
  char *channel_name = NULL;
  grpc_channel_credentials *creds = NULL;
  if (target && !c->target) {
    ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    goto fail;
  }
  if (channel_target(target, words, &channel_name, &c->cluster, st) != GRPC_STATUS_OK) goto fail;
  if (load_token(c, cfg, st) != GRPC_STATUS_OK) goto fail;
  if (!(creds = channel_credentials(c, cfg, st))) goto fail;
  grpc_arg args[] = {
      /* Answers are as large as the rows asked for; the server bounds requests, not us. */
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, .value.integer = -1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIME_MS, .value.integer = EMBER_KEEPALIVE_TIME_MS},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_TIMEOUT_MS, .value.integer = EMBER_KEEPALIVE_TIMEOUT_MS},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, .value.integer = 1},
      /* keep pinging a connection that carries no calls (gRPC's default stops after 2) */
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, .value.integer = 0},
      /* cluster targets only (the count below leaves these two out otherwise) */
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_RETRIES, .value.integer = 1},
      {.type = GRPC_ARG_STRING, .key = GRPC_ARG_SERVICE_CONFIG, .value.string = (char *)ember_service_config},
  };
  size_t nargs = sizeof args / sizeof *args - (c->cluster ? 0 : 2);
  grpc_channel_args chargs = {nargs, args};
  c->channel = grpc_channel_create(channel_name, creds, &chargs);
  if (!c->channel) {
    ember__fail(st, GRPC_STATUS_INVALID_ARGUMENT, "cannot use '%s' as a server address", target);
    goto fail;
  }
  for (int m = 0; m < EMBER__NMETHODS; m++)
    c->methods[m] = grpc_channel_register_call(c->channel, method_paths[m], NULL, NULL);
  free(channel_name);
  grpc_channel_credentials_release(creds);
  *out = c;
  return GRPC_STATUS_OK;
fail:
  free(channel_name);
  if (creds) grpc_channel_credentials_release(creds);
  ember_client_close(c);
  return st->code;
}

int ember_client_open(ember_client **out, const char *target, const ember_client_config *cfg,
                      ember_client_status *st) {
  return ember__client_open(out, target, cfg, &ember__api_words, st);
}

void ember_client_close(ember_client *c) {
  if (!c) return;
  if (c->channel) grpc_channel_destroy(c->channel);
  for (int i = 0; i < c->nidle; i++) {
    grpc_completion_queue_shutdown(c->idle[i]);
    /* Every batch was plucked already; this returns GRPC_QUEUE_SHUTDOWN at once. */
    while (grpc_completion_queue_pluck(c->idle[i], NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(c->idle[i]);
  }
  if (c->nmetadata) {
    grpc_slice_unref(c->auth.key);
    grpc_slice_unref(c->auth.value);
  }
  pthread_mutex_destroy(&c->lock);
  free(c->target);
  free(c);
  grpc_shutdown();
}

/* A pluck queue of the calling thread's own: a pooled one, or a new one. */
static grpc_completion_queue *take_queue(ember_client *c) {
  grpc_completion_queue *q = NULL;
  pthread_mutex_lock(&c->lock);
  if (c->nidle > 0) q = c->idle[--c->nidle];
  pthread_mutex_unlock(&c->lock);
  return q ? q : grpc_completion_queue_create_for_pluck(NULL);
}

/* Gives a queue back to the pool (every batch on it plucked), or destroys it when the pool is
 * full. */
static void give_queue(ember_client *c, grpc_completion_queue *q) {
  pthread_mutex_lock(&c->lock);
  int kept = c->nidle < EMBER__CQ_POOL;
  if (kept) c->idle[c->nidle++] = q;
  pthread_mutex_unlock(&c->lock);
  if (kept) return;
  grpc_completion_queue_shutdown(q);
  while (grpc_completion_queue_pluck(q, NULL, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(q);
}

void *ember__client_method(const ember_client *c, ember__method m) { return c->methods[m]; }

ProtobufCMessage *ember__unpack(grpc_byte_buffer *bb, const ProtobufCMessageDescriptor *d) {
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  ProtobufCMessage *m = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
  grpc_slice_unref(s);
  return m;
}

/* The state of one synchronous call; its address is the batch's tag. */
typedef enum { UNARY_CALL = 1 } unary_kind;

typedef struct unary_call {
  unary_kind kind;
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
} unary_call;

static void copy_details(ember_client_status *st, grpc_slice details) {
  size_t n = GRPC_SLICE_LENGTH(details);
  if (n >= sizeof st->details) n = sizeof st->details - 1;
  memcpy(st->details, GRPC_SLICE_START_PTR(details), n);
  st->details[n] = '\0';
}

/* Turns a transport failure on a never-connected channel into "could not reach". */
static void classify(ember_client *c, int deadline_ms, ember_client_status *st) {
  if (st->code == GRPC_STATUS_OK) {
    atomic_store(&c->reached, 1);
    return;
  }
  int transport = st->code == GRPC_STATUS_UNAVAILABLE || st->code == GRPC_STATUS_DEADLINE_EXCEEDED;
  if (!transport || atomic_load(&c->reached) ||
      grpc_channel_check_connectivity_state(c->channel, 0) == GRPC_CHANNEL_READY) {
    atomic_store(&c->reached, 1);
    return;
  }
  const ember__words *w = c->words;
  char why[EMBER_CLIENT_DETAILS_MAX];
  memcpy(why, st->details, sizeof why);
  st->origin = EMBER_CLIENT_UNREACHABLE;
  if (st->code == GRPC_STATUS_DEADLINE_EXCEEDED)
    snprintf(st->details, sizeof st->details, "could not reach %s within %d ms%s%.900s%s", c->target,
             deadline_ms, why[0] ? " (" : "", why, why[0] ? ")" : "");
  else
    snprintf(st->details, sizeof st->details, "could not reach %s%s%.900s%s", c->target,
             why[0] ? " (" : "", why, why[0] ? ")" : "");
  /* what a TLS mismatch looks like from here, in the terms of the settings */
  char hint[256] = "";
  if (!c->tls && strstr(why, "Socket closed"))
    snprintf(hint, sizeof hint, "; if the server uses TLS, give %s FILE", w->tls_ca);
  else if (c->tls && strstr(why, "wrong version number"))
    snprintf(hint, sizeof hint, "; the server does not seem to use TLS: drop %s/%s/%s", w->tls_ca, w->tls_cert,
             w->tls_key);
  else if (c->tls && strstr(why, "certificate verify failed"))
    snprintf(hint, sizeof hint, "; the server's certificate is not signed by %s, or does not name this host",
             w->tls_ca);
  else if (c->tls && strstr(why, "Socket closed"))
    snprintf(hint, sizeof hint, "; if the server requires client certificates, give %s FILE %s FILE", w->tls_cert,
             w->tls_key);
  if (hint[0]) {
    size_t used = strlen(st->details);
    snprintf(st->details + used, sizeof st->details - used, "%s", hint);
  }
}

int ember__client_call(ember_client *c, ember__method m, const ProtobufCMessage *req,
                       ProtobufCMessage **resp, int deadline_ms, ember_client_status *st) {
  unary_call u = {.kind = UNARY_CALL, .status = GRPC_STATUS_UNKNOWN};
  grpc_metadata_array_init(&u.initial_md);
  grpc_metadata_array_init(&u.trailing_md);
  u.details = grpc_empty_slice();
  *resp = NULL;
  memset(st, 0, sizeof *st);
  if (deadline_ms <= 0) deadline_ms = c->deadline_ms;
  grpc_completion_queue *cq = take_queue(c);
  int rc;

  u.send = ember_wire_pack(req);
  if (!u.send || !cq) {
    rc = ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the request");
    goto done;
  }
  u.call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq,
                                               c->methods[m], ember__deadline(deadline_ms), NULL);
  if (!u.call) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "could not create a call to %s", method_paths[m]);
    goto done;
  }
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.metadata = ember__client_metadata(c, &ops[0].data.send_initial_metadata.count);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = u.send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &u.initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &u.recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &u.trailing_md;
  ops[5].data.recv_status_on_client.status = &u.status;
  ops[5].data.recv_status_on_client.status_details = &u.details;
  grpc_call_error ce = grpc_call_start_batch(u.call, ops, sizeof ops / sizeof *ops, &u, NULL);
  if (ce != GRPC_CALL_OK) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "could not start a call to %s (call error %d)",
                     method_paths[m], (int)ce);
    goto done;
  }
  /* The call's deadline bounds the wait: the batch completes by then whatever the server does. */
  grpc_event ev = grpc_completion_queue_pluck(cq, &u, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (ev.type != GRPC_OP_COMPLETE || ev.tag != &u || !ev.success) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "the call to %s failed in the client (event %d, success %d)",
                     method_paths[m], (int)ev.type, ev.success);
    goto done;
  }
  st->code = u.status;
  st->origin = EMBER_CLIENT_FROM_SERVER;
  copy_details(st, u.details);
  classify(c, deadline_ms, st);
  rc = st->code;
  if (rc != GRPC_STATUS_OK) goto done;
  if (!u.recv) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "the server answered %s with OK but no message", method_paths[m]);
    goto done;
  }
  *resp = ember__unpack(u.recv, response_types[m]);
  if (!*resp)
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "the server's answer to %s does not parse as %s",
                     method_paths[m], response_types[m]->name);

done:
  if (u.call) grpc_call_unref(u.call);
  if (u.send) grpc_byte_buffer_destroy(u.send);
  if (u.recv) grpc_byte_buffer_destroy(u.recv);
  grpc_metadata_array_destroy(&u.initial_md);
  grpc_metadata_array_destroy(&u.trailing_md);
  grpc_slice_unref(u.details);
  if (cq) give_queue(c, cq);
  return rc;
}

/* Waits for the batch tagged `tag`, cancelling the call once *cancel is set. */
static int stream_wait(grpc_completion_queue *cq, grpc_call *call, void *tag, volatile sig_atomic_t *cancel,
                       int *cancelled) {
  for (;;) {
    if (cancel && *cancel && !*cancelled) {
      grpc_call_cancel(call, NULL);
      *cancelled = 1;
    }
    grpc_event ev = grpc_completion_queue_pluck(cq, tag, ember__deadline(100), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) continue;
    return ev.type == GRPC_OP_COMPLETE ? ev.success : 0;
  }
}

int ember__client_stream(ember_client *c, ember__method m, const ProtobufCMessage *req,
                         void (*on_msg)(void *ctx, const ProtobufCMessage *msg), void *ctx,
                         volatile sig_atomic_t *cancel, ember_client_status *st) {
  /* three tags: the sends, each receive, the status */
  char tag_send, tag_recv, tag_status;
  grpc_metadata_array initial_md, trailing_md;
  grpc_metadata_array_init(&initial_md);
  grpc_metadata_array_init(&trailing_md);
  grpc_slice details = grpc_empty_slice();
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  int rc;
  grpc_byte_buffer *send = ember_wire_pack(req), *recv = NULL;
  grpc_call *call = NULL;
  grpc_completion_queue *cq = take_queue(c);
  int cancelled = 0, status_started = 0;
  memset(st, 0, sizeof *st);
  if (!send || !cq) {
    rc = ember__fail(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the request");
    goto done;
  }
  call = grpc_channel_create_registered_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, c->methods[m],
                                             gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
  if (!call) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "could not create a call to %s", method_paths[m]);
    goto done;
  }
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.metadata = ember__client_metadata(c, &ops[0].data.send_initial_metadata.count);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial_md;
  grpc_op sop;
  memset(&sop, 0, sizeof sop);
  sop.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  sop.data.recv_status_on_client.trailing_metadata = &trailing_md;
  sop.data.recv_status_on_client.status = &status;
  sop.data.recv_status_on_client.status_details = &details;
  if (grpc_call_start_batch(call, ops, 4, &tag_send, NULL) != GRPC_CALL_OK ||
      grpc_call_start_batch(call, &sop, 1, &tag_status, NULL) != GRPC_CALL_OK) {
    rc = ember__fail(st, GRPC_STATUS_INTERNAL, "could not start a call to %s", method_paths[m]);
    grpc_call_cancel(call, NULL);
    goto done;
  }
  status_started = 1;
  stream_wait(cq, call, &tag_send, cancel, &cancelled);
  for (;;) {
    grpc_op rop;
    memset(&rop, 0, sizeof rop);
    rop.op = GRPC_OP_RECV_MESSAGE;
    rop.data.recv_message.recv_message = &recv;
    if (grpc_call_start_batch(call, &rop, 1, &tag_recv, NULL) != GRPC_CALL_OK) break;
    int ok = stream_wait(cq, call, &tag_recv, cancel, &cancelled);
    if (!ok || !recv) break; /* the stream ended */
    ProtobufCMessage *msg = ember__unpack(recv, response_types[m]);
    grpc_byte_buffer_destroy(recv);
    recv = NULL;
    if (!msg) {
      grpc_call_cancel(call, NULL);
      stream_wait(cq, call, &tag_status, NULL, &cancelled);
      status_started = 0;
      rc = ember__fail(st, GRPC_STATUS_INTERNAL, "a message of %s does not parse as %s", method_paths[m],
                       response_types[m]->name);
      goto done;
    }
    on_msg(ctx, msg);
    protobuf_c_message_free_unpacked(msg, NULL);
  }
  stream_wait(cq, call, &tag_status, cancel, &cancelled);
  status_started = 0;
  st->code = status;
  st->origin = EMBER_CLIENT_FROM_SERVER;
  copy_details(st, details);
  classify(c, c->deadline_ms, st);
  rc = st->code;

done:
  if (status_started) stream_wait(cq, call, &tag_status, NULL, &cancelled);
  if (call) grpc_call_unref(call);
  if (send) grpc_byte_buffer_destroy(send);
  if (recv) grpc_byte_buffer_destroy(recv);
  grpc_metadata_array_destroy(&initial_md);
  grpc_metadata_array_destroy(&trailing_md);
  grpc_slice_unref(details);
  if (cq) give_queue(c, cq);
  return rc;
}
