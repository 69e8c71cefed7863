/* test_wire.c - the options <-> ember.v1 mapping (wire/) that emberd and the CLI share: options
 * survive a trip through the encoded message, 0 and unset fields mean "the default" while
 * oneof fields carry 0 as a value, and bad requests are refused before conversion with the
 * messages emberd sends as INVALID_ARGUMENT. */
#include "testutil.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/byte_buffer_reader.h>

#include "wire.h"

/* err's message must be exactly s */
#define assert_err(rc, err, s)                                                                 \
  do {                                                                                         \
    assert_int_equal((rc), EMBER_EINVAL);                                                      \
    assert_string_equal((err).msg, (s));                                                       \
  } while (0)

/* msg encoded and decoded again, as the other end of a call sees it (caller frees) */
static ProtobufCMessage *wire_trip(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  uint8_t *buf = malloc(len ? len : 1);
  assert_non_null(buf);
  protobuf_c_message_pack(msg, buf);
  ProtobufCMessage *back = protobuf_c_message_unpack(msg->descriptor, NULL, len, buf);
  free(buf);
  assert_non_null(back);
  return back;
}

/* Inference options unlike EMBER_INFER_DEFAULTS in every field, with 0 where 0 is a setting. */
static ember_infer_opts odd_infer(void) {
  ember_infer_opts o = EMBER_INFER_DEFAULTS;
  o.samples = 777;
  o.iters = 5;
  o.sigma = 0.125f;
  o.shrink = 0.75f;
  o.temperature = 2.5f;
  o.refine_steps = 0; /* the default too, but sent: "off" */
  o.refine_lr = 0.25f;
  o.langevin.steps = 33;
  o.langevin.schedule = EMBER_SCHEDULE_POLY;
  o.langevin.step_init = 0.5f;
  o.langevin.step_final = 0.001f;
  o.langevin.gamma = 0.0f;       /* constant step */
  o.langevin.noise_scale = 0.0f; /* no noise */
  o.langevin.delta_max = 0.0f;   /* no clip */
  o.again_steps = 7;
  o.again_step = 0.002f;
  o.optimizer = EMBER_OPTIMIZER_LANGEVIN; /* applies to every energy model */
  return o;
}

static void test_infer_round_trip(void **state) {
  (void)state;
  static const ember_method methods[] = {EMBER_METHOD_DFO, EMBER_METHOD_ARDFO, EMBER_METHOD_MSE,
                                         EMBER_METHOD_LANGEVIN};
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    const ember_method method = methods[i];
    ember_infer_opts o = odd_infer(), base = EMBER_INFER_DEFAULTS;
    base.refine_steps = 3; /* so that a sent 0 is seen to override it */
    ember_infer_opts back = base;
    Ember__V1__InferenceOptions w;
    Ember__V1__LangevinOptions lw;
    const unsigned fields =
        ember_wire_infer_fields(method) | (method != EMBER_METHOD_MSE ? EMBER_WIRE_OPTIMIZER : 0u);
    ember_wire_infer_to_msg(&o, fields, &w, &lw);
    w.seed = 99;
    Ember__V1__InferenceOptions *got = (Ember__V1__InferenceOptions *)wire_trip(&w.base);
    assert_int_equal(got->seed, 99);
    assert_int_equal(got->langevin != NULL, method == EMBER_METHOD_LANGEVIN);
    ember_err err;
    assert_int_equal(ember_wire_infer_from_msg(got, "m", method, &back, &err), 0);
    /* every field the method has came across; the others kept the base's */
    for (size_t off = 0; off < sizeof o; off += 4) {
      unsigned bit = ember_wire_infer_field_at(off);
      assert_true(bit != 0); /* every field of ember_infer_opts has its bit */
      const ember_infer_opts *want = (fields & bit) ? &o : &base;
      if (memcmp((const char *)&back + off, (const char *)want + off, 4) != 0)
        fail_msg("method %s: the field at offset %zu (bit 0x%x) did not come across",
                 ember_method_name(method), off, bit);
    }
    protobuf_c_message_free_unpacked(&got->base, NULL);
  }
}

