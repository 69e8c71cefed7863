/* remote_bench.c - `ember bench serve`: load on an emberd server, one key=value line per
 * configuration.
 *
 * A load generator on the gRPC core asynchronous API: one completion queue, whose thread takes
 * every completion, every tag a pointer to a bench_call whose first field says what it is (a
 * Predict of the load, or the GetModel that reads the server's counters when the timed window
 * opens). Two shapes:
 *
 *   closed loop (default): --streams N calls in flight; each stream sends its next Predict as
 *     soon as the previous one returns. Latency runs from the send.
 *   open loop (--rate R): requests arrive at R per second, at fixed intervals (or Poisson
 *     with --poisson), whether or not earlier ones have returned; at most --streams are in
 *     flight, later arrivals wait for a free stream. Latency runs from the *scheduled* arrival,
 *     so a server (or client) that falls behind shows it instead of hiding it (no coordinated
 *     omission). Each call's deadline also runs from its arrival: an arrival still waiting when
 *     its deadline has passed is counted as DEADLINE_EXCEEDED without being sent. Arrivals are
 *     sent by a thread of their own that sleeps to each one's time (clock_nanosleep, 1 ns timer
 *     slack): the completion queue's own deadline has millisecond granularity, and sends timed
 *     by it were measured 0.4-0.7 ms late on average, which counted as server latency.
 *     send_lag_* says how late the sends were against their schedule (a timer that woke late, a
 *     sender that waited for the CPU, or an arrival that waited for a free stream).
 *
 * Each configuration runs --warmup seconds, then the timed window of --duration seconds, then
 * stops sending and drains every call still in flight (each has a deadline, so this ends).
 * queries_per_s counts rows of requests answered OK inside the window; latencies and errors
 * are those of requests that arrived (or were sent) inside it, followed until they finish.
 * avg_batch_* come from the server's counters (GetModel) read when the window opens and after
 * the drain: delta batched_requests (rows) / delta batches. gflops is queries_per_s x the FLOPs
 * of one row (2 x samples x iters x ember_net_row_macs of the model's shape, summed over an
 * ardfo model's y_dim prefix nets, which every iteration runs; a Langevin model's: 2 x 2 x
 * chains x (chain steps + 1, and the second chain's) x the row's multiply-adds, its default
 * chain), roofline its
 * share of the sgemm peak measured on this machine before the load, with --threads threads:
 * meaningful when the server runs here with that many threads. With --local FILE (the
 * checkpoint the server serves) the library's own p50 for the same request shape is measured
 * in this process before the load too, and each line adds it and server_overhead (server p50 /
 * library p50): what the server adds, from one run. An open-loop line adds the library alone
 * at the same rate, measured just before its load (library_open_p50_ms, library_open_p99_ms:
 * what this machine's scheduling does to a query's tail without gRPC, emberd or a second
 * process).
 *
 * Shutdown order: stop sending; drain the queue until no call is in flight (each call is
 * unreferenced and its buffers freed as it completes); read the final counters; after the last
 * configuration shut the queue down, drain it to GRPC_QUEUE_SHUTDOWN and destroy it; then
 * close the synchronous client (channel) and shut gRPC down.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "ember/net.h"
#include "remote_client.h"
#include "wire.h"

#define NCODES EMBER_WIRE_NCODES /* gRPC status codes 0..16 */
#define NPAYLOADS 16       /* distinct requests, cycled */

typedef enum { CALL_PREDICT = 1, CALL_STATS } call_kind;

/* One stream's call (or the counters' GetModel): the completion-queue tag. */
typedef struct bench_call {
  call_kind kind;
  int busy;
  grpc_call *call;
  grpc_byte_buffer *send, *recv;
  grpc_metadata_array initial_md, trailing_md;
  grpc_status_code status;
  grpc_slice details;
  double origin; /* latency runs from here: send time (closed) or arrival (open) */
  int measured;  /* origin inside the timed window */
} bench_call;

typedef struct counters {
  int valid;
  uint64_t batches, batched_requests, batched_rows;
} counters;

