#!/usr/bin/python3
"""Feasibility check for the example: is the Austen -> fortune-cookie gap real and learnable?

    /usr/bin/python3 examples/check_finetune.py [--steps 300]

Loads examples/base.gguf, prints its mean per-token loss on examples/data/dev.jsonl (what `zotune eval` reports:
BOS + text, cross-entropy on every text byte, pooled), then fine-tunes by ordinary backpropagation on
examples/data/train.jsonl and prints the dev loss again. Variants: all parameters with Adam, and (to show how much a
small tuned subset can move) only the RMSNorm weights, and only the output matrix. Deterministic (seeded order,
torch.set_num_threads(2)). This is a yardstick for zotune's zeroth-order training, not part of it.
"""

import argparse
import json
import os
import time

import torch

import lm

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 7


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l)["text"] for l in f]


def finetune(P0, cfg, rope, train, dev, steps, lr, batch, select, label, every):
    P = {n: t.clone().requires_grad_(select(n)) for n, t in P0.items()}
    params = [t for t in P.values() if t.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(SEED)
    order = []
    t0 = time.time()
    out = []
    for step in range(steps):
        if len(order) < batch:
            order += torch.randperm(len(train), generator=gen).tolist()
        idx, order = order[:batch], order[batch:]
        s, n = lm.loss_sum(P, cfg, rope, [train[i] for i in idx])
        opt.zero_grad(set_to_none=True)
        (s / n).backward()
        opt.step()
        if (step + 1) % every == 0 or step + 1 == steps:
            d = lm.mean_loss(P, cfg, rope, dev)
            out.append((step + 1, d))
            print("  %-22s step %4d  dev loss %.4f  (%.0f s)" % (label, step + 1, d, time.time() - t0), flush=True)
    return out, sum(t.numel() for t in params)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(HERE, "base.gguf"))
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)

    P0, cfg = lm.read_gguf_params(args.model)
    rope = lm.Rope(cfg["n_ctx"], cfg["n_embd"] // cfg["n_head"], cfg["rope_theta"])
    train = [lm.encode(t) for t in load_jsonl(os.path.join(args.data, "train.jsonl"))]
    dev = [lm.encode(t) for t in load_jsonl(os.path.join(args.data, "dev.jsonl"))]
    before = lm.mean_loss(P0, cfg, rope, dev)
    before_train = lm.mean_loss(P0, cfg, rope, train[:400])
    print("base model: dev loss %.4f nats/token (%d passages, %d tokens); train (first 400) %.4f"
          % (before, len(dev), sum(len(s) - 1 for s in dev), before_train), flush=True)
    res = {"dev_loss_before": round(before, 4)}
    variants = [
        ("all parameters, lr 1e-3", lambda n: True, 1e-3),
        ("RMSNorm weights, lr 1e-2", lambda n: n.endswith("norm.weight"), 1e-2),
        ("output.weight, lr 1e-3", lambda n: n == "output.weight", 1e-3),
    ]
    for label, sel, lr in variants:
        curve, n = finetune(P0, cfg, rope, train, dev, args.steps, lr, args.batch, sel, label, 100)
        print("%s (%d tuned parameters): dev %.4f -> %.4f (%+.4f) after %d steps of batch %d"
              % (label, n, before, curve[-1][1], curve[-1][1] - before, args.steps, args.batch), flush=True)
        res[label] = {"tuned_parameters": n, "dev_loss": {str(s): round(d, 4) for s, d in curve}}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
