"""Load scenarios (concurrency / rate against a server): plans, arrival schedules, the figures
derived from events, the reducer with overlapping runs, and sessions against a server that counts
what reached it (the fake server; the real one is in test_remote)."""

from __future__ import annotations

import dataclasses
import json
import signal
import statistics
import time

import pytest

from ttftui.core.config import Config, RunConfig, ScenarioConfig, with_load
from ttftui.core.errors import ConfigError
from ttftui.core.events import RunFailed, RunFinished, RunStarted, TokenEmitted
from ttftui.analysis.load import LoadPlan, Request, arrival_offsets_ns, load_figures, max_overlap, plan_for
from ttftui.analysis.reducer import apply, fold

from .conftest import cli, engine_ready, phaseless_run_finished, run_started, spawn, wait_until
from .fake_server import FakeServer

URL = {"server": {"url": "http://127.0.0.1:9/v1"}}


def _cfg(**sc):
    return Config.model_validate({**URL, "scenarios": [{"name": "s", "prompt_tokens": 32, "max_tokens": 4, **sc}]})


# ---------------------------------------------------------------------- config and plans
def test_a_load_scenario_is_planned_from_its_options_and_the_run_defaults():
    run = RunConfig(warmup=1, iterations=3)
    c = plan_for(run, ScenarioConfig(name="s", prompt_tokens=8, max_tokens=2, concurrency=4))
    assert (c.mode, c.n_warmup, c.n_counted, c.max_in_flight) == ("closed", 4, 12, 4)  # a round per iteration
    o = plan_for(run, ScenarioConfig(name="s", prompt_tokens=8, max_tokens=2, rate=2.5, requests=7, warmup_requests=0))
    assert (o.mode, o.n_warmup, o.n_counted, o.rate) == ("open", 0, 7, 2.5)
    assert plan_for(run, ScenarioConfig(name="s", prompt_tokens=8, max_tokens=2)) is None


