/* Unit tests for zo/log.c: the binary append-only step log.
 *
 * Layout checked here (see zo/log.c): a 100-byte header
 *   "ZOTUNLOG" | u32 version | u32 width | u64 seed | u32 max_records |
 *   u32 reserved (0) | config_hash[32] | base_hash[32] | u32 CRC-32 of bytes 0..95
 * followed by step frames
 *   u32 step | u32 nrec | nrec x (u16 slot, u16 dir, payload[width]) |
 *   u32 CRC-32 of the frame bytes before it,
 * all integers little-endian. Each test works in its own mkdtemp() directory
 * under /tmp, which the teardown empties and removes. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "zo/err.h"
#include "zo/hash.h"
#include "zo/log.h"

#define HDR ZO_LOG_HEADER_BYTES
#define FILE_CAP 16384 /* every file these tests build is smaller */

/* ---- fixture: a temporary directory and logs to close on failure -------- */

typedef struct fixture {
  char dir[64];
  char path[128]; /* dir/run.zlog */
  zo_log *a, *b;
} fixture;

static int setup(void **state)
{
  fixture *f = calloc(1, sizeof *f);
  if (!f)
    return -1;
  strcpy(f->dir, "/tmp/zotune-test-log-XXXXXX");
  if (!mkdtemp(f->dir)) {
    free(f);
    return -1;
  }
  snprintf(f->path, sizeof f->path, "%s/run.zlog", f->dir);
  *state = f;
  return 0;
}

static int teardown(void **state)
{
  fixture *f = *state;
  zo_log_close(f->a);
  zo_log_close(f->b);
  DIR *d = opendir(f->dir);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  int rv = rmdir(f->dir);
  free(f);
  return rv;
}

/* ---- small file helpers ------------------------------------------------- */

static size_t slurp(const char *path, uint8_t *buf, size_t cap)
{
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  size_t n = fread(buf, 1, cap, fp);
  assert_int_equal(ferror(fp), 0);
  assert_int_equal(feof(fp), 1); /* the whole file fitted */
  fclose(fp);
  return n;
}

