/* remote_infer.c - `ember --server HOST:PORT predict|sample|info|models`: the local verbs, asked
 * of an emberd server.
 *
 * predict and sample take the local options (infer_cli.h) with --model naming a model on the
 * server, plus --version, --deadline-ms and --chunk-rows, and print through the same CSV
 * printers as local mode. Each run first asks GetModel for the model's dimensions (the input
 * is read and checked against its x_dim, with the local reader's messages) and pins the
 * version it describes, so a model reloaded mid-run cannot answer half the rows. The rows
 * then go in requests of --chunk-rows rows, each with row_offset = its first row's index:
 * row i draws from random stream (seed, i) however the rows are split, so the answers equal
 * one big request's and local `ember predict`'s with the same seed.
 *
 * Only options given on the command line are sent; the rest stay unset, which the protocol
 * reads as "the model's default". Given values are merged onto the defaults GetModel reports
 * and checked as local mode checks them (the library's checks, and Langevin options refused
 * for other models), so a bad value gets the same message as locally. The options travel as
 * wire/wire.h maps them, the mapping emberd reads them with. For an explicit (mse)
 * model no inference option is sent: local mode ignores them all. Langevin chain options go
 * in InferenceOptions.langevin; those where 0 is a setting (--gamma, --noise-scale,
 * --delta-max, --again-steps, --refine) travel in fields with presence, so 0 can be sent.
 * Two local values have no protocol spelling: --sigma 0 (0 means "default" on the wire;
 * refused) and --polish-lr (no field; refused unless it is the default). --min-mass 0 ("keep
 * every mode") is sent as -1, the protocol's "keep all".
 *
 * The calls themselves, and each Predict or Sample exchange (the request's rows, the answer's
 * shape and version checked and copied out), are libember_client's (ember__client_predict,
 * ember__client_sample in client/lib/client.c): what is here is the CLI's side, options from
 * flags, chunking and printing.
 *
 * Results are printed only when every request has succeeded: a failure prints one line on
 * stderr, nothing on stdout, and exits 1 (2 for usage errors).
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "ember/net.h"
#include "infer_cli.h"
#include "remote_client.h"
#include "wire.h"

#define REMOTE_MODEL_HELP "model name on the server"
#define REMOTE_THREADS_HELP "ignored with --server (the server has its own workers)"

typedef struct remote_opts {
  int64_t version;
  int deadline_ms;
  int chunk_rows;
} remote_opts;

#define REMOTE_SPECS(r)                                                                          \
  {"version", OPT_I64, &(r).version, NULL, "model version (0 = the latest loaded)", 0, 0},        \
  {"deadline-ms", OPT_INT, &(r).deadline_ms, NULL, "deadline of each request, milliseconds", 0, 0}, \
  {"chunk-rows", OPT_INT, &(r).chunk_rows, NULL, "input rows per request, at most (fewer when samples x iterations (ardfo: x y_dim) is large, so one request stays near 2M candidate evaluations)", 0, 0},  \
  REMOTE_SECURITY_SPECS(remote_security_opts())

static void remote_opts_init(remote_opts *r) {
  r->version = 0;
  r->deadline_ms = remote_default_deadline_ms();
  r->chunk_rows = 256;
}

/* What a predict or sample run holds: the connection, the model's description, the input. */
typedef struct session {
  const char *verb;
  int grpc_up;
  remote_client *client;
  Ember__V1__ModelInfo *info;
  ember_dataset ds;
  ember_infer_opts opts;           /* the options the server will use (its defaults + given) */
  Ember__V1__LangevinOptions lang; /* the wire options' langevin, when one is given */
} session;

static void session_close(session *s) {
  if (s->info) ember__v1__model_info__free_unpacked(s->info, NULL);
  ember_dataset_free(&s->ds);
  if (s->grpc_up) {
    remote_close(s->client);
    remote_shutdown();
  }
  s->client = NULL;
  s->info = NULL;
  s->grpc_up = 0;
}

static int check_remote_opts(const char *verb, const remote_opts *r) {
  if (r->version < 0) {
    fprintf(stderr, "ember %s: --version must be >= 0 (0 = the latest), got %lld\n", verb, (long long)r->version);
    return 2;
  }
  if (r->deadline_ms < 1) {
    fprintf(stderr, "ember %s: --deadline-ms must be >= 1, got %d\n", verb, r->deadline_ms);
    return 2;
  }
  if (r->chunk_rows < 1) {
    fprintf(stderr, "ember %s: --chunk-rows must be >= 1, got %d\n", verb, r->chunk_rows);
    return 2;
  }
  return 0;
}

