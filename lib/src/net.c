/* net.c - the energy network's forward and backward passes on sgemm.
 *
 * Why it is built this way:
 * - Candidates, not examples, are the rows of every matrix. A DFO query with 1024 samples or
 *   a training example with 257 candidates becomes 1024 or 257 rows, and the dense layers run
 *   as one sgemm over all of them: that is where the time goes, and sgemm is near peak there.
 * - Late fusion: the first layer's x part (and its bias) is computed once per query into hx
 *   and broadcast to the query's rows, so x_dim costs nothing per candidate.
 * - Elementwise work (bias, ReLU, residual add) is fused into single passes over each
 *   activation, and the buffers are sized up front in ember_net_ws: nothing allocates here.
 * - ReLU's derivative at exactly 0 is taken as 0 (mask = activation > 0).
 *
 * - Inference's hidden layers may skip OpenBLAS: for a small call most of sgemm's time is
 *   OpenBLAS packing the layer's weights again, so where ember's own kernel gives OpenBLAS's
 *   bits (packed_gemm), an inference context packs the weights once (ember_net_pack) and
 *   ember_net_forward_packed multiplies by them directly. Training keeps OpenBLAS throughout.
 *
 * What it does not do: choose chunk sizes or threads (callers split rows across workspaces),
 * or know about losses. OpenBLAS is expected to run single-threaded (ember_blas_single_thread).
 */
#include "ember/net.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

/* The elementwise passes (first layer's y part, biases, ReLU and its masks, residual adds, column
 * sums, the output dot products) are much of what a training step does besides sgemm, and the
 * default build targets plain x86-64 (SSE2). EMBER_SIMD compiles each of them also for AVX2 and
 * AVX-512, and the loader picks the widest the CPU has (GCC's target_clones, an ifunc). The
 * answers stay bit for bit those of the SSE2 code: every element is computed by the same
 * operations in the same order (no reassociation without -ffast-math, and -ffp-contract=off,
 * CMakeLists.txt, keeps a * b + c from being fused into an FMA), whatever the vector width.
 * Not under ThreadSanitizer: the loader runs an ifunc's resolver while it relocates the program,
 * before TSan's runtime is set up, and the instrumented resolver crashed every `make tsan` binary
 * at start-up. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__) && \
    !defined(EMBER_NO_SIMD_CLONES) && !defined(__SANITIZE_THREAD__)
#define EMBER_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define EMBER_SIMD
#endif

int ember_net_shape_check(const ember_net_shape *s, ember_err *err) {
  if (s->arch != EMBER_ARCH_MLP && s->arch != EMBER_ARCH_RESNET)
    return ember_fail(err, EMBER_EINVAL, "unknown architecture %d", (int)s->arch);
  if (s->in_x < 1 || s->in_x > EMBER_MAX_X_DIM)
    return ember_fail(err, EMBER_EINVAL, "network x inputs must be 1..%d, got %d", EMBER_MAX_X_DIM,
                      s->in_x);
  if (s->in_y < 0 || s->in_y > EMBER_MAX_Y_DIM)
    return ember_fail(err, EMBER_EINVAL, "network y inputs must be 0..%d, got %d", EMBER_MAX_Y_DIM,
                      s->in_y);
  if (s->width < 1 || s->width > EMBER_MAX_WIDTH)
    return ember_fail(err, EMBER_EINVAL, "width must be 1..%d, got %d", EMBER_MAX_WIDTH, s->width);
  if (s->depth < 1 || s->depth > EMBER_MAX_DEPTH)
    return ember_fail(err, EMBER_EINVAL, "depth must be 1..%d, got %d", EMBER_MAX_DEPTH, s->depth);
  if (s->arch == EMBER_ARCH_RESNET && (s->depth < 2 || s->depth % 2 != 0))
    return ember_fail(err, EMBER_EINVAL,
                      "a ResNet's depth counts dense layers in blocks of two: it must be even "
                      "and >= 2, got %d",
                      s->depth);
  if (s->out < 1 || s->out > EMBER_MAX_Y_DIM)
    return ember_fail(err, EMBER_EINVAL, "network outputs must be 1..%d, got %d", EMBER_MAX_Y_DIM,
                      s->out);
  size_t np = ember_net_shape_params(s); /* < 2^37 within the bounds above */
  if (np > EMBER_MAX_PARAMS)
    return ember_fail(err, EMBER_EINVAL,
                      "a %s of width %d and depth %d has %zu parameters, more than the %zu a model "
                      "may have (EMBER_MAX_PARAMS, 1 GiB of float32)",
                      s->arch == EMBER_ARCH_RESNET ? "ResNet" : "MLP", s->width, s->depth, np,
                      EMBER_MAX_PARAMS);
  return 0;
}

/* first layer + hidden (MLP: depth-1 more; ResNet: depth in blocks) + output */
int ember_net_shape_layers(const ember_net_shape *s) {
  return s->arch == EMBER_ARCH_RESNET ? s->depth + 2 : s->depth + 1;
}

static void layer_dims(const ember_net_shape *s, int i, int *in, int *out) {
  int n = ember_net_shape_layers(s);
  *in = i == 0 ? s->in_x + s->in_y : s->width;
  *out = i == n - 1 ? s->out : s->width;
}

size_t ember_net_shape_params(const ember_net_shape *s) {
  size_t total = 0;
  int n = ember_net_shape_layers(s);
  for (int i = 0; i < n; i++) {
    int in, out;
    layer_dims(s, i, &in, &out);
    total += (size_t)out * (size_t)in + (size_t)out;
  }
  return total;
}

