/* model/safetensors.c and model/hf.c: the reader on valid and damaged
 * buffers (every truncation, each validation rule, with the file and tensor
 * named), and Hugging Face folders against independent references: the
 * PyTorch fixture llama_hf_safetensors, and the GGUF fixtures re-written here
 * as HF folders (Llama: same logits as the permuted GGUF with interleaved
 * RoPE; GPT-2 with Conv1D weights, tied F32 and untied F16; Qwen2 BF16 with
 * biases; a sharded copy with an index). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/hf.h"
#include "model/load.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "tests/fixture.h"

/* ---- building files ---------------------------------------------------------- */

/* One tensor to write: data is n_bytes raw little-endian bytes. */
typedef struct wt {
  char name[128];
  const char *dtype;
  int n_dims;
  int64_t shape[4];
  const void *data;
  size_t n_bytes;
} wt;

/* A safetensors file of ts laid out in order; metadata (may be NULL) is a
 * JSON object; pad: header padded with spaces to a multiple of 8. */
static uint8_t *build_st(const wt *ts, int n, json_t *metadata, int pad, size_t *size)
{
  json_t *h = json_object();
  size_t off = 0;
  for (int i = 0; i < n; i++) {
    json_t *shape = json_array();
    for (int d = 0; d < ts[i].n_dims; d++)
      json_array_append_new(shape, json_integer(ts[i].shape[d]));
    json_object_set_new(h, ts[i].name,
                        json_pack("{s:s, s:o, s:[I, I]}", "dtype", ts[i].dtype, "shape", shape,
                                  "data_offsets", (json_int_t)off,
                                  (json_int_t)(off + ts[i].n_bytes)));
    off += ts[i].n_bytes;
  }
  if (metadata)
    json_object_set(h, "__metadata__", metadata);
  char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(h);
  size_t hn = strlen(hs), padded = pad ? (hn + 7) / 8 * 8 : hn;
  uint8_t *b = malloc(8 + padded + off + 1);
  for (int k = 0; k < 8; k++)
    b[k] = (uint8_t)((uint64_t)padded >> (8 * k));
  memcpy(b + 8, hs, hn);
  memset(b + 8 + hn, ' ', padded - hn);
  off = 8 + padded;
  for (int i = 0; i < n; i++) {
    if (ts[i].n_bytes)
      memcpy(b + off, ts[i].data, ts[i].n_bytes);
    off += ts[i].n_bytes;
  }
  free(hs);
  *size = off;
  return b;
}

/* A file of a raw header and data_bytes bytes of data (0x11). */
static uint8_t *raw_st(const char *header, size_t data_bytes, size_t *size)
{
  size_t hn = strlen(header);
  uint8_t *b = malloc(8 + hn + data_bytes + 1);
  for (int k = 0; k < 8; k++)
    b[k] = (uint8_t)((uint64_t)hn >> (8 * k));
  memcpy(b + 8, header, hn);
  memset(b + 8 + hn, 0x11, data_bytes);
  *size = 8 + hn + data_bytes;
  return b;
}

static void write_file(const char *path, const void *buf, size_t n)
{
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(buf, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

static void write_st(const char *path, const wt *ts, int n)
{
  size_t size;
  uint8_t *b = build_st(ts, n, NULL, 1, &size);
  write_file(path, b, size);
  free(b);
}

static void write_json(const char *path, json_t *j)
{
  assert_int_equal(json_dump_file(j, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER), 0);
}

static void make_dir(char *tmpl)
{
  assert_non_null(mkdtemp(tmpl));
}

/* Removes a flat directory and its files. */
static void remove_dir(const char *dir)
{
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[4200];
  assert_non_null(d);
  while ((e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    unlink(path);
  }
  closedir(d);
  rmdir(dir);
}

static void in_dir(char *buf, size_t n, const char *dir, const char *name)
{
  snprintf(buf, n, "%s/%s", dir, name);
}

/* ---- the reader ---------------------------------------------------------------- */

/* F16 bits 0x3c00 = 1, 0xc100 = -2.5, 0x7bff = 65504, 0x0001 = 2^-24. */
static const uint16_t f16_bits[4] = {0x3c00, 0xc100, 0x7bff, 0x0001};
static const float f16_vals[4] = {1.0f, -2.5f, 65504.0f, 5.9604644775390625e-08f};
static const uint16_t bf16_bits[4] = {0x3f80, 0xc020, 0x7f7f, 0x0001};
static const float f32_vals[6] = {0.5f, -1.0f, 3.25f, 1e-30f, -0.0f, 12345.678f};
static const int32_t i32_vals[3] = {1, -2, 3};
static const float scalar_val = 42.0f;

static uint8_t *small_file(int pad, size_t *size)
{
  wt ts[] = {
      {"b.f16", "F16", 1, {4}, f16_bits, sizeof f16_bits},
      {"a.f32", "F32", 2, {2, 3}, f32_vals, sizeof f32_vals},
      {"c.bf16", "BF16", 2, {2, 2}, bf16_bits, sizeof bf16_bits},
      {"d.empty", "F32", 2, {0, 5}, NULL, 0},
      {"e.i32", "I32", 1, {3}, i32_vals, sizeof i32_vals},
      {"f.scalar", "F32", 0, {0}, &scalar_val, sizeof scalar_val},
  };
  json_t *meta = json_pack("{s:s, s:s}", "format", "pt", "note", "x y");
  uint8_t *b = build_st(ts, 6, meta, pad, size);
  json_decref(meta);
  return b;
}

static void check_small(const safetensors *st)
{
  model_err err = {0, ""};
  float out[8];
  assert_int_equal(st_n_tensors(st), 6);
  /* data order: the order written; the empty tensor sorts before the one it shares an
   * offset with */
  const char *order[] = {"b.f16", "a.f32", "c.bf16", "d.empty", "e.i32", "f.scalar"};
  for (size_t i = 0; i < 6; i++) {
    const st_tensor *t = st_tensor_at(st, i);
    assert_string_equal(t->name, order[i]);
    assert_ptr_equal(st_find(st, order[i]), t);
  }
  assert_null(st_tensor_at(st, 6));
  assert_null(st_find(st, "nope"));
  assert_null(st_find(st, ""));

  const st_tensor *t = st_find(st, "a.f32");
  assert_int_equal(t->dtype, ST_F32);
  assert_int_equal(t->n_dims, 2);
  assert_int_equal(t->shape[0], 2);
  assert_int_equal(t->shape[1], 3);
  assert_int_equal(t->n_elems, 6);
  assert_int_equal(t->n_bytes, 24);
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), 0);
  assert_memory_equal(out, f32_vals, sizeof f32_vals);

  t = st_find(st, "b.f16");
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), 0);
  for (int i = 0; i < 4; i++)
    assert_true(out[i] == f16_vals[i]);

  t = st_find(st, "c.bf16");
  assert_int_equal(t->dtype, ST_BF16);
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), 0);
  for (int i = 0; i < 4; i++)
    assert_true(out[i] == gguf_bf16_to_f32(bf16_bits[i]));
  assert_true(out[0] == 1.0f && out[1] == -2.5f);

  t = st_find(st, "d.empty");
  assert_int_equal(t->n_elems, 0);
  assert_int_equal(t->n_bytes, 0);
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), 0);

  t = st_find(st, "f.scalar");
  assert_int_equal(t->n_dims, 0);
  assert_int_equal(t->n_elems, 1);
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), 0);
  assert_true(out[0] == 42.0f);

  t = st_find(st, "e.i32"); /* listed, but not converted */
  assert_int_equal(t->dtype, ST_I32);
  assert_int_equal(st_tensor_to_f32(st, t, out, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "e.i32"));
  assert_non_null(strstr(err.msg, "I32"));
  assert_non_null(strstr(err.msg, st_label(st)));

  assert_string_equal(st_metadata(st, "format"), "pt");
  assert_string_equal(st_metadata(st, "note"), "x y");
  assert_null(st_metadata(st, "absent"));
  assert_int_equal(st_n_metadata(st), 2);
  assert_string_equal(st_metadata_key_at(st, 0), "format");
  assert_null(st_metadata_key_at(st, 2));
}

