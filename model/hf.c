/* model hf: Hugging Face folders (hf.h). config.json gives the family and
 * sizes; each tensor of the model's canonical layout (model.c, GGUF names) is
 * then looked up under its HF name in the safetensors file or shards. Every
 * tensor of the files must be used, or be one of the buffers HF saves beside
 * the weights, so a checkpoint with parts this model lacks (an o_proj bias,
 * MLP biases) is an error rather than a silently different network.
 *
 * No RoPE permutation: HF stores q/k rows for half-split ("rotate_half") RoPE
 * and the model runs them that way (MODEL_ROPE_HALF). */
#include "model/hf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/safetensors.h"
#include "model/tokenizer.h"

#define PATH_CAP 4096

/* ---- JSON files ---------------------------------------------------------------- */

static int load_json(const char *path, json_t **out, model_err *err)
{
  FILE *f = fopen(path, "rb");
  if (!f) {
    int e = errno;
    return model_fail(err, e == ENOENT ? MODEL_ENOENT : MODEL_EIO, "%s: %s", path, strerror(e));
  }
  json_error_t je;
  *out = json_loadf(f, JSON_REJECT_DUPLICATES, &je);
  fclose(f);
  if (!*out)
    return model_fail(err, MODEL_ECORRUPT, "%s:%d:%d: %s", path, je.line, je.column, je.text);
  if (!json_is_object(*out)) {
    json_decref(*out);
    *out = NULL;
    return model_fail(err, MODEL_ECORRUPT, "%s: not a JSON object", path);
  }
  return 0;
}

static int join(char *buf, const char *dir, const char *name, model_err *err)
{
  if (snprintf(buf, PATH_CAP, "%s/%s", dir, name) >= PATH_CAP)
    return model_fail(err, MODEL_EINVAL, "%s/%s: path too long", dir, name);
  return 0;
}

static int exists(const char *path)
{
  struct stat sb;
  return stat(path, &sb) == 0;
}

/* ---- config.json ----------------------------------------------------------------- */

typedef struct cfgfile {
  json_t *root;
  const char *path;
  model_err *err;
} cfgfile;

/* An integer in 1 .. 2^24. Absent or null: dflt, or an error if dflt < 0. */
static int cfg_int(const cfgfile *c, const char *key, int dflt, int *out)
{
  json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v)) {
    if (dflt < 0)
      return model_fail(c->err, MODEL_EMISMATCH, "%s: key %s missing", c->path, key);
    *out = dflt;
    return 0;
  }
  if (!json_is_integer(v))
    return model_fail(c->err, MODEL_ECORRUPT, "%s: key %s is not an integer", c->path, key);
  json_int_t x = json_integer_value(v);
  if (x < 1 || x > (1 << 24))
    return model_fail(c->err, MODEL_ECORRUPT, "%s: key %s = %lld out of range", c->path, key,
                      (long long)x);
  *out = (int)x;
  return 0;
}

static int cfg_num(const cfgfile *c, const char *key, double dflt, double *out)
{
  json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_number(v))
    return model_fail(c->err, MODEL_ECORRUPT, "%s: key %s is not a number", c->path, key);
  *out = json_number_value(v);
  return 0;
}

static int cfg_bool(const cfgfile *c, const char *key, int dflt, int *out)
{
  json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v)) {
    *out = dflt;
    return 0;
  }
  if (!json_is_boolean(v))
    return model_fail(c->err, MODEL_ECORRUPT, "%s: key %s is not true or false", c->path, key);
  *out = json_is_true(v);
  return 0;
}

/* A string key, if present, must be one of the allowed values (NULL-ended). */
static int cfg_only(const cfgfile *c, const char *key, const char *const *allowed)
{
  json_t *v = json_object_get(c->root, key);
  if (!v || json_is_null(v))
    return 0;
  for (size_t i = 0; json_is_string(v) && allowed[i]; i++)
    if (strcmp(json_string_value(v), allowed[i]) == 0)
      return 0;
  return model_fail(c->err, MODEL_EINVAL, "%s: %s = %.64s not supported (%s)", c->path, key,
                    json_is_string(v) ? json_string_value(v) : "(not a string)", allowed[0]);
}

enum hf_family { HF_LLAMA, HF_MISTRAL, HF_QWEN2, HF_GPT2 };

/* The family from "architectures" (first entry) or, failing that,
 * "model_type". */
