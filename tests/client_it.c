/* client_it.c - libember_client against a real emberd, driven by
 * tests/integration/test_client_c.py.
 *
 *     client_it TARGET predict MODEL SEED X.csv     y and energy as `ember predict --energy` prints
 *     client_it TARGET sample MODEL SEED X.csv K    modes as `ember sample --modes K` prints
 *     client_it TARGET images MODEL SEED IMG.raw EXTRAS.csv|- K
 *                                                   an image model's predict (seed) and sample
 *                                                   (seed + 1, K modes) as the CLI prints them;
 *                                                   IMG.raw: n images of the model's shape
 *     client_it TARGET info MODEL                   key=value lines of GetModel
 *     client_it TARGET list                         one "name version" line per model
 *     client_it TARGET errors MODEL X_DIM           one "case CODE origin: details" line per error case
 *     client_it TARGET threads MODEL X.csv T N      T threads x N predicts on one client, each
 *                                                   compared with a single-threaded answer
 *     client_it TARGET loop MODEL STOPFILE          predicts until STOPFILE exists, "n=K" every
 *                                                   10 calls, then "calls=N failed=F"
 *
 * Every case exits 0 when the library did what it should and 1 (with a line on stderr) when
 * not; the Python side compares the printed answers with the CLI's. predict also checks that
 * the rows split over two calls (row_offset) give the one call's answers.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ember/client.h"

static int fail_st(const char *what, const ember_client_status *st) {
  fprintf(stderr, "client_it %s: %s: %s\n", what, ember_client_code_name(st->code), st->details);
  return 1;
}

/* x rows of a CSV file with a header line: *rows rows of *cols values (caller frees). */
static float *read_csv(const char *path, int *rows, int *cols) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char line[4096];
  float *x = NULL;
  int n = 0, d = 0, cap = 0;
  if (!fgets(line, sizeof line, f)) goto done;
  d = 1;
  for (char *p = line; *p; p++) d += *p == ',';
  while (fgets(line, sizeof line, f)) {
    if (n == cap) {
      cap = cap ? 2 * cap : 64;
      float *g = realloc(x, (size_t)cap * d * sizeof *x);
      if (!g) {
        free(x);
        x = NULL;
        goto done;
      }
      x = g;
    }
    char *p = line;
    for (int j = 0; j < d; j++) {
      x[(size_t)n * d + j] = strtof(p, &p);
      if (*p == ',') p++;
    }
    n++;
  }
done:
  fclose(f);
  *rows = n;
  *cols = d;
  return x;
}

static int dims(ember_client *c, const char *model, ember_client_model **m) {
  ember_client_status st;
  if (ember_client_get_model(c, model, 0, m, &st) != 0) return fail_st("GetModel", &st);
  return 0;
}

static void print_header(const ember_client_model *m, const char *before, const char *after) {
  printf("%s", before);
  for (int j = 0; j < m->y_dim; j++) {
    if (m->y_names) printf("%s%s", j || before[0] ? "," : "", m->y_names[j]);
    else printf("%sy%d", j || before[0] ? "," : "", j);
  }
  printf("%s\n", after);
}

static int cmd_predict(ember_client *c, const char *model, uint64_t seed, const char *csv) {
  ember_client_model *m = NULL;
  int n, xd, rc = 1;
  float *x = read_csv(csv, &n, &xd), *y = NULL, *e = NULL, *y2 = NULL, *e2 = NULL;
  if (!x || dims(c, model, &m)) goto done;
  const int d = m->y_dim;
  y = malloc((size_t)n * d * sizeof *y);
  y2 = malloc((size_t)n * d * sizeof *y);
  e = malloc((size_t)n * sizeof *e);
  e2 = malloc((size_t)n * sizeof *e);
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.seed = seed;
  ember_client_status st;
  if (ember_client_predict(c, model, &o, x, n, xd, y, d, e, &st) != 0) {
    rc = fail_st("predict", &st);
    goto done;
  }
  /* the same rows in two calls: row_offset keeps each row's random stream */
  int half = n / 2;
  if (half > 0) {
    if (ember_client_predict(c, model, &o, x, half, xd, y2, d, e2, &st) != 0) {
      rc = fail_st("predict (first half)", &st);
      goto done;
    }
    o.row_offset = (uint64_t)half;
    if (ember_client_predict(c, model, &o, x + (size_t)half * xd, n - half, xd, y2 + (size_t)half * d, d,
                             e2 + half, &st) != 0) {
      rc = fail_st("predict (second half)", &st);
      goto done;
    }
    if (memcmp(y, y2, (size_t)n * d * sizeof *y) || memcmp(e, e2, (size_t)n * sizeof *e)) {
      fprintf(stderr, "client_it predict: two calls with row_offset answer differently from one\n");
      goto done;
    }
  }
  print_header(m, "", ",energy");
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < d; j++) printf("%s%.7g", j ? "," : "", (double)y[(size_t)i * d + j]);
    printf(",%.7g\n", (double)e[i]);
  }
  rc = 0;
