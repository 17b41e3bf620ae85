/* zo run: the run directory. config.json is written once, atomically
 * (temporary file, fsync, rename), and never rewritten. */
#include "zo/run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zo/config.h"
#include "zo/hash.h"

json_t *zo_run_doc(const zo_config *c, json_t *objective, const uint8_t base_hash[32])
{
  char hex[65];
  zo_hex(base_hash, hex);
  return json_pack("{s:i, s:s, s:O, s:o}", "zotune_run", 1, "base_sha256", hex,
                   "objective", objective, "optimizer", zo_config_to_json(c));
}

int zo_run_path(const zo_run *r, const char *name, char *buf, size_t n)
{
  int k = snprintf(buf, n, "%s/%s", r->dir, name);
  return k < 0 || (size_t)k >= n ? -1 : 0;
}

void zo_run_close(zo_run *r)
{
  if (!r)
    return;
  zo_log_close(r->log);
  json_decref(r->doc);
  free(r->dir);
  free(r);
}

/* Reads the document's hashes and optimizer section into r. */
static int adopt_doc(zo_run *r, const char *where, zo_err *err)
{
  json_t *jv = json_object_get(r->doc, "zotune_run");
  const char *hex = json_string_value(json_object_get(r->doc, "base_sha256"));
  if (!json_is_integer(jv) || json_integer_value(jv) != 1)
    return zo_fail(err, ZO_ECORRUPT, "%s: \"zotune_run\" must be 1", where);
  if (!hex || zo_unhex(hex, r->base_hash) != 0)
    return zo_fail(err, ZO_ECORRUPT, "%s: \"base_sha256\" must be 64 hex digits", where);
  if (!json_is_object(json_object_get(r->doc, "objective")))
    return zo_fail(err, ZO_ECORRUPT, "%s: \"objective\" must be an object", where);
  int rv = zo_config_from_json(json_object_get(r->doc, "optimizer"), &r->cfg, err);
  if (rv != 0) {
    char msg[sizeof err->msg];
    snprintf(msg, sizeof msg, "%s", err->msg);
    return zo_fail(err, rv, "%s: optimizer: %s", where, msg);
  }
  char *canon = zo_json_canonical(r->doc);
  if (!canon)
    return zo_fail(err, ZO_ENOMEM, "out of memory");
  zo_sha256(canon, strlen(canon), r->config_hash);
  free(canon);
  return 0;
}

static zo_log_header expected_header(const zo_run *r)
{
  zo_log_header h;
  memset(&h, 0, sizeof h);
  h.version = ZO_LOG_VERSION;
  h.width = (uint32_t)zo_codec_width(r->cfg.codec);
  h.seed = r->cfg.seed;
  h.max_records = r->cfg.workers * r->cfg.directions;
  memcpy(h.config_hash, r->config_hash, 32);
  memcpy(h.base_hash, r->base_hash, 32);
  return h;
}

