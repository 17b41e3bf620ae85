/* model: reading and writing GGUF checkpoints (llama.cpp's names and
 * metadata keys), so files zotune writes load in llama.cpp and files
 * llama.cpp's converters write load here. */
#include "model/load.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "model/gguf.h"
#include "model/hf.h"
#include "model/tokenizer.h"

static int get_hp(const gguf *g, const char *arch, const char *what, int64_t *out, int required,
                  model_err *err)
{
  char key[128];
  snprintf(key, sizeof key, "%s.%s", arch, what);
  int rv = gguf_get_int(g, key, out, err);
  if (rv == MODEL_ENOENT && !required)
    return 1;
  if (rv == MODEL_ENOENT)
    return model_fail(err, MODEL_EMISMATCH, "%s: metadata key %s missing", gguf_label(g), key);
  return rv;
}

static int get_hpf(const gguf *g, const char *arch, const char *what, double *out, double dflt,
                   model_err *err)
{
  char key[128];
  snprintf(key, sizeof key, "%s.%s", arch, what);
  int rv = gguf_get_float(g, key, out, err);
  if (rv == MODEL_ENOENT) {
    *out = dflt;
    return 0;
  }
  return rv;
}

/* Reads the architecture and hyper-parameters into cfg. */
static int read_config(const gguf *g, model_config *cfg, model_err *err)
{
  const char *s;
  size_t len;
  int64_t v;
  double f;
  int rv;
  memset(cfg, 0, sizeof *cfg);
  if ((rv = gguf_get_str(g, "general.architecture", &s, &len, err)) != 0)
    return rv == MODEL_ENOENT ? model_fail(err, MODEL_EMISMATCH,
                                           "%s: metadata key general.architecture missing",
                                           gguf_label(g))
                              : rv;
  if (len >= sizeof cfg->name)
    len = sizeof cfg->name - 1;
  memcpy(cfg->name, s, len);
  if (strcmp(cfg->name, "gpt2") == 0) {
    cfg->arch = MODEL_GPT2;
  } else if (strcmp(cfg->name, "llama") == 0) {
    cfg->arch = MODEL_LLAMA;
    cfg->rope = MODEL_ROPE_INTERLEAVED;
  } else if (strcmp(cfg->name, "qwen2") == 0) {
    cfg->arch = MODEL_LLAMA;
    cfg->rope = MODEL_ROPE_HALF;
  } else {
    return model_fail(err, MODEL_EINVAL,
                      "%s: architecture \"%s\" not supported (gpt2, llama, qwen2)", gguf_label(g),
                      cfg->name);
  }
  const char *a = cfg->name;
  struct {
    const char *key;
    int *dst;
    int required;
  } ints[] = {{"block_count", &cfg->n_layer, 1},
              {"embedding_length", &cfg->n_embd, 1},
              {"attention.head_count", &cfg->n_head, 1},
              {"attention.head_count_kv", &cfg->n_kv_head, 0},
              {"feed_forward_length", &cfg->n_ff, 1},
              {"context_length", &cfg->n_ctx, 1}};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
    rv = get_hp(g, a, ints[i].key, &v, ints[i].required, err);
    if (rv < 0)
      return rv;
    if (rv == 1)
      continue;
    if (v < 1 || v > (1 << 24))
      return model_fail(err, MODEL_ECORRUPT, "%s: %s.%s = %lld out of range", gguf_label(g), a,
                        ints[i].key, (long long)v);
    *ints[i].dst = (int)v;
  }
  if (!cfg->n_kv_head)
    cfg->n_kv_head = cfg->n_head;
  if ((rv = get_hpf(g, a,
                    cfg->arch == MODEL_GPT2 ? "attention.layer_norm_epsilon"
                                            : "attention.layer_norm_rms_epsilon",
                    &f, 1e-5, err)) != 0)
    return rv;
  cfg->norm_eps = (float)f;
  if ((rv = get_hpf(g, a, "rope.freq_base", &f, 10000.0, err)) != 0)
    return rv;
  cfg->rope_theta = (float)f;
  const gguf_tensor *te = gguf_find_tensor(g, "token_embd.weight");
  if (!te)
    return model_fail(err, MODEL_EMISMATCH, "%s: tensor token_embd.weight missing",
                      gguf_label(g));
  if (te->n_dims != 2 || te->dims[0] != (uint64_t)cfg->n_embd || te->dims[1] > (1u << 24))
    return model_fail(err, MODEL_EMISMATCH,
                      "%s: token_embd.weight has dims [%llu, %llu], expected [%d, vocab]",
                      gguf_label(g), (unsigned long long)te->dims[0],
                      (unsigned long long)te->dims[1], cfg->n_embd);
  cfg->n_vocab = (int)te->dims[1];
  cfg->tied = gguf_find_tensor(g, "output.weight") == NULL;
  cfg->qkv_bias = cfg->arch == MODEL_LLAMA && gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
  return 0;
}