/* Connects and asks GetModel; the caller closes the session whatever this returns. */
static int session_connect(session *s, const char *server, const char *model, const remote_opts *r) {
  remote_status st;
  remote_init();
  s->grpc_up = 1;
  if (remote_open(&s->client, server, r->deadline_ms, &st) != GRPC_STATUS_OK ||
      remote_get_model(s->client, model, r->version, &s->info, &st) != GRPC_STATUS_OK) {
    remote_report(s->verb, &st);
    return 1;
  }
  const Ember__V1__ModelInfo *m = s->info;
  if (m->version == 0) { /* no version to describe: none loaded, or none the default (serving.conf) */
    if (strcmp(s->verb, "info") == 0) return 0;
    fprintf(stderr, "ember %s: %s has no version the server serves by default", s->verb, model);
    if (m->n_load_errors) fprintf(stderr, " (%s)", m->load_errors[m->n_load_errors - 1]->message);
    fprintf(stderr, "%s\n", m->n_versions ? "; name one with --version N" : "");
    return 1;
  }
  if (m->x_dim < 1 || m->x_dim > EMBER_MAX_COLS || m->y_dim < 1 || m->y_dim > EMBER_MAX_COLS) {
    fprintf(stderr, "ember %s: the server describes %s with x_dim %u and y_dim %u\n", s->verb,
            model, m->x_dim, m->y_dim);
    return 1;
  }
  return 0;
}

/* The model's inference defaults as GetModel reports them (library defaults for what an older
 * server leaves out). */
static void info_defaults(const Ember__V1__ModelInfo *info, ember_infer_opts *o) {
  ember_infer_opts d = EMBER_INFER_DEFAULTS;
  *o = d;
  ember_wire_infer_merge(info->defaults, o);
}

/* Checks the given options as local mode would, against the model GetModel described, and
 * sets up the wire options: only the given ones, and the seed, which has no "default" value.
 * s->opts gets the options the server will run with. 0, or 2 after printing the problem. */
static int wire_options(session *s, const infer_cli *c, const opt_spec *specs, int nspecs,
                        Ember__V1__InferenceOptions *w) {
  const char *verb = s->verb, *method = s->info->method;
  const int mse = strcmp(method, "mse") == 0;
  ember_method mth = EMBER_METHOD_DFO;
  if (ember_method_parse(method, &mth) < 0 && args_given(specs, nspecs, "optimizer")) {
    fprintf(stderr, "ember %s: --optimizer: the server describes %s with method '%s', unknown here\n",
            verb, c->model, method);
    return 1;
  }
  int langevin = strcmp(method, "langevin") == 0, rc = infer_cli_optimizer(c, specs, nspecs, mth, verb, &langevin);
  if (rc) return rc;
  unsigned given = 0;
  ember_infer_opts *o = &s->opts;
  info_defaults(s->info, o);
  for (size_t i = 0; i < INFER_CLI_NFIELDS && !mse; i++) { /* mse: local mode ignores them all */
    const infer_cli_field *f = &infer_cli_fields[i];
    if (!args_given(specs, nspecs, f->name)) continue;
    if (f->langevin && !langevin) return infer_cli_refuse_langevin(f, verb, c->model, method);
    memcpy((char *)o + f->off, (const char *)&c->o + f->off, f->size);
    given |= ember_wire_infer_field_at(f->off);
  }
  ember_err err;
  if (!mse && ember_infer_opts_check(o, langevin, &err) < 0) {
    fprintf(stderr, "ember %s: %s\n", verb, err.msg);
    return 2;
  }
  if ((given & EMBER_WIRE_SIGMA) && o->sigma == 0.0f) {
    fprintf(stderr, "ember %s: --sigma 0 cannot be sent with --server (0 means the model's default "
                    "in ember.v1); use a tiny positive value\n", verb);
    return 2;
  }
  /* Every other value that passed the check can be sent: 0 is either invalid where 0 means "the
   * model's default" (samples, iters, shrink, temperature, chain-steps, step-init) or unused
   * (step-final under poly, refine-lr and again-step with their steps off), and fields where 0
   * is a setting have presence. */
  ember_wire_infer_to_msg(o, given, w, &s->lang);
  w->seed = c->seed;
  return 0;
}

/* The images an image model takes (GetModel's encoder), NULL for a vector model. */
static const Ember__V1__ImageShape *image_shape(const session *s) {
  return s->info->encoder ? s->info->encoder->shape : NULL;
}

/* The input's images against the model's shape and extras, with local mode's words
 * (ember_model_encode_dataset). 0, or 1 after printing the mismatch. */
static int check_images(const session *s, const char *input) {
  const Ember__V1__ImageShape *im = image_shape(s);
  const ember_dataset *ds = &s->ds;
  const unsigned extra = s->info->encoder->extra;
  if (!ds->img)
    fprintf(stderr, "ember %s: %s: the model takes %ux%ux%u images (x as uint8 (n, %u, %u, %u)); the data's x is "
                    "%d float columns\n", s->verb, input, im->height, im->width, im->channels, im->height, im->width,
            im->channels, ds->x_dim);
  else if ((unsigned)ds->img_h != im->height || (unsigned)ds->img_w != im->width || (unsigned)ds->img_c != im->channels)
    fprintf(stderr, "ember %s: %s: the model takes %ux%ux%u images; the data's are %dx%dx%d\n", s->verb, input,
            im->height, im->width, im->channels, ds->img_h, ds->img_w, ds->img_c);
  else if ((unsigned)ds->x_dim != extra)
    fprintf(stderr, "ember %s: %s: the model takes %u extra observations (x_extra) per image; the data has %d\n",
            s->verb, input, extra, ds->x_dim);
  else
    return 0;
  return 1;
}

