/* rng: AVX-512F kernels. One zmm lane per Philox counter, 16 counters per
 * chunk, mirroring the scalar reference in rng_impl.h operation by operation
 * (the file must be built with -ffp-contract=off). */
#include "rng/rng_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T __attribute__((target("avx512f")))

T static inline void mulhilo(__m512i a, __m512i m, __m512i *hi, __m512i *lo)
{
  __m512i pe = _mm512_mul_epu32(a, m);
  __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), m);
  *lo = _mm512_mask_blend_epi32(0xAAAA, pe, _mm512_slli_epi64(po, 32));
  *hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
}

/* Philox4x32-10 on the 16 counters 16*chunk + lane. */
T static void philox16(const rng_stream *s, uint64_t chunk, __m512i w[4])
{
  uint64_t b = chunk * 16;
  const __m512i m0 = _mm512_set1_epi32((int)PHILOX_M0);
  const __m512i m1 = _mm512_set1_epi32((int)PHILOX_M1);
  __m512i c0 = _mm512_add_epi32(
      _mm512_set1_epi32((int)(uint32_t)b),
      _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i c1 = _mm512_set1_epi32((int)(uint32_t)(b >> 32));
  __m512i c2 = _mm512_set1_epi32((int)s->step);
  __m512i c3 = _mm512_set1_epi32((int)s->stream);
  uint32_t k0 = (uint32_t)s->seed, k1 = (uint32_t)(s->seed >> 32);
  for (int r = 0; r < 10; r++) {
    __m512i hi0, lo0, hi1, lo1;
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    mulhilo(c0, m0, &hi0, &lo0);
    mulhilo(c2, m1, &hi1, &lo1);
    c0 = _mm512_ternarylogic_epi32(hi1, c1, _mm512_set1_epi32((int)k0), 0x96);
    c1 = lo1;
    c2 = _mm512_ternarylogic_epi32(hi0, c3, _mm512_set1_epi32((int)k1), 0x96);
    c3 = lo0;
  }
  w[0] = c0;
  w[1] = c1;
  w[2] = c2;
  w[3] = c3;
}

#define F(x) _mm512_set1_ps(x)

T static inline __m512 v_logf(__m512 x)
{
  __m512i b = _mm512_castps_si512(x);
  __m512i e = _mm512_sub_epi32(_mm512_srli_epi32(b, 23), _mm512_set1_epi32(127));
  __m512 m = _mm512_castsi512_ps(
      _mm512_or_si512(_mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFF)),
                      _mm512_set1_epi32(0x3F800000)));
  __mmask16 big = _mm512_cmp_ps_mask(m, F(RNG_SQRT2), _CMP_GT_OQ);
  m = _mm512_mask_mul_ps(m, big, m, F(0.5f));
  e = _mm512_mask_add_epi32(e, big, e, _mm512_set1_epi32(1));
  __m512 f = _mm512_sub_ps(m, F(1.0f));
  __m512 s = _mm512_div_ps(f, _mm512_add_ps(F(2.0f), f));
  __m512 s2 = _mm512_mul_ps(s, s);
  __m512 p = F(RNG_L9);
  p = _mm512_add_ps(_mm512_mul_ps(p, s2), F(RNG_L7));
  p = _mm512_add_ps(_mm512_mul_ps(p, s2), F(RNG_L5));
  p = _mm512_add_ps(_mm512_mul_ps(p, s2), F(RNG_L3));
  p = _mm512_add_ps(_mm512_mul_ps(p, s2), F(1.0f));
  __m512 lnm = _mm512_mul_ps(_mm512_add_ps(s, s), p);
  __m512 ef = _mm512_cvtepi32_ps(e);
  return _mm512_add_ps(_mm512_mul_ps(ef, F(RNG_LN2_HI)),
                       _mm512_add_ps(lnm, _mm512_mul_ps(ef, F(RNG_LN2_LO))));
}

T static inline __m512 flip(__m512 x, __mmask16 k)
{
  __m512i xi = _mm512_castps_si512(x);
  return _mm512_castsi512_ps(
      _mm512_mask_xor_epi32(xi, k, xi, _mm512_set1_epi32((int)0x80000000u)));
}

