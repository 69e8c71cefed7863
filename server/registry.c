/* registry.c - the model repository and hot reload.
 *
 * The repository is DIR/<name>/<version>.safetensors (or one --model FILE). A scan lists the
 * files and loads every new or changed one; it runs on the threadpool, because reading and
 * validating a checkpoint is I/O and compute that must not stall the loop. Its result is
 * applied on the loop: new versions appear, versions whose files are gone are retired,
 * failures are recorded per version (and not retried until the file changes) while every
 * other version keeps serving.
 *
 * Which loaded version answers requests for version 0, the default, is decided after every
 * scan from the versions' signatures and DIR/<name>/serving.conf (policy.c has the file and the
 * rule): a version whose x_dim or y_dim breaks the model's lineage is refused (logged at level
 * error, counted, listed by GetModel) and cannot become the default unless serving.conf allows
 * it; `version = N` pins the default. Changes are picked up like new files (the file is read at
 * every scan), and a policy that cannot be used never moves the default elsewhere: a pin that
 * cannot be served keeps the current default, and a serving.conf that does not parse keeps the
 * last one that did (at start-up: no default until it parses).
 *
 * Versions are reference counted: the registry holds one reference while a version is listed
 * and each batch holds one while it runs, so a batch finishes on the version it started with
 * and a retired version is freed as soon as its last batch ends (memory does not grow over
 * reload cycles).
 *
 * Scans are triggered by inotify (uv_fs_event on the repository and each model directory,
 * debounced by 100 ms) and by a --poll-ms timer as a backstop. Writers should publish with an
 * atomic rename (ember train does); a half-written file fails to load, is reported, and is
 * loaded when it changes again.
 *
 * A scan retires only what it saw to be gone. An error while scanning (out of memory, a model
 * directory that cannot be opened or listed, a file that cannot be stat'ed) must not unload live
 * models, so a version is retired only when its model directory was read completely without its
 * file, and a whole model only when the repository's own listing was read completely without
 * its directory. Everything else a failed scan could not see keeps its state until a later scan
 * reads it (logged as "repository scan incomplete"). "No such file" and "not a directory" are
 * not errors: they say the file or directory is gone.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "server.h"

typedef struct known_file {
  char name[72];
  int64_t version, mtime, size;
} known_file;

typedef struct scan_item {
  char name[72];
  int64_t version, mtime, size;
  char *path;
  int status; /* 0 unchanged, 1 loaded, 2 failed */
  ember_model model;
  char *error;
} scan_item;

/* What a scan found of a model's serving.conf. */
typedef enum {
  POLICY_ABSENT, /* no such file: the default policy */
  POLICY_READ,   /* parsed */
  POLICY_BAD,    /* cannot be read or parsed: reported, the last good policy stays */
  POLICY_UNSEEN  /* the scan failed before it (out of memory): nothing changes */
} policy_state;

typedef struct scan_model {
  char name[72];  /* a model directory the repository's listing named */
  int complete;   /* read to its end without an error (or gone: nothing in it to keep) */
  policy_state policy_state;
  srv_policy policy;   /* POLICY_READ */
  char policy_why[320]; /* POLICY_BAD: why it cannot be used */
} scan_model;

typedef struct scan_job {
  uv_work_t work;
  server *s;
  known_file *known;
  int nknown;
  scan_item *items;
  int nitems, capitems;
  scan_model *models;
  int nmodels, capmodels;
  int root_complete;  /* the repository's listing was read to its end and recorded whole */
  char **dirs;        /* directories to watch */
  int ndirs, capdirs;
  int errors;         /* errors that left something unseen */
  char error[320];    /* the first of them */
  int fail_alloc;     /* this allocation of the scan fails (srv_faults.scan_alloc) */
  int allocs;
  long *loading_scans; /* srv_faults.scans when srv_faults.scan_pause is set, else NULL */
  long pause_at;        /* srv_faults.scan_pause */
  char *fatal;
  int stray;            /* checkpoint files directly in the repository (not served) */
  char stray_name[72];  /* the first of them */
} scan_job;

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- the scan (threadpool) -------------------------------------------------------------- */

/* Every allocation of a scan comes through here, so that a test build can make one fail. */
static void *scan_realloc(scan_job *j, void *p, size_t n) {
  if (j->fail_alloc > 0 && ++j->allocs == j->fail_alloc) return NULL;
  return realloc(p, n);
}

/* arr with room for one element after its first n (*cap grown by doubling from `first`), or
 * NULL with arr unchanged. */
static void *scan_room(scan_job *j, void *arr, int n, int *cap, int first, size_t size) {
  if (n < *cap) return arr;
  int grown_cap = *cap ? 2 * *cap : first;
  void *grown = scan_realloc(j, arr, (size_t)grown_cap * size);
  if (grown) *cap = grown_cap;
  return grown;
}

