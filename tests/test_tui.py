"""Dashboard behaviour with Pilot: keys, panel states, literal tokens, themes, clean quit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.text import Text

from ttftui.core.events import TokenEmitted
from ttftui.tui import render as R
from ttftui.tui.app import TtftApp
from ttftui.tui.themes import ThemeLoadError, builtin_theme_names, load_theme, load_theme_or_default
from ttftui.tui.widgets import AlertsPanel, PercentileTable, StatusBar, TelemetryPanel, TokenStream, TTFTBar

from .conftest import FakeWall, pilot_wait_until, two_host_session
from .tui_support import StaticSource, fixed_clock, synthetic_session


def plain(widget) -> str:
    if isinstance(widget, (TokenStream, TelemetryPanel)):  # drawn line by line: what its rows show
        return widget.visible_text()
    c = widget.content
    return c.plain if isinstance(c, Text) else str(c)


def make_app(events=None, **kw):
    events = synthetic_session() if events is None else events
    src = StaticSource(events, **{k: v for k, v in kw.items() if k in ("mode", "activity")})
    app = TtftApp(src, clock=fixed_clock(events), **{k: v for k, v in kw.items() if k not in ("mode", "activity")})
    return app, src


async def test_panels_show_the_session():
    app, _ = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        status = plain(app.query_one(StatusBar))
        assert "SYNTHETIC" in status and "not measured" in status and "test data (deterministic)" in status
        bar = plain(app.query_one(TTFTBar))
        assert "last run 12 • long" in bar and "prefill" in bar and "unaccounted" in bar
        assert "short  median" in bar and "long   median" in bar
        stream = plain(app.query_one(TokenStream))
        assert "run 12 long · 24 tok" in stream and "tok/s" in stream
        table = app.query_one(PercentileTable)
        assert table.row_count == 3 * 12
        assert "no rules — add [[alerts]] to config.toml" in plain(app.query_one(AlertsPanel))
        assert "N/A" in plain(app.query_one(TelemetryPanel))


async def test_every_panel_draws_its_first_data_without_waiting_for_a_later_frame(monkeypatch):
    """The first (forced) frame arrives before layout: panels that had no size then must draw as
    soon as they get one, not at the next rationed frame (which is a second away during a prefill,
    so a screenshot taken in between showed an empty Alerts panel)."""
    from ttftui.tui.frames import FrameScheduler

    monkeypatch.setattr(FrameScheduler, "PREFILL_DRAW_INTERVAL_S", 3600.0)
    events = synthetic_session(stop_before_end=True)  # a run is in its prefill: frames are rationed
    app, _ = make_app(events, refresh_hz=1)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert "no rules" in plain(app.query_one(AlertsPanel))
        assert "N/A" in plain(app.query_one(TelemetryPanel))
        assert "run 11 long" in plain(app.query_one(TokenStream))
        assert "so far" in plain(app.query_one(TTFTBar))


async def test_one_more_token_repaints_only_the_rows_that_changed():
    """The token stream is drawn line by line: a new token re-renders the header rows and the line it
    lands on, not the whole answer (re-wrapping all of it every frame cost the engine CPU)."""
    from ttftui.analysis.reducer import fold

    events = synthetic_session(iterations=1, warmup=0,
                               scenarios=[{"name": "s", "prompt_tokens": 16, "max_tokens": 400}])
    tok = [i for i, e in enumerate(events) if isinstance(e, TokenEmitted)]
    app, _ = make_app(events[: tok[300]])
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.query_one(TokenStream)
        # steady state first: drawn at its final size (a resize repaints it all)
        await pilot_wait_until(pilot, lambda: "300 tok" in stream.visible_text()
                               and stream.drawn_rows == stream.content_size.height > 0, what="the stream's first draw")
        before = stream.visible_text()
        seen: list = []
        stream.refresh = lambda *regions, **kw: seen.append(regions)  # type: ignore[method-assign]
        stream.show(fold(events[: tok[300] + 1]))
        after = stream.visible_text()
        painted = list(seen)  # this show() only: the app's own ticks may draw again while it shuts down
    assert after != before and "301 tok" in after
    assert painted and all(len(r) == 1 and r[0].height == 1 for r in painted)  # single rows, never the panel
    assert len(painted) <= 4  # header (count, sparkline) and the last line or two


async def test_each_run_is_coloured_against_its_own_median_gap():
    """Two runs with the same number of tokens but different speeds: the second must not be
    coloured against the first one's median (the median is cached per run and token count)."""
    from ttftui.analysis.reducer import fold

    events = synthetic_session(iterations=2, warmup=0, scenarios=[{"name": "s", "prompt_tokens": 16, "max_tokens": 30}])
    second = max(e.run_id for e in events if isinstance(e, TokenEmitted))
    slow = [TokenEmitted(t_ns=e.t_ns, run_id=e.run_id, index=e.index, token_id=e.token_id, text=e.text,
                         dt_ns=e.dt_ns * 10) if isinstance(e, TokenEmitted) and e.run_id == second else e for e in events]
    app, _ = make_app(events[:1])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        stream = app.query_one(TokenStream)
        first_run_end = max(i for i, e in enumerate(slow) if isinstance(e, TokenEmitted) and e.run_id != second)
        stream.show(fold(slow[: first_run_end + 1]))
        stream.show(fold(slow))  # the second run, same token count, ten times slower
        shown = stream.visible_text()
    med = float(np.median([e.dt_ns / 1e6 for e in slow if isinstance(e, TokenEmitted) and e.run_id == second][1:]))
    assert f"run {second} s · 30 tok" in shown and f"p50 {R.fmt_ms(med)}" in shown
    assert stream.colour_median_ms == pytest.approx(med)  # the run has ended: coloured against its exact median


