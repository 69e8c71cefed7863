/* encoder.c - the image encoder's forward and backward passes: im2col + sgemm convolutions,
 * ReLU, and the spatial soft-argmax or average-pooling head.
 *
 * Why it is built this way:
 * - A convolution is a matrix product once each output position's receptive field is laid out
 *   as a row (im2col): rows = positions, columns = k x k x in_c (kernel row, kernel column,
 *   channel), the order of the NHWC input, so that each kernel row of a patch is one contiguous
 *   run of k x in_c values, copied (or accumulated, in col2im) in one go. PyTorch's weight is
 *   OIHW (in_c x k x k per output): each call permutes it into the workspace (out_c x patch
 *   values per layer, negligible next to the product), and the weight gradient is computed in
 *   the same order and permuted back.
 * - Several images share one product: a layer's positions are few (a 64x64 frame's second
 *   layer has under a thousand), so a group of whole images is laid out together, as many as
 *   fit in about a thousand rows (one image when a layer has more positions). Every group of a
 *   layer has the same number of rows (the group's images, padded with zero rows to a multiple
 *   of 48), whatever the call's image count or the workspace's size: OpenBLAS computes a row
 *   with other instructions in a ragged tail than in a full block (net.c, pad_rows), so
 *   without this an image's features could change in their last bit with the batch it came
 *   in, and server answers with the batching. Rounding the group down, not up, keeps a lone
 *   image (a robot's query) from paying for a padded second one.
 * - The input is uint8 and is read straight into the first layer's im2col rows, scaled by
 *   1/255: no float copy of the images. The first layer's input needs no gradient.
 * - The workspace is sized once for max_images (ember_encoder_ws_init); forward and backward
 *   allocate nothing.
 * - ReLU's derivative at 0 is 0 (mask = activation > 0), as in net.c.
 *
 * - Zero padding (PyTorch's Conv2d padding=p) is written as zeros into the im2col rows of
 *   positions whose receptive field leaves the input; the input itself is never copied into a
 *   padded buffer.
 *
 * What it does not do: pooling between layers, dilation, batch normalisation, or threads
 * (callers give each thread its own workspace and images).
 */
#include "ember/encoder.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#define ENC_ROW_BLOCK 48
#define ENC_GROUP_ROWS 1024
/* at most this many images per group, so that a layer of few positions does not compute a
 * thousand images' rows for a call of a few (a 1x1 output would otherwise group 1024 images) */
#define ENC_GROUP_IMAGES 64

static const char *const head_names[] = {"softargmax", "pool"};

const char *ember_head_name(ember_head h) {
  return (unsigned)h < 2 ? head_names[h] : "unknown";
}

int ember_head_parse(const char *s, ember_head *out) {
  for (int i = 0; s && i < 2; i++)
    if (strcmp(s, head_names[i]) == 0) {
      *out = (ember_head)i;
      return 0;
    }
  return EMBER_EINVAL;
}

/* a decimal integer 0..99999 at *p, moving *p past it */
static int parse_count(const char **p, int *out) {
  const char *s = *p;
  long v = 0;
  int digits = 0;
  while (*s >= '0' && *s <= '9' && digits < 6) v = v * 10 + (*s++ - '0'), digits++;
  if (digits == 0 || digits > 5) return -1;
  *out = (int)v;
  *p = s;
  return 0;
}

/* the same, 1..99999 */
static int parse_small(const char **p, int *out) {
  const char *s = *p;
  if (parse_count(&s, out) < 0 || *out < 1) return -1;
  *p = s;
  return 0;
}

