/* model: the forward pass of GPT-2 and Llama blocks on BLIS, and the
 * chunked LM head and cross-entropy. Reads top to bottom like the papers:
 * embed, then per block norm -> attention -> residual -> norm -> MLP ->
 * residual, then the final norm. Every weight comes through a model_view. */
#include "config.h"

#include <math.h>
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

#define VOCAB_CHUNK 2048 /* LM head: vocabulary rows per chunk */
#define ROW_CHUNK 256    /* LM head: positions per chunk */
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
  float *logits; /* (B*T or VOCAB_CHUNK rows, VOCAB_CHUNK) */
  int max_threads;
};

static int n_threads = 1;

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
  free(ws);
}

int model_ws_new(const model *m, int B, int T, model_ws **out, model_err *err)
{
  const model_config *c = &m->cfg;
  if (B < 1 || T < 1 || T > c->n_ctx)
    return model_fail(err, MODEL_EINVAL, "batch %d x %d tokens (context is %d)", B, T, c->n_ctx);
  size_t bt = (size_t)B * T, d = (size_t)c->n_embd, hd = d / (size_t)c->n_head;
  size_t kvd = hd * (size_t)c->n_kv_head;
  model_ws *ws = calloc(1, sizeof *ws);
  if (!ws)
    return model_fail(err, MODEL_ENOMEM, "out of memory");
  ws->B = B;
  ws->T = T;
  ws->max_threads = n_threads; /* one T x T score buffer per attention thread */
  ws->x = malloc(bt * d * sizeof(float));
  ws->xb = malloc(bt * d * sizeof(float));
  ws->qkv = malloc(bt * (d + 2 * kvd) * sizeof(float));
  ws->att = malloc(bt * d * sizeof(float));
  ws->hb = malloc(bt * (size_t)c->n_ff * sizeof(float));
  ws->hb2 = c->arch == MODEL_LLAMA ? malloc(bt * (size_t)c->n_ff * sizeof(float)) : NULL;
  ws->hidden = malloc(bt * d * sizeof(float));
  ws->scores = malloc((size_t)ws->max_threads * QUERY_BLOCK * T * sizeof(float));
  ws->rope_cos = malloc((size_t)T * (hd / 2 + 1) * sizeof(float));
  ws->rope_sin = malloc((size_t)T * (hd / 2 + 1) * sizeof(float));
  ws->logits = malloc((size_t)ROW_CHUNK * VOCAB_CHUNK * sizeof(float));
  if (!ws->x || !ws->xb || !ws->qkv || !ws->att || !ws->hb || (c->arch == MODEL_LLAMA && !ws->hb2) ||
      !ws->hidden ||
      !ws->scores || !ws->rope_cos || !ws->rope_sin || !ws->logits) {
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

/* y (M x N, row stride ldy) = x (M x K, row stride ldx) W^T (+ bias), with
 * W (N x K) row-major: the layout of every projection. */
static void matmul(float *y, int ldy, const float *x, int ldx, const float *w, const float *bias,
                   int M, int N, int K)
{
  gemm(1, M, N, K, 1.0f, x, ldx, w, K, 0.0f, y, ldy, 0);
  if (bias) {
    for (int i = 0; i < M; i++)
      for (int j = 0; j < N; j++)
        y[(size_t)i * ldy + j] += bias[j];
  }
}

static void layernorm(float *out, const float *x, const float *w, const float *b, size_t rows,
                      int d, float eps)
{
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    float *o = out + r * d;
    float mean = 0, var = 0;
    for (int i = 0; i < d; i++)
      mean += xr[i];
    mean /= d;
    for (int i = 0; i < d; i++)
      var += (xr[i] - mean) * (xr[i] - mean);
    float rs = 1.0f / sqrtf(var / d + eps);
    for (int i = 0; i < d; i++)
      o[i] = (xr[i] - mean) * rs * w[i] + b[i];
  }
}

static void rmsnorm(float *out, const float *x, const float *w, size_t rows, int d, float eps)
{
  for (size_t r = 0; r < rows; r++) {
    const float *xr = x + r * d;
    float *o = out + r * d;
    float ss = 0;
    for (int i = 0; i < d; i++)
      ss += xr[i] * xr[i];
    float rs = 1.0f / sqrtf(ss / d + eps);
    for (int i = 0; i < d; i++)
      o[i] = xr[i] * rs * w[i];
  }
}

static void norm(const model *m, const model_view *v, float *out, const float *x, size_t rows,
                 int wi, int bi)
{
  const model_config *c = &m->cfg;
  const float *w = v->get(v->ctx, wi, 0, (size_t)c->n_embd);
  if (c->arch == MODEL_GPT2)
    layernorm(out, x, w, v->get(v->ctx, bi, 0, (size_t)c->n_embd), rows, c->n_embd, c->norm_eps);
  else
    rmsnorm(out, x, w, rows, c->n_embd, c->norm_eps);
}

/* Projection through tensor wi (+ bias bi) of the view. */
static void project(const model *m, const model_view *v, float *y, int ldy, const float *x,
                    int ldx, int wi, int bi, int M)
{
  const model_tensor *t = &m->tensors[wi];
  const float *w = v->get(v->ctx, wi, 0, t->n);
  const float *b = bi == MODEL_NONE ? NULL : v->get(v->ctx, bi, 0, (size_t)t->shape[0]);
  matmul(y, ldy, x, ldx, w, b, M, (int)t->shape[0], (int)t->shape[1]);
}

static void rope(float *x, int n_heads, int hd, const float *cs, const float *sn,
                 enum model_rope style)
{
  for (int h = 0; h < n_heads; h++) {
    float *xh = x + (size_t)h * hd;
    for (int j = 0; j < hd / 2; j++) {
      int a = style == MODEL_ROPE_INTERLEAVED ? 2 * j : j;
      int b = style == MODEL_ROPE_INTERLEAVED ? 2 * j + 1 : j + hd / 2;
      float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * cs[j] - x1 * sn[j];
      xh[b] = x0 * sn[j] + x1 * cs[j];
    }
  }
}

/* Causal multi-head attention of every sequence; grouped-query heads share
 * K and V. One job per (sequence, head), spread over threads, each doing
 * S = Q K^T and O = P V as single-threaded GEMMs on strided views of the
 * qkv buffer. Rows past a sequence's length are left zero. */
static void attention(const model *m, const model_batch *b, model_ws *ws)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, hd = d / c->n_head, kvd = hd * c->n_kv_head;
  const int ld = d + 2 * kvd, group = c->n_head / c->n_kv_head, T = b->T;
  float scale = 1.0f / sqrtf((float)hd);
  long long jobs = (long long)b->B * c->n_head;
  memset(ws->att, 0, (size_t)b->B * T * d * sizeof(float));
  int nt = n_threads < ws->max_threads ? n_threads : ws->max_threads;
#pragma omp parallel for num_threads(nt) schedule(dynamic)
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
    /* Query rows in blocks, so the scores need QUERY_BLOCK x T, not T x T. */
    for (int q0 = 0; q0 < L; q0 += QUERY_BLOCK) {
      int rows = L - q0 < QUERY_BLOCK ? L - q0 : QUERY_BLOCK, keys = q0 + rows;
      /* S (rows x keys) = scale * Q[q0..] K[0..keys)^T */
      gemm(1, rows, keys, hd, scale, q + (size_t)q0 * ld, ld, k, ld, 0.0f, S, T, 1);
      for (int i = 0; i < rows; i++) {
        int t = q0 + i;
        float *row = S + (size_t)i * T, mx = row[0], sum = 0;
        for (int u = 1; u <= t; u++)
          mx = row[u] > mx ? row[u] : mx;
        for (int u = 0; u <= t; u++) {
          row[u] = expf(row[u] - mx);
          sum += row[u];
        }
        float inv = 1.0f / sum;
        for (int u = 0; u <= t; u++)
          row[u] *= inv;
        for (int u = t + 1; u < keys; u++)
          row[u] = 0.0f; /* causal mask */
      }
      /* O[q0..] (rows x hd) = P (rows x keys) V[0..keys) */
      gemm(0, rows, hd, keys, 1.0f, S, T, v, ld, 0.0f, o + (size_t)q0 * d, d, 1);
    }
  }
}

