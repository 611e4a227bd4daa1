"""Profiling a server over HTTP (ttftui --url): against llama-cpp-python's own OpenAI-compatible
server running the demo model for real, and against a small fake server for the faults.

llama.cpp's own llama-server runs in the tests marked ``llama_server`` when its binary is found
(TTFTUI_LLAMA_SERVER or llama-server on PATH; benchmarks/README.md says how to build it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import cli, free_port, wait_ready
from .fake_server import FakeServer

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
    assert report["engine"] == "remote" and report["engine_host"] == "remote" and report["schema_version"] == 4
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
        parts = rm["connect_ms"] + rm["send_ms"] + rm["server_wait_ms"] + (rm["server_prefill_ms"] or 0)
        assert parts + run["unaccounted_ms"] == pytest.approx(run["ttft_ms"], abs=1e-3)
        assert run["e2e_ms"] > run["ttft_ms"] and run["decode_tps"] > 0
    summary = report["summary"]["short"]
    assert {"connect", "send", "wait", "unaccounted"} <= set(summary["component_medians_ms"])
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
        rm = run["remote"]
        parts = rm["connect_ms"] + rm["send_ms"] + rm["server_wait_ms"] + (rm["server_prefill_ms"] or 0)
        assert parts + run["unaccounted_ms"] == pytest.approx(run["ttft_ms"], abs=1e-3)
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