/* Rows first..first+rows-1 of the input's images and their extras. */
static ember_client_images images_at(const session *s, int first) {
  const Ember__V1__ImageShape *im = image_shape(s);
  const int extra = (int)s->info->encoder->extra;
  const size_t per = (size_t)im->height * im->width * im->channels;
  ember_client_images r = {s->ds.img + (size_t)first * per, (int)im->height, (int)im->width, (int)im->channels,
                           extra > 0 ? s->ds.x + (size_t)first * extra : NULL, extra};
  return r;
}

/* Parses, checks, connects and reads the input: everything predict and sample share. */
static int session_open(session *s, const char *server, infer_cli *c, const remote_opts *r,
                        const opt_spec *specs, int nspecs, Ember__V1__InferenceOptions *w) {
  if (!c->model || !c->input) {
    fprintf(stderr, "ember %s: --model NAME and --input are required (with --server, --model names a "
                    "model on the server; see ember --server %s %s --help)\n", s->verb, server, s->verb);
    return 2;
  }
  int rc = check_remote_opts(s->verb, r);
  if (rc == 0 && infer_cli_schedule(c, s->verb) < 0) rc = 2;
  if (rc) return rc;
  rc = session_connect(s, server, c->model, r);
  if (rc == 0) rc = wire_options(s, c, specs, nspecs, w);
  if (rc) return rc;
  const Ember__V1__ImageShape *im = image_shape(s);
  /* an image model reads images (and their extras), from an .npz or PNG files, as local mode does */
  if (cli_read_input_shape(s->verb, c->input, (int)s->info->x_dim, im ? (int)im->channels : 0,
                           im ? (int)s->info->encoder->extra : 0, &s->ds) < 0)
    return 1;
  if (im) return check_images(s, c->input);
  return 0;
}

/* Rows per request: --chunk-rows, but no more than keeps a request near 2^21 candidate
 * evaluations (a Langevin chain step is a forward and a backward pass: two; an ardfo round
 * runs each of its y_dim prefix nets: y_dim), so requests finish well inside a deadline and a
 * server's per-request limit; for an image model also no more images than REMOTE_IMAGE_BYTES
 * hold, a quarter of emberd's default message limit (--max-message, 16 MiB). */
#define REMOTE_IMAGE_BYTES (4.0 * 1024 * 1024)
static int work_chunk(const remote_opts *r, const session *s) {
  const ember_infer_opts *o = &s->opts;
  double evals;
  ember_method mth = EMBER_METHOD_DFO;
  ember_method_parse(s->info->method, &mth); /* (an unknown method estimates as dfo) */
  if (strcmp(s->info->method, "mse") == 0) evals = 1;
  else if (ember_optimizer_method(mth, o->optimizer) == EMBER_METHOD_LANGEVIN)
    evals = 2.0 * o->samples * (o->langevin.steps + 1 + (o->again_steps ? o->again_steps + 1 : 0));
  else evals = (double)o->samples * o->iters * remote_model_nets(s->info);
  if (strcmp(s->info->method, "mse") != 0 && o->refine_steps > 0)
    evals += 2.0 * (o->samples < EMBER_REFINE_TOP ? o->samples : EMBER_REFINE_TOP) * (o->refine_steps + 1);
  double fit = (double)(1 << 21) / evals;
  int rows = fit < 1.0 ? 1 : (fit > r->chunk_rows ? r->chunk_rows : (int)fit);
  const Ember__V1__ImageShape *im = image_shape(s);
  if (im) { /* and no more than REMOTE_IMAGE_BYTES of images */
    double per = (double)im->height * im->width * im->channels, most = REMOTE_IMAGE_BYTES / (per > 1 ? per : 1);
    if (rows > most) rows = (int)most;
  }
  return rows < 1 ? 1 : rows;
}

/* The model's y names as GetModel reports them (NULL: an older server's, which has none). */
static char *const *y_names(const session *s) {
  return s->info->n_y_names == s->info->y_dim ? s->info->y_names : NULL;
}

/* Rows x (n, x_dim) through Predict in requests of `chunk` rows; row i draws from stream
 * row_offset + i. y (n, y_dim) and e (n; may be NULL) get the answers (zeros in e for an
 * explicit model, whose answers carry no energy, unless need_energy), z (n; may be NULL) each
 * row's x_max_abs_z (*have_z cleared when the server sends none). x NULL: the session's input
 * images and their extras (an image model). 0, or 1 after saying what failed. */