double ember_net_row_macs(const ember_net_shape *s) {
  double macs = 0;
  int n = ember_net_shape_layers(s);
  for (int i = 0; i < n; i++) {
    int in, out;
    layer_dims(s, i, &in, &out);
    if (i == 0) in = s->in_y; /* the x part is fused once per query */
    macs += (double)in * out;
  }
  return macs;
}

int ember_net_init(ember_net *net, const ember_net_shape *shape, ember_err *err) {
  memset(net, 0, sizeof *net);
  int rc = ember_net_shape_check(shape, err);
  if (rc < 0) return rc;
  int n = ember_net_shape_layers(shape);
  size_t np = ember_net_shape_params(shape);
  net->layers = calloc((size_t)n, sizeof *net->layers);
  net->params = calloc(np, sizeof *net->params);
  if (!net->layers || !net->params) {
    ember_net_free(net);
    return ember_fail(err, EMBER_ENOMEM, "out of memory allocating %zu parameters", np);
  }
  net->shape = *shape;
  net->nlayers = n;
  net->nparams = np;
  float *p = net->params;
  for (int i = 0; i < n; i++) {
    ember_dense *l = &net->layers[i];
    layer_dims(shape, i, &l->in, &l->out);
    l->w = p;
    p += (size_t)l->out * l->in;
    l->b = p;
    p += l->out;
  }
  return 0;
}

void ember_net_free(ember_net *net) {
  if (!net) return;
  free(net->layers);
  free(net->params);
  memset(net, 0, sizeof *net);
}

void ember_net_init_params(ember_net *net, ember_rng *rng) {
  for (int i = 0; i < net->nlayers; i++) {
    ember_dense *l = &net->layers[i];
    float bound = 1.0f / sqrtf((float)l->in);
    size_t nw = (size_t)l->out * l->in;
    for (size_t k = 0; k < nw; k++) l->w[k] = (2.0f * ember_rng_uniform(rng) - 1.0f) * bound;
    for (int k = 0; k < l->out; k++) l->b[k] = (2.0f * ember_rng_uniform(rng) - 1.0f) * bound;
  }
}

int ember_net_layer_name(const ember_net *net, int layer, char *buf, size_t len) {
  int n = net->nlayers;
  if (layer < 0 || layer >= n) return EMBER_EINVAL;
  if (layer == n - 1)
    snprintf(buf, len, "out");
  else if (net->shape.arch == EMBER_ARCH_RESNET)
    snprintf(buf, len, layer == 0 ? "proj" : "blocks.%d.%d", (layer - 1) / 2, (layer - 1) % 2);
  else
    snprintf(buf, len, "hidden.%d", layer);
  return 0;
}

/* ---- workspace ----------------------------------------------------------------------- */

/* Rows are computed in zero-padded blocks of ember_blas_row_block() rows (48, or 16 under the
 * SkylakeX family's kernels), and never fewer than 2^20 / width^2 of them: OpenBLAS treats a
 * ragged tail of rows with other instructions than full blocks (its Haswell/Zen kernels work in
 * blocks of 12 rows; its SkylakeX kernels round a row the same way whatever the row count), and
 * small products (below about a million multiply-adds) with another kernel altogether, so
 * without padding a candidate's energy could change in its last bit with the number of rows
 * it was computed with, and answers would depend on how requests were batched. The padding
 * costs at most ~2 MFLOP per layer per call (and under 5% of a 1024-sample query; none for a
 * 64-sample one under the SkylakeX kernels); padding rows are zeros and their results are
 * dropped. */
static int pad_rows(int rows, int width) {
  long min = ((1L << 20) + (long)width * width - 1) / ((long)width * width);
  long r = rows > min ? rows : min, block = ember_blas_row_block();
  return (int)((r + block - 1) / block * block);
}
#define EMBER_PAD_ROWS(r) pad_rows((r), net->shape.width)

static int ws_nact(const ember_net_shape *s) {
  return s->arch == EMBER_ARCH_RESNET ? 1 + s->depth : s->depth;
}

/* Floats of a workspace's main allocation for max_rows rows (already padded). */
static size_t ws_floats(const ember_net_shape *s, int max_rows, int max_queries) {
  size_t rw = (size_t)max_rows * s->width, qw = (size_t)max_queries * s->width;
  return (size_t)ws_nact(s) * rw + 3 * rw + 2 * qw + (size_t)s->in_y * s->width + 2 * (size_t)s->width;
}

size_t ember_net_ws_bytes(const ember_net_shape *s, int max_rows, int max_queries, int tangent) {
  int rows = pad_rows(max_rows < 1 ? 1 : max_rows, s->width);
  size_t f = ws_floats(s, rows, max_queries < 1 ? 1 : max_queries);
  if (tangent) f += (size_t)(ws_nact(s) + 1) * rows * s->width;
  return f * sizeof(float);
}

