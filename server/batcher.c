/* batcher.c - dynamic batching: many robots' requests, one optimiser run.
 *
 * Requests for the same model version, method and options (every field of ember_infer_opts,
 * Langevin chain settings included, and for Sample the mode options) wait in one queue. A
 * queue is cut into a batch when a worker is free and either the queue holds --max-batch rows,
 * or its oldest request has waited --max-delay-us, or the server is shutting down. While every
 * worker is busy nothing is cut, so under load requests pile up and the next free worker takes
 * a full batch at once: batching grows with load, and an idle server adds at most
 * max-delay-us.
 *
 * libuv timers count milliseconds, so a delay under 1 ms is served by a prepare hook instead
 * (redis's beforeSleep): when the loop has handled every event that arrived together and is
 * about to sleep, the waiting queues are cut. Requests that arrive together share a batch and
 * an idle server adds no delay at all.
 *
 * A batch runs on one of --workers worker threads (worker_main; at most --workers at a time,
 * so no job waits for a worker: the backlog stays here, where it can still be batched and
 * where deadlines are checked). Each row keeps its request's seed and random stream
 * (row_offset + i), so an answer does not depend on what else shared the batch. A full queue answers
 * RESOURCE_EXHAUSTED at once.
 *
 * Idle cores join the work (--split-batches, on by default): a batch cut while no other batch
 * runs and no other queue is ready, and large enough for the library to split its energy
 * passes (rows x samples >= 2 ember_infer_min_task_rows()), would leave every other worker's
 * core idle, so it runs
 * *wide*: its worker is thread 0 of s->wide_pool, whose other threads take their share of
 * every energy pass (the library splits candidates over a pool's threads; the answers do not
 * depend on the thread count; they stay awake for --pool-wait-us after each pass, base.c). While
 * it runs nothing else starts; what arrives meanwhile is
 * batched and starts when it ends, which is sooner than a one-core batch would have. Under
 * load several queues are ready at once, or a batch is already running, and batches run one
 * per worker, one core each, as before. So a lone robot gets the library's latency on every
 * core, and a crowd gets the roofline.
 *
 * Order: the ready queue whose oldest request arrived first is cut first, and a queue is
 * served in arrival order, so no request waits behind work that arrived after it.
 *
 * Abandoned work does not hold a worker or a queue slot. A queued call watches its close
 * (calls.c): when its client cancels or its deadline passes, gRPC says so at once and the call
 * leaves its queue, answered CANCELLED or DEADLINE_EXCEEDED; a running batch none of whose
 * calls is still wanted is stopped through the library's cancel flag, which every phase of
 * inference reads (within one network task), and which the worker reads before encoding each
 * call's images. A sweep every 50 ms does the same for deadlines
 * by our own clock, in case a close notification could not be started. At the end of the
 * shutdown grace period every running batch stops the same way.
 *
 * A batch allocates nothing once the server is warm. Its job, with the arrays the worker fills
 * (inputs, seeds, answers) carved out of one block, goes back to a free list when the batch is
 * answered; at most --workers jobs ever exist, and a job's block only grows, so once each has
 * run the largest batch no malloc is left on the batch path. ember_batch_allocations_total
 * (metrics.c) counts the allocations that remain, so a test can see them stop.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "server.h"

/* What requests must share to share a batch */
typedef struct batch_key {
  model_version *v;
  srv_rpc rpc;
  ember_infer_opts o;
  ember_modes_opts mo; /* Sample only */
  int want_samples;    /* Sample only */
} batch_key;

typedef struct bqueue {
  batch_key key;
  srv_call *head, *tail;
  int nreq, rows;
  struct bqueue *next;
} bqueue;

