"""The dashboard's layout at the sizes people run it: 80x24 (most terminals' default), 120x40 and
160x50, live and in replay, with and without the load lanes and the engine hosts. Read from a text
capture of the screen: the TTFT breakdown keeps its title, stacked bar and legend at every size,
and the panels below it keep their headers on screen (they shrink first)."""

from __future__ import annotations

import math

import pytest

from ttftui.core.config import Config
from ttftui.run.replay import ReplaySource
from ttftui.tui.app import TtftApp
from ttftui.tui.layout import share_rows

from .conftest import pilot_wait_until, two_host_session
from .fake_server import FakeServer
from .tui_support import StaticSource, fixed_clock, synthetic_session

SIZES = [(80, 24), (120, 40), (160, 50)]


def screen_lines(app: TtftApp) -> list[str]:
    """What the terminal shows, a string per row."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def panel_lines(app: TtftApp, widget) -> list[str]:
    r = widget.region
    return [ln[r.x:r.x + r.width] for ln in screen_lines(app)[r.y:r.y + r.height]]


def bar_rows(lines: list[str], width: int) -> list[str]:
    """Rows that are a full-width stacked bar (the current run's; the medians' bars are shorter)."""
    return [ln for ln in lines if ln.count("█") >= 0.8 * width]


def check_layout(app: TtftApp, size: tuple[int, int], scenarios: list[str], *, load: bool = False,
                 hosts: bool = False) -> None:
    w, h = size
    ttft = panel_lines(app, app.w_ttft)
    text = "\n".join(ttft)
    assert "TTFT breakdown" in ttft[0] and "TTFT " in ttft[1], text
    assert len(bar_rows(ttft, app.w_ttft.content_size.width)) == 1, text
    assert any("■" in ln for ln in ttft), text  # the legend
    if h >= 40:  # room for every scenario's median
        for name in scenarios:
            assert any(ln.lstrip("│ ").startswith(name) and "median" in ln for ln in ttft), (name, text)
    for widget in (app.w_ttft, app.w_stream, app.w_telemetry, app.query_one("#table")):
        r = widget.region
        assert r.height >= 2 and r.y + r.height <= h - 1, (widget.id, r)  # on screen, above the key line
    stream = panel_lines(app, app.w_stream)
    assert "Token stream" in stream[0] and "run " in stream[1]
    table = panel_lines(app, app.query_one("#table"))
    assert "Percentiles" in table[0] and "scenario" in table[1] and "TTFT" in table[2], "\n".join(table)
    if load:
        lanes = panel_lines(app, app.w_lanes)
        assert "Requests" in lanes[0] and "in flight" in lanes[1] and "scenario" in lanes[2], "\n".join(lanes)
        assert lanes[3].strip("│ ").split()[0] in scenarios
    if hosts:
        rows = panel_lines(app, app.w_hosts)
        assert "engine hosts" in rows[1], "\n".join(rows)


async def settle(app: TtftApp, pilot) -> None:
    await pilot_wait_until(pilot, lambda: app.pump.state.finished is not None or app.pump.state.current is not None)
    for _ in range(3):  # a frame, the layout it asks for, and the frame after
        await pilot.pause(0.05)


async def laid_out(app: TtftApp, pilot, size: tuple[int, int], scenarios: list[str], **kw) -> None:
    """check_layout once the screen has settled (a resize takes a few frames, more on a busy machine)."""

    def ok() -> bool:
        try:
            check_layout(app, size, scenarios, **kw)
        except AssertionError:
            return False
        return True

    try:
        await pilot_wait_until(pilot, ok, timeout=20, what="the layout")
    except AssertionError:
        check_layout(app, size, scenarios, **kw)  # fails, saying what is wrong
        raise


@pytest.fixture(scope="module")
def load_events() -> list:
    """A load session against the fake server: a concurrency sweep of three cells."""
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.run.session import SessionRunner

    with FakeServer("ok", n_words=6) as srv:
        cfg = Config.model_validate({"server": {"url": srv.url}, "run": {"warmup": 0, "iterations": 3},
                                     "telemetry": {"backend": "none"},
                                     "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 8,
                                                    "concurrency": [1, 2, 4]}]})
        events: list = []
        runner = SessionRunner(cfg, lambda: RemoteEngine(cfg), events.append)
        runner.run()
    assert runner.error is None
    return events


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_live_mid_run(size):
    events = synthetic_session(stop_before_end=True)
    app = TtftApp(StaticSource(events), clock=fixed_clock(events))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await laid_out(app, pilot, size, ["short", "medium", "long"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_replay_played_to_its_end_at_full_speed(size):
    """The case that lost the headline: every event arrives in the first frame, which draws the
    breakdown while the screen is being laid out for the first time."""
    events = synthetic_session()
    app = TtftApp(ReplaySource(events, speed=math.inf), clock=fixed_clock(events))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await pilot_wait_until(pilot, lambda: app.pump.state.finished is not None)
        await pilot.pause(0.1)
        await laid_out(app, pilot, size, ["short", "medium", "long"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_a_load_session_in_replay(size, load_events):
    app = TtftApp(StaticSource(load_events, mode="replay", activity="replay"), clock=fixed_clock(load_events))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await laid_out(app, pilot, size, ["s@c1", "s@c2", "s@c4"], load=True)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_engine_hosts_in_replay(size):
    events = two_host_session()
    app = TtftApp(StaticSource(events, mode="replay", activity="replay"), clock=fixed_clock(events))
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        await laid_out(app, pilot, size, ["short"], hosts=True)


async def test_the_layout_follows_the_terminal_when_it_shrinks_and_grows(load_events):
    app = TtftApp(StaticSource(load_events, mode="replay", activity="replay"), clock=fixed_clock(load_events))
    async with app.run_test(size=(160, 50)) as pilot:
        await settle(app, pilot)
        for size in [(80, 24), (120, 40), (80, 24), (160, 50)]:
            await pilot.resize_terminal(*size)
            await laid_out(app, pilot, size, ["s@c1", "s@c2", "s@c4"], load=True)


def test_rows_go_to_the_headline_first_then_the_floors_then_the_rest():
    kw = dict(border=1, ttft_core=4, ttft_full=7, ttft_cap=8, middle_floor=5, table_floor=4)
    # plenty of room: everything gets what it wants
    r = share_rows(60, lanes_want=6, hosts_want=None, **kw)
    assert (r.ttft, r.lanes, r.hosts) == (8, 6, None)
    # 80x24 under load (21 rows): the floors first, then the medians, then the lanes
    r = share_rows(21, lanes_want=6, hosts_want=None, **kw)
    assert (r.ttft, r.lanes) == (8, 4)
    # tighter still: the medians give way, the headline (title, bar, legend) does not
    r = share_rows(16, lanes_want=6, hosts_want=5, **kw)
    assert r.ttft == 5 and r.lanes == 3 and r.hosts == 3
    r = share_rows(5, lanes_want=6, hosts_want=5, **kw)
    assert r.ttft == 5


async def test_notices_pop_up_a_few_at_most_and_their_text_is_shown_literally():
    """A warning about the numbers (e.g. a value no measurement can produce, made null) is shown as it
    arrives, a few at most (all of them are in the report); its text is shown literally."""
    from ttftui.core.events import Notice

    events = synthetic_session()
    t = events[-2].t_ns
    notices = [Notice(t_ns=t, level="warning", message=f"run {i}: ttft_ns = -250 ms [/x] is no measurement: null")
               for i in range(8)] + [Notice(t_ns=t, level="info", message="just so you know")]
    events = events[:-1] + notices + events[-1:]
    app = TtftApp(StaticSource(events, mode="replay", activity="replay"), clock=fixed_clock(events))
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        await pilot_wait_until(pilot, lambda: any(n.message.startswith("more notices") for n in app._notifications),
                               what="the toasts")
        shown = [n.message for n in app._notifications]
        # the synthetic session's own notice is not one (its status bar says SYNTHETIC on every frame)
        assert shown[:5] == [f"run {i}: ttft_ns = -250 ms [/x] is no measurement: null" for i in range(5)]
        assert shown[5].startswith("more notices") and len(shown) == 6  # the info notice is not a toast
