/* cmd_bench.c - `ember bench infer|train`: speed on random networks of a given shape.
 * (`ember bench serve`, load on an emberd server, lives in remote_bench.c.)
 *
 * One line per configuration, key=value, so scripts and people can both read it. Each line
 * carries the sgemm peak measured in the same run with the same thread count (every thread
 * running its own single-threaded sgemm, best of several shapes and rounds), so efficiency
 * is judged against what this machine can do right now, not against a datasheet.
 * List-valued options (--threads 1,2 --samples 64,1024) run every combination.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

#include <cblas.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/encoder.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "ember/train.h"

/* ---- sgemm peak ----------------------------------------------------------------------- */

typedef struct peak_ctx {
  int m, n, k, reps;
  float **a, **b, **c;
} peak_ctx;

static void peak_task(void *ctx, int task, int thread) {
  peak_ctx *p = ctx;
  (void)thread;
  for (int r = 0; r < p->reps; r++)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, p->m, p->n, p->k, 1.0f, p->a[task], p->k,
                p->b[task], p->k, 0.0f, p->c[task], p->n);
}

double cli_sgemm_peak(ember_pool *pool, int threads) {
  static const int shapes[][3] = {{1024, 256, 256}, {512, 512, 512}, {1024, 1024, 1024}};
  double best = 0.0;
  float **bufs = calloc((size_t)threads * 3, sizeof *bufs);
  if (!bufs) return 0.0;
  size_t maxel = 1024 * 1024;
  for (int i = 0; i < threads * 3; i++) {
    bufs[i] = malloc(maxel * sizeof(float));
    if (!bufs[i]) goto done;
    for (size_t j = 0; j < maxel; j++) bufs[i][j] = (float)((j * 7 + (size_t)i) % 13) * 0.01f;
  }
  for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
    peak_ctx p = {shapes[s][0], shapes[s][1], shapes[s][2], 1, bufs, bufs + threads, bufs + 2 * threads};
    double flops = 2.0 * p.m * p.n * p.k;
    p.reps = (int)(0.05e9 * 2.0 / flops * 40) + 1; /* ~40 ms per round at 100 GFLOP/s */
    ember_pool_run(pool, threads, peak_task, &p); /* warm up */
    for (int round = 0; round < 4; round++) {
      double t0 = ember_now();
      ember_pool_run(pool, threads, peak_task, &p);
      double g = flops * p.reps * threads / (ember_now() - t0) / 1e9;
      if (g > best) best = g;
    }
  }
done:
  for (int i = 0; i < threads * 3; i++) free(bufs[i]);
  free(bufs);
  return best;
}

static int usage_error(const char *what, const char *msg) {
  fprintf(stderr, "ember bench %s: %s\n", what, msg);
  return 2;
}

/* --image HxWxC with --conv and --head as an encoder shape (extra 0) into *es; 1 when there
 * is no --image (a vector model), 0 when there is, -1 after saying why. */
static int bench_image(const char *bench, const char *image, const char *conv, const char *head,
                       ember_encoder_shape *es) {
  ember_err err;
  memset(es, 0, sizeof *es);
  if (!image) return 1;
  char tail;
  if (sscanf(image, "%dx%dx%d%c", &es->h, &es->w, &es->c, &tail) != 3) {
    fprintf(stderr, "ember bench %s: --image must be HxWxC (e.g. 64x64x3), got \"%s\"\n", bench, image);
    return -1;
  }
  if (ember_head_parse(head, &es->head) < 0) {
    fprintf(stderr, "ember bench %s: --head must be softargmax or pool\n", bench);
    return -1;
  }
  if (ember_conv_spec_parse(conv, es, &err) < 0 || ember_encoder_shape_check(es, &err) < 0) {
    fprintf(stderr, "ember bench %s: %s\n", bench, err.msg);
    return -1;
  }
  return 0;
}

int cli_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

