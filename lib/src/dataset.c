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
 * - .npy members are parsed by hand (the header is a small Python dict literal) and streamed
 *   out of libzip in chunks, converting float64 to float32 and transposing Fortran order on
 *   the way, so a member costs its float32 copy and nothing more. Reading each member to its
 *   end makes libzip check its CRC.
 *
 * What it does not do: quoted CSV fields, other separators, integer or big-endian .npy
 * arrays, or more than two dimensions. A dataset is held in memory whole.
 */
#include "ember/dataset.h"

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
  if (!perm || !held || !train->x || !train->y || !val->x || !val->y) {
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
  int y_dim;       /* resolved y columns (>= 0) */
  int cols;        /* columns per line, 0 until the first non-blank line */
  int xd;          /* x columns once cols is known */
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
  if (col < r->xd) r->x[row * (size_t)r->xd + (size_t)col] = v;
  else r->y[row * (size_t)r->y_dim + (size_t)(col - r->xd)] = v;
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
    int want = r->x_dim > 0 ? r->x_dim + r->y_dim : found;
    if (found != want) goto mismatch;
    if (found < r->y_dim + 1) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s:%lld: found %d column%s, need at least %d (1 or more x + %d y)",
                      r->name, line, found, found == 1 ? "" : "s", r->y_dim + 1, r->y_dim);
      goto done;
    }
    r->cols = found;
    r->xd = found - r->y_dim;
    header_votes votes = {0, 0};
    for_fields(p, end, vote_field, &votes);
    if (votes.words > 0 && votes.numbers == 0 && line == 1) goto done; /* a header */
    ctx.mixed_first = votes.words > 0 && votes.numbers > 0 && line == 1;
  } else if (found != r->cols) {
    goto mismatch;
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
  goto done;

mismatch:
  if (r->x_dim > 0 && r->y_dim > 0)
    rc = ember_fail(err, EMBER_EFORMAT, "%s:%lld: expected %d columns (%d x + %d y), found %d",
                    r->name, line, r->x_dim + r->y_dim, r->x_dim, r->y_dim, found);
  else if (r->x_dim > 0)
    rc = ember_fail(err, EMBER_EFORMAT, "%s:%lld: expected %d column%s (x), found %d",
                    r->name, line, r->x_dim, r->x_dim == 1 ? "" : "s", found);
  else
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s:%lld: expected %d columns (as in line 1), found %d", r->name,
                    line, r->cols, found);
done:
  return rc;
}

static int blank(const char *p, const char *end) {
  while (p < end && is_space(*p)) p++;
  return p == end;
}

static int csv_read(const char *buf, size_t len, const char *name, int x_dim, int y_dim,
                    ember_dataset *ds, ember_err *err) {
  int rc = 0;
  csv_reader r = {0};
  const char *p = buf, *end = buf + len;
  long long line = 0, blank_line = 0;
  int header = 0;
  locale_t c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
  locale_t prev = (locale_t)0;
  r.name = name;
  r.x_dim = x_dim;
  r.y_dim = y_dim < 0 ? 1 : y_dim;
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
  r.x = r.y = NULL;
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
  return rc;
}

/* ---- .npy inside .npz ----------------------------------------------------------------- */

typedef struct npy_array {
  const char *file;   /* archive name, for messages */
  const char *arr;    /* "x" or "y" */
  zip_file_t *zf;
  int f8;             /* '<f8' (else '<f4') */
  int fortran;
  int ndim;           /* 1 or 2 once validated */
  uint64_t shape[2];
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
      if (vlen == 3 && memcmp(val, "<f4", 3) == 0) a->f8 = 0;
      else if (vlen == 3 && memcmp(val, "<f8", 3) == 0) a->f8 = 1;
      else
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
        if (ndim < 2) a->shape[ndim] = v;
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
  if (rows > (uint64_t)DS_MAX_ROWS || cols > (uint64_t)EMBER_MAX_COLS) {
    rc = npy_fail(a, err, EMBER_ENOTSUP,
                  "has shape (%llu, %llu); at most %d rows and %d columns are supported",
                  (unsigned long long)rows, (unsigned long long)cols, DS_MAX_ROWS, EMBER_MAX_COLS);
    goto fail;
  }
  /* rows < 2^31 and cols <= 2^16, so rows * cols * 8 < 2^50: no overflow below. */
  uint64_t need = rows * cols * (a->f8 ? 8u : 4u);
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
                  (unsigned long long)cols, a->f8 ? "float64" : "float32",
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

/* Reads one array; want_cols > 0 must match its width. On success *out is (rows, cols). */
static int npz_array(zip_t *za, zip_int64_t idx, const char *file, const char *arr,
                     int want_cols, const char *dim_name, float **out, int *rows, int *cols,
                     ember_err *err) {
  int rc = 0;
  float *data = NULL;
  npy_array a = {0};
  a.file = file;
  a.arr = arr;
  if ((rc = npy_open(za, idx, &a, err)) < 0) goto fail;
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

static int npz_read(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                    ember_dataset *ds, ember_err *err) {
  int rc = 0, xr = 0, xc = 0, yr = 0, yc = 0;
  float *x = NULL, *y = NULL;
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
  if ((rc = npz_array(za, xi, name, "x", x_dim, "x_dim", &x, &xr, &xc, err)) < 0) goto fail;
  if (y_dim != 0) {
    if ((rc = npz_array(za, yi, name, "y", y_dim, "y_dim", &y, &yr, &yc, err)) < 0) goto fail;
    if (yr != xr) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: x has %d rows but y has %d", name, xr, yr);
      goto fail;
    }
  }
  ds->n = xr;
  ds->x_dim = xc;
  ds->y_dim = yc;
  ds->x = x;
  ds->y = y;
  x = y = NULL;
fail:
  if (za) zip_discard(za);
  zip_error_fini(&ze);
  free(x);
  free(y);
  return rc;
}

/* ---- entry points --------------------------------------------------------------------- */

int ember_dataset_read_mem(const void *buf, size_t len, const char *name, int x_dim, int y_dim,
                           ember_dataset *ds, ember_err *err) {
  int rc = 0;
  const unsigned char *b = buf;
  if (!name) name = "<memory>";
  if (!ds) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: no dataset to fill", name);
    goto fail;
  }
  memset(ds, 0, sizeof *ds);
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
  if ((uint64_t)len > DS_MAX_BYTES) {
    rc = ember_fail(err, EMBER_ENOTSUP, "%s: %zu bytes; files over 4 GiB are not supported",
                    name, len);
    goto fail;
  }
  if (len >= 4 && b[0] == 'P' && b[1] == 'K' &&
      ((b[2] == 3 && b[3] == 4) || (b[2] == 5 && b[3] == 6)))
    rc = npz_read(buf, len, name, x_dim, y_dim, ds, err);
  else
    rc = csv_read(buf, len, name, x_dim, y_dim, ds, err);
  if (rc < 0) ember_dataset_free(ds);
fail:
  return rc;
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

int ember_dataset_read(const char *path, int x_dim, int y_dim, ember_dataset *ds,
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
  rc = ember_dataset_read_mem(buf, len, name, x_dim, y_dim, ds, err);
fail:
  if (f && !is_stdin) fclose(f);
  free(buf);
  return rc;
}
