/* test_checkpoint.c - safetensors checkpoints: exact round trips, the file layout a Python
 * safetensors reader expects, atomic saves, and hostile files.
 *
 * Hostile files are made by saving a valid model and then editing it: the JSON header is
 * split off, changed (as text or through jansson) and joined back with a new length, or
 * bytes of the file are patched. Every hostile load must fail with the right code, a
 * message that starts with the file name and says what is wrong, and a zeroed model. A
 * brute-force pass truncates a file at every length and scribbles over every header byte,
 * which under ASan checks that no input makes the loader read or free what it should not.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/model.h"
#include "testutil.h"

/* ---- models ---------------------------------------------------------------------------- */

/* A small model whose every field has a distinct, non-default value, including a negative
 * zero and a subnormal that a sloppy float printer would lose. */
static void make_model(ember_model *m, ember_method method, ember_arch arch, int x_dim, int y_dim,
                       int width, int depth, uint64_t seed) {
  ember_err err;
  int rc = ember_model_init(m, method, x_dim, y_dim, arch, width, depth, &err);
  if (rc < 0) fail_msg("ember_model_init: %s", err.msg);
  ember_rng rng;
  ember_rng_seed(&rng, seed, 0);
  ember_net_init_params(&m->net, &rng);
  for (int i = 0; i < x_dim; i++) {
    m->x_mean[i] = 0.1f * (float)i - 0.7f + (float)seed * 1e-3f;
    m->x_std[i] = 0.3f + 0.17f * (float)i;
  }
  m->x_mean[0] = -0.0f;
  for (int i = 0; i < y_dim; i++) {
    m->y_mean[i] = 1.0f / 3.0f + (float)i;
    m->y_std[i] = 2.5f + (float)i / 7.0f;
    m->y_lo[i] = -1.25f - 0.01f * (float)i;
    m->y_hi[i] = 1.0f / 7.0f + (float)i;
  }
  m->y_mean[0] = 1e-40f; /* subnormal */
  m->infer.samples = 1234;
  m->infer.iters = 7;
  m->infer.sigma = 0.1f / 3.0f;
  m->infer.shrink = 0.7f;
  m->infer.temperature = 0.3f;
  m->train_steps = 123456789012LL;
  m->train_seed = UINT64_MAX - 5;
  m->train_batch = 512;
  m->train_negatives = 255;
  m->train_lr = 3.3e-4f;
  m->train_temperature = 0.07f;
  m->train_loss = 1.2345678f;
  /* a signature: names of every kind a header may hold (UTF-8, spaces and quotes inside) */
  char xs[8][16], ys[8][16];
  const char *xn[8], *yn[8];
  for (int i = 0; i < x_dim && i < 8; i++) {
    snprintf(xs[i], sizeof xs[i], "obs_%d", i);
    if (i < 2) snprintf(xs[i], sizeof xs[i], "%s", i == 0 ? "F\xc3\xa4rbung" : "a \"b\"");
    xn[i] = xs[i];
  }
  for (int i = 0; i < y_dim && i < 8; i++) {
    snprintf(ys[i], sizeof ys[i], "act.%d", i);
    yn[i] = ys[i];
  }
  if (x_dim <= 8 && y_dim <= 8 && ember_model_set_names(m, xn, yn, &err) < 0) fail_msg("names: %s", err.msg);
}

static void assert_models_identical(const ember_model *a, const ember_model *b) {
  assert_int_equal(a->method, b->method);
  assert_int_equal(a->x_dim, b->x_dim);
  assert_int_equal(a->y_dim, b->y_dim);
  assert_memory_equal(&a->net.shape, &b->net.shape, sizeof a->net.shape);
  assert_int_equal(a->net.nlayers, b->net.nlayers);
  assert_int_equal(a->net.nparams, b->net.nparams);
  for (int i = 0; i < a->net.nlayers; i++) {
    assert_int_equal(a->net.layers[i].in, b->net.layers[i].in);
    assert_int_equal(a->net.layers[i].out, b->net.layers[i].out);
    assert_int_equal(b->net.layers[i].w - b->net.params, a->net.layers[i].w - a->net.params);
  }
  assert_memory_equal(a->net.params, b->net.params, a->net.nparams * sizeof(float));
  size_t nstats = 2 * (size_t)a->x_dim + 4 * (size_t)a->y_dim;
  assert_memory_equal(a->stats, b->stats, nstats * sizeof(float));
  assert_ptr_equal(b->x_mean, b->stats);
  assert_ptr_equal(b->x_std, b->stats + b->x_dim);
  assert_ptr_equal(b->y_mean, b->stats + 2 * b->x_dim);
  assert_ptr_equal(b->y_hi, b->stats + 2 * b->x_dim + 3 * b->y_dim);
  assert_memory_equal(&a->infer, &b->infer, sizeof a->infer);
  assert_true(a->train_steps == b->train_steps);
  assert_true(a->train_seed == b->train_seed);
  assert_int_equal(a->train_batch, b->train_batch);
  assert_int_equal(a->train_negatives, b->train_negatives);
  assert_memory_equal(&a->train_lr, &b->train_lr, sizeof(float));
  assert_memory_equal(&a->train_temperature, &b->train_temperature, sizeof(float));
  assert_memory_equal(&a->train_loss, &b->train_loss, sizeof(float));
  for (int i = 0; i < a->x_dim; i++) assert_string_equal(a->x_names[i], b->x_names[i]);
  for (int i = 0; i < a->y_dim; i++) assert_string_equal(a->y_names[i], b->y_names[i]);
}

static int is_zeroed(const ember_model *m) {
  static const ember_model zero;
  return memcmp(m, &zero, sizeof zero) == 0;
}

/* The standard victim: a ResNet energy model, x_dim 3, y_dim 2, width 8, depth 2. Tensors:
 * proj [8, 5], blocks.0.0 [8, 8], blocks.0.1 [8, 8], out [1, 8]. */
static const char *save_victim(int slot) {
  ember_model m;
  ember_err err;
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 2, 11);
  const char *path = tu_path(slot, "victim.safetensors");
  int rc = ember_model_save(&m, path, &err);
  if (rc < 0) fail_msg("save: %s", err.msg);
  ember_model_free(&m);
  return path;
}

/* ---- file surgery ---------------------------------------------------------------------- */

typedef struct parts {
  char *header; /* NUL-terminated JSON text, padding included */
  unsigned char *data;
  size_t data_len;
} parts;