/* "dir/name", or a copy of dir when name is NULL */
static char *scan_path(scan_job *j, const char *dir, const char *name) {
  size_t n = strlen(dir) + (name ? strlen(name) + 1 : 0) + 1;
  char *d = scan_realloc(j, NULL, n);
  if (d && name) snprintf(d, n, "%s/%s", dir, name);
  else if (d) memcpy(d, dir, n);
  return d;
}

/* Notes an error that left part of the repository unseen; the first is logged. */
static void scan_error(scan_job *j, const char *what, const char *path, int err) {
  if (j->errors++ == 0) snprintf(j->error, sizeof j->error, "%s %s: %s", what, path, strerror(err));
}

/* Adds `path` as version `version` of model `name` and loads it if it is new or changed. -1 when
 * an error kept the file out of the scan (a file that is gone or not a regular file is not one). */
static int add_file(scan_job *j, const char *name, int64_t version, const char *path) {
  struct stat st;
  int serr = stat(path, &st) != 0 ? errno : 0;
  if (serr || !S_ISREG(st.st_mode)) {
    if (j->s->cfg.model_file) { /* the one file asked for: say why it cannot be served */
      char msg[600];
      snprintf(msg, sizeof msg, "cannot serve --model %s: %s", path,
               serr ? strerror(serr) : "not a regular file");
      j->fatal = dup_str(msg);
      return -1;
    }
    if (!serr || serr == ENOENT || serr == ENOTDIR) return 0; /* not a file, or removed meanwhile */
    scan_error(j, "cannot stat", path, serr);
    return -1;
  }
  scan_item *items = scan_room(j, j->items, j->nitems, &j->capitems, 16, sizeof *items);
  if (items) j->items = items;
  char *copy = items ? scan_path(j, path, NULL) : NULL;
  if (!copy) {
    scan_error(j, "out of memory listing", path, ENOMEM);
    return -1;
  }
  scan_item *it = &j->items[j->nitems++];
  memset(it, 0, sizeof *it);
  snprintf(it->name, sizeof it->name, "%s", name);
  it->version = version;
  it->mtime = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
  it->size = (int64_t)st.st_size;
  it->path = copy;
  for (int k = 0; k < j->nknown; k++)
    if (j->known[k].version == version && strcmp(j->known[k].name, name) == 0 &&
        j->known[k].mtime == it->mtime && j->known[k].size == it->size)
      return 0; /* unchanged: status 0 */
  ember_err err;
  if (ember_model_load(path, &it->model, &err) == 0) {
    it->status = 1;
  } else {
    it->status = 2;
    it->error = dup_str(err.msg);
  }
  return 0;
}

/* A directory to watch; one that cannot be recorded is still covered by the poll timer. */
static void add_dir(scan_job *j, const char *path) {
  char **dirs = scan_room(j, j->dirs, j->ndirs, &j->capdirs, 8, sizeof *dirs);
  if (!dirs) return;
  j->dirs = dirs;
  char *d = scan_path(j, path, NULL);
  if (d) j->dirs[j->ndirs++] = d;
}

static void add_model(scan_job *j, const char *name, int complete, const scan_model *pol) {
  scan_model *models = scan_room(j, j->models, j->nmodels, &j->capmodels, 8, sizeof *models);
  if (!models) { /* unrecorded, the model would look removed: distrust the whole listing instead */
    scan_error(j, "out of memory listing model", name, ENOMEM);
    j->root_complete = 0;
    return;
  }
  j->models = models;
  scan_model *m = &j->models[j->nmodels++];
  if (pol) *m = *pol;
  else memset(m, 0, sizeof *m);
  snprintf(m->name, sizeof m->name, "%s", name);
  m->complete = complete;
}

/* Reads dir/serving.conf into *m: absent (no such file), read, or bad with the reason. */
static void read_policy(scan_job *j, const char *dir, scan_model *m) {
  char *path = scan_path(j, dir, SRV_POLICY_FILE);
  char buf[SRV_POLICY_MAX_BYTES + 1];
  if (!path) {
    m->policy_state = POLICY_UNSEEN;
    scan_error(j, "out of memory reading the serving policy of", dir, ENOMEM);
    return;
  }
  m->policy_state = POLICY_BAD;
  FILE *f = fopen(path, "rb");
  size_t n = 0;
  if (!f && (errno == ENOENT || errno == ENOTDIR)) {
    m->policy_state = POLICY_ABSENT;
  } else if (!f) {
    snprintf(m->policy_why, sizeof m->policy_why, "cannot open %s: %s", path, strerror(errno));
  } else {
    n = fread(buf, 1, sizeof buf, f);
    if (ferror(f))
      snprintf(m->policy_why, sizeof m->policy_why, "cannot read %s: %s", path, strerror(errno));
    else if (srv_policy_parse(buf, n, &m->policy, m->policy_why, sizeof m->policy_why) == 0)
      m->policy_state = POLICY_READ;
    fclose(f);
  }
  free(path);
}

