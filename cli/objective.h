/* cli objective: the objective and base parameters a run's config names.
 * Ownership: cli_objective_open fills o; cli_objective_close frees it. */
#ifndef ZOTUNE_CLI_OBJECTIVE_H
#define ZOTUNE_CLI_OBJECTIVE_H

#include <jansson.h>

#include "zo/functions.h"
#include "zo/objective.h"

typedef struct cli_objective {
  zo_objective obj;
  enum zo_function fn;
  float *base; /* base parameters (obj.dim of them) */
  uint8_t base_hash[32];
} cli_objective;

json_t *cli_function_doc(enum zo_function f, size_t dim);
int cli_objective_open(json_t *doc, uint64_t seed, cli_objective *o, zo_err *err);
void cli_objective_close(cli_objective *o);

#endif
