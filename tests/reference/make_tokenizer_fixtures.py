#!/usr/bin/python3
"""Generate the tokenizer fixtures in tests/fixtures/tokenizers/ (see the README there).

    /usr/bin/python3 tests/reference/make_tokenizer_fixtures.py [--out DIR]

Trains two small BPE vocabularies on license texts that Debian's base-files package ships, writes them as Hugging
Face tokenizer.json files, and encodes a list of test strings with the independent reference in tokenizer_ref.py:

* gpt2_bpe: GPT-2 byte-level BPE, N_MERGES_GPT2 merges, ByteLevel pre-tokenizer/decoder, "<|endoftext|>";
* spm_bpe: SentencePiece-style BPE with byte fallback as Llama's tokenizer.json has it (Prepend("▁") +
  Replace(" ", "▁") normalizer, "<unk>" "<s>" "</s>", "<0x00>".."<0xFF>"), N_MERGES_SPM merges.

Deterministic (no randomness, training ties broken by code point order, no dependence on hash order, JSON in a
fixed layout): running it twice gives byte-identical files, and SHA256SUMS lists them. The script fails unless every
cross-check passes: tokenizer_ref's self-test; for every case, GPT-2's encoder.py merge loop == Hugging Face's
queue-based merge, SentencePiece's score-based merge == Hugging Face's BPE model on the merge list, the reference's
regex split == libonig's (the engine Hugging Face tokenizers uses; skipped if libonig5 is absent), and
decode(encode(x)) == x. Needs Debian's python3-regex.
"""

import argparse
import collections
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tokenizer_ref as T  # noqa: E402

LICENSES = "/usr/share/common-licenses"
TRAIN_FILES = ["GPL-3", "Apache-2.0"]       # training text
HELDOUT_FILES = ["MPL-2.0", "BSD"]          # test sentences only
N_MERGES_GPT2 = 800
N_MERGES_SPM = 600

# The license texts are pure ASCII. These lines (written for this script) are added to the training text, each
# UNICODE_REPEAT times, so that both vocabularies also hold merges of multi-byte characters.
UNICODE_SUPPLEMENT = [
    "café crème brûlée, naïve façade, déjà vu à la française",
    "Straße, Größe, Übung, schön und süß",
    "日本語のテキスト、日本語の文章です。",
    "Ελληνικά και русский текст",
    "😀 😀 smile 😀",
]
UNICODE_REPEAT = 12

# Cases that do not round-trip through spm_bpe: a literal "▁" in the text is the space marker, decoded as " ".
SPM_LOSSY = {"marker_chars_literal"}


# ---- training ------------------------------------------------------------------------------------------------------

def train_bpe(word_counts, n_merges):
    """Classic BPE training (Sennrich et al. 2016): words are tuples of symbols with counts; repeatedly merge the
    most frequent adjacent pair (ties: the smallest (left, right) in code point order) everywhere. Returns the
    merges [(left, right)] in order."""
    words = [list(w) for w in sorted(word_counts)]
    counts = [word_counts[w] for w in sorted(word_counts)]
    pair_count = collections.Counter()
    where = collections.defaultdict(set)
    for wi, w in enumerate(words):
        for p in zip(w, w[1:]):
            pair_count[p] += counts[wi]
            where[p].add(wi)
    merges, seen = [], set()
    while len(merges) < n_merges:
        live = [(c, p) for p, c in pair_count.items() if c > 0]
        if not live:
            break
        best = min(live, key=lambda cp: (-cp[0], cp[1]))[1]
        assert best not in seen, "pair %r merged twice" % (best,)
        seen.add(best)
        merges.append(best)
        a, b = best
        for wi in sorted(where[best]):
            w = words[wi]
            for p in zip(w, w[1:]):
                pair_count[p] -= counts[wi]
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            words[wi] = nw
            for p in zip(nw, nw[1:]):
                pair_count[p] += counts[wi]
                where[p].add(wi)
    return merges


def read_license(name):
    with open(os.path.join(LICENSES, name), "rb") as f:
        return f.read()


def training_text():
    text = "\n".join(read_license(n).decode("utf-8") for n in TRAIN_FILES)
    return text + "\n" + "\n".join(UNICODE_SUPPLEMENT * UNICODE_REPEAT) + "\n"


