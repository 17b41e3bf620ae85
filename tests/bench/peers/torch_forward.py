#!/usr/bin/env python3
"""torch_forward: the PyTorch peer of tests/bench/bench_forward.c.

The same two model shapes as bench_forward (GPT-2-124M, tied LM head; a ~15M
Llama, untied output), written in plain torch ops (F.linear, matmul, an
additive causal mask and softmax: torch 1.13 has no scaled_dot_product_attention),
random weights of the same distribution (U(-0.035, 0.035), norms 1, biases 0),
float32, under torch.inference_mode. One forward = the blocks, the final norm,
the LM head over the B*(T-1) positions that have a next token, and the summed
cross-entropy, as zotune's model_forward + model_loss.

Usage: torch_forward.py --model gpt2|llama --cases 1x256,1x2048 --threads N [--reps 3]

The thread count of the BLAS torch calls is fixed when that library starts:
the caller sets BLIS_NUM_THREADS / OMP_NUM_THREADS / OPENBLAS_NUM_THREADS to
--threads in the environment (bench_forward does), and may set
BLIS_ARCH_TYPE=0 so Debian's BLIS runs its AVX-512 kernels like zotune's.

Prints machine-readable lines (and nothing else on success):
  TORCH_INFO version=... threads=N blas=PATH sgemm_gflops=X ...
  TORCH_FORWARD model=M B=b T=t threads=N median_ms=X min_ms=X max_ms=X loss=X wait=X
  TORCH_SKIP reason=...    (torch cannot be imported; exit status 0)
loss is the mean cross-entropy per predicted token; wait is the average number
of this process's threads that were runnable but waiting for a CPU while the
case was timed (0 on a quiet machine).
"""
import argparse
import glob
import math
import os
import resource
import sys
import time


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
    c = CONFIGS[name]
    d, ff, V = c["d"], c["ff"], c["vocab"]
    kvd = d // c["n_head"] * c["n_kv"]
    p = {"layers": []}
    p["tok"] = uniform(torch, (V, d))
    if name == "gpt2":
        p["pos"] = uniform(torch, (c["ctx"], d))
        for _ in range(c["n_layer"]):
            p["layers"].append(dict(
                ln1_w=torch.ones(d), ln1_b=torch.zeros(d),
                wqkv=uniform(torch, (3 * d, d)), bqkv=torch.zeros(3 * d),
                wo=uniform(torch, (d, d)), bo=torch.zeros(d),
                ln2_w=torch.ones(d), ln2_b=torch.zeros(d),
                wup=uniform(torch, (ff, d)), bup=torch.zeros(ff),
                wdown=uniform(torch, (d, ff)), bdown=torch.zeros(d)))
        p["lnf_w"], p["lnf_b"] = torch.ones(d), torch.zeros(d)
        p["out"] = p["tok"]  # tied
    else:
        for _ in range(c["n_layer"]):
            p["layers"].append(dict(
                rms1=torch.ones(d), wq=uniform(torch, (d, d)), wk=uniform(torch, (kvd, d)),
                wv=uniform(torch, (kvd, d)), wo=uniform(torch, (d, d)), rms2=torch.ones(d),
                wgate=uniform(torch, (ff, d)), wup=uniform(torch, (ff, d)),
                wdown=uniform(torch, (d, ff))))
        p["rmsf"] = torch.ones(d)
        p["out"] = uniform(torch, (V, d))  # untied
    return c, p


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


def loss_of(F, h, out_w, tokens):
    """Summed cross-entropy of next-token prediction over the B*(T-1) positions."""
    B, T = tokens.shape
    logits = F.linear(h[:, :-1], out_w)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1),
                           reduction="sum")


def gpt2_forward(torch, F, c, p, tokens, mask, _rope):
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
    return loss_of(F, h, p["out"], tokens)


def rmsnorm(torch, x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(torch, x, n_heads, cos, sin):
    """Rotates the pairs (2j, 2j+1) of every head (llama2.c / GGUF llama layout)."""
    B, T, D = x.shape
    xr = x.view(B, T, n_heads, D // n_heads // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(B, T, D)


def llama_forward(torch, F, c, p, tokens, mask, rope_cs):
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
    return loss_of(F, h, p["out"], tokens)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(CONFIGS), required=True)
    ap.add_argument("--cases", required=True, help="comma-separated BxT, e.g. 1x256,8x256")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    try:
        cases = [tuple(int(v) for v in s.lower().split("x")) for s in args.cases.split(",")]
        if any(len(cs) != 2 or cs[0] < 1 or cs[1] < 2 for cs in cases):
            raise ValueError
    except ValueError:
        ap.error("--cases wants BxT items, e.g. 1x256,8x256")
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
    print("TORCH_INFO version=%s threads=%d blas=%s sgemm_gflops=%.1f BLIS_ARCH_TYPE=%s" % (
        torch.__version__, torch.get_num_threads(), blas_library(),
        2.0 * 2048 * 768 * 3072 / dt * 1e-9, os.environ.get("BLIS_ARCH_TYPE", "unset")),
        flush=True)
    del a, w

    c, p = build(torch, args.model)
    fwd = gpt2_forward if args.model == "gpt2" else llama_forward
    g = torch.Generator().manual_seed(1)
    for B, T in cases:
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
        times = []
        with torch.inference_mode():
            loss = fwd(torch, F, c, p, tokens, mask, rope_cs)  # warm-up
            w0, t0 = wait_seconds(), time.perf_counter()
            for _ in range(args.reps):
                t = time.perf_counter()
                loss = fwd(torch, F, c, p, tokens, mask, rope_cs)
                times.append(time.perf_counter() - t)
            wait = (wait_seconds() - w0) / max(time.perf_counter() - t0, 1e-9)
        times.sort()
        n = len(times)
        med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
        print("TORCH_FORWARD model=%s B=%d T=%d threads=%d median_ms=%.3f min_ms=%.3f "
              "max_ms=%.3f loss=%.4f wait=%.3f" % (
                  args.model, B, T, args.threads, med * 1e3, times[0] * 1e3, times[-1] * 1e3,
                  float(loss) / (B * (T - 1)), wait), flush=True)
        del tokens, mask, loss
    print("TORCH_INFO_END maxrss_mb=%.0f" % (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