static void test_reader_valid(void **state)
{
  (void)state;
  model_err err = {0, ""};
  safetensors *st;
  size_t n;
  for (int pad = 0; pad < 2; pad++) { /* unpadded: data not 4-byte aligned */
    uint8_t *b = small_file(pad, &n);
    assert_int_equal(st_open_memory(b, n, "small", &st, &err), 0);
    check_small(st);
    assert_string_equal(st_label(st), "small");
    st_close(st);
    free(b);
  }
  /* through mmap */
  char dir[] = "/tmp/zotune-test-st-XXXXXX", path[4200];
  make_dir(dir);
  in_dir(path, sizeof path, dir, "small.safetensors");
  uint8_t *b = small_file(1, &n);
  write_file(path, b, n);
  free(b);
  assert_int_equal(st_open(path, &st, &err), 0);
  check_small(st);
  assert_string_equal(st_label(st), path);
  st_close(st);
  in_dir(path, sizeof path, dir, "absent.safetensors");
  assert_int_equal(st_open(path, &st, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, "absent.safetensors"));
  remove_dir(dir);

  /* an empty file is valid: "{}" and no data, padded or not */
  const char *empties[] = {"{}", "{}      ", "{\"__metadata__\":{}}", "{\"__metadata__\":null}"};
  for (size_t i = 0; i < 4; i++) {
    b = raw_st(empties[i], 0, &n);
    assert_int_equal(st_open_memory(b, n, NULL, &st, &err), 0);
    assert_int_equal(st_n_tensors(st), 0);
    assert_null(st_tensor_at(st, 0));
    assert_null(st_find(st, "x"));
    assert_null(st_metadata(st, "x"));
    st_close(st);
    free(b);
  }
  /* a dtype this reader lists but does not convert; two F4 fill one byte */
  b = raw_st("{\"q\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, &n);
  assert_int_equal(st_open_memory(b, n, "f4", &st, &err), 0);
  float out[2];
  assert_int_equal(st_find(st, "q")->dtype, ST_F4);
  assert_int_equal(st_tensor_to_f32(st, st_find(st, "q"), out, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "'q'"));
  assert_non_null(strstr(err.msg, "F4"));
  st_close(st);
  free(b);
  assert_string_equal(st_dtype_name(ST_BF16), "BF16");
  assert_int_equal(st_dtype_bits(ST_F6_E2M3), 6);
  assert_string_equal(st_dtype_name((st_dtype)99), "?");
}

/* Every proper prefix of a valid file fails cleanly, naming the file. */
static void test_reader_truncations(void **state)
{
  (void)state;
  model_err err = {0, ""};
  safetensors *st = NULL;
  size_t n;
  uint8_t *b = small_file(1, &n);
  for (size_t k = 0; k < n; k++) {
    uint8_t *cut = malloc(k ? k : 1); /* exactly k bytes, so ASan sees over-reads */
    memcpy(cut, b, k);
    err.msg[0] = '\0';
    int rc = st_open_memory(k ? cut : NULL, k, "cut.safetensors", &st, &err);
    if (rc != MODEL_ECORRUPT)
      fail_msg("prefix of %zu bytes: code %d (%s)", k, rc, err.msg);
    assert_non_null(strstr(err.msg, "cut.safetensors"));
    free(cut);
  }
  /* and the whole file is fine */
  assert_int_equal(st_open_memory(b, n, NULL, &st, &err), 0);
  st_close(st);
  free(b);
}

typedef struct bad_case {
  const char *what;
  const char *header;
  size_t data;
  int code;
  const char *needles[3]; /* substrings the message must have, besides the label */
} bad_case;

static const bad_case bad_cases[] = {
    {"non-object JSON", "[1, 2]  ", 0, MODEL_ECORRUPT, {"byte 8", "JSON object"}},
    {"string JSON", "\"abc\"", 0, MODEL_ECORRUPT, {"JSON object"}},
    {"leading space", " {}", 0, MODEL_ECORRUPT, {"JSON object"}},
    {"broken JSON", "{\"a\":", 0, MODEL_ECORRUPT, {"header JSON"}},
    {"garbage after", "{} x", 0, MODEL_ECORRUPT, {"header JSON"}},
    {"not UTF-8", "{\"\xff\":1}", 0, MODEL_ECORRUPT, {"header JSON"}},
    {"record not an object", "{\"w\":5}", 0, MODEL_ECORRUPT, {"'w'", "not a JSON object"}},
    {"bad dtype",
     "{\"w.bad\":{\"dtype\":\"F99\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w.bad'", "F99"}},
    {"dtype not a string",
     "{\"w\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "dtype"}},
    {"no shape",
     "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "shape"}},
    {"negative dim",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "shape[0]"}},
    {"fractional dim",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "shape[1]"}},
    {"nine dims",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}",
     4,
     MODEL_EINVAL,
     {"'w'", "9 dimensions"}},
    {"numel overflow",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "overflows"}},
    {"bytes overflow",
     "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "overflows"}},
    {"F4 half a byte",
     "{\"w\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}",
     2,
     MODEL_ECORRUPT,
     {"'w'", "whole bytes"}},
    {"no offsets",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "data_offsets"}},
    {"three offsets",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "data_offsets"}},
    {"negative offset",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "data_offsets"}},
    {"end before begin",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}",
     8,
     MODEL_ECORRUPT,
     {"'w'", "[8, 4]"}},
    {"shape/offset mismatch",
     "{\"w.mm\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
     12,
     MODEL_ECORRUPT,
     {"'w.mm'", "needs 16 bytes", "[2, 2]"}},
    {"past the end",
     "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "past the end"}},
    {"huge offsets",
     "{\"w\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,"
     "9223372036854775807]}}",
     4,
     MODEL_ECORRUPT,
     {"'w'", "past the end"}},
    {"gap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b.gap\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12,
     MODEL_ECORRUPT,
     {"'b.gap'", "gap of 4 bytes", "'a'"}},
    {"gap at the start",
     "{\"a.late\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8,
     MODEL_ECORRUPT,
     {"'a.late'", "gap", "byte"}},
    {"overlap",
     "{\"a.big\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b.in\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8,
     MODEL_ECORRUPT,
     {"'b.in'", "overlap", "'a.big'"}},
    {"same offsets",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     4,
     MODEL_ECORRUPT,
     {"'b'", "overlap", "'a'"}},
    {"empty inside another",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
     8,
     MODEL_ECORRUPT,
     {"'z'", "overlap"}},
    {"duplicate",
     "{\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\",\"shape\":[1],"
     "\"data_offsets\":[0,4]},\"model.layers.0.self_attn.q_proj.weight\":{\"dtype\":\"F32\","
     "\"shape\":[1],\"data_offsets\":[4,8]}}",
     8,
     MODEL_ECORRUPT,
     {"duplicate", "\"model.layers.0.self_attn.q_proj.weight\""}},
    {"duplicate short", "{\"a\":{},\"a\":{}}", 0, MODEL_ECORRUPT, {"duplicate", "\"a\""}},
    {"duplicate escaped",
     "{\"a\\\"b\":{},\"a\\\"b\":{}}",
     0,
     MODEL_ECORRUPT,
     {"duplicate", "a\\\"b"}},
    {"duplicate field",
     "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F16\"}}",
     0,
     MODEL_ECORRUPT,
     {"duplicate", "\"dtype\""}},
    {"trailing bytes",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     8,
     MODEL_ECORRUPT,
     {"4 trailing bytes", "byte"}},
    {"data but no tensors", "{}", 3, MODEL_ECORRUPT, {"3 trailing bytes"}},
    {"metadata not an object", "{\"__metadata__\":[]}", 0, MODEL_ECORRUPT, {"__metadata__"}},
    {"metadata value not a string",
     "{\"__metadata__\":{\"k\":1}}",
     0,
     MODEL_ECORRUPT,
     {"__metadata__", "\"k\""}},
};