def test_load_lists_sweep_and_bad_load_options_are_one_line_errors():
    cfg = _cfg(concurrency=[1, 2, 8])
    assert [(s.name, s.concurrency, s.load) for s in cfg.scenarios] == [("s@c1", 1, "s"), ("s@c2", 2, "s"),
                                                                          ("s@c8", 8, "s")]
    assert [s.name for s in _cfg(rate=[0.5, 4]).scenarios] == ["s@r0.5", "s@r4"]
    with pytest.raises(ValueError, match="either concurrency .* or rate"):
        _cfg(concurrency=2, rate=1.0)
    with pytest.raises(ValueError, match="requests applies to a load scenario"):
        _cfg(requests=5)
    with pytest.raises(ValueError, match="give its URL"):
        Config.model_validate({"scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 2, "concurrency": 2}]})
    with pytest.raises(ValueError, match="distinct"):
        _cfg(concurrency=[2, 2])


def test_the_command_line_load_options_replace_the_files_load_sweep():
    cfg = with_load(_cfg(concurrency=[1, 2]), concurrency=[4, 8], requests=9)
    assert [(s.name, s.concurrency, s.requests) for s in cfg.scenarios] == [("s@c4", 4, 9), ("s@c8", 8, 9)]
    cfg = with_load(_cfg(concurrency=3), rate=[2.0])
    assert [(s.name, s.concurrency, s.rate) for s in cfg.scenarios] == [("s", None, 2.0)]
    with pytest.raises(ConfigError, match="^--requests: .*requests applies to a load scenario"):
        with_load(_cfg(), requests=3)


def test_load_needs_a_server_and_says_so_in_one_line():
    r = cli("--headless", "--concurrency", "2", "--scenario", "short")
    assert r.returncode == 2 and "send requests to a server; give its URL" in r.stderr and r.stderr.count("\n") == 1
    r = cli("--headless", "--synthetic", "--url", "http://127.0.0.1:9/v1", "--concurrency", "2", "--scenario", "short")
    assert r.returncode == 2 and "need a server" in r.stderr and r.stderr.count("\n") == 1
    r = cli("--headless", "--concurrency", "0")
    assert r.returncode == 2 and "must be at least 1" in r.stderr
    r = cli("--headless", "--rate", "nan", "--url", "http://127.0.0.1:9/v1")
    assert r.returncode == 2 and "positive number" in r.stderr


# ---------------------------------------------------------------------- arrivals and figures
def test_constant_arrivals_are_evenly_spaced_and_poisson_ones_have_exponential_gaps():
    const = arrival_offsets_ns(LoadPlan("open", None, 4.0, "constant", 0, 5, 64), 5, 42, "s")
    assert const == [0, 250_000_000, 500_000_000, 750_000_000, 1_000_000_000]
    plan = LoadPlan("open", None, 10.0, "poisson", 0, 4000, 64)
    off = arrival_offsets_ns(plan, 4000, 42, "s")
    assert off == arrival_offsets_ns(plan, 4000, 42, "s")  # same seed, same schedule
    assert off != arrival_offsets_ns(plan, 4000, 43, "s")
    gaps = [b - a for a, b in zip(off, off[1:])]
    mean = statistics.fmean(gaps)
    assert mean == pytest.approx(1e8, rel=0.06)  # 1/rate
    assert statistics.pstdev(gaps) / mean == pytest.approx(1.0, rel=0.08)  # exponential: CV 1
    assert statistics.median(gaps) / mean == pytest.approx(0.693, rel=0.08)  # ln 2


def test_load_figures_from_known_requests():
    s = 1_000_000_000
    reqs = [
        Request(0, 1 * s, warmup=True, ok=True, good=True, n_output=5),  # left out of the counts, not of in-flight
        Request(1 * s, 3 * s, warmup=False, ok=True, good=True, n_output=10, client_lag_ns=2_000_000),
        Request(1 * s, 2 * s, warmup=False, ok=True, good=False, n_output=10, client_lag_ns=4_000_000),
        Request(2 * s, 5 * s, warmup=False, ok=False, good=False, n_output=0, client_lag_ns=6_000_000),
    ]
    f = load_figures(LoadPlan("open", None, 1.0, "poisson", 1, 3, 8), reqs, slo=True)
    assert (f.n_requests, f.n_ok, f.n_failed, f.n_good) == (3, 2, 1, 1)
    assert f.span_s == 4.0 and f.request_rate == 0.5 and f.goodput_rps == 0.25 and f.output_tps == 5.0
    assert f.max_in_flight == 2  # 1-3 and 1-2, then 1-3 and 2-5 (an end at 2 closes before the start at 2)
    assert f.mean_in_flight == pytest.approx((2 + 1 + 3) / 4)
    assert (f.client_lag_p50_ms, f.client_lag_max_ms) == (4.0, 6.0)
    assert load_figures(LoadPlan("closed", 2, None, "poisson", 0, 2, 2), reqs).goodput_rps is None  # no SLO given
    assert max_overlap([(0, 10), (1, 9), (2, 8), (8, 12)]) == 3


# ---------------------------------------------------------------------- the reducer with overlapping runs
def _tok(rid: int, i: int, t: int) -> TokenEmitted:
    return TokenEmitted(t_ns=t, run_id=rid, index=i, token_id=-1, text=f"r{rid}t{i}", dt_ns=10)


def test_overlapping_runs_of_a_server_each_keep_their_own_tokens():
    evs = [engine_ready("remote"), run_started(1, 10), run_started(2, 11), _tok(2, 0, 20), _tok(1, 0, 21),
           run_started(3, 22), _tok(1, 1, 23), _tok(2, 1, 24)]
    st = fold(evs)
    assert [r.run_id for r in st.in_flight] == [1, 2, 3] and st.current.run_id == 3
    assert [r.text for r in st.in_flight] == ["r1t0r1t1", "r2t0r2t1", ""]
    before = st
    st = apply(st, phaseless_run_finished(2, 30, ttft_ns=9, e2e_ns=13, n_output_tokens=2))
    st = apply(st, RunFailed(t_ns=31, run_id=1, scenario="s", error="HTTP 503"))
    assert [r.run_id for r in st.in_flight] == [3] and [r.run_id for r in st.runs] == [2, 1]
    assert st.runs[0].metrics is not None and st.runs[0].end_ns == 30 and st.runs[1].failed == "HTTP 503"
    assert [r.run_id for r in before.in_flight] == [1, 2, 3]  # pure: the older state is as it was


def test_a_local_engines_run_that_never_ended_is_dropped_not_kept_in_flight():
    st = fold([engine_ready("llama.cpp"), run_started(1, 10), _tok(1, 0, 11), run_started(2, 12)])
    assert [r.run_id for r in st.in_flight] == [2] and len(st.runs) == 0


# ---------------------------------------------------------------------- sessions against a server
LOAD_TOML = """
[run]
warmup = 1
iterations = 2
[[scenarios]]
name = "c"
prompt_tokens = 32
max_tokens = 3
concurrency = [1, 4]
[[scenarios]]
name = "o"
prompt_tokens = 32
max_tokens = 3
rate = 40
arrival = "constant"
requests = 12
warmup_requests = 0
[[alerts]]
metric = "ttft_ms"
statistic = "per_run"
value = 60000
"""


@pytest.fixture(scope="module")
def load_session(tmp_path_factory):
    d = tmp_path_factory.mktemp("load")
    cfg, out, rec = d / "load.toml", d / "r.json", d / "r.ttftrec"
    cfg.write_text(LOAD_TOML)
    with FakeServer("ok", delay_s=0.3) as srv:
        r = cli("--headless", "-q", "--config", str(cfg), "--url", srv.url, "-o", str(out), "--record", str(rec),
                timeout=300)
        arrivals = list(srv.arrivals)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text()), rec, arrivals


def test_closed_loop_keeps_n_requests_in_flight_and_reports_throughput(load_session):
    report, _, arrivals = load_session
    assert report["schema_version"] == 5
    assert len(arrivals) == (1 + 2) + (4 + 8) + 12  # every request reached the server, warm-ups included
    c1, c4 = report["load"]["c@c1"], report["load"]["c@c4"]
    assert (c1["mode"], c1["concurrency"], c1["sweep"], c1["n_requests"], c1["max_in_flight"]) == ("closed", 1, "c", 2, 1)
    assert (c4["n_requests"], c4["n_ok"], c4["n_failed"]) == (8, 8, 0) and 1 <= c4["max_in_flight"] <= 4
    assert 0 < c4["mean_in_flight"] <= 4 and c4["request_rate"] > 0 and c1["request_rate"] > 0
    assert c4["n_good"] == 8 and c4["goodput_rps"] == c4["request_rate"]  # every request met the per-run rule
    runs = [r for r in report["runs"] if r["scenario"] == "c@c4"]
    # the server waits 0.3 s before its first chunk: a floor under every TTFT, whatever the machine's speed
    assert sum(r["warmup"] for r in runs) == 4 and all(r["ttft_ms"] >= 300 for r in runs)


def test_open_loop_sends_on_schedule_whether_or_not_earlier_requests_have_ended(load_session):
    report, _, _ = load_session
    o = report["load"]["o"]
    assert (o["mode"], o["rate"], o["arrival"], o["n_requests"], o["n_ok"]) == ("open", 40.0, "constant", 12, 12)
    assert 1 <= o["max_in_flight"] <= 12
    assert o["client_lag_max_ms"] is not None and o["client_lag_p50_ms"] >= 0
    lags = [r["remote"]["client_lag_ms"] for r in report["runs"] if r["scenario"] == "o"]
    assert len(lags) == 12 and all(x is not None and x >= 0 for x in lags)
    # How closely the sends follow the schedule on a loaded machine, and how request rate grows
    # with concurrency, are speeds: benchmarks/bench_claims.py load. That an open loop does not wait
    # for answers, and a closed one keeps its N in flight, is pinned below with a barrier server.


def remote_load_events(url: str, scenario: dict) -> list:
    """A load session (one scenario, no warm-up) against the server at ``url``, in this process."""
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"server": {"url": url}, "run": {"warmup": 0}, "telemetry": {"backend": "none"},
                                 "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 3, **scenario}]})
    events: list = []
    runner = SessionRunner(cfg, lambda: RemoteEngine(cfg), events.append)
    runner.run()
    assert runner.error is None
    return events


def _load_of(events: list) -> dict:
    from ttftui.report.build import build_report

    return build_report(fold(events)).model_dump(mode="json")["load"]["s"]


def test_a_closed_loop_fills_all_its_slots_and_refills_each_one_that_ends():
    """The server answers only once 4 requests are open at it (a barrier): a closed loop at
    concurrency 4 must have sent 4 before any answer, and send the next 4 as those end, or the
    barrier never fills (it gives up after a minute and says so)."""
    with FakeServer("ok", batch=4) as srv:
        load = _load_of(remote_load_events(srv.url, {"concurrency": 4, "requests": 8}))
    assert srv.batch_timeouts == 0 and srv.max_active == 4 and len(srv.arrivals) == 8
    assert (load["mode"], load["n_requests"], load["n_ok"], load["max_in_flight"]) == ("closed", 8, 8, 4)


def test_an_open_loop_sends_every_request_without_waiting_for_an_answer():
    """The server holds every request until all 12 have arrived: an open loop sends on its schedule
    regardless (all 12 in flight at once); a loop that waited for answers would never fill it."""
    with FakeServer("ok", batch=12) as srv:
        load = _load_of(remote_load_events(srv.url, {"rate": 40, "arrival": "constant", "requests": 12,
                                                     "warmup_requests": 0}))
    assert srv.batch_timeouts == 0 and srv.max_active == 12
    assert (load["mode"], load["n_requests"], load["n_ok"], load["max_in_flight"]) == ("open", 12, 12, 12)


def test_a_load_sessions_recording_replays_to_the_same_report(load_session):
    report, rec, _ = load_session
    r = cli("replay", str(rec), "--headless")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["load"] == report["load"] and again["runs"] == report["runs"]
    assert again["summary"] == report["summary"]


def test_a_failing_server_under_load_gives_failed_requests_and_its_own_exit_code(tmp_path):
    with FakeServer("http500") as srv:
        out = tmp_path / "r.json"
        r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--concurrency", "3", "--requests", "6",
                "--set", "run.warmup=0", "-o", str(out), timeout=120)
    assert r.returncode == 18 and "HTTP 500" in r.stderr and "Traceback" not in r.stderr
    load = json.loads(out.read_text())["load"]["short"]  # the failures are in the report
    assert (load["n_requests"], load["n_ok"], load["n_failed"]) == (6, 0, 6)


