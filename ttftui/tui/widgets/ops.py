"""Inside prefill on the dashboard (``--profile-ops``): the TTFT breakdown's headline switched (``o``)
from the TTFT components to a profiled run's prefill by operation kind: a stacked bar of the kinds
(and the gap profiling adds: the llama_decode spans outside the watched nodes), its legend, a line
with the top operations (their share, nodes and bytes moved) and a strip with one cell per layer, and
what profiling cost: the twin's median prefill against its plain scenario's (as the report's
``ops_cost``). Pure text renderers; the panel is :class:`ttftui.tui.widgets.ttft_bar.TTFTBar`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.text import Text

from ttftui.analysis.reducer import RunState, SessionState
from ttftui.analysis.view import SessionView
from ttftui.core.events import OpsProfile
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile

LAYER_CELLS = "▁▂▃▄▅▆▇█"  # a layer's cell: as tall as its share of the busiest layer's time
GAP = "profiling gap"  # the spans outside the watched nodes: graph building, the callback itself
OTHER = "other"


@dataclass(frozen=True)
class PrefillOps:
    """A profiled run's prefill, its chunks summed: the spans, the nodes' compute, each kind's
    (ns, nodes, bytes) by time (largest first) and each layer's ns (None: embeddings and head)."""

    span_ns: int
    compute_ns: int
    kinds: tuple[tuple[str, int, int, int], ...]
    layers: tuple[tuple[int, int], ...]
    head_ns: int
    n_chunks: int


