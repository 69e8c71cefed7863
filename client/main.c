/* main.c - the ember command line: dispatch to a verb.
 *
 *   ember train | predict | sample | bench | info | data | eval | plot | pin | unpin  [options]
 *         (ember VERB --help)
 *   ember --server HOST:PORT [--tls-ca F] [--tls-cert F --tls-key F] [--token-file F]
 *         predict | sample | info | models | health | bench serve  [options]
 *
 * Results go to stdout, everything else (progress, errors) to stderr; a failure exits
 * non-zero with one line saying what was wrong. With --server the verbs ask an emberd server
 * (remote_*.c, compiled only when the build has the server); without it they run locally.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#ifdef EMBER_REMOTE
#include "remote_client.h"
#endif

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
          "  data      write a benchmark dataset: data particle (oracle demonstrations), data toy NAME, data coords (images)\n"
          "  eval      score a model: eval particle (closed-loop episodes, local or --server), eval toy NAME\n"
          "  plot      draw a 1-input 1-output model's energy landscape as a PNG heat map, or learning\n"
          "            curves from a CSV (plot curves)\n"
          "  pin       make emberd serve one version of a model by default (rollback without deleting\n"
          "            files): writes DIR/MODEL/serving.conf; unpin returns to the latest\n"
          "\n"
          "global options:\n"
#ifdef EMBER_REMOTE
          "  --server HOST:PORT   ask the emberd server at HOST:PORT: train, predict, sample, info, models\n"
          "                       and bench serve; --model is then a model name on the server (train\n"
          "                       publishes its next version; --dataset NAME names a file in the\n"
          "                       server's --data-dir instead of --data FILE), and\n"
          "                       predict/sample/info take --version N (0 = latest); predict/sample also\n"
          "                       --deadline-ms N and --chunk-rows N (ember --server H:P predict --help)\n"
          "  --server IP:P,IP:P,... or dns:///NAME:PORT   a cluster of replicas: every call goes to the\n"
          "                       next ready one (round robin), and predict, sample, info and models\n"
          "                       are retried on another when one goes away (train never is; see\n"
          "                       docs/cluster.md and deploy/grpc/service-config.json)\n"
          "  --tls-ca FILE        remote mode over TLS: CA certificate(s) that verify the server (PEM)\n"
          "  --tls-cert FILE      with --tls-key FILE: a client certificate, for servers that require one\n"
          "  --token-file FILE    bearer token for the server (default: the EMBER_TOKEN variable)\n"
          "                       (these four also work as options of each remote verb)\n"
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
  if (threads < 1 || threads > EMBER_MAX_THREADS) {
    fprintf(stderr, "ember %s: --threads must be 1..%d, got %d\n", verb, EMBER_MAX_THREADS, threads);
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
#ifdef EMBER_REMOTE
  if (strcmp(verb, "train") == 0) return remote_cmd_train(server, argc, argv);
  if (strcmp(verb, "predict") == 0) return remote_cmd_predict(server, argc, argv);
  if (strcmp(verb, "sample") == 0) return remote_cmd_sample(server, argc, argv);
  if (strcmp(verb, "info") == 0) return remote_cmd_info(server, argc, argv);
  if (strcmp(verb, "models") == 0) return remote_cmd_models(server, argc, argv);
  if (strcmp(verb, "health") == 0) return remote_cmd_health(server, argc, argv);
  if (strcmp(verb, "eval") == 0) return cmd_eval(server, argc, argv);
  if (strcmp(verb, "pin") == 0 || strcmp(verb, "unpin") == 0) return cmd_pin(server, verb, argc, argv);
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

/* Global option `name` at argv[*i] ("--name VALUE" or "--name=VALUE"): 1 and *value set (NULL
 * when missing), *i past it; 0 if argv[*i] is another word. */
static int global_opt(const char *name, int argc, char **argv, int *i, const char **value) {
  size_t n = strlen(name);
  const char *a = argv[*i];
  if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '=')) return 0;
  if (a[n] == '=') *value = a + n + 1;
  else *value = *i + 1 < argc ? argv[++*i] : NULL;
  ++*i;
  return 1;
}

int main(int argc, char **argv) {
  /* OpenBLAS fell back to generic kernels on a CPU newer than its tables: run again with the
   * CPU's own (base.h) */
  ember_blas_reexec_for_cpu(argv);
  /* A write past the file size limit (ulimit -f) then fails with EFBIG and is reported like a
   * full disk, with the temporary file removed, instead of killing ember mid-write. */
  signal(SIGXFSZ, SIG_IGN);
  int i = 1;
  const char *server = NULL;
  int security_given = 0;
  /* global options, in any order, before the verb */
  while (i < argc) {
    const char *v = NULL;
    if (global_opt("--server", argc, argv, &i, &v)) {
      if (!v || !*v) {
        fprintf(stderr, "ember: --server needs HOST:PORT\n");
        return 2;
      }
      server = v;
      continue;
    }
#ifdef EMBER_REMOTE
    static const char *const sec_names[] = {"--tls-ca", "--tls-cert", "--tls-key", "--token-file"};
    int matched = 0;
    for (int k = 0; k < 4 && !matched; k++) {
      if (!global_opt(sec_names[k], argc, argv, &i, &v)) continue;
      matched = 1;
      if (!v || !*v) {
        fprintf(stderr, "ember: %s needs a FILE\n", sec_names[k]);
        return 2;
      }
      remote_security *sec = remote_security_opts();
      const char **dst[] = {&sec->tls_ca, &sec->tls_cert, &sec->tls_key, &sec->token_file};
      *dst[k] = v;
      security_given = 1;
    }
    if (matched) continue;
#endif
    break;
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
    printf("ember " EMBER_VERSION " (OpenBLAS kernels: %s)\n", ember_blas_core());
    return 0;
  }
  if (server && args_server_target("", server) < 0)
    return strcmp(verb, "health") == 0 ? 1 : 2; /* health never exits 2, which Docker reserves */
  if (server) return remote_dispatch(server, verb, vargc, vargv);
  if (security_given && strcmp(verb, "bench") != 0) {
    fprintf(stderr, "ember: --tls-ca, --tls-cert, --tls-key and --token-file apply to remote mode "
                    "(ember --server HOST:PORT ... VERB)\n");
    return 2;
  }
  if (strcmp(verb, "train") == 0) return cmd_train(vargc, vargv);
  if (strcmp(verb, "predict") == 0) return cmd_predict(vargc, vargv);
  if (strcmp(verb, "sample") == 0) return cmd_sample(vargc, vargv);
  if (strcmp(verb, "bench") == 0) return cmd_bench(vargc, vargv);
  if (strcmp(verb, "info") == 0) return cmd_info(vargc, vargv);
  if (strcmp(verb, "data") == 0) return cmd_data(vargc, vargv);
  if (strcmp(verb, "eval") == 0) return cmd_eval(NULL, vargc, vargv);
  if (strcmp(verb, "plot") == 0) return cmd_plot(vargc, vargv);
  if (strcmp(verb, "pin") == 0 || strcmp(verb, "unpin") == 0) return cmd_pin(NULL, verb, vargc, vargv);
  if (strcmp(verb, "models") == 0 || strcmp(verb, "health") == 0) {
    fprintf(stderr, "ember %s: asks a server: ember --server HOST:PORT %s\n", verb, verb);
    return 2;
  }
  fprintf(stderr, "ember: unknown verb '%s'\n\n", verb);
  usage(stderr);
  return 2;
}
