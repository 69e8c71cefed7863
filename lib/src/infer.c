/* infer.c - running a trained model: DFO argmin, modes, energies, the explicit baseline.
 *
 * A call is cut into groups of queries whose populations fit a row budget; each group is one
 * ember_dfo_run whose energy callback evaluates every candidate of the group at once. The
 * callback splits the rows into tasks of at most EMBER_CHUNK_ROWS (never straddling queries
 * in the middle of a task's hx slice) and hands them to the pool, one network workspace per
 * thread; a task's rows come out the same whichever thread runs it, so the pool gives each
 * task to the first free thread (ember_pool_run_any). x is normalised and its first-layer
 * projection computed once per query (late fusion) before the optimiser starts.
 *
 * Workspaces grow on demand at the start of a call (never inside the optimiser), so the
 * first call with a new size allocates and later ones do not.
 */
#include "ember/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ember/langevin.h"
#include "ember/net.h"

#define EMBER_CHUNK_ROWS 1056  /* rows per network task: ~1 MiB per activation at width 256 (a multiple of 48) */
#define EMBER_TASKS_PER_THREAD 4 /* tasks a pass is cut into per thread under ember's own kernel */
/* a chunk is rounded up to the row block (16 or 48), so the largest stays within a workspace */
_Static_assert(EMBER_CHUNK_ROWS % 48 == 0, "EMBER_CHUNK_ROWS must be a multiple of every row block");
/* OpenBLAS's Haswell/Zen sgemm kernels round a row's products differently by the row's
 * position in the call modulo 12 (its SkylakeX kernels do not). So that a candidate's energy
 * never depends on where its query sits in a batch, every query of a network call starts on a
 * multiple of the loaded kernels' quantum (ember_blas_row_quantum: 12 or 1): pieces of a query
 * start on multiples of the network's row block (ember_blas_row_block: 48, or 16 under the
 * SkylakeX family), and a task whose queries' row count is not a multiple of the
 * quantum lays them out padded to a multiple of it each in one call (the padding rows repeat
 * the query's last candidate and their energies are dropped), rather than one small call per
 * query, which at 64 samples ran the sgemm at about half its speed. With the SkylakeX family's
 * kernels nothing is padded (64 samples padded to 72 rows cost 11% of a batched call).
 * (ember_net pads every call to a multiple of ember_blas_row_block() rows, so no row falls in
 * a ragged tail either.) test_infer checks the CPU's own kernels and the Haswell ones. */
#define EMBER_GROUP_ROWS 65536 /* candidate rows per DFO group */
#define EMBER_ARDFO_MODE_GROUPS 8 /* independent resampling groups of an ardfo population, for modes */

struct ember_infer {
  const ember_model *m;
  ember_pool *pool;
  int threads;
  int quantum;      /* ember_blas_row_quantum() */
  int align;        /* pieces of a query start on multiples of this (ember_blas_row_block()) */
  int min_chunk;    /* ember_infer_min_task_rows() */
  ember_net_ws *ws; /* (threads) */
  float *pad;       /* (threads, EMBER_CHUNK_ROWS * (2 y_dim + 1)): padded y, dE/dy and E */
  ember_dfo_ws dfo;
  ember_langevin_ws lws; /* langevin models' chains */
  float *pop_y, *pop_e;  /* the population of the last group: dfo's or the chains' */
  int cap_q;       /* queries the per-group buffers hold */
  float *xn;       /* (cap_q, x_dim) */
  float *hx;       /* (1 + nar, cap_q, width): the group's fused x, for net then ar[0..nar) */
  int group_q;     /* queries of the group prepare_group last fused */
  float *prefix;   /* ardfo: (cap_prefix) y-prefixes copied contiguous for a prefix net */
  size_t cap_prefix;
  float *out;      /* (cap_q, y_dim) mse outputs / best y normalised */
  ember_rng *rngs; /* (cap_q) */
  int cap_modes;   /* mode slots (cap_q * k) the mode buffers hold */
  float *my, *me, *mw, *pwork;
  float *fscratch; /* (max_samples) */
  int cap_samples;
  const atomic_int *cancel; /* read by the pool's threads too (pass_task) */
  ember_method how; /* whose optimiser the current call runs (ember_optimizer_method) */
  ember_net_packed *packed; /* (1 + nar): net's and ar[0..nar)'s hidden layers, for the kernel */
  /* the pass in progress, read by the tasks */
  const ember_net *pass_net;
  const ember_net_packed *pass_packed;
  const float *pass_hx, *pass_y;
  float *pass_e, *pass_dy;
  int pass_n, pass_nq, pass_chunk, pass_pieces, pass_group;
};

