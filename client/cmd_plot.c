/* cmd_plot.c - `ember plot` (being written). */
#include <stdio.h>

#include "cli.h"

int cmd_plot(int argc, char **argv) {
  (void)argc, (void)argv;
  fprintf(stderr, "ember plot: not built yet\n");
  return 2;
}
