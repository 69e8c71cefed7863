/* cli.h - the ember CLI's verbs and the helpers they share. */
#ifndef EMBER_CLI_H
#define EMBER_CLI_H

#include "ember/base.h"

int cmd_train(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);

/* Online CPUs, the default --threads. */
int cli_default_threads(void);
/* A pool of `threads` threads (NULL for 1) or an error message; returns 0 or -1. */
int cli_pool(const char *verb, int threads, ember_pool **pool);

#endif
