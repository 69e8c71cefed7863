/* cmd_particle.c - `ember data particle` and `ember eval particle`: the paper's N-D particle
 * benchmark (tasks/particle.h) as a dataset writer and a closed-loop evaluator.
 *
 *   ember data particle --dims N --episodes E --seed S --out FILE
 *       E oracle demonstrations of 50 steps: one row per step, x = the 4N observation
 *       (x0..), y = the oracle's action (y0..); train with --y-dim N.
 *   ember eval particle --dims N --episodes E (--model M | --policy oracle|random) [--server H:P]
 *       runs the episodes with the model as the policy and prints the success rate, a 95%
 *       Wilson interval and actions per second.
 *
 * Episode e (in both verbs) is reset from random stream (seed, e), so `--seed` picks the
 * episodes and the same seed gives the same ones; data and eval have different default seeds,
 * so an evaluation never replays the demonstrations by accident. The episodes of an
 * evaluation advance in lock step: every control step asks the policy about all of them in
 * one call (local inference batches them into its sgemms; emberd gets them as Predict
 * requests of up to --chunk-rows rows). Query (episode e, step t) draws from inference stream
 * (seed, t * E + e) however the rows are split, so local and remote evaluations of one model
 * with one seed act identically and report the same successes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "tasks/particle.h"
#include "infer_cli.h"
#include "outfile.h"
#ifdef EMBER_REMOTE
#include "remote_client.h"
#endif

#define DATA_SEED 0
#define EVAL_SEED 1000
#define MAX_EPISODES 10000000

static int check_task(const char *verb, int dims, int episodes) {
  if (dims < 1 || dims > EMBER_PARTICLE_MAX_DIMS) {
    fprintf(stderr, "ember %s: --dims must be 1..%d, got %d\n", verb, EMBER_PARTICLE_MAX_DIMS, dims);
    return 2;
  }
  if (episodes < 1 || episodes > MAX_EPISODES) {
    fprintf(stderr, "ember %s: --episodes must be 1..%d, got %d\n", verb, MAX_EPISODES, episodes);
    return 2;
  }
  return 0;
}

#define MAX_HISTORY 16

/* Observation history (--history H): x is the last H observations, oldest first; at an
 * episode's first step the first observation stands in for the missing ones (as the IBC
 * reference tiles it). hist holds H * 4N floats; obs is the newest observation. */
static void history_push(float *hist, int history, int n4, const float *obs, int first) {
  if (first) {
    for (int h = 0; h < history; h++) memcpy(hist + (size_t)h * n4, obs, (size_t)n4 * sizeof(float));
    return;
  }
  memmove(hist, hist + n4, (size_t)(history - 1) * n4 * sizeof(float));
  memcpy(hist + (size_t)(history - 1) * n4, obs, (size_t)n4 * sizeof(float));
}

static int check_history(const char *verb, int history) {
  if (history < 1 || history > MAX_HISTORY) {
    fprintf(stderr, "ember %s: --history must be 1..%d, got %d\n", verb, MAX_HISTORY, history);
    return 2;
  }
  return 0;
}

/* ---- data ----------------------------------------------------------------------------- */

