/* base.c - errors, random streams, the thread pool, clocks.
 *
 * The random generator is xoshiro256** seeded through splitmix64 from (seed, stream): cheap,
 * 256 bits of state, and streams that never share a starting point for distinct pairs, which
 * is what makes "row i of a request uses stream i" reproducible however requests are batched.
 *
 * The pool is deliberately small: a fixed set of threads, one job at a time, tasks handed out
 * by a fixed rule (task t runs on thread t % threads) so that per-thread partial results are
 * combined in the same order on every run. The calling thread takes part as thread 0, so a
 * pool of 1 costs nothing. It is not a general scheduler; emberd has its own worker threads,
 * which run a batch inline, or over a pool of their own when idle cores can join it.
 *
 * ember_fsync_dir_of is here, not in checkpoint.c, because emberd and the CLI make files
 * durable the same way (a rename or link, then the directory's fsync).
 */
#define _GNU_SOURCE /* realpath; sched_getcpu, CPU_SET, pthread_setaffinity_np (the pool's spread) */
#include "ember/base.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#define EMBER_TWO_PI 6.283185307179586476925

const char *ember_strerror(int code) {
  switch (code) {
  case EMBER_OK: return "ok";
  case EMBER_EINVAL: return "invalid argument";
  case EMBER_ENOMEM: return "out of memory";
  case EMBER_EIO: return "input/output error";
  case EMBER_EFORMAT: return "malformed file";
  case EMBER_ERANGE: return "value out of range";
  case EMBER_ENOTSUP: return "not supported";
  case EMBER_ECANCELED: return "cancelled";
  case EMBER_ENOSPC: return "out of space";
  default: return "unknown error";
  }
}

int ember_fail(ember_err *err, int code, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->code = code;
  }
  return code;
}

/* ---- random streams ---------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void ember_rng_seed(ember_rng *rng, uint64_t seed, uint64_t stream) {
  uint64_t x = seed;
  uint64_t mixed = splitmix64(&x) ^ (stream * 0xd1b54a32d192ed03ULL + 0x8cb92ba72f3d8dd7ULL);
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&mixed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t ember_rng_u64(ember_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float ember_rng_uniform(ember_rng *rng) {
  return (float)(ember_rng_u64(rng) >> 40) * 0x1.0p-24f;
}

double ember_rng_uniform_pos(ember_rng *rng) {
  return ((double)(ember_rng_u64(rng) >> 11) + 1.0) * 0x1.0p-53;
}

float ember_rng_normal(ember_rng *rng) {
  double u1 = ember_rng_uniform_pos(rng);
  double u2 = (double)(ember_rng_u64(rng) >> 11) * 0x1.0p-53;
  return (float)(sqrt(-2.0 * log(u1)) * cos(EMBER_TWO_PI * u2));
}

void ember_rng_normal_fill(ember_rng *rng, float *out, size_t n) {
  size_t i = 0;
  for (; i + 1 < n; i += 2) {
    double u1 = ember_rng_uniform_pos(rng);
    double u2 = (double)(ember_rng_u64(rng) >> 11) * 0x1.0p-53;
    double r = sqrt(-2.0 * log(u1));
    out[i] = (float)(r * cos(EMBER_TWO_PI * u2));
    out[i + 1] = (float)(r * sin(EMBER_TWO_PI * u2));
  }
  if (i < n) out[i] = ember_rng_normal(rng);
}

uint32_t ember_rng_below(ember_rng *rng, uint32_t n) {
  /* Lemire's multiply-shift with rejection: unbiased. */
  uint64_t m = (uint64_t)(uint32_t)(ember_rng_u64(rng) >> 32) * n;
  uint32_t lo = (uint32_t)m;
  if (lo < n) {
    uint32_t threshold = (uint32_t)(-n) % n;
    while (lo < threshold) {
      m = (uint64_t)(uint32_t)(ember_rng_u64(rng) >> 32) * n;
      lo = (uint32_t)m;
    }
  }
  return (uint32_t)(m >> 32);
}

/* ---- thread pool ------------------------------------------------------------------- */

