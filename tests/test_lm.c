/* cli lm: the perturbed view equals a forward pass on a materialised
 * theta + eps*z bit for bit and never writes theta; the objective's batches
 * are a function of (seed, step, slot, dir); JSONL data and its errors;
 * evaluation against a direct model_loss. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/lm.h"
#include "model/load.h"
#include "rng/rng.h"

static char fixdir[4096];

static model *load(const char *name)
{
  char path[4200];
  model *m;
  model_err err = {0, ""};
  snprintf(path, sizeof path, "%s/%s", fixdir, name);
  if (model_load_gguf(path, &m, &err) != 0)
    fail_msg("%s", err.msg);
  return m;
}

static void forward_logits(const model *m, const model_view *v, const model_batch *b, float *out)
{
  model_ws *ws;
  model_err err = {0, ""};
  assert_int_equal(model_ws_new(m, b->B, b->T, &ws, &err), 0);
  assert_int_equal(model_forward(m, v, b, ws, &err), 0);
  for (int s = 0; s < b->B; s++)
    assert_int_equal(model_logits_at(m, v, ws, s, b->len[s] - 1, out + (size_t)s * m->cfg.n_vocab,
                                     &err),
                     0);
  model_ws_free(ws);
}

static void perturbed_equals_materialised(const char *name, enum rng_dist dist)
{
  model *m = load(name);
  model_err err = {0, ""};
  lm_view *view;
  const size_t n = m->n_params;
  const int V = m->cfg.n_vocab;
  float *theta = malloc(n * sizeof *theta), *moved = malloc(n * sizeof *moved);
  float *a = malloc(2 * (size_t)V * sizeof *a), *b = malloc(2 * (size_t)V * sizeof *b);
  memcpy(theta, m->params, n * sizeof *theta);
  int32_t tokens[2 * 9] = {256, 72, 101, 108, 108, 111, 44, 32, 119, 256, 1, 2, 3, 0, 0, 0, 0, 0};
  int len[2] = {9, 4};
  model_batch batch = {2, 9, tokens, len, NULL};
  zo_dir dir = {rng_make(99, 7, RNG_PERTURB, 1, 2), dist};
  assert_int_equal(lm_view_new(m, NULL, &view, &err), 0);
  for (int sign = -1; sign <= 1; sign += 2) {
    float eps = 1e-2f * (float)sign;
    model_view pv = lm_view_set(view, theta, &dir, eps, 2);
    forward_logits(m, &pv, &batch, a);
    rng_axpy(dist, &dir.stream, 0, n, eps, theta, moved);
    model_view mv = lm_view_set(view, moved, NULL, 0.0f, 1);
    forward_logits(m, &mv, &batch, b);
    assert_memory_equal(a, b, 2 * (size_t)V * sizeof *a);
    assert_memory_equal(theta, m->params, n * sizeof *theta); /* never written */
  }
  /* And the perturbation is not a no-op. */
  model_view pv = lm_view_set(view, theta, NULL, 0.0f, 1);
  forward_logits(m, &pv, &batch, b);
  assert_true(memcmp(a, b, 2 * (size_t)V * sizeof *a) != 0);
  lm_view_free(view);
  free(theta);
  free(moved);
  free(a);
  free(b);
  model_free(m);
}

static void test_view_gpt2_gaussian(void **state)
{
  (void)state;
  perturbed_equals_materialised("gpt2_tied_f32.gguf", RNG_GAUSSIAN);
}

static void test_view_llama_rademacher(void **state)
{
  (void)state;
  perturbed_equals_materialised("llama_gqa_f32.gguf", RNG_RADEMACHER);
}

/* A tuned subset: only its tensors move, indexed in the packed space; the
 * forward equals one on parameters where just those tensors were perturbed. */
