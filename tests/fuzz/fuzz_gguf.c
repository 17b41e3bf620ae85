/* libFuzzer target for the GGUF reader (model/gguf.c): any input must open
 * or fail with an error value, and whatever opens must be readable through
 * every getter and converter without a read outside the input.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -I. -D_POSIX_C_SOURCE=200809L \
 *     model/gguf.c model/err.c tests/fuzz/fuzz_gguf.c -o fuzz_gguf
 *   ./fuzz_gguf -max_total_time=60 tests/fuzz/corpus/gguf
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

#define MAX_FLOATS (1u << 22) /* convert tensors up to 16 MiB of floats */

static void touch_key(const gguf *g, const char *key)
{
  model_err err;
  int64_t iv;
  double dv;
  int bv;
  const char *s;
  size_t len;
  enum gguf_vtype et;
  uint64_t count;
  volatile uint8_t sink = 0;
  gguf_get_int(g, key, &iv, &err);
  gguf_get_float(g, key, &dv, &err);
  gguf_get_bool(g, key, &bv, &err);
  if (gguf_get_str(g, key, &s, &len, &err) == 0 && len > 0)
    sink ^= (uint8_t)(s[0] ^ s[len - 1]);
  if (gguf_get_arr(g, key, &et, &count, &err) != 0)
    return;
  /* first, last and one past the last element */
  uint64_t idx[3] = {0, count ? count - 1 : 0, count};
  for (int k = 0; k < 3; k++) {
    gguf_arr_int(g, key, idx[k], &iv, &err);
    gguf_arr_float(g, key, idx[k], &dv, &err);
    if (gguf_arr_str(g, key, idx[k], &s, &len, &err) == 0 && len > 0)
      sink ^= (uint8_t)(s[0] ^ s[len - 1]);
  }
  (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  /* a copy of exactly size bytes, so ASan sees any read past the end */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  if (size)
    memcpy(buf, data, size);
  gguf *g = NULL;
  model_err err;
  if (gguf_open_memory(buf, size, NULL, &g, &err) != 0) {
    free(buf);
    return 0;
  }
  for (size_t i = 0; i < gguf_n_keys(g); i++) {
    const char *key = gguf_key_at(g, i);
    if (!gguf_has_key(g, key))
      abort();
    touch_key(g, key);
  }
  touch_key(g, "absent.key");
  for (size_t i = 0; i < gguf_n_tensors(g); i++) {
    const gguf_tensor *t = gguf_tensor_at(g, i);
    if (gguf_find_tensor(g, t->name) != t)
      abort();
    if ((const uint8_t *)t->data < buf || (const uint8_t *)t->data + t->n_bytes > buf + size)
      abort();
    if (t->n_elems > MAX_FLOATS)
      continue;
    float *out = malloc(t->n_elems ? t->n_elems * sizeof *out : 1);
    if (out) {
      gguf_tensor_to_f32(g, t, out, &err);
      free(out);
    }
  }
  gguf_close(g);
  free(buf);
  return 0;
}