int ember_net_ws_init(ember_net_ws *ws, const ember_net_shape *s, int max_rows, int max_queries,
                      ember_err *err) {
  memset(ws, 0, sizeof *ws);
  if (max_rows < 1 || max_queries < 1)
    return ember_fail(err, EMBER_EINVAL, "workspace needs at least one row and one query");
  max_rows = pad_rows(max_rows, s->width);
  size_t rw = (size_t)max_rows * s->width;
  size_t qw = (size_t)max_queries * s->width;
  int nact = ws_nact(s);
  size_t total = ws_floats(s, max_rows, max_queries);
  ws->mem = malloc(total * sizeof(float));
  if (!ws->mem)
    return ember_fail(err, EMBER_ENOMEM, "out of memory: network workspace of %zu MiB",
                      total * sizeof(float) >> 20);
  ws->max_rows = max_rows;
  ws->max_queries = max_queries;
  ws->width = s->width;
  ws->nact = nact;
  ws->act = ws->mem;
  ws->d0 = ws->act + (size_t)nact * rw;
  ws->d1 = ws->d0 + rw;
  ws->d2 = ws->d1 + rw;
  ws->hx = ws->d2 + rw;
  ws->dhx = ws->hx + qw;
  ws->wy = ws->dhx + qw;
  ws->vec = ws->wy + (size_t)s->in_y * s->width;
  return 0;
}

int ember_net_ws_enable_tangent(ember_net_ws *ws, const ember_net_shape *s, ember_err *err) {
  if (ws->tan) return 0;
  ws->tan = malloc((size_t)(ws->nact + 1) * ws->max_rows * s->width * sizeof(float));
  if (!ws->tan) return ember_fail(err, EMBER_ENOMEM, "out of memory for tangent buffers");
  return 0;
}

void ember_net_ws_free(ember_net_ws *ws) {
  if (!ws) return;
  free(ws->tan);
  free(ws->mem);
  memset(ws, 0, sizeof *ws);
}

static float *act_buf(ember_net_ws *ws, int i) { return ws->act + (size_t)i * ws->max_rows * ws->width; }

/* ---- forward --------------------------------------------------------------------------- */

void ember_net_fuse_x(const ember_net *net, const float *x, int nq, float *hx) {
  const ember_dense *l0 = &net->layers[0];
  int w = net->shape.width, in = l0->in;
  for (int q = 0; q < nq; q++) memcpy(hx + (size_t)q * w, l0->b, (size_t)w * sizeof(float));
  /* hx (nq, w) += x (nq, in_x) . W_x^T, W_x = the first in_x columns of W (lda = in) */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, w, net->shape.in_x, 1.0f, x,
              net->shape.in_x, l0->w, in, 1.0f, hx, w);
}

/* h (rows, w) = hx[q(row)] + y . W_y^T, rows [rows, pad) zero. The y part is an explicit loop
 * over a transposed copy of W_y (in_y is small), so each row's sum is formed the same way
 * whatever the number of rows. */
EMBER_SIMD static void first_layer(const ember_net *net, ember_net_ws *ws, const float *hx, const float *y,
                        int nq, int per, float *h) {
  const ember_dense *l0 = &net->layers[0];
  const int w = net->shape.width, in_y = net->shape.in_y, in_x = net->shape.in_x;
  const int rows = nq * per, pad = EMBER_PAD_ROWS(rows);
  for (int k = 0; k < in_y; k++)
    for (int j = 0; j < w; j++) ws->wy[(size_t)k * w + j] = l0->w[(size_t)j * l0->in + in_x + k];
  for (int q = 0; q < nq; q++)
    for (int r = 0; r < per; r++) {
      size_t row = (size_t)q * per + r;
      float *restrict hr = h + row * w;
      memcpy(hr, hx + (size_t)q * w, (size_t)w * sizeof(float));
      for (int k = 0; k < in_y; k++) {
        const float yk = y[row * in_y + k], *restrict wk = ws->wy + (size_t)k * w;
        for (int j = 0; j < w; j++) hr[j] += yk * wk[j];
      }
    }
  memset(h + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
}

/* a = relu(a + b) over (rows, w) */
EMBER_SIMD static void bias_relu(float *restrict a, const float *restrict b, size_t rows, int w) {
  for (size_t r = 0; r < rows; r++) {
    float *row = a + r * w;
    for (int j = 0; j < w; j++) {
      float v = row[j] + b[j];
      row[j] = v > 0.0f ? v : 0.0f;
    }
  }
}

/* h += b (if b), a = relu(h) */
EMBER_SIMD static void bias_relu_copy(float *restrict h, const float *restrict b, float *restrict a,
                           size_t rows, int w) {
  for (size_t r = 0; r < rows; r++) {
    float *hr = h + r * w, *ar = a + r * w;
    if (b)
      for (int j = 0; j < w; j++) hr[j] += b[j];
    for (int j = 0; j < w; j++) ar[j] = hr[j] > 0.0f ? hr[j] : 0.0f;
  }
}

EMBER_SIMD static void add_bias(float *restrict a, const float *restrict b, size_t rows, int w) {
  for (size_t r = 0; r < rows; r++)
    for (int j = 0; j < w; j++) a[r * w + j] += b[j];
}

/* Dot product in 16 fixed lanes: vectorisable without reassociating at the compiler's whim,
 * and the same summation order for every row. */
#if defined(__GNUC__)
__attribute__((always_inline)) /* into each clone of its callers, at -O2 too */
#endif
static inline float dot16(const float *restrict a, const float *restrict b, int n) {
  float lane[16] = {0};
  int j = 0;
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 16; l++) lane[l] += a[j + l] * b[j + l];
  for (int l = 0; j < n; j++, l++) lane[l] += a[j] * b[j];
  float s = 0.0f;
  for (int l = 0; l < 16; l++) s += lane[l];
  return s;
}