static void test_reader_bad_headers(void **state)
{
  (void)state;
  model_err err;
  safetensors *st = NULL;
  size_t n;
  for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
    const bad_case *c = &bad_cases[i];
    uint8_t *b = raw_st(c->header, c->data, &n);
    uint8_t *exact = malloc(n);
    memcpy(exact, b, n);
    memset(&err, 0, sizeof err);
    int rc = st_open_memory(exact, n, "bad.safetensors", &st, &err);
    if (rc != c->code)
      fail_msg("%s: code %d, want %d (%s)", c->what, rc, c->code, err.msg);
    if (!strstr(err.msg, "bad.safetensors"))
      fail_msg("%s: message without the file: %s", c->what, err.msg);
    for (int k = 0; k < 3 && c->needles[k]; k++)
      if (!strstr(err.msg, c->needles[k]))
        fail_msg("%s: message lacks \"%s\": %s", c->what, c->needles[k], err.msg);
    free(exact);
    free(b);
  }
}

/* The length field: past the end of the file, over the limit, short files. */
static void test_reader_bad_lengths(void **state)
{
  (void)state;
  model_err err;
  safetensors *st = NULL;
  uint8_t b[32] = {0};
  memcpy(b + 8, "{}", 2);
  struct {
    uint64_t len;
    size_t n;
    const char *needle;
  } cases[] = {{1000, 10, "past the end"}, {3, 10, "past the end"},      {200000000, 10, "limit"},
               {UINT64_MAX, 10, "limit"},  {0, 10, "not a JSON object"}, {2, 7, "needs 8 bytes"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    for (int k = 0; k < 8; k++)
      b[k] = (uint8_t)(cases[i].len >> (8 * k));
    uint8_t *exact = malloc(cases[i].n);
    memcpy(exact, b, cases[i].n);
    memset(&err, 0, sizeof err);
    assert_int_equal(st_open_memory(exact, cases[i].n, "len.safetensors", &st, &err),
                     MODEL_ECORRUPT);
    if (!strstr(err.msg, cases[i].needle) || !strstr(err.msg, "len.safetensors"))
      fail_msg("length %llu: %s", (unsigned long long)cases[i].len, err.msg);
    free(exact);
  }
  assert_int_equal(st_open_memory(NULL, 0, NULL, &st, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, "<memory>"));
  assert_int_equal(st_open_memory(NULL, 5, NULL, &st, &err), MODEL_EINVAL);
}

/* ---- fixtures: batches and comparisons ---------------------------------------- */

/* Two models give the same logits at every real position of f's batch. */
static void compare_logits(const model *a, const model *b, const fx *f, double tol)
{
  model_err err = {0, ""};
  model_ws *wa, *wb;
  model_view va = model_plain_view(a), vb = model_plain_view(b);
  model_batch batch = {f->B, f->T, f->tokens, f->len, NULL};
  assert_int_equal(a->cfg.n_vocab, b->cfg.n_vocab);
  assert_int_equal(model_ws_new(a, f->B, f->T, &wa, &err), 0);
  assert_int_equal(model_ws_new(b, f->B, f->T, &wb, &err), 0);
  assert_int_equal(model_forward(a, &va, &batch, wa, &err), 0);
  assert_int_equal(model_forward(b, &vb, &batch, wb, &err), 0);
  float *x = malloc((size_t)a->cfg.n_vocab * sizeof *x);
  float *y = malloc((size_t)a->cfg.n_vocab * sizeof *y);
  double worst = 0;
  for (int s = 0; s < f->B; s++) {
    for (int t = 0; t < f->len[s]; t++) {
      assert_int_equal(model_logits_at(a, &va, wa, s, t, x, &err), 0);
      assert_int_equal(model_logits_at(b, &vb, wb, s, t, y, &err), 0);
      for (int j = 0; j < a->cfg.n_vocab; j++) {
        if (!close_enough(x[j], y[j], tol))
          fail_msg("sequence %d position %d logit %d: %.8g vs %.8g", s, t, j, (double)x[j],
                   (double)y[j]);
        worst = fmax(worst, fabs(x[j] - y[j]));
      }
    }
  }
  print_message("    largest logit difference %.3g\n", worst);
  free(x);
  free(y);
  model_ws_free(wa);
  model_ws_free(wb);
}

static void assert_same_params(const model *a, const model *b)
{
  assert_int_equal(a->n_params, b->n_params);
  assert_int_equal(a->n_tensors, b->n_tensors);
  for (int i = 0; i < a->n_tensors; i++)
    assert_string_equal(a->tensors[i].name, b->tensors[i].name);
  assert_memory_equal(a->params, b->params, a->n_params * sizeof *a->params);
}

/* ---- the Llama fixture ----------------------------------------------------------- */

static void test_hf_llama_fixture(void **state)
{
  (void)state;
  fx f;
  fx_load(&f, "llama_hf_safetensors.expected.json");
  assert_int_equal(f.m->cfg.arch, MODEL_LLAMA);
  assert_int_equal(f.m->cfg.rope, MODEL_ROPE_HALF);
  assert_string_equal(f.m->cfg.name, "llama");
  assert_int_equal(f.m->cfg.qkv_bias, 0);
  assert_true(f.m->cfg.norm_eps == 1e-5f);
  assert_true(f.m->cfg.rope_theta == 10000.0f);
  assert_null(f.m->tok); /* the folder has no tokenizer.json */
  check_against_fixture(&f, "llama_hf_safetensors");
  fx_free(&f);
}

/* HF order with half-split RoPE == GGUF's permuted rows with interleaved RoPE. */
static void test_hf_matches_gguf(void **state)
{
  (void)state;
  fx hf, gg;
  fx_load(&hf, "llama_hf_safetensors.expected.json");
  fx_load(&gg, "llama_gqa_f32.expected.json");
  assert_int_equal(gg.m->cfg.rope, MODEL_ROPE_INTERLEAVED);
  assert_int_equal(hf.m->n_params, gg.m->n_params);
  /* the q rows really are in another order */
  int q = model_find_tensor(hf.m, "blk.0.attn_q.weight");
  assert_memory_not_equal(hf.m->params + hf.m->tensors[q].offset,
                          gg.m->params + gg.m->tensors[q].offset,
                          hf.m->tensors[q].n * sizeof(float));
  compare_logits(hf.m, gg.m, &gg, 1e-5);
  fx_free(&hf);
  fx_free(&gg);
}

/* A Hugging Face Llama saved as GGUF ("llama": interleaved RoPE) has its q/k
 * rows permuted on the way out, so the file computes the same function; it
 * then equals the reference GGUF's parameters exactly. */
static void test_hf_saved_as_gguf(void **state)
{
  (void)state;
  fx hf, gg;
  model *back;
  model_err err = {0, ""};
  char dir[] = "/tmp/zotune-test-hfsave-XXXXXX", path[128];
  assert_non_null(mkdtemp(dir));
  fx_load(&hf, "llama_hf_safetensors.expected.json");
  fx_load(&gg, "llama_gqa_f32.expected.json");
  snprintf(path, sizeof path, "%s/m.gguf", dir);
  assert_int_equal(model_save_gguf(hf.m, NULL, path, GGML_F32, &err), 0);
  assert_int_equal(model_load_gguf(path, &back, &err), 0);
  assert_int_equal(back->cfg.rope, MODEL_ROPE_INTERLEAVED);
  assert_same_params(back, gg.m);
  compare_logits(back, hf.m, &hf, 1e-5);
  model_free(back);
  unlink(path);
  rmdir(dir);
  fx_free(&hf);
  fx_free(&gg);
}

/* model_save_hf then model_load_hf computes the same function (GPT-2 Conv1D
 * transposes, Qwen2 biases, Llama q/k row order), tokenizer included. */
static void test_save_hf_round_trip(void **state)
{
  (void)state;
  const char *fixtures[] = {"gpt2_tied_f32.expected.json", "gpt2_untied_f16.expected.json",
                            "llama_gqa_f32.expected.json", "qwen2_bias_bf16.expected.json"};
  for (size_t k = 0; k < 4; k++) {
    fx f;
    model *back;
    model_err err = {0, ""};
    char dir[] = "/tmp/zotune-test-savehf-XXXXXX";
    assert_non_null(mkdtemp(dir));
    fx_load(&f, fixtures[k]);
    assert_int_equal(model_save_hf(f.m, dir, &err), 0);
    if (model_load_hf(dir, &back, &err) != 0)
      fail_msg("%s: %s", fixtures[k], err.msg);
    compare_logits(back, f.m, &f, 1e-5);
    assert_non_null(back->tok);
    assert_int_equal(tok_n_vocab(back->tok), tok_n_vocab(f.m->tok));
    model_free(back);
    fx_free(&f);
    remove_dir(dir);
  }
}

/* The fixture's tensors, pointing into st (which must stay open). */
static int collect(const safetensors *st, wt *out, int cap)
{
  int n = (int)st_n_tensors(st);
  assert_true(n <= cap);
  for (int i = 0; i < n; i++) {
    const st_tensor *t = st_tensor_at(st, (size_t)i);
    memset(&out[i], 0, sizeof out[i]);
    snprintf(out[i].name, sizeof out[i].name, "%s", t->name);
    out[i].dtype = st_dtype_name(t->dtype);
    out[i].n_dims = t->n_dims;
    for (int d = 0; d < t->n_dims; d++)
      out[i].shape[d] = t->shape[d];
    out[i].data = t->data;
    out[i].n_bytes = t->n_bytes;
  }
  return n;
}

static int find_wt(const wt *ts, int n, const char *name)
{
  for (int i = 0; i < n; i++)
    if (strcmp(ts[i].name, name) == 0)
      return i;
  fail_msg("no tensor %s", name);
  return -1;
}

static json_t *fixture_config(void)
{
  char path[4200];
  json_error_t je;
  fixture_path(path, sizeof path, "llama_hf_safetensors/config.json");
  json_t *c = json_load_file(path, 0, &je);
  assert_non_null(c);
  return c;
}

static safetensors *fixture_st(void)
{
  char path[4200];
  model_err err = {0, ""};
  safetensors *st;
  fixture_path(path, sizeof path, "llama_hf_safetensors/model.safetensors");
  if (st_open(path, &st, &err) != 0)
    fail_msg("%s", err.msg);
  assert_string_equal(st_metadata(st, "format"), "pt");
  return st;
}

/* The fixture split into two shards plus model.safetensors.index.json. */
static void test_hf_sharded(void **state)
{
  (void)state;
  char dir[] = "/tmp/zotune-test-hf-XXXXXX", path[4200];
  const char *files[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
  model_err err = {0, ""};
  model *one, *two;
  wt all[64], part[2][64];
  int n_part[2] = {0, 0};
  safetensors *st = fixture_st();
  int n = collect(st, all, 64);
  json_t *map = json_object();
  for (int i = 0; i < n; i++) {
    int k = i % 2;
    part[k][n_part[k]++] = all[i];
    json_object_set_new(map, all[i].name, json_string(files[k]));
  }
  make_dir(dir);
  for (int k = 0; k < 2; k++) {
    in_dir(path, sizeof path, dir, files[k]);
    write_st(path, part[k], n_part[k]);
  }
  json_t *index =
      json_pack("{s:{s:I}, s:o}", "metadata", "total_size", (json_int_t)430432, "weight_map", map);
  in_dir(path, sizeof path, dir, "model.safetensors.index.json");
  write_json(path, index);
  json_decref(index);
  json_t *cfg = fixture_config();
  in_dir(path, sizeof path, dir, "config.json");
  write_json(path, cfg);
  json_decref(cfg);

  fixture_path(path, sizeof path, "llama_hf_safetensors");
  assert_int_equal(model_load_hf(path, &one, &err), 0);
  if (model_load_hf(dir, &two, &err) != 0)
    fail_msg("%s", err.msg);
  assert_same_params(one, two);
  assert_memory_equal(&one->cfg, &two->cfg, sizeof one->cfg);
  model_free(two);

  /* model.safetensors wins over an index when both are there (as in transformers) */
  in_dir(path, sizeof path, dir, "model.safetensors");
  write_st(path, all, n);
  assert_int_equal(model_load_hf(dir, &two, &err), 0);
  assert_same_params(one, two);
  model_free(two);
  unlink(path);

  /* a shard the index names is missing */
  in_dir(path, sizeof path, dir, files[1]);
  unlink(path);
  assert_int_equal(model_load_hf(dir, &two, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, files[1]));

  /* the index puts a tensor in the wrong shard */
  write_st(path, part[1], n_part[1]);
  json_t *bad =
      json_pack("{s:{s:s, s:s}}", "weight_map", all[0].name, files[1], all[1].name, files[1]);
  in_dir(path, sizeof path, dir, "model.safetensors.index.json");
  write_json(path, bad);
  json_decref(bad);
  assert_int_equal(model_load_hf(dir, &two, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, all[0].name));
  assert_non_null(strstr(err.msg, "index.json"));

  /* a shard outside the folder */
  bad = json_pack("{s:{s:s}}", "weight_map", all[0].name, "../x.safetensors");
  write_json(path, bad);
  json_decref(bad);
  assert_int_equal(model_load_hf(dir, &two, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, all[0].name));

  /* the same tensor in two shards (the index names both files) */
  wt first[65];
  memcpy(first, part[0], (size_t)n_part[0] * sizeof *first);
  first[n_part[0]] = part[1][0]; /* also in the second shard */
  in_dir(path, sizeof path, dir, files[0]);
  write_st(path, first, n_part[0] + 1);
  in_dir(path, sizeof path, dir, "model.safetensors.index.json");
  bad = json_pack("{s:{s:s}}", "weight_map", all[0].name, files[0]);
  json_object_set_new(json_object_get(bad, "weight_map"), part[1][1].name, json_string(files[1]));
  write_json(path, bad);
  json_decref(bad);
  assert_int_equal(model_load_hf(dir, &two, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, part[1][0].name));
  assert_non_null(strstr(err.msg, "both"));

  model_free(one);
  st_close(st);
  remove_dir(dir);
}

/* ---- HF folders written from the GGUF fixtures ------------------------------------ */

/* The HF name of a model tensor, by the conventions (not by hf.c's tables):
 * prefix goes before GPT-2's transformer names (not lm_head). */
static void hf_name_for(const model *m, const char *gguf, const char *prefix, char *out, size_t cap,
                        int *conv1d)
{
  static const char *const llama[][2] = {
      {"attn_norm.", "input_layernorm."},    {"attn_q.", "self_attn.q_proj."},
      {"attn_k.", "self_attn.k_proj."},      {"attn_v.", "self_attn.v_proj."},
      {"attn_output.", "self_attn.o_proj."}, {"ffn_norm.", "post_attention_layernorm."},
      {"ffn_gate.", "mlp.gate_proj."},       {"ffn_up.", "mlp.up_proj."},
      {"ffn_down.", "mlp.down_proj."}};
  static const char *const gpt2[][2] = {
      {"attn_norm.", "ln_1."}, {"attn_qkv.", "attn.c_attn."}, {"attn_output.", "attn.c_proj."},
      {"ffn_norm.", "ln_2."},  {"ffn_up.", "mlp.c_fc."},      {"ffn_down.", "mlp.c_proj."}};
  const int g = m->cfg.arch == MODEL_GPT2;
  int layer, pos = 0;
  *conv1d = 0;
  if (sscanf(gguf, "blk.%d.%n", &layer, &pos) == 1 && pos > 0) {
    const char *rest = gguf + pos;
    size_t n = g ? 6 : 9;
    for (size_t i = 0; i < n; i++) {
      const char *from = g ? gpt2[i][0] : llama[i][0], *to = g ? gpt2[i][1] : llama[i][1];
      if (strncmp(rest, from, strlen(from)) != 0)
        continue;
      const char *suffix = rest + strlen(from);
      if (g)
        snprintf(out, cap, "%sh.%d.%s%s", prefix, layer, to, suffix);
      else
        snprintf(out, cap, "model.layers.%d.%s%s", layer, to, suffix);
      *conv1d = g && strcmp(suffix, "weight") == 0 && strncmp(to, "ln_", 3) != 0;
      return;
    }
    fail_msg("no HF name for %s", gguf);
  }
  if (strcmp(gguf, "output.weight") == 0)
    snprintf(out, cap, "lm_head.weight");
  else if (strcmp(gguf, "token_embd.weight") == 0)
    snprintf(out, cap, g ? "%swte.weight" : "model.embed_tokens.weight", prefix);
  else if (strcmp(gguf, "position_embd.weight") == 0)
    snprintf(out, cap, "%swpe.weight", prefix);
  else if (strncmp(gguf, "output_norm.", 12) == 0 && g)
    snprintf(out, cap, "%sln_f.%s", prefix, gguf + 12);
  else if (strncmp(gguf, "output_norm.", 12) == 0)
    snprintf(out, cap, "model.norm.%s", gguf + 12);
  else
    fail_msg("no HF name for %s", gguf);
}

typedef struct hf_out {
  wt ts[128];
  void *bufs[128];
  int n;
} hf_out;

static void hf_out_free(hf_out *o)
{
  for (int i = 0; i < o->n; i++)
    free(o->bufs[i]);
  o->n = 0;
}

static void add_raw(hf_out *o, const char *name, const char *dtype, int n_dims,
                    const int64_t *shape, void *buf, size_t n_bytes)
{
  assert_true(o->n < 128);
  wt *t = &o->ts[o->n];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dtype = dtype;
  t->n_dims = n_dims;
  for (int d = 0; d < n_dims; d++)
    t->shape[d] = shape[d];
  t->data = buf;
  t->n_bytes = n_bytes;
  o->bufs[o->n++] = buf;
}

/* Every tensor of m under its HF name; matrices stored as mat_dtype ("F32",
 * "F16" or "BF16"), vectors as F32; GPT-2 Conv1D weights transposed to
 * (in, out). */
static void hf_from_model(hf_out *o, const model *m, const char *prefix, const char *mat_dtype)
{
  char name[128];
  int conv1d;
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *t = &m->tensors[i];
    const float *src = m->params + t->offset;
    int64_t rows = t->shape[0], cols = t->n_dims == 2 ? t->shape[1] : 1;
    hf_name_for(m, t->name, prefix, name, sizeof name, &conv1d);
    float *f = malloc(t->n * sizeof *f);
    int64_t shape[2] = {rows, cols};
    if (conv1d) {
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
          f[c * rows + r] = src[r * cols + c];
      shape[0] = cols;
      shape[1] = rows;
    } else {
      memcpy(f, src, t->n * sizeof *f);
    }
    if (t->n_dims == 1 || strcmp(mat_dtype, "F32") == 0) {
      add_raw(o, name, "F32", t->n_dims, shape, f, t->n * sizeof *f);
      continue;
    }
    uint8_t *h = malloc(t->n * 2);
    for (size_t k = 0; k < t->n; k++) {
      uint16_t u = strcmp(mat_dtype, "F16") == 0 ? gguf_f32_to_f16(f[k]) : gguf_f32_to_bf16(f[k]);
      h[2 * k] = (uint8_t)u;
      h[2 * k + 1] = (uint8_t)(u >> 8);
    }
    free(f);
    add_raw(o, name, mat_dtype, 2, shape, h, t->n * 2);
  }
}

/* A tokenizer.json for the fixtures' byte vocabulary (GPT-2 byte-level). */
static json_t *byte_tokenizer_json(const tokenizer *tok)
{
  tok_spec s;
  tok_get_spec(tok, &s);
  json_t *vocab = json_object(), *added = json_array();
  for (size_t i = 0; i < s.n_vocab; i++) {
    if (s.types[i] == TOK_TYPE_CONTROL)
      json_array_append_new(added, json_pack("{s:I, s:s%, s:b}", "id", (json_int_t)i, "content",
                                             s.tokens[i], s.token_lens[i], "special", 1));
    else
      json_object_setn_new(vocab, s.tokens[i], s.token_lens[i], json_integer((json_int_t)i));
  }
  return json_pack("{s:o, s:{s:s, s:o, s:[]}, s:{s:s, s:b, s:b}}", "added_tokens", added, "model",
                   "type", "BPE", "vocab", vocab, "merges", "pre_tokenizer", "type", "ByteLevel",
                   "add_prefix_space", 0, "use_regex", 1);
}

static json_t *gpt2_config(const model *m, int with_inner)
{
  json_t *c = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:b}", "architectures",
                        "GPT2LMHeadModel", "model_type", "gpt2", "n_embd", m->cfg.n_embd, "n_layer",
                        m->cfg.n_layer, "n_head", m->cfg.n_head, "n_positions", m->cfg.n_ctx,
                        "vocab_size", m->cfg.n_vocab, "layer_norm_epsilon", (double)m->cfg.norm_eps,
                        "activation_function", "gelu_new", "tie_word_embeddings", m->cfg.tied);
  json_object_set_new(c, "n_inner", with_inner ? json_integer(m->cfg.n_ff) : json_null());
  return c;
}

