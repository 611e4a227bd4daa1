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

from ttftui.core.config import Config
from ttftui.core.events import EngineReady, RunFinished, RunStarted
from ttftui.analysis.reducer import fold
from ttftui.report.build import build_report

from .conftest import (ROOT, cli, engine_ready, phaseless_run_finished, run_started, session_started, spawn,
                       two_host_session)
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
    evs: list = [session_started(cfg, session_id="x"), engine_ready("remote")]
    rid = 0
    for w, values in ttft.items():
        for v in values:
            rid += 1
            t0 = rid * 1_000_000
            evs.append(run_started(rid, t0, worker=w))
            evs.append(phaseless_run_finished(rid, t0 + v * 1_000_000, ttft_ns=v * 1_000_000))
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
        proc = spawn("--headless", "--url", srv.url, "--scenario", "short", "--set", "run.warmup=0", "--concurrency",
                     "2", "--requests", "16", "--ray", cluster, "--workers", "2", "-o", str(out), stdout=None)
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



# ---------------------------------------------------------------------- engine hosts (--per-node, matrix)


def _host_pids(lines: list[str]) -> list[int]:
    for line in lines:
        if "engine host(s), one per node" in line:
            return [int(x) for x in re.findall(r":(\d+)\b", line.split("):")[-1])]
    return []


