/* main.c - emberd: start-up, the completion-queue bridge, and the shutdown sequence.
 *
 * The gRPC completion queue is drained by one thread (cq_main) that does nothing but move
 * (tag, ok) pairs into a mutex-protected array and wake the libuv loop; the loop thread then
 * handles every event, so all server state lives on one thread and needs no locks.
 *
 * Shutdown order (each step is safe to repeat; see server_begin_shutdown):
 *   1. SIGINT/SIGTERM: drain. Health NOT_SERVING (watchers told) and /readyz 503 at once, so
 *      that load balancers and clients' health checks take this replica out of rotation; until
 *      they have, calls keep arriving, and every one (new ones too) is answered as usual, so a
 *      client without retries loses nothing. Training jobs are cancelled and new Train calls
 *      refused UNAVAILABLE (a job would not finish in time). Wait --drain-ms.
 *   2. grpc_server_shutdown_and_notify: GOAWAY on every connection, so no new calls (clients
 *      send them to another replica; a call that reaches gRPC core in the instant before the
 *      client or proxy has read the GOAWAY is answered CANCELLED by gRPC core itself, which
 *      the documented client config retries: docs/cluster.md); the calls already accepted go
 *      on; health watches end; registry stops.
 *   3. after --grace-ms (or at a second signal): queued requests answered UNAVAILABLE,
 *      running batches told to stop (the library reads the flag in every phase, so they end
 *      within a network task), grpc_server_cancel_all_calls.
 *   4. when the shutdown tag is back, no call is alive and no batch runs: destroy the server,
 *      shut down and drain the completion queue, join its thread, close every loop handle.
 */
#include <limits.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>

#include <grpc/grpc_security.h>

#include "server.h"

uint64_t srv_now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- the completion-queue thread -------------------------------------------------------- */

static void cq_main(void *arg) {
  server *s = arg;
  prctl(PR_SET_NAME, "emberd-cq", 0, 0, 0); /* thread names: emberd.md */
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    srv_loop_post(s, ev.tag, ev.success);
  }
}

static void dispatch(server *s, void *tag, int ok) {
  switch (*(srv_tag_kind *)tag) {
  case TAG_CALL:
    srv_call_event((srv_call *)tag, ok);
    break;
  case TAG_WATCH_CLOSED:
    health_watch_closed(tag, ok);
    break;
  case TAG_TRAIN_CLOSED:
    train_closed(tag, ok);
    break;
  case TAG_CALL_CLOSED:
    srv_call_closed(tag, ok);
    break;
  case TAG_BATCH_DONE:
    batcher_done(tag);
    break;
  case TAG_SHUTDOWN:
    s->shutdown_done = 1;
    srv_log(LOG_INFO, "gRPC server shut down", "%s", "");
    server_maybe_finish(s);
    break;
  }
}

/* Hands every queued cq event to its handler, on the loop. */
static void drain_events(server *s) {
  for (;;) {
    uv_mutex_lock(&s->evmu);
    int n = s->nevents;
    cq_event batch[256];
    if (n > 256) n = 256;
    memcpy(batch, s->events, (size_t)n * sizeof *batch);
    memmove(s->events, s->events + n, (size_t)(s->nevents - n) * sizeof *batch);
    s->nevents -= n;
    uv_mutex_unlock(&s->evmu);
    if (n == 0) break;
    for (int i = 0; i < n; i++) {
      s->event_cq_ns = batch[i].ns;
      dispatch(s, batch[i].tag, batch[i].ok);
    }
  }
}

static void on_wake(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  server *s = h->data;
  uint64_t count;
  while (read(s->wake_fd, &count, sizeof count) < 0 && errno == EINTR) {} /* EAGAIN: nothing to clear */
  drain_events(s);
}

static void close_wake(server *s, uv_close_cb cb) {
  uv_close((uv_handle_t *)&s->wake, cb);
  close(s->wake_fd);
  s->wake_fd = -1;
}

/* ---- shutdown ----------------------------------------------------------------------------- */

static void close_cb(uv_handle_t *h) { (void)h; }

