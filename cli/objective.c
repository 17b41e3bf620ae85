/* cli: builds a run's objective and base parameters from the "objective"
 * section of its config document (see objective.h). */
#include "cli/objective.h"

#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/load.h"
#include "zo/hash.h"
#include "zo/run.h"
#include "zo/snapshot.h"

json_t *cli_function_doc(enum zo_function f, size_t dim)
{
  return json_pack("{s:s, s:s, s:I}", "kind", "function", "name", zo_function_name(f),
                   "dim", (json_int_t)dim);
}

static int hash_file(const char *path, uint8_t out[32], zo_err *err)
{
  FILE *f = fopen(path, "rb");
  if (!f)
    return zo_fail(err, ZO_ENOENT, "%s: cannot open", path);
  EVP_MD_CTX *c = EVP_MD_CTX_new();
  unsigned char buf[1 << 16];
  size_t n;
  unsigned int len = 32;
  int ok = c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
  while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0)
    ok = EVP_DigestUpdate(c, buf, n);
  ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, out, &len);
  EVP_MD_CTX_free(c);
  fclose(f);
  return ok ? 0 : zo_fail(err, ZO_EIO, "%s: read error while hashing", path);
}

static int cmp_str(const void *a, const void *b)
{
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int cli_hash_path(const char *path, uint8_t out[32], zo_err *err)
{
  struct stat st;
  if (stat(path, &st) != 0)
    return zo_fail(err, ZO_ENOENT, "%s: no such file or folder", path);
  if (!S_ISDIR(st.st_mode))
    return hash_file(path, out, err);
  /* A folder: SHA-256 over "name\0" + SHA-256(file) of its regular files, by name. */
  DIR *d = opendir(path);
  char **names = NULL;
  size_t n = 0, cap = 0;
  struct dirent *e;
  int rv = 0;
  if (!d)
    return zo_fail(err, ZO_EIO, "%s: cannot list", path);
  while ((e = readdir(d))) {
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", path, e->d_name);
    if (e->d_name[0] == '.' || stat(p, &st) != 0 || !S_ISREG(st.st_mode))
      continue;
    if (n == cap) {
      cap = cap ? 2 * cap : 16;
      char **nn = realloc(names, cap * sizeof *nn);
      if (!nn) {
        rv = zo_fail(err, ZO_ENOMEM, "out of memory");
        break;
      }
      names = nn;
    }
    if (!(names[n++] = strdup(e->d_name)))
      rv = zo_fail(err, ZO_ENOMEM, "out of memory");
  }
  closedir(d);
  if (rv == 0 && n)
    qsort(names, n, sizeof *names, cmp_str);
  size_t total = 0;
  for (size_t i = 0; i < n; i++)
    total += strlen(names[i]) + 1 + 32;
  uint8_t *buf = malloc(total ? total : 1), *p = buf;
  if (rv == 0 && !buf)
    rv = zo_fail(err, ZO_ENOMEM, "out of memory");
  for (size_t i = 0; rv == 0 && i < n; i++) {
    char fp[4096];
    snprintf(fp, sizeof fp, "%s/%s", path, names[i]);
    memcpy(p, names[i], strlen(names[i]) + 1);
    p += strlen(names[i]) + 1;
    rv = hash_file(fp, p, err);
    p += 32;
  }
  if (rv == 0)
    zo_sha256(buf, total, out);
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(buf);
  return rv;
}

static int model_to_zo(int rv, const model_err *me, zo_err *err)
{
  return rv == 0 ? 0 : zo_fail(err, me->code, "%s", me->msg);
}

/* Checks that path still hashes to the recorded hex. */
static int check_hash(const char *what, const char *path, const char *hex, zo_err *err)
{
  uint8_t h[32];
  char now[65];
  int rv = cli_hash_path(path, h, err);
  if (rv != 0)
    return rv;
  zo_hex(h, now);
  if (!hex || strcmp(now, hex) != 0)
    return zo_fail(err, ZO_EMISMATCH, "%s %s has changed since the run started (sha256 %s, the "
                                      "run recorded %s)", what, path, now, hex ? hex : "none");
  return 0;
}

static int open_lm(json_t *doc, uint64_t seed, int with_data, int workers, int threads,
                   cli_objective *o, zo_err *err)
{
  model_err me = {0, ""};
  const char *mpath = json_string_value(json_object_get(doc, "model"));
  const char *dpath = json_string_value(json_object_get(doc, "data"));
  const char *tune = json_string_value(json_object_get(doc, "tune"));
  json_t *jb = json_object_get(doc, "batch"), *jl = json_object_get(doc, "max_len");
  if (!mpath || !dpath || !tune || !json_is_integer(jb) || !json_is_integer(jl) ||
      json_integer_value(jb) < 1 || json_integer_value(jl) < 2)
    return zo_fail(err, ZO_ECORRUPT, "objective: an lm objective needs model, data, tune, "
                                     "batch >= 1 and max_len >= 2");
  int rv = check_hash("model", mpath,
                      json_string_value(json_object_get(doc, "model_sha256")), err);
  if (rv != 0)
    return rv;
  o->is_lm = 1;
  if ((rv = model_to_zo(model_load(mpath, &o->m, &me), &me, err)) != 0 ||
      (rv = model_to_zo(lm_tuned_parse(o->m, tune, &o->tuned, &me), &me, err)) != 0)
    return rv;
  /* Every tensor tuned (packed order is the model's order): the base is the
   * model's parameter buffer itself, so training holds one copy of the weights. */
  o->base_is_params = !o->tuned.lora_a && o->tuned.dim == o->m->n_params;
  if (o->base_is_params) {
    o->base = o->m->params;
  } else {
    o->base = malloc(o->tuned.dim * sizeof *o->base);
    if (!o->base)
      return zo_fail(err, ZO_ENOMEM, "out of memory for %zu tuned parameters", o->tuned.dim);
    lm_tuned_init(o->m, &o->tuned, seed, o->m->params, o->base);
  }
  zo_sha256_floats(o->base, o->tuned.dim, o->base_hash);
  o->obj.dim = o->tuned.dim;
  if (!with_data)
    return 0;
  if ((rv = check_hash("data", dpath, json_string_value(json_object_get(doc, "data_sha256")),
                       err)) != 0)
    return rv;
  int max_len = (int)json_integer_value(jl);
  if (max_len > o->m->cfg.n_ctx)
    max_len = o->m->cfg.n_ctx;
  if ((rv = model_to_zo(lm_data_load(dpath, o->m, max_len, &o->data, &me), &me, err)) != 0)
    return rv;
  return model_to_zo(lm_objective_new(o->m, &o->tuned, &o->data, (int)json_integer_value(jb),
                                      workers, threads, &o->lo, &o->obj, &me),
                     &me, err);
}

int cli_objective_open(json_t *doc, uint64_t seed, int with_data, int workers, int threads,
                       cli_objective *o, zo_err *err)
{
  memset(o, 0, sizeof *o);
  const char *kind = json_string_value(json_object_get(doc, "kind"));
  if (kind && strcmp(kind, "lm") == 0)
    return open_lm(doc, seed, with_data, workers, threads, o, err);
  const char *name = json_string_value(json_object_get(doc, "name"));
  json_t *jd = json_object_get(doc, "dim");
  if (!kind || strcmp(kind, "function") != 0)
    return zo_fail(err, ZO_ECORRUPT, "objective: \"kind\" must be \"function\" or \"lm\"");
  if (!name || zo_function_parse(name, &o->fn) != 0)
    return zo_fail(err, ZO_ECORRUPT, "objective: unknown function \"%s\"",
                   name ? name : "(missing)");
  if (!json_is_integer(jd) || json_integer_value(jd) < 1)
    return zo_fail(err, ZO_ECORRUPT, "objective: \"dim\" must be a positive integer");
  size_t dim = (size_t)json_integer_value(jd);
  int rv = zo_function_new(o->fn, dim, &o->obj, err);
  if (rv != 0)
    return rv;
  o->base = malloc(dim * sizeof *o->base);
  if (!o->base)
    return zo_fail(err, ZO_ENOMEM, "out of memory");
  zo_function_start(o->fn, seed, o->base, dim);
  zo_sha256_floats(o->base, dim, o->base_hash);
  return 0;
}

int cli_state_init(cli_objective *o, const zo_config *c, zo_state *st, zo_err *err)
{
  if (o->base_is_params) {
    zo_state_borrow(st, c, o->base, o->obj.dim);
    return 0;
  }
  return zo_state_init(st, c, o->base, o->obj.dim, err);
}

void cli_objective_close(cli_objective *o)
{
  if (o->is_lm) {
    lm_objective_free(o->lo);
    lm_data_free(&o->data);
    lm_tuned_free(&o->tuned);
    model_free(o->m);
  } else if (o->obj.ctx) {
    zo_function_free(&o->obj);
  }
  if (!o->base_is_params)
    free(o->base);
  memset(o, 0, sizeof *o);
}

int cli_best_read(const char *dir, uint32_t *step, double *loss)
{
  char path[4200];
  snprintf(path, sizeof path, "%s/best.json", dir);
  json_t *b = json_load_file(path, 0, NULL);
  if (!b)
    return 0;
  json_t *js = json_object_get(b, "step"), *jl = json_object_get(b, "eval_loss");
  int ok = json_is_integer(js) && json_integer_value(js) >= 0 &&
           json_integer_value(js) <= (json_int_t)UINT32_MAX && json_is_number(jl);
  if (ok) {
    *step = (uint32_t)json_integer_value(js);
    *loss = json_number_value(jl);
  }
  json_decref(b);
  return ok ? 1 : -1;
}

/* The step that at names in the run at dir with n steps logged. */
static int run_step(const char *dir, const char *at, uint32_t n, uint32_t *out, zo_err *err)
{
  *out = n;
  if (!at)
    return 0;
  if (strcmp(at, "best") == 0) {
    double loss;
    int found = cli_best_read(dir, out, &loss);
    if (found == 0)
      return zo_fail(err, ZO_ENOENT, "%s/best.json: no best step recorded (train with "
                                     "--eval-data and --keep-best)", dir);
    if (found < 0 || *out > n)
      return zo_fail(err, ZO_ECORRUPT, "%s/best.json: \"step\" must be a step of the log "
                                       "(0..%u) and \"eval_loss\" a number", dir, n);
    return 0;
  }
  char *end;
  unsigned long long v = strtoull(at, &end, 10);
  if (!*at || *end || at[0] == '-' || v > n)
    return zo_fail(err, ZO_EINVAL, "--step %s: expected best or a step number 0..%u (%s has %u "
                                   "steps)", at, n, dir, n);
  *out = (uint32_t)v;
  return 0;
}

int cli_run_model(const char *dir, const char *at, int threads, model **out, uint32_t *steps,
                  zo_err *err)
{
  zo_run *run = NULL;
  cli_objective ob = {0};
  zo_state st = {0};
  uint32_t upto = 0;
  int rv = zo_run_load(dir, &run, err);
  if (rv == 0 &&
      (rv = cli_objective_open(json_object_get(run->doc, "objective"), run->cfg.seed, 0, 1, threads,
                               &ob, err)) == 0 &&
      !ob.is_lm)
    rv = zo_fail(err, ZO_EINVAL, "%s is not a model run", dir);
  if (rv == 0 && memcmp(ob.base_hash, run->base_hash, 32) != 0)
    rv = zo_fail(err, ZO_EMISMATCH, "%s: the base parameters do not match the run", dir);
  if (rv == 0)
    rv = run_step(dir, at, (uint32_t)zo_log_nsteps(run->log), &upto, err);
  if (rv == 0)
    rv = cli_state_init(&ob, &run->cfg, &st, err);
  if (rv == 0 && upto > 0) { /* a snapshot (a cache of replay) saves replaying what it holds */
    char sdir[4200];
    int found = 0;
    snprintf(sdir, sizeof sdir, "%s%s", dir, at && strcmp(at, "best") == 0 ? "/best" : "");
    rv = zo_snapshot_load(sdir, run->config_hash, upto, &st, &found, NULL, 0, err);
  }
  if (rv == 0)
    rv = zo_spsa_replay(&run->cfg, &st, run->log, upto, threads, err);
  if (rv == 0) {
    if (!ob.base_is_params) /* else the state already is the model's parameters */
      lm_tuned_unpack(ob.m, &ob.tuned, st.theta, ob.m->params);
    *out = ob.m;
    ob.m = NULL; /* the caller's now */
    if (steps)
      *steps = st.step;
  }
  zo_state_free(&st);
  cli_objective_close(&ob);
  zo_run_close(run);
  return rv;
}
