/* dataset.c - reading (x, y) datasets from CSV text and NumPy .npz archives.
 *
 * Both formats are read from one buffer in memory: a path (or "-" for standard input) is
 * slurped first, up to 4 GiB, and the format is chosen by content, so a pipe works as well
 * as a file and a misnamed file still reads. A zip signature means .npz; anything else is CSV.
 *
 * The reader is strict on purpose. Training on a file with a silently dropped row, a column
 * shifted by a stray comma or a NaN gives a model that is wrong in ways nobody can trace
 * back, so every such case stops the read with a message naming the file and the line and
 * column (CSV) or the array and index (.npz):
 * - CSV numbers must be plain decimals ([+-]digits[.digits][e[+-]digits]); they are parsed
 *   with strtof under a thread-local "C" locale, so the process locale never changes what
 *   "1.5" means. The first line is a header when all its fields are non-numbers; a first line
 *   that mixes names and numbers is refused rather than guessed at, so a data row with one
 *   bad value is never mistaken for a header and dropped.
 * - Which columns are y is not guessed either: a 4-column file read as 3 x + 1 y by default
 *   trained a model on the wrong question without a word. y comes from names (y_cols), the
 *   header's "y:" marks or an explicit y_dim, and a file with none is refused with its header
 *   and the choices. The header's names become the columns' names, which a model keeps.
 * - .npy members are parsed by hand (the header is a small Python dict literal) and streamed
 *   out of libzip in chunks, converting float64 to float32 and transposing Fortran order on
 *   the way, so a member costs its float32 copy and nothing more. Reading each member to its
 *   end makes libzip check its CRC.
 *
 * What it does not do: quoted CSV fields, other separators, integer or big-endian .npy
 * arrays, or more than two dimensions. A dataset is held in memory whole.
 */
#include "ember/dataset.h"
#include "ember/encoder.h"

#include <errno.h>
#include <limits.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <zip.h>

#define DS_MAX_BYTES ((uint64_t)1 << 32) /* file size, and .npy member size */
#define DS_MAX_ROWS INT_MAX
#define NPY_MAX_HEADER (1u << 20)
#define NPY_CHUNK 65536 /* bytes per zip_fread while converting */

void ember_dataset_free(ember_dataset *ds) {
  if (!ds) return;
  free(ds->x);
  free(ds->y);
  free(ds->img);
  free(ds->x_names);
  free(ds->y_names);
  memset(ds, 0, sizeof *ds);
}

/* ---- validation split ------------------------------------------------------------------ */

int ember_dataset_split_rows(int n, float frac) {
  if (n < 2 || !(frac > 0.0f && frac < 1.0f)) return 0;
  double k = floor((double)frac * n + 0.5);
  return k < 1.0 ? 1 : k > n - 1 ? n - 1 : (int)k;
}

int ember_dataset_split(const ember_dataset *ds, float frac, uint64_t seed, ember_dataset *train,
                        ember_dataset *val, ember_err *err) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  if (!(frac > 0.0f && frac < 1.0f))
    return ember_fail(err, EMBER_EINVAL, "the validation share must be in (0, 1), got %g", (double)frac);
  if (ds->n < 2 || ds->y_dim < 1)
    return ember_fail(err, EMBER_EINVAL, "holding rows out for validation needs at least 2 rows of x and y, got %d",
                      ds->n);
  const int n = ds->n, nv = ember_dataset_split_rows(n, frac), dx = ds->x_dim, dy = ds->y_dim;
  int *perm = malloc((size_t)n * sizeof *perm);
  unsigned char *held = calloc((size_t)n, 1);
  train->x = malloc((size_t)(n - nv) * dx * sizeof(float));
  train->y = malloc((size_t)(n - nv) * dy * sizeof(float));
  val->x = malloc((size_t)nv * dx * sizeof(float));
  val->y = malloc((size_t)nv * dy * sizeof(float));
  /* both parts keep the file's column names (the model's signature comes from them) */
  int names_ok = 1;
  if (ds->x_names) {
    train->x_names = ember_names_new((const char *const *)ds->x_names, dx, 'x');
    val->x_names = ember_names_new((const char *const *)ds->x_names, dx, 'x');
    names_ok = train->x_names && val->x_names;
  }
  if (ds->y_names && names_ok) {
    train->y_names = ember_names_new((const char *const *)ds->y_names, dy, 'y');
    val->y_names = ember_names_new((const char *const *)ds->y_names, dy, 'y');
    names_ok = train->y_names && val->y_names;
  }
  if (!perm || !held || !train->x || !train->y || !val->x || !val->y || !names_ok) {
    free(perm);
    free(held);
    ember_dataset_free(train);
    ember_dataset_free(val);
    return ember_fail(err, EMBER_ENOMEM, "out of memory splitting %d rows", n);
  }
  /* the first nv places of a Fisher-Yates shuffle: a uniformly random set of nv rows */
  ember_rng rng;
  ember_rng_seed(&rng, seed, EMBER_SPLIT_STREAM);
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int i = 0; i < nv; i++) {
    int j = i + (int)ember_rng_below(&rng, (uint32_t)(n - i));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
    held[perm[i]] = 1;
  }
  train->n = n - nv;
  val->n = nv;
  train->x_dim = val->x_dim = dx;
  train->y_dim = val->y_dim = dy;
  for (int i = 0, a = 0, b = 0; i < n; i++) {
    ember_dataset *part = held[i] ? val : train;
    int at = held[i] ? b++ : a++;
    memcpy(part->x + (size_t)at * dx, ds->x + (size_t)i * dx, (size_t)dx * sizeof(float));
    memcpy(part->y + (size_t)at * dy, ds->y + (size_t)i * dy, (size_t)dy * sizeof(float));
  }
  free(perm);
  free(held);
  return 0;
}

/* ---- CSV ------------------------------------------------------------------------------ */

typedef struct csv_reader {
  const char *name;
  int x_dim;       /* requested x columns, or -1 */
  int y_dim;       /* y columns: as requested (-1: from the header) until the first line */
  const char *y_cols; /* the header's y columns by name, or NULL */
  int cols;        /* columns per line, 0 until the first non-blank line */
  int xd;          /* x columns once cols is known */
  int *colmap;     /* from a header: column -> x index (>= 0) or -1 - y index; NULL: the
                      first xd columns are x, the rest y */
  char **x_names, **y_names; /* from a header (ember_names_new), or NULL */
  int n;           /* data rows stored */
  size_t cap;      /* rows of room in x and y */
  float *x, *y;
  char *tok;       /* NUL-terminated copy of the field being parsed */
  size_t tok_cap;
} csv_reader;

static int is_space(char c) { return c == ' ' || c == '\t'; }
static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int lower_eq(const char *s, size_t n, const char *word) {
  size_t i = 0;
  for (; i < n && word[i]; i++) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
    if (c != word[i]) return 0;
  }
  return i == n && word[i] == 0;
}

/* 1 for nan, 2 for inf/infinity (optionally signed, any case), else 0. */
static int nonfinite_word(const char *s, size_t n) {
  if (n && (s[0] == '+' || s[0] == '-')) s++, n--;
  if (lower_eq(s, n, "nan")) return 1;
  if (lower_eq(s, n, "inf") || lower_eq(s, n, "infinity")) return 2;
  return 0;
}

/* [+-](digits[.digits*] | .digits)([eE][+-]digits)? and nothing else. */
static int decimal_syntax(const char *s, size_t n) {
  size_t i = 0, mant = 0;
  if (i < n && (s[i] == '+' || s[i] == '-')) i++;
  while (i < n && is_digit(s[i])) i++, mant++;
  if (i < n && s[i] == '.') {
    i++;
    while (i < n && is_digit(s[i])) i++, mant++;
  }
  if (mant == 0) return 0;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    size_t exp = 0;
    i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    while (i < n && is_digit(s[i])) i++, exp++;
    if (exp == 0) return 0;
  }
  return i == n;
}

