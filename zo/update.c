#include "zo/update.h"

#include <string.h>

static const char *const sched_names[] = {"constant", "linear", "cosine"};

const char *zo_sched_name(enum zo_sched_kind k)
{
  return sched_names[k];
}

int zo_sched_parse(const char *name, enum zo_sched_kind *out)
{
  for (int i = 0; i < 3; i++) {
    if (strcmp(name, sched_names[i]) == 0) {
      *out = (enum zo_sched_kind)i;
      return 0;
    }
  }
  return -1;
}

double zo_sched_factor(const zo_schedule *s, uint32_t t)
{
  if (t < s->warmup)
    return (double)(t + 1) / (double)(s->warmup + 1);
  if (s->kind == ZO_SCHED_CONSTANT || s->total <= s->warmup)
    return 1.0;
  double p = (double)(t - s->warmup) / (double)(s->total - s->warmup);
  if (p > 1.0)
    p = 1.0;
  double shape;
  if (s->kind == ZO_SCHED_LINEAR) {
    shape = 1.0 - p;
  } else {
    /* libm's cos may differ between C libraries; the project's own does not. */
    float sn, cs;
    rng_sincos_turn_f((float)(0.5 * p), &sn, &cs);
    shape = 0.5 * (1.0 + (double)cs);
  }
  return s->min_ratio + (1.0 - s->min_ratio) * shape;
}

#define BLOCK 4096 /* a multiple of RNG_ALIGN */

static void update_block(float *theta, uint64_t lo, size_t len, enum rng_dist dist,
                         const zo_term *terms, size_t nterms, float decay)
{
  float acc[BLOCK];
  for (size_t r = 0; r < nterms; r++)
    rng_axpy(dist, &terms[r].stream, lo, len, terms[r].coef, r ? acc : NULL, acc);
  float *t = theta + lo;
  if (decay == 1.0f) {
    for (size_t i = 0; i < len; i++)
      t[i] = t[i] - acc[i];
  } else {
    for (size_t i = 0; i < len; i++)
      t[i] = t[i] * decay - acc[i];
  }
}

void zo_update(float *theta, size_t n, enum rng_dist dist, const zo_term *terms,
               size_t nterms, float decay, int threads)
{
  if (nterms == 0) {
    if (decay != 1.0f) {
      for (size_t i = 0; i < n; i++)
        theta[i] = theta[i] * decay;
    }
    return;
  }
  if (nterms == 1 && decay == 1.0f) {
    /* theta + (-c) z == theta - c z bit for bit: one pass, no accumulator. */
    rng_axpy_mt(dist, &terms[0].stream, 0, n, -terms[0].coef, theta, theta, threads);
    return;
  }
  long long nb = (long long)((n + BLOCK - 1) / BLOCK);
#pragma omp parallel for num_threads(threads > 0 ? threads : 1) schedule(static) \
    if (threads > 1 && nb > 1)
  for (long long b = 0; b < nb; b++) {
    uint64_t lo = (uint64_t)b * BLOCK;
    size_t len = n - lo < BLOCK ? (size_t)(n - lo) : BLOCK;
    update_block(theta, lo, len, dist, terms, nterms, decay);
  }
}