T static inline void v_box_muller(__m512i w0, __m512i w1, __m512 *zc, __m512 *zs)
{
  const __m512i one = _mm512_set1_epi32(1);
  __m512 u1 = _mm512_mul_ps(
      _mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_srli_epi32(w0, 8), one)),
      F(0x1p-24f));
  __m512 u2 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(w1, 8)),
                            F(0x1p-24f));
  __m512 r = _mm512_sqrt_ps(_mm512_mul_ps(F(-2.0f), v_logf(u1)));

  __m512 x = _mm512_mul_ps(u2, F(8.0f));
  __m512i o = _mm512_cvttps_epi32(x);
  __m512 rr = _mm512_sub_ps(x, _mm512_cvtepi32_ps(o));
  __mmask16 odd = _mm512_test_epi32_mask(o, one);
  rr = _mm512_mask_sub_ps(rr, odd, F(1.0f), rr);
  __m512 ph = _mm512_mul_ps(rr, F(RNG_PI_4));
  __m512 p2 = _mm512_mul_ps(ph, ph);
  __m512 sp = F(RNG_S9);
  sp = _mm512_add_ps(_mm512_mul_ps(sp, p2), F(RNG_S7));
  sp = _mm512_add_ps(_mm512_mul_ps(sp, p2), F(RNG_S5));
  sp = _mm512_add_ps(_mm512_mul_ps(sp, p2), F(RNG_S3));
  sp = _mm512_add_ps(_mm512_mul_ps(sp, p2), F(1.0f));
  __m512 sn = _mm512_mul_ps(ph, sp);
  __m512 cp = F(RNG_C10);
  cp = _mm512_add_ps(_mm512_mul_ps(cp, p2), F(RNG_C8));
  cp = _mm512_add_ps(_mm512_mul_ps(cp, p2), F(RNG_C6));
  cp = _mm512_add_ps(_mm512_mul_ps(cp, p2), F(RNG_C4));
  cp = _mm512_add_ps(_mm512_mul_ps(cp, p2), F(RNG_C2));
  __m512 cs = _mm512_add_ps(_mm512_mul_ps(cp, p2), F(1.0f));

  __mmask16 swap =
      _mm512_test_epi32_mask(_mm512_add_epi32(o, one), _mm512_set1_epi32(2));
  __mmask16 sneg = _mm512_test_epi32_mask(o, _mm512_set1_epi32(4));
  __mmask16 cneg = _mm512_test_epi32_mask(
      _mm512_add_epi32(o, _mm512_set1_epi32(2)), _mm512_set1_epi32(4));
  __m512 sv = flip(_mm512_mask_blend_ps(swap, sn, cs), sneg);
  __m512 cv = flip(_mm512_mask_blend_ps(swap, cs, sn), cneg);
  *zc = _mm512_mul_ps(r, cv);
  *zs = _mm512_mul_ps(r, sv);
}

T static inline void out16(float *dst, const float *src, __m512 va, __m512 z)
{
  __m512 v = _mm512_mul_ps(va, z);
  if (src)
    v = _mm512_add_ps(_mm512_loadu_ps(src), v);
  _mm512_storeu_ps(dst, v);
}

T void rng_gauss_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                               size_t nchunks, float a, const float *src,
                               float *dst)
{
  const __m512 va = F(a);
  for (size_t c = 0; c < nchunks; c++) {
    __m512i w[4];
    __m512 z0, z1, z2, z3;
    const float *sc = src ? src + c * RNG_GCHUNK : NULL;
    float *dc = dst + c * RNG_GCHUNK;
    philox16(s, chunk0 + c, w);
    v_box_muller(w[0], w[1], &z0, &z1);
    v_box_muller(w[2], w[3], &z2, &z3);
    out16(dc, sc, va, z0);
    out16(dc + 16, sc ? sc + 16 : NULL, va, z1);
    out16(dc + 32, sc ? sc + 32 : NULL, va, z2);
    out16(dc + 48, sc ? sc + 48 : NULL, va, z3);
  }
}

T void rng_rade_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                              size_t nchunks, float a, const float *src,
                              float *dst)
{
  /* a * (+1) = a and a * (-1) = -a exactly, so select instead of multiply. */
  const __m512 pa = F(a), na = F(-a);
  for (size_t c = 0; c < nchunks; c++) {
    __m512i w[4];
    const float *sc = src ? src + c * RNG_RCHUNK : NULL;
    float *dc = dst + c * RNG_RCHUNK;
    philox16(s, chunk0 + c, w);
    for (unsigned j = 0; j < 128; j++) {
      __mmask16 neg =
          _mm512_test_epi32_mask(w[j / 32], _mm512_set1_epi32((int)(1u << (j % 32))));
      __m512 v = _mm512_mask_blend_ps(neg, pa, na);
      if (sc)
        v = _mm512_add_ps(_mm512_loadu_ps(sc + 16 * j), v);
      _mm512_storeu_ps(dc + 16 * j, v);
    }
  }
}

#endif
