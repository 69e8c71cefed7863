/* tasks/coords.h - the visual coordinate-regression task (IBC paper, Sec. on extrapolation):
 * images with one coloured dot whose position is the target, and an .npz writer for them.
 *
 * An image is size x size x 3 uint8, a dark background and a red disc of radius `radius`
 * pixels centred at pixel (cx, cy) = ((u + 1) / 2 (size - 1), (v + 1) / 2 (size - 1)); the
 * target y is (u, v) in [-1, 1]^2 (u along the width, v down the height). The training region
 * is the square u <= split and v <= split; the test region the rest of [-1, 1]^2, which lies
 * outside the training region's convex hull (the square itself), so a test answer is an
 * extrapolation. Targets are uniform in their region (rejection sampling from the square),
 * from random stream (seed, region).
 *
 *     uint8_t img[100 * 32 * 32 * 3];  float y[200];
 *     ember_coords_opts o = EMBER_COORDS_DEFAULTS;
 *     ember_coords_generate(&o, 100, 7, EMBER_COORDS_TRAIN, img, y, &err);
 *     uint8_t *npz;  size_t len;
 *     ember_npz_images(&npz, &len, img, 100, o.size, o.size, 3, y, 2, &err);   // then write it
 */
#ifndef EMBER_TASKS_COORDS_H
#define EMBER_TASKS_COORDS_H

#include <stdint.h>

#include "ember/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ember_coords_opts {
  int size;     /* image side, pixels (32) */
  float radius; /* the dot's radius, pixels (1.5) */
  float split;  /* training region: u <= split and v <= split (0.2) */
} ember_coords_opts;

#define EMBER_COORDS_DEFAULTS {.size = 32, .radius = 1.5f, .split = 0.2f}

enum { EMBER_COORDS_TRAIN = 0, EMBER_COORDS_TEST = 1 };

/* Whether target (u, v) lies in the training region. */
int ember_coords_in_train(const ember_coords_opts *o, float u, float v);
/* n images (n, size, size, 3) and their targets y (n, 2) of one region. */
int ember_coords_generate(const ember_coords_opts *o, int n, uint64_t seed, int region, uint8_t *img,
                          float *y, ember_err *err);
/* The bytes of an .npz (a stored zip, as np.savez writes) holding x = img (n, h, w, c) uint8
 * and y (n, y_dim) float32; *out is the caller's to free. */
int ember_npz_images(uint8_t **out, size_t *len, const uint8_t *img, int n, int h, int w, int c,
                     const float *y, int y_dim, ember_err *err);

#ifdef __cplusplus
}
#endif
#endif