int ember_infer_create(ember_infer **out, const ember_model *m, ember_pool *pool, ember_err *err) {
  *out = NULL;
  ember_infer *inf = calloc(1, sizeof *inf);
  if (!inf) return ember_fail(err, EMBER_ENOMEM, "out of memory creating an inference context");
  inf->m = m;
  inf->how = m->method;
  inf->pool = pool;
  inf->threads = ember_pool_threads(pool);
  inf->quantum = ember_blas_row_quantum();
  inf->align = ember_blas_row_block();
  inf->min_chunk = ember_infer_min_task_rows();
  inf->ws = calloc((size_t)inf->threads, sizeof *inf->ws);
  inf->pad = malloc((size_t)inf->threads * EMBER_CHUNK_ROWS * (2 * (size_t)m->y_dim + 1) * sizeof(float));
  if (!inf->ws || !inf->pad) {
    free(inf->ws);
    free(inf->pad);
    free(inf);
    return ember_fail(err, EMBER_ENOMEM, "out of memory creating an inference context");
  }
  for (int t = 0; t < inf->threads; t++) {
    int rc = ember_net_ws_init(&inf->ws[t], &m->net.shape, EMBER_CHUNK_ROWS, EMBER_CHUNK_ROWS, err);
    if (rc < 0) {
      ember_infer_destroy(inf);
      return rc;
    }
  }
  if (!(inf->packed = calloc(1 + (size_t)m->nar, sizeof *inf->packed))) {
    ember_infer_destroy(inf);
    return ember_fail(err, EMBER_ENOMEM, "out of memory creating an inference context");
  }
  for (int j = 0; j <= m->nar; j++) {
    int rc = ember_net_pack(j == 0 ? &m->net : &m->ar[j - 1], &inf->packed[j], err);
    if (rc < 0) {
      ember_infer_destroy(inf);
      return rc;
    }
  }
  *out = inf;
  return 0;
}

static void free_groups(ember_infer *inf) {
  free(inf->xn);
  free(inf->hx);
  free(inf->prefix);
  inf->prefix = NULL;
  inf->cap_prefix = 0;
  free(inf->out);
  free(inf->rngs);
  inf->xn = inf->hx = inf->out = NULL;
  inf->rngs = NULL;
  inf->cap_q = 0;
}

static void free_modes(ember_infer *inf) {
  free(inf->my);
  free(inf->me);
  free(inf->mw);
  free(inf->pwork);
  inf->my = inf->me = inf->mw = inf->pwork = NULL;
  inf->cap_modes = 0;
}

void ember_infer_set_cancel(ember_infer *inf, const atomic_int *flag) { inf->cancel = flag; }

static int cancelled(const ember_infer *inf, ember_err *err) {
  return ember_cancel_requested(inf->cancel) ? ember_fail(err, EMBER_ECANCELED, "cancelled") : 0;
}

void ember_infer_destroy(ember_infer *inf) {
  if (!inf) return;
  for (int t = 0; t < inf->threads; t++) ember_net_ws_free(&inf->ws[t]);
  free(inf->ws);
  for (int j = 0; inf->packed && j <= inf->m->nar; j++) ember_net_packed_free(&inf->packed[j]);
  free(inf->packed);
  free(inf->pad);
  ember_dfo_ws_free(&inf->dfo);
  ember_langevin_ws_free(&inf->lws);
  free_groups(inf);
  free_modes(inf);
  free(inf->fscratch);
  free(inf);
}

/* Makes room for groups of gq queries of n samples (n = 0: no population). */
static int reserve(ember_infer *inf, int gq, int n, ember_err *err) {
  const ember_model *m = inf->m;
  if (gq > inf->cap_q) {
    free_groups(inf);
    inf->xn = malloc((size_t)gq * m->x_dim * sizeof(float));
    inf->hx = malloc((size_t)gq * (1 + m->nar) * m->net.shape.width * sizeof(float));
    inf->out = malloc((size_t)gq * m->y_dim * sizeof(float));
    inf->rngs = malloc((size_t)gq * sizeof *inf->rngs);
    if (!inf->xn || !inf->hx || !inf->out || !inf->rngs) goto nomem;
    inf->cap_q = gq;
  }
  if (n > 0 && inf->how == EMBER_METHOD_LANGEVIN &&
      (gq > inf->lws.max_queries || n > inf->lws.max_chains)) {
    int mq = gq > inf->lws.max_queries ? gq : inf->lws.max_queries;
    int mc = n > inf->lws.max_chains ? n : inf->lws.max_chains;
    ember_langevin_ws_free(&inf->lws);
    int rc = ember_langevin_ws_init(&inf->lws, mq, mc, m->y_dim, err);
    if (rc < 0) return rc;
  }
  if (n > 0 && (gq > inf->dfo.max_queries || n > inf->dfo.max_samples)) {
    int mq = gq > inf->dfo.max_queries ? gq : inf->dfo.max_queries;
    int ms = n > inf->dfo.max_samples ? n : inf->dfo.max_samples;
    ember_dfo_ws_free(&inf->dfo);
    int rc = ember_dfo_ws_init(&inf->dfo, mq, ms, m->y_dim, err);
    if (rc < 0) return rc;
  }
  size_t pre = m->nar > 0 ? (size_t)gq * n * m->nar : 0; /* longest prefix: nar coordinates */
  if (pre > inf->cap_prefix) {
    free(inf->prefix);
    inf->prefix = malloc(pre * sizeof(float));
    if (!inf->prefix) {
      inf->cap_prefix = 0;
      goto nomem;
    }
    inf->cap_prefix = pre;
  }
  if (n > inf->cap_samples) {
    free(inf->fscratch);
    inf->fscratch = malloc(((size_t)n + (size_t)EMBER_MODES_LINK * m->y_dim) * sizeof(float));
    if (!inf->fscratch) {
      inf->cap_samples = 0;
      goto nomem;
    }
    inf->cap_samples = n;
  }
  return 0;
nomem:
  free_groups(inf);
  return ember_fail(err, EMBER_ENOMEM, "out of memory for %d queries x %d samples", gq, n);
}