int ember_conv_spec_parse(const char *s, ember_encoder_shape *shape, ember_err *err) {
  const char *p = s;
  int n = 0;
  if (!s || !*s) return ember_fail(err, EMBER_EINVAL, "no convolution layers given (want e.g. 16:5:2,32:3:1)");
  for (;;) {
    if (n == EMBER_MAX_CONV)
      return ember_fail(err, EMBER_EINVAL, "\"%s\": at most %d convolution layers", s, EMBER_MAX_CONV);
    ember_conv_spec *c = &shape->conv[n];
    c->pad = 0;
    if (parse_small(&p, &c->channels) < 0 || *p++ != ':' || parse_small(&p, &c->kernel) < 0 ||
        *p++ != ':' || parse_small(&p, &c->stride) < 0 ||
        (*p == ':' && (p++, parse_count(&p, &c->pad) < 0)))
      return ember_fail(err, EMBER_EINVAL,
                        "\"%s\": each convolution layer is channels:kernel:stride, three positive "
                        "integers, or channels:kernel:stride:pad with zero padding pad >= 0 (e.g. "
                        "16:5:2:2,32:3:1:1)", s);
    n++;
    if (*p == 0) break;
    if (*p++ != ',')
      return ember_fail(err, EMBER_EINVAL, "\"%s\": layers are separated by commas (e.g. 16:5:2,32:3:1)", s);
  }
  shape->nconv = n;
  return 0;
}

void ember_conv_spec_text(const ember_encoder_shape *shape, char *buf, size_t len) {
  size_t at = 0;
  if (len) buf[0] = 0;
  for (int i = 0; i < shape->nconv && at + 1 < len; i++) {
    const ember_conv_spec *c = &shape->conv[i];
    int w = snprintf(buf + at, len - at, "%s%d:%d:%d", i ? "," : "", c->channels, c->kernel, c->stride);
    if (w < 0) break;
    at += (size_t)w;
    if (c->pad && at + 1 < len) {
      if ((w = snprintf(buf + at, len - at, ":%d", c->pad)) < 0) break;
      at += (size_t)w;
    }
  }
}

/* the layers' geometry, filled into L (which may be NULL); 0 or a message in err */
static int geometry(const ember_encoder_shape *s, ember_conv *L, ember_err *err) {
  int h = s->h, w = s->w, c = s->c;
  for (int i = 0; i < s->nconv; i++) {
    const ember_conv_spec *cs = &s->conv[i];
    if (cs->channels < 1 || cs->channels > EMBER_MAX_CONV_CHANNELS)
      return ember_fail(err, EMBER_EINVAL, "convolution %d: channels must be 1..%d, got %d", i,
                        EMBER_MAX_CONV_CHANNELS, cs->channels);
    if (cs->kernel < 1 || cs->kernel > EMBER_MAX_KERNEL)
      return ember_fail(err, EMBER_EINVAL, "convolution %d: kernel must be 1..%d, got %d", i,
                        EMBER_MAX_KERNEL, cs->kernel);
    if (cs->stride < 1 || cs->stride > cs->kernel)
      return ember_fail(err, EMBER_EINVAL, "convolution %d: stride must be 1..kernel (%d), got %d", i,
                        cs->kernel, cs->stride);
    if (cs->pad < 0 || cs->pad >= cs->kernel)
      return ember_fail(err, EMBER_EINVAL, "convolution %d: padding must be 0..kernel - 1 (%d), got %d", i,
                        cs->kernel - 1, cs->pad);
    if (cs->kernel > h + 2 * cs->pad || cs->kernel > w + 2 * cs->pad)
      return ember_fail(err, EMBER_EINVAL,
                        "convolution %d: a %dx%d kernel does not fit its %dx%d input padded by %d (the "
                        "image is %dx%d)", i, cs->kernel, cs->kernel, h, w, cs->pad, s->h, s->w);
    int oh = (h + 2 * cs->pad - cs->kernel) / cs->stride + 1, ow = (w + 2 * cs->pad - cs->kernel) / cs->stride + 1;
    if (L) {
      ember_conv *l = &L[i];
      l->in_c = c, l->out_c = cs->channels, l->k = cs->kernel, l->s = cs->stride, l->p = cs->pad;
      l->in_h = h, l->in_w = w, l->out_h = oh, l->out_w = ow;
      l->relu = !(i == s->nconv - 1 && s->head == EMBER_HEAD_SOFTARGMAX);
    }
    h = oh, w = ow, c = cs->channels;
  }
  return 0;
}

