/* cli lm: JSONL data, evaluation, and the perturbed-model objective. */
#include "cli/lm.h"

#include <fnmatch.h>
#include <jansson.h>
#include <math.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/tokenizer.h"
#include "rng/rng.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- data ----------------------------------------------------------------- */

static void seq_free(lm_seq *s)
{
  free(s->ids);
  s->ids = NULL;
}

void lm_data_free(lm_data *d)
{
  for (size_t i = 0; i < d->n; i++) {
    for (int k = 0; k < d->ex[i].n_seqs; k++)
      seq_free(&d->ex[i].seqs[k]);
    free(d->ex[i].seqs);
  }
  free(d->ex);
  memset(d, 0, sizeof *d);
}

/* BOS + prompt + completion, truncated on the left to max_len. */
static int make_seq(const model *m, const char *prompt, const char *completion, int max_len,
                    lm_seq *out, const char *where, model_err *err)
{
  int32_t *p = NULL, *c = NULL;
  size_t np = 0, nc = 0;
  int rv = tok_encode(m->tok, prompt, strlen(prompt), 0, &p, &np, err);
  if (rv == 0 && completion)
    rv = tok_encode(m->tok, completion, strlen(completion), 0, &c, &nc, err);
  if (rv != 0) {
    free(p);
    return rv;
  }
  int bos = tok_bos(m->tok) >= 0 ? 1 : 0;
  size_t n = (size_t)bos + np + nc;
  int32_t *ids = malloc((n ? n : 1) * sizeof *ids);
  if (!ids) {
    free(p);
    free(c);
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  if (bos)
    ids[0] = tok_bos(m->tok);
  memcpy(ids + bos, p, np * sizeof *ids);
  if (nc)
    memcpy(ids + bos + np, c, nc * sizeof *ids);
  free(p);
  free(c);
  int start = completion ? bos + (int)np : 1;
  if (completion && nc == 0) {
    free(ids);
    return model_fail(err, MODEL_ECORRUPT, "%s: the completion has no tokens", where);
  }
  if (n < 2) {
    free(ids);
    return model_fail(err, MODEL_ECORRUPT, "%s: fewer than 2 tokens: nothing to predict", where);
  }
  if (n > (size_t)max_len) { /* keep the end, where the completion is */
    size_t cut = n - (size_t)max_len;
    memmove(ids, ids + cut, (size_t)max_len * sizeof *ids);
    n = (size_t)max_len;
    start = start - (int)cut < 1 ? 1 : start - (int)cut;
  }
  if (start < 1)
    start = 1;
  out->ids = ids;
  out->n = (int)n;
  out->start = start;
  return 0;
}

/* Parses one JSONL line into ex. */
static int parse_line(const model *m, json_t *o, int max_len, lm_example *ex, const char *where,
                      model_err *err)
{
  json_t *text = json_object_get(o, "text"), *prompt = json_object_get(o, "prompt");
  json_t *comp = json_object_get(o, "completion"), *choices = json_object_get(o, "choices");
  json_t *answer = json_object_get(o, "answer");
  memset(ex, 0, sizeof *ex);
  ex->answer = -1;
  if (!json_is_object(o))
    return model_fail(err, MODEL_ECORRUPT, "%s: expected a JSON object", where);
  if (text && !prompt && !comp && !choices) {
    if (!json_is_string(text))
      return model_fail(err, MODEL_ECORRUPT, "%s: \"text\" must be a string", where);
    ex->seqs = calloc(1, sizeof *ex->seqs);
    ex->n_seqs = 1;
    return ex->seqs ? make_seq(m, json_string_value(text), NULL, max_len, ex->seqs, where, err)
                    : model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  if (!json_is_string(prompt))
    return model_fail(err, MODEL_ECORRUPT,
                      "%s: expected {\"text\"}, {\"prompt\", \"completion\"} or {\"prompt\", "
                      "\"choices\", \"answer\"} with string values",
                      where);
  if (!comp && !choices)
    return model_fail(err, MODEL_ECORRUPT,
                      "%s: expected {\"text\"}, {\"prompt\", \"completion\"} or {\"prompt\", "
                      "\"choices\", \"answer\"}: the prompt has neither",
                      where);
  if (comp && !choices) {
    if (!json_is_string(comp))
      return model_fail(err, MODEL_ECORRUPT, "%s: \"completion\" must be a string", where);
    ex->seqs = calloc(1, sizeof *ex->seqs);
    ex->n_seqs = 1;
    return ex->seqs ? make_seq(m, json_string_value(prompt), json_string_value(comp), max_len,
                               ex->seqs, where, err)
                    : model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  if (!json_is_array(choices) || json_array_size(choices) < 2 || comp)
    return model_fail(err, MODEL_ECORRUPT,
                      "%s: \"choices\" must be an array of at least 2 strings (and no "
                      "\"completion\")",
                      where);
  size_t nc = json_array_size(choices);
  if (!json_is_integer(answer) || json_integer_value(answer) < 0 ||
      (size_t)json_integer_value(answer) >= nc)
    return model_fail(err, MODEL_ECORRUPT, "%s: \"answer\" must be an index in 0..%zu", where,
                      nc - 1);
  ex->answer = (int)json_integer_value(answer);
  ex->seqs = calloc(nc, sizeof *ex->seqs);
  if (!ex->seqs)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  for (size_t k = 0; k < nc; k++) {
    json_t *ch = json_array_get(choices, k);
    if (!json_is_string(ch))
      return model_fail(err, MODEL_ECORRUPT, "%s: choice %zu is not a string", where, k);
    int rv = make_seq(m, json_string_value(prompt), json_string_value(ch), max_len,
                      &ex->seqs[k], where, err);
    ex->n_seqs = (int)k + 1;
    if (rv != 0)
      return rv;
  }
  return 0;
}

int lm_data_load(const char *path, const model *m, int max_len, lm_data *d, model_err *err)
{
  memset(d, 0, sizeof *d);
  if (!m->tok)
    return model_fail(err, MODEL_EINVAL, "the model has no tokenizer");
  FILE *f = fopen(path, "r");
  if (!f)
    return model_fail(err, MODEL_ENOENT, "%s: cannot open", path);
  char *line = NULL;
  size_t cap = 0, alloc = 0;
  ssize_t len;
  long lineno = 0;
  int rv = 0;
  while (rv == 0 && (len = getline(&line, &cap, f)) >= 0) {
    char where[4200];
    lineno++;
    snprintf(where, sizeof where, "%s:%ld", path, lineno);
    size_t k = 0;
    while (k < (size_t)len && (line[k] == ' ' || line[k] == '\t' || line[k] == '\r' || line[k] == '\n'))
      k++;
    if (k == (size_t)len)
      continue; /* blank line */
    json_error_t je;
    json_t *o = json_loadb(line, (size_t)len, 0, &je);
    if (!o) {
      rv = model_fail(err, MODEL_ECORRUPT, "%s: invalid JSON at column %d: %s", where, je.column,
                      je.text);
      break;
    }
    if (d->n == alloc) {
      size_t na = alloc ? 2 * alloc : 64;
      lm_example *ne = realloc(d->ex, na * sizeof *ne);
      if (!ne) {
        json_decref(o);
        rv = model_fail(err, MODEL_ENOMEM, "out of memory");
        break;
      }
      d->ex = ne;
      alloc = na;
    }
    rv = parse_line(m, o, max_len, &d->ex[d->n], where, err);
    d->n++; /* counted even on error, so lm_data_free releases its parts */
    if (d->ex[d->n - 1].answer >= 0)
      d->has_choices = 1;
    json_decref(o);
  }
  free(line);
  fclose(f);
  if (rv == 0 && d->n == 0)
    rv = model_fail(err, MODEL_ECORRUPT, "%s: no examples", path);
  if (rv != 0)
    lm_data_free(d);
  return rv;
}

/* ---- tuned sets ---------------------------------------------------------------- */

void lm_tuned_free(lm_tuned *t)
{
  free(t->packed);
  free(t->lora_a);
  free(t->lora_b);
  memset(t, 0, sizeof *t);
}

static int tensor_layer(const char *name)
{
  int l;
  return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

/* LoRA target short names and the tensor each adapts. */
static const struct {
  const char *key, *suffix;
} lora_targets[] = {{"q", "attn_q.weight"},       {"k", "attn_k.weight"},
                    {"v", "attn_v.weight"},       {"o", "attn_output.weight"},
                    {"qkv", "attn_qkv.weight"},   {"gate", "ffn_gate.weight"},
                    {"up", "ffn_up.weight"},      {"down", "ffn_down.weight"}};
#define N_LORA_TARGETS (sizeof lora_targets / sizeof lora_targets[0])

static int parse_lora(const model *m, const char *spec, lm_tuned *t, model_err *err)
{
  int want[N_LORA_TARGETS] = {0}, in_targets = 0, any = 0;
  double alpha = -1;
  char *copy = strdup(spec + 5), *save = NULL;
  if (!copy)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  t->lora_r = 0;
  for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(p, '=');
    const char *name = p;
    if (eq) {
      *eq = 0;
      in_targets = strcmp(p, "targets") == 0;
      if (strcmp(p, "r") == 0) {
        t->lora_r = atoi(eq + 1);
        continue;
      }
      if (strcmp(p, "alpha") == 0) {
        alpha = atof(eq + 1);
        continue;
      }
      if (!in_targets) {
        int rv = model_fail(err, MODEL_EINVAL, "tuned set \"%s\": unknown LoRA setting \"%s\" "
                                               "(r, targets, alpha)", spec, p);
        free(copy);
        return rv;
      }
      name = eq + 1;
    } else if (!in_targets) {
      int rv = model_fail(err, MODEL_EINVAL, "tuned set \"%s\": \"%s\" is not key=value", spec, p);
      free(copy);
      return rv;
    }
    size_t k = 0;
    while (k < N_LORA_TARGETS && strcmp(lora_targets[k].key, name) != 0)
      k++;
    if (k == N_LORA_TARGETS) {
      int rv = model_fail(err, MODEL_EINVAL, "tuned set \"%s\": unknown LoRA target \"%s\" "
                                             "(q k v o qkv gate up down)", spec, name);
      free(copy); /* name points into copy */
      return rv;
    }
    want[k] = any = 1;
  }
  free(copy);
  if (t->lora_r < 1 || t->lora_r > 4096 || !any)
    return model_fail(err, MODEL_EINVAL, "tuned set \"%s\": LoRA needs r=1..4096 and targets=...",
                      spec);
  t->lora_scale = (float)((alpha > 0 ? alpha : t->lora_r) / t->lora_r);
  t->lora_a = malloc((size_t)m->n_tensors * sizeof *t->lora_a);
  t->lora_b = malloc((size_t)m->n_tensors * sizeof *t->lora_b);
  if (!t->lora_a || !t->lora_b)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *T = &m->tensors[i];
    int on = 0;
    t->packed[i] = t->lora_a[i] = t->lora_b[i] = SIZE_MAX;
    for (size_t k = 0; k < N_LORA_TARGETS && !on; k++) {
      size_t ls = strlen(T->name), lt = strlen(lora_targets[k].suffix);
      on = want[k] && tensor_layer(T->name) >= 0 && ls > lt &&
           strcmp(T->name + ls - lt, lora_targets[k].suffix) == 0;
    }
    if (!on)
      continue;
    size_t out = (size_t)T->shape[0], in = (size_t)T->shape[1];
    t->lora_a[i] = t->dim;
    t->dim += (size_t)t->lora_r * in;
    t->lora_b[i] = t->dim;
    t->dim += out * (size_t)t->lora_r;
    t->n_tuned++;
  }
  return 0;
}

int lm_tuned_parse(const model *m, const char *spec, lm_tuned *t, model_err *err)
{
  int lo = 0, hi = -1, all = strcmp(spec, "all") == 0, layers = 0, rv = 0;
  memset(t, 0, sizeof *t);
  /* "norms": every LayerNorm/RMSNorm weight (and bias) */
  const char *patterns = strcmp(spec, "norms") == 0 ? "*norm*" : spec;
  if (strncmp(spec, "layers:", 7) == 0) {
    char tail;
    if (sscanf(spec + 7, "%d-%d%c", &lo, &hi, &tail) != 2 || lo < 0 || hi < lo)
      return model_fail(err, MODEL_EINVAL, "tuned set \"%s\": expected layers:A-B with 0 <= A <= B",
                        spec);
    if (hi >= m->cfg.n_layer)
      return model_fail(err, MODEL_EINVAL, "tuned set \"%s\": the model has layers 0-%d", spec,
                        m->cfg.n_layer - 1);
    layers = 1;
  }
  t->packed = malloc((size_t)m->n_tensors * sizeof *t->packed);
  if (!t->packed)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  if (strncmp(spec, "lora:", 5) == 0) {
    rv = parse_lora(m, spec, t, err);
  } else {
    for (int i = 0; i < m->n_tensors; i++) {
      const char *name = m->tensors[i].name;
      int on = all;
      if (layers) {
        int l = tensor_layer(name);
        on = l >= lo && l <= hi;
      } else if (!all) {
        char *save = NULL, *copy = strdup(patterns);
        for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p && !on;
             p = strtok_r(NULL, ",", &save))
          on = fnmatch(p, name, 0) == 0;
        free(copy);
      }
      t->packed[i] = on ? t->dim : SIZE_MAX;
      if (on) {
        t->dim += m->tensors[i].n;
        t->n_tuned++;
      }
    }
  }
  if (rv == 0 && t->n_tuned == 0)
    rv = model_fail(err, MODEL_EINVAL, "tuned set \"%s\" matches no tensor (see zotune info "
                                       "--tensors)", spec);
  if (rv != 0)
    lm_tuned_free(t);
  return rv;
}

void lm_tuned_init(const model *m, const lm_tuned *t, uint64_t seed, const float *params,
                   float *packed)
{
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *T = &m->tensors[i];
    if (t->packed[i] != SIZE_MAX)
      memcpy(packed + t->packed[i], params + T->offset, T->n * sizeof(float));
    if (t->lora_a && t->lora_a[i] != SIZE_MAX) {
      size_t in = (size_t)T->shape[1], out = (size_t)T->shape[0];
      rng_stream s = rng_make(seed, 0, RNG_INIT, 2, 0);
      rng_axpy(RNG_GAUSSIAN, &s, t->lora_a[i], (size_t)t->lora_r * in, 1.0f / sqrtf((float)in),
               NULL, packed + t->lora_a[i]);
      memset(packed + t->lora_b[i], 0, out * (size_t)t->lora_r * sizeof(float));
    }
  }
}

