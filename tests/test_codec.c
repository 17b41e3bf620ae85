/* Unit tests for zo/codec.c: the log, linear and none payload codes and the
 * deterministic scale rule (see zo/codec.h). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "zo/codec.h"

#define NU 4096 /* points of the uniform grid for the unbiasedness tests */

static const double scales[] = {1.0, 0.01, 3.7, 1e-6, 250.0};
#define NSCALES (sizeof scales / sizeof scales[0])

/* u values across (0, 1), including both ends of float's range there. */
static float some_u(int i)
{
  static const float us[] = {1e-7f, 0.001f, 0.1f, 0.25f, 0.3f,       0.5f,
                             0.5001f, 0.7f, 0.9f, 0.999f, 0.9999999f};
  return us[i];
}
#define NSOME_U 11

static double enc_dec(const zo_codec *c, double g, float u)
{
  uint8_t b[ZO_CODEC_MAX_WIDTH] = {0};
  zo_codec_encode(c, g, u, b);
  return zo_codec_decode(c, b);
}

static uint8_t enc1(const zo_codec *c, double g, float u)
{
  uint8_t b[ZO_CODEC_MAX_WIDTH] = {0};
  zo_codec_encode(c, g, u, b);
  return b[0];
}

static void assert_rel(double got, double want, double tol)
{
  double err = fabs(got - want), lim = tol * fabs(want);
  if (!(err <= lim)) {
    print_message("got %.17g want %.17g (rel err %.3g > %.3g)\n", got, want,
                  want != 0 ? err / fabs(want) : err, tol);
    fail();
  }
}

/* Level of log-code magnitude m (1..127) at scale s, by the definition. */
static double log_level_ref(int m, double s)
{
  return s * pow(2.0, (m - 96) / 8.0);
}

/* Value of linear code q at scale s, by the definition. */
static double lin_level_ref(int q, double s)
{
  return (double)q * 6.0 * s / 127.0;
}

/* ---- names and widths --------------------------------------------------- */

static void test_width_and_names(void **state)
{
  (void)state;
  assert_int_equal(zo_codec_width(ZO_CODEC_LOG), 1);
  assert_int_equal(zo_codec_width(ZO_CODEC_LINEAR), 1);
  assert_int_equal(zo_codec_width(ZO_CODEC_NONE), 4);
  assert_true(zo_codec_width(ZO_CODEC_NONE) <= ZO_CODEC_MAX_WIDTH);

  assert_string_equal(zo_codec_name(ZO_CODEC_LOG), "log");
  assert_string_equal(zo_codec_name(ZO_CODEC_LINEAR), "linear");
  assert_string_equal(zo_codec_name(ZO_CODEC_NONE), "none");

  static const enum zo_codec_kind kinds[] = {ZO_CODEC_NONE, ZO_CODEC_LOG,
                                             ZO_CODEC_LINEAR};
  for (size_t i = 0; i < 3; i++) {
    enum zo_codec_kind k = (enum zo_codec_kind)99;
    assert_int_equal(zo_codec_parse(zo_codec_name(kinds[i]), &k), 0);
    assert_int_equal(k, kinds[i]);
  }
  static const char *const badnames[] = {"", "lo", "logs", "lin", "linear ",
                                         "None", "LOG", "float32", "int8"};
  for (size_t i = 0; i < sizeof badnames / sizeof badnames[0]; i++) {
    enum zo_codec_kind k = ZO_CODEC_LINEAR;
    assert_int_equal(zo_codec_parse(badnames[i], &k), -1);
    assert_int_equal(k, ZO_CODEC_LINEAR); /* untouched */
  }

  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LOG, 0.125);
  assert_int_equal(c.kind, ZO_CODEC_LOG);
  assert_true(c.scale == 0.125);
}

/* ---- zero and non-finite ------------------------------------------------ */