int ember_encoder_shape_check(const ember_encoder_shape *s, ember_err *err) {
  if (s->h < 1 || s->h > EMBER_MAX_IMAGE_SIDE || s->w < 1 || s->w > EMBER_MAX_IMAGE_SIDE)
    return ember_fail(err, EMBER_EINVAL, "image height and width must be 1..%d, got %dx%d",
                      EMBER_MAX_IMAGE_SIDE, s->h, s->w);
  if (s->c < 1 || s->c > EMBER_MAX_IMAGE_CHANNELS)
    return ember_fail(err, EMBER_EINVAL, "image channels must be 1..%d, got %d",
                      EMBER_MAX_IMAGE_CHANNELS, s->c);
  if (s->nconv < 1 || s->nconv > EMBER_MAX_CONV)
    return ember_fail(err, EMBER_EINVAL, "an encoder has 1..%d convolution layers, got %d",
                      EMBER_MAX_CONV, s->nconv);
  if (s->head != EMBER_HEAD_SOFTARGMAX && s->head != EMBER_HEAD_POOL)
    return ember_fail(err, EMBER_EINVAL, "unknown encoder head %d", (int)s->head);
  if (s->extra < 0 || s->extra > EMBER_MAX_EXTRA)
    return ember_fail(err, EMBER_EINVAL, "extra observations must be 0..%d, got %d", EMBER_MAX_EXTRA,
                      s->extra);
  return geometry(s, NULL, err);
}

int ember_encoder_features(const ember_encoder_shape *s) {
  int c = s->conv[s->nconv - 1].channels;
  return s->head == EMBER_HEAD_SOFTARGMAX ? 2 * c : c;
}

size_t ember_encoder_shape_params(const ember_encoder_shape *s) {
  size_t n = 0;
  int c = s->c;
  for (int i = 0; i < s->nconv; i++) {
    const ember_conv_spec *cs = &s->conv[i];
    n += (size_t)cs->channels * c * cs->kernel * cs->kernel + (size_t)cs->channels;
    c = cs->channels;
  }
  return n;
}

double ember_encoder_macs(const ember_encoder_shape *s) {
  ember_conv L[EMBER_MAX_CONV];
  if (geometry(s, L, NULL) < 0) return 0.0;
  double m = 0.0;
  for (int i = 0; i < s->nconv; i++)
    m += (double)L[i].out_h * L[i].out_w * L[i].out_c * L[i].in_c * L[i].k * L[i].k;
  return m;
}

size_t ember_encoder_image_bytes(const ember_encoder_shape *s) {
  return (size_t)s->h * s->w * s->c;
}

int ember_encoder_init(ember_encoder *enc, const ember_encoder_shape *shape, ember_err *err) {
  memset(enc, 0, sizeof *enc);
  int rc = ember_encoder_shape_check(shape, err);
  if (rc < 0) return rc;
  enc->shape = *shape;
  enc->nlayers = shape->nconv;
  geometry(shape, enc->layers, NULL);
  enc->nfeat = ember_encoder_features(shape);
  enc->nparams = ember_encoder_shape_params(shape);
  enc->params = calloc(enc->nparams, sizeof(float));
  if (!enc->params) return ember_fail(err, EMBER_ENOMEM, "out of memory for %zu encoder parameters", enc->nparams);
  float *p = enc->params;
  for (int i = 0; i < enc->nlayers; i++) {
    ember_conv *l = &enc->layers[i];
    l->w = p;
    p += (size_t)l->out_c * l->in_c * l->k * l->k;
    l->b = p;
    p += l->out_c;
  }
  return 0;
}

void ember_encoder_free(ember_encoder *enc) {
  if (!enc) return;
  free(enc->params);
  memset(enc, 0, sizeof *enc);
}