static int read_tensors(const gguf *g, model *m, model_err *err)
{
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *t = &m->tensors[i];
    const gguf_tensor *gt = gguf_find_tensor(g, t->name);
    if (!gt)
      return model_fail(err, MODEL_EMISMATCH, "%s: tensor %s missing", gguf_label(g), t->name);
    uint64_t want0 = t->n_dims == 2 ? (uint64_t)t->shape[1] : (uint64_t)t->shape[0];
    uint64_t want1 = t->n_dims == 2 ? (uint64_t)t->shape[0] : 1;
    int ok = gt->dims[0] == want0 && gt->dims[1] == want1 && gt->dims[2] == 1 && gt->dims[3] == 1;
    if (!ok)
      return model_fail(err, MODEL_EMISMATCH,
                        "%s: tensor %s has dims [%llu, %llu, %llu, %llu], expected [%llu, %llu]",
                        gguf_label(g), t->name, (unsigned long long)gt->dims[0],
                        (unsigned long long)gt->dims[1], (unsigned long long)gt->dims[2],
                        (unsigned long long)gt->dims[3], (unsigned long long)want0,
                        (unsigned long long)want1);
    int rv = gguf_tensor_to_f32(g, gt, m->params + t->offset, err);
    if (rv != 0)
      return rv;
    gguf_tensor_done(g, gt); /* peak memory: the parameters, not parameters + file */
  }
  return 0;
}

/* Builds the tokenizer from tokenizer.ggml.* metadata; absent = no tokenizer. */
static int read_tokenizer(const gguf *g, model *m, model_err *err)
{
  const char *s;
  size_t len;
  enum gguf_vtype et;
  uint64_t n = 0, nm = 0;
  int rv;
  if (!gguf_has_key(g, "tokenizer.ggml.model"))
    return 0;
  if ((rv = gguf_get_str(g, "tokenizer.ggml.model", &s, &len, err)) != 0)
    return rv;
  tok_spec spec;
  memset(&spec, 0, sizeof spec);
  if (len == 4 && memcmp(s, "gpt2", 4) == 0)
    spec.kind = TOK_BPE;
  else if (len == 5 && memcmp(s, "llama", 5) == 0)
    spec.kind = TOK_SPM;
  else
    return model_fail(err, MODEL_EINVAL, "%s: tokenizer.ggml.model \"%.*s\" not supported "
                                         "(gpt2, llama)", gguf_label(g), (int)len, s);
  if ((rv = gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n, err)) != 0)
    return rv == MODEL_ENOENT ? model_fail(err, MODEL_EMISMATCH,
                                           "%s: tokenizer.ggml.tokens missing", gguf_label(g))
                              : rv;
  if (gguf_has_key(g, "tokenizer.ggml.merges") &&
      (rv = gguf_get_arr(g, "tokenizer.ggml.merges", &et, &nm, err)) != 0)
    return rv;
  const char **tokens = calloc(n ? n : 1, sizeof *tokens);
  size_t *lens = calloc(n ? n : 1, sizeof *lens);
  float *scores = gguf_has_key(g, "tokenizer.ggml.scores") ? calloc(n ? n : 1, sizeof *scores)
                                                           : NULL;
  int32_t *types = gguf_has_key(g, "tokenizer.ggml.token_type")
                       ? calloc(n ? n : 1, sizeof *types)
                       : NULL;
  char **merges = calloc(nm ? nm : 1, sizeof *merges);
  rv = !tokens || !lens || !merges ? model_fail(err, MODEL_ENOMEM, "out of memory") : 0;
  for (uint64_t i = 0; rv == 0 && i < n; i++) {
    rv = gguf_arr_str(g, "tokenizer.ggml.tokens", i, &tokens[i], &lens[i], err);
    double f;
    int64_t t;
    if (rv == 0 && scores && (rv = gguf_arr_float(g, "tokenizer.ggml.scores", i, &f, err)) == 0)
      scores[i] = (float)f;
    if (rv == 0 && types && (rv = gguf_arr_int(g, "tokenizer.ggml.token_type", i, &t, err)) == 0)
      types[i] = (int32_t)t;
  }
  for (uint64_t i = 0; rv == 0 && i < nm; i++) {
    rv = gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &len, err);
    if (rv == 0 && !(merges[i] = strndup(s, len)))
      rv = model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  if (rv == 0) {
    int64_t id;
    spec.n_vocab = (size_t)n;
    spec.tokens = tokens;
    spec.token_lens = lens;
    spec.scores = scores;
    spec.types = types;
    spec.n_merges = (size_t)nm;
    spec.merges = (const char *const *)merges;
    spec.bos_id = gguf_get_int(g, "tokenizer.ggml.bos_token_id", &id, NULL) == 0 ? (int32_t)id : -1;
    spec.eos_id = gguf_get_int(g, "tokenizer.ggml.eos_token_id", &id, NULL) == 0 ? (int32_t)id : -1;
    spec.unk_id =
        gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &id, NULL) == 0 ? (int32_t)id : -1;
    int b = spec.kind == TOK_SPM;
    gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, NULL);
    spec.add_bos = b;
    spec.add_space_prefix = spec.kind == TOK_SPM;
    if (gguf_has_key(g, "tokenizer.ggml.add_space_prefix") &&
        gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b, NULL) == 0)
      spec.add_space_prefix = b;
    rv = tok_new(&spec, &m->tok, err);
  }
  for (uint64_t i = 0; merges && i < nm; i++)
    free(merges[i]);
  free(merges);
  free(tokens);
  free(lens);
  free(scores);
  free(types);
  return rv;
}

