"""The remote breakdown partitions TTFT: a server run's parts (connect, send request, server wait,
server other, server prefill as placed in TTFT, unaccounted) are each >= 0 and add up to TTFT to the
nanosecond, also where the server's own prefill overlaps the client's wait for the headers
(llama-server answers after its slot has started) or is longer than the window it must fit in.

Against llama.cpp's llama-server when its binary is found (TTFTUI_LLAMA_SERVER or llama-server on
PATH), and against the fake server and llama-cpp-python's server, which give no prefill of their own."""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ttftui.analysis.metrics import remote_parts_ns, run_metrics
from ttftui.analysis.reducer import fold
from ttftui.core import registry
from ttftui.core.config import Config
from ttftui.core.events import RemoteTiming, RunFinished
from ttftui.report.build import build_report
from ttftui.report.html import run_phases
from ttftui.tui import render as R
from ttftui.tui.themes import load_theme
from ttftui.tui.widgets.percentile_table import PercentileTable, fit_label, table_metrics

from .conftest import finished_runs, free_port, phaseless_run_finished, wait_ready
from .fake_server import FakeServer

MS = 1_000_000
PARTS = ("connect_ms", "send_ms", "server_wait_ms", "server_other_ms", "server_prefill_in_ttft_ms", "unaccounted_ms")


def timing(**kw: Any) -> RemoteTiming:
    return RemoteTiming(**{"connect_ns": 0, "sent_ns": 100_000, "headers_ns": 300_000, "end_ns": 50 * MS, **kw})


def server_run(r: RemoteTiming, ttft_ns: int) -> RunFinished:
    return dataclasses.replace(phaseless_run_finished(1, ttft_ns + MS, ttft_ns=ttft_ns), remote=r)


def check_partition(r: RemoteTiming, ttft_ns: int) -> dict[str, int | None]:
    """The parts of TTFT: every one >= 0, their sum TTFT exactly (ns)."""
    p = remote_parts_ns(r, ttft_ns)
    assert all(p[k] is None or p[k] >= 0 for k in p), p
    assert sum(p[k] or 0 for k in PARTS) == ttft_ns, p
    return p


# ---------------------------------------------------------------------- the derivation, unit by unit
def test_headers_sent_after_the_prefill_started_are_not_counted_twice():
    """llama-server's case: the headers (0.9 ms) arrive after its 5 ms prefill began (0.5 ms, placed
    to end at the first token's arrival, 5.5 ms). Before: wait 0.8 + prefill 5 > 5.4 ms of window,
    unaccounted -0.4 ms. Now the overlap is the prefill's, and the wait is what came before it."""
    r = timing(headers_ns=900_000, first_event_ns=5_500_000, first_content_ns=5_500_000, server_prompt_ms=5.0)
    p = check_partition(r, 5_500_000)
    assert (p["server_prefill_in_ttft_ms"], p["server_wait_ms"], p["server_other_ms"]) == (5 * MS, 400_000, 0)
    assert p["server_wait_overlap_ms"] == 400_000 and p["unaccounted_ms"] == 0
    assert p["server_wait_ms"] + p["server_wait_overlap_ms"] == r.headers_ns - r.sent_ns  # the client's wait, whole


def test_without_overlap_the_rest_of_the_window_is_named_server_other():
    r = timing(headers_ns=200_000, first_content_ns=5 * MS, server_prompt_ms=3.0)
    p = check_partition(r, 5 * MS)
    assert (p["server_wait_ms"], p["server_prefill_in_ttft_ms"], p["server_other_ms"]) == (100_000, 3 * MS, 1_800_000)
    assert p["server_wait_overlap_ms"] == 0 and p["unaccounted_ms"] == 0


def test_a_prefill_longer_than_its_window_is_clipped_to_it():
    """prompt_ms on the server's clock longer than request written -> first token on ours (the check
    of impossible values allows the whole request + 1 %): the bar's segment is clipped to the window;
    the server's own figure stays as it sent it."""
    r = timing(headers_ns=700_000, first_content_ns=5 * MS, server_prompt_ms=50.0)
    p = check_partition(r, 5 * MS)
    assert p["server_prefill_in_ttft_ms"] == 5 * MS - 100_000 and p["server_wait_ms"] == p["server_other_ms"] == 0
    assert p["server_wait_overlap_ms"] == 600_000
    m = run_metrics(0, 0, server_run(r, 5 * MS), [])
    assert m.value("server_prefill_ms") == 50.0 and m.value("server_prefill_in_ttft_ms") == pytest.approx(4.9)
    assert m.unaccounted_ms == 0 and m.prefill_tps == pytest.approx(8 / 0.050)  # the server's own prefill


