"""Profiling a server over HTTP (ttftui --url): against llama-cpp-python's own OpenAI-compatible
server running the demo model for real, and against a small fake server for the faults.

llama.cpp's own llama-server runs in the tests marked ``llama_server`` when its binary is found
(TTFTUI_LLAMA_SERVER or llama-server on PATH; benchmarks/README.md says how to build it)."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, cli, free_port, spawn, wait_ready
from .fake_server import FakeServer, ServerProcess

ARGS = ("--headless", "-q", "--scenario", "short", "--set", "run.warmup=1")


@pytest.fixture(scope="module")
def remote_run(lcp_server, tmp_path_factory):
    d = tmp_path_factory.mktemp("remote")
    out, rec = d / "r.json", d / "r.ttftrec"
    r = cli(*ARGS, "--url", lcp_server, "--iterations", "3", "-o", str(out), "--record", str(rec))
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text()), rec


@pytest.mark.model
def test_a_server_is_profiled_with_the_clients_timing_points(remote_run):
    report, _ = remote_run
    assert report["engine"] == "remote" and report["engine_host"] == "remote" and report["schema_version"] == 5
    assert report["device"]["kind"] == "remote" and "llama-cpp-python" in report["device"]["name"]
    assert report["load_ms"] is None and report["cold_ttft_ms"] is None  # no model load was seen
    assert len(report["runs"]) == 4
    for run in report["runs"]:
        rm = run["remote"]
        assert run["tokenize_ms"] is None and run["prefill_ms"] is None  # not the engine's phases: not measured
        assert run["n_prompt_tokens"] == 128 and rm["prompt_counted_by"] == "server tokenizer"
        assert run["n_output_tokens"] == 50 and rm["http_status"] == 200 and rm["n_chunks"] >= 1
        assert 0 <= rm["send_ms"] and 0 < rm["ttfb_ms"] <= rm["first_event_ms"] <= rm["first_content_ms"]
        assert run["ttft_ms"] == pytest.approx(rm["first_content_ms"])
        fig = run["figures"]  # the breakdown partitions TTFT (tests/test_remote_breakdown.py)
        parts = (rm["connect_ms"] + rm["send_ms"] + rm["server_wait_ms"] + fig["server_other_ms"]
                 + (fig["server_prefill_in_ttft_ms"] or 0))
        assert parts + run["unaccounted_ms"] == pytest.approx(run["ttft_ms"], abs=1e-3) and run["unaccounted_ms"] >= 0
        assert run["e2e_ms"] > run["ttft_ms"] and run["decode_tps"] > 0
    summary = report["summary"]["short"]
    assert {"connect", "send", "wait", "server_other", "unaccounted"} <= set(summary["component_medians_ms"])
    assert "tokenize" not in summary["component_medians_ms"]


@pytest.mark.model
def test_the_recording_of_a_server_session_replays_to_the_same_report(remote_run):
    report, rec = remote_run
    r = cli("replay", str(rec), "--headless")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["runs"] == report["runs"] and again["summary"] == report["summary"]


def test_prefix_caching_is_never_silent(tmp_path):
    """By default each run's prompt starts elsewhere in the text, so a server cannot reuse a cached
    prefix; with prefix_cache = on the same prompt repeats. (What a cache hit then saves on a real
    server is a speed: benchmarks/bench_claims.py remote measures it.)"""
    sent = {}
    for setting in ("off", "on"):
        with FakeServer("ok") as srv:
            r = cli(*ARGS, "--url", srv.url, "--iterations", "3", "--set", f'server.prefix_cache="{setting}"',
                    "-o", str(tmp_path / f"{setting}.json"))
        assert r.returncode == 0, r.stderr
        sent[setting] = [b["prompt"] for b in srv.bodies]
    assert len(sent["off"]) == len(sent["on"]) == 4  # a warm-up and 3 counted runs
    assert len({p[:40] for p in sent["off"]}) == 4  # four different beginnings: no prefix to reuse
    assert len(set(sent["on"])) == 1 and sent["on"][0]


@pytest.mark.model
def test_concurrent_requests_to_a_real_server_overlap_and_replay(lcp_server, tmp_path):
    """Requests at concurrency 2 against llama-cpp-python's server: all answered, at most two in
    flight, and the recording replays to the same load figures. (That the server computes one at a
    time, so that the second waits for the first, is a matter of its speed: benchmarks/bench_claims.py
    remote measures it.)"""
    out, rec = tmp_path / "load.json", tmp_path / "load.ttftrec"
    r = cli("--headless", "-q", "--url", lcp_server, "--scenario", "short", "--set", "run.warmup=1",
            "--concurrency", "1,2", "--requests", "4", "-o", str(out), "--record", str(rec), timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    c1, c2 = report["load"]["short@c1"], report["load"]["short@c2"]
    assert (c1["n_ok"], c1["max_in_flight"]) == (4, 1) and (c2["n_ok"], c2["n_failed"]) == (4, 0)
    assert 1 <= c2["max_in_flight"] <= 2 and 0 < c2["mean_in_flight"] <= 2
    for run in report["runs"]:  # each request's own account still adds up under load
        rm, fig = run["remote"], run["figures"]
        parts = (rm["connect_ms"] + rm["send_ms"] + rm["server_wait_ms"] + fig["server_other_ms"]
                 + (fig["server_prefill_in_ttft_ms"] or 0))
        assert parts + run["unaccounted_ms"] == pytest.approx(run["ttft_ms"], abs=1e-3) and run["unaccounted_ms"] >= 0
    again = json.loads(cli("replay", str(rec), "--headless").stdout)
    assert again["load"] == report["load"]


def test_faults_are_failed_runs_with_their_reason(tmp_path):
    cases = {
        "http500": "HTTP 500 Internal Server Error: model exploded",
        "malformed": "malformed SSE: an event is not JSON",
        "close_mid": "the stream ended early",
        "stall_after_headers": "timed out after 0.5 s while streaming (the server stalled)",
        "slow_headers": "timed out after 0.5 s before the response headers",
    }
    for mode, reason in cases.items():
        with FakeServer(mode, stall_s=2.0) as srv:
            out = tmp_path / f"{mode}.json"
            r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--iterations", "2",
                    "--set", "run.warmup=0", "--set", "server.read_timeout_s=0.5", "-o", str(out), timeout=120)
        assert r.returncode == 18, (mode, r.stderr)  # nothing succeeded: its own exit code
        assert reason in r.stderr, (mode, r.stderr)
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_server_that_works_gives_runs_and_one_that_is_not_there_is_an_error(tmp_path):
    with FakeServer("ok") as srv:
        out = tmp_path / "ok.json"
        r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--iterations", "2", "-o", str(out))
        assert r.returncode == 0, r.stderr
        report = json.loads(out.read_text())
        run = report["runs"][-1]
        assert run["remote"]["prompt_counted_by"].startswith("estimate")  # no tokenizer there: said so
        assert run["n_prompt_tokens"] == 12 and run["n_output_tokens"] == 3  # from usage
        assert run["output_text"] == " hello world again"
    port = free_port()
    r = cli("--headless", "-q", "--url", f"http://127.0.0.1:{port}/v1", "--scenario", "short")
    assert r.returncode == 6 and "connection refused" in r.stderr
    r = cli("--headless", "-q", "--url", "ftp://nowhere/v1", "--scenario", "short")
    assert r.returncode == 2 and "server.url" in r.stderr


def _llama_server_binary() -> str | None:
    return os.environ.get("TTFTUI_LLAMA_SERVER") or shutil.which("llama-server")


@pytest.mark.model
@pytest.mark.skipif(_llama_server_binary() is None, reason="llama.cpp's llama-server binary not found "
                    "(set TTFTUI_LLAMA_SERVER or build it: benchmarks/README.md)")
def test_llama_server_gives_its_own_account(model_path, tmp_path):
    port = free_port()
    # two slots and its metrics: under load it computes two requests and says how many wait
    cmd = [_llama_server_binary(), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-t", "2",
           "-c", "1024", "-np", "2", "--metrics", "-b", "64", "-ub", "64"] + (["--no-repack"] if _amx() else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc)
        out, load_out = tmp_path / "ls.json", tmp_path / "load.json"
        r = cli(*ARGS, "--url", url, "--iterations", "3", "-o", str(out))
        assert r.returncode == 0, r.stderr
        r = cli(*ARGS, "--url", url, "--concurrency", "4", "--requests", "8", "--set", "server.queue_poll_ms=100",
                "-o", str(load_out))
        assert r.returncode == 0, r.stderr
    finally:
        proc.terminate()
        proc.wait(10)
    report = json.loads(out.read_text())
    assert report["device"]["build"] == "llama-server"
    for run in report["runs"]:
        rm = run["remote"]
        assert rm["server_prefill_ms"] > 0 and rm["server_prompt_n"] > 0
        assert rm["server_cache_n"] is not None  # prefix caching is never silent
        assert run["n_prompt_tokens"] == 128 and run["n_output_tokens"] == 50
        assert run["prefill_tps"] > 0 and rm["server_decode_tps"] > 0
        # its prompt progress, batch by batch (-b 64): the remote counterpart of the engine's chunks
        assert len(rm["server_prefill_chunk_tokens"]) >= 2 and sum(rm["server_prefill_chunk_tokens"]) == rm["server_prompt_n"]
        assert sum(rm["server_prefill_chunks_ms"]) == pytest.approx(rm["server_prefill_ms"], rel=0.05)
    med = report["summary"]["short"]["component_medians_ms"]
    assert med["server_prefill"] > 0  # how much of TTFT it explains is a speed: bench_remote.py compares them
    load = json.loads(load_out.read_text())["load"]["short"]
    assert (load["n_ok"], load["max_in_flight"], load["server_queue_source"]) == (8, 4, "metrics")
    assert load["server_samples"] > 0 and load["server_processing_max"] == 2  # its two slots, by its own account
    assert load["server_deferred_max"] >= 1  # 4 sent, 2 computed: the rest waited in its queue


def test_prompt_progress_becomes_the_servers_prefill_chunks():
    from ttftui.measure.remote.engine import progress_chunks

    ev = [(0, {"total": 541, "cache": 0, "processed": 0, "time_ms": 0}), (1, {"processed": 512, "time_ms": 7808}),
          (2, {"processed": 541, "time_ms": 8176.5})]
    assert progress_chunks(ev) == {"server_chunks_ms": (7808.0, 368.5), "server_chunk_tokens": (512, 29)}
    assert progress_chunks([(0, {"processed": 5, "time_ms": 3}), (1, {"processed": 2, "time_ms": 4})]) == {}  # backwards
    assert progress_chunks([(0, {"processed": "x"})]) == {} and progress_chunks([]) == {}


def _amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


# ---------------------------------------------------------------------- servers that misbehave
# Each from a fake server in a process of its own (tests/fake_server.py, tests/hostile.py): whatever
# it sends, the run fails with its reason and the session goes on and ends, with its exit code.
QUICK = ("--headless", "-q", "--scenario", "short", "--set", "run.warmup=0", "--set", "server.read_timeout_s=1",
         "--set", "server.connect_timeout_s=2")


def _reasons(report_path: Path) -> list[str]:
    return [f["error"] for f in json.loads(report_path.read_text())["failed_runs"]]


@pytest.mark.parametrize("mode, extra, reason", [
    ("slowloris", (), "timed out after 1 s before the response headers"),  # header bytes, one a second
    ("never_answer", (), "timed out after 1 s before the response headers"),
    ("trickle", (), "timed out after 1 s while streaming (the server stalled)"),  # a byte a second, no newline
    ("pings", (), "timed out after 1 s while streaming (the server stalled)"),  # SSE comments for ever
    ("endless_empty", ("--set", "server.read_timeout_s=5", "--set", "server.request_timeout_s=2"),
     "the request took longer than its deadline of 2 s"),  # events without text, for ever
    ("endless", (), "the server sent more than 264 text chunks"),  # text for ever: 4 x max_tokens + 64 kept
    ("huge_event", (), "the server sent an SSE event larger than 1048576 bytes"),
    ("huge_line", (), "the server sent an SSE line longer than 1048576 bytes"),
])
def test_a_server_cannot_hold_the_client_for_ever(mode, extra, reason, tmp_path):
    """Each class of stream that would never end by itself (or fill the memory) ends the run as
    failed with its reason; the session goes on to its next run and ends (18: none succeeded).
    Before these limits, each of them held the client past any deadline."""
    out = tmp_path / "r.json"
    with ServerProcess(mode=mode, stall_s=0.3, chunk_s=0.005) as srv:
        r = cli(*QUICK, *extra, "--url", srv.url, "--iterations", "2", "-o", str(out), timeout=180)
    assert_one_line_error(r, 18, "no request to .* succeeded")
    reasons = _reasons(out)
    assert len(reasons) == 2 and all(x.startswith(reason) for x in reasons), reasons  # both runs, each its reason


def test_headers_that_never_finish_at_start_up_are_cut_off(tmp_path):
    """A slowloris /v1/models while the session starts: one line, the load's exit code (6)."""
    with ServerProcess(models="slowloris", stall_s=0.3) as srv:
        r = cli(*QUICK, "--url", srv.url, timeout=120)
    assert_one_line_error(r, 6, r"did not answer GET /v1/models in full within 2 s")


