"""Zero-copy safetensors encoding and decoding.

The files are standard safetensors (8-byte little-endian header length, JSON header with dtype,
shape and data_offsets, then the raw tensor bytes), readable by the `safetensors` library and by
`transformers`. Unlike `safetensors.torch.save`, `encode` does not build one big bytes object: it
returns the header and a memoryview per tensor, so a store streams them to disk while a thread
hashes them. `decode` builds tensors as views into one writable buffer (no second copy).
"""

from __future__ import annotations

import json
import struct

import torch

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}
TORCH_DTYPES = {v: k for k, v in DTYPES.items()}


def _bytes_view(t: torch.Tensor) -> memoryview:
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy()).cast("B")


def encode(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> list[memoryview | bytes]:
    """The file's parts in order: header, then each tensor's bytes (sorted by name)."""
    header, parts, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name]
        view = _bytes_view(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(view)]}
        parts.append(view)
        offset += len(view)
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return [struct.pack("<Q", len(raw)) + raw, *parts]


def decode(buffer: bytearray | memoryview) -> dict[str, torch.Tensor]:
    """Tensors as views into `buffer` (keep it writable: optimizer state is updated in place)."""
    view = memoryview(buffer)
    if len(view) < 8:
        raise ValueError("not a safetensors file (shorter than its header length)")
    (n,) = struct.unpack("<Q", view[:8])
    if 8 + n > len(view):
        raise ValueError("not a safetensors file (header runs past the end)")
    header = json.loads(bytes(view[8:8 + n]))
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = TORCH_DTYPES[info["dtype"]]
        if end == start:
            out[name] = torch.empty(info["shape"], dtype=dtype)
            continue
        out[name] = torch.frombuffer(view, dtype=dtype, count=(end - start) // dtype.itemsize,
                                     offset=base + start).view(info["shape"])
    return out