/* A field as it may be quoted in a message: at most 32 bytes, control bytes shown as '?'. */
static void show_field(char *out, size_t outsz, const char *s, size_t n) {
  size_t k = 0, lim = n > 32 ? 32 : n;
  for (size_t i = 0; i < lim && k + 4 < outsz; i++) {
    unsigned char c = (unsigned char)s[i];
    out[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (n > lim && k + 4 < outsz) out[k++] = '.', out[k++] = '.', out[k++] = '.';
  out[k] = 0;
}

/* Splits [p, end) at commas into fields with surrounding spaces trimmed, calling visit on
 * each; stops at the first nonzero return. */
typedef int (*field_fn)(void *ctx, int col, const char *s, size_t n);

static int for_fields(const char *p, const char *end, field_fn visit, void *ctx) {
  int col = 0;
  for (;;) {
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *fe = comma ? comma : end, *fs = p;
    while (fs < fe && is_space(*fs)) fs++;
    while (fe > fs && is_space(fe[-1])) fe--;
    int rc = visit(ctx, col++, fs, (size_t)(fe - fs));
    if (rc) return rc;
    if (!comma) return 0;
    p = comma + 1;
  }
}

/* ---- column names ----------------------------------------------------------------------- */

/* Well-formed UTF-8: no overlong forms, surrogates or code points past U+10FFFF. */
static int utf8_valid(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], min;
    size_t k;
    if (c < 0x80) {
      i++;
      continue;
    }
    if ((c & 0xE0) == 0xC0) k = 1, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0) k = 2, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0) k = 3, min = 0x10000, c &= 0x07;
    else return 0;
    if (n - i <= k) return 0;
    for (size_t j = 1; j <= k; j++) {
      if ((s[i + j] & 0xC0) != 0x80) return 0;
      c = c << 6 | (s[i + j] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    i += k + 1;
  }
  return 1;
}

int ember_name_check(const char *s, size_t n, ember_err *err) {
  char shown[48];
  show_field(shown, sizeof shown, s, n);
  if (n == 0) return ember_fail(err, EMBER_EINVAL, "a name cannot be empty");
  if (n > EMBER_MAX_NAME)
    return ember_fail(err, EMBER_EINVAL, "\"%s\" has %zu bytes; a name has at most %d", shown, n,
                      EMBER_MAX_NAME);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f)
      return ember_fail(err, EMBER_EINVAL, "\"%s\" has a control character", shown);
    if (c == ',')
      return ember_fail(err, EMBER_EINVAL, "\"%s\" has a comma, which separates CSV columns", shown);
  }
  if (is_space(s[0]) || is_space(s[n - 1]))
    return ember_fail(err, EMBER_EINVAL, "\"%s\" has spaces around it", shown);
  if (!utf8_valid((const unsigned char *)s, n))
    return ember_fail(err, EMBER_EINVAL, "\"%s\" is not valid UTF-8", shown);
  if (decimal_syntax(s, n) || nonfinite_word(s, n))
    return ember_fail(err, EMBER_EINVAL, "\"%s\" is a number, which a CSV header cannot hold", shown);
  if (n >= 2 && s[0] == 'y' && s[1] == ':')
    return ember_fail(err, EMBER_EINVAL, "\"%s\" starts with \"y:\", a CSV header's mark of a y column",
                      shown);
  return 0;
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int ember_names_check(const char *const *x_names, int nx, const char *const *y_names, int ny,
                      ember_err *err) {
  const char *const *lists[2] = {x_names, y_names};
  const int counts[2] = {x_names ? nx : 0, y_names ? ny : 0};
  ember_err e;
  for (int l = 0; l < 2; l++)
    for (int i = 0; i < counts[l]; i++)
      if (ember_name_check(lists[l][i], strlen(lists[l][i]), &e) < 0)
        return ember_fail(err, EMBER_EINVAL, "%s_names[%d]: %s", l ? "y" : "x", i, e.msg);
  size_t total = (size_t)counts[0] + (size_t)counts[1];
  if (total < 2) return 0;
  const char **all = malloc(total * sizeof *all);
  if (!all) return ember_fail(err, EMBER_ENOMEM, "out of memory checking %zu names", total);
  for (int i = 0; i < counts[0]; i++) all[i] = x_names[i];
  for (int i = 0; i < counts[1]; i++) all[counts[0] + i] = y_names[i];
  qsort(all, total, sizeof *all, cmp_name);
  int rc = 0;
  for (size_t i = 1; i < total && rc == 0; i++)
    if (strcmp(all[i - 1], all[i]) == 0)
      rc = ember_fail(err, EMBER_EINVAL, "two columns are named \"%s\"; names must be distinct", all[i]);
  free(all);
  return rc;
}

char **ember_names_new(const char *const *names, int n, char prefix) {
  if (n < 1) return NULL;
  size_t bytes = (size_t)n * sizeof(char *);
  for (int i = 0; i < n; i++)
    bytes += names ? strlen(names[i]) + 1 : (size_t)snprintf(NULL, 0, "%c%d", prefix, i) + 1;
  char **out = malloc(bytes);
  if (!out) return NULL;
  char *at = (char *)(out + n), *end = (char *)out + bytes;
  for (int i = 0; i < n; i++) {
    out[i] = at;
    at += (names ? snprintf(at, (size_t)(end - at), "%s", names[i])
                 : snprintf(at, (size_t)(end - at), "%c%d", prefix, i)) + 1;
  }
  return out;
}

/* ---- CSV lines ---------------------------------------------------------------------- */

typedef struct header_votes {
  int numbers, words;
} header_votes;

static int vote_field(void *ctx, int col, const char *s, size_t n) {
  header_votes *v = ctx;
  if (n == 0) return 0;
  if (decimal_syntax(s, n) || nonfinite_word(s, n)) v->numbers++;
  else v->words++;
  return 0;
}

typedef struct row_ctx {
  csv_reader *r;
  long long line;
  ember_err *err;
  int rc;
  int mixed_first; /* line 1 holds words and numbers: say why it is not a header */
} row_ctx;

static int parse_field(void *ctx, int col, const char *s, size_t n) {
  row_ctx *c = ctx;
  csv_reader *r = c->r;
  char shown[48];
  int kind = nonfinite_word(s, n);
  if (n == 0) {
    c->rc = ember_fail(c->err, EMBER_EFORMAT, "%s:%lld: column %d is empty", r->name, c->line,
                       col + 1);
    return 1;
  }
  if (kind) {
    c->rc = ember_fail(c->err, EMBER_ERANGE, "%s:%lld: column %d is %s", r->name, c->line,
                       col + 1, kind == 1 ? "NaN" : "infinite");
    return 1;
  }
  if (!decimal_syntax(s, n)) {
    show_field(shown, sizeof shown, s, n);
    c->rc = ember_fail(c->err, EMBER_EFORMAT, "%s:%lld: column %d: \"%s\" is not a number%s",
                       r->name, c->line, col + 1, shown,
                       c->mixed_first ? " (a header line must not contain numbers)" : "");
    return 1;
  }
  if (n + 1 > r->tok_cap) {
    size_t cap = n + 1 > 64 ? n + 1 : 64;
    char *t = realloc(r->tok, cap);
    if (!t) {
      c->rc = ember_fail(c->err, EMBER_ENOMEM, "%s: out of memory", r->name);
      return 1;
    }
    r->tok = t;
    r->tok_cap = cap;
  }
  memcpy(r->tok, s, n);
  r->tok[n] = 0;
  char *endp = NULL;
  errno = 0;
  float v = strtof(r->tok, &endp);
  if (endp != r->tok + n) {
    show_field(shown, sizeof shown, s, n);
    c->rc = ember_fail(c->err, EMBER_EFORMAT, "%s:%lld: column %d: \"%s\" is not a number",
                       r->name, c->line, col + 1, shown);
    return 1;
  }
  /* ERANGE with a finite result is underflow to 0 or a subnormal: harmless, kept. */
  if (!isfinite(v)) {
    show_field(shown, sizeof shown, s, n);
    c->rc = ember_fail(c->err, EMBER_ERANGE,
                       "%s:%lld: column %d: %s is out of float32 range", r->name, c->line,
                       col + 1, shown);
    return 1;
  }
  size_t row = (size_t)r->n;
  int to = r->colmap ? r->colmap[col] : col < r->xd ? col : -1 - (col - r->xd);
  if (to >= 0) r->x[row * (size_t)r->xd + (size_t)to] = v;
  else r->y[row * (size_t)r->y_dim + (size_t)(-1 - to)] = v;
  return 0;
}

