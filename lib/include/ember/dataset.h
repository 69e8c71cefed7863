/* ember/dataset.h - (x, y) datasets from CSV and NumPy .npz files.
 *
 * CSV: comma-separated numbers, one example per line, an optional header line (recognised
 * because one of its fields is not a number). The last y_dim columns are y, the rest x.
 * .npz: a NumPy zip archive (stored or deflated) holding arrays `x` and `y` (x.npy, y.npy),
 * float32 or float64, C or Fortran order, 1-D meaning one column.
 *
 * Nothing is dropped silently: NaN/Inf, ragged rows, empty files, missing arrays and
 * dimension mismatches are refused with a message naming the file and the line (CSV, 1-based,
 * counting the header) or the array and flat index (.npz).
 *
 * CSV details: numbers are plain decimals ("-1.5e3"; no hex, no quotes), read the same in any
 * locale; spaces around fields, CRLF line ends, a UTF-8 byte order mark and blank lines at the
 * end are accepted, blank lines before data are not. Only the first line can be a header, and
 * only when none of its fields is a number (NaN and Inf count as numbers): a first line that
 * mixes names and numbers is refused, so a bad data row is never taken for a header. The
 * header, when present, must have as many columns as the data.
 * .npz details: value errors name the array's own index, "y[12,0]" (2-D) or "y[12]" (1-D);
 * two members that numpy reads as one array (two "x.npy", or "x" beside "x.npy") are refused.
 * Limits: 4 GiB per file (and per .npy member), 2^31-1 rows, EMBER_MAX_COLS (65536) columns.
 *
 *     ember_dataset ds;
 *     ember_err err;
 *     if (ember_dataset_read("pairs.csv", -1, 2, &ds, &err) < 0) { puts(err.msg); return 1; }
 *     // ds.n rows, ds.x (n, x_dim), ds.y (n, 2)
 *     ember_dataset_free(&ds);
 */
#ifndef EMBER_DATASET_H
#define EMBER_DATASET_H

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_dataset {
  int n;      /* rows */
  int x_dim;  /* columns of x (>= 1) */
  int y_dim;  /* columns of y (0 for inputs-only files) */
  float *x;   /* (n, x_dim), row-major */
  float *y;   /* (n, y_dim), row-major; NULL when y_dim == 0 */
} ember_dataset;

/* The most columns a dataset may have (x and y together). */
#define EMBER_MAX_COLS 65536

/* Reads a dataset from path ("-" = standard input). The format is chosen by content: a zip
 * signature means .npz, anything else is CSV.
 *   x_dim: expected number of x columns, or -1 to take whatever the file has.
 *   y_dim: number of y columns. 0 reads inputs only (CSV: every column is x; .npz: only `x` is
 *          needed). For CSV, -1 means 1. For .npz, -1 takes y's width from the array and a
 *          positive value must match it.
 * On success fills *ds (caller frees with ember_dataset_free) and returns 0; on failure *ds is
 * left empty and an EMBER_E* code is returned with the reason in err. */
int ember_dataset_read(const char *path, int x_dim, int y_dim, ember_dataset *ds, ember_err *err);

/* The same from a memory buffer; name is used in messages only. */
int ember_dataset_read_mem(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                           ember_dataset *ds, ember_err *err);

void ember_dataset_free(ember_dataset *ds);

/* Held-out rows for validation: ember_dataset_split_rows(n, frac) of n rows, round(frac * n)
 * but at least 1 and at most n - 1 (0 when n < 2 or frac is not in (0, 1)). */
int ember_dataset_split_rows(int n, float frac);
/* Splits ds (n >= 2, y_dim >= 1) into *train and *val (caller frees both): val gets
 * ember_dataset_split_rows(n, frac) rows chosen by a permutation drawn from random stream
 * (seed, EMBER_SPLIT_STREAM), train the rest; each part keeps the file's order. The same rows,
 * frac and seed always give the same split, whatever the thread count. frac in (0, 1). */
#define EMBER_SPLIT_STREAM (UINT64_C(5) << 60)
int ember_dataset_split(const ember_dataset *ds, float frac, uint64_t seed, ember_dataset *train,
                        ember_dataset *val, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
