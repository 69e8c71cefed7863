/* grpc.c - what both ends of an ember.v1 call need from gRPC core besides the call itself:
 * the status codes' names (logs, metrics, GetModel's failure counts, the CLI's messages) and a
 * protobuf-c message in a byte buffer. One table of names, so that a failure is counted under
 * the name the client prints. */
#include <grpc/byte_buffer.h>
#include <grpc/slice.h>

#include "wire.h"

static const char *const status_names[EMBER_WIRE_NCODES] = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED"};
_Static_assert(EMBER_WIRE_NCODES == GRPC_STATUS_UNAUTHENTICATED + 1, "one name per gRPC status code");

const char *ember_wire_status_name(grpc_status_code code) {
  return (unsigned)code < EMBER_WIRE_NCODES ? status_names[code] : NULL;
}

grpc_byte_buffer *ember_wire_pack(const ProtobufCMessage *msg) {
  size_t len = protobuf_c_message_get_packed_size(msg);
  grpc_slice slice = grpc_slice_malloc(len);
  protobuf_c_message_pack(msg, GRPC_SLICE_START_PTR(slice));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);
  return bb;
}
