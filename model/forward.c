/* model: the forward pass of GPT-2 and Llama blocks on BLIS, and the
 * chunked LM head and cross-entropy. Reads top to bottom like the papers:
 * embed, then per block norm -> attention -> residual -> norm -> MLP ->
 * residual, then the final norm. Every weight comes through a model_view. */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* The one GEMM the forward pass uses, row-major: C (M x N) = alpha A (M x K)
 * op(B) + beta C, op(B) = B^T with B stored (N x K) when bt, else B (K x N).
 * BLIS by default; OpenBLAS through CBLAS with ./configure --with-blas=openblas.
 * single: run on the calling thread only (the caller is parallel already). */
#ifdef ZOTUNE_OPENBLAS
#include <cblas.h>
void openblas_set_num_threads(int);
int openblas_get_parallel(void);

static void gemm(int bt, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int single)
{
  (void)single; /* OpenBLAS runs one thread per call made from inside a parallel region */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
}

static void gemm_threads(int n)
{
  openblas_set_num_threads(n);
}
#else
#include <blis.h>

static void gemm(int bt, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int single)
{
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  /* Small products lose more to thread start-up than they gain. */
  if (!single && (double)M * N * K < 2e6)
    single = 1;
  if (single)
    bli_rntm_set_num_threads(1, &rntm);
  bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, M, N, K, &alpha, (float *)A, lda, 1,
               (float *)B, bt ? 1 : ldb, bt ? ldb : 1, &beta, C, ldc, 1, NULL,
               single ? &rntm : NULL);
}

static void gemm_threads(int n)
{
  bli_thread_set_num_threads(n);
}
#endif

/* ---- vector kernels ---------------------------------------------------
 * Plain C that gcc and clang vectorize at -O2: loop bodies have no branches
 * (a select is a bit mask: gcc does not if-convert a float ?: under
 * -ftrapping-math), elementwise loops are marked omp simd, and every
 * reduction keeps LANES partial results, element i in lane i % LANES, summed
 * in a fixed tree at the end. Each row kernel is compiled three times from
 * the same source, for the baseline (SSE2 on x86-64), AVX2 and AVX-512, and
 * model_ws_new picks the widest the CPU has. The same IEEE operations happen
 * to every element in every build (no fused multiply-add: -ffp-contract=off),
 * so no result depends on the vector width, the instruction set or the thread
 * count. ZOTUNE_ISA=scalar or avx2 in the environment caps the choice, as it
 * does for rng/ (for tests). */
#define LANES 16
#define KERNEL static inline __attribute__((always_inline))

