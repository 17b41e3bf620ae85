#define _XOPEN_SOURCE 700 /* realpath */
/* zotune train: zeroth-order fine-tuning of a language model, every step's
 * one-byte records in the run's log; resumes from the log. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/objective.h"
#include "model/gguf.h"
#include "model/hf.h"
#include "model/load.h"
#include "zo/config.h"
#include "zo/hash.h"
#include "zo/run.h"
#include "zo/snapshot.h"

static const char *const help =
    "usage: zotune train --model MODEL --data TRAIN.jsonl --run DIR --steps N --seed S [options]\n"
    "\n"
    "Fine-tunes MODEL (a GGUF file or a Hugging Face folder) with forward passes only:\n"
    "two-sided SPSA (MeZO) on batches of TRAIN.jsonl, each projected gradient sent as one\n"
    "byte to DIR/log.zol. Running again with the same options resumes from the log; a run\n"
    "killed at any point reaches the same final parameters.\n"
    "\n"
    "  --model PATH         base model (its SHA-256 is frozen into the run)\n"
    "  --data FILE          training JSONL: {\"text\"}, {\"prompt\",\"completion\"} or\n"
    "                       {\"prompt\",\"choices\",\"answer\"} (trained on the correct choice)\n"
    "  --eval-data FILE     held-out JSONL, evaluated before, every --eval-every steps, after\n"
    "  --run DIR            run directory (created, or resumed if it holds this run)\n"
    "  --steps N            steps (the schedule's length)\n"
    "  --seed S             run seed, 0 .. 2^63-1\n"
    "  --tune SPEC          all | norms | layers:A-B | patterns (blk.*.attn_q.weight,...) |\n"
    "                       lora:r=8,targets=q,v[,alpha=16]   (all)\n"
    "  --batch B            examples per probe (16)\n"
    "  --max-len L          tokens per example, keeping the end (the model's context)\n"
    "  --workers W          virtual worker slots; slot w trains on examples i % W == w (1)\n"
    "  --n-directions n     directions per worker per step (1)\n"
    "  --directions MODE    per-worker | shared | pool:K (per-worker)\n"
    "  --dist NAME          gaussian | rademacher (gaussian)\n"
    "  --codec NAME         log | linear | none (log)\n"
    "  --lr X               peak learning rate (100 / tuned parameters, 2 digits)\n"
    "  --eps X              perturbation size (1e-3)\n"
    "  --schedule NAME      constant | linear | cosine (constant); --warmup N; --min-lr-ratio X\n"
    "  --weight-decay X     decoupled weight decay (0)\n"
    "  --eval-every K       evaluate every K steps (steps/10)\n"
    "  --snapshot-every K   save the state every K steps (DIR/snapshots; resume starts from\n"
    "                       the newest valid one instead of replaying the whole log) (off)\n"
    "  --keep-snapshots N   snapshots to keep (2)\n"
    "  --keep-best          keep the state with the lowest held-out loss so far\n"
    "                       (DIR/best.json, DIR/best/snapshots; export/eval/generate\n"
    "                       --run DIR --step best use it)\n"
    "  --threads T          threads (all cores)\n"
    "  --json               one JSON line per report on stdout\n"
    "  --profile            print where a step's time goes\n";

enum {
  O_MODEL = 256, O_DATA, O_EVAL, O_RUN, O_TUNE, O_BATCH, O_MAXLEN, O_EVERY, O_THREADS, O_JSON,
  O_PROFILE, O_HELP, O_SNAP, O_KEEP, O_BEST
};

static const struct option opts[] = {
    CLI_ZO_LONGOPTS,
    {"model", required_argument, 0, O_MODEL},        {"data", required_argument, 0, O_DATA},
    {"eval-data", required_argument, 0, O_EVAL},     {"run", required_argument, 0, O_RUN},
    {"tune", required_argument, 0, O_TUNE},          {"batch", required_argument, 0, O_BATCH},
    {"max-len", required_argument, 0, O_MAXLEN},     {"eval-every", required_argument, 0, O_EVERY},
    {"threads", required_argument, 0, O_THREADS},    {"json", no_argument, 0, O_JSON},
    {"profile", no_argument, 0, O_PROFILE},          {"snapshot-every", required_argument, 0, O_SNAP},
    {"keep-best", no_argument, 0, O_BEST},           {"keep-snapshots", required_argument, 0, O_KEEP},
    {"help", no_argument, 0, O_HELP},                {0, 0, 0, 0}};

struct targs {
  const char *model, *data, *eval, *run, *tune;
  uint32_t batch, max_len, every, threads, snap_every, keep;
  int json, profile, keep_best;
  cli_zo_seen seen;
  zo_config cfg;
};

/* The default learning rate: LR_AUTO_C / (tuned parameters), to two
 * significant digits. ZO-SGD's stable step shrinks like 1/d; on the bundled
 * example the best lr times d was 100-230 for every tuned set (norms, head,
 * LoRA, all: docs/experiments.md), and MeZO's published settings have lr * d
 * from 350 (RoBERTa-large) to 1300 (OPT-13B), so 100 is on the safe side. */
