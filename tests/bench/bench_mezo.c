/* bench_mezo: one full MeZO step (zo_spsa_probe: two perturbed forwards with
 * their losses; zo_spsa_apply: regenerate z and update theta), next to a
 * PyTorch 1.13 peer running MeZO's trainer step, measured in the same run.
 *
 * Models (random weights, no file), as bench_forward: a GPT-2-124M shape (12
 * layers, dim 768, 12 heads, ffn 3072, vocab 50257, ctx 2048, tied LM head)
 * and a ~15M Llama shape (6 layers, dim 288, 6 heads, ffn 768, vocab 32000,
 * ctx 2048, untied output). Weights U(-0.0346, 0.0346) (std 0.02), norms 1,
 * biases 0. Token layouts: 256 tokens = 1 sequence of 256 (B=1, T=256);
 * 2048 tokens = a batch of 8 sequences of 256 (B=8, T=256), the shape of a
 * MeZO training batch of short examples (performance.md s.2.1 used 16x128
 * for GPT-2 and 8x256 for the Llama), and for GPT-2 also 16 sequences of
 * 128 (B=16, T=128), the layout behind the BRIEF's quoted 2048-token peer
 * time. The peer gets exactly the same B x T.
 * One more GPT-2 case, 8x256/16, counts only each sequence's last 16 tokens
 * in the loss (prompt + completion, MeZO's task shape), for zotune (which
 * then runs the LM head on those rows only) and the peer (which, like
 * MeZO's models, computes every position's logits first); it has no BRIEF
 * target.
 *
 * The step is the library's: an lm_data of B sequences of exactly T random
 * tokens, lm_objective_new(model, NULL = tune every tensor, data, batch B, 1
 * worker, threads), a zo_config (Gaussian directions, log codec, lr 1e-6, eps
 * 1e-3) and zo_state_init from the model's parameters. For each case and
 * thread count (2; also 1 for the Llama) it prints
 *   - ms per step (median of --reps after one warm-up step), its split into
 *     probe and apply, and tokens/s (B*T per step);
 *   - where the time goes: each repetition also evaluates the objective's
 *     plain loss at theta (obj->loss: the same forward + loss without a
 *     direction), so probe - 2 x plain = the cost of materialising
 *     theta + eps z per weight slice for the two forwards, and apply = one
 *     fused regenerate-and-update pass; both in ns per parameter per pass;
 *   - whether the objective paired its probes (2 threads, workspace within 1/8
 *     of the weights or 32 MiB), and for paired rows the same step with pairing off,
 *     timed right after, so the gain is measured in the same run;
 *   - the PyTorch peer (tests/bench/peers/torch_mezo.py, /usr/bin/python3):
 *     MeZO's zo_step verbatim but in place (4 passes of manual_seed +
 *     torch.normal per named parameter + add_, two forwards under
 *     inference_mode), the same shapes and thread counts, its split into
 *     parameter passes and forwards, and zotune's speed-up over it against
 *     BRIEF s.4 (GPT-2: >= 4x at 256 tokens, >= 2.5x at 2048 tokens), with the
 *     reference VM's figures quoted from performance.md;
 *   - the peak RSS of one GPT-2 8x256 step in a child forked before the
 *     parent allocates anything (wait4's ru_maxrss), against the weights and
 *     "weights + 25%": once with zo_state_init (theta is a copy of the
 *     parameters), once with a state whose theta aliases the model's
 *     parameter buffer (built by hand: zo_state is a plain struct; the probe
 *     never writes theta, and with every tensor tuned the view reads
 *     theta = m->params), and a check that both give the same theta.
 *
 * Usage: bench_mezo [--reps N] [--quick] [--no-peer] [--no-rss] [--peer PATH]
 *                   [--dist gaussian|rademacher] [--peer-env 'VAR=value ...']
 *   --quick   only the Llama cases, no RSS children (for development);
 *   --dist    zotune's directions (default Gaussian, MeZO's); the peer keeps
 *             MeZO's torch.normal either way;
 *   --peer    the peer script (default: ZOTUNE_TORCH_MEZO_PEER, else
 *             peers/torch_mezo.py next to this source file).
 *
 * Exit status: 0, or 1 when something failed (allocation, a library call, a
 * bad argument). A missing or failing PyTorch peer is reported, not fatal.
 */
#define _DEFAULT_SOURCE /* wait4 */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/lm.h"
#include "model/model.h"
#include "rng/rng.h"
#include "tests/bench/bench_models.h"
#include "tests/bench/bench_peer.h"
#include "tests/bench/bench_util.h"
#include "zo/codec.h"
#include "zo/spsa.h"

#define MAX_THREADS BENCH_MAX_THREADS
#define DEFAULT_REPS 3
#define TARGET_RSS 1.25  /* BRIEF s.4: peak RSS <= weights + 25% */
#define LR 1e-6
#define EPS 1e-3
#define SEED BENCH_SEED

/* performance.md s.2.2 / s.4.2, the reference VM (QUOTED, not measured here):
 * PyTorch 1.13 MeZO in place, tuned BLAS, GPT-2 2x128 and 16x128 tokens; the
 * physical floor (FMA peak + perturbation passes at the memory floor). */
#define REF_TORCH_256 2.40
#define REF_TORCH_2048 6.47
#define REF_FLOOR_256 0.33
#define REF_FLOOR_2048 2.2

struct bcase {
  int model, B, T;
  int one_thread;  /* also at 1 thread (zotune and peer) */
  double target;   /* BRIEF s.4 speed-up over the peer, 0 = none */
  double ref_torch, ref_floor; /* quoted seconds, 0 = none */
  int K;           /* 0: the loss counts every next-token position; K: only
                      each sequence's last K tokens (a prompt + K-token
                      completion), shown as BxT/K */
};

static const struct bcase cases[] = {
    {M_GPT2, 1, 256, 0, 4.0, REF_TORCH_256, REF_FLOOR_256, 0},
    {M_GPT2, 8, 256, 0, 2.5, REF_TORCH_2048, REF_FLOOR_2048, 0},
    /* the layout of the BRIEF's quoted 2048-token peer (performance.md
     * s.2.1 ran GPT-2 at 16x128): judged by the same target */
    {M_GPT2, 16, 128, 0, 2.5, REF_TORCH_2048, REF_FLOOR_2048, 0},
    {M_LLAMA, 1, 256, 1, 0.0, 0.0, 0.0, 0},
    {M_LLAMA, 8, 256, 1, 0.0, 0.0, 0.0, 0},
    /* MeZO's own tasks are prompts with short completions: the same 2048
     * tokens with a 16-token completion per sequence (not a BRIEF target;
     * reported for the decision on the 2048-token one) */
    {M_GPT2, 8, 256, 0, 0.0, 0.0, 0.0, 16},
};
#define N_CASES (int)(sizeof cases / sizeof cases[0])

