/* server.h - emberd's shared state and the interfaces between its files.
 *
 * Threads: one thread blocks in grpc_completion_queue_next and forwards every event to the
 * libuv loop (main.c: cq_main). The loop thread owns everything below (calls, queues, the model registry,
 * counters) and needs no locks; inference runs on the batcher's worker threads (batcher.c)
 * and model loading on libuv's threadpool (registry.c), and both hand their results back to
 * the loop.
 *
 * Every completion-queue tag is a pointer to a struct whose first field is a srv_tag_kind.
 */
#ifndef EMBERD_SERVER_H
#define EMBERD_SERVER_H

#include <stdint.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <uv.h>

#include "ember/dfo.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "policy.h"
#include "wire.h"

/* ---- configuration --------------------------------------------------------------------- */

typedef struct srv_config {
  const char *listen;       /* host:port */
  const char *metrics_listen; /* --metrics-listen HOST:PORT: Prometheus text over HTTP, or NULL */
  const char *models_dir;   /* --models DIR, or NULL */
  const char *model_file;   /* --model FILE, or NULL */
  int workers;              /* inference threads */
  int split_batches;        /* 1: a batch that runs alone spreads over every worker's core */
  int pool_wait_us;         /* ember_pool_set_wait_us of that batch's pool */
  int max_batch;            /* rows per executed batch */
  int max_delay_us;         /* how long a batch may wait to fill while a worker is idle */
  int max_queue;            /* requests waiting for a worker, server-wide */
  int max_rows;             /* rows per request */
  int max_samples;          /* samples per row */
  int max_message;          /* bytes per message, either direction */
  int max_request_gflop;    /* compute one request may ask for */
  int poll_ms;              /* repository rescan period (a backstop for file events) */
  int drain_ms;             /* after SIGTERM: NOT_SERVING and /readyz 503, calls still answered, for this long */
  int grace_ms;             /* then in-flight calls get this long before they are cancelled */
  int max_idle_ms;          /* a connection without calls for this long is closed (0: never) */
  int log_level;            /* 0 debug, 1 info, 2 warn, 3 error */
  const char *tls_cert, *tls_key; /* PEM: server certificate chain and key (both or neither) */
  const char *tls_client_ca;      /* PEM: require client certificates signed by these CAs */
  const char *token_file;         /* bearer tokens for Predict/Sample/ListModels/GetModel */
  const char *admin_token_file;   /* bearer tokens for admin calls (Train) */
  const char *data_dir;     /* --data-dir: datasets Train may name, or NULL */
  int max_train_jobs;       /* training jobs at once; more get RESOURCE_EXHAUSTED */
  int train_threads;        /* pool threads per training job */
  int max_train_rows;       /* rows of training data per job */
  int max_train_mib;        /* memory one training job may hold (ember_train_memory), MiB */
  int train_nice;           /* nice value of training threads (0..19) */
} srv_config;

int srv_config_parse(srv_config *c, int argc, char **argv); /* 0 ok, 1 help shown, -1 error */

