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

typedef struct st_meta {
  char *key, *val;
} st_meta;

struct safetensors {
  const uint8_t *b;
  size_t n;
  void *map; /* the mapping to unmap, or NULL for st_open_memory */
  char *label;
  uint64_t data_start; /* 8 + N */
  st_tensor *t;        /* data order */
  size_t n_t;
  const st_tensor **by_name; /* sorted by name */
  st_meta *meta;             /* sorted by key */
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

/* ---- parsing --------------------------------------------------------------- */

typedef struct rd {
  safetensors *st;
  model_err *err;
} rd;

/* Fails naming the file and the tensor (name NULL: the header as a whole). */
static int rfail(rd *r, const char *name, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int rfail(rd *r, const char *name, int code, const char *fmt, ...)
{
  char m[384], nm[112];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  if (name)
    return model_fail(r->err, code, "%s: tensor '%s': %s", r->st->label,
                      show(nm, sizeof nm, name, strlen(name)), m);
  return model_fail(r->err, code, "%s: %s", r->st->label, m);
}

static const char *fmt_shape(char *buf, size_t cap, const st_tensor *t)
{
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < t->n_dims && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (k < cap)
    snprintf(buf + k, cap - k, "]");
  return buf;
}

/* jansson reports a duplicate key at the byte after its closing quote; the
 * key is the string that ends there. */
static int dup_key(rd *r, const json_error_t *je, uint64_t hn)
{
  const char *h = (const char *)r->st->b + 8;
  char nm[112];
  size_t end = je->position > 0 ? (size_t)je->position - 1 : 0, start = end;
  if (end < hn && end > 0 && h[end] == '"') {
    for (size_t j = end; j-- > 0;) {
      size_t bs = 0;
      while (bs < j && h[j - 1 - bs] == '\\')
        bs++;
      if (h[j] == '"' && bs % 2 == 0) {
        start = j + 1;
        break;
      }
    }
  }
  return rfail(r, NULL, MODEL_ECORRUPT, "header JSON, byte %llu: duplicate key \"%s\"",
               (unsigned long long)(8 + start), show(nm, sizeof nm, h + start, end - start));
}

/* The length, the bounds and the JSON of the header. */
static int read_header(rd *r, json_t **root)
{
  safetensors *st = r->st;
  json_error_t je;
  if (st->n < 8)
    return rfail(r, NULL, MODEL_ECORRUPT,
                 "truncated at byte 0: the header length needs 8 bytes, the file has %zu", st->n);
  uint64_t hn = get64(st->b);
  if (hn > ST_MAX_HEADER)
    return rfail(r, NULL, MODEL_ECORRUPT,
                 "header length %llu at byte 0 is over the limit of %u bytes",
                 (unsigned long long)hn, ST_MAX_HEADER);
  if (hn > st->n - 8)
    return rfail(r, NULL, MODEL_ECORRUPT,
                 "header length %llu at byte 0 runs past the end of the file (%zu bytes follow "
                 "byte 8)",
                 (unsigned long long)hn, st->n - 8);
  st->data_start = 8 + hn;
  if (hn == 0 || st->b[8] != '{')
    return rfail(r, NULL, MODEL_ECORRUPT,
                 "header at byte 8 is not a JSON object (it must start with '{')");
  *root = json_loadb((const char *)st->b + 8, (size_t)hn, JSON_REJECT_DUPLICATES, &je);
  if (!*root) {
    if (json_error_code(&je) == json_error_duplicate_key)
      return dup_key(r, &je, hn);
    return rfail(r, NULL, MODEL_ECORRUPT, "header JSON, byte %llu: %s",
                 (unsigned long long)(8 + (je.position > 0 ? (uint64_t)je.position : 0)), je.text);
  }
  if (!json_is_object(*root))
    return rfail(r, NULL, MODEL_ECORRUPT, "header at byte 8 is not a JSON object");
  return 0;
}

static int nonneg_int(json_t *v, uint64_t *out)
{
  if (!json_is_integer(v) || json_integer_value(v) < 0)
    return -1;
  *out = (uint64_t)json_integer_value(v);
  return 0;
}

/* dtype and shape of one record, and the bytes they need. */
static int read_shape(rd *r, const char *name, json_t *info, st_tensor *t, uint64_t *need)
{
  json_t *dt = json_object_get(info, "dtype"), *shape = json_object_get(info, "shape");
  char nm[112];
  if (!json_is_string(dt))
    return rfail(r, name, MODEL_ECORRUPT, "\"dtype\" missing or not a string");
  if (dtype_from_name(json_string_value(dt), &t->dtype) != 0)
    return rfail(r, name, MODEL_ECORRUPT, "unknown dtype \"%s\"",
                 show(nm, sizeof nm, json_string_value(dt), json_string_length(dt)));
  if (!json_is_array(shape))
    return rfail(r, name, MODEL_ECORRUPT, "\"shape\" missing or not an array");
  if (json_array_size(shape) > ST_MAX_DIMS)
    return rfail(r, name, MODEL_EINVAL, "%zu dimensions; at most %d are supported",
                 json_array_size(shape), ST_MAX_DIMS);
  t->n_dims = (int)json_array_size(shape);
  t->n_elems = 1;
  for (int i = 0; i < ST_MAX_DIMS; i++) {
    uint64_t d = 1;
    if (i < t->n_dims && nonneg_int(json_array_get(shape, (size_t)i), &d) != 0)
      return rfail(r, name, MODEL_ECORRUPT, "shape[%d] is not a non-negative integer", i);
    if (d != 0 && t->n_elems > UINT64_MAX / d)
      return rfail(r, name, MODEL_ECORRUPT, "the element count of its shape overflows");
    t->shape[i] = (int64_t)d;
    t->n_elems *= d;
  }
  unsigned bits = dtypes[t->dtype].bits;
  if (t->n_elems > UINT64_MAX / bits)
    return rfail(r, name, MODEL_ECORRUPT, "the byte size of its shape overflows");
  if (t->n_elems * bits % 8 != 0)
    return rfail(r, name, MODEL_ECORRUPT, "%llu elements of %s do not fill whole bytes",
                 (unsigned long long)t->n_elems, dtypes[t->dtype].name);
  *need = t->n_elems * bits / 8;
  return 0;
}

/* One tensor record: dtype, shape and data_offsets, each on its own. */
static int read_tensor(rd *r, const char *name, json_t *info, st_tensor *t)
{
  safetensors *st = r->st;
  json_t *off = json_object_get(info, "data_offsets");
  uint64_t need = 0, begin, end, buf_size = st->n - st->data_start;
  char sh[160];
  int rc;
  if (!json_is_object(info))
    return rfail(r, name, MODEL_ECORRUPT, "its record is not a JSON object");
  if ((rc = read_shape(r, name, info, t, &need)) != 0)
    return rc;
  if (!json_is_array(off) || json_array_size(off) != 2 ||
      nonneg_int(json_array_get(off, 0), &begin) != 0 ||
      nonneg_int(json_array_get(off, 1), &end) != 0)
    return rfail(r, name, MODEL_ECORRUPT,
                 "\"data_offsets\" missing or not two non-negative integers");
  if (end < begin)
    return rfail(r, name, MODEL_ECORRUPT, "data_offsets [%llu, %llu] end before they begin",
                 (unsigned long long)begin, (unsigned long long)end);
  if (end - begin != need)
    return rfail(r, name, MODEL_ECORRUPT,
                 "shape %s of %s needs %llu bytes, data_offsets [%llu, %llu] hold %llu",
                 fmt_shape(sh, sizeof sh, t), dtypes[t->dtype].name, (unsigned long long)need,
                 (unsigned long long)begin, (unsigned long long)end,
                 (unsigned long long)(end - begin));
  if (end > buf_size)
    return rfail(r, name, MODEL_ECORRUPT,
                 "data_offsets [%llu, %llu] run past the end of the file (the data buffer at "
                 "byte %llu holds %llu bytes)",
                 (unsigned long long)begin, (unsigned long long)end,
                 (unsigned long long)st->data_start, (unsigned long long)buf_size);
  if (!(t->name = strdup(name)))
    return rfail(r, NULL, MODEL_ENOMEM, "out of memory");
  t->begin = begin;
  t->n_bytes = (size_t)(end - begin);
  t->data = st->b + st->data_start + begin;
  return 0;
}

static int read_metadata(rd *r, json_t *meta)
{
  safetensors *st = r->st;
  const char *k;
  json_t *v;
  char nm[112];
  if (json_is_null(meta))
    return 0;
  if (!json_is_object(meta))
    return rfail(r, NULL, MODEL_ECORRUPT, "\"__metadata__\" is not a JSON object");
  st_meta *m = calloc(json_object_size(meta) + 1, sizeof *m);
  if (!m)
    return rfail(r, NULL, MODEL_ENOMEM, "out of memory");
  st->meta = m;
  json_object_foreach(meta, k, v)
  {
    if (!json_is_string(v))
      return rfail(r, NULL, MODEL_ECORRUPT, "\"__metadata__\" key \"%s\" is not a string",
                   show(nm, sizeof nm, k, strlen(k)));
    m[st->n_meta].key = strdup(k);
    m[st->n_meta].val = strdup(json_string_value(v));
    st->n_meta++;
    if (!m[st->n_meta - 1].key || !m[st->n_meta - 1].val)
      return rfail(r, NULL, MODEL_ENOMEM, "out of memory");
  }
  return 0;
}

static int data_cmp(const void *a, const void *b)
{
  const st_tensor *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->n_bytes != y->n_bytes)
    return x->n_bytes < y->n_bytes ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int name_cmp(const void *a, const void *b)
{
  const st_tensor *const *x = a, *const *y = b;
  return strcmp((*x)->name, (*y)->name);
}

static int meta_cmp(const void *a, const void *b)
{
  const st_meta *x = a, *y = b;
  return strcmp(x->key, y->key);
}

/* Sorted by offset, the tensors must tile the buffer: each begins where the
 * previous one ends, and the last ends at the end of the file. */
static int check_tiling(rd *r)
{
  safetensors *st = r->st;
  uint64_t at = 0, buf_size = st->n - st->data_start;
  char nm[112];
  qsort(st->t, st->n_t, sizeof *st->t, data_cmp);
  for (size_t i = 0; i < st->n_t; i++) {
    const st_tensor *t = &st->t[i], *prev = i ? &st->t[i - 1] : NULL;
    if (t->begin > at)
      return rfail(r, t->name, MODEL_ECORRUPT,
                   "data_offsets [%llu, %llu] leave a gap of %llu bytes after %s%s%s (byte %llu "
                   "of the file)",
                   (unsigned long long)t->begin, (unsigned long long)(t->begin + t->n_bytes),
                   (unsigned long long)(t->begin - at), prev ? "tensor '" : "the header",
                   prev ? show(nm, sizeof nm, prev->name, strlen(prev->name)) : "", prev ? "'" : "",
                   (unsigned long long)(st->data_start + at));
    if (t->begin < at)
      return rfail(r, t->name, MODEL_ECORRUPT,
                   "data_offsets [%llu, %llu] overlap tensor '%s', which ends at %llu",
                   (unsigned long long)t->begin, (unsigned long long)(t->begin + t->n_bytes),
                   show(nm, sizeof nm, prev->name, strlen(prev->name)), (unsigned long long)at);
    at = t->begin + t->n_bytes;
  }
  if (at != buf_size)
    return rfail(r, NULL, MODEL_ECORRUPT,
                 "%llu trailing bytes from byte %llu to the end of the file belong to no tensor",
                 (unsigned long long)(buf_size - at), (unsigned long long)(st->data_start + at));
  return 0;
}

static int parse(rd *r)
{
  safetensors *st = r->st;
  json_t *root = NULL, *v, *meta = NULL;
  const char *k;
  int rc = read_header(r, &root);
  if (rc != 0)
    goto out;
  size_t cap = json_object_size(root);
  st->t = calloc(cap ? cap : 1, sizeof *st->t);
  st->by_name = calloc(cap ? cap : 1, sizeof *st->by_name);
  if (!st->t || !st->by_name) {
    rc = rfail(r, NULL, MODEL_ENOMEM, "out of memory");
    goto out;
  }
  json_object_foreach(root, k, v)
  {
    if (strcmp(k, "__metadata__") == 0)
      meta = v;
    else if ((rc = read_tensor(r, k, v, &st->t[st->n_t])) != 0)
      goto out;
    else
      st->n_t++;
  }
  if (meta && (rc = read_metadata(r, meta)) != 0)
    goto out;
  if ((rc = check_tiling(r)) != 0)
    goto out;
  for (size_t i = 0; i < st->n_t; i++)
    st->by_name[i] = &st->t[i];
  qsort(st->by_name, st->n_t, sizeof *st->by_name, name_cmp);
  if (st->n_meta)
    qsort(st->meta, st->n_meta, sizeof *st->meta, meta_cmp);
out:
  json_decref(root);
  return rc;
}

/* ---- opening ---------------------------------------------------------------- */

static int open_common(const uint8_t *b, size_t n, const char *label, void *map, safetensors **out,
                       model_err *err)
{
  safetensors *st = calloc(1, sizeof *st);
  if (!st || !(st->label = strdup(label))) {
    free(st);
    if (map)
      munmap(map, n);
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory", label);
  }
  st->b = b;
  st->n = n;
  st->map = map;
  rd r = {st, err};
  int rc = parse(&r);
  if (rc != 0) {
    st_close(st);
    return rc;
  }
  *out = st;
  return 0;
}

int st_open(const char *path, safetensors **out, model_err *err)
{
  void *map;
  size_t n;
  int rc = model_map_file(path, &map, &n, err);
  return rc != 0 ? rc : open_common(map, n, path, map, out, err);
}

int st_open_memory(const void *buf, size_t n, const char *label, safetensors **out, model_err *err)
{
  if (!label)
    label = "<memory>";
  if (!buf && n > 0)
    return model_fail(err, MODEL_EINVAL, "%s: NULL buffer", label);
  return open_common(buf, n, label, NULL, out, err);
}

void st_close(safetensors *st)
{
  if (!st)
    return;
  for (size_t i = 0; i < st->n_t; i++)
    free((char *)st->t[i].name);
  for (size_t i = 0; i < st->n_meta; i++) {
    free(st->meta[i].key);
    free(st->meta[i].val);
  }
  free(st->t);
  free(st->by_name);
  free(st->meta);
  if (st->map)
    munmap(st->map, st->n);
  free(st->label);
  free(st);
}

/* ---- lookups ---------------------------------------------------------------- */

const char *st_label(const safetensors *st)
{
  return st->label;
}

size_t st_n_tensors(const safetensors *st)
{
  return st->n_t;
}

const st_tensor *st_tensor_at(const safetensors *st, size_t i)
{
  return i < st->n_t ? &st->t[i] : NULL;
}

const st_tensor *st_find(const safetensors *st, const char *name)
{
  st_tensor key = {.name = name};
  const st_tensor *kp = &key;
  if (st->n_t == 0)
    return NULL;
  const st_tensor **hit = bsearch(&kp, st->by_name, st->n_t, sizeof *st->by_name, name_cmp);
  return hit ? *hit : NULL;
}

const char *st_metadata(const safetensors *st, const char *key)
{
  st_meta k = {(char *)key, NULL};
  if (st->n_meta == 0)
    return NULL;
  const st_meta *hit = bsearch(&k, st->meta, st->n_meta, sizeof *st->meta, meta_cmp);
  return hit ? hit->val : NULL;
}

size_t st_n_metadata(const safetensors *st)
{
  return st->n_meta;
}

const char *st_metadata_key_at(const safetensors *st, size_t i)
{
  return i < st->n_meta ? st->meta[i].key : NULL;
}

/* ---- tensor data ------------------------------------------------------------- */

static uint16_t get16(const uint8_t *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

int st_tensor_to_f32(const safetensors *st, const st_tensor *t, float *out, model_err *err)
{
  const uint8_t *p = t->data;
  uint64_t n = t->n_elems;
  char nm[112];
  switch (t->dtype) {
  case ST_F32:
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (n)
      memcpy(out, p, (size_t)n * sizeof *out);
#else
    for (uint64_t i = 0; i < n; i++) {
      uint32_t u = (uint32_t)get16(p + 4 * i) | (uint32_t)get16(p + 4 * i + 2) << 16;
      memcpy(&out[i], &u, sizeof u);
    }
#endif
    return 0;
  case ST_F16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = gguf_f16_to_f32(get16(p + 2 * i));
    return 0;
  case ST_BF16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = gguf_bf16_to_f32(get16(p + 2 * i));
    return 0;
  default:
    return model_fail(err, MODEL_EINVAL,
                      "%s: tensor '%s': dtype %s cannot be converted to f32 (F32, F16 and BF16 "
                      "can)",
                      st->label, show(nm, sizeof nm, t->name, strlen(t->name)),
                      st_dtype_name(t->dtype));
  }
}
