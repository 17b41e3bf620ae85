/* Unit tests for model/gguf.c: the GGUF reader and writer.
 *
 * Files are either written by gguf_writer and read back, or built byte by
 * byte here (bb_*) following ggml's docs/gguf.md, independently of the
 * writer:
 *   "GGUF" | u32 version | u64 n_tensors | u64 n_kv |
 *   n_kv x (string key, u32 type, value) |
 *   n_tensors x (string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset) |
 *   zero padding to the alignment | tensor data
 * with strings as u64 length + bytes, all little-endian. Hand-built files are
 * opened from heap copies of exactly their size, so a read past the end is an
 * AddressSanitizer report. Half-precision expectations are bit patterns
 * worked out by hand (and checked against Python's struct 'e' format). Each
 * test that touches the file system works in its own mkdtemp() directory,
 * which the teardown empties and removes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/gguf.h"

/* ---- fixture: a temporary directory -------------------------------------- */

typedef struct fixture {
  char dir[64];
  char path[128]; /* dir/model.gguf */
} fixture;

static int setup(void **state)
{
  fixture *f = calloc(1, sizeof *f);
  if (!f)
    return -1;
  strcpy(f->dir, "/tmp/zotune-test-gguf-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->path, sizeof f->path, "%s/model.gguf", f->dir);
  *state = f;
  return 0;
}

/* Number of entries in dir besides . and .. */
static int count_entries(const char *dir)
{
  int n = 0;
  DIR *d = opendir(dir);
  struct dirent *e;
  if (!d)
    return -1;
  while ((e = readdir(d)) != NULL)
    n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
  closedir(d);
  return n;
}

static int teardown(void **state)
{
  fixture *f = *state;
  DIR *d = opendir(f->dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  int rv = rmdir(f->dir);
  free(f);
  return rv;
}

static void spit(const char *path, const uint8_t *buf, size_t n)
{
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  if (n > 0)
    assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

static uint64_t file_size(const char *path)
{
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

/* ---- a byte builder for hand-made files ------------------------------------- */

typedef struct bb {
  uint8_t *p;
  size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t k)
{
  if (b->n + k > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + k)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, k);
  b->n += k;
}

static void bb_le(bb *b, uint64_t v, int bytes)
{
  uint8_t t[8];
  for (int i = 0; i < bytes; i++)
    t[i] = (uint8_t)(v >> (8 * i));
  bb_put(b, t, (size_t)bytes);
}

static void bb_u8(bb *b, uint8_t v)
{
  bb_le(b, v, 1);
}
static void bb_u16(bb *b, uint16_t v)
{
  bb_le(b, v, 2);
}
static void bb_u32(bb *b, uint32_t v)
{
  bb_le(b, v, 4);
}
static void bb_u64(bb *b, uint64_t v)
{
  bb_le(b, v, 8);
}

static void bb_f32(bb *b, float f)
{
  uint32_t u;
  memcpy(&u, &f, 4);
  bb_u32(b, u);
}

static void bb_str(bb *b, const char *s)
{
  bb_u64(b, strlen(s));
  bb_put(b, s, strlen(s));
}

static void bb_pad(bb *b, size_t align)
{
  while (b->n % align)
    bb_u8(b, 0);
}

static void bb_head(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
  bb_put(b, "GGUF", 4);
  bb_u32(b, version);
  bb_u64(b, n_tensors);
  bb_u64(b, n_kv);
}

/* Starts a key-value record; returns its byte offset. */
static size_t bb_key(bb *b, const char *key, uint32_t type)
{
  size_t at = b->n;
  bb_str(b, key);
  bb_u32(b, type);
  return at;
}

static size_t bb_tensor(bb *b, const char *name, uint32_t n_dims, const uint64_t *dims,
                        uint32_t type, uint64_t offset)
{
  size_t at = b->n;
  bb_str(b, name);
  bb_u32(b, n_dims);
  for (uint32_t d = 0; d < n_dims; d++)
    bb_u64(b, dims[d]);
  bb_u32(b, type);
  bb_u64(b, offset);
  return at;
}

/* A gguf opened over a heap copy of exactly n bytes. */
typedef struct mem {
  uint8_t *copy;
  gguf *g;
} mem;

static int mem_open(mem *m, const uint8_t *p, size_t n, model_err *err)
{
  m->copy = malloc(n ? n : 1);
  assert_non_null(m->copy);
  if (n)
    memcpy(m->copy, p, n);
  m->g = NULL;
  int rc = gguf_open_memory(m->copy, n, NULL, &m->g, err);
  if (rc != 0) {
    assert_null(m->g);
    free(m->copy);
    m->copy = NULL;
  }
  return rc;
}

static void mem_close(mem *m)
{
  gguf_close(m->g);
  free(m->copy);
}

static void assert_has(const char *msg, const char *want)
{
  if (want && !strstr(msg, want))
    fail_msg("message \"%s\" lacks \"%s\"", msg, want);
}

/* Opening b fails with code and a message naming <memory> and each of w1..w3. */
static void expect_fail(const bb *b, int code, const char *w1, const char *w2, const char *w3)
{
  mem m;
  model_err err = {0};
  int rc = mem_open(&m, b->p, b->n, &err);
  if (rc != code)
    fail_msg("expected code %d, got %d (%s)", code, rc, err.msg);
  assert_int_equal(err.code, code);
  assert_has(err.msg, "<memory>");
  assert_has(err.msg, w1);
  assert_has(err.msg, w2);
  assert_has(err.msg, w3);
}

static const char *at_byte(size_t off)
{
  static char s[4][32];
  static int k;
  k = (k + 1) % 4;
  snprintf(s[k], sizeof s[k], "byte %zu", off);
  return s[k];
}

static uint32_t fbits(float f)
{
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

/* A small valid file: 3 keys, an F32 [4, 2] and an F16 [3] tensor, with no
 * padding after the last tensor. */
static void small_file(bb *b, uint32_t version)
{
  bb_head(b, version, 2, 3);
  bb_key(b, "general.architecture", GGUF_STRING);
  bb_str(b, "llama");
  bb_key(b, "a.bool", GGUF_BOOL);
  bb_u8(b, 1);
  bb_key(b, "a.arr", GGUF_ARRAY);
  bb_u32(b, GGUF_STRING);
  bb_u64(b, 2);
  bb_str(b, "x");
  bb_str(b, "yz");
  bb_tensor(b, "t0", 2, (const uint64_t[]){4, 2}, GGML_F32, 0);
  bb_tensor(b, "t1", 1, (const uint64_t[]){3}, GGML_F16, 32);
  bb_pad(b, 32);
  for (int i = 0; i < 8; i++)
    bb_f32(b, (float)i - 3.5f);
  bb_u16(b, 0x3c00); /* 1 */
  bb_u16(b, 0xc000); /* -2 */
  bb_u16(b, 0x0001); /* 2^-24 */
}

/* ---- half precision ---------------------------------------------------------- */

/* Inputs with their f16 and bf16 bit patterns and the f16 value read back. */
static const struct half_case {
  float in;
  uint16_t f16;
  float f16_val;
  uint16_t bf16;
} half_cases[] = {
    {1.0f, 0x3c00, 1.0f, 0x3f80},
    {-2.0f, 0xc000, -2.0f, 0xc000},
    {0x1.002p0f, 0x3c00, 1.0f, 0x3f80},       /* f16 tie, to even (down) */
    {0x1.006p0f, 0x3c02, 0x1.008p0f, 0x3f80}, /* f16 tie, to even (up) */
    {0x1.01p0f, 0x3c04, 0x1.01p0f, 0x3f80},   /* bf16 tie, to even (down) */
    {0x1.03p0f, 0x3c0c, 0x1.03p0f, 0x3f82},   /* bf16 tie, to even (up) */
    {65520.0f, 0x7c00, INFINITY, 0x4780},     /* f16 tie between 65504 and overflow */
    {65519.0f, 0x7bff, 65504.0f, 0x4780},
    {65504.0f, 0x7bff, 65504.0f, 0x4780},
    {1e6f, 0x7c00, INFINITY, 0x4974},
    {0x1p-24f, 0x0001, 0x1p-24f, 0x3380},         /* smallest f16 subnormal */
    {0x1p-25f, 0x0000, 0.0f, 0x3300},             /* tie with zero, to even */
    {0x1.8p-24f, 0x0002, 0x1p-23f, 0x33c0},       /* subnormal tie, to even (up) */
    {0x1.ffcp-15f, 0x0400, 0x1p-14f, 0x3880},     /* tie into the smallest normal */
    {0x1.ff8p-15f, 0x03ff, 0x1.ff8p-15f, 0x3880}, /* largest subnormal */
    {1e-10f, 0x0000, 0.0f, 0x2edc},
    {0x1p-130f, 0x0000, 0.0f, 0x0008}, /* f32 subnormal: bf16 keeps it */
    {-0.0f, 0x8000, -0.0f, 0x8000},
    {3.14159274f, 0x4248, 3.140625f, 0x4049},
    {INFINITY, 0x7c00, INFINITY, 0x7f80},
    {-INFINITY, 0xfc00, -INFINITY, 0xff80},
    {0x1.fffffep127f, 0x7c00, INFINITY, 0x7f80}, /* FLT_MAX rounds to bf16 infinity */
};
#define N_HALF (sizeof half_cases / sizeof half_cases[0])

static void test_half_conversions(void **state)
{
  (void)state;
  for (size_t i = 0; i < N_HALF; i++) {
    const struct half_case *c = &half_cases[i];
    if (gguf_f32_to_f16(c->in) != c->f16)
      fail_msg("f16(%a) = 0x%04x, want 0x%04x", (double)c->in, gguf_f32_to_f16(c->in), c->f16);
    assert_int_equal(fbits(gguf_f16_to_f32(c->f16)), fbits(c->f16_val));
    if (gguf_f32_to_bf16(c->in) != c->bf16)
      fail_msg("bf16(%a) = 0x%04x, want 0x%04x", (double)c->in, gguf_f32_to_bf16(c->in), c->bf16);
    assert_int_equal(fbits(gguf_bf16_to_f32(c->bf16)), (uint32_t)c->bf16 << 16);
  }
  /* f16 -> f32 by hand */
  assert_true(gguf_f16_to_f32(0x0001) == 0x1p-24f);
  assert_true(gguf_f16_to_f32(0x0200) == 0x1p-15f);
  assert_true(gguf_f16_to_f32(0x03ff) == 0x1.ff8p-15f);
  assert_true(gguf_f16_to_f32(0x8001) == -0x1p-24f);
  assert_true(gguf_f16_to_f32(0x0400) == 0x1p-14f);
  assert_true(gguf_f16_to_f32(0x3555) == 0x1.554p-2f);
  assert_true(gguf_f16_to_f32(0x7bff) == 65504.0f);
  assert_true(isnan(gguf_f16_to_f32(0x7e00)) && isnan(gguf_f16_to_f32(0xfc01)));
  assert_int_equal(fbits(gguf_f16_to_f32(0x7c01)), 0x7f802000); /* payload kept */
  /* NaN stays NaN (quiet), never becomes infinity */
  assert_int_equal(gguf_f32_to_f16(NAN) & 0x7e00, 0x7e00);
  assert_int_equal(gguf_f32_to_f16(-NAN) & 0x8000, 0x8000);
  float snan;
  uint32_t snan_bits = 0x7f800001;
  memcpy(&snan, &snan_bits, 4);
  assert_int_equal(gguf_f32_to_f16(snan), 0x7e00);
  assert_int_equal(gguf_f32_to_bf16(snan), 0x7fc0);
  assert_int_equal(gguf_f32_to_bf16(NAN), 0x7fc0);
  /* every f16 survives the round trip through f32 */
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = gguf_f16_to_f32((uint16_t)h);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
      assert_true(isnan(f));
      assert_int_equal(gguf_f32_to_f16(f), h | 0x200);
    } else if (gguf_f32_to_f16(f) != h) {
      fail_msg("f16 0x%04x -> %a -> 0x%04x", h, (double)f, gguf_f32_to_f16(f));
    }
  }
}

/* ---- writer -> reader ----------------------------------------------------------- */

static void test_roundtrip_values(void **state)
{
  fixture *f = *state;
  gguf_writer *w = gguf_writer_new();
  assert_non_null(w);
  const char *toks[] = {"<s>", "", "h\xc3\xa9llo", "a b"};
  const float fl[] = {0.5f, -1e30f, 0x1p-149f};
  const int32_t in[] = {INT32_MIN, -1, 0, INT32_MAX};
  assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
  assert_int_equal(gguf_writer_set_u32(w, "a.u32", 1), 0);
  assert_int_equal(gguf_writer_set_i32(w, "a.i32", -7), 0);
  assert_int_equal(gguf_writer_set_f32(w, "a.f32", 1e-6f), 0);
  assert_int_equal(gguf_writer_set_bool(w, "a.true", 5), 0);
  assert_int_equal(gguf_writer_set_bool(w, "a.false", 0), 0);
  assert_int_equal(gguf_writer_set_arr_str(w, "a.toks", toks, 4), 0);
  assert_int_equal(gguf_writer_set_arr_f32(w, "a.fl", fl, 3), 0);
  assert_int_equal(gguf_writer_set_arr_i32(w, "a.in", in, 4), 0);
  assert_int_equal(gguf_writer_set_arr_i32(w, "a.empty", NULL, 0), 0);
  /* replacing keeps the key's place, also with another type */
  assert_int_equal(gguf_writer_set_u32(w, "a.u32", 4000000000u), 0);
  assert_int_equal(gguf_writer_set_str(w, "general.architecture", "gpt2"), 0);
  assert_int_equal(gguf_writer_set_str(w, "a.i32", "replaced"), 0);
  assert_int_equal(gguf_writer_set_i32(w, "a.i32", -7), 0);
  model_err err = {0};
  assert_int_equal(gguf_writer_write(w, f->path, &err), 0);
  gguf_writer_free(w);
  assert_int_equal(count_entries(f->dir), 1); /* no temporary file left */

  gguf *g = NULL;
  assert_int_equal(gguf_open(f->path, &g, &err), 0);
  assert_int_equal(gguf_version(g), 3);
  assert_int_equal(gguf_alignment(g), 32);
  assert_int_equal(gguf_n_tensors(g), 0);
  const char *order[] = {"general.architecture",
                         "a.u32",
                         "a.i32",
                         "a.f32",
                         "a.true",
                         "a.false",
                         "a.toks",
                         "a.fl",
                         "a.in",
                         "a.empty"};
  assert_int_equal(gguf_n_keys(g), 10);
  for (size_t i = 0; i < 10; i++)
    assert_string_equal(gguf_key_at(g, i), order[i]);
  assert_null(gguf_key_at(g, 10));
  assert_true(gguf_has_key(g, "a.fl"));
  assert_false(gguf_has_key(g, "a.nope"));
  assert_int_equal(gguf_key_type(g, "a.u32"), GGUF_U32);
  assert_int_equal(gguf_key_type(g, "a.nope"), -1);

  const char *s;
  size_t len;
  int64_t iv;
  double dv;
  int bv;
  assert_int_equal(gguf_get_str(g, "general.architecture", &s, &len, &err), 0);
  assert_int_equal(len, 4);
  assert_memory_equal(s, "gpt2", 4);
  assert_int_equal(gguf_get_int(g, "a.u32", &iv, &err), 0);
  assert_true(iv == 4000000000);
  assert_int_equal(gguf_get_int(g, "a.i32", &iv, &err), 0);
  assert_true(iv == -7);
  assert_int_equal(gguf_get_float(g, "a.i32", &dv, &err), 0);
  assert_true(dv == -7.0);
  assert_int_equal(gguf_get_float(g, "a.f32", &dv, &err), 0);
  assert_true(dv == (double)1e-6f);
  assert_int_equal(gguf_get_bool(g, "a.true", &bv, &err), 0);
  assert_int_equal(bv, 1);
  assert_int_equal(gguf_get_bool(g, "a.false", &bv, &err), 0);
  assert_int_equal(bv, 0);
  assert_int_equal(gguf_get_int(g, "a.true", &iv, &err), 0); /* bool reads as an integer */
  assert_true(iv == 1);

  enum gguf_vtype et;
  uint64_t count;
  assert_int_equal(gguf_get_arr(g, "a.toks", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_STRING);
  assert_int_equal(count, 4);
  for (uint64_t i = 0; i < 4; i++) {
    assert_int_equal(gguf_arr_str(g, "a.toks", i, &s, &len, &err), 0);
    assert_int_equal(len, strlen(toks[i]));
    assert_memory_equal(s, toks[i], len);
  }
  assert_int_equal(gguf_get_arr(g, "a.fl", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_F32);
  assert_int_equal(count, 3);
  for (uint64_t i = 0; i < 3; i++) {
    assert_int_equal(gguf_arr_float(g, "a.fl", i, &dv, &err), 0);
    assert_true(dv == (double)fl[i]);
  }
  assert_int_equal(gguf_get_arr(g, "a.in", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_I32);
  for (uint64_t i = 0; i < 4; i++) {
    assert_int_equal(gguf_arr_int(g, "a.in", i, &iv, &err), 0);
    assert_true(iv == in[i]);
    assert_int_equal(gguf_arr_float(g, "a.in", i, &dv, &err), 0);
    assert_true(dv == (double)in[i]);
  }
  assert_int_equal(gguf_get_arr(g, "a.empty", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_I32);
  assert_int_equal(count, 0);

  /* wrong types, absent keys, indexes out of range */
  assert_int_equal(gguf_get_str(g, "a.u32", &s, &len, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "a.u32");
  assert_has(err.msg, "is u32, expected string");
  assert_has(err.msg, f->path);
  assert_int_equal(gguf_get_int(g, "a.f32", &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "'a.f32'");
  assert_has(err.msg, "f32");
  assert_int_equal(gguf_get_float(g, "a.true", &dv, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_get_bool(g, "a.u32", &bv, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_get_arr(g, "a.f32", &et, &count, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_arr_int(g, "a.toks", 0, &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "array of string");
  assert_int_equal(gguf_arr_str(g, "a.in", 0, &s, &len, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "'a.in'");
  assert_has(err.msg, "array of i32, expected array of string");
  assert_int_equal(gguf_arr_float(g, "a.toks", 0, &dv, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_arr_str(g, "a.toks", 4, &s, &len, &err), MODEL_EINVAL);
  assert_has(err.msg, "index 4");
  assert_has(err.msg, "'a.toks'");
  assert_int_equal(gguf_arr_int(g, "a.empty", 0, &iv, &err), MODEL_EINVAL);
  assert_int_equal(gguf_get_int(g, "a.nope", &iv, &err), MODEL_ENOENT);
  assert_has(err.msg, "'a.nope'");
  assert_int_equal(gguf_arr_str(g, "a.nope", 0, &s, &len, &err), MODEL_ENOENT);
  gguf_close(g);
}

/* A tensor of shape dims (ggml order) filled with half_cases, cycled. */
static void case_data(float *v, uint64_t n)
{
  for (uint64_t i = 0; i < n; i++)
    v[i] = half_cases[(i * 7) % N_HALF].in;
}

static void test_roundtrip_tensors(void **state)
{
  fixture *f = *state;
  static const uint64_t shapes[4][4] = {{11}, {5, 3}, {3, 2, 4}, {2, 3, 1, 4}};
  static const uint32_t types[3] = {GGML_F32, GGML_F16, GGML_BF16};
  float v[64], got[64];
  char name[32];
  gguf_writer *w = gguf_writer_new();
  assert_non_null(w);
  assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), 0);
  for (int t = 0; t < 3; t++) {
    for (uint32_t nd = 1; nd <= 4; nd++) {
      snprintf(name, sizeof name, "blk.%d.w%u", t, nd);
      case_data(v, 24);
      assert_int_equal(gguf_writer_add_tensor(w, name, nd, shapes[nd - 1], types[t], v), 0);
    }
  }
  /* an empty tensor has no data but a place */
  assert_int_equal(gguf_writer_add_tensor(w, "empty", 2, (const uint64_t[]){0, 3}, GGML_F32, NULL),
                   0);
  model_err err = {0};
  assert_int_equal(gguf_writer_write(w, f->path, &err), 0);
  gguf_writer_free(w);

  gguf *g = NULL;
  assert_int_equal(gguf_open(f->path, &g, &err), 0);
  assert_int_equal(gguf_n_tensors(g), 13);
  assert_int_equal(gguf_data_offset(g) % 32, 0);
  uint64_t next = 0;
  for (int t = 0; t < 3; t++) {
    for (uint32_t nd = 1; nd <= 4; nd++) {
      snprintf(name, sizeof name, "blk.%d.w%u", t, nd);
      const gguf_tensor *x = gguf_find_tensor(g, name);
      assert_non_null(x);
      assert_ptr_equal(x, gguf_tensor_at(g, (size_t)t * 4 + nd - 1));
      assert_string_equal(x->name, name);
      assert_int_equal(x->n_dims, nd);
      uint64_t n = 1;
      for (uint32_t d = 0; d < 4; d++) {
        assert_int_equal(x->dims[d], d < nd ? shapes[nd - 1][d] : 1);
        n *= x->dims[d];
      }
      assert_int_equal(x->n_elems, n);
      assert_int_equal(x->type, types[t]);
      assert_int_equal(x->n_bytes, n * (t == 0 ? 4 : 2));
      assert_int_equal(x->offset, next); /* packed, each padded to 32 */
      next = (x->offset + x->n_bytes + 31) / 32 * 32;
      assert_int_equal(gguf_tensor_to_f32(g, x, got, &err), 0);
      const uint8_t *raw = x->data;
      for (uint64_t i = 0; i < n; i++) {
        const struct half_case *c = &half_cases[(i * 7) % N_HALF];
        if (types[t] == GGML_F32) {
          assert_int_equal(fbits(got[i]), fbits(c->in));
          assert_int_equal(raw[4 * i] | raw[4 * i + 1] << 8, fbits(c->in) & 0xffff);
        } else if (types[t] == GGML_F16) {
          assert_int_equal(raw[2 * i] | raw[2 * i + 1] << 8, c->f16);
          assert_int_equal(fbits(got[i]), fbits(c->f16_val));
        } else {
          assert_int_equal(raw[2 * i] | raw[2 * i + 1] << 8, c->bf16);
          assert_int_equal(fbits(got[i]), (uint32_t)c->bf16 << 16);
        }
      }
    }
  }
  const gguf_tensor *e = gguf_find_tensor(g, "empty");
  assert_non_null(e);
  assert_int_equal(e->n_elems, 0);
  assert_int_equal(e->n_bytes, 0);
  assert_int_equal(gguf_tensor_to_f32(g, e, got, &err), 0);
  assert_null(gguf_find_tensor(g, "blk.0"));
  assert_null(gguf_tensor_at(g, 13));
  assert_true(file_size(f->path) >= gguf_data_offset(g) + next);
  gguf_close(g);
}

static void test_writer_alignment(void **state)
{
  fixture *f = *state;
  float v[5] = {1, 2, 3, 4, 5};
  gguf_writer *w = gguf_writer_new();
  assert_non_null(w);
  assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 64), 0);
  assert_int_equal(gguf_writer_add_tensor(w, "a", 1, (const uint64_t[]){3}, GGML_F32, v), 0);
  assert_int_equal(gguf_writer_add_tensor(w, "b", 1, (const uint64_t[]){5}, GGML_F32, v), 0);
  model_err err = {0};
  assert_int_equal(gguf_writer_write(w, f->path, &err), 0);
  gguf *g = NULL;
  assert_int_equal(gguf_open(f->path, &g, &err), 0);
  assert_int_equal(gguf_alignment(g), 64);
  assert_int_equal(gguf_data_offset(g) % 64, 0);
  assert_int_equal(gguf_find_tensor(g, "a")->offset, 0);
  assert_int_equal(gguf_find_tensor(g, "b")->offset, 64);
  assert_int_equal(file_size(f->path), gguf_data_offset(g) + 128);
  gguf_close(g);

  /* the writer refuses an alignment the reader would refuse */
  assert_int_equal(gguf_writer_set_u32(w, "general.alignment", 48), 0);
  assert_int_equal(gguf_writer_write(w, f->path, &err), MODEL_EINVAL);
  assert_has(err.msg, "general.alignment");
  assert_int_equal(gguf_writer_set_f32(w, "general.alignment", 64.0f), 0);
  assert_int_equal(gguf_writer_write(w, f->path, &err), MODEL_EINVAL);
  gguf_writer_free(w);
  assert_int_equal(count_entries(f->dir), 1);
}

static void test_writer_errors(void **state)
{
  fixture *f = *state;
  float v[4] = {0};
  gguf_writer *w = gguf_writer_new();
  assert_non_null(w);
  assert_int_equal(gguf_writer_set_u32(w, NULL, 1), MODEL_EINVAL);
  assert_int_equal(gguf_writer_set_u32(w, "", 1), MODEL_EINVAL);
  assert_int_equal(gguf_writer_set_str(w, "k", NULL), MODEL_EINVAL);
  assert_int_equal(gguf_writer_set_arr_f32(w, "k", NULL, 2), MODEL_EINVAL);
  assert_int_equal(gguf_writer_set_arr_str(w, "k", (const char *const[]){"a", NULL}, 2),
                   MODEL_EINVAL);
  const uint64_t d4[4] = {2, 2, 1, 1}, d5[5] = {1, 1, 1, 1, 1};
  assert_int_equal(gguf_writer_add_tensor(w, "t", 0, d4, GGML_F32, v), MODEL_EINVAL);
  assert_int_equal(gguf_writer_add_tensor(w, "t", 5, d5, GGML_F32, v), MODEL_EINVAL);
  assert_int_equal(gguf_writer_add_tensor(w, "t", 1, d4, GGML_Q8_0, v), MODEL_EINVAL);
  assert_int_equal(gguf_writer_add_tensor(w, "t", 1, d4, GGML_F32, NULL), MODEL_EINVAL);
  assert_int_equal(gguf_writer_add_tensor(w, "", 1, d4, GGML_F32, v), MODEL_EINVAL);
  assert_int_equal(gguf_writer_add_tensor(w, "t", 4, d4, GGML_F32, v), 0);
  assert_int_equal(gguf_writer_add_tensor(w, "t", 1, d4, GGML_F16, v), MODEL_EINVAL);
  const uint64_t huge[2] = {1ull << 32, 1ull << 32};
  assert_int_equal(gguf_writer_add_tensor(w, "h", 2, huge, GGML_F32, v), MODEL_EINVAL);
  /* a directory that does not exist */
  char bad[256];
  snprintf(bad, sizeof bad, "%s/no/such/dir.gguf", f->dir);
  model_err err = {0};
  assert_int_equal(gguf_writer_write(w, bad, &err), MODEL_EIO);
  assert_has(err.msg, bad);
  gguf_writer_free(w);
  gguf_writer_free(NULL);
  assert_int_equal(count_entries(f->dir), 0);
}

/* ---- hand-built files ------------------------------------------------------------ */

static void test_reader_value_types(void **state)
{
  (void)state;
  bb b = {0};
  bb_head(&b, 3, 0, 14);
  bb_key(&b, "v.u8", GGUF_U8);
  bb_u8(&b, 200);
  bb_key(&b, "v.i8", GGUF_I8);
  bb_u8(&b, 0x80);
  bb_key(&b, "v.u16", GGUF_U16);
  bb_u16(&b, 65535);
  bb_key(&b, "v.i16", GGUF_I16);
  bb_u16(&b, 0x8000);
  bb_key(&b, "v.u64", GGUF_U64);
  bb_u64(&b, 1ull << 40);
  bb_key(&b, "v.u64big", GGUF_U64);
  bb_u64(&b, UINT64_MAX);
  bb_key(&b, "v.i64", GGUF_I64);
  bb_u64(&b, (uint64_t)INT64_MIN);
  bb_key(&b, "v.f64", GGUF_F64);
  double d = -0.1;
  uint64_t du;
  memcpy(&du, &d, 8);
  bb_u64(&b, du);
  /* [[1, -2], [], [3]] as i16 */
  size_t nested_at = bb_key(&b, "v.nested", GGUF_ARRAY);
  bb_u32(&b, GGUF_ARRAY);
  bb_u64(&b, 3);
  bb_u32(&b, GGUF_I16);
  bb_u64(&b, 2);
  bb_u16(&b, 1);
  bb_u16(&b, 0xfffe);
  bb_u32(&b, GGUF_I16);
  bb_u64(&b, 0);
  bb_u32(&b, GGUF_I16);
  bb_u64(&b, 1);
  bb_u16(&b, 3);
  bb_key(&b, "v.a_u8", GGUF_ARRAY);
  bb_u32(&b, GGUF_U8);
  bb_u64(&b, 3);
  bb_put(&b, "\x01\xff\x7f", 3);
  bb_key(&b, "v.a_bool", GGUF_ARRAY);
  bb_u32(&b, GGUF_BOOL);
  bb_u64(&b, 2);
  bb_put(&b, "\x01\x00", 2);
  bb_key(&b, "v.a_f64", GGUF_ARRAY);
  bb_u32(&b, GGUF_F64);
  bb_u64(&b, 2);
  bb_u64(&b, du);
  bb_u64(&b, 0);
  bb_key(&b, "v.a_u64", GGUF_ARRAY);
  bb_u32(&b, GGUF_U64);
  bb_u64(&b, 2);
  bb_u64(&b, 5);
  bb_u64(&b, UINT64_MAX);
  /* 8 levels of nesting: the deepest allowed */
  bb_key(&b, "v.deep", GGUF_ARRAY);
  for (int i = 0; i < 7; i++) {
    bb_u32(&b, GGUF_ARRAY);
    bb_u64(&b, 1);
  }
  bb_u32(&b, GGUF_U8);
  bb_u64(&b, 1);
  bb_u8(&b, 9);

  mem m;
  model_err err = {0};
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  gguf *g = m.g;
  assert_string_equal(gguf_label(g), "<memory>");
  int64_t iv;
  double dv;
  struct {
    const char *key;
    int64_t want;
  } ints[] = {{"v.u8", 200},     {"v.i8", -128},       {"v.u16", 65535},
              {"v.i16", -32768}, {"v.u64", 1ll << 40}, {"v.i64", INT64_MIN}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    assert_int_equal(gguf_get_int(g, ints[i].key, &iv, &err), 0);
    assert_true(iv == ints[i].want);
    assert_int_equal(gguf_get_float(g, ints[i].key, &dv, &err), 0);
    assert_true(dv == (double)ints[i].want);
  }
  assert_int_equal(gguf_get_int(g, "v.u64big", &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "'v.u64big'");
  assert_has(err.msg, "18446744073709551615");
  assert_int_equal(gguf_get_float(g, "v.u64big", &dv, &err), 0);
  assert_true(dv == 18446744073709551615.0);
  assert_int_equal(gguf_get_float(g, "v.f64", &dv, &err), 0);
  assert_true(dv == -0.1);

  enum gguf_vtype et;
  uint64_t count;
  assert_int_equal(gguf_get_arr(g, "v.nested", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_ARRAY);
  assert_int_equal(count, 3);
  assert_int_equal(gguf_arr_int(g, "v.nested", 0, &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "'v.nested'");
  assert_has(err.msg, "array of array");
  assert_has(err.msg, at_byte(nested_at));
  assert_int_equal(gguf_arr_float(g, "v.nested", 0, &dv, &err), MODEL_ECORRUPT);
  const int64_t u8s[] = {1, 255, 127};
  for (uint64_t i = 0; i < 3; i++) {
    assert_int_equal(gguf_arr_int(g, "v.a_u8", i, &iv, &err), 0);
    assert_true(iv == u8s[i]);
  }
  assert_int_equal(gguf_arr_int(g, "v.a_bool", 0, &iv, &err), 0);
  assert_true(iv == 1);
  assert_int_equal(gguf_arr_int(g, "v.a_bool", 1, &iv, &err), 0);
  assert_true(iv == 0);
  assert_int_equal(gguf_arr_float(g, "v.a_bool", 1, &dv, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_arr_float(g, "v.a_f64", 0, &dv, &err), 0);
  assert_true(dv == -0.1);
  assert_int_equal(gguf_arr_int(g, "v.a_f64", 0, &iv, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_arr_int(g, "v.a_u64", 0, &iv, &err), 0);
  assert_true(iv == 5);
  assert_int_equal(gguf_arr_int(g, "v.a_u64", 1, &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, "does not fit");
  assert_int_equal(gguf_get_arr(g, "v.deep", &et, &count, &err), 0);
  assert_int_equal(et, GGUF_ARRAY);
  mem_close(&m);
  free(b.p);
}

static void test_q8_0(void **state)
{
  (void)state;
  bb b = {0};
  bb_head(&b, 3, 1, 0);
  bb_tensor(&b, "q", 2, (const uint64_t[]){32, 3}, GGML_Q8_0, 0);
  bb_pad(&b, 32);
  const uint16_t scale[3] = {0x3800 /* 0.5 */, 0xc000 /* -2 */, 0x0001 /* 2^-24 */};
  const float dval[3] = {0.5f, -2.0f, 0x1p-24f};
  for (int k = 0; k < 3; k++) {
    bb_u16(&b, scale[k]);
    for (int j = 0; j < 32; j++)
      bb_u8(&b, (uint8_t)(int8_t)(j * 8 - 128)); /* -128, -120, ..., 120 */
  }
  mem m;
  model_err err = {0};
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  const gguf_tensor *t = gguf_find_tensor(m.g, "q");
  assert_non_null(t);
  assert_int_equal(t->n_elems, 96);
  assert_int_equal(t->n_bytes, 3 * 34);
  assert_ptr_equal(t->data, m.copy + gguf_data_offset(m.g));
  float out[96];
  assert_int_equal(gguf_tensor_to_f32(m.g, t, out, &err), 0);
  for (int k = 0; k < 3; k++)
    for (int j = 0; j < 32; j++)
      assert_true(out[32 * k + j] == dval[k] * (float)(j * 8 - 128));
  assert_true(out[0] == -64.0f && out[63] == -240.0f && out[95] == 120 * 0x1p-24f);
  mem_close(&m);
  free(b.p);
}

static void test_unsupported_type_lists(void **state)
{
  (void)state;
  bb b = {0};
  bb_head(&b, 3, 2, 0);
  bb_tensor(&b, "q4", 1, (const uint64_t[]){64}, 2 /* Q4_0 */, 0);
  bb_tensor(&b, "k6", 2, (const uint64_t[]){256, 2}, 14 /* Q6_K */, 64);
  bb_pad(&b, 32);
  for (int i = 0; i < 64 + 2 * 210; i++)
    bb_u8(&b, (uint8_t)i);
  mem m;
  model_err err = {0};
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  const gguf_tensor *q4 = gguf_tensor_at(m.g, 0), *k6 = gguf_tensor_at(m.g, 1);
  assert_int_equal(q4->n_bytes, 36);
  assert_int_equal(k6->n_bytes, 420);
  assert_string_equal(gguf_type_name(q4->type), "Q4_0");
  assert_string_equal(gguf_type_name(k6->type), "Q6_K");
  float out[512];
  assert_int_equal(gguf_tensor_to_f32(m.g, q4, out, &err), MODEL_EINVAL);
  assert_has(err.msg, "'q4'");
  assert_has(err.msg, "Q4_0 (2)");
  assert_int_equal(gguf_tensor_to_f32(m.g, k6, out, &err), MODEL_EINVAL);
  assert_has(err.msg, "'k6'");
  assert_has(err.msg, "(14)");
  mem_close(&m);
  free(b.p);
}

static void test_version2_and_memory(void **state)
{
  fixture *f = *state;
  bb b = {0};
  small_file(&b, 2);
  mem m;
  model_err err = {0};
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  assert_int_equal(gguf_version(m.g), 2);
  assert_int_equal(gguf_n_keys(m.g), 3);
  assert_int_equal(gguf_n_tensors(m.g), 2);
  const gguf_tensor *t0 = gguf_find_tensor(m.g, "t0"), *t1 = gguf_find_tensor(m.g, "t1");
  /* no copy: the tensors point into the caller's buffer */
  assert_ptr_equal(t0->data, m.copy + gguf_data_offset(m.g));
  assert_ptr_equal(t1->data, m.copy + gguf_data_offset(m.g) + 32);
  float out[8];
  assert_int_equal(gguf_tensor_to_f32(m.g, t0, out, &err), 0);
  for (int i = 0; i < 8; i++)
    assert_true(out[i] == (float)i - 3.5f);
  assert_int_equal(gguf_tensor_to_f32(m.g, t1, out, &err), 0);
  assert_true(out[0] == 1.0f && out[1] == -2.0f && out[2] == 0x1p-24f);
  const char *s;
  size_t len;
  assert_int_equal(gguf_arr_str(m.g, "a.arr", 1, &s, &len, &err), 0);
  assert_int_equal(len, 2);
  assert_memory_equal(s, "yz", 2);
  mem_close(&m);

  /* the same bytes from a file, and the label in messages */
  spit(f->path, b.p, b.n);
  gguf *g = NULL;
  assert_int_equal(gguf_open(f->path, &g, &err), 0);
  assert_int_equal(gguf_version(g), 2);
  int64_t iv;
  assert_int_equal(gguf_get_int(g, "general.architecture", &iv, &err), MODEL_ECORRUPT);
  assert_has(err.msg, f->path);
  assert_has(err.msg, "'general.architecture'");
  assert_has(err.msg, "string");
  gguf_close(g);
  assert_int_equal(gguf_open_memory(b.p, b.n, "blob", &g, &err), 0);
  assert_int_equal(gguf_get_int(g, "nope", &iv, &err), MODEL_ENOENT);
  assert_has(err.msg, "blob");
  gguf_close(g);
  free(b.p);
}

static void test_open_errors(void **state)
{
  fixture *f = *state;
  gguf *g = NULL;
  model_err err = {0};
  assert_int_equal(gguf_open(f->path, &g, &err), MODEL_ENOENT);
  assert_has(err.msg, f->path);
  assert_int_equal(gguf_open(f->dir, &g, &err), MODEL_EINVAL);
  assert_has(err.msg, f->dir);
  spit(f->path, NULL, 0);
  assert_int_equal(gguf_open(f->path, &g, &err), MODEL_ECORRUPT);
  assert_has(err.msg, f->path);
  assert_has(err.msg, "magic");
  assert_null(g);
  assert_int_equal(gguf_open_memory(NULL, 0, NULL, &g, &err), MODEL_ECORRUPT);
  assert_int_equal(gguf_open_memory(NULL, 5, NULL, &g, &err), MODEL_EINVAL);
  assert_null(g);
}

/* Every proper prefix of a valid file fails cleanly, in memory and on disk. */
static void test_truncations(void **state)
{
  fixture *f = *state;
  bb b = {0};
  small_file(&b, 3);
  model_err err;
  mem m;
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  mem_close(&m);
  for (size_t n = 0; n < b.n; n++) {
    memset(&err, 0, sizeof err);
    int rc = mem_open(&m, b.p, n, &err);
    if (rc != MODEL_ECORRUPT)
      fail_msg("prefix of %zu bytes: code %d (%s)", n, rc, err.msg);
    assert_has(err.msg, "<memory>");
    assert_true(strstr(err.msg, "byte ") || strstr(err.msg, "magic"));
    spit(f->path, b.p, n);
    gguf *g = NULL;
    assert_int_equal(gguf_open(f->path, &g, &err), MODEL_ECORRUPT);
    assert_null(g);
    assert_has(err.msg, f->path);
  }
  free(b.p);
}

static void test_bad_header(void **state)
{
  (void)state;
  bb b = {0};
  small_file(&b, 3);
  b.p[3] = 'X';
  expect_fail(&b, MODEL_ECORRUPT, "bad magic", NULL, NULL);
  b.n = 0;
  small_file(&b, 1);
  expect_fail(&b, MODEL_EINVAL, "version 1 not supported", NULL, NULL);
  b.n = 0;
  small_file(&b, 4);
  expect_fail(&b, MODEL_EINVAL, "version 4 not supported", NULL, NULL);
  b.n = 0;
  small_file(&b, 0);
  expect_fail(&b, MODEL_EINVAL, "version 0 not supported", NULL, NULL);
  b.n = 0;
  small_file(&b, 0x03000000); /* a big-endian version 3 */
  expect_fail(&b, MODEL_EINVAL, "byte-swapped", "big-endian", NULL);
  b.n = 0;
  bb_head(&b, 3, 0, 1ull << 40);
  bb_key(&b, "a", GGUF_U8);
  bb_u8(&b, 1);
  expect_fail(&b, MODEL_ECORRUPT, "key count 1099511627776", "byte 16", NULL);
  b.n = 0;
  bb_head(&b, 3, UINT64_MAX, 0);
  bb_tensor(&b, "t", 1, (const uint64_t[]){1}, GGML_F32, 0);
  expect_fail(&b, MODEL_ECORRUPT, "tensor count 18446744073709551615", "byte 8", NULL);
  free(b.p);
}

static void test_bad_values(void **state)
{
  (void)state;
  bb b = {0};
  size_t at, len_at;

  /* a string value running past the end */
  bb_head(&b, 3, 0, 1);
  at = bb_key(&b, "general.name", GGUF_STRING);
  len_at = b.n;
  bb_u64(&b, 1000);
  bb_put(&b, "abcde", 5);
  expect_fail(&b, MODEL_ECORRUPT, "key 'general.name'", "past the end", at_byte(len_at));

  /* a key length running past the end */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_u64(&b, 1ull << 62);
  bb_put(&b, "abcdefghijklm", 13);
  expect_fail(&b, MODEL_ECORRUPT, "key #0", "past the end", at_byte(24));

  /* an array string running past the end */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_key(&b, "tok.list", GGUF_ARRAY);
  bb_u32(&b, GGUF_STRING);
  bb_u64(&b, 2);
  bb_str(&b, "ok");
  len_at = b.n;
  bb_u64(&b, 9);
  bb_put(&b, "short", 5);
  expect_fail(&b, MODEL_ECORRUPT, "key 'tok.list'", "past the end", at_byte(len_at));

  /* bool other than 0/1, alone and in an array */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  at = bb_key(&b, "a.flag", GGUF_BOOL);
  bb_u8(&b, 2);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.flag'", "invalid bool value 2", at_byte(b.n - 1));
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_key(&b, "a.flags", GGUF_ARRAY);
  bb_u32(&b, GGUF_BOOL);
  bb_u64(&b, 2);
  bb_u8(&b, 1);
  bb_u8(&b, 0xff);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.flags'", "invalid bool value 255", at_byte(b.n - 1));

  /* unknown value types */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  at = bb_key(&b, "a.x", 13);
  bb_u32(&b, 0);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.x'", "unknown value type 13", at_byte(at));
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  at = bb_key(&b, "a.arr", GGUF_ARRAY);
  bb_u32(&b, 42);
  bb_u64(&b, 0);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.arr'", "unknown element type 42", NULL);

  /* an array count larger than the file */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_key(&b, "a.arr", GGUF_ARRAY);
  bb_u32(&b, GGUF_U64);
  bb_u64(&b, 1ull << 61);
  bb_u64(&b, 1);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.arr'", "claims 2305843009213693952 u64", NULL);

  /* arrays nested 9 deep */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_key(&b, "a.deep", GGUF_ARRAY);
  for (int i = 0; i < 8; i++) {
    bb_u32(&b, GGUF_ARRAY);
    bb_u64(&b, 1);
  }
  bb_u32(&b, GGUF_U8);
  bb_u64(&b, 0);
  expect_fail(&b, MODEL_ECORRUPT, "key 'a.deep'", "nested deeper than 8", NULL);

  /* duplicate key */
  b.n = 0;
  bb_head(&b, 3, 0, 3);
  size_t first = bb_key(&b, "a.x", GGUF_U32);
  bb_u32(&b, 1);
  bb_key(&b, "a.y", GGUF_U32);
  bb_u32(&b, 2);
  at = bb_key(&b, "a.x", GGUF_I8);
  bb_u8(&b, 3);
  char want[64];
  snprintf(want, sizeof want, "first at byte %zu", first);
  expect_fail(&b, MODEL_ECORRUPT, "duplicate key 'a.x'", at_byte(at), want);

  /* a key with a NUL byte */
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_u64(&b, 3);
  bb_put(&b, "a\0b", 3);
  bb_u32(&b, GGUF_U8);
  bb_u8(&b, 0);
  expect_fail(&b, MODEL_ECORRUPT, "NUL byte", at_byte(24), NULL);

  /* bad general.alignment values */
  const uint32_t bad_align[] = {48, 4, 0, 0x80000001};
  for (size_t i = 0; i < 4; i++) {
    b.n = 0;
    bb_head(&b, 3, 0, 1);
    bb_key(&b, "general.alignment", GGUF_U32);
    bb_u32(&b, bad_align[i]);
    snprintf(want, sizeof want, "alignment %u is not a power of two", bad_align[i]);
    expect_fail(&b, MODEL_ECORRUPT, "key 'general.alignment'", want, NULL);
  }
  b.n = 0;
  bb_head(&b, 3, 0, 1);
  bb_key(&b, "general.alignment", GGUF_STRING);
  bb_str(&b, "64");
  expect_fail(&b, MODEL_ECORRUPT, "key 'general.alignment'", "type string", NULL);
  free(b.p);
}

/* A file with one F32 [8] tensor "t0" at offset 0, then what add() appends
 * to the tensor infos, then data of data_bytes. */
static void tensor_file(bb *b, uint64_t n_tensors, uint64_t alignment, size_t data_bytes,
                        void (*add)(bb *b))
{
  b->n = 0;
  bb_head(b, 3, n_tensors, alignment ? 1 : 0);
  if (alignment) {
    bb_key(b, "general.alignment", GGUF_U32);
    bb_u32(b, (uint32_t)alignment);
  }
  bb_tensor(b, "t0", 1, (const uint64_t[]){8}, GGML_F32, 0);
  if (add)
    add(b);
  bb_pad(b, alignment ? alignment : 32);
  for (size_t i = 0; i < data_bytes; i++)
    bb_u8(b, (uint8_t)i);
}

static size_t t1_at; /* byte offset of the tensor info add_* appended */

static void add_dup(bb *b)
{
  t1_at = bb_tensor(b, "t0", 1, (const uint64_t[]){8}, GGML_F32, 32);
}
static void add_ndims0(bb *b)
{
  t1_at = bb_tensor(b, "t1", 0, NULL, GGML_F32, 32);
}
static void add_ndims5(bb *b)
{
  t1_at = bb_tensor(b, "t1", 5, (const uint64_t[]){1, 1, 1, 1, 1}, GGML_F32, 32);
}
static void add_unaligned(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){4}, GGML_F32, 48);
}
static void add_at32(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){8}, GGML_F32, 32);
}
static void add_overlap(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){4}, GGML_F16, 0);
}
static void add_unknown_type(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){4}, 99, 32);
}
static void add_q4k_100(bb *b)
{
  t1_at = bb_tensor(b, "t1", 2, (const uint64_t[]){100, 256}, 12, 32);
}
static void add_q8_33(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){33}, GGML_Q8_0, 32);
}
static void add_overflow(bb *b)
{
  t1_at = bb_tensor(b, "t1", 3, (const uint64_t[]){1ull << 32, 1ull << 31, 2}, GGML_F32, 32);
}
static void add_huge_dim(bb *b)
{
  t1_at = bb_tensor(b, "t1", 1, (const uint64_t[]){1ull << 63}, 24 /* I8 */, 32);
}
static void add_bytes_overflow(bb *b)
{
  t1_at = bb_tensor(b, "t1", 2, (const uint64_t[]){1ull << 32, 1ull << 30}, GGML_F32, 32);
}
static void add_empty(bb *b)
{
  t1_at = bb_tensor(b, "t1", 2, (const uint64_t[]){0, 5}, GGML_F32, 32);
}

static void test_bad_tensors(void **state)
{
  (void)state;
  bb b = {0};
  char want[96];

  tensor_file(&b, 2, 0, 64, add_dup);
  snprintf(want, sizeof want, "duplicate tensor 't0' at byte %zu (first at byte 24)", t1_at);
  expect_fail(&b, MODEL_ECORRUPT, want, NULL, NULL);

  tensor_file(&b, 2, 0, 64, add_ndims0);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "n_dims 0", at_byte(t1_at));
  tensor_file(&b, 2, 0, 64, add_ndims5);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "n_dims 5", at_byte(t1_at));

  tensor_file(&b, 2, 0, 64, add_unaligned);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "offset 48 is not a multiple of the alignment 32",
              at_byte(t1_at));
  /* the same offset is fine at alignment 16... */
  tensor_file(&b, 2, 16, 64, add_unaligned);
  mem m;
  model_err err = {0};
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  assert_int_equal(gguf_alignment(m.g), 16);
  mem_close(&m);
  /* ...and offset 32 is not at alignment 64 */
  tensor_file(&b, 2, 64, 96, add_at32);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "offset 32 is not a multiple of the alignment 64",
              NULL);

  /* data past the end of the file, by one byte */
  tensor_file(&b, 2, 0, 63, add_at32);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "offset 32 (32 bytes) extends past the end",
              at_byte(t1_at));
  tensor_file(&b, 2, 0, 64, add_at32);
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  mem_close(&m);

  tensor_file(&b, 2, 0, 64, add_overlap);
  expect_fail(&b, MODEL_ECORRUPT, "overlaps tensor 't0'", "tensor 't1'", NULL);

  tensor_file(&b, 2, 0, 64, add_unknown_type);
  expect_fail(&b, MODEL_EINVAL, "tensor 't1'", "unknown ggml type 99", at_byte(t1_at));

  tensor_file(&b, 2, 0, 64, add_q4k_100);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'",
              "Q4_K row length 100 is not a multiple of the block size 256", NULL);
  tensor_file(&b, 2, 0, 64, add_q8_33);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "block size 32", NULL);

  tensor_file(&b, 2, 0, 64, add_overflow);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "overflows", NULL);
  tensor_file(&b, 2, 0, 64, add_huge_dim);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "overflows at dimension 0", NULL);
  tensor_file(&b, 2, 0, 64, add_bytes_overflow);
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't1'", "overflows", NULL);

  /* an empty tensor may sit at the end of the data */
  tensor_file(&b, 2, 0, 32, add_empty);
  assert_int_equal(mem_open(&m, b.p, b.n, &err), 0);
  assert_int_equal(gguf_find_tensor(m.g, "t1")->n_elems, 0);
  mem_close(&m);

  /* a tensor info cut short names the tensor */
  tensor_file(&b, 1, 0, 0, NULL);
  b.n = 24 + 33; /* one byte short of t0's info */
  expect_fail(&b, MODEL_ECORRUPT, "tensor 't0' (byte 24)", "truncated at byte 50: offset", NULL);
  free(b.p);
}

