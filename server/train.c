/* train.c - ember.v1.Ember/Train: one training job per call, on its own thread.
 *
 * The loop thread validates the request (train_decode: model name, method and settings as
 * wire/'s ember_wire_train_from_msg reads them, inline data or a dataset path under --data-dir,
 * the job's memory against --max-train-mib; it needs no call, so fuzz/ drives it with bytes) and
 * starts a job: a plain pthread that lowers its own priority (--train-nice; the pool threads it
 * creates inherit it), reads a dataset file if one was named (and checks the memory again with the
 * file's own size), trains with --train-threads pool threads, and publishes the model. The thread never touches
 * the call: it leaves its latest progress report in the job (under a mutex) and wakes the loop
 * through a uv_async at most every TRAIN_REPORT_S seconds (and at the first and last step).
 * The loop sends the latest report when no send is in flight (gRPC allows one at a time), so a
 * slow client sees fewer, fresher reports and never a backlog.
 *
 * Cancellation: the call's RECV_CLOSE_ON_SERVER (tagged with the job, TAG_TRAIN_CLOSED)
 * completes when the client cancels or disconnects or the deadline passes; the job's cancel
 * flag is then set and the progress callback returns non-zero at the next step. Shutdown sets
 * it for every job (train_cancel_all) and the call is answered UNAVAILABLE. A cancelled job
 * gives its --max-train-jobs slot back at once (s->train_running counts slots, not threads): at
 * SCHED_IDLE on a busy CPU its next step can be minutes away. Until its thread ends it still
 * holds its memory, so a new job is refused while slots and stopping jobs together reach twice
 * --max-train-jobs.
 *
 * Publication: the model is saved (temp file + fsync + rename, by ember_model_save) under a
 * hidden name the registry ignores, <repo>/<name>/.train-<host>-<pid>-<job>.safetensors, then
 * linked to <N+1>.safetensors, N the highest version file in the directory; link() fails rather
 * than replace a file that appeared meanwhile, and the next number is tried. The hidden file is
 * then removed and the directory fsynced. A cancelled or failed job removes what it wrote and
 * publishes nothing; out of space (disk full, quota, file size limit) is RESOURCE_EXHAUSTED.
 *
 * Crashes: an emberd killed during publication leaves its hidden file (or the library's
 * temporary of it, half written), never a partial version: a version file only ever appears by
 * link() of a complete, fsynced file. At start-up (train_init) emberd removes the hidden and
 * temporary files of this host whose process is gone (no such pid, or its own pid: in a
 * container every emberd is pid 1, and at start-up it has no job); the host in the name keeps
 * it from removing what another machine's emberd is publishing into a shared repository.
 *
 * Lifetime: the job is freed once its thread has been joined, its async handle closed, and the
 * call freed (no batch pending). s->train_alive counts jobs not yet freed, so shutdown waits.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#include <protobuf-c/protobuf-c.h>

#include "ember/dataset.h"
#include "ember/train.h"
#include "ember/v1/ember.pb-c.h"
#include "server.h"
#include "wire.h"

#define TRAIN_REPORT_S 0.5

typedef struct train_job {
  srv_tag_kind kind; /* TAG_TRAIN_CLOSED: must stay first */
  server *s;
  srv_call *c;       /* NULL once the call is freed */
  uint64_t id;
  char name[72];
  char model_dir[PATH_MAX];
  char dataset_path[PATH_MAX]; /* resolved; "" for inline data */
  char dataset_label[256];     /* as the client named it */
  int y_dim_arg;               /* for a dataset file: -1 = the file's default */
  char *y_cols;                /* for a CSV dataset: its y columns by name, or NULL */
  ember_dataset ds;            /* inline data (the thread reads a file into it otherwise) */
  ember_train_opts o;
  /* thread */
  pthread_t thread;
  int thread_started, thread_joined;
  uv_async_t async;
  int async_open;
  atomic_int cancel;
  pthread_mutex_t mu; /* guards the fields below, shared with the thread */
  ember_train_progress latest;
  int have_latest;
  int thread_done;
  int rc;              /* 0 published; else an EMBER_E* code */
  grpc_status_code code;
  char msg[600];
  int64_t version;
  int rows, x_dim, y_dim;
  double last_wake;
  /* loop side */
  int64_t sent_step;   /* step of the last progress message sent (-1: none) */
  int metadata_sent, sending, closed, finishing, shutdown_cancel;
  int holds_slot;      /* counted in s->train_running (--max-train-jobs) until cancelled or joined */
  struct train_job *next;
} train_job;

/* The job's memory (ember_train_memory) against --max-train-mib, for n rows of x_dim + y_dim
 * columns. 0, or -1 with the refusal in msg (always INVALID_ARGUMENT: the same request is
 * refused again however long it waits). */
