"""Pure text renderers for the dashboard (no widgets, no app): stacked bars, legends, token runs.

Kept apart from the widgets so that they can be tested as plain functions and so that widgets stay
thin. Everything builds ``rich.text.Text`` with explicit styles: model output is appended as plain
strings and is therefore never interpreted as markup (a token such as ``[bold]`` stays ``[bold]``).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Sequence

from rich.text import Text
from textual.color import Color

from ttftui.analysis.metrics import chunks_in_ttft
from ttftui.core import registry
from ttftui.core.events import DiffusionStep, DiffusionTiming, TokenEmitted
from ttftui.core.textsafe import visible
from ttftui.tui.themes import ThemeFile

MASKED_CELL = "░"  # a diffusion run's answer position still masked, one cell per position


def component_label(key: str) -> str:
    """A TTFT component's label (ttftui.core.registry), or "running" for the part still in progress."""
    return "running" if key == "pending" else registry.component_label(key)


def literal(text: str) -> str:
    """Model output made safe to draw: control characters become visible escapes (the one
    sanitiser, ``ttftui.core.textsafe.visible``), a tab four spaces."""
    return visible(text).replace("\t", "    ")


def fmt_ms(ms: float | None) -> str:
    if ms is None or not math.isfinite(ms):
        return "–"
    a = abs(ms)
    if a >= 10_000:
        return f"{ms / 1000:.1f} s"
    if a >= 100:
        return f"{ms:.0f} ms"
    if a >= 10:
        return f"{ms:.1f} ms"
    if a >= 1:
        return f"{ms:.2f} ms"
    return f"{ms:.3f} ms"


def fmt_num(v: float | None, unit: str) -> str:
    """A table cell: ms values with adaptive precision, rates with one decimal."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if unit == "ms":
        return fmt_ms(v).removesuffix(" ms")
    if unit == "pct":
        return f"{v:.2f}"
    if unit == "bytes":
        return fmt_bytes(v)
    if unit == "count" and float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.1f}"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def text_on(color: str) -> str:
    """Black or white, whichever reads better on ``color``."""
    return "black" if Color.parse(color).brightness > 0.55 else "white"


@dataclass(frozen=True)
class Segment:
    key: str  # component key (colour lookup): tokenize, prefill, ...
    ms: float
    color: str


def allocate(values: Sequence[float], width: int) -> list[int]:
    """Integer cell counts proportional to ``values`` that add up to ``width`` (largest remainder)."""
    total = sum(v for v in values if v > 0)
    if total <= 0 or width <= 0:
        return [0] * len(values)
    exact = [max(v, 0) / total * width for v in values]
    cells = [int(x) for x in exact]
    rest = width - sum(cells)
    order = sorted(range(len(values)), key=lambda i: exact[i] - cells[i], reverse=True)
    for i in order[:rest]:
        cells[i] += 1
    return cells


def stacked_bar(segments: Sequence[Segment], width: int, empty_color: str = "grey23") -> Text:
    text = Text(no_wrap=True, overflow="crop")
    cells = allocate([s.ms for s in segments], width)
    for seg, n in zip(segments, cells):
        if n:
            text.append("█" * n, style=seg.color)
    used = sum(cells)
    if used < width:
        text.append("░" * (width - used), style=empty_color)
    return text


def legend(items: Sequence[tuple[str, str, float, float | None]], width: int) -> Text:
    """``(label, colour, ms, pct)`` items as "■ label 12.3 ms 45%" runs, wrapped to ``width``."""
    out = Text()
    line = 0
    for label, color, ms, pct in items:
        piece = f"{label} {fmt_ms(ms)}" + (f" {pct:.1f}%" if pct is not None else "")
        need = len(piece) + 2  # "■ " and the piece; the two spaces after it may run past the edge
        if line and line + need > width:
            out.append("\n")
            line = 0
        out.append("■ ", style=color)
        out.append(piece)
        out.append("  ")
        line += need + 2
    return out


def component_segments(theme: ThemeFile, parts: dict[str, float], chunks: Sequence[float] = (),
                       steps: Sequence[tuple[float, float]] = ()) -> list[Segment]:
    """Segments in phase order; the prefill segment (the engine's, or a server's by its own account)
    is split into its chunks with alternating shades when there is more than one chunk. A diffusion
    run's ``steps`` ((forward, selection) ms each) replace its two step components: each step's
    forward pass then its selection, every other step in the alternate shades, so the bar shows how
    many steps the first readable token waited for."""
    c = theme.components
    segs: list[Segment] = []
    for key in (*(m.component for m in registry.components()), "pending"):
        ms = parts.get(key)
        if ms is None:
            continue
        if key in ("prefill", "server_prefill") and len(chunks) > 1:
            for i, ch in enumerate(chunks_in_ttft(chunks, ms)):
                segs.append(Segment(key, ch, c.prefill if i % 2 == 0 else c.prefill_alt))
            continue
        if key in ("step_forward", "step_select") and steps:
            if key == "step_forward":  # both components, step by step
                fwd, sel = component_colour(theme, "step_forward"), component_colour(theme, "step_select")
                fwd_alt, sel_alt = alt_shade(theme, fwd), alt_shade(theme, sel)
                for i, (f, s) in enumerate(steps):
                    segs.append(Segment("step_forward", max(f, 0.0), fwd if i % 2 == 0 else fwd_alt))
                    segs.append(Segment("step_select", max(s, 0.0), sel if i % 2 == 0 else sel_alt))
            continue
        segs.append(Segment(key, max(ms, 0.0), component_colour(theme, key)))
    return segs


def component_colour(theme: ThemeFile, key: str) -> str:
    """A component's colour in the theme (a server's components borrow the engine's; "pending")."""
    return getattr(theme.components, "pending" if key == "pending" else registry.component_colour(key), "white")