struct result {
  int measured[MAX_THREADS + 1];
  double n_params, gflop; /* per forward */
  /* by thread count, medians in seconds */
  double step[MAX_THREADS + 1], step_lo[MAX_THREADS + 1], step_hi[MAX_THREADS + 1];
  double probe[MAX_THREADS + 1], apply[MAX_THREADS + 1], plain[MAX_THREADS + 1];
  double gen[MAX_THREADS + 1]; /* one generator sweep over all parameters */
  double loss[MAX_THREADS + 1], g[MAX_THREADS + 1];
  double wait[MAX_THREADS + 1];
  /* paired probes (cli/lm.h): on or off, and for paired rows the median step
   * with the probes one after the other instead, timed right after */
  int paired[MAX_THREADS + 1];
  double step_seq[MAX_THREADS + 1];
  /* PyTorch peer, milliseconds: its step, and the step's parameter passes
   * and forwards */
  struct peer_result peer[MAX_THREADS + 1];
  double peer_perturb[MAX_THREADS + 1], peer_fwd[MAX_THREADS + 1];
};

static struct result results[N_CASES];
/* This machine's physical floor, measured in the same run (print_floor). */
static double fma_peak[MAX_THREADS + 1]; /* GFLOP/s, by threads */
static double sgemm_ceiling[MAX_THREADS + 1]; /* GFLOP/s, by threads (bench_util.h) */
static int fma_width;
static double mem_floor_ns; /* one read+write pass over theta, ns/param, 2 threads */
static void print_floor(void);
static void shape_str(char *buf, size_t len, int ci);
static struct bench_run run; /* start, flagged rows */
static int reps = DEFAULT_REPS;

/* ---- models and data ---------------------------------------------------- */


/* B plain-text examples of exactly T random tokens each (every position
 * after the first is a target). */
struct data {
  lm_data d;
  lm_example *ex;
  lm_seq *seq;
  int32_t *ids;
};

static void free_data(struct data *dt)
{
  free(dt->ex);
  free(dt->seq);
  free(dt->ids);
  memset(dt, 0, sizeof *dt);
}

/* B sequences of T random tokens; K > 0: the last K are the completion. */
static int new_data(const model *m, int B, int T, int K, struct data *dt)
{
  uint64_t s = SEED ^ ((uint64_t)B << 32 | (uint64_t)T);
  memset(dt, 0, sizeof *dt);
  dt->ex = calloc((size_t)B, sizeof *dt->ex);
  dt->seq = calloc((size_t)B, sizeof *dt->seq);
  dt->ids = malloc((size_t)B * T * sizeof *dt->ids);
  if (!dt->ex || !dt->seq || !dt->ids) {
    free_data(dt);
    return -1;
  }
  for (size_t i = 0; i < (size_t)B * T; i++)
    dt->ids[i] = (int32_t)(bench_next(&s) % (uint64_t)m->cfg.n_vocab);
  for (int i = 0; i < B; i++) {
    dt->seq[i].ids = dt->ids + (size_t)i * T;
    dt->seq[i].n = T;
    dt->seq[i].start = K > 0 ? T - K : 1;
    dt->ex[i].seqs = &dt->seq[i];
    dt->ex[i].n_seqs = 1;
    dt->ex[i].answer = -1;
  }
  dt->d.ex = dt->ex;
  dt->d.n = (size_t)B;
  dt->d.has_choices = 0;
  return 0;
}

/* --dist: zotune's directions (the peer always draws torch.normal, as MeZO). */
static int bench_dist = RNG_GAUSSIAN;

static void make_zo_config(zo_config *c)
{
  zo_config_defaults(c);
  c->seed = SEED;
  c->dist = bench_dist;
  c->codec = ZO_CODEC_LOG;
  c->lr = LR;
  c->eps = EPS;
  c->steps = 1u << 20;
}

/* GFLOP of one forward + loss: every block projection and the LM head over
 * the loss rows (B*(T-1), or B*K) at 2 flops per multiply-add, attention
 * QK^T and PV over the causal half (T(T+1)/2 query-key pairs). */
static double forward_gflop(const model *m, int B, int T, int K)
{
  const model_config *c = &m->cfg;
  double w = 0.0;
  for (int l = 0; l < c->n_layer; l++) {
    const model_layer *L = &m->layers[l];
    const int t[] = {L->wqkv, L->wq, L->wk, L->wv, L->wo, L->w_gate, L->w_up, L->w_down};
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
      if (t[i] != MODEL_NONE)
        w += (double)m->tensors[t[i]].n;
  }
  const double hd = (double)c->n_embd / c->n_head;
  const double attn = (double)c->n_layer * B * c->n_head * 2.0 * 2.0 * hd * T * (T + 1) / 2.0;
  const double rows = K > 0 ? (double)B * K : B * (T - 1.0);
  return (2.0 * B * T * w + 2.0 * rows * c->n_vocab * c->n_embd + attn) * 1e-9;
}

/* ---- the step ------------------------------------------------------------ */

/* One sweep of theta + eps z over every parameter into a scratch buffer of
 * model_max_slice floats, slice by slice as the perturbed view builds them
 * (z of the step st will probe next): the generator's cost alone. */
static double gen_pass(const zo_config *c, const zo_state *st, float *scratch, size_t cap,
                       int threads)
{
  const zo_dir dir = zo_spsa_direction(c, st->step, 0, 0);
  double t0 = bench_now();
  for (size_t o = 0; o < st->dim; o += cap) {
    size_t n = st->dim - o < cap ? st->dim - o : cap;
    rng_axpy_mt(dir.dist, &dir.stream, o, n, (float)c->eps, st->theta + o, scratch, threads);
  }
  return bench_now() - t0;
}

/* One MeZO step: probe (slot 0, 1 direction) then apply; seconds of each,
 * the probe's mean loss (L+ + L-)/2 and the decoded projected gradient. */
static int mezo_step(const zo_config *c, zo_state *st, const zo_objective *obj, int threads,
                     double *t_probe, double *t_apply, double *loss, double *g)
{
  zo_record rec;
  zo_probe_stats stats;
  zo_err err;
  double t0 = bench_now();
  if (zo_spsa_probe(c, st, obj, 0, &rec, &stats, &err) != 0) {
    fprintf(stderr, "bench_mezo: zo_spsa_probe: %s\n", err.msg);
    return -1;
  }
  double t1 = bench_now();
  if (g)
    *g = zo_codec_decode(&st->codec, rec.payload);
  if (zo_spsa_apply(c, st, &rec, 1, threads, &err) != 0) {
    fprintf(stderr, "bench_mezo: zo_spsa_apply: %s\n", err.msg);
    return -1;
  }
  *t_probe = t1 - t0;
  *t_apply = bench_now() - t1;
  if (loss)
    *loss = stats.nrec ? stats.loss_sum / stats.nrec : NAN;
  return 0;
}