/* ---- files from the independent Python writer ------------------------------------ */

static char *dup_n(const char *s, size_t n)
{
  char *c = malloc(n + 1);
  assert_non_null(c);
  memcpy(c, s, n);
  c[n] = '\0';
  return c;
}

/* Copies key k of g into w (the value types the writer has). */
static void copy_key(const gguf *g, const char *k, gguf_writer *w)
{
  model_err err;
  int64_t iv = 0;
  double dv = 0;
  const char *s;
  size_t len;
  enum gguf_vtype et;
  uint64_t n;
  int type = gguf_key_type(g, k);
  if (type == GGUF_U32 || type == GGUF_I32 || type == GGUF_BOOL)
    assert_int_equal(gguf_get_int(g, k, &iv, &err), 0);
  switch (type) {
  case GGUF_U32:
    assert_int_equal(gguf_writer_set_u32(w, k, (uint32_t)iv), 0);
    return;
  case GGUF_I32:
    assert_int_equal(gguf_writer_set_i32(w, k, (int32_t)iv), 0);
    return;
  case GGUF_BOOL:
    assert_int_equal(gguf_writer_set_bool(w, k, (int)iv), 0);
    return;
  case GGUF_F32:
    assert_int_equal(gguf_get_float(g, k, &dv, &err), 0);
    assert_int_equal(gguf_writer_set_f32(w, k, (float)dv), 0);
    return;
  case GGUF_STRING: {
    assert_int_equal(gguf_get_str(g, k, &s, &len, &err), 0);
    char *c = dup_n(s, len);
    assert_int_equal(gguf_writer_set_str(w, k, c), 0);
    free(c);
    return;
  }
  case GGUF_ARRAY:
    break;
  default:
    fail_msg("key %s: type %d", k, type);
  }
  assert_int_equal(gguf_get_arr(g, k, &et, &n, &err), 0);
  if (et == GGUF_STRING) {
    char **v = calloc(n + 1, sizeof *v);
    assert_non_null(v);
    for (uint64_t j = 0; j < n; j++) {
      assert_int_equal(gguf_arr_str(g, k, j, &s, &len, &err), 0);
      v[j] = dup_n(s, len);
    }
    assert_int_equal(gguf_writer_set_arr_str(w, k, (const char *const *)v, n), 0);
    for (uint64_t j = 0; j < n; j++)
      free(v[j]);
    free(v);
  } else if (et == GGUF_I32) {
    int32_t *v = calloc(n + 1, sizeof *v);
    assert_non_null(v);
    for (uint64_t j = 0; j < n; j++) {
      assert_int_equal(gguf_arr_int(g, k, j, &iv, &err), 0);
      v[j] = (int32_t)iv;
    }
    assert_int_equal(gguf_writer_set_arr_i32(w, k, v, n), 0);
    free(v);
  } else if (et == GGUF_F32) {
    float *v = calloc(n + 1, sizeof *v);
    assert_non_null(v);
    for (uint64_t j = 0; j < n; j++) {
      assert_int_equal(gguf_arr_float(g, k, j, &dv, &err), 0);
      v[j] = (float)dv;
    }
    assert_int_equal(gguf_writer_set_arr_f32(w, k, v, n), 0);
    free(v);
  } else {
    fail_msg("key %s: array of %s", k, gguf_vtype_name(et));
  }
}

