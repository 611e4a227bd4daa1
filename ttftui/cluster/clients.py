"""Load from client workers on a Ray cluster (``--ray``, ``[cluster]``).

A load scenario's requests are split among ``cluster.workers`` Ray actors, spread over the
cluster's nodes. Each worker is the same unit a local load runs (ttftui.run.loadloop with the remote
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
from typing import Any

from ttftui.analysis.load import LoadPlan, arrival_offsets_ns
from ttftui.cluster.common import (
    Fleet,
    Inbox,
    WorkerBody,
    ray_module,
    run_with_controls,
    split,
)
from ttftui.core.config import Config, ScenarioConfig
from ttftui.core.events import (
    Notice,
)
from ttftui.measure.engine.base import PreparedScenario
from ttftui.measure.remote.engine import RemoteEngine
from ttftui.run.loadloop import LoadLoop
from ttftui.run.session import execute_run

NS_PER_S = 1_000_000_000


class ClientWorker(WorkerBody):
    """The body of a Ray client worker (wrapped into an actor by :func:`_actor_class`): a remote
    engine of its own that sends a share of a load phase and buffers its events as JSON lines."""

    def __init__(self, config: dict[str, Any], index: int):
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

        eng = self.engine
        prep = PreparedScenario(ScenarioConfig.model_validate(scenario), prompt_text="", prompt_tokens=0)
        for rid, _it, text, n in share:
            eng.use_prompt(prep.scenario, rid, text, n)

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
    ray = ray_module()
    return ray.remote(max_concurrency=4)(ClientWorker)


class RayClients(Fleet):
    """The driver's side: the actors, their clocks, and one load phase at a time."""

    what = "client workers"

    def __init__(self, runner: Any, engine: Any):
        super().__init__(runner.config, engine.clock.now_ns, runner.publish)
        self.engine, self.runner, self.after = engine, runner, runner.run_ended
        cls = _actor_class()
        cfg = self.config.model_dump(mode="json", context={"credentials": True})  # the URL's user:password too
        nodes = self.nodes  # round robin over the cluster's alive nodes
        actors = [cls.options(num_cpus=0, scheduling_strategy=self.on_node(nodes[i % len(nodes)]) if nodes
                              else "SPREAD").remote(cfg, i) for i in range(self.config.cluster.workers)]
        self.greet(actors, lambda a: a.hello.remote(engine.kind, engine.model_name, engine.tokenizer is not None), 120,
                   lambda hosts: f"Ray: {len(actors)} client workers on {len({n.split(':')[0] for n in self.names})} "
                                 f"node(s) ({', '.join(hosts)}): {', '.join(self.names)}")

    def run_phase(self, prep: Any, plan: LoadPlan, n: int, warm: bool) -> int:
        """One phase (warm-up or counted) of a load scenario, split among the live workers.
        Returns how many requests were not sent (stopped, skipped, or a lost worker's)."""
        ray = self.ray
        live = self.live()
        s: ScenarioConfig = prep.scenario
        controls = self.runner.controls
        seed = self.config.run.seed + (1 if warm else 0)
        first_run_id, first_iteration = self.runner.plan.reserve(s.name, n)
        shares: list[list[tuple[int, int, str, int]]] = [[] for _ in live]
        for j in range(n):  # round robin, so every worker has early and late requests
            rid = first_run_id + j
            text, n_tok = self.engine.prompt_for_run(s, rid)
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
            inbox = Inbox("Ray worker", self.names[i], self.shift[i], self.publish, self.after, self.engine.clock.now_ns)

            def result(item: dict[str, Any]) -> bool:
                if "error" in item:
                    raise RuntimeError(item["error"])
                with lock:
                    unsent[0] += int(item.get("unsent", 0))
                cpu, wall = float(item.get("cpu_s", 0.0)), max(float(item.get("wall_s", 0.0)), 1e-9)
                self.publish(Notice(t_ns=self.engine.clock.now_ns(), level="info",
                                    message=f"Ray worker {self.names[i]}: {s.name} {'warm-up' if warm else 'counted'}"
                                            f" phase, {item.get('n', 0)} requests, its process's CPU {cpu:.3f} s "
                                            f"over {wall:.2f} s ({cpu / wall * 100:.1f} % of a core)"))
                return False

            try:
                inbox.take(ray, gen, result)
            except Exception as e:  # noqa: BLE001 - the worker (or its node) is gone
                self.alive[i] = False
                with lock:
                    unsent[0] += n_share - inbox.started
                inbox.lost(e, n_share - inbox.started)

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



