#!/usr/bin/env python3
"""torch_forward: the PyTorch peer of tests/bench/bench_forward.c.

The same two model shapes as bench_forward (GPT-2-124M, tied LM head; a ~15M
Llama, untied output), written in plain torch ops (F.linear, matmul, an
additive causal mask and softmax: torch 1.13 has no scaled_dot_product_attention),
random weights of the same distribution (U(-0.035, 0.035), norms 1, biases 0),
float32, under torch.inference_mode. One forward = the blocks, the final norm,
the LM head over the B*(T-1) positions that have a next token, and the summed
cross-entropy, as zotune's model_forward + model_loss. The model code is
torch_models.py's, shared with torch_mezo.py.

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
import os
import sys
import time

# The model code is shared with torch_mezo.py in torch_models.py beside this
# file. The C benchmarks run this script by a path from any directory, so the
# script's own directory goes first on sys.path; and Python writes no
# __pycache__ beside it, so a benchmark run leaves the source tree as it was.
sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
sys.dont_write_bytecode = True
import torch_models as tm  # noqa: E402 - needs the sys.path entry above


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(tm.CONFIGS), required=True)
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
    imported = tm.import_torch()
    if imported is None:
        return 0
    torch, F = imported

    tm.start(torch, F, args.threads,
             " BLIS_ARCH_TYPE=%s" % os.environ.get("BLIS_ARCH_TYPE", "unset"))
    c, p, _named = tm.build(torch, args.model)
    fwd = tm.FORWARDS[args.model]
    g = torch.Generator().manual_seed(1)
    for B, T in cases:
        if T > c["ctx"]:
            ap.error("T=%d exceeds the context %d" % (T, c["ctx"]))
        tokens, mask, rope_cs = tm.inputs(torch, args.model, c, B, T, g)
        times = []
        with torch.inference_mode():
            # The summed loss, as zotune's model_loss; printed per predicted token.
            loss = fwd(torch, F, c, p, tokens, mask, rope_cs, reduction="sum")  # warm-up
            w0, t0 = tm.wait_seconds(), time.perf_counter()
            for _ in range(args.reps):
                t = time.perf_counter()
                loss = fwd(torch, F, c, p, tokens, mask, rope_cs, reduction="sum")
                times.append(time.perf_counter() - t)
            wait = (tm.wait_seconds() - w0) / max(time.perf_counter() - t0, 1e-9)
        print("TORCH_FORWARD model=%s B=%d T=%d threads=%d median_ms=%.3f min_ms=%.3f "
              "max_ms=%.3f loss=%.4f wait=%.3f" % (
                  args.model, B, T, args.threads, tm.median(times) * 1e3, min(times) * 1e3,
                  max(times) * 1e3, float(loss) / (B * (T - 1)), wait), flush=True)
        del tokens, mask, loss
    tm.finish()
    return 0


if __name__ == "__main__":
    sys.exit(main())
