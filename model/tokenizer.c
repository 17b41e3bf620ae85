/* model tokenizers: GPT-2 byte-level BPE and SentencePiece-style BPE with byte
 * fallback, implemented from the published algorithms.
 *
 * Both kinds merge adjacent symbols with a priority queue of candidate pairs,
 * so a piece of n bytes costs O(n log n) rather than the O(n^2) of rescanning
 * after every merge (a long run of letters or spaces is one piece):
 *   TOK_BPE: lowest merge rank first; GPT-2 merges every occurrence of the
 *     best pair left to right before looking at the pairs those merges create,
 *     so new pairs are held back until the current rank is exhausted.
 *   TOK_SPM: highest score first, ties to the leftmost pair; new pairs compete
 *     at once.
 * Candidates are invalidated lazily: a popped pair whose two symbols no longer
 * have the lengths it recorded is stale and skipped. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "model/tokenizer.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <pcre2.h>

/* GPT-2's pre-tokenizer (openai/gpt-2 encoder.py); compiled with UTF, UCP
 * (so \s, \p{L}, \p{N} are Unicode-aware) and MATCH_INVALID_UTF (invalid
 * bytes match nothing and end up as pieces of their own). */
static const char gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* GPT-2's bytes_to_unicode, as UTF-8: the printable bytes '!'..'~',
 * 0xA1..0xAC and 0xAE..0xFF stand for themselves; the other 68 bytes, in
 * increasing order, become U+0100, U+0101, ... (so ' ' is U+0120 "Ġ").
 * The single source of the mapping (tok_new derives the inverse from it),
 * followed by the two control tokens of the bytes vocabulary. */
static const char *const byte_str[TOK_BYTES_N_VOCAB] = {
    "\xC4\x80", "\xC4\x81", "\xC4\x82", "\xC4\x83", "\xC4\x84", "\xC4\x85", "\xC4\x86", "\xC4\x87",
    "\xC4\x88", "\xC4\x89", "\xC4\x8A", "\xC4\x8B", "\xC4\x8C", "\xC4\x8D", "\xC4\x8E", "\xC4\x8F",
    "\xC4\x90", "\xC4\x91", "\xC4\x92", "\xC4\x93", "\xC4\x94", "\xC4\x95", "\xC4\x96", "\xC4\x97",
    "\xC4\x98", "\xC4\x99", "\xC4\x9A", "\xC4\x9B", "\xC4\x9C", "\xC4\x9D", "\xC4\x9E", "\xC4\x9F",
    "\xC4\xA0", "!",        "\"",       "#",        "$",        "%",        "&",        "'",
    "(",        ")",        "*",        "+",        ",",        "-",        ".",        "/",
    "0",        "1",        "2",        "3",        "4",        "5",        "6",        "7",
    "8",        "9",        ":",        ";",        "<",        "=",        ">",        "?",
    "@",        "A",        "B",        "C",        "D",        "E",        "F",        "G",
    "H",        "I",        "J",        "K",        "L",        "M",        "N",        "O",
    "P",        "Q",        "R",        "S",        "T",        "U",        "V",        "W",
    "X",        "Y",        "Z",        "[",        "\\",       "]",        "^",        "_",
    "`",        "a",        "b",        "c",        "d",        "e",        "f",        "g",
    "h",        "i",        "j",        "k",        "l",        "m",        "n",        "o",
    "p",        "q",        "r",        "s",        "t",        "u",        "v",        "w",
    "x",        "y",        "z",        "{",        "|",        "}",        "~",        "\xC4\xA1",
    "\xC4\xA2", "\xC4\xA3", "\xC4\xA4", "\xC4\xA5", "\xC4\xA6", "\xC4\xA7", "\xC4\xA8", "\xC4\xA9",
    "\xC4\xAA", "\xC4\xAB", "\xC4\xAC", "\xC4\xAD", "\xC4\xAE", "\xC4\xAF", "\xC4\xB0", "\xC4\xB1",
    "\xC4\xB2", "\xC4\xB3", "\xC4\xB4", "\xC4\xB5", "\xC4\xB6", "\xC4\xB7", "\xC4\xB8", "\xC4\xB9",
    "\xC4\xBA", "\xC4\xBB", "\xC4\xBC", "\xC4\xBD", "\xC4\xBE", "\xC4\xBF", "\xC5\x80", "\xC5\x81",
    "\xC5\x82", "\xC2\xA1", "\xC2\xA2", "\xC2\xA3", "\xC2\xA4", "\xC2\xA5", "\xC2\xA6", "\xC2\xA7",
    "\xC2\xA8", "\xC2\xA9", "\xC2\xAA", "\xC2\xAB", "\xC2\xAC", "\xC5\x83", "\xC2\xAE", "\xC2\xAF",
    "\xC2\xB0", "\xC2\xB1", "\xC2\xB2", "\xC2\xB3", "\xC2\xB4", "\xC2\xB5", "\xC2\xB6", "\xC2\xB7",
    "\xC2\xB8", "\xC2\xB9", "\xC2\xBA", "\xC2\xBB", "\xC2\xBC", "\xC2\xBD", "\xC2\xBE", "\xC2\xBF",
    "\xC3\x80", "\xC3\x81", "\xC3\x82", "\xC3\x83", "\xC3\x84", "\xC3\x85", "\xC3\x86", "\xC3\x87",
    "\xC3\x88", "\xC3\x89", "\xC3\x8A", "\xC3\x8B", "\xC3\x8C", "\xC3\x8D", "\xC3\x8E", "\xC3\x8F",
    "\xC3\x90", "\xC3\x91", "\xC3\x92", "\xC3\x93", "\xC3\x94", "\xC3\x95", "\xC3\x96", "\xC3\x97",
    "\xC3\x98", "\xC3\x99", "\xC3\x9A", "\xC3\x9B", "\xC3\x9C", "\xC3\x9D", "\xC3\x9E", "\xC3\x9F",
    "\xC3\xA0", "\xC3\xA1", "\xC3\xA2", "\xC3\xA3", "\xC3\xA4", "\xC3\xA5", "\xC3\xA6", "\xC3\xA7",
    "\xC3\xA8", "\xC3\xA9", "\xC3\xAA", "\xC3\xAB", "\xC3\xAC", "\xC3\xAD", "\xC3\xAE", "\xC3\xAF",
    "\xC3\xB0", "\xC3\xB1", "\xC3\xB2", "\xC3\xB3", "\xC3\xB4", "\xC3\xB5", "\xC3\xB6", "\xC3\xB7",
    "\xC3\xB8", "\xC3\xB9", "\xC3\xBA", "\xC3\xBB", "\xC3\xBC", "\xC3\xBD", "\xC3\xBE", "\xC3\xBF",
    "<|bos|>",  "<|eos|>",
};
#define BYTE_CP_END 0x144 /* the mapping's code points are all below U+0144 */

static const char spm_space[] = "\xE2\x96\x81"; /* U+2581 LOWER ONE EIGHTH BLOCK */

/* Text longer than this is refused: symbol offsets are 32-bit and TOK_SPM
 * triples the size of spaces. */
#define MAX_TEXT ((size_t)0x3FFFFFFF)

typedef struct pair_slot {
  uint64_t key; /* left id << 32 | right id; PAIR_EMPTY when free */
  int32_t rank, result;
} pair_slot;
#define PAIR_EMPTY UINT64_MAX

