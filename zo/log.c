/* zo log: binary append-only step log (docs/log-format.md). All integers are
 * little-endian; every step frame ends with the CRC-32 of its bytes. */
#include "zo/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zlib.h>

#include "zo/hash.h"

static const char magic[8] = {'Z', 'O', 'T', 'U', 'N', 'L', 'O', 'G'};

struct zo_log {
  int fd;
  char *path;
  zo_log_header h;
  uint32_t *first; /* per step: index of its first record */
  uint32_t *count; /* per step: number of records */
  size_t nsteps, stepcap;
  zo_record *rec;
  size_t nrec, reccap;
  uint64_t bytes;
};

static void put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
  put32(p, (uint32_t)v);
  put32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
  return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void encode_header(const zo_log_header *h, uint8_t b[ZO_LOG_HEADER_BYTES])
{
  memset(b, 0, ZO_LOG_HEADER_BYTES);
  memcpy(b, magic, 8);
  put32(b + 8, h->version);
  put32(b + 12, h->width);
  put64(b + 16, h->seed);
  put32(b + 24, h->max_records);
  /* b + 28: reserved, zero */
  memcpy(b + 32, h->config_hash, 32);
  memcpy(b + 64, h->base_hash, 32);
  put32(b + 96, zo_crc32(b, 96));
}

static int write_all(int fd, const uint8_t *b, size_t n)
{
  while (n > 0) {
    ssize_t w = write(fd, b, n);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return -1;
    b += w;
    n -= (size_t)w;
  }
  return 0;
}

static zo_log *log_new(const char *path)
{
  zo_log *log = calloc(1, sizeof *log);
  if (!log)
    return NULL;
  log->fd = -1;
  log->path = strdup(path);
  if (!log->path) {
    free(log);
    return NULL;
  }
  return log;
}

void zo_log_close(zo_log *log)
{
  if (!log)
    return;
  if (log->fd >= 0)
    close(log->fd);
  free(log->path);
  free(log->first);
  free(log->count);
  free(log->rec);
  free(log);
}

/* Room for one more step of n records in the in-memory index. */
static int reserve(zo_log *log, size_t n)
{
  if (log->nsteps == log->stepcap) {
    size_t cap = log->stepcap ? 2 * log->stepcap : 256;
    uint32_t *f = realloc(log->first, cap * sizeof *f);
    if (!f)
      return -1;
    log->first = f;
    uint32_t *c = realloc(log->count, cap * sizeof *c);
    if (!c)
      return -1;
    log->count = c;
    log->stepcap = cap;
  }
  if (log->nrec + n > log->reccap) {
    size_t cap = log->reccap ? log->reccap : 1024;
    while (cap < log->nrec + n)
      cap *= 2;
    zo_record *r = realloc(log->rec, cap * sizeof *r);
    if (!r)
      return -1;
    log->rec = r;
    log->reccap = cap;
  }
  return 0;
}

int zo_log_create(const char *path, const zo_log_header *h, zo_log **out,
                  zo_err *err)
{
  uint8_t b[ZO_LOG_HEADER_BYTES];
  if (h->width != 1 && h->width != 4)
    return zo_fail(err, ZO_EINVAL, "%s: payload width %u (must be 1 or 4)", path, h->width);
  zo_log *log = log_new(path);
  if (!log)
    return zo_fail(err, ZO_ENOMEM, "out of memory opening %s", path);
  log->fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (log->fd < 0) {
    int e = errno;
    zo_log_close(log);
    return zo_fail(err, e == EEXIST ? ZO_EINVAL : ZO_EIO, "%s: cannot create log: %s",
                   path, strerror(e));
  }
  log->h = *h;
  log->h.version = ZO_LOG_VERSION;
  encode_header(&log->h, b);
  if (write_all(log->fd, b, sizeof b) != 0 || fdatasync(log->fd) != 0) {
    int e = errno;
    zo_log_close(log);
    unlink(path);
    return zo_fail(err, ZO_EIO, "%s: cannot write log header: %s", path, strerror(e));
  }
  log->bytes = sizeof b;
  *out = log;
  return 0;
}