/* A job's hand-over: the caller publishes the job under the mutex and bumps `generation`; a
 * helper that finished a job less than the pool's wait ago (ember_pool_set_wait_us) polls
 * `generation` instead of sleeping, and the caller polls `running` as long before it sleeps on
 * `done`. Inference runs several energy passes back to back (a DFO query's iterations, a
 * chain's steps) a few microseconds apart, and a server's queries come a few hundred
 * microseconds apart; a thread asleep on a condition variable takes tens of microseconds to
 * wake, and on a virtual machine whose core has gone idle, about a millisecond
 * (docs/performance.md). The first EMBER_POOL_SPIN_US of the wait spin; after that a waiting
 * thread calls sched_yield between looks, so it keeps its core awake while another thread that
 * wants the core gets it. A thread with nothing to do sleeps after the wait.
 * ember_pool_run_any's jobs are not split in advance: every thread, the caller first, claims
 * the next task from `claim`, and the caller waits for `finished` to reach the task count, so
 * a helper that wakes late finds nothing left and no one waits for it. */
#define EMBER_POOL_SPIN_NS (EMBER_POOL_SPIN_US * 1000ull)
struct ember_pool {
  int threads;
  pthread_t *tids;
  pthread_mutex_t mu;
  pthread_cond_t start;
  pthread_cond_t done;
  atomic_uint_fast64_t generation; /* bumped for every job */
  atomic_int running;              /* helper threads still working on the current job */
  atomic_int quit;                 /* set under mu; read by polling threads without it */
  atomic_long wait_ns;             /* ember_pool_set_wait_us */
  int ntasks;
  ember_task_fn fn;
  void *ctx;
  int any;                         /* the job's tasks go to whichever thread claims them */
  atomic_uint_fast64_t claim;      /* any: (generation's low 32 bits << 32) | next task */
  atomic_int finished;             /* any: tasks done */
#ifdef __linux__
  cpu_set_t allowed; /* the CPUs the helpers may run on: the creator's, when the pool was made */
  int spread;        /* the helpers fit beside the caller: no more threads than allowed CPUs */
  int kept_off;      /* the CPU the helpers are kept off (pool_spread), or -1 */
#endif
};

static uint64_t pool_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void pool_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* What pool_poll waits for: a job after generation `arg` (or the pool's end), a job's helpers
 * to finish (ember_pool_run), or `arg` tasks to finish (ember_pool_run_any). */
enum pool_event { POOL_NEXT_JOB, POOL_HELPERS_DONE, POOL_TASKS_DONE };

static int pool_happened(ember_pool *p, enum pool_event ev, uint64_t arg) {
  switch (ev) {
  case POOL_NEXT_JOB:
    return atomic_load_explicit(&p->generation, memory_order_acquire) != arg ||
           atomic_load_explicit(&p->quit, memory_order_relaxed);
  case POOL_HELPERS_DONE: return atomic_load_explicit(&p->running, memory_order_acquire) == 0;
  case POOL_TASKS_DONE: return (uint64_t)atomic_load_explicit(&p->finished, memory_order_acquire) >= arg;
  }
  return 1;
}

/* Polls for `ev` for at most the pool's wait; 1 when it happened. */
static int pool_poll(ember_pool *p, enum pool_event ev, uint64_t arg) {
  const uint64_t wait = (uint64_t)atomic_load_explicit(&p->wait_ns, memory_order_relaxed);
  const uint64_t spin = wait < EMBER_POOL_SPIN_NS ? wait : EMBER_POOL_SPIN_NS;
  const uint64_t start = pool_now_ns();
  uint64_t waited = 0;
  for (int i = 0;; i++) {
    if (pool_happened(p, ev, arg)) return 1;
    if (waited >= wait) return 0;
    if (waited < spin) pool_cpu_relax();
    else sched_yield();
    if (waited >= spin || (i & 63) == 63) waited = pool_now_ns() - start;
  }
}

struct pool_arg {
  ember_pool *pool;
  int thread;
};

static void pool_do_share(ember_pool *p, int thread, int ntasks, ember_task_fn fn, void *ctx) {
  for (int t = thread; t < ntasks; t += p->threads) fn(ctx, t, thread);
}

/* The next unclaimed task of the job tagged `tag`, or -1 when all are claimed or that job is
 * over (the tag and the task index change in one compare-and-swap, so a helper that wakes
 * after its job ended never takes a task of the next one). */
static int pool_claim(ember_pool *p, uint32_t tag, int ntasks) {
  uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
  for (;;) {
    if ((uint32_t)(c >> 32) != tag || (int)(uint32_t)c >= ntasks) return -1;
    if (atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire))
      return (int)(uint32_t)c;
  }
}

