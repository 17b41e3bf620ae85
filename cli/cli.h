/* cli: the zotune command. Only this module prints or exits.
 * Exit status: 0 success, 1 the user's input is at fault (bad option, bad or
 * mismatched file), 2 internal or system error (docs/cli.md). */
#ifndef ZOTUNE_CLI_H
#define ZOTUNE_CLI_H

#include <stdint.h>

#include "zo/err.h"

enum { EXIT_USER = 1, EXIT_INTERNAL = 2 };

/* Parsers that print "zotune CMD: --opt: ..." and return -1 on bad input. */
int cli_u64(const char *cmd, const char *opt, const char *s, uint64_t max, uint64_t *out);
int cli_u32(const char *cmd, const char *opt, const char *s, uint32_t min, uint32_t max,
            uint32_t *out);
int cli_double(const char *cmd, const char *opt, const char *s, double *out);
/* The zo_config options that optimize and train share: their getopt_long
 * entries (CLI_ZO_LONGOPTS, ids CLI_O_ZO .. CLI_O_ZO_END - 1) and one
 * parser, so both commands take and check them the same way. */
enum {
  CLI_O_ZO = 1000,
  CLI_O_STEPS = CLI_O_ZO,
  CLI_O_SEED,
  CLI_O_WORKERS,
  CLI_O_NDIRS,
  CLI_O_DIRS,
  CLI_O_DIST,
  CLI_O_CODEC,
  CLI_O_LR,
  CLI_O_EPS,
  CLI_O_SCHED,
  CLI_O_WARMUP,
  CLI_O_MINLR,
  CLI_O_WD,
  CLI_O_ZO_END
};
#define CLI_ZO_LONGOPTS                                                                      \
  {"steps", required_argument, 0, CLI_O_STEPS}, {"seed", required_argument, 0, CLI_O_SEED},  \
      {"workers", required_argument, 0, CLI_O_WORKERS},                                      \
      {"n-directions", required_argument, 0, CLI_O_NDIRS},                                   \
      {"directions", required_argument, 0, CLI_O_DIRS},                                      \
      {"dist", required_argument, 0, CLI_O_DIST}, {"codec", required_argument, 0, CLI_O_CODEC}, \
      {"lr", required_argument, 0, CLI_O_LR}, {"eps", required_argument, 0, CLI_O_EPS},      \
      {"schedule", required_argument, 0, CLI_O_SCHED},                                       \
      {"warmup", required_argument, 0, CLI_O_WARMUP},                                        \
      {"min-lr-ratio", required_argument, 0, CLI_O_MINLR},                                   \
      {"weight-decay", required_argument, 0, CLI_O_WD}
/* Which of the shared options were given (the rest keep their defaults). */
typedef struct cli_zo_seen {
  int steps, seed, lr;
} cli_zo_seen;
struct zo_config;
/* Parses option o (CLI_O_ZO <= o < CLI_O_ZO_END) with argument arg into
 * cfg; returns 0, or prints the error and returns EXIT_USER. */
int cli_zo_option(const char *cmd, int o, const char *arg, struct zo_config *cfg,
                  cli_zo_seen *seen);
/* Prints err for cmd and returns the exit status its code calls for. */
int cli_fail(const char *cmd, const zo_err *err);
/* Prints "zotune CMD: message" and a hint to --help; returns EXIT_USER. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Applies --isa / ZOTUNE_ISA; returns 0 or prints and returns -1. */
int cli_set_isa(const char *cmd, const char *name);
int cli_default_threads(void);
/* Seconds on a monotonic clock. */
double cli_now(void);
struct zo_run;
struct json_t;
/* Writes doc as run-dir/name atomically (temporary file, rename). */
int cli_write_json(const struct zo_run *run, const char *name, struct json_t *doc, zo_err *err);

int cmd_optimize(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_hash(int argc, char **argv);
int cmd_init_model(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_plot(int argc, char **argv);


#endif
