/* checkpoint.c - models to and from safetensors files.
 *
 * A checkpoint is an 8-byte little-endian header length N, N bytes of JSON, then the data
 * region: every layer's weight ([out, in]) and bias ([out]) as little-endian float32, in
 * layer order, weight before bias, back to back. The JSON maps each tensor name to
 * {"dtype","shape","data_offsets"} (offsets relative to the data region) and holds the rest
 * of the model as strings under "__metadata__". The header is padded with spaces so the data
 * region starts 8-byte aligned, as the Python safetensors writer does. So a PyTorch user can
 * read an ember model with safetensors.torch.load_file, and an IBC network exported from
 * PyTorch (plus the metadata) loads here.
 *
 * Why it is built this way:
 * - Saving is atomic: a temporary file in the target's directory is written, fsynced and
 *   renamed over the target, then the directory is fsynced. emberd hot-reloads models from
 *   a directory that `ember train` writes into, so a reader must never see half a file. A
 *   failed write (out of space: EMBER_ENOSPC) removes the temporary and leaves the target as
 *   it was; only a process killed mid-write leaves its `<target>.tmp.<pid>.<n>` behind.
 * - A model is refused at save time if loading it back would fail (non-finite values,
 *   std <= 0, empty sampling box, bad inference options): the error belongs to whoever made
 *   the model, not to whoever loads it later.
 * - Loading trusts nothing. Files come from disk, from other tools and over the network, so
 *   every length, offset and value is checked before it is used, offsets are JSON integers
 *   compared without overflow, the data region must be covered exactly once, and the network
 *   is allocated only once the data region is known to be big enough to fill it (so a
 *   header cannot make us allocate more than the file's own size). A file is read in the
 *   order it is checked: the 8-byte length (against the file's size, known from fstat; only
 *   regular files are read), the header, and only then the data region, straight into the
 *   model; so a 2 GiB file of zeros costs 8 bytes of reading. Every failure says what is
 *   wrong, prefixed with the file's name, and leaves the output model zeroed.
 * - Floats in the metadata are printed with %.9g, which round-trips float32 exactly, and read
 *   back with strtof; a loaded model is bit-identical to the saved one.
 * - The metadata keys are one table (meta_keys: name, kind, field of ember_model, which methods
 *   and which files have it) that the writer and the reader both walk, so a key cannot be
 *   written and not read back, and the writer's order is the file's. The columns' names
 *   (x_names, y_names) are optional keys like the others added after the first release: a file
 *   without them loads with the names ember_model_init gives, x0.. and y0...
 *
 * What it does not do: map files (tensors are read into the model with pread), read from
 * pipes or devices, accept dtypes other than F32, or keep tensors it does not know.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ember/langevin.h"
#include "ember/model.h"

/* Tensors are copied between the file and the model with memcpy: both are little-endian
 * float32 only on a little-endian host. A big-endian port needs a byte-swapping copy here. */
#if !defined(__BYTE_ORDER__) || !defined(__ORDER_LITTLE_ENDIAN__) || \
    __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "checkpoint.c assumes a little-endian host: add a byte-swapping tensor copy"
#endif
_Static_assert(sizeof(float) == 4, "checkpoints store IEEE-754 binary32");

#define CKPT_FORMAT "ember"
#define CKPT_VERSION 1
#define CKPT_HEADER_MAX ((uint64_t)100 << 20) /* as the Python safetensors reader */
#define CKPT_FILE_MAX ((uint64_t)16 << 30)
#define CKPT_TMP_TRIES 100
#define CKPT_NAME_MAX 80 /* "nets.12.blocks.127.1.weight_orig" and the like */

/* One tensor the model has: its name, its shape and where its floats live in the model. */
typedef struct ckpt_tensor {
  char name[CKPT_NAME_MAX];
  int rows, cols; /* weight: (out, in); bias: (out, 0) */
  int kh, kw;     /* a convolution's weight: (out, in, kh, kw); 0 otherwise */
  size_t numel;
  float *p;            /* into net->params */
  uint64_t begin, end; /* byte offsets in the data region (load: as found) */
  int seen;
} ckpt_tensor;

static const char *errno_text(int e, char *buf, size_t len) {
  if (strerror_r(e, buf, len) != 0) snprintf(buf, len, "error %d", e);
  return buf;
}

/* Adds net's weight and bias tensors, named "<pre><layer>.weight" and ".bias", at t[*k...]. */
static int add_net(const ember_net *net, const char pre[24], ckpt_tensor *t, int *k, ember_err *err) {
  for (int i = 0; i < net->nlayers; i++) {
    const ember_dense *l = &net->layers[i];
    char prefix[CKPT_NAME_MAX - 8];
    if (ember_net_layer_name(net, i, prefix, sizeof prefix) < 0)
      return ember_fail(err, EMBER_EINVAL, "network has no name for layer %d", i);
    ckpt_tensor *w = &t[(*k)++], *b = &t[(*k)++];
    snprintf(w->name, sizeof w->name, "%s%s.weight", pre, prefix);
    snprintf(b->name, sizeof b->name, "%s%s.bias", pre, prefix);
    w->rows = l->out;
    w->cols = l->in;
    w->numel = (size_t)l->out * (size_t)l->in;
    w->p = l->w;
    b->rows = l->out;
    b->cols = 0;
    b->numel = (size_t)l->out;
    b->p = l->b;
  }
  return 0;
}

/* Lists the model's tensors in file order: every layer's weight and bias (an ardfo model's
 * prefix nets as "nets.J." for J = 0..y_dim-1, J = y_dim-1 being the whole-y net), then, for a
 * model with spectral normalisation, every normalised layer's weight_orig, weight_u and
 * weight_v. */
static int tensor_table(const ember_model *m, ckpt_tensor **out, int *n, ember_err *err) {
  const ember_net *net = &m->net;
  *out = NULL;
  *n = 0;
  int nsn = 0, nt = 2 * net->nlayers;
  for (int i = 0; m->sn_w && i < net->nlayers; i++) nsn += ember_sn_layer(net, i);
  for (int j = 0; j < m->nar; j++) nt += 2 * m->ar[j].nlayers;
  if (m->enc) nt += 2 * m->enc->nlayers;
  ckpt_tensor *t = calloc((size_t)nt + 3 * (size_t)nsn, sizeof *t);
  if (!t) return ember_fail(err, EMBER_ENOMEM, "out of memory listing tensors");
  int k = 0, rc = 0;
  char pre[24] = "";
  for (int j = 0; j < m->nar && rc == 0; j++) {
    snprintf(pre, sizeof pre, "nets.%d.", j);
    rc = add_net(&m->ar[j], pre, t, &k, err);
  }
  if (m->method == EMBER_METHOD_ARDFO) snprintf(pre, sizeof pre, "nets.%d.", m->nar);
  if (rc == 0) rc = add_net(net, pre, t, &k, err);
  for (int i = 0; rc == 0 && m->enc && i < m->enc->nlayers; i++) { /* PyTorch's Conv2d: OIHW */
    const ember_conv *l = &m->enc->layers[i];
    char prefix[CKPT_NAME_MAX - 8];
    ember_encoder_layer_name(m->enc, i, prefix, sizeof prefix);
    ckpt_tensor *w = &t[k++], *b = &t[k++];
    snprintf(w->name, sizeof w->name, "%s.weight", prefix);
    snprintf(b->name, sizeof b->name, "%s.bias", prefix);
    w->rows = l->out_c, w->cols = l->in_c, w->kh = w->kw = l->k;
    w->numel = (size_t)l->out_c * l->in_c * l->k * l->k;
    w->p = l->w;
    b->rows = l->out_c;
    b->numel = (size_t)l->out_c;
    b->p = l->b;
  }
  if (rc < 0) {
    free(t);
    return rc;
  }
  float *pw = m->sn_w, *puv = m->sn_uv;
  ckpt_tensor *w = &t[nt];
  for (int i = 0; m->sn_w && i < net->nlayers; i++, w += 3) {
    if (!ember_sn_layer(net, i)) {
      w -= 3;
      continue;
    }
    const ember_dense *l = &net->layers[i];
    char prefix[CKPT_NAME_MAX - 16];
    ember_net_layer_name(net, i, prefix, sizeof prefix);
    ckpt_tensor *u = w + 1, *v = w + 2;
    snprintf(w->name, sizeof w->name, "%s.weight_orig", prefix);
    snprintf(u->name, sizeof u->name, "%s.weight_u", prefix);
    snprintf(v->name, sizeof v->name, "%s.weight_v", prefix);
    w->rows = l->out;
    w->cols = l->in;
    w->numel = (size_t)l->out * l->in;
    w->p = pw;
    u->rows = l->out;
    u->numel = (size_t)l->out;
    u->p = puv;
    v->rows = l->in;
    v->numel = (size_t)l->in;
    v->p = puv + l->out;
    pw += w->numel;
    puv += u->numel + v->numel;
  }
  *out = t;
  *n = nt + 3 * nsn;
  return 0;
}

