/* plot_draw.c - the canvas, font, ticks and axes of `ember plot`'s charts (see plot_draw.h).
 *
 * The font is our own: 3 pixels wide (M N W m w, which need a diagonal, 4 or 5), capitals and
 * digits 5 tall, lowercase 4 tall with ascenders to the capitals' height and descenders one
 * row below the baseline, so a line of text is 6 rows. Capital O is round where 0 is square,
 * and I has serifs where l has a foot on one side only. Axis numbers use only the digits, '-'
 * and '.', unchanged since the font had nothing else.
 *
 * Ticks: a 1-2-5 step chosen for about one tick per given number of pixels, starting at the
 * first multiple of the step at or above the low end.
 */
#include "plot_draw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- canvas -------------------------------------------------------------------------------- */

void plot_put(plot_canvas *cv, int x, int y, plot_rgb c) {
  if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
  uint8_t *p = cv->rgb + ((size_t)y * cv->w + x) * 3;
  p[0] = c.r, p[1] = c.g, p[2] = c.b;
}

void plot_blend(plot_canvas *cv, int x, int y, plot_rgb c, double a) {
  if (x < 0 || y < 0 || x >= cv->w || y >= cv->h) return;
  uint8_t *p = cv->rgb + ((size_t)y * cv->w + x) * 3;
  p[0] = (uint8_t)lround(p[0] + a * (c.r - p[0]));
  p[1] = (uint8_t)lround(p[1] + a * (c.g - p[1]));
  p[2] = (uint8_t)lround(p[2] + a * (c.b - p[2]));
}

void plot_fill(plot_canvas *cv, int x0, int y0, int w, int h, plot_rgb c) {
  for (int y = y0; y < y0 + h; y++)
    for (int x = x0; x < x0 + w; x++) plot_put(cv, x, y, c);
}

/* ---- font ---------------------------------------------------------------------------------- */

/* Printable ASCII from ' ' (32) to '~' (126): a width in pixels (3, or 4 and 5 for the letters
 * that need a diagonal: M N W m w) and six rows top to bottom, `width` bits each, the high bit
 * leftmost. Rows 0-4 stand on the baseline, row 5 is below it. */
typedef struct glyph_bits {
  uint8_t w, rows[PLOT_GLYPH_ROWS];
} glyph_bits;