/* The objective's unperturbed loss at the state: one forward + loss. */
static int plain_loss(const zo_objective *obj, const zo_state *st, double *secs)
{
  zo_batch b = {SEED, st->step, 0, 0};
  zo_err err;
  double out, t0 = bench_now();
  if (obj->loss(obj->ctx, st->theta, &b, &out, &err) != 0) {
    fprintf(stderr, "bench_mezo: objective loss: %s\n", err.msg);
    return -1;
  }
  *secs = bench_now() - t0;
  return 0;
}

static void table_header(void)
{
  printf("| %-5s | %-6s | %-3s | %-9s | %-17s | %-8s | %-8s | %-8s | %-7s | %-8s | %-6s | %-8s "
         "| %-6s |\n",
         "model", "B x T", "thr", "ms/step", "min - max", "probe ms", "apply ms", "fwd ms",
         "tok/s", "fwd GF/s", "loss", "|g|", "wait");
  printf("|-------|--------|-----|-----------|-------------------|----------|----------|"
         "----------|---------|----------|--------|----------|--------|\n");
}

/* Times case ci on model m with state st (shared by the model's cases: its
 * step counter and theta move on) and prints its rows. */
static int run_case(const model *m, zo_state *st, const zo_config *zc, int ci)
{
  const struct bcase *bc = &cases[ci];
  struct result *r = &results[ci];
  struct data dt;
  if (new_data(m, bc->B, bc->T, bc->K, &dt) != 0) {
    fprintf(stderr, "bench_mezo: out of memory for the data\n");
    return -1;
  }
  const size_t cap = model_max_slice(m);
  float *scratch = bench_alloc(cap, 0.0f, MAX_THREADS);
  if (!scratch) {
    fprintf(stderr, "bench_mezo: out of memory for the scratch slice\n");
    free_data(&dt);
    return -1;
  }
  r->n_params = (double)m->n_params;
  r->gflop = forward_gflop(m, bc->B, bc->T, bc->K);
  int rc = 0;
  for (int th = MAX_THREADS; th >= 1 && rc == 0; th--) {
    if (th < MAX_THREADS && !bc->one_thread)
      continue;
    lm_objective *lo = NULL;
    zo_objective obj;
    model_err merr;
    model_set_threads(th); /* before the workspace: it sizes per-thread buffers */
    if (lm_objective_new(m, NULL, &dt.d, bc->B, 1, th, &lo, &obj, &merr) != 0) {
      fprintf(stderr, "bench_mezo: lm_objective_new: %s\n", merr.msg);
      rc = -1;
      break;
    }
    double tp[BENCH_MAX_REPS], ta[BENCH_MAX_REPS], ts[BENCH_MAX_REPS], tf[BENCH_MAX_REPS];
    double tg[BENCH_MAX_REPS];
    double p, a, loss = NAN, g = NAN;
    /* warm-up: workspace page faults, BLIS packing buffers, threads */
    rc = mezo_step(zc, st, &obj, th, &p, &a, NULL, NULL);
    if (rc == 0)
      rc = plain_loss(&obj, st, &p);
    bench_load l0 = bench_load_now();
    for (int k = 0; k < reps && rc == 0; k++) {
      rc = mezo_step(zc, st, &obj, th, &tp[k], &ta[k], k == 0 ? &loss : NULL, k == 0 ? &g : NULL);
      if (rc == 0)
        rc = plain_loss(&obj, st, &tf[k]);
      tg[k] = gen_pass(zc, st, scratch, cap, th);
      ts[k] = tp[k] + ta[k];
    }
    bench_load l1 = bench_load_now();
    r->paired[th] = lm_objective_paired(lo);
    if (rc == 0 && r->paired[th]) {
      /* the same steps with the probes one after the other */
      double tq[BENCH_MAX_REPS], q1, q2;
      rc = lm_objective_set_paired(lo, 0, &merr);
      for (int k = 0; k < reps && rc == 0; k++) {
        rc = mezo_step(zc, st, &obj, th, &q1, &q2, NULL, NULL);
        tq[k] = q1 + q2;
      }
      if (rc == 0)
        r->step_seq[th] = bench_median(tq, reps, NULL, NULL);
    }
    lm_objective_free(lo);
    if (rc != 0)
      break;
    r->measured[th] = 1;
    r->step[th] = bench_median(ts, reps, &r->step_lo[th], &r->step_hi[th]);
    r->probe[th] = bench_median(tp, reps, NULL, NULL);
    r->apply[th] = bench_median(ta, reps, NULL, NULL);
    r->plain[th] = bench_median(tf, reps, NULL, NULL);
    r->gen[th] = bench_median(tg, reps, NULL, NULL);
    r->loss[th] = loss;
    r->g[th] = fabs(g);
    char mark[16], shape[16], range[40];
    r->wait[th] = bench_mark_wait(&run, bench_load_wait(l0, l1), mark, sizeof mark);
    shape_str(shape, sizeof shape, ci);
    snprintf(range, sizeof range, "%.1f - %.1f", r->step_lo[th] * 1e3, r->step_hi[th] * 1e3);
    printf("| %-5s | %-6s | %3d | %9.1f | %-17s | %8.1f | %8.1f | %8.1f | %7.0f | %8.1f | "
           "%6.3f | %8.3g | %-6s |\n",
           model_names[bc->model], shape, th, r->step[th] * 1e3, range, r->probe[th] * 1e3,
           r->apply[th] * 1e3, r->plain[th] * 1e3, (double)bc->B * bc->T / r->step[th],
           r->gflop / r->plain[th], r->loss[th], r->g[th], mark);
    fflush(stdout);
  }
  free(scratch);
  free_data(&dt);
  return rc;
}

/* ---- peak RSS in forked children ------------------------------------------ */

struct rss_info {
  int ok;
  long base_kb, model_kb, obj_kb, state_kb, hwm_kb; /* VmRSS at each stage; VmHWM */
  double n_params, step_s, loss;
  uint64_t hash; /* of theta after the step */
  long maxrss_kb; /* the parent's wait4: ru_maxrss */
};

