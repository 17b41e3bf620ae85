"""Minimal GGUF v3 writer and reader (little-endian only).

Written from the GGUF format description (ggml docs/gguf.md), independently of zotune's C code.

Layout written:
    u32 magic 'GGUF', u32 version 3, u64 tensor_count, u64 kv_count
    kv:          string key, u32 value_type, value
    tensor info: string name, u32 n_dims, u64 dims[n_dims] (ggml order = reversed PyTorch shape),
                 u32 ggml_type, u64 offset (relative to the data section, multiple of the alignment)
    zero padding up to the alignment, then the data section; each tensor is zero-padded to the alignment.
A string is u64 byte length followed by the UTF-8 bytes (no NUL).
"""

import struct

import numpy as np

# metadata value types
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)

_SCALAR_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f",
               BOOL: "<B", U64: "<Q", I64: "<q", F64: "<d"}

# ggml tensor types used here
GGML_F32, GGML_F16, GGML_BF16 = 0, 1, 30
_TYPE_SIZE = {GGML_F32: 4, GGML_F16: 2, GGML_BF16: 2}
TYPE_NAMES = {GGML_F32: "F32", GGML_F16: "F16", GGML_BF16: "BF16"}

DEFAULT_ALIGNMENT = 32
MAGIC = b"GGUF"


def _align(n, a):
    return n + (a - n % a) % a


def _pack_string(s):
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _pack_value(vtype, value):
    if vtype == STRING:
        return _pack_string(value)
    if vtype == ARRAY:
        etype, items = value
        out = [struct.pack("<IQ", etype, len(items))]
        for it in items:
            out.append(_pack_value(etype, it))
        return b"".join(out)
    if vtype == BOOL:
        if value not in (0, 1, True, False):
            raise ValueError("bool must be 0 or 1")
        return struct.pack("<B", 1 if value else 0)
    return struct.pack(_SCALAR_FMT[vtype], value)


def tensor_bytes(arr, ggml_type):
    """Raw little-endian bytes of a numpy array for a ggml type.

    F32: float32 array; F16: float16 array; BF16: uint16 array holding the bf16 bit patterns."""
    if ggml_type == GGML_F32:
        a = np.ascontiguousarray(arr, dtype="<f4")
    elif ggml_type == GGML_F16:
        a = np.ascontiguousarray(arr, dtype="<f2")
    elif ggml_type == GGML_BF16:
        if arr.dtype != np.uint16:
            raise TypeError("BF16 tensors are given as uint16 bit patterns")
        a = np.ascontiguousarray(arr, dtype="<u2")
    else:
        raise ValueError("unsupported ggml type %d" % ggml_type)
    return a.tobytes(order="C")


class GGUFWriter:
    """Collects metadata (in insertion order) and tensors (in insertion order), then writes one file."""

    def __init__(self, alignment=DEFAULT_ALIGNMENT):
        self.kv = []        # (key, vtype, value)
        self.tensors = []   # (name, torch-order shape, ggml_type, bytes)
        self.alignment = alignment

    def add(self, key, vtype, value):
        if any(k == key for k, _, _ in self.kv):
            raise ValueError("duplicate key " + key)
        self.kv.append((key, vtype, value))

    def add_array(self, key, etype, items):
        self.add(key, ARRAY, (etype, list(items)))

    def add_tensor(self, name, arr, ggml_type):
        """arr: numpy array in PyTorch (row-major) shape; stored as-is, dims reversed in the header."""
        if any(n == name for n, _, _, _ in self.tensors):
            raise ValueError("duplicate tensor " + name)
        if len(arr.shape) > 4:
            raise ValueError("n_dims > 4")
        self.tensors.append((name, tuple(arr.shape), ggml_type, tensor_bytes(arr, ggml_type)))

    def to_bytes(self):
        A = self.alignment
        head = [MAGIC, struct.pack("<IQQ", 3, len(self.tensors), len(self.kv))]
        for key, vtype, value in self.kv:
            head.append(_pack_string(key))
            head.append(struct.pack("<I", vtype))
            head.append(_pack_value(vtype, value))
        offset = 0
        data = []
        for name, shape, gtype, raw in self.tensors:
            dims = list(reversed(shape))           # ggml order: dims[0] is the contiguous one
            head.append(_pack_string(name))
            head.append(struct.pack("<I", len(dims)))
            head.append(struct.pack("<%dQ" % len(dims), *dims))
            head.append(struct.pack("<IQ", gtype, offset))
            padded = _align(len(raw), A)
            data.append(raw + b"\0" * (padded - len(raw)))
            offset += padded
        h = b"".join(head)
        h += b"\0" * (_align(len(h), A) - len(h))
        return h + b"".join(data)

    def write(self, path):
        with open(path, "wb") as f:
            f.write(self.to_bytes())