#define LR_AUTO_C 100.0

static double lr_auto(size_t dim)
{
  char buf[32];
  snprintf(buf, sizeof buf, "%.2g", LR_AUTO_C / (double)dim);
  return strtod(buf, NULL);
}

static int parse(int argc, char **argv, struct targs *a)
{
  const char *c = "train";
  int o;
  memset(a, 0, sizeof *a);
  zo_config_defaults(&a->cfg);
  a->cfg.lr = 1e-4; /* replaced by lr_auto() unless --lr is given */
  a->tune = "all";
  a->batch = 16;
  a->keep = 2;
  a->threads = (uint32_t)cli_default_threads();
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int bad = 0;
    switch (o) {
    case O_MODEL: a->model = optarg; break;
    case O_DATA: a->data = optarg; break;
    case O_EVAL: a->eval = optarg; break;
    case O_RUN: a->run = optarg; break;
    case O_TUNE: a->tune = optarg; break;
    case O_BATCH: bad = cli_u32(c, "--batch", optarg, 1, 4096, &a->batch); break;
    case O_MAXLEN: bad = cli_u32(c, "--max-len", optarg, 2, 1u << 20, &a->max_len); break;
    case O_EVERY: bad = cli_u32(c, "--eval-every", optarg, 1, UINT32_MAX, &a->every); break;
    case O_SNAP: bad = cli_u32(c, "--snapshot-every", optarg, 1, UINT32_MAX, &a->snap_every); break;
    case O_KEEP: bad = cli_u32(c, "--keep-snapshots", optarg, 1, 1000000, &a->keep); break;
    case O_THREADS: bad = cli_u32(c, "--threads", optarg, 1, 1024, &a->threads); break;
    case O_JSON: a->json = 1; break;
    case O_PROFILE: a->profile = 1; break;
    case O_BEST: a->keep_best = 1; break;
    case O_HELP:
      fputs(help, stdout);
      exit(0);
    default:
      if (o < CLI_O_ZO || o >= CLI_O_ZO_END)
        return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
      if (cli_zo_option(c, o, optarg, &a->cfg, &a->seen) != 0)
        return EXIT_USER;
    }
    if (bad)
      return EXIT_USER;
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!a->model || !a->data || !a->run || !a->seen.steps || !a->seen.seed)
    return cli_usage_error(c, "--model, --data, --run, --steps and --seed are required");
  if (a->keep_best && !a->eval)
    return cli_usage_error(c, "--keep-best needs --eval-data");
  a->cfg.schedule.total = a->cfg.steps;
  if (!a->every)
    a->every = a->cfg.steps / 10 > 1 ? a->cfg.steps / 10 : 1;
  zo_err err;
  if (zo_config_validate(&a->cfg, &err) != 0)
    return cli_usage_error(c, "%s", err.msg);
  return 0;
}

/* The objective section of the run's config: paths made absolute, the
 * model's and the data's SHA-256 frozen with them. */
static int objective_doc(const struct targs *a, json_t **out, zo_err *err)
{
  char mabs[4096], dabs[4096], mh[65], dh[65];
  uint8_t h[32];
  int rv;
  if (!realpath(a->model, mabs))
    return zo_fail(err, ZO_ENOENT, "--model %s: no such file or folder", a->model);
  if (!realpath(a->data, dabs))
    return zo_fail(err, ZO_ENOENT, "--data %s: no such file", a->data);
  if ((rv = cli_hash_path(mabs, h, err)) != 0)
    return rv;
  zo_hex(h, mh);
  if ((rv = cli_hash_path(dabs, h, err)) != 0)
    return rv;
  zo_hex(h, dh);
  *out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I}", "kind", "lm", "model", mabs,
                   "model_sha256", mh, "data", dabs, "data_sha256", dh, "tune", a->tune, "batch",
                   (json_int_t)a->batch, "max_len", (json_int_t)(a->max_len ? a->max_len : 1u << 20));
  return *out ? 0 : zo_fail(err, ZO_ENOMEM, "out of memory");
}