/* The model fixtures (tests/fixtures, written by tests/reference/gguf_io.py
 * from the format description) read, and rewritten by gguf_writer they come
 * out byte for byte the same: same layout, padding and half-precision bits. */
static void test_python_fixtures(void **state)
{
  fixture *f = *state;
  static const char *names[] = {"gpt2_tied_f32", "gpt2_untied_f16", "llama_gqa_f32",
                                "qwen2_bias_bf16"};
  const char *top = getenv("top_srcdir");
  char src[512];
  snprintf(src, sizeof src, "%s/tests/fixtures/%s.gguf", top ? top : ".", names[0]);
  if (access(src, R_OK) != 0)
    skip(); /* not run from the source tree */
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    snprintf(src, sizeof src, "%s/tests/fixtures/%s.gguf", top ? top : ".", names[i]);
    gguf *g = NULL;
    model_err err = {0};
    if (gguf_open(src, &g, &err) != 0)
      fail_msg("%s", err.msg);
    gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    for (size_t k = 0; k < gguf_n_keys(g); k++)
      copy_key(g, gguf_key_at(g, k), w);
    for (size_t k = 0; k < gguf_n_tensors(g); k++) {
      const gguf_tensor *t = gguf_tensor_at(g, k);
      float *v = malloc(t->n_elems * sizeof *v + 1);
      assert_non_null(v);
      assert_int_equal(gguf_tensor_to_f32(g, t, v, &err), 0);
      assert_int_equal(gguf_writer_add_tensor(w, t->name, t->n_dims, t->dims, t->type, v), 0);
      free(v);
    }
    assert_int_equal(gguf_writer_write(w, f->path, &err), 0);
    gguf_writer_free(w);
    size_t n = (size_t)file_size(src);
    assert_int_equal(file_size(f->path), n);
    uint8_t *a = malloc(n), *b = malloc(n);
    assert_true(a && b);
    FILE *fa = fopen(src, "rb"), *fb = fopen(f->path, "rb");
    assert_true(fa && fb);
    assert_int_equal(fread(a, 1, n, fa), n);
    assert_int_equal(fread(b, 1, n, fb), n);
    fclose(fa);
    fclose(fb);
    assert_memory_equal(a, b, n);
    free(a);
    free(b);
    gguf_close(g);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_half_conversions),
      cmocka_unit_test_setup_teardown(test_roundtrip_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_roundtrip_tensors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_alignment, setup, teardown),
      cmocka_unit_test_setup_teardown(test_writer_errors, setup, teardown),
      cmocka_unit_test(test_reader_value_types),
      cmocka_unit_test(test_q8_0),
      cmocka_unit_test(test_unsupported_type_lists),
      cmocka_unit_test_setup_teardown(test_version2_and_memory, setup, teardown),
      cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_truncations, setup, teardown),
      cmocka_unit_test(test_bad_header),
      cmocka_unit_test(test_bad_values),
      cmocka_unit_test(test_bad_tensors),
      cmocka_unit_test_setup_teardown(test_python_fixtures, setup, teardown),
  };
  return cmocka_run_group_tests_name("gguf", tests, NULL, NULL);
}
