/* metrics.c - the operators' view: Prometheus text format over plain HTTP (--metrics-listen).
 *
 * Recording is cheap and lock-free: every counter and histogram lives in state the loop thread
 * already owns (model_stats per model, srv_metrics per server) and is bumped where the event is
 * handled on the loop (a call's status sent, a batch back from its worker, a load failure
 * applied). Histograms have fixed buckets, so an observation is a short scan and three adds.
 *
 * The endpoint is a minimal HTTP/1.x responder on a libuv TCP listener in the same loop: it
 * reads a request up to the end of its headers (at most REQ_MAX bytes), answers GET or HEAD
 * /metrics with 200 and the text format (version 0.0.4), any other path 404, any other method
 * 405, a malformed request 400 and an oversized one 431, and closes the connection. The same
 * listener answers the load balancers' and orchestrators' probes: /livez 200 whenever it answers
 * at all (the loop runs), /readyz 200 while health_not_ready says nothing is wrong, else 503 with
 * the reason (draining, no model loaded). They live here, not on the gRPC port, because HTTP/1
 * probes (HAProxy's httpchk, Kubernetes' httpGet) cannot speak gRPC. Nothing
 * blocks: a connection that has not sent its headers within REQUEST_MS is closed, after the
 * answer the rest of what the client sends is read and dropped for at most LINGER_MS (so that
 * closing does not reset the connection before the client has read the answer), and at most
 * MAX_CONNS connections are open at once (more are accepted and closed at once).
 */
#include <netdb.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "server.h"

#define REQ_MAX 8192     /* bytes of request line and headers */
#define MAX_CONNS 16     /* connections open at once */
#define REQUEST_MS 5000  /* to send a whole request */
#define LINGER_MS 1000   /* after the answer, until the client closes */

/* ---- recording (loop thread) ---------------------------------------------------------------- */

