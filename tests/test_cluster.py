"""Load from Ray client workers (--ray): a local two-node Ray cluster on 127.0.0.1 (ray's own
cluster_utils), workers against llama-cpp-python's server with the demo model, a worker killed in
the middle of a phase, and merged statistics from raw samples."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from ttftui.config import Config
from ttftui.events import DeviceFacts, EngineReady, ModelFacts, RunFinished, RunStarted, SessionStarted
from ttftui.reducer import fold
from ttftui.report import build_report

from .conftest import ROOT, cli
from .fake_server import FakeServer


def test_without_ray_the_option_is_one_line_naming_the_extra(tmp_path):
    fake = tmp_path / "ray"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('no ray here')\n")
    with FakeServer("ok") as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--scenario", "short", "--concurrency", "2", "--requests", "2",
                "--ray", "local", env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"})
    assert r.returncode == 2 and r.stderr.strip() == "ttftui: --ray needs Ray: pip install 'ttftui[ray]'"
    r = cli("--headless", "--ray", "local", "--scenario", "short")
    assert r.returncode == 2 and "Ray client workers send requests to a server" in r.stderr


def test_merged_percentiles_pool_every_workers_raw_samples():
    """Two workers with known TTFTs: the scenario's percentiles are those of all samples pooled
    (never an average of each worker's percentiles), and each worker keeps its own."""
    cfg = Config.model_validate({"server": {"url": "http://127.0.0.1:9/v1"}, "run": {"warmup": 0},
                                 "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 2, "concurrency": 2,
                                                "requests": 10}]})
    ttft = {"a:1": [10, 11, 12, 13, 100], "b:2": [50, 51, 52, 53, 54]}
    evs: list = [SessionStarted(t_ns=0, session_id="x", started_at="2026-11-27T00:00:00+00:00", ttftui_version="t",
                                config=cfg.model_dump(mode="json")),
                 EngineReady(t_ns=1, engine="remote", synthetic=False, synthetic_reason=None, load_ms=None,
                             model=ModelFacts(path="u", name="m", file_size_bytes=0), device=DeviceFacts(kind="remote", name="s"))]
    rid = 0
    for w, values in ttft.items():
        for v in values:
            rid += 1
            t0 = rid * 1_000_000
            evs.append(RunStarted(t_ns=t0, run_id=rid, scenario="s", iteration=rid - 1, warmup=False, prompt_tokens=8,
                                  max_tokens=2, worker=w))
            evs.append(RunFinished(t_ns=t0 + v * 1_000_000, run_id=rid, scenario="s", warmup=False, n_prompt_tokens=8,
                                   n_output_tokens=1, ttft_ns=v * 1_000_000, e2e_ns=v * 1_000_000, tokenize_ns=None,
                                   cache_prep_ns=None, prefill_ns=None, prefill_chunks_ns=(), prefill_chunk_tokens=(),
                                   first_sample_ns=None, first_detok_ns=None, stop_reason="max_tokens"))
    report = build_report(fold(evs)).model_dump(mode="json")
    pooled = [v for vs in ttft.values() for v in vs]
    m = report["summary"]["s"]["metrics"]["ttft_ms"]
    assert m["n"] == 10 and m["p50"] == pytest.approx(np.percentile(pooled, 50)) and m["p99"] == pytest.approx(
        np.percentile(pooled, 99))
    assert m["p50"] != pytest.approx((np.percentile(ttft["a:1"], 50) + np.percentile(ttft["b:2"], 50)) / 2)
    workers = report["load"]["s"]["workers"]
    assert set(workers) == set(ttft) and all(workers[w]["n_ok"] == 5 for w in ttft)
    assert workers["a:1"]["ttft_p50_ms"] == pytest.approx(12) and workers["b:2"]["ttft_p50_ms"] == pytest.approx(52)
    assert {r["worker"] for r in report["runs"]} == set(ttft)


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine (ray.cluster_utils), one CPU each."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ttftui[ray]')")
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    try:
        yield c.address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()


@pytest.mark.model
def test_two_workers_on_two_nodes_profile_a_real_server(cluster, lcp_server, tmp_path):
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    r = cli("--headless", "--url", lcp_server, "--scenario", "short", "--set", "run.warmup=0", "--concurrency", "2",
            "--requests", "4", "--set", "scenarios=[{name='short', prompt_tokens=64, max_tokens=8}]",
            "--ray", cluster, "--workers", "2", "-o", str(out), "--record", str(rec), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "note: Ray: 2 client workers on 2 node(s)" in r.stderr
    report = json.loads(out.read_text())
    load = report["load"]["short"]
    assert (load["n_ok"], load["n_failed"]) == (4, 0) and len(load["workers"]) == 2
    assert len({w.split(":")[0] for w in load["workers"]}) == 2  # spread over both nodes
    runs = report["runs"]
    assert sorted(x["run_id"] for x in runs) == [1, 2, 3, 4] and all(x["worker"] in load["workers"] for x in runs)
    for run in runs:  # each duration measured on one worker's clock
        assert run["n_prompt_tokens"] == 64 and 0 < run["ttft_ms"] < run["e2e_ms"]
        assert run["remote"]["prompt_counted_by"] == "server tokenizer"
    again = json.loads(cli("replay", str(rec), "--headless").stdout)
    assert again["load"] == report["load"] and again["runs"] == runs


def test_a_worker_killed_mid_phase_is_an_event_and_the_session_goes_on(cluster, tmp_path):
    with FakeServer("ok", delay_s=0.3, chunk_s=0.05, n_words=10) as srv:
        out = tmp_path / "r.json"
        proc = subprocess.Popen([sys.executable, "-m", "ttftui", "--headless", "--url", srv.url, "--scenario", "short",
                                 "--set", "run.warmup=0", "--concurrency", "2", "--requests", "16", "--ray", cluster,
                                 "--workers", "2", "-o", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        pids: list[int] = []
        killed = threading.Event()

        def read() -> None:
            for line in proc.stderr:  # type: ignore[union-attr]
                lines.append(line)
                if "Ray: 2 client workers" in line:
                    pids.extend(int(x) for x in re.findall(r":(\d+)\b", line.split("):")[-1]))
                if pids and not killed.is_set() and sum("short run" in x and "TTFT" in x for x in lines) >= 2:
                    os.kill(pids[0], signal.SIGKILL)  # one worker dies with requests in flight
                    killed.set()

        t = threading.Thread(target=read, daemon=True)
        t.start()
        rc = proc.wait(300)
        t.join(10)
    assert killed.is_set(), "".join(lines)
    assert rc == 0, "".join(lines)  # the session went on with the other worker
    assert any("lost" in x and "the others go on" in x for x in lines)
    report = json.loads(out.read_text())
    (lost,) = report["workers_lost"]
    assert lost["worker"].endswith(f":{pids[0]}") and lost["reason"]
    load = report["load"]["short"]
    failed_ids = {f["run_id"] for f in report["failed_runs"]}
    assert set(lost["lost_runs"]) <= failed_ids  # its runs in flight ended failed, with the reason
    assert load["n_ok"] + load["n_failed"] + lost["unsent"] == 16  # every request accounted for
    assert load["n_ok"] >= 8  # the survivor sent its whole share
    survivor = [w for w in load["workers"] if not w.endswith(f":{pids[0]}")]
    assert len(survivor) == 1 and load["workers"][survivor[0]]["n_ok"] == 8

