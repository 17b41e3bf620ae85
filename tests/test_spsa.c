/* zo: SPSA estimator, update arithmetic, schedules, config, replay. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zo/config.h"
#include "zo/functions.h"
#include "zo/hash.h"
#include "zo/log.h"
#include "zo/spsa.h"

/* Runs `steps` SPSA steps of cfg on f from its start point; optionally logs. */
static double run_steps(const zo_config *cfg, enum zo_function f, size_t dim, uint32_t steps,
                        zo_log *log, float *final)
{
  zo_objective obj;
  zo_state st;
  zo_err err;
  float *x0 = malloc(dim * sizeof *x0);
  size_t per = (size_t)cfg->workers * cfg->directions;
  zo_record *rec = malloc(per * sizeof *rec);
  assert_non_null(x0);
  assert_non_null(rec);
  assert_int_equal(zo_function_new(f, dim, &obj, &err), 0);
  zo_function_start(f, cfg->seed, x0, dim);
  assert_int_equal(zo_state_init(&st, cfg, x0, dim, &err), 0);
  for (uint32_t t = 0; t < steps; t++) {
    for (uint32_t w = 0; w < cfg->workers; w++)
      assert_int_equal(zo_spsa_probe(cfg, &st, &obj, w, rec + w * cfg->directions, NULL, &err),
                       0);
    if (log)
      assert_int_equal(zo_log_append(log, rec, (uint32_t)per, 0, &err), 0);
    assert_int_equal(zo_spsa_apply(cfg, &st, rec, (uint32_t)per, 1, &err), 0);
  }
  double fx = zo_function_eval(f, st.theta, dim);
  if (final)
    memcpy(final, st.theta, dim * sizeof *final);
  zo_state_free(&st);
  zo_function_free(&obj);
  free(rec);
  free(x0);
  return fx;
}

/* Acceptance: each codec takes a 1000-dimensional quadratic below 1e-3 of
 * its start value in 8000 steps. With exact scalars and the optimal step
 * lr = 1/(2(D+2)), E[f] shrinks by (1 - 1/(D+2)) per step, so the budget for
 * 1e-3 is (D+2) ln 1000 = 6920 steps; 8000 leaves 15% for quantization. */
static void test_quadratic_converges_with_each_codec(void **state)
{
  (void)state;
  const size_t dim = 1000;
  enum zo_codec_kind codecs[] = {ZO_CODEC_LOG, ZO_CODEC_LINEAR, ZO_CODEC_NONE};
  for (size_t c = 0; c < 3; c++) {
    zo_config cfg;
    zo_config_defaults(&cfg);
    cfg.seed = 11;
    cfg.codec = codecs[c];
    cfg.lr = 0.5 / (dim + 2.0);
    cfg.steps = 8000;
    float *x0 = malloc(dim * sizeof *x0);
    zo_function_start(ZO_FN_QUADRATIC, cfg.seed, x0, dim);
    double f0 = zo_function_eval(ZO_FN_QUADRATIC, x0, dim);
    double f = run_steps(&cfg, ZO_FN_QUADRATIC, dim, cfg.steps, NULL, NULL);
    free(x0);
    if (!(f < 1e-3 * f0))
      fail_msg("codec %s: f %g -> %g (ratio %g)", zo_codec_name(codecs[c]), f0, f, f / f0);
  }
}

/* W virtual workers in one process produce exactly the records W separate
 * processes (each probing only its own slot) would. */
