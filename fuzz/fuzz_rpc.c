/* fuzz_rpc.c - libFuzzer target: ember.v1.Ember unary requests, decoded and validated by
 * rpc_ember_decode against fuzz_server()'s registry and emberd's default limits.
 *
 * Input: one byte that picks the method (Predict, Sample, GetModel, ListModels: byte % 4),
 * then the request message. Beyond "no crash, no leak, no undefined behaviour" it asserts the
 * decoder's contract: a refusal is an error status with a message; a Predict or Sample it accepts has a referenced version, 1..--max-rows rows of the
 * model's x_dim (a copy of x), options the library accepts and compute within
 * --max-request-gflop; a GetModel it accepts names a listed model.
 */
#include <stdint.h>

#include "ember/infer.h"
#include "fuzz_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const srv_rpc methods[4] = {RPC_PREDICT, RPC_SAMPLE, RPC_GET_MODEL, RPC_LIST_MODELS};

static void check_accepted(const srv_call *c) {
  const srv_config *cfg = &c->srv->cfg;
  if (c->rpc == RPC_GET_MODEL) {
    fuzz_check(c->entry && registry_listed(c->entry), "GetModel describes a listed model", NULL);
    return;
  }
  if (c->rpc == RPC_LIST_MODELS) return;
  const model_version *v = c->version;
  fuzz_check(v && v->refs >= 2, "an accepted request holds its version", NULL);
  fuzz_check(c->entry == v->entry, "c->entry is the version's", NULL);
  const ember_model *m = &v->model;
  fuzz_check(!c->img == !m->enc, "images exactly for an image model", NULL);
  fuzz_check((c->x || (c->img && m->enc->shape.extra == 0)) && c->rows >= 1 && c->rows <= cfg->max_rows,
             "1..max_rows rows", NULL);
  ember_err err;
  fuzz_check(ember_infer_opts_check(&c->opts, ember_optimizer_method(m->method, c->opts.optimizer) == EMBER_METHOD_LANGEVIN, &err) == 0,
             "accepted options pass the library's check", err.msg);
  if (!c->img)
    fuzz_check(ember_model_check_x(m, c->x, c->rows, &err) == 0, "accepted x passes the model's check", err.msg);
  double flops = c->rpc == RPC_SAMPLE ? ember_infer_modes_flops(m, &c->opts, &c->modes) : ember_infer_flops(m, &c->opts);
  fuzz_check(c->rows * flops / 1e9 <= cfg->max_request_gflop, "within --max-request-gflop", NULL);
  fuzz_check(m->method == EMBER_METHOD_MSE || c->opts.samples <= cfg->max_samples, "within --max-samples", NULL);
  if (c->rpc == RPC_SAMPLE) {
    fuzz_check(m->method != EMBER_METHOD_MSE, "no Sample on an explicit model", NULL);
    fuzz_check(ember_modes_opts_check(&c->modes, &err) == 0, "accepted modes pass the check", err.msg);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  srv_call c;
  fuzz_call_init(&c, methods[data[0] % 4]);
  srv_status st = {GRPC_STATUS_OK, ""};
  if (rpc_ember_decode(&c, data + 1, (long)(size - 1), &st) < 0) {
    fuzz_check_status(&st);
  } else {
    check_accepted(&c);
  }
  fuzz_call_free(&c);
  return 0;
}
