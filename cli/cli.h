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
