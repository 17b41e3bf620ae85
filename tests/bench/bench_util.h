/* bench_util: small helpers shared by the benchmarks in tests/bench.
 *
 *   bench_now          monotonic wall clock in seconds;
 *   bench_median       median (and min/max) of n timings, without reordering
 *                      the caller's array;
 *   bench_alloc        64-byte-aligned float arrays, first touched by the
 *                      threads (and split) the kernels below use;
 *   bench_triad        one STREAM triad a[i] = b[i] + s * c[i] (12 B/element);
 *   bench_rmw          one in-place read-modify-write b[i] = b[i] * s
 *                      (8 B/element: the theta pass of a perturbation/update);
 *   bench_mem_path     which code the two kernels run ("avx512", "avx2", "C");
 *   bench_load_*       whether other processes competed for the CPUs during a
 *                      measurement (our threads' run-queue wait; others' CPU);
 *   bench_fma_peak     FP32 FMA throughput of `threads` threads (GFLOP/s): the
 *                      FLOP side of a physical floor;
 *   bench_sgemm_ceiling the same through an SGEMM microkernel's inner loop
 *                      (loads and broadcasts included): no BLAS beats it;
 *   bench_cpu_model    "model name" from /proc/cpuinfo;
 *   bench_date         the current UTC date and time;
 *   bench_print_machine a report's title, machine, OpenMP and compiler lines;
 *   bench_run_*        a run's start, its rows flagged for waiting on a CPU
 *                      (bench_mark_wait) and its closing lines;
 *   bench_fork_report  a child forked to measure something (its peak RSS)
 *                      that sends its findings back through a pipe.
 *
 * The memory kernels use explicit AVX-512/AVX2 loads and stores when the CPU
 * has them, so the floor they measure does not depend on the optimisation
 * level or -march the benchmark happens to be built with. Threads: OpenMP,
 * `threads` of them, each on one contiguous 64-byte-aligned share; without
 * OpenMP everything runs on one thread.
 *
 * Everything is static (inline), so a benchmark that uses only part of this
 * file gets no unused-function warnings.
 */
#ifndef ZOTUNE_BENCH_UTIL_H
#define ZOTUNE_BENCH_UTIL_H

#include <dirent.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define BENCH_X86 1
#include <immintrin.h>
#endif

