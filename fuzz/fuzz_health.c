/* fuzz_health.c - libFuzzer target: grpc.health.v1.Health and grpc.reflection requests.
 *
 * Input: one byte that picks the method (byte % 4: health Check, health Watch, reflection
 * v1, v1alpha), then the request message. Health: health_decode must refuse with an error
 * status and a message, or give a NUL-terminated service name; a Check it accepts names a
 * served service. Reflection: reflection_respond answers every request, bad ones with an
 * error_response, and its answer must be one a strict proto3 parser reads: it decodes as a
 * ServerReflectionResponse and every string in it is UTF-8 (protobuf-c does not check that,
 * so strings_utf8 walks the message).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_server.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* UTF-8 as RFC 3629 has it, written apart from the server's own check on purpose. */
static int utf8(const unsigned char *p) {
  while (*p) {
    uint32_t cp;
    int n;
    if (*p < 0x80) cp = *p, n = 0;
    else if ((*p & 0xe0) == 0xc0) cp = *p & 0x1f, n = 1;
    else if ((*p & 0xf0) == 0xe0) cp = *p & 0x0f, n = 2;
    else if ((*p & 0xf8) == 0xf0) cp = *p & 0x07, n = 3;
    else return 0;
    for (int i = 1; i <= n; i++) {
      if ((p[i] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (p[i] & 0x3f);
    }
    static const uint32_t least[4] = {0, 0x80, 0x800, 0x10000};
    if (cp < least[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    p += n + 1;
  }
  return 1;
}

/* Whether every string field of m and of the messages in it is UTF-8. */
static int strings_utf8(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  const char *base = (const char *)m;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE) continue;
    size_t n = 1;
    const void *const *items = (const void *const *)(base + f->offset);
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      n = *(const size_t *)(base + f->quantifier_offset);
      items = *(const void *const *const *)(base + f->offset);
    } else if ((f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) && *(const uint32_t *)(base + f->quantifier_offset) != f->id) {
      continue;
    }
    for (size_t k = 0; k < n; k++)
      if (items[k] && !(f->type == PROTOBUF_C_TYPE_STRING ? utf8(items[k]) : strings_utf8(items[k]))) return 0;
  }
  return 1;
}

static const srv_rpc methods[4] = {RPC_HEALTH_CHECK, RPC_HEALTH_WATCH, RPC_REFLECTION_V1, RPC_REFLECTION_V1ALPHA};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fuzz_server();
  srv_rpc rpc = methods[data[0] % 4];
  const uint8_t *msg = data + 1;
  long len = (long)(size - 1);
  if (rpc == RPC_HEALTH_CHECK || rpc == RPC_HEALTH_WATCH) {
    char service[128];
    memset(service, 'x', sizeof service);
    srv_status st = {GRPC_STATUS_OK, ""};
    if (health_decode(rpc, msg, len, service, sizeof service, &st) < 0) {
      fuzz_check_status(&st);
    } else {
      fuzz_check(memchr(service, 0, sizeof service) != NULL, "the service name is terminated", NULL);
      fuzz_check(rpc != RPC_HEALTH_CHECK || !service[0] || strcmp(service, "ember.v1.Ember") == 0 ||
                   strcmp(service, "inference.GRPCInferenceService") == 0,
                 "a Check it accepts names a served service", service);
    }
    return 0;
  }
  grpc_byte_buffer *bb = reflection_respond(rpc, msg, len);
  fuzz_check(bb != NULL, "reflection answers every request", NULL);
  uint8_t *bytes;
  long n = srv_bytes(bb, &bytes);
  grpc_byte_buffer_destroy(bb);
  fuzz_check(n >= 0, "the answer reads back", NULL);
  Grpc__Reflection__V1__ServerReflectionResponse *r =
      grpc__reflection__v1__server_reflection_response__unpack(NULL, (size_t)n, bytes);
  fuzz_check(r != NULL, "the answer is a ServerReflectionResponse", NULL);
  fuzz_check(r->message_response_case != GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE__NOT_SET,
             "the answer says something", NULL);
  fuzz_check(strings_utf8(&r->base), "every string of the answer is UTF-8", NULL);
  grpc__reflection__v1__server_reflection_response__free_unpacked(r, NULL);
  free(bytes);
  return 0;
}
