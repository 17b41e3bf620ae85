/* bench_peer: how bench_forward and bench_mezo run their PyTorch peers.
 *
 *   bench_peer_envs  the BLAS setups a peer is tried with, in order (torch
 *                    1.13 calls whatever libblas.so.3 the loader finds,
 *                    performance.md s.2.1): Debian's BLIS-openmp forced to
 *                    the skx kernels zotune runs (BLIS_ARCH_TYPE=0, AVX-512
 *                    CPUs; the override is fragile, s.1.2, hence the next),
 *                    BLIS-openmp as it detects the CPU, OpenBLAS-openmp (one
 *                    OpenMP runtime with torch: s.2.1's "tuned" peer), and
 *                    last the system's libblas.so.3. PEER_TUNED_FIRST moves
 *                    OpenBLAS-openmp to the front (the peer the BRIEF's
 *                    MeZO targets quote); PEER_SAME_KERNELS_FIRST keeps the
 *                    order, so a comparison is about everything but the GEMM
 *                    kernel. A custom environment replaces the list.
 *   bench_peer_line  the lines every peer prints besides its results
 *                    (TORCH_INFO, TORCH_INFO_END, TORCH_SKIP, anything else);
 *   bench_opts_*     the options both benchmarks take (--reps, --quick,
 *                    --no-peer, --peer, --peer-env) and the default peer;
 *   bench_peer_setup whether the peer can run at all, and the BLAS setups;
 *   bench_peer_model the peer for one model at each thread count: one
 *                    process per BLAS setup tried, its output parsed; what
 *                    differs between the peers (which cases, how they are
 *                    named, the result lines) comes in a struct peer_job;
 *   bench_peer_print_runs  why the peer did not run, or each run's BLAS
 *                    setup and the peer's own description.
 *
 * Everything is static (inline), as in bench_util.h.
 */
#ifndef ZOTUNE_BENCH_PEER_H
#define ZOTUNE_BENCH_PEER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/bench/bench_models.h"
#include "tests/bench/bench_util.h"

#define BENCH_LIBDIR "/usr/lib/x86_64-linux-gnu/"
#define MAX_PEER_ENVS 5
#define PEER_PYTHON "/usr/bin/python3"

struct peer_env {
  char env[400];
  char label[160];
};

enum bench_peer_order { PEER_SAME_KERNELS_FIRST, PEER_TUNED_FIRST };

static inline int bench_peer_openblas_omp(struct peer_env *e)
{
  if (access(BENCH_LIBDIR "openblas-openmp/libblas.so.3", R_OK) != 0)
    return 0;
  snprintf(e->env, sizeof e->env,
           "LD_LIBRARY_PATH=" BENCH_LIBDIR "openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}");
  snprintf(e->label, sizeof e->label, "OpenBLAS openmp (performance.md s.2.1 'tuned')");
  return 1;
}

/* Fills e (MAX_PEER_ENVS entries) and returns how many. */
static inline int bench_peer_envs(struct peer_env *e, const char *custom,
                                  enum bench_peer_order order)
{
  int n = 0;
  if (custom) {
    snprintf(e[0].env, sizeof e[0].env, "%s", custom);
    snprintf(e[0].label, sizeof e[0].label, "environment from --peer-env");
    return 1;
  }
  if (order == PEER_TUNED_FIRST)
    n += bench_peer_openblas_omp(&e[n]);
  if (access(BENCH_LIBDIR "blis-openmp/libblas.so.3", R_OK) == 0) {
    if (have_avx512()) {
      snprintf(e[n].env, sizeof e[n].env,
               "LD_LIBRARY_PATH=" BENCH_LIBDIR "blis-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "
               "BLIS_ARCH_TYPE=0");
      snprintf(e[n++].label, sizeof e[0].label,
               "BLIS blis-openmp forced to skx kernels (BLIS_ARCH_TYPE=0), as zotune's");
    }
    snprintf(e[n].env, sizeof e[n].env,
             "LD_LIBRARY_PATH=" BENCH_LIBDIR "blis-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}");
    snprintf(e[n++].label, sizeof e[0].label, "BLIS blis-openmp, kernels as BLIS detects them");
  }
  if (order == PEER_SAME_KERNELS_FIRST)
    n += bench_peer_openblas_omp(&e[n]);
  e[n].env[0] = '\0';
  snprintf(e[n++].label, sizeof e[0].label, "the system's libblas.so.3, as installed");
  return n;
}

/* A peer's line that is not a result: TORCH_INFO (kept in info),
 * TORCH_INFO_END (appended to it), TORCH_SKIP (torch is missing: the reason
 * in errbuf, *skip = 1), or anything else (kept in errbuf: the last such
 * line explains a failure). */