/* ember_pool_run_any's share of one thread: claims tasks until none is left; a helper tells a
 * caller that may be asleep when it finished the job's last task. */
static void pool_do_any(ember_pool *p, int thread, uint32_t tag, int ntasks, ember_task_fn fn, void *ctx) {
  for (int t; (t = pool_claim(p, tag, ntasks)) >= 0;) {
    fn(ctx, t, thread);
    if (atomic_fetch_add_explicit(&p->finished, 1, memory_order_acq_rel) + 1 == ntasks && thread != 0) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
}

static void *pool_main(void *arg) {
  struct pool_arg a = *(struct pool_arg *)arg;
  free(arg);
  ember_pool *p = a.pool;
  uint64_t seen = 0;
  prctl(PR_SET_NAME, "ember-pool", 0, 0, 0); /* what top -H, perf and gdb call it */
  ember_blas_single_thread();
  for (;;) {
    pool_poll(p, POOL_NEXT_JOB, seen); /* a next job that follows at once skips the sleep */
    pthread_mutex_lock(&p->mu);
    while (!atomic_load_explicit(&p->quit, memory_order_relaxed) &&
           atomic_load_explicit(&p->generation, memory_order_relaxed) == seen)
      pthread_cond_wait(&p->start, &p->mu);
    if (atomic_load_explicit(&p->quit, memory_order_relaxed)) break;
    seen = atomic_load_explicit(&p->generation, memory_order_relaxed);
    int ntasks = p->ntasks, any = p->any;
    ember_task_fn fn = p->fn;
    void *ctx = p->ctx;
    pthread_mutex_unlock(&p->mu);
    if (any) { /* the caller waits for the tasks, not for this thread */
      pool_do_any(p, a.thread, (uint32_t)seen, ntasks, fn, ctx);
      continue;
    }
    pool_do_share(p, a.thread, ntasks, fn, ctx);
    pthread_mutex_lock(&p->mu);
    if (atomic_fetch_sub_explicit(&p->running, 1, memory_order_acq_rel) == 1) pthread_cond_signal(&p->done);
    pthread_mutex_unlock(&p->mu);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

int ember_pool_create(ember_pool **out, int threads, ember_err *err) {
  *out = NULL;
  if (threads < 1 || threads > EMBER_MAX_THREADS)
    return ember_fail(err, EMBER_EINVAL, "thread count must be 1..%d, got %d", EMBER_MAX_THREADS,
                      threads);
  ember_pool *p = calloc(1, sizeof *p);
  if (!p) return ember_fail(err, EMBER_ENOMEM, "out of memory creating a thread pool");
  p->threads = threads;
  atomic_init(&p->wait_ns, (long)EMBER_POOL_WAIT_US * 1000);
#ifdef __linux__
  /* helpers inherit this mask; pool_spread keeps them within it */
  p->spread = threads > 1 && sched_getaffinity(0, sizeof p->allowed, &p->allowed) == 0 &&
              threads <= CPU_COUNT(&p->allowed);
  p->kept_off = -1;
#endif
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->start, NULL);
  pthread_cond_init(&p->done, NULL);
  if (threads > 1) {
    p->tids = calloc((size_t)threads, sizeof *p->tids);
    if (!p->tids) goto fail;
    for (int i = 1; i < threads; i++) {
      struct pool_arg *a = malloc(sizeof *a);
      if (!a) goto fail_threads;
      a->pool = p;
      a->thread = i;
      if (pthread_create(&p->tids[i], NULL, pool_main, a) != 0) {
        free(a);
        goto fail_threads;
      }
      continue;
    fail_threads:
      p->threads = i; /* only threads 1..i-1 exist */
      ember_pool_destroy(p);
      return ember_fail(err, EMBER_ENOMEM, "could not start thread %d of %d", i, threads);
    }
  }
  *out = p;
  return 0;
fail:
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->start);
  pthread_cond_destroy(&p->done);
  free(p);
  return ember_fail(err, EMBER_ENOMEM, "out of memory creating a thread pool");
}

void ember_pool_destroy(ember_pool *p) {
  if (!p) return;
  pthread_mutex_lock(&p->mu);
  atomic_store_explicit(&p->quit, 1, memory_order_relaxed);
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->threads; i++) pthread_join(p->tids[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->start);
  pthread_cond_destroy(&p->done);
  free(p->tids);
  free(p);
}

int ember_pool_threads(const ember_pool *p) { return p ? p->threads : 1; }

int ember_pool_set_wait_us(ember_pool *p, long us, ember_err *err) {
  if (us < 0 || us > EMBER_POOL_WAIT_US_MAX)
    return ember_fail(err, EMBER_EINVAL, "a pool's wait must be 0..%d microseconds, got %ld", EMBER_POOL_WAIT_US_MAX, us);
  if (p) atomic_store_explicit(&p->wait_ns, us * 1000, memory_order_relaxed);
  return 0;
}

/* Keeps the helpers off the calling thread's CPU. A helper that polls on the CPU where the
 * caller then wakes shares that core with it for the whole job: each runs half the time, the
 * other core idles, and the kernel does not move either (both ran a moment ago, so both count as
 * cache-hot) until its periodic balance, milliseconds later; on the EPYC VM a lone 1024 x 3
 * query then took twice its time, for runs at a stretch (docs/performance.md). So when the
 * caller's CPU changes, the helpers' affinity becomes the CPUs they were allowed minus that one;
 * the kernel moves them at once. Only where they fit beside the caller (p->spread: no more
 * threads than allowed CPUs); an oversubscribed pool keeps the kernel's placement. Answers do
 * not change: tasks do not depend on the CPU they run on. */
static void pool_spread(ember_pool *p) {
#ifdef __linux__
  if (!p->spread) return;
  const int cpu = sched_getcpu();
  const int off = cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, &p->allowed) ? cpu : -1;
  if (off == p->kept_off) return;
  cpu_set_t set = p->allowed;
  if (off >= 0) CPU_CLR(off, &set);
  for (int i = 1; i < p->threads; i++) pthread_setaffinity_np(p->tids[i], sizeof set, &set);
  p->kept_off = off; /* a helper the call failed for (none should) is left where it was */
#else
  (void)p;
#endif
}

