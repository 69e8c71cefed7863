/* test_dataset.c - CSV and .npz datasets: values that must round trip and inputs that must be
 * refused with a message naming the file and the line, column, array or index at fault.
 *
 * The .npz archives are built here: .npy byte buffers written by hand (float32 and float64,
 * C and Fortran order, 1-D and 2-D, format versions 1.0 and 2.0) and zipped with libzip,
 * stored or deflated, so the tests need no Python. Every failing read is also checked to
 * leave the dataset zeroed.
 */
#include "testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zip.h>

#include "ember/dataset.h"

#define assert_msg(err, s)                                                                     \
  do {                                                                                         \
    if (!strstr((err).msg, (s))) fail_msg("message \"%s\" lacks \"%s\"", (err).msg, (s));      \
  } while (0)

static void assert_zeroed(const ember_dataset *ds) {
  assert_int_equal(ds->n, 0);
  assert_int_equal(ds->x_dim, 0);
  assert_int_equal(ds->y_dim, 0);
  assert_null(ds->x);
  assert_null(ds->y);
}

/* Reads CSV text from memory as "data.csv". */
static int csv(const char *text, int x_dim, int y_dim, ember_dataset *ds, ember_err *err) {
  memset(ds, 0x5a, sizeof *ds); /* the reader must clear whatever was there */
  memset(err, 0, sizeof *err);
  return ember_dataset_read_mem(text, strlen(text), "data.csv", x_dim, y_dim, ds, err);
}

/* A read that must fail with code and a message containing each of the NULL-ended needles. */
static void csv_refused(const char *text, int x_dim, int y_dim, int code, ...) {
  ember_dataset ds;
  ember_err err;
  int rc = csv(text, x_dim, y_dim, &ds, &err);
  if (rc != code) fail_msg("rc %d (want %d) for %s: %s", rc, code, text, err.msg);
  assert_int_equal(err.code, code);
  assert_zeroed(&ds);
  assert_int_equal(strncmp(err.msg, "data.csv", 8), 0);
  va_list ap;
  va_start(ap, code);
  for (const char *s; (s = va_arg(ap, const char *));) assert_msg(err, s);
  va_end(ap);
  ember_dataset_free(&ds);
}

/* ---- CSV ------------------------------------------------------------------------------ */

static void test_csv_header(void **state) {
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv("x0,x1,y:y\n1,2,3\n4.5,-5e-1,+6.25\n", -1, -1, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 2);
  assert_int_equal(ds.y_dim, 1);
  const float x[] = {1, 2, 4.5f, -0.5f}, y[] = {3, 6.25f};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);
  assert_zeroed(&ds);

  /* pandas with its index: an empty first header name; and a UTF-8 byte order mark */
  assert_int_equal(csv("\xEF\xBB\xBF,a,b\n0,1,2\n1,3,4\n", -1, 1, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 2);
  assert_true(ds.x[2] == 1 && ds.x[3] == 3 && ds.y[1] == 4);
  ember_dataset_free(&ds);
}

static void test_csv_no_header(void **state) {
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv("0.25,1e3,.5\n-7,8.,0\n9,10,11", -1, 1, &ds, &err), 0);
  assert_int_equal(ds.n, 3);
  assert_int_equal(ds.x_dim, 2);
  const float x[] = {0.25f, 1000, -7, 8, 9, 10}, y[] = {0.5f, 0, 11};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);

  /* values that round to float32 correctly and subnormal underflow kept */
  assert_int_equal(csv("0.1,1e-45\n", -1, 1, &ds, &err), 0);
  assert_true(ds.x[0] == 0.1f);
  assert_true(ds.y[0] == 1e-45f && ds.y[0] > 0);
  ember_dataset_free(&ds);
}

static void test_csv_crlf_spaces_trailing_blank(void **state) {
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv("a , b ,c\r\n 1 ,\t2, 3 \r\n4,5,6\r\n\r\n  \n\n", -1, 1, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 2);
  const float x[] = {1, 2, 4, 5}, y[] = {3, 6};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);
}

static void test_csv_x_dim(void **state) {
  ember_dataset ds;
  ember_err err;
  const char *text = "1,2,3,4,5\n6,7,8,9,10\n";
  assert_int_equal(csv(text, -1, 1, &ds, &err), 0);
  assert_int_equal(ds.x_dim, 4);
  ember_dataset_free(&ds);
  assert_int_equal(csv(text, 4, 1, &ds, &err), 0);
  assert_int_equal(ds.x_dim, 4);
  assert_true(ds.x[4] == 6 && ds.y[1] == 10);
  ember_dataset_free(&ds);
  assert_int_equal(csv(text, 3, 2, &ds, &err), 0);
  assert_int_equal(ds.x_dim, 3);
  ember_dataset_free(&ds);

  csv_refused("h1,h2,h3,h4,h5,h6,h7,h8,h9\n1,2,3,4,5,6,7,8,9\n1,2,3,4,5,6,7\n", 8, 1,
              EMBER_EFORMAT, "data.csv:3: expected 9 columns (8 x + 1 y), found 7", NULL);
  csv_refused(text, 3, 1, EMBER_EFORMAT, "data.csv:1: expected 4 columns (3 x + 1 y), found 5",
              NULL);
  csv_refused(text, 4, 0, EMBER_EFORMAT, "data.csv:1: expected 4 columns (x), found 5", NULL);
}

static void test_csv_y_dim_2(void **state) {
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv("x,ya,yb\n1,2,3\n4,5,6\n", -1, 2, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 1);
  assert_int_equal(ds.y_dim, 2);
  const float x[] = {1, 4}, y[] = {2, 3, 5, 6};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);
}

static void test_csv_inputs_only(void **state) {
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv("1,2,3\n4,5,6\n", -1, 0, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 3);
  assert_int_equal(ds.y_dim, 0);
  assert_null(ds.y);
  const float x[] = {1, 2, 3, 4, 5, 6};
  assert_memory_equal(ds.x, x, sizeof x);
  ember_dataset_free(&ds);
  /* a single column is fine as inputs */
  assert_int_equal(csv("v\n7\n", -1, 0, &ds, &err), 0);
  assert_int_equal(ds.n, 1);
  assert_int_equal(ds.x_dim, 1);
  assert_true(ds.x[0] == 7);
  ember_dataset_free(&ds);
}