/* A spectrally normalised model's weights must be weight_orig / sigma, sigma = u^T W v > 0 (as
 * PyTorch computes it in eval mode), to float rounding. */
static int check_sn(const ember_model *m, const char *name, int bad, ember_err *err) {
  if (!m->sn_w) return 0;
  const ember_net *net = &m->net;
  const float *pw = m->sn_w, *puv = m->sn_uv;
  for (int i = 0; i < net->nlayers; i++) {
    if (!ember_sn_layer(net, i)) continue;
    const ember_dense *l = &net->layers[i];
    const float *u = puv, *v = puv + l->out;
    double sigma = 0.0, wmax = 0.0, dmax = 0.0;
    for (int r = 0; r < l->out; r++) {
      double wv = 0.0;
      for (int c = 0; c < l->in; c++) wv += (double)pw[(size_t)r * l->in + c] * v[c];
      sigma += u[r] * wv;
    }
    char prefix[CKPT_NAME_MAX - 16];
    ember_net_layer_name(net, i, prefix, sizeof prefix);
    if (!(sigma > 0.0))
      return ember_fail(err, bad, "%s: %s: spectral norm u^T W v = %g must be positive", name,
                        prefix, sigma);
    for (size_t k = 0; k < (size_t)l->out * l->in; k++) {
      double want = pw[k] / sigma, d = fabs(want - l->w[k]);
      wmax = fabs(want) > wmax ? fabs(want) : wmax;
      dmax = d > dmax ? d : dmax;
    }
    if (dmax > 1e-5 * (wmax > 1.0 ? wmax : 1.0))
      return ember_fail(err, bad,
                        "%s: %s.weight is not %s.weight_orig / sigma (sigma = u^T W v = %g; off "
                        "by up to %g)",
                        name, prefix, prefix, sigma, dmax);
    pw += (size_t)l->out * l->in;
    puv += (size_t)l->out + l->in;
  }
  return 0;
}

static int check_tensors_finite(const ckpt_tensor *t, int n, const char *name, ember_err *err) {
  for (int k = 0; k < n; k++)
    for (size_t i = 0; i < t[k].numel; i++)
      if (!isfinite(t[k].p[i]))
        return ember_fail(err, EMBER_ERANGE,
                          "%s: tensor \"%s\" has a non-finite value (%g) at index %zu", name,
                          t[k].name, (double)t[k].p[i], i);
  return 0;
}

/* Metadata keys that only some methods have, by prefix. The writer writes them for those
 * methods only and the reader refuses them in a model of another method: a key that would be
 * ignored says the file is not the model it claims to be (langevin.steps in a dfo model). */
static const struct {
  const char *prefix;
  unsigned methods; /* bit (1 << ember_method) for each method that has them */
} method_keys[] = {
    {"infer.refine_", ~(1u << EMBER_METHOD_MSE)},
    {"infer.again_", 1u << EMBER_METHOD_LANGEVIN},
    {"langevin.", 1u << EMBER_METHOD_LANGEVIN},
    {"train.prefix_", 1u << EMBER_METHOD_ARDFO},
};

/* The methods whose models have this key: every method's unless method_keys says otherwise. */
static unsigned key_methods(const char *key) {
  for (size_t i = 0; i < sizeof method_keys / sizeof *method_keys; i++)
    if (strncmp(key, method_keys[i].prefix, strlen(method_keys[i].prefix)) == 0)
      return method_keys[i].methods;
  return ~0u;
}

static int key_applies(const char *key, ember_method method) {
  return (key_methods(key) >> method) & 1u;
}

/* Every metadata key, in the order the writer writes them: the one list that both the writer
 * (header_json) and the reader (load_metadata) go through, so that a key cannot be written and
 * not read, or read under another name. `off` is the field of ember_model the value lives in;
 * the shape keys (format to depth) are read before the model is allocated. A key is written
 * and read for the methods key_applies allows; `with` names the key whose presence makes an
 * optional group present (keys newer than format_version 1's first release: absent, the
 * fields keep ember_model_init's defaults). */
typedef enum {
  MK_FORMAT,   /* "ember" */
  MK_VERSION,  /* CKPT_VERSION */
  MK_METHOD,   /* ember_method, by name */
  MK_ARCH,     /* ember_arch, by name */
  MK_INT,      /* int, decimal */
  MK_I64,      /* int64_t, decimal */
  MK_U64,      /* uint64_t, decimal */
  MK_FLOAT,    /* float, %.9g */
  MK_VEC_X,    /* float * to x_dim values, "[v0,v1,...]" */
  MK_VEC_Y,    /* float * to y_dim values */
  MK_SCHEDULE, /* ember_schedule, by name */
  MK_SN,       /* "1" when the model has spectral normalisation (sn_w): no field of its own */
  MK_NAMES_X,  /* char ** to x_dim names, "[\"n0\",\"n1\",...]" (ember_names_check) */
  MK_NAMES_Y   /* char ** to y_dim names */
} meta_kind;

enum {
  MK_SHAPE = 1,      /* read before the model is allocated (into a scratch model) */
  MK_ZERO_ABSENT = 2 /* written only when > 0, and with it the keys of its group (those whose
                        `with` names it); absent reads as 0 (train.ema, train.val_rows) */
};

typedef struct meta_key {
  const char *key;
  meta_kind kind;
  size_t off;       /* the field of ember_model (MK_FORMAT, MK_VERSION, MK_SN: none) */
  unsigned flags;   /* MK_SHAPE, MK_ZERO_ABSENT */
  int lo;           /* MK_INT, MK_I64, MK_VERSION: the least value accepted */
  const char *with; /* optional keys: read when the file has this key (NULL: required) */
} meta_key;