static int check_budget(const train_job *j, int n, int x_dim, int y_dim, char *msg, size_t len) {
  const srv_config *cfg = &j->s->cfg;
  size_t params = 0;
  uint64_t bytes = 0;
  ember_err err;
  if (ember_train_memory(&j->o, n, x_dim, y_dim, cfg->train_threads, &params, &bytes, &err) < 0) {
    snprintf(msg, len, "%s", err.msg);
    return -1;
  }
  if (bytes <= (uint64_t)cfg->max_train_mib << 20) return 0;
  snprintf(msg, len,
           "training this model needs about %.1f MiB (%zu parameters: %s %dx%d for x_dim %d, y_dim "
           "%d; batch %d x %d candidates on %d thread%s); this server allows %d MiB per job "
           "(--max-train-mib)",
           (double)bytes / (1 << 20), params, ember_arch_name(j->o.arch), j->o.width, j->o.depth,
           x_dim, y_dim, j->o.batch, j->o.method == EMBER_METHOD_MSE ? 1 : j->o.negatives + 1,
           cfg->train_threads, cfg->train_threads == 1 ? "" : "s", cfg->max_train_mib);
  return -1;
}

/* ---- the job thread ------------------------------------------------------------------------- */

static int on_progress(void *ctx, const ember_train_progress *p) {
  train_job *j = ctx;
  if (atomic_load(&j->cancel)) return 1;
  double now = ember_now();
  int wake = 0;
  pthread_mutex_lock(&j->mu);
  j->latest = *p;
  if (!j->have_latest || p->step == p->steps || now - j->last_wake >= TRAIN_REPORT_S) {
    j->last_wake = now;
    wake = 1;
  }
  j->have_latest = 1;
  pthread_mutex_unlock(&j->mu);
  if (wake) uv_async_send(&j->async);
  return 0;
}

/* Highest "<N>.safetensors" in dir (any file, loaded or not), 0 if none. */
static int64_t highest_version(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int64_t best = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int64_t v = registry_version_of(e->d_name);
    if (v > best) best = v;
  }
  closedir(d);
  return best;
}

/* EMBER_FAULT_PUBLISH_PAUSE (test builds): stops at `point` of the publication until the job is
 * cancelled (at most 60 s), so a test can kill emberd there. */
static void publish_pause(train_job *j, const char *point) {
  const char *want = j->s->faults.publish_pause;
  if (!want || strcmp(want, point) != 0) return;
  srv_log(LOG_WARN, "fault injection", "site=publish_pause point=%s model=%s job=%llu", point, j->name,
          (unsigned long long)j->id);
  for (int waited = 0; waited < 600 && !atomic_load(&j->cancel); waited++)
    nanosleep(&(struct timespec){0, 100000000}, NULL);
}

static int out_of_space(int e) { return e == ENOSPC || e == EDQUOT || e == EFBIG; }

/* Saves m as the next version; returns the version, or -1 with the reason in msg and *rc
 * EMBER_ENOSPC (out of space), EMBER_ECANCELED or EMBER_EIO. Messages name the model, not the
 * server's paths. */
static int64_t publish(train_job *j, const ember_model *m, int *rc, char *msg, size_t msglen) {
  *rc = EMBER_EIO;
  if (mkdir(j->model_dir, 0755) < 0 && errno != EEXIST) {
    int e = errno;
    if (out_of_space(e)) *rc = EMBER_ENOSPC;
    snprintf(msg, msglen, "cannot create the directory of model %s: %s%s", j->name,
             out_of_space(e) ? "out of space: " : "", strerror(e));
    return -1;
  }
  char tmp[PATH_MAX + 160], dst[PATH_MAX + 64];
  snprintf(tmp, sizeof tmp, "%s/.train-%s-%ld-%llu.safetensors", j->model_dir, j->s->train_host,
           (long)getpid(), (unsigned long long)j->id);
  ember_err err;
  int saved = ember_model_save(m, tmp, &err);
  if (saved < 0) {
    size_t tl = strlen(tmp); /* the library names the file: say the model instead */
    const char *why = strncmp(err.msg, tmp, tl) == 0 && strncmp(err.msg + tl, ": ", 2) == 0 ? err.msg + tl + 2 : err.msg;
    snprintf(msg, msglen, "cannot publish model %s: %.400s", j->name, why);
    if (saved == EMBER_ENOSPC) *rc = EMBER_ENOSPC;
    unlink(tmp);
    return -1;
  }
  publish_pause(j, "saved");
  int64_t version = -1;
  for (int tries = 0; tries < 100; tries++) {
    if (atomic_load(&j->cancel)) break;
    int64_t v = highest_version(j->model_dir) + 1;
    snprintf(dst, sizeof dst, "%s/%lld.safetensors", j->model_dir, (long long)v);
    if (link(tmp, dst) == 0) {
      version = v;
      publish_pause(j, "linked");
      break;
    }
    int e = errno;
    if (e != EEXIST) {
      if (out_of_space(e)) *rc = EMBER_ENOSPC;
      snprintf(msg, msglen, "cannot publish model %s as version %lld: %s%s", j->name, (long long)v,
               out_of_space(e) ? "out of space: " : "", strerror(e));
      break;
    }
  }
  unlink(tmp);
  (void)ember_fsync_dir_of(tmp); /* the model's directory: the link and the unlink */
  if (version < 0 && !msg[0]) {
    *rc = atomic_load(&j->cancel) ? EMBER_ECANCELED : EMBER_EIO;
    snprintf(msg, msglen, "%s", *rc == EMBER_ECANCELED ? "cancelled" : "no free version number");
  }
  return version;
}