/* Replaces path with exactly n bytes. */
static void spit(const char *path, const uint8_t *buf, size_t n)
{
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  if (n > 0)
    assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

static void spit_append(const char *path, const uint8_t *buf, size_t n)
{
  FILE *fp = fopen(path, "ab");
  assert_non_null(fp);
  assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

static uint64_t file_size(const char *path)
{
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  return (uint64_t)st.st_size;
}

static void assert_file_is(const char *path, const uint8_t *want, size_t n)
{
  static uint8_t got[FILE_CAP];
  size_t m = slurp(path, got, sizeof got);
  assert_int_equal(m, n);
  assert_memory_equal(got, want, n);
}

static void put32(uint8_t *p, uint32_t v)
{
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* True when msg contains "offset N" with N not followed by another digit. */
static int has_offset(const char *msg, uint64_t off)
{
  char needle[48];
  snprintf(needle, sizeof needle, "offset %llu", (unsigned long long)off);
  size_t len = strlen(needle);
  for (const char *p = strstr(msg, needle); p; p = strstr(p + 1, needle)) {
    if (p[len] < '0' || p[len] > '9')
      return 1;
  }
  return 0;
}

/* ---- test data ---------------------------------------------------------- */

static zo_log_header make_header(uint32_t width, uint32_t max_records)
{
  zo_log_header h;
  memset(&h, 0, sizeof h);
  h.version = ZO_LOG_VERSION;
  h.width = width;
  h.seed = 0x0123456789ABCDEFull;
  h.max_records = max_records;
  for (int i = 0; i < 32; i++) {
    h.config_hash[i] = (uint8_t)(0x11 * i + 3);
    h.base_hash[i] = (uint8_t)(0xF0 - 7 * i);
  }
  return h;
}

static size_t frame_bytes(uint32_t width, uint32_t nrec)
{
  return 8 + (size_t)nrec * (4 + width) + 4;
}

/* Records of a test step: sorted by (slot, dir), slots and dirs above 255
 * so both bytes of each u16 matter, payloads depend on (step, r, byte). The
 * bytes of the payload beyond the width are garbage on purpose. */
static void make_records(uint32_t step, uint32_t nrec, uint8_t salt, zo_record *rec)
{
  for (uint32_t r = 0; r < nrec; r++) {
    rec[r].slot = (uint16_t)(0x0101 * (r / 3) + step);
    rec[r].dir = (uint16_t)(0x0200 + 0x0111 * (r % 3) + 7 * step);
    for (int k = 0; k < ZO_CODEC_MAX_WIDTH; k++)
      rec[r].payload[k] = (uint8_t)(31 * step + 17 * r + 59 * (uint32_t)k + salt);
  }
}

static void assert_records(const zo_step *s, uint32_t step, uint32_t nrec,
                           const zo_record *want, uint32_t width)
{
  assert_int_equal(s->step, step);
  assert_int_equal(s->nrec, nrec);
  if (nrec > 0)
    assert_non_null(s->rec);
  for (uint32_t r = 0; r < nrec; r++) {
    assert_int_equal(s->rec[r].slot, want[r].slot);
    assert_int_equal(s->rec[r].dir, want[r].dir);
    assert_memory_equal(s->rec[r].payload, want[r].payload, width);
  }
}

static void assert_header_equal(const zo_log_header *got, const zo_log_header *want)
{
  assert_int_equal(got->version, ZO_LOG_VERSION);
  assert_int_equal(got->width, want->width);
  assert_true(got->seed == want->seed);
  assert_int_equal(got->max_records, want->max_records);
  assert_memory_equal(got->config_hash, want->config_hash, 32);
  assert_memory_equal(got->base_hash, want->base_hash, 32);
}

/* Writes a log of nsteps steps with counts[i] records each (make_records with
 * salt 0) at f->path and closes it. Returns its size; offs[i] (when non-NULL)
 * is the byte offset of step i's frame. */
static uint64_t write_log(fixture *f, uint32_t width, uint32_t max_records,
                          const uint32_t *counts, size_t nsteps, uint64_t *offs)
{
  zo_log_header h = make_header(width, max_records);
  zo_err err = {0};
  zo_record rec[64];
  uint64_t off = HDR;
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  for (size_t i = 0; i < nsteps; i++) {
    assert_true(counts[i] <= 64);
    make_records((uint32_t)i, counts[i], 0, rec);
    assert_int_equal(zo_log_append(f->a, rec, counts[i], (int)(i & 1), &err), 0);
    if (offs)
      offs[i] = off;
    off += frame_bytes(width, counts[i]);
  }
  assert_int_equal(zo_log_bytes(f->a), off);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(file_size(f->path), off);
  return off;
}

/* A hand-built frame: returns its size. */
static size_t build_frame(uint8_t *b, uint32_t step, uint32_t nrec, uint32_t width,
                          const zo_record *rec)
{
  const size_t rsize = 4 + width;
  put32(b, step);
  put32(b + 4, nrec);
  for (uint32_t r = 0; r < nrec; r++) {
    uint8_t *p = b + 8 + r * rsize;
    p[0] = (uint8_t)rec[r].slot;
    p[1] = (uint8_t)(rec[r].slot >> 8);
    p[2] = (uint8_t)rec[r].dir;
    p[3] = (uint8_t)(rec[r].dir >> 8);
    memcpy(p + 4, rec[r].payload, width);
  }
  size_t n = 8 + nrec * rsize;
  put32(b + n, zo_crc32(b, n));
  return n + 4;
}

/* Creates an empty log at f->path (header only) and closes it. */
static void write_header_only(fixture *f, uint32_t width, uint32_t max_records)
{
  zo_log_header h = make_header(width, max_records);
  zo_err err = {0};
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(file_size(f->path), HDR);
}

/* ---- round trip --------------------------------------------------------- */

static void roundtrip(fixture *f, uint32_t width)
{
  enum { NSTEPS = 6, MAXREC = 12 };
  static const uint32_t counts[NSTEPS] = {3, 12, 0, 1, 7, 5};
  zo_record rec[NSTEPS][MAXREC];
  zo_log_header h = make_header(width, MAXREC);
  zo_err err = {0};
  zo_step s;
  uint64_t bytes = HDR;
  size_t total = 0;

  h.version = 0; /* zo_log_create writes the current version regardless */
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  assert_non_null(f->a);
  assert_header_equal(zo_log_get_header(f->a), &h);
  assert_int_equal(zo_log_nsteps(f->a), 0);
  assert_int_equal(zo_log_nrecords(f->a), 0);
  assert_int_equal(zo_log_bytes(f->a), HDR);
  assert_int_equal(file_size(f->path), HDR);

  for (uint32_t i = 0; i < NSTEPS; i++) {
    make_records(i, counts[i], (uint8_t)width, rec[i]);
    assert_int_equal(zo_log_append(f->a, rec[i], counts[i], (int)(i % 2), &err), 0);
    bytes += frame_bytes(width, counts[i]);
    total += counts[i];
    assert_int_equal(zo_log_nsteps(f->a), i + 1);
    assert_int_equal(zo_log_nrecords(f->a), total);
    assert_int_equal(zo_log_bytes(f->a), bytes);
    /* The in-memory view of the newest step and of every earlier one. */
    for (uint32_t j = 0; j <= i; j++) {
      zo_log_step(f->a, j, &s);
      assert_records(&s, j, counts[j], rec[j], width);
    }
  }
  assert_int_equal(zo_log_sync(f->a, &err), 0);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(file_size(f->path), bytes);

  zo_log_recovery rc;
  memset(&rc, 0xEE, sizeof rc);
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
  assert_non_null(f->a);
  assert_int_equal(rc.torn, 0);
  assert_int_equal(rc.valid_bytes, bytes);
  assert_int_equal(rc.dropped_bytes, 0);
  assert_header_equal(zo_log_get_header(f->a), &h);
  assert_int_equal(zo_log_nsteps(f->a), NSTEPS);
  assert_int_equal(zo_log_nrecords(f->a), total);
  assert_int_equal(zo_log_bytes(f->a), bytes);
  for (uint32_t j = 0; j < NSTEPS; j++) {
    zo_log_step(f->a, j, &s);
    assert_records(&s, j, counts[j], rec[j], width);
  }
  zo_log_close(f->a);
  f->a = NULL;

  /* Reopen for append, add a step, and read everything back again. */
  zo_record extra[MAXREC];
  make_records(NSTEPS, 4, 0x5A, extra);
  assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &f->a, &rc, &err), 0);
  assert_int_equal(rc.torn, 0);
  assert_int_equal(zo_log_nsteps(f->a), NSTEPS);
  assert_int_equal(zo_log_append(f->a, extra, 4, 1, &err), 0);
  bytes += frame_bytes(width, 4);
  assert_int_equal(zo_log_bytes(f->a), bytes);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(file_size(f->path), bytes);

  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, NULL, &err), 0);
  assert_int_equal(zo_log_nsteps(f->a), NSTEPS + 1);
  assert_int_equal(zo_log_nrecords(f->a), total + 4);
  for (uint32_t j = 0; j < NSTEPS; j++) {
    zo_log_step(f->a, j, &s);
    assert_records(&s, j, counts[j], rec[j], width);
  }
  zo_log_step(f->a, NSTEPS, &s);
  assert_records(&s, NSTEPS, 4, extra, width);
  zo_log_close(f->a);
  f->a = NULL;
}

