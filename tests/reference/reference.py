"""Reference forward passes and losses for GPT-2- and Llama-family causal LMs, in float64 PyTorch.

Written from the papers and the file-format conventions (see README.md in this folder), not from zotune's C code.
Parameters are held in a dict keyed by llama.cpp GGUF tensor names, each a float64 tensor in PyTorch shape
(a linear layer's weight is [out, in], applied as y = x @ W^T + b).

Two independent formulations exist for each family:
  * gpt2_forward / llama_forward: batched, right-padded, written out op by op (the reference);
  * gpt2_forward_nn / llama_forward_complex: one unpadded sequence at a time, built from torch.nn.functional
    blocks (GPT-2) or from complex-number RoPE and repeat_interleave GQA (Llama); used only as cross-checks.
"""

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import gguf_io
import safetensors_io

DT = torch.float64


@dataclass
class Config:
    arch: str              # "gpt2", "llama" or "qwen2"
    n_vocab: int
    n_ctx: int
    n_embd: int
    n_layer: int
    n_head: int
    n_kv_head: int
    n_ff: int
    eps: float             # LayerNorm eps (gpt2) or RMSNorm eps (llama/qwen2)
    rope_theta: float = 10000.0
    rope_style: str = ""   # "interleaved" (pairs x[2j],x[2j+1]) or "half" (pairs x[j],x[j+hd/2]); "" for gpt2
    tied: bool = True

    @property
    def head_dim(self):
        return self.n_embd // self.n_head


# ----------------------------------------------------------------------------------------------------------------
# building blocks, written out


