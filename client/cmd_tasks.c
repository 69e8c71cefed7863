/* cmd_tasks.c - `ember data TASK` and `ember eval TASK`: the evaluation tasks' two verbs.
 *
 *   ember data particle ...     oracle demonstrations of the N-D particle task (cmd_particle.c)
 *   ember data toy NAME ...     one of the paper's 1-D toys (cmd_toy.c)
 *   ember data coords ...       the visual coordinate-regression images (cmd_coords.c)
 *   ember eval particle ...     closed-loop episodes, locally or through emberd (cmd_particle.c)
 *   ember eval toy NAME ...     error, stranded predictions and mode coverage (cmd_toy.c)
 *   ember eval data ...         error and mode coverage on the user's own pairs (cmd_evaldata.c)
 */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int tasks_usage(FILE *f, const char *verb) {
  fprintf(f,
          "usage: ember %s particle [options]      (ember %s particle --help)\n"
          "       ember %s toy NAME [options]      (ember %s toy --help lists the toys)\n",
          verb, verb, verb, verb);
  if (strcmp(verb, "data") == 0)
    fprintf(f, "       ember data coords [options]        (dot images for visual coordinate regression)\n");
  if (strcmp(verb, "eval") == 0)
    fprintf(f, "       ember eval data --model M --data FILE [options]   (your own (x, y) pairs: error and\n"
               "                                                    mode coverage by sample count)\n");
  return f == stdout ? 0 : 2;
}

static int want_help(int argc, char **argv) {
  return argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0;
}

int cmd_data(int argc, char **argv) {
  if (want_help(argc, argv)) return tasks_usage(argc < 1 ? stderr : stdout, "data");
  if (strcmp(argv[0], "particle") == 0) return cmd_data_particle(argc - 1, argv + 1);
  if (strcmp(argv[0], "toy") == 0) return cmd_data_toy(argc - 1, argv + 1);
  if (strcmp(argv[0], "coords") == 0) return cmd_data_coords(argc - 1, argv + 1);
  fprintf(stderr, "ember data: unknown task '%s' (particle, toy or coords)\n", argv[0]);
  return 2;
}

int cmd_eval(const char *server, int argc, char **argv) {
  if (want_help(argc, argv)) return tasks_usage(argc < 1 ? stderr : stdout, "eval");
  if (strcmp(argv[0], "particle") == 0) return cmd_eval_particle(server, argc - 1, argv + 1);
  if (strcmp(argv[0], "toy") == 0) {
    if (server) {
      fprintf(stderr, "ember eval toy: runs locally only (--model FILE); eval particle takes --server\n");
      return 2;
    }
    return cmd_eval_toy(argc - 1, argv + 1);
  }
  if (strcmp(argv[0], "data") == 0) {
    if (server) {
      fprintf(stderr, "ember eval data: runs locally only (--model FILE); eval particle takes --server\n");
      return 2;
    }
    return cmd_eval_data(argc - 1, argv + 1);
  }
  fprintf(stderr, "ember eval: unknown task '%s' (particle, toy or data)\n", argv[0]);
  return 2;
}
