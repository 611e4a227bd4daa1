"""The parent's side of the engine host: an :class:`~ttftui.measure.engine.base.Engine` whose work is done
by a child process (``python -m ttftui.measure.engine_process``).

To the session runner a :class:`HostedEngine` is an engine like any other: ``load``, ``prepare``,
``run`` (publishing the run's events as they arrive, returning its ``RunFinished``) and ``close``.
The child stamps every time itself on the parent's session clock, so no pipe sits between two
timing points. Two threads read the child: one the wire (events are published from there, in
order; replies go to the waiting call), one its stderr (the last lines are kept for a crash
report). When the child dies, the call that was waiting raises :class:`~ttftui.core.errors.EngineCrash`
with an ``EngineCrashed`` event that says what killed it and where it was (inferred from the last
event it had sent); the session keeps everything that was complete.
"""

from __future__ import annotations

import collections
import json
import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ttftui.analysis.phases import Where, where_next
from ttftui.core.config import Config
from ttftui.core.errors import EngineCrash, TtftuiError, all_error_classes
from ttftui.core.events import EngineCrashed, ModelFacts, RunFinished, event_from_json
from ttftui.core.textsafe import visible
from ttftui.measure.engine.base import Engine, LoadResult, PreparedScenario, Publish, RunStopped
from ttftui.measure.engine.llama_facts import has_amx

PIPE_BYTES = 1 << 20  # the wire's capacity: seconds of tokens, so the child never waits on a busy parent
LOG_TAIL_LINES = 40
CLOSE_TIMEOUT_S = 10.0
STOP_RECHECK_S = 0.5  # how often the stop forwarder looks whether the engine is still there
WIRE_POLL_S = 0.02


class EngineUnavailable(Exception):
    """The child could not build the engine (llama-cpp-python does not import there)."""


@dataclass(frozen=True)
class _Died:
    returncode: int


def _widen_pipe(fd: int) -> None:
    try:
        import fcntl  # POSIX only: elsewhere the pipe keeps its default size

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_BYTES)
    except (ImportError, OSError):  # not Linux, or above /proc/sys/fs/pipe-max-size: the default stays
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The child imports this very ttftui, wherever it was imported from (a checkout on PYTHONPATH too).
    root = str(Path(__file__).resolve().parents[3])  # the folder that holds ttftui/
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    return env