#define MF(field) offsetof(ember_model, field)
static const meta_key meta_keys[] = {
    {"format", MK_FORMAT, 0, MK_SHAPE, 0, NULL},
    {"format_version", MK_VERSION, 0, MK_SHAPE, 1, NULL},
    {"method", MK_METHOD, MF(method), MK_SHAPE, 0, NULL},
    {"x_dim", MK_INT, MF(x_dim), MK_SHAPE, INT_MIN, NULL},
    {"y_dim", MK_INT, MF(y_dim), MK_SHAPE, INT_MIN, NULL},
    {"arch", MK_ARCH, MF(net.shape.arch), MK_SHAPE, 0, NULL},
    {"width", MK_INT, MF(net.shape.width), MK_SHAPE, INT_MIN, NULL},
    {"depth", MK_INT, MF(net.shape.depth), MK_SHAPE, INT_MIN, NULL},
    {"x_mean", MK_VEC_X, MF(x_mean), 0, 0, NULL},
    {"x_std", MK_VEC_X, MF(x_std), 0, 0, NULL},
    {"y_mean", MK_VEC_Y, MF(y_mean), 0, 0, NULL},
    {"y_std", MK_VEC_Y, MF(y_std), 0, 0, NULL},
    {"y_lo", MK_VEC_Y, MF(y_lo), 0, 0, NULL},
    {"y_hi", MK_VEC_Y, MF(y_hi), 0, 0, NULL},
    {"x_names", MK_NAMES_X, MF(x_names), 0, 0, "x_names"},
    {"y_names", MK_NAMES_Y, MF(y_names), 0, 0, "y_names"},
    {"infer.samples", MK_INT, MF(infer.samples), 0, INT_MIN, NULL},
    {"infer.iters", MK_INT, MF(infer.iters), 0, INT_MIN, NULL},
    {"infer.sigma", MK_FLOAT, MF(infer.sigma), 0, 0, NULL},
    {"infer.shrink", MK_FLOAT, MF(infer.shrink), 0, 0, NULL},
    {"infer.temperature", MK_FLOAT, MF(infer.temperature), 0, 0, NULL},
    {"train.steps", MK_I64, MF(train_steps), 0, 0, NULL},
    {"train.seed", MK_U64, MF(train_seed), 0, 0, NULL},
    {"train.batch", MK_INT, MF(train_batch), 0, 0, NULL},
    {"train.negatives", MK_INT, MF(train_negatives), 0, 0, NULL},
    {"train.lr", MK_FLOAT, MF(train_lr), 0, 0, NULL},
    {"train.temperature", MK_FLOAT, MF(train_temperature), 0, 0, NULL},
    {"train.loss", MK_FLOAT, MF(train_loss), 0, 0, NULL},
    {"train.ema", MK_FLOAT, MF(train_ema), MK_ZERO_ABSENT, 0, "train.ema"},
    {"train.val_rows", MK_INT, MF(train_val_rows), MK_ZERO_ABSENT, 1, "train.val_rows"},
    {"train.val_loss", MK_FLOAT, MF(train_val_loss), 0, 0, "train.val_rows"},
    {"train.val_chance", MK_FLOAT, MF(train_val_chance), 0, 0, "train.val_rows"},
    {"infer.refine_steps", MK_INT, MF(infer.refine_steps), 0, INT_MIN, "infer.refine_steps"},
    {"infer.refine_lr", MK_FLOAT, MF(infer.refine_lr), 0, 0, "infer.refine_steps"},
    {"spectral_norm", MK_SN, 0, 0, 0, "spectral_norm"},
    {"train.prefix_share", MK_FLOAT, MF(train_prefix_share), 0, 0, "train.prefix_share"},
    {"train.prefix_noise", MK_FLOAT, MF(train_prefix_noise), 0, 0, "train.prefix_share"},
    {"infer.again_steps", MK_INT, MF(infer.again_steps), 0, INT_MIN, "infer.again_steps"},
    {"infer.again_step", MK_FLOAT, MF(infer.again_step), 0, 0, "infer.again_steps"},
    {"langevin.steps", MK_INT, MF(infer.langevin.steps), 0, INT_MIN, NULL},
    {"langevin.schedule", MK_SCHEDULE, MF(infer.langevin.schedule), 0, 0, NULL},
    {"langevin.step_init", MK_FLOAT, MF(infer.langevin.step_init), 0, 0, NULL},
    {"langevin.step_final", MK_FLOAT, MF(infer.langevin.step_final), 0, 0, NULL},
    {"langevin.gamma", MK_FLOAT, MF(infer.langevin.gamma), 0, 0, NULL},
    {"langevin.noise_scale", MK_FLOAT, MF(infer.langevin.noise_scale), 0, 0, NULL},
    {"langevin.delta_max", MK_FLOAT, MF(infer.langevin.delta_max), 0, 0, NULL},
    {"langevin.penalty_margin", MK_FLOAT, MF(penalty_margin), 0, 0, NULL},
    {"langevin.penalty_weight", MK_FLOAT, MF(penalty_weight), 0, 0, NULL},
};
#undef MF
#define NMETA_KEYS (sizeof meta_keys / sizeof *meta_keys)

/* The value of key k in m. */
static void *meta_field(ember_model *m, const meta_key *k) { return (char *)m + k->off; }
static const void *meta_cfield(const ember_model *m, const meta_key *k) {
  return (const char *)m + k->off;
}
static const float *meta_vec_of(const ember_model *m, const meta_key *k) {
  return *(float *const *)meta_cfield(m, k);
}

/* Normalisation, bounds and options: what both save and load insist on. `bad` is the code
 * for a finite but unusable value (EINVAL when saving, EFORMAT when loading). */
static int check_model_values(const ember_model *m, const char *name, int bad, ember_err *err) {
  for (const meta_key *k = meta_keys; k < meta_keys + NMETA_KEYS; k++) {
    if (k->kind != MK_VEC_X && k->kind != MK_VEC_Y) continue;
    const float *v = meta_vec_of(m, k);
    for (int i = 0; i < (k->kind == MK_VEC_X ? m->x_dim : m->y_dim); i++)
      if (!isfinite(v[i]))
        return ember_fail(err, EMBER_ERANGE, "%s: %s[%d] is not finite (%g)", name, k->key, i,
                          (double)v[i]);
  }
  for (int i = 0; i < m->x_dim; i++)
    if (!(m->x_std[i] > 0.0f))
      return ember_fail(err, bad, "%s: x_std[%d] must be > 0, got %.9g", name, i,
                        (double)m->x_std[i]);
  for (int i = 0; i < m->y_dim; i++) {
    if (!(m->y_std[i] > 0.0f))
      return ember_fail(err, bad, "%s: y_std[%d] must be > 0, got %.9g", name, i,
                        (double)m->y_std[i]);
    if (!(m->y_lo[i] < m->y_hi[i]))
      return ember_fail(err, bad, "%s: y_lo[%d] = %.9g must be below y_hi[%d] = %.9g", name, i,
                        (double)m->y_lo[i], i, (double)m->y_hi[i]);
    /* finite but absurd: a box the network never saw, or one whose answers overflow when
     * de-normalised (y_std 3e38), would answer NaN or Inf */
    if (!(fabsf(m->y_lo[i]) <= EMBER_X_MAX_SIGMA && fabsf(m->y_hi[i]) <= EMBER_X_MAX_SIGMA))
      return ember_fail(err, bad,
                        "%s: sampling bounds [%.9g, %.9g] of y[%d] reach more than %g standard "
                        "deviations from the mean",
                        name, (double)m->y_lo[i], (double)m->y_hi[i], i, (double)EMBER_X_MAX_SIGMA);
    float lo = m->y_lo[i] * m->y_std[i] + m->y_mean[i], hi = m->y_hi[i] * m->y_std[i] + m->y_mean[i];
    if (!isfinite(lo) || !isfinite(hi))
      return ember_fail(err, EMBER_ERANGE,
                        "%s: the sampling box of y[%d] in y's units, [%.9g, %.9g] x y_std %.9g + "
                        "y_mean %.9g, overflows float32",
                        name, i, (double)m->y_lo[i], (double)m->y_hi[i], (double)m->y_std[i],
                        (double)m->y_mean[i]);
  }
  ember_err e;
  if (!m->x_names || !m->y_names)
    return ember_fail(err, bad, "%s: the model has no column names", name);
  if (ember_names_check((const char *const *)m->x_names, m->x_dim, (const char *const *)m->y_names,
                        m->y_dim, &e) < 0)
    return ember_fail(err, e.code == EMBER_ENOMEM ? EMBER_ENOMEM : bad, "%s: %s", name, e.msg);
  if (ember_infer_opts_check(&m->infer, m->method == EMBER_METHOD_LANGEVIN, &e) < 0)
    return ember_fail(err, bad, "%s: default inference options: %s", name, e.msg);
  if (ember_model_check_defaults(m, &e) < 0) return ember_fail(err, bad, "%s: %s", name, e.msg);
  if (m->train_steps < 0 || m->train_batch < 0 || m->train_negatives < 0)
    return ember_fail(err, bad,
                      "%s: training record must not be negative (steps %" PRId64
                      ", batch %d, negatives %d)",
                      name, m->train_steps, m->train_batch, m->train_negatives);
  /* every other number the metadata holds: a value the reader would refuse is refused here */
  for (const meta_key *k = meta_keys; k < meta_keys + NMETA_KEYS; k++) {
    if (k->kind != MK_FLOAT || !key_applies(k->key, m->method)) continue;
    float v = *(const float *)meta_cfield(m, k);
    if (!isfinite(v))
      return ember_fail(err, EMBER_ERANGE, "%s: %s is not finite (%g)", name, k->key, (double)v);
  }
  return 0;
}

/* A forward pass at the data's centre (normalised x = 0) with y at the centre and at both
 * corners of the sampling box, for every net of the model: weights like 3e38 overflow there, and
 * a model that cannot give a finite energy (mse: prediction) at its own data's centre answers
 * nothing. Models that overflow only at some x are caught when they answer (infer.c). */
