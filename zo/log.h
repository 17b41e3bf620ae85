/* zo log: the run's append-only record of closed steps (docs/log-format.md).
 * Replaying it from the base parameters is the definition of the run's state.
 *
 * Ownership: zo_log_create/zo_log_open allocate a zo_log that zo_log_close
 * frees (closing the file). A zo_step filled by zo_log_step points into the
 * log's memory and is valid until the next zo_log_append or zo_log_close.
 */
#ifndef ZOTUNE_ZO_LOG_H
#define ZOTUNE_ZO_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "zo/codec.h"
#include "zo/err.h"

#define ZO_LOG_VERSION 1u
#define ZO_LOG_HEADER_BYTES 100u

typedef struct zo_log_header {
  uint32_t version;
  uint32_t width;       /* payload bytes per record: 1, or 4 (codec none) */
  uint64_t seed;        /* run seed */
  uint32_t max_records; /* per step: worker slots x directions */
  uint8_t config_hash[32];
  uint8_t base_hash[32];
} zo_log_header;

typedef struct zo_record {
  uint16_t slot, dir;
  uint8_t payload[ZO_CODEC_MAX_WIDTH];
} zo_record;

typedef struct zo_step {
  uint32_t step;
  uint32_t nrec;
  const zo_record *rec; /* sorted by (slot, dir), no duplicates */
} zo_step;

/* What zo_log_open found at the end of the file. */
typedef struct zo_log_recovery {
  int torn;             /* the last step frame was incomplete or damaged */
  uint64_t valid_bytes; /* bytes up to the last whole step */
  uint64_t dropped_bytes;
} zo_log_recovery;

typedef struct zo_log zo_log;

enum { ZO_LOG_READ = 0, ZO_LOG_APPEND = 1 };

/* Creates a new log; fails if the path exists. */
int zo_log_create(const char *path, const zo_log_header *h, zo_log **out,
                  zo_err *err);
/* Opens and validates a log. A torn last frame is reported in rec (when
 * non-NULL); in ZO_LOG_APPEND mode it is also cut off the file. A damaged
 * frame anywhere else is ZO_ECORRUPT with the byte offset. */
int zo_log_open(const char *path, int mode, zo_log **out, zo_log_recovery *rec,
                zo_err *err);
void zo_log_close(zo_log *log);

const zo_log_header *zo_log_get_header(const zo_log *log);
size_t zo_log_nsteps(const zo_log *log);
size_t zo_log_nrecords(const zo_log *log);
uint64_t zo_log_bytes(const zo_log *log);
void zo_log_step(const zo_log *log, size_t i, zo_step *out);

/* Appends step number zo_log_nsteps(log) with its records (sorted by
 * (slot, dir)). sync != 0: fdatasync before returning, so the step is
 * durable when this returns 0. */
int zo_log_append(zo_log *log, const zo_record *rec, uint32_t nrec, int sync,
                  zo_err *err);
int zo_log_sync(zo_log *log, zo_err *err);

/* Compares a log's header with what a run expects; ZO_EMISMATCH names the
 * field that differs. */
int zo_log_check(const zo_log *log, const zo_log_header *expect, zo_err *err);

#endif