/* FNV-1a over the 32-bit words of x. */
static uint64_t hash_floats(const float *x, size_t n)
{
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++) {
    uint32_t w;
    memcpy(&w, &x[i], sizeof w);
    h = (h ^ w) * 0x100000001b3ull;
  }
  return h;
}

/* One GPT-2 8x256 step on 2 threads; *(int *)alias: theta is m->params. */
static void rss_child(int fd, void *alias)
{
  struct rss_info ri;
  memset(&ri, 0, sizeof ri);
  model *m = NULL;
  struct data dt = {0};
  lm_objective *lo = NULL;
  zo_objective obj;
  zo_config zc;
  zo_state st;
  zo_err zerr;
  model_err merr;
  double p, a;
  int have_state = 0;
  memset(&st, 0, sizeof st);
  make_zo_config(&zc);
  model_set_threads(MAX_THREADS);
  ri.base_kb = status_kb("VmRSS");
  if (bench_new_model("bench_mezo", M_GPT2, &m) != 0)
    goto out;
  ri.n_params = (double)m->n_params;
  ri.model_kb = status_kb("VmRSS");
  if (new_data(m, 8, 256, 0, &dt) != 0 ||
      lm_objective_new(m, NULL, &dt.d, 8, 1, MAX_THREADS, &lo, &obj, &merr) != 0)
    goto out;
  ri.obj_kb = status_kb("VmRSS");
  if (*(const int *)alias) {
    /* zo_state_init's fields by hand, theta borrowed (never zo_state_free'd) */
    st.theta = m->params;
    st.dim = m->n_params;
    st.step = 0;
    zo_codec_init(&st.codec, zc.codec, zc.codec_scale0);
  } else {
    if (zo_state_init(&st, &zc, m->params, m->n_params, &zerr) != 0)
      goto out;
    have_state = 1;
  }
  ri.state_kb = status_kb("VmRSS");
  double t0 = bench_now();
  if (mezo_step(&zc, &st, &obj, MAX_THREADS, &p, &a, &ri.loss, NULL) != 0)
    goto out;
  ri.step_s = bench_now() - t0;
  ri.hwm_kb = status_kb("VmHWM");
  ri.hash = hash_floats(st.theta, st.dim);
  ri.ok = 1;
out:
  if (bench_report(fd, &ri, sizeof ri) != 0)
    ri.ok = 0;
  if (have_state)
    zo_state_free(&st);
  lm_objective_free(lo);
  free_data(&dt);
  model_free(m);
  _exit(ri.ok ? 0 : 1);
}

/* Must run before this process starts OpenMP or BLIS threads or allocates
 * anything large: the child inherits (and counts) the parent's memory. */
static void measure_rss(struct rss_info *ri, int alias)
{
  struct rss_info got;
  size_t n;
  int st = 0;
  struct rusage ru; /* this child's own: the first one's would count in RUSAGE_CHILDREN */
  memset(ri, 0, sizeof *ri);
  pid_t pid = bench_fork_report(rss_child, &alias, &got, sizeof got, &n);
  if (pid < 0 || wait4(pid, &st, 0, &ru) != pid)
    return;
  if (n == sizeof got && WIFEXITED(st) && WEXITSTATUS(st) == 0 && got.ok) {
    *ri = got;
    ri->maxrss_kb = ru.ru_maxrss;
  }
}

/* ---- PyTorch peer ------------------------------------------------------- */

static int find_case(int model_i, int B, int T, int K)
{
  for (int i = 0; i < N_CASES; i++)
    if (cases[i].model == model_i && cases[i].B == B && cases[i].T == T && cases[i].K == K)
      return i;
  return -1;
}

/* The peer's side of case ci (struct peer_job): run for model mi at th
 * threads when zotune timed it, named BxT:K, reported in TORCH_MEZO lines. */
static int peer_wants(int ci, int mi, int th)
{
  return cases[ci].model == mi && results[ci].measured[th];
}

static void peer_item(char *buf, size_t len, int ci)
{
  snprintf(buf, len, "%dx%d:%d", cases[ci].B, cases[ci].T, cases[ci].K);
}

static int peer_result(const char *line, int mi, int threads)
{
  char mname[16];
  int B, T, K, thr;
  double pert, fwd;
  struct peer_result p = {.ok = 1};
  if (sscanf(line,
             "TORCH_MEZO model=%15s B=%d T=%d K=%d threads=%d median_ms=%lf min_ms=%lf "
             "max_ms=%lf perturb_ms=%lf fwd_ms=%lf loss=%lf wait=%lf",
             mname, &B, &T, &K, &thr, &p.ms, &p.lo, &p.hi, &pert, &fwd, &p.loss,
             &p.wait) != 12)
    return -1;
  int ci = find_case(mi, B, T, K);
  if (ci < 0 || thr != threads || thr < 1 || thr > MAX_THREADS)
    return 0;
  results[ci].peer[thr] = p;
  results[ci].peer_perturb[thr] = pert;
  results[ci].peer_fwd[thr] = fwd;
  return 1;
}

static const struct peer_job peer_job = {
    .n_cases = N_CASES, .wants = peer_wants, .item = peer_item, .result = peer_result};

/* ---- report ------------------------------------------------------------- */

static void shape_str(char *buf, size_t len, int ci)
{
  if (cases[ci].K > 0)
    snprintf(buf, len, "%dx%d/%d", cases[ci].B, cases[ci].T, cases[ci].K);
  else
    snprintf(buf, len, "%dx%d", cases[ci].B, cases[ci].T);
}