/* Names the first field (two levels deep) where a and b differ. */
static void describe_diff(json_t *a, json_t *b, const char *prefix, char *out, size_t n)
{
  const char *k;
  json_t *va;
  json_object_foreach(a, k, va)
  {
    json_t *vb = json_object_get(b, k);
    if (vb && json_equal(va, vb))
      continue;
    if (!prefix[0] && json_is_object(va) && json_is_object(vb)) {
      describe_diff(va, vb, k, out, n);
      return;
    }
    char *sa = json_dumps(va, JSON_ENCODE_ANY | JSON_COMPACT);
    char *sb = vb ? json_dumps(vb, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    snprintf(out, n, "%s%s%s is %s in the run, %s now", prefix, prefix[0] ? "." : "", k,
             sa ? sa : "?", sb ? sb : "absent");
    free(sa);
    free(sb);
    return;
  }
  json_object_foreach(b, k, va)
  {
    if (!json_object_get(a, k)) {
      snprintf(out, n, "%s%s%s is absent in the run", prefix, prefix[0] ? "." : "", k);
      return;
    }
  }
  snprintf(out, n, "the documents differ");
}

static int write_doc(const char *path, json_t *doc, zo_err *err)
{
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  char *text = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
  if (!text)
    return zo_fail(err, ZO_ENOMEM, "out of memory");
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  size_t len = strlen(text);
  int ok = fd >= 0 && write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 &&
           fsync(fd) == 0;
  if (fd >= 0)
    close(fd);
  free(text);
  if (!ok || rename(tmp, path) != 0) {
    int e = errno;
    unlink(tmp);
    return zo_fail(err, ZO_EIO, "%s: cannot write: %s", path, strerror(e));
  }
  return 0;
}

static int alloc_run(const char *dir, zo_run **out, zo_err *err)
{
  zo_run *r = calloc(1, sizeof *r);
  if (!r || !(r->dir = strdup(dir))) {
    free(r);
    return zo_fail(err, ZO_ENOMEM, "out of memory");
  }
  *out = r;
  return 0;
}

int zo_run_start(const char *dir, json_t *doc, zo_run **out, zo_err *err)
{
  char cpath[4096], lpath[4096];
  zo_run *r;
  int rv = alloc_run(dir, &r, err);
  if (rv != 0)
    return rv;
  r->doc = json_incref(doc);
  if (zo_run_path(r, "config.json", cpath, sizeof cpath) != 0 ||
      zo_run_path(r, "log.zol", lpath, sizeof lpath) != 0) {
    zo_run_close(r);
    return zo_fail(err, ZO_EINVAL, "%s: path too long", dir);
  }
  if ((rv = adopt_doc(r, "the new run's config", err)) != 0)
    goto fail;
  if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
    rv = zo_fail(err, ZO_EIO, "%s: cannot create run directory: %s", dir, strerror(errno));
    goto fail;
  }
  json_error_t je;
  json_t *old = json_load_file(cpath, 0, &je);
  if (!old && access(cpath, F_OK) == 0) {
    rv = zo_fail(err, ZO_ECORRUPT, "%s:%d: %s", cpath, je.line, je.text);
    goto fail;
  }
  if (old) {
    if (!json_equal(old, doc)) {
      char why[400];
      describe_diff(old, doc, "", why, sizeof why);
      json_decref(old);
      rv = zo_fail(err, ZO_EMISMATCH,
                   "%s already holds a different run (%s); use a new --run directory",
                   dir, why);
      goto fail;
    }
    json_decref(old);
    r->resumed = 1;
  } else if ((rv = write_doc(cpath, doc, err)) != 0) {
    goto fail;
  }
  zo_log_header h = expected_header(r);
  if (access(lpath, F_OK) == 0) {
    if ((rv = zo_log_open(lpath, ZO_LOG_APPEND, &r->log, &r->recovery, err)) != 0 ||
        (rv = zo_log_check(r->log, &h, err)) != 0)
      goto fail;
  } else if ((rv = zo_log_create(lpath, &h, &r->log, err)) != 0) {
    goto fail;
  }
  *out = r;
  return 0;
fail:
  zo_run_close(r);
  return rv;
}

int zo_run_load(const char *dir, zo_run **out, zo_err *err)
{
  char cpath[4096], lpath[4096];
  json_error_t je;
  zo_run *r;
  int rv = alloc_run(dir, &r, err);
  if (rv != 0)
    return rv;
  if (zo_run_path(r, "config.json", cpath, sizeof cpath) != 0 ||
      zo_run_path(r, "log.zol", lpath, sizeof lpath) != 0) {
    zo_run_close(r);
    return zo_fail(err, ZO_EINVAL, "%s: path too long", dir);
  }
  r->doc = json_load_file(cpath, 0, &je);
  if (!r->doc) {
    rv = access(cpath, F_OK) != 0
             ? zo_fail(err, ZO_ENOENT, "%s: no run here (config.json missing)", dir)
             : zo_fail(err, ZO_ECORRUPT, "%s:%d: %s", cpath, je.line, je.text);
    goto fail;
  }
  if ((rv = adopt_doc(r, cpath, err)) != 0)
    goto fail;
  zo_log_header h = expected_header(r);
  if ((rv = zo_log_open(lpath, ZO_LOG_READ, &r->log, &r->recovery, err)) != 0 ||
      (rv = zo_log_check(r->log, &h, err)) != 0)
    goto fail;
  *out = r;
  return 0;
fail:
  zo_run_close(r);
  return rv;
}
