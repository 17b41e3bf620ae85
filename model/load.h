/* model load: GGUF checkpoints in and out (llama.cpp names and keys).
 *
 * Ownership: model_load_gguf returns a model (with its tokenizer, if the
 * file has one) that model_free releases. model_save_gguf only reads. */
#ifndef ZOTUNE_MODEL_LOAD_H
#define ZOTUNE_MODEL_LOAD_H

#include <stdint.h>

#include "model/model.h"
#include "model/tokenizer.h"

/* Architectures "gpt2", "llama" (interleaved RoPE) and "qwen2" (half-split
 * RoPE, q/k/v biases); tensors F32, F16, BF16 or Q8_0 (dequantised). Bad or
 * unsupported files are errors naming the file and the key or tensor. */
int model_load_gguf(const char *path, model **out, model_err *err);

/* A GGUF file, or a Hugging Face folder (config.json + safetensors). */
int model_load(const char *path, model **out, model_err *err);

/* Writes m as GGUF version 3: matrices stored as dtype (GGML_F32, GGML_F16
 * or GGML_BF16), vectors as F32, with the metadata llama.cpp reads and the
 * tokenizer described by spec (NULL: none). */
int model_save_gguf(const model *m, const tok_spec *spec, const char *path, uint32_t dtype,
                    model_err *err);

#endif