static uint64_t get_u64le(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

static void put_u64le(unsigned char *p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static parts split_file(const char *path) {
  size_t len;
  unsigned char *buf = tu_read_file(path, &len);
  assert_true(len >= 8);
  uint64_t hlen = get_u64le(buf);
  assert_true(hlen <= len - 8);
  parts p;
  p.header = malloc(hlen + 1);
  p.data_len = len - 8 - hlen;
  p.data = malloc(p.data_len + 1);
  assert_non_null(p.header);
  assert_non_null(p.data);
  memcpy(p.header, buf + 8, hlen);
  p.header[hlen] = 0;
  memcpy(p.data, buf + 8 + hlen, p.data_len);
  free(buf);
  return p;
}

static void free_parts(parts *p) {
  free(p->header);
  free(p->data);
}

/* Writes "<length><header><data>" with the header's own length (no padding added). */
static void join_file(const char *path, const char *header, const unsigned char *data,
                      size_t data_len) {
  size_t hlen = strlen(header);
  unsigned char *buf = malloc(8 + hlen + data_len + 1);
  assert_non_null(buf);
  put_u64le(buf, hlen);
  memcpy(buf + 8, header, hlen);
  if (data_len) memcpy(buf + 8 + hlen, data, data_len);
  tu_write_file(path, buf, 8 + hlen + data_len);
  free(buf);
}

/* A copy of s with the first `from` replaced by `to`; fails the test if there is none. */
static char *replace_once(const char *s, const char *from, const char *to) {
  const char *at = strstr(s, from);
  if (!at) fail_msg("\"%s\" not found in header", from);
  size_t a = (size_t)(at - s), fl = strlen(from), tl = strlen(to), sl = strlen(s);
  char *out = malloc(sl - fl + tl + 1);
  assert_non_null(out);
  memcpy(out, s, a);
  memcpy(out + a, to, tl);
  memcpy(out + a + tl, at + fl, sl - a - fl + 1);
  return out;
}

/* Rewrites src's header with one text replacement into dst, keeping the data region. */
static void rewrite_header(const char *src, const char *dst, const char *from, const char *to) {
  parts p = split_file(src);
  char *h = replace_once(p.header, from, to);
  join_file(dst, h, p.data, p.data_len);
  free(h);
  free_parts(&p);
}

/* The same through jansson, for edits that are easier on the parsed object. */
typedef void (*header_edit)(json_t *root);

static void edit_header(const char *src, const char *dst, header_edit edit) {
  parts p = split_file(src);
  json_error_t jerr;
  json_t *root = json_loads(p.header, 0, &jerr);
  if (!root) fail_msg("cannot parse saved header: %s", jerr.text);
  edit(root);
  char *h = json_dumps(root, JSON_COMPACT);
  assert_non_null(h);
  join_file(dst, h, p.data, p.data_len);
  free(h);
  json_decref(root);
  free_parts(&p);
}

static void set_meta(json_t *root, const char *key, const char *value) {
  json_t *meta = json_object_get(root, "__metadata__");
  assert_non_null(meta);
  if (value)
    assert_int_equal(json_object_set_new(meta, key, json_string(value)), 0);
  else
    assert_int_equal(json_object_del(meta, key), 0);
}

static void set_offsets(json_t *root, const char *tensor, long long begin, long long end) {
  json_t *t = json_object_get(root, tensor);
  assert_non_null(t);
  json_object_set_new(t, "data_offsets", json_pack("[II]", (json_int_t)begin, (json_int_t)end));
}

static void get_offsets(json_t *root, const char *tensor, long long *begin, long long *end) {
  json_t *o = json_object_get(json_object_get(root, tensor), "data_offsets");
  assert_non_null(o);
  *begin = json_integer_value(json_array_get(o, 0));
  *end = json_integer_value(json_array_get(o, 1));
}

/* Loads path expecting failure with `code` and `what` in the message. */
static void expect_fail(const char *path, int code, const char *what) {
  ember_model m;
  ember_err err = {0, ""};
  memset(&m, 0xab, sizeof m);
  int rc = ember_model_load(path, &m, &err);
  if (rc != code || !strstr(err.msg, what))
    fail_msg("expected %d (%s) with \"%s\", got %d: %s", code, ember_strerror(code), what, rc,
             err.msg);
  assert_int_equal(err.code, code);
  assert_true(strncmp(err.msg, path, strlen(path)) == 0);
  assert_true(is_zeroed(&m));
}

/* Scratch-directory entries whose name contains ".tmp." (leftover temporary files). */
static int count_temp_files(void) {
  const char *dir = tu_path(7, ".");
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) n++;
  closedir(d);
  return n;
}

/* ---- round trips and layout ------------------------------------------------------------ */

static void roundtrip(ember_method method, ember_arch arch, int x_dim, int y_dim, int width,
                      int depth) {
  ember_model a, b;
  ember_err err;
  make_model(&a, method, arch, x_dim, y_dim, width, depth, 5);
  const char *path = tu_path(0, "roundtrip.safetensors");
  int rc = ember_model_save(&a, path, &err);
  if (rc < 0) fail_msg("save: %s", err.msg);
  rc = ember_model_load(path, &b, &err);
  if (rc < 0) fail_msg("load: %s", err.msg);
  assert_models_identical(&a, &b);

  /* the same from memory, and the same bytes again when saved again */
  size_t len;
  unsigned char *buf = tu_read_file(path, &len);
  ember_model c;
  rc = ember_model_load_mem(buf, len, "mem", &c, &err);
  if (rc < 0) fail_msg("load_mem: %s", err.msg);
  assert_models_identical(&a, &c);
  const char *path2 = tu_path(1, "roundtrip2.safetensors");
  assert_int_equal(ember_model_save(&c, path2, &err), 0);
  size_t len2;
  unsigned char *buf2 = tu_read_file(path2, &len2);
  assert_int_equal(len, len2);
  assert_memory_equal(buf, buf2, len);
  free(buf);
  free(buf2);
  ember_model_free(&a);
  ember_model_free(&b);
  ember_model_free(&c);
}

static void test_roundtrip_resnet_dfo(void **state) {
  (void)state;
  roundtrip(EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 2);
  roundtrip(EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 7, 3, 16, 6);
}

static void test_roundtrip_resnet_mse(void **state) {
  (void)state;
  roundtrip(EMBER_METHOD_MSE, EMBER_ARCH_RESNET, 4, 3, 8, 4);
}

static void test_roundtrip_mlp_dfo(void **state) {
  (void)state;
  roundtrip(EMBER_METHOD_DFO, EMBER_ARCH_MLP, 5, 1, 12, 3);
  roundtrip(EMBER_METHOD_DFO, EMBER_ARCH_MLP, 1, 4, 3, 1);
}

static void test_roundtrip_mlp_mse(void **state) {
  (void)state;
  roundtrip(EMBER_METHOD_MSE, EMBER_ARCH_MLP, 6, 2, 10, 2);
}

/* What safetensors.safe_open would check: length prefix, an 8-aligned data region, and
 * tensors that tile it exactly; ours also come in layer order, weight before bias. */
static void test_layout(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 4, 3);
  const char *path = tu_path(0, "layout.safetensors");
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  size_t len;
  unsigned char *buf = tu_read_file(path, &len);
  uint64_t hlen = get_u64le(buf);
  assert_true(hlen <= len - 8);
  assert_int_equal((8 + hlen) % 8, 0);
  assert_int_equal(len - 8 - hlen, m.net.nparams * sizeof(float));
  assert_int_equal(buf[8], '{');
  size_t last = 8 + hlen - 1;
  while (buf[last] == ' ') last--;
  assert_int_equal(buf[last], '}');
  assert_true(8 + hlen - 1 - last < 8); /* at most 7 spaces of padding */

  json_error_t jerr;
  json_t *root = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
  assert_non_null(root);
  const char *want[] = {"proj.weight",       "proj.bias",         "blocks.0.0.weight",
                        "blocks.0.0.bias",   "blocks.0.1.weight", "blocks.0.1.bias",
                        "blocks.1.0.weight", "blocks.1.0.bias",   "blocks.1.1.weight",
                        "blocks.1.1.bias",   "out.weight",        "out.bias"};
  const char *key;
  json_t *v;
  size_t k = 0;
  long long at = 0;
  json_object_foreach(root, key, v) {
    if (k == 0) {
      assert_string_equal(key, "__metadata__");
      assert_string_equal(json_string_value(json_object_get(v, "format")), "ember");
      assert_string_equal(json_string_value(json_object_get(v, "format_version")), "1");
      assert_string_equal(json_string_value(json_object_get(v, "arch")), "resnet");
      assert_string_equal(json_string_value(json_object_get(v, "train.seed")),
                          "18446744073709551610");
      k++;
      continue;
    }
    assert_true(k - 1 < sizeof want / sizeof *want);
    assert_string_equal(key, want[k - 1]);
    assert_string_equal(json_string_value(json_object_get(v, "dtype")), "F32");
    long long b, e;
    get_offsets(root, key, &b, &e);
    assert_true(b == at);
    /* the bytes there are the model's floats */
    int layer = (int)(k - 1) / 2;
    const float *p = (k - 1) % 2 ? m.net.layers[layer].b : m.net.layers[layer].w;
    assert_memory_equal(buf + 8 + hlen + b, p, (size_t)(e - b));
    at = e;
    k++;
  }
  assert_int_equal(k, 1 + sizeof want / sizeof *want);
  assert_true((size_t)at == len - 8 - hlen);
  /* proj takes x then y: [width, x_dim + y_dim] */
  json_t *shape = json_object_get(json_object_get(root, "proj.weight"), "shape");
  assert_int_equal(json_integer_value(json_array_get(shape, 0)), 8);
  assert_int_equal(json_integer_value(json_array_get(shape, 1)), 5);
  json_decref(root);
  free(buf);
  ember_model_free(&m);
}

