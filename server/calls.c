/* calls.c - the life of a call: armed, arrived, answered, freed.
 *
 * Each method keeps a few calls armed with grpc_server_request_registered_call (unknown
 * methods with grpc_server_request_call); an arrival re-arms its method before it is handled.
 * A unary call ends with one batch (initial metadata, message if OK, status, close) whose tag
 * is the call itself in state CALL_FINISHING; when it comes back the call is freed. Streaming
 * calls (health watch, reflection) move through CALL_STREAMING and are driven by their own
 * files.
 *
 * A Predict or Sample that waits for a worker starts its RECV_CLOSE_ON_SERVER when it is
 * queued, tagged with its srv_close_tag: gRPC completes it as soon as the client cancels or the
 * deadline passes, and the batcher then drops the call's work (batcher_drop_gone) instead of
 * computing answers nobody reads. Such a call has two tags out, and is freed when both are back
 * (CALL_CLOSING: the reply is back, the close notification not yet).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <grpc/byte_buffer_reader.h>
#include <grpc/support/alloc.h>
#include <protobuf-c/protobuf-c.h>

#include "server.h"
#include "wire.h"

const char *srv_status_name(grpc_status_code code) {
  const char *name = ember_wire_status_name(code);
  return name ? name : "UNKNOWN";
}

void srv_call_request(server *s, srv_rpc rpc) {
  srv_call *c = calloc(1, sizeof *c);
  if (!c) {
    srv_log(LOG_ERROR, "out of memory arming a call", "rpc=%d", (int)rpc);
    return;
  }
  c->kind = TAG_CALL;
  c->state = CALL_WAITING;
  c->rpc = rpc;
  c->srv = s;
  c->status_details = grpc_empty_slice();
  grpc_metadata_array_init(&c->md);
  grpc_call_error err;
  if (rpc == RPC_UNKNOWN) {
    grpc_call_details_init(&c->details);
    err = grpc_server_request_call(s->grpc, &c->call, &c->details, &c->md, s->cq, s->cq, c);
  } else {
    int has_payload = rpc != RPC_REFLECTION_V1 && rpc != RPC_REFLECTION_V1ALPHA;
    err = grpc_server_request_registered_call(s->grpc, s->methods[rpc], &c->call, &c->deadline,
                                              &c->md, has_payload ? &c->payload : NULL, s->cq,
                                              s->cq, c);
  }
  if (err != GRPC_CALL_OK) {
    srv_log(LOG_ERROR, "could not arm a call", "rpc=%d error=%d", (int)rpc, (int)err);
    grpc_metadata_array_destroy(&c->md);
    if (rpc == RPC_UNKNOWN) grpc_call_details_destroy(&c->details);
    free(c);
    return;
  }
  s->calls_alive++;
}

/* The loop's inbox (server.h). Only the event that finds the array empty writes the eventfd;
 * the loop reads it before it takes the array (main.c). A plain eventfd rather than
 * uv_async_send: libuv 1.44's loop spins and then calls sched_yield while a sender is between
 * its write and its flag, and that sender (often preempted by the very loop it woke) then held
 * the loop up for as long as the scheduler kept it off its core (docs/notes.md, Serving;
 * measured in docs/performance.md, "The loop's own yields"). */
void srv_loop_post(server *s, void *tag, int ok) {
  uv_mutex_lock(&s->evmu);
  if (s->nevents == s->capevents) {
    int cap = s->capevents ? 2 * s->capevents : 256;
    cq_event *grown = realloc(s->events, (size_t)cap * sizeof *grown);
    if (!grown) { /* cannot queue: the event would be lost, which must not happen */
      srv_log(LOG_ERROR, "out of memory queueing an event for the loop", "%s", "");
      abort();
    }
    s->events = grown;
    s->capevents = cap;
  }
  const int was_empty = s->nevents == 0;
  s->events[s->nevents++] = (cq_event){tag, ok, srv_now_ns()};
  uv_mutex_unlock(&s->evmu);
  if (was_empty) { /* outside the lock, which the loop it wakes takes at once */
    const uint64_t one = 1;
    while (write(s->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {}
  }
}

void srv_call_free(srv_call *c) {
  server *s = c->srv;
  if (c->call) grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->md);
  if (c->rpc == RPC_UNKNOWN) grpc_call_details_destroy(&c->details);
  if (c->payload) grpc_byte_buffer_destroy(c->payload);
  if (c->send) grpc_byte_buffer_destroy(c->send);
  grpc_slice_unref(c->status_details);
  if (c->version) version_unref(c->version);
  free(c->x);
  free(c->img);
  free(c->v2_id);
  free(c);
  s->calls_alive--;
  server_maybe_finish(s);
}

long srv_bytes(grpc_byte_buffer *bb, uint8_t **buf) {
  *buf = NULL;
  grpc_byte_buffer_reader r;
  if (!bb || !grpc_byte_buffer_reader_init(&r, bb)) return bb ? -1 : 0;
  grpc_slice all = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  size_t len = GRPC_SLICE_LENGTH(all);
  *buf = malloc(len ? len : 1);
  if (*buf) memcpy(*buf, GRPC_SLICE_START_PTR(all), len);
  grpc_slice_unref(all);
  return *buf ? (long)len : -1;
}

size_t srv_closing_ops(srv_call *c, grpc_op *ops, size_t n, grpc_status_code code) {
  metrics_call_ended(c, code);
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = code;
  ops[n++].data.send_status_from_server.status_details = code == GRPC_STATUS_OK ? NULL : &c->status_details;
  if (!c->close_armed) { /* a call has one RECV_CLOSE_ON_SERVER: srv_call_watch_close's, or this */
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  }
  c->state = CALL_FINISHING;
  return n;
}

void srv_call_watch_close(srv_call *c) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  c->close.kind = TAG_CALL_CLOSED;
  c->close.call = c;
  if (grpc_call_start_batch(c->call, &op, 1, &c->close, NULL) == GRPC_CALL_OK) c->close_armed = 1;
  /* else the deadline sweep and the end of the batch still catch an abandoned call */
}

