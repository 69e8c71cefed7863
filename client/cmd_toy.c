/* cmd_toy.c - `ember data toy NAME` and `ember eval toy NAME` (being written). */
#include <stdio.h>

#include "cli.h"

int cmd_data_toy(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "ember data toy: not built yet\n");
  return 2;
}

int cmd_eval_toy(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "ember eval toy: not built yet\n");
  return 2;
}
