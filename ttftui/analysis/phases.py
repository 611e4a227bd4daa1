"""Where a run is: which phase comes after the last event it published.

One answer for two questions: what the dashboard says is running while a prefill computes (it only
sees phases end), and where the engine was when its process died (the last event it had sent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ttftui.core.events import DiffusionStep, PhaseTimed, TokenEmitted


@dataclass(frozen=True)
class Where:
    phase: str  # tokenize, cache_prep, prefill_chunk, first_sample, first_detok, decode, canvas, diffusion_step
    chunk: int | None = None  # 0-based prefill chunk (a diffusion run: 0-based step)
    n_chunks: int | None = None
    token_index: int | None = None  # 0-based output token being computed

    def words(self) -> str:
        if self.phase == "diffusion_step":
            of = f" of {self.n_chunks}" if self.n_chunks else ""
            return f"diffusion step {(self.chunk or 0) + 1}{of}"
        if self.phase == "prefill_chunk":
            of = f" of {self.n_chunks}" if self.n_chunks else ""
            return f"prefill chunk {(self.chunk or 0) + 1}{of}"
        if self.phase == "decode":
            return f"decode (output token {self.token_index})" if self.token_index is not None else "decode"
        return {
            "start": "engine start", "load": "model load", "prepare": "prompt preparation",
            "idle": "the pause between runs", "tokenize": "tokenize", "cache_prep": "KV-cache prep",
            "first_sample": "the first sample", "first_detok": "the first detokenize",
            "canvas": "the diffusion canvas set-up",
        }.get(self.phase, self.phase)


def where_next(last: Any, n_chunks: int | None, *, diffusion: bool = False) -> Where:
    """The phase after ``last`` (a run's newest PhaseTimed, TokenEmitted or DiffusionStep; None:
    nothing yet), for a run whose prompt takes ``n_chunks`` prefill chunks (None: not known), or of a
    diffusion model (tokenize, canvas, then its steps)."""
    if last is None:
        return Where("tokenize")
    if isinstance(last, DiffusionStep):  # a diffusion model: the next denoising step
        return Where("diffusion_step", chunk=last.step + 1, n_chunks=last.n_steps)
    if isinstance(last, TokenEmitted):
        return Where("decode", token_index=last.index + 1)
    if isinstance(last, PhaseTimed):
        if last.phase == "tokenize":
            return Where("canvas") if diffusion else Where("cache_prep")
        if last.phase == "canvas":
            return Where("diffusion_step", chunk=0)
        if last.phase == "cache_prep":
            return Where("prefill_chunk", chunk=0, n_chunks=n_chunks)
        if last.phase == "prefill_chunk":
            k = (last.chunk or 0) + 1
            if n_chunks is None or k < n_chunks:
                return Where("prefill_chunk", chunk=k, n_chunks=n_chunks)
            return Where("first_sample")
        if last.phase == "first_sample":
            return Where("first_detok")
        if last.phase == "first_detok":
            return Where("decode", token_index=0)
    return Where("decode")
