/* outfile.h - files the CLI writes (datasets, images), whole or not at all.
 *
 * The data goes to a temporary file next to the target (<path>.tmp.<pid>.<n>, created with
 * O_EXCL so two writers never share one), which commit flushes, fsyncs and renames over the
 * target, then fsyncs the directory. On any failure the temporary file is removed and the
 * target is left as it was. "-" means standard output, written directly.
 *
 *     cli_outfile o;   char why[256];
 *     if (cli_outfile_open(&o, path, why, sizeof why) < 0) { fprintf(stderr, "%s\n", why); ... }
 *     fprintf(o.f, ...);
 *     if (cli_outfile_commit(&o, why, sizeof why) < 0) fprintf(stderr, "%s\n", why);
 */
#ifndef EMBER_OUTFILE_H
#define EMBER_OUTFILE_H

#include <stddef.h>
#include <stdio.h>

typedef struct cli_outfile {
  FILE *f;          /* where to write */
  const char *path; /* the target (not owned) */
  char *tmp;        /* the temporary file; NULL for stdout */
} cli_outfile;

/* 0, or -1 with "PATH: cannot write: reason" in msg (nothing to clean up then). */
int cli_outfile_open(cli_outfile *o, const char *path, char *msg, size_t msg_len);
/* Puts the file in place (stdout: flushes it). 0, or -1 with the reason in msg. Either way
 * o is finished with. */
int cli_outfile_commit(cli_outfile *o, char *msg, size_t msg_len);
/* Gives up: closes and removes the temporary file (stdout: nothing). */
void cli_outfile_abort(cli_outfile *o);

#endif
