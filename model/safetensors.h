/* safetensors container: a validating reader. Layout and rules:
 * huggingface/safetensors README "Format" and shared/reference/c-toolbox.md
 * §3.2 (u64 header length N <= 100,000,000, an N-byte JSON object that starts
 * with '{', then the byte buffer the tensors tile exactly).
 *
 * Ownership: st_open maps the file read-only and st_close unmaps it;
 * st_open_memory references the caller's buffer, which must outlive the
 * safetensors. Every pointer a safetensors hands out (tensor records, their
 * names and data, metadata strings) is valid until st_close. Tensor data is
 * not necessarily aligned for its type (the data section starts at byte
 * 8 + N): read it with memcpy, or through st_tensor_to_f32.
 */
#ifndef ZOTUNE_MODEL_SAFETENSORS_H
#define ZOTUNE_MODEL_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "model/err.h"

#define ST_MAX_HEADER 100000000u /* the reference implementation's limit */
#define ST_MAX_DIMS 8

/* Every dtype of the format (Rust enum Dtype, in its order). Files holding
 * any of them open and list; st_tensor_to_f32 converts F32, F16 and BF16. */
typedef enum st_dtype {
  ST_BOOL,
  ST_F4,
  ST_F6_E2M3,
  ST_F6_E3M2,
  ST_U8,
  ST_I8,
  ST_F8_E5M2,
  ST_F8_E4M3,
  ST_F8_E8M0,
  ST_F8_E4M3FNUZ,
  ST_F8_E5M2FNUZ,
  ST_I16,
  ST_U16,
  ST_F16,
  ST_BF16,
  ST_I32,
  ST_U32,
  ST_F32,
  ST_C64,
  ST_F64,
  ST_I64,
  ST_U64,
  ST_N_DTYPES
} st_dtype;

typedef struct st_tensor {
  const char *name; /* NUL-terminated copy owned by the safetensors */
  st_dtype dtype;
  int n_dims;                 /* 0 (a scalar) .. ST_MAX_DIMS */
  int64_t shape[ST_MAX_DIMS]; /* PyTorch order, row-major; shape[n_dims..] are 1 */
  uint64_t n_elems;           /* product of shape (1 for a scalar, 0 if any dim is 0) */
  uint64_t begin;             /* data_offsets[0], relative to the byte buffer */
  size_t n_bytes;             /* data_offsets[1] - data_offsets[0] */
  const void *data;           /* n_bytes readable bytes in the mapping */
} st_tensor;

typedef struct safetensors safetensors;

/* Maps path read-only and validates the whole container (not the tensor
 * values). Errors: MODEL_ENOENT, MODEL_EIO, MODEL_ENOMEM, and MODEL_ECORRUPT
 * for a file that breaks a rule of the format (header length or JSON, an
 * unknown dtype, a shape that does not match its data_offsets, gaps,
 * overlaps, duplicate names, bytes past the last tensor), MODEL_EINVAL for
 * more than ST_MAX_DIMS dimensions. The message names the file and the
 * tensor or the byte offset at fault. */
int st_open(const char *path, safetensors **out, model_err *err);
/* The same over n bytes at buf, which are not copied. label names the buffer
 * in messages (NULL: "<memory>"). */
int st_open_memory(const void *buf, size_t n, const char *label, safetensors **out, model_err *err);
void st_close(safetensors *st);

const char *st_label(const safetensors *st); /* path or label given at open */
size_t st_n_tensors(const safetensors *st);
/* Tensors in data order (by data_offsets; equal offsets, i.e. empty
 * tensors, by name). They live in one array: st_find(...) - st_tensor_at(st,
 * 0) is a tensor's index. */
const st_tensor *st_tensor_at(const safetensors *st, size_t i);
const st_tensor *st_find(const safetensors *st, const char *name); /* NULL if absent */

/* The value of key in "__metadata__", or NULL if absent. */
const char *st_metadata(const safetensors *st, const char *key);
size_t st_n_metadata(const safetensors *st);
/* The i-th metadata pair in name order; NULL past the end. */
const char *st_metadata_key_at(const safetensors *st, size_t i);

const char *st_dtype_name(st_dtype d); /* "F32", ...; "?" if out of range */
/* Size of one element in bits (4 for F4, 6 for F6_*, 64 for C64 ...). */
unsigned st_dtype_bits(st_dtype d);

/* Converts a tensor's data to float32 into out (n_elems floats). F32, F16 and
 * BF16 only; another dtype is MODEL_EINVAL naming the file, tensor and dtype. */
int st_tensor_to_f32(const safetensors *st, const st_tensor *t, float *out, model_err *err);

#endif