static int check_probe(const ember_model *m, const char *name, ember_err *err) {
  const int d = m->y_dim, nets = m->method == EMBER_METHOD_ARDFO ? d : 1;
  int rc = 0;
  float *buf = malloc(((size_t)m->x_dim + 3 * (size_t)d + 3 * (size_t)d) * sizeof(float));
  if (!buf) return ember_fail(err, EMBER_ENOMEM, "%s: out of memory", name);
  float *x = buf, *y = x + m->x_dim, *out = y + 3 * (size_t)d;
  memset(x, 0, (size_t)m->x_dim * sizeof(float));
  for (int j = 1; j <= nets && rc == 0; j++) {
    const ember_net *net = m->method == EMBER_METHOD_ARDFO ? ember_model_prefix_net(m, j) : &m->net;
    const int in_y = net->shape.in_y, rows = in_y ? 3 : 1, nout = net->shape.out;
    for (int c = 0; c < in_y; c++) {
      y[c] = 0.0f;
      y[in_y + c] = m->y_lo[c];
      y[2 * in_y + c] = m->y_hi[c];
    }
    ember_net_ws ws;
    if ((rc = ember_net_ws_init(&ws, &net->shape, rows, 1, err)) < 0) break;
    ember_net_fuse_x(net, x, 1, ws.hx);
    ember_net_forward(net, &ws, ws.hx, in_y ? y : NULL, 1, rows, out);
    ember_net_ws_free(&ws);
    if (m->method == EMBER_METHOD_MSE) ember_model_denorm_y(m, out, 1, out);
    static const char *const at[] = {"x_mean, y = y_mean", "x_mean, y = y_lo", "x_mean, y = y_hi"};
    for (int r = 0; r < rows * nout && rc == 0; r++)
      if (!isfinite(out[r]))
        rc = ember_fail(err, EMBER_ERANGE,
                        "%s: the %s is not finite (%g) at x = %s: the weights overflow float32",
                        name, nets > 1 ? "energy of a y-prefix net" : m->method == EMBER_METHOD_MSE ? "prediction" : "energy",
                        (double)out[r], m->method == EMBER_METHOD_MSE ? "x_mean" : at[r]);
  }
  free(buf);
  return rc;
}

/* ---- save ------------------------------------------------------------------------------ */

static int meta_set(json_t *meta, const char *key, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static int meta_set(json_t *meta, const char *key, const char *fmt, ...) {
  char buf[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  return json_object_set_new(meta, key, json_string(buf));
}

/* "[v0,v1,...]" with %.9g, as a JSON string value of meta. */
static int meta_set_vec(json_t *meta, const char *key, const float *v, int n) {
  size_t cap = (size_t)n * 20 + 3, len = 0;
  char *s = malloc(cap);
  if (!s) return -1;
  s[len++] = '[';
  for (int i = 0; i < n; i++)
    len += (size_t)snprintf(s + len, cap - len, i ? ",%.9g" : "%.9g", (double)v[i]);
  s[len++] = ']';
  s[len] = 0;
  int rc = json_object_set_new(meta, key, json_string(s));
  free(s);
  return rc;
}

/* ["n0","n1",...] as a JSON string value of meta. */
static int meta_set_names(json_t *meta, const char *key, char *const *names, int n) {
  json_t *arr = json_array();
  int bad = !arr;
  for (int i = 0; i < n && !bad; i++) bad = json_array_append_new(arr, json_string(names[i])) != 0;
  char *text = bad ? NULL : json_dumps(arr, JSON_COMPACT);
  if (text) bad = json_object_set_new(meta, key, json_string(text)) != 0;
  free(text);
  json_decref(arr);
  return bad || !text;
}

/* Whether m's value of a MK_ZERO_ABSENT key is one that is written (> 0). */
static int zero_absent_written(const ember_model *m, const meta_key *k) {
  const void *v = meta_cfield(m, k);
  return k->kind == MK_INT ? *(const int *)v > 0 : *(const float *)v > 0.0f;
}

/* Writes key k of m, if m has it. Non-zero on failure. */
static int meta_write(json_t *meta, const ember_model *m, const meta_key *k) {
  const void *v = meta_cfield(m, k);
  if (!key_applies(k->key, m->method)) return 0;
  for (const meta_key *g = meta_keys; k->with && g < meta_keys + NMETA_KEYS; g++)
    if (strcmp(g->key, k->with) == 0 && (g->flags & MK_ZERO_ABSENT) && !zero_absent_written(m, g))
      return 0; /* its group is absent (the group's own key too) */
  switch (k->kind) {
  case MK_FORMAT: return meta_set(meta, k->key, "%s", CKPT_FORMAT);
  case MK_VERSION: return meta_set(meta, k->key, "%d", CKPT_VERSION);
  case MK_METHOD: return meta_set(meta, k->key, "%s", ember_method_name(m->method));
  case MK_ARCH: return meta_set(meta, k->key, "%s", ember_arch_name(m->net.shape.arch));
  case MK_INT: return meta_set(meta, k->key, "%d", *(const int *)v);
  case MK_I64: return meta_set(meta, k->key, "%" PRId64, *(const int64_t *)v);
  case MK_U64: return meta_set(meta, k->key, "%" PRIu64, *(const uint64_t *)v);
  case MK_FLOAT: return meta_set(meta, k->key, "%.9g", (double)*(const float *)v);
  case MK_VEC_X: return meta_set_vec(meta, k->key, meta_vec_of(m, k), m->x_dim);
  case MK_VEC_Y: return meta_set_vec(meta, k->key, meta_vec_of(m, k), m->y_dim);
  case MK_SCHEDULE: return meta_set(meta, k->key, "%s", ember_schedule_name(*(const ember_schedule *)v));
  case MK_SN: return m->sn_w ? meta_set(meta, k->key, "1") : 0;
  case MK_NAMES_X: return meta_set_names(meta, k->key, m->x_names, m->x_dim);
  case MK_NAMES_Y: return meta_set_names(meta, k->key, m->y_names, m->y_dim);
  }
  return -1;
}

/* The JSON header, unpadded (caller frees). Keys in a fixed order: metadata, then tensors
 * in file order, so equal models give byte-identical files. */
static char *header_json(const ember_model *m, ckpt_tensor *t, int nt) {
  json_t *root = json_object(), *meta = json_object();
  char *text = NULL;
  int bad = !root || !meta;
  if (!bad) bad |= json_object_set(root, "__metadata__", meta);
  for (const meta_key *k = meta_keys; k < meta_keys + NMETA_KEYS && !bad; k++)
    bad |= meta_write(meta, m, k);
  if (m->enc && !bad) { /* the encoder's keys (docs/formats.md), read by load_encoder */
    const ember_encoder_shape *es = &m->enc->shape;
    char conv[EMBER_MAX_CONV * 20];
    ember_conv_spec_text(es, conv, sizeof conv);
    bad |= meta_set(meta, "encoder.image", "%dx%dx%d", es->h, es->w, es->c);
    bad |= meta_set(meta, "encoder.conv", "%s", conv);
    bad |= meta_set(meta, "encoder.head", "%s", ember_head_name(es->head));
    bad |= meta_set(meta, "encoder.extra", "%d", es->extra);
  }
  uint64_t off = 0;
  for (int k = 0; k < nt && !bad; k++) {
    t[k].begin = off;
    t[k].end = off += (uint64_t)t[k].numel * sizeof(float);
    json_t *shape = t[k].kh     ? json_pack("[iiii]", t[k].rows, t[k].cols, t[k].kh, t[k].kw)
                    : t[k].cols ? json_pack("[ii]", t[k].rows, t[k].cols)
                                : json_pack("[i]", t[k].rows);
    json_t *e = json_pack("{s:s, s:o, s:[II]}", "dtype", "F32", "shape", shape, "data_offsets",
                          (json_int_t)t[k].begin, (json_int_t)t[k].end);
    bad |= !e || json_object_set_new(root, t[k].name, e);
  }
  if (!bad) text = json_dumps(root, JSON_COMPACT);
  json_decref(meta);
  json_decref(root);
  return text;
}

static int write_all(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len > ((size_t)1 << 30) ? ((size_t)1 << 30) : len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO; /* no progress and no reason: do not spin */
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int ember_model_save(const ember_model *m, const char *path, ember_err *err) {
  ckpt_tensor *t = NULL;
  char *json = NULL, *head = NULL, *tmp = NULL;
  int nt = 0, fd = -1, rc;
  char ebuf[128];
  if (!m || !path || !*path) {
    rc = ember_fail(err, EMBER_EINVAL, "ember_model_save needs a model and a path");
    goto fail;
  }
  if (!m->net.layers || !m->net.params || !m->stats) {
    rc = ember_fail(err, EMBER_EINVAL, "%s: cannot save a model that was not initialised", path);
    goto fail;
  }
  const ember_net_shape *have = &m->net.shape;
  ember_net_shape want =
      ember_model_net_shape(m->method, m->x_dim, m->y_dim, have->arch, have->width, have->depth);
  if ((unsigned)m->method > EMBER_METHOD_LANGEVIN || have->in_x != want.in_x ||
      have->in_y != want.in_y || have->out != want.out || ember_net_shape_check(have, NULL) < 0 ||
      m->net.nlayers != ember_net_shape_layers(have)) {
    rc = ember_fail(err, EMBER_EINVAL,
                    "%s: the network's shape does not match a model of method %s with x_dim %d, y_dim %d",
                    path, ember_method_name(m->method), m->x_dim, m->y_dim);
    goto fail;
  }
  if ((rc = tensor_table(m, &t, &nt, err)) < 0) goto fail;
  if ((rc = check_tensors_finite(t, nt, path, err)) < 0) goto fail;
  if ((rc = check_model_values(m, path, EMBER_EINVAL, err)) < 0) goto fail;
  if ((rc = check_sn(m, path, EMBER_EINVAL, err)) < 0) goto fail;
  if ((rc = check_probe(m, path, err)) < 0) goto fail;

  json = header_json(m, t, nt);
  if (!json) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory building the header", path);
    goto fail;
  }
  /* header: 8-byte length, JSON, spaces up to the next multiple of 8 */
  size_t jlen = strlen(json), hlen = (jlen + 7) / 8 * 8;
  head = malloc(8 + hlen);
  size_t tmpcap = strlen(path) + 64;
  tmp = malloc(tmpcap);
  if (!head || !tmp) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory", path);
    goto fail;
  }
  for (int i = 0; i < 8; i++) head[i] = (char)(uint8_t)((uint64_t)hlen >> (8 * i));
  memcpy(head + 8, json, jlen);
  memset(head + 8 + jlen, ' ', hlen - jlen);

  /* <path>.tmp.<pid>.<n>: O_EXCL so concurrent savers (threads or processes) never share */
  for (int n = 0; n < CKPT_TMP_TRIES && fd < 0; n++) {
    snprintf(tmp, tmpcap, "%s.tmp.%ld.%d", path, (long)getpid(), n);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    int e = errno;
    tmp[0] = 0; /* nothing of ours to remove */
    rc = ember_fail(err, EMBER_EIO, "%s: cannot write: %s", path, errno_text(e, ebuf, sizeof ebuf));
    goto fail;
  }
  int bad = write_all(fd, head, 8 + hlen) < 0;
  for (int k = 0; k < nt && !bad; k++) bad = write_all(fd, t[k].p, t[k].numel * sizeof(float)) < 0;
  if (!bad) bad = fsync(fd) < 0;
  int e = errno;
  if (close(fd) < 0 && !bad) {
    bad = 1;
    e = errno;
  }
  fd = -1;
  if (!bad && rename(tmp, path) < 0) {
    bad = 1;
    e = errno;
  }
  if (bad && (e == ENOSPC || e == EDQUOT || e == EFBIG)) { /* EFBIG: RLIMIT_FSIZE */
    rc = ember_fail(err, EMBER_ENOSPC, "%s: out of space: %s; nothing was written", path,
                    errno_text(e, ebuf, sizeof ebuf));
    goto fail;
  }
  if (bad) {
    rc = ember_fail(err, EMBER_EIO, "%s: cannot write: %s", path, errno_text(e, ebuf, sizeof ebuf));
    goto fail;
  }
  tmp[0] = 0; /* renamed: the file is in place */
  if (ember_fsync_dir_of(path) < 0) {
    e = errno;
    rc = ember_fail(err, EMBER_EIO, "%s: cannot sync its directory: %s", path,
                    errno_text(e, ebuf, sizeof ebuf));
    goto fail;
  }
  rc = 0;
fail:
  if (fd >= 0) close(fd);
  if (tmp && tmp[0]) unlink(tmp);
  free(tmp);
  free(head);
  free(json);
  free(t);
  return rc;
}

/* ---- load: where the bytes come from --------------------------------------------------- */

/* A checkpoint in memory, or a regular file of a size known before it is read. */
typedef struct ckpt_src {
  const char *name; /* for messages */
  const unsigned char *buf; /* the bytes, or NULL: read from fd */
  int fd;
  uint64_t len;
} ckpt_src;

/* n bytes at off, which the caller has checked against len. */
static int src_read(const ckpt_src *s, uint64_t off, void *dst, size_t n, ember_err *err) {
  char ebuf[128];
  unsigned char *d = dst;
  if (s->buf) {
    if (n) memcpy(d, s->buf + off, n);
    return 0;
  }
  while (n > 0) {
    ssize_t r = pread(s->fd, d, n > ((size_t)1 << 30) ? (size_t)1 << 30 : n, (off_t)off);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0)
      return ember_fail(err, EMBER_EIO, "%s: cannot read: %s", s->name,
                        errno_text(errno, ebuf, sizeof ebuf));
    if (r == 0)
      return ember_fail(err, EMBER_EFORMAT,
                        "%s: the file ends at byte %" PRIu64 ", before the %" PRIu64
                        " bytes it had when opened (changed while being read?)",
                        s->name, off, s->len);
    d += r;
    off += (uint64_t)r;
    n -= (size_t)r;
  }
  return 0;
}

