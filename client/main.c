/* main.c - the ember command line: dispatch to a verb.
 *
 *   ember train | predict | sample | bench | info  [options]     (ember VERB --help)
 *
 * Results go to stdout, everything else (progress, errors) to stderr; a failure exits
 * non-zero with one line saying what was wrong.
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
          "usage: ember VERB [options]     (ember VERB --help for a verb's options)\n"
          "\n"
          "verbs:\n"
          "  train     train a model on (x, y) pairs from a CSV or .npz file\n"
          "  predict   the lowest-energy y for each input row (CSV on stdout)\n"
          "  sample    up to K distinct low-energy y (modes) for each input row\n"
          "  bench     measure inference (bench infer) or training (bench train) speed\n"
          "  info      print a checkpoint's metadata\n"
          "\n"
          "global options:\n"
          "  --server HOST:PORT   run predict/sample against an emberd server (not in this build)\n"
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

int main(int argc, char **argv) {
  int i = 1;
  if (i < argc && strcmp(argv[i], "--server") == 0) {
    fprintf(stderr, "ember: remote mode (--server) is not available in this build yet; "
                    "run the verb locally with --model\n");
    return 2;
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
  if (strcmp(verb, "train") == 0) return cmd_train(vargc, vargv);
  if (strcmp(verb, "predict") == 0) return cmd_predict(vargc, vargv);
  if (strcmp(verb, "sample") == 0) return cmd_sample(vargc, vargv);
  if (strcmp(verb, "bench") == 0) return cmd_bench(vargc, vargv);
  if (strcmp(verb, "info") == 0) return cmd_info(vargc, vargv);
  fprintf(stderr, "ember: unknown verb '%s'\n\n", verb);
  usage(stderr);
  return 2;
}