/* ---- start-up: what a killed emberd left ------------------------------------------------------ */

/* Whether `file`, in a model directory, is a publication file of this host's (a hidden name of
 * publish(), or the library's temporary of one: ".tmp.<pid>.<n>" after it) whose emberd is gone.
 * Names of emberd before the host was in them (.train-<pid>-<job>...) count as this host's. */
static int stale_publication(const server *s, const char *file) {
  if (strncmp(file, ".train-", 7) != 0) return 0;
  const char *base = file + 7, *ext = strstr(base, ".safetensors");
  if (!ext || (ext[12] && strncmp(ext + 12, ".tmp.", 5) != 0)) return 0;
  const char *job = NULL, *pid = NULL; /* the dashes before the job and before the pid */
  for (const char *p = ext - 1; p >= base && !pid; p--) {
    if (*p != '-') continue;
    if (!job) job = p;
    else pid = p;
  }
  if (!job) return 0;
  const char *pid_at = pid ? pid + 1 : base;
  if (pid_at == job || job + 1 == ext) return 0;
  for (const char *p = pid_at; p < ext; p++)
    if (p != job && (*p < '0' || *p > '9')) return 0;
  if (pid && ((size_t)(pid - base) != strlen(s->train_host) || strncmp(base, s->train_host, (size_t)(pid - base)) != 0))
    return 0; /* another machine's */
  long n = strtol(pid_at, NULL, 10);
  if (n <= 0 || n > INT_MAX) return 0;
  if (n == (long)getpid()) return 1; /* ours from before a restart (containers): no job runs yet */
  return kill((pid_t)n, 0) < 0 && errno == ESRCH;
}

void train_init(server *s) {
  char host[72] = "";
  if (gethostname(host, sizeof host - 1) < 0 || !host[0]) snprintf(host, sizeof host, "host");
  host[64] = 0;
  for (char *p = host; *p; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
          *p == '_' || *p == '-'))
      *p = '_';
  snprintf(s->train_host, sizeof s->train_host, "%s", host);
  if (!s->cfg.models_dir) return;
  DIR *root = opendir(s->cfg.models_dir); /* errors: the first scan reports them */
  if (!root) return;
  struct dirent *de, *fe;
  while ((de = readdir(root)) != NULL) {
    if (!srv_valid_model_name(de->d_name)) continue;
    char dir[PATH_MAX], path[PATH_MAX + 300];
    snprintf(dir, sizeof dir, "%s/%s", s->cfg.models_dir, de->d_name);
    DIR *d = opendir(dir);
    if (!d) continue;
    int removed = 0;
    while ((fe = readdir(d)) != NULL) {
      if (!stale_publication(s, fe->d_name)) continue;
      snprintf(path, sizeof path, "%s/%s", dir, fe->d_name);
      if (unlink(path) == 0) {
        removed++;
        srv_log(LOG_WARN, "removed a stale publication file", "path=%s", path);
      } else {
        srv_log(LOG_WARN, "cannot remove a stale publication file", "path=%s error=\"%s\"", path, strerror(errno));
      }
    }
    closedir(d);
    if (removed) (void)ember_fsync_dir_of(path); /* path: the last file removed, in dir */
  }
  closedir(root);
}

