"""Engine hosts on a Ray cluster: one per node (``--per-node``), or a models x settings matrix
spread over the nodes (``cluster.matrix``).

An engine host is a Ray actor pinned to its node. It runs the same unit this machine runs for a
local session (:class:`ttftui.run.session.SessionRunner` over an engine from
:func:`ttftui.measure.select.select_engine`: llama.cpp in a process of its own, with the node's own telemetry
sampler), and sends every event back as JSON lines every ``cluster.batch_ms``. Here they are
validated, given session-wide run ids, placed on the session's time line (the difference of the two
wall clocks; durations are the host's own and are never shifted) and published into the session's
one stream, tagged with the host (``worker`` = node:pid). So the recorder, reducer, dashboard,
report, replay and compare see an ordinary session whose runs come from several engines.

With ``--per-node`` every host runs every scenario with the same settings: a scenario's statistics
pool every node's raw samples, and the report has each host's own figures beside them. With a
matrix, each cell (one combination of settings) runs its scenarios as ``NAME@CELL`` on whichever
host is free next; a host keeps its engine loaded while the next unit has the same settings.

A host whose process or node dies is a ``WorkerLost`` event: its runs in flight end failed, the
runs it had not started are counted, the session goes on with the others (a matrix's remaining
cells go to the hosts still alive). An engine that fails to load, or crashes, on one host fails that
unit only: its message is an error notice (and the crash an ``EngineCrashed`` event) and the host
takes the next unit.

Ray starts its workers at nice 15 (``RAY_worker_niceness``), and on Linux niceness is per thread:
the thread that answers the driver's hello lowers its own (``unnice``), but a unit runs in another
thread, and the engine's own process would inherit that thread's 15, every llama.cpp thread with it.
So a unit's thread lowers its own too (the runner and the telemetry sampler start from it), and the
engine host is asked to run at nice 0 (it sets that itself before any thread of its own starts; where
it is not allowed to, it says so in a warning).
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from ttftui.analysis.load import planned_runs
from ttftui.cluster.common import (
    Fleet,
    Inbox,
    WorkerBody,
    one_line,
    ray_module,
    run_with_controls,
    unnice,
)
from ttftui.core.config import Config, cell_config, matrix_cells
from ttftui.core.errors import ConfigError, EngineCrash, TtftuiError
from ttftui.core.events import (
    EngineCrashed,
    EngineReady,
    EngineStalled,
    GpuDriverSamples,
    Notice,
    RunStarted,
    TelemetrySample,
    TelemetryStatus,
    shift_time,
)
from ttftui.measure.engine.base import Clock, RunError
from ttftui.measure.engine_process.proxy import hosted_in
from ttftui.measure.select import select_engine
from ttftui.run.session import Controls, SessionRunner

# events that say where they came from (``worker``) and those that belong to a run (``run_id``)
_TAGGED = (RunStarted, EngineReady, TelemetrySample, GpuDriverSamples, TelemetryStatus, EngineCrashed, EngineStalled)
ENGINE_NICE = 0  # what an engine host's engine process runs at (Ray's worker_niceness is for Ray's own work)


@dataclass(frozen=True)
class Unit:
    """What one engine host runs in one go: the scenarios of a matrix cell (``label``), or with
    ``--per-node`` every scenario (``label`` None) on the host ``pinned`` to."""

    label: str | None
    names: tuple[str, ...]
    pinned: int | None = None


class EngineHost(WorkerBody):
    """The body of a Ray engine host (wrapped into an actor by :func:`_actor_class`)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index
        self.clock = Clock()  # the host's own zero: every event it sends is on this clock
        self._controls: Any = None
        self._loaded: tuple[str, Any, dict[str, Any]] | None = None  # (config json, engine, prepared)
        self.name = f"host{index}"

    def hello(self) -> dict[str, Any]:
        return self._introduce(self.clock.now_ns())

    # controls, from the driver's forwarding thread (the actor is threaded)
    def set_paused(self, paused: bool) -> None:
        if self._controls is not None:
            (self._controls.paused.set if paused else self._controls.paused.clear)()

    def cancel(self) -> None:
        if self._controls is not None:
            self._controls.request_stop()

    def skip(self) -> None:
        if self._controls is not None:
            self._controls.skip_scenario.set()

    def _sink(self, offset_ns: int) -> Callable[[Any], None]:
        """Where the host's runner publishes: onto the host's clock, tagged, as JSON lines."""
        name = self.name

        def put(ev: Any) -> None:
            ev = shift_time(ev, offset_ns)
            if isinstance(ev, _TAGGED):
                ev = dataclasses.replace(ev, worker=name)
            elif isinstance(ev, Notice):
                ev = dataclasses.replace(ev, message=f"[{name}] {ev.message}")
            self._put(ev)

        return put

    def _close_loaded(self) -> None:
        if self._loaded is not None:
            _, engine, _ = self._loaded
            self._loaded = None
            try:
                engine.close()
            except Exception:  # noqa: BLE001 - closing a broken engine
                pass

    def run(self, config: dict[str, Any], names: list[str], batch_ms: float) -> Any:
        """A generator of event batches: ``names`` of ``config`` run on this host's engine (loaded
        now, or kept from the last unit when the settings are the same); the last item is
        ``{"failed": message or None, "cpu_s": .., "wall_s": ..}``."""
        cfg = Config.model_validate(config)
        key = cfg.model_dump_json(include={"model", "engine", "telemetry"})  # what the loaded engine depends on
        self._controls = controls = Controls()
        result: dict[str, Any] = {"failed": None}
        cpu0, wall0 = time.process_time(), time.perf_counter()

        def body() -> None:
            runner = None
            unnice()  # this thread, and those it starts (the runner's, the sampler's), at nice 0 where allowed
            try:
                if self._loaded is not None and self._loaded[0] != key:
                    self._close_loaded()  # another cell's settings: its engine goes first
                loaded = self._loaded is not None
                if not loaded:
                    with hosted_in(stop=controls.stop, nice=ENGINE_NICE):
                        self._loaded = (key, select_engine(cfg, pace=True)(), {})
                _, engine, prepared = self._loaded  # type: ignore[misc]
                offset = getattr(engine.clock, "t0_ns", self.clock.t0_ns) - self.clock.t0_ns
                runner = SessionRunner(cfg, lambda: engine, self._sink(offset), scenarios=names, controls=controls)
                runner.run_with_engine(engine, prepared, loaded=loaded)
            except TtftuiError as e:
                if isinstance(e, EngineCrash) and e.event is not None and runner is not None:
                    runner.publish(e.event)
                result["failed"] = str(e)
                self._close_loaded()
            except RunError as e:  # stopped, and the engine did not answer in time: killed, not failed
                if not controls.stop.is_set():
                    result["failed"] = str(e)
                self._close_loaded()
            except BaseException as e:  # noqa: BLE001 - reported to the driver with the last batch
                result["failed"] = f"{type(e).__name__}: {e}"
                self._close_loaded()

        yield from self._batches(body, batch_ms, "ttftui-engine-host")
        self._controls = None
        result.update(cpu_s=time.process_time() - cpu0, wall_s=time.perf_counter() - wall0)
        yield result

    def shutdown(self) -> None:
        self._close_loaded()