static int read_file(const char *path, int fd, uint8_t **buf, size_t *len,
                     zo_err *err)
{
  struct stat st;
  if (fstat(fd, &st) != 0)
    return zo_fail(err, ZO_EIO, "%s: %s", path, strerror(errno));
  size_t n = (size_t)st.st_size, got = 0;
  uint8_t *b = malloc(n ? n : 1);
  if (!b)
    return zo_fail(err, ZO_ENOMEM, "%s: out of memory reading %zu bytes", path, n);
  while (got < n) {
    ssize_t r = pread(fd, b + got, n - got, (off_t)got);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      free(b);
      return zo_fail(err, ZO_EIO, "%s: read failed at byte %zu", path, got);
    }
    got += (size_t)r;
  }
  *buf = b;
  *len = n;
  return 0;
}

static int parse_header(const char *path, const uint8_t *b, size_t n,
                        zo_log_header *h, zo_err *err)
{
  if (n < 8 || memcmp(b, magic, 8) != 0)
    return zo_fail(err, ZO_ECORRUPT, "%s: not a zotune log (bad magic)", path);
  if (n < ZO_LOG_HEADER_BYTES)
    return zo_fail(err, ZO_ECORRUPT, "%s: log header truncated (%zu of %u bytes)",
                   path, n, ZO_LOG_HEADER_BYTES);
  h->version = get32(b + 8);
  if (h->version != ZO_LOG_VERSION)
    return zo_fail(err, ZO_EMISMATCH,
                   "%s: log format version %u; this zotune reads version %u", path,
                   h->version, ZO_LOG_VERSION);
  if (get32(b + 96) != zo_crc32(b, 96))
    return zo_fail(err, ZO_ECORRUPT, "%s: bad CRC in log header at offset 96", path);
  h->width = get32(b + 12);
  h->seed = get64(b + 16);
  h->max_records = get32(b + 24);
  memcpy(h->config_hash, b + 32, 32);
  memcpy(h->base_hash, b + 64, 32);
  if (h->width != 1 && h->width != 4)
    return zo_fail(err, ZO_ECORRUPT, "%s: bad payload width %u in log header", path,
                   h->width);
  return 0;
}

static int all_zero(const uint8_t *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return 0;
  return 1;
}

/* A frame at b (rem bytes to the end of the file) that looks torn: could it
 * instead be a whole frame of `step` whose record count was damaged? Tests
 * every record count that fits, with a running CRC of the records combined
 * with the CRC of the frame head that count implies. */
static int count_damaged(const uint8_t *b, size_t rem, size_t rsize, uint32_t step)
{
  if (rem < 12 || get32(b) != step)
    return 0;
  uLong crc_rec = crc32_z(0L, Z_NULL, 0);
  for (size_t n = 0;; n++) {
    size_t e = 8 + n * rsize;
    if (e + 4 > rem)
      break;
    uint8_t head[8];
    memcpy(head, b, 4);
    put32(head + 4, (uint32_t)n);
    uLong crc = crc32_combine(crc32_z(0L, head, 8), crc_rec, (z_off_t)(e - 8));
    if (crc == get32(b + e))
      return 1;
    if (e + rsize + 4 > rem)
      break;
    crc_rec = crc32_z(crc_rec, b + e, rsize);
  }
  return 0;
}

