"""The report as CSV: one row per run, columns from the metric registry."""

from __future__ import annotations

import csv
import io
from typing import Any

import numpy as np

from ttftui.core import registry
from ttftui.core.sane import utf8_text
from ttftui.report.schema import Report, run_value

_CSV_ID = ("scenario", "run_id", "iteration", "warmup", "counted", "stop_reason", "n_prompt_tokens",
           "n_output_tokens")
_CSV_TAIL = ("itl_p50_ms", "itl_max_ms", "prefill_chunks_ms", "llama_t_p_eval_ms", "synthetic", "device")


def csv_columns() -> tuple[str, ...]:
    """One row per run: who it was, then every per-run metric of ttftui.core.registry with csv=True (in
    the registry's order), then ITL's median and max, the prefill chunks, llama.cpp's prefill time."""
    return (*_CSV_ID, *registry.names(csv=True), *_CSV_TAIL)


def report_csv(report: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns())
    dev = report.device.name if report.device else ""
    for r in report.runs:
        itl = np.asarray(r.itl_ms) if r.itl_ms else None
        w.writerow([
            r.scenario, r.run_id, r.iteration, int(r.warmup), int(r.counted), r.stop_reason, r.n_prompt_tokens,
            r.n_output_tokens,
            *(_na(run_value(r, name)) for name in registry.names(csv=True)),
            _na(float(np.percentile(itl, 50)) if itl is not None else None),
            _na(float(itl.max()) if itl is not None else None),
            ";".join(f"{c:.6f}" for c in r.prefill_chunks_ms),
            _na(r.llama.t_p_eval_ms if r.llama else None),
            int(report.synthetic), dev,
        ])
    return utf8_text(buf.getvalue())  # text UTF-8 cannot hold (a lone surrogate) becomes U+FFFD


def _na(v: float | None) -> Any:
    return "" if v is None else v