void lm_tuned_unpack(const model *m, const lm_tuned *t, const float *packed, float *params)
{
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *T = &m->tensors[i];
    if (t->packed[i] != SIZE_MAX)
      memcpy(params + T->offset, packed + t->packed[i], T->n * sizeof(float));
    if (t->lora_a && t->lora_a[i] != SIZE_MAX)
      model_lora_merge(params + T->offset, params + T->offset, packed + t->lora_b[i],
                       packed + t->lora_a[i], (int)T->shape[0], (int)T->shape[1], t->lora_r,
                       t->lora_scale, 0);
  }
}

/* ---- views ------------------------------------------------------------------ */

/* Paired probes: L(theta + eps z) and L(theta - eps z) as two forwards side
 * by side on two threads (one view, workspace and side each), which build
 * each large weight slice together: each thread generates z for half of it
 * once and writes both theta + eps z (side 0's buffer) and theta - eps z
 * (side 1's), so z is generated once per probe instead of twice. Both sides
 * ask for the same slices in the same order (same model, same batch), so a
 * two-thread barrier at each such get keeps them in step. */
typedef struct lm_pair {
  atomic_uint arrived, gen;
  atomic_int stop; /* a side failed and left: the other stops waiting */
  float *dst[2];   /* this get's buffer of each side */
  float eps;       /* side 0's eps */
  unsigned long shared; /* slices built together (counted by side 0) */
} lm_pair;

