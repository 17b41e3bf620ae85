#!/usr/bin/env python3
"""torch_mezo: the PyTorch MeZO peer of tests/bench/bench_mezo.c.

One MeZO step exactly as princeton-nlp/MeZO's trainer (large_models/trainer.py
zo_step / zo_perturb_parameters / zo_forward / zo_update) does it, in the
in-place variant (performance.md s.2.1 "mezo_inplace", the 2.40 s / 6.47 s
figures the BRIEF's targets quote):

    seed = a fresh random integer per step
    perturb(+1); L+ = forward(); perturb(-2); L- = forward(); perturb(+1)
    g = (L+ - L-) / (2 eps)
    torch.manual_seed(seed); for each named parameter: z = torch.normal(...);
                                                      p.data.add_(z, alpha=-lr*g)
    perturb(s) = torch.manual_seed(seed); for each named parameter in order:
                 z = torch.normal(0, 1, size, device, dtype); p.data.add_(z, alpha=s*eps)

i.e. four passes over the parameters, each regenerating z from the step seed
(MeZO seeds once per pass, then one torch.normal per parameter in a fixed
order), weight decay 0, lr 1e-6, eps 1e-3. The forwards run under
torch.inference_mode (MeZO's zo_forward, model.eval(): no dropout here) and
return the mean causal-LM cross-entropy over all B*(T-1) next-token
positions; g is a Python float (.item()). The tied GPT-2 embedding / LM head
is one parameter (model.named_parameters() lists a shared tensor once).

Models: the shapes of bench_mezo (GPT-2-124M with tied LM head; a ~15M Llama
with untied output), plain torch ops (F.linear, matmul, an additive causal
mask and softmax: torch 1.13 has no scaled_dot_product_attention), float32,
random weights U(-0.035, 0.035) (std 0.02), norms 1, biases 0.

Usage: torch_mezo.py --model gpt2|llama --cases 1x256,8x256[:K] --threads N [--reps 3]

A case BxT:K counts only the last K tokens of each sequence in the loss (a
K-token completion after a prompt, MeZO's task shape); the logits of every
position are still computed, as MeZO's models do.

The thread count of the BLAS torch calls is fixed when that library starts:
the caller sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / BLIS_NUM_THREADS to
--threads in the environment and picks the BLAS with LD_LIBRARY_PATH
(bench_mezo does; performance.md s.2.1).

Prints machine-readable lines (and nothing else on success):
  TORCH_INFO version=... threads=N blas=PATH sgemm_gflops=X
  TORCH_MEZO model=M B=b T=t K=k threads=N median_ms=X min_ms=X max_ms=X
             perturb_ms=X fwd_ms=X loss=X wait=X
  TORCH_INFO_END maxrss_mb=X
  TORCH_SKIP reason=...    (torch cannot be imported; exit status 0)
median/min/max are per whole step (after one warm-up step); perturb_ms is the
median time of the four parameter passes of a step, fwd_ms that of its two
forwards; loss is L+ of the first timed step (near log(vocab) for random
weights); wait is the average number of this process's threads that were
runnable but waiting for a CPU while the case was timed (0 on a quiet
machine).
"""
import argparse
import glob
import math
import os
import random
import resource
import sys
import time

LR = 1e-6
EPS = 1e-3


def wait_seconds():
    """Summed run-queue wait of this process's threads (schedstat), seconds."""
    total = 0
    for f in glob.glob("/proc/self/task/*/schedstat"):
        try:
            with open(f) as fh:
                total += int(fh.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return total * 1e-9


def blas_library():
    libs = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1]
                base = os.path.basename(path)
                if any(k in base for k in ("blas", "blis", "mkl_rt", "openblas")) and path not in libs:
                    libs.append(path)
    except OSError:
        pass
    return ",".join(libs) if libs else "unknown"


def uniform(torch, shape, a=0.02 * math.sqrt(3.0)):
    return torch.empty(shape, dtype=torch.float32).uniform_(-a, a)


