"""The TTFT breakdown: the current (or last) run's components as they complete, then each scenario's
medians (a sweep's on one scale, with its fit)."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ttftui.analysis.metrics import ScenarioStats
from ttftui.analysis.phases import where_next
from ttftui.analysis.reducer import RunState, SessionState
from ttftui.analysis.view import SessionView
from ttftui.core import registry
from ttftui.tui import render as R
from ttftui.tui.widgets.panel import Panel


class TTFTBar(Panel):
    """Stacked bar of TTFT components: the current (or last) run as its phases complete, then the
    median of each scenario, with ms, % and the dominant component."""

    def __init__(self, **kw: Any):
        super().__init__("TTFT breakdown", **kw)
        self._max_lines = 0
        self.core_lines = 1  # content lines of the headline: title, stacked bar and legend (the app keeps them)

    def on_resize(self) -> None:
        self._max_lines = 0  # a new width wraps the legend differently
        super().on_resize()

    def view_key(self, state: SessionState, view: SessionView, now_ns: int) -> Any:
        cur = state.current
        live = cur is not None and not cur.tokens
        # While a phase runs only its elapsed time changes (the app draws about once a second then).
        last = state.runs.last()  # (its id too: a Ray engine host's view has its own ended runs)
        return (cur and cur.run_id, cur and len(cur.phases), cur and bool(cur.tokens),
                cur and R.steps_to_readable(cur.steps, cur.tokens), len(state.runs),
                last and last.run_id,
                now_ns // 1_000_000_000 if live else 0, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, view: SessionView, now_ns: int) -> None:
        th = self.theme_file
        stats = view.stats
        width = max(self.content_size.width, 20)
        out = Text()
        title, parts, chunks, steps, total, note = _current_parts(state, view, now_ns)
        if parts is None:
            out.append("waiting for the first run…", style="dim")
        else:
            label = f"{title}  TTFT {R.fmt_ms(total)}{note}"
            out.append(label + "\n", style="bold")
            segs = R.component_segments(th, parts, chunks, steps)
            out.append_text(R.stacked_bar(segs, width, th.components.pending))
            out.append("\n")
            denom = sum(v for v in parts.values()) or 1.0
            items = [(_legend_label(k, len(chunks), len(steps)), R.component_colour(th, k), v, v / denom * 100)
                     for k, v in parts.items()]
            out.append_text(R.legend(items, width))
        self.core_lines = out.plain.count("\n") + 1
        if stats:
            name_w = max(len(n) for n in stats) + 1
            sweep_of, fam_max, fits = _sweep_view(view, stats)
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


def _sweep_view(view: SessionView, stats: dict[str, ScenarioStats]) -> tuple[dict[str, str], dict[str, float], dict[str, Any]]:
    """For the scenarios expanded from a sweep: their family, each family's largest median TTFT (the
    bars' common scale) and its fit of TTFT against the prompt length."""
    sweep_of = {n: fam for n, fam in view.sweep_of.items() if n in stats}
    if not sweep_of:
        return {}, {}, {}
    fam_max: dict[str, float] = {}
    for name, fam in sweep_of.items():
        tot = sum(stats[name].component_medians_ms.values())
        fam_max[fam] = max(fam_max.get(fam, 0.0), tot)
    fits = {fam: f["ttft"] for fam, f in view.sweeps.items()}
    return sweep_of, fam_max, fits


def _legend_label(key: str, n_chunks: int, n_steps: int) -> str:
    """A component's label; a split one says into how many parts ("prefill×4", "steps: forward×8")."""
    if key in ("prefill", "server_prefill") and n_chunks > 1:
        return f"{R.component_label(key)}×{n_chunks}"
    if key == "step_forward" and n_steps:
        return f"{R.component_label(key)}×{n_steps}"
    return R.component_label(key)


def _current_parts(state: SessionState, view: SessionView, now_ns: int):
    """(title, components so far, prefill chunks, diffusion steps, total ms, note) of the run to draw.
    A diffusion run's steps ((forward, selection) ms each) are those up to its first readable token."""
    cur = state.current
    if cur is not None and cur.phases:
        parts: dict[str, float] = {}
        chunks = [p.duration_ns / 1e6 for p in cur.phases if p.phase == "prefill_chunk"]
        for p in cur.phases:
            k = "prefill" if p.phase == "prefill_chunk" else p.phase
            parts[k] = parts.get(k, 0.0) + p.duration_ns / 1e6
        steps = R.live_step_parts(cur.steps[:R.steps_to_readable(cur.steps, cur.tokens)])
        if steps:
            parts["step_forward"] = sum(f for f, _ in steps)
            parts["step_select"] = sum(s for _, s in steps)
        done = bool(cur.tokens)
        elapsed = (cur.tokens[0].dt_ns / 1e6) if done else max((now_ns - cur.started.t_ns) / 1e6, 0.0)
        accounted = sum(parts.values())
        if done:
            parts["unaccounted"] = max(elapsed - accounted, 0.0)
            note = ""
        else:
            parts["pending"] = max(elapsed - accounted, 0.0)
            note = f"  (so far; {_next_phase(cur, state.engine is not None and state.engine.diffusion is not None)} running)"
        title = f"run {cur.run_id} • {cur.scenario}" + (" (warm-up)" if cur.warmup else "")
        return title, parts, chunks, steps, elapsed, note
    last = next((r for r in reversed(state.runs) if r.metrics is not None), None)
    if last is None:
        if cur is not None:
            ms = max((now_ns - cur.started.t_ns) / 1e6, 0.0)
            return f"run {cur.run_id} • {cur.scenario}", {"pending": ms}, [], [], ms, "  (starting)"
        return "", None, [], [], 0.0, ""
    m = last.metrics
    parts = {c.component: v for c in registry.components() if (v := m.value(c.name)) is not None}
    title = f"last run {m.run_id} • {m.scenario}" + (" (warm-up)" if m.warmup else "")
    if m.counted and not m.warmup:
        why = view.cold.get(m.run_id)
        if why:
            title += f" • COLD: {why}"
    fin = last.finished
    remote = fin.remote if fin is not None else None
    chunks = list(m.prefill_chunks_ms) or (list(remote.server_chunks_ms) if remote is not None else [])
    steps = R.timing_step_parts(fin.diffusion) if fin is not None and fin.diffusion is not None else []
    return title, parts, chunks, steps, m.ttft_ms, ""


def _next_phase(cur: RunState, diffusion: bool = False) -> str:
    """What the run is computing now, from the last event it finished (ttftui.analysis.phases): a
    diffusion run's newest step, else its newest phase."""
    first = next((p for p in cur.phases if p.phase == "prefill_chunk"), None)
    n_chunks = -(-cur.started.prompt_tokens // max(1, first.n_tokens)) if first is not None and first.n_tokens else None
    at = where_next(cur.steps.last() or (cur.phases[-1] if cur.phases else None), n_chunks, diffusion=diffusion)
    if at.phase == "prefill_chunk":
        return f"prefill chunk {(at.chunk or 0) + 1}" + (f"/{at.n_chunks}" if at.n_chunks else "")
    if at.phase == "diffusion_step":
        return f"diffusion step {(at.chunk or 0) + 1}" + (f"/{at.n_chunks}" if at.n_chunks else "")
    return R.component_label(at.phase)