void ember_encoder_init_params(ember_encoder *enc, ember_rng *rng) {
  for (int i = 0; i < enc->nlayers; i++) {
    ember_conv *l = &enc->layers[i];
    size_t fan_in = (size_t)l->in_c * l->k * l->k;
    float bound = 1.0f / sqrtf((float)fan_in);
    for (size_t j = 0; j < fan_in * l->out_c; j++) l->w[j] = (2.0f * ember_rng_uniform(rng) - 1.0f) * bound;
    for (int j = 0; j < l->out_c; j++) l->b[j] = (2.0f * ember_rng_uniform(rng) - 1.0f) * bound;
  }
}

int ember_encoder_layer_name(const ember_encoder *enc, int layer, char *buf, size_t len) {
  if (layer < 0 || layer >= enc->nlayers) return EMBER_EINVAL;
  snprintf(buf, len, "encoder.conv.%d", layer);
  return 0;
}

/* ---- workspace ----------------------------------------------------------------------- */

/* the grid coordinate of index i of n in [-1, 1] (0 for a single row or column) */
static inline float grid(int i, int n) { return n > 1 ? -1.0f + 2.0f * (float)i / (float)(n - 1) : 0.0f; }

static size_t out_size(const ember_conv *l) { return (size_t)l->out_h * l->out_w * l->out_c; }
static int positions(const ember_conv *l) { return l->out_h * l->out_w; }
static int patch(const ember_conv *l) { return l->in_c * l->k * l->k; }

/* images per group and the group's padded rows, for layer l: the same whatever the workspace's
 * max_images (a workspace for fewer images than a group still computes whole padded groups), so
 * that an image's features do not depend on the workspace either: a server's workspace and a
 * local run's over a file of a few images give the same bits */
static void group_size(const ember_conv *l, int *g, int *rows) {
  int P = positions(l);
  int n = ENC_GROUP_ROWS / P; /* whole images in ENC_GROUP_ROWS rows, at least one */
  if (n > ENC_GROUP_IMAGES) n = ENC_GROUP_IMAGES;
  if (n < 1) n = 1;
  long r = (long)n * P;
  *g = n;
  *rows = (int)((r + ENC_ROW_BLOCK - 1) / ENC_ROW_BLOCK * ENC_ROW_BLOCK);
}

/* the floats of each buffer, in the order ws_init carves them */
static void ws_sizes(const ember_encoder_shape *s, int max_images, size_t *act, size_t *prob,
                     size_t *cols, size_t *gout, size_t *d, size_t *wp, size_t *gp) {
  ember_conv L[EMBER_MAX_CONV];
  geometry(s, L, NULL);
  *act = *cols = *gout = *d = *wp = *gp = 0;
  for (int i = 0; i < s->nconv; i++) {
    int g, rows;
    group_size(&L[i], &g, &rows);
    *act += out_size(&L[i]) * max_images;
    size_t ok = (size_t)L[i].out_c * patch(&L[i]);
    *wp += ok;
    if (ok > *gp) *gp = ok;
    if ((size_t)rows * patch(&L[i]) > *cols) *cols = (size_t)rows * patch(&L[i]);
    if ((size_t)rows * L[i].out_c > *gout) *gout = (size_t)rows * L[i].out_c;
    if (out_size(&L[i]) > *d) *d = out_size(&L[i]);
  }
  *d *= (size_t)max_images;
  const ember_conv *last = &L[s->nconv - 1];
  *prob = s->head == EMBER_HEAD_SOFTARGMAX ? out_size(last) * max_images : 0;
}

/* floats after gperm: the last layer's grid coordinates (out_w + out_h) and the head's
 * per-channel scratch (2 floats and 3 doubles a channel, the doubles 8-byte aligned) */
static size_t tail_floats(const ember_encoder_shape *s) {
  ember_conv L[EMBER_MAX_CONV];
  geometry(s, L, NULL);
  const ember_conv *last = &L[s->nconv - 1];
  return (size_t)last->out_w + last->out_h + 1 + 8 * (size_t)last->out_c;
}