static void print_where(void)
{
  printf("\n## Where zotune's step goes (ms, medians)\n\n");
  printf("| %-5s | %-6s | %-3s | %-9s | %-9s | %-10s | %-9s | %-9s | %-9s | %-10s | %-10s | "
         "%-7s |\n",
         "model", "B x T", "thr", "step", "2 x fwd", "z in probe", "apply", "gen pass",
         "z/2 gen", "ns/p/pass", "ns/p apply", "z share");
  printf("|-------|--------|-----|-----------|-----------|------------|-----------|-----------|"
         "-----------|------------|------------|---------|\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    for (int th = MAX_THREADS; th >= 1; th--) {
      if (!r->measured[th])
        continue;
      char shape[16];
      shape_str(shape, sizeof shape, ci);
      const double fwd2 = 2.0 * r->plain[th], zp = r->probe[th] - fwd2;
      printf("| %-5s | %-6s | %3d | %9.1f | %9.1f | %10.1f | %9.1f | %9.1f | %8.2fx | %10.3f | "
             "%10.3f | %6.1f%% |\n",
             model_names[cases[ci].model], shape, th, r->step[th] * 1e3, fwd2 * 1e3, zp * 1e3,
             r->apply[th] * 1e3, r->gen[th] * 1e3, zp / (2.0 * r->gen[th]),
             zp / 2.0 / r->n_params * 1e9, r->apply[th] / r->n_params * 1e9,
             100.0 * (zp + r->apply[th]) / r->step[th]);
    }
  }
  printf("\n2 x fwd = twice the objective's unperturbed forward + loss (obj->loss at theta, "
         "timed in the same repetitions); z in probe = probe - 2 x fwd: building theta + eps z "
         "per weight slice for the two forwards (about one Philox + Box-Muller pass over every "
         "parameter per forward, as rng_axpy_mt into scratch); apply = zo_spsa_apply (decode, "
         "then one fused regenerate-z-and-update pass over theta); gen pass = one rng_axpy_mt "
         "sweep theta + eps z over every parameter into a scratch slice (the generator alone, "
         "same threads); z/2 gen = z in probe / (2 x gen pass): above 1x, perturbed forwards "
         "cost more than their generation (cache and threading side effects); a small or negative "
         "z in probe means the z work is within the forwards' run-to-run noise; ns/p/pass = z in "
         "probe / 2 / params; ns/p apply = apply / params; z share = (z in probe + apply) / step. performance.md s.1.5 measured "
         "0.468 ns/param/pass (AVX-512 prototype, 2 threads) and a 0.17 ns/param memory floor "
         "on the reference VM (QUOTED).\n");
  printf("\nPaired probes (cli/lm.h, docs/cli.md \"Threads\"): with 2 threads the objective runs "
         "L(theta + eps z) and L(theta - eps z) as two single-threaded forwards side by side that "
         "generate z once between them, when the extra workspace costs at most 1/8 of the "
         "weights or 32 MiB; then z in probe is about one generator pass, not two, and 2 x fwd (two "
         "2-thread forwards one after the other) overstates the paired forwards' time.\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    for (int th = MAX_THREADS; th >= 1; th--) {
      if (!r->measured[th])
        continue;
      char shape[16];
      shape_str(shape, sizeof shape, ci);
      if (r->paired[th])
        printf("- %s %s, %d thr: paired, step %.1f ms; the same steps with the probes one after "
               "the other: %.1f ms (pairing saves %.1f%%)\n",
               model_names[cases[ci].model], shape, th, r->step[th] * 1e3, r->step_seq[th] * 1e3,
               100.0 * (1.0 - r->step[th] / r->step_seq[th]));
      else
        printf("- %s %s, %d thr: not paired (%s)\n", model_names[cases[ci].model], shape, th,
               th != 2 ? "pairing needs 2 threads" : "the second workspace would exceed 1/8 of the weights and 32 MiB");
    }
  }
}

/* What the BRIEF's speed-up targets ask of the forward, from this run's
 * numbers: the step the target allows, the speed-up if z cost nothing, and
 * the forward (ms, GFLOP/s) that would meet it at today's z cost. */
static void print_targets(void)
{
  printf("\nWhat the targets need (this run's medians, 2 threads):\n");
  int any = 0;
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    const struct bcase *bc = &cases[ci];
    const int th = MAX_THREADS;
    if (bc->target <= 0.0 || !r->measured[th] || !r->peer[th].ok)
      continue;
    char shape[16];
    shape_str(shape, sizeof shape, ci);
    const double peer = r->peer[th].ms * 1e-3, allowed = peer / bc->target;
    const double fwd2 = 2.0 * r->plain[th], z = r->step[th] - fwd2;
    const double need = (allowed - z) / 2.0;
    printf("- gpt2 %s: target %.1fx allows %.0f ms per step; now 2 x fwd %.0f + z %.0f = %.0f ms "
           "(%.2fx). With z free the speed-up would be %.2fx; ",
           shape, bc->target, allowed * 1e3, fwd2 * 1e3, z * 1e3, r->step[th] * 1e3,
           peer / r->step[th], peer / fwd2);
    if (need > 0.0)
      printf("at today's z cost each forward + loss must take <= %.0f ms (%.0f GFLOP/s; now "
             "%.0f ms, %.0f GFLOP/s).\n",
             need * 1e3, r->gflop / need, r->plain[th] * 1e3, r->gflop / r->plain[th]);
    else
      printf("the z work alone exceeds the allowed step.\n");
    any = 1;
  }
  if (!any)
    printf("- (no GPT-2 row with a peer result)\n");
}