static const glyph_bits FONT[95] = {
    {3, {0, 0, 0, 0, 0, 0}}, /* ' ' */
    {3, {2, 2, 2, 0, 2, 0}}, /* ! */
    {3, {5, 5, 0, 0, 0, 0}}, /* " */
    {3, {5, 7, 5, 7, 5, 0}}, /* # */
    {3, {3, 6, 2, 3, 6, 0}}, /* $ */
    {3, {5, 1, 2, 4, 5, 0}}, /* % */
    {3, {2, 5, 2, 5, 3, 0}}, /* & */
    {3, {2, 2, 0, 0, 0, 0}}, /* ' */
    {3, {1, 2, 2, 2, 1, 0}}, /* ( */
    {3, {4, 2, 2, 2, 4, 0}}, /* ) */
    {3, {0, 5, 2, 5, 0, 0}}, /* * */
    {3, {0, 2, 7, 2, 0, 0}}, /* + */
    {3, {0, 0, 0, 0, 2, 4}}, /* , */
    {3, {0, 0, 7, 0, 0, 0}}, /* - */
    {3, {0, 0, 0, 0, 2, 0}}, /* . */
    {3, {1, 1, 2, 4, 4, 0}}, /* / */
    {3, {7, 5, 5, 5, 7, 0}}, /* 0 */
    {3, {2, 6, 2, 2, 7, 0}}, /* 1 */
    {3, {7, 1, 7, 4, 7, 0}}, /* 2 */
    {3, {7, 1, 7, 1, 7, 0}}, /* 3 */
    {3, {5, 5, 7, 1, 1, 0}}, /* 4 */
    {3, {7, 4, 7, 1, 7, 0}}, /* 5 */
    {3, {7, 4, 7, 5, 7, 0}}, /* 6 */
    {3, {7, 1, 1, 1, 1, 0}}, /* 7 */
    {3, {7, 5, 7, 5, 7, 0}}, /* 8 */
    {3, {7, 5, 7, 1, 7, 0}}, /* 9 */
    {3, {0, 2, 0, 2, 0, 0}}, /* : */
    {3, {0, 2, 0, 0, 2, 4}}, /* ; */
    {3, {1, 2, 4, 2, 1, 0}}, /* < */
    {3, {0, 7, 0, 7, 0, 0}}, /* = */
    {3, {4, 2, 1, 2, 4, 0}}, /* > */
    {3, {6, 1, 2, 0, 2, 0}}, /* ? */
    {3, {2, 5, 7, 4, 3, 0}}, /* @ */
    {3, {2, 5, 7, 5, 5, 0}}, /* A */
    {3, {6, 5, 6, 5, 6, 0}}, /* B */
    {3, {3, 4, 4, 4, 3, 0}}, /* C */
    {3, {6, 5, 5, 5, 6, 0}}, /* D */
    {3, {7, 4, 6, 4, 7, 0}}, /* E */
    {3, {7, 4, 6, 4, 4, 0}}, /* F */
    {3, {3, 4, 5, 5, 3, 0}}, /* G */
    {3, {5, 5, 7, 5, 5, 0}}, /* H */
    {3, {7, 2, 2, 2, 7, 0}}, /* I */
    {3, {1, 1, 1, 5, 2, 0}}, /* J */
    {3, {5, 5, 6, 5, 5, 0}}, /* K */
    {3, {4, 4, 4, 4, 7, 0}}, /* L */
    {5, {17, 27, 21, 17, 17, 0}}, /* M */
    {4, {9, 13, 11, 9, 9, 0}}, /* N */
    {3, {2, 5, 5, 5, 2, 0}}, /* O */
    {3, {6, 5, 6, 4, 4, 0}}, /* P */
    {3, {2, 5, 5, 6, 3, 0}}, /* Q */
    {3, {6, 5, 6, 5, 5, 0}}, /* R */
    {3, {3, 4, 2, 1, 6, 0}}, /* S */
    {3, {7, 2, 2, 2, 2, 0}}, /* T */
    {3, {5, 5, 5, 5, 7, 0}}, /* U */
    {3, {5, 5, 5, 5, 2, 0}}, /* V */
    {5, {17, 17, 21, 21, 10, 0}}, /* W */
    {3, {5, 5, 2, 5, 5, 0}}, /* X */
    {3, {5, 5, 2, 2, 2, 0}}, /* Y */
    {3, {7, 1, 2, 4, 7, 0}}, /* Z */
    {3, {6, 4, 4, 4, 6, 0}}, /* [ */
    {3, {4, 4, 2, 1, 1, 0}}, /* \ */
    {3, {3, 1, 1, 1, 3, 0}}, /* ] */
    {3, {2, 5, 0, 0, 0, 0}}, /* ^ */
    {3, {0, 0, 0, 0, 0, 7}}, /* _ */
    {3, {4, 2, 0, 0, 0, 0}}, /* ` */
    {3, {0, 3, 5, 5, 3, 0}}, /* a */
    {3, {4, 6, 5, 5, 6, 0}}, /* b */
    {3, {0, 3, 4, 4, 3, 0}}, /* c */
    {3, {1, 3, 5, 5, 3, 0}}, /* d */
    {3, {0, 2, 5, 6, 3, 0}}, /* e */
    {3, {1, 2, 7, 2, 2, 0}}, /* f */
    {3, {0, 3, 5, 3, 1, 6}}, /* g */
    {3, {4, 6, 5, 5, 5, 0}}, /* h */
    {3, {2, 0, 6, 2, 7, 0}}, /* i */
    {3, {1, 0, 1, 1, 1, 6}}, /* j */
    {3, {4, 4, 5, 6, 5, 0}}, /* k */
    {3, {6, 2, 2, 2, 1, 0}}, /* l */
    {5, {0, 30, 21, 21, 21, 0}}, /* m */
    {3, {0, 6, 5, 5, 5, 0}}, /* n */
    {3, {0, 2, 5, 5, 2, 0}}, /* o */
    {3, {0, 6, 5, 6, 4, 4}}, /* p */
    {3, {0, 3, 5, 3, 1, 1}}, /* q */
    {3, {0, 5, 6, 4, 4, 0}}, /* r */
    {3, {0, 3, 4, 1, 6, 0}}, /* s */
    {3, {2, 7, 2, 2, 1, 0}}, /* t */
    {3, {0, 5, 5, 5, 3, 0}}, /* u */
    {3, {0, 5, 5, 5, 2, 0}}, /* v */
    {5, {0, 17, 21, 21, 10, 0}}, /* w */
    {3, {0, 0, 5, 2, 5, 0}}, /* x */
    {3, {0, 5, 5, 3, 1, 6}}, /* y */
    {3, {0, 7, 1, 2, 7, 0}}, /* z */
    {3, {3, 2, 6, 2, 3, 0}}, /* { */
    {3, {2, 2, 2, 2, 2, 0}}, /* | */
    {3, {6, 2, 3, 2, 6, 0}}, /* } */
    {3, {0, 0, 3, 6, 0, 0}}, /* ~ */
};

/* The glyph of the character at *p, moving p past it: a UTF-8 sequence is one '?'. */
static const glyph_bits *glyph(const unsigned char **p) {
  unsigned char c = *(*p)++;
  if (c >= 0xC0)
    while ((**p & 0xC0) == 0x80) (*p)++;
  if (c < ' ' || c > '~') c = '?';
  return &FONT[c - ' '];
}

void plot_text(plot_canvas *cv, int x, int y, int s, const char *str, plot_rgb c) {
  for (const unsigned char *p = (const unsigned char *)str; *p;) {
    const glyph_bits *g = glyph(&p);
    for (int r = 0; r < PLOT_GLYPH_ROWS; r++)
      for (int b = 0; b < g->w; b++)
        if (g->rows[r] & (1u << (g->w - 1 - b))) plot_fill(cv, x + b * s, y + r * s, s, s, c);
    x += (g->w + 1) * s;
  }
}