struct tokenizer {
  enum tok_kind kind;
  size_t n_vocab;
  char *pool;       /* token strings, each followed by a NUL */
  const char **tok; /* (n_vocab) into pool */
  size_t *tok_len;  /* (n_vocab) */
  float *scores;    /* (n_vocab) TOK_SPM: given or derived; TOK_BPE: given or NULL */
  int32_t *types;   /* (n_vocab) given or derived */
  uint8_t *enc;     /* (n_vocab) 1: encoding may produce the token from text */
  char *dec;        /* every token's decoded bytes, back to back */
  size_t *dec_off;  /* (n_vocab + 1) token i decodes to dec[dec_off[i] .. dec_off[i + 1]) */
  int32_t *map;     /* token string -> id, open addressing, -1 free */
  size_t map_mask;
  size_t n_merges;
  char *merge_pool;
  const char **merges; /* (n_merges) into merge_pool */
  pair_slot *pairs;    /* TOK_BPE: (left id, right id) -> rank, result */
  size_t pair_mask;
  int32_t byte_tok[256];        /* TOK_BPE: the byte's unicode char; TOK_SPM: "<0xXX>"; -1: none */
  int16_t cp_byte[BYTE_CP_END]; /* TOK_BPE decoding: code point -> byte, -1: not a byte */
  int32_t bos, eos, unk;
  int add_bos, add_space_prefix;
  pcre2_code *re; /* TOK_BPE: the GPT-2 pre-tokenizer */
};

/* ---- small helpers ------------------------------------------------------- */

/* Length of the valid UTF-8 character at s (n >= 1 bytes available), or 0 if
 * none starts there: like PCRE2, overlong forms, surrogates and code points
 * above U+10FFFF are invalid. */
static size_t utf8_char(const uint8_t *s, size_t n, uint32_t *cp)
{
  uint32_t c = s[0], min;
  size_t len;
  if (c < 0x80) {
    len = 1, min = 0;
  } else if ((c & 0xE0) == 0xC0) {
    len = 2, min = 0x80, c &= 0x1F;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, min = 0x800, c &= 0x0F;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, min = 0x10000, c &= 0x07;
  } else {
    return 0;
  }
  if (n < len)
    return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80)
      return 0;
    c = c << 6 | (s[i] & 0x3F);
  }
  if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  if (cp)
    *cp = c;
  return len;
}

/* p (an array of *cap elements of size elem) grown to hold at least need;
 * when out of memory, p is freed and NULL returned: callers give up. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
  size_t c = *cap ? *cap : 16;
  while (c < need)
    c = c > SIZE_MAX / 2 ? need : c * 2;
  void *q = c <= SIZE_MAX / elem ? realloc(p, c * elem) : NULL;
  if (!q) {
    free(p);
    *cap = 0;
    return NULL;
  }
  *cap = c;
  return q;
}

/* Room for need elements in the growable array p of capacity cap: true, or
 * false (p freed and NULL) when out of memory. */
#define RESERVE(p, cap, need)                                                                      \
  ((need) <= (cap) || ((p) = grow((p), &(cap), (need), sizeof *(p))) != NULL)

static size_t pow2_at_least(size_t n)
{
  size_t c = 16;
  while (c < n)
    c *= 2;
  return c;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
  uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (uint8_t)s[i]) * 0x100000001b3u;
  return h;
}

static uint64_t hash_u64(uint64_t x)
{
  x ^= x >> 33; /* murmur3 finalizer */
  x *= 0xff51afd7ed558ccdu;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53u;
  return x ^ (x >> 33);
}

/* Higher score first as an integer where lower is better; -0.0 == 0.0. */
static int64_t score_prio(float s)
{
  uint32_t u;
  if (s == 0.0f)
    s = 0.0f;
  memcpy(&u, &s, sizeof u);
  u = (u & 0x80000000u) ? ~u : u | 0x80000000u; /* order-preserving */
  return -(int64_t)u;
}

/* "<0xXX>" with uppercase hex: the byte, else -1. */
static int byte_token_value(const char *s, size_t n)
{
  static const char hex[] = "0123456789ABCDEF";
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
    return -1;
  const char *hi = memchr(hex, s[3], 16), *lo = memchr(hex, s[4], 16);
  if (!hi || !lo || !s[3] || !s[4])
    return -1;
  return (int)((hi - hex) * 16 + (lo - hex));
}

/* ---- token map ------------------------------------------------------------ */

static size_t map_slot(const tokenizer *t, const char *s, size_t n)
{
  size_t i = (size_t)hash_bytes(s, n) & t->map_mask;
  for (;;) {
    int32_t id = t->map[i];
    if (id < 0 || (t->tok_len[id] == n && memcmp(t->tok[id], s, n) == 0))
      return i;
    i = (i + 1) & t->map_mask;
  }
}

/* Any token with this string (an encodable one when there is one), or -1. */
static int32_t map_get(const tokenizer *t, const char *s, size_t n)
{
  return t->map[map_slot(t, s, n)];
}

/* A token encoding may produce from this text, or -1. */
static int32_t lookup_text(const tokenizer *t, const char *s, size_t n)
{
  int32_t id = map_get(t, s, n);
  return id >= 0 && t->enc[id] ? id : -1;
}

static pair_slot *pair_get(const tokenizer *t, int32_t l, int32_t r)
{
  uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
  size_t i = (size_t)hash_u64(key) & t->pair_mask;
  while (t->pairs[i].key != key && t->pairs[i].key != PAIR_EMPTY)
    i = (i + 1) & t->pair_mask;
  return &t->pairs[i];
}

/* ---- tok_new ---------------------------------------------------------------- */

static int check_id(int32_t id, size_t n_vocab, const char *what, model_err *err)
{
  if (id < -1 || (id >= 0 && (size_t)id >= n_vocab))
    return model_fail(err, MODEL_EINVAL, "%s id %d is out of range (vocabulary of %zu)", what, id,
                      n_vocab);
  return 0;
}

static int copy_tokens(tokenizer *t, const tok_spec *spec, model_err *err)
{
  size_t n = spec->n_vocab, total = 0;
  t->tok = malloc(n * sizeof *t->tok);
  t->tok_len = malloc(n * sizeof *t->tok_len);
  if (!t->tok || !t->tok_len)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu tokens", n);
  for (size_t i = 0; i < n; i++) {
    if (!spec->tokens[i])
      return model_fail(err, MODEL_EINVAL, "token %zu is NULL", i);
    t->tok_len[i] = spec->token_lens ? spec->token_lens[i] : strlen(spec->tokens[i]);
    if (t->tok_len[i] >= SIZE_MAX - total - 1)
      return model_fail(err, MODEL_EINVAL, "token %zu is too long", i);
    total += t->tok_len[i] + 1;
  }
  t->pool = malloc(total);
  if (!t->pool)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu bytes of tokens", total);
  char *p = t->pool;
  for (size_t i = 0; i < n; i++) {
    memcpy(p, spec->tokens[i], t->tok_len[i]);
    p[t->tok_len[i]] = '\0';
    t->tok[i] = p;
    p += t->tok_len[i] + 1;
  }
  return 0;
}

/* Types as given (checked), or derived: bos/eos control, unk unknown, SPM
 * "<0xXX>" byte, the rest normal. Then which tokens encoding may produce. */