KERNEL uint32_t f2u(float f)
{
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

KERNEL float u2f(uint32_t u)
{
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* c ? a : b, without a branch. */
KERNEL float pick(int c, float a, float b)
{
  uint32_t m = 0u - (uint32_t)c;
  return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

/* e^x for float x <= 88, within 1 ulp of the exact value (0.98 ulp at most
 * over every normal result): x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2
 * in two parts so n * hi is exact), e^r by Cephes' expf polynomial, 2^n put
 * into the exponent bits. Below -87.3365 (where e^x leaves the normal range),
 * and for -inf, it is 0 (the arithmetic before that select may overflow
 * harmlessly); NaN stays NaN. Above 88 the result is garbage: exp_f clamps. */
KERNEL float exp_le88(float x)
{
  /* n = round(x / ln2): adding 1.5 * 2^23 leaves n in the low mantissa bits */
  float t = x * 1.44269504088896341f + 12582912.0f;
  float n = t - 12582912.0f;
  uint32_t scale = (f2u(t) - 0x4B400000u + 127u) << 23;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  return pick(x < -87.33654f, 0.0f, p * u2f(scale));
}

/* e^x for any float x; e^88 for x above 88. */
KERNEL float exp_f(float x)
{
  return exp_le88(pick(x > 88.0f, 88.0f, x));
}

/* GELU, tanh form, tanh(y) = 1 - 2 / (e^2y + 1). */
KERNEL float gelu(float x)
{
  float y = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  float t = 1.0f - 2.0f / (exp_f(2.0f * y) + 1.0f);
  return 0.5f * x * (1.0f + t);
}

KERNEL float silu(float x)
{
  return x / (1.0f + exp_f(-x));
}

/* The lanes summed pairwise in a fixed tree (the first steps vectorize). */
KERNEL float lanes_sum(float a[LANES])
{
  for (int j = 0; j < LANES / 2; j++)
    a[j] += a[j + LANES / 2];
  for (int j = 0; j < LANES / 4; j++)
    a[j] += a[j + LANES / 4];
  return (a[0] + a[2]) + (a[1] + a[3]);
}

KERNEL float lanes_max(float m[LANES])
{
  for (int j = 0; j < LANES / 2; j++)
    m[j] = pick(m[j + LANES / 2] > m[j], m[j + LANES / 2], m[j]);
  for (int j = 0; j < LANES / 4; j++)
    m[j] = pick(m[j + LANES / 4] > m[j], m[j + LANES / 4], m[j]);
  float a = m[2] > m[0] ? m[2] : m[0], b = m[3] > m[1] ? m[3] : m[1];
  return b > a ? b : a;
}

/* The last n < LANES elements of a row as one full block, padded with pad
 * (which adds nothing to the reduction at hand): a vectorized block costs
 * less than a scalar tail on the short rows of attention. */
KERNEL void tail_block(float t[LANES], const float *x, int n, float pad)
{
  for (int j = 0; j < LANES; j++)
    t[j] = pad;
  memcpy(t, x, (size_t)n * sizeof *x);
}

KERNEL float max_of(const float *x, int n)
{
  float m[LANES], t[LANES];
  int i = 0;
  for (int j = 0; j < LANES; j++)
    m[j] = -INFINITY;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      m[j] = pick(x[i + j] > m[j], x[i + j], m[j]);
  if (i < n) {
    tail_block(t, x + i, n - i, -INFINITY);
    for (int j = 0; j < LANES; j++)
      m[j] = pick(t[j] > m[j], t[j], m[j]);
  }
  return lanes_max(m);
}

KERNEL float sum_of(const float *x, int n)
{
  float a[LANES] = {0}, t[LANES];
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      a[j] += x[i + j];
  if (i < n) {
    tail_block(t, x + i, n - i, 0.0f);
    for (int j = 0; j < LANES; j++)
      a[j] += t[j];
  }
  return lanes_sum(a);
}

/* sum of (x[i] - c)^2 */
KERNEL float sum_sq(const float *x, int n, float c)
{
  float a[LANES] = {0}, t[LANES];
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      a[j] += (x[i + j] - c) * (x[i + j] - c);
  if (i < n) {
    tail_block(t, x + i, n - i, c);
    for (int j = 0; j < LANES; j++)
      a[j] += (t[j] - c) * (t[j] - c);
  }
  return lanes_sum(a);
}

/* x[i] = e^(x[i] - c) for x[i] <= c; returns their sum. */
KERNEL float exp_sum_inplace(float *x, int n, float c)
{
  float a[LANES] = {0}, t[LANES];
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++) {
      float e = exp_le88(x[i + j] - c);
      x[i + j] = e;
      a[j] += e;
    }
  if (i < n) {
    tail_block(t, x + i, n - i, -INFINITY); /* e^-inf = 0 */
    for (int j = 0; j < LANES; j++) {
      t[j] = exp_le88(t[j] - c);
      a[j] += t[j];
    }
    memcpy(x + i, t, (size_t)(n - i) * sizeof *x);
  }
  return lanes_sum(a);
}

/* sum of e^(x[i] - c), for x[i] <= c */
KERNEL float sum_exp(const float *x, int n, float c)
{
  float a[LANES] = {0}, t[LANES];
  int i = 0;
  for (; i + LANES <= n; i += LANES)
    for (int j = 0; j < LANES; j++)
      a[j] += exp_le88(x[i + j] - c);
  if (i < n) {
    tail_block(t, x + i, n - i, -INFINITY);
    for (int j = 0; j < LANES; j++)
      a[j] += exp_le88(t[j] - c);
  }
  return lanes_sum(a);
}

/* One query block of attention scores, in place: row i (stride ld) holds
 * query q0 + i against keys [0, keys). Keys up to the query become
 * e^(s - max), the rest 0 (causal mask); inv[i] = 1 / the row's sum. */
KERNEL void softmax_body(float *S, int ld, int q0, int rows, int keys, float *inv)
{
  for (int i = 0; i < rows; i++) {
    int n = q0 + i + 1;
    float *row = S + (size_t)i * ld;
    inv[i] = 1.0f / exp_sum_inplace(row, n, max_of(row, n));
    if (n < keys)
      memset(row + n, 0, (size_t)(keys - n) * sizeof *row);
  }
}

/* Online log-sum-exp of one row over one more vocabulary chunk of n logits:
 * *mx is the running maximum (-inf at first), *se the sum of e^(l - *mx). */
KERNEL void lse_body(const float *lg, int n, float *mx, float *se)
{
  float cm = max_of(lg, n);
  cm = cm > *mx ? cm : *mx;
  *se = *se * exp_le88(*mx - cm) + sum_exp(lg, n, cm);
  *mx = cm;
}

/* o = norm(x) of one row: LayerNorm when b is given, else RMSNorm. Then,
 * when pre is given, x += pre. */
KERNEL void norm_body(float *restrict o, float *restrict x, const float *restrict w,
                      const float *restrict b, const float *restrict pre, int d, float eps)
{
  if (b) {
    float mean = sum_of(x, d) / d;
    float rs = 1.0f / sqrtf(sum_sq(x, d, mean) / d + eps);
#pragma omp simd
    for (int i = 0; i < d; i++)
      o[i] = (x[i] - mean) * rs * w[i] + b[i];
  } else {
    float rs = 1.0f / sqrtf(sum_sq(x, d, 0.0f) / d + eps);
#pragma omp simd
    for (int i = 0; i < d; i++)
      o[i] = x[i] * rs * w[i];
  }
  if (pre) {
#pragma omp simd
    for (int i = 0; i < d; i++)
      x[i] += pre[i];
  }
}

/* The MLP's activation of one row of n: h = gelu(h + bias) (GPT-2: gate
 * NULL) or h = (h + bias) * silu(gate) (llama family); bias may be NULL. */
KERNEL void act_body(float *restrict h, const float *restrict gate, const float *restrict bias,
                     int n)
{
  if (!gate && bias) {
#pragma omp simd
    for (int i = 0; i < n; i++)
      h[i] = gelu(h[i] + bias[i]);
  } else if (!gate) {
#pragma omp simd
    for (int i = 0; i < n; i++)
      h[i] = gelu(h[i]);
  } else if (bias) {
#pragma omp simd
    for (int i = 0; i < n; i++)
      h[i] = (h[i] + bias[i]) * silu(gate[i]);
  } else {
#pragma omp simd
    for (int i = 0; i < n; i++)
      h[i] *= silu(gate[i]);
  }
}

typedef struct kernels {
  const char *isa;
  void (*softmax)(float *S, int ld, int q0, int rows, int keys, float *inv);
  void (*lse)(const float *lg, int n, float *mx, float *se);
  void (*norm)(float *o, float *x, const float *w, const float *b, const float *pre, int d,
               float eps);
  void (*act)(float *h, const float *gate, const float *bias, int n);
} kernels;

#define KERNELS(isa, target)                                                                      \
  target static void softmax_##isa(float *S, int ld, int q0, int rows, int keys, float *inv)      \
  {                                                                                               \
    softmax_body(S, ld, q0, rows, keys, inv);                                                     \
  }                                                                                               \
  target static void lse_##isa(const float *lg, int n, float *mx, float *se)                      \
  {                                                                                               \
    lse_body(lg, n, mx, se);                                                                      \
  }                                                                                               \
  target static void norm_##isa(float *o, float *x, const float *w, const float *b,               \
                                const float *pre, int d, float eps)                               \
  {                                                                                               \
    norm_body(o, x, w, b, pre, d, eps);                                                           \
  }                                                                                               \
  target static void act_##isa(float *h, const float *gate, const float *bias, int n)             \
  {                                                                                               \
    act_body(h, gate, bias, n);                                                                   \
  }                                                                                               \
  static const kernels kernels_##isa = {#isa, softmax_##isa, lse_##isa, norm_##isa, act_##isa};

KERNELS(base, )
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_KERNELS_X86 1
KERNELS(avx2, __attribute__((target("avx2"))))
KERNELS(avx512, __attribute__((target("avx512f"))))
#endif

static const kernels *kernels_pick(void)
{
#ifdef HAVE_KERNELS_X86
  const char *cap = getenv("ZOTUNE_ISA");
  int avx512 = 1, avx2 = 1;
  if (cap && strcmp(cap, "scalar") == 0)
    avx512 = avx2 = 0;
  else if (cap && strcmp(cap, "avx2") == 0)
    avx512 = 0;
  __builtin_cpu_init();
  if (avx512 && __builtin_cpu_supports("avx512f"))
    return &kernels_avx512;
  if (avx2 && __builtin_cpu_supports("avx2"))
    return &kernels_avx2;
#endif
  return &kernels_base;
}

/* Elementwise passes over rows go parallel from this many elements up (a
 * parallel region costs a few microseconds; below this they run on the
 * calling thread, so tiny models pay nothing). */
#define PAR_MIN 32768

static int n_threads = 1;

#define VOCAB_CHUNK 2048 /* LM head: vocabulary rows per chunk */
#define ROW_CHUNK 1024   /* LM head: positions per chunk (BLIS at M = 1024 runs the
                            * GPT-2 head 15% faster than at 256; 8 MB of logits) */
