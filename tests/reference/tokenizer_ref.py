#!/usr/bin/python3
"""Independent reference tokenizers for zotune's model/tokenizer.c.

Written from the algorithms' published descriptions, not from zotune's C code:

* GPT-2 byte-level BPE (Radford et al. 2019; openai/gpt-2 `encoder.py`): `bytes_to_unicode`, the pre-tokenizer
  regex `GPT2_PATTERN` (Python's `regex` module, whose \\s is Unicode White_Space, \\p{L} letters, \\p{N} numbers),
  then within each piece the merge of lowest rank, every occurrence left to right, repeated until no pair has a rank.
  `bpe_hf` is a second formulation (Hugging Face tokenizers' `Word::merge_all`: a priority queue of pairs ordered by
  rank, then position) used as a cross-check.
* SentencePiece-style BPE (Kudo & Richardson 2018; sentencepiece `bpe_model.cc`), as Llama's tokenizer.json
  describes it: normalizer Prepend("▁") (non-empty text only) + Replace(" ", "▁"), no pre-tokenizer, then over the
  whole text: repeatedly merge the adjacent pair whose concatenation is an encodable vocabulary piece of the highest
  score (ties: leftmost); a final symbol with no piece becomes its UTF-8 bytes as "<0xXX>" tokens (byte fallback).
  `encode_hf` is the Hugging Face BPE-model formulation (merges from the merge list only, byte fallback per
  unknown character before merging), again a cross-check.

Conventions where the published algorithms, which take Unicode text, say nothing (zotune's, from model/tokenizer.h):
input is bytes; a maximal ill-formed UTF-8 subsequence is never a character: every byte that does not start a
well-formed sequence (Unicode ch. 3, Table 3-7) is a unit of its own. For GPT-2 it is a pre-token piece of its own
and the regex runs on each well-formed run separately (as PCRE2 with PCRE2_MATCH_INVALID_UTF does); for
SentencePiece it is a symbol that no piece matches, so it falls back to its byte token. Decoding gives bytes (invalid
UTF-8 comes back unchanged rather than as U+FFFD). A special token's string in the input is text (Hugging Face with
`encode_special_tokens = True`).

Self-test: /usr/bin/python3 tests/reference/tokenizer_ref.py
"""

import ctypes
import ctypes.util
import heapq

import regex

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_RE = regex.compile(GPT2_PATTERN)
SPM_SPACE = "\u2581"  # LOWER ONE EIGHTH BLOCK


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map (encoder.py)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


BYTE_ENCODER = bytes_to_unicode()
BYTE_DECODER = {c: b for b, c in BYTE_ENCODER.items()}


# ---- UTF-8 -------------------------------------------------------------------------------------------------------

def _wellformed_len(data, i):
    """Length of the well-formed UTF-8 sequence starting at data[i] (Unicode 15, Table 3-7), or 0."""
    b0 = data[i]
    if b0 <= 0x7F:
        return 1
    if 0xC2 <= b0 <= 0xDF:
        need = [(0x80, 0xBF)]
    elif b0 == 0xE0:
        need = [(0xA0, 0xBF), (0x80, 0xBF)]
    elif 0xE1 <= b0 <= 0xEC or 0xEE <= b0 <= 0xEF:
        need = [(0x80, 0xBF), (0x80, 0xBF)]
    elif b0 == 0xED:
        need = [(0x80, 0x9F), (0x80, 0xBF)]
    elif b0 == 0xF0:
        need = [(0x90, 0xBF), (0x80, 0xBF), (0x80, 0xBF)]
    elif 0xF1 <= b0 <= 0xF3:
        need = [(0x80, 0xBF)] * 3
    elif b0 == 0xF4:
        need = [(0x80, 0x8F), (0x80, 0xBF), (0x80, 0xBF)]
    else:
        return 0
    if i + len(need) >= len(data):   # truncated
        return 0
    for k, (lo, hi) in enumerate(need):
        if not lo <= data[i + 1 + k] <= hi:
            return 0
    return 1 + len(need)


def utf8_units(data):
    """data split into units: (True, bytes of one well-formed character) or (False, one ill-formed byte)."""
    out, i = [], 0
    while i < len(data):
        n = _wellformed_len(data, i)
        if n:
            out.append((True, data[i:i + n]))
            i += n
        else:
            out.append((False, data[i:i + 1]))
            i += 1
    return out


def utf8_segments(data):
    """Maximal well-formed runs as (True, str) and ill-formed bytes as (False, bytes of length 1)."""
    segs, run = [], []
    for ok, u in utf8_units(data):
        if ok:
            run.append(u)
            continue
        if run:
            segs.append((True, b"".join(run).decode("utf-8")))
            run = []
        segs.append((False, u))
    if run:
        segs.append((True, b"".join(run).decode("utf-8")))
    return segs


