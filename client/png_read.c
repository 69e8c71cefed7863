/* png_read.c - PNG files into an image dataset through libpng's simplified read API
 * (png_image_*), which does every conversion (palette, grey, 16-bit, interlace, alpha) itself
 * and reports errors in the png_image rather than by longjmp. */
#include "png_read.h"

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ember/encoder.h"

int cli_is_png_input(const char *path) {
  size_t n = path ? strlen(path) : 0;
  return n > 4 && strcasecmp(path + n - 4, ".png") == 0;
}

static uint32_t png_format(int channels) {
  switch (channels) {
    case 1: return PNG_FORMAT_GRAY;
    case 2: return PNG_FORMAT_GA;
    case 3: return PNG_FORMAT_RGB;
    default: return PNG_FORMAT_RGBA;
  }
}

/* One file into dst (h * w * channels bytes), whose size must be h x w unless h == 0 (the
 * first file: *h, *w and *buf are set from it). */
static int read_one(const char *path, int channels, int *h, int *w, uint8_t **buf, size_t at,
                    int n, char *msg, size_t len) {
  png_image img;
  memset(&img, 0, sizeof img);
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path)) {
    snprintf(msg, len, "%s: not a PNG ember can read (%s)", path, img.message);
    png_image_free(&img);
    return -1;
  }
  if (img.width > EMBER_MAX_IMAGE_SIDE || img.height > EMBER_MAX_IMAGE_SIDE) {
    snprintf(msg, len, "%s: %ux%u pixels; images are at most %dx%d", path, (unsigned)img.width,
             (unsigned)img.height, EMBER_MAX_IMAGE_SIDE, EMBER_MAX_IMAGE_SIDE);
    png_image_free(&img);
    return -1;
  }
  if (*h == 0) {
    *h = (int)img.height, *w = (int)img.width;
    size_t bytes = (size_t)n * img.height * img.width * (size_t)channels;
    if (!(*buf = malloc(bytes))) {
      snprintf(msg, len, "%s: out of memory for %d images of %dx%d", path, n, *w, *h);
      png_image_free(&img);
      return -1;
    }
  } else if ((int)img.height != *h || (int)img.width != *w) {
    snprintf(msg, len, "%s: %ux%u pixels, where the first image has %dx%d (one request's images "
             "share a size)", path, (unsigned)img.width, (unsigned)img.height, *w, *h);
    png_image_free(&img);
    return -1;
  }
  img.format = png_format(channels);
  img.flags |= PNG_IMAGE_FLAG_16BIT_sRGB; /* untagged 16-bit pixels are camera values, not linear
                                           * light (set after begin_read, which resets flags) */
  png_color black = {0, 0, 0};
  if (!png_image_finish_read(&img, &black, *buf + at, 0, NULL)) {
    snprintf(msg, len, "%s: %s", path, img.message);
    png_image_free(&img);
    return -1;
  }
  return 0;
}

int cli_png_read_images(const char *spec, int channels, ember_dataset *ds, char *msg, size_t msg_len) {
  memset(ds, 0, sizeof *ds);
  if (channels < 1 || channels > 4) {
    snprintf(msg, msg_len, "%s: the model takes images of %d channels; PNG has 1 (grey), 2 (grey + "
             "alpha), 3 (RGB) or 4 (RGBA): give an .npz", spec, channels);
    return -1;
  }
  char *copy = strdup(spec);
  if (!copy) {
    snprintf(msg, msg_len, "out of memory");
    return -1;
  }
  int n = 1;
  for (const char *p = copy; *p; p++) n += *p == ',';
  int h = 0, w = 0, i = 0, rc = 0;
  uint8_t *buf = NULL;
  for (char *save = NULL, *path = strtok_r(copy, ",", &save); path && rc == 0;
       path = strtok_r(NULL, ",", &save), i++) {
    if (!cli_is_png_input(path)) {
      snprintf(msg, msg_len, "\"%s\" in --input %s: a list of inputs is PNG files only (name.png,...)", path, spec);
      rc = -1;
    } else {
      size_t at = (size_t)i * (size_t)(h ? h : 0) * (size_t)w * (size_t)channels;
      rc = read_one(path, channels, &h, &w, &buf, at, n, msg, msg_len);
    }
  }
  if (rc == 0 && i != n) { /* empty names: "a.png,,b.png" or a trailing comma */
    snprintf(msg, msg_len, "--input %s: an empty name in the list", spec);
    rc = -1;
  }
  free(copy);
  if (rc < 0) {
    free(buf);
    return -1;
  }
  ds->n = n;
  ds->img = buf;
  ds->img_h = h, ds->img_w = w, ds->img_c = channels;
  return 0;
}
