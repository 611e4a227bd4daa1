"""Replay: a recording as an event source, at the recorded pace (or faster), with seek.

Replay is just another source for the same consumers: the dashboard drains it exactly as it drains
a live session. Seeking folds the events from the start (or from the nearest checkpoint, kept every
``CHECKPOINT_EVERY`` events) up to the target time with the same pure reducer, so the state after a
seek to *t* is the state a live viewer had at *t*.
"""

from __future__ import annotations

import bisect
import time
from typing import Any, Callable

from ttftui.analysis.reducer import SessionState, apply, initial_state
from ttftui.core.events import RunFailed, RunFinished, RunStarted
from ttftui.run.source import SourceBase

SPEEDS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, float("inf"))
CHECKPOINT_EVERY = 5000
MAX_PER_DRAIN = 20000  # "as fast as possible" still yields to the screen between batches
BACK_AGAIN_S = 2.0  # a second "[" within this wall time goes one run further back


def fmt_clock(ns: int) -> str:
    s = max(ns, 0) // 1_000_000_000
    return f"{s // 60:02d}:{s % 60:02d}"


def fmt_speed(speed: float) -> str:
    return "max" if speed == float("inf") else f"{speed:g}×"


class ReplaySource(SourceBase):
    """A recording as a :class:`ttftui.run.source.Source`, with replay's own controls (speed, seek)."""

    mode = "replay"

    def __init__(self, events: list[Any], *, source_name: str = "", speed: float = 1.0,
                 wall: Callable[[], float] = time.monotonic):
        self.events = events
        self.times = [getattr(e, "t_ns", 0) for e in events]
        # time stamps are per source clock; make them non-decreasing for bisect (they are, in practice)
        for i in range(1, len(self.times)):
            if self.times[i] < self.times[i - 1]:
                self.times[i] = self.times[i - 1]
        self.run_starts = [i for i, e in enumerate(events) if isinstance(e, RunStarted)]
        self.end_ns = self.times[-1] if self.times else 0
        self.source_name = source_name
        self.speed = speed
        self.paused = False
        self._wall = wall
        self._i = 0  # next event to hand out
        self._pos_ns = self.times[0] if self.times else 0
        self._last_wall: float | None = None
        self._reset: SessionState | None = None
        self._checkpoints: list[tuple[int, SessionState]] = [(0, initial_state())]
        self._back: tuple[int, float] | None = None  # (run index, wall time) of the last "previous"

    # ----------------------------------------------------------------- consumer API
    def start(self) -> None:
        self._last_wall = self._wall()

    def drain(self) -> list[Any]:
        now = self._wall()
        if self._last_wall is None:
            self._last_wall = now
        if not self.paused:
            if self.speed == float("inf"):
                j = min(len(self.events), self._i + MAX_PER_DRAIN)
                self._pos_ns = self.times[j - 1] if j else 0
            else:
                self._pos_ns += int((now - self._last_wall) * self.speed * 1e9)
                self._pos_ns = min(self._pos_ns, self.end_ns)
        self._last_wall = now
        j = bisect.bisect_right(self.times, self._pos_ns, lo=self._i)
        if self.speed == float("inf") and not self.paused:
            j = min(len(self.events), max(j, self._i + MAX_PER_DRAIN))
        out = self.events[self._i:j]
        self._i = j
        return out

    def take_reset(self) -> SessionState | None:
        """After a seek: the state the consumer must start from (then it keeps folding drains)."""
        r, self._reset = self._reset, None
        return r

    def now_ns(self) -> int:
        return self._pos_ns

    @property
    def finished(self) -> bool:
        return self._i >= len(self.events)

    def stop(self) -> None:
        self.paused = True

    def join(self, timeout: float) -> None:
        pass

    def exit_code(self) -> int:
        return 0

    def error_message(self) -> str | None:
        return None

    def activity(self, state: Any) -> str:
        mark = "❚❚ paused" if self.paused else "▶"
        done = " (end)" if self.finished else ""
        return f"{mark} {fmt_speed(self.speed)}  {fmt_clock(self._pos_ns)} / {fmt_clock(self.end_ns)}{done}"

    def status_extra(self) -> str:
        return f"{self.source_name}"

    # ----------------------------------------------------------------- controls
    def toggle_pause(self) -> bool:
        self.paused = not self.paused
        self._last_wall = self._wall()
        return self.paused

    def faster(self) -> float:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 2
        self.speed = SPEEDS[min(i + 1, len(SPEEDS) - 1)]
        return self.speed

    def slower(self) -> float:
        i = SPEEDS.index(self.speed) if self.speed in SPEEDS else 2
        self.speed = SPEEDS[max(i - 1, 0)]
        return self.speed

    def seek(self, t_ns: int) -> None:
        """Jump to session time ``t_ns``: everything at or before it is folded, the rest follows."""
        t_ns = max(0, min(t_ns, self.end_ns))
        j = bisect.bisect_right(self.times, t_ns)
        self._reset = self.state_at_index(j)
        self._i = j
        self._pos_ns = t_ns
        self._last_wall = self._wall()

    def state_at_index(self, j: int) -> SessionState:
        """Fold events[:j] (from the nearest checkpoint; checkpoints are kept as we go)."""
        k = bisect.bisect_right([c[0] for c in self._checkpoints], j) - 1
        idx, state = self._checkpoints[k]
        while idx < j:
            state = apply(state, self.events[idx])
            idx += 1
            if idx % CHECKPOINT_EVERY == 0 and idx > self._checkpoints[-1][0]:
                self._checkpoints.append((idx, state))
        return state

    def seek_run(self, step: int) -> None:
        """Start of the next (step=+1) or previous (step=-1) run, like a media player's buttons.
        "Previous" restarts the run in progress, unless it has only just begun (here, or because
        the last ``[`` went there less than ``BACK_AGAIN_S`` ago while it plays on): then it goes to
        the run before. Between runs and at the end, the run shown is the last that ended, so
        "previous" is the one before it."""
        if not self.run_starts:
            return
        cur = bisect.bisect_right(self.run_starts, self._i - 1) - 1  # run the cursor is in (-1: before any)
        if step > 0:
            k = min(cur + 1, len(self.run_starts) - 1)
        else:
            now = self._wall()
            just_begun = cur >= 0 and (self._i - 1 <= self.run_starts[cur]
                                       or (self._back is not None and self._back[0] == cur
                                           and now - self._back[1] < BACK_AGAIN_S))
            ended = cur >= 0 and self._run_ended(cur)
            k = max(cur - 1 if (just_begun or ended) else cur, 0)
            self._back = (k, now)
        self.seek(self.times[self.run_starts[k]])

    def _run_ended(self, k: int) -> bool:
        """Whether the k-th run's end (run_finished / run_failed) is behind the cursor."""
        rid = self.events[self.run_starts[k]].run_id
        end = self.run_starts[k + 1] if k + 1 < len(self.run_starts) else len(self.events)
        return any(isinstance(e, (RunFinished, RunFailed)) and e.run_id == rid
                   for e in self.events[self.run_starts[k]:min(self._i, end)])

    def seek_start(self) -> None:
        self.seek(0)

    def seek_end(self) -> None:
        self.seek(self.end_ns)
