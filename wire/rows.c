/* rows.c - a Predict or Sample request's x and how many rows it holds.
 *
 * x travels flat (repeated float, row-major). Divisibility alone cannot catch a client that
 * sends two rows of a 2-column model where it meant one row of a 4-column one, so requests
 * carry `rows` (a one-field oneof, for presence): the CLI always sets it, and emberd then wants
 * exactly rows x x_dim values and names both sizes when they differ. A request without it (older
 * clients, hand-written ones) is read as before: rows = len(x) / x_dim, len(x) a multiple.
 *
 * An image model's request carries its rows as images (raw uint8 bytes, NHWC) with their shape,
 * which must be the model's, and x holds only each row's extra observations: the shape, the
 * byte count, `rows` and x's length must all agree, and the refusal names what the model takes.
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

/* ---- image models ---------------------------------------------------------------------------- */

/* What one request's input fields say, whichever message carries them. */
typedef struct input_fields {
  size_t n_x;
  int has_rows;
  uint32_t said;
  const ProtobufCBinaryData *images;
  const Ember__V1__ImageShape *shape;
} input_fields;

/* The request's images against the encoder's shape, and x against its extras. */
static int image_rows_of(const input_fields *in, const ember_encoder_shape *s, int *rows, ember_err *err) {
  const int E = s->extra;
  const size_t per = (size_t)s->h * (size_t)s->w * (size_t)s->c, bytes = in->images->len;
  if (bytes == 0 && in->n_x > 0)
    return ember_fail(err, EMBER_EINVAL,
                      "the model takes %dx%dx%d images (height x width x channels): send them as uint8 bytes "
                      "in images with image_shape, and %d extra observations per image in x; x alone "
                      "(%zu values) is not an image",
                      s->h, s->w, s->c, E, in->n_x);
  if (bytes == 0)
    return ember_fail(err, EMBER_EINVAL, "images is empty: expected one or more %dx%dx%d images (uint8, "
                      "row-major height x width x channels, %zu bytes each)", s->h, s->w, s->c, per);
  if (!in->shape)
    return ember_fail(err, EMBER_EINVAL, "image_shape is not set: the model takes %dx%dx%d images (height x "
                      "width x channels); say so in image_shape", s->h, s->w, s->c);
  if (in->shape->height != (uint32_t)s->h || in->shape->width != (uint32_t)s->w ||
      in->shape->channels != (uint32_t)s->c)
    return ember_fail(err, EMBER_EINVAL, "image_shape is %ux%ux%u; the model takes %dx%dx%d images (height x "
                      "width x channels)", in->shape->height, in->shape->width, in->shape->channels, s->h, s->w, s->c);
  if (in->has_rows && (uint64_t)in->said * per != (uint64_t)bytes) {
    if (bytes % per == 0)
      return ember_fail(err, EMBER_EINVAL, "images has %zu bytes = %zu images of %dx%dx%d, request says rows %u",
                        bytes, bytes / per, s->h, s->w, s->c, in->said);
    return ember_fail(err, EMBER_EINVAL, "images has %zu bytes, not a whole number of %dx%dx%d images (%zu bytes "
                      "each); request says rows %u (%llu bytes)", bytes, s->h, s->w, s->c, per, in->said,
                      (unsigned long long)in->said * (unsigned long long)per);
  }
  if (bytes % per != 0)
    return ember_fail(err, EMBER_EINVAL, "images has %zu bytes, not a whole number of %dx%dx%d images (%zu bytes "
                      "each)", bytes, s->h, s->w, s->c, per);
  const size_t n = bytes / per;
  if ((uint64_t)in->n_x != (uint64_t)n * (uint64_t)E) {
    if (E == 0)
      return ember_fail(err, EMBER_EINVAL, "x has %zu values; the model takes no extra observations, so x must be "
                        "empty with images", in->n_x);
    return ember_fail(err, EMBER_EINVAL, "x has %zu values; %zu images with the model's %d extra observations "
                      "each need %llu", in->n_x, n, E, (unsigned long long)n * (unsigned long long)E);
  }
  *rows = n > (size_t)INT32_MAX ? INT32_MAX : (int)n;
  return 0;
}

static int input_of(const input_fields *in, int x_dim, const ember_encoder_shape *enc, int *rows,
                    ember_err *err) {
  if (enc) return image_rows_of(in, enc, rows, err);
  if (in->images->len > 0 || in->shape)
    return ember_fail(err, EMBER_EINVAL, "the model takes vectors, not images: send rows of its x_dim %d values in x "
                      "and leave images and image_shape unset", x_dim);
  return rows_of(in->n_x, in->has_rows, in->said, x_dim, rows, err);
}

int ember_wire_predict_input(const Ember__V1__PredictRequest *req, int x_dim, const ember_encoder_shape *enc,
                             int *rows, ember_err *err) {
  const input_fields in = {req->n_x, req->optional_rows_case == EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS_ROWS,
                           req->rows, &req->images, req->image_shape};
  return input_of(&in, x_dim, enc, rows, err);
}

int ember_wire_sample_input(const Ember__V1__SampleRequest *req, int x_dim, const ember_encoder_shape *enc,
                            int *rows, ember_err *err) {
  const input_fields in = {req->n_x, req->optional_rows_case == EMBER__V1__SAMPLE_REQUEST__OPTIONAL_ROWS_ROWS,
                           req->rows, &req->images, req->image_shape};
  return input_of(&in, x_dim, enc, rows, err);
}