#define QUERY_BLOCK 128  /* attention: query rows per block */

struct model_ws {
  int B, T;
  int cur_B, cur_T; /* shape of the batch the last model_forward ran */
  float *x;     /* (B*T, dim) residual stream */
  float *xb;    /* (B*T, dim) normed input of a sublayer */
  float *qkv;   /* (B*T, dim + 2*kv_dim) */
  float *att;   /* (B*T, dim) attention output */
  float *hb;    /* (B*T, ff) */
  float *hb2;   /* (B*T, ff) */
  float *hidden; /* (B*T, dim) after the final norm */
  float *scores; /* (max_threads, QUERY_BLOCK, T) */
  float *rope_cos, *rope_sin; /* (T, head_dim/2) */
  float *logits; /* (min(B*T, ROW_CHUNK), min(vocab, VOCAB_CHUNK)) */
  float *bias;   /* (dim + 2*kv_dim): copies of bias vectors */
  int max_threads;
  int threads; /* set by model_ws_set_threads; 0 = model_set_threads's count */
  const kernels *k; /* the row kernels for this CPU */
};

/* Threads the passes of workspace ws use. */
static int ws_threads(const model_ws *ws)
{
  return ws->threads ? ws->threads : n_threads;
}

/* Threads for a pass over n elements with workspace ws. */
static int team(const model_ws *ws, size_t n)
{
  return n >= PAR_MIN ? ws_threads(ws) : 1;
}