/* ---- load: metadata -------------------------------------------------------------------- */

static int meta_get(const json_t *meta, const char *key, const char *name, const char **out,
                    ember_err *err) {
  const json_t *v = json_object_get(meta, key);
  if (!v) return ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" is missing", name, key);
  if (!json_is_string(v))
    return ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" must be a string", name, key);
  *out = json_string_value(v);
  return 0;
}

/* Decimal integer: optional '-', digits, nothing else. */
static int meta_i64(const json_t *meta, const char *key, const char *name, int64_t lo, int64_t hi,
                    int64_t *out, ember_err *err) {
  const char *s = "";
  int rc = meta_get(meta, key, name, &s, err);
  if (rc < 0) return rc;
  const char *d = s + (*s == '-');
  int ok = *d != 0;
  for (const char *q = d; *q && ok; q++) ok = *q >= '0' && *q <= '9';
  if (ok) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    ok = errno == 0 && *end == 0 && v >= lo && v <= hi;
    if (ok) *out = v;
  }
  if (!ok && lo == INT_MIN && hi == INT_MAX)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: metadata key \"%s\" must be a decimal integer, got \"%.40s\"", name, key,
                      s);
  if (!ok)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: metadata key \"%s\" must be a decimal integer >= %" PRId64
                      ", got \"%.40s\"",
                      name, key, lo, s);
  return 0;
}

static int meta_int(const json_t *meta, const char *key, const char *name, int lo, int *out,
                    ember_err *err) {
  int64_t v = 0;
  int rc = meta_i64(meta, key, name, lo, INT_MAX, &v, err);
  if (rc == 0) *out = (int)v;
  return rc;
}

static int meta_u64(const json_t *meta, const char *key, const char *name, uint64_t *out,
                    ember_err *err) {
  const char *s = "";
  int rc = meta_get(meta, key, name, &s, err);
  if (rc < 0) return rc;
  int ok = *s != 0;
  for (const char *q = s; *q && ok; q++) ok = *q >= '0' && *q <= '9';
  if (ok) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    ok = errno == 0 && *end == 0;
    if (ok) *out = v;
  }
  if (!ok)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: metadata key \"%s\" must be an unsigned 64-bit integer, got \"%.40s\"",
                      name, key, s);
  return 0;
}

/* One float at s: what strtof reads, restricted to decimal syntax (digits, sign, point,
 * exponent) unless the value is NaN or infinite, which callers report as such. Subnormals
 * are kept (strtof's ERANGE for them is not an error here). */
static int scan_float(const char *s, const char **end, float *out) {
  char *e;
  if (!*s || *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') return -1;
  float v = strtof(s, &e);
  if (e == s) return -1;
  if (isfinite(v))
    for (const char *q = s; q < e; q++)
      if (!strchr("0123456789+-.eE", *q)) return -1;
  *end = e;
  *out = v;
  return 0;
}

static int meta_float(const json_t *meta, const char *key, const char *name, float *out,
                      ember_err *err) {
  const char *s = "", *end = "";
  int rc = meta_get(meta, key, name, &s, err);
  if (rc < 0) return rc;
  if (scan_float(s, &end, out) < 0 || *end)
    return ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" must be a number, got \"%.40s\"",
                      name, key, s);
  if (!isfinite(*out))
    return ember_fail(err, EMBER_ERANGE, "%s: metadata key \"%s\" is not finite (\"%.40s\")", name,
                      key, s);
  return 0;
}