static float gelu(float x)
{
  float y = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  float t = 1.0f - 2.0f / (expf(2.0f * y) + 1.0f);
  return 0.5f * x * (1.0f + t);
}

static float silu(float x)
{
  return x / (1.0f + expf(-x));
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
        for (int i = 0; i < d; i++)
          x[i] += p[i];
      }
    }
  }

  for (int l = 0; l < c->n_layer; l++) {
    const model_layer *L = &m->layers[l];
    /* Attention sublayer. */
    norm(m, v, ws->xb, ws->x, (size_t)rows, L->attn_norm_w, L->attn_norm_b);
    if (L->wqkv != MODEL_NONE) {
      project(m, v, ws->qkv, ld, ws->xb, d, L->wqkv, L->bqkv, rows);
    } else {
      project(m, v, ws->qkv, ld, ws->xb, d, L->wq, L->bq, rows);
      project(m, v, ws->qkv + d, ld, ws->xb, d, L->wk, L->bk, rows);
      project(m, v, ws->qkv + d + kvd, ld, ws->xb, d, L->wv, L->bv, rows);
      for (int r = 0; r < rows; r++) {
        int t = r % T;
        const float *cs = ws->rope_cos + (size_t)t * (hd / 2);
        const float *sn = ws->rope_sin + (size_t)t * (hd / 2);
        rope(ws->qkv + (size_t)r * ld, c->n_head, hd, cs, sn, c->rope);
        rope(ws->qkv + (size_t)r * ld + d, c->n_kv_head, hd, cs, sn, c->rope);
      }
    }
    attention(m, b, ws);
    project(m, v, ws->xb, d, ws->att, d, L->wo, L->bo, rows);
    for (size_t i = 0; i < (size_t)rows * d; i++)
      ws->x[i] += ws->xb[i];

    /* MLP sublayer. */
    norm(m, v, ws->xb, ws->x, (size_t)rows, L->ffn_norm_w, L->ffn_norm_b);
    project(m, v, ws->hb, ff, ws->xb, d, L->w_up, L->b_up, rows);
    if (L->w_gate != MODEL_NONE) {
      project(m, v, ws->hb2, ff, ws->xb, d, L->w_gate, MODEL_NONE, rows);
      for (size_t i = 0; i < (size_t)rows * ff; i++)
        ws->hb[i] *= silu(ws->hb2[i]);
    } else {
      for (size_t i = 0; i < (size_t)rows * ff; i++)
        ws->hb[i] = gelu(ws->hb[i]);
    }
    project(m, v, ws->xb, d, ws->hb, ff, L->w_down, L->b_down, rows);
    for (size_t i = 0; i < (size_t)rows * d; i++)
      ws->x[i] += ws->xb[i];
  }
  norm(m, v, ws->hidden, ws->x, (size_t)rows, m->out_norm_w, m->out_norm_b);
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
    matmul(out + v0, n, h, d, w, NULL, 1, n, d);
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
      matmul(ws->logits, nc, ws->xb + (size_t)r0 * d, d, w, NULL, nr, nc, d);
      for (int r = 0; r < nr; r++) {
        const float *lg = ws->logits + (size_t)r * nc;
        int R = r0 + r;
        float cm = mx[R];
        for (int j = 0; j < nc; j++)
          cm = lg[j] > cm ? lg[j] : cm;
        float acc = se[R] * expf(mx[R] - cm);
        for (int j = 0; j < nc; j++)
          acc += expf(lg[j] - cm);
        se[R] = acc;
        mx[R] = cm;
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
                      int r, float scale)
{
  if (dst != w)
    memcpy(dst, w, (size_t)out * in * sizeof *dst);
  gemm(0, out, in, r, scale, b, r, a, in, 1.0f, dst, in, 0);
}