static void test_mlp_names(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  make_model(&m, EMBER_METHOD_MSE, EMBER_ARCH_MLP, 2, 3, 4, 3, 1);
  const char *path = tu_path(0, "mlp.safetensors");
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  parts p = split_file(path);
  assert_non_null(strstr(p.header, "\"hidden.0.weight\":{\"dtype\":\"F32\",\"shape\":[4,2]"));
  assert_non_null(strstr(p.header, "\"hidden.2.bias\":{\"dtype\":\"F32\",\"shape\":[4]"));
  assert_non_null(strstr(p.header, "\"out.weight\":{\"dtype\":\"F32\",\"shape\":[3,4]"));
  assert_non_null(strstr(p.header, "\"method\":\"mse\""));
  free_parts(&p);
  ember_model_free(&m);
}

/* ---- saving ---------------------------------------------------------------------------- */

static void test_save_replaces(void **state) {
  (void)state;
  ember_model a, b, c;
  ember_err err;
  make_model(&a, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 2, 1);
  make_model(&b, EMBER_METHOD_MSE, EMBER_ARCH_MLP, 4, 1, 6, 2, 2);
  const char *path = tu_path(0, "replace.safetensors");
  assert_int_equal(ember_model_save(&a, path, &err), 0);
  assert_int_equal(ember_model_save(&b, path, &err), 0);
  assert_int_equal(ember_model_load(path, &c, &err), 0);
  assert_models_identical(&b, &c);
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  mode_t mask = umask(0);
  umask(mask);
  assert_int_equal(st.st_mode & 0777, 0644 & ~mask);
  assert_int_equal(count_temp_files(), 0);
  ember_model_free(&a);
  ember_model_free(&b);
  ember_model_free(&c);
}

static void test_save_fails_cleanly(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_MLP, 2, 2, 4, 2, 1);

  const char *missing = tu_path(0, "no-such-dir/model.safetensors");
  assert_int_equal(ember_model_save(&m, missing, &err), EMBER_EIO);
  assert_int_equal(err.code, EMBER_EIO);
  assert_non_null(strstr(err.msg, missing));
  assert_non_null(strstr(err.msg, strerror(ENOENT)));

  /* the rename fails (a directory is in the way) after the temporary file was written */
  const char *dir = tu_path(1, "a-directory.safetensors");
  assert_int_equal(mkdir(dir, 0755), 0);
  assert_int_equal(ember_model_save(&m, dir, &err), EMBER_EIO);
  assert_non_null(strstr(err.msg, dir));
  assert_int_equal(count_temp_files(), 0);
  assert_int_equal(rmdir(dir), 0);

  assert_int_equal(ember_model_save(&m, NULL, &err), EMBER_EINVAL);
  ember_model_free(&m);
}

/* Out of space (here the file size limit, as `ulimit -f` sets it, with SIGXFSZ ignored as ember
 * and emberd do): EMBER_ENOSPC saying so, no temporary left, the model already there intact. */
static void test_save_out_of_space(void **state) {
  (void)state;
  ember_model small, big, back;
  ember_err err;
  make_model(&small, EMBER_METHOD_DFO, EMBER_ARCH_MLP, 2, 2, 4, 2, 1);  /* about 2 KiB */
  make_model(&big, EMBER_METHOD_DFO, EMBER_ARCH_MLP, 2, 2, 64, 2, 2);   /* about 20 KiB */
  const char *path = tu_path(0, "full.safetensors");
  assert_int_equal(ember_model_save(&small, path, &err), 0);

  struct rlimit was, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
  lim = was;
  lim.rlim_cur = 8192;
  void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  int rc = ember_model_save(&big, path, &err);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);
  signal(SIGXFSZ, old);

  assert_int_equal(rc, EMBER_ENOSPC);
  assert_int_equal(err.code, EMBER_ENOSPC);
  assert_true(strncmp(err.msg, path, strlen(path)) == 0);
  assert_non_null(strstr(err.msg, "out of space"));
  assert_non_null(strstr(err.msg, strerror(EFBIG)));
  assert_non_null(strstr(err.msg, "nothing was written"));
  assert_string_equal(ember_strerror(EMBER_ENOSPC), "out of space");
  assert_int_equal(count_temp_files(), 0);
  assert_int_equal(ember_model_load(path, &back, &err), 0);
  assert_models_identical(&small, &back);
  ember_model_free(&small);
  ember_model_free(&big);
  ember_model_free(&back);
}