/* One configuration's run. */
typedef struct bench_run {
  remote_client *client;
  grpc_completion_queue *cq;
  const char *model;
  int64_t version;
  int open, poisson, nstreams, rows, deadline_ms;
  double rate;
  ember_rng rng;
  grpc_slice payloads[NPAYLOADS];
  int next_payload;
  bench_call *streams;
  int *free_streams, nfree; /* open loop: streams not in flight */
  bench_call stats;         /* GetModel when the window opens */
  counters before, after;
  double t_begin, t_measure, t_end, next_arrival;
  int inflight, max_inflight;
  /* results */
  double *lat;
  size_t nlat, cap;
  uint64_t ok_in_window, measured_calls;
  uint64_t expired_unsent; /* open loop: arrivals whose deadline passed before a stream was free */
  /* open loop: the sender thread (open_sender) and the completion-queue thread share the run's
   * mutable fields (streams, counters, errors, latencies, the next arrival, sender_done, the
   * lag sums) under mu; `freed` wakes the sender when a stream comes back */
  pthread_mutex_t mu;
  pthread_cond_t freed;
  int sender_done;
  double lag_sum, lag_max; /* how late measured sends were against their arrival */
  uint64_t lag_n;
  uint64_t errors[NCODES + 1]; /* last: failures to start a call */
} bench_run;

static gpr_timespec deadline_at(double t) {
  double us = (t - ember_now()) * 1e6;
  if (us < 0) us = 0;
  if (us > 3600e6) us = 3600e6;
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros((int64_t)us, GPR_TIMESPAN));
}

static void call_release(bench_call *bc) {
  if (bc->call) grpc_call_unref(bc->call);
  if (bc->send) grpc_byte_buffer_destroy(bc->send);
  if (bc->recv) grpc_byte_buffer_destroy(bc->recv);
  grpc_metadata_array_destroy(&bc->initial_md);
  grpc_metadata_array_destroy(&bc->trailing_md);
  grpc_slice_unref(bc->details);
  bc->call = NULL;
  bc->send = bc->recv = NULL;
  bc->busy = 0;
}

/* Starts one unary call on bc; send is consumed. 0, or -1 with bc released. */
static int call_start(bench_run *b, bench_call *bc, ember__method m, grpc_byte_buffer *send,
                      double deadline) {
  bc->send = send;
  bc->recv = NULL;
  grpc_metadata_array_init(&bc->initial_md);
  grpc_metadata_array_init(&bc->trailing_md);
  bc->details = grpc_empty_slice();
  bc->status = GRPC_STATUS_UNKNOWN;
  bc->call = grpc_channel_create_registered_call(b->client->channel, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                 b->cq, ember__client_method(b->client, m),
                                                 deadline_at(deadline), NULL);
  if (!bc->call) {
    call_release(bc);
    return -1;
  }
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.metadata =
      ember__client_metadata(b->client, &ops[0].data.send_initial_metadata.count);
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = bc->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &bc->initial_md;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &bc->recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &bc->trailing_md;
  ops[5].data.recv_status_on_client.status = &bc->status;
  ops[5].data.recv_status_on_client.status_details = &bc->details;
  if (grpc_call_start_batch(bc->call, ops, sizeof ops / sizeof *ops, bc, NULL) != GRPC_CALL_OK) {
    call_release(bc);
    return -1;
  }
  bc->busy = 1;
  return 0;
}

static void record_error(bench_run *b, int code) {
  b->errors[code >= 0 && code < NCODES ? code : NCODES]++;
}

/* Sends the next Predict on stream bc, its latency running from origin. */
static void send_predict(bench_run *b, bench_call *bc, double origin) {
  bc->origin = origin;
  bc->measured = origin >= b->t_measure && origin < b->t_end;
  if (bc->measured) b->measured_calls++;
  if (bc->measured && b->open) {
    double lag = ember_now() - origin;
    b->lag_sum += lag;
    b->lag_n++;
    if (lag > b->lag_max) b->lag_max = lag;
  }
  grpc_slice s = b->payloads[b->next_payload++ % NPAYLOADS];
  if (call_start(b, bc, EMBER__PREDICT, grpc_raw_byte_buffer_create(&s, 1),
                 origin + b->deadline_ms / 1e3) < 0) {
    if (bc->measured) record_error(b, NCODES);
    if (b->open) b->free_streams[b->nfree++] = (int)(bc - b->streams);
    return;
  }
  if (++b->inflight > b->max_inflight) b->max_inflight = b->inflight;
}

