/* zotune init-model and zotune info: make a random model, describe a model. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "model/gguf.h"
#include "model/load.h"
#include "rng/rng.h"

static const char *const init_help =
    "usage: zotune init-model --arch gpt2|llama --layers L --dim D --heads H [--kv-heads K]\n"
    "                         [--ffn F] --vocab bytes|N --ctx C --seed S -o FILE.gguf\n"
    "                         [--dtype f32|f16|bf16] [--qkv-bias] [--rope interleaved|half]\n"
    "\n"
    "Writes a randomly initialised model with a byte-level tokenizer (256 byte tokens,\n"
    "<|bos|> and <|eos|>; with --vocab N > 258 the rest are unused placeholder tokens).\n"
    "Matrices ~ N(0, 0.02^2) from the seed's RNG_INIT stream; norm weights 1; biases 0.\n"
    "\n"
    "  --arch NAME      gpt2 (LayerNorm, GELU, learned positions, tied head) or llama\n"
    "                   (RMSNorm, SwiGLU, RoPE, untied head)\n"
    "  --ffn F          MLP width (default 4*D for gpt2, 8*D/3 rounded up to 32 for llama)\n"
    "  --kv-heads K     llama: grouped-query attention with K key/value heads (H)\n"
    "  --qkv-bias       llama: q/k/v biases (written as architecture qwen2)\n"
    "  --rope STYLE     llama: interleaved (GGUF llama, default) or half (GGUF qwen2)\n"
    "  --dtype T        storage of matrices (f32)\n";

static int parse_arch(const char *s, model_config *c)
{
  if (strcmp(s, "gpt2") == 0)
    c->arch = MODEL_GPT2;
  else if (strcmp(s, "llama") == 0)
    c->arch = MODEL_LLAMA;
  else
    return -1;
  return 0;
}

/* Matrices N(0, 0.02^2), vectors: weights 1, biases 0. */
static void init_params(model *m, uint64_t seed)
{
  rng_stream s = rng_make(seed, 0, RNG_INIT, 1, 0);
  for (int i = 0; i < m->n_tensors; i++) {
    const model_tensor *t = &m->tensors[i];
    float *p = m->params + t->offset;
    if (t->n_dims == 2) {
      rng_axpy(RNG_GAUSSIAN, &s, t->offset, t->n, 0.02f, NULL, p);
    } else {
      float v = strstr(t->name, ".bias") ? 0.0f : 1.0f;
      for (size_t k = 0; k < t->n; k++)
        p[k] = v;
    }
  }
}

/* The byte tokenizer's spec, widened with placeholder tokens to n_vocab. */
static int vocab_spec(int n_vocab, tok_spec *spec, char ***extra)
{
  tok_bytes_spec(spec);
  *extra = NULL;
  if ((size_t)n_vocab == spec->n_vocab)
    return 0;
  size_t base = spec->n_vocab;
  const char **tokens = malloc((size_t)n_vocab * sizeof *tokens);
  int32_t *types = malloc((size_t)n_vocab * sizeof *types);
  char **names = calloc((size_t)n_vocab - base, sizeof *names);
  if (!tokens || !types || !names) {
    free(tokens);
    free(types);
    free(names);
    return -1;
  }
  for (size_t i = 0; i < base; i++) {
    tokens[i] = spec->tokens[i];
    types[i] = spec->types ? spec->types[i] : 1;
  }
  for (size_t i = base; i < (size_t)n_vocab; i++) {
    names[i - base] = malloc(32);
    if (names[i - base])
      snprintf(names[i - base], 32, "<|unused_%zu|>", i - base);
    tokens[i] = names[i - base] ? names[i - base] : "";
    types[i] = 5;
  }
  spec->tokens = tokens;
  spec->token_lens = NULL;
  spec->types = types;
  spec->n_vocab = (size_t)n_vocab;
  *extra = names;
  return 0;
}

