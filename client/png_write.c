/* png_write.c - an 8-bit RGB image to a PNG file through libpng, atomically.
 *
 * libpng reports errors by calling an error function and then longjmp-ing back to the
 * setjmp of whoever drives it. All of that is kept inside encode(): its setjmp frame holds
 * only values set before the jump point, so nothing needs to be volatile, and the message is
 * copied out before the jump. Everything around it (temporary file, fsync, rename) is plain
 * POSIX, the same dance ember_model_save does for checkpoints, because emberd-side tooling
 * and people alike may look at the file while it is being replaced.
 *
 * Not here: palettes, alpha, 16-bit, interlacing. The plots are truecolour and small.
 */
#include "png_write.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PNG_TMP_TRIES 16

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

/* fsync of the directory makes the rename durable; EINVAL means it cannot be synced at all. */
static void sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[4096];
  if (!slash) snprintf(dir, sizeof dir, ".");
  else snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

int cli_png_write(const char *path, const uint8_t *rgb, int w, int h, char *msg, size_t msg_len) {
  int rc = -1, fd = -1;
  FILE *f = NULL;
  size_t cap = strlen(path) + 64;
  char *tmp = malloc(cap);
  if (!tmp) {
    snprintf(msg, msg_len, "%s: out of memory", path);
    return -1;
  }
  /* <path>.tmp.<pid>.<n>, O_EXCL: two writers never share a temporary file */
  for (int n = 0; n < PNG_TMP_TRIES && fd < 0; n++) {
    snprintf(tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), n);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    snprintf(msg, msg_len, "%s: cannot write: %s", path, strerror(errno));
    free(tmp);
    return -1;
  }
  f = fdopen(fd, "wb");
  if (!f) {
    snprintf(msg, msg_len, "%s: cannot write: %s", path, strerror(errno));
    close(fd);
    goto done;
  }
  png_sink sink = {{0}};
  if (encode(f, rgb, w, h, &sink) < 0) {
    snprintf(msg, msg_len, "%s: cannot encode the image: %s", path, sink.msg);
    fclose(f);
    goto done;
  }
  int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) < 0;
  int e = errno;
  if (fclose(f) != 0 && !bad) bad = 1, e = errno;
  if (!bad && rename(tmp, path) < 0) bad = 1, e = errno;
  if (bad) {
    snprintf(msg, msg_len, "%s: cannot write: %s", path, strerror(e));
    goto done;
  }
  tmp[0] = 0; /* renamed: nothing left to remove */
  sync_dir(path);
  rc = 0;
done:
  if (tmp[0]) unlink(tmp);
  free(tmp);
  return rc;
}
