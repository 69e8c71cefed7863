/* config.c - emberd's command line. Every flag is documented in --help with its default. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "server.h"

#define EMBER_STR_(x) #x
#define EMBER_STR(x) EMBER_STR_(x)

typedef struct flag {
  const char *name, *metavar, *help;
  int *ival;          /* integer flags */
  const char **sval;  /* string flags */
  int min, max;
} flag;

static void usage(FILE *f, const flag *flags, int n) {
  fprintf(f,
          "emberd - serve ember energy models over gRPC (service ember.v1.Ember, plus\n"
          "grpc.health.v1.Health and server reflection)\n\n"
          "usage: emberd (--models DIR | --model FILE) [options]\n\n"
          "The repository DIR holds DIR/<name>/<version>.safetensors (version a positive integer;\n"
          "the highest is served by default). It is watched: new versions are loaded, removed ones\n"
          "retired, and a version that fails to load is reported (GetModel, logs) while the others\n"
          "keep serving. --model FILE serves one checkpoint as model <file name without extension>,\n"
          "version 1.\n\noptions:\n");
  for (int i = 0; i < n; i++) {
    char left[48];
    snprintf(left, sizeof left, "--%s %s", flags[i].name, flags[i].metavar);
    fprintf(f, "  %-26s %s", left, flags[i].help);
    if (flags[i].ival && strcmp(flags[i].name, "workers") != 0) fprintf(f, " (default %d)", *flags[i].ival);
    else if (flags[i].sval && *flags[i].sval) fprintf(f, " (default %s)", *flags[i].sval);
    fputc('\n', f);
  }
  fprintf(f, "  %-26s %s\n\n", "--help", "show this help");
  fprintf(f, "Access control is off unless asked for: TLS with --tls-cert/--tls-key (and\n"
             "--tls-client-ca for client certificates), bearer tokens with --token-file (metadata\n"
             "'authorization: Bearer TOKEN'; none: UNAUTHENTICATED, a wrong one: PERMISSION_DENIED).\n"
             "Health checks stay open. Without either, a listener beyond loopback logs a warning.\n\n");
  fprintf(f, "Train (ember.v1.Ember/Train, admin token if --admin-token-file) trains on a thread of its own\n"
             "(nice --train-nice, --train-threads threads) and publishes DIR/<name>/<next version>.safetensors;\n"
             "data comes inline or from a file under --data-dir. Needs --models DIR.\n\n");
  fprintf(f, "Signals: SIGINT/SIGTERM drain for --drain-ms (health NOT_SERVING and /readyz 503 at once,\n"
             "every call still answered, new ones too, so balancers can take the replica out; Train jobs\n"
             "cancelled), then stop accepting calls (GOAWAY) and give those in flight --grace-ms; what is\n"
             "left then (or at a second signal) is cancelled and emberd exits.\n");
}

