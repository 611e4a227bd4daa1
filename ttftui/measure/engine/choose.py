"""Which llama.cpp engine runs a model: the diffusion engine for a diffusion architecture (Dream,
LLaDA, RND1, ...: the GGUF header says so), the autoregressive one otherwise."""

from __future__ import annotations

import os
from pathlib import Path

from ttftui.core.config import Config
from ttftui.core.errors import ModelLoadFailed
from ttftui.measure.engine.base import Engine
from ttftui.measure.engine.diffusion_plan import DIFFUSION_ARCHITECTURES
from ttftui.measure.gguf import read_header



def is_diffusion(path: str | os.PathLike[str]) -> bool:
    return (read_header(Path(path)).architecture or "") in DIFFUSION_ARCHITECTURES


def check_kind(config: Config, path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` runs on the diffusion engine; engine.kind = diffusion with another model is an
    error (one line)."""
    diffusion = is_diffusion(path)
    if config.engine.kind == "diffusion" and not diffusion:
        arch = read_header(Path(path)).architecture
        raise ModelLoadFailed(f"engine.kind = diffusion, but {Path(path).name} is a {arch or 'unknown'} model; "
                              f"diffusion architectures: {', '.join(DIFFUSION_ARCHITECTURES)}")
    return diffusion


def llama_engine(config: Config, path: str | os.PathLike[str]) -> Engine:
    """The engine for ``path`` (imports llama_cpp: in an engine host, or with engine.host = thread)."""
    if check_kind(config, path):
        from ttftui.measure.engine.diffusion import DiffusionEngine  # llama_cpp: only where an engine runs

        return DiffusionEngine(config, path)
    from ttftui.measure.engine.llama import LlamaEngine  # llama_cpp: only where an engine runs

    return LlamaEngine(config, path)
