/* zotune optimize: SPSA on a black-box test function, every step logged. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/objective.h"
#include "zo/config.h"
#include "zo/hash.h"
#include "zo/run.h"

static const char *const help =
    "usage: zotune optimize --function NAME --dim D --steps N --seed S --run DIR [options]\n"
    "\n"
    "Minimises a test function with two-sided SPSA; every step's one-byte records go to\n"
    "DIR/log.zol, so 'zotune replay --run DIR' rebuilds the result bit for bit. Running\n"
    "again on the same DIR with the same options resumes from the log.\n"
    "\n"
    "  --function NAME      quadratic | rosenbrock | rastrigin | ackley\n"
    "  --dim D              number of variables\n"
    "  --estimator NAME     spsa (default; the only one so far)\n"
    "  --steps N            steps to run (the schedule's length)\n"
    "  --seed S             run seed, 0 .. 2^63-1 (start point and every direction)\n"
    "  --run DIR            run directory (created, or resumed if it holds this run)\n"
    "  --workers W          virtual worker slots, each probing its own records (1)\n"
    "  --n-directions N     directions each worker probes per step (1)\n"
    "  --directions MODE    per-worker | shared | pool:K (per-worker)\n"
    "  --aggregate HOW      mean | median, across workers in shared mode (mean)\n"
    "  --dist NAME          gaussian | rademacher directions (gaussian)\n"
    "  --codec NAME         log | linear | none (log); none sends float32, for comparison\n"
    "  --codec-scale X      initial codec scale S0 (1)\n"
    "  --lr X               peak learning rate (R/(2(D+2+R)), R = directions averaged)\n"
    "  --eps X              perturbation size (1e-3)\n"
    "  --schedule NAME      constant | linear | cosine (constant)\n"
    "  --warmup N           linear warm-up steps (0)\n"
    "  --min-lr-ratio X     final lr / peak lr for linear and cosine (0)\n"
    "  --weight-decay X     decoupled weight decay (0)\n"
    "  --threads T          threads for direction generation (all cores)\n"
    "  --isa NAME           auto | scalar | avx2 | avx512 generator path (auto)\n"
    "  --metrics-every K    write a metrics line every K steps (max(1, N/1000))\n"
    "  --json               print one JSON object with the result on stdout\n"
    "  --help               this text\n";

enum {
  O_FUNCTION = 256, O_DIM, O_ESTIMATOR, O_RUN, O_AGG, O_CODEC_SCALE, O_THREADS, O_ISA,
  O_METRICS, O_JSON, O_HELP
};

static const struct option opts[] = {
    CLI_ZO_LONGOPTS,
    {"function", required_argument, 0, O_FUNCTION},
    {"dim", required_argument, 0, O_DIM},
    {"estimator", required_argument, 0, O_ESTIMATOR},
    {"run", required_argument, 0, O_RUN},
    {"aggregate", required_argument, 0, O_AGG},
    {"codec-scale", required_argument, 0, O_CODEC_SCALE},
    {"threads", required_argument, 0, O_THREADS},
    {"isa", required_argument, 0, O_ISA},
    {"metrics-every", required_argument, 0, O_METRICS},
    {"json", no_argument, 0, O_JSON},
    {"help", no_argument, 0, O_HELP},
    {0, 0, 0, 0}};

struct args {
  const char *function, *run, *isa;
  uint64_t dim;
  int json;
  cli_zo_seen seen;
  uint32_t threads, metrics_every;
  zo_config cfg;
};

static int parse(int argc, char **argv, struct args *a)
{
  const char *c = "optimize";
  int o;
  memset(a, 0, sizeof *a);
  zo_config_defaults(&a->cfg);
  a->threads = (uint32_t)cli_default_threads();
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    int bad = 0;
    switch (o) {
    case O_FUNCTION:
      a->function = optarg;
      break;
    case O_DIM:
      bad = cli_u64(c, "--dim", optarg, (uint64_t)1 << 28, &a->dim);
      break;
    case O_ESTIMATOR:
      if (strcmp(optarg, "spsa") != 0)
        return cli_usage_error(c, "--estimator: '%s' is not available (spsa)", optarg);
      break;
    case O_RUN:
      a->run = optarg;
      break;
    case O_AGG:
      if (strcmp(optarg, "mean") && strcmp(optarg, "median"))
        return cli_usage_error(c, "--aggregate: '%s' is not mean or median", optarg);
      a->cfg.aggregate = strcmp(optarg, "median") == 0 ? ZO_AGG_MEDIAN : ZO_AGG_MEAN;
      break;
    case O_CODEC_SCALE:
      bad = cli_double(c, "--codec-scale", optarg, &a->cfg.codec_scale0);
      break;
    case O_THREADS:
      bad = cli_u32(c, "--threads", optarg, 1, 1024, &a->threads);
      break;
    case O_ISA:
      a->isa = optarg;
      break;
    case O_METRICS:
      bad = cli_u32(c, "--metrics-every", optarg, 1, UINT32_MAX, &a->metrics_every);
      break;
    case O_JSON:
      a->json = 1;
      break;
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
  if (!a->function)
    return cli_usage_error(c, "--function is required");
  if (!a->dim)
    return cli_usage_error(c, "--dim is required (1 .. 2^28)");
  if (!a->seen.steps)
    return cli_usage_error(c, "--steps is required");
  if (!a->seen.seed)
    return cli_usage_error(c, "--seed is required");
  if (!a->run)
    return cli_usage_error(c, "--run is required");
  if (!a->seen.lr) {
    /* The step that minimises E[f] for SPSA on an isotropic quadratic when R
     * independent directions are averaged: R / (2 (D + 2 + R)). Shared mode
     * averages W probes of the same directions, so R = n there. */
    double r = (double)a->cfg.directions *
               (a->cfg.mode == ZO_DIRS_SHARED ? 1.0 : (double)a->cfg.workers);
    a->cfg.lr = 0.5 * r / ((double)a->dim + 2.0 + r);
  }
  a->cfg.schedule.total = a->cfg.steps;
  if (!a->metrics_every)
    a->metrics_every = a->cfg.steps / 1000 > 1 ? a->cfg.steps / 1000 : 1;
  zo_err err;
  if (zo_config_validate(&a->cfg, &err) != 0)
    return cli_usage_error(c, "%s", err.msg);
  return 0;
}

