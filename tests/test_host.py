"""The engine host: llama.cpp in a process of its own, on the real demo model.

What it must hold: llama.cpp is the first native library of its process; its events reach the
parent complete, in order, stamped on the parent's session clock; a stop still lands between tokens;
and when the process dies (a real SIGSEGV inside native code, a SIGKILL from outside, an exit) the
session survives it: one line, exit code 17, the completed runs in the report and the recording,
and a dashboard that shows the crash, stays open and restores the terminal. And when it lives but
does nothing (stopped with SIGSTOP, or hung): reported stalled, then killed as a crash of its own
words; a Ctrl-C or SIGTERM still ends the session within seconds; it dies with its parent, stopped
or not; and it runs at the niceness asked for, every thread of it, or says why not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from ttftui.measure.engine.llama_facts import build_kind, has_amx, repack_choice
from ttftui.core.events import EngineCrashed, EngineReady, PhaseTimed, RunFailed, RunFinished, TokenEmitted
from ttftui.measure.engine_process.child import Fault

from .conftest import cli, make_config, pty_run, run_events, spawn, wait_until

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


# ---------------------------------------------------------------------- a stalled engine host, and its end
STALL_ARGS = ("--headless", "--set", "model.n_ctx=512", "--set", "model.n_threads=2", "--scenario", "short",
              "--iterations", "30", "--warmup", "0")


def _host_of(pid: int) -> Any:
    """The engine host child of ttftui's process ``pid``."""
    import psutil

    (host,) = [c for c in psutil.Process(pid).children() if "ttftui.measure.engine_process" in " ".join(c.cmdline())]
    return host


def _state(pid: int) -> str:
    """A process's state letter from /proc (T: stopped, Z: a zombie), or "gone"."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "gone"


def _dead(pid: int) -> bool:
    return _state(pid) in ("gone", "Z", "X")  # a zombie holds nothing: it waits for its new parent to reap it


def _until_run(proc: Any, n: int) -> list[str]:
    """Read ttftui's progress lines until run ``n`` of scenario short has finished."""
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line)
        if f"short run {n}:" in line:
            return lines
    raise AssertionError("".join(lines))


def test_a_stopped_engine_host_is_reported_stalled_then_killed_and_the_run_fails_as_a_crash(tmp_path):
    """SIGSTOP the real engine host mid-session: after stall_warn_s a warning and an engine_stalled
    event, after stall_kill_s the watchdog kills it; exit 17 with its own reason, the completed runs
    and the stall in the report and the recording, and no engine host left."""
    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    proc = spawn(*STALL_ARGS, "--set", "engine.stall_warn_s=2", "--set", "engine.stall_kill_s=6", "-o", str(out),
                 "--record", str(rec))
    try:
        lines = _until_run(proc, 2)
        host = _host_of(proc.pid)
        host.send_signal(signal.SIGSTOP)
        _, rest = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert proc.returncode == 17, err
    warned = [x for x in err.splitlines() if "has made no progress for" in x]
    assert len(warned) == 1 and warned[0].startswith(f"ttftui: warning: the engine host (llama.cpp, pid {host.pid}) ")
    assert "it sends nothing, not even its heartbeat" in warned[0] and "killed after 6 s" in warned[0]
    last = err.strip().splitlines()[-1]
    assert re.match(r"ttftui: llama\.cpp stalled, no progress for \d+ s, and was killed by ttftui's watchdog "
                    r"\(SIGKILL\) during .* of run \d+, scenario short — it sent nothing, not even its heartbeat",
                    last), last
    assert "out-of-memory" not in last  # not the words for a kill from outside
    report = json.loads(out.read_text())
    assert len(report["runs"]) >= 2 and report["crash"]["signal"] == "SIGKILL"
    assert "watchdog" in report["crash"]["message"] and report["session"]["status"] == "failed"
    events = [json.loads(x) for x in rec.read_text().splitlines()[1:]]
    (stalled,) = [e for e in events if e["type"] == "engine_stalled"]
    assert stalled["state"] == "stalled" and stalled["silent"] and stalled["pid"] == host.pid
    assert stalled["run_id"] == report["crash"]["run_id"] and stalled["kill_after_s"] == 6
    replay = cli("replay", str(rec), "--headless")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["crash"] == report["crash"]
    assert _dead(host.pid)


