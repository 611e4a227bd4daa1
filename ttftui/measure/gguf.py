"""A small, strict reader for GGUF headers.

Why our own reader: the file must be checked *before* llama.cpp sees it, so that a missing file, a
file that is not GGUF or a truncated download becomes a clear one-line error instead of a C-level
failure, and the model's facts (architecture, quantization, parameters, KV-cache size) can be
reported by the synthetic engine too. Only the header is read (metadata and tensor table); tensor
data is never touched, so this costs milliseconds even for large models.

Format reference: ggml's ``docs/gguf.md`` (little-endian; versions 2 and 3 use 64-bit counts).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ttftui.core.errors import ModelCorrupt, ModelNotFound, ModelNotGGUF
from ttftui.core.inputs import InputRefused, check_regular

GGUF_MAGIC = b"GGUF"

# GGUF metadata value types.
_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9

# ggml tensor types: (name, elements per block, bytes per block). Used to size tensors, so that a
# truncated file is detected from the header alone.
GGML_TYPES: dict[int, tuple[str, int, int]] = {
    0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22), 7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210), 15: ("Q8_K", 256, 292), 16: ("IQ2_XXS", 256, 66), 17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98), 19: ("IQ1_S", 256, 50), 20: ("IQ4_NL", 32, 18), 21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82), 23: ("IQ4_XS", 256, 136), 24: ("I8", 1, 1), 25: ("I16", 1, 2),
    26: ("I32", 1, 4), 27: ("I64", 1, 8), 28: ("F64", 1, 8), 29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2), 34: ("TQ1_0", 256, 54), 35: ("TQ2_0", 256, 66), 39: ("MXFP4", 32, 17),
}

# llama.cpp's ``enum llama_ftype`` (general.file_type): the quantization the file was made with.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

# Arrays longer than this are not kept in memory (the vocabulary); only their length is.
_KEEP_ARRAY_MAX = 64


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def n_bytes(self) -> int | None:
        t = GGML_TYPES.get(self.ggml_type)
        if t is None:
            return None
        _, block, size = t
        return (self.n_elements // block) * size


@dataclass(frozen=True)
class GGUFHeader:
    path: str
    version: int
    file_size: int
    metadata: dict[str, Any]
    array_lengths: dict[str, int]
    tensors: tuple[TensorInfo, ...]
    data_offset: int

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def arch_key(self, suffix: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{suffix}", default)

    @property
    def quantization(self) -> str | None:
        ft = self.metadata.get("general.file_type")
        if isinstance(ft, int) and ft in FILE_TYPES:
            return FILE_TYPES[ft]
        # No file_type: name the most common type among 2-D weight tensors.
        counts: dict[str, int] = {}
        for t in self.tensors:
            if len(t.shape) >= 2 and t.ggml_type in GGML_TYPES:
                name = GGML_TYPES[t.ggml_type][0]
                counts[name] = counts.get(name, 0) + t.n_elements
        return max(counts, key=counts.__getitem__) if counts else None

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    @property
    def tensor_bytes(self) -> int | None:
        """Bytes of tensor data (the weights); None if a tensor type is unknown to this reader."""
        sizes = [t.n_bytes() for t in self.tensors]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]

    def kv_cache_bytes(self, n_ctx: int, bytes_per_element: int = 2) -> int | None:
        """K and V caches for ``n_ctx`` tokens (f16 by default), from the metadata formula:
        n_ctx × n_layers × n_kv_heads × (key_length + value_length) × bytes."""
        n_layer = self.arch_key("block_count")
        n_head = _scalar_max(self.arch_key("attention.head_count"))
        n_head_kv = _scalar_max(self.arch_key("attention.head_count_kv", n_head))
        n_embd = self.arch_key("embedding_length")
        if not all(isinstance(v, int) and v > 0 for v in (n_layer, n_head, n_head_kv, n_embd)):
            return None
        k_len = self.arch_key("attention.key_length", n_embd // n_head)
        v_len = self.arch_key("attention.value_length", n_embd // n_head)
        return n_ctx * n_layer * n_head_kv * (k_len + v_len) * bytes_per_element


def _scalar_max(v: Any) -> Any:
    """Per-layer arrays (e.g. head_count_kv on some models) reduce to their maximum."""
    if isinstance(v, list):
        return max(v) if v else None
    return v


class _Reader:
    def __init__(self, f: BinaryIO, path: str, size: int):
        self.f, self.path, self.size = f, path, size

    def read(self, n: int) -> bytes:
        b = self.f.read(n)
        if len(b) != n:
            raise ModelCorrupt(
                f"{self.path}: GGUF header is truncated (file ends at byte {self.size}); "
                "the download is probably incomplete"
            )
        return b

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > self.size:
            raise ModelCorrupt(f"{self.path}: corrupt GGUF header (string length {n} exceeds the file)")
        return self.read(n).decode("utf-8", errors="replace")

    def value(self, vtype: int, key: str, lengths: dict[str, int]) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            etype = self.unpack("<I")
            count = self.unpack("<Q")
            if count > self.size:
                raise ModelCorrupt(f"{self.path}: corrupt GGUF header (array {key} claims {count} items)")
            lengths[key] = count
            if etype in _SCALARS and count > _KEEP_ARRAY_MAX:
                self.read(struct.calcsize(_SCALARS[etype]) * count)  # skip, e.g. token scores
                return None
            items = [self.value(etype, key, {}) for _ in range(count)]
            return items if count <= _KEEP_ARRAY_MAX else None
        raise ModelCorrupt(f"{self.path}: corrupt GGUF header (unknown value type {vtype} for {key})")


def check_model_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFound(f"model file not found: {p}")
    try:
        check_regular(p)  # a FIFO or a device would block or never end: refused before it is opened
    except InputRefused as e:
        raise ModelNotGGUF(f"{e}: not a GGUF model file") from None
    except OSError as e:
        raise ModelNotFound(f"model file is not readable: {p} ({e.strerror or e})") from None
    if not os.access(p, os.R_OK):
        raise ModelNotFound(f"model file is not readable: {p}")
    return p


def read_header(path: str | os.PathLike[str]) -> GGUFHeader:
    """Parse and check a GGUF header; raise a one-line ttftui error for anything wrong."""
    p = check_model_path(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        magic = f.read(4)
        if magic != GGUF_MAGIC:
            if len(magic) < 4:
                raise ModelNotGGUF(f"{p} is not a GGUF file (only {size} bytes)")
            raise ModelNotGGUF(f"{p} is not a GGUF file (starts with {magic!r}, expected b'GGUF')")
        r = _Reader(f, str(p), size)
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ModelNotGGUF(f"{p}: unsupported GGUF version {version} (this reader knows 2 and 3)")
        n_tensors = r.unpack("<Q")
        n_kv = r.unpack("<Q")
        if n_tensors > size or n_kv > size:
            raise ModelCorrupt(f"{p}: corrupt GGUF header (implausible counts)")
        metadata: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for _ in range(n_kv):
            key = r.string()
            vtype = r.unpack("<I")
            metadata[key] = r.value(vtype, key, lengths)
        tensors = []
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            if n_dims > 8:
                raise ModelCorrupt(f"{p}: corrupt GGUF tensor table ({name} has {n_dims} dimensions)")
            shape = tuple(r.unpack("<Q") for _ in range(n_dims))
            ggml_type = r.unpack("<I")
            offset = r.unpack("<Q")
            tensors.append(TensorInfo(name, shape, ggml_type, offset))
        align = metadata.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0:
            align = 32
        pos = f.tell()
        data_offset = pos + (-pos % align)
    header = GGUFHeader(str(p), version, size, metadata, lengths, tuple(tensors), data_offset)
    _check_complete(header)
    return header


def _check_complete(h: GGUFHeader) -> None:
    """The file must hold every tensor the header lists: catches truncated downloads."""
    end = h.data_offset
    for t in h.tensors:
        nb = t.n_bytes()
        end = max(end, h.data_offset + t.offset + (nb if nb is not None else 0))
    if end > h.file_size:
        missing = end - h.file_size
        raise ModelCorrupt(
            f"{h.path}: GGUF file is truncated: its tensors need {end} bytes but the file has "
            f"{h.file_size} ({missing} missing)"
        )
