"""The engine host's side of the pipe: commands in on stdin, events and replies out on the wire.

Wire format (one message per line, UTF-8 JSON):

* an **event** is exactly a recording's event line (``ttftui.core.events.event_to_json``), so a live
  session and a replay read the same stream;
* a **reply** to a command is ``!`` followed by a JSON object.

The engine runs in this process's main thread; it writes each event to the pipe itself, the moment
it publishes it, after the timing point it belongs to (a write is a few microseconds; the pipe is
widened to 1 MiB where the OS allows, so it never blocks while the parent is busy). Nothing else in
this process competes for the GIL during a run: one other thread waits on stdin for ``stop``, and a
heartbeat thread wakes once a second (``HEARTBEAT_ENV``) to write ``~`` and the process's CPU time so
far, so that the parent can tell a process that computes from one that is stopped (nothing comes) or
hung (heartbeats without CPU time); it also exits when the parent is gone (a second line of
defence behind the parent-death signal that ``__main__`` asks the kernel for, and the only one where
there is none). A native fault prints the Python stack of every thread (faulthandler) to stderr,
which the parent keeps the tail of, and the process then dies of the signal, which the parent reports.
"""

from __future__ import annotations

import faulthandler
import json
import os
import queue
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

# Loaded after llama_cpp (see __main__): these pull in pydantic-core, numpy (metrics) and psutil.
from ttftui.core.config import Config, ScenarioConfig
from ttftui.core.errors import TtftuiError
from ttftui.core.events import DiffusionStep, ModelFacts, PhaseTimed, TokenEmitted, event_to_json, phase_to_json
from ttftui.measure.engine.base import Engine, PreparedScenario, RunStopped
from ttftui.measure.engine_process import HEARTBEAT_ENV, PARENT_ENV

# Native libraries whose import order the parent may check (tests pin llama_cpp first).
WATCHED_MODULES = ("llama_cpp", "llama_cpp.llama_cpp", "numpy", "pydantic_core", "psutil", "scipy")

FAULT_ENV = "TTFTUI_ENGINE_FAULT"
HEARTBEAT_S = 1.0


class Wire:
    """Writes whole lines to the pipe to the parent (a raw fd: no buffer to lose in a crash); one
    writer at a time (the engine and the heartbeat), so that a line is never split by another."""

    def __init__(self, fd: int):
        self.fd = fd
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        with self._lock:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]

    def event(self, ev: Any) -> None:
        # a phase's event is written between two of TTFT's timing points: its own short way there
        self.write((phase_to_json(ev) if type(ev) is PhaseTimed else event_to_json(ev)) + b"\n")

    def reply(self, obj: dict[str, Any]) -> None:
        self.write(b"!" + json.dumps(obj, separators=(",", ":")).encode() + b"\n")