static inline double bench_now(void)
{
  struct timespec ts;
  if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
    return 0.0;
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

#define BENCH_MAX_REPS 64

/* Median of v[0..n) (mean of the middle two when n is even); also the
 * minimum and maximum when lo/hi are non-NULL. v is left unchanged. Only the
 * first BENCH_MAX_REPS values are used. */
static inline double bench_median(const double *v, int n, double *lo, double *hi)
{
  double s[BENCH_MAX_REPS];
  if (n < 1)
    return 0.0;
  if (n > BENCH_MAX_REPS)
    n = BENCH_MAX_REPS;
  memcpy(s, v, (size_t)n * sizeof *s);
  qsort(s, (size_t)n, sizeof *s, bench_cmp_double);
  if (lo)
    *lo = s[0];
  if (hi)
    *hi = s[n - 1];
  return n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
}

/* ---- memory kernels ----------------------------------------------------- */

enum bench_mem_isa { BENCH_MEM_C, BENCH_MEM_AVX2, BENCH_MEM_AVX512 };

static inline enum bench_mem_isa bench_mem_isa(void)
{
#ifdef BENCH_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return BENCH_MEM_AVX512;
  if (__builtin_cpu_supports("avx2"))
    return BENCH_MEM_AVX2;
#endif
  return BENCH_MEM_C;
}

static inline const char *bench_mem_path(void)
{
  switch (bench_mem_isa()) {
  case BENCH_MEM_AVX512:
    return "avx512";
  case BENCH_MEM_AVX2:
    return "avx2";
  default:
    return "C";
  }
}

/* Share [*lo, *hi) of n elements for thread id of nth, split at multiples of
 * 16 elements (64 bytes). */
static inline void bench_share(size_t n, int id, int nth, size_t *lo, size_t *hi)
{
  size_t lines = (n + 15) / 16;
  size_t a = lines * (size_t)id / (size_t)nth * 16;
  size_t b = lines * (size_t)(id + 1) / (size_t)nth * 16;
  *lo = a < n ? a : n;
  *hi = b < n ? b : n;
}

static inline void bench_triad_c(float *a, const float *b, const float *c, size_t n,
                                 float s)
{
  for (size_t i = 0; i < n; i++)
    a[i] = b[i] + s * c[i];
}

static inline void bench_rmw_c(float *b, size_t n, float s)
{
  for (size_t i = 0; i < n; i++)
    b[i] = b[i] * s;
}

#ifdef BENCH_X86
__attribute__((target("avx512f"))) static inline void
bench_triad_avx512(float *a, const float *b, const float *c, size_t n, float s)
{
  const __m512 vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(a + i, _mm512_add_ps(_mm512_loadu_ps(b + i),
                                          _mm512_mul_ps(vs, _mm512_loadu_ps(c + i))));
  bench_triad_c(a + i, b + i, c + i, n - i, s);
}

__attribute__((target("avx512f"))) static inline void bench_rmw_avx512(float *b, size_t n,
                                                                       float s)
{
  const __m512 vs = _mm512_set1_ps(s);
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(b + i, _mm512_mul_ps(_mm512_loadu_ps(b + i), vs));
  bench_rmw_c(b + i, n - i, s);
}

__attribute__((target("avx2"))) static inline void
bench_triad_avx2(float *a, const float *b, const float *c, size_t n, float s)
{
  const __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(a + i, _mm256_add_ps(_mm256_loadu_ps(b + i),
                                          _mm256_mul_ps(vs, _mm256_loadu_ps(c + i))));
  bench_triad_c(a + i, b + i, c + i, n - i, s);
}

__attribute__((target("avx2"))) static inline void bench_rmw_avx2(float *b, size_t n,
                                                                  float s)
{
  const __m256 vs = _mm256_set1_ps(s);
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(b + i, _mm256_mul_ps(_mm256_loadu_ps(b + i), vs));
  bench_rmw_c(b + i, n - i, s);
}
#endif

/* 0: fill with value; 1: triad; 2: rmw — on this thread's share. */
static inline void bench_kernel_share(int kind, enum bench_mem_isa isa, float *a,
                                      const float *b, const float *c, size_t n,
                                      float s)
{
  int id = 0, nth = 1;
#ifdef _OPENMP
  id = omp_get_thread_num();
  nth = omp_get_num_threads();
#endif
  size_t lo, hi;
  bench_share(n, id, nth, &lo, &hi);
  size_t len = hi - lo;
  (void)isa;
  if (kind == 0) {
    for (size_t i = lo; i < hi; i++)
      a[i] = s;
    return;
  }
#ifdef BENCH_X86
  if (isa == BENCH_MEM_AVX512) {
    if (kind == 1)
      bench_triad_avx512(a + lo, b + lo, c + lo, len, s);
    else
      bench_rmw_avx512(a + lo, len, s);
    return;
  }
  if (isa == BENCH_MEM_AVX2) {
    if (kind == 1)
      bench_triad_avx2(a + lo, b + lo, c + lo, len, s);
    else
      bench_rmw_avx2(a + lo, len, s);
    return;
  }
#endif
  if (kind == 1)
    bench_triad_c(a + lo, b + lo, c + lo, len, s);
  else
    bench_rmw_c(a + lo, len, s);
}

/* Runs kind on `threads` threads; returns the elapsed seconds. */
static inline double bench_kernel(int kind, float *a, const float *b, const float *c,
                                  size_t n, float s, int threads)
{
  const enum bench_mem_isa isa = bench_mem_isa();
  const int nt = threads > 0 ? threads : 1;
  double t0 = bench_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
  bench_kernel_share(kind, isa, a, b, c, n, s);
#else
  (void)nt;
  bench_kernel_share(kind, isa, a, b, c, n, s);
#endif
  return bench_now() - t0;
}

/* n floats, 64-byte aligned, every element set to `value` by `threads`
 * threads with the split the kernels use (so pages are faulted in, where the
 * kernels will touch them, before anything is timed). NULL when out of
 * memory. */
static inline float *bench_alloc(size_t n, float value, int threads)
{
  size_t bytes = n * sizeof(float);
  bytes = (bytes + 63) / 64 * 64; /* aligned_alloc wants a multiple */
  float *p = aligned_alloc(64, bytes ? bytes : 64);
  if (!p)
    return NULL;
  bench_kernel(0, p, NULL, NULL, n, value, threads);
  return p;
}

/* a[i] = b[i] + s * c[i], i < n. Returns the elapsed seconds. */
static inline double bench_triad(float *a, const float *b, const float *c, size_t n,
                                 float s, int threads)
{
  return bench_kernel(1, a, b, c, n, s, threads);
}

/* b[i] = b[i] * s, i < n. Returns the elapsed seconds. Callers alternate s
 * and 1/s so the values neither grow nor reach subnormals. */
static inline double bench_rmw(float *b, size_t n, float s, int threads)
{
  return bench_kernel(2, b, NULL, NULL, n, s, threads);
}

/* ---- interference ------------------------------------------------------- */

/* A snapshot of (a) how long this process's threads have waited, runnable,
 * for a CPU (/proc/self/task/<tid>/schedstat, nanoseconds: precise), and
 * (b) the CPU time used by the whole machine (/proc/stat, clock ticks) and
 * by this process, so a benchmark can tell whether something else was
 * competing for the cores while it measured. */
typedef struct bench_load {
  double wall;    /* bench_now() */
  double wait;    /* summed run-queue wait of our threads, seconds */
  double busy;    /* machine-wide busy CPU time, seconds */
  double self;    /* this process's CPU time, seconds */
  int ok_wait, ok_busy;
} bench_load;

static inline bench_load bench_load_now(void)
{
  bench_load l;
  memset(&l, 0, sizeof l);
  DIR *dir = opendir("/proc/self/task");
  if (dir) {
    struct dirent *e;
    unsigned long long sum = 0;
    int n = 0;
    while ((e = readdir(dir)) != NULL) {
      if (e->d_name[0] < '0' || e->d_name[0] > '9')
        continue;
      char path[64];
      snprintf(path, sizeof path, "/proc/self/task/%.20s/schedstat", e->d_name);
      FILE *f = fopen(path, "r");
      if (!f)
        continue;
      unsigned long long run, wait;
      if (fscanf(f, "%llu %llu", &run, &wait) == 2) {
        sum += wait;
        n++;
      }
      fclose(f);
    }
    closedir(dir);
    l.wait = 1e-9 * (double)sum;
    l.ok_wait = n > 0;
  }
  struct timespec ts;
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0)
    l.self = (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
  FILE *f = fopen("/proc/stat", "r");
  if (f) {
    unsigned long long v[8] = {0};
    /* cpu user nice system idle iowait irq softirq steal */
    if (fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
               &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
      long hz = sysconf(_SC_CLK_TCK);
      l.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) /
               (double)(hz > 0 ? hz : 100);
      l.ok_busy = 1;
    }
    fclose(f);
  }
  l.wall = bench_now(); /* last, so the window covers the reads above */
  return l;
}

