/* auth.c - access control: TLS credentials, bearer tokens, and the start-up warning.
 *
 * TLS: --tls-cert/--tls-key give the server's certificate chain and key (PEM); with
 * --tls-client-ca every client must present a certificate signed by that CA (mutual TLS).
 * The files are read once at start-up; changing them needs a restart.
 *
 * Tokens: --token-file and --admin-token-file hold one token per line (surrounding blanks
 * trimmed, empty lines and lines starting with '#' skipped). A guarded call must carry the
 * metadata `authorization: Bearer <token>`: without it (or with another scheme) the call is
 * answered UNAUTHENTICATED, with a token that is not on the list PERMISSION_DENIED. Which
 * calls are guarded:
 *   - user level (Predict, Sample, ListModels, GetModel, reflection, unknown methods): when
 *     --token-file is given; a user or an admin token is accepted.
 *   - admin level (Train, when it exists): an admin token when --admin-token-file is given,
 *     otherwise the user rule.
 *   - health (Check, Watch): never, so container health checks and load balancers work
 *     without a secret.
 * Every comparison runs over every configured token and every byte of it, whatever matches,
 * so the time taken says nothing about which bytes were right. Tokens are never logged: the
 * messages name files and line numbers, never contents, and the memory holding them is
 * cleared before it is freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>

#include "server.h"

#define TOKEN_MAX 4096      /* bytes per token */
#define PEM_MAX (1 << 20)   /* bytes per PEM file */

/* ---- files ---------------------------------------------------------------------------------- */

/* The whole of a small file, NUL-terminated (caller frees), or NULL with a message on stderr. */
static char *read_small_file(const char *flag, const char *path, long max, long *len) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "emberd: %s %s: cannot open: %s\n", flag, path, strerror(errno));
    return NULL;
  }
  char *buf = malloc((size_t)max + 1);
  size_t n = buf ? fread(buf, 1, (size_t)max + 1, f) : 0;
  int err = ferror(f);
  fclose(f);
  if (!buf || err) {
    fprintf(stderr, "emberd: %s %s: cannot read%s\n", flag, path, buf ? "" : " (out of memory)");
    free(buf);
    return NULL;
  }
  if (n > (size_t)max) {
    fprintf(stderr, "emberd: %s %s: larger than %ld bytes\n", flag, path, max);
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  if (len) *len = (long)n;
  return buf;
}

static void wipe_free(char *p, size_t n) {
  if (!p) return;
  explicit_bzero(p, n);
  free(p);
}

void auth_tokens_free(auth_tokens *t) {
  for (int i = 0; i < t->n; i++) wipe_free(t->token[i], t->len[i]);
  free(t->token);
  free(t->len);
  memset(t, 0, sizeof *t);
}

/* A token is printable ASCII without blanks: what an HTTP/2 header value may carry after
 * "Bearer " and what a shell or a config file keeps intact. */
static int token_char_ok(unsigned char ch) { return ch > 0x20 && ch < 0x7f; }

static int tokens_load(const char *flag, const char *path, auth_tokens *t) {
  memset(t, 0, sizeof *t);
  struct stat st;
  if (stat(path, &st) == 0 && (st.st_mode & 0077))
    srv_log(LOG_WARN, "token file is readable by other users; chmod 600 it", "flag=%s file=%s", flag, path);
  long len;
  char *text = read_small_file(flag, path, 1 << 20, &len);
  if (!text) return -1;
  int rc = 0, line = 0;
  for (char *p = text; *p && rc == 0;) {
    char *eol = strchr(p, '\n');
    char *next = eol ? eol + 1 : p + strlen(p);
    char *end = eol ? eol : next;
    line++;
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r')) end--;
    size_t n = (size_t)(end - p);
    if (n > 0 && *p != '#') {
      for (size_t i = 0; i < n && rc == 0; i++)
        if (!token_char_ok((unsigned char)p[i])) {
          fprintf(stderr, "emberd: %s %s line %d: a token may hold printable ASCII characters "
                          "only, without blanks\n", flag, path, line);
          rc = -1;
        }
      if (rc == 0 && n > TOKEN_MAX) {
        fprintf(stderr, "emberd: %s %s line %d: a token is at most %d characters\n", flag, path, line, TOKEN_MAX);
        rc = -1;
      }
      if (rc == 0) {
        char **tok = realloc(t->token, (size_t)(t->n + 1) * sizeof *tok);
        if (tok) t->token = tok;
        size_t *lens = tok ? realloc(t->len, (size_t)(t->n + 1) * sizeof *lens) : NULL;
        if (lens) t->len = lens;
        char *copy = lens ? malloc(n) : NULL;
        if (!copy) {
          fprintf(stderr, "emberd: %s %s: out of memory\n", flag, path);
          rc = -1;
        } else {
          memcpy(copy, p, n);
          t->token[t->n] = copy;
          t->len[t->n++] = n;
        }
      }
    }
    p = next;
  }
  wipe_free(text, (size_t)len);
  if (rc == 0 && t->n == 0) {
    fprintf(stderr, "emberd: %s %s holds no token (one per line; '#' starts a comment line)\n", flag, path);
    rc = -1;
  }
  if (rc < 0) auth_tokens_free(t);
  return rc;
}

