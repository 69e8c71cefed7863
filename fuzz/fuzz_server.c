/* fuzz_server.c - the server behind the request fuzz targets (fuzz_server.h).
 *
 * The models are built with ember_model_init (small nets, zero weights): request decoding
 * reads their shapes, bounds and default options, never their weights. The data directory
 * holds one CSV file, a directory and a symbolic link out of it, so that Train's dataset
 * paths reach every answer (found, not a regular file, outside --data-dir, not found).
 *
 * emberd's main.c is not linked (libFuzzer has the main): its three functions that the server
 * files call are stubbed below and never run while requests are only decoded.
 */
#include "fuzz_server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

uint64_t srv_now_ns(void) { return 0; }
void server_begin_shutdown(server *s, const char *why) { (void)s, (void)why; }
void server_maybe_finish(server *s) { (void)s; }

void fuzz_check(int ok, const char *what, const char *detail) {
  if (ok) return;
  fprintf(stderr, "fuzz: %s (%s)\n", what, detail ? detail : "");
  abort();
}

void fuzz_check_status(const srv_status *st) {
  fuzz_check(st->code > GRPC_STATUS_OK && st->code <= GRPC_STATUS_UNAUTHENTICATED,
             "a refusal has an error code", st->msg);
  fuzz_check(st->msg[0] != 0, "a refusal says why", NULL);
}

static server srv;
static int made;
static char root[64], models_dir[96], data_dir[96];

static void cleanup(void) {
  char p[160];
  snprintf(p, sizeof p, "%s/d.csv", data_dir), unlink(p);
  snprintf(p, sizeof p, "%s/sub", data_dir), rmdir(p);
  snprintf(p, sizeof p, "%s/out", data_dir), unlink(p);
  rmdir(data_dir);
  rmdir(models_dir);
  rmdir(root);
}

static void make_dirs(void) {
  snprintf(root, sizeof root, "/tmp/ember-fuzz-%ld", (long)getpid());
  snprintf(models_dir, sizeof models_dir, "%s/models", root);
  snprintf(data_dir, sizeof data_dir, "%s/data", root);
  char p[160];
  fuzz_check(mkdir(root, 0700) == 0 && mkdir(models_dir, 0700) == 0 && mkdir(data_dir, 0700) == 0,
             "cannot make the temporary directories", root);
  atexit(cleanup);
  snprintf(p, sizeof p, "%s/d.csv", data_dir);
  FILE *f = fopen(p, "w");
  fuzz_check(f != NULL, "cannot write", p);
  fputs("x,y\n0.1,0.2\n0.3,0.4\n", f);
  fclose(f);
  snprintf(p, sizeof p, "%s/sub", data_dir);
  fuzz_check(mkdir(p, 0700) == 0, "cannot make", p);
  snprintf(p, sizeof p, "%s/out", data_dir);
  fuzz_check(symlink("/etc", p) == 0, "cannot link", p);
}

static model_entry *add_entry(const char *name) {
  model_entry *e = calloc(1, sizeof *e);
  fuzz_check(e != NULL, "out of memory", NULL);
  snprintf(e->name, sizeof e->name, "%s", name);
  e->next = srv.models;
  srv.models = e;
  return e;
}

static void add_version(model_entry *e, int64_t version, ember_method method, int x_dim, int y_dim) {
  model_version *v = calloc(1, sizeof *v);
  e->versions = realloc(e->versions, (size_t)(e->nversions + 1) * sizeof *e->versions);
  fuzz_check(v && e->versions, "out of memory", NULL);
  ember_err err;
  fuzz_check(ember_model_init(&v->model, method, x_dim, y_dim, EMBER_ARCH_MLP, 8, 2, &err) == 0,
             "cannot build a model", err.msg);
  v->entry = e;
  v->version = version;
  v->refs = 1; /* the registry's */
  e->versions[e->nversions++] = v;
  e->default_version = version; /* versions come in ascending order: the latest is the default */
  e->policy_ok = 1;
}

/* An image model: 6x5x3 images, one 2-channel 3x3 convolution, soft-argmax (4 features), one
 * extra observation: x_dim 5. */
static void add_image_version(model_entry *e, int64_t version) {
  add_version(e, version, EMBER_METHOD_DFO, 5, 2);
  ember_encoder_shape s = {.h = 6, .w = 5, .c = 3, .nconv = 1, .conv = {{2, 3, 1, 0}},
                           .head = EMBER_HEAD_SOFTARGMAX, .extra = 1};
  ember_err err;
  fuzz_check(ember_model_set_encoder(&e->versions[e->nversions - 1]->model, &s, &err) == 0,
             "cannot give the model an encoder", err.msg);
}

server *fuzz_server(void) {
  if (made) return &srv;
  static char arg0[] = "emberd", arg1[] = "--models", arg3[] = "--data-dir";
  make_dirs();
  char *argv[] = {arg0, arg1, models_dir, arg3, data_dir, NULL};
  fuzz_check(srv_config_parse(&srv.cfg, 5, argv) == 0, "emberd's defaults", NULL);
  srv_log_init(LOG_ERROR);
  made = 1;
  srv.serving = 1;
  model_entry *e = add_entry("dfo");
  add_version(e, 1, EMBER_METHOD_DFO, 2, 2);
  add_version(e, 3, EMBER_METHOD_DFO, 2, 2);
  add_version(add_entry("ardfo"), 1, EMBER_METHOD_ARDFO, 3, 3);
  add_version(add_entry("langevin"), 2, EMBER_METHOD_LANGEVIN, 1, 1);
  add_version(add_entry("mse"), 1, EMBER_METHOD_MSE, 4, 2);
  add_image_version(add_entry("image"), 1);
  e = add_entry("broken");
  e->errors = calloc(1, sizeof *e->errors);
  fuzz_check(e->errors != NULL, "out of memory", NULL);
  e->errors[0] = (load_error){.version = 1, .path = strdup("broken/1.safetensors"), .message = strdup("not a checkpoint")};
  e->nerrors = 1;
  return &srv;
}

void fuzz_call_init(srv_call *c, srv_rpc rpc) {
  memset(c, 0, sizeof *c);
  c->kind = TAG_CALL;
  c->rpc = rpc;
  c->srv = fuzz_server();
}

void fuzz_call_free(srv_call *c) {
  if (c->version) version_unref(c->version);
  free(c->x);
  free(c->img);
  memset(c, 0, sizeof *c);
}