static void test_infer_fields(void **state) {
  (void)state;
  assert_int_equal(ember_wire_infer_field_at(offsetof(ember_infer_opts, samples)), EMBER_WIRE_SAMPLES);
  assert_int_equal(ember_wire_infer_field_at(offsetof(ember_infer_opts, langevin.gamma)), EMBER_WIRE_GAMMA);
  assert_int_equal(ember_wire_infer_field_at(offsetof(ember_infer_opts, again_step)), EMBER_WIRE_AGAIN_STEP);
  assert_int_equal(ember_wire_infer_field_at(offsetof(ember_infer_opts, optimizer)), EMBER_WIRE_OPTIMIZER);
  assert_int_equal(ember_wire_infer_field_at(1), 0);
  assert_int_equal(ember_wire_infer_fields(EMBER_METHOD_LANGEVIN), 0xffffu);
  assert_int_equal(ember_wire_infer_fields(EMBER_METHOD_DFO), 0xffffu & ~EMBER_WIRE_LANGEVIN_FIELDS);
  assert_int_equal(ember_wire_infer_fields(EMBER_METHOD_MSE),
                   EMBER_WIRE_SAMPLES | EMBER_WIRE_ITERS | EMBER_WIRE_SIGMA | EMBER_WIRE_SHRINK |
                       EMBER_WIRE_TEMPERATURE);
}

/* Only the given fields are sent; everything else is "the model's default" at the other end. */
static void test_infer_defaults(void **state) {
  (void)state;
  ember_infer_opts o = odd_infer(), model = EMBER_INFER_DEFAULTS;
  model.samples = 4096;
  model.again_steps = 2;
  ember_infer_opts r = model;
  Ember__V1__InferenceOptions w;
  Ember__V1__LangevinOptions lw;
  ember_wire_infer_to_msg(&o, EMBER_WIRE_ITERS | EMBER_WIRE_AGAIN_STEPS, &w, &lw);
  assert_int_equal(w.samples, 0);
  assert_true(w.sigma == 0.0f && w.temperature == 0.0f && w.refine_lr == 0.0f);
  assert_int_equal(w.optional_refine_steps_case, 0);
  assert_non_null(w.langevin);
  assert_int_equal(w.langevin->chain_steps, 0);
  assert_int_equal(w.langevin->schedule, 0);
  assert_int_equal(w.langevin->optional_gamma_case, 0);
  ember_err err;
  assert_int_equal(ember_wire_infer_from_msg(&w, "m", EMBER_METHOD_LANGEVIN, &r, &err), 0);
  ember_infer_opts want = model;
  want.iters = o.iters;
  want.again_steps = o.again_steps;
  assert_memory_equal(&r, &want, sizeof r);

  /* no options, or an empty message, or an empty langevin message: the model's, for any model */
  r = model;
  assert_int_equal(ember_wire_infer_from_msg(NULL, "m", EMBER_METHOD_DFO, &r, &err), 0);
  Ember__V1__InferenceOptions empty = EMBER__V1__INFERENCE_OPTIONS__INIT;
  Ember__V1__LangevinOptions lempty = EMBER__V1__LANGEVIN_OPTIONS__INIT;
  empty.langevin = &lempty;
  empty.seed = 5; /* the seed is the caller's: not an option of ember_infer_opts */
  assert_int_equal(ember_wire_infer_from_msg(&empty, "m", EMBER_METHOD_DFO, &r, &err), 0);
  assert_memory_equal(&r, &model, sizeof r);

  /* sigma 0 cannot travel: it reads as the default */
  o.sigma = 0.0f;
  ember_wire_infer_to_msg(&o, EMBER_WIRE_SIGMA, &w, NULL);
  assert_null(w.langevin);
  r = model;
  ember_wire_infer_merge(&w, &r);
  assert_true(r.sigma == model.sigma);

  /* a description (GetModel) is merged as it is: counts saturate at the library's limits */
  Ember__V1__InferenceOptions desc = EMBER__V1__INFERENCE_OPTIONS__INIT;
  Ember__V1__LangevinOptions ldesc = EMBER__V1__LANGEVIN_OPTIONS__INIT;
  desc.iterations = 5000;
  desc.samples = 4000000000u;
  desc.optional_refine_steps_case = EMBER__V1__INFERENCE_OPTIONS__OPTIONAL_REFINE_STEPS_REFINE_STEPS;
  desc.refine_steps = 20000;
  ldesc.chain_steps = 200000;
  ldesc.schedule = (Ember__V1__LangevinOptions__Schedule)9;
  desc.langevin = &ldesc;
  r = model;
  ember_wire_infer_merge(&desc, &r);
  assert_int_equal(r.iters, EMBER_MAX_ITERS);
  assert_int_equal(r.samples, INT32_MAX);
  assert_int_equal(r.refine_steps, EMBER_MAX_REFINE_STEPS);
  assert_int_equal(r.langevin.steps, EMBER_MAX_CHAIN_STEPS);
  assert_int_equal(r.langevin.schedule, model.langevin.schedule);
}

