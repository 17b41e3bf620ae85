/* zotune eval and zotune generate. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/lm.h"
#include "cli/objective.h"
#include "model/load.h"
#include "rng/rng.h"

static int model_exit(const char *cmd, const model_err *err)
{
  fprintf(stderr, "zotune %s: %s\n", cmd, err->msg);
  return zo_err_is_user(err->code) ? EXIT_USER : EXIT_INTERNAL;
}

/* The model at --model, or the fine-tuned model of --run. Prints errors. */
static int load_any(const char *cmd, const char *mpath, const char *rpath, const char *at,
                    int threads, model **m)
{
  if (at && !rpath)
    return cli_usage_error(cmd, "--step needs --run");
  if (rpath) {
    zo_err ze = {0, ""};
    if (cli_run_model(rpath, at, threads, m, NULL, &ze) != 0)
      return cli_fail(cmd, &ze);
    return 0;
  }
  model_err err = {0, ""};
  return model_load(mpath, m, &err) == 0 ? 0 : model_exit(cmd, &err);
}

static const char *const eval_help =
    "usage: zotune eval (--model MODEL | --run DIR [--step N|best]) --data FILE.jsonl\n"
    "                   [--batch B] [--threads T] [--json]\n"
    "\n"
    "MODEL is a GGUF file or a Hugging Face folder; --run DIR evaluates the fine-tuned\n"
    "model of a training run (base + replayed log), after its last step or after step N\n"
    "(best: the step with the lowest held-out loss, recorded by train --keep-best).\n"
    "Evaluates a JSONL file, one example per line:\n"
    "  {\"text\": ...}                          loss on every token\n"
    "  {\"prompt\": ..., \"completion\": ...}      loss on the completion's tokens\n"
    "  {\"prompt\": ..., \"choices\": [...], \"answer\": K}\n"
    "                                         loss on the correct choice; accuracy by\n"
    "                                         completion log-likelihood (sum, and per token)\n"
    "Sequences start with BOS; longer than the context they keep their last tokens.\n"
    "--json prints {\"loss\", \"tokens\", \"examples\"[, \"accuracy\", \"accuracy_norm\"]}.\n";

int cmd_eval(int argc, char **argv)
{
  const char *c = "eval";
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"run", required_argument, 0, 'r'},
                                       {"step", required_argument, 0, 'S'},
                                       {"data", required_argument, 0, 'd'},
                                       {"batch", required_argument, 0, 'b'},
                                       {"threads", required_argument, 0, 't'},
                                       {"json", no_argument, 0, 'j'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *mpath = NULL, *dpath = NULL, *rpath = NULL, *at = NULL;
  uint32_t batch = 8, threads = (uint32_t)cli_default_threads();
  int json = 0, o;
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'm':
      mpath = optarg;
      break;
    case 'd':
      dpath = optarg;
      break;
    case 'S':
      at = optarg;
      break;
    case 'r':
      rpath = optarg;
      break;
    case 'b':
      if (cli_u32(c, "--batch", optarg, 1, 4096, &batch) != 0)
        return EXIT_USER;
      break;
    case 't':
      if (cli_u32(c, "--threads", optarg, 1, 1024, &threads) != 0)
        return EXIT_USER;
      break;
    case 'j':
      json = 1;
      break;
    case 'h':
      fputs(eval_help, stdout);
      exit(0);
    default:
      return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!(mpath || rpath) || (mpath && rpath) || !dpath)
    return cli_usage_error(c, "--data and one of --model or --run are required");
  if (cli_set_isa(c, NULL) != 0)
    return EXIT_USER;
  model_err err = {0, ""};
  model *m;
  lm_data d;
  lm_eval_result r;
  int rv = load_any(c, mpath, rpath, at, (int)threads, &m);
  if (rv != 0)
    return rv;
  if (!mpath)
    mpath = rpath;
  rv = lm_data_load(dpath, m, m->cfg.n_ctx, &d, &err);
  if (rv == 0) {
    double t0 = cli_now();
    rv = lm_eval(m, NULL, NULL, &d, (int)batch, (int)threads, &r, &err);
    double secs = cli_now() - t0;
    if (rv == 0 && json) {
      printf("{\"loss\":%.9g,\"tokens\":%ld,\"examples\":%ld", r.loss, r.tokens, r.examples);
      if (d.has_choices)
        printf(",\"accuracy\":%.6g,\"accuracy_norm\":%.6g", r.accuracy, r.accuracy_norm);
      printf(",\"seconds\":%.4g}\n", secs);
    } else if (rv == 0) {
      printf("%s on %s: loss %.6f over %ld tokens (%ld examples, %.0f tokens/s)\n", mpath, dpath,
             r.loss, r.tokens, r.examples, secs > 0 ? r.tokens / secs : 0.0);
      if (d.has_choices)
        printf("accuracy %.4f (length-normalised %.4f)\n", r.accuracy, r.accuracy_norm);
    }
    lm_data_free(&d);
  }
  model_free(m);
  return rv == 0 ? 0 : model_exit(c, &err);
}