static void *job_main(void *arg) {
  train_job *j = arg;
  prctl(PR_SET_NAME, "emberd-train", 0, 0, 0); /* its pool's threads are ember-pool */
  /* Linux: nice is per thread, and threads created from here (the pool) inherit it */
  if (j->s->cfg.train_nice > 0) (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), j->s->cfg.train_nice);
  /* at 19, also SCHED_IDLE: below every nice level, so a job only runs on CPU that inference
   * leaves idle (what plain nice 19, nice 10 and SCHED_IDLE did to Predict's tail at half load:
   * docs/performance.md, 'Inference while training') */
  if (j->s->cfg.train_nice >= 19) {
    struct sched_param sp = {0};
    (void)pthread_setschedparam(pthread_self(), 5 /* SCHED_IDLE (Linux; needs _GNU_SOURCE) */, &sp);
  }
  grpc_status_code code = GRPC_STATUS_OK;
  char msg[600] = "";
  int rc = 0;
  int64_t version = 0;
  ember_err err;
  ember_pool *pool = NULL;
  if (j->dataset_path[0]) {
    ember_dataset_spec spec = {-1, j->y_dim_arg, j->y_cols};
    rc = ember_dataset_load(j->dataset_path, &spec, &j->ds, &err);
    if (rc < 0) {
      code = rc == EMBER_EIO ? GRPC_STATUS_NOT_FOUND : GRPC_STATUS_INVALID_ARGUMENT;
      /* the file's path inside the data directory only, not the server's absolute path */
      const char *m = err.msg;
      size_t dl = strlen(j->dataset_path);
      const char *at = strstr(m, j->dataset_path);
      if (at) snprintf(msg, sizeof msg, "dataset: %.*s%.200s%.200s", (int)(at - m) > 150 ? 150 : (int)(at - m), m, j->dataset_label, at + dl);
      else snprintf(msg, sizeof msg, "dataset %.200s: %.380s", j->dataset_label, m);
    } else if (j->ds.x_dim < 1) {
      rc = EMBER_EINVAL;
      code = GRPC_STATUS_INVALID_ARGUMENT;
      snprintf(msg, sizeof msg, "dataset %s has no x columns left after %d y column(s)", j->dataset_label, j->ds.y_dim);
    } else if (j->ds.n > j->s->cfg.max_train_rows) {
      rc = EMBER_EINVAL;
      code = GRPC_STATUS_INVALID_ARGUMENT;
      snprintf(msg, sizeof msg, "dataset %s has %d rows; this server trains on at most %d (--max-train-rows)",
               j->dataset_label, j->ds.n, j->s->cfg.max_train_rows);
    } else if (check_budget(j, j->ds.n, j->ds.x_dim, j->ds.y_dim, msg, sizeof msg) < 0) {
      rc = EMBER_EINVAL; /* parse() could only check the least any data needs */
      code = GRPC_STATUS_INVALID_ARGUMENT;
    }
  }
  pthread_mutex_lock(&j->mu);
  j->rows = j->ds.n;
  j->x_dim = j->ds.x_dim;
  j->y_dim = j->ds.y_dim;
  pthread_mutex_unlock(&j->mu);
  if (rc == 0 && j->s->cfg.train_threads > 1 && ember_pool_create(&pool, j->s->cfg.train_threads, &err) < 0) {
    rc = EMBER_ENOMEM;
    code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    snprintf(msg, sizeof msg, "cannot start %d training threads: %s", j->s->cfg.train_threads, err.msg);
  }
  if (rc == 0) {
    ember_model m;
    j->o.progress = on_progress;
    j->o.progress_ctx = j;
    rc = ember_train(&j->ds, &j->o, pool, &m, &err);
    if (rc == 0) {
      version = publish(j, &m, &rc, msg, sizeof msg);
      ember_model_free(&m);
      if (version >= 0) rc = 0;
      else code = rc == EMBER_ECANCELED ? GRPC_STATUS_CANCELLED
                  : rc == EMBER_ENOSPC  ? GRPC_STATUS_RESOURCE_EXHAUSTED
                                        : GRPC_STATUS_INTERNAL;
    } else if (rc == EMBER_ECANCELED) {
      code = GRPC_STATUS_CANCELLED;
      snprintf(msg, sizeof msg, "training cancelled; nothing was published");
    } else {
      code = rc == EMBER_ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT;
      snprintf(msg, sizeof msg, "training failed: %s", err.msg);
    }
  }
  ember_pool_destroy(pool);
  pthread_mutex_lock(&j->mu);
  j->rc = rc;
  j->code = code;
  snprintf(j->msg, sizeof j->msg, "%s", msg);
  j->version = version;
  j->thread_done = 1;
  pthread_mutex_unlock(&j->mu);
  uv_async_send(&j->async);
  return NULL;
}

/* ---- the loop side ---------------------------------------------------------------------------- */

/* Gives the job's --max-train-jobs slot back: when its thread is joined, or as soon as it is
 * cancelled. A cancelled job stops at its next step, but at SCHED_IDLE on a busy CPU that step
 * can take minutes, and the slot must not wait for it; train_handle bounds how many such
 * stopping jobs (and their memory) there can be. */
static void release_slot(train_job *j) {
  if (!j->holds_slot) return;
  j->holds_slot = 0;
  j->s->train_running--;
}

static void cancel_job(train_job *j) {
  atomic_store(&j->cancel, 1);
  release_slot(j);
}

static void unlink_job(train_job *j) {
  train_job **pp = &j->s->train_jobs;
  while (*pp && *pp != j) pp = &(*pp)->next;
  if (*pp) *pp = j->next;
}

static void job_closed_cb(uv_handle_t *h) {
  train_job *j = h->data;
  server *s = j->s;
  ember_dataset_free(&j->ds);
  free(j->y_cols);
  pthread_mutex_destroy(&j->mu);
  free(j);
  s->train_alive--;
  server_maybe_finish(s);
}

/* Frees what can be freed: the call when no batch is pending and it is over, the job when
 * the call is gone and the thread joined. */
static void maybe_free(train_job *j) {
  srv_call *c = j->c;
  if (c && c->ops_pending == 0 && (j->closed || j->finishing) && j->thread_joined) {
    c->stream.train = NULL;
    j->c = NULL;
    srv_call_free(c);
  }
  if (!j->c && j->thread_joined && j->async_open) {
    j->async_open = 0;
    unlink_job(j);
    uv_close((uv_handle_t *)&j->async, job_closed_cb);
  }
}

