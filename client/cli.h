/* cli.h - the ember CLI's verbs and the helpers they share. */
#ifndef EMBER_CLI_H
#define EMBER_CLI_H

#include <time.h>

#include "ember/base.h"

int cmd_train(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
/* Evaluation tasks (issue 7): `ember data particle|toy`, `ember eval particle|toy`, `ember plot`.
 * eval particle runs its episodes through emberd when server is not NULL (given as the global
 * --server or as the verb's own). */
int cmd_data(int argc, char **argv);
int cmd_eval(const char *server, int argc, char **argv);
int cmd_data_particle(int argc, char **argv);
int cmd_eval_particle(const char *server, int argc, char **argv);
int cmd_data_toy(int argc, char **argv);
int cmd_data_coords(int argc, char **argv);
int cmd_eval_toy(int argc, char **argv);
int cmd_eval_data(int argc, char **argv);
int cmd_plot(int argc, char **argv);
/* `ember pin` / `ember unpin` (verb): DIR/<model>/serving.conf's version line. Local only: with
 * server set it says so. */
int cmd_pin(const char *server, const char *verb, int argc, char **argv);
/* `ember plot curves` (plot_curves.c): learning curves from a CSV; argv after "curves". */
int cmd_plot_curves(int argc, char **argv);
int cmd_plot_images(int argc, char **argv);

/* Online CPUs, the default --threads. */
int cli_default_threads(void);
/* A pool of `threads` threads (NULL for 1) or an error message; returns 0 or -1. */
int cli_pool(const char *verb, int threads, ember_pool **pool);
/* Best GFLOP/s of `threads` concurrent single-threaded sgemms over a few shapes (a second or
 * two of work): what this machine can do right now, the yardstick of every benchmark. */
double cli_sgemm_peak(ember_pool *pool, int threads);
/* qsort comparator for doubles, and the q-quantile (0..1) of n sorted values (nearest rank). */
int cli_cmp_double(const void *a, const void *b);
double cli_percentile(const double *sorted, int n, double q);
/* t seconds on ember_now's clock (CLOCK_MONOTONIC) as a timespec, for absolute waits. */
struct timespec cli_timespec_at(double t);
/* Open loop: sleeps until `at` (ember_now's clock), the time a call is due, from which its
 * latency counts (so a call that starts late because the one before ran long counts its wait
 * too); returns at once when that has passed. */
void cli_sleep_until(double at);

#ifdef EMBER_REMOTE
/* Remote mode (remote_*.c, built only with the server): `ember --server HOST:PORT VERB`.
 * Each takes the verb's arguments (after the verb) and returns the process exit status. */
int remote_cmd_predict(const char *server, int argc, char **argv);
int remote_cmd_sample(const char *server, int argc, char **argv);
int remote_cmd_info(const char *server, int argc, char **argv);
int remote_cmd_models(const char *server, int argc, char **argv);
int remote_cmd_health(const char *server, int argc, char **argv);
int remote_cmd_train(const char *server, int argc, char **argv);
/* `ember bench serve`; server is NULL when it comes as the verb's own --server option. */
int remote_cmd_bench_serve(const char *server, int argc, char **argv);
#endif

#endif
