/* fuzz_checkpoint.c - libFuzzer target: bytes as a safetensors checkpoint.
 *
 * ember_model_load_mem runs the same checks as loading a file (the file path only adds fstat
 * and pread). Beyond "no crash, no leak, no undefined behaviour" it asserts what the loader
 * promises: a refusal leaves the model zeroed with a message, and a model it accepts is one
 * ember_model_save accepts too (save refuses what load would refuse, so the two must agree),
 * loads back from memory and matches parameter for parameter.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ember/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, const char *msg) {
  if (ok) return;
  fprintf(stderr, "fuzz_checkpoint: %s (%s)\n", what, msg ? msg : "");
  abort();
}

/* What a refused load must leave: a zeroed model (the caller may free it or not). */
static int zeroed(const ember_model *m) {
  static const ember_model zero;
  return memcmp(m, &zero, sizeof zero) == 0;
}

static void round_trip(const ember_model *m) {
  /* tmpfs where there is one: save fsyncs, and mutated data regions load often */
  char path[64];
  snprintf(path, sizeof path, "%s/ember-fuzz-ckpt-%ld.safetensors",
           access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
  ember_err err;
  int rc = ember_model_save(m, path, &err);
  check(rc == 0, "a model that loads must save", err.msg);
  FILE *f = fopen(path, "rb");
  check(f != NULL, "the saved file must open", path);
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  rewind(f);
  unsigned char *buf = malloc(len > 0 ? (size_t)len : 1);
  check(buf && fread(buf, 1, (size_t)len, f) == (size_t)len, "the saved file must read", path);
  fclose(f);
  unlink(path);
  ember_model back;
  rc = ember_model_load_mem(buf, (size_t)len, "saved", &back, &err);
  check(rc == 0, "a saved model must load", err.msg);
  check(back.method == m->method && back.x_dim == m->x_dim && back.y_dim == m->y_dim &&
            back.net.nparams == m->net.nparams &&
            memcmp(back.net.params, m->net.params, m->net.nparams * sizeof(float)) == 0,
        "a model must load back as it was saved", NULL);
  ember_model_free(&back);
  free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ember_model m;
  ember_err err;
  err.msg[0] = 0;
  int rc = ember_model_load_mem(data, size, "fuzz", &m, &err);
  if (rc < 0) {
    check(zeroed(&m), "a refused checkpoint must leave the model zeroed", err.msg);
    check(err.msg[0] != 0, "a refusal must say why", NULL);
    return 0;
  }
  round_trip(&m);
  ember_model_free(&m);
  return 0;
}