done:
  free(x);
  free(y);
  free(e);
  free(y2);
  free(e2);
  ember_client_model_free(m);
  return rc;
}

static int cmd_sample(ember_client *c, const char *model, uint64_t seed, const char *csv, int k) {
  ember_client_model *m = NULL;
  int n, xd, rc = 1;
  float *x = read_csv(csv, &n, &xd), *my = NULL, *me = NULL, *mw = NULL;
  int *count = NULL;
  if (!x || dims(c, model, &m)) goto done;
  const int d = m->y_dim;
  my = malloc((size_t)n * k * d * sizeof *my);
  me = malloc((size_t)n * k * sizeof *me);
  mw = malloc((size_t)n * k * sizeof *mw);
  count = malloc((size_t)n * sizeof *count);
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.seed = seed;
  ember_client_status st;
  if (ember_client_sample(c, model, &o, NULL, x, n, xd, k, my, d, me, mw, count, &st) != 0) {
    rc = fail_st("sample", &st);
    goto done;
  }
  print_header(m, "row,rank,energy,weight", "");
  for (int i = 0; i < n; i++)
    for (int r = 0; r < count[i]; r++) {
      size_t slot = (size_t)i * k + r;
      printf("%d,%d,%.7g,%.5g", i, r, (double)me[slot], (double)mw[slot]);
      for (int j = 0; j < d; j++) printf(",%.7g", (double)my[slot * d + j]);
      putchar('\n');
    }
  rc = 0;
done:
  free(x);
  free(my);
  free(me);
  free(mw);
  free(count);
  ember_client_model_free(m);
  return rc;
}

/* n images of the model's shape from a raw file (n x h x w x c bytes), their extras from a CSV
 * with a header ("-": none): the model's images predicted (as `ember predict --energy` prints),
 * checked against the same rows in two calls (row_offset), then sampled (as `ember sample
 * --modes K` prints). */