@pytest.mark.parametrize("mode, kw", [("endless_fast", {}), ("huge_event", {"huge_mb": 600}),
                                      ("huge_line", {"huge_mb": 600})])
def test_a_server_cannot_fill_the_clients_memory(mode, kw, tmp_path):
    """A stream of text as fast as the server can write it, one SSE event of 600 MB in 64 KiB
    lines, one line of 600 MB: the ttftui process's resident memory (sampled, at its peak) stays
    far below 400 MB. (Before: 860 MB in 60 s of a fast stream, 1.4 GB for one event.)"""
    import psutil

    out = tmp_path / "r.json"
    with ServerProcess(mode=mode, **kw) as srv:
        p = spawn(*QUICK, "--url", srv.url, "--iterations", "5", "-o", str(out))
        proc, peak = psutil.Process(p.pid), 0
        while p.poll() is None:
            try:
                peak = max(peak, proc.memory_info().rss)
            except psutil.Error:
                break
            time.sleep(0.02)
        p.communicate(timeout=120)
    print(f"{mode}: peak RSS of the ttftui process {peak / 2**20:.0f} MiB")
    assert p.returncode == 18 and len(_reasons(out)) == 5
    assert 0 < peak < 400 * 2**20


def test_a_runs_text_is_bounded_too(tmp_path):
    out = tmp_path / "r.json"
    with ServerProcess(mode="endless", chunk_s=0.001) as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "1", "--set", "server.max_stream_bytes=10000", "-o", str(out))
    assert r.returncode == 18 and _reasons(out) == ["the server sent more than 10000 bytes of SSE data "
                                                    "(server.max_stream_bytes)"]