static int cfg_family(const cfgfile *c, enum hf_family *fam)
{
  static const struct {
    const char *cls, *type;
    enum hf_family fam;
  } known[] = {{"LlamaForCausalLM", "llama", HF_LLAMA},
               {"MistralForCausalLM", "mistral", HF_MISTRAL},
               {"Qwen2ForCausalLM", "qwen2", HF_QWEN2},
               {"GPT2LMHeadModel", "gpt2", HF_GPT2}};
  json_t *archs = json_object_get(c->root, "architectures");
  json_t *type = json_object_get(c->root, "model_type");
  const char *key = "architectures", *s = NULL;
  int by_class = 1;
  if (json_is_array(archs) && json_array_size(archs) > 0) {
    s = json_string_value(json_array_get(archs, 0));
  } else if (json_is_string(type)) {
    key = "model_type";
    s = json_string_value(type);
    by_class = 0;
  } else {
    return model_fail(c->err, MODEL_EMISMATCH, "%s: key architectures (or model_type) missing",
                      c->path);
  }
  for (size_t i = 0; s && i < sizeof known / sizeof known[0]; i++) {
    if (strcmp(s, by_class ? known[i].cls : known[i].type) == 0) {
      *fam = known[i].fam;
      return 0;
    }
  }
  return model_fail(c->err, MODEL_EINVAL,
                    "%s: %s \"%.64s\" not supported (LlamaForCausalLM, MistralForCausalLM, "
                    "Qwen2ForCausalLM, GPT2LMHeadModel)",
                    c->path, key, s ? s : "(not a string)");
}

/* Only the plain rotary embedding: rope_scaling null, or of type "default". */
static int cfg_rope_scaling(const cfgfile *c)
{
  json_t *v = json_object_get(c->root, "rope_scaling");
  if (!v || json_is_null(v))
    return 0;
  json_t *t = json_object_get(v, "rope_type");
  if (!t)
    t = json_object_get(v, "type");
  const char *s = json_string_value(t);
  if (s && strcmp(s, "default") == 0)
    return 0;
  return model_fail(c->err, MODEL_EINVAL, "%s: rope_scaling (type %.64s) not supported", c->path,
                    s ? s : "?");
}

static int cfg_llama(const cfgfile *c, enum hf_family fam, model_config *cfg)
{
  static const char *const silu[] = {"silu", NULL};
  const int ctx_default = fam == HF_QWEN2 ? 32768 : fam == HF_MISTRAL ? 131072 : 2048;
  int rc, head_dim, bias, mlp_bias, use_window = fam == HF_MISTRAL, window = 0;
  double eps, theta;
  cfg->arch = MODEL_LLAMA;
  cfg->rope = MODEL_ROPE_HALF;
  snprintf(cfg->name, sizeof cfg->name, "%s", fam == HF_QWEN2 ? "qwen2" : "llama");
  if ((rc = cfg_int(c, "hidden_size", -1, &cfg->n_embd)) ||
      (rc = cfg_int(c, "intermediate_size", -1, &cfg->n_ff)) ||
      (rc = cfg_int(c, "num_hidden_layers", -1, &cfg->n_layer)) ||
      (rc = cfg_int(c, "num_attention_heads", -1, &cfg->n_head)) ||
      (rc = cfg_int(c, "vocab_size", -1, &cfg->n_vocab)) ||
      (rc = cfg_int(c, "num_key_value_heads", cfg->n_head, &cfg->n_kv_head)) ||
      (rc = cfg_int(c, "max_position_embeddings", ctx_default, &cfg->n_ctx)) ||
      (rc = cfg_int(c, "head_dim", cfg->n_embd / cfg->n_head, &head_dim)) ||
      (rc = cfg_num(c, "rms_norm_eps", 1e-6, &eps)) ||
      (rc = cfg_num(c, "rope_theta", 10000.0, &theta)) ||
      (rc = cfg_bool(c, "tie_word_embeddings", 0, &cfg->tied)) ||
      (rc = cfg_bool(c, "attention_bias", 0, &bias)) ||
      (rc = cfg_bool(c, "mlp_bias", 0, &mlp_bias)) || (rc = cfg_only(c, "hidden_act", silu)) ||
      (rc = cfg_rope_scaling(c)))
    return rc;
  if (head_dim * cfg->n_head != cfg->n_embd)
    return model_fail(c->err, MODEL_EINVAL,
                      "%s: head_dim %d times num_attention_heads %d is not hidden_size %d: not "
                      "supported",
                      c->path, head_dim, cfg->n_head, cfg->n_embd);
  if (mlp_bias)
    return model_fail(c->err, MODEL_EINVAL, "%s: mlp_bias true not supported", c->path);
  cfg->norm_eps = (float)eps;
  cfg->rope_theta = (float)theta;
  cfg->qkv_bias = fam == HF_QWEN2 || bias;
  /* Within the sliding window, windowed attention is full attention: keep
   * sequences inside it rather than implement the window. */
  if (fam == HF_QWEN2 && (rc = cfg_bool(c, "use_sliding_window", 0, &use_window)) != 0)
    return rc;
  if (use_window && (rc = cfg_int(c, "sliding_window", 0, &window)) != 0)
    return rc;
  if (window > 0 && window < cfg->n_ctx)
    cfg->n_ctx = window;
  return 0;
}

