/* model: which BLIS kernels run. Debian's BLIS 0.9.0 chooses its kernels
 * from the CPU's brand string and, on the VMs we run on, falls back to AVX2
 * ("haswell") or even "generic" kernels on AVX-512 machines (8x slower here:
 * docs/benchmarks.md). zotune links BLIS statically and provides the one
 * function BLIS asks, bli_cpuid_query_id, deciding from CPU features the
 * operating system has enabled: AVX-512F -> skx, AVX2+FMA -> zen3 (AMD) or
 * haswell, AVX -> sandybridge, else generic. So the AVX-512 kernels run
 * where they can and never where they cannot. BLIS_ARCH_TYPE in the
 * environment still overrides (BLIS reads it before asking us). */
#include "config.h"

#include <stdio.h>

#include "model/model.h"

#ifdef ZOTUNE_OPENBLAS
char *openblas_get_config(void);

const char *model_blas_info(void)
{
  static char buf[160];
  snprintf(buf, sizeof buf, "OpenBLAS (%s) through CBLAS", openblas_get_config());
  return buf;
}
#else
#include <blis.h>

#if defined(ZOTUNE_BLIS_ARCH_OVERRIDE) && defined(__x86_64__)

arch_t bli_cpuid_query_id(void)
{
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f"))
    return BLIS_ARCH_SKX;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return __builtin_cpu_is("amd") ? BLIS_ARCH_ZEN3 : BLIS_ARCH_HASWELL;
  if (__builtin_cpu_supports("avx"))
    return BLIS_ARCH_SANDYBRIDGE;
  return BLIS_ARCH_GENERIC;
}
#define CHOSEN "chosen by zotune"
#else
#define CHOSEN "chosen by BLIS"
#endif

/* Also what makes the linker take this file (and so the function above)
 * from libzotune.a before it reaches libblis.a. */
const char *model_blas_info(void)
{
  static char buf[96];
  snprintf(buf, sizeof buf, "BLIS %s, %s kernels (%s)", bli_info_get_version_str(),
           bli_arch_string(bli_arch_query_id()), CHOSEN);
  return buf;
}
#endif
