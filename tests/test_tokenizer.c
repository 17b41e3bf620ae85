/* Unit tests for model/tokenizer.c.
 *
 * Expected ids are worked out by hand from the published algorithms on small
 * vocabularies built here: GPT-2 byte-level BPE (merge ranks, every
 * occurrence of the best pair merged before new pairs, pieces from the GPT-2
 * regex; expected splits are those of Python's `regex` module on the same
 * pattern) and SentencePiece-style BPE (best score first, ties leftmost,
 * byte fallback). Round trips cover Unicode, whitespace, NUL and invalid
 * UTF-8, plus random bytes. tokenizer.json files are written to a mkdtemp()
 * directory that the teardown removes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/tokenizer.h"

#define G "\xC4\xA0"      /* GPT-2's encoded ' ' (U+0120) */
#define SP "\xE2\x96\x81" /* SentencePiece's ' ' (U+2581) */
#define LEN(a) (sizeof(a) / sizeof *(a))
#define STR(s) s, sizeof(s) - 1 /* a literal and its length, NULs included */

/* ---- vocabulary builders ----------------------------------------------- */

typedef struct vocab {
  const char *tok[512];
  float score[512];
  int32_t type[512];
  size_t n;
} vocab;

static int32_t add(vocab *v, const char *s, float score, int32_t type)
{
  assert_true(v->n < LEN(v->tok));
  v->tok[v->n] = s;
  v->score[v->n] = score;
  v->type[v->n] = type;
  return (int32_t)v->n++;
}

static int32_t id_of(const tokenizer *t, const char *s)
{
  tok_spec sp;
  tok_get_spec(t, &sp);
  for (size_t i = 0; i < sp.n_vocab; i++)
    if (sp.token_lens[i] == strlen(s) && memcmp(sp.tokens[i], s, sp.token_lens[i]) == 0)
      return (int32_t)i;
  fail_msg("no token \"%s\"", s);
  return -1;
}

/* TOK_BPE: ids 0..255 the bytes (GPT-2 strings from tok_bytes_spec), then
 * extra, then "<|endoftext|>" as EOS (types derived). */
static tokenizer *make_bpe(const char *const *extra, size_t n_extra, const char *const *merges,
                           size_t n_merges)
{
  static char eot[] = "<|endoftext|>";
  tok_spec bytes;
  vocab v = {0};
  tok_bytes_spec(&bytes);
  for (size_t b = 0; b < 256; b++)
    add(&v, bytes.tokens[b], 0, 0);
  for (size_t i = 0; i < n_extra; i++)
    add(&v, extra[i], 0, 0);
  int32_t e = add(&v, eot, 0, 0);
  tok_spec spec = {.kind = TOK_BPE,
                   .n_vocab = v.n,
                   .tokens = v.tok,
                   .n_merges = n_merges,
                   .merges = merges,
                   .bos_id = e,
                   .eos_id = e,
                   .unk_id = -1};
  tokenizer *t = NULL;
  model_err err = {0};
  int rc = tok_new(&spec, &t, &err);
  if (rc)
    fail_msg("tok_new: %s", err.msg);
  return t;
}

/* TOK_SPM: 0 <unk>, 1 <s>, 2 </s>, then (bytes) 256 "<0xXX>" from id 3,
 * then the pieces of v. */
enum { SPM_UNK = 0, SPM_BOS = 1, SPM_EOS = 2, SPM_BYTE0 = 3 };

static void spm_base(vocab *v, int bytes)
{
  static char names[256][8];
  add(v, "<unk>", 0, TOK_TYPE_UNKNOWN);
  add(v, "<s>", 0, TOK_TYPE_CONTROL);
  add(v, "</s>", 0, TOK_TYPE_CONTROL);
  for (int b = 0; bytes && b < 256; b++) {
    snprintf(names[b], sizeof names[b], "<0x%02X>", b);
    add(v, names[b], 0, TOK_TYPE_BYTE);
  }
}

static tokenizer *make_spm(const vocab *v, int add_space_prefix, int add_bos)
{
  tok_spec spec = {.kind = TOK_SPM,
                   .n_vocab = v->n,
                   .tokens = v->tok,
                   .scores = v->score,
                   .types = v->type,
                   .bos_id = SPM_BOS,
                   .eos_id = SPM_EOS,
                   .unk_id = SPM_UNK,
                   .add_bos = add_bos,
                   .add_space_prefix = add_space_prefix};
  tokenizer *t = NULL;
  model_err err = {0};
  int rc = tok_new(&spec, &t, &err);
  if (rc)
    fail_msg("tok_new: %s", err.msg);
  return t;
}

static void expect_ids(const tokenizer *t, const char *text, size_t len, int add_special,
                       const int32_t *want, size_t nwant)
{
  int32_t *ids = NULL;
  size_t n = 0;
  model_err err = {0};
  int rc = tok_encode(t, text, len, add_special, &ids, &n, &err);
  if (rc)
    fail_msg("encode \"%.*s\": %s", (int)len, text, err.msg);
  int same = n == nwant && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
  if (!same) {
    fprintf(stderr, "encode \"%.*s\": got", (int)len, text);
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, ", want");
    for (size_t i = 0; i < nwant; i++)
      fprintf(stderr, " %d", want[i]);
    fprintf(stderr, "\n");
  }
  free(ids);
  assert_true(same);
}