static void start(train_job *j, grpc_op *ops, size_t n) {
  srv_call *c = j->c;
  if (grpc_call_start_batch(c->call, ops, n, c, NULL) != GRPC_CALL_OK) {
    srv_log(LOG_ERROR, "could not send on a Train call", "job=%llu", (unsigned long long)j->id);
    j->closed = 1;
    cancel_job(j);
    return;
  }
  c->ops_pending++;
  j->sending = 1;
}

static void fill_progress(Ember__V1__TrainProgress *m, const ember_train_progress *p, const train_job *j) {
  m->step = p->step;
  m->steps = p->steps;
  m->loss = p->loss;
  m->loss_avg = p->loss_avg;
  m->lr = p->lr;
  m->steps_per_s = p->steps_per_s;
  m->eta_s = p->eta_s;
  m->elapsed_s = p->elapsed_s;
  m->rows = (uint32_t)j->rows;
  m->x_dim = (uint32_t)j->x_dim;
  m->y_dim = (uint32_t)j->y_dim;
  if (p->val_rows > 0) {
    m->optional_val_loss_case = EMBER__V1__TRAIN_PROGRESS__OPTIONAL_VAL_LOSS_VAL_LOSS;
    m->val_loss = (float)p->val_loss;
    m->val_chance = (float)p->val_chance;
    m->val_rows = (uint32_t)p->val_rows;
  }
}

/* Sends what is due: the final message and status once the thread is done, else the latest
 * progress report if it is newer than the last one sent. At most one send in flight: a send's
 * completion (train_event) calls this again. */
static void pump(train_job *j) {
  srv_call *c = j->c;
  if (!c || j->sending || j->closed || j->finishing) return;
  pthread_mutex_lock(&j->mu);
  ember_train_progress p = j->latest;
  int have = j->have_latest, done = j->thread_done, rc = j->rc;
  grpc_status_code code = j->code;
  int64_t version = j->version;
  char msg[600];
  snprintf(msg, sizeof msg, "%s", j->msg);
  pthread_mutex_unlock(&j->mu);
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  if (!j->metadata_sent) ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  Ember__V1__TrainProgress m = EMBER__V1__TRAIN_PROGRESS__INIT;
  /* a successful job always reports at least one step before its final message, however fast
   * it was */
  if (done && !(rc == 0 && have && j->sent_step < 0)) {
    if (rc == 0) {
      if (have) fill_progress(&m, &p, j);
      m.done = 1;
      m.version = version;
      if (c->send) grpc_byte_buffer_destroy(c->send);
      c->send = ember_wire_pack(&m.base);
      ops[n].op = GRPC_OP_SEND_MESSAGE;
      ops[n++].data.send_message.send_message = c->send;
      srv_log(LOG_INFO, "model trained and published", "model=%s version=%lld steps=%lld loss=%.4f job=%llu",
              j->name, (long long)version, (long long)p.step, (double)p.loss_avg, (unsigned long long)j->id);
      registry_rescan_soon(j->s);
    } else {
      if (j->shutdown_cancel && rc == EMBER_ECANCELED) {
        code = GRPC_STATUS_UNAVAILABLE;
        snprintf(msg, sizeof msg, "the server is shutting down: training cancelled, nothing was published");
      }
      grpc_slice_unref(c->status_details);
      c->status_details = grpc_slice_from_copied_string(msg);
    }
    metrics_call_ended(c, rc == 0 ? GRPC_STATUS_OK : code);
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = rc == 0 ? GRPC_STATUS_OK : code;
    ops[n++].data.send_status_from_server.status_details = rc == 0 ? NULL : &c->status_details;
    j->metadata_sent = 1;
    j->finishing = 1;
    c->state = CALL_STREAMING;
    start(j, ops, n);
    return;
  }
  if (!have || p.step <= j->sent_step) return;
  fill_progress(&m, &p, j);
  if (c->send) grpc_byte_buffer_destroy(c->send);
  c->send = ember_wire_pack(&m.base);
  ops[n].op = GRPC_OP_SEND_MESSAGE;
  ops[n++].data.send_message.send_message = c->send;
  j->metadata_sent = 1;
  j->sent_step = p.step;
  start(j, ops, n);
}

static void job_done(train_job *j) {
  if (j->thread_joined) return;
  pthread_join(j->thread, NULL);
  j->thread_joined = 1;
  if (j->rc != 0) {
    grpc_status_code code = j->shutdown_cancel && j->rc == EMBER_ECANCELED ? GRPC_STATUS_UNAVAILABLE : j->code;
    srv_log(code == GRPC_STATUS_INTERNAL ? LOG_ERROR : code == GRPC_STATUS_RESOURCE_EXHAUSTED ? LOG_WARN : LOG_INFO,
            "training failed",
            "model=%s status=%s details=\"%s\" job=%llu", j->name, srv_status_name(code), j->msg,
            (unsigned long long)j->id);
  }
  release_slot(j);
  j->s->metrics.train_jobs_total[j->rc == 0 ? METRICS_TRAIN_PUBLISHED
                                 : j->rc == EMBER_ECANCELED ? METRICS_TRAIN_CANCELLED : METRICS_TRAIN_FAILED]++;
}

