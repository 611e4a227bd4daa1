"""Live sessions: the session runner in a worker thread, as the headless report and the dashboard
drive it. A source never touches a widget; the dashboard only drains it on its own timer."""

from __future__ import annotations

import sys
import threading
from typing import Any, Callable

from ttftui.analysis.reducer import SessionState
from ttftui.core.config import Config
from ttftui.core.errors import EngineCrash, TtftuiError
from ttftui.core.events import Event, RunFailed, RunFinished, SessionFinished
from ttftui.measure.engine.base import Engine
from ttftui.run.executors import Executors
from ttftui.run.session import Controls, EventBus, SessionRunner
from ttftui.run.source import SourceBase

GIL_SWITCH_S = 0.0005
BETWEEN_RUNS_S = 0.3


def yield_to_engine() -> None:
    """Make the dashboard give way to the engine it measures: while the UI thread holds the GIL,
    the engine thread returning from llama_decode waits up to the switch interval for it, so a short
    interval hands the GIL over sooner. (The UI thread keeps its normal priority: at a higher nice
    value a frame holds the GIL in slices for far longer, and costs llama.cpp more, not less;
    benchmarks/bench_dashboard.py measures it.)"""

    sys.setswitchinterval(GIL_SWITCH_S)


_WAKE_ON = {RunFinished, RunFailed, SessionFinished}


class LiveSession:
    """A session runner in its worker thread, publishing into a bus that the front end drains: the
    set-up the headless report (``ttftui.run.pump.run_live``) and the dashboard share."""

    def __init__(self, config: Config, names: list[str], engine_factory: Callable[[], Engine], *,
                 controls: Controls | None = None, executors: Executors | None = None):
        self.config = config
        self.bus = EventBus()
        self.controls = controls or Controls()
        self._wake: Callable[[], None] | None = None
        self.runner = SessionRunner(config, engine_factory, self._publish, scenarios=names, controls=self.controls,
                                    executors=executors)
        self._thread = threading.Thread(target=self.runner.run, name="ttftui-engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def set_wake(self, wake: Callable[[], None]) -> None:
        """``wake()`` is called from the engine thread when a run or the session ends, so that a
        front end that polls slowly (the dashboard while llama.cpp has every core) takes the result
        in at once, in the untimed pause between runs. It must not block (the dashboard's posts to
        its event loop)."""
        self._wake = wake

    def _publish(self, event: Event) -> None:
        self.bus.publish(event)
        if self._wake is not None and type(event) in _WAKE_ON:
            self._wake()

    def drain(self) -> list[Event]:
        return self.bus.drain(timeout=0)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)


class LiveSource(LiveSession, SourceBase):
    """A live session as the dashboard's source: keeps the engine alive for re-runs after the plan,
    pauses between runs so each result is drawn while the engine is idle, and turns keys into
    controls."""

    mode = "live"

    def __init__(self, config: Config, names: list[str], engine_factory: Callable[[], Engine],
                 recorder: Any = None, *, yield_ui: bool = False, executors: Executors | None = None):
        # A short untimed gap between runs lets the dashboard draw each run's results while the
        # engine is idle instead of during the next prefill.
        super().__init__(config, names, engine_factory,
                         controls=Controls(keep_alive=True, between_runs_s=BETWEEN_RUNS_S), executors=executors)
        self.yield_ui = yield_ui  # the real dashboard: a short GIL switch interval once the engine runs
        self.recorder = recorder

    def start(self) -> None:
        super().start()
        if self.yield_ui:  # process-wide and lasting: only for the dashboard's own process
            yield_to_engine()

    def now_ns(self) -> int:
        clock = self.runner.clock
        return clock.now_ns() if clock is not None else 0

    @property
    def total_runs(self) -> int:
        return self.runner.planned_runs

    def stop(self) -> None:
        # Quitting after the plan (and every re-run) is done ends a complete session, not an interrupted one.
        self.controls.request_stop("completed" if self.runner.idle else "interrupted")

    # --- controls exposed to keys
    def toggle_pause(self) -> bool:
        if self.controls.paused.is_set():
            self.controls.paused.clear()
        else:
            self.controls.paused.set()
        return self.controls.paused.is_set()

    def rerun(self, scenario: str) -> None:
        self.controls.requests.put(scenario)

    def skip_scenario(self) -> None:
        self.controls.skip_scenario.set()

    def activity(self, state: SessionState) -> str:
        if isinstance(self.runner.error, EngineCrash):
            return f"CRASHED: {self.runner.error} — q quits"
        if self.runner.error is not None:
            return f"FAILED: {self.runner.error}"
        if state.engine is None:
            return "loading model…"
        if self.controls.stop.is_set():
            return "stopping…" if self.alive else "stopped"
        paused = self.controls.paused.is_set()
        if state.current is not None:
            return "running (pauses after this run)" if paused else "running"
        if paused:
            return "paused — p to resume"
        return "done — r re-runs a scenario, q quits" if self.runner.idle else "running"

    def status_extra(self) -> str:
        r = self.recorder
        if r is None:
            return ""
        if r.error is not None:
            return f"REC FAILED: {r.error}"
        if r.closed:
            return f"recorded {r.path.name} ({r.n_events} events)"
        return f"● REC {r.path.name} ({r.n_events} events, {r.file_size / 1024:.0f} KiB)"

    def exit_code(self) -> int:
        err = self.runner.error
        if isinstance(err, TtftuiError):
            return err.exit_code
        return 70 if err is not None else 0

    def error_message(self) -> str | None:
        return str(self.runner.error) if self.runner.error is not None else None
