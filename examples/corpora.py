"""Readers for the two Debian-packaged corpora of the fine-tuning example (no R, no network).

* Pretraining: Jane Austen's six novels from Debian's `r-cran-janeaustenr` (MIT-licensed R package; the novels
  themselves are public domain, from Project Gutenberg). The package stores them as R character vectors, one element
  per line of text, in the lazy-load database data/Rdata.rdb (index data/Rdata.rdx). This module reads that
  database directly -- a minimal decoder of R's XDR serialization format -- so R itself is not needed:

      apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb /tmp/janeaustenr
      # then pass --austen /tmp/janeaustenr/usr/lib/R/site-library/janeaustenr
      # (or `apt-get install r-cran-janeaustenr`, which pulls in R, and use the default path)

* Fine-tuning: fortune cookies from Debian's `fortunes` and `fortunes-min` (BSD fortune(6) data files, BSD
  licence; /usr/share/games/fortunes/*, entries separated by lines holding a single '%').
"""

import gzip
import os
import struct
import zlib

AUSTEN_DEFAULT = "/usr/lib/R/site-library/janeaustenr"
AUSTEN_BOOKS = ["sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion"]
FORTUNES_DEFAULT = "/usr/share/games/fortunes"


# ----------------------------------------------------------------------------------------------------------------
# R serialization (format versions 2 and 3, XDR), only what a lazy-load database of character vectors needs

NILSXP, SYMSXP, LISTSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, STRSXP, VECSXP = 0, 1, 2, 9, 10, 13, 14, 16, 19
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP = 255, 254, 253, 242, 241
NA_STRING = None


class _RReader:
    def __init__(self, buf):
        self.b = buf
        self.p = 0
        self.refs = []

    def int(self):
        (v,) = struct.unpack_from(">i", self.b, self.p)
        self.p += 4
        return v

    def header(self):
        if self.b[:2] != b"X\n":
            raise ValueError("not an XDR R serialization")
        self.p = 2
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader R version
        if version == 3:
            n = self.int()
            self.p += n  # native encoding name
        elif version != 2:
            raise ValueError("unsupported R serialization version %d" % version)

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if t in (NILVALUE_SXP, GLOBALENV_SXP, EMPTYENV_SXP, BASEENV_SXP):
            return None
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t == SYMSXP:
            name = self.item()  # a CHARSXP
            self.refs.append(name)
            return name
        if t == LISTSXP:  # pairlist: attributes?, tag?, car, cdr
            if has_attr:
                self.item()  # a pairlist cell's attributes are not needed here
            tag = self.item() if has_tag else None
            car = self.item()
            cdr = self.item()
            out = [(tag, car)]
            if isinstance(cdr, list) and cdr and isinstance(cdr[0], tuple):
                out += cdr
            return out
        if t == CHARSXP:
            n = self.int()
            if n == -1:
                return NA_STRING
            s = self.b[self.p:self.p + n]
            self.p += n
            # encoding levels sit at bit 12 and up: LATIN1 (1 << 2) -> bit 14; UTF8, ASCII, native -> UTF-8
            return s.decode("latin-1") if flags & (1 << 14) else s.decode("utf-8")
        if t in (LGLSXP, INTSXP):
            n = self.int()
            v = list(struct.unpack_from(">%di" % n, self.b, self.p))
            self.p += 4 * n
        elif t == REALSXP:
            n = self.int()
            v = list(struct.unpack_from(">%dd" % n, self.b, self.p))
            self.p += 8 * n
        elif t == STRSXP:
            n = self.int()
            v = [self.item() for _ in range(n)]
        elif t == VECSXP:
            n = self.int()
            v = [self.item() for _ in range(n)]
        else:
            raise ValueError("unsupported SEXP type %d" % t)
        if has_attr:
            attrs = dict(self.item())
            if "names" in attrs and t == VECSXP:
                return dict(zip(attrs["names"], v))
        return v


def r_unserialize(buf):
    r = _RReader(buf)
    r.header()
    return r.item()


def read_lazyload_db(prefix):
    """{name: object} from an R lazy-load database prefix.rdx / prefix.rdb (zlib-compressed entries)."""
    with open(prefix + ".rdx", "rb") as f:
        index = r_unserialize(gzip.decompress(f.read()) if f.peek(2)[:2] == b"\x1f\x8b" else f.read())
    if index["compressed"] not in ([1], [True]):
        raise ValueError("only zlib-compressed (compress = TRUE) lazy-load databases are supported")
    with open(prefix + ".rdb", "rb") as f:
        db = f.read()
    out = {}
    for name, (off, length) in index["variables"].items():
        chunk = db[off:off + length]
        (n,) = struct.unpack(">I", chunk[:4])
        raw = zlib.decompress(chunk[4:])
        if len(raw) != n:
            raise ValueError("bad entry length for " + name)
        out[name] = r_unserialize(raw)
    return out


def austen_books(root=AUSTEN_DEFAULT):
    """[(book, [line, ...])] for the six novels, in publication order; lines as in the package (Gutenberg text,
    hard-wrapped, "" between paragraphs)."""
    prefix = os.path.join(root, "data", "Rdata")
    if not os.path.exists(prefix + ".rdb"):
        raise SystemExit("janeaustenr data not found under %s: apt-get install r-cran-janeaustenr, or "
                         "apt-get download r-cran-janeaustenr && dpkg-deb -x r-cran-janeaustenr_*.deb DIR and pass "
                         "--austen DIR/usr/lib/R/site-library/janeaustenr" % root)
    objs = read_lazyload_db(prefix)
    return [(b, [l if l is not None else "" for l in objs[b]]) for b in AUSTEN_BOOKS]


def paragraphs(lines):
    """Blank-line-separated paragraphs, each a list of its (right-stripped) lines."""
    out, cur = [], []
    for l in lines:
        l = l.rstrip()
        if l.strip():
            cur.append(l)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


# ----------------------------------------------------------------------------------------------------------------
# fortune(6) data files


def fortune_files(root=FORTUNES_DEFAULT):
    """Sorted names of the plain data files (no .dat index, no .u8 symlinks)."""
    if not os.path.isdir(root):
        raise SystemExit("%s not found: apt-get install fortunes fortunes-min" % root)
    return sorted(f for f in os.listdir(root)
                  if "." not in f and os.path.isfile(os.path.join(root, f)) and not os.path.islink(os.path.join(root, f)))


def read_fortunes(path):
    """Entries of one fortune file (split on lines that are exactly '%'), as raw bytes with outer newlines removed."""
    with open(path, "rb") as f:
        data = f.read()
    entries, cur = [], []
    for line in data.split(b"\n"):
        if line == b"%":
            entries.append(b"\n".join(cur).strip(b"\n"))
            cur = []
        else:
            cur.append(line)
    entries.append(b"\n".join(cur).strip(b"\n"))
    return [e for e in entries if e]