static void on_async(uv_async_t *a) {
  train_job *j = a->data;
  pthread_mutex_lock(&j->mu);
  int done = j->thread_done;
  pthread_mutex_unlock(&j->mu);
  if (done) job_done(j);
  pump(j);
  maybe_free(j);
}

void train_event(srv_call *c, int ok) {
  train_job *j = c->stream.train;
  c->ops_pending--;
  j->sending = 0;
  if (!ok) {
    j->closed = 1;
    cancel_job(j);
  }
  pump(j);
  maybe_free(j);
}

void train_closed(void *tag, int ok) {
  (void)ok;
  train_job *j = tag;
  srv_call *c = j->c;
  c->ops_pending--;
  if (!j->finishing || c->cancelled) {
    if (!j->thread_joined && !atomic_load(&j->cancel))
      srv_log(LOG_INFO, "training call ended by the client: cancelling", "model=%s job=%llu", j->name,
              (unsigned long long)j->id);
    cancel_job(j);
    j->closed = 1;
  }
  maybe_free(j);
}

void train_cancel_all(server *s) {
  for (train_job *j = s->train_jobs; j; j = j->next) {
    j->shutdown_cancel = 1;
    atomic_store(&j->cancel, 1);
  }
}

/* ---- the request -------------------------------------------------------------------------- */

/* Resolves `dataset` under --data-dir into j->dataset_path; -1 after answering the call. */
static int resolve_dataset(server *s, train_job *j, const char *name, srv_status *st) {
  if (!s->cfg.data_dir) {
    srv_status_set(st, GRPC_STATUS_FAILED_PRECONDITION,
                   "dataset '%.200s': this server has no --data-dir; send the data inline (x, y)", name);
    return -1;
  }
  if (name[0] == '/') {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "dataset '%.200s': must be a path relative to the server's data directory, not absolute", name);
    return -1;
  }
  for (const char *p = name; *p;) {
    const char *e = strchr(p, '/');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == 2 && p[0] == '.' && p[1] == '.') {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                     "dataset '%.200s': '..' is not allowed; name a file inside the server's data directory", name);
      return -1;
    }
    p += len + (e ? 1 : 0);
  }
  char root[PATH_MAX], joined[2 * PATH_MAX + 2], real[PATH_MAX];
  if (!realpath(s->cfg.data_dir, root)) {
    srv_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, "the server's data directory is not readable: %s", strerror(errno));
    return -1;
  }
  snprintf(joined, sizeof joined, "%s/%s", root, name);
  if (!realpath(joined, real)) {
    srv_status_set(st, GRPC_STATUS_NOT_FOUND, "dataset '%.200s': no such file in the server's data directory", name);
    return -1;
  }
  size_t rl = strlen(root);
  if (strncmp(real, root, rl) != 0 || real[rl] != '/') {
    srv_status_set(st, GRPC_STATUS_PERMISSION_DENIED,
                   "dataset '%.200s' resolves outside the server's data directory (a symbolic link?)", name);
    return -1;
  }
  struct stat sb;
  if (stat(real, &sb) < 0 || !S_ISREG(sb.st_mode)) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "dataset '%.200s' is not a regular file", name);
    return -1;
  }
  snprintf(j->dataset_path, sizeof j->dataset_path, "%s", real);
  snprintf(j->dataset_label, sizeof j->dataset_label, "%.200s", name);
  return 0;
}