CONFIGS = {
    "gpt2": dict(n_layer=12, d=768, n_head=12, n_kv=12, ff=3072, vocab=50257, ctx=2048, eps=1e-5),
    "llama": dict(n_layer=6, d=288, n_head=6, n_kv=6, ff=768, vocab=32000, ctx=2048, eps=1e-5,
                  theta=10000.0),
}


def build(torch, name):
    """The weights, and their named-parameter list in module order (a tied
    tensor listed once, as nn.Module.named_parameters() does)."""
    c = CONFIGS[name]
    d, ff, V = c["d"], c["ff"], c["vocab"]
    kvd = d // c["n_head"] * c["n_kv"]
    p = {"layers": []}
    named = []
    p["tok"] = uniform(torch, (V, d))
    named.append(("tok_embeddings.weight", p["tok"]))
    if name == "gpt2":
        p["pos"] = uniform(torch, (c["ctx"], d))
        named.append(("pos_embeddings.weight", p["pos"]))
        for i in range(c["n_layer"]):
            L = dict(ln1_w=torch.ones(d), ln1_b=torch.zeros(d),
                     wqkv=uniform(torch, (3 * d, d)), bqkv=torch.zeros(3 * d),
                     wo=uniform(torch, (d, d)), bo=torch.zeros(d),
                     ln2_w=torch.ones(d), ln2_b=torch.zeros(d),
                     wup=uniform(torch, (ff, d)), bup=torch.zeros(ff),
                     wdown=uniform(torch, (d, ff)), bdown=torch.zeros(d))
            p["layers"].append(L)
            named += [("h.%d.%s" % (i, k), v) for k, v in L.items()]
        p["lnf_w"], p["lnf_b"] = torch.ones(d), torch.zeros(d)
        named += [("ln_f.weight", p["lnf_w"]), ("ln_f.bias", p["lnf_b"])]
        p["out"] = p["tok"]  # tied: not a second parameter
    else:
        for i in range(c["n_layer"]):
            L = dict(rms1=torch.ones(d), wq=uniform(torch, (d, d)), wk=uniform(torch, (kvd, d)),
                     wv=uniform(torch, (kvd, d)), wo=uniform(torch, (d, d)), rms2=torch.ones(d),
                     wgate=uniform(torch, (ff, d)), wup=uniform(torch, (ff, d)),
                     wdown=uniform(torch, (d, ff)))
            p["layers"].append(L)
            named += [("layers.%d.%s" % (i, k), v) for k, v in L.items()]
        p["rmsf"] = torch.ones(d)
        p["out"] = uniform(torch, (V, d))  # untied
        named += [("norm.weight", p["rmsf"]), ("output.weight", p["out"])]
    return c, p, named