/* Upper bounds of the buckets (the +Inf bucket is implicit), at most METRICS_BUCKETS - 1 */
static const double batch_requests_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
static const double batch_rows_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536};
static const double queue_bounds[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                      0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static const double compute_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
/* finer below 10 ms, where a lone small query's answer and its tail lie */
static const double request_bounds[] = {0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003,
                                        0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                        2.5, 5, 10};
#define NB(a) ((int)(sizeof(a) / sizeof *(a)))
_Static_assert(NB(queue_bounds) < METRICS_BUCKETS && NB(compute_bounds) < METRICS_BUCKETS &&
                   NB(request_bounds) < METRICS_BUCKETS &&
                   NB(batch_rows_bounds) < METRICS_BUCKETS && NB(batch_requests_bounds) < METRICS_BUCKETS,
               "a histogram has more bounds than METRICS_BUCKETS allows");

static void observe(metrics_hist *h, const double *bounds, int n, double v) {
  int i = 0;
  while (i < n && v > bounds[i]) i++;
  h->bucket[i]++;
  h->count++;
  h->sum += v;
}

void metrics_batch(model_stats *st, int requests, int rows, double compute_s) {
  observe(&st->batch_requests, batch_requests_bounds, NB(batch_requests_bounds), requests);
  observe(&st->batch_rows, batch_rows_bounds, NB(batch_rows_bounds), rows);
  observe(&st->compute_s, compute_bounds, NB(compute_bounds), compute_s);
}

void metrics_queued(model_stats *st, double queue_s) {
  observe(&st->queue_s, queue_bounds, NB(queue_bounds), queue_s);
}

void metrics_answered(model_stats *st, double request_s) {
  observe(&st->request_s, request_bounds, NB(request_bounds), request_s);
}

void metrics_call_ended(srv_call *c, grpc_status_code code) {
  if ((unsigned)code >= EMBER_WIRE_NCODES) code = GRPC_STATUS_UNKNOWN;
  if (srv_infer_rpc(c->rpc) && c->entry) /* ModelInfer counts as a Predict */
    c->entry->stats.ended[c->rpc == RPC_SAMPLE][code]++;
  else if ((unsigned)c->rpc < RPC_COUNT)
    c->srv->metrics.ended[c->rpc][code]++;
}

/* ---- the text format ------------------------------------------------------------------------ */

typedef struct text {
  char *p;
  size_t len, cap;
  int oom;
} text;

static void put(text *t, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void put(text *t, const char *fmt, ...) {
  if (t->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
      t->oom = 1;
      return;
    }
    if (t->p && t->len + (size_t)n < t->cap) {
      t->len += (size_t)n;
      return;
    }
    size_t cap = t->cap ? t->cap : 4096;
    while (cap <= t->len + (size_t)n) cap *= 2;
    char *grown = realloc(t->p, cap);
    if (!grown) {
      t->oom = 1;
      return;
    }
    t->p = grown;
    t->cap = cap;
  }
}

/* A label value with \, " and newline escaped, as the text format asks. */
static const char *esc(const char *v, char *buf, size_t len) {
  size_t o = 0;
  for (; *v && o + 3 < len; v++) {
    if (*v == '\\' || *v == '"') buf[o++] = '\\', buf[o++] = *v;
    else if (*v == '\n') buf[o++] = '\\', buf[o++] = 'n';
    else buf[o++] = *v;
  }
  buf[o] = 0;
  return buf;
}

static void family(text *t, const char *name, const char *type, const char *help) {
  put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const char *const method_names[RPC_COUNT] = {
    [RPC_PREDICT] = "Predict",
    [RPC_SAMPLE] = "Sample",
    [RPC_LIST_MODELS] = "ListModels",
    [RPC_GET_MODEL] = "GetModel",
    [RPC_HEALTH_CHECK] = "Health.Check",
    [RPC_HEALTH_WATCH] = "Health.Watch",
    [RPC_REFLECTION_V1] = "ServerReflectionInfo",
    [RPC_REFLECTION_V1ALPHA] = "ServerReflectionInfo.v1alpha",
    [RPC_TRAIN] = "Train",
    [RPC_KS_SERVER_LIVE] = "inference.ServerLive",
    [RPC_KS_SERVER_READY] = "inference.ServerReady",
    [RPC_KS_MODEL_READY] = "inference.ModelReady",
    [RPC_KS_SERVER_METADATA] = "inference.ServerMetadata",
    [RPC_KS_MODEL_METADATA] = "inference.ModelMetadata",
    [RPC_KS_MODEL_INFER] = "inference.ModelInfer",
    [RPC_UNKNOWN] = "unknown",
};

static const char *method_name(int rpc) { return method_names[rpc] ? method_names[rpc] : "other"; }

static void hist(text *t, const char *name, const char *model, const metrics_hist *h, const double *bounds, int n) {
  uint64_t cum = 0;
  for (int i = 0; i < n; i++) {
    cum += h->bucket[i];
    put(t, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, model, bounds[i], (unsigned long long)cum);
  }
  cum += h->bucket[n];
  put(t, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n", name, model, (unsigned long long)cum);
  put(t, "%s_sum{model=\"%s\"} %.17g\n", name, model, h->sum);
  put(t, "%s_count{model=\"%s\"} %llu\n", name, model, (unsigned long long)h->count);
}

static void render(server *s, text *t) {
  char m[160];
  model_entry *e;
  family(t, "ember_requests_total", "counter",
         "Calls answered, by method, status code and model (the served model a Predict or Sample "
         "named; empty for other methods and for names not served).");
  for (int r = 0; r < RPC_COUNT; r++)
    for (int code = 0; code < EMBER_WIRE_NCODES; code++)
      if (s->metrics.ended[r][code])
        put(t, "ember_requests_total{method=\"%s\",model=\"\",code=\"%s\"} %llu\n", method_name(r),
            srv_status_name((grpc_status_code)code), (unsigned long long)s->metrics.ended[r][code]);
  for (e = s->models; e; e = e->next)
    for (int k = 0; k < 2; k++)
      for (int code = 0; code < EMBER_WIRE_NCODES; code++)
        if (e->stats.ended[k][code])
          put(t, "ember_requests_total{method=\"%s\",model=\"%s\",code=\"%s\"} %llu\n", k ? "Sample" : "Predict",
              esc(e->name, m, sizeof m), srv_status_name((grpc_status_code)code),
              (unsigned long long)e->stats.ended[k][code]);

  static const struct {
    const char *name, *help;
    size_t off;
    const double *bounds;
    int n;
  } hs[] = {
      {"ember_batch_requests", "Requests per executed batch (one optimiser run).",
       offsetof(model_stats, batch_requests), batch_requests_bounds, NB(batch_requests_bounds)},
      {"ember_batch_rows", "Rows (queries) per executed batch.", offsetof(model_stats, batch_rows),
       batch_rows_bounds, NB(batch_rows_bounds)},
      {"ember_queue_seconds", "Time a request answered OK waited between arrival and the start of its batch's compute.",
       offsetof(model_stats, queue_s), queue_bounds, NB(queue_bounds)},
      {"ember_compute_seconds", "Compute time of an executed batch on its worker.", offsetof(model_stats, compute_s),
       compute_bounds, NB(compute_bounds)},
      {"ember_request_seconds",
       "Time a Predict or Sample answered OK by a batch spent in emberd: from gRPC's completion-queue thread taking "
       "its arrival to the answer handed back to gRPC (the sum of its ember_request_stage_seconds_total stages).",
       offsetof(model_stats, request_s), request_bounds, NB(request_bounds)},
  };
  for (size_t i = 0; i < sizeof hs / sizeof *hs; i++) {
    family(t, hs[i].name, "histogram", hs[i].help);
    for (e = s->models; e; e = e->next)
      hist(t, hs[i].name, esc(e->name, m, sizeof m), (const metrics_hist *)((const char *)&e->stats + hs[i].off),
           hs[i].bounds, hs[i].n);
  }

  family(t, "ember_model_versions", "gauge", "Versions of the model loaded and served.");
  for (e = s->models; e; e = e->next)
    put(t, "ember_model_versions{model=\"%s\"} %d\n", esc(e->name, m, sizeof m), e->nversions);
  family(t, "ember_model_latest_version", "gauge",
         "The version served by default: the pinned one, or the highest the serving policy accepts (0: none).");
  for (e = s->models; e; e = e->next)
    put(t, "ember_model_latest_version{model=\"%s\"} %lld\n", esc(e->name, m, sizeof m), (long long)e->default_version);
  family(t, "ember_model_load_errors", "gauge",
         "Problems GetModel lists as load errors: files that fail to load, versions refused for a changed "
         "signature, serving.conf errors.");
  for (e = s->models; e; e = e->next)
    put(t, "ember_model_load_errors{model=\"%s\"} %d\n", esc(e->name, m, sizeof m), registry_problems(e));
  family(t, "ember_model_load_failures_total", "counter",
         "Failed attempts to load a file of the model (at start-up or on reload; a file is retried when it "
         "changes), versions refused for a changed signature and serving.conf errors, each counted when it "
         "appears.");
  for (e = s->models; e; e = e->next)
    put(t, "ember_model_load_failures_total{model=\"%s\"} %llu\n", esc(e->name, m, sizeof m),
        (unsigned long long)e->stats.load_failures);

  family(t, "ember_queued_requests", "gauge", "Predict/Sample requests waiting for a worker.");
  put(t, "ember_queued_requests %d\n", s->queued);
  family(t, "ember_running_requests", "gauge", "Predict/Sample requests in batches running on workers.");
  put(t, "ember_running_requests %d\n", batcher_running_requests(s));
  family(t, "ember_running_batches", "gauge", "Batches running on workers.");
  put(t, "ember_running_batches %d\n", s->running_batches);
  family(t, "ember_batch_allocations_total", "counter",
         "Allocations made to run batches (jobs, their arrays, inference contexts); it stops "
         "rising once every worker has run the largest batch.");
  put(t, "ember_batch_allocations_total %llu\n", (unsigned long long)s->batch_allocs);
  family(t, "ember_spread_batches_total", "counter",
         "Batches that ran alone over every worker's core (--split-batches).");
  put(t, "ember_spread_batches_total %llu\n", (unsigned long long)s->wide_batches);
  family(t, "ember_request_stage_seconds_total", "counter",
         "Time Predict and Sample calls answered by a batch spent in each stage, summed over "
         "them (ember_staged_requests_total): divide to get the mean per call.");
  static const char *const stages[SRV_STAGES] = {"cq_to_loop", "decode", "queue", "compute", "to_loop", "reply"};
  for (int i = 0; i < SRV_STAGES; i++)
    put(t, "ember_request_stage_seconds_total{stage=\"%s\"} %.9f\n", stages[i], s->stage_s[i]);
  family(t, "ember_staged_requests_total", "counter", "Calls counted in ember_request_stage_seconds_total.");
  put(t, "ember_staged_requests_total %llu\n", (unsigned long long)s->staged_calls);
  family(t, "ember_workers", "gauge", "Inference threads (--workers).");
  put(t, "ember_workers %d\n", s->cfg.workers);
  family(t, "ember_serving", "gauge", "1 while health reports SERVING, 0 once shutdown has begun.");
  put(t, "ember_serving %d\n", s->serving ? 1 : 0);

  static const char *const results[METRICS_TRAIN_RESULTS] = {"published", "failed", "cancelled"};
  family(t, "ember_train_jobs_running", "gauge", "Training jobs running.");
  put(t, "ember_train_jobs_running %d\n", s->train_running);
  family(t, "ember_train_jobs_total", "counter", "Training jobs ended, by result.");
  for (int r = 0; r < METRICS_TRAIN_RESULTS; r++)
    put(t, "ember_train_jobs_total{result=\"%s\"} %llu\n", results[r],
        (unsigned long long)s->metrics.train_jobs_total[r]);
}

/* ---- HTTP ------------------------------------------------------------------------------------ */

typedef struct http http;

typedef enum { C_READING, C_WRITING, C_LINGER } conn_state;

typedef struct conn {
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wr;
  uv_shutdown_t sh;
  http *h;
  conn_state state;
  int eof, closing, handles; /* handles still open (tcp, timer) */
  size_t len;
  char *resp;
  struct conn *prev, *next;
  char buf[REQ_MAX];
} conn;

struct http {
  uv_tcp_t listener;
  server *s;
  conn *conns;
  int nconns;
  int listener_open;
};

static void http_maybe_free(http *h) {
  if (!h->listener_open && h->nconns == 0) free(h);
}

static void conn_handle_closed(uv_handle_t *hd) {
  conn *c = hd->data;
  if (--c->handles > 0) return;
  http *h = c->h;
  if (c->prev) c->prev->next = c->next;
  else h->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  h->nconns--;
  free(c->resp);
  free(c);
  http_maybe_free(h);
}

static void conn_close(conn *c) {
  if (c->closing) return;
  c->closing = 1;
  uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, conn_handle_closed);
}

static void on_timeout(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status) { (void)req, (void)status; }

static void on_written(uv_write_t *w, int status) {
  conn *c = w->data;
  if (c->closing) return;
  if (status < 0 || c->eof) {
    conn_close(c);
    return;
  }
  /* answer sent: say so (FIN), then read and drop whatever still comes until the client closes */
  c->state = C_LINGER;
  c->sh.data = c;
  if (uv_shutdown(&c->sh, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, LINGER_MS, 0);
}

static void respond(conn *c, int code, const char *reason, const char *extra, const char *ctype, const char *body,
                    size_t blen, int head_only) {
  text t = {0};
  put(&t, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", code,
      reason, ctype, blen, extra);
  if (!head_only && blen && !t.oom) {
    if (t.len + blen + 1 > t.cap) {
      char *grown = realloc(t.p, t.len + blen + 1);
      if (grown) t.p = grown, t.cap = t.len + blen + 1;
      else t.oom = 1;
    }
    if (!t.oom) memcpy(t.p + t.len, body, blen), t.len += blen;
  }
  if (t.oom) {
    free(t.p);
    conn_close(c);
    return;
  }
  c->resp = t.p;
  c->state = C_WRITING;
  c->wr.data = c;
  uv_buf_t b = uv_buf_init(c->resp, (unsigned)t.len);
  if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) conn_close(c);
}

static void respond_text(conn *c, int code, const char *reason, const char *extra, const char *msg, int head) {
  respond(c, code, reason, extra, "text/plain; charset=utf-8", msg, strlen(msg), head);
}

/* The request's headers are complete in c->buf[0..end): answer it. */
static void handle_request(conn *c, size_t end) {
  char *line = c->buf;
  char *eol = memchr(line, '\n', end);
  size_t n = (size_t)(eol - line);
  if (n > 0 && line[n - 1] == '\r') n--;
  line[n] = 0;
  char *sp1 = strchr(line, ' ');
  char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
  if (!sp1 || !sp2 || sp1 == line || sp2 == sp1 + 1 || strchr(sp2 + 1, ' ') || strncmp(sp2 + 1, "HTTP/1.", 7) != 0) {
    respond_text(c, 400, "Bad Request", "", "bad request: expected 'GET /metrics HTTP/1.1'\n", 0);
    return;
  }
  *sp1 = *sp2 = 0;
  const char *method = line, *target = sp1 + 1;
  int head = strcmp(method, "HEAD") == 0;
  if (strcmp(method, "GET") != 0 && !head) {
    respond_text(c, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed: use GET\n", 0);
    return;
  }
  size_t tl = strcspn(target, "?");
  if (tl == 6 && strncmp(target, "/livez", 6) == 0) { /* answered at all: the loop runs */
    respond_text(c, 200, "OK", "", "live\n", head);
    return;
  }
  if (tl == 7 && strncmp(target, "/readyz", 7) == 0) {
    const char *why = health_not_ready(c->h->s);
    if (why) respond_text(c, 503, "Service Unavailable", "", why, head);
    else respond_text(c, 200, "OK", "", "ready\n", head);
    return;
  }
  if (tl != 8 || strncmp(target, "/metrics", 8) != 0) {
    respond_text(c, 404, "Not Found", "", "not found: the metrics are at /metrics (probes: /livez, /readyz)\n", head);
    return;
  }
  text t = {0};
  render(c->h->s, &t);
  if (t.oom) {
    free(t.p);
    respond_text(c, 500, "Internal Server Error", "", "out of memory\n", head);
    return;
  }
  respond(c, 200, "OK", "", "text/plain; version=0.0.4; charset=utf-8", t.p, t.len, head);
  free(t.p);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *b) {
  (void)suggested;
  conn *c = hd->data;
  if (c->state == C_READING) *b = uv_buf_init(c->buf + c->len, (unsigned)(REQ_MAX - c->len));
  else *b = uv_buf_init(c->buf, REQ_MAX); /* after the request: read to drop */
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
  (void)b;
  conn *c = st->data;
  if (c->closing) return;
  if (nread < 0) {
    c->eof = 1;
    if (c->state != C_WRITING) conn_close(c); /* a write in flight closes when it completes */
    return;
  }
  if (c->state != C_READING || nread == 0) return;
  size_t from = c->len >= 3 ? c->len - 3 : 0;
  c->len += (size_t)nread;
  for (size_t i = from; i < c->len; i++) {
    /* the end of the headers: an empty line (CRLF CRLF, or bare LF LF) */
    if (c->buf[i] == '\n' && ((i >= 1 && c->buf[i - 1] == '\n') ||
                              (i >= 3 && c->buf[i - 1] == '\r' && c->buf[i - 2] == '\n' && c->buf[i - 3] == '\r'))) {
      handle_request(c, i + 1);
      return;
    }
  }
  if (c->len == REQ_MAX)
    respond_text(c, 431, "Request Header Fields Too Large", "",
                 "request too large: at most 8192 bytes of request line and headers\n", 0);
}

static void free_handle(uv_handle_t *hd) { free(hd); }

static void on_connection(uv_stream_t *ls, int status) {
  http *h = ls->data;
  if (status < 0) {
    srv_log(LOG_WARN, "metrics: accept failed", "error=\"%s\"", uv_strerror(status));
    return;
  }
  conn *c = calloc(1, sizeof *c);
  if (!c) { /* take the connection off the backlog anyway, or libuv stops accepting */
    uv_tcp_t *tmp = malloc(sizeof *tmp);
    if (!tmp) return;
    uv_tcp_init(ls->loop, tmp);
    uv_accept(ls, (uv_stream_t *)tmp);
    uv_close((uv_handle_t *)tmp, free_handle);
    return;
  }
  c->h = h;
  c->handles = 2;
  uv_tcp_init(ls->loop, &c->tcp);
  uv_timer_init(ls->loop, &c->timer);
  c->tcp.data = c->timer.data = c;
  c->next = h->conns;
  if (h->conns) h->conns->prev = c;
  h->conns = c;
  h->nconns++;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  if (h->nconns > MAX_CONNS) {
    srv_log(LOG_DEBUG, "metrics: too many connections, one closed", "max=%d", MAX_CONNS);
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_timeout, REQUEST_MS, 0);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) conn_close(c);
}

static void listener_closed(uv_handle_t *hd) {
  http *h = hd->data;
  h->listener_open = 0;
  http_maybe_free(h);
}

static int loopback(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET)
    return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return memcmp(a, &in6addr_loopback, sizeof *a) == 0;
  }
  return 0;
}

