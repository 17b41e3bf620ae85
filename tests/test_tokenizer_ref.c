/* model/tokenizer.c against the independent Python reference on real
 * vocabularies: the committed fixtures in tests/fixtures/tokenizers/ (written
 * by tests/reference/make_tokenizer_fixtures.py; see the README there).
 *
 * Each NAME.cases.json names a Hugging Face tokenizer.json (a GPT-2 byte-level
 * BPE with 800 merges, a SentencePiece-style BPE with byte fallback) and lists
 * test strings as byte arrays with the reference's ids (no BOS), the decoded
 * bytes and, for GPT-2, the end offsets of the pre-tokenizer's pieces. For
 * every case: tok_encode gives exactly the ids (the first mismatch is printed
 * with the case name and position), tok_split gives the pieces, tok_decode of
 * the ids gives the bytes back (decode(encode(x)) == x; the fixture's
 * "decoded" differs from x only for a literal U+2581 in SentencePiece text,
 * which is the space marker), and add_special adds BOS only when the
 * tokenizer's post-processor says so. All mismatching cases are reported
 * before the test fails. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "model/tokenizer.h"

static char fixdir[4096];

/* A JSON array of integers as a malloc'd array (never NULL), *n elements. */
static int64_t *int_array(json_t *a, size_t *n)
{
  assert_true(json_is_array(a));
  *n = json_array_size(a);
  int64_t *v = malloc((*n ? *n : 1) * sizeof *v);
  assert_non_null(v);
  for (size_t i = 0; i < *n; i++) {
    json_t *x = json_array_get(a, i);
    assert_true(json_is_integer(x));
    v[i] = (int64_t)json_integer_value(x);
  }
  return v;
}

/* The case's bytes (malloc'd, never NULL). */
static char *byte_array(json_t *a, size_t *n)
{
  int64_t *v = int_array(a, n);
  char *s = malloc(*n + 1);
  assert_non_null(s);
  for (size_t i = 0; i < *n; i++) {
    assert_true(v[i] >= 0 && v[i] <= 255);
    s[i] = (char)(unsigned char)v[i];
  }
  free(v);
  return s;
}

/* Up to 8 ids around position at, for a mismatch report. */
static void show_ids(const char *what, const int32_t *ids, size_t n, size_t at)
{
  char buf[256];
  size_t a = at > 3 ? at - 3 : 0, k = 0;
  k += (size_t)snprintf(buf + k, sizeof buf - k, "%s[%zu..]:", what, a);
  for (size_t i = a; i < n && i < a + 8 && k < sizeof buf; i++)
    k += (size_t)snprintf(buf + k, sizeof buf - k, " %d", ids[i]);
  print_error("    %s%s\n", buf, n <= a + 8 ? " (end)" : " ...");
}