static int cfg_gpt2(const cfgfile *c, model_config *cfg)
{
  static const char *const gelu_tanh[] = {"gelu_new", "gelu_pytorch_tanh", NULL};
  int rc, scale, by_layer;
  double eps;
  cfg->arch = MODEL_GPT2;
  snprintf(cfg->name, sizeof cfg->name, "gpt2");
  if ((rc = cfg_int(c, "n_embd", -1, &cfg->n_embd)) ||
      (rc = cfg_int(c, "n_layer", -1, &cfg->n_layer)) ||
      (rc = cfg_int(c, "n_head", -1, &cfg->n_head)) ||
      (rc = cfg_int(c, "n_positions", -1, &cfg->n_ctx)) ||
      (rc = cfg_int(c, "vocab_size", -1, &cfg->n_vocab)) ||
      (rc = cfg_int(c, "n_inner", 4 * cfg->n_embd, &cfg->n_ff)) ||
      (rc = cfg_num(c, "layer_norm_epsilon", 1e-5, &eps)) ||
      (rc = cfg_bool(c, "tie_word_embeddings", 1, &cfg->tied)) ||
      (rc = cfg_bool(c, "scale_attn_weights", 1, &scale)) ||
      (rc = cfg_bool(c, "scale_attn_by_inverse_layer_idx", 0, &by_layer)) ||
      (rc = cfg_only(c, "activation_function", gelu_tanh)))
    return rc;
  if (!scale || by_layer)
    return model_fail(c->err, MODEL_EINVAL,
                      "%s: attention scaling other than 1/sqrt(head size) not supported "
                      "(scale_attn_weights, scale_attn_by_inverse_layer_idx)",
                      c->path);
  cfg->n_kv_head = cfg->n_head;
  cfg->norm_eps = (float)eps;
  cfg->rope_theta = 10000.0f;
  return 0;
}

static int read_config(const char *path, model_config *cfg, enum hf_family *fam, model_err *err)
{
  cfgfile c = {NULL, path, err};
  *fam = HF_LLAMA;
  int rc = load_json(path, &c.root, err);
  if (rc != 0)
    return rc;
  memset(cfg, 0, sizeof *cfg);
  if ((rc = cfg_family(&c, fam)) == 0)
    rc = *fam == HF_GPT2 ? cfg_gpt2(&c, cfg) : cfg_llama(&c, *fam, cfg);
  json_decref(c.root);
  return rc;
}

/* ---- weights: one file or shards ------------------------------------------------ */

typedef struct shard {
  safetensors *st;
  uint8_t *used; /* per tensor: read into the model, or knowingly skipped */
} shard;

typedef struct weights {
  char where[PATH_CAP]; /* model.safetensors or the index, for messages */
  shard *sh;
  size_t n_sh;
} weights;

static void weights_close(weights *w)
{
  for (size_t i = 0; i < w->n_sh; i++) {
    st_close(w->sh[i].st);
    free(w->sh[i].used);
  }
  free(w->sh);
  w->sh = NULL;
  w->n_sh = 0;
}

static int add_shard(weights *w, const char *path, model_err *err)
{
  shard *s = &w->sh[w->n_sh];
  int rc = st_open(path, &s->st, err);
  if (rc != 0)
    return rc;
  w->n_sh++;
  if (!(s->used = calloc(st_n_tensors(s->st) + 1, 1)))
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  return 0;
}

/* A shard name from the index: relative, inside the folder. */
static int safe_name(const char *s)
{
  if (!*s || *s == '/')
    return 0;
  for (const char *p = s; *p; p = strchr(p, '/') ? strchr(p, '/') + 1 : p + strlen(p))
    if (strncmp(p, "..", 2) == 0 && (p[2] == '/' || p[2] == '\0'))
      return 0;
  return 1;
}