static int reserve_modes(ember_infer *inf, int slots, ember_err *err) {
  if (slots <= inf->cap_modes) return 0;
  free_modes(inf);
  int d = inf->m->y_dim;
  inf->my = malloc((size_t)slots * d * sizeof(float));
  inf->me = malloc((size_t)slots * sizeof(float));
  inf->mw = malloc((size_t)slots * sizeof(float));
  inf->pwork = malloc(((size_t)3 * slots * d + 2 * (size_t)slots) * sizeof(float));
  if (!inf->my || !inf->me || !inf->mw || !inf->pwork) {
    free_modes(inf);
    return ember_fail(err, EMBER_ENOMEM, "out of memory for %d modes", slots);
  }
  inf->cap_modes = slots;
  return 0;
}

/* ---- the batched energy pass --------------------------------------------------------- */

int ember_infer_min_task_rows(void) { return ember_blas_row_block() == 16 ? 32 : 144; }

/* Rows a query takes in a network call: its candidates, padded to a multiple of the kernels'
 * quantum when several queries share the call (pass_task) */
static int padded_rows(const ember_infer *inf, int n) { return (n + inf->quantum - 1) / inf->quantum * inf->quantum; }

/* Task layout: a query with more rows than a chunk is cut into `pieces` tasks; otherwise a
 * task takes `pass_group` whole queries. */
static void pass_plan(ember_infer *inf, int nq, int n) {
  long total = (long)nq * n;
  /* Under ember's own kernel a task's rows cost the same however few they are (no weights to
   * pack), so each thread's share is cut in EMBER_TASKS_PER_THREAD and the first free thread
   * takes the next piece (ember_pool_run_any): a thread that loses its core for a while holds
   * up one small task, not half the pass. Under OpenBLAS each task packs the weights again. */
  const long tasks_wanted = (long)inf->threads * (inf->pass_packed->nhidden ? EMBER_TASKS_PER_THREAD : 1);
  const long per_task = (total + tasks_wanted - 1) / tasks_wanted;
  int chunk = per_task > EMBER_CHUNK_ROWS ? EMBER_CHUNK_ROWS
              : per_task < inf->min_chunk ? inf->min_chunk : (int)per_task;
  chunk = (chunk + inf->align - 1) / inf->align * inf->align; /* where pieces start */
  inf->pass_nq = nq;
  inf->pass_n = n;
  inf->pass_chunk = chunk;
  inf->pass_pieces = n >= chunk ? (n + chunk - 1) / chunk : 0;
  if (inf->pass_pieces == 0) {
    /* whole queries per task: as few tasks as a chunk allows, then, where every task keeps at
     * least inf->min_chunk rows, a multiple of the thread count, so the threads finish
     * together */
    const int ps = padded_rows(inf, n);
    int most = chunk / ps;
    if (most > EMBER_CHUNK_ROWS) most = EMBER_CHUNK_ROWS; /* hx rows a workspace holds */
    int tasks = (nq + most - 1) / most;
    int even = (tasks + inf->threads - 1) / inf->threads * inf->threads;
    if (even <= nq && (long)nq * ps / even >= inf->min_chunk) tasks = even;
    inf->pass_group = (nq + tasks - 1) / tasks;
  }
}

static int pass_tasks(const ember_infer *inf) {
  if (inf->pass_pieces > 0) return inf->pass_nq * inf->pass_pieces;
  return (inf->pass_nq + inf->pass_group - 1) / inf->pass_group;
}