/* Writes the folder (model.safetensors, config.json, optional tokenizer),
 * loads it and checks it against the GGUF model and the fixture. */
static void check_folder(const fx *f, const char *name, hf_out *o, json_t *config,
                         json_t *tokenizer_json)
{
  char dir[] = "/tmp/zotune-test-hf-XXXXXX", path[4200];
  model_err err = {0, ""};
  model *m;
  make_dir(dir);
  in_dir(path, sizeof path, dir, "model.safetensors");
  write_st(path, o->ts, o->n);
  in_dir(path, sizeof path, dir, "config.json");
  write_json(path, config);
  if (tokenizer_json) {
    in_dir(path, sizeof path, dir, "tokenizer.json");
    write_json(path, tokenizer_json);
  }
  if (model_load_hf(dir, &m, &err) != 0)
    fail_msg("%s: %s", name, err.msg);
  assert_same_params(m, f->m);
  assert_int_equal(m->cfg.arch, f->m->cfg.arch);
  assert_int_equal(m->cfg.rope, f->m->cfg.rope);
  assert_int_equal(m->cfg.qkv_bias, f->m->cfg.qkv_bias);
  assert_string_equal(m->cfg.name, f->m->cfg.name);
  assert_true(m->cfg.norm_eps == f->m->cfg.norm_eps);
  assert_true(m->cfg.arch == MODEL_GPT2 || m->cfg.rope_theta == f->m->cfg.rope_theta);
  compare_logits(m, f->m, f, 1e-5);
  fx g = *f;
  g.m = m;
  check_against_fixture(&g, name);
  if (tokenizer_json) {
    int32_t *a, *b;
    size_t na, nb;
    const char text[] = "Hello, world! \xc3\xbcn\xc3\xaf \x01\xff";
    assert_non_null(m->tok);
    assert_int_equal(tok_n_vocab(m->tok), tok_n_vocab(f->m->tok));
    assert_int_equal(tok_encode(m->tok, text, sizeof text - 1, 1, &a, &na, &err), 0);
    assert_int_equal(tok_encode(f->m->tok, text, sizeof text - 1, 1, &b, &nb, &err), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na * sizeof *a);
    free(a);
    free(b);
  } else {
    assert_null(m->tok);
  }
  model_free(m);
  remove_dir(dir);
}

