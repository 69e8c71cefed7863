/* plot_draw.h - what `ember plot`'s two charts share: an RGB canvas, a small bitmap font, 1-2-5
 * ticks, a framed plot area with numbered axes, and the --size option.
 *
 * Both the energy landscape (cmd_plot.c) and the learning curves (plot_curves.c) draw into one
 * (h, w, 3) buffer that cli_png_write then writes out; nothing here allocates.
 *
 *     plot_canvas cv = {rgb, w, h};                  // rgb: (h, w, 3), sized by the caller
 *     plot_fill(&cv, 0, 0, w, h, (plot_rgb){255, 255, 255});
 *     plot_area L = {.x0 = 40, .y0 = 20, .pw = 500, .ph = 400, .xlo = 0, .xhi = 1, .ylo = 0, .yhi = 1, .s = 2};
 *     plot_ticks xt, yt;
 *     plot_ticks_make(L.xlo, L.xhi, L.pw, 60 * L.s, &xt);
 *     plot_ticks_make(L.ylo, L.yhi, L.ph, 40 * L.s, &yt);
 *     plot_axes(&cv, &L, &xt, &yt, ink);             // frame, tick marks, their numbers
 *     plot_text(&cv, 5, 5, L.s, "success %", ink);
 */
#ifndef EMBER_PLOT_DRAW_H
#define EMBER_PLOT_DRAW_H

#include <stddef.h>
#include <stdint.h>

#define PLOT_MIN_W 100
#define PLOT_MIN_H 80
#define PLOT_MAX_SIDE 4096

typedef struct plot_rgb {
  uint8_t r, g, b;
} plot_rgb;

typedef struct plot_canvas {
  uint8_t *rgb; /* (h, w, 3), rows top to bottom; not owned */
  int w, h;
} plot_canvas;

/* One pixel, a rectangle, and c over a pixel with opacity a in [0, 1]; all clipped to the canvas. */
void plot_put(plot_canvas *cv, int x, int y, plot_rgb c);
void plot_fill(plot_canvas *cv, int x0, int y0, int w, int h, plot_rgb c);
void plot_blend(plot_canvas *cv, int x, int y, plot_rgb c, double a);

/* Text in a 3x5 pixel font (printable ASCII; M N W m w are wider; g j p q y , ; _ reach one row
 * below the baseline), each pixel s x s, one pixel column (s) between glyphs. (x, y) is the
 * top-left corner of the first glyph; a line needs 6s rows with its descenders. A character
 * outside printable ASCII draws '?' (a UTF-8 sequence one '?'). */
#define PLOT_GLYPH_ROWS 6
void plot_text(plot_canvas *cv, int x, int y, int s, const char *str, plot_rgb c);
/* Width in pixels of plot_text(str) at scale s: the last glyph has no trailing gap. */
int plot_text_width(const char *str, int s);
/* str into out (out_len bytes, at least 4), cut to at most max_w pixels at scale s and ending
 * in ".." when cut. Returns 1 if it was cut, else 0. */
int plot_text_fit(const char *str, int s, int max_w, char *out, size_t out_len);

/* Ticks at multiples of a 1-2-5 step, about one per `px` pixels of `pixels`, labelled with just
 * enough decimals (left empty when they would be unreadably long). */
#define PLOT_MAX_TICKS 64
typedef struct plot_ticks {
  int n;
  double v[PLOT_MAX_TICKS];
  char label[PLOT_MAX_TICKS][24];
} plot_ticks;
void plot_ticks_make(double lo, double hi, int pixels, int px, plot_ticks *t);

/* The plot area: where the data goes in the image and the values at its edges. */
typedef struct plot_area {
  int x0, y0, pw, ph;        /* left, top, width, height in pixels */
  double xlo, xhi, ylo, yhi; /* x at the left and right edges, y at the bottom and top */
  int s;                     /* font scale */
} plot_area;

/* A frame one pixel outside the area, tick marks outside it and their numbers: x below, y left
 * (right-aligned 8 pixels from the frame). Ticks outside the area's ranges are left out. */
void plot_axes(plot_canvas *cv, const plot_area *L, const plot_ticks *xt, const plot_ticks *yt, plot_rgb ink);

/* --size WxH with W in PLOT_MIN_W..PLOT_MAX_SIDE, H in PLOT_MIN_H..PLOT_MAX_SIDE. 0, or -1 after
 * "ember WHO: --size expects ..." on stderr. */
int plot_parse_size(const char *who, const char *v, int *w, int *h);

#endif
