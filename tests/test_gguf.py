"""The GGUF header reader: facts from the real demo model, clear errors for damaged files, its tables
and its reading checked against gguf (llama.cpp's own Python package), hostile and fuzzed headers."""

from __future__ import annotations

import re
import struct

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ttftui.core.errors import ModelCorrupt, ModelNotFound, ModelNotGGUF
from ttftui.measure.gguf import read_header


def test_demo_model_facts(model_path):
    h = read_header(model_path)
    assert h.version == 3
    assert h.architecture == "llama"
    assert h.quantization == "Q4_1"
    assert h.get("general.size_label") == "135M"
    assert h.arch_key("block_count") == 30
    assert h.array_lengths["tokenizer.ggml.tokens"] == 49152
    assert h.n_params == 134_515_008
    assert h.kv_cache_bytes(4096) == 4096 * 30 * 3 * (64 + 64) * 2


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFound, match="not found"):
        read_header(tmp_path / "nope.gguf")


def test_directory_is_not_a_model(tmp_path):
    with pytest.raises(ModelNotGGUF, match="directory"):
        read_header(tmp_path)


@pytest.mark.parametrize("content", [b"", b"GG", b"not a model at all", b"\x00" * 64])
def test_not_gguf(tmp_path, content):
    p = tmp_path / "x.gguf"
    p.write_bytes(content)
    with pytest.raises(ModelNotGGUF, match="not a GGUF file"):
        read_header(p)


def test_unsupported_version(tmp_path):
    p = tmp_path / "x.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 99, 0, 0))
    with pytest.raises(ModelNotGGUF, match="version 99"):
        read_header(p)


@pytest.mark.parametrize("keep", [4, 8, 100, 5000, 1_000_000, 60_000_000, -1])
def test_truncated_copies_are_detected(tmp_path, model_path, keep):
    data = model_path.read_bytes()
    cut = data[:keep] if keep > 0 else data[:-1]
    p = tmp_path / "cut.gguf"
    p.write_bytes(cut)
    with pytest.raises(ModelCorrupt, match="truncated"):
        read_header(p)


def test_corrupt_string_length(tmp_path):
    p = tmp_path / "x.gguf"
    # one kv whose key claims to be 2**40 bytes long
    p.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**40) + b"abc")
    with pytest.raises(ModelCorrupt):
        read_header(p)


# ------------------------------------------------------------------ against gguf, llama.cpp's own package
# gguf (gguf-py, maintained in llama.cpp's tree) is a test dependency only: ttftui's reader keeps its
# own tables (ttftui/measure/gguf.py says why), and these tests keep them in step with gguf's.
def test_the_value_types_are_gguf_s():
    import gguf
    import numpy as np

    from ttftui.measure import gguf as ours

    assert {v.value for v in gguf.GGUFValueType} == set(ours._SCALARS) | {ours._STRING, ours._ARRAY}
    assert (ours._STRING, ours._ARRAY) == (gguf.GGUFValueType.STRING, gguf.GGUFValueType.ARRAY)
    for code, scalar in ours._SCALARS.items():  # the same width, sign and kind as gguf's numpy type
        assert np.dtype(scalar.format) == np.dtype(gguf.GGUFReader.gguf_scalar_to_np[gguf.GGUFValueType(code)])
    assert ours.GGUF_MAGIC == gguf.GGUF_MAGIC.to_bytes(4, "little")


# ggml's block_q8_1 is two halves and 32 quants (36 bytes, ggml-common.h asserts it); gguf-py still
# has the old two-float block (40). Q8_1 is never stored in a file (an intermediate of dot products).
GGML_DIFFERS = {"Q8_1": (32, 36)}


def test_the_tensor_types_and_file_types_are_gguf_s():
    import gguf

    from ttftui.measure.gguf import FILE_TYPES, GGML_TYPES

    theirs = {q.value: (q.name, *gguf.GGML_QUANT_SIZES[q]) for q in gguf.GGMLQuantizationType}
    for code, (name, block, size) in GGML_TYPES.items():
        assert theirs[code][0] == name
        assert (block, size) == GGML_DIFFERS.get(name, theirs[code][1:]), name
    assert set(theirs) == set(GGML_TYPES), "gguf knows tensor types this reader does not (or the reverse)"
    ftypes = {f.value: f.name.removeprefix("MOSTLY_").removeprefix("ALL_") for f in gguf.LlamaFileType
              if f.name != "GUESSED"}
    assert ftypes == FILE_TYPES