/* ---- start-up ------------------------------------------------------------------------------ */

/* Whether HOST:PORT names a loopback address only: 127.0.0.0/8, ::1, localhost, a unix socket. */
static int loopback_only(const char *listen) {
  if (strncmp(listen, "unix:", 5) == 0 || strncmp(listen, "unix-abstract:", 14) == 0) return 1;
  if (strncmp(listen, "ipv4:", 5) == 0) listen += 5;
  else if (strncmp(listen, "ipv6:", 5) == 0) listen += 5;
  char host[256];
  const char *colon;
  if (listen[0] == '[') {
    colon = strchr(listen, ']');
    if (!colon) return 0;
    snprintf(host, sizeof host, "%.*s", (int)(colon - listen - 1), listen + 1);
  } else {
    colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);
    snprintf(host, sizeof host, "%.*s", (int)n, listen);
  }
  if (strcmp(host, "localhost") == 0 || strcmp(host, "::1") == 0) return 1;
  return strncmp(host, "127.", 4) == 0;
}

int auth_init(server *s) {
  const srv_config *c = &s->cfg;
  if (c->token_file && tokens_load("--token-file", c->token_file, &s->tokens) < 0) return -1;
  if (c->admin_token_file && tokens_load("--admin-token-file", c->admin_token_file, &s->admin_tokens) < 0) {
    auth_tokens_free(&s->tokens);
    return -1;
  }
  if (c->tls_cert) {
    s->tls_cert_pem = read_small_file("--tls-cert", c->tls_cert, PEM_MAX, NULL);
    s->tls_key_pem = s->tls_cert_pem ? read_small_file("--tls-key", c->tls_key, PEM_MAX, &s->tls_key_len) : NULL;
    s->tls_ca_pem = s->tls_key_pem && c->tls_client_ca
                        ? read_small_file("--tls-client-ca", c->tls_client_ca, PEM_MAX, NULL) : NULL;
    if (!s->tls_key_pem || (c->tls_client_ca && !s->tls_ca_pem)) {
      auth_free(s);
      return -1;
    }
  }
  return 0;
}

void auth_log_startup(server *s) {
  const srv_config *c = &s->cfg;
  const int tls = c->tls_cert != NULL, loop = loopback_only(c->listen);
  srv_log(LOG_INFO, "access control", "tls=%s tokens=%d admin_tokens=%d health=open",
          !tls ? "off" : c->tls_client_ca ? "mutual" : "on", s->tokens.n, s->admin_tokens.n);
  if (loop) return;
  if (!tls && !s->tokens.n && !s->admin_tokens.n)
    srv_log(LOG_WARN, "listening beyond loopback without TLS or tokens: anyone who can reach this "
            "address can use every model; see docs/emberd.md, 'Access control' (--tls-cert/--tls-key, --token-file)",
            "listen=%s", c->listen);
  else if (!tls)
    srv_log(LOG_WARN, "tokens travel in clear text on a non-loopback listener: add --tls-cert/--tls-key",
            "listen=%s", c->listen);
}

grpc_server_credentials *auth_server_credentials(server *s) {
  if (!s->tls_cert_pem) return grpc_insecure_server_credentials_create();
  grpc_ssl_pem_key_cert_pair pair = {s->tls_key_pem, s->tls_cert_pem};
  return grpc_ssl_server_credentials_create_ex(
      s->tls_ca_pem, &pair, 1,
      s->tls_ca_pem ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE,
      NULL);
}