static void test_infer_refusals(void **state) {
  (void)state;
  const ember_infer_opts model = EMBER_INFER_DEFAULTS;
  ember_infer_opts r = model;
  ember_err err;
  Ember__V1__InferenceOptions w = EMBER__V1__INFERENCE_OPTIONS__INIT;
  Ember__V1__LangevinOptions l = EMBER__V1__LANGEVIN_OPTIONS__INIT;
  w.iterations = 5000;
  w.samples = 12; /* not merged: a refused request changes nothing */
  assert_err(ember_wire_infer_from_msg(&w, "m", EMBER_METHOD_DFO, &r, &err), err,
             "options: iterations must be 1..1000, got 5000");
  assert_memory_equal(&r, &model, sizeof r);
  w.iterations = 1000;
  w.optional_refine_steps_case = EMBER__V1__INFERENCE_OPTIONS__OPTIONAL_REFINE_STEPS_REFINE_STEPS;
  w.refine_steps = 10001;
  assert_err(ember_wire_infer_check(&w, "m", EMBER_METHOD_DFO, &err), err,
             "options: refine_steps must be 0..10000, got 10001");
  w.refine_steps = 10000;
  assert_int_equal(ember_wire_infer_check(&w, "m", EMBER_METHOD_DFO, &err), 0);

  w.langevin = &l;
  l.optional_noise_scale_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_NOISE_SCALE_NOISE_SCALE;
  assert_err(ember_wire_infer_check(&w, "toy", EMBER_METHOD_ARDFO, &err), err,
             "options.langevin applies to Langevin models only (or to optimizer "
             "OPTIMIZER_LANGEVIN on any energy model); model 'toy' is of method ardfo");
  assert_int_equal(ember_wire_infer_check(&w, "toy", EMBER_METHOD_LANGEVIN, &err), 0);
  /* the chosen optimiser: chains on any energy model take the Langevin settings; ardfo needs
   * an ardfo model; an explicit model has no optimiser; unknown values are refused */
  w.optimizer = EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_LANGEVIN;
  assert_int_equal(ember_wire_infer_check(&w, "toy", EMBER_METHOD_ARDFO, &err), 0);
  assert_int_equal(ember_wire_infer_check(&w, "toy", EMBER_METHOD_DFO, &err), 0);
  assert_err(ember_wire_infer_check(&w, "flat", EMBER_METHOD_MSE, &err), err,
             "options: model 'flat': optimizer langevin does not apply to an explicit (mse) model: it "
             "has no energy to optimise (only optimizer default)");
  w.optimizer = EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_DFO;
  assert_err(ember_wire_infer_check(&w, "toy", EMBER_METHOD_LANGEVIN, &err), err,
             "options.langevin applies to Langevin models only (or to optimizer "
             "OPTIMIZER_LANGEVIN on any energy model); model 'toy' is of method langevin");
  w.langevin = NULL;
  assert_int_equal(ember_wire_infer_check(&w, "toy", EMBER_METHOD_LANGEVIN, &err), 0);
  w.optimizer = EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_ARDFO;
  assert_err(ember_wire_infer_check(&w, "toy", EMBER_METHOD_DFO, &err), err,
             "options: model 'toy': optimizer ardfo needs the y-prefix nets of an ardfo model; this "
             "model's method is dfo (optimizers dfo and langevin apply to it)");
  assert_int_equal(ember_wire_infer_check(&w, "toy", EMBER_METHOD_ARDFO, &err), 0);
  w.optimizer = (Ember__V1__InferenceOptions__Optimizer)9;
  assert_err(ember_wire_infer_check(&w, "toy", EMBER_METHOD_ARDFO, &err), err,
             "options: optimizer 9 is not an optimizer: expected OPTIMIZER_DEFAULT (0), "
             "OPTIMIZER_DFO (1), OPTIMIZER_LANGEVIN (2) or OPTIMIZER_ARDFO (3)");
  w.optimizer = EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_DEFAULT;
  w.langevin = &l;
  l.chain_steps = 100001;
  assert_err(ember_wire_infer_check(&w, "m", EMBER_METHOD_LANGEVIN, &err), err,
             "options: langevin.chain_steps must be 1..100000, got 100001");
  l.chain_steps = 100000;
  l.optional_again_steps_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_AGAIN_STEPS_AGAIN_STEPS;
  l.again_steps = 100001;
  assert_err(ember_wire_infer_check(&w, "m", EMBER_METHOD_LANGEVIN, &err), err,
             "options: langevin.again_steps must be 0..100000, got 100001");
  l.again_steps = 0;
  l.schedule = (Ember__V1__LangevinOptions__Schedule)7;
  assert_err(ember_wire_infer_check(&w, "m", EMBER_METHOD_LANGEVIN, &err), err,
             "options: langevin.schedule 7 is not a schedule: expected SCHEDULE_IBC (1), "
             "SCHEDULE_POLY (2) or SCHEDULE_UNSPECIFIED (0, the model's)");
  l.schedule = EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_POLY;
  r = model;
  assert_int_equal(ember_wire_infer_from_msg(&w, "m", EMBER_METHOD_LANGEVIN, &r, &err), 0);
  assert_int_equal(r.langevin.schedule, EMBER_SCHEDULE_POLY);
  assert_int_equal(r.langevin.steps, 100000);
  assert_int_equal(r.again_steps, 0);
  assert_int_equal(r.refine_steps, 10000);
  assert_true(r.langevin.noise_scale == 0.0f);
}