/* Lists the directory of model `name` and reads its serving.conf into *pol: 1 if it was read
 * completely (or is gone), 0 if an error left part of it unseen. */
static int scan_model_dir(scan_job *j, const char *name, scan_model *pol) {
  memset(pol, 0, sizeof *pol);
  char *dir = scan_path(j, j->s->cfg.models_dir, name);
  if (!dir) {
    scan_error(j, "out of memory listing model", name, ENOMEM);
    return 0;
  }
  int complete = 1;
  read_policy(j, dir, pol);
  DIR *d = opendir(dir);
  if (!d) {
    int err = errno; /* gone since the repository was listed, or a file that is no model */
    complete = err == ENOENT || err == ENOTDIR;
    if (!complete) scan_error(j, "cannot open", dir, err);
  } else {
    add_dir(j, dir);
    struct dirent *fe;
    for (errno = 0; (fe = readdir(d)); errno = 0) {
      int64_t v = registry_version_of(fe->d_name);
      if (v <= 0) continue;
      char *path = scan_path(j, dir, fe->d_name);
      if (!path) scan_error(j, "out of memory listing", dir, ENOMEM);
      if (!path || add_file(j, name, v, path) < 0) complete = 0;
      free(path);
    }
    if (errno) {
      scan_error(j, "cannot list", dir, errno);
      complete = 0;
    }
    closedir(d);
  }
  free(dir);
  return complete;
}

/* A checkpoint file right in the repository: --models given the directory that holds the
 * checkpoints, one level too deep. Not served (a version needs a model directory), but said. */
static int stray_checkpoint(const char *dir, const char *file) {
  size_t n = strlen(file), e = strlen(".safetensors");
  char path[PATH_MAX];
  struct stat st;
  return n > e && strcmp(file + n - e, ".safetensors") == 0 &&
         snprintf(path, sizeof path, "%s/%s", dir, file) < (int)sizeof path && stat(path, &st) == 0 &&
         S_ISREG(st.st_mode);
}

static void scan_work(uv_work_t *w) {
  scan_job *j = w->data;
  const srv_config *cfg = &j->s->cfg;
  j->root_complete = 1;
  if (cfg->model_file) {
    const char *base = strrchr(cfg->model_file, '/');
    base = base ? base + 1 : cfg->model_file;
    char name[72];
    snprintf(name, sizeof name, "%s", base);
    char *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    if (!srv_valid_model_name(name)) snprintf(name, sizeof name, "model");
    add_model(j, name, add_file(j, name, 1, cfg->model_file) == 0, NULL);
    return;
  }
  DIR *root = opendir(cfg->models_dir);
  if (!root) {
    char msg[512];
    snprintf(msg, sizeof msg, "cannot open the model repository %s: %s", cfg->models_dir, strerror(errno));
    j->fatal = dup_str(msg);
    return;
  }
  add_dir(j, cfg->models_dir);
  struct dirent *de;
  for (errno = 0; (de = readdir(root)); errno = 0) {
    if (stray_checkpoint(cfg->models_dir, de->d_name) && j->stray++ == 0)
      snprintf(j->stray_name, sizeof j->stray_name, "%.64s", de->d_name);
    if (srv_valid_model_name(de->d_name)) {
      scan_model pol;
      int complete = scan_model_dir(j, de->d_name, &pol);
      add_model(j, de->d_name, complete, &pol);
    }
  }
  if (errno) {
    scan_error(j, "cannot list", cfg->models_dir, errno);
    j->root_complete = 0;
  }
  closedir(root);
  int loaded = 0;
  for (int i = 0; i < j->nitems; i++) loaded += j->items[i].status == 1;
  /* a test kills emberd here: new versions loaded, none applied yet (scans never overlap, so
   * the counter needs no lock) */
  if (j->loading_scans && loaded > 0 && ++*j->loading_scans == j->pause_at) {
    srv_log(LOG_WARN, "fault injection", "site=scan_pause loaded=%d", loaded);
    for (int waited = 0; waited < 600; waited++) nanosleep(&(struct timespec){0, 100000000}, NULL);
  }
}

static void free_job(scan_job *j) {
  for (int i = 0; i < j->nitems; i++) {
    free(j->items[i].path);
    free(j->items[i].error);
    ember_model_free(&j->items[i].model); /* zeroed when applied */
  }
  for (int i = 0; i < j->ndirs; i++) free(j->dirs[i]);
  free(j->items);
  free(j->models);
  free(j->dirs);
  free(j->known);
  free(j->fatal);
  free(j);
}

