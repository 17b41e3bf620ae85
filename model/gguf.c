/* GGUF reader and writer (gguf.h). The reader validates the container in one
 * pass over the mapped bytes: every length and count is checked against the
 * bytes left before it is used, and all size arithmetic is overflow-checked,
 * so a malformed file is an error value, never an out-of-bounds read. Values
 * are not copied: a key-value record keeps a pointer to its bytes. */
#define _DEFAULT_SOURCE /* madvise */
#include "model/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t magic[4] = {'G', 'G', 'U', 'F'};

/* ---- type tables --------------------------------------------------------- */

static const struct {
  uint32_t id;
  const char *name;
  uint32_t block, bytes;
} ggml_types[] = {
    {0, "F32", 1, 4},       {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},    {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},  {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},       {25, "I16", 1, 2},
    {26, "I32", 1, 4},      {27, "I64", 1, 8},      {28, "F64", 1, 8},      {30, "BF16", 1, 2},
};

const char *gguf_type_name(uint32_t type)
{
  for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++)
    if (ggml_types[i].id == type)
      return ggml_types[i].name;
  return NULL;
}

int gguf_type_size(uint32_t type, uint32_t *block, uint32_t *bytes)
{
  for (size_t i = 0; i < sizeof ggml_types / sizeof ggml_types[0]; i++) {
    if (ggml_types[i].id == type) {
      *block = ggml_types[i].block;
      *bytes = ggml_types[i].bytes;
      return 0;
    }
  }
  return -1;
}

static const char *const vtype_names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                          "bool", "string", "array", "u64", "i64", "f64"};
/* Bytes of a fixed-size value; 0 for string and array. */
static const uint8_t vtype_size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
#define N_VTYPES 13u

const char *gguf_vtype_name(uint32_t vtype)
{
  return vtype < N_VTYPES ? vtype_names[vtype] : "?";
}

static int is_int_type(uint32_t t)
{
  return t <= GGUF_I32 || t == GGUF_U64 || t == GGUF_I64;
}

/* ---- little-endian loads and half-precision conversions ------------------- */

