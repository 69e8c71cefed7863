/* test_policy.c - server/policy.c: serving.conf as emberd and `ember pin` read it (strictly:
 * every mistake is an error naming its line), the edit `ember pin` makes, and the signature
 * rule that decides which versions may be the default. */
#include "testutil.h"

#include <stdlib.h>
#include <string.h>

#include "policy.h"

static int parse(const char *text, srv_policy *p, char *why) {
  return srv_policy_parse(text, strlen(text), p, why, 256);
}

static void test_parse(void **state) {
  (void)state;
  srv_policy p;
  char why[256];
  assert_int_equal(parse("", &p, why), 0);
  assert_int_equal(p.pin, 0);
  assert_int_equal(p.allow_any + p.nallow, 0);
  assert_int_equal(parse("# a comment\n\n  version =  latest  # why\r\n", &p, why), 0);
  assert_int_equal(p.pin, 0);
  assert_int_equal(parse("version=12\nallow_signature_change = 5, 7 ,9", &p, why), 0);
  assert_int_equal(p.pin, 12);
  assert_int_equal(p.nallow, 3);
  assert_true(srv_policy_allows(&p, 7) && srv_policy_allows(&p, 9) && !srv_policy_allows(&p, 8));
  assert_int_equal(parse("allow_signature_change = any\n", &p, why), 0);
  assert_true(p.allow_any && srv_policy_allows(&p, 123));

  static const struct {
    const char *text, *why;
  } bad[] = {
      {"version: 3\n", "line 1: expected `key = value` (keys: version, allow_signature_change)"},
      {"\nversion = 0\n", "line 2: version must be latest or a positive version number, got '0'"},
      {"version = -3", "line 1: version must be latest or a positive version number, got '-3'"},
      {"version = 3x", "line 1: version must be latest or a positive version number, got '3x'"},
      {"version = 99999999999999999999", "line 1: version must be latest or a positive version number, got '99999999999999999999'"},
      {"version = 3\nversion = 4\n", "line 2: version is set twice (first on line 1)"},
      {"pin = 3\n", "line 1: unknown key 'pin' (keys: version, allow_signature_change)"},
      {"allow_signature_change = 4,,5\n", "line 1: allow_signature_change takes `any` or positive version numbers separated by commas, got '4,,5'"},
      {"allow_signature_change =\n", "line 1: allow_signature_change takes `any` or positive version numbers separated by commas, got ''"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    p.pin = 77;
    assert_int_equal(parse(bad[i].text, &p, why), -1);
    assert_string_equal(why, bad[i].why);
    assert_int_equal(p.pin, 0); /* left at the default, not half parsed */
  }
  char nul[] = "version = 3\n";
  nul[3] = 0;
  assert_int_equal(srv_policy_parse(nul, sizeof nul - 1, &p, why, sizeof why), -1);
  assert_string_equal(why, "not a text file (it holds a NUL byte)");
  char *big = malloc(SRV_POLICY_MAX_BYTES + 2);
  assert_non_null(big);
  memset(big, '#', SRV_POLICY_MAX_BYTES + 1);
  assert_int_equal(srv_policy_parse(big, SRV_POLICY_MAX_BYTES + 1, &p, why, sizeof why), -1);
  assert_string_equal(why, "4097 bytes, more than the 4096 a serving policy may have");
  free(big);
}

static void test_edit(void **state) {
  (void)state;
  char why[256];
  char *t = srv_policy_with_version("", 0, 3, why, sizeof why);
  assert_non_null(t);
  assert_string_equal(t, "# emberd's serving policy for this model (docs/versions-and-eval.md)\nversion = 3\n");
  assert_true(srv_policy_has_settings(t, strlen(t)));
  char *u = srv_policy_with_version(t, strlen(t), 0, why, sizeof why);
  assert_string_equal(u, "# emberd's serving policy for this model (docs/versions-and-eval.md)\n");
  assert_false(srv_policy_has_settings(u, strlen(u)));
  free(t);
  free(u);
  const char *mine = "# keep me\nversion = 2 # old\nallow_signature_change = 4";
  t = srv_policy_with_version(mine, strlen(mine), 5, why, sizeof why);
  assert_string_equal(t, "# keep me\nallow_signature_change = 4\nversion = 5\n");
  srv_policy p;
  assert_int_equal(parse(t, &p, why), 0);
  assert_int_equal(p.pin, 5);
  assert_true(srv_policy_allows(&p, 4));
  free(t);
  assert_null(srv_policy_with_version("version 2\n", 10, 5, why, sizeof why));
  assert_string_equal(why, "line 1: expected `key = value` (keys: version, allow_signature_change)");
}

static void test_names(void **state) {
  (void)state;
  assert_int_equal(registry_version_of("12.safetensors"), 12);
  assert_int_equal(registry_version_of("012.safetensors"), 0);
  assert_int_equal(registry_version_of(".1.safetensors"), 0);
  assert_int_equal(registry_version_of("serving.conf"), 0);
  assert_true(srv_valid_model_name("a.b-c_9"));
  assert_false(srv_valid_model_name(".hidden"));
  assert_false(srv_valid_model_name("a/b"));
}

#define SIG(x, y) ((ember_signature){.x_dim = x, .y_dim = y})

static void test_walk(void **state) {
  (void)state;
  srv_policy p;
  srv_policy_default(&p);
  /* 1 and 2 agree; 3 changes y_dim; 4 has the old signature again; 5 the new one */
  srv_policy_item v[5] = {{1, SIG(2, 1), -1}, {2, SIG(2, 1), -1}, {3, SIG(2, 2), -1}, {4, SIG(2, 1), -1},
                          {5, SIG(2, 2), -1}};
  assert_int_equal(srv_policy_walk(&p, v, 5), 3); /* version 4 */
  int64_t want[5] = {0, 0, 2, 0, 4};
  for (int i = 0; i < 5; i++) assert_int_equal(v[i].refused_by, want[i]);

  /* allowing 3 moves the lineage to y_dim 2: 4 breaks it now, 5 follows 3 */
  p.allow[p.nallow++] = 3;
  assert_int_equal(srv_policy_walk(&p, v, 5), 4);
  int64_t want2[5] = {0, 0, 0, 3, 0};
  for (int i = 0; i < 5; i++) assert_int_equal(v[i].refused_by, want2[i]);

  /* x_dim counts as much as y_dim; the lowest version starts the lineage */
  srv_policy_default(&p);
  srv_policy_item w[2] = {{7, SIG(3, 1), -1}, {8, SIG(4, 1), -1}};
  assert_int_equal(srv_policy_walk(&p, w, 2), 0);
  assert_int_equal(w[1].refused_by, 7);
  p.allow_any = 1;
  assert_int_equal(srv_policy_walk(&p, w, 2), 1);
  assert_int_equal(srv_policy_walk(&p, w, 0), -1);

  /* the same dimensions with another column name is another signature */
  srv_policy_default(&p);
  const char *ab[] = {"a", "b"}, *y0[] = {"y0"}, *z[] = {"z"};
  srv_policy_item n[3] = {{1, {.x_dim = 2, .y_dim = 1, .x_names = ab, .y_names = y0}, -1},
                          {2, {.x_dim = 2, .y_dim = 1, .x_names = ab, .y_names = z}, -1},
                          {3, {.x_dim = 2, .y_dim = 1, .x_names = ab, .y_names = y0}, -1}};
  assert_int_equal(srv_policy_walk(&p, n, 3), 2);
  assert_int_equal(n[1].refused_by, 1);
  char buf[64];
  assert_string_equal(ember_signature_text(&n[1].sig, buf, sizeof buf), "x_dim=2 y_dim=1 x=[a,b] y=[z]");
  assert_string_equal(ember_signature_text(&n[1].sig, buf, 12), "x_dim=2 y_d");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_parse),
      cmocka_unit_test(test_edit),
      cmocka_unit_test(test_names),
      cmocka_unit_test(test_walk),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
