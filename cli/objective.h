/* cli objective: the objective and base parameters a run's config names.
 *
 * The "objective" section of a run's config.json is either
 *   {"kind": "function", "name": ..., "dim": ...}                (optimize)
 *   {"kind": "lm", "model": PATH, "model_sha256": HEX, "data": PATH,
 *    "data_sha256": HEX, "tune": SPEC, "batch": B, "max_len": L}  (train)
 * The base of an lm run is the packed vector of its tuned parameters (LoRA
 * adapters initialised from the run seed); the model and data files must
 * still hash to what the run recorded.
 *
 * Ownership: cli_objective_open fills o; cli_objective_close frees
 * everything it holds (model, tuned set, data, objective, base).
 */
#ifndef ZOTUNE_CLI_OBJECTIVE_H
#define ZOTUNE_CLI_OBJECTIVE_H

#include <jansson.h>

#include "cli/lm.h"
#include "zo/functions.h"
#include "zo/objective.h"
#include "zo/spsa.h"

typedef struct cli_objective {
  zo_objective obj;
  int is_lm;
  enum zo_function fn;
  model *m;        /* lm: the base model */
  lm_tuned tuned;  /* lm: what zo/ sees */
  lm_data data;    /* lm: training data (when opened with data) */
  lm_objective *lo;
  float *base; /* base parameters (obj.dim of them) */
  int base_is_params; /* lm, every tensor tuned: base is m->params itself (not a copy) */
  uint8_t base_hash[32];
} cli_objective;

json_t *cli_function_doc(enum zo_function f, size_t dim);
/* Hashes a model file, or every file of a model folder (name and content,
 * in name order). */
int cli_hash_path(const char *path, uint8_t out[32], zo_err *err);
/* Opens the objective of doc. with_data: also load the training data and
 * build the loss (training); without, only the base (replay, hash, export).
 * workers and threads matter only with data. */
int cli_objective_open(json_t *doc, uint64_t seed, int with_data, int workers, int threads,
                       cli_objective *o, zo_err *err);
void cli_objective_close(cli_objective *o);
/* A state starting from o's base: in place on the model's own parameters
 * when base_is_params (one copy of the weights in memory), else a copy. */
int cli_state_init(cli_objective *o, const zo_config *c, zo_state *st, zo_err *err);
/* Reads DIR/best.json (written by train --keep-best): 1 with *step and
 * *loss set, 0 when there is no such file, -1 when it is malformed. */
int cli_best_read(const char *dir, uint32_t *step, double *loss);
/* The fine-tuned model of a training run: base model + replayed log, tuned
 * tensors written back (LoRA merged). at: NULL for the last step, a step
 * number, or "best" (the step of DIR/best.json, written by train
 * --keep-best). Starts from the newest valid snapshot at or before that step
 * (DIR/snapshots, or DIR/best/snapshots for "best"), then replays the log.
 * *steps: the step reached. The caller frees the model with model_free. */
int cli_run_model(const char *dir, const char *at, int threads, model **out, uint32_t *steps,
                  zo_err *err);

#endif