@pytest.mark.parametrize("kw, pattern", [
    ({"models": "list"}, "answers with no list of models"),
    ({"models": "data5"}, "answers with no list of models"),
    ({"models": "nested"}, "answers with no list of models"),
    ({"llama": True, "tokens": "strings"}, "tokenizer answered something that is not a token id: '1'"),
    ({"llama": True, "tokens": "dicts"}, "tokenizer answered something that is not a token id"),
    ({"llama": True, "tokens": "nested"}, "tokenizer answered HTTP 200 without a list of tokens"),
])
def test_answers_of_the_wrong_shape_at_start_up_are_one_line_errors(kw, pattern):
    """/v1/models answering a list, {"data": 5} or arrays nested deeper than a parser goes; a
    /tokenize of strings, of dicts without ids, of nested arrays: never an internal error (70)."""
    with ServerProcess(**kw) as srv:
        r = cli(*QUICK, "--url", srv.url, timeout=120)
    assert_one_line_error(r, 6, pattern)


def test_events_of_every_other_shape_are_read_past():
    with ServerProcess(mode="odd_shapes") as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "1")
    assert r.returncode == 0, r.stderr
    assert [run["output_text"] for run in json.loads(r.stdout)["runs"]] == [" ok fine"]


def test_an_event_nested_deeper_than_a_parser_goes_is_a_failed_run(tmp_path):
    out = tmp_path / "r.json"
    with ServerProcess(mode="nested_event") as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "2", "-o", str(out))
    assert_one_line_error(r, 18, "no request to .* succeeded")
    assert len(_reasons(out)) == 2 and all(x.startswith("malformed SSE: an event is not JSON") for x in _reasons(out))


