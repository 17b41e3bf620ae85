/* zo config: the optimizer part of a run's frozen configuration as JSON.
 *
 * Ownership: zo_config_to_json returns a new reference (json_decref it);
 * zo_json_canonical returns a malloc'd string (free it).
 */
#ifndef ZOTUNE_ZO_CONFIG_H
#define ZOTUNE_ZO_CONFIG_H

#include <jansson.h>

#include "zo/spsa.h"

json_t *zo_config_to_json(const zo_config *c);
/* Strict: a missing, unknown or ill-typed field is ZO_ECORRUPT naming it. */
int zo_config_from_json(json_t *o, zo_config *c, zo_err *err);
/* Compact, sorted keys, 17 significant digits: the text whose SHA-256 is the
 * run's config hash. */
char *zo_json_canonical(json_t *doc);

int zo_dist_parse(const char *s, enum rng_dist *out);
const char *zo_dist_name(enum rng_dist d);

#endif