/* out (rows, n_out) = a (rows, w) . W^T + b, one dot product per output: cheap next to the
 * hidden layers, and the same for a row whatever the number of rows */
EMBER_SIMD static void output_layer(const ember_dense *l, const float *a, int rows, float *out) {
  for (int r = 0; r < rows; r++) {
    const float *restrict ar = a + (size_t)r * l->in;
    for (int o = 0; o < l->out; o++)
      out[(size_t)r * l->out + o] = dot16(ar, l->w + (size_t)o * l->in, l->in) + l->b[o];
  }
}

/* ---- ember's hidden-layer kernel --------------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define EMBER_PACKED_KERNEL 1

/* c (rows, n) = a (rows, k) . W^T, or c += that, W (n, k) packed in panels of 16 outputs:
 * wp[(p * k + i) * 16 + j] = W[p * 16 + j][i]. Each output is one chain of fused multiply-adds
 * over i in order, from zero, added to c (or stored) at the end: how OpenBLAS's SkylakeX sgemm
 * forms it while k fits one of its blocks, so the bits are the same (test_net checks). Blocks of
 * 8 rows by 32 outputs: 16 accumulators, two weight vectors and a broadcast in registers; the
 * row block's inputs stay in L1 while the weights stream from L2. */
#define PK_ROWS 8
/* acc{0,1}[r] = sum over i of a[r][i] * (the two panels' weights for input i), for `rows`
 * (<= PK_ROWS) rows; inlined with rows == PK_ROWS, where the accumulators stay in registers */
__attribute__((target("avx512f"), always_inline)) static inline void
packed_block(int rows, int k, const float *ar, const float *b0, const float *b1, __m512 *acc0, __m512 *acc1) {
  for (int r = 0; r < PK_ROWS; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
  for (int i = 0; i < k; i++) {
    const __m512 w0 = _mm512_loadu_ps(b0 + (size_t)i * 16), w1 = _mm512_loadu_ps(b1 + (size_t)i * 16);
#pragma GCC unroll 8
    for (int r = 0; r < rows; r++) {
      const __m512 x = _mm512_set1_ps(ar[(size_t)r * k + i]);
      acc0[r] = _mm512_fmadd_ps(x, w0, acc0[r]);
      acc1[r] = _mm512_fmadd_ps(x, w1, acc1[r]);
    }
  }
}

__attribute__((target("avx512f"))) static void packed_gemm(int rows, int n, int k, const float *a,
                                                           const float *wp, float *c, int accumulate) {
  for (int r0 = 0; r0 < rows; r0 += PK_ROWS) {
    const int rr = rows - r0 < PK_ROWS ? rows - r0 : PK_ROWS;
    const float *ar = a + (size_t)r0 * k;
    for (int p = 0; p < n / 16; p += 2) {
      const int two = p + 1 < n / 16;
      const float *b0 = wp + (size_t)p * k * 16, *b1 = two ? b0 + (size_t)k * 16 : b0;
      __m512 acc0[PK_ROWS], acc1[PK_ROWS];
      if (rr == PK_ROWS) packed_block(PK_ROWS, k, ar, b0, b1, acc0, acc1);
      else packed_block(rr, k, ar, b0, b1, acc0, acc1); /* a ragged last block (rows are padded
                                                            to 16, so only for other callers) */
      for (int r = 0; r < rr; r++) {
        float *cr = c + (size_t)(r0 + r) * n + (size_t)p * 16;
        if (accumulate) {
          _mm512_storeu_ps(cr, _mm512_add_ps(_mm512_loadu_ps(cr), acc0[r]));
          if (two) _mm512_storeu_ps(cr + 16, _mm512_add_ps(_mm512_loadu_ps(cr + 16), acc1[r]));
        } else {
          _mm512_storeu_ps(cr, acc0[r]);
          if (two) _mm512_storeu_ps(cr + 16, acc1[r]);
        }
      }
    }
  }
}

static int packed_kernel_usable(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && ember_blas_row_quantum() == 1;
}
#else
#define EMBER_PACKED_KERNEL 0
static int packed_kernel_usable(void) { return 0; }
#endif

void ember_net_packed_free(ember_net_packed *pk) {
  if (!pk) return;
  free(pk->w);
  memset(pk, 0, sizeof *pk);
}

/* Whether packed_gemm over wp (the first hidden layer, packed) gives OpenBLAS's bits for one
 * padded call of this width, storing and accumulating: the width rules above come from the
 * OpenBLAS that was measured, and the one loaded at run time may sum another way. */
static int packed_matches_blas(const ember_net *net, const float *wp, ember_err *err) {
#if EMBER_PACKED_KERNEL
  const int w = net->shape.width, rows = EMBER_PAD_ROWS(1);
  const size_t n = (size_t)rows * w;
  float *a = malloc(4 * n * sizeof(float));
  if (!a) return ember_fail(err, EMBER_ENOMEM, "out of memory packing a network's hidden layers");
  float *c1 = a + n, *c2 = c1 + n, *init = c2 + n;
  uint32_t s = 12345;
  for (size_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    a[i] = (float)(s >> 8) * 0x1p-24f * 2.0f - 0.5f; /* ReLU-like: a quarter of them zero */
    if (a[i] < 0.0f) a[i] = 0.0f;
    init[i] = (float)((s >> 4) & 0xffff) * 0x1p-12f - 8.0f;
  }
  int same = 1;
  for (int accumulate = 0; accumulate < 2 && same; accumulate++) {
    memcpy(c1, init, n * sizeof(float));
    memcpy(c2, init, n * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, w, w, 1.0f, a, w, net->layers[1].w, w,
                accumulate ? 1.0f : 0.0f, c1, w);
    packed_gemm(rows, w, w, a, wp, c2, accumulate);
    same = memcmp(c1, c2, n * sizeof(float)) == 0;
  }
  free(a);
  return same;
#else
  (void)net, (void)wp, (void)err;
  return 0;
#endif
}

int ember_net_pack(const ember_net *net, ember_net_packed *pk, ember_err *err) {
  memset(pk, 0, sizeof *pk);
  const int w = net->shape.width, nhidden = net->nlayers - 2;
  if (nhidden < 1 || w % 16 != 0 || w > EMBER_PACKED_MAX_WIDTH || !packed_kernel_usable()) return 0;
  const size_t per = (size_t)w * w;
  if (!(pk->w = malloc((size_t)nhidden * per * sizeof(float))))
    return ember_fail(err, EMBER_ENOMEM, "out of memory packing a network's hidden layers");
  for (int l = 0; l < nhidden; l++) {
    const float *W = net->layers[1 + l].w;
    float *dst = pk->w + (size_t)l * per;
    for (int p = 0; p < w / 16; p++)
      for (int i = 0; i < w; i++)
        for (int j = 0; j < 16; j++) dst[((size_t)p * w + i) * 16 + j] = W[(size_t)(p * 16 + j) * w + i];
  }
  const int same = packed_matches_blas(net, pk->w, err);
  if (same <= 0) { /* not OpenBLAS's bits here (or no memory to check): OpenBLAS it is */
    ember_net_packed_free(pk);
    return same;
  }
  pk->nhidden = nhidden;
  return 0;
}

/* c (rows, width) = a . W_i^T for hidden layer i (1-based), or c += that */
static void hidden_gemm(const ember_net *net, const ember_net_packed *pk, int i, int rows,
                        const float *a, float *c, int accumulate) {
  const int w = net->shape.width;
#if EMBER_PACKED_KERNEL
  if (pk && pk->nhidden) {
    packed_gemm(rows, w, w, a, pk->w + (size_t)(i - 1) * w * w, c, accumulate);
    return;
  }
#else
  (void)pk;
#endif
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, w, w, 1.0f, a, w, net->layers[i].w, w,
              accumulate ? 1.0f : 0.0f, c, w);
}