# ---------------------------------------------------------------------- the dashboard
@pytest.fixture(scope="module")
def load_events():
    """A real load session against the fake server (3 in flight, 6 requests), as events. The
    server answers in batches of 3 (a barrier): the three first requests all start before any ends."""
    with FakeServer("ok", batch=3) as srv:
        events = remote_load_events(srv.url, {"name": "c", "concurrency": 3, "requests": 6})
    assert srv.batch_timeouts == 0 and sum(isinstance(e, RunStarted) for e in events) == 6
    return events


async def test_the_dashboard_draws_a_lane_per_request_in_flight_then_the_load_figures(load_events):
    from ttftui.tui.app import TtftApp
    from ttftui.tui.widgets.requests import RequestLanes

    from .tui_support import StaticSource, fixed_clock

    third = [i for i, e in enumerate(load_events) if isinstance(e, RunStarted)][2]
    middle = load_events[: third + 1]  # three requests started, none ended yet
    assert not any(isinstance(e, (RunFinished, RunFailed)) for e in middle)
    app = TtftApp(StaticSource(middle), clock=fixed_clock(middle))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        lanes = app.query_one(RequestLanes)
        assert lanes.display
        text = lanes.visible_text()
        assert text.startswith("3 in flight · c: closed loop, 3 in flight")
        assert [ln.split()[0] for ln in text.splitlines()[1:4]] == ["#1", "#2", "#3"]
        assert "waiting" in text
    app = TtftApp(StaticSource(load_events), clock=fixed_clock(load_events))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        text = app.query_one(RequestLanes).visible_text()
        assert text.startswith("0 in flight") and "req/s" in text
        row = next(ln for ln in text.splitlines() if ln.startswith("c "))
        assert "c=3" in row and row.split()[-1] == "0"  # no request failed


