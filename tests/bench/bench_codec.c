/* bench_codec: what the one-byte codecs cost in convergence.
 *
 * SPSA in-process (zo_config_defaults + zo_state_init + zo_spsa_probe +
 * zo_spsa_apply, no log) on the 1000-dimensional quadratic from its seeded
 * start, lr = n / (2 (D + 2 + n)) for n directions per step, eps 1e-3,
 * constant schedule, no weight decay. For each setup (Gaussian n=1,
 * Rademacher n=1, Gaussian n=4) and codec (none, log, linear), over 5 seeds:
 * the number of steps until f < 1e-3 f(start), checked every 10 steps, capped
 * at 20000; median, min and max, and the ratio of each codec's median to
 * none's.
 *
 * Also printed, as a sanity check of the harness: the step count at which
 * the expected f of an exact (none) run reaches the threshold. For
 * f = |x|^2 and g = (1/n) sum_r (z_r . grad f) z_r,
 *   E f(x - lr g) = f(x) (1 - 4 lr + 4 lr^2 c / n),
 * c = D + 1 + n (Gaussian) or D - 1 + n (Rademacher). Typical runs should
 * land close to it (E log f falls at least as fast as log E f, and here by
 * only a few steps more over the whole run).
 *
 * Exit status: 0, or 1 when a library call failed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/bench/bench_util.h"
#include "zo/codec.h"
#include "zo/functions.h"
#include "zo/objective.h"
#include "zo/spsa.h"

#define DIM 1000
#define CAP 20000u   /* steps */
#define CHECK 10u    /* check f every CHECK steps */
#define THRESH 1e-3  /* stop when f < THRESH * f(start) */
#define NSEEDS 5
#define MAX_DIRS 4
#define NOT_REACHED UINT32_MAX

struct setup {
  const char *name;
  enum rng_dist dist;
  uint32_t n; /* directions per step */
};

static const struct setup setups[] = {
    {"gaussian n=1", RNG_GAUSSIAN, 1},
    {"rademacher n=1", RNG_RADEMACHER, 1},
    {"gaussian n=4", RNG_GAUSSIAN, 4},
};
static const enum zo_codec_kind codecs[] = {ZO_CODEC_NONE, ZO_CODEC_LOG, ZO_CODEC_LINEAR};
#define NSETUPS (sizeof setups / sizeof setups[0])
#define NCODECS (sizeof codecs / sizeof codecs[0])

static double lr_for(uint32_t n)
{
  return 0.5 * (double)n / (double)(DIM + 2 + n);
}

/* Steps at which E f of an exact run falls below THRESH f(start). */
static double expected_steps(const struct setup *s)
{
  double lr = lr_for(s->n), n = (double)s->n;
  double c = s->dist == RNG_GAUSSIAN ? DIM + 1 + n : DIM - 1 + n;
  double rate = 1.0 - 4.0 * lr + 4.0 * lr * lr * c / n;
  return log(THRESH) / log(rate);
}

struct result {
  uint32_t steps; /* NOT_REACHED when the cap was hit */
  double final_ratio; /* f / f(start) when stopped */
  double scale; /* codec scale S at the end */
};