static int count_fields(const char *p, const char *end) {
  int n = 1;
  for (; p < end; p++)
    if (*p == ',' && ++n > EMBER_MAX_COLS) return EMBER_MAX_COLS + 1;
  return n;
}

static int csv_grow(csv_reader *r, ember_err *err) {
  int rc = 0;
  size_t cap = r->cap ? r->cap * 2 : 256;
  size_t wide = (size_t)(r->xd > r->y_dim ? r->xd : r->y_dim);
  if (cap > (size_t)DS_MAX_ROWS) cap = (size_t)DS_MAX_ROWS;
  if (cap > SIZE_MAX / sizeof(float) / wide) goto nomem;
  float *x = realloc(r->x, cap * (size_t)r->xd * sizeof(float));
  if (!x) goto nomem;
  r->x = x;
  if (r->y_dim > 0) {
    float *y = realloc(r->y, cap * (size_t)r->y_dim * sizeof(float));
    if (!y) goto nomem;
    r->y = y;
  }
  r->cap = cap;
  return 0;
nomem:
  rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory after %d rows", r->name, r->n);
  return rc;
}

/* The expected-columns message for a line of `found` columns. */
static int csv_mismatch(const csv_reader *r, long long line, int found, ember_err *err) {
  if (r->x_dim > 0 && r->y_dim > 0)
    return ember_fail(err, EMBER_EFORMAT, "%s:%lld: expected %d columns (%d x + %d y), found %d",
                      r->name, line, r->x_dim + r->y_dim, r->x_dim, r->y_dim, found);
  if (r->x_dim > 0 && r->y_dim == 0)
    return ember_fail(err, EMBER_EFORMAT, "%s:%lld: expected %d column%s (x), found %d", r->name,
                      line, r->x_dim, r->x_dim == 1 ? "" : "s", found);
  return ember_fail(err, EMBER_EFORMAT, "%s:%lld: expected %d columns (as in line 1), found %d",
                    r->name, line, r->cols, found);
}

typedef struct field_ref {
  const char *s;
  size_t n;
} field_ref;

static int collect_field(void *ctx, int col, const char *s, size_t n) {
  field_ref *f = ctx;
  f[col].s = s;
  f[col].n = n;
  return 0;
}

/* The line [p, end) as a message may quote it: at most 160 bytes, control bytes as '?'. */
static void show_line(char *out, size_t outsz, const char *p, const char *end) {
  size_t n = (size_t)(end - p), k = 0, lim = n > 160 ? 160 : n;
  for (size_t i = 0; i < lim && k + 4 < outsz; i++) {
    unsigned char c = (unsigned char)p[i];
    out[k++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
  }
  if (n > lim && k + 4 < outsz) out[k++] = '.', out[k++] = '.', out[k++] = '.';
  out[k] = 0;
}

/* The header line of a file read with y columns: names the columns and says which are y (see
 * dataset.h: y_cols, else "y:" marks, else the last y_dim; any two must agree). Sets cols, xd,
 * y_dim, colmap and the names. */
static int csv_header(csv_reader *r, const char *p, const char *end, int found, long long line,
                      ember_err *err) {
  int rc = 0, ny = 0, nmarks = 0;
  char head[176], shown[48];
  ember_err e;
  field_ref *f = calloc((size_t)found, sizeof *f);
  int *ycol = malloc((size_t)found * sizeof *ycol), *yof = malloc((size_t)found * sizeof *yof);
  const char **names = calloc((size_t)found, sizeof *names);
  char *text = malloc((size_t)(end - p) + 8 * (size_t)found + 1); /* default names: "y65535" */
  if (!f || !ycol || !yof || !names || !text) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory reading the header", r->name);
    goto done;
  }
  for_fields(p, end, collect_field, f);
  show_line(head, sizeof head, p, end);
  for (int i = 0; i < found; i++) {
    yof[i] = -1;
    if (f[i].n >= 2 && f[i].s[0] == 'y' && f[i].s[1] == ':') {
      nmarks++;
      yof[i] = 0; /* marked; its index is set below */
      f[i].s += 2, f[i].n -= 2;
      while (f[i].n && is_space(*f[i].s)) f[i].s++, f[i].n--;
    }
    if (f[i].n && ember_name_check(f[i].s, f[i].n, &e) < 0) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s:%lld: column %d of the header: %s", r->name, line,
                      i + 1, e.msg);
      goto done;
    }
  }
  if (r->y_cols && *r->y_cols) {
    const char *q = r->y_cols, *qend = q + strlen(q);
    for (int i = 0; i < found; i++) yof[i] = yof[i] >= 0 ? -2 : -1; /* -2: marked, not named yet */
    for (;;) {
      const char *comma = memchr(q, ',', (size_t)(qend - q)), *te = comma ? comma : qend, *ts = q;
      while (ts < te && is_space(*ts)) ts++;
      while (te > ts && is_space(te[-1])) te--;
      size_t tn = (size_t)(te - ts);
      int at = -1;
      for (int i = 0; i < found && at < 0; i++)
        if (f[i].n == tn && memcmp(f[i].s, ts, tn) == 0) at = i;
      show_field(shown, sizeof shown, ts, tn);
      if (tn == 0) {
        rc = ember_fail(err, EMBER_EINVAL, "%s: --y-cols \"%s\" has an empty name", r->name, r->y_cols);
        goto done;
      }
      if (at < 0) {
        rc = ember_fail(err, EMBER_EINVAL, "%s: --y-cols names \"%s\", which the header \"%s\" does not have",
                        r->name, shown, head);
        goto done;
      }
      if (yof[at] >= 0) {
        rc = ember_fail(err, EMBER_EINVAL, "%s: --y-cols names \"%s\" twice", r->name, shown);
        goto done;
      }
      yof[at] = ny;
      ycol[ny++] = at;
      if (!comma) break;
      q = comma + 1;
    }
    for (int i = 0; i < found; i++)
      if (yof[i] == -2) {
        show_field(shown, sizeof shown, f[i].s, f[i].n);
        rc = ember_fail(err, EMBER_EINVAL,
                        "%s:%lld: the header marks \"y:%s\" as y, but --y-cols does not name it; give one "
                        "or the other, or the same columns in both",
                        r->name, line, shown);
        goto done;
      }
    if (nmarks && nmarks != ny) {
      rc = ember_fail(err, EMBER_EINVAL,
                      "%s:%lld: the header marks %d y column%s, but --y-cols names %d; give one or the "
                      "other, or the same columns in both",
                      r->name, line, nmarks, nmarks == 1 ? "" : "s", ny);
      goto done;
    }
  } else if (nmarks) {
    for (int i = 0; i < found; i++)
      if (yof[i] >= 0) yof[i] = ny, ycol[ny++] = i;
  } else if (r->y_dim > 0) {
    if (found < r->y_dim + 1) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s:%lld: found %d column%s, need at least %d (1 or more x + %d y)",
                      r->name, line, found, found == 1 ? "" : "s", r->y_dim + 1, r->y_dim);
      goto done;
    }
    for (int i = found - r->y_dim; i < found; i++) yof[i] = ny, ycol[ny++] = i;
  } else {
    /* nothing says which columns are y: show the header and the three ways to say it */
    size_t hl = strlen(head);
    const char *last = f[found - 1].s;
    size_t lastn = f[found - 1].n;
    char example[224];
    if (hl < 160 && (size_t)(last - p) <= hl)
      snprintf(example, sizeof example, "%.*sy:%.*s", (int)(last - p), p, (int)lastn, last);
    else
      snprintf(example, sizeof example, "...,y:%.*s", (int)(lastn > 40 ? 40 : lastn), last);
    show_field(shown, sizeof shown, last, lastn);
    rc = ember_fail(err, EMBER_EINVAL,
                    "%s:%lld: which columns are y? The header \"%s\" marks none, and ember does not "
                    "guess: mark them with a y: prefix (%s), name them (--y-cols %s) or count them "
                    "from the right (--y-dim 1 for the last)",
                    r->name, line, head, example, lastn ? shown : "NAME");
    goto done;
  }
  if (r->y_dim > 0 && ny != r->y_dim) {
    rc = ember_fail(err, EMBER_EINVAL, "%s:%lld: the header %s %d y column%s, but --y-dim is %d",
                    r->name, line, r->y_cols && *r->y_cols ? "(with --y-cols) has" : "marks", ny,
                    ny == 1 ? "" : "s", r->y_dim);
    goto done;
  }
  if (ny >= found) {
    rc = ember_fail(err, EMBER_EINVAL, "%s:%lld: all %d columns are y; x needs at least one", r->name,
                    line, found);
    goto done;
  }
  r->y_dim = ny;
  r->cols = found;
  r->xd = found - ny;
  if (r->x_dim > 0 && r->xd != r->x_dim) {
    rc = csv_mismatch(r, line, found, err);
    goto done;
  }
  if (!(r->colmap = malloc((size_t)found * sizeof *r->colmap))) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory reading the header", r->name);
    goto done;
  }
  /* names: NUL-terminated copies, x in file order then y in y's order; an empty field takes
   * its default name */
  char *t = text;
  for (int i = 0, xi = 0; i < found; i++) {
    int slot = yof[i] >= 0 ? r->xd + yof[i] : xi;
    r->colmap[i] = yof[i] >= 0 ? -1 - yof[i] : xi++;
    names[slot] = t;
    if (f[i].n) t += sprintf(t, "%.*s", (int)f[i].n, f[i].s) + 1;
    else t += sprintf(t, "%c%d", yof[i] >= 0 ? 'y' : 'x', yof[i] >= 0 ? yof[i] : slot) + 1;
  }
  if (ember_names_check(names, r->xd, names + r->xd, ny, &e) < 0) {
    rc = ember_fail(err, e.code == EMBER_ENOMEM ? EMBER_ENOMEM : EMBER_EFORMAT, "%s:%lld: the header: %s",
                    r->name, line, e.msg);
    goto done;
  }
  r->x_names = ember_names_new(names, r->xd, 'x');
  r->y_names = ember_names_new(names + r->xd, ny, 'y');
  if (!r->x_names || !r->y_names)
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory reading the header", r->name);
done:
  free(f);
  free(ycol);
  free(yof);
  free(names);
  free(text);
  return rc;
}