/* Seconds to the next open-loop arrival: fixed intervals, or Poisson's exponential gaps. */
static double arrival_gap(ember_rng *rng, int poisson, double rate) {
  return (poisson ? -log(ember_rng_uniform_pos(rng)) : 1.0) / rate;
}

static double next_gap(bench_run *b) { return arrival_gap(&b->rng, b->poisson, b->rate); }

/* Open loop: the sender thread. Sleeps to each arrival's time and sends it on a free stream;
 * an arrival that finds none waits (under `freed`) until one returns or its deadline passes. */
static void *open_sender(void *arg) {
  bench_run *b = arg;
  pthread_mutex_lock(&b->mu);
  while (b->next_arrival < b->t_end) {
    double origin = b->next_arrival, now = ember_now();
    if (origin > now) {
      pthread_mutex_unlock(&b->mu);
      cli_sleep_until(origin);
      pthread_mutex_lock(&b->mu);
      continue;
    }
    double expires = origin + b->deadline_ms / 1e3;
    if (expires <= now) {
      /* waited past its deadline for a stream: it would have failed anyway */
      if (origin >= b->t_measure) {
        b->measured_calls++;
        b->expired_unsent++;
        record_error(b, GRPC_STATUS_DEADLINE_EXCEEDED);
      }
    } else if (b->nfree == 0) {
      struct timespec until = cli_timespec_at(expires);
      pthread_cond_timedwait(&b->freed, &b->mu, &until);
      continue;
    } else {
      send_predict(b, &b->streams[b->free_streams[--b->nfree]], origin);
    }
    b->next_arrival += next_gap(b);
  }
  b->sender_done = 1;
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

static int push_latency(bench_run *b, double t) {
  if (b->nlat == b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 4096;
    double *lat = realloc(b->lat, cap * sizeof *lat);
    if (!lat) return -1;
    b->lat = lat;
    b->cap = cap;
  }
  b->lat[b->nlat++] = t;
  return 0;
}

static void read_counters(const Ember__V1__ModelInfo *info, counters *c) {
  memset(c, 0, sizeof *c);
  if (!info || !info->stats) return;
  c->valid = 1;
  c->batches = info->stats->batches;
  c->batched_requests = info->stats->batched_requests;
  c->batched_rows = info->stats->batched_rows;
}

static void finish_predict(bench_run *b, bench_call *bc, double now) {
  b->inflight--;
  if (bc->status == GRPC_STATUS_OK && now >= b->t_measure && now < b->t_end) b->ok_in_window++;
  if (bc->measured) {
    if (bc->status != GRPC_STATUS_OK) record_error(b, bc->status);
    else if (push_latency(b, now - bc->origin) < 0) record_error(b, NCODES);
  }
  call_release(bc);
  if (!b->open) {
    if (now < b->t_end) send_predict(b, bc, now);
  } else {
    b->free_streams[b->nfree++] = (int)(bc - b->streams);
    pthread_cond_signal(&b->freed);
  }
}

static void finish_stats(bench_run *b, bench_call *bc) {
  if (bc->status == GRPC_STATUS_OK && bc->recv) {
    Ember__V1__ModelInfo *info =
        (Ember__V1__ModelInfo *)ember__unpack(bc->recv, &ember__v1__model_info__descriptor);
    read_counters(info, &b->before);
    if (info) ember__v1__model_info__free_unpacked(info, NULL);
  }
  call_release(bc);
}

static void start_stats(bench_run *b) {
  Ember__V1__GetModelRequest req = EMBER__V1__GET_MODEL_REQUEST__INIT;
  req.model = (char *)b->model;
  req.version = b->version;
  b->stats.kind = CALL_STATS;
  call_start(b, &b->stats, EMBER__GET_MODEL, ember_wire_pack(&req.base), ember_now() + b->deadline_ms / 1e3);
}

/* The event loop of one configuration: warm-up, window, drain. Open loop: the sender thread
 * sends, this thread takes completions; both under b->mu. 0, or -1 when the sender thread
 * could not start. */
static int run_load(bench_run *b, double warmup, double duration) {
  b->t_begin = ember_now();
  b->t_measure = b->t_begin + warmup;
  b->t_end = b->t_measure + duration;
  b->next_arrival = b->t_begin;
  int stats_issued = 0;
  pthread_t sender = 0;
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&b->freed, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&b->mu, NULL);
  if (!b->open) {
    b->sender_done = 1;
    for (int i = 0; i < b->nstreams; i++) send_predict(b, &b->streams[i], ember_now());
  } else if (pthread_create(&sender, NULL, open_sender, b) != 0) {
    pthread_cond_destroy(&b->freed);
    pthread_mutex_destroy(&b->mu);
    return -1;
  }
  pthread_mutex_lock(&b->mu);
  for (;;) {
    double now = ember_now();
    if (!stats_issued && now >= b->t_measure) {
      start_stats(b);
      stats_issued = 1;
    }
    int sending = b->open ? !b->sender_done : now < b->t_end;
    if (!sending && stats_issued && b->inflight == 0 && !b->stats.busy) break;
    /* Wake for the window's start or a completion; once the sender is done, every 5 ms, since
     * nothing wakes this thread when it ends with no call in flight. */
    double wake = now + (sending ? 0.1 : 0.005);
    if (!stats_issued && b->t_measure < wake) wake = b->t_measure;
    pthread_mutex_unlock(&b->mu);
    grpc_event ev = grpc_completion_queue_next(b->cq, deadline_at(wake), NULL);
    double at = ember_now();
    pthread_mutex_lock(&b->mu);
    if (ev.type == GRPC_OP_COMPLETE) {
      bench_call *bc = ev.tag;
      if (!ev.success) bc->status = GRPC_STATUS_UNKNOWN; /* the batch failed in our own stack */
      switch (bc->kind) {
      case CALL_PREDICT: finish_predict(b, bc, at); break;
      case CALL_STATS: finish_stats(b, bc); break;
      }
    } else if (ev.type == GRPC_QUEUE_SHUTDOWN) {
      break; /* not before the caller shuts it down */
    } /* GRPC_QUEUE_TIMEOUT: time to open the window or look for the end */
  }
  pthread_mutex_unlock(&b->mu);
  if (b->open) pthread_join(sender, NULL);
  pthread_cond_destroy(&b->freed);
  pthread_mutex_destroy(&b->mu);
  return 0;
}

