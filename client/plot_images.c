/* plot_images.c - `ember plot images`: an image model's answers drawn on its test images.
 *
 *   ember plot images --model M [--model2 M2] --data IMAGES.npz --out FILE.png
 *                     [--count N] [--cols C] [--zoom Z] [--samples N] [--seed N] [--threads N]
 *
 * For models whose y is an image position (u, v) in [-1, 1]^2, u across and v down, pixel
 * ((u + 1) / 2 (W - 1), (v + 1) / 2 (H - 1)): the coordinate-regression task's convention
 * (tasks/coords.h). The first --count images of the .npz are laid out in --cols columns, each
 * enlarged --zoom times (nearest pixel); on each go the data's y when the file has one (a green
 * ring), the first model's answer (a red plus) and the second's (a cyan cross), each marker
 * one pixel wide with a black edge so it reads on any image; a line of text above says which is
 * which. Answers are ember_infer_predict's with the model's inference defaults (--samples and
 * --seed override them), rows numbered from 0 as `ember predict` numbers them, so the marks
 * are `ember predict --input IMAGES.npz`'s answers. Positions outside the image are drawn at
 * its edge. Every buffer is sized once; the PNG is written atomically.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/infer.h"
#include "ember/model.h"
#include "plot_draw.h"
#include "png_write.h"

#define IMG_GAP 6        /* pixels between tiles and around the grid */
#define IMG_TEXT_SCALE 2 /* the legend's font scale */

static const plot_rgb COL_BG = {255, 255, 255}, COL_INK = {40, 40, 48}, COL_TRUTH = {40, 230, 90},
                      COL_M1 = {255, 60, 60}, COL_M2 = {60, 220, 255}, COL_EDGE = {0, 0, 0};

typedef struct img_cli {
  const char *model, *model2, *data, *out;
  int count, cols, zoom, samples, threads;
  uint64_t seed;
} img_cli;

/* The image dataset's answers by model path: y (n, 2). 0, or 1/2 after saying why. */
static int answers(const img_cli *c, const char *path, const ember_dataset *imgs, ember_pool *pool, float *y) {
  ember_model m;
  ember_err err;
  if (ember_model_load(path, &m, &err) < 0) {
    fprintf(stderr, "ember plot images: %s\n", err.msg);
    return 1;
  }
  if (!m.enc || m.y_dim != 2) {
    fprintf(stderr, "ember plot images: %s: needs an image model whose y is an image position (u, v); this "
            "one %s\n", path, !m.enc ? "takes vectors" : "has a y that is not 2 numbers");
    ember_model_free(&m);
    return 2;
  }
  /* a copy of the images to encode (encoding replaces a dataset's images by x rows) */
  ember_dataset ds = *imgs;
  size_t ib = (size_t)imgs->n * imgs->img_h * imgs->img_w * imgs->img_c;
  ds.img = malloc(ib);
  ds.x = imgs->x_dim ? malloc((size_t)imgs->n * imgs->x_dim * sizeof(float)) : NULL;
  ds.y = NULL, ds.y_dim = 0, ds.x_names = ds.y_names = NULL;
  int rc = 0;
  if (!ds.img || (imgs->x_dim && !ds.x)) {
    fprintf(stderr, "ember plot images: out of memory for %d images\n", imgs->n);
    rc = 1;
  } else {
    memcpy(ds.img, imgs->img, ib);
    if (imgs->x_dim) memcpy(ds.x, imgs->x, (size_t)imgs->n * imgs->x_dim * sizeof(float));
    ember_infer *inf = NULL;
    ember_infer_opts o = m.infer;
    if (c->samples > 0) o.samples = c->samples;
    if (ember_model_encode_dataset(&m, &ds, &err) < 0 || ember_infer_create(&inf, &m, pool, &err) < 0 ||
        ember_infer_predict(inf, ds.x, ds.n, &o, c->seed, 0, y, NULL, &err) < 0) {
      fprintf(stderr, "ember plot images: %s: %s\n", path, err.msg);
      rc = 1;
    }
    ember_infer_destroy(inf);
  }
  ember_dataset_free(&ds);
  ember_model_free(&m);
  return rc;
}