/* Takes one non-blank line: fixes the column count on the first one, recognises a header
 * there, and parses every later line into a row. */
static int csv_line(csv_reader *r, const char *p, const char *end, long long line,
                    ember_err *err) {
  int rc = 0, first = r->cols == 0;
  int found = count_fields(p, end);
  row_ctx ctx = {r, line, err, 0, 0};
  if (found > EMBER_MAX_COLS) {
    rc = ember_fail(err, EMBER_ENOTSUP, "%s:%lld: more than %d columns", r->name, line,
                    EMBER_MAX_COLS);
    goto done;
  }
  if (first) {
    header_votes votes = {0, 0};
    for_fields(p, end, vote_field, &votes);
    if (votes.words > 0 && votes.numbers == 0 && line == 1) { /* a header */
      if (r->y_dim == 0) { /* inputs: every column is x, the names are not used */
        r->cols = r->xd = found;
        if (r->x_dim > 0 && found != r->x_dim) rc = csv_mismatch(r, line, found, err);
      } else {
        rc = csv_header(r, p, end, found, line, err);
      }
      goto done;
    }
    ctx.mixed_first = votes.words > 0 && votes.numbers > 0 && line == 1;
    if (r->y_cols && *r->y_cols && !ctx.mixed_first) {
      rc = ember_fail(err, EMBER_EINVAL,
                      "%s: --y-cols names columns of a header, but the file has no header line "
                      "(its first line is numbers); give --y-dim K for the last K columns",
                      r->name);
      goto done;
    }
    if (r->y_dim < 0 && !ctx.mixed_first) {
      rc = ember_fail(err, EMBER_EINVAL,
                      "%s: no header line names the columns, so which of the %d columns are y is "
                      "not known, and ember does not guess: give --y-dim K (the last K columns are y) "
                      "or add a header line that marks them with y: (e.g. x0,%sy:y0)",
                      r->name, found, found > 2 ? "...," : "");
      goto done;
    }
    if (r->y_dim < 0) r->y_dim = 1; /* a bad header line: refused below, as before */
    int want = r->x_dim > 0 ? r->x_dim + r->y_dim : found;
    if (found != want) {
      rc = csv_mismatch(r, line, found, err);
      goto done;
    }
    if (found < r->y_dim + 1) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s:%lld: found %d column%s, need at least %d (1 or more x + %d y)",
                      r->name, line, found, found == 1 ? "" : "s", r->y_dim + 1, r->y_dim);
      goto done;
    }
    r->cols = found;
    r->xd = found - r->y_dim;
  } else if (found != r->cols) {
    rc = csv_mismatch(r, line, found, err);
    goto done;
  }
  if (r->n == DS_MAX_ROWS) {
    rc = ember_fail(err, EMBER_ENOTSUP, "%s:%lld: more than %d data rows", r->name, line,
                    DS_MAX_ROWS);
    goto done;
  }
  if ((size_t)r->n == r->cap && (rc = csv_grow(r, err)) < 0) goto done;
  if (for_fields(p, end, parse_field, &ctx)) {
    rc = ctx.rc;
    goto done;
  }
  r->n++;
done:
  return rc;
}

static int blank(const char *p, const char *end) {
  while (p < end && is_space(*p)) p++;
  return p == end;
}

static int csv_read(const char *buf, size_t len, const char *name, const ember_dataset_spec *spec,
                    ember_dataset *ds, ember_err *err) {
  int rc = 0;
  csv_reader r = {0};
  const char *p = buf, *end = buf + len;
  long long line = 0, blank_line = 0;
  int header = 0;
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  locale_t prev = (locale_t)0;
  r.name = name;
  r.x_dim = spec->x_dim;
  r.y_dim = spec->y_dim;
  r.y_cols = spec->y_cols;
  if (!c_locale) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: cannot create the C locale", name);
    goto fail;
  }
  prev = uselocale(c_locale);
  if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 byte order mark */
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    const char *le = nl ? nl : end;
    line++;
    if (le > p && le[-1] == '\r') le--;
    if (blank(p, le)) {
      if (!blank_line) blank_line = line;
    } else if (blank_line) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s:%lld: blank line before more data (only trailing blank lines are "
                      "allowed)",
                      name, blank_line);
      goto fail;
    } else {
      int before = r.n;
      if ((rc = csv_line(&r, p, le, line, err)) < 0) goto fail;
      if (line == 1 && r.n == before) header = 1;
    }
    p = nl ? nl + 1 : end;
  }
  if (r.n == 0) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: no data rows (%s)", name,
                    header ? "only a header line" : "the file is empty");
    goto fail;
  }
  ds->n = r.n;
  ds->x_dim = r.xd;
  ds->y_dim = r.y_dim;
  ds->x = r.x;
  ds->y = r.y_dim > 0 ? r.y : NULL;
  ds->x_names = r.x_names;
  ds->y_names = r.y_names;
  r.x = r.y = NULL;
  r.x_names = r.y_names = NULL;
  /* Give back the unused tail of the doubling; keep the larger block if realloc fails. */
  float *t = realloc(ds->x, (size_t)ds->n * (size_t)ds->x_dim * sizeof(float));
  if (t) ds->x = t;
  if (ds->y) {
    t = realloc(ds->y, (size_t)ds->n * (size_t)ds->y_dim * sizeof(float));
    if (t) ds->y = t;
  }
fail:
  if (c_locale) {
    uselocale(prev);
    freelocale(c_locale);
  }
  free(r.x);
  free(r.y);
  free(r.tok);
  free(r.colmap);
  free(r.x_names);
  free(r.y_names);
  return rc;
}

/* ---- .npy inside .npz ----------------------------------------------------------------- */

typedef struct npy_array {
  const char *file;   /* archive name, for messages */
  const char *arr;    /* "x" or "y" */
  zip_file_t *zf;
  int f8;             /* '<f8' (else '<f4') */
  int strings;        /* a name array: '<U' or '|S' accepted instead of floats */
  int image_ok;       /* x: uint8 '|u1' images of 3 or 4 dimensions accepted too */
  int u8;             /* it is one: shape[0] images, shape[1] = H * W * C bytes each */
  uint64_t img_h, img_w;
  char str_kind;      /* 'U' (UTF-32LE code points) or 'S' (bytes), 0 for floats */
  uint64_t esize;     /* bytes per element */
  int fortran;
  int ndim;           /* 1 or 2 once validated */
  uint64_t shape[4];
  uint64_t header_bytes; /* magic through the end of the header dict */
} npy_array;

