/* train_cli.h - what `ember train` (cmd_train.c) shares with `ember --server H:P train`
 * (remote_train.c): the same flags, checks and defaults, the same start line and progress
 * output. */
#ifndef EMBER_TRAIN_CLI_H
#define EMBER_TRAIN_CLI_H

#include "args.h"
#include "ember/train.h"

typedef struct train_cli {
  ember_train_opts o;          /* every flag, with `ember train`'s method-dependent defaults */
  ember_train_opts o_img;      /* the same for image data: its recipe (ember_train_opts_for_images)
                                  for every option not given */
  const char *data, *out;      /* --data, --out (local only) */
  const char *y_cols;          /* --y-cols NAME,NAME: a CSV header's y columns, or NULL */
  const char *method, *arch, *schedule;
  int y_dim, threads, quiet;   /* y_dim -1: the file's (CSV: its header's y: marks or --y-cols;
                                  .npz: y's width); threads: local only */
  int64_t snapshot_every;      /* --snapshot-every (local only) */
  const char *val;             /* --val FILE (local only; o.val_split is --val-split) */
  int val_rows;                /* rows of --val FILE once read, for the banner */
  const char *conv, *head;     /* --conv, --head: the encoder for image data (local only) */
  ember_encoder_shape enc;     /* what they say (the image size comes from the data) */
} train_cli;

/* Parses the flags of `ember train` into t. remote drops --out and refuses --threads; extra options
 * (their min_set is updated) are listed after --data. Returns 0, 1 after --help, or -1 after a
 * message on stderr (exit status 2). */
int train_cli_parse(train_cli *t, const char *usage, int remote, opt_spec *extra, int nextra, int argc,
                    char **argv);
/* "training dfo on N rows (x_dim, y_dim): resnet WxD, ..." on stderr (unless quiet), and
 * what validates it (--val FILE's t->val_rows rows, or --val-split's share of the N). */
void train_cli_banner(const train_cli *t, int n, int x_dim, int y_dim);
/* ", validation loss V (chance C, R rows)" (mse: "validation MSE ...") for the line that ends
 * training; "" without validation (rows 0). */
void train_cli_val_text(ember_method method, int rows, double loss, double chance, char *buf, size_t len);

/* The progress display: a bar redrawn in place on a terminal, else about twenty plain lines
 * (at least one every ten seconds). */
typedef struct train_printer {
  int tty, quiet;
  double last_print;
  int64_t every, last_grid;
} train_printer;
void train_printer_init(train_printer *pp, int quiet, int64_t steps);
void train_printer_show(train_printer *pp, const ember_train_progress *p);

#endif
