/* bench_rng: cost of direction generation and of the parameter update, next
 * to the memory floor measured in the same run.
 *
 * Prints plain-text tables (Markdown-compatible) with
 *   - the machine: CPU model, rng vector path, date;
 *   - memory: STREAM triad GB/s and the in-place read-modify-write floor
 *     (b[i] *= s, 8 B/param) for 1 and 2 threads on 128 MB arrays;
 *   - rng_axpy_mt with src NULL (generation alone) and with src == dst
 *     (theta += a z), Gaussian and Rademacher, 1 and 2 threads, on the vector
 *     path in use and on the scalar (and AVX2, when present) paths;
 *   - zo_update with R = 1, 8, 64 terms (decay 1), per step and per record;
 *   - every row's ratio to the floor of the same thread count, and the
 *     Gaussian 2-thread gen+axpy figure against the BRIEF target (0.5
 *     ns/param) and the PyTorch MeZO figure quoted in performance.md §1.5.
 * Each row also says how long its threads waited for a CPU (a 2-core machine
 * shared with a build or a test run gives meaningless 2-thread numbers), and a last check confirms that the paths and thread
 * counts timed produce the same bits, i.e. that the rows time the same work.
 *
 * Exit status: 0, or 1 when something failed (allocation, ISA selection,
 * bit check).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng/rng.h"
#include "tests/bench/bench_util.h"
#include "zo/update.h"

#define N_MEM ((size_t)1 << 25) /* floats per memory array: 128 MB */
#define N_RNG N_MEM /* parameters for rng/update rows: the same 128 MB */
#define REPS 7                  /* timed repeats (median), cheap rows */
#define REPS_SLOW 5             /* timed repeats for the R = 64 rows */
#define MAX_THREADS 2
#define MAX_R 64
#define SEED 0x5EEDBEEF12345678ull
#define WAIT_WARN 0.05 /* flag rows whose threads waited > 5% for a CPU */

#define TARGET_NS 0.5     /* BRIEF: Gaussian gen + axpy, 2 threads */
#define MEZO_NS 5.3       /* performance.md §1.5: PyTorch MeZO, 2 thr (quoted) */
#define PROTO_NS 0.468    /* performance.md §1.5: AVX-512 EXACT prototype (quoted) */
#define REF_FLOOR_NS 0.17 /* performance.md §1.4: floor on the reference VM */

static double floor_ns[MAX_THREADS + 1]; /* RMW floor at the start, by threads */
static double floor_lo[MAX_THREADS + 1], floor_hi[MAX_THREADS + 1]; /* per row */
static int nflagged;                     /* rows disturbed by other processes */
static double wait_max;

static const char *dist_name(enum rng_dist d)
{
  return d == RNG_GAUSSIAN ? "gaussian" : "rademacher";
}

/* "0.3558", "14.15": four significant digits. */
static void fmt4(char *buf, size_t len, double x)
{
  snprintf(buf, len, "%.4g", x);
}

static void note_wait(double wait, char *mark, size_t len)
{
  if (wait < 0.0) {
    snprintf(mark, len, "?");
    return;
  }
  if (wait > wait_max)
    wait_max = wait;
  if (wait > WAIT_WARN)
    nflagged++;
  snprintf(mark, len, "%.2f%s", wait, wait > WAIT_WARN ? " !" : "");
}

/* ---- memory ------------------------------------------------------------ */