async def test_run_in_progress_shows_phases_so_far():
    events = synthetic_session(stop_before_end=True)
    app, _ = make_app(events)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        bar = plain(app.query_one(TTFTBar))
        assert "run 12 • long" in bar and "so far" in bar and "running" in bar


async def test_keys_reach_the_session_controls():
    app, src = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("p")
        await pilot.press("p")
        await pilot.press("r")
        await pilot.press("n")
        await pilot.pause()
    assert ("pause", True) in src.calls and ("pause", False) in src.calls
    assert ("rerun", "long") in src.calls
    assert ("skip", None) in src.calls


async def test_live_only_keys_are_refused_in_replay():
    app, src = make_app(mode="replay")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("r", "n")
        await pilot.pause()
    assert not any(c[0] in ("rerun", "skip") for c in src.calls)


async def test_panel_toggles_and_solo():
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        assert not app.query_one("#stream").display and app.query_one("#side").display
        await pilot.press("3")
        assert not app.query_one("#middle").display
        await pilot.press("2", "3")
        assert app.query_one("#stream").display and app.query_one("#middle").display
        app.query_one(PercentileTable).focus()
        await pilot.press("m")
        assert app.query_one("#table").display and not app.query_one("#ttft").display
        assert not app.query_one("#middle").display
        await pilot.press("m")
        assert all(app.query_one(s).display for s in ("#ttft", "#middle", "#stream", "#side", "#table"))


async def test_theme_cycles_through_every_builtin_theme():
    app, _ = make_app()
    seen = []
    async with app.run_test(size=(120, 40)) as pilot:
        for _ in builtin_theme_names():
            seen.append(app.theme_file.name)
            await pilot.press("t")
        assert app.theme_file.name == seen[0]
    assert sorted(seen) == builtin_theme_names() == ["dark", "high-contrast", "light"]