def train_gpt2(text):
    words = collections.Counter()
    for piece in T.GPT2_RE.findall(text):
        words[tuple(T.BYTE_ENCODER[b] for b in piece.encode("utf-8"))] += 1
    merges = train_bpe(words, N_MERGES_GPT2)
    vocab = {}
    for b in T.BYTE_ENCODER:                     # GPT-2's order: the printable bytes first
        vocab[T.BYTE_ENCODER[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


SPM_WORD = T.regex.compile(r"▁+(?=▁)|▁[^▁]*|[^▁]+")


def train_spm(text):
    """SentencePiece-like: each line is a sentence ("▁" prepended, spaces as "▁"), split into words that start at a
    "▁" (a run of spaces keeps all but its last "▁" as a whitespace-only piece); newlines are not in the alphabet
    (they fall back to "<0x0A>", as in Llama)."""
    words = collections.Counter()
    chars = collections.Counter()
    for line in text.split("\n"):
        if not line:
            continue
        s = T.SPM_SPACE + line.replace(" ", T.SPM_SPACE)
        for w in SPM_WORD.findall(s):
            words[tuple(w)] += 1
            for c in w:
                chars[c] += 1
    merges = train_bpe(words, N_MERGES_SPM)
    vocab = ["<unk>", "<s>", "</s>"] + [T.byte_token(b) for b in range(256)]
    index = {s: i for i, s in enumerate(vocab)}
    for a, b in merges:                          # pieces in the order training made them
        if a + b not in index:
            index[a + b] = len(vocab)
            vocab.append(a + b)
    for c, _ in sorted(chars.items(), key=lambda kv: (-kv[1], kv[0])):
        assert c not in index
        index[c] = len(vocab)
        vocab.append(c)
    return vocab, merges


def llama_style_merges(vocab, first_rank_order):
    """The merge list Hugging Face's SentencePiece converter writes for a BPE vocabulary: for each piece, in order of
    score (best first), every split into two pieces that are both in the vocabulary, ordered by (left id, right
    id)."""
    index = {s: i for i, s in enumerate(vocab)}
    out = []
    for piece in first_rank_order:
        local = []
        for k in range(1, len(piece)):
            l, r = piece[:k], piece[k:]
            if l in index and r in index and index[l] >= 259 and index[r] >= 259:
                local.append((index[l], index[r], l, r))
        out += [(l, r) for _, _, l, r in sorted(local)]
    return out


# ---- tokenizer.json ----------------------------------------------------------------------------------------------

def added(i, s):
    return {"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
            "special": True}


def gpt2_json(vocab, merges):
    eot = vocab["<|endoftext|>"]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(eot, "<|endoftext|>")],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": ["%s %s" % m for m in merges]},
    }


def spm_json(vocab, merges):
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [added(0, "<unk>"), added(1, "<s>"), added(2, "</s>")],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": T.SPM_SPACE},
            {"type": "Replace", "pattern": {"String": " "}, "content": T.SPM_SPACE}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": T.SPM_SPACE}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                  "vocab": {s: i for i, s in enumerate(vocab)}, "merges": ["%s %s" % m for m in merges]},
    }


def dump_tokenizer_json(path, obj):
    """Hugging Face's layout: 2-space indent, UTF-8, the vocab one entry per line in id order."""
    text = json.dumps(obj, ensure_ascii=False, indent=2) + "\n"
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


# ---- cases -----------------------------------------------------------------------------------------------------------

def paragraphs(name):
    return [p for p in read_license(name).split(b"\n\n") if p.strip()]