static int bench_memory(void)
{
  float *a = bench_alloc(N_MEM, 0.0f, MAX_THREADS);
  float *b = bench_alloc(N_MEM, 1.0f, MAX_THREADS);
  float *c = bench_alloc(N_MEM, 0.5f, MAX_THREADS);
  if (!a || !b || !c) {
    fprintf(stderr, "bench_rng: out of memory for 3 x %zu MB\n",
            N_MEM * sizeof(float) >> 20);
    free(a);
    free(b);
    free(c);
    return -1;
  }
  printf("## Memory bandwidth (%zu MB per array, %s loads/stores, median of %d after "
         "1 warm-up; STREAM byte counting)\n\n",
         N_MEM * sizeof(float) >> 20, bench_mem_path(), REPS);
  printf("| %-34s | %-3s | %-6s | %-13s | %-8s | %-6s |\n", "kernel", "thr", "GB/s",
         "GB/s min-max", "ns/elem", "wait");
  printf("|------------------------------------|-----|--------|---------------|"
         "----------|--------|\n");
  for (int th = 1; th <= MAX_THREADS; th++) {
    for (int k = 0; k < 2; k++) {
      double t[REPS], lo, hi, med, bytes;
      bench_load l0, l1;
      if (k == 0) {
        bytes = 12.0 * (double)N_MEM;
        bench_triad(a, b, c, N_MEM, 0.75f, th);
        l0 = bench_load_now();
        for (int r = 0; r < REPS; r++)
          t[r] = bench_triad(a, b, c, N_MEM, 0.75f, th);
      } else {
        bytes = 8.0 * (double)N_MEM;
        bench_rmw(b, N_MEM, 1.0001f, th);
        l0 = bench_load_now();
        for (int r = 0; r < REPS; r++)
          t[r] = bench_rmw(b, N_MEM, r % 2 ? 1.0001f : 1.0f / 1.0001f, th);
      }
      l1 = bench_load_now();
      med = bench_median(t, REPS, &lo, &hi);
      double ns = med / (double)N_MEM * 1e9;
      if (k == 1)
        floor_ns[th] = ns;
      char mark[16];
      note_wait(bench_load_wait(l0, l1), mark, sizeof mark);
      printf("| %-34s | %3d | %6.1f | %5.1f - %5.1f | %8.4f | %-6s |\n",
             k == 0 ? "triad a=b+s*c (12 B/elem)" : "FLOOR in-place b*=s (8 B/elem)", th,
             bytes / med * 1e-9, bytes / hi * 1e-9, bytes / lo * 1e-9, ns, mark);
    }
  }
  printf("\nMemory floor (one read+write pass over theta, measured): %.4f ns/param "
         "(1 thr), %.4f ns/param (2 thr)\n"
         "[QUOTED, not measured here: reference VM floor %.2f ns/param on 2 thr, "
         "performance.md s.1.4]\n\n",
         floor_ns[1], floor_ns[2], REF_FLOOR_NS);
  free(a);
  free(b);
  free(c);
  return 0;
}

/* Median ns/elem of the in-place floor kernel on b[0..n) (after a warm-up). */
static double floor_again(float *b, size_t n, int threads)
{
  double t[REPS];
  bench_rmw(b, n, 1.0001f, threads);
  for (int r = 0; r < REPS; r++)
    t[r] = bench_rmw(b, n, r % 2 ? 1.0001f : 1.0f / 1.0001f, threads);
  return bench_median(t, REPS, NULL, NULL) / (double)n * 1e9;
}

/* ---- rng and update rows ------------------------------------------------ */

enum op_kind { OP_GEN, OP_AXPY, OP_UPDATE };

struct bufs {
  float *theta; /* parameters, updated in place */
  float *dir;   /* generation-only output */
  zo_term terms[MAX_R];
};

/* One timed call; rep varies the stream (step) and the sign of the step so
 * theta stays bounded. Returns seconds. */