class Fault:
    """A deliberate crash, for testing what a session does when the engine dies (``TTFTUI_ENGINE_FAULT``).

    ``SIGNAL [run=N] [after=WHAT] [at=init|load|prepare]``: SIGNAL is SIGSEGV (a real invalid memory
    read in native code), SIGKILL, SIGABRT or EXIT (exit code 3); or, for a process that does not
    die, SIGSTOP (it stops itself, as ``kill -STOP`` would; ``kill -CONT`` goes on) or HANG (the
    engine's thread blocks for good while the rest of the process lives: a deadlock). ``after=``
    names the event after which it strikes: a phase (tokenize, cache_prep, prefill_chunk, first_sample,
    first_detok, canvas; ``prefill_chunk:K`` after chunk K), ``token:K`` (after output token K) or ``step:K``
    (after a diffusion model's step K); ``run=`` limits it to one run id. E.g.
    ``SIGSEGV run=3 after=prefill_chunk:0`` dies during the second prefill chunk of run 3."""

    def __init__(self, spec: str):
        parts = spec.split()
        if not parts:
            raise ValueError("empty fault spec")
        self.signal = parts[0].upper()
        if self.signal not in ("SIGSEGV", "SIGKILL", "SIGABRT", "EXIT", "SIGSTOP", "HANG"):
            raise ValueError(f"unknown fault {parts[0]!r}")
        kv = dict(p.split("=", 1) for p in parts[1:])
        self.run = int(kv["run"]) if "run" in kv else None
        self.at = kv.get("at")
        after = kv.get("after")
        self.after_kind, self.after_index = None, None
        if after:
            kind, _, idx = after.partition(":")
            self.after_kind, self.after_index = kind, (int(idx) if idx else None)

    def strike(self) -> None:
        sys.stderr.flush()
        if self.signal == "SIGSEGV":
            import ctypes  # only to crash on purpose (TTFTUI_ENGINE_FAULT)

            ctypes.string_at(0)  # a real segmentation fault, in native code
        elif self.signal == "SIGKILL":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.signal == "SIGABRT":
            os.abort()
        elif self.signal == "SIGSTOP":
            os.kill(os.getpid(), signal.SIGSTOP)  # every thread stops here; SIGCONT goes on
            return
        elif self.signal == "HANG":
            threading.Event().wait()  # never set: this thread waits for good, the others go on
        os._exit(3)

    def matches(self, ev: Any) -> bool:
        if self.after_kind is None or (self.run is not None and getattr(ev, "run_id", None) != self.run):
            return False
        if self.after_kind == "token":
            return isinstance(ev, TokenEmitted) and self.after_index in (None, ev.index)
        if self.after_kind == "step":  # a diffusion model's denoising step K (0-based)
            return isinstance(ev, DiffusionStep) and self.after_index in (None, ev.step)
        if isinstance(ev, PhaseTimed) and ev.phase == self.after_kind:
            return self.after_index is None or ev.chunk == self.after_index
        return False

    def wrap(self, publish: Callable[[Any], None]) -> Callable[[Any], None]:
        def faulty(ev: Any) -> None:
            publish(ev)
            if self.matches(ev):
                self.strike()

        return faulty


def _isolate_stdout() -> int:
    """Keep the wire (fd 1 as started) to ourselves: anything else printed to stdout, by Python or
    by native code, goes to stderr instead of corrupting the event stream."""
    wire_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return wire_fd


def _build_engine(kind: str, msg: dict[str, Any]) -> Engine:
    config = Config.model_validate(msg["config"])
    if kind == "llama":
        from ttftui.measure.engine.choose import llama_engine  # llama_cpp: loaded only by a llama engine process

        engine: Engine = llama_engine(config, msg["model_path"])
    else:
        from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine  # numpy: after llama.cpp

        facts = ModelFacts(**msg["model_facts"]) if msg.get("model_facts") else None
        cost = CostModel.with_decode_rate(msg["decode_tps"]) if msg.get("decode_tps") else None
        engine = SyntheticEngine(config, msg.get("synthetic_reason") or "synthetic", pace=True, cost=cost, model=facts)
    engine.clock.t0_ns = int(msg["t0_ns"])  # the parent's session clock: one monotonic clock per machine
    return engine


def _build_facts(kind: str) -> dict[str, Any]:
    """What the parent (and ``ttftui doctor``) needs to know of the llama.cpp build, without loading
    a model: its system info (backend, CPU features such as AMX), GPU offload support, version."""
    if kind != "llama":
        return {}
    from ttftui.measure.engine.diffusion_plan import DIFFUSION_ARCHITECTURES
    from ttftui.measure.engine.llama import L, diffusion_support, system_info  # llama_cpp: a llama engine process only

    return {"system_info": system_info(), "gpu_offload": bool(L.llama_supports_gpu_offload()),
            "version": getattr(L, "__version__", None), "diffusion": diffusion_support(DIFFUSION_ARCHITECTURES)}


def _heartbeat(wire: Wire, interval: float, parent: int | None) -> None:
    """A sign of life every ``interval`` seconds: ``~`` and this process's CPU time (all threads),
    which tells the parent whether it computes. Exits when the parent is gone."""
    while True:
        time.sleep(interval)
        if parent is not None and os.getppid() != parent:
            os._exit(0)  # orphaned (where no parent-death signal came): nobody reads what we measure
        try:
            wire.write(b"~%d\n" % time.process_time_ns())
        except OSError:  # the parent closed the pipe: it is gone
            os._exit(0)


