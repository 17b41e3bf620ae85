/* zo objective: what an estimator optimises. The estimator never writes
 * theta to probe it: it hands the objective a direction (a Philox stream and
 * a distribution) and eps, and the objective evaluates L(theta + eps z) and
 * L(theta - eps z) however it likes (a scratch copy, per-tensor buffers, a
 * fused matmul packing), which is what keeps replay bit-exact (BRIEF §2.2).
 *
 * Ownership: the objective owns ctx and everything behind it; the caller owns
 * theta. Calls on one objective are not concurrent.
 */
#ifndef ZOTUNE_ZO_OBJECTIVE_H
#define ZOTUNE_ZO_OBJECTIVE_H

#include <stddef.h>
#include <stdint.h>

#include "rng/rng.h"
#include "zo/err.h"

/* A direction z: element i is rng_at(dist, &stream, i). */
typedef struct zo_dir {
  rng_stream stream;
  enum rng_dist dist;
} zo_dir;

/* Which data a probe sees: objectives with data sample their batch from the
 * RNG_BATCH stream of (seed, step, slot, dir); pure functions ignore it. */
typedef struct zo_batch {
  uint64_t seed;
  uint32_t step, slot, dir;
} zo_batch;

typedef struct zo_objective {
  size_t dim; /* number of tuned parameters */
  void *ctx;
  /* L(theta + eps z) into *lp and L(theta - eps z) into *lm. */
  int (*loss_pm)(void *ctx, const float *theta, const zo_dir *z, float eps,
                 const zo_batch *batch, double *lp, double *lm, zo_err *err);
  /* L(theta) on the batch (NULL batch: the objective's full evaluation). */
  int (*loss)(void *ctx, const float *theta, const zo_batch *batch, double *out,
              zo_err *err);
} zo_objective;

#endif
