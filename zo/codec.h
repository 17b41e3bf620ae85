/* zo codec: one byte per projected-gradient scalar (docs/codec.md).
 *
 *   log    sign + 7-bit magnitude on a 2^(1/8) grid relative to the scale S,
 *          from S*2^-11.875 to S*2^3.875 (clipped above), stochastic rounding
 *          between adjacent levels, unbiased inside the range;
 *   linear int8 q in [-127, 127], value q * (6 S / 127), stochastic rounding,
 *          clipped at 6 S;
 *   none   float32 (4 bytes), for comparison only.
 *
 * S is a deterministic function of the log: it starts at the configured
 * scale0 and after every step moves toward the mean |decoded value| of that
 * step (zo_codec_end_step), so every worker and every replay holds the same S.
 * The sender, like everyone else, uses the decoded value.
 *
 * Ownership: zo_codec is a plain value; nothing is allocated.
 */
#ifndef ZOTUNE_ZO_CODEC_H
#define ZOTUNE_ZO_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum zo_codec_kind { ZO_CODEC_NONE = 0, ZO_CODEC_LOG = 1, ZO_CODEC_LINEAR = 2 };

#define ZO_CODEC_MAX_WIDTH 4

typedef struct zo_codec {
  enum zo_codec_kind kind;
  double scale; /* S */
} zo_codec;

const char *zo_codec_name(enum zo_codec_kind kind);
int zo_codec_parse(const char *name, enum zo_codec_kind *out);
/* Payload bytes per scalar: 1, or 4 for ZO_CODEC_NONE. */
size_t zo_codec_width(enum zo_codec_kind kind);

void zo_codec_init(zo_codec *c, enum zo_codec_kind kind, double scale0);
/* Quantizes g with the uniform u in (0, 1) for stochastic rounding. A
 * non-finite g encodes as 0 (the record then moves nothing). */
void zo_codec_encode(const zo_codec *c, double g, float u, uint8_t *out);
double zo_codec_decode(const zo_codec *c, const uint8_t *in);
/* True when the payload is the largest magnitude the code has (clipped). */
int zo_codec_is_max(const zo_codec *c, const uint8_t *in);
/* Adapts S from one closed step's payloads (n of them, width bytes each). */
void zo_codec_end_step(zo_codec *c, const uint8_t *payloads, size_t n);

#endif