/* One batch on a worker; reused for later batches (s->free_jobs), with its arrays. */
typedef struct batch_job {
  srv_tag_kind kind;           /* TAG_BATCH_DONE, its event back on the loop: must stay first */
  struct batch_job *next_work; /* s->work_head's list */
  server *s;
  batch_key key;
  srv_call **calls; /* (cap_calls) */
  int ncalls, rows, cap_calls;
  ember_infer *inf;
  /* carved out of mem on the worker for this batch (carve); NULL where the RPC needs none */
  float *x, *y, *e, *my, *me, *mw, *pop_y, *pop_e;
  uint64_t *seeds, *streams;
  int *count;
  void *mem;
  size_t cap_mem;
  int allocs;          /* allocations the worker made for this batch (buffers, an ember_infer,
                        * an encoder workspace) */
  /* Image models: the encoder's workspace, kept for later batches of the same encoder shape */
  ember_encoder_ws ws;
  ember_encoder_shape ws_shape;
  int have_ws;
  int wide;            /* runs over s->wide_pool (every worker's core) */
  int rc;
  ember_err err;
  uint64_t start_ns, end_ns;
  atomic_int cancel;   /* raised on the loop, read by the worker (ember_infer_set_cancel) */
  struct batch_job *next_running; /* s->running_jobs, or s->free_jobs while unused */
} batch_job;

/* Every field of the options, compared one by one (no memcmp: -0.0 and 0.0 are one value). A
 * field added to ember_infer_opts or ember_modes_opts must be compared here, or requests that
 * differ in it would share a batch and get each other's answers: these asserts stop the build
 * until it is. */
_Static_assert(sizeof(ember_infer_opts) == 17 * 4 && sizeof(ember_langevin_opts) == 7 * 4,
               "ember_infer_opts changed: compare its new fields in same_opts (batcher.c)");
_Static_assert(sizeof(ember_modes_opts) == 5 * 4,
               "ember_modes_opts changed: compare its new fields in same_key (batcher.c)");

static int same_opts(const ember_infer_opts *a, const ember_infer_opts *b) {
  const ember_langevin_opts *l = &a->langevin, *k = &b->langevin;
  return a->samples == b->samples && a->iters == b->iters && a->sigma == b->sigma &&
         a->shrink == b->shrink && a->temperature == b->temperature &&
         l->steps == k->steps && l->schedule == k->schedule && l->step_init == k->step_init &&
         l->step_final == k->step_final && l->gamma == k->gamma &&
         l->noise_scale == k->noise_scale && l->delta_max == k->delta_max &&
         a->again_steps == b->again_steps && a->again_step == b->again_step &&
         a->refine_steps == b->refine_steps && a->refine_lr == b->refine_lr &&
         a->optimizer == b->optimizer;
}

static int same_key(const bqueue *q, const srv_call *c) {
  if (q->key.v != c->version || q->key.rpc != srv_compute_rpc(c->rpc)) return 0;
  if (!same_opts(&q->key.o, &c->opts)) return 0;
  if (c->rpc != RPC_SAMPLE) return 1;
  const ember_modes_opts *m = &q->key.mo, *n = &c->modes;
  return q->key.want_samples == c->want_samples && m->k == n->k && m->radius == n->radius && m->min_mass == n->min_mass &&
         m->polish_steps == n->polish_steps && m->polish_lr == n->polish_lr;
}

static void try_dispatch(server *s);

static void on_prepare(uv_prepare_t *h) {
  server *s = h->data;
  uv_prepare_stop(h);
  s->flush_at_prepare = 1;
  try_dispatch(s);
  s->flush_at_prepare = 0;
}

static void work_cb(batch_job *j);
static void after_work_cb(batch_job *j);

/* A worker: takes cut jobs in order, computes them, and posts each back to the loop's inbox
 * (srv_loop_post), whose events the loop handles in order. (Not uv_queue_work: libuv 1.44's
 * loop spins and then calls sched_yield while the thread that completed work is between its
 * eventfd write and its flag, and a worker preempted there by the loop it woke held the loop
 * up: docs/performance.md.) */
static void worker_main(void *arg) {
  server *s = arg;
  prctl(PR_SET_NAME, "emberd-work", 0, 0, 0); /* thread names: emberd.md */
  uv_mutex_lock(&s->work_mu);
  for (;;) {
    while (!s->work_head && !s->workers_quit) uv_cond_wait(&s->work_cv, &s->work_mu);
    if (!s->work_head) break; /* quit, and nothing left */
    batch_job *j = s->work_head;
    s->work_head = j->next_work;
    if (!s->work_head) s->work_tail = NULL;
    uv_mutex_unlock(&s->work_mu);
    work_cb(j);
    srv_loop_post(s, j, 1);
    uv_mutex_lock(&s->work_mu);
  }
  uv_mutex_unlock(&s->work_mu);
}

void batcher_done(void *tag) { after_work_cb(tag); }