static int set_types(tokenizer *t, const tok_spec *spec, model_err *err)
{
  size_t n = t->n_vocab;
  t->types = malloc(n * sizeof *t->types);
  t->enc = malloc(n);
  if (!t->types || !t->enc)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu token types", n);
  for (size_t i = 0; i < n; i++) {
    int32_t ty = TOK_TYPE_NORMAL;
    if (spec->types) {
      ty = spec->types[i];
      if (ty < TOK_TYPE_NORMAL || ty > TOK_TYPE_BYTE)
        return model_fail(err, MODEL_EINVAL, "token %zu has type %d (not 1..6)", i, ty);
    } else if ((int32_t)i == t->bos || (int32_t)i == t->eos) {
      ty = TOK_TYPE_CONTROL;
    } else if ((int32_t)i == t->unk) {
      ty = TOK_TYPE_UNKNOWN;
    } else if (t->kind == TOK_SPM && byte_token_value(t->tok[i], t->tok_len[i]) >= 0) {
      ty = TOK_TYPE_BYTE;
    }
    t->types[i] = ty;
    t->enc[i] = (ty == TOK_TYPE_NORMAL || ty == TOK_TYPE_USER) && t->tok_len[i] > 0;
  }
  return 0;
}

static int build_map(tokenizer *t, model_err *err)
{
  size_t cap = pow2_at_least(t->n_vocab * 2);
  t->map = malloc(cap * sizeof *t->map);
  if (!t->map)
    return model_fail(err, MODEL_ENOMEM, "out of memory for the token map");
  memset(t->map, 0xFF, cap * sizeof *t->map); /* all -1 */
  t->map_mask = cap - 1;
  for (size_t i = 0; i < t->n_vocab; i++) {
    if (t->tok_len[i] == 0)
      continue;
    size_t s = map_slot(t, t->tok[i], t->tok_len[i]);
    int32_t j = t->map[s];
    if (j < 0 || (t->enc[i] && !t->enc[j]))
      t->map[s] = (int32_t)i;
    else if (t->enc[i] && t->enc[j])
      return model_fail(err, MODEL_ECORRUPT, "duplicate token: ids %d and %zu are both \"%.*s\"", j,
                        i, (int)(t->tok_len[i] > 64 ? 64 : t->tok_len[i]), t->tok[i]);
  }
  for (int b = 0; b < 256; b++)
    t->byte_tok[b] = -1;
  if (t->kind == TOK_BPE) {
    for (int b = 0; b < 256; b++)
      t->byte_tok[b] = lookup_text(t, byte_str[b], strlen(byte_str[b]));
  } else {
    for (size_t i = t->n_vocab; i-- > 0;) { /* the first of duplicates wins */
      int b = byte_token_value(t->tok[i], t->tok_len[i]);
      if (b >= 0 && t->types[i] == TOK_TYPE_BYTE)
        t->byte_tok[b] = (int32_t)i;
    }
  }
  return 0;
}

static int copy_merges(tokenizer *t, const tok_spec *spec, model_err *err)
{
  size_t n = spec->n_merges, total = 0;
  t->n_merges = n;
  if (n == 0)
    return 0;
  if (!spec->merges)
    return model_fail(err, MODEL_EINVAL, "%zu merges but no merge array", n);
  t->merges = malloc(n * sizeof *t->merges);
  if (!t->merges)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu merges", n);
  for (size_t r = 0; r < n; r++) {
    if (!spec->merges[r])
      return model_fail(err, MODEL_EINVAL, "merge %zu is NULL", r);
    size_t len = strlen(spec->merges[r]);
    if (len >= SIZE_MAX - total - 1)
      return model_fail(err, MODEL_EINVAL, "merge %zu is too long", r);
    total += len + 1;
  }
  t->merge_pool = malloc(total);
  if (!t->merge_pool)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu bytes of merges", total);
  char *p = t->merge_pool;
  for (size_t r = 0; r < n; r++) {
    size_t len = strlen(spec->merges[r]) + 1;
    memcpy(p, spec->merges[r], len);
    t->merges[r] = p;
    p += len;
  }
  return 0;
}

/* Resolves every merge "left right" to token ids (the separator is the first
 * space after the first byte, so a left token " " still works). TOK_BPE: the
 * pair table. TOK_SPM without scores: score[result] = -rank. */
static int resolve_merges(tokenizer *t, int derive_scores, model_err *err)
{
  size_t cap = pow2_at_least(t->n_merges * 2), maxlen = 0;
  char *cat = NULL;
  if (t->kind == TOK_BPE) {
    t->pairs = malloc(cap * sizeof *t->pairs);
    if (!t->pairs)
      return model_fail(err, MODEL_ENOMEM, "out of memory for %zu merges", t->n_merges);
    for (size_t i = 0; i < cap; i++)
      t->pairs[i].key = PAIR_EMPTY;
    t->pair_mask = cap - 1;
  }
  for (size_t r = 0; r < t->n_merges; r++)
    if (strlen(t->merges[r]) > maxlen)
      maxlen = strlen(t->merges[r]);
  if (!(cat = malloc(maxlen + 1)))
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  int rc = 0;
  for (size_t r = 0; r < t->n_merges && rc == 0; r++) {
    const char *m = t->merges[r];
    size_t len = strlen(m);
    const char *sp = len > 1 ? memchr(m + 1, ' ', len - 1) : NULL;
    if (!sp) {
      rc = model_fail(err, MODEL_ECORRUPT, "merge %zu (\"%.64s\") is not \"left right\"", r, m);
      break;
    }
    size_t ll = (size_t)(sp - m), rl = len - ll - 1;
    int32_t l = map_get(t, m, ll), rt = map_get(t, sp + 1, rl);
    memcpy(cat, m, ll);
    memcpy(cat + ll, sp + 1, rl);
    int32_t res = map_get(t, cat, ll + rl);
    if (l < 0 || rt < 0 || res < 0) {
      const char *side = "result", *what = cat;
      size_t wl = ll + rl;
      if (l < 0)
        side = "left", what = m, wl = ll;
      else if (rt < 0)
        side = "right", what = sp + 1, wl = rl;
      rc = model_fail(err, MODEL_ECORRUPT, "merge %zu (\"%.64s\"): %s \"%.*s\" is not a token", r,
                      m, side, (int)(wl > 64 ? 64 : wl), what);
      break;
    }
    if (derive_scores && isnan(t->scores[res]))
      t->scores[res] = -(float)r;
    if (t->kind == TOK_BPE && t->enc[l] && t->enc[rt] && t->enc[res]) {
      pair_slot *s = pair_get(t, l, rt);
      if (s->key == PAIR_EMPTY) /* a repeated pair keeps its first rank */
        *s = (pair_slot){(uint64_t)(uint32_t)l << 32 | (uint32_t)rt, (int32_t)r, res};
    }
  }
  free(cat);
  return rc;
}