def _env_number(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, ""))
    except ValueError:
        return default
    return v if 0 < v < 3600 else default


def serve(kind: str, import_error: str | None, loaded_before: list[str] | None = None,
          nice: dict[str, Any] | None = None) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent stops us between tokens
    wire = Wire(_isolate_stdout())
    parent = os.environ.get(PARENT_ENV, "")
    threading.Thread(target=_heartbeat, args=(wire, _env_number(HEARTBEAT_ENV, HEARTBEAT_S),
                                              int(parent) if parent.isdigit() else None),
                     name="ttftui-host-heartbeat", daemon=True).start()
    faulthandler.enable(file=sys.stderr, all_threads=True)
    if kind == "llama" and import_error is None:
        import ttftui.measure.engine.llama as llama_mod  # llama_cpp: a llama engine process only

        llama_mod.FORWARD_LOG_FD = 2
    fault = Fault(os.environ[FAULT_ENV]) if os.environ.get(FAULT_ENV) else None

    commands: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    stop = threading.Event()

    def read_commands() -> None:
        for line in sys.stdin.buffer:
            msg = json.loads(line)
            if msg.get("op") == "stop":
                stop.set()  # seen by the engine between tokens
            else:
                commands.put(msg)
        os._exit(0)  # the parent closed the pipe or died: nobody is left to read what we measure

    threading.Thread(target=read_commands, name="ttftui-host-commands", daemon=True).start()

    engine: Engine | None = None
    prepared: dict[str, PreparedScenario] = {}
    while True:
        msg = commands.get()
        if msg is None:
            return 0
        op = msg.get("op")
        try:
            if op == "init":
                if fault is not None and fault.at == "init":
                    fault.strike()
                if import_error is not None:
                    wire.reply({"unavailable": f"llama-cpp-python cannot be imported ({import_error})"})
                    continue
                engine = _build_engine(kind, msg)
                wire.reply({"ok": True, "pid": os.getpid(), **_build_facts(kind),
                            "modules": [m for m in sys.modules if m in WATCHED_MODULES],
                            "loaded_before_llama": loaded_before or [], "nice": nice or {}})
            elif op == "load":
                assert engine is not None
                if fault is not None and fault.at == "load":
                    fault.strike()
                from pydantic import TypeAdapter  # pydantic-core: native, loaded after llama.cpp

                from ttftui.measure.engine.base import LoadResult  # with pydantic: after llama.cpp

                result = engine.load()
                wire.reply({"ok": True, "load": TypeAdapter(LoadResult).dump_python(result, mode="json")})
            elif op == "prepare":
                assert engine is not None
                if fault is not None and fault.at == "prepare":
                    fault.strike()
                scenario = ScenarioConfig.model_validate(msg["scenario"])  # exactly the parent's, not a name
                prep = engine.prepare(scenario, int(msg["seed"]))
                prepared[scenario.name] = prep
                wire.reply({"ok": True, "prompt_tokens": prep.prompt_tokens, "prompt_text": prep.prompt_text})
            elif op == "run":
                assert engine is not None
                publish = wire.event if fault is None else fault.wrap(wire.event)
                try:
                    end = engine.run(prepared[msg["scenario"]], int(msg["run_id"]), bool(msg["warmup"]), publish, stop)
                except RunStopped:
                    wire.reply({"stopped": True})
                else:
                    wire.event(end)  # the run's own reply is its RunFinished event
            elif op == "close":
                if engine is not None:
                    engine.close()
                wire.reply({"ok": True})
                sys.stderr.flush()
                # Not a normal interpreter exit: the command reader is blocked in stdin, and a daemon
                # thread inside a buffered read aborts Python's finalization (SIGABRT).
                os._exit(0)
            else:
                wire.reply({"internal": f"unknown command {op!r}"})
        except TtftuiError as e:
            wire.reply({"error": type(e).__name__, "message": str(e)})
        except Exception as e:  # noqa: BLE001 - a bug: the parent reports it as an internal error
            traceback.print_exc()
            wire.reply({"internal": f"{type(e).__name__}: {e}"})