static void print_peer(const struct peer_state *ps)
{
  printf("\n## PyTorch 1.13 MeZO peer (tests/bench/peers/torch_mezo.py: MeZO's zo_step in "
         "place, same B x T, threads, float32, inference_mode, explicit causal attention)\n\n");
  bench_peer_print_runs(ps); /* the table below says "(no peer)" where it did not run */

  printf("\n## zotune vs the peer (ms per MeZO step, medians of %d after 1 warm-up each)\n\n",
         reps);
  printf("| %-5s | %-6s | %-3s | %-9s | %-9s | %-17s | %-8s | %-13s | %-10s | %-10s | %-6s | "
         "%-6s |\n",
         "model", "B x T", "thr", "zotune ms", "torch ms", "torch min - max", "speed-up",
         "BRIEF target", "fwd x", "z x", "loss", "wait");
  printf("|-------|--------|-----|-----------|-----------|-------------------|----------|"
         "---------------|------------|------------|--------|--------|\n");
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    for (int th = MAX_THREADS; th >= 1; th--) {
      if (!r->measured[th])
        continue;
      char shape[16], range[40], mark[16], tgt[32], fx[24], zx[24];
      shape_str(shape, sizeof shape, ci);
      if (!r->peer[th].ok) {
        printf("| %-5s | %-6s | %3d | %9.1f | %-9s | %-17s | %-8s | %-13s | %-10s | %-10s | "
               "%-6s | %-6s |\n",
               model_names[cases[ci].model], shape, th, r->step[th] * 1e3, "-", "(no peer)", "-",
               "-", "-", "-", "-", "-");
        continue;
      }
      const double su = r->peer[th].ms * 1e-3 / r->step[th];
      const double zp = r->probe[th] - 2.0 * r->plain[th] + r->apply[th];
      snprintf(range, sizeof range, "%.1f - %.1f", r->peer[th].lo, r->peer[th].hi);
      if (cases[ci].target > 0.0 && th == MAX_THREADS)
        snprintf(tgt, sizeof tgt, ">=%.1fx %s", cases[ci].target,
                 su >= cases[ci].target ? "MET" : "MISSED");
      else
        snprintf(tgt, sizeof tgt, "-");
      snprintf(fx, sizeof fx, "%.2fx", r->peer_fwd[th] * 1e-3 / (2.0 * r->plain[th]));
      if (zp > 0.0)
        snprintf(zx, sizeof zx, "%.1fx", r->peer_perturb[th] * 1e-3 / zp);
      else
        snprintf(zx, sizeof zx, "?");
      bench_mark_wait(&run, r->peer[th].wait, mark, sizeof mark);
      printf("| %-5s | %-6s | %3d | %9.1f | %9.1f | %-17s | %7.2fx | %-13s | %-10s | %-10s | "
             "%6.3f | %-6s |\n",
             model_names[cases[ci].model], shape, th, r->step[th] * 1e3, r->peer[th].ms, range,
             su, tgt, fx, zx, r->peer[th].loss, mark);
    }
  }
  printf("\nspeed-up = torch ms / zotune ms, same B x T and thread count. fwd x = the peer's "
         "two forwards / zotune's two unperturbed forwards; z x = the peer's four "
         "torch.normal + add_ passes / zotune's perturbation work (z in probe + apply). loss = "
         "the peer's L+ (mean CE per token, its own random weights of the same distribution: "
         "near log(vocab) like zotune's). wait = the peer's threads waiting for a CPU.\n");
  printf("\nPeer split (ms per step): ");
  int first = 1;
  for (int ci = 0; ci < N_CASES; ci++)
    for (int th = MAX_THREADS; th >= 1; th--) {
      const struct result *r = &results[ci];
      if (!r->peer[th].ok)
        continue;
      char shape[16];
      shape_str(shape, sizeof shape, ci);
      printf("%s%s %s %dthr: 4 passes %.0f + 2 fwd %.0f (%.2f ns/param/pass)", first ? "" : "; ",
             model_names[cases[ci].model], shape, th, r->peer_perturb[th], r->peer_fwd[th],
             r->peer_perturb[th] * 1e-3 / 4.0 / r->n_params * 1e9);
      first = 0;
    }
  printf("%s\n", first ? "(none)" : ".");

  print_targets();
  print_floor();

  printf("\nQUOTED (performance.md s.2.2 and s.4.2; the reference VM, 2 cores AVX-512, NOT this "
         "machine and not this run): PyTorch 1.13 MeZO in place, tuned BLAS, GPT-2 shape: "
         "%.2f s per step at 256 tokens (2x128), %.2f s at 2048 tokens (16x128); physical "
         "floor (FMA peak + perturbation passes at the memory floor) %.2f s / %.1f s. The BRIEF "
         "targets (>= 4x at 256, >= 2.5x at 2048 tokens) are judged on the speed-ups measured "
         "above, side by side; the quoted figures only say how this machine compares:\n",
         REF_TORCH_256, REF_TORCH_2048, REF_FLOOR_256, REF_FLOOR_2048);
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    const struct bcase *bc = &cases[ci];
    if (bc->ref_torch <= 0.0 || !r->measured[MAX_THREADS])
      continue;
    char shape[16];
    shape_str(shape, sizeof shape, ci);
    printf("- gpt2 %s, 2 thr: zotune %.3f s = quoted torch / %.2f, quoted floor x %.2f%s", shape,
           r->step[MAX_THREADS], bc->ref_torch / r->step[MAX_THREADS],
           r->step[MAX_THREADS] / bc->ref_floor,
           bc->T * bc->B == 256 ? " (BRIEF: <= 1.5x the floor; cross-machine, indicative only)"
                                : " (cross-machine, indicative only)");
    if (r->peer[MAX_THREADS].ok)
      printf("; this run's peer %.3f s = quoted x %.2f", r->peer[MAX_THREADS].ms * 1e-3,
             r->peer[MAX_THREADS].ms * 1e-3 / bc->ref_torch);
    printf(".\n");
  }
}

/* FMA peak on 1 and 2 threads, and the in-place read-modify-write floor on
 * 2 threads over 64 M floats (256 MB: DRAM, not cache), median of 5. */
static void measure_floor(void)
{
  for (int th = 1; th <= MAX_THREADS; th++) {
    fma_peak[th] = bench_fma_peak(th, 0.3, &fma_width);
    sgemm_ceiling[th] = bench_sgemm_ceiling(th, 0.3);
  }
  const size_t n = (size_t)64 << 20;
  float *b = bench_alloc(n, 1.0f, MAX_THREADS);
  if (!b)
    return;
  double t[5];
  bench_rmw(b, n, 1.0001f, MAX_THREADS);
  for (int r = 0; r < 5; r++)
    t[r] = bench_rmw(b, n, r % 2 ? 1.0001f : 1.0f / 1.0001f, MAX_THREADS);
  mem_floor_ns = bench_median(t, 5, NULL, NULL) / (double)n * 1e9;
  free(b);
}

/* The BRIEF's floor (performance.md s.4.2's definition) on this machine:
 * the step's FLOPs (two forwards: projections, LM head over the loss rows,
 * causal attention) at the measured 2-thread FMA peak, plus three passes
 * over theta at the measured memory floor. */