static int set_scores(tokenizer *t, const tok_spec *spec, model_err *err)
{
  int derive = t->kind == TOK_SPM && !spec->scores;
  if (spec->scores || derive) {
    t->scores = malloc(t->n_vocab * sizeof *t->scores);
    if (!t->scores)
      return model_fail(err, MODEL_ENOMEM, "out of memory for %zu scores", t->n_vocab);
  }
  for (size_t i = 0; spec->scores && i < t->n_vocab; i++) {
    if (isnan(spec->scores[i]))
      return model_fail(err, MODEL_EINVAL, "token %zu has a NaN score", i);
    t->scores[i] = spec->scores[i];
  }
  for (size_t i = 0; derive && i < t->n_vocab; i++)
    t->scores[i] = NAN;
  int rc = resolve_merges(t, derive, err);
  for (size_t i = 0; derive && i < t->n_vocab; i++)
    if (isnan(t->scores[i]))
      t->scores[i] = -(float)t->n_merges - 1.0f;
  return rc;
}

/* Token i's decoded bytes into dst (NULL: only counted). */
static size_t decode_token(const tokenizer *t, size_t i, char *dst)
{
  const uint8_t *s = (const uint8_t *)t->tok[i];
  size_t n = t->tok_len[i], out = 0;
  if (t->types[i] == TOK_TYPE_CONTROL)
    return 0;
  if (t->kind == TOK_SPM && t->types[i] == TOK_TYPE_BYTE && byte_token_value(t->tok[i], n) >= 0) {
    if (dst)
      dst[0] = (char)byte_token_value(t->tok[i], n);
    return 1;
  }
  for (size_t k = 0; k < n;) {
    uint32_t cp = 0;
    size_t l = utf8_char(s + k, n - k, &cp);
    if (t->kind == TOK_SPM && l == 3 && memcmp(s + k, spm_space, 3) == 0) {
      if (dst)
        dst[out] = ' ';
      out++;
    } else if (t->kind == TOK_BPE && l > 0 && cp < BYTE_CP_END && t->cp_byte[cp] >= 0) {
      if (dst)
        dst[out] = (char)t->cp_byte[cp];
      out++;
    } else { /* not an encoded byte: copied as is */
      if (l == 0)
        l = 1;
      if (dst)
        memcpy(dst + out, s + k, l);
      out += l;
    }
    k += l;
  }
  return out;
}

static int build_decoder(tokenizer *t, model_err *err)
{
  for (size_t c = 0; c < BYTE_CP_END; c++)
    t->cp_byte[c] = -1;
  for (int b = 0; b < 256; b++) {
    uint32_t cp = 0;
    utf8_char((const uint8_t *)byte_str[b], strlen(byte_str[b]), &cp);
    t->cp_byte[cp] = (int16_t)b;
  }
  t->dec_off = malloc((t->n_vocab + 1) * sizeof *t->dec_off);
  if (!t->dec_off)
    return model_fail(err, MODEL_ENOMEM, "out of memory for the decoder");
  t->dec_off[0] = 0;
  for (size_t i = 0; i < t->n_vocab; i++)
    t->dec_off[i + 1] = t->dec_off[i] + decode_token(t, i, NULL);
  t->dec = malloc(t->dec_off[t->n_vocab] + 1);
  if (!t->dec)
    return model_fail(err, MODEL_ENOMEM, "out of memory for the decoder");
  for (size_t i = 0; i < t->n_vocab; i++)
    decode_token(t, i, t->dec + t->dec_off[i]);
  return 0;
}

static int compile_regex(tokenizer *t, model_err *err)
{
  int code;
  PCRE2_SIZE off;
  t->re = pcre2_compile((PCRE2_SPTR)gpt2_pattern, PCRE2_ZERO_TERMINATED,
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &code, &off, NULL);
  if (!t->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(code, msg, sizeof msg);
    return model_fail(err, MODEL_EINTERNAL, "GPT-2 pattern does not compile at %zu: %s",
                      (size_t)off, (const char *)msg);
  }
  pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE); /* optional: the interpreter is the fallback */
  return 0;
}

int tok_new(const tok_spec *spec, tokenizer **out, model_err *err)
{
  if (!spec || !out)
    return model_fail(err, MODEL_EINVAL, "tok_new: NULL argument");
  *out = NULL;
  if (spec->kind != TOK_BPE && spec->kind != TOK_SPM)
    return model_fail(err, MODEL_EINVAL, "unknown tokenizer kind %d", (int)spec->kind);
  if (spec->n_vocab == 0 || spec->n_vocab > INT32_MAX || !spec->tokens)
    return model_fail(err, MODEL_EINVAL, "tokenizer needs 1..%d tokens (got %zu%s)", INT32_MAX,
                      spec->n_vocab, spec->tokens ? "" : ", no token array");
  int rc = check_id(spec->bos_id, spec->n_vocab, "BOS", err);
  if (!rc)
    rc = check_id(spec->eos_id, spec->n_vocab, "EOS", err);
  if (!rc)
    rc = check_id(spec->unk_id, spec->n_vocab, "unknown-token", err);
  if (rc)
    return rc;

  tokenizer *t = calloc(1, sizeof *t);
  if (!t)
    return model_fail(err, MODEL_ENOMEM, "out of memory for a tokenizer");
  t->kind = spec->kind;
  t->n_vocab = spec->n_vocab;
  t->bos = spec->bos_id;
  t->eos = spec->eos_id;
  t->unk = spec->unk_id;
  t->add_bos = spec->add_bos != 0;
  t->add_space_prefix = spec->kind == TOK_SPM && spec->add_space_prefix;
  rc = copy_tokens(t, spec, err);
  if (!rc)
    rc = set_types(t, spec, err);
  if (!rc)
    rc = build_map(t, err);
  if (!rc)
    rc = copy_merges(t, spec, err);
  if (!rc)
    rc = set_scores(t, spec, err);
  if (!rc)
    rc = build_decoder(t, err);
  if (!rc && t->kind == TOK_BPE)
    rc = compile_regex(t, err);
  if (rc) {
    tok_free(t);
    return rc;
  }
  *out = t;
  return 0;
}

void tok_free(tokenizer *t)
{
  if (!t)
    return;
  pcre2_code_free(t->re);
  free(t->pool);
  free(t->tok);
  free(t->tok_len);
  free(t->scores);
  free(t->types);
  free(t->enc);
  free(t->dec);
  free(t->dec_off);
  free(t->map);
  free(t->merge_pool);
  free(t->merges);
  free(t->pairs);
  free(t);
}

size_t tok_n_vocab(const tokenizer *t)
{
  return t->n_vocab;
}

enum tok_kind tok_get_kind(const tokenizer *t)
{
  return t->kind;
}

int32_t tok_bos(const tokenizer *t)
{
  return t->bos;
}

int32_t tok_eos(const tokenizer *t)
{
  return t->eos;
}

int32_t tok_unk(const tokenizer *t)
{
  return t->unk;
}

void tok_get_spec(const tokenizer *t, tok_spec *spec)
{
  *spec = (tok_spec){
      .kind = t->kind,
      .n_vocab = t->n_vocab,
      .tokens = t->tok,
      .token_lens = t->tok_len,
      .scores = t->scores,
      .types = t->types,
      .n_merges = t->n_merges,
      .merges = t->merges,
      .bos_id = t->bos,
      .eos_id = t->eos,
      .unk_id = t->unk,
      .add_bos = t->add_bos,
      .add_space_prefix = t->add_space_prefix,
  };
}

/* ---- encoding ---------------------------------------------------------------- */