def _actor_class() -> Any:
    ray = ray_module()
    return ray.remote(max_concurrency=4)(EngineHost)


class RayEngineHosts(Fleet):
    """The driver's side: one engine host per alive node, and units of work handed to them."""

    what = "engine hosts"

    def __init__(self, runner: SessionRunner):
        super().__init__(runner.config, runner.clock.now_ns, runner.publish)
        self.clock, self.after, self.new_run_id = runner.clock, runner.run_ended, runner.plan.new_run_id
        if not self.nodes:
            raise ConfigError(f"--ray {self.config.cluster.ray}: the cluster has no alive node")
        cls = _actor_class()
        # no Ray resources taken (the host measures, it does not compete for Ray's CPUs), and the
        # node's GPUs stay visible to it: Ray only hides them when told to on zero GPUs
        env = {"env_vars": {"RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO": "0"}}
        actors = [cls.options(num_cpus=0, runtime_env=env, scheduling_strategy=self.on_node(node)).remote(i)
                  for i, node in enumerate(self.nodes)]
        what = "the matrix's cells" if self.config.cluster.matrix else "every scenario"
        self.greet(actors, lambda a: a.hello.remote(), 180,
                   lambda hosts: f"Ray: {len(actors)} engine host(s), one per node ({', '.join(hosts)}): "
                                 f"{', '.join(self.names)}; they run {what}")

    # ------------------------------------------------------------------ the plan
    def units_for(self, names: list[str]) -> list[Unit]:
        """The units that run ``names``: per node, every name on every live host; with a matrix,
        one unit per cell (in the matrix's order) holding that cell's names."""
        if not self.config.cluster.matrix:
            return [Unit(None, tuple(names), pinned=i) for i, ok in enumerate(self.alive) if ok]
        by: dict[str, list[str]] = {}
        for n in names:
            cell = self.config.scenario(n).cell
            if cell is not None:
                by.setdefault(cell, []).append(n)
        return [Unit(label, tuple(by[label])) for label, _ in matrix_cells(self.config.cluster.matrix) if label in by]

    def planned(self, unit: Unit) -> int:
        extra = 1 if self.config.run.warmup_policy == "largest_first" and unit.names else 0
        return sum(planned_runs(self.config, self.config.scenario(n)) for n in unit.names) + extra

    # ------------------------------------------------------------------ running
    def run(self, units: list[Unit], controls: Any) -> int:
        """Run the units (pinned ones on their host, the others on whichever host is free next);
        returns how many planned runs did not start (stopped, skipped, a failed unit's or a lost
        host's)."""
        shared: queue.SimpleQueue[Unit] = queue.SimpleQueue()
        pinned: dict[int, list[Unit]] = {}
        for u in units:
            if u.pinned is None:
                shared.put(u)
            else:
                pinned.setdefault(u.pinned, []).append(u)
        left = [0]
        lock = threading.Lock()
        live = self.live()
        for i, us in pinned.items():  # a lost host's pinned units cannot run anywhere else
            if not self.alive[i]:
                left[0] += sum(self.planned(u) for u in us)

        def host_loop(i: int) -> None:
            mine = list(pinned.get(i, []))
            while self.alive[i] and not controls.stop.is_set():
                if mine:
                    unit = mine.pop(0)
                else:
                    try:
                        unit = shared.get_nowait()
                    except queue.Empty:
                        return
                started = self._run_unit(i, unit)
                with lock:
                    left[0] += max(0, self.planned(unit) - started)
            with lock:  # pinned units this host never began (it was lost, or the session stopped)
                left[0] += sum(self.planned(u) for u in mine)

        def forward_controls(done: threading.Event) -> None:  # stop, skip and pause reach the hosts
            paused = False
            while not done.wait(0.05):
                targets = [self.actors[i] for i in live if self.alive[i]]
                if controls.stop.is_set():
                    for a in targets:
                        a.cancel.remote()
                    return
                if controls.skip_scenario.is_set():  # each host skips the scenario it is running
                    controls.skip_scenario.clear()
                    for a in targets:
                        a.skip.remote()
                if controls.paused.is_set() != paused:
                    paused = not paused
                    for a in targets:
                        a.set_paused.remote(paused)

        run_with_controls([threading.Thread(target=host_loop, args=(i,), name=f"ttftui-host-{i}", daemon=True)
                           for i in live], forward_controls, "ttftui-host-controls")
        while True:  # units no live host took (every host was lost or the session stopped)
            try:
                left[0] += self.planned(shared.get_nowait())
            except queue.Empty:
                break
        return left[0]

    def _run_unit(self, i: int, unit: Unit) -> int:
        """One unit on host ``i``: its events into the session's stream. Returns the runs started."""
        ray = self.ray
        cfg = cell_config(self.config, unit.label).model_dump(mode="json")
        gen = self.actors[i].run.options(num_returns="streaming").remote(cfg, list(unit.names),
                                                                        self.config.cluster.batch_ms)
        ids: dict[int, int] = {}  # the host's run id -> the session's
        name = self.names[i]

        def adapt(ev: Any) -> Any:  # tagged with the host, renumbered into the session's run ids
            if isinstance(ev, _TAGGED):
                ev = dataclasses.replace(ev, worker=name)
            rid = getattr(ev, "run_id", None)
            if rid is None:
                return ev
            if isinstance(ev, RunStarted):
                ids[rid] = self.new_run_id()
            elif rid not in ids:
                return None  # a run this host never started: nothing to attach it to
            return dataclasses.replace(ev, run_id=ids[rid])

        def result(item: dict[str, Any]) -> bool:
            cpu, wall = float(item.get("cpu_s", 0.0)), max(float(item.get("wall_s", 0.0)), 1e-9)
            what = f"cell {unit.label}" if unit.label else "its scenarios"
            if item.get("failed"):
                self.publish(Notice(t_ns=self.clock.now_ns(), level="warning",
                                    message=f"Ray engine host {name}: {what} failed: "
                                            f"{one_line(RuntimeError(item['failed']))}"))
            self.publish(Notice(t_ns=self.clock.now_ns(), level="info",
                                message=f"Ray engine host {name}: {what} done, the host process's CPU "
                                        f"{cpu:.2f} s over {wall:.1f} s (its engine's own process not included)"))
            return True

        inbox = Inbox("Ray engine host", name, self.shift[i], self.publish, self.after, self.clock.now_ns, adapt)
        try:
            inbox.take(ray, gen, result)
        except Exception as e:  # noqa: BLE001 - the host (or its node) is gone
            self.alive[i] = False
            inbox.lost(e, max(0, self.planned(unit) - len(ids)))
        return len(ids)

    def farewell(self, i: int) -> None:
        try:  # the engine it keeps loaded is closed before the actor goes
            self.ray.get(self.actors[i].shutdown.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - already gone
            pass
