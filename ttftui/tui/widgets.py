"""Dashboard panels. Each one is fed the folded session state by the app (``show(...)``) and redraws
only when what it shows has changed; none of them measures anything or talks to the engine."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
from rich.text import Text
from textual.widgets import DataTable, Static

from ttftui.events import COMPONENTS
from ttftui.metrics import RunMetrics, ScenarioStats
from ttftui.reducer import RunState, SessionState
from ttftui.stats import pct_key
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile


class Panel(Static):
    """A Static with a border title; ``theme`` is set by the app before the first ``show``."""

    can_focus = True

    def __init__(self, title: str, **kw: Any):
        super().__init__(**kw)
        self.border_title = title
        self.theme_file: ThemeFile | None = None
        self._key: Any = None
        self._drawn_at = 0.0

    MIN_INTERVAL_S = 0.0  # panels that are costly to draw redraw at most this often

    def changed(self, key: Any) -> bool:
        """Redraw only when what the panel shows has changed, only while it is on screen, and no
        more often than MIN_INTERVAL_S (a deferred change is drawn on a later tick)."""
        if self.size.area == 0:  # hidden (panel toggled off or maximized away): draw when shown again
            self._key = None
            return False
        if key == self._key:
            return False
        now = time.monotonic()
        if self._key is not None and now - self._drawn_at < self.MIN_INTERVAL_S:
            return False
        self._key = key
        self._drawn_at = now
        return True

    def on_resize(self) -> None:
        self._key = None  # widths changed: the next show() redraws
        self.refresh_view()

    def refresh_view(self) -> None:  # overridden by panels that render width-dependent text
        pass


# ---------------------------------------------------------------------------------------------- status
class StatusBar(Static):
    """Two lines: what is measured (REAL / SYNTHETIC / REPLAY, model, device) and where we are."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.theme_file: ThemeFile | None = None
        self._last: Any = None

    def show(self, state: SessionState, *, mode: str, activity: str, now_ns: int, extra: str = "",
             total_runs: int | None = None) -> None:
        th = self.theme_file
        eng = state.engine
        critical = firing_alerts(state, "critical")
        key = (id(eng), mode, activity, now_ns // 1_000_000_000, extra, state.current and state.current.run_id,
               len(state.runs), th and th.name, total_runs, len(critical))
        if key == self._last:
            return
        self._last = key
        t = Text(no_wrap=True, overflow="ellipsis")
        if eng is None:
            t.append(" LOADING ", style="bold reverse")
            t.append("  starting the engine…")
        else:
            color = th.badges.synthetic if eng.synthetic else th.badges.real
            label = " SYNTHETIC " if eng.synthetic else " REAL "
            t.append(label, style=f"bold {R.text_on(color)} on {color}")
            if mode == "replay":
                t.append(" ")
                t.append(" REPLAY ", style=f"bold {R.text_on(th.badges.replay)} on {th.badges.replay}")
            if eng.synthetic:
                t.append(f" not measured: {eng.synthetic_reason}", style=f"bold {th.badges.synthetic}")
            m, d = eng.model, eng.device
            size = f" {R.fmt_bytes(m.file_size_bytes)}" if m.file_size_bytes else ""
            quant = f" {m.quantization}" if m.quantization and m.quantization not in (m.path or "") else ""
            name = m.path.rsplit("/", 1)[-1] if m.path else m.name
            t.append(f"  {name}{quant}{size}", style="bold")
            if d.kind == "gpu":
                dev = f"GPU {d.name} ({d.build}, {d.n_gpu_layers_offloaded} layers offloaded)"
            elif d.kind == "cpu":
                dev = f"CPU {d.name} ({d.n_threads} threads, build {d.build})"
            else:
                dev = d.name
            t.append(f"  •  {dev}")
        t.append("\n")
        if critical:
            t.append(f" ⚠ {len(critical)} CRITICAL ", style=f"bold blink {R.text_on(th.textual.error)} on {th.textual.error}")
        t.append(f" {activity}", style="bold")
        cur = state.current
        if cur is not None:
            t.append(f"  •  {cur.scenario} ")
            t.append(_run_position(state, cur))
        secs = max(now_ns, 0) // 1_000_000_000
        t.append(f"  •  {secs // 60:02d}:{secs % 60:02d}")
        if total_runs:
            t.append(f"  •  run {len(state.runs) + (1 if cur else 0)}/{total_runs}")
        if extra:
            t.append(f"  •  {extra}")
        self.update(t)