static void expect_round_trip(const tokenizer *t, const char *text, size_t len)
{
  int32_t *ids = NULL;
  size_t n = 0, dlen = 0;
  char *back = NULL;
  model_err err = {0};
  for (int special = 0; special < 2; special++) {
    assert_int_equal(tok_encode(t, text, len, special, &ids, &n, &err), 0);
    assert_non_null(ids);
    assert_int_equal(tok_decode(t, ids, n, &back, &dlen, &err), 0);
    if (dlen != len || memcmp(back, text, len) != 0)
      fail_msg("round trip of %zu bytes \"%.*s\" gave %zu bytes \"%s\"", len, (int)len, text, dlen,
               back);
    assert_int_equal(back[dlen], '\0');
    free(ids);
    free(back);
  }
}

static const struct {
  const char *s;
  size_t len;
} samples[] = {
    {STR("")},
    {STR("Hello, world!")},
    {STR("h\xC3\xA9llo caf\xC3\xA9")},             /* é */
    {STR("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E")}, /* 日本語 */
    {STR("smile \xF0\x9F\x98\x80!")},              /* 😀 */
    {STR(" ")},
    {STR("   ")},
    {STR("  leading")},
    {STR("trailing  ")},
    {STR("a   b    c")},
    {STR("\n\nline\n\tindent\t\ttabs\r\n")},
    {STR("0123 456789 3.14159")},
    {STR("punct: (a), [b]; {c}! \"q\" 'x' it's we'll")},
    {STR("\xFF")},
    {STR("a\0b\0")},
    {STR("\xC3(")},                 /* truncated two-byte sequence */
    {STR("x\xE2\x82")},             /* truncated three-byte sequence */
    {STR("\xF0\x9F\x98 \xF0\x9F")}, /* truncated emoji */
    {STR("\xED\xA0\x80")},          /* surrogate */
    {STR("\xC0\x80\xC1\xBF")},      /* overlong */
    {STR("\xF4\x90\x80\x80")},      /* above U+10FFFF */
    {STR("\x80\x80 \xBF")},         /* stray continuation bytes */
    {STR("<|endoftext|> <s> </s> <0x41> <|eos|>")},
};

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint64_t next_rand(void)
{
  rng_state ^= rng_state << 13; /* xorshift64 */
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Random strings: raw bytes, or biased towards spaces, letters and UTF-8. */
static size_t random_text(char *buf, size_t cap)
{
  static const char *const parts[] = {
      " ",  "  ", "a", "b",        "th",           "e",
      "\n", "\t", "1", "\xC3\xA9", "\xE6\x97\xA5", "\xF0\x9F\x98\x80",
      "'s", "!"};
  size_t n = next_rand() % cap, len = 0;
  int raw = next_rand() % 2;
  while (len < n) {
    if (raw) {
      buf[len++] = (char)next_rand();
    } else {
      const char *p = parts[next_rand() % LEN(parts)];
      if (len + strlen(p) > cap)
        break;
      memcpy(buf + len, p, strlen(p));
      len += strlen(p);
    }
  }
  return len;
}

/* ---- TOK_BPE ------------------------------------------------------------ */

static void test_bytes_to_unicode(void **state)
{
  (void)state;
  /* GPT-2's bytes_to_unicode, computed here independently */
  tok_spec sp;
  tok_bytes_spec(&sp);
  unsigned n = 0;
  for (unsigned b = 0; b < 256; b++) {
    int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    unsigned cp = printable ? b : 256 + n++;
    char want[3] = {0};
    if (cp < 0x80) {
      want[0] = (char)cp;
    } else {
      want[0] = (char)(0xC0 | cp >> 6);
      want[1] = (char)(0x80 | (cp & 0x3F));
    }
    assert_string_equal(sp.tokens[b], want);
  }
  assert_int_equal(n, 68);
  assert_string_equal(sp.tokens[' '], G);
}

static void test_bpe_ranks(void **state)
{
  (void)state;
  static const char *const extra[] = {"ab", "bc", "abc"};
  static const char *const bc_first[] = {"b c", "a b"};
  static const char *const ab_first[] = {"a b", "b c"};
  static const char *const ab_then_abc[] = {"a b", "b c", "ab c"};
  tokenizer *t = make_bpe(extra, LEN(extra), bc_first, LEN(bc_first));
  expect_ids(t, STR("abc"), 0, (int32_t[]){'a', id_of(t, "bc")}, 2);
  tok_free(t);
  t = make_bpe(extra, LEN(extra), ab_first, LEN(ab_first));
  expect_ids(t, STR("abc"), 0, (int32_t[]){id_of(t, "ab"), 'c'}, 2);
  expect_ids(t, STR("cabcab"), 0, (int32_t[]){'c', id_of(t, "ab"), 'c', id_of(t, "ab")}, 4);
  tok_free(t);
  t = make_bpe(extra, LEN(extra), ab_then_abc, LEN(ab_then_abc));
  expect_ids(t, STR("abc"), 0, (int32_t[]){id_of(t, "abc")}, 1);
  expect_ids(t, STR("bcabc"), 0, (int32_t[]){id_of(t, "bc"), id_of(t, "abc")}, 2);
  tok_free(t);
}

/* GPT-2 merges every occurrence of the best pair, left to right and without
 * overlap, before it looks at the pairs those merges made. */
static void test_bpe_all_occurrences(void **state)
{
  (void)state;
  static const char *const extra[] = {"aa", "ab", "aba", "abab"};
  static const char *const aa[] = {"a a"};
  static const char *const ab[] = {"a b", "ab a", "ab ab"};
  static const char *const ab_late[] = {"ab a", "a b"};
  tokenizer *t = make_bpe(extra, LEN(extra), aa, LEN(aa));
  int32_t AA = id_of(t, "aa");
  expect_ids(t, STR("aaa"), 0, (int32_t[]){AA, 'a'}, 2);
  expect_ids(t, STR("aaaa"), 0, (int32_t[]){AA, AA}, 2);
  expect_ids(t, STR("aaaaa"), 0, (int32_t[]){AA, AA, 'a'}, 3);
  tok_free(t);
  t = make_bpe(extra, LEN(extra), ab, LEN(ab));
  /* a b a b -> ab ab (both, rank 0) -> abab (rank 2); merging "ab a" (rank 1)
   * as soon as it appeared would give aba b */
  expect_ids(t, STR("abab"), 0, (int32_t[]){id_of(t, "abab")}, 1);
  /* a b a b a -> ab ab a -> ab aba (rank 1 beats rank 2) */
  expect_ids(t, STR("ababa"), 0, (int32_t[]){id_of(t, "ab"), id_of(t, "aba")}, 2);
  tok_free(t);
  /* a merge can outrank the one that makes its left token: a b a b -> ab ab,
   * and only then "ab a" (rank 0) is looked at -- no pair left for it */
  t = make_bpe(extra, LEN(extra), ab_late, LEN(ab_late));
  expect_ids(t, STR("abab"), 0, (int32_t[]){id_of(t, "ab"), id_of(t, "ab")}, 2);
  expect_ids(t, STR("abaab"), 0, (int32_t[]){id_of(t, "aba"), id_of(t, "ab")}, 2);
  tok_free(t);
}

/* Merges never cross the pieces of the GPT-2 pre-tokenizer. */
static void test_bpe_pieces(void **state)
{
  (void)state;
  static const char *const extra[] = {"o" G, G "w", "He", "ll", "Hell", "Hello"};
  static const char *const merges[] = {"o " G, G " w", "H e", "l l", "He ll", "Hell o"};
  tokenizer *t = make_bpe(extra, LEN(extra), merges, LEN(merges));
  expect_ids(t, STR("Hello world"), 0,
             (int32_t[]){id_of(t, "Hello"), id_of(t, G "w"), 'o', 'r', 'l', 'd'}, 6);
  /* the "o" of "Hello" and the space of " " + " world" are separate pieces */
  expect_ids(t, STR("Hello  world"), 0,
             (int32_t[]){id_of(t, "Hello"), ' ', id_of(t, G "w"), 'o', 'r', 'l', 'd'}, 7);
  /* control tokens are not matched in text */
  expect_ids(t, STR("<|endoftext|>"), 0,
             (int32_t[]){'<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>'}, 13);
  tok_free(t);
}

static void expect_split(const tokenizer *t, const char *s, size_t len, const size_t *want,
                         size_t nwant)
{
  size_t *ends = NULL, n = 0;
  model_err err = {0};
  assert_int_equal(tok_split(t, s, len, &ends, &n, &err), 0);
  int same = n == nwant && (n == 0 || memcmp(ends, want, n * sizeof *ends) == 0);
  if (!same) {
    fprintf(stderr, "split \"%.*s\":", (int)len, s);
    for (size_t i = 0; i < n; i++)
      fprintf(stderr, " %zu", ends[i]);
    fprintf(stderr, "\n");
  }
  free(ends);
  assert_true(same);
}

static void test_gpt2_split(void **state)
{
  (void)state;
  tok_spec sp;
  tokenizer *t = NULL;
  tok_bytes_spec(&sp);
  assert_int_equal(tok_new(&sp, &t, NULL), 0);
  /* ['Hello', ' world', "'s", ' 123', ' ', ' foo', '\n\n', ' bar'] */
  expect_split(t, STR("Hello world's 123  foo\n\n bar"), (size_t[]){5, 11, 13, 17, 18, 22, 24, 28},
               8);
  /* ['I', "'ll", ' ', ' go', '\t', 'now', '   '] */
  expect_split(t, STR("I'll  go\tnow   "), (size_t[]){1, 4, 5, 8, 9, 12, 15}, 7);
  /* ['x', '1', 'y', '22', ' z', '!!?'] */
  expect_split(t, STR("x1y22 z!!?"), (size_t[]){1, 2, 3, 5, 7, 10}, 6);
  /* ['日本語', ' テキスト', '😀', ' é'] */
  expect_split(t,
               STR("\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xE3\x83\x86\xE3\x82\xAD\xE3\x82\xB9"
                   "\xE3\x83\x88\xF0\x9F\x98\x80 \xC3\xA9"),
               (size_t[]){9, 22, 26, 29}, 4);
  /* ['  \n\t', ' end'] */
  expect_split(t, STR("  \n\t end"), (size_t[]){4, 8}, 2);
  /* ['don', "'t", ' "', 'quote', '"', ' 3', '.', '14'] */
  expect_split(t, STR("don't \"quote\" 3.14"), (size_t[]){3, 5, 7, 12, 13, 15, 16, 18}, 8);
  /* invalid bytes are pieces of their own and match nothing, like the end */
  expect_split(t,
               STR("ab\xFF\xFE"
                   "cd"),
               (size_t[]){2, 3, 4, 6}, 4);
  expect_split(t, STR("a \xFF b"), (size_t[]){1, 2, 3, 5}, 4);
  expect_split(t, STR("\xC3\xA9\xC3"), (size_t[]){2, 3}, 2);
  expect_split(t, STR("a\0b"), (size_t[]){1, 2, 3}, 3);
  expect_split(t, STR(""), NULL, 0);
  tok_free(t);
}

static void test_bpe_unknown_bytes(void **state)
{
  (void)state;
  const char *tok[] = {"a", "b", "<unk>"};
  tok_spec spec = {
      .kind = TOK_BPE, .n_vocab = 2, .tokens = tok, .bos_id = -1, .eos_id = -1, .unk_id = -1};
  tokenizer *t = NULL;
  int32_t *ids = NULL;
  size_t n = 0;
  model_err err = {0};
  assert_int_equal(tok_new(&spec, &t, &err), 0);
  expect_ids(t, STR("ab"), 1, (int32_t[]){0, 1}, 2);
  assert_int_equal(tok_encode(t, STR("abc"), 0, &ids, &n, &err), MODEL_EINVAL);
  assert_null(ids);
  assert_non_null(strstr(err.msg, "0x63"));
  tok_free(t);
  spec.n_vocab = 3;
  spec.unk_id = 2;
  assert_int_equal(tok_new(&spec, &t, &err), 0);
  expect_ids(t, STR("a c"), 0, (int32_t[]){0, 2, 2}, 3);
  tok_free(t);
}

static void test_bpe_round_trip(void **state)
{
  (void)state;
#define NL "\xC4\x8A"              /* '\n' */
#define E_ACUTE "\xC3\x83\xC2\xA9" /* é: bytes C3 A9 as GPT-2 characters */
  static const char *const extra[] = {G "t", "he", G "the", "in", G G, G G G, "ll", E_ACUTE, NL NL};
  static const char *const merges[] = {
      G " t", "h e", G "t he", "i n", G " " G, G G " " G, "l l", "\xC3\x83 \xC2\xA9", NL " " NL};
  tokenizer *t = make_bpe(extra, LEN(extra), merges, LEN(merges));
  for (size_t i = 0; i < LEN(samples); i++)
    expect_round_trip(t, samples[i].s, samples[i].len);
  expect_ids(t, STR(" the caf\xC3\xA9\n\n"), 0,
             (int32_t[]){id_of(t, G "the"), ' ', 'c', 'a', 'f', id_of(t, E_ACUTE), id_of(t, NL NL)},
             7);
  char buf[96];
  for (int k = 0; k < 500; k++)
    expect_round_trip(t, buf, random_text(buf, sizeof buf));
  tok_free(t);
}

/* A long piece (one run of letters, one of spaces) must not be quadratic. */
static void test_bpe_long_piece(void **state)
{
  (void)state;
  static const char *const extra[] = {"aa", "aaaa", G G};
  static const char *const merges[] = {"a a", "aa aa", G " " G};
  tokenizer *t = make_bpe(extra, LEN(extra), merges, LEN(merges));
  size_t len = 1 << 20;
  char *text = malloc(len);
  int32_t *ids = NULL;
  size_t n = 0;
  assert_non_null(text);
  memset(text, 'a', len / 2);
  memset(text + len / 2, ' ', len / 2);
  assert_int_equal(tok_encode(t, text, len, 0, &ids, &n, NULL), 0);
  /* 2^19 a's -> 2^17 "aaaa"; 2^19 spaces: "\s+(?!\S)" at the end takes all */
  assert_int_equal(n, (1 << 17) + (1 << 18));
  assert_int_equal(ids[0], id_of(t, "aaaa"));
  assert_int_equal(ids[n - 1], id_of(t, G G));
  free(ids);
  free(text);
  tok_free(t);
}

/* ---- TOK_SPM ------------------------------------------------------------ */

static void test_spm_scores(void **state)
{
  (void)state;
  vocab v = {0};
  spm_base(&v, 1);
  int32_t a = add(&v, "a", -5, 1), b = add(&v, "b", -5, 1), c = add(&v, "c", -5, 1);
  int32_t ab = add(&v, "ab", -1, 1), bc = add(&v, "bc", -2, 1);
  tokenizer *t = make_spm(&v, 0, 0);
  expect_ids(t, STR("abc"), 0, (int32_t[]){ab, c}, 2);
  tok_free(t);
  v.score[bc] = -0.5f; /* now bc beats ab */
  t = make_spm(&v, 0, 0);
  expect_ids(t, STR("abc"), 0, (int32_t[]){a, bc}, 2);
  tok_free(t);
  v.score[bc] = -1.0f; /* a tie: the leftmost pair */
  t = make_spm(&v, 0, 0);
  expect_ids(t, STR("abc"), 0, (int32_t[]){ab, c}, 2);
  expect_ids(t, STR("cab"), 0, (int32_t[]){c, ab}, 2);
  expect_ids(t, STR("bcab"), 0, (int32_t[]){bc, ab}, 2);
  tok_free(t);
  (void)b;
}

/* A pair made by a merge competes at once with the older ones. */
static void test_spm_new_pair_first(void **state)
{
  (void)state;
  vocab v = {0};
  spm_base(&v, 1);
  add(&v, "a", -9, 1), add(&v, "b", -9, 1), add(&v, "c", -9, 1);
  int32_t d = add(&v, "d", -9, 1);
  add(&v, "ab", -2, 1), add(&v, "cd", -3, 1);
  int32_t abc = add(&v, "abc", -1, 1);
  tokenizer *t = make_spm(&v, 0, 0);
  /* ab (-2) first; then abc (-1) beats cd (-3) */
  expect_ids(t, STR("abcd"), 0, (int32_t[]){abc, d}, 2);
  tok_free(t);
}

static void test_spm_space_and_fallback(void **state)
{
  (void)state;
  vocab v = {0};
  spm_base(&v, 1);
  int32_t sp = add(&v, SP, -1, 1), a = add(&v, "a", -2, 1), b = add(&v, "b", -2, 1);
  int32_t spa = add(&v, SP "a", -1, 1);
  tokenizer *t = make_spm(&v, 1, 1);
  expect_ids(t, STR("a b"), 0, (int32_t[]){spa, sp, b}, 3);
  expect_ids(t, STR("a b"), 1, (int32_t[]){SPM_BOS, spa, sp, b}, 4);
  expect_ids(t, STR(""), 1, (int32_t[]){SPM_BOS}, 1);
  expect_ids(t, STR("ba"), 0, (int32_t[]){sp, b, a}, 3);
  /* é is not a token: its two bytes */
  expect_ids(t, STR("\xC3\xA9"), 0, (int32_t[]){sp, SPM_BYTE0 + 0xC3, SPM_BYTE0 + 0xA9}, 3);
  /* an invalid byte, NUL */
  expect_ids(t,
             STR("\xFF"
                 "a\0"),
             0, (int32_t[]){sp, SPM_BYTE0 + 0xFF, a, SPM_BYTE0}, 4);
  /* control and byte token strings are text */
  expect_ids(t, STR("<s>"), 0, (int32_t[]){sp, SPM_BYTE0 + '<', SPM_BYTE0 + 's', SPM_BYTE0 + '>'},
             4);
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(
      tok_decode(t, (int32_t[]){SPM_BOS, spa, sp, b, SPM_BYTE0 + 0xC3, SPM_BYTE0 + 0xA9, SPM_EOS},
                 7, &text, &len, NULL),
      0);
  assert_string_equal(text, "a b\xC3\xA9"); /* the leading space encode added is dropped */
  assert_int_equal(len, 5);
  free(text);
  tok_free(t);
  t = make_spm(&v, 0, 0);
  expect_ids(t, STR("a b"), 1, (int32_t[]){a, sp, b}, 3); /* no prefix, no BOS */
  assert_int_equal(tok_decode(t, (int32_t[]){sp, a}, 2, &text, &len, NULL), 0);
  assert_string_equal(text, " a"); /* kept without add_space_prefix */
  free(text);
  tok_free(t);
}

static void test_spm_unknown(void **state)
{
  (void)state;
  vocab v = {0};
  spm_base(&v, 0); /* no byte tokens */
  int32_t a = add(&v, "a", -1, 1);
  tokenizer *t = make_spm(&v, 0, 0);
  /* one unknown token per symbol that has no token */
  expect_ids(t, STR("xa\xC3\xA9\xFF"), 0, (int32_t[]){SPM_UNK, a, SPM_UNK, SPM_UNK}, 4);
  tok_free(t);
  tok_spec spec = {.kind = TOK_SPM,
                   .n_vocab = v.n,
                   .tokens = v.tok,
                   .scores = v.score,
                   .types = v.type,
                   .bos_id = -1,
                   .eos_id = -1,
                   .unk_id = -1};
  int32_t *ids = NULL;
  size_t n = 0;
  model_err err = {0};
  assert_int_equal(tok_new(&spec, &t, &err), 0);
  assert_int_equal(tok_encode(t, STR("ax"), 0, &ids, &n, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "0x78"));
  tok_free(t);
}

static tokenizer *make_spm_full(void)
{
  static vocab v;
  memset(&v, 0, sizeof v);
  spm_base(&v, 1);
  static const char *const pieces[] = {SP,       "t",  "h", "e",        SP "t", "he", SP "the",
                                       "in",     "g",  "i", SP "in",    "n",    "a",  SP SP,
                                       SP SP SP, "\n", "1", "\xC3\xA9", "s",    "'"};
  for (size_t i = 0; i < LEN(pieces); i++)
    add(&v, pieces[i], -(float)i, 1);
  return make_spm(&v, 1, 1);
}

static void test_spm_round_trip(void **state)
{
  (void)state;
  tokenizer *t = make_spm_full();
  for (size_t i = 0; i < LEN(samples); i++)
    expect_round_trip(t, samples[i].s, samples[i].len);
  expect_ids(t, STR("the"), 1, (int32_t[]){SPM_BOS, id_of(t, SP "the")}, 2);
  char buf[96];
  for (int k = 0; k < 500; k++) {
    size_t len = random_text(buf, sizeof buf);
    /* a literal U+2581 in the text decodes as a space: SentencePiece's own limit */
    int has_sp = 0;
    for (size_t i = 0; i + 2 < len; i++)
      has_sp |= memcmp(buf + i, SP, 3) == 0;
    if (!has_sp)
      expect_round_trip(t, buf, len);
  }
  tok_free(t);
}

/* ---- the bytes vocabulary ------------------------------------------------ */

static void test_bytes_vocab(void **state)
{
  (void)state;
  tok_spec sp;
  tokenizer *t = NULL;
  assert_int_equal(tok_bytes_spec(&sp), 0);
  assert_int_equal(sp.n_vocab, TOK_BYTES_N_VOCAB);
  assert_int_equal(sp.n_merges, 0);
  assert_string_equal(sp.tokens[256], "<|bos|>");
  assert_string_equal(sp.tokens[257], "<|eos|>");
  assert_int_equal(tok_new(&sp, &t, NULL), 0);
  assert_int_equal(tok_n_vocab(t), 258);
  assert_int_equal(tok_bos(t), 256);
  assert_int_equal(tok_eos(t), 257);
  assert_int_equal(tok_get_kind(t), TOK_BPE);
  for (size_t i = 0; i < LEN(samples); i++) {
    int32_t want[128];
    const char *s = samples[i].s;
    size_t len = samples[i].len;
    assert_true(len < LEN(want));
    want[0] = 256;
    for (size_t k = 0; k < len; k++)
      want[k + 1] = (uint8_t)s[k];
    expect_ids(t, s, len, 1, want, len + 1);
    expect_ids(t, s, len, 0, want + 1, len);
    expect_round_trip(t, s, len);
  }
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tok_decode(t, (int32_t[]){256, 'h', 0xFF, 'i', 257}, 5, &text, &len, NULL), 0);
  assert_int_equal(len, 3);
  assert_memory_equal(text, "h\xFFi", 3);
  free(text);
  char all[256];
  for (int b = 0; b < 256; b++)
    all[b] = (char)b;
  expect_round_trip(t, all, sizeof all);
  tok_free(t);
}

