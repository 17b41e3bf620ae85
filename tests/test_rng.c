/* rng: Philox known answers, bit-identity of every path, random access,
 * thread invariance, distribution sanity, committed reference digests. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng/rng.h"
#include "rng/rng_impl.h"
#include "tests/expected.h"
#include "zo/hash.h"

static const enum rng_isa isas[] = {RNG_ISA_SCALAR, RNG_ISA_AVX2, RNG_ISA_AVX512};
#define NISA (sizeof isas / sizeof isas[0])

/* Random123 kat_vectors for philox4x32 with 10 rounds. */
static void test_philox_known_answers(void **state)
{
  static const uint32_t kat[3][10] = {
      {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
      {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d,
       0x41c83b0e, 0xa20bc7c6, 0x6d5451fd},
      {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09,
       0x94fdcceb, 0x5001e420, 0x24126ea1}};
  (void)state;
  for (int i = 0; i < 3; i++) {
    uint32_t out[4], c[4];
    rng_philox(kat[i], kat[i] + 4, out);
    assert_memory_equal(out, kat[i] + 6, sizeof out);
    memcpy(c, kat[i], sizeof c);
    rng_philox_scalar(c, kat[i][4], kat[i][5]); /* the inlined copy */
    assert_memory_equal(c, kat[i] + 6, sizeof c);
  }
}

static void test_inline_philox_matches_random123(void **state)
{
  (void)state;
  uint32_t x = 12345;
  for (int i = 0; i < 20000; i++) {
    uint32_t ctr[4], key[2], a[4], b[4];
    for (int k = 0; k < 4; k++)
      ctr[k] = x = x * 1664525u + 1013904223u;
    key[0] = x = x * 1664525u + 1013904223u;
    key[1] = x = x * 1664525u + 1013904223u;
    rng_philox(ctr, key, a);
    memcpy(b, ctr, sizeof b);
    rng_philox_scalar(b, key[0], key[1]);
    assert_memory_equal(a, b, sizeof a);
  }
}

static void test_stream_word_layout(void **state)
{
  (void)state;
  assert_int_equal(rng_stream_word(RNG_PERTURB, 0, 0), 0x10000000u);
  assert_int_equal(rng_stream_word(RNG_ROUND, 0xFFFF, 0xFFF), 0x5FFFFFFFu);
  assert_int_equal(rng_stream_word(RNG_BATCH, 3, 7), 0x40003007u);
  rng_stream s = rng_make(0x1122334455667788ull, 9, RNG_INIT, 1, 2);
  assert_true(s.seed == 0x1122334455667788ull);
  assert_int_equal(s.step, 9);
  assert_int_equal(s.stream, 0x80001002u);
}

/* Element i from the documented formula, with Random123 itself. */
static float spec_gaussian(const rng_stream *s, uint64_t i)
{
  uint64_t b = 16 * (i / 64) + i % 16;
  uint32_t c[4] = {(uint32_t)b, (uint32_t)(b >> 32), s->step, s->stream}, w[4];
  uint32_t k[2] = {(uint32_t)s->seed, (uint32_t)(s->seed >> 32)};
  rng_philox(c, k, w);
  unsigned g = (unsigned)((i / 16) % 4);
  float zc, zs;
  rng_box_muller(w[(g / 2) * 2], w[(g / 2) * 2 + 1], &zc, &zs);
  return g % 2 ? zs : zc;
}

static float spec_rademacher(const rng_stream *s, uint64_t i)
{
  uint64_t b = 16 * (i / 2048) + i % 16, j = (i % 2048) / 16;
  uint32_t c[4] = {(uint32_t)b, (uint32_t)(b >> 32), s->step, s->stream}, w[4];
  uint32_t k[2] = {(uint32_t)s->seed, (uint32_t)(s->seed >> 32)};
  rng_philox(c, k, w);
  return (w[j / 32] >> (j % 32)) & 1 ? -1.0f : 1.0f;
}

static void test_random_access_matches_spec(void **state)
{
  (void)state;
  rng_stream s = rng_make(77, 5, RNG_PERTURB, 2, 3);
  const uint64_t starts[] = {0, 63, 2047, 4096 + 5, (1ull << 40) + 17, (1ull << 62) - 3000};
  float buf[3000];
  for (size_t t = 0; t < sizeof starts / sizeof starts[0]; t++) {
    for (size_t isa = 0; isa < NISA; isa++) {
      if (rng_set_isa(isas[isa]) != 0)
        continue;
      rng_fill(RNG_GAUSSIAN, &s, starts[t], 3000, buf);
      for (uint64_t k = 0; k < 3000; k++) {
        float z = spec_gaussian(&s, starts[t] + k);
        assert_memory_equal(&buf[k], &z, sizeof z);
        float y = rng_at(RNG_GAUSSIAN, &s, starts[t] + k);
        assert_memory_equal(&buf[k], &y, sizeof y);
      }
      rng_fill(RNG_RADEMACHER, &s, starts[t], 3000, buf);
      for (uint64_t k = 0; k < 3000; k++) {
        assert_true(buf[k] == spec_rademacher(&s, starts[t] + k));
        assert_true(buf[k] == rng_at(RNG_RADEMACHER, &s, starts[t] + k));
      }
    }
  }
  rng_set_isa(RNG_ISA_AUTO);
}

/* Every path gives the same bits for dst = src + a z on ragged ranges. */
static void test_paths_bit_identical(void **state)
{
  (void)state;
  const size_t n = 100003;
  float *src = malloc(n * sizeof *src), *ref = malloc(n * sizeof *ref),
        *out = malloc(n * sizeof *out);
  assert_non_null(src);
  assert_non_null(ref);
  assert_non_null(out);
  for (size_t i = 0; i < n; i++)
    src[i] = (float)i * 1e-3f - 7.0f;
  rng_stream s = rng_make(0xDEADBEEFull, 123, RNG_PERTURB, 9, 4);
  for (int d = 0; d < 2; d++) {
    enum rng_dist dist = d ? RNG_RADEMACHER : RNG_GAUSSIAN;
    for (int with_src = 0; with_src < 2; with_src++) {
      rng_set_isa(RNG_ISA_SCALAR);
      rng_axpy(dist, &s, 37, n, -0.3125f, with_src ? src : NULL, ref);
      for (size_t isa = 1; isa < NISA; isa++) {
        if (rng_set_isa(isas[isa]) != 0)
          continue;
        rng_axpy(dist, &s, 37, n, -0.3125f, with_src ? src : NULL, out);
        assert_memory_equal(ref, out, n * sizeof *out);
      }
    }
  }
  rng_set_isa(RNG_ISA_AUTO);
  free(src);
  free(ref);
  free(out);
}

/* rng_axpy_pm gives rng_axpy's bits for a and for -a at once, on every
 * path, for ranges that start and end inside blocks, with eps values whose
 * products round (so a sign slip or a fused multiply-add would show). */
static void test_axpy_pm_matches_two_axpys(void **state)
{
  (void)state;
  /* from 2047: one element, then 140 (n = 9001) or 141 (9065, an odd count
   * for the two-chunk AVX-512 loop) whole Gaussian chunks, then a part */
  const size_t sizes[] = {9001, 9065}, n = 9065;
  float *src = malloc(n * sizeof *src), *p = malloc(n * sizeof *p), *m = malloc(n * sizeof *m),
        *ref = malloc(n * sizeof *ref);
  assert_non_null(src);
  assert_non_null(p);
  assert_non_null(m);
  assert_non_null(ref);
  for (size_t i = 0; i < n; i++)
    src[i] = (float)i * 1.7e-3f - 3.0f;
  rng_stream s = rng_make(77, 5, RNG_PERTURB, 2, 1);
  const float eps[] = {1e-3f, -0.3125f, 0.1f};
  for (int d = 0; d < 2; d++) {
    enum rng_dist dist = d ? RNG_RADEMACHER : RNG_GAUSSIAN;
    for (size_t isa = 0; isa < NISA; isa++) {
      if (rng_set_isa(isas[isa]) != 0)
        continue;
      for (size_t e = 0; e < sizeof eps / sizeof eps[0]; e++) {
        const size_t k = sizes[e % 2];
        rng_axpy_pm(dist, &s, 2047, k, eps[e], src, p, m);
        rng_axpy(dist, &s, 2047, k, eps[e], src, ref);
        assert_memory_equal(ref, p, k * sizeof *p);
        rng_axpy(dist, &s, 2047, k, -eps[e], src, ref);
        assert_memory_equal(ref, m, k * sizeof *m);
        int differ = 0;
        for (size_t i = 0; i < k; i++)
          differ += p[i] != m[i];
        assert_true(differ > (int)k / 2);
      }
    }
  }
  rng_set_isa(RNG_ISA_AUTO);
  free(src);
  free(p);
  free(m);
  free(ref);
}

static void test_thread_count_invariant(void **state)
{
  (void)state;
  const size_t n = 300001;
  float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
  assert_non_null(a);
  assert_non_null(b);
  rng_stream s = rng_make(5, 6, RNG_PERTURB, 7, 8);
  for (int d = 0; d < 2; d++) {
    enum rng_dist dist = d ? RNG_RADEMACHER : RNG_GAUSSIAN;
    for (size_t i = 0; i < n; i++)
      a[i] = b[i] = (float)(i % 97) * 0.01f;
    rng_axpy_mt(dist, &s, 1001, n, 0.01f, a, a, 1);
    for (int t = 2; t <= 3; t++) {
      for (size_t i = 0; i < n; i++)
        b[i] = (float)(i % 97) * 0.01f;
      rng_axpy_mt(dist, &s, 1001, n, 0.01f, b, b, t);
      assert_memory_equal(a, b, n * sizeof *a);
    }
  }
  free(a);
  free(b);
}

static void test_streams_differ(void **state)
{
  (void)state;
  rng_stream base = rng_make(1, 2, RNG_PERTURB, 3, 4);
  rng_stream other[] = {rng_make(2, 2, RNG_PERTURB, 3, 4), rng_make(1, 3, RNG_PERTURB, 3, 4),
                        rng_make(1, 2, RNG_ROUND, 3, 4), rng_make(1, 2, RNG_PERTURB, 4, 4),
                        rng_make(1, 2, RNG_PERTURB, 3, 5)};
  float a[64], b[64];
  rng_fill(RNG_GAUSSIAN, &base, 0, 64, a);
  for (size_t k = 0; k < sizeof other / sizeof other[0]; k++) {
    rng_fill(RNG_GAUSSIAN, &other[k], 0, 64, b);
    int same = 0;
    for (int i = 0; i < 64; i++)
      same += a[i] == b[i];
    assert_true(same < 4);
  }
}

static double normal_cdf(double x)
{
  return 0.5 * erfc(-x / sqrt(2.0));
}

static int cmp_float(const void *a, const void *b)
{
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov distance of sorted x from cdf. */
static double ks(float *x, size_t n, double (*cdf)(double))
{
  double d = 0;
  qsort(x, n, sizeof *x, cmp_float);
  for (size_t i = 0; i < n; i++) {
    double f = cdf(x[i]);
    double lo = f - (double)i / n, hi = (double)(i + 1) / n - f;
    d = fmax(d, fmax(lo, hi));
  }
  return d;
}

static double uniform_cdf(double x)
{
  return x < 0 ? 0 : x > 1 ? 1 : x;
}

static void moments(const float *x, size_t n, double *mean, double *var)
{
  double s = 0, s2 = 0;
  for (size_t i = 0; i < n; i++) {
    s += x[i];
    s2 += (double)x[i] * x[i];
  }
  *mean = s / n;
  *var = s2 / n - *mean * *mean;
}

static void test_distributions(void **state)
{
  (void)state;
  const size_t n = 1000000;
  float *x = malloc(n * sizeof *x);
  double m, v;
  assert_non_null(x);
  rng_stream s = rng_make(2024, 1, RNG_PERTURB, 0, 0);
  /* 1% critical value of KS: 1.63/sqrt(n); of a mean: 2.58 sigma/sqrt(n). */
  const double ks_crit = 1.63 / sqrt((double)n), m_crit = 2.58 / sqrt((double)n);

  rng_fill(RNG_GAUSSIAN, &s, 0, n, x);
  moments(x, n, &m, &v);
  assert_true(fabs(m) < m_crit);
  assert_true(fabs(v - 1.0) < 2.58 * sqrt(2.0 / n));
  assert_true(ks(x, n, normal_cdf) < ks_crit);

  rng_fill(RNG_RADEMACHER, &s, 0, n, x);
  size_t plus = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(x[i] == 1.0f || x[i] == -1.0f);
    plus += x[i] > 0;
  }
  assert_true(fabs((double)plus / n - 0.5) < 0.5 * m_crit);

  rng_fill(RNG_UNIFORM, &s, 0, n, x);
  for (size_t i = 0; i < n; i++)
    assert_true(x[i] > 0.0f && x[i] < 1.0f);
  moments(x, n, &m, &v);
  assert_true(fabs(m - 0.5) < m_crit * sqrt(1.0 / 12));
  assert_true(fabs(v - 1.0 / 12) < 1e-3);
  assert_true(ks(x, n, uniform_cdf) < ks_crit);
  free(x);
}

/* The project's log and sincos against libm over their whole input sets. */
static void test_math_accuracy(void **state)
{
  (void)state;
  double worst_log = 0, worst_trig = 0;
  for (uint32_t k = 1; k <= (1u << 24); k += 97) {
    float u = (float)k * 0x1p-24f;
    double err = fabs(rng_logf(u) - log((double)u));
    worst_log = fmax(worst_log, err / fmax(fabs(log((double)u)), 1e-3));
  }
  for (uint32_t k = 0; k < (1u << 24); k += 61) {
    float u = (float)k * 0x1p-24f, sn, cs;
    rng_sincos_turn(u, &sn, &cs);
    double a = 6.283185307179586 * (double)u;
    worst_trig = fmax(worst_trig, fmax(fabs(sn - sin(a)), fabs(cs - cos(a))));
  }
  assert_true(worst_log < 1e-6);
  assert_true(worst_trig < 3e-7);
}

static void digest_hex(enum rng_dist d, float *buf, char hex[65])
{
  uint8_t h[32];
  rng_stream s = rng_make(0x5A4F54554E45ull, 0, RNG_PERTURB, 0, 0);
  rng_fill(d, &s, 0, 1000000, buf);
  zo_sha256_floats(buf, 1000000, h);
  zo_hex(h, hex);
}

static void test_committed_digests(void **state)
{
  (void)state;
  float *buf = malloc(1000000 * sizeof *buf);
  char hex[65];
  assert_non_null(buf);
  int ran = 0;
  for (size_t i = 0; i < NISA; i++) {
    if (rng_set_isa(isas[i]) != 0)
      continue;
    ran++;
    digest_hex(RNG_GAUSSIAN, buf, hex);
    assert_string_equal(hex, EXPECT_GAUSSIAN_SHA256);
    digest_hex(RNG_RADEMACHER, buf, hex);
    assert_string_equal(hex, EXPECT_RADEMACHER_SHA256);
  }
  assert_true(ran >= 1);
  rng_set_isa(RNG_ISA_AUTO);
  free(buf);
}

static void test_isa_names(void **state)
{
  (void)state;
  enum rng_isa isa;
  for (size_t i = 0; i < NISA; i++) {
    assert_int_equal(rng_isa_parse(rng_isa_name(isas[i]), &isa), 0);
    assert_int_equal(isa, isas[i]);
  }
  assert_int_equal(rng_isa_parse("sse9", &isa), -1);
  assert_int_equal(rng_set_isa(RNG_ISA_SCALAR), 0);
  assert_int_equal(rng_get_isa(), RNG_ISA_SCALAR);
  assert_int_equal(rng_set_isa(RNG_ISA_AUTO), 0);
  assert_int_not_equal(rng_get_isa(), RNG_ISA_AUTO);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_philox_known_answers),
      cmocka_unit_test(test_inline_philox_matches_random123),
      cmocka_unit_test(test_stream_word_layout),
      cmocka_unit_test(test_random_access_matches_spec),
      cmocka_unit_test(test_paths_bit_identical),
      cmocka_unit_test(test_axpy_pm_matches_two_axpys),
      cmocka_unit_test(test_thread_count_invariant),
      cmocka_unit_test(test_streams_differ),
      cmocka_unit_test(test_distributions),
      cmocka_unit_test(test_math_accuracy),
      cmocka_unit_test(test_committed_digests),
      cmocka_unit_test(test_isa_names),
  };
  return cmocka_run_group_tests_name("rng", tests, NULL, NULL);
}
