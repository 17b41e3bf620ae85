#!/usr/bin/python3
"""Generate the model fixtures in tests/fixtures/ and their expected outputs.

    /usr/bin/python3 tests/reference/make_fixtures.py [--out DIR]

Deterministic: every fixture draws from torch.manual_seed(its own seed); running twice gives byte-identical files.
Checks run on the way (the script fails on any): GGUF/safetensors writer vs reader round trips, the batched
reference vs a second per-sequence formulation, padding invariance, GGUF llama (interleaved RoPE, permuted q/k)
vs HF safetensors (half-split RoPE) equality, and the loss vs F.cross_entropy.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gguf_io  # noqa: E402
import reference as R  # noqa: E402
import safetensors_io  # noqa: E402
from gguf_io import GGML_BF16, GGML_F16, GGML_F32  # noqa: E402

N_VOCAB = 258
BOS, EOS = 256, 257
N_CTX = 64
TOLERANCE = 1e-4
TOLERANCE_RULE = "|got - expected| <= tolerance * max(1, |expected|), for every logit and both losses"

torch.set_default_dtype(torch.float64)


# ----------------------------------------------------------------------------------------------------------------
# byte-level tokenizer (GPT-2 bytes_to_unicode, no merges)


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable unicode character map (openai/gpt-2 encoder.py)."""
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


BYTE_TOKENS = [bytes_to_unicode()[b] for b in range(256)]
TOKENS = BYTE_TOKENS + ["<|bos|>", "<|eos|>"]
TOKEN_TYPES = [1] * 256 + [3, 3]


def byte_tokenize(data, add_bos):
    return ([BOS] if add_bos else []) + list(data)


TOKENIZER_CASES = [
    ("ascii", b"Hello, world!", True),
    ("unicode", "h\u00e9llo w\u00f6rld \u2014 \u65e5\u672c\u8a9e \U0001f642".encode("utf-8"), True),
    ("space_runs", b"a  b   c    d     ", False),
    ("newlines_tabs", b"line1\nline2\r\n\n\tend\n", True),
    ("digits", b"3.14159 2026 007 1,000,000", False),
    ("raw_bytes", bytes([0xFF, 0x00, 0x41, 0xFE, 0x80, 0xC3]), True),
    ("empty", b"", True),
    ("empty_no_bos", b"", False),
]
VOCAB_SAMPLE_IDS = [0, 9, 10, 13, 32, 33, 65, 126, 127, 160, 161, 172, 173, 174, 255, 256, 257]


def tokenizer_section():
    cases = []
    for name, data, add_bos in TOKENIZER_CASES:
        cases.append({"name": name, "bytes": list(data), "add_bos": add_bos, "ids": byte_tokenize(data, add_bos)})
    vocab = [{"id": i, "token_utf8": list(TOKENS[i].encode("utf-8")), "token_type": TOKEN_TYPES[i]}
             for i in VOCAB_SAMPLE_IDS]
    return {"model": "gpt2", "n_vocab": N_VOCAB, "bos_token_id": BOS, "eos_token_id": EOS,
            "rule": "ids = byte values of the input; BOS (256) prepended when add_bos; no merges",
            "cases": cases, "vocab_samples": vocab}


# ----------------------------------------------------------------------------------------------------------------
# fixture specifications

SPECS = [
    dict(name="gpt2_tied_f32", seed=1, arch="gpt2", n_embd=32, n_head=4, n_kv_head=4, n_ff=128, eps=1e-5,
         tied=True, storage="f32"),
    dict(name="gpt2_untied_f16", seed=2, arch="gpt2", n_embd=48, n_head=3, n_kv_head=3, n_ff=192, eps=1e-5,
         tied=False, storage="f16"),
    dict(name="llama_gqa_f32", seed=3, arch="llama", n_embd=64, n_head=4, n_kv_head=2, n_ff=128, eps=1e-5,
         rope_theta=10000.0, tied=False, storage="f32", alignment=64),
    dict(name="qwen2_bias_bf16", seed=4, arch="qwen2", n_embd=48, n_head=6, n_kv_head=2, n_ff=96, eps=1e-6,
         rope_theta=1000000.0, tied=True, storage="bf16", qkv_bias=True),
]
N_LAYER = 2
LENGTHS = [7, 12, 5]