static void print_floor(void)
{
  if (fma_peak[MAX_THREADS] <= 0.0 || mem_floor_ns <= 0.0) {
    printf("\n(This machine's floor was not measured: --quick, or no AVX2/AVX-512 FMA.)\n");
    return;
  }
  printf("\n## This machine's physical floor (measured in this run)\n\n");
  printf("FP32 FMA peak (%d-bit, %d independent chains per thread): %.0f GFLOP/s on 1 thread, "
         "%.0f on 2; memory floor (in-place read+write over 256 MB, 2 threads): %.3f ns/param. "
         "Floor = 2 forwards' FLOPs at the 2-thread peak + 3 passes over theta at the memory "
         "floor (performance.md s.4.2's definition).\n\n",
         fma_width, BENCH_FMA_CHAINS, fma_peak[1], fma_peak[MAX_THREADS], mem_floor_ns);
  if (sgemm_ceiling[MAX_THREADS] > 0.0)
    printf("SGEMM ceiling: the inner loop of a 32 x 12 AVX-512 SGEMM microkernel (BLIS's and "
           "OpenBLAS's tile: 2 loads of A, 12 broadcasts of B, 24 FMAs per k) on L1-resident "
           "panels, no packing and no C traffic: %.0f GFLOP/s on 1 thread, %.0f on 2 = %.0f%% of "
           "the FMA peak. No forward built on such GEMMs runs faster.\n\n",
           sgemm_ceiling[1], sgemm_ceiling[MAX_THREADS],
           100.0 * sgemm_ceiling[MAX_THREADS] / fma_peak[MAX_THREADS]);
  for (int ci = 0; ci < N_CASES; ci++) {
    const struct result *r = &results[ci];
    const struct bcase *bc = &cases[ci];
    if (bc->model != M_GPT2 || !r->measured[MAX_THREADS])
      continue;
    char shape[16];
    shape_str(shape, sizeof shape, ci);
    const double fl = 2.0 * r->gflop / fma_peak[MAX_THREADS];
    const double mem = 3.0 * mem_floor_ns * 1e-9 * r->n_params, floor_s = fl + mem;
    const double x = r->step[MAX_THREADS] / floor_s;
    printf("- gpt2 %s, 2 thr: floor %.0f ms (%.1f GFLOP in %.0f ms + %.0f ms of passes); zotune "
           "%.1f ms = %.2fx the floor%s\n",
           shape, floor_s * 1e3, 2.0 * r->gflop, fl * 1e3, mem * 1e3, r->step[MAX_THREADS] * 1e3,
           x,
           bc->B * bc->T != 256 ? ""
           : x <= 1.5           ? " (BRIEF: <= 1.5x: MET)"
                                : " (BRIEF: <= 1.5x: MISSED)");
    if (bc->target <= 0.0 || !r->peer[MAX_THREADS].ok || r->plain[MAX_THREADS] <= 0.0 ||
        r->peer[MAX_THREADS].ms * 1e-3 / r->step[MAX_THREADS] >= bc->target)
      continue;
    /* What a missed speed-up target asks of the forwards, with everything
     * else in the step (z, the update, the probes' overhead) as measured. */
    const double allowed = r->peer[MAX_THREADS].ms * 1e-3 / bc->target;
    const double rest = r->step[MAX_THREADS] - 2.0 * r->plain[MAX_THREADS];
    const double fwd = (allowed - rest) / 2.0;
    if (fwd <= 0.0) {
      printf("  - the %.1fx target allows %.0f ms, less than the step's non-forward work (%.0f "
             "ms)\n", bc->target, allowed * 1e3, rest * 1e3);
      continue;
    }
    const double need = r->gflop / fwd;
    printf("  - the %.1fx target allows %.0f ms; after the rest of the step (%.0f ms as "
           "measured) each forward gets %.0f ms: %.0f GFLOP/s over its FLOPs = %.0f%% of the FMA "
           "peak",
           bc->target, allowed * 1e3, rest * 1e3, fwd * 1e3, need,
           100.0 * need / fma_peak[MAX_THREADS]);
    if (sgemm_ceiling[MAX_THREADS] > 0.0)
      printf(", %.0f%% of the SGEMM ceiling", 100.0 * need / sgemm_ceiling[MAX_THREADS]);
    printf(" (the forward runs at %.0f GFLOP/s now)\n", r->gflop / r->plain[MAX_THREADS]);
  }
}

static void print_rss(const struct rss_info *cp, const struct rss_info *al, const char *peer_info)
{
  printf("\n## Peak RSS: GPT-2, 8x256 = 2048 tokens, one MeZO step (probe + apply), 2 threads, "
         "in children forked at start-up\n\n");
  const struct rss_info *ri[2] = {cp, al};
  const char *name[2] = {"zo_state_init (theta copied)", "theta aliases m->params"};
  if (!cp->ok && !al->ok) {
    printf("FAILED: no child reported (out of memory or a library error).\n");
    return;
  }
  const double w = (cp->ok ? cp->n_params : al->n_params) * sizeof(float) / 1048576.0;
  const double target = w * TARGET_RSS;
  printf("| %-44s | %-28s | %-28s |\n", "MiB (x weights)", name[0], name[1]);
  printf("|----------------------------------------------|------------------------------|"
         "------------------------------|\n");
  const char *rows[] = {"child RSS at start (libraries)", "after model_new + weights",
                        "after lm_objective_new (workspace untouched)", "after the state",
                        "VmHWM after the step",
                        "PEAK: ru_maxrss from wait4"};
  for (int k = 0; k < 6; k++) {
    printf("| %-44s |", rows[k]);
    for (int j = 0; j < 2; j++) {
      const struct rss_info *x = ri[j];
      long kb = k == 0 ? x->base_kb
                : k == 1 ? x->model_kb
                : k == 2 ? x->obj_kb
                : k == 3 ? x->state_kb
                : k == 4 ? x->hwm_kb
                         : x->maxrss_kb;
      if (!x->ok)
        printf(" %-28s |", "(failed)");
      else
        printf(" %9.1f (%5.3f)%11s |", kb / 1024.0, kb / 1024.0 / w, "");
    }
    printf("\n");
  }
  printf("| %-44s | %9.1f (1.000)%11s | %9.1f (1.000)%11s |\n", "weights (params x 4 bytes)", w,
         "", w, "");
  printf("| %-44s | %9.1f (%5.3f)%11s | %9.1f (%5.3f)%11s |\n", "target: weights + 25%", target,
         TARGET_RSS, "", target, TARGET_RSS, "");
  for (int j = 0; j < 2; j++) {
    const struct rss_info *x = ri[j];
    if (!x->ok)
      continue;
    double peak = x->maxrss_kb / 1024.0;
    printf("\n%s: peak = weights + %.1f%% (%.1f MiB above the weights): target %s. Cold step "
           "%.0f ms, loss %.4f, theta hash %016llx.",
           name[j], 100.0 * (peak / w - 1.0), peak - w, peak <= target ? "MET" : "MISSED",
           x->step_s * 1e3, x->loss, (unsigned long long)x->hash);
  }
  printf("\n");
  if (cp->ok && al->ok)
    printf("\nSame theta after the step with and without the alias: %s.\n",
           cp->hash == al->hash && cp->loss == al->loss ? "yes (hash and loss equal)"
                                                         : "NO: the two states differ");
  const char *pm = peer_info ? strstr(peer_info, "maxrss_mb=") : NULL;
  if (pm)
    printf("\nFor scale: the PyTorch peer's whole process (GPT-2, both cases, after import torch) "
           "peaked at %.0f MiB = %.2f x weights (its ru_maxrss; performance.md s.2.2 quotes "
           "1582 MB for 16x128).\n",
           atof(pm + 10), atof(pm + 10) / w);
  printf("\nzo_state_init copies the base, so such a step holds the weights twice: the model's "
         "parameters (the base, which frozen tensors and exports read) and theta. The alias "
         "column has theta = m->params (valid because every tensor is tuned and the probe never "
         "writes theta), which is what zotune train does through zo_state_borrow when every "
         "parameter is tuned.\n");
}

/* ---- main --------------------------------------------------------------- */

static void usage(void)
{
  fprintf(stderr,
          "usage: bench_mezo [--reps N (1..%d, default %d)] [--quick] [--no-peer] [--no-rss] "
          "[--dist gaussian|rademacher] [--peer PATH] [--peer-env 'VAR=value ...']\n",
          BENCH_MAX_REPS, DEFAULT_REPS);
}