static void test_roundtrip_width1(void **state)
{
  roundtrip(*state, 1);
}

static void test_roundtrip_width4(void **state)
{
  roundtrip(*state, 4);
}

/* Two logs open at once do not share state. */
static void test_two_logs_independent(void **state)
{
  fixture *f = *state;
  char p2[160];
  zo_err err = {0};
  zo_record r1[2], r2[3];
  zo_step s;
  snprintf(p2, sizeof p2, "%s/other.zlog", f->dir);
  zo_log_header h1 = make_header(1, 4), h2 = make_header(4, 3);
  h2.seed = 42;
  assert_int_equal(zo_log_create(f->path, &h1, &f->a, &err), 0);
  assert_int_equal(zo_log_create(p2, &h2, &f->b, &err), 0);
  make_records(0, 2, 1, r1);
  make_records(0, 3, 2, r2);
  assert_int_equal(zo_log_append(f->a, r1, 2, 0, &err), 0);
  assert_int_equal(zo_log_append(f->b, r2, 3, 0, &err), 0);
  assert_int_equal(zo_log_append(f->b, r2, 3, 0, &err), 0);
  assert_int_equal(zo_log_nsteps(f->a), 1);
  assert_int_equal(zo_log_nsteps(f->b), 2);
  assert_int_equal(zo_log_get_header(f->b)->seed, 42);
  assert_int_equal(file_size(f->path), HDR + frame_bytes(1, 2));
  assert_int_equal(file_size(p2), HDR + 2 * frame_bytes(4, 3));
  zo_log_step(f->b, 1, &s);
  assert_records(&s, 1, 3, r2, 4);
  zo_log_close(f->a);
  zo_log_close(f->b);
  f->a = f->b = NULL;
}

/* ---- create ------------------------------------------------------------- */

static void test_create_existing_fails(void **state)
{
  fixture *f = *state;
  static const uint8_t junk[] = "not a log, but must survive zo_log_create\n";
  zo_log_header h = make_header(1, 4);
  zo_err err = {0};
  zo_log *lg = NULL;

  /* An arbitrary existing file. */
  spit(f->path, junk, sizeof junk);
  int rv = zo_log_create(f->path, &h, &lg, &err);
  assert_true(rv < 0);
  assert_int_equal(err.code, rv);
  assert_true(strstr(err.msg, f->path) != NULL);
  assert_null(lg);
  assert_file_is(f->path, junk, sizeof junk);

  /* An existing log, with a different header: still untouched. */
  static const uint32_t counts[2] = {2, 1};
  assert_int_equal(unlink(f->path), 0);
  uint64_t size = write_log(f, 1, 4, counts, 2, NULL);
  static uint8_t before[FILE_CAP];
  size_t n = slurp(f->path, before, sizeof before);
  assert_int_equal(n, size);
  zo_log_header h2 = make_header(4, 9);
  h2.seed = 7;
  memset(&err, 0, sizeof err);
  rv = zo_log_create(f->path, &h2, &lg, &err);
  assert_true(rv < 0);
  assert_int_equal(err.code, rv);
  assert_null(lg);
  assert_file_is(f->path, before, n);

  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, NULL, &err), 0);
  assert_header_equal(zo_log_get_header(f->a), &h);
  assert_int_equal(zo_log_nsteps(f->a), 2);
  zo_log_close(f->a);
  f->a = NULL;

  /* A NULL zo_err is allowed: the code alone comes back. */
  assert_int_equal(zo_log_create(f->path, &h, &lg, NULL), rv);
  assert_null(lg);
}

/* A width the format does not have (only 1 and 4 exist) must not produce a
 * file that zo_log_open then rejects. */
static void test_create_rejects_bad_width(void **state)
{
  fixture *f = *state;
  static const uint32_t bad[] = {0, 2, 3, 5, 8};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    zo_log_header h = make_header(bad[i], 4);
    zo_err err = {0};
    zo_log *lg = NULL;
    int rv = zo_log_create(f->path, &h, &lg, &err);
    zo_log_close(lg);
    struct stat st;
    int exists = stat(f->path, &st) == 0;
    if (exists)
      unlink(f->path);
    print_message("width %u: zo_log_create -> %d\n", bad[i], rv);
    assert_int_equal(rv, ZO_EINVAL);
    assert_false(exists);
  }
}

/* ---- on-disk layout ----------------------------------------------------- */