static void pass_task(void *ctx, int task, int thread) {
  ember_infer *inf = ctx;
  const ember_net *net = inf->pass_net;
  ember_net_ws *ws = &inf->ws[thread];
  int n = inf->pass_n, d = net->shape.in_y, w = net->shape.width;
  int q0, nq, per;
  size_t row0;
  if (inf->pass_pieces > 0) {
    int q = task / inf->pass_pieces, piece = task % inf->pass_pieces;
    int r0 = piece * inf->pass_chunk;
    q0 = q;
    nq = 1;
    per = n - r0 < inf->pass_chunk ? n - r0 : inf->pass_chunk;
    row0 = (size_t)q * n + r0;
  } else {
    int group = inf->pass_group;
    q0 = task * group;
    nq = inf->pass_nq - q0 < group ? inf->pass_nq - q0 : group;
    per = n;
    row0 = (size_t)q0 * n;
  }
  const float *y = inf->pass_y ? inf->pass_y + row0 * d : NULL;
  float *e = inf->pass_e + row0 * net->shape.out, *dy = inf->pass_dy ? inf->pass_dy + row0 * d : NULL;
  if (ember_cancel_requested(inf->cancel)) { /* skip the work; the call reports EMBER_ECANCELED */
    for (size_t r = 0; r < (size_t)nq * per * net->shape.out; r++) e[r] = INFINITY;
    if (dy) memset(dy, 0, (size_t)nq * per * d * sizeof(float));
    return;
  }
  const float *hx = inf->pass_hx + (size_t)q0 * w;
  float ones[EMBER_CHUNK_ROWS];
  if (dy)
    for (int r = 0; r < EMBER_CHUNK_ROWS; r++) ones[r] = 1.0f;
  if (per % inf->quantum == 0 || nq == 1 || !y || net->shape.out != 1) {
    const int calls = per % inf->quantum != 0 ? nq : 1, cq = nq / calls;
    for (int k = 0; k < calls; k++) {
      size_t r0 = (size_t)k * cq * per;
      const float *yk = y ? y + r0 * d : NULL;
      ember_net_forward_packed(net, inf->pass_packed, ws, hx + (size_t)k * cq * w, yk, cq, per, e + r0 * net->shape.out);
      if (dy) ember_net_backward(net, ws, NULL, yk, cq, per, ones, NULL, dy + r0 * d);
    }
    return;
  }
  /* queries padded to ps rows each, as many per call as a workspace holds */
  const int ps = padded_rows(inf, per);
  const int group = EMBER_CHUNK_ROWS / ps; /* >= 1: here per < EMBER_CHUNK_ROWS */
  const size_t stride = (size_t)EMBER_CHUNK_ROWS * (2 * (size_t)inf->m->y_dim + 1);
  float *py = inf->pad + (size_t)thread * stride;
  float *pdy = py + (size_t)EMBER_CHUNK_ROWS * inf->m->y_dim, *pe = pdy + (size_t)EMBER_CHUNK_ROWS * inf->m->y_dim;
  for (int k = 0; k < nq; k += group) {
    const int g = nq - k < group ? nq - k : group;
    for (int q = 0; q < g; q++) {
      const float *src = y + (size_t)(k + q) * per * d;
      float *dst = py + (size_t)q * ps * d;
      memcpy(dst, src, (size_t)per * d * sizeof(float));
      for (int r = per; r < ps; r++) memcpy(dst + (size_t)r * d, src + (size_t)(per - 1) * d, (size_t)d * sizeof(float));
    }
    ember_net_forward_packed(net, inf->pass_packed, ws, hx + (size_t)k * w, py, g, ps, pe);
    if (dy) ember_net_backward(net, ws, NULL, py, g, ps, ones, NULL, pdy);
    for (int q = 0; q < g; q++) {
      memcpy(e + (size_t)(k + q) * per, pe + (size_t)q * ps, (size_t)per * sizeof(float));
      if (dy) memcpy(dy + (size_t)(k + q) * per * d, pdy + (size_t)q * ps * d, (size_t)per * d * sizeof(float));
    }
  }
}

static void run_pass(ember_infer *inf, int nq, int n, const float *y, float *e, float *dy) {
  inf->pass_net = &inf->m->net;
  inf->pass_packed = &inf->packed[0];
  pass_plan(inf, nq, n);
  inf->pass_hx = inf->hx;
  inf->pass_y = y;
  inf->pass_e = e;
  inf->pass_dy = dy;
  ember_pool_run_any(inf->pool, pass_tasks(inf), pass_task, inf);
}

static void energy_cb(void *ctx, int nq, int n, const float *y, float *e) {
  run_pass(ctx, nq, n, y, e, NULL);
}

static void energy_grad_cb(void *ctx, int nq, int n, const float *y, float *e, float *dy) {
  run_pass(ctx, nq, n, y, e, dy);
}

/* ardfo: E_j on the first j coordinates of each candidate (contiguous copies for the prefix
 * nets; the whole-y net reads y as it is) */
static void prefix_energy_cb(void *ctx, int j, int nq, int n, const float *y, float *e) {
  ember_infer *inf = ctx;
  const ember_model *m = inf->m;
  if (j == m->y_dim) {
    run_pass(inf, nq, n, y, e, NULL);
    return;
  }
  const size_t rows = (size_t)nq * n;
  for (size_t r = 0; r < rows; r++)
    memcpy(inf->prefix + r * j, y + r * m->y_dim, (size_t)j * sizeof(float));
  inf->pass_net = &m->ar[j - 1];
  inf->pass_packed = &inf->packed[j];
  pass_plan(inf, nq, n);
  inf->pass_hx = inf->hx + (size_t)j * inf->group_q * m->net.shape.width;
  inf->pass_y = inf->prefix;
  inf->pass_e = e;
  inf->pass_dy = NULL;
  ember_pool_run_any(inf->pool, pass_tasks(inf), pass_task, inf);
}

/* ---- calls ------------------------------------------------------------------------------ */

static int check_x(const ember_model *m, const float *x, int nq, ember_err *err) {
  if (nq < 1) return ember_fail(err, EMBER_EINVAL, "no input rows");
  return ember_model_check_x(m, x, nq, err);
}

static int group_size(int nq, int n) {
  long g = n > 0 ? EMBER_GROUP_ROWS / n : EMBER_CHUNK_ROWS;
  if (g < 1) g = 1;
  return g < nq ? (int)g : nq;
}

/* normalise x rows [q0, q0+g) and project them into inf->hx */
static void prepare_group(ember_infer *inf, const float *x, int q0, int g) {
  const ember_model *m = inf->m;
  ember_model_norm_x(m, x + (size_t)q0 * m->x_dim, g, inf->xn);
  ember_net_fuse_x(&m->net, inf->xn, g, inf->hx);
  for (int j = 0; j < m->nar; j++)
    ember_net_fuse_x(&m->ar[j], inf->xn, g, inf->hx + (size_t)(j + 1) * g * m->net.shape.width);
  inf->group_q = g;
}

