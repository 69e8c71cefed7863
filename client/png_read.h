/* png_read.h - PNG files as an image dataset, for `predict` and `sample --input` (libpng).
 *
 * `--input a.png` is one image; `--input a.png,b.png,...` several, all of one size, in that
 * order (one query row each). Any PNG libpng reads (palette, grey, alpha, 16-bit, interlaced)
 * is converted by libpng's simplified API to the model's channels: 1 grey, 2 grey + alpha,
 * 3 RGB, 4 RGBA, 8 bits each; an alpha channel the model does not take is composited onto
 * black, and 16-bit pixels without gamma information are read as sRGB (scaled to 8 bits, not
 * taken as linear light). PNG carries no extra observations, so a model that takes some needs an .npz.
 *
 *     ember_dataset ds;
 *     char why[300];
 *     if (cli_is_png_input(path) && cli_png_read_images(path, 3, &ds, why, sizeof why) < 0) ...
 */
#ifndef EMBER_PNG_READ_H
#define EMBER_PNG_READ_H

#include <stddef.h>

#include "ember/dataset.h"

/* Whether path names PNG input: it ends in ".png" (any case). */
int cli_is_png_input(const char *path);

/* Reads the PNG file(s) of spec as ds (n images, img_h/w/c set, x_dim 0, no y), converted to
 * `channels` (1..4). Returns 0, or -1 with a sentence naming the file and the reason in msg
 * (ds then holds nothing). */
int cli_png_read_images(const char *spec, int channels, ember_dataset *ds, char *msg, size_t msg_len);

#endif
