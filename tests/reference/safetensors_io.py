"""Minimal safetensors writer and reader, plus a Hugging Face config.json writer.

Written from the safetensors format description (huggingface/safetensors README, "Format"):
    u64 N (little-endian), N bytes of UTF-8 JSON header (right-padded with spaces), then the byte buffer.
    Header: {"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
    Offsets are relative to the start of the byte buffer; tensors tile the buffer exactly; row-major, little-endian.
"""

import json
import struct

import numpy as np

_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2), "F64": ("<f8", 8)}


def write_safetensors(path, tensors, metadata=None, dtypes=None):
    """tensors: dict name -> numpy array (PyTorch shape). dtypes: optional dict name -> "F32"/"F16"/"BF16"
    (BF16 arrays are uint16 bit patterns); default F32. Tensors are laid out sorted by name."""
    dtypes = dtypes or {}
    header = {}
    blobs = []
    off = 0
    for name in sorted(tensors):
        dt = dtypes.get(name, "F32")
        a = np.ascontiguousarray(tensors[name], dtype=_DTYPES[dt][0])
        raw = a.tobytes(order="C")
        header[name] = {"dtype": dt, "shape": [int(s) for s in a.shape], "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    if metadata is not None:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    hj = json.dumps(header, separators=(",", ":"), sort_keys=False).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Returns (metadata dict or None, dict name -> (dtype, numpy array in stored shape)); validates tiling."""
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack("<Q", buf[:8])
    if n > 100_000_000 or 8 + n > len(buf):
        raise ValueError("bad header length")
    header = json.loads(buf[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None)
    data = buf[8 + n:]
    out = {}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        b, e = info["data_offsets"]
        if b != end or e < b:
            raise ValueError("tensors do not tile the buffer at " + name)
        dt, size = _DTYPES[info["dtype"]]
        numel = 1
        for s in info["shape"]:
            numel *= s
        if e - b != numel * size:
            raise ValueError("size mismatch for " + name)
        out[name] = (info["dtype"], np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"]).copy())
        end = e
    if end != len(data):
        raise ValueError("file not fully covered")
    return meta, out


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def llama_config_json(n_vocab, n_ctx, n_embd, n_layer, n_head, n_kv_head, n_ff, rms_eps, rope_theta, tied,
                      bos=256, eos=257):
    """A LlamaForCausalLM config.json dict with the fields HF transformers reads."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": n_vocab,
        "max_position_embeddings": n_ctx,
        "hidden_size": n_embd,
        "intermediate_size": n_ff,
        "num_hidden_layers": n_layer,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv_head,
        "head_dim": n_embd // n_head,
        "hidden_act": "silu",
        "rms_norm_eps": rms_eps,
        "rope_theta": rope_theta,
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": bos,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    }


def _selftest(tmpdir):
    import os
    rng = np.random.default_rng(0)
    t = {"b": rng.standard_normal((3, 4)).astype(np.float32), "a": rng.standard_normal((5,)).astype(np.float32)}
    p = os.path.join(tmpdir, "t.safetensors")
    write_safetensors(p, t, metadata={"format": "pt"})
    meta, got = read_safetensors(p)
    assert meta == {"format": "pt"}
    for k in t:
        assert got[k][0] == "F32" and np.array_equal(got[k][1], t[k])
    with open(p, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
    assert n % 8 == 0


if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        _selftest(d)
    print("safetensors_io self-test ok")