static int predict_rows(session *s, const char *model, Ember__V1__InferenceOptions *w, const float *x,
                        int n, uint64_t row_offset, int chunk, float *y, float *e, int need_energy,
                        float *z, int *have_z) {
  const int xd = (int)s->info->x_dim;
  Ember__V1__PredictRequest req = EMBER__V1__PREDICT_REQUEST__INIT;
  req.model = (char *)model;
  req.version = s->info->version;
  req.options = w;
  for (int off = 0; off < n; off += chunk) {
    int rows = n - off < chunk ? n - off : chunk;
    ember__predict_out out = {.y_dim = (int)s->info->y_dim, .y = y + (size_t)off * s->info->y_dim,
                              .energy = e ? e + off : NULL, .z = z ? z + off : NULL,
                              .need_energy = need_energy, .have_z = 1};
    remote_status st;
    const ember_client_images im = x ? (ember_client_images){0} : images_at(s, off);
    if ((x ? ember__client_predict(s->client, &req, x + (size_t)off * xd, rows, xd, row_offset + (uint64_t)off, 0,
                                   &out, &st)
           : ember__client_predict_images(s->client, &req, &im, rows, row_offset + (uint64_t)off, 0, &out, &st))
        != GRPC_STATUS_OK) {
      remote_report(s->verb, &st);
      return 1;
    }
    if (!out.have_z) *have_z = 0;
  }
  return 0;
}

