/* libFuzzer target for the safetensors reader (model/safetensors.c): any
 * input must open or fail with an error value, and whatever opens must keep
 * the format's promises (tensors tile the bytes after the header exactly,
 * sizes match shapes, lookups agree) and convert without a read outside the
 * input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_POSIX_C_SOURCE=200809L \
 *     model/safetensors.c model/gguf.c model/err.c tests/fuzz/fuzz_safetensors.c \
 *     $(pkg-config --cflags --libs jansson) -o fuzz_safetensors
 *   ./fuzz_safetensors -max_total_time=60 CORPUS_DIR
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/safetensors.h"

#define MAX_FLOATS (1u << 22) /* convert tensors up to 16 MiB of floats */

static void check_tensors(const safetensors *st, const uint8_t *buf, size_t size)
{
  model_err err;
  uint64_t header = 0, at = 0;
  for (int k = 7; k >= 0; k--)
    header = header << 8 | buf[k];
  for (size_t i = 0; i < st_n_tensors(st); i++) {
    const st_tensor *t = st_tensor_at(st, i);
    if (st_find(st, t->name) != t || t->n_dims < 0 || t->n_dims > ST_MAX_DIMS)
      abort();
    if ((const uint8_t *)t->data != buf + 8 + header + t->begin || t->begin != at)
      abort();
    if ((const uint8_t *)t->data + t->n_bytes > buf + size)
      abort();
    if (t->n_elems * st_dtype_bits(t->dtype) / 8 != t->n_bytes)
      abort();
    at += t->n_bytes;
    if (t->n_elems > MAX_FLOATS)
      continue;
    float *out = malloc(t->n_elems ? t->n_elems * sizeof *out : 1);
    if (out) {
      int rc = st_tensor_to_f32(st, t, out, &err);
      int convertible = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16;
      if ((rc == 0) != convertible)
        abort();
      free(out);
    }
  }
  if (8 + header + at != size)
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* a copy of exactly size bytes, so ASan sees any read past the end */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  if (size)
    memcpy(buf, data, size);
  safetensors *st = NULL;
  model_err err;
  if (st_open_memory(size ? buf : NULL, size, NULL, &st, &err) != 0) {
    if (strncmp(err.msg, "<memory>: ", 10) != 0)
      abort(); /* every error names the input */
    free(buf);
    return 0;
  }
  check_tensors(st, buf, size);
  for (size_t i = 0; i < st_n_metadata(st); i++) {
    const char *key = st_metadata_key_at(st, i);
    if (!key || !st_metadata(st, key))
      abort();
  }
  const st_tensor *a = st_find(st, "absent");
  if (st_metadata_key_at(st, st_n_metadata(st)) || (a && strcmp(a->name, "absent") != 0))
    abort();
  st_close(st);
  free(buf);
  return 0;
}
