/* zo codec: see codec.h and docs/codec.md. Only IEEE double arithmetic and
 * ldexp (exact) are used, so encode, decode and the scale rule give the same
 * bits on every machine. */
#include "zo/codec.h"

#include <math.h>
#include <string.h>

#define LOG_CENTER 96    /* magnitude code whose level is S */
#define LOG_PER_OCTAVE 8 /* levels per factor of two */
#define LIN_CLIP 6.0     /* linear code clips at LIN_CLIP * S */
#define SCALE_BETA 0.1   /* weight of the newest step in the scale average */
#define SCALE_MIN 1e-30
#define SCALE_MAX 1e30

/* 2^(j/8), j = 0..7, correctly rounded (python: (2**(j/8)).hex()). */
static const double octave_frac[LOG_PER_OCTAVE] = {
    0x1.0000000000000p+0, 0x1.172b83c7d517bp+0, 0x1.306fe0a31b715p+0,
    0x1.4bfdad5362a27p+0, 0x1.6a09e667f3bcdp+0, 0x1.8ace5422aa0dbp+0,
    0x1.ae89f995ad3adp+0, 0x1.d5818dcfba487p+0};

const char *zo_codec_name(enum zo_codec_kind kind)
{
  switch (kind) {
  case ZO_CODEC_LOG:
    return "log";
  case ZO_CODEC_LINEAR:
    return "linear";
  default:
    return "none";
  }
}

int zo_codec_parse(const char *name, enum zo_codec_kind *out)
{
  for (int k = ZO_CODEC_NONE; k <= ZO_CODEC_LINEAR; k++) {
    if (strcmp(name, zo_codec_name((enum zo_codec_kind)k)) == 0) {
      *out = (enum zo_codec_kind)k;
      return 0;
    }
  }
  return -1;
}

size_t zo_codec_width(enum zo_codec_kind kind)
{
  return kind == ZO_CODEC_NONE ? 4 : 1;
}

void zo_codec_init(zo_codec *c, enum zo_codec_kind kind, double scale0)
{
  c->kind = kind;
  c->scale = scale0;
}

/* Level of magnitude code m (1..127) relative to S = 1. */
static double log_level(int m)
{
  int k = m - LOG_CENTER;
  int q = k >= 0 ? k / LOG_PER_OCTAVE : -((-k + LOG_PER_OCTAVE - 1) / LOG_PER_OCTAVE);
  return ldexp(octave_frac[k - q * LOG_PER_OCTAVE], q);
}

static uint8_t log_encode(double x, float u)
{
  uint8_t sign = x < 0 ? 0x80 : 0;
  double a = fabs(x);
  if (a >= log_level(127))
    return sign | 127;
  /* Largest m with level(m) <= a, or 0 when a is below level(1). */
  int lo = 0, hi = 127;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (log_level(mid) <= a)
      lo = mid;
    else
      hi = mid;
  }
  double vlo = lo ? log_level(lo) : 0.0, vhi = log_level(lo + 1);
  double p = (a - vlo) / (vhi - vlo);
  int m = (double)u < p ? lo + 1 : lo;
  return m ? (uint8_t)(sign | m) : 0;
}

static double log_decode(uint8_t b)
{
  int m = b & 0x7F;
  if (m == 0)
    return 0.0;
  return b & 0x80 ? -log_level(m) : log_level(m);
}

/* Rounds the magnitude and restores the sign, so g and -g quantize as
 * mirror images for the same u (as the log code does). */
static int8_t lin_encode(double x, float u)
{
  double q = fabs(x) * (127.0 / LIN_CLIP);
  int m = 127;
  if (q < 127.0) {
    double f = floor(q);
    m = (int)f + ((double)u < q - f ? 1 : 0);
  }
  return (int8_t)(x < 0 ? -m : m);
}

void zo_codec_encode(const zo_codec *c, double g, float u, uint8_t *out)
{
  if (!isfinite(g))
    g = 0.0;
  switch (c->kind) {
  case ZO_CODEC_LOG:
    out[0] = log_encode(g / c->scale, u);
    break;
  case ZO_CODEC_LINEAR: {
    int8_t q = lin_encode(g / c->scale, u);
    memcpy(out, &q, 1);
    break;
  }
  default: {
    float f = (float)g;
    memcpy(out, &f, 4); /* little-endian hosts only; see hash.c */
    break;
  }
  }
}

double zo_codec_decode(const zo_codec *c, const uint8_t *in)
{
  switch (c->kind) {
  case ZO_CODEC_LOG:
    return log_decode(in[0]) * c->scale;
  case ZO_CODEC_LINEAR: {
    int8_t q;
    memcpy(&q, in, 1);
    if (q == -128) /* never produced; read as the clip value */
      q = -127;
    return (double)q * (LIN_CLIP / 127.0) * c->scale;
  }
  default: {
    float f;
    memcpy(&f, in, 4);
    return isfinite(f) ? (double)f : 0.0;
  }
  }
}

int zo_codec_is_max(const zo_codec *c, const uint8_t *in)
{
  switch (c->kind) {
  case ZO_CODEC_LOG:
    return (in[0] & 0x7F) == 127;
  case ZO_CODEC_LINEAR:
    return in[0] == 127 || in[0] == 0x81 || in[0] == 0x80;
  default:
    return 0;
  }
}

void zo_codec_end_step(zo_codec *c, const uint8_t *payloads, size_t n)
{
  if (c->kind == ZO_CODEC_NONE || n == 0)
    return;
  size_t clipped = 0;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    clipped += (size_t)zo_codec_is_max(c, payloads + i);
    sum += fabs(zo_codec_decode(c, payloads + i));
  }
  if (clipped * 100 > n) /* more than 1% clipped: widen fast */
    c->scale *= 2.0;
  else if (sum == 0.0) /* everything rounded to zero: narrow fast */
    c->scale *= 0.5;
  else
    c->scale = (1.0 - SCALE_BETA) * c->scale + SCALE_BETA * (sum / (double)n);
  if (c->scale < SCALE_MIN)
    c->scale = SCALE_MIN;
  if (c->scale > SCALE_MAX)
    c->scale = SCALE_MAX;
}
