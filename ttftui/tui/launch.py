"""Start the dashboard for a live session (``ttftui`` with no --headless)."""

from __future__ import annotations

import sys

from ttftui.config import Config


def run_dashboard(config: Config, names: list[str], *, synthetic: bool = False) -> int:
    from ttftui.engine import select_engine
    from ttftui.pump import Pump
    from ttftui.tui.app import TtftApp
    from ttftui.tui.sources import LiveSource

    if not sys.stdout.isatty():
        from ttftui.errors import ConfigError

        raise ConfigError("the dashboard needs a terminal; use --headless for a report")
    factory = select_engine(config, force_synthetic=synthetic, pace=config.engine.synthetic_pace)
    source = LiveSource(config, names, factory)
    app = TtftApp(source, theme=config.ui.theme, refresh_hz=config.ui.refresh_hz, pump=Pump())
    code = app.run()
    if source.error_message():
        sys.stderr.write(f"ttftui: {source.error_message()}\n")
    if app.theme_problem:
        sys.stderr.write(f"ttftui: {app.theme_problem}\n")
    return code if isinstance(code, int) else 0
