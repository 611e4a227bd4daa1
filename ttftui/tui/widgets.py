"""Dashboard panels. Each one is fed the folded session state by the app (``show(...)``) and redraws
only when what it shows has changed; none of them measures anything or talks to the engine."""

from __future__ import annotations

from bisect import insort
from typing import Any, Sequence

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable, Static

from ttftui import registry
from ttftui.metrics import RunMetrics, ScenarioStats
from ttftui.phases import where_next
from ttftui.reducer import RunState, SessionState
from ttftui.stats import pct_key
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile
from ttftui.tui.token_layout import TokenLayout


class Panel(Static):
    """A Static with a border title; ``theme`` is set by the app before the first ``show``.

    ``show(*args)`` keeps its inputs and draws (``draw(*args)``) only when ``view_key(*args)`` has
    changed and the panel is on screen. A panel that was hidden or not laid out yet when its inputs
    arrived draws them as soon as it gets a size (``on_resize``), not at the app's next frame, which
    may be a second away while a prefill runs."""

    can_focus = True

    def __init__(self, title: str, **kw: Any):
        super().__init__(**kw)
        self.border_title = title
        self.theme_file: ThemeFile | None = None
        self._key: Any = None
        self._args: tuple[Any, ...] | None = None
        self._lines = -1

    def view_key(self, *args: Any) -> Any:
        """What the panel shows, as a comparable value: equal keys mean nothing to redraw."""
        raise NotImplementedError

    def draw(self, *args: Any) -> None:
        raise NotImplementedError

    def show(self, *args: Any) -> None:
        self._args = args
        if self.changed(self.view_key(*args)):
            self.refresh_view()

    def changed(self, key: Any) -> bool:
        """Redraw only when what the panel shows has changed, and only while it is on screen."""
        if self.size.area == 0:  # hidden (panel toggled off or maximized away): draw when shown again
            self._key = None
            return False
        if key == self._key:
            return False
        self._key = key
        return True

    def on_resize(self) -> None:
        if self._args is not None and self.size.area:
            self._key = self.view_key(*self._args)
        self.refresh_view()  # new size (or first size): draw what we were last given

    def refresh_view(self) -> None:
        if self._args is None or self.theme_file is None or self.size.area == 0:
            return
        self.draw(*self._args)

    def update_sized(self, content: Text) -> None:
        """Update a height:auto panel; re-layout the screen only when its line count changes (a full
        re-layout repaints every widget, which is most of what a redraw costs)."""
        n = content.plain.count("\n")
        self.update(content, layout=n != self._lines)
        self._lines = n


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
            name = m.path.rsplit("/", 1)[-1] if m.path and d.kind != "remote" else m.name
            t.append(f"  {name}{quant}{size}", style="bold")
            if d.kind == "gpu":
                dev = f"GPU {d.name} ({d.build}, {d.n_gpu_layers_offloaded} layers offloaded)"
            elif d.kind == "cpu":
                dev = f"CPU {d.name} ({d.n_threads} threads, build {d.build})"
            elif d.kind == "remote":
                dev = f"SERVER {d.name} (client clock; server's own account where it gives one)"
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
        self.update(t, layout=False)  # fixed height: no re-layout of the whole screen


def firing_alerts(state: SessionState, severity: str | None = None) -> list[Any]:
    """Alerts whose latest transition is "firing" (optionally of one severity)."""
    latest: dict[tuple[str, str | None], Any] = {}
    for a in state.alerts:
        latest[(a.rule, a.scenario)] = a
    return [a for a in latest.values() if a.state == "firing" and (severity is None or a.severity == severity)]


def _run_position(state: SessionState, cur: RunState) -> str:
    run = state.config.run if state.config is not None else None
    warm = run.warmup if run else 0
    iters = run.iterations if run else 0
    # counted from the runs themselves: a session-wide warm-up (run.warmup_policy) shifts iterations
    same = [r for r in state.runs if r.scenario == cur.scenario]
    if cur.warmup:
        k = sum(r.warmup for r in same) + 1
        return f"warm-up {k}/{warm}" if k <= warm else "extra warm-up"
    n = sum(not r.warmup for r in same) + 1
    return f"run {n}/{iters}" if n <= iters else f"extra run {n}"


