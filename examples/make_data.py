#!/usr/bin/python3
"""Build the fine-tuning data: fortune cookies from Debian's `fortunes` + `fortunes-min` packages.

    apt-get install fortunes fortunes-min
    /usr/bin/python3 examples/make_data.py            # writes examples/data/train.jsonl and dev.jsonl

Source: every data file in /usr/share/games/fortunes/ (BSD fortune(6) data; see
/usr/share/doc/fortunes-min/copyright) except those listed in EXCLUDE. One JSONL line per fortune, {"text": ...}.
Kept: entries of 60..250 UTF-8 bytes (so BOS + text fits the base model's 256-token context), valid UTF-8, no control
characters other than newline and tab (this drops the backspace "overstrike" entries), trailing spaces removed from
each line, duplicates (same text up to case and whitespace) dropped. Split: entries sorted by the SHA-256 of their
text; the first 200 are dev (held out), the next 4000 are train, the rest unused.
The base model (make_base_model.py) is trained on Jane Austen only, so it has seen none of these.
Deterministic: no randomness at all; the output depends only on the package's files.
"""

import argparse
import hashlib
import json
import os

import corpora

EXCLUDE = {
    "ascii-art",     # pictures, not text
    "disclaimer",    # legal boilerplate, mostly longer than 250 bytes
    "translate-me",  # non-English
    "knghtbrd",      # IRC chat logs
    "ethnic", "men-women", "drugs",  # keep the example's text inoffensive
}
MIN_BYTES, MAX_BYTES = 60, 250
N_DEV, N_TRAIN = 200, 4000


def clean(raw):
    try:
        t = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    t = "\n".join(l.rstrip() for l in t.split("\n")).strip("\n")
    if any(ord(c) < 32 and c not in "\n\t" for c in t) or "\x7f" in t:
        return None
    if not MIN_BYTES <= len(t.encode("utf-8")) <= MAX_BYTES:
        return None
    return t


def collect(root):
    seen = set()
    out = []
    per_file = {}
    for name in corpora.fortune_files(root):
        if name in EXCLUDE:
            continue
        n = 0
        for raw in corpora.read_fortunes(os.path.join(root, name)):
            t = clean(raw)
            if t is None:
                continue
            key = " ".join(t.lower().split())
            if key in seen:
                continue
            seen.add(key)
            out.append(t)
            n += 1
        per_file[name] = n
    return out, per_file


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="build examples/data/{train,dev}.jsonl from the fortune files")
    ap.add_argument("--fortunes", default=corpora.FORTUNES_DEFAULT, help="fortune data directory")
    ap.add_argument("--out", default=os.path.join(here, "data"))
    args = ap.parse_args()

    texts, per_file = collect(args.fortunes)
    texts.sort(key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    dev, train = texts[:N_DEV], texts[N_DEV:N_DEV + N_TRAIN]
    if len(train) < N_TRAIN:
        raise SystemExit("only %d usable fortunes; is the `fortunes` package installed?" % len(texts))
    os.makedirs(args.out, exist_ok=True)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "dev.jsonl"), dev)
    for name, texts_ in (("train", train), ("dev", dev)):
        path = os.path.join(args.out, name + ".jsonl")
        nbytes = sum(len(t.encode("utf-8")) for t in texts_)
        print("%-5s %5d passages, %7d text bytes, %7d file bytes, sha256 %s" % (
            name, len(texts_), nbytes, os.path.getsize(path),
            hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]))
    print("usable fortunes: %d from %d files (unused: %d)" % (len(texts), len(per_file), len(texts) - N_DEV - N_TRAIN))


if __name__ == "__main__":
    main()
