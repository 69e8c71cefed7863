/* testutil.c - scratch files and float comparisons for the tests. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tu_paths[8][1024];

static const char *tu_dir(void) {
  static char dir[900];
  if (dir[0]) return dir;
  const char *base = getenv("EMBER_TEST_TMP");
  if (!base || !*base) base = "/tmp";
  mkdir(base, 0755);
  snprintf(dir, sizeof dir, "%s/ember-test-%ld", base, (long)getpid());
  if (mkdir(dir, 0755) < 0 && errno != EEXIST) fail_msg("cannot create %s", dir);
  return dir;
}

const char *tu_path(int slot, const char *name) {
  assert_true(slot >= 0 && slot < 8);
  snprintf(tu_paths[slot], sizeof tu_paths[slot], "%s/%s", tu_dir(), name);
  return tu_paths[slot];
}

void tu_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot write %s", path);
  if (len && fwrite(data, 1, len, f) != len) fail_msg("short write %s", path);
  fclose(f);
}

void *tu_read_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot read %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) fail_msg("short read %s", path);
  buf[n] = 0;
  fclose(f);
  *len = (size_t)n;
  return buf;
}

void tu_dataset_alloc(ember_dataset *ds, int n, int x_dim, int y_dim) {
  memset(ds, 0, sizeof *ds);
  ds->n = n;
  ds->x_dim = x_dim;
  ds->y_dim = y_dim;
  ds->x = malloc(sizeof(float) * (size_t)n * (size_t)x_dim);
  ds->y = malloc(sizeof(float) * (size_t)n * (size_t)y_dim);
  assert_non_null(ds->x);
  assert_non_null(ds->y);
}

int tu_fd_stride(void) {
  const char *s = getenv("EMBER_TEST_FD_STRIDE");
  int k = s && *s ? atoi(s) : 1;
  return k > 1 ? k : 1;
}

double tu_max_rel_diff(const float *a, const float *b, size_t n) {
  double worst = 0;
  for (size_t i = 0; i < n; i++) {
    double scale = fmax(1.0, fmax(fabs(a[i]), fabs(b[i])));
    double d = fabs((double)a[i] - (double)b[i]) / scale;
    if (!(d <= worst)) worst = d; /* NaN propagates as the worst */
  }
  return worst;
}
