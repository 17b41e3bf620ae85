/* bench_forward: speed of one forward pass + loss, next to the GEMMs it is
 * made of and to a PyTorch peer, all measured in the same run.
 *
 * Models (random weights, no file): a GPT-2-124M shape (12 layers, dim 768,
 * 12 heads, ffn 3072, vocab 50257, ctx 2048, tied LM head) and a ~15M Llama
 * shape (stories15M: 6 layers, dim 288, 6 heads, 6 kv heads, ffn 768, vocab
 * 32000, ctx 2048, untied output). Weights U(-0.0346, 0.0346) (std 0.02),
 * norm weights 1, biases 0; tokens uniform over the vocabulary.
 *
 * For each case (GPT-2 1x256, 1x2048, 8x256; Llama 1x256, 1x2048) and 2 and
 * 1 threads (GPT-2 8x256: 2 threads only; the peer's GPT-2 2048-token cases
 * too: time budget) it prints
 *   - model_forward + model_loss (plain view, loss over every position that
 *     has a next token, i.e. the whole LM head through the chunked
 *     cross-entropy): ms per forward, tokens/s, GFLOP/s;
 *   - the "GEMM mix": the same sequence of GEMM calls that model/forward.c
 *     makes (same shapes, strides, weights, threading: projections and
 *     LM-head chunks on BLIS's threads, attention as single-threaded
 *     QK^T and PV per (sequence, head, query block) spread over OpenMP
 *     threads), with nothing between them; the forward's GFLOP/s as a
 *     fraction of the mix's (target >= 85%). Forward and mix repetitions
 *     alternate, so the ratio is measured side by side. The mix mirrors
 *     forward.c's private blocking constants (below): keep them in step;
 *   - where the time goes: blocks vs LM head + cross-entropy, each against
 *     its GEMMs alone;
 *   - the PyTorch peer (tests/bench/peers/torch_forward.py, /usr/bin/python3)
 *     on the same shapes and thread counts, and zotune's speed-up over it;
 *   - the peak RSS of one GPT-2 1x2048 forward + loss in a child forked
 *     before the parent allocates anything, against the weights and the
 *     target "weights + 25%".
 *
 * FLOPs: 2*M*N*K for every projection, the LM head over the loss rows, and
 * QK^T and PV as forward.c computes them (query blocks of 128 against the
 * keys up to the block's end: the causal half plus the upper halves of the
 * diagonal blocks); the full (L x L) and causal-only counts are printed for
 * reference. The peer's GFLOP/s use the same count, so GFLOP/s ratios are
 * time ratios.
 *
 * Usage: bench_forward [--reps N] [--quick] [--no-peer] [--peer PATH]
 *                      [--peer-env 'VAR=value ...']
 *   --quick     only the 256-token cases, no peak-RSS child (development);
 *   --peer      the peer script (default: ZOTUNE_TORCH_PEER, else
 *               peers/torch_forward.py next to this source file);
 *   --peer-env  variables for the peer instead of the BLAS setups tried by
 *               default (see tests/bench/bench_peer.h), e.g. '' for the system's BLAS.
 * About 2.5 minutes on a quiet 2-core AVX-512 VM.
 *
 * Exit status: 0, or 1 when something failed (allocation, a model call, a
 * bad argument). A missing or failing PyTorch peer is reported, not fatal.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model/model.h"
#include "tests/bench/bench_models.h"
#include "tests/bench/bench_peer.h"
#include "tests/bench/bench_util.h"

#ifdef ZOTUNE_OPENBLAS
#include <cblas.h>
#else
#include <blis.h>
#endif

/* The GEMM mix mirrors model/forward.c as of commit 5992138; these are
 * private there. If forward.c changes its blocking, change them too. */
#define VOCAB_CHUNK 2048  /* LM head: vocabulary rows per chunk */
#define ROW_CHUNK 256     /* LM head: positions per chunk */
#define QUERY_BLOCK 128   /* attention: query rows per block (keys up to the block's end) */
#define SMALL_GEMM 2e6    /* M*N*K below which forward.c's gemm runs on one thread */
#define MAX_THREADS BENCH_MAX_THREADS
#define DEFAULT_REPS 3
#define TARGET_MIX 0.85 /* forward GFLOP/s >= 85% of its GEMM mix */
#define TARGET_RSS 1.25 /* peak RSS <= weights + 25% */
#define SEED BENCH_SEED

/* The whole run must stay near 3 minutes on 2 cores: the 1-thread rows of
 * the costliest cases are left out (zotune's 8x256, the peer's GPT-2 2048-token
 * cases), and every case has one warm-up (2 threads) for both thread counts. */
struct bcase {
  int model, B, T;
  int quick;      /* part of --quick */
  int one_thread; /* zotune also at 1 thread */
  int peer_one;   /* the peer also at 1 thread */
};