/* Publishes a job to the helpers; returns its generation. */
static uint64_t pool_start(ember_pool *p, int any, int ntasks, ember_task_fn fn, void *ctx) {
  pool_spread(p);
  pthread_mutex_lock(&p->mu);
  p->ntasks = ntasks;
  p->fn = fn;
  p->ctx = ctx;
  p->any = any;
  const uint64_t gen = atomic_load_explicit(&p->generation, memory_order_relaxed) + 1;
  if (any) {
    atomic_store_explicit(&p->finished, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, (uint64_t)(uint32_t)gen << 32, memory_order_relaxed);
  } else {
    atomic_store_explicit(&p->running, p->threads - 1, memory_order_relaxed);
  }
  atomic_store_explicit(&p->generation, gen, memory_order_release);
  pthread_cond_broadcast(&p->start);
  pthread_mutex_unlock(&p->mu);
  return gen;
}

/* Runs a job: on the calling thread alone where there is nothing to share, else published to
 * the helpers, the caller's share run, and the caller waiting for the helpers (fixed split) or
 * for the tasks (any). */
static void pool_run(ember_pool *p, int any, int ntasks, ember_task_fn fn, void *ctx) {
  if (!p || p->threads == 1 || ntasks <= 1) {
    for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
    return;
  }
  const uint64_t gen = pool_start(p, any, ntasks, fn, ctx);
  if (any) pool_do_any(p, 0, (uint32_t)gen, ntasks, fn, ctx);
  else pool_do_share(p, 0, ntasks, fn, ctx);
  const enum pool_event ev = any ? POOL_TASKS_DONE : POOL_HELPERS_DONE;
  const uint64_t arg = any ? (uint64_t)ntasks : 0;
  if (pool_poll(p, ev, arg)) return;
  pthread_mutex_lock(&p->mu);
  while (!pool_happened(p, ev, arg)) pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}

void ember_pool_run(ember_pool *p, int ntasks, ember_task_fn fn, void *ctx) { pool_run(p, 0, ntasks, fn, ctx); }

void ember_pool_run_any(ember_pool *p, int ntasks, ember_task_fn fn, void *ctx) { pool_run(p, 1, ntasks, fn, ctx); }

void ember_blas_single_thread(void) { openblas_set_num_threads(1); }

const char *ember_blas_core(void) {
  const char *c = openblas_get_corename();
  return c ? c : "unknown";
}

