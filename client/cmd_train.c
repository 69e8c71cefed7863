/* cmd_train.c - `ember train`: read a dataset, train, write a checkpoint.
 *
 * Progress goes to stderr: a bar redrawn in place when stderr is a terminal, plain lines
 * (about twenty per run, at least one every ten seconds) otherwise, so logs stay readable.
 * Ctrl-C stops training cleanly and writes nothing; the checkpoint is written atomically, so
 * an existing file at --out is either the old model or the new one, never half of each.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "train_cli.h"
#include "ember/dataset.h"
#include "ember/model.h"
#include "ember/train.h"

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static void fmt_duration(double s, char *buf, size_t len) {
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
  else snprintf(buf, len, "%lds", t);
}

void train_printer_init(train_printer *pp, int quiet, int64_t steps) {
  pp->tty = isatty(STDERR_FILENO);
  pp->quiet = quiet;
  pp->last_print = 0.0;
  pp->last_grid = 0;
  pp->every = steps / 20 > 0 ? steps / 20 : 1;
}

void train_printer_show(train_printer *st, const ember_train_progress *p) {
  if (st->quiet) return;
  double now = p->elapsed_s;
  int last = p->step == p->steps;
  char eta[32];
  fmt_duration(p->eta_s, eta, sizeof eta);
  if (st->tty) {
    if (!last && now - st->last_print < 0.1) return;
    st->last_print = now;
    int width = 24, fill = (int)(width * p->step / (p->steps ? p->steps : 1));
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    char val[48] = "";
    if (p->val_rows > 0) snprintf(val, sizeof val, "  val %.4f", p->val_loss);
    fprintf(stderr, "\r[%s] step %lld/%lld  loss %.4f%s  %.1f steps/s  ETA %s   ", bar,
            (long long)p->step, (long long)p->steps, (double)p->loss_avg, val, p->steps_per_s, eta);
    if (last) fputc('\n', stderr);
  } else {
    /* remote progress comes about twice a second: a step off the 1/20 grid still prints when it
     * is the first report past a grid point */
    int64_t grid = p->step / st->every;
    if (!last && grid <= st->last_grid && now - st->last_print < 10.0) return;
    st->last_grid = grid;
    st->last_print = now;
    char val[96] = "";
    if (p->val_rows > 0)
      snprintf(val, sizeof val, " val %.4f (chance %.4f, %d rows)", p->val_loss, p->val_chance, p->val_rows);
    fprintf(stderr, "step %lld/%lld loss %.4f avg %.4f%s lr %.3g %.1f steps/s eta %s\n",
            (long long)p->step, (long long)p->steps, (double)p->loss, (double)p->loss_avg, val,
            (double)p->lr, p->steps_per_s, eta);
  }
  fflush(stderr);
}

void train_cli_banner(const train_cli *t, int n, int x_dim, int y_dim) {
  const ember_train_opts *o = &t->o;
  if (t->quiet) return;
  fprintf(stderr, "training %s on %d rows (x_dim %d, y_dim %d): %s %dx%d, %lld steps, batch %d%s",
          ember_method_name(o->method), n, x_dim, y_dim, ember_arch_name(o->arch), o->width,
          o->depth, (long long)o->steps, o->batch, o->method == EMBER_METHOD_MSE ? "\n" : "");
  if (o->method == EMBER_METHOD_DFO) fprintf(stderr, ", %d negatives\n", o->negatives);
  if (o->method == EMBER_METHOD_ARDFO) fprintf(stderr, ", %d negatives, %d prefix nets\n", o->negatives, y_dim);
  if (o->method == EMBER_METHOD_LANGEVIN)
    fprintf(stderr, ", %d negatives through %d-step chains\n", o->negatives, o->langevin.steps);
  if (o->val_split > 0.0f)
    fprintf(stderr, "validating on %d of the %d rows, held out (--val-split %g, seed %llu)\n",
            ember_dataset_split_rows(n, o->val_split), n, (double)o->val_split, (unsigned long long)o->seed);
  else if (t->val)
    fprintf(stderr, "validating on %s (%d rows)\n", t->val, t->val_rows);
}