static uint16_t get16(const uint8_t *p)
{
  return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static float bits_f32(uint32_t u)
{
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t f32_bits(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

float gguf_f16_to_f32(uint16_t h)
{
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0x1f) /* inf or nan, payload kept */
    return bits_f32(sign | 0x7f800000u | man << 13);
  if (exp != 0)
    return bits_f32(sign | (exp + 112) << 23 | man << 13);
  if (man == 0)
    return bits_f32(sign);
  /* subnormal: man * 2^-24, normalised */
  uint32_t e = 113;
  while (!(man & 0x400)) {
    man <<= 1;
    e--;
  }
  return bits_f32(sign | e << 23 | (man & 0x3ff) << 13);
}

/* Shifts m right by s (1..31) rounding to nearest, ties to even. */
static uint32_t shift_rne(uint32_t m, unsigned s)
{
  uint32_t q = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  return q + (rem > half || (rem == half && (q & 1)));
}

uint16_t gguf_f32_to_f16(float f)
{
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)(x >> 16 & 0x8000);
  uint32_t exp = x >> 23 & 0xff, man = x & 0x7fffff;
  if (exp == 0xff) /* inf, or nan made quiet with the top payload bits kept */
    return (uint16_t)(sign | 0x7c00 | (man ? 0x200 | man >> 13 : 0));
  int e = (int)exp - 112; /* half-precision biased exponent */
  if (e >= 31)
    return (uint16_t)(sign | 0x7c00);
  if (e <= 0) {
    if (e < -10) /* below half the smallest subnormal */
      return sign;
    /* subnormal in units of 2^-24; a carry into 0x400 is the smallest normal */
    return (uint16_t)(sign | shift_rne(man | 0x800000, (unsigned)(14 - e)));
  }
  /* a carry out of the mantissa bumps the exponent, up to infinity */
  return (uint16_t)(sign | shift_rne((uint32_t)e << 23 | man, 13));
}

float gguf_bf16_to_f32(uint16_t h)
{
  return bits_f32((uint32_t)h << 16);
}

uint16_t gguf_f32_to_bf16(float f)
{
  uint32_t x = f32_bits(f);
  if ((x & 0x7fffffff) > 0x7f800000) /* nan: keep it nan, make it quiet */
    return (uint16_t)(x >> 16 | 0x40);
  return (uint16_t)((x + 0x7fff + (x >> 16 & 1)) >> 16);
}

/* An integer value of type t at p: 0, or -1 if t is not an integer type
 * (bool counts) or the value does not fit an int64. */
static int load_int(uint32_t t, const uint8_t *p, int64_t *out)
{
  switch (t) {
  case GGUF_U8:
  case GGUF_BOOL:
    *out = p[0];
    return 0;
  case GGUF_I8:
    *out = (int8_t)p[0];
    return 0;
  case GGUF_U16:
    *out = get16(p);
    return 0;
  case GGUF_I16:
    *out = (int16_t)get16(p);
    return 0;
  case GGUF_U32:
    *out = get32(p);
    return 0;
  case GGUF_I32:
    *out = (int32_t)get32(p);
    return 0;
  case GGUF_I64:
    *out = (int64_t)get64(p);
    return 0;
  case GGUF_U64:
    if (get64(p) > (uint64_t)INT64_MAX)
      return -1;
    *out = (int64_t)get64(p);
    return 0;
  default:
    return -1;
  }
}

static int load_float(uint32_t t, const uint8_t *p, double *out)
{
  int64_t v;
  if (t == GGUF_F32) {
    *out = bits_f32(get32(p));
  } else if (t == GGUF_F64) {
    uint64_t u = get64(p);
    memcpy(out, &u, sizeof *out);
  } else if (t == GGUF_U64) {
    *out = (double)get64(p);
  } else if (t != GGUF_BOOL && load_int(t, p, &v) == 0) {
    *out = (double)v;
  } else {
    return -1;
  }
  return 0;
}

/* ---- the reader's state ----------------------------------------------------- */

typedef struct gguf_kv {
  char *key;
  size_t at; /* file offset of the key */
  uint32_t type;
  const uint8_t *val; /* the value's bytes; for an array, its first element */
  uint64_t len;       /* string: byte length */
  uint32_t elem;      /* array: element type */
  uint64_t count;     /* array: element count */
  size_t *soff;       /* array of strings: file offset of each element */
} gguf_kv;

typedef struct tinfo {
  gguf_tensor t;
  size_t at; /* file offset of the tensor info */
} tinfo;

struct gguf {
  char *label;
  const uint8_t *b;
  size_t n;
  void *map; /* owned mapping of n bytes, or NULL */
  uint32_t version;
  uint64_t alignment, data_start;
  gguf_kv *kv;
  size_t n_kv, kv_cap;
  tinfo *t;
  size_t n_t, t_cap;
  size_t *kidx, *tidx; /* hash indexes: entry i+1, 0 = empty */
  size_t kmask, tmask;
};

/* A name made safe for a message: at most 64 bytes, non-printables as '?'. */
static const char *show(char *dst, size_t cap, const uint8_t *s, size_t n)
{
  size_t k = 0;
  for (; k < n && k < 64 && k + 4 < cap; k++)
    dst[k] = (s[k] >= 0x20 && s[k] < 0x7f) ? (char)s[k] : '?';
  if (k < n && k + 4 <= cap) {
    memcpy(dst + k, "...", 3);
    k += 3;
  }
  dst[k] = '\0';
  return dst;
}

typedef struct rd {
  const gguf *g;
  size_t off;
  char ctx[112]; /* what is being read, for messages: "header", "key 'x'" */
  model_err *err;
} rd;

static int rfail(rd *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int rfail(rd *r, int code, const char *fmt, ...)
{
  char m[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(m, sizeof m, fmt, ap);
  va_end(ap);
  return model_fail(r->err, code, "%s: %s: %s", r->g->label, r->ctx, m);
}

static size_t left(const rd *r)
{
  return r->g->n - r->off;
}

static int need(rd *r, uint64_t k, const char *what)
{
  if (k > left(r))
    return rfail(r, MODEL_ECORRUPT, "truncated at byte %zu: %s needs %llu bytes, %zu left", r->off,
                 what, (unsigned long long)k, left(r));
  return 0;
}

static int rd_u32(rd *r, uint32_t *v, const char *what)
{
  int rc = need(r, 4, what);
  if (rc == 0) {
    *v = get32(r->g->b + r->off);
    r->off += 4;
  }
  return rc;
}

static int rd_u64(rd *r, uint64_t *v, const char *what)
{
  int rc = need(r, 8, what);
  if (rc == 0) {
    *v = get64(r->g->b + r->off);
    r->off += 8;
  }
  return rc;
}

static int rd_str(rd *r, const uint8_t **s, uint64_t *len, const char *what)
{
  size_t at = r->off;
  int rc = rd_u64(r, len, what);
  if (rc != 0)
    return rc;
  if (*len > left(r))
    return rfail(r, MODEL_ECORRUPT, "%s at byte %zu has length %llu, past the end (%zu bytes left)",
                 what, at, (unsigned long long)*len, left(r));
  *s = r->g->b + r->off;
  r->off += (size_t)*len;
  return 0;
}

/* A NUL-terminated copy of a key or tensor name read at byte at. */
static int copy_name(rd *r, const uint8_t *s, uint64_t len, size_t at, char **out)
{
  if (memchr(s, 0, (size_t)len))
    return rfail(r, MODEL_ECORRUPT, "name at byte %zu contains a NUL byte", at);
  *out = malloc((size_t)len + 1);
  if (!*out)
    return rfail(r, MODEL_ENOMEM, "out of memory");
  memcpy(*out, s, (size_t)len);
  (*out)[len] = '\0';
  return 0;
}

/* ---- key-value records ----------------------------------------------------- */

static int parse_array(rd *r, int depth, gguf_kv *kv);

/* Validates and skips one value of type t. */
static int skip_value(rd *r, uint32_t t, int depth)
{
  if (t >= N_VTYPES)
    return rfail(r, MODEL_ECORRUPT, "unknown value type %u before byte %zu", t, r->off);
  if (t == GGUF_ARRAY)
    return parse_array(r, depth, NULL);
  if (t == GGUF_STRING) {
    const uint8_t *s;
    uint64_t len;
    return rd_str(r, &s, &len, "string");
  }
  int rc = need(r, vtype_size[t], vtype_names[t]);
  if (rc != 0)
    return rc;
  if (t == GGUF_BOOL && r->g->b[r->off] > 1)
    return rfail(r, MODEL_ECORRUPT, "invalid bool value %u at byte %zu", r->g->b[r->off], r->off);
  r->off += vtype_size[t];
  return 0;
}

/* Reads an array header and validates its elements; depth is the nesting
 * level of this array (1 for a key's value). A key's array (kv non-NULL)
 * records its element type, count, first element and, for strings, the
 * offset of every element. */
static int parse_array(rd *r, int depth, gguf_kv *kv)
{
  size_t at = r->off;
  uint32_t elem;
  uint64_t count;
  int rc;
  if (depth > GGUF_MAX_DEPTH)
    return rfail(r, MODEL_ECORRUPT, "arrays nested deeper than %d at byte %zu", GGUF_MAX_DEPTH, at);
  if ((rc = rd_u32(r, &elem, "array element type")) != 0 ||
      (rc = rd_u64(r, &count, "array element count")) != 0)
    return rc;
  if (elem >= N_VTYPES)
    return rfail(r, MODEL_ECORRUPT, "array at byte %zu has unknown element type %u", at, elem);
  uint64_t min = elem == GGUF_STRING ? 8 : elem == GGUF_ARRAY ? 12 : vtype_size[elem];
  if (count > left(r) / min)
    return rfail(r, MODEL_ECORRUPT,
                 "array at byte %zu claims %llu %s elements, more than the %zu bytes left hold", at,
                 (unsigned long long)count, vtype_names[elem], left(r));
  if (kv) {
    kv->elem = elem;
    kv->count = count;
    kv->val = r->g->b + r->off;
  }
  if (elem != GGUF_STRING && elem != GGUF_ARRAY && elem != GGUF_BOOL) {
    r->off += (size_t)(count * min);
    return 0;
  }
  size_t *soff = NULL;
  if (kv && elem == GGUF_STRING && count > 0) {
    soff = kv->soff = malloc((size_t)count * sizeof *soff);
    if (!soff)
      return rfail(r, MODEL_ENOMEM, "out of memory for %llu strings", (unsigned long long)count);
  }
  for (uint64_t i = 0; i < count; i++) {
    if (soff)
      soff[i] = r->off;
    if ((rc = skip_value(r, elem, depth + 1)) != 0)
      return rc;
  }
  return 0;
}

static int parse_kv(rd *r, gguf *g, uint64_t i)
{
  size_t at = r->off;
  const uint8_t *name;
  uint64_t len;
  int rc;
  snprintf(r->ctx, sizeof r->ctx, "key #%llu", (unsigned long long)i);
  if ((rc = rd_str(r, &name, &len, "key")) != 0)
    return rc;
  if (g->n_kv == g->kv_cap) {
    size_t cap = g->kv_cap ? 2 * g->kv_cap : 16;
    gguf_kv *kv = realloc(g->kv, cap * sizeof *kv);
    if (!kv)
      return rfail(r, MODEL_ENOMEM, "out of memory");
    g->kv = kv;
    g->kv_cap = cap;
  }
  gguf_kv *kv = &g->kv[g->n_kv];
  memset(kv, 0, sizeof *kv);
  if ((rc = copy_name(r, name, len, at, &kv->key)) != 0)
    return rc;
  g->n_kv++; /* from here on gguf_close frees it */
  kv->at = at;
  char shown[72];
  snprintf(r->ctx, sizeof r->ctx, "key '%s' (byte %zu)", show(shown, sizeof shown, name, len), at);
  if ((rc = rd_u32(r, &kv->type, "value type")) != 0)
    return rc;
  if (kv->type >= N_VTYPES)
    return rfail(r, MODEL_ECORRUPT, "unknown value type %u", kv->type);
  if (kv->type == GGUF_ARRAY)
    return parse_array(r, 1, kv);
  if (kv->type == GGUF_STRING)
    return rd_str(r, &kv->val, &kv->len, "string value");
  kv->val = g->b + r->off;
  return skip_value(r, kv->type, 1);
}

/* ---- name indexes ------------------------------------------------------------ */

static uint64_t hash_name(const char *s)
{
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (uint8_t)*s) * 1099511628211ull;
  return h;
}

typedef const char *(*name_fn)(const gguf *g, size_t i);

static const char *kv_name(const gguf *g, size_t i)
{
  return g->kv[i].key;
}

static const char *t_name(const gguf *g, size_t i)
{
  return g->t[i].t.name;
}

/* Index of name plus one, or 0. */
static size_t idx_find(const gguf *g, name_fn nm, const size_t *tab, size_t mask, const char *s)
{
  if (!tab || !s)
    return 0;
  for (size_t h = (size_t)hash_name(s) & mask;; h = (h + 1) & mask) {
    if (tab[h] == 0 || strcmp(nm(g, tab[h] - 1), s) == 0)
      return tab[h];
  }
}

/* Builds an index of n names. Returns 0, -1 out of memory, or 1 with *dup
 * a name's second occurrence and *first its first. */
static int idx_build(const gguf *g, name_fn nm, size_t n, size_t **tab, size_t *mask, size_t *dup,
                     size_t *first)
{
  size_t cap = 8;
  while (cap < 2 * n)
    cap *= 2;
  *tab = calloc(cap, sizeof **tab);
  if (!*tab)
    return -1;
  *mask = cap - 1;
  for (size_t i = 0; i < n; i++) {
    size_t h = (size_t)hash_name(nm(g, i)) & *mask;
    for (; (*tab)[h] != 0; h = (h + 1) & *mask) {
      if (strcmp(nm(g, (*tab)[h] - 1), nm(g, i)) == 0) {
        *dup = i;
        *first = (*tab)[h] - 1;
        return 1;
      }
    }
    (*tab)[h] = i + 1;
  }
  return 0;
}

static const gguf_kv *lookup(const gguf *g, const char *key)
{
  size_t i = idx_find(g, kv_name, g->kidx, g->kmask, key);
  return i ? &g->kv[i - 1] : NULL;
}

/* ---- tensor infos ---------------------------------------------------------- */

static int parse_tensor(rd *r, gguf *g, uint64_t i)
{
  size_t at = r->off;
  const uint8_t *name;
  uint64_t len;
  int rc;
  snprintf(r->ctx, sizeof r->ctx, "tensor #%llu", (unsigned long long)i);
  if ((rc = rd_str(r, &name, &len, "tensor name")) != 0)
    return rc;
  if (g->n_t == g->t_cap) {
    size_t cap = g->t_cap ? 2 * g->t_cap : 16;
    tinfo *t = realloc(g->t, cap * sizeof *t);
    if (!t)
      return rfail(r, MODEL_ENOMEM, "out of memory");
    g->t = t;
    g->t_cap = cap;
  }
  tinfo *ti = &g->t[g->n_t];
  gguf_tensor *t = &ti->t;
  memset(ti, 0, sizeof *ti);
  char *copy;
  if ((rc = copy_name(r, name, len, at, &copy)) != 0)
    return rc;
  t->name = copy;
  g->n_t++;
  ti->at = at;
  char shown[72];
  snprintf(r->ctx, sizeof r->ctx, "tensor '%s' (byte %zu)", show(shown, sizeof shown, name, len),
           at);
  if ((rc = rd_u32(r, &t->n_dims, "n_dims")) != 0)
    return rc;
  if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
    return rfail(r, MODEL_ECORRUPT, "n_dims %u (must be 1..%u)", t->n_dims, GGUF_MAX_DIMS);
  t->n_elems = 1;
  for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++) {
    t->dims[d] = 1;
    if (d < t->n_dims && (rc = rd_u64(r, &t->dims[d], "dimension")) != 0)
      return rc;
    if (t->dims[d] > (uint64_t)INT64_MAX ||
        (t->dims[d] != 0 && t->n_elems > (uint64_t)INT64_MAX / t->dims[d]))
      return rfail(r, MODEL_ECORRUPT, "element count overflows at dimension %u (%llu)", d,
                   (unsigned long long)t->dims[d]);
    t->n_elems *= t->dims[d];
  }
  if ((rc = rd_u32(r, &t->type, "type")) != 0 || (rc = rd_u64(r, &t->offset, "offset")) != 0)
    return rc;
  uint32_t block, bytes;
  if (gguf_type_size(t->type, &block, &bytes) != 0)
    return rfail(r, MODEL_EINVAL, "unknown ggml type %u", t->type);
  if (t->dims[0] % block != 0)
    return rfail(r, MODEL_ECORRUPT, "%s row length %llu is not a multiple of the block size %u",
                 gguf_type_name(t->type), (unsigned long long)t->dims[0], block);
  uint64_t blocks = t->n_elems / block;
  if (blocks > UINT64_MAX / bytes)
    return rfail(r, MODEL_ECORRUPT, "byte size overflows");
  t->n_bytes = blocks * bytes;
  return 0;
}

typedef struct span {
  uint64_t start, end;
  size_t i;
} span;

static int span_cmp(const void *a, const void *b)
{
  const span *x = a, *y = b;
  if (x->start != y->start)
    return x->start < y->start ? -1 : 1;
  return x->i < y->i ? -1 : x->i > y->i;
}

/* Places every tensor in the data section: aligned, inside the file, and
 * not overlapping another (empty tensors overlap nothing). */
static int check_layout(rd *r, gguf *g)
{
  uint64_t data_size = g->data_start <= g->n ? g->n - g->data_start : 0;
  span *s = malloc((g->n_t ? g->n_t : 1) * sizeof *s);
  size_t ns = 0;
  int rc = 0;
  if (!s)
    return rfail(r, MODEL_ENOMEM, "out of memory");
  for (size_t i = 0; i < g->n_t && rc == 0; i++) {
    gguf_tensor *t = &g->t[i].t;
    snprintf(r->ctx, sizeof r->ctx, "tensor '%.64s' (byte %zu)", t->name, g->t[i].at);
    if (t->offset % g->alignment != 0)
      rc = rfail(r, MODEL_ECORRUPT, "offset %llu is not a multiple of the alignment %llu",
                 (unsigned long long)t->offset, (unsigned long long)g->alignment);
    else if (t->offset > data_size || t->n_bytes > data_size - t->offset)
      rc = rfail(r, MODEL_ECORRUPT,
                 "data at offset %llu (%llu bytes) extends past the end of the file "
                 "(data section: byte %llu, %llu bytes)",
                 (unsigned long long)t->offset, (unsigned long long)t->n_bytes,
                 (unsigned long long)g->data_start, (unsigned long long)data_size);
    else {
      t->data = g->b + (g->data_start <= g->n ? (size_t)(g->data_start + t->offset) : g->n);
      if (t->n_bytes > 0)
        s[ns++] = (span){t->offset, t->offset + t->n_bytes, i};
    }
  }
  if (rc == 0 && ns > 1) {
    qsort(s, ns, sizeof *s, span_cmp);
    for (size_t k = 1; k < ns && rc == 0; k++) {
      if (s[k].start < s[k - 1].end) {
        const tinfo *a = &g->t[s[k - 1].i], *b = &g->t[s[k].i];
        snprintf(r->ctx, sizeof r->ctx, "tensor '%.64s' (byte %zu)", b->t.name, b->at);
        rc = rfail(r, MODEL_ECORRUPT,
                   "data at offset %llu overlaps tensor '%.64s' (offset %llu, %llu bytes)",
                   (unsigned long long)b->t.offset, a->t.name, (unsigned long long)a->t.offset,
                   (unsigned long long)a->t.n_bytes);
      }
      if (s[k].end < s[k - 1].end) { /* carry the furthest end so far */
        s[k].end = s[k - 1].end;
        s[k].i = s[k - 1].i;
      }
    }
  }
  free(s);
  return rc;
}

/* ---- opening ---------------------------------------------------------------- */

static int parse_header(rd *r, gguf *g, uint64_t *n_t, uint64_t *n_kv)
{
  int rc;
  snprintf(r->ctx, sizeof r->ctx, "header");
  if (g->n < 4 || memcmp(g->b, magic, 4) != 0)
    return rfail(r, MODEL_ECORRUPT, "not a GGUF file (bad magic at byte 0)");
  r->off = 4;
  if ((rc = rd_u32(r, &g->version, "version")) != 0)
    return rc;
  if (g->version != 0 && (g->version & 0xffff) == 0)
    return rfail(r, MODEL_EINVAL,
                 "version field at byte 4 looks byte-swapped (0x%08x): big-endian GGUF files "
                 "are not supported",
                 g->version);
  if (g->version != 2 && g->version != 3)
    return rfail(r, MODEL_EINVAL, "version %u not supported (byte 4; this reader reads 2 and 3)",
                 g->version);
  if ((rc = rd_u64(r, n_t, "tensor count")) != 0 || (rc = rd_u64(r, n_kv, "key count")) != 0)
    return rc;
  /* smallest key-value record: 8 (length) + 4 (type) + 1 (u8 value); smallest
   * tensor info: 8 (name length) + 4 + 8 (one dimension) + 4 + 8 */
  if (*n_kv > left(r) / 13)
    return rfail(r, MODEL_ECORRUPT, "key count %llu at byte 16 exceeds what %zu bytes can hold",
                 (unsigned long long)*n_kv, left(r));
  if (*n_t > left(r) / 32)
    return rfail(r, MODEL_ECORRUPT, "tensor count %llu at byte 8 exceeds what %zu bytes can hold",
                 (unsigned long long)*n_t, left(r));
  return 0;
}

/* The alignment from general.alignment, if set. */
static int read_alignment(rd *r, gguf *g)
{
  const gguf_kv *kv = lookup(g, "general.alignment");
  g->alignment = GGUF_DEFAULT_ALIGNMENT;
  if (!kv)
    return 0;
  snprintf(r->ctx, sizeof r->ctx, "key 'general.alignment' (byte %zu)", kv->at);
  if (!is_int_type(kv->type))
    return rfail(r, MODEL_ECORRUPT, "has type %s, expected an integer", gguf_vtype_name(kv->type));
  int64_t v;
  if (load_int(kv->type, kv->val, &v) != 0)
    return rfail(r, MODEL_ECORRUPT, "alignment %llu is not a power of two >= 8",
                 (unsigned long long)get64(kv->val));
  if (v < 8 || (v & (v - 1)) != 0)
    return rfail(r, MODEL_ECORRUPT, "alignment %lld is not a power of two >= 8", (long long)v);
  g->alignment = (uint64_t)v;
  return 0;
}

static int parse(gguf *g, model_err *err)
{
  rd r = {.g = g, .off = 0, .err = err};
  uint64_t n_t, n_kv;
  size_t dup, first;
  int rc;
  if ((rc = parse_header(&r, g, &n_t, &n_kv)) != 0)
    return rc;
  for (uint64_t i = 0; i < n_kv; i++)
    if ((rc = parse_kv(&r, g, i)) != 0)
      return rc;
  rc = idx_build(g, kv_name, g->n_kv, &g->kidx, &g->kmask, &dup, &first);
  if (rc < 0)
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory", g->label);
  if (rc > 0)
    return model_fail(err, MODEL_ECORRUPT,
                      "%s: duplicate key '%.64s' at byte %zu (first at byte %zu)", g->label,
                      g->kv[dup].key, g->kv[dup].at, g->kv[first].at);
  if ((rc = read_alignment(&r, g)) != 0)
    return rc;
  for (uint64_t i = 0; i < n_t; i++)
    if ((rc = parse_tensor(&r, g, i)) != 0)
      return rc;
  rc = idx_build(g, t_name, g->n_t, &g->tidx, &g->tmask, &dup, &first);
  if (rc < 0)
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory", g->label);
  if (rc > 0)
    return model_fail(err, MODEL_ECORRUPT,
                      "%s: duplicate tensor '%.64s' at byte %zu (first at byte %zu)", g->label,
                      g->t[dup].t.name, g->t[dup].at, g->t[first].at);
  /* the data section starts at the aligned end of the tensor infos */
  g->data_start = r.off;
  if (r.off % g->alignment != 0) {
    uint64_t pad = g->alignment - r.off % g->alignment;
    g->data_start = pad > UINT64_MAX - r.off ? UINT64_MAX : r.off + pad;
  }
  return check_layout(&r, g);
}

static int open_common(const uint8_t *b, size_t n, const char *label, void *map, gguf **out,
                       model_err *err)
{
  gguf *g = calloc(1, sizeof *g);
  if (!g || !(g->label = strdup(label))) {
    free(g);
    if (map)
      munmap(map, n);
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory", label);
  }
  g->b = b;
  g->n = n;
  g->map = map;
  int rc = parse(g, err);
  if (rc != 0) {
    gguf_close(g);
    return rc;
  }
  *out = g;
  return 0;
}

int gguf_open(const char *path, gguf **out, model_err *err)
{
  void *map;
  size_t n;
  int rc = model_map_file(path, &map, &n, err);
  return rc != 0 ? rc : open_common(map, n, path, map, out, err);
}

int gguf_open_memory(const void *buf, size_t n, const char *label, gguf **out, model_err *err)
{
  if (!label)
    label = "<memory>";
  if (!buf && n > 0)
    return model_fail(err, MODEL_EINVAL, "%s: NULL buffer", label);
  return open_common(buf, n, label, NULL, out, err);
}

void gguf_close(gguf *g)
{
  if (!g)
    return;
  for (size_t i = 0; i < g->n_kv; i++) {
    free(g->kv[i].key);
    free(g->kv[i].soff);
  }
  for (size_t i = 0; i < g->n_t; i++)
    free((char *)g->t[i].t.name);
  free(g->kv);
  free(g->t);
  free(g->kidx);
  free(g->tidx);
  if (g->map)
    munmap(g->map, g->n);
  free(g->label);
  free(g);
}

uint32_t gguf_version(const gguf *g)
{
  return g->version;
}

uint64_t gguf_alignment(const gguf *g)
{
  return g->alignment;
}

uint64_t gguf_data_offset(const gguf *g)
{
  return g->data_start;
}

const char *gguf_label(const gguf *g)
{
  return g->label;
}

size_t gguf_n_tensors(const gguf *g)
{
  return g->n_t;
}

const gguf_tensor *gguf_tensor_at(const gguf *g, size_t i)
{
  return i < g->n_t ? &g->t[i].t : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name)
{
  size_t i = idx_find(g, t_name, g->tidx, g->tmask, name);
  return i ? &g->t[i - 1].t : NULL;
}

size_t gguf_n_keys(const gguf *g)
{
  return g->n_kv;
}

const char *gguf_key_at(const gguf *g, size_t i)
{
  return i < g->n_kv ? g->kv[i].key : NULL;
}

int gguf_has_key(const gguf *g, const char *key)
{
  return lookup(g, key) != NULL;
}

int gguf_key_type(const gguf *g, const char *key)
{
  const gguf_kv *kv = lookup(g, key);
  return kv ? (int)kv->type : -1;
}

/* ---- typed getters -------------------------------------------------------- */

static void type_desc(const gguf_kv *kv, char *buf, size_t cap)
{
  if (kv->type == GGUF_ARRAY)
    snprintf(buf, cap, "array of %s", gguf_vtype_name(kv->elem));
  else
    snprintf(buf, cap, "%s", gguf_vtype_name(kv->type));
}

static int find_kv(const gguf *g, const char *key, const gguf_kv **kv, model_err *err)
{
  *kv = lookup(g, key);
  if (!*kv)
    return model_fail(err, MODEL_ENOENT, "%s: no key '%s'", g->label, key ? key : "(null)");
  return 0;
}

static int bad_type(const gguf *g, const gguf_kv *kv, const char *want, model_err *err)
{
  char have[32];
  type_desc(kv, have, sizeof have);
  return model_fail(err, MODEL_ECORRUPT, "%s: key '%s' (byte %zu) is %s, expected %s", g->label,
                    kv->key, kv->at, have, want);
}

int gguf_get_int(const gguf *g, const char *key, int64_t *out, model_err *err)
{
  const gguf_kv *kv;
  int rc = find_kv(g, key, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->type == GGUF_U64 && load_int(kv->type, kv->val, out) != 0)
    return model_fail(err, MODEL_ECORRUPT, "%s: key '%s' (byte %zu): u64 %llu does not fit int64",
                      g->label, kv->key, kv->at, (unsigned long long)get64(kv->val));
  if (load_int(kv->type, kv->val, out) != 0)
    return bad_type(g, kv, "an integer", err);
  return 0;
}

int gguf_get_float(const gguf *g, const char *key, double *out, model_err *err)
{
  const gguf_kv *kv;
  int rc = find_kv(g, key, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->type == GGUF_ARRAY || kv->type == GGUF_STRING || load_float(kv->type, kv->val, out) != 0)
    return bad_type(g, kv, "a number", err);
  return 0;
}

int gguf_get_bool(const gguf *g, const char *key, int *out, model_err *err)
{
  const gguf_kv *kv;
  int rc = find_kv(g, key, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->type != GGUF_BOOL)
    return bad_type(g, kv, "bool", err);
  *out = kv->val[0];
  return 0;
}

int gguf_get_str(const gguf *g, const char *key, const char **s, size_t *len, model_err *err)
{
  const gguf_kv *kv;
  int rc = find_kv(g, key, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->type != GGUF_STRING)
    return bad_type(g, kv, "string", err);
  *s = (const char *)kv->val;
  *len = (size_t)kv->len;
  return 0;
}

int gguf_get_arr(const gguf *g, const char *key, enum gguf_vtype *elem, uint64_t *count,
                 model_err *err)
{
  const gguf_kv *kv;
  int rc = find_kv(g, key, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->type != GGUF_ARRAY)
    return bad_type(g, kv, "array", err);
  *elem = (enum gguf_vtype)kv->elem;
  *count = kv->count;
  return 0;
}

/* The array key and the checked index i. */
static int arr_elem(const gguf *g, const char *key, uint64_t i, const gguf_kv **kv, model_err *err)
{
  int rc = find_kv(g, key, kv, err);
  if (rc != 0)
    return rc;
  if ((*kv)->type != GGUF_ARRAY)
    return bad_type(g, *kv, "array", err);
  if (i >= (*kv)->count)
    return model_fail(err, MODEL_EINVAL, "%s: key '%s' (byte %zu): index %llu past %llu elements",
                      g->label, (*kv)->key, (*kv)->at, (unsigned long long)i,
                      (unsigned long long)(*kv)->count);
  return 0;
}

/* Element i of an array of fixed-size values. */
static const uint8_t *arr_at(const gguf_kv *kv, uint64_t i)
{
  return kv->val + i * vtype_size[kv->elem];
}

int gguf_arr_str(const gguf *g, const char *key, uint64_t i, const char **s, size_t *len,
                 model_err *err)
{
  const gguf_kv *kv;
  int rc = arr_elem(g, key, i, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->elem != GGUF_STRING)
    return bad_type(g, kv, "array of string", err);
  const uint8_t *p = g->b + kv->soff[i];
  *len = (size_t)get64(p);
  *s = (const char *)p + 8;
  return 0;
}

int gguf_arr_float(const gguf *g, const char *key, uint64_t i, double *out, model_err *err)
{
  const gguf_kv *kv;
  int rc = arr_elem(g, key, i, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->elem == GGUF_STRING || kv->elem == GGUF_ARRAY ||
      load_float(kv->elem, arr_at(kv, i), out) != 0)
    return bad_type(g, kv, "array of numbers", err);
  return 0;
}

int gguf_arr_int(const gguf *g, const char *key, uint64_t i, int64_t *out, model_err *err)
{
  const gguf_kv *kv;
  int rc = arr_elem(g, key, i, &kv, err);
  if (rc != 0)
    return rc;
  if (kv->elem == GGUF_STRING || kv->elem == GGUF_ARRAY)
    return bad_type(g, kv, "array of integers", err);
  if (load_int(kv->elem, arr_at(kv, i), out) != 0) {
    if (kv->elem == GGUF_U64)
      return model_fail(err, MODEL_ECORRUPT,
                        "%s: key '%s' (byte %zu): element %llu does not fit int64", g->label,
                        kv->key, kv->at, (unsigned long long)i);
    return bad_type(g, kv, "array of integers", err);
  }
  return 0;
}

/* ---- tensor data ------------------------------------------------------------- */

int gguf_tensor_to_f32(const gguf *g, const gguf_tensor *t, float *out, model_err *err)
{
  const uint8_t *p = t->data;
  uint64_t n = t->n_elems;
  switch (t->type) {
  case GGML_F32:
    for (uint64_t i = 0; i < n; i++)
      out[i] = bits_f32(get32(p + 4 * i));
    return 0;
  case GGML_F16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = gguf_f16_to_f32(get16(p + 2 * i));
    return 0;
  case GGML_BF16:
    for (uint64_t i = 0; i < n; i++)
      out[i] = gguf_bf16_to_f32(get16(p + 2 * i));
    return 0;
  case GGML_Q8_0:
    for (uint64_t b = 0; b < n / 32; b++) {
      const uint8_t *blk = p + 34 * b;
      float d = gguf_f16_to_f32(get16(blk));
      for (int j = 0; j < 32; j++)
        out[32 * b + (uint64_t)j] = d * (float)(int8_t)blk[2 + j];
    }
    return 0;
  default: {
    const char *name = gguf_type_name(t->type);
    return model_fail(err, MODEL_EINVAL,
                      "%s: tensor '%s': type %s (%u) cannot be converted to f32 (F32, F16, BF16 "
                      "and Q8_0 can)",
                      g->label, t->name, name ? name : "unknown", t->type);
  }
  }
}

/* ---- writer -------------------------------------------------------------------- */

typedef struct wkv {
  char *key;
  uint32_t type;   /* a scalar type, GGUF_STRING or GGUF_ARRAY */
  uint32_t elem;   /* array: GGUF_F32, GGUF_I32 or GGUF_STRING */
  uint32_t scalar; /* u32, i32, f32 and bool bits */
  char *str;       /* string value */
  void *arr;       /* array: n 4-byte values, or n strings (char *) */
  size_t n;
} wkv;

typedef struct wtensor {
  char *name;
  uint32_t n_dims, type;
  uint64_t dims[4];
  uint64_t n_bytes, offset;
  uint8_t *data;
} wtensor;

struct gguf_writer {
  wkv *kv;
  size_t n_kv, kv_cap;
  wtensor *t;
  size_t n_t, t_cap;
};

gguf_writer *gguf_writer_new(void)
{
  return calloc(1, sizeof(gguf_writer));
}

static void wkv_clear(wkv *v)
{
  if (v->type == GGUF_ARRAY && v->elem == GGUF_STRING)
    for (size_t i = 0; i < v->n; i++)
      free(((char **)v->arr)[i]);
  free(v->arr);
  free(v->str);
  v->arr = NULL;
  v->str = NULL;
}

void gguf_writer_free(gguf_writer *w)
{
  if (!w)
    return;
  for (size_t i = 0; i < w->n_kv; i++) {
    wkv_clear(&w->kv[i]);
    free(w->kv[i].key);
  }
  for (size_t i = 0; i < w->n_t; i++) {
    free(w->t[i].name);
    free(w->t[i].data);
  }
  free(w->kv);
  free(w->t);
  free(w);
}

/* Stores v (whose resources it takes over, also on failure) under key,
 * replacing an existing value in place. */
static int put(gguf_writer *w, const char *key, wkv *v)
{
  for (size_t i = 0; i < w->n_kv; i++) {
    if (strcmp(w->kv[i].key, key) == 0) {
      wkv_clear(&w->kv[i]);
      v->key = w->kv[i].key;
      w->kv[i] = *v;
      return 0;
    }
  }
  if (w->n_kv == w->kv_cap) {
    size_t cap = w->kv_cap ? 2 * w->kv_cap : 16;
    wkv *kv = realloc(w->kv, cap * sizeof *kv);
    if (!kv) {
      wkv_clear(v);
      return MODEL_ENOMEM;
    }
    w->kv = kv;
    w->kv_cap = cap;
  }
  if (!(v->key = strdup(key))) {
    wkv_clear(v);
    return MODEL_ENOMEM;
  }
  w->kv[w->n_kv++] = *v;
  return 0;
}

static int put_scalar(gguf_writer *w, const char *key, uint32_t type, uint32_t bits)
{
  if (!w || !key || !*key)
    return MODEL_EINVAL;
  wkv v = {.type = type, .scalar = bits};
  return put(w, key, &v);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v)
{
  return put_scalar(w, key, GGUF_U32, v);
}

int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v)
{
  return put_scalar(w, key, GGUF_I32, (uint32_t)v);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v)
{
  return put_scalar(w, key, GGUF_F32, f32_bits(v));
}