int model_load_gguf(const char *path, model **out, model_err *err)
{
  gguf *g;
  model_config cfg;
  model *m = NULL;
  int rv = gguf_open(path, &g, err);
  if (rv != 0)
    return rv;
  if ((rv = read_config(g, &cfg, err)) == 0 && (rv = model_new(&cfg, &m, err)) == 0 &&
      (rv = read_tensors(g, m, err)) == 0)
    rv = read_tokenizer(g, m, err);
  gguf_close(g);
  if (rv != 0) {
    model_free(m);
    return rv;
  }
  *out = m;
  return 0;
}

static int put_tokenizer(gguf_writer *w, const tok_spec *s)
{
  int rv = gguf_writer_set_str(w, "tokenizer.ggml.model", s->kind == TOK_SPM ? "llama" : "gpt2");
  if (rv == 0)
    rv = gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", s->tokens, s->n_vocab);
  if (rv == 0 && s->scores)
    rv = gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", s->scores, s->n_vocab);
  if (rv == 0 && s->types)
    rv = gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", s->types, s->n_vocab);
  if (rv == 0 && s->kind == TOK_BPE)
    rv = gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", s->merges, s->n_merges);
  if (rv == 0 && s->bos_id >= 0)
    rv = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)s->bos_id);
  if (rv == 0 && s->eos_id >= 0)
    rv = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)s->eos_id);
  if (rv == 0 && s->unk_id >= 0)
    rv = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)s->unk_id);
  if (rv == 0)
    rv = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", s->add_bos);
  if (rv == 0 && s->kind == TOK_SPM)
    rv = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", s->add_space_prefix);
  return rv;
}