int remote_cmd_predict(const char *server, int argc, char **argv) {
  infer_cli c;
  infer_cli_init(&c);
  remote_opts r;
  remote_opts_init(&r);
  int with_energy = 0;
  opt_spec specs[] = {INFER_SPECS(c, "NAME", REMOTE_MODEL_HELP, REMOTE_THREADS_HELP),
                      {"energy", OPT_FLAG, &with_energy, NULL, "add an energy column", 0, 0},
                      REMOTE_SPECS(r)};
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("predict", "--model NAME --input FILE|- [options]   (after --server HOST:PORT)",
                      specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  session s = {.verb = "predict"};
  Ember__V1__InferenceOptions w;
  float *y = NULL, *e = NULL, *z = NULL;
  rc = session_open(&s, server, &c, &r, specs, nspecs, &w);
  if (rc) goto done;
  const int n = s.ds.n, d = (int)s.info->y_dim;
  r.chunk_rows = work_chunk(&r, &s);
  if (with_energy && strcmp(s.info->method, "mse") == 0) {
    fprintf(stderr, "ember predict: --energy: %s is an explicit (mse) model, which has no energy\n", c.model);
    rc = 2;
    goto done;
  }
  y = malloc((size_t)n * d * sizeof(float));
  e = calloc((size_t)n, sizeof(float));
  z = calloc((size_t)n, sizeof(float));
  if (!y || !e || !z) {
    fprintf(stderr, "ember predict: out of memory for %d rows\n", n);
    rc = 1;
    goto done;
  }
  int have_z = 1;
  rc = predict_rows(&s, c.model, &w, image_shape(&s) ? NULL : s.ds.x, n, 0, r.chunk_rows, y, e, with_energy, z,
                    &have_z);
  if (rc == 0) {
    if (have_z) cli_note_far_x("predict", z, n);
    cli_print_predict(y, e, n, d, with_energy, y_names(&s));
    rc = cli_finish_stdout("predict");
  }
done:
  free(y);
  free(e);
  free(z);
  session_close(&s);
  return rc;
}

/* Fills the sample request's mode options from those given; 0 if they can be sent. */
static int wire_modes(const ember_modes_opts *mo, const opt_spec *specs, int nspecs,
                      Ember__V1__SampleRequest *req) {
  ember_err err;
  if (ember_modes_opts_check(mo, &err) < 0) {
    fprintf(stderr, "ember sample: %s\n", err.msg);
    return 2;
  }
  ember_modes_opts d = EMBER_MODES_DEFAULTS;
  if (args_given(specs, nspecs, "polish-lr") && mo->polish_lr != d.polish_lr) {
    fprintf(stderr, "ember sample: --polish-lr cannot be sent with --server (ember.v1 has no field "
                    "for it; the server polishes with its default %g)\n", (double)d.polish_lr);
    return 2;
  }
  /* only the given ones (--min-mass 0, "keep every mode", goes as the protocol's -1) */
  unsigned given = (args_given(specs, nspecs, "modes") ? EMBER_WIRE_MODES_K : 0) |
                   (args_given(specs, nspecs, "radius") ? EMBER_WIRE_MODES_RADIUS : 0) |
                   (args_given(specs, nspecs, "min-mass") ? EMBER_WIRE_MODES_MIN_MASS : 0) |
                   (args_given(specs, nspecs, "polish") ? EMBER_WIRE_MODES_POLISH : 0);
  ember_wire_modes_to_msg(mo, given, req);
  return 0;
}

int remote_cmd_sample(const char *server, int argc, char **argv) {
  infer_cli c;
  infer_cli_init(&c);
  remote_opts r;
  remote_opts_init(&r);
  ember_modes_opts mo = EMBER_MODES_DEFAULTS;
  opt_spec specs[] = {INFER_SPECS(c, "NAME", REMOTE_MODEL_HELP, REMOTE_THREADS_HELP), MODES_SPECS(mo),
                      REMOTE_SPECS(r)};
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("sample", "--model NAME --input FILE|- --modes K [options]   (after --server HOST:PORT)",
                      specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  Ember__V1__SampleRequest proto = EMBER__V1__SAMPLE_REQUEST__INIT;
  rc = wire_modes(&mo, specs, nspecs, &proto);
  if (rc) return rc;
  session s = {.verb = "sample"};
  Ember__V1__InferenceOptions w;
  float *my = NULL, *me = NULL, *mw = NULL, *z = NULL;
  int *count = NULL, have_z = 1;
  rc = session_open(&s, server, &c, &r, specs, nspecs, &w);
  if (rc) goto done;
  const int n = s.ds.n, xd = (int)s.info->x_dim, d = (int)s.info->y_dim, k = mo.k;
  r.chunk_rows = work_chunk(&r, &s);
  my = calloc((size_t)n * k * d, sizeof(float));
  me = calloc((size_t)n * k, sizeof(float));
  mw = calloc((size_t)n * k, sizeof(float));
  count = calloc((size_t)n, sizeof(int));
  z = calloc((size_t)n, sizeof(float));
  if (!my || !me || !mw || !count || !z) {
    fprintf(stderr, "ember sample: out of memory for %d rows x %d modes\n", n, k);
    rc = 1;
    goto done;
  }
  proto.model = (char *)c.model;
  proto.version = s.info->version;
  proto.options = &w;
  for (int off = 0; off < n && rc == 0; off += r.chunk_rows) {
    int rows = n - off < r.chunk_rows ? n - off : r.chunk_rows;
    size_t slot = (size_t)off * k;
    ember__sample_out out = {.k = k, .y_dim = d, .y = my + slot * d, .energy = me + slot, .weight = mw + slot,
                             .z = z + off, .count = count + off, .have_z = 1};
    remote_status st;
    const ember_client_images im = image_shape(&s) ? images_at(&s, off) : (ember_client_images){0};
    if ((image_shape(&s) ? ember__client_sample_images(s.client, &proto, &im, rows, (uint64_t)off, 0, &out, &st)
                         : ember__client_sample(s.client, &proto, s.ds.x + (size_t)off * xd, rows, xd, (uint64_t)off,
                                                0, &out, &st)) != GRPC_STATUS_OK) {
      remote_report("sample", &st);
      rc = 1;
    }
    if (!out.have_z) have_z = 0;
  }
  if (rc == 0) {
    if (have_z) cli_note_far_x("sample", z, n);
    cli_print_modes(my, me, mw, count, n, k, d, y_names(&s));
    rc = cli_finish_stdout("sample");
  }
done:
  free(my);
  free(me);
  free(mw);
  free(count);
  free(z);
  session_close(&s);
  return rc;
}

/* ---- a policy for ember eval particle ---------------------------------------------------- */

struct remote_policy {
  session s;
  Ember__V1__InferenceOptions w;
  const char *model;
  int chunk;
};

int remote_policy_open(remote_policy **out, const char *verb, const char *server, infer_cli *c,
                       const opt_spec *specs, int nspecs, int64_t version, int deadline_ms,
                       remote_policy_desc *desc) {
  *out = NULL;
  remote_opts r = {.version = version, .deadline_ms = deadline_ms, .chunk_rows = 256};
  int rc = check_remote_opts(verb, &r);
  if (rc == 0 && infer_cli_schedule(c, verb) < 0) rc = 2;
  if (rc) return rc;
  remote_policy *p = calloc(1, sizeof *p);
  if (!p) {
    fprintf(stderr, "ember %s: out of memory\n", verb);
    return 1;
  }
  p->s.verb = verb;
  p->model = c->model;
  rc = session_connect(&p->s, server, c->model, &r);
  if (rc == 0) rc = wire_options(&p->s, c, specs, nspecs, &p->w);
  if (rc) {
    remote_policy_close(p);
    return rc;
  }
  p->chunk = work_chunk(&r, &p->s);
  desc->x_dim = (int)p->s.info->x_dim;
  desc->y_dim = (int)p->s.info->y_dim;
  desc->version = p->s.info->version;
  snprintf(desc->method, sizeof desc->method, "%s", p->s.info->method ? p->s.info->method : "?");
  *out = p;
  return 0;
}

int remote_policy_act(remote_policy *p, const float *x, int n, uint64_t row_offset, float *y) {
  int have_z = 1;
  return predict_rows(&p->s, p->model, &p->w, x, n, row_offset, p->chunk, y, NULL, 0, NULL, &have_z);
}

void remote_policy_close(remote_policy *p) {
  if (!p) return;
  session_close(&p->s);
  free(p);
}

/* ---- info and models -------------------------------------------------------------------- */

int remote_model_shape(const Ember__V1__ModelInfo *m, ember_net_shape *shape) {
  ember_arch a;
  if (ember_arch_parse(m->arch, &a) < 0) return -1;
  ember_method method = EMBER_METHOD_DFO; /* a method this build does not know: an energy net */
  (void)ember_method_parse(m->method, &method);
  ember_net_shape s = ember_model_net_shape(method, (int)m->x_dim, (int)m->y_dim, a, (int)m->width,
                                            (int)m->depth);
  if (ember_net_shape_check(&s, NULL) < 0) return -1;
  *shape = s;
  return 0;
}

int remote_model_nets(const Ember__V1__ModelInfo *m) {
  return strcmp(m->method, "ardfo") == 0 && m->y_dim > 1 ? (int)m->y_dim : 1;
}

int remote_model_cost(const Ember__V1__ModelInfo *m, size_t *params, double *round_macs) {
  ember_net_shape s;
  if (remote_model_shape(m, &s) < 0) return -1;
  const int nets = remote_model_nets(m);
  size_t p = 0;
  double macs = 0.0;
  for (int j = 1; j <= nets; j++) {
    ember_net_shape sj = s;
    if (nets > 1) sj.in_y = j; /* ardfo: the net of y-prefix length j */
    p += ember_net_shape_params(&sj);
    macs += ember_net_row_macs(&sj);
  }
  if (params) *params = p;
  if (round_macs) *round_macs = macs;
  return 0;
}

static void join_versions(const Ember__V1__ModelInfo *m, char *buf, size_t len) {
  size_t used = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < m->n_versions; i++) {
    int w = snprintf(buf + used, len - used, "%s%lld", i ? "," : "", (long long)m->versions[i]);
    if (w < 0 || (size_t)w >= len - used) {
      if (len > 4) strcpy(buf + len - 4, "...");
      return;
    }
    used += (size_t)w;
  }
  if (m->n_versions == 0) snprintf(buf, len, "-");
}

static void format_time(int64_t unix_time, char *buf, size_t len) {
  time_t t = (time_t)unix_time;
  struct tm tm;
  if (unix_time <= 0 || !gmtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm))
    snprintf(buf, len, "unknown time");
}

