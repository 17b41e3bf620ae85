/* cli lm: language-model data and objectives, wiring model/ to zo/ and rng/.
 *
 *   lm_data       a JSONL file of {"text"}, {"prompt","completion"} or
 *                 {"prompt","choices","answer"} lines, tokenized;
 *   lm_eval       mean token cross-entropy (and multiple-choice accuracy);
 *   lm_objective  the zo_objective of a model on a data set: L(theta ± eps z)
 *                 with each weight slice built as theta + eps*z in scratch
 *                 right before the forward pass uses it (theta is never
 *                 written), on a batch sampled from the RNG_BATCH stream.
 *
 * Ownership: lm_data_load / lm_objective_new allocate what lm_data_free /
 * lm_objective_free release; an lm_objective borrows its model and data,
 * which must outlive it.
 */
#ifndef ZOTUNE_CLI_LM_H
#define ZOTUNE_CLI_LM_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "zo/objective.h"

typedef struct lm_seq {
  int32_t *ids;
  int n;
  int start; /* first token that is a target (completion); 1 for plain text */
} lm_seq;

typedef struct lm_example {
  lm_seq *seqs; /* 1, or one per choice */
  int n_seqs;
  int answer; /* index of the correct choice, -1 without choices */
} lm_example;

typedef struct lm_data {
  lm_example *ex;
  size_t n;
  int has_choices;
} lm_data;

/* Reads and tokenizes path. A bad line is MODEL_ECORRUPT naming the file,
 * the line and what is wrong; sequences longer than max_len keep their last
 * max_len tokens. */
int lm_data_load(const char *path, const model *m, int max_len, lm_data *d, model_err *err);
void lm_data_free(lm_data *d);

/* Which tensors are tuned: zo/ sees only them, packed in canonical tensor
 * order into one vector of dim floats; every other tensor keeps the model's
 * own (base) values. */
typedef struct lm_tuned {
  size_t *packed; /* per model tensor: offset in the packed vector, or SIZE_MAX (frozen) */
  size_t dim;
  int n_tuned;
  /* LoRA (spec "lora:..."): per model tensor, the packed offsets of its
   * adapter A (r x in) and B (out x r), or SIZE_MAX; the tensor itself is
   * frozen and reads as W + scale * B A. */
  size_t *lora_a, *lora_b;
  int lora_r;
  float lora_scale;
} lm_tuned;
/* spec: "all"; "layers:A-B" (blocks A..B, both included); comma-separated
 * shell patterns over tensor names ("blk.*.attn_q.weight,output_norm.*"); or
 * "lora:r=R,targets=T[,T...][,alpha=X]" with targets among q k v o qkv gate up
 * down (scale alpha/r; alpha defaults to r). Matching nothing is an error
 * naming the spec. */
int lm_tuned_parse(const model *m, const char *spec, lm_tuned *t, model_err *err);
void lm_tuned_free(lm_tuned *t);
/* The starting packed vector: tuned tensors copied from params; LoRA A drawn
 * N(0, 1/in) from the seed's INIT stream (slot 2, at the adapter's packed
 * offset), B zero. */
void lm_tuned_init(const model *m, const lm_tuned *t, uint64_t seed, const float *params,
                   float *packed);
/* params <- packed: tuned tensors copied, LoRA adapters merged (for export). */
void lm_tuned_unpack(const model *m, const lm_tuned *t, const float *packed, float *params);

typedef struct lm_eval_result {
  double loss;   /* mean cross-entropy per target token */
  long tokens;   /* target tokens */
  double accuracy, accuracy_norm; /* choices: by summed / length-normalised log-likelihood */
  long examples;
} lm_eval_result;

/* Evaluates every example at theta (laid out by tuned; NULL theta: the
 * model's own parameters). */
int lm_eval(const model *m, const lm_tuned *tuned, const float *theta, const lm_data *d, int batch,
            int threads, lm_eval_result *res, model_err *err);

/* A view of the weights for the forward pass: tuned tensors from a packed
 * vector theta (+ eps*z, z from dir, indexed in the packed space), frozen
 * tensors from the model's parameters. tuned NULL: every tensor is tuned and
 * theta is laid out like m->params. */
typedef struct lm_view lm_view;
int lm_view_new(const model *m, const lm_tuned *tuned, lm_view **out, model_err *err);
void lm_view_free(lm_view *v);
/* Points the view at theta and direction dir with scale eps (eps 0 or dir
 * NULL: plain theta); returns the model_view to hand to model_forward. */
model_view lm_view_set(lm_view *v, const float *theta, const zo_dir *dir, float eps,
                       int threads);

typedef struct lm_objective lm_objective;
/* The objective of m on d (tuned NULL: every tensor) with batches of `batch`
 * examples sampled with replacement from the RNG_BATCH stream of (seed,
 * step, slot, dir), from the shard of worker slot w: the examples whose index
 * i has i % shards == w % shards (so W workers in one process see exactly the
 * data W separate workers with --shard w/W would). */
int lm_objective_new(const model *m, const lm_tuned *tuned, const lm_data *d, int batch,
                     int shards, int threads, lm_objective **out, zo_objective *obj,
                     model_err *err);
void lm_objective_free(lm_objective *o);
/* Paired probes: with 2 threads, L(theta + eps z) and L(theta - eps z) run
 * as two single-threaded forwards side by side that generate z once between
 * them (instead of one forward after the other, each on 2 threads, each
 * generating z). The losses are bit-identical either way. lm_objective_new
 * turns pairing on when threads is 2 and the second workspace and scratch
 * (lm_objective_pair_bytes) take at most 1/8 of the weights' bytes or
 * LM_PAIR_FREE_BYTES, whichever is larger.
 * set_paired(o, 1) fails unless threads is 2 and OpenMP is built in. */
#define LM_PAIR_FREE_BYTES ((size_t)32 << 20)
int lm_objective_set_paired(lm_objective *o, int on, model_err *err);
int lm_objective_paired(const lm_objective *o);
size_t lm_objective_pair_bytes(const lm_objective *o);
/* For tests: probe pairs run side by side, and slices the two sides built
 * together, since o was made. */
void lm_objective_pair_stats(const lm_objective *o, unsigned long *pairs, unsigned long *shared);
/* For tests: in the next paired probe, side `side` (0: +eps, 1: -eps) fails
 * before its forward, as an allocation failure there would; the probe
 * returns that error and the other side finishes alone. */
void lm_objective_fail_next_pair(lm_objective *o, int side);

#endif