static void test_virtual_workers_equal_separate(void **state)
{
  (void)state;
  const size_t dim = 300;
  zo_config cfg;
  zo_objective obj;
  zo_err err;
  zo_config_defaults(&cfg);
  cfg.seed = 3;
  cfg.workers = 3;
  cfg.directions = 2;
  cfg.lr = 1e-3;
  float *x0 = malloc(dim * sizeof *x0);
  zo_function_start(ZO_FN_ROSENBROCK, cfg.seed, x0, dim);
  assert_int_equal(zo_function_new(ZO_FN_ROSENBROCK, dim, &obj, &err), 0);
  zo_state together, alone[3];
  assert_int_equal(zo_state_init(&together, &cfg, x0, dim, &err), 0);
  for (int w = 0; w < 3; w++)
    assert_int_equal(zo_state_init(&alone[w], &cfg, x0, dim, &err), 0);
  zo_record rec[6], mine[2], merged[6];
  for (int t = 0; t < 20; t++) {
    for (uint32_t w = 0; w < 3; w++)
      assert_int_equal(zo_spsa_probe(&cfg, &together, &obj, w, rec + 2 * w, NULL, &err), 0);
    /* Each "process" probes its own slot at its own copy of the state. */
    for (uint32_t w = 0; w < 3; w++) {
      assert_int_equal(zo_spsa_probe(&cfg, &alone[w], &obj, w, mine, NULL, &err), 0);
      memcpy(merged + 2 * w, mine, sizeof mine);
    }
    assert_memory_equal(rec, merged, sizeof rec);
    assert_int_equal(zo_spsa_apply(&cfg, &together, rec, 6, 1, &err), 0);
    for (int w = 0; w < 3; w++)
      assert_int_equal(zo_spsa_apply(&cfg, &alone[w], merged, 6, 2, &err), 0);
  }
  for (int w = 0; w < 3; w++) {
    assert_memory_equal(together.theta, alone[w].theta, dim * sizeof(float));
    zo_state_free(&alone[w]);
  }
  zo_state_free(&together);
  zo_function_free(&obj);
  free(x0);
}

/* The live run and a replay of its log agree bit for bit, in every
 * direction mode, both distributions, with decay and a cosine schedule. */
static void test_replay_equals_live(void **state)
{
  (void)state;
  const size_t dim = 5000;
  struct {
    enum zo_dirmode mode;
    uint32_t pool;
    enum rng_dist dist;
    enum zo_codec_kind codec;
    enum zo_aggregate agg;
  } cases[] = {{ZO_DIRS_PER_WORKER, 0, RNG_GAUSSIAN, ZO_CODEC_LOG, ZO_AGG_MEAN},
               {ZO_DIRS_SHARED, 0, RNG_RADEMACHER, ZO_CODEC_LINEAR, ZO_AGG_MEDIAN},
               {ZO_DIRS_POOL, 3, RNG_GAUSSIAN, ZO_CODEC_NONE, ZO_AGG_MEAN}};
  char dir[] = "/tmp/zotune-test-XXXXXX";
  assert_non_null(mkdtemp(dir));
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    zo_config cfg;
    zo_err err;
    zo_log *log;
    char path[128];
    zo_config_defaults(&cfg);
    cfg.seed = 100 + k;
    cfg.workers = 2;
    cfg.directions = 3;
    cfg.mode = cases[k].mode;
    cfg.pool = cases[k].pool;
    cfg.dist = cases[k].dist;
    cfg.codec = cases[k].codec;
    cfg.aggregate = cases[k].agg;
    cfg.lr = 2e-4;
    cfg.weight_decay = 0.1;
    cfg.schedule.kind = ZO_SCHED_COSINE;
    cfg.schedule.warmup = 5;
    cfg.steps = cfg.schedule.total = 40;
    zo_log_header h = {ZO_LOG_VERSION, (uint32_t)zo_codec_width(cfg.codec), cfg.seed, 6, {0},
                       {0}};
    snprintf(path, sizeof path, "%s/log%zu", dir, k);
    assert_int_equal(zo_log_create(path, &h, &log, &err), 0);
    float *live = malloc(dim * sizeof *live), *x0 = malloc(dim * sizeof *x0);
    run_steps(&cfg, ZO_FN_RASTRIGIN, dim, cfg.steps, log, live);
    zo_log_close(log);

    zo_state st;
    assert_int_equal(zo_log_open(path, ZO_LOG_READ, &log, NULL, &err), 0);
    zo_function_start(ZO_FN_RASTRIGIN, cfg.seed, x0, dim);
    assert_int_equal(zo_state_init(&st, &cfg, x0, dim, &err), 0);
    assert_int_equal(zo_spsa_replay(&cfg, &st, log, zo_log_nsteps(log), 2, &err), 0);
    assert_int_equal(st.step, 40);
    assert_memory_equal(st.theta, live, dim * sizeof *live);
    assert_true(memcmp(st.theta, x0, dim * sizeof *x0) != 0);
    zo_state_free(&st);
    zo_log_close(log);
    unlink(path);
    free(live);
    free(x0);
  }
  rmdir(dir);
}

