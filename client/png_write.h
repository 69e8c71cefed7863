/* png_write.h - writing an 8-bit RGB image as a PNG file, atomically (libpng).
 *
 * The file appears whole or not at all: the image goes to a temporary file next to the target
 * (<path>.tmp.<pid>.<n>), which is flushed, fsynced and renamed over it. On failure the
 * temporary file is removed and the target is left as it was.
 *
 *     uint8_t *rgb = ...;                            // (h, w, 3), rows top to bottom
 *     char why[256];
 *     if (cli_png_write("plot.png", rgb, w, h, why, sizeof why) < 0) fprintf(stderr, "%s\n", why);
 *
 * (Not named png.h: the client directory is on the include path, where it would hide libpng's.)
 */
#ifndef EMBER_PNG_WRITE_H
#define EMBER_PNG_WRITE_H

#include <stddef.h>
#include <stdint.h>

/* rgb: (h, w, 3). Returns 0, or -1 with a sentence naming path and the reason in msg. */
int cli_png_write(const char *path, const uint8_t *rgb, int w, int h, char *msg, size_t msg_len);

#endif