static void zero_and_nonfinite(enum zo_codec_kind kind)
{
  const double specials[] = {0.0, -0.0, NAN, -NAN, INFINITY, -INFINITY};
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec c;
    zo_codec_init(&c, kind, scales[s]);
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
      for (int k = 0; k < NSOME_U; k++) {
        uint8_t b[ZO_CODEC_MAX_WIDTH];
        memset(b, 0xCC, sizeof b);
        zo_codec_encode(&c, specials[i], some_u(k), b);
        double d = zo_codec_decode(&c, b);
        assert_true(d == 0.0);
        assert_false(zo_codec_is_max(&c, b));
        if (i < 2 && kind != ZO_CODEC_NONE) /* zero itself: the zero payload */
          assert_int_equal(b[0] & 0x7F, 0);
      }
    }
  }
}

static void test_zero_nonfinite_log(void **state)
{
  (void)state;
  zero_and_nonfinite(ZO_CODEC_LOG);
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LOG, 1.0);
  uint8_t z = 0x00, nz = 0x80;
  assert_true(zo_codec_decode(&c, &z) == 0.0);
  assert_true(zo_codec_decode(&c, &nz) == 0.0);
}

static void test_zero_nonfinite_linear(void **state)
{
  (void)state;
  zero_and_nonfinite(ZO_CODEC_LINEAR);
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LINEAR, 1.0);
  assert_int_equal(enc1(&c, 0.0, 0.999f), 0);
}

static void test_zero_nonfinite_none(void **state)
{
  (void)state;
  zero_and_nonfinite(ZO_CODEC_NONE);
}

/* ---- sign symmetry ------------------------------------------------------ */

static void sign_symmetry(enum zo_codec_kind kind)
{
  size_t bad = 0, total = 0;
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec c;
    zo_codec_init(&c, kind, scales[s]);
    for (int e = -200; e <= 60; e++) {
      /* magnitudes from far below the smallest level to far above the clip */
      double g = scales[s] * pow(2.0, e / 16.0) * (1.0 + 0.013 * (e & 7));
      for (int k = 0; k < NSOME_U; k++) {
        float u = some_u(k);
        double p = enc_dec(&c, g, u), n = enc_dec(&c, -g, u);
        total++;
        if (!(n == -p)) {
          if (bad++ < 5)
            print_message("%s scale %g g %.17g u %.9g: decode(enc(g)) %.17g, "
                          "decode(enc(-g)) %.17g\n",
                          zo_codec_name(kind), scales[s], g, (double)u, p, n);
        }
      }
    }
  }
  if (bad)
    print_message("%s: %zu of %zu (g, u) pairs not sign-symmetric\n",
                  zo_codec_name(kind), bad, total);
  assert_int_equal(bad, 0);
}

static void test_sign_symmetry_log(void **state)
{
  (void)state;
  sign_symmetry(ZO_CODEC_LOG);
}

static void test_sign_symmetry_linear(void **state)
{
  (void)state;
  sign_symmetry(ZO_CODEC_LINEAR);
}

static void test_sign_symmetry_none(void **state)
{
  (void)state;
  sign_symmetry(ZO_CODEC_NONE);
}

/* ---- the levels --------------------------------------------------------- */

