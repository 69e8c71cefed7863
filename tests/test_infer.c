/* test_infer.c - a query's answer does not depend on what shares its call or on threads.
 *
 * The server batches many robots' queries into one library call and spreads a batch over idle
 * cores, so a query's energies, DFO answer and Langevin answer must be bit-identical whether it
 * runs alone or among others, on one thread or two. The energy passes lay several queries
 * into one network call, padded so that every query starts on a multiple of the kernels' row
 * quantum (ember_blas_row_quantum: 12 for the Haswell/Zen kernels, 1 for the SkylakeX
 * family's); candidate counts below, at and above a multiple of 12 exercise both layouts. The
 * network pads each call to a multiple of its row block (ember_blas_row_block: 48, or 16 under
 * the SkylakeX family), checked at the served width for every candidate count up to 100.
 * CTest runs this file twice: with the kernels ember picks for the CPU (on an AVX-512 CPU the
 * SkylakeX family, unpadded) and with OPENBLAS_CORETYPE=Haswell, whose sgemm rounds by row
 * position.
 */
#define _GNU_SOURCE /* sched_getcpu, CPU_SET, pthread_setaffinity_np: the pool's spread */
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <cmocka.h>

#include "ember/infer.h"
#include "ember/model.h"

enum { XD = 3, YD = 2, Q = 9 };

static void random_model(ember_model *m, ember_method method) {
  ember_err err;
  if (ember_model_init(m, method, XD, YD, EMBER_ARCH_RESNET, 32, 2, &err) < 0) fail_msg("init: %s", err.msg);
  ember_rng rng;
  ember_rng_seed(&rng, 5, 0);
  ember_rng_normal_fill(&rng, m->net.params, m->net.nparams);
  for (size_t i = 0; i < m->net.nparams; i++) m->net.params[i] *= 0.3f;
  for (int j = 0; j < m->nar; j++) {
    ember_rng_normal_fill(&rng, m->ar[j].params, m->ar[j].nparams);
    for (size_t i = 0; i < m->ar[j].nparams; i++) m->ar[j].params[i] *= 0.3f;
  }
}

static float *random_floats(size_t n, uint64_t seed) {
  float *v = malloc(n * sizeof *v);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  ember_rng_normal_fill(&rng, v, n);
  return v;
}

/* Energies of Q queries' candidates in one call equal each query's alone. */
static void test_energies_independent_of_batch(void **state) {
  (void)state;
  ember_model m;
  random_model(&m, EMBER_METHOD_DFO);
  ember_infer *inf;
  assert_int_equal(ember_infer_create(&inf, &m, NULL, NULL), 0);
  const int counts[] = {13, 50, 64, 72, 100};
  for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
    const int n = counts[c];
    float *x = random_floats(Q * XD, 1), *y = random_floats((size_t)Q * n * YD, 2);
    float *all = malloc((size_t)Q * n * sizeof *all), *one = malloc((size_t)n * sizeof *one);
    assert_int_equal(ember_infer_energy(inf, x, Q, y, n, all, NULL), 0);
    for (int q = 0; q < Q; q++) {
      assert_int_equal(ember_infer_energy(inf, x + q * XD, 1, y + (size_t)q * n * YD, n, one, NULL), 0);
      if (memcmp(one, all + (size_t)q * n, (size_t)n * sizeof *one))
        fail_msg("%d candidates: query %d alone differs from the same query among %d", n, q, Q);
    }
    free(x);
    free(y);
    free(all);
    free(one);
  }
  ember_infer_destroy(inf);
  ember_model_free(&m);
}

/* Q queries answered together, on one thread or two, equal each answered alone with its row's
 * stream: DFO (energies only), Langevin (energies and dE/dy) and ardfo (prefix nets). */