/* Opens every file the index's weight_map names, once, and checks that each
 * file holds the tensors the map assigns to it. */
static int open_index(const char *dir, weights *w, model_err *err)
{
  json_t *root, *map, *v;
  const char *name, **files = NULL;
  size_t n_files = 0;
  char path[PATH_CAP];
  int rc = load_json(w->where, &root, err);
  if (rc != 0)
    return rc;
  map = json_object_get(root, "weight_map");
  if (!json_is_object(map)) {
    rc = model_fail(err, MODEL_ECORRUPT, "%s: key weight_map missing or not an object", w->where);
    goto out;
  }
  files = calloc(json_object_size(map) + 1, sizeof *files);
  w->sh = calloc(json_object_size(map) + 1, sizeof *w->sh);
  if (!files || !w->sh) {
    rc = model_fail(err, MODEL_ENOMEM, "out of memory");
    goto out;
  }
  json_object_foreach(map, name, v)
  {
    const char *f = json_string_value(v);
    size_t k = 0;
    if (!f || !safe_name(f)) {
      rc = model_fail(err, MODEL_ECORRUPT,
                      "%s: weight_map entry for %.96s is not a file name inside the folder",
                      w->where, name);
      goto out;
    }
    while (k < n_files && strcmp(files[k], f) != 0)
      k++;
    if (k == n_files) {
      files[n_files++] = f;
      if ((rc = join(path, dir, f, err)) != 0 || (rc = add_shard(w, path, err)) != 0)
        goto out;
    }
    if (!st_find(w->sh[k].st, name)) {
      rc = model_fail(err, MODEL_ECORRUPT,
                      "%s: weight_map puts tensor %.96s in %s, which does not hold it", w->where,
                      name, f);
      goto out;
    }
  }
  if (n_files == 0)
    rc = model_fail(err, MODEL_ECORRUPT, "%s: weight_map is empty", w->where);
out:
  free(files);
  json_decref(root);
  return rc;
}

/* model.safetensors if present (as transformers prefers), else the index.
 * A tensor in two shards is an error: which one counts would be a guess. */
static int open_weights(const char *dir, weights *w, model_err *err)
{
  int rc;
  memset(w, 0, sizeof *w);
  if ((rc = join(w->where, dir, "model.safetensors", err)) != 0)
    return rc;
  if (exists(w->where)) {
    if (!(w->sh = calloc(1, sizeof *w->sh)))
      return model_fail(err, MODEL_ENOMEM, "out of memory");
    return add_shard(w, w->where, err);
  }
  if ((rc = join(w->where, dir, "model.safetensors.index.json", err)) != 0)
    return rc;
  if (!exists(w->where))
    return model_fail(err, MODEL_ENOENT,
                      "%s: neither model.safetensors nor model.safetensors.index.json found", dir);
  if ((rc = open_index(dir, w, err)) != 0)
    return rc;
  for (size_t i = 1; i < w->n_sh; i++) {
    for (size_t k = 0; k < st_n_tensors(w->sh[i].st); k++) {
      const char *name = st_tensor_at(w->sh[i].st, k)->name;
      for (size_t j = 0; j < i; j++)
        if (st_find(w->sh[j].st, name))
          return model_fail(err, MODEL_ECORRUPT, "%s: tensor %.96s is in both %s and %s", w->where,
                            name, st_label(w->sh[j].st), st_label(w->sh[i].st));
    }
  }
  return 0;
}

static const st_tensor *find(const weights *w, const char *name, shard **where)
{
  for (size_t i = 0; i < w->n_sh; i++) {
    const st_tensor *t = st_find(w->sh[i].st, name);
    if (t) {
      *where = &w->sh[i];
      return t;
    }
  }
  return NULL;
}

static void mark_used(shard *s, const st_tensor *t)
{
  s->used[t - st_tensor_at(s->st, 0)] = 1;
}

/* ---- names ------------------------------------------------------------------------ */

typedef struct name_map {
  const char *gguf, *hf;
  int conv1d; /* GPT-2 Conv1D: stored (in, out), the model holds (out, in) */
} name_map;

static const name_map llama_top[] = {{"token_embd.weight", "model.embed_tokens.weight", 0},
                                     {"output_norm.weight", "model.norm.weight", 0},
                                     {"output.weight", "lm_head.weight", 0},
                                     {NULL, NULL, 0}};
