"""The telemetry panel: GPU and host sparklines with the run phases marked, or N/A with the reason."""

from __future__ import annotations

from typing import Any

from ttftui.analysis.reducer import SessionState
from ttftui.analysis.view import SessionView
from ttftui.tui.telemetry_view import telemetry_text
from ttftui.tui.widgets.panel import LinePanel


class TelemetryPanel(LinePanel):
    def __init__(self, **kw: Any):
        super().__init__("Telemetry", **kw)

    def view_key(self, state: SessionState, view: SessionView) -> Any:
        # Sparklines move once a second of sample time, whatever the sampling rate: each frame of
        # this panel costs the engine CPU, and a 10 Hz sparkline tells nothing a 1 Hz one does not.
        last = state.telemetry.last()
        run = state.runs.last()  # (its phases' gaps, if no sample landed in one)
        return (id(state.telemetry_status), id(state.telemetry.backing), last and last.t_ns // 1_000_000_000,
                run and run.run_id, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, view: SessionView) -> None:
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return
        text = telemetry_text(state, view, self.theme_file, max(width, 20))
        lines = text.wrap(self.app.console, width, overflow="ellipsis")  # an N/A reason wraps, never cut
        for t in lines:
            t.rstrip()
        self._paint([((t.plain, tuple(t.spans), str(t.style)), t) for t in lines], width, height)