# ---- GPT-2 byte-level BPE ----------------------------------------------------------------------------------------

def gpt2_pretokenize(data):
    """The pre-token pieces (bytes) of data: the GPT-2 regex on each well-formed run, ill-formed bytes alone."""
    pieces = []
    for ok, seg in utf8_segments(data):
        if not ok:
            pieces.append(seg)
            continue
        found = GPT2_RE.findall(seg)
        assert "".join(found) == seg, "the GPT-2 pattern left characters unmatched in %r" % seg
        pieces += [p.encode("utf-8") for p in found]
    return pieces


def _pairs(word):
    return {(word[i], word[i + 1]) for i in range(len(word) - 1)}


class GPT2BPE:
    """vocab: {token string: id}; merges: [(left, right)] in rank order; special: {token string: id} (decode to
    nothing)."""

    def __init__(self, vocab, merges, special=()):
        self.vocab = dict(vocab)
        self.ranks = {}
        for r, m in enumerate(merges):
            self.ranks.setdefault(tuple(m), r)
        self.id_to_tok = {i: s for s, i in self.vocab.items()}
        self.special = set(self.vocab[s] for s in special)
        for b in range(256):
            assert BYTE_ENCODER[b] in self.vocab, "byte %d has no token" % b

    def bpe(self, token):
        """openai/gpt-2 encoder.py's Encoder.bpe: token (a str of byte characters) -> list of token strings."""
        word = tuple(token)
        if len(word) < 2:
            return list(word)
        pairs = _pairs(word)
        while True:
            bigram = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if bigram not in self.ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new_word.extend(word[i:])
                    break
                new_word.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = _pairs(word)
        return list(word)

    def bpe_hf(self, token):
        """The same piece by Hugging Face tokenizers' Word::merge_all (queue by rank, then position)."""
        return _queue_merge(list(token), lambda a, b: self.ranks.get((a, b)))

    def encode(self, data, check=True):
        ids = []
        for piece in gpt2_pretokenize(data):
            token = "".join(BYTE_ENCODER[b] for b in piece)
            parts = self.bpe(token)
            if check:
                alt = self.bpe_hf(token)
                assert alt == parts, "GPT-2 and HF merge orders disagree on %r: %r vs %r" % (token, parts, alt)
            ids += [self.vocab[p] for p in parts]
        return ids

    def decode(self, ids):
        text = "".join(self.id_to_tok[i] for i in ids if i not in self.special)
        return bytes(BYTE_DECODER[c] for c in text)


def _queue_merge(syms, rank_of):
    """Hugging Face word.rs merge_all on a list of symbol strings: pop the pair of lowest rank (ties: leftmost
    position), skip it if stale, merge, push the two new neighbour pairs. rank_of(a, b) -> rank or None."""
    n = len(syms)
    text = list(syms)
    alive = [True] * n
    nxt = list(range(1, n)) + [-1]
    prv = list(range(-1, n - 1))
    heap = []

    def push(i):
        j = nxt[i]
        if j < 0:
            return
        r = rank_of(text[i], text[j])
        if r is not None:
            heapq.heappush(heap, (r, i, text[i], text[j]))

    for i in range(n - 1):
        push(i)
    while heap:
        r, i, a, b = heapq.heappop(heap)
        if not alive[i] or nxt[i] < 0 or text[i] != a or text[nxt[i]] != b:
            continue
        j = nxt[i]
        text[i] = a + b
        alive[j] = False
        nxt[i] = nxt[j]
        if nxt[j] >= 0:
            prv[nxt[j]] = i
        if prv[i] >= 0:
            push(prv[i])
        push(i)
    return [text[i] for i in range(n) if alive[i]]


# ---- SentencePiece-style BPE with byte fallback ------------------------------------------------------------------

def byte_token(b):
    return "<0x%02X>" % b


