/* zo snapshot: a cache of replay. A snapshot holds the state after some
 * step (parameters and codec scale) with the SHA-256 of the parameters and
 * the run's config hash; resuming from it skips replaying the steps before
 * it. The log stays the definition of the state: a snapshot that does not
 * match its own hash, or another run, is ignored with a reason.
 *
 * File: DIR/snapshots/step-NNNNNNNNNN.zsnap, written atomically:
 *   "ZOSNAP01" | u32 step | u32 reserved | u64 dim | f64 codec scale |
 *   u8[32] config hash | u8[32] SHA-256 of theta | dim x f32 theta (all LE)
 *
 * Ownership: no allocation survives a call; st is the caller's.
 */
#ifndef ZOTUNE_ZO_SNAPSHOT_H
#define ZOTUNE_ZO_SNAPSHOT_H

#include <stdint.h>

#include "zo/err.h"
#include "zo/spsa.h"

/* Writes the state st (after st->step steps) into dir/snapshots/, removes
 * the .tmp files of writes a crash cut short, and with keep > 0 deletes all
 * but the newest keep snapshots. */
int zo_snapshot_write(const char *dir, const uint8_t config_hash[32], const zo_state *st, int keep,
                      zo_err *err);
/* Loads into st the newest valid snapshot of dir with step <= max_step
 * (st->dim must match). Returns 0 and sets *found (0 when there is none);
 * *why (may be NULL) receives why newer snapshots were skipped. */
int zo_snapshot_load(const char *dir, const uint8_t config_hash[32], uint32_t max_step,
                     zo_state *st, int *found, char *why, size_t why_len, zo_err *err);

#endif