/* Slices below this many elements are built by each side alone: a barrier
 * costs more than generating them twice. */
#define PAIR_MIN 16384u

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

/* Waits until both sides have arrived. -1 when the other side stopped. */
static int pair_wait(lm_pair *p)
{
  /* Once a side has stopped, the count is out of step for good: never
   * arrive again (arriving alone would pass as "both"). */
  if (atomic_load_explicit(&p->stop, memory_order_acquire))
    return -1;
  unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
  if (atomic_fetch_add_explicit(&p->arrived, 1, memory_order_acq_rel) == 1) {
    atomic_store_explicit(&p->arrived, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    return 0;
  }
  for (unsigned spins = 0; atomic_load_explicit(&p->gen, memory_order_acquire) == g; spins++) {
    if (atomic_load_explicit(&p->stop, memory_order_relaxed))
      return -1;
    if (spins < 4096)
      cpu_relax();
    else
      sched_yield();
  }
  return 0;
}

struct lm_view {
  const model *m;
  const lm_tuned *tuned;
  float *la, *lb; /* perturbed LoRA adapters */
  const float *theta;
  zo_dir dir;
  int has_dir;
  float eps;
  float *buf[2];
  size_t cap;
  int next, threads;
  lm_pair *pair; /* paired probe: the shared state, and which side this is */
  int side;
};

/* A LoRA-adapted weight: W + scale * (B + eps zB)(A + eps zA), built whole
 * (the forward pass asks for adapted projections whole). */
static const float *lora_get(lm_view *v, int t)
{
  const lm_tuned *tu = v->tuned;
  const model_tensor *T = &v->m->tensors[t];
  int out = (int)T->shape[0], in = (int)T->shape[1], r = tu->lora_r;
  const float *a = v->theta + tu->lora_a[t], *b = v->theta + tu->lora_b[t];
  if (v->has_dir) {
    rng_axpy(v->dir.dist, &v->dir.stream, tu->lora_a[t], (size_t)r * in, v->eps, a, v->la);
    rng_axpy(v->dir.dist, &v->dir.stream, tu->lora_b[t], (size_t)out * r, v->eps, b, v->lb);
    a = v->la;
    b = v->lb;
  }
  float *dst = v->buf[v->next];
  v->next ^= 1;
  model_lora_merge(dst, v->m->params + T->offset, b, a, out, in, r, tu->lora_scale,
                   v->threads == 1);
  return dst;
}

static const float *view_get(void *ctx, int t, size_t first, size_t n)
{
  lm_view *v = ctx;
  const model_tensor *T = &v->m->tensors[t];
  if (v->tuned && v->tuned->lora_a && v->tuned->lora_a[t] != SIZE_MAX)
    return lora_get(v, t);
  size_t at = v->tuned ? v->tuned->packed[t] : T->offset;
  if (at == SIZE_MAX) /* frozen: the model's own values */
    return v->m->params + T->offset + first;
  const float *base = v->theta + at + first;
  if (!v->has_dir || n > v->cap) /* n > cap cannot happen: model_max_slice bounds it */
    return base;
  float *dst = v->buf[v->next];
  v->next ^= 1;
  lm_pair *p = v->pair;
  if (p && n >= PAIR_MIN) {
    /* Once both sides are here, neither reads its buffer of two gets ago
     * (the one about to be written) any more. */
    p->dst[v->side] = dst;
    if (pair_wait(p) == 0) {
      uint64_t i0 = at + first, mid = (i0 + n / 2) / RNG_ALIGN * RNG_ALIGN;
      size_t h = mid > i0 ? (size_t)(mid - i0) : n / 2;
      size_t lo = v->side ? h : 0, hi = v->side ? n : h;
      rng_axpy_pm(v->dir.dist, &v->dir.stream, i0 + lo, hi - lo, p->eps, base + lo,
                  p->dst[0] + lo, p->dst[1] + lo);
      if (pair_wait(p) == 0) {
        p->shared += v->side == 0;
        return dst;
      }
    }
    /* The other side failed and left: build this slice and every later one
     * here, alone. */
    v->pair = NULL;
  }
  rng_axpy_mt(v->dir.dist, &v->dir.stream, at + first, n, v->eps, base, dst, v->threads);
  return dst;
}

/* Floats in each of a view's two LoRA scratch buffers (0 without LoRA):
 * r x the longer side of the largest adapted tensor. */
static size_t lora_scratch(const model *m, const lm_tuned *tuned)
{
  size_t mx = 0;
  if (tuned && tuned->lora_a)
    for (int i = 0; i < m->n_tensors; i++)
      if (tuned->lora_a[i] != SIZE_MAX) {
        size_t k = (size_t)tuned->lora_r *
                   (size_t)(m->tensors[i].shape[0] > m->tensors[i].shape[1] ? m->tensors[i].shape[0]
                                                                           : m->tensors[i].shape[1]);
        mx = k > mx ? k : mx;
      }
  return mx;
}

/* Bytes a view allocates: two slice buffers and the LoRA scratch. */
static size_t view_bytes(const model *m, const lm_tuned *tuned)
{
  return 2 * (model_max_slice(m) + lora_scratch(m, tuned)) * sizeof(float);
}

int lm_view_new(const model *m, const lm_tuned *tuned, lm_view **out, model_err *err)
{
  lm_view *v = calloc(1, sizeof *v);
  if (!v)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  v->m = m;
  v->tuned = tuned;
  v->cap = model_max_slice(m);
  if (tuned && tuned->lora_a) {
    size_t mx = lora_scratch(m, tuned);
    v->la = malloc(mx * sizeof(float));
    v->lb = malloc(mx * sizeof(float));
    if (!v->la || !v->lb) {
      lm_view_free(v);
      return model_fail(err, MODEL_ENOMEM, "out of memory for LoRA scratch");
    }
  }
  v->buf[0] = malloc(v->cap * sizeof(float));
  v->buf[1] = malloc(v->cap * sizeof(float));
  if (!v->buf[0] || !v->buf[1]) {
    lm_view_free(v);
    return model_fail(err, MODEL_ENOMEM, "out of memory for perturbation scratch");
  }
  *out = v;
  return 0;
}

void lm_view_free(lm_view *v)
{
  if (!v)
    return;
  free(v->buf[0]);
  free(v->buf[1]);
  free(v->la);
  free(v->lb);
  free(v);
}

model_view lm_view_set(lm_view *v, const float *theta, const zo_dir *dir, float eps, int threads)
{
  v->theta = theta ? theta : v->m->params;
  v->has_dir = dir && eps != 0.0f;
  if (dir)
    v->dir = *dir;
  v->eps = eps;
  v->threads = threads;
  v->next = 0;
  v->pair = NULL;
  model_view mv = {view_get, v};
  return mv;
}

/* ---- batches and evaluation -------------------------------------------------- */

typedef struct batch_buf {
  int32_t *tokens;
  int *len;
  uint8_t *target;
  int cap_rows, cap_T;
} batch_buf;

/* Fills a model_batch from n sequences. */
static int fill_batch(batch_buf *bb, lm_seq *const *seqs, int n, model_batch *b, model_err *err)
{
  int T = 1;
  for (int i = 0; i < n; i++)
    T = seqs[i]->n > T ? seqs[i]->n : T;
  if (n > bb->cap_rows || T > bb->cap_T) {
    free(bb->tokens);
    free(bb->len);
    free(bb->target);
    bb->cap_rows = n > bb->cap_rows ? n : bb->cap_rows;
    bb->cap_T = T > bb->cap_T ? T : bb->cap_T;
    bb->tokens = malloc((size_t)bb->cap_rows * bb->cap_T * sizeof *bb->tokens);
    bb->len = malloc((size_t)bb->cap_rows * sizeof *bb->len);
    bb->target = malloc((size_t)bb->cap_rows * bb->cap_T);
    if (!bb->tokens || !bb->len || !bb->target)
      return model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++) {
    const lm_seq *s = seqs[i];
    for (int t = 0; t < T; t++) {
      bb->tokens[(size_t)i * T + t] = t < s->n ? s->ids[t] : 0;
      bb->target[(size_t)i * T + t] = t + 1 < s->n && t + 1 >= s->start;
    }
    bb->len[i] = s->n;
  }
  b->B = n;
  b->T = T;
  b->tokens = bb->tokens;
  b->len = bb->len;
  b->target = bb->target;
  return 0;
}

static void batch_buf_free(batch_buf *bb)
{
  free(bb->tokens);
  free(bb->len);
  free(bb->target);
}

static int max_seq_len(const lm_data *d)
{
  int T = 1;
  for (size_t i = 0; i < d->n; i++)
    for (int k = 0; k < d->ex[i].n_seqs; k++)
      T = d->ex[i].seqs[k].n > T ? d->ex[i].seqs[k].n : T;
  return T;
}

int lm_eval(const model *m, const lm_tuned *tuned, const float *theta, const lm_data *d, int batch,
            int threads, lm_eval_result *res, model_err *err)
{
  size_t total = 0;
  for (size_t i = 0; i < d->n; i++)
    total += (size_t)d->ex[i].n_seqs;
  lm_seq **seqs = malloc(total * sizeof *seqs);
  double *ll = malloc(total * sizeof *ll);
  long *cnt = malloc(total * sizeof *cnt);
  model_ws *ws = NULL;
  lm_view *view = NULL;
  batch_buf bb = {0};
  int rv = !seqs || !ll || !cnt ? model_fail(err, MODEL_ENOMEM, "out of memory") : 0;
  size_t k = 0;
  for (size_t i = 0; rv == 0 && i < d->n; i++)
    for (int c = 0; c < d->ex[i].n_seqs; c++)
      seqs[k++] = &d->ex[i].seqs[c];
  if (batch < 1)
    batch = 1;
  if ((size_t)batch > total)
    batch = (int)total;
  model_set_threads(threads);
  if (rv == 0)
    rv = model_ws_new(m, batch, max_seq_len(d), &ws, err);
  if (rv == 0)
    rv = lm_view_new(m, theta ? tuned : NULL, &view, err);
  for (size_t s0 = 0; rv == 0 && s0 < total; s0 += (size_t)batch) {
    int n = total - s0 < (size_t)batch ? (int)(total - s0) : batch;
    model_batch b;
    model_view mv = lm_view_set(view, theta, NULL, 0.0f, threads);
    if ((rv = fill_batch(&bb, seqs + s0, n, &b, err)) != 0 ||
        (rv = model_forward(m, &mv, &b, ws, err)) != 0)
      break;
    double sums[batch];
    long counts[batch];
    if ((rv = model_loss_seq(m, &mv, &b, ws, sums, counts, err)) != 0)
      break;
    for (int r = 0; r < n; r++) {
      ll[s0 + (size_t)r] = sums[r];
      cnt[s0 + (size_t)r] = counts[r];
    }
  }
  if (rv == 0) {
    double loss = 0;
    long tokens = 0, right = 0, right_norm = 0, nchoice = 0;
    for (size_t i = 0, j = 0; i < d->n; j += (size_t)d->ex[i].n_seqs, i++) {
      const lm_example *ex = &d->ex[i];
      int gold = ex->answer >= 0 ? ex->answer : 0;
      loss += ll[j + (size_t)gold];
      tokens += cnt[j + (size_t)gold];
      if (ex->answer < 0)
        continue;
      int best = 0, best_norm = 0;
      for (int c = 1; c < ex->n_seqs; c++) {
        /* ll is a negative log-likelihood: smaller is more likely. */
        if (ll[j + c] < ll[j + best])
          best = c;
        if (ll[j + c] / cnt[j + c] < ll[j + best_norm] / cnt[j + best_norm])
          best_norm = c;
      }
      right += best == ex->answer;
      right_norm += best_norm == ex->answer;
      nchoice++;
    }
    res->loss = tokens ? loss / tokens : 0.0;
    res->tokens = tokens;
    res->examples = (long)d->n;
    res->accuracy = nchoice ? (double)right / nchoice : 0.0;
    res->accuracy_norm = nchoice ? (double)right_norm / nchoice : 0.0;
  }
  batch_buf_free(&bb);
  lm_view_free(view);
  model_ws_free(ws);
  free(seqs);
  free(ll);
  free(cnt);
  return rv;
}

/* ---- the objective -------------------------------------------------------------- */

struct lm_objective {
  const model *m;
  const lm_tuned *tuned;
  const lm_data *d;
  int shards;
  int batch, threads, T; /* T: the workspace's sequence length */
  lm_view *view;
  model_ws *ws;
  batch_buf bb;
  lm_seq **rows;
  /* paired probes (lm_objective_set_paired): side 1's view and workspace */
  int paired;
  lm_view *view2;
  model_ws *ws2;
  lm_pair pair;
  unsigned long pair_runs; /* probe pairs run side by side */
  int fail_side;           /* lm_objective_fail_next_pair; -1: none */
};

/* The training sequence of an example: its text, its completion, or its
 * correct choice. */
static lm_seq *train_seq(const lm_example *ex)
{
  return &ex->seqs[ex->answer >= 0 ? ex->answer : 0];
}

static int sample(lm_objective *o, const zo_batch *zb, model_batch *b, model_err *err)
{
  rng_stream s = rng_make(zb->seed, zb->step, RNG_BATCH, zb->slot, zb->dir);
  size_t shard = zb->slot % (uint32_t)o->shards, nsh = (size_t)o->shards;
  size_t n = (o->d->n - shard + nsh - 1) / nsh; /* examples shard, shard + nsh, ... */
  for (int r = 0; r < o->batch; r++) {
    uint32_t u = rng_u32_at(&s, (uint64_t)r);
    size_t k = (size_t)(((uint64_t)u * n) >> 32);
    o->rows[r] = train_seq(&o->d->ex[shard + k * nsh]);
  }
  return fill_batch(&o->bb, o->rows, o->batch, b, err);
}

/* Mean loss of batch b through view mv with workspace ws. */
static int mean_loss(const model *m, const model_view *mv, const model_batch *b, model_ws *ws,
                     double *out, model_err *err)
{
  double sum;
  long count;
  int rv = model_forward(m, mv, b, ws, err);
  if (rv == 0)
    rv = model_loss(m, mv, b, ws, &sum, &count, err);
  if (rv == 0)
    *out = count ? sum / (double)count : 0.0;
  return rv;
}

static int eval_at(lm_objective *o, const float *theta, const zo_dir *dir, float eps,
                   const model_batch *b, double *out, model_err *err)
{
  model_view mv = lm_view_set(o->view, theta, dir, eps, o->threads);
  return mean_loss(o->m, &mv, b, o->ws, out, err);
}

/* Both probes as a pair (see lm_pair). *ran = 0 when OpenMP did not give
 * two threads (then nothing was computed). */
static int eval_pair(lm_objective *o, const float *theta, const zo_dir *dir, float eps,
                     const model_batch *b, double *lp, double *lm, int *ran, model_err *err)
{
  int got = 1, rv[2] = {0, 0};
  double out[2] = {0.0, 0.0};
  model_err errs[2] = {{0, ""}, {0, ""}};
  lm_view *views[2] = {o->view, o->view2};
  model_ws *wss[2] = {o->ws, o->ws2};
  atomic_store(&o->pair.arrived, 0);
  atomic_store(&o->pair.stop, 0);
  o->pair.eps = eps;
#ifdef _OPENMP
#pragma omp parallel num_threads(2)
  {
#pragma omp single
    got = omp_get_num_threads();
    if (got == 2) {
      int sd = omp_get_thread_num();
      model_view mv = lm_view_set(views[sd], theta, dir, sd ? -eps : eps, 1);
      views[sd]->pair = &o->pair;
      views[sd]->side = sd;
      model_ws_set_threads(wss[sd], 1);
      if (sd == o->fail_side)
        rv[sd] = model_fail(&errs[sd], MODEL_EIO, "side %d of a paired probe failed (injected)", sd);
      else
        rv[sd] = mean_loss(o->m, &mv, b, wss[sd], &out[sd], &errs[sd]);
      if (rv[sd] != 0)
        atomic_store(&o->pair.stop, 1);
      model_ws_set_threads(wss[sd], 0);
      views[sd]->pair = NULL;
    }
  }
#endif
  *ran = got == 2;
  if (got != 2)
    return 0;
  o->pair_runs++;
  o->fail_side = -1;
  for (int sd = 0; sd < 2; sd++)
    if (rv[sd] != 0) {
      *err = errs[sd];
      return rv[sd];
    }
  *lp = out[0];
  *lm = out[1];
  return 0;
}

static int to_zo(int rv, const model_err *me, zo_err *err)
{
  return rv == 0 ? 0 : zo_fail(err, rv, "%s", me->msg);
}

static int obj_loss_pm(void *ctx, const float *theta, const zo_dir *z, float eps,
                       const zo_batch *zb, double *lp, double *lm, zo_err *err)
{
  lm_objective *o = ctx;
  model_err me = {0, ""};
  model_batch b;
  int rv = sample(o, zb, &b, &me), ran = 0;
  if (rv == 0 && o->paired && eps != 0.0f)
    rv = eval_pair(o, theta, z, eps, &b, lp, lm, &ran, &me);
  if (rv == 0 && !ran)
    rv = eval_at(o, theta, z, eps, &b, lp, &me);
  if (rv == 0 && !ran)
    rv = eval_at(o, theta, z, -eps, &b, lm, &me);
  return to_zo(rv, &me, err);
}

static int obj_loss(void *ctx, const float *theta, const zo_batch *zb, double *out, zo_err *err)
{
  lm_objective *o = ctx;
  model_err me = {0, ""};
  model_batch b;
  zo_batch first = {0, 0, 0, 0};
  int rv = sample(o, zb ? zb : &first, &b, &me);
  if (rv == 0)
    rv = eval_at(o, theta, NULL, 0.0f, &b, out, &me);
  return to_zo(rv, &me, err);
}

void lm_objective_free(lm_objective *o)
{
  if (!o)
    return;
  free(o->rows);
  batch_buf_free(&o->bb);
  lm_view_free(o->view);
  model_ws_free(o->ws);
  lm_view_free(o->view2);
  model_ws_free(o->ws2);
  free(o);
}

size_t lm_objective_pair_bytes(const lm_objective *o)
{
  return model_ws_bytes(o->m, o->batch, o->T) + view_bytes(o->m, o->tuned);
}

int lm_objective_set_paired(lm_objective *o, int on, model_err *err)
{
  if (!on) {
    o->paired = 0;
    return 0;
  }
#ifndef _OPENMP
  return model_fail(err, MODEL_EINVAL, "paired probes need OpenMP (this build has none)");
#else
  if (o->threads != 2)
    return model_fail(err, MODEL_EINVAL, "paired probes run on exactly 2 threads, not %d",
                      o->threads);
  if (!model_concurrent_forwards())
    return model_fail(err, MODEL_EINVAL, "paired probes need a BLAS that two threads can call "
                                         "at once without sharing its threads (%s)",
                      model_blas_info());
  int rv = 0;
  if (!o->ws2)
    rv = model_ws_new(o->m, o->batch, o->T, &o->ws2, err);
  if (rv == 0 && !o->view2)
    rv = lm_view_new(o->m, o->tuned, &o->view2, err);
  if (rv == 0)
    o->paired = 1;
  return rv;
#endif
}

int lm_objective_paired(const lm_objective *o)
{
  return o->paired;
}

void lm_objective_pair_stats(const lm_objective *o, unsigned long *pairs, unsigned long *shared)
{
  *pairs = o->pair_runs;
  *shared = o->pair.shared;
}

void lm_objective_fail_next_pair(lm_objective *o, int side)
{
  o->fail_side = side;
}

int lm_objective_new(const model *m, const lm_tuned *tuned, const lm_data *d, int batch,
                     int shards, int threads, lm_objective **out, zo_objective *obj,
                     model_err *err)
{
  if (batch < 1 || shards < 1)
    return model_fail(err, MODEL_EINVAL, "batch %d, shards %d out of range", batch, shards);
  if ((size_t)shards > d->n)
    return model_fail(err, MODEL_EINVAL, "%d workers need at least %d examples (there are %zu)",
                      shards, shards, d->n);
  lm_objective *o = calloc(1, sizeof *o);
  if (!o)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  o->m = m;
  o->tuned = tuned;
  o->fail_side = -1;
  atomic_init(&o->pair.arrived, 0);
  atomic_init(&o->pair.gen, 0);
  atomic_init(&o->pair.stop, 0);
  o->d = d;
  o->shards = shards;
  o->batch = batch;
  o->threads = threads;
  o->rows = malloc((size_t)batch * sizeof *o->rows);
  int rv = !o->rows ? model_fail(err, MODEL_ENOMEM, "out of memory") : 0;
  if (rv == 0)
    rv = model_ws_new(m, batch, o->T = max_seq_len(d), &o->ws, err);
  if (rv == 0)
    rv = lm_view_new(m, tuned, &o->view, err);
  if (rv != 0) {
    lm_objective_free(o);
    return rv;
  }
  /* Pair the probes when it is possible and costs at most an eighth of the
   * weights' memory or LM_PAIR_FREE_BYTES, whichever is larger, unless
   * ZOTUNE_PAIR says otherwise (docs/cli.md, "Threads"); failing to pair is
   * not an error. */
  const char *env = getenv("ZOTUNE_PAIR");
  size_t allow = m->n_params * sizeof(float) / 8;
  int want = lm_objective_pair_bytes(o) <= (allow > LM_PAIR_FREE_BYTES ? allow : LM_PAIR_FREE_BYTES);
  int force = env && strcmp(env, "on") == 0;
  if (force)
    want = 1;
  else if (env && strcmp(env, "off") == 0)
    want = 0;
  else if (env && *env && strcmp(env, "auto") != 0) {
    lm_objective_free(o);
    return model_fail(err, MODEL_EINVAL, "ZOTUNE_PAIR is '%.40s': use auto, on or off", env);
  }
  if (force || (want && threads == 2)) {
    model_err why;
    if (lm_objective_set_paired(o, 1, &why) != 0) {
      o->paired = 0;
      if (force) { /* asked for by name: say why it cannot be */
        lm_objective_free(o);
        return model_fail(err, MODEL_EINVAL, "ZOTUNE_PAIR=on: %s", why.msg);
      }
    }
  }
  obj->dim = tuned ? tuned->dim : m->n_params;
  obj->ctx = o;
  obj->loss_pm = obj_loss_pm;
  obj->loss = obj_loss;
  *out = o;
  return 0;
}