static void test_tuned_subset(void **state)
{
  (void)state;
  model *m = load("llama_gqa_f32.gguf");
  model_err err = {0, ""};
  lm_tuned t;
  lm_view *view;
  assert_int_equal(lm_tuned_parse(m, "layers:1-1", &t, &err), 0);
  assert_int_equal(t.n_tuned, 9);
  size_t expect = 0;
  for (int i = 0; i < m->n_tensors; i++)
    if (strncmp(m->tensors[i].name, "blk.1.", 6) == 0)
      expect += m->tensors[i].n;
  assert_int_equal(t.dim, expect);
  float *packed = malloc(t.dim * sizeof *packed), *moved = malloc(t.dim * sizeof *moved);
  float *full = malloc(m->n_params * sizeof *full);
  const int V = m->cfg.n_vocab;
  float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
  lm_tuned_init(m, &t, 0, m->params, packed);
  zo_dir dir = {rng_make(4, 1, RNG_PERTURB, 0, 0), RNG_GAUSSIAN};
  rng_axpy(RNG_GAUSSIAN, &dir.stream, 0, t.dim, 0.05f, packed, moved);
  memcpy(full, m->params, m->n_params * sizeof *full);
  lm_tuned_unpack(m, &t, moved, full);
  int32_t tokens[6] = {256, 10, 20, 30, 40, 50};
  int len = 6;
  model_batch batch = {1, 6, tokens, &len, NULL};
  assert_int_equal(lm_view_new(m, &t, &view, &err), 0);
  model_view pv = lm_view_set(view, packed, &dir, 0.05f, 1);
  forward_logits(m, &pv, &batch, a);
  lm_view *plain;
  assert_int_equal(lm_view_new(m, NULL, &plain, &err), 0);
  model_view fv = lm_view_set(plain, full, NULL, 0.0f, 1);
  forward_logits(m, &fv, &batch, b);
  assert_memory_equal(a, b, (size_t)V * sizeof *a);

  lm_tuned t2;
  assert_int_equal(lm_tuned_parse(m, "blk.*.attn_q.weight,output_norm.*", &t2, &err), 0);
  assert_int_equal(t2.n_tuned, 2 + 1);
  lm_tuned_free(&t2);
  /* "norms": the two RMSNorm weights of each of the 2 layers and output_norm */
  assert_int_equal(lm_tuned_parse(m, "norms", &t2, &err), 0);
  size_t norm_params = 0;
  for (int i = 0; i < m->n_tensors; i++)
    if (strstr(m->tensors[i].name, "norm"))
      norm_params += m->tensors[i].n;
  assert_int_equal(t2.n_tuned, 2 * 2 + 1);
  assert_int_equal(t2.dim, norm_params);
  assert_int_equal(t2.dim, (size_t)5 * m->cfg.n_embd);
  lm_tuned_free(&t2);
  assert_int_equal(lm_tuned_parse(m, "nothing*", &t2, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "nothing*"));
  assert_int_equal(lm_tuned_parse(m, "layers:1-5", &t2, &err), MODEL_EINVAL);
  assert_int_equal(lm_tuned_parse(m, "layers:x", &t2, &err), MODEL_EINVAL);
  lm_view_free(view);
  lm_view_free(plain);
  lm_tuned_free(&t);
  free(packed);
  free(moved);
  free(full);
  free(a);
  free(b);
  model_free(m);
}

/* LoRA: with B = 0 the adapted model is the base model exactly; perturbed,
 * it equals the base with W + s (B + eps zB)(A + eps zA) merged in. */