/* zo_update equals the documented per-element formula, computed here from
 * rng_at one element at a time, for every thread count. */
static void test_update_matches_formula(void **state)
{
  (void)state;
  const size_t n = 20000;
  float *theta = malloc(n * sizeof *theta), *ref = malloc(n * sizeof *ref);
  zo_term terms[3] = {{rng_make(9, 1, RNG_PERTURB, 0, 0), 0.25f},
                      {rng_make(9, 1, RNG_PERTURB, 1, 0), -1.5e-3f},
                      {rng_make(9, 1, RNG_PERTURB, 2, 5), 7.0f}};
  for (int d = 0; d < 2; d++) {
    enum rng_dist dist = d ? RNG_RADEMACHER : RNG_GAUSSIAN;
    for (size_t nt = 1; nt <= 3; nt += 2) {
      for (int decayed = 0; decayed < 2; decayed++) {
        float decay = decayed ? 0.999f : 1.0f;
        for (size_t i = 0; i < n; i++) {
          float acc = terms[0].coef * rng_at(dist, &terms[0].stream, i);
          for (size_t r = 1; r < nt; r++)
            acc = acc + terms[r].coef * rng_at(dist, &terms[r].stream, i);
          float x = (float)i * 1e-4f - 1.0f;
          ref[i] = x * decay - acc;
        }
        for (int threads = 1; threads <= 2; threads++) {
          for (size_t i = 0; i < n; i++)
            theta[i] = (float)i * 1e-4f - 1.0f;
          zo_update(theta, n, dist, terms, nt, decay, threads);
          assert_memory_equal(theta, ref, n * sizeof *ref);
        }
      }
    }
  }
  free(theta);
  free(ref);
}

/* Shared mode: per direction, the median (or mean) over slots scales z. */
static void test_shared_mode_aggregates(void **state)
{
  (void)state;
  const size_t n = 777;
  float g[3] = {1.0f, 10.0f, 2.5f}; /* median 2.5, mean 4.5 */
  for (int agg = 0; agg < 2; agg++) {
    zo_config cfg;
    zo_state st;
    zo_err err;
    zo_config_defaults(&cfg);
    cfg.seed = 4;
    cfg.workers = 3;
    cfg.mode = ZO_DIRS_SHARED;
    cfg.codec = ZO_CODEC_NONE;
    cfg.aggregate = agg ? ZO_AGG_MEDIAN : ZO_AGG_MEAN;
    cfg.lr = 0.01;
    float *x0 = calloc(n, sizeof *x0);
    assert_int_equal(zo_state_init(&st, &cfg, x0, n, &err), 0);
    zo_record rec[3];
    memset(rec, 0, sizeof rec);
    for (int w = 0; w < 3; w++) {
      rec[w].slot = (uint16_t)w;
      memcpy(rec[w].payload, &g[w], 4);
    }
    assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 3, 1, &err), 0);
    double a = agg ? 2.5 : 4.5;
    float coef = (float)(0.01 * a / 1.0);
    rng_stream s = rng_make(4, 0, RNG_PERTURB, 0, 0);
    for (size_t i = 0; i < n; i++) {
      float want = 0.0f - coef * rng_at(RNG_GAUSSIAN, &s, i);
      assert_memory_equal(&st.theta[i], &want, sizeof want);
    }
    zo_state_free(&st);
    free(x0);
  }
}