def cases():
    """(name, bytes) pairs: held-out license text, then targeted edge cases."""
    mpl = paragraphs("MPL-2.0")
    bsd = read_license("BSD")
    out = []
    for k in [0, 3, 4, 8, 16, 21, 26, 40, 60]:          # MPL-2.0 paragraphs (titles, definitions, clauses)
        out.append(("mpl2_paragraph_%d" % k, mpl[k]))
    out.append(("bsd_full_text", bsd))
    out.append(("bsd_disclaimer_line", bsd.split(b"\n")[17]))
    lcg, noise = 12345, bytearray()
    for _ in range(64):                                  # fixed pseudo-random bytes (Numerical Recipes LCG)
        lcg = (lcg * 1664525 + 1013904223) % 2 ** 32
        noise.append(lcg >> 24)
    out += [
        ("empty", b""),
        ("single_space", b" "),
        ("single_letter", b"a"),
        ("space_runs", b"a  b   c    d"),
        ("leading_spaces", b"   leading spaces"),
        ("trailing_spaces", b"trailing spaces   "),
        ("only_spaces", b"        "),
        ("indented_heading", b"                    GNU GENERAL PUBLIC LICENSE"),
        ("tabs", b"\tcol1\tcol2\t\tcol4\t"),
        ("newlines", b"line one\nline two\n\nline four\n"),
        ("crlf", b"windows\r\nline\r\n\r\nend"),
        ("mixed_whitespace", b"x \t \n  y\x0b\x0cz \n"),
        ("newline_runs", b"\n\n\n   \n"),
        ("digits", b"1234567890"),
        ("numbers_punct", b"Version 3.0, 29 June 2007; $19.99 (50% off!) 1,000,000 v2.0.1 2024-01-15"),
        ("letters_digits", b"abc123def 4th x86_64 GPLv3+"),
        ("contractions", b"it's they're we've you'll I'm he'd don't can't"),
        ("contractions_upper", b"IT'S THEY'RE WE'VE"),
        ("contraction_after_space", b"he said 's and 'll"),
        ("apostrophes", b"rock 'n' roll, the '90s, O'Neil's"),
        ("punctuation", b"Hello, world!!! ... (a) [b] {c} <d> -- e/f \\g"),
        ("url_email", b"<https://www.gnu.org/licenses/> foo.bar@example.com"),
        ("code", b"#include <stdio.h>\nint main(void) { return 0; }\n"),
        ("special_token_text", b"<|endoftext|> <s> </s> <unk>"),
        ("byte_token_text", b"<0x41><0xFF>"),
        ("latin1_accents", "café résumé naïve façade".encode()),
        ("german", "Straße groß Übermaß".encode()),
        ("cjk", "日本語のテキスト".encode()),
        ("cjk_unseen", "中文文本和한국어".encode()),
        ("greek_cyrillic", "Ελληνικά и русский".encode()),
        ("emoji", "smile 😀! 👍🏽 👨‍👩‍👧".encode()),
        ("combining_marks", "e\u0301 a\u0308 n\u0303o\u0327".encode()),
        ("unicode_numbers", "½ x² Ⅻ ٣٤ ①".encode()),
        ("unicode_spaces", "a\u00a0b\u3000c\u2028d e\u2003f".encode()),
        ("unicode_space_runs", "a\u00a0\u00a0b\u3000!\u2003\u2003 c\u0085\u0085d".encode()),
        ("nel_u0085", "a\u0085b \u0085 c".encode()),
        ("info_separator_u001c", b"a\x1cb \x1c c"),
        ("zero_width", "a\u200bb\ufeffc".encode()),
        ("nul_bytes", b"a\x00b\x00\x00 c"),
        ("byte_ff", b"\xff"),
        ("byte_ff_in_text", b"abc\xffdef \xff \xff\xfe"),
        ("invalid_utf8_seqs", b"\xc3\x28 \xe6\x97 \xed\xa0\x80 \xc0\xaf \xf4\x90\x80\x80 \xf0\x9f\x98"),
        ("lone_continuations", b"\x80\x80abc\xbf"),
        ("invalid_then_space", b"x\xe9 y \xe9  \xe9z"),
        ("marker_chars_literal", "\u2581a\u2581 b \u0120c\u010a".encode()),
        ("long_word", b"supercalifragilisticexpialidociousPneumonoultramicroscopicsilicovolcanoconiosis"),
        ("long_repeat", b"a" * 97),
        ("long_space_run", b"x" + b" " * 40 + b"y"),
        ("pseudo_random_bytes", bytes(noise)),
    ]
    names = [n for n, _ in out]
    assert len(names) == len(set(names))
    return out