/* The reply's batch is back (or could not start): free the call unless its close
 * notification is still out. */
static void reply_done(srv_call *c) {
  if (c->close_armed && !c->closed) c->state = CALL_CLOSING;
  else srv_call_free(c);
}

void srv_call_closed(void *tag, int ok) {
  (void)ok; /* RECV_CLOSE_ON_SERVER does not fail; `cancelled` says how the call ended */
  srv_call *c = ((srv_close_tag *)tag)->call;
  c->closed = 1;
  if (c->state == CALL_CLOSING) srv_call_free(c);
  else if (c->cancelled && (c->state == CALL_QUEUED || c->state == CALL_RUNNING)) batcher_drop_gone(c->srv);
}

static void finish(srv_call *c, grpc_status_code code, const void *msg) {
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  int n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (msg) {
    c->send = ember_wire_pack(msg); /* a protobuf-c message, as srv_call_reply says */
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->send;
  }
  n = (int)srv_closing_ops(c, ops, (size_t)n, code);
  grpc_call_error err = grpc_call_start_batch(c->call, ops, (size_t)n, c, NULL);
  if (err != GRPC_CALL_OK) {
    srv_log(LOG_ERROR, "could not send a reply", "error=%d", (int)err);
    if (c->close_armed) grpc_call_cancel(c->call, NULL); /* ends the call: the close tag comes back */
    reply_done(c);
  }
}

void srv_call_reply(srv_call *c, const void *msg) { finish(c, GRPC_STATUS_OK, msg); }

void srv_call_fail(srv_call *c, grpc_status_code code, const char *fmt, ...) {
  char text[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  grpc_slice_unref(c->status_details);
  c->status_details = grpc_slice_from_copied_string(text);
  srv_log(code == GRPC_STATUS_INTERNAL ? LOG_ERROR : LOG_DEBUG, "call failed", "rpc=%d status=%s details=\"%s\"",
          (int)c->rpc, srv_status_name(code), text);
  finish(c, code, NULL);
}

int srv_status_set(srv_status *st, grpc_status_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(st->msg, sizeof st->msg, fmt, ap);
  va_end(ap);
  st->code = code;
  return -1;
}

void srv_call_fail_status(srv_call *c, const srv_status *st) { srv_call_fail(c, st->code, "%s", st->msg); }

/* An event for a call: it arrived (CALL_WAITING), its reply was sent (CALL_FINISHING), or a
 * streaming batch completed. */
void srv_call_event(srv_call *c, int ok) {
  server *s = c->srv;
  switch (c->state) {
  case CALL_WAITING:
    if (!ok) { /* the server is shutting down: this armed call will never arrive */
      srv_call_free(c);
      return;
    }
    c->cq_ns = s->event_cq_ns;
    if (!s->shutting_down) srv_call_request(s, c->rpc);
    c->arrived_ns = srv_now_ns();
    if (auth_check(c, auth_level_of(c->rpc)) < 0) break; /* answered UNAUTHENTICATED/PERMISSION_DENIED */
    switch (c->rpc) {
    case RPC_PREDICT:
    case RPC_SAMPLE:
    case RPC_LIST_MODELS:
    case RPC_GET_MODEL:
      rpc_ember_handle(c);
      break;
    case RPC_HEALTH_CHECK:
    case RPC_HEALTH_WATCH:
      health_handle(c);
      break;
    case RPC_REFLECTION_V1:
    case RPC_REFLECTION_V1ALPHA:
      reflection_handle(c);
      break;
    case RPC_TRAIN:
      train_handle(c);
      break;
    case RPC_KS_SERVER_LIVE:
    case RPC_KS_SERVER_READY:
    case RPC_KS_MODEL_READY:
    case RPC_KS_SERVER_METADATA:
    case RPC_KS_MODEL_METADATA:
    case RPC_KS_MODEL_INFER:
      rpc_kserve_handle(c);
      break;
    default: {
      char *method = grpc_slice_to_c_string(c->details.method);
      srv_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "method %s is not served here", method);
      gpr_free(method);
      break;
    }
    }
    break;
  case CALL_FINISHING:
    reply_done(c);
    break;
  case CALL_STREAMING:
    if (c->rpc == RPC_HEALTH_WATCH) health_event(c, ok);
    else if (c->rpc == RPC_TRAIN) train_event(c, ok);
    else reflection_event(c, ok);
    break;
  default:
    srv_log(LOG_ERROR, "event for a call in an unexpected state", "state=%d", (int)c->state);
    break;
  }
}
