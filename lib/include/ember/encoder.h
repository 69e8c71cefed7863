/* ember/encoder.h - the image encoder: convolutions, ReLU and a spatial soft-argmax or
 * global-average-pooling head, batched over images on sgemm.
 *
 * An image is H x W x C uint8 (NHWC, as numpy stores camera frames), scaled to [0, 1] floats
 * on the way in. Layer l is PyTorch's Conv2d(in, channels, kernel, stride, padding) with zero
 * padding pad (output side (side + 2 pad - kernel) / stride + 1), weight (out, in, kernel,
 * kernel) = OIHW; ReLU
 * follows every layer except, with the soft-argmax head, the last, whose maps are the softmax's
 * logits. The head turns the last layer's C maps into features:
 *   softargmax: per map, softmax over its positions, then the expected image coordinates
 *               (u, v) in [-1, 1] (u along the width, -1 at the left column's centre, +1 at the
 *               right's; v along the height, -1 at the top): 2C features, u_0, v_0, u_1, ...
 *   pool:       the mean of each map: C features.
 * The features (then any extra vector observations) are the x of the energy network, which
 * fuses them once per query (ember/net.h, late fusion): an image is encoded once per query,
 * never per candidate.
 *
 * Parameters are one flat buffer (enc->params, layer after layer: weight then bias), as the
 * net's. Backward adds into gradients; the input image gets none.
 *
 *     ember_encoder_shape s = {.h = 64, .w = 64, .c = 3, .nconv = 2,
 *                              .conv = {{16, 5, 2, 2}, {32, 3, 1, 1}}, .head = EMBER_HEAD_SOFTARGMAX};
 *     ember_encoder enc;  ember_encoder_ws ws;
 *     ember_encoder_init(&enc, &s, &err);  ember_encoder_init_params(&enc, &rng);
 *     ember_encoder_ws_init(&ws, &s, 8, &err);              // up to 8 images per call
 *     ember_encoder_forward(&enc, &ws, img, 8, feat);      // img (8, 64, 64, 3) -> feat (8, 64)
 *     ember_encoder_backward(&enc, &ws, img, 8, dfeat, grad);
 */
#ifndef EMBER_ENCODER_H
#define EMBER_ENCODER_H

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds ember_encoder_shape_check enforces. */
#define EMBER_MAX_CONV 8
#define EMBER_MAX_IMAGE_SIDE 1024
#define EMBER_MAX_IMAGE_CHANNELS 16
#define EMBER_MAX_CONV_CHANNELS 1024
#define EMBER_MAX_KERNEL 15
#define EMBER_MAX_EXTRA 4096

/* The layers `ember train` builds for image data unless told otherwise: the coordinate task's
 * (docs/images.md#result); 16:5:2:2,32:3:1:1 with image data's training recipe let mse beat dfo
 * outside the training region with 10 images, this one does not. */
#define EMBER_ENCODER_DEFAULT_CONV "8:5:2:2,16:3:1:1"

typedef enum { EMBER_HEAD_SOFTARGMAX = 0, EMBER_HEAD_POOL = 1 } ember_head;

const char *ember_head_name(ember_head h);
int ember_head_parse(const char *s, ember_head *out);

typedef struct ember_conv_spec {
  int channels, kernel, stride;
  int pad; /* zero padding on each side, 0..kernel - 1 */
} ember_conv_spec;

typedef struct ember_encoder_shape {
  int h, w, c;  /* input image: height, width, channels */
  int nconv;    /* 1..EMBER_MAX_CONV layers */
  ember_conv_spec conv[EMBER_MAX_CONV];
  ember_head head;
  int extra;    /* extra vector observations concatenated after the features (0..) */
} ember_encoder_shape;

/* "16:5:2:2,32:3:1:1" (channels:kernel:stride[:pad] per layer; pad 0 when left out, and left
 * out of the text when 0) <-> the shape's layers. Parsing checks the syntax only;
 * ember_encoder_shape_check checks the sizes. */
