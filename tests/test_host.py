"""The engine host: llama.cpp in a process of its own, on the real demo model.

What it must hold: llama.cpp is the first native library of its process; its events reach the
parent complete, in order, stamped on the parent's session clock; a stop still lands between tokens;
and when the process dies (a real SIGSEGV inside native code, a SIGKILL from outside, an exit) the
session survives it: one line, exit code 17, the completed runs in the report and the recording,
and a dashboard that shows the crash, stays open and restores the terminal.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from ttftui.measure.engine.llama_facts import build_kind, has_amx, repack_choice
from ttftui.core.events import EngineCrashed, EngineReady, PhaseTimed, RunFailed, RunFinished, TokenEmitted
from ttftui.measure.engine_process.child import Fault

from .conftest import cli, make_config, pty_run, run_events, spawn

pytestmark = pytest.mark.model

SMALL = {"n_ctx": 512, "n_batch": 32, "n_threads": 2}
ONE = [{"name": "one", "prompt_tokens": 96, "max_tokens": 8}]  # 3 prefill chunks of 32
CRASH_ARGS = ("--headless", "--set", "model.n_ctx=512", "--set", "model.n_batch=32", "--set", "model.n_threads=2",
              "--scenario", "short", "--iterations", "3", "--warmup", "0")


def hosted(model_path: Path, **env: str):
    from ttftui.measure.engine_process.proxy import HostedEngine

    cfg = make_config(model=SMALL, scenarios=ONE)
    return cfg, HostedEngine(cfg, "llama", model_path=model_path, env=env or None)


def test_llama_cpp_is_the_first_native_library_of_the_host(model_path):
    _, eng = hosted(model_path)
    try:
        assert eng.loaded_before_llama == []  # numpy, pydantic-core, psutil, scipy: none before llama.cpp
        mods = eng.modules
        assert mods.index("llama_cpp.llama_cpp") < mods.index("numpy")
        assert eng.pid != os.getpid() and eng.host == "process"
    finally:
        eng.close()
    assert eng.proc.returncode == 0  # a clean close is a clean exit, not a crash at finalization


def test_events_cross_the_pipe_complete_in_order_on_the_parents_clock(model_path):
    cfg, eng = hosted(model_path)
    try:
        eng.load()
        prep = eng.prepare(cfg.scenario("one"), 7)
        assert prep.prompt_tokens == 96
        events: list[Any] = []
        before = eng.clock.now_ns()
        end = eng.run(prep, 1, False, events.append, threading.Event())
        after = eng.clock.now_ns()
    finally:
        eng.close()
    phases = [e for e in events if isinstance(e, PhaseTimed)]
    assert [p.phase for p in phases] == ["tokenize", "cache_prep", "prefill_chunk", "prefill_chunk", "prefill_chunk",
                                         "first_sample", "first_detok"]
    tokens = [e for e in events if isinstance(e, TokenEmitted)]
    assert [t.index for t in tokens] == list(range(8)) == list(range(end.n_output_tokens))
    # stamped by the child on the parent's session clock: inside the parent's own window
    assert before < phases[0].t_ns <= tokens[-1].t_ns == end.t_ns < after
    stamps = [e.t_ns for e in events]
    assert stamps == sorted(stamps)
    assert end.prefill_chunks_ns == tuple(p.duration_ns for p in phases if p.phase == "prefill_chunk")


def test_stop_reaches_the_hosted_engine_between_tokens(model_path):
    cfg, eng = hosted(model_path)
    cfg_long = make_config(model=SMALL, scenarios=[{"name": "one", "prompt_tokens": 96, "max_tokens": 400}])
    stop = threading.Event()
    events: list[Any] = []

    def publish(ev: Any) -> None:
        events.append(ev)
        if isinstance(ev, TokenEmitted) and ev.index == 5:
            stop.set()

    try:
        eng.load()
        prep = eng.prepare(cfg_long.scenario("one"), 7)
        end = eng.run(prep, 1, False, publish, stop)
    finally:
        eng.close()
    # The flag crosses the pipe while the host computes on: it stops between two tokens some tokens
    # later (how many depends on the machine's speed: benchmarks/bench_claims.py stop), and every token
    # it computed reaches this process, in order, before the run's end.
    assert end.stop_reason == "stopped"
    assert 6 <= end.n_output_tokens < 400
    tokens = [e for e in events if isinstance(e, TokenEmitted)]
    assert [t.index for t in tokens] == list(range(end.n_output_tokens))
    assert tokens[-1].t_ns == end.t_ns


def test_a_segfault_mid_prefill_keeps_the_completed_runs(tmp_path):
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    r = cli(*CRASH_ARGS, "-o", str(out), "--record", str(rec),
            env={"TTFTUI_ENGINE_FAULT": "SIGSEGV run=3 after=prefill_chunk:0"})
    assert r.returncode == 17, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ttftui: llama.cpp crashed (SIGSEGV) during prefill chunk 2 of 4 of run 3, scenario short")
    assert "Traceback" not in r.stderr and "Fatal Python error" not in r.stderr  # the child's dump is in the report
    report = json.loads(out.read_text())
    assert [run["run_id"] for run in report["runs"]] == [1, 2]
    assert all(run["n_output_tokens"] == 50 for run in report["runs"])
    assert report["failed_runs"][0]["run_id"] == 3
    crash = report["crash"]
    assert crash["signal"] == "SIGSEGV" and crash["phase"] == "prefill_chunk" and crash["chunk"] == 1
    assert crash["n_chunks"] == 4 and crash["run_id"] == 3 and crash["scenario"] == "short"
    assert any("Segmentation fault" in line for line in crash["log_tail"])  # faulthandler's words, kept
    assert report["session"]["status"] == "failed" and report["engine_host"] == "process"
    assert report["summary"]["short"]["n_runs"] == 2
    # the recording replays to the crash and rebuilds the same report
    replay = cli("replay", str(rec), "--headless")
    assert replay.returncode == 0, replay.stderr
    again = json.loads(replay.stdout)
    assert again["crash"] == report["crash"] and again["runs"] == report["runs"]


def test_a_sigkill_from_outside_is_reported_as_a_kill(tmp_path):
    import psutil

    out = tmp_path / "r.json"
    proc = spawn(*CRASH_ARGS[:-4], "--scenario", "short", "--iterations", "20", "--warmup", "0", "-o", str(out))
    try:
        lines: list[str] = []
        assert proc.stderr is not None
        for line in proc.stderr:  # progress: wait for two finished runs
            lines.append(line)
            if "short run 2:" in line:
                break
        host = [c for c in psutil.Process(proc.pid).children() if "ttftui.measure.engine_process" in " ".join(c.cmdline())]
        assert len(host) == 1
        host[0].send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=120)
        err = "".join(lines) + (proc.stderr.read() if not proc.stderr.closed else "")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 17
    report = json.loads(out.read_text())
    assert len(report["runs"]) >= 2
    assert report["crash"]["signal"] == "SIGKILL"
    assert "was killed (SIGKILL)" in report["crash"]["message"]
    assert "out-of-memory" in report["crash"]["message"]
    assert "short run 1:" in err


def test_a_crash_while_loading_leaves_no_report(tmp_path):
    out = tmp_path / "r.json"
    r = cli(*CRASH_ARGS, "-o", str(out), env={"TTFTUI_ENGINE_FAULT": "SIGABRT at=load"})
    assert r.returncode == 17
    assert r.stderr.strip().splitlines()[-1].startswith("ttftui: llama.cpp crashed (SIGABRT) during model load")
    assert not out.exists()


def test_repack_choice_avoids_amx_only_on_auto():
    amx = "CPU : AVX2 = 1 | AMX_INT8 = 1 | REPACK = 1 |"
    plain = "CPU : AVX2 = 1 | AVX512 = 1 | REPACK = 1 |"
    assert has_amx(amx) and not has_amx(plain) and not has_amx("CPU : AMX_INT8 = 0 |")
    assert repack_choice("auto", amx)[0] is False and "AMX" in repack_choice("auto", amx)[1]
    assert repack_choice("auto", plain)[0] is True
    assert repack_choice("on", amx)[0] is True and repack_choice("off", plain)[0] is False
    assert build_kind("CUDA : ARCHS = 900 | CPU : AVX2 = 1", True) == "CUDA"
    assert build_kind(plain, False) == "CPU"


def test_repack_setting_reaches_llama_cpp_and_the_report(model_path):
    cfg = make_config(model={**SMALL, "repack": "off"}, run={"iterations": 1, "warmup": 0},
                      scenarios=[{"name": "one", "prompt_tokens": 40, "max_tokens": 4}])
    ready = next(e for e in run_events(cfg) if isinstance(e, EngineReady))
    assert ready.device.repack is False and ready.device.repack_reason == "model.repack = off"
    assert ready.host == "process" and ready.host_pid not in (None, os.getpid())


def test_fault_spec_is_parsed_and_matched():
    f = Fault("SIGSEGV run=3 after=prefill_chunk:1")
    chunk = lambda run, k: PhaseTimed(t_ns=0, run_id=run, phase="prefill_chunk", duration_ns=1, chunk=k)  # noqa: E731
    assert f.matches(chunk(3, 1)) and not f.matches(chunk(3, 0)) and not f.matches(chunk(2, 1))
    tok = Fault("SIGKILL after=token:2")
    assert tok.matches(TokenEmitted(t_ns=0, run_id=9, index=2, token_id=1, text="a", dt_ns=1))
    assert not tok.matches(TokenEmitted(t_ns=0, run_id=9, index=1, token_id=1, text="a", dt_ns=1))
    with pytest.raises(ValueError):
        Fault("SIGFOO")


def test_doctor_smoke_run_passes_and_reports_a_crash():
    ok = cli("doctor")
    assert ok.returncode == 0, ok.stderr
    assert "smoke run" in ok.stdout and ": OK — load" in ok.stdout
    assert "weight repacking (model.repack = auto)" in ok.stdout
    bad = cli("doctor", env={"TTFTUI_ENGINE_FAULT": "SIGSEGV after=prefill_chunk"})
    assert bad.returncode == 17
    assert "FAILED" in bad.stdout and "crashed (SIGSEGV) during the first sample" in bad.stdout


def test_synthetic_engine_can_run_in_the_host_too():
    cfg = make_config(engine={"kind": "synthetic", "host": "process", "synthetic_pace": True},
                      run={"iterations": 2, "warmup": 0},
                      scenarios=[{"name": "s", "prompt_tokens": 64, "max_tokens": 5}])
    from ttftui.measure.select import select_engine
    from ttftui.run.session import SessionRunner

    events: list[Any] = []
    runner = SessionRunner(cfg, select_engine(cfg, pace=True), events.append)
    runner.run()
    assert runner.error is None
    ready = next(e for e in events if isinstance(e, EngineReady))
    assert ready.synthetic and ready.host == "process"
    assert len([e for e in events if isinstance(e, RunFinished)]) == 2
    assert len([e for e in events if isinstance(e, TokenEmitted)]) == 10
    assert not [e for e in events if isinstance(e, (RunFailed, EngineCrashed))]


def test_dashboard_shows_the_crash_stays_open_and_restores_the_terminal(tmp_path):
    rec = tmp_path / "d.ttftrec"
    code, before, out = pty_run(
        ["--set", "model.n_ctx=512", "--set", "model.n_batch=32", "--set", "model.n_threads=2",
         "--scenario", "short", "--iterations", "2", "--warmup", "0", "--record", str(rec)],
        {"TTFTUI_ENGINE_FAULT": "SIGSEGV run=2 after=token:3"}, until=b"ENGINE CRASHED", keys=b"q")
    assert b"ENGINE CRASHED" in before, out[-2000:]
    assert code == 17
    tail = out[out.rfind(b"\x1b[?1049l"):]  # after leaving the alternate screen: the terminal is ours again
    assert out.count(b"\x1b[?1049h") == 1 and b"\x1b[?1049l" in out
    assert b"ttftui: llama.cpp crashed (SIGSEGV) during decode (output token 4) of run 2, scenario short" in tail
    events = [json.loads(line) for line in rec.read_text().splitlines()[1:]]
    assert [e["run_id"] for e in events if e["type"] == "run_finished"] == [1]
    assert [e["phase"] for e in events if e["type"] == "engine_crashed"] == ["decode"]