static int npy_fail(const npy_array *a, ember_err *err, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int npy_fail(const npy_array *a, ember_err *err, int code, const char *fmt, ...) {
  char why[EMBER_ERR_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  return ember_fail(err, code, "%s: %s.npy: %s", a->file, a->arr, why);
}

/* Reads exactly n bytes; returns n, fewer at the member's end, or -1 (err set). */
static int64_t npy_read(npy_array *a, void *buf, uint64_t n, ember_err *err) {
  uint64_t got = 0;
  while (got < n) {
    zip_int64_t k = zip_fread(a->zf, (char *)buf + got, n - got);
    if (k < 0) {
      npy_fail(a, err, EMBER_EFORMAT, "cannot read: %s", zip_file_strerror(a->zf));
      return -1;
    }
    if (k == 0) break;
    got += (uint64_t)k;
  }
  return (int64_t)got;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* A Python string literal in single or double quotes (no escapes, as numpy writes them). */
static const char *py_string(const char *p, const char *end, const char **s, size_t *n) {
  if (p >= end || (*p != '\'' && *p != '"')) return NULL;
  const char *close = memchr(p + 1, *p, (size_t)(end - p - 1));
  if (!close) return NULL;
  *s = p + 1;
  *n = (size_t)(close - p - 1);
  return close + 1;
}

static int starts(const char *p, const char *end, const char *word) {
  size_t n = strlen(word);
  return (size_t)(end - p) >= n && memcmp(p, word, n) == 0;
}

/* Parses "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }" into a. */
static int npy_header(npy_array *a, const char *p, const char *end, ember_err *err) {
  int have_descr = 0, have_order = 0, have_shape = 0, ndim = 0;
  p = skip_ws(p, end);
  if (p >= end || *p++ != '{') goto bad;
  for (;;) {
    const char *key, *val;
    size_t klen, vlen;
    p = skip_ws(p, end);
    if (p < end && *p == '}') break;
    if (!(p = py_string(p, end, &key, &klen))) goto bad;
    p = skip_ws(p, end);
    if (p >= end || *p++ != ':') goto bad;
    p = skip_ws(p, end);
    if (klen == 5 && memcmp(key, "descr", 5) == 0) {
      if (p < end && *p == '[')
        return npy_fail(a, err, EMBER_ENOTSUP,
                        "structured dtypes are not supported (need '<f4' or '<f8')");
      if (!(p = py_string(p, end, &val, &vlen))) goto bad;
      a->esize = 0;
      if (a->image_ok && vlen == 3 && (memcmp(val, "|u1", 3) == 0 || memcmp(val, "<u1", 3) == 0)) a->u8 = 1, a->esize = 1;
      else if (!a->strings && vlen == 3 && memcmp(val, "<f4", 3) == 0) a->f8 = 0, a->esize = 4;
      else if (!a->strings && vlen == 3 && memcmp(val, "<f8", 3) == 0) a->f8 = 1, a->esize = 8;
      else if (a->strings && vlen >= 3 && vlen <= 6 && ((val[0] == '<' && val[1] == 'U') || (val[0] == '|' && val[1] == 'S'))) {
        uint64_t w = 0;
        for (size_t i = 2; i < vlen && is_digit(val[i]); i++) w = w * 10 + (uint64_t)(val[i] - '0');
        a->str_kind = val[1];
        /* a name has at most EMBER_MAX_NAME bytes, so at most that many code points */
        if (w >= 1 && w <= EMBER_MAX_NAME && is_digit(val[vlen - 1])) a->esize = val[1] == 'U' ? 4 * w : w;
      }
      if (!a->esize && a->strings)
        return npy_fail(a, err, EMBER_ENOTSUP,
                        "dtype '%.*s' is not supported (need strings of at most %d characters, '<U' "
                        "or '|S')", (int)(vlen > 32 ? 32 : vlen), val, EMBER_MAX_NAME);
      if (!a->esize)
        return npy_fail(a, err, EMBER_ENOTSUP,
                        "dtype '%.*s' is not supported (need float32 '<f4' or float64 '<f8')",
                        (int)(vlen > 32 ? 32 : vlen), val);
      have_descr = 1;
    } else if (klen == 13 && memcmp(key, "fortran_order", 13) == 0) {
      if (starts(p, end, "True")) a->fortran = 1, p += 4;
      else if (starts(p, end, "False")) a->fortran = 0, p += 5;
      else goto bad;
      have_order = 1;
    } else if (klen == 5 && memcmp(key, "shape", 5) == 0) {
      if (p >= end || *p++ != '(') goto bad;
      for (;;) {
        p = skip_ws(p, end);
        if (p < end && *p == ')') break;
        uint64_t v = 0;
        if (p >= end || !is_digit(*p)) goto bad;
        for (; p < end && is_digit(*p); p++) {
          if (v > (UINT64_MAX - 9) / 10) goto bad;
          v = v * 10 + (uint64_t)(*p - '0');
        }
        if (p < end && *p == 'L') p++; /* written by Python 2 */
        if (ndim < 4) a->shape[ndim] = v;
        if (ndim < 64) ndim++;
        p = skip_ws(p, end);
        if (p < end && *p == ',') p++;
        else if (!(p < end && *p == ')')) goto bad;
      }
      p++;
      have_shape = 1;
    } else {
      return npy_fail(a, err, EMBER_EFORMAT, "unexpected key '%.*s' in the header",
                      (int)(klen > 32 ? 32 : klen), key);
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') p++;
    else if (!(p < end && *p == '}')) goto bad;
  }
  if (skip_ws(p + 1, end) != end) goto bad;
  if (!have_descr || !have_order || !have_shape)
    return npy_fail(a, err, EMBER_EFORMAT, "header lacks '%s'",
                    !have_descr ? "descr" : !have_order ? "fortran_order" : "shape");
  if (ndim == 0)
    return npy_fail(a, err, EMBER_EFORMAT, "is a scalar (shape ()); need 1 or 2 dimensions");
  if (a->u8) { /* images: (n, H, W) or (n, H, W, C), flattened to (n, H * W * C) */
    if (ndim != 3 && ndim != 4)
      return npy_fail(a, err, EMBER_ENOTSUP,
                      "is uint8 with %d dimensions; uint8 x is images: (n, H, W) or (n, H, W, C)", ndim);
    if (ndim == 3) a->shape[3] = 1;
    if (a->fortran)
      return npy_fail(a, err, EMBER_ENOTSUP, "images must be in C order (numpy's default)");
    for (int i = 1; i < 4; i++)
      if (a->shape[i] < 1 || a->shape[i] > (uint64_t)EMBER_MAX_IMAGE_SIDE)
        return npy_fail(a, err, EMBER_ENOTSUP, "image dimensions must be 1..%d, got %llu",
                        EMBER_MAX_IMAGE_SIDE, (unsigned long long)a->shape[i]);
    a->ndim = ndim;
    a->img_h = a->shape[1];
    a->img_w = a->shape[2];
    a->shape[1] = a->shape[1] * a->shape[2] * a->shape[3];
    return 0;
  }
  if (ndim > 2)
    return npy_fail(a, err, EMBER_ENOTSUP, "has %d dimensions; need 1 or 2", ndim);
  a->ndim = ndim;
  if (ndim == 1) a->shape[1] = 1;
  return 0;
bad:
  return npy_fail(a, err, EMBER_EFORMAT, "malformed header");
}

/* Opens name.npy, checks magic, header and size, and leaves a->zf at the first data byte. */
static int npy_open(zip_t *za, zip_int64_t idx, npy_array *a, ember_err *err) {
  int rc = 0;
  unsigned char pre[12];
  char *hdr = NULL;
  uint64_t hlen, prelen;
  zip_stat_t st;
  if (!(a->zf = zip_fopen_index(za, (zip_uint64_t)idx, 0))) {
    rc = npy_fail(a, err, EMBER_EFORMAT, "cannot open: %s", zip_strerror(za));
    goto fail;
  }
  int64_t got = npy_read(a, pre, 10, err);
  if (got < 0) goto io;
  if (got < 10 || memcmp(pre, "\x93NUMPY", 6) != 0) {
    rc = npy_fail(a, err, EMBER_EFORMAT, "not a .npy array (bad magic)");
    goto fail;
  }
  if (pre[6] == 1) {
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8;
    prelen = 10;
  } else if (pre[6] == 2 || pre[6] == 3) {
    if ((got = npy_read(a, pre + 10, 2, err)) < 0) goto io;
    if (got < 2) goto truncated_header;
    hlen = (uint64_t)pre[8] | (uint64_t)pre[9] << 8 | (uint64_t)pre[10] << 16 |
           (uint64_t)pre[11] << 24;
    prelen = 12;
  } else {
    rc = npy_fail(a, err, EMBER_ENOTSUP, "format version %d.%d is not supported", pre[6],
                  pre[7]);
    goto fail;
  }
  if (hlen > NPY_MAX_HEADER) {
    rc = npy_fail(a, err, EMBER_EFORMAT, "header of %llu bytes is implausibly large",
                  (unsigned long long)hlen);
    goto fail;
  }
  if (!(hdr = malloc(hlen + 1))) {
    rc = npy_fail(a, err, EMBER_ENOMEM, "out of memory");
    goto fail;
  }
  if ((got = npy_read(a, hdr, hlen, err)) < 0) goto io;
  if ((uint64_t)got < hlen) goto truncated_header;
  if ((rc = npy_header(a, hdr, hdr + hlen, err)) < 0) goto fail;
  a->header_bytes = prelen + hlen;

  uint64_t rows = a->shape[0], cols = a->shape[1];
  if (rows == 0 || cols == 0) {
    rc = npy_fail(a, err, EMBER_EFORMAT, "has shape (%llu, %llu): no data",
                  (unsigned long long)rows, (unsigned long long)cols);
    goto fail;
  }
  if (rows > (uint64_t)DS_MAX_ROWS || (cols > (uint64_t)EMBER_MAX_COLS && !a->u8)) {
    rc = npy_fail(a, err, EMBER_ENOTSUP,
                  "has shape (%llu, %llu); at most %d rows and %d columns are supported",
                  (unsigned long long)rows, (unsigned long long)cols, DS_MAX_ROWS, EMBER_MAX_COLS);
    goto fail;
  }
  /* rows < 2^31, cols <= 2^16 and esize <= 256 (images: cols <= 2^30, esize 1), so
   * rows * cols * esize < 2^61: no overflow. */
  uint64_t need = rows * cols * a->esize; /* esize <= 256 */
  if (need > DS_MAX_BYTES) {
    rc = npy_fail(a, err, EMBER_ENOTSUP, "holds %llu bytes of data; at most 4 GiB is supported",
                  (unsigned long long)need);
    goto fail;
  }
  zip_stat_init(&st);
  if (zip_stat_index(za, (zip_uint64_t)idx, 0, &st) == 0 && (st.valid & ZIP_STAT_SIZE) &&
      st.size != a->header_bytes + need) {
    uint64_t have = st.size > a->header_bytes ? st.size - a->header_bytes : 0;
    rc = npy_fail(a, err, EMBER_EFORMAT,
                  "%s: shape (%llu, %llu) of %s needs %llu data bytes, the member holds %llu",
                  have < need ? "truncated" : "trailing bytes", (unsigned long long)rows,
                  (unsigned long long)cols, a->str_kind ? "strings" : a->f8 ? "float64" : "float32",
                  (unsigned long long)need, (unsigned long long)have);
    goto fail;
  }
  goto done;

truncated_header:
  rc = npy_fail(a, err, EMBER_EFORMAT, "truncated header");
  goto fail;
io:
  rc = err ? err->code : EMBER_EFORMAT;
fail:
  if (a->zf) zip_fclose(a->zf);
  a->zf = NULL;
done:
  free(hdr);
  return rc;
}

static uint32_t le32(const unsigned char *b) {
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static int npy_bad_value(const npy_array *a, ember_err *err, uint64_t r, uint64_t c, double v) {
  char where[64];
  if (a->ndim == 1) snprintf(where, sizeof where, "%s[%llu]", a->arr, (unsigned long long)r);
  else
    snprintf(where, sizeof where, "%s[%llu,%llu]", a->arr, (unsigned long long)r,
             (unsigned long long)c);
  if (isnan(v)) return ember_fail(err, EMBER_ERANGE, "%s: %s is NaN", a->file, where);
  if (isinf(v)) return ember_fail(err, EMBER_ERANGE, "%s: %s is infinite", a->file, where);
  return ember_fail(err, EMBER_ERANGE, "%s: %s = %g is out of float32 range", a->file, where,
                    v);
}

/* Streams the data of an opened array into out (rows, cols) row-major, converting and
 * checking each value, then reads to the member's end so libzip verifies the CRC. */
static int npy_load(npy_array *a, float *out, ember_err *err) {
  int rc = 0;
  unsigned char *chunk = malloc(NPY_CHUNK);
  uint64_t rows = a->shape[0], cols = a->shape[1], r = 0, c = 0;
  uint64_t esize = a->f8 ? 8 : 4, left = rows * cols * esize;
  if (!chunk) {
    rc = npy_fail(a, err, EMBER_ENOMEM, "out of memory");
    goto fail;
  }
  while (left > 0) {
    uint64_t want = left < NPY_CHUNK ? left : NPY_CHUNK;
    int64_t got = npy_read(a, chunk, want, err);
    if (got < 0) {
      rc = err ? err->code : EMBER_EFORMAT;
      goto fail;
    }
    if ((uint64_t)got < want) {
      rc = npy_fail(a, err, EMBER_EFORMAT, "truncated: data ends %llu bytes short",
                    (unsigned long long)(left - (uint64_t)got));
      goto fail;
    }
    for (uint64_t off = 0; off < want; off += esize) {
      double d;
      float f;
      if (a->f8) {
        uint64_t bits = (uint64_t)le32(chunk + off) | (uint64_t)le32(chunk + off + 4) << 32;
        memcpy(&d, &bits, sizeof d);
        f = (float)d;
      } else {
        uint32_t bits = le32(chunk + off);
        memcpy(&f, &bits, sizeof f);
        d = f;
      }
      if (!isfinite(f)) {
        rc = npy_bad_value(a, err, r, c, d);
        goto fail;
      }
      out[r * cols + c] = f;
      if (a->fortran) {
        if (++r == rows) r = 0, c++;
      } else if (++c == cols) {
        c = 0, r++;
      }
    }
    left -= want;
  }
  int64_t extra = npy_read(a, chunk, 1, err);
  if (extra < 0) {
    rc = err ? err->code : EMBER_EFORMAT;
    goto fail;
  }
  if (extra > 0) {
    rc = npy_fail(a, err, EMBER_EFORMAT, "trailing bytes after the data");
    goto fail;
  }
fail:
  free(chunk);
  return rc;
}

/* The bytes of an opened uint8 image array into out, then to the member's end (libzip checks
 * the CRC there). */
static int npy_load_u8(npy_array *a, uint8_t *out, ember_err *err) {
  uint64_t need = a->shape[0] * a->shape[1];
  int64_t got = npy_read(a, out, need, err);
  if (got < 0) return err ? err->code : EMBER_EFORMAT;
  if ((uint64_t)got < need)
    return npy_fail(a, err, EMBER_EFORMAT, "truncated: data ends %llu bytes short",
                    (unsigned long long)(need - (uint64_t)got));
  unsigned char extra;
  if ((got = npy_read(a, &extra, 1, err)) < 0) return err ? err->code : EMBER_EFORMAT;
  if (got > 0) return npy_fail(a, err, EMBER_EFORMAT, "trailing bytes after the data");
  return 0;
}

/* Reads one array; want_cols > 0 must match its width. On success *out is (rows, cols). With
 * img (x only), a uint8 array of images is accepted too: then *img gets it, dims its (H, W, C),
 * *out stays NULL and *cols is 0. */
static int npz_array(zip_t *za, zip_int64_t idx, const char *file, const char *arr,
                     int want_cols, const char *dim_name, float **out, int *rows, int *cols,
                     uint8_t **img, int dims[3], ember_err *err) {
  int rc = 0;
  float *data = NULL;
  npy_array a = {0};
  a.file = file;
  a.arr = arr;
  a.image_ok = img != NULL;
  if ((rc = npy_open(za, idx, &a, err)) < 0) goto fail;
  if (a.u8) {
    if (want_cols > 0) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s: %s is uint8 images of %llux%llux%llu; expected %d float columns (%s)",
                      file, arr, (unsigned long long)a.img_h, (unsigned long long)a.img_w,
                      (unsigned long long)a.shape[3], want_cols, dim_name);
      goto fail;
    }
    uint8_t *bytes = malloc(a.shape[0] * a.shape[1]);
    if (!bytes) {
      rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory for %llu images", file,
                      (unsigned long long)a.shape[0]);
      goto fail;
    }
    if ((rc = npy_load_u8(&a, bytes, err)) < 0) {
      free(bytes);
      goto fail;
    }
    *img = bytes;
    dims[0] = (int)a.img_h, dims[1] = (int)a.img_w, dims[2] = (int)a.shape[3];
    *rows = (int)a.shape[0];
    *cols = 0;
    goto fail;
  }
  if (want_cols > 0 && a.shape[1] != (uint64_t)want_cols) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: %s has %llu column%s, expected %d (%s)", file, arr,
                    (unsigned long long)a.shape[1], a.shape[1] == 1 ? "" : "s", want_cols,
                    dim_name);
    goto fail;
  }
  if (!(data = malloc(a.shape[0] * a.shape[1] * sizeof(float)))) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory for %s (%llu x %llu)", file, arr,
                    (unsigned long long)a.shape[0], (unsigned long long)a.shape[1]);
    goto fail;
  }
  if ((rc = npy_load(&a, data, err)) < 0) goto fail;
  *out = data;
  *rows = (int)a.shape[0];
  *cols = (int)a.shape[1];
  data = NULL;