/* Parses the frames after the header into log's index. */
static int parse_frames(zo_log *log, const uint8_t *b, size_t n,
                        zo_log_recovery *rc, zo_err *err)
{
  const size_t rsize = 4 + log->h.width;
  size_t off = ZO_LOG_HEADER_BYTES;
  memset(rc, 0, sizeof *rc);
  while (off < n) {
    size_t rem = n - off;
    /* A short remainder, or one that is all zeros (space the file system
     * allocated but never wrote), is a torn tail. */
    if (rem < 12 || all_zero(b + off, rem)) {
      rc->torn = 1;
      break;
    }
    uint32_t step = get32(b + off), nrec = get32(b + off + 4);
    if (nrec > log->h.max_records)
      return zo_fail(err, ZO_ECORRUPT,
                     "%s: step frame at offset %zu claims %u records (at most %u)",
                     log->path, off, nrec, log->h.max_records);
    size_t fsize = 8 + (size_t)nrec * rsize + 4;
    if (fsize > rem) {
      if (count_damaged(b + off, rem, rsize, (uint32_t)log->nsteps))
        return zo_fail(err, ZO_ECORRUPT,
                       "%s: step frame at offset %zu: damaged record count (%u)", log->path,
                       off, nrec);
      rc->torn = 1;
      break;
    }
    if (get32(b + off + fsize - 4) != zo_crc32(b + off, fsize - 4)) {
      if (off + fsize == n) {
        rc->torn = 1;
        break;
      }
      return zo_fail(err, ZO_ECORRUPT, "%s: bad CRC in step frame at offset %zu",
                     log->path, off);
    }
    if (step != log->nsteps)
      return zo_fail(err, ZO_ECORRUPT,
                     "%s: step frame at offset %zu is step %u, expected %zu",
                     log->path, off, step, log->nsteps);
    if (reserve(log, nrec) != 0)
      return zo_fail(err, ZO_ENOMEM, "%s: out of memory", log->path);
    log->first[log->nsteps] = (uint32_t)log->nrec;
    log->count[log->nsteps] = nrec;
    for (uint32_t r = 0; r < nrec; r++) {
      const uint8_t *p = b + off + 8 + r * rsize;
      zo_record *z = &log->rec[log->nrec + r];
      memset(z, 0, sizeof *z);
      z->slot = (uint16_t)(p[0] | p[1] << 8);
      z->dir = (uint16_t)(p[2] | p[3] << 8);
      memcpy(z->payload, p + 4, log->h.width);
    }
    log->nrec += nrec;
    log->nsteps++;
    off += fsize;
  }
  rc->valid_bytes = off;
  rc->dropped_bytes = n - off;
  return 0;
}