static int predict_mse(ember_infer *inf, const float *x, int nq, float *y, float *energy,
                       ember_err *err) {
  const ember_model *m = inf->m;
  int g = group_size(nq, 0);
  int rc = reserve(inf, g, 0, err);
  if (rc < 0) return rc;
  for (int q0 = 0; q0 < nq; q0 += g) {
    int gq = nq - q0 < g ? nq - q0 : g;
    if ((rc = cancelled(inf, err)) < 0) return rc;
    prepare_group(inf, x, q0, gq);
    run_pass(inf, gq, 1, NULL, inf->out, NULL);
    ember_model_denorm_y(m, inf->out, gq, y + (size_t)q0 * m->y_dim);
    if (energy)
      for (int q = 0; q < gq; q++) energy[q0 + q] = 0.0f;
  }
  return cancelled(inf, err); /* a pass cut short left +inf energies behind */
}

static int begin_call(ember_infer *inf, const float *x, int nq, const ember_infer_opts **o,
                      ember_err *err) {
  const ember_model *m = inf->m;
  if (!*o) *o = &m->infer;
  int rc = check_x(m, x, nq, err);
  if (rc < 0) return rc;
  if ((rc = ember_optimizer_check(m->method, (*o)->optimizer, err)) < 0) return rc;
  inf->how = ember_optimizer_method(m->method, (*o)->optimizer);
  if (m->method != EMBER_METHOD_MSE) {
    rc = ember_infer_opts_check(*o, inf->how == EMBER_METHOD_LANGEVIN, err);
    if (rc < 0) return rc;
  }
  return 0;
}

/* Where each row's random stream comes from: (seed, stream0 + i), or per-row arrays. */
typedef struct row_seeds {
  uint64_t seed, stream0;
  const uint64_t *seeds, *streams;
} row_seeds;

/* The population of one group of queries: DFO, AR-DFO or Langevin chains. for_modes: keep the
 * uniform starting population (dfo and ardfo) and, for ardfo, resample in independent groups. */
static int dfo_group(ember_infer *inf, const float *x, int q0, int gq, const ember_infer_opts *o,
                     const row_seeds *rs, int for_modes, ember_err *err) {
  const ember_model *m = inf->m;
  prepare_group(inf, x, q0, gq);
  for (int q = 0; q < gq; q++) {
    int i = q0 + q;
    ember_rng_seed(&inf->rngs[q], rs->seeds ? rs->seeds[i] : rs->seed,
                   rs->streams ? rs->streams[i] : rs->stream0 + (uint64_t)i);
  }
  if (inf->how == EMBER_METHOD_LANGEVIN) { /* chains from uniform starts; samples = chains */
    inf->pop_y = inf->lws.y;
    inf->pop_e = inf->lws.e;
    ember_langevin_ctl first = {.cancel = inf->cancel}; /* checked before every chain step */
    int rc = ember_langevin_run(&inf->lws, energy_grad_cb, inf, gq, m->y_lo, m->y_hi,
                                &o->langevin, o->samples, &first, inf->rngs, inf->out, NULL, err);
    if (rc < 0 || o->again_steps == 0) return rc;
    if ((rc = cancelled(inf, err)) < 0) return rc;
    /* IBC's optimize_again: the same chains go on at a constant small step */
    ember_langevin_opts again = o->langevin;
    again.schedule = EMBER_SCHEDULE_IBC;
    again.steps = o->again_steps;
    again.step_init = again.step_final = o->again_step;
    ember_langevin_ctl resume = {.resume = 1, .cancel = inf->cancel};
    return ember_langevin_run(&inf->lws, energy_grad_cb, inf, gq, m->y_lo, m->y_hi, &again,
                              o->samples, &resume, inf->rngs, inf->out, NULL, err);
  }
  inf->pop_y = inf->dfo.y;
  inf->pop_e = inf->dfo.e;
  /* ardfo resamples whole candidates once per coordinate and ends on one branch: for modes,
   * independent groups keep the others alive */
  const int ardfo = inf->how == EMBER_METHOD_ARDFO;
  ember_dfo_ctl ctl = {.keep_initial = for_modes,
                       .groups = for_modes && ardfo ? EMBER_ARDFO_MODE_GROUPS : 1,
                       .cancel = inf->cancel};
  if (ardfo)
    return ember_ardfo_run(&inf->dfo, prefix_energy_cb, inf, gq, m->y_lo, m->y_hi, o, &ctl,
                           inf->rngs, inf->out, NULL, err);
  return ember_dfo_run(&inf->dfo, energy_cb, inf, gq, m->y_lo, m->y_hi, o, &ctl, inf->rngs,
                       inf->out, NULL, err);
}

/* Sample-then-refine: each query's `top` lowest-energy candidates (the DFO population or the
 * chains' final states) descend E by gradient steps; the lowest result replaces the answer in
 * inf->out and its energy goes to best_e (gq, or NULL). */
