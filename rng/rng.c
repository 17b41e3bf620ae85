/* rng: stream layout, scalar reference kernels, random access, dispatch.
 * The layout is specified in docs/random-streams.md; keep the two in step. */
#include "rng/rng.h"

#include <Random123/philox.h>

#include "rng/rng_impl.h"

uint32_t rng_stream_word(enum rng_purpose purpose, uint32_t slot, uint32_t dir)
{
  return ((uint32_t)purpose & 0xFu) << 28 | (slot & RNG_MAX_SLOT) << 12 |
         (dir & RNG_MAX_DIR);
}

rng_stream rng_make(uint64_t seed, uint32_t step, enum rng_purpose purpose,
                    uint32_t slot, uint32_t dir)
{
  rng_stream s = {seed, step, rng_stream_word(purpose, slot, dir)};
  return s;
}

/* The public primitive goes through Random123 itself; the inlined scalar
 * copy in rng_impl.h is checked against it by the tests. */
void rng_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
  philox4x32_ctr_t c = {{ctr[0], ctr[1], ctr[2], ctr[3]}};
  philox4x32_key_t k = {{key[0], key[1]}};
  philox4x32_ctr_t r = philox4x32(c, k);
  for (int i = 0; i < 4; i++)
    out[i] = r.v[i];
}

static void block_words(const rng_stream *s, uint64_t block, uint32_t w[4])
{
  w[0] = (uint32_t)block;
  w[1] = (uint32_t)(block >> 32);
  w[2] = s->step;
  w[3] = s->stream;
  rng_philox_scalar(w, (uint32_t)s->seed, (uint32_t)(s->seed >> 32));
}

/* Gaussian/uniform layout: element i lives in counter block
 * 16 * (i / 64) + i % 16, word (i / 16) % 4. */
uint32_t rng_u32_at(const rng_stream *s, uint64_t i)
{
  uint32_t w[4];
  block_words(s, (i / RNG_GCHUNK) * 16 + i % 16, w);
  return w[(i / 16) % 4];
}

float rng_at(enum rng_dist dist, const rng_stream *s, uint64_t i)
{
  uint32_t w[4];
  switch (dist) {
  case RNG_UNIFORM:
    return rng_uniform_from_word(rng_u32_at(s, i));
  case RNG_RADEMACHER: {
    uint64_t j = (i % RNG_RCHUNK) / 16; /* bit index 0..127 */
    block_words(s, (i / RNG_RCHUNK) * 16 + i % 16, w);
    return (w[j / 32] >> (j % 32)) & 1u ? -1.0f : 1.0f;
  }
  case RNG_GAUSSIAN:
  default: {
    unsigned group = (unsigned)((i / 16) % 4);
    float zc, zs;
    block_words(s, (i / RNG_GCHUNK) * 16 + i % 16, w);
    rng_box_muller(w[group & 2u], w[(group & 2u) + 1], &zc, &zs);
    return group & 1u ? zs : zc;
  }
  }
}

static inline void put(float *dst, float *minus, const float *src, size_t j, float a, float z)
{
  float v = a * z;
  dst[j] = src ? src[j] + v : v;
  if (minus)
    minus[j] = src[j] - v;
}

void rng_gauss_chunks_scalar(const rng_stream *s, uint64_t chunk0,
                             size_t nchunks, float a, const float *src,
                             float *dst, float *minus)
{
  for (size_t c = 0; c < nchunks; c++) {
    const float *sc = src ? src + c * RNG_GCHUNK : NULL;
    float *dc = dst + c * RNG_GCHUNK, *mc = minus ? minus + c * RNG_GCHUNK : NULL;
    for (unsigned l = 0; l < 16; l++) {
      uint32_t w[4];
      float z0, z1, z2, z3;
      block_words(s, (chunk0 + c) * 16 + l, w);
      rng_box_muller(w[0], w[1], &z0, &z1);
      rng_box_muller(w[2], w[3], &z2, &z3);
      put(dc, mc, sc, l, a, z0);
      put(dc, mc, sc, 16 + l, a, z1);
      put(dc, mc, sc, 32 + l, a, z2);
      put(dc, mc, sc, 48 + l, a, z3);
    }
  }
}

void rng_rade_chunks_scalar(const rng_stream *s, uint64_t chunk0,
                            size_t nchunks, float a, const float *src,
                            float *dst, float *minus)
{
  for (size_t c = 0; c < nchunks; c++) {
    const float *sc = src ? src + c * RNG_RCHUNK : NULL;
    float *dc = dst + c * RNG_RCHUNK, *mc = minus ? minus + c * RNG_RCHUNK : NULL;
    for (unsigned l = 0; l < 16; l++) {
      uint32_t w[4];
      block_words(s, (chunk0 + c) * 16 + l, w);
      for (unsigned j = 0; j < 128; j++)
        put(dc, mc, sc, 16 * j + l, a, (w[j / 32] >> (j % 32)) & 1u ? -1.0f : 1.0f);
    }
  }
}

/* ---- dispatch ---------------------------------------------------------- */

static enum rng_isa active_isa = RNG_ISA_AUTO;

static int cpu_has(enum rng_isa isa)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (isa == RNG_ISA_AVX512)
    return __builtin_cpu_supports("avx512f");
  if (isa == RNG_ISA_AVX2)
    return __builtin_cpu_supports("avx2");
#endif
  return isa == RNG_ISA_SCALAR;
}