def alt_shade(theme: ThemeFile, color: str) -> str:
    """The alternate shade of a component's colour, for every other chunk or step: the theme's
    ``prefill_alt`` for its prefill colour, any other colour shifted the way ``prefill_alt`` is from
    ``prefill`` (lighter or darker), so the themes need no new keys."""
    c = theme.components
    if color == c.prefill:
        return c.prefill_alt
    base = Color.parse(color)
    lighter = Color.parse(c.prefill_alt).brightness >= Color.parse(c.prefill).brightness
    return (base.lighten(0.15) if lighter else base.darken(0.15)).hex


def readable_step(steps: Sequence[DiffusionStep], tokens: Sequence[TokenEmitted]) -> int | None:
    """The 1-based step of a diffusion run that made its first token readable (None: none yet). The
    token comes just before its step's event, at the same time: the steps before it are earlier."""
    if not tokens:
        return None
    return bisect_left(steps, tokens[0].t_ns, key=lambda s: s.t_ns) + 1


def steps_to_readable(steps: Sequence[DiffusionStep], tokens: Sequence[TokenEmitted]) -> int:
    """How many of a run's steps so far are part of its TTFT: all of them until a token is readable,
    then those up to the one that made it readable."""
    k = readable_step(steps, tokens)
    return len(steps) if k is None else min(k, len(steps))


def live_step_parts(steps: Sequence[DiffusionStep]) -> list[tuple[float, float]]:
    """(forward, selection) ms of each step; selection = logits read + choosing + committing, as in
    the step_select component."""
    return [(s.forward_ns / 1e6, (s.logits_ns + s.select_ns + s.commit_ns) / 1e6) for s in steps]


def timing_step_parts(d: DiffusionTiming) -> list[tuple[float, float]]:
    """(forward, selection) ms of a finished diffusion run's steps up to its first readable one."""
    k = d.first_readable_step or len(d.step_forward_ns)
    return [(d.step_forward_ns[i] / 1e6, (d.step_logits_ns[i] + d.step_select_ns[i] + d.step_commit_ns[i]) / 1e6)
            for i in range(min(k, len(d.step_forward_ns)))]


def step_colour(theme: ThemeFile, step: int, n_steps: int) -> str:
    """A committed canvas cell's colour by the step that committed it: from the theme's primary colour
    (the first step) to its accent (the last planned step), round the shorter way of the colour wheel
    (a straight blend of blue and orange is grey in the middle, where steps would look alike)."""
    t = min(max(step / (n_steps - 1) if n_steps > 1 else 0.0, 0.0), 1.0)
    a, b = Color.parse(theme.textual.primary).hsl, Color.parse(theme.textual.accent).hsl
    dh = (b.h - a.h + 0.5) % 1.0 - 0.5
    return Color.from_hsl((a.h + dh * t) % 1.0, a.s + (b.s - a.s) * t, a.l + (b.l - a.l) * t).hex


def canvas_legend(theme: ThemeFile, n_steps: int, width: int) -> Text:
    """The canvas's colours: the step gradient, the masked cell, the first token's underline (in
    fewer words on a narrow panel)."""
    narrow = width < 54 + len(str(n_steps))
    cells = 6 if narrow else 10
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append("step 1 " if narrow else "committed at step 1 ")
    for i in range(cells):
        t.append("█", style=step_colour(theme, round(i * (n_steps - 1) / (cells - 1)), n_steps))
    t.append(f" {n_steps} · ")
    t.append(MASKED_CELL, style=theme.components.pending)
    t.append(" masked · ")
    t.append("1st token", style="underline")
    return t


def itl_style(theme: ThemeFile, ratio: float | None) -> str:
    """Colour of a token by its gap against the run's median gap."""
    t = theme.itl
    if ratio is None:
        return t.normal
    if ratio < 0.8:
        return t.fast
    if ratio <= 1.25:
        return t.normal
    if ratio <= 2.0:
        return t.slow
    return f"bold {text_on(t.spike)} on {t.spike}"


def itl_legend(theme: ThemeFile) -> Text:
    t = Text()
    t.append("<0.8×", style=theme.itl.fast)
    t.append(" ≈1× ", style=theme.itl.normal)
    t.append(">1.25×", style=theme.itl.slow)
    t.append(" ")
    t.append(">2×", style=itl_style(theme, 3.0))
    t.append(" of median gap · ")
    t.append("1st token", style="underline")
    return t


def sparkline(values: Sequence[float], width: int) -> str:
    """A unicode sparkline of the last ``width`` values (min..max scaled)."""
    blocks = "▁▂▃▄▅▆▇█"
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo
    if span <= 0:
        return blocks[3] * len(vals)
    return "".join(blocks[min(7, int((v - lo) / span * 7.999))] for v in vals)
