/* model hf: Hugging Face model folders (config.json + safetensors weights
 * + optional tokenizer.json), read into the same model as a GGUF checkpoint.
 *
 * Ownership: model_load_hf returns a model (with its tokenizer, if the folder
 * has one) that model_free releases; nothing else stays open or mapped. */
#ifndef ZOTUNE_MODEL_HF_H
#define ZOTUNE_MODEL_HF_H

#include "model/model.h"

/* Loads dir: config.json ("architectures" LlamaForCausalLM, MistralForCausalLM
 * or Qwen2ForCausalLM -> MODEL_LLAMA with half-split RoPE, the HF layout, so
 * q/k rows are used as stored; GPT2LMHeadModel -> MODEL_GPT2, Conv1D weights
 * transposed to (out, in)); the weights from dir/model.safetensors, or else
 * from the shards listed in dir/model.safetensors.index.json; and
 * dir/tokenizer.json if present (else no tokenizer). F32, F16 and BF16
 * tensors. lm_head.weight absent or tie_word_embeddings: the head is tied.
 *
 * Errors name the file and the key or tensor: MODEL_ENOENT for a missing
 * config.json or weights file, MODEL_ECORRUPT for malformed JSON or
 * safetensors, MODEL_EINVAL for an unknown architecture or an unsupported
 * setting (rope_scaling, another activation, head_dim other than
 * hidden_size / num_attention_heads), MODEL_EMISMATCH for a missing tensor, a
 * wrong shape, or a tensor the model would not use (e.g. an o_proj bias). */
int model_load_hf(const char *dir, model **out, model_err *err);

/* Writes m as a Hugging Face folder: model.safetensors (F32, HF names and
 * layouts: GPT-2 Conv1D weights transposed, Llama q/k rows in HF's half-split
 * order), config.json, and tokenizer.json for byte-level BPE tokenizers
 * (SentencePiece-style ones are not written). dir is created if needed. */
int model_save_hf(const model *m, const char *dir, model_err *err);

#endif
