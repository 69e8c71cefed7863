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

static void print_default(FILE *f, const opt_spec *s) {
  switch (s->type) {
  case OPT_INT: fprintf(f, " (default %d)", *(int *)s->dst); break;
  case OPT_I64: fprintf(f, " (default %lld)", (long long)*(int64_t *)s->dst); break;
  case OPT_U64: fprintf(f, " (default %llu)", (unsigned long long)*(uint64_t *)s->dst); break;
  case OPT_FLOAT: fprintf(f, " (default %g)", (double)*(float *)s->dst); break;
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