/* Average number of this process's threads that were runnable but waiting
 * for a CPU between a and b (0 on an idle machine; about 1 when another
 * CPU-bound process shares our two cores with a 2-thread row); negative when
 * unknown. */
static inline double bench_load_wait(bench_load a, bench_load b)
{
  if (!a.ok_wait || !b.ok_wait || b.wall <= a.wall)
    return -1.0;
  double w = b.wait - a.wait;
  return (w > 0.0 ? w : 0.0) / (b.wall - a.wall);
}

/* Average number of CPUs kept busy by other processes between a and b;
 * negative when unknown. /proc/stat counts whole clock ticks, so use it only
 * over windows of seconds. */
static inline double bench_load_foreign(bench_load a, bench_load b)
{
  if (!a.ok_busy || !b.ok_busy || b.wall <= a.wall)
    return -1.0;
  double other = (b.busy - a.busy) - (b.self - a.self);
  return (other > 0.0 ? other : 0.0) / (b.wall - a.wall);
}

/* ---- machine ------------------------------------------------------------ */

/* The "model name" line of /proc/cpuinfo, or "unknown". */
static inline void bench_cpu_model(char *buf, size_t len)
{
  snprintf(buf, len, "unknown");
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (!f)
    return;
  char line[512];
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "model name", 10) != 0)
      continue;
    char *colon = strchr(line, ':');
    if (!colon)
      continue;
    colon++;
    while (*colon == ' ' || *colon == '\t')
      colon++;
    colon[strcspn(colon, "\n")] = '\0';
    snprintf(buf, len, "%s", colon);
    break;
  }
  fclose(f);
}

