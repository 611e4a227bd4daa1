"""The token stream: the current run's text as it is generated, each token coloured by its gap; a
diffusion run's answer as a canvas of masked cells that fill in step by step."""

from __future__ import annotations

from bisect import insort
from typing import Any

from rich.text import Text

from ttftui.analysis.reducer import RunState, SessionState
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile
from ttftui.tui.token_layout import TokenLayout
from ttftui.tui.widgets.panel import LinePanel


class TokenStream(LinePanel):
    """The current run's text as it is generated, each token coloured by its inter-token latency.

    Drawn line by line (Textual's line API): tokens are wrapped once, as they arrive
    (:class:`TokenLayout`), every visible row is kept as a rendered strip with a key saying what it
    shows, and a frame re-renders and repaints only the rows whose key changed (usually the header
    and the last line). Redrawing the whole visible answer on every frame made this panel cost the
    engine more than the rest of the dashboard together. When the text fills the panel it moves up
    by half a panel at a time, so the rows above the last one keep their strips between jumps.
    Tokens are drawn literally (never parsed as markup); every token is in the record.

    A diffusion model does not write left to right: its run is drawn as its canvas, every answer
    position a masked cell until a step commits it, then its text in the colour of that step
    (:meth:`_canvas_rows`), with the step counter above."""

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
        # a diffusion run's canvas: per answer position, its text made safe to draw (None: masked) and
        # the step that committed it, folded as steps and tokens arrive; its layout; its step colours
        self._canvas_run: int | None = None
        self._cell_text: list[str | None] = []
        self._cell_step: list[int] = []
        self._canvas_steps = 0
        self._canvas_toks = 0
        self._canvas_key: Any = None
        self._canvas_lay: TokenLayout | None = None
        self._canvas_styles: list[str] = []
        self._canvas_frontier = 0
        self._colours_for: tuple[str, int] | None = None
        self._colours: dict[int, str] = {}

    @staticmethod
    def _shown_run(state: SessionState) -> RunState | None:
        run = state.current
        if run is None or not (run.tokens or run.steps):
            run = next((r for r in reversed(state.runs) if r.tokens or r.steps), None)
        return run

    def view_key(self, state: SessionState, rationed: bool = False) -> Any:
        run = self._shown_run(state)
        return (run and run.run_id, run and len(run.tokens), run and len(run.steps),
                run is not None and run.finished is not None, rationed, self.theme_file and self.theme_file.name)

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

    @property
    def colour_median_ms(self) -> float | None:
        """The median gap (ms) the shown run's tokens are coloured against: within
        ``STYLE_MEDIAN_SLACK`` of the true one while the run streams, the exact one once it has ended."""
        return self._style_median

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
                                   or (abs(median / ref - 1) > self.STYLE_MEDIAN_SLACK if ref else median != ref)):
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
        elif run.steps:
            rows.extend(self._canvas_header_rows(state, run, th, width, rationed))
            rows.extend(self._canvas_rows(run, th, width, height - self.HEADER_LINES))
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

    # ------------------------------------------------------------------ a diffusion run's canvas
    def _canvas_header_rows(self, state: SessionState, run: RunState, th: ThemeFile, width: int,
                            rationed: bool = False) -> list[tuple[Any, Text]]:
        """What the model is doing (schedule, algorithm, time per step), the step counter, the legend."""
        steps = run.steps
        last = steps[-1]
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"run {run.run_id} {run.scenario} · diffusion", style="bold")
        per_step = sum(s.forward_ns + s.logits_ns + s.select_ns + s.commit_ns for s in steps) / len(steps) / 1e6
        head.append(f" · {R.fmt_ms(per_step)}/step")
        facts = state.engine.diffusion if state.engine is not None else None
        if facts is not None:
            head.append(f" · {facts.schedule}, {facts.algorithm}")
        if rationed:
            head.append(" · drawn sparingly: llama.cpp uses every CPU", style="dim")
        d = run.finished.diffusion if run.finished is not None else None
        first = d.first_readable_step if d is not None else R.readable_step(steps, run.tokens)
        done, n = last.answer_tokens - last.masked, last.answer_tokens
        count = Text(no_wrap=True, overflow="ellipsis")
        count.append(f"step {last.step + 1}/{last.n_steps}", style="bold")
        tail = f" · {done} of {n} committed · " + (f"first readable after step {first}" if first is not None
                                                     else "not readable yet")
        if count.cell_len + len(tail) > width:  # a narrow panel: the same, shorter
            tail = f" · {done}/{n} committed · " + (f"readable after {first}" if first is not None
                                                      else "not readable")
        count.append(tail)
        legend = R.canvas_legend(th, last.n_steps, width)
        return [((head.plain, th.name), head), ((count.plain, th.name), count), ((legend.plain, th.name), legend)]

    def _canvas_rows(self, run: RunState, th: ThemeFile, width: int, body_h: int) -> list[tuple[Any, Any]]:
        """The canvas, word-wrapped: the rows around its readable frontier (the first masked position)
        when it does not fit, moving down by half a panel at a time like the text of a run does."""
        lay, styles_all, frontier = self._canvas_layout(run, th, width)
        n_lines = len(lay)
        top, shown = 0, max(body_h, 0)
        rows: list[tuple[Any, Any]] = []
        if n_lines > body_h > 1:
            shown = body_h - 1
            step = max(shown // 2, 1)
            top = min(max(-(-(frontier - shown + 1) // step), 0) * step, max(n_lines - shown, 0))
            below = n_lines - top - shown
            note = (f"… {top} earlier line{'s' if top != 1 else ''}" if top else "") + \
                   (f"{' · ' if top else '… '}{below} more below" if below > 0 else "")
            rows.append((("more", note, th.name), Text(note, style="dim")))
        for k in range(top, min(n_lines, top + shown)):
            frags = lay.line(k)
            styles = tuple(styles_all[i] for i, _ in frags)
            rows.append(((run.run_id, "canvas", frags, styles), (frags, styles)))
        return rows

    def _canvas_layout(self, run: RunState, th: ThemeFile, width: int) -> tuple[TokenLayout, list[str], int]:
        """The canvas laid out (one fragment per answer position), each position's style, and the line
        of the first masked position (the last line once every position is committed). Steps and
        tokens are folded once each; the layout is rebuilt only when one arrives."""
        steps, toks = run.steps, run.tokens
        if self._canvas_run != run.run_id or self._canvas_steps > len(steps) or self._canvas_toks > len(toks):
            n = steps[0].answer_tokens  # a new run, or a replay seek
            self._canvas_run, self._canvas_steps, self._canvas_toks, self._canvas_key = run.run_id, 0, 0, None
            self._cell_text, self._cell_step = [None] * n, [-1] * n
        cells, at = self._cell_text, self._cell_step
        for s in steps[self._canvas_steps:]:
            for p, text in zip(s.positions, s.texts):
                if 0 <= p < len(cells):
                    at[p] = s.step
                    if cells[p] is None:  # its token may have come first (just before the step's event)
                        cells[p] = R.literal(text) or "·"  # a piece with no text still shows it is committed
        # a readable position shows the token's text: decoded in order, a character split across
        # tokens comes out whole (a committed piece alone may not)
        for i in range(self._canvas_toks, min(len(toks), len(cells))):
            cells[i] = R.literal(toks[i].text) or "·"
        self._canvas_steps, self._canvas_toks = len(steps), len(toks)
        key = (run.run_id, len(steps), len(toks), width, th.name)
        if key != self._canvas_key or self._canvas_lay is None:
            n_steps = steps[-1].n_steps
            lay = TokenLayout(width)
            styles: list[str] = []
            for p, text in enumerate(cells):
                if text is None:
                    lay.add(p, R.MASKED_CELL)
                    styles.append(th.components.pending)
                    continue
                lay.add(p, text)
                colour = self._step_colour(th, at[p], n_steps)
                styles.append(f"underline {colour}" if p == 0 else colour)
            masked = next((p for p, text in enumerate(cells) if text is None), None)
            self._canvas_key, self._canvas_lay, self._canvas_styles = key, lay, styles
            self._canvas_frontier = len(lay) - 1 if masked is None else next(
                (k for k in range(len(lay)) if any(i == masked for i, _ in lay.line(k))), len(lay) - 1)
        return self._canvas_lay, self._canvas_styles, self._canvas_frontier

    def _step_colour(self, th: ThemeFile, step: int, n_steps: int) -> str:
        """``R.step_colour``, remembered per theme and step count: the canvas is laid out again at
        every step, and a thousand colour conversions each time would cost the engine."""
        if self._colours_for != (th.name, n_steps):
            self._colours_for, self._colours = (th.name, n_steps), {}
        colour = self._colours.get(step)
        if colour is None:
            colour = self._colours[step] = R.step_colour(th, step, n_steps)
        return colour

    @staticmethod
    def _token_style(th: ThemeFile, i: int, toks: Any, median: float | None) -> str:
        if i == 0:
            return f"underline {th.itl.normal}"  # its gap is the TTFT: not comparable with the others
        return R.itl_style(th, toks[i].dt_ns / 1e6 / median if median else None)