/* ---- configuration and output -------------------------------------------------------------- */

typedef struct serve_opts {
  const char *server, *model, *local;
  int64_t version;
  int_list streams, samples, rates;
  int iters, rows, threads, deadline_ms, poisson;
  float duration, warmup;
  uint64_t seed;
} serve_opts;

/* NPAYLOADS packed Predict requests of `rows` random normal x rows each. */
static int make_payloads(bench_run *b, const Ember__V1__ModelInfo *info, int samples,
                         const serve_opts *o) {
  size_t nx = (size_t)o->rows * info->x_dim;
  float *x = malloc(nx * sizeof(float));
  if (!x) return -1;
  ember_rng rng;
  ember_rng_seed(&rng, o->seed, 0);
  for (int p = 0; p < NPAYLOADS; p++) {
    ember_rng_normal_fill(&rng, x, nx);
    ember_infer_opts io = EMBER_INFER_DEFAULTS;
    io.samples = samples;
    io.iters = o->iters;
    Ember__V1__InferenceOptions opts;
    ember_wire_infer_to_msg(&io, EMBER_WIRE_SAMPLES | EMBER_WIRE_ITERS, &opts, NULL);
    opts.seed = o->seed + (uint64_t)p;
    Ember__V1__PredictRequest req = EMBER__V1__PREDICT_REQUEST__INIT;
    req.model = (char *)o->model;
    req.version = info->version;
    ember_wire_predict_x(&req, x, o->rows, (int)info->x_dim);
    req.options = &opts;
    req.row_offset = (uint64_t)p * (uint64_t)o->rows;
    size_t len = ember__v1__predict_request__get_packed_size(&req);
    b->payloads[p] = grpc_slice_malloc(len);
    ember__v1__predict_request__pack(&req, GRPC_SLICE_START_PTR(b->payloads[p]));
  }
  free(x);
  return 0;
}

