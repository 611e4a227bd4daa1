"""The consumer side of a session, shared by the headless reporter and the dashboard.

A :class:`Pump` takes events from any source (a live session's bus or a recording), folds them into
the session state with the pure reducer, hands each one to the sinks (recorder, progress, …) and,
for live sessions, lets the alert evaluator react to each ended run by emitting alert events, which
go through the same path, so they are folded, recorded and shown like everything else.

:func:`run_live` drives a live session (:class:`ttftui.run.live.LiveSession`) from the calling (main) thread; SIGINT
and SIGTERM become a *stop request* (the engine stops between tokens) instead of an exception that
could tear the state apart, and the session still ends with its SessionFinished event.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any, Callable, Iterable

from ttftui.analysis.reducer import SessionState, apply, initial_state
from ttftui.core.events import Event, RunFailed, RunFinished
from ttftui.run.live import LiveSession
from ttftui.run.session import Controls

Sink = Callable[[Event], None]
Evaluator = Callable[[SessionState, Event], Iterable[Event]]


class Pump:
    def __init__(self, sinks: Iterable[Sink] = (), evaluator: Evaluator | None = None):
        self.state: SessionState = initial_state()
        self.sinks = list(sinks)
        self.evaluator = evaluator

    def feed(self, events: Iterable[Event]) -> SessionState:
        for ev in events:
            self._one(ev)
        return self.state

    def _one(self, ev: Event) -> None:
        self.state = apply(self.state, ev)
        for sink in self.sinks:
            sink(ev)
        if self.evaluator is not None and isinstance(ev, (RunFinished, RunFailed)):
            for derived in self.evaluator(self.state, ev):
                self._one(derived)


class _Signals:
    """SIGINT / SIGTERM -> a stop request, for the duration of a ``with`` block (main thread only)."""

    def __init__(self, controls: Controls):
        self.controls = controls
        self.saved: dict[int, Any] = {}
        self.count = 0

    def _handler(self, signum: int, _frame: Any) -> None:
        self.count += 1
        if self.count > 2:  # third press: the user really wants out now
            raise KeyboardInterrupt
        self.controls.request_stop("terminated" if signum == signal.SIGTERM else "interrupted")

    def __enter__(self) -> "_Signals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.saved[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, h in self.saved.items():
            signal.signal(sig, h)


def run_live(session: LiveSession, pump: Pump, *, poll_s: float = 0.05) -> SessionState:
    """Run ``session`` (its runner in a worker thread) and pump its events here until it has finished.

    The consumer polls on a fixed cadence instead of waking on every event: a wake-up per token
    would take a core (and, with an in-process engine, the GIL) from the engine it measures."""
    with _Signals(session.controls):
        session.start()
        while True:
            alive = session.alive
            events = session.drain()
            if events:
                pump.feed(events)
            elif not alive:
                break
            time.sleep(poll_s)
    return pump.state