int ember_conv_spec_parse(const char *s, ember_encoder_shape *shape, ember_err *err);
void ember_conv_spec_text(const ember_encoder_shape *shape, char *buf, size_t len);

int ember_encoder_shape_check(const ember_encoder_shape *s, ember_err *err);
/* Features the head gives (2C or C), and the network x inputs: features + extra. */
int ember_encoder_features(const ember_encoder_shape *s);
size_t ember_encoder_shape_params(const ember_encoder_shape *s);
/* Multiply-adds of one image's forward pass. */
double ember_encoder_macs(const ember_encoder_shape *s);
/* Bytes of one image (h * w * c). */
size_t ember_encoder_image_bytes(const ember_encoder_shape *s);

typedef struct ember_conv {
  int in_c, out_c, k, s, p; /* p: zero padding per side */
  int in_h, in_w, out_h, out_w;
  int relu;  /* ReLU after this layer */
  float *w;  /* (out_c, in_c, k, k) */
  float *b;  /* (out_c) */
} ember_conv;

typedef struct ember_encoder {
  ember_encoder_shape shape;
  int nfeat;
  int nlayers;
  ember_conv layers[EMBER_MAX_CONV];
  size_t nparams;
  float *params; /* (nparams), owned */
} ember_encoder;

int ember_encoder_init(ember_encoder *enc, const ember_encoder_shape *shape, ember_err *err);
void ember_encoder_free(ember_encoder *enc);
/* PyTorch's Conv2d default: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void ember_encoder_init_params(ember_encoder *enc, ember_rng *rng);
/* "encoder.conv.<l>" for layer l; tensors are "<prefix>.weight" and "<prefix>.bias". */
int ember_encoder_layer_name(const ember_encoder *enc, int layer, char *buf, size_t len);

/* Activations of up to max_images images, kept between forward and backward, and the im2col
 * scratch. Images are computed in fixed groups of whole images padded with zero rows to one
 * size per layer (encoder.c), so an image's features do not depend on the other images of the
 * call. One workspace per thread. */
typedef struct ember_encoder_ws {
  int max_images;
  int group[EMBER_MAX_CONV];      /* images per im2col group, per layer */
  int grows[EMBER_MAX_CONV];      /* sgemm rows per group (padded), per layer */
  float *act[EMBER_MAX_CONV];     /* (max_images, out_h, out_w, out_c) per layer */
  float *prob;                    /* softargmax: (max_images, out_h * out_w, C) */
  float *cols;                    /* im2col scratch, the largest group */
  float *dcols;                   /* its gradient */
  float *gout;                    /* one group's output rows (grows, out_c) */
  float *d0, *d1;                 /* (max_images, largest activation) backward scratch */
  float *wperm[EMBER_MAX_CONV];   /* each layer's weight in the columns' order (encoder.c),
                                     set by forward, used by the backward after it */
  float *gperm;                   /* one layer's weight gradient in that order */
  float *grid_u, *grid_v;         /* the soft-argmax's coordinate of each column and row */
  float *head;                    /* the head's per-channel scratch */
  float *mem;
} ember_encoder_ws;

int ember_encoder_ws_init(ember_encoder_ws *ws, const ember_encoder_shape *s, int max_images,
                          ember_err *err);
size_t ember_encoder_ws_bytes(const ember_encoder_shape *s, int max_images);
void ember_encoder_ws_free(ember_encoder_ws *ws);

/* img (n, h, w, c) uint8 -> feat (n, nfeat). n <= ws->max_images. */
void ember_encoder_forward(const ember_encoder *enc, ember_encoder_ws *ws, const uint8_t *img, int n,
                           float *feat);
/* Backward of the last forward on ws (same img and n): grad (nparams) += d(sum dfeat . feat) /
 * d params. */
void ember_encoder_backward(const ember_encoder *enc, ember_encoder_ws *ws, const uint8_t *img, int n,
                            const float *dfeat, float *grad);

#ifdef __cplusplus
}
#endif
#endif
