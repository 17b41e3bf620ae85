/* zo functions: classic optimisation test functions as objectives. Values
 * are accumulated in double in index order (deterministic at any -O level;
 * never built with -ffast-math). */
#include "zo/functions.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"quadratic", "rosenbrock", "rastrigin",
                                    "ackley"};
/* Half-width of the start box (CBXpy / the usual benchmark domains). */
static const float box[] = {1.0f, 2.0f, 5.12f, 32.768f};

const char *zo_function_name(enum zo_function f)
{
  return names[f];
}

int zo_function_parse(const char *name, enum zo_function *out)
{
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, names[i]) == 0) {
      *out = (enum zo_function)i;
      return 0;
    }
  }
  return -1;
}

double zo_function_eval(enum zo_function f, const float *x, size_t n)
{
  const double two_pi = 6.283185307179586;
  double s = 0.0, s2 = 0.0;
  switch (f) {
  case ZO_FN_QUADRATIC:
    for (size_t i = 0; i < n; i++)
      s += (double)x[i] * x[i];
    return s;
  case ZO_FN_ROSENBROCK:
    for (size_t i = 0; i + 1 < n; i++) {
      double a = (double)x[i + 1] - (double)x[i] * x[i], b = 1.0 - x[i];
      s += 100.0 * a * a + b * b;
    }
    return s;
  case ZO_FN_RASTRIGIN:
    for (size_t i = 0; i < n; i++)
      s += (double)x[i] * x[i] - 10.0 * cos(two_pi * x[i]) + 10.0;
    return s;
  case ZO_FN_ACKLEY:
  default:
    for (size_t i = 0; i < n; i++) {
      s += (double)x[i] * x[i];
      s2 += cos(two_pi * x[i]);
    }
    return -20.0 * exp(-0.2 * sqrt(s / (double)n)) - exp(s2 / (double)n) + 20.0 +
           2.718281828459045;
  }
}

void zo_function_start(enum zo_function f, uint64_t seed, float *x, size_t n)
{
  rng_stream s = rng_make(seed, 0, RNG_INIT, 0, 0);
  rng_fill(RNG_UNIFORM, &s, 0, n, x);
  for (size_t i = 0; i < n; i++)
    x[i] = (2.0f * x[i] - 1.0f) * box[f];
}

struct fctx {
  enum zo_function f;
  size_t dim;
  float *z, *xp, *xm;
};

static int fn_loss_pm(void *ctx, const float *theta, const zo_dir *dir, float eps,
                      const zo_batch *batch, double *lp, double *lm, zo_err *err)
{
  struct fctx *c = ctx;
  (void)batch;
  (void)err;
  /* One generation of z serves both signs. */
  rng_fill(dir->dist, &dir->stream, 0, c->dim, c->z);
  for (size_t i = 0; i < c->dim; i++) {
    float d = eps * c->z[i];
    c->xp[i] = theta[i] + d;
    c->xm[i] = theta[i] - d;
  }
  *lp = zo_function_eval(c->f, c->xp, c->dim);
  *lm = zo_function_eval(c->f, c->xm, c->dim);
  return 0;
}

static int fn_loss(void *ctx, const float *theta, const zo_batch *batch,
                   double *out, zo_err *err)
{
  struct fctx *c = ctx;
  (void)batch;
  (void)err;
  *out = zo_function_eval(c->f, theta, c->dim);
  return 0;
}

int zo_function_new(enum zo_function f, size_t dim, zo_objective *obj, zo_err *err)
{
  if (dim == 0 || dim > ((size_t)1 << 28))
    return zo_fail(err, ZO_EINVAL, "dimension %zu out of range (1 .. 2^28)", dim);
  struct fctx *c = calloc(1, sizeof *c);
  float *buf = malloc(3 * dim * sizeof *buf);
  if (!c || !buf) {
    free(c);
    free(buf);
    return zo_fail(err, ZO_ENOMEM, "out of memory for a %zu-dimensional function", dim);
  }
  c->f = f;
  c->dim = dim;
  c->z = buf;
  c->xp = buf + dim;
  c->xm = buf + 2 * dim;
  obj->dim = dim;
  obj->ctx = c;
  obj->loss_pm = fn_loss_pm;
  obj->loss = fn_loss;
  return 0;
}

void zo_function_free(zo_objective *obj)
{
  struct fctx *c = obj->ctx;
  if (c) {
    free(c->z);
    free(c);
  }
  obj->ctx = NULL;
}