static void test_modes(void **state) {
  (void)state;
  ember_err err;
  ember_modes_opts mo = {.k = 5, .radius = 0.5f, .min_mass = 0.0f, .polish_steps = 9, .polish_lr = 0.05f};
  ember_modes_opts back, d = EMBER_MODES_DEFAULTS;
  Ember__V1__SampleRequest req = EMBER__V1__SAMPLE_REQUEST__INIT;
  ember_wire_modes_to_msg(&mo, EMBER_WIRE_MODES_K | EMBER_WIRE_MODES_RADIUS | EMBER_WIRE_MODES_MIN_MASS |
                                   EMBER_WIRE_MODES_POLISH, &req);
  assert_true(req.min_mass == -1.0f); /* "keep every mode": 0 would read as the default */
  Ember__V1__SampleRequest *got = (Ember__V1__SampleRequest *)wire_trip(&req.base);
  assert_int_equal(ember_wire_modes_from_msg(got, &back, &err), 0);
  assert_memory_equal(&back, &mo, sizeof mo);
  protobuf_c_message_free_unpacked(&got->base, NULL);

  /* nothing given: the defaults */
  Ember__V1__SampleRequest empty = EMBER__V1__SAMPLE_REQUEST__INIT;
  ember_wire_modes_to_msg(&mo, 0, &empty);
  assert_int_equal(empty.modes, 0);
  assert_int_equal(ember_wire_modes_from_msg(&empty, &back, &err), 0);
  assert_memory_equal(&back, &d, sizeof d);
  empty.min_mass = 0.2f;
  assert_int_equal(ember_wire_modes_from_msg(&empty, &back, &err), 0);
  assert_true(back.min_mass == 0.2f);

  req = empty;
  req.modes = 1025;
  assert_err(ember_wire_modes_from_msg(&req, &back, &err), err, "modes must be 1..1024, got 1025");
  req.modes = 1024;
  req.polish_steps = 10001;
  assert_err(ember_wire_modes_from_msg(&req, &back, &err), err, "polish_steps must be 0..10000, got 10001");
  req.polish_steps = 0;
  req.radius = -1.0f;
  assert_err(ember_wire_modes_from_msg(&req, &back, &err), err, "mode radius must be positive, got -1");
  req.radius = 0.0f;
  req.min_mass = 1.5f;
  assert_err(ember_wire_modes_from_msg(&req, &back, &err), err,
             "minimum mode mass must be in [0, 1), got 1.5");
}

