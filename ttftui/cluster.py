"""Load from client workers on a Ray cluster (``--ray``, ``[cluster]``).

A load scenario's requests are split among ``cluster.workers`` Ray actors, spread over the
cluster's nodes. Each worker is the same unit a local load runs (ttftui.loadloop with the remote
engine's clients): it sends its share (a closed loop with its part of the concurrency, or an open
loop of rate R/N: N Poisson streams of R/N are one of R), stamps every time with its own monotonic
clock, and sends its events back every ``cluster.batch_ms`` as JSON lines (the recording format,
validated and made safe here like any input). This process publishes them into the session's one
event stream, so the recorder, reducer, dashboard, report, replay and compare stay as they are.

Clocks: durations are measured on one worker and never span two machines. To place a worker's
events on the session's time line, each worker reports the wall-clock time of its clock's zero when
it starts; the shift is the difference of the two wall clocks (as good as the machines' clock sync:
it moves events on the time line, never a duration).

A worker that dies (its process, or its node) is a ``WorkerLost`` event: the runs it had in flight
end failed, the requests it had not sent are counted, its completed runs stand, the others go on.
Without Ray installed, ``--ray`` is a one-line error naming the extra (``ttftui[ray]``).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any, Callable

from ttftui.config import Config, ScenarioConfig
from ttftui.errors import ConfigError
from ttftui.events import (Notice, RunFailed, RunFinished, RunStarted, WorkerLost, event_from_json, event_to_json,
                           shift_time)
from ttftui.load import LoadPlan, arrival_offsets_ns

NS_PER_S = 1_000_000_000


def _ray() -> Any:
    try:
        import ray
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
        import os
        import socket

        node = ""
        try:
            import ray

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


class ClientWorker(WorkerBody):
    """The body of a Ray client worker (wrapped into an actor by :func:`_actor_class`): a remote
    engine of its own that sends a share of a load phase and buffers its events as JSON lines."""

    def __init__(self, config: dict[str, Any], index: int):
        from ttftui.remote.engine import RemoteEngine

        super().__init__()
        self.config = Config.model_validate(config)
        self.engine = RemoteEngine(self.config)
        self.index = index
        self.stop = threading.Event()
        self.paused = threading.Event()

    def hello(self, kind: str, model_name: str, server_tokenizer: bool) -> dict[str, Any]:
        self.engine.kind, self.engine.model_name = kind, model_name
        self.engine.prompts_from_server_tokenizer = server_tokenizer
        return self._introduce(self.engine.clock.now_ns())

    def set_paused(self, paused: bool) -> None:
        (self.paused.set if paused else self.paused.clear)()

    def cancel(self) -> None:
        self.stop.set()

    def run(self, scenario: dict[str, Any], share: list[tuple[int, int, str, int]], warm: bool, mode: str,
            k: int, offsets_ns: list[int], max_in_flight: int, batch_ms: float) -> Any:
        """A generator of event batches: the share's requests (``(run_id, iteration, prompt,
        prompt_tokens)`` each) sent closed- or open-loop; the last item is ``{"unsent": n}``."""
        from ttftui.engine.base import PreparedScenario
        from ttftui.loadloop import LoadLoop
        from ttftui.session import execute_run

        eng = self.engine
        prep = PreparedScenario(ScenarioConfig.model_validate(scenario), prompt_text="", prompt_tokens=0)
        for rid, _it, text, n in share:
            eng._variants[(prep.scenario.name, eng._variant(rid))] = (text, n)

        def one(w: Any, i: int, due: int | None) -> None:
            rid, it, _text, n = share[i]
            p = dataclasses.replace(prep, prompt_tokens=n)
            end = execute_run(eng.clock, w.run, p, rid, it, warm, self._put, self.stop, worker=self.name,
                              **({} if due is None else {"due_ns": due}))
            self._put(end)

        result: dict[str, Any] = {}
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def body() -> None:
            loop = LoadLoop(eng.worker, one, stop=self.stop, paused=self.paused)
            try:
                result["unsent"] = loop.closed(len(share), k) if mode == "closed" else loop.open(offsets_ns,
                                                                                                  max_in_flight)
            except BaseException as e:  # noqa: BLE001 - reported to the driver with the batch
                result["error"] = f"{type(e).__name__}: {e}"

        yield from self._batches(body, batch_ms, "ttftui-worker-load")
        result.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0, n=len(share))
        yield result


def _actor_class() -> Any:
    ray = _ray()
    return ray.remote(max_concurrency=4)(ClientWorker)


class RayClients:
    """The driver's side: the actors, their clocks, and one load phase at a time."""

    def __init__(self, config: Config, engine: Any, publish: Callable[[Any], None], after: Callable[[Any], None]):
        ray = _ray()
        self.ray, self.config, self.engine, self.publish, self.after = ray, config, engine, publish, after
        cc = config.cluster
        self._started_ray = _join(ray, cc)
        cls = _actor_class()
        cfg = config.model_dump(mode="json")
        # round robin over the cluster's alive nodes: Ray's SPREAD, and node affinity with soft=True,
        # are best effort, and put both workers of a two-node cluster on one node (measured)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = _alive_nodes(ray)
        self.actors = [cls.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(
            node_id=nodes[i % len(nodes)], soft=False) if nodes else "SPREAD").remote(cfg, i)
            for i in range(cc.workers)]
        try:
            hellos = ray.get([a.hello.remote(engine.kind, engine.model_name, engine.tokenizer is not None)
                              for a in self.actors], timeout=120)
        except Exception as e:  # noqa: BLE001 - Ray's errors vary; one line says which
            raise ConfigError(f"--ray: the client workers did not start: {_one_line(e)}") from None
        zero_wall = time.time_ns() - engine.clock.now_ns()
        self.names = [h["worker"] for h in hellos]
        self.shift = [h["zero_wall_ns"] - zero_wall for h in hellos]  # worker t_ns + shift = session t_ns
        self.alive = [True] * len(self.actors)
        hosts = sorted({h["host"] for h in hellos})
        nodes = len({n.split(":")[0] for n in self.names})
        publish(Notice(t_ns=engine.clock.now_ns(), level="info",
                       message=f"Ray: {len(self.actors)} client workers on {nodes} node(s) ({', '.join(hosts)}): "
                               f"{', '.join(self.names)}"))
        if why := nice_warning(self.names, [int(h.get("nice", 0)) for h in hellos], "Ray client workers"):
            publish(Notice(t_ns=engine.clock.now_ns(), level="warning", message=why))

    def run_phase(self, prep: Any, plan: LoadPlan, first_run_id: int, first_iteration: int, warm: bool,
                  controls: Any, seed: int) -> int:
        """One phase (warm-up or counted) of a load scenario, split among the live workers.
        Returns how many requests were not sent (stopped, skipped, or a lost worker's)."""
        ray = self.ray
        live = [i for i, ok in enumerate(self.alive) if ok]
        if not live:
            raise ConfigError("every Ray client worker has been lost")
        n = plan.n_warmup if warm else plan.n_counted
        s: ScenarioConfig = prep.scenario
        shares: list[list[tuple[int, int, str, int]]] = [[] for _ in live]
        for j in range(n):  # round robin, so every worker has early and late requests
            rid = first_run_id + j
            text, n_tok = self.engine._prompt(s, self.engine._variant(rid))
            shares[j % len(live)].append((rid, first_iteration + j, text, n_tok))
        conc = split(plan.concurrency or 1, len(live))
        gens = []
        for w, (i, share) in enumerate(zip(live, shares)):
            offsets: list[int] = []
            if plan.mode == "open":
                part = dataclasses.replace(plan, rate=(plan.rate or 1.0) / len(live))
                if plan.arrival == "constant":  # interleaved: worker w starts w/R later
                    offsets = [round(w * NS_PER_S / (plan.rate or 1.0)) + o
                               for o in arrival_offsets_ns(part, len(share), seed, s.name)]
                else:
                    offsets = arrival_offsets_ns(part, len(share), seed * 1000 + w, s.name)
            gens.append((i, len(share), self.actors[i].run.options(num_returns="streaming").remote(
                s.model_dump(mode="json"), share, warm, plan.mode, max(conc[w], 1), offsets,
                max(1, math.ceil(plan.max_in_flight / len(live))), self.config.cluster.batch_ms)))
        unsent = [0]
        lock = threading.Lock()

        def consume(i: int, n_share: int, gen: Any) -> None:
            started: set[int] = set()
            ended: set[int] = set()
            try:
                for ref in gen:
                    item = ray.get(ref)
                    if isinstance(item, dict):
                        if "error" in item:
                            raise RuntimeError(item["error"])
                        with lock:
                            unsent[0] += int(item.get("unsent", 0))
                        cpu, wall = float(item.get("cpu_s", 0.0)), max(float(item.get("wall_s", 0.0)), 1e-9)
                        self.publish(Notice(t_ns=self.engine.clock.now_ns(), level="info",
                                            message=f"Ray worker {self.names[i]}: {s.name} {'warm-up' if warm else 'counted'}"
                                                    f" phase, {item.get('n', 0)} requests, its process's CPU {cpu:.3f} s "
                                                    f"over {wall:.2f} s ({cpu / wall * 100:.1f} % of a core)"))
                        continue
                    for line in item:
                        ev = event_from_json(line)
                        ev = shift_time(ev, self.shift[i])
                        if isinstance(ev, RunStarted):
                            started.add(ev.run_id)
                        elif isinstance(ev, (RunFinished, RunFailed)):
                            ended.add(ev.run_id)
                        self.publish(ev)
                        if isinstance(ev, (RunFinished, RunFailed)):
                            self.after(ev)
            except Exception as e:  # noqa: BLE001 - the worker (or its node) is gone
                self.alive[i] = False
                lost = sorted(started - ended)
                t = self.engine.clock.now_ns()
                why = _one_line(e)
                for rid in lost:
                    end = RunFailed(t_ns=t, run_id=rid, scenario=s.name, error=f"Ray worker {self.names[i]} lost: {why}")
                    self.publish(end)
                    self.after(end)
                with lock:
                    unsent[0] += n_share - len(started)
                self.publish(WorkerLost(t_ns=t, worker=self.names[i], reason=why, lost_runs=tuple(lost),
                                        unsent=n_share - len(started)))

        def forward_controls(done: threading.Event) -> None:  # stop, skip and pause reach the workers
            paused = False
            while not done.wait(0.05):
                if controls.stop.is_set() or controls.skip_scenario.is_set():
                    for i in live:
                        if self.alive[i]:
                            self.actors[i].cancel.remote()
                    return
                if controls.paused.is_set() != paused:
                    paused = not paused
                    for i in live:
                        if self.alive[i]:
                            self.actors[i].set_paused.remote(paused)

        run_with_controls([threading.Thread(target=consume, args=g, name=f"ttftui-ray-{g[0]}", daemon=True)
                           for g in gens], forward_controls, "ttftui-ray-controls")
        return unsent[0]

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        if self._started_ray:
            self.ray.shutdown()


def unnice() -> int:
    """Ray starts its workers at nice 15 (its ``worker_niceness``) so that they never starve its own
    daemons; a worker that measures (an engine host, a client worker) must not yield the CPU to
    every other process. Back to 0 where allowed; returns the niceness it runs at."""
    import os

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


def _join(ray: Any, cc: Any) -> bool:
    """Join (or start) the Ray cluster ``cluster.ray`` names; True when this call started Ray here."""
    if ray.is_initialized():
        return False
    address = None if cc.ray == "local" else cc.ray
    import os
    import sys

    # Ray's start-up needs real file descriptors behind sys.stdout/stderr; the dashboard has
    # replaced them (and owns the terminal): Ray gets /dev/null for the moment it starts
    saved = sys.stdout, sys.stderr
    with open(os.devnull, "w") as null:
        sys.stdout = sys.stderr = null
        try:
            ray.init(address=address, include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                     configure_logging=True)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ConfigError(f"--ray {cc.ray}: cannot join the Ray cluster: {_one_line(e)}") from None
        finally:
            sys.stdout, sys.stderr = saved
    return True


def _alive_nodes(ray: Any) -> list[str]:
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return (text[:300] + "…") if len(text) > 300 else (text or type(e).__name__)