def firing_alerts(state: SessionState, severity: str | None = None) -> list[Any]:
    """Alerts whose latest transition is "firing" (optionally of one severity)."""
    latest: dict[tuple[str, str | None], Any] = {}
    for a in state.alerts:
        latest[(a.rule, a.scenario)] = a
    return [a for a in latest.values() if a.state == "firing" and (severity is None or a.severity == severity)]


def _run_position(state: SessionState, cur: RunState) -> str:
    cfg = state.session.config.get("run", {}) if state.session else {}
    warm = int(cfg.get("warmup", 0))
    iters = int(cfg.get("iterations", 0))
    it = cur.started.iteration
    if cur.warmup:
        return f"warm-up {it + 1}/{warm}"
    n = it - warm + 1
    return f"run {n}/{iters}" if 0 < n <= iters else f"extra run {it + 1}"


# ---------------------------------------------------------------------------------------------- TTFT bar
class TTFTBar(Panel):
    """Stacked bar of TTFT components: the current (or last) run as its phases complete, then the
    median of each scenario, with ms, % and the dominant component."""

    def __init__(self, **kw: Any):
        super().__init__("TTFT breakdown", **kw)
        self._args: tuple[Any, ...] | None = None

    def show(self, state: SessionState, stats: dict[str, ScenarioStats], now_ns: int) -> None:
        cur = state.current
        live = cur is not None and not any(t for t in cur.tokens)
        key = (cur and cur.run_id, cur and len(cur.phases), cur and bool(cur.tokens), len(state.runs),
               now_ns // 50_000_000 if live else 0, self.theme_file and self.theme_file.name)
        self._args = (state, stats, now_ns)
        if self.changed(key):
            self.refresh_view()

    def refresh_view(self) -> None:
        if self._args is None or self.theme_file is None:
            return
        state, stats, now_ns = self._args
        th = self.theme_file
        width = max(self.content_size.width, 20)
        out = Text()
        title, parts, chunks, total, note = _current_parts(state, now_ns)
        if parts is None:
            out.append("waiting for the first run…", style="dim")
        else:
            label = f"{title}  TTFT {R.fmt_ms(total)}{note}"
            out.append(label + "\n", style="bold")
            out.append_text(R.stacked_bar(R.component_segments(th, parts, chunks), width, th.components.pending))
            out.append("\n")
            denom = sum(v for v in parts.values()) or 1.0
            items = [(R.COMPONENT_LABELS[k] + (f"×{len(chunks)}" if k == "prefill" and len(chunks) > 1 else ""),
                      getattr(th.components, k), v, v / denom * 100) for k, v in parts.items()]
            out.append_text(R.legend(items, width))
        if stats:
            name_w = max(len(n) for n in stats) + 1
            for name, st in stats.items():
                med = st.component_medians_ms
                if not med:
                    continue
                tot = sum(med.values())
                lab = f"{name:<{name_w}}median{R.fmt_ms(tot):>9} "
                dom = f" {R.COMPONENT_LABELS.get(st.dominant_component or '', '?')} {st.dominant_share_pct or 0:.0f}%"
                bar_w = max(width - len(lab) - len(dom), 4)
                out.append("\n" + lab)
                out.append_text(R.stacked_bar(R.component_segments(th, med), bar_w, th.components.pending))
                out.append(dom, style=getattr(th.components, st.dominant_component or "pending", "white"))
        self.update(out)


def _current_parts(state: SessionState, now_ns: int):
    """(title, components so far, prefill chunks, total ms, note) of the run to draw."""
    cur = state.current
    if cur is not None and cur.phases:
        parts: dict[str, float] = {}
        chunks = [p.duration_ns / 1e6 for p in cur.phases if p.phase == "prefill_chunk"]
        for p in cur.phases:
            k = "prefill" if p.phase == "prefill_chunk" else p.phase
            parts[k] = parts.get(k, 0.0) + p.duration_ns / 1e6
        done = bool(cur.tokens)
        elapsed = (cur.tokens[0].dt_ns / 1e6) if done else max((now_ns - cur.started.t_ns) / 1e6, 0.0)
        accounted = sum(parts.values())
        if done:
            parts["unaccounted"] = max(elapsed - accounted, 0.0)
            note = ""
        else:
            parts["pending"] = max(elapsed - accounted, 0.0)
            note = f"  (so far; {_next_phase(cur)} running)"
        title = f"run {cur.run_id} • {cur.scenario}" + (" (warm-up)" if cur.warmup else "")
        return title, parts, chunks, elapsed, note
    last = next((r for r in reversed(state.runs) if r.metrics is not None), None)
    if last is None:
        if cur is not None:
            ms = max((now_ns - cur.started.t_ns) / 1e6, 0.0)
            return f"run {cur.run_id} • {cur.scenario}", {"pending": ms}, [], ms, "  (starting)"
        return "", None, [], 0.0, ""
    m = last.metrics
    parts = {k: getattr(m, f"{k}_ms") for k in (*COMPONENTS, "unaccounted")}
    title = f"last run {m.run_id} • {m.scenario}" + (" (warm-up)" if m.warmup else "")
    return title, parts, list(m.prefill_chunks_ms), m.ttft_ms, ""


def _next_phase(cur: RunState) -> str:
    if not cur.phases:
        return "tokenize"
    last = cur.phases[-1].phase
    n_chunks = sum(1 for p in cur.phases if p.phase == "prefill_chunk")
    expected = -(-cur.started.prompt_tokens // max(1, _chunk_size(cur))) if _chunk_size(cur) else None
    if last in ("cache_prep", "prefill_chunk") and (expected is None or n_chunks < expected):
        return f"prefill chunk {n_chunks + 1}" + (f"/{expected}" if expected else "")
    return {"tokenize": "cache prep", "prefill_chunk": "first sample", "first_sample": "first detok"}.get(last, "decode")


def _chunk_size(cur: RunState) -> int | None:
    first = next((p for p in cur.phases if p.phase == "prefill_chunk"), None)
    return first.n_tokens if first is not None else None


# ---------------------------------------------------------------------------------------------- tokens
class TokenStream(Panel):
    """The current run's text as it is generated, each token coloured by its inter-token latency.

    Only the tail that fits the panel is drawn, at most 5 times a second: re-wrapping a long answer
    every frame would make the dashboard cost more than the thing it measures (every token is in
    the record)."""

    HEADER_LINES = 3
    MIN_INTERVAL_S = 0.2

    def __init__(self, **kw: Any):
        super().__init__("Token stream", **kw)
        self._run: RunState | None = None

    def show(self, state: SessionState) -> None:
        run = state.current
        if run is None or not run.tokens:
            run = next((r for r in reversed(state.runs) if r.tokens), None)
        key = (run and run.run_id, run and len(run.tokens), self.theme_file and self.theme_file.name)
        self._run = run
        if self.changed(key):
            self.refresh_view()

    def _tail(self, toks: list[Any], width: int, lines: int) -> int:
        """Index of the first token of the tail that fills ``lines`` lines of ``width`` cells."""
        budget = width * lines
        used = 0
        i = len(toks)
        while i > 0 and used < budget:
            i -= 1
            text = toks[i].text
            used += len(text) + text.count("\n") * width
        return i

    def refresh_view(self) -> None:
        th = self.theme_file
        run = self._run
        if th is None:
            return
        if run is None:
            self.update(Text("no tokens yet", style="dim"))
            return
        all_toks = run.tokens.to_list()
        itl = [t.dt_ns / 1e6 for t in all_toks[1:]]
        median = float(np.median(itl)) if itl else None
        n = len(all_toks)
        width = max(self.content_size.width, 20)
        lines = max(self.content_size.height - self.HEADER_LINES, 1)
        start = self._tail(all_toks, width, lines)
        toks = all_toks[start:]
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"run {run.run_id} {run.scenario} · {n} tok", style="bold")
        if itl:
            span_s = (all_toks[-1].t_ns - all_toks[0].t_ns) / 1e9
            rate = (n - 1) / span_s if span_s > 0 else 0.0
            head.append(f" · {rate:.1f} tok/s · p50 {R.fmt_ms(median)}")
        spark = R.sparkline(itl, width - 5)
        gaps = [t.dt_ns / 1e6 for t in toks]
        body = R.token_text(th, [t.text for t in toks], gaps, median, first_index=start)
        out = Text(no_wrap=False, overflow="fold")
        out.append_text(head)
        out.append("\nITL ")
        out.append(spark, style=th.itl.slow)
        out.append("\n")
        out.append_text(R.itl_legend(th))
        out.append("\n")
        if start > 0:
            out.append("…", style="dim")
        out.append_text(body)
        self.update(out)


# ---------------------------------------------------------------------------------------------- tables
TABLE_METRICS: tuple[tuple[str, str, str], ...] = (
    ("ttft_ms", "TTFT", "ms"),
    ("tokenize_ms", " tokenize", "ms"),
    ("cache_prep_ms", " cache prep", "ms"),
    ("prefill_ms", " prefill", "ms"),
    ("first_sample_ms", " first sample", "ms"),
    ("first_detok_ms", " first detok", "ms"),
    ("unaccounted_ms", " unaccounted", "ms"),
    ("prefill_tps", "prefill tok/s", "tps"),
    ("itl_ms", "ITL", "ms"),
    ("tpot_ms", "TPOT", "ms"),
    ("decode_tps", "decode tok/s", "tps"),
    ("e2e_ms", "E2E", "ms"),
)


class PercentileTable(DataTable):
    """Per scenario and metric: the configured percentiles, mean and n. Cells are updated in place,
    so the cursor and scroll position survive every refresh (no flicker, no jump)."""

    NUM_W = 9

    def __init__(self, **kw: Any):
        super().__init__(zebra_stripes=True, cursor_type="row", **kw)
        self.border_title = "Percentiles (ms unless noted; warm-up excluded)"
        self._cols: tuple[str, ...] = ()
        self._stats_key: Any = None
        self._cells: dict[str, list[str]] = {}
        self._widths: list[int] = []
        self.baseline: dict[str, dict[str, dict[str, float | None]]] | None = None

    def setup(self, percentiles: Sequence[float], scenario_names: Sequence[str] = (), with_baseline: bool = False,
              compact: bool = False) -> None:
        cols = ("scenario", "metric", *(f"P{p:g}" for p in percentiles), "mean", "n")
        if with_baseline:
            cols = (*cols, "Δ P50 vs base")
        name_w = max([8, *(len(n) for n in scenario_names)])
        num_w = 7 if compact else self.NUM_W
        spec = (cols, name_w, num_w)
        if spec == self._cols:
            return
        self.clear(columns=True)
        self._cells.clear()
        self._widths = []
        for c in cols:
            width = (name_w if c == "scenario" else 13 if c == "metric" else 5 if c == "n"
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
        for name, st in stats.items():
            for metric, label, unit in (*TABLE_METRICS, *extra_metrics):
                summ = st.metrics.get(metric)
                if summ is None:
                    continue
                cells = [name, label, *(R.fmt_num(summ.percentiles.get(pct_key(p)), unit) for p in percentiles),
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


def _cell(value: str, index: int, width: int) -> str:
    return value if index < 2 else value.rjust(width)


class AlertsPanel(Panel):
    def __init__(self, **kw: Any):
        super().__init__("Alerts", **kw)

    def show(self, state: SessionState, n_rules: int) -> None:
        th = self.theme_file
        key = (len(state.alerts), n_rules, th and th.name)
        if not self.changed(key) or th is None:
            return
        if not state.alerts:
            msg = ("no rules — add [[alerts]] to config.toml" if n_rules == 0
                   else f"all clear: {n_rules} rule{'s' if n_rules != 1 else ''} checked after every run")
            self.update(Text(msg, style="dim"))
            return
        latest: dict[tuple[str, str | None], Any] = {}
        for a in state.alerts:
            latest[(a.rule, a.scenario)] = a
        out = Text()
        firing = [a for a in latest.values() if a.state == "firing"]
        cleared = [a for a in latest.values() if a.state == "cleared"]
        for a in sorted(firing, key=lambda a: a.severity != "critical"):
            color = th.textual.error if a.severity == "critical" else th.textual.warning
            out.append(f" {a.severity.upper()} ", style=f"bold {R.text_on(color)} on {color}")
            out.append(f" {a.message}\n")
        for a in cleared:
            out.append(" cleared ", style=f"bold {R.text_on(th.textual.success)} on {th.textual.success}")
            out.append(f" {a.message}\n", style="dim")
        out.rstrip()
        self.update(out)


class TelemetryPanel(Panel):
    MIN_INTERVAL_S = 0.5

    def __init__(self, **kw: Any):
        super().__init__("Telemetry", **kw)
        self._args: Any = None

    def show(self, state: SessionState) -> None:
        st = state.telemetry_status
        key = (id(st), len(state.telemetry) // 2, self.theme_file and self.theme_file.name)
        self._args = state
        if self.changed(key):
            self.refresh_view()

    def refresh_view(self) -> None:
        from ttftui.tui.telemetry_view import telemetry_text

        if self._args is None or self.theme_file is None:
            return
        self.update(telemetry_text(self._args, self.theme_file, max(self.content_size.width, 20)))


def counted_metrics(runs: Sequence[RunMetrics]) -> int:
    return sum(1 for r in runs if r.counted)