static int refine_group(ember_infer *inf, int gq, int n, int top, const ember_infer_opts *o,
                        float *best_e, ember_err *err) {
  const ember_model *m = inf->m;
  const int d = m->y_dim;
  for (int q = 0; q < gq; q++) {
    const float *eq = inf->pop_e + (size_t)q * n, *yq = inf->pop_y + (size_t)q * n * d;
    float *my = inf->my + (size_t)q * top * d, *me = inf->me + (size_t)q * top;
    int have = 0;
    for (int i = 0; i < n; i++) { /* insertion into the sorted top list: top is small */
      float e = isfinite(eq[i]) ? eq[i] : INFINITY;
      if (have == top && !(e < me[top - 1])) continue;
      int j = have < top ? have++ : top - 1;
      for (; j > 0 && e < me[j - 1]; j--) {
        me[j] = me[j - 1];
        memcpy(my + (size_t)j * d, my + (size_t)(j - 1) * d, (size_t)d * sizeof(float));
      }
      me[j] = e;
      memcpy(my + (size_t)j * d, yq + (size_t)i * d, (size_t)d * sizeof(float));
    }
  }
  int rc = ember_polish(energy_grad_cb, inf, gq, top, d, inf->my, inf->me, m->y_lo, m->y_hi,
                        o->refine_steps, o->refine_lr, inf->pwork, inf->cancel, err);
  if (rc < 0) return rc;
  /* A polished point replaces the population's best only if its energy is lower than that
   * candidate's energy as the population pass computed it: polishing recomputes energies in
   * other rows, which on some BLAS kernels round differently in the last bit, and an unmoved
   * candidate must not come back with a higher energy than it had. */
  for (int q = 0; q < gq; q++) {
    const float *me = inf->me + (size_t)q * top, *eq = inf->pop_e + (size_t)q * n;
    int b = 0, ib = 0;
    for (int j = 1; j < top; j++) b = me[j] < me[b] ? j : b;
    for (int i = 1; i < n; i++) ib = eq[i] < eq[ib] ? i : ib;
    const int polished = me[b] < eq[ib] || !isfinite(eq[ib]);
    const float *src = polished ? inf->my + ((size_t)q * top + b) * d : inf->pop_y + ((size_t)q * n + ib) * d;
    memcpy(inf->out + (size_t)q * d, src, (size_t)d * sizeof(float));
    if (best_e) best_e[q] = polished ? me[b] : eq[ib];
  }
  return 0;
}

static int predict(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                   const row_seeds *rs, float *y, float *energy, ember_err *err) {
  const ember_model *m = inf->m;
  int rc = begin_call(inf, x, nq, &o, err);
  if (rc < 0) return rc;
  if (m->method == EMBER_METHOD_MSE) return predict_mse(inf, x, nq, y, energy, err);
  const int n = o->samples, top = n < EMBER_REFINE_TOP ? n : EMBER_REFINE_TOP;
  int g = group_size(nq, n);
  rc = reserve(inf, g, n, err);
  if (rc == 0 && o->refine_steps > 0) rc = reserve_modes(inf, g * top, err);
  if (rc < 0) return rc;
  for (int q0 = 0; q0 < nq; q0 += g) {
    int gq = nq - q0 < g ? nq - q0 : g;
    rc = dfo_group(inf, x, q0, gq, o, rs, 0, err);
    if (rc < 0) return rc;
    if (o->refine_steps > 0) {
      if ((rc = refine_group(inf, gq, n, top, o, energy ? energy + q0 : NULL, err)) < 0) return rc;
    } else if (energy) {
      for (int q = 0; q < gq; q++) {
        const float *eq = inf->pop_e + (size_t)q * n;
        float best = eq[0];
        for (int i = 1; i < n; i++) best = eq[i] < best ? eq[i] : best;
        energy[q0 + q] = best;
      }
    }
    ember_model_denorm_y(m, inf->out, gq, y + (size_t)q0 * m->y_dim);
  }
  return cancelled(inf, err);
}

/* sorts one query's modes by energy and merges any that polishing brought together */
static int tidy_modes(float *my, float *me, float *mw, int count, int d, float radius) {
  for (int i = 1; i < count; i++) /* insertion sort: count is small */
    for (int j = i; j > 0 && me[j] < me[j - 1]; j--) {
      float t = me[j]; me[j] = me[j - 1]; me[j - 1] = t;
      t = mw[j]; mw[j] = mw[j - 1]; mw[j - 1] = t;
      for (int k = 0; k < d; k++) {
        t = my[j * d + k]; my[j * d + k] = my[(j - 1) * d + k]; my[(j - 1) * d + k] = t;
      }
    }
  int out = 0;
  const float r2 = 0.25f * radius * radius;
  for (int i = 0; i < count; i++) {
    int dup = -1;
    for (int j = 0; j < out && dup < 0; j++) {
      float s = 0.0f;
      for (int k = 0; k < d; k++) s += (my[i * d + k] - my[j * d + k]) * (my[i * d + k] - my[j * d + k]);
      if (s <= r2) dup = j;
    }
    if (dup >= 0) {
      mw[dup] += mw[i];
      continue;
    }
    if (out != i) {
      memcpy(my + out * d, my + i * d, (size_t)d * sizeof(float));
      me[out] = me[i];
      mw[out] = mw[i];
    }
    out++;
  }
  return out;
}