struct report {
  int tty, json;
  double t0, last;
  uint32_t start;
  double avg;     /* moving average of the probe loss */
  double eval;    /* last held-out loss, NAN before the first */
  double eval_acc;
};

static void fmt_time(double s, char *buf, size_t n)
{
  if (s < 0 || !isfinite(s))
    snprintf(buf, n, "?");
  else if (s < 60)
    snprintf(buf, n, "%.0fs", s);
  else if (s < 3600)
    snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
  else
    snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

static void show(struct report *r, const zo_state *st, const zo_config *cfg, uint64_t bytes,
                 int final)
{
  double el = cli_now() - r->t0, rate = el > 0 ? (st->step - r->start) / el : 0;
  char eta[32];
  fmt_time(rate > 0 ? (cfg->steps - st->step) / rate : -1, eta, sizeof eta);
  if (r->json) {
    printf("{\"step\":%u,\"steps\":%u,\"loss\":%.6g,\"eval_loss\":%.6g,\"steps_per_s\":%.4g,"
           "\"log_bytes\":%llu}\n",
           st->step, cfg->steps, r->avg, r->eval, rate, (unsigned long long)bytes);
    fflush(stdout);
    return;
  }
  if (r->tty) {
    int w = 24, fill = cfg->steps ? (int)((double)st->step / cfg->steps * w) : w;
    char bar[32];
    for (int i = 0; i < w; i++)
      bar[i] = i < fill ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r[%s] step %u/%u  %.1f steps/s  loss %.4f  eval %.4f  ETA %s  log %.1f KB  ",
            bar, st->step, cfg->steps, rate, r->avg, r->eval, eta, bytes / 1024.0);
    if (final)
      fputc('\n', stderr);
  } else {
    fprintf(stderr, "step %u/%u  %.2f steps/s  loss %.4f  eval %.4f  ETA %s  log %llu bytes\n",
            st->step, cfg->steps, rate, r->avg, r->eval, eta, (unsigned long long)bytes);
  }
}

static int run_eval(const cli_objective *ob, const zo_state *st, const lm_data *dev, int threads,
                    lm_eval_result *res, zo_err *err)
{
  model_err me = {0, ""};
  int rv = lm_eval(ob->m, &ob->tuned, st->theta, dev, 8, threads, res, &me);
  return rv == 0 ? 0 : zo_fail(err, me.code, "%s", me.msg);
}

/* --keep-best: the state after step st->step had the lowest held-out loss so
 * far. The snapshot goes first (the log is synced before it), then
 * best.json names it; a crash between the two leaves best.json at an older
 * step, which the log still rebuilds. */
static int save_best(const zo_run *run, const char *dir, const zo_state *st, double loss,
                     zo_err *err)
{
  char bdir[4200];
  snprintf(bdir, sizeof bdir, "%s/best", dir);
  if (mkdir(bdir, 0755) != 0 && errno != EEXIST)
    return zo_fail(err, ZO_EIO, "%s: cannot create: %s", bdir, strerror(errno));
  int rv = st->step > 0 ? zo_log_sync(run->log, err) : 0;
  if (rv == 0 && st->step > 0)
    rv = zo_snapshot_write(bdir, run->config_hash, st, 1, err);
  json_t *b = json_pack("{s:I, s:f}", "step", (json_int_t)st->step, "eval_loss", loss);
  if (rv == 0)
    rv = b ? cli_write_json(run, "best.json", b, err) : zo_fail(err, ZO_ENOMEM, "out of memory");
  json_decref(b);
  return rv;
}