async def test_an_ordinary_session_has_no_requests_panel():
    from ttftui.tui.app import TtftApp
    from ttftui.tui.widgets.requests import RequestLanes

    from .tui_support import StaticSource, fixed_clock, synthetic_session

    events = synthetic_session(iterations=1, warmup=0)
    app = TtftApp(StaticSource(events), clock=fixed_clock(events))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert not app.query_one(RequestLanes).display


def test_the_servers_queue_is_read_from_its_metrics_and_kept_to_the_counted_span():
    from ttftui.core.events import ServerSample
    from ttftui.analysis.load import LoadFigures, with_server_queue
    from ttftui.measure.remote.engine import prometheus_gauges

    text = ("# HELP llamacpp:requests_deferred Number of requests deferred\n# TYPE llamacpp:requests_deferred gauge\n"
            "llamacpp:requests_processing 2\nllamacpp:requests_deferred 3\nother{label=\"x\"} 1.5\nbroken line\n")
    assert prometheus_gauges(text) == {"llamacpp:requests_processing": 2.0, "llamacpp:requests_deferred": 3.0, "other": 1.5}
    vllm = ('vllm:num_requests_waiting{model_name="a b"} 4.0\nvllm:num_requests_waiting{model_name="c"} 1.0\n'
            'vllm:num_requests_running{model_name="a b"} 8.0 1718000000\n')  # per model, with a timestamp
    assert prometheus_gauges(vllm) == {"vllm:num_requests_waiting": 5.0, "vllm:num_requests_running": 8.0}
    f = load_figures(LoadPlan("closed", 4, None, "poisson", 0, 2, 4),
                     [Request(100, 200, warmup=False, ok=True, good=True, n_output=1),
                      Request(150, 300, warmup=False, ok=True, good=True, n_output=1)])
    samples = [ServerSample(t_ns=50, source="metrics", requests_processing=9, requests_deferred=9),  # before: out
               ServerSample(t_ns=120, source="metrics", requests_processing=2, requests_deferred=1),
               ServerSample(t_ns=250, source="metrics", requests_processing=2, requests_deferred=3)]
    g = with_server_queue(f, [Request(100, 200, False, True, True, 1), Request(150, 300, False, True, True, 1)], samples)
    assert isinstance(g, LoadFigures) and g.server_queue_source == "metrics" and g.server_samples == 2
    assert (g.server_processing_max, g.server_deferred_max, g.server_deferred_mean) == (2, 3, 2.0)
    assert with_server_queue(f, [Request(100, 200, False, True, True, 1)], []) is f  # no reading: nothing claimed