static void test_save_refuses_bad_values(void **state) {
  (void)state;
  ember_model m;
  ember_err err;
  struct stat st;
  const char *path = tu_path(0, "refused.safetensors");
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 2, 1);

  m.net.layers[2].w[5] = NAN;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "tensor \"blocks.0.1.weight\""));
  assert_non_null(strstr(err.msg, "index 5"));
  assert_int_equal(stat(path, &st), -1);
  m.net.layers[2].w[5] = 0.5f;

  m.net.layers[3].b[0] = -INFINITY;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "tensor \"out.bias\""));
  m.net.layers[3].b[0] = 0.5f;

  m.y_mean[1] = INFINITY;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "y_mean[1]"));
  m.y_mean[1] = 0;

  m.x_std[2] = 0;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "x_std[2] must be > 0"));
  m.x_std[2] = 1;

  m.y_lo[0] = m.y_hi[0];
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "y_lo[0]"));
  m.y_lo[0] = -1;

  m.infer.shrink = 0;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "shrink"));
  m.infer.shrink = 0.5f;

  m.train_loss = NAN;
  assert_int_equal(ember_model_save(&m, path, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "train.loss"));
  m.train_loss = 0;

  assert_int_equal(stat(path, &st), -1);
  assert_int_equal(ember_model_save(&m, path, &err), 0);
  assert_int_equal(count_temp_files(), 0);
  ember_model_free(&m);
}

/* ---- hostile files: framing ------------------------------------------------------------ */

static void test_truncated(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "truncated.safetensors");
  size_t len;
  unsigned char *buf = tu_read_file(src, &len);
  uint64_t hlen = get_u64le(buf);

  tu_write_file(bad, buf, 0);
  expect_fail(bad, EMBER_EFORMAT, "too short");
  tu_write_file(bad, buf, 4);
  expect_fail(bad, EMBER_EFORMAT, "file is 4 bytes, too short");
  tu_write_file(bad, buf, 8 + hlen / 2);
  expect_fail(bad, EMBER_EFORMAT, "exceeds file size");
  tu_write_file(bad, buf, 8 + hlen + (len - 8 - hlen) / 2);
  expect_fail(bad, EMBER_EFORMAT, "data region is");
  tu_write_file(bad, buf, len - 1);
  expect_fail(bad, EMBER_EFORMAT, "data region is");
  tu_write_file(bad, buf, 8 + hlen);
  expect_fail(bad, EMBER_EFORMAT, "data region is 0 bytes");
  free(buf);

  expect_fail(tu_path(2, "does-not-exist.safetensors"), EMBER_EIO, strerror(ENOENT));
  expect_fail(tu_path(2, "."), EMBER_EIO, "cannot read");
}

static void test_header_length(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "hlen.safetensors");
  size_t len;
  unsigned char *buf = tu_read_file(src, &len);

  put_u64le(buf, (uint64_t)200 << 20);
  tu_write_file(bad, buf, len);
  expect_fail(bad, EMBER_EFORMAT, "header length 209715200 exceeds the 104857600-byte limit");
  put_u64le(buf, UINT64_MAX);
  tu_write_file(bad, buf, len);
  expect_fail(bad, EMBER_EFORMAT, "exceeds the");
  put_u64le(buf, len - 8 + 1);
  tu_write_file(bad, buf, len);
  expect_fail(bad, EMBER_EFORMAT, "exceeds file size");
  put_u64le(buf, 0);
  tu_write_file(bad, buf, len);
  expect_fail(bad, EMBER_EFORMAT, "not valid JSON");
  free(buf);
}

static void test_bad_json(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "json.safetensors");
  rewrite_header(src, bad, "\"__metadata__\":{", "\"__metadata__\"{");
  expect_fail(bad, EMBER_EFORMAT, "header is not valid JSON");
  rewrite_header(src, bad, "\"format\":\"ember\"", "\"format\":\"ember\",\"format\":\"ember\"");
  expect_fail(bad, EMBER_EFORMAT, "duplicate");
  rewrite_header(src, bad, "\"proj.bias\":", "\"__metadata__\":{},\"proj.bias\":");
  expect_fail(bad, EMBER_EFORMAT, "duplicate");

  parts p = split_file(src);
  join_file(bad, "[1,2,3]", p.data, p.data_len);
  expect_fail(bad, EMBER_EFORMAT, "header is not a JSON object");
  join_file(bad, "{\"proj.weight\":{}}", p.data, p.data_len);
  expect_fail(bad, EMBER_EFORMAT, "no \"__metadata__\"");
  join_file(bad, "{\"__metadata__\":[]}", p.data, p.data_len);
  expect_fail(bad, EMBER_EFORMAT, "\"__metadata__\" must be an object");
  free_parts(&p);
}

/* ---- hostile files: metadata ----------------------------------------------------------- */

static void del_y_std(json_t *r) { set_meta(r, "y_std", NULL); }
static void del_format(json_t *r) { set_meta(r, "format", NULL); }
static void del_seed(json_t *r) { set_meta(r, "train.seed", NULL); }
static void not_ember(json_t *r) { set_meta(r, "format", "gguf"); }
static void version2(json_t *r) { set_meta(r, "format_version", "2"); }
static void version_text(json_t *r) { set_meta(r, "format_version", "one"); }
static void version_zero(json_t *r) { set_meta(r, "format_version", "0"); }
static void method_ardfo(json_t *r) { set_meta(r, "method", "ardfo"); }
static void method_bogus(json_t *r) { set_meta(r, "method", "sgd"); }
static void arch_bogus(json_t *r) { set_meta(r, "arch", "transformer"); }
static void x_dim_zero(json_t *r) { set_meta(r, "x_dim", "0"); }
static void x_dim_text(json_t *r) { set_meta(r, "x_dim", "3 "); }
static void x_dim_huge(json_t *r) { set_meta(r, "x_dim", "99999999999999999999"); }
static void width_huge(json_t *r) { set_meta(r, "width", "99999"); }
static void depth_odd(json_t *r) { set_meta(r, "depth", "3"); }
static void width_big(json_t *r) { set_meta(r, "width", "8192"); }
static void width_too_big(json_t *r) { set_meta(r, "width", "16384"); }
static void depth_too_big(json_t *r) {
  set_meta(r, "width", "16384");
  set_meta(r, "depth", "256");
}
static void x_mean_short(json_t *r) { set_meta(r, "x_mean", "[1,2]"); }
static void x_mean_long(json_t *r) { set_meta(r, "x_mean", "[1,2,3,4]"); }
static void x_mean_nan(json_t *r) { set_meta(r, "x_mean", "[1,nan,3]"); }
static void x_mean_inf(json_t *r) { set_meta(r, "x_mean", "[1,2,1e39]"); }
static void x_mean_syntax(json_t *r) { set_meta(r, "x_mean", "[1,2,3"); }
static void x_mean_hex(json_t *r) { set_meta(r, "x_mean", "[1,0x2,3]"); }
static void x_std_neg(json_t *r) { set_meta(r, "x_std", "[1,-1,1]"); }
static void y_std_zero(json_t *r) { set_meta(r, "y_std", "[0, 1]"); }
static void y_box_empty(json_t *r) { set_meta(r, "y_lo", "[-2, 2]"); }
static void samples_zero(json_t *r) { set_meta(r, "infer.samples", "0"); }
static void sigma_nan(json_t *r) { set_meta(r, "infer.sigma", "nan"); }
static void sigma_text(json_t *r) { set_meta(r, "infer.sigma", "0.1x"); }
static void seed_negative(json_t *r) { set_meta(r, "train.seed", "-1"); }
static void seed_overflow(json_t *r) { set_meta(r, "train.seed", "18446744073709551616"); }
static void steps_negative(json_t *r) { set_meta(r, "train.steps", "-5"); }
static void meta_number(json_t *r) {
  json_object_set_new(json_object_get(r, "__metadata__"), "width", json_integer(8));
}
static void meta_extra_number(json_t *r) {
  json_object_set_new(json_object_get(r, "__metadata__"), "note", json_integer(8));
}
static void meta_extra_string(json_t *r) { set_meta(r, "exported_by", "torch 2.3"); }
static void langevin_key(json_t *r) { set_meta(r, "langevin.steps", "50"); }
static void again_key(json_t *r) { set_meta(r, "infer.again_steps", "0"); }
static void prefix_key(json_t *r) { set_meta(r, "train.prefix_share", "0.5"); }
static void refine_key(json_t *r) { set_meta(r, "infer.refine_lr", "0.05"); }
static void names_short(json_t *r) { set_meta(r, "x_names", "[\"a\",\"b\"]"); }
static void names_not_json(json_t *r) { set_meta(r, "y_names", "act.0,act.1"); }
static void names_not_strings(json_t *r) { set_meta(r, "y_names", "[\"a\",2]"); }
static void names_comma(json_t *r) { set_meta(r, "y_names", "[\"a,b\",\"c\"]"); }
static void names_number(json_t *r) { set_meta(r, "y_names", "[\"1.5\",\"c\"]"); }
static void names_nul(json_t *r) { set_meta(r, "y_names", "[\"a\\u0000b\",\"c\"]"); }
static void names_twice(json_t *r) { set_meta(r, "y_names", "[\"obs_2\",\"c\"]"); } /* an x name */
static void names_absent(json_t *r) {
  set_meta(r, "x_names", NULL);
  set_meta(r, "y_names", NULL);
}

