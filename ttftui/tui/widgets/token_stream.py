"""The token stream: the current run's text as it is generated, each token coloured by its gap."""

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