static int modes(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                 const ember_modes_opts *mo, const row_seeds *rs, float *mode_y, float *mode_e,
                 float *mode_w, int *count, float *pop_y, float *pop_e, ember_err *err) {
  const ember_model *m = inf->m;
  const int d = m->y_dim, k = mo->k;
  int rc = begin_call(inf, x, nq, &o, err);
  if (rc < 0) return rc;
  rc = ember_modes_opts_check(mo, err);
  if (rc < 0) return rc;
  memset(mode_y, 0, (size_t)nq * k * d * sizeof(float));
  memset(mode_e, 0, (size_t)nq * k * sizeof(float));
  memset(mode_w, 0, (size_t)nq * k * sizeof(float));
  if (m->method == EMBER_METHOD_MSE) {
    float *y1 = malloc((size_t)nq * d * sizeof(float));
    if (!y1) return ember_fail(err, EMBER_ENOMEM, "out of memory for %d predictions", nq);
    rc = predict_mse(inf, x, nq, y1, NULL, err);
    for (int q = 0; rc == 0 && q < nq; q++) {
      memcpy(mode_y + (size_t)q * k * d, y1 + (size_t)q * d, (size_t)d * sizeof(float));
      mode_w[(size_t)q * k] = 1.0f;
      count[q] = 1;
      if (pop_y) memcpy(pop_y + (size_t)q * d, y1 + (size_t)q * d, (size_t)d * sizeof(float));
      if (pop_e) pop_e[q] = 0.0f;
    }
    free(y1);
    return rc;
  }
  const int n = o->samples;
  int g = group_size(nq, n);
  rc = reserve(inf, g, n, err);
  if (rc == 0) rc = reserve_modes(inf, g * k, err);
  if (rc < 0) return rc;
  for (int q0 = 0; q0 < nq; q0 += g) {
    int gq = nq - q0 < g ? nq - q0 : g;
    rc = dfo_group(inf, x, q0, gq, o, rs, 1, err);
    if (rc < 0) return rc;
    if (pop_y) ember_model_denorm_y(m, inf->pop_y, gq * n, pop_y + (size_t)q0 * n * d);
    if (pop_e) memcpy(pop_e + (size_t)q0 * n, inf->pop_e, (size_t)gq * n * sizeof(float));
    const int dfo = inf->how != EMBER_METHOD_LANGEVIN; /* chains keep no uniform population */
    for (int q = 0; q < gq; q++) {
      if ((rc = cancelled(inf, err)) < 0) return rc;
      int c = ember_modes_find(inf->pop_y + (size_t)q * n * d, inf->pop_e + (size_t)q * n, n,
                               dfo ? inf->dfo.y0 + (size_t)q * n * d : NULL,
                               dfo ? inf->dfo.e0 + (size_t)q * n : NULL, dfo ? n : 0, d,
                               o->temperature, mo, inf->fscratch,
                               inf->my + (size_t)q * k * d, inf->me + (size_t)q * k,
                               inf->mw + (size_t)q * k);
      for (int j = c; j < k; j++) { /* pad with copies so polishing sees k points per query */
        memcpy(inf->my + ((size_t)q * k + j) * d, inf->my + (size_t)q * k * d, (size_t)d * sizeof(float));
        inf->me[(size_t)q * k + j] = inf->me[(size_t)q * k];
        inf->mw[(size_t)q * k + j] = 0.0f;
      }
      count[q0 + q] = c;
    }
    rc = ember_polish(energy_grad_cb, inf, gq, k, d, inf->my, inf->me, m->y_lo, m->y_hi,
                      mo->polish_steps, mo->polish_lr, inf->pwork, inf->cancel, err);
    if (rc < 0) return rc;
    for (int q = 0; q < gq; q++) {
      float *my = inf->my + (size_t)q * k * d, *me = inf->me + (size_t)q * k, *mw = inf->mw + (size_t)q * k;
      int c = tidy_modes(my, me, mw, count[q0 + q], d, mo->radius);
      count[q0 + q] = c;
      ember_model_denorm_y(m, my, c, mode_y + (size_t)(q0 + q) * k * d);
      memcpy(mode_e + (size_t)(q0 + q) * k, me, (size_t)c * sizeof(float));
      memcpy(mode_w + (size_t)(q0 + q) * k, mw, (size_t)c * sizeof(float));
    }
  }
  return cancelled(inf, err);
}

/* Never a non-finite answer. The loader refuses a model that overflows at its data's centre,
 * but one can still overflow for some x (huge weights on x's columns): a NaN or Inf in y, an
 * energy, a probability or a population fails the call instead of looking like an answer. */
static int all_finite(const float *v, size_t n, const char *what, ember_err *err) {
  for (size_t i = 0; v && i < n; i++)
    if (!isfinite(v[i]))
      return ember_fail(err, EMBER_ERANGE,
                        "the model's answer is not finite (%s %g): its network overflows float32 "
                        "for this x",
                        what, (double)v[i]);
  return 0;
}

static int predict_finite(const ember_infer *inf, int nq, const float *y, const float *energy,
                          ember_err *err) {
  int rc = all_finite(y, (size_t)nq * inf->m->y_dim, "y", err);
  return rc < 0 ? rc : all_finite(energy, (size_t)nq, "energy", err);
}

static int modes_finite(const ember_infer *inf, int nq, const ember_infer_opts *o,
                        const ember_modes_opts *mo, const float *mode_y, const float *mode_e,
                        const float *mode_w, const float *pop_y, const float *pop_e,
                        ember_err *err) {
  const ember_model *m = inf->m;
  const size_t q = (size_t)nq, k = (size_t)mo->k, d = (size_t)m->y_dim,
               n = m->method == EMBER_METHOD_MSE ? 1 : (size_t)(o ? o : &m->infer)->samples;
  int rc = all_finite(mode_y, q * k * d, "mode y", err);
  if (rc == 0) rc = all_finite(mode_e, q * k, "mode energy", err);
  if (rc == 0) rc = all_finite(mode_w, q * k, "mode probability", err);
  if (rc == 0) rc = all_finite(pop_y, q * n * d, "population y", err);
  if (rc == 0) rc = all_finite(pop_e, q * n, "population energy", err);
  return rc;
}

