/* options.c - inference, mode and training options to and from their ember.v1 messages.
 *
 * Each direction of each mapping is one function, and each field is named once per direction,
 * so a new option is added here (both ways), in the proto file and in its unit test
 * (tests/test_wire.c), and emberd and the CLI follow. The _Static_asserts below break the build
 * when an options struct grows, until the new field is mapped or said to stay off the wire.
 *
 * Why checks come before conversion: the protocol's counts are uint32 and the library's int;
 * converted first, 5000000000 would reach the library as something else, so counts are
 * checked as sent and the message names what the client sent. Everything the library can
 * judge itself (sigma's range, a schedule's steps) it judges, after the merge.
 *
 * What it does not do: decide defaults (the model's, ember_train_opts_for_method,
 * EMBER_MODES_DEFAULTS), or apply a server's own limits.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "wire.h"

/* Drift guards: these structs are mirrored field by field below. A new field breaks the build
 * here until it has its place in both directions (or is known to stay local). */
_Static_assert(sizeof(ember_infer_opts) == 17 * 4 && sizeof(ember_langevin_opts) == 7 * 4,
               "ember_infer_opts changed: give the new field an EMBER_WIRE_* bit and map it both ways");
_Static_assert(sizeof(ember_modes_opts) == 5 * 4, "ember_modes_opts changed: map it in options.c");
_Static_assert((int)EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_DEFAULT == EMBER_OPTIMIZER_DEFAULT &&
               (int)EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_DFO == EMBER_OPTIMIZER_DFO &&
               (int)EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_LANGEVIN == EMBER_OPTIMIZER_LANGEVIN &&
               (int)EMBER__V1__INFERENCE_OPTIONS__OPTIMIZER__OPTIMIZER_ARDFO == EMBER_OPTIMIZER_ARDFO &&
               EMBER_OPTIMIZER_COUNT == 4,
               "InferenceOptions.Optimizer and ember_optimizer must number the optimisers alike");

/* uint32 counts of the wire -> int, saturating at the library's limit. */
static int count_of(uint32_t v, int limit) { return v > (uint32_t)limit ? limit : (int)v; }

/* ---- inference options ---------------------------------------------------------------------- */

unsigned ember_wire_infer_field_at(size_t off) {
  static const struct {
    size_t off;
    unsigned bit;
  } at[] = {
#define F(field, bit) {offsetof(ember_infer_opts, field), bit}
      F(samples, EMBER_WIRE_SAMPLES),          F(iters, EMBER_WIRE_ITERS),
      F(sigma, EMBER_WIRE_SIGMA),              F(shrink, EMBER_WIRE_SHRINK),
      F(temperature, EMBER_WIRE_TEMPERATURE),  F(refine_steps, EMBER_WIRE_REFINE_STEPS),
      F(refine_lr, EMBER_WIRE_REFINE_LR),      F(langevin.steps, EMBER_WIRE_CHAIN_STEPS),
      F(langevin.schedule, EMBER_WIRE_SCHEDULE), F(langevin.step_init, EMBER_WIRE_STEP_INIT),
      F(langevin.step_final, EMBER_WIRE_STEP_FINAL), F(langevin.gamma, EMBER_WIRE_GAMMA),
      F(langevin.noise_scale, EMBER_WIRE_NOISE_SCALE), F(langevin.delta_max, EMBER_WIRE_DELTA_MAX),
      F(again_steps, EMBER_WIRE_AGAIN_STEPS),  F(again_step, EMBER_WIRE_AGAIN_STEP),
      F(optimizer, EMBER_WIRE_OPTIMIZER),
#undef F
  };
  for (size_t i = 0; i < sizeof at / sizeof *at; i++)
    if (at[i].off == off) return at[i].bit;
  return 0;
}

unsigned ember_wire_infer_fields(ember_method method) {
  unsigned f = EMBER_WIRE_SAMPLES | EMBER_WIRE_ITERS | EMBER_WIRE_SIGMA | EMBER_WIRE_SHRINK |
               EMBER_WIRE_TEMPERATURE;
  if (method != EMBER_METHOD_MSE) f |= EMBER_WIRE_REFINE_STEPS | EMBER_WIRE_REFINE_LR;
  if (method == EMBER_METHOD_LANGEVIN) f |= EMBER_WIRE_LANGEVIN_FIELDS;
  return f;
}

static Ember__V1__LangevinOptions__Schedule schedule_to_msg(ember_schedule s) {
  return s == EMBER_SCHEDULE_POLY ? EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_POLY
                                  : EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_IBC;
}

