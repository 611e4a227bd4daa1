"""What Ray client workers and engine hosts share: Ray itself (a one-line error without it), joining
the cluster, the body of a worker (its name, its outbox of event JSON lines, its batches), niceness,
and forwarding the session's controls to the actors."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from typing import Any, Callable

from ttftui.core.errors import ConfigError
from ttftui.core.events import (
    Notice,
    RunFailed,
    RunFinished,
    RunStarted,
    WorkerLost,
    event_from_json,
    event_to_json,
    shift_time,
)


def ray_module() -> Any:
    try:
        import ray  # the ray extra: only when a cluster executor starts
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'ttftui[ray]'") from None
    return ray


def split(total: int, parts: int) -> list[int]:
    """``total`` as ``parts`` near-equal whole shares (the first ones one larger)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class WorkerBody:
    """What every Ray worker body (a client worker, an engine host) shares: its name, its outbox
    of event JSON lines, and the batches it yields every ``batch_ms`` while a thread of it works."""

    def __init__(self) -> None:
        self.name = ""
        self._buf: list[bytes] = []
        self._lock = threading.Lock()

    def _introduce(self, clock_now_ns: int) -> dict[str, Any]:
        """Name this worker (node:pid), leave Ray's niceness, and say where its clock's zero is on
        the wall clock (the driver's shift onto the session's time line)."""

        node = ""
        try:
            import ray  # the ray extra (an actor body runs outside Ray in tests)

            if ray.is_initialized():  # (get_runtime_context would start a Ray of its own otherwise)
                node = ray.get_runtime_context().get_node_id()[:8]
        except Exception:  # noqa: BLE001 - outside Ray (tests of the body itself)
            pass
        self.name = f"{node or socket.gethostname()}:{os.getpid()}"
        # before any engine starts: its process inherits this niceness
        return {"worker": self.name, "host": socket.gethostname(), "pid": os.getpid(), "nice": unnice(),
                "zero_wall_ns": time.time_ns() - clock_now_ns}

    def _put(self, ev: Any) -> None:
        line = event_to_json(ev)
        with self._lock:
            self._buf.append(line)

    def _take(self) -> list[bytes]:
        with self._lock:
            out, self._buf = self._buf, []
        return out

    def _batches(self, body: Callable[[], None], batch_ms: float, name: str) -> Any:
        """Run ``body`` in a thread; yield what it published, every ``batch_ms``, until it ends."""
        th = threading.Thread(target=body, name=name, daemon=True)
        th.start()
        while th.is_alive():
            th.join(batch_ms / 1000)
            if batch := self._take():
                yield batch
        if batch := self._take():
            yield batch


def unnice() -> int:
    """Ray starts its workers at nice 15 (its ``worker_niceness``) so that they never starve its own
    daemons; a worker that measures (an engine host, a client worker) must not yield the CPU to
    every other process. Back to 0 where allowed; returns the niceness it runs at."""

    try:
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
            nice = os.getpriority(os.PRIO_PROCESS, 0)
        return nice
    except (OSError, AttributeError):  # not allowed (an unprivileged user), or no such call here
        return os.nice(0) if hasattr(os, "nice") else 0


def nice_warning(names: list[str], nices: list[int], what: str) -> str | None:
    """A warning naming the workers still niced, and the fix; None when none is."""
    niced = [f"{n} (nice {v})" for n, v in zip(names, nices) if v > 0]
    if not niced:
        return None
    return (f"{what} {', '.join(niced)} run(s) at a raised niceness (Ray's worker_niceness) and could not lower it: "
            "they yield the CPU to every other process, and their timings show it. Start Ray with "
            "RAY_worker_niceness=0 in the environment of `ray start` (and of ttftui with --ray local)")


def run_with_controls(threads: list[threading.Thread], forward_controls: Callable[[threading.Event], None],
                      name: str) -> None:
    """Run ``threads`` to their end while ``forward_controls(done)`` passes the session's stop, skip
    and pause on to the Ray actors (until ``done`` is set, or it returns after a stop)."""
    done = threading.Event()
    ctl = threading.Thread(target=forward_controls, args=(done,), name=name, daemon=True)
    for th in threads:
        th.start()
    ctl.start()
    for th in threads:
        th.join()
    done.set()
    ctl.join()


def join_cluster(ray: Any, cc: Any) -> bool:
    """Join (or start) the Ray cluster ``cluster.ray`` names; True when this call started Ray here."""
    if ray.is_initialized():
        return False
    address = None if cc.ray == "local" else cc.ray

    # Ray's start-up needs real file descriptors behind sys.stdout/stderr; the dashboard has
    # replaced them (and owns the terminal): Ray gets /dev/null for the moment it starts
    saved = sys.stdout, sys.stderr
    with open(os.devnull, "w") as null:
        sys.stdout = sys.stderr = null
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"--ray {cc.ray}: cannot join the Ray cluster: {one_line(e)}") from None
        finally:
            sys.stdout, sys.stderr = saved
    return True