int batcher_init(server *s) {
  uv_timer_init(s->loop, &s->batch_timer);
  uv_timer_init(s->loop, &s->sweep_timer);
  uv_prepare_init(s->loop, &s->batch_prepare);
  s->batch_timer.data = s->batch_prepare.data = s->sweep_timer.data = s;
  uv_mutex_init(&s->work_mu);
  uv_cond_init(&s->work_cv);
  if (!(s->workers = calloc((size_t)s->cfg.workers, sizeof *s->workers))) {
    srv_log(LOG_ERROR, "out of memory setting up the inference workers", "%s", "");
    return -1;
  }
  for (; s->nworkers < s->cfg.workers; s->nworkers++)
    if (uv_thread_create(&s->workers[s->nworkers], worker_main, s) != 0) {
      srv_log(LOG_ERROR, "could not start an inference worker", "started=%d of %d", s->nworkers, s->cfg.workers);
      return -1; /* batcher_close stops the ones that started */
    }
  if (s->cfg.split_batches && s->cfg.workers > 1) {
    ember_err err = {0};
    if (ember_pool_create(&s->wide_pool, s->cfg.workers, &err) < 0 ||
        ember_pool_set_wait_us(s->wide_pool, s->cfg.pool_wait_us, &err) < 0) {
      srv_log(LOG_WARN, "batches will not spread over idle cores", "error=\"%s\"", err.msg);
      ember_pool_destroy(s->wide_pool);
      s->wide_pool = NULL;
    }
  }
  return 0;
}

static void timer_closed(uv_handle_t *h) { (void)h; }

/* Called once nothing runs: every job is on the free list. */
void batcher_close(server *s) {
  uv_mutex_lock(&s->work_mu);
  s->workers_quit = 1;
  uv_cond_broadcast(&s->work_cv);
  uv_mutex_unlock(&s->work_mu);
  for (int i = 0; i < s->nworkers; i++) uv_thread_join(&s->workers[i]);
  uv_mutex_destroy(&s->work_mu);
  uv_cond_destroy(&s->work_cv);
  free(s->workers);
  s->workers = NULL;
  s->nworkers = 0;
  uv_close((uv_handle_t *)&s->batch_timer, timer_closed);
  uv_close((uv_handle_t *)&s->batch_prepare, timer_closed);
  uv_close((uv_handle_t *)&s->sweep_timer, timer_closed);
  ember_pool_destroy(s->wide_pool);
  s->wide_pool = NULL;
  while (s->free_jobs) {
    batch_job *j = s->free_jobs;
    s->free_jobs = j->next_running;
    free(j->calls);
    free(j->mem);
    if (j->have_ws) ember_encoder_ws_free(&j->ws);
    free(j);
  }
}

int batcher_idle(server *s) { return s->queued == 0 && s->running_batches == 0; }

int batcher_running_requests(server *s) {
  int n = 0;
  for (const batch_job *j = s->running_jobs; j; j = j->next_running) n += j->ncalls;
  return n;
}

/* whether the call's deadline is less than slack_ms away or past */
static int expires_within(const srv_call *c, int slack_ms) {
  gpr_timespec now = gpr_now(c->deadline.clock_type);
  return gpr_time_cmp(gpr_time_add(now, gpr_time_from_millis(slack_ms, GPR_TIMESPAN)), c->deadline) > 0;
}

static int expired(const srv_call *c) { return expires_within(c, 0); }

/* Nobody waits for the call's answer: its deadline passed, or it was cancelled (by the client,
 * or by the server at the end of its grace period). */
static int gone(const srv_call *c) { return expired(c) || (c->closed && c->cancelled); }

/* Answers a gone call with the status that says why; `when` says what it was doing. A client
 * sends its deadline as a timeout, which starts here only when the request arrives, so the
 * client gives up (and cancels) a little before our deadline: a cancellation less than 100 ms
 * before it is counted as the deadline, not as the client cancelling. */
static void fail_gone(srv_call *c, const char *when) {
  if (expires_within(c, 100)) srv_call_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED, "the deadline passed %s", when);
  else if (c->srv->grace_over) srv_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
  else srv_call_fail(c, GRPC_STATUS_CANCELLED, "the client cancelled the call %s", when);
}

/* ---- on a worker ------------------------------------------------------------------------ */