/* ---- versions and entries (loop) --------------------------------------------------------- */

void version_ref(model_version *v) { v->refs++; }

void version_unref(model_version *v) {
  if (--v->refs > 0) return;
  for (int i = 0; i < v->nidle; i++) ember_infer_destroy(v->idle[i]);
  ember_infer_destroy(v->wide_idle);
  free(v->idle);
  ember_model_free(&v->model);
  free(v->path);
  free(v->refused);
  free(v);
}

/* Entries of models whose files are all gone stay allocated (in-flight calls and versions
 * point at them, and their counters survive a re-publication) but are not found or listed. */
static model_entry *entry_lookup(server *s, const char *name) {
  for (model_entry *e = s->models; e; e = e->next)
    if (strcmp(e->name, name) == 0) return e;
  return NULL;
}

model_entry *registry_find(server *s, const char *name) {
  model_entry *e = entry_lookup(s, name);
  return e && registry_listed(e) ? e : NULL;
}

int registry_listed(const model_entry *e) { return e->nversions > 0 || e->nerrors > 0; }

model_version *registry_version(model_entry *e, int64_t version) {
  if (version == 0) version = e->default_version;
  if (version == 0) return NULL;
  for (int i = 0; i < e->nversions; i++)
    if (e->versions[i]->version == version) return e->versions[i];
  return NULL;
}

static model_entry *entry_get(server *s, const char *name) {
  model_entry *e = entry_lookup(s, name);
  if (e) return e;
  e = calloc(1, sizeof *e);
  if (!e) return NULL;
  snprintf(e->name, sizeof e->name, "%s", name);
  model_entry **pp = &s->models; /* keep the list sorted by name */
  while (*pp && strcmp((*pp)->name, name) < 0) pp = &(*pp)->next;
  e->next = *pp;
  *pp = e;
  return e;
}

static void retire(model_entry *e, int idx, const char *why) {
  model_version *v = e->versions[idx];
  srv_log(LOG_INFO, "model version retired", "model=%s version=%lld reason=\"%s\"", e->name, (long long)v->version, why);
  memmove(e->versions + idx, e->versions + idx + 1, (size_t)(e->nversions - idx - 1) * sizeof *e->versions);
  e->nversions--;
  version_unref(v);
}

static void drop_error(model_entry *e, int idx) {
  free(e->errors[idx].path);
  free(e->errors[idx].message);
  memmove(e->errors + idx, e->errors + idx + 1, (size_t)(e->nerrors - idx - 1) * sizeof *e->errors);
  e->nerrors--;
}

static int find_error(model_entry *e, int64_t version) {
  for (int i = 0; i < e->nerrors; i++)
    if (e->errors[i].version == version) return i;
  return -1;
}

static void install(server *s, model_entry *e, scan_item *it) {
  model_version *v = calloc(1, sizeof *v);
  model_version **grown = realloc(e->versions, (size_t)(e->nversions + 1) * sizeof *grown);
  ember_infer **idle = calloc((size_t)s->cfg.workers, sizeof *idle);
  if (grown) e->versions = grown;
  if (!v || !grown || !idle) {
    free(v);
    free(idle);
    srv_log(LOG_ERROR, "out of memory installing a model", "model=%s", e->name);
    return;
  }
  for (int i = 0; i < e->nversions; i++)
    if (e->versions[i]->version == it->version) {
      retire(e, i, "replaced");
      break;
    }
  v->entry = e;
  v->version = it->version;
  v->path = it->path;
  it->path = NULL;
  v->mtime = it->mtime;
  v->size = it->size;
  v->model = it->model;
  memset(&it->model, 0, sizeof it->model);
  v->idle = idle;
  v->refs = 1;
  int at = e->nversions;
  while (at > 0 && e->versions[at - 1]->version > v->version) at--;
  memmove(e->versions + at + 1, e->versions + at, (size_t)(e->nversions - at) * sizeof *e->versions);
  e->versions[at] = v;
  e->nversions++;
  int ei = find_error(e, v->version);
  if (ei >= 0) drop_error(e, ei);
  srv_log(LOG_INFO, "model version loaded", "model=%s version=%lld method=%s x_dim=%d y_dim=%d path=%s", e->name,
          (long long)v->version, ember_method_name(v->model.method), v->model.x_dim, v->model.y_dim, v->path);
}