void train_cli_val_text(ember_method method, int rows, double loss, double chance, char *buf, size_t len) {
  buf[0] = 0;
  if (rows > 0)
    snprintf(buf, len, ", validation %s %.4f (%s %.4f, %d rows)", method == EMBER_METHOD_MSE ? "MSE" : "loss",
             loss, method == EMBER_METHOD_MSE ? "answering the mean" : "chance", chance, rows);
}

/* --snapshot-every: OUT (less .safetensors) + "-stepK.safetensors" */
typedef struct snapshot_ctx {
  const char *out;
  int quiet;
} snapshot_ctx;

static void snapshot_path(const char *out, int64_t step, char *buf, size_t len) {
  size_t n = strlen(out);
  const char *ext = ".safetensors";
  size_t e = strlen(ext);
  int base = n > e && strcmp(out + n - e, ext) == 0 ? (int)(n - e) : (int)n;
  snprintf(buf, len, "%.*s-step%lld.safetensors", base, out, (long long)step);
}

static int on_snapshot(void *ctx, const ember_model *m, int64_t step) {
  snapshot_ctx *sc = ctx;
  char path[4096];
  snapshot_path(sc->out, step, path, sizeof path);
  ember_err err;
  if (ember_model_save(m, path, &err) < 0) {
    fprintf(stderr, "ember train: snapshot at step %lld: %s\n", (long long)step, err.msg);
    return 1;
  }
  return 0;
}

static int on_progress(void *ctx, const ember_train_progress *p) {
  if (interrupted) return 1;
  train_printer_show(ctx, p);
  return 0;
}

/* An option's field in another ember_train_opts than the one it parses into (o) */
static void *field_of(ember_train_opts *other, const ember_train_opts *o, const opt_spec *s) {
  return (char *)other + ((const char *)s->dst - (const char *)o);
}
/* whether option s sets a field of o (a numeric one) whose value in img differs */
static int recipe_field(const ember_train_opts *o, ember_train_opts *img, const opt_spec *s) {
  uintptr_t p = (uintptr_t)s->dst, base = (uintptr_t)o; /* other options point elsewhere */
  size_t n = args_value_size(s->type);
  if (n == 0 || p < base || p + n > base + sizeof *o) return 0;
  return memcmp(field_of(img, o, s), s->dst, n) != 0;
}