@pytest.mark.model
def test_one_engine_host_per_node_runs_the_real_model(cluster, tmp_path):
    """--per-node: each node's host loads the demo model itself and runs every scenario; the summary
    pools both hosts' raw samples, each host keeps its own figures and its node's telemetry, and the
    recording replays to the same report."""
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    r = cli("--headless", "--ray", cluster, "--per-node", "--set", "run.warmup=1", "--set", "run.iterations=2",
            "--set", "model.n_threads=1", "--set", "scenarios=[{name='s', prompt_tokens=48, max_tokens=6}]",
            "-o", str(out), "--record", str(rec), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "2 engine host(s), one per node" in r.stderr
    report = json.loads(out.read_text())
    hosts = report["hosts"]
    assert len(hosts) == 2 and len({w.split(":")[0] for w in hosts}) == 2  # one on each node
    for w, h in hosts.items():
        (eng,) = h["engines"]
        assert eng["engine"] == "llama.cpp" and not eng["synthetic"] and eng["load_ms"] > 0
        assert h["summary"]["s"]["n_runs"] == 2 and h["summary"]["s"]["n_warmup"] == 1
        assert h["telemetry"]["n_samples"] > 0 and h["telemetry"]["session"]["rss_peak_bytes"] > 0
    runs = report["runs"]
    assert sorted(x["run_id"] for x in runs) == list(range(1, 7))  # one id space for the session
    assert {x["worker"] for x in runs} == set(hosts)
    counted = [x for x in runs if not x["warmup"]]
    for x in counted:  # durations from the host's own engine, telemetry from its own node
        assert x["n_prompt_tokens"] == 48 and 0 < x["ttft_ms"] < x["e2e_ms"]
        assert x["telemetry"]["rss_peak_bytes"] > 0
    pooled = report["summary"]["s"]["metrics"]["ttft_ms"]
    assert pooled["n"] == 4 and pooled["p50"] == pytest.approx(np.percentile([x["ttft_ms"] for x in counted], 50))
    for w, h in hosts.items():
        own = [x["ttft_ms"] for x in counted if x["worker"] == w]
        assert h["summary"]["s"]["metrics"]["ttft_ms"]["p50"] == pytest.approx(np.percentile(own, 50))
    again = json.loads(cli("replay", str(rec), "--headless").stdout)
    assert again["hosts"] == hosts and again["runs"] == runs and again["summary"] == report["summary"]


@pytest.mark.model
def test_a_matrix_spreads_its_cells_over_the_nodes_with_their_settings(cluster, tmp_path):
    """Two cells (n_batch 16 and 64) on two nodes: each cell's runs carry its settings (a 64-token
    prompt is 4 prefill chunks at n_batch 16, one at 64), named NAME@CELL."""
    out = tmp_path / "r.json"
    r = cli("--headless", "--ray", cluster, "--matrix", "model.n_batch=16,64", "--set", "run.warmup=0",
            "--set", "run.iterations=2", "--set", "model.n_threads=1",
            "--set", "scenarios=[{name='s', prompt_tokens=64, max_tokens=4}]", "-o", str(out), timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert set(report["summary"]) == {"s@n_batch_16", "s@n_batch_64"}
    chunks = {"s@n_batch_16": 4, "s@n_batch_64": 1}
    for x in report["runs"]:
        assert len(x["prefill_chunks_ms"]) == chunks[x["scenario"]], x
    by_host = {w: set(h["summary"]) for w, h in report["hosts"].items()}
    assert len(by_host) == 2 and sorted(map(len, by_host.values())) == [1, 1]  # a cell each, side by side


def test_an_engine_host_killed_mid_session_is_an_event_and_the_other_goes_on(cluster, tmp_path):
    out = tmp_path / "r.json"
    proc = spawn("--headless", "--ray", cluster, "--per-node", "--set", "engine.kind=synthetic", "--set",
                 "run.warmup=0", "--set", "run.iterations=12", "--set",
                 "scenarios=[{name='s', prompt_tokens=256, max_tokens=40}]", "-o", str(out), stdout=None)
    lines: list[str] = []
    killed: list[int] = []

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if not killed and sum(" run " in x and "TTFT" in x for x in lines) >= 3:
                pid = _host_pids(lines)[0]
                os.kill(pid, signal.SIGKILL)  # the host dies, most likely with a run in flight
                killed.append(pid)

    t = threading.Thread(target=read, daemon=True)
    t.start()
    rc = proc.wait(300)
    t.join(10)
    assert killed, "".join(lines)
    assert rc == 0, "".join(lines)
    assert any("lost" in x and "the others go on" in x for x in lines)
    report = json.loads(out.read_text())
    assert report["synthetic"] is True  # labelled, hosts included
    (lost,) = report["workers_lost"]
    assert lost["worker"].endswith(f":{killed[0]}") and lost["reason"]
    survivor = [w for w in report["hosts"] if not w.endswith(f":{killed[0]}")]
    assert len(survivor) == 1 and report["hosts"][survivor[0]]["summary"]["s"]["n_runs"] == 12
    dead = report["hosts"].get(lost["worker"], {"summary": {"s": {"n_runs": 0}}})["summary"]["s"]["n_runs"]
    failed = {f["run_id"] for f in report["failed_runs"]}
    assert set(lost["lost_runs"]) <= failed
    assert dead + len(lost["lost_runs"]) + lost["unsent"] == 12  # every run of the dead host accounted for


def test_a_matrix_expands_every_scenario_per_cell_and_checks_each_cell():
    from ttftui.core.config import cell_config, matrix_cells

    data = {"cluster": {"ray": "local", "matrix": {"model.path": ["m/a.gguf", "m/b.gguf"], "model.n_gpu_layers": [0, -1]}},
            "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 2}]}
    cfg = Config.model_validate(data)
    labels = [label for label, _ in matrix_cells(cfg.cluster.matrix)]
    assert labels == ["a@n_gpu_layers_0", "a@n_gpu_layers_-1", "b@n_gpu_layers_0", "b@n_gpu_layers_-1"]
    assert [s.name for s in cfg.scenarios] == [f"s@{x}" for x in labels]
    again = Config.model_validate(cfg.model_dump(mode="json"))  # a recorded config is not expanded twice
    assert [s.name for s in again.scenarios] == [s.name for s in cfg.scenarios]
    cell = cell_config(cfg, "b@n_gpu_layers_-1")
    assert (cell.model.path, cell.model.n_gpu_layers, [s.name for s in cell.scenarios]) == (
        "m/b.gguf", -1, ["s@b@n_gpu_layers_-1"])
    assert not cell.cluster.ray and not cell.cluster.matrix and not cell.alerts
    from ttftui.run.session import select_scenarios

    assert select_scenarios(cfg, ["s"]) == [s.name for s in cfg.scenarios]  # the base name picks every cell

    def err(**cluster) -> str:
        with pytest.raises(ValueError) as e:
            Config.model_validate({**data, "cluster": cluster})
        return str(e.value)

    assert "only model.* / engine.* settings can vary" in err(ray="local", matrix={"run.iterations": [1, 2]})
    assert "needs distinct values" in err(ray="local", matrix={"model.n_batch": [8, 8]})
    assert "cell n_batch_0: model.n_batch: input should be greater than or equal to 1" in err(
        ray="local", matrix={"model.n_batch": [0, 8]})
    assert "give cluster.ray" in err(per_node=True)
    assert "choose one" in err(ray="local", per_node=True, matrix={"model.n_batch": [8, 16]})


def test_matrix_and_per_node_options_on_the_command_line(tmp_path):
    r = cli("--headless", "--ray", "local", "--matrix", "n_batch=8,16", "-q")
    assert r.returncode == 2 and r.stderr.strip().endswith("only model.* / engine.* settings can vary")
    r = cli("--headless", "--ray", "local", "--matrix", "model.path=[\"/nope/a.gguf\"]", "-q")
    assert r.returncode == 3 and r.stderr.strip() == "ttftui: model file not found: /nope/a.gguf"
    r = cli("--headless", "--per-node", "-q")
    assert r.returncode == 2 and "give cluster.ray" in r.stderr and "Traceback" not in r.stderr
    r = cli("--headless", "--matrix", "model.n_batch", "-q")
    assert r.returncode == 2 and "expected KEY=V1,V2" in r.stderr



def _one_unit(host, unit) -> tuple[list, dict]:
    """One unit on an engine host's body, as the driver takes it in: (events, the closing dict)."""
    from ttftui.core.events import event_from_json

    evs, last = [], None
    for item in host.run(unit, ["s"], 20):
        if isinstance(item, dict):
            last = item
        else:
            evs.extend(event_from_json(x) for x in item)
    return evs, last

def test_an_engine_host_body_sends_its_units_events_tagged_and_keeps_its_engine():
    """The actor's body without Ray: a unit's events come back as JSON lines on the host's clock,
    tagged with the host; a second unit with the same settings reuses the loaded engine."""
    from ttftui.core.config import cell_config
    from ttftui.cluster.engine_hosts import EngineHost

    cfg = Config.model_validate({"cluster": {"ray": "local", "per_node": True}, "engine": {"kind": "synthetic"},
                                 "run": {"warmup": 0, "iterations": 2},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 3}]})
    host = EngineHost(0)
    hello = host.hello()
    unit = cell_config(cfg, None).model_dump(mode="json")

    evs, last = _one_unit(host, unit)
    assert last["failed"] is None
    types = [type(e).__name__ for e in evs]
    assert types.count("EngineReady") == 1 and types.count("RunFinished") == 2 and "SessionStarted" not in types
    assert all(e.worker == hello["worker"] for e in evs if isinstance(e, (EngineReady, RunStarted)))
    assert all(0 <= e.t_ns <= host.clock.now_ns() for e in evs)  # one clock, the host's
    evs2, last2 = _one_unit(host, unit)
    assert last2["failed"] is None and not any(isinstance(e, EngineReady) for e in evs2)  # kept loaded
    assert [e.run_id for e in evs2 if isinstance(e, RunStarted)] == [1, 2]  # the driver renumbers them
    host.shutdown()


def test_runs_of_two_engine_hosts_overlap_and_take_their_own_nodes_telemetry():
    from ttftui.core.events import TelemetrySample

    cfg = Config.model_validate({"cluster": {"ray": "local", "per_node": True}, "run": {"warmup": 0},
                                 "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 1}]})
    evs = [session_started(cfg, session_id="x"), engine_ready("llama.cpp", load_ms=5.0, worker="a:1"),
           engine_ready("llama.cpp", load_ms=5.0, worker="b:2"),
           run_started(1, 10, iteration=0, max_tokens=1, worker="a:1"), run_started(2, 10, iteration=0, max_tokens=1, worker="b:2"),
           TelemetrySample(t_ns=50, rss_bytes=100, worker="a:1"), TelemetrySample(t_ns=40, rss_bytes=900, worker="b:2"),
           TelemetrySample(t_ns=60, rss_bytes=5000), phaseless_run_finished(1, 100, ttft_ns=90),
           phaseless_run_finished(2, 100, ttft_ns=90)]
    state = fold(evs)
    assert len(state.runs) == 2 and len(state.engines) == 2  # both ran at once, neither dropped
    rss = {r.started.worker: r.metrics.extra["rss_peak_bytes"] for r in state.runs}
    assert rss == {"a:1": 100, "b:2": 900}  # each from its own node, never this machine's or the other's


def test_the_html_report_has_each_engine_hosts_figures():
    from ttftui.report.html import report_html

    report = build_report(fold(two_host_session())).model_dump(mode="json")
    assert set(report["hosts"]) == {"aaaa:1", "bbbb:2"} and report["synthetic"] is True
    page = report_html(report)
    section = page.split('<h2 id="hosts">', 1)[1].split("<h2", 1)[0]
    rows = re.findall(r"<tr><td>([^<]+)</td><td>(SYNTHETIC[^<]*)</td><td>short</td><td>3</td>", section)
    assert [r[0] for r in rows] == ["aaaa:1", "bbbb:2"]
    assert section.count("<svg") == 1 and "aaaa:1 · short" in section and "bbbb:2 · short" in section


def test_a_worker_started_niced_by_ray_goes_back_to_nice_0_or_says_why_not():
    """Ray starts its workers at nice 15: an engine host there ran the demo model 4-7 % slower than
    this machine's own next to anything else busy. Workers lower it where allowed (root here)."""
    from ttftui.cluster.common import nice_warning

    r = subprocess.run(["nice", "-n", "15", sys.executable, "-c",
                        "import os; from ttftui.cluster.common import unnice; print(os.nice(0), unnice())"],
                       cwd=ROOT, capture_output=True, text=True)
    before, after = map(int, r.stdout.split())
    assert before == 15 and after == (0 if os.geteuid() == 0 else 15)
    assert nice_warning(["a:1", "b:2"], [0, 0], "Ray engine hosts") is None
    why = nice_warning(["a:1", "b:2"], [0, 15], "Ray engine hosts")
    assert why.startswith("Ray engine hosts b:2 (nice 15)") and "RAY_worker_niceness=0" in why


@pytest.mark.model
def test_an_engine_crash_on_a_host_fails_that_unit_only_and_the_host_takes_the_next(monkeypatch):
    """The actor's body without Ray, the real model: llama.cpp dies with SIGSEGV in run 2's prefill.
    The crash comes back as an event tagged with the host, run 2 as failed, the unit as failed; the
    host then loads a fresh engine for the next unit, which completes."""
    from ttftui.core.config import cell_config
    from ttftui.cluster.engine_hosts import EngineHost
    from ttftui.core.events import EngineCrashed, RunFailed

    cfg = Config.model_validate({"cluster": {"ray": "local", "per_node": True}, "model": {"n_threads": 1},
                                 "run": {"warmup": 0, "iterations": 3},
                                 "scenarios": [{"name": "s", "prompt_tokens": 24, "max_tokens": 3}]})
    host = EngineHost(0)
    name = host.hello()["worker"]
    unit = cell_config(cfg, None).model_dump(mode="json")

    monkeypatch.setenv("TTFTUI_ENGINE_FAULT", "SIGSEGV run=2 after=prefill_chunk:0")
    evs, last = _one_unit(host, unit)
    (crash,) = [e for e in evs if isinstance(e, EngineCrashed)]
    assert crash.worker == name and crash.signal == "SIGSEGV" and crash.run_id == 2
    assert [e.run_id for e in evs if isinstance(e, RunFinished)] == [1]
    assert [e.run_id for e in evs if isinstance(e, RunFailed)] == [2]
    assert last["failed"] and "SIGSEGV" in last["failed"]
    monkeypatch.delenv("TTFTUI_ENGINE_FAULT")
    evs, last = _one_unit(host, unit)
    assert last["failed"] is None and sum(isinstance(e, EngineReady) for e in evs) == 1  # loaded afresh
    assert len([e for e in evs if isinstance(e, RunFinished)]) == 3
    host.shutdown()


def _nices(pid: int) -> dict[int, int]:
    """Every thread of process ``pid``: its niceness (field 19 of /proc/PID/task/TID/stat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[16])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return out


@pytest.mark.model
def test_an_engine_hosts_engine_runs_every_thread_at_nice_0_on_a_ray_worker(cluster):
    """Ray starts its workers at nice 15, and on Linux niceness is per thread: the engine's own
    process (every llama.cpp thread) used to inherit 15 from the thread that started it. Now each
    engine process runs at 0 with every thread, beside a Ray worker whose main thread is still at 15."""
    import psutil

    proc = spawn("--headless", "--ray", cluster, "--per-node", "--set", "run.warmup=0", "--set",
                 "run.iterations=40", "--set", "model.n_threads=2", "--set",
                 "scenarios=[{name='s', prompt_tokens=48, max_tokens=30}]", "-o", os.devnull, stdout=None)
    lines: list[str] = []
    pids: list[int] = []

    def read() -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            lines.append(line)
            if not pids and (found := _host_pids(lines)):
                pids.extend(found)

    t = threading.Thread(target=read, daemon=True)
    t.start()

    def engines() -> list[int] | None:  # each host's engine process, once it has loaded and computes
        found = []
        for pid in pids:
            kids = [c for c in psutil.Process(pid).children()
                    if "ttftui.measure.engine_process" in " ".join(c.cmdline())]
            if len(kids) != 1 or kids[0].num_threads() <= 3:
                return None  # not yet started, or no llama.cpp thread yet (Python's own are 3)
            found.append(kids[0].pid)
        return found if len(found) == 2 else None

    try:
        from .conftest import wait_until

        found = wait_until(engines, timeout=300, interval=0.2, what="both engine hosts' engines to run")
        workers = {pid: _nices(pid)[pid] for pid in pids}  # each Ray worker's main thread
        nices = {pid: _nices(pid) for pid in found}
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(300)
    finally:
        if proc.poll() is None:
            proc.kill()
    t.join(10)
    assert set(workers.values()) == {15}, workers  # Ray's worker_niceness: what the engine used to inherit
    for pid, threads in nices.items():
        assert len(threads) > 3 and set(threads.values()) == {0}, (pid, threads)
    assert rc == 130, "".join(lines)
    assert not any("nice" in x and "warning" in x for x in lines), "".join(lines)  # none to give (root lowers it)
