"""Cold runs: the first run that meets a new shape, and is slow for it.

llama.cpp (and a GPU's kernels) do work the first time a shape is seen: buffers sized for a longer
prompt, a deeper KV cache, more prefill chunks, kernels loaded lazily. Such a run's TTFT says little
about the warm engine, yet it lands in the statistics when it is not a warm-up. A counted run is
flagged **cold** when both hold:

* it is the first run of the session (warm-ups included) with its prompt length and chunk count, or
  it reaches a KV depth (prompt + output tokens) deeper than any run before it, and
* its TTFT is more than ``COLD_FACTOR`` times the median TTFT of the scenario's other counted runs
  (at least ``MIN_OTHERS`` of them).

Flags are reported (``runs[].cold``, the summary's ``n_cold``, the dashboard), never used to drop
runs silently: ``run.warmup_policy = "largest_first"`` is the remedy (one warm-up over the session's
largest prompt before any counted run).
"""

from __future__ import annotations

import statistics
from typing import Iterable

from ttftui.analysis.metrics import RunMetrics

COLD_FACTOR = 1.5
MIN_OTHERS = 2


def cold_runs(runs: Iterable[RunMetrics]) -> dict[int, str]:
    """{run_id: why} for the counted runs that are cold (see the module's rule)."""
    ordered = sorted(runs, key=lambda m: m.run_id)
    seen_shapes: set[tuple[int, int]] = set()
    max_depth = 0
    first_of_shape: dict[int, str] = {}
    for m in ordered:
        shape = (m.n_prompt_tokens, len(m.prefill_chunks_ms))
        depth = m.n_prompt_tokens + m.n_output_tokens
        why = []
        if shape not in seen_shapes:
            why.append(f"the first run with {m.n_prompt_tokens}-token prompts")
        if depth > max_depth and max_depth > 0:
            why.append(f"the deepest KV cache so far ({depth} tokens)")
        if why and m.counted:
            first_of_shape[m.run_id] = " and ".join(why)
        seen_shapes.add(shape)
        max_depth = max(max_depth, depth)
    out: dict[int, str] = {}
    for m in ordered:
        if m.run_id not in first_of_shape:
            continue
        others = [o.ttft_ms for o in ordered if o.counted and o.scenario == m.scenario and o.run_id != m.run_id]
        if len(others) < MIN_OTHERS:
            continue
        med = statistics.median(others)
        if med > 0 and m.ttft_ms > COLD_FACTOR * med:
            out[m.run_id] = (f"{first_of_shape[m.run_id]}; TTFT {m.ttft_ms / med:.1f}x the scenario's median of the "
                             f"other runs")
    return out
