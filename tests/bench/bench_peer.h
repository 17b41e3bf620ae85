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
 *                    (TORCH_INFO, TORCH_INFO_END, TORCH_SKIP, anything else).
 *
 * Everything is static (inline), as in bench_util.h.
 */
#ifndef ZOTUNE_BENCH_PEER_H
#define ZOTUNE_BENCH_PEER_H

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tests/bench/bench_util.h"

#define BENCH_LIBDIR "/usr/lib/x86_64-linux-gnu/"
#define MAX_PEER_ENVS 5

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

#endif