class SPMBPE:
    """vocab: list of token strings by id; scores: list of floats (merge priority, higher first); normal: set of
    ids encoding may produce from text (not control, unknown or byte tokens); byte tokens "<0xXX>" are found by
    string; add_prefix: the Prepend("▁") normalizer; merges: [(left, right)] for the HF cross-check."""

    def __init__(self, vocab, scores, normal, add_prefix=True, merges=None):
        self.vocab = list(vocab)
        self.scores = list(scores)
        self.piece = {}
        for i in sorted(normal):
            assert self.vocab[i] not in self.piece, "duplicate piece %r" % self.vocab[i]
            self.piece[self.vocab[i]] = i
        self.byte_id = {}
        for i, s in enumerate(self.vocab):
            if i not in normal and len(s) == 6 and s.startswith("<0x") and s.endswith(">") and \
                    s[3:5] == s[3:5].upper():
                self.byte_id.setdefault(int(s[3:5], 16), i)
        assert len(self.byte_id) == 256
        self.byte_of = {i: b for b, i in self.byte_id.items()}
        self.normal = set(normal)
        self.add_prefix = add_prefix
        self.merge_rank = {}
        for r, m in enumerate(merges or []):
            self.merge_rank.setdefault(tuple(m), r)

    def normalize(self, data):
        if not data:
            return b""
        space = SPM_SPACE.encode("utf-8")
        return (space if self.add_prefix else b"") + data.replace(b" ", space)

    def encode(self, data, check=True):
        units = utf8_units(self.normalize(data))
        syms = [(u.decode("utf-8") if ok else u) for ok, u in units]   # str: a character; bytes: ill-formed
        while True:
            best = None
            for i in range(len(syms) - 1):
                a, b = syms[i], syms[i + 1]
                if not (isinstance(a, str) and isinstance(b, str)):
                    continue
                pid = self.piece.get(a + b)
                if pid is None:
                    continue
                if best is None or self.scores[pid] > best[0]:   # strictly greater: ties keep the leftmost
                    best = (self.scores[pid], i)
            if best is None:
                break
            i = best[1]
            syms[i:i + 2] = [syms[i] + syms[i + 1]]
        ids = []
        for s in syms:
            if isinstance(s, str) and s in self.piece:
                ids.append(self.piece[s])
            else:
                raw = s if isinstance(s, bytes) else s.encode("utf-8")
                ids += [self.byte_id[b] for b in raw]
        if check:
            alt = self.encode_hf(data)
            assert alt == ids, "SentencePiece and HF BPE disagree on %r: %r vs %r" % (data, ids, alt)
        return ids

    def encode_hf(self, data):
        """Hugging Face BPE model (byte_fallback): characters not in the vocab become byte tokens first, then
        merges from the merge list only, by rank then position."""
        syms = []
        for ok, u in utf8_units(self.normalize(data)):
            c = u.decode("utf-8") if ok else None
            if c is not None and c in self.piece:
                syms.append(c)
            else:
                syms += [byte_token(b) for b in u]

        def rank_of(a, b):
            if a not in self.piece or b not in self.piece or a + b not in self.piece:
                return None
            return self.merge_rank.get((a, b))
        out = _queue_merge(syms, rank_of)
        return [self.piece[s] if s in self.piece else self.byte_id[int(s[3:5], 16)] for s in out]

    def decode(self, ids):
        out = bytearray()
        for i in ids:
            if i in self.byte_of:
                out.append(self.byte_of[i])
            elif i in self.normal:
                out += self.vocab[i].replace(SPM_SPACE, " ").encode("utf-8")
            # control and unknown tokens decode to nothing
        if self.add_prefix and out[:1] == b" ":
            del out[:1]
        return bytes(out)


# ---- Oniguruma (the regex engine Hugging Face tokenizers uses), for a cross-check of the pre-tokenizer ---------------

class _OnigRegion(ctypes.Structure):
    _fields_ = [("allocated", ctypes.c_int), ("num_regs", ctypes.c_int), ("beg", ctypes.POINTER(ctypes.c_int)),
                ("end", ctypes.POINTER(ctypes.c_int)), ("history_root", ctypes.c_void_p)]


class Onig:
    """A pattern compiled by libonig (Debian's libonig5, through ctypes) with UTF-8 and the default syntax, as the
    onig crate's Regex::new does. Onig.load() is None when the library is missing."""

    @classmethod
    def load(cls, pattern=GPT2_PATTERN):
        name = ctypes.util.find_library("onig") or "libonig.so.5"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            return None
        return cls(lib, pattern)

    def __init__(self, lib, pattern):
        self.lib = lib
        vp = ctypes.c_void_p
        lib.onig_new.argtypes = [ctypes.POINTER(vp), vp, vp, ctypes.c_uint, vp, vp, vp]
        lib.onig_search.argtypes = [vp, vp, vp, vp, vp, vp, ctypes.c_uint]
        lib.onig_region_new.restype = ctypes.POINTER(_OnigRegion)
        lib.onig_region_free.argtypes = [ctypes.POINTER(_OnigRegion), ctypes.c_int]
        self.enc = ctypes.addressof(ctypes.c_char.in_dll(lib, "OnigEncodingUTF8"))
        syntax = vp.in_dll(lib, "OnigDefaultSyntax").value
        encs = (vp * 1)(self.enc)
        assert lib.onig_initialize(encs, 1) == 0
        pat = pattern.encode("utf-8")
        self._pat = ctypes.create_string_buffer(pat, len(pat))
        self.reg = vp()
        einfo = (vp * 3)()
        a = ctypes.addressof(self._pat)
        rc = lib.onig_new(ctypes.byref(self.reg), a, a + len(pat), 0, self.enc, syntax, einfo)
        assert rc == 0, "onig_new failed: %d" % rc

    def findall(self, text):
        """Successive non-overlapping matches of text (a str), as a list of str."""
        b = text.encode("utf-8")
        buf = ctypes.create_string_buffer(b, len(b) + 1)
        a = ctypes.addressof(buf)
        region = self.lib.onig_region_new()
        out, pos = [], 0
        try:
            while pos < len(b):
                r = self.lib.onig_search(self.reg, a, a + len(b), a + pos, a + len(b), region, 0)
                if r < 0:
                    break
                s, e = region.contents.beg[0], region.contents.end[0]
                assert e > s, "empty match"   # the GPT-2 pattern has none
                out.append(b[s:e].decode("utf-8"))
                pos = e
        finally:
            self.lib.onig_region_free(region, 1)
        return out