static const struct bcase cases[] = {
    {M_GPT2, 1, 256, 1, 1, 1},  {M_GPT2, 1, 2048, 0, 1, 0}, {M_GPT2, 8, 256, 0, 0, 0},
    {M_LLAMA, 1, 256, 1, 1, 1}, {M_LLAMA, 1, 2048, 0, 1, 1},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

/* Parts of one forward, seconds. */
struct parts {
  double proj, attn, head; /* GEMM mix */
  double blocks, loss;     /* model_forward, model_loss */
};

struct result {
  int done;
  int measured[MAX_THREADS + 1];
  /* GFLOP per forward: attention as forward.c computes it (causal query
   * blocks), and in full (L x L) and causal-only for reference */
  double gf_proj, gf_head, gf_attn, gf_attn_full, gf_attn_causal;
  double loss_tok;
  /* by thread count: median seconds of forward+loss and of the mix */
  double fwd[MAX_THREADS + 1], fwd_lo[MAX_THREADS + 1], fwd_hi[MAX_THREADS + 1];
  double mix[MAX_THREADS + 1];
  struct parts part[MAX_THREADS + 1];
  double wait[MAX_THREADS + 1];
  struct peer_result peer[MAX_THREADS + 1]; /* PyTorch peer */
};

static struct result results[N_CASES];
static struct bench_run run; /* start, flagged rows */
static int reps = DEFAULT_REPS;


struct batch {
  model_batch b;
  int32_t *tokens;
  int *len;
};

static int new_batch(const model *m, int B, int T, struct batch *bt)
{
  uint64_t s = SEED ^ ((uint64_t)B << 32 | (uint64_t)T);
  bt->tokens = malloc((size_t)B * T * sizeof *bt->tokens);
  bt->len = malloc((size_t)B * sizeof *bt->len);
  if (!bt->tokens || !bt->len) {
    free(bt->tokens);
    free(bt->len);
    return -1;
  }
  for (size_t i = 0; i < (size_t)B * T; i++)
    bt->tokens[i] = (int32_t)(bench_next(&s) % (uint64_t)m->cfg.n_vocab);
  for (int i = 0; i < B; i++)
    bt->len[i] = T;
  bt->b.B = B;
  bt->b.T = T;
  bt->b.tokens = bt->tokens;
  bt->b.len = bt->len;
  bt->b.target = NULL;
  return 0;
}

static void free_batch(struct batch *bt)
{
  free(bt->tokens);
  free(bt->len);
}

/* ---- FLOP counts -------------------------------------------------------- */

/* Weight elements of every projection of the blocks (each is one GEMM with
 * N*K = its size). */
static double block_weights(const model *m)
{
  double n = 0.0;
  for (int l = 0; l < m->cfg.n_layer; l++) {
    const model_layer *L = &m->layers[l];
    const int w[] = {L->wqkv, L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
      if (w[i] != MODEL_NONE)
        n += (double)m->tensors[w[i]].n;
  }
  return n;
}

static void count_flops(const model *m, int B, int T, struct result *r)
{
  const model_config *c = &m->cfg;
  const double rows = (double)B * T, loss_rows = (double)B * (T - 1), L = T;
  const double hd = (double)c->n_embd / c->n_head;
  r->gf_proj = 2.0 * rows * block_weights(m) * 1e-9;
  r->gf_head = 2.0 * loss_rows * (double)c->n_vocab * c->n_embd * 1e-9;
  /* per layer, sequence and head: QK^T and PV, 2 * queries * keys * hd each */
  const double per = (double)c->n_layer * B * c->n_head * 2.0 * 2.0 * hd;
  double qk = 0.0; /* forward.c: query block [q0, q0+rows) against keys [0, q0+rows) */
  for (int q0 = 0; q0 < T; q0 += QUERY_BLOCK) {
    int rws = T - q0 < QUERY_BLOCK ? T - q0 : QUERY_BLOCK;
    qk += (double)rws * (q0 + rws);
  }
  r->gf_attn = per * qk * 1e-9;
  r->gf_attn_full = per * L * L * 1e-9;
  r->gf_attn_causal = per * L * (L + 1) / 2.0 * 1e-9;
}

/* ---- the GEMM mix ------------------------------------------------------- */

/* Inputs are constant (filled once), outputs go elsewhere, so no value
 * drifts towards subnormals however often the mix runs. */
struct mix {
  int B, T, rows, n_loss;
  float *xb, *att, *hb, *qkv;           /* inputs: (rows,d) (rows,d) (rows,ff) (rows,ld) */
  float *o_qkv, *o_d, *o_ff, *o_ff2;    /* projection outputs */
  float *o_att;                         /* attention output (rows, d) */
  float *S;                             /* MAX_THREADS x QUERY_BLOCK x T */
  float *logits;                        /* ROW_CHUNK x VOCAB_CHUNK */
};

static void free_mix(struct mix *x)
{
  free(x->xb);
  free(x->att);
  free(x->hb);
  free(x->qkv);
  free(x->o_qkv);
  free(x->o_d);
  free(x->o_ff);
  free(x->o_ff2);
  free(x->o_att);
  free(x->S);
  free(x->logits);
}

static int new_mix(const model *m, int B, int T, struct mix *x)
{
  const model_config *c = &m->cfg;
  const size_t d = (size_t)c->n_embd, kvd = d / (size_t)c->n_head * (size_t)c->n_kv_head;
  const size_t rows = (size_t)B * T, ld = d + 2 * kvd, ff = (size_t)c->n_ff;
  memset(x, 0, sizeof *x);
  x->B = B;
  x->T = T;
  x->rows = (int)rows;
  x->n_loss = B * (T - 1);
  x->xb = bench_alloc(rows * d, 0.011f, MAX_THREADS);
  x->att = bench_alloc(rows * d, 0.012f, MAX_THREADS);
  x->hb = bench_alloc(rows * ff, 0.013f, MAX_THREADS);
  x->qkv = bench_alloc(rows * ld, 0.014f, MAX_THREADS);
  x->o_qkv = bench_alloc(rows * ld, 0.0f, MAX_THREADS);
  x->o_d = bench_alloc(rows * d, 0.0f, MAX_THREADS);
  x->o_ff = bench_alloc(rows * ff, 0.0f, MAX_THREADS);
  x->o_ff2 = c->arch == MODEL_LLAMA ? bench_alloc(rows * ff, 0.0f, MAX_THREADS) : NULL;
  x->o_att = bench_alloc(rows * d, 0.0f, MAX_THREADS);
  x->S = bench_alloc((size_t)MAX_THREADS * QUERY_BLOCK * T, 0.0f, MAX_THREADS);
  x->logits = bench_alloc((size_t)ROW_CHUNK * VOCAB_CHUNK, 0.0f, MAX_THREADS);
  if (!x->xb || !x->att || !x->hb || !x->qkv || !x->o_qkv || !x->o_d || !x->o_ff ||
      (c->arch == MODEL_LLAMA && !x->o_ff2) || !x->o_att || !x->S || !x->logits) {
    free_mix(x);
    return -1;
  }
  return 0;
}

/* forward.c's gemm(): C (M x N) = alpha A (M x K) op(B) + beta C, op(B) =
 * B^T with B stored (N x K) when bt; single = on the calling thread only. */
static void gemm(int bt, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
                 int ldb, float beta, float *C, int ldc, int single)
{
#ifdef ZOTUNE_OPENBLAS
  (void)single;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, bt ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
              B, ldb, beta, C, ldc);
#else
  rntm_t rntm = BLIS_RNTM_INITIALIZER;
  if (!single && (double)M * N * K < SMALL_GEMM)
    single = 1;
  if (single)
    bli_rntm_set_num_threads(1, &rntm);
  bli_sgemm_ex(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, M, N, K, &alpha, (float *)A, lda, 1,
               (float *)B, bt ? 1 : ldb, bt ? ldb : 1, &beta, C, ldc, 1, NULL,
               single ? &rntm : NULL);
#endif
}

/* A projection through weight tensor wi, as forward.c's matmul (no bias). */
static void proj(const model *m, const model_view *v, float *y, int ldy, const float *x, int ldx,
                 int wi, int M)
{
  const model_tensor *t = &m->tensors[wi];
  const int N = (int)t->shape[0], K = (int)t->shape[1];
  gemm(1, M, N, K, 1.0f, x, ldx, v->get(v->ctx, wi, 0, t->n), K, 0.0f, y, ldy, 0);
}

/* forward.c's attention() GEMMs: one job per (sequence, head) spread over nt
 * threads, each query block a single-threaded S = scale Q K^T over the keys
 * up to the block's end and O = P V. */
static void mix_attention(const model *m, struct mix *x, int nt)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, hd = d / c->n_head, kvd = hd * c->n_kv_head;
  const int ld = d + 2 * kvd, group = c->n_head / c->n_kv_head, T = x->T, L = x->T;
  const float scale = 1.0f / sqrtf((float)hd);
  long long jobs = (long long)x->B * c->n_head;
#pragma omp parallel for num_threads(nt) schedule(dynamic)
  for (long long job = 0; job < jobs; job++) {
    int s = (int)(job / c->n_head), h = (int)(job % c->n_head), kvh = h / group, tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float *S = x->S + (size_t)tid * QUERY_BLOCK * T;
    float *base = x->qkv + (size_t)s * T * ld;
    float *q = base + h * hd, *k = base + d + kvh * hd, *vv = base + d + kvd + kvh * hd;
    float *o = x->o_att + (size_t)s * T * d + h * hd;
    for (int q0 = 0; q0 < L; q0 += QUERY_BLOCK) {
      int rows = L - q0 < QUERY_BLOCK ? L - q0 : QUERY_BLOCK, keys = q0 + rows;
      gemm(1, rows, keys, hd, scale, q + (size_t)q0 * ld, ld, k, ld, 0.0f, S, T, 1);
      gemm(0, rows, hd, keys, 1.0f, S, T, vv, ld, 0.0f, o + (size_t)q0 * d, d, 1);
    }
  }
}

