/* model: configuration checks and the tensor layout of each family. The
 * order of tensors here is the canonical parameter order: the flat buffer,
 * the parameter hash and every direction index follow it. */
#include "model/model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct layout {
  model *m;
  size_t offset;
  int cap;
};

static int add(struct layout *L, const char *name, int n_dims, int64_t rows, int64_t cols)
{
  model *m = L->m;
  if (m->n_tensors == L->cap)
    return MODEL_NONE;
  model_tensor *t = &m->tensors[m->n_tensors];
  snprintf(t->name, sizeof t->name, "%s", name);
  t->n_dims = n_dims;
  t->shape[0] = rows;
  t->shape[1] = n_dims == 2 ? cols : 1;
  t->offset = L->offset;
  t->n = (size_t)rows * (size_t)t->shape[1];
  L->offset += t->n;
  return m->n_tensors++;
}

static int addl(struct layout *L, int layer, const char *what, int n_dims, int64_t rows,
                int64_t cols)
{
  char name[64];
  snprintf(name, sizeof name, "blk.%d.%s", layer, what);
  return add(L, name, n_dims, rows, cols);
}

static int check_config(const model_config *c, model_err *err)
{
  if (c->arch != MODEL_GPT2 && c->arch != MODEL_LLAMA)
    return model_fail(err, MODEL_EINVAL, "unsupported architecture");
  if (c->n_layer < 1 || c->n_layer > 1024 || c->n_embd < 1 || c->n_embd > 65536 ||
      c->n_head < 1 || c->n_kv_head < 1 || c->n_ff < 1 || c->n_ff > 1 << 20 ||
      c->n_vocab < 1 || c->n_vocab > 1 << 24 || c->n_ctx < 1 || c->n_ctx > 1 << 20)
    return model_fail(err, MODEL_EINVAL,
                      "model sizes out of range (layers %d, dim %d, heads %d/%d, ffn %d, "
                      "vocab %d, ctx %d)",
                      c->n_layer, c->n_embd, c->n_head, c->n_kv_head, c->n_ff, c->n_vocab,
                      c->n_ctx);
  if (c->n_embd % c->n_head != 0)
    return model_fail(err, MODEL_EINVAL, "dim %d is not a multiple of heads %d", c->n_embd,
                      c->n_head);
  if (c->n_head % c->n_kv_head != 0)
    return model_fail(err, MODEL_EINVAL, "heads %d is not a multiple of kv heads %d",
                      c->n_head, c->n_kv_head);
  if (c->arch == MODEL_GPT2 && c->n_kv_head != c->n_head)
    return model_fail(err, MODEL_EINVAL, "gpt2 has no grouped-query attention");
  if ((c->n_embd / c->n_head) % 2 != 0 && c->arch == MODEL_LLAMA)
    return model_fail(err, MODEL_EINVAL, "RoPE needs an even head size");
  if (!(c->norm_eps > 0.0f))
    return model_fail(err, MODEL_EINVAL, "norm epsilon must be positive");
  if (c->arch == MODEL_LLAMA && !(c->rope_theta > 0.0f))
    return model_fail(err, MODEL_EINVAL, "rope theta must be positive");
  return 0;
}

