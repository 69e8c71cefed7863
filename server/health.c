/* health.c - grpc.health.v1.Health: Check and Watch.
 *
 * Services: "" (the whole server), "ember.v1.Ember" and "inference.GRPCInferenceService" (the
 * Open Inference Protocol v2, rpc_kserve.c) are SERVING from start-up until SIGINT/SIGTERM, then
 * NOT_SERVING; anything else is unknown (Check: NOT_FOUND, Watch:
 * SERVICE_UNKNOWN, as the health protocol says). A Watch stream gets the current status at
 * once and every change after; it ends when the client leaves or the server shuts down.
 *
 * A watch has two batches in flight at times: its sends (tagged with the call) and one
 * RECV_CLOSE_ON_SERVER (tagged with the watch, TAG_WATCH_CLOSED) that tells when the client
 * went away. The call is freed when neither is outstanding.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "server.h"
#include "wire.h"

#define SERVICE_MAX 128

typedef struct health_watch {
  srv_tag_kind kind; /* TAG_WATCH_CLOSED: must stay first */
  srv_call *c;
  char service[SERVICE_MAX]; /* cut to fit: no served name is that long */
  int sent_status, metadata_sent, sending, closed, finishing;
} health_watch;

static int known_service(const char *svc) {
  return !*svc || strcmp(svc, "ember.v1.Ember") == 0 || strcmp(svc, "inference.GRPCInferenceService") == 0;
}

static int status_of(server *s, const char *svc) {
  if (!known_service(svc)) return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
  return s->serving ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                    : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
}

static void unlink_watch(srv_call *c) {
  srv_call **pp = &c->srv->watchers;
  while (*pp && *pp != c) pp = &(*pp)->next;
  if (*pp) *pp = c->next;
}

static void maybe_free(srv_call *c) {
  if (c->ops_pending > 0) return;
  unlink_watch(c);
  free(c->stream.watch);
  c->stream.watch = NULL;
  srv_call_free(c);
}

static void start(srv_call *c, grpc_op *ops, size_t n) {
  health_watch *w = c->stream.watch;
  if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK) {
    w->closed = 1;
    maybe_free(c);
    return;
  }
  c->ops_pending++;
  w->sending = 1;
}

static void send_status(srv_call *c) {
  health_watch *w = c->stream.watch;
  Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r.status = status_of(c->srv, w->service);
  w->sent_status = r.status;
  if (c->send) grpc_byte_buffer_destroy(c->send);
  c->send = ember_wire_pack(&r.base);
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!w->metadata_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  w->metadata_sent = 1;
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = c->send;
  start(c, ops, n);
}

static void end_stream(srv_call *c) {
  health_watch *w = c->stream.watch;
  grpc_op ops[2];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!w->metadata_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  w->metadata_sent = 1;
  grpc_slice_unref(c->status_details);
  c->status_details = grpc_slice_from_static_string("the server is shutting down");
  metrics_call_ended(c, GRPC_STATUS_UNAVAILABLE);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = GRPC_STATUS_UNAVAILABLE;
  ops[n++].data.send_status_from_server.status_details = &c->status_details;
  w->finishing = 1;
  start(c, ops, n);
}

void health_event(srv_call *c, int ok) {
  health_watch *w = c->stream.watch;
  c->ops_pending--;
  w->sending = 0;
  if (!ok) w->closed = 1;
  if (w->closed || w->finishing) {
    maybe_free(c);
  } else if (c->srv->shutting_down) {
    end_stream(c);
  } else if (status_of(c->srv, w->service) != w->sent_status) {
    send_status(c);
  }
}

void health_watch_closed(void *tag, int ok) {
  (void)ok;
  health_watch *w = tag;
  srv_call *c = w->c;
  c->ops_pending--;
  w->closed = 1;
  if (!w->sending) maybe_free(c);
}

int health_decode(srv_rpc rpc, const uint8_t *bytes, long len, char *service, size_t cap,
                  srv_status *st) {
  Grpc__Health__V1__HealthCheckRequest *req =
      len >= 0 ? grpc__health__v1__health_check_request__unpack(NULL, (size_t)len, bytes) : NULL;
  if (!req)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid grpc.health.v1.HealthCheckRequest");
  snprintf(service, cap, "%s", req->service ? req->service : "");
  grpc__health__v1__health_check_request__free_unpacked(req, NULL);
  if (rpc == RPC_HEALTH_CHECK && !known_service(service))
    return srv_status_set(st, GRPC_STATUS_NOT_FOUND, "unknown service '%.100s'", service);
  return 0;
}

void health_handle(srv_call *c) {
  uint8_t *bytes;
  long len = srv_bytes(c->payload, &bytes);
  char svc[SERVICE_MAX];
  srv_status st;
  int rc = health_decode(c->rpc, bytes, len, svc, sizeof svc, &st);
  free(bytes);
  if (rc < 0) {
    srv_call_fail_status(c, &st);
    return;
  }
  if (c->rpc == RPC_HEALTH_CHECK) {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = status_of(c->srv, svc);
    srv_call_reply(c, &r);
    return;
  }
  health_watch *w = calloc(1, sizeof *w);
  if (!w) {
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return;
  }
  w->kind = TAG_WATCH_CLOSED;
  w->c = c;
  memcpy(w->service, svc, sizeof w->service);
  c->stream.watch = w;
  c->state = CALL_STREAMING;
  c->next = c->srv->watchers;
  c->srv->watchers = c;
  grpc_op close_op;
  memset(&close_op, 0, sizeof close_op);
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (grpc_call_start_batch(c->call, &close_op, 1, w, NULL) == GRPC_CALL_OK) c->ops_pending++;
  if (c->srv->shutting_down) end_stream(c);
  else send_status(c);
}

void health_set_serving(server *s, int serving) {
  s->serving = serving;
  srv_call *next;
  for (srv_call *c = s->watchers; c; c = next) {
    next = c->next;
    health_watch *w = c->stream.watch;
    if (w->sending || w->closed || w->finishing) continue; /* health_event catches up */
    if (s->shutting_down) end_stream(c);
    else if (status_of(s, w->service) != w->sent_status) send_status(c);
  }
}

const char *health_not_ready(server *s) {
  if (s->draining) return "not ready: draining (the server is shutting down)\n";
  if (!s->serving) return "not ready: starting\n";
  for (model_entry *e = s->models; e; e = e->next)
    if (e->nversions > 0) return NULL;
  return "not ready: no model loaded (the repository is watched)\n";
}
