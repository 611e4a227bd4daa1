"""Telemetry panel text: GPU util/memory, process CPU and RSS sparklines over the recent window, with
the run phases marked underneath (p = prefill, d = decode), or "N/A — reason" per field."""

from __future__ import annotations

from rich.text import Text

from ttftui.analysis import gpu_driver
from ttftui.analysis.metrics import RunMetrics, telemetry_gaps
from ttftui.analysis.reducer import SessionState
from ttftui.analysis.view import SessionView
from ttftui.core import registry
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile

# the panel's sparklines, GPU rows first: (field, label, unit)
FIELDS = tuple((f.name, f.label, f.unit) for f in registry.SAMPLE_FIELDS if f.panel)
GPU_ROWS = registry.sample_fields(panel=True, side="gpu")


def _phase_marks(state: SessionState, times: list[int]) -> str:
    """For each sample time: 'p' inside a prefill, 'd' inside decode, ' ' between runs."""
    spans: list[tuple[int, int, int, str]] = []
    runs = list(state.runs[-8:])
    if state.current is not None:
        runs.append(state.current)
    for r in runs:
        start = r.started.t_ns
        first = r.tokens[0].t_ns if r.tokens else None
        end = r.finished.t_ns if r.finished else (r.tokens[-1].t_ns if r.tokens else None)
        spans.append((start, first if first is not None else 1 << 62, end if end is not None else 1 << 62, r.scenario))
    out = []
    for t in times:
        mark = " "
        for start, first, end, _ in spans:
            if start <= t < first:
                mark = "p"
            elif first <= t <= end:
                mark = "d"
        out.append(mark)
    return "".join(out)


def telemetry_text(state: SessionState, view: SessionView, theme: ThemeFile, width: int) -> Text:
    st = state.telemetry_status
    out = Text()
    if st is None:
        out.append("N/A — no telemetry in this session", style="dim")
        return out
    na = st.unavailable
    all_reasons = {na.get(f) for f, _, _ in FIELDS}
    if len(all_reasons) == 1 and None not in all_reasons:  # nothing can be sampled, for one reason
        out.append(f"N/A — {all_reasons.pop()}", style="dim")
        return out
    gpu = f"GPU {st.gpu_name}" if st.gpu_name else "GPU N/A"
    out.append(f"{gpu} · {st.backend} · every {st.interval_ms:g} ms", style="bold")
    out.append("  (p prefill, d decode)\n", style="dim")
    samples = [s for s in state.telemetry[-max(width, 8):] if s.mark is None] if len(state.telemetry) else []
    spark_w = max(width - 21, 8)
    gpu_reasons = {na.get(f) for f, _, _ in FIELDS if f in GPU_ROWS}
    rows = list(FIELDS)
    if len(gpu_reasons) == 1 and None not in gpu_reasons:  # the whole GPU side is out, for one reason
        out.append(f"GPU N/A — {gpu_reasons.pop()}\n", style="dim")
        rows = [r for r in rows if r[0] not in GPU_ROWS]
    for key, label, unit in rows:
        out.append(f"{label:<9}")
        if key in na:
            out.append(f"N/A — {na[key]}\n", style="dim")
            continue
        vals = [v for s in samples if (v := getattr(s, key)) is not None]
        if not vals:
            out.append("no samples yet\n", style="dim")
            continue
        out.append(R.sparkline(vals, spark_w), style=theme.textual.accent)
        out.append(f" {R.fmt_num(vals[-1], unit):>10}\n")
    if samples:
        out.append(" " * 9)
        out.append(_phase_marks(state, [s.t_ns for s in samples])[-spark_w:], style="dim")
    last = state.runs.last()
    if last is not None and last.metrics is not None and st.backend != "none":
        m = last.metrics
        gaps = telemetry_gaps(m, st.interval_ms)
        # the driver's samples from the last run on
        series = view.driver_series(last.started.worker, last.started.t_ns, log=state.gpu_driver)
        if gaps and not series:  # a phase no sample landed in: say why its figures are N/A
            dur = {"prefill": m.ttft_ms, "decode": m.e2e_ms - m.ttft_ms}
            out.append(f"\nrun {last.run_id}: " + "; ".join(
                f"{p} {dur[p]:.0f} ms" + (f" < {st.interval_ms:g} ms interval: not sampled" if dur[p] < st.interval_ms
                                           else ": not sampled (sampler late)")
                for p in gaps), style="dim")
        if series:
            out.append("\n" + driver_line(last.run_id, m, series), style="dim")
    out.rstrip()
    return out


def driver_line(run_id: int, m: RunMetrics, series: dict[str, gpu_driver.Series]) -> str:
    """The last run's phases as the GPU driver's own samples give them (they are finer than the
    sampler's polls on some GPUs), with what a figure averages when the phase is the shorter."""
    f = gpu_driver.phase_figures(series, m.t_start_ns, m.t_start_ns + int(m.ttft_ms * 1e6), m.t_end_ns)
    head = gpu_driver.HEADLINE if gpu_driver.HEADLINE in series else next(iter(series))
    parts = []
    for phase, dur in (("prefill", m.ttft_ms), ("decode", m.e2e_ms - m.ttft_ms)):
        busy = f.get(f"{phase}_gpu_busy_driver_pct")
        power = f.get(f"{phase}_gpu_power_driver_w")
        if busy is None and power is None:
            if f"{phase}_gpu_driver_coverage_pct" in f:
                parts.append(f"{phase} {dur:.0f} ms: not covered yet")
            continue
        text = f"{phase} {dur:.0f} ms:" + (f" busy {busy:.0f} %" if busy is not None else "") + (
            f" {power:.0f} W" if power is not None else "")
        span = f.get(f"{phase}_gpu_driver_span_ms")
        if span is not None and dur > 0 and span > 1.5 * dur:
            text += f" (over {span:.0f} ms)"
        parts.append(text)
    return f"run {run_id} driver samples every {series[head].period_ms:.1f} ms · " + "; ".join(parts)