def test_the_demo_model_reads_as_gguf_reads_it(model_path):
    import gguf

    h = read_header(model_path)
    g = gguf.GGUFReader(model_path)
    assert h.version == g.fields["GGUF.version"].contents()
    for key, field in g.fields.items():
        if key.startswith("GGUF."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert h.array_lengths[key] == len(field.data), key
            if len(field.data) <= 64:
                assert h.metadata[key] == field.contents(), key
        else:
            assert h.metadata[key] == field.contents(), key
    assert len(h.metadata) == len(g.fields) - 3  # version and the two counts
    assert [(t.name, t.shape, t.ggml_type, h.data_offset + t.offset) for t in h.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), int(t.tensor_type), t.data_offset) for t in g.tensors]
    assert h.data_offset == g.data_offset
    assert h.n_params == sum(t.n_elements for t in g.tensors)
    assert h.tensor_bytes == sum(t.n_bytes for t in g.tensors)


def test_the_demo_model_header_is_read_in_a_bounded_window(model_path):
    """What it costs in time (milliseconds, against seconds for gguf.GGUFReader) is a speed:
    benchmarks/bench_claims.py --only gguf. Pinned here: what it keeps in memory."""
    import tracemalloc

    tracemalloc.start()
    try:
        read_header(model_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak >> 20} MiB"  # the window (1 MiB) and what is kept


# ------------------------------------------------------------------ hostile headers
def _kv(key: str, vtype: int, payload: bytes) -> bytes:
    k = key.encode()
    return struct.pack("<Q", len(k)) + k + struct.pack("<I", vtype) + payload


def _gguf(n_tensors: int, n_kv: int, body: bytes, pad: int = 64) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + body + b"\0" * pad