static void test_bad_metadata(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "meta.safetensors");
  const struct {
    header_edit edit;
    int code;
    const char *what;
  } cases[] = {
      {del_y_std, EMBER_EFORMAT, "metadata key \"y_std\" is missing"},
      {del_format, EMBER_EFORMAT, "metadata key \"format\" is missing"},
      {del_seed, EMBER_EFORMAT, "metadata key \"train.seed\" is missing"},
      {not_ember, EMBER_EFORMAT, "format is \"gguf\", expected \"ember\""},
      {version2, EMBER_ENOTSUP, "format_version 2"},
      {version_text, EMBER_EFORMAT, "\"format_version\" must be a decimal integer >= 1"},
      {version_zero, EMBER_EFORMAT, "\"format_version\" must be a decimal integer >= 1"},
      {method_ardfo, EMBER_EFORMAT, "model of method ardfo"},
      {method_bogus, EMBER_EFORMAT, "unknown method \"sgd\""},
      {arch_bogus, EMBER_EFORMAT, "unknown architecture \"transformer\""},
      {x_dim_zero, EMBER_EFORMAT, "x_dim must be 1..65536, got 0"},
      {x_dim_text, EMBER_EFORMAT, "\"x_dim\" must be a decimal integer, got"},
      {x_dim_huge, EMBER_EFORMAT, "\"x_dim\" must be a decimal integer, got"},
      {width_huge, EMBER_EFORMAT, "width must be 1..16384, got 99999"},
      {depth_odd, EMBER_EFORMAT, "must be even"},
      {width_big, EMBER_EFORMAT, "data region is"},
      /* beyond EMBER_MAX_PARAMS: refused by the size alone, before the data region is looked at */
      {width_too_big, EMBER_EFORMAT, "has 537018369 parameters, more than the 268435456 a model may have"},
      {depth_too_big, EMBER_EFORMAT, "has 68723785729 parameters, more than the 268435456"},
      {x_mean_short, EMBER_EFORMAT, "x_mean has 2 values, expected 3"},
      {x_mean_long, EMBER_EFORMAT, "x_mean has 4 values, expected 3"},
      {x_mean_nan, EMBER_ERANGE, "x_mean[1] is not finite"},
      {x_mean_inf, EMBER_ERANGE, "x_mean[2] is not finite"},
      {x_mean_syntax, EMBER_EFORMAT, "\"x_mean\" must be a JSON array of numbers"},
      {x_mean_hex, EMBER_EFORMAT, "\"x_mean\" must be a JSON array of numbers"},
      {x_std_neg, EMBER_EFORMAT, "x_std[1] must be > 0, got -1"},
      {y_std_zero, EMBER_EFORMAT, "y_std[0] must be > 0"},
      {y_box_empty, EMBER_EFORMAT, "y_lo[1] = 2 must be below y_hi[1]"},
      {samples_zero, EMBER_EFORMAT, "samples must be"},
      {sigma_nan, EMBER_ERANGE, "\"infer.sigma\" is not finite"},
      {sigma_text, EMBER_EFORMAT, "\"infer.sigma\" must be a number"},
      {seed_negative, EMBER_EFORMAT, "\"train.seed\" must be an unsigned"},
      {seed_overflow, EMBER_EFORMAT, "\"train.seed\" must be an unsigned"},
      {steps_negative, EMBER_EFORMAT, "\"train.steps\" must be a decimal integer >= 0"},
      {meta_number, EMBER_EFORMAT, "metadata key \"width\" must be a string"},
      {meta_extra_number, EMBER_EFORMAT, "metadata key \"note\" must be a string"},
      /* keys of another method are not ignored: the file is not the model it says it is */
      {langevin_key, EMBER_EFORMAT,
       "metadata key \"langevin.steps\" belongs to langevin models, not to this dfo model"},
      {again_key, EMBER_EFORMAT, "\"infer.again_steps\" belongs to langevin models"},
      {prefix_key, EMBER_EFORMAT,
       "metadata key \"train.prefix_share\" belongs to ardfo models, not to this dfo model"},
      /* the signature: as many valid, distinct names as columns */
      {names_short, EMBER_EFORMAT, "metadata x_names has 2 names, expected 3 (x_dim)"},
      {names_not_json, EMBER_EFORMAT, "\"y_names\" must be a JSON array of strings"},
      {names_not_strings, EMBER_EFORMAT, "metadata y_names[1] is not a string"},
      {names_comma, EMBER_EFORMAT, "y_names[0]: \"a,b\" has a comma"},
      {names_number, EMBER_EFORMAT, "y_names[0]: \"1.5\" is a number"},
      {names_nul, EMBER_EFORMAT, "\"y_names\" must be a JSON array of strings"},
      {names_twice, EMBER_EFORMAT, "two columns are named \"obs_2\""},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    edit_header(src, bad, cases[i].edit);
    expect_fail(bad, cases[i].code, cases[i].what);
  }
  /* keys ember does not know are kept out of the way, not refused */
  edit_header(src, bad, meta_extra_string);
  ember_model m;
  ember_err err;
  assert_int_equal(ember_model_load(bad, &m, &err), 0);
  ember_model_free(&m);
  /* an explicit model has no refinement settings */
  const char *mse = tu_path(2, "mse.safetensors");
  make_model(&m, EMBER_METHOD_MSE, EMBER_ARCH_MLP, 3, 2, 8, 2, 4);
  assert_int_equal(ember_model_save(&m, mse, &err), 0);
  ember_model_free(&m);
  assert_int_equal(ember_model_load(mse, &m, &err), 0);
  ember_model_free(&m);
  edit_header(mse, bad, refine_key);
  expect_fail(bad, EMBER_EFORMAT,
              "metadata key \"infer.refine_lr\" belongs to dfo, ardfo, langevin models, not to "
              "this mse model");
}