static void print_errors(const bench_run *b) {
  uint64_t total = 0;
  for (int i = 0; i <= NCODES; i++) total += b->errors[i];
  printf(" errors=%llu", (unsigned long long)total);
  if (!total) return;
  char buf[16];
  const char *sep = " errors_by_status=";
  for (int i = 0; i <= NCODES; i++)
    if (b->errors[i]) {
      printf("%s%s:%llu", sep, i == NCODES ? "CLIENT" : remote_code_name((grpc_status_code)i, buf),
             (unsigned long long)b->errors[i]);
      sep = ",";
    }
}

static double ratio(uint64_t num, uint64_t den) { return den ? (double)num / (double)den : NAN; }

/* The library's own figures for the same model and request shape, measured in this process
 * before the load (--local FILE, the checkpoint the server serves): one request's rows at a
 * time, the model's inference defaults with the run's samples and iterations, as emberd runs
 * them, on --threads threads. rate 0: 100 calls back to back; otherwise --duration seconds of
 * calls due at `rate` per second (fixed intervals, or Poisson with --poisson), each one's
 * latency from when it was due: the open loop without gRPC, emberd or a second process. *p50
 * and *p99 in ms; 0, or -1 (and both NAN) without --local or when the model fails. */
static int library_figures(const ember_model *m, ember_pool *pool, const serve_opts *o, int samples, int rate,
                           double *p50, double *p99) {
  *p50 = *p99 = NAN;
  if (!m) return -1;
  ember_infer *inf = NULL;
  ember_err err;
  size_t nx = (size_t)o->rows * (size_t)m->x_dim;
  long n = rate > 0 ? (long)(rate * (double)o->duration) : 100;
  if (n < 100) n = 100;
  float *x = malloc(nx * sizeof(float)), *y = malloc((size_t)o->rows * (size_t)m->y_dim * sizeof(float));
  float *e = malloc((size_t)o->rows * sizeof(float));
  double *lat = malloc((size_t)n * sizeof *lat);
  int rc = -1;
  if (!x || !y || !e || !lat || ember_infer_create(&inf, m, pool, &err) < 0) goto done;
  ember_rng rng;
  ember_rng_seed(&rng, o->seed, 0);
  ember_rng_normal_fill(&rng, x, nx);
  ember_infer_opts io = m->infer;
  io.samples = samples;
  io.iters = o->iters;
  ember_rng arrivals;
  ember_rng_seed(&arrivals, o->seed, 1);
  double due = 0.0;
  for (long r = -10; r < n; r++) { /* 10 untimed calls first */
    double t0 = ember_now();
    if (rate > 0 && r >= 0) {
      due = r == 0 ? t0 : due + arrival_gap(&arrivals, o->poisson, rate);
      cli_sleep_until(t0 = due);
    }
    if (ember_infer_predict(inf, x, o->rows, &io, o->seed + (uint64_t)(r + 10), 0, y, e, &err) < 0) goto done;
    if (r >= 0) lat[r] = ember_now() - t0;
  }
  qsort(lat, (size_t)n, sizeof *lat, cli_cmp_double);
  *p50 = cli_percentile(lat, (int)n, 0.5) * 1e3;
  *p99 = cli_percentile(lat, (int)n, 0.99) * 1e3;
  rc = 0;
done:
  if (rc < 0 && x && y && e && lat)
    fprintf(stderr, "ember bench serve: --local: %s\n", inf ? err.msg : "could not run the model");
  ember_infer_destroy(inf);
  free(x);
  free(y);
  free(e);
  free(lat);
  return rc;
}