/* One run; 0 or a negative ZO_E* code (err filled). */
static int run(const struct setup *su, enum zo_codec_kind codec, uint64_t seed,
               const zo_objective *obj, const float *x0, double f0, struct result *res,
               zo_err *err)
{
  zo_config cfg;
  zo_config_defaults(&cfg);
  cfg.seed = seed;
  cfg.directions = su->n;
  cfg.dist = su->dist;
  cfg.codec = codec;
  cfg.lr = lr_for(su->n);
  cfg.eps = 1e-3;
  cfg.steps = CAP;
  int rv = zo_config_validate(&cfg, err);
  if (rv != 0)
    return rv;
  zo_state st;
  rv = zo_state_init(&st, &cfg, x0, DIM, err);
  if (rv != 0)
    return rv;
  zo_record rec[MAX_DIRS];
  res->steps = NOT_REACHED;
  res->final_ratio = 1.0;
  while (st.step < CAP) {
    rv = zo_spsa_probe(&cfg, &st, obj, 0, rec, NULL, err);
    if (rv == 0)
      rv = zo_spsa_apply(&cfg, &st, rec, su->n, 1, err);
    if (rv != 0)
      break;
    if (st.step % CHECK == 0 || st.step == CAP) {
      double f = zo_function_eval(ZO_FN_QUADRATIC, st.theta, DIM);
      res->final_ratio = f / f0;
      if (!isfinite(f)) {
        rv = zo_fail(err, ZO_EINTERNAL, "f is not finite at step %u", st.step);
        break;
      }
      if (f < THRESH * f0) {
        res->steps = st.step;
        break;
      }
    }
  }
  res->scale = st.codec.scale;
  zo_state_free(&st);
  return rv;
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* Median of NSEEDS step counts (NOT_REACHED sorts last). */
static uint32_t median_steps(const struct result *r, uint32_t *lo, uint32_t *hi,
                             int *reached)
{
  uint32_t v[NSEEDS];
  *reached = 0;
  for (int i = 0; i < NSEEDS; i++) {
    v[i] = r[i].steps;
    *reached += r[i].steps != NOT_REACHED;
  }
  qsort(v, NSEEDS, sizeof v[0], cmp_u32);
  *lo = v[0];
  *hi = v[NSEEDS - 1];
  return v[NSEEDS / 2]; /* NSEEDS is odd */
}

static void fmt_steps(char *buf, size_t len, uint32_t s)
{
  if (s == NOT_REACHED)
    snprintf(buf, len, ">%u", CAP);
  else
    snprintf(buf, len, "%u", s);
}

int main(void)
{
  const double t_start = bench_now();
  char cpu[256], date[64];
  bench_cpu_model(cpu, sizeof cpu);
  bench_date(date, sizeof date);
  printf("# zotune bench_codec\n\n");
  printf("Machine: %s | rng path: %s | %s\n", cpu, rng_isa_name(rng_get_isa()), date);
  printf("Problem: quadratic f = |x|^2, D = %d, start zo_function_start(seed); SPSA "
         "(two-sided), eps 1e-3, lr = n/(2(D+2+n)), constant schedule, codec scale0 1.\n",
         DIM);
  printf("Measure: steps until f < %g f(start), f checked every %u steps, cap %u "
         "steps; %d seeds (1..%d).\n\n",
         THRESH, CHECK, CAP, NSEEDS, NSEEDS);

  zo_objective obj;
  zo_err err;
  memset(&obj, 0, sizeof obj);
  memset(&err, 0, sizeof err);
  if (zo_function_new(ZO_FN_QUADRATIC, DIM, &obj, &err) != 0) {
    fprintf(stderr, "bench_codec: %s\n", err.msg);
    return 1;
  }
  float *x0 = malloc(DIM * sizeof *x0);
  if (!x0) {
    fprintf(stderr, "bench_codec: out of memory\n");
    zo_function_free(&obj);
    return 1;
  }

  int rc = 0;
  printf("| %-14s | %-8s | %-6s | %-8s | %-6s | %-6s | %-6s | %-10s | %-7s | %-11s | "
         "%-8s | %-6s |\n",
         "setup", "lr", "codec", "B/scalar", "median", "min", "max", "x none",
         "reached", "E[f] model", "final S", "time s");
  printf("|----------------|----------|--------|----------|--------|--------|--------|"
         "------------|---------|-------------|----------|--------|\n");
  for (size_t s = 0; s < NSETUPS && rc == 0; s++) {
    const struct setup *su = &setups[s];
    uint32_t none_med = NOT_REACHED;
    for (size_t c = 0; c < NCODECS && rc == 0; c++) {
      struct result r[NSEEDS];
      double t0 = bench_now(), scale_sum = 0.0;
      for (int k = 0; k < NSEEDS; k++) {
        uint64_t seed = (uint64_t)k + 1;
        zo_function_start(ZO_FN_QUADRATIC, seed, x0, DIM);
        double f0 = zo_function_eval(ZO_FN_QUADRATIC, x0, DIM);
        if (run(su, codecs[c], seed, &obj, x0, f0, &r[k], &err) != 0) {
          fprintf(stderr, "bench_codec: %s, codec %s, seed %llu: %s\n", su->name,
                  zo_codec_name(codecs[c]), (unsigned long long)seed, err.msg);
          rc = 1;
          break;
        }
        scale_sum += r[k].scale;
      }
      if (rc != 0)
        break;
      uint32_t lo, hi;
      int reached;
      uint32_t med = median_steps(r, &lo, &hi, &reached);
      if (codecs[c] == ZO_CODEC_NONE)
        none_med = med;
      char m[16], l[16], h[16], ratio[16], model[16], scale[16], reach[16], lr[16];
      snprintf(lr, sizeof lr, "%.3g", lr_for(su->n));
      fmt_steps(m, sizeof m, med);
      fmt_steps(l, sizeof l, lo);
      fmt_steps(h, sizeof h, hi);
      if (med == NOT_REACHED || none_med == NOT_REACHED)
        snprintf(ratio, sizeof ratio, "n/a");
      else
        snprintf(ratio, sizeof ratio, "%.3f", (double)med / (double)none_med);
      snprintf(model, sizeof model, "%.0f", ceil(expected_steps(su)));
      if (codecs[c] == ZO_CODEC_NONE)
        snprintf(scale, sizeof scale, "-");
      else
        snprintf(scale, sizeof scale, "%.3g", scale_sum / NSEEDS);
      snprintf(reach, sizeof reach, "%d/%d", reached, NSEEDS);
      printf("| %-14s | %-8s | %-6s | %8zu | %6s | %6s | %6s | %10s | %7s | %11s | %8s | "
             "%6.2f |\n",
             su->name, lr, zo_codec_name(codecs[c]), zo_codec_width(codecs[c]),
             m, l, h, ratio, reach, model, scale, bench_now() - t0);
      fflush(stdout);
    }
  }
  printf("\nB/scalar: payload bytes per projected-gradient record. x none: median steps "
         "/ median steps with codec none (same setup, same seeds). E[f] model: steps at "
         "which the expected f of an exact run reaches the threshold (codec none should "
         "land close to it). final S: codec scale at the end, mean over seeds.\n");
  printf("Total time: %.1f s\n", bench_now() - t_start);
  free(x0);
  zo_function_free(&obj);
  return rc;
}
