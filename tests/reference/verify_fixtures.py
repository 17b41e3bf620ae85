#!/usr/bin/python3
"""Check the committed fixtures against the reference, the way a consumer (the C tests) should.

    /usr/bin/python3 tests/reference/verify_fixtures.py [--dir tests/fixtures]

For every *.expected.json: load the model file it names (GGUF or HF folder) with this folder's readers, run the
reference forward on "batch", and compare "logits", "loss_all" and "loss_completion" with the rule in
"tolerance_rule"; also check the tokenizer cases against the vocabulary stored in the GGUF metadata.
Exits non-zero on any mismatch and ends with an 'N passed, N failed' line.
"""

import argparse
import glob
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gguf_io  # noqa: E402
import reference as R  # noqa: E402


def close(got, exp, tol):
    return abs(got - exp) <= tol * max(1.0, abs(exp))


def bytes_to_unicode_inverse(tokens):
    """byte value -> id, from the token strings (GPT-2 byte-to-unicode alphabet)."""
    from make_fixtures import bytes_to_unicode
    enc = bytes_to_unicode()
    return {b: tokens.index(enc[b]) for b in range(256)}


def verify(path):
    exp = json.load(open(path, encoding="utf-8"))
    base = os.path.dirname(path)
    model = os.path.join(base, exp["model"])
    meta = None
    if exp["format"] == "gguf":
        cfg, P, meta, _ = R.load_gguf_model(model)
    else:
        cfg, P = R.load_hf_llama(model)
    tol = exp["tolerance"]
    logits = R.forward(P, cfg, exp["batch"])
    bad = []
    for b, rows in enumerate(exp["logits"]):
        for pos, row in rows:
            got = logits[b, pos].tolist()
            assert len(row) == cfg.n_vocab
            nbad = sum(not close(g, e, tol) for g, e in zip(got, row))
            if nbad:
                bad.append("seq %d pos %d: %d logits out of tolerance" % (b, pos, nbad))
    losses = R.lm_losses(logits, exp["batch"], exp["completion_mask"])
    for k in ("loss_all", "loss_completion"):
        if not close(losses[k], exp[k], tol):
            bad.append("%s %.9g != %.9g" % (k, losses[k], exp[k]))
    if losses["n_all"] != exp["loss_counts"]["all"] or losses["n_completion"] != exp["loss_counts"]["completion"]:
        bad.append("loss counts differ")
    if meta is not None:
        tokens = gguf_io.meta_value(meta, "tokenizer.ggml.tokens")[1]
        inv = bytes_to_unicode_inverse(tokens)
        bos = gguf_io.meta_value(meta, "tokenizer.ggml.bos_token_id")
        for case in exp["tokenizer"]["cases"]:
            ids = ([bos] if case["add_bos"] else []) + [inv[x] for x in case["bytes"]]
            if ids != case["ids"]:
                bad.append("tokenizer case %s" % case["name"])
        for s in exp["tokenizer"]["vocab_samples"]:
            if list(tokens[s["id"]].encode("utf-8")) != s["token_utf8"]:
                bad.append("vocab id %d" % s["id"])
    return bad


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--dir", default=os.path.normpath(os.path.join(here, "..", "fixtures")))
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.dir, "*.expected.json")))
    passed = failed = 0
    for f in files:
        bad = verify(f)
        name = os.path.basename(f)
        if bad:
            failed += 1
            print("FAIL %s: %s" % (name, "; ".join(bad)))
        else:
            passed += 1
            print("ok   %s" % name)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed or not files else 0)


if __name__ == "__main__":
    torch.set_default_dtype(torch.float64)
    main()
