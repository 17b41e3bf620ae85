/* SHA-256 (OpenSSL) and CRC-32 (zlib) helpers. No allocation. */
#ifndef ZOTUNE_ZO_HASH_H
#define ZOTUNE_ZO_HASH_H

#include <stddef.h>
#include <stdint.h>

void zo_sha256(const void *data, size_t n, uint8_t out[32]);
/* SHA-256 of n float32 values serialised little-endian, in order: the
 * canonical hash of a parameter vector. */
void zo_sha256_floats(const float *x, size_t n, uint8_t out[32]);
/* 64 lowercase hex characters and a NUL. */
void zo_hex(const uint8_t h[32], char out[65]);
/* Parses 64 hex characters; -1 when malformed. */
int zo_unhex(const char *s, uint8_t out[32]);
uint32_t zo_crc32(const void *data, size_t n);

#endif