def test_the_servers_prefix_cache_over_the_counted_requests():
    """Its per-request account, token-weighted over the requests that gave one; its /metrics counters'
    difference from the last reading before the first counted request to the first after the last."""
    from ttftui.analysis.load import with_server_cache
    from ttftui.core.events import ServerSample

    def req(start: int, end: int, n: int, cached: int | None, ok: bool = True) -> Request:
        return Request(start, end, warmup=False, ok=ok, good=ok, n_output=1, n_prompt=n, cached=cached)

    counted = [req(100, 200, 100, 80), req(150, 300, 300, 0), req(160, 310, 50, None), req(170, 320, 40, 40, ok=False)]
    f = load_figures(LoadPlan("closed", 2, None, "poisson", 0, 2, 4), counted)

    def sample(t: int, queried: int | None, hits: int | None, sent: int | None = None) -> ServerSample:
        return ServerSample(t_ns=t, source="metrics", requests_processing=1, requests_deferred=0,
                            prefix_cache_queried=queried, prefix_cache_hits=hits, sent_ns=sent)

    # (the reading answered at 325 was asked for at 310, before the last request ended: it may miss it)
    samples = [sample(10, 1000, 100), sample(90, 2000, 500), sample(200, 2100, 550), sample(325, 2500, 650, 310),
               sample(330, 2600, 700, 321), sample(400, 9000, 9000)]
    g = with_server_cache(f, counted, samples)
    # 80 of 400 prompt tokens; the request that said nothing and the failed one are left out
    assert g.server_cache_hit_pct == pytest.approx(20.0) and g.server_cache_reported == 2
    # from the reading answered at 90 (the last before 100) to the one asked for at 321 (the first after
    # 320): 200 of 600
    assert g.server_metrics_cache_hit_pct == pytest.approx(200 / 600 * 100) and g.server_metrics_cache_queried == 600
    # no reading after the last counted request, or counters that went back (a restart): no claim
    assert with_server_cache(f, counted, samples[:4]).server_metrics_cache_hit_pct is None
    restarted = with_server_cache(f, counted, [sample(90, 2000, 500), sample(330, 10, 5)])
    assert restarted.server_metrics_cache_hit_pct is None and restarted.server_metrics_cache_queried is None
    idle = with_server_cache(f, counted, [sample(90, 2000, 500), sample(330, 2000, 500)])
    assert idle.server_metrics_cache_hit_pct is None and idle.server_metrics_cache_queried == 0
    # a server that says nothing of its cache (llama-server's /slots, a reading without the counters)
    quiet = with_server_cache(f, [req(100, 200, 100, None)], [sample(90, None, None), sample(330, None, None)])
    assert (quiet.server_cache_hit_pct, quiet.server_cache_reported, quiet.server_metrics_cache_hit_pct) == (None, 0, None)
    assert g.trace_reusable_pct is None  # not a trace
    # a trace's requests: what its sharing allows, over the same prompt tokens (the failed one left out)
    traced = [dataclasses.replace(r, reusable=k) for r, k in zip(counted, (50, 150, 0, 40))]
    assert with_server_cache(f, traced, []).trace_reusable_pct == pytest.approx(200 / 450 * 100)


