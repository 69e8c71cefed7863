/* plot_curves.c - `ember plot curves`: learning curves, success against training steps or
 * training wall time, as a PNG.
 *
 *   ember plot curves --data CURVES.csv --out FILE.png [--x steps|wall_s] [--title TEXT] [--size WxH]
 *
 * CURVES.csv has a header naming its columns, in any order: series (a label such as "N=2 dfo"),
 * steps, wall_s, success (a fraction in [0, 1]) and optionally ci_lo and ci_hi (an interval
 * around success, drawn as an error bar). Other columns are ignored, so a results table can be
 * drawn as it is; a field may be double-quoted to hold a comma. Each series is a line through
 * its points in x order with a marker on each point, in its own colour, and an entry in the
 * legend right of the plot, in the order the series first appear in the file.
 *
 * The colours are the ten of matplotlib's default cycle (tab10), which readers know and tell
 * apart; more series than colours are refused rather than given a colour twice, which would join
 * two series in the reader's eye. The x axis starts at 0 (steps and seconds both count from the
 * start of training), y runs from 0 to 100% whatever the data, so two charts compare at a glance;
 * both leave a few percent of room at the ends so markers on the edges are drawn whole.
 * Drawn in order: grid, error bars, lines, markers (with a white rim, so a marker stands out on
 * a line of another colour), frame and axes; nothing antialiased, so every mark is exactly its
 * series' colour. The exact ranges and the plot area's place in the image go to stderr, as for
 * the landscape.
 *
 * Malformed input is refused with exit status 2 and a message naming the file, line and column;
 * an unreadable file or unwritable --out is exit status 1. Not here: log axes, smoothing, several
 * panels, quoted fields that span lines.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "plot_draw.h"
#include "png_write.h"

#define CURVES_MAX_FIELDS 256 /* columns in the CSV */
#define CURVES_Y_ROOM 4.0     /* percentage points of room below 0% and above 100% */
#define CURVES_X_ROOM 0.03    /* room left of 0 and right of the largest x, of the x span */
#define CURVES_MIN_AREA_W 64
#define CURVES_MIN_AREA_H 48
#define CURVES_LABEL_MAX 128  /* bytes of a legend label as drawn */

static const plot_rgb COL_BG = {255, 255, 255}, COL_INK = {40, 40, 48}, COL_GRID = {232, 232, 238};

/* matplotlib's tab10, in its order */
static const plot_rgb PALETTE[] = {
    {31, 119, 180},  /* blue */
    {255, 127, 14},  /* orange */
    {44, 160, 44},   /* green */
    {214, 39, 40},   /* red */
    {148, 103, 189}, /* purple */
    {140, 86, 75},   /* brown */
    {227, 119, 194}, /* pink */
    {127, 127, 127}, /* grey */
    {188, 189, 34},  /* olive */
    {23, 190, 207},  /* cyan */
};
#define CURVES_MAX_SERIES ((int)(sizeof PALETTE / sizeof *PALETTE))

/* ---- the CSV ------------------------------------------------------------------------------- */

enum { C_SERIES, C_STEPS, C_WALL, C_SUCCESS, C_CI_LO, C_CI_HI, C_COUNT };
static const char *const COLUMN[C_COUNT] = {"series", "steps", "wall_s", "success", "ci_lo", "ci_hi"};
#define C_REQUIRED C_CI_LO /* the columns before it */

typedef struct curve_point {
  double x;       /* steps or wall_s, as --x asks */
  double success; /* fraction */
  double lo, hi;  /* the interval, fractions; NAN without one */
  int series;     /* index into curves.label */
  int line;       /* in the file */
} curve_point;

typedef struct curves {
  curve_point *pt; /* (n), sorted by series, then x, then line once read */
  int n, cap;
  char **label; /* (nseries), each owned */
  int nseries, label_cap;
} curves;

static void curves_free(curves *cs) {
  for (int i = 0; i < cs->nseries; i++) free(cs->label[i]);
  free(cs->label);
  free(cs->pt);
}