/* Points the batch's arrays into the job's block, growing the block first if this batch needs
 * more than any before it. Returns 0, or -1 when it could not grow. */
static int carve(batch_job *j, const ember_model *m) {
  const size_t rows = (size_t)j->rows, dx = (size_t)m->x_dim, dy = (size_t)m->y_dim, k = (size_t)j->key.mo.k;
  const int predict = j->key.rpc == RPC_PREDICT, pop = !predict && j->key.want_samples;
  const size_t n = m->method == EMBER_METHOD_MSE ? 1 : (size_t)j->key.o.samples;
  struct {
    void **p;
    size_t bytes;
  } a[] = {
      {(void **)&j->seeds, rows * sizeof(uint64_t)}, /* 8-byte elements first */
      {(void **)&j->streams, rows * sizeof(uint64_t)},
      {(void **)&j->x, rows * dx * sizeof(float)},
      {(void **)&j->y, predict ? rows * dy * sizeof(float) : 0},
      {(void **)&j->e, predict ? rows * sizeof(float) : 0},
      {(void **)&j->my, predict ? 0 : rows * k * dy * sizeof(float)},
      {(void **)&j->me, predict ? 0 : rows * k * sizeof(float)},
      {(void **)&j->mw, predict ? 0 : rows * k * sizeof(float)},
      {(void **)&j->count, predict ? 0 : rows * sizeof(int)},
      {(void **)&j->pop_y, pop ? rows * n * dy * sizeof(float) : 0},
      {(void **)&j->pop_e, pop ? rows * n * sizeof(float) : 0},
  };
  const size_t na = sizeof a / sizeof *a;
  size_t total = 0;
  for (size_t i = 0; i < na; i++) total += (a[i].bytes + 63) & ~(size_t)63; /* cache-line aligned */
  if (total > j->cap_mem) {
    free(j->mem);
    j->mem = malloc(total);
    j->cap_mem = j->mem ? total : 0;
    j->allocs++;
    if (!j->mem) return -1;
  }
  char *at = j->mem;
  for (size_t i = 0; i < na; i++) {
    *a[i].p = a[i].bytes ? at : NULL;
    at += (a[i].bytes + 63) & ~(size_t)63;
  }
  return 0;
}

/* Whether a workspace made for shape a serves shape b (the image and the layers; extras do not
 * enter the encoder). */
static int same_encoder(const ember_encoder_shape *a, const ember_encoder_shape *b) {
  if (a->h != b->h || a->w != b->w || a->c != b->c || a->nconv != b->nconv || a->head != b->head) return 0;
  for (int i = 0; i < a->nconv; i++)
    if (a->conv[i].channels != b->conv[i].channels || a->conv[i].kernel != b->conv[i].kernel ||
        a->conv[i].stride != b->conv[i].stride)
      return 0;
  return 1;
}

/* The job's encoder workspace for m's encoder: kept from an earlier batch when the shape is the
 * same, else made (EMBER_ENCODE_BATCH images per call, as local `ember predict`). 0, or the
 * library's error code with j->err. */
static int encoder_ws(batch_job *j, const ember_model *m) {
  const ember_encoder_shape *s = &m->enc->shape;
  if (j->have_ws && same_encoder(&j->ws_shape, s)) return 0;
  if (j->have_ws) ember_encoder_ws_free(&j->ws);
  j->have_ws = 0;
  j->allocs++;
  int rc = ember_encoder_ws_init(&j->ws, s, EMBER_ENCODE_BATCH, &j->err);
  if (rc < 0) return rc;
  j->ws_shape = *s;
  j->have_ws = 1;
  return 0;
}