/* Inline data into j->ds; -1 after answering. */
static int take_data(server *s, const Ember__V1__TrainRequest *r, train_job *j, srv_status *st) {
  if (r->x_dim < 1 || r->y_dim < 1 || r->x_dim > EMBER_MAX_COLS || r->y_dim > EMBER_MAX_COLS) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "inline data needs x_dim and y_dim in 1..%d, got %u and %u",
                   EMBER_MAX_COLS, r->x_dim, r->y_dim);
    return -1;
  }
  if (r->n_x == 0 || r->n_x % r->x_dim != 0) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "x has %zu values, not a positive multiple of x_dim %u", r->n_x, r->x_dim);
    return -1;
  }
  size_t rows = r->n_x / r->x_dim;
  if (r->n_y != rows * r->y_dim) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "y has %zu values; %zu rows of x (x_dim %u) need %zu (y_dim %u)", r->n_y, rows, r->x_dim,
                   rows * r->y_dim, r->y_dim);
    return -1;
  }
  if (rows > (size_t)s->cfg.max_train_rows) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%zu rows of training data; this server trains on at most %d (--max-train-rows)",
                   rows, s->cfg.max_train_rows);
    return -1;
  }
  for (size_t i = 0; i < r->n_x; i++)
    if (!isfinite(r->x[i])) {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "x[%zu] (row %zu, column %zu) is %s; training data must be finite",
                     i, i / r->x_dim, i % r->x_dim, isnan(r->x[i]) ? "NaN" : "infinite");
      return -1;
    }
  for (size_t i = 0; i < r->n_y; i++)
    if (!isfinite(r->y[i])) {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "y[%zu] (row %zu, column %zu) is %s; training data must be finite",
                     i, i / r->y_dim, i % r->y_dim, isnan(r->y[i]) ? "NaN" : "infinite");
      return -1;
    }
  j->ds.n = (int)rows;
  j->ds.x_dim = (int)r->x_dim;
  j->ds.y_dim = (int)r->y_dim;
  j->ds.x = malloc(r->n_x * sizeof(float));
  j->ds.y = malloc(r->n_y * sizeof(float));
  if (!j->ds.x || !j->ds.y) {
    srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for %zu rows of training data", rows);
    return -1;
  }
  memcpy(j->ds.x, r->x, r->n_x * sizeof(float));
  memcpy(j->ds.y, r->y, r->n_y * sizeof(float));
  /* the columns' names, kept in the model as its signature */
  if ((r->n_x_names && r->n_x_names != r->x_dim) || (r->n_y_names && r->n_y_names != r->y_dim)) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s has %zu names, expected %u (%s)",
                   r->n_x_names && r->n_x_names != r->x_dim ? "x_names" : "y_names",
                   r->n_x_names && r->n_x_names != r->x_dim ? r->n_x_names : r->n_y_names,
                   r->n_x_names && r->n_x_names != r->x_dim ? r->x_dim : r->y_dim,
                   r->n_x_names && r->n_x_names != r->x_dim ? "x_dim" : "y_dim");
    return -1;
  }
  ember_err err;
  if (ember_names_check((const char *const *)r->x_names, (int)r->n_x_names, (const char *const *)r->y_names,
                        (int)r->n_y_names, &err) < 0) {
    srv_status_set(st, err.code == EMBER_ENOMEM ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INVALID_ARGUMENT,
                   "%s", err.msg);
    return -1;
  }
  if (r->n_x_names) j->ds.x_names = ember_names_new((const char *const *)r->x_names, (int)r->x_dim, 'x');
  if (r->n_y_names) j->ds.y_names = ember_names_new((const char *const *)r->y_names, (int)r->y_dim, 'y');
  if ((r->n_x_names && !j->ds.x_names) || (r->n_y_names && !j->ds.y_names)) {
    srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory for the column names");
    return -1;
  }
  if (r->y_cols && *r->y_cols) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "y_cols names a dataset's y columns; inline data has x and y");
    return -1;
  }
  return 0;
}

static train_job *parse(server *s, const Ember__V1__TrainRequest *r, srv_status *st) {
  if (!s->cfg.models_dir) {
    srv_status_set(st, GRPC_STATUS_FAILED_PRECONDITION,
                   "this server serves one file (--model); Train publishes into a repository (--models DIR)");
    return NULL;
  }
  if (!r->model || !srv_valid_model_name(r->model)) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT,
                   "model name '%.80s' is not valid: 1-64 characters of [A-Za-z0-9_.-], not starting with '.'",
                   r->model ? r->model : "");
    return NULL;
  }
  int inline_data = r->n_x > 0 || r->n_y > 0;
  int named = r->dataset && *r->dataset;
  if (inline_data == named) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s",
                   named ? "send either inline data (x, y) or a dataset name, not both"
                         : "no training data: send x and y (with x_dim and y_dim) or a dataset name");
    return NULL;
  }
  train_job *j = calloc(1, sizeof *j);
  if (!j) {
    srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
    return NULL;
  }
  j->kind = TAG_TRAIN_CLOSED;
  j->s = s;
  j->sent_step = -1;
  snprintf(j->name, sizeof j->name, "%s", r->model);
  snprintf(j->model_dir, sizeof j->model_dir, "%s/%s", s->cfg.models_dir, r->model);
  ember_err err;
  int ok = ember_wire_train_from_msg(r, &j->o, &err) == 0; /* 0/unset: `ember train --method M`'s */
  if (!ok) srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", err.msg);
  if (ok && named) {
    ok = resolve_dataset(s, j, r->dataset, st) == 0;
    j->y_dim_arg = r->y_dim ? (int)r->y_dim : -1;
    if (ok && r->x_dim) {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "x_dim is for inline data; a dataset's x columns are what "
                                                       "is left after its y columns");
      ok = 0;
    }
    if (ok && (r->n_x_names || r->n_y_names)) {
      srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "x_names and y_names are for inline data; a dataset's "
                                                       "names come from its file (CSV header, .npz name arrays)");
      ok = 0;
    }
    if (ok && r->y_cols && *r->y_cols && !(j->y_cols = strdup(r->y_cols))) {
      srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
      ok = 0;
    }
  } else if (ok) {
    ok = take_data(s, r, j, st) == 0;
  }
  char msg[600];
  /* a dataset file's size is known once the job has read it (job_main checks again): until
   * then, the least any data needs */
  if (ok && (named ? check_budget(j, 1, 1, r->y_dim ? (int)r->y_dim : 1, msg, sizeof msg)
                   : check_budget(j, j->ds.n, j->ds.x_dim, j->ds.y_dim, msg, sizeof msg)) < 0) {
    srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
    ok = 0;
  }
  if (!ok) {
    train_job_discard(j);
    return NULL;
  }
  return j;
}