int train_cli_parse(train_cli *t, const char *usage, int remote, opt_spec *extra, int nextra, int argc,
                    char **argv) {
  ember_train_opts *o = &t->o;
  memset(t, 0, sizeof *t);
  t->method = "dfo";
  /* the defaults depend on the method: find --method first, so that --help shows its recipe */
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--method") == 0 && i + 1 < argc) t->method = argv[i + 1];
    else if (strncmp(argv[i], "--method=", 9) == 0) t->method = argv[i] + 9;
  }
  ember_method m0 = EMBER_METHOD_DFO;
  (void)ember_method_parse(t->method, &m0); /* a bad name is refused after parsing */
  ember_train_opts_for_method(o, m0);
  t->arch = ember_arch_name(o->arch); /* the method's, as every default here */
  t->schedule = ember_schedule_name(o->langevin.schedule);
  t->y_dim = -1;
  t->threads = cli_default_threads();
  t->conv = EMBER_ENCODER_DEFAULT_CONV;
  t->head = ember_head_name(EMBER_HEAD_SOFTARGMAX);
  static char margin_help[200];
  snprintf(margin_help, sizeof margin_help,
           "sampling bounds widen the data range by this fraction per side; DFO answers only inside "
           "them (default %g; image data %g, for answers beyond the training targets; langevin: none)",
           (double)EMBER_BOUND_MARGIN, (double)EMBER_IMAGE_BOUND_MARGIN);
  opt_spec all[] = {
      {"data", OPT_STR, &t->data, "FILE", remote ? "training pairs, read here and sent to the server: CSV (which columns are y: --y-cols, --y-dim or y: marks in its header; docs/signatures.md) or .npz with x and y" : "training pairs: CSV (which columns are y: --y-cols, --y-dim or y: marks in its header, e.g. px,py,y:ax,y:ay; docs/signatures.md) or .npz with x and y (and optional x_names, y_names)", 0, 0},
      {"out", OPT_STR, &t->out, "FILE", "where to write the model (.safetensors)", 0, 0},
      {"method", OPT_STR, &t->method, "M", "dfo (implicit, InfoNCE + DFO), ardfo (implicit, one net per y-prefix + autoregressive DFO), langevin (implicit, Langevin chains) or mse (explicit); each has its own defaults below (ember train --method M --help shows them)", 0, 0},
      {"y-dim", OPT_INT, &t->y_dim, NULL, "columns of y, the last K of a CSV (default: a CSV header's y: columns, or --y-cols; a CSV with neither is refused, never guessed; .npz: the y array's width)", 0, 1},
      {"y-cols", OPT_STR, &t->y_cols, "A,B", "a CSV header's y columns by name, in y's order (e.g. ax,ay); the rest are x", 0, 1},
      {"steps", OPT_I64, &o->steps, NULL, "training steps", 0, 0},
      {"batch", OPT_INT, &o->batch, NULL, "examples per step", 0, 0},
      {"negatives", OPT_INT, &o->negatives, NULL, "counter-examples per example (uniform; langevin: moved by chains)", 0, 0},
      {"arch", OPT_STR, &t->arch, "A", "resnet (pre-activation ResNet MLP) or mlp", 0, 0},
      {"width", OPT_INT, &o->width, NULL, "hidden width", 0, 0},
      {"depth", OPT_INT, &o->depth, NULL, "hidden dense layers (even for resnet)", 0, 0},
      {"lr", OPT_FLOAT, &o->lr, NULL, "Adam learning rate", 0, 0},
      {"lr-decay", OPT_FLOAT, &o->lr_decay, NULL, "learning-rate factor per --decay-steps", 0, 0},
      {"decay-steps", OPT_INT, &o->decay_steps, NULL, "steps per learning-rate decay", 0, 0},
      {"temperature", OPT_FLOAT, &o->temperature, NULL, "InfoNCE softmax temperature", 0, 0},
      {"bound-margin", OPT_FLOAT, &o->bound_margin, NULL, margin_help, 0, 1},
      {"seed", OPT_U64, &o->seed, NULL, "random seed (same seed + threads = same model)", 0, 0},
      {"threads", OPT_INT, &t->threads, NULL, "worker threads (default: online CPUs)", 0, 1},
      {"samples", OPT_INT, &o->infer.samples, NULL, "default inference samples stored in the model (langevin: chains)", 0, 0},
      {"chain-steps", OPT_INT, &o->langevin.steps, NULL, "langevin: training chain length (inference uses twice this)", 0, 0},
      {"schedule", OPT_STR, &t->schedule, "S", "langevin: step schedule, ibc (init -> final, power 2) or poly (init k^-gamma)", 0, 0},
      {"step-init", OPT_FLOAT, &o->langevin.step_init, NULL, "langevin: first step size", 0, 0},
      {"step-final", OPT_FLOAT, &o->langevin.step_final, NULL, "langevin: last step size (ibc schedule)", 0, 0},
      {"gamma", OPT_FLOAT, &o->langevin.gamma, NULL, "langevin: poly schedule exponent", 0, 0},
      {"noise-scale", OPT_FLOAT, &o->langevin.noise_scale, NULL, "langevin: noise factor", 0, 0},
      {"delta-max", OPT_FLOAT, &o->langevin.delta_max, NULL, "langevin: per-step change clip (normalised units; 0 = none)", 0, 0},
      {"penalty-margin", OPT_FLOAT, &o->penalty_margin, NULL, "langevin: gradient penalty margin M", 0, 0},
      {"penalty-weight", OPT_FLOAT, &o->penalty_weight, NULL, "langevin: gradient penalty weight", 0, 0},
      {"uniform-negatives", OPT_INT, &o->uniform_negatives, NULL, "langevin: more counter-examples per example, uniform and not moved by chains (InfoNCE only)", 0, 0},
      {"prefix-share", OPT_FLOAT, &o->keep_prefix_share, NULL, "ardfo: share of counter-examples near the true y prefix (the rest are uniform in every coordinate)", 0, 0},
      {"prefix-noise", OPT_FLOAT, &o->prefix_noise, NULL, "ardfo: noise on those counter-examples' prefix, normalised units", 0, 0},
      {"ema", OPT_FLOAT, &o->ema, NULL, "keep an exponential moving average of the weights with this decay per step (e.g. 0.999) and save it as the model (0 = the last step's weights)", 0, 0},
      {"snapshot-every", OPT_I64, &t->snapshot_every, "K", "also save the model every K steps as OUT-stepK.safetensors beside --out (learning curves; 0 = never)", 0, 0},
      {"spectral-norm", OPT_FLAG, &o->spectral_norm, NULL, "spectral normalisation of the hidden dense layers (one power iteration per step)", 0, 0},
      {"iters", OPT_INT, &o->infer.iters, NULL, "default inference iterations stored in the model", 0, 0},
      {"sigma", OPT_FLOAT, &o->infer.sigma, NULL, "default initial inference noise (normalised units)", 0, 0},
      {"shrink", OPT_FLOAT, &o->infer.shrink, NULL, "default noise shrink per iteration", 0, 0},
      {"val", OPT_STR, &t->val, "FILE", remote ? "not with --server: send --val-split instead (the server holds that share of the data out)" : "validation pairs with --data's columns: their loss is shown as training goes and stored in the model (ember info)", 0, 0},
      {"val-split", OPT_FLOAT, &o->val_split, "F", "hold out this share of --data's rows (chosen by --seed) for validation instead (0 = none)", 0, 0},
      {"quiet", OPT_FLAG, &t->quiet, NULL, "no progress output", 0, 0},
      {"conv", OPT_STR, &t->conv, "C:K:S[:P],...", "image data: the encoder's convolutions, channels:kernel:stride[:zero padding] per layer (docs/images.md)", 0, 0},
      {"head", OPT_STR, &t->head, "H", "image data: the encoder's head, softargmax (2 coordinates per channel) or pool (the mean of each channel)", 0, 0},
  };
  /* The options whose default differs for image data say both defaults in their help. */
  ember_train_opts img = *o;
  ember_train_opts_for_images(&img);
  static char img_help[sizeof all / sizeof *all][400];
  int nimg = 0;
  for (size_t i = 0; !remote && i < sizeof all / sizeof *all; i++) { /* emberd trains no images */
    opt_spec *s = &all[i];
    char v[32], d[32];
    if (!recipe_field(o, &img, s)) continue;
    args_value_text(s->type, s->dst, d, sizeof d);
    args_value_text(s->type, field_of(&img, o, s), v, sizeof v);
    snprintf(img_help[nimg], sizeof img_help[nimg], "%s (default %s; image data %s)", s->help, d, v);
    s->help = img_help[nimg++];
    s->hide_default = 1;
  }
  /* remote: no --out (the server publishes), and --threads is refused (the server's
   * --train-threads);
   * the caller's extra options (--model, --dataset, access control) go after --data */
  opt_spec specs[64];
  int nspecs = 0;
  for (size_t i = 0; i < sizeof all / sizeof *all; i++) {
    if (remote && (strcmp(all[i].name, "out") == 0 || strcmp(all[i].name, "snapshot-every") == 0)) continue;
    if (remote && strcmp(all[i].name, "threads") == 0)
      all[i].help = "not with --server: the server's --train-threads sets a job's threads";
    specs[nspecs++] = all[i];
    if (i == 0)
      for (int k = 0; k < nextra && nspecs < 60; k++) specs[nspecs++] = extra[k];
  }
  const char *verb = "train";
  int rc = args_parse(verb, usage, specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? -1 : 1;
  for (int k = 0; k < nextra; k++) /* report back which extras were given */
    for (int i = 0; i < nspecs; i++)
      if (strcmp(specs[i].name, extra[k].name) == 0) extra[k].min_set = specs[i].min_set;
  if (remote && args_given(specs, nspecs, "threads")) {
    fprintf(stderr, "ember train: --threads does not apply with --server: the server trains with its "
                    "--train-threads threads (a model equals a local one trained with as many)\n");
    return -1;
  }
  if (ember_method_parse(t->method, &o->method) < 0) {
    fprintf(stderr, "ember train: --method must be dfo, ardfo, langevin or mse, got '%s'\n", t->method);
    return -1;
  }
  if (ember_schedule_parse(t->schedule, &o->langevin.schedule) < 0) {
    fprintf(stderr, "ember train: --schedule must be ibc or poly, got '%s'\n", t->schedule);
    return -1;
  }
  if (o->method != EMBER_METHOD_ARDFO)
    for (int i = 0; i < 2; i++)
      if (args_given(specs, nspecs, i ? "prefix-noise" : "prefix-share")) {
        fprintf(stderr, "ember train: --%s applies to --method ardfo only\n", i ? "prefix-noise" : "prefix-share");
        return -1;
      }
  static const char *const langevin_only[] = {"chain-steps", "schedule", "step-init", "step-final", "gamma",
                                              "noise-scale", "delta-max", "penalty-margin", "penalty-weight",
                                              "uniform-negatives"};
  for (size_t i = 0; o->method != EMBER_METHOD_LANGEVIN && i < sizeof langevin_only / sizeof *langevin_only; i++)
    if (args_given(specs, nspecs, langevin_only[i])) {
      fprintf(stderr, "ember train: --%s applies to --method langevin only\n", langevin_only[i]);
      return -1;
    }
  if (remote && t->val) {
    fprintf(stderr, "ember train: --val FILE is local only; with --server use --val-split F (the server holds "
                    "that share of the training rows out)\n");
    return -1;
  }
  if (t->val && o->val_split > 0.0f) {
    fprintf(stderr, "ember train: give --val FILE or --val-split F, not both\n");
    return -1;
  }
  if (t->snapshot_every < 0) {
    fprintf(stderr, "ember train: --snapshot-every must be >= 0, got %lld\n", (long long)t->snapshot_every);
    return -1;
  }
  if (remote && (args_given(specs, nspecs, "conv") || args_given(specs, nspecs, "head"))) {
    fprintf(stderr, "ember train: --conv and --head are local only: emberd does not train image models\n");
    return -1;
  }
  ember_err perr;
  memset(&t->enc, 0, sizeof t->enc);
  if (ember_conv_spec_parse(t->conv, &t->enc, &perr) < 0) {
    fprintf(stderr, "ember train: --conv: %s\n", perr.msg);
    return -1;
  }
  if (ember_head_parse(t->head, &t->enc.head) < 0) {
    fprintf(stderr, "ember train: --head must be softargmax or pool, got '%s'\n", t->head);
    return -1;
  }
  if (ember_arch_parse(t->arch, &o->arch) < 0) {
    fprintf(stderr, "ember train: --arch must be resnet or mlp, got '%s'\n", t->arch);
    return -1;
  }
  if (t->y_dim == 0 || t->y_dim < -1) {
    fprintf(stderr, "ember train: --y-dim must be >= 1, got %d\n", t->y_dim);
    return -1;
  }
  /* image data: the image recipe for each option not given */
  t->o_img = *o;
  for (int i = 0; i < nspecs; i++)
    if (!specs[i].min_set && recipe_field(o, &img, &specs[i]))
      memcpy(field_of(&t->o_img, o, &specs[i]), field_of(&img, o, &specs[i]), args_value_size(specs[i].type));
  ember_err err;
  if (ember_train_opts_check(o, &err) < 0 || ember_train_opts_check(&t->o_img, &err) < 0) {
    fprintf(stderr, "ember train: %s\n", err.msg);
    return -1;
  }
  return 0;
}

