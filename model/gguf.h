/* GGUF container: a validating reader (versions 2 and 3, little-endian) and a
 * writer (version 3). Layout and rules: ggml-org/ggml docs/gguf.md and
 * shared/reference/c-toolbox.md §3.1.
 *
 * Ownership: gguf_open maps the file read-only and gguf_close unmaps it;
 * gguf_open_memory references the caller's buffer, which must outlive the
 * gguf. Every pointer a gguf hands out (tensor records and their names and
 * data, keys, strings) points into the gguf or the mapping and is valid until
 * gguf_close. Strings read from metadata are not NUL-terminated; keys and
 * tensor names are (copies without embedded NUL bytes).
 * gguf_writer_new allocates a writer that gguf_writer_free frees; the writer
 * copies every key, value and tensor it is given.
 */
#ifndef ZOTUNE_MODEL_GGUF_H
#define ZOTUNE_MODEL_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "model/err.h"

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_DIMS 4u
#define GGUF_MAX_DEPTH 8 /* how deeply arrays may nest when reading */

enum gguf_vtype {
  GGUF_U8 = 0,
  GGUF_I8,
  GGUF_U16,
  GGUF_I16,
  GGUF_U32,
  GGUF_I32,
  GGUF_F32,
  GGUF_BOOL,
  GGUF_STRING,
  GGUF_ARRAY,
  GGUF_U64,
  GGUF_I64,
  GGUF_F64
};

/* The tensor types gguf_tensor_to_f32 converts. The reader also knows the
 * sizes of the other common ggml types (see gguf_type_size), so files holding
 * them open and list. */
enum ggml_dtype { GGML_F32 = 0, GGML_F16 = 1, GGML_Q8_0 = 8, GGML_BF16 = 30 };

typedef struct gguf gguf;

typedef struct gguf_tensor {
  const char *name; /* NUL-terminated copy owned by the gguf */
  uint32_t n_dims;  /* 1..4 */
  uint64_t dims[4]; /* ggml order: dims[0] is the contiguous row length (reversed vs
                       PyTorch); dims[n_dims..3] are 1 */
  uint32_t type;    /* ggml type id (enum ggml_dtype or another known type) */
  uint64_t n_elems; /* product of dims */
  uint64_t n_bytes; /* size of the data */
  uint64_t offset;  /* relative to the data section; a multiple of the alignment */
  const void *data; /* points into the mapping; n_bytes readable bytes */
} gguf_tensor;

/* Maps path read-only and validates the whole container (not the tensor
 * values). Errors: MODEL_ENOENT, MODEL_EIO, MODEL_ENOMEM; MODEL_ECORRUPT for
 * a malformed file; MODEL_EINVAL for a well-formed one this reader does not
 * support (version, byte order, unknown tensor type). The message names the
 * file and the byte offset, key or tensor at fault. */
int gguf_open(const char *path, gguf **out, model_err *err);
/* The same over n bytes at buf, which are not copied. label names the buffer
 * in messages (NULL: "<memory>"). */
int gguf_open_memory(const void *buf, size_t n, const char *label, gguf **out, model_err *err);
void gguf_close(gguf *g);

uint32_t gguf_version(const gguf *g);
uint64_t gguf_alignment(const gguf *g);
uint64_t gguf_data_offset(const gguf *g); /* file offset of the data section */
const char *gguf_label(const gguf *g);    /* path or label given at open */

size_t gguf_n_tensors(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, size_t i);           /* file order */
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name); /* NULL if absent */

size_t gguf_n_keys(const gguf *g);
const char *gguf_key_at(const gguf *g, size_t i); /* file order */
int gguf_has_key(const gguf *g, const char *key);
/* The value type of key, or -1 if absent. */
int gguf_key_type(const gguf *g, const char *key);

/* Typed getters: MODEL_ENOENT if the key is absent, MODEL_ECORRUPT if of an
 * incompatible type (the message names key and types), MODEL_EINVAL for an
 * array index out of range. gguf_get_int and gguf_arr_int read any integer
 * type or bool (a u64 above INT64_MAX is MODEL_ECORRUPT); gguf_get_float and
 * gguf_arr_float read f32, f64 or any integer type. */
int gguf_get_int(const gguf *g, const char *key, int64_t *out, model_err *err);
int gguf_get_float(const gguf *g, const char *key, double *out, model_err *err);
int gguf_get_bool(const gguf *g, const char *key, int *out, model_err *err);
int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len, model_err *err);
int gguf_get_arr(const gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *count,
                 model_err *err);
int gguf_arr_str(const gguf *g, const char *key, uint64_t i, const char **s, size_t *len,
                 model_err *err);
int gguf_arr_float(const gguf *g, const char *key, uint64_t i, double *out, model_err *err);
int gguf_arr_int(const gguf *g, const char *key, uint64_t i, int64_t *out, model_err *err);

/* Converts a tensor's data to float32 (F32, F16, BF16, Q8_0 dequantised); out
 * holds n_elems floats. Other types: MODEL_EINVAL naming tensor and type. */
int gguf_tensor_to_f32(const gguf *g, const gguf_tensor *t, float *out, model_err *err);

/* Tells the reader t's data will not be read again (after conversion), so
 * its pages of the mapping may leave memory. t stays valid; reading its data
 * again is allowed (the pages come back from the file). */
void gguf_tensor_done(const gguf *g, const gguf_tensor *t);

/* ggml type table: name ("F32", "Q4_K", ...) or NULL if unknown; elements per
 * block and bytes per block (returns 0, or -1 if unknown). */
const char *gguf_type_name(uint32_t type);
int gguf_type_size(uint32_t type, uint32_t *block, uint32_t *bytes);
const char *gguf_vtype_name(uint32_t vtype); /* "u8" ... "f64", "?" if invalid */

/* Half-precision conversions: exact to f32; from f32 rounding to nearest,
 * ties to even, NaN kept NaN (quiet), overflow to infinity. */
float gguf_f16_to_f32(uint16_t h);
uint16_t gguf_f32_to_f16(float f);
float gguf_bf16_to_f32(uint16_t h);
uint16_t gguf_f32_to_bf16(float f);

/* Writer: version 3, alignment 32 (or general.alignment if set), little-endian.
 * Keys and tensors are written in the order first set/added; set_* replace
 * the value of an existing key in place. They return 0, MODEL_EINVAL (NULL or
 * empty key, NULL value) or MODEL_ENOMEM. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, int v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, size_t n);
int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n);
int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n);
/* Adds a tensor stored as type (F32, F16 or BF16, converted from data with
 * round-to-nearest-even); data (n_elems floats) is copied. dims in ggml order.
 * MODEL_EINVAL for a duplicate name, n_dims outside 1..4, another type or an
 * element count that overflows. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                           uint32_t type, const float *data);
/* Writes path atomically (temporary file in the same directory, fsync,
 * rename, fsync of the directory). MODEL_EINVAL if general.alignment is set
 * to something other than a power of two >= 8. */
int gguf_writer_write(gguf_writer *w, const char *path, model_err *err);

#endif