int zo_log_open(const char *path, int mode, zo_log **out, zo_log_recovery *rec,
                zo_err *err)
{
  zo_log_recovery rc;
  uint8_t *buf = NULL;
  size_t n = 0;
  int rv;
  zo_log *log = log_new(path);
  if (!log)
    return zo_fail(err, ZO_ENOMEM, "out of memory opening %s", path);
  log->fd = open(path, (mode == ZO_LOG_APPEND ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (log->fd < 0) {
    int e = errno;
    zo_log_close(log);
    return zo_fail(err, e == ENOENT ? ZO_ENOENT : ZO_EIO, "%s: %s", path, strerror(e));
  }
  if ((rv = read_file(path, log->fd, &buf, &n, err)) != 0 ||
      (rv = parse_header(path, buf, n, &log->h, err)) != 0 ||
      (rv = parse_frames(log, buf, n, &rc, err)) != 0) {
    free(buf);
    zo_log_close(log);
    return rv;
  }
  free(buf);
  log->bytes = rc.valid_bytes;
  if (rc.torn && mode == ZO_LOG_APPEND) {
    if (ftruncate(log->fd, (off_t)rc.valid_bytes) != 0 || fdatasync(log->fd) != 0) {
      int e = errno;
      zo_log_close(log);
      return zo_fail(err, ZO_EIO, "%s: cannot cut torn tail: %s", path, strerror(e));
    }
  }
  if (mode == ZO_LOG_APPEND && lseek(log->fd, 0, SEEK_END) < 0) {
    zo_log_close(log);
    return zo_fail(err, ZO_EIO, "%s: seek failed", path);
  }
  if (rec)
    *rec = rc;
  *out = log;
  return 0;
}

const zo_log_header *zo_log_get_header(const zo_log *log)
{
  return &log->h;
}

size_t zo_log_nsteps(const zo_log *log)
{
  return log->nsteps;
}

size_t zo_log_nrecords(const zo_log *log)
{
  return log->nrec;
}

uint64_t zo_log_bytes(const zo_log *log)
{
  return log->bytes;
}

void zo_log_step(const zo_log *log, size_t i, zo_step *out)
{
  out->step = (uint32_t)i;
  out->nrec = log->count[i];
  out->rec = log->rec + log->first[i];
}

int zo_log_append(zo_log *log, const zo_record *rec, uint32_t nrec, int sync,
                  zo_err *err)
{
  const size_t rsize = 4 + log->h.width;
  if (nrec > log->h.max_records)
    return zo_fail(err, ZO_EINVAL, "step %zu has %u records (at most %u)",
                   log->nsteps, nrec, log->h.max_records);
  for (uint32_t r = 1; r < nrec; r++) {
    if (rec[r].slot < rec[r - 1].slot ||
        (rec[r].slot == rec[r - 1].slot && rec[r].dir <= rec[r - 1].dir))
      return zo_fail(err, ZO_EINVAL, "step %zu: records not in (slot, dir) order",
                     log->nsteps);
  }
  size_t fsize = 8 + (size_t)nrec * rsize + 4;
  uint8_t *b = malloc(fsize);
  if (!b || reserve(log, nrec) != 0) {
    free(b);
    return zo_fail(err, ZO_ENOMEM, "%s: out of memory", log->path);
  }
  put32(b, (uint32_t)log->nsteps);
  put32(b + 4, nrec);
  for (uint32_t r = 0; r < nrec; r++) {
    uint8_t *p = b + 8 + r * rsize;
    p[0] = (uint8_t)rec[r].slot;
    p[1] = (uint8_t)(rec[r].slot >> 8);
    p[2] = (uint8_t)rec[r].dir;
    p[3] = (uint8_t)(rec[r].dir >> 8);
    memcpy(p + 4, rec[r].payload, log->h.width);
  }
  put32(b + fsize - 4, zo_crc32(b, fsize - 4));
  int bad = write_all(log->fd, b, fsize) != 0 || (sync && fdatasync(log->fd) != 0);
  free(b);
  if (bad) {
    int e = errno;
    /* Leave no partial frame behind: the file keeps its last whole step. */
    if (ftruncate(log->fd, (off_t)log->bytes) == 0)
      lseek(log->fd, 0, SEEK_END);
    return zo_fail(err, ZO_EIO, "%s: cannot append step %zu: %s", log->path,
                   log->nsteps, strerror(e));
  }
  log->first[log->nsteps] = (uint32_t)log->nrec;
  log->count[log->nsteps] = nrec;
  for (uint32_t r = 0; r < nrec; r++) {
    log->rec[log->nrec + r] = rec[r];
    memset(log->rec[log->nrec + r].payload + log->h.width, 0,
           ZO_CODEC_MAX_WIDTH - log->h.width);
  }
  log->nrec += nrec;
  log->nsteps++;
  log->bytes += fsize;
  return 0;
}

int zo_log_sync(zo_log *log, zo_err *err)
{
  if (fdatasync(log->fd) != 0)
    return zo_fail(err, ZO_EIO, "%s: fdatasync: %s", log->path, strerror(errno));
  return 0;
}

int zo_log_check(const zo_log *log, const zo_log_header *e, zo_err *err)
{
  const zo_log_header *h = &log->h;
  if (memcmp(h->base_hash, e->base_hash, 32) != 0)
    return zo_fail(err, ZO_EMISMATCH, "%s: log belongs to another base (base hash differs)",
                   log->path);
  if (memcmp(h->config_hash, e->config_hash, 32) != 0)
    return zo_fail(err, ZO_EMISMATCH,
                   "%s: log belongs to another run (config hash differs)", log->path);
  if (h->seed != e->seed || h->width != e->width || h->max_records != e->max_records)
    return zo_fail(err, ZO_EMISMATCH,
                   "%s: log header (seed, payload width, records per step) differs "
                   "from the run's config",
                   log->path);
  return 0;
}
