/* args.c - option parsing and help for the ember CLI's verbs. */
#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *type_metavar(opt_type t) {
  switch (t) {
  case OPT_INT: case OPT_I64: case OPT_U64: return "N";
  case OPT_FLOAT: return "X";
  case OPT_STR: return "STR";
  case OPT_LIST: return "N[,N...]";
  default: return "";
  }
}

size_t args_value_size(opt_type t) {
  switch (t) {
  case OPT_INT: case OPT_FLAG: return sizeof(int);
  case OPT_I64: return sizeof(int64_t);
  case OPT_U64: return sizeof(uint64_t);
  case OPT_FLOAT: return sizeof(float);
  default: return 0;
  }
}

void args_value_text(opt_type t, const void *p, char *buf, size_t len) {
  switch (t) {
  case OPT_I64: snprintf(buf, len, "%lld", (long long)*(const int64_t *)p); break;
  case OPT_U64: snprintf(buf, len, "%llu", (unsigned long long)*(const uint64_t *)p); break;
  case OPT_FLOAT: snprintf(buf, len, "%g", (double)*(const float *)p); break;
  default: snprintf(buf, len, "%d", *(const int *)p); break;
  }
}

static void print_default(FILE *f, const opt_spec *s) {
  char v[32];
  switch (s->type) {
  case OPT_INT: case OPT_I64: case OPT_U64: case OPT_FLOAT:
    args_value_text(s->type, s->dst, v, sizeof v);
    fprintf(f, " (default %s)", v);
    break;
  case OPT_STR:
    if (*(const char **)s->dst) fprintf(f, " (default %s)", *(const char **)s->dst);
    break;
  case OPT_LIST: {
    const int_list *l = s->dst;
    if (l->n > 0) {
      fprintf(f, " (default ");
      for (int i = 0; i < l->n; i++) fprintf(f, "%s%d", i ? "," : "", l->v[i]);
      fprintf(f, ")");
    }
    break;
  }
  default: break;
  }
}

void args_help(FILE *f, const char *verb, const char *usage, const opt_spec *specs, int nspecs) {
  fprintf(f, "usage: ember %s %s\n\noptions:\n", verb, usage);
  for (int i = 0; i < nspecs; i++) {
    const opt_spec *s = &specs[i];
    char left[64];
    snprintf(left, sizeof left, "--%s%s%s", s->name, s->type == OPT_FLAG ? "" : " ",
             s->type == OPT_FLAG ? "" : (s->metavar ? s->metavar : type_metavar(s->type)));
    fprintf(f, "  %-24s %s", left, s->help);
    if (!s->hide_default) print_default(f, s);
    fprintf(f, "\n");
  }
  fprintf(f, "  %-24s %s\n", "--help", "show this help");
}

static int parse_value(const char *verb, opt_spec *s, const char *v) {
  char *end = NULL;
  errno = 0;
  switch (s->type) {
  case OPT_INT: case OPT_I64: {
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || (s->type == OPT_INT && (x < -2147483647LL || x > 2147483647LL)))
      goto bad;
    if (s->type == OPT_INT) *(int *)s->dst = (int)x;
    else *(int64_t *)s->dst = (int64_t)x;
    return 0;
  }
  case OPT_U64: {
    if (*v == '-') goto bad;
    unsigned long long x = strtoull(v, &end, 10);
    if (!*v || *end || errno) goto bad;
    *(uint64_t *)s->dst = (uint64_t)x;
    return 0;
  }
  case OPT_FLOAT: {
    float x = strtof(v, &end);
    if (!*v || *end || errno || !isfinite(x)) goto bad;
    *(float *)s->dst = x;
    return 0;
  }
  case OPT_STR:
    *(const char **)s->dst = v;
    return 0;
  case OPT_LIST: {
    int_list *l = s->dst;
    l->n = 0;
    const char *p = v;
    while (*p) {
      if (l->n == ARGS_LIST_MAX) {
        fprintf(stderr, "ember %s: --%s takes at most %d values\n", verb, s->name, ARGS_LIST_MAX);
        return -1;
      }
      long x = strtol(p, &end, 10);
      if (end == p || errno || x < -2147483647L || x > 2147483647L || (*end && *end != ',')) goto bad;
      l->v[l->n++] = (int)x;
      p = *end ? end + 1 : end;
      if (*end && !*p) goto bad;
    }
    if (l->n == 0) goto bad;
    return 0;
  }
  default: return 0;
  }
bad:
  fprintf(stderr, "ember %s: --%s expects %s, got '%s'\n", verb, s->name,
          s->type == OPT_FLOAT ? "a finite number"
          : s->type == OPT_LIST ? "a comma-separated list of integers"
          : s->type == OPT_U64 ? "a non-negative integer" : "an integer",
          v);
  return -1;
}

/* Options that one mode of a verb has and the other does not: an unknown option found here
 * is the other mode's, and the message says which mode takes it instead of "unknown option".
 * remote 1: only `ember --server HOST:PORT VERB` has it; 0: only local mode. verbs: the verbs
 * that have it in that mode, space-separated. */
static const struct {
  const char *name, *verbs;
  int remote;
  const char *hint;
} mode_opts[] = {
    {"version", "predict sample info", 1, "a version of the model the server serves; locally --model names a checkpoint file"},
    {"deadline-ms", "predict sample info models health", 1, "each request's deadline"},
    {"chunk-rows", "predict sample", 1, "input rows per request"},
    {"model", "train", 1, "the model on the server that gets a new version; locally, --out FILE names the checkpoint"},
    {"dataset", "train", 1, "a file in the server's --data-dir; locally, --data FILE"},
    {"tls-ca", "train predict sample info models health", 1, "TLS to the server"},
    {"tls-cert", "train predict sample info models health", 1, "TLS to the server"},
    {"tls-key", "train predict sample info models health", 1, "TLS to the server"},
    {"token-file", "train predict sample info models health", 1, "the server's bearer token"},
    {"out", "train", 0, "with --server the server publishes the model as the next version of --model NAME"},
    {"snapshot-every", "train", 0, "snapshots are written beside a local --out"},
};