size_t ember_encoder_ws_bytes(const ember_encoder_shape *s, int max_images) {
  size_t act, prob, cols, gout, d, wp, gp;
  ws_sizes(s, max_images, &act, &prob, &cols, &gout, &d, &wp, &gp);
  return (act + prob + 2 * cols + gout + 2 * d + wp + gp + tail_floats(s)) * sizeof(float);
}

int ember_encoder_ws_init(ember_encoder_ws *ws, const ember_encoder_shape *s, int max_images,
                          ember_err *err) {
  memset(ws, 0, sizeof *ws);
  int rc = ember_encoder_shape_check(s, err);
  if (rc < 0) return rc;
  if (max_images < 1 || max_images > 1 << 20)
    return ember_fail(err, EMBER_EINVAL, "an encoder workspace holds 1..2^20 images, got %d", max_images);
  size_t act, prob, cols, gout, d, wp, gp;
  ws_sizes(s, max_images, &act, &prob, &cols, &gout, &d, &wp, &gp);
  size_t total = act + prob + 2 * cols + gout + 2 * d + wp + gp + tail_floats(s);
  ws->mem = calloc(total, sizeof(float));
  if (!ws->mem)
    return ember_fail(err, EMBER_ENOMEM, "out of memory for an encoder workspace of %zu MiB",
                      total * sizeof(float) >> 20);
  ember_conv L[EMBER_MAX_CONV];
  geometry(s, L, NULL);
  float *p = ws->mem;
  for (int i = 0; i < s->nconv; i++) {
    ws->act[i] = p;
    p += out_size(&L[i]) * max_images;
    group_size(&L[i], &ws->group[i], &ws->grows[i]);
  }
  ws->prob = prob ? p : NULL;
  p += prob;
  ws->cols = p, p += cols;
  ws->dcols = p, p += cols;
  ws->gout = p, p += gout;
  ws->d0 = p, p += d;
  ws->d1 = p, p += d;
  for (int i = 0; i < s->nconv; i++) {
    ws->wperm[i] = p;
    p += (size_t)L[i].out_c * patch(&L[i]);
  }
  ws->gperm = p, p += gp;
  const ember_conv *last = &L[s->nconv - 1];
  ws->grid_u = p, p += last->out_w;
  ws->grid_v = p, p += last->out_h;
  if ((uintptr_t)p % sizeof(double)) p++; /* the head's doubles (tail_floats has room) */
  ws->head = p;
  for (int x = 0; x < last->out_w; x++) ws->grid_u[x] = grid(x, last->out_w);
  for (int y = 0; y < last->out_h; y++) ws->grid_v[y] = grid(y, last->out_h);
  ws->max_images = max_images;
  return 0;
}

void ember_encoder_ws_free(ember_encoder_ws *ws) {
  if (!ws) return;
  free(ws->mem);
  memset(ws, 0, sizeof *ws);
}

/* ---- im2col ------------------------------------------------------------------------------ */

/* The kernel columns [*x0, *x1) of output column ox that fall inside the input (all k
 * without padding; never empty, as the padding is below k), and the input column of *x0. */
static inline int kernel_span(const ember_conv *l, int ox, int *x0, int *x1) {
  int left = ox * l->s - l->p; /* input column of kernel column 0 */
  *x0 = left < 0 ? -left : 0;
  *x1 = left + l->k > l->in_w ? l->in_w - left : l->k;
  return left + *x0;
}

/* Rows of g images' positions into cols (rows_total, K), columns in (ky, kx, c) order: layer
 * 0 from the uint8 images, later layers from the previous activations; rows past g images are
 * zero. The part of each kernel row of a patch inside the input is contiguous input values;
 * the padding's part is zeros. */