/* ---- errors ---------------------------------------------------------------- */

static void test_decode_out_of_range(void **state)
{
  (void)state;
  tok_spec sp;
  tokenizer *t = NULL;
  char *text = (char *)"untouched";
  size_t len = 7;
  model_err err = {0};
  tok_bytes_spec(&sp);
  assert_int_equal(tok_new(&sp, &t, NULL), 0);
  assert_int_equal(tok_decode(t, (int32_t[]){65, 258}, 2, &text, &len, &err), MODEL_EINVAL);
  assert_null(text);
  assert_non_null(strstr(err.msg, "258"));
  assert_int_equal(tok_decode(t, (int32_t[]){-1}, 1, &text, &len, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "-1"));
  assert_int_equal(tok_decode(t, NULL, 0, &text, &len, &err), 0);
  assert_int_equal(len, 0);
  assert_string_equal(text, "");
  free(text);
  tok_free(t);
}

static void expect_new_fails(const tok_spec *spec, int code, const char *needle)
{
  tokenizer *t = NULL;
  model_err err = {0};
  assert_int_equal(tok_new(spec, &t, &err), code);
  assert_null(t);
  if (!strstr(err.msg, needle))
    fail_msg("error \"%s\" does not mention \"%s\"", err.msg, needle);
}

static void test_new_errors(void **state)
{
  (void)state;
  const char *tok[] = {"a", "b", "ab", "a"};
  const char *merges[] = {"a b", "a c"};
  const char *nospace[] = {"ab"};
  int32_t types[] = {1, 1, 1, 3};
  int32_t badtype[] = {1, 1, 1, 9};
  tok_spec s = {
      .kind = TOK_BPE, .n_vocab = 3, .tokens = tok, .bos_id = -1, .eos_id = -1, .unk_id = -1};
  tok_spec e = s;
  e.kind = 7;
  expect_new_fails(&e, MODEL_EINVAL, "kind");
  e = s;
  e.bos_id = 3;
  expect_new_fails(&e, MODEL_EINVAL, "BOS id 3");
  e = s;
  e.n_vocab = 0;
  expect_new_fails(&e, MODEL_EINVAL, "tokens");
  e = s;
  e.n_vocab = 4; /* "a" twice */
  expect_new_fails(&e, MODEL_ECORRUPT, "duplicate");
  e.types = types; /* the second "a" is a control token: fine */
  tokenizer *t = NULL;
  assert_int_equal(tok_new(&e, &t, NULL), 0);
  tok_free(t);
  e.types = badtype;
  expect_new_fails(&e, MODEL_EINVAL, "type 9");
  e = s;
  e.merges = merges;
  e.n_merges = 2;
  expect_new_fails(&e, MODEL_ECORRUPT, "merge 1");
  e.merges = nospace;
  e.n_merges = 1;
  expect_new_fails(&e, MODEL_ECORRUPT, "merge 0");
  const char *tok2[] = {"a", NULL};
  e = s;
  e.tokens = tok2;
  e.n_vocab = 2;
  expect_new_fails(&e, MODEL_EINVAL, "token 1");
}