void ember_wire_infer_to_msg(const ember_infer_opts *o, unsigned fields,
                             Ember__V1__InferenceOptions *w, Ember__V1__LangevinOptions *lw) {
  ember__v1__inference_options__init(w);
  if (fields & EMBER_WIRE_SAMPLES) w->samples = (uint32_t)o->samples;
  if (fields & EMBER_WIRE_ITERS) w->iterations = (uint32_t)o->iters;
  if (fields & EMBER_WIRE_SIGMA) w->sigma = o->sigma;
  if (fields & EMBER_WIRE_SHRINK) w->shrink = o->shrink;
  if (fields & EMBER_WIRE_TEMPERATURE) w->temperature = o->temperature;
  if (fields & EMBER_WIRE_REFINE_STEPS) {
    w->optional_refine_steps_case = EMBER__V1__INFERENCE_OPTIONS__OPTIONAL_REFINE_STEPS_REFINE_STEPS;
    w->refine_steps = (uint32_t)o->refine_steps;
  }
  if (fields & EMBER_WIRE_REFINE_LR) w->refine_lr = o->refine_lr;
  /* the library's values are the protocol's (ember.proto's InferenceOptions.Optimizer) */
  if (fields & EMBER_WIRE_OPTIMIZER) w->optimizer = (Ember__V1__InferenceOptions__Optimizer)o->optimizer;
  if (!(fields & EMBER_WIRE_LANGEVIN_FIELDS)) return;
  const ember_langevin_opts *l = &o->langevin;
  ember__v1__langevin_options__init(lw);
  w->langevin = lw;
  if (fields & EMBER_WIRE_CHAIN_STEPS) lw->chain_steps = (uint32_t)l->steps;
  if (fields & EMBER_WIRE_SCHEDULE) lw->schedule = schedule_to_msg(l->schedule);
  if (fields & EMBER_WIRE_STEP_INIT) lw->step_init = l->step_init;
  if (fields & EMBER_WIRE_STEP_FINAL) lw->step_final = l->step_final;
  if (fields & EMBER_WIRE_GAMMA) {
    lw->optional_gamma_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_GAMMA_GAMMA;
    lw->gamma = l->gamma;
  }
  if (fields & EMBER_WIRE_NOISE_SCALE) {
    lw->optional_noise_scale_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_NOISE_SCALE_NOISE_SCALE;
    lw->noise_scale = l->noise_scale;
  }
  if (fields & EMBER_WIRE_DELTA_MAX) {
    lw->optional_delta_max_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_DELTA_MAX_DELTA_MAX;
    lw->delta_max = l->delta_max;
  }
  if (fields & EMBER_WIRE_AGAIN_STEPS) {
    lw->optional_again_steps_case = EMBER__V1__LANGEVIN_OPTIONS__OPTIONAL_AGAIN_STEPS_AGAIN_STEPS;
    lw->again_steps = (uint32_t)o->again_steps;
  }
  if (fields & EMBER_WIRE_AGAIN_STEP) lw->again_step = o->again_step;
}

/* Whether any field of the Langevin options is set (a present but empty message is not). */
static int langevin_given(const Ember__V1__LangevinOptions *l) {
  return l && (l->chain_steps || l->schedule || l->step_init != 0.0f || l->step_final != 0.0f ||
               l->again_step != 0.0f || l->optional_gamma_case || l->optional_noise_scale_case ||
               l->optional_delta_max_case || l->optional_again_steps_case);
}

