/* ember/dataset.h - (x, y) datasets from CSV and NumPy .npz files.
 *
 * CSV: comma-separated numbers, one example per line, an optional header line (recognised
 * because none of its fields is a number) that names the columns. Which columns are y is
 * never guessed; it is, in this order of precedence:
 *   - the header's columns named by y_cols ("ax,ay"; y in that order), or
 *   - the header's columns marked with a "y:" prefix ("px,py,y:ax,y:ay"; y in file order), or
 *   - the last y_dim columns.
 * Any two of these given together must agree. A file with none of them (y_dim -1, no marks,
 * no y_cols) is refused with its header and the choices; so is a headerless file without
 * y_dim. The rest of the columns are x, in file order.
 * .npz: a NumPy zip archive (stored or deflated) holding arrays `x` and `y` (x.npy, y.npy),
 * float32 or float64, C or Fortran order, 1-D meaning one column; optionally `x_names` and
 * `y_names`, 1-D string arrays (numpy's '<U' or '|S') with one name per column.
 *
 * Column names: from the header ("y:" taken off; an empty header field gets its default) or
 * the name arrays; a file without names leaves x_names and y_names NULL, which models read
 * as x0, x1, ... and y0, y1, ... A name is 1..EMBER_MAX_NAME bytes of UTF-8 without control
 * characters or commas, is not a number and does not start with "y:"; the columns' names
 * must be distinct (ember_names_check).
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
  /* (x_dim) and (y_dim) column names, each one allocation (ember_names_new); NULL when the
   * file names none (inputs-only reads never fill them) */
  char **x_names, **y_names;
  /* Image data (an .npz whose `x` is uint8 of shape (n, H, W, C) or (n, H, W)): the images,
   * (n, img_h, img_w, img_c) row-major, and x holds the optional float array `x_extra`
   * (n, k) of extra observations (x_dim = k, x NULL and x_dim 0 without it). NULL for vector
   * data. docs/images.md. */
  uint8_t *img;
  int img_h, img_w, img_c;
} ember_dataset;

/* The most columns a dataset may have (x and y together). */
#define EMBER_MAX_COLS 65536

/* Reads a dataset from path ("-" = standard input). The format is chosen by content: a zip
 * signature means .npz, anything else is CSV.
 *   x_dim: expected number of x columns, or -1 to take whatever the file has.
 *   y_dim: number of y columns. 0 reads inputs only (CSV: every column is x; .npz: only `x` is
 *          needed). -1: CSV, the header's "y:" marks (refused without); .npz, y's width from
 *          the array. A positive value must match the marks or the array.
 * On success fills *ds (caller frees with ember_dataset_free) and returns 0; on failure *ds is
 * left empty and an EMBER_E* code is returned with the reason in err. */
int ember_dataset_read(const char *path, int x_dim, int y_dim, ember_dataset *ds, ember_err *err);

/* The same from a memory buffer; name is used in messages only. */
int ember_dataset_read_mem(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                           ember_dataset *ds, ember_err *err);

/* What to read, for callers that also name y's columns (ember train --y-cols). */
typedef struct ember_dataset_spec {
  int x_dim;          /* as ember_dataset_read's */
  int y_dim;          /* as ember_dataset_read's */
  const char *y_cols; /* CSV with a header: "ax,ay", the names of y's columns in y's order
                         (spaces around names ignored); NULL or "": none */
} ember_dataset_spec;

int ember_dataset_load(const char *path, const ember_dataset_spec *spec, ember_dataset *ds,
                       ember_err *err);
int ember_dataset_load_mem(const void *buf, size_t len, const char *name,
                           const ember_dataset_spec *spec, ember_dataset *ds, ember_err *err);

void ember_dataset_free(ember_dataset *ds);

/* ---- column names ------------------------------------------------------------------------ */

#define EMBER_MAX_NAME 64

/* Whether the n bytes at s are a column name (see above); 0, or EMBER_EINVAL with the reason
 * ("\"1.5\" is a number"), without a file or column in it: callers say which. */
int ember_name_check(const char *s, size_t n, ember_err *err);

/* nx x names and ny y names: each a name, all distinct. Either array may be NULL (not
 * checked). 0, or EMBER_EINVAL naming the first bad one ("x_names[2] \"a,b\": ..."). */
int ember_names_check(const char *const *x_names, int nx, const char *const *y_names, int ny,
                      ember_err *err);

/* n names in one allocation (release with free()): copies of names, or prefix0, prefix1, ...
 * when names is NULL. NULL when out of memory (or n < 1). */
char **ember_names_new(const char *const *names, int n, char prefix);
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