static void work_cb(batch_job *j) {
  const ember_model *m = &j->key.v->model;
  const int dx = m->x_dim;
  j->rc = 0;
  if (!j->inf) {
    j->allocs++;
    if ((j->rc = ember_infer_create(&j->inf, m, j->wide ? j->s->wide_pool : NULL, &j->err)) < 0) return;
  }
  ember_infer_set_cancel(j->inf, &j->cancel);
  if (carve(j, m) < 0) {
    j->rc = ember_fail(&j->err, EMBER_ENOMEM, "out of memory for a batch of %d rows", j->rows);
    return;
  }
  if (m->enc && (j->rc = encoder_ws(j, m)) < 0) return;
  size_t at = 0;
  for (int i = 0; i < j->ncalls; i++) {
    const srv_call *c = j->calls[i];
    /* images are encoded here, once per row, into the rows the optimiser reads: an image's
     * features do not depend on the other images of the call (encoder.c), so batching does
     * not change the answers */
    if (atomic_load_explicit(&j->cancel, memory_order_relaxed)) { /* nobody waits: skip the rest */
      j->rc = ember_fail(&j->err, EMBER_ECANCELED, "cancelled before the optimiser ran");
      return;
    }
    if (c->img) ember_model_encode(m, &j->ws, c->img, c->x, c->rows, j->x + at * dx);
    else memcpy(j->x + at * dx, c->x, (size_t)c->rows * dx * sizeof(float));
    for (int r = 0; r < c->rows; r++) {
      j->seeds[at + r] = c->seed;
      j->streams[at + r] = c->row_offset + (uint64_t)r;
    }
    at += (size_t)c->rows;
  }
  j->start_ns = srv_now_ns();
  if (j->key.rpc == RPC_PREDICT)
    j->rc = ember_infer_predict_rows(j->inf, j->x, j->rows, &j->key.o, j->seeds, j->streams, j->y, j->e, &j->err);
  else
    j->rc = ember_infer_modes_rows(j->inf, j->x, j->rows, &j->key.o, &j->key.mo, j->seeds, j->streams, j->my,
                                   j->me, j->mw, j->count, j->pop_y, j->pop_e, &j->err);
  j->end_ns = srv_now_ns();
}

/* ---- back on the loop ------------------------------------------------------------------- */

static void after_work_cb(batch_job *j) {
  server *s = j->s;
  model_version *v = j->key.v;
  model_stats *st = &v->entry->stats;
  const int dy = v->model.y_dim, k = j->key.mo.k;
  const size_t dx = (size_t)v->model.x_dim;
  const uint64_t back_ns = srv_now_ns();
  s->running_batches--;
  if (j->wide) s->wide_running = 0;
  batch_job **pp = &s->running_jobs;
  while (*pp && *pp != j) pp = &(*pp)->next_running;
  if (*pp) *pp = j->next_running;
  if (j->rc == 0) {
    st->batches++;
    st->batched_requests += (uint64_t)j->ncalls;
    st->batched_rows += (uint64_t)j->rows;
    st->compute_ms_sum += (double)(j->end_ns - j->start_ns) / 1e6;
    metrics_batch(st, j->ncalls, j->rows, (double)(j->end_ns - j->start_ns) / 1e9);
  }
  size_t at = 0;
  for (int i = 0; i < j->ncalls; i++) {
    srv_call *c = j->calls[i];
    if (gone(c)) {
      fail_gone(c, "during compute");
    } else if (j->rc == EMBER_ECANCELED) {
      srv_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
    } else if (j->rc != 0) {
      srv_call_fail(c, GRPC_STATUS_INTERNAL, "inference failed: %s", j->err.msg);
    } else {
      st->queue_ms_sum += (double)(j->start_ns - c->arrived_ns) / 1e6;
      metrics_queued(st, (double)(j->start_ns - c->arrived_ns) / 1e9);
      size_t n = (size_t)j->key.o.samples;
      if (j->key.rpc == RPC_PREDICT)
        rpc_ember_complete(c, j->x + at * dx, j->y + at * dy, j->e + at, NULL, NULL, NULL, NULL, NULL,
                           NULL);
      else
        rpc_ember_complete(c, j->x + at * dx, NULL, NULL, j->my + at * k * dy, j->me + at * k, j->mw + at * k,
                           j->count + at,
                           j->pop_y ? j->pop_y + at * n * dy : NULL, j->pop_e ? j->pop_e + at * n : NULL);
      const uint64_t t[SRV_STAGES + 1] = {c->cq_ns, c->arrived_ns, c->queued_ns, j->start_ns, j->end_ns, back_ns,
                                          srv_now_ns()};
      for (int g = 0; g < SRV_STAGES; g++) s->stage_s[g] += (double)(t[g + 1] - t[g]) / 1e9;
      s->staged_calls++;
      metrics_answered(st, (double)(t[SRV_STAGES] - t[0]) / 1e9);
    }
    at += (size_t)c->rows;
  }
  if (j->inf) {
    ember_infer_set_cancel(j->inf, NULL);
    if (j->wide && !v->wide_idle) v->wide_idle = j->inf;
    else if (!j->wide && v->nidle < s->cfg.workers) v->idle[v->nidle++] = j->inf;
    else ember_infer_destroy(j->inf);
    j->inf = NULL;
  }
  version_unref(v);
  s->batch_allocs += (uint64_t)j->allocs;
  j->next_running = s->free_jobs; /* kept, with its arrays, for the next batch */
  s->free_jobs = j;
  try_dispatch(s);
  server_maybe_finish(s);
}