/* One forward's GEMMs, in forward.c's order; adds seconds to p. */
static void run_mix(const model *m, const model_view *v, struct mix *x, int nt, struct parts *p)
{
  const model_config *c = &m->cfg;
  const int d = c->n_embd, kvd = d / c->n_head * c->n_kv_head, ld = d + 2 * kvd;
  const int ff = c->n_ff, rows = x->rows, V = c->n_vocab;
  double t0, t1;
  for (int l = 0; l < c->n_layer; l++) {
    const model_layer *L = &m->layers[l];
    t0 = bench_now();
    if (L->wqkv != MODEL_NONE) {
      proj(m, v, x->o_qkv, ld, x->xb, d, L->wqkv, rows);
    } else {
      proj(m, v, x->o_qkv, ld, x->xb, d, L->wq, rows);
      proj(m, v, x->o_qkv + d, ld, x->xb, d, L->wk, rows);
      proj(m, v, x->o_qkv + d + kvd, ld, x->xb, d, L->wv, rows);
    }
    t1 = bench_now();
    p->proj += t1 - t0;
    mix_attention(m, x, nt);
    t0 = bench_now();
    p->attn += t0 - t1;
    proj(m, v, x->o_d, d, x->att, d, L->wo, rows);
    proj(m, v, x->o_ff, ff, x->xb, d, L->w_up, rows);
    if (L->w_gate != MODEL_NONE)
      proj(m, v, x->o_ff2, ff, x->xb, d, L->w_gate, rows);
    proj(m, v, x->o_d, d, x->hb, ff, L->w_down, rows);
    p->proj += bench_now() - t0;
  }
  t0 = bench_now();
  for (int v0 = 0; v0 < V; v0 += VOCAB_CHUNK) {
    int nc = V - v0 < VOCAB_CHUNK ? V - v0 : VOCAB_CHUNK;
    const float *w = v->get(v->ctx, m->output, (size_t)v0 * d, (size_t)nc * d);
    for (int r0 = 0; r0 < x->n_loss; r0 += ROW_CHUNK) {
      int nr = x->n_loss - r0 < ROW_CHUNK ? x->n_loss - r0 : ROW_CHUNK;
      gemm(1, nr, nc, d, 1.0f, x->xb + (size_t)r0 * d, d, w, d, 0.0f, x->logits, nc, 0);
    }
  }
  p->head += bench_now() - t0;
}

