"""What a front end is fed from: a live session or a recording, behind one interface.

The dashboard (and anything else that draws a session) only talks to a :class:`Source`: it drains
events on its own timer, asks what to say in its status line, and forwards the user's keys. Live
sessions (:class:`ttftui.run.live.LiveSource`) and replays (:class:`ttftui.run.replay.ReplaySource`) both
implement it; :class:`SourceBase` gives the parts that one kind has no use for a neutral default, so
no front end ever needs to probe a source with ``getattr``. Textual-free, like the whole core.
"""

from __future__ import annotations

from typing import Callable, Literal, Protocol, runtime_checkable

from ttftui.analysis.reducer import SessionState
from ttftui.core.events import Event


@runtime_checkable
class Source(Protocol):
    mode: Literal["live", "replay"]

    def start(self) -> None: ...
    def drain(self) -> list[Event]: ...
    def now_ns(self) -> int: ...
    def stop(self) -> None: ...
    def join(self, timeout: float) -> None: ...
    @property
    def alive(self) -> bool: ...
    @property
    def total_runs(self) -> int | None: ...
    def activity(self, state: SessionState) -> str: ...
    def status_extra(self) -> str: ...
    def exit_code(self) -> int: ...
    def error_message(self) -> str | None: ...
    def take_reset(self) -> SessionState | None: ...
    def set_wake(self, wake: Callable[[], None]) -> None: ...
    def toggle_pause(self) -> bool: ...
    def rerun(self, scenario: str) -> None: ...
    def skip_scenario(self) -> None: ...


class SourceBase:
    """Neutral defaults: nothing to wake, no seek reset, no plan, no extra status, no error."""

    mode: Literal["live", "replay"] = "live"

    @property
    def alive(self) -> bool:
        return False

    @property
    def total_runs(self) -> int | None:
        return None

    def status_extra(self) -> str:
        return ""

    def exit_code(self) -> int:
        return 0

    def error_message(self) -> str | None:
        return None

    def take_reset(self) -> SessionState | None:
        return None

    def set_wake(self, wake: Callable[[], None]) -> None:
        pass

    def toggle_pause(self) -> bool:
        return False

    def rerun(self, scenario: str) -> None:
        pass

    def skip_scenario(self) -> None:
        pass

    def join(self, timeout: float) -> None:
        pass