/* One configuration: load, drain, counters, one line. 0, or 1 if no call succeeded. */
static int run_config(remote_client *client, grpc_completion_queue *cq,
                      const Ember__V1__ModelInfo *info, const serve_opts *o, int nstreams,
                      int samples, int rate, double peak, double lib_p50, const ember_model *local,
                      ember_pool *pool) {
  bench_run b;
  memset(&b, 0, sizeof b);
  b.client = client;
  b.cq = cq;
  b.model = o->model;
  b.version = info->version;
  b.open = rate > 0;
  b.poisson = o->poisson;
  b.rate = rate;
  b.nstreams = nstreams;
  b.rows = o->rows;
  b.deadline_ms = o->deadline_ms;
  ember_rng_seed(&b.rng, o->seed, 1);
  b.streams = calloc((size_t)nstreams, sizeof *b.streams);
  b.free_streams = malloc((size_t)nstreams * sizeof *b.free_streams);
  int rc = 1;
  if (!b.streams || !b.free_streams || make_payloads(&b, info, samples, o) < 0) {
    fprintf(stderr, "ember bench serve: out of memory for %d streams\n", nstreams);
    goto done;
  }
  for (int i = 0; i < nstreams; i++) {
    b.streams[i].kind = CALL_PREDICT;
    b.free_streams[b.nfree++] = nstreams - 1 - i;
  }
  /* the library alone at the same rate, just before: what this machine's scheduling does to a
   * query's tail without the server */
  double lib_open_p50 = NAN, lib_open_p99 = NAN;
  if (b.open && local) library_figures(local, pool, o, samples, rate, &lib_open_p50, &lib_open_p99);
  if (run_load(&b, o->warmup, o->duration) < 0) {
    fprintf(stderr, "ember bench serve: could not start the open loop's sender thread\n");
    goto done;
  }

  Ember__V1__ModelInfo *after = NULL;
  remote_status st;
  if (remote_get_model(client, o->model, info->version, &after, &st) == GRPC_STATUS_OK)
    read_counters(after, &b.after);
  if (after) ember__v1__model_info__free_unpacked(after, NULL);

  qsort(b.lat, b.nlat, sizeof *b.lat, cli_cmp_double);
  int nl = (int)b.nlat;
  double p50 = nl ? cli_percentile(b.lat, nl, 0.5) * 1e3 : NAN;
  double p90 = nl ? cli_percentile(b.lat, nl, 0.9) * 1e3 : NAN;
  double p99 = nl ? cli_percentile(b.lat, nl, 0.99) * 1e3 : NAN;
  double rps = (double)b.ok_in_window / o->duration, qps = rps * o->rows;
  ember_net_shape shape;
  double flop_per_query = NAN, macs = 0.0;
  const Ember__V1__LangevinOptions *lo = info->defaults ? info->defaults->langevin : NULL;
  if (remote_model_shape(info, &shape) == 0 && remote_model_cost(info, NULL, &macs) == 0) {
    if (strcmp(info->method, "mse") == 0)
      flop_per_query = 2.0 * (macs + (double)shape.in_x * shape.width);
    else if (strcmp(info->method, "langevin") == 0 && lo) { /* a forward and a backward per chain step */
      double passes = lo->chain_steps + 1.0;
      if (lo->optional_again_steps_case == EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_AGAIN_STEPS_AGAIN_STEPS &&
          lo->again_steps > 0)
        passes += lo->again_steps + 1.0;
      flop_per_query = 2.0 * 2.0 * samples * passes * macs;
    } else
      flop_per_query = 2.0 * samples * o->iters * macs;
  }
  double gflops = qps * flop_per_query / 1e9;
  int have = b.before.valid && b.after.valid && b.after.batches >= b.before.batches;
  double abr = have ? ratio(b.after.batched_requests - b.before.batched_requests, b.after.batches - b.before.batches) : NAN;
  double abw = have ? ratio(b.after.batched_rows - b.before.batched_rows, b.after.batches - b.before.batches) : NAN;
  printf("serve mode=%s model=%s version=%lld streams=%d rate=%d samples=%d iters=%d rows=%d "
         "duration_s=%g requests=%llu requests_per_s=%.1f queries_per_s=%.1f p50_ms=%.3f "
         "p90_ms=%.3f p99_ms=%.3f",
         b.open ? "open" : "closed", o->model, (long long)info->version, nstreams, rate, samples,
         o->iters, o->rows, (double)o->duration, (unsigned long long)b.measured_calls, rps, qps, p50,
         p90, p99);
  print_errors(&b);
  if (b.open)
    printf(" expired_unsent=%llu max_in_flight=%d send_lag_mean_ms=%.3f send_lag_max_ms=%.3f",
           (unsigned long long)b.expired_unsent, b.max_inflight, b.lag_n ? b.lag_sum / (double)b.lag_n * 1e3 : 0.0,
           b.lag_max * 1e3);
  printf(" avg_batch_requests=%.2f avg_batch_rows=%.2f gflops=%.1f sgemm_peak_gflops=%.1f "
         "roofline=%.0f%%",
         abr, abw, gflops, peak, 100.0 * gflops / peak);
  if (!isnan(lib_p50)) printf(" library_p50_ms=%.3f server_overhead=%.2fx", lib_p50, p50 / lib_p50);
  if (!isnan(lib_open_p99)) printf(" library_open_p50_ms=%.3f library_open_p99_ms=%.3f", lib_open_p50, lib_open_p99);
  printf("\n");
  fflush(stdout);
  rc = b.ok_in_window > 0 ? 0 : 1;
  if (rc) fprintf(stderr, "ember bench serve: no request succeeded in the window\n");
done:
  for (int p = 0; p < NPAYLOADS; p++) grpc_slice_unref(b.payloads[p]);
  free(b.lat);
  free(b.streams);
  free(b.free_streams);
  return rc;
}

