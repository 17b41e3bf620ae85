/* Committed reference values: SHA-256 of the first 10^6 float32 values
 * (little-endian) of the reference stream seed 0x5A4F54554E45 ("ZOTUNE"),
 * step 0, purpose RNG_PERTURB, slot 0, dir 0 (docs/random-streams.md §6).
 * Every build, every compiler, every optimisation level and every vector path
 * must reproduce them. Changing them changes every direction zotune has ever
 * generated: it needs a new log format version. */
#define EXPECT_GAUSSIAN_SHA256 "c09a7c0d74c41478febfa561932f6389e888fddb8967270ef15e82b570238c17"
#define EXPECT_RADEMACHER_SHA256 "0eade033c08e5f0b229e8fdeab66a614f0158374f8b18db2cfe3bc5bbb20cf37"