static void test_layout(void **state)
{
  fixture *f = *state;
  static uint8_t b[FILE_CAP];
  zo_log_header h = make_header(1, 5);
  zo_err err = {0};

  /* zo_crc32 is zlib's CRC-32 (check value of "123456789"). */
  assert_int_equal(zo_crc32("123456789", 9), 0xCBF43926u);

  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  assert_int_equal(slurp(f->path, b, sizeof b), 100);
  assert_int_equal(HDR, 100);
  assert_memory_equal(b, "ZOTUNLOG", 8);
  assert_int_equal(get32(b + 8), 1);
  assert_int_equal(get32(b + 12), 1);
  assert_int_equal(get32(b + 16), 0x89ABCDEFu);
  assert_int_equal(get32(b + 20), 0x01234567u);
  assert_int_equal(get32(b + 24), 5);
  assert_int_equal(get32(b + 28), 0);
  assert_memory_equal(b + 32, h.config_hash, 32);
  assert_memory_equal(b + 64, h.base_hash, 32);
  assert_int_equal(get32(b + 96), zo_crc32(b, 96));

  /* One record, width 1: 8 + (2 + 2 + 1) + 4 = 17 bytes. */
  zo_record r = {.slot = 0x0102, .dir = 0x0304, .payload = {0xAB, 0xCD, 0xEF, 0x12}};
  assert_int_equal(zo_log_append(f->a, &r, 1, 1, &err), 0);
  assert_int_equal(zo_log_bytes(f->a), 117);
  assert_int_equal(slurp(f->path, b, sizeof b), 117);
  static const uint8_t frame0[13] = {0, 0, 0, 0, 1, 0, 0, 0, 0x02, 0x01, 0x04, 0x03, 0xAB};
  assert_memory_equal(b + 100, frame0, 13);
  assert_int_equal(get32(b + 113), zo_crc32(b + 100, 13));

  /* An empty step is 12 bytes; then two records: 8 + 2 * 5 + 4 = 22. */
  assert_int_equal(zo_log_append(f->a, NULL, 0, 0, &err), 0);
  zo_record two[2] = {{.slot = 0, .dir = 0xFFFF, .payload = {0x80}},
                      {.slot = 0xFFFF, .dir = 0, .payload = {0x7F}}};
  assert_int_equal(zo_log_append(f->a, two, 2, 0, &err), 0);
  assert_int_equal(slurp(f->path, b, sizeof b), 117 + 12 + 22);
  static const uint8_t frame1[8] = {1, 0, 0, 0, 0, 0, 0, 0};
  assert_memory_equal(b + 117, frame1, 8);
  assert_int_equal(get32(b + 125), zo_crc32(b + 117, 8));
  static const uint8_t frame2[18] = {2,    0,    0, 0, 2, 0, 0, 0, 0, 0,
                                     0xFF, 0xFF, 0x80, 0xFF, 0xFF, 0, 0, 0x7F};
  assert_memory_equal(b + 129, frame2, 18);
  assert_int_equal(get32(b + 147), zo_crc32(b + 129, 18));
  zo_log_close(f->a);
  f->a = NULL;

  /* Width 4: one record is 8 + (4 + 4) + 4 = 20 bytes. */
  assert_int_equal(unlink(f->path), 0);
  h = make_header(4, 2);
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  assert_int_equal(zo_log_append(f->a, &r, 1, 0, &err), 0);
  assert_int_equal(slurp(f->path, b, sizeof b), 120);
  assert_int_equal(get32(b + 12), 4);
  static const uint8_t frame4[16] = {0,    0,    0,    0,    1,    0,    0,    0,
                                     0x02, 0x01, 0x04, 0x03, 0xAB, 0xCD, 0xEF, 0x12};
  assert_memory_equal(b + 100, frame4, 16);
  assert_int_equal(get32(b + 116), zo_crc32(b + 100, 16));
  zo_log_close(f->a);
  f->a = NULL;
}

/* Frames written by hand in the documented format are read back. */
static void test_handbuilt_frames_read(void **state)
{
  fixture *f = *state;
  static uint8_t b[FILE_CAP];
  zo_record rec[4];
  zo_err err = {0};
  zo_step s;
  write_header_only(f, 4, 4);
  size_t n = 0;
  make_records(0, 4, 9, rec);
  n += build_frame(b + n, 0, 4, 4, rec);
  n += build_frame(b + n, 1, 0, 4, rec);
  n += build_frame(b + n, 2, 2, 4, rec);
  spit_append(f->path, b, n);
  zo_log_recovery rc;
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
  assert_int_equal(rc.torn, 0);
  assert_int_equal(rc.valid_bytes, HDR + n);
  assert_int_equal(zo_log_nsteps(f->a), 3);
  assert_int_equal(zo_log_nrecords(f->a), 6);
  zo_log_step(f->a, 0, &s);
  assert_records(&s, 0, 4, rec, 4);
  zo_log_step(f->a, 1, &s);
  assert_records(&s, 1, 0, rec, 4);
  zo_log_step(f->a, 2, &s);
  assert_records(&s, 2, 2, rec, 4);
  zo_log_close(f->a);
  f->a = NULL;
}

/* ---- torn tail ---------------------------------------------------------- */