static void test_hf_gpt2_tied(void **state)
{
  (void)state;
  fx f;
  fx_load(&f, "gpt2_tied_f32.expected.json");
  assert_int_equal(f.m->cfg.tied, 1);
  const char *prefixes[2] = {"transformer.", ""};
  for (int k = 0; k < 2; k++) {
    hf_out o = {.n = 0};
    hf_from_model(&o, f.m, prefixes[k], "F32");
    /* the attention-mask buffers HF saves in GPT-2 checkpoints are skipped */
    char name[64];
    int64_t mask_shape[4] = {1, 1, 4, 4};
    snprintf(name, sizeof name, "%sh.0.attn.bias", prefixes[k]);
    add_raw(&o, name, "F32", 4, mask_shape, calloc(16, sizeof(float)), 16 * sizeof(float));
    snprintf(name, sizeof name, "%sh.1.attn.masked_bias", prefixes[k]);
    add_raw(&o, name, "F32", 0, mask_shape, calloc(1, sizeof(float)), sizeof(float));
    json_t *cfg = gpt2_config(f.m, 0);
    json_t *tj = k == 0 ? byte_tokenizer_json(f.m->tok) : NULL;
    check_folder(&f, "gpt2_tied_f32 as HF", &o, cfg, tj);
    json_decref(cfg);
    json_decref(tj);
    hf_out_free(&o);
  }
  fx_free(&f);
}