/* Splits line, in place, into fields at commas. A field in double quotes may hold commas, and
 * "" in it is one quote; unquoted fields lose their surrounding blanks. Returns the number of
 * fields, max + 1 if there are more than max, or -1 for broken quoting. */
static int split_fields(char *line, char **field, int max) {
  int n = 0;
  for (char *p = line;;) {
    while (*p == ' ' || *p == '\t') p++;
    char *start = p, *end;
    if (*p == '"') {
      end = p++;
      for (;;) {
        if (!*p) return -1;
        if (*p == '"' && p[1] != '"') break;
        *end++ = *p;
        p += *p == '"' ? 2 : 1;
      }
      p++;
      while (*p == ' ' || *p == '\t') p++;
      if (*p && *p != ',') return -1;
    } else {
      while (*p && *p != ',') p++;
      end = p;
      while (end > start && (end[-1] == ' ' || end[-1] == '\t')) end--;
    }
    char sep = *p;
    *end = '\0';
    if (n == max) return max + 1;
    field[n++] = start;
    if (!sep) return n;
    p++;
  }
}

/* The header, fields joined by commas, for messages. */
static void header_text(char **field, int n, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (int i = 0; i < n && used < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", field[i]);
}

/* A finite number that fills the field. 0, or -1 after a message naming where it is. */
static int field_number(const char *path, int line, int col, const char *v, double *out) {
  char *end;
  if (!*v) {
    fprintf(stderr, "ember plot curves: %s line %d, column '%s': empty, expected a number\n", path, line, COLUMN[col]);
    return -1;
  }
  *out = strtod(v, &end);
  if (*end || !isfinite(*out)) {
    fprintf(stderr, "ember plot curves: %s line %d, column '%s': '%s' is not a number\n", path, line, COLUMN[col], v);
    return -1;
  }
  return 0;
}

/* A fraction in [0, 1]; a value up to 100 is likely a percentage, and the message says so. */
static int field_fraction(const char *path, int line, int col, const char *v, double *out) {
  if (field_number(path, line, col, v, out) < 0) return -1;
  if (*out >= 0.0 && *out <= 1.0) return 0;
  fprintf(stderr, "ember plot curves: %s line %d, column '%s': %s is outside [0, 1]%s\n", path, line, COLUMN[col], v,
          *out > 1.0 && *out <= 100.0 ? " (a fraction is expected: 0.8 for 80%)" : "");
  return -1;
}

/* The index of series `name`, added if new. -1 when out of memory. */
static int series_index(curves *cs, const char *name) {
  for (int i = cs->nseries - 1; i >= 0; i--)
    if (strcmp(cs->label[i], name) == 0) return i;
  if (cs->nseries == cs->label_cap) {
    int cap = cs->label_cap ? 2 * cs->label_cap : 16;
    char **l = realloc(cs->label, (size_t)cap * sizeof *l);
    if (!l) return -1;
    cs->label = l, cs->label_cap = cap;
  }
  size_t len = strlen(name) + 1;
  char *copy = malloc(len);
  if (!copy) return -1;
  memcpy(copy, name, len);
  cs->label[cs->nseries] = copy;
  return cs->nseries++;
}

static curve_point *new_point(curves *cs) {
  if (cs->n == cs->cap) {
    int cap = cs->cap ? 2 * cs->cap : 64;
    curve_point *p = realloc(cs->pt, (size_t)cap * sizeof *p);
    if (!p) return NULL;
    cs->pt = p, cs->cap = cap;
  }
  return &cs->pt[cs->n++];
}

/* One data row: its fields, where each column is (col[] indexes field[]; -1 for an absent
 * interval). 0, or -1 after a message. */
static int read_row(const char *path, int line, char **field, const int *col, int use_wall, curves *cs) {
  const char *name = field[col[C_SERIES]];
  double steps, wall, success, lo = NAN, hi = NAN;
  if (!*name) {
    fprintf(stderr, "ember plot curves: %s line %d, column 'series': empty, expected a label\n", path, line);
    return -1;
  }
  if (field_number(path, line, C_STEPS, field[col[C_STEPS]], &steps) < 0 ||
      field_number(path, line, C_WALL, field[col[C_WALL]], &wall) < 0 ||
      field_fraction(path, line, C_SUCCESS, field[col[C_SUCCESS]], &success) < 0)
    return -1;
  if (steps < 0.0 || wall < 0.0) {
    fprintf(stderr, "ember plot curves: %s line %d, column '%s': %s is negative\n", path, line,
            steps < 0.0 ? "steps" : "wall_s", field[col[steps < 0.0 ? C_STEPS : C_WALL]]);
    return -1;
  }
  if (col[C_CI_LO] >= 0) {
    const char *vl = field[col[C_CI_LO]], *vh = field[col[C_CI_HI]];
    if (*vl || *vh) { /* both empty: no error bar on this point */
      if (field_fraction(path, line, C_CI_LO, vl, &lo) < 0 || field_fraction(path, line, C_CI_HI, vh, &hi) < 0)
        return -1;
      if (!(lo <= success && success <= hi)) {
        fprintf(stderr, "ember plot curves: %s line %d: the interval ci_lo %s .. ci_hi %s does not hold success %s\n",
                path, line, vl, vh, field[col[C_SUCCESS]]);
        return -1;
      }
    }
  }
  int s = series_index(cs, name);
  curve_point *p = s < 0 ? NULL : new_point(cs);
  if (!p) {
    fprintf(stderr, "ember plot curves: out of memory reading %s\n", path);
    return -1;
  }
  *p = (curve_point){use_wall ? wall : steps, success, lo, hi, s, line};
  return 0;
}

static int cmp_point(const void *a, const void *b) {
  const curve_point *p = a, *q = b;
  if (p->series != q->series) return p->series < q->series ? -1 : 1;
  if (p->x != q->x) return p->x < q->x ? -1 : 1;
  return (p->line > q->line) - (p->line < q->line);
}

/* Reads the curves in path, x from wall_s or steps, sorted by series, then x. Returns 0, or the
 * exit status after a message: 1 when the file cannot be read, 2 when its content is wrong. */
static int curves_read(const char *path, int use_wall, curves *cs) {
  FILE *f = fopen(path, "r");
  if (!f) {
    fprintf(stderr, "ember plot curves: cannot read %s: %s\n", path, strerror(errno));
    return 1;
  }
  char *buf = NULL, *field[CURVES_MAX_FIELDS], header[512];
  size_t buf_len = 0;
  int col[C_COUNT], nfields = 0, line = 0, rc = 2;
  ssize_t got;
  while ((got = getline(&buf, &buf_len, f)) >= 0) {
    line++;
    while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == '\r')) buf[--got] = '\0';
    char *text = buf;
    if (line == 1 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB && (unsigned char)text[2] == 0xBF)
      text += 3; /* a byte-order mark, as spreadsheets write */
    if (strspn(text, " \t") == strlen(text)) continue;
    int n = split_fields(text, field, CURVES_MAX_FIELDS);
    if (n < 0 || n > CURVES_MAX_FIELDS) {
      if (n < 0)
        fprintf(stderr, "ember plot curves: %s line %d: a quoted field is not closed, or text follows its closing "
                        "quote\n", path, line);
      else
        fprintf(stderr, "ember plot curves: %s line %d: more than %d fields\n", path, line, CURVES_MAX_FIELDS);
      goto done;
    }
    if (nfields == 0) { /* the header */
      nfields = n;
      header_text(field, n, header, sizeof header);
      for (int c = 0; c < C_COUNT; c++) {
        col[c] = -1;
        for (int i = 0; i < n; i++) {
          if (strcmp(field[i], COLUMN[c]) != 0) continue;
          if (col[c] >= 0) {
            fprintf(stderr, "ember plot curves: %s: column '%s' appears twice in the header (%s)\n", path,
                    COLUMN[c], header);
            goto done;
          }
          col[c] = i;
        }
      }
      char missing[128] = "";
      for (int c = 0; c < C_REQUIRED; c++)
        if (col[c] < 0)
          snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s'%s'", *missing ? ", " : "",
                   COLUMN[c]);
      if (*missing) {
        fprintf(stderr, "ember plot curves: %s has no column %s; its header is: %s (needed: series, steps, wall_s, "
                        "success; optional: ci_lo, ci_hi)\n", path, missing, header);
        goto done;
      }
      if ((col[C_CI_LO] < 0) != (col[C_CI_HI] < 0)) {
        fprintf(stderr, "ember plot curves: %s has column '%s' but not '%s': an error bar needs both (header: %s)\n",
                path, col[C_CI_LO] < 0 ? "ci_hi" : "ci_lo", col[C_CI_LO] < 0 ? "ci_lo" : "ci_hi", header);
        goto done;
      }
      continue;
    }
    if (n != nfields) {
      fprintf(stderr, "ember plot curves: %s line %d has %d field%s, the header %d\n", path, line, n,
              n == 1 ? "" : "s", nfields);
      goto done;
    }
    if (read_row(path, line, field, col, use_wall, cs) < 0) goto done;
  }
  if (ferror(f)) {
    fprintf(stderr, "ember plot curves: cannot read %s: %s\n", path, strerror(errno));
    rc = 1;
    goto done;
  }
  if (nfields == 0) {
    fprintf(stderr, "ember plot curves: %s is empty; expected a header (series,steps,wall_s,success[,ci_lo,ci_hi]) "
                    "and rows\n", path);
    goto done;
  }
  if (cs->n == 0) {
    fprintf(stderr, "ember plot curves: %s has a header but no data rows\n", path);
    goto done;
  }
  qsort(cs->pt, (size_t)cs->n, sizeof *cs->pt, cmp_point);
  rc = 0;