def layer_norm(x, w, b, eps):
    """Biased LayerNorm: (x - mean) / sqrt(var + eps) * w + b, population variance over the last dim."""
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    """RMSNorm (Zhang & Sennrich 2019, as in Llama): x / sqrt(mean(x^2) + eps) * w."""
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def gelu_tanh(x):
    """GELU, tanh approximation (Hendrycks & Gimpel 2016), as used by GPT-2."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def silu(x):
    return x / (1.0 + torch.exp(-x))


def linear(x, P, name):
    y = x @ P[name + ".weight"].T
    if name + ".bias" in P:
        y = y + P[name + ".bias"]
    return y


def rope_angles(T, head_dim, theta):
    """angle[p, j] = p * theta^(-2j/head_dim) for positions p < T and pairs j < head_dim/2."""
    j = torch.arange(head_dim // 2, dtype=DT)
    inv_freq = torch.pow(torch.tensor(float(theta), dtype=DT), -2.0 * j / head_dim)
    pos = torch.arange(T, dtype=DT)
    return pos[:, None] * inv_freq[None, :]


def apply_rope(x, theta, style):
    """x: [B, T, H, hd]; position of row t is t (right padding keeps real positions 0..len-1).

    Each pair (x_a, x_b) is rotated by angle a: (x_a cos a - x_b sin a, x_a sin a + x_b cos a).
    style "interleaved": pair j = (2j, 2j+1) (llama.cpp LLAMA_ROPE_TYPE_NORM, Meta's original Llama code);
    style "half":        pair j = (j, j + hd/2) (HF rotate_half, llama.cpp NEOX, GGUF arch qwen2)."""
    B, T, H, hd = x.shape
    ang = rope_angles(T, hd, theta)
    cos = torch.cos(ang)[None, :, None, :]
    sin = torch.sin(ang)[None, :, None, :]
    j = torch.arange(hd // 2)
    if style == "interleaved":
        ia, ib = 2 * j, 2 * j + 1
    elif style == "half":
        ia, ib = j, j + hd // 2
    else:
        raise ValueError("unknown RoPE style " + repr(style))
    xa, xb = x[..., ia], x[..., ib]
    out = torch.empty_like(x)
    out[..., ia] = xa * cos - xb * sin
    out[..., ib] = xa * sin + xb * cos
    return out


def allowed_mask(lengths, T):
    """[B, 1, T, T] bool: query i may attend key j iff j <= i and j < length of that sequence."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    causal = j <= i
    real_key = torch.stack([torch.arange(T) < L for L in lengths])       # [B, T]
    return (causal[None, :, :] & real_key[:, None, :])[:, None, :, :]


def attention(q, k, v, n_head, n_kv_head, mask):
    """q: [B,T,n_head*hd], k,v: [B,T,n_kv_head*hd]; query head h reads kv head h // (n_head / n_kv_head).
    softmax(q k^T / sqrt(hd)) v over the allowed keys; returns [B, T, n_head*hd]."""
    B, T, _ = q.shape
    hd = q.shape[-1] // n_head
    assert n_head % n_kv_head == 0
    group = n_head // n_kv_head
    q = q.view(B, T, n_head, hd).transpose(1, 2)                        # [B,H,T,hd]
    k = k.view(B, T, n_kv_head, hd).transpose(1, 2)
    v = v.view(B, T, n_kv_head, hd).transpose(1, 2)
    kv_of = torch.arange(n_head) // group
    k = k[:, kv_of]
    v = v[:, kv_of]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
    s = s.masked_fill(~mask, float("-inf"))
    p = torch.softmax(s, dim=-1)
    return (p @ v).transpose(1, 2).reshape(B, T, n_head * hd)


def output_weight(P):
    return P["output.weight"] if "output.weight" in P else P["token_embd.weight"]


# ----------------------------------------------------------------------------------------------------------------
# batched reference forwards


def gpt2_forward(P, cfg, tokens, lengths):
    """GPT-2 (Radford et al. 2019): pre-LN blocks, learned positions, fused q|k|v, GELU-tanh MLP.
    tokens: LongTensor [B, T] right-padded; returns logits [B, T, V] (rows at padded positions are meaningless)."""
    B, T = tokens.shape
    E = cfg.n_embd
    x = P["token_embd.weight"][tokens] + P["position_embd.weight"][:T][None]
    mask = allowed_mask(lengths, T)
    for l in range(cfg.n_layer):
        b = "blk.%d." % l
        a = layer_norm(x, P[b + "attn_norm.weight"], P[b + "attn_norm.bias"], cfg.eps)
        qkv = linear(a, P, b + "attn_qkv")
        q, k, v = qkv[..., :E], qkv[..., E:2 * E], qkv[..., 2 * E:]
        o = attention(q, k, v, cfg.n_head, cfg.n_head, mask)
        x = x + linear(o, P, b + "attn_output")
        m = layer_norm(x, P[b + "ffn_norm.weight"], P[b + "ffn_norm.bias"], cfg.eps)
        x = x + linear(gelu_tanh(linear(m, P, b + "ffn_up")), P, b + "ffn_down")
    x = layer_norm(x, P["output_norm.weight"], P["output_norm.bias"], cfg.eps)
    return x @ output_weight(P).T


def llama_forward(P, cfg, tokens, lengths):
    """Llama (Touvron et al. 2023) / Qwen2: pre-RMSNorm blocks, RoPE (Su et al. 2021) on q and k, GQA
    (Ainslie et al. 2023), SwiGLU MLP (Shazeer 2020). Optional q/k/v biases (Qwen2) are used when present."""
    B, T = tokens.shape
    H, Hkv, hd = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    x = P["token_embd.weight"][tokens]
    mask = allowed_mask(lengths, T)
    for l in range(cfg.n_layer):
        b = "blk.%d." % l
        a = rms_norm(x, P[b + "attn_norm.weight"], cfg.eps)
        q = linear(a, P, b + "attn_q").view(B, T, H, hd)
        k = linear(a, P, b + "attn_k").view(B, T, Hkv, hd)
        v = linear(a, P, b + "attn_v")
        q = apply_rope(q, cfg.rope_theta, cfg.rope_style).reshape(B, T, H * hd)
        k = apply_rope(k, cfg.rope_theta, cfg.rope_style).reshape(B, T, Hkv * hd)
        o = attention(q, k, v, H, Hkv, mask)
        x = x + linear(o, P, b + "attn_output")
        m = rms_norm(x, P[b + "ffn_norm.weight"], cfg.eps)
        x = x + linear(silu(linear(m, P, b + "ffn_gate")) * linear(m, P, b + "ffn_up"), P, b + "ffn_down")
    x = rms_norm(x, P["output_norm.weight"], cfg.eps)
    return x @ output_weight(P).T


def forward(P, cfg, seqs, pad_id=0):
    """seqs: list of token-id lists (unpadded). Right-pads to the longest and runs the batched forward."""
    T = max(len(s) for s in seqs)
    tokens = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        tokens[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    lengths = [len(s) for s in seqs]
    if cfg.arch == "gpt2":
        return gpt2_forward(P, cfg, tokens, lengths)
    if cfg.arch in ("llama", "qwen2"):
        return llama_forward(P, cfg, tokens, lengths)
    raise ValueError("unknown arch " + cfg.arch)


def lm_losses(logits, seqs, completion_masks):
    """Causal-LM cross-entropy: position t predicts token t+1 (t = 0 .. len-2).

    loss_all:        mean over every such position of every sequence (pooled over the batch);
    loss_completion: mean over the positions whose TARGET token t+1 has completion mask 1 (pooled).
    Also returns per-sequence sums and counts."""
    tot_all = torch.zeros((), dtype=DT)
    tot_c = torch.zeros((), dtype=DT)
    n_all = 0
    n_c = 0
    per_seq = []
    for b, (s, cm) in enumerate(zip(seqs, completion_masks)):
        L = len(s)
        lp = torch.log_softmax(logits[b, :L - 1], dim=-1)
        tgt = torch.tensor(s[1:], dtype=torch.long)
        nll = -lp[torch.arange(L - 1), tgt]
        w = torch.tensor(cm[1:], dtype=DT)
        tot_all += nll.sum()
        tot_c += (nll * w).sum()
        n_all += L - 1
        n_c += int(sum(cm[1:]))
        per_seq.append(dict(nll_sum=float(nll.sum()), count=L - 1,
                            nll_sum_completion=float((nll * w).sum()), count_completion=int(sum(cm[1:]))))
    return dict(loss_all=float(tot_all / n_all), loss_completion=float(tot_c / n_c),
                n_all=n_all, n_completion=n_c, per_sequence=per_seq)


# ----------------------------------------------------------------------------------------------------------------
# second formulations (cross-checks only)


def gpt2_forward_nn(P, cfg, seq):
    """One unpadded sequence through torch.nn.functional blocks: F.layer_norm, F.multi_head_attention_forward
    (in_proj = fused q|k|v, causal bool mask), F.gelu(approximate='tanh'), F.linear. Returns [L, V]."""
    E = cfg.n_embd
    L = len(seq)
    t = torch.tensor(seq, dtype=torch.long)
    x = F.embedding(t, P["token_embd.weight"]) + F.embedding(torch.arange(L), P["position_embd.weight"])
    causal = torch.triu(torch.ones(L, L, dtype=torch.bool), diagonal=1)   # True = may NOT attend
    for l in range(cfg.n_layer):
        b = "blk.%d." % l
        a = F.layer_norm(x, (E,), P[b + "attn_norm.weight"], P[b + "attn_norm.bias"], cfg.eps)
        a3 = a[:, None, :]                                                 # [L, N=1, E]
        o, _ = F.multi_head_attention_forward(
            a3, a3, a3, E, cfg.n_head,
            P[b + "attn_qkv.weight"], P[b + "attn_qkv.bias"], None, None, False, 0.0,
            P[b + "attn_output.weight"], P[b + "attn_output.bias"],
            training=False, need_weights=False, attn_mask=causal)
        x = x + o[:, 0, :]
        m = F.layer_norm(x, (E,), P[b + "ffn_norm.weight"], P[b + "ffn_norm.bias"], cfg.eps)
        h = F.gelu(F.linear(m, P[b + "ffn_up.weight"], P[b + "ffn_up.bias"]), approximate="tanh")
        x = x + F.linear(h, P[b + "ffn_down.weight"], P[b + "ffn_down.bias"])
    x = F.layer_norm(x, (E,), P["output_norm.weight"], P["output_norm.bias"], cfg.eps)
    return F.linear(x, output_weight(P))


def _rope_complex(x, theta, style):
    """x: [L, H, hd]. RoPE as a complex multiply by e^{i p theta_j} (the form in Su et al. and Meta's llama code)."""
    L, H, hd = x.shape
    half = hd // 2
    freqs = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=DT)[:half] / hd))
    cis = torch.polar(torch.ones(L, half, dtype=DT), torch.outer(torch.arange(L, dtype=DT), freqs))[:, None, :]
    if style == "interleaved":
        z = torch.view_as_complex(x.reshape(L, H, half, 2).contiguous())
        return torch.view_as_real(z * cis).reshape(L, H, hd)
    z = torch.complex(x[..., :half], x[..., half:])
    r = z * cis
    return torch.cat([r.real, r.imag], dim=-1)