static void test_hf_gpt2_untied_f16(void **state)
{
  (void)state;
  fx f;
  fx_load(&f, "gpt2_untied_f16.expected.json");
  assert_int_equal(f.m->cfg.tied, 0);
  hf_out o = {.n = 0};
  hf_from_model(&o, f.m, "transformer.", "F16");
  json_t *cfg = gpt2_config(f.m, 1);
  check_folder(&f, "gpt2_untied_f16 as HF", &o, cfg, NULL);
  json_decref(cfg);
  hf_out_free(&o);
  fx_free(&f);
}

/* Qwen2 GGUF files are not permuted: the same rows, half-split RoPE. */
static void test_hf_qwen2_bf16(void **state)
{
  (void)state;
  fx f;
  fx_load(&f, "qwen2_bias_bf16.expected.json");
  assert_int_equal(f.m->cfg.rope, MODEL_ROPE_HALF);
  hf_out o = {.n = 0};
  hf_from_model(&o, f.m, "", "BF16");
  const model_config *c = &f.m->cfg;
  json_t *cfg = json_pack(
      "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:b, s:b, s:i, s:s, s:n}",
      "architectures", "Qwen2ForCausalLM", "model_type", "qwen2", "hidden_size", c->n_embd,
      "intermediate_size", c->n_ff, "num_hidden_layers", c->n_layer, "num_attention_heads",
      c->n_head, "num_key_value_heads", c->n_kv_head, "vocab_size", c->n_vocab,
      "max_position_embeddings", c->n_ctx, "rms_norm_eps", (double)c->norm_eps, "rope_theta",
      (double)c->rope_theta, "tie_word_embeddings", c->tied, "use_sliding_window", 0,
      "sliding_window", 16, "hidden_act", "silu", "rope_scaling");
  assert_non_null(cfg);
  check_folder(&f, "qwen2_bias_bf16 as HF", &o, cfg, NULL);
  json_decref(cfg);
  hf_out_free(&o);
  fx_free(&f);
}