void model_set_threads(int threads)
{
  /* A real reference, so the linker takes model/blis_arch.c (and with it
   * zotune's BLIS kernel choice) into every program that runs a forward. */
  static const char *(*volatile keep)(void) = model_blas_info;
  (void)keep;
  n_threads = threads > 0 ? threads : 1;
  gemm_threads(n_threads);
}

void model_ws_free(model_ws *ws)
{
  if (!ws)
    return;
  free(ws->x);
  free(ws->xb);
  free(ws->qkv);
  free(ws->att);
  free(ws->hb);
  free(ws->hb2);
  free(ws->hidden);
  free(ws->scores);
  free(ws->rope_cos);
  free(ws->rope_sin);
  free(ws->logits);
  free(ws->bias);
  free(ws);
}

int model_ws_set_threads(model_ws *ws, int threads)
{
  if (threads < 0)
    return -1;
  ws->threads = threads;
  return 0;
}

/* Floats in each workspace buffer for B sequences of T tokens; x is the
 * size of each of x, xb, att and hidden; hb2 is 0 without a gated MLP. */
typedef struct ws_sizes {
  size_t x, qkv, hb, hb2, scores, rope, logits, bias;
} ws_sizes;

static ws_sizes ws_sizes_of(const model *m, int B, int T, int threads)
{
  const model_config *c = &m->cfg;
  size_t bt = (size_t)B * T, d = (size_t)c->n_embd, hd = d / (size_t)c->n_head;
  size_t kvd = hd * (size_t)c->n_kv_head, ff = (size_t)c->n_ff;
  ws_sizes z = {bt * d,
                bt * (d + 2 * kvd),
                bt * ff,
                c->arch == MODEL_LLAMA ? bt * ff : 0,
                (size_t)threads * QUERY_BLOCK * (size_t)T, /* one block of scores per thread */
                (size_t)T * (hd / 2 + 1),
                (bt < ROW_CHUNK ? bt : ROW_CHUNK) *
                    (size_t)(c->n_vocab < VOCAB_CHUNK ? c->n_vocab : VOCAB_CHUNK),
                d + 2 * kvd};
  return z;
}

size_t model_ws_bytes(const model *m, int B, int T)
{
  ws_sizes z = ws_sizes_of(m, B, T, n_threads);
  size_t floats = 4 * z.x + z.qkv + z.hb + z.hb2 + z.scores + 2 * z.rope + z.logits + z.bias;
  return floats * sizeof(float) + sizeof(model_ws);
}

int model_ws_new(const model *m, int B, int T, model_ws **out, model_err *err)
{
  const model_config *c = &m->cfg;
  if (B < 1 || T < 1 || T > c->n_ctx)
    return model_fail(err, MODEL_EINVAL, "batch %d x %d tokens (context is %d)", B, T, c->n_ctx);
  size_t hd = (size_t)c->n_embd / (size_t)c->n_head;
  model_ws *ws = calloc(1, sizeof *ws);
  if (!ws)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  ws->B = B;
  ws->T = T;
  ws->max_threads = n_threads; /* one T x T score buffer per attention thread */
  ws->k = kernels_pick();
  ws_sizes z = ws_sizes_of(m, B, T, ws->max_threads);
  ws->x = malloc(z.x * sizeof(float));
  ws->xb = malloc(z.x * sizeof(float));
  ws->qkv = malloc(z.qkv * sizeof(float));
  ws->att = malloc(z.x * sizeof(float));
  ws->hb = malloc(z.hb * sizeof(float));
  ws->hb2 = z.hb2 ? malloc(z.hb2 * sizeof(float)) : NULL;
  ws->hidden = malloc(z.x * sizeof(float));
  ws->scores = malloc(z.scores * sizeof(float));
  ws->rope_cos = malloc(z.rope * sizeof(float));
  ws->rope_sin = malloc(z.rope * sizeof(float));
  ws->logits = malloc(z.logits * sizeof(float));
  ws->bias = malloc(z.bias * sizeof(float));
  if (!ws->x || !ws->xb || !ws->qkv || !ws->att || !ws->hb || (z.hb2 && !ws->hb2) ||
      !ws->hidden || !ws->scores || !ws->rope_cos || !ws->rope_sin || !ws->logits || !ws->bias) {
    model_ws_free(ws);
    return model_fail(err, MODEL_ENOMEM, "out of memory for a %d x %d workspace", B, T);
  }
  for (int p = 0; p < T; p++) {
    for (size_t j = 0; j < hd / 2; j++) {
      double freq = pow((double)c->rope_theta, -2.0 * (double)j / (double)hd);
      ws->rope_cos[(size_t)p * (hd / 2) + j] = (float)cos(p * freq);
      ws->rope_sin[(size_t)p * (hd / 2) + j] = (float)sin(p * freq);
    }
  }
  *out = ws;
  return 0;
}

