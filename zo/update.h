/* zo update: learning-rate schedules and the fused parameter update.
 *
 * One step's update is theta <- theta * decay - acc, where
 * acc = c_1 z_1 (+ c_2 z_2 ...), terms in the given order, every z_r
 * regenerated block by block (no full-size direction buffer). The order of
 * floating-point operations per element is fixed, so the result does not
 * depend on the thread count or the vector path.
 *
 * Ownership: no allocation beyond a per-thread stack block.
 */
#ifndef ZOTUNE_ZO_UPDATE_H
#define ZOTUNE_ZO_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include "rng/rng.h"

enum zo_sched_kind { ZO_SCHED_CONSTANT, ZO_SCHED_LINEAR, ZO_SCHED_COSINE };

typedef struct zo_schedule {
  enum zo_sched_kind kind;
  uint32_t warmup;  /* steps of linear warm-up from 0 */
  uint32_t total;   /* steps over which linear/cosine decay */
  double min_ratio; /* final lr as a fraction of the peak */
} zo_schedule;

const char *zo_sched_name(enum zo_sched_kind k);
int zo_sched_parse(const char *name, enum zo_sched_kind *out);
/* The multiplier of the peak lr at step t (0-based), in [0, 1]. */
double zo_sched_factor(const zo_schedule *s, uint32_t t);

typedef struct zo_term {
  rng_stream stream;
  float coef;
} zo_term;

/* Applies one step's terms to theta[0 .. n). decay = 1 - lr_t * wd. */
void zo_update(float *theta, size_t n, enum rng_dist dist, const zo_term *terms,
               size_t nterms, float decay, int threads);

#endif