static void test_log_levels(void **state)
{
  (void)state;
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec c;
    zo_codec_init(&c, ZO_CODEC_LOG, scales[s]);
    double prev = 0.0;
    for (int m = 1; m <= 127; m++) {
      uint8_t pos = (uint8_t)m, neg = (uint8_t)(0x80 | m);
      double v = zo_codec_decode(&c, &pos);
      assert_rel(v, log_level_ref(m, scales[s]), 1e-12);
      assert_true(zo_codec_decode(&c, &neg) == -v);
      assert_true(v > prev); /* strictly increasing in m */
      prev = v;
      /* one octave down is exactly half */
      if (m > 8) {
        uint8_t lower = (uint8_t)(m - 8);
        assert_true(zo_codec_decode(&c, &lower) == ldexp(v, -1));
      }
      assert_int_equal(zo_codec_is_max(&c, &pos), m == 127);
      assert_int_equal(zo_codec_is_max(&c, &neg), m == 127);
    }
  }
  /* At scale 1, the code at 96 is exactly 1 and each 8 codes is exactly x2. */
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LOG, 1.0);
  for (int m = 0; m <= 120; m += 8) {
    uint8_t b = (uint8_t)m;
    if (m == 0)
      continue;
    assert_true(zo_codec_decode(&c, &b) == ldexp(1.0, (m - 96) / 8));
  }
  /* The levels of one octave are 2^(j/8) correctly rounded, to the bit, so
   * every machine decodes the same values. */
  static const double frac[8] = {0x1.0000000000000p+0, 0x1.172b83c7d517bp+0,
                                 0x1.306fe0a31b715p+0, 0x1.4bfdad5362a27p+0,
                                 0x1.6a09e667f3bcdp+0, 0x1.8ace5422aa0dbp+0,
                                 0x1.ae89f995ad3adp+0, 0x1.d5818dcfba487p+0};
  for (int m = 1; m <= 127; m++) {
    uint8_t b = (uint8_t)m;
    int k = m - 96, q = (k + 96) / 8 - 12; /* floor(k / 8) */
    assert_true(zo_codec_decode(&c, &b) == ldexp(frac[k - 8 * q], q));
  }
  for (int j = 0; j < 8; j++)
    assert_rel(frac[j], pow(2.0, j / 8.0), 3e-16);
  uint8_t smallest = 1, largest = 127;
  assert_rel(zo_codec_decode(&c, &smallest), pow(2.0, -11.875), 1e-15);
  assert_rel(zo_codec_decode(&c, &largest), pow(2.0, 3.875), 1e-15);
}

static void test_linear_levels(void **state)
{
  (void)state;
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec c;
    zo_codec_init(&c, ZO_CODEC_LINEAR, scales[s]);
    double prev = -INFINITY;
    for (int q = -127; q <= 127; q++) {
      int8_t qi = (int8_t)q;
      uint8_t b;
      memcpy(&b, &qi, 1);
      double v = zo_codec_decode(&c, &b);
      if (q == 0)
        assert_true(v == 0.0);
      else
        assert_rel(v, lin_level_ref(q, scales[s]), 1e-12);
      assert_true(v > prev);
      prev = v;
      assert_int_equal(zo_codec_is_max(&c, &b) != 0, q == 127 || q == -127);
    }
    /* 0x80 is never produced; it reads as the clip value -127. */
    uint8_t m128 = 0x80, m127 = 0x81;
    assert_true(zo_codec_decode(&c, &m128) == zo_codec_decode(&c, &m127));
  }
}

/* A value equal to a level encodes to that level for any u. */
static void test_levels_are_fixed_points(void **state)
{
  (void)state;
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec lg, ln;
    zo_codec_init(&lg, ZO_CODEC_LOG, scales[s]);
    zo_codec_init(&ln, ZO_CODEC_LINEAR, scales[s]);
    for (int m = 1; m <= 127; m++) {
      for (int sign = 0; sign < 2; sign++) {
        uint8_t b = (uint8_t)(sign ? 0x80 | m : m);
        double v = zo_codec_decode(&lg, &b);
        for (int k = 0; k < NSOME_U; k++) {
          uint8_t got = enc1(&lg, v, some_u(k));
          if (got != b)
            print_message("log scale %g code 0x%02x u %.9g -> 0x%02x\n", scales[s],
                          b, (double)some_u(k), got);
          assert_int_equal(got, b);
        }
      }
    }
    for (int q = -127; q <= 127; q++) {
      int8_t qi = (int8_t)q;
      uint8_t b;
      memcpy(&b, &qi, 1);
      double v = zo_codec_decode(&ln, &b);
      for (int k = 0; k < NSOME_U; k++) {
        uint8_t got = enc1(&ln, v, some_u(k));
        if (got != b)
          print_message("linear scale %g q %d u %.9g -> 0x%02x\n", scales[s], q,
                        (double)some_u(k), got);
        assert_int_equal(got, b);
      }
    }
  }
}

/* ---- stochastic rounding ------------------------------------------------ */