static int cmd_images(ember_client *c, const char *model, uint64_t seed, const char *raw, const char *csv, int k) {
  ember_client_model *m = NULL;
  int n = 0, xd = 0, rc = 1;
  uint8_t *img = NULL;
  float *extra = NULL, *y = NULL, *e = NULL, *y2 = NULL, *e2 = NULL, *my = NULL, *me = NULL, *mw = NULL;
  int *count = NULL;
  if (dims(c, model, &m)) goto done;
  const size_t per = (size_t)m->image_height * m->image_width * m->image_channels;
  FILE *f = fopen(raw, "rb");
  if (!f || per == 0) {
    fprintf(stderr, "client_it images: cannot read %s, or %s is not an image model\n", raw, model);
    if (f) fclose(f);
    goto done;
  }
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  n = (int)((size_t)len / per);
  img = malloc((size_t)len + 1);
  size_t got = img ? fread(img, 1, (size_t)len, f) : 0;
  fclose(f);
  if (got != (size_t)len) goto done;
  if (strcmp(csv, "-") != 0) {
    int en;
    if (!(extra = read_csv(csv, &en, &xd)) || en != n) goto done;
  }
  ember_client_images im = {img, m->image_height, m->image_width, m->image_channels, extra, xd};
  const int d = m->y_dim;
  y = malloc((size_t)n * d * sizeof *y);
  y2 = malloc((size_t)n * d * sizeof *y);
  e = malloc((size_t)n * sizeof *e);
  e2 = malloc((size_t)n * sizeof *e);
  my = malloc((size_t)n * k * d * sizeof *my);
  me = malloc((size_t)n * k * sizeof *me);
  mw = malloc((size_t)n * k * sizeof *mw);
  count = malloc((size_t)n * sizeof *count);
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.seed = seed;
  ember_client_status st;
  if (ember_client_predict_images(c, model, &o, &im, n, y, d, e, &st) != 0) {
    rc = fail_st("predict_images", &st);
    goto done;
  }
  const int half = n / 2;
  ember_client_images tail = im;
  tail.pixels = img + (size_t)half * per;
  tail.extra = extra ? extra + (size_t)half * xd : NULL;
  if (ember_client_predict_images(c, model, &o, &im, half, y2, d, e2, &st) != 0) {
    rc = fail_st("predict_images (first half)", &st);
    goto done;
  }
  o.row_offset = (uint64_t)half;
  if (ember_client_predict_images(c, model, &o, &tail, n - half, y2 + (size_t)half * d, d, e2 + half, &st) != 0) {
    rc = fail_st("predict_images (second half)", &st);
    goto done;
  }
  if (memcmp(y, y2, (size_t)n * d * sizeof *y) || memcmp(e, e2, (size_t)n * sizeof *e)) {
    fprintf(stderr, "client_it images: two calls with row_offset answer differently from one\n");
    goto done;
  }
  o.row_offset = 0;
  o.seed = seed + 1;
  if (ember_client_sample_images(c, model, &o, NULL, &im, n, k, my, d, me, mw, count, &st) != 0) {
    rc = fail_st("sample_images", &st);
    goto done;
  }
  print_header(m, "", ",energy");
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < d; j++) printf("%s%.7g", j ? "," : "", (double)y[(size_t)i * d + j]);
    printf(",%.7g\n", (double)e[i]);
  }
  print_header(m, "row,rank,energy,weight", "");
  for (int i = 0; i < n; i++)
    for (int r = 0; r < count[i]; r++) {
      size_t slot = (size_t)i * k + r;
      printf("%d,%d,%.7g,%.5g", i, r, (double)me[slot], (double)mw[slot]);
      for (int j = 0; j < d; j++) printf(",%.7g", (double)my[slot * d + j]);
      putchar('\n');
    }
  /* a shape other than the model's is the server's INVALID_ARGUMENT, naming the model's */
  im.channels = 1;
  im.width *= 3;
  ember_client_predict_images(c, model, NULL, &im, 1, y, d, e, &st);
  fprintf(stderr, "wrong_shape %s: %s\n", ember_client_code_name(st.code), st.details);
  rc = st.code == EMBER_CLIENT_INVALID_ARGUMENT ? 0 : 1;
done:
  free(img);
  free(extra);
  free(y);
  free(e);
  free(y2);
  free(e2);
  free(my);
  free(me);
  free(mw);
  free(count);
  ember_client_model_free(m);
  return rc;
}

static void print_model(const ember_client_model *m) {
  printf("name=%s\nversion=%lld\ndefault_version=%lld\nmethod=%s\narch=%s\nwidth=%d\ndepth=%d\n", m->name,
         (long long)m->version, (long long)m->default_version, m->method, m->arch, m->width, m->depth);
  printf("x_dim=%d\ny_dim=%d\nsamples=%u\niterations=%u\nversions=", m->x_dim, m->y_dim, m->samples,
         m->iterations);
  for (size_t i = 0; i < m->n_versions; i++) printf("%s%lld", i ? "," : "", (long long)m->versions[i]);
  printf("\nx_names=");
  for (int j = 0; m->x_names && j < m->x_dim; j++) printf("%s%s", j ? "," : "", m->x_names[j]);
  printf("\ny_names=");
  for (int j = 0; m->y_names && j < m->y_dim; j++) printf("%s%s", j ? "," : "", m->y_names[j]);
  printf("\ny_lo=");
  for (int j = 0; m->y_lo && j < m->y_dim; j++) printf("%s%.7g", j ? "," : "", (double)m->y_lo[j]);
  printf("\n");
  if (m->image_height > 0)
    printf("image=%dx%dx%d\nimage_extra=%d\nimage_features=%d\nimage_conv=%s\nimage_head=%s\n", m->image_height,
           m->image_width, m->image_channels, m->image_extra, m->image_features, m->image_conv, m->image_head);
}