def _n(v: Any) -> int:
    """A count or a time from an event, as a whole number ≥ 0 (anything odd: 0)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return 0
    return max(int(v), 0)


def prefill_ops(ops: OpsProfile) -> PrefillOps:
    chunks = [p for p in ops.phases if p.phase == "prefill_chunk"]
    kinds: dict[str, list[int]] = {}
    layers: dict[int, int] = {}
    head = 0
    for p in chunks:
        for k in p.kinds:
            v = kinds.setdefault(str(k.kind), [0, 0, 0])
            v[0] += _n(k.ns)
            v[1] += _n(k.count)
            v[2] += _n(k.bytes)
        for lt in p.layers:
            if lt.layer is None or isinstance(lt.layer, bool) or not isinstance(lt.layer, int):
                head += _n(lt.ns)
            else:
                layers[lt.layer] = layers.get(lt.layer, 0) + _n(lt.ns)
    return PrefillOps(
        span_ns=sum(_n(p.span_ns) for p in chunks), compute_ns=sum(_n(p.compute_ns) for p in chunks),
        kinds=tuple((k, *v) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1][0])),  # type: ignore[misc]
        layers=tuple(sorted(layers.items())), head_ns=head, n_chunks=len(chunks))


def last_profiled(state: SessionState) -> RunState | None:
    """The last ended run with an operation profile (a NAME@ops twin's), or None."""
    for r in reversed(state.runs):
        if r.finished is not None and r.finished.ops is not None:
            return r
    return None


def has_profiled(state: SessionState) -> bool:
    return last_profiled(state) is not None


def ops_cost(view: SessionView, scenario: str) -> tuple[float | None, float | None, float | None] | None:
    """(ratio, profiled p50, plain p50) of a twin's prefill against its plain scenario's, from the
    session's statistics, as the report's ``ops_cost``; None when the scenario is no twin."""
    plain = scenario.removesuffix("@ops")
    if plain == scenario:
        return None
    stats = view.stats

    def p50(name: str) -> float | None:
        st = stats.get(name)
        s = st.metrics.get("prefill_ms") if st is not None else None
        v = s.percentiles.get("p50") if s is not None else None
        return v if v is not None and math.isfinite(v) else None

    pa, pb = p50(plain), p50(scenario)
    return (pb / pa if pa and pb is not None else None), pb, pa


def palette(theme: ThemeFile) -> list[str]:
    """Colours for the operation kinds, by rank: the theme's component colours, then their
    alternate shades (the themes need no new keys)."""
    c = theme.components
    base = [c.prefill, c.first_sample, c.first_detok, c.tokenize, c.cache_prep, c.unaccounted]
    return base + [R.alt_shade(theme, x) if x != c.prefill else c.prefill_alt for x in base]


def kind_parts(p: PrefillOps, theme: ThemeFile, n_kinds: int) -> list[tuple[str, str, float]]:
    """(label, colour, ms) of the bar: the ``n_kinds`` largest kinds, the rest as "other", then the
    profiling gap."""
    pal = palette(theme)
    if len(p.kinds) == n_kinds + 1:  # one kind left over: itself, not "other"
        n_kinds += 1
    top = p.kinds[:n_kinds]
    out = [(k, pal[i % len(pal)], ns / 1e6) for i, (k, ns, _, _) in enumerate(top)]
    rest = sum(ns for _, ns, _, _ in p.kinds[n_kinds:])
    if rest:
        out.append((OTHER, pal[(n_kinds + 1) % len(pal)], rest / 1e6))
    gap = p.span_ns - sum(ns for _, ns, _, _ in p.kinds)
    if gap > 0:
        out.append((GAP, theme.components.pending, gap / 1e6))
    return out


def top_line(p: PrefillOps, width: int, n: int = 5) -> Text:
    """"top  MUL_MAT 72.7% ×422 · SET_ROWS 0.03% ×120 180 MiB · …": as many of the ``n`` largest
    kinds as fit, each with its share of the spans, its nodes and the bytes it moved (copies)."""
    out = Text("top ", style="bold", no_wrap=True, overflow="crop")
    span = p.span_ns or 1
    used = len(out.plain)
    for i, (k, ns, count, nbytes) in enumerate(p.kinds[:n]):
        piece = f"{R.literal(k)} {ns / span * 100:.1f}% ×{count:,}" + (f" {R.fmt_bytes(nbytes)}" if nbytes else "")
        sep = " · " if i else " "
        if used + len(sep) + len(piece) > width:
            break
        out.append(sep, style="dim")
        out.append(piece)
        used += len(sep) + len(piece)
    return out


def layer_strip(p: PrefillOps, theme: ThemeFile, width: int) -> Text:
    """"layers 0 ▃▄▆█▅… 29  peak 16 6.6% · head 12 ms": one cell per layer (several per cell when
    they do not fit), as tall as its time against the busiest cell's, the layer numbers at its ends."""
    out = Text(no_wrap=True, overflow="crop")
    if not p.layers:
        out.append("layers ", style="bold")
        out.append("no per-layer times", style="dim")
        return out
    lo, hi = p.layers[0][0], p.layers[-1][0]
    total = sum(ns for _, ns in p.layers) + p.head_ns or 1
    peak_l, peak_ns = max(p.layers, key=lambda x: x[1])
    tail = f"  peak {peak_l} {peak_ns / total * 100:.1f}%"
    if p.head_ns:
        tail += f" · head {R.fmt_ms(p.head_ns / 1e6)}"
    head = f"layers {lo} "
    room = width - len(head) - len(f" {hi}") - len(tail)
    if room < 8:  # narrow: the strip before the note
        tail, room = "", width - len(head) - len(f" {hi}")
    room = max(room, 1)
    per = max(1, -(-len(p.layers) // room))
    cells = [sum(ns for _, ns in p.layers[i:i + per]) for i in range(0, len(p.layers), per)]
    top = max(cells) or 1
    out.append(head, style="bold")
    for v in cells:
        out.append(LAYER_CELLS[min(len(LAYER_CELLS) - 1, max(0, round(v / top * (len(LAYER_CELLS) - 1))))],
                   style=theme.components.prefill)
    out.append(f" {hi}", style="bold")
    out.append(tail, style="dim")
    return out


def _fit(s: str, width: int) -> str:
    """One line: cut to ``width`` with an ellipsis (a wrapped line would push the panel down)."""
    return s if len(s) <= width else s[:max(width - 1, 0)] + "…"


def cost_line(view: SessionView, scenario: str, width: int) -> Text | None:
    """"profiled prefill ×1.8 the plain runs' (p50 4.1 s vs 2.3 s)", from the session's statistics;
    None when the scenario is no twin."""
    c = ops_cost(view, scenario)
    if c is None:
        return None
    ratio, pb, pa = c
    out = Text()
    if ratio is None:
        out.append(_fit("profiled prefill: no plain runs of " + R.literal(scenario.removesuffix("@ops"))
                        + " to set it against yet", width), style="dim")
        return out
    what = f"profiled prefill ×{ratio:.2f} the plain runs'"
    note = f" (p50 {R.fmt_ms(pb)} vs {R.fmt_ms(pa)}: what the graph callback costs)"
    if len(what) + len(note) > width:
        note = f" ({R.fmt_ms(pb)} vs {R.fmt_ms(pa)})"
    out.append(_fit(what, width), style="bold")
    if len(what) + len(note) <= width:
        out.append(note, style="dim")
    return out


def ops_headline(theme: ThemeFile, run: RunState, view: SessionView, width: int) -> Text:
    """The headline for a profiled run: title, its prefill's stacked bar by operation kind, the legend
    (ms and % of the spans), the top operations, the layer strip and what profiling cost."""
    fin = run.finished
    assert fin is not None and fin.ops is not None
    p = prefill_ops(fin.ops)
    out = Text()
    title = f"last run {run.run_id} • {R.literal(run.scenario)}" + (" (warm-up)" if run.warmup else "")
    mode = "" if fin.ops.mode == "ops" else f" ({fin.ops.mode} mode)"
    chunks = f" in {p.n_chunks} chunks" if p.n_chunks > 1 else ""
    out.append(_fit(f"{title}  prefill {R.fmt_ms(p.span_ns / 1e6)}{chunks} by operation kind{mode}", width) + "\n",
               style="bold")
    span = p.span_ns / 1e6 or 1.0
    for n in range(7, 1, -1):  # as many kinds as a legend of two lines holds (the rest: "other")
        parts = kind_parts(p, theme, n)
        legend = R.legend([(R.literal(k), c, ms, ms / span * 100) for k, c, ms in parts], width)
        if legend.plain.rstrip().count("\n") < 2:
            break
    out.append_text(R.stacked_bar([R.Segment(k, ms, c) for k, c, ms in parts], width, theme.components.pending))
    out.append("\n")
    out.append_text(legend)
    out.append("\n")
    out.append_text(top_line(p, width))
    out.append("\n")
    out.append_text(layer_strip(p, theme, width))
    cost = cost_line(view, run.scenario, width)
    if cost is not None:
        out.append("\n")
        out.append_text(cost)
    return out