int ember_wire_infer_check(const Ember__V1__InferenceOptions *w, const char *model,
                           ember_method method, ember_err *err) {
  if (!w) return 0;
  if (w->iterations > (uint32_t)EMBER_MAX_ITERS)
    return ember_fail(err, EMBER_EINVAL, "options: iterations must be 1..%d, got %u", EMBER_MAX_ITERS,
                      w->iterations);
  if (w->optional_refine_steps_case && w->refine_steps > (uint32_t)EMBER_MAX_REFINE_STEPS)
    return ember_fail(err, EMBER_EINVAL, "options: refine_steps must be 0..%d, got %u",
                      EMBER_MAX_REFINE_STEPS, w->refine_steps);
  if ((unsigned)w->optimizer >= EMBER_OPTIMIZER_COUNT)
    return ember_fail(err, EMBER_EINVAL,
                      "options: optimizer %d is not an optimizer: expected OPTIMIZER_DEFAULT (0), "
                      "OPTIMIZER_DFO (1), OPTIMIZER_LANGEVIN (2) or OPTIMIZER_ARDFO (3)",
                      (int)w->optimizer);
  ember_err why;
  if (ember_optimizer_check(method, (ember_optimizer)w->optimizer, &why) < 0)
    return ember_fail(err, EMBER_EINVAL, "options: model '%s': %s", model, why.msg);
  const Ember__V1__LangevinOptions *l = w->langevin;
  if (langevin_given(l) &&
      ember_optimizer_method(method, (ember_optimizer)w->optimizer) != EMBER_METHOD_LANGEVIN)
    return ember_fail(err, EMBER_EINVAL,
                      "options.langevin applies to Langevin models only (or to optimizer "
                      "OPTIMIZER_LANGEVIN on any energy model); model '%s' is of method %s",
                      model, ember_method_name(method));
  if (!l) return 0;
  if (l->chain_steps > (uint32_t)EMBER_MAX_CHAIN_STEPS)
    return ember_fail(err, EMBER_EINVAL, "options: langevin.chain_steps must be 1..%d, got %u",
                      EMBER_MAX_CHAIN_STEPS, l->chain_steps);
  if (l->optional_again_steps_case && l->again_steps > (uint32_t)EMBER_MAX_CHAIN_STEPS)
    return ember_fail(err, EMBER_EINVAL, "options: langevin.again_steps must be 0..%d, got %u",
                      EMBER_MAX_CHAIN_STEPS, l->again_steps);
  switch (l->schedule) {
  case EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_UNSPECIFIED:
  case EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_IBC:
  case EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_POLY: return 0;
  default:
    return ember_fail(err, EMBER_EINVAL,
                      "options: langevin.schedule %d is not a schedule: expected SCHEDULE_IBC (1), "
                      "SCHEDULE_POLY (2) or SCHEDULE_UNSPECIFIED (0, the model's)",
                      (int)l->schedule);
  }
}

void ember_wire_infer_merge(const Ember__V1__InferenceOptions *w, ember_infer_opts *o) {
  if (!w) return;
  if (w->samples) o->samples = count_of(w->samples, INT32_MAX);
  if (w->iterations) o->iters = count_of(w->iterations, EMBER_MAX_ITERS);
  if (w->sigma != 0.0f) o->sigma = w->sigma;
  if (w->shrink != 0.0f) o->shrink = w->shrink;
  if (w->temperature != 0.0f) o->temperature = w->temperature;
  if (w->optional_refine_steps_case) o->refine_steps = count_of(w->refine_steps, EMBER_MAX_REFINE_STEPS);
  if (w->refine_lr != 0.0f) o->refine_lr = w->refine_lr;
  if ((unsigned)w->optimizer > 0 && (unsigned)w->optimizer < EMBER_OPTIMIZER_COUNT)
    o->optimizer = (ember_optimizer)w->optimizer;
  const Ember__V1__LangevinOptions *l = w->langevin;
  if (!l) return;
  ember_langevin_opts *r = &o->langevin;
  if (l->chain_steps) r->steps = count_of(l->chain_steps, EMBER_MAX_CHAIN_STEPS);
  if (l->schedule == EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_IBC) r->schedule = EMBER_SCHEDULE_IBC;
  if (l->schedule == EMBER__V1__LANGEVIN_OPTIONS__SCHEDULE__SCHEDULE_POLY) r->schedule = EMBER_SCHEDULE_POLY;
  if (l->step_init != 0.0f) r->step_init = l->step_init;
  if (l->step_final != 0.0f) r->step_final = l->step_final;
  if (l->optional_gamma_case) r->gamma = l->gamma;
  if (l->optional_noise_scale_case) r->noise_scale = l->noise_scale;
  if (l->optional_delta_max_case) r->delta_max = l->delta_max;
  if (l->optional_again_steps_case) o->again_steps = count_of(l->again_steps, EMBER_MAX_CHAIN_STEPS);
  if (l->again_step != 0.0f) o->again_step = l->again_step;
}

int ember_wire_infer_from_msg(const Ember__V1__InferenceOptions *w, const char *model,
                              ember_method method, ember_infer_opts *o, ember_err *err) {
  int rc = ember_wire_infer_check(w, model, method, err);
  if (rc == 0) ember_wire_infer_merge(w, o);
  return rc;
}

/* ---- mode options --------------------------------------------------------------------------- */

void ember_wire_modes_to_msg(const ember_modes_opts *mo, unsigned fields,
                             Ember__V1__SampleRequest *req) {
  if (fields & EMBER_WIRE_MODES_K) req->modes = (uint32_t)mo->k;
  if (fields & EMBER_WIRE_MODES_RADIUS) req->radius = mo->radius;
  if (fields & EMBER_WIRE_MODES_MIN_MASS) req->min_mass = mo->min_mass > 0.0f ? mo->min_mass : -1.0f;
  if (fields & EMBER_WIRE_MODES_POLISH) req->polish_steps = (uint32_t)mo->polish_steps;
}