done:
  free(buf);
  fclose(f);
  return rc;
}

/* ---- the chart ----------------------------------------------------------------------------- */

typedef struct chart {
  plot_area L;
  plot_ticks xt, yt;
  double xmax;                              /* the largest x; the axis runs from 0 */
  int pad, line_h;                          /* outer margin; a line of text with descenders */
  int title_y, ylabel_y, xlabel_y;          /* tops of the title and of the axes' names */
  int legend_x, legend_y, entry_h, label_w; /* legend: left, top, rows an entry, label pixels */
} chart;

/* Lays out a w x h chart: title and the y axis's name on top, tick numbers left of and below
 * the plot area, the x axis's name under them, the legend right of the area with room for the
 * longest label (at most 35% of the width; longer ones are cut). 0, or -1 after a message when
 * it does not fit in the image. */
static int plan_chart(chart *C, const curves *cs, int w, int h, int has_title, const char *size) {
  plot_area *L = &C->L;
  const int s = L->s = w >= 400 && h >= 300 ? 2 : 1;
  C->pad = 4 * s;
  C->line_h = PLOT_GLYPH_ROWS * s;
  C->title_y = C->pad;
  C->ylabel_y = C->title_y + (has_title ? C->line_h + 3 * s : 0);
  L->y0 = C->ylabel_y + C->line_h + 3 * s;
  L->ph = h - L->y0 - (8 + 5 * s + 3 * s + C->line_h + C->pad); /* as plot_axes puts numbers */
  C->xlabel_y = L->y0 + L->ph + 8 + 5 * s + 3 * s;
  L->ylo = -CURVES_Y_ROOM, L->yhi = 100.0 + CURVES_Y_ROOM;
  plot_ticks_make(0.0, 100.0, L->ph, 40 * s, &C->yt);
  int widest = 0;
  for (int i = 0; i < C->yt.n; i++) {
    int tw = plot_text_width(C->yt.label[i], s);
    widest = tw > widest ? tw : widest;
  }
  L->x0 = C->pad + widest + 8;

  C->label_w = 0;
  for (int i = 0; i < cs->nseries; i++) {
    int tw = plot_text_width(cs->label[i], s);
    C->label_w = tw > C->label_w ? tw : C->label_w;
  }
  if (C->label_w > w * 35 / 100) C->label_w = w * 35 / 100;
  C->entry_h = C->line_h + 3 * s;
  L->pw = w - L->x0 - (6 * s + 8 * s + 3 * s + C->label_w + C->pad); /* gap, swatch, gap, label */
  C->legend_x = L->x0 + L->pw + 6 * s;
  C->legend_y = L->y0;
  if (L->pw < CURVES_MIN_AREA_W || L->ph < CURVES_MIN_AREA_H) {
    fprintf(stderr, "ember plot curves: --size %s leaves a plot area of %dx%d pixels beside the axes and the "
                    "legend; make it larger\n", size, L->pw, L->ph);
    return -1;
  }
  if (C->legend_y + cs->nseries * C->entry_h > h - C->pad) {
    fprintf(stderr, "ember plot curves: --size %s is too short for a legend of %d series; make it taller\n",
            size, cs->nseries);
    return -1;
  }

  C->xmax = 0.0;
  for (int i = 0; i < cs->n; i++) C->xmax = fmax(C->xmax, cs->pt[i].x);
  double span = C->xmax > 0.0 ? C->xmax : 1.0;
  L->xlo = -CURVES_X_ROOM * span, L->xhi = (1.0 + CURVES_X_ROOM) * span;
  plot_ticks_make(0.0, span, (int)(L->pw / (1.0 + 2.0 * CURVES_X_ROOM)), 60 * s, &C->xt);
  return 0;
}