static int cmd_info(ember_client *c, const char *model) {
  ember_client_model *m;
  ember_client_status st;
  if (ember_client_get_model(c, model, 0, &m, &st) != 0) return fail_st("info", &st);
  print_model(m);
  ember_client_model_free(m);
  return 0;
}

static int cmd_list(ember_client *c) {
  ember_client_model *ms;
  size_t n;
  ember_client_status st;
  if (ember_client_list_models(c, &ms, &n, &st) != 0) return fail_st("list", &st);
  for (size_t i = 0; i < n; i++) printf("%s %lld\n", ms[i].name, (long long)ms[i].version);
  ember_client_models_free(ms, n);
  return 0;
}

static void report(const char *name, const ember_client_status *st) {
  static const char *const origins[] = {"server", "unreachable", "client"};
  printf("%s %s %s: %s\n", name, ember_client_code_name(st->code), origins[st->origin], st->details);
}

static int cmd_errors(ember_client *c, const char *model, int xd) {
  ember_client_status st;
  ember_client_model *m = NULL;
  static float x[4096], y[64], e[64];
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  if (xd < 1 || xd > 64) return 2;
  ember_client_get_model(c, "no-such-model", 0, &m, &st);
  report("get_unknown", &st);
  ember_client_predict(c, "no-such-model", &o, x, 1, xd, y, 1, e, &st);
  report("predict_unknown", &st);
  o.version = 99;
  ember_client_predict(c, model, &o, x, 1, xd, y, 1, e, &st);
  report("predict_version", &st);
  o.version = 0;
  ember_client_predict(c, model, &o, x, 1, xd + 1, y, 1, e, &st);
  report("predict_width", &st);
  ember_client_predict(c, model, &o, x, 1, xd, y, 7, e, &st);
  report("predict_ydim", &st);
  x[0] = NAN;
  ember_client_predict(c, model, &o, x, 1, xd, y, 1, e, &st);
  report("predict_nan", &st);
  x[0] = 0.0f;
  o.samples = 1u << 20; /* more than the server takes */
  ember_client_predict(c, model, &o, x, 1, xd, y, 1, e, &st);
  report("predict_samples", &st);
  /* a request that takes seconds, with a 1 ms deadline */
  o.samples = 4096;
  o.iterations = 50;
  o.deadline_ms = 1;
  ember_client_predict(c, model, &o, x, 32, xd, y, 1, e, &st);
  report("predict_deadline", &st);
  ember_client_predict(c, model, NULL, x, 0, xd, y, 1, e, &st);
  report("predict_norows", &st);
  ember_client *bad;
  ember_client_open(&bad, "localhost:1,localhost:2", NULL, &st);
  report("open_list", &st);
  ember_client_config cfg = EMBER_CLIENT_CONFIG_INIT;
  cfg.tls_ca_file = "/nonexistent/ca.pem";
  ember_client_open(&bad, "127.0.0.1:1", &cfg, &st);
  report("open_ca", &st);
  if (ember_client_open(&bad, "127.0.0.1:1", NULL, &st) != 0) return fail_st("open", &st);
  ember_client_predict(bad, model, NULL, x, 1, xd, y, 1, e, &st);
  report("unreachable", &st);
  ember_client_close(bad);
  return 0;
}

typedef struct thread_arg {
  ember_client *c;
  const char *model;
  const float *x, *want;
  int n, xd, d, calls, errors, mismatches;
} thread_arg;

static void *thread_main(void *p) {
  thread_arg *a = p;
  float *y = malloc((size_t)a->n * a->d * sizeof *y);
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.seed = 5;
  for (int i = 0; i < a->calls && y; i++) {
    ember_client_status st;
    if (ember_client_predict(a->c, a->model, &o, a->x, a->n, a->xd, y, a->d, NULL, &st) != 0) {
      fail_st("predict (thread)", &st);
      a->errors++;
    } else if (memcmp(y, a->want, (size_t)a->n * a->d * sizeof *y) != 0) {
      a->mismatches++;
    }
  }
  if (!y) a->errors = a->calls;
  free(y);
  return NULL;
}