def attention(torch, q, k, v, mask, n_head, n_kv):
    """q (B,T,H*hd), k/v (B,T,KV*hd) -> (B,T,H*hd); explicit causal softmax(QK^T/sqrt(hd)) V."""
    B, T, D = q.shape
    hd = D // n_head
    q = q.view(B, T, n_head, hd).transpose(1, 2)
    k = k.view(B, T, n_kv, hd).transpose(1, 2)
    v = v.view(B, T, n_kv, hd).transpose(1, 2)
    if n_kv != n_head:
        k = k.repeat_interleave(n_head // n_kv, dim=1)
        v = v.repeat_interleave(n_head // n_kv, dim=1)
    att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(hd)) + mask
    att = torch.softmax(att, dim=-1)
    return torch.matmul(att, v).transpose(1, 2).reshape(B, T, D)


def loss_of(F, h, out_w, tokens, k=0):
    """Mean cross-entropy of next-token prediction over the B*(T-1) positions
    (a Hugging Face causal LM's loss, which MeZO's zo_forward returns); with
    k > 0 only over each sequence's last k tokens (a prompt and a k-token
    completion). Either way the logits of every position are computed first,
    as a Hugging Face causal LM's forward does before MeZO's loss picks the
    positions that count."""
    logits = F.linear(h[:, :-1], out_w)
    if k > 0:
        logits, target = logits[:, -k:], tokens[:, -k:]
    else:
        target = tokens[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def gpt2_forward(torch, F, c, p, tokens, mask, _rope, n_target=0):
    B, T = tokens.shape
    d, eps = c["d"], c["eps"]
    x = p["tok"][tokens] + p["pos"][:T]
    for L in p["layers"]:
        h = F.layer_norm(x, (d,), L["ln1_w"], L["ln1_b"], eps)
        q, k, v = F.linear(h, L["wqkv"], L["bqkv"]).split(d, dim=2)
        x = x + F.linear(attention(torch, q, k, v, mask, c["n_head"], c["n_kv"]), L["wo"], L["bo"])
        h = F.layer_norm(x, (d,), L["ln2_w"], L["ln2_b"], eps)
        x = x + F.linear(F.gelu(F.linear(h, L["wup"], L["bup"]), approximate="tanh"),
                         L["wdown"], L["bdown"])
    h = F.layer_norm(x, (d,), p["lnf_w"], p["lnf_b"], eps)
    return loss_of(F, h, p["out"], tokens, n_target)


def rmsnorm(torch, x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(torch, x, n_heads, cos, sin):
    """Rotates the pairs (2j, 2j+1) of every head (llama2.c / GGUF llama layout)."""
    B, T, D = x.shape
    xr = x.view(B, T, n_heads, D // n_heads // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(B, T, D)


def llama_forward(torch, F, c, p, tokens, mask, rope_cs, n_target=0):
    eps, H, KV = c["eps"], c["n_head"], c["n_kv"]
    cos, sin = rope_cs
    x = p["tok"][tokens]
    for L in p["layers"]:
        h = rmsnorm(torch, x, L["rms1"], eps)
        q = rope(torch, F.linear(h, L["wq"]), H, cos, sin)
        k = rope(torch, F.linear(h, L["wk"]), KV, cos, sin)
        v = F.linear(h, L["wv"])
        x = x + F.linear(attention(torch, q, k, v, mask, H, KV), L["wo"])
        h = rmsnorm(torch, x, L["rms2"], eps)
        x = x + F.linear(F.silu(F.linear(h, L["wgate"])) * F.linear(h, L["wup"]), L["wdown"])
    h = rmsnorm(torch, x, p["rmsf"], eps)
    return loss_of(F, h, p["out"], tokens, n_target)


# ---- MeZO (large_models/trainer.py) -------------------------------------------------

def zo_perturb_parameters(torch, named, seed, scaling):
    """MeZO's zo_perturb_parameters, with the in-place add_."""
    torch.manual_seed(seed)
    for _name, param in named:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device,
                         dtype=param.data.dtype)
        param.data.add_(z, alpha=scaling * EPS)


def zo_forward(torch, fwd):
    with torch.inference_mode():
        loss = fwd()
    return loss.detach()


def zo_update(torch, named, seed, projected_grad):
    """MeZO's zo_update, weight decay 0, in place."""
    torch.manual_seed(seed)
    for _name, param in named:
        z = torch.normal(mean=0, std=1, size=param.data.size(), device=param.data.device,
                         dtype=param.data.dtype)
        param.data.add_(z, alpha=-LR * projected_grad)


def zo_step(torch, named, fwd, seed, parts):
    """One MeZO step; adds the seconds of its parameter passes and of its
    forwards to parts[0] and parts[1]. Returns L+."""
    t0 = time.perf_counter()
    zo_perturb_parameters(torch, named, seed, 1)
    t1 = time.perf_counter()
    loss1 = zo_forward(torch, fwd)
    t2 = time.perf_counter()
    zo_perturb_parameters(torch, named, seed, -2)
    t3 = time.perf_counter()
    loss2 = zo_forward(torch, fwd)
    t4 = time.perf_counter()
    zo_perturb_parameters(torch, named, seed, 1)  # restore
    projected_grad = ((loss1 - loss2) / (2 * EPS)).item()
    zo_update(torch, named, seed, projected_grad)
    t5 = time.perf_counter()
    parts[0] += (t1 - t0) + (t3 - t2) + (t5 - t4)
    parts[1] += (t2 - t1) + (t4 - t3)
    return float(loss1)


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--cases", required=True,
                    help="comma-separated BxT or BxT:K (loss over the last K tokens), e.g. 1x256,8x256:16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    try:
        cases = []
        for item in args.cases.split(","):
            shape, _, kk = item.lower().partition(":")
            b, t = (int(v) for v in shape.split("x"))
            k = int(kk) if kk else 0
            if b < 1 or t < 2 or k < 0 or k > t - 1:
                raise ValueError
            cases.append((b, t, k))
    except ValueError:
        ap.error("--cases wants BxT or BxT:K items (0 <= K < T), e.g. 1x256,8x256:16")
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001 - any import failure means: no peer
        print("TORCH_SKIP reason=%s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        return 0

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The BLAS torch calls, and its rate on one GPT-2 shape (2048 x 768 -> 3072).
    a, w = uniform(torch, (2048, 768)), uniform(torch, (3072, 768))
    with torch.inference_mode():
        for _ in range(2):
            F.linear(a, w)
        t0 = time.perf_counter()
        for _ in range(3):
            F.linear(a, w)
        dt = (time.perf_counter() - t0) / 3
    print("TORCH_INFO version=%s threads=%d blas=%s sgemm_gflops=%.1f" % (
        torch.__version__, torch.get_num_threads(), blas_library(),
        2.0 * 2048 * 768 * 3072 / dt * 1e-9), flush=True)
    del a, w

    c, p, named = build(torch, args.model)
    forward = gpt2_forward if args.model == "gpt2" else llama_forward
    g = torch.Generator().manual_seed(1)
    seeds = random.Random(42)  # MeZO: np.random.randint(1000000000) per step
    for B, T, K in cases:
        if T > c["ctx"]:
            ap.error("T=%d exceeds the context %d" % (T, c["ctx"]))
        tokens = torch.randint(0, c["vocab"], (B, T), generator=g)
        mask = torch.full((T, T), float("-inf")).triu(1)
        rope_cs = None
        if args.model == "llama":
            hd = c["d"] // c["n_head"]
            freq = c["theta"] ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
            ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
            rope_cs = (ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :])

        def fwd():
            return forward(torch, F, c, p, tokens, mask, rope_cs, K)

        zo_step(torch, named, fwd, seeds.randrange(1000000000), [0.0, 0.0])  # warm-up
        times, perturb, fwds = [], [], []
        loss = float("nan")
        w0, t0 = wait_seconds(), time.perf_counter()
        for k in range(args.reps):
            parts = [0.0, 0.0]
            t = time.perf_counter()
            l1 = zo_step(torch, named, fwd, seeds.randrange(1000000000), parts)
            times.append(time.perf_counter() - t)
            perturb.append(parts[0])
            fwds.append(parts[1])
            if k == 0:
                loss = l1
        wait = (wait_seconds() - w0) / max(time.perf_counter() - t0, 1e-9)
        print("TORCH_MEZO model=%s B=%d T=%d K=%d threads=%d median_ms=%.3f min_ms=%.3f "
              "max_ms=%.3f perturb_ms=%.3f fwd_ms=%.3f loss=%.4f wait=%.3f" % (
                  args.model, B, T, K, args.threads, median(times) * 1e3, min(times) * 1e3,
                  max(times) * 1e3, median(perturb) * 1e3, median(fwds) * 1e3, loss, wait),
              flush=True)
        del tokens, mask, rope_cs
    print("TORCH_INFO_END maxrss_mb=%.0f" % (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