fail:
  if (a.zf) zip_fclose(a.zf);
  free(data);
  return rc;
}

/* np.load reads the last of two members with one name, and a member "x" before "x.npy" as
 * array x; zip_name_locate finds the first "x.npy". Any archive where numpy and ember could
 * read different arrays is refused, naming the members. */
static int npz_unique(zip_t *za, const char *name, const char *arr, ember_err *err) {
  zip_int64_t n = zip_get_num_entries(za, 0);
  int count = 0;
  char names[2][16] = {"", ""};
  for (zip_int64_t i = 0; i < n; i++) {
    const char *f = zip_get_name(za, (zip_uint64_t)i, ZIP_FL_ENC_RAW);
    size_t l = f ? strlen(f) : 0, a = strlen(arr);
    if (!f || !(l >= a && strncmp(f, arr, a) == 0 && (l == a || strcmp(f + a, ".npy") == 0)))
      continue;
    if (count < 2) snprintf(names[count], sizeof names[count], "%s", f);
    count++;
  }
  if (count > 1)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: the archive has %d members that numpy reads as array '%s' (%s, %s%s); "
                      "np.load and this reader could pick different ones",
                      name, count, arr, names[0], names[1], count > 2 ? ", ..." : "");
  return 0;
}

/* The optional name array `arr` ("x_names") of an archive: *out NULL when it is absent, else
 * `cols` names, each checked (ember_name_check). '<U' holds UTF-32 code points, written out as
 * UTF-8; '|S' bytes; either ends at its first NUL. */