static void record_failure(model_entry *e, scan_item *it) {
  int ei = find_error(e, it->version);
  if (ei < 0) {
    load_error *grown = realloc(e->errors, (size_t)(e->nerrors + 1) * sizeof *grown);
    if (!grown) return;
    e->errors = grown;
    ei = e->nerrors++;
  } else {
    free(e->errors[ei].path);
    free(e->errors[ei].message);
  }
  e->stats.load_failures++;
  load_error *le = &e->errors[ei];
  le->version = it->version;
  le->path = it->path;
  it->path = NULL;
  le->message = it->error;
  it->error = NULL;
  le->when = (int64_t)time(NULL);
  le->mtime = it->mtime;
  le->size = it->size;
  srv_log(LOG_WARN, "model version failed to load", "model=%s version=%lld error=\"%s\"", e->name,
          (long long)le->version, le->message ? le->message : "");
}

/* Whether the scan saw that model `name` has no file for `version`: in its directory, read
 * completely, or by the absence of the directory from the repository's complete listing. */
static int seen_gone(const scan_job *j, const char *name, int64_t version) {
  for (int i = 0; i < j->nitems; i++)
    if (j->items[i].version == version && strcmp(j->items[i].name, name) == 0) return 0;
  for (int i = 0; i < j->nmodels; i++)
    if (strcmp(j->models[i].name, name) == 0) return j->models[i].complete;
  return j->root_complete;
}

/* ---- the default version (loop) --------------------------------------------------------- */

int registry_problems(const model_entry *e) {
  int n = e->nerrors + (e->policy_error.message != NULL) + (e->pin_error.message != NULL);
  for (int i = 0; i < e->nversions; i++) n += e->versions[i]->refused != NULL;
  return n;
}

void registry_problem(const model_entry *e, int i, load_error *le) {
  memset(le, 0, sizeof *le);
  if (i < e->nerrors) {
    *le = e->errors[i];
    return;
  }
  i -= e->nerrors;
  for (int k = 0; k < e->nversions; k++) {
    const model_version *v = e->versions[k];
    if (!v->refused || i-- > 0) continue;
    le->version = v->version;
    le->path = v->path;
    le->message = v->refused;
    le->when = v->refused_when;
    return;
  }
  if (e->policy_error.message && i-- == 0) *le = e->policy_error;
  else if (e->pin_error.message && i == 0) *le = e->pin_error;
}

const char *registry_no_default_reason(const model_entry *e) {
  if (e->pin_error.message) return e->pin_error.message;
  if (e->policy_error.message) return e->policy_error.message;
  return "no version loaded";
}

/* Sets or clears (msg NULL) one of the entry's policy problems, logging and counting a new or
 * changed one at level error and its end at info. */
static void set_problem(server *s, model_entry *e, load_error *le, const char *what, int64_t version,
                        const char *msg) {
  if (!msg) {
    if (le->message) srv_log(LOG_INFO, "model serving policy problem cleared", "model=%s what=\"%s\"", e->name, what);
    free(le->message);
    free(le->path);
    memset(le, 0, sizeof *le);
    return;
  }
  if (le->message && strcmp(le->message, msg) == 0 && le->version == version) return;
  char *m = dup_str(msg), *path = NULL;
  if (s->cfg.models_dir) {
    size_t n = strlen(s->cfg.models_dir) + strlen(e->name) + sizeof SRV_POLICY_FILE + 3;
    if ((path = malloc(n))) snprintf(path, n, "%s/%s/%s", s->cfg.models_dir, e->name, SRV_POLICY_FILE);
  }
  if (!m) {
    free(path);
    return;
  }
  free(le->message);
  free(le->path);
  le->message = m;
  le->path = path;
  le->version = version;
  le->when = (int64_t)time(NULL);
  e->stats.load_failures++;
  srv_log(LOG_ERROR, "model serving policy problem", "model=%s what=\"%s\" error=\"%s\"", e->name, what, msg);
}

/* Takes what the scan read of the entry's serving.conf. */
static void apply_policy(server *s, model_entry *e, const scan_job *j) {
  const scan_model *sm = NULL;
  for (int i = 0; i < j->nmodels && !sm; i++)
    if (strcmp(j->models[i].name, e->name) == 0) sm = &j->models[i];
  policy_state st = sm ? sm->policy_state : j->root_complete ? POLICY_ABSENT : POLICY_UNSEEN;
  switch (st) {
  case POLICY_ABSENT: srv_policy_default(&e->policy); break;
  case POLICY_READ: e->policy = sm->policy; break;
  case POLICY_BAD: {
    char msg[480];
    snprintf(msg, sizeof msg, "%s is not used: %s; %s", SRV_POLICY_FILE, sm->policy_why,
             e->policy_ok ? "the last policy that parsed stays in force" : "no version is the default until it parses");
    set_problem(s, e, &e->policy_error, "serving.conf", 0, msg);
    return;
  }
  case POLICY_UNSEEN: return;
  }
  e->policy_ok = 1;
  set_problem(s, e, &e->policy_error, "serving.conf", 0, NULL);
}

