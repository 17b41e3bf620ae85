"""The example's Llama model in float32 PyTorch, its byte tokenizer, and the GGUF writer glue.

The forward is zotune's Llama (and tests/reference/reference.py's): token embedding; per layer RMSNorm (eps 1e-5)
-> q, k, v projections without bias -> RoPE (theta 10000, INTERLEAVED pairs (2j, 2j+1), angle
p * theta^(-2j/head_dim)) -> causal softmax attention with scale 1/sqrt(head_dim) -> output projection -> residual;
RMSNorm -> SwiGLU MLP down(silu(gate(x)) * up(x)) -> residual; final RMSNorm; untied output matrix.
Parameters are kept under their GGUF names, in PyTorch shape [out, in].
"""

import math
import os
import sys

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))

import gguf_io  # noqa: E402

N_VOCAB = 258
BOS, EOS = 256, 257

CONFIG = dict(n_ctx=256, n_embd=128, n_layer=4, n_head=4, n_kv_head=4, n_ff=352, eps=1e-5, rope_theta=10000.0)


def encode(text):
    """zotune's sequence for a {"text"} line: BOS + the UTF-8 bytes."""
    return [BOS] + list(text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------------
# GPT-2 bytes_to_unicode (openai/gpt-2 encoder.py), for the tokenizer metadata


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) \
        + list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


TOKENS = [bytes_to_unicode()[b] for b in range(256)] + ["<|bos|>", "<|eos|>"]
TOKEN_TYPES = [1] * 256 + [3, 3]


# ----------------------------------------------------------------------------------------------------------------
# model


def init_params(cfg, seed):
    """GPT-2/Llama-style init: matrices N(0, 0.02^2), residual outputs scaled by 1/sqrt(2 n_layer), norms 1."""
    g = torch.Generator().manual_seed(seed)
    E, H, Hkv, ff, L = cfg["n_embd"], cfg["n_head"], cfg["n_kv_head"], cfg["n_ff"], cfg["n_layer"]
    hd = E // H
    P = {}

    def mat(name, out, inp, std=0.02):
        P[name] = (torch.randn(out, inp, generator=g) * std).requires_grad_()

    def ones(name, n):
        P[name] = torch.ones(n).requires_grad_()

    mat("token_embd.weight", N_VOCAB, E)
    res_std = 0.02 / math.sqrt(2 * L)
    for l in range(L):
        b = "blk.%d." % l
        ones(b + "attn_norm.weight", E)
        mat(b + "attn_q.weight", H * hd, E)
        mat(b + "attn_k.weight", Hkv * hd, E)
        mat(b + "attn_v.weight", Hkv * hd, E)
        mat(b + "attn_output.weight", E, H * hd, res_std)
        ones(b + "ffn_norm.weight", E)
        mat(b + "ffn_gate.weight", ff, E)
        mat(b + "ffn_up.weight", ff, E)
        mat(b + "ffn_down.weight", E, ff, res_std)
    ones("output_norm.weight", E)
    mat("output.weight", N_VOCAB, E)
    return P


def tensor_order(P):
    """llama.cpp converter order: token_embd, blocks in order, output_norm, output."""
    blocks = sorted((n for n in P if n.startswith("blk.")), key=lambda n: (int(n.split(".")[1]), n))
    return ["token_embd.weight"] + blocks + ["output_norm.weight", "output.weight"]


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


class Rope:
    """cos/sin tables for interleaved RoPE, angle[p, j] = p * theta^(-2j/hd), computed in float64 then rounded."""

    def __init__(self, n_ctx, hd, theta):
        j = torch.arange(hd // 2, dtype=torch.float64)
        inv = torch.pow(torch.tensor(theta, dtype=torch.float64), -2.0 * j / hd)
        ang = torch.arange(n_ctx, dtype=torch.float64)[:, None] * inv[None, :]
        self.cos = torch.cos(ang).float()
        self.sin = torch.sin(ang).float()

    def __call__(self, x):
        """x: [B, H, T, hd]; pair j = (x[2j], x[2j+1]) rotated to (a cos - b sin, a sin + b cos)."""
        T = x.shape[2]
        c, s = self.cos[:T], self.sin[:T]
        a, b = x[..., 0::2], x[..., 1::2]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).flatten(-2)