static double px_x(const plot_area *L, double x) { return L->x0 + (x - L->xlo) / (L->xhi - L->xlo) * L->pw; }
static double px_y(const plot_area *L, double success) {
  return L->y0 + (L->yhi - 100.0 * success) / (L->yhi - L->ylo) * L->ph;
}

/* A w x w square centred on (x, y) (for even w, (x, y) is the upper left of its middle four
 * pixels), clipped to the rectangle of clip. */
static void dab(plot_canvas *cv, const plot_area *clip, int x, int y, int w, plot_rgb c) {
  for (int yy = y - (w - 1) / 2; yy < y - (w - 1) / 2 + w; yy++)
    for (int xx = x - (w - 1) / 2; xx < x - (w - 1) / 2 + w; xx++)
      if (xx >= clip->x0 && yy >= clip->y0 && xx < clip->x0 + clip->pw && yy < clip->y0 + clip->ph)
        plot_put(cv, xx, yy, c);
}

/* A line w pixels thick from (xa, ya) to (xb, yb), in pixels: a dab every half pixel. */
static void segment(plot_canvas *cv, const plot_area *clip, double xa, double ya, double xb, double yb, int w,
                    plot_rgb c) {
  int n = (int)ceil(2.0 * fmax(fabs(xb - xa), fabs(yb - ya))) + 1;
  for (int i = 0; i <= n; i++) {
    double t = (double)i / n;
    dab(cv, clip, (int)floor(xa + t * (xb - xa)), (int)floor(ya + t * (yb - ya)), w, c);
  }
}