/* The fields of ember_train_opts that TrainRequest carries. */
static void assert_same_train(const ember_train_opts *a, const ember_train_opts *b) {
  assert_int_equal(a->method, b->method);
  assert_int_equal(a->arch, b->arch);
  assert_int_equal(a->width, b->width);
  assert_int_equal(a->depth, b->depth);
  assert_int_equal(a->steps, b->steps);
  assert_int_equal(a->batch, b->batch);
  assert_int_equal(a->negatives, b->negatives);
  assert_int_equal(a->decay_steps, b->decay_steps);
  assert_int_equal(a->seed, b->seed);
  assert_int_equal(a->spectral_norm, b->spectral_norm);
  assert_int_equal(a->uniform_negatives, b->uniform_negatives);
  const float fa[] = {a->lr, a->lr_decay, a->temperature, a->bound_margin, a->ema, a->penalty_margin,
                      a->penalty_weight, a->keep_prefix_share, a->prefix_noise, a->val_split};
  const float fb[] = {b->lr, b->lr_decay, b->temperature, b->bound_margin, b->ema, b->penalty_margin,
                      b->penalty_weight, b->keep_prefix_share, b->prefix_noise, b->val_split};
  assert_memory_equal(fa, fb, sizeof fa);
  assert_memory_equal(&a->infer, &b->infer, sizeof a->infer);
  assert_memory_equal(&a->langevin, &b->langevin, sizeof a->langevin);
}

static void test_train_round_trip(void **state) {
  (void)state;
  static const ember_method methods[] = {EMBER_METHOD_DFO, EMBER_METHOD_ARDFO, EMBER_METHOD_MSE,
                                         EMBER_METHOD_LANGEVIN};
  for (size_t i = 0; i < sizeof methods / sizeof *methods; i++) {
    ember_train_opts o, back;
    ember_train_opts_for_method(&o, methods[i]);
    o.arch = EMBER_ARCH_MLP;
    o.width = 48;
    o.depth = 3;
    o.steps = 123;
    o.batch = 17;
    o.negatives = 9;
    o.lr = 0.002f;
    o.lr_decay = 0.9f;
    o.decay_steps = 11;
    o.temperature = 0.5f;
    o.bound_margin = 0.0f; /* 0 travels in its oneof */
    o.ema = 0.0f;          /* off, not the method's 0.999 */
    o.seed = 0x123456789ULL;
    o.spectral_norm = methods[i] != EMBER_METHOD_ARDFO;
    o.val_split = i == 0 ? 0.0f : 0.125f * (float)i; /* 0 and not: both travel */
    o.infer.samples = 300;
    o.infer.iters = 4;
    o.infer.sigma = 0.2f;
    o.infer.shrink = 0.6f;
    if (methods[i] == EMBER_METHOD_LANGEVIN) {
      o.langevin.steps = 12;
      o.langevin.schedule = EMBER_SCHEDULE_POLY;
      o.langevin.step_init = 0.3f;
      o.langevin.step_final = 0.01f;
      o.langevin.gamma = 0.0f;
      o.langevin.noise_scale = 0.0f;
      o.langevin.delta_max = 0.0f;
      o.penalty_margin = 0.0f;
      o.penalty_weight = 0.0f;
      o.uniform_negatives = 5;
    }
    if (methods[i] == EMBER_METHOD_ARDFO) {
      o.keep_prefix_share = 0.0f;
      o.prefix_noise = 0.0f;
    }
    Ember__V1__TrainRequest r = EMBER__V1__TRAIN_REQUEST__INIT;
    ember_wire_train_to_msg(&o, &r);
    Ember__V1__TrainRequest *got = (Ember__V1__TrainRequest *)wire_trip(&r.base);
    ember_err err;
    if (ember_wire_train_from_msg(got, &back, &err) < 0)
      fail_msg("%s: %s", ember_method_name(methods[i]), err.msg);
    assert_same_train(&back, &o);
    protobuf_c_message_free_unpacked(&got->base, NULL);
  }
}

