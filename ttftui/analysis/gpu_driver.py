"""The GPU driver's own buffered samples (NVML ``nvmlDeviceGetSamples``) and what they say per phase.

The sampler polls every ``telemetry.interval_ms`` (100 ms by default); a prefill of 10–60 ms on a GPU
gets no poll at all. The NVIDIA driver keeps its own buffer of utilization, power and clock samples,
each stamped with the CPU's clock, at a period of its own (which depends on the GPU). The sampler
drains that buffer as each field falls due (``GpuDriverSamples`` events), and a phase's figure is computed
from it afterwards:

* each driver sample covers the driver's period that *ends* at its timestamp;
* a phase's figure is the mean of the samples it overlaps, each weighted by how much of its period
  lies inside the phase;
* its *span* is the time those samples cover. Where the span is much longer than the phase (a short
  prefill inside one long sample period), the figure describes the span, not the phase alone, and
  :func:`driver_note` says so.

Polling the ordinary "current utilization" faster does not help: it returns the driver's latest
period average, so a 10 ms poll repeats one value until the driver's next sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

# field of GpuDriverSamples -> the per-phase key stem in a run's telemetry
KEYS: dict[str, str] = {
    "gpu_busy_pct": "gpu_busy_driver_pct",
    "gpu_mem_busy_pct": "gpu_mem_busy_driver_pct",
    "gpu_power_w": "gpu_power_driver_w",
    "gpu_sm_clock_mhz": "gpu_sm_clock_driver_mhz",
}
HEADLINE = "gpu_busy_pct"  # the field whose span and coverage a phase reports
MIN_COVERAGE = 0.5  # below this share of a phase covered by samples, its figures are null


@dataclass(frozen=True)
class Series:
    """One field's driver samples, time ordered: sample i covers (t0[i], t1[i]] on the session clock."""

    t0: np.ndarray
    t1: np.ndarray
    v: np.ndarray
    period_ns: float  # the median gap between the driver's samples

    @property
    def period_ms(self) -> float:
        return self.period_ns / 1e6


def build_series(batches: Iterable[Any]) -> dict[str, Series]:
    """The driver's samples per field, from ``GpuDriverSamples`` events (any order; duplicates of one
    timestamp keep the first). A field with fewer than two samples has no known period: left out."""
    times: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    for b in batches:
        times.setdefault(b.field, []).extend(b.times_ns)
        values.setdefault(b.field, []).extend(b.values)
    out: dict[str, Series] = {}
    for f, ts in times.items():
        t = np.asarray(ts, dtype=np.int64)
        v = np.asarray(values[f], dtype=np.float64)
        t, first = np.unique(t, return_index=True)  # sorted, one sample per timestamp
        v = v[first]
        if len(t) < 2:
            continue
        gaps = np.diff(t).astype(np.float64)
        period = float(np.median(gaps))
        if period <= 0:
            continue
        # a gap much longer than the period is a hole (the buffer overflowed, the driver paused): the
        # sample after it covers one period, not the whole hole
        own = np.minimum(np.concatenate(([period], gaps)), 1.5 * period)
        out[f] = Series(t0=t - own, t1=t, v=v, period_ns=period)
    return out


def _phase(s: Series, a: int, b: int) -> tuple[float | None, float, float]:
    """(weighted mean, covered ns, span ns) of the samples overlapping [a, b]. Only the samples
    that can overlap are looked at: t1 is sorted and no sample covers more than 1.5 periods."""
    lo = int(np.searchsorted(s.t1, a, side="right"))
    hi = int(np.searchsorted(s.t1, b + 1.5 * s.period_ns, side="right"))
    t0, t1, v = s.t0[lo:hi], s.t1[lo:hi], s.v[lo:hi]
    w = np.clip(np.minimum(t1, b) - np.maximum(t0, a), 0, None).astype(np.float64)
    covered = float(w.sum())
    if covered <= 0:
        return None, 0.0, 0.0
    hit = w > 0
    span = float(t1[hit].max() - t0[hit].min())
    return float((w * v).sum() / covered), covered, span


def phase_figures(series: dict[str, Series], start_ns: int, first_token_ns: int | None,
                  end_ns: int) -> dict[str, float | None]:
    """Per phase (prefill = start to first token, decode = the rest): each driver field's figure, and
    for the headline field (GPU busy) the span its samples cover and the share of the phase covered."""
    if not series:
        return {}
    split = first_token_ns if first_token_ns is not None else end_ns
    out: dict[str, float | None] = {}
    for phase, a, b in (("prefill", start_ns, split), ("decode", split, end_ns)):
        if b <= a:
            continue
        for f, s in series.items():
            mean, covered, span = _phase(s, a, b)
            ok = covered >= MIN_COVERAGE * (b - a)
            out[f"{phase}_{KEYS[f]}"] = mean if ok else None
            if f == HEADLINE or (HEADLINE not in series and f == next(iter(series))):
                out[f"{phase}_gpu_driver_span_ms"] = span / 1e6 if ok else None
                out[f"{phase}_gpu_driver_coverage_pct"] = min(covered / (b - a), 1.0) * 100.0
    return out


def driver_note(phase: str, phase_ms: float, figures: dict[str, Any], series: dict[str, Series]) -> str | None:
    """A sentence on what a phase's driver figure means when the phase is shorter than the driver's
    samples (the figure then averages time outside the phase too), or why it is missing."""
    f = HEADLINE if HEADLINE in series else next(iter(series), None)
    if f is None:
        return None
    s = series[f]
    value = figures.get(f"{phase}_{KEYS[f]}")
    span = figures.get(f"{phase}_gpu_driver_span_ms")
    cover = figures.get(f"{phase}_gpu_driver_coverage_pct")
    if value is None:
        return (f"the driver's samples cover {cover or 0:.0f} % of the {phase} ({phase_ms:.1f} ms): not "
                "enough for a figure")
    if span is not None and phase_ms > 0 and span > 1.5 * phase_ms:
        return (f"the driver samples every {s.period_ms:.1f} ms: its {phase} figure averages {span:.1f} ms, "
                f"of which the {phase} ({phase_ms:.1f} ms) is {100.0 * phase_ms / span:.0f} %")
    return None


def periods(series: dict[str, Series]) -> dict[str, dict[str, float | int]]:
    """Per field: how many driver samples the session has, and the driver's period."""
    return {f: {"n_samples": int(len(s.t1)), "period_ms": round(s.period_ms, 3)} for f, s in series.items()}