/* A disc of radius r in c with a one-pixel rim of the background around it. */
static void marker(plot_canvas *cv, const plot_area *clip, double x, double y, int r, plot_rgb c) {
  const int cx = (int)floor(x), cy = (int)floor(y), R = r + 1;
  for (int dy = -R; dy <= R; dy++)
    for (int dx = -R; dx <= R; dx++) {
      int d2 = dx * dx + dy * dy;
      if (d2 <= R * R + R) dab(cv, clip, cx + dx, cy + dy, 1, d2 <= r * r + r ? c : COL_BG);
    }
}

/* Light lines across the plot area at the ticks, in the tick marks' columns and rows. */
static void draw_grid(plot_canvas *cv, const chart *C) {
  const plot_area *L = &C->L;
  for (int i = 0; i < C->xt.n; i++)
    plot_fill(cv, L->x0 + (int)(px_x(L, C->xt.v[i]) - L->x0), L->y0, 1, L->ph, COL_GRID);
  for (int i = 0; i < C->yt.n; i++)
    plot_fill(cv, L->x0, L->y0 + (int)(px_y(L, C->yt.v[i] / 100.0) - L->y0), L->pw, 1, COL_GRID);
}

/* Error bars, then every series' line, then every marker, so that no line hides a point. */
static void draw_curves(plot_canvas *cv, const chart *C, const curves *cs) {
  const plot_area *L = &C->L;
  const int s = L->s, cap = s + 1;
  for (int i = 0; i < cs->n; i++) {
    const curve_point *p = &cs->pt[i];
    if (isnan(p->lo)) continue;
    double x = px_x(L, p->x), ylo = px_y(L, p->lo), yhi = px_y(L, p->hi);
    plot_rgb c = PALETTE[p->series];
    segment(cv, L, x, ylo, x, yhi, 1, c);
    segment(cv, L, x - cap, ylo, x + cap, ylo, 1, c);
    segment(cv, L, x - cap, yhi, x + cap, yhi, 1, c);
  }
  for (int i = 1; i < cs->n; i++) {
    const curve_point *a = &cs->pt[i - 1], *b = &cs->pt[i];
    if (a->series == b->series)
      segment(cv, L, px_x(L, a->x), px_y(L, a->success), px_x(L, b->x), px_y(L, b->success), s, PALETTE[b->series]);
  }
  for (int i = 0; i < cs->n; i++) {
    const curve_point *p = &cs->pt[i];
    marker(cv, L, px_x(L, p->x), px_y(L, p->success), s + 1, PALETTE[p->series]);
  }
}

