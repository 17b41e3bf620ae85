/* rng: AVX-512F kernels. One zmm lane per Philox counter, 16 counters per
 * chunk, mirroring the scalar reference in rng_impl.h operation by operation
 * (the file must be built with -ffp-contract=off). */
#include "rng/rng_impl.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define T __attribute__((target("avx512f")))

/* Philox4x32-10, 16 counters (16*chunk + lane) per chunk. Each word is kept
 * in the low half of a 64-bit lane, counters 16*chunk + 0..7 in one register
 * and + 8..15 in another: _mm512_mul_epu32 then yields hi:lo of a round's
 * product in one instruction, a 32-bit swap within each 64-bit lane (a
 * shuffle, off the multiplier's port) brings hi down, and the high halves
 * (never read by the multiply, never stored) may hold anything. Words are
 * merged into registers of 16 at the end. One round of one 8-lane chain: */
T static inline void round8(__m512i c[4], __m512i k0, __m512i k1, __m512i m0, __m512i m1)
{
  __m512i p0 = _mm512_mul_epu32(c[0], m0);
  __m512i p1 = _mm512_mul_epu32(c[2], m1);
  c[0] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p1, _MM_PERM_CDAB), c[1], k0, 0x96);
  c[1] = p1;
  c[2] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p0, _MM_PERM_CDAB), c[3], k1, 0x96);
  c[3] = p0;
}

/* The round keys of a stream, broadcast once per kernel call. */
typedef struct keys16 {
  __m512i k[10][2];
} keys16;

T static void keys_init(const rng_stream *s, keys16 *ks)
{
  uint32_t k0 = (uint32_t)s->seed, k1 = (uint32_t)(s->seed >> 32);
  for (int r = 0; r < 10; r++) {
    if (r > 0) {
      k0 += PHILOX_W0;
      k1 += PHILOX_W1;
    }
    ks->k[r][0] = _mm512_set1_epi32((int)k0);
    ks->k[r][1] = _mm512_set1_epi32((int)k1);
  }
}

/* Philox on the counters of `nc` (1 or 2) consecutive chunks, as 2 * nc
 * independent 8-lane chains whose rounds interleave (one chain alone waits
 * on its multiplies' latency). w[4 * k + i] = word i of chunk + k. */
T static inline void philox_chunks(const rng_stream *s, const keys16 *ks, uint64_t chunk, int nc,
                                   __m512i w[8])
{
  const __m512i lane = _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7);
  const __m512i m0 = _mm512_set1_epi64(PHILOX_M0), m1 = _mm512_set1_epi64(PHILOX_M1);
  __m512i c[4][4];
#pragma GCC unroll 4
  for (int h = 0; h < 4; h++) {
    /* Word 0 is the low 32 bits of the counter; chunk * 16 is a multiple
     * of 16, so adding 0..15 never carries into word 1. */
    uint64_t b = (chunk + (uint64_t)(h >> 1)) * 16;
    c[h][0] = _mm512_add_epi64(_mm512_set1_epi64((long long)((uint32_t)b + 8u * (uint32_t)(h & 1))),
                               lane);
    c[h][1] = _mm512_set1_epi64((long long)(uint32_t)(b >> 32));
    c[h][2] = _mm512_set1_epi64((long long)s->step);
    c[h][3] = _mm512_set1_epi64((long long)s->stream);
  }
  const int nh = 2 * nc;
#pragma GCC unroll 10
  for (int r = 0; r < 10; r++) {
#pragma GCC unroll 4
    for (int h = 0; h < 4; h++)
      if (h < nh)
        round8(c[h], ks->k[r][0], ks->k[r][1], m0, m1);
  }
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int k = 0; k < nc; k++)
    for (int i = 0; i < 4; i++)
      w[4 * k + i] = _mm512_permutex2var_epi32(c[2 * k][i], even, c[2 * k + 1][i]);
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

T static inline void out16(float *dst, float *minus, const float *src, __m512 va, __m512 z)
{
  __m512 v = _mm512_mul_ps(va, z);
  if (minus) {
    __m512 x = _mm512_loadu_ps(src);
    _mm512_storeu_ps(dst, _mm512_add_ps(x, v));
    _mm512_storeu_ps(minus, _mm512_sub_ps(x, v));
    return;
  }
  if (src)
    v = _mm512_add_ps(_mm512_loadu_ps(src), v);
  _mm512_storeu_ps(dst, v);
}

T void rng_gauss_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                               size_t nchunks, float a, const float *src,
                               float *dst, float *minus)
{
  const __m512 va = F(a);
  keys16 ks;
  keys_init(s, &ks);
  for (size_t c = 0; c < nchunks; c += 2) {
    int nc = nchunks - c >= 2 ? 2 : 1;
    __m512i w[8];
    philox_chunks(s, &ks, chunk0 + c, nc, w);
    for (int k = 0; k < nc; k++) {
      __m512 z0, z1, z2, z3;
      size_t o = (c + (size_t)k) * RNG_GCHUNK;
      const float *sc = src ? src + o : NULL;
      float *dc = dst + o, *mc = minus ? minus + o : NULL;
      v_box_muller(w[4 * k], w[4 * k + 1], &z0, &z1);
      v_box_muller(w[4 * k + 2], w[4 * k + 3], &z2, &z3);
      out16(dc, mc, sc, va, z0);
      out16(dc + 16, mc ? mc + 16 : NULL, sc ? sc + 16 : NULL, va, z1);
      out16(dc + 32, mc ? mc + 32 : NULL, sc ? sc + 32 : NULL, va, z2);
      out16(dc + 48, mc ? mc + 48 : NULL, sc ? sc + 48 : NULL, va, z3);
    }
  }
}

T void rng_rade_chunks_avx512(const rng_stream *s, uint64_t chunk0,
                              size_t nchunks, float a, const float *src,
                              float *dst, float *minus)
{
  /* a * (+1) = a and a * (-1) = -a exactly, so select instead of multiply. */
  const __m512 pa = F(a), na = F(-a);
  keys16 ks;
  keys_init(s, &ks);
  for (size_t c = 0; c < nchunks; c++) {
    __m512i w[8];
    const float *sc = src ? src + c * RNG_RCHUNK : NULL;
    float *dc = dst + c * RNG_RCHUNK;
    philox_chunks(s, &ks, chunk0 + c, 1, w);
    for (unsigned j = 0; j < 128; j++) {
      __mmask16 neg =
          _mm512_test_epi32_mask(w[j / 32], _mm512_set1_epi32((int)(1u << (j % 32))));
      __m512 v = _mm512_mask_blend_ps(neg, pa, na);
      if (minus) {
        __m512 x = _mm512_loadu_ps(sc + 16 * j);
        _mm512_storeu_ps(minus + c * RNG_RCHUNK + 16 * j, _mm512_sub_ps(x, v));
        v = _mm512_add_ps(x, v);
      } else if (sc) {
        v = _mm512_add_ps(_mm512_loadu_ps(sc + 16 * j), v);
      }
      _mm512_storeu_ps(dc + 16 * j, v);
    }
  }
}

#endif
