"""Summary statistics, by NumPy (linear-interpolation percentiles, NumPy's default).

``sd`` is the sample standard deviation (ddof=1) and is ``None`` for fewer than two values: one run
says nothing about spread, and a report must not print 0.0 as if it did. Every summary carries
``n`` so that a P99 over five runs is visibly a P99 over five runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


def pct_key(p: float) -> str:
    """JSON key of a percentile: 50 -> "p50", 99.9 -> "p99_9"."""
    text = f"{p:g}".replace(".", "_")
    return f"p{text}"


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None
    percentiles: dict[str, float | None]

    def as_dict(self) -> dict[str, float | int | None]:
        d: dict[str, float | int | None] = {"n": self.n, "mean": self.mean, "sd": self.sd, "min": self.min,
                                            "max": self.max}
        d.update(self.percentiles)
        return d

    def get(self, statistic: str) -> float | None:
        """A statistic by name: mean, sd, min, max, n, or a percentile key such as p95."""
        if statistic == "n":
            return float(self.n)
        if statistic in ("mean", "sd", "min", "max"):
            return getattr(self, statistic)
        return self.percentiles.get(statistic)


def summarize(values: Iterable[float | None], percentiles: Sequence[float]) -> Summary:
    arr = np.fromiter((v for v in values if v is not None), dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return Summary(0, None, None, None, None, {pct_key(p): None for p in percentiles})
    qs = np.percentile(arr, list(percentiles)) if percentiles else []
    return Summary(
        n=n,
        mean=float(arr.mean()),
        sd=float(arr.std(ddof=1)) if n > 1 else None,
        min=float(arr.min()),
        max=float(arr.max()),
        percentiles={pct_key(p): float(q) for p, q in zip(percentiles, qs)},
    )