int train_decode(server *s, const uint8_t *bytes, long len, train_job **out, srv_status *st) {
  *out = NULL;
  Ember__V1__TrainRequest *r = len >= 0 ? ember__v1__train_request__unpack(NULL, (size_t)len, bytes) : NULL;
  if (!r)
    return srv_status_set(st, GRPC_STATUS_INVALID_ARGUMENT, "the request is not a valid ember.v1.TrainRequest message");
  int stopping = 0; /* cancelled jobs whose thread has not ended yet: they hold their memory */
  for (train_job *k = s->train_jobs; k; k = k->next) stopping += !k->holds_slot && !k->thread_joined;
  if (s->train_running >= s->cfg.max_train_jobs) {
    if (s->cfg.max_train_jobs == 0)
      srv_status_set(st, GRPC_STATUS_FAILED_PRECONDITION, "training is off on this server (--max-train-jobs 0)");
    else
      srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
                     "%d training job%s already running (--max-train-jobs %d); try again when %s",
                     s->train_running, s->train_running == 1 ? "" : "s", s->cfg.max_train_jobs,
                     s->train_running == 1 ? "it ends" : "one ends");
  } else if (s->train_running + stopping >= 2 * s->cfg.max_train_jobs) { /* memory: 2 jobs a slot */
    srv_status_set(st, GRPC_STATUS_RESOURCE_EXHAUSTED,
                   "%d cancelled training job%s still stopping (at %s next step; --max-train-jobs %d); try "
                   "again when %s",
                   stopping, stopping == 1 ? " is" : "s are", stopping == 1 ? "its" : "their",
                   s->cfg.max_train_jobs, stopping == 1 ? "it has" : "one has");
  } else {
    *out = parse(s, r, st);
  }
  ember__v1__train_request__free_unpacked(r, NULL);
  return *out ? 0 : -1;
}

void train_job_discard(train_job *j) {
  if (!j) return;
  ember_dataset_free(&j->ds);
  free(j->y_cols);
  free(j);
}

void train_handle(srv_call *c) {
  server *s = c->srv;
  if (s->draining) {
    srv_call_fail(c, GRPC_STATUS_UNAVAILABLE, "the server is shutting down");
    return;
  }
  uint8_t *bytes;
  long len = srv_bytes(c->payload, &bytes);
  train_job *j;
  srv_status st;
  int rc = train_decode(s, bytes, len, &j, &st);
  free(bytes);
  if (rc < 0) {
    srv_call_fail_status(c, &st);
    return;
  }
  j->id = ++s->train_seq;
  j->c = c;
  pthread_mutex_init(&j->mu, NULL);
  uv_async_init(s->loop, &j->async, on_async);
  j->async.data = j;
  j->async_open = 1;
  j->next = s->train_jobs;
  s->train_jobs = j;
  s->train_alive++;
  s->train_running++;
  j->holds_slot = 1;
  c->stream.train = j;
  c->state = CALL_STREAMING;
  grpc_op close_op;
  memset(&close_op, 0, sizeof close_op);
  close_op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  close_op.data.recv_close_on_server.cancelled = &c->cancelled;
  if (grpc_call_start_batch(c->call, &close_op, 1, j, NULL) == GRPC_CALL_OK) c->ops_pending++;
  else j->closed = 1;
  srv_log(LOG_INFO, "training started", "model=%s method=%s rows=%d dataset=%s steps=%lld threads=%d job=%llu",
          j->name, ember_method_name(j->o.method), j->ds.n, j->dataset_path[0] ? j->dataset_label : "-",
          (long long)j->o.steps, s->cfg.train_threads, (unsigned long long)j->id);
  if (pthread_create(&j->thread, NULL, job_main, j) != 0) {
    /* no thread: answer, and let the job be freed as if it had ended */
    pthread_mutex_lock(&j->mu);
    j->thread_done = 1;
    j->rc = EMBER_ENOMEM;
    j->code = GRPC_STATUS_RESOURCE_EXHAUSTED;
    snprintf(j->msg, sizeof j->msg, "cannot start a training thread");
    pthread_mutex_unlock(&j->mu);
    j->thread_joined = 1;
    release_slot(j);
    pump(j);
    maybe_free(j);
    return;
  }
  j->thread_started = 1;
  if (s->draining) cancel_job(j);
}