int plot_text_width(const char *str, int s) {
  int w = 0;
  for (const unsigned char *p = (const unsigned char *)str; *p;) w += (glyph(&p)->w + 1) * s;
  return w ? w - s : 0;
}

int plot_text_fit(const char *str, int s, int max_w, char *out, size_t out_len) {
  size_t len = strlen(str);
  if (plot_text_width(str, s) <= max_w && len < out_len) {
    memcpy(out, str, len + 1);
    return 0;
  }
  /* whole glyphs while they and ".." fit, in pixels and in out */
  const unsigned char *p = (const unsigned char *)str;
  size_t used = 0;
  for (int x = 0; *p;) {
    const unsigned char *q = p;
    x += (glyph(&q)->w + 1) * s;
    if (x + plot_text_width("..", s) > max_w || used + (size_t)(q - p) + 3 > out_len) break;
    memcpy(out + used, p, (size_t)(q - p));
    used += (size_t)(q - p);
    p = q;
  }
  memcpy(out + used, "..", 3);
  return 1;
}

/* ---- ticks and axes ------------------------------------------------------------------------ */

void plot_ticks_make(double lo, double hi, int pixels, int px, plot_ticks *t) {
  t->n = 0;
  double want = pixels / (double)px;
  if (want < 2) want = 2;
  double raw = (hi - lo) / want, p = pow(10.0, floor(log10(raw))), step;
  if (raw / p < 1.5) step = p;
  else if (raw / p < 3.5) step = 2 * p;
  else if (raw / p < 7.5) step = 5 * p;
  else step = 10 * p;
  if (!(step > 0) || !isfinite(step)) return;
  int dec = (int)-floor(log10(step) + 1e-9);
  if (dec < 0) dec = 0;
  double first = ceil(lo / step - 1e-9);
  for (int k = 0; k < PLOT_MAX_TICKS; k++) {
    double v = (first + k) * step;
    if (v > hi + 1e-9 * step) break;
    if (fabs(v) < 1e-6 * step) v = 0.0; /* no "-0" */
    t->v[t->n] = v;
    if (dec > 6 || fabs(v) >= 1e7) t->label[t->n][0] = 0;
    else snprintf(t->label[t->n], sizeof t->label[t->n], "%.*f", dec, v);
    t->n++;
  }
}

void plot_axes(plot_canvas *cv, const plot_area *L, const plot_ticks *xt, const plot_ticks *yt, plot_rgb ink) {
  const int s = L->s;
  plot_fill(cv, L->x0 - 1, L->y0 - 1, L->pw + 2, 1, ink);
  plot_fill(cv, L->x0 - 1, L->y0 + L->ph, L->pw + 2, 1, ink);
  plot_fill(cv, L->x0 - 1, L->y0 - 1, 1, L->ph + 2, ink);
  plot_fill(cv, L->x0 + L->pw, L->y0 - 1, 1, L->ph + 2, ink);
  for (int i = 0; i < xt->n; i++) {
    double t = (xt->v[i] - L->xlo) / (L->xhi - L->xlo) * L->pw;
    if (!(t >= 0.0 && t <= L->pw)) continue;
    int px = L->x0 + (int)t;
    plot_fill(cv, px, L->y0 + L->ph + 1, 1, 4, ink);
    plot_text(cv, px - plot_text_width(xt->label[i], s) / 2, L->y0 + L->ph + 8, s, xt->label[i], ink);
  }
  for (int i = 0; i < yt->n; i++) {
    double t = (L->yhi - yt->v[i]) / (L->yhi - L->ylo) * L->ph;
    if (!(t >= 0.0 && t <= L->ph)) continue;
    int py = L->y0 + (int)t;
    plot_fill(cv, L->x0 - 5, py, 4, 1, ink);
    plot_text(cv, L->x0 - 8 - plot_text_width(yt->label[i], s), py - 5 * s / 2, s, yt->label[i], ink);
  }
}

/* ---- options ------------------------------------------------------------------------------- */

int plot_parse_size(const char *who, const char *v, int *w, int *h) {
  char *end;
  long a = strtol(v, &end, 10), b = -1;
  if (end != v && (*end == 'x' || *end == 'X')) {
    const char *p = end + 1;
    b = strtol(p, &end, 10);
    if (end == p || *end) b = -1;
  }
  if (a < PLOT_MIN_W || a > PLOT_MAX_SIDE || b < PLOT_MIN_H || b > PLOT_MAX_SIDE) {
    fprintf(stderr, "ember %s: --size expects WxH with W in %d..%d and H in %d..%d pixels, got '%s'\n",
            who, PLOT_MIN_W, PLOT_MAX_SIDE, PLOT_MIN_H, PLOT_MAX_SIDE, v);
    return -1;
  }
  *w = (int)a, *h = (int)b;
  return 0;
}