/* "YYYY-MM-DD HH:MM UTC". */
static inline void bench_date(char *buf, size_t len)
{
  time_t now = time(NULL);
  struct tm tm;
  if (now == (time_t)-1 || !gmtime_r(&now, &tm) ||
      strftime(buf, len, "%Y-%m-%d %H:%M UTC", &tm) == 0)
    snprintf(buf, len, "unknown");
}


/* ---- shared by bench_forward and bench_mezo ---------------------------- */

/* ---- FMA peak ----------------------------------------------------------- */

#define BENCH_FMA_CHAINS 12 /* independent chains: more than latency x ports */

#ifdef BENCH_X86
__attribute__((target("avx512f"))) static inline float bench_fma512(long n)
{
  __m512 acc[BENCH_FMA_CHAINS];
  __m512 b = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  /* b and c opaque: clang otherwise folds the chain that starts at 1.0 (a
   * fixed point of x b + c in float) and runs fewer FMAs than counted */
  __asm__ volatile("" : "+v"(b), "+v"(c));
  for (int i = 0; i < BENCH_FMA_CHAINS; i++)
    acc[i] = _mm512_set1_ps((float)i);
  /* 4 rounds of the chains per iteration: the loop's own instructions
   * would otherwise take FMA ports (gcc unrolls no further by itself) */
  for (long k = 0; k < n; k++)
#pragma GCC unroll 48
    for (int i = 0; i < 4 * BENCH_FMA_CHAINS; i++)
      acc[i % BENCH_FMA_CHAINS] = _mm512_fmadd_ps(acc[i % BENCH_FMA_CHAINS], b, c);
  __m512 s = acc[0];
  for (int i = 1; i < BENCH_FMA_CHAINS; i++)
    s = _mm512_add_ps(s, acc[i]);
  return _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) static inline float bench_fma256(long n)
{
  __m256 acc[BENCH_FMA_CHAINS];
  __m256 b = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  __asm__ volatile("" : "+x"(b), "+x"(c)); /* opaque, as in bench_fma512 */
  for (int i = 0; i < BENCH_FMA_CHAINS; i++)
    acc[i] = _mm256_set1_ps((float)i);
  /* 4 rounds of the chains per iteration: the loop's own instructions
   * would otherwise take FMA ports (gcc unrolls no further by itself) */
  for (long k = 0; k < n; k++)
#pragma GCC unroll 48
    for (int i = 0; i < 4 * BENCH_FMA_CHAINS; i++)
      acc[i % BENCH_FMA_CHAINS] = _mm256_fmadd_ps(acc[i % BENCH_FMA_CHAINS], b, c);
  __m256 s = acc[0];
  for (int i = 1; i < BENCH_FMA_CHAINS; i++)
    s = _mm256_add_ps(s, acc[i]);
  float v[8];
  _mm256_storeu_ps(v, s);
  return v[0] + v[1] + v[2] + v[3] + v[4] + v[5] + v[6] + v[7];
}
/* The inner loop of an SGEMM microkernel with a 32 x 12 register tile (the
 * shape of BLIS's and OpenBLAS's AVX-512 SGEMM kernels): per k, two vector
 * loads of packed A, twelve broadcast loads of packed B, 24 FMAs into 24
 * accumulators; both panels stay in L1, so there is no packing, no C
 * traffic and no cache miss: the most any SGEMM built that way can do. */
