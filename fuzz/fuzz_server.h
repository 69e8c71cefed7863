/* fuzz_server.h - an emberd without a network, for the request fuzz targets.
 *
 * fuzz_server() returns a server whose configuration is emberd's defaults (srv_config_parse)
 * with --models and --data-dir in a temporary directory, and whose registry lists one small
 * model of each method (names "dfo" with versions 1 and 3, "ardfo", "langevin", "mse"; all
 * built in memory) plus "broken", a model with a load error and no version. Nothing is
 * listening and no thread runs: the decode functions only read the registry and the
 * configuration. The first input byte of every request target picks the method.
 */
#ifndef EMBER_FUZZ_SERVER_H
#define EMBER_FUZZ_SERVER_H

#include "server.h"

server *fuzz_server(void);
/* A fresh call of method rpc on fuzz_server(); fuzz_call_free releases what a decode put in it. */
void fuzz_call_init(srv_call *c, srv_rpc rpc);
void fuzz_call_free(srv_call *c);
/* Aborts with what when !ok: a broken promise is a finding like a crash. */
void fuzz_check(int ok, const char *what, const char *detail);
/* What every refusal must be: a real error code and a message. */
void fuzz_check_status(const srv_status *st);

#endif