def test_lone_surrogates_and_nul_keep_the_report_and_the_recording_utf8(tmp_path):
    """A stream whose text holds lone surrogates (\\ud800 escapes, which no UTF-8 can hold), NUL and
    terminal controls: the report and the recording made live stay valid UTF-8 JSON, a lone
    surrogate becomes U+FFFD, a pair stays the character it encodes, and the recording replays."""
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    with ServerProcess(mode="odd_text") as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "1", "-o", str(out), "--record", str(rec))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_bytes().decode("utf-8"))
    assert report["runs"][0]["output_text"] == "a\ufffdb\x00nul\ufffd\ufffd\U0001F600 ok\x1b[2J\x07"
    lines = rec.read_bytes().decode("utf-8").splitlines()
    assert all(json.loads(line) for line in lines)
    again = cli("replay", str(rec), "--headless")
    assert again.returncode == 0 and json.loads(again.stdout)["runs"] == report["runs"]


def test_impossible_figures_from_the_server_are_null_with_a_notice(tmp_path):
    """usage and timings of 10^30 and -1000: null in the report (not in any percentile), each with
    its reason in a notice; the client's own counts stand in where it has them."""
    out = tmp_path / "r.json"
    with ServerProcess(mode="absurd") as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "2", "-o", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    for run in report["runs"]:
        rm = run["remote"]
        assert rm["usage_prompt_tokens"] is rm["usage_completion_tokens"] is rm["server_prompt_n"] is None
        assert rm["server_cache_n"] is rm["server_prefill_ms"] is rm["server_decode_tps"] is None
        assert rm["server_predicted_n"] == 2  # a possible value stays
        assert run["n_output_tokens"] == 2 and run["n_prompt_tokens"] == 128  # counted by the client
    notes = [n["message"] for n in report["notices"] if "impossible" in n["message"]]
    assert len(notes) == 2 and all(m.startswith(f"run {k}: ") for k, m in zip((1, 2), notes))
    for part in ("usage.prompt_tokens = 1e+30 is more than 100,000,000 tokens", "usage.completion_tokens = -1000 is "
                 "negative", "timings.prompt_ms = 1e+30 is longer than the whole request", "timings.predicted_ms = "
                 "-1000.0 is negative"):
        assert part in notes[0]
    assert "server_prefill" not in report["summary"]["short"]["component_medians_ms"]