static int log_mag(uint8_t b)
{
  return b & 0x7F;
}

static int lin_q(uint8_t b)
{
  int8_t q;
  memcpy(&q, &b, 1);
  return q;
}

/* For g inside the range: the mean over a uniform grid of u is g within 1e-3
 * relative, and the outcomes are the two adjacent levels around g. */
static void unbiased(enum zo_codec_kind kind, double scale, double g)
{
  zo_codec c;
  zo_codec_init(&c, kind, scale);
  double sum = 0.0, lo = INFINITY, hi = -INFINITY;
  uint8_t blo = 0, bhi = 0;
  for (int k = 0; k < NU; k++) {
    float u = (float)((k + 0.5) / NU);
    uint8_t b[ZO_CODEC_MAX_WIDTH] = {0};
    zo_codec_encode(&c, g, u, b);
    double d = zo_codec_decode(&c, b);
    sum += d;
    if (d < lo) {
      lo = d;
      blo = b[0];
    }
    if (d > hi) {
      hi = d;
      bhi = b[0];
    }
  }
  double mean = sum / NU;
  if (!(fabs(mean - g) <= 1e-3 * fabs(g)))
    print_message("%s scale %g g %.17g: mean %.17g\n", zo_codec_name(kind), scale, g,
                  mean);
  assert_true(fabs(mean - g) <= 1e-3 * fabs(g));
  assert_true(lo < hi); /* g is not on a level here: two outcomes */
  assert_true(lo < g && g < hi);
  if (kind == ZO_CODEC_LOG) {
    /* same sign as g (or zero below the smallest level), adjacent magnitudes */
    int mlo = log_mag(blo), mhi = log_mag(bhi);
    if (g > 0) {
      assert_int_equal(mhi, mlo + 1);
      assert_int_equal(bhi & 0x80, 0);
      if (mlo == 0)
        assert_int_equal(blo, 0);
      else
        assert_int_equal(blo & 0x80, 0);
    } else {
      assert_int_equal(mlo, mhi + 1);
      assert_int_equal(blo & 0x80, 0x80);
    }
  } else {
    assert_int_equal(lin_q(bhi), lin_q(blo) + 1);
  }
}

static void test_unbiased_log(void **state)
{
  (void)state;
  /* smallest level: 2^-11.875 = 2.66e-4; largest: 2^3.875 = 14.67 */
  static const double rel[] = {1e-4, 2e-4, 0.013, 0.0333, 0.3, 0.7, 1.05,
                               3.3, 10.0, 14.0};
  for (size_t s = 0; s < NSCALES; s++)
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      unbiased(ZO_CODEC_LOG, scales[s], rel[i] * scales[s]);
      unbiased(ZO_CODEC_LOG, scales[s], -rel[i] * scales[s]);
    }
}

static void test_unbiased_linear(void **state)
{
  (void)state;
  /* step 6/127 = 0.0472; clip 6 */
  static const double rel[] = {0.013, 0.03, 0.1, 0.7, 1.0, 3.3, 5.0, 5.99};
  for (size_t s = 0; s < NSCALES; s++)
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
      unbiased(ZO_CODEC_LINEAR, scales[s], rel[i] * scales[s]);
      unbiased(ZO_CODEC_LINEAR, scales[s], -rel[i] * scales[s]);
    }
}

/* The probability of rounding up is the fractional position of g between its
 * two levels: u just below it rounds up, u just above it rounds down. */
static void test_rounding_threshold(void **state)
{
  (void)state;
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LINEAR, 127.0 / 6.0); /* levels at the integers */
  assert_int_equal(lin_q(enc1(&c, 10.25, 0.2f)), 11);
  assert_int_equal(lin_q(enc1(&c, 10.25, 0.3f)), 10);
  assert_int_equal(lin_q(enc1(&c, 10.75, 0.7f)), 11);
  assert_int_equal(lin_q(enc1(&c, 10.75, 0.8f)), 10);

  zo_codec_init(&c, ZO_CODEC_LOG, 1.0); /* level(96) = 1, level(104) = 2 */
  uint8_t l96 = 96, l97 = 97;
  double a = zo_codec_decode(&c, &l96), b = zo_codec_decode(&c, &l97);
  double g = a + 0.25 * (b - a);
  assert_int_equal(enc1(&c, g, 0.2f), 97);
  assert_int_equal(enc1(&c, g, 0.3f), 96);
  assert_int_equal(enc1(&c, -g, 0.2f), 0x80 | 97);
  assert_int_equal(enc1(&c, -g, 0.3f), 0x80 | 96);
}

