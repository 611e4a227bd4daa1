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

import time
from typing import Callable


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
