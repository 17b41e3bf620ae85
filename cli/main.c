/* zotune: command-line entry point; dispatches to subcommands. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "config.h"

static const struct {
  const char *name;
  int (*run)(int, char **);
  const char *what;
} commands[] = {
    {"train", cmd_train, "fine-tune a language model with forward passes only"},
    {"export", cmd_export, "write a training run's fine-tuned model as GGUF"},
    {"plot", cmd_plot, "draw a run's loss curves as SVG"},
    {"optimize", cmd_optimize, "optimise a black-box test function with SPSA"},
    {"replay", cmd_replay, "rebuild a run's final state from its log and check it"},
    {"hash", cmd_hash, "print the SHA-256 of a run's final parameters"},
    {"init-model", cmd_init_model, "write a randomly initialised GGUF model"},
    {"info", cmd_info, "describe a GGUF model"},
    {"eval", cmd_eval, "evaluate a model on a JSONL file (loss, accuracy)"},
    {"generate", cmd_generate, "continue a prompt with a model"},
};

static void usage(FILE *f)
{
  fprintf(f, "usage: zotune COMMAND [OPTIONS]\n\n"
             "Zeroth-order fine-tuning: forward passes only, one byte per projected "
             "gradient.\n\ncommands:\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].what);
  fprintf(f, "\n'zotune COMMAND --help' describes a command.\n"
             "Exit status: 0 success, 1 bad input (options, files, a run that does not "
             "match), 2 internal or system error.\n");
}

int main(int argc, char **argv)
{
  if (argc < 2) {
    usage(stderr);
    return EXIT_USER;
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
      strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("zotune %s\n", PACKAGE_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(argv[1], commands[i].name) == 0)
      return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "zotune: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return EXIT_USER;
}