/* ---- clipping ----------------------------------------------------------- */

static void test_clipping(void **state)
{
  (void)state;
  static const double huge[] = {20.0, 100.0, 1e6, 1e300, DBL_MAX};
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec lg, ln;
    zo_codec_init(&lg, ZO_CODEC_LOG, scales[s]);
    zo_codec_init(&ln, ZO_CODEC_LINEAR, scales[s]);
    const double lmax = scales[s] * pow(2.0, 31.0 / 8.0), nmax = 6.0 * scales[s];
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
      double g = huge[i] < 1e200 ? huge[i] * scales[s] : huge[i];
      for (int k = 0; k < NSOME_U; k++) {
        uint8_t b;
        zo_codec_encode(&lg, g, some_u(k), &b);
        assert_int_equal(b, 127);
        assert_rel(zo_codec_decode(&lg, &b), lmax, 1e-12);
        assert_true(zo_codec_is_max(&lg, &b));
        zo_codec_encode(&lg, -g, some_u(k), &b);
        assert_int_equal(b, 0xFF);
        assert_rel(zo_codec_decode(&lg, &b), -lmax, 1e-12);
        assert_true(zo_codec_is_max(&lg, &b));

        zo_codec_encode(&ln, g, some_u(k), &b);
        assert_int_equal(lin_q(b), 127);
        assert_rel(zo_codec_decode(&ln, &b), nmax, 1e-12);
        assert_true(zo_codec_is_max(&ln, &b));
        zo_codec_encode(&ln, -g, some_u(k), &b);
        assert_int_equal(lin_q(b), -127);
        assert_rel(zo_codec_decode(&ln, &b), -nmax, 1e-12);
        assert_true(zo_codec_is_max(&ln, &b));
      }
    }
    /* Just above the top level / the clip: still the top, never beyond. */
    assert_int_equal(enc1(&lg, lmax * 1.01, 0.999f), 127);
    assert_int_equal(lin_q(enc1(&ln, nmax * 1.01, 0.999f)), 127);
    /* Mid-range values are not the max, with any u. */
    static const double mid[] = {0.001, 0.1, 0.5, 1.0, 2.0, 4.0};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++) {
      for (int k = 0; k < NSOME_U; k++) {
        for (int sign = -1; sign <= 1; sign += 2) {
          uint8_t b;
          zo_codec_encode(&lg, sign * mid[i] * scales[s], some_u(k), &b);
          assert_false(zo_codec_is_max(&lg, &b));
          zo_codec_encode(&ln, sign * mid[i] * scales[s], some_u(k), &b);
          assert_false(zo_codec_is_max(&ln, &b));
        }
      }
    }
  }
  zo_codec none;
  zo_codec_init(&none, ZO_CODEC_NONE, 1.0);
  uint8_t b[4];
  zo_codec_encode(&none, 1e30, 0.5f, b);
  assert_false(zo_codec_is_max(&none, b));
}

/* Linear never writes 0x80 (-128). */
static void test_linear_never_minus128(void **state)
{
  (void)state;
  for (size_t s = 0; s < NSCALES; s++) {
    zo_codec c;
    zo_codec_init(&c, ZO_CODEC_LINEAR, scales[s]);
    for (int i = -20000; i <= 20000; i++) {
      double g = (double)i * 0.00037 * scales[s]; /* -7.4 S .. 7.4 S */
      for (int k = 0; k < NSOME_U; k++) {
        assert_int_not_equal(enc1(&c, g, some_u(k)), 0x80);
      }
    }
    static const double edge[] = {-6.0, -5.999999, -6.000001, -127.0, -1e300,
                                  -DBL_MAX};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++)
      for (int k = 0; k < NSOME_U; k++) {
        double g = edge[i] > -1e200 ? edge[i] * scales[s] : edge[i];
        uint8_t b = enc1(&c, g, some_u(k));
        assert_int_not_equal(b, 0x80);
        assert_true(lin_q(b) >= -127 && lin_q(b) <= -126);
      }
  }
}