/* Pool mode: directions come from the K-entry pool; records that drew the
 * same entry merge into one term whose coefficient is their sum. */
static void test_pool_mode(void **state)
{
  (void)state;
  zo_config cfg;
  zo_config_defaults(&cfg);
  cfg.seed = 8;
  cfg.workers = 4;
  cfg.directions = 4;
  cfg.mode = ZO_DIRS_POOL;
  cfg.pool = 2;
  int seen[2] = {0, 0};
  for (uint32_t t = 0; t < 10; t++)
    for (uint32_t w = 0; w < 4; w++)
      for (uint32_t d = 0; d < 4; d++) {
        zo_dir z = zo_spsa_direction(&cfg, t, w, d);
        assert_int_equal(z.stream.step, 0);
        assert_int_equal(z.stream.stream >> 28, RNG_POOL_DIR);
        uint32_t k = z.stream.stream & RNG_MAX_DIR;
        assert_true(k < 2);
        seen[k]++;
      }
  assert_true(seen[0] > 40 && seen[1] > 40);

  /* All 16 records of a step with value 1: theta moves by lr * (count_k/16) z_k. */
  const size_t n = 500;
  zo_state st;
  zo_err err;
  cfg.codec = ZO_CODEC_NONE;
  cfg.lr = 0.5;
  float *x0 = calloc(n, sizeof *x0);
  assert_int_equal(zo_state_init(&st, &cfg, x0, n, &err), 0);
  zo_record rec[16];
  memset(rec, 0, sizeof rec);
  float one = 1.0f;
  uint32_t cnt[2] = {0, 0}, first = 2;
  for (int r = 0; r < 16; r++) {
    rec[r].slot = (uint16_t)(r / 4);
    rec[r].dir = (uint16_t)(r % 4);
    memcpy(rec[r].payload, &one, 4);
    uint32_t k = zo_spsa_direction(&cfg, 0, r / 4, r % 4).stream.stream & RNG_MAX_DIR;
    cnt[k]++;
    if (first == 2)
      first = k;
  }
  assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 16, 1, &err), 0);
  zo_term terms[2];
  size_t nt = 0;
  for (uint32_t i = 0; i < 2; i++) {
    uint32_t k = i == 0 ? first : 1 - first;
    if (!cnt[k])
      continue;
    terms[nt].stream = rng_make(8, 0, RNG_POOL_DIR, 0, k);
    terms[nt++].coef = (float)(0.5 * cnt[k] / 16.0);
  }
  float *ref = calloc(n, sizeof *ref);
  zo_update(ref, n, RNG_GAUSSIAN, terms, nt, 1.0f, 1);
  assert_memory_equal(st.theta, ref, n * sizeof *ref);
  zo_state_free(&st);
  free(x0);
  free(ref);
}

static void test_schedules(void **state)
{
  (void)state;
  zo_schedule s = {ZO_SCHED_CONSTANT, 0, 100, 0.0};
  assert_true(zo_sched_factor(&s, 0) == 1.0 && zo_sched_factor(&s, 99) == 1.0);
  s.warmup = 4;
  assert_true(fabs(zo_sched_factor(&s, 0) - 0.2) < 1e-15);
  assert_true(fabs(zo_sched_factor(&s, 3) - 0.8) < 1e-15);
  assert_true(zo_sched_factor(&s, 4) == 1.0);
  s.kind = ZO_SCHED_LINEAR;
  s.warmup = 0;
  s.min_ratio = 0.1;
  assert_true(zo_sched_factor(&s, 0) == 1.0);
  assert_true(fabs(zo_sched_factor(&s, 50) - 0.55) < 1e-12);
  assert_true(fabs(zo_sched_factor(&s, 100) - 0.1) < 1e-12);
  assert_true(fabs(zo_sched_factor(&s, 1000) - 0.1) < 1e-12);
  s.kind = ZO_SCHED_COSINE;
  s.min_ratio = 0.0;
  assert_true(fabs(zo_sched_factor(&s, 0) - 1.0) < 1e-7);
  assert_true(fabs(zo_sched_factor(&s, 50) - 0.5) < 1e-7);
  assert_true(fabs(zo_sched_factor(&s, 25) - 0.5 * (1 + cos(3.141592653589793 / 4))) < 1e-7);
  assert_true(fabs(zo_sched_factor(&s, 100)) < 1e-7);
  enum zo_sched_kind k;
  assert_int_equal(zo_sched_parse("cosine", &k), 0);
  assert_int_equal(k, ZO_SCHED_COSINE);
  assert_int_equal(zo_sched_parse("exp", &k), -1);
}

