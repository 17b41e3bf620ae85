#!/usr/bin/python3
"""Pretrain the example's small byte-level Llama on Jane Austen's novels and write examples/base.gguf.

    apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb /tmp/janeaustenr
    /usr/bin/python3 examples/make_base_model.py --austen /tmp/janeaustenr/usr/lib/R/site-library/janeaustenr
    # (or `apt-get install r-cran-janeaustenr`, which pulls in R, and omit --austen)

Corpus: the six novels in Debian's `r-cran-janeaustenr` (data/Rdata.rdb, read by corpora.py without R; novels public
domain via Project Gutenberg, package MIT). Each novel's blank-line-separated paragraphs become passages of at most
254 UTF-8 bytes: consecutive short paragraphs are joined with a blank line while they fit, long ones are cut at line
ends. A training sequence is BOS + passage + EOS (<= 256 tokens). Passages whose SHA-256 is 0 mod 50 are held out.

Model: Llama (lm.py; the architecture zotune and tests/reference/reference.py implement), byte vocabulary of 258,
dim 128, 4 layers, 4 heads (head_dim 32, n_kv_head 4), SwiGLU ffn 352, context 256, RoPE theta 10000 interleaved,
RMSNorm eps 1e-5, untied output; 870,016 parameters, float32 GGUF of ~3.5 MB.

Training: AdamW (betas 0.9/0.95, weight decay 0.1 on matrices), batch 32 passages, peak lr 3e-3 with 100 warm-up
steps and cosine decay to 3e-4, gradient clipping at 1.0, STEPS steps. Deterministic: torch.manual_seed, a seeded
generator for init and data order, torch.set_num_threads(2), torch.use_deterministic_algorithms(True) (and
F.embedding, whose CPU backward is deterministic, where plain indexing's is not); running twice writes a
byte-identical base.gguf on the same machine setup (the float32 bits depend on the BLAS behind Debian's torch,
the libblas.so.3 alternative, OpenBLAS here).

At the end the GGUF is read back with tests/reference (float64) and its loss on held-out passages must equal this
script's float32 loss to 1e-4.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time

import torch

import corpora
import lm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
import reference as R  # noqa: E402

MAX_PASSAGE = 254          # BOS + passage + EOS <= n_ctx = 256
HOLDOUT_MOD = 50
SEED = 20240917
BATCH = 32
STEPS = 700
LR, LR_MIN, WARMUP = 3e-3, 3e-4, 100


def split_long(lines, limit):
    """Cut a paragraph's lines into about equal chunks of at most `limit` bytes, at line ends (at spaces for an
    overlong line): the fewest chunks for which greedy filling up to (total / chunks + 40 bytes) works."""
    pieces = []
    for l in lines:
        while len(l.encode("utf-8")) > limit:
            cut = l.rfind(" ", 0, limit)
            cut = cut if cut > 0 else limit
            pieces.append(l[:cut])
            l = l[cut:].lstrip(" ")
        pieces.append(l)
    total = len("\n".join(pieces).encode("utf-8"))
    k = -(-total // limit)
    while True:
        cap = min(limit, -(-total // k) + 40)
        chunks, cur = [], []
        for l in pieces:
            if cur and len("\n".join(cur + [l]).encode("utf-8")) > cap:
                chunks.append("\n".join(cur))
                cur = []
            cur.append(l)
        chunks.append("\n".join(cur))
        if len(chunks) <= k and all(len(c.encode("utf-8")) <= limit for c in chunks):
            return chunks
        k += 1


def austen_passages(root):
    out = []
    for book, lines in corpora.austen_books(root):
        cur = None
        for para in corpora.paragraphs(lines):
            text = "\n".join(para)
            if len(text.encode("utf-8")) > MAX_PASSAGE:
                if cur is not None:
                    out.append(cur)
                    cur = None
                out.extend(split_long(para, MAX_PASSAGE))
                continue
            if cur is not None and len((cur + "\n\n" + text).encode("utf-8")) <= MAX_PASSAGE:
                cur = cur + "\n\n" + text
            else:
                if cur is not None:
                    out.append(cur)
                cur = text
        if cur is not None:
            out.append(cur)
    return out


def is_heldout(text):
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest(), 16) % HOLDOUT_MOD == 0


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / WARMUP
    p = (step - WARMUP) / max(1, steps - WARMUP)
    return LR_MIN + 0.5 * (LR - LR_MIN) * (1 + math.cos(math.pi * p))


def batches(n_items, lengths, gen):
    """Endless deterministic batches of indices: each epoch a seeded permutation, cut into windows of 32 batches
    whose items are sorted by length (less padding), the batches of a window in seeded order."""
    while True:
        perm = torch.randperm(n_items, generator=gen).tolist()
        win = BATCH * 32
        for w in range(0, n_items, win):
            chunk = sorted(perm[w:w + win], key=lambda i: (lengths[i], i))
            bs = [chunk[i:i + BATCH] for i in range(0, len(chunk), BATCH)]
            for j in torch.randperm(len(bs), generator=gen).tolist():
                if len(bs[j]) == BATCH:
                    yield bs[j]


def reference_check(path, P, cfg, rope, texts):
    """Loss of the written GGUF under tests/reference (float64) vs this script's float32 model."""
    rcfg, RP, _, _ = R.load_gguf_model(path)
    assert rcfg.arch == "llama" and rcfg.rope_style == "interleaved" and not rcfg.tied
    seqs = [lm.encode(t) for t in texts]
    ref = R.lm_losses(R.forward(RP, rcfg, seqs), seqs, [[1] * len(s) for s in seqs])["loss_all"]
    ours = lm.mean_loss(P, cfg, rope, seqs)
    return ref, ours