int metrics_start(server *s) {
  const char *spec = s->cfg.metrics_listen;
  if (!spec) return 0;
  char host[256];
  const char *colon = strrchr(spec, ':');
  size_t hl = colon ? (size_t)(colon - spec) : 0;
  if (hl >= 2 && spec[0] == '[' && spec[hl - 1] == ']') spec++, hl -= 2; /* [v6 address]:port */
  if (!colon || hl == 0 || hl >= sizeof host || !colon[1]) {
    fprintf(stderr, "emberd: --metrics-listen expects HOST:PORT (e.g. 127.0.0.1:9090), got '%s'\n", s->cfg.metrics_listen);
    return -1;
  }
  memcpy(host, spec, hl);
  host[hl] = 0;
  struct addrinfo hints = {0}, *ai = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  int gerr = getaddrinfo(host, colon + 1, &hints, &ai);
  if (gerr != 0 || !ai) {
    fprintf(stderr, "emberd: --metrics-listen %s: %s\n", s->cfg.metrics_listen,
            gerr ? gai_strerror(gerr) : "no address");
    if (ai) freeaddrinfo(ai);
    return -1;
  }
  http *h = calloc(1, sizeof *h);
  if (!h) {
    freeaddrinfo(ai);
    fprintf(stderr, "emberd: out of memory\n");
    return -1;
  }
  h->s = s;
  uv_tcp_init(s->loop, &h->listener);
  h->listener.data = h;
  h->listener_open = 1;
  s->metrics.http = h;
  int err = uv_tcp_bind(&h->listener, ai->ai_addr, 0);
  if (err == 0) err = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
  int wide = !loopback(ai->ai_addr);
  freeaddrinfo(ai);
  if (err != 0) {
    fprintf(stderr, "emberd: cannot listen for metrics on %s: %s\n", s->cfg.metrics_listen, uv_strerror(err));
    metrics_close(s);
    return -1;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss, port = 0;
  if (uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &sl) == 0)
    port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
  srv_log(LOG_INFO, "metrics listening", "listen=%s port=%d path=/metrics", s->cfg.metrics_listen, port);
  if (wide)
    srv_log(LOG_WARN, "the metrics endpoint listens beyond loopback and has no access control",
            "listen=%s", s->cfg.metrics_listen);
  return 0;
}

void metrics_close(server *s) {
  http *h = s->metrics.http;
  if (!h) return;
  s->metrics.http = NULL;
  for (conn *c = h->conns; c; c = c->next) conn_close(c);
  uv_close((uv_handle_t *)&h->listener, listener_closed);
}