/* y (M x N, row stride ldy) = x (M x K, row stride ldx) W^T + beta y, with
 * W (N x K) row-major: the layout of every projection. */
static void matmul(const model_ws *ws, float *y, int ldy, const float *x, int ldx, const float *w,
                   int M, int N, int K, float beta)
{
  gemm(1, M, N, K, 1.0f, x, ldx, w, K, beta, y, ldy, ws_threads(ws) == 1);
}

/* Projection through weight tensor wi of the view: y = x W^T + beta y.
 * Biases are added by the elementwise passes around it. */
static void project(const model *m, const model_view *v, const model_ws *ws, float *y, int ldy,
                    const float *x, int ldx, int wi, int M, float beta)
{
  const model_tensor *t = &m->tensors[wi];
  const float *w = v->get(v->ctx, wi, 0, t->n);
  matmul(ws, y, ldy, x, ldx, w, M, (int)t->shape[0], (int)t->shape[1], beta);
}

/* Bias vector bi (n floats) copied to dst, or NULL when there is none: a
 * view's pointer lives only until its second-next get. */
static const float *bias_copy(const model_view *v, int bi, size_t n, float *dst)
{
  if (bi == MODEL_NONE)
    return NULL;
  memcpy(dst, v->get(v->ctx, bi, 0, n), n * sizeof *dst);
  return dst;
}

/* out = norm(x) row by row: LayerNorm when b is given, else RMSNorm. Then,
 * when pre is given, x += pre: the bias of the projection whose output the
 * GEMM will add to x (beta = 1), so that neither the bias nor the residual
 * add needs a pass of its own. */
static void norm_rows(const model_ws *ws, float *out, float *x, const float *w, const float *b,
                      const float *pre, size_t rows, int d, float eps)
{
  int nt = team(ws, rows * (size_t)d);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (long long r = 0; r < (long long)rows; r++)
    ws->k->norm(out + (size_t)r * d, x + (size_t)r * d, w, b, pre, d, eps);
}

/* Norm wi (+ bias bi) of x into out; pre as norm_rows. */
static void norm(const model *m, const model_view *v, const model_ws *ws, float *out, float *x,
                 const float *pre, size_t rows, int wi, int bi)
{
  const model_config *c = &m->cfg;
  const float *w = v->get(v->ctx, wi, 0, (size_t)c->n_embd);
  const float *b = c->arch == MODEL_GPT2 ? v->get(v->ctx, bi, 0, (size_t)c->n_embd) : NULL;
  norm_rows(ws, out, x, w, b, pre, rows, c->n_embd, c->norm_eps);
}

static void rope(float *restrict x, int n_heads, int hd, const float *restrict cs,
                 const float *restrict sn, enum model_rope style)
{
  const int h2 = hd / 2;
  for (int h = 0; h < n_heads; h++) {
    float *xh = x + (size_t)h * hd;
    if (style == MODEL_ROPE_INTERLEAVED) {
#pragma omp simd
      for (int j = 0; j < h2; j++) {
        float x0 = xh[2 * j], x1 = xh[2 * j + 1];
        xh[2 * j] = x0 * cs[j] - x1 * sn[j];
        xh[2 * j + 1] = x0 * sn[j] + x1 * cs[j];
      }
    } else {
#pragma omp simd
      for (int j = 0; j < h2; j++) {
        float x0 = xh[j], x1 = xh[j + h2];
        xh[j] = x0 * cs[j] - x1 * sn[j];
        xh[j + h2] = x0 * sn[j] + x1 * cs[j];
      }
    }
  }
}

/* After the q, k, v projections, row by row: + bias (ld floats, or NULL),
 * then RoPE on q and k (llama family). */
