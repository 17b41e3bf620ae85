/* zotune replay / zotune hash: rebuild a run's state from base + log. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/objective.h"
#include "zo/hash.h"
#include "zo/run.h"

static const char *const replay_help =
    "usage: zotune replay --run DIR [--json] [--threads T] [--isa NAME]\n"
    "\n"
    "Rebuilds the run's parameters from its base and DIR/log.zol, step by step, and\n"
    "checks the result against the hash the live run recorded in DIR/summary.json.\n"
    "A torn last step (a crash mid-write) is skipped and reported.\n"
    "Exit status 2 when the replayed hash differs from the recorded one.\n";

static const char *const hash_help =
    "usage: zotune hash --run DIR [--threads T] [--isa NAME]\n"
    "\n"
    "Prints only the SHA-256 (64 hex digits) of the run's final parameters as\n"
    "little-endian float32 in canonical order, rebuilt from base + log.\n";

struct rargs {
  const char *run, *isa;
  int json;
  uint32_t threads;
};

static int parse(const char *c, const char *help, int allow_json, int argc, char **argv,
                 struct rargs *a)
{
  static const struct option opts[] = {{"run", required_argument, 0, 'r'},
                                       {"json", no_argument, 0, 'j'},
                                       {"threads", required_argument, 0, 't'},
                                       {"isa", required_argument, 0, 'i'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
  int o;
  memset(a, 0, sizeof *a);
  a->threads = (uint32_t)cli_default_threads();
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case 'r':
      a->run = optarg;
      break;
    case 'j':
      if (!allow_json)
        return cli_usage_error(c, "--json: not an option of %s", c);
      a->json = 1;
      break;
    case 't':
      if (cli_u32(c, "--threads", optarg, 1, 1024, &a->threads) != 0)
        return EXIT_USER;
      break;
    case 'i':
      a->isa = optarg;
      break;
    case 'h':
      fputs(help, stdout);
      exit(0);
    default:
      return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!a->run)
    return cli_usage_error(c, "--run is required");
  return cli_set_isa(c, a->isa) == 0 ? 0 : EXIT_USER;
}

/* Loads the run and replays its whole log into st. */
static int rebuild(const struct rargs *a, zo_run **run, cli_objective *ob, zo_state *st,
                   zo_err *err)
{
  int rv = zo_run_load(a->run, run, err);
  if (rv != 0)
    return rv;
  if ((rv = cli_objective_open(json_object_get((*run)->doc, "objective"), (*run)->cfg.seed, 0,
                               1, (int)a->threads, ob, err)) != 0)
    return rv;
  if (memcmp(ob->base_hash, (*run)->base_hash, 32) != 0)
    return zo_fail(err, ZO_EMISMATCH, "%s: the base parameters do not match the run's "
                                      "base_sha256", a->run);
  if ((rv = zo_state_init(st, &(*run)->cfg, ob->base, ob->obj.dim, err)) != 0)
    return rv;
  return zo_spsa_replay(&(*run)->cfg, st, (*run)->log, zo_log_nsteps((*run)->log),
                        (int)a->threads, err);
}

static int replay_or_hash(int argc, char **argv, int is_hash)
{
  const char *c = is_hash ? "hash" : "replay";
  struct rargs a;
  zo_err err = {0, ""};
  zo_run *run = NULL;
  cli_objective ob;
  zo_state st = {0};
  char hex[65], recorded[65] = "";
  uint8_t h[32];
  memset(&ob, 0, sizeof ob);
  int rv = parse(c, is_hash ? hash_help : replay_help, !is_hash, argc, argv, &a);
  if (rv != 0)
    return rv;
  double t0 = cli_now();
  if ((rv = rebuild(&a, &run, &ob, &st, &err)) != 0)
    goto out;
  double secs = cli_now() - t0;
  zo_sha256_floats(st.theta, st.dim, h);
  zo_hex(h, hex);
  if (is_hash) {
    puts(hex);
    goto out;
  }
  if (run->recovery.torn)
    fprintf(stderr, "zotune replay: %s/log.zol: ignored a torn last step (%llu bytes)\n",
            a.run, (unsigned long long)run->recovery.dropped_bytes);
  char spath[4096];
  zo_run_path(run, "summary.json", spath, sizeof spath);
  json_t *sum = json_load_file(spath, 0, NULL);
  json_t *js = json_object_get(sum, "steps");
  const char *rh = json_string_value(json_object_get(sum, "sha256"));
  int comparable = rh && json_is_integer(js) && (size_t)json_integer_value(js) == st.step;
  if (comparable)
    snprintf(recorded, sizeof recorded, "%s", rh);
  json_decref(sum);
  int match = comparable && strcmp(recorded, hex) == 0;
  if (a.json) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:s, s:s?, s:b, s:f, s:b}", "run", a.run,
                          "steps", (json_int_t)st.step, "records",
                          (json_int_t)zo_log_nrecords(run->log), "sha256", hex,
                          "recorded_sha256", comparable ? recorded : NULL, "match", match,
                          "seconds", secs, "torn_tail", run->recovery.torn);
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
    puts(s);
    free(s);
    json_decref(o);
  } else {
    double rate = secs > 0 ? (double)zo_log_nrecords(run->log) / secs : 0;
    printf("replayed %u steps (%zu records, %.0f records/s, %.3g params/s)\nsha256 %s\n",
           st.step, zo_log_nrecords(run->log), rate, rate * (double)st.dim, hex);
    if (comparable)
      printf("%s the live run's hash\n", match ? "matches" : "DIFFERS FROM");
    else
      printf("no recorded hash for step %u to compare with\n", st.step);
  }
  if (comparable && !match) {
    fprintf(stderr, "zotune replay: replayed hash %s differs from the recorded %s\n", hex,
            recorded);
    rv = -1;
  }
out:
  zo_state_free(&st);
  cli_objective_close(&ob);
  zo_run_close(run);
  if (rv == -1)
    return EXIT_INTERNAL;
  return rv == 0 ? 0 : cli_fail(c, &err);
}

int cmd_replay(int argc, char **argv)
{
  return replay_or_hash(argc, argv, 0);
}

int cmd_hash(int argc, char **argv)
{
  return replay_or_hash(argc, argv, 1);
}