int ember_infer_predict(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                        uint64_t seed, uint64_t stream0, float *y, float *energy, ember_err *err) {
  row_seeds rs = {seed, stream0, NULL, NULL};
  int rc = predict(inf, x, nq, o, &rs, y, energy, err);
  return rc < 0 ? rc : predict_finite(inf, nq, y, energy, err);
}

int ember_infer_predict_rows(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                             const uint64_t *seeds, const uint64_t *streams, float *y,
                             float *energy, ember_err *err) {
  row_seeds rs = {0, 0, seeds, streams};
  int rc = predict(inf, x, nq, o, &rs, y, energy, err);
  return rc < 0 ? rc : predict_finite(inf, nq, y, energy, err);
}

int ember_infer_modes(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                      const ember_modes_opts *mo, uint64_t seed, uint64_t stream0, float *mode_y,
                      float *mode_e, float *mode_w, int *count, ember_err *err) {
  row_seeds rs = {seed, stream0, NULL, NULL};
  int rc = modes(inf, x, nq, o, mo, &rs, mode_y, mode_e, mode_w, count, NULL, NULL, err);
  return rc < 0 ? rc : modes_finite(inf, nq, o, mo, mode_y, mode_e, mode_w, NULL, NULL, err);
}

int ember_infer_modes_rows(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                           const ember_modes_opts *mo, const uint64_t *seeds,
                           const uint64_t *streams, float *mode_y, float *mode_e, float *mode_w,
                           int *count, float *pop_y, float *pop_e, ember_err *err) {
  row_seeds rs = {0, 0, seeds, streams};
  int rc = modes(inf, x, nq, o, mo, &rs, mode_y, mode_e, mode_w, count, pop_y, pop_e, err);
  return rc < 0 ? rc : modes_finite(inf, nq, o, mo, mode_y, mode_e, mode_w, pop_y, pop_e, err);
}

int ember_infer_energy(ember_infer *inf, const float *x, int nq, const float *y, int n, float *e,
                       ember_err *err) {
  const ember_model *m = inf->m;
  if (m->method == EMBER_METHOD_MSE)
    return ember_fail(err, EMBER_EINVAL, "an explicit (mse) model has no energy");
  int rc = check_x(m, x, nq, err);
  if (rc < 0) return rc;
  if (n < 1) return ember_fail(err, EMBER_EINVAL, "no candidates");
  int g = group_size(nq, n);
  rc = reserve(inf, g, n, err);
  if (rc < 0) return rc;
  const int d = m->y_dim;
  for (int q0 = 0; q0 < nq; q0 += g) {
    int gq = nq - q0 < g ? nq - q0 : g;
    if ((rc = cancelled(inf, err)) < 0) return rc;
    prepare_group(inf, x, q0, gq);
    ember_model_norm_y(m, y + (size_t)q0 * n * d, gq * n, inf->dfo.y);
    run_pass(inf, gq, n, inf->dfo.y, e + (size_t)q0 * n, NULL);
  }
  return cancelled(inf, err);
}

/* gradient descent of `points` points for `steps` steps: a forward and an input backward pass
 * per point and step, and one more for the starting energies (ember_polish) */
static double descent_flops(double row, int points, int steps) {
  return steps > 0 ? 2.0 * row * points * (steps + 1) : 0.0;
}

double ember_infer_flops(const ember_model *m, const ember_infer_opts *o) {
  double row = 2.0 * ember_net_row_macs(&m->net.shape);
  if (m->method == EMBER_METHOD_MSE) return row;
  const ember_method how = ember_optimizer_method(m->method, o->optimizer);
  double flops;
  if (how == EMBER_METHOD_LANGEVIN) /* forward + input backward per chain step, + final */
    flops = 2.0 * row * (double)o->samples *
            (o->langevin.steps + 1 + (o->again_steps ? o->again_steps + 1 : 0));
  else if (how == EMBER_METHOD_ARDFO) { /* iters passes of every prefix net */
    double all = row;
    for (int j = 0; j < m->nar; j++) all += 2.0 * ember_net_row_macs(&m->ar[j].shape);
    flops = all * (double)o->samples * o->iters;
  } else
    flops = row * (double)o->samples * o->iters;
  int top = o->samples < EMBER_REFINE_TOP ? o->samples : EMBER_REFINE_TOP;
  return flops + descent_flops(row, top, o->refine_steps);
}

double ember_infer_modes_flops(const ember_model *m, const ember_infer_opts *o,
                               const ember_modes_opts *mo) {
  ember_infer_opts sample = *o;
  sample.refine_steps = 0; /* modes do not refine */
  double flops = ember_infer_flops(m, &sample);
  if (m->method == EMBER_METHOD_MSE) return flops;
  const double row = 2.0 * ember_net_row_macs(&m->net.shape);
  const ember_method how = ember_optimizer_method(m->method, o->optimizer);
  const int n = o->samples, n0 = how == EMBER_METHOD_LANGEVIN ? 0 : n;
  if (how == EMBER_METHOD_ARDFO) flops += row * n; /* the uniform population's E_ydim */
  /* every one of the k slots is polished, found or padded (modes()) */
  return flops + ember_modes_find_flops(n, n0, m->y_dim) + descent_flops(row, mo->k, mo->polish_steps);
}
