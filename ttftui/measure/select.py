"""Engines: llama.cpp (real) and synthetic (cost model). ``select_engine`` picks one.

The synthetic engine is chosen only when asked for, or when nothing real *can* run (no model
available, llama-cpp-python not importable); a model the user named that fails to load is an
error, never a silent switch to made-up numbers.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

from ttftui.core.config import Config
from ttftui.core.errors import ModelLoadFailed, ModelNotFound
from ttftui.core.events import ModelFacts
from ttftui.measure.demo_model import INSTALL_HINT, demo_model_path
from ttftui.measure.engine.base import Engine
from ttftui.measure.engine.choose import check_kind, llama_engine
from ttftui.measure.engine.synthetic import SyntheticEngine
from ttftui.measure.engine_process.proxy import EngineUnavailable, HostedEngine
from ttftui.measure.gguf import read_header
from ttftui.measure.remote.engine import RemoteEngine


def resolve_model_path(config: Config) -> Path | None:
    if config.model.path:
        return Path(config.model.path)
    return demo_model_path()


def llama_import_error() -> str | None:
    """None when llama_cpp imports; otherwise why not (one line)."""
    try:
        from ttftui.measure.engine import llama  # llama_cpp: only for engine.host = thread
    except Exception as e:  # pragma: no cover - depends on the installed build
        return f"{type(e).__name__}: {e}"
    return llama.IMPORT_ERROR


def header_facts(path: Path, n_ctx: int) -> ModelFacts:
    """What the GGUF header says (true facts about the file, even when timings are synthetic)."""
    h = read_header(path)
    return ModelFacts(
        path=str(path), name=h.get("general.name") or path.stem, file_size_bytes=h.file_size,
        architecture=h.architecture, quantization=h.quantization, n_params=h.n_params,
        n_layers=h.arch_key("block_count"), n_heads=h.arch_key("attention.head_count"),
        n_kv_heads=h.arch_key("attention.head_count_kv"), n_embd=h.arch_key("embedding_length"),
        context_length=h.arch_key("context_length"), vocab_size=h.array_lengths.get("tokenizer.ggml.tokens"),
        kv_cache_bytes=h.kv_cache_bytes(n_ctx), n_ctx=n_ctx, weights_bytes=h.tensor_bytes,
        description="GGUF header facts; timings are SYNTHETIC (cost model), not measured on this model",
    )


def llama_importable() -> bool:
    """Whether llama-cpp-python is installed, found without importing it: in the engine host's parent
    llama.cpp must not be loaded (numpy is already there; a CUDA build then crashes at model load)."""

    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False


def select_engine(config: Config, *, force_synthetic: bool = False, pace: bool = False) -> Callable[[], Engine]:
    """Decide which engine to build (checking the model file now, so bad input fails early) and
    return a factory that builds it in the worker thread.

    llama.cpp runs in a process of its own (``engine.host = auto | process``; see :mod:`ttftui.measure.engine_process`)
    unless ``engine.host = thread``. The synthetic engine runs in a thread unless ``engine.host =
    process`` and it is paced (an unpaced one lives on a virtual clock: there is nothing to isolate)."""

    if config.server.url and not force_synthetic:  # a server over HTTP: no local model, no local engine
        RemoteEngine(config).close()  # its options (URL, key) are checked now, as a model file is; nothing is sent
        return lambda: RemoteEngine(config)
    kind = "synthetic" if force_synthetic else config.engine.kind
    host = config.engine.host
    if kind == "synthetic":
        reason = "requested with --synthetic" if force_synthetic else "requested by engine.kind = synthetic"
        facts = header_facts(Path(config.model.path), config.model.n_ctx) if config.model.path else None
        if host == "process" and pace:
            return lambda: _hosted_synthetic(config, reason, facts)
        return lambda: SyntheticEngine(config, reason, pace=pace, model=facts)
    path = resolve_model_path(config)
    if path is None:
        if kind in ("llama", "diffusion"):
            raise ModelNotFound(f"no model: model.path is empty and the demo model is not installed ({INSTALL_HINT})")
        reason = f"no model available (model.path is empty and the demo model is not installed: {INSTALL_HINT})"
        return lambda: SyntheticEngine(config, reason, pace=pace)
    read_header(path)  # missing / not GGUF / truncated: a one-line error with its own exit code
    may_fall_back = kind == "auto" and not config.model.path
    if host == "thread":
        err = llama_import_error()
    else:
        err = None if llama_importable() else "ModuleNotFoundError: No module named 'llama_cpp'"
    if err is not None:
        if not may_fall_back:
            raise ModelLoadFailed(f"llama-cpp-python is not usable ({err}); install it or use --synthetic")
        reason = f"llama-cpp-python is not usable ({err})"
        return lambda: SyntheticEngine(config, reason, pace=pace)
    check_kind(config, path)  # engine.kind = diffusion with another model: an error now, not at load
    if host == "thread":
        return lambda: llama_engine(config, path)

    def hosted() -> Engine:
        try:
            return HostedEngine(config, "llama", model_path=path)
        except EngineUnavailable as e:  # installed but broken: found only when the host imports it
            if not may_fall_back:
                raise ModelLoadFailed(f"{e}; install it or use --synthetic") from None
            return SyntheticEngine(config, str(e), pace=pace)

    return hosted


def _hosted_synthetic(config: Config, reason: str, facts: ModelFacts | None) -> Engine:
    return HostedEngine(config, "synthetic", synthetic_reason=reason, model_facts=facts)