static double run_once(struct bufs *b, enum op_kind kind, enum rng_dist dist,
                       int threads, size_t R, int rep)
{
  const uint32_t step = (uint32_t)rep + 1;
  const float a = rep % 2 ? -1e-3f : 1e-3f;
  double t0 = 0.0, t1 = 0.0;
  if (kind == OP_GEN) {
    rng_stream s = rng_make(SEED, step, RNG_PERTURB, 0, 0);
    t0 = bench_now();
    rng_axpy_mt(dist, &s, 0, N_RNG, 1.0f, NULL, b->dir, threads);
    t1 = bench_now();
  } else if (kind == OP_AXPY) {
    rng_stream s = rng_make(SEED, step, RNG_PERTURB, 0, 0);
    t0 = bench_now();
    rng_axpy_mt(dist, &s, 0, N_RNG, a, b->theta, b->theta, threads);
    t1 = bench_now();
  } else {
    for (size_t r = 0; r < R; r++) {
      b->terms[r].stream = rng_make(SEED, step, RNG_PERTURB, 0, (uint32_t)r);
      b->terms[r].coef = a / (float)R;
    }
    t0 = bench_now();
    zo_update(b->theta, N_RNG, dist, b->terms, R, 1.0f, threads);
    t1 = bench_now();
  }
  return t1 - t0;
}

static void table_header(void)
{
  printf("| %-16s | %-10s | %-6s | %-3s | %-2s | %-8s | %-17s | %-8s | %-6s | %-7s | %-6s |\n",
         "kernel", "dist", "path", "thr", "R", "ns/param", "min - max", "ns/rec", "floor",
         "x floor", "wait");
  printf("|------------------|------------|--------|-----|----|----------|"
         "-------------------|----------|--------|---------|--------|\n");
}

/* Times one row (1 warm-up + reps) and prints it; returns the median ns/param
 * per step, and in *floor the floor measured on theta just before. */
static double row(struct bufs *b, const char *label, enum op_kind kind,
                  enum rng_dist dist, int threads, size_t R, double *floor)
{
  const int reps = R >= MAX_R ? REPS_SLOW : REPS;
  double ns[REPS], lo, hi;
  /* The host's memory bandwidth moves during a run (this VM: by up to 2x
   * within seconds), so each row gets its own floor, measured on theta (as
   * large as the floor arrays) right before it. */
  const double fl = floor_again(b->theta, N_RNG, threads);
  if (floor_lo[threads] == 0.0 || fl < floor_lo[threads])
    floor_lo[threads] = fl;
  if (fl > floor_hi[threads])
    floor_hi[threads] = fl;
  if (floor)
    *floor = fl;
  run_once(b, kind, dist, threads, R, 0);
  bench_load l0 = bench_load_now();
  for (int r = 0; r < reps; r++)
    ns[r] = run_once(b, kind, dist, threads, R, r + 1) / (double)N_RNG * 1e9;
  bench_load l1 = bench_load_now();
  double med = bench_median(ns, reps, &lo, &hi);
  char rs[8] = "-", perrec[16] = "-", m[16], l[16], h[16], range[40], mark[16];
  if (kind == OP_UPDATE) {
    snprintf(rs, sizeof rs, "%zu", R);
    fmt4(perrec, sizeof perrec, med / (double)R);
  }
  fmt4(m, sizeof m, med);
  fmt4(l, sizeof l, lo);
  fmt4(h, sizeof h, hi);
  snprintf(range, sizeof range, "%s - %s", l, h);
  note_wait(bench_load_wait(l0, l1), mark, sizeof mark);
  printf("| %-16s | %-10s | %-6s | %3d | %-2s | %8s | %-17s | %8s | %6.4f | %7.2f | %-6s |\n",
         label, dist_name(dist), rng_isa_name(rng_get_isa()), threads, rs, m, range, perrec,
         fl, med / fl, mark);
  fflush(stdout);
  return med;
}

/* Vector path vs scalar path, and 1 vs 2 threads, on ranges with partial
 * chunks at both ends: all must give the same bits. Returns the number of
 * mismatches and failures (each reported on stdout); leaves `vec` selected. */
