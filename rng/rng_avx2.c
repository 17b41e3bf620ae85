/* rng: AVX2 kernels. A chunk's 16 counters are processed as two halves of 8
 * lanes; every operation mirrors the scalar reference in rng_impl.h (the file
 * must be built with -ffp-contract=off). */
#include "rng/rng_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T __attribute__((target("avx2")))
#define F(x) _mm256_set1_ps(x)
#define I(x) _mm256_set1_epi32((int)(x))

T static inline void mulhilo(__m256i a, __m256i m, __m256i *hi, __m256i *lo)
{
  __m256i pe = _mm256_mul_epu32(a, m);
  __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), m);
  *lo = _mm256_blend_epi32(pe, _mm256_slli_epi64(po, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
}

/* Philox4x32-10 on the 8 counters 16*chunk + 8*half + lane. */
T static void philox8(const rng_stream *s, uint64_t chunk, unsigned half,
                      __m256i w[4])
{
  uint64_t b = chunk * 16 + 8 * half;
  __m256i c0 = _mm256_add_epi32(I((uint32_t)b),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i c1 = I((uint32_t)(b >> 32));
  __m256i c2 = I(s->step);
  __m256i c3 = I(s->stream);
  uint32_t k0 = (uint32_t)s->seed, k1 = (uint32_t)(s->seed >> 32);
  for (int r = 0; r < 10; r++) {
    __m256i hi0, lo0, hi1, lo1;
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    mulhilo(c0, I(PHILOX_M0), &hi0, &lo0);
    mulhilo(c2, I(PHILOX_M1), &hi1, &lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), I(k0));
    c1 = lo1;
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), I(k1));
    c3 = lo0;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

T static inline __m256 v_logf(__m256 x)
{
  __m256i b = _mm256_castps_si256(x);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(b, 23), I(127));
  __m256 m = _mm256_castsi256_ps(
      _mm256_or_si256(_mm256_and_si256(b, I(0x7FFFFF)), I(0x3F800000)));
  __m256 big = _mm256_cmp_ps(m, F(RNG_SQRT2), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, F(0.5f)), big);
  e = _mm256_sub_epi32(e, _mm256_castps_si256(big)); /* true lanes are -1 */
  __m256 f = _mm256_sub_ps(m, F(1.0f));
  __m256 s = _mm256_div_ps(f, _mm256_add_ps(F(2.0f), f));
  __m256 s2 = _mm256_mul_ps(s, s);
  __m256 p = F(RNG_L9);
  p = _mm256_add_ps(_mm256_mul_ps(p, s2), F(RNG_L7));
  p = _mm256_add_ps(_mm256_mul_ps(p, s2), F(RNG_L5));
  p = _mm256_add_ps(_mm256_mul_ps(p, s2), F(RNG_L3));
  p = _mm256_add_ps(_mm256_mul_ps(p, s2), F(1.0f));
  __m256 lnm = _mm256_mul_ps(_mm256_add_ps(s, s), p);
  __m256 ef = _mm256_cvtepi32_ps(e);
  return _mm256_add_ps(_mm256_mul_ps(ef, F(RNG_LN2_HI)),
                       _mm256_add_ps(lnm, _mm256_mul_ps(ef, F(RNG_LN2_LO))));
}

/* Lanes where (x & bit) != 0, as an all-ones mask. */
T static inline __m256 test(__m256i x, uint32_t bit)
{
  return _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_and_si256(x, I(bit)), I(bit)));
}

T static inline __m256 flip(__m256 x, __m256 mask)
{
  return _mm256_xor_ps(x, _mm256_and_ps(mask, _mm256_castsi256_ps(I(0x80000000u))));
}