double cli_percentile(const double *sorted, int n, double q) {
  int i = (int)(q * (n - 1) + 0.5);
  return sorted[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

struct timespec cli_timespec_at(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  return ts;
}

void cli_sleep_until(double at) {
  static _Thread_local int slack_set; /* the timer slack is the calling thread's */
  if (!slack_set) slack_set = prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL) == 0; /* wake on time, not 50 us late */
  const struct timespec ts = cli_timespec_at(at);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {}
}

/* ---- bench infer ------------------------------------------------------------------------ */

static int bench_infer(int argc, char **argv) {
  int x_dim = 8, y_dim = 2, depth = 2, iters = 3, reps = 200, warmup = 20, rate = 0;
  const char *arch = "resnet", *method = "dfo";
  uint64_t seed = 1;
  int_list widths = {1, {256}}, samples = {1, {1024}}, queries = {1, {1}};
  int_list threads = {1, {cli_default_threads()}};
  const char *image = NULL, *conv = EMBER_ENCODER_DEFAULT_CONV, *head = "softargmax";
  opt_spec specs[] = {
      {"method", OPT_STR, &method, "M", "dfo, ardfo or langevin (samples = chains, default chain)", 0, 0},
      {"image", OPT_STR, &image, "HxWxC", "an image model: each query is a random HxWxC image, encoded (timed on its own, encode_p50_ms) and then optimised; x is the encoder's features (--x-dim unused)", 0, 0},
      {"conv", OPT_STR, &conv, "C:K:S[:P],...", "with --image: the encoder's convolutions (as ember train --conv)", 0, 0},
      {"head", OPT_STR, &head, "H", "with --image: softargmax or pool", 0, 0},
      {"x-dim", OPT_INT, &x_dim, NULL, "x dimensions", 0, 0},
      {"y-dim", OPT_INT, &y_dim, NULL, "y dimensions", 0, 0},
      {"arch", OPT_STR, &arch, "A", "resnet or mlp", 0, 0},
      {"width", OPT_LIST, &widths, NULL, "hidden width(s)", 0, 0},
      {"depth", OPT_INT, &depth, NULL, "hidden dense layers", 0, 0},
      {"samples", OPT_LIST, &samples, NULL, "DFO samples per query", 0, 0},
      {"iters", OPT_INT, &iters, NULL, "DFO iterations", 0, 0},
      {"queries", OPT_LIST, &queries, NULL, "queries per call (batched together)", 0, 0},
      {"threads", OPT_LIST, &threads, NULL, "threads (default: online CPUs)", 0, 1},
      {"reps", OPT_INT, &reps, NULL, "timed calls per configuration", 0, 0},
      {"warmup", OPT_INT, &warmup, NULL, "untimed calls first", 0, 0},
      {"rate", OPT_INT, &rate, "R", "open loop: the timed calls start at R per second, each one's latency from when it was due (default: back to back)", 0, 0},
      {"seed", OPT_U64, &seed, NULL, "random seed for weights and inputs", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("bench infer", "[options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  ember_arch a;
  if (ember_arch_parse(arch, &a) < 0) return usage_error("infer", "--arch must be resnet or mlp");
  ember_method meth;
  if (ember_method_parse(method, &meth) < 0 || meth == EMBER_METHOD_MSE)
    return usage_error("infer", "--method must be dfo, ardfo or langevin");
  ember_encoder_shape es;
  int vec = bench_image("infer", image, conv, head, &es);
  if (vec < 0) return 2;
  if (!vec && meth == EMBER_METHOD_ARDFO) return usage_error("infer", "image models are dfo or langevin");
  if (!vec) x_dim = ember_encoder_features(&es);
  if (reps < 1) return usage_error("infer", "--reps must be >= 1");
  if (warmup < 0) return usage_error("infer", "--warmup must be >= 0");
  if (rate < 0) return usage_error("infer", "--rate must be >= 1 call per second (or 0: back to back)");
  for (int i = 0; i < queries.n; i++)
    if (queries.v[i] < 1) return usage_error("infer", "--queries must be >= 1");
  ember_err err;
  for (int i = 0; i < samples.n; i++) {
    ember_infer_opts chk = EMBER_INFER_DEFAULTS;
    chk.samples = samples.v[i];
    chk.iters = iters;
    if (ember_infer_opts_check(&chk, 0, &err) < 0) return usage_error("infer", err.msg);
  }
  for (int ti = 0; ti < threads.n; ti++) {
    ember_pool *pool;
    if (cli_pool("bench infer", threads.v[ti], &pool) < 0) return 2;
    double peak = cli_sgemm_peak(pool, threads.v[ti]);
    for (int wi = 0; wi < widths.n; wi++)
      for (int si = 0; si < samples.n; si++)
        for (int qi = 0; qi < queries.n; qi++) {
          ember_model m;
          ember_infer *inf = NULL;
          int nq = queries.v[qi];
          float *x = NULL, *y = NULL;
          double *times = NULL, *etimes = NULL;
          uint8_t *img = NULL;
          ember_encoder_ws ews = {0};
          if (ember_model_init(&m, meth, x_dim, y_dim, a, widths.v[wi], depth, &err) < 0 ||
              (!vec && ember_model_set_encoder(&m, &es, &err) < 0)) {
            fprintf(stderr, "ember bench infer: %s\n", err.msg);
            ember_pool_destroy(pool);
            return 2;
          }
          ember_rng rng;
          ember_rng_seed(&rng, seed, 0);
          ember_net_init_params(&m.net, &rng);
          for (int j = 0; j < m.nar; j++) ember_net_init_params(&m.ar[j], &rng);
          if (m.enc) ember_encoder_init_params(m.enc, &rng);
          ember_infer_opts o = EMBER_INFER_DEFAULTS;
          o.samples = samples.v[si];
          o.iters = iters;
          x = malloc((size_t)(nq > 0 ? nq : 1) * x_dim * sizeof(float));
          y = malloc((size_t)(nq > 0 ? nq : 1) * y_dim * sizeof(float));
          times = malloc((size_t)reps * sizeof(double));
          etimes = calloc((size_t)reps, sizeof(double));
          rc = !x || !y || !times || !etimes ? ember_fail(&err, EMBER_ENOMEM, "out of memory") : 0;
          if (rc == 0 && m.enc) { /* random pixels, the encoder's workspace for nq images */
            size_t ib = ember_encoder_image_bytes(&es) * (size_t)nq;
            rc = (img = malloc(ib)) ? ember_encoder_ws_init(&ews, &es, nq, &err)
                                    : ember_fail(&err, EMBER_ENOMEM, "out of memory for images");
            for (size_t i = 0; rc == 0 && i < ib; i++) img[i] = (uint8_t)(ember_rng_u64(&rng) >> 56);
          }
          if (rc == 0) rc = ember_infer_create(&inf, &m, pool, &err);
          for (int i = 0; rc == 0 && i < nq * x_dim; i++) x[i] = ember_rng_normal(&rng);
          double start = 0.0, end = 0.0;
          for (int r = 0; rc == 0 && r < warmup + reps; r++) { /* an image query: encode, then search */
            if (r == warmup) start = ember_now();
            double t0 = ember_now();
            if (rate > 0 && r >= warmup) cli_sleep_until(t0 = start + (r - warmup) / (double)rate);
            if (m.enc) ember_model_encode(&m, &ews, img, NULL, nq, x);
            double t1 = ember_now();
            rc = ember_infer_predict(inf, x, nq, &o, seed + (uint64_t)r, 0, y, NULL, &err);
            end = ember_now();
            if (r >= warmup) times[r - warmup] = end - t0, etimes[r - warmup] = t1 - t0;
          }
          if (rc == 0) {
            qsort(times, (size_t)reps, sizeof *times, cli_cmp_double);
            qsort(etimes, (size_t)reps, sizeof *etimes, cli_cmp_double);
            double p50 = cli_percentile(times, reps, 0.5);
            double flops = ember_infer_flops(&m, &o) * nq;
            char enc[160] = "";
            if (m.enc)
              snprintf(enc, sizeof enc, "image=%dx%dx%d conv=%s head=%s encode_p50_ms=%.3f ", es.h, es.w, es.c,
                       conv, head, cli_percentile(etimes, reps, 0.5) * 1e3);
            char open[48] = "";
            if (rate > 0) snprintf(open, sizeof open, "rate=%d ", rate);
            /* queries_per_s: back to back, what one call's p50 allows; open loop, what was served */
            double qps = rate > 0 ? (double)nq * reps / (end - start) : nq / p50;
            printf("infer method=%s arch=%s width=%d depth=%d x_dim=%d y_dim=%d samples=%d iters=%d queries=%d "
                   "threads=%d %s%sp50_ms=%.3f p90_ms=%.3f p99_ms=%.3f queries_per_s=%.1f gflops=%.1f "
                   "sgemm_peak_gflops=%.1f efficiency=%.0f%% blas=%s\n",
                   method, arch, widths.v[wi], depth, x_dim, y_dim, o.samples, iters, nq, threads.v[ti], open, enc,
                   p50 * 1e3, cli_percentile(times, reps, 0.9) * 1e3, cli_percentile(times, reps, 0.99) * 1e3,
                   qps, flops / p50 / 1e9, peak, 100.0 * flops / p50 / 1e9 / peak, ember_blas_core());
            fflush(stdout);
          } else {
            fprintf(stderr, "ember bench infer: %s\n", err.msg);
          }
          ember_infer_destroy(inf);
          ember_model_free(&m);
          if (img) ember_encoder_ws_free(&ews);
          free(img);
          free(x);
          free(y);
          free(times);
          free(etimes);
          if (rc != 0) {
            ember_pool_destroy(pool);
            return 1;
          }
        }
    ember_pool_destroy(pool);
  }
  return 0;
}

/* ---- bench train ------------------------------------------------------------------------ */

static int bench_train(int argc, char **argv) {
  ember_train_opts o;
  ember_train_opts_default(&o);
  int x_dim = 8, y_dim = 2, steps = 10, warmup = 2, rows = 4096;
  const char *arch = "resnet", *method = "dfo";
  int_list threads = {1, {cli_default_threads()}};
  const char *image = NULL, *conv = EMBER_ENCODER_DEFAULT_CONV, *head = "softargmax";
  opt_spec specs[] = {
      {"method", OPT_STR, &method, "M", "dfo, ardfo, langevin or mse", 0, 0},
      {"image", OPT_STR, &image, "HxWxC", "an image model on random HxWxC images (--x-dim unused); images_per_s = batch x steps/s", 0, 0},
      {"conv", OPT_STR, &conv, "C:K:S[:P],...", "with --image: the encoder's convolutions (as ember train --conv)", 0, 0},
      {"head", OPT_STR, &head, "H", "with --image: softargmax or pool", 0, 0},
      {"x-dim", OPT_INT, &x_dim, NULL, "x dimensions", 0, 0},
      {"y-dim", OPT_INT, &y_dim, NULL, "y dimensions", 0, 0},
      {"arch", OPT_STR, &arch, "A", "resnet or mlp", 0, 0},
      {"width", OPT_INT, &o.width, NULL, "hidden width", 0, 0},
      {"depth", OPT_INT, &o.depth, NULL, "hidden dense layers", 0, 0},
      {"batch", OPT_INT, &o.batch, NULL, "examples per step", 0, 0},
      {"negatives", OPT_INT, &o.negatives, NULL, "counter-examples per example", 0, 0},
      {"rows", OPT_INT, &rows, NULL, "rows of the random dataset", 0, 0},
      {"steps", OPT_INT, &steps, NULL, "timed steps", 0, 0},
      {"warmup", OPT_INT, &warmup, NULL, "untimed steps first", 0, 0},
      {"threads", OPT_LIST, &threads, NULL, "threads (default: online CPUs)", 0, 1},
      {"seed", OPT_U64, &o.seed, NULL, "random seed", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("bench train", "[options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  ember_err err;
  if (ember_arch_parse(arch, &o.arch) < 0) return usage_error("train", "--arch must be resnet or mlp");
  if (ember_method_parse(method, &o.method) < 0) return usage_error("train", "--method must be dfo, ardfo, langevin or mse");
  if (steps < 1) return usage_error("train", "--steps must be >= 1");
  if (warmup < 0) return usage_error("train", "--warmup must be >= 0");
  if (rows < 1) return usage_error("train", "--rows must be >= 1");
  if (x_dim < 1 || y_dim < 1) return usage_error("train", "--x-dim and --y-dim must be >= 1");
  ember_encoder_shape es;
  int vec = bench_image("train", image, conv, head, &es);
  if (vec < 0) return 2;
  if (!vec && o.method == EMBER_METHOD_ARDFO) return usage_error("train", "image models are dfo, langevin or mse");
  if (!vec) x_dim = 0; /* the dataset's x: the extras, none */
  if (ember_train_opts_check(&o, &err) < 0) {
    fprintf(stderr, "ember bench train: %s\n", err.msg);
    return 2;
  }
  ember_dataset ds = {.n = rows, .x_dim = x_dim, .y_dim = y_dim,
                      .x = x_dim ? malloc((size_t)rows * x_dim * sizeof(float)) : NULL,
                      .y = malloc((size_t)rows * y_dim * sizeof(float))};
  if (!vec) {
    ds.img_h = es.h, ds.img_w = es.w, ds.img_c = es.c;
    ds.img = malloc(ember_encoder_image_bytes(&es) * (size_t)rows);
  }
  if ((x_dim && !ds.x) || !ds.y || (!vec && !ds.img)) {
    fprintf(stderr, "ember bench train: out of memory\n");
    ember_dataset_free(&ds);
    return 1;
  }
  ember_rng rng;
  ember_rng_seed(&rng, o.seed, 0);
  for (size_t i = 0; i < (size_t)rows * x_dim; i++) ds.x[i] = ember_rng_normal(&rng);
  for (size_t i = 0; i < (size_t)rows * y_dim; i++) ds.y[i] = 2.0f * ember_rng_uniform(&rng) - 1.0f;
  for (size_t i = 0; !vec && i < ember_encoder_image_bytes(&es) * (size_t)rows; i++)
    ds.img[i] = (uint8_t)(ember_rng_u64(&rng) >> 56);
  rc = 0;
  for (int ti = 0; ti < threads.n && rc == 0; ti++) {
    ember_pool *pool;
    if (cli_pool("bench train", threads.v[ti], &pool) < 0) {
      rc = 2;
      break;
    }
    double peak = cli_sgemm_peak(pool, threads.v[ti]);
    ember_model m;
    ember_trainer *t = NULL;
    rc = ember_model_init(&m, o.method, vec ? x_dim : ember_encoder_features(&es), y_dim, o.arch, o.width,
                          o.depth, &err);
    if (rc == 0 && !vec) rc = ember_model_set_encoder(&m, &es, &err);
    if (rc == 0) {
      ember_train_fit_stats(&m, &ds, o.bound_margin);
      ember_net_init_params(&m.net, &rng);
      for (int j = 0; j < m.nar; j++) ember_net_init_params(&m.ar[j], &rng);
      if (m.enc) ember_encoder_init_params(m.enc, &rng);
      rc = ember_trainer_create(&t, &m, &ds, &o, pool, &err);
    }
    float loss = 0.0f;
    for (int s = 0; rc == 0 && s < warmup; s++) ember_trainer_step(t, &loss);
    double t0 = ember_now();
    for (int s = 0; rc == 0 && s < steps; s++) ember_trainer_step(t, &loss);
    double dt = ember_now() - t0;
    if (rc == 0) {
      double sps = steps / dt;
      double pairs = (double)o.batch * (o.method == EMBER_METHOD_MSE ? 1 : o.negatives + 1);
      double gflops = ember_train_step_flops(&m, &o) * sps / 1e9;
      char enc[160] = "";
      if (m.enc)
        snprintf(enc, sizeof enc, "image=%dx%dx%d conv=%s head=%s images_per_s=%.0f ", es.h, es.w, es.c, conv,
                 head, o.batch * sps);
      printf("train method=%s arch=%s width=%d depth=%d x_dim=%d y_dim=%d batch=%d negatives=%d "
             "threads=%d %sstep_ms=%.1f steps_per_s=%.3f pairs_per_s=%.0f gflops=%.1f "
             "sgemm_peak_gflops=%.1f efficiency=%.0f%% loss=%.4f blas=%s\n",
             method, arch, o.width, o.depth, m.x_dim, y_dim, o.batch,
             o.method == EMBER_METHOD_MSE ? 0 : o.negatives, threads.v[ti], enc, 1e3 / sps, sps,
             pairs * sps, gflops, peak, 100.0 * gflops / peak, (double)loss, ember_blas_core());
      fflush(stdout);
    } else {
      fprintf(stderr, "ember bench train: %s\n", err.msg);
      rc = 1;
    }
    ember_trainer_destroy(t);
    ember_model_free(&m);
    ember_pool_destroy(pool);
  }
  ember_dataset_free(&ds);
  return rc;
}

#define BENCH_USAGE "usage: ember bench infer|train|serve [options]   (ember bench infer --help)\n"

int cmd_bench(int argc, char **argv) {
  const char *best = ember_blas_env_narrower();
  if (best)
    fprintf(stderr, "ember bench: OPENBLAS_CORETYPE=%s in the environment loads OpenBLAS's %s kernels; this CPU takes "
                    "the %s family's, faster: unset OPENBLAS_CORETYPE for full speed\n",
            getenv("OPENBLAS_CORETYPE"), ember_blas_core(), best);
  if (argc >= 1 && strcmp(argv[0], "infer") == 0) return bench_infer(argc - 1, argv + 1);
  if (argc >= 1 && strcmp(argv[0], "train") == 0) return bench_train(argc - 1, argv + 1);
  if (argc >= 1 && strcmp(argv[0], "serve") == 0) {
#ifdef EMBER_REMOTE
    return remote_cmd_bench_serve(NULL, argc - 1, argv + 1);
#else
    fprintf(stderr, "ember bench serve: this build has no remote mode (configure with -DEMBER_SERVER=ON)\n");
    return 2;
#endif
  }
  if (argc >= 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
    printf(BENCH_USAGE);
    return 0;
  }
  if (argc >= 1) fprintf(stderr, "ember bench: unknown benchmark '%s'\n", argv[0]);
  fprintf(stderr, BENCH_USAGE);
  return 2;
}