int gguf_writer_set_bool(gguf_writer *w, const char *key, int v)
{
  return put_scalar(w, key, GGUF_BOOL, v != 0);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s)
{
  if (!w || !key || !*key || !s)
    return MODEL_EINVAL;
  wkv v = {.type = GGUF_STRING, .str = strdup(s)};
  if (!v.str)
    return MODEL_ENOMEM;
  return put(w, key, &v);
}

static int put_arr4(gguf_writer *w, const char *key, uint32_t elem, const void *a, size_t n)
{
  if (!w || !key || !*key || (!a && n > 0) || n > SIZE_MAX / 4)
    return MODEL_EINVAL;
  wkv v = {.type = GGUF_ARRAY, .elem = elem, .n = n, .arr = malloc(n ? 4 * n : 1)};
  if (!v.arr)
    return MODEL_ENOMEM;
  if (n > 0)
    memcpy(v.arr, a, 4 * n);
  return put(w, key, &v);
}

int gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, size_t n)
{
  return put_arr4(w, key, GGUF_F32, v, n);
}

int gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
  return put_arr4(w, key, GGUF_I32, v, n);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *s, size_t n)
{
  if (!w || !key || !*key || (!s && n > 0) || n > SIZE_MAX / sizeof(char *))
    return MODEL_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!s[i])
      return MODEL_EINVAL;
  wkv v = {.type = GGUF_ARRAY, .elem = GGUF_STRING, .arr = calloc(n ? n : 1, sizeof(char *))};
  if (!v.arr)
    return MODEL_ENOMEM;
  char **a = v.arr;
  for (; v.n < n; v.n++) {
    if (!(a[v.n] = strdup(s[v.n]))) {
      wkv_clear(&v);
      return MODEL_ENOMEM;
    }
  }
  return put(w, key, &v);
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t n_dims, const uint64_t *dims,
                           uint32_t type, const float *data)
{
  if (!w || !name || !*name || n_dims < 1 || n_dims > GGUF_MAX_DIMS || !dims ||
      (type != GGML_F32 && type != GGML_F16 && type != GGML_BF16))
    return MODEL_EINVAL;
  for (size_t i = 0; i < w->n_t; i++)
    if (strcmp(w->t[i].name, name) == 0)
      return MODEL_EINVAL;
  uint64_t n = 1;
  for (uint32_t d = 0; d < n_dims; d++) {
    if (dims[d] > (uint64_t)INT64_MAX || (dims[d] != 0 && n > (uint64_t)INT64_MAX / dims[d]))
      return MODEL_EINVAL;
    n *= dims[d];
  }
  size_t esize = type == GGML_F32 ? 4 : 2;
  if (n > SIZE_MAX / 4 || (!data && n > 0))
    return MODEL_EINVAL;
  if (w->n_t == w->t_cap) {
    size_t cap = w->t_cap ? 2 * w->t_cap : 16;
    wtensor *t = realloc(w->t, cap * sizeof *t);
    if (!t)
      return MODEL_ENOMEM;
    w->t = t;
    w->t_cap = cap;
  }
  wtensor t = {.n_dims = n_dims, .type = type, .n_bytes = n * esize};
  t.name = strdup(name);
  t.data = malloc(n ? (size_t)n * esize : 1);
  if (!t.name || !t.data) {
    free(t.name);
    free(t.data);
    return MODEL_ENOMEM;
  }
  for (uint32_t d = 0; d < GGUF_MAX_DIMS; d++)
    t.dims[d] = d < n_dims ? dims[d] : 1;
  for (uint64_t i = 0; i < n; i++) {
    uint8_t *p = t.data + i * esize;
    uint32_t u = type == GGML_F32   ? f32_bits(data[i])
                 : type == GGML_F16 ? gguf_f32_to_f16(data[i])
                                    : gguf_f32_to_bf16(data[i]);
    for (size_t k = 0; k < esize; k++)
      p[k] = (uint8_t)(u >> (8 * k));
  }
  w->t[w->n_t++] = t;
  return 0;
}

