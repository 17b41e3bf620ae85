/* model: forward passes against the independent PyTorch reference
 * (tests/reference/, fixtures in tests/fixtures/): logits at chosen
 * positions and both losses, for GPT-2 tied (F32), GPT-2 untied (F16), Llama
 * with GQA (interleaved RoPE) and Qwen2 with q/k/v bias (half-split RoPE,
 * BF16); plus layout, bad-file and thread-count checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/load.h"
#include "tests/fixture.h"

/* The fixture's logits and losses on `threads` threads, and its tokenizer
 * cases. */
static void check_fixture(const char *name, int threads)
{
  fx f;
  model_err err = {0, ""};
  fx_load(&f, name);
  model_set_threads(threads);
  check_against_fixture(&f, name);

  /* The byte tokenizer from the file encodes the fixture's strings exactly. */
  json_t *cases = json_object_get(json_object_get(f.doc, "tokenizer"), "cases");
  assert_non_null(f.m->tok);
  for (size_t k = 0; k < json_array_size(cases); k++) {
    json_t *c = json_array_get(cases, k), *bytes = json_object_get(c, "bytes");
    json_t *ids = json_object_get(c, "ids");
    size_t n = json_array_size(bytes), got_n;
    char *text = malloc(n + 1);
    int32_t *got;
    for (size_t i = 0; i < n; i++)
      text[i] = (char)json_integer_value(json_array_get(bytes, i));
    /* The fixture's ids start with BOS when add_bos; the text's ids follow. */
    size_t skip = json_is_true(json_object_get(c, "add_bos")) ? 1 : 0;
    if (skip)
      assert_int_equal(json_integer_value(json_array_get(ids, 0)), tok_bos(f.m->tok));
    assert_int_equal(tok_encode(f.m->tok, text, n, 0, &got, &got_n, &err), 0);
    assert_int_equal(got_n + skip, json_array_size(ids));
    for (size_t i = 0; i < got_n; i++)
      assert_int_equal(got[i], json_integer_value(json_array_get(ids, i + skip)));
    free(got);
    free(text);
  }
  fx_free(&f);
  model_set_threads(1);
}

static void test_gpt2_tied_f32(void **state)
{
  (void)state;
  check_fixture("gpt2_tied_f32.expected.json", 1);
}

static void test_gpt2_untied_f16(void **state)
{
  (void)state;
  check_fixture("gpt2_untied_f16.expected.json", 1);
}

static void test_llama_gqa_f32(void **state)
{
  (void)state;
  check_fixture("llama_gqa_f32.expected.json", 1);
}

static void test_qwen2_bias_bf16(void **state)
{
  (void)state;
  check_fixture("qwen2_bias_bf16.expected.json", 1);
}

static void test_two_threads(void **state)
{
  (void)state;
  check_fixture("llama_gqa_f32.expected.json", 2);
  check_fixture("gpt2_tied_f32.expected.json", 2);
}

/* Padding does not leak into real positions: a longer pad changes nothing. */
static void test_padding_is_inert(void **state)
{
  (void)state;
  fx f;
  model_err err = {0, ""};
  model_ws *a, *b2;
  fx_load(&f, "llama_gqa_f32.expected.json");
  int T2 = f.T + 5;
  int32_t *tok2 = calloc((size_t)f.B * T2, sizeof *tok2);
  for (int s = 0; s < f.B; s++)
    for (int t = 0; t < T2; t++)
      tok2[(size_t)s * T2 + t] = t < f.len[s] ? f.tokens[(size_t)s * f.T + t] : 77;
  assert_int_equal(model_ws_new(f.m, f.B, f.T, &a, &err), 0);
  assert_int_equal(model_ws_new(f.m, f.B, T2, &b2, &err), 0);
  model_view v = model_plain_view(f.m);
  model_batch ba = {f.B, f.T, f.tokens, f.len, NULL}, bb = {f.B, T2, tok2, f.len, NULL};
  assert_int_equal(model_forward(f.m, &v, &ba, a, &err), 0);
  assert_int_equal(model_forward(f.m, &v, &bb, b2, &err), 0);
  float *x = malloc((size_t)f.m->cfg.n_vocab * sizeof *x);
  float *y = malloc((size_t)f.m->cfg.n_vocab * sizeof *y);
  for (int s = 0; s < f.B; s++) {
    assert_int_equal(model_logits_at(f.m, &v, a, s, f.len[s] - 1, x, &err), 0);
    assert_int_equal(model_logits_at(f.m, &v, b2, s, f.len[s] - 1, y, &err), 0);
    for (int j = 0; j < f.m->cfg.n_vocab; j++)
      assert_true(close_enough(x[j], y[j], 1e-5));
  }
  free(x);
  free(y);
  free(tok2);
  model_ws_free(a);
  model_ws_free(b2);
  fx_free(&f);
}

/* The LM head runs over the loss rows in chunks (1024 rows at a time): a
 * batch of more rows than that gives every sequence exactly the loss it
 * gets alone, on 1 thread and on 2. */
