/* policy.c - the repository's names, serving.conf (a model's serving policy) and the rule
 * that picks a model's default version.
 *
 * The file is a few `key = value` lines, parsed strictly: an unknown key, a key given twice
 * or a value that is not what the key takes is an error naming the line, because a policy
 * misread is a wrong version served. What emberd does with an unreadable policy (keep the
 * last good one; at start-up serve no default) is registry.c's business; this file only reads
 * text and applies the rule, so that emberd and `ember pin` read the same format and the rule
 * can be tested without a server. policy.h has the format and the rule.
 */
#include "policy.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int srv_valid_model_name(const char *n) {
  size_t len = n ? strlen(n) : 0;
  if (len < 1 || len > 64 || n[0] == '.') return 0;
  for (size_t i = 0; i < len; i++) {
    char ch = n[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '.' || ch == '-'))
      return 0;
  }
  return 1;
}

int64_t registry_version_of(const char *file) {
  const char *dot = strrchr(file, '.');
  if (!dot || strcmp(dot, ".safetensors") != 0 || dot == file || file[0] == '0') return 0;
  int64_t v = 0;
  for (const char *p = file; p < dot; p++) {
    if (*p < '0' || *p > '9' || v > (INT64_MAX - 9) / 10) return 0;
    v = v * 10 + (*p - '0');
  }
  return v;
}

void srv_policy_default(srv_policy *p) { memset(p, 0, sizeof *p); }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* A line's key and value without comment and surrounding blanks: 1 for `key = value`, 0 for
 * a blank or comment line, -1 for a line with content and no '='. */
static int split_line(const char *line, size_t n, const char **key, size_t *klen, const char **val,
                      size_t *vlen) {
  const char *hash = memchr(line, '#', n);
  if (hash) n = (size_t)(hash - line);
  while (n > 0 && is_space(line[n - 1])) n--;
  while (n > 0 && is_space(*line)) line++, n--;
  if (n == 0) return 0;
  const char *eq = memchr(line, '=', n);
  if (!eq) return -1;
  size_t kl = (size_t)(eq - line), vl = n - kl - 1;
  const char *v = eq + 1;
  while (kl > 0 && is_space(line[kl - 1])) kl--;
  while (vl > 0 && is_space(*v)) v++, vl--;
  *key = line, *klen = kl, *val = v, *vlen = vl;
  return 1;
}

static int key_is(const char *key, size_t klen, const char *name) {
  return klen == strlen(name) && memcmp(key, name, klen) == 0;
}

/* A positive decimal version number, the whole of s[0..n). */
static int parse_version(const char *s, size_t n, int64_t *out) {
  int64_t v = 0;
  if (n == 0) return -1;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9' || v > (INT64_MAX - 9) / 10) return -1;
    v = v * 10 + (s[i] - '0');
  }
  if (v < 1) return -1;
  *out = v;
  return 0;
}