static void test_config_json_round_trip(void **state)
{
  (void)state;
  zo_config a, b;
  zo_err err;
  zo_config_defaults(&a);
  a.seed = 0x7FFFFFFFFFFFFFFFull;
  a.workers = 7;
  a.directions = 3;
  a.mode = ZO_DIRS_POOL;
  a.pool = 64;
  a.aggregate = ZO_AGG_MEDIAN;
  a.dist = RNG_RADEMACHER;
  a.codec = ZO_CODEC_LINEAR;
  a.lr = 1.0 / 3.0;
  a.eps = 1e-7;
  a.weight_decay = 0.01;
  a.schedule.kind = ZO_SCHED_LINEAR;
  a.schedule.warmup = 10;
  a.schedule.min_ratio = 0.05;
  a.steps = a.schedule.total = 1234;
  json_t *j = zo_config_to_json(&a);
  char *text = zo_json_canonical(j);
  json_t *back = json_loads(text, 0, NULL);
  assert_int_equal(zo_config_from_json(back, &b, &err), 0);
  assert_memory_equal(&a, &b, sizeof a);

  json_object_set_new(back, "momentum", json_real(0.9));
  assert_int_equal(zo_config_from_json(back, &b, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "\"momentum\""));
  json_object_del(back, "momentum");
  json_object_del(back, "eps");
  assert_int_equal(zo_config_from_json(back, &b, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "\"eps\""));
  json_object_set_new(back, "eps", json_real(-1));
  assert_int_equal(zo_config_from_json(back, &b, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "eps"));
  json_object_set_new(back, "eps", json_real(1e-3));
  json_object_set_new(back, "direction_mode", json_string("pool:0"));
  assert_int_equal(zo_config_from_json(back, &b, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "direction_mode"));
  free(text);
  json_decref(j);
  json_decref(back);
}

/* Bad records change nothing. */
static void test_apply_rejects_bad_records(void **state)
{
  (void)state;
  zo_config cfg;
  zo_state st;
  zo_err err;
  zo_config_defaults(&cfg);
  cfg.workers = 2;
  cfg.directions = 2;
  float x0[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  assert_int_equal(zo_state_init(&st, &cfg, x0, 10, &err), 0);
  zo_record rec[2];
  memset(rec, 0, sizeof rec);
  rec[0].payload[0] = rec[1].payload[0] = 100;
  rec[1].slot = 2; /* no such slot */
  assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 2, 1, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "slot 2"));
  rec[1].slot = 0; /* duplicate (0, 0) */
  assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 2, 1, &err), ZO_ECORRUPT);
  rec[0].dir = 2; /* no such dir */
  assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 1, 1, &err), ZO_ECORRUPT);
  assert_memory_equal(st.theta, x0, sizeof x0);
  assert_int_equal(st.step, 0);
  assert_true(st.codec.scale == 1.0);
  zo_state_free(&st);
}

static int nan_loss_pm(void *ctx, const float *theta, const zo_dir *z, float eps,
                       const zo_batch *b, double *lp, double *lm, zo_err *err)
{
  (void)ctx, (void)theta, (void)z, (void)eps, (void)b, (void)err;
  *lp = NAN;
  *lm = 1.0;
  return 0;
}