#define BENCH_UK_K 128 /* panel depth: A 16 KB + B 6 KB, L1-resident */
__attribute__((target("avx512f"))) static inline float bench_uk512(long n)
{
  _Alignas(64) float pa[BENCH_UK_K * 32], pb[BENCH_UK_K * 12];
  for (int i = 0; i < BENCH_UK_K * 32; i++)
    pa[i] = 1e-7f * (float)(i % 97);
  for (int i = 0; i < BENCH_UK_K * 12; i++)
    pb[i] = 1e-7f * (float)(i % 89);
  __asm__ volatile("" : : "r"(pa), "r"(pb) : "memory"); /* panels opaque */
  __m512 c[24];
  for (int j = 0; j < 24; j++)
    c[j] = _mm512_setzero_ps();
  for (long r = 0; r < n; r++) {
    const float *a = pa, *b = pb;
    for (int k = 0; k < BENCH_UK_K; k++, a += 32, b += 12) {
      const __m512 a0 = _mm512_load_ps(a), a1 = _mm512_load_ps(a + 16);
#pragma GCC unroll 12
      for (int j = 0; j < 12; j++) {
        const __m512 bj = _mm512_set1_ps(b[j]);
        c[2 * j] = _mm512_fmadd_ps(a0, bj, c[2 * j]);
        c[2 * j + 1] = _mm512_fmadd_ps(a1, bj, c[2 * j + 1]);
      }
    }
  }
  __m512 s = c[0];
  for (int j = 1; j < 24; j++)
    s = _mm512_add_ps(s, c[j]);
  return _mm512_reduce_add_ps(s);
}
#endif

#ifdef BENCH_X86
/* GFLOP/s of `threads` threads each running kernel(n), which does
 * flop_per_call FLOPs and returns a value that is kept (so none of its work
 * can be dropped): the best of 3. */
static inline double bench_best_gflops(int threads, float (*kernel)(long), long n,
                                       double flop_per_call)
{
  double best = 0.0;
  float sink = 0.0f;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = bench_now();
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
      float r = kernel(n);
#ifdef _OPENMP
#pragma omp critical
#endif
      sink += r;
    }
    double t = bench_now() - t0;
    if (flop_per_call * threads / t > best)
      best = flop_per_call * threads / t;
  }
  volatile float keep = sink;
  (void)keep;
  return best * 1e-9;
}
#endif

/* GFLOP/s of `threads` threads each running bench_uk512 for about `secs`
 * (best of 3): the ceiling of an AVX-512 SGEMM on this machine, to set
 * beside the FMA peak. 0 without AVX-512. */
static inline double bench_sgemm_ceiling(int threads, double secs)
{
#ifdef BENCH_X86
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f"))
    return 0.0;
  /* a panel sweep is 128 x 24 FMAs: ~1.5k cycles, ~0.5 us */
  const long n = (long)(secs * 2e6);
  return bench_best_gflops(threads, bench_uk512, n, (double)n * BENCH_UK_K * 24 * 16 * 2.0);
#else
  (void)threads;
  (void)secs;
  return 0.0;
#endif
}