/* A symbol: a span of the text, linked to its neighbours; len 0 once merged
 * into its left neighbour. Indices only grow left to right, so the left
 * symbol's index orders candidate pairs by position. */
typedef struct sym {
  uint32_t start, len;
  int32_t id; /* token of the span, -1 if none */
  int32_t prev, next;
} sym;

/* A candidate merge of symbol left with its right neighbour into token id,
 * valid while both still have the lengths recorded. */
typedef struct cand {
  int64_t prio; /* lower first: TOK_BPE rank, TOK_SPM -score */
  uint32_t left, llen, rlen;
  int32_t id;
} cand;

typedef struct scratch {
  sym *sym;
  size_t sym_cap;
  cand *heap;
  size_t nheap, heap_cap;
  uint32_t *pend; /* TOK_BPE: symbols whose right pair is new in this rank */
  size_t npend, pend_cap;
  int32_t *out;
  size_t nout, out_cap;
} scratch;

static int emit(scratch *s, int32_t id, model_err *err)
{
  if (!RESERVE(s->out, s->out_cap, s->nout + 1))
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu token ids", s->nout + 1);
  s->out[s->nout++] = id;
  return 0;
}

static int cand_before(const cand *a, const cand *b)
{
  return a->prio < b->prio || (a->prio == b->prio && a->left < b->left);
}

static int heap_push(scratch *s, cand c)
{
  if (!RESERVE(s->heap, s->heap_cap, s->nheap + 1))
    return -1;
  size_t i = s->nheap++;
  while (i > 0 && cand_before(&c, &s->heap[(i - 1) / 2])) {
    s->heap[i] = s->heap[(i - 1) / 2];
    i = (i - 1) / 2;
  }
  s->heap[i] = c;
  return 0;
}

static cand heap_pop(scratch *s)
{
  cand top = s->heap[0], last = s->heap[--s->nheap];
  size_t i = 0, n = s->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n)
      break;
    if (c + 1 < n && cand_before(&s->heap[c + 1], &s->heap[c]))
      c++;
    if (!cand_before(&s->heap[c], &last))
      break;
    s->heap[i] = s->heap[c];
    i = c;
  }
  if (n > 0)
    s->heap[i] = last;
  return top;
}

static int cand_valid(const scratch *s, const cand *c)
{
  const sym *l = &s->sym[c->left];
  return l->len == c->llen && l->next >= 0 && s->sym[l->next].len == c->rlen;
}

static void merge(scratch *s, const cand *c)
{
  sym *l = &s->sym[c->left], *r = &s->sym[l->next];
  l->len += r->len;
  l->id = c->id;
  l->next = r->next;
  if (r->next >= 0)
    s->sym[r->next].prev = (int32_t)c->left;
  r->len = 0;
}

/* Pushes the pair (left, its right neighbour) if some merge applies to it. */
static int push_pair(const tokenizer *t, scratch *s, const char *text, uint32_t left)
{
  const sym *l = &s->sym[left];
  if (l->len == 0 || l->next < 0)
    return 0;
  const sym *r = &s->sym[l->next];
  cand c = {0, left, l->len, r->len, -1};
  if (t->kind == TOK_BPE) {
    if (l->id < 0 || r->id < 0)
      return 0;
    const pair_slot *p = pair_get(t, l->id, r->id);
    if (p->key == PAIR_EMPTY)
      return 0;
    c.prio = p->rank;
    c.id = p->result;
  } else {
    c.id = lookup_text(t, text + l->start, (size_t)l->len + r->len);
    if (c.id < 0)
      return 0;
    c.prio = score_prio(t->scores[c.id]);
  }
  return heap_push(s, c);
}

/* A symbol without a token: TOK_SPM byte fallback ("<0xXX>" per byte), else
 * the unknown token. */
static int emit_fallback(const tokenizer *t, scratch *s, const uint8_t *p, size_t n, model_err *err)
{
  size_t i = 0;
  while (i < n && t->kind == TOK_SPM && t->byte_tok[p[i]] >= 0)
    i++;
  if (i == n) {
    for (i = 0; i < n; i++)
      if (emit(s, t->byte_tok[p[i]], err))
        return MODEL_ENOMEM;
    return 0;
  }
  if (t->unk < 0)
    return model_fail(err, MODEL_EINVAL, "no token for byte 0x%02X and no unknown token",
                      (unsigned)p[i < n ? i : 0]);
  return emit(s, t->unk, err);
}

/* Merges the symbols of s->sym[0 .. n) (linked, text offsets into text) and
 * emits their tokens. */
static int merge_and_emit(const tokenizer *t, scratch *s, const char *text, size_t n,
                          model_err *err)
{
  s->nheap = 0;
  for (uint32_t i = 0; i + 1 < n; i++)
    if (push_pair(t, s, text, i))
      goto nomem;
  while (s->nheap > 0) {
    cand c = heap_pop(s);
    if (!cand_valid(s, &c))
      continue;
    if (t->kind == TOK_SPM) {
      merge(s, &c);
      if ((s->sym[c.left].prev >= 0 && push_pair(t, s, text, (uint32_t)s->sym[c.left].prev)) ||
          push_pair(t, s, text, c.left))
        goto nomem;
      continue;
    }
    /* TOK_BPE: every remaining occurrence of this pair, left to right, then the new pairs */
    s->npend = 0;
    for (;;) {
      merge(s, &c);
      if (!RESERVE(s->pend, s->pend_cap, s->npend + 2))
        goto nomem;
      if (s->sym[c.left].prev >= 0)
        s->pend[s->npend++] = (uint32_t)s->sym[c.left].prev;
      s->pend[s->npend++] = c.left;
      do {
        if (s->nheap == 0 || s->heap[0].prio != c.prio)
          goto rank_done;
        c = heap_pop(s);
      } while (!cand_valid(s, &c));
    }
  rank_done:
    for (size_t k = 0; k < s->npend; k++)
      if (push_pair(t, s, text, s->pend[k]))
        goto nomem;
  }
  for (int32_t i = 0; i >= 0; i = s->sym[i].next) {
    const sym *y = &s->sym[i];
    int rc = y->id >= 0 ? emit(s, y->id, err)
                        : emit_fallback(t, s, (const uint8_t *)text + y->start, y->len, err);
    if (rc)
      return rc;
  }
  return 0;
nomem:
  return model_fail(err, MODEL_ENOMEM, "out of memory merging %zu symbols", n);
}

static int bpe_piece(const tokenizer *t, scratch *s, const char *p, size_t n, model_err *err)
{
  if (!RESERVE(s->sym, s->sym_cap, n))
    return model_fail(err, MODEL_ENOMEM, "out of memory for a piece of %zu bytes", n);
  for (size_t i = 0; i < n; i++)
    s->sym[i] = (sym){(uint32_t)i, 1, t->byte_tok[(uint8_t)p[i]], (int32_t)i - 1,
                      i + 1 < n ? (int32_t)i + 1 : -1};
  return merge_and_emit(t, s, p, n, err);
}

/* The GPT-2 pre-tokenizer as an iterator over pieces. */
typedef struct splitter {
  const tokenizer *t;
  pcre2_match_data *md;
  const char *s;
  size_t n, pos;
  size_t mstart, mend; /* the next match, when have */
  int have;
} splitter;