def describe_exit(returncode: int) -> tuple[str | None, int | None, str]:
    """(signal name, exit code, words) for a child's return code (negative: killed by a signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return name, None, name
    return None, returncode, f"exit code {returncode}"


class HostedEngine(Engine):
    host = "process"

    def __init__(self, config: Config, kind: str, *, model_path: str | os.PathLike[str] | None = None,
                 synthetic_reason: str | None = None, model_facts: ModelFacts | None = None,
                 decode_tps: float | None = None, env: dict[str, str] | None = None):
        super().__init__()
        self.config = config
        self.kind = kind
        self.name = "llama.cpp" if kind == "llama" else "synthetic"
        self.synthetic = kind != "llama"
        self.synthetic_reason = synthetic_reason if self.synthetic else None
        self.system_info: str | None = None
        self.modules: list[str] = []
        self.log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._replies: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._publish: Publish | None = None
        self._last: Any = None  # the newest event of the run in flight
        self._where: dict[str, Any] = {"phase": "start"}
        self._dead: _Died | None = None
        self._closed = False
        self._stop_watched: threading.Event | None = None
        child_env = _child_env()
        if env:
            child_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ttftui.measure.engine_process", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=child_env, close_fds=True,
        )
        self.pid = self.proc.pid
        _widen_pipe(self.proc.stdout.fileno())  # type: ignore[union-attr]
        self._wire_thread = threading.Thread(target=self._read_wire, name="ttftui-host-wire", daemon=True)
        self._err_thread = threading.Thread(target=self._read_stderr, name="ttftui-host-stderr", daemon=True)
        self._err_thread.start()
        self._wire_thread.start()
        init = {
            "op": "init", "config": config.model_dump(mode="json"), "t0_ns": self.clock.t0_ns,
            "model_path": str(model_path) if model_path is not None else None,
            "synthetic_reason": synthetic_reason, "decode_tps": decode_tps,
            "model_facts": TypeAdapter(ModelFacts).dump_python(model_facts, mode="json") if model_facts else None,
        }
        reply = self._call(init)
        if "unavailable" in reply:
            self.close()
            raise EngineUnavailable(reply["unavailable"])
        self.system_info = reply.get("system_info")
        self.gpu_offload: bool | None = reply.get("gpu_offload")
        self.llama_version: str | None = reply.get("version")
        self.modules = reply.get("modules", [])
        self.loaded_before_llama: list[str] = reply.get("loaded_before_llama", [])

    # ------------------------------------------------------------------ readers (threads)
    def _read_wire(self) -> None:
        """Take the child's lines as they come; while a run computes, in batches every
        ``WIRE_POLL_S``: a wake-up per token would take a core from llama.cpp's threads on a machine
        where they use every core (the pipe holds seconds of events meanwhile)."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        rest = b""
        while True:
            try:
                data = os.read(fd, PIPE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            *lines, rest = (rest + data).split(b"\n")
            for line in lines:
                self._take(line)
            if self._where.get("phase") == "run":
                time.sleep(WIRE_POLL_S)
        rc = self.proc.wait()
        self._err_thread.join(2.0)  # the last words on stderr belong in the crash report
        self._dead = _Died(rc)
        self._replies.put(self._dead)

    def _take(self, line: bytes) -> None:
        if line.startswith(b"!"):
            try:
                self._replies.put(json.loads(line[1:]))
            except ValueError:
                self.log_tail.append(f"(unreadable reply from the engine host: {visible(repr(line[:120]))})")
            return
        try:
            ev = event_from_json(line)
        except (ValidationError, ValueError):
            self.log_tail.append(f"(unreadable event from the engine host: {visible(repr(line[:120]))})")
            return
        self._last = ev
        if isinstance(ev, RunFinished):
            self._replies.put(ev)
        elif self._publish is not None:
            self._publish(ev)

    def _read_stderr(self) -> None:
        f = self.proc.stderr
        assert f is not None
        for raw in f:
            text = visible(raw.decode("utf-8", errors="replace").rstrip(), newlines=False)
            if text:
                self.log_tail.append(text)

    # ------------------------------------------------------------------ calls
    def _send(self, msg: dict[str, Any]) -> None:
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        try:
            fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except (BrokenPipeError, OSError, ValueError):
            pass  # the child is gone; the wire reader reports how it died

    def _wait(self) -> Any:
        r = self._replies.get()
        if isinstance(r, _Died):
            self._replies.put(r)  # every later call sees it too
            raise self._crash(r)
        return r

    def _forward_stop(self, stop: threading.Event) -> None:
        """Hand a stop request to the child the moment it is made (it then stops between tokens).
        One waiting thread per stop flag: no polling, nothing in the timed path."""
        while not self._closed and self._dead is None:
            if stop.wait(STOP_RECHECK_S):
                self._send({"op": "stop"})
                return

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        if self._dead is not None:
            raise self._crash(self._dead)
        self._send(msg)
        r = self._wait()
        if isinstance(r, dict):
            self._raise_for(r)
            return r
        raise RuntimeError(f"engine host: unexpected reply {r!r}")

    @staticmethod
    def _raise_for(r: dict[str, Any]) -> None:
        if "error" in r:
            cls = {c.__name__: c for c in all_error_classes()}.get(r["error"], TtftuiError)
            raise cls(r.get("message", ""))
        if "internal" in r:
            raise RuntimeError(f"engine host: {r['internal']}")

    # ------------------------------------------------------------------ Engine API
    def load(self) -> LoadResult:
        self._where = {"phase": "load"}
        return TypeAdapter(LoadResult).validate_python(self._call({"op": "load"})["load"])

    def prepare(self, scenario: Any, seed: int) -> PreparedScenario:
        self._where = {"phase": "prepare", "scenario": scenario.name}
        r = self._call({"op": "prepare", "scenario": scenario.model_dump(mode="json"), "seed": seed})
        self._where = {"phase": "idle"}
        return PreparedScenario(scenario, prompt_text=r["prompt_text"], prompt_tokens=int(r["prompt_tokens"]))

    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        if self._dead is not None:
            raise self._crash(self._dead)
        n_chunks = max(1, math.ceil(prepared.prompt_tokens / self.config.model.n_batch))
        self._where = {"phase": "run", "run_id": run_id, "scenario": prepared.scenario.name, "n_chunks": n_chunks}
        self._last = None
        self._publish = publish
        if stop is not self._stop_watched:
            self._stop_watched = stop
            threading.Thread(target=self._forward_stop, args=(stop,), name="ttftui-host-stop", daemon=True).start()
        try:
            self._send({"op": "run", "scenario": prepared.scenario.name, "run_id": run_id, "warmup": warmup})
            r = self._wait()
        finally:
            self._publish = None
        self._where = {"phase": "idle"}
        if isinstance(r, RunFinished):
            return r
        if isinstance(r, dict) and r.get("stopped"):
            raise RunStopped()
        self._raise_for(r)
        raise RuntimeError(f"engine host: unexpected reply {r!r}")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._dead is None and self.proc.poll() is None:
            self._send({"op": "close"})
            try:
                self.proc.wait(CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin,):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self._wire_thread.join(2.0)

    # ------------------------------------------------------------------ a crash, described
    def _crash(self, died: _Died) -> EngineCrash:
        sig, code, how = describe_exit(died.returncode)
        w = self._where
        at = self._phase_at_death()
        phase, chunk, token_index = at.phase, at.chunk, at.token_index
        run_id, scenario, n_chunks = w.get("run_id"), w.get("scenario"), w.get("n_chunks")
        who = "llama.cpp" if self.kind == "llama" else "the engine process"
        what = "crashed" if sig not in (None, "SIGKILL", "SIGTERM") else ("was killed" if sig else "exited")
        where = Where(phase, chunk, n_chunks, token_index).words()
        if run_id is not None:
            where += f" of run {run_id}, scenario {scenario}"
        elif phase == "prepare":
            where += f" of scenario {scenario}"
        hint = self._hint(sig, phase)
        message = f"{who} {what} ({how}) during {where} — {hint}"
        event = EngineCrashed(
            t_ns=self.clock.now_ns(), signal=sig, exit_code=code, phase=phase, run_id=run_id,
            scenario=scenario, chunk=chunk, n_chunks=n_chunks if phase == "prefill_chunk" else None,
            token_index=token_index, pid=self.pid, log_tail=crash_tail(list(self.log_tail)), message=message,
        )
        return EngineCrash(message, event)

    def _phase_at_death(self) -> Where:
        w = self._where
        if w["phase"] != "run":
            return Where(w["phase"])
        return where_next(self._last, w["n_chunks"])

    def _hint(self, sig: str | None, phase: str) -> str:
        info = self.system_info or ""
        if sig == "SIGKILL":
            return ("killed from outside, often by the kernel's out-of-memory killer (see dmesg); "
                    "completed runs are kept")
        if self.kind == "llama" and sig in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT"):
            if has_amx(info) and self.config.model.repack == "on" and phase in ("prefill_chunk", "load"):
                return ("this CPU has AMX and model.repack = on; llama.cpp's AMX path crashes here: "
                        "use --set model.repack=auto (or off); completed runs are kept")
            if self.config.model.n_gpu_layers != 0:
                return ("a native fault with GPU offload; try --set model.n_gpu_layers=0 to tell the GPU backend "
                        "from the CPU one; completed runs are kept, llama.cpp's last lines are in the report")
        return "completed runs are kept; the engine's last log lines are in the report (crash.log_tail)"


def crash_tail(lines: list[str], n: int = 20) -> tuple[str, ...]:
    """The lines worth keeping from a dead engine's stderr: when Python's fault handler dumped the
    stacks, its verdict and the crashing thread's innermost frames first (where in ttftui's engine
    loop the native call was), after the few llama.cpp lines before it; else the last ``n`` lines."""
    start = next((i for i, t in enumerate(lines) if t.startswith("Fatal Python error")), None)
    if start is None:
        return tuple(lines[-n:])
    verdict = lines[start]
    cur = next((i for i in range(start, len(lines)) if lines[i].startswith("Current thread")), None)
    frames = [t for t in lines[cur + 1:] if t.startswith("  File")][:8] if cur is not None else []
    before = lines[max(0, start - 5):start]
    return tuple([verdict, *[f.strip() for f in frames], *before])[:n]