static inline void bench_peer_line(const char *line, char *info, size_t info_len, char *errbuf,
                                   size_t err_len, int *skip)
{
  if (strncmp(line, "TORCH_INFO ", 11) == 0) {
    copy_str(info, info_len, line + 11);
  } else if (strncmp(line, "TORCH_INFO_END ", 15) == 0) {
    size_t il = strlen(info);
    if (il && il + 1 < info_len)
      info[il++] = ' ';
    copy_str(info + il, info_len - il, line + 15);
  } else if (strncmp(line, "TORCH_SKIP ", 11) == 0) {
    copy_str(errbuf, err_len, line + 11);
    *skip = 1;
  } else if (line[0]) {
    copy_str(errbuf, err_len, line);
  }
}

/* ---- options ------------------------------------------------------------ */

struct bench_opts {
  int reps, quick, no_peer;
  char peer[1024];      /* the peer script */
  const char *peer_var; /* the environment variable that names it */
  const char *peer_env; /* --peer-env, or NULL */
};

/* Defaults: `reps` repetitions, and the peer script from the environment
 * variable var, else the file `script` in peers/ beside src (the caller's
 * __FILE__). */
static inline void bench_opts_init(struct bench_opts *o, int reps, const char *var,
                                   const char *src, const char *script)
{
  memset(o, 0, sizeof *o);
  o->reps = reps;
  o->peer_var = var;
  const char *env = getenv(var), *slash = strrchr(src, '/');
  if (env && env[0])
    snprintf(o->peer, sizeof o->peer, "%s", env);
  else if (slash)
    snprintf(o->peer, sizeof o->peer, "%.*speers/%s", (int)(slash - src + 1), src, script);
  else
    snprintf(o->peer, sizeof o->peer, "peers/%s", script);
}

/* argv[*i] as one of the shared options: 1 when it is one (*i then moves
 * past its value), 0 when it is not, -1 when --reps is outside
 * 1..BENCH_MAX_REPS. */
static inline int bench_opts_arg(struct bench_opts *o, int argc, char **argv, int *i)
{
  const char *a = argv[*i];
  const int has_value = *i + 1 < argc;
  if (strcmp(a, "--reps") == 0 && has_value) {
    o->reps = atoi(argv[++*i]);
    return o->reps >= 1 && o->reps <= BENCH_MAX_REPS ? 1 : -1;
  }
  if (strcmp(a, "--quick") == 0)
    o->quick = 1;
  else if (strcmp(a, "--no-peer") == 0)
    o->no_peer = 1;
  else if (strcmp(a, "--peer") == 0 && has_value)
    snprintf(o->peer, sizeof o->peer, "%s", argv[++*i]);
  else if (strcmp(a, "--peer-env") == 0 && has_value)
    o->peer_env = argv[++*i];
  else
    return 0;
  return 1;
}

/* ---- running the peer --------------------------------------------------- */

/* The fields every peer's result line has: milliseconds per repetition
 * (median, min, max), the loss per token, and its threads' wait for a CPU. */
struct peer_result {
  int ok; /* a result came */
  double ms, lo, hi, loss, wait;
};

/* One run of the peer: one model at one thread count. */
struct peer_run {
  int ran, env_i;  /* it ran, last with envs[env_i] */
  char info[512];  /* its TORCH_INFO (and TORCH_INFO_END) */
  char err[512];   /* its last line that was neither a result nor info */
};

struct peer_state {
  const char *script; /* the bench_opts' peer */
  int reps;
  struct peer_env envs[MAX_PEER_ENVS];
  int n_envs;
  struct peer_run run[N_MODELS][BENCH_MAX_THREADS + 1];
  /* why the peer did not run (--no-peer, no python, no script, torch
   * cannot be imported), as printed; "" while it can */
  char skipped[1280];
};

/* What bench_peer_model needs of a benchmark: its cases, and how its peer
 * names them and reports on them. */
struct peer_job {
  int n_cases;
  int (*wants)(int ci, int model, int threads);  /* whether to run case ci */
  void (*item)(char *buf, size_t len, int ci);   /* case ci as a --cases item */
  /* a line of the peer's output: 1 when it is a result (stored), 0 when it
   * is a result for no case asked for, -1 when it is not a result */
  int (*result)(const char *line, int model, int threads);
  void (*before_run)(void); /* NULL, or called before each run */
};

/* Whether the peer can run (else ps->skipped says why) and the BLAS setups
 * to try it with. ps keeps a pointer to o's script. */