static void qkv_rows(const model *m, model_ws *ws, const float *restrict bias, int rows, int T)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, hd = d / c->n_head, kvd = hd * c->n_kv_head, ld = d + 2 * kvd;
  const int rotate = c->arch == MODEL_LLAMA;
  int nt = team(ws, (size_t)rows * ld);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (int r = 0; r < rows; r++) {
    float *row = ws->qkv + (size_t)r * ld;
    if (bias) {
#pragma omp simd
      for (int i = 0; i < ld; i++)
        row[i] += bias[i];
    }
    if (rotate) {
      int t = r % T;
      const float *cs = ws->rope_cos + (size_t)t * (hd / 2);
      const float *sn = ws->rope_sin + (size_t)t * (hd / 2);
      rope(row, c->n_head, hd, cs, sn, c->rope);
      rope(row + d, c->n_kv_head, hd, cs, sn, c->rope);
    }
  }
}

/* Causal multi-head attention of every sequence; grouped-query heads share
 * K and V. One job per (sequence, head), spread over threads, each doing
 * S = Q K^T / sqrt(hd) and O = P V as single-threaded GEMMs on strided
 * views of the qkv buffer. P is the unnormalised e^(S - rowmax) (zero past
 * the diagonal); O's rows are divided by P's row sums after the GEMM. Rows
 * past a sequence's length are left zero. */
static void attention(const model *m, const model_batch *b, model_ws *ws)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, hd = d / c->n_head, kvd = hd * c->n_kv_head;
  const int ld = d + 2 * kvd, group = c->n_head / c->n_kv_head, T = b->T;
  float scale = 1.0f / sqrtf((float)hd);
  long long jobs = (long long)b->B * c->n_head;
  for (int s = 0; s < b->B; s++)
    if (b->len[s] < T)
      memset(ws->att + ((size_t)s * T + b->len[s]) * d, 0,
             (size_t)(T - b->len[s]) * d * sizeof(float));
  int nt = ws_threads(ws) < ws->max_threads ? ws_threads(ws) : ws->max_threads;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic)
  for (long long job = 0; job < jobs; job++) {
    int s = (int)(job / c->n_head), h = (int)(job % c->n_head), kvh = h / group, L = b->len[s];
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float *S = ws->scores + (size_t)tid * QUERY_BLOCK * T;
    float *base = ws->qkv + (size_t)s * T * ld;
    float *q = base + h * hd, *k = base + d + kvh * hd, *v = base + d + kvd + kvh * hd;
    float *o = ws->att + (size_t)s * T * d + h * hd;
    float inv[QUERY_BLOCK];
    /* Query rows in blocks, so the scores need QUERY_BLOCK x T, not T x T. */
    for (int q0 = 0; q0 < L; q0 += QUERY_BLOCK) {
      int rows = L - q0 < QUERY_BLOCK ? L - q0 : QUERY_BLOCK, keys = q0 + rows;
      /* S (rows x keys) = scale * Q[q0..] K[0..keys)^T */
      gemm(1, rows, keys, hd, scale, q + (size_t)q0 * ld, ld, k, ld, 0.0f, S, T, 1);
      ws->k->softmax(S, T, q0, rows, keys, inv);
      /* O[q0..] (rows x hd) = P (rows x keys) V[0..keys), then / row sums */
      float *oq = o + (size_t)q0 * d;
      gemm(0, rows, hd, keys, 1.0f, S, T, v, ld, 0.0f, oq, d, 1);
      for (int i = 0; i < rows; i++) {
        float *orow = oq + (size_t)i * d, f = inv[i];
#pragma omp simd
        for (int j = 0; j < hd; j++)
          orow[j] *= f;
      }
    }
  }
}