/* ---- none --------------------------------------------------------------- */

static void test_none_roundtrip(void **state)
{
  (void)state;
  static const float vals[] = {1.0f,     -1.0f,   0.5f,    -0.25f,   3.14159265f,
                               1e-3f,    -7.5e4f, FLT_MAX, -FLT_MAX, FLT_MIN,
                               1e-45f, /* denormal */      123456.789f};
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_NONE, 1.0);
  for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
    for (int k = 0; k < NSOME_U; k++) {
      uint8_t b[ZO_CODEC_MAX_WIDTH];
      zo_codec_encode(&c, (double)vals[i], some_u(k), b);
      assert_memory_equal(b, &vals[i], 4);
      assert_true(zo_codec_decode(&c, b) == (double)vals[i]);
    }
  }
  /* The scale plays no part; a double is rounded to float. */
  zo_codec_init(&c, ZO_CODEC_NONE, 1e-3);
  uint8_t b[4];
  zo_codec_encode(&c, 0.1, 0.5f, b);
  assert_true(zo_codec_decode(&c, b) == (double)0.1f);
  /* A non-finite float payload reads as 0. */
  float inf = INFINITY;
  memcpy(b, &inf, 4);
  assert_true(zo_codec_decode(&c, b) == 0.0);
}

/* ---- the scale rule ----------------------------------------------------- */

static double ema(const zo_codec *c, const uint8_t *p, size_t n, size_t w)
{
  double sum = 0.0;
  for (size_t i = 0; i < n; i++)
    sum += fabs(zo_codec_decode(c, p + i * w));
  return 0.9 * c->scale + 0.1 * (sum / (double)n);
}

static void end_step_rule(enum zo_codec_kind kind)
{
  enum { N = 200 };
  uint8_t p[N];
  zo_codec c, d;
  const double s0 = 0.37;
  const uint8_t maxcode = 127;
  /* a mid-range code (not max, not zero) */
  const uint8_t mid = kind == ZO_CODEC_LOG ? 90 : 40;

  /* more than 1% clipped (3 of 200): doubles */
  for (int i = 0; i < N; i++)
    p[i] = (uint8_t)(i % 2 ? mid : (0x80 | 5));
  p[10] = maxcode;
  p[50] = kind == ZO_CODEC_LOG ? 0xFF : 0x81; /* negative max */
  p[150] = maxcode;
  zo_codec_init(&c, kind, s0);
  zo_codec_end_step(&c, p, N);
  assert_true(c.scale == 2.0 * s0);

  /* exactly 1% clipped (2 of 200) is not more than 1%: the average rule */
  p[150] = mid;
  zo_codec_init(&c, kind, s0);
  double want = ema(&c, p, N, 1);
  zo_codec_end_step(&c, p, N);
  assert_true(c.scale == want);
  assert_true(c.scale != 2.0 * s0);

  /* a single payload, clipped: 1 of 1 */
  zo_codec_init(&c, kind, s0);
  zo_codec_end_step(&c, &maxcode, 1);
  assert_true(c.scale == 2.0 * s0);

  /* all zero: halves (log has two zero codes) */
  for (int i = 0; i < N; i++)
    p[i] = kind == ZO_CODEC_LOG && (i & 1) ? 0x80 : 0x00;
  zo_codec_init(&c, kind, s0);
  zo_codec_end_step(&c, p, N);
  assert_true(c.scale == 0.5 * s0);

  /* otherwise: 0.9 S + 0.1 mean |decoded|, to the bit */
  for (int i = 0; i < N; i++)
    p[i] = (uint8_t)(i % 7 == 0 ? 0 : ((i * 29) % 100 + 2) | (i & 8 ? 0x80 : 0));
  for (int i = 0; i < N; i++)
    assert_false(zo_codec_is_max(&c, &p[i]));
  zo_codec_init(&c, kind, s0);
  want = ema(&c, p, N, 1);
  double manual = 0.0;
  for (int i = 0; i < N; i++)
    manual += fabs(zo_codec_decode(&c, &p[i]));
  assert_rel(want, 0.9 * s0 + 0.1 * manual / N, 1e-15);
  zo_codec_end_step(&c, p, N);
  assert_true(c.scale == want);
  /* deterministic: the same inputs give the same bits */
  zo_codec_init(&d, kind, s0);
  zo_codec_end_step(&d, p, N);
  assert_memory_equal(&c.scale, &d.scale, sizeof(double));
  /* and a chain of steps too */
  for (int r = 0; r < 50; r++) {
    zo_codec_end_step(&c, p + (r % 10), N - 10);
    zo_codec_end_step(&d, p + (r % 10), N - 10);
  }
  assert_memory_equal(&c.scale, &d.scale, sizeof(double));
  assert_true(c.scale > 0.0 && isfinite(c.scale));

  /* n == 0: unchanged */
  zo_codec_init(&c, kind, s0);
  zo_codec_end_step(&c, p, 0);
  assert_true(c.scale == s0);
  zo_codec_end_step(&c, NULL, 0);
  assert_true(c.scale == s0);
}