static void progress(uint32_t t, uint32_t total, double loss, double t0)
{
  double el = cli_now() - t0;
  fprintf(stderr, "\rstep %u/%u  loss %.6g  %.0f steps/s   ", t, total, loss,
          el > 0 ? t / el : 0.0);
}

int cmd_optimize(int argc, char **argv)
{
  const char *c = "optimize";
  struct args a;
  zo_err err = {0, ""};
  enum zo_function fn;
  cli_objective ob = {0};
  zo_run *run = NULL;
  zo_state st = {0};
  zo_record *rec = NULL;
  FILE *metrics = NULL;
  int rv = parse(argc, argv, &a);
  if (rv != 0)
    return rv;
  if (zo_function_parse(a.function, &fn) != 0)
    return cli_usage_error(c, "--function: '%s' is not quadratic, rosenbrock, rastrigin "
                              "or ackley", a.function);
  if (cli_set_isa(c, a.isa) != 0)
    return EXIT_USER;

  json_t *objdoc = cli_function_doc(fn, (size_t)a.dim);
  rv = cli_objective_open(objdoc, a.cfg.seed, 1, (int)a.cfg.workers, (int)a.threads, &ob, &err);
  if (rv == 0) {
    json_t *doc = zo_run_doc(&a.cfg, objdoc, ob.base_hash);
    rv = zo_run_start(a.run, doc, &run, &err);
    json_decref(doc);
  }
  json_decref(objdoc);
  if (rv != 0)
    goto out;
  if (run->recovery.torn)
    fprintf(stderr, "zotune optimize: %s/log.zol: dropped a torn last step (%llu bytes); "
                    "resuming from the last whole step\n",
            a.run, (unsigned long long)run->recovery.dropped_bytes);
  if ((rv = zo_state_init(&st, &run->cfg, ob.base, ob.obj.dim, &err)) != 0 ||
      (rv = zo_spsa_replay(&run->cfg, &st, run->log, zo_log_nsteps(run->log),
                           (int)a.threads, &err)) != 0)
    goto out;
  if (run->resumed && !a.json)
    fprintf(stderr, "zotune optimize: resuming %s at step %u of %u\n", a.run, st.step,
            run->cfg.steps);

  char mpath[4096];
  zo_run_path(run, "metrics.jsonl", mpath, sizeof mpath);
  metrics = fopen(mpath, "a");
  if (!metrics) {
    rv = zo_fail(&err, ZO_EIO, "%s: cannot open for appending", mpath);
    goto out;
  }
  const zo_config *cfg = &run->cfg;
  size_t per_step = (size_t)cfg->workers * cfg->directions;
  rec = malloc(per_step * sizeof *rec);
  if (!rec) {
    rv = zo_fail(&err, ZO_ENOMEM, "out of memory");
    goto out;
  }
  double f_initial = zo_function_eval(fn, ob.base, ob.obj.dim);
  int tty = !a.json && isatty(2);
  double t0 = cli_now(), last = 0;
  uint32_t start = st.step;
  while (st.step < cfg->steps) {
    double loss = 0;
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
    /* The step is in the log before it changes the state: a crash between the
     * two replays to the same place. */
    if ((rv = zo_log_append(run->log, rec, (uint32_t)per_step, 0, &err)) != 0 ||
        (rv = zo_spsa_apply(cfg, &st, rec, (uint32_t)per_step, (int)a.threads, &err)) != 0)
      goto out;
    if (st.step % a.metrics_every == 0 || st.step == cfg->steps)
      fprintf(metrics, "{\"step\":%u,\"loss\":%.9g,\"lr\":%.9g,\"codec_scale\":%.9g}\n",
              st.step, loss, zo_spsa_lr(cfg, st.step - 1), st.codec.scale);
    if (tty && (cli_now() - last > 0.2 || st.step == cfg->steps)) {
      progress(st.step - start, cfg->steps - start, loss, t0);
      last = cli_now();
    }
  }
  if (tty)
    fputc('\n', stderr);
  if ((rv = zo_log_sync(run->log, &err)) != 0)
    goto out;

  double f_final = zo_function_eval(fn, st.theta, st.dim);
  uint8_t h[32];
  char hex[65];
  zo_sha256_floats(st.theta, st.dim, h);
  zo_hex(h, hex);
  json_t *res = json_pack(
      "{s:s, s:s, s:I, s:f, s:f, s:I, s:I, s:I, s:s, s:s, s:f, s:b}", "run", a.run,
      "function", zo_function_name(fn), "dim", (json_int_t)st.dim, "f_initial", f_initial,
      "f_final", f_final, "steps", (json_int_t)st.step, "records",
      (json_int_t)zo_log_nrecords(run->log), "log_bytes", (json_int_t)zo_log_bytes(run->log),
      "codec", zo_codec_name(cfg->codec), "sha256", hex, "seconds", cli_now() - t0,
      "resumed", run->resumed);
  rv = cli_write_json(run, "summary.json", res, &err);
  if (rv == 0) {
    if (a.json) {
      char *s = json_dumps(res, JSON_COMPACT | JSON_REAL_PRECISION(10));
      puts(s);
      free(s);
    } else {
      printf("%s (dim %zu): f %.6g -> %.6g in %u steps (%zu records, %llu log bytes)\n"
             "sha256 %s\n",
             zo_function_name(fn), st.dim, f_initial, f_final, st.step,
             zo_log_nrecords(run->log), (unsigned long long)zo_log_bytes(run->log), hex);
    }
  }
  json_decref(res);
out:
  if (metrics)
    fclose(metrics);
  free(rec);
  zo_state_free(&st);
  zo_run_close(run);
  cli_objective_close(&ob);
  return rv == 0 ? 0 : cli_fail(c, &err);
}