/* The MLP's activation over (rows, ff), row by row (see act_body). */
static void activate(const model_ws *ws, float *h, const float *gate, const float *bias,
                     size_t rows, int ff)
{
  /* an exp per element: worth threads sooner than a norm */
  int nt = team(ws, rows * (size_t)ff * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
  for (long long r = 0; r < (long long)rows; r++)
    ws->k->act(h + (size_t)r * ff, gate ? gate + (size_t)r * ff : NULL, bias, ff);
}

static int check_batch(const model *m, const model_batch *b, const model_ws *ws, model_err *err)
{
  if (b->B < 1 || b->B > ws->B || b->T > ws->T || b->T < 1)
    return model_fail(err, MODEL_EINVAL, "batch %d x %d does not fit the workspace %d x %d",
                      b->B, b->T, ws->B, ws->T);
  for (int s = 0; s < b->B; s++) {
    if (b->len[s] < 1 || b->len[s] > b->T)
      return model_fail(err, MODEL_EINVAL, "sequence %d: length %d not in 1..%d", s, b->len[s],
                        b->T);
    for (int t = 0; t < b->len[s]; t++) {
      int32_t id = b->tokens[(size_t)s * b->T + t];
      if (id < 0 || id >= m->cfg.n_vocab)
        return model_fail(err, MODEL_EINVAL, "sequence %d position %d: token %d outside the "
                                             "vocabulary (%d)", s, t, id, m->cfg.n_vocab);
    }
  }
  return 0;
}

int model_forward(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                  model_err *err)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, hd = d / c->n_head, kvd = hd * c->n_kv_head, ld = d + 2 * kvd;
  const int ff = c->n_ff, T = b->T, rows = b->B * b->T;
  int rv = check_batch(m, b, ws, err);
  if (rv != 0)
    return rv;
  ws->cur_B = b->B;
  ws->cur_T = T;

  /* Embeddings: one row of the token table per position (padding included,
   * as token 0: padded rows never reach a real position). */
  for (int s = 0; s < b->B; s++) {
    for (int t = 0; t < T; t++) {
      int32_t id = t < b->len[s] ? b->tokens[(size_t)s * T + t] : 0;
      float *x = ws->x + ((size_t)s * T + t) * d;
      memcpy(x, v->get(v->ctx, m->tok_embd, (size_t)id * d, (size_t)d), (size_t)d * sizeof *x);
      if (m->pos_embd != MODEL_NONE) {
        const float *p = v->get(v->ctx, m->pos_embd, (size_t)t * d, (size_t)d);
#pragma omp simd
        for (int i = 0; i < d; i++)
          x[i] += p[i];
      }
    }
  }

  /* Each sublayer: norm (which also adds the bias of the sublayer's output
   * projection to the residual stream), the sublayer, and its output
   * projection added to the residual stream by the GEMM itself (beta 1). */
  for (int l = 0; l < c->n_layer; l++) {
    const model_layer *L = &m->layers[l];
    /* Attention sublayer. */
    const float *pre = bias_copy(v, L->bo, (size_t)d, ws->bias);
    norm(m, v, ws, ws->xb, ws->x, pre, (size_t)rows, L->attn_norm_w, L->attn_norm_b);
    if (L->wqkv != MODEL_NONE) {
      project(m, v, ws, ws->qkv, ld, ws->xb, d, L->wqkv, rows, 0.0f);
      qkv_rows(m, ws, L->bqkv == MODEL_NONE ? NULL : v->get(v->ctx, L->bqkv, 0, (size_t)ld), rows,
               T);
    } else {
      project(m, v, ws, ws->qkv, ld, ws->xb, d, L->wq, rows, 0.0f);
      project(m, v, ws, ws->qkv + d, ld, ws->xb, d, L->wk, rows, 0.0f);
      project(m, v, ws, ws->qkv + d + kvd, ld, ws->xb, d, L->wv, rows, 0.0f);
      const float *bias = NULL;
      if (L->bq != MODEL_NONE) { /* Qwen2: all three or none (model.c) */
        bias_copy(v, L->bq, (size_t)d, ws->bias);
        bias_copy(v, L->bk, (size_t)kvd, ws->bias + d);
        bias_copy(v, L->bv, (size_t)kvd, ws->bias + d + kvd);
        bias = ws->bias;
      }
      qkv_rows(m, ws, bias, rows, T);
    }
    attention(m, b, ws);
    project(m, v, ws, ws->x, d, ws->att, d, L->wo, rows, 1.0f);

    /* MLP sublayer. */
    pre = bias_copy(v, L->b_down, (size_t)d, ws->bias);
    norm(m, v, ws, ws->xb, ws->x, pre, (size_t)rows, L->ffn_norm_w, L->ffn_norm_b);
    project(m, v, ws, ws->hb, ff, ws->xb, d, L->w_up, rows, 0.0f);
    const float *gate = NULL;
    if (L->w_gate != MODEL_NONE) {
      project(m, v, ws, ws->hb2, ff, ws->xb, d, L->w_gate, rows, 0.0f);
      gate = ws->hb2;
    }
    activate(ws, ws->hb, gate,
             L->b_up == MODEL_NONE ? NULL : v->get(v->ctx, L->b_up, 0, (size_t)ff), (size_t)rows,
             ff);
    project(m, v, ws, ws->x, d, ws->hb, ff, L->w_down, rows, 1.0f);
  }
  norm(m, v, ws, ws->hidden, ws->x, NULL, (size_t)rows, m->out_norm_w, m->out_norm_b);
  return 0;
}

int model_logits_at(const model *m, const model_view *v, const model_ws *ws, int s, int t,
                    float *out, model_err *err)
{
  const int d = m->cfg.n_embd, V = m->cfg.n_vocab;
  if (s < 0 || s >= ws->cur_B || t < 0 || t >= ws->cur_T)
    return model_fail(err, MODEL_EINVAL, "position (%d, %d) outside the batch", s, t);
  const float *h = ws->hidden + ((size_t)s * ws->cur_T + t) * d;
  for (int v0 = 0; v0 < V; v0 += VOCAB_CHUNK) {
    int n = V - v0 < VOCAB_CHUNK ? V - v0 : VOCAB_CHUNK;
    const float *w = v->get(v->ctx, m->output, (size_t)v0 * d, (size_t)n * d);
    matmul(ws, out + v0, n, h, d, w, 1, n, d, 0.0f);
  }
  return 0;
}

