/* main.c - the ember command line: dispatch to a verb.
 *
 *   ember train | predict | sample | bench | info  [options]     (ember VERB --help)
 *   ember --server HOST:PORT predict | sample | info | models | bench serve  [options]
 *
 * Results go to stdout, everything else (progress, errors) to stderr; a failure exits
 * non-zero with one line saying what was wrong. With --server the verbs ask an emberd server
 * (remote_*.c, compiled only when the build has the server); without it they run locally.
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define EMBER_VERSION "0.1.0"

static void usage(FILE *f) {
  fprintf(f,
          "ember " EMBER_VERSION " - energy-based models: train E(x, y), ask which y minimise it\n"
          "\n"
          "usage: ember [--server HOST:PORT] VERB [options]     (ember VERB --help for a verb's options)\n"
          "\n"
          "verbs:\n"
          "  train     train a model on (x, y) pairs from a CSV or .npz file\n"
          "  predict   the lowest-energy y for each input row (CSV on stdout)\n"
          "  sample    up to K distinct low-energy y (modes) for each input row\n"
          "  bench     measure inference (bench infer), training (bench train) or a server (bench serve)\n"
          "  info      print a checkpoint's metadata (with --server: a served model's, and its counters)\n"
          "  models    list a server's models (needs --server)\n"
          "  health    ask a server's health service; exit 0 only if SERVING (needs --server)\n"
          "\n"
          "global options:\n"
#ifdef EMBER_REMOTE
          "  --server HOST:PORT   ask the emberd server at HOST:PORT: predict, sample, info, models and\n"
          "                       bench serve; --model is then a model name on the server, and\n"
          "                       predict/sample/info take --version N (0 = latest); predict/sample also\n"
          "                       --deadline-ms N and --chunk-rows N (ember --server H:P predict --help)\n"
#else
          "  --server HOST:PORT   run verbs against an emberd server (not in this build)\n"
#endif
          "  --version            print the version\n");
}

int cli_default_threads(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n < 1 ? 1 : (n > 64 ? 64 : (int)n);
}

int cli_pool(const char *verb, int threads, ember_pool **pool) {
  *pool = NULL;
  ember_blas_single_thread();
  if (threads < 1 || threads > 1024) {
    fprintf(stderr, "ember %s: --threads must be 1..1024, got %d\n", verb, threads);
    return -1;
  }
  if (threads == 1) return 0;
  ember_err err;
  if (ember_pool_create(pool, threads, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return -1;
  }
  return 0;
}

/* `ember --server HOST:PORT VERB ...`: the verbs that have a remote form. */
static int remote_dispatch(const char *server, const char *verb, int argc, char **argv) {
  if (strcmp(verb, "train") == 0) {
    fprintf(stderr, "ember train: training runs locally; drop --server\n");
    return 2;
  }
#ifdef EMBER_REMOTE
  if (strcmp(verb, "predict") == 0) return remote_cmd_predict(server, argc, argv);
  if (strcmp(verb, "sample") == 0) return remote_cmd_sample(server, argc, argv);
  if (strcmp(verb, "info") == 0) return remote_cmd_info(server, argc, argv);
  if (strcmp(verb, "models") == 0) return remote_cmd_models(server, argc, argv);
  if (strcmp(verb, "health") == 0) return remote_cmd_health(server, argc, argv);
  if (strcmp(verb, "bench") == 0) {
    if (argc >= 1 && strcmp(argv[0], "serve") == 0)
      return remote_cmd_bench_serve(server, argc - 1, argv + 1);
    fprintf(stderr, "ember bench: with --server only bench serve runs (bench infer and train are local)\n");
    return 2;
  }
  fprintf(stderr, "ember: unknown verb '%s'\n\n", verb);
  usage(stderr);
  return 2;
#else
  (void)server;
  (void)argc;
  (void)argv;
  fprintf(stderr, "ember: remote mode (--server) is not available in this build (configure with "
                  "-DEMBER_SERVER=ON); run the verb locally with --model\n");
  return 2;
#endif
}

int main(int argc, char **argv) {
  int i = 1;
  const char *server = NULL;
  if (i < argc && (strcmp(argv[i], "--server") == 0 || strncmp(argv[i], "--server=", 9) == 0)) {
    if (argv[i][8] == '=') {
      server = argv[i] + 9;
    } else if (i + 1 < argc) {
      server = argv[++i];
    }
    i++;
    if (!server || !*server) {
      fprintf(stderr, "ember: --server needs HOST:PORT\n");
      return 2;
    }
  }
  if (i >= argc) {
    usage(stderr);
    return 2;
  }
  const char *verb = argv[i];
  int vargc = argc - i - 1;
  char **vargv = argv + i + 1;
  if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(verb, "--version") == 0) {
    printf("ember " EMBER_VERSION "\n");
    return 0;
  }
  if (server) return remote_dispatch(server, verb, vargc, vargv);
  if (strcmp(verb, "train") == 0) return cmd_train(vargc, vargv);
  if (strcmp(verb, "predict") == 0) return cmd_predict(vargc, vargv);
  if (strcmp(verb, "sample") == 0) return cmd_sample(vargc, vargv);
  if (strcmp(verb, "bench") == 0) return cmd_bench(vargc, vargv);
  if (strcmp(verb, "info") == 0) return cmd_info(vargc, vargv);
  if (strcmp(verb, "models") == 0 || strcmp(verb, "health") == 0) {
    fprintf(stderr, "ember %s: asks a server: ember --server HOST:PORT %s\n", verb, verb);
    return 2;
  }
  fprintf(stderr, "ember: unknown verb '%s'\n\n", verb);
  usage(stderr);
  return 2;
}
