"""What the engine benchmarks share: the same settings on every side of a comparison.

llama-cpp-python's ``Llama`` only knows flash attention on/off (default off) while ttftui's "auto"
turns it on for CPU, so the setting is pinned on both; the context size, n_batch (= n_ubatch: one
chunk is one compute pass) and threads are the same too.
"""

from __future__ import annotations

from llama_cpp import Llama

from ttftui.core.config import Config

N_CTX = 4096


def engine_config(sizes: list[int], gen: int, n_batch: int, threads: int, flash_attn: str,
                  n_gpu_layers: int = 0) -> Config:
    """One scenario per prompt size (``p128``, ...), greedy, ``gen`` tokens each."""
    return Config.model_validate({
        "model": {"n_ctx": N_CTX, "n_batch": n_batch, "n_threads": threads, "flash_attn": flash_attn,
                  "n_gpu_layers": n_gpu_layers},
        "scenarios": [{"name": f"p{n}", "prompt_tokens": n, "max_tokens": gen} for n in sizes],
    })


def reference_llama(model: str, n_batch: int, threads: int, flash_attn: str, n_gpu_layers: int = 0) -> Llama:
    """llama-cpp-python's high-level object with the settings of ``engine_config``."""
    return Llama(model, n_ctx=N_CTX, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                 n_threads_batch=threads, flash_attn=flash_attn == "on", n_gpu_layers=n_gpu_layers, verbose=False)
