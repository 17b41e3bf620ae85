/* zo spsa: see spsa.h. The arithmetic that turns records into an update is
 * specified in docs/log-format.md §4; keep the two in step. */
#include "zo/spsa.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void zo_config_defaults(zo_config *c)
{
  memset(c, 0, sizeof *c);
  c->workers = 1;
  c->directions = 1;
  c->mode = ZO_DIRS_PER_WORKER;
  c->aggregate = ZO_AGG_MEAN;
  c->dist = RNG_GAUSSIAN;
  c->codec = ZO_CODEC_LOG;
  c->codec_scale0 = 1.0;
  c->lr = 1e-3;
  c->eps = 1e-3;
  c->schedule.kind = ZO_SCHED_CONSTANT;
  c->steps = 1000;
}

int zo_config_validate(const zo_config *c, zo_err *err)
{
  if (c->workers < 1 || c->workers > RNG_MAX_SLOT + 1u)
    return zo_fail(err, ZO_EINVAL, "workers: %u out of range (1 .. %u)", c->workers,
                   RNG_MAX_SLOT + 1u);
  if (c->directions < 1 || c->directions > RNG_MAX_DIR + 1u)
    return zo_fail(err, ZO_EINVAL, "directions: %u out of range (1 .. %u)",
                   c->directions, RNG_MAX_DIR + 1u);
  if ((uint64_t)c->workers * c->directions > (1u << 24))
    return zo_fail(err, ZO_EINVAL, "workers x directions = %llu exceeds 2^24 records per step",
                   (unsigned long long)c->workers * c->directions);
  if (c->mode == ZO_DIRS_POOL && (c->pool < 1 || c->pool > RNG_MAX_DIR + 1u))
    return zo_fail(err, ZO_EINVAL, "directions pool:K: K=%u out of range (1 .. %u)",
                   c->pool, RNG_MAX_DIR + 1u);
  if (c->dist != RNG_GAUSSIAN && c->dist != RNG_RADEMACHER)
    return zo_fail(err, ZO_EINVAL, "distribution must be gaussian or rademacher");
  if (!(c->lr > 0.0) || !isfinite(c->lr))
    return zo_fail(err, ZO_EINVAL, "lr: %g must be a positive number", c->lr);
  if (!(c->eps > 0.0) || !isfinite(c->eps))
    return zo_fail(err, ZO_EINVAL, "eps: %g must be a positive number", c->eps);
  if (!(c->weight_decay >= 0.0) || !isfinite(c->weight_decay))
    return zo_fail(err, ZO_EINVAL, "weight decay: %g must be >= 0", c->weight_decay);
  if (!(c->codec_scale0 > 0.0) || !isfinite(c->codec_scale0))
    return zo_fail(err, ZO_EINVAL, "codec scale: %g must be a positive number",
                   c->codec_scale0);
  if (!(c->schedule.min_ratio >= 0.0 && c->schedule.min_ratio <= 1.0))
    return zo_fail(err, ZO_EINVAL, "min lr ratio: %g must be in [0, 1]",
                   c->schedule.min_ratio);
  return 0;
}

int zo_dirmode_parse(const char *s, enum zo_dirmode *mode, uint32_t *pool)
{
  if (strcmp(s, "per-worker") == 0) {
    *mode = ZO_DIRS_PER_WORKER;
    *pool = 0;
    return 0;
  }
  if (strcmp(s, "shared") == 0) {
    *mode = ZO_DIRS_SHARED;
    *pool = 0;
    return 0;
  }
  if (strncmp(s, "pool:", 5) == 0) {
    char *end;
    unsigned long k = strtoul(s + 5, &end, 10);
    if (end == s + 5 || *end || k < 1 || k > RNG_MAX_DIR + 1u)
      return -1;
    *mode = ZO_DIRS_POOL;
    *pool = (uint32_t)k;
    return 0;
  }
  return -1;
}

void zo_dirmode_format(enum zo_dirmode mode, uint32_t pool, char *buf, size_t n)
{
  if (mode == ZO_DIRS_POOL)
    snprintf(buf, n, "pool:%u", pool);
  else
    snprintf(buf, n, "%s", mode == ZO_DIRS_SHARED ? "shared" : "per-worker");
}