static int cmd_threads(ember_client *c, const char *model, const char *csv, int nthreads, int calls) {
  ember_client_model *m = NULL;
  int n, xd, rc = 1;
  float *x = read_csv(csv, &n, &xd), *want = NULL;
  thread_arg args[32];
  pthread_t tid[32];
  if (nthreads < 1 || nthreads > 32 || !x || dims(c, model, &m)) goto done;
  want = malloc((size_t)n * m->y_dim * sizeof *want);
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.seed = 5;
  ember_client_status st;
  if (!want || ember_client_predict(c, model, &o, x, n, xd, want, m->y_dim, NULL, &st) != 0) {
    rc = fail_st("predict", &st);
    goto done;
  }
  for (int t = 0; t < nthreads; t++) {
    args[t] = (thread_arg){c, model, x, want, n, xd, m->y_dim, calls, 0, 0};
    pthread_create(&tid[t], NULL, thread_main, &args[t]);
  }
  int errors = 0, mismatches = 0;
  for (int t = 0; t < nthreads; t++) {
    pthread_join(tid[t], NULL);
    errors += args[t].errors;
    mismatches += args[t].mismatches;
  }
  printf("threads=%d calls=%d errors=%d mismatches=%d\n", nthreads, nthreads * calls, errors, mismatches);
  rc = errors || mismatches;
done:
  free(x);
  free(want);
  ember_client_model_free(m);
  return rc;
}

static int cmd_loop(ember_client *c, const char *model, const char *stopfile) {
  ember_client_model *m = NULL;
  if (dims(c, model, &m)) return 1;
  float x[64] = {0}, y[64];
  long calls = 0, failed = 0;
  ember_client_infer_opts o = EMBER_CLIENT_INFER_OPTS_INIT;
  o.samples = 64;
  while (access(stopfile, F_OK) != 0 && m->x_dim <= 64 && m->y_dim <= 64) {
    ember_client_status st;
    x[0] = (float)(calls % 7) / 7.0f;
    o.seed = (uint64_t)calls;
    if (ember_client_predict(c, model, &o, x, 1, m->x_dim, y, m->y_dim, NULL, &st) != 0) {
      fail_st("predict (loop)", &st);
      failed++;
    }
    if (++calls % 10 == 0) {
      printf("n=%ld\n", calls);
      fflush(stdout);
    }
    struct timespec pause = {0, 5 * 1000 * 1000};
    nanosleep(&pause, NULL);
  }
  printf("calls=%ld failed=%ld\n", calls, failed);
  ember_client_model_free(m);
  return failed != 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: client_it TARGET CASE ARGS... (see the file's comment)\n");
    return 2;
  }
  const char *cmd = argv[2];
  ember_client_config cfg = EMBER_CLIENT_CONFIG_INIT;
  const char *scale = getenv("EMBER_TEST_TIMEOUT_SCALE");
  cfg.deadline_ms = (int)(30000 * (scale ? atof(scale) : 1.0));
  ember_client *c;
  ember_client_status st;
  if (ember_client_open(&c, argv[1], &cfg, &st) != 0) return fail_st("open", &st);
  int rc = 2;
  if (strcmp(cmd, "predict") == 0 && argc == 6) rc = cmd_predict(c, argv[3], strtoull(argv[4], NULL, 10), argv[5]);
  else if (strcmp(cmd, "sample") == 0 && argc == 7)
    rc = cmd_sample(c, argv[3], strtoull(argv[4], NULL, 10), argv[5], atoi(argv[6]));
  else if (strcmp(cmd, "images") == 0 && argc == 8)
    rc = cmd_images(c, argv[3], strtoull(argv[4], NULL, 10), argv[5], argv[6], atoi(argv[7]));
  else if (strcmp(cmd, "info") == 0 && argc == 4) rc = cmd_info(c, argv[3]);
  else if (strcmp(cmd, "list") == 0 && argc == 3) rc = cmd_list(c);
  else if (strcmp(cmd, "errors") == 0 && argc == 5) rc = cmd_errors(c, argv[3], atoi(argv[4]));
  else if (strcmp(cmd, "threads") == 0 && argc == 7)
    rc = cmd_threads(c, argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
  else if (strcmp(cmd, "loop") == 0 && argc == 5) rc = cmd_loop(c, argv[3], argv[4]);
  else fprintf(stderr, "client_it: unknown case or wrong arguments: %s\n", cmd);
  ember_client_close(c);
  return rc;
}