def make_weights(spec):
    """Canonical float64 weights (HF row order for llama-family q/k), keyed by GGUF names, PyTorch shapes."""
    torch.manual_seed(spec["seed"])
    E, H, Hkv, ff = spec["n_embd"], spec["n_head"], spec["n_kv_head"], spec["n_ff"]
    hd = E // H
    P = {}

    def mat(name, out, inp, std=0.08):
        P[name] = torch.randn(out, inp, dtype=torch.float32).double() * std

    def vec(name, n, mean=0.0, std=0.05):
        P[name] = mean + torch.randn(n, dtype=torch.float32).double() * std

    mat("token_embd.weight", N_VOCAB, E, std=0.25 if spec["tied"] else 0.5)
    if spec["arch"] == "gpt2":
        mat("position_embd.weight", N_CTX, E, std=0.2)
    for l in range(N_LAYER):
        b = "blk.%d." % l
        if spec["arch"] == "gpt2":
            vec(b + "attn_norm.weight", E, 1.0, 0.1)
            vec(b + "attn_norm.bias", E)
            mat(b + "attn_qkv.weight", 3 * E, E, std=0.25)
            vec(b + "attn_qkv.bias", 3 * E)
            mat(b + "attn_output.weight", E, E)
            vec(b + "attn_output.bias", E)
            vec(b + "ffn_norm.weight", E, 1.0, 0.1)
            vec(b + "ffn_norm.bias", E)
            mat(b + "ffn_up.weight", ff, E, std=0.15)
            vec(b + "ffn_up.bias", ff)
            mat(b + "ffn_down.weight", E, ff)
            vec(b + "ffn_down.bias", E)
        else:
            vec(b + "attn_norm.weight", E, 1.0, 0.1)
            mat(b + "attn_q.weight", H * hd, E, std=0.2)
            mat(b + "attn_k.weight", Hkv * hd, E, std=0.2)
            mat(b + "attn_v.weight", Hkv * hd, E, std=0.15)
            if spec.get("qkv_bias"):
                vec(b + "attn_q.bias", H * hd, 0.0, 0.1)
                vec(b + "attn_k.bias", Hkv * hd, 0.0, 0.1)
                vec(b + "attn_v.bias", Hkv * hd, 0.0, 0.1)
            mat(b + "attn_output.weight", E, H * hd)
            vec(b + "ffn_norm.weight", E, 1.0, 0.1)
            mat(b + "ffn_gate.weight", ff, E, std=0.15)
            mat(b + "ffn_up.weight", ff, E, std=0.15)
            mat(b + "ffn_down.weight", E, ff)
    vec("output_norm.weight", E, 1.0, 0.1)
    if spec["arch"] == "gpt2":
        vec("output_norm.bias", E)
    if not spec["tied"]:
        mat("output.weight", N_VOCAB, E, std=0.2)
    return P


def storage_type(spec, t):
    """llama.cpp convention: 1-D tensors (norms, biases) stay F32; matrices take the file's type."""
    if t.dim() == 1 or spec["storage"] == "f32":
        return GGML_F32
    return {"f16": GGML_F16, "bf16": GGML_BF16}[spec["storage"]]


def to_storage(t, gtype):
    """(numpy array to write, float64 tensor of exactly the stored values)."""
    if gtype == GGML_F32:
        s = t.to(torch.float32)
        return s.numpy(), s.double()
    if gtype == GGML_F16:
        s = t.to(torch.float16)
        return s.numpy(), s.double()
    s = t.to(torch.bfloat16)
    return s.view(torch.int16).numpy().view(np.uint16).copy(), s.double()