static int npz_names(zip_t *za, const char *file, const char *arr, int cols, char ***out,
                     ember_err *err) {
  char member[16];
  unsigned char *data = NULL;
  char *text = NULL;
  const char **names = NULL;
  npy_array a = {0};
  ember_err e;
  *out = NULL;
  snprintf(member, sizeof member, "%s.npy", arr);
  int rc = npz_unique(za, file, arr, err);
  zip_int64_t idx = rc == 0 ? zip_name_locate(za, member, 0) : -1;
  if (idx < 0) return rc;
  a.file = file;
  a.arr = arr;
  a.strings = 1;
  if ((rc = npy_open(za, idx, &a, err)) < 0) goto fail;
  if (a.ndim != 1 || a.shape[0] != (uint64_t)cols) {
    rc = npy_fail(&a, err, EMBER_EFORMAT, "has shape (%llu%s%s), expected (%d,): one name per column of %c",
                  (unsigned long long)a.shape[0], a.ndim == 1 ? "," : ", ",
                  a.ndim == 1 ? "" : "...", cols, arr[0]);
    goto fail;
  }
  const uint64_t w = a.str_kind == 'U' ? a.esize / 4 : a.esize, bytes = (uint64_t)cols * a.esize;
  data = malloc(bytes + 1);
  text = malloc((size_t)cols * (size_t)(4 * w + 1));
  names = malloc((size_t)cols * sizeof *names);
  if (!data || !text || !names) {
    rc = npy_fail(&a, err, EMBER_ENOMEM, "out of memory");
    goto fail;
  }
  int64_t got = npy_read(&a, data, bytes + 1, err); /* one more: trailing bytes */
  if (got < 0) {
    rc = err ? err->code : EMBER_EFORMAT;
    goto fail;
  }
  if ((uint64_t)got != bytes) {
    rc = npy_fail(&a, err, EMBER_EFORMAT, (uint64_t)got < bytes ? "truncated" : "trailing bytes after the data");
    goto fail;
  }
  char *t = text;
  for (int i = 0; i < cols; i++) {
    const unsigned char *el = data + (size_t)i * a.esize;
    char *start = t;
    for (uint64_t k = 0; k < w; k++) {
      uint32_t c = a.str_kind == 'U' ? le32(el + 4 * k) : el[k];
      if (c == 0) break;
      if (a.str_kind == 'S' || c < 0x80) {
        *t++ = (char)c;
      } else if (c < 0x800) {
        *t++ = (char)(0xC0 | c >> 6), *t++ = (char)(0x80 | (c & 0x3F));
      } else if (c < 0x10000 && !(c >= 0xD800 && c <= 0xDFFF)) {
        *t++ = (char)(0xE0 | c >> 12), *t++ = (char)(0x80 | ((c >> 6) & 0x3F)), *t++ = (char)(0x80 | (c & 0x3F));
      } else if (c >= 0x10000 && c <= 0x10FFFF) {
        *t++ = (char)(0xF0 | c >> 18), *t++ = (char)(0x80 | ((c >> 12) & 0x3F));
        *t++ = (char)(0x80 | ((c >> 6) & 0x3F)), *t++ = (char)(0x80 | (c & 0x3F));
      } else {
        rc = ember_fail(err, EMBER_EFORMAT, "%s: %s[%d] holds U+%X, which is not a character", file, arr, i,
                        (unsigned)c);
        goto fail;
      }
    }
    *t++ = 0;
    if (ember_name_check(start, strlen(start), &e) < 0) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: %s[%d]: %s", file, arr, i, e.msg);
      goto fail;
    }
    names[i] = start;
  }
  if (!(*out = ember_names_new(names, cols, arr[0])))
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory for %s", file, arr);
fail:
  if (a.zf) zip_fclose(a.zf);
  free(data);
  free(text);
  free(names);
  return rc;
}

