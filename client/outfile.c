/* outfile.c - atomic output files for the CLI (see outfile.h). */
#include "outfile.h"

#include "ember/base.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUTFILE_TMP_TRIES 16

int cli_outfile_open(cli_outfile *o, const char *path, char *msg, size_t msg_len) {
  o->path = path;
  o->tmp = NULL;
  o->f = NULL;
  if (strcmp(path, "-") == 0) {
    o->f = stdout;
    return 0;
  }
  size_t cap = strlen(path) + 64;
  o->tmp = malloc(cap);
  if (!o->tmp) {
    snprintf(msg, msg_len, "%s: out of memory", path);
    return -1;
  }
  int fd = -1;
  for (int n = 0; n < OUTFILE_TMP_TRIES && fd < 0; n++) {
    snprintf(o->tmp, cap, "%s.tmp.%ld.%d", path, (long)getpid(), n);
    fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd >= 0 && !(o->f = fdopen(fd, "wb"))) {
    int e = errno;
    close(fd);
    unlink(o->tmp);
    errno = e;
  }
  if (!o->f) {
    snprintf(msg, msg_len, "%s: cannot write: %s", path, strerror(errno));
    free(o->tmp);
    o->tmp = NULL;
    return -1;
  }
  return 0;
}

int cli_outfile_commit(cli_outfile *o, char *msg, size_t msg_len) {
  if (!o->tmp) {
    if (fflush(o->f) == 0 && !ferror(o->f)) return 0;
    snprintf(msg, msg_len, "standard output: could not write all of it");
    return -1;
  }
  int bad = fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) < 0;
  int e = errno;
  if (fclose(o->f) != 0 && !bad) bad = 1, e = errno;
  o->f = NULL;
  if (!bad && rename(o->tmp, o->path) < 0) bad = 1, e = errno;
  if (bad) {
    snprintf(msg, msg_len, "%s: cannot write: %s", o->path, strerror(e));
    unlink(o->tmp);
  } else {
    (void)ember_fsync_dir_of(o->path); /* durable rename; a directory that cannot be synced is left */
  }
  free(o->tmp);
  o->tmp = NULL;
  return bad ? -1 : 0;
}

void cli_outfile_abort(cli_outfile *o) {
  if (!o->tmp) return;
  if (o->f) fclose(o->f);
  o->f = NULL;
  unlink(o->tmp);
  free(o->tmp);
  o->tmp = NULL;
}