/* The next piece [*a, *b): 1, 0 at the end, or an error. */
static int split_next(splitter *sp, size_t *a, size_t *b, model_err *err)
{
  if (sp->pos >= sp->n)
    return 0;
  if (!sp->have) {
    int rc = pcre2_match(sp->t->re, (PCRE2_SPTR)sp->s, sp->n, sp->pos, 0, sp->md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) {
      sp->mstart = sp->mend = sp->n;
    } else if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      return model_fail(err, MODEL_EINTERNAL, "pre-tokenizer failed at byte %zu: %s", sp->pos,
                        (const char *)msg);
    } else {
      PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sp->md);
      sp->mstart = ov[0];
      sp->mend = ov[1];
    }
    sp->have = 1;
  }
  if (sp->pos < sp->mstart || sp->mend == sp->mstart) {
    /* bytes no alternative matches (invalid UTF-8): one character or byte each */
    size_t l = utf8_char((const uint8_t *)sp->s + sp->pos, sp->n - sp->pos, NULL);
    *a = sp->pos;
    *b = sp->pos += l ? l : 1;
    if (sp->pos > sp->mstart)
      sp->have = 0;
    return 1;
  }
  *a = sp->mstart;
  *b = sp->pos = sp->mend;
  sp->have = 0;
  return 1;
}

static int bpe_encode(const tokenizer *t, scratch *s, const char *text, size_t len, model_err *err)
{
  splitter sp = {t, pcre2_match_data_create_from_pattern(t->re, NULL), text, len, 0, 0, 0, 0};
  if (!sp.md)
    return model_fail(err, MODEL_ENOMEM, "out of memory for regex match data");
  size_t a, b;
  int rc;
  while ((rc = split_next(&sp, &a, &b, err)) == 1)
    if ((rc = bpe_piece(t, s, text + a, b - a, err)) != 0)
      break;
  pcre2_match_data_free(sp.md);
  return rc;
}

static int spm_encode(const tokenizer *t, scratch *s, const char *text, size_t len, model_err *err)
{
  size_t spaces = 0, n = 0;
  for (size_t i = 0; i < len; i++)
    spaces += text[i] == ' ';
  char *buf = malloc(len + 2 * spaces + 3);
  if (!buf)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu bytes of text", len);
  if (t->add_space_prefix) {
    memcpy(buf, spm_space, 3);
    n = 3;
  }
  for (size_t i = 0; i < len; i++) {
    if (text[i] == ' ') {
      memcpy(buf + n, spm_space, 3);
      n += 3;
    } else {
      buf[n++] = text[i];
    }
  }
  size_t nsym = 0;
  int rc = 0;
  for (size_t i = 0; i < n; nsym++) {
    if (!RESERVE(s->sym, s->sym_cap, nsym + 1)) {
      rc = model_fail(err, MODEL_ENOMEM, "out of memory for %zu symbols", nsym + 1);
      break;
    }
    size_t l = utf8_char((const uint8_t *)buf + i, n - i, NULL);
    l = l ? l : 1; /* an invalid byte is a symbol of its own */
    s->sym[nsym] = (sym){(uint32_t)i, (uint32_t)l, lookup_text(t, buf + i, l), (int32_t)nsym - 1,
                         i + l < n ? (int32_t)nsym + 1 : -1};
    i += l;
  }
  if (!rc && nsym > 0)
    rc = merge_and_emit(t, s, buf, nsym, err);
  free(buf);
  return rc;
}

int tok_encode(const tokenizer *t, const char *text, size_t len, int add_special, int32_t **ids,
               size_t *n, model_err *err)
{
  if (!t || !ids || !n || (!text && len))
    return model_fail(err, MODEL_EINVAL, "tok_encode: NULL argument");
  *ids = NULL;
  *n = 0;
  if (len > MAX_TEXT)
    return model_fail(err, MODEL_EINVAL, "text of %zu bytes is too long to encode at once", len);
  scratch s = {0};
  int rc = 0;
  if (add_special && t->add_bos && t->bos >= 0)
    rc = emit(&s, t->bos, err);
  if (!rc && len > 0)
    rc = t->kind == TOK_BPE ? bpe_encode(t, &s, text, len, err) : spm_encode(t, &s, text, len, err);
  if (!rc && !s.out && !RESERVE(s.out, s.out_cap, 1))
    rc = model_fail(err, MODEL_ENOMEM, "out of memory");
  free(s.sym);
  free(s.heap);
  free(s.pend);
  if (rc) {
    free(s.out);
    return rc;
  }
  *ids = s.out;
  *n = s.nout;
  return 0;
}

int tok_split(const tokenizer *t, const char *text, size_t len, size_t **ends, size_t *n,
              model_err *err)
{
  if (!t || !ends || !n || (!text && len))
    return model_fail(err, MODEL_EINVAL, "tok_split: NULL argument");
  *ends = NULL;
  *n = 0;
  size_t *e = NULL, ne = 0, cap = 0, a, b;
  int rc = 0;
  if (t->kind == TOK_SPM) {
    if (len > 0 && RESERVE(e, cap, 1))
      e[ne++] = len;
  } else {
    splitter sp = {t, pcre2_match_data_create_from_pattern(t->re, NULL), text, len, 0, 0, 0, 0};
    if (!sp.md)
      return model_fail(err, MODEL_ENOMEM, "out of memory for regex match data");
    while ((rc = split_next(&sp, &a, &b, err)) == 1) {
      if (!RESERVE(e, cap, ne + 1)) {
        rc = model_fail(err, MODEL_ENOMEM, "out of memory for %zu pieces", ne + 1);
        break;
      }
      e[ne++] = b;
    }
    pcre2_match_data_free(sp.md);
  }
  if (!rc && !e && !RESERVE(e, cap, 1))
    rc = model_fail(err, MODEL_ENOMEM, "out of memory");
  if (rc) {
    free(e);
    return rc;
  }
  *ends = e;
  *n = ne;
  return 0;
}

/* ---- decoding ------------------------------------------------------------- */

int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len,
               model_err *err)
{
  if (!t || !text || !len || (!ids && n))
    return model_fail(err, MODEL_EINVAL, "tok_decode: NULL argument");
  *text = NULL;
  *len = 0;
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || (size_t)ids[i] >= t->n_vocab)
      return model_fail(err, MODEL_EINVAL,
                        "token id %d (position %zu) is out of range (vocabulary of %zu)", ids[i], i,
                        t->n_vocab);
    total += t->dec_off[ids[i] + 1] - t->dec_off[ids[i]];
  }
  char *buf = malloc(total + 1), *p = buf;
  if (!buf)
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu decoded bytes", total);
  for (size_t i = 0; i < n; i++) {
    size_t a = t->dec_off[ids[i]], b = t->dec_off[ids[i] + 1];
    memcpy(p, t->dec + a, b - a);
    p += b - a;
  }
  if (t->add_space_prefix && total > 0 && buf[0] == ' ') { /* the space encode prepended */
    memmove(buf, buf + 1, total - 1);
    total--;
  }
  buf[total] = '\0';
  *text = buf;
  *len = total;
  return 0;
}

/* ---- Hugging Face tokenizer.json ------------------------------------------ */

/* node when its "type" is type, else the first match inside node[list] (a
 * Sequence of normalizers, pre-tokenizers or processors). */
