/* fuzz_train.c - libFuzzer target: ember.v1.Ember/Train requests, decoded and validated by
 * train_decode against fuzz_server() (emberd's default limits, --models and --data-dir in a
 * temporary directory, no job running).
 *
 * Input: the TrainRequest message. A refusal must be an error status with a message; an
 * accepted request gives a job that has not started, which is discarded (train_decode has
 * checked its options with ember_train_opts_check and its memory against --max-train-mib).
 */
#include <stdint.h>

#include "fuzz_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  server *s = fuzz_server();
  struct train_job *j = NULL;
  srv_status st = {GRPC_STATUS_OK, ""};
  if (train_decode(s, data, (long)size, &j, &st) < 0) {
    fuzz_check_status(&st);
    fuzz_check(j == NULL, "a refused request has no job", st.msg);
  } else {
    fuzz_check(j != NULL, "an accepted request has a job", NULL);
    train_job_discard(j);
  }
  fuzz_check(s->train_running == 0 && s->train_jobs == NULL, "decoding starts nothing", NULL);
  return 0;
}