/* ---- logging: one line per event, key=value ---------------------------------------------- */

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
void srv_log_init(int level);
/* srv_log(LOG_INFO, "model loaded", "model=%s version=%lld", name, v) */
void srv_log(int level, const char *msg, const char *kv_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* ---- tags and calls ------------------------------------------------------------------- */

typedef enum {
  TAG_CALL = 1,    /* a srv_call: request arrived, or one of its batches completed */
  TAG_SHUTDOWN = 2, /* grpc_server_shutdown_and_notify finished */
  TAG_WATCH_CLOSED = 3, /* a health watch's RECV_CLOSE_ON_SERVER completed (health.c) */
  TAG_TRAIN_CLOSED = 4, /* a Train call's RECV_CLOSE_ON_SERVER completed (train.c) */
  TAG_CALL_CLOSED = 5,  /* a queued Predict/Sample's RECV_CLOSE_ON_SERVER completed (calls.c) */
  TAG_BATCH_DONE = 6    /* a worker finished a batch (batcher.c; posted by srv_loop_post) */
} srv_tag_kind;

typedef enum {
  RPC_PREDICT,
  RPC_SAMPLE,
  RPC_LIST_MODELS,
  RPC_GET_MODEL,
  RPC_HEALTH_CHECK,
  RPC_HEALTH_WATCH,
  RPC_REFLECTION_V1,
  RPC_REFLECTION_V1ALPHA,
  RPC_TRAIN,
  /* inference.GRPCInferenceService, the Open Inference Protocol v2 (rpc_kserve.c) */
  RPC_KS_SERVER_LIVE,
  RPC_KS_SERVER_READY,
  RPC_KS_MODEL_READY,
  RPC_KS_SERVER_METADATA,
  RPC_KS_MODEL_METADATA,
  RPC_KS_MODEL_INFER,
  RPC_UNKNOWN, /* any other method: answered UNIMPLEMENTED */
  RPC_COUNT
} srv_rpc;

/* The computation a call queues for: ModelInfer is a Predict (it shares Predict's batches); a
 * batch's key and its worker see only RPC_PREDICT or RPC_SAMPLE. */
static inline srv_rpc srv_compute_rpc(srv_rpc rpc) {
  return rpc == RPC_KS_MODEL_INFER ? RPC_PREDICT : rpc;
}
/* The calls that go through the batcher and count in their model's stats. */
static inline int srv_infer_rpc(srv_rpc rpc) {
  return rpc == RPC_PREDICT || rpc == RPC_SAMPLE || rpc == RPC_KS_MODEL_INFER;
}

typedef enum {
  CALL_WAITING,   /* requested from the server, no call yet */
  CALL_QUEUED,    /* parsed, waiting in a batch queue */
  CALL_RUNNING,   /* in a batch on a worker */
  CALL_STREAMING, /* a streaming call (health watch, reflection) between its batches */
  CALL_FINISHING, /* status sent; the tag comes back once more, then the call is freed */
  CALL_CLOSING    /* status sent and back; freed when its close notification comes back */
} srv_call_state;

struct server;
struct model_version;
struct model_entry;
struct health_watch; /* health.c */
struct train_job;    /* train.c */
struct bqueue;       /* batcher.c */
struct batch_job;    /* batcher.c */
struct http;         /* metrics.c */

struct srv_call;
/* The tag of a call's own RECV_CLOSE_ON_SERVER (srv_call_watch_close). */
typedef struct srv_close_tag {
  srv_tag_kind kind; /* TAG_CALL_CLOSED: must stay first */
  struct srv_call *call;
} srv_close_tag;

typedef struct srv_call {
  srv_tag_kind kind; /* TAG_CALL: must stay first */
  srv_call_state state;
  srv_rpc rpc;
  struct server *srv;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* unregistered calls only */
  grpc_byte_buffer *payload; /* the request (unary) or the last message received (streams) */
  grpc_byte_buffer *send;    /* response in flight */
  grpc_slice status_details;
  int cancelled;             /* set by RECV_CLOSE_ON_SERVER */
  srv_close_tag close;       /* queued Predict/Sample: RECV_CLOSE_ON_SERVER since it was queued */
  int close_armed, closed;   /* ... was started, and came back (then `cancelled` is final) */
  int ops_pending;           /* streaming calls: batches started and not completed */
  uint64_t arrived_ns;
  uint64_t cq_ns;      /* when the completion-queue thread took its arrival (the stages below) */
  uint64_t queued_ns;  /* when it joined a batch queue */
  /* a Predict or Sample request, once parsed */
  struct model_version *version;
  struct model_entry *entry;
  float *x;              /* rows x x_dim; an image request's: rows x extra (NULL when extra is 0) */
  uint8_t *img;          /* an image request's rows images (h, w, c) uint8, NHWC; NULL otherwise */
  int rows;
  uint64_t seed, row_offset;
  ember_infer_opts opts;
  ember_modes_opts modes;
  int want_samples;      /* Sample with return_samples */
  char *v2_id;           /* ModelInfer: the request's id, echoed (NULL: none) */
  unsigned v2_out;       /* ModelInfer: the outputs asked for, and raw or typed (rpc_kserve.c) */
  struct srv_call *next; /* batch queue / list link */
  union {                /* per-kind state of streaming calls */
    struct health_watch *watch; /* Health.Watch */
    struct train_job *train;    /* Train */
  } stream;
} srv_call;

/* A TAG_CALL event from the completion queue (main.c's dispatch; calls.c). */
void srv_call_event(srv_call *c, int ok);

/* Arms a new call for method `rpc` (re-arming after each arrival keeps one always waiting). */
void srv_call_request(struct server *s, srv_rpc rpc);
/* Ends a unary call: sends `msg` (a protobuf-c message, may be NULL) with OK, or status and
 * details (printf-style) without a message. The call is freed when the send completes. */
void srv_call_reply(srv_call *c, const void *msg);
void srv_call_fail(srv_call *c, grpc_status_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Appends the ops that end a call (status, and close unless srv_call_watch_close started it) at
 * ops[n], sets CALL_FINISHING so the call is freed when the batch returns, and returns the new
 * op count. ops needs room for two more. */
size_t srv_closing_ops(srv_call *c, grpc_op *ops, size_t n, grpc_status_code code);
/* Starts the call's RECV_CLOSE_ON_SERVER now, so that the loop hears at once when the client
 * cancels or the deadline passes (srv_call_closed), not when the call is answered. */
void srv_call_watch_close(srv_call *c);
void srv_call_closed(void *tag, int ok); /* TAG_CALL_CLOSED */
/* A status to answer a call with. The checks that turn a request's bytes into a validated
 * request (rpc_ember_decode, health_decode, train_decode) report into one instead of answering,
 * so that they run without a call on the wire (fuzz/ drives them with bytes); the handler then
 * answers srv_call_fail_status. */
typedef struct srv_status {
  grpc_status_code code;
  char msg[512]; /* as much as srv_call_fail sends */
} srv_status;
/* Sets *st (printf-style) and returns -1, so that a check can `return srv_status_set(...)`. */
int srv_status_set(srv_status *st, grpc_status_code code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void srv_call_fail_status(srv_call *c, const srv_status *st);
/* Copies a byte buffer's bytes into buf (caller frees); returns length or -1. */
long srv_bytes(grpc_byte_buffer *bb, uint8_t **buf);
/* The code's name (ember_wire_status_name), "UNKNOWN" past the known ones. */
const char *srv_status_name(grpc_status_code code);
void srv_call_free(srv_call *c);

/* ---- the model registry (registry.c) ---------------------------------------------------- */

typedef struct load_error {
  int64_t version;
  char *path;
  char *message;
  int64_t when;
  int64_t mtime, size; /* the file as it was when it failed: not retried until it changes */
} load_error;

/* A histogram with fixed buckets (metrics.c holds each kind's upper bounds): bucket[i] counts
 * observations in (bound[i-1], bound[i]], the last used bucket those above every bound. */
#define METRICS_BUCKETS 20
typedef struct metrics_hist {
  uint64_t bucket[METRICS_BUCKETS];
  uint64_t count;
  double sum;
} metrics_hist;

typedef struct model_stats {
  uint64_t requests; /* Predict and Sample calls that named this model */
  /* Predict [0] and Sample [1] calls ended, by the status sent: counted in one place,
   * metrics_call_ended, for GetModel's ok and failures and the metrics' ember_requests_total */
  uint64_t ended[2][EMBER_WIRE_NCODES];
  uint64_t batches, batched_requests, batched_rows;
  double queue_ms_sum, compute_ms_sum;
  /* for the metrics endpoint (metrics.c), updated on the loop */
  uint64_t load_failures;     /* files of this model that failed to load, counted per attempt */
  metrics_hist batch_requests, batch_rows, queue_s, compute_s; /* per executed batch / call */
  metrics_hist request_s; /* per call answered by a batch: gRPC's arrival to the answer handed back */
} model_stats;

typedef struct model_version {
  struct model_entry *entry;
  int64_t version;
  char *path;
  int64_t mtime, size;
  ember_model model;
  int refs;         /* the registry's own (while listed) + one per batch in flight */
  ember_infer **idle; /* inference contexts not in use, at most srv->cfg.workers */
  int nidle;
  ember_infer *wide_idle; /* the context for batches spread over srv->wide_pool, when not in use */
  /* Why the version cannot be the default (its signature breaks the model's lineage:
   * policy.h), NULL when it can; since `refused_when` (unix time). Requests that name it
   * are still answered. */
  char *refused;
  int64_t refused_when;
  int64_t refused_by; /* the accepted version whose signature it breaks (refused only) */
} model_version;

typedef struct model_entry {
  char name[72];
  model_version **versions; /* ascending */
  int nversions;
  load_error *errors;
  int nerrors;
  /* The serving policy (policy.h): the last serving.conf that parsed, or the default without
   * one. policy_ok is 0 only while the file has never parsed since start-up: then no version
   * is the default. */
  srv_policy policy;
  int policy_ok;
  load_error policy_error; /* serving.conf cannot be read or parsed (message NULL: none) */
  load_error pin_error;    /* the pinned version cannot be the default (message NULL: none) */
  int64_t default_version; /* what requests for version 0 get; 0: none */
  model_stats stats;
  struct model_entry *next;
} model_entry;

int registry_start(struct server *s);  /* first scan, watchers, poll timer */
void registry_stop(struct server *s);  /* close handles; versions freed when unreferenced */
void registry_free(struct server *s);  /* after the loop ends */
model_entry *registry_find(struct server *s, const char *name); /* NULL unless listed */
int registry_listed(const model_entry *e); /* has versions or load errors */
void registry_rescan_soon(struct server *s); /* a scan shortly (e.g. after publishing) */
/* The version to serve: version 0 = the default (the pinned one, or the latest the policy
 * accepts). NULL if absent. */
model_version *registry_version(model_entry *e, int64_t version);
/* What keeps part of the model from being served, as GetModel's load_errors list it: files
 * that fail to load, refused versions, serving.conf's problems. registry_problems counts
 * them; registry_problem(e, i, &le) fills le (pointing into the registry) for 0 <= i < count. */
int registry_problems(const model_entry *e);
void registry_problem(const model_entry *e, int i, load_error *le);
/* Why requests for version 0 get no version (e has versions but no default). */
const char *registry_no_default_reason(const model_entry *e);
void version_ref(model_version *v);
void version_unref(model_version *v);

/* ---- batching and workers (batcher.c) --------------------------------------------------- */

/* Queues a parsed Predict/Sample (c->version referenced). Answers RESOURCE_EXHAUSTED at once
 * when the queue is full. */
void batcher_submit(struct server *s, srv_call *c);
/* Answers every queued call with `code` (shutdown). */
void batcher_flush(struct server *s, grpc_status_code code, const char *why);
/* Stops every running batch at its next iteration; its calls get UNAVAILABLE (shutdown). */
void batcher_cancel_running(struct server *s);
/* Answers every queued call nobody waits for (deadline passed, or cancelled: srv_call_closed
 * calls this when a client cancels) and stops each running batch none of whose calls is still
 * wanted. The deadline sweep runs it every 50 ms. */
void batcher_drop_gone(struct server *s);
int batcher_idle(struct server *s); /* nothing queued or running */
int batcher_init(struct server *s); /* 0, or -1 when its threads could not start (logged) */
void batcher_close(struct server *s);
/* A TAG_BATCH_DONE event: the worker's batch is back on the loop (main.c's dispatch). */
void batcher_done(void *tag);
/* From any thread: queues (tag, ok) for the loop's dispatch and wakes the loop through
 * wake_fd when the queue was empty (calls.c; main.c says why not uv_async_send). */
void srv_loop_post(struct server *s, void *tag, int ok);

/* ---- RPC handlers ------------------------------------------------------------------------ */

void rpc_ember_handle(srv_call *c);                        /* rpc_ember.c */
/* The request of a Predict, Sample, GetModel or ListModels call (c->rpc), decoded from `len`
 * bytes and checked against the registry and the limits; len < 0: the payload could not be
 * read. 0: Predict and Sample are ready for batcher_submit (c->version referenced, c->entry,
 * c->x, c->img for images, c->rows, c->opts, c->seed, c->row_offset; Sample: c->modes,
 * c->want_samples), GetModel has c->entry and c->version (referenced; NULL: the entry has no
 * loaded version). -1: *st says how to answer. Counts a Predict/Sample in its model's requests
 * once the model is found. */
int rpc_ember_decode(srv_call *c, const uint8_t *bytes, long len, srv_status *st);
/* After compute (ModelInfer's too): x is the call's rows of the network's x as they were
 * computed with (an image request's encoded features and extras), the rest its answers. */
void rpc_ember_complete(srv_call *c, const float *x, const float *y, const float *e,
                        const float *my, const float *me, const float *mw, const int *count,
                        const float *pop_y, const float *pop_e);
/* The model and version a request names (version 0: the default), or NULL with *st NOT_FOUND
 * or INVALID_ARGUMENT; sets c->entry. */
struct model_version *rpc_ember_resolve(srv_call *c, const char *name, int64_t version, srv_status *st);
/* A Predict-like request's options and x (rows, or -1 with the shape refusal in *shape) on
 * version v, merged with the model's defaults and checked against the limits: 0 with the call
 * ready for batcher_submit (v referenced in c->version), or -1 with *st. images: an image
 * model's rows images (their shape already checked against the model's, wire.h's
 * ember_wire_predict_input), with x their extras; on success the call takes the bytes over
 * (c->img; images->data is left NULL, so the unpacked request does not free them). NULL (a
 * vector model, and only then): x is the rows' x_dim values. */
int rpc_ember_check_infer(srv_call *c, struct model_version *v,
                          const Ember__V1__InferenceOptions *options, const float *x, int rows,
                          ProtobufCBinaryData *images, const ember_err *shape, uint64_t row_offset,
                          srv_status *st);
void rpc_kserve_handle(srv_call *c);                       /* rpc_kserve.c */
/* ModelInfer's answer from Predict's y (rows, y_dim) and energies (rows). */
void rpc_kserve_complete(srv_call *c, const float *y, const float *e);
void health_handle(srv_call *c);                           /* health.c */
/* The service a Check or Watch (rpc) asks about, NUL-terminated into service[cap] (cut to fit);
 * -1 with *st: the bytes are not a HealthCheckRequest, or a Check names an unknown service. */
int health_decode(srv_rpc rpc, const uint8_t *bytes, long len, char *service, size_t cap,
                  srv_status *st);
void health_event(srv_call *c, int ok);                    /* a watch's batch completed */
void health_watch_closed(void *tag, int ok);              /* TAG_WATCH_CLOSED */
void health_set_serving(struct server *s, int serving);
/* Why this server should get no new traffic from a balancer (/readyz answers 503 with it):
 * starting, draining, or no model loaded; NULL when ready. */
const char *health_not_ready(struct server *s);
void reflection_handle(srv_call *c);                       /* reflection.c */
void reflection_event(srv_call *c, int ok);
/* The packed ServerReflectionResponse to one request of `len` bytes (len < 0: unreadable); a
 * request that cannot be answered gets an error_response, and the stream goes on. */
grpc_byte_buffer *reflection_respond(srv_rpc rpc, const uint8_t *bytes, long len);
/* Train (train.c): a job per call on its own thread, progress streamed from the loop. */
void train_handle(srv_call *c);
void train_event(srv_call *c, int ok);        /* a send batch completed */
void train_closed(void *tag, int ok);         /* TAG_TRAIN_CLOSED */
void train_cancel_all(struct server *s);      /* shutdown: every job stops at its next step */
/* Start-up, before the first scan: names this host for hidden publication files and removes
 * the ones a killed emberd of this host left in the repository. */
void train_init(struct server *s);
/* A Train request decoded from `len` bytes (len < 0: unreadable) and checked against the
 * server's state (--max-train-jobs, jobs still stopping), the limits and, for a dataset name,
 * --data-dir: 0 with a job that has not started (*out; train_handle starts it, or
 * train_job_discard frees it), or -1 with *st. */
int train_decode(struct server *s, const uint8_t *bytes, long len, struct train_job **out,
                 srv_status *st);
void train_job_discard(struct train_job *j);

/* ---- access control (auth.c) ---------------------------------------------------------- */

typedef struct auth_tokens {
  char **token; /* not NUL-terminated: len[i] bytes each */
  size_t *len;
  int n;
} auth_tokens;

typedef enum {
  AUTH_OPEN,  /* health: never guarded */
  AUTH_USER,  /* inference and model lookups, reflection: --token-file */
  AUTH_ADMIN  /* training: --admin-token-file (else the user rule) */
} auth_level;

/* Reads the token files and the TLS PEM files named by the configuration; -1 after a message
 * on stderr. */
int auth_init(struct server *s);
void auth_free(struct server *s);
/* Logs what is on, and warns about a listener beyond loopback without TLS or tokens. */
void auth_log_startup(struct server *s);
/* TLS credentials from the PEM files, or insecure ones when TLS is off (caller releases). */
grpc_server_credentials *auth_server_credentials(struct server *s);
auth_level auth_level_of(srv_rpc rpc);
/* 0 if the call may go on; else answers it (UNAUTHENTICATED: no or malformed bearer token,
 * PERMISSION_DENIED: a token not on the list) and returns -1. */
int auth_check(srv_call *c, auth_level level);
void auth_tokens_free(auth_tokens *t);

/* ---- metrics (metrics.c): Prometheus text over plain HTTP, --metrics-listen ------------ */

typedef enum {
  METRICS_TRAIN_PUBLISHED, /* the job wrote its version */
  METRICS_TRAIN_FAILED,    /* bad data, an error while training or publishing */
  METRICS_TRAIN_CANCELLED, /* the client cancelled or went away, or the server shut down */
  METRICS_TRAIN_RESULTS
} metrics_train_result;

typedef struct srv_metrics {
  /* ended calls that are not a Predict/Sample on a served model, by method and status */
  uint64_t ended[RPC_COUNT][EMBER_WIRE_NCODES];
  /* Training jobs ended, by result: train.c counts each job once, on the loop, when its
   * thread is joined (jobs running are s->train_running). */
  uint64_t train_jobs_total[METRICS_TRAIN_RESULTS];
  struct http *http; /* metrics.c's listener and connections */
} srv_metrics;

/* Binds and listens on --metrics-listen (if given), before the loop runs; -1 after a message
 * on stderr (address in use or not HOST:PORT). */
int metrics_start(struct server *s);
/* Closes the listener and every connection (idempotent; the loop then finishes closing). */
void metrics_close(struct server *s);
/* Records how a call ended: srv_closing_ops calls it; a stream that sends its own status
 * (health watch, Train) calls it when it does. */
void metrics_call_ended(srv_call *c, grpc_status_code code);
/* Records an executed batch of `requests` calls and `rows` rows that computed for compute_s. */
void metrics_batch(model_stats *st, int requests, int rows, double compute_s);
/* Records how long a call of that batch waited between arrival and compute. */
void metrics_queued(model_stats *st, double queue_s);
void metrics_answered(model_stats *st, double request_s);
int batcher_running_requests(struct server *s); /* calls in batches on workers (batcher.c) */

/* ---- test hooks ------------------------------------------------------------------------------ */

/* Operations made to fail on demand; set from the environment at start-up (main.c) by builds
 * with -DEMBER_FAULT_INJECTION only, and zero otherwise. */
typedef struct srv_faults {
  /* EMBER_FAULT_SCAN_ALLOC=N1,N2,...: allocation N1 of the first rescan fails, N2 of the
   * second, and so on (registry.c); what is left of the list */
  const char *scan_alloc;
  /* EMBER_FAULT_REQUEST_ALLOC=N: the copy of the Nth request's x fails (rpc_ember.c) */
  long request_alloc, requests_copied;
  /* EMBER_FAULT_PUBLISH_PAUSE=saved|linked: a Train job stops at that point of its publication
   * (train.c: the model saved under its hidden name; linked as the new version, the hidden
   * name not yet removed), logs `site=publish_pause`, and waits there until it is cancelled,
   * so a test can kill emberd at that very moment */
  const char *publish_pause;
  /* EMBER_FAULT_SCAN_PAUSE=N: the Nth rescan that loads a new or changed version (the
   * start-up scan not counted) stops once it has loaded what it found, before its result is
   * applied, logs `site=scan_pause`, and waits there for up to 60 s (registry.c); scans counts
   * them */
  long scan_pause, scans;
} srv_faults;

/* ---- the server --------------------------------------------------------------------------- */

/* The stages of a batched call, in order (metrics.c names them) */
typedef enum {
  STAGE_CQ_TO_LOOP, /* the completion-queue thread hands the arrival to the loop */
  STAGE_DECODE,     /* the loop re-arms the method, checks tokens, decodes and validates */
  STAGE_QUEUE,      /* waiting in a batch queue, then the hop to a worker and the copy of x */
  STAGE_COMPUTE,    /* the optimiser on the worker (the whole batch) */
  STAGE_TO_LOOP,    /* the worker's end reaches the loop */
  STAGE_REPLY,      /* the answer encoded and handed to gRPC (which writes it then and there) */
  SRV_STAGES
} srv_stage;

typedef struct cq_event {
  void *tag;
  int ok;
  uint64_t ns;
} cq_event;

typedef struct server {
  srv_config cfg;
  uv_loop_t *loop;
  grpc_server *grpc;
  grpc_completion_queue *cq;
  void *methods[RPC_COUNT]; /* registered method handles */
  /* the loop's inbox: gRPC's completion-queue thread and the inference workers post (tag, ok)
   * events (srv_loop_post), the loop takes them in order */
  uv_thread_t cq_thread;
  uv_poll_t wake; /* the loop's side of wake_fd */
  int wake_fd;    /* an eventfd written when an event goes into an empty array */
  uv_mutex_t evmu;
  cq_event *events;
  int nevents, capevents;
  /* lifecycle */
  int serving;          /* health SERVING */
  int draining;         /* NOT_SERVING, /readyz 503; calls still answered; new Train refused */
  int shutting_down;    /* grpc_server_shutdown_and_notify called */
  int shutdown_done;    /* its tag came back */
  int grace_over;       /* what is left is being cancelled: its calls are answered UNAVAILABLE */
  int calls_alive;      /* srv_call structs allocated */
  srv_tag_kind shutdown_tag;
  uv_signal_t sigint, sigterm;
  uv_timer_t drain_timer, grace_timer;
  uv_timer_t trim_timer; /* hands free heap pages back to the kernel (main.c) */
  /* registry */
  model_entry *models;
  uv_timer_t poll_timer, rescan_timer;
  uv_fs_event_t **watches;
  char **watch_paths;
  int nwatches;
  int scan_running, scan_again;
  srv_metrics metrics; /* metrics.c */
  /* batcher */
  struct bqueue *batch_queues;
  int queued, running_batches;
  uv_timer_t batch_timer;
  uv_prepare_t batch_prepare; /* cuts waiting batches just before the loop sleeps */
  uv_timer_t sweep_timer;     /* deadline sweep over queued calls and running batches */
  struct batch_job *running_jobs;
  struct batch_job *free_jobs; /* finished jobs kept with their arrays for the next batches */
  /* The inference workers (--workers threads, batcher.c): jobs go to them through work_mu,
   * and come back through the loop's inbox (srv_loop_post). */
  uv_thread_t *workers;
  int nworkers;
  uv_mutex_t work_mu;
  uv_cond_t work_cv;
  struct batch_job *work_head, *work_tail; /* cut, waiting for a worker (under work_mu) */
  int workers_quit;                        /* under work_mu */
  uint64_t batch_allocs;       /* allocations made for batches (ember_batch_allocations_total) */
  int flush_at_prepare;
  uint64_t event_cq_ns; /* the completion-queue thread's time of the event being dispatched */
  /* Where a Predict or Sample answered by a batch spent its time (srv_stage), summed over such
   * calls (ember_request_stage_seconds_total): the server's own overhead, stage by stage */
  double stage_s[SRV_STAGES];
  uint64_t staged_calls;
  /* A batch that runs alone spreads over every worker's core (--split-batches): its rows and
   * candidates go to this pool's threads (the worker itself is thread 0), and while it runs no
   * other batch starts. NULL with one worker or --split-batches 0. */
  ember_pool *wide_pool;
  int wide_running;
  uint64_t wide_batches; /* batches that ran spread (ember_spread_batches_total) */
  /* health watches */
  srv_call *watchers;
  /* training (train.c) */
  struct train_job *train_jobs; /* every job whose thread or call is alive */
  int train_running;    /* jobs counted against --max-train-jobs */
  int train_alive;      /* jobs not yet freed (threads joined, handles closed) */
  uint64_t train_seq;
  char train_host[72];  /* this host in hidden publication names (train_init) */
  /* access control (auth.c) */
  auth_tokens tokens, admin_tokens;
  char *tls_cert_pem, *tls_key_pem, *tls_ca_pem;
  long tls_key_len;
  srv_faults faults;
} server;

uint64_t srv_now_ns(void);
/* Starts the shutdown sequence (idempotent): drain, then shutdown_and_notify, then cancel. */
void server_begin_shutdown(server *s, const char *why);
/* Called by the loop when a call is freed or a batch ends, to finish shutdown when idle. */
void server_maybe_finish(server *s);

#endif