def test_server_figures_are_checked_one_by_one():
    from ttftui.measure.remote.engine import server_figures

    fig, why = server_figures({"prompt_tokens": 12, "completion_tokens": 12.5},
                              {"prompt_n": True, "cache_n": "3", "predicted_n": 0, "prompt_ms": 40.0,
                               "predicted_ms": float("nan")}, [(0, {"processed": 5, "time_ms": 999.0})], 50.0)
    assert (fig["usage_prompt_tokens"], fig["server_predicted_n"], fig["server_prompt_ms"]) == (12, 0, 40.0)
    assert fig["usage_completion_tokens"] is fig["server_prompt_n"] is fig["server_cache_n"] is None
    assert fig["server_predicted_ms"] is None and fig["progress_ok"] is False
    assert why == ["usage.completion_tokens = 12.5 is not a whole number of tokens", "timings.prompt_n = True is not a "
                   "number", "timings.cache_n = '3' is not a number", "timings.predicted_ms = nan is not finite",
                   "prompt_progress.time_ms = 999.0 is longer than the whole request (50.0 ms on the client's clock)"]
    fig, why = server_figures({"prompt_tokens": 10**400}, {"prompt_ms": 10**400, "predicted_ms": -math.inf}, [], 9.0)
    assert fig["usage_prompt_tokens"] is fig["server_prompt_ms"] is fig["server_predicted_ms"] is None and len(why) == 3
    assert server_figures(None, None, [], 1.0) == ({k: None for k in fig if k != "progress_ok"} | {"progress_ok": True},
                                                    [])