static const name_map llama_block[] = {{"attn_norm.weight", "input_layernorm.weight", 0},
                                       {"attn_q.weight", "self_attn.q_proj.weight", 0},
                                       {"attn_q.bias", "self_attn.q_proj.bias", 0},
                                       {"attn_k.weight", "self_attn.k_proj.weight", 0},
                                       {"attn_k.bias", "self_attn.k_proj.bias", 0},
                                       {"attn_v.weight", "self_attn.v_proj.weight", 0},
                                       {"attn_v.bias", "self_attn.v_proj.bias", 0},
                                       {"attn_output.weight", "self_attn.o_proj.weight", 0},
                                       {"ffn_norm.weight", "post_attention_layernorm.weight", 0},
                                       {"ffn_gate.weight", "mlp.gate_proj.weight", 0},
                                       {"ffn_up.weight", "mlp.up_proj.weight", 0},
                                       {"ffn_down.weight", "mlp.down_proj.weight", 0},
                                       {NULL, NULL, 0}};
static const name_map gpt2_top[] = {
    {"token_embd.weight", "wte.weight", 0},   {"position_embd.weight", "wpe.weight", 0},
    {"output_norm.weight", "ln_f.weight", 0}, {"output_norm.bias", "ln_f.bias", 0},
    {"output.weight", "lm_head.weight", 0},   {NULL, NULL, 0}};
static const name_map gpt2_block[] = {{"attn_norm.weight", "ln_1.weight", 0},
                                      {"attn_norm.bias", "ln_1.bias", 0},
                                      {"attn_qkv.weight", "attn.c_attn.weight", 1},
                                      {"attn_qkv.bias", "attn.c_attn.bias", 0},
                                      {"attn_output.weight", "attn.c_proj.weight", 1},
                                      {"attn_output.bias", "attn.c_proj.bias", 0},
                                      {"ffn_norm.weight", "ln_2.weight", 0},
                                      {"ffn_norm.bias", "ln_2.bias", 0},
                                      {"ffn_up.weight", "mlp.c_fc.weight", 1},
                                      {"ffn_up.bias", "mlp.c_fc.bias", 0},
                                      {"ffn_down.weight", "mlp.c_proj.weight", 1},
                                      {"ffn_down.bias", "mlp.c_proj.bias", 0},
                                      {NULL, NULL, 0}};

static const name_map *lookup(const name_map *tab, const char *gguf)
{
  for (; tab->gguf; tab++)
    if (strcmp(tab->gguf, gguf) == 0)
      return tab;
  return NULL;
}

/* The HF name of a model tensor (GPT-2: without the "transformer." prefix)
 * and whether it is a Conv1D weight; -1 if the table lacks it (a bug). */
static int hf_name(enum model_arch arch, const char *gguf, char *out, size_t cap, int *conv1d)
{
  const int gpt2 = arch == MODEL_GPT2;
  const name_map *e;
  int layer, pos = 0;
  if (sscanf(gguf, "blk.%d.%n", &layer, &pos) == 1 && pos > 0) {
    if (!(e = lookup(gpt2 ? gpt2_block : llama_block, gguf + pos)))
      return -1;
    snprintf(out, cap, gpt2 ? "h.%d.%s" : "model.layers.%d.%s", layer, e->hf);
  } else {
    if (!(e = lookup(gpt2 ? gpt2_top : llama_top, gguf)))
      return -1;
    snprintf(out, cap, "%s", e->hf);
  }
  *conv1d = e->conv1d;
  return 0;
}

/* Buffers HF checkpoints save beside the weights, and a head that tying
 * replaces. */
static int skippable(const model *m, const char *name)
{
  static const char *const suffixes[] = {".rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias"};
  size_t n = strlen(name);
  if (m->cfg.tied && strcmp(name, "lm_head.weight") == 0)
    return 1;
  for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
    size_t k = strlen(suffixes[i]);
    int gpt2_only = i > 0;
    if (n > k && strcmp(name + n - k, suffixes[i]) == 0 &&
        (!gpt2_only || m->cfg.arch == MODEL_GPT2))
      return 1;
  }
  return 0;
}

/* ---- tensors into the model ------------------------------------------------------- */

static const char *fmt_dims(char *buf, size_t cap, int n_dims, const int64_t *shape)
{
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < n_dims && k < cap; i++)
    k += (size_t)snprintf(buf + k, cap - k, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (k < cap)
    snprintf(buf + k, cap - k, "]");
  return buf;
}

