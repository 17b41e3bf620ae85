/* fixture: the PyTorch reference fixtures (tests/fixtures/NAME.expected.json,
 * made by tests/reference/) as the model tests read them: a fixture's model
 * (GGUF file or Hugging Face folder) and batch, and the check of a model's
 * logits and losses against it. Used by test_model and test_safetensors;
 * everything is static inline, so a test that uses part of it gets no
 * unused-function warnings. Include it after cmocka.h; the test's main
 * sets fixdir. */
#ifndef ZOTUNE_TEST_FIXTURE_H
#define ZOTUNE_TEST_FIXTURE_H

#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/hf.h"
#include "model/load.h"

static char fixdir[4096];

static inline void fixture_path(char *buf, size_t n, const char *name)
{
  snprintf(buf, n, "%s/%s", fixdir, name);
}

/* Tolerance rule of the fixtures: |got - want| <= tol * max(1, |want|). */
static inline int close_enough(double got, double want, double tol)
{
  return fabs(got - want) <= tol * fmax(1.0, fabs(want));
}

typedef struct fx {
  json_t *doc;
  model *m;
  int B, T;
  int32_t *tokens;
  int *len;
  uint8_t *target; /* completion: position t counts when token t+1 is completion */
} fx;

/* The fixture's batch and its model (GGUF file or HF folder, by "format"). */
static inline void fx_load(fx *f, const char *name)
{
  char path[4200];
  model_err err = {0, ""};
  json_error_t je;
  memset(f, 0, sizeof *f);
  fixture_path(path, sizeof path, name);
  f->doc = json_load_file(path, 0, &je);
  if (!f->doc)
    fail_msg("%s: %s", path, je.text);
  fixture_path(path, sizeof path, json_string_value(json_object_get(f->doc, "model")));
  const char *format = json_string_value(json_object_get(f->doc, "format"));
  int rc = strcmp(format, "hf_safetensors") == 0 ? model_load_hf(path, &f->m, &err)
                                                 : model_load_gguf(path, &f->m, &err);
  if (rc != 0)
    fail_msg("%s", err.msg);
  json_t *batch = json_object_get(f->doc, "batch");
  json_t *mask = json_object_get(f->doc, "completion_mask");
  f->B = (int)json_array_size(batch);
  for (int s = 0; s < f->B; s++)
    if ((int)json_array_size(json_array_get(batch, s)) > f->T)
      f->T = (int)json_array_size(json_array_get(batch, s));
  f->tokens = calloc((size_t)f->B * f->T, sizeof *f->tokens);
  f->len = calloc((size_t)f->B, sizeof *f->len);
  f->target = calloc((size_t)f->B * f->T, 1);
  for (int s = 0; s < f->B; s++) {
    json_t *seq = json_array_get(batch, s), *ms = json_array_get(mask, s);
    f->len[s] = (int)json_array_size(seq);
    for (int t = 0; t < f->len[s]; t++) {
      f->tokens[(size_t)s * f->T + t] = (int32_t)json_integer_value(json_array_get(seq, t));
      if (t + 1 < f->len[s])
        f->target[(size_t)s * f->T + t] = (uint8_t)json_integer_value(json_array_get(ms, t + 1));
    }
  }
}

static inline void fx_free(fx *f)
{
  json_decref(f->doc);
  model_free(f->m);
  free(f->tokens);
  free(f->len);
  free(f->target);
}

/* Logits at the fixture's positions and both losses, within its tolerance. */
static inline void check_against_fixture(const fx *f, const char *name)
{
  model_err err = {0, ""};
  model_ws *ws;
  const model *m = f->m;
  const double tol = json_real_value(json_object_get(f->doc, "tolerance"));
  json_t *cfg = json_object_get(f->doc, "config");
  assert_true(tol > 0 && tol <= 1e-4);
  assert_int_equal(m->cfg.n_layer, json_integer_value(json_object_get(cfg, "n_layer")));
  assert_int_equal(m->cfg.n_head, json_integer_value(json_object_get(cfg, "n_head")));
  assert_int_equal(m->cfg.n_kv_head, json_integer_value(json_object_get(cfg, "n_kv_head")));
  assert_int_equal(m->cfg.n_vocab, json_integer_value(json_object_get(cfg, "n_vocab")));
  assert_int_equal(m->cfg.n_ctx, json_integer_value(json_object_get(cfg, "n_ctx")));
  assert_int_equal(m->cfg.n_ff, json_integer_value(json_object_get(cfg, "n_ff")));
  assert_int_equal(m->cfg.tied, json_is_true(json_object_get(cfg, "tied_embeddings")));
  assert_int_equal(model_ws_new(m, f->B, f->T, &ws, &err), 0);
  model_view v = model_plain_view(m);
  model_batch b = {f->B, f->T, f->tokens, f->len, NULL};
  assert_int_equal(model_forward(m, &v, &b, ws, &err), 0);

  float *lg = malloc((size_t)m->cfg.n_vocab * sizeof *lg);
  json_t *logits = json_object_get(f->doc, "logits");
  int checked = 0;
  for (int s = 0; s < f->B; s++) {
    json_t *entries = json_array_get(logits, s);
    for (size_t e = 0; e < json_array_size(entries); e++) {
      json_t *ent = json_array_get(entries, e);
      int pos = (int)json_integer_value(json_array_get(ent, 0));
      json_t *want = json_array_get(ent, 1);
      assert_int_equal(model_logits_at(m, &v, ws, s, pos, lg, &err), 0);
      for (int j = 0; j < m->cfg.n_vocab; j++) {
        double w = json_number_value(json_array_get(want, (size_t)j));
        if (!close_enough(lg[j], w, tol))
          fail_msg("%s: sequence %d position %d logit %d: got %.8g want %.8g", name, s, pos, j,
                   (double)lg[j], w);
        checked++;
      }
    }
  }
  assert_true(checked >= f->B * 3 * m->cfg.n_vocab);

  double sum;
  long count;
  json_t *counts = json_object_get(f->doc, "loss_counts");
  assert_int_equal(model_loss(m, &v, &b, ws, &sum, &count, &err), 0);
  assert_int_equal(count, json_integer_value(json_object_get(counts, "all")));
  double want = json_number_value(json_object_get(f->doc, "loss_all"));
  if (!close_enough(sum / count, want, tol))
    fail_msg("%s: loss_all %.10g, want %.10g", name, sum / count, want);
  b.target = f->target;
  assert_int_equal(model_loss(m, &v, &b, ws, &sum, &count, &err), 0);
  assert_int_equal(count, json_integer_value(json_object_get(counts, "completion")));
  want = json_number_value(json_object_get(f->doc, "loss_completion"));
  if (!close_enough(sum / count, want, tol))
    fail_msg("%s: loss_completion %.10g, want %.10g", name, sum / count, want);
  free(lg);
  model_ws_free(ws);
}

#endif
