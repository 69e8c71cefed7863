/* cmd_particle.c - `ember data particle` and `ember eval particle` (being written). */
#include <stdio.h>

#include "cli.h"

int cmd_data_particle(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "ember data particle: not built yet\n");
  return 2;
}

int cmd_eval_particle(const char *server, int argc, char **argv) {
  (void)server, (void)argc, (void)argv;
  fprintf(stderr, "ember eval particle: not built yet\n");
  return 2;
}
