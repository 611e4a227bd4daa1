"""The GGUF header reader: facts from the real demo model, clear errors for damaged files."""

from __future__ import annotations

import struct

import pytest

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