def test_without_the_servers_timings_all_after_the_headers_is_server_other():
    r = timing(headers_ns=400_000, first_content_ns=7 * MS)
    p = check_partition(r, 7 * MS)
    assert p["server_prefill_in_ttft_ms"] is None and p["server_wait_overlap_ms"] is None
    assert (p["server_wait_ms"], p["server_other_ms"], p["unaccounted_ms"]) == (300_000, 7 * MS - 400_000, 0)


def test_a_kept_alive_connection_and_a_new_one():
    for connect in (0, 250_000):
        r = timing(connect_ns=connect, sent_ns=connect + 60_000, headers_ns=connect + 900_000,
                   first_content_ns=4 * MS, server_prompt_ms=2.5)
        p = check_partition(r, 4 * MS)
        assert (p["connect_ms"], p["send_ms"]) == (connect, 60_000)


def test_the_prefill_ends_at_the_first_text_even_when_ttft_waits_for_content():
    """server.ttft_at = "content" with reasoning first: the prefill ends before the first reasoning
    token; the reasoning that comes before the TTFT point is the server's other time."""
    r = timing(headers_ns=200_000, first_reasoning_ns=3 * MS, first_content_ns=9 * MS, server_prompt_ms=2.0)
    p = check_partition(r, 9 * MS)
    assert p["server_prefill_in_ttft_ms"] == 2 * MS and p["server_wait_ms"] == 100_000
    assert p["server_other_ms"] == 9 * MS - 100_000 - 100_000 - 2 * MS


def test_odd_points_never_make_a_part_negative():
    """Points out of order (an edited or a very old recording), a TTFT before the headers
    (ttft_at = first_event), a zero or absurd prefill: clamped into order, still a partition."""
    rnd = random.Random(7)
    cases = [timing(sent_ns=3 * MS, headers_ns=MS, first_content_ns=2 * MS, server_prompt_ms=1.0),
             timing(connect_ns=9 * MS, sent_ns=MS, headers_ns=20 * MS, server_prompt_ms=0.0),
             timing(headers_ns=2 * MS, first_event_ns=MS, server_prompt_ms=1e9)]
    for _ in range(500):
        pts = sorted(rnd.randrange(0, 10 * MS) for _ in range(4))
        if rnd.random() < 0.2:
            rnd.shuffle(pts)
        cases.append(timing(connect_ns=pts[0] if rnd.random() < 0.5 else 0, sent_ns=pts[1], headers_ns=pts[2],
                            first_reasoning_ns=rnd.choice([None, pts[3]]), first_content_ns=pts[3],
                            server_prompt_ms=rnd.choice([None, 0.0, rnd.uniform(0, 12)])))
    for r in cases:
        for ttft in {r.first_content_ns or 0, 2 * MS, 10 * MS}:
            check_partition(r, ttft)


def test_run_metrics_unaccounted_is_the_rest_of_the_registrys_remote_components():
    """The bar's remote components are the partition's (the registry, in order); unaccounted is
    TTFT less them, >= 0; the server's own prefill is a figure beside them, not a component."""
    comps = [c.name for c in registry.components() if c.source == "remote"]
    assert comps == ["connect_ms", "send_ms", "server_wait_ms", "server_other_ms", "server_prefill_in_ttft_ms"]
    assert registry.metric("server_prefill_ms").component is None and registry.metric("server_prefill_ms").compare
    others = {registry.component_colour(c.component or "") for c in registry.components()
              if c.source == "remote" and c.name != "server_other_ms"}
    assert registry.component_colour("server_other") not in others | {"unaccounted"}  # told apart on the bar
    r = timing(headers_ns=900_000, first_event_ns=5_500_000, first_content_ns=5_500_000, server_prompt_ms=5.0)
    m = run_metrics(0, 0, server_run(r, 5_500_000), [])
    assert m.unaccounted_ms == 0 and m.value("server_prefill_ms") == 5.0
    assert sum(m.value(c) or 0 for c in comps) == pytest.approx(m.ttft_ms, abs=1e-9)


