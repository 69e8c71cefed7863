/* testutil.h - small helpers shared by the cmocka tests: scratch files and float checks. */
#ifndef EMBER_TESTUTIL_H
#define EMBER_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ember/base.h"
#include "ember/dataset.h"

/* A fresh path "<tmpdir>/<name>" in a per-process scratch directory (EMBER_TEST_TMP, else
 * /tmp). The returned string lives until the next call with the same slot (0..7). */
const char *tu_path(int slot, const char *name);
/* Writes len bytes to path; fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t len);
/* Reads a whole file (caller frees); fails the test on error. */
void *tu_read_file(const char *path, size_t *len);
/* Largest |a[i] - b[i]| / max(1, |a[i]|, |b[i]|). */
double tu_max_rel_diff(const float *a, const float *b, size_t n);
/* Every how many values a finite-difference gradient check compares: 1, all of them, unless
 * $EMBER_TEST_FD_STRIDE is a larger number. The TSan build sets it (tests/CMakeLists.txt):
 * instrumented, these checks took most of its unit tests' time, and a check of fewer values runs
 * the same code, threads included, for ThreadSanitizer to watch. */
int tu_fd_stride(void);

/* ds as a dataset of n rows with x_dim and y_dim columns: zeroed (no column names, so x0..,
 * y0..; any field added later zero), x and y allocated (the test fails if they cannot be) for
 * the caller to fill. Free with ember_dataset_free. */
void tu_dataset_alloc(ember_dataset *ds, int n, int x_dim, int y_dim);

/* DFO inference options with everything else (Langevin, refine) zero, i.e. off. */
#define DFO_OPTS(n, it, sig, shr, temp) \
  ((ember_infer_opts){.samples = (n), .iters = (it), .sigma = (sig), .shrink = (shr), .temperature = (temp)})

#endif