int ember_wire_modes_from_msg(const Ember__V1__SampleRequest *req, ember_modes_opts *mo,
                              ember_err *err) {
  ember_modes_opts d = EMBER_MODES_DEFAULTS;
  *mo = d;
  if (req->modes > (uint32_t)EMBER_MAX_MODES)
    return ember_fail(err, EMBER_EINVAL, "modes must be 1..%d, got %u", EMBER_MAX_MODES, req->modes);
  if (req->polish_steps > (uint32_t)EMBER_MAX_POLISH_STEPS)
    return ember_fail(err, EMBER_EINVAL, "polish_steps must be 0..%d, got %u", EMBER_MAX_POLISH_STEPS,
                      req->polish_steps);
  if (req->modes) mo->k = (int)req->modes;
  if (req->radius != 0.0f) mo->radius = req->radius;
  if (req->min_mass != 0.0f) mo->min_mass = req->min_mass < 0.0f ? 0.0f : req->min_mass;
  mo->polish_steps = (int)req->polish_steps;
  return ember_modes_opts_check(mo, err);
}

/* ---- training options ----------------------------------------------------------------------- */

/* Counts past this could not become ints; the library refuses far smaller ones itself, with
 * its own message, once they are converted. */
#define WIRE_COUNT_MAX (1u << 30)

void ember_wire_train_to_msg(const ember_train_opts *o, Ember__V1__TrainRequest *r) {
  r->method = (char *)ember_method_name(o->method);
  r->arch = (char *)ember_arch_name(o->arch);
  r->steps = o->steps;
  r->batch = (uint32_t)o->batch;
  r->negatives = (uint32_t)o->negatives;
  r->width = (uint32_t)o->width;
  r->depth = (uint32_t)o->depth;
  r->lr = o->lr;
  r->lr_decay = o->lr_decay;
  r->decay_steps = (uint32_t)o->decay_steps;
  r->temperature = o->temperature;
  r->optional_bound_margin_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_BOUND_MARGIN_BOUND_MARGIN;
  r->bound_margin = o->bound_margin;
  r->seed = o->seed;
  r->spectral_norm = o->spectral_norm != 0;
  r->optional_ema_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_EMA_EMA;
  r->ema = o->ema;
  r->val_split = o->val_split; /* o->val, a local dataset, does not travel */
  r->samples = (uint32_t)o->infer.samples;
  r->iterations = (uint32_t)o->infer.iters;
  r->sigma = o->infer.sigma;
  r->shrink = o->infer.shrink;
  if (o->method == EMBER_METHOD_LANGEVIN) {
    r->chain_steps = (uint32_t)o->langevin.steps;
    r->schedule = (char *)ember_schedule_name(o->langevin.schedule);
    r->step_init = o->langevin.step_init;
    r->step_final = o->langevin.step_final;
    r->optional_gamma_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_GAMMA_GAMMA;
    r->gamma = o->langevin.gamma;
    r->optional_noise_scale_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_NOISE_SCALE_NOISE_SCALE;
    r->noise_scale = o->langevin.noise_scale;
    r->optional_delta_max_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_DELTA_MAX_DELTA_MAX;
    r->delta_max = o->langevin.delta_max;
    r->optional_penalty_margin_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_PENALTY_MARGIN_PENALTY_MARGIN;
    r->penalty_margin = o->penalty_margin;
    r->optional_penalty_weight_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_PENALTY_WEIGHT_PENALTY_WEIGHT;
    r->penalty_weight = o->penalty_weight;
    r->uniform_negatives = (uint32_t)o->uniform_negatives;
  }
  if (o->method == EMBER_METHOD_ARDFO) {
    r->optional_prefix_share_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_PREFIX_SHARE_PREFIX_SHARE;
    r->prefix_share = o->keep_prefix_share;
    r->optional_prefix_noise_case = EMBER__V1__TRAIN_REQUEST__OPTIONAL_PREFIX_NOISE_PREFIX_NOISE;
    r->prefix_noise = o->prefix_noise;
  }
}

/* The first Langevin-only field r sets, or NULL. */
static const char *langevin_field(const Ember__V1__TrainRequest *r) {
  if (r->chain_steps) return "chain_steps";
  if (r->schedule && *r->schedule) return "schedule";
  if (r->step_init != 0.0f) return "step_init";
  if (r->step_final != 0.0f) return "step_final";
  if (r->optional_gamma_case) return "gamma";
  if (r->optional_noise_scale_case) return "noise_scale";
  if (r->optional_delta_max_case) return "delta_max";
  if (r->optional_penalty_margin_case) return "penalty_margin";
  if (r->optional_penalty_weight_case) return "penalty_weight";
  if (r->uniform_negatives) return "uniform_negatives";
  return NULL;
}