static json_t *hf_find(json_t *node, const char *list, const char *type)
{
  if (!json_is_object(node))
    return NULL;
  const char *ty = json_string_value(json_object_get(node, "type"));
  if (ty && strcmp(ty, type) == 0)
    return node;
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(node, list), i, v)
  {
    json_t *f = hf_find(v, list, type);
    if (f)
      return f;
  }
  return NULL;
}

/* The first pre-tokenizer in node (itself or inside a Sequence) whose type is
 * not allowed, or NULL if there is none. */
static const char *hf_other_pre(json_t *node, const char *allowed)
{
  if (!json_is_object(node))
    return NULL;
  const char *ty = json_string_value(json_object_get(node, "type"));
  if (!ty)
    return "(untyped)";
  if (strcmp(ty, "Sequence") != 0)
    return strcmp(ty, allowed) == 0 ? NULL : ty;
  size_t i;
  json_t *v;
  json_array_foreach(json_object_get(node, "pretokenizers"), i, v)
  {
    const char *bad = hf_other_pre(v, allowed);
    if (bad)
      return bad;
  }
  return NULL;
}

typedef struct hf_load {
  const char *path;
  tok_spec spec;
  const char **tok; /* (n_vocab) into the JSON document */
  size_t *len;
  int32_t *types;
  char **merges; /* (n_merges) malloc'd "left right" */
} hf_load;

static void hf_free(hf_load *h)
{
  for (size_t r = 0; h->merges && r < h->spec.n_merges; r++)
    free(h->merges[r]);
  free(h->merges);
  free(h->tok);
  free(h->len);
  free(h->types);
}

/* model.vocab and added_tokens -> tokens by id, with types. */
static int hf_vocab(hf_load *h, json_t *vocab, json_t *added, model_err *err)
{
  size_t n = 0, i;
  const char *key;
  json_t *v;
  json_object_foreach(vocab, key, v)
  {
    json_int_t id = json_integer_value(v);
    if (!json_is_integer(v) || id < 0 || id >= INT32_MAX)
      return model_fail(err, MODEL_ECORRUPT, "%s: vocab entry \"%.64s\" has no valid id", h->path,
                        key);
    n = (size_t)id + 1 > n ? (size_t)id + 1 : n;
  }
  if (added && !json_is_array(added))
    return model_fail(err, MODEL_ECORRUPT, "%s: added_tokens is not an array", h->path);
  json_array_foreach(added, i, v)
  {
    json_t *id = json_object_get(v, "id");
    json_int_t k = json_integer_value(id);
    if (!json_is_integer(id) || k < 0 || k >= INT32_MAX ||
        !json_is_string(json_object_get(v, "content")))
      return model_fail(err, MODEL_ECORRUPT, "%s: added_tokens[%zu] has no valid id and content",
                        h->path, i);
    n = (size_t)k + 1 > n ? (size_t)k + 1 : n;
  }
  if (n == 0)
    return model_fail(err, MODEL_ECORRUPT, "%s: the vocabulary is empty", h->path);
  h->tok = calloc(n, sizeof *h->tok);
  h->len = calloc(n, sizeof *h->len);
  h->types = calloc(n, sizeof *h->types);
  if (!h->tok || !h->len || !h->types)
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory for %zu tokens", h->path, n);
  h->spec.n_vocab = n;
  json_object_foreach(vocab, key, v)
  {
    size_t id = (size_t)json_integer_value(v);
    if (h->tok[id])
      return model_fail(err, MODEL_ECORRUPT, "%s: duplicate id %zu: \"%.64s\" and \"%.64s\"",
                        h->path, id, h->tok[id], key);
    h->tok[id] = key;
    h->len[id] = strlen(key);
    h->types[id] = TOK_TYPE_NORMAL;
  }
  json_array_foreach(added, i, v)
  {
    size_t id = (size_t)json_integer_value(json_object_get(v, "id"));
    json_t *content = json_object_get(v, "content");
    const char *s = json_string_value(content);
    size_t len = json_string_length(content);
    if (h->tok[id] && (h->len[id] != len || memcmp(h->tok[id], s, len) != 0))
      return model_fail(err, MODEL_ECORRUPT,
                        "%s: added token \"%.64s\" has id %zu, already \"%.64s\" in the vocab",
                        h->path, s, id, h->tok[id]);
    if (!h->tok[id])
      h->types[id] = TOK_TYPE_USER;
    h->tok[id] = s;
    h->len[id] = len;
    if (json_is_true(json_object_get(v, "special")))
      h->types[id] = TOK_TYPE_CONTROL;
  }
  for (size_t id = 0; id < n; id++)
    if (!h->tok[id])
      return model_fail(err, MODEL_ECORRUPT, "%s: no token has id %zu", h->path, id);
  return 0;
}

/* model.merges, as "left right" strings or [left, right] pairs. */
static int hf_merges(hf_load *h, json_t *merges, model_err *err)
{
  if (!merges)
    return 0;
  if (!json_is_array(merges))
    return model_fail(err, MODEL_ECORRUPT, "%s: model.merges is not an array", h->path);
  size_t n = json_array_size(merges), r;
  json_t *m;
  if (n && !(h->merges = calloc(n, sizeof *h->merges)))
    return model_fail(err, MODEL_ENOMEM, "%s: out of memory for %zu merges", h->path, n);
  h->spec.n_merges = n;
  json_array_foreach(merges, r, m)
  {
    json_t *a = json_array_get(m, 0), *b = json_array_get(m, 1);
    if (json_is_string(m)) {
      h->merges[r] = strdup(json_string_value(m));
    } else if (json_array_size(m) == 2 && json_is_string(a) && json_is_string(b)) {
      size_t la = json_string_length(a), lb = json_string_length(b);
      if (la == 0 || memchr(json_string_value(a) + 1, ' ', la - 1))
        return model_fail(err, MODEL_EINVAL,
                          "%s: merge %zu: left token \"%.64s\" cannot be "
                          "written as \"left right\"",
                          h->path, r, json_string_value(a));
      if ((h->merges[r] = malloc(la + lb + 2)))
        snprintf(h->merges[r], la + lb + 2, "%s %s", json_string_value(a), json_string_value(b));
    } else {
      return model_fail(err, MODEL_ECORRUPT,
                        "%s: merge %zu is neither \"left right\" nor "
                        "[left, right]",
                        h->path, r);
    }
    if (!h->merges[r])
      return model_fail(err, MODEL_ENOMEM, "%s: out of memory for merge %zu", h->path, r);
  }
  return 0;
}

/* A token by string, or -1; control_only: only among control tokens. */
static int32_t hf_token(const hf_load *h, const char *s, int control_only)
{
  size_t len = strlen(s);
  for (size_t i = 0; i < h->spec.n_vocab; i++)
    if (h->len[i] == len && memcmp(h->tok[i], s, len) == 0 &&
        (!control_only || h->types[i] == TOK_TYPE_CONTROL))
      return (int32_t)i;
  return -1;
}

/* unk from model.unk_token; BOS from a TemplateProcessing post-processor or
 * by name; EOS by name (see tok_load_hf_json). */