static void test_lora(void **state)
{
  (void)state;
  model *m = load("llama_gqa_f32.gguf");
  model_err err = {0, ""};
  lm_tuned t;
  lm_view *view, *plain;
  assert_int_equal(lm_tuned_parse(m, "lora:r=4,targets=q,v,alpha=8", &t, &err), 0);
  assert_int_equal(t.n_tuned, 2 * m->cfg.n_layer);
  int d = m->cfg.n_embd, kvd = d / m->cfg.n_head * m->cfg.n_kv_head;
  assert_int_equal(t.dim, (size_t)m->cfg.n_layer * 4 * ((d + d) + (d + kvd)));
  assert_true(t.lora_scale == 2.0f);
  float *packed = malloc(t.dim * sizeof *packed), *moved = malloc(t.dim * sizeof *moved);
  float *full = malloc(m->n_params * sizeof *full);
  const int V = m->cfg.n_vocab;
  float *a = malloc((size_t)V * sizeof *a), *b = malloc((size_t)V * sizeof *b);
  lm_tuned_init(m, &t, 11, m->params, packed);
  int32_t tokens[5] = {256, 1, 2, 3, 4};
  int len = 5;
  model_batch batch = {1, 5, tokens, &len, NULL};
  assert_int_equal(lm_view_new(m, &t, &view, &err), 0);
  assert_int_equal(lm_view_new(m, NULL, &plain, &err), 0);
  model_view lv = lm_view_set(view, packed, NULL, 0.0f, 1);
  forward_logits(m, &lv, &batch, a);
  model_view pv = lm_view_set(plain, m->params, NULL, 0.0f, 1);
  forward_logits(m, &pv, &batch, b);
  assert_memory_equal(a, b, (size_t)V * sizeof *a); /* B = 0: nothing changes */

  zo_dir dir = {rng_make(8, 2, RNG_PERTURB, 0, 1), RNG_RADEMACHER};
  lv = lm_view_set(view, packed, &dir, 0.01f, 1);
  forward_logits(m, &lv, &batch, a);
  rng_axpy(RNG_RADEMACHER, &dir.stream, 0, t.dim, 0.01f, packed, moved);
  memcpy(full, m->params, m->n_params * sizeof *full);
  lm_tuned_unpack(m, &t, moved, full);
  pv = lm_view_set(plain, full, NULL, 0.0f, 1);
  forward_logits(m, &pv, &batch, b);
  assert_memory_equal(a, b, (size_t)V * sizeof *a);
  float *base = malloc(m->n_params * sizeof *base);
  memcpy(base, full, m->n_params * sizeof *base);
  lv = lm_view_set(view, packed, &dir, -0.01f, 1);
  forward_logits(m, &lv, &batch, a);
  memcpy(full, m->params, m->n_params * sizeof *full);
  lm_tuned_unpack(m, &t, packed, full); /* B = 0: the merge leaves W as it was */
  assert_memory_equal(full, m->params, m->n_params * sizeof *full);
  assert_true(memcmp(base, m->params, m->n_params * sizeof *base) != 0);
  free(base);
  lm_tuned t2;
  assert_int_equal(lm_tuned_parse(m, "lora:r=4,targets=qkv", &t2, &err), MODEL_EINVAL);
  assert_int_equal(lm_tuned_parse(m, "lora:targets=q", &t2, &err), MODEL_EINVAL);
  assert_int_equal(lm_tuned_parse(m, "lora:r=2,targets=zz", &t2, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "zz"));
  lm_view_free(view);
  lm_view_free(plain);
  lm_tuned_free(&t);
  free(packed);
  free(moved);
  free(full);
  free(a);
  free(b);
  model_free(m);
}

static char tmpdir[64];

static const char *write_file(const char *name, const char *text)
{
  static char path[128];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
  return path;
}

static void test_data_shapes(void **state)
{
  (void)state;
  model *m = load("gpt2_tied_f32.gguf");
  model_err err = {0, ""};
  lm_data d;
  const char *p = write_file("ok.jsonl", "{\"text\": \"hello world\"}\n"
                                         "\n"
                                         "{\"prompt\": \"2+2=\", \"completion\": \"4\"}\n"
                                         "{\"prompt\": \"sky is \", \"choices\": [\"blue\", "
                                         "\"green\", \"red\"], \"answer\": 0}\n");
  assert_int_equal(lm_data_load(p, m, m->cfg.n_ctx, &d, &err), 0);
  assert_int_equal(d.n, 3);
  assert_true(d.has_choices);
  /* text: BOS + 11 bytes, targets from position 1 */
  assert_int_equal(d.ex[0].seqs[0].n, 12);
  assert_int_equal(d.ex[0].seqs[0].ids[0], 256);
  assert_int_equal(d.ex[0].seqs[0].ids[1], 'h');
  assert_int_equal(d.ex[0].seqs[0].start, 1);
  /* prompt/completion: the completion is the last token */
  assert_int_equal(d.ex[1].seqs[0].n, 6);
  assert_int_equal(d.ex[1].seqs[0].start, 5);
  assert_int_equal(d.ex[1].seqs[0].ids[5], '4');
  assert_int_equal(d.ex[2].n_seqs, 3);
  assert_int_equal(d.ex[2].answer, 0);
  assert_int_equal(d.ex[2].seqs[1].n, 1 + 7 + 5);
  lm_data_free(&d);

  /* Truncation keeps the end. */
  assert_int_equal(lm_data_load(p, m, 4, &d, &err), 0);
  assert_int_equal(d.ex[0].seqs[0].n, 4);
  assert_int_equal(d.ex[0].seqs[0].ids[3], 'd');
  assert_int_equal(d.ex[1].seqs[0].start, 3);
  lm_data_free(&d);
  model_free(m);
}