static int read_tensor(weights *w, model *m, const model_tensor *mt, model_err *err)
{
  char name[160], pref[176], got[160], want[64];
  int conv1d;
  shard *s = NULL;
  const st_tensor *t;
  if (hf_name(m->cfg.arch, mt->name, name, sizeof name, &conv1d) != 0)
    return model_fail(err, MODEL_EINTERNAL, "no Hugging Face name for tensor %s", mt->name);
  snprintf(pref, sizeof pref, "transformer.%s", name);
  t = m->cfg.arch == MODEL_GPT2 && strcmp(name, "lm_head.weight") != 0 ? find(w, pref, &s) : NULL;
  if (!t && !(t = find(w, name, &s)))
    return model_fail(err, MODEL_EMISMATCH, "%s: tensor %s missing", w->where, name);
  int64_t rows = mt->shape[0], cols = mt->n_dims == 2 ? mt->shape[1] : 1;
  int64_t expect[2] = {conv1d ? cols : rows, conv1d ? rows : cols};
  if (t->n_dims != mt->n_dims || t->shape[0] != expect[0] ||
      (mt->n_dims == 2 && t->shape[1] != expect[1]))
    return model_fail(err, MODEL_EMISMATCH, "%s: tensor %s has shape %s, expected %s",
                      st_label(s->st), t->name, fmt_dims(got, sizeof got, t->n_dims, t->shape),
                      fmt_dims(want, sizeof want, mt->n_dims, expect));
  mark_used(s, t);
  float *dst = m->params + mt->offset;
  if (!conv1d)
    return st_tensor_to_f32(s->st, t, dst, err);
  float *tmp = malloc(mt->n * sizeof *tmp);
  if (!tmp)
    return model_fail(err, MODEL_ENOMEM, "out of memory for tensor %s", t->name);
  int rc = st_tensor_to_f32(s->st, t, tmp, err);
  for (int64_t i = 0; rc == 0 && i < cols; i++) /* tmp is (cols, rows) */
    for (int64_t j = 0; j < rows; j++)
      dst[j * cols + i] = tmp[i * rows + j];
  free(tmp);
  return rc;
}

static int read_tensors(weights *w, model *m, model_err *err)
{
  for (int i = 0; i < m->n_tensors; i++) {
    int rc = read_tensor(w, m, &m->tensors[i], err);
    if (rc != 0)
      return rc;
  }
  for (size_t i = 0; i < w->n_sh; i++) {
    for (size_t k = 0; k < st_n_tensors(w->sh[i].st); k++) {
      const char *name = st_tensor_at(w->sh[i].st, k)->name;
      if (!w->sh[i].used[k] && !skippable(m, name))
        return model_fail(err, MODEL_EMISMATCH,
                          "%s: tensor %.96s has no place in a %s model of this configuration "
                          "(not supported)",
                          st_label(w->sh[i].st), name, m->cfg.name);
    }
  }
  return 0;
}

/* ---- the folder ------------------------------------------------------------------- */

