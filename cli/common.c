/* cli: shared option parsing and error reporting. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "rng/rng.h"
#include "zo/codec.h"
#include "zo/config.h"
#include "zo/run.h"
#include "zo/spsa.h"
#include "zo/update.h"

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "zotune %s: ", cmd);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, "\n(see 'zotune %s --help')\n", cmd);
  return EXIT_USER;
}

int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t max, uint64_t *out)
{
  char *end;
  errno = 0;
  if (s[0] == '-' || s[0] == 0)
    goto bad;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || v > max)
    goto bad;
  *out = v;
  return 0;
bad:
  cli_usage_error(cmd, "%s: '%s' is not an integer in 0 .. %llu", opt, s,
                  (unsigned long long)max);
  return -1;
}

int cli_u32(const char *cmd, const char *opt, const char *s, uint32_t min, uint32_t max,
            uint32_t *out)
{
  uint64_t v;
  if (cli_u64(cmd, opt, s, max, &v) != 0)
    return -1;
  if (v < min) {
    cli_usage_error(cmd, "%s: %s is below the minimum %u", opt, s, min);
    return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

int cli_double(const char *cmd, const char *opt, const char *s, double *out)
{
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end || !isfinite(v)) {
    cli_usage_error(cmd, "%s: '%s' is not a finite number", opt, s);
    return -1;
  }
  *out = v;
  return 0;
}

int cli_zo_option(const char *cmd, int o, const char *arg, zo_config *cfg, cli_zo_seen *seen)
{
  uint64_t u;
  int bad = 0;
  switch (o) {
  case CLI_O_STEPS:
    bad = cli_u32(cmd, "--steps", arg, 0, UINT32_MAX - 1, &cfg->steps);
    seen->steps = 1;
    break;
  case CLI_O_SEED:
    bad = cli_u64(cmd, "--seed", arg, INT64_MAX, &u);
    cfg->seed = u;
    seen->seed = 1;
    break;
  case CLI_O_WORKERS:
    bad = cli_u32(cmd, "--workers", arg, 1, RNG_MAX_SLOT + 1u, &cfg->workers);
    break;
  case CLI_O_NDIRS:
    bad = cli_u32(cmd, "--n-directions", arg, 1, RNG_MAX_DIR + 1u, &cfg->directions);
    break;
  case CLI_O_DIRS:
    if (zo_dirmode_parse(arg, &cfg->mode, &cfg->pool) != 0)
      return cli_usage_error(cmd, "--directions: '%s' is not per-worker, shared or pool:K "
                                  "(K in 1..%u)", arg, RNG_MAX_DIR + 1u);
    break;
  case CLI_O_DIST:
    if (zo_dist_parse(arg, &cfg->dist) != 0)
      return cli_usage_error(cmd, "--dist: '%s' is not gaussian or rademacher", arg);
    break;
  case CLI_O_CODEC:
    if (zo_codec_parse(arg, &cfg->codec) != 0)
      return cli_usage_error(cmd, "--codec: '%s' is not log, linear or none", arg);
    break;
  case CLI_O_LR:
    bad = cli_double(cmd, "--lr", arg, &cfg->lr);
    seen->lr = 1;
    break;
  case CLI_O_EPS:
    bad = cli_double(cmd, "--eps", arg, &cfg->eps);
    break;
  case CLI_O_SCHED:
    if (zo_sched_parse(arg, &cfg->schedule.kind) != 0)
      return cli_usage_error(cmd, "--schedule: '%s' is not constant, linear or cosine", arg);
    break;
  case CLI_O_WARMUP:
    bad = cli_u32(cmd, "--warmup", arg, 0, UINT32_MAX - 1, &cfg->schedule.warmup);
    break;
  case CLI_O_MINLR:
    bad = cli_double(cmd, "--min-lr-ratio", arg, &cfg->schedule.min_ratio);
    break;
  case CLI_O_WD:
    bad = cli_double(cmd, "--weight-decay", arg, &cfg->weight_decay);
    break;
  default:
    return cli_usage_error(cmd, "internal: option %d is not a shared one", o);
  }
  return bad ? EXIT_USER : 0;
}

int cli_fail(const char *cmd, const zo_err *err)
{
  fprintf(stderr, "zotune %s: %s\n", cmd, err->msg);
  return zo_err_is_user(err->code) ? EXIT_USER : EXIT_INTERNAL;
}

int cli_set_isa(const char *cmd, const char *name)
{
  enum rng_isa isa = RNG_ISA_AUTO;
  if (!name)
    name = getenv("ZOTUNE_ISA");
  if (name && rng_isa_parse(name, &isa) != 0) {
    cli_usage_error(cmd, "--isa: '%s' is not one of auto, scalar, avx2, avx512", name);
    return -1;
  }
  if (rng_set_isa(isa) != 0) {
    fprintf(stderr, "zotune %s: this CPU or build cannot run the %s path\n", cmd, name);
    return -1;
  }
  return 0;
}

int cli_default_threads(void)
{
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 && n < 1024 ? (int)n : 1;
}

double cli_now(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int cli_write_json(const zo_run *run, const char *name, json_t *doc, zo_err *err)
{
  char path[4096], tmp[4200];
  if (zo_run_path(run, name, path, sizeof path) != 0)
    return zo_fail(err, ZO_EINVAL, "path too long");
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  if (json_dump_file(doc, tmp, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) != 0 ||
      rename(tmp, path) != 0)
    return zo_fail(err, ZO_EIO, "%s: cannot write", path);
  return 0;
}
