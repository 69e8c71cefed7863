/* rows_send.c - the client half of rows.c: a Predict or Sample request's x and its `rows`.
 *
 * Apart from rows.c because libember_client (client/lib/) compiles it into its shared library,
 * which must not need libember: this file calls nothing but stores pointers and counts.
 */
#include "wire.h"

void ember_wire_predict_x(Ember__V1__PredictRequest *req, const float *x, int rows, int x_dim) {
  req->n_x = (size_t)rows * (size_t)x_dim;
  req->x = (float *)x;
  req->optional_rows_case = EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS_ROWS;
  req->rows = (uint32_t)rows;
}

void ember_wire_sample_x(Ember__V1__SampleRequest *req, const float *x, int rows, int x_dim) {
  req->n_x = (size_t)rows * (size_t)x_dim;
  req->x = (float *)x;
  req->optional_rows_case = EMBER__V1__SAMPLE_REQUEST__OPTIONAL_ROWS_ROWS;
  req->rows = (uint32_t)rows;
}