/* The signature (x_names, y_names): kept through save and load, given by ember_model_init,
 * checked when set, and a checkpoint from before names were kept loads with x0.., y0... */
static void test_names(void **state) {
  (void)state;
  const char *src = save_victim(0), *old = tu_path(1, "old.safetensors");
  ember_model m;
  ember_err err;
  assert_int_equal(ember_model_load(src, &m, &err), 0);
  assert_string_equal(m.x_names[0], "F\xc3\xa4rbung");
  assert_string_equal(m.x_names[2], "obs_2");
  assert_string_equal(m.y_names[1], "act.1");
  ember_model_free(&m);
  /* the saved header holds them as JSON arrays of strings */
  parts p = split_file(src);
  assert_non_null(strstr(p.header, "\"y_names\":\"[\\\"act.0\\\",\\\"act.1\\\"]\""));
  free_parts(&p);

  edit_header(src, old, names_absent);
  assert_int_equal(ember_model_load(old, &m, &err), 0);
  const char *xs[] = {"x0", "x1", "x2"}, *ys[] = {"y0", "y1"};
  for (int i = 0; i < 3; i++) assert_string_equal(m.x_names[i], xs[i]);
  for (int i = 0; i < 2; i++) assert_string_equal(m.y_names[i], ys[i]);
  /* the committed fixtures predate names: they load, named by default */
  ember_model f;
  assert_int_equal(ember_model_load(EMBER_FIXTURES "/mlp.safetensors", &f, &err), 0);
  assert_string_equal(f.x_names[0], "x0");
  assert_string_equal(f.y_names[0], "y0");
  ember_model_free(&f);

  /* set_names checks the names the model would have, and keeps its own on failure */
  const char *dup[] = {"a", "b", "a"}, *clash[] = {"x1", "q"}, *ok[] = {"p", "q"};
  assert_int_equal(ember_model_set_names(&m, dup, NULL, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "two columns are named \"a\""));
  assert_int_equal(ember_model_set_names(&m, NULL, clash, &err), EMBER_EINVAL); /* x1 is an x name */
  assert_non_null(strstr(err.msg, "\"x1\""));
  assert_string_equal(m.y_names[0], "y0");
  assert_int_equal(ember_model_set_names(&m, NULL, ok, &err), 0);
  assert_string_equal(m.y_names[1], "q");
  assert_string_equal(m.x_names[1], "x1");
  /* and a model whose names were broken behind the library's back is not saved */
  m.y_names[1][0] = 'p';
  assert_int_equal(ember_model_save(&m, tu_path(2, "dup.safetensors"), &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "two columns are named \"p\""));
  ember_model_free(&m);
}

/* ---- hostile files: tensors ------------------------------------------------------------ */

static void overlap(json_t *r) {
  long long b, e;
  get_offsets(r, "blocks.0.0.weight", &b, &e);
  set_offsets(r, "blocks.0.0.weight", b - 4, e - 4);
}
static void past_end(json_t *r) {
  long long b, e;
  get_offsets(r, "out.bias", &b, &e);
  set_offsets(r, "out.bias", b + 8, e + 8);
}
static void past_end_huge(json_t *r) {
  set_offsets(r, "out.bias", 9223372036854775800LL, 9223372036854775804LL);
}
static void backwards(json_t *r) {
  long long b, e;
  get_offsets(r, "out.bias", &b, &e);
  set_offsets(r, "out.bias", e, b);
}
static void wrong_span(json_t *r) {
  long long b, e;
  get_offsets(r, "out.weight", &b, &e);
  set_offsets(r, "out.weight", b, e + 4);
}
static void negative_offset(json_t *r) { set_offsets(r, "proj.bias", -4, 28); }
static void float_offsets(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "data_offsets", json_pack("[fi]", 0.0, 32));
}
static void three_offsets(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "data_offsets", json_pack("[iii]", 0, 1, 2));
}
static void missing_out_bias(json_t *r) { json_object_del(r, "out.bias"); }
static void no_dtype(json_t *r) { json_object_del(json_object_get(r, "proj.bias"), "dtype"); }
static void tensor_not_object(json_t *r) { json_object_set_new(r, "proj.bias", json_string("x")); }
static void extra_field(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "quant", json_true());
}
static void shape_negative(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "shape", json_pack("[i]", -8));
}
static void shape_string(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "shape", json_string("[8]"));
}
static void shape_rank(json_t *r) {
  json_object_set_new(json_object_get(r, "proj.bias"), "shape", json_pack("[ii]", 8, 1));
}

static void test_bad_tensors(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "tensors.safetensors");

  rewrite_header(src, bad, "\"dtype\":\"F32\"", "\"dtype\":\"F16\"");
  expect_fail(bad, EMBER_EFORMAT, "tensor \"proj.weight\" has dtype F16, expected F32");
  rewrite_header(src, bad, "\"shape\":[8,5]", "\"shape\":[5,8]");
  expect_fail(bad, EMBER_EFORMAT, "tensor \"proj.weight\" has shape [5, 8], expected [8, 5]");
  rewrite_header(src, bad, "\"out.bias\":", "\"head.bias\":");
  expect_fail(bad, EMBER_EFORMAT, "unknown tensor \"head.bias\"");
  rewrite_header(src, bad, "\"proj.weight\":", "\"blocks.1.0.weight\":");
  expect_fail(bad, EMBER_EFORMAT, "unknown tensor \"blocks.1.0.weight\"");

  const struct {
    header_edit edit;
    const char *what;
  } cases[] = {
      {overlap, "tensors \"proj.bias\" and \"blocks.0.0.weight\" overlap"},
      {past_end, "tensor \"out.bias\" data_offsets end at 812, beyond the 804-byte data region"},
      {past_end_huge, "beyond the 804-byte data region"},
      {backwards, "tensor \"out.bias\" data_offsets [804, 800] end before they begin"},
      {wrong_span, "tensor \"out.weight\" data_offsets span 36 bytes, its shape needs 32"},
      {negative_offset, "tensor \"proj.bias\" data_offsets must be [begin, end]"},
      {float_offsets, "tensor \"proj.bias\" data_offsets must be [begin, end]"},
      {three_offsets, "tensor \"proj.bias\" data_offsets must be [begin, end]"},
      {missing_out_bias, "missing tensor \"out.bias\""},
      {no_dtype, "tensor \"proj.bias\" has no dtype"},
      {tensor_not_object, "tensor \"proj.bias\" must be an object"},
      {extra_field, "tensor \"proj.bias\" has an unknown field \"quant\""},
      {shape_negative, "tensor \"proj.bias\" shape must be an array of non-negative integers"},
      {shape_string, "tensor \"proj.bias\" shape must be an array of non-negative integers"},
      {shape_rank, "tensor \"proj.bias\" has shape [8, 1], expected [8]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    edit_header(src, bad, cases[i].edit);
    expect_fail(bad, EMBER_EFORMAT, cases[i].what);
  }
}