def test_usages_cached_tokens_are_the_servers_account_of_its_prefix_cache():
    """vLLM and SGLang say it in usage.prompt_tokens_details.cached_tokens (llama-server in its timings,
    which win where both are given); more cached tokens than the prompt has is refused as impossible."""
    from ttftui.analysis.metrics import remote_figures
    from ttftui.core.events import RemoteTiming
    from ttftui.measure.remote.engine import server_figures

    fig, why = server_figures({"prompt_tokens": 40, "prompt_tokens_details": {"cached_tokens": 30}}, None, [], 9.0)
    assert fig["usage_cached_tokens"] == 30 and why == []
    r = RemoteTiming(usage_prompt_tokens=40, usage_cached_tokens=30, end_ns=5_000_000)
    f = remote_figures(r, 4_000_000)
    assert f["server_cached_tokens_count"] == 30 and f["server_cache_hit_pct"] == pytest.approx(75.0)
    both = remote_figures(RemoteTiming(usage_prompt_tokens=40, usage_cached_tokens=30, server_cache_n=8,
                                       server_prompt_n=32, end_ns=5_000_000), 4_000_000)
    assert both["server_cached_tokens_count"] == 8 and both["server_cache_hit_pct"] == pytest.approx(20.0)
    fig, why = server_figures({"prompt_tokens": 40, "prompt_tokens_details": {"cached_tokens": 41}}, None, [], 9.0)
    assert fig["usage_cached_tokens"] is None
    assert why == ["usage.prompt_tokens_details.cached_tokens = 41 is more than its prompt_tokens 40"]
    fig, why = server_figures({"prompt_tokens_details": {"cached_tokens": -1}}, None, [], 9.0)
    assert fig["usage_cached_tokens"] is None and why == ["usage.prompt_tokens_details.cached_tokens = -1 is negative"]
    assert "server_cache_hit_pct" not in remote_figures(RemoteTiming(end_ns=5_000_000), 4_000_000)


# ---------------------------------------------------------------------- credentials in the URL
def test_credentials_in_the_url_are_sent_as_basic_auth_and_never_written(tmp_path):
    """http://user:password@host/v1: the password goes to the server as HTTP Basic authentication
    and into no output: report, recording, progress, error messages."""
    import base64

    secret = "s3cr%40t"  # percent-encoded in the URL: "s3cr@t" is sent
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    with FakeServer("ok") as srv:
        url = srv.url.replace("http://", f"http://zebulon:{secret}@")
        r = cli("--headless", "--scenario", "short", "--iterations", "1", "--url", url, "-o", str(out),
                "--record", str(rec))
    assert r.returncode == 0, r.stderr
    assert set(srv.auth) == {"Basic " + base64.b64encode(b"zebulon:s3cr@t").decode()}
    written = out.read_bytes() + rec.read_bytes() + r.stdout.encode() + r.stderr.encode()
    assert b"s3cr" not in written and b"zebulon" not in written
    report = json.loads(out.read_text())
    assert report["config"]["server"]["url"] == srv.url and report["model"]["path"] == srv.url
    port = free_port()
    for bad in (f"http://zebulon:{secret}@127.0.0.1:{port}/v1", f"ftp://zebulon:{secret}@127.0.0.1/v1",
                f"http://zebulon:{secret}@127.0.0.1:notaport/v1"):
        r = cli("--headless", "-q", "--scenario", "short", "--url", bad)
        assert r.returncode in (2, 6) and "s3cr" not in r.stderr + r.stdout and "zebulon" not in r.stderr, r.stderr
    r = cli("--headless", "-q", "--scenario", "short", "--url", f"http://zebulon:{secret}@127.0.0.1:{port}/v1", "--set",
            'server.api_key_env="HOME"')
    assert_one_line_error(r, 2, "give one of them")


def test_credentials_are_cut_from_urls_that_do_not_even_parse():
    from ttftui.core.urls import split_credentials, without_credentials

    assert split_credentials("https://a%3Ab:c%2Fd@h:1/v1?x") == ("https://h:1/v1?x", ("a:b", "c/d"))
    assert split_credentials("http://h/v1") == ("http://h/v1", None)
    assert without_credentials("http://u:p@[::1/v1") == "http://[::1/v1"  # not a URL (an unclosed [): cut all the same
    assert without_credentials("http://u:p@ss@h/v1") == "http://h/v1"
    # what was meant as a password but does not parse as one: cut from every text all the same
    for typo in ("http://admin:80#s3cret@127.0.0.1:9/v1", "http://u:s3#cret@h/v1", "http:/u:s3cret@h/v1",
                 "u:s3cret@127.0.0.1:9/v1", '"http://u:s3cret@h/v1"', "http//u:s3cret@h", "http:\\\\u:s3cret@h"):
        assert "s3" not in without_credentials(typo) and "cret" not in without_credentials(typo), typo
    from ttftui.core.config import Config

    cfg = Config.model_validate({"server": {"url": "http://u:p@h/v1"}})
    assert cfg.model_dump(mode="json")["server"]["url"] == "http://h/v1"  # what is recorded and reported
    # a Ray client worker is handed its config with them (in memory), and sends them too
    assert cfg.model_dump(mode="json", context={"credentials": True})["server"]["url"] == "http://u:p@h/v1"