static void answers(ember_method method, int samples) {
  ember_model m;
  random_model(&m, method);
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  ember_infer *one, *two;
  assert_int_equal(ember_infer_create(&one, &m, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
  ember_infer_opts o = m.infer;
  o.samples = samples;
  if (method == EMBER_METHOD_LANGEVIN) o.langevin.steps = 5;
  float *x = random_floats(Q * XD, 3);
  uint64_t seeds[Q], streams[Q];
  for (int q = 0; q < Q; q++) {
    seeds[q] = 11;
    streams[q] = (uint64_t)q;
  }
  float y1[Q * YD], e1[Q], y2[Q * YD], e2[Q], ya[YD], ea;
  ember_err err;
  if (ember_infer_predict_rows(one, x, Q, &o, seeds, streams, y1, e1, &err) < 0) fail_msg("%s", err.msg);
  if (ember_infer_predict_rows(two, x, Q, &o, seeds, streams, y2, e2, &err) < 0) fail_msg("%s", err.msg);
  if (memcmp(y1, y2, sizeof y1) || memcmp(e1, e2, sizeof e1))
    fail_msg("method %d, %d samples: two threads answer differently from one", (int)method, samples);
  for (int q = 0; q < Q; q++) {
    if (ember_infer_predict_rows(one, x + q * XD, 1, &o, seeds + q, streams + q, ya, &ea, &err) < 0)
      fail_msg("%s", err.msg);
    if (memcmp(ya, y1 + q * YD, sizeof ya) || memcmp(&ea, e1 + q, sizeof ea))
      fail_msg("method %d, %d samples: query %d alone differs from the same query among %d", (int)method, samples, q, Q);
    /* alone on two threads: its candidates cut into pieces where it has enough of them */
    if (ember_infer_predict_rows(two, x + q * XD, 1, &o, seeds + q, streams + q, ya, &ea, &err) < 0)
      fail_msg("%s", err.msg);
    if (memcmp(ya, y1 + q * YD, sizeof ya) || memcmp(&ea, e1 + q, sizeof ea))
      fail_msg("method %d, %d samples: query %d alone on two threads differs from one thread", (int)method, samples, q);
  }
  free(x);
  ember_infer_destroy(one);
  ember_infer_destroy(two);
  ember_pool_destroy(pool);
  ember_model_free(&m);
}

static void test_answers_independent_of_batch_and_threads(void **state) {
  (void)state;
  answers(EMBER_METHOD_DFO, 64);
  answers(EMBER_METHOD_DFO, 96);
  answers(EMBER_METHOD_DFO, 1100); /* one query is cut into pieces */
  answers(EMBER_METHOD_LANGEVIN, 20);
  answers(EMBER_METHOD_LANGEVIN, 300); /* a lone query's chains cut into pieces */
  answers(EMBER_METHOD_ARDFO, 50);
}

/* Which kernel families need queries aligned to 12 rows, and which row block the network
 * pads its calls to: all but the SkylakeX family round like Haswell's. */
static void test_row_quantum_and_block(void **state) {
  (void)state;
  static const struct { const char *core; int quantum, block; } cases[] = {
      {"SkylakeX", 1, 16}, {"COOPERLAKE", 1, 16}, {"SapphireRapids", 1, 16}, {"Haswell", 12, 48},
      {"Zen", 12, 48},     {"Prescott", 12, 48},  {"unknown", 12, 48},       {NULL, 12, 48}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const char *name = cases[i].core ? cases[i].core : "NULL";
    if (ember_blas_row_quantum_of(cases[i].core) != cases[i].quantum)
      fail_msg("%s: quantum %d, expected %d", name, ember_blas_row_quantum_of(cases[i].core), cases[i].quantum);
    if (ember_blas_row_block_of(cases[i].core) != cases[i].block)
      fail_msg("%s: row block %d, expected %d", name, ember_blas_row_block_of(cases[i].core), cases[i].block);
  }
  const char *env = getenv("OPENBLAS_CORETYPE");
  if (env && strcasecmp(env, "Haswell") == 0) {
    assert_int_equal(ember_blas_row_quantum(), 12);
    assert_int_equal(ember_blas_row_block(), 48);
    assert_int_equal(ember_infer_min_task_rows(), 144);
  }
  assert_int_equal(ember_blas_row_quantum(), ember_blas_row_quantum_of(ember_blas_core()));
  assert_int_equal(ember_blas_row_block(), ember_blas_row_block_of(ember_blas_core()));
}

/* At the served width (256, where the network's smallest call is 16 rows) a candidate's energy
 * is the same whatever number of candidates its call has: every count from 1 to 100 alone
 * against the same candidates at the start of a 300-candidate call and, where the kernels
 * allow a query to start there, further in; and the same on two threads, which cut a query of
 * more than ember_infer_min_task_rows() candidates into pieces. Checks the network's row
 * block and where pieces may start for the loaded kernels (a ragged tail changes last bits). */
static void test_energies_independent_of_count(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  if (ember_model_init(&m, EMBER_METHOD_DFO, XD, YD, EMBER_ARCH_RESNET, 256, 2, &err) < 0) fail_msg("init: %s", err.msg);
  ember_rng rng;
  ember_rng_seed(&rng, 9, 0);
  ember_net_init_params(&m.net, &rng);
  ember_infer *inf, *two;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  assert_int_equal(ember_infer_create(&inf, &m, NULL, NULL), 0);
  assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
  enum { N = 300 };
  float *x = random_floats(XD, 4), *y = random_floats((size_t)N * YD, 5);
  float all[N], one[N];
  assert_int_equal(ember_infer_energy(inf, x, 1, y, N, all, NULL), 0);
  const int step = ember_blas_row_quantum() == 1 ? 7 : 12; /* where a query may start */
  for (int off = 0; off < N - 100; off += step)
    for (int n = 1; n <= 100; n++) {
      assert_int_equal(ember_infer_energy(inf, x, 1, y + (size_t)off * YD, n, one, NULL), 0);
      if (memcmp(one, all + off, (size_t)n * sizeof *one))
        fail_msg("candidates %d..%d alone differ from the same candidates among %d (kernels %s, row block %d)",
                 off, off + n - 1, N, ember_blas_core(), ember_blas_row_block());
      /* on two threads, which cut the query into pieces where it has enough candidates */
      assert_int_equal(ember_infer_energy(two, x, 1, y + (size_t)off * YD, n, one, NULL), 0);
      if (memcmp(one, all + off, (size_t)n * sizeof *one))
        fail_msg("candidates %d..%d alone on two threads differ from the same candidates among %d on one (kernels %s)",
                 off, off + n - 1, N, ember_blas_core());
    }
  /* counts that the Haswell kernels' larger tasks (ember_infer_min_task_rows) cut too */
  const int large[] = {145, 200, 288, 300};
  for (size_t i = 0; i < sizeof large / sizeof *large; i++) {
    assert_int_equal(ember_infer_energy(two, x, 1, y, large[i], one, NULL), 0);
    if (memcmp(one, all, (size_t)large[i] * sizeof *one))
      fail_msg("%d candidates on two threads differ from the same candidates among %d on one (kernels %s)",
               large[i], N, ember_blas_core());
  }
  free(x);
  free(y);
  ember_infer_destroy(two);
  ember_pool_destroy(pool);
  ember_infer_destroy(inf);
  ember_model_free(&m);
}

/* The pool's wait (how long its threads poll for the next job before they sleep) changes when
 * a pass starts, never what it computes: lone 64-candidate queries on two threads, back to back
 * and with pauses longer than the wait (so helpers sleep and are woken), give one thread's
 * energies with the wait off, short, the default and the longest (whose polling helpers must
 * still see the pool end). Out-of-range waits are refused. */
static void test_pool_wait(void **state) {
  (void)state;
  ember_err err;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  assert_int_equal(ember_pool_set_wait_us(pool, -1, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "0..1000000 microseconds, got -1"));
  assert_int_equal(ember_pool_set_wait_us(pool, EMBER_POOL_WAIT_US_MAX + 1L, &err), EMBER_EINVAL);
  assert_int_equal(ember_pool_set_wait_us(NULL, 5, &err), 0);
  ember_pool_destroy(pool);

  ember_model m;
  if (ember_model_init(&m, EMBER_METHOD_DFO, XD, YD, EMBER_ARCH_RESNET, 256, 2, &err) < 0) fail_msg("init: %s", err.msg);
  ember_rng rng;
  ember_rng_seed(&rng, 9, 0);
  ember_net_init_params(&m.net, &rng);
  ember_infer *inf;
  assert_int_equal(ember_infer_create(&inf, &m, NULL, NULL), 0);
  enum { N = 64, CALLS = 6 };
  float *x = random_floats(XD, 4), *y = random_floats((size_t)N * YD, 5);
  float want[N], got[N];
  assert_int_equal(ember_infer_energy(inf, x, 1, y, N, want, NULL), 0);
  const long waits[] = {0, 20, EMBER_POOL_WAIT_US, EMBER_POOL_WAIT_US_MAX};
  for (size_t w = 0; w < sizeof waits / sizeof *waits; w++) {
    ember_infer *two;
    assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
    assert_int_equal(ember_pool_set_wait_us(pool, waits[w], &err), 0);
    assert_int_equal(ember_infer_create(&two, &m, pool, NULL), 0);
    for (int c = 0; c < CALLS; c++) {
      const struct timespec pause = {0, 2000000}; /* longer than the wait: the helper sleeps */
      if (c % 2 && waits[w] < 1000) nanosleep(&pause, NULL);
      memset(got, 0, sizeof got);
      assert_int_equal(ember_infer_energy(two, x, 1, y, N, got, NULL), 0);
      if (memcmp(got, want, sizeof want)) fail_msg("wait %ld us, call %d: two threads differ from one", waits[w], c);
    }
    ember_infer_destroy(two);
    ember_pool_destroy(pool); /* with helpers still polling */
  }
  free(x);
  free(y);
  ember_infer_destroy(inf);
  ember_model_free(&m);
}

/* ember_pool_run_any runs every task exactly once on some thread of the pool, job after job,
 * between fixed-split jobs (ember_pool_run: task t on thread t % threads), whether helpers
 * poll or sleep between jobs. */
struct pool_count {
  atomic_int ran[64];
  atomic_int bad_thread;
  int threads;
  int fixed;
};

static void count_task(void *ctx, int task, int thread) {
  struct pool_count *c = ctx;
  if (thread < 0 || thread >= c->threads || (c->fixed && thread != task % c->threads))
    atomic_store(&c->bad_thread, 1);
  atomic_fetch_add(&c->ran[task], 1);
}

static void test_pool_run_any_counts(void **state) {
  (void)state;
  const long waits[] = {0, EMBER_POOL_WAIT_US};
  for (size_t w = 0; w < sizeof waits / sizeof *waits; w++) {
    ember_pool *pool;
    assert_int_equal(ember_pool_create(&pool, 3, NULL), 0);
    assert_int_equal(ember_pool_set_wait_us(pool, waits[w], NULL), 0);
    struct pool_count c = {.threads = 3};
    const int sizes[] = {1, 2, 3, 7, 64};
    for (int job = 0; job < 300; job++) {
      const int n = sizes[job % 5];
      c.fixed = job % 3 == 2;
      for (int t = 0; t < 64; t++) atomic_store(&c.ran[t], 0);
      if (c.fixed) ember_pool_run(pool, n, count_task, &c);
      else ember_pool_run_any(pool, n, count_task, &c);
      for (int t = 0; t < 64; t++)
        if (atomic_load(&c.ran[t]) != (t < n)) fail_msg("wait %ld, job %d (%d tasks): task %d ran %d times", waits[w], job, n, t, atomic_load(&c.ran[t]));
      assert_int_equal(atomic_load(&c.bad_thread), 0);
    }
    ember_pool_destroy(pool);
  }
  struct pool_count c = {.threads = 1}; /* no pool: the caller, as thread 0 */
  ember_pool_run_any(NULL, 5, count_task, &c);
  for (int t = 0; t < 5; t++) assert_int_equal(atomic_load(&c.ran[t]), 1);
  assert_int_equal(atomic_load(&c.bad_thread), 0);
}

/* A helper that is held up in its task does not hold up the tasks it has not started: the
 * caller runs them. Here the first task a helper takes waits until every other task is done
 * (which under a fixed split, where the rest of the helper's share waits for it, never
 * happens: the wait gives up after 10 s and the test fails). The caller's tasks take 20 us
 * each, so that a helper gets to take one; jobs repeat until one has (at most 10 s). */
struct pool_stall {
  atomic_int done, stalled, by_caller, gave_up;
  int ntasks;
};

static void stall_task(void *ctx, int task, int thread) {
  (void)task;
  struct pool_stall *s = ctx;
  if (thread != 0 && atomic_exchange(&s->stalled, 1) == 0) {
    const double give_up = ember_now() + 10.0;
    while (atomic_load(&s->done) < s->ntasks - 1)
      if (ember_now() > give_up) {
        atomic_store(&s->gave_up, 1);
        break;
      }
  }
  if (thread == 0) {
    atomic_fetch_add(&s->by_caller, 1);
    const double until = ember_now() + 20e-6;
    while (ember_now() < until) {
    }
  }
  atomic_fetch_add(&s->done, 1);
}

static void test_pool_run_any_takes_over(void **state) {
  (void)state;
  ember_pool *pool;
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  int held = 0;
  const double give_up = ember_now() + 10.0;
  for (int job = 0; !held && ember_now() < give_up; job++) {
    struct pool_stall s = {.ntasks = 16};
    ember_pool_run_any(pool, s.ntasks, stall_task, &s);
    assert_int_equal(atomic_load(&s.done), s.ntasks);
    assert_int_equal(atomic_load(&s.gave_up), 0);
    held = atomic_load(&s.stalled);
    /* the caller ran all but the one task the helper held (or all of them, when the helper
     * came too late to take any) */
    if (atomic_load(&s.by_caller) < s.ntasks - held) fail_msg("job %d: the caller ran %d of %d tasks", job, atomic_load(&s.by_caller), s.ntasks);
  }
  if (!held) fail_msg("in 10 s of jobs the helper never took a task");
  ember_pool_destroy(pool);
}

/* The pool keeps its helpers off the calling thread's CPU, so that a helper polling there does
 * not share that core with the caller for a whole job while another core idles: with the
 * caller pinned to one allowed CPU and then to another, a helper's task never runs on the
 * caller's CPU and the helper's own affinity is the allowed set less that CPU. A pool with more
 * threads than allowed CPUs is left to the kernel (its helpers keep the whole set). On a
 * machine that allows this process one CPU there is nothing to spread: the pool runs every
 * task, and that is all that is checked. */
struct pool_where {
  atomic_int cpu;        /* where thread 1's task ran */
  atomic_int allowed_n;  /* CPUs in thread 1's affinity */
  atomic_int has_caller; /* whether thread 1's affinity has the caller's CPU */
  int caller_cpu;
  atomic_int ran;
};

static void where_task(void *ctx, int task, int thread) {
  struct pool_where *w = ctx;
  (void)task;
  if (thread == 1) {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    atomic_store(&w->cpu, sched_getcpu());
    atomic_store(&w->allowed_n, CPU_COUNT(&set));
    atomic_store(&w->has_caller, CPU_ISSET(w->caller_cpu, &set) != 0);
  }
  atomic_fetch_add(&w->ran, 1);
}

static void test_pool_spread(void **state) {
  (void)state;
  cpu_set_t allowed, one;
  assert_int_equal(sched_getaffinity(0, sizeof allowed, &allowed), 0);
  const int n = CPU_COUNT(&allowed);
  int cpus[2] = {-1, -1};
  for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
    if (CPU_ISSET(c, &allowed)) cpus[k++] = c;
  ember_pool *pool;
  if (n < 2) {
    assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
    struct pool_where w = {.caller_cpu = cpus[0]};
    ember_pool_run(pool, 2, where_task, &w);
    assert_int_equal(atomic_load(&w.ran), 2);
    ember_pool_destroy(pool);
    return;
  }
  assert_int_equal(ember_pool_create(&pool, 2, NULL), 0);
  for (int round = 0; round < 4; round++) {
    const int caller = cpus[round % 2];
    CPU_ZERO(&one);
    CPU_SET(caller, &one);
    assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof one, &one), 0);
    for (int job = 0; job < 20; job++) {
      struct pool_where w = {.caller_cpu = caller};
      atomic_store(&w.cpu, -1);
      if (job % 2) ember_pool_run(pool, 2, where_task, &w); /* fixed split: task 1 on the helper */
      else ember_pool_run_any(pool, 64, where_task, &w);    /* the helper may take none */
      assert_int_equal(atomic_load(&w.ran), job % 2 ? 2 : 64);
      if (atomic_load(&w.cpu) < 0) continue;
      if (atomic_load(&w.cpu) == caller) fail_msg("round %d, job %d: the helper ran on the caller's CPU %d", round, job, caller);
      assert_int_equal(atomic_load(&w.has_caller), 0);
      assert_int_equal(atomic_load(&w.allowed_n), n - 1);
    }
  }
  ember_pool_destroy(pool);
  assert_int_equal(pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed), 0);
  /* oversubscribed: the helpers keep every allowed CPU */
  assert_int_equal(ember_pool_create(&pool, n + 1, NULL), 0);
  struct pool_where w = {.caller_cpu = cpus[0]};
  ember_pool_run(pool, n + 1, where_task, &w);
  assert_int_equal(atomic_load(&w.ran), n + 1);
  assert_int_equal(atomic_load(&w.allowed_n), n);
  ember_pool_destroy(pool);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pool_spread),
      cmocka_unit_test(test_pool_run_any_counts),
      cmocka_unit_test(test_pool_run_any_takes_over),
      cmocka_unit_test(test_row_quantum_and_block),
      cmocka_unit_test(test_energies_independent_of_count),
      cmocka_unit_test(test_pool_wait),
      cmocka_unit_test(test_energies_independent_of_batch),
      cmocka_unit_test(test_answers_independent_of_batch_and_threads),
  };
  ember_blas_single_thread();
  return cmocka_run_group_tests(tests, NULL, NULL);
}
