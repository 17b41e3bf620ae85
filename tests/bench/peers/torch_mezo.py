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
random weights U(-0.035, 0.035) (std 0.02), norms 1, biases 0: the model
code is torch_models.py's, shared with torch_forward.py.

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
import os
import random
import sys
import time

# The model code is shared with torch_forward.py in torch_models.py beside
# this file. The C benchmarks run this script by a path from any directory,
# so the script's own directory goes first on sys.path; and Python writes no
# __pycache__ beside it, so a benchmark run leaves the source tree as it was.
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
sys.dont_write_bytecode = True
import torch_models as tm  # noqa: E402 - needs the sys.path entry above

LR = 1e-6
EPS = 1e-3


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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(tm.CONFIGS), required=True)
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
    imported = tm.import_torch()
    if imported is None:
        return 0
    torch, F = imported

    tm.start(torch, F, args.threads)
    c, p, named = tm.build(torch, args.model)
    forward = tm.FORWARDS[args.model]
    g = torch.Generator().manual_seed(1)
    seeds = random.Random(42)  # MeZO: np.random.randint(1000000000) per step
    for B, T, K in cases:
        if T > c["ctx"]:
            ap.error("T=%d exceeds the context %d" % (T, c["ctx"]))
        tokens, mask, rope_cs = tm.inputs(torch, args.model, c, B, T, g)

        def fwd():
            return forward(torch, F, c, p, tokens, mask, rope_cs, K)

        zo_step(torch, named, fwd, seeds.randrange(1000000000), [0.0, 0.0])  # warm-up
        times, perturb, fwds = [], [], []
        loss = float("nan")
        w0, t0 = tm.wait_seconds(), time.perf_counter()
        for k in range(args.reps):
            parts = [0.0, 0.0]
            t = time.perf_counter()
            l1 = zo_step(torch, named, fwd, seeds.randrange(1000000000), parts)
            times.append(time.perf_counter() - t)
            perturb.append(parts[0])
            fwds.append(parts[1])
            if k == 0:
                loss = l1
        wait = (tm.wait_seconds() - w0) / max(time.perf_counter() - t0, 1e-9)
        print("TORCH_MEZO model=%s B=%d T=%d K=%d threads=%d median_ms=%.3f min_ms=%.3f "
              "max_ms=%.3f perturb_ms=%.3f fwd_ms=%.3f loss=%.4f wait=%.3f" % (
                  args.model, B, T, K, args.threads, tm.median(times) * 1e3, min(times) * 1e3,
                  max(times) * 1e3, tm.median(perturb) * 1e3, tm.median(fwds) * 1e3, loss, wait),
              flush=True)
        del tokens, mask, rope_cs
    tm.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