static void on_grace(uv_timer_t *t) {
  server *s = t->data;
  srv_log(LOG_WARN, "grace period over: cancelling remaining calls", "%s", "");
  s->grace_over = 1;
  batcher_flush(s, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
  batcher_cancel_running(s);
  grpc_server_cancel_all_calls(s->grpc);
}

static void start_grpc_shutdown(server *s) {
  if (s->shutting_down) return;
  s->shutting_down = 1;
  srv_log(LOG_INFO, "shutting down", "grace_ms=%d", s->cfg.grace_ms);
  registry_stop(s);
  health_set_serving(s, 0); /* ends watch streams now that shutdown has begun */
  grpc_server_shutdown_and_notify(s->grpc, s->cq, &s->shutdown_tag);
  uv_timer_start(&s->grace_timer, on_grace, (uint64_t)s->cfg.grace_ms, 0);
}

static void on_drained(uv_timer_t *t) { start_grpc_shutdown(t->data); }

void server_begin_shutdown(server *s, const char *why) {
  if (s->shutting_down) { /* asked again: stop waiting */
    on_grace(&s->grace_timer);
    return;
  }
  if (s->draining) {
    uv_timer_stop(&s->drain_timer);
    start_grpc_shutdown(s);
    on_grace(&s->grace_timer);
    return;
  }
  s->draining = 1;
  srv_log(LOG_INFO, "draining", "reason=%s drain_ms=%d", why, s->cfg.drain_ms);
  train_cancel_all(s); /* a job would not finish in the drain; it publishes nothing */
  health_set_serving(s, 0);
  uv_timer_start(&s->drain_timer, on_drained, (uint64_t)s->cfg.drain_ms, 0);
}

void server_maybe_finish(server *s) {
  if (!s->shutdown_done || s->calls_alive > 0 || !batcher_idle(s) || s->scan_running || s->train_alive > 0)
    return;
  if (!s->grpc) return; /* already finished */
  grpc_server_destroy(s->grpc);
  s->grpc = NULL;
  grpc_completion_queue_shutdown(s->cq);
  uv_thread_join(&s->cq_thread);
  drain_events(s); /* nothing should be left; drain anyway */
  uv_timer_stop(&s->grace_timer);
  close_wake(s, close_cb);
  uv_close((uv_handle_t *)&s->sigint, close_cb);
  uv_close((uv_handle_t *)&s->sigterm, close_cb);
  uv_close((uv_handle_t *)&s->drain_timer, close_cb);
  uv_close((uv_handle_t *)&s->grace_timer, close_cb);
  uv_close((uv_handle_t *)&s->trim_timer, close_cb);
  batcher_close(s);
  metrics_close(s);
  srv_log(LOG_INFO, "stopped", "%s", "");
}

static void on_signal(uv_signal_t *h, int signum) {
  server_begin_shutdown(h->data, signum == SIGINT ? "SIGINT" : "SIGTERM");
}

/* ---- housekeeping ------------------------------------------------------------------------ */

/* Every TRIM_MS the loop hands free heap pages back to the kernel. glibc keeps what a thread
 * frees in that thread's arena, and batches allocate on the workers, free on the loop and size
 * workspaces by their rows, so the arenas fragment and resident memory creeps up while the bytes
 * in use stay flat (docs/soak.md has the measurement). A trim walks the arenas' free lists; at
 * this period it costs nothing measurable. */
#define TRIM_MS 10000

static void on_trim(uv_timer_t *t) {
  (void)t;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

/* ---- start-up ----------------------------------------------------------------------------- */

static const struct {
  srv_rpc rpc;
  const char *path;
  grpc_server_register_method_payload_handling payload;
} methods[] = {
    {RPC_PREDICT, "/ember.v1.Ember/Predict", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_SAMPLE, "/ember.v1.Ember/Sample", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_LIST_MODELS, "/ember.v1.Ember/ListModels", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_GET_MODEL, "/ember.v1.Ember/GetModel", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_HEALTH_CHECK, "/grpc.health.v1.Health/Check", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_HEALTH_WATCH, "/grpc.health.v1.Health/Watch", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_REFLECTION_V1, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", GRPC_SRM_PAYLOAD_NONE},
    {RPC_REFLECTION_V1ALPHA, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", GRPC_SRM_PAYLOAD_NONE},
    {RPC_TRAIN, "/ember.v1.Ember/Train", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_SERVER_LIVE, "/inference.GRPCInferenceService/ServerLive", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_SERVER_READY, "/inference.GRPCInferenceService/ServerReady", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_MODEL_READY, "/inference.GRPCInferenceService/ModelReady", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_SERVER_METADATA, "/inference.GRPCInferenceService/ServerMetadata", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_MODEL_METADATA, "/inference.GRPCInferenceService/ModelMetadata", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    {RPC_KS_MODEL_INFER, "/inference.GRPCInferenceService/ModelInfer", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
};

/* Undoes start-up before the gRPC server runs: closes the loop's handles, frees the models. */
static int startup_failed(server *s) {
  batcher_close(s);
  close_wake(s, NULL);
  uv_close((uv_handle_t *)&s->drain_timer, NULL);
  uv_close((uv_handle_t *)&s->grace_timer, NULL);
  metrics_close(s);
  uv_run(s->loop, UV_RUN_DEFAULT);
  registry_free(s);
  uv_loop_close(s->loop);
  grpc_shutdown();
  auth_free(s);
  return 1;
}

/* Test builds (-DEMBER_FAULT_INJECTION) read the hooks of srv_faults from the environment. */
static void arm_faults(server *s) {
#ifdef EMBER_FAULT_INJECTION
  const char *scan = getenv("EMBER_FAULT_SCAN_ALLOC"), *request = getenv("EMBER_FAULT_REQUEST_ALLOC");
  const char *publish = getenv("EMBER_FAULT_PUBLISH_PAUSE"), *scan_pause = getenv("EMBER_FAULT_SCAN_PAUSE");
  s->faults.scan_alloc = scan;
  s->faults.request_alloc = request ? atol(request) : 0;
  s->faults.publish_pause = publish;
  s->faults.scan_pause = scan_pause ? atol(scan_pause) : 0;
  if (scan || request || publish || scan_pause)
    srv_log(LOG_WARN, "fault injection armed",
            "EMBER_FAULT_SCAN_ALLOC=%s EMBER_FAULT_REQUEST_ALLOC=%s EMBER_FAULT_PUBLISH_PAUSE=%s "
            "EMBER_FAULT_SCAN_PAUSE=%s",
            scan ? scan : "", request ? request : "", publish ? publish : "", scan_pause ? scan_pause : "");
#else
  (void)s;
#endif
}

/* calls kept armed per method, so a burst does not wait for re-arming */
static int armed_per_method(srv_rpc rpc) {
  return srv_infer_rpc(rpc) ? 32 : 2;
}

int main(int argc, char **argv) {
  /* OpenBLAS fell back to generic kernels on a CPU newer than its tables: run again with the
   * CPU's own (base.h) */
  ember_blas_reexec_for_cpu(argv);
  static server srv;
  server *s = &srv;
  int rc = srv_config_parse(&s->cfg, argc, argv);
  if (rc != 0) return rc > 0 ? 0 : 2;
  srv_log_init(s->cfg.log_level);
  arm_faults(s);
  if (auth_init(s) < 0) return 2; /* token and PEM files: read before anything else starts */
  signal(SIGPIPE, SIG_IGN);
  /* past the file size limit a checkpoint write fails (EFBIG, reported like a full disk) rather
   * than the signal killing the server */
  signal(SIGXFSZ, SIG_IGN);
  setenv("UV_THREADPOOL_SIZE", "1", 1); /* libuv's threadpool only loads models, one scan at a time */
  ember_blas_single_thread();

  grpc_init();
  s->loop = uv_default_loop();
  s->shutdown_tag = TAG_SHUTDOWN;
  uv_mutex_init(&s->evmu);
  s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd < 0 || uv_poll_init(s->loop, &s->wake, s->wake_fd) < 0) {
    srv_log(LOG_ERROR, "could not create the loop's wake-up eventfd", "error=\"%s\"", strerror(errno));
    return 1;
  }
  s->wake.data = s;
  uv_poll_start(&s->wake, UV_READABLE, on_wake);
  uv_timer_init(s->loop, &s->drain_timer);
  uv_timer_init(s->loop, &s->grace_timer);
  s->drain_timer.data = s->grace_timer.data = s;

  /* The first repository scan runs before the server exists, so a bad --models/--model ends
   * start-up without a gRPC server to tear down. */
  if (batcher_init(s) < 0) return startup_failed(s);
  train_init(s); /* before the first scan: a killed emberd's publication files go first */
  if (registry_start(s) < 0) return startup_failed(s);
  if (metrics_start(s) < 0) { /* before gRPC: a taken port ends start-up */
    registry_stop(s);
    return startup_failed(s);
  }

  grpc_arg args[] = {
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, {.integer = s->cfg.max_message}},
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_SEND_MESSAGE_LENGTH, {.integer = s->cfg.max_message}},
      /* gRPC sets SO_REUSEPORT by default: a second emberd on the same port would start and
       * split the connections with the first. Refuse instead. */
      {GRPC_ARG_INTEGER, GRPC_ARG_ALLOW_REUSEPORT, {.integer = 0}},
      /* GOAWAY and close after --max-idle-ms without a call (a client reconnects on its next
       * call). Without it a connection its client abandoned without closing (grpcio can leak
       * one when a channel is closed during a call: docs/soak.md) or whose host vanished is
       * held, with its file descriptor, until the peer's kernel gives up, if ever. */
      {GRPC_ARG_INTEGER, GRPC_ARG_MAX_CONNECTION_IDLE_MS, {.integer = s->cfg.max_idle_ms > 0 ? s->cfg.max_idle_ms : INT_MAX}},
      /* Clients' keepalive pings (wire.h: every EMBER_KEEPALIVE_TIME_MS of silence, calls or
       * not) are welcome: they are how a client behind no balancer notices a vanished replica.
       * Pings closer together than this still count as strikes and end in GOAWAY. */
      {GRPC_ARG_INTEGER, GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, {.integer = EMBER_KEEPALIVE_MIN_PING_MS}},
      {GRPC_ARG_INTEGER, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, {.integer = 1}},
  };
  grpc_channel_args chargs = {sizeof args / sizeof *args, args};
  s->grpc = grpc_server_create(&chargs, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->grpc, s->cq, NULL);
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
    s->methods[methods[i].rpc] =
        grpc_server_register_method(s->grpc, methods[i].path, NULL, methods[i].payload, 0);
  grpc_server_credentials *creds = auth_server_credentials(s);
  int port = creds ? grpc_server_add_http2_port(s->grpc, s->cfg.listen, creds) : 0;
  if (creds) grpc_server_credentials_release(creds);
  if (port == 0) { /* no listener was added, so the server can be destroyed unstarted */
    if (s->cfg.tls_cert)
      fprintf(stderr, "emberd: cannot listen on %s with TLS (address in use, not host:port, or "
                      "--tls-cert/--tls-key/--tls-client-ca not a usable PEM certificate chain, its "
                      "private key and CA certificates?)\n", s->cfg.listen);
    else
      fprintf(stderr, "emberd: cannot listen on %s (address in use, or not host:port?)\n", s->cfg.listen);
    grpc_server_destroy(s->grpc);
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {}
    grpc_completion_queue_destroy(s->cq);
    registry_stop(s);
    return startup_failed(s);
  }
  grpc_server_start(s->grpc);
  for (int r = 0; r < RPC_COUNT; r++)
    for (int k = 0; k < armed_per_method((srv_rpc)r); k++) srv_call_request(s, (srv_rpc)r);
  uv_thread_create(&s->cq_thread, cq_main, s);
  uv_signal_init(s->loop, &s->sigint);
  uv_signal_init(s->loop, &s->sigterm);
  s->sigint.data = s->sigterm.data = s;
  uv_signal_start(&s->sigint, on_signal, SIGINT);
  uv_signal_start(&s->sigterm, on_signal, SIGTERM);
  uv_timer_init(s->loop, &s->trim_timer);
  uv_timer_start(&s->trim_timer, on_trim, TRIM_MS, TRIM_MS);
  health_set_serving(s, 1);
  auth_log_startup(s);
  const char *best = ember_blas_env_narrower();
  if (best)
    srv_log(LOG_WARN, "OPENBLAS_CORETYPE in the environment loads narrower kernels than this CPU's: unset it for full speed",
            "OPENBLAS_CORETYPE=%s blas=%s cpu_kernels=%s", getenv("OPENBLAS_CORETYPE"), ember_blas_core(), best);
  srv_log(LOG_INFO, "serving", "listen=%s port=%d workers=%d split_batches=%d pool_wait_us=%d max_batch=%d max_delay_us=%d max_queue=%d blas=%s",
          s->cfg.listen, port, s->cfg.workers, s->wide_pool != NULL, s->cfg.pool_wait_us, s->cfg.max_batch, s->cfg.max_delay_us, s->cfg.max_queue,
          ember_blas_core());

  uv_run(s->loop, UV_RUN_DEFAULT);

  registry_free(s);
  grpc_completion_queue_destroy(s->cq);
  free(s->events);
  uv_mutex_destroy(&s->evmu);
  uv_loop_close(s->loop);
  grpc_shutdown();
  auth_free(s);
  return 0;
}