/* ---- folders that do not fit --------------------------------------------------------- */

typedef struct llama_case {
  const char *what;
  const char *drop;    /* tensor left out, or NULL */
  const char *reshape; /* tensor whose shape is swapped (same bytes), or NULL */
  const char *extra;   /* tensor added (F32 [64]), or NULL */
  const char *i32;     /* tensor relabelled I32, or NULL */
  const char *cfg_key; /* config key set to cfg_val (JSON text; "DELETE" removes it) */
  const char *cfg_val;
  int code;               /* expected result; 0 = loads */
  const char *needles[3]; /* the message must have these, besides the folder */
} llama_case;

static const llama_case llama_cases[] = {
    {.what = "missing tensor",
     .drop = "model.layers.1.mlp.up_proj.weight",
     .code = MODEL_EMISMATCH,
     .needles = {"model.layers.1.mlp.up_proj.weight", "model.safetensors", "missing"}},
    {.what = "missing embedding",
     .drop = "model.embed_tokens.weight",
     .code = MODEL_EMISMATCH,
     .needles = {"model.embed_tokens.weight", "missing"}},
    {.what = "wrong shape",
     .reshape = "model.layers.0.self_attn.k_proj.weight",
     .code = MODEL_EMISMATCH,
     .needles = {"model.layers.0.self_attn.k_proj.weight", "[64, 32]", "[32, 64]"}},
    {.what = "wrong head shape",
     .reshape = "lm_head.weight",
     .code = MODEL_EMISMATCH,
     .needles = {"lm_head.weight", "[64, 258]", "model.safetensors"}},
    {.what = "o_proj bias",
     .extra = "model.layers.0.self_attn.o_proj.bias",
     .code = MODEL_EMISMATCH,
     .needles = {"model.layers.0.self_attn.o_proj.bias", "not supported"}},
    {.what = "unknown tensor",
     .extra = "model.mystery.weight",
     .code = MODEL_EMISMATCH,
     .needles = {"model.mystery.weight", "model.safetensors"}},
    {.what = "rotary buffer", .extra = "model.layers.1.self_attn.rotary_emb.inv_freq", .code = 0},
    {.what = "integer weights",
     .i32 = "model.norm.weight",
     .code = MODEL_EINVAL,
     .needles = {"model.norm.weight", "I32"}},
    {.what = "unknown architecture",
     .cfg_key = "architectures",
     .cfg_val = "[\"BertForMaskedLM\"]",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "BertForMaskedLM"}},
    {.what = "architecture not a string",
     .cfg_key = "architectures",
     .cfg_val = "[7]",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "architectures"}},
    {.what = "model_type only", .cfg_key = "architectures", .cfg_val = "DELETE", .code = 0},
    {.what = "mistral",
     .cfg_key = "architectures",
     .cfg_val = "[\"MistralForCausalLM\"]",
     .code = 0},
    {.what = "no hidden_size",
     .cfg_key = "hidden_size",
     .cfg_val = "DELETE",
     .code = MODEL_EMISMATCH,
     .needles = {"config.json", "hidden_size", "missing"}},
    {.what = "hidden_size a string",
     .cfg_key = "hidden_size",
     .cfg_val = "\"64\"",
     .code = MODEL_ECORRUPT,
     .needles = {"config.json", "hidden_size"}},
    {.what = "negative layers",
     .cfg_key = "num_hidden_layers",
     .cfg_val = "-2",
     .code = MODEL_ECORRUPT,
     .needles = {"config.json", "num_hidden_layers"}},
    {.what = "eps a string",
     .cfg_key = "rms_norm_eps",
     .cfg_val = "\"small\"",
     .code = MODEL_ECORRUPT,
     .needles = {"config.json", "rms_norm_eps"}},
    {.what = "tie not a bool",
     .cfg_key = "tie_word_embeddings",
     .cfg_val = "1",
     .code = MODEL_ECORRUPT,
     .needles = {"config.json", "tie_word_embeddings"}},
    {.what = "rope scaling",
     .cfg_key = "rope_scaling",
     .cfg_val = "{\"rope_type\":\"llama3\",\"factor\":8.0}",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "rope_scaling", "llama3"}},
    {.what = "default rope scaling",
     .cfg_key = "rope_scaling",
     .cfg_val = "{\"rope_type\":\"default\"}",
     .code = 0},
    {.what = "other activation",
     .cfg_key = "hidden_act",
     .cfg_val = "\"gelu\"",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "hidden_act", "gelu"}},
    {.what = "head_dim",
     .cfg_key = "head_dim",
     .cfg_val = "32",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "head_dim"}},
    {.what = "mlp bias",
     .cfg_key = "mlp_bias",
     .cfg_val = "true",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "mlp_bias"}},
    {.what = "q/k/v bias missing",
     .cfg_key = "attention_bias",
     .cfg_val = "true",
     .code = MODEL_EMISMATCH,
     .needles = {"model.layers.0.self_attn.q_proj.bias", "missing"}},
    {.what = "heads do not divide",
     .cfg_key = "num_key_value_heads",
     .cfg_val = "3",
     .code = MODEL_EINVAL,
     .needles = {"config.json", "heads 4", "kv heads 3"}},
    {.what = "vocab mismatch",
     .cfg_key = "vocab_size",
     .cfg_val = "300",
     .code = MODEL_EMISMATCH,
     .needles = {"model.embed_tokens.weight", "[258, 64]", "[300, 64]"}},
};

