/* rng: Philox4x32-10 streams for zotune.
 *
 * Every random number zotune uses comes from here, keyed and laid out as
 * docs/random-streams.md specifies, so that any value can be regenerated on
 * any machine, by any thread, in any order, bit for bit.
 *
 * Ownership: this module allocates nothing and keeps no state but the
 * process-wide choice of vector path (rng_set_isa), which callers set once
 * before starting threads. Every buffer is the caller's; `src` and `dst` may
 * be the same pointer (in-place update) but must not otherwise overlap.
 */
#ifndef ZOTUNE_RNG_H
#define ZOTUNE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Purpose tag: the top 4 bits of the stream word. A (key, counter) pair is
 * never used for two purposes. */
enum rng_purpose {
  RNG_PERTURB = 1,     /* SPSA/CBO direction z of (step, slot, dir) */
  RNG_POOL_DIR = 2,    /* direction k of a finite seed pool (step word 0) */
  RNG_POOL_SELECT = 3, /* which pool direction a record probes */
  RNG_BATCH = 4,       /* batch sampling */
  RNG_ROUND = 5,       /* stochastic rounding of a quantized scalar */
  RNG_CBO_NOISE = 6,   /* CBO particle noise */
  RNG_FZOOS = 7,       /* FZooS random features and sketches */
  RNG_INIT = 8,        /* initial points, LoRA initialisation */
  RNG_SAMPLE = 9       /* token sampling in generation */
};

enum rng_dist { RNG_GAUSSIAN = 0, RNG_RADEMACHER = 1, RNG_UNIFORM = 2 };

/* Which implementation generates blocks. All produce identical bits. */
enum rng_isa { RNG_ISA_AUTO = 0, RNG_ISA_SCALAR, RNG_ISA_AVX2, RNG_ISA_AVX512 };

#define RNG_MAX_SLOT 0xFFFFu /* 16 bits of the stream word */
#define RNG_MAX_DIR 0xFFFu   /* 12 bits of the stream word */

/* One stream: key = seed, counter words 2 and 3 = (step, stream). */
typedef struct rng_stream {
  uint64_t seed;
  uint32_t step;
  uint32_t stream; /* purpose << 28 | slot << 12 | dir */
} rng_stream;

/* Packs a stream word. slot and dir are masked to their field widths;
 * callers validate ranges (RNG_MAX_SLOT, RNG_MAX_DIR) at their boundary. */
uint32_t rng_stream_word(enum rng_purpose purpose, uint32_t slot, uint32_t dir);
rng_stream rng_make(uint64_t seed, uint32_t step, enum rng_purpose purpose,
                    uint32_t slot, uint32_t dir);

/* One Philox4x32-10 call; the primitive behind everything else. */
void rng_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Raw 32-bit word i of a stream, and element i of a distribution, each
 * computed on its own (random access). */
uint32_t rng_u32_at(const rng_stream *s, uint64_t i);
float rng_at(enum rng_dist dist, const rng_stream *s, uint64_t i);

/* out[k] = element (first + k) of the distribution, k < n. */
void rng_fill(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
              float *out);

/* dst[k] = src[k] + a * z[first + k]  (src == NULL: dst[k] = a * z[first + k]).
 * Gaussian and Rademacher only. Uses the vector path chosen by rng_set_isa. */
void rng_axpy(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
              float a, const float *src, float *dst);

/* Both signs from one generation: plus[k] = src[k] + a * z[first + k] and
 * minus[k] = src[k] - a * z[first + k], the same bits as rng_axpy with a
 * and with -a. src must not be NULL; plus and minus must not overlap src or
 * each other. */
void rng_axpy_pm(enum rng_dist dist, const rng_stream *s, uint64_t first, size_t n,
                 float a, const float *src, float *plus, float *minus);
/* The same, split across `threads` OpenMP threads at block boundaries; the
 * result does not depend on the thread count. */
void rng_axpy_mt(enum rng_dist dist, const rng_stream *s, uint64_t first,
                 size_t n, float a, const float *src, float *dst, int threads);

/* Elements of one Rademacher block; thread splits align to this. */
#define RNG_ALIGN 2048u

/* Choose the vector path. RNG_ISA_AUTO picks the best the CPU supports.
 * Returns 0, or -1 when the CPU (or this build) lacks the requested ISA. */
int rng_set_isa(enum rng_isa isa);
enum rng_isa rng_get_isa(void);
const char *rng_isa_name(enum rng_isa isa);
/* sin and cos of 2*pi*u by the project's own approximation (the one the
 * Gaussian generator uses): the same bits on every machine and compiler.
 * Accurate to about 1e-7 for u in [0, 1). */
void rng_sincos_turn_f(float u, float *sn, float *cs);

/* Parses "auto", "scalar", "avx2", "avx512"; -1 when unknown. */
int rng_isa_parse(const char *name, enum rng_isa *out);

#endif