static void test_loss_over_row_chunks(void **state)
{
  (void)state;
  model_config c = {.arch = MODEL_LLAMA, .name = "llama", .n_layer = 1, .n_embd = 64,
                    .n_head = 4, .n_kv_head = 2, .n_ff = 128, .n_vocab = 300, .n_ctx = 512,
                    .norm_eps = 1e-5f, .rope_theta = 10000.0f};
  model *m;
  model_err err = {0, ""};
  assert_int_equal(model_new(&c, &m, &err), 0);
  for (size_t i = 0; i < m->n_params; i++) /* deterministic, not symmetric */
    m->params[i] = 0.05f * sinf(0.37f * (float)i + 0.11f * (float)(i % 7));
  enum { B = 3, T = 500 }; /* 3 x 499 = 1497 loss rows: two chunks */
  int32_t *tok = malloc(sizeof(int32_t) * B * T);
  assert_non_null(tok);
  for (int i = 0; i < B * T; i++)
    tok[i] = (int32_t)((i * 7919u + (unsigned)(i / T) * 13u) % 300u);
  int len[B] = {T, T, T - 3};
  model_view v = model_plain_view(m);
  for (int th = 1; th <= 2; th++) {
    model_set_threads(th);
    model_ws *all, *one;
    assert_int_equal(model_ws_new(m, B, T, &all, &err), 0);
    assert_int_equal(model_ws_new(m, 1, T, &one, &err), 0);
    model_batch b = {B, T, tok, len, NULL};
    double sum[B];
    long cnt[B];
    assert_int_equal(model_forward(m, &v, &b, all, &err), 0);
    assert_int_equal(model_loss_seq(m, &v, &b, all, sum, cnt, &err), 0);
    for (int s = 0; s < B; s++) {
      model_batch b1 = {1, T, tok + (size_t)s * T, &len[s], NULL};
      double s1;
      long c1;
      assert_int_equal(model_forward(m, &v, &b1, one, &err), 0);
      assert_int_equal(model_loss_seq(m, &v, &b1, one, &s1, &c1, &err), 0);
      assert_int_equal(cnt[s], len[s] - 1);
      assert_int_equal(c1, cnt[s]);
      assert_true(s1 == sum[s]); /* rows are independent: the same bits */
      /* a real forward: not the uniform log(vocab) of every row */
      assert_true(isfinite(s1) && fabs(s1 / (double)c1 - log(300.0)) > 1e-3);
    }
    model_ws_free(all);
    model_ws_free(one);
  }
  model_set_threads(1);
  free(tok);
  model_free(m);
}

/* A model written by model_save_gguf reads back with the same parameters
 * (F32 exactly; BF16 to bf16 rounding). */
static void test_save_load_round_trip(void **state)
{
  (void)state;
  fx f;
  model_err err = {0, ""};
  char dir[] = "/tmp/zotune-test-model-XXXXXX", path[128];
  tok_spec spec;
  assert_non_null(mkdtemp(dir));
  fx_load(&f, "qwen2_bias_bf16.expected.json");
  tok_get_spec(f.m->tok, &spec);
  for (int k = 0; k < 2; k++) {
    model *m2;
    snprintf(path, sizeof path, "%s/m%d.gguf", dir, k);
    assert_int_equal(model_save_gguf(f.m, &spec, path, k ? GGML_BF16 : GGML_F32, &err), 0);
    assert_int_equal(model_load_gguf(path, &m2, &err), 0);
    assert_int_equal(m2->n_params, f.m->n_params);
    assert_int_equal(m2->cfg.rope, f.m->cfg.rope);
    assert_int_equal(m2->cfg.qkv_bias, 1);
    /* The fixture's matrices already are bf16 values: both round trips are exact. */
    assert_memory_equal(m2->params, f.m->params, f.m->n_params * sizeof(float));
    assert_int_equal(tok_n_vocab(m2->tok), tok_n_vocab(f.m->tok));
    model_free(m2);
    unlink(path);
  }
  rmdir(dir);
  fx_free(&f);
}

/* Files that do not fit fail with the file and the tensor or key named. */
static void test_bad_models(void **state)
{
  (void)state;
  model_err err = {0, ""};
  model *m = NULL;
  char path[4200];
  assert_int_equal(model_load_gguf("/nonexistent/zotune.gguf", &m, &err), MODEL_ENOENT);
  fixture_path(path, sizeof path, "gpt2_tied_f32.expected.json");
  assert_int_not_equal(model_load_gguf(path, &m, &err), 0); /* JSON, not GGUF */
  assert_non_null(strstr(err.msg, "expected.json"));
  assert_null(m);
}

static void test_batch_errors(void **state)
{
  (void)state;
  fx f;
  model_err err = {0, ""};
  model_ws *ws;
  fx_load(&f, "gpt2_tied_f32.expected.json");
  assert_int_equal(model_ws_new(f.m, f.B, f.m->cfg.n_ctx + 1, &ws, &err), MODEL_EINVAL);
  assert_int_equal(model_ws_new(f.m, f.B, f.T, &ws, &err), 0);
  model_view v = model_plain_view(f.m);
  f.tokens[1] = f.m->cfg.n_vocab; /* out of the vocabulary */
  model_batch b = {f.B, f.T, f.tokens, f.len, NULL};
  assert_int_equal(model_forward(f.m, &v, &b, ws, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "position 1"));
  model_ws_free(ws);
  fx_free(&f);
}

int main(void)
{
  const char *top = getenv("top_srcdir");
  snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures", top ? top : ".");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpt2_tied_f32),     cmocka_unit_test(test_gpt2_untied_f16),
      cmocka_unit_test(test_llama_gqa_f32),     cmocka_unit_test(test_qwen2_bias_bf16),
      cmocka_unit_test(test_two_threads),       cmocka_unit_test(test_padding_is_inert),
      cmocka_unit_test(test_loss_over_row_chunks),
      cmocka_unit_test(test_save_load_round_trip), cmocka_unit_test(test_bad_models),
      cmocka_unit_test(test_batch_errors),
  };
  return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