@pytest.mark.parametrize("sig, code, status",
                         [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_ends_a_session_whose_engine_host_is_stopped(tmp_path, sig, code, status):
    """The engine host is stopped (SIGSTOP) and never answers the stop request: after
    engine.stop_grace_s it is killed, and the session ends as any stopped one does, its recording
    complete (it replays, and ends with session_finished)."""
    import time

    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    proc = spawn(*STALL_ARGS, "--set", "engine.stop_grace_s=2", "-o", str(out), "--record", str(rec))
    try:
        lines = _until_run(proc, 1)
        host = _host_of(proc.pid)
        host.send_signal(signal.SIGSTOP)
        wait_until(lambda: _state(host.pid) == "T", what="the engine host to stop")
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, rest = proc.communicate(timeout=120)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(lines) + rest
    assert proc.returncode == code, err
    print(f"{sig.name}: exit {code} {took:.1f} s after the signal (engine.stop_grace_s = 2)")
    assert took < 60  # bounded by the grace under test (2 s), not by the stopped engine (forever)
    assert "did not answer within 2 s (engine.stop_grace_s) and was killed" in err
    assert _dead(host.pid)
    report = json.loads(out.read_text())
    assert report["session"]["status"] == status and len(report["runs"]) >= 1
    events = [json.loads(x) for x in rec.read_text().splitlines()[1:]]
    assert events[-1]["type"] == "session_finished" and events[-1]["status"] == status
    replay = cli("replay", str(rec), "--headless")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["runs"] == report["runs"]


@pytest.mark.parametrize("stopped", [False, True], ids=["running", "stopped"])
def test_killing_ttftui_leaves_no_engine_host_behind(stopped):
    """SIGKILL to ttftui: its engine host dies with it (the parent-death signal, SIGKILL, which a
    stopped process acts on too), instead of living on as an orphan that holds the model."""
    proc = spawn(*STALL_ARGS, "-q", "-o", os.devnull, stderr=None)
    try:
        host = wait_until(lambda: _ready_host(proc.pid), what="the engine host to run")
        assert host.memory_info().rss > 50 * 2**20  # it holds the model
        if stopped:
            host.send_signal(signal.SIGSTOP)
            wait_until(lambda: _state(host.pid) == "T", what="the engine host to stop")
        proc.kill()
        proc.wait(60)
        wait_until(lambda: _dead(host.pid), timeout=30, what=f"engine host {host.pid} to die with its parent")
    finally:
        if proc.poll() is None:
            proc.kill()


def _ready_host(pid: int) -> Any:
    """The engine host once it has loaded the model and runs (more threads than Python's own), or None."""
    import psutil

    try:
        host = _host_of(pid)
        return host if host.num_threads() > 3 and host.memory_info().rss > 50 * 2**20 else None
    except (ValueError, psutil.Error):
        return None


def test_an_engine_host_whose_parent_died_before_it_began_exits_at_once():
    """The race the parent-death signal leaves open: a parent that died before the child asked for
    it. The child compares its parent with the one it was started by, and exits."""
    import subprocess
    import sys

    env = {**os.environ, "TTFTUI_HOST_PARENT": "1" if os.getpid() != 1 else "2"}
    child = subprocess.Popen([sys.executable, "-m", "ttftui.measure.engine_process", "synthetic"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        assert child.wait(60) == 0  # without the check it would wait on its stdin (held open here) for good
    finally:
        if child.poll() is None:
            child.kill()
        child.stdin.close()


def test_an_engine_host_started_from_a_thread_that_ended_lives_on():
    """On Linux the parent-death signal comes when the *thread* that started the child ends: a Ray
    engine host starts its engine in one unit's thread and runs the next unit in another's."""
    from ttftui.measure.engine_process.proxy import HostedEngine

    cfg = make_config(engine={"kind": "synthetic", "host": "process"}, scenarios=[{"name": "s", "prompt_tokens": 16,
                                                                                   "max_tokens": 3}])
    built: list[Any] = []
    t = threading.Thread(target=lambda: built.append(HostedEngine(cfg, "synthetic", synthetic_reason="test")))
    t.start()
    t.join()
    (eng,) = built
    try:
        eng.load()
        end = eng.run(eng.prepare(cfg.scenario("s"), 1), 1, False, lambda ev: None, threading.Event())
        assert end.n_output_tokens == 3
    finally:
        eng.close()
    assert eng.proc.returncode == 0


def _hosted_events(cfg: Any, kind: str, fault: str, model_path: Path | None = None, *, on_event: Any = None):
    """One run on a hosted engine with ``fault``; returns (events, the run's end or the exception)."""
    from ttftui.measure.engine_process.proxy import HostedEngine

    eng = HostedEngine(cfg, kind, model_path=model_path, synthetic_reason="test", env={"TTFTUI_ENGINE_FAULT": fault})
    events: list[Any] = []

    def publish(ev: Any) -> None:
        events.append(ev)
        if on_event is not None:
            on_event(eng, ev)

    eng.attach(publish, threading.Event())
    try:
        eng.load()
        prep = eng.prepare(cfg.scenarios[0], 7)
        try:
            end: Any = eng.run(prep, 1, False, publish, threading.Event())
        except Exception as e:  # noqa: BLE001 - what the test looks at
            end = e
    finally:
        eng.close()
    return events, end


def test_a_hung_engine_thread_is_told_from_a_stopped_process_and_killed(model_path):
    """llama.cpp's thread blocks for good mid-prefill while the process lives: its heartbeats go on,
    but without CPU time, so it is stalled (not silent: hung) and then killed."""
    from ttftui.core.errors import EngineCrash
    from ttftui.core.events import EngineStalled

    cfg = make_config(model=SMALL, scenarios=ONE, engine={"stall_warn_s": 2, "stall_kill_s": 5})
    events, end = _hosted_events(cfg, "llama", "HANG after=prefill_chunk:0", model_path)
    (stalled,) = [e for e in events if isinstance(e, EngineStalled)]
    assert stalled.state == "stalled" and not stalled.silent and stalled.phase == "prefill_chunk"
    assert "alive but neither computes nor sends events: hung" in stalled.message
    assert isinstance(end, EngineCrash) and end.event.signal == "SIGKILL" and end.event.chunk == 1
    assert "killed by ttftui's watchdog" in str(end) and "hung" in str(end)


def test_a_stall_that_ends_is_reported_resumed_and_the_run_completes():
    from ttftui.core.events import EngineStalled

    cfg = make_config(engine={"kind": "synthetic", "host": "process", "stall_warn_s": 1, "stall_kill_s": 0},
                      scenarios=[{"name": "s", "prompt_tokens": 16, "max_tokens": 6}])

    def cont(eng: Any, ev: Any) -> None:
        if isinstance(ev, EngineStalled) and ev.state == "stalled":
            os.kill(eng.pid, signal.SIGCONT)

    events, end = _hosted_events(cfg, "synthetic", "SIGSTOP after=token:2", on_event=cont)
    stalls = [e for e in events if isinstance(e, EngineStalled)]
    assert [e.state for e in stalls] == ["stalled", "resumed"]
    assert stalls[0].silent and stalls[0].kill_after_s is None and "never killed" in stalls[0].message
    assert stalls[1].stalled_s >= stalls[0].stalled_s >= 1
    assert isinstance(end, RunFinished) and end.n_output_tokens == 6


def test_a_stall_is_folded_recorded_and_printed():
    """engine_stalled: through the recording format and back, into the state (set, then cleared by
    resumed or by the crash), one line on stderr each way, and the dashboard's status line."""
    import io

    from ttftui.analysis.reducer import fold
    from ttftui.core.events import EngineStalled, event_from_json, event_to_json
    from ttftui.run.progress import Progress
    from ttftui.tui.app import stall_line

    st = EngineStalled(t_ns=5_000_000_000, state="stalled", stalled_s=30.0, silent=True, phase="decode", run_id=3,
                       scenario="short", kill_after_s=120.0, pid=42, message="the engine host has made no progress")
    back = EngineStalled(t_ns=9_000_000_000, state="resumed", stalled_s=34.0, phase="decode", message="going on")
    assert event_from_json(event_to_json(st)) == st
    assert fold([st]).stalled == st and fold([st, back]).stalled is None
    crash = EngineCrashed(t_ns=1, signal="SIGKILL", exit_code=None, phase="decode")
    assert fold([st, crash]).stalled is None
    err = io.StringIO()
    p = Progress(1, stream=err)
    p(st)
    p(back)
    assert err.getvalue().splitlines() == ["ttftui: warning: the engine host has made no progress",
                                           "ttftui: note: going on"]
    assert stall_line(st, 15_000_000_000) == ("⚠ ENGINE STALLED: no progress for 40 s (sends nothing: stopped?); "
                                              "killed at 120 s")
    assert stall_line(None, 0) is None


def test_the_dashboard_says_the_engine_host_is_stalled_and_quits(tmp_path):
    rec = tmp_path / "d.ttftrec"
    code, before, out = pty_run(
        ["--set", "model.n_ctx=512", "--set", "model.n_threads=2", "--set", "engine.stall_warn_s=1",
         "--set", "engine.stall_kill_s=0", "--set", "engine.stop_grace_s=4", "--scenario", "short", "--iterations", "2",
         "--warmup", "0", "--record", str(rec)],
        {"TTFTUI_ENGINE_FAULT": "SIGSTOP run=1 after=token:3"}, until=b"ENGINE STALLED", keys=b"q")
    assert b"ENGINE STALLED: no progress for" in before, out[-2000:]
    assert code in (0, 130)  # quit with q (the stopped engine host killed after engine.stop_grace_s)
    assert out.count(b"\x1b[?1049h") == 1 and b"\x1b[?1049l" in out  # the terminal is restored
    events = [json.loads(line) for line in rec.read_text().splitlines()[1:]]
    assert [e["state"] for e in events if e["type"] == "engine_stalled"] == ["stalled"]
    # the engine host was killed after the dashboard had closed: the session's end is recorded all the same
    assert events[-1]["type"] == "session_finished" and events[-1]["status"] == "interrupted", events[-3:]


# ---------------------------------------------------------------------- niceness
NICE_SCRIPT = """
import json, os, threading
from ttftui.core.config import Config
from ttftui.measure.engine_process.proxy import HostedEngine, hosted_in
cfg = Config.model_validate({"model": {"n_ctx": 512, "n_threads": 2},
                             "scenarios": [{"name": "s", "prompt_tokens": 40, "max_tokens": 4}]})
with hosted_in(nice=0):
    eng = HostedEngine(cfg, "llama", model_path=%r)
notes = []
eng.attach(notes.append, threading.Event())
eng.load()
eng.run(eng.prepare(cfg.scenario("s"), 1), 1, False, lambda ev: None, threading.Event())
nices = []
for tid in os.listdir(f"/proc/{eng.pid}/task"):
    with open(f"/proc/{eng.pid}/task/{tid}/stat") as f:
        nices.append(int(f.read().rsplit(")", 1)[1].split()[16]))  # field 19: nice
eng.close()
print(json.dumps({"own": os.getpriority(os.PRIO_PROCESS, 0), "nices": nices, "nice": eng.nice,
                  "notes": [n.message for n in notes if n.type == "notice"]}))
"""


@pytest.mark.parametrize("allowed", [True, False], ids=["allowed", "refused"])
def test_the_engine_host_takes_the_niceness_asked_for_with_every_thread_or_says_why_not(model_path, allowed):
    """Started at nice 15 and asked for 0 (what a Ray engine host asks for): every thread of the
    engine's process, llama.cpp's included, runs at 0, or (without CAP_SYS_NICE) a warning says it
    runs at 15 and why."""
    import shutil
    import subprocess
    import sys

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root (to lower a niceness) and setpriv (to be refused it)")
    drop = [] if allowed else ["setpriv", "--bounding-set=-sys_nice", "--inh-caps=-sys_nice"]
    r = subprocess.run(["nice", "-n", "15", *drop, sys.executable, "-c", NICE_SCRIPT % str(model_path)],
                       capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["own"] == 15 and len(got["nices"]) > 3  # llama.cpp's threads, beside Python's own
    if allowed:
        assert set(got["nices"]) == {0} and got["nice"] == {"before": 15, "wanted": 0, "now": 0, "error": None}
        assert got["notes"] == []
    else:
        assert set(got["nices"]) == {15} and got["nice"]["now"] == 15
        (note,) = got["notes"]
        assert note.startswith("the engine host (pid ") and "runs at nice 15, not 0" in note and "CAP_SYS_NICE" in note
