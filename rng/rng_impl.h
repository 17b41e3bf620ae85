/* Internal to rng/: the scalar reference of every operation, written once,
 * and the kernel interface the vector paths implement.
 *
 * Bit-exactness contract: the vector paths perform exactly the same IEEE
 * single-precision operations, in the same order, as the scalar functions
 * below (add, sub, mul, div, sqrt, exact int<->float conversions, sign flips,
 * selects). Files are compiled with -ffp-contract=off and never -ffast-math,
 * so no multiply-add is fused and no operation is reordered.
 */
#ifndef ZOTUNE_RNG_IMPL_H
#define ZOTUNE_RNG_IMPL_H

#include <stdint.h>
#include <string.h>

#include "rng/rng.h"

/* Philox4x32 constants (Salmon et al. 2011; Random123 philox.h). */
#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

/* Elements per Philox-lane group: a Gaussian/uniform chunk is 16 counters x
 * 4 words = 64 elements; a Rademacher chunk is 16 counters x 128 bits. */
#define RNG_GCHUNK 64u
#define RNG_RCHUNK 2048u

/* Constants of the float approximations (docs/random-streams.md §4). */
#define RNG_SQRT2 0x1.6a09e6p+0f
#define RNG_LN2_HI 0x1.62e400p-1f /* 0.693145751953125: e*hi exact, |e| <= 24 */
#define RNG_LN2_LO 0x1.7f7d1cp-20f
#define RNG_L3 0x1.555556p-2f  /* 1/3 */
#define RNG_L5 0x1.99999ap-3f  /* 1/5 */
#define RNG_L7 0x1.24924ap-3f  /* 1/7 */
#define RNG_L9 0x1.c71c72p-4f  /* 1/9 */
#define RNG_PI_4 0x1.921fb6p-1f
#define RNG_S3 -0x1.555556p-3f /* -1/3! */
#define RNG_S5 0x1.111112p-7f  /* 1/5! */
#define RNG_S7 -0x1.a01a02p-13f /* -1/7! */
#define RNG_S9 0x1.71de3ap-19f /* 1/9! */
#define RNG_C2 -0x1p-1f        /* -1/2! */
#define RNG_C4 0x1.555556p-5f  /* 1/4! */
#define RNG_C6 -0x1.6c16c2p-10f /* -1/6! */
#define RNG_C8 0x1.a01a02p-16f /* 1/8! */
#define RNG_C10 -0x1.27e4fcp-22f /* -1/10! */

static inline void rng_philox_scalar(uint32_t c[4], uint32_t k0, uint32_t k1)
{
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    uint64_t p0 = (uint64_t)PHILOX_M0 * c[0];
    uint64_t p1 = (uint64_t)PHILOX_M1 * c[2];
    uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
    uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
    c[0] = hi1 ^ c[1] ^ k0;
    c[1] = lo1;
    c[2] = hi0 ^ c[3] ^ k1;
    c[3] = lo0;
  }
}

static inline float rng_f32_from_bits(uint32_t b)
{
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

static inline uint32_t rng_bits_from_f32(float f)
{
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

/* Natural log of x in [2^-24, 1] (a normal float). */
static inline float rng_logf(float x)
{
  uint32_t b = rng_bits_from_f32(x);
  int32_t e = (int32_t)(b >> 23) - 127;
  float m = rng_f32_from_bits((b & 0x7FFFFFu) | 0x3F800000u);
  if (m > RNG_SQRT2) {
    m = m * 0.5f;
    e = e + 1;
  }
  float f = m - 1.0f;
  float s = f / (2.0f + f);
  float s2 = s * s;
  float p = RNG_L9;
  p = p * s2 + RNG_L7;
  p = p * s2 + RNG_L5;
  p = p * s2 + RNG_L3;
  p = p * s2 + 1.0f;
  float lnm = (s + s) * p;
  float ef = (float)e;
  return ef * RNG_LN2_HI + (lnm + ef * RNG_LN2_LO);
}

/* sin and cos of 2*pi*u for u = k * 2^-24, k < 2^24 (octant reduction). */
static inline void rng_sincos_turn(float u, float *sn, float *cs)
{
  float x = u * 8.0f;
  int32_t o = (int32_t)x;
  float r = x - (float)o;
  if (o & 1)
    r = 1.0f - r;
  float ph = r * RNG_PI_4;
  float p2 = ph * ph;
  float sp = RNG_S9;
  sp = sp * p2 + RNG_S7;
  sp = sp * p2 + RNG_S5;
  sp = sp * p2 + RNG_S3;
  sp = sp * p2 + 1.0f;
  float s = ph * sp;
  float cp = RNG_C10;
  cp = cp * p2 + RNG_C8;
  cp = cp * p2 + RNG_C6;
  cp = cp * p2 + RNG_C4;
  cp = cp * p2 + RNG_C2;
  float c = cp * p2 + 1.0f;
  float sv = ((o + 1) & 2) ? c : s;
  float cv = ((o + 1) & 2) ? s : c;
  if (o & 4)
    sv = -sv;
  if ((o + 2) & 4)
    cv = -cv;
  *sn = sv;
  *cs = cv;
}

/* Box-Muller on two words: u1 in (0,1], u2 in [0,1). */
static inline void rng_box_muller(uint32_t w0, uint32_t w1, float *zc, float *zs)
{
  float u1 = (float)((w0 >> 8) + 1u) * 0x1p-24f;
  float u2 = (float)(w1 >> 8) * 0x1p-24f;
  float r = __builtin_sqrtf(-2.0f * rng_logf(u1));
  float s, c;
  rng_sincos_turn(u2, &s, &c);
  *zc = r * c;
  *zs = r * s;
}

static inline float rng_uniform_from_word(uint32_t w)
{
  return ((float)(w >> 8) + 0.5f) * 0x1p-24f;
}

/* A kernel fills whole chunks [chunk0, chunk0 + nchunks): for each element j
 * of them, dst[j] = src[j] + a * z[j] (src NULL: dst[j] = a * z[j]), and
 * when minus is given (src must be too) minus[j] = src[j] - a * z[j]; dst,
 * src and minus point at the first element of chunk0. */
typedef void (*rng_kernel)(const rng_stream *s, uint64_t chunk0, size_t nchunks,
                           float a, const float *src, float *dst, float *minus);

void rng_gauss_chunks_scalar(const rng_stream *s, uint64_t chunk0,
                             size_t nchunks, float a, const float *src,
                             float *dst, float *minus);
void rng_rade_chunks_scalar(const rng_stream *s, uint64_t chunk0,
                            size_t nchunks, float a, const float *src,
                            float *dst, float *minus);
#if defined(__x86_64__)
void rng_gauss_chunks_avx2(const rng_stream *s, uint64_t chunk0, size_t nchunks,
                           float a, const float *src, float *dst, float *minus);
void rng_rade_chunks_avx2(const rng_stream *s, uint64_t chunk0, size_t nchunks,
                          float a, const float *src, float *dst, float *minus);
void rng_gauss_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                             size_t nchunks, float a, const float *src,
                             float *dst, float *minus);
void rng_rade_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                            size_t nchunks, float a, const float *src,
                            float *dst, float *minus);
#endif

#endif