int rng_set_isa(enum rng_isa isa)
{
  if (isa == RNG_ISA_AUTO) {
    isa = cpu_has(RNG_ISA_AVX512) ? RNG_ISA_AVX512
          : cpu_has(RNG_ISA_AVX2) ? RNG_ISA_AVX2
                                  : RNG_ISA_SCALAR;
  } else if (!cpu_has(isa)) {
    return -1;
  }
  active_isa = isa;
  return 0;
}

enum rng_isa rng_get_isa(void)
{
  if (active_isa == RNG_ISA_AUTO)
    rng_set_isa(RNG_ISA_AUTO);
  return active_isa;
}

const char *rng_isa_name(enum rng_isa isa)
{
  switch (isa) {
  case RNG_ISA_SCALAR:
    return "scalar";
  case RNG_ISA_AVX2:
    return "avx2";
  case RNG_ISA_AVX512:
    return "avx512";
  default:
    return "auto";
  }
}

int rng_isa_parse(const char *name, enum rng_isa *out)
{
  static const enum rng_isa all[] = {RNG_ISA_AUTO, RNG_ISA_SCALAR, RNG_ISA_AVX2,
                                     RNG_ISA_AVX512};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
    if (strcmp(name, rng_isa_name(all[i])) == 0) {
      *out = all[i];
      return 0;
    }
  }
  return -1;
}

static rng_kernel pick(enum rng_dist dist)
{
  enum rng_isa isa = rng_get_isa();
#if defined(__x86_64__)
  if (isa == RNG_ISA_AVX512)
    return dist == RNG_GAUSSIAN ? rng_gauss_chunks_avx512 : rng_rade_chunks_avx512;
  if (isa == RNG_ISA_AVX2)
    return dist == RNG_GAUSSIAN ? rng_gauss_chunks_avx2 : rng_rade_chunks_avx2;
#else
  (void)isa;
#endif
  return dist == RNG_GAUSSIAN ? rng_gauss_chunks_scalar : rng_rade_chunks_scalar;
}

/* ---- ranges ------------------------------------------------------------ */

/* A partial chunk: generate it whole into a scratch buffer (with the active
 * path; all paths give the same bits), use a slice. */
static void partial(enum rng_dist dist, const rng_stream *s, uint64_t chunk,
                    size_t off, size_t len, float a, const float *src,
                    float *dst, float *minus)
{
  float z[RNG_RCHUNK];
  pick(dist)(s, chunk, 1, 1.0f, NULL, z, NULL);
  /* 1.0f * z == z exactly, so this equals the whole-chunk kernels. */
  for (size_t k = 0; k < len; k++)
    put(dst, minus, src, k, a, z[off + k]);
}

/* rng_axpy, and rng_axpy_pm when minus is given. */
static void axpy2(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
                  float a, const float *src, float *dst, float *minus)
{
  const uint64_t csize = dist == RNG_GAUSSIAN ? RNG_GCHUNK : RNG_RCHUNK;
  uint64_t i = first, end = first + n;
  while (i < end) {
    uint64_t chunk = i / csize, off = i % csize;
    size_t done = (size_t)(i - first);
    const float *sp = src ? src + done : NULL;
    float *mp = minus ? minus + done : NULL;
    if (off == 0 && end - i >= csize) {
      size_t nch = (size_t)((end - i) / csize);
      pick(dist)(s, chunk, nch, a, sp, dst + done, mp);
      i += nch * csize;
    } else {
      size_t len = (size_t)(csize - off < end - i ? csize - off : end - i);
      partial(dist, s, chunk, (size_t)off, len, a, sp, dst + done, mp);
      i += len;
    }
  }
}

void rng_axpy(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
              float a, const float *src, float *dst)
{
  axpy2(dist, s, first, n, a, src, dst, NULL);
}

void rng_axpy_pm(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
                 float a, const float *src, float *plus, float *minus)
{
  /* The kernels form v = a * z once and store src + v and src - v; src - v
   * equals rng_axpy's src + (-a) * z bit for bit (IEEE negation is exact). */
  axpy2(dist, s, first, n, a, src, plus, minus);
}

void rng_axpy_mt(enum rng_dist dist, const rng_stream *s, uint64_t first,
                 size_t n, float a, const float *src, float *dst, int threads)
{
  if (threads <= 1 || n < 4 * (size_t)RNG_ALIGN) {
    rng_axpy(dist, s, first, n, a, src, dst);
    return;
  }
  /* Split at global multiples of RNG_ALIGN, so each piece is whole chunks
   * except at the ends. Values do not depend on where we split. */
  size_t nblocks = (size_t)((first + n + RNG_ALIGN - 1) / RNG_ALIGN -
                            first / RNG_ALIGN);
  long long nb = (long long)nblocks;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (long long b = 0; b < nb; b++) {
    uint64_t lo = (first / RNG_ALIGN + (uint64_t)b) * RNG_ALIGN;
    uint64_t hi = lo + RNG_ALIGN;
    if (lo < first)
      lo = first;
    if (hi > first + n)
      hi = first + n;
    size_t off = (size_t)(lo - first);
    rng_axpy(dist, s, lo, (size_t)(hi - lo), a, src ? src + off : NULL,
             dst + off);
  }
}

void rng_fill(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
              float *out)
{
  if (dist == RNG_UNIFORM) {
    for (size_t k = 0; k < n; k++)
      out[k] = rng_at(RNG_UNIFORM, s, first + k);
    return;
  }
  rng_axpy(dist, s, first, n, 1.0f, NULL, out);
}

void rng_sincos_turn_f(float u, float *sn, float *cs)
{
  rng_sincos_turn(u, sn, cs);
}