/* One entry a series, top to bottom in the file's order: a piece of line with a marker on it,
 * then the label. Returns how many labels had to be cut. */
static int draw_legend(plot_canvas *cv, const chart *C, const curves *cs) {
  const int s = C->L.s;
  const plot_area whole = {0, 0, cv->w, cv->h, 0, 0, 0, 0, s};
  int cut = 0;
  for (int i = 0; i < cs->nseries; i++) {
    int x = C->legend_x, y = C->legend_y + i * C->entry_h;
    char label[CURVES_LABEL_MAX];
    cut += plot_text_fit(cs->label[i], s, C->label_w, label, sizeof label);
    plot_fill(cv, x, y + 2 * s, 8 * s, s, PALETTE[i]);
    marker(cv, &whole, x + 4 * s, y + 2 * s + s / 2, s + 1, PALETTE[i]);
    plot_text(cv, x + 11 * s, y, s, label, COL_INK);
  }
  return cut;
}

static void draw_labels(plot_canvas *cv, const chart *C, const char *title, const char *xname) {
  const plot_area *L = &C->L;
  const int s = L->s;
  plot_text(cv, C->pad, C->ylabel_y, s, "success %", COL_INK);
  plot_text(cv, L->x0 + (L->pw - plot_text_width(xname, s)) / 2, C->xlabel_y, s, xname, COL_INK);
  if (title) {
    int tx = L->x0 + (L->pw - plot_text_width(title, s)) / 2;
    plot_text(cv, tx > C->pad ? tx : C->pad, C->title_y, s, title, COL_INK);
  }
}

/* ---- the verb ------------------------------------------------------------------------------ */