/* the file name without its directories, for the legend */
static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* Image position (u, v) -> pixel centre in the tile at (tx, ty). */
static void to_pixel(const ember_dataset *d, int zoom, int tx, int ty, float u, float v, int *px, int *py) {
  double fu = (u + 1.0) / 2.0 * (d->img_w - 1), fv = (v + 1.0) / 2.0 * (d->img_h - 1);
  fu = fu < 0 ? 0 : fu > d->img_w - 1 ? d->img_w - 1 : fu;
  fv = fv < 0 ? 0 : fv > d->img_h - 1 ? d->img_h - 1 : fv;
  *px = tx + (int)lround(fu * zoom + (zoom - 1) / 2.0);
  *py = ty + (int)lround(fv * zoom + (zoom - 1) / 2.0);
}

/* shape 0: ring, 1: plus, 2: cross; radius r pixels; an edge first, then the colour */
static void marker(plot_canvas *cv, int x, int y, int r, int shape, plot_rgb col) {
  for (int pass = 0; pass < 2; pass++)
    for (int dy = -r - 1; dy <= r + 1; dy++)
      for (int dx = -r - 1; dx <= r + 1; dx++) {
        double d = sqrt((double)dx * dx + (double)dy * dy);
        int on;
        if (shape == 0) on = pass ? fabs(d - r) < 0.5 : fabs(d - r) < 1.5;
        else if (shape == 1) on = pass ? (dx == 0 || dy == 0) && d <= r : (abs(dx) <= 1 || abs(dy) <= 1) && d <= r + 1;
        else on = pass ? abs(dx) == abs(dy) && abs(dx) <= r * 0.75 : abs(abs(dx) - abs(dy)) <= 1 && abs(dx) <= r * 0.75 + 1;
        if (on) plot_put(cv, x + dx, y + dy, pass ? col : COL_EDGE);
      }
}