def forward(P, cfg, tokens, rope):
    """tokens: LongTensor [B, T] (right-padded; the causal mask keeps padding out of real positions).
    Returns logits [B, T, V]."""
    B, T = tokens.shape
    H, Hkv, E = cfg["n_head"], cfg["n_kv_head"], cfg["n_embd"]
    hd = E // H
    eps = cfg["eps"]
    x = F.embedding(tokens, P["token_embd.weight"])
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    for l in range(cfg["n_layer"]):
        b = "blk.%d." % l
        a = rms_norm(x, P[b + "attn_norm.weight"], eps)
        q = (a @ P[b + "attn_q.weight"].T).view(B, T, H, hd).transpose(1, 2)
        k = (a @ P[b + "attn_k.weight"].T).view(B, T, Hkv, hd).transpose(1, 2)
        v = (a @ P[b + "attn_v.weight"].T).view(B, T, Hkv, hd).transpose(1, 2)
        q, k = rope(q), rope(k)
        if Hkv != H:
            k = k.repeat_interleave(H // Hkv, dim=1)
            v = v.repeat_interleave(H // Hkv, dim=1)
        s = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
        s = s.masked_fill(mask, float("-inf"))
        o = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
        x = x + o @ P[b + "attn_output.weight"].T
        m = rms_norm(x, P[b + "ffn_norm.weight"], eps)
        x = x + (F.silu(m @ P[b + "ffn_gate.weight"].T) * (m @ P[b + "ffn_up.weight"].T)) @ P[b + "ffn_down.weight"].T
    x = rms_norm(x, P["output_norm.weight"], eps)
    return x @ P["output.weight"].T


def batch_tensors(seqs):
    """Right-padded inputs and targets (-100 = ignored) for next-token prediction over whole sequences."""
    T = max(len(s) for s in seqs) - 1
    inp = torch.zeros(len(seqs), T, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, s in enumerate(seqs):
        n = len(s) - 1
        inp[i, :n] = torch.tensor(s[:-1])
        tgt[i, :n] = torch.tensor(s[1:])
    return inp, tgt


def loss_sum(P, cfg, rope, seqs):
    """(sum of per-token cross-entropy, number of target tokens) over seqs."""
    inp, tgt = batch_tensors(seqs)
    logits = forward(P, cfg, inp, rope)
    ce = F.cross_entropy(logits.reshape(-1, N_VOCAB), tgt.reshape(-1), ignore_index=-100, reduction="sum")
    return ce, int((tgt != -100).sum())


@torch.no_grad()
def mean_loss(P, cfg, rope, seqs, batch=64):
    """zotune eval's `loss`: mean cross-entropy per target token, pooled over all sequences."""
    tot, n = 0.0, 0
    for i in range(0, len(seqs), batch):
        s, c = loss_sum(P, cfg, rope, seqs[i:i + batch])
        tot += float(s)
        n += c
    return tot / n


# ----------------------------------------------------------------------------------------------------------------
# GGUF


def write_gguf(path, P, cfg, name):
    w = gguf_io.GGUFWriter()
    S, U32, F32 = gguf_io.STRING, gguf_io.U32, gguf_io.F32
    w.add("general.architecture", S, "llama")
    w.add("general.name", S, name)
    w.add("general.file_type", U32, 0)
    w.add("llama.context_length", U32, cfg["n_ctx"])
    w.add("llama.embedding_length", U32, cfg["n_embd"])
    w.add("llama.block_count", U32, cfg["n_layer"])
    w.add("llama.feed_forward_length", U32, cfg["n_ff"])
    w.add("llama.attention.head_count", U32, cfg["n_head"])
    w.add("llama.attention.head_count_kv", U32, cfg["n_kv_head"])
    w.add("llama.attention.layer_norm_rms_epsilon", F32, cfg["eps"])
    w.add("llama.rope.freq_base", F32, cfg["rope_theta"])
    w.add("llama.rope.dimension_count", U32, cfg["n_embd"] // cfg["n_head"])
    w.add("tokenizer.ggml.model", S, "gpt2")
    w.add_array("tokenizer.ggml.tokens", S, TOKENS)
    w.add_array("tokenizer.ggml.token_type", gguf_io.I32, TOKEN_TYPES)
    w.add_array("tokenizer.ggml.merges", S, [])
    w.add("tokenizer.ggml.bos_token_id", U32, BOS)
    w.add("tokenizer.ggml.eos_token_id", U32, EOS)
    for n in tensor_order(P):
        w.add_tensor(n, P[n].detach().float().contiguous().numpy(), gguf_io.GGML_F32)
    w.write(path)


def read_gguf_params(path):
    """float32 parameters (GGUF names, PyTorch shapes) and the config back from a GGUF written by write_gguf."""
    meta, tensors = gguf_io.read_gguf(path)
    mv = lambda k: gguf_io.meta_value(meta, "llama." + k)  # noqa: E731
    cfg = dict(n_ctx=mv("context_length"), n_embd=mv("embedding_length"), n_layer=mv("block_count"),
               n_head=mv("attention.head_count"), n_kv_head=mv("attention.head_count_kv"),
               n_ff=mv("feed_forward_length"), eps=float(mv("attention.layer_norm_rms_epsilon")),
               rope_theta=float(mv("rope.freq_base")))
    P = {n: torch.from_numpy(t["array"].astype("float32")) for n, t in tensors.items()}
    return P, cfg