/* ---- timing ------------------------------------------------------------- */

/* Before each timed row: wait (up to GATE_ROW s per row, GATE_TOTAL s per
 * run) until other processes keep less than GATE_BUSY CPUs busy over
 * GATE_WINDOW s, so that a burst of someone else's work (a build) does not
 * land in a row. Rows still disturbed are flagged by their wait column. */
#define GATE_WINDOW 0.5
#define GATE_BUSY 0.15
#define GATE_ROW 20.0
#define GATE_TOTAL 60.0
static double gate_spent;
static int gate_gave_up;

static void quiet_gate(void)
{
  const double t0 = bench_now();
  while (1) {
    bench_load a = bench_load_now();
    struct timespec ts = {0, (long)(GATE_WINDOW * 1e9)};
    nanosleep(&ts, NULL);
    double f = bench_load_foreign(a, bench_load_now());
    double spent = bench_now() - t0;
    if (f < 0.0 || f < GATE_BUSY)
      break;
    if (spent >= GATE_ROW || gate_spent + spent >= GATE_TOTAL) {
      gate_gave_up++;
      break;
    }
  }
  gate_spent += bench_now() - t0;
}

/* One forward + loss; seconds of each part in *blocks and *loss. */
static int forward_once(const model *m, const model_view *v, const model_batch *b, model_ws *ws,
                        double *blocks, double *loss, double *loss_sum, long *count)
{
  model_err err;
  double t0 = bench_now();
  if (model_forward(m, v, b, ws, &err) != 0) {
    fprintf(stderr, "bench_forward: model_forward: %s\n", err.msg);
    return -1;
  }
  double t1 = bench_now();
  if (model_loss(m, v, b, ws, loss_sum, count, &err) != 0) {
    fprintf(stderr, "bench_forward: model_loss: %s\n", err.msg);
    return -1;
  }
  *blocks = t1 - t0;
  *loss = bench_now() - t1;
  return 0;
}

static void table_header(void)
{
  printf("| %-5s | %-6s | %-3s | %-9s | %-15s | %-7s | %-7s | %-9s | %-8s | %-12s | %-6s | "
         "%-6s |\n",
         "model", "B x T", "thr", "ms/fwd", "min - max", "tok/s", "GFLOP/s", "mix ms",
         "mix GF/s", "fwd/mix", "loss", "wait");
  printf("|-------|--------|-----|-----------|-----------------|---------|---------|-----------|"
         "----------|--------------|--------|--------|\n");
}

/* Times case ci on model m (warm-up + reps per thread count, forward and
 * mix alternating) and prints its rows. */
