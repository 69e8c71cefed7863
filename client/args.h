/* args.h - table-driven command-line options for the ember CLI.
 *
 * Each verb declares a table of options (name, type, destination, help); args_parse fills the
 * destinations from argv, accepting "--name value" and "--name=value", and refuses unknown
 * options, missing values and malformed numbers with a message naming the option; an option
 * that only the verb's other mode (local, or remote with --server) has is named as such. The
 * same table prints the verb's --help, with defaults taken from the destinations' initial values.
 */
#ifndef EMBER_ARGS_H
#define EMBER_ARGS_H

#include <stdint.h>
#include <stdio.h>

typedef enum { OPT_INT, OPT_I64, OPT_U64, OPT_FLOAT, OPT_STR, OPT_FLAG, OPT_LIST } opt_type;

#define ARGS_LIST_MAX 16

typedef struct int_list {
  int n;
  int v[ARGS_LIST_MAX];
} int_list;

typedef struct opt_spec {
  const char *name; /* without the leading dashes */
  opt_type type;
  void *dst;        /* int*, int64_t*, uint64_t*, float*, const char**, int* (flag), int_list* */
  const char *metavar;
  const char *help;
  int min_set;      /* set to 1 by args_parse when the option was given */
  int hide_default; /* the help text states the default itself */
} opt_spec;

/* Parses argv[0..argc) (the verb's arguments, without the verb). Returns 0, 1 if --help was
 * asked (help printed to stdout), or -1 after printing an error to stderr. */
int args_parse(const char *verb, const char *usage, opt_spec *specs, int nspecs, int argc,
               char **argv);
void args_help(FILE *f, const char *verb, const char *usage, const opt_spec *specs, int nspecs);
/* The size of a numeric option's value (OPT_INT, OPT_I64, OPT_U64, OPT_FLOAT, OPT_FLAG); 0 for
 * the others. */
size_t args_value_size(opt_type t);
/* A numeric value of type t at p, as the help prints defaults. */
void args_value_text(opt_type t, const void *p, char *buf, size_t len);
/* Whether option `name` was given on the command line. */
int args_given(const opt_spec *specs, int nspecs, const char *name);

/* Checks a --server target: HOST:PORT, [IPv6]:PORT, or one of gRPC's schemes (unix:PATH, ...).
 * A host without a port is refused (gRPC would quietly try port 443). 0, or -1 after saying
 * what is wrong on stderr ("ember VERB: ..."; verb "" for the global option). */
int args_server_target(const char *verb, const char *target);

#endif