def alive_nodes(ray: Any) -> list[str]:
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "…") if len(text) > 300 else (text or type(e).__name__)


class Inbox:
    """The driver's side of one worker's stream of event batches: each event validated, placed on the
    session's time line (``shift_ns``), adapted (``adapt``: tag or renumber it; None drops it) and
    published, with the runs it started and has not ended kept, so that when the worker is lost
    (``lost``) those end failed and the loss is an event."""

    def __init__(self, what: str, worker: str, shift_ns: int, publish: Callable[[Any], None],
                 after: Callable[[Any], None], now_ns: Callable[[], int],
                 adapt: Callable[[Any], Any] = lambda ev: ev):
        self.what, self.worker, self.shift_ns = what, worker, shift_ns
        self.publish, self.after, self.now_ns, self.adapt = publish, after, now_ns, adapt
        self.open: dict[int, str] = {}  # run id -> scenario, started and not ended
        self.started = 0

    def take(self, ray: Any, gen: Any, on_result: Callable[[dict[str, Any]], bool]) -> None:
        """Every batch of ``gen`` (a Ray streaming generator) into the session; a dict item is the
        worker's own result, handed to ``on_result`` (True: the stream is over). Raises what the
        worker's loss raises."""
        for ref in gen:
            item = ray.get(ref)
            if isinstance(item, dict):
                if on_result(item):
                    return
                continue
            for line in item:
                ev = self.adapt(shift_time(event_from_json(line), self.shift_ns))
                if ev is None:
                    continue
                if isinstance(ev, RunStarted):
                    self.open[ev.run_id] = ev.scenario
                    self.started += 1
                self.publish(ev)
                if isinstance(ev, (RunFinished, RunFailed)):
                    self.open.pop(ev.run_id, None)
                    self.after(ev)

    def lost(self, e: BaseException, unsent: int) -> None:
        """The worker (or its node) is gone: its runs in flight fail, and ``WorkerLost`` says what
        was lost."""
        t = self.now_ns()
        why = one_line(e)
        for rid, scenario in sorted(self.open.items()):
            end = RunFailed(t_ns=t, run_id=rid, scenario=scenario, error=f"{self.what} {self.worker} lost: {why}")
            self.publish(end)
            self.after(end)
        self.publish(WorkerLost(t_ns=t, worker=self.worker, reason=why, lost_runs=tuple(sorted(self.open)),
                                unsent=unsent))


class Fleet:
    """The driver's side of a set of Ray actors: Ray joined (or started here), the actors placed
    node by node, their hellos (names, where each clock's zero lies on the wall clock, niceness)
    said as notices, and closing them."""

    what = "workers"  # in messages: "Ray client workers", "Ray engine hosts"

    def __init__(self, config: Any, now_ns: Callable[[], int], publish: Callable[[Any], None]):
        self.ray = ray_module()
        self.config, self.now_ns, self.publish = config, now_ns, publish
        self._started_ray = join_cluster(self.ray, config.cluster)
        self.nodes = alive_nodes(self.ray)
        self.actors: list[Any] = []
        self.names: list[str] = []
        self.shift: list[int] = []  # a worker's t_ns + its shift = the session's t_ns
        self.alive: list[bool] = []

    def on_node(self, node: str) -> Any:
        """Pinned to ``node``: Ray's SPREAD, and node affinity with soft=True, are best effort, and
        put both workers of a two-node cluster on one node."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy  # Ray

        return NodeAffinitySchedulingStrategy(node_id=node, soft=False)

    def greet(self, actors: list[Any], hello: Callable[[Any], Any], timeout_s: float,
              describe: Callable[[list[str]], str]) -> None:
        """Wait for every actor's hello; ``describe(hosts)`` is the notice that says who they are."""
        self.actors = actors
        try:
            hellos = self.ray.get([hello(a) for a in actors], timeout=timeout_s)
        except Exception as e:  # noqa: BLE001 - Ray's errors vary; one line says which
            raise ConfigError(f"--ray: the {self.what} did not start: {one_line(e)}") from None
        zero_wall = time.time_ns() - self.now_ns()
        self.names = [h["worker"] for h in hellos]
        self.shift = [h["zero_wall_ns"] - zero_wall for h in hellos]
        self.alive = [True] * len(actors)
        self.publish(Notice(t_ns=self.now_ns(), level="info", message=describe(sorted({h["host"] for h in hellos}))))
        if why := nice_warning(self.names, [int(h.get("nice", 0)) for h in hellos], f"Ray {self.what}"):
            self.publish(Notice(t_ns=self.now_ns(), level="warning", message=why))

    def live(self) -> list[int]:
        live = [i for i, ok in enumerate(self.alive) if ok]
        if not live:
            raise ConfigError(f"every Ray {self.what[:-1]} has been lost")
        return live

    def farewell(self, i: int) -> None:
        """What a live actor is told before it is killed (nothing, unless a subclass says)."""

    def close(self) -> None:
        for i, a in enumerate(self.actors):
            if self.alive[i]:
                self.farewell(i)
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._started_ray:
            self.ray.shutdown()