static void unlink_queue(server *s, bqueue *q) {
  bqueue **pp = &s->batch_queues;
  while (*pp && *pp != q) pp = &(*pp)->next;
  if (*pp) *pp = q->next;
  free(q);
}

void batcher_drop_gone(server *s) {
  for (bqueue *q = s->batch_queues, *qn; q; q = qn) {
    qn = q->next;
    srv_call **pp = &q->head, *last = NULL;
    while (*pp) {
      srv_call *c = *pp;
      if (gone(c)) {
        *pp = c->next;
        q->nreq--;
        q->rows -= c->rows;
        s->queued--;
        fail_gone(c, "while the request waited for a worker");
      } else {
        last = c;
        pp = &c->next;
      }
    }
    q->tail = last;
    if (!q->head) unlink_queue(s, q);
  }
  for (batch_job *j = s->running_jobs; j; j = j->next_running) {
    int all = 1;
    for (int i = 0; i < j->ncalls && all; i++) all = gone(j->calls[i]);
    if (all) atomic_store_explicit(&j->cancel, 1, memory_order_relaxed);
  }
}

/* Every 50 ms while work is queued or running. */
static void on_sweep(uv_timer_t *t) {
  server *s = t->data;
  batcher_drop_gone(s);
  if (!s->running_jobs && !s->batch_queues) uv_timer_stop(t);
}

void batcher_cancel_running(server *s) {
  for (batch_job *j = s->running_jobs; j; j = j->next_running)
    atomic_store_explicit(&j->cancel, 1, memory_order_relaxed);
}

/* A free job whose calls array holds ncalls: from the free list once warm; NULL when out of
 * memory. */
static batch_job *take_job(server *s, int ncalls) {
  batch_job *j = s->free_jobs;
  if (j) {
    s->free_jobs = j->next_running;
  } else {
    if (!(j = calloc(1, sizeof *j))) return NULL;
    s->batch_allocs++;
  }
  if (ncalls > j->cap_calls) {
    free(j->calls);
    j->calls = malloc((size_t)ncalls * sizeof *j->calls);
    j->cap_calls = j->calls ? ncalls : 0;
    s->batch_allocs++;
    if (!j->calls) {
      j->next_running = s->free_jobs;
      s->free_jobs = j;
      return NULL;
    }
  }
  return j;
}

/* Takes up to max_batch rows of q (at least one request) and starts them on a worker; wide:
 * over s->wide_pool. */
static void cut(server *s, bqueue *q, int wide) {
  /* every request has a row, so a batch holds at most max_batch of them (or the one first) */
  batch_job *j = take_job(s, q->nreq < s->cfg.max_batch ? q->nreq : s->cfg.max_batch);
  if (!j) {
    while (q->head) {
      srv_call *c = q->head;
      q->head = c->next;
      s->queued--;
      srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory forming a batch");
    }
    unlink_queue(s, q);
    return;
  }
  int n = 0, rows = 0;
  while (q->head && n < j->cap_calls && (n == 0 || rows + q->head->rows <= s->cfg.max_batch)) {
    srv_call *c = q->head;
    q->head = c->next;
    q->nreq--;
    q->rows -= c->rows;
    s->queued--;
    c->next = NULL;
    if (gone(c)) {
      fail_gone(c, "while the request waited for a worker");
      continue;
    }
    c->state = CALL_RUNNING;
    j->calls[n++] = c;
    rows += c->rows;
  }
  model_version *v = q->key.v;
  j->s = s;
  j->key = q->key;
  j->ncalls = n;
  j->rows = rows;
  if (!q->head) unlink_queue(s, q);
  if (n == 0) {
    j->next_running = s->free_jobs;
    s->free_jobs = j;
    return;
  }
  version_ref(v);
  j->wide = wide;
  s->wide_running = wide;
  s->wide_batches += (uint64_t)wide;
  if (wide) {
    j->inf = v->wide_idle;
    v->wide_idle = NULL;
  } else {
    j->inf = v->nidle > 0 ? v->idle[--v->nidle] : NULL;
  }
  j->allocs = 0;
  /* the worker sees this store: the job is handed over under work_mu */
  atomic_store_explicit(&j->cancel, 0, memory_order_relaxed);
  j->next_running = s->running_jobs;
  s->running_jobs = j;
  s->running_batches++;
  j->kind = TAG_BATCH_DONE;
  j->next_work = NULL;
  uv_mutex_lock(&s->work_mu);
  if (s->work_tail) s->work_tail->next_work = j;
  else s->work_head = j;
  s->work_tail = j;
  uv_cond_signal(&s->work_cv);
  uv_mutex_unlock(&s->work_mu);
  if (!uv_is_active((uv_handle_t *)&s->sweep_timer)) uv_timer_start(&s->sweep_timer, on_sweep, 50, 50);
}