static int run_case(const model *m, int ci)
{
  const struct bcase *bc = &cases[ci];
  struct result *r = &results[ci];
  const model_view v = model_plain_view(m);
  struct batch bt;
  struct mix mx;
  model_ws *ws = NULL;
  model_err err;
  int rc = -1;
  model_set_threads(MAX_THREADS); /* the workspace sizes its score buffers by it */
  if (new_batch(m, bc->B, bc->T, &bt) != 0) {
    fprintf(stderr, "bench_forward: out of memory for a batch\n");
    return -1;
  }
  if (model_ws_new(m, bc->B, bc->T, &ws, &err) != 0) {
    fprintf(stderr, "bench_forward: model_ws_new: %s\n", err.msg);
    free_batch(&bt);
    return -1;
  }
  if (new_mix(m, bc->B, bc->T, &mx) != 0) {
    fprintf(stderr, "bench_forward: out of memory for the GEMM-mix buffers\n");
    model_ws_free(ws);
    free_batch(&bt);
    return -1;
  }
  count_flops(m, bc->B, bc->T, r);
  const double gf = r->gf_proj + r->gf_head + r->gf_attn;

  /* warm-up: page faults of the workspace, BLIS's packing buffers, threads */
  double blocks, loss, sum = 0.0;
  long count = 0;
  struct parts wp = {0};
  if (forward_once(m, &v, &bt.b, ws, &blocks, &loss, &sum, &count) != 0)
    goto out;
  run_mix(m, &v, &mx, MAX_THREADS, &wp);
  r->loss_tok = count > 0 ? sum / (double)count : NAN;

  for (int th = MAX_THREADS; th >= 1; th--) {
    if (th < MAX_THREADS && !bc->one_thread)
      continue;
    double tf[BENCH_MAX_REPS], tm[BENCH_MAX_REPS], tb[BENCH_MAX_REPS], tl[BENCH_MAX_REPS];
    double tp[BENCH_MAX_REPS], ta[BENCH_MAX_REPS], th_[BENCH_MAX_REPS];
    model_set_threads(th);
    quiet_gate();
    bench_load l0 = bench_load_now();
    for (int k = 0; k < reps; k++) {
      if (forward_once(m, &v, &bt.b, ws, &blocks, &loss, &sum, &count) != 0)
        goto out;
      tb[k] = blocks;
      tl[k] = loss;
      tf[k] = blocks + loss;
      struct parts p = {0};
      run_mix(m, &v, &mx, th, &p);
      tp[k] = p.proj;
      ta[k] = p.attn;
      th_[k] = p.head;
      tm[k] = p.proj + p.attn + p.head;
    }
    bench_load l1 = bench_load_now();
    r->measured[th] = 1;
    r->fwd[th] = bench_median(tf, reps, &r->fwd_lo[th], &r->fwd_hi[th]);
    r->mix[th] = bench_median(tm, reps, NULL, NULL);
    r->part[th].blocks = bench_median(tb, reps, NULL, NULL);
    r->part[th].loss = bench_median(tl, reps, NULL, NULL);
    r->part[th].proj = bench_median(tp, reps, NULL, NULL);
    r->part[th].attn = bench_median(ta, reps, NULL, NULL);
    r->part[th].head = bench_median(th_, reps, NULL, NULL);
    char mark[16], shape[16], range[40], frac[24];
    r->wait[th] = bench_mark_wait(&run, bench_load_wait(l0, l1), mark, sizeof mark);
    snprintf(shape, sizeof shape, "%dx%d", bc->B, bc->T);
    snprintf(range, sizeof range, "%.1f - %.1f", r->fwd_lo[th] * 1e3, r->fwd_hi[th] * 1e3);
    double f = r->mix[th] / r->fwd[th];
    snprintf(frac, sizeof frac, "%4.1f%% %s", 100.0 * f, f >= TARGET_MIX ? "MET" : "MISSED");
    printf("| %-5s | %-6s | %3d | %9.1f | %-15s | %7.0f | %7.1f | %9.1f | %8.1f | %-12s | "
           "%6.3f | %-6s |\n",
           model_names[bc->model], shape, th, r->fwd[th] * 1e3, range,
           (double)bc->B * bc->T / r->fwd[th], gf / r->fwd[th], r->mix[th] * 1e3,
           gf / r->mix[th], frac, r->loss_tok, mark);
    fflush(stdout);
  }
  r->done = 1;
  rc = 0;
out:
  free_mix(&mx);
  model_ws_free(ws);
  free_batch(&bt);
  return rc;
}

/* ---- PyTorch peer ------------------------------------------------------- */

static int find_case(int model_i, int B, int T)
{
  for (int i = 0; i < N_CASES; i++)
    if (cases[i].model == model_i && cases[i].B == B && cases[i].T == T)
      return i;
  return -1;
}

/* The peer's side of case ci (struct peer_job): run for model mi at th
 * threads when zotune timed it (at 1 thread only where peer_one: time
 * budget), named BxT, reported in TORCH_FORWARD lines. */
static int peer_wants(int ci, int mi, int th)
{
  return cases[ci].model == mi && results[ci].done && (th == MAX_THREADS || cases[ci].peer_one);
}

static void peer_item(char *buf, size_t len, int ci)
{
  snprintf(buf, len, "%dx%d", cases[ci].B, cases[ci].T);
}

static int peer_result(const char *line, int mi, int threads)
{
  char mname[16];
  int B, T, thr;
  struct peer_result p = {.ok = 1};
  if (sscanf(line,
             "TORCH_FORWARD model=%15s B=%d T=%d threads=%d median_ms=%lf min_ms=%lf "
             "max_ms=%lf loss=%lf wait=%lf",
             mname, &B, &T, &thr, &p.ms, &p.lo, &p.hi, &p.loss, &p.wait) != 9)
    return -1;
  int ci = find_case(mi, B, T);
  if (ci < 0 || thr != threads || thr < 1 || thr > MAX_THREADS)
    return 0;
  results[ci].peer[thr] = p;
  return 1;
}