static int is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* A JSON array of exactly n numbers, as text: "[0.5,1.25]". */
static int meta_vec(const json_t *meta, const char *key, const char *dim, const char *name,
                    float *out, int n, ember_err *err) {
  const char *s = "";
  int rc = meta_get(meta, key, name, &s, err);
  if (rc < 0) return rc;
  const char *p = s;
  size_t count = 0;
  while (is_ws(*p)) p++;
  if (*p++ != '[') goto syntax;
  while (is_ws(*p)) p++;
  if (*p == ']') {
    p++;
  } else {
    for (;;) {
      float v;
      const char *e;
      if (scan_float(p, &e, &v) < 0) goto syntax;
      if (!isfinite(v))
        return ember_fail(err, EMBER_ERANGE, "%s: metadata %s[%zu] is not finite (%.*s)", name, key,
                          count, (int)(e - p < 40 ? e - p : 40), p);
      if (count < (size_t)n) out[count] = v;
      count++;
      p = e;
      while (is_ws(*p)) p++;
      if (*p == ']') {
        p++;
        break;
      }
      if (*p++ != ',') goto syntax;
      while (is_ws(*p)) p++;
    }
  }
  while (is_ws(*p)) p++;
  if (*p) goto syntax;
  if (count != (size_t)n)
    return ember_fail(err, EMBER_EFORMAT, "%s: metadata %s has %zu values, expected %d (%s)", name,
                      key, count, n, dim);
  return 0;
syntax:
  return ember_fail(err, EMBER_EFORMAT,
                    "%s: metadata key \"%s\" must be a JSON array of numbers, got \"%.40s\"", name,
                    key, s);
}

/* A key of another method's in this method's file: refused, not ignored (method_keys). */
static int check_method_keys(const json_t *meta, const char *name, ember_method method,
                             ember_err *err) {
  const char *key;
  const json_t *val;
  json_object_foreach((json_t *)meta, key, val) {
    if (key_applies(key, method)) continue;
    char which[64] = "";
    for (unsigned k = 0, n = 0, bits = key_methods(key); k <= EMBER_METHOD_LANGEVIN; k++)
      if ((bits >> k) & 1u)
        n += (unsigned)snprintf(which + n, sizeof which - n, "%s%s", n ? ", " : "",
                                ember_method_name((ember_method)k));
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: metadata key \"%.60s\" belongs to %s models, not to this %s model",
                      name, key, which, ember_method_name(method));
  }
  return 0;
}

/* spectral_norm: "1", and a data region big enough for the layers' raw weights and vectors
 * too; then m gets its spectral-normalisation state. */
static int read_sn(const json_t *meta, const meta_key *k, const char *name, size_t data_len,
                   ember_model *m, ember_err *err) {
  const char *s = "";
  int rc = meta_get(meta, k->key, name, &s, err);
  if (rc < 0) return rc;
  if (strcmp(s, "1") != 0)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: metadata spectral_norm must be \"1\" if present, got \"%.40s\"", name, s);
  /* its tensors roughly double the weights: the data region must hold them too */
  size_t have = data_len / sizeof(float), need = ember_net_shape_params(&m->net.shape);
  for (int l = 0; l < m->net.nlayers; l++)
    if (ember_sn_layer(&m->net, l))
      need += (size_t)m->net.layers[l].out * (m->net.layers[l].in + 1) + m->net.layers[l].in;
  if (need > have)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: data region is %zu bytes, too small for a spectrally normalised model "
                      "(%zu bytes)", name, data_len, need * sizeof(float));
  return ember_model_sn_enable(m, err);
}

/* A JSON array of exactly n names, as text: "[\"px\",\"py\"]"; replaces *names (the model's
 * defaults). Whether they are distinct from the other list's is checked with the model's values. */
static int meta_names(const json_t *meta, const char *key, const char *dim, const char *name,
                      char ***names, int n, ember_err *err) {
  const char *s = "";
  int rc = meta_get(meta, key, name, &s, err);
  if (rc < 0) return rc;
  json_error_t jerr;
  json_t *arr = json_loads(s, JSON_REJECT_DUPLICATES, &jerr);
  const char **list = NULL;
  char **copy = NULL;
  ember_err e;
  if (!json_is_array(arr)) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" must be a JSON array of strings, got \"%.40s\"",
                    name, key, s);
    goto done;
  }
  if (json_array_size(arr) != (size_t)n) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: metadata %s has %zu names, expected %d (%s)", name, key,
                    json_array_size(arr), n, dim);
    goto done;
  }
  if (!(list = malloc((size_t)n * sizeof *list))) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  for (int i = 0; i < n; i++) {
    const json_t *v = json_array_get(arr, (size_t)i);
    /* jansson's strings may hold NUL; a name may not */
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: metadata %s[%d] is not a string", name, key, i);
      goto done;
    }
    list[i] = json_string_value(v);
    if (ember_name_check(list[i], strlen(list[i]), &e) < 0) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: metadata %s[%d]: %s", name, key, i, e.msg);
      goto done;
    }
  }
  if (!(copy = ember_names_new(list, n, key[0]))) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory", name);
    goto done;
  }
  free(*names);
  *names = copy;
done:
  free(list);
  json_decref(arr);
  return rc;
}

/* Reads key k of meta into its field of m. */
static int meta_read(const json_t *meta, const meta_key *k, const char *name, size_t data_len,
                     ember_model *m, ember_err *err) {
  void *v = meta_field(m, k);
  const char *s = "";
  int64_t version = 0;
  int rc = 0;
  switch (k->kind) {
  case MK_FORMAT:
    if ((rc = meta_get(meta, k->key, name, &s, err)) == 0 && strcmp(s, CKPT_FORMAT) != 0)
      rc = ember_fail(err, EMBER_EFORMAT, "%s: metadata format is \"%.40s\", expected \"%s\"", name,
                      s, CKPT_FORMAT);
    return rc;
  case MK_VERSION:
    if ((rc = meta_i64(meta, k->key, name, k->lo, INT64_MAX, &version, err)) == 0 &&
        version != CKPT_VERSION)
      rc = ember_fail(err, EMBER_ENOTSUP,
                      "%s: format_version %" PRId64 " is newer than this build reads (%d)", name,
                      version, CKPT_VERSION);
    return rc;
  case MK_METHOD:
    if ((rc = meta_get(meta, k->key, name, &s, err)) < 0) return rc;
    if (ember_method_parse(s, (ember_method *)v) < 0)
      return ember_fail(err, EMBER_EFORMAT, "%s: unknown method \"%.40s\"", name, s);
    return check_method_keys(meta, name, m->method, err);
  case MK_ARCH:
    if ((rc = meta_get(meta, k->key, name, &s, err)) == 0 && ember_arch_parse(s, (ember_arch *)v) < 0)
      rc = ember_fail(err, EMBER_EFORMAT, "%s: unknown architecture \"%.40s\"", name, s);
    return rc;
  case MK_INT: return meta_int(meta, k->key, name, k->lo, (int *)v, err);
  case MK_I64: return meta_i64(meta, k->key, name, k->lo, INT64_MAX, (int64_t *)v, err);
  case MK_U64: return meta_u64(meta, k->key, name, (uint64_t *)v, err);
  case MK_FLOAT: return meta_float(meta, k->key, name, (float *)v, err);
  case MK_VEC_X: return meta_vec(meta, k->key, "x_dim", name, *(float **)v, m->x_dim, err);
  case MK_VEC_Y: return meta_vec(meta, k->key, "y_dim", name, *(float **)v, m->y_dim, err);
  case MK_SCHEDULE:
    if ((rc = meta_get(meta, k->key, name, &s, err)) == 0 &&
        ember_schedule_parse(s, (ember_schedule *)v) < 0)
      rc = ember_fail(err, EMBER_EFORMAT, "%s: %s must be ibc or poly, got \"%.40s\"", name, k->key, s);
    return rc;
  case MK_SN: return read_sn(meta, k, name, data_len, m, err);
  case MK_NAMES_X: return meta_names(meta, k->key, "x_dim", name, (char ***)v, m->x_dim, err);
  case MK_NAMES_Y: return meta_names(meta, k->key, "y_dim", name, (char ***)v, m->y_dim, err);
  }
  return ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" has no reader", name, k->key);
}

/* An image model's encoder keys (all four, or none): its shape, checked, and the encoder
 * allocated once its parameters are known to fit the data region. */