static void print_models(void)
{
  printf("## Models\n\n");
  printf("| %-5s | %-3s | %-4s | %-5s | %-4s | %-5s | %-4s | %-4s | %-11s | %-11s |\n", "model",
         "L", "dim", "heads", "ffn", "vocab", "ctx", "tied", "params", "weights MiB");
  printf("|-------|-----|------|-------|------|-------|------|------|-------------|-------------|"
         "\n");
  for (int mi = 0; mi < N_MODELS; mi++) {
    model_config c = bench_model_config(mi);
    model *m = NULL;
    model_err err;
    if (model_new(&c, &m, &err) != 0)
      continue;
    printf("| %-5s | %3d | %4d | %5d | %4d | %5d | %4d | %-4s | %11zu | %11.1f |\n",
           model_names[mi], c.n_layer, c.n_embd, c.n_head, c.n_ff, c.n_vocab, c.n_ctx,
           c.tied ? "yes" : "no", m->n_params, (double)m->n_params * sizeof(float) / 1048576.0);
    model_free(m);
  }
}

static struct peer_state ps;

int main(int argc, char **argv)
{
  int no_rss = 0, rc = 0;
  struct bench_opts opt;
  bench_opts_init(&opt, DEFAULT_REPS, "ZOTUNE_TORCH_MEZO_PEER", __FILE__, "torch_mezo.py");
  for (int i = 1; i < argc; i++) {
    const int shared = bench_opts_arg(&opt, argc, argv, &i); /* -1: a bad --reps */
    if (shared > 0)
      continue;
    if (shared == 0 && strcmp(argv[i], "--no-rss") == 0) {
      no_rss = 1;
    } else if (shared == 0 && strcmp(argv[i], "--dist") == 0 && i + 1 < argc &&
               (strcmp(argv[i + 1], "gaussian") == 0 || strcmp(argv[i + 1], "rademacher") == 0)) {
      bench_dist = strcmp(argv[++i], "rademacher") == 0 ? RNG_RADEMACHER : RNG_GAUSSIAN;
    } else {
      usage();
      return 1;
    }
  }
  reps = opt.reps;
  const int quick = opt.quick;
  bench_run_start(&run);

  /* First, before any thread or large buffer exists in this process. */
  struct rss_info rss_copy, rss_alias;
  memset(&rss_copy, 0, sizeof rss_copy);
  memset(&rss_alias, 0, sizeof rss_alias);
  if (!quick && !no_rss) {
    measure_rss(&rss_copy, 0);
    measure_rss(&rss_alias, 1);
  }

  if (rng_set_isa(RNG_ISA_AUTO) != 0) {
    fprintf(stderr, "bench_mezo: rng_set_isa failed\n");
    return 1;
  }
  if (!quick)
    measure_floor();
  const char *blas = model_blas_info();
  char rng_path[64];
  snprintf(rng_path, sizeof rng_path, "rng path: %s | ", rng_isa_name(rng_get_isa()));
  bench_print_machine("bench_mezo", blas, rng_path);
  if (have_avx512() && !strstr(blas, "skx"))
    printf("WARNING: the CPU has AVX-512 but BLIS runs other kernels: not the GEMM rates "
           "zotune normally gets\n");
  printf("Step = zo_spsa_probe (slot 0, 1 direction: L(theta + eps z) and L(theta - eps z), "
         "each a forward + mean cross-entropy over all B*(T-1) next-token positions, theta + "
         "eps z built per weight slice) + zo_spsa_apply (log codec, fused regenerate-and-update "
         "pass); every tensor tuned; %s z (the peer: torch.normal), lr %g, eps %g. 256 tokens = "
         "1x256, 2048 tokens = 8x256 (B sequences of T random tokens) and, for GPT-2, also 16x128 "
         "(the layout of the BRIEF's quoted 2048-token peer), for zotune and the peer alike. "
         "8x256/16: the same tokens with only each sequence's last 16 counted in the loss "
         "(a prompt and a 16-token completion, the shape of MeZO's own tasks; not a BRIEF "
         "target): zotune runs the LM head on the 8 x 16 loss rows only, the peer computes every "
         "position's logits first, as MeZO's models do.\n",
         bench_dist == RNG_RADEMACHER ? "Rademacher" : "Gaussian", LR, EPS);
  printf("Timing: per case and thread count 1 warm-up step, then %d repetitions of [step, plain "
         "forward + loss]; medians. tok/s = B*T / step. fwd GF/s = forward GFLOP (projections, "
         "LM head over the loss rows, causal attention) / plain forward.\n",
         reps);
  printf("wait = average number of this benchmark's threads runnable but waiting for a CPU "
         "during the row; '!' marks rows above %.2f, whose timings are suspect.\n\n",
         BENCH_WAIT_WARN);
  print_models();

  printf("\n## zotune MeZO step (median of %d)\n\n", reps);
  table_header();
  bench_peer_setup(&ps, &opt, PEER_TUNED_FIRST);
  zo_config zc;
  make_zo_config(&zc);
  zo_err zerr;
  if (zo_config_validate(&zc, &zerr) != 0) {
    fprintf(stderr, "bench_mezo: zo_config: %s\n", zerr.msg);
    return 1;
  }
  for (int mi = 0; mi < N_MODELS; mi++) {
    if (quick && mi != M_LLAMA)
      continue;
    model *m = NULL;
    zo_state st;
    if (bench_new_model("bench_mezo", mi, &m) != 0)
      return 1;
    if (zo_state_init(&st, &zc, m->params, m->n_params, &zerr) != 0) {
      fprintf(stderr, "bench_mezo: zo_state_init: %s\n", zerr.msg);
      model_free(m);
      return 1;
    }
    for (int ci = 0; ci < N_CASES; ci++)
      if (cases[ci].model == mi && run_case(m, &st, &zc, ci) != 0)
        rc = 1;
    zo_state_free(&st);
    model_free(m);
    bench_peer_model(&ps, &peer_job, mi); /* with our buffers freed */
  }
  bench_run_warn(&run);
  print_where();
  print_peer(&ps);
  if (!quick && !no_rss) {
    const struct peer_run *gpt2 = &ps.run[M_GPT2][MAX_THREADS];
    print_rss(&rss_copy, &rss_alias, gpt2->ran ? gpt2->info : NULL);
    if (!rss_copy.ok || !rss_alias.ok)
      rc = 1;
  }

  bench_run_end(&run);
  printf("Total time: %.1f s\n", bench_now() - run.t0);
  return rc;
}