int ember_wire_train_from_msg(const Ember__V1__TrainRequest *r, ember_train_opts *o,
                              ember_err *err) {
  const char *method = r->method && *r->method ? r->method : "dfo";
  ember_method mth;
  if (ember_method_parse(method, &mth) < 0)
    return ember_fail(err, EMBER_EINVAL, "method must be dfo, ardfo, langevin or mse, got '%.64s'", method);
  ember_train_opts_for_method(o, mth); /* `ember train --method M`'s defaults */
  if (r->arch && *r->arch && ember_arch_parse(r->arch, &o->arch) < 0)
    return ember_fail(err, EMBER_EINVAL, "arch must be resnet or mlp, got '%.64s'", r->arch);
  const char *wrong = mth == EMBER_METHOD_LANGEVIN ? NULL : langevin_field(r);
  if (wrong)
    return ember_fail(err, EMBER_EINVAL, "%s applies to method langevin only (this request: %s)", wrong,
                      method);
  if (mth != EMBER_METHOD_ARDFO && (r->optional_prefix_share_case || r->optional_prefix_noise_case))
    return ember_fail(err, EMBER_EINVAL, "%s applies to method ardfo only (this request: %s)",
                      r->optional_prefix_share_case ? "prefix_share" : "prefix_noise", method);
  const uint32_t big = WIRE_COUNT_MAX;
  if (r->batch > big || r->negatives > big || r->width > big || r->depth > big ||
      r->decay_steps > big || r->samples > big || r->iterations > big || r->chain_steps > big)
    return ember_fail(err, EMBER_EINVAL, "a size field (batch, negatives, width, depth, decay_steps, "
                                         "samples, iterations or chain_steps) is out of range");
  if (r->steps < 0)
    return ember_fail(err, EMBER_EINVAL, "steps must be >= 1, got %lld", (long long)r->steps);
  if (r->steps) o->steps = r->steps;
  if (r->batch) o->batch = (int)r->batch;
  if (r->negatives) o->negatives = (int)r->negatives;
  if (r->width) o->width = (int)r->width;
  if (r->depth) o->depth = (int)r->depth;
  if (r->lr != 0.0f) o->lr = r->lr;
  if (r->lr_decay != 0.0f) o->lr_decay = r->lr_decay;
  if (r->decay_steps) o->decay_steps = (int)r->decay_steps;
  if (r->temperature != 0.0f) o->temperature = r->temperature;
  if (r->optional_bound_margin_case) o->bound_margin = r->bound_margin;
  o->seed = r->seed;
  o->spectral_norm = r->spectral_norm;
  if (r->optional_ema_case) o->ema = r->ema;
  o->val_split = r->val_split; /* ember_train_opts_check refuses values outside [0, 1) */
  if (r->samples) o->infer.samples = (int)r->samples;
  if (r->iterations) o->infer.iters = (int)r->iterations;
  if (r->sigma != 0.0f) o->infer.sigma = r->sigma;
  if (r->shrink != 0.0f) o->infer.shrink = r->shrink;
  if (r->chain_steps) o->langevin.steps = (int)r->chain_steps;
  if (r->schedule && *r->schedule && ember_schedule_parse(r->schedule, &o->langevin.schedule) < 0)
    return ember_fail(err, EMBER_EINVAL, "schedule must be ibc or poly, got '%.64s'", r->schedule);
  if (r->step_init != 0.0f) o->langevin.step_init = r->step_init;
  if (r->step_final != 0.0f) o->langevin.step_final = r->step_final;
  if (r->optional_gamma_case) o->langevin.gamma = r->gamma;
  if (r->optional_noise_scale_case) o->langevin.noise_scale = r->noise_scale;
  if (r->optional_delta_max_case) o->langevin.delta_max = r->delta_max;
  if (r->optional_penalty_margin_case) o->penalty_margin = r->penalty_margin;
  if (r->optional_penalty_weight_case) o->penalty_weight = r->penalty_weight;
  if (r->uniform_negatives > 1u << 16)
    return ember_fail(err, EMBER_EINVAL, "uniform negatives must be 0..65536, got %u", r->uniform_negatives);
  o->uniform_negatives = (int)r->uniform_negatives;
  if (r->optional_prefix_share_case) o->keep_prefix_share = r->prefix_share;
  if (r->optional_prefix_noise_case) o->prefix_noise = r->prefix_noise;
  return ember_train_opts_check(o, err);
}
