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

/* The family from "architectures" (first entry) or, failing that,
 * "model_type". */
static int cfg_arch(const cfgfile *c, model_config *cfg)
{
  static const struct {
    const char *cls, *type, *name;
    enum model_arch arch;
  } known[] = {{"LlamaForCausalLM", "llama", "llama", MODEL_LLAMA},
               {"MistralForCausalLM", "mistral", "llama", MODEL_LLAMA},
               {"Qwen2ForCausalLM", "qwen2", "qwen2", MODEL_LLAMA},
               {"GPT2LMHeadModel", "gpt2", "gpt2", MODEL_GPT2}};
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
      cfg->arch = known[i].arch;
      snprintf(cfg->name, sizeof cfg->name, "%s", known[i].name);
      return 0;
    }
  }
  return model_fail(c->err, MODEL_EINVAL,
                    "%s: %s \"%s\" not supported (LlamaForCausalLM, MistralForCausalLM, "
                    "Qwen2ForCausalLM, GPT2LMHeadModel)",
                    c->path, key, s ? s : "(not a string)");
}