/* Buffered output to a file descriptor; the first failure sticks. */
typedef struct out {
  int fd;
  int err; /* errno of the first failure, or 0 */
  uint64_t pos;
  size_t n;
  uint8_t buf[1 << 16];
} out;

static void out_flush(out *o)
{
  const uint8_t *p = o->buf;
  while (o->n > 0 && !o->err) {
    ssize_t k = write(o->fd, p, o->n);
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      o->err = k < 0 ? errno : EIO;
      break;
    }
    p += k;
    o->n -= (size_t)k;
  }
  o->n = 0;
}

static void out_put(out *o, const void *data, size_t k)
{
  const uint8_t *p = data;
  o->pos += k;
  while (k > 0 && !o->err) {
    size_t m = sizeof o->buf - o->n < k ? sizeof o->buf - o->n : k;
    memcpy(o->buf + o->n, p, m);
    o->n += m;
    p += m;
    k -= m;
    if (o->n == sizeof o->buf)
      out_flush(o);
  }
}

static void out_u32(out *o, uint32_t v)
{
  uint8_t b[4];
  for (int i = 0; i < 4; i++)
    b[i] = (uint8_t)(v >> (8 * i));
  out_put(o, b, 4);
}

static void out_u64(out *o, uint64_t v)
{
  out_u32(o, (uint32_t)v);
  out_u32(o, (uint32_t)(v >> 32));
}