static void test_data_errors(void **state)
{
  (void)state;
  model *m = load("gpt2_tied_f32.gguf");
  struct {
    const char *text, *want;
  } bad[] = {{"{\"text\": \"fine\"}\n{\"text\": oops}\n", ":2: invalid JSON"},
             {"{\"prompt\": \"a\"}\n", ":1: expected"},
             {"{\"text\": 5}\n", "\"text\" must be a string"},
             {"{\"prompt\": \"a\", \"completion\": \"\"}\n", "no tokens"},
             {"\n\n{\"prompt\": \"a\", \"choices\": [\"x\"], \"answer\": 0}\n", ":3: \"choices\""},
             {"{\"prompt\": \"a\", \"choices\": [\"x\", \"y\"], \"answer\": 2}\n", "\"answer\""},
             {"{\"prompt\": \"a\", \"choices\": [\"x\", 3], \"answer\": 0}\n", "choice 1"},
             {"[1, 2]\n", "expected a JSON object"},
             {"\n", "no examples"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    model_err err = {0, ""};
    lm_data d;
    const char *p = write_file("bad.jsonl", bad[i].text);
    assert_int_equal(lm_data_load(p, m, m->cfg.n_ctx, &d, &err), MODEL_ECORRUPT);
    if (!strstr(err.msg, bad[i].want) || !strstr(err.msg, "bad.jsonl"))
      fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err.msg, bad[i].want);
  }
  model_err err = {0, ""};
  lm_data d;
  assert_int_equal(lm_data_load("/nonexistent.jsonl", m, 8, &d, &err), MODEL_ENOENT);
  model_free(m);
}

/* lm_eval's loss is model_loss over the completion tokens of the same
 * sequences; accuracy picks the likeliest choice. */
static void test_eval_matches_model_loss(void **state)
{
  (void)state;
  model *m = load("llama_gqa_f32.gguf");
  model_err err = {0, ""};
  lm_data d;
  lm_eval_result r;
  const char *p = write_file("ev.jsonl", "{\"prompt\": \"ab\", \"completion\": \"cdef\"}\n"
                                         "{\"prompt\": \"x\", \"completion\": \"yz\"}\n"
                                         "{\"prompt\": \"q\", \"choices\": [\"r\", \"st\"], "
                                         "\"answer\": 1}\n");
  assert_int_equal(lm_data_load(p, m, m->cfg.n_ctx, &d, &err), 0);
  assert_int_equal(lm_eval(m, NULL, NULL, &d, 2, 1, &r, &err), 0);
  /* By hand: each gold sequence alone. */
  double sum = 0, nll[2];
  long count = 0;
  model_view v = model_plain_view(m);
  for (size_t i = 0; i < 3; i++) {
    const lm_seq *s = &d.ex[i].seqs[i == 2 ? 1 : 0];
    uint8_t target[64] = {0};
    for (int t = 0; t + 1 < s->n; t++)
      target[t] = t + 1 >= s->start;
    model_batch b = {1, s->n, s->ids, &s->n, target};
    model_ws *ws;
    double ss;
    long cc;
    assert_int_equal(model_ws_new(m, 1, s->n, &ws, &err), 0);
    assert_int_equal(model_forward(m, &v, &b, ws, &err), 0);
    assert_int_equal(model_loss(m, &v, &b, ws, &ss, &cc, &err), 0);
    sum += ss;
    count += cc;
    model_ws_free(ws);
  }
  assert_int_equal(r.tokens, count);
  assert_true(fabs(r.loss - sum / count) < 1e-5 * fmax(1.0, sum / count));
  assert_int_equal(r.examples, 3);
  /* accuracy over the single choice example is 0 or 1, consistent with the choice losses */
  for (int c = 0; c < 2; c++) {
    const lm_seq *s = &d.ex[2].seqs[c];
    uint8_t target[64] = {0};
    for (int t = 0; t + 1 < s->n; t++)
      target[t] = t + 1 >= s->start;
    model_batch b = {1, s->n, s->ids, &s->n, target};
    model_ws *ws;
    long cc;
    assert_int_equal(model_ws_new(m, 1, s->n, &ws, &err), 0);
    assert_int_equal(model_forward(m, &v, &b, ws, &err), 0);
    assert_int_equal(model_loss(m, &v, &b, ws, &nll[c], &cc, &err), 0);
    model_ws_free(ws);
  }
  assert_true(r.accuracy == (nll[1] < nll[0] ? 1.0 : 0.0));
  lm_data_free(&d);
  model_free(m);
}

