/* energies.c - a test tool: ember's own energies and dE/dy for given inputs, so that other
 * implementations of the network (python/ember_torch, tests/integration/test_torch.py) can be
 * compared with it on the same checkpoint.
 *
 *   ember_energies MODEL.safetensors ROWS.txt
 *
 * ROWS.txt holds numbers separated by commas, spaces or newlines: rows of x_dim normalised x
 * values then y_dim normalised y values (mse models: x only). For every row it prints one line:
 * for each energy net (an ardfo model's prefix nets j = 1..y_dim, net j seeing y_1..y_j; other
 * methods' one net) the energy and then dE/dy (j values), as %.9g, comma-separated; an mse
 * model's line is its y_dim normalised outputs. Each row is its own query (late fusion: the
 * x part once, as inference computes it). Exit status 0, or 1 with a message on stderr.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/model.h"
#include "ember/net.h"

static float *read_numbers(const char *path, size_t *n) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  size_t cap = 1024, len = 0;
  float *v = malloc(cap * sizeof *v);
  int c;
  while (v && (c = fgetc(f)) != EOF) {
    if (c == ',' || c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    ungetc(c, f);
    if (len == cap) {
      float *w = realloc(v, 2 * cap * sizeof *v);
      if (!w) break;
      v = w;
      cap *= 2;
    }
    if (fscanf(f, "%f", &v[len]) != 1) {
      free(v);
      v = NULL;
      break;
    }
    len++;
  }
  fclose(f);
  *n = len;
  return v;
}

/* Energies and dE/dy of net (in_y = j) for `rows` rows of x (x_dim) and y (j columns). */
static int run_net(const ember_net *net, const float *x, const float *y, int rows, float *e, float *dy) {
  ember_net_ws ws;
  ember_err err;
  if (ember_net_ws_init(&ws, &net->shape, rows, rows, &err) < 0) {
    fprintf(stderr, "ember_energies: %s\n", err.msg);
    return -1;
  }
  float *ones = malloc((size_t)rows * net->shape.out * sizeof *ones);
  if (!ones) {
    ember_net_ws_free(&ws);
    return -1;
  }
  for (size_t i = 0; i < (size_t)rows * net->shape.out; i++) ones[i] = 1.0f;
  ember_net_fuse_x(net, x, rows, ws.hx);
  ember_net_forward(net, &ws, ws.hx, net->shape.in_y ? y : NULL, rows, 1, e);
  if (dy) ember_net_backward(net, &ws, NULL, y, rows, 1, ones, NULL, dy);
  free(ones);
  ember_net_ws_free(&ws);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: ember_energies MODEL.safetensors ROWS.txt\n");
    return 1;
  }
  ember_model m;
  ember_err err;
  if (ember_model_load(argv[1], &m, &err) < 0) {
    fprintf(stderr, "ember_energies: %s\n", err.msg);
    return 1;
  }
  const int mse = m.method == EMBER_METHOD_MSE, dx = m.x_dim, d = m.y_dim;
  const int cols = dx + (mse ? 0 : d);
  size_t n = 0;
  float *v = read_numbers(argv[2], &n);
  if (!v || n == 0 || n % (size_t)cols) {
    fprintf(stderr, "ember_energies: %s: expected rows of %d numbers, got %zu numbers\n", argv[2], cols, n);
    free(v);
    ember_model_free(&m);
    return 1;
  }
  const int rows = (int)(n / (size_t)cols);
  float *x = malloc((size_t)rows * dx * sizeof *x), *y = malloc((size_t)rows * (d + 1) * sizeof *y);
  float *out = malloc((size_t)rows * (d + 1) * (d + 1) * sizeof *out), *dy = malloc((size_t)rows * d * sizeof *dy);
  int rc = !x || !y || !out || !dy;
  const int nets = m.method == EMBER_METHOD_ARDFO ? d : 1;
  for (int j = mse ? d : (nets == 1 ? d : 1); !rc && j <= d; j++) {
    /* net of y-prefix length j: rows of x, and the first j y columns */
    for (int r = 0; r < rows; r++) {
      memcpy(x + (size_t)r * dx, v + (size_t)r * cols, (size_t)dx * sizeof(float));
      if (!mse) memcpy(y + (size_t)r * j, v + (size_t)r * cols + dx, (size_t)j * sizeof(float));
    }
    const ember_net *net = m.method == EMBER_METHOD_ARDFO ? ember_model_prefix_net(&m, j) : &m.net;
    float *e = out + (size_t)(j - 1) * rows * (d + 1);
    rc = run_net(net, x, y, rows, e, mse ? NULL : dy) < 0;
    if (!mse) /* per row: energy, then dE/dy, placed after the energies of this net */
      memcpy(e + rows, dy, (size_t)rows * j * sizeof(float));
  }
  for (int r = 0; !rc && r < rows; r++) {
    int first = 1;
    for (int j = mse ? d : (nets == 1 ? d : 1); j <= d; j++) {
      const float *e = out + (size_t)(j - 1) * rows * (d + 1);
      if (mse) {
        for (int a = 0; a < d; a++) printf("%s%.9g", a ? "," : "", (double)e[(size_t)r * d + a]);
        continue;
      }
      printf("%s%.9g", first ? "" : ",", (double)e[r]);
      for (int a = 0; a < j; a++) printf(",%.9g", (double)e[rows + (size_t)r * j + a]);
      first = 0;
    }
    printf("\n");
  }
  free(v);
  free(x);
  free(y);
  free(out);
  free(dy);
  ember_model_free(&m);
  if (rc) fprintf(stderr, "ember_energies: out of memory\n");
  return rc;
}
