/* ember/net.h - the energy network: plain MLP or pre-activation ResNet MLP, batched on sgemm.
 *
 * Shapes (PyTorch nn.Linear layout: weight is (out, in), input columns are x then y):
 *   MLP    : hidden.0 (in_x+in_y -> W), hidden.i (W -> W) for i < depth, ReLU after each,
 *            out (W -> out).
 *   ResNet : proj (in_x+in_y -> W); depth/2 blocks, block b computes
 *            h += blocks.b.1( relu( blocks.b.0( relu(h) ) ) ); then out (W -> out), no final
 *            activation (as IBC's ResNetPreActivation + energy projection).
 * `out` is 1 for an energy model and y_dim for the explicit (MSE) baseline, whose in_y is 0.
 *
 * Late fusion: the first layer is W_x x + W_y y + b. ember_net_fuse_x computes W_x x + b once
 * per query; ember_net_forward adds W_y y for each of the query's candidate rows. Candidate
 * rows are grouped by query: rows [q*per_query, (q+1)*per_query) belong to query q.
 *
 * All parameters live in one flat buffer (net->params, net->nparams floats); layer i's weight
 * and bias point into it. Gradients and Adam moments use the same layout, so optimisers and
 * checkpoints are single loops. Backward *adds* into gradients.
 *
 *     ember_net net;  ember_net_ws ws;  ember_rng rng;
 *     ember_net_shape s = {EMBER_ARCH_RESNET, 8, 2, 256, 2, 1};
 *     ember_net_init(&net, &s, NULL);  ember_rng_seed(&rng, 1, 0);  ember_net_init_params(&net, &rng);
 *     ember_net_ws_init(&ws, &s, 1024, 1, NULL);
 *     ember_net_fuse_x(&net, x, 1, ws.hx);                   // x: (1, 8)
 *     ember_net_forward(&net, &ws, ws.hx, y, 1, 1024, e);     // y: (1024, 2) -> e: (1024, 1)
 */
#ifndef EMBER_NET_H
#define EMBER_NET_H

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { EMBER_ARCH_MLP = 0, EMBER_ARCH_RESNET = 1 } ember_arch;

typedef struct ember_net_shape {
  ember_arch arch;
  int in_x;  /* x inputs (>= 1) */
  int in_y;  /* y inputs (>= 0; 0 for the explicit baseline) */
  int width; /* hidden width (>= 1) */
  int depth; /* hidden dense layers; even and >= 2 for ResNet */
  int out;   /* outputs (1 for energies) */
} ember_net_shape;

typedef struct ember_dense {
  int in, out;
  float *w; /* (out, in) */
  float *b; /* (out) */
} ember_dense;

typedef struct ember_net {
  ember_net_shape shape;
  int nlayers;
  ember_dense *layers; /* (nlayers): first layer, hidden layers in order, output layer */
  size_t nparams;
  float *params; /* (nparams), owned */
} ember_net;

/* The largest network ember_net_shape_check accepts: x inputs, y inputs (and outputs), hidden
 * width and dense layers. A model's x_dim and y_dim have the same bounds (ember_model_init). */
#define EMBER_MAX_X_DIM 65536
#define EMBER_MAX_Y_DIM 4096
#define EMBER_MAX_WIDTH 16384
#define EMBER_MAX_DEPTH 256

/* The most parameters a model may have, every net of an ardfo model together: 2^28, 1 GiB of
 * float32 (training holds several copies: ember_train_memory). A network or model beyond it is
 * refused before anything is allocated, so that no size makes the allocator give up. */
#define EMBER_MAX_PARAMS ((size_t)1 << 28)

/* Checks a shape (EMBER_MAX_PARAMS included) and says what is wrong with it. */
int ember_net_shape_check(const ember_net_shape *s, ember_err *err);
/* Number of dense layers and parameters a shape has. */
int ember_net_shape_layers(const ember_net_shape *s);
size_t ember_net_shape_params(const ember_net_shape *s);

/* Allocates the parameter buffer (zeroed) and the layer table. */
int ember_net_init(ember_net *net, const ember_net_shape *shape, ember_err *err);
void ember_net_free(ember_net *net);
/* PyTorch's nn.Linear default: weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)). */
void ember_net_init_params(ember_net *net, ember_rng *rng);
/* Name prefix of layer i ("proj", "blocks.0.1", "hidden.2", "out"); tensors are
 * "<prefix>.weight" and "<prefix>.bias". Returns 0, or EMBER_EINVAL for a bad index. */
int ember_net_layer_name(const ember_net *net, int layer, char *buf, size_t len);
/* Multiply-adds per candidate row for one forward pass, excluding the x part of the first
 * layer (which late fusion computes once per query); FLOPs are twice this. */
double ember_net_row_macs(const ember_net_shape *s);

/* Activations kept between forward and backward, sized for up to max_rows candidate rows
 * (padded to a multiple of 48, and to at least 2^20 / width^2 rows: rows are computed in
 * zero-padded blocks so that a row's result does not depend on how many rows share the call;
 * net.c, pad_rows) and max_queries queries. One workspace per thread. */