# ---------------------------------------------------------------------- the bar, the report, the table
def test_the_dashboards_bar_and_the_html_breakdown_show_server_other():
    th = load_theme("dark")
    parts = {"connect": 0.1, "send": 0.1, "wait": 0.4, "server_other": 1.0, "server_prefill": 5.0, "unaccounted": 0.0}
    segs = R.component_segments(th, parts)
    assert [s.key for s in segs] == list(parts)
    assert R.component_colour(th, "server_other") == th.components.first_detok
    run = {"unaccounted_ms": 0.0, "remote": {"connect_ms": 0.1, "send_ms": 0.1, "server_wait_ms": 0.4,
                                             "server_prefill_ms": 60.0, "server_prefill_chunks_ms": [30.0, 20.0, 10.0]},
           "figures": {"server_other_ms": 1.0, "server_prefill_in_ttft_ms": 25.0}}
    phases = run_phases(run)
    assert [p[0] for p in phases] == ["connect", "send request", "server wait", "server other",
                                      "server prefill chunk 1", "server prefill chunk 2"]
    assert [p[1] for p in phases[-2:]] == [15.0, 10.0]  # clipped: its last chunks, the first of them cut


def test_the_dashboards_bar_cuts_a_clipped_server_prefills_chunks_as_the_html_does():
    """The server did 60 ms of prefill in chunks of 30, 20, 10; TTFT holds 25 ms of it (clipped to its
    window). The bar's chunk segments are the last 25 ms: 15 + 10, so they add up to the component
    and every segment of the bar to TTFT, never more."""
    th = load_theme("dark")
    parts = {"connect": 0.1, "send": 0.1, "wait": 0.4, "server_other": 1.0, "server_prefill": 25.0, "unaccounted": 0.0}
    segs = R.component_segments(th, parts, [30.0, 20.0, 10.0])
    pre = [s.ms for s in segs if s.key == "server_prefill"]
    assert pre == [15.0, 10.0] and sum(s.ms for s in segs) == pytest.approx(sum(parts.values()))
    run = {"remote": {"server_prefill_chunks_ms": [30.0, 20.0, 10.0]}, "figures": {"server_prefill_in_ttft_ms": 25.0}}
    assert [p[1] for p in run_phases(run) if p[0].startswith("server prefill")] == pre
    # chunks that fit (the engine's own, exactly its prefill) are drawn as they are
    local = R.component_segments(th, {"prefill": 60.0}, [30.0, 20.0, 10.0])
    assert [s.ms for s in local] == [30.0, 20.0, 10.0]


def test_every_remote_label_fits_the_percentile_tables_metric_column():
    """At 80 columns the metric column is 13 characters: "server prefill" was cut to "server prefi".
    Squeezed, the server's rows say "srv"; a wide column keeps the registry's words."""
    rows = [label for name, label, _ in table_metrics() if registry.metric(name).source == "remote"
            or name in ("unaccounted_ms", "ttft_ms")]
    narrow = [fit_label(label, PercentileTable.METRIC_W, True) for label in rows]
    assert all(len(label) <= PercentileTable.METRIC_W for label in narrow), narrow
    assert " srv prefill" in narrow and " srv wait" in narrow and "srv dec tok/s" in narrow
    assert [fit_label(label, PercentileTable.METRIC_W_MAX, False) for label in rows] == rows
    assert all(len(label) <= PercentileTable.METRIC_W_MAX for label in rows)


async def test_the_percentile_table_labels_at_80_and_120_columns(load_events_with_timings):
    from ttftui.tui.app import TtftApp

    from .test_tui_layout import settle
    from .tui_support import StaticSource, fixed_clock

    events = load_events_with_timings
    for size, want in (((80, 24), {" srv prefill", " srv other", " srv wait", "srv dec tok/s", "srv cache %"}),
                       ((120, 40), {" server prefill", " server other", " server wait", "server decode tok/s"})):
        app = TtftApp(StaticSource(events, mode="replay", activity="replay"), clock=fixed_clock(events))
        async with app.run_test(size=size) as pilot:
            await settle(app, pilot)
            await pilot.pause(0.2)
            table = app.w_table
            width = table.columns[table.ordered_columns[1].key].width
            labels = {str(table.get_row_at(i)[1]) for i in range(table.row_count)}
            assert want <= labels, (size, labels)
            assert all(len(label) <= width for label in labels), (size, width, labels)


@pytest.fixture(scope="module")
def load_events_with_timings() -> list:
    """A concurrency sweep against the fake server, its runs given llama-server's account after the
    fact (a prefill, a decode speed, a prefix cache), so that the table has every remote row."""
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.run.session import SessionRunner

    with FakeServer("ok", n_words=4, delay_s=0.01) as srv:
        cfg = Config.model_validate({"server": {"url": srv.url}, "run": {"warmup": 0, "iterations": 2},
                                     "telemetry": {"backend": "none"},
                                     "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 6,
                                                    "concurrency": [1, 2], "requests": 3}]})
        events: list = []
        runner = SessionRunner(cfg, lambda: RemoteEngine(cfg), events.append)
        runner.run()
    assert runner.error is None
    out = []
    for e in events:
        if isinstance(e, RunFinished) and e.remote is not None:
            e = dataclasses.replace(e, remote=dataclasses.replace(
                e.remote, server_prompt_ms=e.ttft_ns / MS / 2, server_prompt_n=8, server_cache_n=0,
                server_predicted_n=5, server_predicted_ms=5.0))
        out.append(e)
    return out