def llama_forward_complex(P, cfg, seq):
    """One unpadded sequence; complex RoPE, GQA by repeat_interleave, F.silu, explicit triangular mask. [L, V]."""
    H, Hkv, hd = cfg.n_head, cfg.n_kv_head, cfg.head_dim
    L = len(seq)
    x = F.embedding(torch.tensor(seq, dtype=torch.long), P["token_embd.weight"])

    def norm(v, w):
        return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + cfg.eps) * w

    def lin(v, name):
        return F.linear(v, P[name + ".weight"], P.get(name + ".bias"))

    neg = torch.triu(torch.full((L, L), float("-inf"), dtype=DT), diagonal=1)
    for l in range(cfg.n_layer):
        b = "blk.%d." % l
        a = norm(x, P[b + "attn_norm.weight"])
        q = _rope_complex(lin(a, b + "attn_q").view(L, H, hd), cfg.rope_theta, cfg.rope_style)
        k = _rope_complex(lin(a, b + "attn_k").view(L, Hkv, hd), cfg.rope_theta, cfg.rope_style)
        v = lin(a, b + "attn_v").view(L, Hkv, hd)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = torch.einsum("ihd,jhd->hij", q, k) * hd ** -0.5 + neg
        o = torch.einsum("hij,jhd->ihd", torch.softmax(s, dim=-1), v).reshape(L, H * hd)
        x = x + lin(o, b + "attn_output")
        m = norm(x, P[b + "ffn_norm.weight"])
        x = x + lin(F.silu(lin(m, b + "ffn_gate")) * lin(m, b + "ffn_up"), b + "ffn_down")
    x = norm(x, P["output_norm.weight"])
    return F.linear(x, output_weight(P))