def make_batch(spec):
    g = torch.Generator().manual_seed(1000 + spec["seed"])
    seqs, masks = [], []
    for i, L in enumerate(LENGTHS):
        body = torch.randint(0, 256, (L - 1,), generator=g).tolist()
        s = [BOS] + body
        if i == 2:
            s[-1] = EOS                         # one sequence ends with EOS
        n_prompt = (L + 1) // 2                 # BOS and the first part are prompt, the rest completion
        seqs.append(s)
        masks.append([0] * n_prompt + [1] * (L - n_prompt))
    return seqs, masks


# ----------------------------------------------------------------------------------------------------------------
# writers


def write_gguf(path, spec, P_stored_np, gtypes):
    arch = spec["arch"]
    w = gguf_io.GGUFWriter(alignment=spec.get("alignment", gguf_io.DEFAULT_ALIGNMENT))
    S, U32, F32 = gguf_io.STRING, gguf_io.U32, gguf_io.F32
    w.add("general.architecture", S, arch)
    w.add("general.name", S, spec["name"])
    w.add("general.file_type", U32, {"f32": 0, "f16": 1, "bf16": 32}[spec["storage"]])
    if "alignment" in spec:
        w.add("general.alignment", U32, spec["alignment"])
    w.add(arch + ".context_length", U32, N_CTX)
    w.add(arch + ".embedding_length", U32, spec["n_embd"])
    w.add(arch + ".block_count", U32, N_LAYER)
    w.add(arch + ".feed_forward_length", U32, spec["n_ff"])
    w.add(arch + ".attention.head_count", U32, spec["n_head"])
    if arch == "gpt2":
        w.add(arch + ".attention.layer_norm_epsilon", F32, spec["eps"])
    else:
        w.add(arch + ".attention.head_count_kv", U32, spec["n_kv_head"])
        w.add(arch + ".attention.layer_norm_rms_epsilon", F32, spec["eps"])
        w.add(arch + ".rope.freq_base", F32, spec["rope_theta"])
        w.add(arch + ".rope.dimension_count", U32, spec["n_embd"] // spec["n_head"])
    w.add("tokenizer.ggml.model", S, "gpt2")
    w.add_array("tokenizer.ggml.tokens", S, TOKENS)
    w.add_array("tokenizer.ggml.token_type", gguf_io.I32, TOKEN_TYPES)
    w.add_array("tokenizer.ggml.merges", S, [])
    w.add("tokenizer.ggml.bos_token_id", U32, BOS)
    w.add("tokenizer.ggml.eos_token_id", U32, EOS)
    for name in tensor_order(P_stored_np):
        w.add_tensor(name, P_stored_np[name], gtypes[name])
    w.write(path)
    return w


def tensor_order(P):
    """token_embd, position_embd, then blocks in order, then output_norm, output (llama.cpp converter order)."""
    head = [n for n in ("token_embd.weight", "position_embd.weight") if n in P]
    tail = [n for n in ("output_norm.weight", "output_norm.bias", "output.weight") if n in P]
    blocks = sorted((n for n in P if n.startswith("blk.")), key=lambda n: (int(n.split(".")[1]), n))
    assert len(head) + len(tail) + len(blocks) == len(P)
    return head + blocks + tail


GGUF_TO_HF = {v: k for k, v in R.HF_LLAMA_NAMES.items()}


def gguf_to_hf_name(n):
    if n == "token_embd.weight":
        return "model.embed_tokens.weight"
    if n == "output_norm.weight":
        return "model.norm.weight"
    if n == "output.weight":
        return "lm_head.weight"
    _, l, rest = n.split(".", 2)
    return "model.layers.%s.%s" % (l, GGUF_TO_HF[rest])


# ----------------------------------------------------------------------------------------------------------------
# JSON output


def num(x, sig=10):
    return float("%.*g" % (sig, x))


def dump_expected(path, d):
    """Compact but readable: one top-level key per line, one logit row per line."""
    lines = ["{"]
    keys = list(d)
    for i, k in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        v = d[k]
        if k == "logits":
            seq_txt = []
            for rows in v:
                rows_txt = ",\n    ".join(json.dumps(r, separators=(",", ":")) for r in rows)
                seq_txt.append("  [\n    " + rows_txt + "\n  ]")
            lines.append('"logits": [\n' + ",\n".join(seq_txt) + "\n]" + comma)
        elif k == "tokenizer":
            sub = ",\n  ".join("%s: %s" % (json.dumps(sk), json.dumps(sv, separators=(",", ":")))
                               for sk, sv in v.items())
            lines.append('"tokenizer": {\n  ' + sub + "\n}" + comma)
        else:
            lines.append("%s: %s%s" % (json.dumps(k), json.dumps(v, separators=(",", ":")), comma))
    lines.append("}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    json.load(open(path, encoding="utf-8"))   # must parse


def expected_dict(name, model_file, fmt, cfg, storage, seqs, masks, logits):
    losses = R.lm_losses(logits, seqs, masks)
    rows = []
    for b, s in enumerate(seqs):
        L = len(s)
        positions = sorted({0, L // 2, L - 1})
        rows.append([[p, [num(x) for x in logits[b, p].tolist()]] for p in positions])
    return {
        "fixture": name,
        "model": model_file,
        "format": fmt,
        "architecture": cfg.arch,
        "config": {"n_vocab": cfg.n_vocab, "n_ctx": cfg.n_ctx, "n_embd": cfg.n_embd, "n_layer": cfg.n_layer,
                   "n_head": cfg.n_head, "n_kv_head": cfg.n_kv_head, "head_dim": cfg.head_dim, "n_ff": cfg.n_ff,
                   "norm_eps": cfg.eps, "rope_theta": cfg.rope_theta if cfg.arch != "gpt2" else None,
                   "rope_style": cfg.rope_style or None, "tied_embeddings": cfg.tied, "matrix_storage": storage},
        "batch": seqs,
        "completion_mask": masks,
        "logits": rows,
        "loss_all": num(losses["loss_all"], 12),
        "loss_completion": num(losses["loss_completion"], 12),
        "loss_counts": {"all": losses["n_all"], "completion": losses["n_completion"]},
        "tolerance": TOLERANCE,
        "tolerance_rule": TOLERANCE_RULE,
        "tokenizer": tokenizer_section(),
    }


# ----------------------------------------------------------------------------------------------------------------
# checks


def check_model(cfg, P, seqs, masks, label):
    """Runs the reference; cross-checks it; returns [B, T, V] logits."""
    logits = R.forward(P, cfg, seqs)
    # second formulation, one unpadded sequence at a time
    for b, s in enumerate(seqs):
        alt = R.forward_single_check(P, cfg, s)
        diff = (alt - logits[b, :len(s)]).abs().max().item()
        assert diff < 1e-10, "%s: second formulation differs by %g on sequence %d" % (label, diff, b)
    # padding invariance: other pad id, longer padding
    T = max(len(s) for s in seqs)
    padded = [s + [EOS] * (T + 3 - len(s)) for s in seqs]
    tokens = torch.tensor(padded)
    fwd = R.gpt2_forward if cfg.arch == "gpt2" else R.llama_forward
    logits2 = fwd(P, cfg, tokens, [len(s) for s in seqs])
    for b, s in enumerate(seqs):
        d = (logits2[b, :len(s)] - logits[b, :len(s)]).abs().max().item()
        assert d < 1e-12, "%s: padding changes real logits by %g" % (label, d)
    # loss vs F.cross_entropy
    losses = R.lm_losses(logits, seqs, masks)
    lg = torch.cat([logits[b, :len(s) - 1] for b, s in enumerate(seqs)])
    tg = torch.tensor([t for s in seqs for t in s[1:]])
    cm = torch.tensor([m for ms in masks for m in ms[1:]], dtype=torch.bool)
    assert abs(F.cross_entropy(lg, tg).item() - losses["loss_all"]) < 1e-12
    assert abs(F.cross_entropy(lg[cm], tg[cm]).item() - losses["loss_completion"]) < 1e-12
    # not degenerate: logits spread, loss away from ln(V)
    real = torch.cat([logits[b, :len(s)] for b, s in enumerate(seqs)])
    spread = real.std(dim=-1).min().item()
    assert spread > 0.2, "%s: logits nearly uniform (row std %g)" % (label, spread)
    assert abs(losses["loss_all"] - math.log(N_VOCAB)) > 0.05, label
    return logits, losses


def check_gguf_roundtrip(path, writer, spec, stored_np):
    meta, tensors = gguf_io.read_gguf(path)
    assert list(meta) == [k for k, _, _ in writer.kv]
    for k, vt, v in writer.kv:
        gvt, gv = meta[k]
        assert gvt == vt, k
        if vt == gguf_io.F32:
            assert gv == np.float32(v), k
        else:
            assert gv == v, k
    assert set(tensors) == set(stored_np)
    A = spec.get("alignment", gguf_io.DEFAULT_ALIGNMENT)
    for n, arr in stored_np.items():
        t = tensors[n]
        assert t["shape"] == tuple(arr.shape) and t["dims"] == tuple(reversed(arr.shape)), n
        assert t["offset"] % A == 0, n
        assert t["array"].tobytes() == np.ascontiguousarray(arr).tobytes(), n
    # cross-check the header fields by hand for one tensor: token_embd dims are [n_embd, n_vocab]
    assert tensors["token_embd.weight"]["dims"] == (spec["n_embd"], N_VOCAB)


def check_rope_permutation():
    """Vector-level identity behind fixture (e): interleaved RoPE of permuted rows == permuted half-split RoPE."""
    torch.manual_seed(99)
    H, hd, T = 3, 8, 5
    x = torch.randn(1, T, H, hd)
    perm = R.hf_to_gguf_qk_permute(x[0].reshape(T, H * hd).T, H).T.reshape(1, T, H, hd)
    for j in range(hd // 2):   # definition: GGUF row 2j = HF row j, 2j+1 = HF row j + hd/2
        assert torch.equal(perm[..., 2 * j], x[..., j]) and torch.equal(perm[..., 2 * j + 1], x[..., j + hd // 2])
    a = R.apply_rope(perm, 10000.0, "interleaved")
    b = R.apply_rope(x, 10000.0, "half")
    b_perm = R.hf_to_gguf_qk_permute(b[0].reshape(T, H * hd).T, H).T.reshape(1, T, H, hd)
    assert (a - b_perm).abs().max().item() < 1e-14
    # position 0 is the identity, and RoPE preserves norms
    assert torch.equal(a[:, 0], perm[:, 0])
    assert (a.norm(dim=-1) - perm.norm(dim=-1)).abs().max().item() < 1e-12


# ----------------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "fixtures")))
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)

    gguf_io._selftest()
    check_rope_permutation()

    written = []
    llama_canonical = None
    for spec in SPECS:
        name = spec["name"]
        P = make_weights(spec)
        if spec["name"] == "llama_gqa_f32":
            llama_canonical = (spec, {k: v.clone() for k, v in P.items()})
        if spec["arch"] == "llama":
            # HF order -> GGUF order for q/k (llama.cpp converter); qwen2 keeps HF order (NEOX RoPE)
            for l in range(N_LAYER):
                P["blk.%d.attn_q.weight" % l] = R.hf_to_gguf_qk_permute(P["blk.%d.attn_q.weight" % l],
                                                                       spec["n_head"])
                P["blk.%d.attn_k.weight" % l] = R.hf_to_gguf_qk_permute(P["blk.%d.attn_k.weight" % l],
                                                                       spec["n_kv_head"])
        gtypes = {n: storage_type(spec, t) for n, t in P.items()}
        stored_np = {n: to_storage(t, gtypes[n])[0] for n, t in P.items()}
        path = os.path.join(out, name + ".gguf")
        writer = write_gguf(path, spec, stored_np, gtypes)
        check_gguf_roundtrip(path, writer, spec, stored_np)

        cfg, Pf, _, _ = R.load_gguf_model(path)
        for n, t in P.items():   # what the file holds is exactly the storage-rounded weights
            assert torch.equal(Pf[n], to_storage(t, gtypes[n])[1]), n
        if spec["storage"] != "f32":
            assert any(not torch.equal(Pf[n], P[n].float().double()) for n in P), "rounding had no effect?"
        seqs, masks = make_batch(spec)
        logits, losses = check_model(cfg, Pf, seqs, masks, name)
        if cfg.arch == "gpt2" and not cfg.tied:
            tied_logits = R.forward({k: v for k, v in Pf.items() if k != "output.weight"}, cfg, seqs)
            assert (tied_logits - logits).abs().max().item() > 0.1
        exp = expected_dict(name, name + ".gguf", "gguf", cfg, spec["storage"], seqs, masks, logits)
        dump_expected(os.path.join(out, name + ".expected.json"), exp)
        written += [name + ".gguf", name + ".expected.json"]
        print("%-22s loss_all %.6f  loss_completion %.6f  (%d bytes)"
              % (name, losses["loss_all"], losses["loss_completion"], os.path.getsize(path)))

    # (e) the llama weights as a Hugging Face folder, HF q/k order, half-split RoPE
    spec, P = llama_canonical
    name = "llama_hf_safetensors"
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    hf = {gguf_to_hf_name(n): t.to(torch.float32).numpy() for n, t in P.items()}
    safetensors_io.write_safetensors(os.path.join(folder, "model.safetensors"), hf, metadata={"format": "pt"})
    safetensors_io.write_json(os.path.join(folder, "config.json"), safetensors_io.llama_config_json(
        N_VOCAB, N_CTX, spec["n_embd"], N_LAYER, spec["n_head"], spec["n_kv_head"], spec["n_ff"], spec["eps"],
        spec["rope_theta"], spec["tied"], BOS, EOS))
    _, back = safetensors_io.read_safetensors(os.path.join(folder, "model.safetensors"))
    assert set(back) == set(hf) and all(np.array_equal(back[k][1], hf[k]) for k in hf)
    cfg_hf, P_hf = R.load_hf_llama(folder)
    cfg_gg, P_gg, _, _ = R.load_gguf_model(os.path.join(out, "llama_gqa_f32.gguf"))
    assert cfg_hf.rope_style == "half" and cfg_gg.rope_style == "interleaved"
    seqs, masks = make_batch(spec)
    logits_hf, losses_hf = check_model(cfg_hf, P_hf, seqs, masks, name)
    logits_gg = R.forward(P_gg, cfg_gg, seqs)
    for b, s in enumerate(seqs):
        d = (logits_hf[b, :len(s)] - logits_gg[b, :len(s)]).abs().max().item()
        assert d < 1e-9, "GGUF (interleaved, permuted) and HF (half-split) llama differ by %g" % d
    # and the conventions are not interchangeable: the wrong RoPE style gives different logits
    from dataclasses import replace
    wrong = R.forward(P_hf, replace(cfg_hf, rope_style="interleaved"), seqs)
    assert (wrong[1, :12] - logits_hf[1, :12]).abs().max().item() > 1e-3
    wrong = R.forward(P_gg, replace(cfg_gg, rope_style="half"), seqs)
    assert (wrong[1, :12] - logits_gg[1, :12]).abs().max().item() > 1e-3
    exp = expected_dict(name, name, "hf_safetensors", cfg_hf, "f32", seqs, masks, logits_hf)
    dump_expected(os.path.join(out, name + ".expected.json"), exp)
    written += [name + "/model.safetensors", name + "/config.json", name + ".expected.json"]
    print("%-22s loss_all %.6f  loss_completion %.6f  (matches llama_gqa_f32.gguf)"
          % (name, losses_hf["loss_all"], losses_hf["loss_completion"]))

    with open(os.path.join(out, "SHA256SUMS"), "w") as f:
        for rel in sorted(written):
            with open(os.path.join(out, rel), "rb") as g:
                f.write("%s  %s\n" % (hashlib.sha256(g.read()).hexdigest(), rel))
    print("all checks passed; wrote %d files to %s" % (len(written) + 1, out))


if __name__ == "__main__":
    main()
