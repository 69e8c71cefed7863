/* ember/base.h - error codes, error messages, seeded random streams, a tiny thread pool.
 *
 * Every libember function that can fail returns 0 or a negative EMBER_E* code and, when the
 * caller passes an ember_err, writes a sentence saying what was wrong:
 *
 *     ember_err err;
 *     ember_dataset ds;
 *     if (ember_dataset_read("demo.csv", -1, 1, &ds, &err) < 0)
 *         fprintf(stderr, "ember: %s\n", err.msg);   // "demo.csv:7: expected 3 columns, found 2"
 *
 * Randomness comes from ember_rng (xoshiro256**), seeded from a (seed, stream) pair so that
 * every query row, thread or training step can own an independent, reproducible stream.
 * Nothing in libember calls rand() or keeps global state. Also here: a monotonic clock and the
 * directory fsync that makes an atomic rename durable.
 *
 * Long calls (inference, Langevin chains, polishing) can be stopped from another thread through
 * a cancel flag: a C11 atomic_int that the caller owns, passes by pointer and raises with
 * atomic_store (any memory order). The call notices it at its next check and returns
 * EMBER_ECANCELED; the caller leaves the flag raised until the call has returned.
 */
#ifndef EMBER_BASE_H
#define EMBER_BASE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  EMBER_OK = 0,
  EMBER_EINVAL = -1,   /* bad argument or option */
  EMBER_ENOMEM = -2,   /* allocation failed */
  EMBER_EIO = -3,      /* a file could not be read or written */
  EMBER_EFORMAT = -4,  /* a file's contents are malformed */
  EMBER_ERANGE = -5,   /* a value is out of range (NaN, Inf, too large) */
  EMBER_ENOTSUP = -6,  /* valid but not supported (e.g. a method not built yet) */
  EMBER_ECANCELED = -7, /* a long operation was cancelled by its caller */
  EMBER_ENOSPC = -8     /* a write ran out of space: disk full, quota, or the file size limit */
};

#define EMBER_ERR_MAX 512

typedef struct ember_err {
  int code;
  char msg[EMBER_ERR_MAX];
} ember_err;

/* Name of an error code ("invalid argument", ...). Never NULL. */
const char *ember_strerror(int code);

/* Records code and a printf-style message in err (if not NULL) and returns code, so that
 * failure paths read `return ember_fail(err, EMBER_EINVAL, "x has %d values", n);`. */