/* An empty request is the method's defaults; "" is dfo. */
static void test_train_defaults(void **state) {
  (void)state;
  static const char *const names[] = {"", "dfo", "ardfo", "langevin", "mse"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
    Ember__V1__TrainRequest r = EMBER__V1__TRAIN_REQUEST__INIT;
    r.method = (char *)names[i];
    ember_train_opts got, want;
    ember_method m = EMBER_METHOD_DFO;
    if (*names[i]) assert_int_equal(ember_method_parse(names[i], &m), 0);
    ember_train_opts_for_method(&want, m);
    ember_err err;
    assert_int_equal(ember_wire_train_from_msg(&r, &got, &err), 0);
    assert_same_train(&got, &want);
  }
}

static void test_train_refusals(void **state) {
  (void)state;
  ember_train_opts o;
  ember_err err;
  Ember__V1__TrainRequest r = EMBER__V1__TRAIN_REQUEST__INIT, clean = r;
  r.method = "tree";
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "method must be dfo, ardfo, langevin or mse, got 'tree'");
  r = clean;
  r.arch = "cnn";
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err, "arch must be resnet or mlp, got 'cnn'");
  r = clean;
  r.chain_steps = 10;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "chain_steps applies to method langevin only (this request: dfo)");
  r = clean;
  r.method = "mse";
  r.optional_gamma_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_GAMMA_GAMMA;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "gamma applies to method langevin only (this request: mse)");
  r = clean;
  r.method = "langevin";
  r.optional_prefix_noise_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_PREFIX_NOISE_PREFIX_NOISE;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "prefix_noise applies to method ardfo only (this request: langevin)");
  r = clean;
  r.batch = 3000000000u;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "a size field (batch, negatives, width, depth, decay_steps, samples, iterations or "
             "chain_steps) is out of range");
  r = clean;
  r.steps = -4;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err, "steps must be >= 1, got -4");
  r = clean;
  r.method = "dfo";
  r.uniform_negatives = 4;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "uniform_negatives applies to method langevin only (this request: dfo)");
  r = clean;
  r.method = "langevin";
  r.uniform_negatives = 70000;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err, "uniform negatives must be 0..65536, got 70000");
  r = clean;
  r.method = "langevin";
  r.schedule = "linear";
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err, "schedule must be ibc or poly, got 'linear'");
  r = clean;
  r.lr = -1.0f; /* the library's own check, after the merge */
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err, "learning rate must be in (0, 10), got -1");
  r = clean;
  r.optional_ema_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_EMA_EMA;
  r.ema = 1.0f;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "weight average decay (ema) must be in [0, 1) (0 = off), got 1");
  r = clean;
  r.val_split = 1.0f;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "the validation share (val split) must be in [0, 1) (0 = none), got 1");
  r.val_split = -0.25f;
  assert_err(ember_wire_train_from_msg(&r, &o, &err), err,
             "the validation share (val split) must be in [0, 1) (0 = none), got -0.25");
}