static void on_batch_timer(uv_timer_t *t) { try_dispatch(t->data); }

static void try_dispatch(server *s) {
  while (!s->wide_running && s->running_batches < s->cfg.workers && s->batch_queues) {
    uint64_t now = srv_now_ns(), delay = (uint64_t)s->cfg.max_delay_us * 1000u;
    bqueue *ready = NULL;
    int nready = 0;
    uint64_t wait = UINT64_MAX;
    for (bqueue *q = s->batch_queues; q; q = q->next) {
      uint64_t age = now - q->head->arrived_ns;
      if (q->rows >= s->cfg.max_batch || age >= delay || s->shutting_down || s->flush_at_prepare) {
        nready++;
        if (!ready || q->head->arrived_ns < ready->head->arrived_ns) ready = q;
      } else if (delay - age < wait) {
        wait = delay - age;
      }
    }
    if (!ready) {
      if (delay < 1000000u) { /* sub-millisecond: cut before the loop sleeps */
        uv_prepare_start(&s->batch_prepare, on_prepare);
      } else {
        uint64_t ms = (wait + 999999u) / 1000000u; /* libuv timers count milliseconds */
        uv_timer_start(&s->batch_timer, on_batch_timer, ms ? ms : 1, 0);
      }
      return;
    }
    /* alone: nothing runs, this batch takes everything that is ready, and its passes are
     * large enough for the library to split (otherwise a wide batch would hold the other
     * cores idle) */
    cut(s, ready, s->wide_pool && s->running_batches == 0 && nready == 1 && ready->rows <= s->cfg.max_batch &&
                      (long)ready->rows * ready->key.o.samples >= 2L * ember_infer_min_task_rows());
  }
}

void batcher_submit(server *s, srv_call *c) {
  if (s->queued >= s->cfg.max_queue) {
    srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "the server's queue is full (--max-queue requests waiting); retry later");
    return;
  }
  bqueue *q = s->batch_queues;
  while (q && !same_key(q, c)) q = q->next;
  if (!q) {
    q = calloc(1, sizeof *q);
    if (!q) {
      srv_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory queueing the request");
      return;
    }
    q->key = (batch_key){c->version, srv_compute_rpc(c->rpc), c->opts, c->modes, c->want_samples};
    q->next = s->batch_queues;
    s->batch_queues = q;
  }
  c->queued_ns = srv_now_ns();
  srv_call_watch_close(c);
  c->state = CALL_QUEUED;
  c->next = NULL;
  if (q->tail && q->head) q->tail->next = c;
  else q->head = c;
  q->tail = c;
  q->nreq++;
  q->rows += c->rows;
  s->queued++;
  if (!uv_is_active((uv_handle_t *)&s->sweep_timer)) uv_timer_start(&s->sweep_timer, on_sweep, 50, 50);
  try_dispatch(s);
}

void batcher_flush(server *s, grpc_status_code code, const char *why) {
  while (s->batch_queues) {
    bqueue *q = s->batch_queues;
    while (q->head) {
      srv_call *c = q->head;
      q->head = c->next;
      s->queued--;
      srv_call_fail(c, code, "%s", why);
    }
    unlink_queue(s, q);
  }
}