int model_save_gguf(const model *m, const tok_spec *spec, const char *path, uint32_t dtype,
                    model_err *err)
{
  const model_config *c = &m->cfg;
  const char *a = c->arch == MODEL_GPT2                              ? "gpt2"
                  : c->rope == MODEL_ROPE_HALF && c->qkv_bias          ? "qwen2"
                  : c->rope == MODEL_ROPE_INTERLEAVED && c->qkv_bias ? NULL
                                                                       : "llama";
  if (!a)
    return model_fail(err, MODEL_EINVAL, "%s: GGUF has no architecture for interleaved RoPE with "
                                         "q/k/v biases", path);
  char key[128];
  int rv = 0;
  if (dtype != GGML_F32 && dtype != GGML_F16 && dtype != GGML_BF16)
    return model_fail(err, MODEL_EINVAL, "%s: storage type %u not supported (F32, F16, BF16)",
                      path, dtype);
  gguf_writer *w = gguf_writer_new();
  if (!w)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  struct {
    const char *k;
    uint32_t v;
  } hp[] = {{"context_length", (uint32_t)c->n_ctx},
            {"embedding_length", (uint32_t)c->n_embd},
            {"block_count", (uint32_t)c->n_layer},
            {"feed_forward_length", (uint32_t)c->n_ff},
            {"attention.head_count", (uint32_t)c->n_head},
            {"attention.head_count_kv", (uint32_t)c->n_kv_head}};
  rv = gguf_writer_set_str(w, "general.architecture", a);
  if (rv == 0)
    rv = gguf_writer_set_str(w, "general.name", "zotune");
  if (rv == 0)
    rv = gguf_writer_set_u32(w, "general.file_type", dtype == GGML_F32 ? 0 : dtype == GGML_F16 ? 1 : 32);
  for (size_t i = 0; rv == 0 && i < sizeof hp / sizeof hp[0]; i++) {
    if (c->arch == MODEL_GPT2 && strcmp(hp[i].k, "attention.head_count_kv") == 0)
      continue;
    snprintf(key, sizeof key, "%s.%s", a, hp[i].k);
    rv = gguf_writer_set_u32(w, key, hp[i].v);
  }
  if (rv == 0) {
    snprintf(key, sizeof key, "%s.%s", a,
             c->arch == MODEL_GPT2 ? "attention.layer_norm_epsilon"
                                   : "attention.layer_norm_rms_epsilon");
    rv = gguf_writer_set_f32(w, key, c->norm_eps);
  }
  if (rv == 0 && c->arch == MODEL_LLAMA) {
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    rv = gguf_writer_set_f32(w, key, c->rope_theta);
  }
  if (rv == 0 && spec)
    rv = put_tokenizer(w, spec);
  /* GGUF "llama" means interleaved RoPE: a half-split (Hugging Face) Llama
   * gets its q/k rows permuted the way llama.cpp's converter does, so the
   * file computes the same function. */
  int permute = c->arch == MODEL_LLAMA && c->rope == MODEL_ROPE_HALF && strcmp(a, "llama") == 0;
  float *tmp = NULL;
  for (int i = 0; rv == 0 && i < m->n_tensors; i++) {
    const model_tensor *t = &m->tensors[i];
    uint64_t dims[2] = {(uint64_t)(t->n_dims == 2 ? t->shape[1] : t->shape[0]),
                        (uint64_t)t->shape[0]};
    const float *data = m->params + t->offset;
    size_t ln = strlen(t->name);
    if (permute && ln > 13 && (strstr(t->name, ".attn_q.") || strstr(t->name, ".attn_k."))) {
      int hd = c->n_embd / c->n_head, rows = (int)t->shape[0];
      size_t cols = t->n_dims == 2 ? (size_t)t->shape[1] : 1;
      free(tmp);
      if (!(tmp = malloc(t->n * sizeof *tmp))) {
        rv = MODEL_ENOMEM;
        break;
      }
      for (int h = 0; h < rows / hd; h++)
        for (int j = 0; j < hd / 2; j++) {
          memcpy(tmp + ((size_t)h * hd + 2 * j) * cols, data + ((size_t)h * hd + j) * cols,
                 cols * sizeof *tmp);
          memcpy(tmp + ((size_t)h * hd + 2 * j + 1) * cols,
                 data + ((size_t)h * hd + j + hd / 2) * cols, cols * sizeof *tmp);
        }
      data = tmp;
    }
    rv = gguf_writer_add_tensor(w, t->name, (uint32_t)t->n_dims, dims,
                                t->n_dims == 2 ? dtype : GGML_F32, data);
  }
  free(tmp);
  if (rv != 0)
    rv = model_fail(err, rv, "%s: cannot build the GGUF metadata (code %d)", path, rv);
  else
    rv = gguf_writer_write(w, path, err);
  gguf_writer_free(w);
  return rv;
}

int model_load(const char *path, model **out, model_err *err)
{
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return model_load_hf(path, out, err);
  return model_load_gguf(path, out, err);
}
