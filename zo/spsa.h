/* zo spsa: the two-sided SPSA (MeZO) estimator, its run configuration, the
 * run state, and the two halves of a step:
 *
 *   zo_spsa_probe  a worker slot evaluates its directions at the current
 *                  state and quantizes each projected gradient to a record;
 *   zo_spsa_apply  a closed step's records (from any number of slots, in
 *                  (slot, dir) order) are decoded and applied to the state.
 *
 * Every worker, the live run and a replay of the log call the same
 * zo_spsa_apply on the same records, which is why they agree bit for bit.
 *
 * Ownership: zo_state_init allocates theta (a copy of the base) and
 * zo_state_free releases it; zo_state_borrow works on the caller's buffer. zo_spsa_probe and zo_spsa_apply allocate only
 * temporaries.
 */
#ifndef ZOTUNE_ZO_SPSA_H
#define ZOTUNE_ZO_SPSA_H

#include <stddef.h>
#include <stdint.h>

#include "rng/rng.h"
#include "zo/codec.h"
#include "zo/err.h"
#include "zo/log.h"
#include "zo/objective.h"
#include "zo/update.h"

enum zo_dirmode {
  ZO_DIRS_PER_WORKER, /* each (step, slot, dir) its own direction */
  ZO_DIRS_SHARED,     /* all slots probe direction (step, dir) on their data */
  ZO_DIRS_POOL        /* directions drawn from a fixed pool of K */
};

enum zo_aggregate { ZO_AGG_MEAN, ZO_AGG_MEDIAN };

typedef struct zo_config {
  uint64_t seed;
  uint32_t workers;    /* worker slots (W) */
  uint32_t directions; /* directions per worker per step (n) */
  enum zo_dirmode mode;
  uint32_t pool; /* K, for ZO_DIRS_POOL */
  enum zo_aggregate aggregate; /* across slots, for ZO_DIRS_SHARED */
  enum rng_dist dist;          /* RNG_GAUSSIAN or RNG_RADEMACHER */
  enum zo_codec_kind codec;
  double codec_scale0;
  double lr, eps, weight_decay;
  zo_schedule schedule;
  uint32_t steps;
} zo_config;

/* Defaults for everything but the problem-specific lr. */
void zo_config_defaults(zo_config *c);
/* Checks ranges; ZO_EINVAL names the field. */
int zo_config_validate(const zo_config *c, zo_err *err);
/* Parses "per-worker", "shared" or "pool:K". */
int zo_dirmode_parse(const char *s, enum zo_dirmode *mode, uint32_t *pool);
/* Writes "per-worker", "shared" or "pool:K" into buf. */
void zo_dirmode_format(enum zo_dirmode mode, uint32_t pool, char *buf, size_t n);

typedef struct zo_state {
  float *theta;
  size_t dim;
  int borrowed; /* theta is the caller's (zo_state_borrow): not freed */
  uint32_t step; /* steps applied so far */
  zo_codec codec;
} zo_state;

int zo_state_init(zo_state *s, const zo_config *c, const float *base, size_t dim,
                  zo_err *err);
/* The same without a copy: the state works in place on theta (which holds
 * the base on entry and is the caller's to free, after zo_state_free). */
void zo_state_borrow(zo_state *s, const zo_config *c, float *theta, size_t dim);
void zo_state_free(zo_state *s);

/* The direction that record (slot, dir) of step t probes. */
zo_dir zo_spsa_direction(const zo_config *c, uint32_t t, uint32_t slot, uint32_t dir);

/* Probe statistics of one slot, for metrics. */
typedef struct zo_probe_stats {
  double loss_sum; /* sum over records of (L+ + L-) / 2 */
  uint32_t nrec;
} zo_probe_stats;

/* Evaluates slot's n directions at st and writes n records to out, in dir
 * order. Does not change st. */
int zo_spsa_probe(const zo_config *c, const zo_state *st, const zo_objective *obj,
                  uint32_t slot, zo_record *out, zo_probe_stats *stats, zo_err *err);

/* Applies step st->step's records (sorted by (slot, dir)); advances st. */
int zo_spsa_apply(const zo_config *c, zo_state *st, const zo_record *rec,
                  uint32_t nrec, int threads, zo_err *err);

/* The peak-relative learning rate times the peak lr at step t. */
double zo_spsa_lr(const zo_config *c, uint32_t t);

/* Replays steps [st->step, upto) of log onto st. */
int zo_spsa_replay(const zo_config *c, zo_state *st, const zo_log *log, size_t upto,
                   int threads, zo_err *err);

#endif