static void torn_tail(fixture *f, uint32_t width)
{
  static const uint32_t counts[3] = {2, 3, 4};
  static uint8_t full[FILE_CAP];
  zo_err err = {0};
  zo_step s;
  zo_record rec[4], fresh[4];
  uint64_t offs[3];
  const uint64_t size = write_log(f, width, 4, counts, 3, offs);
  const size_t last = frame_bytes(width, counts[2]);
  const uint64_t valid = size - last;
  assert_int_equal(offs[2], valid);
  assert_int_equal(slurp(f->path, full, sizeof full), size);
  make_records(2, counts[2], 0x77, fresh);

  for (size_t cut = 1; cut <= last; cut++) {
    const size_t len = size - cut;
    zo_log_recovery rc;

    /* READ: reports the torn frame, leaves the file alone. */
    spit(f->path, full, len);
    memset(&rc, 0xEE, sizeof rc);
    memset(&err, 0, sizeof err);
    int rv = zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err);
    if (rv != 0)
      print_message("cut %zu: %s\n", cut, err.msg);
    assert_int_equal(rv, 0);
    assert_int_equal(rc.torn, cut < last);
    assert_int_equal(rc.valid_bytes, valid);
    assert_int_equal(rc.dropped_bytes, last - cut);
    assert_int_equal(zo_log_nsteps(f->a), 2);
    assert_int_equal(zo_log_nrecords(f->a), counts[0] + counts[1]);
    assert_int_equal(zo_log_bytes(f->a), valid);
    for (uint32_t j = 0; j < 2; j++) {
      make_records(j, counts[j], 0, rec);
      zo_log_step(f->a, j, &s);
      assert_records(&s, j, counts[j], rec, width);
    }
    zo_log_close(f->a);
    f->a = NULL;
    assert_file_is(f->path, full, len);

    /* APPEND: cuts the torn frame off; the next step goes where it was. */
    memset(&rc, 0xEE, sizeof rc);
    assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &f->a, &rc, &err), 0);
    assert_int_equal(rc.torn, cut < last);
    assert_int_equal(rc.valid_bytes, valid);
    assert_int_equal(rc.dropped_bytes, last - cut);
    assert_int_equal(file_size(f->path), valid);
    assert_int_equal(zo_log_nsteps(f->a), 2);
    assert_int_equal(zo_log_append(f->a, fresh, counts[2], (int)(cut & 1), &err), 0);
    assert_int_equal(zo_log_bytes(f->a), size);
    zo_log_close(f->a);
    f->a = NULL;
    assert_int_equal(file_size(f->path), size);

    memset(&rc, 0xEE, sizeof rc);
    assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
    assert_int_equal(rc.torn, 0);
    assert_int_equal(rc.valid_bytes, size);
    assert_int_equal(rc.dropped_bytes, 0);
    assert_int_equal(zo_log_nsteps(f->a), 3);
    zo_log_step(f->a, 2, &s);
    assert_records(&s, 2, counts[2], fresh, width);
    zo_log_step(f->a, 1, &s);
    make_records(1, counts[1], 0, rec);
    assert_records(&s, 1, counts[1], rec, width);
    zo_log_close(f->a);
    f->a = NULL;
  }

  /* A NULL recovery pointer is allowed, and the cut still happens. */
  spit(f->path, full, size - 1);
  assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &f->a, NULL, &err), 0);
  assert_int_equal(zo_log_nsteps(f->a), 2);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(file_size(f->path), valid);
}

static void test_torn_tail_width1(void **state)
{
  torn_tail(*state, 1);
}

static void test_torn_tail_width4(void **state)
{
  torn_tail(*state, 4);
}

/* Fewer bytes after the header than a frame's fixed part: torn, 0 steps. */
static void test_torn_first_frame(void **state)
{
  fixture *f = *state;
  static const uint8_t junk[12] = {0, 0, 0, 0, 1, 0, 0, 0, 9, 9, 9, 9};
  zo_err err = {0};
  zo_log_recovery rc;
  for (size_t k = 1; k < sizeof junk; k++) {
    write_header_only(f, 1, 4);
    spit_append(f->path, junk, k);
    assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
    assert_int_equal(rc.torn, 1);
    assert_int_equal(rc.valid_bytes, HDR);
    assert_int_equal(rc.dropped_bytes, k);
    assert_int_equal(zo_log_nsteps(f->a), 0);
    zo_log_close(f->a);
    f->a = NULL;
    assert_int_equal(file_size(f->path), HDR + k);
    assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &f->a, &rc, &err), 0);
    assert_int_equal(rc.torn, 1);
    zo_log_close(f->a);
    f->a = NULL;
    assert_int_equal(file_size(f->path), HDR);
    assert_int_equal(unlink(f->path), 0);
  }
}

/* A last frame of the right length whose CRC does not match: torn. */
static void test_garbage_last_frame(void **state)
{
  fixture *f = *state;
  static const uint32_t counts[3] = {3, 2, 4};
  static uint8_t full[FILE_CAP], bad[FILE_CAP];
  zo_err err = {0};
  zo_log_recovery rc;
  uint64_t offs[3];
  const uint64_t size = write_log(f, 1, 4, counts, 3, offs);
  const size_t last = frame_bytes(1, counts[2]);
  assert_int_equal(slurp(f->path, full, sizeof full), size);

  for (int variant = 0; variant < 4; variant++) {
    memcpy(bad, full, size);
    switch (variant) {
    case 0: /* records and CRC garbage; step and count intact */
      for (size_t i = 8; i < last; i++)
        bad[offs[2] + i] = (uint8_t)(0xA5 ^ (i * 37));
      break;
    case 1: /* one bit of the CRC */
      bad[size - 1] ^= 0x01;
      break;
    case 2: /* one bit of a payload */
      bad[offs[2] + 8 + 4] ^= 0x10;
      break;
    default: /* the step number too */
      put32(bad + offs[2], 0xDEADBEEFu);
      bad[offs[2] + 9] ^= 0xFF;
      break;
    }
    spit(f->path, bad, size);
    memset(&rc, 0, sizeof rc);
    memset(&err, 0, sizeof err);
    int rv = zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err);
    if (rv != 0)
      print_message("variant %d: %s\n", variant, err.msg);
    assert_int_equal(rv, 0);
    assert_int_equal(rc.torn, 1);
    assert_int_equal(rc.valid_bytes, offs[2]);
    assert_int_equal(rc.dropped_bytes, last);
    assert_int_equal(zo_log_nsteps(f->a), 2);
    assert_int_equal(zo_log_nrecords(f->a), counts[0] + counts[1]);
    zo_log_close(f->a);
    f->a = NULL;
    assert_file_is(f->path, bad, size);

    assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &f->a, &rc, &err), 0);
    assert_int_equal(rc.torn, 1);
    assert_int_equal(file_size(f->path), offs[2]);
    zo_log_close(f->a);
    f->a = NULL;
    assert_file_is(f->path, full, offs[2]);
  }
}

/* A damaged byte in any frame but the last: ZO_ECORRUPT naming that frame's
 * offset, in both modes, and the file is left as it was. */
