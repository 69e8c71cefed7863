/* remote_train.c - `ember --server HOST:PORT train --model NAME (--data FILE | --dataset NAME)`:
 * the flags of local `ember train` (train_cli.h), the data read here and sent inline (or a file
 * in the server's --data-dir named by --dataset), the progress stream shown as local training
 * shows it, and the version the server published. Ctrl-C cancels the call, and so the job
 * (exit 130); a refusal or failure exits 1.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ember/dataset.h"
#include "remote_client.h"
#include "train_cli.h"
#include "wire.h"

static volatile sig_atomic_t interrupted; /* set by the SIGINT handler */

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

typedef struct stream_state {
  train_cli *t;
  train_printer pp;
  int banner_shown;
  int64_t version;
  int done;
  float loss_avg;
  int64_t steps;
  double elapsed;
  float val_loss, val_chance; /* the last validation reported (val_rows 0: none) */
  int val_rows;
} stream_state;

static void on_message(void *ctx, const ProtobufCMessage *msg) {
  stream_state *ss = ctx;
  const Ember__V1__TrainProgress *m = (const Ember__V1__TrainProgress *)msg;
  if (!ss->banner_shown && m->rows) {
    train_cli_banner(ss->t, (int)m->rows, (int)m->x_dim, (int)m->y_dim);
    ss->banner_shown = 1;
  }
  if (m->steps > 0 && !(m->done && (int64_t)m->step == ss->steps)) { /* the final message repeats the last step */
    ember_train_progress p = {.step = m->step, .steps = m->steps, .loss = m->loss, .loss_avg = m->loss_avg,
                              .lr = m->lr, .elapsed_s = m->elapsed_s, .steps_per_s = m->steps_per_s,
                              .eta_s = m->eta_s};
    if (m->optional_val_loss_case == EMBER__V1__TRAIN_PROGRESS__OPTIONAL_VAL_LOSS_VAL_LOSS) {
      p.val_loss = m->val_loss;
      p.val_chance = m->val_chance;
      p.val_rows = (int)m->val_rows;
      ss->val_loss = m->val_loss;
      ss->val_chance = m->val_chance;
      ss->val_rows = (int)m->val_rows;
    }
    train_printer_show(&ss->pp, &p);
    ss->loss_avg = m->loss_avg;
    ss->steps = m->step;
    ss->elapsed = m->elapsed_s;
  }
  if (m->done) {
    ss->done = 1;
    ss->version = m->version;
  }
}

int remote_cmd_train(const char *server, int argc, char **argv) {
  const char *model = NULL, *dataset = NULL;
  remote_security *sec = remote_security_opts();
  opt_spec extra[] = {
      {"model", OPT_STR, &model, "NAME", "the model on the server to publish a new version of (created if new)", 0, 0},
      {"dataset", OPT_STR, &dataset, "NAME", "instead of --data: a CSV or .npz file in the server's --data-dir (relative path)", 0, 0},
      REMOTE_SECURITY_SPECS(sec),
  };
  train_cli t;
  int rc = train_cli_parse(&t, "--model NAME (--data FILE | --dataset NAME) [options]", 1, extra,
                           (int)(sizeof extra / sizeof *extra), argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!model || !t.data == !dataset) {
    fprintf(stderr, "ember train: with --server, give --model NAME and one of --data FILE and --dataset NAME "
                    "(see ember --server H:P train --help)\n");
    return 2;
  }
  const ember_train_opts *o = &t.o;
  Ember__V1__TrainRequest req = EMBER__V1__TRAIN_REQUEST__INIT;
  ember_dataset ds;
  memset(&ds, 0, sizeof ds);
  ember_err err;
  if (t.data) {
    ember_dataset_spec spec = {-1, t.y_dim, t.y_cols};
    if (ember_dataset_load(t.data, &spec, &ds, &err) < 0) {
      fprintf(stderr, "ember train: %s\n", err.msg);
      return 1;
    }
    if (ds.x_dim < 1) {
      fprintf(stderr, "ember train: %s has no x columns left after %d y column(s)\n", t.data, ds.y_dim);
      ember_dataset_free(&ds);
      return 1;
    }
    req.n_x = (size_t)ds.n * (size_t)ds.x_dim;
    req.x = ds.x;
    req.n_y = (size_t)ds.n * (size_t)ds.y_dim;
    req.y = ds.y;
    req.x_dim = (uint32_t)ds.x_dim;
    req.y_dim = (uint32_t)ds.y_dim;
    if (ds.x_names) req.n_x_names = (size_t)ds.x_dim, req.x_names = ds.x_names; /* the signature */
    if (ds.y_names) req.n_y_names = (size_t)ds.y_dim, req.y_names = ds.y_names;
  } else {
    req.dataset = (char *)dataset;
    req.y_dim = t.y_dim > 0 ? (uint32_t)t.y_dim : 0;
    req.y_cols = (char *)(t.y_cols ? t.y_cols : "");
  }
  /* every setting explicit: the model is the one local training with these flags makes */
  req.model = (char *)model;
  ember_wire_train_to_msg(o, &req);

  stream_state ss;
  memset(&ss, 0, sizeof ss);
  ss.t = &t;
  train_printer_init(&ss.pp, t.quiet, o->steps);
  if (t.data) {
    train_cli_banner(&t, ds.n, ds.x_dim, ds.y_dim);
    ss.banner_shown = 1;
  }
  remote_init();
  remote_client *c = NULL;
  remote_status st;
  int exit_code = 1;
  if (remote_open(&c, server, remote_default_deadline_ms(), &st) != GRPC_STATUS_OK) {
    remote_report("train", &st);
  } else {
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    grpc_status_code code = (grpc_status_code)ember__client_stream(c, EMBER__TRAIN, &req.base, on_message, &ss, &interrupted, &st);
    sigaction(SIGINT, &old, NULL);
    if (ss.pp.tty && !t.quiet && !ss.done && ss.steps > 0) fputc('\n', stderr);
    if (code == GRPC_STATUS_OK && ss.done) {
      char val[160];
      train_cli_val_text(o->method, ss.val_rows, ss.val_loss, ss.val_chance, val, sizeof val);
      if (!t.quiet)
        fprintf(stderr, "trained %lld steps in %.1fs, final loss %.4f%s; published %s version %lld on %s\n",
                (long long)ss.steps, ss.elapsed, (double)ss.loss_avg, val, model, (long long)ss.version, server);
      exit_code = 0;
    } else if (interrupted) {
      fprintf(stderr, "ember train: cancelled; the server publishes nothing\n");
      exit_code = 130;
    } else if (code == GRPC_STATUS_OK) {
      fprintf(stderr, "ember train: the server ended the stream without publishing a version\n");
    } else {
      remote_report("train", &st);
    }
    remote_close(c);
  }
  remote_shutdown();
  ember_dataset_free(&ds);
  return exit_code;
}
