/* control_loop.c - a robot's control loop calling emberd's Predict at a fixed rate through
 * libember_client, reporting end-to-end latency (p50, p99, max) and missed periods.
 *
 *     cc control_loop.c $(pkg-config --cflags --libs ember-client) -o control_loop
 *     ./control_loop --target 127.0.0.1:50051 --model particle --hz 100 --n 1000
 *
 * Every period (1/hz) it reads an observation (here a made-up one: a slow sine per x column),
 * asks for the action of lowest energy, and "applies" it. A period is missed when the answer
 * came after the next period was due; the loop then starts the next call at once (it does not
 * try to catch up). A call that fails is counted and reported on stderr; the exit status is 1
 * if any did. docs/client-c.md explains the rest.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ember/client.h>

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_until(double t) {
  struct timespec ts;
  ts.tv_sec = (time_t)t;
  ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The q-quantile of sorted v (n > 0), nearest rank. */
static double quantile(const double *v, int n, double q) {
  int i = (int)ceil(q * n) - 1;
  return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

int main(int argc, char **argv) {
  const char *target = "127.0.0.1:50051", *model = NULL;
  double hz = 100.0;
  int n = 1000, deadline_ms = 1000;
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      fprintf(stderr, "control_loop: %s needs a value\n", a);
      return 2;
    }
    if (strcmp(a, "--target") == 0) target = v;
    else if (strcmp(a, "--model") == 0) model = v;
    else if (strcmp(a, "--hz") == 0) hz = atof(v);
    else if (strcmp(a, "--n") == 0) n = atoi(v);
    else if (strcmp(a, "--deadline-ms") == 0) deadline_ms = atoi(v);
    else if (strcmp(a, "--samples") == 0) o.samples = (uint32_t)strtoul(v, NULL, 10);
    else if (strcmp(a, "--iterations") == 0) o.iterations = (uint32_t)strtoul(v, NULL, 10);
    else if (strcmp(a, "--seed") == 0) o.seed = strtoull(v, NULL, 10);
    else {
      fprintf(stderr, "usage: control_loop --model NAME [--target T] [--hz HZ] [--n N] [--deadline-ms MS]\n"
                      "                    [--samples N] [--iterations N] [--seed S]\n");
      return 2;
    }
    i++;
  }
  if (!model || hz <= 0.0 || n < 1 || deadline_ms < 1) {
    fprintf(stderr, "control_loop: --model is required; --hz, --n and --deadline-ms must be positive\n");
    return 2;
  }
  o.deadline_ms = deadline_ms;

  ember_client *c = NULL;
  ember_client_model *m = NULL;
  ember_client_status st;
  ember_client_config cfg = EMBER_CLIENT_CONFIG_INIT;
  cfg.token = getenv("EMBER_TOKEN");
  double *lat = malloc((size_t)n * sizeof *lat);
  float *x = NULL, *y = NULL;
  int rc = 1;
  if (!lat) goto done;
  if (ember_client_open(&c, target, &cfg, &st) != 0 || ember_client_get_model(c, model, 0, &m, &st) != 0) {
    fprintf(stderr, "control_loop: %s: %s\n", ember_client_code_name(st.code), st.details);
    goto done;
  }
  x = calloc((size_t)m->x_dim, sizeof *x);
  y = calloc((size_t)m->y_dim, sizeof *y);
  if (!x || !y) goto done;
  /* one warm-up call: the connection is made on the first one */
  if (ember_client_predict(c, model, &o, x, 1, m->x_dim, y, m->y_dim, NULL, &st) != 0) {
    fprintf(stderr, "control_loop: %s: %s\n", ember_client_code_name(st.code), st.details);
    goto done;
  }

  const double period = 1.0 / hz;
  int ok = 0, failed = 0, missed = 0;
  double next = now_s();
  for (int k = 0; k < n; k++) {
    sleep_until(next);
    double t0 = now_s();
    for (int j = 0; j < m->x_dim; j++) x[j] = (float)sin(0.01 * k + j); /* the observation */
    if (ember_client_predict(c, model, &o, x, 1, m->x_dim, y, m->y_dim, NULL, &st) == 0) {
      lat[ok++] = now_s() - t0; /* ... and here the robot would apply y */
    } else {
      failed++;
      fprintf(stderr, "control_loop: step %d: %s: %s\n", k, ember_client_code_name(st.code), st.details);
    }
    next += period;
    double done_at = now_s();
    if (done_at > next) {
      missed++;
      next = done_at; /* start the next step at once, without catching up */
    }
  }
  qsort(lat, (size_t)ok, sizeof *lat, cmp_double);
  printf("steps=%d hz=%g ok=%d failed=%d missed=%d", n, hz, ok, failed, missed);
  if (ok)
    printf(" p50_ms=%.3f p99_ms=%.3f max_ms=%.3f", quantile(lat, ok, 0.5) * 1e3, quantile(lat, ok, 0.99) * 1e3,
           lat[ok - 1] * 1e3);
  printf("\n");
  rc = failed ? 1 : 0;
done:
  free(lat);
  free(x);
  free(y);
  ember_client_model_free(m);
  ember_client_close(c);
  return rc;
}