int srv_config_parse(srv_config *c, int argc, char **argv) {
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  static const char *level = "info";
  memset(c, 0, sizeof *c);
  c->listen = "127.0.0.1:50051";
  c->workers = ncpu < 1 ? 1 : (int)ncpu;
  c->split_batches = 1;
  c->pool_wait_us = EMBER_POOL_WAIT_US;
  c->max_batch = 64;
  c->max_delay_us = 200;
  c->max_queue = 1024;
  c->max_rows = 1024;
  c->max_samples = EMBER_MAX_SAMPLES; /* the limits a model's own defaults must fit */
  c->max_message = 16 << 20;
  c->max_request_gflop = EMBER_MAX_REQUEST_GFLOP;
  c->poll_ms = 2000;
  c->drain_ms = 500;
  c->grace_ms = 5000;
  c->max_idle_ms = 300000;
  c->max_train_jobs = 1;
  c->train_threads = 1;
  c->max_train_rows = 1000000;
  c->max_train_mib = 1024;
  c->train_nice = 19;
  flag flags[] = {
      {"listen", "HOST:PORT", "address to listen on (0.0.0.0:PORT for every interface)", NULL, &c->listen, 0, 0},
      {"metrics-listen", "HOST:PORT", "serve Prometheus metrics over plain HTTP at http://HOST:PORT/metrics, and the probes /livez and /readyz (default: off)", NULL, &c->metrics_listen, 0, 0},
      {"models", "DIR", "model repository: DIR/<name>/<version>.safetensors", NULL, &c->models_dir, 0, 0},
      {"model", "FILE", "serve one checkpoint (name = file name without extension, version 1)", NULL, &c->model_file, 0, 0},
      {"workers", "N", "inference threads, one BLAS thread each (default: online CPUs)", &c->workers, NULL, 1, 256},
      {"split-batches", "0|1", "1: a batch that runs while every other worker is idle spreads over all their cores; 0: one core per batch", &c->split_batches, NULL, 0, 1},
      {"pool-wait-us", "US", "how long a spread batch's helper threads keep polling for the next pass or batch before they sleep (the first " EMBER_STR(EMBER_POOL_SPIN_US) " us spinning, then yielding their core between looks); 0: sleep at once", &c->pool_wait_us, NULL, 0, EMBER_POOL_WAIT_US_MAX},
      {"max-batch", "ROWS", "most rows (queries) one optimiser run serves", &c->max_batch, NULL, 1, 65536},
      {"max-delay-us", "US", "how long a batch may wait for more requests while a worker is idle", &c->max_delay_us, NULL, 0, 10000000},
      {"max-queue", "N", "requests waiting for a worker; more get RESOURCE_EXHAUSTED", &c->max_queue, NULL, 1, 1 << 24},
      {"max-rows", "N", "rows of x per request", &c->max_rows, NULL, 1, 1 << 20},
      {"max-samples", "N", "DFO samples per row a request may ask for", &c->max_samples, NULL, 1, EMBER_MAX_INFER_SAMPLES},
      {"max-message", "BYTES", "largest request or response message", &c->max_message, NULL, 1024, 1 << 30},
      {"max-request-gflop", "G", "compute one request may ask for (rows x samples x iterations, or chain steps, x network; refining and Sample's mode polishing included)", &c->max_request_gflop, NULL, 1, 1 << 30},
      {"poll-ms", "MS", "repository rescan period, a backstop for file events", &c->poll_ms, NULL, 50, 3600000},
      {"drain-ms", "MS", "on SIGTERM: how long to report NOT_SERVING (and /readyz 503) while still answering calls, before refusing new ones", &c->drain_ms, NULL, 0, 600000},
      {"grace-ms", "MS", "then how long in-flight calls get before they are cancelled", &c->grace_ms, NULL, 0, 600000},
      {"max-idle-ms", "MS", "close a connection that has had no call for this long (0 = never), so clients that vanished without closing theirs do not hold its file descriptor", &c->max_idle_ms, NULL, 0, 1 << 30},
      {"log-level", "LEVEL", "debug, info, warn or error", NULL, &level, 0, 0},
      {"tls-cert", "FILE", "TLS: the server's certificate chain (PEM); needs --tls-key", NULL, &c->tls_cert, 0, 0},
      {"tls-key", "FILE", "TLS: the server's private key (PEM)", NULL, &c->tls_key, 0, 0},
      {"tls-client-ca", "FILE", "TLS: require client certificates signed by these CAs (PEM)", NULL, &c->tls_client_ca, 0, 0},
      {"token-file", "FILE", "bearer tokens, one per line, for Predict/Sample/ListModels/GetModel and reflection", NULL, &c->token_file, 0, 0},
      {"admin-token-file", "FILE", "bearer tokens, one per line, for Train (also accepted where --token-file's are)", NULL, &c->admin_token_file, 0, 0},
      {"data-dir", "DIR", "datasets (CSV or .npz) Train may name by a relative path (default: none)", NULL, &c->data_dir, 0, 0},
      {"max-train-jobs", "N", "training jobs at once; more get RESOURCE_EXHAUSTED (0 = Train off)", &c->max_train_jobs, NULL, 0, 256},
      {"train-threads", "N", "threads per training job (same seed + threads = same model as ember train)", &c->train_threads, NULL, 1, 256},
      {"max-train-rows", "N", "rows of training data per job", &c->max_train_rows, NULL, 1, 1 << 30},
      {"max-train-mib", "MIB", "memory one training job may hold: model, gradients, Adam, activations (ember_train_memory)", &c->max_train_mib, NULL, 1, 1 << 22},
      {"train-nice", "N", "nice value of training threads, 0..19 (19: also SCHED_IDLE, training only gets CPU inference leaves idle)", &c->train_nice, NULL, 0, 19},
  };
  int n = (int)(sizeof flags / sizeof *flags);
  struct option longopts[sizeof flags / sizeof *flags + 2];
  for (int i = 0; i < n; i++) longopts[i] = (struct option){flags[i].name, required_argument, NULL, i};
  longopts[n] = (struct option){"help", no_argument, NULL, 'h'};
  longopts[n + 1] = (struct option){NULL, 0, NULL, 0};
  opterr = 0;
  optind = 1;
  int workers_default = c->workers;
  for (;;) {
    int idx = getopt_long(argc, argv, "h", longopts, NULL);
    if (idx == -1) break;
    if (idx == 'h') {
      c->workers = workers_default;
      usage(stdout, flags, n);
      return 1;
    }
    if (idx == '?' || idx == ':') {
      fprintf(stderr, "emberd: unknown option or missing value: %s (see emberd --help)\n", argv[optind - 1]);
      return -1;
    }
    flag *f = &flags[idx];
    if (f->sval) {
      *f->sval = optarg;
      continue;
    }
    char *end;
    errno = 0;
    long v = strtol(optarg, &end, 10);
    if (!*optarg || *end || errno || v < f->min || v > f->max) {
      fprintf(stderr, "emberd: --%s expects an integer in [%d, %d], got '%s'\n", f->name, f->min, f->max, optarg);
      return -1;
    }
    *f->ival = (int)v;
  }
  if (optind < argc) {
    fprintf(stderr, "emberd: unexpected argument '%s' (see emberd --help)\n", argv[optind]);
    return -1;
  }
  if (!c->models_dir == !c->model_file) {
    fprintf(stderr, "emberd: give exactly one of --models DIR and --model FILE (see emberd --help)\n");
    return -1;
  }
  if (!c->tls_cert != !c->tls_key) {
    fprintf(stderr, "emberd: --tls-cert and --tls-key go together (see emberd --help)\n");
    return -1;
  }
  if (c->tls_client_ca && !c->tls_cert) {
    fprintf(stderr, "emberd: --tls-client-ca needs TLS: give --tls-cert and --tls-key too\n");
    return -1;
  }
  const char *levels[] = {"debug", "info", "warn", "error"};
  c->log_level = -1;
  for (int i = 0; i < 4; i++)
    if (strcmp(level, levels[i]) == 0) c->log_level = i;
  if (c->log_level < 0) {
    fprintf(stderr, "emberd: --log-level must be debug, info, warn or error, got '%s'\n", level);
    return -1;
  }
  return 0;
}