static void print_load_errors(const Ember__V1__ModelInfo *m, const char *indent, int with_name) {
  for (size_t i = 0; i < m->n_load_errors; i++) {
    const Ember__V1__LoadError *le = m->load_errors[i];
    char when[64];
    format_time(le->unix_time, when, sizeof when);
    printf("%s%s%sversion %lld (%s, %s): %s\n", indent, with_name ? m->name : "", with_name ? " " : "",
           (long long)le->version, le->path, when, le->message);
  }
}

static void print_info(const Ember__V1__ModelInfo *m) {
  char versions[256];
  join_versions(m, versions, sizeof versions);
  printf("%-18s %s\n", "name", m->name);
  if (m->version == 0) { /* nothing to describe but the load errors */
    printf("%-18s none served by default (loaded: %s)\n", "version", m->n_versions ? versions : "none");
    if (m->pinned_version) printf("%-18s version %lld (serving.conf)\n", "pinned", (long long)m->pinned_version);
    printf("%-18s %zu\n", "load errors", m->n_load_errors);
    print_load_errors(m, "  ", 0);
    return;
  }
  printf("%-18s %lld (loaded: %s)\n", "version", (long long)m->version, versions);
  if (m->pinned_version)
    printf("%-18s %lld (pinned: version %lld, serving.conf)\n", "default version", (long long)m->default_version,
           (long long)m->pinned_version);
  else
    printf("%-18s %lld (the latest the serving policy accepts)\n", "default version", (long long)m->default_version);
  printf("%-18s %s\n", "method", m->method);
  printf("%-18s %u\n%-18s %u\n", "x_dim", m->x_dim, "y_dim", m->y_dim);
  if (m->n_x_names == m->x_dim && m->n_y_names == m->y_dim) { /* an older server sends none */
    cli_print_names("x_names", m->x_names, (int)m->n_x_names);
    cli_print_names("y_names", m->y_names, (int)m->n_y_names);
  }
  size_t params;
  const int nets = remote_model_nets(m);
  if (remote_model_cost(m, &params, NULL) < 0)
    printf("%-18s %s %ux%u\n", "network", m->arch, m->width, m->depth);
  else if (nets > 1) /* ardfo: the count covers every prefix net */
    printf("%-18s %s %ux%u (%zu parameters in %d nets, one per y-prefix)\n", "network", m->arch,
           m->width, m->depth, params, nets);
  else
    printf("%-18s %s %ux%u (%zu parameters)\n", "network", m->arch, m->width, m->depth, params);
  const Ember__V1__ImageEncoder *enc = m->encoder;
  if (enc && enc->shape) /* an image model: requests send these images; x is their features + extras */
    printf("%-18s %ux%ux%u images, conv %s, head %s: %u features + %u extra\n", "encoder", enc->shape->height,
           enc->shape->width, enc->shape->channels, enc->conv, enc->head, enc->features, enc->extra);
  cli_print_vec("y_lo", m->y_lo, (int)m->n_y_lo);
  cli_print_vec("y_hi", m->y_hi, (int)m->n_y_hi);
  const Ember__V1__InferenceOptions *o = m->defaults;
  const Ember__V1__LangevinOptions *l = o ? o->langevin : NULL;
  if (strcmp(m->method, "mse") == 0) {
    printf("%-18s one forward pass (explicit model)\n", "inference");
  } else if (l) {
    printf("%-18s %u chains of %u steps, %s schedule, step %g -> %g, gamma %g, noise %g, "
           "change clip %g\n", "inference", o->samples, l->chain_steps,
           l->schedule == EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_POLY ? "poly" : "ibc",
           (double)l->step_init, (double)l->step_final, (double)l->gamma, (double)l->noise_scale,
           (double)l->delta_max);
    if (l->again_steps > 0)
      printf("%-18s %u steps at step %g\n", "second chain", l->again_steps, (double)l->again_step);
  } else if (o) {
    printf("%-18s samples %u, iters %u, sigma %g, shrink %g, temperature %g\n", "inference",
           o->samples, o->iterations, (double)o->sigma, (double)o->shrink, (double)o->temperature);
  }
  if (o && o->refine_steps > 0 && strcmp(m->method, "mse") != 0)
    printf("%-18s %u gradient steps from the best candidates, step %g\n", "refine", o->refine_steps,
           (double)o->refine_lr);
  if (m->n_load_errors == 0) {
    printf("%-18s none\n", "load errors");
  } else {
    printf("%-18s %zu\n", "load errors", m->n_load_errors);
    print_load_errors(m, "  ", 0);
  }
  const Ember__V1__ModelStats *s = m->stats;
  if (!s) return;
  printf("%-18s %llu (ok %llu", "requests", (unsigned long long)s->requests, (unsigned long long)s->ok);
  for (size_t i = 0; i < s->n_failures; i++)
    printf(", %s %llu", s->failures[i]->key, (unsigned long long)s->failures[i]->value);
  printf(")\n");
  printf("%-18s %llu (%llu requests, %llu rows; per batch %.2f requests, %.2f rows)\n", "batches",
         (unsigned long long)s->batches, (unsigned long long)s->batched_requests,
         (unsigned long long)s->batched_rows, s->avg_batch_requests, s->avg_batch_rows);
  printf("%-18s queue %.3f ms per request, compute %.3f ms per batch\n", "average time",
         s->avg_queue_ms, s->avg_compute_ms);
}