static void test_status_names_and_pack(void **state) {
  (void)state;
  assert_string_equal(ember_wire_status_name(GRPC_STATUS_OK), "OK");
  assert_string_equal(ember_wire_status_name(GRPC_STATUS_INVALID_ARGUMENT), "INVALID_ARGUMENT");
  assert_string_equal(ember_wire_status_name(GRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
  assert_null(ember_wire_status_name((grpc_status_code)17));
  assert_null(ember_wire_status_name((grpc_status_code)-1));

  grpc_init();
  Ember__V1__GetModelRequest req = EMBER__V1__GET_MODEL_REQUEST__INIT;
  req.model = "toy";
  req.version = 3;
  grpc_byte_buffer *bb = ember_wire_pack(&req.base);
  assert_non_null(bb);
  grpc_byte_buffer_reader rd;
  assert_true(grpc_byte_buffer_reader_init(&rd, bb));
  grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  Ember__V1__GetModelRequest *got =
      ember__v1__get_model_request__unpack(NULL, GRPC_SLICE_LENGTH(all), GRPC_SLICE_START_PTR(all));
  assert_non_null(got);
  assert_string_equal(got->model, "toy");
  assert_int_equal(got->version, 3);
  ember__v1__get_model_request__free_unpacked(got, NULL);
  grpc_slice_unref(all);
  grpc_byte_buffer_destroy(bb);
  grpc_shutdown();
}

/* A request's x and its row count: the client always says rows; the server wants exactly
 * rows x x_dim values then, and a multiple of x_dim without it (older clients). */
static void test_rows(void **state) {
  (void)state;
  const float x[] = {1, 2, 3, 4, 5, 6};
  ember_err err;
  int rows = -1;
  Ember__V1__PredictRequest p = EMBER__V1__PREDICT_REQUEST__INIT;
  ember_wire_predict_x(&p, x, 3, 2);
  Ember__V1__PredictRequest *pb = (Ember__V1__PredictRequest *)wire_trip(&p.base);
  assert_int_equal(pb->optional_rows_case, EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS_ROWS);
  assert_int_equal(pb->rows, 3);
  assert_int_equal(pb->n_x, 6);
  assert_int_equal(ember_wire_predict_rows(pb, 2, &rows, &err), 0);
  assert_int_equal(rows, 3);
  /* the same 6 values for a model of x_dim 3: 2 rows, not the 3 the client means */
  assert_err(ember_wire_predict_rows(pb, 3, &rows, &err), err, "x has 6 values = 2 rows of x_dim 3, request says rows 3");
  assert_err(ember_wire_predict_rows(pb, 4, &rows, &err), err,
             "x has 6 values, not a whole number of rows of x_dim 4; request says rows 3 (12 values)");
  ember__v1__predict_request__free_unpacked(pb, NULL);
  /* rows 0 is a count like any other, not "unset" */
  p.rows = 0;
  assert_err(ember_wire_predict_rows(&p, 2, &rows, &err), err, "x has 6 values = 3 rows of x_dim 2, request says rows 0");
  /* unset: today's reading, rows from the length */
  p.optional_rows_case = EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS__NOT_SET;
  rows = -1;
  assert_int_equal(ember_wire_predict_rows(&p, 3, &rows, &err), 0);
  assert_int_equal(rows, 2);
  assert_err(ember_wire_predict_rows(&p, 4, &rows, &err), err,
             "x has 6 values: expected a multiple of the model's x_dim 4 (row-major rows)");
  p.n_x = 0;
  assert_err(ember_wire_predict_rows(&p, 4, &rows, &err), err,
             "x is empty: expected one or more rows of 4 values (row-major)");

  Ember__V1__SampleRequest q = EMBER__V1__SAMPLE_REQUEST__INIT;
  ember_wire_sample_x(&q, x, 1, 6);
  Ember__V1__SampleRequest *qb = (Ember__V1__SampleRequest *)wire_trip(&q.base);
  assert_int_equal(ember_wire_sample_rows(qb, 6, &rows, &err), 0);
  assert_int_equal(rows, 1);
  assert_err(ember_wire_sample_rows(qb, 2, &rows, &err), err, "x has 6 values = 3 rows of x_dim 2, request says rows 1");
  ember__v1__sample_request__free_unpacked(qb, NULL);
}

/* An image model's input: images with their shape, the model's, x holding the extras; each
 * mismatch refused with a message naming what the model takes. */
static void test_images(void **state) {
  (void)state;
  const ember_encoder_shape enc = {.h = 4, .w = 3, .c = 2, .nconv = 1, .conv = {{2, 1, 1, 0}}, .extra = 2};
  const int x_dim = 4 + 2; /* softargmax over 2 maps: 4 features, then the extras */
  uint8_t img[3 * 24];
  for (size_t i = 0; i < sizeof img; i++) img[i] = (uint8_t)(i * 7);
  float extra[6] = {1, 2, 3, 4, 5, 6};
  ember_err err;
  int rows = -1;

  Ember__V1__PredictRequest p = EMBER__V1__PREDICT_REQUEST__INIT;
  Ember__V1__ImageShape shape;
  ember_wire_predict_images(&p, &shape, img, 3, 4, 3, 2, extra, 2);
  Ember__V1__PredictRequest *pb = (Ember__V1__PredictRequest *)wire_trip(&p.base);
  /* through the wire as they were: the bytes, the shape, the extras, rows */
  assert_int_equal(pb->images.len, sizeof img);
  assert_memory_equal(pb->images.data, img, sizeof img);
  assert_non_null(pb->image_shape);
  assert_int_equal(pb->image_shape->height, 4);
  assert_int_equal(pb->image_shape->width, 3);
  assert_int_equal(pb->image_shape->channels, 2);
  assert_int_equal(pb->n_x, 6);
  assert_memory_equal(pb->x, extra, sizeof extra);
  assert_int_equal(pb->rows, 3);
  assert_int_equal(ember_wire_predict_input(pb, x_dim, &enc, &rows, &err), 0);
  assert_int_equal(rows, 3);
  /* a vector model refuses them */
  assert_err(ember_wire_predict_input(pb, x_dim, NULL, &rows, &err), err,
             "the model takes vectors, not images: send rows of its x_dim 6 values in x and leave images and "
             "image_shape unset");
  ember__v1__predict_request__free_unpacked(pb, NULL);

  /* rows disagreeing with the bytes, bytes that are no whole number of images */
  p.rows = 2;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "images has 72 bytes = 3 images of 4x3x2, request says rows 2");
  p.images.len = 70;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "images has 70 bytes, not a whole number of 4x3x2 images (24 bytes each); request says rows 2 (48 bytes)");
  p.optional_rows_case = EMBER__V1__PREDICT_REQUEST__OPTIONAL_ROWS__NOT_SET;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "images has 70 bytes, not a whole number of 4x3x2 images (24 bytes each)");
  /* without rows: the count from the bytes; then x must hold that many rows of extras */
  p.images.len = 48;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "x has 6 values; 2 images with the model's 2 extra observations each need 4");
  p.n_x = 4;
  rows = -1;
  assert_int_equal(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), 0);
  assert_int_equal(rows, 2);
  /* another shape, or none */
  shape.channels = 3;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "image_shape is 4x3x3; the model takes 4x3x2 images (height x width x channels)");
  p.image_shape = NULL;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "image_shape is not set: the model takes 4x3x2 images (height x width x channels); say so in image_shape");
  /* no images: x alone is refused, naming the shape; nothing at all too */
  p.images.len = 0;
  p.n_x = 12;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "the model takes 4x3x2 images (height x width x channels): send them as uint8 bytes in images with "
             "image_shape, and 2 extra observations per image in x; x alone (12 values) is not an image");
  p.n_x = 0;
  assert_err(ember_wire_predict_input(&p, x_dim, &enc, &rows, &err), err,
             "images is empty: expected one or more 4x3x2 images (uint8, row-major height x width x channels, 24 bytes "
             "each)");

  /* a model without extras wants x empty; Sample reads the same fields */
  ember_encoder_shape bare = enc;
  bare.extra = 0;
  Ember__V1__SampleRequest q = EMBER__V1__SAMPLE_REQUEST__INIT;
  ember_wire_sample_images(&q, &shape, img, 2, 4, 3, 2, NULL, 0);
  Ember__V1__SampleRequest *qb = (Ember__V1__SampleRequest *)wire_trip(&q.base);
  assert_int_equal(qb->n_x, 0);
  assert_int_equal(ember_wire_sample_input(qb, 4, &bare, &rows, &err), 0);
  assert_int_equal(rows, 2);
  ember__v1__sample_request__free_unpacked(qb, NULL);
  q.n_x = 2;
  q.x = extra;
  assert_err(ember_wire_sample_input(&q, 4, &bare, &rows, &err), err,
             "x has 2 values; the model takes no extra observations, so x must be empty with images");
  /* and a vector model's request is read as ember_wire_sample_rows reads it */
  Ember__V1__SampleRequest v = EMBER__V1__SAMPLE_REQUEST__INIT;
  ember_wire_sample_x(&v, extra, 3, 2);
  assert_int_equal(ember_wire_sample_input(&v, 2, NULL, &rows, &err), 0);
  assert_int_equal(rows, 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_infer_round_trip),  cmocka_unit_test(test_infer_fields),
      cmocka_unit_test(test_infer_defaults),    cmocka_unit_test(test_infer_refusals),
      cmocka_unit_test(test_modes),             cmocka_unit_test(test_train_round_trip),
      cmocka_unit_test(test_train_defaults),    cmocka_unit_test(test_train_refusals),
      cmocka_unit_test(test_status_names_and_pack), cmocka_unit_test(test_rows),
      cmocka_unit_test(test_images),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