static const char *const gen_help =
    "usage: zotune generate (--model MODEL | --run DIR [--step N|best]) --prompt TEXT\n"
    "                       [--max-tokens N] [--temperature X]\n"
    "                       [--top-p P] [--seed S] [--threads T]\n"
    "\n"
    "Continues TEXT (after BOS) and prints the continuation. --temperature 0 (default) is\n"
    "greedy; otherwise tokens are sampled from the top-p nucleus of softmax(logits / X)\n"
    "with uniforms from the seed's RNG_SAMPLE stream, so a seed reproduces a sample.\n"
    "Stops at EOS, after N tokens (default 32), or at the context length.\n";

struct prob {
  float p;
  int id;
};

static int by_prob(const void *a, const void *b)
{
  const struct prob *x = a, *y = b;
  return x->p < y->p ? 1 : x->p > y->p ? -1 : x->id - y->id;
}

/* Greedy when temp == 0, else nucleus sampling with uniform u. */
static int pick(float *logits, int V, double temp, double top_p, float u, struct prob *buf)
{
  int best = 0;
  for (int j = 1; j < V; j++)
    if (logits[j] > logits[best])
      best = j;
  if (temp <= 0.0)
    return best;
  double sum = 0;
  for (int j = 0; j < V; j++) {
    buf[j].p = (float)exp((logits[j] - logits[best]) / temp);
    buf[j].id = j;
    sum += buf[j].p;
  }
  qsort(buf, (size_t)V, sizeof *buf, by_prob);
  double mass = 0, keep = 0;
  int n = 0;
  while (n < V && (n == 0 || mass < top_p * sum)) {
    mass += buf[n].p;
    n++;
  }
  keep = mass;
  double target = (double)u * keep, acc = 0;
  for (int k = 0; k < n; k++) {
    acc += buf[k].p;
    if (acc >= target)
      return buf[k].id;
  }
  return buf[n - 1].id;
}