/* The objective: deterministic batches and losses per (seed, step, slot, dir),
 * the two signs differ, and theta is untouched. */
static void test_objective(void **state)
{
  (void)state;
  model *m = load("qwen2_bias_bf16.gguf");
  model_err err = {0, ""};
  zo_err zerr;
  lm_data d;
  lm_objective *o;
  zo_objective obj;
  char text[4096] = "";
  for (int i = 0; i < 20; i++) {
    char line[128];
    snprintf(line, sizeof line, "{\"prompt\": \"item %d is\", \"completion\": \" %d\"}\n", i,
             i * 7);
    strcat(text, line);
  }
  const char *p = write_file("tr.jsonl", text);
  assert_int_equal(lm_data_load(p, m, m->cfg.n_ctx, &d, &err), 0);
  assert_int_equal(lm_objective_new(m, NULL, &d, 4, 1, 1, &o, &obj, &err), 0);
  assert_int_equal(obj.dim, m->n_params);
  float *theta = malloc(m->n_params * sizeof *theta);
  memcpy(theta, m->params, m->n_params * sizeof *theta);
  zo_dir dir = {rng_make(5, 3, RNG_PERTURB, 0, 0), RNG_GAUSSIAN};
  zo_batch zb = {5, 3, 0, 0};
  double lp, lm_, lp2, lm2, l0;
  assert_int_equal(obj.loss_pm(obj.ctx, theta, &dir, 1e-2f, &zb, &lp, &lm_, &zerr), 0);
  assert_int_equal(obj.loss_pm(obj.ctx, theta, &dir, 1e-2f, &zb, &lp2, &lm2, &zerr), 0);
  assert_true(lp == lp2 && lm_ == lm2);
  assert_true(isfinite(lp) && isfinite(lm_) && lp != lm_);
  assert_int_equal(obj.loss(obj.ctx, theta, &zb, &l0, &zerr), 0);
  /* The mean of the two probes equals the unperturbed loss up to the
   * second-order term, which is far smaller than the probes' spread here. */
  print_message("lp %.9g lm %.9g l0 %.9g\n", lp, lm_, l0);
  assert_true(fabs(0.5 * (lp + lm_) - l0) < fabs(lp - lm_));
  assert_memory_equal(theta, m->params, m->n_params * sizeof *theta);
  /* Another step samples another batch (and so, almost surely, another loss). */
  zo_batch zb2 = {5, 4, 0, 0};
  double l1;
  assert_int_equal(obj.loss(obj.ctx, theta, &zb2, &l1, &zerr), 0);
  assert_true(l1 != l0);
  /* Worker slots draw from their own shard (slot % shards): with 20
   * shards of 20 examples, slot w always sees example w. */
  lm_objective *o2;
  zo_objective obj2;
  assert_int_equal(lm_objective_new(m, NULL, &d, 1, 20, 1, &o2, &obj2, &err), 0);
  for (uint32_t w = 0; w < 3; w++) {
    zo_batch a1 = {5, 3, w, 0}, a2 = {9, 8, w, 1}, other = {5, 3, w + 1, 0};
    double x1, x2, y;
    assert_int_equal(obj2.loss(obj2.ctx, theta, &a1, &x1, &zerr), 0);
    assert_int_equal(obj2.loss(obj2.ctx, theta, &a2, &x2, &zerr), 0);
    assert_int_equal(obj2.loss(obj2.ctx, theta, &other, &y, &zerr), 0);
    assert_true(x1 == x2 && x1 != y);
  }
  lm_objective_free(o2);
  assert_int_equal(lm_objective_new(m, NULL, &d, 4, 40, 1, &o2, &obj2, &err), MODEL_EINVAL);
  lm_objective_free(o);
  lm_data_free(&d);
  free(theta);
  model_free(m);
}