int cmd_data_particle(int argc, char **argv) {
  const char *verb = "data particle", *out = NULL;
  int dims = 2, episodes = 2000, history = 1;
  uint64_t seed = DATA_SEED;
  opt_spec specs[] = {
      {"dims", OPT_INT, &dims, "N", "action dimensions N (observations have 4N)", 0, 0},
      {"history", OPT_INT, &history, "H", "x holds the last H observations, oldest first (4N H columns; the first one repeated at an episode's start)", 0, 0},
      {"episodes", OPT_INT, &episodes, "E", "oracle demonstrations (50 rows each; the paper uses 2000)", 0, 0},
      {"seed", OPT_U64, &seed, "S", "episode e is reset from random stream (S, e)", 0, 0},
      {"out", OPT_STR, &out, "FILE", "CSV to write (header x0..x{4N-1},y:y0..y:y{N-1}, y marked for ember train; - = stdout)", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse(verb, "--dims N --episodes E --out FILE [--seed S] [--history H]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!out) {
    fprintf(stderr, "ember %s: --out FILE is required (- writes to stdout)\n", verb);
    return 2;
  }
  if ((rc = check_task(verb, dims, episodes)) || (rc = check_history(verb, history))) return rc;
  ember_particle p;
  ember_err err;
  if (ember_particle_init(&p, dims, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return 1;
  }
  /* whole or not at all: a reader never sees half a dataset (outfile.h) */
  cli_outfile o;
  char why[512];
  const int n4 = 4 * dims, nx = n4 * history;
  float *row = malloc((size_t)(nx + n4 + dims) * sizeof(float)), *obs = row ? row + nx + dims : NULL;
  if (!row || cli_outfile_open(&o, out, why, sizeof why) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, row ? why : "out of memory");
    free(row);
    ember_particle_free(&p);
    return 1;
  }
  FILE *f = o.f;
  for (int j = 0; j < nx; j++) fprintf(f, "%sx%d", j ? "," : "", j);
  for (int j = 0; j < dims; j++) fprintf(f, ",y:y%d", j); /* y: marks y for ember train */
  fputc('\n', f);
  int ok = 0;
  for (int e = 0; e < episodes; e++) {
    ember_rng rng;
    ember_rng_seed(&rng, seed, (uint64_t)e);
    ember_particle_reset(&p, &rng);
    while (!ember_particle_done(&p)) {
      ember_particle_observe(&p, obs);
      history_push(row, history, n4, obs, p.t == 0);
      ember_particle_oracle(&p, row + nx);
      /* %.9g: every float reads back exactly */
      for (int j = 0; j < nx + dims; j++) fprintf(f, "%s%.9g", j ? "," : "", (double)row[j]);
      fputc('\n', f);
      ember_particle_step(&p, row + nx);
    }
    ok += ember_particle_success(&p);
  }
  if (cli_outfile_commit(&o, why, sizeof why) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, why);
    rc = 1;
  } else {
    fprintf(stderr, "ember %s: %d episodes x %d steps = %d rows (x: %d columns, y: %d) to %s; "
                    "the oracle succeeded in %d of them\n",
            verb, episodes, EMBER_PARTICLE_STEPS, episodes * EMBER_PARTICLE_STEPS, nx, dims,
            strcmp(out, "-") == 0 ? "stdout" : out, ok);
  }
  free(row);
  ember_particle_free(&p);
  return rc;
}

/* ---- eval ----------------------------------------------------------------------------- */

typedef enum { POLICY_MODEL, POLICY_ORACLE, POLICY_RANDOM } policy_kind;

/* What acts: a local model, a model on a server, or one of the two reference policies. */
typedef struct policy {
  policy_kind kind;
  ember_model m;
  int loaded;
  ember_pool *pool;
  ember_infer *inf;
  ember_infer_opts o;
  uint64_t seed;
#ifdef EMBER_REMOTE
  remote_policy *remote;
#endif
  char method[16];
  int64_t version;
} policy;

static void policy_close(policy *p) {
  ember_infer_destroy(p->inf);
  ember_pool_destroy(p->pool);
  if (p->loaded) ember_model_free(&p->m);
#ifdef EMBER_REMOTE
  remote_policy_close(p->remote);
#endif
}

/* Actions (n, dims) for the n episodes' observations obs (n, 4 dims) at control step t. */
static int policy_act(policy *p, ember_particle *eps, const float *obs, int n, int dims, int t,
                      int episodes, float *act, double *infer_s, const char *verb) {
  if (p->kind == POLICY_ORACLE) {
    for (int e = 0; e < n; e++) ember_particle_oracle(&eps[e], act + (size_t)e * dims);
    return 0;
  }
  if (p->kind == POLICY_RANDOM) {
    for (int e = 0; e < n; e++) {
      ember_rng rng; /* the same stream a model's query would use */
      ember_rng_seed(&rng, p->seed, (uint64_t)t * episodes + e);
      for (int j = 0; j < dims; j++) act[(size_t)e * dims + j] = ember_rng_uniform(&rng);
    }
    return 0;
  }
  double t0 = ember_now();
  int rc = 0;
#ifdef EMBER_REMOTE
  if (p->remote) rc = remote_policy_act(p->remote, obs, n, (uint64_t)t * episodes, act);
  else
#endif
  {
    ember_err err;
    if (ember_infer_predict(p->inf, obs, n, &p->o, p->seed, (uint64_t)t * episodes, act, NULL, &err) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, err.msg);
      rc = 1;
    }
  }
  *infer_s += ember_now() - t0;
  return rc;
}