static void test_end_step_log(void **state)
{
  (void)state;
  end_step_rule(ZO_CODEC_LOG);
}

static void test_end_step_linear(void **state)
{
  (void)state;
  end_step_rule(ZO_CODEC_LINEAR);
}

static void test_end_step_none(void **state)
{
  (void)state;
  zo_codec c;
  float v[3] = {1.0f, 1e30f, 0.0f};
  zo_codec_init(&c, ZO_CODEC_NONE, 0.5);
  zo_codec_end_step(&c, (const uint8_t *)v, 3);
  assert_true(c.scale == 0.5);
}

/* The sender's decoded values drive the scale the same way on every worker:
 * encoding a batch and updating twice from the same payloads agrees. */
static void test_end_step_from_encoded_batch(void **state)
{
  (void)state;
  enum { N = 64 };
  uint8_t p[N];
  zo_codec c;
  zo_codec_init(&c, ZO_CODEC_LOG, 1.0);
  for (int i = 0; i < N; i++)
    zo_codec_encode(&c, 0.5 * sin(i * 0.7), (float)((i + 0.5) / N), &p[i]);
  double want = ema(&c, p, N, 1);
  zo_codec_end_step(&c, p, N);
  assert_true(c.scale == want);
  assert_true(c.scale < 1.0 && c.scale > 0.9);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_width_and_names),
      cmocka_unit_test(test_zero_nonfinite_log),
      cmocka_unit_test(test_zero_nonfinite_linear),
      cmocka_unit_test(test_zero_nonfinite_none),
      cmocka_unit_test(test_sign_symmetry_log),
      cmocka_unit_test(test_sign_symmetry_linear),
      cmocka_unit_test(test_sign_symmetry_none),
      cmocka_unit_test(test_log_levels),
      cmocka_unit_test(test_linear_levels),
      cmocka_unit_test(test_levels_are_fixed_points),
      cmocka_unit_test(test_unbiased_log),
      cmocka_unit_test(test_unbiased_linear),
      cmocka_unit_test(test_rounding_threshold),
      cmocka_unit_test(test_clipping),
      cmocka_unit_test(test_linear_never_minus128),
      cmocka_unit_test(test_none_roundtrip),
      cmocka_unit_test(test_end_step_log),
      cmocka_unit_test(test_end_step_linear),
      cmocka_unit_test(test_end_step_none),
      cmocka_unit_test(test_end_step_from_encoded_batch),
  };
  return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