static void out_str(out *o, const char *s)
{
  size_t n = strlen(s);
  out_u64(o, n);
  out_put(o, s, n);
}

static void out_pad(out *o, uint64_t align)
{
  static const uint8_t zero[256];
  while (o->pos % align != 0) {
    uint64_t k = align - o->pos % align;
    out_put(o, zero, k < sizeof zero ? (size_t)k : sizeof zero);
  }
}

static void out_kv(out *o, const wkv *v)
{
  out_str(o, v->key);
  out_u32(o, v->type);
  switch (v->type) {
  case GGUF_BOOL: {
    uint8_t b = (uint8_t)v->scalar;
    out_put(o, &b, 1);
    break;
  }
  case GGUF_STRING:
    out_str(o, v->str);
    break;
  case GGUF_ARRAY:
    out_u32(o, v->elem);
    out_u64(o, v->n);
    for (size_t i = 0; i < v->n; i++) {
      if (v->elem == GGUF_STRING)
        out_str(o, ((char **)v->arr)[i]);
      else
        out_u32(o, ((const uint32_t *)v->arr)[i]);
    }
    break;
  default:
    out_u32(o, v->scalar);
    break;
  }
}

/* The alignment the writer will use, or 0 if general.alignment is invalid. */
static uint64_t writer_alignment(const gguf_writer *w)
{
  for (size_t i = 0; i < w->n_kv; i++) {
    const wkv *v = &w->kv[i];
    if (strcmp(v->key, "general.alignment") != 0)
      continue;
    if (v->type != GGUF_U32 && (v->type != GGUF_I32 || (int32_t)v->scalar < 0))
      return 0;
    uint64_t a = v->scalar;
    return a >= 8 && (a & (a - 1)) == 0 ? a : 0;
  }
  return GGUF_DEFAULT_ALIGNMENT;
}