/* Paired probes (two single-threaded forwards side by side that generate z
 * once between them) give the sequential probes' losses bit for bit: for
 * every tensor tuned (Gaussian) and a tuned subset (Rademacher), on random
 * models whose matrices are large enough that the two threads build them
 * together (lm.c's PAIR_MIN; `shared` counts such slices), and for LoRA,
 * whose small adapters each side builds alone. Sequences of uneven length.
 * A side that fails (injected) fails the probe with its error and leaves
 * the objective working. */
static void paired_equals_sequential(enum model_arch arch, const char *spec, enum rng_dist dist,
                                     int expect_shared)
{
  model_config c = {0};
  c.arch = arch;
  strcpy(c.name, arch == MODEL_GPT2 ? "gpt2" : "llama");
  c.n_layer = 2;
  c.n_embd = 128;
  c.n_head = 4;
  c.n_kv_head = arch == MODEL_GPT2 ? 4 : 2;
  c.n_ff = 512;
  c.n_vocab = 500;
  c.n_ctx = 64;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  c.tied = arch == MODEL_GPT2;
  model *m;
  model_err err = {0, ""};
  zo_err zerr;
  assert_int_equal(model_new(&c, &m, &err), 0);
  rng_stream init = rng_make(3, 0, RNG_INIT, 0, 0);
  rng_axpy(RNG_GAUSSIAN, &init, 0, m->n_params, 0.05f, NULL, m->params);
  lm_tuned t, *tp = NULL;
  if (spec) {
    assert_int_equal(lm_tuned_parse(m, spec, &t, &err), 0);
    tp = &t;
  }
  size_t dim = tp ? t.dim : m->n_params;
  float *theta = malloc(dim * sizeof *theta);
  assert_non_null(theta);
  if (tp)
    lm_tuned_init(m, tp, 4, m->params, theta);
  else
    memcpy(theta, m->params, dim * sizeof *theta);
  /* six examples of 20..45 tokens */
  lm_seq seqs[6];
  lm_example ex[6];
  int32_t ids[6][45];
  rng_stream ts = rng_make(5, 0, RNG_INIT, 1, 0);
  for (int i = 0; i < 6; i++) {
    for (int k = 0; k < 45; k++)
      ids[i][k] = (int32_t)(rng_u32_at(&ts, (uint64_t)(i * 45 + k)) % 500u);
    seqs[i] = (lm_seq){ids[i], 20 + 5 * i, 1};
    ex[i] = (lm_example){&seqs[i], 1, -1};
  }
  lm_data d = {ex, 6, 0};
  model_set_threads(2);
  lm_objective *o;
  zo_objective obj;
  assert_int_equal(lm_objective_new(m, tp, &d, 3, 1, 2, &o, &obj, &err), 0);
  /* lm_objective_new pairs on its own exactly when the memory rule allows */
  size_t allow = m->n_params * sizeof(float) / 8;
  if (allow < LM_PAIR_FREE_BYTES)
    allow = LM_PAIR_FREE_BYTES;
  /* (a BLAS whose threads two callers would share never pairs) */
  assert_int_equal(lm_objective_paired(o) != 0,
                   model_concurrent_forwards() && lm_objective_pair_bytes(o) <= allow);
  if (tp && tp->lora_a) {
    /* the rule counts the second view's LoRA scratch: two buffers of
     * r x the longest side of an adapted tensor (q: n_embd x n_embd) */
    lm_objective *full;
    zo_objective fobj;
    assert_int_equal(lm_objective_new(m, NULL, &d, 3, 1, 2, &full, &fobj, &err), 0);
    assert_int_equal(lm_objective_pair_bytes(o) - lm_objective_pair_bytes(full),
                     2 * (size_t)tp->lora_r * (size_t)c.n_embd * sizeof(float));
    lm_objective_free(full);
  }
  if (!model_concurrent_forwards()) {
    assert_int_equal(lm_objective_set_paired(o, 1, &err), MODEL_EINVAL);
    assert_non_null(strstr(err.msg, "BLAS"));
  }
  for (uint32_t step = 1; step <= 5 && model_concurrent_forwards(); step++) {
    zo_dir dir = {rng_make(6, step, RNG_PERTURB, 0, 0), dist};
    zo_batch zb = {6, step, 0, 0};
    double lp, lm_, pp, pm;
    unsigned long pairs0, shared0, pairs1, shared1;
    assert_int_equal(lm_objective_set_paired(o, 0, &err), 0);
    assert_int_equal(obj.loss_pm(obj.ctx, theta, &dir, 1e-2f, &zb, &lp, &lm_, &zerr), 0);
    assert_int_equal(lm_objective_set_paired(o, 1, &err), 0);
    assert_true(lm_objective_paired(o));
    /* One side fails (the first time before any pair has run, so no
     * buffer of the other side is known yet): an error, no crash, no hang. */
    if (step == 1 || step == 4) {
      lm_objective_fail_next_pair(o, step == 1 ? 0 : 1);
      assert_int_not_equal(obj.loss_pm(obj.ctx, theta, &dir, 1e-2f, &zb, &pp, &pm, &zerr), 0);
      assert_non_null(strstr(zerr.msg, "injected"));
    }
    lm_objective_pair_stats(o, &pairs0, &shared0);
    assert_int_equal(obj.loss_pm(obj.ctx, theta, &dir, 1e-2f, &zb, &pp, &pm, &zerr), 0);
    lm_objective_pair_stats(o, &pairs1, &shared1);
    assert_true(pairs1 == pairs0 + 1); /* the probes did run side by side */
    if (expect_shared)
      assert_true(shared1 > shared0);
    else
      assert_true(shared1 == shared0);
    assert_memory_equal(&lp, &pp, sizeof lp);
    assert_memory_equal(&lm_, &pm, sizeof lm_);
    assert_true(isfinite(lp) && lp != lm_);
  }
  lm_objective_free(o);
  /* One thread cannot pair. */
  model_set_threads(1);
  assert_int_equal(lm_objective_new(m, tp, &d, 3, 1, 1, &o, &obj, &err), 0);
  assert_false(lm_objective_paired(o));
  assert_int_equal(lm_objective_set_paired(o, 1, &err), MODEL_EINVAL);
  assert_non_null(strstr(err.msg, "2 threads"));
  lm_objective_free(o);
  if (tp)
    lm_tuned_free(tp);
  free(theta);
  model_free(m);
}