/* ---- tokenizer.json ------------------------------------------------------- */

typedef struct fixture {
  char dir[64];
  char path[128];
} fixture;

static int setup(void **state)
{
  fixture *f = calloc(1, sizeof *f);
  if (!f)
    return -1;
  strcpy(f->dir, "/tmp/zotune-test-tok-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->path, sizeof f->path, "%s/tokenizer.json", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  fixture *f = *state;
  unlink(f->path);
  rmdir(f->dir);
  free(f);
  return 0;
}

static const char *write_json(void **state, const char *json)
{
  fixture *f = *state;
  FILE *fp = fopen(f->path, "w");
  assert_non_null(fp);
  assert_int_equal(fputs(json, fp) >= 0, 1);
  assert_int_equal(fclose(fp), 0);
  return f->path;
}

static tokenizer *load_json(void **state, const char *json)
{
  tokenizer *t = NULL;
  model_err err = {0};
  int rc = tok_load_hf_json(write_json(state, json), &t, &err);
  if (rc)
    fail_msg("tok_load_hf_json: %s", err.msg);
  return t;
}

static void expect_json_fails(void **state, const char *json, int code, const char *needle)
{
  tokenizer *t = NULL;
  model_err err = {0};
  const char *path = write_json(state, json);
  assert_int_equal(tok_load_hf_json(path, &t, &err), code);
  assert_null(t);
  if (!strstr(err.msg, needle) || !strstr(err.msg, path))
    fail_msg("error \"%s\" does not mention \"%s\" and the path", err.msg, needle);
}

#define GPT2_VOCAB "{\"H\": 0, \"i\": 1, \"" G "\": 2, \"Hi\": 3, \"" G "Hi\": 4, \"!\": 5}"
#define GPT2_PRE                                                                                   \
  "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, "                     \
  "\"trim_offsets\": true, \"use_regex\": true}"
#define GPT2_ADDED                                                                                 \
  "\"added_tokens\": [{\"id\": 6, \"content\": \"<|endoftext|>\", "                                \
  "\"special\": true}]"

static void check_gpt2_json(const tokenizer *t)
{
  assert_int_equal(tok_get_kind(t), TOK_BPE);
  assert_int_equal(tok_n_vocab(t), 7);
  assert_int_equal(tok_bos(t), 6);
  assert_int_equal(tok_eos(t), 6);
  /* "Hi" -> H i -> Hi; " Hi" -> Ġ H i -> Ġ Hi -> ĠHi; "!" */
  expect_ids(t, STR("Hi Hi!"), 1, (int32_t[]){3, 4, 5}, 3); /* add_bos is off */
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tok_decode(t, (int32_t[]){3, 4, 5, 6}, 4, &text, &len, NULL), 0);
  assert_string_equal(text, "Hi Hi!");
  free(text);
  int32_t *ids = NULL;
  size_t n = 0;
  model_err err = {0};
  assert_int_equal(tok_encode(t, STR("Hi?"), 0, &ids, &n, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "0x3F"));
}