/* The file bytes into o. */
static void write_body(out *o, gguf_writer *w, uint64_t align)
{
  out_put(o, magic, 4);
  out_u32(o, 3);
  out_u64(o, w->n_t);
  out_u64(o, w->n_kv);
  for (size_t i = 0; i < w->n_kv; i++)
    out_kv(o, &w->kv[i]);
  for (size_t i = 0; i < w->n_t; i++) {
    const wtensor *t = &w->t[i];
    out_str(o, t->name);
    out_u32(o, t->n_dims);
    for (uint32_t d = 0; d < t->n_dims; d++)
      out_u64(o, t->dims[d]);
    out_u32(o, t->type);
    out_u64(o, t->offset);
  }
  out_pad(o, align);
  for (size_t i = 0; i < w->n_t; i++) {
    out_put(o, w->t[i].data, (size_t)w->t[i].n_bytes);
    out_pad(o, align);
  }
  out_flush(o);
}

/* Opens a fresh temporary file next to path. */
static int open_temp(const char *path, char **tmp)
{
  size_t cap = strlen(path) + 48;
  *tmp = malloc(cap);
  if (!*tmp)
    return -1;
  for (unsigned k = 0; k < 100; k++) {
    snprintf(*tmp, cap, "%s.tmp.%ld.%u", path, (long)getpid(), k);
    int fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  return -1;
}

static int sync_dir(const char *path)
{
  char *dir = strdup(path);
  if (!dir)
    return -1;
  char *slash = strrchr(dir, '/');
  if (!slash)
    strcpy(dir, ".");
  else if (slash == dir)
    dir[1] = '\0'; /* the root */
  else
    *slash = '\0';
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(dir);
  if (fd < 0)
    return -1;
  /* some file systems cannot sync a directory; the rename stands anyway */
  int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
  close(fd);
  return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path, model_err *err)
{
  if (!w || !path)
    return model_fail(err, MODEL_EINVAL, "gguf_writer_write: NULL writer or path");
  uint64_t align = writer_alignment(w), off = 0;
  if (align == 0)
    return model_fail(err, MODEL_EINVAL, "%s: general.alignment must be a u32 power of two >= 8",
                      path);
  for (size_t i = 0; i < w->n_t; i++) {
    w->t[i].offset = off;
    off += w->t[i].n_bytes;
    off += (align - off % align) % align;
  }
  char *tmp = NULL;
  int fd = open_temp(path, &tmp);
  if (fd < 0) {
    int e = errno;
    free(tmp);
    return model_fail(err, MODEL_EIO, "%s: cannot create a temporary file: %s", path, strerror(e));
  }
  out *o = malloc(sizeof *o);
  if (!o) {
    close(fd);
    unlink(tmp);
    free(tmp);
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory", path);
  }
  o->fd = fd;
  o->err = 0;
  o->pos = 0;
  o->n = 0;
  write_body(o, w, align);
  int e = o->err;
  free(o);
  if (!e && fsync(fd) != 0)
    e = errno;
  if (close(fd) != 0 && !e)
    e = errno;
  if (!e && rename(tmp, path) != 0)
    e = errno;
  if (e) {
    unlink(tmp);
    free(tmp);
    return model_fail(err, MODEL_EIO, "%s: cannot write: %s", path, strerror(e));
  }
  free(tmp);
  if (sync_dir(path) != 0)
    return model_fail(err, MODEL_EIO, "%s: written, but syncing its directory failed: %s", path,
                      strerror(errno));
  return 0;
}

void gguf_tensor_done(const gguf *g, const gguf_tensor *t)
{
  /* Drop the mapped pages wholly inside t: converted, they are not needed
   * again, and a file-backed page dropped leaves the resident set. */
  if (!g->map || t->n_bytes == 0)
    return;
  long ps = sysconf(_SC_PAGESIZE);
  uintptr_t lo = (uintptr_t)t->data, hi = lo + (uintptr_t)t->n_bytes;
  uintptr_t alo = (lo + (uintptr_t)ps - 1) / (uintptr_t)ps * (uintptr_t)ps;
  uintptr_t ahi = hi / (uintptr_t)ps * (uintptr_t)ps;
  if (ps > 0 && ahi > alo)
    madvise((void *)alo, ahi - alo, MADV_DONTNEED);
}