int zo_state_init(zo_state *s, const zo_config *c, const float *base, size_t dim,
                  zo_err *err)
{
  memset(s, 0, sizeof *s);
  s->theta = malloc(dim * sizeof *s->theta);
  if (!s->theta)
    return zo_fail(err, ZO_ENOMEM, "out of memory for %zu parameters", dim);
  memcpy(s->theta, base, dim * sizeof *s->theta);
  s->dim = dim;
  zo_codec_init(&s->codec, c->codec, c->codec_scale0);
  return 0;
}

void zo_state_borrow(zo_state *s, const zo_config *c, float *theta, size_t dim)
{
  memset(s, 0, sizeof *s);
  s->theta = theta;
  s->dim = dim;
  s->borrowed = 1;
  zo_codec_init(&s->codec, c->codec, c->codec_scale0);
}

void zo_state_free(zo_state *s)
{
  if (!s->borrowed)
    free(s->theta);
  s->theta = NULL;
}

static uint32_t pool_index(const zo_config *c, uint32_t t, uint32_t slot, uint32_t dir)
{
  rng_stream s = rng_make(c->seed, t, RNG_POOL_SELECT, slot, dir);
  return (uint32_t)(((uint64_t)rng_u32_at(&s, 0) * c->pool) >> 32);
}

zo_dir zo_spsa_direction(const zo_config *c, uint32_t t, uint32_t slot, uint32_t dir)
{
  zo_dir d;
  d.dist = c->dist;
  switch (c->mode) {
  case ZO_DIRS_SHARED:
    d.stream = rng_make(c->seed, t, RNG_PERTURB, 0, dir);
    break;
  case ZO_DIRS_POOL:
    d.stream = rng_make(c->seed, 0, RNG_POOL_DIR, 0, pool_index(c, t, slot, dir));
    break;
  default:
    d.stream = rng_make(c->seed, t, RNG_PERTURB, slot, dir);
  }
  return d;
}

double zo_spsa_lr(const zo_config *c, uint32_t t)
{
  return c->lr * zo_sched_factor(&c->schedule, t);
}

int zo_spsa_probe(const zo_config *c, const zo_state *st, const zo_objective *obj,
                  uint32_t slot, zo_record *out, zo_probe_stats *stats, zo_err *err)
{
  const float eps = (float)c->eps;
  if (slot >= c->workers)
    return zo_fail(err, ZO_EINVAL, "slot %u out of range (%u workers)", slot, c->workers);
  if (stats)
    memset(stats, 0, sizeof *stats);
  for (uint32_t d = 0; d < c->directions; d++) {
    zo_dir dir = zo_spsa_direction(c, st->step, slot, d);
    zo_batch batch = {c->seed, st->step, slot, d};
    double lp, lm;
    int rv = obj->loss_pm(obj->ctx, st->theta, &dir, eps, &batch, &lp, &lm, err);
    if (rv != 0)
      return rv;
    double g = (lp - lm) / (2.0 * (double)eps);
    rng_stream rs = rng_make(c->seed, st->step, RNG_ROUND, slot, d);
    memset(&out[d], 0, sizeof out[d]);
    out[d].slot = (uint16_t)slot;
    out[d].dir = (uint16_t)d;
    zo_codec_encode(&st->codec, g, rng_at(RNG_UNIFORM, &rs, 0), out[d].payload);
    if (stats) {
      stats->loss_sum += 0.5 * (lp + lm);
      stats->nrec++;
    }
  }
  return 0;
}

static int cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Mean or median of v[0..n), n >= 1 (sorts v for the median). */
static double aggregate(enum zo_aggregate how, double *v, size_t n)
{
  if (how == ZO_AGG_MEDIAN) {
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
  }
  double s = 0.0;
  for (size_t i = 0; i < n; i++)
    s += v[i];
  return s / (double)n;
}

static int check_records(const zo_config *c, uint32_t t, const zo_record *rec,
                         uint32_t nrec, zo_err *err)
{
  for (uint32_t r = 0; r < nrec; r++) {
    if (rec[r].slot >= c->workers || rec[r].dir >= c->directions)
      return zo_fail(err, ZO_ECORRUPT,
                     "step %u record %u: slot %u dir %u outside the run (%u workers, "
                     "%u directions)",
                     t, r, rec[r].slot, rec[r].dir, c->workers, c->directions);
    if (r > 0 && (rec[r].slot < rec[r - 1].slot ||
                  (rec[r].slot == rec[r - 1].slot && rec[r].dir <= rec[r - 1].dir)))
      return zo_fail(err, ZO_ECORRUPT, "step %u record %u: not in (slot, dir) order", t, r);
  }
  return 0;
}