int cmd_train(int argc, char **argv) {
  train_cli t;
  int rc = train_cli_parse(&t, "--data FILE --out MODEL.safetensors [options]", 0, NULL, 0, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  ember_train_opts o = t.o;
  const char *data = t.data, *out = t.out;
  int y_dim = t.y_dim, threads = t.threads, quiet = t.quiet;
  if (!data || !out) {
    fprintf(stderr, "ember train: --data and --out are required (see ember train --help)\n");
    return 2;
  }
  struct stat sd, so;
  if (strcmp(out, "-") == 0) {
    fprintf(stderr, "ember train: --out needs a file name (a checkpoint cannot go to stdout)\n");
    return 2;
  }
  if (strcmp(data, "-") != 0 && stat(data, &sd) == 0 && stat(out, &so) == 0 && sd.st_dev == so.st_dev &&
      sd.st_ino == so.st_ino) {
    fprintf(stderr, "ember train: --out %s is the training data file; refusing to overwrite it\n", out);
    return 2;
  }
  ember_err err;
  ember_pool *pool;
  if (cli_pool("train", threads, &pool) < 0) return 2;

  ember_dataset ds;
  ember_dataset_spec spec = {-1, y_dim, t.y_cols};
  if (ember_dataset_load(data, &spec, &ds, &err) < 0) {
    fprintf(stderr, "ember train: %s\n", err.msg);
    ember_pool_destroy(pool);
    return 1;
  }
  if (!ds.img && (strcmp(t.conv, EMBER_ENCODER_DEFAULT_CONV) != 0 ||
                  strcmp(t.head, ember_head_name(EMBER_HEAD_SOFTARGMAX)) != 0)) {
    fprintf(stderr, "ember train: --conv and --head apply to image data (an .npz whose x is uint8 images); "
                    "%s holds vectors\n", data);
    ember_dataset_free(&ds);
    ember_pool_destroy(pool);
    return 2;
  }
  if (ds.img) {
    t.o = t.o_img; /* image data's recipe for what was not given (ember_train_opts_for_images) */
    o = t.o;
    o.encoder = &t.enc;
    if (!quiet) {
      char conv[200];
      ember_conv_spec_text(&t.enc, conv, sizeof conv);
      fprintf(stderr, "images %dx%dx%d%s: encoder conv %s, head %s\n", ds.img_h, ds.img_w, ds.img_c,
              ds.x_dim ? " with extra observations" : "", conv, ember_head_name(t.enc.head));
    }
  }
  if (ds.x_dim < 1 && !ds.img) {
    fprintf(stderr, "ember train: %s has no x columns left after %d y column(s)\n", data, ds.y_dim);
    ember_dataset_free(&ds);
    ember_pool_destroy(pool);
    return 1;
  }
  if (o.method == EMBER_METHOD_ARDFO && ds.y_dim == 1) /* said even with --quiet: likely a mistake */
    fprintf(stderr, "ember train: note: y has one column, so this ardfo model is a dfo model with ardfo's "
                    "inference defaults (%d samples, temperature %g); pass --y-dim if y has more\n",
            o.infer.samples, (double)o.infer.temperature);
  ember_dataset vds;
  memset(&vds, 0, sizeof vds);
  if (t.val) {
    if (ember_dataset_read(t.val, ds.x_dim, ds.y_dim, &vds, &err) < 0) {
      fprintf(stderr, "ember train: --val: %s\n", err.msg);
      ember_dataset_free(&ds);
      ember_pool_destroy(pool);
      return 1;
    }
    o.val = &vds;
    t.val_rows = vds.n;
  }
  train_printer st;
  train_printer_init(&st, quiet, o.steps);
  o.progress = on_progress;
  o.progress_ctx = &st;
  o.val_every = st.every; /* a fresh validation loss on every plain progress line */
  snapshot_ctx sc = {out, quiet};
  if (t.snapshot_every > 0) {
    o.snapshot_every = t.snapshot_every;
    o.snapshot = on_snapshot;
    o.snapshot_ctx = &sc;
  }
  train_cli_banner(&t, ds.n, ds.x_dim, ds.y_dim);
  signal(SIGINT, on_sigint);
  ember_model m;
  double t0 = ember_now();
  rc = ember_train(&ds, &o, pool, &m, &err);
  signal(SIGINT, SIG_DFL);
  ember_dataset_free(&ds);
  ember_dataset_free(&vds);
  ember_pool_destroy(pool);
  if (rc < 0) {
    if (st.tty && !quiet) fputc('\n', stderr);
    fprintf(stderr, "ember train: %s%s\n", err.msg, rc == EMBER_ECANCELED ? "; nothing written" : "");
    return rc == EMBER_ECANCELED ? 130 : 1;
  }
  rc = ember_model_save(&m, out, &err);
  if (rc < 0) {
    fprintf(stderr, "ember train: %s\n", err.msg);
    ember_model_free(&m);
    return 1;
  }
  char val[160];
  train_cli_val_text(m.method, m.train_val_rows, m.train_val_loss, m.train_val_chance, val, sizeof val);
  if (!quiet)
    fprintf(stderr, "trained %lld steps in %.1fs, final loss %.4f%s; wrote %s\n",
            (long long)m.train_steps, ember_now() - t0, (double)m.train_loss, val, out);
  ember_model_free(&m);
  return 0;
}