/* safetensors requires the data region to be covered exactly: no gaps, no trailing bytes */
static void test_gaps(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "gap.safetensors");
  parts p = split_file(src);
  unsigned char *more = calloc(p.data_len + 4, 1);
  assert_non_null(more);
  memcpy(more, p.data, p.data_len);

  join_file(bad, p.header, more, p.data_len + 4);
  expect_fail(bad, EMBER_EFORMAT, "data region bytes [804, 808) belong to no tensor");

  /* out.bias moved 4 bytes later: a hole before it */
  json_t *root = json_loads(p.header, 0, NULL);
  assert_non_null(root);
  past_end(root); /* +8 */
  long long b, e;
  get_offsets(root, "out.bias", &b, &e);
  set_offsets(root, "out.bias", b - 4, e - 4);
  char *h = json_dumps(root, JSON_COMPACT);
  join_file(bad, h, more, p.data_len + 4);
  expect_fail(bad, EMBER_EFORMAT, "data region bytes [800, 804) belong to no tensor");
  free(h);
  json_decref(root);

  /* tensors in another order than ours are fine if they tile the region */
  root = json_loads(p.header, 0, NULL);
  long long wb, we, bb, be;
  get_offsets(root, "out.weight", &wb, &we);
  get_offsets(root, "out.bias", &bb, &be);
  set_offsets(root, "out.bias", wb, wb + (be - bb));
  set_offsets(root, "out.weight", wb + (be - bb), be);
  memcpy(more, p.data, p.data_len);
  memcpy(more + wb, p.data + bb, (size_t)(be - bb));
  memcpy(more + wb + (be - bb), p.data + wb, (size_t)(we - wb));
  h = json_dumps(root, JSON_COMPACT);
  join_file(bad, h, more, p.data_len);
  ember_model m1, m2;
  ember_err err;
  assert_int_equal(ember_model_load(src, &m1, &err), 0);
  if (ember_model_load(bad, &m2, &err) < 0) fail_msg("reordered: %s", err.msg);
  assert_models_identical(&m1, &m2);
  ember_model_free(&m1);
  ember_model_free(&m2);
  free(h);
  json_decref(root);
  free(more);
  free_parts(&p);
}

static void test_nonfinite_values(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "nan.safetensors");
  parts p = split_file(src);
  json_t *root = json_loads(p.header, 0, NULL);
  assert_non_null(root);
  long long b, e;
  get_offsets(root, "blocks.0.1.weight", &b, &e);
  const float qnan = NAN, pinf = INFINITY;
  memcpy(p.data + b + 4 * 3, &qnan, 4);
  join_file(bad, p.header, p.data, p.data_len);
  expect_fail(bad, EMBER_ERANGE,
              "tensor \"blocks.0.1.weight\" has a non-finite value (nan) at index 3");
  free_parts(&p);

  p = split_file(src);
  get_offsets(root, "out.bias", &b, &e);
  memcpy(p.data + b, &pinf, 4);
  join_file(bad, p.header, p.data, p.data_len);
  expect_fail(bad, EMBER_ERANGE, "tensor \"out.bias\" has a non-finite value (inf) at index 0");
  free_parts(&p);
  json_decref(root);
}

/* A model's default inference options are what a request that sets none runs, on emberd and
 * in a local `ember predict`: they must fit the limits a request has by default (16,777,216
 * samples x 1,000 iterations used to load fine and then ran for hours). */
static void samples_huge(json_t *r) {
  set_meta(r, "infer.samples", "16777216");
  set_meta(r, "infer.iters", "1000");
}
static void samples_at_limit(json_t *r) {
  set_meta(r, "infer.samples", "65536");
  set_meta(r, "infer.iters", "1000");
}

static void test_defaults_within_request_limits(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "defaults.safetensors");
  edit_header(src, bad, samples_huge);
  expect_fail(bad, EMBER_EFORMAT, "16777216 samples per query, more than the 65536 a request may");
  edit_header(src, bad, samples_at_limit); /* 20 GFLOP a query for this small net: fine */
  ember_model m;
  ember_err err;
  assert_int_equal(ember_model_load(bad, &m, &err), 0);
  ember_model_free(&m);

  /* a wider net at the samples limit: 69,000 GFLOP a query */
  const char *wide = tu_path(2, "wide.safetensors");
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 512, 2, 3);
  assert_int_equal(ember_model_save(&m, wide, &err), 0);
  edit_header(wide, bad, samples_at_limit);
  expect_fail(bad, EMBER_EFORMAT, "GFLOP per query (65536 samples x 1000 iterations");
  /* and saving such a model is refused too */
  m.infer.samples = 65536;
  m.infer.iters = 1000;
  assert_int_equal(ember_model_save(&m, wide, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "more than the 2000 a request may"));
  m.infer.samples = EMBER_MAX_SAMPLES + 1;
  m.infer.iters = 1;
  assert_int_equal(ember_model_save(&m, wide, &err), EMBER_EINVAL);
  assert_non_null(strstr(err.msg, "65537 samples per query"));
  ember_model_free(&m);
}

/* Finite but absurd: statistics whose answers overflow when de-normalised, a sampling box far
 * outside the data, weights that overflow at the data's centre. Each used to load, and emberd
 * answered OK with NaN or Inf in y and energy. */
static void y_std_huge(json_t *r) { set_meta(r, "y_std", "[3e38, 1]"); }
static void y_box_huge(json_t *r) {
  set_meta(r, "y_lo", "[-3e38, -1]");
  set_meta(r, "y_hi", "[3e38, 1]");
}
static void y_box_far(json_t *r) { set_meta(r, "y_hi", "[1, 2e6]"); }

