"""The alerts panel: an engine crash first, then firing and cleared threshold rules."""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ttftui.analysis.alerts import latest_alerts
from ttftui.analysis.reducer import SessionState
from ttftui.tui import render as R
from ttftui.tui.widgets.panel import Panel


class AlertsPanel(Panel):
    def __init__(self, **kw: Any):
        super().__init__("Alerts", **kw)

    def view_key(self, state: SessionState, n_rules: int) -> Any:
        return (len(state.alerts), n_rules, state.crash is not None, self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, n_rules: int) -> None:
        th = self.theme_file
        crash = Text()
        if state.crash is not None:  # the engine's process died: above every rule, it stays on screen
            color = th.textual.error
            crash.append(" ENGINE CRASHED ", style=f"bold {R.text_on(color)} on {color}")
            crash.append(f" {state.crash.message}\n")
            for line in state.crash.log_tail[:3]:  # the fault handler's verdict and innermost frames
                crash.append(f"   {line}\n", style="dim")
            if not state.alerts:
                crash.rstrip()
                self.update_sized(crash)
                return
        if not state.alerts:
            msg = ("no rules — add [[alerts]] to config.toml" if n_rules == 0
                   else f"all clear: {n_rules} rule{'s' if n_rules != 1 else ''} checked after every run")
            self.update_sized(Text(msg, style="dim"))
            return
        latest = [a for a, _ in latest_alerts(state.alerts).values()]
        out = crash
        firing = [a for a in latest if a.state == "firing"]
        cleared = [a for a in latest if a.state == "cleared"]
        for a in sorted(firing, key=lambda a: a.severity != "critical"):
            color = th.textual.error if a.severity == "critical" else th.textual.warning
            out.append(f" {a.severity.upper()} ", style=f"bold {R.text_on(color)} on {color}")
            out.append(f" {a.message}\n")
        for a in cleared:
            out.append(" cleared ", style=f"bold {R.text_on(th.textual.success)} on {th.textual.success}")
            out.append(f" {a.message}\n", style="dim")
        out.rstrip()
        self.update_sized(out)
