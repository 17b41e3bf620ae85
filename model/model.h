/* model: transformer language models (GPT-2 and Llama families) held in one
 * flat float32 parameter buffer with named tensor views, and their forward
 * pass on BLIS.
 *
 * The forward pass never reads the parameter buffer directly: it asks a
 * model_view for each tensor (or a slice of one) right before using it. The
 * plain view returns pointers into the buffer; a perturbed view (built by the
 * caller, e.g. from rng/) materialises theta + eps*z for that slice into
 * scratch, so evaluating L(theta + eps*z) never writes theta (BRIEF §2.2).
 *
 * Ownership: model_new/model_load return a model that model_free releases,
 * with its parameter buffer and tensor table. A model_ws (workspace) belongs
 * to one thread of evaluation at a time; model_ws_free releases it. Pointers
 * returned by a view are valid until the view's second-next get call.
 */
#ifndef ZOTUNE_MODEL_H
#define ZOTUNE_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "model/err.h"

enum model_arch { MODEL_GPT2 = 1, MODEL_LLAMA = 2 };
/* Which pairs RoPE rotates: (2j, 2j+1) as llama.cpp's GGUF llama layout, or
 * (j, j + head_dim/2) as Hugging Face and GGUF qwen2. */
enum model_rope { MODEL_ROPE_INTERLEAVED = 0, MODEL_ROPE_HALF = 1 };

typedef struct model_config {
  enum model_arch arch;
  char name[16]; /* GGUF general.architecture: "gpt2", "llama", "qwen2" */
  int n_layer, n_embd, n_head, n_kv_head, n_ff, n_vocab, n_ctx;
  float norm_eps;
  float rope_theta;
  enum model_rope rope;
  int qkv_bias; /* llama family: q/k/v projections have biases (Qwen2) */
  int tied;     /* the LM head is the token embedding */
} model_config;

#define MODEL_NONE (-1)

/* A named view into the flat buffer. shape is in PyTorch order (rows
 * first); matrices are stored row-major as (out, in). */
typedef struct model_tensor {
  char name[64]; /* GGUF name, e.g. "blk.3.attn_q.weight" */
  int n_dims;
  int64_t shape[2];
  size_t offset; /* first element in the flat buffer */
  size_t n;      /* elements */
} model_tensor;

/* Tensor indices (into model.tensors) of one block; MODEL_NONE if absent. */
typedef struct model_layer {
  int attn_norm_w, attn_norm_b; /* (dim) */
  int wqkv, bqkv;               /* gpt2 fused: (3*dim, dim), (3*dim) */
  int wq, bq;                   /* llama: (dim, dim), (dim) */
  int wk, bk, wv, bv;           /* llama: (kv_dim, dim), (kv_dim) */
  int wo, bo;                   /* (dim, dim), (dim) */
  int ffn_norm_w, ffn_norm_b;   /* (dim) */
  int w_gate;                   /* llama: (ff, dim) */
  int w_up, b_up;               /* (ff, dim), (ff) */
  int w_down, b_down;           /* (dim, ff), (dim) */
} model_layer;

typedef struct tokenizer tokenizer;

typedef struct model {
  model_config cfg;
  float *params; /* n_params floats: every tensor, in tensors[] order */
  size_t n_params;
  model_tensor *tensors;
  int n_tensors;
  int tok_embd;            /* (vocab, dim) */
  int pos_embd;            /* gpt2: (ctx, dim) */
  model_layer *layers;     /* n_layer */
  int out_norm_w, out_norm_b; /* (dim) */
  int output;              /* (vocab, dim), or tok_embd when tied */
  tokenizer *tok;          /* owned; may be NULL */
} model;

/* Checks a config and lays out its tensors (params zeroed). */
int model_new(const model_config *cfg, model **out, model_err *err);
void model_free(model *m);
int model_find_tensor(const model *m, const char *name);
/* Largest tensor, in elements. */
size_t model_max_tensor(const model *m);
/* Largest slice the forward pass requests from a view in one get (whole
 * tensors, except the vocabulary tables, which it reads in row chunks): the
 * scratch a perturbed view needs per buffer. */
size_t model_max_slice(const model *m);

/* How the forward pass reads weights: get returns elements
 * [first, first + n) of tensor t. */
typedef struct model_view {
  const float *(*get)(void *ctx, int t, size_t first, size_t n);
  void *ctx;
} model_view;
/* The unperturbed view: pointers into m->params. */
model_view model_plain_view(const model *m);

/* A batch of B right-padded sequences of length at most T. target[b*T+t]
 * (may be NULL = all real positions) marks whether position t's next-token
 * prediction (of token t+1) counts in the loss. */
typedef struct model_batch {
  int B, T;
  const int32_t *tokens; /* B*T */
  const int *len;        /* B: real length of each sequence (1..T) */
  const uint8_t *target; /* B*T, or NULL */
} model_batch;

/* A workspace for batches of up to B sequences of up to T tokens. */
typedef struct model_ws model_ws;
int model_ws_new(const model *m, int B, int T, model_ws **out, model_err *err);
void model_ws_free(model_ws *ws);
/* The bytes model_ws_new(m, B, T) allocates. */
size_t model_ws_bytes(const model *m, int B, int T);
/* Threads for the whole process's forward passes (BLIS's and the row
 * passes'); 1 by default. */
void model_set_threads(int threads);
/* Threads for the passes run with ws alone: 1 makes every GEMM and row pass
 * of a forward run on the calling thread, so two forwards can run side by
 * side on two threads; 0 (the default) follows model_set_threads. Results do
 * not depend on it. Returns -1 for a negative count. */
int model_ws_set_threads(model_ws *ws, int threads);
/* dst (out x in) = w + scale * b (out x r) a (r x in): a LoRA-adapted
 * weight, row-major; dst may equal w. single: on the calling thread only
 * (its caller runs a forward single-threaded, model_ws_set_threads). */
void model_lora_merge(float *dst, const float *w, const float *b, const float *a, int out, int in,
                      int r, float scale, int single);
/* 1 when two threads may each run a single-threaded forward at the same
 * time without their matrix products sharing (and oversubscribing) one
 * thread pool: always with BLIS; with OpenBLAS only in its OpenMP build. */
int model_concurrent_forwards(void);
/* "BLIS 0.9.0, skx kernels (chosen by zotune)": the GEMM in use. */
const char *model_blas_info(void);

/* Runs the blocks and the final norm; the hidden states stay in ws. */
int model_forward(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                  model_err *err);
/* Logits (n_vocab floats) of position t of sequence s, after model_forward. */
int model_logits_at(const model *m, const model_view *v, const model_ws *ws, int s, int t,
                    float *out, model_err *err);
/* Cross-entropy of next-token prediction summed over counted positions,
 * after model_forward; the LM head is applied in vocabulary chunks, so the
 * B*T*V logits never exist at once. */
int model_loss(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
               double *sum, long *count, model_err *err);
/* The same per sequence: seq_sum[s] and seq_count[s] for s < B. */
int model_loss_seq(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                   double *seq_sum, long *seq_count, model_err *err);

#endif