static void test_absurd_values(void **state) {
  (void)state;
  const char *src = save_victim(0), *bad = tu_path(1, "absurd.safetensors");
  edit_header(src, bad, y_std_huge);
  expect_fail(bad, EMBER_ERANGE, "the sampling box of y[0] in y's units");
  edit_header(src, bad, y_box_huge);
  expect_fail(bad, EMBER_EFORMAT, "sampling bounds [-3.00000001e+38, 3.00000001e+38] of y[0] reach");
  edit_header(src, bad, y_box_far);
  expect_fail(bad, EMBER_EFORMAT, "of y[1] reach more than 1e+06 standard deviations");

  /* every weight of the input projection 3e38 */
  parts p = split_file(src);
  json_t *root = json_loads(p.header, 0, NULL);
  assert_non_null(root);
  long long b, e;
  get_offsets(root, "proj.weight", &b, &e);
  for (long long at = b; at < e; at += 4) {
    const float big = (at / 4) % 2 ? 3e38f : -3e38f;
    memcpy(p.data + at, &big, 4);
  }
  join_file(bad, p.header, p.data, p.data_len);
  expect_fail(bad, EMBER_ERANGE, "the energy is not finite");
  expect_fail(bad, EMBER_ERANGE, "at x = x_mean, y = y_lo: the weights overflow float32");
  json_decref(root);
  free_parts(&p);

  /* and the same refused when saved; an mse model's prediction too */
  ember_model m;
  ember_err err;
  struct stat st;
  const char *out = tu_path(2, "absurd-save.safetensors");
  make_model(&m, EMBER_METHOD_DFO, EMBER_ARCH_RESNET, 3, 2, 8, 2, 1);
  m.y_std[1] = 3e38f;
  assert_int_equal(ember_model_save(&m, out, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "overflows float32"));
  m.y_std[1] = 1.0f;
  for (int i = 0; i < 8; i++) m.net.layers[0].b[i] = 3e38f;
  assert_int_equal(ember_model_save(&m, out, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "the energy is not finite"));
  ember_model_free(&m);
  make_model(&m, EMBER_METHOD_MSE, EMBER_ARCH_MLP, 3, 2, 8, 2, 1);
  m.y_std[0] = 1e38f;
  m.net.layers[2].b[0] = 100.0f; /* 1e40 once de-normalised */
  assert_int_equal(ember_model_save(&m, out, &err), EMBER_ERANGE);
  assert_non_null(strstr(err.msg, "the prediction is not finite"));
  ember_model_free(&m);
  assert_int_equal(stat(out, &st), -1);
}

/* A file is read in the order it is checked: a sparse file of 1 GiB whose header (a valid
 * model's) leaves most of the data region to no tensor is refused without reading it (the old
 * loader read the whole file into memory first: 1 GiB more RSS), and a device or a FIFO is
 * refused before any read (/dev/zero used to be read up to the 16 GiB limit; opening a FIFO
 * used to wait for a writer). */
static void test_reads_header_first(void **state) {
  (void)state;
  const char *src = save_victim(0), *sparse = tu_path(1, "sparse.safetensors");
  size_t len;
  unsigned char *buf = tu_read_file(src, &len);
  tu_write_file(sparse, buf, len);
  free(buf);
  const off_t big = (off_t)1 << 30;
  assert_int_equal(truncate(sparse, big), 0);
  struct rusage before, after;
  assert_int_equal(getrusage(RUSAGE_SELF, &before), 0);
  expect_fail(sparse, EMBER_EFORMAT, "belong to no tensor");
  assert_int_equal(getrusage(RUSAGE_SELF, &after), 0);
  long grew_mib = (after.ru_maxrss - before.ru_maxrss) / 1024;
  if (grew_mib > 64) fail_msg("loading a 1 GiB sparse file grew the peak RSS by %ld MiB", grew_mib);
  /* the same with a zero header length: refused as JSON after reading 8 bytes */
  buf = calloc(1, 8);
  assert_non_null(buf);
  tu_write_file(sparse, buf, 8);
  free(buf);
  assert_int_equal(truncate(sparse, big), 0);
  expect_fail(sparse, EMBER_EFORMAT, "not valid JSON");
  assert_int_equal(getrusage(RUSAGE_SELF, &after), 0);
  assert_true((after.ru_maxrss - before.ru_maxrss) / 1024 <= 64);
  unlink(sparse);

  expect_fail("/dev/zero", EMBER_EIO, "not a regular file");
  const char *fifo = tu_path(2, "fifo.safetensors");
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  expect_fail(fifo, EMBER_EIO, "not a regular file");
  unlink(fifo);
}

/* Every truncation and a scribble over every header byte: never a crash or a leak, and a
 * failure always leaves the model zeroed with a message. */
static void test_brute_force(void **state) {
  (void)state;
  const char *src = save_victim(0);
  size_t len;
  unsigned char *buf = tu_read_file(src, &len);
  uint64_t hlen = get_u64le(buf);
  ember_model m;
  ember_err err;
  for (size_t n = 0; n < len; n++) {
    err.msg[0] = 0;
    int rc = ember_model_load_mem(buf, n, "cut", &m, &err);
    assert_true(rc < 0);
    assert_true(is_zeroed(&m));
    assert_true(strncmp(err.msg, "cut: ", 5) == 0);
  }
  const unsigned char scribble[] = {0, ' ', '"', '}', ']', ',', '9', '-', 0xff};
  int ok = 0;
  for (size_t i = 0; i < 8 + hlen; i++)
    for (size_t s = 0; s < sizeof scribble; s++) {
      unsigned char keep = buf[i];
      buf[i] = scribble[s];
      int rc = ember_model_load_mem(buf, len, "scribbled", &m, &err);
      buf[i] = keep;
      if (rc == 0) {
        ok++;
        ember_model_free(&m);
      } else {
        assert_true(is_zeroed(&m));
        assert_true(strncmp(err.msg, "scribbled: ", 11) == 0);
      }
    }
  assert_true(ok > 0); /* e.g. a padding space or a digit of a statistic */
  assert_int_equal(ember_model_load_mem(buf, len, "intact", &m, &err), 0);
  ember_model_free(&m);
  assert_int_equal(ember_model_load_mem(NULL, 0, NULL, &m, &err), EMBER_EFORMAT);
  assert_true(strncmp(err.msg, "<memory>: ", 10) == 0);
  free(buf);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip_resnet_dfo),
      cmocka_unit_test(test_roundtrip_resnet_mse),
      cmocka_unit_test(test_roundtrip_mlp_dfo),
      cmocka_unit_test(test_roundtrip_mlp_mse),
      cmocka_unit_test(test_layout),
      cmocka_unit_test(test_mlp_names),
      cmocka_unit_test(test_save_replaces),
      cmocka_unit_test(test_save_fails_cleanly),
      cmocka_unit_test(test_save_out_of_space),
      cmocka_unit_test(test_save_refuses_bad_values),
      cmocka_unit_test(test_truncated),
      cmocka_unit_test(test_header_length),
      cmocka_unit_test(test_bad_json),
      cmocka_unit_test(test_bad_metadata),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_bad_tensors),
      cmocka_unit_test(test_gaps),
      cmocka_unit_test(test_nonfinite_values),
      cmocka_unit_test(test_brute_force),
      cmocka_unit_test(test_reads_header_first),
      cmocka_unit_test(test_defaults_within_request_limits),
      cmocka_unit_test(test_absurd_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