static const struct peer_job peer_job = {.n_cases = N_CASES,
                                         .wants = peer_wants,
                                         .item = peer_item,
                                         .result = peer_result,
                                         .before_run = quiet_gate};

/* ---- peak RSS in a forked child ----------------------------------------- */

struct rss_info {
  int ok;
  long base_kb, model_kb, ws_kb, hwm_kb; /* VmRSS before, after the model, ws; VmHWM */
  double n_params;
  double fwd_s, loss_tok;
  long maxrss_kb; /* the parent's wait: ru_maxrss */
};

static void rss_child(int fd, void *unused)
{
  struct rss_info ri;
  memset(&ri, 0, sizeof ri);
  model *m = NULL;
  model_ws *ws = NULL;
  struct batch bt = {0};
  model_err err;
  model_view v;
  double blocks, loss, sum;
  long count;
  (void)unused;
  model_set_threads(MAX_THREADS);
  ri.base_kb = status_kb("VmRSS");
  if (bench_new_model("bench_forward", M_GPT2, &m) != 0)
    goto out;
  ri.n_params = (double)m->n_params;
  ri.model_kb = status_kb("VmRSS");
  if (model_ws_new(m, 1, 2048, &ws, &err) != 0 || new_batch(m, 1, 2048, &bt) != 0)
    goto out;
  ri.ws_kb = status_kb("VmRSS");
  v = model_plain_view(m);
  if (forward_once(m, &v, &bt.b, ws, &blocks, &loss, &sum, &count) != 0)
    goto out;
  ri.fwd_s = blocks + loss;
  ri.loss_tok = count > 0 ? sum / (double)count : NAN;
  ri.hwm_kb = status_kb("VmHWM");
  ri.ok = 1;
out:
  if (bench_report(fd, &ri, sizeof ri) != 0)
    ri.ok = 0;
  free_batch(&bt);
  model_ws_free(ws);
  model_free(m);
  _exit(ri.ok ? 0 : 1);
}

/* Must run before this process starts OpenMP or BLIS threads or allocates
 * anything large: the child inherits (and counts) the parent's memory. */
static void measure_rss(struct rss_info *ri)
{
  struct rss_info got;
  size_t n;
  int st = 0;
  memset(ri, 0, sizeof *ri);
  pid_t pid = bench_fork_report(rss_child, NULL, &got, sizeof got, &n);
  if (pid < 0 || waitpid(pid, &st, 0) != pid)
    return;
  struct rusage ru; /* the only child yet: RUSAGE_CHILDREN's peak is its own */
  if (n == sizeof got && WIFEXITED(st) && WEXITSTATUS(st) == 0 && got.ok &&
      getrusage(RUSAGE_CHILDREN, &ru) == 0) {
    *ri = got;
    ri->maxrss_kb = ru.ru_maxrss;
  }
}

/* ---- report ------------------------------------------------------------- */

static void shape_str(char *buf, size_t len, int ci)
{
  snprintf(buf, len, "%dx%d", cases[ci].B, cases[ci].T);
}

static int print_models(int quick)
{
  printf("## Models\n\n");
  printf("| %-5s | %-3s | %-4s | %-5s | %-3s | %-4s | %-5s | %-4s | %-4s | %-11s | %-11s |\n",
         "model", "L", "dim", "heads", "kv", "ffn", "vocab", "ctx", "tied", "params",
         "weights MiB");
  printf("|-------|-----|------|-------|-----|------|-------|------|------|-------------|"
         "-------------|\n");
  for (int mi = 0; mi < N_MODELS; mi++) {
    model_config c = bench_model_config(mi);
    model *m = NULL;
    model_err err;
    if (model_new(&c, &m, &err) != 0) { /* layout only: the zeroed params stay untouched */
      fprintf(stderr, "bench_forward: model_new(%s): %s\n", model_names[mi], err.msg);
      return -1;
    }
    printf("| %-5s | %3d | %4d | %5d | %3d | %4d | %5d | %4d | %-4s | %11zu | %11.1f |\n",
           model_names[mi], c.n_layer, c.n_embd, c.n_head, c.n_kv_head, c.n_ff, c.n_vocab,
           c.n_ctx, c.tied ? "yes" : "no", m->n_params,
           (double)m->n_params * sizeof(float) / 1048576.0);
    for (int ci = 0; ci < N_CASES; ci++)
      if (cases[ci].model == mi)
        count_flops(m, cases[ci].B, cases[ci].T, &results[ci]);
    model_free(m);
  }

  printf("\n## Work per forward (GFLOP)\n\n");
  printf("| %-5s | %-6s | %-8s | %-8s | %-8s | %-9s | %-9s | %-8s |\n", "model", "B x T", "proj",
         "LM head", "attn", "attn full", "attn caus", "total");
  printf("|-------|--------|----------|----------|----------|-----------|-----------|----------|\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    if (quick && !cases[ci].quick)
      continue;
    const struct result *r = &results[ci];
    char shape[16];
    shape_str(shape, sizeof shape, ci);
    printf("| %-5s | %-6s | %8.2f | %8.2f | %8.2f | %9.2f | %9.2f | %8.2f |\n",
           model_names[cases[ci].model], shape, r->gf_proj, r->gf_head, r->gf_attn,
           r->gf_attn_full, r->gf_attn_causal, r->gf_proj + r->gf_head + r->gf_attn);
  }
  printf("\nproj = every projection of the blocks; LM head over the B*(T-1) loss rows; attn = "
         "QK^T + PV as forward.c computes them (%d-query blocks against the keys up to the "
         "block's end: the causal half plus the upper halves of the diagonal blocks). total, "
         "and every GFLOP/s below (the peer's too), use attn; 'attn full' (L x L) and 'attn "
         "caus' (causal half) are for reference.\n",
         QUERY_BLOCK);
  return 0;
}