class _Cursor:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.buf):
            raise ValueError("truncated GGUF at byte %d (need %d)" % (self.pos, n))
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))

    def string(self):
        (n,) = self.unpack("<Q")
        return self.take(n).decode("utf-8")

    def value(self, vtype):
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            etype, count = self.unpack("<IQ")
            return (etype, [self.value(etype) for _ in range(count)])
        if vtype not in _SCALAR_FMT:
            raise ValueError("bad value type %d" % vtype)
        (v,) = self.unpack(_SCALAR_FMT[vtype])
        if vtype == BOOL:
            if v not in (0, 1):
                raise ValueError("bad bool")
            v = bool(v)
        return v


def read_gguf(path_or_bytes):
    """Parse a GGUF file with the validation rules of the spec.

    Returns (metadata, tensors):
      metadata: dict key -> (vtype, value); arrays are (ARRAY, (etype, list))
      tensors:  dict name -> dict(shape=torch-order tuple, dims=ggml dims, type=ggml type,
                offset=relative offset, array=numpy array in torch shape (float32 / float16 / uint16 bf16 bits))
    """
    if isinstance(path_or_bytes, (bytes, bytearray)):
        buf = bytes(path_or_bytes)
    else:
        with open(path_or_bytes, "rb") as f:
            buf = f.read()
    c = _Cursor(buf)
    if c.take(4) != MAGIC:
        raise ValueError("bad magic")
    (version,) = c.unpack("<I")
    if version not in (2, 3):
        raise ValueError("unsupported version %d" % version)
    n_tensors, n_kv = c.unpack("<QQ")
    meta = {}
    for _ in range(n_kv):
        key = c.string()
        (vtype,) = c.unpack("<I")
        if key in meta:
            raise ValueError("duplicate key " + key)
        meta[key] = (vtype, c.value(vtype))
    A = DEFAULT_ALIGNMENT
    if "general.alignment" in meta:
        A = meta["general.alignment"][1]
        if A <= 0 or A % 8 or (A & (A - 1)):
            raise ValueError("bad alignment")
    infos = []
    for _ in range(n_tensors):
        name = c.string()
        (n_dims,) = c.unpack("<I")
        if n_dims > 4:
            raise ValueError("n_dims > 4")
        dims = c.unpack("<%dQ" % n_dims)
        gtype, off = c.unpack("<IQ")
        if gtype not in _TYPE_SIZE:
            raise ValueError("unsupported ggml type %d for %s" % (gtype, name))
        infos.append((name, dims, gtype, off))
    data_start = _align(c.pos, A)
    if any(b != 0 for b in buf[c.pos:data_start]):
        raise ValueError("non-zero header padding")
    tensors = {}
    expect = 0
    for name, dims, gtype, off in infos:
        if name in tensors:
            raise ValueError("duplicate tensor " + name)
        if off != expect:
            raise ValueError("tensor %s offset %d, expected %d" % (name, off, expect))
        n = 1
        for d in dims:
            n *= d
        nbytes = n * _TYPE_SIZE[gtype]
        start = data_start + off
        if start + nbytes > len(buf):
            raise ValueError("tensor %s past end of file" % name)
        raw = buf[start:start + nbytes]
        shape = tuple(reversed(dims))
        dt = {GGML_F32: "<f4", GGML_F16: "<f2", GGML_BF16: "<u2"}[gtype]
        arr = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        tensors[name] = dict(shape=shape, dims=tuple(dims), type=gtype, offset=off, array=arr)
        expect = off + _align(nbytes, A)
    if data_start + expect != len(buf):
        raise ValueError("file size %d != data end %d" % (len(buf), data_start + expect))
    return meta, tensors