void ember_net_forward_packed(const ember_net *net, const ember_net_packed *pk, ember_net_ws *ws,
                              const float *hx, const float *y, int nq, int per_query, float *out) {
  int w = net->shape.width, rows = nq * per_query, pad = EMBER_PAD_ROWS(rows);
  const ember_dense *L = net->layers;
  if (net->shape.arch == EMBER_ARCH_RESNET) {
    int nb = net->shape.depth / 2;
    float *h = act_buf(ws, 0);
    first_layer(net, ws, hx, y, nq, per_query, h);
    for (int b = 0; b < nb; b++) {
      const ember_dense *l0 = &L[1 + 2 * b];
      float *a1 = act_buf(ws, 1 + 2 * b), *a2 = act_buf(ws, 2 + 2 * b);
      /* the previous block's second bias is added here, fused with this block's ReLU */
      bias_relu_copy(h, b > 0 ? L[2 * b].b : NULL, a1, (size_t)pad, w);
      hidden_gemm(net, pk, 1 + 2 * b, pad, a1, a2, 0);
      bias_relu(a2, l0->b, (size_t)pad, w);
      hidden_gemm(net, pk, 2 + 2 * b, pad, a2, h, 1);
    }
    add_bias(h, L[2 * nb].b, (size_t)pad, w);
    output_layer(&L[net->nlayers - 1], h, rows, out);
  } else {
    int depth = net->shape.depth;
    float *a = act_buf(ws, 0);
    first_layer(net, ws, hx, y, nq, per_query, a);
    /* the first layer's bias is already in hx */
    for (size_t k = 0; k < (size_t)pad * w; k++) a[k] = a[k] > 0.0f ? a[k] : 0.0f;
    for (int i = 1; i < depth; i++) {
      float *next = act_buf(ws, i);
      hidden_gemm(net, pk, i, pad, a, next, 0);
      bias_relu(next, L[i].b, (size_t)pad, w);
      a = next;
    }
    output_layer(&L[net->nlayers - 1], a, rows, out);
  }
}

void ember_net_forward(const ember_net *net, ember_net_ws *ws, const float *hx, const float *y,
                       int nq, int per_query, float *out) {
  ember_net_forward_packed(net, NULL, ws, hx, y, nq, per_query, out);
}

/* ---- backward -------------------------------------------------------------------------- */

EMBER_SIMD static void colsum_add(const float *restrict d, size_t rows, int w, float *restrict g) {
  for (size_t r = 0; r < rows; r++)
    for (int j = 0; j < w; j++) g[j] += d[r * w + j];
}

/* Branch-free selects: ReLU masks are ~50% random, so a conditional store mispredicts half the
 * time and does not vectorise; the select form does both (same values bit for bit). */
EMBER_SIMD static void relu_mask(float *restrict d, const float *restrict a, size_t n) {
  for (size_t k = 0; k < n; k++) d[k] = a[k] > 0.0f ? d[k] : 0.0f;
}

