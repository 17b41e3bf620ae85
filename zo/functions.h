/* zo functions: black-box test objectives (quadratic, rosenbrock, rastrigin,
 * ackley) behind the zo_objective interface, and their seeded start points.
 *
 * Ownership: zo_function_new allocates the objective's ctx (scratch of three
 * dim-sized vectors); zo_function_free releases it.
 */
#ifndef ZOTUNE_ZO_FUNCTIONS_H
#define ZOTUNE_ZO_FUNCTIONS_H

#include "zo/objective.h"

enum zo_function { ZO_FN_QUADRATIC, ZO_FN_ROSENBROCK, ZO_FN_RASTRIGIN, ZO_FN_ACKLEY };

const char *zo_function_name(enum zo_function f);
int zo_function_parse(const char *name, enum zo_function *out);

int zo_function_new(enum zo_function f, size_t dim, zo_objective *obj,
                    zo_err *err);
void zo_function_free(zo_objective *obj);
/* The function's value at x. */
double zo_function_eval(enum zo_function f, const float *x, size_t dim);
/* Start point: uniform in the function's customary box, from the RNG_INIT
 * stream of seed (docs/random-streams.md). */
void zo_function_start(enum zo_function f, uint64_t seed, float *x, size_t dim);

#endif