static void im2col(const ember_conv *l, const uint8_t *img, const float *in, int g, int rows_total,
                   float *cols) {
  const int K = patch(l), P = positions(l), k = l->k, C = l->in_c, run = k * C;
  const size_t in_img = (size_t)l->in_h * l->in_w * C;
  const float scale = 1.0f / 255.0f;
  for (int i = 0; i < g; i++) {
    for (int oy = 0; oy < l->out_h; oy++)
      for (int ox = 0; ox < l->out_w; ox++) {
        float *row = cols + ((size_t)i * P + (size_t)oy * l->out_w + ox) * K;
        int x0, x1, ix = kernel_span(l, ox, &x0, &x1);
        for (int ky = 0; ky < k; ky++) {
          float *dst = row + (size_t)ky * run;
          int iy = oy * l->s + ky - l->p;
          if (iy < 0 || iy >= l->in_h) {
            memset(dst, 0, (size_t)run * sizeof(float));
            continue;
          }
          memset(dst, 0, (size_t)x0 * C * sizeof(float));
          memset(dst + (size_t)x1 * C, 0, (size_t)(k - x1) * C * sizeof(float));
          size_t at = (size_t)i * in_img + ((size_t)iy * l->in_w + (size_t)ix) * C;
          int n = (x1 - x0) * C;
          dst += (size_t)x0 * C;
          if (img)
            for (int j = 0; j < n; j++) dst[j] = (float)img[at + j] * scale;
          else
            memcpy(dst, in + at, (size_t)n * sizeof(float));
        }
      }
  }
  size_t used = (size_t)g * P * K;
  memset(cols + used, 0, ((size_t)rows_total * K - used) * sizeof(float));
}

/* d_in (g images) += the columns' gradient laid back onto the positions it came from (the
 * padding's share is dropped) */
static void col2im(const ember_conv *l, const float *dcols, int g, float *din) {
  const int K = patch(l), P = positions(l), k = l->k, C = l->in_c, run = k * C;
  const size_t in_img = (size_t)l->in_h * l->in_w * C;
  for (int i = 0; i < g; i++)
    for (int oy = 0; oy < l->out_h; oy++)
      for (int ox = 0; ox < l->out_w; ox++) {
        const float *row = dcols + ((size_t)i * P + (size_t)oy * l->out_w + ox) * K;
        int x0, x1, ix = kernel_span(l, ox, &x0, &x1);
        for (int ky = 0; ky < k; ky++) {
          int iy = oy * l->s + ky - l->p;
          if (iy < 0 || iy >= l->in_h) continue;
          float *dst = din + (size_t)i * in_img + ((size_t)iy * l->in_w + (size_t)ix) * C;
          const float *src = row + (size_t)ky * run + (size_t)x0 * C;
          int n = (x1 - x0) * C;
          for (int j = 0; j < n; j++) dst[j] += src[j];
        }
      }
}

/* OIHW weight (out, c, ky, kx) -> the columns' order (out, ky, kx, c), and a gradient in that
 * order added back into OIHW */
static void permute_w(const ember_conv *l, const float *w, float *wp) {
  const int K = patch(l), k = l->k, C = l->in_c;
  for (int o = 0; o < l->out_c; o++)
    for (int c = 0; c < C; c++)
      for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
          wp[(size_t)o * K + ((size_t)ky * k + kx) * C + c] = w[(size_t)o * K + ((size_t)c * k + ky) * k + kx];
}

static void unpermute_add(const ember_conv *l, const float *gp, float *gw) {
  const int K = patch(l), k = l->k, C = l->in_c;
  for (int o = 0; o < l->out_c; o++)
    for (int c = 0; c < C; c++)
      for (int ky = 0; ky < k; ky++)
        for (int kx = 0; kx < k; kx++)
          gw[(size_t)o * K + ((size_t)c * k + ky) * k + kx] += gp[(size_t)o * K + ((size_t)ky * k + kx) * C + c];
}

/* ---- forward ----------------------------------------------------------------------------- */