/* FP32 FMA GFLOP/s of `threads` threads, each running BENCH_FMA_CHAINS
 * independent chains in registers for about `secs` (best of 3), with the
 * widest vectors the CPU has (AVX-512, else AVX2+FMA); 0 when it has
 * neither. *width gets 512, 256 or 0. */
static inline double bench_fma_peak(int threads, double secs, int *width)
{
  *width = 0;
#ifdef BENCH_X86
  __builtin_cpu_init();
  int w = __builtin_cpu_supports("avx512f")                                   ? 512
          : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? 256
                                                                              : 0;
  if (!w)
    return 0.0;
  *width = w;
  /* an iteration is 48 FMAs: 24 cycles on two FMA ports, ~8 ns at 3 GHz */
  const long n = (long)(secs * 1.25e8);
  return bench_best_gflops(threads, w == 512 ? bench_fma512 : bench_fma256, n,
                           (double)n * 4 * BENCH_FMA_CHAINS * (w / 32) * 2.0);
#else
  (void)threads;
  (void)secs;
  return 0.0;
#endif
}

/* ---- PyTorch peer ------------------------------------------------------- */

static inline int have_avx512(void)
{
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") ? 1 : 0;
#else
  return 0;
#endif
}

static inline double cpu_seconds(const struct rusage *ru)
{
  return (double)ru->ru_utime.tv_sec + 1e-6 * (double)ru->ru_utime.tv_usec +
         (double)ru->ru_stime.tv_sec + 1e-6 * (double)ru->ru_stime.tv_usec;
}

/* VmRSS or VmHWM of this process in kB, -1 if unknown. */
static inline long status_kb(const char *key)
{
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  size_t kl = strlen(key);
  if (!f)
    return -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
      v = atol(line + kl + 1);
      break;
    }
  fclose(f);
  return v;
}

/* 'path' with single quotes escaped for sh. */
static inline void shell_quote(char *out, size_t len, const char *path)
{
  size_t o = 0;
  if (len < 3) {
    if (len)
      out[0] = '\0';
    return;
  }
  out[o++] = '\'';
  for (const char *p = path; *p && o + 6 < len; p++) {
    if (*p == '\'') {
      memcpy(out + o, "'\\''", 4);
      o += 4;
    } else {
      out[o++] = *p;
    }
  }
  out[o++] = '\'';
  out[o] = '\0';
}

