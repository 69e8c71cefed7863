/* log.c - one line per event on stderr: ts=... level=... msg="..." key=value ...
 *
 * Lines are written with a single fprintf under a mutex-free stdio lock (stderr is
 * unbuffered, each line one call), so lines from the loop and from workers never interleave.
 */
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "server.h"

static int min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void srv_log_init(int level) { min_level = level; }

void srv_log(int level, const char *msg, const char *kv_fmt, ...) {
  if (level < min_level) return;
  char kv[1024] = "";
  if (kv_fmt && *kv_fmt) {
    va_list ap;
    va_start(ap, kv_fmt);
    vsnprintf(kv, sizeof kv, kv_fmt, ap);
    va_end(ap);
  }
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
  fprintf(stderr, "ts=%s.%03ldZ level=%s msg=\"%s\"%s%s\n", when, ts.tv_nsec / 1000000,
          level_names[level], msg, *kv ? " " : "", kv);
}