int cmd_plot_curves(int argc, char **argv) {
  const char *data = NULL, *out = NULL, *xaxis = "steps", *title = NULL, *size = "640x480";
  opt_spec specs[] = {
      {"data", OPT_STR, &data, "CURVES.csv", "the curves: a CSV with columns series, steps, wall_s, success (a fraction "
                                             "0..1) and optionally ci_lo, ci_hi (an error bar)", 0, 0},
      {"out", OPT_STR, &out, "FILE.png", "where to write the PNG (written atomically)", 0, 0},
      {"x", OPT_STR, &xaxis, "steps|wall_s", "the x axis: training steps, or training wall time in seconds", 0, 0},
      {"title", OPT_STR, &title, "TEXT", "a line of text above the chart", 0, 0},
      {"size", OPT_STR, &size, "WxH", "image size in pixels", 0, 0},
  };
  const int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("plot curves",
                      "--data CURVES.csv --out FILE.png [--x steps|wall_s] [--title TEXT] [--size WxH]\n"
                      "       ember plot --model MODEL --out FILE.png [options]   (an energy landscape: ember plot --help)\n"
                      "\nLearning curves: one line a series (success 0..100% against steps or wall time), with error\n"
                      "bars from ci_lo..ci_hi when the CSV has them, and a legend. Other CSV columns are ignored.",
                      specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!data || !out) {
    fprintf(stderr, "ember plot curves: --data and --out are required (see ember plot curves --help)\n");
    return 2;
  }
  int use_wall = strcmp(xaxis, "wall_s") == 0, w, h;
  if (!use_wall && strcmp(xaxis, "steps") != 0) {
    fprintf(stderr, "ember plot curves: --x must be steps or wall_s, got '%s'\n", xaxis);
    return 2;
  }
  if (plot_parse_size("plot curves", size, &w, &h) < 0) return 2;
  if (title && !*title) title = NULL;

  curves cs = {0};
  chart C;
  plot_canvas cv = {NULL, w, h};
  rc = curves_read(data, use_wall, &cs);
  if (rc != 0) goto done;
  rc = 2;
  if (cs.nseries > CURVES_MAX_SERIES) {
    fprintf(stderr, "ember plot curves: %s has %d series; at most %d are allowed, one colour each (plot them in "
                    "several charts)\n", data, cs.nseries, CURVES_MAX_SERIES);
    goto done;
  }
  if (plan_chart(&C, &cs, w, h, title != NULL, size) < 0) goto done;
  rc = 1;
  cv.rgb = malloc((size_t)w * h * 3);
  if (!cv.rgb) {
    fprintf(stderr, "ember plot curves: out of memory for a %dx%d image\n", w, h);
    goto done;
  }
  const char *xname = use_wall ? "training wall time (s)" : "training steps";
  plot_fill(&cv, 0, 0, w, h, COL_BG);
  draw_grid(&cv, &C);
  draw_curves(&cv, &C, &cs);
  plot_axes(&cv, &C.L, &C.xt, &C.yt, COL_INK);
  int cut = draw_legend(&cv, &C, &cs);
  draw_labels(&cv, &C, title, xname);

  char why[512];
  if (cli_png_write(out, cv.rgb, w, h, why, sizeof why) < 0) {
    fprintf(stderr, "ember plot curves: %s\n", why);
    goto done;
  }
  const plot_area *L = &C.L;
  fprintf(stderr, "ember plot curves: wrote %s, %dx%d pixels\n", out, w, h);
  fprintf(stderr, "  plot area    left %d, top %d, %dx%d pixels\n", L->x0, L->y0, L->pw, L->ph);
  fprintf(stderr, "  x            %.9g .. %.9g across (%s, data 0 .. %g)\n", L->xlo, L->xhi, xname, C.xmax);
  fprintf(stderr, "  y            %.9g .. %.9g up (success %%)\n", L->ylo, L->yhi);
  fprintf(stderr, "  legend       left %d, top %d, %d pixels an entry%s\n", C.legend_x, C.legend_y, C.entry_h,
          cut ? "; long labels cut to fit" : "");
  for (int i = 0, k = 0; i < cs.nseries; i++) {
    int n = 0, bars = 0;
    for (; k < cs.n && cs.pt[k].series == i; k++) n++, bars += !isnan(cs.pt[k].lo);
    plot_rgb c = PALETTE[i];
    fprintf(stderr, "  series %-5d #%02x%02x%02x  %s: %d point%s%s\n", i + 1, c.r, c.g, c.b, cs.label[i], n,
            n == 1 ? "" : "s", bars ? ", with error bars" : "");
  }
  rc = 0;
done:
  free(cv.rgb);
  curves_free(&cs);
  return rc;
}
