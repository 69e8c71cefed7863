/* policy.h - the model repository's names and a model's serving policy: which files are
 * models and versions, DIR/<model>/serving.conf, and which version is the default.
 *
 * emberd serves every loaded version to requests that name it, and one of them, the default,
 * to requests that ask for version 0. Which one is the default is decided here, from the
 * versions' signatures (x_dim, y_dim and the columns' names: ember_signature) and a small text file beside them:
 *
 *     # DIR/<model>/serving.conf
 *     version = latest               # or a version number: the default is that one (a pin)
 *     allow_signature_change = 5, 7  # or any: these versions may change the signature
 *
 * Blank lines and '#' comments are ignored; each key at most once; at most
 * SRV_POLICY_MAX_BYTES. No file is the same as `version = latest` and no allowed change.
 *
 * The rule (srv_policy_walk): the loaded versions are read in ascending order; the lowest
 * starts the lineage, and each later version must have the signature of the last version
 * accepted before it, unless allow_signature_change names it (or says any). A version that
 * breaks the lineage without that is refused: it cannot become the default, latest or pinned,
 * because a client that sends x and reads y would silently get answers of another shape. The
 * rule reads only the directory, so emberd decides the same after a restart as it did live.
 *
 * Both emberd (registry.c) and `ember pin` (client/cmd_pin.c) use this file, so the format is
 * written down once; it needs nothing but libember's signature and the C library.
 *
 *     srv_policy p;  char why[256];
 *     if (srv_policy_parse(text, len, &p, why, sizeof why) < 0) ...;   // why: "line 2: ..."
 *     srv_policy_item v[3] = {{1, {2, 1}}, {2, {2, 1}}, {3, {2, 2}}};
 *     int latest = srv_policy_walk(&p, v, 3);   // 1 (version 2); v[2].refused_by == 2
 */
#ifndef EMBERD_POLICY_H
#define EMBERD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "ember/model.h"

/* A version file's name, "<positive integer>.safetensors", -> its version; 0 for any other
 * name (hidden files, leading zeros, overflow). The scan, Train's publisher and `ember pin`
 * read names with it. */
int64_t registry_version_of(const char *file);
/* [A-Za-z0-9_.-]{1,64}, not starting with '.' (hidden directories are not models) */
int srv_valid_model_name(const char *name);

#define SRV_POLICY_FILE "serving.conf"
#define SRV_POLICY_MAX_BYTES 4096
#define SRV_POLICY_MAX_ALLOW 64

typedef struct srv_policy {
  int64_t pin;   /* version = N: the default is version N; 0 = latest */
  int allow_any; /* allow_signature_change = any */
  int nallow;
  int64_t allow[SRV_POLICY_MAX_ALLOW]; /* allow_signature_change = N, M, ... */
} srv_policy;

/* The policy of a directory without serving.conf: latest, no change allowed. */
void srv_policy_default(srv_policy *p);

/* Parses len bytes of serving.conf. 0, or -1 with *p the default and the reason in why
 * ("line 3: version must be latest or a positive version number, got 'x'"). */
int srv_policy_parse(const char *text, size_t len, srv_policy *p, char *why, size_t why_len);

/* Whether the text sets anything (more than blank lines and comments). */
int srv_policy_has_settings(const char *text, size_t len);

/* Whether version may change the signature. */
int srv_policy_allows(const srv_policy *p, int64_t version);

/* serving.conf's text with its `version` line replaced by `version = N` (version 0: removed,
 * which means latest); other lines are kept as they are. A new text starts with a comment
 * line. NULL with the reason in why when the text does not parse (it is not edited blind) or
 * memory runs out; otherwise malloc'd and NUL-terminated (caller frees). */
char *srv_policy_with_version(const char *text, size_t len, int64_t version, char *why,
                              size_t why_len);

/* One loaded version for srv_policy_walk. */
typedef struct srv_policy_item {
  int64_t version;
  ember_signature sig;
  int64_t refused_by; /* out: 0 accepted, else the accepted version whose signature it breaks */
} srv_policy_item;

/* Applies the rule above to n versions in ascending order, setting each refused_by; returns
 * the index of the highest accepted version (-1 when n is 0). */
int srv_policy_walk(const srv_policy *p, srv_policy_item *items, int n);

#endif
