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
  return model_fail(c->err, MODEL_EINVAL, "%s: %s = %s not supported (%s)", c->path, key,
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
  return model_fail(c->err, MODEL_EINVAL, "%s: rope_scaling (type %.64s) not supported",
                    c->path, s ? s : "?");
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
  int rc = load_json(path, &c.root, err);
  if (rc != 0)
    return rc;
  memset(cfg, 0, sizeof *cfg);
  if ((rc = cfg_family(&c, fam)) == 0)
    rc = *fam == HF_GPT2 ? cfg_gpt2(&c, cfg) : cfg_llama(&c, *fam, cfg);
  json_decref(c.root);
  return rc;
}
