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

The child must not outlive its use, nor hang a session: a watchdog thread reports it stalled
(``EngineStalled``) when, while it owes an answer, it shows no progress for ``engine.stall_warn_s``
(no event, and no CPU time on its heartbeat), and kills it at ``engine.stall_kill_s`` (a crash of its
own words); once the session is stopped, a call it does not answer within ``engine.stop_grace_s``
gets it killed (:class:`EngineAbandoned`); and it dies with this process (it is started from a
thread that lives as long as this process, so that the parent-death signal it asks for on Linux
comes when this process dies, not when the session's thread ends).
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import os
import queue
import select
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
from ttftui.core.events import EngineCrashed, EngineStalled, ModelFacts, Notice, RunFinished, event_from_json
from ttftui.core.textsafe import visible
from ttftui.measure.engine.base import Engine, LoadResult, PreparedScenario, Publish, RunError, RunStopped
from ttftui.measure.engine.llama_facts import has_amx
from ttftui.measure.engine_process import HEARTBEAT_ENV, NICE_ENV, PARENT_ENV

PIPE_BYTES = 1 << 20  # the wire's capacity: seconds of tokens, so the child never waits on a busy parent
LOG_TAIL_LINES = 40
CLOSE_TIMEOUT_S = 10.0
STOP_RECHECK_S = 0.5  # how often the stop forwarder looks whether the engine is still there
WIRE_POLL_S = 0.02
HEARTBEAT_S = 1.0  # the child's heartbeat period (shorter when engine.stall_warn_s is a few seconds)
# A heartbeat shows the child computing when its CPU time grew by at least this share of the time
# between two heartbeats (1 % of a core; the heartbeat itself costs some microseconds a second).
BUSY_CPU_SHARE = 0.01
SILENT_BEATS = 3  # this many heartbeat periods without a line: the child sends nothing at all


class EngineUnavailable(Exception):
    """The child could not build the engine (llama-cpp-python does not import there)."""


class EngineAbandoned(RunError):
    """The session was stopped and the engine host did not answer within ``engine.stop_grace_s``:
    it was killed. The run in flight (if any) fails with this message; the stop stands."""


# ---------------------------------------------------------------------- starting the child
class _Launcher:
    """Starts every engine host from one thread that lives as long as this process. On Linux the
    child asks the kernel for SIGKILL when its parent dies, and "parent" there is the *thread* that
    started it: started from a session's worker thread, it would be killed when that thread ends
    (a Ray engine host keeps its engine loaded from one unit's thread to the next's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def popen(self, args: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():  # first use, or in a forked child
                self._thread = threading.Thread(target=self._serve, name="ttftui-host-launcher", daemon=True)
                self._thread.start()
        answer: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._requests.put((args, kw, answer))
        got = answer.get()
        if isinstance(got, BaseException):
            raise got
        return got  # type: ignore[no-any-return]

    def _serve(self) -> None:
        while True:
            args, kw, answer = self._requests.get()
            try:
                answer.put(subprocess.Popen(args, **kw))
            except BaseException as e:  # noqa: BLE001 - handed to the caller, raised there
                answer.put(e)


_LAUNCHER = _Launcher()
_context = threading.local()


@contextlib.contextmanager
def hosted_in(*, stop: threading.Event | None = None, nice: int | None = None) -> Any:
    """Engine hosts started in this thread inside the block are killed when ``stop`` is set and
    they do not answer within ``engine.stop_grace_s`` (even while still starting), and run at
    niceness ``nice`` (None: this process's)."""
    saved = getattr(_context, "value", None)
    _context.value = (stop, nice)
    try:
        yield
    finally:
        _context.value = saved


def _wanted_nice(nice: int | None) -> int | None:
    """The niceness the child should run at: the one asked for, else ``TTFTUI_HOST_NICE`` from the
    environment, else this process's (on Linux its main thread's, which ``nice -n`` set: niceness
    is per thread there, and the child inherits the starting thread's, whatever it is)."""
    if nice is not None:
        return nice
    env = os.environ.get(NICE_ENV, "")
    if env.lstrip("-").isdigit():
        return int(env)
    try:
        return os.getpriority(os.PRIO_PROCESS, os.getpid())
    except (OSError, AttributeError):  # no such call on this platform
        return None


def nice_notice(t_ns: int, pid: int | None, nice: dict[str, Any]) -> Notice | None:
    """A warning when the child could not take the niceness it was asked for; None when it did."""
    wanted, now = nice.get("wanted"), nice.get("now")
    if wanted is None or now is None or now <= wanted:
        return None
    why = f" ({nice['error']})" if nice.get("error") else ""
    return Notice(t_ns=t_ns, level="warning", message=(
        f"the engine host (pid {pid}) runs at nice {now}, not {wanted}: it could not lower its niceness{why}, "
        "which needs CAP_SYS_NICE or a raised RLIMIT_NICE (ulimit -e); every thread of the engine (llama.cpp's too) "
        f"yields the CPU to any other busy process, and the timings show it. Start ttftui at nice {wanted} (on a Ray worker: "
        "RAY_worker_niceness=0 in the environment of `ray start`, and of ttftui with --ray local)"))


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
    env[PARENT_ENV] = str(os.getpid())
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
        self._ended = threading.Event()  # closed, or the child is dead: the watching threads leave
        self._stops_watched: list[threading.Event] = []
        # the watchdog's view (time.monotonic): since when a call waits for its answer, when the
        # child last sent anything (a heartbeat too), when it last made progress
        ec = config.engine
        self.stall_warn_s, self.stall_kill_s, self.stop_grace_s = ec.stall_warn_s, ec.stall_kill_s, ec.stop_grace_s
        first = ec.stall_warn_s or ec.stall_kill_s
        self.heartbeat_s = min(HEARTBEAT_S, first / 4) if first else HEARTBEAT_S
        self._busy_since: float | None = None
        self._last_heard = self._last_progress = time.monotonic()
        self._beat: tuple[float, int] | None = None  # (when, the child's CPU time in ns) at its last heartbeat
        self._stalled: EngineStalled | None = None  # reported and not resumed
        self._stall_t = 0.0  # when it was reported
        self._kill_lock = threading.Lock()
        self._killed: tuple[Any, ...] | None = None  # ("stop", grace) or ("watchdog", seconds, silent)
        self._session_publish: Publish | None = None
        self._pending: list[Any] = []  # events for the session, until it attaches (attach)
        stop, nice = getattr(_context, "value", None) or (None, None)
        child_env = _child_env()
        wanted = _wanted_nice(nice)
        if wanted is not None:
            child_env[NICE_ENV] = str(wanted)
        child_env[HEARTBEAT_ENV] = f"{self.heartbeat_s:g}"
        if env:
            child_env.update(env)
        self.proc = _LAUNCHER.popen(
            [sys.executable, "-m", "ttftui.measure.engine_process", kind], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=child_env, close_fds=True,
        )
        self.pid = self.proc.pid
        _widen_pipe(self.proc.stdout.fileno())  # type: ignore[union-attr]
        self._wake = os.pipe()  # run() wakes the wire reader, so that it reads by the clock before the run starts
        self._timed = threading.Event()  # the wire reader reads by the clock (a run computes)
        self._wake_lock = threading.Lock()
        self._wire_thread = threading.Thread(target=self._read_wire, name="ttftui-host-wire", daemon=True)
        self._err_thread = threading.Thread(target=self._read_stderr, name="ttftui-host-stderr", daemon=True)
        self._err_thread.start()
        self._wire_thread.start()
        if first:
            threading.Thread(target=self._watch, name="ttftui-host-watchdog", daemon=True).start()
        if stop is not None:
            self._watch_stop(stop)
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
        self.diffusion_support: dict[str, Any] | None = reply.get("diffusion")  # ttftui doctor says it
        self.llama_version: str | None = reply.get("version")
        self.modules = reply.get("modules", [])
        self.loaded_before_llama: list[str] = reply.get("loaded_before_llama", [])
        self.nice: dict[str, Any] = reply.get("nice") or {}  # before, wanted, now, error (see __main__)
        warning = nice_notice(self.clock.now_ns(), self.pid, self.nice)
        if warning is not None:
            self._emit(warning)

    def attach(self, publish: Publish, stop: threading.Event) -> None:
        """The session this engine works for from now on: what it has to say outside a run (a stall,
        a niceness it could not take) goes to ``publish``; once ``stop`` is set, a call the child does
        not answer within ``engine.stop_grace_s`` gets it killed. Events from before are sent now."""
        self._session_publish = publish
        pending, self._pending = self._pending, []
        for ev in pending:
            publish(ev)
        self._watch_stop(stop)

    def _emit(self, ev: Any) -> None:
        publish = self._session_publish or self._publish
        if publish is None:
            self._pending.append(ev)
        else:
            publish(ev)

    # ------------------------------------------------------------------ readers (threads)
    def _read_wire(self) -> None:
        """Take the child's lines as they come; while a run computes, in batches every
        ``WIRE_POLL_S``: a wake-up per token would take a core from llama.cpp's threads on a machine
        where they use every core (the pipe holds seconds of events meanwhile)."""
        fd = self.proc.stdout.fileno()  # type: ignore[union-attr]
        rest = b""
        while True:
            try:
                if self._where.get("phase") == "run":
                    # A run computes: woken by the clock, never by the child's write. A reader blocked
                    # in read() would wake the moment the child writes a phase's event, between two
                    # of TTFT's timing points, and take a core from it there (on a 2-core machine
                    # that was 0.3 ms of unaccounted TTFT a run).
                    self._timed.set()
                    time.sleep(WIRE_POLL_S)
                    if not select.select([fd], [], [], 0)[0]:
                        continue
                else:  # a reply or the next run's start (run() wakes this thread through _wake)
                    self._timed.clear()
                    ready = select.select([fd, self._wake[0]], [], [])[0]
                    if self._wake[0] in ready:
                        os.read(self._wake[0], 64)
                    if fd not in ready:
                        continue
                data = os.read(fd, PIPE_BYTES)
            except OSError:
                data = b""
            if not data:
                break
            *lines, rest = (rest + data).split(b"\n")
            now = time.monotonic()
            progress = False
            for line in lines:
                if line.startswith(b"~"):
                    progress = self._heartbeat(line, now) or progress
                else:
                    self._take(line)
                    progress = True
            self._last_heard = now
            if progress:
                self._progressed(now)
        rc = self.proc.wait()
        self._err_thread.join(2.0)  # the last words on stderr belong in the crash report
        self._dead = _Died(rc)
        self._ended.set()
        self._replies.put(self._dead)

    def _heartbeat(self, line: bytes, now: float) -> bool:
        """Whether this heartbeat shows progress: the child's CPU time grew since the last one (it
        computes), or what it waits for is not computing (a model load reads a file; the synthetic
        engine sleeps its modelled times)."""
        try:
            cpu = int(line[1:])
        except ValueError:
            return False
        last, self._beat = self._beat, (now, cpu)
        if self.synthetic or self._where.get("phase") in ("start", "load"):
            return True
        if last is None:
            return False
        return (cpu - last[1]) >= BUSY_CPU_SHARE * (now - last[0]) * 1e9

    def _progressed(self, now: float) -> None:
        self._last_progress = now
        stalled = self._stalled
        if stalled is not None:
            self._stalled = None
            total = stalled.stalled_s + (now - self._stall_t)
            self._emit(EngineStalled(
                t_ns=self.clock.now_ns(), state="resumed", stalled_s=round(total, 1), silent=stalled.silent,
                phase=stalled.phase, run_id=stalled.run_id, scenario=stalled.scenario, pid=self.pid,
                message=f"{self._who()} is making progress again after {total:.0f} s"))

    # ------------------------------------------------------------------ the watchdogs (threads)
    def _who(self) -> str:
        return f"the engine host ({'llama.cpp' if self.kind == 'llama' else 'synthetic'}, pid {self.pid})"

    def _where_words(self) -> tuple[Where, str]:
        w = self._where
        at = self._phase_now()
        n_chunks = at.n_chunks if at.phase == "diffusion_step" else w.get("n_chunks")  # a diffusion run: its steps
        words = Where(at.phase, at.chunk, n_chunks, at.token_index).words()
        if w.get("run_id") is not None:
            words += f" of run {w['run_id']}, scenario {w.get('scenario')}"
        elif at.phase == "prepare":
            words += f" of scenario {w.get('scenario')}"
        return at, words

    def _watch(self) -> None:
        """Report the child stalled after ``stall_warn_s`` without progress while a call waits for
        it, and kill it after ``stall_kill_s`` (then the waiting call raises the crash)."""
        warn, kill = self.stall_warn_s, self.stall_kill_s
        tick = max(0.05, min(1.0, min(x for x in (warn, kill) if x) / 10))
        while not self._ended.wait(tick):
            since = self._busy_since
            if since is None:
                continue
            now = time.monotonic()
            quiet = now - max(self._last_progress, since)
            silent = now - max(self._last_heard, since) >= SILENT_BEATS * self.heartbeat_s
            if kill and quiet >= kill:
                self._kill(("watchdog", quiet, silent))
                return
            if warn and quiet >= warn and self._stalled is None:
                at, words = self._where_words()
                how = ("it sends nothing, not even its heartbeat: stopped (SIGSTOP, Ctrl-Z) or frozen" if silent else
                       "it is alive but neither computes nor sends events: hung")
                then = (f"it is killed after {kill:g} s (engine.stall_kill_s)" if kill else
                        "engine.stall_kill_s = 0: it is never killed")
                w = self._where
                self._stall_t = now
                self._stalled = ev = EngineStalled(
                    t_ns=self.clock.now_ns(), state="stalled", stalled_s=round(quiet, 1), silent=silent, phase=at.phase,
                    run_id=w.get("run_id"), scenario=w.get("scenario"), kill_after_s=kill or None, pid=self.pid,
                    message=f"{self._who()} has made no progress for {quiet:.0f} s during {words}: {how}; {then}")
                self.log_tail.append(f"(ttftui: {ev.message})")
                self._emit(ev)

    def _watch_stop(self, stop: threading.Event) -> None:
        if any(s is stop for s in self._stops_watched):
            return
        self._stops_watched.append(stop)
        threading.Thread(target=self._forward_stop, args=(stop,), name="ttftui-host-stop", daemon=True).start()

    def _kill(self, why: tuple[Any, ...]) -> None:
        with self._kill_lock:
            if self._killed is not None or self._dead is not None:
                return
            self._killed = why
            try:
                self.proc.kill()  # SIGKILL: the one signal a stopped process acts on
            except OSError:
                pass

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
            raise self._failure(r)
        return r

    def _ask(self, msg: dict[str, Any]) -> Any:
        """Send a command and wait for its answer, the watchdogs watching meanwhile."""
        if self._dead is not None:
            raise self._failure(self._dead)
        self._last_progress = self._busy_since = time.monotonic()
        try:
            self._send(msg)
            return self._wait()
        finally:
            self._busy_since = None

    def _forward_stop(self, stop: threading.Event) -> None:
        """Hand a stop request to the child the moment it is made (it then stops between tokens).
        One waiting thread per stop flag: no polling, nothing in the timed path. From then on, a
        call the child does not answer within ``stop_grace_s`` (of the stop, or of the call if it
        came later) gets it killed: the session must end even when its engine is stopped or hung."""
        while not self._ended.is_set():
            if stop.wait(STOP_RECHECK_S):
                break
        else:
            return
        stopped = time.monotonic()
        self._send({"op": "stop"})
        while not self._ended.wait(0.05):
            since = self._busy_since
            if since is not None and time.monotonic() - max(since, stopped) >= self.stop_grace_s:
                self._kill(("stop", self.stop_grace_s))
                return

    def _call(self, msg: dict[str, Any]) -> dict[str, Any]:
        r = self._ask(msg)
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
        loaded = TypeAdapter(LoadResult).validate_python(self._call({"op": "load"})["load"])
        self._diffusion = loaded.diffusion is not None  # its runs go tokenize, canvas, steps
        return loaded

    def prepare(self, scenario: Any, seed: int) -> PreparedScenario:
        self._where = {"phase": "prepare", "scenario": scenario.name}
        r = self._call({"op": "prepare", "scenario": scenario.model_dump(mode="json"), "seed": seed})
        self._where = {"phase": "idle"}
        return PreparedScenario(scenario, prompt_text=r["prompt_text"], prompt_tokens=int(r["prompt_tokens"]))

    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        if self._dead is not None:
            raise self._failure(self._dead)
        n_chunks = max(1, math.ceil(prepared.prompt_tokens / self.config.model.n_batch))
        self._where = {"phase": "run", "run_id": run_id, "scenario": prepared.scenario.name, "n_chunks": n_chunks}
        with self._wake_lock:  # the reader reads by the clock before the child starts (untimed)
            if not self._closed and self._wire_thread.is_alive():
                os.write(self._wake[1], b"!")
        self._timed.wait(1.0)
        self._last = None
        self._publish = publish
        self._watch_stop(stop)
        try:
            r = self._ask({"op": "run", "scenario": prepared.scenario.name, "run_id": run_id, "warmup": warmup})
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
        """Ask the child to free its engine and exit; killed when it takes longer than
        ``CLOSE_TIMEOUT_S``, or sends nothing (not even its heartbeat) meanwhile: stopped or frozen."""
        if self._closed:
            return
        self._closed = True
        if self._dead is None and self.proc.poll() is None:
            self._send({"op": "close"})
            start = time.monotonic()
            while True:
                try:
                    self.proc.wait(0.1)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    silent = now - max(self._last_heard, start) >= max(SILENT_BEATS * self.heartbeat_s, 1.0)
                    if silent or now - start >= CLOSE_TIMEOUT_S:
                        self.proc.kill()
                        self.proc.wait()
                        break
        self._ended.set()
        for f in (self.proc.stdin,):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass
        self._wire_thread.join(2.0)
        if not self._wire_thread.is_alive():  # (a reader still inside select keeps them: never a reused fd)
            with self._wake_lock:
                for end in self._wake:
                    os.close(end)

    # ------------------------------------------------------------------ a crash, described
    def _failure(self, died: _Died) -> Exception:
        """What the call that was waiting raises now that the child is dead: its crash, or, when it
        was killed because it did not answer a stop, :class:`EngineAbandoned` (the stop stands)."""
        if self._killed is not None and self._killed[0] == "stop":
            who = "llama.cpp" if self.kind == "llama" else "the engine process"
            return EngineAbandoned(f"stopped: {who} did not answer within {self._killed[1]:g} s "
                                   "(engine.stop_grace_s) and was killed")
        return self._crash(died)

    def _crash(self, died: _Died) -> EngineCrash:
        sig, code, how = describe_exit(died.returncode)
        w = self._where
        at, where = self._where_words()
        phase, chunk, token_index = at.phase, at.chunk, at.token_index
        run_id, scenario = w.get("run_id"), w.get("scenario")
        n_chunks = at.n_chunks if phase == "diffusion_step" else w.get("n_chunks")  # a diffusion run's steps
        who = "llama.cpp" if self.kind == "llama" else "the engine process"
        what = "crashed" if sig not in (None, "SIGKILL", "SIGTERM") else ("was killed" if sig else "exited")
        hint = self._hint(sig, phase)
        killed = self._killed
        if killed is not None and killed[0] == "watchdog":
            _, quiet, silent = killed
            what = f"stalled, no progress for {quiet:.0f} s, and was killed by ttftui's watchdog"
            hint = (("it sent nothing, not even its heartbeat: stopped (SIGSTOP, Ctrl-Z) or frozen" if silent else
                     "it was alive but neither computed nor sent events: hung")
                    + f"; engine.stall_kill_s = {self.stall_kill_s:g} (0: never); completed runs are kept")
        message = f"{who} {what} ({how}) during {where} — {hint}"
        event = EngineCrashed(
            t_ns=self.clock.now_ns(), signal=sig, exit_code=code, phase=phase, run_id=run_id,
            scenario=scenario, chunk=chunk, n_chunks=n_chunks if phase in ("prefill_chunk", "diffusion_step") else None,
            token_index=token_index, pid=self.pid, log_tail=crash_tail(list(self.log_tail)), message=message,
        )
        return EngineCrash(message, event)

    def _phase_now(self) -> Where:
        """Where the child is now (or was when it died): inferred from the last event it sent."""
        w = self._where
        if w["phase"] != "run":
            return Where(w["phase"])
        return where_next(self._last, w["n_chunks"], diffusion=getattr(self, "_diffusion", False))

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