static void test_json_gpt2(void **state)
{
  tokenizer *t = load_json(state, "{\"version\": \"1.0\", " GPT2_ADDED ", " GPT2_PRE ", "
                                  "\"model\": {\"type\": \"BPE\", \"vocab\": " GPT2_VOCAB ", "
                                  "\"merges\": [\"H i\", \"" G " Hi\"]}}");
  check_gpt2_json(t);
  tok_free(t);
  /* newer files: merges as pairs */
  t = load_json(state, "{" GPT2_ADDED ", " GPT2_PRE ", \"model\": {\"type\": \"BPE\", "
                       "\"vocab\": " GPT2_VOCAB ", \"merges\": [[\"H\", \"i\"], [\"" G "\", "
                       "\"Hi\"]]}}");
  check_gpt2_json(t);
  tok_free(t);
}

/* A Llama-style file: byte_fallback, Prepend/Replace normalizer, BOS from the
 * TemplateProcessing post-processor, scores from merge ranks. */
static char *llama_json(void)
{
  static const char *const pieces[] = {SP,     "h",  "e",     "l",       "o",
                                       SP "h", "ll", SP "he", SP "hell", SP "hello"};
  size_t cap = 16384, n = 0;
  char *j = malloc(cap);
  assert_non_null(j);
  n +=
      (size_t)snprintf(j + n, cap - n,
                       "{\"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true},"
                       " {\"id\": 1, \"content\": \"<s>\", \"special\": true},"
                       " {\"id\": 2, \"content\": \"</s>\", \"special\": true}],"
                       " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
                       "{\"type\": \"Prepend\", \"prepend\": \"" SP "\"},"
                       " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": "
                       "\"" SP "\"}]},"
                       " \"pre_tokenizer\": null,"
                       " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": ["
                       "{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}},"
                       " {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}],"
                       " \"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1],"
                       " \"tokens\": [\"<s>\"]}}},"
                       " \"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\","
                       " \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, \"<s>\": 1,"
                       " \"</s>\": 2");
  for (int b = 0; b < 256; b++)
    n += (size_t)snprintf(j + n, cap - n, ", \"<0x%02X>\": %d", b, 3 + b);
  for (size_t i = 0; i < LEN(pieces); i++)
    n += (size_t)snprintf(j + n, cap - n, ", \"%s\": %zu", pieces[i], 259 + i);
  n += (size_t)snprintf(j + n, cap - n,
                        "}, \"merges\": [\"" SP " h\", \"l l\", \"" SP "h e\", \"" SP "he ll\","
                        " \"" SP "hell o\"]}}");
  assert_true(n < cap);
  return j;
}

static void check_llama(const tokenizer *t)
{
  assert_int_equal(tok_get_kind(t), TOK_SPM);
  assert_int_equal(tok_n_vocab(t), 269);
  assert_int_equal(tok_bos(t), 1);
  assert_int_equal(tok_eos(t), 2);
  assert_int_equal(tok_unk(t), 0);
  /* ▁hello: ▁h (rank 0), then ll (1) beats ▁he (2), then ▁he, ▁hell, ▁hello */
  expect_ids(t, STR("hello"), 1, (int32_t[]){1, 268}, 2);
  expect_ids(t, STR("hello!"), 1, (int32_t[]){1, 268, 3 + '!'}, 3);
  /* ▁ h e l l o ▁ h e l → ▁hello ▁ h e l → ▁hello ▁he l */
  expect_ids(t, STR("hello hel"), 0, (int32_t[]){268, 266, 262}, 3);
  expect_round_trip(t, STR("hello  \xC3\xA9\n"));
  char *text = NULL;
  size_t len = 0;
  assert_int_equal(tok_decode(t, (int32_t[]){1, 268, 266, 262, 2}, 5, &text, &len, NULL), 0);
  assert_string_equal(text, "hello hel");
  free(text);
}

static void test_json_llama(void **state)
{
  char *json = llama_json();
  tokenizer *t = load_json(state, json);
  free(json);
  check_llama(t);
  /* what a GGUF writer would store, read back */
  tok_spec spec;
  tok_get_spec(t, &spec);
  assert_non_null(spec.scores);
  assert_true(spec.scores[268] == -4.0f);
  assert_int_equal(spec.types[0], TOK_TYPE_UNKNOWN);
  assert_int_equal(spec.types[1], TOK_TYPE_CONTROL);
  assert_int_equal(spec.types[3], TOK_TYPE_BYTE);
  assert_int_equal(spec.types[260], TOK_TYPE_NORMAL);
  assert_int_equal(spec.add_bos, 1);
  assert_int_equal(spec.add_space_prefix, 1);
  tokenizer *t2 = NULL;
  assert_int_equal(tok_new(&spec, &t2, NULL), 0);
  tok_free(t);
  check_llama(t2);
  tok_free(t2);
}

static void test_json_errors(void **state)
{
  fixture *f = *state;
  tokenizer *t = NULL;
  model_err err = {0};
  char missing[160];
  snprintf(missing, sizeof missing, "%s/nope.json", f->dir);
  assert_int_equal(tok_load_hf_json(missing, &t, &err), MODEL_ENOENT);
  assert_non_null(strstr(err.msg, "nope.json"));

  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0,}", MODEL_ECORRUPT, ":1:");
  expect_json_fails(state, "{\"version\": \"1.0\"}", MODEL_ECORRUPT, "\"model\"");
  expect_json_fails(state, "{\"model\": {\"type\": \"BPE\", \"merges\": []}}", MODEL_ECORRUPT,
                    "\"vocab\"");
  expect_json_fails(state, "{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", MODEL_EINVAL,
                    "Unigram");
  expect_json_fails(state,
                    "{" GPT2_PRE ", \"model\": {\"vocab\": " GPT2_VOCAB ", "
                    "\"merges\": [\"H i\", \"" G " Hx\"]}}",
                    MODEL_ECORRUPT, "merge 1");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1, \"a\": 2}}}",
                    MODEL_ECORRUPT, "duplicate");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}}}", MODEL_ECORRUPT,
                    "duplicate id 0");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0, \"b\": 2}}}", MODEL_ECORRUPT,
                    "id 1");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0, \"b\": \"x\"}}}", MODEL_ECORRUPT,
                    "\"b\"");
  expect_json_fails(state,
                    "{\"added_tokens\": [{\"id\": 0, \"content\": \"z\", \"special\": true}], "
                    "\"model\": {\"vocab\": {\"a\": 0}}}",
                    MODEL_ECORRUPT, "\"z\"");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": [7]}}", MODEL_ECORRUPT,
                    "merge 0");
  expect_json_fails(state,
                    "{\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": ["
                    "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"x\"}}, "
                    "{\"type\": \"ByteLevel\", \"use_regex\": false}]}, "
                    "\"model\": {\"vocab\": {\"a\": 0}}}",
                    MODEL_EINVAL, "Split");
  expect_json_fails(state, "{\"model\": {\"vocab\": {\"a\": 0}, \"unk_token\": \"<unk>\"}}",
                    MODEL_ECORRUPT, "<unk>");
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bytes_to_unicode),
      cmocka_unit_test(test_bpe_ranks),
      cmocka_unit_test(test_bpe_all_occurrences),
      cmocka_unit_test(test_bpe_pieces),
      cmocka_unit_test(test_gpt2_split),
      cmocka_unit_test(test_bpe_unknown_bytes),
      cmocka_unit_test(test_bpe_round_trip),
      cmocka_unit_test(test_bpe_long_piece),
      cmocka_unit_test(test_spm_scores),
      cmocka_unit_test(test_spm_new_pair_first),
      cmocka_unit_test(test_spm_space_and_fallback),
      cmocka_unit_test(test_spm_unknown),
      cmocka_unit_test(test_spm_round_trip),
      cmocka_unit_test(test_bytes_vocab),
      cmocka_unit_test(test_decode_out_of_range),
      cmocka_unit_test(test_new_errors),
      cmocka_unit_test_setup_teardown(test_json_gpt2, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_llama, setup, teardown),
      cmocka_unit_test_setup_teardown(test_json_errors, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