/* Copies src into dst[len] (truncating), without snprintf's truncation warnings. */
static inline void copy_str(char *dst, size_t len, const char *src)
{
  size_t n = strlen(src);
  if (len == 0)
    return;
  if (n >= len)
    n = len - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

/* ---- a run: header, flagged rows, closing lines ------------------------ */

#define BENCH_MAX_THREADS 2  /* rows at 2 threads and at 1: the reference VM's cores */
#define BENCH_WAIT_WARN 0.05 /* flag rows whose threads waited > 5% for a CPU */

/* A report's first lines: "# zotune <name>", the machine (extra, "" or
 * e.g. "rng path: avx512 | ", between the BLAS and the date), OpenMP and the
 * compiler. */
static inline void bench_print_machine(const char *name, const char *blas, const char *extra)
{
  char cpu[256], date[64];
  bench_cpu_model(cpu, sizeof cpu);
  bench_date(date, sizeof date);
  printf("# zotune %s\n\n", name);
  printf("Machine: %s | %s | %s%s\n", cpu, blas, extra, date);
#ifdef _OPENMP
  printf("OpenMP: yes, %d procs | compiler: %s\n", omp_get_num_procs(), __VERSION__);
#else
  printf("OpenMP: NO (the 2-thread rows run on one thread) | compiler: %s\n", __VERSION__);
#endif
}

/* What a run's closing lines need from its start (the wall clock, the
 * machine's load, our children's CPU time: the RSS children and the peer
 * are ours, not interference), and the rows flagged on the way. */
struct bench_run {
  double t0;
  bench_load load;
  struct rusage children;
  int nflagged;    /* rows whose threads waited more than BENCH_WAIT_WARN */
  double wait_max; /* the most any row waited */
};

static inline void bench_run_start(struct bench_run *r)
{
  memset(r, 0, sizeof *r);
  r->t0 = bench_now();
  r->load = bench_load_now();
  if (getrusage(RUSAGE_CHILDREN, &r->children) != 0)
    memset(&r->children, 0, sizeof r->children);
}

/* A row's wait column for `wait` (bench_load_wait): "0.01", "0.12 !" above
 * BENCH_WAIT_WARN (the row is counted in r as flagged), "?" when unknown.
 * Returns wait. */
static inline double bench_mark_wait(struct bench_run *r, double wait, char *mark, size_t len)
{
  if (wait < 0.0) {
    snprintf(mark, len, "?");
    return wait;
  }
  if (wait > r->wait_max)
    r->wait_max = wait;
  if (wait > BENCH_WAIT_WARN)
    r->nflagged++;
  snprintf(mark, len, "%.2f%s", wait, wait > BENCH_WAIT_WARN ? " !" : "");
  return wait;
}

/* Below the benchmark's own rows: a warning when some were flagged. */
static inline void bench_run_warn(const struct bench_run *r)
{
  if (r->nflagged)
    printf("\nWARNING: %d rows had threads waiting for a CPU (up to %.2f, marked '!'); rerun "
           "on a quiet machine.\n",
           r->nflagged, r->wait_max);
}

/* The closing lines: how many CPUs other processes kept busy during the
 * run, and the rows flagged in all (the peer's too). */
static inline void bench_run_end(const struct bench_run *r)
{
  const bench_load end = bench_load_now();
  struct rusage ru;
  double children = 0.0;
  if (getrusage(RUSAGE_CHILDREN, &ru) == 0)
    children = cpu_seconds(&ru) - cpu_seconds(&r->children);
  double foreign = bench_load_foreign(r->load, end);
  if (foreign >= 0.0) {
    foreign -= children / (end.wall - r->load.wall);
    printf("\nOther processes kept %.2f CPUs busy on average during the run%s.\n",
           foreign > 0.0 ? foreign : 0.0,
           foreign > 0.1 ? ": the machine was not quiet, compare ratios within rows" : "");
  }
  if (r->nflagged)
    printf("WARNING: %d rows (zotune and peer) had threads waiting for a CPU (up to %.2f).\n",
           r->nflagged, r->wait_max);
}

/* ---- forked children ---------------------------------------------------- */

/* Forks a child that runs child(fd, arg): it writes a report of `size`
 * bytes to fd (bench_report) and _exits, never returning. The parent reads
 * the report into out (*got = the bytes it got) and returns the child's pid,
 * for the caller to wait for in whichever way gives it the child's rusage;
 * -1 when no child was started. Its memory is the parent's at the fork, so
 * call it before the parent allocates anything large or starts threads. */
static inline pid_t bench_fork_report(void (*child)(int fd, void *arg), void *arg, void *out,
                                      size_t size, size_t *got)
{
  int fds[2];
  *got = 0;
  fflush(stdout); /* the child inherits our stdio buffers: none may hold output twice */
  fflush(stderr);
  if (pipe(fds) != 0)
    return -1;
  pid_t pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    close(fds[0]);
    child(fds[1], arg);
    _exit(1); /* not reached: child _exits */
  }
  close(fds[1]);
  while (*got < size) {
    ssize_t k = read(fds[0], (char *)out + *got, size - *got);
    if (k <= 0)
      break;
    *got += (size_t)k;
  }
  close(fds[0]);
  return pid;
}

/* The child's side: writes its report to fd and closes it; 0 when all of it
 * was written. */
static inline int bench_report(int fd, const void *report, size_t size)
{
  int rc = write(fd, report, size) == (ssize_t)size ? 0 : -1;
  close(fd);
  return rc;
}

#endif
