/* cli: builds a run's objective and base parameters from the "objective"
 * section of its config document. */
#include "cli/objective.h"

#include <stdlib.h>
#include <string.h>

#include "zo/functions.h"
#include "zo/hash.h"

json_t *cli_function_doc(enum zo_function f, size_t dim)
{
  return json_pack("{s:s, s:s, s:I}", "kind", "function", "name", zo_function_name(f),
                   "dim", (json_int_t)dim);
}

int cli_objective_open(json_t *doc, uint64_t seed, cli_objective *o, zo_err *err)
{
  memset(o, 0, sizeof *o);
  const char *kind = json_string_value(json_object_get(doc, "kind"));
  const char *name = json_string_value(json_object_get(doc, "name"));
  json_t *jd = json_object_get(doc, "dim");
  if (!kind || strcmp(kind, "function") != 0)
    return zo_fail(err, ZO_ECORRUPT, "objective: \"kind\" must be \"function\"");
  if (!name || zo_function_parse(name, &o->fn) != 0)
    return zo_fail(err, ZO_ECORRUPT, "objective: unknown function \"%s\"",
                   name ? name : "(missing)");
  if (!json_is_integer(jd) || json_integer_value(jd) < 1)
    return zo_fail(err, ZO_ECORRUPT, "objective: \"dim\" must be a positive integer");
  size_t dim = (size_t)json_integer_value(jd);
  int rv = zo_function_new(o->fn, dim, &o->obj, err);
  if (rv != 0)
    return rv;
  o->base = malloc(dim * sizeof *o->base);
  if (!o->base) {
    zo_function_free(&o->obj);
    return zo_fail(err, ZO_ENOMEM, "out of memory");
  }
  zo_function_start(o->fn, seed, o->base, dim);
  zo_sha256_floats(o->base, dim, o->base_hash);
  return 0;
}

void cli_objective_close(cli_objective *o)
{
  if (o->obj.ctx)
    zo_function_free(&o->obj);
  free(o->base);
  o->base = NULL;
}
