/* zo config: zo_config <-> JSON (jansson), strict in both directions: every
 * field is written, and reading names the first missing, unknown or
 * ill-typed field. */
#include "zo/config.h"

#include <string.h>

static const char *dist_name(enum rng_dist d)
{
  return d == RNG_RADEMACHER ? "rademacher" : "gaussian";
}

int zo_dist_parse(const char *s, enum rng_dist *out)
{
  if (strcmp(s, "gaussian") == 0)
    *out = RNG_GAUSSIAN;
  else if (strcmp(s, "rademacher") == 0)
    *out = RNG_RADEMACHER;
  else
    return -1;
  return 0;
}

const char *zo_dist_name(enum rng_dist d)
{
  return dist_name(d);
}

json_t *zo_config_to_json(const zo_config *c)
{
  char mode[32];
  zo_dirmode_format(c->mode, c->pool, mode, sizeof mode);
  return json_pack("{s:s, s:I, s:I, s:I, s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, "
                   "s:s, s:I, s:f, s:I}",
                   "estimator", "spsa", "seed", (json_int_t)c->seed, "workers",
                   (json_int_t)c->workers, "directions", (json_int_t)c->directions,
                   "direction_mode", mode, "aggregate",
                   c->aggregate == ZO_AGG_MEDIAN ? "median" : "mean", "distribution",
                   dist_name(c->dist), "codec", zo_codec_name(c->codec),
                   "codec_scale0", c->codec_scale0, "lr", c->lr, "eps", c->eps,
                   "weight_decay", c->weight_decay, "schedule",
                   zo_sched_name(c->schedule.kind), "warmup",
                   (json_int_t)c->schedule.warmup, "min_lr_ratio",
                   c->schedule.min_ratio, "steps", (json_int_t)c->steps);
}

static const char *const keys[] = {
    "estimator", "seed",   "workers",      "directions", "direction_mode",
    "aggregate", "distribution", "codec",  "codec_scale0", "lr",
    "eps",       "weight_decay", "schedule", "warmup",     "min_lr_ratio",
    "steps"};

static int get_uint(json_t *o, const char *k, uint64_t max, uint64_t *out, zo_err *err)
{
  json_t *v = json_object_get(o, k);
  if (!json_is_integer(v) || json_integer_value(v) < 0 ||
      (uint64_t)json_integer_value(v) > max)
    return zo_fail(err, ZO_ECORRUPT, "config field \"%s\": expected an integer in 0 .. %llu",
                   k, (unsigned long long)max);
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

static int get_real(json_t *o, const char *k, double *out, zo_err *err)
{
  json_t *v = json_object_get(o, k);
  if (!json_is_number(v))
    return zo_fail(err, ZO_ECORRUPT, "config field \"%s\": expected a number", k);
  *out = json_number_value(v);
  return 0;
}

static int get_str(json_t *o, const char *k, const char **out, zo_err *err)
{
  json_t *v = json_object_get(o, k);
  if (!json_is_string(v))
    return zo_fail(err, ZO_ECORRUPT, "config field \"%s\": expected a string", k);
  *out = json_string_value(v);
  return 0;
}

int zo_config_from_json(json_t *o, zo_config *c, zo_err *err)
{
  const char *k;
  json_t *v;
  uint64_t u;
  const char *s = NULL;
  int rv;
  if (!json_is_object(o))
    return zo_fail(err, ZO_ECORRUPT, "optimizer config: expected an object");
  json_object_foreach(o, k, v)
  {
    size_t i = 0;
    while (i < sizeof keys / sizeof keys[0] && strcmp(keys[i], k) != 0)
      i++;
    if (i == sizeof keys / sizeof keys[0])
      return zo_fail(err, ZO_ECORRUPT, "config field \"%s\": unknown", k);
  }
  zo_config_defaults(c);
  if ((rv = get_str(o, "estimator", &s, err)) != 0)
    return rv;
  if (strcmp(s, "spsa") != 0)
    return zo_fail(err, ZO_ECORRUPT, "config field \"estimator\": \"%s\" not supported", s);
  if ((rv = get_uint(o, "seed", INT64_MAX, &u, err)) != 0)
    return rv;
  c->seed = u;
  if ((rv = get_uint(o, "workers", RNG_MAX_SLOT + 1u, &u, err)) != 0)
    return rv;
  c->workers = (uint32_t)u;
  if ((rv = get_uint(o, "directions", RNG_MAX_DIR + 1u, &u, err)) != 0)
    return rv;
  c->directions = (uint32_t)u;
  if ((rv = get_str(o, "direction_mode", &s, err)) != 0)
    return rv;
  if (zo_dirmode_parse(s, &c->mode, &c->pool) != 0)
    return zo_fail(err, ZO_ECORRUPT, "config field \"direction_mode\": bad value \"%s\"", s);
  if ((rv = get_str(o, "aggregate", &s, err)) != 0)
    return rv;
  if (strcmp(s, "mean") && strcmp(s, "median"))
    return zo_fail(err, ZO_ECORRUPT, "config field \"aggregate\": bad value \"%s\"", s);
  c->aggregate = strcmp(s, "median") == 0 ? ZO_AGG_MEDIAN : ZO_AGG_MEAN;
  if ((rv = get_str(o, "distribution", &s, err)) != 0)
    return rv;
  if (zo_dist_parse(s, &c->dist) != 0)
    return zo_fail(err, ZO_ECORRUPT, "config field \"distribution\": bad value \"%s\"", s);
  if ((rv = get_str(o, "codec", &s, err)) != 0)
    return rv;
  if (zo_codec_parse(s, &c->codec) != 0)
    return zo_fail(err, ZO_ECORRUPT, "config field \"codec\": bad value \"%s\"", s);
  if ((rv = get_real(o, "codec_scale0", &c->codec_scale0, err)) != 0 ||
      (rv = get_real(o, "lr", &c->lr, err)) != 0 ||
      (rv = get_real(o, "eps", &c->eps, err)) != 0 ||
      (rv = get_real(o, "weight_decay", &c->weight_decay, err)) != 0 ||
      (rv = get_real(o, "min_lr_ratio", &c->schedule.min_ratio, err)) != 0)
    return rv;
  if ((rv = get_str(o, "schedule", &s, err)) != 0)
    return rv;
  if (zo_sched_parse(s, &c->schedule.kind) != 0)
    return zo_fail(err, ZO_ECORRUPT, "config field \"schedule\": bad value \"%s\"", s);
  if ((rv = get_uint(o, "warmup", UINT32_MAX, &u, err)) != 0)
    return rv;
  c->schedule.warmup = (uint32_t)u;
  if ((rv = get_uint(o, "steps", UINT32_MAX, &u, err)) != 0)
    return rv;
  c->steps = (uint32_t)u;
  c->schedule.total = c->steps;
  rv = zo_config_validate(c, err);
  return rv == 0 ? 0 : ZO_ECORRUPT;
}

char *zo_json_canonical(json_t *doc)
{
  return json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
}
