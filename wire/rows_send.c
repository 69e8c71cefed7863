/* rows_send.c - the client half of rows.c: a Predict or Sample request's x and its `rows`, and
 * an image model's images with their shape.
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

/* The image shape message and the images' bytes, shared by both requests. */
static void set_images(ProtobufCBinaryData *images, Ember__V1__ImageShape *shape, const uint8_t *img,
                       int rows, int h, int w, int c) {
  const Ember__V1__ImageShape init = EMBER__V1__IMAGE_SHAPE__INIT;
  *shape = init;
  shape->height = (uint32_t)h;
  shape->width = (uint32_t)w;
  shape->channels = (uint32_t)c;
  images->len = (size_t)rows * (size_t)h * (size_t)w * (size_t)c;
  images->data = (uint8_t *)img;
}

void ember_wire_predict_images(Ember__V1__PredictRequest *req, Ember__V1__ImageShape *shape,
                               const uint8_t *img, int rows, int h, int w, int c,
                               const float *extra_x, int extra) {
  set_images(&req->images, shape, img, rows, h, w, c);
  req->image_shape = shape;
  ember_wire_predict_x(req, extra > 0 ? extra_x : NULL, rows, extra > 0 ? extra : 0);
}

void ember_wire_sample_images(Ember__V1__SampleRequest *req, Ember__V1__ImageShape *shape,
                              const uint8_t *img, int rows, int h, int w, int c,
                              const float *extra_x, int extra) {
  set_images(&req->images, shape, img, rows, h, w, c);
  req->image_shape = shape;
  ember_wire_sample_x(req, extra > 0 ? extra_x : NULL, rows, extra > 0 ? extra : 0);
}
