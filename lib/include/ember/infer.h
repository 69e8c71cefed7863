/* ember/infer.h - implicit inference with a trained model: argmin_y E(x, y) and its modes.
 *
 * An ember_infer holds everything one caller needs to run a model (per-thread network
 * workspaces, the DFO population, scratch); it grows when a call asks for more samples or
 * queries than before and never allocates inside the optimiser loop. It is not shared
 * between threads: give each server worker its own (and a NULL pool), or give one caller a
 * pool to spread each call's candidates over several threads.
 *
 * Inputs and outputs are in the user's units: x is normalised, y de-normalised, inside.
 * Query i of a call draws from random stream (seed, stream0 + i), so row i of a request
 * gives the same answer alone, in a batch, or with any thread count.
 *
 *     ember_infer *inf;
 *     ember_infer_create(&inf, &model, NULL, &err);
 *     ember_infer_opts o = model.infer;   o.samples = 1024;
 *     ember_infer_predict(inf, x, 1, &o, 42, 0, y, energy, &err);   // x (1, x_dim) -> y (1, y_dim)
 *     ember_infer_destroy(inf);
 *
 * For the explicit baseline (method mse) predict is a forward pass, energies are reported as
 * 0 and modes are the single prediction with mass 1.
 *
 * No call returns NaN or Inf: where an answer (y, an energy, a mode's probability, a
 * population) would not be finite, the call fails with EMBER_ERANGE instead.
 */
#ifndef EMBER_INFER_H
#define EMBER_INFER_H

#include "ember/base.h"
#include "ember/dfo.h"
#include "ember/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_infer ember_infer;

/* The fewest candidate rows (queries x samples or chains) a pool's task is planned with: an
 * energy pass of at most this many rows runs on one thread, pool or not, and a larger one is
 * cut into tasks of at least this many (a query's last piece may be smaller), so a server gains
 * nothing by giving a call of fewer than twice as many more threads. 144 (a multiple of 48)
 * under kernels that round by row position; 32 under the SkylakeX family's, whose pieces may
 * start on any multiple of 16 rows. */
int ember_infer_min_task_rows(void);

/* The model must outlive the ember_infer, and its weights must not change while the context
 * exists: where ember's own hidden-layer kernel runs (ember_net_pack), the context keeps a copy
 * of the hidden layers' weights in that kernel's layout, so after training or editing a model,
 * create a new context. pool may be NULL (single-threaded). */
int ember_infer_create(ember_infer **out, const ember_model *m, ember_pool *pool, ember_err *err);
void ember_infer_destroy(ember_infer *inf);

/* Best y for nq queries. x: (nq, x_dim); y: (nq, y_dim); energy: (nq) or NULL.
 * o == NULL uses the model's defaults. */
int ember_infer_predict(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                        uint64_t seed, uint64_t stream0, float *y, float *energy, ember_err *err);

/* Up to mo->k modes per query, sorted by energy. mode_y: (nq, k, y_dim), mode_e and mode_w:
 * (nq, k), count: (nq) modes found for each query (the rest of its slots are zero). */
int ember_infer_modes(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                      const ember_modes_opts *mo, uint64_t seed, uint64_t stream0, float *mode_y,
                      float *mode_e, float *mode_w, int *count, ember_err *err);

/* The same with a random stream per row: row i draws from (seeds[i], streams[i]). A server
 * batching requests that carry different seeds calls these; each request's answers are then
 * those it would get alone. modes_rows can also return each row's final population, in y
 * units, with its energies: pop_y (nq, samples, y_dim), pop_e (nq, samples), either NULL (an
 * explicit model's population is its one prediction, energy 0). */
int ember_infer_predict_rows(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                             const uint64_t *seeds, const uint64_t *streams, float *y,
                             float *energy, ember_err *err);
int ember_infer_modes_rows(ember_infer *inf, const float *x, int nq, const ember_infer_opts *o,
                           const ember_modes_opts *mo, const uint64_t *seeds,
                           const uint64_t *streams, float *mode_y, float *mode_e, float *mode_w,
                           int *count, float *pop_y, float *pop_e, ember_err *err);

/* Energies of given candidates: x (nq, x_dim), y (nq, n, y_dim) raw units -> e (nq, n).
 * Energy models only. */
int ember_infer_energy(ember_infer *inf, const float *x, int nq, const float *y, int n, float *e,
                       ember_err *err);

/* Lets another thread stop this context's calls: flag is a C11 atomic_int the caller owns (see
 * base.h); once another thread stores non-zero into it, a call stops soon,
 * whatever phase it is in (the flag is read before every network task of at most a few
 * thousand candidate rows, DFO iteration, chain step, polishing or refining step and each
 * query's mode finding), and returns EMBER_ECANCELED, never a partial answer. Raise the flag and leave it raised until the call returns. NULL
 * turns it off. A server raises it when every caller of a batch has gone away. */
void ember_infer_set_cancel(ember_infer *inf, const atomic_int *flag);

/* FLOPs one query of ember_infer_predict costs with options o, refining included (dense
 * layers only; x part once per query). */
double ember_infer_flops(const ember_model *m, const ember_infer_opts *o);
/* The same for one query of ember_infer_modes: the population's passes, mode finding and the
 * polishing of all mo->k slots. */
double ember_infer_modes_flops(const ember_model *m, const ember_infer_opts *o,
                               const ember_modes_opts *mo);

#ifdef __cplusplus
}
#endif
#endif