# ---------------------------------------------------------------------- real servers
def check_session(events: list) -> list[dict[str, Any]]:
    """Every run of a session against a server: its parts a partition of TTFT (ns), and the report's
    run records say the same (unaccounted >= 0, the parts adding up to ttft_ms)."""
    fins = [f for f in finished_runs(events) if f.remote is not None]
    assert fins
    for f in fins:
        check_partition(f.remote, f.ttft_ns)
    runs = build_report(fold(events)).model_dump(mode="json")["runs"]
    for run in runs:
        rm, fig = run["remote"], run["figures"]
        assert run["unaccounted_ms"] >= 0
        parts = (rm["connect_ms"] + rm["send_ms"] + rm["server_wait_ms"] + fig["server_other_ms"]
                 + (fig.get("server_prefill_in_ttft_ms") or 0))
        assert parts + run["unaccounted_ms"] == pytest.approx(run["ttft_ms"], abs=1e-6)
        assert min(rm["connect_ms"], rm["send_ms"], rm["server_wait_ms"], fig["server_other_ms"]) >= 0
    return runs


def session(url: str, **scenario: Any) -> list:
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"server": {"url": url}, "run": {"warmup": 1}, "telemetry": {"backend": "none"},
                                 "scenarios": [{"name": "s", "prompt_tokens": 24, "max_tokens": 3, **scenario}]})
    events: list = []
    runner = SessionRunner(cfg, lambda: RemoteEngine(cfg), events.append)
    runner.run()
    assert runner.error is None
    return events


def test_the_fake_server_gives_no_prefill_and_the_parts_still_add_up():
    with FakeServer("ok", n_words=2, delay_s=0.02) as srv:
        runs = check_session(session(srv.url, concurrency=[1, 2], requests=3))
    for run in runs:
        assert run["remote"]["server_prefill_ms"] is None and run["figures"]["server_prefill_in_ttft_ms"] is None
        assert run["figures"]["server_other_ms"] >= 15  # the server's 20 ms before its first chunk: after the headers


@pytest.mark.model
def test_llama_cpp_pythons_server_gives_no_prefill_and_the_parts_still_add_up(lcp_server):
    """It sends its response headers at once and computes one request at a time: the second
    request's wait for the first is after its headers, in server other, not a remainder."""
    runs = check_session(session(lcp_server, concurrency=[1, 2], requests=3))
    assert {run["scenario"] for run in runs} == {"s@c1", "s@c2"}
    assert all(run["figures"]["server_prefill_in_ttft_ms"] is None and run["unaccounted_ms"] == 0 for run in runs)


def _llama_server_binary() -> str | None:
    return os.environ.get("TTFTUI_LLAMA_SERVER") or shutil.which("llama-server")


def _amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


@pytest.mark.model
@pytest.mark.skipif(_llama_server_binary() is None, reason="llama.cpp's llama-server binary not found "
                    "(set TTFTUI_LLAMA_SERVER or build it: benchmarks/README.md)")
def test_llama_server_at_concurrency_1_and_2_never_leaves_a_negative_rest(model_path):
    """llama-server sends its headers after the slot has started, so its prompt_ms and the client's
    wait for the headers overlap: the rest of TTFT was negative in most runs. Two slots, requests at
    concurrency 1 and 2, prompt progress on (the first event then comes before the prefill ends)."""
    port = free_port()
    cmd = [_llama_server_binary(), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-t", "1",
           "-c", "512", "-np", "2", "-b", "16", "-ub", "16"] + (["--no-repack"] if _amx() else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc)
        runs = check_session(session(url, concurrency=[1, 2], requests=4))
    finally:
        proc.terminate()
        proc.wait(10)
    assert {run["scenario"] for run in runs} == {"s@c1", "s@c2"}
    for run in runs:
        rm, fig = run["remote"], run["figures"]
        assert rm["server_prefill_ms"] > 0 and fig["server_prefill_in_ttft_ms"] > 0
        assert run["unaccounted_ms"] == 0  # every ns up to the TTFT point is in a part
        # the client's whole wait for the headers is the wait plus what of it is inside the prefill
        assert rm["server_wait_ms"] + fig["server_wait_overlap_ms"] == pytest.approx(rm["ttfb_ms"] - rm["send_ms"]
                                                                                      - rm["connect_ms"], abs=1e-6)