static void test_csv_ragged(void **state) {
  csv_refused("a,b,c\n1,2,3\n4,5,6\n7,8\n9,10,11\n", -1, 1, EMBER_EFORMAT,
              "data.csv:4: expected 3 columns", "found 2", NULL);
  csv_refused("1,2\n3,4,5\n", -1, 1, EMBER_EFORMAT, "data.csv:2: expected 2 columns",
              "found 3", NULL);
  /* the header counts too */
  csv_refused("a,b\n1,2,3\n", -1, 1, EMBER_EFORMAT, "data.csv:2:", "found 3", NULL);
  /* a trailing comma is an extra, empty column */
  csv_refused("1,2\n3,4,\n", -1, 1, EMBER_EFORMAT, "data.csv:2:", NULL);
}

static void test_csv_bad_values(void **state) {
  csv_refused("a,b\n1,2\n3,nan\n", -1, 1, EMBER_ERANGE, "data.csv:3: column 2 is NaN", NULL);
  csv_refused("1,2\n3,4\n-Inf,6\n", -1, 1, EMBER_ERANGE, "data.csv:3: column 1 is infinite",
              NULL);
  csv_refused("1,2\nNaN,4\n", -1, 1, EMBER_ERANGE, "data.csv:2: column 1 is NaN", NULL);
  csv_refused("1,2\n3,infinity\n", -1, 1, EMBER_ERANGE, "data.csv:2: column 2", NULL);
  csv_refused("1,2\n3,1e39\n", -1, 1, EMBER_ERANGE, "data.csv:2: column 2", "1e39",
              "out of float32 range", NULL);
  csv_refused("1,2\n1.2abc,4\n", -1, 1, EMBER_EFORMAT,
              "data.csv:2: column 1: \"1.2abc\" is not a number", NULL);
  csv_refused("1,2,3\n4,,6\n", -1, 1, EMBER_EFORMAT, "data.csv:2: column 2 is empty", NULL);
  csv_refused("1,2\n0x10,4\n", -1, 1, EMBER_EFORMAT, "data.csv:2: column 1", NULL);
  csv_refused("1,2\n3,1e\n", -1, 1, EMBER_EFORMAT, "data.csv:2: column 2", NULL);
  csv_refused("1,2\n3,\"4\"\n", -1, 1, EMBER_EFORMAT, "data.csv:2: column 2", NULL);
  /* only the first line may be a header */
  csv_refused("a,b\n1,2\nc,d\n", -1, 1, EMBER_EFORMAT, "data.csv:3: column 1", NULL);
  /* a first line mixing names and numbers is neither a header nor data */
  csv_refused("1,NA,3\n4,5,6\n", -1, 1, EMBER_EFORMAT, "data.csv:1: column 2: \"NA\"",
              "header", NULL);
  /* a first line with a NaN is data, not a header: refused, not dropped */
  csv_refused("nan,1\n2,3\n", -1, 1, EMBER_ERANGE, "data.csv:1: column 1 is NaN", NULL);
}

static void test_csv_blank_line_inside(void **state) {
  csv_refused("1,2\n3,4\n\n5,6\n", -1, 1, EMBER_EFORMAT, "data.csv:3: blank line", NULL);
  csv_refused("a,b\n1,2\n \r\n5,6\n", -1, 1, EMBER_EFORMAT, "data.csv:3: blank line", NULL);
  csv_refused("\n1,2\n", -1, 1, EMBER_EFORMAT, "data.csv:1: blank line", NULL);
}

static void test_csv_no_rows(void **state) {
  csv_refused("", -1, 1, EMBER_EFORMAT, "data.csv: no data rows", "empty", NULL);
  csv_refused("\n\r\n  \n", -1, 1, EMBER_EFORMAT, "data.csv: no data rows", NULL);
  csv_refused("x0,x1,y\n", -1, 1, EMBER_EFORMAT, "data.csv: no data rows", "header", NULL);
  csv_refused("x0,x1,y\n\n\n", -1, 1, EMBER_EFORMAT, "no data rows", "header", NULL);
}

static void test_csv_too_few_columns(void **state) {
  csv_refused("1\n2\n", -1, 1, EMBER_EFORMAT, "data.csv:1: found 1 column", "at least 2",
              NULL);
  csv_refused("y\n2\n", -1, 1, EMBER_EFORMAT, "data.csv:1: found 1 column", NULL);
  csv_refused("y:y\n2\n", -1, -1, EMBER_EINVAL, "data.csv:1: all 1 columns are y", NULL);
  csv_refused("1,2\n3,4\n", -1, 2, EMBER_EFORMAT, "data.csv:1: found 2 columns", "at least 3",
              NULL);
}

