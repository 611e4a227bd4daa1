"""The status bar: what is measured (REAL / SYNTHETIC / REPLAY, model, device) and where we are."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from ttftui.analysis.alerts import firing
from ttftui.analysis.load import plan_for
from ttftui.analysis.reducer import RunState, SessionState
from ttftui.tui import render as R
from ttftui.tui.themes import ThemeFile


class StatusBar(Static):
    """Two lines: what is measured (REAL / SYNTHETIC / REPLAY, model, device) and where we are."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.theme_file: ThemeFile | None = None
        self._last: Any = None

    def set_theme(self, theme: ThemeFile) -> None:
        """A new theme: the next ``show`` redraws."""
        self.theme_file = theme
        self._last = None

    def show(self, state: SessionState, *, mode: str, activity: str, now_ns: int, extra: str = "",
             total_runs: int | None = None) -> None:
        th = self.theme_file
        eng = state.engine
        critical = firing(state.alerts, "critical")
        key = (id(eng), mode, activity, now_ns // 1_000_000_000, extra, state.current and state.current.run_id,
               len(state.runs), th and th.name, total_runs, len(critical), len(state.engines), len(state.in_flight))
        if key == self._last:
            return
        self._last = key
        t = Text(no_wrap=True, overflow="ellipsis")
        if eng is None:
            t.append(" LOADING ", style="bold reverse")
            t.append("  starting the engine…")
        else:
            synthetic = bool(state.synthetic)  # with Ray engine hosts: if any host's engine is
            color = th.badges.synthetic if synthetic else th.badges.real
            label = " SYNTHETIC " if synthetic else " REAL "
            t.append(label, style=f"bold {R.text_on(color)} on {color}")
            if mode == "replay":
                t.append(" ")
                t.append(" REPLAY ", style=f"bold {R.text_on(th.badges.replay)} on {th.badges.replay}")
            if synthetic:
                why = eng.synthetic_reason or next((e.synthetic_reason for e in state.engines if e.synthetic), "")
                t.append(f" not measured: {why}", style=f"bold {th.badges.synthetic}")
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
            hosts = {e.worker for e in state.engines if e.worker is not None}
            if hosts:
                t.append(f"  •  {len(hosts)} Ray engine host{'s' if len(hosts) != 1 else ''}"
                         f"{'' if len(state.engines) == len(hosts) else f', {len(state.engines)} engines'}", style="bold")
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
            t.append(f"  •  run {len(state.runs) + len(state.in_flight)}/{total_runs}")
        if extra:
            t.append(f"  •  {extra}")
        self.update(t, layout=False)  # fixed height: no re-layout of the whole screen


def _run_position(state: SessionState, cur: RunState) -> str:
    cfg = state.config
    run = cfg.run if cfg is not None else None
    warm = run.warmup if run else 0
    iters = run.iterations if run else 0
    plan = None
    if cfg is not None and run is not None:
        try:
            plan = plan_for(run, cfg.scenario(cur.scenario))
        except KeyError:
            plan = None
    if plan is not None:  # a load scenario: requests, not runs
        warm, iters = plan.n_warmup, plan.n_counted
    # counted from the runs themselves: a session-wide warm-up (run.warmup_policy) shifts iterations
    same = [r for r in (*state.runs, *state.in_flight) if r.scenario == cur.scenario and r is not cur]
    if cur.warmup:
        k = sum(r.warmup for r in same) + 1
        return f"warm-up {k}/{warm}" if k <= warm else "extra warm-up"
    n = sum(not r.warmup for r in same) + 1
    word = "request" if plan is not None else "run"
    return f"{word} {n}/{iters}" if n <= iters else f"extra {word} {n}"