/* a > 0 ? x : z, done on the bits: with a float select GCC keeps a branch wherever the selected
 * value is computed (it will not speculate an FP op that could trap), which does not vectorise
 * and mispredicts on ReLU masks. */
static inline float sel_pos(float a, float x, float z) {
  uint32_t xb, zb, m = a > 0.0f ? UINT32_MAX : 0u;
  memcpy(&xb, &x, sizeof xb);
  memcpy(&zb, &z, sizeof zb);
  xb = (xb & m) | (zb & ~m);
  float v;
  memcpy(&v, &xb, sizeof v);
  return v;
}

/* d += (a > 0) * s. Where a <= 0 it adds -0.0f, which leaves every d (-0.0 included) unchanged,
 * as a conditional add would. */
EMBER_SIMD static void relu_mask_add(float *restrict d, const float *restrict a, const float *restrict s, size_t n) {
  for (size_t k = 0; k < n; k++) d[k] += sel_pos(a[k], s[k], -0.0f);
}

static float *grad_of(const ember_net *net, float *grad, const float *p) {
  return grad + (p - net->params);
}

/* dh (rows, w) = dout (rows, n_out) . W; grads of W_out and b_out from input a. */
EMBER_SIMD static void output_backward(const ember_net *net, const ember_dense *l, const float *a, int rows,
                            const float *dout, float *grad, float *dh) {
  int w = l->in;
  if (l->out == 1) {
    for (int r = 0; r < rows; r++)
      for (int j = 0; j < w; j++) dh[(size_t)r * w + j] = dout[r] * l->w[j];
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, w, l->out, 1.0f, dout, l->out,
                l->w, w, 0.0f, dh, w);
  }
  if (grad) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->out, w, rows, 1.0f, dout, l->out, a,
                w, 1.0f, grad_of(net, grad, l->w), w);
    colsum_add(dout, (size_t)rows, l->out, grad_of(net, grad, l->b));
  }
}

/* dense layer W (w, w): grads from dz and its input a (rows); dprev = dz . W (if dprev) over
 * the padded rows (dz is zero there), for the same reason as the forward pass */
static void hidden_backward(const ember_net *net, const ember_dense *l, const float *a,
                            const float *dz, int rows, int pad, float *grad, float *dprev) {
  int w = l->in;
  if (grad) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, l->out, w, rows, 1.0f, dz, l->out, a, w,
                1.0f, grad_of(net, grad, l->w), w);
    colsum_add(dz, (size_t)rows, l->out, grad_of(net, grad, l->b));
  }
  if (dprev)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pad, w, l->out, 1.0f, dz, l->out,
                l->w, w, 0.0f, dprev, w);
}

/* The last ResNet block of a one-output net, backward, when the residual stream's gradient
 * above it is rank one: dh = c (x) w_out for per-row scalars c (dout for the backward pass, dt
 * for the tangent's reverse). Then the block's second layer needs no GEMM: its input gradient
 * is c[r] * v with v = w_out . W1 (computed once), and its weight gradient w_out (x) sum_r c[r] s[r]
 * over its inputs s (a2 in the backward pass, s2 in the tangent's; db1 = w_out sum c only when
 * bias). Leaves dz (pad, w) = mask(a2) * (c (x) v), zero on the padding rows. */
EMBER_SIMD static void rank1_block_top(const ember_net *net, ember_net_ws *ws, const ember_dense *l1,
                            const float *wout, const float *c, const float *s, const float *a2,
                            int rows, int pad, float *grad, int bias, float *dz) {
  const int w = l1->in;
  float *restrict v = ws->vec, *restrict acc = ws->vec + w;
  for (int j = 0; j < w; j++) v[j] = 0.0f;
  for (int k = 0; k < w; k++) {
    const float wk = wout[k], *restrict row = l1->w + (size_t)k * w;
    for (int j = 0; j < w; j++) v[j] += wk * row[j];
  }
  if (grad) {
    float csum = 0.0f;
    for (int j = 0; j < w; j++) acc[j] = 0.0f;
    for (int r = 0; r < rows; r++) {
      const float cr = c[r], *restrict sr = s + (size_t)r * w;
      csum += cr;
      for (int j = 0; j < w; j++) acc[j] += cr * sr[j];
    }
    float *gw = grad_of(net, grad, l1->w);
    for (int k = 0; k < l1->out; k++) {
      float *restrict gk = gw + (size_t)k * w;
      const float wk = wout[k];
      for (int j = 0; j < w; j++) gk[j] += wk * acc[j];
    }
    if (bias) {
      float *gb = grad_of(net, grad, l1->b);
      for (int k = 0; k < l1->out; k++) gb[k] += wout[k] * csum;
    }
  }
  for (int r = 0; r < rows; r++) {
    const float cr = c[r], *restrict ar = a2 + (size_t)r * w;
    float *restrict dr = dz + (size_t)r * w;
    for (int j = 0; j < w; j++) dr[j] = sel_pos(ar[j], cr * v[j], 0.0f);
  }
  memset(dz + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
}

EMBER_SIMD static void first_backward(const ember_net *net, ember_net_ws *ws, const float *x, const float *y,
                           int nq, int per, const float *dh, float *grad, float *dy) {
  const ember_dense *l0 = &net->layers[0];
  int w = net->shape.width, in_x = net->shape.in_x, in_y = net->shape.in_y, in = l0->in;
  int rows = nq * per;
  if (grad) {
    float *gw = grad_of(net, grad, l0->w);
    float *dhx = ws->dhx;
    memset(dhx, 0, (size_t)nq * w * sizeof(float));
    for (int q = 0; q < nq; q++) colsum_add(dh + (size_t)q * per * w, (size_t)per, w, dhx + (size_t)q * w);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, in_x, nq, 1.0f, dhx, w, x, in_x, 1.0f,
                gw, in);
    colsum_add(dhx, (size_t)nq, w, grad_of(net, grad, l0->b));
    if (in_y > 0)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, in_y, rows, 1.0f, dh, w, y, in_y,
                  1.0f, gw + in_x, in);
  }
  /* dy = dh . W_y, with the transposed W_y the forward pass left in ws->wy */
  for (int r = 0; dy && r < rows; r++) {
    const float *restrict dr = dh + (size_t)r * w;
    for (int k = 0; k < in_y; k++) dy[(size_t)r * in_y + k] = dot16(dr, ws->wy + (size_t)k * w, w);
  }
}