/* The versions as text, "1, 2, 3" (or "none"). */
static void loaded_text(const model_entry *e, char *buf, size_t len) {
  size_t used = 0;
  snprintf(buf, len, "none");
  for (int i = 0; i < e->nversions && used + 24 < len; i++)
    used += (size_t)snprintf(buf + used, len - used, "%s%lld", i ? ", " : "", (long long)e->versions[i]->version);
}

/* Marks the versions the policy refuses (srv_policy_walk) and picks the default: the pinned
 * version, or the latest accepted. A pin that cannot be served keeps the current default if
 * it is still loaded and accepted, and otherwise leaves none: serving another version than
 * the one pinned would be a silent change. */
static void select_default(server *s, model_entry *e) {
  srv_policy_item *items = calloc((size_t)e->nversions + 1, sizeof *items);
  if (!items) {
    srv_log(LOG_ERROR, "out of memory choosing the default version", "model=%s kept=%lld", e->name,
            (long long)e->default_version);
    return;
  }
  for (int i = 0; i < e->nversions; i++) {
    items[i].version = e->versions[i]->version;
    items[i].sig = ember_model_signature(&e->versions[i]->model);
  }
  const int latest = srv_policy_walk(&e->policy, items, e->nversions);
  for (int i = 0; i < e->nversions; i++) {
    model_version *v = e->versions[i];
    if (items[i].refused_by == 0) {
      if (v->refused) srv_log(LOG_INFO, "model version accepted", "model=%s version=%lld", e->name, (long long)v->version);
      free(v->refused);
      v->refused = NULL;
      continue;
    }
    if (v->refused && v->refused_by == items[i].refused_by) continue;
    const model_version *base = registry_version(e, items[i].refused_by);
    char mine[256], theirs[256], msg[900];
    ember_signature bs = ember_model_signature(&base->model);
    ember_signature_text(&items[i].sig, mine, sizeof mine);
    ember_signature_text(&bs, theirs, sizeof theirs);
    snprintf(msg, sizeof msg,
             "version %lld (%s) changes the signature of version %lld (%s): not served by default; if "
             "the change is intended, add `allow_signature_change = %lld` to %s/%s/%s",
             (long long)v->version, mine, (long long)base->version, theirs, (long long)v->version,
             s->cfg.models_dir ? s->cfg.models_dir : ".", e->name, SRV_POLICY_FILE);
    char *m = dup_str(msg);
    if (!m) continue;
    const int again = v->refused != NULL; /* still refused, now against another version */
    free(v->refused);
    v->refused = m;
    v->refused_by = items[i].refused_by;
    v->refused_when = (int64_t)time(NULL);
    if (!again) e->stats.load_failures++;
    srv_log(LOG_ERROR, "model version refused", "model=%s version=%lld signature=\"%s\" served_signature=\"%s\" error=\"%s\"",
            e->name, (long long)v->version, mine, theirs, msg);
  }
  free(items);

  const int64_t pin = e->policy_ok ? e->policy.pin : 0;
  model_version *cur = registry_version(e, e->default_version);
  if (cur && cur->refused) cur = NULL;
  model_version *target = NULL;
  if (!e->policy_ok) {
    target = cur; /* a serving.conf that never parsed: nothing becomes the default */
  } else if (pin) {
    model_version *v = registry_version(e, pin);
    char why[600] = "", have[256];
    if (v && !v->refused) {
      target = v;
    } else {
      loaded_text(e, have, sizeof have);
      int ei = find_error(e, pin);
      if (v)
        snprintf(why, sizeof why, "pinned version %lld is refused (%s)", (long long)pin, v->refused);
      else if (ei >= 0)
        snprintf(why, sizeof why, "pinned version %lld failed to load (%s)", (long long)pin,
                 e->errors[ei].message ? e->errors[ei].message : "");
      else
        snprintf(why, sizeof why, "pinned version %lld is not loaded (loaded: %s)", (long long)pin, have);
      target = cur;
      size_t n = strlen(why);
      if (cur) snprintf(why + n, sizeof why - n, "; version %lld stays the default", (long long)cur->version);
      else snprintf(why + n, sizeof why - n, "; no version is the default");
    }
    set_problem(s, e, &e->pin_error, "version", pin, why[0] ? why : NULL);
  } else {
    target = latest >= 0 ? e->versions[latest] : NULL;
  }
  if (!pin || !e->policy_ok) set_problem(s, e, &e->pin_error, "version", 0, NULL);
  const int64_t to = target ? target->version : 0;
  if (to != e->default_version && (to || e->nversions)) /* quiet when the last version is removed */
    srv_log(to ? LOG_INFO : LOG_WARN, "model default version", "model=%s version=%lld previous=%lld policy=%s",
            e->name, (long long)to, (long long)e->default_version, pin ? "pinned" : "latest");
  e->default_version = to;
}