/* A probe whose loss is not finite records a zero: the step moves nothing. */
static void test_nonfinite_loss_is_inert(void **state)
{
  (void)state;
  zo_objective obj = {16, NULL, nan_loss_pm, NULL};
  for (int c = 0; c < 3; c++) {
    zo_config cfg;
    zo_state st;
    zo_err err;
    zo_record rec;
    zo_config_defaults(&cfg);
    cfg.codec = (enum zo_codec_kind)c;
    float x0[16] = {0};
    assert_int_equal(zo_state_init(&st, &cfg, x0, 16, &err), 0);
    assert_int_equal(zo_spsa_probe(&cfg, &st, &obj, 0, &rec, NULL, &err), 0);
    assert_true(zo_codec_decode(&st.codec, rec.payload) == 0.0);
    assert_int_equal(zo_spsa_apply(&cfg, &st, &rec, 1, 1, &err), 0);
    for (int i = 0; i < 16; i++)
      assert_true(st.theta[i] == 0.0f);
    zo_state_free(&st);
  }
}

/* Per-worker mode: one term per record, coefficient lr_t * v / n, in record
 * order, with the step's decay (docs/log-format.md §4). */
static void test_per_worker_terms(void **state)
{
  (void)state;
  const size_t n = 3000;
  zo_config cfg;
  zo_state st;
  zo_err err;
  zo_config_defaults(&cfg);
  cfg.seed = 21;
  cfg.workers = 2;
  cfg.directions = 2;
  cfg.codec = ZO_CODEC_NONE;
  cfg.lr = 0.03;
  cfg.weight_decay = 0.5;
  cfg.schedule.kind = ZO_SCHED_LINEAR;
  cfg.schedule.total = 10;
  float *x0 = malloc(n * sizeof *x0), *ref = malloc(n * sizeof *ref);
  for (size_t i = 0; i < n; i++)
    x0[i] = ref[i] = (float)i * 1e-3f;
  assert_int_equal(zo_state_init(&st, &cfg, x0, n, &err), 0);
  zo_record rec[3];
  float v[3] = {2.0f, -1.0f, 0.5f};
  uint16_t slot[3] = {0, 1, 1}, dir[3] = {1, 0, 1};
  memset(rec, 0, sizeof rec);
  for (int r = 0; r < 3; r++) {
    rec[r].slot = slot[r];
    rec[r].dir = dir[r];
    memcpy(rec[r].payload, &v[r], 4);
  }
  for (uint32_t t = 0; t < 2; t++) { /* two steps: the schedule moves lr */
    assert_int_equal(zo_spsa_apply(&cfg, &st, rec, 3, 2, &err), 0);
    double lr_t = 0.03 * (1.0 - t / 10.0);
    zo_term terms[3];
    for (int r = 0; r < 3; r++) {
      terms[r].stream = rng_make(21, t, RNG_PERTURB, slot[r], dir[r]);
      terms[r].coef = (float)(lr_t * v[r] / 3.0);
    }
    zo_update(ref, n, RNG_GAUSSIAN, terms, 3, (float)(1.0 - lr_t * 0.5), 1);
    assert_memory_equal(st.theta, ref, n * sizeof *ref);
  }
  zo_state_free(&st);
  free(x0);
  free(ref);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quadratic_converges_with_each_codec),
      cmocka_unit_test(test_virtual_workers_equal_separate),
      cmocka_unit_test(test_replay_equals_live),
      cmocka_unit_test(test_update_matches_formula),
      cmocka_unit_test(test_per_worker_terms),
      cmocka_unit_test(test_shared_mode_aggregates),
      cmocka_unit_test(test_pool_mode),
      cmocka_unit_test(test_schedules),
      cmocka_unit_test(test_config_json_round_trip),
      cmocka_unit_test(test_apply_rejects_bad_records),
      cmocka_unit_test(test_nonfinite_loss_is_inert),
  };
  return cmocka_run_group_tests_name("spsa", tests, NULL, NULL);
}