/* Whether `verb` is one of the space-separated words in `verbs`. */
static int verb_in(const char *verb, const char *verbs) {
  size_t n = strlen(verb);
  for (const char *p = verbs; *p;) {
    const char *e = strchr(p, ' ');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    if (len == n && strncmp(p, verb, n) == 0) return 1;
    p += len + (e ? 1 : 0);
  }
  return 0;
}

/* Says which mode takes the unknown option --name (len bytes) of verb, if one does: 1, else 0. */
static int other_mode(const char *verb, const char *name, size_t len) {
  for (size_t i = 0; i < sizeof mode_opts / sizeof *mode_opts; i++) {
    if (strlen(mode_opts[i].name) != len || strncmp(mode_opts[i].name, name, len) != 0 ||
        !verb_in(verb, mode_opts[i].verbs))
      continue;
    if (mode_opts[i].remote)
      fprintf(stderr, "ember %s: --%s is for remote mode, ember --server HOST:PORT %s --%s ... (%s)\n", verb,
              mode_opts[i].name, verb, mode_opts[i].name, mode_opts[i].hint);
    else
      fprintf(stderr, "ember %s: --%s is for local mode, without --server (%s)\n", verb, mode_opts[i].name,
              mode_opts[i].hint);
    return 1;
  }
  return 0;
}

int args_server_target(const char *verb, const char *t) {
  static const char *const schemes[] = {"unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:", "vsock:"};
  const char *who = *verb ? verb : "", *sep = *verb ? " " : "";
  for (size_t i = 0; i < sizeof schemes / sizeof *schemes; i++)
    if (strncmp(t, schemes[i], strlen(schemes[i])) == 0) return 0; /* gRPC's own target syntax */
  if (strchr(t, ',')) { /* a cluster: every address HOST:PORT (remote_client.c lists them) */
    for (const char *p = t;; p++) {
      size_t n = strcspn(p, ",");
      char one[256];
      if (n == 0 || n >= sizeof one) {
        fprintf(stderr, "ember%s%s: --server %s: give addresses HOST:PORT separated by commas\n", sep, who, t);
        return -1;
      }
      memcpy(one, p, n);
      one[n] = 0;
      if (args_server_target(verb, one) < 0) return -1;
      p += n;
      if (!*p) return 0;
    }
  }
  const char *colon = strrchr(t, ':');
  if (t[0] == '[') { /* [IPv6]:PORT */
    const char *close = strchr(t, ']');
    colon = close && close[1] == ':' ? close + 1 : NULL;
  } else if (colon && strchr(t, ':') != colon) {
    fprintf(stderr, "ember%s%s: --server %s: an IPv6 address goes in brackets, [ADDRESS]:PORT (e.g. [::1]:50051)\n",
            sep, who, t);
    return -1;
  }
  if (!colon) {
    fprintf(stderr, "ember%s%s: --server %s has no port: give HOST:PORT (e.g. %s:50051; emberd listens on "
                    "port 50051 unless its --listen says otherwise)\n", sep, who, t, t);
    return -1;
  }
  const char *port = colon + 1;
  int ok = *port && strlen(port) <= 5;
  for (const char *p = port; *p && ok; p++) ok = *p >= '0' && *p <= '9';
  if (!ok || atoi(port) < 1 || atoi(port) > 65535) {
    fprintf(stderr, "ember%s%s: --server %s: the port must be a number 1..65535, got '%s'\n", sep, who, t, port);
    return -1;
  }
  if (colon == t) {
    fprintf(stderr, "ember%s%s: --server %s has no host: give HOST:PORT (e.g. localhost%s)\n", sep, who, t, t);
    return -1;
  }
  return 0;
}

int args_parse(const char *verb, const char *usage, opt_spec *specs, int nspecs, int argc,
               char **argv) {
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      args_help(stdout, verb, usage, specs, nspecs);
      return 1;
    }
    if (strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "ember %s: unexpected argument '%s' (options start with --; see ember %s --help)\n",
              verb, a, verb);
      return -1;
    }
    const char *name = a + 2, *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    opt_spec *s = NULL;
    for (int k = 0; k < nspecs && !s; k++)
      if (strlen(specs[k].name) == len && strncmp(specs[k].name, name, len) == 0) s = &specs[k];
    if (!s) {
      if (!other_mode(verb, name, len))
        fprintf(stderr, "ember %s: unknown option '--%.*s' (see ember %s --help)\n", verb, (int)len,
                name, verb);
      return -1;
    }
    s->min_set = 1;
    if (s->type == OPT_FLAG) {
      if (eq) {
        fprintf(stderr, "ember %s: --%s takes no value\n", verb, s->name);
        return -1;
      }
      *(int *)s->dst = 1;
      continue;
    }
    const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
    if (!v) {
      fprintf(stderr, "ember %s: --%s needs a value\n", verb, s->name);
      return -1;
    }
    if (parse_value(verb, s, v) < 0) return -1;
  }
  return 0;
}

int args_given(const opt_spec *specs, int nspecs, const char *name) {
  for (int k = 0; k < nspecs; k++)
    if (strcmp(specs[k].name, name) == 0) return specs[k].min_set;
  return 0;
}