/* How each kernel family's sgemm rounds (measured by test_infer and test_net, which run under
 * the CPU's own kernels and under OPENBLAS_CORETYPE=Haswell): the SkylakeX family's results for
 * a row depend neither on its position nor on the call's row count (from 16 rows); every other
 * family is taken to round like Haswell's, by position modulo 12 and in ragged tails. */
static int skylakex_family(const char *core) {
  static const char *const fam[] = {"skylakex", "cooperlake", "sapphirerapids"};
  for (size_t i = 0; core && i < sizeof fam / sizeof *fam; i++)
    if (strcasecmp(core, fam[i]) == 0) return 1;
  return 0;
}

int ember_blas_row_quantum_of(const char *core) { return skylakex_family(core) ? 1 : 12; }

int ember_blas_row_quantum(void) { return ember_blas_row_quantum_of(ember_blas_core()); }

int ember_blas_row_block_of(const char *core) { return skylakex_family(core) ? 16 : 48; }

int ember_blas_row_block(void) {
  static atomic_int block; /* the loaded kernels never change: looked up once */
  int b = atomic_load_explicit(&block, memory_order_relaxed);
  if (b == 0) {
    b = ember_blas_row_block_of(ember_blas_core());
    atomic_store_explicit(&block, b, memory_order_relaxed);
  }
  return b;
}

/* The widest kernel family this CPU takes: "SkylakeX" with AVX-512 (F, BW, DQ, VL), "Haswell"
 * with AVX2 and FMA, else NULL. */
static const char *cpu_best_core(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  /* __builtin_cpu_supports also asks the OS (XGETBV) whether it saves the wide registers */
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return NULL;
}

/* Whether core is a family with AVX2 kernels or better in OpenBLAS's tables */
static int modern_core(const char *core) {
  static const char *const modern[] = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
  for (size_t i = 0; i < sizeof modern / sizeof *modern; i++)
    if (strcasecmp(core, modern[i]) == 0) return 1;
  return 0;
}

const char *ember_blas_better_core(void) {
  const char *env = getenv("OPENBLAS_CORETYPE");
  if (env && *env) return NULL;
  if (modern_core(ember_blas_core())) return NULL; /* OpenBLAS's own choice stands */
  return cpu_best_core();
}

const char *ember_blas_env_narrower(void) {
  const char *env = getenv("OPENBLAS_CORETYPE");
  if (!env || !*env) return NULL;
  const char *core = ember_blas_core(), *best = cpu_best_core();
  if (!best) return NULL;
  if (strcmp(best, "SkylakeX") == 0) return skylakex_family(core) ? NULL : best;
  return modern_core(core) ? NULL : best;
}

/* The file argv[0] names (found on PATH when it has no slash), resolved, in out (PATH_MAX). */
static int program_path(const char *arg0, char *out) {
  if (strchr(arg0, '/')) return realpath(arg0, out) ? 0 : -1;
  const char *path = getenv("PATH");
  while (path && *path) {
    size_t n = strcspn(path, ":");
    char cand[PATH_MAX];
    if (n > 0 && n + strlen(arg0) + 2 <= sizeof cand) {
      snprintf(cand, sizeof cand, "%.*s/%s", (int)n, path, arg0);
      if (access(cand, X_OK) == 0 && realpath(cand, out)) return 0;
    }
    path += n + (path[n] == ':');
  }
  return -1;
}

void ember_blas_reexec_for_cpu(char **argv) {
  const char *core = ember_blas_better_core();
  if (!core || !argv || !argv[0]) return;
  /* run again only what this process is: under valgrind or a loader, /proc/self/exe is that
   * tool and argv[0] the program, and neither should be started bare */
  char self[PATH_MAX], prog[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return;
  self[n] = 0;
  if (program_path(argv[0], prog) < 0 || strcmp(self, prog) != 0) return;
  if (setenv("OPENBLAS_CORETYPE", core, 1) != 0) return;
  execv(self, argv);
  /* not allowed: go on with the kernels OpenBLAS chose */
}

/* File systems that cannot sync a directory say EINVAL; there is nothing more to do there. */
int ember_fsync_dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
  if (!dir) return -1;
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int e = errno;
  free(dir);
  if (fd < 0) {
    errno = e;
    return -1;
  }
  int rc = fsync(fd);
  e = errno;
  close(fd);
  if (rc < 0 && e == EINVAL) rc = 0;
  errno = e;
  return rc;
}

double ember_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}