static void test_corrupt_middle_frame(void **state)
{
  fixture *f = *state;
  static const uint32_t counts[3] = {4, 4, 4};
  static const uint8_t masks[] = {0x01, 0x02, 0x10, 0x80, 0xFF};
  static uint8_t full[FILE_CAP], bad[FILE_CAP];
  uint64_t offs[3];
  const uint64_t size = write_log(f, 1, 8, counts, 3, offs);
  assert_int_equal(slurp(f->path, full, sizeof full), size);

  for (int fr = 0; fr < 2; fr++) {
    const size_t fsize = frame_bytes(1, counts[fr]);
    for (size_t i = 0; i < fsize; i++) {
      for (size_t m = 0; m < sizeof masks; m++) {
        memcpy(bad, full, size);
        bad[offs[fr] + i] ^= masks[m];
        spit(f->path, bad, size);
        for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
          zo_err err = {0};
          zo_log *lg = NULL;
          int rv = zo_log_open(f->path, mode, &lg, NULL, &err);
          zo_log_close(lg);
          if (rv != ZO_ECORRUPT || !has_offset(err.msg, offs[fr]))
            print_message("frame %d byte %zu mask 0x%02x mode %d: rv %d, %s\n", fr,
                          i, masks[m], mode, rv, err.msg);
          assert_int_equal(rv, ZO_ECORRUPT);
          assert_int_equal(err.code, ZO_ECORRUPT);
          assert_true(has_offset(err.msg, offs[fr]));
          assert_true(strstr(err.msg, f->path) != NULL);
          assert_file_is(f->path, bad, size);
        }
      }
    }
  }
}

/* ---- header errors ------------------------------------------------------ */

static int open_code(const char *path, int mode, zo_err *err)
{
  zo_log *lg = NULL;
  memset(err, 0, sizeof *err);
  int rv = zo_log_open(path, mode, &lg, NULL, err);
  if (rv == 0)
    assert_non_null(lg);
  zo_log_close(lg);
  return rv;
}

static void test_header_errors(void **state)
{
  fixture *f = *state;
  static const uint32_t counts[2] = {1, 2};
  static uint8_t full[FILE_CAP], bad[FILE_CAP];
  zo_err err;
  const uint64_t size = write_log(f, 1, 4, counts, 2, NULL);
  assert_int_equal(slurp(f->path, full, sizeof full), size);
  assert_int_equal(open_code(f->path, ZO_LOG_READ, &err), 0);

  /* Bad magic, any of its 8 bytes. */
  for (size_t i = 0; i < 8; i++) {
    memcpy(bad, full, size);
    bad[i] ^= 0x20;
    spit(f->path, bad, size);
    for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
      assert_int_equal(open_code(f->path, mode, &err), ZO_ECORRUPT);
      assert_int_equal(err.code, ZO_ECORRUPT);
      assert_non_null(strstr(err.msg, "magic"));
      assert_file_is(f->path, bad, size);
    }
  }

  /* Version 2, with a header CRC that matches it. */
  memcpy(bad, full, size);
  put32(bad + 8, 2);
  put32(bad + 96, zo_crc32(bad, 96));
  spit(f->path, bad, size);
  for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
    assert_int_equal(open_code(f->path, mode, &err), ZO_EMISMATCH);
    assert_int_equal(err.code, ZO_EMISMATCH);
    assert_non_null(strstr(err.msg, "version"));
    assert_non_null(strstr(err.msg, "2"));
    assert_file_is(f->path, bad, size);
  }

  /* Any other header byte flipped: the header CRC catches it. */
  for (size_t i = 12; i < HDR; i++) {
    static const uint8_t masks[] = {0x01, 0x40, 0xFF};
    for (size_t m = 0; m < sizeof masks; m++) {
      memcpy(bad, full, size);
      bad[i] ^= masks[m];
      spit(f->path, bad, size);
      int rv = open_code(f->path, ZO_LOG_READ, &err);
      if (rv != ZO_ECORRUPT || !strstr(err.msg, "CRC"))
        print_message("header byte %zu mask 0x%02x: rv %d, %s\n", i, masks[m], rv,
                      err.msg);
      assert_int_equal(rv, ZO_ECORRUPT);
      assert_non_null(strstr(err.msg, "CRC"));
      assert_non_null(strstr(err.msg, "header"));
    }
  }
  /* The version bytes flipped: rejected (as a version this build cannot read). */
  for (size_t i = 8; i < 12; i++) {
    memcpy(bad, full, size);
    bad[i] ^= 0x01;
    spit(f->path, bad, size);
    assert_int_equal(open_code(f->path, ZO_LOG_READ, &err), ZO_EMISMATCH);
  }

  /* A width the format does not have, with a valid CRC. */
  memcpy(bad, full, size);
  put32(bad + 12, 3);
  put32(bad + 96, zo_crc32(bad, 96));
  spit(f->path, bad, size);
  assert_int_equal(open_code(f->path, ZO_LOG_READ, &err), ZO_ECORRUPT);
  assert_non_null(strstr(err.msg, "width"));

  /* Shorter than the header: every length from 0 to 99. */
  for (size_t len = 0; len < HDR; len++) {
    spit(f->path, full, len);
    for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
      assert_int_equal(open_code(f->path, mode, &err), ZO_ECORRUPT);
      assert_int_equal(file_size(f->path), len);
    }
  }
  assert_int_equal(unlink(f->path), 0);

  /* Missing file, both modes; APPEND does not create it. */
  for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
    assert_int_equal(open_code(f->path, mode, &err), ZO_ENOENT);
    assert_int_equal(err.code, ZO_ENOENT);
    assert_non_null(strstr(err.msg, f->path));
    assert_int_equal(access(f->path, F_OK), -1);
  }
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, NULL, NULL), ZO_ENOENT);
  assert_null(f->a);
}

/* ---- frame errors built by hand ----------------------------------------- */

