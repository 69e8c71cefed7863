/* cmd_coords.c - `ember data coords`: the visual coordinate-regression task (tasks/coords.h),
 * a training set from one region of target positions and a test set from the rest, each an
 * .npz of uint8 images x (n, size, size, 3) and float32 targets y (n, 2). docs/images.md.
 *
 *   ember data coords --train N --test M --out-train FILE --out-test FILE [--size S]
 *                     [--radius R] [--split T] [--seed S]
 */
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "cli.h"
#include "outfile.h"
#include "tasks/coords.h"

static int write_set(const ember_coords_opts *o, int n, uint64_t seed, int region, const char *path) {
  const size_t ib = (size_t)o->size * o->size * 3;
  uint8_t *img = malloc((size_t)n * ib), *npz = NULL;
  float *y = malloc((size_t)n * 2 * sizeof(float));
  size_t len = 0;
  ember_err err;
  int rc = 1;
  char why[512];
  cli_outfile f;
  if (!img || !y) {
    fprintf(stderr, "ember data coords: out of memory for %d images\n", n);
  } else if (ember_coords_generate(o, n, seed, region, img, y, &err) < 0 ||
             ember_npz_images(&npz, &len, img, n, o->size, o->size, 3, y, 2, &err) < 0) {
    fprintf(stderr, "ember data coords: %s\n", err.msg);
    rc = 2;
  } else if (cli_outfile_open(&f, path, why, sizeof why) < 0) {
    fprintf(stderr, "ember data coords: %s\n", why);
  } else if (fwrite(npz, 1, len, f.f) != len) {
    cli_outfile_abort(&f);
    fprintf(stderr, "ember data coords: %s: write failed\n", path);
  } else if (cli_outfile_commit(&f, why, sizeof why) < 0) {
    fprintf(stderr, "ember data coords: %s\n", why);
  } else {
    rc = 0;
  }
  free(img);
  free(y);
  free(npz);
  return rc;
}

int cmd_data_coords(int argc, char **argv) {
  const char *out_train = NULL, *out_test = NULL;
  int ntrain = 100, ntest = 200;
  uint64_t seed = 0;
  ember_coords_opts o = EMBER_COORDS_DEFAULTS;
  opt_spec specs[] = {
      {"out-train", OPT_STR, &out_train, "FILE", "where to write the training set (.npz)", 0, 0},
      {"out-test", OPT_STR, &out_test, "FILE", "where to write the test set (.npz); omit for none", 0, 0},
      {"train", OPT_INT, &ntrain, "N", "training images, targets uniform in the training region", 0, 0},
      {"test", OPT_INT, &ntest, "N", "test images, targets uniform outside the training region", 0, 0},
      {"size", OPT_INT, &o.size, "S", "image side in pixels (images are S x S x 3)", 0, 0},
      {"radius", OPT_FLOAT, &o.radius, "R", "the dot's radius in pixels", 0, 0},
      {"split", OPT_FLOAT, &o.split, "T", "training region: targets with u <= T and v <= T (u, v in [-1, 1])", 0, 0},
      {"seed", OPT_U64, &seed, NULL, "random seed; the same seed gives the same images", 0, 0},
  };
  int nspecs = (int)(sizeof specs / sizeof *specs);
  int rc = args_parse("data coords", "--out-train FILE [--out-test FILE] [options]", specs, nspecs, argc, argv);
  if (rc != 0) return rc < 0 ? 2 : 0;
  if (!out_train) {
    fprintf(stderr, "ember data coords: --out-train is required\n");
    return 2;
  }
  if (ntrain < 1 || ntrain > 1000000 || ntest < 1 || ntest > 1000000) {
    fprintf(stderr, "ember data coords: --train and --test must be 1..1000000, got %d and %d\n", ntrain, ntest);
    return 2;
  }
  rc = write_set(&o, ntrain, seed, EMBER_COORDS_TRAIN, out_train);
  if (rc == 0 && out_test) rc = write_set(&o, ntest, seed, EMBER_COORDS_TEST, out_test);
  return rc;
}