def main():
    ap = argparse.ArgumentParser(description="pretrain examples/base.gguf on Jane Austen")
    ap.add_argument("--austen", default=corpora.AUSTEN_DEFAULT, help="janeaustenr package directory")
    ap.add_argument("--out", default=os.path.join(HERE, "base.gguf"))
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args()

    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    cfg = dict(lm.CONFIG)
    rope = lm.Rope(cfg["n_ctx"], cfg["n_embd"] // cfg["n_head"], cfg["rope_theta"])

    passages = austen_passages(args.austen)
    held = [p for p in passages if is_heldout(p)]
    train = [p for p in passages if not is_heldout(p)]
    train_seqs = [lm.encode(p) + [lm.EOS] for p in train]
    held_seqs = [lm.encode(p) for p in held]                     # evaluated like zotune eval: BOS + text
    n_bytes = sum(len(p.encode("utf-8")) for p in train)
    print("austen: %d passages (%d train, %.2f MB; %d held out)" % (len(passages), len(train), n_bytes / 1e6,
                                                                  len(held)), flush=True)

    gen = torch.Generator().manual_seed(SEED)
    P = lm.init_params(cfg, SEED)
    print("parameters: %d" % sum(p.numel() for p in P.values()), flush=True)
    decay = [p for n, p in P.items() if p.dim() == 2]
    no_decay = [p for n, p in P.items() if p.dim() == 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    it = batches(len(train_seqs), [len(s) for s in train_seqs], gen)
    t0 = time.time()
    run_sum, run_n, tokens = 0.0, 0, 0
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps)
        idx = next(it)
        s, n = lm.loss_sum(P, cfg, rope, [train_seqs[i] for i in idx])
        loss = s / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
        run_sum += float(s)
        run_n += n
        tokens += n
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            print("step %5d  lr %.2e  train loss %.4f  (%d tokens, %.0f s)"
                  % (step + 1, lr_at(step, args.steps), run_sum / run_n, tokens, time.time() - t0), flush=True)
            final_train = run_sum / run_n
            run_sum, run_n = 0.0, 0
    train_s = time.time() - t0
    held_loss = lm.mean_loss(P, cfg, rope, held_seqs)

    lm.write_gguf(args.out, P, cfg, "zotune-example-austen-byte-llama")
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()

    # the file as zotune will see it: reload and compare against the float64 reference
    P2, cfg2 = lm.read_gguf_params(args.out)
    assert all(cfg2[k] == cfg[k] for k in cfg if k != "eps") and abs(cfg2["eps"] - cfg["eps"]) < 1e-12, cfg2
    check = held[:24]
    dev_path = os.path.join(HERE, "data", "dev.jsonl")
    if os.path.exists(dev_path):
        with open(dev_path, encoding="utf-8") as f:
            check += [json.loads(l)["text"] for l in f][:24]
    ref, ours = reference_check(args.out, P2, cfg2, rope, check)
    ok = abs(ref - ours) <= 1e-4
    print("reference check on %d passages: reference.py (float64) %.6f, lm.py (float32) %.6f, |diff| %.2e %s"
          % (len(check), ref, ours, abs(ref - ours), "ok" if ok else "FAILED"))
    summary = dict(steps=args.steps, tokens=tokens, train_seconds=round(train_s, 1),
                   final_train_loss=round(final_train, 4), heldout_austen_loss=round(held_loss, 4),
                   heldout_passages=len(held), parameters=sum(p.numel() for p in P.values()),
                   gguf_bytes=os.path.getsize(args.out), gguf_sha256=digest)
    print(json.dumps(summary))
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