void ember_encoder_forward(const ember_encoder *enc, ember_encoder_ws *ws, const uint8_t *img, int n,
                           float *feat) {
  const size_t img_bytes = ember_encoder_image_bytes(&enc->shape);
  for (int li = 0; li < enc->nlayers; li++) {
    const ember_conv *l = &enc->layers[li];
    const int K = patch(l), P = positions(l), O = l->out_c, G = ws->group[li], R = ws->grows[li];
    const size_t osz = out_size(l), isz = (size_t)l->in_h * l->in_w * l->in_c;
    permute_w(l, l->w, ws->wperm[li]);
    for (int i0 = 0; i0 < n; i0 += G) {
      int g = n - i0 < G ? n - i0 : G;
      if (li == 0)
        im2col(l, img + (size_t)i0 * img_bytes, NULL, g, R, ws->cols);
      else
        im2col(l, NULL, ws->act[li - 1] + (size_t)i0 * isz, g, R, ws->cols);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, O, K, 1.0f, ws->cols, K, ws->wperm[li], K, 0.0f,
                  ws->gout, O);
      float *out = ws->act[li] + (size_t)i0 * osz;
      const size_t rows = (size_t)g * P;
      for (size_t r = 0; r < rows; r++)
        for (int o = 0; o < O; o++) {
          float v = ws->gout[r * O + o] + l->b[o];
          out[r * O + o] = l->relu && !(v > 0.0f) ? 0.0f : v;
        }
    }
  }
  const ember_conv *last = &enc->layers[enc->nlayers - 1];
  const int P = positions(last), C = last->out_c, OW = last->out_w, OH = last->out_h;
  const float *a = ws->act[enc->nlayers - 1];
  for (int i = 0; i < n; i++) {
    const float *ai = a + (size_t)i * P * C;
    float *fi = feat + (size_t)i * enc->nfeat;
    if (enc->shape.head == EMBER_HEAD_POOL) {
      for (int c = 0; c < C; c++) fi[c] = 0.0f;
      for (int p = 0; p < P; p++)
        for (int c = 0; c < C; c++) fi[c] += ai[(size_t)p * C + c];
      for (int c = 0; c < C; c++) fi[c] /= (float)P;
      continue;
    }
    /* per channel: softmax over the positions, then the expected grid coordinates; the
     * channels run innermost (the maps are position-major), each channel's sums in position
     * order */
    float *pi = ws->prob + (size_t)i * P * C;
    float *mx = ws->head, *inv = mx + C;
    double *sum = (double *)(void *)(inv + C), *u = sum + C, *v = u + C;
    for (int c = 0; c < C; c++) mx[c] = -INFINITY, sum[c] = u[c] = v[c] = 0.0;
    for (int p = 0; p < P; p++)
      for (int c = 0; c < C; c++) mx[c] = ai[(size_t)p * C + c] > mx[c] ? ai[(size_t)p * C + c] : mx[c];
    for (int p = 0; p < P; p++)
      for (int c = 0; c < C; c++) {
        float e = expf(ai[(size_t)p * C + c] - mx[c]);
        pi[(size_t)p * C + c] = e;
        sum[c] += e;
      }
    for (int c = 0; c < C; c++) inv[c] = (float)(1.0 / sum[c]);
    for (int y = 0; y < OH; y++)
      for (int x = 0; x < OW; x++) {
        const double gx = ws->grid_u[x], gy = ws->grid_v[y];
        float *row = pi + ((size_t)y * OW + x) * C;
        for (int c = 0; c < C; c++) {
          float pr = row[c] * inv[c];
          row[c] = pr;
          u[c] += (double)pr * gx;
          v[c] += (double)pr * gy;
        }
      }
    for (int c = 0; c < C; c++) fi[2 * c] = (float)u[c], fi[2 * c + 1] = (float)v[c];
  }
}

/* ---- backward ---------------------------------------------------------------------------- */