/* Cross-entropy per counted row; row r belongs to sequence seq[r]. */
static int loss_rows(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                     double *seq_sum, long *seq_count, model_err *err)
{
  const int d = m->cfg.n_embd, V = m->cfg.n_vocab, T = b->T;
  /* Gather the counted rows of the hidden states into ws->xb. */
  int n = 0;
  int *seq = malloc((size_t)b->B * T * sizeof *seq);
  int *target = malloc((size_t)b->B * T * sizeof *target);
  float *mx = malloc((size_t)b->B * T * sizeof *mx), *se = malloc((size_t)b->B * T * sizeof *se);
  float *tl = malloc((size_t)b->B * T * sizeof *tl);
  if (!seq || !target || !mx || !se || !tl) {
    free(seq);
    free(target);
    free(mx);
    free(se);
    free(tl);
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  }
  for (int s = 0; s < b->B; s++) {
    for (int t = 0; t + 1 < b->len[s]; t++) {
      if (b->target && !b->target[(size_t)s * T + t])
        continue;
      memcpy(ws->xb + (size_t)n * d, ws->hidden + ((size_t)s * T + t) * d, (size_t)d * sizeof(float));
      seq[n] = s;
      target[n++] = b->tokens[(size_t)s * T + t + 1];
    }
  }
  for (int r = 0; r < n; r++) {
    mx[r] = -INFINITY;
    se[r] = 0.0f;
  }
  /* Online log-sum-exp over vocabulary chunks. */
  for (int v0 = 0; v0 < V && n > 0; v0 += VOCAB_CHUNK) {
    int nc = V - v0 < VOCAB_CHUNK ? V - v0 : VOCAB_CHUNK;
    const float *w = v->get(v->ctx, m->output, (size_t)v0 * d, (size_t)nc * d);
    for (int r0 = 0; r0 < n; r0 += ROW_CHUNK) {
      int nr = n - r0 < ROW_CHUNK ? n - r0 : ROW_CHUNK;
      matmul(ws, ws->logits, nc, ws->xb + (size_t)r0 * d, d, w, nr, nc, d, 0.0f);
      /* Each row on its own: the same bits on any number of threads. */
      int nt = team(ws, (size_t)nr * nc * 4);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
      for (int r = 0; r < nr; r++) {
        const float *lg = ws->logits + (size_t)r * nc;
        int R = r0 + r;
        ws->k->lse(lg, nc, &mx[R], &se[R]);
        if (target[R] >= v0 && target[R] < v0 + nc)
          tl[R] = lg[target[R] - v0];
      }
    }
  }
  for (int s = 0; s < b->B; s++) {
    seq_sum[s] = 0.0;
    seq_count[s] = 0;
  }
  for (int r = 0; r < n; r++) {
    seq_sum[seq[r]] += (double)mx[r] + log((double)se[r]) - (double)tl[r];
    seq_count[seq[r]]++;
  }
  free(seq);
  free(target);
  free(mx);
  free(se);
  free(tl);
  return 0;
}

int model_loss_seq(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                   double *seq_sum, long *seq_count, model_err *err)
{
  return loss_rows(m, v, b, ws, seq_sum, seq_count, err);
}

int model_loss(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
               double *sum, long *count, model_err *err)
{
  double *ss = malloc((size_t)b->B * sizeof *ss);
  long *sc = malloc((size_t)b->B * sizeof *sc);
  int rv = !ss || !sc ? model_fail(err, MODEL_ENOMEM, "out of memory")
                      : loss_rows(m, v, b, ws, ss, sc, err);
  if (rv == 0) {
    *sum = 0.0;
    *count = 0;
    for (int s = 0; s < b->B; s++) {
      *sum += ss[s];
      *count += sc[s];
    }
  }
  free(ss);
  free(sc);
  return rv;
}

size_t model_max_slice(const model *m)
{
  size_t d = (size_t)m->cfg.n_embd, chunk = (size_t)VOCAB_CHUNK;
  size_t mx = (m->cfg.n_vocab < VOCAB_CHUNK ? (size_t)m->cfg.n_vocab : chunk) * d;
  for (int i = 0; i < m->n_tensors; i++)
    if (i != m->tok_embd && i != m->output && i != m->pos_embd && m->tensors[i].n > mx)
      mx = m->tensors[i].n;
  return mx;
}

void model_lora_merge(float *dst, const float *w, const float *b, const float *a, int out, int in,
                      int r, float scale, int single)
{
  if (dst != w)
    memcpy(dst, w, (size_t)out * in * sizeof *dst);
  gemm(0, out, in, r, scale, b, r, a, in, 1.0f, dst, in, single);
}

int model_concurrent_forwards(void)
{
#ifdef ZOTUNE_OPENBLAS
  return openblas_get_parallel() == 2; /* 2: OpenMP; 1: its own pthread pool */
#else
  return 1;
#endif
}
