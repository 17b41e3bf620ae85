/* zo run: a run directory (docs/run-directory.md): the frozen configuration
 * document config.json and the step log log.zol.
 *
 * The document is {"zotune_run": 1, "base_sha256": HEX, "objective": {...},
 * "optimizer": {...}}; its canonical text's SHA-256 is the config hash in the
 * log header. zo treats "objective" as opaque; the caller interprets it.
 *
 * Ownership: zo_run_start/zo_run_load return a zo_run that zo_run_close
 * frees, with its document (a jansson reference the run holds) and its log.
 */
#ifndef ZOTUNE_ZO_RUN_H
#define ZOTUNE_ZO_RUN_H

#include <jansson.h>

#include "zo/log.h"
#include "zo/spsa.h"

typedef struct zo_run {
  char *dir;
  json_t *doc;
  zo_config cfg;
  uint8_t base_hash[32];
  uint8_t config_hash[32];
  zo_log *log;
  zo_log_recovery recovery; /* what opening the log found */
  int resumed;              /* the directory already held this run */
} zo_run;

/* Builds the document for an optimizer config, objective and base hash. */
json_t *zo_run_doc(const zo_config *c, json_t *objective, const uint8_t base_hash[32]);

/* Starts a run in dir with doc (a reference is taken), or resumes the run dir
 * already holds when its document is identical; a different document is
 * ZO_EMISMATCH naming the first field that differs. The log is open for
 * appending. */
int zo_run_start(const char *dir, json_t *doc, zo_run **out, zo_err *err);
/* Opens an existing run for reading (replay, hash). */
int zo_run_load(const char *dir, zo_run **out, zo_err *err);
void zo_run_close(zo_run *r);

/* dir/name into buf; -1 when it does not fit. */
int zo_run_path(const zo_run *r, const char *name, char *buf, size_t n);

#endif