static int npz_read(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                    ember_dataset *ds, ember_err *err) {
  int rc = 0, xr = 0, xc = 0, yr = 0, yc = 0;
  float *x = NULL, *y = NULL;
  char **xn = NULL, **yn = NULL;
  uint8_t *img = NULL;
  int dims[3] = {0, 0, 0};
  zip_t *za = NULL;
  zip_error_t ze;
  zip_error_init(&ze);
  zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
  if (!src) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: %s", name, zip_error_strerror(&ze));
    goto fail;
  }
  if (!(za = zip_open_from_source(src, ZIP_RDONLY, &ze))) {
    zip_source_free(src);
    rc = ember_fail(err, EMBER_EFORMAT, "%s: not a readable .npz (zip) archive: %s", name,
                    zip_error_strerror(&ze));
    goto fail;
  }
  if ((rc = npz_unique(za, name, "x", err)) < 0 ||
      (y_dim != 0 && (rc = npz_unique(za, name, "y", err)) < 0))
    goto fail;
  zip_int64_t xi = zip_name_locate(za, "x.npy", 0);
  zip_int64_t yi = y_dim != 0 ? zip_name_locate(za, "y.npy", 0) : -1;
  if (xi < 0) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: no array 'x' (x.npy) in the archive", name);
    goto fail;
  }
  if (y_dim != 0 && yi < 0) {
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s: no array 'y' (y.npy) in the archive; training needs x and y", name);
    goto fail;
  }
  if ((rc = npz_array(za, xi, name, "x", x_dim, "x_dim", &x, &xr, &xc, &img, dims, err)) < 0) goto fail;
  if (img) { /* images: the extra observations, if any, are x */
    if ((rc = npz_unique(za, name, "x_extra", err)) < 0) goto fail;
    zip_int64_t ei = zip_name_locate(za, "x_extra.npy", 0);
    int er = 0;
    if (ei >= 0) {
      if ((rc = npz_array(za, ei, name, "x_extra", -1, "", &x, &er, &xc, NULL, NULL, err)) < 0) goto fail;
      if (er != xr) {
        rc = ember_fail(err, EMBER_EFORMAT, "%s: x has %d images but x_extra has %d rows", name, xr, er);
        goto fail;
      }
    }
  }
  if (y_dim != 0) {
    if ((rc = npz_array(za, yi, name, "y", y_dim, "y_dim", &y, &yr, &yc, NULL, NULL, err)) < 0) goto fail;
    if (yr != xr) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: x has %d rows but y has %d", name, xr, yr);
      goto fail;
    }
    ember_err e;
    if ((xc > 0 && (rc = npz_names(za, name, "x_names", xc, &xn, err)) < 0) ||
        (rc = npz_names(za, name, "y_names", yc, &yn, err)) < 0)
      goto fail;
    if ((rc = ember_names_check((const char *const *)xn, xc, (const char *const *)yn, yc, &e)) < 0) {
      rc = ember_fail(err, e.code == EMBER_ENOMEM ? EMBER_ENOMEM : EMBER_EFORMAT, "%s: %s", name, e.msg);
      goto fail;
    }
  }
  ds->n = xr;
  ds->x_dim = xc;
  ds->y_dim = yc;
  ds->x = x;
  ds->y = y;
  ds->x_names = xn;
  ds->y_names = yn;
  ds->img = img;
  ds->img_h = dims[0], ds->img_w = dims[1], ds->img_c = dims[2];
  img = NULL;
  x = y = NULL;
  xn = yn = NULL;
fail:
  if (za) zip_discard(za);
  zip_error_fini(&ze);
  free(x);
  free(y);
  free(img);
  free(xn);
  free(yn);
  return rc;
}

/* ---- entry points --------------------------------------------------------------------- */

int ember_dataset_load_mem(const void *buf, size_t len, const char *name,
                           const ember_dataset_spec *spec, ember_dataset *ds, ember_err *err) {
  int rc = 0;
  const unsigned char *b = buf;
  if (!name) name = "<memory>";
  if (!ds || !spec) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: no dataset to fill", name);
    goto fail;
  }
  memset(ds, 0, sizeof *ds);
  const int x_dim = spec->x_dim, y_dim = spec->y_dim, named = spec->y_cols && *spec->y_cols;
  if (!buf && len > 0) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: NULL buffer of %zu bytes", name, len);
    goto fail;
  }
  if (x_dim == 0 || x_dim < -1 || x_dim > EMBER_MAX_COLS) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: x_dim must be -1 (infer) or 1..%d, got %d", name,
                    EMBER_MAX_COLS, x_dim);
    goto fail;
  }
  if (y_dim < -1 || y_dim > EMBER_MAX_COLS) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: y_dim must be -1, 0 or 1..%d, got %d", name,
                    EMBER_MAX_COLS, y_dim);
    goto fail;
  }
  if (named && y_dim == 0) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: y columns are named, but this read is of inputs only", name);
    goto fail;
  }
  if ((uint64_t)len > DS_MAX_BYTES) {
    rc = ember_fail(err, EMBER_ENOTSUP, "%s: %zu bytes; files over 4 GiB are not supported",
                    name, len);
    goto fail;
  }
  if (len >= 4 && b[0] == 'P' && b[1] == 'K' &&
      ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6))) {
    if (named)
      rc = ember_fail(err, EMBER_EINVAL,
                      "%s: --y-cols names the columns of a CSV header; this is an .npz archive, "
                      "whose y is its array 'y'", name);
    else
      rc = npz_read(buf, len, name, x_dim, y_dim, ds, err);
  } else {
    rc = csv_read(buf, len, name, spec, ds, err);
  }
  if (rc < 0) ember_dataset_free(ds);
fail:
  return rc;
}

int ember_dataset_read_mem(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                           ember_dataset *ds, ember_err *err) {
  ember_dataset_spec spec = {x_dim, y_dim, NULL};
  return ember_dataset_load_mem(buf, len, name, &spec, ds, err);
}

/* Reads all of f (a file or a pipe) into *out, refusing more than DS_MAX_BYTES. */
static int slurp(FILE *f, const char *name, char **out, size_t *len, ember_err *err) {
  int rc = 0;
  char *buf = NULL, ebuf[128];
  size_t cap = 1 << 16, n = 0;
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode)) {
    if ((uint64_t)st.st_size > DS_MAX_BYTES) goto too_big;
    if ((size_t)st.st_size >= cap) cap = (size_t)st.st_size + 1; /* +1: EOF is seen at once */
  }
  for (;;) {
    if (!buf || n == cap) {
      if ((uint64_t)n > DS_MAX_BYTES) goto too_big;
      if (buf) cap = (uint64_t)cap * 2 > DS_MAX_BYTES + 1 ? (size_t)(DS_MAX_BYTES + 1) : cap * 2;
      char *t = realloc(buf, cap);
      if (!t) {
        rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory reading %zu bytes", name, cap);
        goto fail;
      }
      buf = t;
    }
    size_t want = cap - n, k = fread(buf + n, 1, want, f);
    n += k;
    if (k < want) break; /* fread is short only at end of file or on error */
  }
  if (ferror(f)) {
    if (strerror_r(errno, ebuf, sizeof ebuf) != 0) snprintf(ebuf, sizeof ebuf, "error %d", errno);
    rc = ember_fail(err, EMBER_EIO, "%s: read error: %s", name, ebuf);
    goto fail;
  }
  if ((uint64_t)n > DS_MAX_BYTES) goto too_big;
  *out = buf;
  *len = n;
  buf = NULL;
  goto fail;
too_big:
  rc = ember_fail(err, EMBER_ENOTSUP, "%s: larger than 4 GiB; files that big are not supported",
                  name);
fail:
  free(buf);
  return rc;
}

int ember_dataset_load(const char *path, const ember_dataset_spec *spec, ember_dataset *ds,
                       ember_err *err) {
  int rc = 0, is_stdin = path && strcmp(path, "-") == 0;
  const char *name = is_stdin ? "<stdin>" : path;
  char *buf = NULL, ebuf[128];
  size_t len = 0;
  FILE *f = NULL;
  if (ds) memset(ds, 0, sizeof *ds);
  if (!path || !ds) {
    rc = ember_fail(err, EMBER_EINVAL, "ember_dataset_read: %s is NULL", path ? "ds" : "path");
    goto fail;
  }
  f = is_stdin ? stdin : fopen(path, "rb");
  if (!f) {
    if (strerror_r(errno, ebuf, sizeof ebuf) != 0) snprintf(ebuf, sizeof ebuf, "error %d", errno);
    rc = ember_fail(err, EMBER_EIO, "%s: cannot open: %s", name, ebuf);
    goto fail;
  }
  if ((rc = slurp(f, name, &buf, &len, err)) < 0) goto fail;
  rc = ember_dataset_load_mem(buf, len, name, spec, ds, err);
fail:
  if (f && !is_stdin) fclose(f);
  free(buf);
  return rc;
}

int ember_dataset_read(const char *path, int x_dim, int y_dim, ember_dataset *ds,
                       ember_err *err) {
  ember_dataset_spec spec = {x_dim, y_dim, NULL};
  return ember_dataset_load(path, &spec, ds, err);
}