T static inline void v_box_muller(__m256i w0, __m256i w1, __m256 *zc, __m256 *zs)
{
  __m256 u1 = _mm256_mul_ps(
      _mm256_cvtepi32_ps(_mm256_add_epi32(_mm256_srli_epi32(w0, 8), I(1))),
      F(0x1p-24f));
  __m256 u2 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(w1, 8)), F(0x1p-24f));
  __m256 r = _mm256_sqrt_ps(_mm256_mul_ps(F(-2.0f), v_logf(u1)));

  __m256 x = _mm256_mul_ps(u2, F(8.0f));
  __m256i o = _mm256_cvttps_epi32(x);
  __m256 rr = _mm256_sub_ps(x, _mm256_cvtepi32_ps(o));
  rr = _mm256_blendv_ps(rr, _mm256_sub_ps(F(1.0f), rr), test(o, 1));
  __m256 ph = _mm256_mul_ps(rr, F(RNG_PI_4));
  __m256 p2 = _mm256_mul_ps(ph, ph);
  __m256 sp = F(RNG_S9);
  sp = _mm256_add_ps(_mm256_mul_ps(sp, p2), F(RNG_S7));
  sp = _mm256_add_ps(_mm256_mul_ps(sp, p2), F(RNG_S5));
  sp = _mm256_add_ps(_mm256_mul_ps(sp, p2), F(RNG_S3));
  sp = _mm256_add_ps(_mm256_mul_ps(sp, p2), F(1.0f));
  __m256 sn = _mm256_mul_ps(ph, sp);
  __m256 cp = F(RNG_C10);
  cp = _mm256_add_ps(_mm256_mul_ps(cp, p2), F(RNG_C8));
  cp = _mm256_add_ps(_mm256_mul_ps(cp, p2), F(RNG_C6));
  cp = _mm256_add_ps(_mm256_mul_ps(cp, p2), F(RNG_C4));
  cp = _mm256_add_ps(_mm256_mul_ps(cp, p2), F(RNG_C2));
  __m256 cs = _mm256_add_ps(_mm256_mul_ps(cp, p2), F(1.0f));

  __m256 swap = test(_mm256_add_epi32(o, I(1)), 2);
  __m256 sv = flip(_mm256_blendv_ps(sn, cs, swap), test(o, 4));
  __m256 cv = flip(_mm256_blendv_ps(cs, sn, swap), test(_mm256_add_epi32(o, I(2)), 4));
  *zc = _mm256_mul_ps(r, cv);
  *zs = _mm256_mul_ps(r, sv);
}

T static inline void out8(float *dst, float *minus, const float *src, __m256 va, __m256 z)
{
  __m256 v = _mm256_mul_ps(va, z);
  if (minus) {
    __m256 x = _mm256_loadu_ps(src);
    _mm256_storeu_ps(dst, _mm256_add_ps(x, v));
    _mm256_storeu_ps(minus, _mm256_sub_ps(x, v));
    return;
  }
  if (src)
    v = _mm256_add_ps(_mm256_loadu_ps(src), v);
  _mm256_storeu_ps(dst, v);
}

T void rng_gauss_chunks_avx2(const rng_stream *s, uint64_t chunk0, size_t nchunks,
                             float a, const float *src, float *dst, float *minus)
{
  const __m256 va = F(a);
  for (size_t c = 0; c < nchunks; c++) {
    for (unsigned h = 0; h < 2; h++) {
      __m256i w[4];
      __m256 z[4];
      philox8(s, chunk0 + c, h, w);
      v_box_muller(w[0], w[1], &z[0], &z[1]);
      v_box_muller(w[2], w[3], &z[2], &z[3]);
      for (unsigned g = 0; g < 4; g++) {
        size_t off = c * RNG_GCHUNK + 16 * g + 8 * h;
        out8(dst + off, minus ? minus + off : NULL, src ? src + off : NULL, va, z[g]);
      }
    }
  }
}

T void rng_rade_chunks_avx2(const rng_stream *s, uint64_t chunk0, size_t nchunks,
                            float a, const float *src, float *dst, float *minus)
{
  const __m256 pa = F(a), na = F(-a);
  for (size_t c = 0; c < nchunks; c++) {
    for (unsigned h = 0; h < 2; h++) {
      __m256i w[4];
      philox8(s, chunk0 + c, h, w);
      for (unsigned j = 0; j < 128; j++) {
        size_t off = c * RNG_RCHUNK + 16 * j + 8 * h;
        __m256 v = _mm256_blendv_ps(pa, na, test(w[j / 32], 1u << (j % 32)));
        if (minus) {
          __m256 x = _mm256_loadu_ps(src + off);
          _mm256_storeu_ps(minus + off, _mm256_sub_ps(x, v));
          v = _mm256_add_ps(x, v);
        } else if (src) {
          v = _mm256_add_ps(_mm256_loadu_ps(src + off), v);
        }
        _mm256_storeu_ps(dst + off, v);
      }
    }
  }
}

#endif