def test_a_load_against_a_server_with_a_prefix_cache_reports_its_hit_rate(tmp_path):
    """The fake server finds 9 of each request's 12 prompt tokens in its cache and counts 60 of 100
    looked up in its vLLM-style /metrics: both accounts reach the load record and the HTML."""
    out = tmp_path / "r.json"
    with FakeServer("ok", delay_s=0.05, cache=(100, 60)) as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--concurrency", "2", "--requests", "6",
                "--set", "server.queue_poll_ms=50", "--set", "server.prefix_cache=on", "-o", str(out), timeout=300)
        looked_up = srv.cache_queried  # counted before each answer's end is written: every answer's is in
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    load = report["load"]["short"]
    counted = [x for x in report["runs"] if x["counted"]]
    assert len(counted) == 6 and all(x["figures"]["server_cached_tokens_count"] == 9 for x in counted)
    want = sum(9 for _ in counted) / sum(x["n_prompt_tokens"] for x in counted) * 100
    assert load["server_cache_hit_pct"] == pytest.approx(want) and load["server_cache_reported"] == 6
    assert load["server_metrics_cache_hit_pct"] == pytest.approx(60.0)
    # every counted request's lookup is in the difference; warm-ups at most besides (8 answers in all)
    assert looked_up == 800 and 600 <= load["server_metrics_cache_queried"] <= 800
    assert load["server_metrics_cache_queried"] % 100 == 0
    page = cli("report", str(out), "--html", str(tmp_path / "r.html"))
    assert page.returncode == 0, page.stderr
    html = (tmp_path / "r.html").read_text()
    assert "server cache hit" in html and "(its /metrics, " in html