def to_float64(entry):
    """numpy float64 copy of a tensor entry returned by read_gguf."""
    a = entry["array"]
    if entry["type"] == GGML_BF16:
        return (a.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return a.astype(np.float64)


def meta_value(meta, key, default=None):
    if key not in meta:
        return default
    return meta[key][1]


def _selftest():
    w = GGUFWriter()
    w.add("general.architecture", STRING, "test")
    w.add("a.u8", U8, 255)
    w.add("a.i8", I8, -128)
    w.add("a.u16", U16, 65535)
    w.add("a.i16", I16, -32768)
    w.add("a.u32", U32, 4000000000)
    w.add("a.i32", I32, -2000000000)
    w.add("a.f32", F32, 0.5)
    w.add("a.bool", BOOL, True)
    w.add("a.u64", U64, 2 ** 63 + 5)
    w.add("a.i64", I64, -(2 ** 62))
    w.add("a.f64", F64, 0.1)
    w.add_array("a.strs", STRING, ["x", "", "\u00e9\u65e5"])
    w.add_array("a.empty", STRING, [])
    w.add("a.nested", ARRAY, (ARRAY, [(I32, [1, 2]), (I32, [])]))
    rng = np.random.default_rng(1)
    t32 = rng.standard_normal((3, 5)).astype(np.float32)
    t16 = rng.standard_normal((7,)).astype(np.float16)
    tbf = rng.integers(0, 65535, size=(2, 3, 4), dtype=np.uint16)
    w.add_tensor("t32", t32, GGML_F32)
    w.add_tensor("t16", t16, GGML_F16)
    w.add_tensor("tbf", tbf, GGML_BF16)
    b = w.to_bytes()
    meta, ts = read_gguf(b)
    for k, vt, v in w.kv:
        got = meta[k]
        assert got[0] == vt, k
        if vt == F32:
            assert got[1] == np.float32(v), k
        else:
            assert got[1] == v, (k, got, v)
    assert ts["t32"]["dims"] == (5, 3) and ts["t32"]["shape"] == (3, 5)
    assert np.array_equal(ts["t32"]["array"], t32)
    assert np.array_equal(ts["t16"]["array"], t16)
    assert np.array_equal(ts["tbf"]["array"], tbf)
    assert ts["t16"]["offset"] == 64 and ts["tbf"]["offset"] == 96
    assert len(b) % DEFAULT_ALIGNMENT == 0
    # explicit alignment key is honoured
    w2 = GGUFWriter(alignment=64)
    w2.add("general.alignment", U32, 64)
    w2.add_tensor("a", t16, GGML_F16)
    w2.add_tensor("b", t32, GGML_F32)
    m2, ts2 = read_gguf(w2.to_bytes())
    assert ts2["b"]["offset"] == 64 and np.array_equal(ts2["b"]["array"], t32)
    # corruptions are rejected
    for bad in (b"GGUX" + b[4:], b[:-1], b[:8] + struct.pack("<Q", 99) + b[16:]):
        try:
            read_gguf(bad)
        except (ValueError, struct.error, UnicodeDecodeError):
            pass
        else:
            raise AssertionError("corrupt file accepted")
    # byte-level check of the fixed header
    assert b[:4] == b"GGUF" and struct.unpack("<IQQ", b[4:24]) == (3, 3, len(w.kv))


if __name__ == "__main__":
    _selftest()
    print("gguf_io self-test ok")
