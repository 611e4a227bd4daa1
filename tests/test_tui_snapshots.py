"""Snapshots of the dashboard (pytest-textual-snapshot) with deterministic synthetic data: the
default theme at 80x24 and 160x48, and a finished replay. The other themes are checked by what they
must do (every colour parses, components are told apart, the bar and the legend draw in the theme's
colours: tests/test_tui.py), not by three more snapshots that every change to a panel rewrites.
Update after an intended change with: pytest --snapshot-update"""

from __future__ import annotations

import pytest

from ttftui.tui.app import TtftApp

from .tui_support import StaticSource, fixed_clock, synthetic_session


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("theme", ["dark"])
def test_dashboard(snap_compare, theme, size):
    events = synthetic_session(stop_before_end=True)
    app = TtftApp(StaticSource(events), theme=theme, clock=fixed_clock(events))
    assert snap_compare(app, terminal_size=size)


def test_dashboard_finished_session_replay_badge(snap_compare):
    events = synthetic_session()
    app = TtftApp(StaticSource(events, mode="replay", activity="replay 1× — 100% of 00:31"),
                  clock=fixed_clock(events))
    assert snap_compare(app, terminal_size=(120, 36))
