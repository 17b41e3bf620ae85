/* Prints the SHA-256 of the first 10^6 values of the named reference stream
 * (docs/random-streams.md §6) for the Gaussian and Rademacher distributions,
 * computed with every generator path this CPU can run; exits 1 if the paths
 * disagree. tests/test_bitexact.sh builds this file with several compilers
 * and optimisation levels and compares against tests/expected.h. */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng/rng.h"

#define N 1000000

static void digest(enum rng_dist d, float *buf, char hex[65])
{
  unsigned char h[32];
  unsigned int len = 32;
  rng_stream s = rng_make(0x5A4F54554E45ull, 0, RNG_PERTURB, 0, 0);
  rng_fill(d, &s, 0, N, buf);
  EVP_Digest(buf, N * sizeof *buf, h, &len, EVP_sha256(), NULL);
  for (int i = 0; i < 32; i++)
    sprintf(hex + 2 * i, "%02x", h[i]);
}

int main(void)
{
  static const enum rng_isa isas[] = {RNG_ISA_SCALAR, RNG_ISA_AVX2, RNG_ISA_AVX512};
  float *buf = malloc(N * sizeof *buf);
  char ref[2][65] = {"", ""}, hex[65];
  int bad = 0;
  if (!buf)
    return 2;
  for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
    if (rng_set_isa(isas[i]) != 0)
      continue;
    for (int d = 0; d < 2; d++) {
      digest(d == 0 ? RNG_GAUSSIAN : RNG_RADEMACHER, buf, hex);
      if (!ref[d][0])
        memcpy(ref[d], hex, 65);
      if (strcmp(ref[d], hex) != 0) {
        fprintf(stderr, "%s path gives %s for %s, scalar gave %s\n", rng_isa_name(isas[i]),
                hex, d ? "rademacher" : "gaussian", ref[d]);
        bad = 1;
      }
    }
    fprintf(stderr, "checked %s path\n", rng_isa_name(isas[i]));
  }
  printf("gaussian %s\nrademacher %s\n", ref[0], ref[1]);
  free(buf);
  return bad;
}