static int hf_special(hf_load *h, json_t *root, json_t *model, model_err *err)
{
  static const char *const bos_names[] = {"<s>", "<bos>", "<|bos|>", "<|begin_of_text|>",
                                          "<|startoftext|>"};
  static const char *const eos_names[] = {"</s>", "<eos>", "<|eos|>", "<|end_of_text|>",
                                          "<|endoftext|>"};
  tok_spec *sp = &h->spec;
  sp->bos_id = sp->eos_id = sp->unk_id = -1;
  json_t *unk = json_object_get(model, "unk_token");
  if (json_is_string(unk)) {
    sp->unk_id = hf_token(h, json_string_value(unk), 0);
    if (sp->unk_id < 0)
      return model_fail(err, MODEL_ECORRUPT, "%s: unk_token \"%.64s\" is not in the vocabulary",
                        h->path, json_string_value(unk));
    h->types[sp->unk_id] = TOK_TYPE_UNKNOWN;
  }
  json_t *tp = hf_find(json_object_get(root, "post_processor"), "processors", "TemplateProcessing");
  json_t *first = json_object_get(json_array_get(json_object_get(tp, "single"), 0), "SpecialToken");
  const char *name = json_string_value(json_object_get(first, "id"));
  if (name) {
    json_t *ids =
        json_object_get(json_object_get(json_object_get(tp, "special_tokens"), name), "ids");
    json_t *id = json_array_get(ids, 0);
    sp->bos_id = json_is_integer(id) ? (int32_t)json_integer_value(id) : hf_token(h, name, 0);
    if (sp->bos_id < 0 || (size_t)sp->bos_id >= sp->n_vocab)
      return model_fail(err, MODEL_ECORRUPT,
                        "%s: post-processor token \"%.64s\" is not in the "
                        "vocabulary",
                        h->path, name);
    sp->add_bos = 1;
  }
  for (size_t i = 0; sp->bos_id < 0 && i < sizeof bos_names / sizeof *bos_names; i++)
    sp->bos_id = hf_token(h, bos_names[i], 1);
  for (size_t i = 0; sp->eos_id < 0 && i < sizeof eos_names / sizeof *eos_names; i++)
    sp->eos_id = hf_token(h, eos_names[i], 1);
  if (sp->bos_id < 0 && sp->eos_id >= 0 && strcmp(h->tok[sp->eos_id], "<|endoftext|>") == 0)
    sp->bos_id = sp->eos_id; /* GPT-2 */
  return 0;
}

/* The kind from the pre-tokenizer, and what it implies. */
static int hf_kind(hf_load *h, json_t *root, json_t *model, model_err *err)
{
  json_t *pre = json_object_get(root, "pre_tokenizer");
  json_t *bl = hf_find(pre, "pretokenizers", "ByteLevel");
  const char *bad = hf_other_pre(pre, bl ? "ByteLevel" : "Metaspace");
  if (bad)
    return model_fail(err, MODEL_EINVAL,
                      "%s: pre-tokenizer \"%.64s\" is not supported (only "
                      "ByteLevel with GPT-2's regex, or Metaspace)",
                      h->path, bad);
  if (bl) {
    json_t *re = json_object_get(bl, "use_regex");
    if (json_is_true(json_object_get(bl, "add_prefix_space")) || json_is_false(re))
      return model_fail(err, MODEL_EINVAL,
                        "%s: ByteLevel with add_prefix_space or without "
                        "use_regex is not supported",
                        h->path);
    h->spec.kind = TOK_BPE;
    return 0;
  }
  h->spec.kind = TOK_SPM;
  json_t *prep = hf_find(json_object_get(root, "normalizer"), "normalizers", "Prepend");
  const char *with = json_string_value(json_object_get(prep, "prepend"));
  json_t *meta = hf_find(pre, "pretokenizers", "Metaspace");
  const char *scheme = json_string_value(json_object_get(meta, "prepend_scheme"));
  if (with && strcmp(with, spm_space) == 0)
    h->spec.add_space_prefix = 1;
  else if (meta && scheme)
    h->spec.add_space_prefix = strcmp(scheme, "never") != 0;
  else if (meta)
    h->spec.add_space_prefix = !json_is_false(json_object_get(meta, "add_prefix_space"));
  if (json_is_true(json_object_get(model, "byte_fallback")))
    for (size_t i = 0; i < h->spec.n_vocab; i++)
      if (h->types[i] == TOK_TYPE_NORMAL && byte_token_value(h->tok[i], h->len[i]) >= 0)
        h->types[i] = TOK_TYPE_BYTE;
  return 0;
}

static int hf_parse(hf_load *h, json_t *root, model_err *err)
{
  json_t *model = json_object_get(root, "model");
  if (!json_is_object(model))
    return model_fail(err, MODEL_ECORRUPT, "%s: no \"model\" object", h->path);
  const char *type = json_string_value(json_object_get(model, "type"));
  if (type && strcmp(type, "BPE") != 0)
    return model_fail(err, MODEL_EINVAL, "%s: model type \"%.64s\" is not supported (only BPE)",
                      h->path, type);
  json_t *vocab = json_object_get(model, "vocab");
  if (!json_is_object(vocab))
    return model_fail(err, MODEL_ECORRUPT, "%s: model has no \"vocab\" object", h->path);
  int rc = hf_vocab(h, vocab, json_object_get(root, "added_tokens"), err);
  if (!rc)
    rc = hf_merges(h, json_object_get(model, "merges"), err);
  if (!rc)
    rc = hf_special(h, root, model, err);
  if (!rc)
    rc = hf_kind(h, root, model, err);
  h->spec.tokens = h->tok;
  h->spec.token_lens = h->len;
  h->spec.types = h->types;
  h->spec.merges = (const char *const *)h->merges;
  return rc;
}

int tok_load_hf_json(const char *path, tokenizer **out, model_err *err)
{
  if (!path || !out)
    return model_fail(err, MODEL_EINVAL, "tok_load_hf_json: NULL argument");
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f)
    return model_fail(err, errno == ENOENT ? MODEL_ENOENT : MODEL_EIO, "%s: %s", path,
                      strerror(errno));
  json_error_t je;
  json_t *root = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
  fclose(f);
  if (!root)
    return model_fail(err, MODEL_ECORRUPT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
  hf_load h = {.path = path};
  int rc = hf_parse(&h, root, err);
  if (!rc && (rc = tok_new(&h.spec, out, err)) != 0 && err) {
    char msg[sizeof err->msg];
    memcpy(msg, err->msg, sizeof msg);
    model_fail(err, rc, "%s: %s", path, msg);
  }
  hf_free(&h);
  json_decref(root);
  return rc;
}

/* ---- the bytes vocabulary --------------------------------------------------- */

#define T4 TOK_TYPE_NORMAL, TOK_TYPE_NORMAL, TOK_TYPE_NORMAL, TOK_TYPE_NORMAL
#define T16 T4, T4, T4, T4
#define T64 T16, T16, T16, T16
static const int32_t bytes_types[TOK_BYTES_N_VOCAB] = {
    T64, T64, T64, T64, TOK_TYPE_CONTROL, TOK_TYPE_CONTROL};
#undef T4
#undef T16
#undef T64

int tok_bytes_spec(tok_spec *spec)
{
  *spec = (tok_spec){
      .kind = TOK_BPE,
      .n_vocab = TOK_BYTES_N_VOCAB,
      .tokens = byte_str,
      .types = bytes_types,
      .bos_id = 256,
      .eos_id = 257,
      .unk_id = -1,
      .add_bos = 1,
  };
  return 0;
}
