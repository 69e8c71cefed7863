/* png_write.c - an 8-bit RGB image to a PNG file through libpng, atomically.
 *
 * libpng reports errors by calling an error function and then longjmp-ing back to the
 * setjmp of whoever drives it. All of that is kept inside encode(): its setjmp frame holds
 * only values set before the jump point, so nothing needs to be volatile, and the message is
 * copied out before the jump. The file around it appears whole or not at all (outfile.h:
 * temporary file, fsync, rename), because people and tools may look at it while it is replaced.
 *
 * Not here: palettes, alpha, 16-bit, interlacing. The plots are truecolour and small.
 */
#include "png_write.h"

#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "outfile.h"


typedef struct png_sink {
  char msg[200];
} png_sink;

static void on_error(png_structp png, png_const_charp text) {
  png_sink *s = png_get_error_ptr(png);
  snprintf(s->msg, sizeof s->msg, "%s", text ? text : "libpng error");
  png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp text) { (void)png, (void)text; }

/* Encodes rgb (h, w, 3) into f. 0, or -1 with libpng's reason in sink->msg. */
static int encode(FILE *f, const uint8_t *rgb, int w, int h, png_sink *sink) {
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_error, on_warning);
  if (!png) {
    snprintf(sink->msg, sizeof sink->msg, "out of memory starting libpng");
    return -1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_write_struct(&png, NULL);
    snprintf(sink->msg, sizeof sink->msg, "out of memory starting libpng");
    return -1;
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    return -1;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int r = 0; r < h; r++) png_write_row(png, rgb + (size_t)r * w * 3);
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  return 0;
}

int cli_png_write(const char *path, const uint8_t *rgb, int w, int h, char *msg, size_t msg_len) {
  cli_outfile o;
  if (cli_outfile_open(&o, path, msg, msg_len) < 0) return -1;
  png_sink sink = {{0}};
  if (encode(o.f, rgb, w, h, &sink) < 0) {
    snprintf(msg, msg_len, "%s: cannot encode the image: %s", path, sink.msg);
    cli_outfile_abort(&o);
    return -1;
  }
  return cli_outfile_commit(&o, msg, msg_len);
}
