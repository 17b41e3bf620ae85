/* safetensors reader (safetensors.h). The 8-byte length and the JSON header
 * are checked before anything else is read; jansson parses the header (and
 * rejects duplicate keys); then every tensor record is checked on its own
 * (dtype, shape, overflow-checked size, bounds) and all of them together
 * (sorted by offset they must tile the buffer, which must end at the end of
 * the file), as SafeTensors::read_metadata and Metadata::validate do. */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/gguf.h"

struct safetensors {
  const uint8_t *b;
  size_t n;
  void *map; /* the mapping to unmap, or NULL for st_open_memory */
  char *label;
  uint64_t data_start; /* 8 + N */
  st_tensor *t;        /* data order */
  size_t n_t;
  size_t *by_name; /* indices into t, sorted by name */
  char **meta;     /* key, value, key, value ... sorted by key */
  size_t n_meta;
};

static const struct {
  const char *name;
  unsigned bits;
} dtypes[ST_N_DTYPES] = {
    [ST_BOOL] = {"BOOL", 8},
    [ST_F4] = {"F4", 4},
    [ST_F6_E2M3] = {"F6_E2M3", 6},
    [ST_F6_E3M2] = {"F6_E3M2", 6},
    [ST_U8] = {"U8", 8},
    [ST_I8] = {"I8", 8},
    [ST_F8_E5M2] = {"F8_E5M2", 8},
    [ST_F8_E4M3] = {"F8_E4M3", 8},
    [ST_F8_E8M0] = {"F8_E8M0", 8},
    [ST_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8},
    [ST_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8},
    [ST_I16] = {"I16", 16},
    [ST_U16] = {"U16", 16},
    [ST_F16] = {"F16", 16},
    [ST_BF16] = {"BF16", 16},
    [ST_I32] = {"I32", 32},
    [ST_U32] = {"U32", 32},
    [ST_F32] = {"F32", 32},
    [ST_C64] = {"C64", 64},
    [ST_F64] = {"F64", 64},
    [ST_I64] = {"I64", 64},
    [ST_U64] = {"U64", 64},
};

const char *st_dtype_name(st_dtype d)
{
  return (unsigned)d < ST_N_DTYPES ? dtypes[d].name : "?";
}

unsigned st_dtype_bits(st_dtype d)
{
  return (unsigned)d < ST_N_DTYPES ? dtypes[d].bits : 0;
}

static int dtype_from_name(const char *s, st_dtype *out)
{
  for (int i = 0; i < ST_N_DTYPES; i++) {
    if (strcmp(dtypes[i].name, s) == 0) {
      *out = (st_dtype)i;
      return 0;
    }
  }
  return -1;
}

static uint64_t get64(const uint8_t *p)
{
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* A name made safe for a message: at most 96 bytes, non-printables as '?'. */
static const char *show(char *dst, size_t cap, const char *s, size_t n)
{
  size_t k = 0;
  for (; k < n && k < 96 && k + 4 < cap; k++)
    dst[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? s[k] : '?';
  if (k < n && k + 4 <= cap) {
    memcpy(dst + k, "...", 3);
    k += 3;
  }
  dst[k] = '\0';
  return dst;
}

