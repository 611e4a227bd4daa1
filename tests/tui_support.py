"""Deterministic event sources for dashboard tests: recorded-in-memory synthetic sessions, a fixed
clock, and a record of the control calls the keys made."""

from __future__ import annotations

import re
from typing import Any, Iterable

from ttftui.core.config import Config
from ttftui.core.events import RunStarted, SessionFinished
from ttftui.run.source import SourceBase


def synthetic_session(iterations: int = 3, warmup: int = 1, scenarios: list[dict] | None = None,
                      stop_before_end: bool = False) -> list[Any]:
    """A complete synthetic session (virtual clock: the same events every time)."""
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({
        "run": {"iterations": iterations, "warmup": warmup, "seed": 3},
        "scenarios": scenarios or [
            {"name": "short", "prompt_tokens": 128, "max_tokens": 24},
            {"name": "medium", "prompt_tokens": 512, "max_tokens": 24},
            {"name": "long", "prompt_tokens": 2048, "max_tokens": 24},
        ],
    })
    events: list[Any] = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test data (deterministic)"), events.append).run()
    if stop_before_end:
        # cut inside the last run, after its prefill: the dashboard shows a run in progress
        last_start = max(i for i, e in enumerate(events) if isinstance(e, RunStarted))
        events = events[: last_start + 8]
    return events


class StaticSource(SourceBase):
    """Hands the app a fixed list of events on the first drain; records what the keys asked."""

    def __init__(self, events: list[Any], mode: str = "live", activity: str = "running"):
        self.events = list(events)
        self.mode = mode
        self._activity = activity
        self.calls: list[tuple[str, Any]] = []
        self._paused = False

    def start(self) -> None:
        self.calls.append(("start", None))

    def drain(self) -> list[Any]:
        out, self.events = self.events, []
        return out

    def now_ns(self) -> int:
        return 0

    def stop(self) -> None:
        self.calls.append(("stop", None))

    def join(self, timeout: float) -> None:
        pass

    def toggle_pause(self) -> bool:
        self._paused = not self._paused
        self.calls.append(("pause", self._paused))
        return self._paused

    def rerun(self, scenario: str) -> None:
        self.calls.append(("rerun", scenario))

    def skip_scenario(self) -> None:
        self.calls.append(("skip", None))

    def activity(self, state: Any) -> str:
        return self._activity

    def exit_code(self) -> int:
        return 0

    def error_message(self) -> str | None:
        return None


def fixed_clock(events: list[Any]):
    """A clock frozen just after the last event (so "elapsed" and "so far" are deterministic)."""
    last = max((getattr(e, "t_ns", 0) for e in events if not isinstance(e, SessionFinished)), default=0)
    return lambda: last + 1_000_000


def report_text(events: Iterable[Any]) -> str:
    """The JSON report a session's events make, as headless writes it."""
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report, report_json

    return report_json(build_report(fold(list(events))))


def html_section(page: str, sid: str) -> str:
    """An HTML report from its ``<h2 id=sid>`` to the next ``<h2``."""
    m = re.search(rf'<h2 id="{sid}">.*?(?=<h2 |$)', page, flags=re.S)
    assert m, sid
    return m.group(0)