void auth_free(server *s) {
  auth_tokens_free(&s->tokens);
  auth_tokens_free(&s->admin_tokens);
  free(s->tls_cert_pem);
  wipe_free(s->tls_key_pem, (size_t)s->tls_key_len);
  free(s->tls_ca_pem);
  s->tls_cert_pem = s->tls_key_pem = s->tls_ca_pem = NULL;
}

/* ---- calls ---------------------------------------------------------------------------------- */

/* Whether `given` equals one of the tokens. Time depends on the tokens' lengths and the
 * given length only: every byte of every token is compared, and nothing stops early. */
static int token_listed(const auth_tokens *t, const unsigned char *given, size_t n) {
  unsigned found = 0;
  for (int k = 0; k < t->n; k++) {
    const unsigned char *tok = (const unsigned char *)t->token[k];
    size_t len = t->len[k];
    volatile unsigned diff = (unsigned)(len != n);
    for (size_t i = 0; i < len; i++) diff |= (unsigned)(tok[i] ^ (i < n ? given[i] : 0u));
    found |= (unsigned)(diff == 0);
  }
  return found != 0;
}

static void refuse(srv_call *c, grpc_status_code code, const char *why) {
  char *peer = grpc_call_get_peer(c->call);
  srv_log(LOG_INFO, "call refused", "rpc=%d status=%s reason=\"%s\" peer=%s", (int)c->rpc,
          srv_status_name(code), why, peer ? peer : "?");
  gpr_free(peer);
}

int auth_check(srv_call *c, auth_level level) {
  server *s = c->srv;
  if (level == AUTH_OPEN) return 0;
  const int admin = level == AUTH_ADMIN && s->admin_tokens.n > 0;
  if (!admin && s->tokens.n == 0) return 0;
  const char *who = admin ? "an admin token (--admin-token-file)" : "a token";
  const grpc_slice *value = NULL;
  for (size_t i = 0; i < c->md.count; i++)
    if (grpc_slice_str_cmp(c->md.metadata[i].key, "authorization") == 0) {
      value = &c->md.metadata[i].value;
      break;
    }
  if (!value) {
    refuse(c, GRPC_STATUS_UNAUTHENTICATED, "no authorization metadata");
    srv_call_fail(c, GRPC_STATUS_UNAUTHENTICATED,
                  "this server requires %s: send metadata 'authorization: Bearer <token>' "
                  "(ember: --token-file FILE or EMBER_TOKEN)", who);
    return -1;
  }
  const unsigned char *v = GRPC_SLICE_START_PTR(*value);
  size_t n = GRPC_SLICE_LENGTH(*value);
  /* RFC 6750: the scheme is case-insensitive, one or more spaces follow it */
  static const char scheme[] = "bearer";
  size_t i = 0;
  int is_bearer = n > 6;
  for (; is_bearer && i < 6; i++)
    if ((v[i] | 0x20) != (unsigned char)scheme[i]) is_bearer = 0;
  if (is_bearer && v[6] != ' ') is_bearer = 0;
  while (is_bearer && i < n && v[i] == ' ') i++;
  if (!is_bearer || i == n) {
    refuse(c, GRPC_STATUS_UNAUTHENTICATED, "authorization is not a bearer token");
    srv_call_fail(c, GRPC_STATUS_UNAUTHENTICATED,
                  "the authorization metadata must be 'Bearer <token>'; this server requires %s", who);
    return -1;
  }
  int ok = token_listed(&s->admin_tokens, v + i, n - i);
  if (!admin) ok |= token_listed(&s->tokens, v + i, n - i);
  if (!ok) {
    refuse(c, GRPC_STATUS_PERMISSION_DENIED, admin ? "not an admin token" : "unknown token");
    srv_call_fail(c, GRPC_STATUS_PERMISSION_DENIED, "%s", admin ? "this call needs an admin token (--admin-token-file); the token sent is not one"
                                                                : "the token sent is not accepted by this server");
    return -1;
  }
  return 0;
}

auth_level auth_level_of(srv_rpc rpc) {
  switch (rpc) {
  case RPC_HEALTH_CHECK:
  case RPC_HEALTH_WATCH:
  case RPC_KS_SERVER_LIVE:  /* the v2 protocol's probes, open as health is */
  case RPC_KS_SERVER_READY:
    return AUTH_OPEN;
  case RPC_TRAIN:
    return AUTH_ADMIN;
  default:
    return AUTH_USER;
  }
}