async def test_screenshot_key_writes_an_svg(tmp_path):
    app, _ = make_app(screenshot_dir=tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("s")
        await pilot.pause()
    files = list(tmp_path.glob("*.svg"))
    assert len(files) == 1 and "<svg" in files[0].read_text()[:500]


async def test_quit_stops_the_source_and_exits_zero():
    app, src = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert ("stop", None) in src.calls
    assert app.return_code == 0


async def test_markup_like_tokens_render_literally():
    events = synthetic_session(iterations=1, warmup=0, scenarios=[{"name": "s", "prompt_tokens": 8, "max_tokens": 6}])
    run_id = next(e.run_id for e in events if isinstance(e, TokenEmitted))
    nasty = ["[bold]", "[/]", "[red]x[/red]", " [link=http://e]y", "\x1b[31m", "tab\there"]
    i = 0
    for k, e in enumerate(events):
        if isinstance(e, TokenEmitted) and e.run_id == run_id and i < len(nasty):
            events[k] = TokenEmitted(t_ns=e.t_ns, run_id=e.run_id, index=e.index, token_id=e.token_id,
                                     text=nasty[i], dt_ns=e.dt_ns)
            i += 1
    app, _ = make_app(events)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = plain(app.query_one(TokenStream))
    assert "[bold][/][red]x[/red] [link=http://e]y\\x1b[31mtab    here" in text


def test_bad_theme_falls_back_with_a_message(tmp_path):
    bad = tmp_path / "mine.toml"
    bad.write_text('name = "mine"\ndark = true\n[textual]\nprimary = "not-a-colour"\n')
    th, problem = load_theme_or_default(str(bad))
    assert th.name == "dark"
    assert "mine.toml" in problem and "textual.primary" in problem and "using the default theme" in problem
    assert "\n" not in problem
    with pytest.raises(ThemeLoadError, match="unknown theme 'nope'"):
        load_theme("nope")


async def test_bad_theme_in_app_notifies_and_uses_default(tmp_path):
    bad = tmp_path / "broken.toml"
    bad.write_text("this is [not toml")
    app, _ = make_app(theme=str(bad))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.theme_file.name == "dark"
        assert app.theme_problem and "invalid TOML" in app.theme_problem


@pytest.mark.parametrize("name", builtin_theme_names())
def test_theme_files_define_every_colour_and_tell_components_apart(name):
    from textual.color import Color

    from ttftui.core import registry

    th = load_theme(name)
    assert th.name == name and th.textual_theme().name == f"ttftui-{name}"
    groups = {"components": th.components, "itl": th.itl, "badges": th.badges, "textual": th.textual}
    for group, colours in groups.items():
        for key, value in colours.model_dump().items():
            Color.parse(value)  # raises on anything Rich/Textual could not draw
    comps = th.components.model_dump()
    # each component the engine times has a colour of its own, and prefill's alternate shade differs
    engine = [m.component for m in registry.components() if m.source == "engine" and m.colour is None]
    assert len({Color.parse(comps[k]).hex for k in engine}) == len(engine)
    assert Color.parse(comps["prefill"]).hex != Color.parse(comps["prefill_alt"]).hex
    # the ITL colours are an ordered scale, told apart from each other
    itl = th.itl.model_dump()
    assert len({Color.parse(itl[k]).hex for k in ("fast", "normal", "slow", "spike")}) == 4
    # and the drawing uses them: a stacked bar's cells and the legend's squares are in these colours
    parts = {"tokenize": 1.0, "prefill": 8.0, "unaccounted": 1.0}
    bar = R.stacked_bar(R.component_segments(th, parts), 10)
    assert [str(span.style) for span in bar.spans] == [comps["tokenize"], comps["prefill"], comps["unaccounted"]]
    leg = R.legend([(R.component_label(k), R.component_colour(th, k), v, None) for k, v in parts.items()], 80)
    assert {str(span.style) for span in leg.spans} == {comps["tokenize"], comps["prefill"], comps["unaccounted"]}
    # a server's components borrow the engine's colours (the themes need no new keys)
    assert R.component_colour(th, "server_prefill") == comps["prefill"]


def test_render_functions():
    assert R.allocate([1, 1, 2], 8) == [2, 2, 4] and sum(R.allocate([1, 2, 3], 7)) == 7
    assert R.allocate([0, 0], 5) == [0, 0] and R.allocate([1], 0) == [0]
    bar = R.stacked_bar([R.Segment("a", 1.0, "red"), R.Segment("b", 0.0, "blue")], 6, "grey23")
    assert bar.plain == "██████"
    assert R.stacked_bar([], 4).plain == "░░░░"
    assert R.fmt_ms(None) == "–" and R.fmt_ms(float("nan")) == "–"
    assert R.fmt_ms(0.5) == "0.500 ms" and R.fmt_ms(12.34) == "12.3 ms" and R.fmt_ms(1234) == "1234 ms"
    assert R.fmt_ms(12_345) == "12.3 s"
    assert R.sparkline([], 5) == "" and R.sparkline([1, 1], 5) == "▄▄" and R.sparkline([0, 1], 5) == "▁█"
    assert R.literal("a\x1b[2Jb\tc") == "a\\x1b[2Jb    c"  # escapes shown, tabs as spaces
    assert R.text_on("#ffffff") == "black" and R.text_on("#000000") == "white"
    leg = R.legend([("one", "red", 1.0, 50.0), ("two", "blue", 2.0, None)], 14)
    assert leg.plain.count("\n") == 1 and "one 1.00 ms 50.0%" in leg.plain


async def test_live_synthetic_session_drains_every_token_and_quits_cleanly():
    """A real LiveSource (synthetic engine at 5,000 tok/s, paced): nothing lost; quit stops the
    session's thread before the app exits (the app waits for it a bounded time: had it not stopped,
    it would still be alive here)."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.run.live import LiveSource

    cfg = Config.model_validate({"run": {"iterations": 2, "warmup": 0},
                                 "scenarios": [{"name": "fast", "prompt_tokens": 32, "max_tokens": 2000}]})
    src = LiveSource(cfg, ["fast"], lambda: SyntheticEngine(cfg, "stress", pace=True,
                                                            cost=CostModel.with_decode_rate(5000)))
    app = TtftApp(src, refresh_hz=15)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot_wait_until(pilot, lambda: len(app.pump.state.runs) >= 2, 120, what="both runs", interval=0.1)
        state = app.pump.state
        assert len(state.runs) == 2
        for r in state.runs:
            assert len(r.tokens) == 2000 == r.finished.n_output_tokens
            assert [t.index for t in r.tokens] == list(range(2000))
        await pilot.press("q")
        await pilot.pause()
    assert not src.alive and app.return_code == 0
    assert app.pump.state.finished is not None


async def test_alert_fires_once_in_the_dashboard_and_critical_is_unmissable():
    from ttftui.analysis.alerts import AlertEvaluator
    from ttftui.core.rules import AlertRule
    from ttftui.run.pump import Pump

    rules = [AlertRule(metric="ttft_ms", statistic="per_run", op="<=", value=1, severity="critical")]
    events = synthetic_session()
    app, _ = make_app(events, pump=Pump(evaluator=AlertEvaluator(rules)), n_rules=1)
    notes = []
    app.notify = lambda message, **kw: notes.append((message, kw)) if kw.get("title") != "notice" else None  # type: ignore[method-assign]  # alerts only
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        app.tick()  # nothing new: no second notification
        await pilot.pause()
        status = plain(app.query_one(StatusBar))
        alerts = plain(app.query_one(AlertsPanel))
    # one firing per scenario (3), each notified exactly once, although every run violates the rule
    firing = [a for a in app.pump.state.alerts if a.state == "firing"]
    assert len(firing) == 3
    assert "3 CRITICAL" in status
    assert alerts.count("CRITICAL") == 3
    assert [kw["title"] for _, kw in notes] == ["CRITICAL ALERT"] * 3
    assert all(kw["severity"] == "error" for _, kw in notes)


async def test_baseline_column(tmp_path):
    from ttftui.report.compare import baseline_table
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report

    events = synthetic_session()
    base = json.loads(build_report(fold(events)).model_dump_json())
    base["summary"]["short"]["metrics"]["ttft_ms"]["p50"] /= 2  # candidate is twice as slow
    app, _ = make_app(events, baseline=baseline_table(base))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        table = app.query_one(PercentileTable)
        assert "Δ P50 vs base" in [str(c.label).strip() for c in table.columns.values()]
        row = table.get_row("short:ttft_ms")
        assert str(row[-1]).strip() == "+100.0%"


def _as_llama(events, **device):
    """The same session as if llama.cpp had run it, with these device facts."""
    from dataclasses import replace

    from ttftui.core.events import EngineReady

    return [replace(e, engine="llama.cpp", synthetic=False, synthetic_reason=None, device=replace(e.device, **device),
                    model=replace(e.model, n_layers=30)) if isinstance(e, EngineReady) else e for e in events]


def _mid_decode(events):
    """Cut inside the last run, a few tokens into its decode."""
    last = max(e.run_id for e in events if isinstance(e, TokenEmitted))
    fifth = [i for i, e in enumerate(events) if isinstance(e, TokenEmitted) and e.run_id == last][5]
    return events[: fifth + 1]


def test_frames_are_budgeted_only_while_llama_cpp_has_every_cpu():
    from ttftui.run.pump import Pump
    from ttftui.tui.frames import usable_cpus

    def contended(events, busy=1.0):
        app = TtftApp(StaticSource([]), busy_cpu_pct=busy, pump=Pump())
        app.pump.feed(events)
        return app.rationed()

    session = _mid_decode(synthetic_session())
    assert contended(_as_llama(session, kind="cpu", n_threads=usable_cpus()))
    assert not contended(_as_llama(session, kind="cpu", n_threads=usable_cpus()), busy=0)  # replay, or switched off
    assert not contended(session)  # the synthetic engine sleeps: it leaves every core free
    assert not contended(_as_llama(session, kind="cpu", n_threads=usable_cpus() - 1))  # a core to spare
    assert not contended(_as_llama(session, kind="gpu", n_threads=usable_cpus(),
                                   n_gpu_layers_offloaded=31))  # every layer and the output: the GPU computes
    assert contended(_as_llama(session, kind="gpu", n_threads=usable_cpus(), n_gpu_layers_offloaded=1))  # partly
    assert not contended(_as_llama(synthetic_session(), kind="cpu", n_threads=usable_cpus()))  # between runs


def test_a_frame_waits_until_the_ui_is_within_its_cpu_budget():
    from ttftui.tui.frames import FrameScheduler

    wall = FakeWall()
    f = FrameScheduler(refresh_hz=4, busy_cpu_pct=1.0, wall=wall)
    now, over = wall.t, f.FRAME_OVERHEAD_S
    f.budget_run, f.last_draw = 7, now - 0.5
    f.budget_from = (now - 0.5, 0.005)  # the last frame began 0.5 s ago and took 5 ms of UI CPU
    assert f.next_frame_at(7, True, True) == pytest.approx(now - 0.5 + (0.005 + over) * 100)  # at 1 % of a core
    assert not f.due(7, True, True)
    f.busy_cpu_pct = 10.0  # a cheap frame within a large budget: refresh_hz decides
    assert f.next_frame_at(7, True, True) == pytest.approx(now - 0.5 + 0.25) and f.due(7, True, True)
    assert f.next_frame_at(7, True, False) == pytest.approx(now - 0.5 + 0.25)  # not rationed: refresh_hz alone
    f.busy_cpu_pct = 1.0
    f.last_draw, f.budget_from = now - 3, (now - 3, 1.0)  # a very slow frame: still one at least every 2 s
    assert f.next_frame_at(7, True, True) == pytest.approx(now - 3 + f.MAX_BUSY_INTERVAL_S)
    f.last_draw = now - 0.5  # a new run: its budget starts when it is first seen, as if a frame had cost nothing
    assert f.next_frame_at(8, True, True) == pytest.approx(now + over * 100)
    f.busy_cpu_pct = 0  # no budget: refresh_hz alone
    f.last_draw = now - 0.2
    assert f.next_frame_at(8, True, True) == pytest.approx(now - 0.2 + 0.25)


def test_a_frame_counts_its_cost_unless_a_newer_one_began():
    from ttftui.tui.frames import FrameScheduler

    wall = FakeWall()
    f = FrameScheduler(refresh_hz=4, busy_cpu_pct=1.0, wall=wall)
    start, full = f.begin(throttled=True, force=False)
    assert full  # the first frame draws everything
    assert f.spent(start, 0.002) and f.budget_from == (start, 0.002)
    wall.t += 1.0
    start2, full2 = f.begin(throttled=True, force=False)
    assert not full2  # rationed, and a full frame came less than FULL_FRAME_INTERVAL_S ago
    assert f.spent(start2, 0.001)  # the new frame's redraw, counted at once
    assert not f.spent(start, 0.009)  # the older frame's accounting after its screen update comes too late
    assert f.budget_from == (start2, 0.001)
    wall.t += f.FULL_FRAME_INTERVAL_S
    assert f.begin(throttled=True, force=False)[1] and f.begin(throttled=True, force=True)[1]


async def test_while_frames_are_rationed_a_frame_redraws_only_the_run_in_progress():
    """While llama.cpp has every CPU, a frame between full ones redraws the token stream alone (any
    other panel that changes makes Textual re-composite everything between them); a full frame
    comes at least every FULL_FRAME_INTERVAL_S, and at once when forced (a run's end, a key)."""
    from ttftui.run.pump import Pump
    from ttftui.tui.frames import usable_cpus

    events = _as_llama(_mid_decode(synthetic_session()), kind="cpu", n_threads=usable_cpus())
    src = StaticSource(events)
    app = TtftApp(src, busy_cpu_pct=1.0, refresh_hz=4, pump=Pump(), clock=fixed_clock(events))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert app.rationed()
        status, stream = app.query_one(StatusBar), app.query_one(TokenStream)
        calls: list[str] = []
        for w, name in ((status, "status"), (stream, "stream"), (app.query_one(TTFTBar), "ttft"),
                        (app.query_one(TelemetryPanel), "telemetry"), (app.query_one(AlertsPanel), "alerts")):
            w.show = (lambda f, n: lambda *a, **k: calls.append(n) or f(*a, **k))(w.show, name)  # type: ignore
        wall = FakeWall()
        f = app.frames
        f.wall = wall
        f.budget_run = app.pump.state.current.run_id
        f.budget_from = (wall.t - 5, 0.0)  # the budget allows a frame
        f.last_draw = f.last_full = wall.t - 0.5  # a full frame half a second ago
        app.redraw()  # due (the budget aside): a frame of the run in progress only
        assert calls == ["stream"]
        assert "drawn sparingly: llama.cpp uses every CPU" in stream.visible_text()  # and it says why
        calls.clear()
        f.budget_from = (wall.t - 5, 0.0)
        f.last_full = wall.t - f.FULL_FRAME_INTERVAL_S
        f.last_draw = wall.t - 0.5
        app.redraw()
        assert set(calls) == {"status", "stream", "ttft", "telemetry", "alerts"}
        calls.clear()
        app.redraw(force=True)
        assert set(calls) == {"status", "stream", "ttft", "telemetry", "alerts"}
        await pilot.pause()
        # the budget counts the whole frame, Textual's compositing included, once it is on screen
        assert f.budget_from[0] == f.last_draw and f.budget_from[1] > 0


def test_the_recording_status_changes_once_a_second_not_on_every_frame():
    """It counts events: redrawn on every frame, the status line (top row) made every frame repaint
    the screen from the top down to the token stream."""
    from ttftui.run.pump import Pump

    calls = []
    src = StaticSource([])
    src.status_extra = lambda: calls.append(1) or f"● REC ({len(calls)} calls)"  # type: ignore[attr-defined]
    t = [1_200_000_000]
    app = TtftApp(src, clock=lambda: t[0], pump=Pump())
    first = app.status_extra()
    t[0] += 500_000_000
    assert app.status_extra() == first and len(calls) == 1
    t[0] += 600_000_000  # the clock's second changed
    assert app.status_extra() != first and len(calls) == 2


def test_the_live_source_wakes_its_front_end_when_a_run_or_the_session_ends():
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.core.events import RunFailed, RunFinished, SessionFinished
    from ttftui.run.live import LiveSource

    cfg = Config.model_validate({"scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 4}]})
    src = LiveSource(cfg, ["s"], lambda: SyntheticEngine(cfg, "test"))
    woken = []
    src.set_wake(lambda: woken.append(1))
    events = synthetic_session()
    for e in events:
        src.runner.publish(e)  # what the engine thread does with each event
    assert src.drain() == events  # every event, in order: waking adds and drops nothing
    assert len(woken) == sum(isinstance(e, (RunFinished, RunFailed, SessionFinished)) for e in events) > 0


def test_a_prefill_shorter_than_a_second_is_never_interrupted_by_a_frame():
    from ttftui.tui.frames import FrameScheduler

    wall = FakeWall()
    f = FrameScheduler(refresh_hz=4, wall=wall)
    f.last_draw = wall.t - 5  # the last frame is long past (the results of the run before)
    assert f.next_frame_at(3, False, False) == pytest.approx(wall.t + f.PREFILL_DRAW_INTERVAL_S)  # first seen now
    assert not f.due(3, False, False)
    wall.t += 0.5
    assert not f.due(3, False, False)  # half a second into the prefill: still no frame
    assert f.due(3, True, False)  # the first tokens: refresh_hz again
    wall.t += 0.6
    assert f.due(3, False, False)  # a prefill past its first second: a frame a second


def test_every_source_is_a_source():
    """Live, replay and the tests' static source all implement the one interface the app talks to
    (ttftui.run.source.Source), so the app never probes a source with getattr."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.run.live import LiveSource
    from ttftui.run.replay import ReplaySource
    from ttftui.run.source import Source

    cfg = Config.model_validate({"scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 2}]})
    live = LiveSource(cfg, ["s"], lambda: SyntheticEngine(cfg, "test"))
    for src in (live, ReplaySource(synthetic_session(1, 0)), StaticSource([])):
        assert isinstance(src, Source)
        assert src.take_reset() is None and isinstance(src.status_extra(), str)


async def test_engine_hosts_get_a_line_each_and_w_follows_one():
    from ttftui.tui.widgets.hosts import HostsPanel

    events = two_host_session()
    last_of = {w: max(e.run_id for e in events if getattr(e, "worker", None) == w and hasattr(e, "iteration"))
               for w in ("aaaa:1", "bbbb:2")}
    app, _ = make_app(events)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        panel = app.query_one(HostsPanel)
        assert panel.display
        lines = panel.visible_text().splitlines()
        assert lines[0].startswith("2 engine hosts, 0 running")
        assert lines[1].split()[0] == "aaaa:1" and lines[2].split()[0] == "bbbb:2"
        assert all("SYNTH" in ln and "3 runs TTFT p50" in ln for ln in lines[1:3])
        newest = max(last_of.values())
        assert f"last run {newest} •" in plain(app.query_one(TTFTBar))
        for w in ("aaaa:1", "bbbb:2"):  # w follows one host: the bar and the stream show its runs
            await pilot.press("w")
            await pilot.pause()
            assert panel.visible_text().splitlines()[1 + ("aaaa:1", "bbbb:2").index(w)].startswith("▶")
            assert f"last run {last_of[w]} •" in plain(app.query_one(TTFTBar))
            assert f"run {last_of[w]} short" in plain(app.query_one(TokenStream))
        await pilot.press("w")  # and back to the newest run, whichever host ran it
        await pilot.pause()
        assert panel.selected is None and f"last run {newest} •" in plain(app.query_one(TTFTBar))


async def test_an_ordinary_session_has_no_hosts_panel():
    from ttftui.tui.widgets.hosts import HostsPanel

    app, _ = make_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert not app.query_one(HostsPanel).display