void ember_net_backward(const ember_net *net, ember_net_ws *ws, const float *x, const float *y,
                        int nq, int per_query, const float *dout, float *grad, float *dy) {
  int w = net->shape.width, rows = nq * per_query, pad = EMBER_PAD_ROWS(rows);
  size_t n = (size_t)pad * w;
  const ember_dense *L = net->layers;
  const ember_dense *lout = &L[net->nlayers - 1];
  if (net->shape.arch == EMBER_ARCH_RESNET) {
    int nb = net->shape.depth / 2;
    float *h = act_buf(ws, 0), *dh = ws->d0, *dz1 = ws->d1;
    output_backward(net, lout, h, rows, dout, grad, dh);
    memset(dh + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
    for (int b = nb - 1; b >= 0; b--) {
      const ember_dense *l0 = &L[1 + 2 * b], *l1 = &L[2 + 2 * b];
      float *a1 = act_buf(ws, 1 + 2 * b), *a2 = act_buf(ws, 2 + 2 * b);
      /* residual branch output gradient is dh; its input a2. Above the last block dh is
       * dout (x) w_out, rank one with one output: no GEMM for that layer. */
      if (b == nb - 1 && lout->out == 1) {
        rank1_block_top(net, ws, l1, lout->w, dout, a2, a2, rows, pad, grad, 1, dz1);
      } else {
        hidden_backward(net, l1, a2, dh, rows, pad, grad, dz1);
        relu_mask(dz1, a2, n);
      }
      /* the forward activations stay intact (a tangent pass may follow): d(a1) goes to d2 */
      hidden_backward(net, l0, a1, dz1, rows, pad, grad, ws->d2);
      relu_mask_add(dh, a1, ws->d2, n);
    }
    first_backward(net, ws, x, y, nq, per_query, dh, grad, dy);
  } else {
    int depth = net->shape.depth;
    float *d = ws->d0, *dnext = ws->d1;
    output_backward(net, lout, act_buf(ws, depth - 1), rows, dout, grad, d);
    memset(d + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
    for (int i = depth - 1; i >= 1; i--) {
      relu_mask(d, act_buf(ws, i), n);
      hidden_backward(net, &L[i], act_buf(ws, i - 1), d, rows, pad, grad, dnext);
      float *t = d;
      d = dnext;
      dnext = t;
    }
    relu_mask(d, act_buf(ws, 0), n);
    first_backward(net, ws, x, y, nq, per_query, d, grad, dy);
  }
}

void ember_net_backward_x(const ember_net *net, const ember_net_ws *ws, int nq, int cols, float *dx) {
  const ember_dense *l0 = &net->layers[0];
  /* first_backward left sum over each query's rows of d(first layer) in dhx */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, cols, net->shape.width, 1.0f, ws->dhx,
              net->shape.width, l0->w, l0->in, 0.0f, dx, cols);
}

/* ---- tangent (forward mode) and its reverse ------------------------------------------------

 * The tangent of the hidden state along a y-direction follows the forward pass with biases
 * dropped and the forward's ReLU masks applied: tau_0 = W_y dir, and per ResNet block
 * s1 = m1 * tau, s2 = m2 * (W0 s1), tau += W1 s2 (MLP: tau_i = m_i * (W_i tau_{i-1})); the
 * output's tangent is w_out . tau. Buffers: ResNet keeps s1, s2 per block and the final tau
 * (1 + depth = nact), the MLP each tau_i (depth = nact); one more for scratch. */

static float *tan_buf(ember_net_ws *ws, int i) { return ws->tan + (size_t)i * ws->max_rows * ws->width; }

EMBER_SIMD static void mask_mul(float *restrict dst, const float *restrict src, const float *restrict act, size_t n) {
  for (size_t k = 0; k < n; k++) dst[k] = act[k] > 0.0f ? src[k] : 0.0f;
}

/* tau (pad, w) = dir . W_y^T for the real rows, zero for the padding */
static void tangent_first(const ember_net *net, ember_net_ws *ws, const float *dir, int rows, int pad,
                          float *tau) {
  const int w = net->shape.width, in_y = net->shape.in_y;
  for (int r = 0; r < rows; r++) {
    float *restrict tr = tau + (size_t)r * w;
    for (int j = 0; j < w; j++) tr[j] = 0.0f;
    for (int k = 0; k < in_y; k++) {
      const float dk = dir[(size_t)r * in_y + k], *restrict wk = ws->wy + (size_t)k * w;
      for (int j = 0; j < w; j++) tr[j] += dk * wk[j];
    }
  }
  memset(tau + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
}

void ember_net_tangent(const ember_net *net, ember_net_ws *ws, const float *dir, int nq,
                       int per_query, float *t) {
  const int w = net->shape.width, rows = nq * per_query, pad = EMBER_PAD_ROWS(rows);
  const size_t n = (size_t)pad * w;
  const ember_dense *L = net->layers, *lout = &L[net->nlayers - 1];
  float *scratch = tan_buf(ws, ws->nact);
  float *tau;
  if (net->shape.arch == EMBER_ARCH_RESNET) {
    const int nb = net->shape.depth / 2;
    tau = tan_buf(ws, 0);
    tangent_first(net, ws, dir, rows, pad, tau);
    for (int b = 0; b < nb; b++) {
      float *s1 = tan_buf(ws, 1 + 2 * b), *s2 = tan_buf(ws, 2 + 2 * b);
      mask_mul(s1, tau, act_buf(ws, 1 + 2 * b), n);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pad, w, w, 1.0f, s1, w, L[1 + 2 * b].w, w,
                  0.0f, scratch, w);
      mask_mul(s2, scratch, act_buf(ws, 2 + 2 * b), n);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pad, w, w, 1.0f, s2, w, L[2 + 2 * b].w, w,
                  1.0f, tau, w);
    }
  } else {
    const int depth = net->shape.depth;
    tangent_first(net, ws, dir, rows, pad, scratch);
    tau = tan_buf(ws, 0);
    mask_mul(tau, scratch, act_buf(ws, 0), n);
    for (int i = 1; i < depth; i++) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, pad, w, w, 1.0f, tau, w, L[i].w, w, 0.0f,
                  scratch, w);
      float *next = tan_buf(ws, i);
      mask_mul(next, scratch, act_buf(ws, i), n);
      tau = next;
    }
  }
  for (int r = 0; r < rows; r++) t[r] = dot16(tau + (size_t)r * w, lout->w, w);
}

