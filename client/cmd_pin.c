/* cmd_pin.c - `ember pin` and `ember unpin`: choose the version emberd serves by default.
 *
 *   ember pin   --models DIR --model M --version N    DIR/M/serving.conf gets `version = N`
 *   ember unpin --models DIR --model M                its `version` line goes (latest again)
 *
 * emberd reads serving.conf at every rescan (file events, and --poll-ms as a backstop), so a
 * pin is a rollback without deleting files and an unpin returns to the latest version. The
 * file is edited, not overwritten: other lines (allow_signature_change, comments) stay, and a
 * file that does not parse is refused rather than edited blind. It is written whole or not at
 * all (a temporary file beside it, fsync, rename, directory fsync: outfile.h), so emberd never
 * reads half of it; a file left with no settings is removed.
 *
 * Why local and not over gRPC: emberd does not write its repository except to publish what it
 * trained, and a pin is a statement about the repository that must survive emberd's restarts;
 * so it is made where the repository is, by whoever may write it. `ember --server` refuses it
 * with that hint.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "ember/base.h"
#include "outfile.h"
#include "policy.h"

/* "1, 2, 3" (or "none"): the version files in dir. */
static void list_versions(const char *dir, char *buf, size_t len) {
  int64_t v[64];
  int n = 0, more = 0;
  DIR *d = opendir(dir);
  struct dirent *de;
  while (d && (de = readdir(d))) {
    int64_t k = registry_version_of(de->d_name);
    if (k <= 0) continue;
    if (n == 64) {
      more = 1;
      continue;
    }
    int at = n++;
    while (at > 0 && v[at - 1] > k) v[at] = v[at - 1], at--;
    v[at] = k;
  }
  if (d) closedir(d);
  size_t used = 0;
  snprintf(buf, len, "none");
  for (int i = 0; i < n && used + 24 < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "", (long long)v[i]);
  if (more && used + 8 < len) snprintf(buf + used, len - used, ", ...");
}

/* The current serving.conf into *text (NULL, len 0 when there is none); -1 after a message. */
static int read_conf(const char *verb, const char *path, char **text, size_t *len) {
  *text = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (errno == ENOENT) return 0;
    fprintf(stderr, "ember %s: cannot open %s: %s\n", verb, path, strerror(errno));
    return -1;
  }
  char *buf = malloc(SRV_POLICY_MAX_BYTES + 1);
  size_t n = buf ? fread(buf, 1, SRV_POLICY_MAX_BYTES + 1, f) : 0;
  int bad = !buf || ferror(f);
  fclose(f);
  if (bad) {
    fprintf(stderr, "ember %s: cannot read %s: %s\n", verb, path, buf ? strerror(errno) : "out of memory");
    free(buf);
    return -1;
  }
  *text = buf;
  *len = n;
  return 0;
}

static int pin_or_unpin(const char *verb, int argc, char **argv) {
  const int pin = strcmp(verb, "pin") == 0;
  const char *models = NULL, *model = NULL;
  int64_t version = 0;
  opt_spec specs[] = {
      {"models", OPT_STR, &models, "DIR", "the model repository emberd serves (its --models DIR)", 0, 0},
      {"model", OPT_STR, &model, "NAME", "the model: the directory DIR/NAME", 0, 0},
      {"version", OPT_I64, &version, "N", "the version to serve by default (DIR/NAME/N.safetensors)", 0, 1},
  };
  int nspecs = pin ? 3 : 2;
  const char *usage = pin ? "--models DIR --model NAME --version N" : "--models DIR --model NAME";
  int rc = args_parse(verb, usage, specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!models || !model || (pin && !args_given(specs, nspecs, "version"))) {
    fprintf(stderr, "ember %s: %s are required (see ember %s --help)\n", verb,
            pin ? "--models, --model and --version" : "--models and --model", verb);
    return 2;
  }
  if (!srv_valid_model_name(model)) {
    fprintf(stderr, "ember %s: model name '%s' is not valid: expected 1-64 characters of [A-Za-z0-9_.-], "
                    "not starting with '.'\n", verb, model);
    return 2;
  }
  if (pin && version < 1) {
    fprintf(stderr, "ember pin: --version must be a version number >= 1, got %lld (ember unpin returns to "
                    "the latest)\n", (long long)version);
    return 2;
  }
  char dir[4096], path[4200], file[4300], have[512];
  snprintf(dir, sizeof dir, "%s/%s", models, model);
  snprintf(path, sizeof path, "%s/%s", dir, SRV_POLICY_FILE);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "ember %s: %s is not a model directory (%s)\n", verb, dir,
            stat(dir, &st) != 0 ? strerror(errno) : "not a directory");
    return 1;
  }
  if (pin) {
    snprintf(file, sizeof file, "%s/%lld.safetensors", dir, (long long)version);
    if (stat(file, &st) != 0 || !S_ISREG(st.st_mode)) {
      list_versions(dir, have, sizeof have);
      fprintf(stderr, "ember pin: %s has no version %lld (%s is missing; versions: %s)\n", dir,
              (long long)version, file, have);
      return 1;
    }
  }
  char *text;
  size_t len;
  if (read_conf(verb, path, &text, &len) < 0) return 1;
  char why[320];
  char *out = srv_policy_with_version(text ? text : "", len, pin ? version : 0, why, sizeof why);
  free(text);
  if (!out) {
    fprintf(stderr, "ember %s: %s: %s; fix or remove it first\n", verb, path, why);
    return 1;
  }
  rc = 0;
  if (!srv_policy_has_settings(out, strlen(out))) { /* nothing left: no file means latest */
    if (unlink(path) != 0 && errno != ENOENT) {
      fprintf(stderr, "ember %s: cannot remove %s: %s\n", verb, path, strerror(errno));
      rc = 1;
    } else {
      (void)ember_fsync_dir_of(path);
    }
  } else {
    cli_outfile o;
    if (cli_outfile_open(&o, path, why, sizeof why) < 0) {
      fprintf(stderr, "ember %s: %s\n", verb, why);
      rc = 1;
    } else {
      fputs(out, o.f);
      if (cli_outfile_commit(&o, why, sizeof why) < 0) {
        fprintf(stderr, "ember %s: %s\n", verb, why);
        rc = 1;
      }
    }
  }
  free(out);
  if (rc == 0 && pin)
    fprintf(stderr, "pinned %s to version %lld in %s: emberd serves it by default from its next rescan\n", model,
            (long long)version, path);
  else if (rc == 0)
    fprintf(stderr, "unpinned %s (%s): emberd serves its latest version from its next rescan\n", model, path);
  return rc;
}

int cmd_pin(const char *server, const char *verb, int argc, char **argv) {
  if (server) {
    fprintf(stderr, "ember %s: edits the model repository, so it runs where the repository is, without "
                    "--server: ember %s --models DIR --model NAME%s (emberd picks the change up at its next "
                    "rescan)\n", verb, verb, strcmp(verb, "pin") == 0 ? " --version N" : "");
    return 2;
  }
  return pin_or_unpin(verb, argc, argv);
}
