/* zo snapshot: see snapshot.h. */
#include "zo/snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zo/hash.h"

#define HEAD 96
static const char magic[8] = {'Z', 'O', 'S', 'N', 'A', 'P', '0', '1'};

static void put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int cmp_u32(const void *a, const void *b)
{
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

/* The steps of dir/snapshots/step-*.zsnap, ascending; *n of them (malloc'd). */
static uint32_t *list_steps(const char *sdir, size_t *n)
{
  DIR *d = opendir(sdir);
  uint32_t *v = NULL;
  size_t cap = 0;
  struct dirent *e;
  *n = 0;
  if (!d)
    return NULL;
  while ((e = readdir(d))) {
    unsigned long s;
    char tail[8];
    if (sscanf(e->d_name, "step-%lu.zsna%1s", &s, tail) != 2 || strcmp(tail, "p") != 0 ||
        s > UINT32_MAX)
      continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      uint32_t *nv = realloc(v, cap * sizeof *nv);
      if (!nv)
        break;
      v = nv;
    }
    v[(*n)++] = (uint32_t)s;
  }
  closedir(d);
  if (*n)
    qsort(v, *n, sizeof *v, cmp_u32);
  return v;
}

int zo_snapshot_write(const char *dir, const uint8_t config_hash[32], const zo_state *st, int keep,
                      zo_err *err)
{
  char sdir[4096], path[4200], tmp[4300];
  uint8_t head[HEAD];
  snprintf(sdir, sizeof sdir, "%s/snapshots", dir);
  if (mkdir(sdir, 0755) != 0 && errno != EEXIST)
    return zo_fail(err, ZO_EIO, "%s: cannot create: %s", sdir, strerror(errno));
  snprintf(path, sizeof path, "%s/step-%010u.zsnap", sdir, st->step);
  snprintf(tmp, sizeof tmp, "%s.tmp", path);
  memset(head, 0, sizeof head);
  memcpy(head, magic, 8);
  put32(head + 8, st->step);
  uint64_t dim = st->dim;
  put32(head + 16, (uint32_t)dim);
  put32(head + 20, (uint32_t)(dim >> 32));
  memcpy(head + 24, &st->codec.scale, 8); /* little-endian hosts, as hash.c */
  memcpy(head + 32, config_hash, 32);
  zo_sha256_floats(st->theta, st->dim, head + 64);
  FILE *f = fopen(tmp, "wb");
  int ok = f && fwrite(head, 1, HEAD, f) == HEAD &&
           fwrite(st->theta, sizeof(float), st->dim, f) == st->dim && fflush(f) == 0 &&
           fsync(fileno(f)) == 0;
  if (f && fclose(f) != 0)
    ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    unlink(tmp);
    return zo_fail(err, ZO_EIO, "%s: cannot write snapshot", path);
  }
  /* A write cut short by a crash leaves step-N.zsnap.tmp behind: drop them. */
  DIR *d = opendir(sdir);
  for (struct dirent *e; d && (e = readdir(d));) {
    size_t l = strlen(e->d_name);
    if (strncmp(e->d_name, "step-", 5) == 0 && l > 10 &&
        strcmp(e->d_name + l - 10, ".zsnap.tmp") == 0) {
      int w = snprintf(path, sizeof path, "%s/%s", sdir, e->d_name);
      if (w > 0 && (size_t)w < sizeof path) /* never unlink a cut-short name */
        unlink(path);
    }
  }
  if (d)
    closedir(d);
  if (keep > 0) {
    size_t n;
    uint32_t *steps = list_steps(sdir, &n);
    for (size_t i = 0; i + (size_t)keep < n; i++) {
      snprintf(path, sizeof path, "%s/step-%010u.zsnap", sdir, steps[i]);
      unlink(path);
    }
    free(steps);
  }
  return 0;
}

/* Reads one snapshot into st if it is whole and belongs to the run. */
static int try_load(const char *path, const uint8_t config_hash[32], zo_state *st, char *why,
                    size_t why_len)
{
  uint8_t head[HEAD], h[32];
  FILE *f = fopen(path, "rb");
  int ok = f && fread(head, 1, HEAD, f) == HEAD && memcmp(head, magic, 8) == 0;
  uint64_t dim = ok ? (uint64_t)get32(head + 16) | (uint64_t)get32(head + 20) << 32 : 0;
  const char *bad = !ok ? "not a snapshot"
                    : memcmp(head + 32, config_hash, 32) != 0 ? "another run's snapshot"
                    : dim != st->dim                         ? "wrong size"
                                                             : NULL;
  float *theta = NULL;
  if (!bad && !(theta = malloc(st->dim * sizeof *theta)))
    bad = "out of memory";
  if (!bad && fread(theta, sizeof(float), st->dim, f) != st->dim)
    bad = "truncated";
  if (!bad) {
    zo_sha256_floats(theta, st->dim, h);
    if (memcmp(h, head + 64, 32) != 0)
      bad = "SHA-256 mismatch";
  }
  if (f)
    fclose(f);
  if (bad) {
    snprintf(why, why_len, "%s: %s", path, bad);
    free(theta);
    return 0;
  }
  memcpy(st->theta, theta, st->dim * sizeof *theta);
  free(theta);
  st->step = get32(head + 8);
  memcpy(&st->codec.scale, head + 24, 8);
  return 1;
}

int zo_snapshot_load(const char *dir, const uint8_t config_hash[32], uint32_t max_step,
                     zo_state *st, int *found, char *why, size_t why_len, zo_err *err)
{
  char sdir[4096], path[4200], local[512];
  size_t n;
  (void)err;
  *found = 0;
  if (!why) {
    why = local;
    why_len = sizeof local;
  }
  why[0] = 0;
  snprintf(sdir, sizeof sdir, "%s/snapshots", dir);
  uint32_t *steps = list_steps(sdir, &n);
  for (size_t i = n; i-- > 0 && !*found;) {
    if (steps[i] > max_step)
      continue;
    snprintf(path, sizeof path, "%s/step-%010u.zsnap", sdir, steps[i]);
    *found = try_load(path, config_hash, st, why, why_len);
  }
  free(steps);
  return 0;
}
