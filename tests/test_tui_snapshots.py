"""Snapshots of the dashboard (pytest-textual-snapshot) with deterministic synthetic data, for every
theme at 80x24 and 160x48. Update after an intended change with: pytest --snapshot-update"""

from __future__ import annotations

import pytest

from ttftui.tui.app import TtftApp

from .tui_support import StaticSource, fixed_clock, synthetic_session


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("theme", ["dark", "light", "high-contrast"])
def test_dashboard(snap_compare, theme, size):
    events = synthetic_session(stop_before_end=True)
    app = TtftApp(StaticSource(events), theme=theme, clock=fixed_clock(events))
    assert snap_compare(app, terminal_size=size)


def test_dashboard_finished_session_replay_badge(snap_compare):
    events = synthetic_session()
    app = TtftApp(StaticSource(events, mode="replay", activity="replay 1× — 100% of 00:31"),
                  clock=fixed_clock(events))
    assert snap_compare(app, terminal_size=(120, 36))