static void watch_dirs(server *s, scan_job *j);

static void apply(server *s, scan_job *j) {
  if (j->errors)
    srv_log(LOG_WARN, "repository scan incomplete", "errors=%d first=\"%s\" unseen=kept", j->errors, j->error);
  for (int i = 0; i < j->nitems; i++) {
    scan_item *it = &j->items[i];
    if (it->status == 0) continue;
    model_entry *e = entry_get(s, it->name);
    if (!e) continue;
    if (it->status == 1) install(s, e, it);
    else record_failure(e, it);
  }
  for (model_entry *e = s->models; e; e = e->next) {
    for (int i = e->nversions - 1; i >= 0; i--)
      if (seen_gone(j, e->name, e->versions[i]->version)) retire(e, i, "file removed");
    for (int i = e->nerrors - 1; i >= 0; i--)
      if (seen_gone(j, e->name, e->errors[i].version)) drop_error(e, i);
    apply_policy(s, e, j);
    select_default(s, e);
  }
  watch_dirs(s, j);
}

static known_file *snapshot(server *s, int *n) {
  int count = 0;
  for (model_entry *e = s->models; e; e = e->next) count += e->nversions + e->nerrors;
  known_file *k = calloc((size_t)count + 1, sizeof *k);
  if (!k) {
    *n = 0;
    return NULL;
  }
  int at = 0;
  for (model_entry *e = s->models; e; e = e->next) {
    for (int i = 0; i < e->nversions; i++, at++) {
      snprintf(k[at].name, sizeof k[at].name, "%s", e->name);
      k[at].version = e->versions[i]->version;
      k[at].mtime = e->versions[i]->mtime;
      k[at].size = e->versions[i]->size;
    }
    for (int i = 0; i < e->nerrors; i++, at++) {
      snprintf(k[at].name, sizeof k[at].name, "%s", e->name);
      k[at].version = e->errors[i].version;
      k[at].mtime = e->errors[i].mtime;
      k[at].size = e->errors[i].size;
    }
  }
  *n = at;
  return k;
}

/* ---- triggering scans ---------------------------------------------------------------------- */

static void request_scan(server *s);

static void scan_done(uv_work_t *w, int status) {
  scan_job *j = w->data;
  server *s = j->s;
  s->scan_running = 0;
  if (j->fail_alloc)
    srv_log(LOG_WARN, "fault injection", "site=scan_alloc allocation=%d injected=%d", j->fail_alloc,
            j->allocs >= j->fail_alloc);
  if (status == 0 && !s->shutting_down) {
    if (j->fatal) srv_log(LOG_ERROR, "repository scan failed", "error=\"%s\"", j->fatal);
    else apply(s, j);
  }
  free_job(j);
  if (s->scan_again && !s->shutting_down) {
    s->scan_again = 0;
    request_scan(s);
  }
  server_maybe_finish(s);
}

static scan_job *new_job(server *s) {
  scan_job *j = calloc(1, sizeof *j);
  if (!j) return NULL;
  j->s = s;
  j->known = snapshot(s, &j->nknown);
  j->work.data = j;
  return j;
}

static void request_scan(server *s) {
  if (s->shutting_down) return;
  if (s->scan_running) {
    s->scan_again = 1;
    return;
  }
  scan_job *j = new_job(s);
  if (!j) return;
  const char *fault = s->faults.scan_alloc; /* "N1,N2,...": allocation N1 of this scan fails */
  if (fault) {
    char *end;
    long n = strtol(fault, &end, 10);
    j->fail_alloc = n > 0 && n < INT_MAX ? (int)n : 0;
    s->faults.scan_alloc = *end == ',' ? end + 1 : NULL;
  }
  if (s->faults.scan_pause > 0) {
    j->loading_scans = &s->faults.scans;
    j->pause_at = s->faults.scan_pause;
  }
  s->scan_running = 1;
  uv_queue_work(s->loop, &j->work, scan_work, scan_done);
}

static void on_timer(uv_timer_t *t) { request_scan(t->data); }

static void on_fs_event(uv_fs_event_t *h, const char *file, int events, int status) {
  (void)file;
  (void)events;
  (void)status;
  server *s = h->data;
  if (!s->shutting_down) uv_timer_start(&s->rescan_timer, on_timer, 100, 0);
}

static void free_handle(uv_handle_t *h) { free(h); }

