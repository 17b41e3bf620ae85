"""torch_models: the model code the PyTorch peers share.

torch_forward.py (the peer of tests/bench/bench_forward.c) and torch_mezo.py
(that of tests/bench/bench_mezo.c) time the same two model shapes
(GPT-2-124M with tied LM head; a ~15M Llama with untied output), written in
plain torch ops (F.linear, matmul, an additive causal mask and softmax: torch
1.13 has no scaled_dot_product_attention), float32, random weights
U(-0.035, 0.035) (std 0.02), norms 1, biases 0. This module holds that model
code, the thread / BLAS setup and the output lines both scripts print; what
each script measures stays in the script.

Nothing here imports torch: the scripts import it themselves (import_torch),
so that a machine without torch still gets a TORCH_SKIP line rather than a
traceback, and pass the module in as `torch` (and torch.nn.functional as `F`).
"""
import glob
import math
import os
import resource
import time


CONFIGS = {
    "gpt2": dict(n_layer=12, d=768, n_head=12, n_kv=12, ff=3072, vocab=50257, ctx=2048, eps=1e-5),
    "llama": dict(n_layer=6, d=288, n_head=6, n_kv=6, ff=768, vocab=32000, ctx=2048, eps=1e-5,
                  theta=10000.0),
}


# ---- measurement helpers -------------------------------------------------------------

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


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


# ---- torch, threads and the machine-readable lines ----------------------------------

def import_torch():
    """(torch, torch.nn.functional), or None after printing the TORCH_SKIP line
    when torch cannot be imported (the caller then exits with status 0)."""
    try:
        import torch
        import torch.nn.functional as F
    except Exception as e:  # noqa: BLE001 - any import failure means: no peer
        print("TORCH_SKIP reason=%s: %s" % (type(e).__name__, str(e).replace("\n", " ")))
        return None
    return torch, F


def start(torch, F, threads, extra=""):
    """Sets torch's thread count and seeds its generator with 0 (the weights
    build draws next come from it), then prints the TORCH_INFO line: the BLAS
    torch calls and its rate on one GPT-2 shape (2048 x 768 -> 3072). extra is
    appended to that line as is (" key=value ...")."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    a, w = uniform(torch, (2048, 768)), uniform(torch, (3072, 768))
    with torch.inference_mode():
        for _ in range(2):
            F.linear(a, w)
        t0 = time.perf_counter()
        for _ in range(3):
            F.linear(a, w)
        dt = (time.perf_counter() - t0) / 3
    print("TORCH_INFO version=%s threads=%d blas=%s sgemm_gflops=%.1f%s" % (
        torch.__version__, torch.get_num_threads(), blas_library(),
        2.0 * 2048 * 768 * 3072 / dt * 1e-9, extra), flush=True)
    del a, w


def finish():
    """Prints the TORCH_INFO_END line (the peak resident memory)."""
    print("TORCH_INFO_END maxrss_mb=%.0f" % (
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0), flush=True)


# ---- weights and inputs -------------------------------------------------------------

def uniform(torch, shape, a=0.02 * math.sqrt(3.0)):
    return torch.empty(shape, dtype=torch.float32).uniform_(-a, a)


def build(torch, name):
    """The config, the weights, and their named-parameter list in module order
    (a tied tensor listed once, as nn.Module.named_parameters() does; MeZO
    perturbs the parameters in that order)."""
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


def inputs(torch, name, c, B, T, g):
    """A case's input: B random sequences of T tokens (drawn from generator g),
    the additive causal mask, and for the Llama the RoPE cos/sin tables (None
    for GPT-2), computed in float64 and rounded to float32 once."""
    tokens = torch.randint(0, c["vocab"], (B, T), generator=g)
    mask = torch.full((T, T), float("-inf")).triu(1)
    rope_cs = None
    if name == "llama":
        hd = c["d"] // c["n_head"]
        freq = c["theta"] ** (-torch.arange(0, hd // 2, dtype=torch.float64) * 2.0 / hd)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * freq[None, :]
        rope_cs = (ang.cos().float()[None, :, None, :], ang.sin().float()[None, :, None, :])
    return tokens, mask, rope_cs


# ---- the forwards -------------------------------------------------------------------

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


def loss_of(F, h, out_w, tokens, k=0, reduction="mean"):
    """Cross-entropy of next-token prediction over the B*(T-1) positions, the
    mean by default (a Hugging Face causal LM's loss, which MeZO's zo_forward
    returns) or with reduction="sum" the sum (zotune's model_loss); with k > 0
    only over each sequence's last k tokens (a prompt and a k-token
    completion). Either way the logits of every position are computed first,
    as a Hugging Face causal LM's forward does before MeZO's loss picks the
    positions that count."""
    logits = F.linear(h[:, :-1], out_w)
    if k > 0:
        logits, target = logits[:, -k:], tokens[:, -k:]
    else:
        target = tokens[:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                           reduction=reduction)


def gpt2_forward(torch, F, c, p, tokens, mask, _rope, n_target=0, reduction="mean"):
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
    return loss_of(F, h, p["out"], tokens, n_target, reduction)


def rmsnorm(torch, x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(torch, x, n_heads, cos, sin):
    """Rotates the pairs (2j, 2j+1) of every head (llama2.c / GGUF llama layout)."""
    B, T, D = x.shape
    xr = x.view(B, T, n_heads, D // n_heads // 2, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).reshape(B, T, D)


def llama_forward(torch, F, c, p, tokens, mask, rope_cs, n_target=0, reduction="mean"):
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
    return loss_of(F, h, p["out"], tokens, n_target, reduction)


FORWARDS = {"gpt2": gpt2_forward, "llama": llama_forward}
