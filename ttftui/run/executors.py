"""How a session's runs are carried out: the executors a front end gives the session runner.

- A **load executor** sends one phase (warm-up or counted) of a load scenario's overlapping
  requests. The default, :class:`LocalLoad`, sends them from this process (a closed or open loop of
  :mod:`ttftui.run.loadloop` over the engine's workers); Ray client workers are another
  (:mod:`ttftui.cluster.clients`).
- A **hosts executor** runs the whole plan on engines elsewhere and feeds their events back (Ray
  engine hosts, :mod:`ttftui.cluster.engine_hosts`); without one, the runner loads its own engine.

The runner knows only these protocols; which executors a configuration asks for is the front end's
choice (:func:`ttftui.cluster.executors.executors_for`), so this layer never imports Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from ttftui.analysis.load import LoadPlan, arrival_offsets_ns
from ttftui.core.config import Config
from ttftui.core.events import Event
from ttftui.measure.engine.base import Engine, PreparedScenario
from ttftui.run.loadloop import LoadLoop
from ttftui.run.plan import Plan


class Runner(Protocol):
    """What executors may use of the session runner (:class:`ttftui.run.session.SessionRunner`)."""

    config: Config
    controls: Any  # ttftui.run.session.Controls
    plan: Plan
    clock: Any

    def publish(self, event: Event) -> None: ...

    def one_run(self, clock: Any, run: Callable[..., Any], prep: PreparedScenario, warm: bool, **kw: Any) -> None:
        """Start, run and end one run, with the next run id."""

    def run_ended(self, end: Any) -> None:
        """A run's end event, published by the executor: the after-run hook sees it."""


class LoadExecutor(Protocol):
    def run_phase(self, prep: PreparedScenario, plan: LoadPlan, n: int, warm: bool) -> int:
        """Send ``n`` requests of one phase of ``prep``'s load plan; returns how many were not sent
        (stopped, skipped, or a lost worker's)."""

    def close(self) -> None: ...

    # optional: ``run_conversations(turns, plan, n_each, warm) -> int`` (conversations under load,
    # :meth:`LocalLoad.run_conversations`); an executor without it cannot hold conversations


class HostsExecutor(Protocol):
    """Runs scenarios on engines elsewhere; each unit is what one engine runs in one go."""

    def units_for(self, names: list[str]) -> Sequence[Any]: ...

    def planned(self, unit: Any) -> int: ...

    def run(self, units: Sequence[Any], controls: Any) -> int:
        """Run the units; returns how many planned runs did not start."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class Executors:
    """``load(runner, engine)`` makes the load executor (default :class:`LocalLoad`) when the first
    load phase starts; ``hosts(runner)``, when given, runs the session on engine hosts."""

    load: Callable[[Runner, Engine], LoadExecutor] | None = None
    hosts: Callable[[Runner], HostsExecutor] | None = None
    hosts_name: str = ""  # what the hosts are, for the error when a configuration needs them and none is given


class LocalLoad:
    """A load phase sent from this process: ``concurrency`` workers, each sending its next request
    when its last one has ended (closed loop), or requests due on their schedule (Poisson or
    constant gaps) whether or not earlier ones have ended, by up to ``max_in_flight`` workers (open
    loop; a request that finds them all busy waits, and its lateness is in its result)."""

    def __init__(self, runner: Runner, engine: Engine):
        self.runner, self.engine = runner, engine

    def run_phase(self, prep: PreparedScenario, plan: LoadPlan, n: int, warm: bool) -> int:
        r, engine = self.runner, self.engine
        # a trace, a prompts file, a length distribution: request i of the phase sends its own i-th prompt
        own = engine.prepare_requests(prep, n, warm) if prep.scenario.per_request else None

        def one(w: Any, i: int, due: int | None) -> None:
            p = own[i] if own is not None else prep
            r.one_run(engine.clock, w.run, p, warm, **({} if due is None else {"due_ns": due}))

        c = r.controls
        loop = LoadLoop(engine.worker, one, stop=c.stop, paused=c.paused, skip=c.skip_scenario)
        if plan.mode == "closed":
            return loop.closed(n, plan.concurrency or 1)
        offsets = arrival_offsets_ns(plan, n, r.config.run.seed + (1 if warm else 0), prep.scenario.name)
        return loop.open(offsets, plan.max_in_flight)

    def run_conversations(self, turns: Sequence[PreparedScenario], plan: LoadPlan, n_each: int, warm: bool) -> int:
        """One phase of a conversation under load: ``plan.concurrency`` users at once, each a worker
        of its own holding ``n_each`` conversations (every turn of ``turns`` in order, ``think_ms``
        between turns); each request is a run of the turn it sends. The users' texts are cut before
        the phase. Returns how many turns were not sent."""
        r, engine = self.runner, self.engine
        users = plan.concurrency or 1
        cut = getattr(engine, "prepare_conversations", None)
        if cut is not None:  # untimed, before any request: nothing but the requests while it is measured
            cut(turns, users, n_each)

        def one(w: Any, u: int, t: int) -> None:
            r.one_run(engine.clock, w.run, turns[t], warm)

        c = r.controls
        loop = LoadLoop(engine.worker, lambda w, i, due: None, stop=c.stop, paused=c.paused, skip=c.skip_scenario)
        return loop.users(lambda u: engine.worker(user=u), users, n_each, len(turns),  # type: ignore[call-arg]
                          one, think_s=plan.think_ms / 1000)

    def close(self) -> None:
        pass
