"""A small, strict reader for GGUF headers.

Why our own reader: the file must be checked *before* llama.cpp sees it, so that a missing file, a
file that is not GGUF or a truncated download becomes a clear one-line error instead of a C-level
failure, and the model's facts (architecture, quantization, parameters, KV-cache size) can be
reported by the synthetic engine too. Only the header is read (metadata and tensor table); tensor
data is never touched, so this costs milliseconds even for large models.

Why not ``gguf.GGUFReader`` (the reader maintained with llama.cpp): it fails the limits this reader
keeps. It parses everything eagerly into numpy views (one or two per vocabulary entry, one per
tensor), which costs seconds and a hundred-odd MiB to open even the 98 MB demo model, on every
start; its reads slice a memory map unchecked, so a count past the end of the file gives an empty
array instead of an error, and a tiny file declaring a huge array loops without end while its memory
grows; a damaged file raises numpy's IndexError/ValueError, never a message that says the download
is truncated. tests/test_gguf.py reads the demo model with both and holds this reader to a time and
memory bound; the figures measured when the choice was made are in benchmarks/README.md.

Nor are gguf's constants imported: gguf is not a dependency of ttftui (it would bring pyyaml,
requests and tqdm, and ``import gguf`` loads the whole package at every start), and its block sizes
are not all ggml's (its Q8_1 block is 40 bytes, ggml's ``block_q8_1`` is 36). The tables below are
checked against gguf's by tests/test_gguf.py instead, so a type that llama.cpp adds shows up there.

Limits: a count or length is checked against what is left of the file before anything is read or
allocated; the file is read through a window of 1 MiB; arrays over 64 items (the vocabulary) are
skipped, only their length kept, strings over 1 MiB (an embedded tokenizer.json) are skipped too;
at most 65,536 metadata keys, 1,048,576 tensors and 64 MiB of kept metadata; nested arrays, which
llama.cpp does not load, are refused. Every refusal is a one-line ModelNotGGUF or ModelCorrupt.

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

# GGUF metadata value types (gguf.GGUFValueType): the scalars, and the string and array codes.
_SCALARS = {
    code: struct.Struct(fmt) for code, fmt in {
        0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d",
    }.items()
}
_STRING, _ARRAY = 8, 9
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")

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
    40: ("NVFP4", 64, 36), 41: ("Q1_0", 128, 18),
}

# llama.cpp's ``enum llama_ftype`` (general.file_type): the quantization the file was made with.
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE", 39: "NVFP4",
    40: "Q1_0",
}

# Arrays longer than this are not kept in memory (the vocabulary); only their length is.
_KEEP_ARRAY_MAX = 64
_KEEP_STRING_MAX = 1 << 20  # a longer string value is skipped (None): an embedded tokenizer.json
_KEPT_MAX = 64 << 20  # metadata kept in memory, in all
_MAX_KV = 1 << 16  # metadata keys (a model has some 20 to 60)
_MAX_TENSORS = 1 << 20
_MAX_KEY = (1 << 16) - 1  # the format's limit on a key's length
_MAX_TENSOR_NAME = 1 << 10  # ggml's GGML_MAX_NAME is 64 (larger in some builds)
_MAX_DIMS = 8  # ggml's GGML_MAX_DIMS is 4
_WINDOW = 1 << 20  # the file is read this much at a time


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
    """The header, read through a window of the file: ``buf`` holds the bytes from file offset
    ``base``, ``pos`` is the next one. A count or a length is checked against the file before it
    is used, so nothing is read or kept beyond the window and the values kept."""

    def __init__(self, f: BinaryIO, path: str, size: int):
        self.f, self.path, self.size = f, path, size
        self.buf, self.base, self.pos = b"", f.tell(), 0
        self.kept = 0  # bytes of metadata kept

    def tell(self) -> int:
        return self.base + self.pos

    def truncated(self) -> ModelCorrupt:
        return ModelCorrupt(
            f"{self.path}: GGUF header is truncated (file ends at byte {self.size}); "
            "the download is probably incomplete"
        )

    def corrupt(self, what: str) -> ModelCorrupt:
        return ModelCorrupt(f"{self.path}: corrupt GGUF header ({what})")

    def _need(self, n: int) -> None:
        if len(self.buf) - self.pos >= n:
            return
        if n > self.size - self.tell():
            raise self.truncated()
        unread = self.size - self.base - len(self.buf)
        more = self.f.read(min(max(n - (len(self.buf) - self.pos), _WINDOW), unread))
        self.buf, self.base, self.pos = self.buf[self.pos:] + more, self.tell(), 0
        if len(self.buf) < n:  # the file shrank since it was measured
            raise self.truncated()

    def read(self, n: int) -> bytes:
        self._need(n)
        b = self.buf[self.pos:self.pos + n]
        self.pos += n
        return b

    def unpack(self, st: struct.Struct) -> Any:
        self._need(st.size)
        v = st.unpack_from(self.buf, self.pos)[0]
        self.pos += st.size
        return v

    def skip(self, n: int) -> None:
        if n <= len(self.buf) - self.pos:
            self.pos += n
            return
        end = self.tell() + n
        if end > self.size:
            raise self.truncated()
        self.f.seek(end)
        self.buf, self.base, self.pos = b"", end, 0

    def length(self, what: str, limit: int) -> int:
        n = self.unpack(_U64)
        if n > self.size:
            raise self.corrupt(f"{what} length {n} exceeds the file")
        if n > limit:
            raise self.corrupt(f"{what} length {n} is over {limit}")
        return n

    def string(self, what: str, limit: int) -> str:
        return self._keep(self.length(what, limit))

    def string_value(self) -> str | None:
        n = self.length("string", self.size)
        if n > _KEEP_STRING_MAX:
            self.skip(n)
            return None
        return self._keep(n)

    def _keep(self, n: int) -> str:
        self.kept += n
        if self.kept > _KEPT_MAX:
            raise self.corrupt(f"over {_KEPT_MAX >> 20} MiB of names and values")
        return self.read(n).decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` strings (a vocabulary): the hot loop of a header, kept tight."""
        buf, pos, end, q = self.buf, self.pos, len(self.buf), _U64.unpack_from
        for _ in range(count):
            if end - pos >= 8:
                n = q(buf, pos)[0]
                if n <= end - pos - 8:
                    pos += 8 + n
                    continue
            self.pos = pos  # the window's end: the careful way
            self.skip(self.length("string", self.size))
            buf, pos, end = self.buf, self.pos, len(self.buf)
        self.pos = pos

    def value(self, vtype: int, key: str, lengths: dict[str, int]) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string_value()
        if vtype != _ARRAY:
            raise self.corrupt(f"unknown value type {vtype} for {key}")
        etype = self.unpack(_U32)
        count = self.unpack(_U64)
        item = _SCALARS[etype].size if etype in _SCALARS else 8 if etype == _STRING else 0
        if etype == _ARRAY:
            raise self.corrupt(f"{key} is an array of arrays, which llama.cpp does not load")
        if not item:
            raise self.corrupt(f"unknown value type {etype} in array {key}")
        if count * item > self.size:
            raise self.corrupt(f"array {key} claims {count} items")
        lengths[key] = count
        if count > _KEEP_ARRAY_MAX:  # e.g. the vocabulary, token scores: only the length is kept
            if etype == _STRING:
                self.skip_strings(count)
            else:
                self.skip(count * item)
            return None
        return [self.value(etype, key, lengths) for _ in range(count)]  # scalars or strings


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
        version = r.unpack(_U32)
        if version not in (2, 3):
            raise ModelNotGGUF(f"{p}: unsupported GGUF version {version} (this reader knows 2 and 3)")
        n_tensors = r.unpack(_U64)
        n_kv = r.unpack(_U64)
        if n_tensors > min(size, _MAX_TENSORS) or n_kv > min(size, _MAX_KV):
            raise r.corrupt(f"implausible counts: {n_tensors} tensors, {n_kv} metadata keys")
        metadata: dict[str, Any] = {}
        lengths: dict[str, int] = {}
        for _ in range(n_kv):
            key = r.string("key", _MAX_KEY)
            vtype = r.unpack(_U32)
            metadata[key] = r.value(vtype, key, lengths)
        tensors = []
        for _ in range(n_tensors):
            name = r.string("tensor name", _MAX_TENSOR_NAME)
            n_dims = r.unpack(_U32)
            if n_dims > _MAX_DIMS:
                raise ModelCorrupt(f"{p}: corrupt GGUF tensor table ({name} has {n_dims} dimensions)")
            shape = tuple(r.unpack(_U64) for _ in range(n_dims))
            ggml_type = r.unpack(_U32)
            offset = r.unpack(_U64)
            tensors.append(TensorInfo(name, shape, ggml_type, offset))
        align = metadata.get("general.alignment", 32)
        if not isinstance(align, int) or align <= 0:
            align = 32
        pos = r.tell()
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
