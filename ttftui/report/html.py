"""A ttftui report as one self-contained HTML file: the plots drawn here as inline SVG, no script
and nothing fetched, so it opens offline and can be mailed or attached to a CI run.

Sections: the session's facts (real or SYNTHETIC first), the TTFT breakdown of every scenario (a
stacked bar of component medians), TTFT and ITL distributions, one run's token timeline (its TTFT
phases, then every token's gap), telemetry over the session with each run's prefill and decode
shaded, the percentile tables, load, sweeps, alerts and goodput, failures. A session with
conversations (``runs[].conversation``) also has TTFT against the turn, one line per conversation
(NAME@CACHE: keep and off side by side), and per turn its depth and what the cache held. A session
with profiled runs (``runs[].ops``, ``--profile-ops``) has Inside prefill: per profiled scenario a
stacked bar per prefill chunk (and decode) of the operation kinds, a bar per layer, the operations'
table and what profiling cost (``ops_cost``). ``compare_html`` renders ``ttftui compare``'s result:
per metric the ratio, its significance and the verdict.

Everything that came from the report (names, messages, text) is escaped: a report is input from
someone else, and it is drawn leniently: a number no measurement can be (beyond ``MAX_NUMBER``:
``1e308``) is shown as "–" and left out of the plots, every coordinate written is finite, and text
UTF-8 cannot hold (a lone surrogate) becomes U+FFFD. The module is pure (report dict in, text out)
and does not import Textual.
"""

from __future__ import annotations

import html
import json
import math
import statistics
from typing import Any, Callable, Iterable, Sequence

from ttftui.analysis.metrics import chunks_in_ttft
from ttftui.core import registry
from ttftui.core.sane import utf8_text

# Component colours (one palette for the file; the dashboard's themes are for terminals).
COLOURS = {
    "tokenize": "#8e7cc3", "cache_prep": "#76a5af", "prefill": "#3c78d8", "prefill_alt": "#6d9eeb",
    "first_sample": "#e69138", "first_detok": "#c27ba0", "unaccounted": "#999999",
}
SERIES = {
    "proc_cpu_pct": ("CPU (engine) %", "#3c78d8", "pct"), "sys_cpu_pct": ("CPU (system) %", "#999999", "pct"),
    "rss_bytes": ("RSS", "#6aa84f", "bytes"), "gpu_busy_pct": ("GPU busy %", "#e69138", "pct"),
    "gpu_mem_used_bytes": ("GPU memory", "#c27ba0", "bytes"),
}
W = 760  # plot width in px (the page is 800 wide)
# A report is read leniently: a number beyond this size is no measurement (a year is 3e10 ms, the
# largest byte count 9e18) and is shown as "–" and left out of the plots, so that no sum, span or
# scale of the numbers drawn can overflow; every coordinate written is finite and bounded (``_c``).
MAX_NUMBER = 1e19
MAX_PX = 1e6

CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:24px auto;max-width:800px;color:#1d2733;
background:#fff}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 4px}
.badge{display:inline-block;padding:2px 8px;border-radius:4px;font-weight:700;color:#fff;margin-right:6px}
.real{background:#38761d}.synthetic{background:#cc0000}
table{border-collapse:collapse;font-variant-numeric:tabular-nums;margin:6px 0}
td,th{padding:2px 8px;border-bottom:1px solid #eef1f4;text-align:right}
td:first-child,th:first-child{text-align:left}
th{background:#f5f7f9;font-weight:600}
.facts td{text-align:left}.dim{color:#6b7785}.bad{color:#cc0000;font-weight:600}.good{color:#38761d}
.legend span{display:inline-block;margin-right:12px}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
svg{display:block;margin:4px 0}svg text{font:11px system-ui,sans-serif;fill:#1d2733}
details pre{background:#f5f7f9;padding:8px;overflow:auto;font-size:12px}
"""


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def fmt(v: Any, unit: str = "ms") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if unit == "bytes":
        n = float(v)
        for u in ("B", "KiB", "MiB", "GiB", "TiB"):
            if abs(n) < 1024 or u == "TiB":
                return f"{n:.1f} {u}" if u != "B" else f"{n:.0f} B"
            n /= 1024
    if isinstance(v, (int, float)):
        a = abs(v)
        s = f"{v:.3g}" if a < 10 else f"{v:.1f}" if a < 1000 else f"{v:,.0f}"
        return s + ("" if unit in ("", "count") else " %" if unit == "pct" else f" {unit}")
    return esc(v)


def fmt_count(v: Any) -> str:
    """A count as a whole number where it is one ("1,024"), else as ``fmt`` writes it (a median
    between two counts: "64.5")."""
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and float(v).is_integer():
        return f"{int(v):,}"
    return fmt(v, "count")


def component_colour(key: str) -> str:
    return COLOURS.get(registry.component_colour(key), "#999999")


# ---------------------------------------------------------------------- SVG pieces
def _svg(width: int, height: int, body: str, label: str) -> str:
    return (f'<svg class="plot" role="img" aria-label="{esc(label)}" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">{body}</svg>')


def _c(v: float) -> float:
    """A coordinate as SVG can take it: finite and within ``MAX_PX`` (a ratio of a huge value to a
    tiny one overflows to inf; NaN becomes 0)."""
    if v != v:
        return 0.0
    return max(-MAX_PX, min(MAX_PX, v))


def _rect(x: float, y: float, w: float, h: float, fill: str, title: str = "", extra: str = "") -> str:
    t = f"<title>{esc(title)}</title>" if title else ""
    return (f'<rect x="{_c(x):.2f}" y="{_c(y):.2f}" width="{_c(max(w, 0)):.2f}" height="{_c(max(h, 0)):.2f}" '
            f'fill="{fill}"{extra}>{t}</rect>')


def _text(x: float, y: float, s: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{_c(x):.1f}" y="{_c(y):.1f}" text-anchor="{anchor}"{extra}>{esc(s)}</text>'


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]; just the ends when no round step fits (a
    span too small for its numbers' precision), none when an end is not a number."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        hi = lo + max(1.0, abs(lo) * 1e-6)
    raw = (hi - lo) / max(n, 1)
    if not math.isfinite(raw) or raw <= max(abs(lo), abs(hi)) * 1e-12:
        return [lo, hi]
    mag = 10.0 ** math.floor(math.log10(raw))
    if mag == 0 or not math.isfinite(mag):
        return [lo, hi]
    step = next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)
    k0, k1 = math.floor(lo / step), math.floor(hi / step + 1e-9)
    if k1 - k0 > 10 * max(n, 1):
        return [lo, hi]
    return [round(k * step, 12) for k in range(k0, k1 + 1)]


def _axis_x(x0: float, x1: float, y: float, lo: float, hi: float, unit: str) -> str:
    out = [f'<line x1="{x0}" y1="{y}" x2="{x1}" y2="{y}" stroke="#9aa5b1"/>']
    for t in nice_ticks(lo, hi):
        if lo <= t <= hi:
            x = _c(x0 + (t - lo) / ((hi - lo) or 1.0) * (x1 - x0))
            out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#9aa5b1"/>')
            out.append(_text(x, y + 15, fmt(t, unit if unit != "ms" else "") , "middle"))
    return "".join(out)


def stacked_bars(rows: Sequence[tuple[str, list[tuple[str, float, str]]]], unit: str = "ms",
                 label_chars: int = 24) -> str:
    """One horizontal stacked bar per row: (label, [(part, value, colour), ...]), on one scale; a
    label is cut at ``label_chars`` characters (the label column is as wide as that needs)."""
    label_chars = max(24, min(int(label_chars), 48))
    label_w, h, gap = (150 if label_chars <= 24 else 6.4 * label_chars + 12), 18, 8
    total = max((sum(v for _, v, _ in parts) for _, parts in rows), default=0.0) or 1.0
    plot_w = W - label_w - 70
    body = []
    for i, (label, parts) in enumerate(rows):
        y = i * (h + gap) + 4
        body.append(_text(0, y + 13, label[:label_chars]))
        x = float(label_w)
        for name, v, colour in parts:
            w = v / total * plot_w
            body.append(_rect(x, y, w, h, colour, f"{name}: {fmt(v, unit)}"))
            x += w
        body.append(_text(x + 4, y + 13, fmt(sum(v for _, v, _ in parts), unit)))
    height = len(rows) * (h + gap) + 24
    body.append(_axis_x(label_w, label_w + plot_w, height - 20, 0, total, unit))
    return _svg(W, height, "".join(body), "TTFT breakdown")


def histogram(values: Sequence[float], colour: str, label: str, unit: str = "ms", bins: int = 30,
              marks: Iterable[tuple[str, float]] = ()) -> str:
    """A histogram of ``values`` with vertical marks (e.g. p50, p99)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    height, top, bottom, left = 130, 8, 22, 40
    if not vals:
        return _svg(W, 30, _text(0, 18, f"{label}: no values"), label)
    lo, hi = min(vals), max(vals)
    if hi <= lo:  # one value: a span around it that its size can tell from it (1e19 ± 0.5 is 1e19)
        d = max(0.5, abs(lo) * 1e-6)
        lo, hi = lo - d, hi + d
    counts = [0] * bins
    for v in vals:
        counts[min(int((v - lo) / (hi - lo) * bins), bins - 1)] += 1
    peak = max(counts)
    plot_w, plot_h = W - left - 10, height - top - bottom
    bw = plot_w / bins
    body = [_text(0, top + 10, str(peak), extra=' class="dim"')]
    for i, c in enumerate(counts):
        hgt = c / peak * plot_h
        x0 = lo + i * (hi - lo) / bins
        body.append(_rect(left + i * bw + 0.5, top + plot_h - hgt, bw - 1, hgt, colour,
                          f"{fmt(x0, unit)} – {fmt(x0 + (hi - lo) / bins, unit)}: {c}"))
    for name, v in marks:
        if v is not None and lo <= v <= hi:
            x = _c(left + (v - lo) / (hi - lo) * plot_w)
            body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#1d2733" '
                        f'stroke-dasharray="3,2"/>')
            body.append(_text(x + 3, top + 10, name))
    body.append(_axis_x(left, left + plot_w, top + plot_h, lo, hi, unit))
    return _svg(W, height, "".join(body), label)


def line_plot(t: Sequence[float | None], ys: Sequence[float | None], colour: str, label: str, unit: str,
              shade: Sequence[tuple[float, float, str]] = (), height: int = 110) -> str:
    """A time series (session seconds on x), with spans shaded behind it: (t0, t1, colour)."""
    pts = [(x, y) for x, y in zip(t, ys) if x is not None and y is not None]
    top, bottom, left = 8, 22, 70
    if len(pts) < 2:
        return _svg(W, 24, _text(0, 16, f"{label}: no samples"), label)
    t0, t1 = min(x for x, _ in pts), max(x for x, _ in pts)
    ymax = max(y for _, y in pts) or 1.0
    plot_w, plot_h = W - left - 10, height - top - bottom
    sx = lambda x: _c(left + (x - t0) / ((t1 - t0) or 1) * plot_w)  # noqa: E731
    sy = lambda y: _c(top + plot_h - y / ymax * plot_h)  # noqa: E731
    body = []
    for a, b, c in shade:
        if b >= t0 and a <= t1:
            body.append(_rect(sx(max(a, t0)), top, sx(min(b, t1)) - sx(max(a, t0)), plot_h, c, extra=' opacity="0.18"'))
    path = " ".join(f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts))
    body.append(f'<path d="{path}" fill="none" stroke="{colour}" stroke-width="1.5"><title>{esc(label)}</title></path>')
    body.append(_text(left - 4, top + 10, fmt(ymax, unit), "end"))
    body.append(_text(left - 4, top + plot_h, "0", "end"))
    body.append(_text(0, top + plot_h / 2, label))
    body.append(_axis_x(left, left + plot_w, top + plot_h, t0, t1, "s"))
    return _svg(W, height, "".join(body), label)


def token_timeline(run: dict[str, Any]) -> str:
    """One run on its own time axis: its TTFT phases (prefill chunk by chunk) as a band, then one
    bar per output token whose height is its gap (ITL) and whose place is when it arrived."""
    phases = run_phases(run)
    itl = [x for x in run.get("itl_ms") or [] if x is not None]
    ttft = run.get("ttft_ms") or 0.0
    end = max(run.get("e2e_ms") or 0.0, ttft + sum(itl))
    top, band, gap_h, left = 8, 16, 90, 40
    plot_w = W - left - 10
    sx = lambda ms: _c(left + ms / (end or 1) * plot_w)  # noqa: E731
    body = []
    x = 0.0
    for name, ms, colour in phases:
        body.append(_rect(sx(x), top, sx(x + ms) - sx(x), band, colour, f"{name}: {fmt(ms)}"))
        x += ms
    body.append(_text(sx(ttft) + 3, top + 12, f"first token {fmt(ttft)}"))
    peak = max(itl, default=1.0) or 1.0
    y0 = top + band + 8 + gap_h
    t = ttft
    for i, g in enumerate(itl):
        t += g
        hgt = g / peak * gap_h
        body.append(_rect(sx(t) - 0.6, y0 - hgt, 1.2, hgt, "#3c78d8", f"token {i + 2}: gap {fmt(g)} at {fmt(t)}"))
    body.append(_text(left - 4, y0 - gap_h + 8, fmt(peak), "end"))
    body.append(_text(left - 4, y0, "0", "end"))
    body.append(_axis_x(left, left + plot_w, y0, 0, end, "ms"))
    return _svg(W, y0 + 24, "".join(body), f"token timeline of run {run.get('run_id')}")


def run_phases(run: dict[str, Any]) -> list[tuple[str, float, str]]:
    """A run's TTFT components in order (prefill chunk by chunk; a server's prefill by its own
    account, as placed in TTFT: a clipped one keeps its last chunks), the unaccounted rest last. A
    component that is not a field of the run (or of its ``remote``) is one of its ``figures``."""
    out: list[tuple[str, float, str]] = []
    remote = run.get("remote") or {}
    figures = run.get("figures") or {}
    for m in registry.components():
        key = m.component or ""
        where = remote if m.source == "remote" and m.name in remote else run if m.name in run else figures
        v = where.get(m.name)
        if v is None or (key == "unaccounted" and v <= 0):
            continue
        chunks = run.get("prefill_chunks_ms") if key == "prefill" else (
            chunks_in_ttft(remote.get("server_prefill_chunks_ms") or [], v) if key == "server_prefill" else None)
        if chunks and len(chunks) > 1:
            for i, ch in enumerate(chunks):
                out.append((f"{m.label} chunk {i + 1}", ch, COLOURS["prefill" if i % 2 == 0 else "prefill_alt"]))
        else:
            out.append((m.label, v, component_colour(key)))
    return out


# ---------------------------------------------------------------------- tables
def table(head: Sequence[str], rows: Iterable[Sequence[Any]], cls: str = "") -> str:
    h = "".join(f"<th>{esc(x)}</th>" for x in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def legend(items: Iterable[tuple[str, str]]) -> str:
    return '<div class="legend">' + "".join(
        f'<span><i class="sw" style="background:{c}"></i>{esc(n)}</span>' for n, c in items) + "</div>"


# ---------------------------------------------------------------------- the report page
def report_html(rep: dict[str, Any], *, run_id: int | None = None, title: str = "ttftui report",
                progress: Callable[[str], None] | None = None) -> str:
    """The whole page. ``run_id``: the run whose token timeline is drawn (default: the counted run
    with the median TTFT of the last scenario)."""
    say = progress or (lambda _msg: None)
    rep, n_beyond = bounded_numbers(rep)
    runs = [r for r in rep.get("runs") or [] if isinstance(r, dict)]
    summary = rep.get("summary") or {}
    parts = [_head(rep, title)]
    if n_beyond:
        parts.append(f'<p class="bad">{n_beyond:,} number{"s" if n_beyond != 1 else ""} in this report '
                     f'{"are" if n_beyond != 1 else "is"} larger than any measurement (beyond ±{MAX_NUMBER:g}): '
                     'shown as – and left out of the plots</p>')
    convs = conversation_turns(runs)
    say("TTFT breakdown")
    parts.append(_breakdown(summary, convs))
    if convs:
        say("conversations")
        parts.append(_conversations(runs, summary, convs))
    say("distributions")
    parts.append(_distributions(runs, summary))
    say("token timeline")
    parts.append(_timeline(runs, run_id))
    say("inside prefill")
    parts.append(_inside_prefill(rep, runs))
    say("telemetry")
    parts.append(_telemetry(rep, runs))
    say("tables")
    parts.append(_percentiles(rep, summary))
    parts.append(_load(rep.get("load") or {}))
    parts.append(_hosts(rep.get("hosts") or {}))
    parts.append(_sweeps(rep.get("sweeps") or {}, convs))
    parts.append(_alerts(rep, summary))
    parts.append(_failures(rep))
    parts.append(_config(rep))
    return _page(title, "".join(parts))


def bounded_numbers(rep: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A copy of the report with every number beyond ``MAX_NUMBER`` (or not finite) made null, and
    how many there were. The session's config is kept as it is (it is shown as text, not drawn).
    Walked without recursion: a report may nest as deeply as JSON lets it."""
    n = 0
    root = {k: v for k, v in rep.items()}
    stack: list[Any] = [root]
    while stack:
        node = stack.pop()
        for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
            if node is root and k == "config":
                continue
            if isinstance(v, dict):
                node[k] = c = dict(v)
                stack.append(c)
            elif isinstance(v, list):
                node[k] = c = list(v)
                stack.append(c)
            elif isinstance(v, (int, float)) and not isinstance(v, bool) and not abs(v) <= MAX_NUMBER:
                node[k] = None
                n += 1
    return root, n


def _page(title: str, body: str) -> str:
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width"><style>{CSS}</style></head><body>{body}'
            f'<p class="dim">Written by ttftui. Times are milliseconds unless noted; warm-up runs are left out of '
            f'the statistics.</p></body></html>\n')
    return utf8_text(page)  # a lone surrogate in a report's text (a JSON "\\ud800") becomes U+FFFD


def _head(rep: dict[str, Any], title: str) -> str:
    syn = bool(rep.get("synthetic"))
    badge = (f'<span class="badge synthetic">SYNTHETIC</span><span class="bad">timings from a cost model, not '
             f'measured: {esc(rep.get("synthetic_reason"))}</span>' if syn
             else '<span class="badge real">REAL</span><span class="good">measured</span>')
    dev, model, sess = rep.get("device") or {}, rep.get("model") or {}, rep.get("session") or {}
    facts = [
        ("engine", f'{esc(rep.get("engine"))} {esc(rep.get("engine_version") or "")} '
                   f'({esc(rep.get("engine_host") or "")})'),
        ("device", f'{esc(dev.get("name"))} · {esc(dev.get("kind"))} · build {esc(dev.get("build"))} · '
                   f'threads {esc(dev.get("n_threads"))} · GPU layers {esc(dev.get("n_gpu_layers_offloaded"))}'),
        ("model", f'{esc(model.get("name"))} · {esc(model.get("architecture"))} {esc(model.get("quantization"))} · '
                  f'n_ctx {esc(model.get("n_ctx"))}'),
        ("session", f'{esc(sess.get("started_at"))} · {esc(sess.get("status"))} · '
                    f'{fmt((sess.get("duration_ms") or 0) / 1000, "s")} · ttftui {esc(rep.get("ttftui_version"))}'),
        ("load", f'{fmt(rep.get("load_ms"))} (cold TTFT {fmt(rep.get("cold_ttft_ms"))})'),
    ]
    crash = rep.get("crash")
    if crash:
        facts.append(("crash", f'<span class="bad">{esc(crash.get("message"))}</span>'))
    return (f'<h1>{esc(title)}</h1><p id="label">{badge}</p>'
            + table(("", ""), ((esc(k), v) for k, v in facts), "facts"))


def _component_bar(med: dict[str, Any], used: dict[str, str]) -> list[tuple[str, float, str]]:
    """A summary's component medians as one stacked bar's parts; notes each colour in ``used``
    (the legend)."""
    bar = []
    for m in registry.components():
        key = m.component or ""
        if isinstance(med.get(key), (int, float)):
            c = component_colour(key)
            bar.append((m.label, float(med[key]), c))
            used[m.label] = c
    return bar


def _breakdown(summary: dict[str, Any], convs: dict[str, dict[int, str]] | None = None) -> str:
    """Every scenario's component medians on one scale; a conversation's turn says beside its name
    what the cache held ("chat@keep@t3 · 159 cached + 65 new", the medians of its counted runs)."""
    turns = {sc for by_turn in (convs or {}).values() for sc in by_turn.values()}
    rows = []
    used: dict[str, str] = {}
    for name, s in summary.items():
        bar = _component_bar(s.get("component_medians_ms") or {}, used)
        if bar:
            label = str(name)
            if name in turns:
                cached, new = _pct(s, "cached_tokens_count", "p50"), _pct(s, "new_tokens_count", "p50")
                if cached is not None or new is not None:
                    label += f" · {fmt_count(cached)} cached + {fmt_count(new)} new"
            rows.append((label, bar))
    if not rows:
        return '<h2 id="breakdown">TTFT breakdown</h2><p class="dim">no counted runs</p>'
    width = max(len(label) for label, _ in rows)
    return ('<h2 id="breakdown">TTFT breakdown</h2><p class="dim">median of each component per scenario, one '
            'scale; hover a part for its value' + ('; a conversation\'s turn: the prompt tokens its cache held '
                                                  'and the new ones evaluated' if turns else '') + '</p>'
            + stacked_bars(rows, label_chars=width if turns else 24) + legend(used.items()))


# ---------------------------------------------------------------------- conversations
# one colour per conversation, in the order they ran (keep and off of one NAME next to each other)
CONVERSATION_COLOURS = ("#3c78d8", "#e69138", "#6aa84f", "#c27ba0", "#8e7cc3", "#76a5af", "#cc0000", "#1d2733")


def _count(v: Any) -> int | None:
    """A whole number from a report (a count, a turn), or None: a bool, a float that is no whole
    number, anything else is not one."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    return None


def conversation_turns(runs: list[dict[str, Any]]) -> dict[str, dict[int, str]]:
    """Conversation (NAME@CACHE) -> turn -> the scenario that ran it, from the runs' ``conversation``
    records, conversations in the order they first ran and turns in order. A turn two scenarios claim
    (a report from elsewhere) is the first one's."""
    out: dict[str, dict[int, str]] = {}
    for r in runs:
        c = r.get("conversation")
        if not isinstance(c, dict) or r.get("scenario") is None:
            continue
        turn = _count(c.get("turn"))
        if turn is None or turn < 1 or c.get("conversation") is None:
            continue
        out.setdefault(str(c["conversation"]), {}).setdefault(turn, str(r["scenario"]))
    return {k: dict(sorted(v.items())) for k, v in out.items()}


def _turn_depth(runs: list[dict[str, Any]], scenario: str) -> float | None:
    """A turn's depth (its prompt tokens): the median of its counted runs' (of all its runs' when none
    was counted)."""
    mine = [r for r in runs if r.get("scenario") == scenario and isinstance(r.get("conversation"), dict)]
    for rs in ([r for r in mine if r.get("counted")], mine):
        ds = [d for r in rs
              if isinstance(d := r["conversation"].get("depth"), (int, float)) and not isinstance(d, bool)]
        if ds:
            return median(ds)
    return None


def conversation_plot(lines: Sequence[tuple[str, str, list[tuple[int, float | None, float | None, float | None]]]],
                      unit: str = "ms") -> str:
    """TTFT against the turn: per conversation (name, colour, [(turn, p50, low, high), ...]) a line
    through its turns' medians (a turn without one breaks it) and a light band from low to high (a
    whisker where a turn stands alone). x: turn 1..T; y: from 0."""
    height, top, bottom, left = 220, 10, 34, 60
    plot_w, plot_h = W - left - 14, height - top - bottom
    pts = [(t, m, lo, hi) for _, _, ps in lines for t, m, lo, hi in ps]
    ys = [v for _, m, lo, hi in pts for v in (m, lo, hi) if v is not None and math.isfinite(v)]
    if not ys:
        return _svg(W, 24, _text(0, 16, "TTFT against the turn: no counted runs"), "TTFT against the turn")
    t_max = max(t for t, *_ in pts)
    ymax = max(max(ys), 0.0) or 1.0
    ymin = min(min(ys), 0.0)
    x0, x1 = 0.5, t_max + 0.5  # each turn in the middle of its slot
    sx = lambda t: _c(left + (t - x0) / (x1 - x0) * plot_w)  # noqa: E731
    sy = lambda v: _c(top + plot_h - (v - ymin) / ((ymax - ymin) or 1.0) * plot_h)  # noqa: E731
    body = []
    for tick in nice_ticks(ymin, ymax, 4):
        if ymin <= tick <= ymax:
            y = sy(tick)
            body.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="#eef1f4"/>')
            body.append(_text(left - 4, y + 4, fmt_count(tick) if abs(tick) >= 10 else fmt(tick, ""), "end"))
    body.append(_text(4, top + 10, unit, extra=' class="dim"'))
    for name, colour, ps in lines:
        segs: list[list[tuple[int, float, float | None, float | None]]] = [[]]
        for t, m, lo, hi in ps:
            if m is None:
                segs.append([])
            else:
                segs[-1].append((t, m, lo, hi))
        for seg in segs:
            spread = [(t, lo, hi) for t, _, lo, hi in seg if lo is not None and hi is not None]
            if len(spread) >= 2 and len(spread) == len(seg):
                band = ([f"{sx(t):.1f},{sy(hi):.1f}" for t, _, hi in spread]
                        + [f"{sx(t):.1f},{sy(lo):.1f}" for t, lo, _ in reversed(spread)])
                body.append(f'<path class="band" d="M{" L".join(band)} Z" fill="{colour}" fill-opacity="0.15" '
                            f'stroke="none"/>')
            else:
                for t, lo, hi in spread:
                    body.append(f'<line x1="{sx(t):.1f}" y1="{sy(lo):.1f}" x2="{sx(t):.1f}" y2="{sy(hi):.1f}" '
                                f'stroke="{colour}" stroke-opacity="0.45" stroke-width="3"/>')
        d = " ".join(f"{'M' if i == 0 else 'L'}{sx(t):.1f},{sy(m):.1f}"
                     for seg in segs for i, (t, m, _, _) in enumerate(seg))
        if d:
            body.append(f'<path class="conversation" data-name="{esc(name)}" d="{d}" fill="none" stroke="{colour}" '
                        f'stroke-width="2"><title>{esc(name)}</title></path>')
        for t, m, lo, hi in ps:
            if m is not None:
                spread = f" (min–max {fmt(lo)} – {fmt(hi)})" if lo is not None and hi is not None else ""
                body.append(f'<circle cx="{sx(t):.1f}" cy="{sy(m):.1f}" r="3" fill="{colour}"><title>'
                            f'{esc(name)} turn {t}: TTFT p50 {fmt(m)}{esc(spread)}</title></circle>')
    y_axis = top + plot_h
    if t_max <= 24:  # every turn marked
        body.append(f'<line x1="{left}" y1="{y_axis}" x2="{left + plot_w}" y2="{y_axis}" stroke="#9aa5b1"/>')
        for t in range(1, t_max + 1):
            x = sx(t)
            body.append(f'<line x1="{x:.1f}" y1="{y_axis}" x2="{x:.1f}" y2="{y_axis + 4}" stroke="#9aa5b1"/>')
            body.append(_text(sx(t), y_axis + 15, str(t), "middle"))
    else:
        body.append(_axis_x(left, left + plot_w, y_axis, x0, x1, ""))
    body.append(_text(left + plot_w / 2, height - 2, "turn", "middle", ' class="dim"'))
    return _svg(W, height, "".join(body), "TTFT against the turn")


def _conversations(runs: list[dict[str, Any]], summary: dict[str, Any], convs: dict[str, dict[int, str]]) -> str:
    """TTFT against the turn, one line per conversation (the median of each turn's counted runs, their
    min–max as a band), then per conversation a table of its turns: depth, cached and new tokens,
    TTFT p50, cache hit (medians of the counted runs, from the summary)."""
    lines, tables = [], []
    for i, (conv, by_turn) in enumerate(convs.items()):
        colour = CONVERSATION_COLOURS[i % len(CONVERSATION_COLOURS)]
        ps, rows = [], []
        for turn, sc in by_turn.items():
            s = summary.get(sc) if isinstance(summary.get(sc), dict) else {}
            ttft = _pct(s, "ttft_ms", "p50")
            ps.append((turn, ttft, _pct(s, "ttft_ms", "min"), _pct(s, "ttft_ms", "max")))
            rows.append([esc(turn), fmt_count(_turn_depth(runs, sc)),
                         fmt_count(_pct(s, "cached_tokens_count", "p50")),
                         fmt_count(_pct(s, "new_tokens_count", "p50")), fmt(ttft, ""),
                         fmt(_pct(s, "cache_hit_pct", "p50"), "pct")])
        lines.append((conv, colour, ps))
        cache = conv.rsplit("@", 1)[1] if "@" in conv else ""
        how = {"keep": "the KV cache holds the conversation between turns: only the new tokens are evaluated",
               "off": "every turn from an empty cache: the whole conversation is evaluated"}.get(cache, "")
        tables.append(f"<h3>{esc(conv)} <span class='dim'>{len(by_turn)} turn{'s' if len(by_turn) != 1 else ''}"
                      f"{' · ' + esc(how) if how else ''}</span></h3>"
                      + table(("turn", "depth (prompt tokens)", "cached", "new", "TTFT p50 (ms)", "cache hit"), rows,
                              "conversation"))
    return ('<h2 id="conversations">Conversations</h2><p class="dim">each turn sends the conversation so far plus '
            'a new user message; TTFT against the turn, the median of its counted runs (line) and their min–max '
            '(band); cached, new and cache hit are the medians of the counted runs</p>'
            + conversation_plot(lines) + legend((n, c) for n, c, _ in lines) + "".join(tables))


def _pct(s: dict[str, Any], metric: str, p: str) -> float | None:
    return ((s.get("metrics") or {}).get(metric) or {}).get(p)


def _distributions(runs: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    out = ['<h2 id="distributions">TTFT and ITL distributions</h2>']
    for name, s in summary.items():
        counted = [r for r in runs if r.get("scenario") == name and r.get("counted")]
        ttft = [r["ttft_ms"] for r in counted if r.get("ttft_ms") is not None]
        itl = [x for r in counted for x in r.get("itl_ms") or [] if x is not None]
        out.append(f"<h3>{esc(name)} <span class='dim'>({len(ttft)} runs, {len(itl)} token gaps)</span></h3>")
        marks = [(f"p{p}", _pct(s, m, f"p{p}")) for m in ("ttft_ms",) for p in (50, 99)]
        out.append(histogram(ttft, "#3c78d8", f"TTFT {name}", marks=marks, bins=min(30, max(len(ttft), 5))))
        marks = [(f"p{p}", _pct(s, "itl_ms", f"p{p}")) for p in (50, 99)]
        out.append(histogram(itl, "#e69138", f"ITL {name}", marks=marks))
    return "".join(out)


def pick_run(runs: list[dict[str, Any]], run_id: int | None) -> dict[str, Any] | None:
    if run_id is not None:
        return next((r for r in runs if r.get("run_id") == run_id), None)
    counted = [r for r in runs if r.get("counted") and r.get("ttft_ms") is not None]
    if not counted:
        return runs[-1] if runs else None
    last = [r for r in counted if r.get("scenario") == counted[-1].get("scenario")]
    last.sort(key=lambda r: r["ttft_ms"])
    return last[len(last) // 2]


def _timeline(runs: list[dict[str, Any]], run_id: int | None) -> str:
    run = pick_run(runs, run_id)
    if run is None:
        return ('<h2 id="timeline">Token timeline</h2><p class="bad">'
                + (f"no run {run_id} in this report" if run_id is not None else "no runs") + "</p>")
    ph = run_phases(run)
    return (f'<h2 id="timeline">Token timeline: run {esc(run.get("run_id"))} · {esc(run.get("scenario"))}</h2>'
            f'<p class="dim">TTFT {fmt(run.get("ttft_ms"))} in its phases, then each output token at the time it '
            f'arrived, as tall as its gap (ITL); {len(run.get("itl_ms") or [])} gaps, E2E {fmt(run.get("e2e_ms"))}. '
            f'Another run: --run N.</p>' + token_timeline(run) + legend((n, c) for n, _, c in ph[:8]))


def _telemetry(rep: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    tel = rep.get("telemetry") or {}
    series = tel.get("series") or {}
    head = '<h2 id="telemetry">Telemetry over the session</h2>'
    if not series.get("t_ms"):
        why = "no telemetry in this session" if not tel else "this report holds no samples over time"
        return head + f'<p class="dim">{esc(why)}</p>'
    t = [x / 1000 if isinstance(x, (int, float)) else None for x in series["t_ms"]]
    shade = []
    for r in runs:
        a = (r.get("t_start_ms") or 0) / 1000
        ttft, e2e = (r.get("ttft_ms") or 0) / 1000, (r.get("e2e_ms") or 0) / 1000
        shade.append((a, a + ttft, COLOURS["prefill"]))
        shade.append((a + ttft, a + max(e2e, ttft), COLOURS["first_sample"]))
    out = [head, f'<p class="dim">{esc(tel.get("backend"))}, every {fmt(tel.get("interval_ms"))}; shaded: each '
                 f'run\'s prefill (blue) and decode (orange)</p>']
    for key, (label, colour, unit) in SERIES.items():
        if key in series:
            out.append(line_plot(t, series[key], colour, label, unit, shade))
    un = tel.get("unavailable") or {}
    by_reason: dict[str, list[str]] = {}
    for k, v in un.items():
        by_reason.setdefault(str(v), []).append(str(k))
    if by_reason:
        out.append(table(("N/A", "why"), ((esc(", ".join(ks)), esc(why)) for why, ks in by_reason.items())))
    return "".join(out)


def _percentiles(rep: dict[str, Any], summary: dict[str, Any]) -> str:
    pcts = [f"p{p:g}" for p in rep.get("percentiles") or [50, 90, 95, 99] if isinstance(p, (int, float))]
    out = ['<h2 id="percentiles">Percentiles</h2>']
    for name, s in summary.items():
        rows = []
        for m in registry.METRICS:
            st = (s.get("metrics") or {}).get(m.name)
            if not m.table or not st or not st.get("n"):
                continue
            rows.append([esc(m.label)] + [fmt(st.get(p), m.unit if m.unit != "ms" else "") for p in pcts]
                        + [fmt(st.get("mean"), m.unit if m.unit != "ms" else ""), esc(st.get("n"))])
        extra = f" · goodput {fmt(s.get('goodput_pct'), 'pct')}" if s.get("goodput_pct") is not None else ""
        out.append(f"<h3>{esc(name)} <span class='dim'>{esc(s.get('n_runs'))} runs, {esc(s.get('n_warmup'))} "
                   f"warm-up, {esc(s.get('n_failed'))} failed{extra}</span></h3>")
        out.append(table(["metric (ms unless noted)", *pcts, "mean", "n"], rows))
    return "".join(out)


def _load(load: dict[str, Any]) -> str:
    if not load:
        return ""
    rows = []
    for name, f in load.items():
        how = f"c={f.get('concurrency')}" if f.get("mode") == "closed" else f"{f.get('rate')}/s {f.get('arrival')}"
        rows.append([esc(name), esc(how), fmt(f.get("request_rate"), ""), fmt(f.get("goodput_rps"), ""),
                     fmt(f.get("output_tps"), ""), f'{fmt(f.get("mean_in_flight"), "")} / {esc(f.get("max_in_flight"))}',
                     esc(f.get("n_failed")), fmt(f.get("client_lag_max_ms")), esc(f.get("server_deferred_max")),
                     _cache_cell(f)])
    return ('<h2 id="load">Load</h2>' + table(("scenario", "load", "req/s", "goodput req/s", "tok/s",
                                               "in flight mean / max", "failed", "client lag max",
                                               "server deferred max", "server cache hit"), rows))


def _cache_cell(f: dict[str, Any]) -> str:
    """The server's prefix-cache hit rate over the counted requests: its per-request account
    (token-weighted, with how many requests gave one) and its /metrics counters, where it gave them."""
    parts = []
    if f.get("server_cache_hit_pct") is not None:
        parts.append(f'{fmt(f.get("server_cache_hit_pct"), "pct")} <span class="dim">({esc(f.get("server_cache_reported"))} '
                     "answers)</span>")
    if f.get("server_metrics_cache_hit_pct") is not None:
        parts.append(f'{fmt(f.get("server_metrics_cache_hit_pct"), "pct")} <span class="dim">(its /metrics, '
                     f'{fmt(f.get("server_metrics_cache_queried"), "count")} tokens looked up)</span>')
    if f.get("trace_reusable_pct") is not None:
        parts.append(f'<span class="dim">the trace allows {fmt(f.get("trace_reusable_pct"), "pct")}</span>')
    return " · ".join(parts) or "–"


def _hosts(hosts: dict[str, Any]) -> str:
    """Ray engine hosts: what each loaded, its own figures per scenario, its node's telemetry, and
    each host's TTFT breakdown on one scale (the percentiles above pool every host)."""
    if not hosts:
        return ""
    rows, bars = [], []
    used: dict[str, str] = {}
    for w, h in hosts.items():
        engines = [e for e in h.get("engines") or [] if isinstance(e, dict)]
        what = "; ".join(
            f'{"SYNTHETIC" if e.get("synthetic") else "REAL"} {esc((e.get("model") or {}).get("name"))} '
            f'{esc((e.get("model") or {}).get("quantization"))} on {esc((e.get("device") or {}).get("name"))} '
            f'(load {fmt(e.get("load_ms"))})' for e in engines)
        tel = (h.get("telemetry") or {}).get("session") or {}
        node = (f'RSS peak {fmt((tel.get("rss_peak_bytes") or 0) / 2**20, "")} MiB'
                + (f', GPU busy mean {fmt(tel.get("gpu_busy_mean_pct"), "pct")}'
                   if tel.get("gpu_busy_mean_pct") is not None else ""))
        for name, sm in (h.get("summary") or {}).items():
            rows.append([esc(w), what, esc(name), esc(sm.get("n_runs")), fmt(_pct(sm, "ttft_ms", "p50")),
                         fmt(_pct(sm, "ttft_ms", "p99")), fmt(_pct(sm, "prefill_tps", "p50"), ""),
                         fmt(_pct(sm, "decode_tps", "p50"), ""), node])
            bar = _component_bar(sm.get("component_medians_ms") or {}, used)
            if bar:
                bars.append((f"{w} · {name}", bar))
    return ('<h2 id="hosts">Engine hosts</h2><p class="dim">each Ray engine host\'s own runs; the percentiles '
            'above pool every host\'s raw samples</p>'
            + table(("host", "engine", "scenario", "runs", "TTFT p50", "TTFT p99", "prefill tok/s p50",
                     "decode tok/s p50", "its node"), rows)
            + (stacked_bars(bars) + legend(used.items()) if bars else ""))


def _sweeps(sweeps: dict[str, Any], convs: dict[str, Any] | None = None) -> str:
    if not sweeps:
        return ""
    out = ['<h2 id="sweeps">Sweeps</h2>']
    for name, sw in sweeps.items():
        fit = sw.get("ttft") or {}
        n = "n: the conversation's depth (prompt tokens of a turn)" if name in (convs or ()) else ""
        out.append(f"<h3>{esc(name)}</h3><p>TTFT ≈ {fmt(fit.get('a'), '')} + {fmt(fit.get('b'), '')}·n + "
                   f"{fmt(fit.get('c'), '')}·n² ms (R² {fmt(fit.get('r2'), '')})"
                   + (f' <span class="dim">{esc(n)}</span>' if n else "") + "</p>")
        preds = sw.get("predictions") or []
        if preds:
            out.append(table(("prompt tokens", "predicted TTFT", "95 % interval"),
                             ([esc(p.get("n_prompt_tokens")), fmt(p.get("ttft_ms")),
                               f"{fmt(p.get('low_ms'))} – {fmt(p.get('high_ms'))}"] for p in preds)))
    return "".join(out)


def _alerts(rep: dict[str, Any], summary: dict[str, Any]) -> str:
    out = ['<h2 id="alerts">Alerts and goodput</h2>']
    status = rep.get("alert_status") or []
    if status:
        out.append(table(("rule", "scenario", "severity", "state at the end", "times fired"),
                         ([esc(a.get("rule")), esc(a.get("scenario")), esc(a.get("severity")),
                           f'<span class="{"bad" if a.get("state") == "firing" else "good"}">{esc(a.get("state"))}</span>',
                           esc(a.get("times_fired"))] for a in status)))
    else:
        out.append('<p class="dim">no alert rule fired (or none was set)</p>')
    gp = [(n, s.get("goodput_pct")) for n, s in summary.items() if s.get("goodput_pct") is not None]
    if gp:
        out.append(table(("scenario", "goodput (runs meeting every per-run rule)"),
                         ([esc(n), fmt(v, "pct")] for n, v in gp)))
    notices = rep.get("notices") or []
    if notices:
        out.append(table(("level", "notice"), ([esc(n.get("level")), esc(n.get("message"))] for n in notices)))
    return "".join(out)


def _failures(rep: dict[str, Any]) -> str:
    failed = rep.get("failed_runs") or []
    if not failed:
        return ""
    return '<h2 id="failures">Failed runs</h2>' + table(
        ("run", "scenario", "error"), ([esc(f.get("run_id")), esc(f.get("scenario")), esc(f.get("error"))]
                                       for f in failed))


def _config(rep: dict[str, Any]) -> str:
    cfg = json.dumps(rep.get("config") or {}, indent=2, ensure_ascii=False, allow_nan=False)
    return f'<h2 id="config">Configuration</h2><details><summary>config used</summary><pre>{esc(cfg)}</pre></details>'


# ---------------------------------------------------------------------- inside prefill
# The operation kinds' colours, by rank in the profiled run's prefill: a kind has the same colour in
# every chunk's bar, decode's and the legend. The gap profiling adds (the spans outside the watched
# nodes) is light grey.
OPS_COLOURS = ("#3c78d8", "#e69138", "#6aa84f", "#8e7cc3", "#c27ba0", "#76a5af", "#cc0000", "#f1c232",
               "#45818e", "#a64d79", "#b45f06", "#274e13")
OPS_GAP = ("profiling gap", "#d5dbe1")
MAX_OPS_BARS = 64  # chunks drawn per run (a report from elsewhere may claim thousands)
MAX_OPS_ROWS = 24  # operation kinds in a table


def _num(v: Any) -> float | None:
    """A number of a report that can be drawn (finite, not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def ops_phase_kinds(ph: Any) -> list[tuple[str, float]]:
    """A phase record's operation kinds as (kind, ms ≥ 0), in its order; entries without a number left out."""
    out = []
    for k in _list(ph.get("kinds") if isinstance(ph, dict) else None):
        if isinstance(k, dict) and (ms := _num(k.get("ms"))) is not None:
            out.append((str(k.get("kind")), max(ms, 0.0)))
    return out


def _ops_gap(ph: Any, kinds: list[tuple[str, float]]) -> float:
    """The part of a phase's spans outside its watched nodes (0 when the report says nothing of it)."""
    span = _num(ph.get("span_ms")) if isinstance(ph, dict) else None
    return max(span - sum(ms for _, ms in kinds), 0.0) if span is not None else 0.0


def ops_bars(rows: Sequence[tuple[str, list[tuple[str, float]], float]], colours: dict[str, str],
             label: str) -> str:
    """One horizontal stacked bar per row (label, [(kind, ms), ...], profiling gap ms): a rect per
    kind (``class="op"``) then the gap's, all rows on one scale, each row's total at its end."""
    label_w, h, gap_px = 110, 18, 8
    total = max((sum(ms for _, ms in kinds) + g for _, kinds, g in rows), default=0.0) or 1.0
    plot_w = W - label_w - 70
    body = []
    for i, (name, kinds, g) in enumerate(rows):
        y = i * (h + gap_px) + 4
        row_total = sum(ms for _, ms in kinds) + g
        body.append(f'<g class="ops-row" data-row="{esc(name)}">')
        body.append(_text(0, y + 13, name[:18]))
        x = float(label_w)
        for kind, ms in kinds:
            w = ms / total * plot_w
            pct = f" ({fmt(ms / row_total * 100, 'pct')})" if row_total else ""
            body.append(_rect(x, y, w, h, colours.get(kind, "#999999"), f"{kind}: {fmt(ms)}{pct}",
                              f' class="op" data-kind="{esc(kind)}"'))
            x += w
        if g > 0:
            w = g / total * plot_w
            body.append(_rect(x, y, w, h, OPS_GAP[1], f"{OPS_GAP[0]}: {fmt(g)}", ' class="gap"'))
            x += w
        body.append(_text(x + 4, y + 13, fmt(row_total)))
        body.append("</g>")
    height = len(rows) * (h + gap_px) + 24
    body.append(_axis_x(label_w, label_w + plot_w, height - 20, 0, total, "ms"))
    return _svg(W, height, "".join(body), label)


def layer_chart(layers: Sequence[tuple[str, float]], label: str = "time per layer") -> str:
    """One vertical bar per layer (name, ms), in the report's order (the embeddings and the output
    head, layer null, are "head", in grey), as tall as its time; a layer's share in its title."""
    vals = [(n, max(v, 0.0)) for n, v in layers if v is not None]
    if not vals:
        return _svg(W, 24, _text(0, 16, f"{label}: no per-layer times"), label)
    height, top, bottom, left = 140, 8, 32, 60
    plot_w, plot_h = W - left - 10, height - top - bottom
    peak = max(v for _, v in vals) or 1.0
    total = sum(v for _, v in vals) or 1.0
    bw = plot_w / len(vals)
    every = max(1, math.ceil(len(vals) / 24))
    last = len(vals) - 1
    shown = {i for i in range(0, last, every) if last - i >= every * 0.6} | {last}
    body = [_text(left - 4, top + 10, fmt(peak), "end"), _text(left - 4, top + plot_h, "0", "end")]
    for i, (n, v) in enumerate(vals):
        hgt = v / peak * plot_h
        x = left + i * bw
        body.append(_rect(x + 0.5, top + plot_h - hgt, max(bw - 1, 0.5), hgt, "#9aa5b1" if n == "head" else "#3c78d8",
                          f"layer {n}: {fmt(v)} ({fmt(v / total * 100, 'pct')})", ' class="layer"'))
        if i in shown:
            body.append(_text(x + bw / 2, top + plot_h + 14, n[:8], "middle"))
    body.append(f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#9aa5b1"/>')
    body.append(_text(left + plot_w / 2, height - 2, "layer", "middle", ' class="dim"'))
    return _svg(W, height, "".join(body), label)


def _ops_colours(ops: dict[str, Any]) -> dict[str, str]:
    """Kind -> colour: the prefill's kinds by time (largest first), then any only a chunk or decode has."""
    phases = [ops.get("prefill"), *_list(ops.get("chunks")), ops.get("decode")]
    first = sorted(ops_phase_kinds(ops.get("prefill")), key=lambda kv: -kv[1])
    out: dict[str, str] = {}
    for kind, _ in first + [kv for ph in phases for kv in ops_phase_kinds(ph)]:
        if kind not in out:
            out[kind] = OPS_COLOURS[len(out) % len(OPS_COLOURS)]
    return out


def profiled_runs(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Scenario -> its last counted run with an operation profile (its last such run when none was
    counted), scenarios in the order they first ran."""
    out: dict[str, dict[str, Any]] = {}
    for r in runs:
        if not isinstance(r.get("ops"), dict):
            continue
        sc = str(r.get("scenario"))
        if sc not in out or r.get("counted") or not out[sc].get("counted"):
            out[sc] = r
    return out


def _ops_cost_line(cost: Any, scenario: str) -> str:
    if not isinstance(cost, dict):
        return ""
    plain = cost.get("plain_scenario") or scenario.removesuffix("@ops")
    ratio = _num(cost.get("ratio"))
    if ratio is None:
        return f'<p class="ops-cost dim">no plain runs of {esc(plain)} to set the profiled prefill against</p>'
    return (f'<p class="ops-cost"><b>profiled prefill ×{ratio:.2f} the plain runs\'</b> <span class="dim">(p50 '
            f'{fmt(cost.get("profiled_prefill_p50_ms"))} vs {fmt(cost.get("plain_prefill_p50_ms"))} of '
            f'{esc(plain)}: what the graph callback costs; the shares below are of the profiled spans)</span></p>')


def _inside_prefill(rep: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """Per profiled scenario (NAME@ops, ``--profile-ops``), its last counted run: a stacked bar per
    prefill chunk (and decode) of the operation kinds, a bar per layer, the operations' table and
    what profiling cost (``ops_cost``). Nothing when no run has ``ops``."""
    prof = profiled_runs(runs)
    if not prof:
        return ""
    costs = rep.get("ops_cost") if isinstance(rep.get("ops_cost"), dict) else {}
    out = ['<h2 id="ops">Inside prefill</h2><p class="dim">profiled twins (--profile-ops): llama.cpp\'s graph '
           'callback times each operation of the prefill, chunk by chunk; the grey rest of a bar is the gap '
           'profiling adds (the spans outside the watched nodes). Hover a part for its value.</p>']
    for sc, r in prof.items():
        ops = r["ops"]
        pre = ops.get("prefill") if isinstance(ops.get("prefill"), dict) else {}
        colours = _ops_colours(ops)
        chunks = [c for c in _list(ops.get("chunks")) if isinstance(c, dict)]
        mode = ops.get("mode")
        out.append(f'<h3>{esc(sc)} <span class="dim">run {esc(r.get("run_id"))}'
                   f'{"" if r.get("counted") else " (not counted)"} · {esc(mode)} mode · prefill '
                   f'{fmt(pre.get("span_ms"))} in {len(chunks)} chunk{"s" if len(chunks) != 1 else ""}, the watched '
                   f'nodes\' compute {fmt(pre.get("compute_ms"))}</span></h3>')
        out.append(_ops_cost_line(costs.get(sc), sc))
        rows = []
        for i, c in enumerate(chunks[:MAX_OPS_BARS]):
            kinds = ops_phase_kinds(c)
            rows.append((f"chunk {i + 1}", kinds, _ops_gap(c, kinds)))
        if rows:
            if len(chunks) > MAX_OPS_BARS:
                out.append(f'<p class="dim">the first {MAX_OPS_BARS} of {len(chunks):,} chunks</p>')
            out.append(ops_bars(rows, colours, f"{sc}: prefill chunks by operation kind"))
        dec = ops.get("decode")
        if isinstance(dec, dict):
            kinds = ops_phase_kinds(dec)
            out.append('<p class="dim">decode: every output token\'s graph together (a scale of its own)</p>')
            out.append(ops_bars([("decode", kinds, _ops_gap(dec, kinds))], colours, f"{sc}: decode by operation kind"))
        out.append(legend([*colours.items(), OPS_GAP]))
        layers = [("head" if lt.get("layer") is None else str(lt.get("layer")), _num(lt.get("ms")))
                  for lt in _list(pre.get("layers")) if isinstance(lt, dict)]
        if layers:
            out.append('<p class="dim">the prefill\'s time per layer (head: the embeddings and the output '
                       'head)</p>' + layer_chart(layers, f"{sc}: time per layer"))
        kinds = [k for k in _list(pre.get("kinds")) if isinstance(k, dict)]
        trs = [[f'<i class="sw" style="background:{colours.get(str(k.get("kind")), "#999999")}"></i>'
                f'{esc(k.get("kind"))}', fmt(k.get("ms"), ""), fmt(k.get("pct"), "pct"), fmt_count(k.get("count")),
                fmt(k.get("bytes"), "bytes") if k.get("bytes") else ""] for k in kinds[:MAX_OPS_ROWS]]
        if len(kinds) > MAX_OPS_ROWS:
            trs.append([f'<span class="dim">{len(kinds) - MAX_OPS_ROWS:,} more kinds</span>', "", "", "", ""])
        if trs:
            out.append(table(("operation (prefill)", "ms", "% of the spans", "nodes", "bytes written"), trs, "ops"))
    return "".join(out)


# ---------------------------------------------------------------------- compare
def compare_html(result: dict[str, Any], base: str, cand: str) -> str:
    """``ttftui compare``'s result: per scenario and metric, baseline and candidate, their ratio on
    a log scale (a bar each), the Holm-adjusted p-value and the verdict."""
    rows = result.get("rows") or []
    notes = result.get("notes") or []
    body = [f"<h1>ttftui compare</h1><p>baseline <b>{esc(base)}</b> vs candidate <b>{esc(cand)}</b> · "
            f"α = {esc(result.get('alpha'))}</p>"]
    if notes:
        body.append("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>")
    body.append('<h2 id="ratios">Ratios (candidate / baseline)</h2>')
    body.append(_ratio_plot(rows))
    trs = []
    for r in rows:
        v = r.get("verdict") or ""
        cls = "bad" if v == "worse" else "good" if v == "better" else "dim"
        trs.append([esc(r.get("scenario")), esc(r.get("metric")), fmt(r.get("baseline_p50"), ""),
                    fmt(r.get("candidate_p50"), ""), fmt(r.get("ratio"), ""), fmt(r.get("p_adjusted"), ""),
                    f'<span class="{cls}">{esc(v)}{" *" if r.get("significant") else ""}</span>'])
    body.append('<h2 id="table">Per metric</h2>' + table(
        ("scenario", "metric", "baseline p50", "candidate p50", "ratio", "p (Holm)", "verdict"), trs))
    body.append(_compare_ops(result.get("ops") or [], result.get("ops_layers") or []))
    gates = result.get("gates") or []
    if gates:
        body.append('<h2 id="gates">Gates</h2>' + table(
            ("gate", "result"), ([esc(g.get("message")), esc("PASS" if g.get("passed") else "FAIL")] for g in gates)))
    return _page("ttftui compare", "".join(body))


def _compare_ops(ops: list[dict[str, Any]], layers: list[dict[str, Any]]) -> str:
    """Inside prefill (scenarios both reports profiled by operation): per kind, baseline and candidate
    ms and share of the span, and the change in percentage points; per layer, ms and ratio."""
    if not ops:
        return ""
    out = ['<h2 id="ops">Inside prefill, by operation (profiled runs)</h2>']
    for name in dict.fromkeys(str(r.get("scenario")) for r in ops):
        rows = [r for r in ops if str(r.get("scenario")) == name]
        out.append(f"<h3>{esc(name)}</h3><p class=\"dim\">median per counted run; n = "
                   f"{esc(rows[0].get('n_baseline'))} / {esc(rows[0].get('n_candidate'))}</p>")
        out.append(table(("operation", "baseline ms", "candidate ms", "Δ ms", "baseline %", "candidate %", "Δ pp"),
                         ([esc(r.get("kind")), fmt(r.get("baseline_ms"), ""), fmt(r.get("candidate_ms"), ""),
                           fmt(r.get("delta_ms"), ""), fmt(r.get("baseline_pct"), ""), fmt(r.get("candidate_pct"), ""),
                           fmt(r.get("delta_pct_points"), "")] for r in rows)))
        ls = [x for x in layers if str(x.get("scenario")) == name]
        if ls:
            out.append(table(("layer", "baseline ms", "candidate ms", "ratio"),
                             ([esc("head/embeddings" if x.get("layer") is None else x.get("layer")),
                               fmt(x.get("baseline_ms"), ""), fmt(x.get("candidate_ms"), ""), fmt(x.get("ratio"), "")]
                              for x in ls)))
    return "".join(out)


def _ratio_plot(rows: list[dict[str, Any]]) -> str:
    rs = [r for r in rows if isinstance(r.get("ratio"), (int, float)) and r["ratio"] > 0]
    if not rs:
        return '<p class="dim">no ratios</p>'
    h, label_w = 14, 230
    span = max(max(abs(math.log(r["ratio"])) for r in rs), math.log(1.1))
    mid = label_w + (W - label_w - 60) / 2
    half = (W - label_w - 60) / 2
    body = []
    for i, r in enumerate(rs):
        y = i * (h + 4) + 4
        lr = math.log(r["ratio"])
        better = (r.get("verdict") == "better")
        colour = "#cc0000" if r.get("verdict") == "worse" else "#38761d" if better else "#9aa5b1"
        x = mid + min(lr, 0) / span * half
        body.append(_text(0, y + 11, f"{r.get('scenario')} {r.get('metric')}"[:36]))
        body.append(_rect(x, y, abs(lr) / span * half, h, colour,
                          f"{r.get('metric')}: ×{r['ratio']:.3f}, p (Holm) {r.get('p_adjusted')}"))
        body.append(_text(W - 55, y + 11, f"×{r['ratio']:.3g}{' *' if r.get('significant') else ''}"))
    height = len(rs) * (h + 4) + 10
    body.append(f'<line x1="{mid}" y1="0" x2="{mid}" y2="{height}" stroke="#1d2733"/>')
    return _svg(W, height, "".join(body), "ratios")


def median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None