void ember_encoder_backward(const ember_encoder *enc, ember_encoder_ws *ws, const uint8_t *img, int n,
                            const float *dfeat, float *grad) {
  const size_t img_bytes = ember_encoder_image_bytes(&enc->shape);
  const int L = enc->nlayers;
  const ember_conv *last = &enc->layers[L - 1];
  const int P = positions(last), C = last->out_c, OW = last->out_w, OH = last->out_h;
  float *da = ws->d0, *dprev = ws->d1;
  /* the head */
  for (int i = 0; i < n; i++) {
    const float *df = dfeat + (size_t)i * enc->nfeat;
    float *di = da + (size_t)i * P * C;
    if (enc->shape.head == EMBER_HEAD_POOL) {
      for (int p = 0; p < P; p++)
        for (int c = 0; c < C; c++) di[(size_t)p * C + c] = df[c] / (float)P;
      continue;
    }
    const float *pi = ws->prob + (size_t)i * P * C;
    float *uf = ws->head, *vf = uf + C;
    double *u = (double *)(void *)(vf + C), *v = u + C;
    for (int c = 0; c < C; c++) u[c] = v[c] = 0.0;
    for (int y = 0; y < OH; y++)
      for (int x = 0; x < OW; x++) {
        const double gx = ws->grid_u[x], gy = ws->grid_v[y];
        const float *row = pi + ((size_t)y * OW + x) * C;
        for (int c = 0; c < C; c++) {
          u[c] += (double)row[c] * gx;
          v[c] += (double)row[c] * gy;
        }
      }
    for (int c = 0; c < C; c++) uf[c] = (float)u[c], vf[c] = (float)v[c];
    for (int y = 0; y < OH; y++)
      for (int x = 0; x < OW; x++) {
        const float gx = ws->grid_u[x], gy = ws->grid_v[y];
        const size_t at = ((size_t)y * OW + x) * C;
        for (int c = 0; c < C; c++)
          di[at + c] = pi[at + c] * (df[2 * c] * (gx - uf[c]) + df[2 * c + 1] * (gy - vf[c]));
      }
  }
  /* the layers, last to first */
  for (int li = L - 1; li >= 0; li--) {
    const ember_conv *l = &enc->layers[li];
    const int K = patch(l), Pl = positions(l), O = l->out_c, G = ws->group[li], R = ws->grows[li];
    const size_t osz = out_size(l), isz = (size_t)l->in_h * l->in_w * l->in_c;
    const float *act = ws->act[li];
    if (l->relu)
      for (size_t j = 0; j < (size_t)n * osz; j++) da[j] = act[j] > 0.0f ? da[j] : 0.0f;
    float *gw = grad + (l->w - enc->params), *gb = grad + (l->b - enc->params);
    for (size_t r = 0; r < (size_t)n * Pl; r++)
      for (int o = 0; o < O; o++) gb[o] += da[r * O + o];
    if (li > 0) memset(dprev, 0, (size_t)n * isz * sizeof(float));
    memset(ws->gperm, 0, (size_t)O * K * sizeof(float));
    for (int i0 = 0; i0 < n; i0 += G) {
      int g = n - i0 < G ? n - i0 : G;
      if (li == 0)
        im2col(l, img + (size_t)i0 * img_bytes, NULL, g, R, ws->cols);
      else
        im2col(l, NULL, ws->act[li - 1] + (size_t)i0 * isz, g, R, ws->cols);
      /* the group's output gradient, zero on the padding rows */
      const size_t used = (size_t)g * Pl * O;
      memcpy(ws->gout, da + (size_t)i0 * osz, used * sizeof(float));
      memset(ws->gout + used, 0, ((size_t)R * O - used) * sizeof(float));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, K, R, 1.0f, ws->gout, O, ws->cols, K, 1.0f,
                  ws->gperm, K);
      if (li > 0) { /* wperm: the forward's, of the same weights */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, R, K, O, 1.0f, ws->gout, O, ws->wperm[li], K, 0.0f,
                    ws->dcols, K);
        col2im(l, ws->dcols, g, dprev + (size_t)i0 * isz);
      }
    }
    unpermute_add(l, ws->gperm, gw);
    float *t = da;
    da = dprev;
    dprev = t;
  }
}