static void write_llama_case(const char *dir, const llama_case *c, const safetensors *st)
{
  char path[4200];
  wt ts[64];
  float extra[64] = {0};
  int n = collect(st, ts, 63);
  if (c->drop) {
    int i = find_wt(ts, n, c->drop);
    memmove(&ts[i], &ts[i + 1], (size_t)(n - i - 1) * sizeof *ts);
    n--;
  }
  if (c->reshape) {
    int i = find_wt(ts, n, c->reshape);
    int64_t t = ts[i].shape[0];
    ts[i].shape[0] = ts[i].shape[1];
    ts[i].shape[1] = t;
  }
  if (c->extra) {
    wt e = {"", "F32", 1, {64}, extra, sizeof extra};
    snprintf(e.name, sizeof e.name, "%s", c->extra);
    ts[n++] = e;
  }
  if (c->i32)
    ts[find_wt(ts, n, c->i32)].dtype = "I32";
  in_dir(path, sizeof path, dir, "model.safetensors");
  write_st(path, ts, n);
  json_t *cfg = fixture_config();
  if (c->cfg_key && strcmp(c->cfg_val, "DELETE") == 0) {
    json_object_del(cfg, c->cfg_key);
  } else if (c->cfg_key) {
    json_error_t je;
    json_t *v = json_loads(c->cfg_val, JSON_DECODE_ANY, &je);
    assert_non_null(v);
    json_object_set_new(cfg, c->cfg_key, v);
  }
  in_dir(path, sizeof path, dir, "config.json");
  write_json(path, cfg);
  json_decref(cfg);
}

static void test_hf_bad_folders(void **state)
{
  (void)state;
  char dir[] = "/tmp/zotune-test-hf-XXXXXX", path[4200];
  model_err err;
  model *m = NULL;
  safetensors *st = fixture_st();
  make_dir(dir);
  for (size_t k = 0; k < sizeof llama_cases / sizeof llama_cases[0]; k++) {
    const llama_case *c = &llama_cases[k];
    write_llama_case(dir, c, st);
    memset(&err, 0, sizeof err);
    m = NULL;
    int rc = model_load_hf(dir, &m, &err);
    if (rc != c->code)
      fail_msg("%s: code %d, want %d (%s)", c->what, rc, c->code, err.msg);
    if (rc == 0) {
      assert_int_equal(m->cfg.arch, MODEL_LLAMA);
      model_free(m);
      continue;
    }
    if (!strstr(err.msg, dir))
      fail_msg("%s: message without the folder: %s", c->what, err.msg);
    for (int i = 0; i < 3 && c->needles[i]; i++)
      if (!strstr(err.msg, c->needles[i]))
        fail_msg("%s: message lacks \"%s\": %s", c->what, c->needles[i], err.msg);
  }

  /* Mistral's sliding window bounds the context; Qwen2's only when enabled */
  const llama_case plain = {.what = "plain"};
  write_llama_case(dir, &plain, st);
  json_t *cfg = fixture_config();
  json_object_set_new(cfg, "architectures", json_pack("[s]", "MistralForCausalLM"));
  json_object_set_new(cfg, "sliding_window", json_integer(16));
  in_dir(path, sizeof path, dir, "config.json");
  write_json(path, cfg);
  assert_int_equal(model_load_hf(dir, &m, &err), 0);
  assert_int_equal(m->cfg.n_ctx, 16);
  assert_string_equal(m->cfg.name, "llama");
  assert_int_equal(m->cfg.rope, MODEL_ROPE_HALF);
  model_free(m);
  json_decref(cfg);

  /* no lm_head.weight and tie_word_embeddings false: the head is tied */
  llama_case headless = {.what = "headless", .drop = "lm_head.weight"};
  write_llama_case(dir, &headless, st);
  assert_int_equal(model_load_hf(dir, &m, &err), 0);
  assert_int_equal(m->cfg.tied, 1);
  assert_int_equal(m->output, m->tok_embd);
  model_free(m);
  /* tied by the config: lm_head.weight is ignored */
  llama_case tied = {.what = "tied", .cfg_key = "tie_word_embeddings", .cfg_val = "true"};
  write_llama_case(dir, &tied, st);
  assert_int_equal(model_load_hf(dir, &m, &err), 0);
  assert_int_equal(m->cfg.tied, 1);
  assert_int_equal(model_find_tensor(m, "output.weight"), MODEL_NONE);
  model_free(m);

  /* a broken tokenizer.json is an error naming it */
  in_dir(path, sizeof path, dir, "tokenizer.json");
  write_file(path, "{\"model\":", 9);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, "tokenizer.json"));
  unlink(path);

  /* damaged weights: the reader's error, naming the file */
  in_dir(path, sizeof path, dir, "model.safetensors");
  write_file(path, "\x02\0\0\0\0\0\0\0{}x", 11);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, "model.safetensors"));
  assert_non_null(strstr(err.msg, "trailing"));

  /* no weights at all */
  unlink(path);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, "model.safetensors"));

  /* malformed config.json */
  in_dir(path, sizeof path, dir, "config.json");
  write_file(path, "{\"architectures\": [", 19);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, "config.json"));
  write_file(path, "[1]", 3);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ECORRUPT);
  assert_non_null(strstr(err.msg, "config.json"));

  /* no config.json */
  write_llama_case(dir, &plain, st);
  in_dir(path, sizeof path, dir, "config.json");
  unlink(path);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, "config.json"));
  assert_int_equal(model_load_hf("/nonexistent/zotune-hf", &m, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, "/nonexistent/zotune-hf/config.json"));

  /* GPT-2 specifics */
  json_t *g = json_pack("{s:[s], s:i, s:i, s:i, s:i, s:i, s:s}", "architectures", "GPT2LMHeadModel",
                        "n_embd", 32, "n_layer", 2, "n_head", 4, "n_positions", 64, "vocab_size",
                        258, "activation_function", "relu");
  write_json(path, g);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "activation_function"));
  json_object_set_new(g, "activation_function", json_string("gelu_new"));
  json_object_set_new(g, "scale_attn_by_inverse_layer_idx", json_true());
  write_json(path, g);
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "scale_attn"));
  json_object_del(g, "scale_attn_by_inverse_layer_idx");
  write_json(path, g);
  /* the Llama weights do not fit a GPT-2 */
  assert_int_equal(model_load_hf(dir, &m, &err), MODEL_EMISMATCH);
  assert_non_null(strstr(err.msg, "wte.weight"));
  json_decref(g);

  st_close(st);
  remove_dir(dir);
}

int main(void)
{
  const char *top = getenv("top_srcdir");
  snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures", top ? top : ".");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reader_valid),       cmocka_unit_test(test_reader_truncations),
      cmocka_unit_test(test_reader_bad_headers), cmocka_unit_test(test_reader_bad_lengths),
      cmocka_unit_test(test_hf_llama_fixture),   cmocka_unit_test(test_hf_matches_gguf),
      cmocka_unit_test(test_hf_sharded),         cmocka_unit_test(test_hf_gpt2_tied),
      cmocka_unit_test(test_hf_gpt2_untied_f16), cmocka_unit_test(test_hf_qwen2_bf16),
      cmocka_unit_test(test_hf_bad_folders),     cmocka_unit_test(test_hf_saved_as_gguf),
      cmocka_unit_test(test_save_hf_round_trip),
  };
  return cmocka_run_group_tests_name("safetensors", tests, NULL, NULL);
}