def test_a_password_the_url_does_not_hold_as_one_is_refused_and_never_shown(tmp_path):
    """An unencoded "#" in a password makes urlsplit's host the user name ("admin"): sending it would
    send the password elsewhere. Refused (2), and no message, report or recording has it."""
    port = free_port()
    for url in (f"http://admin:8080#S3CRETPW@127.0.0.1:{port}/v1", f"http://u:S3/CRETPW@127.0.0.1:{port}/v1",
                f"http:/u:S3CRETPW@127.0.0.1:{port}/v1", f"u:S3CRETPW@127.0.0.1:{port}/v1"):
        rec = tmp_path / f"r{len(list(tmp_path.iterdir()))}.ttftrec"
        r = cli("--headless", "-q", "--scenario", "short", "--url", url, "--record", str(rec))
        assert r.returncode == 2 and "S3" not in r.stderr + r.stdout and "CRETPW" not in r.stderr, r.stderr
        assert not rec.exists() or b"CRETPW" not in rec.read_bytes()
    r = cli("--headless", "-q", "--set", f'server.url="http://u:S3CRETPW@127.0.0.1:{port}/v1" junk')
    assert r.returncode == 2 and "CRETPW" not in r.stderr, r.stderr  # even where the text is echoed


def test_a_chunk_size_no_c_size_holds_is_a_failed_run(tmp_path):
    """Transfer-Encoding: chunked with a size line of 20 hex digits: http.client raises OverflowError
    (exit 70 before); now the run fails with the reason."""
    with ServerProcess(mode="chunk_huge_size") as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "1", "-o", str(tmp_path / "r.json"), timeout=120)
    assert r.returncode == 18, r.stderr
    assert "malformed HTTP framing" in r.stderr and "internal error" not in r.stderr


# ---------------------------------------------------------------------- a server lost mid-session
def test_a_server_that_dies_mid_session_is_lost(tmp_path):
    """llama-server-like (its tokenizer is asked before every run) and dead after two answers: the
    runs so far are kept, the next ones fail with the reason (the tokenizer's failure included: a
    failed run, not "could not load the model"), and the session ends as lost (19)."""
    out = tmp_path / "r.json"
    with ServerProcess(mode="die_after", after=2, llama=True) as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "8", "-o", str(out), timeout=120)
    assert_one_line_error(r, 19, r"was lost mid-session: 3 requests in a row got no answer .* GET /models got none "
                                 r"either .*; 2 request\(s\) had succeeded")
    report = json.loads(out.read_text())
    assert [run["run_id"] for run in report["runs"]] == [1, 2]
    reasons = _reasons(out)
    # refused, or reset while the dying server still held the socket: which one is a matter of timing
    assert len(reasons) == 3 and "cannot build the prompt with the server's tokenizer: " in reasons[1]
    assert any(w in reasons[1] for w in ("connection refused", "closed the connection")), reasons[1]
    assert "was lost mid-session" in reasons[2]


def test_a_server_that_stalls_mid_session_is_lost(tmp_path):
    out = tmp_path / "r.json"
    with ServerProcess(mode="stall_after", after=2) as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "8", "-o", str(out), timeout=120)
    assert_one_line_error(r, 19, r"was lost mid-session")
    assert len(json.loads(out.read_text())["runs"]) == 2
    assert _reasons(out)[0] == "timed out after 1 s before the response headers"


def test_a_server_that_answers_its_models_is_not_lost(tmp_path):
    """Streams that all end early after two good ones, from a server that still answers GET
    /models: failed runs with their reason, as documented; not a lost server."""
    out = tmp_path / "r.json"
    with ServerProcess(mode="close_after", after=2) as srv:
        r = cli(*QUICK, "--url", srv.url, "--iterations", "8", "-o", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(out.read_text())["runs"]) == 2
    assert len(_reasons(out)) == 6 and all(x.startswith("the stream ended early") for x in _reasons(out))