static int check_bits(enum rng_isa vec)
{
  const size_t n = 3 * 65536 + 1237, first = 77;
  static const enum rng_dist dists[2] = {RNG_GAUSSIAN, RNG_RADEMACHER};
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
  float *src = malloc(n * sizeof *src);
  int bad = 0;
  if (!x || !y || !src) {
    printf("\n  bit check: out of memory");
    bad = 1;
    goto out;
  }
  for (size_t i = 0; i < n; i++)
    src[i] = 0.25f + (float)(i % 1000) * 1e-3f;
  for (int d = 0; d < 2; d++) {
    rng_stream s = rng_make(SEED, 3, RNG_PERTURB, 5, 7);
    zo_term terms[8];
    for (uint32_t r = 0; r < 8; r++) {
      terms[r].stream = rng_make(SEED, 9, RNG_PERTURB, 0, r);
      terms[r].coef = 1e-3f * (float)(r + 1) * (r % 2 ? -1.0f : 1.0f);
    }
    /* gen + axpy: vector path, 2 threads vs scalar path, 1 thread. */
    if (rng_set_isa(vec) != 0) {
      printf("\n  bit check: rng_set_isa(%s) failed", rng_isa_name(vec));
      bad++;
      break;
    }
    rng_axpy_mt(dists[d], &s, first, n, 0.37f, src, x, 2);
    memcpy(y, src, n * sizeof *y);
    zo_update(y, n, dists[d], terms, 8, 0.999f, 1); /* vector path, 1 thread */
    if (rng_set_isa(RNG_ISA_SCALAR) != 0) {
      printf("\n  bit check: rng_set_isa(scalar) failed");
      bad++;
      break;
    }
    float *z = malloc(n * sizeof *z);
    if (!z) {
      printf("\n  bit check: out of memory");
      bad++;
      break;
    }
    rng_axpy(dists[d], &s, first, n, 0.37f, src, z);
    if (memcmp(x, z, n * sizeof *x) != 0) {
      printf("\n  MISMATCH: rng_axpy_mt %s, %s/2 thr != scalar/1 thr", dist_name(dists[d]),
             rng_isa_name(vec));
      bad++;
    }
    /* zo_update R=8, decay 0.999: scalar path, 2 threads vs vector, 1 thread. */
    memcpy(z, src, n * sizeof *z);
    zo_update(z, n, dists[d], terms, 8, 0.999f, 2);
    if (memcmp(y, z, n * sizeof *y) != 0) {
      printf("\n  MISMATCH: zo_update R=8 %s, %s/1 thr != scalar/2 thr",
             dist_name(dists[d]), rng_isa_name(vec));
      bad++;
    }
    free(z);
  }
out:
  if (rng_set_isa(vec) != 0) {
    printf("\n  bit check: could not restore %s", rng_isa_name(vec));
    bad++;
  }
  free(x);
  free(y);
  free(src);
  return bad;
}