static int load_encoder(const json_t *meta, const char *name, size_t data_len, ember_model *m,
                        ember_err *err) {
  static const char *const keys[] = {"encoder.image", "encoder.conv", "encoder.head", "encoder.extra"};
  const char *v[4];
  int have = 0;
  for (int i = 0; i < 4; i++) {
    const json_t *j = json_object_get(meta, keys[i]);
    v[i] = j ? json_string_value(j) : NULL;
    have += v[i] != NULL;
  }
  if (have == 0) return 0;
  if (have < 4)
    return ember_fail(err, EMBER_EFORMAT, "%s: an image model's metadata has all of encoder.image, "
                      "encoder.conv, encoder.head and encoder.extra; this one has %d of them", name, have);
  ember_encoder_shape es;
  memset(&es, 0, sizeof es);
  char tail;
  ember_err e;
  if (sscanf(v[0], "%dx%dx%d%c", &es.h, &es.w, &es.c, &tail) != 3)
    return ember_fail(err, EMBER_EFORMAT, "%s: metadata encoder.image must be HxWxC, got \"%.40s\"", name, v[0]);
  if (ember_conv_spec_parse(v[1], &es, &e) < 0 || ember_head_parse(v[2], &es.head) < 0 ||
      sscanf(v[3], "%d%c", &es.extra, &tail) != 1 || ember_encoder_shape_check(&es, &e) < 0)
    return ember_fail(err, EMBER_EFORMAT, "%s: the encoder metadata (conv \"%.40s\", head \"%.20s\", extra "
                      "\"%.20s\") is not an encoder ember builds", name, v[1], v[2], v[3]);
  size_t np = ember_encoder_shape_params(&es), have_floats = data_len / sizeof(float);
  if (np > have_floats || np + m->net.nparams > have_floats)
    return ember_fail(err, EMBER_EFORMAT, "%s: data region is %zu bytes, too small for the encoder's %zu "
                      "parameters and the network's %zu", name, data_len, np, m->net.nparams);
  if (ember_model_set_encoder(m, &es, &e) < 0)
    return ember_fail(err, EMBER_EFORMAT, "%s: %s", name, e.msg);
  return 0;
}

/* Reads __metadata__ and allocates the model it describes into m. data_len bounds the
 * network's size before anything is allocated. */
static int load_metadata(const json_t *root, const char *name, size_t data_len, ember_model *m,
                         ember_err *err) {
  int rc;
  const json_t *meta = json_object_get(root, "__metadata__");
  if (!meta)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: header has no \"__metadata__\"; not an ember "
                      "checkpoint",
                      name);
  if (!json_is_object(meta))
    return ember_fail(err, EMBER_EFORMAT, "%s: \"__metadata__\" must be an object", name);
  const char *key;
  const json_t *val;
  json_object_foreach((json_t *)meta, key, val) {
    if (!json_is_string(val))
      return ember_fail(err, EMBER_EFORMAT, "%s: metadata key \"%s\" must be a string", name, key);
  }
  /* the shape keys, into a scratch model that nothing is allocated for */
  ember_model hdr;
  memset(&hdr, 0, sizeof hdr);
  for (const meta_key *k = meta_keys; k < meta_keys + NMETA_KEYS; k++)
    if ((k->flags & MK_SHAPE) && (rc = meta_read(meta, k, name, data_len, &hdr, err)) < 0) return rc;
  const ember_method method = hdr.method;
  const ember_arch arch = hdr.net.shape.arch;
  const int x_dim = hdr.x_dim, y_dim = hdr.y_dim, width = hdr.net.shape.width,
            depth = hdr.net.shape.depth;

  /* Never allocate more parameters than the data region can hold: the header alone must
   * not be able to make us allocate gigabytes. Methods other than these two are refused
   * by ember_model_init before it allocates. */
  ember_net_shape shape = ember_model_net_shape(method, x_dim, y_dim, arch, width, depth);
  if ((unsigned)method <= EMBER_METHOD_LANGEVIN && ember_net_shape_check(&shape, NULL) == 0 &&
      y_dim >= 1 && y_dim <= EMBER_MAX_Y_DIM) {
    size_t np = ember_model_params(method, x_dim, y_dim, arch, width, depth);
    if (np > data_len / sizeof(float))
      return ember_fail(err, EMBER_EFORMAT,
                        "%s: data region is %zu bytes, but a model of method %s (%s, width %d, depth %d) "
                        "has %zu parameters (%zu bytes)",
                        name, data_len, ember_method_name(method), ember_arch_name(arch), width,
                        depth, np, np * sizeof(float));
  }
  ember_err e;
  rc = ember_model_init(m, method, x_dim, y_dim, arch, width, depth, &e);
  if (rc < 0)
    return ember_fail(err, rc == EMBER_EINVAL ? EMBER_EFORMAT : rc, "%s: %s", name, e.msg);

  /* the values, into the model; an optional group is read when its first key is there */
  for (const meta_key *k = meta_keys; k < meta_keys + NMETA_KEYS; k++) {
    if ((k->flags & MK_SHAPE) || !key_applies(k->key, method)) continue;
    if (k->with && !json_object_get(meta, k->with)) continue;
    if ((rc = meta_read(meta, k, name, data_len, m, err)) < 0) return rc;
  }
  if (!(m->train_ema >= 0.0f && m->train_ema < 1.0f))
    return ember_fail(err, EMBER_EFORMAT, "%s: metadata train.ema must be in [0, 1), got %g", name,
                      (double)m->train_ema);
  if ((rc = load_encoder(meta, name, data_len, m, err)) < 0) return rc;
  return check_model_values(m, name, EMBER_EFORMAT, err);
}

/* ---- load: tensors --------------------------------------------------------------------- */

/* A JSON value that is an integer >= 0 (offsets, dimensions). */
static int json_count(const json_t *v, uint64_t *out) {
  if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static void shape_text(const json_t *shape, char *buf, size_t len) {
  size_t n = 0;
  n += (size_t)snprintf(buf, len, "[");
  for (size_t i = 0; i < json_array_size(shape) && n < len; i++)
    n += (size_t)snprintf(buf + n, len - n, i ? ", %" JSON_INTEGER_FORMAT : "%" JSON_INTEGER_FORMAT,
                          json_integer_value(json_array_get(shape, i)));
  if (n < len) snprintf(buf + n, len - n, "]");
}

static int tensor_entry(const char *key, const json_t *v, ckpt_tensor *t, uint64_t data_len,
                        const char *name, ember_err *err) {
  const char *k;
  const json_t *f;
  if (!json_is_object(v))
    return ember_fail(err, EMBER_EFORMAT, "%s: tensor \"%s\" must be an object", name, key);
  json_object_foreach((json_t *)v, k, f) {
    if (strcmp(k, "dtype") != 0 && strcmp(k, "shape") != 0 && strcmp(k, "data_offsets") != 0)
      return ember_fail(err, EMBER_EFORMAT, "%s: tensor \"%s\" has an unknown field \"%.40s\"",
                        name, key, k);
  }
  const json_t *dtype = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
               *offs = json_object_get(v, "data_offsets");
  if (!json_is_string(dtype))
    return ember_fail(err, EMBER_EFORMAT, "%s: tensor \"%s\" has no dtype string", name, key);
  if (strcmp(json_string_value(dtype), "F32") != 0)
    return ember_fail(err, EMBER_EFORMAT, "%s: tensor \"%s\" has dtype %.20s, expected F32", name,
                      key, json_string_value(dtype));
  size_t rank = json_array_size(shape);
  int ok = json_is_array(shape);
  for (size_t i = 0; i < rank && ok; i++) {
    uint64_t d;
    ok = json_count(json_array_get(shape, i), &d) == 0;
  }
  if (!ok)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: tensor \"%s\" shape must be an array of non-negative integers", name,
                      key);
  size_t want_rank = t->kh ? 4 : t->cols ? 2 : 1;
  ok = rank == want_rank && json_integer_value(json_array_get(shape, 0)) == t->rows &&
       (rank < 2 || json_integer_value(json_array_get(shape, 1)) == t->cols) &&
       (rank < 4 || (json_integer_value(json_array_get(shape, 2)) == t->kh &&
                     json_integer_value(json_array_get(shape, 3)) == t->kw));
  if (!ok) {
    char found[96], want[48];
    shape_text(shape, found, sizeof found);
    if (t->kh)
      snprintf(want, sizeof want, "[%d, %d, %d, %d]", t->rows, t->cols, t->kh, t->kw);
    else if (t->cols)
      snprintf(want, sizeof want, "[%d, %d]", t->rows, t->cols);
    else
      snprintf(want, sizeof want, "[%d]", t->rows);
    return ember_fail(err, EMBER_EFORMAT, "%s: tensor \"%s\" has shape %s, expected %s", name, key,
                      found, want);
  }
  uint64_t b, e;
  if (!json_is_array(offs) || json_array_size(offs) != 2 ||
      json_count(json_array_get(offs, 0), &b) < 0 || json_count(json_array_get(offs, 1), &e) < 0)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: tensor \"%s\" data_offsets must be [begin, end], two non-negative "
                      "integers",
                      name, key);
  if (b > e)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: tensor \"%s\" data_offsets [%" PRIu64 ", %" PRIu64
                      "] end before they "
                      "begin",
                      name, key, b, e);
  if (e > data_len)
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: tensor \"%s\" data_offsets end at %" PRIu64 ", beyond the %" PRIu64
                      "-byte data region",
                      name, key, e, data_len);
  /* numel <= data_len / 4 here (the data region was checked against the parameter count) */
  if (e - b != (uint64_t)t->numel * sizeof(float))
    return ember_fail(err, EMBER_EFORMAT,
                      "%s: tensor \"%s\" data_offsets span %" PRIu64 " bytes, its shape needs %zu",
                      name, key, e - b, t->numel * sizeof(float));
  t->begin = b;
  t->end = e;
  t->seen = 1;
  return 0;
}

