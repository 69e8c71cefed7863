/* coords.c - the visual coordinate-regression task: dot images, their targets, and the .npz
 * bytes that hold them (tasks/coords.h).
 *
 * The .npz is written by hand: a zip of two stored (uncompressed) .npy members, which is what
 * numpy's np.savez writes and what every zip reader takes. The images are small, and a stored
 * archive is byte-for-byte reproducible (no timestamps: every member is dated 1980-01-01).
 */
#include "tasks/coords.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ember_coords_in_train(const ember_coords_opts *o, float u, float v) {
  return u <= o->split && v <= o->split;
}

int ember_coords_generate(const ember_coords_opts *o, int n, uint64_t seed, int region, uint8_t *img,
                          float *y, ember_err *err) {
  if (o->size < 4 || o->size > 1024)
    return ember_fail(err, EMBER_EINVAL, "image size must be 4..1024, got %d", o->size);
  if (!(o->radius >= 0.5f && o->radius <= o->size / 4.0f))
    return ember_fail(err, EMBER_EINVAL, "dot radius must be in [0.5, size/4 = %g], got %g", o->size / 4.0,
                      (double)o->radius);
  if (!(o->split > -0.9f && o->split < 0.9f))
    return ember_fail(err, EMBER_EINVAL, "the training region's edge (split) must be in (-0.9, 0.9), got %g",
                      (double)o->split);
  if (n < 1) return ember_fail(err, EMBER_EINVAL, "need at least one image, got %d", n);
  if (region != EMBER_COORDS_TRAIN && region != EMBER_COORDS_TEST)
    return ember_fail(err, EMBER_EINVAL, "unknown region %d", region);
  ember_rng rng;
  ember_rng_seed(&rng, seed, (uint64_t)region);
  const int S = o->size;
  const float r2 = o->radius * o->radius;
  for (int i = 0; i < n; i++) {
    float u, v;
    do {
      u = 2.0f * ember_rng_uniform(&rng) - 1.0f;
      v = 2.0f * ember_rng_uniform(&rng) - 1.0f;
    } while (ember_coords_in_train(o, u, v) != (region == EMBER_COORDS_TRAIN));
    y[2 * i] = u;
    y[2 * i + 1] = v;
    const float cx = (u + 1.0f) * 0.5f * (float)(S - 1), cy = (v + 1.0f) * 0.5f * (float)(S - 1);
    uint8_t *im = img + (size_t)i * S * S * 3;
    for (int py = 0; py < S; py++)
      for (int px = 0; px < S; px++) {
        uint8_t *p = im + ((size_t)py * S + px) * 3;
        float dx = (float)px - cx, dy = (float)py - cy;
        int in = dx * dx + dy * dy <= r2;
        p[0] = in ? 230 : 20;
        p[1] = in ? 40 : 20;
        p[2] = in ? 40 : 30;
      }
  }
  return 0;
}

/* ---- .npz bytes ----------------------------------------------------------------------- */

static uint32_t crc32_of(const uint8_t *b, size_t n, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < n; i++) {
    crc ^= b[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static uint8_t *put16(uint8_t *p, unsigned v) {
  p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
  return p + 2;
}
static uint8_t *put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
  return p + 4;
}

/* A .npy v1.0 header for descr and shape, padded to a multiple of 64 bytes; returns its
 * length (at most 256). */
static size_t npy_header(char *buf, const char *descr, const long *shape, int ndim) {
  char dict[200], dims[120] = "";
  for (int i = 0; i < ndim; i++)
    snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%ld", i ? ", " : "", shape[i]);
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%s%s), }", descr, dims,
           ndim == 1 ? "," : "");
  size_t hlen = strlen(dict) + 1;
  hlen += (64 - (10 + hlen) % 64) % 64;
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (char)(hlen & 0xff);
  buf[9] = (char)(hlen >> 8);
  memset(buf + 10, ' ', hlen);
  memcpy(buf + 10, dict, strlen(dict));
  buf[10 + hlen - 1] = '\n';
  return 10 + hlen;
}