int cmd_plot_images(int argc, char **argv) {
  img_cli c = {.count = 16, .cols = 8, .zoom = 6, .threads = cli_default_threads()};
  opt_spec specs[] = {
      {"model", OPT_STR, &c.model, "FILE", "an image model whose y is an image position (u, v) in [-1, 1]", 0, 0},
      {"model2", OPT_STR, &c.model2, "FILE", "a second such model, to compare (e.g. dfo against mse)", 0, 1},
      {"data", OPT_STR, &c.data, "FILE.npz", "images (x uint8 (n, H, W, C)), with y to mark the truth", 0, 0},
      {"out", OPT_STR, &c.out, "FILE.png", "where to write the PNG (written atomically)", 0, 0},
      {"count", OPT_INT, &c.count, "N", "images drawn (the file's first N)", 0, 0},
      {"cols", OPT_INT, &c.cols, "C", "images per row", 0, 0},
      {"zoom", OPT_INT, &c.zoom, "Z", "pixels per image pixel", 0, 0},
      {"samples", OPT_INT, &c.samples, "N", "DFO samples or Langevin chains (default: the model's)", 0, 1},
      {"seed", OPT_U64, &c.seed, NULL, "random seed of the answers (as ember predict --seed)", 0, 0},
      {"threads", OPT_INT, &c.threads, NULL, "worker threads (default: online CPUs)", 0, 1},
  };
  const int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("plot images", "--model MODEL --data IMAGES.npz --out FILE.png [options]", specs, nspecs,
                      argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!c.model || !c.data || !c.out) {
    fprintf(stderr, "ember plot images: --model, --data and --out are required (see ember plot images --help)\n");
    return 2;
  }
  if (c.count < 1 || c.cols < 1 || c.zoom < 1 || c.zoom > 64 || c.samples < 0) {
    fprintf(stderr, "ember plot images: --count and --cols must be >= 1, --zoom 1..64, --samples >= 0\n");
    return 2;
  }
  ember_dataset ds;
  ember_err err;
  int have_y = 1;
  if (ember_dataset_read(c.data, -1, -1, &ds, &err) < 0) { /* no y in the file: no truth marks */
    have_y = 0;
    if (ember_dataset_read(c.data, -1, 0, &ds, &err) < 0) {
      fprintf(stderr, "ember plot images: %s\n", err.msg);
      return 1;
    }
  }
  if (!ds.img) {
    fprintf(stderr, "ember plot images: %s holds no images (an .npz whose x is uint8 (n, H, W, C))\n", c.data);
    ember_dataset_free(&ds);
    return 2;
  }
  if (have_y && ds.y_dim != 2) have_y = 0;
  if (ds.n > c.count) ds.n = c.count; /* the first --count images (the buffers keep their size) */
  int n = ds.n, cols = c.cols < n ? c.cols : n, rows = (n + cols - 1) / cols;
  int tw = ds.img_w * c.zoom, th = ds.img_h * c.zoom, top = IMG_GAP + PLOT_GLYPH_ROWS * IMG_TEXT_SCALE + IMG_GAP;
  int w = IMG_GAP + cols * (tw + IMG_GAP), h = top + rows * (th + IMG_GAP);
  if (w < PLOT_MIN_W) w = PLOT_MIN_W;
  if (w > PLOT_MAX_SIDE || h > PLOT_MAX_SIDE) {
    fprintf(stderr, "ember plot images: %dx%d pixels is more than %d a side: fewer --count or a smaller --zoom\n",
            w, h, PLOT_MAX_SIDE);
    ember_dataset_free(&ds);
    return 2;
  }
  float *y1 = malloc((size_t)n * 2 * sizeof(float)), *y2 = malloc((size_t)n * 2 * sizeof(float));
  uint8_t *rgb = malloc((size_t)w * h * 3);
  ember_pool *pool = NULL;
  if (!y1 || !y2 || !rgb) {
    fprintf(stderr, "ember plot images: out of memory\n");
    rc = 1;
  } else if (cli_pool("plot images", c.threads, &pool) < 0) {
    rc = 2;
  }
  if (rc == 0) rc = answers(&c, c.model, &ds, pool, y1);
  if (rc == 0 && c.model2) rc = answers(&c, c.model2, &ds, pool, y2);
  if (rc == 0) {
    plot_canvas cv = {rgb, w, h};
    plot_fill(&cv, 0, 0, w, h, COL_BG);
    char legend[600];
    snprintf(legend, sizeof legend, "%sred +: %s%s%s", have_y ? "green o: truth   " : "", base_name(c.model),
             c.model2 ? "   cyan x: " : "", c.model2 ? base_name(c.model2) : "");
    char fit[600];
    plot_text_fit(legend, IMG_TEXT_SCALE, w - 2 * IMG_GAP, fit, sizeof fit);
    plot_text(&cv, IMG_GAP, IMG_GAP, IMG_TEXT_SCALE, fit, COL_INK);
    int r = c.zoom < 3 ? 3 : c.zoom;
    for (int i = 0; i < n; i++) {
      int tx = IMG_GAP + (i % cols) * (tw + IMG_GAP), ty = top + (i / cols) * (th + IMG_GAP);
      const uint8_t *im = ds.img + (size_t)i * ds.img_h * ds.img_w * ds.img_c;
      for (int py = 0; py < th; py++)
        for (int px = 0; px < tw; px++) {
          const uint8_t *p = im + ((size_t)(py / c.zoom) * ds.img_w + px / c.zoom) * ds.img_c;
          plot_rgb col = ds.img_c >= 3 ? (plot_rgb){p[0], p[1], p[2]} : (plot_rgb){p[0], p[0], p[0]};
          plot_put(&cv, tx + px, ty + py, col);
        }
      int x, y;
      if (have_y) {
        to_pixel(&ds, c.zoom, tx, ty, ds.y[2 * i], ds.y[2 * i + 1], &x, &y);
        marker(&cv, x, y, r, 0, COL_TRUTH);
      }
      if (c.model2) {
        to_pixel(&ds, c.zoom, tx, ty, y2[2 * i], y2[2 * i + 1], &x, &y);
        marker(&cv, x, y, r, 2, COL_M2);
      }
      to_pixel(&ds, c.zoom, tx, ty, y1[2 * i], y1[2 * i + 1], &x, &y);
      marker(&cv, x, y, r, 1, COL_M1);
    }
    char why[512];
    if (cli_png_write(c.out, rgb, w, h, why, sizeof why) < 0) {
      fprintf(stderr, "ember plot images: %s\n", why);
      rc = 1;
    } else {
      fprintf(stderr, "ember plot images: %d images of %dx%d, %d per row, to %s (%dx%d pixels)\n", n, ds.img_w,
              ds.img_h, cols, c.out, w, h);
    }
  }
  ember_pool_destroy(pool);
  free(y1);
  free(y2);
  free(rgb);
  ember_dataset_free(&ds);
  return rc;
}