static int usage_error(const char *msg) {
  fprintf(stderr, "ember bench serve: %s\n", msg);
  return 2;
}

int remote_cmd_bench_serve(const char *server, int argc, char **argv) {
  serve_opts o = {.server = NULL, .model = NULL, .version = 0, .streams = {1, {64}},
                  .samples = {1, {1024}}, .rates = {0, {0}}, .iters = 3, .rows = 1,
                  .threads = cli_default_threads(), .deadline_ms = 10000, .poisson = 0,
                  .duration = 10.0f, .warmup = 2.0f, .seed = 1};
  opt_spec specs[] = {
      {"server", OPT_STR, &o.server, "HOST:PORT", "the emberd server (or ember --server HOST:PORT bench serve)", 0, 0},
      {"model", OPT_STR, &o.model, "NAME", "model name on the server", 0, 0},
      {"version", OPT_I64, &o.version, NULL, "model version (0 = the latest loaded)", 0, 0},
      {"streams", OPT_LIST, &o.streams, NULL, "closed loop: calls in flight (default 64); with --rate: "
       "the most in flight (default 1024)", 0, 1},
      {"rate", OPT_LIST, &o.rates, "R[,R...]", "open loop: requests per second (default: closed loop)", 0, 1},
      {"poisson", OPT_FLAG, &o.poisson, NULL, "open loop: Poisson arrivals instead of fixed intervals", 0, 0},
      {"samples", OPT_LIST, &o.samples, NULL, "DFO samples per row", 0, 0},
      {"iters", OPT_INT, &o.iters, NULL, "DFO iterations", 0, 0},
      {"rows", OPT_INT, &o.rows, NULL, "x rows per request", 0, 0},
      {"duration", OPT_FLOAT, &o.duration, "S", "timed seconds per configuration", 0, 0},
      {"warmup", OPT_FLOAT, &o.warmup, "S", "untimed seconds of load first", 0, 0},
      {"deadline-ms", OPT_INT, &o.deadline_ms, NULL, "deadline of each request, milliseconds", 0, 0},
      {"seed", OPT_U64, &o.seed, NULL, "random seed for inputs and requests", 0, 0},
      {"threads", OPT_INT, &o.threads, NULL, "threads for the sgemm peak and --local (default: online CPUs)", 0, 1},
      {"local", OPT_STR, &o.local, "FILE", "the checkpoint the server serves: measure the library's p50 for the "
       "same requests in this process first, and print it beside the server's (server_overhead = server p50 / library p50)", 0, 0},
      REMOTE_SECURITY_SPECS(remote_security_opts()),
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("bench serve", "--server HOST:PORT --model NAME [options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!o.server) o.server = server;
  if (!o.server || !o.model) return usage_error("--server HOST:PORT and --model NAME are required");
  if (args_server_target("bench serve", o.server) < 0) return 2;
  if (o.rates.n > 0 && !args_given(specs, nspecs, "streams")) o.streams.v[0] = 1024;
  for (int i = 0; i < o.streams.n; i++)
    if (o.streams.v[i] < 1 || o.streams.v[i] > 100000) return usage_error("--streams must be 1..100000");
  for (int i = 0; i < o.rates.n; i++)
    if (o.rates.v[i] < 1) return usage_error("--rate must be >= 1 request per second");
  if (o.rows < 1) return usage_error("--rows must be >= 1");
  if (!(o.duration > 0.0f) || o.duration > 86400.0f) return usage_error("--duration must be in (0, 86400] seconds");
  if (!(o.warmup >= 0.0f) || o.warmup > 86400.0f) return usage_error("--warmup must be in [0, 86400] seconds");
  if (o.deadline_ms < 1) return usage_error("--deadline-ms must be >= 1");
  if (o.version < 0) return usage_error("--version must be >= 0");
  ember_err err;
  for (int i = 0; i < o.samples.n; i++) {
    ember_infer_opts chk = EMBER_INFER_DEFAULTS;
    chk.samples = o.samples.v[i];
    chk.iters = o.iters;
    if (ember_infer_opts_check(&chk, 0, &err) < 0) return usage_error(err.msg);
  }

  ember_pool *pool;
  if (cli_pool("bench serve", o.threads, &pool) < 0) return 2;

  remote_client *client = NULL;
  remote_status st;
  ember_model local;
  int have_local = 0;
  Ember__V1__ModelInfo *info = NULL;
  grpc_completion_queue *cq = NULL;
  remote_init();
  if (remote_open(&client, o.server, o.deadline_ms, &st) != GRPC_STATUS_OK ||
      remote_get_model(client, o.model, o.version, &info, &st) != GRPC_STATUS_OK) {
    remote_report("bench serve", &st);
    rc = 1;
    goto done;
  }
  if (info->x_dim < 1 || info->x_dim > EMBER_MAX_COLS) { /* the x rows are a dataset's */
    fprintf(stderr, "ember bench serve: the server describes %s with x_dim %u\n", o.model, info->x_dim);
    rc = 1;
    goto done;
  }
  /* The yardsticks, measured before any load (and after the server answered, so a wrong
   * address fails at once). */
  if (o.local) {
    if (ember_model_load(o.local, &local, &err) < 0) {
      fprintf(stderr, "ember bench serve: --local: %s\n", err.msg);
      rc = 2;
      goto done;
    }
    have_local = 1;
    if ((uint32_t)local.x_dim != info->x_dim || (uint32_t)local.y_dim != info->y_dim) {
      fprintf(stderr, "ember bench serve: --local %s has x_dim %d, y_dim %d; the server's %s has %u, %u\n", o.local,
              local.x_dim, local.y_dim, o.model, info->x_dim, info->y_dim);
      rc = 2;
      goto done;
    }
  }
  double peak = cli_sgemm_peak(pool, o.threads);
  double *lib = calloc((size_t)o.samples.n, sizeof *lib);
  if (!lib) {
    rc = 1;
    goto done;
  }
  for (int ni = 0; ni < o.samples.n; ni++) {
    double p99;
    library_figures(have_local ? &local : NULL, pool, &o, o.samples.v[ni], 0, &lib[ni], &p99);
  }
  cq = grpc_completion_queue_create_for_next(NULL);
  int nrates = o.rates.n > 0 ? o.rates.n : 1;
  for (int si = 0; si < o.streams.n; si++)
    for (int ni = 0; ni < o.samples.n; ni++)
      for (int ri = 0; ri < nrates; ri++) {
        int rate = o.rates.n > 0 ? o.rates.v[ri] : 0;
        if (run_config(client, cq, info, &o, o.streams.v[si], o.samples.v[ni], rate, peak, lib[ni],
                       have_local ? &local : NULL, pool))
          rc = 1;
      }
  free(lib);
done:
  if (have_local) ember_model_free(&local);
  if (cq) {
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
  }
  if (info) ember__v1__model_info__free_unpacked(info, NULL);
  remote_close(client);
  remote_shutdown();
  ember_pool_destroy(pool);
  return rc;
}