/* Runs every case of fixdir/cases_file; returns the number of failing cases. */
static int run_cases(const char *cases_file, enum tok_kind kind)
{
  char path[4200];
  json_error_t je;
  snprintf(path, sizeof path, "%s/%s", fixdir, cases_file);
  json_t *root = json_load_file(path, 0, &je);
  if (!root)
    fail_msg("%s:%d: %s", path, je.line, je.text);
  const char *tok_file = json_string_value(json_object_get(root, "tokenizer"));
  assert_non_null(tok_file);
  snprintf(path, sizeof path, "%s/%s", fixdir, tok_file);

  tokenizer *t = NULL;
  model_err err = {0, ""};
  int rc = tok_load_hf_json(path, &t, &err);
  if (rc)
    fail_msg("tok_load_hf_json(%s): %d %s", path, rc, err.msg);
  assert_int_equal(tok_get_kind(t), kind);
  assert_int_equal(tok_n_vocab(t), (size_t)json_integer_value(json_object_get(root, "n_vocab")));
  assert_int_equal(tok_eos(t), json_integer_value(json_object_get(root, "eos_id")));
  json_t *bos = json_object_get(root, "bos_id");
  if (json_is_integer(bos))
    assert_int_equal(tok_bos(t), json_integer_value(bos));
  int add_bos = json_is_true(json_object_get(root, "add_bos"));
  tok_spec spec;
  tok_get_spec(t, &spec);
  assert_int_equal(spec.n_merges, (size_t)json_integer_value(json_object_get(root, "n_merges")));

  json_t *cases = json_object_get(root, "cases"), *c;
  assert_true(json_array_size(cases) > 0);
  size_t ci;
  int failed = 0;
  json_array_foreach(cases, ci, c)
  {
    const char *name = json_string_value(json_object_get(c, "name"));
    size_t len, n_want, n_dec, n_ends = 0;
    char *text = byte_array(json_object_get(c, "bytes"), &len);
    char *want_dec = byte_array(json_object_get(c, "decoded"), &n_dec);
    int64_t *want64 = int_array(json_object_get(c, "ids"), &n_want);
    int64_t *ends_want = NULL;
    if (json_object_get(c, "piece_ends"))
      ends_want = int_array(json_object_get(c, "piece_ends"), &n_ends);
    int32_t *want = malloc((n_want ? n_want : 1) * sizeof *want);
    assert_non_null(want);
    for (size_t i = 0; i < n_want; i++)
      want[i] = (int32_t)want64[i];
    int bad = 0;

    /* the pre-tokenizer's pieces (GPT-2) */
    if (ends_want) {
      size_t *ends = NULL, n_got = 0;
      rc = tok_split(t, text, len, &ends, &n_got, &err);
      if (rc) {
        print_error("%s: case %s: tok_split failed: %s\n", cases_file, name, err.msg);
        bad = 1;
      } else {
        size_t i = 0;
        while (i < n_got && i < n_ends && ends[i] == (size_t)ends_want[i])
          i++;
        if (i < n_got || i < n_ends) {
          print_error("%s: case %s: piece %zu ends at %s%zu, want %s%lld (%zu pieces, want %zu)\n",
                      cases_file, name, i, i < n_got ? "" : "(none) ", i < n_got ? ends[i] : 0,
                      i < n_ends ? "" : "(none) ", i < n_ends ? (long long)ends_want[i] : 0LL,
                      n_got, n_ends);
          bad = 1;
        }
      }
      free(ends);
    }

    /* ids */
    int32_t *ids = NULL;
    size_t n = 0;
    rc = tok_encode(t, text, len, 0, &ids, &n, &err);
    if (rc) {
      print_error("%s: case %s: tok_encode failed: %d %s\n", cases_file, name, rc, err.msg);
      bad = 1;
    } else {
      size_t i = 0;
      while (i < n && i < n_want && ids[i] == want[i])
        i++;
      if (i < n || i < n_want) {
        print_error("%s: case %s: first mismatch at position %zu: got %s%d, want %s%d "
                    "(%zu ids, want %zu)\n",
                    cases_file, name, i, i < n ? "" : "(end) ", i < n ? ids[i] : -1,
                    i < n_want ? "" : "(end) ", i < n_want ? want[i] : -1, n, n_want);
        show_ids("got ", ids, n, i);
        show_ids("want", want, n_want, i);
        bad = 1;
      }

      /* decode(encode(x)) == x: the reference's decode, which is x except where the fixture
       * says otherwise (a literal U+2581 in SentencePiece text comes back as a space) */
      char *dec = NULL;
      size_t n_out = 0;
      rc = tok_decode(t, ids, n, &dec, &n_out, &err);
      if (rc || n_out != n_dec || memcmp(dec, want_dec, n_dec) != 0) {
        print_error("%s: case %s: decode(encode(x)) != x (%zu bytes, want %zu)%s%s\n", cases_file,
                    name, rc ? 0 : n_out, n_dec, rc ? ": " : "", rc ? err.msg : "");
        bad = 1;
      }
      free(dec);
    }

    /* decode(reference ids) == the reference's decode */
    char *dec = NULL;
    size_t n_out = 0;
    rc = tok_decode(t, want, n_want, &dec, &n_out, &err);
    if (rc || n_out != n_dec || memcmp(dec, want_dec, n_dec) != 0) {
      print_error("%s: case %s: decode(reference ids) differs from the reference decode\n",
                  cases_file, name);
      bad = 1;
    }
    free(dec);

    /* add_special: BOS first exactly when the tokenizer adds it */
    int32_t *ids2 = NULL;
    size_t n2 = 0;
    if (!bad && tok_encode(t, text, len, 1, &ids2, &n2, &err) == 0) {
      size_t k = add_bos ? 1 : 0;
      if (n2 != n + k || (k && ids2[0] != tok_bos(t)) ||
          (n && memcmp(ids2 + k, ids, n * sizeof *ids) != 0)) {
        print_error("%s: case %s: add_special gives %zu ids, want %zu%s\n", cases_file, name, n2,
                    n + k, add_bos ? " (BOS first)" : " (no BOS)");
        bad = 1;
      }
    }
    free(ids2);
    free(ids);
    failed += bad;
    free(text);
    free(want_dec);
    free(want64);
    free(want);
    free(ends_want);
  }
  if (failed)
    print_error("%s: %d of %zu cases failed\n", cases_file, failed, json_array_size(cases));
  tok_free(t);
  json_decref(root);
  return failed;
}

static void test_gpt2_bpe(void **state)
{
  (void)state;
  assert_int_equal(run_cases("gpt2_bpe.cases.json", TOK_BPE), 0);
}

static void test_spm_bpe(void **state)
{
  (void)state;
  assert_int_equal(run_cases("spm_bpe.cases.json", TOK_SPM), 0);
}

int main(void)
{
  const char *top = getenv("top_srcdir");
  snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures/tokenizers", top ? top : ".");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpt2_bpe),
      cmocka_unit_test(test_spm_bpe),
  };
  return cmocka_run_group_tests_name("tokenizer_ref", tests, NULL, NULL);
}