int model_load_hf(const char *dir, model **out, model_err *err)
{
  char path[PATH_CAP];
  model_config cfg;
  enum hf_family fam;
  weights w;
  model *m = NULL;
  int rc;
  memset(&w, 0, sizeof w);
  if ((rc = join(path, dir, "config.json", err)) != 0 ||
      (rc = read_config(path, &cfg, &fam, err)) != 0 || (rc = open_weights(dir, &w, err)) != 0)
    goto out;
  /* The head is tied when the config says so or when there is no head. */
  shard *s;
  if (!cfg.tied && !find(&w, "lm_head.weight", &s))
    cfg.tied = 1;
  if ((rc = model_new(&cfg, &m, err)) != 0) {
    if (err) {
      char msg[sizeof err->msg];
      memcpy(msg, err->msg, sizeof msg);
      model_fail(err, rc, "%s: %s", path, msg);
    }
    goto out;
  }
  if ((rc = read_tensors(&w, m, err)) != 0)
    goto out;
  if ((rc = join(path, dir, "tokenizer.json", err)) == 0 && exists(path) &&
      (rc = tok_load_hf_json(path, &m->tok, err)) == 0 &&
      tok_n_vocab(m->tok) > (size_t)m->cfg.n_vocab)
    rc = model_fail(err, MODEL_EMISMATCH, "%s: %zu tokens, more than the model's vocab_size %d",
                    path, tok_n_vocab(m->tok), m->cfg.n_vocab);
out:
  weights_close(&w);
  if (rc != 0) {
    model_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

/* ---- writing a Hugging Face folder ------------------------------------------------ */

static int write_bytes(FILE *f, const void *p, size_t n)
{
  return fwrite(p, 1, n, f) == n ? 0 : -1;
}

/* One tensor's values in HF layout: Conv1D transposed, Llama q/k rows from
 * the interleaved (GGUF) order to HF's half-split order when the model runs
 * interleaved RoPE. */
static void hf_values(const model *m, const model_tensor *t, int conv1d, float *out)
{
  const float *src = m->params + t->offset;
  size_t rows = (size_t)t->shape[0], cols = t->n_dims == 2 ? (size_t)t->shape[1] : 1;
  int qk = m->cfg.arch == MODEL_LLAMA && m->cfg.rope == MODEL_ROPE_INTERLEAVED &&
           (strstr(t->name, ".attn_q.") || strstr(t->name, ".attn_k."));
  if (conv1d) {
    for (size_t r = 0; r < rows; r++)
      for (size_t c = 0; c < cols; c++)
        out[c * rows + r] = src[r * cols + c];
  } else if (qk) {
    size_t hd = (size_t)(m->cfg.n_embd / m->cfg.n_head);
    for (size_t h = 0; h < rows / hd; h++)
      for (size_t j = 0; j < hd / 2; j++) {
        memcpy(out + (h * hd + j) * cols, src + (h * hd + 2 * j) * cols, cols * sizeof *out);
        memcpy(out + (h * hd + j + hd / 2) * cols, src + (h * hd + 2 * j + 1) * cols,
               cols * sizeof *out);
      }
  } else {
    memcpy(out, src, t->n * sizeof *out);
  }
}

static json_t *hf_config(const model *m)
{
  const model_config *c = &m->cfg;
  if (c->arch == MODEL_GPT2)
    return json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:s, s:b}", "architectures",
                     "GPT2LMHeadModel", "model_type", "gpt2", "vocab_size", c->n_vocab,
                     "n_positions", c->n_ctx, "n_embd", c->n_embd, "n_layer", c->n_layer, "n_head",
                     c->n_head, "n_inner", c->n_ff, "layer_norm_epsilon", (double)c->norm_eps,
                     "activation_function", "gelu_new", "tie_word_embeddings", c->tied);
  int qwen = c->qkv_bias;
  return json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s, s:b}",
                   "architectures", qwen ? "Qwen2ForCausalLM" : "LlamaForCausalLM", "model_type",
                   qwen ? "qwen2" : "llama", "vocab_size", c->n_vocab, "hidden_size", c->n_embd,
                   "intermediate_size", c->n_ff, "num_hidden_layers", c->n_layer,
                   "num_attention_heads", c->n_head, "num_key_value_heads", c->n_kv_head,
                   "max_position_embeddings", c->n_ctx, "rms_norm_eps", (double)c->norm_eps,
                   "rope_theta", (double)c->rope_theta, "hidden_act", "silu",
                   "tie_word_embeddings", c->tied);
}

/* tokenizer.json for a byte-level BPE tokenizer. */
static json_t *hf_tokenizer(const tokenizer *tk)
{
  tok_spec s;
  tok_get_spec(tk, &s);
  if (s.kind != TOK_BPE)
    return NULL;
  json_t *vocab = json_object(), *merges = json_array(), *added = json_array();
  for (size_t i = 0; i < s.n_vocab; i++) {
    char *name = s.token_lens ? strndup(s.tokens[i], s.token_lens[i]) : strdup(s.tokens[i]);
    if (!name)
      continue;
    json_object_set_new(vocab, name, json_integer((json_int_t)i));
    if (s.types && s.types[i] == TOK_TYPE_CONTROL)
      json_array_append_new(added, json_pack("{s:I, s:s, s:b, s:b, s:b, s:b, s:b}", "id",
                                             (json_int_t)i, "content", name, "single_word", 0,
                                             "lstrip", 0, "rstrip", 0, "normalized", 0, "special",
                                             1));
    free(name);
  }
  for (size_t i = 0; i < s.n_merges; i++)
    json_array_append_new(merges, json_string(s.merges[i]));
  return json_pack("{s:s, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:n, s:{s:s, s:b, s:b, s:b}, "
                   "s:{s:s, s:o, s:o}}",
                   "version", "1.0", "added_tokens", added, "normalizer", "pre_tokenizer", "type",
                   "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1,
                   "post_processor", "decoder", "type", "ByteLevel", "add_prefix_space", 0,
                   "trim_offsets", 1, "use_regex", 1, "model", "type", "BPE", "vocab", vocab,
                   "merges", merges);
}