static inline void bench_peer_setup(struct peer_state *ps, const struct bench_opts *o,
                                    enum bench_peer_order order)
{
  ps->script = o->peer;
  ps->reps = o->reps;
  ps->n_envs = bench_peer_envs(ps->envs, o->peer_env, order);
  ps->skipped[0] = '\0';
  if (o->no_peer)
    snprintf(ps->skipped, sizeof ps->skipped, "Skipped (--no-peer).");
  else if (access(PEER_PYTHON, X_OK) != 0)
    snprintf(ps->skipped, sizeof ps->skipped, "SKIPPED: %s is not executable.", PEER_PYTHON);
  else if (access(o->peer, R_OK) != 0)
    snprintf(ps->skipped, sizeof ps->skipped,
             "SKIPPED: peer script %s not found (set %s or --peer).", o->peer, o->peer_var);
}

/* Runs the peer once for model mi at `threads` threads over the cases in
 * list (the --cases value), with env before the command. Returns the number
 * of results, or -1 when the peer reports that torch cannot be imported. */
static inline int bench_peer_run(const struct peer_state *ps, const struct peer_job *job,
                                 const char *env, int mi, int threads, const char *list,
                                 struct peer_run *pr)
{
  char qs[1200], cmd[2400];
  shell_quote(qs, sizeof qs, ps->script);
  snprintf(cmd, sizeof cmd,
           "%s%sBLIS_NUM_THREADS=%d OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d "
           "MKL_NUM_THREADS=%d %s %s --model %s --cases %s --threads %d --reps %d 2>&1",
           env, env[0] ? " " : "", threads, threads, threads, threads, PEER_PYTHON, qs,
           model_names[mi], list, threads, ps->reps);
  fflush(stdout);
  pr->info[0] = '\0';
  pr->err[0] = '\0';
  FILE *p = popen(cmd, "r");
  if (!p) {
    snprintf(pr->err, sizeof pr->err, "popen failed");
    return 0;
  }
  char line[1024];
  int got = 0, skip = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = '\0';
    const int r = job->result(line, mi, threads);
    if (r > 0)
      got++;
    else if (r < 0)
      bench_peer_line(line, pr->info, sizeof pr->info, pr->err, sizeof pr->err, &skip);
  }
  int st = pclose(p);
  if (!skip && got == 0 && !pr->err[0])
    snprintf(pr->err, sizeof pr->err, "peer exited with status %d and printed no result", st);
  return skip ? -1 : got;
}

/* The peer for model mi at each thread count (BENCH_MAX_THREADS down to
 * 1), over the cases job wants, in one process per BLAS setup tried: the
 * first setup that gives a result is kept. Nothing when the peer cannot
 * run, or once torch turned out missing. */
static inline void bench_peer_model(struct peer_state *ps, const struct peer_job *job, int mi)
{
  for (int th = BENCH_MAX_THREADS; th >= 1 && !ps->skipped[0]; th--) {
    char list[256] = "", item[64];
    size_t o = 0;
    int any = 0;
    for (int ci = 0; ci < job->n_cases; ci++) {
      if (!job->wants(ci, mi, th))
        continue;
      any = 1;
      job->item(item, sizeof item, ci);
      int n = snprintf(list + o, sizeof list - o, "%s%s", o ? "," : "", item);
      if (n < 0 || (size_t)n >= sizeof list - o)
        break;
      o += (size_t)n;
    }
    if (!any)
      continue;
    struct peer_run *pr = &ps->run[mi][th];
    for (int e = 0; e < ps->n_envs; e++) {
      if (job->before_run)
        job->before_run();
      int got = bench_peer_run(ps, job, ps->envs[e].env, mi, th, list, pr);
      if (got < 0) {
        snprintf(ps->skipped, sizeof ps->skipped, "SKIPPED: %s cannot import torch (%s).",
                 PEER_PYTHON, pr->err);
        break;
      }
      pr->ran = 1;
      pr->env_i = e;
      if (got > 0)
        break; /* else: this BLAS setup failed, try the next */
    }
  }
}

/* Under the peer's heading: why it did not run (then returns -1), or each
 * run's BLAS setup, the peer's description of itself and its last other
 * line (0). */
static inline int bench_peer_print_runs(const struct peer_state *ps)
{
  if (ps->skipped[0]) {
    printf("%s\n", ps->skipped);
    return -1;
  }
  for (int mi = 0; mi < N_MODELS; mi++)
    for (int th = BENCH_MAX_THREADS; th >= 1; th--) {
      const struct peer_run *pr = &ps->run[mi][th];
      if (!pr->ran)
        continue;
      const struct peer_env *e = &ps->envs[pr->env_i];
      printf("- %s, %d thr: BLAS setup: %s [%s]\n  peer: %s\n", model_names[mi], th, e->label,
             e->env[0] ? e->env : "no variables", pr->info[0] ? pr->info : "-");
      if (pr->err[0])
        printf("  last other line from the peer: %s\n", pr->err);
    }
  return 0;
}

#endif
