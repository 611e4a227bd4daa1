"""Start the dashboard: on a live session (``ttftui``) or on a recording (``ttftui replay FILE``)."""

from __future__ import annotations

import os
import sys
from typing import Any

from ttftui.analysis.reducer import session_config
from ttftui.cluster.executors import executors_for
from ttftui.core.config import Config
from ttftui.core.errors import ConfigError, OutputNotWritable
from ttftui.core.events import SessionStarted
from ttftui.core.output import say
from ttftui.measure.select import select_engine
from ttftui.run.live import LiveSource
from ttftui.run.pump import Pump
from ttftui.run.replay import ReplaySource
from ttftui.tui.app import TtftApp


def _internal_error(app: Any) -> int | None:
    """Exit code 70 and one line when the dashboard itself failed (a bug), else None."""
    err = app.internal_error
    if err is None:
        return None
    say(f"internal error in the dashboard: {type(err).__name__}: {err} (set TTFTUI_DEBUG=1 for a traceback; "
        "please report it)")
    return 70


def _need_terminal() -> None:
    if os.environ.get("TEXTUAL_DRIVER", "").endswith(":WebDriver"):
        return  # started by ttftui serve: the browser is the terminal (textual-serve's web driver)
    if not (sys.stdout.isatty() and sys.stdin.isatty()):
        raise ConfigError("the dashboard needs a terminal; use --headless for a report")


def run_dashboard(config: Config, names: list[str], *, synthetic: bool = False, recorder: Any = None,
                  evaluator: Any = None, n_rules: int = 0, baseline: Any = None) -> int:
    _need_terminal()
    factory = select_engine(config, force_synthetic=synthetic, pace=config.engine.synthetic_pace)
    source = LiveSource(config, names, factory, recorder=recorder, yield_ui=True, executors=executors_for(config))
    pump = Pump([recorder] if recorder is not None else [], evaluator=evaluator)
    app = TtftApp(source, theme=config.ui.theme, refresh_hz=config.ui.refresh_hz, pump=pump, n_rules=n_rules,
                  baseline=baseline, busy_cpu_pct=config.ui.busy_cpu_pct)
    try:
        code = app.run()
    finally:
        source.stop()  # after a dashboard failure too: the engine (and its process) must not outlive us
        source.join(1.0)
        if source.alive:  # an engine host that does not answer is killed after engine.stop_grace_s
            say("waiting for the engine to stop…")
            source.join(config.engine.stop_grace_s + 5.0)
        try:
            pump.feed(source.drain())  # what came after the dashboard closed (the session's end) is recorded
        finally:
            if recorder is not None:
                recorder.close()
    bug = _internal_error(app)
    if source.error_message():
        say(f"{source.error_message()}")
    if app.theme_problem:
        say(f"{app.theme_problem}")
    if recorder is not None and recorder.error is None:
        say(f"recorded {recorder.n_events} events to {recorder.path}")
    if bug is not None:
        return bug
    if recorder is not None and recorder.error is not None:
        say(f"{recorder.error}")
        return OutputNotWritable.exit_code
    return code if isinstance(code, int) else 0


def run_replay_dashboard(recording: Any, *, theme: str, speed: float, refresh_hz: float = 4.0,
                         baseline: Any = None) -> int:
    _need_terminal()
    source = ReplaySource(recording.events, source_name=recording.path, speed=speed)
    n_rules = _rules_in(recording.events)
    app = TtftApp(source, theme=theme, refresh_hz=refresh_hz, pump=Pump(), n_rules=n_rules, baseline=baseline)
    code = app.run()
    if app.theme_problem:
        say(f"{app.theme_problem}")
    bug = _internal_error(app)
    if bug is not None:
        return bug
    return code if isinstance(code, int) else 0


def _rules_in(events: list[Any]) -> int:
    for e in events:
        if isinstance(e, SessionStarted):
            cfg = session_config(e.config)
            return len(cfg.alerts) if cfg is not None else 0
    return 0