int cmd_train(int argc, char **argv)
{
  const char *c = "train";
  struct targs a;
  zo_err err = {0, ""};
  cli_objective ob = {0};
  zo_run *run = NULL;
  zo_state st = {0};
  zo_record *rec = NULL;
  FILE *metrics = NULL;
  lm_data dev = {0};
  json_t *objdoc = NULL;
  double t_probe = 0, t_apply = 0, t_eval = 0, t_log = 0;
  lm_eval_result before = {0}, after = {0};
  int rv = parse(argc, argv, &a);
  if (rv != 0)
    return rv;
  if (cli_set_isa(c, NULL) != 0)
    return EXIT_USER;
  model_set_threads((int)a.threads);
  if ((rv = objective_doc(&a, &objdoc, &err)) != 0 ||
      (rv = cli_objective_open(objdoc, a.cfg.seed, 1, (int)a.cfg.workers, (int)a.threads, &ob,
                               &err)) != 0)
    goto out;
  if (!a.seen.lr) {
    a.cfg.lr = lr_auto(ob.tuned.dim);
    if (!a.json)
      fprintf(stderr, "learning rate %g (%g / %zu tuned parameters; set it with --lr)\n", a.cfg.lr,
              LR_AUTO_C, ob.tuned.dim);
  }
  json_t *doc = zo_run_doc(&a.cfg, objdoc, ob.base_hash);
  rv = zo_run_start(a.run, doc, &run, &err);
  json_decref(doc);
  if (rv != 0)
    goto out;
  if (run->recovery.torn)
    fprintf(stderr, "zotune train: %s/log.zol: dropped a torn last step (%llu bytes); resuming "
                    "from the last whole step\n",
            a.run, (unsigned long long)run->recovery.dropped_bytes);
  const zo_config *cfg = &run->cfg;
  if ((rv = cli_state_init(&ob, cfg, &st, &err)) != 0)
    goto out;
  if (a.eval) {
    model_err me = {0, ""};
    int ml = a.max_len ? (int)a.max_len : ob.m->cfg.n_ctx;
    if (lm_data_load(a.eval, ob.m, ml < ob.m->cfg.n_ctx ? ml : ob.m->cfg.n_ctx, &dev, &me) != 0) {
      rv = zo_fail(&err, me.code, "%s", me.msg);
      goto out;
    }
  }
  if (a.eval) {
    zo_state base = st; /* the base: theta before any step */
    base.theta = ob.base;
    if ((rv = run_eval(&ob, &base, &dev, (int)a.threads, &before, &err)) != 0)
      goto out;
    if (!a.json)
      fprintf(stderr, "held-out loss before: %.4f nats/token (%ld tokens)%s\n", before.loss,
              before.tokens, run->resumed ? " (the base model)" : "");
  }
  if (run->resumed) { /* start from the newest valid snapshot, then replay the rest */
    int found;
    char why[512];
    zo_snapshot_load(a.run, run->config_hash, (uint32_t)zo_log_nsteps(run->log), &st, &found, why,
                     sizeof why, &err);
    if (why[0])
      fprintf(stderr, "zotune train: ignored snapshot %s\n", why);
    if (found)
      fprintf(stderr, "zotune train: starting from the snapshot at step %u\n", st.step);
  }
  if ((rv = zo_spsa_replay(cfg, &st, run->log, zo_log_nsteps(run->log), (int)a.threads, &err)) != 0)
    goto out;
  if (run->resumed)
    fprintf(stderr, "zotune train: resuming %s at step %u of %u\n", a.run, st.step, cfg->steps);
  char mpath[4096];
  zo_run_path(run, "metrics.jsonl", mpath, sizeof mpath);
  if (!(metrics = fopen(mpath, "a"))) {
    rv = zo_fail(&err, ZO_EIO, "%s: cannot open for appending", mpath);
    goto out;
  }
  size_t per_step = (size_t)cfg->workers * cfg->directions;
  if (!(rec = malloc(per_step * sizeof *rec))) {
    rv = zo_fail(&err, ZO_ENOMEM, "out of memory");
    goto out;
  }
  struct report r = {!a.json && isatty(2), a.json, cli_now(), 0, st.step, NAN, NAN, NAN};
  if (a.eval) {
    r.eval = before.loss;
    if (st.step == 0)
      fprintf(metrics, "{\"step\":0,\"eval_loss\":%.9g,\"eval_accuracy\":%.6g}\n", before.loss,
              before.accuracy);
  }
  double best = INFINITY; /* --keep-best: the lowest held-out loss so far, after best_step */
  uint32_t best_step = 0;
  if (a.keep_best) {
    if (cli_best_read(a.run, &best_step, &best) != 1 || best_step > st.step) {
      best = INFINITY; /* nothing recorded: the next evaluation is the best so far */
      best_step = 0;
      if (st.step == 0) { /* a new run: the base is */
        best = before.loss;
        if ((rv = save_best(run, a.run, &st, before.loss, &err)) != 0)
          goto out;
      }
    }
  }
  uint32_t report_every = cfg->steps / 20 > 1 ? cfg->steps / 20 : 1;
  while (st.step < cfg->steps) {
    double t = cli_now(), loss = 0;
    uint32_t n = 0;
    for (uint32_t w = 0; w < cfg->workers; w++) {
      zo_probe_stats ps;
      if ((rv = zo_spsa_probe(cfg, &st, &ob.obj, w, rec + (size_t)w * cfg->directions, &ps,
                              &err)) != 0)
        goto out;
      loss += ps.loss_sum;
      n += ps.nrec;
    }
    loss /= n ? n : 1;
    double t2 = cli_now();
    if ((rv = zo_log_append(run->log, rec, (uint32_t)per_step, 0, &err)) != 0)
      goto out;
    double t3 = cli_now();
    if ((rv = zo_spsa_apply(cfg, &st, rec, (uint32_t)per_step, (int)a.threads, &err)) != 0)
      goto out;
    double t4 = cli_now();
    t_probe += t2 - t;
    t_log += t3 - t2;
    t_apply += t4 - t3;
    r.avg = isfinite(r.avg) ? 0.95 * r.avg + 0.05 * loss : loss;
    fprintf(metrics, "{\"step\":%u,\"loss\":%.9g,\"lr\":%.9g,\"seconds\":%.6g,\"log_bytes\":%llu}\n",
            st.step, loss, zo_spsa_lr(cfg, st.step - 1), cli_now() - r.t0,
            (unsigned long long)zo_log_bytes(run->log));
    if (a.snap_every && (st.step % a.snap_every == 0 || st.step == cfg->steps)) {
      /* The log must hold every step the snapshot includes. */
      if ((rv = zo_log_sync(run->log, &err)) != 0 ||
          (rv = zo_snapshot_write(a.run, run->config_hash, &st, (int)a.keep, &err)) != 0)
        goto out;
    }
    if (a.eval && (st.step % a.every == 0 || st.step == cfg->steps)) {
      lm_eval_result ev;
      double te = cli_now();
      if ((rv = run_eval(&ob, &st, &dev, (int)a.threads, &ev, &err)) != 0)
        goto out;
      t_eval += cli_now() - te;
      r.eval = ev.loss;
      fprintf(metrics, "{\"step\":%u,\"eval_loss\":%.9g,\"eval_accuracy\":%.6g}\n", st.step,
              ev.loss, ev.accuracy);
      if (a.keep_best && ev.loss < best) {
        if ((rv = save_best(run, a.run, &st, ev.loss, &err)) != 0)
          goto out;
        best = ev.loss;
        best_step = st.step;
      }
    }
    if ((r.tty && cli_now() - r.last > 0.25) || (!r.tty && st.step % report_every == 0) ||
        st.step == cfg->steps) {
      show(&r, &st, cfg, zo_log_bytes(run->log), st.step == cfg->steps);
      r.last = cli_now();
    }
  }
  if ((rv = zo_log_sync(run->log, &err)) != 0)
    goto out;
  if (a.eval && (rv = run_eval(&ob, &st, &dev, (int)a.threads, &after, &err)) != 0)
    goto out;
  uint8_t h[32];
  char hex[65];
  zo_sha256_floats(st.theta, st.dim, h);
  zo_hex(h, hex);
  json_t *res = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s, s:f, s:b}", "run", a.run, "steps",
                          (json_int_t)st.step, "records", (json_int_t)zo_log_nrecords(run->log),
                          "log_bytes", (json_int_t)zo_log_bytes(run->log), "tuned_parameters",
                          (json_int_t)st.dim, "sha256", hex, "seconds", cli_now() - r.t0,
                          "resumed", run->resumed);
  if (a.eval) {
    json_object_set_new(res, "eval_loss_before", json_real(before.loss));
    json_object_set_new(res, "eval_loss_after", json_real(after.loss));
    if (dev.has_choices) {
      json_object_set_new(res, "eval_accuracy_before", json_real(before.accuracy));
      json_object_set_new(res, "eval_accuracy_after", json_real(after.accuracy));
    }
  }
  if (a.keep_best && isfinite(best)) {
    json_object_set_new(res, "best_step", json_integer(best_step));
    json_object_set_new(res, "best_eval_loss", json_real(best));
  }
  rv = cli_write_json(run, "summary.json", res, &err);
  if (rv == 0 && a.json) {
    char *s = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(10));
    puts(s);
    free(s);
  } else if (rv == 0) {
    if (a.eval)
      printf("held-out loss: %.4f -> %.4f nats/token (%+.4f)%s\n", before.loss, after.loss,
             after.loss - before.loss, dev.has_choices ? "" : "");
    if (a.eval && dev.has_choices)
      printf("held-out accuracy: %.4f -> %.4f\n", before.accuracy, after.accuracy);
    printf("%u steps, %zu records, %llu log bytes for %zu tuned parameters\nsha256 %s\n", st.step,
           zo_log_nrecords(run->log), (unsigned long long)zo_log_bytes(run->log), st.dim, hex);
  }
  if (rv == 0 && a.profile) {
    double tot = t_probe + t_apply + t_log + t_eval;
    fprintf(stderr, "profile: probe (forward passes + perturbation) %.2fs (%.0f%%), update %.2fs "
                    "(%.0f%%), log %.2fs, eval %.2fs; probes %s\n",
            t_probe, tot > 0 ? 100 * t_probe / tot : 0, t_apply, tot > 0 ? 100 * t_apply / tot : 0,
            t_log, t_eval,
            ob.lo && lm_objective_paired(ob.lo) ? "paired (two forwards side by side)"
                                                : "one after the other");
  }
  json_decref(res);
