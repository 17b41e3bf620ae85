/* model tokenizers: GPT-2 byte-level BPE (TOK_BPE, GGUF tokenizer.ggml.model
 * "gpt2") and SentencePiece-style BPE with byte fallback (TOK_SPM, "llama"),
 * built from GGUF-like metadata (tok_spec) or a Hugging Face tokenizer.json.
 *
 * Ownership: tok_new and tok_load_hf_json allocate a tokenizer that tok_free
 * frees; tok_new copies everything it needs from the spec, so the spec's arrays
 * may be freed as soon as it returns. tok_encode and tok_decode return
 * malloc'd buffers the caller frees (with free). A tok_spec filled by
 * tok_get_spec points into the tokenizer and is valid until tok_free; one
 * filled by tok_bytes_spec points to static storage and is always valid.
 * A tokenizer is immutable after tok_new: any number of threads may encode and
 * decode with it at once.
 *
 * Special tokens: text is always encoded as text. A control token's string
 * (e.g. "<|eos|>" or "<s>") appearing in the input is tokenized like any other
 * characters, never mapped to the control id; only add_special adds BOS.
 */
#ifndef ZOTUNE_MODEL_TOKENIZER_H
#define ZOTUNE_MODEL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "model/err.h"

enum tok_kind {
  TOK_BPE = 1, /* GPT-2 byte-level BPE ("gpt2") */
  TOK_SPM = 2  /* SentencePiece-style BPE with byte fallback ("llama") */
};

/* tokenizer.ggml.token_type values */
enum tok_type {
  TOK_TYPE_NORMAL = 1,
  TOK_TYPE_UNKNOWN = 2,
  TOK_TYPE_CONTROL = 3,
  TOK_TYPE_USER = 4,
  TOK_TYPE_UNUSED = 5,
  TOK_TYPE_BYTE = 6
};

/* What a loader (GGUF metadata or tokenizer.json) provides; copied by tok_new.
 *
 * Which tokens encoding may produce: with types, those of type NORMAL or USER
 * (plus, for TOK_SPM, the BYTE tokens "<0xXX>" through byte fallback); without
 * types, every token except bos/eos/unk and, for TOK_SPM, "<0xXX>". Two such
 * tokens with the same string are an error (MODEL_ECORRUPT); other duplicates
 * are allowed (a merge naming the string means the encodable token, if any,
 * else the first). */
typedef struct tok_spec {
  enum tok_kind kind;
  size_t n_vocab;
  const char *const *tokens; /* (n_vocab) byte-level BPE: GPT-2's byte-to-unicode encoded
                                form; SPM: U+2581 for space, "<0xXX>" byte tokens */
  const size_t *token_lens;  /* (n_vocab) may be NULL: then NUL-terminated */
  const float *scores;       /* (n_vocab) SPM merge priority, higher first. NULL: derived
                                from merges (token made by merge r scores -r, tokens no
                                merge makes score -n_merges-1); may be NULL for TOK_BPE */
  const int32_t *types;      /* (n_vocab) enum tok_type; may be NULL */
  size_t n_merges;           /* "left right" strings, rank = index: used by TOK_BPE,
                                and by TOK_SPM only to derive missing scores */
  const char *const *merges;
  int32_t bos_id, eos_id, unk_id; /* -1 when absent */
  int add_bos;                    /* prepend BOS when encoding with add_special */
  int add_space_prefix;           /* SPM: prepend a space (U+2581) to non-empty text, as
                                     SentencePiece/llama do (loaders default to 1) */
} tok_spec;

typedef struct tokenizer tokenizer;

/* Validates and copies spec. Errors: MODEL_EINVAL for a bad argument (kind,
 * ids out of range, NULL arrays, a type outside 1..6, a NaN score), and
 * MODEL_ECORRUPT for an inconsistent vocabulary (duplicate tokens, a merge
 * naming an unknown token, by merge index). */
int tok_new(const tok_spec *spec, tokenizer **out, model_err *err);
void tok_free(tokenizer *t);

/* Loads a Hugging Face tokenizer.json with model.type "BPE". A ByteLevel
 * pre-tokenizer makes a TOK_BPE (GPT-2 regex); otherwise it is the
 * SentencePiece-style "▁" BPE (TOK_SPM, scores derived from the merge ranks,
 * add_space_prefix from a Prepend("▁") normalizer or a Metaspace
 * pre-tokenizer). added_tokens are placed at their ids, special ones as
 * control tokens. BOS: the special token a TemplateProcessing post-processor
 * puts first (then add_bos = 1), else a special token named <s>, <bos>,
 * <|bos|>, <|begin_of_text|> or <|startoftext|>. EOS: a special token named
 * </s>, <eos>, <|eos|>, <|end_of_text|> or <|endoftext|>; when only
 * <|endoftext|> exists it is BOS as well (GPT-2). unk: model.unk_token.
 * Errors name the file: MODEL_ENOENT/MODEL_EIO if it cannot be read,
 * MODEL_ECORRUPT for malformed JSON, a missing model or vocab, duplicate
 * tokens or ids, bad merges (by index), MODEL_EINVAL for what is valid but
 * unsupported (another model type, a Split/custom-regex pre-tokenizer). */
int tok_load_hf_json(const char *path, tokenizer **out, model_err *err);

size_t tok_n_vocab(const tokenizer *t);
enum tok_kind tok_get_kind(const tokenizer *t);
int32_t tok_bos(const tokenizer *t);
int32_t tok_eos(const tokenizer *t);
int32_t tok_unk(const tokenizer *t);

/* Fills spec with views of the tokenizer's vocabulary (for writing GGUF
 * tokenizer.ggml.* metadata). token_lens, types and, for TOK_SPM, scores are
 * always set (types derived if the source had none). */
void tok_get_spec(const tokenizer *t, tok_spec *spec);

/* Encodes text (len bytes: any bytes, including NUL and invalid UTF-8) into
 * *ids (malloc'd, never NULL on success; caller frees), *n ids. add_special:
 * prepend BOS when the tokenizer's add_bos says so. Errors: MODEL_EINVAL when
 * a piece has no token and the vocabulary has no unknown token, or for text
 * over 1 GiB (encode it in parts); MODEL_ENOMEM. */
int tok_encode(const tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
               size_t *n, model_err *err);

/* Decodes ids to bytes (*text malloc'd, NUL-terminated for convenience; *len
 * excludes the NUL). Control tokens (BOS/EOS) decode to nothing; TOK_SPM with
 * add_space_prefix drops one leading space of the result. Out-of-range ids:
 * MODEL_EINVAL naming the id. */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
               model_err *err);

/* Splits text into the pieces BPE merges within (TOK_BPE: the GPT-2
 * pre-tokenizer regex, each invalid UTF-8 byte a piece of its own; TOK_SPM:
 * the whole text is one piece). *ends (malloc'd) gets the end offset of each
 * piece, *n the count. For tests and debugging. */
int tok_split(const tokenizer *t, const char *text, size_t len, size_t **ends, size_t *n,
              model_err *err);

/* The byte-level vocabulary `zotune init-model --vocab bytes` writes: TOK_BPE,
 * ids 0..255 = the bytes (as GPT-2 byte-to-unicode strings), 256 "<|bos|>",
 * 257 "<|eos|>" (control), no merges, add_bos 1. The spec points to static
 * storage. Returns 0. */
#define TOK_BYTES_N_VOCAB 258
int tok_bytes_spec(tok_spec *spec);

#endif
