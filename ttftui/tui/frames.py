"""When the dashboard may draw: the frame scheduler, apart from the app so that it can be driven
with an injected clock.

Frames are rationed. ``refresh_hz`` while tokens stream; while a prefill computes (only its clock
moves then), none in its first second and then one a second. And while a run computes on every CPU
the engine may use (llama.cpp on all of them), each millisecond the UI thread runs takes a core from a
compute thread and the others wait for it at their next barrier, and a frame costs llama.cpp more
than its CPU (``FRAME_OVERHEAD_S``: writing to the terminal, waking its threads). So then the next
frame is due once the last one's CPU (our redraw and Textual's compositing), plus that overhead, is
within ``busy_cpu_pct`` of one core over the time since it began (or since the run started): a
stream-only frame of 2 ms is followed by the next one 1.2 s later at 1 %, and never more than
``MAX_BUSY_INTERVAL_S`` later. While rationed, a frame between full ones redraws only the run in
progress, and a full frame comes at least every ``FULL_FRAME_INTERVAL_S``. Keys, a run's end and a
resize still draw at once (``force``).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, TextIO

from ttftui.analysis.reducer import SessionState
from ttftui.core.events import EngineReady


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def engine_has_every_cpu(eng: EngineReady | None) -> bool:
    """Does the engine compute with as many threads as this process has CPUs (so that the UI can
    only run in their place)? False for the synthetic engine and for a model fully offloaded to a
    GPU (its CPU threads wait on the GPU)."""
    if eng is None or eng.synthetic or eng.device.kind not in ("cpu", "gpu") or not eng.device.n_threads:
        return False
    d = eng.device
    all_on_gpu = d.kind == "gpu" and d.n_gpu_layers_offloaded > (eng.model.n_layers or 0)
    return not all_on_gpu and d.n_threads >= usable_cpus()


class FrameScheduler:
    PREFILL_DRAW_INTERVAL_S = 1.0
    MAX_BUSY_INTERVAL_S = 2.0
    FULL_FRAME_INTERVAL_S = 5.0
    # What a frame costs the engine besides the UI thread's own CPU, counted against busy_cpu_pct:
    # measured with benchmarks/bench_dashboard.py (frames placed among the recording's tokens).
    FRAME_OVERHEAD_S = 0.010

    def __init__(self, refresh_hz: float, busy_cpu_pct: float = 0.0, *, wall: Callable[[], float] = time.monotonic):
        self.refresh_hz = refresh_hz
        self.busy_cpu_pct = busy_cpu_pct  # 0 = no budget (replay, tests)
        self.wall = wall
        self.last_draw = 0.0  # when the last frame began
        self.last_full = 0.0  # when the last frame that redrew every panel began
        self.budget_from = (0.0, 0.0)  # (when the last frame began, what it cost the UI thread's CPU)
        self.budget_run: int | None = None
        self.seen_run: tuple[int | None, float] = (None, 0.0)  # the run in progress, and when it was first seen
        self._contended: tuple[Any, bool] = (None, False)  # (engine, whether it has every CPU)

    # ------------------------------------------------------------------ for a session state
    def rationed(self, state: SessionState) -> bool:
        """Are frames rationed now: a budget is set and a run computes on every CPU?"""
        if self.busy_cpu_pct <= 0 or state.current is None:
            return False
        if self._contended[0] is not state.engine:  # once per engine, not per frame
            self._contended = (state.engine, engine_has_every_cpu(state.engine))
        return self._contended[1]

    def next_frame_for(self, state: SessionState) -> float:
        cur = state.current
        return self.next_frame_at(cur.run_id if cur else None, bool(cur and cur.tokens), self.rationed(state))

    def due_for(self, state: SessionState) -> bool:
        cur = state.current
        return self.due(cur.run_id if cur else None, bool(cur and cur.tokens), self.rationed(state))

    # ------------------------------------------------------------------ the policy itself
    def next_frame_at(self, run_id: int | None, streaming: bool, throttled: bool) -> float:
        """When the next frame is due (on ``wall``'s clock), for the run in progress (None between
        runs), whether its tokens stream yet, and whether frames are rationed now."""
        due = self.last_draw + 1 / self.refresh_hz
        if run_id is not None:
            if self.seen_run[0] != run_id:
                self.seen_run = (run_id, self.wall())
            if not streaming:  # a prefill shorter than a second is never interrupted by a frame
                due = max(self.last_draw + self.PREFILL_DRAW_INTERVAL_S, self.seen_run[1] + self.PREFILL_DRAW_INTERVAL_S)
        if run_id is not None and throttled and self.busy_cpu_pct > 0:
            if self.budget_run != run_id:  # the work between runs is not the run's to pay for
                self.budget_run, self.budget_from = run_id, (self.wall(), 0.0)
            t0, cost = self.budget_from
            budget_due = t0 + (cost + self.FRAME_OVERHEAD_S) * 100 / self.busy_cpu_pct
            due = max(due, min(budget_due, self.last_draw + self.MAX_BUSY_INTERVAL_S))
        return due

    def due(self, run_id: int | None, streaming: bool, throttled: bool) -> bool:
        return self.wall() >= self.next_frame_at(run_id, streaming, throttled) - 0.01

    def begin(self, *, throttled: bool, force: bool) -> tuple[float, bool]:
        """A frame starts now: (its start, whether it redraws every panel)."""
        self.last_draw = self.wall()
        full = force or not throttled or self.last_draw - self.last_full >= self.FULL_FRAME_INTERVAL_S
        if full:
            self.last_full = self.last_draw
        return self.last_draw, full

    def spent(self, start: float, cpu_s: float) -> bool:
        """The frame that began at ``start`` cost ``cpu_s`` of the UI thread: counted unless a newer
        frame began since (True: it was counted)."""
        if self.budget_from[0] == start or self.last_draw == start:
            self.budget_from = (start, cpu_s)
            return True
        return False


class FrameLog:
    """``TTFTUI_FRAME_LOG=PATH``: one JSON line per drawn frame, to profile the dashboard. Each line
    says when the frame began (monotonic ``t``; ``t_ns`` on the engine's clock, to place it among a
    recording's tokens), the run computing and its tokens, whether every panel was redrawn, how old
    the newest event it showed was (``lag_ms``), the UI thread's CPU in our redraw (``draw_ms``) and
    through the screen update (``frame_ms``), the wall time that took (``wall_ms``) and the thread's
    CPU so far."""

    def __init__(self, path: str | None):
        self._out: TextIO | None = open(path, "a", buffering=1) if path else None  # noqa: SIM115 - app-long

    @classmethod
    def from_env(cls) -> "FrameLog":
        return cls(os.environ.get("TTFTUI_FRAME_LOG"))

    def begin(self, start: float, now_ns: int, state: SessionState, full: bool, newest_ns: int | None,
              draw_s: float) -> dict[str, Any] | None:
        """The frame's line so far, or None when not logging."""
        if self._out is None:
            return None
        cur = state.current
        lag = (now_ns - newest_ns) / 1e6 if newest_ns is not None else None
        return {"t": round(start, 4), "t_ns": now_ns, "run": cur.run_id if cur is not None else None,
                "tokens": len(cur.tokens) if cur is not None else 0, "full": full,
                "lag_ms": round(lag, 2) if lag is not None else None, "draw_ms": round(draw_s * 1000, 3)}

    def done(self, line: dict[str, Any] | None, start: float, cpu0: float, cpu: float) -> None:
        if line is None or self._out is None:
            return
        line.update(frame_ms=round((cpu - cpu0) * 1000, 3), wall_ms=round((time.monotonic() - start) * 1000, 3),
                    cpu=round(cpu, 4))
        self._out.write(json.dumps(line) + "\n")