static void test_step_out_of_sequence(void **state)
{
  fixture *f = *state;
  static uint8_t b[FILE_CAP];
  zo_record rec[3];
  zo_err err;
  make_records(0, 3, 1, rec);
  /* steps, per case; -1 ends a case. Bad frame index in bad[]. */
  static const int cases[][4] = {
      {1, -1}, {0, 2, -1}, {0, 0, -1}, {0, 1, 1, -1}, {0, 1, 3, -1}, {0, 2, 1, -1}};
  static const int badat[] = {0, 1, 1, 2, 2, 1};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    size_t n = 0;
    uint64_t badoff = 0;
    for (int k = 0; cases[c][k] >= 0; k++) {
      if (k == badat[c])
        badoff = HDR + n;
      n += build_frame(b + n, (uint32_t)cases[c][k], (uint32_t)(1 + k % 3), 1, rec);
    }
    write_header_only(f, 1, 4);
    spit_append(f->path, b, n);
    for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
      int rv = open_code(f->path, mode, &err);
      if (rv != ZO_ECORRUPT || !has_offset(err.msg, badoff))
        print_message("case %zu: rv %d, %s\n", c, rv, err.msg);
      assert_int_equal(rv, ZO_ECORRUPT);
      assert_true(has_offset(err.msg, badoff));
      assert_non_null(strstr(err.msg, "step"));
      assert_int_equal(file_size(f->path), HDR + n);
    }
    assert_int_equal(unlink(f->path), 0);
  }
}

static void test_too_many_records(void **state)
{
  fixture *f = *state;
  static uint8_t b[FILE_CAP];
  zo_record rec[8];
  zo_err err;
  zo_log_recovery rc;
  make_records(0, 8, 2, rec);

  /* Exactly max_records (4): fine. */
  write_header_only(f, 1, 4);
  size_t n = build_frame(b, 0, 4, 1, rec);
  spit_append(f->path, b, n);
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
  assert_int_equal(rc.torn, 0);
  assert_int_equal(zo_log_nrecords(f->a), 4);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(unlink(f->path), 0);

  /* max_records + 1, complete with a valid CRC: as the only (last) frame,
   * and as a middle one. */
  for (int where = 0; where < 2; where++) {
    write_header_only(f, 1, 4);
    n = 0;
    uint64_t badoff = HDR;
    if (where == 1) {
      n += build_frame(b + n, 0, 2, 1, rec);
      badoff = HDR + n;
    }
    n += build_frame(b + n, (uint32_t)where, 5, 1, rec);
    if (where == 1)
      n += build_frame(b + n, 2, 1, 1, rec);
    spit_append(f->path, b, n);
    for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
      int rv = open_code(f->path, mode, &err);
      if (rv != ZO_ECORRUPT)
        print_message("where %d: rv %d, %s\n", where, rv, err.msg);
      assert_int_equal(rv, ZO_ECORRUPT);
      assert_true(has_offset(err.msg, badoff));
      assert_int_equal(file_size(f->path), HDR + n);
    }
    assert_int_equal(unlink(f->path), 0);
  }
}

/* ---- append validation -------------------------------------------------- */

static void test_append_rejects(void **state)
{
  fixture *f = *state;
  static uint8_t before[FILE_CAP];
  zo_log_header h = make_header(1, 4);
  zo_err err;
  zo_record ok[4];
  make_records(0, 4, 0, ok);
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  assert_int_equal(zo_log_append(f->a, ok, 2, 1, &err), 0);
  const size_t n = slurp(f->path, before, sizeof before);
  assert_int_equal(n, HDR + frame_bytes(1, 2));

  const zo_record bad[][5] = {
      /* slots out of order */
      {{.slot = 2, .dir = 0}, {.slot = 1, .dir = 5}},
      /* dirs out of order within a slot */
      {{.slot = 1, .dir = 3}, {.slot = 1, .dir = 2}},
      /* duplicate (slot, dir) */
      {{.slot = 1, .dir = 3}, {.slot = 1, .dir = 3}},
      /* duplicate further in */
      {{.slot = 0, .dir = 0}, {.slot = 0, .dir = 1}, {.slot = 7, .dir = 7},
       {.slot = 7, .dir = 7}},
      /* out of order in the high byte only */
      {{.slot = 0x0100, .dir = 0}, {.slot = 0x00FF, .dir = 1}},
      /* sorted, but one more than max_records */
      {{.slot = 0}, {.slot = 1}, {.slot = 2}, {.slot = 3}, {.slot = 4}},
  };
  static const uint32_t nbad[] = {2, 2, 2, 4, 2, 5};
  for (size_t c = 0; c < sizeof nbad / sizeof nbad[0]; c++) {
    memset(&err, 0, sizeof err);
    int rv = zo_log_append(f->a, bad[c], nbad[c], 1, &err);
    if (rv != ZO_EINVAL)
      print_message("case %zu: rv %d\n", c, rv);
    assert_int_equal(rv, ZO_EINVAL);
    assert_int_equal(err.code, ZO_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(zo_log_nsteps(f->a), 1);
    assert_int_equal(zo_log_nrecords(f->a), 2);
    assert_int_equal(zo_log_bytes(f->a), n);
    assert_file_is(f->path, before, n);
  }
  assert_int_equal(zo_log_append(f->a, bad[5], 100, 0, NULL), ZO_EINVAL);
  assert_int_equal(zo_log_nsteps(f->a), 1);

  /* Still usable: the next good step is step 1. Sorted by slot first, so
   * a smaller dir in a larger slot is fine; max_records exactly is fine. */
  const zo_record good[4] = {{.slot = 0, .dir = 9, .payload = {1}},
                             {.slot = 1, .dir = 0, .payload = {2}},
                             {.slot = 1, .dir = 1, .payload = {3}},
                             {.slot = 0x0100, .dir = 0, .payload = {4}}};
  assert_int_equal(zo_log_append(f->a, good, 4, 1, &err), 0);
  zo_log_close(f->a);
  f->a = NULL;
  zo_step s;
  zo_log_recovery rc;
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, &rc, &err), 0);
  assert_int_equal(rc.torn, 0);
  assert_int_equal(zo_log_nsteps(f->a), 2);
  zo_log_step(f->a, 0, &s);
  assert_records(&s, 0, 2, ok, 1);
  zo_log_step(f->a, 1, &s);
  assert_records(&s, 1, 4, good, 1);
  zo_log_close(f->a);
  f->a = NULL;
}