# ---------------------------------------------------------------------- a server that stops answering
@pytest.mark.parametrize("load, sig, code", [
    (("--concurrency", "64", "--requests", "128"), signal.SIGINT, 130),
    (("--rate", "500", "--requests", "5000"), signal.SIGINT, 130),
    (("--concurrency", "64", "--requests", "128"), signal.SIGTERM, 143),
])
def test_a_stop_under_load_acts_at_once_against_a_server_that_never_answers(load, sig, code, tmp_path):
    """64 requests in flight (or an open loop at 500/s) at a server that accepts and never answers,
    with a read timeout of 10 minutes: Ctrl+C (SIGTERM) ends the requests in flight at once, drops
    the requests due but not sent, and the session ends as interrupted (terminated), its report
    written. (Before: 116-120 s, until a read timeout fired, and then 18.)"""
    out = tmp_path / "r.json"
    with FakeServer("never_answer") as srv:
        p = spawn("--headless", "-q", "--url", srv.url, "--scenario", "short", "--set", "run.warmup=0",
                  "--set", "server.read_timeout_s=600", *load, "-o", str(out))
        try:
            wait_until(lambda: srv.active >= 64 or p.poll() is not None, 120, what="64 requests in flight")
            p.send_signal(sig)
            t = time.monotonic()
            _, err = p.communicate(timeout=120)  # a bound for a failure only, far below the read timeout
            took = time.monotonic() - t
        finally:
            if p.poll() is None:
                p.kill()
    print(f"{load[0]} {load[1]}, {signal.Signals(sig).name}: exited {p.returncode} {took:.2f} s after the signal")
    assert p.returncode == code, err
    report = json.loads(out.read_text())
    assert report["runs"] == [] and {f["error"] for f in report["failed_runs"]} == {"stopped before the first token"}


def test_a_server_that_dies_under_load_is_lost_and_ends_the_session(tmp_path):
    """Eight in flight, and the server dies after six answers: the requests in flight fail with
    the reason, none is sent after, the completed ones are kept, and the session ends with 19."""
    from .fake_server import ServerProcess

    out = tmp_path / "r.json"
    with ServerProcess(mode="die_after", after=6) as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--set", "run.warmup=0",
                "--concurrency", "8", "--requests", "400", "-o", str(out), timeout=180)
    assert r.returncode == 19 and "was lost mid-session" in r.stderr and r.stderr.count("\n") == 1, r.stderr
    report = json.loads(out.read_text())
    assert len(report["runs"]) == 6 and 1 <= len(report["failed_runs"]) < 400 - 6


def test_an_open_loop_sends_nothing_that_was_due_after_a_stop():
    """Requests due while every worker is busy wait in a queue; after a stop none of them is
    sent, and they count as not sent."""
    import threading

    from ttftui.run.loadloop import LoadLoop

    stop, release, started = threading.Event(), threading.Event(), []

    class W:
        def close(self) -> None:
            pass

    def one(_w, i, _due):
        started.append(i)
        release.wait(30)

    loop = LoadLoop(W, one, stop=stop)
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(loop.open([0] * 10 + [10**9] * 5, 2)))
    th.start()
    wait_until(lambda: len(started) == 2, what="both workers busy")
    stop.set()
    release.set()
    th.join(30)
    assert sorted(started) == [0, 1] and result == [13]