static int cmp_cstr(const void *a, const void *b)
{
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int model_save_hf(const model *m, const char *dir, model_err *err)
{
  char path[4200], tmp[4300];
  int rv = 0;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return model_fail(err, MODEL_EIO, "%s: cannot create: %s", dir, strerror(errno));
  /* Names, sorted (any order tiles; sorted is reproducible). */
  int n = 0;
  char **names = calloc((size_t)m->n_tensors, sizeof *names);
  int *idx = calloc((size_t)m->n_tensors, sizeof *idx);
  if (!names || !idx) {
    free(names);
    free(idx);
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  for (int i = 0; i < m->n_tensors && rv == 0; i++) {
    char name[160];
    int conv;
    if (hf_name(m->cfg.arch, m->tensors[i].name, name, sizeof name, &conv) != 0)
      rv = model_fail(err, MODEL_EINTERNAL, "no Hugging Face name for %s", m->tensors[i].name);
    else if (m->cfg.arch == MODEL_GPT2 && strcmp(name, "lm_head.weight") != 0) {
      char full[180];
      snprintf(full, sizeof full, "transformer.%s", name);
      names[n++] = strdup(full);
    } else {
      names[n++] = strdup(name);
    }
  }
  qsort(names, (size_t)n, sizeof *names, cmp_cstr);
  /* Header: every tensor F32 in name order. */
  json_t *head = json_pack("{s:{s:s}}", "__metadata__", "format", "pt");
  size_t off = 0;
  for (int k = 0; k < n && rv == 0; k++) {
    for (int i = 0; i < m->n_tensors; i++) {
      char name[160], full[180];
      int conv;
      hf_name(m->cfg.arch, m->tensors[i].name, name, sizeof name, &conv);
      snprintf(full, sizeof full, "%s%s",
               m->cfg.arch == MODEL_GPT2 && strcmp(name, "lm_head.weight") ? "transformer." : "",
               name);
      if (strcmp(full, names[k]) != 0)
        continue;
      const model_tensor *t = &m->tensors[i];
      json_t *shape = json_array();
      if (conv) {
        json_array_append_new(shape, json_integer(t->shape[1]));
        json_array_append_new(shape, json_integer(t->shape[0]));
      } else {
        for (int d = 0; d < t->n_dims; d++)
          json_array_append_new(shape, json_integer(t->shape[d]));
      }
      json_object_set_new(head, names[k],
                          json_pack("{s:s, s:o, s:[I, I]}", "dtype", "F32", "shape", shape,
                                    "data_offsets", (json_int_t)off,
                                    (json_int_t)(off + t->n * sizeof(float))));
      idx[k] = i;
      off += t->n * sizeof(float);
    }
  }
  char *text = json_dumps(head, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(head);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  FILE *f = rv == 0 && text ? fopen(tmp, "wb") : NULL;
  if (rv == 0 && !f)
    rv = model_fail(err, MODEL_EIO, "%s: cannot write", path);
  if (f) {
    size_t hl = strlen(text), padded = (hl + 7) / 8 * 8;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
      len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    int bad = write_bytes(f, len8, 8) || write_bytes(f, text, hl);
    for (size_t i = hl; i < padded && !bad; i++)
      bad = fputc(' ', f) == EOF;
    float *buf = malloc(model_max_tensor(m) * sizeof *buf);
    for (int k = 0; k < n && !bad; k++) {
      const model_tensor *t = &m->tensors[idx[k]];
      int conv = 0;
      char name[160];
      hf_name(m->cfg.arch, t->name, name, sizeof name, &conv);
      if (!buf) {
        bad = 1;
        break;
      }
      hf_values(m, t, conv, buf);
      bad = write_bytes(f, buf, t->n * sizeof *buf); /* little-endian hosts */
    }
    free(buf);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
      unlink(tmp);
      rv = model_fail(err, MODEL_EIO, "%s: cannot write", path);
    }
  }
  free(text);
  if (rv == 0) {
    json_t *cfg = hf_config(m);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!cfg || json_dump_file(cfg, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
      rv = model_fail(err, MODEL_EIO, "%s: cannot write", path);
    json_decref(cfg);
  }
  if (rv == 0 && m->tok) {
    json_t *tj = hf_tokenizer(m->tok);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (tj && json_dump_file(tj, path, JSON_INDENT(2)) != 0)
      rv = model_fail(err, MODEL_EIO, "%s: cannot write", path);
    json_decref(tj);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(idx);
  return rv;
}