/* Builds the update terms of one step (docs/log-format.md §4). Returns the
 * number of terms written to terms (capacity nrec). */
static size_t build_terms(const zo_config *c, uint32_t t, double lr_t,
                          const zo_record *rec, const double *v, uint32_t nrec,
                          zo_term *terms, double *sums, double *scratch)
{
  size_t nt = 0;
  if (c->mode == ZO_DIRS_SHARED) {
    /* For each direction present, aggregate across slots; average over dirs. */
    size_t ndirs = 0;
    for (uint32_t d = 0; d < c->directions; d++) {
      size_t k = 0;
      for (uint32_t r = 0; r < nrec; r++)
        if (rec[r].dir == d)
          scratch[k++] = v[r];
      if (k) {
        sums[nt] = aggregate(c->aggregate, scratch, k);
        terms[nt++].stream = zo_spsa_direction(c, t, 0, d).stream;
        ndirs++;
      }
    }
    for (size_t i = 0; i < nt; i++)
      terms[i].coef = (float)(lr_t * sums[i] / (double)ndirs);
    return nt;
  }
  /* Per-worker and pool: one term per distinct direction, in record order,
   * coefficients of repeated pool directions summed in record order. */
  for (uint32_t r = 0; r < nrec; r++) {
    rng_stream s = zo_spsa_direction(c, t, rec[r].slot, rec[r].dir).stream;
    size_t i = 0;
    if (c->mode == ZO_DIRS_POOL)
      while (i < nt && terms[i].stream.stream != s.stream)
        i++;
    else
      i = nt;
    if (i == nt) {
      terms[nt].stream = s;
      sums[nt++] = 0.0;
    }
    sums[i] += v[r];
  }
  for (size_t i = 0; i < nt; i++)
    terms[i].coef = (float)(lr_t * sums[i] / (double)nrec);
  return nt;
}

int zo_spsa_apply(const zo_config *c, zo_state *st, const zo_record *rec,
                  uint32_t nrec, int threads, zo_err *err)
{
  const uint32_t t = st->step;
  const size_t w = zo_codec_width(c->codec);
  int rv = check_records(c, t, rec, nrec, err);
  if (rv != 0)
    return rv;
  size_t cap = nrec ? nrec : 1;
  double *v = malloc(3 * cap * sizeof *v);
  zo_term *terms = malloc(cap * sizeof *terms);
  uint8_t *pay = malloc(cap * w);
  if (!v || !terms || !pay) {
    free(v);
    free(terms);
    free(pay);
    return zo_fail(err, ZO_ENOMEM, "out of memory applying step %u", t);
  }
  for (uint32_t r = 0; r < nrec; r++) {
    v[r] = zo_codec_decode(&st->codec, rec[r].payload);
    memcpy(pay + r * w, rec[r].payload, w);
  }
  double lr_t = zo_spsa_lr(c, t);
  size_t nt = nrec ? build_terms(c, t, lr_t, rec, v, nrec, terms, v + cap, v + 2 * cap) : 0;
  float decay = (float)(1.0 - lr_t * c->weight_decay);
  zo_update(st->theta, st->dim, c->dist, terms, nt, decay, threads);
  zo_codec_end_step(&st->codec, pay, nrec);
  st->step++;
  free(v);
  free(terms);
  free(pay);
  return 0;
}

int zo_spsa_replay(const zo_config *c, zo_state *st, const zo_log *log, size_t upto,
                   int threads, zo_err *err)
{
  if (upto > zo_log_nsteps(log))
    return zo_fail(err, ZO_EINVAL, "replay to step %zu: the log has %zu steps", upto,
                   zo_log_nsteps(log));
  for (size_t i = st->step; i < upto; i++) {
    zo_step s;
    zo_log_step(log, i, &s);
    int rv = zo_spsa_apply(c, st, s.rec, s.nrec, threads, err);
    if (rv != 0)
      return rv;
  }
  return 0;
}