HOSTILE = {
    # each declares far more than the file holds; gguf.GGUFReader loops without end on the first two
    "array of 10**7 uint8": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 0, 10**7))),
    "array of 2**63 uint8": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 0, 2**63))),
    "array of 10**7 strings": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 8, 10**7))),
    "array of 2**61 uint64": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 10, 2**61))),  # 2**64 bytes
    "10**7 keys": _gguf(0, 10**7, b""),
    "10**7 tensors": _gguf(10**7, 0, b""),
    "a key of 2**40 bytes": _gguf(0, 1, struct.pack("<Q", 2**40)),
    "a value of 2**40 bytes": _gguf(0, 1, _kv("a", 8, struct.pack("<Q", 2**40))),
    "a tensor of 2**31 dimensions": _gguf(1, 0, struct.pack("<Q", 1) + b"t" + struct.pack("<I", 2**31)),
    "a tensor name of 4 KiB": _gguf(1, 0, struct.pack("<Q", 4096) + b"t" * 4096),
    "a value of type 13": _gguf(0, 1, _kv("a", 13, b"")),
    "an array of type 99": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 99, 1))),
    # the old reader recursed once per level: a RecursionError, exit 70
    "arrays nested 5000 deep": _gguf(0, 1, _kv("a", 9, struct.pack("<IQ", 9, 1) * 5000)),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_header_is_refused_at_once_in_one_line(tmp_path, name):
    import tracemalloc

    p = tmp_path / "h.gguf"
    p.write_bytes(HOSTILE[name])
    tracemalloc.start()
    try:
        with pytest.raises(ModelCorrupt) as e:
            read_header(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(e.value) and str(p) in str(e.value)
    # refused without allocating what the header claims (how fast: benchmarks/bench_claims.py --only gguf)
    assert peak < 1 << 20, peak


@pytest.mark.parametrize("name", ["arrays nested 5000 deep", "array of 2**63 uint8"])
def test_the_command_line_says_a_hostile_header_is_corrupt(tmp_path, name):
    from .conftest import cli

    p = tmp_path / "h.gguf"
    p.write_bytes(HOSTILE[name])
    r = cli("--headless", "--model", str(p))
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("ttftui: ") and "corrupt GGUF header" in r.stderr


# ------------------------------------------------------------------ fuzz
def _small_model(path) -> None:
    """A small valid GGUF written by gguf's own writer: metadata of every kind, a vocabulary long
    enough to be skipped (over 64 entries), tensors of a few types."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch="llama")
    w.add_block_count(2)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_string("general.name", "fuzz")
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"tok{i}" for i in range(100)])
    w.add_token_scores([float(i) for i in range(100)])
    w.add_array("llama.attention.head_count_kv_per_layer", [2, 2])
    w.add_tensor("token_embd.weight", np.zeros((100, 64), dtype=np.float16))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((64, 64), dtype=np.float32))
    w.add_tensor("output_norm.weight", np.zeros(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    p = tmp_path_factory.mktemp("gguf") / "small.gguf"
    _small_model(p)
    return p


def test_a_file_gguf_wrote_reads_back(small_model):
    h = read_header(small_model)
    assert h.architecture == "llama" and h.quantization == "F16" and h.get("general.name") == "fuzz"
    assert h.array_lengths["tokenizer.ggml.tokens"] == 100 and h.get("tokenizer.ggml.tokens") is None
    assert h.get("llama.attention.head_count_kv_per_layer") == [2, 2]
    assert h.n_params == 100 * 64 + 64 * 64 + 64
    assert h.tensor_bytes == 100 * 64 * 2 + 64 * 64 * 4 + 64 * 4
    assert h.kv_cache_bytes(256) == 256 * 2 * 2 * (16 + 16) * 2


_WORDS = st.sampled_from([0, 1, 8, 64, 2**31, 2**32 - 1, 2**63, 2**64 - 1])
_edit = st.one_of(
    st.tuples(st.just("u64"), st.integers(0, 2**20), _WORDS),  # a count or a length, made extreme
    st.tuples(st.just("u32"), st.integers(0, 2**20), st.sampled_from([0, 7, 8, 9, 13, 99, 2**32 - 1])),  # a type
    st.tuples(st.just("byte"), st.integers(0, 2**20), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2**20)),
    st.tuples(st.just("insert"), st.integers(0, 2**20), st.binary(min_size=1, max_size=16)),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None, print_blob=False,
          suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(_edit, min_size=1, max_size=3), window=st.sampled_from([8, 64, 1 << 20]))
def test_fuzzed_headers_give_a_header_or_a_one_line_error(small_model, tmp_path_factory, edits, window):
    """Damaged copies of a valid GGUF (counts, lengths and types pushed to extremes, bytes changed,
    cut or inserted), read through windows of several sizes: a header whose facts can be computed,
    or ModelNotGGUF / ModelCorrupt in one line, never another exception."""
    from ttftui.measure import gguf as reader

    data = bytearray(small_model.read_bytes())
    header_end = read_header(small_model).data_offset  # the edits land in the header
    for op, at, *arg in edits:
        at %= max(1, min(header_end, len(data)))
        if op in ("u64", "u32"):
            fmt = "<Q" if op == "u64" else "<I"
            data[at:at + struct.calcsize(fmt)] = struct.pack(fmt, arg[0])
        elif op == "byte":
            data[at:at + 1] = bytes(arg)
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = arg[0]
    p = tmp_path_factory.getbasetemp() / "fuzzed.gguf"
    p.write_bytes(bytes(data))
    saved, reader._WINDOW = reader._WINDOW, window
    try:
        h = read_header(p)
    except (ModelNotGGUF, ModelCorrupt) as e:
        event(re.sub(r"\d+|\(starts with.*", "N", str(e).removeprefix(str(p)))[:48])  # --hypothesis-show-statistics
        assert "\n" not in str(e) and str(e).startswith(str(p)), str(e)
        return
    finally:
        reader._WINDOW = saved
    event("read")
    h.quantization, h.n_params, h.tensor_bytes, h.architecture, h.arch_key("block_count")  # noqa: B018
    h.kv_cache_bytes(4096)
