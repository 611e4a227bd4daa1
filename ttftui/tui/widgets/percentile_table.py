"""The percentile table: per scenario and metric, the configured percentiles, mean and n."""

from __future__ import annotations

from typing import Any, Sequence

from rich.text import Text
from textual.widgets import DataTable

from ttftui.analysis.metrics import ScenarioStats
from ttftui.analysis.stats import pct_key
from ttftui.core import registry
from ttftui.tui import render as R


def table_metrics() -> tuple[tuple[str, str, str], ...]:
    """(metric, label, unit) rows of the percentile table, from ttftui.core.registry; TTFT's components
    indented under it."""
    return tuple((m.name, (" " if m.component else "") + m.label, m.unit)
                 for m in registry.METRICS if m.table)


# Shorter words for the labels when some do not fit the metric column (a small screen: 13 characters
# at 80 columns). The first is used in every label then, so that the server's rows read alike
# (" srv wait", " srv prefill", "srv dec tok/s"); the others only in a label still too long. A
# column wide enough keeps the registry's words.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (("server ", "srv "), ("decode ", "dec "), ("cache hit %", "cache %"))


def fit_label(label: str, width: int, squeeze: bool | None = None) -> str:
    """``label`` for a metric column ``width`` wide. ``squeeze`` (default: this label does not fit):
    the column is too narrow for some label, so the first abbreviation applies; the others apply
    while this label still does not fit (the table cuts what is left over)."""
    if squeeze is None:
        squeeze = len(label) > width
    if not squeeze:
        return label
    for i, (long, short) in enumerate(ABBREVIATIONS):
        if i and len(label) <= width:
            break
        label = label.replace(long, short)
    return label


class PercentileTable(DataTable):
    """Per scenario and metric: the configured percentiles, mean and n. Cells are updated in place,
    so the cursor and scroll position survive every refresh (no flicker, no jump)."""

    NUM_W = 9
    TITLE = "Percentiles (ms unless noted; warm-up excluded)"

    def __init__(self, **kw: Any):
        super().__init__(zebra_stripes=True, cursor_type="row", **kw)
        self._cols: tuple[str, ...] = ()
        self._stats_key: Any = None
        self._cells: dict[str, list[str]] = {}
        self._widths: list[int] = []
        self.baseline: dict[str, dict[str, dict[str, float | None]]] | None = None

    METRIC_W = 13
    METRIC_W_MAX = 20

    def setup(self, percentiles: Sequence[float], scenario_names: Sequence[str] = (), with_baseline: bool = False,
              compact: bool = False, stats: dict[str, ScenarioStats] | None = None) -> None:
        """``stats``: the metric column is widened for the labels of the rows they have (a diffusion
        model's "steps to readable"), except on a small screen, where the numbers need the room."""
        cols = ("scenario", "metric", *(f"P{p:g}" for p in percentiles), "mean", "n")
        if with_baseline:
            cols = (*cols, "Δ P50 vs base")
        name_w = max([8, *(len(n) for n in scenario_names)])
        num_w = 7 if compact else self.NUM_W
        metric_w = self.METRIC_W
        if stats and not compact:
            shown = {m for st in stats.values() for m, summ in st.metrics.items() if summ.n}
            metric_w = min(max([metric_w, *(len(label) for m, label, _ in table_metrics() if m in shown)]),
                           self.METRIC_W_MAX)
        spec = (cols, name_w, num_w, metric_w)
        if spec == self._cols:
            return
        self.clear(columns=True)
        self._cells.clear()
        self._widths = []
        for c in cols:
            width = (name_w if c == "scenario" else metric_w if c == "metric" else 5 if c == "n"
                     else 13 if c.startswith("Δ") else num_w)
            self._widths.append(width)
            self.add_column(Text(c if c in ("scenario", "metric") else c.rjust(width)), key=c, width=width)
        self._cols = spec  # type: ignore[assignment]
        self._stats_key = None

    @property
    def columns_names(self) -> tuple[str, ...]:
        return self._cols[0] if self._cols else ()  # type: ignore[index]

    def show(self, stats: dict[str, ScenarioStats], percentiles: Sequence[float],
             extra_metrics: Sequence[tuple[str, str, str]] = ()) -> None:
        key = tuple((n, s.n_runs, s.n_failed) for n, s in stats.items())
        if key == self._stats_key:
            return
        self._stats_key = key
        names = self.columns_names
        rows = [(name, st, metric, label, unit) for name, st in stats.items()
                for metric, label, unit in (*table_metrics(), *extra_metrics)
                if (summ := st.metrics.get(metric)) is not None and (summ.n or f"{name}:{metric}" in self._cells)]
        # (a row not measured in this session is left out: the engine's phases against a server)
        metric_w = self._widths[1] if len(self._widths) > 1 else PercentileTable.METRIC_W
        squeeze = any(len(row[3]) > metric_w for row in rows)
        for name, st, metric, label, unit in rows:
            summ = st.metrics[metric]
            cells = [name, fit_label(label, metric_w, squeeze),
                     *(R.fmt_num(summ.percentiles.get(pct_key(p)), unit) for p in percentiles),
                     R.fmt_num(summ.mean, unit), str(summ.n)]
            if len(names) > len(cells):
                cells.append(self._delta(name, metric, summ.percentiles.get("p50")))
            rk = f"{name}:{metric}"
            old = self._cells.get(rk)
            widths = self._widths
            if old is None:
                self.add_row(*(_cell(c, i, widths[i]) for i, c in enumerate(cells)), key=rk)
            else:
                for i, (col, val) in enumerate(zip(names, cells)):
                    if old[i] != val:
                        self.update_cell(rk, col, _cell(val, i, widths[i]))
            self._cells[rk] = cells

    def _delta(self, scenario: str, metric: str, value: float | None) -> str:
        base = (self.baseline or {}).get(scenario, {}).get(metric, {}).get("p50")
        if base in (None, 0) or value is None:
            return "–"
        return f"{(value - base) / base * 100:+.1f}%"


def _cell(value: str, index: int, width: int) -> Text:
    """A table cell as Text: a scenario name from a recording (``[reverse]…``) is never markup."""
    return Text(value if index < 2 else value.rjust(width))