typedef struct ember_net_ws {
  int max_rows, max_queries, width;
  int nact;       /* number of (max_rows, width) activation buffers */
  float *act;     /* (nact, max_rows, width) */
  float *d0, *d1, *d2; /* (max_rows, width) backward scratch; backward leaves act intact */
  float *hx;      /* (max_queries, width): a place for ember_net_fuse_x's output */
  float *dhx;     /* (max_queries, width) backward scratch */
  float *wy;      /* (in_y, width): W_y transposed, refreshed by every forward pass */
  float *vec;     /* (2, width) backward scratch */
  float *tan;     /* (nact + 1, max_rows, width): tangent pass buffers, NULL until enabled */
  float *mem;     /* the single allocation behind all of the above */
} ember_net_ws;

int ember_net_ws_init(ember_net_ws *ws, const ember_net_shape *s, int max_rows, int max_queries,
                      ember_err *err);
/* Bytes ember_net_ws_init allocates for these sizes (with ember_net_ws_enable_tangent's buffers
 * if tangent), for sizing a workspace before it is made. */
size_t ember_net_ws_bytes(const ember_net_shape *s, int max_rows, int max_queries, int tangent);
void ember_net_ws_free(ember_net_ws *ws);

/* Allocates the tangent-pass buffers (for ember_net_tangent*). */
int ember_net_ws_enable_tangent(ember_net_ws *ws, const ember_net_shape *s, ember_err *err);

/* Forward-mode tangent of the last forward pass on ws: t[r] = dE/dy(row r) . dir[r], the
 * output's directional derivative along dir (rows, in_y), through the same ReLU masks.
 * Energy nets (out == 1) only; needs ember_net_ws_enable_tangent. */
void ember_net_tangent(const ember_net *net, ember_net_ws *ws, const float *dir, int nq,
                       int per_query, float *t);
/* Reverse mode through that tangent: grad += d(sum_r dt[r] t[r]) / d params (the derivative
 * of an input-gradient with respect to the weights: what a gradient penalty on dE/dy needs).
 * ReLU masks are constant almost everywhere, so only the weights on the tangent's path (all
 * dense weights except the first layer's x columns) receive gradient; biases do not. */
void ember_net_tangent_backward(const ember_net *net, ember_net_ws *ws, const float *dir, int nq,
                                int per_query, const float *dt, float *grad);

/* hx = W_x x + b for nq queries. x: (nq, in_x) -> hx: (nq, width). */
void ember_net_fuse_x(const ember_net *net, const float *x, int nq, float *hx);

/* Forward over nq * per_query candidate rows. hx: (nq, width) from ember_net_fuse_x,
 * y: (nq * per_query, in_y) (NULL when in_y == 0), out: (nq * per_query, out). */
void ember_net_forward(const ember_net *net, ember_net_ws *ws, const float *hx, const float *y,
                       int nq, int per_query, float *out);

/* A network's hidden-layer weights copied into the layout of ember's own inference kernel
 * (net.c), which multiplies by a hidden layer without OpenBLAS packing the layer's weights
 * again on every call (a quarter to a half of a small call's time). ember_net_pack fills it
 * only where the kernel's sums are OpenBLAS's bit for bit: OpenBLAS's SkylakeX kernel family
 * (ember_blas_row_quantum() == 1) on a CPU with AVX-512, a width that is a multiple of 16 and
 * at most EMBER_PACKED_MAX_WIDTH (OpenBLAS sums longer rows in blocks), and only if one
 * padded call of the first hidden layer, tried when packing, gives the loaded OpenBLAS's bits;
 * elsewhere it packs nothing (nhidden 0) and the forward pass calls OpenBLAS. It is a copy:
 * after the weights change, free it and pack again. */
#define EMBER_PACKED_MAX_WIDTH 256
typedef struct ember_net_packed {
  int nhidden; /* hidden layers packed (all of them), or 0 */
  float *w;    /* (nhidden, width / 16, width, 16): 16 outputs' weights side by side per input */
} ember_net_packed;

/* Fills pk (zeroed first) from net's weights as they are now; EMBER_ENOMEM. */
int ember_net_pack(const ember_net *net, ember_net_packed *pk, ember_err *err);
void ember_net_packed_free(ember_net_packed *pk);

/* ember_net_forward with pk's copy of the hidden layers (pk NULL or empty: OpenBLAS); the
 * same results bit for bit. */
void ember_net_forward_packed(const ember_net *net, const ember_net_packed *pk, ember_net_ws *ws,
                              const float *hx, const float *y, int nq, int per_query, float *out);

/* Backward of the last forward on ws (same hx/y/nq/per_query). dout: (rows, out).
 * grad: (nparams) accumulated into, or NULL. dy: (rows, in_y) overwritten, or NULL.
 * x: (nq, in_x) is needed for the x part of the first layer's weight gradient. */
void ember_net_backward(const ember_net *net, ember_net_ws *ws, const float *x, const float *y,
                        int nq, int per_query, const float *dout, float *grad, float *dy);

/* The input gradient of the x part, after an ember_net_backward that had a gradient buffer:
 * dx (nq, cols) = d(sum dout . out) / d x for each query's first `cols` x inputs (cols <= in_x;
 * an image encoder's features, ember/encoder.h). Overwrites dx. */
void ember_net_backward_x(const ember_net *net, const ember_net_ws *ws, int nq, int cols, float *dx);

#ifdef __cplusplus
}
#endif
#endif