static void watch_dirs(server *s, scan_job *j) {
  for (int d = 0; d < j->ndirs; d++) {
    int have = 0;
    for (int i = 0; i < s->nwatches && !have; i++) have = strcmp(s->watch_paths[i], j->dirs[d]) == 0;
    if (have) continue;
    uv_fs_event_t *h = malloc(sizeof *h);
    uv_fs_event_t **gw = realloc(s->watches, (size_t)(s->nwatches + 1) * sizeof *gw);
    if (gw) s->watches = gw;
    char **gp = realloc(s->watch_paths, (size_t)(s->nwatches + 1) * sizeof *gp);
    if (gp) s->watch_paths = gp;
    char *path = dup_str(j->dirs[d]);
    if (!h || !gw || !gp || !path) {
      free(h);
      free(path);
      continue;
    }
    uv_fs_event_init(s->loop, h);
    h->data = s;
    if (uv_fs_event_start(h, on_fs_event, path, 0) != 0) {
      uv_close((uv_handle_t *)h, free_handle);
      free(path);
      continue; /* the poll timer still covers it */
    }
    s->watches[s->nwatches] = h;
    s->watch_paths[s->nwatches++] = path;
  }
}

int registry_start(server *s) {
  uv_timer_init(s->loop, &s->poll_timer);
  uv_timer_init(s->loop, &s->rescan_timer);
  s->poll_timer.data = s->rescan_timer.data = s;
  /* the first scan runs before serving, so the server starts with its models */
  scan_job *j = new_job(s);
  if (!j) return -1;
  scan_work(&j->work);
  if (j->fatal) {
    fprintf(stderr, "emberd: %s\n", j->fatal);
    free_job(j);
    uv_close((uv_handle_t *)&s->poll_timer, NULL);
    uv_close((uv_handle_t *)&s->rescan_timer, NULL);
    uv_run(s->loop, UV_RUN_NOWAIT);
    return -1;
  }
  if (s->cfg.model_file && j->nitems == 1 && j->items[0].status == 2) {
    /* one model asked for and it does not load: nothing to serve, say so and stop */
    fprintf(stderr, "emberd: %s\n", j->items[0].error ? j->items[0].error : "cannot load the model");
    free_job(j);
    uv_close((uv_handle_t *)&s->poll_timer, NULL);
    uv_close((uv_handle_t *)&s->rescan_timer, NULL);
    uv_run(s->loop, UV_RUN_NOWAIT);
    return -1;
  }
  apply(s, j);
  if (j->stray)
    srv_log(LOG_WARN, "checkpoint files directly in the model repository are not served",
            "dir=%s files=%d first=%s layout=DIR/<model>/<version>.safetensors hint=\"e.g. %s/%.*s/1.safetensors, "
            "or serve one file with --model\"", s->cfg.models_dir, j->stray, j->stray_name, s->cfg.models_dir,
            (int)(strlen(j->stray_name) - strlen(".safetensors")), j->stray_name);
  int loaded = 0;
  for (model_entry *e = s->models; e; e = e->next) loaded += e->nversions;
  if (loaded == 0)
    srv_log(LOG_WARN, "no model loaded yet", "watching=%s", s->cfg.models_dir ? s->cfg.models_dir : s->cfg.model_file);
  free_job(j);
  uv_timer_start(&s->poll_timer, on_timer, (uint64_t)s->cfg.poll_ms, (uint64_t)s->cfg.poll_ms);
  return 0;
}

void registry_rescan_soon(server *s) {
  if (!s->shutting_down && s->cfg.models_dir) uv_timer_start(&s->rescan_timer, on_timer, 20, 0);
}

void registry_stop(server *s) {
  uv_timer_stop(&s->poll_timer);
  uv_timer_stop(&s->rescan_timer);
  if (!uv_is_closing((uv_handle_t *)&s->poll_timer)) uv_close((uv_handle_t *)&s->poll_timer, NULL);
  if (!uv_is_closing((uv_handle_t *)&s->rescan_timer)) uv_close((uv_handle_t *)&s->rescan_timer, NULL);
  for (int i = 0; i < s->nwatches; i++) {
    uv_fs_event_t *h = s->watches[i];
    uv_fs_event_stop(h);
    uv_close((uv_handle_t *)h, free_handle);
    free(s->watch_paths[i]);
  }
  free(s->watches);
  free(s->watch_paths);
  s->watches = NULL;
  s->watch_paths = NULL;
  s->nwatches = 0;
}

void registry_free(server *s) {
  while (s->models) {
    model_entry *e = s->models;
    s->models = e->next;
    while (e->nversions > 0) retire(e, e->nversions - 1, "server stopped");
    while (e->nerrors > 0) drop_error(e, e->nerrors - 1);
    free(e->policy_error.message);
    free(e->policy_error.path);
    free(e->pin_error.message);
    free(e->pin_error.path);
    free(e->versions);
    free(e->errors);
    free(e);
  }
}