out:
  if (metrics)
    fclose(metrics);
  free(rec);
  lm_data_free(&dev);
  zo_state_free(&st);
  zo_run_close(run);
  cli_objective_close(&ob);
  json_decref(objdoc);
  return rv == 0 ? 0 : cli_fail(c, &err);
}

static const char *const export_help =
    "usage: zotune export --run DIR [--step N|best] -o OUT [--format gguf|safetensors]\n"
    "                     [--dtype f32|f16|bf16]\n"
    "\n"
    "Rebuilds the fine-tuned parameters of a training run from its base model and log\n"
    "(after the last step, or after step N; best: the step with the lowest held-out loss,\n"
    "recorded by train --keep-best)\n"
    "(LoRA adapters merged into their projections) and writes them with the base model's\n"
    "tokenizer: a GGUF file (default; --dtype for its matrices), or with --format\n"
    "safetensors a Hugging Face folder OUT (model.safetensors in F32, config.json,\n"
    "tokenizer.json for byte-level BPE tokenizers).\n";

int cmd_export(int argc, char **argv)
{
  const char *c = "export", *dir = NULL, *out = NULL, *at = NULL;
  uint32_t dtype = GGML_F32;
  int hf = 0;
  static const struct option eopts[] = {{"run", required_argument, 0, 'r'},
                                        {"step", required_argument, 0, 'S'},
                                        {"dtype", required_argument, 0, 't'},
                                        {"format", required_argument, 0, 'f'},
                                        {"help", no_argument, 0, 'h'},
                                        {0, 0, 0, 0}};
  int o;
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "o:", eopts, NULL)) != -1) {
    switch (o) {
    case 'r': dir = optarg; break;
    case 'S': at = optarg; break;
    case 'o': out = optarg; break;
    case 'f':
      if (strcmp(optarg, "gguf") && strcmp(optarg, "safetensors"))
        return cli_usage_error(c, "--format: '%s' is not gguf or safetensors", optarg);
      hf = strcmp(optarg, "safetensors") == 0;
      break;
    case 't':
      if (strcmp(optarg, "f32") == 0)
        dtype = GGML_F32;
      else if (strcmp(optarg, "f16") == 0)
        dtype = GGML_F16;
      else if (strcmp(optarg, "bf16") == 0)
        dtype = GGML_BF16;
      else
        return cli_usage_error(c, "--dtype: '%s' is not f32, f16 or bf16", optarg);
      break;
    case 'h':
      fputs(export_help, stdout);
      exit(0);
    default:
      return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!dir || !out)
    return cli_usage_error(c, "--run and -o are required");
  zo_err err = {0, ""};
  model *m = NULL;
  uint32_t steps = 0;
  int rv = cli_run_model(dir, at, cli_default_threads(), &m, &steps, &err);
  if (rv == 0) {
    model_err me = {0, ""};
    tok_spec spec;
    if (m->tok)
      tok_get_spec(m->tok, &spec);
    if (hf ? model_save_hf(m, out, &me) != 0
           : model_save_gguf(m, m->tok ? &spec : NULL, out, dtype, &me) != 0)
      rv = zo_fail(&err, me.code, "%s", me.msg);
    else
      printf("%s: %zu parameters after %u steps of %s\n", out, m->n_params, steps, dir);
  }
  model_free(m);
  return rv == 0 ? 0 : cli_fail(c, &err);
}