static int by_begin(const void *a, const void *b) {
  const ckpt_tensor *x = *(const ckpt_tensor *const *)a, *y = *(const ckpt_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int load_tensors(const json_t *root, const ckpt_src *src, uint64_t data_at,
                        size_t data_len, ember_model *m, ember_err *err) {
  const char *name = src->name;
  ckpt_tensor *t = NULL, **order = NULL;
  int nt = 0, rc;
  const char *key;
  const json_t *v;
  if ((rc = tensor_table(m, &t, &nt, err)) < 0) goto fail;
  json_object_foreach((json_t *)root, key, v) {
    if (strcmp(key, "__metadata__") == 0) continue;
    int k = 0;
    while (k < nt && strcmp(t[k].name, key) != 0) k++;
    if (k == nt) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s: unknown tensor \"%.60s\" (not part of a %s net of depth %d)", name, key,
                      ember_arch_name(m->net.shape.arch), m->net.shape.depth);
      goto fail;
    }
    if ((rc = tensor_entry(key, v, &t[k], data_len, name, err)) < 0) goto fail;
  }
  for (int k = 0; k < nt; k++)
    if (!t[k].seen) {
      rc = ember_fail(err, EMBER_EFORMAT, "%s: missing tensor \"%s\"", name, t[k].name);
      goto fail;
    }
  /* the data region is exactly the tensors, back to back in some order */
  order = malloc((size_t)nt * sizeof *order);
  if (!order) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory", name);
    goto fail;
  }
  for (int k = 0; k < nt; k++) order[k] = &t[k];
  qsort(order, (size_t)nt, sizeof *order, by_begin);
  uint64_t at = 0;
  for (int k = 0; k < nt; k++) {
    if (order[k]->begin > at) {
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s: data region bytes [%" PRIu64 ", %" PRIu64 ") belong to no tensor", name,
                      at, order[k]->begin);
      goto fail;
    }
    if (order[k]->begin < at) {
      rc =
          ember_fail(err, EMBER_EFORMAT, "%s: tensors \"%s\" and \"%s\" overlap in the data region",
                     name, order[k - 1]->name, order[k]->name);
      goto fail;
    }
    at = order[k]->end;
  }
  if (at != data_len) {
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s: data region bytes [%" PRIu64 ", %zu) belong to no tensor", name, at,
                    data_len);
    goto fail;
  }
  /* only now, with every offset checked against the header and the file's size, is the data
   * region read: straight into the model, tensor by tensor */
  for (int k = 0; k < nt; k++)
    if ((rc = src_read(src, data_at + t[k].begin, t[k].p, t[k].numel * sizeof(float), err)) < 0)
      goto fail;
  rc = check_tensors_finite(t, nt, name, err);
  if (rc == 0) rc = check_sn(m, name, EMBER_EFORMAT, err);
  if (rc == 0) rc = check_probe(m, name, err);
fail:
  free(order);
  free(t);
  return rc;
}

/* ---- load ------------------------------------------------------------------------------ */

/* The 8-byte length, then the header, each checked before anything after it is read: a file
 * can say it holds gigabytes, and a regular file's size is known before it is read, so a
 * header that cannot fit is refused after reading 8 bytes, and the data region is read only
 * once the header has been checked against it in full (load_tensors). */
static int load_src(const ckpt_src *src, ember_model *m, ember_err *err) {
  ember_model tmp;
  json_t *root = NULL;
  char *head = NULL;
  const char *name = src->name;
  unsigned char len8[8];
  int rc;
  memset(&tmp, 0, sizeof tmp);
  if (src->len < 8) {
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s: file is %" PRIu64 " bytes, too short for the 8-byte header length", name,
                    src->len);
    goto fail;
  }
  if ((rc = src_read(src, 0, len8, 8, err)) < 0) goto fail;
  uint64_t hlen = 0;
  for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
  if (hlen > CKPT_HEADER_MAX) { /* a CSV, a zip or any other file lands here */
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s: not a safetensors checkpoint (header length %" PRIu64
                    " exceeds the %" PRIu64 "-byte limit)",
                    name, hlen, CKPT_HEADER_MAX);
    goto fail;
  }
  if (hlen > 0 && hlen <= src->len - 8) {
    char first;
    if ((rc = src_read(src, 8, &first, 1, err)) < 0) goto fail;
    if (first != '{') { /* say what it is not before the details */
      rc = ember_fail(err, EMBER_EFORMAT,
                      "%s: not a safetensors checkpoint (the header is not a JSON object)", name);
      goto fail;
    }
  }
  if (hlen > src->len - 8) {
    rc = ember_fail(err, EMBER_EFORMAT,
                    "%s: header length %" PRIu64 " exceeds file size (%" PRIu64
                    " bytes after the length)",
                    name, hlen, src->len - 8);
    goto fail;
  }
  if (!(head = malloc(hlen ? (size_t)hlen : 1))) {
    rc = ember_fail(err, EMBER_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header", name,
                    hlen);
    goto fail;
  }
  if ((rc = src_read(src, 8, head, (size_t)hlen, err)) < 0) goto fail;
  json_error_t jerr;
  root = json_loadb(head, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                    name, jerr.text, jerr.line, jerr.column);
    goto fail;
  }
  if (!json_is_object(root)) {
    rc = ember_fail(err, EMBER_EFORMAT, "%s: header is not a JSON object", name);
    goto fail;
  }
  size_t data_len = (size_t)(src->len - 8 - hlen);
  if ((rc = load_metadata(root, name, data_len, &tmp, err)) < 0) goto fail;
  if ((rc = load_tensors(root, src, 8 + hlen, data_len, &tmp, err)) < 0) goto fail;
  *m = tmp;
  memset(&tmp, 0, sizeof tmp);
  rc = 0;
fail:
  json_decref(root);
  free(head);
  ember_model_free(&tmp);
  return rc;
}

int ember_model_load_mem(const void *buf, size_t len, const char *name, ember_model *m,
                         ember_err *err) {
  ckpt_src src = {name ? name : "<memory>", buf, -1, buf ? len : 0};
  if (m) memset(m, 0, sizeof *m);
  if (!m) return ember_fail(err, EMBER_EINVAL, "%s: ember_model_load_mem needs a model", src.name);
  return load_src(&src, m, err);
}

int ember_model_load(const char *path, ember_model *m, ember_err *err) {
  char ebuf[128];
  int rc, fd = -1;
  struct stat st;
  if (m) memset(m, 0, sizeof *m);
  if (!path || !m) {
    rc = ember_fail(err, EMBER_EINVAL, "ember_model_load needs a path and a model");
    goto fail;
  }
  /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
  fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0 || fstat(fd, &st) < 0) {
    rc = ember_fail(err, EMBER_EIO, "%s: cannot read: %s", path,
                    errno_text(errno, ebuf, sizeof ebuf));
    goto fail;
  }
  /* a device (/dev/zero), pipe or directory has no size to check a header against */
  if (!S_ISREG(st.st_mode)) {
    rc = ember_fail(err, EMBER_EIO, "%s: cannot read: not a regular file (a checkpoint is a file)",
                    path);
    goto fail;
  }
  if ((uint64_t)st.st_size > CKPT_FILE_MAX) {
    rc = ember_fail(err, EMBER_ERANGE,
                    "%s: file is %lld bytes, more than the %" PRIu64 " GiB limit", path,
                    (long long)st.st_size, CKPT_FILE_MAX >> 30);
    goto fail;
  }
  ckpt_src src = {path, NULL, fd, (uint64_t)st.st_size};
  rc = load_src(&src, m, err);
fail:
  if (fd >= 0) close(fd);
  return rc;
}