int ember_fail(ember_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Whether a cancel flag (NULL: none) is raised. A relaxed load is enough: the flag carries no
 * data (a call that sees it stops and reads nothing the raising thread wrote), and a thread
 * that joins the workers which saw it (ember_pool_run returns) sees it too, by coherence. */
static inline int ember_cancel_requested(const atomic_int *flag) {
  return flag && atomic_load_explicit(flag, memory_order_relaxed) != 0;
}

/* ---- random streams ---------------------------------------------------------------- */

typedef struct ember_rng {
  uint64_t s[4];
} ember_rng;

/* Seeds rng from (seed, stream) through splitmix64; different streams are independent. */
void ember_rng_seed(ember_rng *rng, uint64_t seed, uint64_t stream);
uint64_t ember_rng_u64(ember_rng *rng);
/* Uniform float in [0, 1). */
float ember_rng_uniform(ember_rng *rng);
/* Uniform double in (0, 1]: never 0, safe under log(). */
double ember_rng_uniform_pos(ember_rng *rng);
/* Standard normal (Box-Muller, both values used: pairs are cached in no hidden state, so
 * this draws two uniforms and returns one; use ember_rng_normal_fill for bulk). */
float ember_rng_normal(ember_rng *rng);
/* n standard normals into out. */
void ember_rng_normal_fill(ember_rng *rng, float *out, size_t n);
/* Uniform integer in [0, n). */
uint32_t ember_rng_below(ember_rng *rng, uint32_t n);

/* ---- thread pool ------------------------------------------------------------------- */

/* A fixed set of threads that runs `ntasks` calls of fn(ctx, task, thread) and returns when
 * all are done. thread is in [0, ember_pool_threads(pool)) and identifies a per-thread
 * workspace. A NULL pool runs everything on the calling thread as thread 0. Tasks are handed
 * out in a fixed, deterministic split (task t goes to thread t % threads), so results that
 * depend on which thread computed what are still reproducible for a fixed thread count.
 * On Linux, a pool with no more threads than the CPUs its creator may use keeps its helper
 * threads off the CPU of the thread that starts each job (their affinity: the creator's CPUs
 * less that one, changed when the caller's CPU changes), so that a helper never shares the
 * caller's core while another core idles; a pool with more threads leaves placement to the
 * kernel. */
typedef struct ember_pool ember_pool;
typedef void (*ember_task_fn)(void *ctx, int task, int thread);

/* The most threads a pool may have. */
#define EMBER_MAX_THREADS 1024

int ember_pool_create(ember_pool **out, int threads, ember_err *err);
void ember_pool_destroy(ember_pool *pool);
int ember_pool_threads(const ember_pool *pool);
/* How long a thread of the pool stays awake after a job, polling for the next one, before it
 * sleeps; the caller polls as long for the helpers' end. The first EMBER_POOL_SPIN_US spin;
 * after that a waiting thread calls sched_yield between looks, so another thread that wants
 * its core gets it (the waiting thread still counts as running load). A pass that follows
 * within the wait starts at once; one that follows a sleep waits for the thread to wake (tens
 * of microseconds, and on a virtual machine whose core has gone idle about a millisecond:
 * docs/performance.md). 0 sleeps at once. EMBER_EINVAL outside 0..EMBER_POOL_WAIT_US_MAX; a
 * NULL pool (one thread) has nothing to wait for. */
#define EMBER_POOL_WAIT_US 2000
#define EMBER_POOL_SPIN_US 50
#define EMBER_POOL_WAIT_US_MAX 1000000
int ember_pool_set_wait_us(ember_pool *pool, long us, ember_err *err);
void ember_pool_run(ember_pool *pool, int ntasks, ember_task_fn fn, void *ctx);
/* Like ember_pool_run, but a task goes to whichever thread claims it first, the caller
 * included: when a helper is slow to wake or has lost its core, the caller runs the tasks it
 * has not started instead of waiting for it, and it waits only for tasks a helper began. Use it
 * only where fn's results do not depend on `thread` (a thread's workspace as scratch only). */
void ember_pool_run_any(ember_pool *pool, int ntasks, ember_task_fn fn, void *ctx);

/* Makes OpenBLAS use one thread (ember parallelises above BLAS). Safe to call repeatedly. */
void ember_blas_single_thread(void);

/* The name of the sgemm kernel family OpenBLAS picked for this CPU ("SkylakeX", "Haswell",
 * "Prescott", ...). Never NULL. */
const char *ember_blas_core(void);

/* The row alignment inference needs when several queries share one sgemm call, so that a
 * candidate's energy does not depend on what shares its call: OpenBLAS's Haswell and Zen
 * sgemm kernels (and every family not named below) round a row's products differently by the
 * row's position modulo 12, so queries start on multiples of 12 rows there (12); the SkylakeX
 * family's (SkylakeX, Cooperlake, SapphireRapids) does not (1: no padding rows). For core, a
 * name as ember_blas_core() gives it; ember_blas_row_quantum() is that of the loaded kernels. */
int ember_blas_row_quantum_of(const char *core);
int ember_blas_row_quantum(void);

/* The row block ember_net pads every sgemm call to (with zero rows), so that a row's result
 * does not depend on how many rows share the call: OpenBLAS computes a ragged tail of rows
 * with other instructions than full blocks under the Haswell/Zen kernels (blocks of 12) and
 * every family not named here (48, a multiple of 12 and 16); the SkylakeX family's results do
 * not depend on the row count (16: no padding at multiples of 16). The network also never
 * runs fewer than 2^20 / width^2 rows, below which OpenBLAS switches kernels. */
int ember_blas_row_block_of(const char *core);
int ember_blas_row_block(void);

/* The kernel family this CPU should get when OpenBLAS fell back to a generic one, or NULL when
 * its choice stands. OpenBLAS picks its kernels once, when it is loaded, from the CPU model; a
 * model newer than its tables (Debian's 0.3.21 on Sapphire/Emerald Rapids, for instance) gets
 * the pre-AVX "Prescott" kernels, about 5 times slower than the CPU's own (docs/performance.md).
 * Then this names "SkylakeX" on a CPU with AVX-512 (F, BW, DQ, VL) and "Haswell" on one with
 * AVX2 and FMA. NULL as well when OPENBLAS_CORETYPE is set: the user's choice stands. */
const char *ember_blas_better_core(void);

/* For a program's main(), before anything else: when ember_blas_better_core() names a kernel
 * family, sets OPENBLAS_CORETYPE to it and runs the program again (execv of /proc/self/exe
 * with argv), so that OpenBLAS loads with it; returns only when nothing was to be done or the
 * exec failed (then the program goes on with the generic kernels). The ember CLI and emberd
 * call it; setting OPENBLAS_CORETYPE yourself (even to the generic core) turns it off. */
void ember_blas_reexec_for_cpu(char **argv);

/* When OPENBLAS_CORETYPE, set in the environment, loaded a narrower kernel family than this
 * CPU's widest (anything but the SkylakeX family on a CPU with AVX-512 F, BW, DQ and VL; a
 * pre-AVX2 family on one with AVX2 and FMA), that widest family ("SkylakeX" or "Haswell");
 * else NULL. The variable stands (ember_blas_better_core), but emberd and `ember bench` warn
 * with this (what such a variable cost is measured in docs/performance.md). */
const char *ember_blas_env_narrower(void);

/* fsyncs the directory that holds path ("." for a bare name), which makes a rename or link
 * into it durable: what every writer of a file that others may read while it is replaced does
 * after the rename. 0, or -1 with errno; a file system that cannot sync a directory (EINVAL)
 * counts as done. */
int ember_fsync_dir_of(const char *path);

/* Monotonic clock in seconds. */
double ember_now(void);

#ifdef __cplusplus
}
#endif
#endif
