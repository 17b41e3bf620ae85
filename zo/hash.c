#include "zo/hash.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

void zo_sha256(const void *data, size_t n, uint8_t out[32])
{
  unsigned int len = 32;
  EVP_Digest(data, n, out, &len, EVP_sha256(), NULL);
}

void zo_sha256_floats(const float *x, size_t n, uint8_t out[32])
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  zo_sha256(x, n * sizeof *x, out);
#else
#error "zotune hashes parameters as little-endian float32; port zo_sha256_floats"
#endif
}

void zo_hex(const uint8_t h[32], char out[65])
{
  static const char dig[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = dig[h[i] >> 4];
    out[2 * i + 1] = dig[h[i] & 15];
  }
  out[64] = 0;
}

static int nib(char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

int zo_unhex(const char *s, uint8_t out[32])
{
  if (strlen(s) != 64)
    return -1;
  for (int i = 0; i < 32; i++) {
    int a = nib(s[2 * i]), b = nib(s[2 * i + 1]);
    if (a < 0 || b < 0)
      return -1;
    out[i] = (uint8_t)(a << 4 | b);
  }
  return 0;
}

uint32_t zo_crc32(const void *data, size_t n)
{
  return (uint32_t)crc32_z(0L, (const Bytef *)data, n);
}
