/* reflection.c - placeholder until server reflection lands. */
#include "server.h"

void reflection_handle(srv_call *c) { srv_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "reflection is not built yet"); }
void reflection_event(srv_call *c, int ok) { (void)ok; srv_call_free(c); }