int cmd_generate(int argc, char **argv)
{
  const char *c = "generate";
  static const struct option opts[] = {{"model", required_argument, 0, 'm'},
                                       {"run", required_argument, 0, 'r'},
                                       {"step", required_argument, 0, 'S'},
                                       {"prompt", required_argument, 0, 'p'},
                                       {"max-tokens", required_argument, 0, 'n'},
                                       {"temperature", required_argument, 0, 'T'},
                                       {"top-p", required_argument, 0, 'P'},
                                       {"seed", required_argument, 0, 's'},
                                       {"threads", required_argument, 0, 't'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  const char *mpath = NULL, *prompt = NULL, *rpath = NULL, *at = NULL;
  uint32_t max_tokens = 32, threads = (uint32_t)cli_default_threads();
  double temp = 0.0, top_p = 1.0;
  uint64_t seed = 0;
  int o;
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int bad = 0;
    switch (o) {
    case 'm':
      mpath = optarg;
      break;
    case 'p':
      prompt = optarg;
      break;
    case 'S':
      at = optarg;
      break;
    case 'r':
      rpath = optarg;
      break;
    case 'n':
      bad = cli_u32(c, "--max-tokens", optarg, 1, 1u << 20, &max_tokens);
      break;
    case 'T':
      bad = cli_double(c, "--temperature", optarg, &temp);
      if (!bad && temp < 0)
        return cli_usage_error(c, "--temperature: must be >= 0");
      break;
    case 'P':
      bad = cli_double(c, "--top-p", optarg, &top_p);
      if (!bad && !(top_p > 0 && top_p <= 1))
        return cli_usage_error(c, "--top-p: must be in (0, 1]");
      break;
    case 's':
      bad = cli_u64(c, "--seed", optarg, INT64_MAX, &seed);
      break;
    case 't':
      bad = cli_u32(c, "--threads", optarg, 1, 1024, &threads);
      break;
    case 'h':
      fputs(gen_help, stdout);
      exit(0);
    default:
      return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
    if (bad)
      return EXIT_USER;
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!(mpath || rpath) || (mpath && rpath) || !prompt)
    return cli_usage_error(c, "--prompt and one of --model or --run are required");
  if (cli_set_isa(c, NULL) != 0)
    return EXIT_USER;
  model_err err = {0, ""};
  model *m;
  int rv = load_any(c, mpath, rpath, at, (int)threads, &m);
  if (rv != 0)
    return rv;
  if (!mpath)
    mpath = rpath;
  if (!m->tok) {
    model_free(m);
    fprintf(stderr, "zotune generate: %s has no tokenizer\n", mpath);
    return EXIT_USER;
  }
  int32_t *p = NULL;
  size_t np = 0;
  if ((rv = tok_encode(m->tok, prompt, strlen(prompt), 0, &p, &np, &err)) != 0) {
    model_free(m);
    return model_exit(c, &err);
  }
  int ctx = m->cfg.n_ctx, V = m->cfg.n_vocab, bos = tok_bos(m->tok) >= 0;
  int cap = bos + (int)np + (int)max_tokens;
  if (cap > ctx)
    cap = ctx;
  int32_t *ids = malloc((size_t)(bos + np + max_tokens) * sizeof *ids);
  float *logits = malloc((size_t)V * sizeof *logits);
  struct prob *buf = malloc((size_t)V * sizeof *buf);
  model_ws *ws = NULL;
  if (!ids || !logits || !buf) {
    rv = model_fail(&err, MODEL_ENOMEM, "out of memory");
    goto out;
  }
  int n = 0;
  if (bos)
    ids[n++] = tok_bos(m->tok);
  for (size_t i = 0; i < np && n < cap; i++)
    ids[n++] = p[i];
  model_set_threads((int)threads);
  if ((rv = model_ws_new(m, 1, cap, &ws, &err)) != 0)
    goto out;
  model_view v = model_plain_view(m);
  size_t printed = 0;
  int first_new = n;
  for (uint32_t k = 0; k < max_tokens && n < cap; k++) {
    model_batch b = {1, n, ids, &n, NULL};
    if ((rv = model_forward(m, &v, &b, ws, &err)) != 0 ||
        (rv = model_logits_at(m, &v, ws, 0, n - 1, logits, &err)) != 0)
      goto out;
    rng_stream s = rng_make(seed, k, RNG_SAMPLE, 0, 0);
    int id = pick(logits, V, temp, top_p, rng_at(RNG_UNIFORM, &s, 0), buf);
    if (id == tok_eos(m->tok))
      break;
    ids[n++] = id;
    /* Print what is new of the decoded continuation (whole characters). */
    char *text;
    size_t len;
    if ((rv = tok_decode(m->tok, ids + first_new, (size_t)(n - first_new), &text, &len, &err)) != 0)
      goto out;
    fwrite(text + printed, 1, len - printed, stdout);
    fflush(stdout);
    printed = len;
    free(text);
  }
  putchar('\n');
out:
  model_ws_free(ws);
  free(ids);
  free(logits);
  free(buf);
  free(p);
  model_free(m);
  return rv == 0 ? 0 : model_exit(c, &err);
}