/* ---- zo_log_check ------------------------------------------------------- */

static void test_check(void **state)
{
  fixture *f = *state;
  zo_log_header h = make_header(1, 6), e;
  zo_err err;
  assert_int_equal(zo_log_create(f->path, &h, &f->a, &err), 0);
  zo_log_close(f->a);
  f->a = NULL;
  assert_int_equal(zo_log_open(f->path, ZO_LOG_READ, &f->a, NULL, &err), 0);

  memset(&err, 0, sizeof err);
  assert_int_equal(zo_log_check(f->a, &h, &err), 0);
  assert_int_equal(err.code, 0);

  e = h;
  e.config_hash[31] ^= 1;
  assert_int_equal(zo_log_check(f->a, &e, &err), ZO_EMISMATCH);
  assert_int_equal(err.code, ZO_EMISMATCH);
  assert_non_null(strstr(err.msg, "another run"));
  assert_null(strstr(err.msg, "base"));

  e = h;
  e.base_hash[0] ^= 0x80;
  assert_int_equal(zo_log_check(f->a, &e, &err), ZO_EMISMATCH);
  assert_non_null(strstr(err.msg, "base"));
  assert_null(strstr(err.msg, "another run"));

  e = h;
  e.seed ^= 1ull << 63;
  assert_int_equal(zo_log_check(f->a, &e, &err), ZO_EMISMATCH);
  e = h;
  e.width = 4;
  assert_int_equal(zo_log_check(f->a, &e, &err), ZO_EMISMATCH);
  e = h;
  e.max_records = 7;
  assert_int_equal(zo_log_check(f->a, &e, &err), ZO_EMISMATCH);
  assert_int_equal(zo_log_check(f->a, &e, NULL), ZO_EMISMATCH);
  assert_int_equal(zo_log_check(f->a, &h, NULL), 0);
  zo_log_close(f->a);
  f->a = NULL;
}

/* A damaged record count that makes a middle frame seem to run past the end
 * of the file is corruption, not a torn tail: nothing is cut off. */
static void test_damaged_count_not_torn(void **state)
{
  fixture *f = *state;
  static const uint32_t counts[3] = {3, 3, 1};
  static uint8_t full[FILE_CAP];
  uint64_t offs[3];
  const uint64_t size = write_log(f, 1, 8, counts, 3, offs);
  assert_int_equal(slurp(f->path, full, sizeof full), size);
  full[offs[1] + 4] = 7; /* 3 -> 7 records: 47 bytes, 44 remain */
  spit(f->path, full, size);
  for (int mode = ZO_LOG_READ; mode <= ZO_LOG_APPEND; mode++) {
    zo_err err = {0};
    zo_log *lg = NULL;
    assert_int_equal(zo_log_open(f->path, mode, &lg, NULL, &err), ZO_ECORRUPT);
    zo_log_close(lg);
    assert_true(has_offset(err.msg, offs[1]));
    assert_non_null(strstr(err.msg, "record count"));
    assert_file_is(f->path, full, size);
  }
}

/* Zeros after the last whole step (allocated, never written) are a torn tail. */
static void test_zero_tail_is_torn(void **state)
{
  fixture *f = *state;
  static const uint32_t counts[3] = {2, 2, 2};
  static uint8_t zeros[40];
  const uint64_t size = write_log(f, 1, 8, counts, 3, NULL);
  spit_append(f->path, zeros, sizeof zeros);
  zo_err err = {0};
  zo_log *lg = NULL;
  zo_log_recovery rc;
  assert_int_equal(zo_log_open(f->path, ZO_LOG_APPEND, &lg, &rc, &err), 0);
  assert_int_equal(rc.torn, 1);
  assert_int_equal(rc.dropped_bytes, sizeof zeros);
  assert_int_equal(zo_log_nsteps(lg), 3);
  zo_log_close(lg);
  assert_int_equal(file_size(f->path), size);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip_width1, setup, teardown),
      cmocka_unit_test_setup_teardown(test_roundtrip_width4, setup, teardown),
      cmocka_unit_test_setup_teardown(test_two_logs_independent, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_existing_fails, setup, teardown),
      cmocka_unit_test_setup_teardown(test_create_rejects_bad_width, setup, teardown),
      cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
      cmocka_unit_test_setup_teardown(test_handbuilt_frames_read, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_tail_width1, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_tail_width4, setup, teardown),
      cmocka_unit_test_setup_teardown(test_torn_first_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_garbage_last_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_middle_frame, setup, teardown),
      cmocka_unit_test_setup_teardown(test_header_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(test_step_out_of_sequence, setup, teardown),
      cmocka_unit_test_setup_teardown(test_too_many_records, setup, teardown),
      cmocka_unit_test_setup_teardown(test_append_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(test_check, setup, teardown),
      cmocka_unit_test_setup_teardown(test_damaged_count_not_torn, setup, teardown),
      cmocka_unit_test_setup_teardown(test_zero_tail_is_torn, setup, teardown),
  };
  return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