static void print_where(void)
{
  printf("\n## Where the time goes (ms per forward, medians; GEMM columns = the same GEMMs "
         "alone, in the mix)\n\n");
  printf("| %-5s | %-6s | %-3s | %-9s | %-9s | %-9s | %-9s | %-9s | %-9s | %-9s | %-9s | "
         "%-9s |\n",
         "model", "B x T", "thr", "blocks", "proj GEMM", "attn GEMM", "blk other", "loss",
         "head GEMM", "CE other", "attn GF/s", "p+h GF/s");
  printf("|-------|--------|-----|-----------|-----------|-----------|-----------|-----------|"
         "-----------|-----------|-----------|-----------|\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    for (int th = MAX_THREADS; th >= 1; th--) {
      if (!r->measured[th])
        continue;
      const struct parts *p = &r->part[th];
      char shape[16];
      shape_str(shape, sizeof shape, ci);
      printf("| %-5s | %-6s | %3d | %9.1f | %9.1f | %9.1f | %9.1f | %9.1f | %9.1f | %9.1f | "
             "%9.1f | %9.1f |\n",
             model_names[cases[ci].model], shape, th, p->blocks * 1e3, p->proj * 1e3,
             p->attn * 1e3, (p->blocks - p->proj - p->attn) * 1e3, p->loss * 1e3,
             p->head * 1e3, (p->loss - p->head) * 1e3, r->gf_attn / p->attn,
             (r->gf_proj + r->gf_head) / (p->proj + p->head));
    }
  }
  printf("\nblocks = model_forward; blk other = blocks minus their GEMMs (norms, bias adds, "
         "GELU/SiLU, RoPE, softmax and mask, memsets, residual adds); loss = model_loss; CE "
         "other = loss minus its LM-head GEMMs (row gather, log-sum-exp); p+h GF/s = "
         "projections + LM head alone (performance.md s.1.3's FORWARD-MIX).\n");
}

static void print_peer(const struct peer_state *ps)
{
  printf("\n## PyTorch peer (tests/bench/peers/torch_forward.py: same shapes, threads, float32, "
         "inference_mode, explicit causal softmax attention)\n\n");
  if (bench_peer_print_runs(ps) != 0)
    return;
  printf("\n| %-5s | %-6s | %-3s | %-9s | %-17s | %-9s | %-8s | %-8s | %-6s | %-6s |\n", "model",
         "B x T", "thr", "torch ms", "min - max", "zotune ms", "torch GF", "speed-up", "loss",
         "wait");
  printf("|-------|--------|-----|-----------|-------------------|-----------|----------|"
         "----------|--------|--------|\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    for (int th = MAX_THREADS; th >= 1; th--) {
      if (!r->measured[th])
        continue;
      const struct peer_result *pr = &r->peer[th];
      char shape[16], range[40], mark[16];
      shape_str(shape, sizeof shape, ci);
      if (!pr->ok) {
        printf("| %-5s | %-6s | %3d | %-9s | %-17s | %9.1f | %-8s | %-8s | %-6s | %-6s |\n",
               model_names[cases[ci].model], shape, th, "-",
               th < MAX_THREADS && !cases[ci].peer_one ? "(time budget)" : "(failed)",
               r->fwd[th] * 1e3, "-", "-", "-", "-");
        continue;
      }
      double gf = r->gf_proj + r->gf_head + r->gf_attn;
      snprintf(range, sizeof range, "%.1f - %.1f", pr->lo, pr->hi);
      bench_mark_wait(&run, pr->wait, mark, sizeof mark);
      printf("| %-5s | %-6s | %3d | %9.1f | %-17s | %9.1f | %8.1f | %7.2fx | %6.3f | %-6s |\n",
             model_names[cases[ci].model], shape, th, pr->ms, range, r->fwd[th] * 1e3,
             gf / (pr->ms * 1e-3), pr->ms * 1e-3 / r->fwd[th], pr->loss, mark);
    }
  }
  printf("\nspeed-up = torch ms / zotune ms at the same thread count (medians of %d each; the "
         "peer's warm-up and repetitions run in its own process after zotune's rows of that "
         "model). wait = the peer's threads waiting for a CPU. The peer draws its own random "
         "weights (same distribution): its loss need only be near log(vocab) too.\n",
         reps);
}