int ember_npz_images(uint8_t **out, size_t *len, const uint8_t *img, int n, int h, int w, int c,
                     const float *y, int y_dim, ember_err *err) {
  *out = NULL;
  *len = 0;
  char hx[256], hy[256];
  long sx[4] = {n, h, w, c}, sy[2] = {n, y_dim};
  size_t lhx = npy_header(hx, "|u1", sx, 4), lhy = npy_header(hy, "<f4", sy, 2);
  const uint64_t dx = (uint64_t)n * h * w * c, dy = (uint64_t)n * y_dim * sizeof(float);
  if (lhx + dx >= UINT32_MAX / 2 || lhy + dy >= UINT32_MAX / 2)
    return ember_fail(err, EMBER_ENOTSUP, "%d images of %dx%dx%d do not fit a zip without zip64", n, h, w, c);
  const char *names[2] = {"x.npy", "y.npy"};
  const size_t msize[2] = {lhx + (size_t)dx, lhy + (size_t)dy};
  size_t total = 0;
  for (int i = 0; i < 2; i++) total += 30 + 5 + msize[i] + 46 + 5;
  total += 22;
  uint8_t *b = malloc(total), *p = b;
  uint8_t *member = malloc(msize[0] > msize[1] ? msize[0] : msize[1]);
  if (!b || !member) {
    free(b);
    free(member);
    return ember_fail(err, EMBER_ENOMEM, "out of memory for an .npz of %zu bytes", total);
  }
  uint32_t crc[2], off[2];
  for (int i = 0; i < 2; i++) {
    if (i == 0) {
      memcpy(member, hx, lhx);
      memcpy(member + lhx, img, (size_t)dx);
    } else {
      memcpy(member, hy, lhy);
      for (size_t k = 0; k < (size_t)n * y_dim; k++) { /* little-endian float32 */
        uint32_t bits;
        memcpy(&bits, &y[k], 4);
        put32(member + lhy + 4 * k, bits);
      }
    }
    crc[i] = crc32_of(member, msize[i], 0);
    off[i] = (uint32_t)(p - b);
    p = put32(p, 0x04034b50u);
    p = put16(p, 20), p = put16(p, 0), p = put16(p, 0);   /* version, flags, stored */
    p = put16(p, 0), p = put16(p, 0x21);                  /* 00:00, 1980-01-01 */
    p = put32(p, crc[i]), p = put32(p, (uint32_t)msize[i]), p = put32(p, (uint32_t)msize[i]);
    p = put16(p, 5), p = put16(p, 0);
    memcpy(p, names[i], 5), p += 5;
    memcpy(p, member, msize[i]), p += msize[i];
  }
  uint8_t *cd = p;
  for (int i = 0; i < 2; i++) {
    p = put32(p, 0x02014b50u);
    p = put16(p, 20), p = put16(p, 20), p = put16(p, 0), p = put16(p, 0);
    p = put16(p, 0), p = put16(p, 0x21);
    p = put32(p, crc[i]), p = put32(p, (uint32_t)msize[i]), p = put32(p, (uint32_t)msize[i]);
    p = put16(p, 5), p = put16(p, 0), p = put16(p, 0);   /* name, extra, comment lengths */
    p = put16(p, 0), p = put16(p, 0), p = put32(p, 0);   /* disk, internal, external attributes */
    p = put32(p, off[i]);
    memcpy(p, names[i], 5), p += 5;
  }
  uint32_t cd_size = (uint32_t)(p - cd), cd_off = (uint32_t)(cd - b);
  p = put32(p, 0x06054b50u);
  p = put16(p, 0), p = put16(p, 0), p = put16(p, 2), p = put16(p, 2);
  p = put32(p, cd_size), p = put32(p, cd_off), p = put16(p, 0);
  free(member);
  *out = b;
  *len = (size_t)(p - b);
  return 0;
}
