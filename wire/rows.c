/* rows.c - a Predict or Sample request's x and how many rows it holds.
 *
 * x travels flat (repeated float, row-major). Divisibility alone cannot catch a client that
 * sends two rows of a 2-column model where it meant one row of a 4-column one, so requests
 * carry `rows` (a one-field oneof, for presence): the CLI always sets it, and emberd then wants
 * exactly rows x x_dim values and names both sizes when they differ. A request without it (older
 * clients, hand-written ones) is read as before: rows = len(x) / x_dim, len(x) a multiple.
 *
 * The client half (setting x and rows) is rows_send.c, which libember_client compiles without
 * libember.
 *
 * What it does not do: emberd's own limit on rows (--max-rows), or look at the values.
 */
#include <stdint.h>

#include "wire.h"

/* n values of x against x_dim d and, when has_rows, the rows the request says it holds. */
static int rows_of(size_t n, int has_rows, uint32_t said, int d, int *rows, ember_err *err) {
  if (n == 0)
    return ember_fail(err, EMBER_EINVAL, "x is empty: expected one or more rows of %d values (row-major)", d);
  if (has_rows && (uint64_t)said * (uint64_t)d != (uint64_t)n) {
    if (n % (size_t)d == 0)
      return ember_fail(err, EMBER_EINVAL, "x has %zu values = %zu rows of x_dim %d, request says rows %u", n,
                        n / (size_t)d, d, said);
    return ember_fail(err, EMBER_EINVAL,
                      "x has %zu values, not a whole number of rows of x_dim %d; request says rows %u (%llu values)",
                      n, d, said, (unsigned long long)said * (unsigned long long)d);
  }
  if (n % (size_t)d != 0)
    return ember_fail(err, EMBER_EINVAL,
                      "x has %zu values: expected a multiple of the model's x_dim %d (row-major rows)", n, d);
  size_t r = n / (size_t)d;
  *rows = r > (size_t)INT32_MAX ? INT32_MAX : (int)r; /* a message is at most 2 GiB: never */
  return 0;
}

int ember_wire_predict_rows(const Ember__V1__PredictRequest *req, int x_dim, int *rows,
                            ember_err *err) {
  return rows_of(req->n_x, req->optional_rows_case == EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS_ROWS,
                 req->rows, x_dim, rows, err);
}

int ember_wire_sample_rows(const Ember__V1__SampleRequest *req, int x_dim, int *rows,
                           ember_err *err) {
  return rows_of(req->n_x, req->optional_rows_case == EMBER__V1__SAMPLE_REQUEST__OPTIONAL_ROWS_ROWS,
                 req->rows, x_dim, rows, err);
}