static int fail(char *why, size_t why_len, int line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

static int fail(char *why, size_t why_len, int line, const char *fmt, ...) {
  if (why_len > 0) {
    int n = line > 0 ? snprintf(why, why_len, "line %d: ", line) : 0;
    if (n < 0) n = 0;
    if ((size_t)n < why_len) {
      va_list ap;
      va_start(ap, fmt);
      vsnprintf(why + n, why_len - (size_t)n, fmt, ap);
      va_end(ap);
    }
  }
  return -1;
}

/* allow_signature_change's value: `any`, or version numbers separated by commas. */
static int parse_allow(const char *v, size_t n, srv_policy *p, int line, char *why, size_t why_len) {
  if (n == 3 && memcmp(v, "any", 3) == 0) {
    p->allow_any = 1;
    return 0;
  }
  size_t at = 0;
  while (at <= n) {
    size_t end = at;
    while (end < n && v[end] != ',') end++;
    size_t b = at, e = end;
    while (b < e && is_space(v[b])) b++;
    while (e > b && is_space(v[e - 1])) e--;
    int64_t ver;
    if (parse_version(v + b, e - b, &ver) < 0)
      return fail(why, why_len, line,
                  "allow_signature_change takes `any` or positive version numbers separated by "
                  "commas, got '%.*s'", (int)(n > 80 ? 80 : n), v);
    if (p->nallow == SRV_POLICY_MAX_ALLOW)
      return fail(why, why_len, line, "allow_signature_change names more than %d versions",
                  SRV_POLICY_MAX_ALLOW);
    p->allow[p->nallow++] = ver;
    at = end + 1;
  }
  return 0;
}

int srv_policy_parse(const char *text, size_t len, srv_policy *p, char *why, size_t why_len) {
  srv_policy_default(p);
  srv_policy got;
  srv_policy_default(&got);
  if (len > SRV_POLICY_MAX_BYTES)
    return fail(why, why_len, 0, "%zu bytes, more than the %d a serving policy may have", len,
                SRV_POLICY_MAX_BYTES);
  if (memchr(text, 0, len)) return fail(why, why_len, 0, "not a text file (it holds a NUL byte)");
  int line = 0, seen_version = 0, seen_allow = 0;
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
    const char *key, *val;
    size_t klen, vlen;
    line++;
    int kind = split_line(text + at, n, &key, &klen, &val, &vlen);
    at += n + 1;
    if (kind == 0) continue;
    if (kind < 0)
      return fail(why, why_len, line, "expected `key = value` (keys: version, allow_signature_change)");
    if (key_is(key, klen, "version")) {
      if (seen_version) return fail(why, why_len, line, "version is set twice (first on line %d)", seen_version);
      seen_version = line;
      if (vlen == 6 && memcmp(val, "latest", 6) == 0) got.pin = 0;
      else if (parse_version(val, vlen, &got.pin) < 0)
        return fail(why, why_len, line, "version must be latest or a positive version number, got '%.*s'",
                    (int)(vlen > 80 ? 80 : vlen), val);
    } else if (key_is(key, klen, "allow_signature_change")) {
      if (seen_allow)
        return fail(why, why_len, line, "allow_signature_change is set twice (first on line %d)", seen_allow);
      seen_allow = line;
      if (parse_allow(val, vlen, &got, line, why, why_len) < 0) return -1;
    } else {
      return fail(why, why_len, line, "unknown key '%.*s' (keys: version, allow_signature_change)",
                  (int)(klen > 60 ? 60 : klen), key);
    }
  }
  *p = got;
  return 0;
}

int srv_policy_has_settings(const char *text, size_t len) {
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
    const char *key, *val;
    size_t klen, vlen;
    if (split_line(text + at, n, &key, &klen, &val, &vlen) != 0) return 1;
    at += n + 1;
  }
  return 0;
}

int srv_policy_allows(const srv_policy *p, int64_t version) {
  if (p->allow_any) return 1;
  for (int i = 0; i < p->nallow; i++)
    if (p->allow[i] == version) return 1;
  return 0;
}

char *srv_policy_with_version(const char *text, size_t len, int64_t version, char *why,
                              size_t why_len) {
  srv_policy p;
  if (srv_policy_parse(text, len, &p, why, why_len) < 0) return NULL;
  static const char head[] = "# emberd's serving policy for this model (docs/versions-and-eval.md)\n";
  size_t cap = len + sizeof head + 48;
  char *out = malloc(cap);
  if (!out) {
    fail(why, why_len, 0, "out of memory");
    return NULL;
  }
  size_t used = 0;
  if (len == 0 && version > 0) used += (size_t)snprintf(out, cap, "%s", head);
  for (size_t at = 0; at < len;) {
    const char *nl = memchr(text + at, '\n', len - at);
    size_t n = nl ? (size_t)(nl - (text + at)) : len - at;
    const char *key, *val;
    size_t klen, vlen;
    if (!(split_line(text + at, n, &key, &klen, &val, &vlen) == 1 && key_is(key, klen, "version"))) {
      memcpy(out + used, text + at, n);
      used += n;
      out[used++] = '\n';
    }
    at += n + 1;
  }
  if (version > 0) used += (size_t)snprintf(out + used, cap - used, "version = %lld\n", (long long)version);
  out[used] = 0;
  return out;
}

int srv_policy_walk(const srv_policy *p, srv_policy_item *items, int n) {
  int last = -1; /* the last accepted version */
  for (int i = 0; i < n; i++) {
    srv_policy_item *it = &items[i];
    it->refused_by = 0;
    if (last >= 0 && !ember_signature_equal(&it->sig, &items[last].sig) &&
        !srv_policy_allows(p, it->version)) {
      it->refused_by = items[last].version;
      continue;
    }
    last = i;
  }
  return last;
}