/* Wilson score interval for k successes in n trials at 95%. */
static void wilson(int k, int n, double *lo, double *hi) {
  const double z = 1.959963984540054, p = (double)k / n;
  double den = 1.0 + z * z / n, mid = (p + z * z / (2.0 * n)) / den;
  double half = z * sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * (double)n)) / den;
  *lo = fmax(0.0, mid - half);
  *hi = fmin(1.0, mid + half);
}

#define EVAL_THREADS_HELP "local inference threads (default: online CPUs)"

int cmd_eval_particle(const char *server, int argc, char **argv) {
  const char *verb = "eval particle", *policy_name = NULL, *trace = NULL;
  int dims = 0, episodes = 100, csv = 0, quiet = 0, history = 0;
  int64_t version = 0;
  int deadline_ms = 10000;
  infer_cli c;
  infer_cli_init(&c);
  c.seed = EVAL_SEED;
  opt_spec specs[] = {
      {"model", OPT_STR, &c.model, "M", "the policy: a checkpoint (with --server: a model name on the server)", 0, 0},
      {"policy", OPT_STR, &policy_name, "P", "instead of --model: oracle (the demonstrator) or random (uniform actions)", 0, 0},
      {"dims", OPT_INT, &dims, "N", "action dimensions N (required; the model must take 4N x and give N y)", 0, 1},
      {"episodes", OPT_INT, &episodes, "E", "episodes to run", 0, 0},
      {"history", OPT_INT, &history, "H", "observations per query, as in ember data particle --history (default: the model's x columns / 4N)", 0, 1},
      {"seed", OPT_U64, &c.seed, "S", "episode e starts from random stream (S, e); inference uses seed S too", 0, 0},
      {"samples", OPT_INT, &c.o.samples, NULL, "candidates per action: DFO samples or Langevin chains (default: the model's)", 0, 1},
      {"iters", OPT_INT, &c.o.iters, NULL, "DFO iterations (default: the model's)", 0, 1},
      {"sigma", OPT_FLOAT, &c.o.sigma, NULL, "DFO's initial noise, normalised y units (default: the model's)", 0, 1},
      {"shrink", OPT_FLOAT, &c.o.shrink, NULL, "DFO's noise factor per iteration (default: the model's)", 0, 1},
      {"temperature", OPT_FLOAT, &c.o.temperature, NULL, "softmax temperature (default: the model's)", 0, 1},
      {"refine", OPT_INT, &c.o.refine_steps, "N", "gradient steps on E after sampling (default: the model's)", 0, 1},
      {"chain-steps", OPT_INT, &c.o.langevin.steps, NULL, "langevin: inference chain length (default: the model's)", 0, 1},
      {"threads", OPT_INT, &c.threads, NULL, EVAL_THREADS_HELP, 0, 1},
      {"server", OPT_STR, &server, "HOST:PORT", "act through emberd's Predict instead of locally", 0, 0},
      {"version", OPT_I64, &version, NULL, "with --server: model version (0 = the latest; the one found first is kept)", 0, 0},
      {"deadline-ms", OPT_INT, &deadline_ms, NULL, "with --server: deadline of each Predict", 0, 0},
#ifdef EMBER_REMOTE
      REMOTE_SECURITY_SPECS(remote_security_opts()),
#endif
      {"trace", OPT_STR, &trace, "FILE", "also write one CSV row per episode (success, closest approach to each goal, final distance)", 0, 0},
      {"csv", OPT_FLAG, &csv, NULL, "print one CSV line (with a header) instead of the report", 0, 0},
      {"quiet", OPT_FLAG, &quiet, NULL, "no progress on stderr", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse(verb, "--dims N (--model M | --policy oracle|random) [--episodes E] [--server HOST:PORT]",
                      specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!dims) {
    fprintf(stderr, "ember %s: --dims N is required\n", verb);
    return 2;
  }
  if ((rc = check_task(verb, dims, episodes))) return rc;
  if (args_given(specs, nspecs, "history") && (rc = check_history(verb, history))) return rc;
  policy p;
  memset(&p, 0, sizeof p);
  p.seed = c.seed;
  if ((c.model != NULL) == (policy_name != NULL)) {
    fprintf(stderr, "ember %s: give either --model M or --policy oracle|random\n", verb);
    return 2;
  }
  if (policy_name) {
    if (strcmp(policy_name, "oracle") == 0) p.kind = POLICY_ORACLE;
    else if (strcmp(policy_name, "random") == 0) p.kind = POLICY_RANDOM;
    else {
      fprintf(stderr, "ember %s: --policy must be oracle or random, got '%s'\n", verb, policy_name);
      return 2;
    }
    snprintf(p.method, sizeof p.method, "%s", policy_name);
    static const char *const model_only[] = {"samples", "iters", "sigma", "shrink", "temperature", "refine",
                                             "chain-steps", "version", "deadline-ms"};
    for (size_t k = 0; k < sizeof model_only / sizeof *model_only; k++)
      if (args_given(specs, nspecs, model_only[k])) {
        fprintf(stderr, "ember %s: --%s needs --model\n", verb, model_only[k]);
        return 2;
      }
    if (server) {
      fprintf(stderr, "ember %s: --server needs --model (the %s policy runs here)\n", verb, policy_name);
      return 2;
    }
  }
  int x_dim = 4 * dims, y_dim = dims;
  if (server && args_server_target(verb, server) < 0) return 2;
  if (c.model && server) {
#ifdef EMBER_REMOTE
    remote_policy_desc desc;
    rc = remote_policy_open(&p.remote, verb, server, &c, specs, nspecs, version, deadline_ms, &desc);
    if (rc) return rc;
    x_dim = desc.x_dim, y_dim = desc.y_dim;
    p.version = desc.version;
    snprintf(p.method, sizeof p.method, "%s", desc.method);
#else
    fprintf(stderr, "ember %s: --server is not available in this build\n", verb);
    return 2;
#endif
  } else if (c.model) {
    ember_err err;
    if (args_given(specs, nspecs, "version") || args_given(specs, nspecs, "deadline-ms")) {
      fprintf(stderr, "ember %s: --version and --deadline-ms apply with --server only\n", verb);
      return 2;
    }
    if (ember_model_load(c.model, &p.m, &err) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, err.msg);
      return 1;
    }
    p.loaded = 1;
    x_dim = p.m.x_dim, y_dim = p.m.y_dim;
    snprintf(p.method, sizeof p.method, "%s", ember_method_name(p.m.method));
    if (infer_cli_resolve(&c, specs, nspecs, &p.m, verb) != 0) {
      policy_close(&p);
      return 2;
    }
    p.o = c.o;
    if (cli_pool(verb, c.threads, &p.pool) < 0) {
      policy_close(&p);
      return 2;
    }
    if (ember_infer_create(&p.inf, &p.m, p.pool, &err) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, err.msg);
      policy_close(&p);
      return 1;
    }
  }
  if (!c.model) /* the built-in policies see whatever history was asked for */
    x_dim = 4 * dims * (history ? history : 1);
  if (!history) /* the model's */
    history = x_dim % (4 * dims) == 0 && x_dim / (4 * dims) <= MAX_HISTORY ? x_dim / (4 * dims) : 1;
  if (x_dim != 4 * dims * history || y_dim != dims) {
    if (history == 1)
      fprintf(stderr, "ember %s: %s takes %d x and gives %d y; the %d-D particle task needs %d and %d "
                      "(4N x per observation; train it on ember data particle --dims %d)\n",
              verb, c.model, x_dim, y_dim, dims, 4 * dims, dims, dims);
    else
      fprintf(stderr, "ember %s: %s takes %d x and gives %d y; the %d-D particle task with --history %d "
                      "needs %d and %d (train it on ember data particle --dims %d --history %d)\n",
              verb, c.model, x_dim, y_dim, dims, history, 4 * dims * history, dims, dims, history);
    policy_close(&p);
    return 2;
  }
  const int n4 = 4 * dims;

  ember_particle *eps = calloc((size_t)episodes, sizeof *eps);
  float *obs = malloc((size_t)episodes * x_dim * sizeof(float)), *cur = malloc((size_t)n4 * sizeof(float));
  float *act = malloc((size_t)episodes * dims * sizeof(float));
  FILE *tf = NULL;
  rc = 0;
  if (!eps || !obs || !act || !cur) {
    fprintf(stderr, "ember %s: out of memory for %d episodes\n", verb, episodes);
    rc = 1;
  }
  int inited = 0;
  for (; rc == 0 && inited < episodes; inited++) {
    ember_err err;
    if (ember_particle_init(&eps[inited], dims, &err) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, err.msg);
      rc = 1;
      break;
    }
    ember_rng rng;
    ember_rng_seed(&rng, c.seed, (uint64_t)inited);
    ember_particle_reset(&eps[inited], &rng);
  }
  if (rc == 0 && trace && !(tf = fopen(trace, "w"))) {
    fprintf(stderr, "ember %s: cannot write %s: %s\n", verb, trace, strerror(errno));
    rc = 1;
  }
  double infer_s = 0.0, start = ember_now(), last_note = start;
  for (int t = 0; rc == 0 && t < EMBER_PARTICLE_STEPS; t++) {
    for (int e = 0; e < episodes; e++) {
      ember_particle_observe(&eps[e], cur);
      history_push(obs + (size_t)e * x_dim, history, n4, cur, t == 0);
    }
    rc = policy_act(&p, eps, obs, episodes, dims, t, episodes, act, &infer_s, verb);
    for (int e = 0; rc == 0 && e < episodes; e++) ember_particle_step(&eps[e], act + (size_t)e * dims);
    double now = ember_now();
    if (!quiet && rc == 0 && now - last_note > 5.0) {
      last_note = now;
      fprintf(stderr, "ember %s: step %d of %d, %.0f s\n", verb, t + 1, EMBER_PARTICLE_STEPS, now - start);
    }
  }
  if (rc == 0) {
    int ok = 0, hit1 = 0, hit2 = 0;
    if (tf) fprintf(tf, "episode,success,min_dist_goal1,min_dist_goal2,final_dist_goal2\n");
    for (int e = 0; e < episodes; e++) {
      int s = ember_particle_success(&eps[e]);
      ok += s;
      hit1 += eps[e].min1 < EMBER_PARTICLE_GOAL_DIST;
      hit2 += eps[e].min2 < EMBER_PARTICLE_GOAL_DIST;
      if (tf)
        fprintf(tf, "%d,%d,%.6g,%.6g,%.6g\n", e, s, eps[e].min1, eps[e].min2, ember_particle_goal_dist(&eps[e], 2));
    }
    if (tf && (fflush(tf) != 0 || ferror(tf))) {
      fprintf(stderr, "ember %s: could not write %s\n", verb, trace);
      rc = 1;
    }
    double lo, hi;
    wilson(ok, episodes, &lo, &hi);
    const long actions = (long)episodes * EMBER_PARTICLE_STEPS;
    const double aps = infer_s > 0 ? actions / infer_s : 0.0;
    const char *where = p.kind != POLICY_MODEL ? "built in" : server ? server : "local";
    if (csv) {
      printf("dims,episodes,policy,method,where,seed,success,successes,ci_lo,ci_hi,goal1_hit,goal2_hit,"
             "actions_per_s,inference_s,total_s\n");
      printf("%d,%d,%s,%s,%s,%llu,%.4f,%d,%.4f,%.4f,%.4f,%.4f,%.1f,%.3f,%.3f\n", dims, episodes,
             c.model ? c.model : policy_name, p.method, where, (unsigned long long)c.seed,
             (double)ok / episodes, ok, lo, hi, (double)hit1 / episodes, (double)hit2 / episodes, aps,
             infer_s, ember_now() - start);
    } else {
      printf("particle     N = %d, %d episodes of %d steps, seed %llu\n", dims, episodes,
             EMBER_PARTICLE_STEPS, (unsigned long long)c.seed);
      if (c.model && server)
        printf("policy       %s version %lld (%s) on emberd at %s\n", c.model, (long long)p.version,
               p.method, server);
      else if (c.model)
        printf("policy       %s (%s), local inference on %d thread%s\n", c.model, p.method, c.threads,
               c.threads == 1 ? "" : "s");
      else printf("policy       %s\n", policy_name);
      printf("success      %.1f%% (%d of %d), 95%% interval %.1f-%.1f%% (Wilson)\n", 100.0 * ok / episodes,
             ok, episodes, 100.0 * lo, 100.0 * hi);
      printf("goals        goal 1 reached in %.1f%%, goal 2 in %.1f%% (closest approach < %.2g)\n",
             100.0 * hit1 / episodes, 100.0 * hit2 / episodes, EMBER_PARTICLE_GOAL_DIST);
      if (p.kind == POLICY_MODEL)
        printf("speed        %.0f actions/s (%ld actions, %.2f s of inference, %.3f ms each)\n", aps,
               actions, infer_s, 1000.0 * infer_s / actions);
    }
    if (rc == 0) rc = cli_finish_stdout(verb);
  }
  if (tf) fclose(tf);
  for (int e = 0; e < inited; e++) ember_particle_free(&eps[e]);
  free(eps);
  free(obs);
  free(cur);
  free(act);
  policy_close(&p);
  return rc;
}