int cmd_init_model(int argc, char **argv)
{
  const char *c = "init-model";
  static const struct option opts[] = {
      {"arch", required_argument, 0, 'a'},   {"layers", required_argument, 0, 'l'},
      {"dim", required_argument, 0, 'd'},    {"heads", required_argument, 0, 'H'},
      {"kv-heads", required_argument, 0, 'k'}, {"ffn", required_argument, 0, 'f'},
      {"vocab", required_argument, 0, 'v'},  {"ctx", required_argument, 0, 'c'},
      {"seed", required_argument, 0, 's'},   {"dtype", required_argument, 0, 't'},
      {"qkv-bias", no_argument, 0, 'b'},     {"rope", required_argument, 0, 'r'},
      {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
  model_config cfg;
  uint32_t u, dtype = GGML_F32;
  uint64_t seed = 0;
  const char *out = NULL, *vocab = NULL;
  int have_seed = 0, o;
  memset(&cfg, 0, sizeof cfg);
  cfg.norm_eps = 1e-5f;
  cfg.rope_theta = 10000.0f;
  optind = 1;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
    switch (o) {
    case 'a':
      if (parse_arch(optarg, &cfg) != 0)
        return cli_usage_error(c, "--arch: '%s' is not gpt2 or llama", optarg);
      break;
    case 'l':
    case 'd':
    case 'H':
    case 'k':
    case 'f':
    case 'c': {
      const char *name = o == 'l' ? "--layers" : o == 'd' ? "--dim" : o == 'H' ? "--heads"
                         : o == 'k' ? "--kv-heads" : o == 'f' ? "--ffn" : "--ctx";
      if (cli_u32(c, name, optarg, 1, 1u << 20, &u) != 0)
        return EXIT_USER;
      int *dst = o == 'l' ? &cfg.n_layer : o == 'd' ? &cfg.n_embd : o == 'H' ? &cfg.n_head
                 : o == 'k' ? &cfg.n_kv_head : o == 'f' ? &cfg.n_ff : &cfg.n_ctx;
      *dst = (int)u;
      break;
    }
    case 'v':
      vocab = optarg;
      break;
    case 's':
      if (cli_u64(c, "--seed", optarg, INT64_MAX, &seed) != 0)
        return EXIT_USER;
      have_seed = 1;
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
    case 'b':
      cfg.qkv_bias = 1;
      break;
    case 'r':
      if (strcmp(optarg, "interleaved") == 0)
        cfg.rope = MODEL_ROPE_INTERLEAVED;
      else if (strcmp(optarg, "half") == 0)
        cfg.rope = MODEL_ROPE_HALF;
      else
        return cli_usage_error(c, "--rope: '%s' is not interleaved or half", optarg);
      break;
    case 'o':
      out = optarg;
      break;
    case 'h':
      fputs(init_help, stdout);
      exit(0);
    default:
      return cli_usage_error(c, "unknown or incomplete option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc)
    return cli_usage_error(c, "unexpected argument '%s'", argv[optind]);
  if (!cfg.arch || !cfg.n_layer || !cfg.n_embd || !cfg.n_head || !cfg.n_ctx || !vocab ||
      !have_seed || !out)
    return cli_usage_error(c, "--arch, --layers, --dim, --heads, --vocab, --ctx, --seed and -o "
                              "are required");
  tok_spec probe;
  tok_bytes_spec(&probe);
  if (strcmp(vocab, "bytes") == 0) {
    cfg.n_vocab = (int)probe.n_vocab;
  } else {
    if (cli_u32(c, "--vocab", vocab, (uint32_t)probe.n_vocab, 1u << 24, &u) != 0)
      return EXIT_USER;
    cfg.n_vocab = (int)u;
  }
  if (!cfg.n_kv_head)
    cfg.n_kv_head = cfg.n_head;
  if (!cfg.n_ff)
    cfg.n_ff = cfg.arch == MODEL_GPT2 ? 4 * cfg.n_embd : (8 * cfg.n_embd / 3 + 31) / 32 * 32;
  if (cfg.arch == MODEL_GPT2) {
    if (cfg.qkv_bias || cfg.rope != MODEL_ROPE_INTERLEAVED)
      return cli_usage_error(c, "--qkv-bias and --rope apply to --arch llama only");
    cfg.tied = 1;
    snprintf(cfg.name, sizeof cfg.name, "gpt2");
  } else {
    /* GGUF names the RoPE style by architecture: llama interleaved, qwen2 half-split. */
    if (cfg.qkv_bias != (cfg.rope == MODEL_ROPE_HALF))
      return cli_usage_error(c, "GGUF ties the RoPE style to the architecture: use --qkv-bias "
                                "with --rope half (qwen2), or neither (llama)");
    snprintf(cfg.name, sizeof cfg.name, "%s", cfg.qkv_bias ? "qwen2" : "llama");
  }
  model *m;
  model_err err = {0, ""};
  tok_spec spec;
  char **extra = NULL;
  int rv = model_new(&cfg, &m, &err);
  if (rv != 0) {
    fprintf(stderr, "zotune init-model: %s\n", err.msg);
    return EXIT_USER;
  }
  init_params(m, seed);
  if (vocab_spec(cfg.n_vocab, &spec, &extra) != 0) {
    model_free(m);
    fprintf(stderr, "zotune init-model: out of memory\n");
    return EXIT_INTERNAL;
  }
  rv = model_save_gguf(m, &spec, out, dtype, &err);
  if (extra) {
    for (int i = 0; i < cfg.n_vocab - (int)probe.n_vocab; i++)
      free(extra[i]);
    free(extra);
    free((void *)spec.tokens);
    free((void *)spec.types);
  }
  size_t n = m->n_params;
  model_free(m);
  if (rv != 0) {
    fprintf(stderr, "zotune init-model: %s\n", err.msg);
    return rv == MODEL_EIO || rv == MODEL_ENOMEM ? EXIT_INTERNAL : EXIT_USER;
  }
  printf("%s: %s, %d layers, dim %d, %d heads (%d kv), ffn %d, vocab %d, ctx %d: %zu parameters\n",
         out, cfg.name, cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_kv_head, cfg.n_ff, cfg.n_vocab,
         cfg.n_ctx, n);
  return 0;
}

static const char *const info_help =
    "usage: zotune info MODEL [--tensors]\n"
    "\n"
    "Prints the architecture, sizes, parameter count and tokenizer of a GGUF file or a\n"
    "Hugging Face folder (config.json, model.safetensors or shards, tokenizer.json);\n"
    "--tensors also lists every tensor with its shape and storage type.\n";

static int info_fail(const model_err *err)
{
  fprintf(stderr, "zotune info: %s\n", err->msg);
  return zo_err_is_user(err->code) ? EXIT_USER : EXIT_INTERNAL;
}

int cmd_info(int argc, char **argv)
{
  const char *c = "info";
  int list = 0;
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0) {
      fputs(info_help, stdout);
      return 0;
    } else if (strcmp(argv[i], "--tensors") == 0) {
      list = 1;
    } else if (argv[i][0] == '-') {
      return cli_usage_error(c, "unknown option '%s'", argv[i]);
    } else if (!path) {
      path = argv[i];
    } else {
      return cli_usage_error(c, "unexpected argument '%s'", argv[i]);
    }
  }
  if (!path)
    return cli_usage_error(c, "a model file is required");
  model_err err = {0, ""};
  gguf *g = NULL;
  model *m;
  struct stat st;
  int rv = 0, dir = stat(path, &st) == 0 && S_ISDIR(st.st_mode);
  if (dir)
    printf("folder: %s (Hugging Face: config.json + safetensors)\n", path);
  else if ((rv = gguf_open(path, &g, &err)) != 0)
    return info_fail(&err);
  else
    printf("file: %s (GGUF v%u, %zu tensors, %zu metadata keys)\n", path, gguf_version(g),
           gguf_n_tensors(g), gguf_n_keys(g));
  if (list && g) {
    for (size_t i = 0; i < gguf_n_tensors(g); i++) {
      const gguf_tensor *t = gguf_tensor_at(g, i);
      const char *tn = gguf_type_name(t->type);
      printf("  %-32s %-6s [", t->name, tn ? tn : "?");
      for (uint32_t k = 0; k < t->n_dims; k++)
        printf("%s%llu", k ? ", " : "", (unsigned long long)t->dims[t->n_dims - 1 - k]);
      printf("]\n");
    }
  }
  if (g)
    gguf_close(g);
  if ((rv = model_load(path, &m, &err)) != 0)
    return info_fail(&err);
  if (list && dir)
    for (int i = 0; i < m->n_tensors; i++)
      printf("  %-32s F32    [%lld%s%.0lld]\n", m->tensors[i].name, (long long)m->tensors[i].shape[0],
             m->tensors[i].n_dims == 2 ? ", " : "",
             m->tensors[i].n_dims == 2 ? (long long)m->tensors[i].shape[1] : 0LL);
  const model_config *k = &m->cfg;
  printf("architecture: %s (%s, RoPE %s%s%s)\n", k->name, k->arch == MODEL_GPT2 ? "GPT-2 family" : "Llama family",
         k->arch == MODEL_GPT2 ? "none" : k->rope == MODEL_ROPE_HALF ? "half-split" : "interleaved",
         k->qkv_bias ? ", q/k/v bias" : "", k->tied ? ", tied head" : ", untied head");
  printf("layers %d, dim %d, heads %d, kv heads %d, ffn %d, vocab %d, context %d, norm eps %g\n",
         k->n_layer, k->n_embd, k->n_head, k->n_kv_head, k->n_ff, k->n_vocab, k->n_ctx,
         (double)k->norm_eps);
  printf("parameters: %zu (%.1f MB as float32)\n", m->n_params, (double)m->n_params * 4 / 1e6);
  printf("matrix multiply: %s\n", model_blas_info());
  if (m->tok)
    printf("tokenizer: %zu tokens, bos %d, eos %d\n", tok_n_vocab(m->tok), tok_bos(m->tok),
           tok_eos(m->tok));
  else
    printf("tokenizer: none\n");
  model_free(m);
  return 0;
}
