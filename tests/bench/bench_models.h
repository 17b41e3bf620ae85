/* bench_models: the two model shapes bench_forward and bench_mezo measure,
 * with random weights (no file):
 *
 *   M_GPT2   GPT-2-124M: 12 layers, dim 768, 12 heads, ffn 3072, vocab 50257,
 *            context 2048, LM head tied to the token embedding;
 *   M_LLAMA  a ~15M Llama (llama2.c's stories15M shape, untied output: 24 M
 *            parameters): 6 layers, dim 288, 6 heads, ffn 768, vocab 32000.
 *
 * Weights U(-0.0346, 0.0346) (std 0.02) from a xorshift stream, norm weights
 * 1, biases 0. Everything is static (inline), as in bench_util.h.
 */
#ifndef ZOTUNE_BENCH_MODELS_H
#define ZOTUNE_BENCH_MODELS_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "model/model.h"

#define BENCH_SEED 0x5EEDF0A4D1234567ull

enum { M_GPT2, M_LLAMA, N_MODELS };

static const char *const model_names[N_MODELS] = {"gpt2", "llama"};

static inline model_config bench_model_config(int which)
{
  static const model_config gpt2 = {.arch = MODEL_GPT2, .name = "gpt2", .n_layer = 12,
                                    .n_embd = 768, .n_head = 12, .n_kv_head = 12,
                                    .n_ff = 3072, .n_vocab = 50257, .n_ctx = 2048,
                                    .norm_eps = 1e-5f, .tied = 1};
  static const model_config llama = {.arch = MODEL_LLAMA, .name = "llama", .n_layer = 6,
                                     .n_embd = 288, .n_head = 6, .n_kv_head = 6, .n_ff = 768,
                                     .n_vocab = 32000, .n_ctx = 2048, .norm_eps = 1e-5f,
                                     .rope_theta = 10000.0f,
                                     .rope = MODEL_ROPE_INTERLEAVED /* llama2.c's pairs */};
  return which == M_GPT2 ? gpt2 : llama;
}

/* xorshift64*: the benchmarks' weights and tokens (not zotune's streams). */
static inline uint64_t bench_next(uint64_t *s)
{
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return x * 0x2545F4914F6CDD1Dull;
}

/* Norm weights 1, biases 0, everything else U(-a, a) with std 0.02. */
static inline void bench_fill_weights(model *m, uint64_t seed)
{
  const float a = 0.02f * 1.7320508f;
  uint64_t s = seed | 1;
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *t = &m->tensors[i];
    float *p = m->params + t->offset;
    if (t->n_dims == 1) {
      float v = strstr(t->name, "norm.weight") ? 1.0f : 0.0f;
      for (size_t j = 0; j < t->n; j++)
        p[j] = v;
      continue;
    }
    for (size_t j = 0; j < t->n; j++) {
      float u = (float)(bench_next(&s) >> 40) * (1.0f / 16777216.0f); /* [0, 1) */
      p[j] = (2.0f * u - 1.0f) * a;
    }
  }
}

/* Model `which` with its random weights; prog names the caller in errors. */
static inline int bench_new_model(const char *prog, int which, model **out)
{
  model_config c = bench_model_config(which);
  model_err err;
  if (model_new(&c, out, &err) != 0) {
    fprintf(stderr, "%s: model_new(%s): %s\n", prog, model_names[which], err.msg);
    return -1;
  }
  bench_fill_weights(*out, BENCH_SEED + (uint64_t)which);
  return 0;
}

#endif