static void test_paired_probes(void **state)
{
  (void)state;
  paired_equals_sequential(MODEL_GPT2, NULL, RNG_GAUSSIAN, 1);
  paired_equals_sequential(MODEL_LLAMA, "blk.1.*,output.weight", RNG_RADEMACHER, 1);
  paired_equals_sequential(MODEL_LLAMA, "lora:r=4,targets=q,v", RNG_GAUSSIAN, 0);
}

int main(void)
{
  const char *top = getenv("top_srcdir");
  snprintf(fixdir, sizeof fixdir, "%s/tests/fixtures", top ? top : ".");
  strcpy(tmpdir, "/tmp/zotune-test-lm-XXXXXX");
  if (!mkdtemp(tmpdir))
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_view_gpt2_gaussian),  cmocka_unit_test(test_view_llama_rademacher),
      cmocka_unit_test(test_tuned_subset),      cmocka_unit_test(test_lora),
      cmocka_unit_test(test_data_shapes),         cmocka_unit_test(test_data_errors),
      cmocka_unit_test(test_eval_matches_model_loss), cmocka_unit_test(test_objective),
      cmocka_unit_test(test_paired_probes),
  };
  int rv = cmocka_run_group_tests_name("lm", tests, NULL, NULL);
  const char *names[] = {"ok.jsonl", "bad.jsonl", "ev.jsonl", "tr.jsonl"};
  for (size_t i = 0; i < 4; i++) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmpdir, names[i]);
    unlink(path);
  }
  rmdir(tmpdir);
  return rv;
}