def write_cases(path, header, rows):
    """One JSON object; each case on one line so that diffs stay readable."""
    lines = ["{"]
    for k, v in header.items():
        lines.append("  %s: %s," % (json.dumps(k), json.dumps(v, ensure_ascii=False)))
    lines.append('  "cases": [')
    for i, r in enumerate(rows):
        lines.append("    " + json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) +
                     ("," if i + 1 < len(rows) else ""))
    lines.append("  ]")
    lines.append("}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.normpath(os.path.join(here, "..", "fixtures", "tokenizers")))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    T._selftest()

    sources = {n: hashlib.sha256(read_license(n)).hexdigest() for n in TRAIN_FILES + HELDOUT_FILES}
    text = training_text()

    # (1) GPT-2 byte-level BPE
    vocab, merges = train_gpt2(text)
    assert len(merges) == N_MERGES_GPT2
    gpt2 = T.GPT2BPE(vocab, merges, special=["<|endoftext|>"])
    dump_tokenizer_json(os.path.join(args.out, "gpt2_bpe.tokenizer.json"), gpt2_json(vocab, merges))

    # (2) SentencePiece-style BPE
    spm_vocab, spm_train_merges = train_spm(text)
    assert len(spm_train_merges) == N_MERGES_SPM
    order = []                                          # pieces by score: the order training made them
    for a, b in spm_train_merges:
        if a + b not in order:
            order.append(a + b)
    spm_merges = llama_style_merges(spm_vocab, order)
    # scores: the piece made by merge r scores -r (what the loaders derive from the merge list)
    score = {}
    for r, (a, b) in enumerate(spm_merges):
        score.setdefault(a + b, -float(r))
    n_merge = len(spm_merges)
    spm_scores = [score.get(s, -float(n_merge) - 1.0) for s in spm_vocab]
    normal = set(range(259, len(spm_vocab)))
    spm = T.SPMBPE(spm_vocab, spm_scores, normal, add_prefix=True, merges=spm_merges)
    # the converter's list ranks pieces in training order, so score order == training order
    assert [s for s in sorted(order, key=lambda s: -score[s])] == order
    dump_tokenizer_json(os.path.join(args.out, "spm_bpe.tokenizer.json"), spm_json(spm_vocab, spm_merges))

    # (3) cases
    onig = T.Onig.load()
    rows = {"gpt2_bpe": [], "spm_bpe": []}
    for name, data in cases():
        pieces = T.gpt2_pretokenize(data)
        if onig:                            # the regex split as Hugging Face's engine makes it
            for ok, seg in T.utf8_segments(data):
                if ok:
                    assert onig.findall(seg) == T.GPT2_RE.findall(seg), "oniguruma disagrees on %s" % name
        ends, at = [], 0
        for p in pieces:
            at += len(p)
            ends.append(at)
        for kind, tok in (("gpt2_bpe", gpt2), ("spm_bpe", spm)):
            ids = tok.encode(data)          # checks the second formulation too
            back = tok.decode(ids)
            if kind == "spm_bpe" and name in SPM_LOSSY:
                assert back == data.replace("\u2581".encode(), b" ")
            else:
                assert back == data, "%s %s: decode(encode(x)) != x" % (kind, name)
            row = {"name": name, "bytes": list(data)}
            if kind == "gpt2_bpe":
                row["piece_ends"] = ends
            row.update({"ids": ids, "decoded": list(back)})
            rows[kind].append(row)
    print("pre-tokenizer cross-check against oniguruma: %s" % ("passed" if onig else "skipped (no libonig)"))

    common = {
        "generator": "tests/reference/make_tokenizer_fixtures.py",
        "sources_sha256": sources,
    }
    write_cases(os.path.join(args.out, "gpt2_bpe.cases.json"), dict(
        {"tokenizer": "gpt2_bpe.tokenizer.json", "kind": "gpt2", "n_vocab": len(vocab),
         "n_merges": len(merges), "bos_id": None, "eos_id": vocab["<|endoftext|>"], "add_bos": False,
         "rule": "ids = GPT-2 byte-level BPE (tokenizer_ref.GPT2BPE.encode), no BOS; piece_ends = end offsets of "
                 "the pre-tokenizer's pieces (tokenizer_ref.gpt2_pretokenize); decoded = the input bytes"},
        **common), rows["gpt2_bpe"])
    write_cases(os.path.join(args.out, "spm_bpe.cases.json"), dict(
        {"tokenizer": "spm_bpe.tokenizer.json", "kind": "spm", "n_vocab": len(spm_vocab),
         "n_merges": len(spm_merges), "bos_id": 1, "eos_id": 2, "add_bos": True,
         "rule": "ids = SentencePiece BPE with byte fallback (tokenizer_ref.SPMBPE.encode), no BOS (the "
                 "post-processor adds <s> = 1 when asked); decoded = the reference's decode of ids: the input "
                 "bytes, except that a literal U+2581 decodes to a space (case marker_chars_literal)"},
        **common), rows["spm_bpe"])
    written = ["gpt2_bpe.tokenizer.json", "gpt2_bpe.cases.json", "spm_bpe.tokenizer.json", "spm_bpe.cases.json"]
    with open(os.path.join(args.out, "SHA256SUMS"), "w") as f:
        for rel in sorted(written):
            f.write("%s  %s\n" % (sha256(os.path.join(args.out, rel)), rel))

    total = sum(os.path.getsize(os.path.join(args.out, r)) for r in written)
    print("gpt2_bpe: %d tokens, %d merges; spm_bpe: %d tokens (%d from %d training merges), %d merges listed"
          % (len(vocab), len(merges), len(spm_vocab), len(order), len(spm_train_merges), len(spm_merges)))
    print("%d cases each; wrote %d files (%d bytes) to %s" % (len(rows["gpt2_bpe"]), len(written) + 1, total,
                                                            args.out))


if __name__ == "__main__":
    main()
