"""The Textual dashboard. It drains the session's events on a timer (10 Hz), folds them with the
shared pure reducer (through the same ``Pump`` the headless path uses) and redraws inside
``batch_update()`` at ``refresh_hz`` (default 4 Hz), all panels in the same frame. Producers never
call into the UI, so a slow frame cannot slow the engine; the engine thread only appends to a queue
(and, once per run, posts a wake-up so that the run's results are drawn in the pause after it).

When to draw is the frame scheduler's decision (:mod:`ttftui.tui.frames`, which says why frames
are rationed while llama.cpp has every core); benchmarks/bench_dashboard.py measures what the frames
still take from the engine, from the tokens right after each one.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label

from ttftui.analysis.view import Views
from ttftui.core.events import RunFailed, RunFinished
from ttftui.core.textsafe import visible
from ttftui.run.pump import Pump
from ttftui.run.replay import fmt_clock, fmt_speed
from ttftui.run.session import SYNTHETIC_NOTICE
from ttftui.run.source import Source
from ttftui.tui.frames import FrameLog, FrameScheduler
from ttftui.tui.layout import Rows, share_rows
from ttftui.tui.themes import ThemeFile, builtin_theme_names, load_theme_or_default
from ttftui.tui.widgets import AlertsPanel, PercentileTable, StatusBar, TelemetryPanel, TokenStream, TTFTBar
from ttftui.tui.widgets.hosts import HostsPanel, host_names
from ttftui.tui.widgets.ops import has_profiled
from ttftui.tui.widgets.requests import RequestLanes, has_load

PANELS = {"1": "#ttft", "2": "#stream", "3": "#side", "4": "#table"}


MAX_SEEK_S = 366 * 24 * 3600.0  # longer than any session; beyond it a "time" is a typo or an attack


def stall_line(stalled: Any, now_ns: int) -> str | None:
    """The status line while the engine host makes no progress (an ``engine_stalled`` event), or None."""
    if stalled is None:
        return None
    secs = stalled.stalled_s + max(0, now_ns - stalled.t_ns) / 1e9
    how = "sends nothing: stopped?" if stalled.silent else "alive, not computing: hung?"
    then = f"; killed at {stalled.kill_after_s:g} s" if stalled.kill_after_s else ""
    return f"⚠ ENGINE STALLED: no progress for {secs:.0f} s ({how}){then}"


def parse_time(text: str, now_ns: int) -> int | None:
    """'mm:ss', 'ss' or a relative '+s' / '-s' -> session nanoseconds; None when it is not a time
    (nan, inf, 1e308, a negative minute count, more than a year)."""
    t = text.strip()
    rel = t[:1] in ("+", "-")
    body = t.lstrip("+-") if rel else t
    if t[1:2] in ("+", "-") or len(body) > 32:
        return None
    try:
        if ":" in body:
            m, _, sec = body.partition(":")
            value = int(m) * 60 + float(sec)
            if int(m) < 0 or float(sec) < 0:
                return None
        else:
            value = float(body)
    except ValueError:
        return None
    if not math.isfinite(value) or not 0 <= value <= MAX_SEEK_S:
        return None
    ns = int(value * 1e9)
    if rel:
        return now_ns + ns if t[0] == "+" else now_ns - ns
    return ns


class SeekScreen(ModalScreen[str | None]):
    """Asks for a time to seek to."""

    DEFAULT_CSS = """
    SeekScreen { align: center middle; }
    SeekScreen > Vertical { width: 48; height: auto; border: round $accent; background: $panel; padding: 0 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, now: str, end: str):
        super().__init__()
        self._now, self._end = now, end

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"seek to (now {self._now}, end {self._end}): mm:ss, seconds or ±seconds")
            yield Input(placeholder="e.g. 1:30", id="seek-input")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TtftApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "ttftui"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("p,space", "pause", "Pause", key_display="p"),
        Binding("r", "rerun", "Re-run"),
        Binding("n", "next_scenario", "Next scen."),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("left_square_bracket", "step_run(-1)", "Prev run", key_display="["),
        Binding("right_square_bracket", "step_run(1)", "Next run", key_display="]"),
        Binding("home", "seek_edge('start')", "Start", show=False),
        Binding("end", "seek_edge('end')", "End", show=False),
        Binding("g", "seek", "Seek"),
        Binding("t", "cycle_theme", "Theme"),
        Binding("w", "next_host", "Host", show=False),
        # o: the TTFT headline by operation kind; shown only once a profiled run (--profile-ops) has
        # ended, else the hidden one below says there is none
        Binding("o", "ops_view", "Ops"),
        Binding("o", "ops_none", "Ops", show=False),
        Binding("m", "maximize", "Max/restore"),
        Binding("1", "toggle_panel('1')", "Panels 1-4", key_display="1-4"),
        *(Binding(k, f"toggle_panel('{k}')", f"Panel {k}", show=False) for k in "234"),
        Binding("s", "screenshot", "SVG"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        Binding("escape", "minimize", "Restore", show=False),
    ]

    DRAIN_HZ = 10.0

    def __init__(self, source: Source, *, theme: str = "dark", refresh_hz: float = 4.0, pump: Pump | None = None,
                 n_rules: int = 0, screenshot_dir: str | Path = ".", clock: Any = None, baseline: Any = None,
                 busy_cpu_pct: float = 0.0):
        super().__init__()
        self.frames = FrameScheduler(refresh_hz, busy_cpu_pct)  # when to draw (ttftui.tui.frames)
        self.baseline = baseline  # {scenario: {metric: {"p50": value, ...}}} from a baseline report
        self.source = source
        self.pump = pump or Pump()
        self.n_rules = n_rules
        self.screenshot_dir = Path(screenshot_dir)
        self._theme_spec = theme
        self.theme_file: ThemeFile
        self.theme_problem: str | None = None
        self.internal_error: BaseException | None = None  # a bug in the dashboard: the launcher exits 70
        self._clock = clock  # tests inject a fixed clock; live uses the source's session clock
        self._quitting = False
        self._failure_shown = False
        self._compact: bool | None = None
        self._rows: Rows | None = None  # the panels' heights (ttftui.tui.layout)
        self._hosts_want = 0
        self._n_toasts = 0  # notices popped up so far
        self._solo: str | None = None
        self.views = Views()  # the one analysis of the state, kept while no run has ended
        self._tick_timer: Any = None
        self._extra: tuple[int, str] | None = None
        self._newest_ns: int | None = None  # engine time of the newest event folded
        self._profiled = False  # a run with an operation profile (--profile-ops) has ended: o is offered
        self.frame_log = FrameLog.from_env()

    # ------------------------------------------------------------------ layout
    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with Vertical(id="body"):
            yield TTFTBar(id="ttft")
            yield RequestLanes(id="lanes")  # load sessions only (ttftui.analysis.load)
            yield HostsPanel(id="hosts")  # Ray engine hosts only (ttftui.cluster.engine_hosts)
            with Horizontal(id="middle"):
                yield TokenStream(id="stream")
                with Vertical(id="side"):
                    yield AlertsPanel(id="alerts")
                    yield TelemetryPanel(id="telemetry")
            # The table sits in a box of its own: Textual tests a widget against a frame's dirty area
            # by its parent's region, so inside #body the table (whose cached lines are still costly
            # to hand back) was redrawn on every frame that changed anything in the middle panels.
            with Vertical(id="table") as box:
                box.border_title = PercentileTable.TITLE
                yield PercentileTable(id="table-data")
        yield Footer()

    def on_mount(self) -> None:
        self.w_status = self.query_one(StatusBar)
        self.w_ttft = self.query_one(TTFTBar)
        self.w_stream = self.query_one(TokenStream)
        self.w_table = self.query_one(PercentileTable)
        self.w_alerts = self.query_one(AlertsPanel)
        self.w_telemetry = self.query_one(TelemetryPanel)
        self.w_lanes = self.query_one(RequestLanes)
        self.w_lanes.display = False
        self.w_hosts = self.query_one(HostsPanel)
        self.w_body, self.w_middle, self.w_table_box = (self.query_one(f"#{i}") for i in ("body", "middle", "table"))
        self.w_hosts.display = False
        self.w_table.baseline = self.baseline
        for name in builtin_theme_names():
            th, _ = load_theme_or_default(name)
            self.register_theme(th.textual_theme())
        th, problem = load_theme_or_default(self._theme_spec)
        if problem is None and th.textual_theme().name not in self.available_themes:
            self.register_theme(th.textual_theme())
        self._apply_theme(th)
        if problem:
            self.theme_problem = problem
            self.notify(problem, title="theme", severity="warning", timeout=10)
        self._fit_layout()
        self.source.start()
        # called from the engine thread (a live source, when a run ends): hand over to this loop, never block
        loop, ctx = asyncio.get_running_loop(), contextvars.copy_context()
        # call_later posts a message, handled at once; call_next would wait for the next message

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(self.call_later, self._wake_tick, context=ctx)
            except RuntimeError:  # the dashboard has closed (its loop with it): the launcher drains the rest
                pass

        self.source.set_wake(wake)
        self._tick_and_schedule(force=True)

    def _wake_tick(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.stop()
        self._tick_and_schedule()

    def _on_tick_timer(self) -> None:
        self._tick_timer = None
        self._tick_and_schedule()

    def _tick_and_schedule(self, force: bool = False) -> None:
        """The drain loop: a one-shot timer re-armed after every tick, at 10 Hz, or while frames are
        rationed only when the next frame is due (an idle tick costs Textual too). The source wakes
        it when a run ends."""
        self._tick_timer = None
        try:
            self.tick(force)
        finally:
            self._arm_tick()

    def _arm_tick(self) -> None:
        if self._tick_timer is not None:
            self._tick_timer.stop()
        delay = 1 / max(self.DRAIN_HZ, self.frames.refresh_hz)
        if self.rationed():
            delay = max(delay, self.frames.next_frame_for(self.pump.state) - time.monotonic())
        self._tick_timer = self.set_timer(delay, self._on_tick_timer)

    def _fit_layout(self) -> None:
        """Small terminals (80x24) get the compact style: top borders only, tighter caps."""
        compact = self.size.height < 36 or self.size.width < 110
        if compact != self._compact:
            self._compact = compact
            self.screen.set_class(compact, "compact")

    def on_resize(self) -> None:
        self._fit_layout()
        self.call_after_refresh(self._share_rows)  # once the body has its new size

    def _share_rows(self) -> None:
        """Heights of the panels that would otherwise push the others off the screen
        (:mod:`ttftui.tui.layout`); set only when they change (a change re-lays out the screen)."""
        border = 1 if self._compact else 2
        rows = share_rows(
            self.w_body.size.height, border=border,
            ttft_core=self.w_ttft.core_lines, ttft_full=self.w_ttft.content_lines, ttft_cap=8 if self._compact else 14,
            lanes_want=(6 if self._compact else 10) if self.w_lanes.display else None,
            hosts_want=self._hosts_want + border if self.w_hosts.display else None,
            middle_floor=int(self.w_middle.styles.min_height.value),
            table_floor=int(self.w_table_box.styles.min_height.value))
        if rows == self._rows:
            return
        self._rows = rows
        self.w_ttft.styles.max_height = rows.ttft
        if rows.lanes is not None:
            self.w_lanes.styles.height = rows.lanes
        if rows.hosts is not None:
            self.w_hosts.styles.height = rows.hosts

    def _apply_theme(self, th: ThemeFile) -> None:
        self.theme_file = th
        self.theme = th.textual_theme().name
        for w in (self.w_status, self.w_ttft, self.w_stream, self.w_alerts, self.w_telemetry, self.w_lanes,
                  self.w_hosts):
            w.set_theme(th)

    # ------------------------------------------------------------------ the drain loop
    def now_ns(self) -> int:
        return self._clock() if self._clock is not None else self.source.now_ns()

    def tick(self, force: bool = False) -> None:
        if (reset := self.source.take_reset()) is not None:
            self.pump.state = reset  # replay seek: the folded state at the new position
        events = self.source.drain()
        profiled = self._profiled
        # A run just ended: draw its results now, in the engine's idle gap between runs, not at the
        # next rationed frame, which may fall inside the next run's prefill.
        force = force or any(type(e) in (RunFinished, RunFailed) for e in events)
        if events:
            self._newest_ns = events[-1].t_ns
            n_alerts, n_notices = len(self.pump.state.alerts), len(self.pump.state.notices)
            self.pump.feed(events)
            if not profiled and any(type(e) is RunFinished and e.ops is not None for e in events):
                profiled = True
            self._show_notices(self.pump.state.notices[n_notices:])
            for a in self.pump.state.alerts[n_alerts:]:
                if a.state == "firing":  # once per transition, never once per run
                    critical = a.severity == "critical"
                    self.notify(a.message, title="CRITICAL ALERT" if critical else "alert",
                                severity="error" if critical else "warning", timeout=30 if critical else 8)
        if reset is not None:  # a seek back may leave no profiled run
            profiled = has_profiled(self.pump.state)
        if profiled != self._profiled:
            self._profiled = profiled
            if not profiled:
                self.w_ttft.set_ops_view(False)
            self.refresh_bindings()  # the footer offers o (or no longer)
        err = self.source.error_message()
        if err and not self._failure_shown:
            self._failure_shown = True
            self.notify(err, title="session failed", severity="error", timeout=30)
        self.redraw(force)

    MAX_NOTICE_TOASTS = 5

    def _show_notices(self, notices: Any) -> None:
        """A warning about the numbers (a value no measurement can produce, made null; llama.cpp's
        counters off; ...) pops up as it arrives, a few at most: all of them are in the report."""
        for n in notices:
            if n.level == "info" or n.message.startswith(SYNTHETIC_NOTICE):  # the status bar says SYNTHETIC always
                continue
            self._n_toasts += 1
            if self._n_toasts <= self.MAX_NOTICE_TOASTS:
                self.notify(n.message, title="notice", severity="error" if n.level == "error" else "warning",
                            timeout=12)
            elif self._n_toasts == self.MAX_NOTICE_TOASTS + 1:
                self.notify("more notices: the report (notices) and the recording have them all", title="notice",
                            severity="warning", timeout=12)

    def rationed(self) -> bool:
        """Frames are rationed now (:mod:`ttftui.tui.frames` says when and why)."""
        return self.frames.rationed(self.pump.state)

    def redraw(self, force: bool = False) -> None:
        if not (force or self.frames.due_for(self.pump.state)):
            return
        cpu0 = time.thread_time()
        self._fit_layout()
        state = self.pump.state
        full_state = state
        # the engine host the dashboard follows (w): the stream, the TTFT bar and the telemetry show
        # its runs and its node; the table pools every host's runs
        view = self.views.of(full_state)
        state = view.host_state(state, self.w_hosts.selected)
        if self.w_hosts.display and self.w_hosts.selected is None:  # the newest run's host's telemetry
            newest = state.current or state.runs.last()
            if newest is not None and newest.started.worker is not None:
                state = replace(state, telemetry=state.telemetry_of(newest.started.worker),
                                telemetry_status=state.worker_telemetry_status.get(newest.started.worker))
        now = self.now_ns()
        # Rationed, a frame between full ones redraws only the panel that shows the run's progress
        # (the stream, or the TTFT bar while the prefill runs, with a diffusion run's canvas beside
        # it while its steps run): any other change on screen makes Textual re-composite everything
        # between them (ttftui.tui.frames).
        rationed = self.rationed()
        start, full = self.frames.begin(throttled=rationed, force=force)
        with self.batch_update():
            if full:
                pcts = view.percentiles
                activity = stall_line(full_state.stalled, now) or self.source.activity(state)
                self.w_status.show(full_state, mode=self.source.mode, activity=activity, now_ns=now,
                                   extra=self.status_extra(), total_runs=self.source.total_runs)
                self.w_ttft.show(state, view, now)
                # every panel is called every full frame: each one compares what it shows and returns
                # at once when nothing changed (and catches up on a draw it deferred or missed while hidden)
                self.w_stream.show(state, rationed)
                load = has_load(full_state)
                if self.w_lanes.display != load:
                    self.w_lanes.display = load
                if load:
                    self.w_lanes.show(full_state, view, now)
                hosts = bool(full_state.engines) and full_state.engines[0].worker is not None
                if self.w_hosts.display != hosts:
                    self.w_hosts.display = hosts
                if hosts:
                    self._hosts_want = min(len(host_names(full_state)), 8) + 1  # a line per host under its title line
                    self.w_hosts.show(full_state, view)
                self.w_telemetry.show(state, view)
                table = self.w_table
                table.setup(pcts, list(view.stats), with_baseline=table.baseline is not None,
                            compact=bool(self._compact), stats=view.stats)
                table.show(view.stats, pcts)
                self.w_alerts.show(full_state, self.n_rules)
                self._share_rows()
            elif state.current is not None and state.current.tokens:
                self.w_stream.show(state, True)
            else:  # runs finish only in full frames: the view (the scenario medians) is the last full frame's
                self.w_ttft.show(state, view, now)
                self._share_rows()  # the first run's bar and legend appear: room for them now, not at a full frame
                if state.current is not None and state.current.steps:
                    self.w_stream.show(state, True)  # a diffusion run's canvas fills before its first token
        # what the frame cost the UI thread is known once Textual has composited it and handed it over
        self.frames.spent(start, time.thread_time() - cpu0)
        line = self.frame_log.begin(start, now, state, full, self._newest_ns, self.frames.budget_from[1])
        self.call_after_refresh(self._frame_done, start, cpu0, line)

    def _frame_done(self, start: float, cpu0: float, line: dict | None) -> None:
        """After the screen update: the frame's whole cost (our redraw and Textual's compositing) is
        what the frame budget counts."""
        cpu = time.thread_time()
        if self.frames.spent(start, cpu - cpu0):  # no newer frame began since
            if self._tick_timer is not None and self.rationed():
                self._arm_tick()  # the next frame is due later than the tick was set for: no tick before it
        self.frame_log.done(line, start, cpu0, cpu)

    def status_extra(self) -> str:
        """The source's extra status (the recording's event count and size), refreshed when the status
        clock's second changes. It changes with every event, and a status line that changes on every
        frame made every frame repaint the screen from its top row down to whatever else changed."""
        sec = self.now_ns() // 1_000_000_000  # the same second as the status line's clock
        if self._extra is None or self._extra[0] != sec:
            self._extra = (sec, self.source.status_extra())
        return self._extra[1]

    # ------------------------------------------------------------------ actions
    LIVE_ONLY = {"rerun", "next_scenario"}
    REPLAY_ONLY = {"slower", "faster", "step_run", "seek_edge", "seek"}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        mode = self.source.mode
        if action in self.REPLAY_ONLY and mode != "replay":
            return False  # hidden: meaningless live
        if action in self.LIVE_ONLY and mode != "live":
            return None  # shown disabled: a replay cannot run the engine
        if action == "ops_view":
            return self._profiled  # hidden until a profiled run has ended (then o is ops_none's)
        return True

    def _replay(self) -> Any:
        return self.source if self.source.mode == "replay" else None

    def action_slower(self) -> None:
        if (src := self._replay()) is not None:
            self.notify(f"speed {fmt_speed(src.slower())}", timeout=2)

    def action_faster(self) -> None:
        if (src := self._replay()) is not None:
            self.notify(f"speed {fmt_speed(src.faster())}", timeout=2)

    def action_step_run(self, step: int) -> None:
        """``]`` / ``[``: the next or previous run's start."""
        self._replay_move(lambda src: src.seek_run(step))

    def action_seek_edge(self, edge: str) -> None:
        """Home / End: the session's start or end."""
        self._replay_move(lambda src: src.seek_start() if edge == "start" else src.seek_end())

    def _replay_move(self, move: Any) -> None:
        if (src := self._replay()) is not None:
            move(src)
            self.tick(force=True)

    def action_seek(self) -> None:
        if (src := self._replay()) is None:
            return

        def done(value: str | None) -> None:
            if value is None:
                return
            t = parse_time(value, src.now_ns())
            if t is None:
                self.notify(f"not a time: {value!r} (use mm:ss, seconds, or +/-seconds)", severity="error")
                return
            self._replay_move(lambda s: s.seek(t))

        self.push_screen(SeekScreen(fmt_clock(src.now_ns()), fmt_clock(src.end_ns)), done)

    def _live_only(self, what: str) -> bool:
        if self.source.mode != "live":
            self.notify(f"{what} is only available in a live session", severity="warning")
            return False
        return True

    def action_pause(self) -> None:
        paused = self.source.toggle_pause()
        if self.source.mode == "live":
            self.notify("pausing after the current run" if paused else "resumed", timeout=3)
        self.redraw(force=True)

    def action_rerun(self) -> None:
        if not self._live_only("re-run"):
            return
        state = self.pump.state
        cur = state.current or (state.runs[-1] if state.runs else None)
        if cur is None:
            self.notify("nothing to re-run yet", severity="warning")
            return
        self.source.rerun(cur.scenario)
        self.notify(f"queued a re-run of {cur.scenario}", timeout=3)

    def action_next_scenario(self) -> None:
        if not self._live_only("next scenario"):
            return
        self.source.skip_scenario()
        self.notify("moving to the next scenario after this run", timeout=3)

    def action_next_host(self) -> None:
        """Follow the next Ray engine host (then none: the newest run, whichever host runs it)."""
        names = host_names(self.pump.state)
        if not names:
            self.notify("w follows one Ray engine host: this session has none (--per-node, cluster.matrix)",
                        timeout=4)
            return
        cur = self.w_hosts.selected
        order: list[str | None] = [None, *names]
        self.w_hosts.selected = order[(order.index(cur) + 1) % len(order)] if cur in order else names[0]
        self.redraw(force=True)

    def action_ops_view(self) -> None:
        """o: the TTFT headline switches between the components and the last profiled run's prefill
        by operation kind, with the top operations, a strip per layer and what profiling cost."""
        self.w_ttft.set_ops_view(not self.w_ttft.ops_view)
        self.redraw(force=True)

    def action_ops_none(self) -> None:
        """o in a session without a profiled run: say so; nothing changes."""
        self.notify("no profiled run in this session: --profile-ops (engine.profile_ops) gives every scenario a "
                    "profiled twin, NAME@ops, whose prefill o shows by operation kind", title="inside prefill",
                    timeout=5)

    def action_cycle_theme(self) -> None:
        names = builtin_theme_names()
        cur = self.theme_file.name
        nxt = names[(names.index(cur) + 1) % len(names)] if cur in names else names[0]
        th, _ = load_theme_or_default(nxt)
        self._apply_theme(th)
        self.notify(f"theme: {nxt}", timeout=2)
        self.redraw(force=True)

    # Panels: 1-4 hide/show one; m shows only the focused panel (again: all of them back).
    def _panel_of(self, widget: Any) -> str | None:
        while widget is not None:
            if widget.id in ("ttft", "stream", "side", "table"):
                return f"#{widget.id}"
            widget = widget.parent
        return None

    def _show_only(self, keep: str | None) -> None:
        for sel in PANELS.values():
            self.query_one(sel).display = keep is None or sel == keep
        if keep is not None:
            # the middle row holds two panels: keep the row, hide the sibling
            self.query_one("#middle").display = keep in ("#stream", "#side")
        else:
            self.query_one("#middle").display = True
        self._solo = keep

    def action_maximize(self) -> None:
        if self._solo is not None:
            self._show_only(None)
            return
        target = self._panel_of(self.focused) or "#table"
        self._show_only(target)

    def action_minimize(self) -> None:
        if self._solo is not None:
            self._show_only(None)

    def action_toggle_panel(self, key: str) -> None:
        """1-4: hide or show one panel."""
        self._solo = None
        w = self.query_one(PANELS[key])
        w.display = not w.display
        middle = self.query_one("#middle")
        middle.display = self.query_one("#stream").display or self.query_one("#side").display

    def action_screenshot(self) -> None:
        try:
            path = self.save_screenshot(path=str(self.screenshot_dir))
        except OSError as e:
            self.notify(f"cannot save the screenshot: {e.strerror or e}", severity="error")
            return
        self.notify(f"saved {path}", title="screenshot", timeout=5)

    def notify(self, message: str, *, title: str = "", severity: Any = "information", timeout: float | None = None,
               markup: bool = False) -> None:
        """Notifications carry names from recordings and messages from llama.cpp: never markup
        (Textual's default), control characters shown as escapes."""
        super().notify(visible(message), title=visible(title), severity=severity, timeout=timeout, markup=markup)

    def _handle_exception(self, error: Exception) -> None:
        """A bug in the dashboard ends it like any other internal error: the launcher prints one line
        and exits 70 (Textual would print a traceback and exit 0). TTFTUI_DEBUG=1 keeps the traceback."""
        self.internal_error = error
        super()._handle_exception(error)
        if not os.environ.get("TTFTUI_DEBUG"):
            self._exit_renderables.clear()

    async def action_quit(self) -> None:
        if self._quitting:
            return
        self._quitting = True
        self.source.stop()
        # The engine stops between tokens (or after the current prefill chunk); wait briefly so the
        # session's last events (and its recording) are complete, but never hang the terminal.
        for _ in range(100):
            if not self.source.alive:
                break
            await asyncio.sleep(0.03)
        self.pump.feed(self.source.drain())
        self.exit(self.source.exit_code())
