"""The TTFT breakdown: the current (or last) run's components as they complete, then each scenario's
medians (a sweep's on one scale, with its fit). A conversation's turn says so in the headline (its turn
and how much of its prompt the cache held) and beside its median (the cache hit, not the fit). With
``ops_view`` on (the app's ``o``), a profiled run's prefill by operation kind replaces the
components in the headline (:mod:`ttftui.tui.widgets.ops`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from rich.text import Text

from ttftui.analysis.metrics import ScenarioStats
from ttftui.analysis.phases import where_next
from ttftui.analysis.reducer import RunState, SessionState
from ttftui.analysis.view import SessionView
from ttftui.core import registry
from ttftui.tui import render as R
from ttftui.tui.widgets.ops import last_profiled, ops_headline
from ttftui.tui.widgets.panel import Panel


class TTFTBar(Panel):
    """Stacked bar of TTFT components: the current (or last) run as its phases complete, then the
    median of each scenario, with ms, % and the dominant component."""

    def __init__(self, **kw: Any):
        super().__init__("TTFT breakdown", **kw)
        self._max_lines = 0
        self.core_lines = 1  # content lines of the headline: title, stacked bar and legend (the app keeps them)
        # the headline shows the last profiled run's prefill by operation kind (--profile-ops) instead
        # of the TTFT components; a state without such a run is drawn as ever
        self.ops_view = False

    def on_resize(self) -> None:
        self._max_lines = 0  # a new width wraps the legend differently
        super().on_resize()

    def set_ops_view(self, on: bool) -> None:
        """Switch the headline between the TTFT components and a profiled run's operations; the
        panel may shrink (its height is otherwise never lowered), the next ``show`` redraws."""
        if on != self.ops_view:
            self.ops_view = on
            self._max_lines = 0
            self._key = None

    def view_key(self, state: SessionState, view: SessionView, now_ns: int) -> Any:
        if self.ops_view and (prof := last_profiled(state)) is not None:
            # the profiled run's operations, and the medians and the cost below: they change as runs end
            last = state.runs.last()
            return ("ops", prof.run_id, len(state.runs), last and last.run_id,
                    self.theme_file and self.theme_file.name)
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
        title, parts, chunks, steps, total, note, conv = _current_parts(state, view, now_ns)
        prof = last_profiled(state) if self.ops_view else None
        if prof is not None:
            out.append_text(ops_headline(th, prof, view, width))
        elif parts is None:
            out.append("waiting for the first run…", style="dim")
        else:
            label = _headline(title, f"  TTFT {R.fmt_ms(total)}", note, conv, width)
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
            convs = _conversations(view)
            sweep_of, scale_max, fits = _sweep_view(view, stats, convs)
            for name, st in stats.items():
                med = st.component_medians_ms
                if not med:
                    continue
                tot = sum(med.values())
                lab = f"{name:<{name_w}}median{R.fmt_ms(tot):>9} "
                dom = f" {R.component_label(st.dominant_component or '?')} {st.dominant_share_pct or 0:.0f}%"
                fam = sweep_of.get(name)
                fit = fits.get(fam) if fam else None
                if fam in convs:  # a conversation's turn: how much of its prompt the cache held
                    # (the family's fit is TTFT against the depth, which a kept cache does not prefill:
                    # beside one turn's bar it reads as a prediction it is not; the report has it)
                    hit = st.metrics.get("cache_hit_pct")
                    pct = hit.percentiles.get("p50", hit.mean) if hit is not None else None
                    if pct is not None:
                        dom += f" · cache hit {pct:.0f}%"
                elif fit is not None and st.n_prompt_tokens:  # TTFT against the prompt length: the fit beside
                    dom += f" · fit {R.fmt_ms(fit.predict(st.n_prompt_tokens)[0])}"
                if len(lab) + len(dom) + 4 > width:  # too narrow for the note: the bar and name first
                    dom = dom.split(" · ")[0]
                bar_w = max(width - len(lab) - len(dom), 4)
                if scale_max.get(name):  # a sweep's bars share one scale: their lengths are the plot
                    bar_w = max(1, round(bar_w * tot / scale_max[name]))
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


def _sweep_view(view: SessionView, stats: dict[str, ScenarioStats],
                convs: Collection[str] = ()) -> tuple[dict[str, str], dict[str, float], dict[str, Any]]:
    """For the scenarios expanded from a sweep: their scale (the family; a conversation's cache
    settings share one, NAME, so that keep and off compare by length), each scale's largest median
    TTFT (the bars' common length) and each family's fit of TTFT against the prompt length."""
    sweep_of = {n: fam for n, fam in view.sweep_of.items() if n in stats}
    if not sweep_of:
        return {}, {}, {}
    scale_of = {n: (("conversation", fam.rsplit("@", 1)[0]) if fam in convs else ("sweep", fam))
                for n, fam in sweep_of.items()}
    fam_max: dict[tuple[str, str], float] = {}
    for name, sc in scale_of.items():
        tot = sum(stats[name].component_medians_ms.values())
        fam_max[sc] = max(fam_max.get(sc, 0.0), tot)
    fits = {fam: f["ttft"] for fam, f in view.sweeps.items()}
    return sweep_of, {n: fam_max[sc] for n, sc in scale_of.items()}, fits


def _conversations(view: SessionView) -> set[str]:
    """The conversations (NAME@CACHE) of the session: the sweep families whose scenarios are turns."""
    return {s.conversation for s in view.config.scenarios if s.conversation}


# A conversation's turn in the headline: (turn, turns, cached tokens, new tokens); the counts are None
# until the run has said them (its cache_prep phase), turns None where the session's config is not known.
Turn = tuple[int, int | None, int | None, int | None]


def _turn_of(view: SessionView, scenario: str) -> Turn | None:
    """The turn a scenario is, from the session's config (None: not a conversation's turn)."""
    try:
        s = view.config.scenario(scenario)
    except KeyError:
        return None
    if not s.conversation or not s.turn:
        return None
    return s.turn, s.turns, None, None


def _live_turn(view: SessionView, cur: RunState) -> Turn | None:
    """A conversation's turn in progress: its place from the config; once its cache_prep phase has
    ended, the tokens the cache kept (that phase's n_tokens) and the rest of the prompt, to evaluate."""
    t = _turn_of(view, cur.scenario)
    if t is None:
        return None
    prep = next((p for p in cur.phases if p.phase == "cache_prep" and p.n_tokens is not None), None)
    if prep is None:
        return t
    cached = max(int(prep.n_tokens or 0), 0)
    return t[0], t[1], cached, max(int(cur.started.prompt_tokens) - cached, 0)


def _headline(title: str, ttft: str, note: str, conv: Turn | None, width: int) -> str:
    """The headline: title, TTFT and note, and for a conversation's turn its place and what the
    cache held, as much of that as fits on one line (a wrapped headline would push the bar down):
    "turn 3/6 · 412 cached + 37 new", then without the turn (the name says it: NAME@CACHE@t3),
    then with the live note shortened to "(so far)", then the cached tokens alone."""
    if conv is None:
        return f"{title}{ttft}{note}"
    turn, turns, cached, new = conv
    where = f"turn {turn}/{turns}" if turns else f"turn {turn}"
    tokens = [] if cached is None else [f"{cached:,} cached + {new or 0:,} new", f"{cached:,} cached"]
    short = "  (so far)" if note else ""
    tries = ([f" · {where} · {tokens[0]}", f" · {tokens[0]}"] if tokens else [f" · {where}"])
    for n in (note, short):
        for t in tries:
            if len(title) + len(t) + len(ttft) + len(n) <= width:
                return f"{title}{t}{ttft}{n}"
    if tokens and len(title) + len(tokens[1]) + 3 + len(ttft) + len(short) <= width:
        return f"{title} · {tokens[1]}{ttft}{short}"
    return f"{title}{ttft}{note}"


def _legend_label(key: str, n_chunks: int, n_steps: int) -> str:
    """A component's label; a split one says into how many parts ("prefill×4", "steps: forward×8")."""
    if key in ("prefill", "server_prefill") and n_chunks > 1:
        return f"{R.component_label(key)}×{n_chunks}"
    if key == "step_forward" and n_steps:
        return f"{R.component_label(key)}×{n_steps}"
    return R.component_label(key)


def _current_parts(state: SessionState, view: SessionView, now_ns: int):
    """(title, components so far, prefill chunks, diffusion steps, total ms, note, conversation's
    turn) of the run to draw. A diffusion run's steps ((forward, selection) ms each) are those up to
    its first readable token; a conversation's turn is (turn, turns, cached, new tokens) or None."""
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
        return title, parts, chunks, steps, elapsed, note, _live_turn(view, cur)
    last = next((r for r in reversed(state.runs) if r.metrics is not None), None)
    if last is None:
        if cur is not None:
            ms = max((now_ns - cur.started.t_ns) / 1e6, 0.0)
            return (f"run {cur.run_id} • {cur.scenario}", {"pending": ms}, [], [], ms, "  (starting)",
                    _live_turn(view, cur))
        return "", None, [], [], 0.0, "", None
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
    c = fin.conversation if fin is not None else None
    conv = (c.turn, c.turns, c.cached_tokens, c.new_tokens) if c is not None else None
    return title, parts, chunks, steps, m.ttft_ms, "", conv


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