static void test_csv_file_and_args(void **state) {
  ember_dataset ds;
  ember_err err;
  const char *path = tu_path(0, "pairs.csv");
  const char *text = "x,y:y\n1.5,2.5\n3.5,4.5\n";
  tu_write_file(path, text, strlen(text));
  assert_int_equal(ember_dataset_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_true(ds.x[1] == 3.5f && ds.y[1] == 4.5f);
  ember_dataset_free(&ds);
  ember_dataset_free(&ds); /* safe twice */

  const char *bad = "x,y:y\n1.5,2.5\n3.5\n";
  tu_write_file(path, bad, strlen(bad));
  assert_int_equal(ember_dataset_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_int_equal(strncmp(err.msg, path, strlen(path)), 0);
  assert_msg(err, ":3:");
  assert_zeroed(&ds);

  const char *missing = tu_path(1, "no-such-file.csv");
  memset(&ds, 0x5a, sizeof ds);
  assert_int_equal(ember_dataset_read(missing, -1, -1, &ds, &err), EMBER_EIO);
  assert_msg(err, missing);
  assert_zeroed(&ds);

  assert_int_equal(csv("1,2\n", 0, 1, &ds, &err), EMBER_EINVAL);
  assert_zeroed(&ds);
  assert_int_equal(csv("1,2\n", -1, -2, &ds, &err), EMBER_EINVAL);
  assert_int_equal(csv("1,2\n", -1, 70000, &ds, &err), EMBER_EINVAL);
  assert_int_equal(ember_dataset_read(NULL, -1, 1, &ds, &err), EMBER_EINVAL);
  assert_int_equal(ember_dataset_read_mem("1,2\n", 4, "m", -1, 1, NULL, &err), EMBER_EINVAL);

  /* a NULL err is allowed */
  assert_int_equal(ember_dataset_read_mem("1\n", 2, "m", -1, 1, &ds, NULL), EMBER_EFORMAT);
  assert_zeroed(&ds);

  ember_dataset zero = {0};
  ember_dataset_free(&zero);
  ember_dataset_free(NULL);
}

static void test_csv_too_many_columns(void **state) {
  size_t cols = 65537, len = cols * 2;
  char *text = malloc(len + 1);
  assert_non_null(text);
  for (size_t i = 0; i < cols; i++) text[2 * i] = '1', text[2 * i + 1] = ',';
  text[len - 1] = '\n';
  text[len] = 0;
  csv_refused(text, -1, 1, EMBER_ENOTSUP, "data.csv:1: more than 65536 columns", NULL);
  text[len - 3] = '\n'; /* 65536 columns: fine */
  text[len - 2] = 0;
  ember_dataset ds;
  ember_err err;
  assert_int_equal(csv(text, -1, 1, &ds, &err), 0);
  assert_int_equal(ds.x_dim, 65535);
  ember_dataset_free(&ds);
  free(text);
}

/* ---- which columns are y, and the columns' names ---------------------------------------- */

/* Reads text with y_cols; returns the code. */
static int csv_cols(const char *text, int y_dim, const char *y_cols, ember_dataset *ds, ember_err *err) {
  ember_dataset_spec spec = {-1, y_dim, y_cols};
  memset(ds, 0x5a, sizeof *ds);
  memset(err, 0, sizeof *err);
  return ember_dataset_load_mem(text, strlen(text), "data.csv", &spec, ds, err);
}

static void assert_names(char **names, int n, const char *want) {
  char got[256] = "";
  assert_non_null(names);
  for (int i = 0; i < n; i++) snprintf(got + strlen(got), sizeof got - strlen(got), "%s%s", i ? "," : "", names[i]);
  assert_string_equal(got, want);
}

static void test_csv_y_columns(void **state) {
  ember_dataset ds;
  ember_err err;
  const char *plain = "px,py,ax,ay\n1,2,3,4\n5,6,7,8\n";
  /* nothing says which columns are y: refused, with the header and the three ways to say it
   * (this file used to train as 3 inputs and 1 output) */
  csv_refused(plain, -1, -1, EMBER_EINVAL, "data.csv:1: which columns are y?", "\"px,py,ax,ay\"",
              "px,py,ax,y:ay", "--y-cols ay", "--y-dim", NULL);
  /* a headerless file needs y_dim, and --y-cols needs a header */
  csv_refused("1,2,3\n4,5,6\n", -1, -1, EMBER_EINVAL, "no header line", "3 columns", "--y-dim K", NULL);
  ember_dataset_spec spec = {-1, -1, "c"};
  assert_int_equal(ember_dataset_load_mem("1,2,3\n", 6, "data.csv", &spec, &ds, &err), EMBER_EINVAL);
  assert_msg(err, "--y-cols names columns of a header, but the file has no header line");
  assert_zeroed(&ds);

  /* y: marks, in file order; names with the marks taken off */
  assert_int_equal(csv("px,y:ax,py,y: ay\n1,2,3,4\n5,6,7,8\n", -1, -1, &ds, &err), 0);
  assert_int_equal(ds.x_dim, 2);
  assert_int_equal(ds.y_dim, 2);
  const float x[] = {1, 3, 5, 7}, y[] = {2, 4, 6, 8};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  assert_names(ds.x_names, 2, "px,py");
  assert_names(ds.y_names, 2, "ax,ay");
  ember_dataset_free(&ds);
  /* y_dim agreeing with the marks is fine; disagreeing is refused */
  assert_int_equal(csv("px,py,y:ax,y:ay\n1,2,3,4\n", -1, 2, &ds, &err), 0);
  ember_dataset_free(&ds);
  csv_refused("px,py,y:ax,y:ay\n1,2,3,4\n", -1, 1, EMBER_EINVAL, "the header marks 2 y columns, but --y-dim is 1",
              NULL);

  /* --y-cols: y in the order named, wherever the columns are */
  assert_int_equal(csv_cols(plain, -1, " ay , px", &ds, &err), 0);
  assert_int_equal(ds.x_dim, 2);
  const float x2[] = {2, 3, 6, 7}, y2[] = {4, 1, 8, 5};
  assert_memory_equal(ds.x, x2, sizeof x2);
  assert_memory_equal(ds.y, y2, sizeof y2);
  assert_names(ds.x_names, 2, "py,ax");
  assert_names(ds.y_names, 2, "ay,px");
  ember_dataset_free(&ds);
  assert_int_equal(csv_cols("px,py,y:ax,y:ay\n1,2,3,4\n", 2, "ay,ax", &ds, &err), 0); /* all three agree */
  assert_names(ds.y_names, 2, "ay,ax");
  ember_dataset_free(&ds);
  assert_int_equal(csv_cols(plain, -1, "ax,bx", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "--y-cols names \"bx\", which the header \"px,py,ax,ay\" does not have");
  assert_zeroed(&ds);
  assert_int_equal(csv_cols(plain, -1, "ax,ax", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "names \"ax\" twice");
  assert_int_equal(csv_cols(plain, -1, "ax,", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "empty name");
  assert_int_equal(csv_cols(plain, 1, "ax,ay", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "the header (with --y-cols) has 2 y columns, but --y-dim is 1");
  assert_int_equal(csv_cols("px,py,y:ax,y:ay\n1,2,3,4\n", -1, "ax", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "marks \"y:ay\" as y, but --y-cols does not name it");
  assert_int_equal(csv_cols("px,py,y:ax,ay\n1,2,3,4\n", -1, "ax,ay", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "the header marks 1 y column, but --y-cols names 2");
  assert_int_equal(csv_cols(plain, -1, "px,py,ax,ay", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "all 4 columns are y");
  assert_int_equal(csv_cols(plain, 0, "ax", &ds, &err), EMBER_EINVAL);
  assert_msg(err, "inputs only");

  /* the last y_dim columns, named by the header; an empty header field takes its default name;
   * a headerless file has no names */
  assert_int_equal(csv(",b,c\n1,2,3\n", -1, 1, &ds, &err), 0);
  assert_names(ds.x_names, 2, "x0,b");
  assert_names(ds.y_names, 1, "c");
  ember_dataset_free(&ds);
  assert_int_equal(csv("1,2,3\n", -1, 2, &ds, &err), 0);
  assert_null(ds.x_names);
  assert_null(ds.y_names);
  ember_dataset_free(&ds);
  /* inputs: a header's marks and names are not looked at */
  assert_int_equal(csv("a,a,y:b\n1,2,3\n", 3, 0, &ds, &err), 0);
  assert_null(ds.x_names);
  ember_dataset_free(&ds);

  /* names must be names: distinct, no control characters, not "y:" twice */
  csv_refused("a,a,y:b\n1,2,3\n", -1, -1, EMBER_EFORMAT, "data.csv:1: the header: two columns are named \"a\"", NULL);
  csv_refused("a,b,y:a\n1,2,3\n", -1, -1, EMBER_EFORMAT, "two columns are named \"a\"", NULL);
  csv_refused("a\tb,c,y:d\n1,2,3\n", -1, -1, EMBER_EFORMAT, "column 1 of the header", "control character", NULL);
  csv_refused("a,b,y:y:c\n1,2,3\n", -1, -1, EMBER_EFORMAT, "column 3 of the header", "starts with \"y:\"", NULL);
  csv_refused("a,b,c\xff\n1,2,3\n", -1, 1, EMBER_EFORMAT, "column 3 of the header", "not valid UTF-8", NULL);
}

static void test_name_check(void **state) {
  ember_err err;
  const char *good[] = {"a", "x0", "y", "Kraft [N]", "F\xc3\xa4rbung", "\xf0\x9f\x98\x80", "a \"b\"",
                        "1a", "e5x", "nano", "y-", "a123456789012345678901234567890123456789012345678901234567890123"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    if (ember_name_check(good[i], strlen(good[i]), &err) < 0) fail_msg("%s refused: %s", good[i], err.msg);
  const struct {
    const char *name, *why;
  } bad[] = {
      {"", "empty"},
      {"a,b", "comma"},
      {" a", "spaces around"},
      {"a ", "spaces around"},
      {"a\nb", "control"},
      {"1.5", "is a number"},
      {"-Inf", "is a number"},
      {"NaN", "is a number"},
      {"y:a", "starts with \"y:\""},
      {"\xc3", "UTF-8"},
      {"\xc0\xaf", "UTF-8"},         /* overlong '/' */
      {"\xed\xa0\x80", "UTF-8"},     /* a surrogate */
      {"\xf4\x90\x80\x80", "UTF-8"}, /* past U+10FFFF */
      {"a1234567890123456789012345678901234567890123456789012345678901234", "at most 64"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    if (ember_name_check(bad[i].name, strlen(bad[i].name), &err) != EMBER_EINVAL)
      fail_msg("\"%s\" accepted", bad[i].name);
    assert_msg(err, bad[i].why);
  }
  const char *x[] = {"a", "b"}, *y[] = {"c", "b"};
  assert_int_equal(ember_names_check(x, 2, NULL, 0, &err), 0);
  assert_int_equal(ember_names_check(x, 2, y, 2, &err), EMBER_EINVAL);
  assert_msg(err, "two columns are named \"b\"");
  assert_int_equal(ember_names_check(x, 2, y, 1, &err), 0);
  const char *badx[] = {"a", "1"};
  assert_int_equal(ember_names_check(badx, 2, NULL, 0, &err), EMBER_EINVAL);
  assert_msg(err, "x_names[1]: \"1\" is a number");
  char **d = ember_names_new(NULL, 12, 'y');
  assert_string_equal(d[0], "y0");
  assert_string_equal(d[11], "y11");
  free(d);
  char **c = ember_names_new(x, 2, 'x');
  assert_true(c[0] != x[0]);
  assert_string_equal(c[1], "b");
  free(c);
  assert_null(ember_names_new(NULL, 0, 'x'));
}

/* ---- .npz ----------------------------------------------------------------------------- */

/* A .npy file: magic, version, header dict padded to 64 bytes, then data (host order, which
 * is little-endian on every machine these tests run on). shape NULL with ndim 0 is (). */
static unsigned char *npy_make(const char *descr, int fortran, int ndim, const long *shape,
                               const void *data, size_t data_len, int version, size_t *len) {
  char dict[256], dims[128] = "(";
  for (int i = 0; i < ndim; i++)
    snprintf(dims + strlen(dims), sizeof dims - strlen(dims), "%s%ld", i ? ", " : "", shape[i]);
  strcat(dims, ndim == 1 ? ",)" : ")");
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
           fortran ? "True" : "False", dims);
  size_t pre = version == 1 ? 10 : 12, hlen = strlen(dict) + 1;
  hlen += (64 - (pre + hlen) % 64) % 64;
  unsigned char *b = malloc(pre + hlen + data_len);
  assert_non_null(b);
  memcpy(b, "\x93NUMPY", 6);
  b[6] = (unsigned char)version;
  b[7] = 0;
  b[8] = (unsigned char)(hlen & 0xff);
  b[9] = (unsigned char)(hlen >> 8);
  if (version != 1) b[10] = b[11] = 0;
  memset(b + pre, ' ', hlen);
  memcpy(b + pre, dict, strlen(dict));
  b[pre + hlen - 1] = '\n';
  if (data_len) memcpy(b + pre + hlen, data, data_len);
  *len = pre + hlen + data_len;
  return b;
}

typedef struct member {
  const char *name;
  unsigned char *data; /* owned; freed by npz_write */
  size_t len;
  int deflate;
} member;

static member mem_f32(const char *name, int ndim, long r, long c, const float *v, int fortran) {
  long shape[2] = {r, c};
  member m = {name, NULL, 0, 0};
  m.data = npy_make("<f4", fortran, ndim, shape, v, (size_t)(r * c) * sizeof(float), 1, &m.len);
  return m;
}

static member mem_f64(const char *name, int ndim, long r, long c, const double *v, int fortran) {
  long shape[2] = {r, c};
  member m = {name, NULL, 0, 0};
  m.data = npy_make("<f8", fortran, ndim, shape, v, (size_t)(r * c) * sizeof(double), 1, &m.len);
  return m;
}

static void npz_write(const char *path, member *m, int count) {
  int zerr = 0;
  remove(path);
  zip_t *za = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!za) fail_msg("zip_open %s: %d", path, zerr);
  for (int i = 0; i < count; i++) {
    zip_source_t *src = zip_source_buffer(za, m[i].data, m[i].len, 0);
    assert_non_null(src);
    zip_int64_t idx = zip_file_add(za, m[i].name, src, ZIP_FL_OVERWRITE);
    if (idx < 0) fail_msg("zip_file_add: %s", zip_strerror(za));
    assert_int_equal(
        zip_set_file_compression(za, (zip_uint64_t)idx, m[i].deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0),
        0);
  }
  if (zip_close(za) != 0) fail_msg("zip_close: %s", zip_strerror(za));
  for (int i = 0; i < count; i++) free(m[i].data);
}

/* Reads path; on failure checks ds was zeroed and the message starts with the path. */
static int npz_read(const char *path, int x_dim, int y_dim, ember_dataset *ds, ember_err *err) {
  memset(ds, 0x5a, sizeof *ds);
  memset(err, 0, sizeof *err);
  int rc = ember_dataset_read(path, x_dim, y_dim, ds, err);
  if (rc < 0) {
    assert_zeroed(ds);
    assert_int_equal(strncmp(err->msg, path, strlen(path)), 0);
  }
  return rc;
}

static void test_npz_f32_roundtrip(void **state) {
  const float x[] = {1.5f, -2, 3.25f, 1e-3f, 5e7f, -0.0f}, y[] = {7, 8, 9};
  member m[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0)};
  const char *path = tu_path(0, "f32.npz");
  npz_write(path, m, 2);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.n, 3);
  assert_int_equal(ds.x_dim, 2);
  assert_int_equal(ds.y_dim, 1);
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);
  /* explicit dims that match */
  assert_int_equal(npz_read(path, 2, 1, &ds, &err), 0);
  ember_dataset_free(&ds);
}

static void test_npz_f64_fortran_1d_deflate(void **state) {
  /* x is (3, 2) [[1, 2], [3, 4], [5, 6]] stored column-major; y is 1-D float64, deflated. */
  const double xf[] = {1, 3, 5, 2, 4, 6}, y[] = {0.1, -1e-30, 1e30};
  member m[] = {mem_f64("x.npy", 2, 3, 2, xf, 1), mem_f64("y.npy", 1, 3, 1, y, 0)};
  m[1].deflate = 1;
  const char *path = tu_path(0, "f64.npz");
  npz_write(path, m, 2);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.n, 3);
  assert_int_equal(ds.x_dim, 2);
  assert_int_equal(ds.y_dim, 1);
  const float x[] = {1, 2, 3, 4, 5, 6}, yf[] = {(float)0.1, (float)-1e-30, (float)1e30};
  assert_memory_equal(ds.x, x, sizeof x);
  assert_memory_equal(ds.y, yf, sizeof yf);
  ember_dataset_free(&ds);
}

static void test_npz_deflate_large_and_v2(void **state) {
  /* A member bigger than one read chunk, deflated, in format version 2.0, Fortran order. */
  enum { R = 5000, C = 7 };
  float *xf = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * 2);
  assert_non_null(xf);
  assert_non_null(y);
  for (int c = 0; c < C; c++)
    for (int r = 0; r < R; r++) xf[c * R + r] = (float)(r * 10 + c);
  for (int i = 0; i < R * 2; i++) y[i] = (float)i * 0.5f;
  long xs[2] = {R, C}, ys[2] = {R, 2};
  member m[2] = {{"x.npy", NULL, 0, 1}, {"y.npy", NULL, 0, 1}};
  m[0].data = npy_make("<f4", 1, 2, xs, xf, sizeof(float) * R * C, 2, &m[0].len);
  m[1].data = npy_make("<f4", 0, 2, ys, y, sizeof(float) * R * 2, 3, &m[1].len);
  const char *path = tu_path(0, "big.npz");
  npz_write(path, m, 2);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(npz_read(path, C, 2, &ds, &err), 0);
  assert_int_equal(ds.n, R);
  assert_int_equal(ds.y_dim, 2);
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++) assert_true(ds.x[r * C + c] == (float)(r * 10 + c));
  assert_memory_equal(ds.y, y, sizeof(float) * R * 2);
  ember_dataset_free(&ds);
  free(xf);
  free(y);
}

static void test_npz_inputs_only_and_missing(void **state) {
  const float x[] = {1, 2, 3, 4};
  member m[] = {mem_f32("x.npy", 2, 2, 2, x, 0)};
  const char *path = tu_path(0, "xonly.npz");
  npz_write(path, m, 1);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(npz_read(path, -1, 0, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.x_dim, 2);
  assert_int_equal(ds.y_dim, 0);
  assert_null(ds.y);
  assert_memory_equal(ds.x, x, sizeof x);
  ember_dataset_free(&ds);

  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "'y'");
  assert_msg(err, "y.npy");
  assert_int_equal(npz_read(path, -1, 1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "'y'");

  /* y present but y_dim 0: ignored, even if y is unusable */
  const float y[] = {1};
  member m2[] = {mem_f32("x.npy", 2, 2, 2, x, 0), mem_f32("y.npy", 2, 1, 1, y, 0)};
  npz_write(path, m2, 2);
  assert_int_equal(npz_read(path, -1, 0, &ds, &err), 0);
  assert_null(ds.y);
  ember_dataset_free(&ds);

  member m3[] = {mem_f32("y.npy", 2, 2, 1, x, 0)};
  npz_write(path, m3, 1);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "'x'");
}

/* Rewrites every occurrence of `from` in the file at path with `to` (the same length): how an
 * archive with two members of one name is made, which libzip itself will not write. */
static void patch_bytes(const char *path, const char *from, const char *to) {
  size_t len, n = strlen(from);
  unsigned char *b = tu_read_file(path, &len);
  int hits = 0;
  for (size_t i = 0; i + n <= len; i++)
    if (memcmp(b + i, from, n) == 0) {
      memcpy(b + i, to, n);
      hits++;
    }
  assert_true(hits >= 2); /* the local header and the central directory */
  tu_write_file(path, b, len);
  free(b);
}

/* Two members that numpy reads as one array: np.load takes the last of two "x.npy" (and "x"
 * over "x.npy"), so reading the first would train on data the user never sees in numpy. */
static void test_npz_duplicate_members(void **state) {
  (void)state;
  const float x1[] = {1, 2, 3, 4}, x2[] = {5, 6, 7, 8}, y[] = {1, 2};
  const char *path = tu_path(0, "dup.npz");
  ember_dataset ds;
  ember_err err;
  member m[] = {mem_f32("x.npy", 2, 2, 2, x1, 0), mem_f32("y.npy", 2, 2, 1, y, 0),
                mem_f32("Q.npy", 2, 2, 2, x2, 0)};
  npz_write(path, m, 3);
  patch_bytes(path, "Q.npy", "x.npy");
  assert_int_equal(npz_read(path, -1, 1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "2 members that numpy reads as array 'x'");
  assert_int_equal(npz_read(path, -1, 0, &ds, &err), EMBER_EFORMAT); /* inputs too */

  member m2[] = {mem_f32("x.npy", 2, 2, 2, x1, 0), mem_f32("y.npy", 2, 2, 1, y, 0),
                 mem_f32("y", 2, 2, 1, y, 0)};
  npz_write(path, m2, 3);
  assert_int_equal(npz_read(path, -1, 1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "2 members that numpy reads as array 'y' (y.npy, y)");
  /* an input file does not read y: a second one does not matter there */
  member m3[] = {mem_f32("x.npy", 2, 2, 2, x1, 0), mem_f32("y.npy", 2, 2, 1, y, 0),
                 mem_f32("y", 2, 2, 1, y, 0)};
  npz_write(path, m3, 3);
  assert_int_equal(npz_read(path, -1, 0, &ds, &err), 0);
  ember_dataset_free(&ds);
}

static void test_npz_dims(void **state) {
  const float x[] = {1, 2, 3, 4, 5, 6}, y[] = {1, 2, 3, 4, 5, 6, 7, 8};
  const char *path = tu_path(0, "dims.npz");
  ember_dataset ds;
  ember_err err;

  member m[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 2, y, 0)};
  npz_write(path, m, 2);
  assert_int_equal(npz_read(path, -1, 2, &ds, &err), 0);
  assert_int_equal(ds.y_dim, 2);
  ember_dataset_free(&ds);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.y_dim, 2);
  ember_dataset_free(&ds);
  assert_int_equal(npz_read(path, -1, 1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "y has 2 columns, expected 1");
  assert_int_equal(npz_read(path, 3, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x has 2 columns, expected 3");

  member m2[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 1, 4, 1, y, 0)};
  npz_write(path, m2, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x has 3 rows but y has 4");

  long s3[3] = {1, 2, 3};
  member m3[2] = {{"x.npy", NULL, 0, 0}, mem_f32("y.npy", 1, 1, 1, y, 0)};
  m3[0].data = npy_make("<f4", 0, 3, s3, x, sizeof x, 1, &m3[0].len);
  npz_write(path, m3, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
  assert_msg(err, "x.npy: has 3 dimensions");

  member m4[2] = {mem_f32("x.npy", 2, 1, 1, x, 0), {"y.npy", NULL, 0, 0}};
  m4[1].data = npy_make("<f4", 0, 0, NULL, y, sizeof(float), 1, &m4[1].len);
  npz_write(path, m4, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "y.npy: is a scalar");

  member m5[] = {mem_f32("x.npy", 2, 0, 2, x, 0), mem_f32("y.npy", 1, 0, 1, y, 0)};
  npz_write(path, m5, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x.npy");
  assert_msg(err, "no data");
}

static void test_npz_nonfinite(void **state) {
  const char *path = tu_path(0, "nan.npz");
  ember_dataset ds;
  ember_err err;
  double y[20], x[20];
  for (int i = 0; i < 20; i++) y[i] = i, x[i] = -i;
  y[12] = NAN;
  member m[] = {mem_f64("x.npy", 2, 20, 1, x, 0), mem_f64("y.npy", 2, 20, 1, y, 0)};
  npz_write(path, m, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ERANGE);
  assert_msg(err, "y[12,0] is NaN");

  /* Fortran order: the index is the array's, not the file offset's. x is (4, 5), column-major;
   * flat file element 9 is row 1, column 2. */
  float xf[20];
  for (int i = 0; i < 20; i++) xf[i] = (float)i;
  xf[9] = INFINITY;
  const float y4[] = {1, 2, 3, 4};
  member m2[] = {mem_f32("x.npy", 2, 4, 5, xf, 1), mem_f32("y.npy", 1, 4, 1, y4, 0)};
  npz_write(path, m2, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ERANGE);
  assert_msg(err, "x[1,2] is infinite");

  /* finite in float64, infinite in float32; 1-D arrays are indexed as 1-D */
  double yb[] = {1, 2, 1e300};
  const float x3[] = {1, 2, 3};
  member m3[] = {mem_f32("x.npy", 1, 3, 1, x3, 0), mem_f64("y.npy", 1, 3, 1, yb, 0)};
  npz_write(path, m3, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ERANGE);
  assert_msg(err, "y[2]");
  assert_msg(err, "out of float32 range");
}

static void test_npz_dtype(void **state) {
  const char *path = tu_path(0, "dtype.npz");
  ember_dataset ds;
  ember_err err;
  const int xi[] = {1, 2};
  const float y[] = {1, 2};
  long s[1] = {2};
  const char *bad[] = {"<i4", ">f4", ">f8", "<f2", "|u1"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    member m[2] = {{"x.npy", NULL, 0, 0}, mem_f32("y.npy", 1, 2, 1, y, 0)};
    m[0].data = npy_make(bad[i], 0, 1, s, xi, sizeof xi, 1, &m[0].len);
    npz_write(path, m, 2);
    assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
    assert_msg(err, "x.npy");
    /* uint8 x is images: a 1-D one is told the shapes images have (test_npz_images) */
    assert_msg(err, strcmp(bad[i], "|u1") == 0 ? "uint8 x is images" : bad[i]);
  }
}

static void test_npz_truncated(void **state) {
  const char *path = tu_path(0, "trunc.npz");
  ember_dataset ds;
  ember_err err;
  const float x[] = {1, 2, 3, 4, 5, 6}, y[] = {1, 2, 3};
  member m[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0)};
  m[0].len -= 4; /* the last float is missing */
  npz_write(path, m, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x.npy");
  assert_msg(err, "truncated");

  member m2[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0)};
  m2[1].len = 30; /* inside the header */
  m2[1].deflate = 1;
  npz_write(path, m2, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "y.npy");

  member m3[] = {mem_f32("x.npy", 2, 3, 2, x, 0), {"y.npy", NULL, 0, 0}};
  m3[1].data = malloc(16);
  memcpy(m3[1].data, "not numpy at all", 16);
  m3[1].len = 16;
  npz_write(path, m3, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "y.npy: not a .npy");
}

static void test_npz_corrupt_zip(void **state) {
  ember_dataset ds;
  ember_err err;
  static const char garbage[] = "PK\x03\x04 this is not really a zip archive at all";
  memset(&ds, 0x5a, sizeof ds);
  assert_true(ember_dataset_read_mem(garbage, sizeof garbage - 1, "bad.npz", -1, -1, &ds, &err) <
              0);
  assert_zeroed(&ds);
  assert_int_equal(strncmp(err.msg, "bad.npz: ", 9), 0);

  /* an empty archive is a zip without x */
  static const unsigned char empty[22] = {'P', 'K', 5, 6};
  assert_int_equal(ember_dataset_read_mem(empty, sizeof empty, "e.npz", -1, -1, &ds, &err),
                   EMBER_EFORMAT);
  assert_msg(err, "e.npz: no array 'x'");

  /* A valid archive cut short, and one with a flipped bit in stored data: the value stays
   * finite, so only the CRC check catches it. */
  const float x[] = {1, 2, 12345.678f, 4}, y[] = {1, 2};
  member m[] = {mem_f32("x.npy", 2, 2, 2, x, 0), mem_f32("y.npy", 2, 2, 1, y, 0)};
  const char *path = tu_path(0, "crc.npz");
  npz_write(path, m, 2);
  size_t len;
  unsigned char *buf = tu_read_file(path, &len);
  assert_int_equal(ember_dataset_read_mem(buf, len, "ok.npz", -1, -1, &ds, &err), 0);
  assert_memory_equal(ds.x, x, sizeof x);
  ember_dataset_free(&ds);

  assert_true(ember_dataset_read_mem(buf, len / 2, "half.npz", -1, -1, &ds, &err) < 0);
  assert_zeroed(&ds);
  assert_int_equal(strncmp(err.msg, "half.npz: ", 10), 0);

  unsigned char *hit = NULL;
  for (size_t i = 0; i + 4 <= len && !hit; i++)
    if (memcmp(buf + i, &x[2], 4) == 0) hit = buf + i;
  assert_non_null(hit);
  hit[0] ^= 1;
  assert_true(ember_dataset_read_mem(buf, len, "crc.npz", -1, -1, &ds, &err) < 0);
  assert_zeroed(&ds);
  assert_msg(err, "crc.npz: x.npy");
  free(buf);
}

/* A 1-D string array: '<U' (UTF-32LE code points, NUL-padded to `width`) or '|S' (bytes). */
static member mem_names(const char *name, const char *descr, int width, const char *const *v, int n) {
  long shape[1] = {n};
  int u = descr[1] == 'U';
  size_t esize = u ? 4 * (size_t)width : (size_t)width;
  unsigned char *data = calloc((size_t)n, esize);
  assert_non_null(data);
  for (int i = 0; i < n; i++) {
    const unsigned char *p = (const unsigned char *)v[i];
    for (int k = 0; *p && k < width; k++) {
      uint32_t c = *p++;
      if (u && c >= 0xC0) { /* decode one UTF-8 sequence (the tests' names are well formed) */
        int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
        c &= 0x3F >> more;
        while (more--) c = c << 6 | (*p++ & 0x3F);
      }
      if (u) for (int b = 0; b < 4; b++) data[(size_t)i * esize + 4 * (size_t)k + (size_t)b] = (unsigned char)(c >> (8 * b));
      else data[(size_t)i * esize + (size_t)k] = (unsigned char)c;
    }
  }
  char d[16];
  snprintf(d, sizeof d, "%s%d", descr, width);
  member m = {name, NULL, 0, 0};
  m.data = npy_make(d, 0, 1, shape, data, (size_t)n * esize, 1, &m.len);
  free(data);
  return m;
}

static void test_npz_names(void **state) {
  const float x[] = {1, 2, 3, 4, 5, 6}, y[] = {7, 8, 9};
  const char *xn[] = {"px", "F\xc3\xa4rbung"}, *yn[] = {"ax"}, *dup[] = {"px"}, *three[] = {"a", "b", "c"};
  const char *path = tu_path(0, "names.npz");
  ember_dataset ds;
  ember_err err;
  member m[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                mem_names("x_names.npy", "<U", 8, xn, 2), mem_names("y_names.npy", "|S", 2, yn, 1)};
  npz_write(path, m, 4);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_names(ds.x_names, 2, "px,F\xc3\xa4rbung");
  assert_names(ds.y_names, 1, "ax");
  ember_dataset_free(&ds);
  /* only the y names: x keeps none; inputs-only reads look at neither */
  member m1[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                 mem_names("y_names.npy", "<U", 2, yn, 1)};
  npz_write(path, m1, 3);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_null(ds.x_names);
  assert_names(ds.y_names, 1, "ax");
  ember_dataset_free(&ds);
  assert_int_equal(npz_read(path, -1, 0, &ds, &err), 0);
  assert_null(ds.y_names);
  ember_dataset_free(&ds);
  /* one name per column, distinct, valid, strings */
  member m2[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                 mem_names("x_names.npy", "<U", 1, three, 3)};
  npz_write(path, m2, 3);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x_names.npy: has shape (3,), expected (2,): one name per column of x");
  member m3[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                 mem_names("x_names.npy", "<U", 2, xn, 2), mem_names("y_names.npy", "<U", 2, dup, 1)};
  npz_write(path, m3, 4);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "two columns are named \"px\"");
  const char *bad[] = {"1.5", "b"};
  member m4[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                 mem_names("x_names.npy", "|S", 3, bad, 2)};
  npz_write(path, m4, 3);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_msg(err, "x_names[0]: \"1.5\" is a number");
  member m5[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0),
                 mem_f32("y_names.npy", 1, 1, 1, y, 0)};
  npz_write(path, m5, 3);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
  assert_msg(err, "y_names.npy: dtype '<f4' is not supported (need strings");
  /* --y-cols is for a CSV header */
  member m6[] = {mem_f32("x.npy", 2, 3, 2, x, 0), mem_f32("y.npy", 2, 3, 1, y, 0)};
  npz_write(path, m6, 2);
  ember_dataset_spec spec = {-1, -1, "ax"};
  assert_int_equal(ember_dataset_load(path, &spec, &ds, &err), EMBER_EINVAL);
  assert_msg(err, "this is an .npz archive");
  assert_zeroed(&ds);
}

static void test_npz_read_mem(void **state) {
  const double x[] = {1, 2, 3, 4}, y[] = {5, 6};
  member m[] = {mem_f64("x.npy", 2, 2, 2, x, 1), mem_f64("y.npy", 1, 2, 1, y, 0)};
  m[0].deflate = 1;
  const char *path = tu_path(0, "mem.npz");
  npz_write(path, m, 2);
  size_t len;
  void *buf = tu_read_file(path, &len);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(ember_dataset_read_mem(buf, len, "mem.npz", 2, 1, &ds, &err), 0);
  const float xe[] = {1, 3, 2, 4}, ye[] = {5, 6}; /* x was Fortran order */
  assert_int_equal(ds.n, 2);
  assert_memory_equal(ds.x, xe, sizeof xe);
  assert_memory_equal(ds.y, ye, sizeof ye);
  ember_dataset_free(&ds);
  assert_int_equal(ember_dataset_read_mem(buf, len, "mem.npz", 2, 3, &ds, &err), EMBER_EFORMAT);
  assert_int_equal(strncmp(err.msg, "mem.npz: y has 1 column, expected 3", 35), 0);
  assert_zeroed(&ds);
  free(buf);
}

/* uint8 x is images: (n, H, W, C) or (n, H, W); x_extra is the extra observations */
static member mem_u8(const char *name, int ndim, const long *shape, const uint8_t *v, size_t n, int fortran) {
  member m = {name, NULL, 0, 0};
  m.data = npy_make("|u1", fortran, ndim, shape, v, n, 1, &m.len);
  return m;
}

static void test_npz_images(void **state) {
  (void)state;
  uint8_t img[2 * 3 * 2 * 3];
  for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7);
  const float extra[] = {1, 2, 3, 4}, y[] = {0.5f, -0.5f};
  const long s4[] = {2, 3, 2, 3}, s3[] = {2, 3, 6}, s2[] = {2, 18};
  const char *path = tu_path(0, "img.npz");
  member m[] = {mem_u8("x.npy", 4, s4, img, sizeof img, 0), mem_f32("x_extra.npy", 2, 2, 2, extra, 0),
                mem_f32("y.npy", 1, 2, 1, y, 0)};
  npz_write(path, m, 3);
  ember_dataset ds;
  ember_err err;
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.n, 2);
  assert_int_equal(ds.img_h, 3);
  assert_int_equal(ds.img_w, 2);
  assert_int_equal(ds.img_c, 3);
  assert_memory_equal(ds.img, img, sizeof img);
  assert_int_equal(ds.x_dim, 2);
  assert_memory_equal(ds.x, extra, sizeof extra);
  assert_memory_equal(ds.y, y, sizeof y);
  ember_dataset_free(&ds);
  /* a vector reader (x_dim given) is told what the file holds */
  assert_int_equal(npz_read(path, 4, -1, &ds, &err), EMBER_EFORMAT);
  assert_non_null(strstr(err.msg, "uint8 images of 3x2x3; expected 4 float columns"));

  member g[] = {mem_u8("x.npy", 3, s3, img, sizeof img, 0), mem_f32("y.npy", 1, 2, 1, y, 0)};
  npz_write(path, g, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), 0);
  assert_int_equal(ds.img_c, 1);
  assert_int_equal(ds.img_w, 6);
  assert_int_equal(ds.x_dim, 0);
  assert_null(ds.x);
  ember_dataset_free(&ds);

  member flat[] = {mem_u8("x.npy", 2, s2, img, sizeof img, 0), mem_f32("y.npy", 1, 2, 1, y, 0)};
  npz_write(path, flat, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
  assert_non_null(strstr(err.msg, "uint8 x is images"));
  member fo[] = {mem_u8("x.npy", 4, s4, img, sizeof img, 1), mem_f32("y.npy", 1, 2, 1, y, 0)};
  npz_write(path, fo, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
  assert_non_null(strstr(err.msg, "C order"));
  member rows[] = {mem_u8("x.npy", 4, s4, img, sizeof img, 0), mem_f32("x_extra.npy", 2, 1, 2, extra, 0),
                   mem_f32("y.npy", 1, 2, 1, y, 0)};
  npz_write(path, rows, 3);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_EFORMAT);
  assert_non_null(strstr(err.msg, "x has 2 images but x_extra has 1 rows"));
  /* uint8 is images only: y cannot be one */
  member yu8[] = {mem_f32("x.npy", 2, 2, 2, extra, 0), mem_u8("y.npy", 4, s4, img, sizeof img, 0)};
  npz_write(path, yu8, 2);
  assert_int_equal(npz_read(path, -1, -1, &ds, &err), EMBER_ENOTSUP);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_csv_header),
      cmocka_unit_test(test_csv_no_header),
      cmocka_unit_test(test_csv_crlf_spaces_trailing_blank),
      cmocka_unit_test(test_csv_x_dim),
      cmocka_unit_test(test_csv_y_dim_2),
      cmocka_unit_test(test_csv_inputs_only),
      cmocka_unit_test(test_csv_ragged),
      cmocka_unit_test(test_csv_bad_values),
      cmocka_unit_test(test_csv_blank_line_inside),
      cmocka_unit_test(test_csv_no_rows),
      cmocka_unit_test(test_csv_too_few_columns),
      cmocka_unit_test(test_csv_file_and_args),
      cmocka_unit_test(test_csv_too_many_columns),
      cmocka_unit_test(test_csv_y_columns),
      cmocka_unit_test(test_name_check),
      cmocka_unit_test(test_npz_f32_roundtrip),
      cmocka_unit_test(test_npz_f64_fortran_1d_deflate),
      cmocka_unit_test(test_npz_deflate_large_and_v2),
      cmocka_unit_test(test_npz_inputs_only_and_missing),
      cmocka_unit_test(test_npz_dims),
      cmocka_unit_test(test_npz_duplicate_members),
      cmocka_unit_test(test_npz_nonfinite),
      cmocka_unit_test(test_npz_dtype),
      cmocka_unit_test(test_npz_truncated),
      cmocka_unit_test(test_npz_corrupt_zip),
      cmocka_unit_test(test_npz_read_mem),
      cmocka_unit_test(test_npz_names),
      cmocka_unit_test(test_npz_images),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