static int print_rss(const struct rss_info *rss)
{
  printf("\n## Peak RSS: GPT-2, 1x2048, forward + loss, 2 threads, in a child forked at "
         "start-up\n\n");
  if (!rss->ok) {
    printf("FAILED: the child did not report (out of memory or a model error).\n");
    return -1;
  }
  const double w = rss->n_params * sizeof(float) / 1048576.0;
  const double peak = (double)rss->maxrss_kb / 1024.0, target = w * TARGET_RSS;
  printf("| %-48s | %-9s | %-11s |\n", "quantity", "MiB", "x weights");
  printf("|--------------------------------------------------|-----------|-------------|\n");
  printf("| %-48s | %9.1f | %11.3f |\n", "weights (parameter bytes)", w, 1.0);
  printf("| %-48s | %9.1f | %11s |\n", "child RSS at start (libraries)", rss->base_kb / 1024.0,
         "-");
  printf("| %-48s | %9.1f | %11.3f |\n", "child RSS after model_new + weights",
         rss->model_kb / 1024.0, rss->model_kb / 1024.0 / w);
  printf("| %-48s | %9.1f | %11.3f |\n", "child RSS after model_ws_new (untouched)",
         rss->ws_kb / 1024.0, rss->ws_kb / 1024.0 / w);
  printf("| %-48s | %9.1f | %11.3f |\n", "PEAK: child's ru_maxrss (waitpid + getrusage)", peak,
         peak / w);
  printf("| %-48s | %9.1f | %11.3f |\n", "target: weights + 25%", target, TARGET_RSS);
  printf("\nPeak = weights + %.1f%% (%.1f MiB above the weights): target %s. (The child's "
         "cold first forward + loss took %.0f ms; loss/token %.3f.)\n",
         100.0 * (peak / w - 1.0), peak - w, peak <= target ? "MET" : "MISSED",
         rss->fwd_s * 1e3, rss->loss_tok);
  return 0;
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
  fprintf(stderr,
          "usage: bench_forward [--reps N (1..%d, default %d)] [--quick] [--no-peer] "
          "[--peer PATH] [--peer-env 'VAR=value ...']\n",
          BENCH_MAX_REPS, DEFAULT_REPS);
}

static struct peer_state ps;

int main(int argc, char **argv)
{
  int rc = 0;
  struct bench_opts opt;
  bench_opts_init(&opt, DEFAULT_REPS, "ZOTUNE_TORCH_PEER", __FILE__, "torch_forward.py");
  for (int i = 1; i < argc; i++)
    if (bench_opts_arg(&opt, argc, argv, &i) <= 0) {
      usage();
      return 1;
    }
  reps = opt.reps;
  bench_run_start(&run);

  /* First, before any thread or large buffer exists in this process. */
  struct rss_info rss;
  memset(&rss, 0, sizeof rss);
  if (!opt.quick)
    measure_rss(&rss);

  const char *blas = model_blas_info();
  bench_print_machine("bench_forward", blas, "");
  if (have_avx512() && !strstr(blas, "skx"))
    printf("WARNING: the CPU has AVX-512 but BLIS runs other kernels: these are not the GEMM "
           "rates zotune normally gets\n");
  printf("Weights: random U(-0.035, 0.035) (std 0.02), norms 1, biases 0; random tokens. One "
         "forward = model_forward + model_loss, plain view, loss over all B*(T-1) next-token "
         "positions (the whole LM head through the chunked cross-entropy).\n");
  printf("Timing: per case 1 warm-up (2 threads), then per thread count %d repetitions of "
         "[forward, GEMM mix] alternating; medians.\n",
         reps);
  printf("GEMM mix = the bli_sgemm calls of one forward (shapes, strides, weights, threading "
         "as model/forward.c) with nothing between them; fwd/mix = forward GFLOP/s / mix "
         "GFLOP/s (target >= %.0f%%).\n",
         100.0 * TARGET_MIX);
  printf("wait = average number of this benchmark's threads runnable but waiting for a CPU "
         "during the row; '!' marks rows above %.2f, whose timings are suspect.\n\n",
         BENCH_WAIT_WARN);
  if (print_models(opt.quick) != 0)
    return 1;

  printf("\n## zotune forward + loss vs its GEMM mix (median of %d)\n\n", reps);
  table_header();
  bench_peer_setup(&ps, &opt, PEER_SAME_KERNELS_FIRST);
  for (int mi = 0; mi < N_MODELS; mi++) {
    model *m = NULL;
    if (bench_new_model("bench_forward", mi, &m) != 0)
      return 1;
    for (int ci = 0; ci < N_CASES; ci++) {
      if (cases[ci].model != mi || (opt.quick && !cases[ci].quick))
        continue;
      if (run_case(m, ci) != 0)
        rc = 1;
    }
    model_free(m);
    bench_peer_model(&ps, &peer_job, mi); /* with our buffers freed */
  }
  bench_run_warn(&run);
  print_where();
  print_peer(&ps);
  if (!opt.quick && print_rss(&rss) != 0)
    rc = 1;

  bench_run_end(&run);
  printf("Waited %.1f s in all for other processes to go quiet before rows%s.\n", gate_spent,
         gate_gave_up > 0 ? " (gave up waiting at least once)" : "");
  printf("Total time: %.1f s\n", bench_now() - run.t0);
  return rc;
}