def forward_single_check(P, cfg, seq):
    if cfg.arch == "gpt2":
        return gpt2_forward_nn(P, cfg, seq)
    return llama_forward_complex(P, cfg, seq)


# ----------------------------------------------------------------------------------------------------------------
# loaders


def load_gguf_model(path):
    """Config and float64 parameters from a GGUF file (llama.cpp metadata keys and tensor names)."""
    meta, tensors = gguf_io.read_gguf(path)
    arch = gguf_io.meta_value(meta, "general.architecture")
    P = {name: torch.from_numpy(gguf_io.to_float64(t)) for name, t in tensors.items()}
    mv = lambda k, d=None: gguf_io.meta_value(meta, arch + "." + k, d)
    n_head = mv("attention.head_count")
    if arch == "gpt2":
        eps = mv("attention.layer_norm_epsilon")
        style = ""
    else:
        eps = mv("attention.layer_norm_rms_epsilon")
        # llama.cpp: LLM_ARCH_LLAMA uses "normal" (interleaved) RoPE, LLM_ARCH_QWEN2 uses NEOX (half-split)
        style = {"llama": "interleaved", "qwen2": "half"}[arch]
    cfg = Config(arch=arch, n_vocab=P["token_embd.weight"].shape[0], n_ctx=mv("context_length"),
                 n_embd=mv("embedding_length"), n_layer=mv("block_count"), n_head=n_head,
                 n_kv_head=mv("attention.head_count_kv", n_head), n_ff=mv("feed_forward_length"),
                 eps=float(eps), rope_theta=float(mv("rope.freq_base", 10000.0)), rope_style=style,
                 tied="output.weight" not in P)
    return cfg, P, meta, tensors


HF_LLAMA_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def hf_to_gguf_name(hf):
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    parts = hf.split(".")
    assert parts[0] == "model" and parts[1] == "layers", hf
    return "blk.%s.%s" % (parts[2], HF_LLAMA_NAMES[".".join(parts[3:])])


def load_hf_llama(folder):
    """Config and float64 parameters (renamed to GGUF names, NOT permuted) from an HF Llama folder;
    HF checkpoints use half-split (rotate_half) RoPE."""
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        c = json.load(f)
    _, ts = safetensors_io.read_safetensors(os.path.join(folder, "model.safetensors"))
    P = {}
    for name, (dt, arr) in ts.items():
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        P[hf_to_gguf_name(name)] = torch.from_numpy(arr.astype(np.float64))
    if c.get("tie_word_embeddings", False):
        P.pop("output.weight", None)
    cfg = Config(arch="llama", n_vocab=c["vocab_size"], n_ctx=c["max_position_embeddings"],
                 n_embd=c["hidden_size"], n_layer=c["num_hidden_layers"], n_head=c["num_attention_heads"],
                 n_kv_head=c.get("num_key_value_heads", c["num_attention_heads"]), n_ff=c["intermediate_size"],
                 eps=float(c["rms_norm_eps"]), rope_theta=float(c.get("rope_theta", 10000.0)), rope_style="half",
                 tied=bool(c.get("tie_word_embeddings", False)))
    return cfg, P


def hf_to_gguf_qk_permute(w, n_head):
    """llama.cpp converter permutation of HF q/k projection rows so that interleaved RoPE on the result equals
    half-split RoPE on the original: per head, GGUF row 2j = HF row j, GGUF row 2j+1 = HF row j + hd/2.
    Works on weights [n_head*hd, in] and biases [n_head*hd]."""
    hd = w.shape[0] // n_head
    rest = tuple(w.shape[1:])
    return w.reshape(n_head, 2, hd // 2, *rest).transpose(1, 2).reshape(w.shape)