# ---- self-test ---------------------------------------------------------------------------------------------------

def _selftest():
    be = bytes_to_unicode()
    assert len(be) == 256 and len(set(be.values())) == 256
    assert be[ord(" ")] == "\u0120" and be[0] == "\u0100" and be[ord("!")] == "!" and be[0xAD] == "\u0143"
    # UTF-8 units against Python's decoder (surrogateescape turns each ill-formed byte into one surrogate)
    samples = [b"", b"abc", "é日😀".encode(), b"\xff", b"\xc3\x28", b"\xe6\x97", b"\xed\xa0\x80", b"\xc0\xaf",
               b"\xf4\x90\x80\x80", b"\xf0\x9f\x98", b"a\xf0\x9f\x98\x80b\x80", b"\xe0\x80\x80", b"\xef\xbf\xbf"]
    for s in samples:
        units = utf8_units(s)
        py = s.decode("utf-8", "surrogateescape")
        assert len(units) == len(py), s
        for (ok, u), c in zip(units, py):
            assert ok == (not 0xDC80 <= ord(c) <= 0xDCFF), s
            assert u == c.encode("utf-8", "surrogateescape")
    # the pre-tokenizer on GPT-2's classic examples
    assert GPT2_RE.findall("Hello world's   x") == ["Hello", " world", "'s", "  ", " x"]
    assert GPT2_RE.findall("a  \n\n b") == ["a", "  \n\n", " b"]
    assert gpt2_pretokenize(b"a\xffb  \xfe") == [b"a", b"\xff", b"b", b"  ", b"\xfe"]
    # a tiny GPT-2 BPE: every occurrence of the best pair is merged left to right ("aaa" -> "aa" "a")
    vocab = {c: i for i, c in enumerate(be[b] for b in range(256))}
    for s in ["aa", "aaa", "aaaa", "\u0120a"]:
        vocab[s] = len(vocab)
    t = GPT2BPE(vocab, [("a", "a"), ("aa", "aa"), ("\u0120", "a"), ("aa", "a")])
    assert t.bpe("aaaaa") == ["aaaa", "a"] and t.bpe("aaa") == ["aaa"] and t.bpe_hf("aaaaa") == ["aaaa", "a"]
    assert t.decode(t.encode(b" aaa\xff")) == b" aaa\xff"
    # a tiny SentencePiece BPE: highest score wins, ties go left, unknown characters fall back to bytes
    vocab = ["<unk>", "<s>", "</s>"] + [byte_token(b) for b in range(256)] + \
        ["\u2581", "a", "b", "ab", "\u2581a", "ba", "\u2581ab"]
    n0 = 259
    scores = [0.0] * n0 + [-10, -10, -10, -1, -2, -1, -3]
    normal = set(range(n0, len(vocab)))
    t = SPMBPE(vocab, scores, normal)
    # "▁abab": "ab" (-1) at 1 and 3, "ba" (-1) at 2: leftmost "ab" first -> ▁ ab ab -> "▁ab" (-3) -> ▁ab ab
    assert [t.vocab[i] for i in t.encode(b"abab", check=False)] == ["\u2581ab", "ab"]
    assert t.encode("é".encode()) == [t.piece["\u2581"], 3 + 0xC3, 3 + 0xA9]
    assert t.encode(b"") == [] and t.decode(t.encode(b" a\xffb ", check=False)) == b" a\xffb "
    return True


if __name__ == "__main__":
    _selftest()
    print("tokenizer_ref self-test passed")