# ---------------------------------------------------------------------------------------------- TTFT bar
class TTFTBar(Panel):
    """Stacked bar of TTFT components: the current (or last) run as its phases complete, then the
    median of each scenario, with ms, % and the dominant component."""

    def __init__(self, **kw: Any):
        super().__init__("TTFT breakdown", **kw)
        self._max_lines = 0

    def on_resize(self) -> None:
        self._max_lines = 0  # a new width wraps the legend differently
        super().on_resize()

    def view_key(self, state: SessionState, stats: dict[str, ScenarioStats], now_ns: int) -> Any:
        cur = state.current
        live = cur is not None and not cur.tokens
        # While a phase runs only its elapsed time changes (the app draws about once a second then).
        return (cur and cur.run_id, cur and len(cur.phases), cur and bool(cur.tokens), len(state.runs),
                now_ns // 1_000_000_000 if live else 0, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, stats: dict[str, ScenarioStats], now_ns: int) -> None:
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
            items = [(R.component_label(k) + (f"×{len(chunks)}" if k == "prefill" and len(chunks) > 1 else ""),
                      R.component_colour(th, k), v, v / denom * 100) for k, v in parts.items()]
            out.append_text(R.legend(items, width))
        if stats:
            name_w = max(len(n) for n in stats) + 1
            sweep_of, fam_max, fits = _sweep_view(state, stats)
            for name, st in stats.items():
                med = st.component_medians_ms
                if not med:
                    continue
                tot = sum(med.values())
                lab = f"{name:<{name_w}}median{R.fmt_ms(tot):>9} "
                dom = f" {R.component_label(st.dominant_component or '?')} {st.dominant_share_pct or 0:.0f}%"
                fam = sweep_of.get(name)
                fit = fits.get(fam) if fam else None
                if fit is not None and st.n_prompt_tokens:  # TTFT against the prompt length: the fit beside
                    dom += f" · fit {R.fmt_ms(fit.predict(st.n_prompt_tokens)[0])}"
                bar_w = max(width - len(lab) - len(dom), 4)
                if fam and fam_max.get(fam):  # a sweep's bars share one scale: their lengths are the plot
                    bar_w = max(1, round(bar_w * tot / fam_max[fam]))
                out.append("\n" + lab)
                out.append_text(R.stacked_bar(R.component_segments(th, med), bar_w, th.components.pending))
                out.append(" " * (max(width - len(lab) - len(dom), 4) - bar_w))
                out.append(dom, style=R.component_colour(th, st.dominant_component or "pending"))
        # Never shrink: a panel that changes height each phase would re-lay out (and repaint) the
        # whole screen twice per run.
        n = out.plain.count("\n")
        if n < self._max_lines:
            out.append("\n" * (self._max_lines - n))
        self._max_lines = max(self._max_lines, n)
        self.update_sized(out)


def _sweep_view(state: SessionState, stats: dict[str, ScenarioStats]) -> tuple[dict[str, str], dict[str, float], dict[str, Any]]:
    """For the scenarios expanded from a sweep: their family, each family's largest median TTFT (the
    bars' common scale) and its fit of TTFT against the prompt length (ttftui.fit)."""
    if state.config is None:
        return {}, {}, {}
    sweep_of = {s.name: s.sweep for s in state.config.scenarios if s.sweep and s.name in stats}
    if not sweep_of:
        return {}, {}, {}
    from ttftui.fit import polyfit

    fam_max: dict[str, float] = {}
    for name, fam in sweep_of.items():
        tot = sum(stats[name].component_medians_ms.values())
        fam_max[fam] = max(fam_max.get(fam, 0.0), tot)
    fits = {}
    for fam in set(sweep_of.values()):
        runs = [r.metrics for r in state.runs if r.metrics is not None and r.metrics.counted
                and sweep_of.get(r.scenario) == fam]
        fits[fam] = polyfit([float(m.n_prompt_tokens) for m in runs], [m.ttft_ms for m in runs])
    return sweep_of, fam_max, fits


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
    parts = {c.component: v for c in registry.components() if (v := m.value(c.name)) is not None}
    title = f"last run {m.run_id} • {m.scenario}" + (" (warm-up)" if m.warmup else "")
    if m.counted and not m.warmup:
        from ttftui.cold import cold_runs

        why = cold_runs(r.metrics for r in state.runs if r.metrics is not None).get(m.run_id)
        if why:
            title += f" • COLD: {why}"
    return title, parts, list(m.prefill_chunks_ms), m.ttft_ms, ""


def _next_phase(cur: RunState) -> str:
    """What the run is computing now, from the last phase it finished (ttftui.phases)."""
    first = next((p for p in cur.phases if p.phase == "prefill_chunk"), None)
    n_chunks = -(-cur.started.prompt_tokens // max(1, first.n_tokens)) if first is not None and first.n_tokens else None
    at = where_next(cur.phases[-1] if cur.phases else None, n_chunks)
    if at.phase == "prefill_chunk":
        return f"prefill chunk {(at.chunk or 0) + 1}" + (f"/{at.n_chunks}" if at.n_chunks else "")
    return R.component_label(at.phase)


# ---------------------------------------------------------------------------------------------- tokens
class LinePanel(Panel):
    """A panel drawn line by line (Textual's line API): every visible row is kept as a rendered
    strip with a key saying what it shows, and a draw re-renders and repaints only the rows whose
    key changed. A Static re-renders all of its text through Textual's content pipeline on every
    update (several ms for a dozen lines), and each of those milliseconds is taken from the engine."""

    def __init__(self, title: str, **kw: Any):
        super().__init__(title, **kw)
        self._row_keys: list[Any] = []
        self._rows: list[Strip] = []
        self._texts: list[str] = []

    def render_line(self, y: int) -> Strip:
        if y < len(self._rows):
            return self._rows[y]
        return Strip.blank(self.content_size.width, self.rich_style)

    def visible_text(self) -> str:
        """What the panel shows, as plain text (one line per row)."""
        return "\n".join(self._texts).rstrip("\n")

    def _paint(self, rows: list[tuple[Any, Any]], width: int, height: int) -> None:
        """``rows``: (key, a Text or a line of token fragments). Render the rows whose key changed and
        repaint only those (the whole panel after a resize)."""
        resized = len(self._rows) != height or (self._rows and self._rows[0].cell_length != width)
        if resized:
            self._row_keys = [None] * height
            self._rows = [Strip.blank(width, self.rich_style)] * height
            self._texts = [""] * height
        base = self.rich_style
        changed: list[int] = []
        for y in range(height):
            key, what = rows[y] if y < len(rows) else (("blank",), None)
            key = (key, width)
            if self._row_keys[y] == key:
                continue
            self._row_keys[y] = key
            if what is None:
                strip, text = Strip.blank(width, base), ""
            elif isinstance(what, Text):
                what.truncate(width, overflow="ellipsis")
                strip, text = Strip(list(what.render(self.app.console))), what.plain
            else:
                strip, text = _fragment_strip(*what), "".join(t for _, t in what[0])
            self._rows[y] = strip.apply_style(base).adjust_cell_length(width, base)
            self._texts[y] = text
            changed.append(y)
        if resized:
            self.refresh()
        else:
            for y in changed:
                self.refresh(Region(0, y, width, 1))


class TokenStream(LinePanel):
    """The current run's text as it is generated, each token coloured by its inter-token latency.

    Drawn line by line (Textual's line API): tokens are wrapped once, as they arrive
    (:class:`TokenLayout`), every visible row is kept as a rendered strip with a key saying what it
    shows, and a frame re-renders and repaints only the rows whose key changed (usually the header
    and the last line). Redrawing the whole visible answer on every frame made this panel cost the
    engine more than the rest of the dashboard together. When the text fills the panel it moves up
    by half a panel at a time, so the rows above the last one keep their strips between jumps.
    Tokens are drawn literally (never parsed as markup); every token is in the record."""

    HEADER_LINES = 3

    def __init__(self, **kw: Any):
        super().__init__("Token stream", **kw)
        self._layout: TokenLayout | None = None
        self._layout_run: int | None = None
        # per run: the gaps so far, sorted (the median in O(1) per frame), and each token's colour
        self._gaps_run: int | None = None
        self._gaps: list[float] = []
        self._styles: list[str] = []
        self._style_median: float | None = None
        self._styles_theme: str | None = None

    @staticmethod
    def _shown_run(state: SessionState) -> RunState | None:
        run = state.current
        if run is None or not run.tokens:
            run = next((r for r in reversed(state.runs) if r.tokens), None)
        return run

    def view_key(self, state: SessionState, rationed: bool = False) -> Any:
        run = self._shown_run(state)
        return (run and run.run_id, run and len(run.tokens), run is not None and run.finished is not None, rationed,
                self.theme_file and self.theme_file.name)

    def _median_gap(self, run: RunState) -> float | None:
        """The run's median gap between tokens (the first token's gap is its TTFT: left out)."""
        toks = run.tokens
        if self._gaps_run != run.run_id or len(self._gaps) + 1 > max(len(toks), 1):
            self._gaps_run, self._gaps = run.run_id, []
            self._styles, self._style_median = [], None
        gaps = self._gaps
        for i in range(len(gaps) + 1, len(toks)):
            insort(gaps, toks[i].dt_ns / 1e6)
        n = len(gaps)
        if n == 0:
            return None
        return gaps[n // 2] if n % 2 else (gaps[n // 2 - 1] + gaps[n // 2]) / 2

    # Tokens are coloured against the median, which moves a little with every token; re-colouring
    # every visible token each time would re-render every row on every frame. So the colours are
    # computed against a median that is updated only when the true one has moved by more than this,
    # and against the exact median once the run has ended.
    STYLE_MEDIAN_SLACK = 0.03

    def _token_styles(self, run: RunState, th: ThemeFile) -> list[str]:
        median = self._median_gap(run)
        if self._styles_theme != th.name:
            self._styles_theme, self._style_median, self._styles = th.name, None, []
        ref = self._style_median
        if median is not None and (ref is None or run.finished is not None and ref != median
                                   or abs(median / ref - 1) > self.STYLE_MEDIAN_SLACK):
            self._style_median, self._styles = median, []
        styles, toks, ref = self._styles, run.tokens, self._style_median
        for i in range(len(styles), len(toks)):
            styles.append(self._token_style(th, i, toks, ref))
        return styles

    def draw(self, state: SessionState, rationed: bool = False) -> None:
        """``rationed``: the app draws sparingly now (llama.cpp has every CPU); the header says so."""
        th = self.theme_file
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return
        run = self._shown_run(state)
        rows: list[tuple[Any, Any]] = []  # (key, Text or a line of fragments to render)
        if run is None:
            rows.append((("empty", th.name), Text("no tokens yet", style="dim")))
        else:
            rows.extend(self._header_rows(run, th, width, rationed))
            rows.extend(self._body_rows(run, th, width, height - self.HEADER_LINES))
        self._paint(rows, width, height)

    def _header_rows(self, run: RunState, th: ThemeFile, width: int,
                     rationed: bool = False) -> list[tuple[Any, Text]]:
        toks = run.tokens
        n = len(toks)
        median = self._median_gap(run)
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"run {run.run_id} {run.scenario} · {n} tok", style="bold")
        itl: list[float] = []
        if n > 1:
            span_s = (toks[n - 1].t_ns - toks[0].t_ns) / 1e9
            rate = (n - 1) / span_s if span_s > 0 else 0.0
            head.append(f" · {rate:.1f} tok/s · p50 {R.fmt_ms(median)}")
            itl = [toks[i].dt_ns / 1e6 for i in range(max(1, n - (width - 4)), n)]
        tp = run.finished.token_parts if run.finished is not None else None
        if tp is not None and tp.n:  # where each token's time went (medians), once the run has ended
            head.append(f" · per token: decode {R.fmt_ms(tp.decode_median_ns / 1e6)}, sample "
                        f"{R.fmt_ms(tp.sample_median_ns / 1e6)}, detok {R.fmt_ms(tp.detok_median_ns / 1e6)}, "
                        f"rest {R.fmt_ms(tp.rest_median_ns / 1e6)}", style="dim")
        if rationed:
            head.append(" · drawn sparingly: llama.cpp uses every CPU", style="dim")
        spark = Text("ITL ", no_wrap=True, overflow="crop")
        spark.append(R.sparkline(itl, width - 5), style=th.itl.slow)
        return [((head.plain, th.name), head), ((spark.plain, th.name), spark), (("legend", th.name), R.itl_legend(th))]

    def _body_rows(self, run: RunState, th: ThemeFile, width: int, body_h: int) -> list[tuple[Any, Any]]:
        toks = run.tokens
        lay = self._layout
        if lay is None or self._layout_run != run.run_id or lay.width != width or lay.n_tokens > len(toks):
            lay = self._layout = TokenLayout(width)
            self._layout_run = run.run_id
        for i in range(lay.n_tokens, len(toks)):
            lay.add(i, R.literal(toks[i].text))
        styles_all = self._token_styles(run, th)
        n_lines = len(lay)
        top, shown = 0, max(body_h, 0)
        rows: list[tuple[Any, Any]] = []
        if n_lines > body_h and body_h > 1:
            step = max((body_h - 1) // 2, 1)
            top = -(-(n_lines - body_h + 1) // step) * step
            shown = body_h - 1
            note = Text(f"… {top} earlier line{'s' if top != 1 else ''}", style="dim")
            rows.append((("more", top, th.name), note))
        for k in range(top, min(n_lines, top + shown)):
            frags = lay.line(k)
            styles = tuple(styles_all[i] for i, _ in frags)
            size = lay.open_size() if k == len(lay.lines) else -1
            rows.append(((run.run_id, k, size, styles), (frags, styles)))
        return rows

    @staticmethod
    def _token_style(th: ThemeFile, i: int, toks: Any, median: float | None) -> str:
        if i == 0:
            return f"underline {th.itl.normal}"  # its gap is the TTFT: not comparable with the others
        return R.itl_style(th, toks[i].dt_ns / 1e6 / median if median else None)


def _fragment_strip(frags: tuple[tuple[int, str], ...], styles: tuple[str, ...]) -> Strip:
    """One line of tokens; neighbouring tokens of the same colour share a segment."""
    segs: list[Segment] = []
    run_style: str | None = None
    buf: list[str] = []
    for (_, text), style in zip(frags, styles):
        if style != run_style and buf:
            segs.append(Segment("".join(buf), Style.parse(run_style)))  # type: ignore[arg-type]
            buf = []
        run_style = style
        buf.append(text)
    if buf:
        segs.append(Segment("".join(buf), Style.parse(run_style)))  # type: ignore[arg-type]
    return Strip(segs)


# ---------------------------------------------------------------------------------------------- tables
def table_metrics() -> tuple[tuple[str, str, str], ...]:
    """(metric, label, unit) rows of the percentile table, from ttftui.registry; TTFT's components
    indented under it."""
    return tuple((m.name, (" " if m.component else "") + m.label, m.unit)
                 for m in registry.METRICS if m.table)


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
            for metric, label, unit in (*table_metrics(), *extra_metrics):
                summ = st.metrics.get(metric)
                if summ is None or (summ.n == 0 and f"{name}:{metric}" not in self._cells):
                    continue  # not measured in this session (the engine's phases against a server)
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


def _cell(value: str, index: int, width: int) -> Text:
    """A table cell as Text: a scenario name from a recording (``[reverse]…``) is never markup."""
    return Text(value if index < 2 else value.rjust(width))


class AlertsPanel(Panel):
    def __init__(self, **kw: Any):
        super().__init__("Alerts", **kw)

    def view_key(self, state: SessionState, n_rules: int) -> Any:
        return (len(state.alerts), n_rules, state.crash is not None, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, n_rules: int) -> None:
        th = self.theme_file
        crash = Text()
        if state.crash is not None:  # the engine's process died: above every rule, it stays on screen
            color = th.textual.error
            crash.append(" ENGINE CRASHED ", style=f"bold {R.text_on(color)} on {color}")
            crash.append(f" {state.crash.message}\n")
            for line in state.crash.log_tail[:3]:  # the fault handler's verdict and innermost frames
                crash.append(f"   {line}\n", style="dim")
            if not state.alerts:
                crash.rstrip()
                self.update_sized(crash)
                return
        if not state.alerts:
            msg = ("no rules — add [[alerts]] to config.toml" if n_rules == 0
                   else f"all clear: {n_rules} rule{'s' if n_rules != 1 else ''} checked after every run")
            self.update_sized(Text(msg, style="dim"))
            return
        latest: dict[tuple[str, str | None], Any] = {}
        for a in state.alerts:
            latest[(a.rule, a.scenario)] = a
        out = crash
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
        self.update_sized(out)


class TelemetryPanel(LinePanel):
    def __init__(self, **kw: Any):
        super().__init__("Telemetry", **kw)

    def view_key(self, state: SessionState) -> Any:
        # Sparklines move once a second of sample time, whatever the sampling rate: each frame of
        # this panel costs the engine CPU, and a 10 Hz sparkline tells nothing a 1 Hz one does not.
        last = state.telemetry.last()
        return (id(state.telemetry_status), last and last.t_ns // 1_000_000_000, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState) -> None:
        from ttftui.tui.telemetry_view import telemetry_text

        width, height = self.content_size
        if width <= 0 or height <= 0:
            return
        text = telemetry_text(state, self.theme_file, max(width, 20))
        lines = text.wrap(self.app.console, width, overflow="ellipsis")  # an N/A reason wraps, never cut
        for t in lines:
            t.rstrip()
        self._paint([((t.plain, tuple(t.spans), str(t.style)), t) for t in lines], width, height)


def counted_metrics(runs: Sequence[RunMetrics]) -> int:
    return sum(1 for r in runs if r.counted)