int remote_cmd_info(const char *server, int argc, char **argv) {
  const char *model = NULL;
  remote_opts r;
  remote_opts_init(&r);
  opt_spec specs[] = {
      {"model", OPT_STR, &model, "NAME", REMOTE_MODEL_HELP, 0, 0},
      {"version", OPT_I64, &r.version, NULL, "model version (0 = the default: the latest loaded, or the pinned one)", 0, 0},
      {"deadline-ms", OPT_INT, &r.deadline_ms, NULL, "deadline of the request, milliseconds", 0, 0},
      REMOTE_SECURITY_SPECS(remote_security_opts()),
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("info", "--model NAME [--version N]   (after --server HOST:PORT)", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!model) {
    fprintf(stderr, "ember info: --model NAME is required (with --server, a model name on the server)\n");
    return 2;
  }
  rc = check_remote_opts("info", &r);
  if (rc) return rc;
  session s = {.verb = "info"};
  rc = session_connect(&s, server, model, &r);
  if (rc == 0) {
    print_info(s.info);
    rc = cli_finish_stdout("info");
  }
  session_close(&s);
  return rc;
}

/* ---- models: a table ------------------------------------------------------------------- */

enum { COL_NAME, COL_VERSIONS, COL_METHOD, COL_NETWORK, COL_XDIM, COL_YDIM, COL_REQUESTS,
       COL_BATCH, COL_ERRORS, NCOLS };
#define CELL 96

static const char *const col_titles[NCOLS] = {"NAME", "VERSIONS", "METHOD", "NETWORK", "X_DIM",
                                              "Y_DIM", "REQUESTS", "AVG_BATCH", "LOAD_ERRORS"};

static void model_row(const Ember__V1__ModelInfo *m, char (*cells)[CELL]) {
  const Ember__V1__ModelStats *s = m->stats;
  snprintf(cells[COL_NAME], CELL, "%s", m->name);
  join_versions(m, cells[COL_VERSIONS], CELL);
  snprintf(cells[COL_METHOD], CELL, "%s", m->method[0] ? m->method : "-");
  if (m->arch[0]) snprintf(cells[COL_NETWORK], CELL, "%s %ux%u", m->arch, m->width, m->depth);
  else snprintf(cells[COL_NETWORK], CELL, "-");
  snprintf(cells[COL_XDIM], CELL, "%u", m->x_dim);
  snprintf(cells[COL_YDIM], CELL, "%u", m->y_dim);
  snprintf(cells[COL_REQUESTS], CELL, "%llu", s ? (unsigned long long)s->requests : 0ULL);
  snprintf(cells[COL_BATCH], CELL, "%.2f", s ? s->avg_batch_requests : 0.0);
  snprintf(cells[COL_ERRORS], CELL, "%zu", m->n_load_errors);
}

static void print_row(char (*cells)[CELL], const int *width) {
  for (int j = 0; j < NCOLS; j++) {
    if (j == NCOLS - 1) printf("%s\n", cells[j]);
    else printf("%-*s  ", width[j], cells[j]);
  }
}

int remote_cmd_models(const char *server, int argc, char **argv) {
  remote_opts r;
  remote_opts_init(&r);
  opt_spec specs[] = {
      {"deadline-ms", OPT_INT, &r.deadline_ms, NULL, "deadline of the request, milliseconds", 0, 0},
      REMOTE_SECURITY_SPECS(remote_security_opts()),
  };
  int rc = args_parse("models", "[options]   (after --server HOST:PORT)", specs,
                      (int)(sizeof specs / sizeof *specs), argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  rc = check_remote_opts("models", &r);
  if (rc) return rc;
  remote_client *client = NULL;
  remote_status st;
  Ember__V1__ListModelsResponse *list = NULL;
  char (*cells)[NCOLS][CELL] = NULL;
  remote_init();
  if (remote_open(&client, server, r.deadline_ms, &st) != GRPC_STATUS_OK ||
      remote_list_models(client, &list, &st) != GRPC_STATUS_OK) {
    remote_report("models", &st);
    rc = 1;
    goto done;
  }
  size_t n = list->n_models;
  cells = calloc(n + 1, sizeof *cells);
  if (!cells) {
    fprintf(stderr, "ember models: out of memory for %zu models\n", n);
    rc = 1;
    goto done;
  }
  int width[NCOLS];
  for (int j = 0; j < NCOLS; j++) {
    snprintf(cells[0][j], CELL, "%s", col_titles[j]);
    width[j] = (int)strlen(cells[0][j]);
  }
  for (size_t i = 0; i < n; i++) {
    model_row(list->models[i], cells[i + 1]);
    for (int j = 0; j < NCOLS; j++)
      if ((int)strlen(cells[i + 1][j]) > width[j]) width[j] = (int)strlen(cells[i + 1][j]);
  }
  for (size_t i = 0; i <= n; i++) print_row(cells[i], width);
  size_t nerr = 0;
  for (size_t i = 0; i < n; i++) nerr += list->models[i]->n_load_errors;
  if (nerr) {
    printf("\nload errors (versions not served):\n");
    for (size_t i = 0; i < n; i++) print_load_errors(list->models[i], "  ", 1);
  }
  rc = cli_finish_stdout("models");
done:
  free(cells);
  if (list) ember__v1__list_models_response__free_unpacked(list, NULL);
  remote_close(client);
  remote_shutdown();
  return rc;
}

/* `ember --server HOST:PORT health [--service NAME]`: one grpc.health.v1 Check, for scripts and
 * container health checks. Prints the status; exits 0 only for SERVING and 1 for anything
 * else (never 2, which Docker reserves), including an unreachable server. */
int remote_cmd_health(const char *server, int argc, char **argv) {
  remote_opts r;
  remote_opts_init(&r);
  r.deadline_ms = 3000;
  const char *service = "";
  opt_spec specs[] = {
      {"service", OPT_STR, &service, "NAME", "service to ask about (\"\" = the whole server, or ember.v1.Ember)", 0, 1},
      {"deadline-ms", OPT_INT, &r.deadline_ms, NULL, "deadline of the check, milliseconds", 0, 0},
      REMOTE_SECURITY_SPECS(remote_security_opts()),
  };
  int rc = args_parse("health", "[options]   (after --server HOST:PORT)", specs,
                      (int)(sizeof specs / sizeof *specs), argc, argv);
  if (rc != 0) return rc < 0 ? 1 : 0;
  if (check_remote_opts("health", &r)) return 1;
  remote_client *client = NULL;
  remote_status st;
  Grpc__Health__V1__HealthCheckRequest req = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
  req.service = (char *)service;
  ProtobufCMessage *resp = NULL;
  remote_init();
  if (remote_open(&client, server, r.deadline_ms, &st) != GRPC_STATUS_OK ||
      remote_call(client, EMBER__HEALTH_CHECK, &req.base, &resp, &st) != GRPC_STATUS_OK) {
    remote_report("health", &st);
    rc = 1;
  } else {
    static const char *const names[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
    int status = (int)((Grpc__Health__V1__HealthCheckResponse *)resp)->status;
    printf("%s\n", status >= 0 && status < 4 ? names[status] : "UNKNOWN");
    rc = status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING ? 0 : 1;
    if (cli_finish_stdout("health")) rc = 1;
  }
  if (resp) protobuf_c_message_free_unpacked(resp, NULL);
  remote_close(client);
  remote_shutdown();
  return rc;
}