static void lay_out(model *m)
{
  const model_config *c = &m->cfg;
  const int64_t d = c->n_embd, kvd = (int64_t)c->n_embd / c->n_head * c->n_kv_head;
  const int gpt2 = c->arch == MODEL_GPT2;
  struct layout L = {m, 0, m->n_tensors};
  m->n_tensors = 0;
  m->tok_embd = add(&L, "token_embd.weight", 2, c->n_vocab, d);
  m->pos_embd = gpt2 ? add(&L, "position_embd.weight", 2, c->n_ctx, d) : MODEL_NONE;
  for (int i = 0; i < c->n_layer; i++) {
    model_layer *l = &m->layers[i];
    memset(l, 0xFF, sizeof *l); /* every index MODEL_NONE (-1) */
    l->attn_norm_w = addl(&L, i, "attn_norm.weight", 1, d, 1);
    if (gpt2) {
      l->attn_norm_b = addl(&L, i, "attn_norm.bias", 1, d, 1);
      l->wqkv = addl(&L, i, "attn_qkv.weight", 2, 3 * d, d);
      l->bqkv = addl(&L, i, "attn_qkv.bias", 1, 3 * d, 1);
      l->wo = addl(&L, i, "attn_output.weight", 2, d, d);
      l->bo = addl(&L, i, "attn_output.bias", 1, d, 1);
      l->ffn_norm_w = addl(&L, i, "ffn_norm.weight", 1, d, 1);
      l->ffn_norm_b = addl(&L, i, "ffn_norm.bias", 1, d, 1);
      l->w_up = addl(&L, i, "ffn_up.weight", 2, c->n_ff, d);
      l->b_up = addl(&L, i, "ffn_up.bias", 1, c->n_ff, 1);
      l->w_down = addl(&L, i, "ffn_down.weight", 2, d, c->n_ff);
      l->b_down = addl(&L, i, "ffn_down.bias", 1, d, 1);
    } else {
      l->wq = addl(&L, i, "attn_q.weight", 2, d, d);
      if (c->qkv_bias)
        l->bq = addl(&L, i, "attn_q.bias", 1, d, 1);
      l->wk = addl(&L, i, "attn_k.weight", 2, kvd, d);
      if (c->qkv_bias)
        l->bk = addl(&L, i, "attn_k.bias", 1, kvd, 1);
      l->wv = addl(&L, i, "attn_v.weight", 2, kvd, d);
      if (c->qkv_bias)
        l->bv = addl(&L, i, "attn_v.bias", 1, kvd, 1);
      l->wo = addl(&L, i, "attn_output.weight", 2, d, d);
      l->ffn_norm_w = addl(&L, i, "ffn_norm.weight", 1, d, 1);
      l->w_gate = addl(&L, i, "ffn_gate.weight", 2, c->n_ff, d);
      l->w_up = addl(&L, i, "ffn_up.weight", 2, c->n_ff, d);
      l->w_down = addl(&L, i, "ffn_down.weight", 2, d, c->n_ff);
    }
  }
  m->out_norm_w = add(&L, "output_norm.weight", 1, d, 1);
  m->out_norm_b = gpt2 ? add(&L, "output_norm.bias", 1, d, 1) : MODEL_NONE;
  m->output = c->tied ? m->tok_embd : add(&L, "output.weight", 2, c->n_vocab, d);
  m->n_params = L.offset;
}

int model_new(const model_config *cfg, model **out, model_err *err)
{
  int rv = check_config(cfg, err);
  if (rv != 0)
    return rv;
  model *m = calloc(1, sizeof *m);
  int cap = 5 + 13 * cfg->n_layer;
  if (!m)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  m->cfg = *cfg;
  m->tensors = calloc((size_t)cap, sizeof *m->tensors);
  m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
  if (!m->tensors || !m->layers) {
    model_free(m);
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  m->n_tensors = cap;
  lay_out(m);
  m->params = calloc(m->n_params, sizeof *m->params);
  if (!m->params) {
    size_t n = m->n_params;
    model_free(m);
    return model_fail(err, MODEL_ENOMEM, "out of memory for %zu parameters", n);
  }
  *out = m;
  return 0;
}

void tok_free(tokenizer *t);

void model_free(model *m)
{
  if (!m)
    return;
  free(m->params);
  free(m->tensors);
  free(m->layers);
  if (m->tok)
    tok_free(m->tok);
  free(m);
}

int model_find_tensor(const model *m, const char *name)
{
  for (int i = 0; i < m->n_tensors; i++)
    if (strcmp(m->tensors[i].name, name) == 0)
      return i;
  return MODEL_NONE;
}

size_t model_max_tensor(const model *m)
{
  size_t mx = 0;
  for (int i = 0; i < m->n_tensors; i++)
    if (m->tensors[i].n > mx)
      mx = m->tensors[i].n;
  return mx;
}

static const float *plain_get(void *ctx, int t, size_t first, size_t n)
{
  const model *m = ctx;
  (void)n;
  return m->params + m->tensors[t].offset + first;
}

model_view model_plain_view(const model *m)
{
  model_view v = {plain_get, (void *)m};
  return v;
}