int main(void)
{
  const double t_start = bench_now();
  const bench_load load_start = bench_load_now();
  char cpu[256], date[64];
  bench_cpu_model(cpu, sizeof cpu);
  bench_date(date, sizeof date);
  const enum rng_isa vec = rng_get_isa();
  const int have_avx2 = vec != RNG_ISA_AVX2 && rng_set_isa(RNG_ISA_AVX2) == 0;
  if (rng_set_isa(vec) != 0) {
    fprintf(stderr, "bench_rng: cannot select the %s path\n", rng_isa_name(vec));
    return 1;
  }

  printf("# zotune bench_rng\n\n");
  printf("Machine: %s | rng path: %s | %s\n", cpu, rng_isa_name(vec), date);
#ifdef _OPENMP
  printf("OpenMP: yes, %d procs | compiler: %s\n", omp_get_num_procs(), __VERSION__);
#else
  printf("OpenMP: NO (the 2-thread rows run on one thread) | compiler: %s\n",
         __VERSION__);
#endif
  printf("wait = average number of this benchmark's threads runnable but waiting for "
         "a CPU during the row (another process competing); '!' marks rows above %.2f, "
         "whose timings are suspect.\n\n",
         WAIT_WARN);

  if (bench_memory() != 0)
    return 1;

  struct bufs b;
  memset(&b, 0, sizeof b);
  b.theta = bench_alloc(N_RNG, 0.5f, MAX_THREADS);
  b.dir = bench_alloc(N_RNG, 0.0f, MAX_THREADS);
  if (!b.theta || !b.dir) {
    fprintf(stderr, "bench_rng: out of memory for %zu parameters\n", N_RNG);
    free(b.theta);
    free(b.dir);
    return 1;
  }

  static const enum rng_dist dists[2] = {RNG_GAUSSIAN, RNG_RADEMACHER};
  double gauss_axpy2 = 0.0, gauss_axpy2_scalar = 0.0, gauss_gen2 = 0.0;
  double gauss_axpy2_floor = 0.0, fl = 0.0;
  int rc = 0;

  printf("## Generation and update (%zu parameters = %zu MB; median of %d after 1 "
         "warm-up, %d for R=64)\n\n",
         N_RNG, N_RNG * sizeof(float) >> 20, REPS, REPS_SLOW);
  printf("gen = rng_axpy_mt(src NULL, a = 1): writes 4 B/param. gen+axpy = "
         "rng_axpy_mt(src == dst): theta += a*z. zo_update: R terms of distinct "
         "streams (dir 0..R-1), decay 1 (R=1 takes zo_update's single-pass path); ns/rec = "
         "ns/param per step / R. floor = in-place b*=s on theta, same thread count, "
         "measured just before the row; x floor = ns/param per step / floor.\n\n");
  table_header();
  for (int d = 0; d < 2; d++) {
    for (int th = 1; th <= MAX_THREADS; th++) {
      double g = row(&b, "gen", OP_GEN, dists[d], th, 1, NULL);
      double m = row(&b, "gen+axpy", OP_AXPY, dists[d], th, 1, &fl);
      if (d == 0 && th == 2) {
        gauss_gen2 = g;
        gauss_axpy2 = m;
        gauss_axpy2_floor = fl;
      }
    }
  }
  /* Other paths, for comparison (same bits, other code). */
  static const enum rng_isa others[2] = {RNG_ISA_SCALAR, RNG_ISA_AVX2};
  for (int k = 0; k < 2; k++) {
    enum rng_isa isa = others[k];
    if (isa == vec || (isa == RNG_ISA_AVX2 && !have_avx2))
      continue;
    if (rng_set_isa(isa) != 0) {
      fprintf(stderr, "bench_rng: cannot select the %s path\n", rng_isa_name(isa));
      rc = 1;
      continue;
    }
    for (int d = 0; d < 2; d++) {
      for (int th = 1; th <= MAX_THREADS; th++) {
        if (isa == RNG_ISA_SCALAR)
          row(&b, "gen", OP_GEN, dists[d], th, 1, NULL);
        double m = row(&b, "gen+axpy", OP_AXPY, dists[d], th, 1, NULL);
        if (isa == RNG_ISA_SCALAR && d == 0 && th == 2)
          gauss_axpy2_scalar = m;
      }
    }
    if (rng_set_isa(vec) != 0) {
      fprintf(stderr, "bench_rng: cannot restore the %s path\n", rng_isa_name(vec));
      free(b.theta);
      free(b.dir);
      return 1;
    }
  }
  /* Fused update, vector path. */
  static const size_t Rs[3] = {1, 8, MAX_R};
  for (int i = 0; i < 3; i++)
    for (int d = 0; d < 2; d++)
      for (int th = 1; th <= MAX_THREADS; th++)
        row(&b, "zo_update", OP_UPDATE, dists[d], th, Rs[i], NULL);

  /* The steps above alternate in sign: theta must still be near 0.5. */
  for (size_t i = 0; i < N_RNG; i += 4099) {
    if (!(b.theta[i] > 0.0f && b.theta[i] < 1.0f)) {
      printf("\nWARNING: theta[%zu] = %g left its range; timings may include "
             "non-finite arithmetic\n",
             i, (double)b.theta[i]);
      rc = 1;
      break;
    }
  }
  free(b.theta);
  free(b.dir);

  printf("\n## Target: Gaussian generation + axpy <= %.1f ns/param on 2 threads "
         "(BRIEF)\n\n",
         TARGET_NS);
  printf("| %-52s | %-8s | %-34s |\n", "Gaussian gen+axpy, 2 threads", "ns/param",
         "ratio");
  printf("|------------------------------------------------------|----------|"
         "------------------------------------|\n");
  char ratio[64];
  snprintf(ratio, sizeof ratio, "%.2f x target: %s", gauss_axpy2 / TARGET_NS,
           gauss_axpy2 <= TARGET_NS ? "MET" : "MISSED");
  printf("| %-52s | %8.4f | %-34s |\n", "measured here, vector path", gauss_axpy2, ratio);
  snprintf(ratio, sizeof ratio, "%.2f x the floor", gauss_axpy2 / gauss_axpy2_floor);
  printf("| %-52s | %8.4f | %-34s |\n", "measured here, memory floor (same row)",
         gauss_axpy2_floor, ratio);
  snprintf(ratio, sizeof ratio, "axpy adds %+.4f ns/param", gauss_axpy2 - gauss_gen2);
  printf("| %-52s | %8.4f | %-34s |\n", "measured here, generation alone", gauss_gen2,
         ratio);
  if (gauss_axpy2_scalar > 0.0) {
    snprintf(ratio, sizeof ratio, "%.1f x slower than vector",
             gauss_axpy2_scalar / gauss_axpy2);
    printf("| %-52s | %8.4f | %-34s |\n", "measured here, scalar path", gauss_axpy2_scalar,
           ratio);
  }
  snprintf(ratio, sizeof ratio, "vector path here %.1f x faster", MEZO_NS / gauss_axpy2);
  printf("| %-52s | %8.3f | %-34s |\n",
         "QUOTED PyTorch MeZO (perf.md s.1.5, ref VM)", MEZO_NS, ratio);
  snprintf(ratio, sizeof ratio, "here / prototype = %.2f", gauss_axpy2 / PROTO_NS);
  printf("| %-52s | %8.3f | %-34s |\n",
         "QUOTED AVX-512 EXACT prototype (perf.md s.1.5)", PROTO_NS, ratio);
  printf("\nQUOTED rows: figures from /work/shared/reference/performance.md, measured on "
         "the 2-core AVX-512 reference VM (Intel Xeon), not in this run.\n");

  printf("\nBit check (vector vs scalar path, 1 vs 2 threads, partial chunks at both "
         "ends): ");
  fflush(stdout);
  int bad = check_bits(vec);
  printf("%s\n", bad ? "\n  FAILED (see above)" : "identical");
  if (bad)
    rc = 1;
  printf("rng path at exit: %s\n", rng_isa_name(rng_get_isa()));
  for (int th = 1; th <= MAX_THREADS; th++)
    printf("Floor during the run, %d thr: %.4f - %.4f ns/param (%.4f in the memory "
           "section)%s\n",
           th, floor_lo[th], floor_hi[th], floor_ns[th],
           floor_hi[th] > 1.5 * floor_lo[th] ? ": the host's memory bandwidth moved; "
                                               "compare rows by their own floor"
                                             : "");
  if (nflagged)
    printf("WARNING: %d rows had threads waiting for a CPU (up to %.2f, marked '!'); "
           "rerun on a quiet machine.\n",
           nflagged, wait_max);
  else
    printf("CPU contention: at most %.2f threads waiting during any row (quiet).\n",
           wait_max);
  double foreign = bench_load_foreign(load_start, bench_load_now());
  if (foreign >= 0.0)
    printf("Other processes kept %.2f CPUs busy on average during the run.\n", foreign);
  printf("Total time: %.1f s\n", bench_now() - t_start);
  return rc;
}
