/* fuzz_dataset.c - libFuzzer targets: bytes as a dataset, CSV (fuzz_csv, built with FUZZ_CSV)
 * or .npz (fuzz_npz, FUZZ_NPZ).
 *
 * ember_dataset_read_mem picks the format by content (a zip signature means .npz), so each
 * target keeps to its own format and leaves the other's inputs alone. Every input is read with
 * the shapes callers ask for: x inferred and y from the file (ember train: a CSV header's y:
 * marks, an .npz's y), y named by --y-cols, inputs only (predict files), y_dim 2 (a
 * multi-dimensional y) and a fixed x_dim (a model's). Beyond "no crash, no leak, no undefined
 * behaviour" it asserts what dataset.h promises: a refusal leaves the dataset empty with a
 * message; an accepted one has the asked-for shape, at least one row, finite values only, and
 * column names (when it has any) that are valid and distinct.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ember/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, const char *msg) {
  if (ok) return;
  fprintf(stderr, "fuzz_dataset: %s (%s)\n", what, msg ? msg : "");
  abort();
}

static int is_zip(const uint8_t *b, size_t n) {
  return n >= 4 && b[0] == 'P' && b[1] == 'K' && ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6));
}

static void read_as(const uint8_t *data, size_t size, int x_dim, int y_dim, const char *y_cols) {
  ember_dataset ds;
  ember_err err;
  err.msg[0] = 0;
  ember_dataset_spec spec = {x_dim, y_dim, y_cols};
  int rc = ember_dataset_load_mem(data, size, "fuzz", &spec, &ds, &err);
  if (rc < 0) {
    check(ds.n == 0 && ds.x == NULL && ds.y == NULL && !ds.x_names && !ds.y_names,
          "a refusal must leave the dataset empty", err.msg);
    check(err.msg[0] != 0, "a refusal must say why", NULL);
    return;
  }
  check(ds.n >= 1 && ds.x_dim >= 1 && ds.x != NULL, "an accepted dataset has rows and x columns", NULL);
  check(x_dim < 0 || ds.x_dim == x_dim, "x_dim as asked", NULL);
  check(y_dim < 0 || ds.y_dim == y_dim, "y_dim as asked", NULL);
  check((ds.y_dim == 0) == (ds.y == NULL), "y present exactly when y_dim > 0", NULL);
  for (size_t i = 0; i < (size_t)ds.n * (size_t)ds.x_dim; i++) check(isfinite(ds.x[i]), "x finite", NULL);
  for (size_t i = 0; i < (size_t)ds.n * (size_t)ds.y_dim; i++) check(isfinite(ds.y[i]), "y finite", NULL);
  check(y_dim != 0 || (!ds.x_names && !ds.y_names), "inputs-only reads carry no names", NULL);
  check(ember_names_check((const char *const *)ds.x_names, ds.x_dim, (const char *const *)ds.y_names, ds.y_dim,
                          &err) == 0, "names valid and distinct", err.msg);
  ember_dataset_free(&ds);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#if defined(FUZZ_NPZ)
  if (!is_zip(data, size)) return 0;
#else
  if (is_zip(data, size)) return 0;
#endif
  read_as(data, size, -1, -1, NULL);
  read_as(data, size, -1, -1, "y, b");
  read_as(data, size, -1, 0, NULL);
  read_as(data, size, -1, 2, NULL);
  read_as(data, size, 2, 1, NULL);
  return 0;
}