void ember_net_tangent_backward(const ember_net *net, ember_net_ws *ws, const float *dir, int nq,
                                int per_query, const float *dt, float *grad) {
  const int w = net->shape.width, rows = nq * per_query, pad = EMBER_PAD_ROWS(rows);
  const int in_x = net->shape.in_x, in_y = net->shape.in_y;
  const size_t n = (size_t)pad * w;
  const ember_dense *L = net->layers, *lout = &L[net->nlayers - 1];
  float *d0 = ws->d0, *d1 = ws->d1, *tmp = tan_buf(ws, ws->nact);
  const int last = net->shape.arch == EMBER_ARCH_RESNET ? 0 : net->shape.depth - 1;
  const float *tau_last = tan_buf(ws, last);
  /* output: t = w_out . tau_last */
  float *g_out = grad_of(net, grad, lout->w);
  for (int r = 0; r < rows; r++) {
    const float *tr = tau_last + (size_t)r * w;
    float *dr = d0 + (size_t)r * w;
    for (int j = 0; j < w; j++) {
      dr[j] = dt[r] * lout->w[j];
      g_out[j] += dt[r] * tr[j];
    }
  }
  memset(d0 + (size_t)rows * w, 0, (size_t)(pad - rows) * w * sizeof(float));
  float *g0 = grad_of(net, grad, L[0].w);
  if (net->shape.arch == EMBER_ARCH_RESNET) {
    for (int b = net->shape.depth / 2 - 1; b >= 0; b--) {
      const ember_dense *l0 = &L[1 + 2 * b], *l1 = &L[2 + 2 * b];
      float *s1 = tan_buf(ws, 1 + 2 * b), *s2 = tan_buf(ws, 2 + 2 * b);
      /* tau_{b+1} = tau_b + W1 s2; above the last block d0 = dt (x) w_out is rank one */
      if (b == net->shape.depth / 2 - 1) {
        rank1_block_top(net, ws, l1, lout->w, dt, s2, act_buf(ws, 2 + 2 * b), rows, pad, grad, 0, d1);
      } else {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, w, rows, 1.0f, d0, w, s2, w, 1.0f,
                    grad_of(net, grad, l1->w), w);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pad, w, w, 1.0f, d0, w, l1->w, w, 0.0f, d1, w);
        relu_mask(d1, act_buf(ws, 2 + 2 * b), n); /* d(W0 s1) */
      }
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, w, rows, 1.0f, d1, w, s1, w, 1.0f,
                  grad_of(net, grad, l0->w), w);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pad, w, w, 1.0f, d1, w, l0->w, w, 0.0f, tmp, w);
      relu_mask_add(d0, act_buf(ws, 1 + 2 * b), tmp, n);
    }
  } else {
    for (int i = net->shape.depth - 1; i >= 1; i--) {
      relu_mask(d0, act_buf(ws, i), n); /* d(W_i tau_{i-1}) */
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, w, rows, 1.0f, d0, w, tan_buf(ws, i - 1), w,
                  1.0f, grad_of(net, grad, L[i].w), w);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, pad, w, w, 1.0f, d0, w, L[i].w, w, 0.0f, d1, w);
      float *t = d0;
      d0 = d1;
      d1 = t;
    }
    relu_mask(d0, act_buf(ws, 0), n);
  }
  /* tau_0 = W_y dir: the y columns of the first layer */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, w, in_y, rows, 1.0f, d0, w, dir, in_y, 1.0f,
              g0 + in_x, L[0].in);
}
