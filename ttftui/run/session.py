"""Runs a profiling session: load once, prepare every scenario, then run them, publishing events.

The runner is the only producer of engine events. It runs in a worker thread in both front ends
(headless and dashboard) and talks to them only through :class:`EventBus`; the consumers decide what
to do with each event (fold, record, draw). Controls (stop, pause, skip, re-run) are flags checked
between runs and between tokens, so a quit never waits for more than one token.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
import platform
import queue
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from ttftui import __version__
from ttftui.analysis.load import LoadPlan, plan_for
from ttftui.core.config import Config
from ttftui.core.errors import ConfigError, EngineCrash, TtftuiError, UnknownScenario
from ttftui.core.events import (
    EngineReady,
    Event,
    Notice,
    RunFailed,
    RunStarted,
    SessionFinished,
    SessionStarted,
    TelemetryStatus,
)
from ttftui.core.textsafe import clean_event
from ttftui.measure.engine.base import Clock, Engine, PreparedScenario, RunError, RunStopped
from ttftui.measure.engine.synthetic import VirtualClock
from ttftui.measure.engine_process.proxy import hosted_in
from ttftui.measure.telemetry import GPU_FIELDS, HOST_FIELDS, TelemetrySampler
from ttftui.run.executors import Executors, HostsExecutor, LoadExecutor, LocalLoad
from ttftui.run.plan import Plan

SYNTHETIC_NOTICE = "SYNTHETIC timings, not measured"  # a synthetic session's notice (the dashboard's status bar says it too)


class EventBus:
    """Thread-safe hand-off from producers to one consumer loop. ``publish`` is O(1) and never
    blocks, so a producer's timing is not disturbed by how slowly a consumer draws."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[Event] = queue.SimpleQueue()

    def publish(self, event: Event) -> None:
        self._q.put(event)

    def drain(self, timeout: float | None = 0.0, limit: int = 1_000_000) -> list[Event]:
        """Everything queued now; waits up to ``timeout`` seconds for the first event."""
        out: list[Event] = []
        try:
            if timeout:
                out.append(self._q.get(timeout=timeout))
            while len(out) < limit:
                out.append(self._q.get_nowait())
        except queue.Empty:
            pass
        return out


@dataclass
class Controls:
    """Flags the front end sets and the runner reads between runs (or between tokens for stop)."""

    stop: threading.Event = field(default_factory=threading.Event)
    stop_status: str = "interrupted"  # what SessionFinished says when stop is set
    paused: threading.Event = field(default_factory=threading.Event)
    skip_scenario: threading.Event = field(default_factory=threading.Event)
    requests: "queue.SimpleQueue[str]" = field(default_factory=queue.SimpleQueue)  # re-run a scenario
    keep_alive: bool = False  # dashboard: stay open for re-runs after the plan is done
    between_runs_s: float = 0.0  # dashboard: a pause outside the timed region, so it draws while idle

    def request_stop(self, status: str = "interrupted") -> None:
        self.stop_status = status
        self.stop.set()
        self.paused.clear()


def execute_run(clock: Any, run: Callable[..., Any], prep: PreparedScenario, rid: int, iteration: int, warm: bool,
                publish: Callable[[Event], None], stop: threading.Event, worker: str | None = None,
                **kw: Any) -> Any:
    """Publish a run's start, run it, and return its end (``RunFinished``, or ``RunFailed`` when it
    was stopped before its first token or failed); the caller publishes the end. An engine failure
    that ends the session publishes the run's failure and is raised."""
    s = prep.scenario
    publish(RunStarted(t_ns=clock.now_ns(), run_id=rid, scenario=s.name, iteration=iteration, warmup=warm,
                       prompt_tokens=prep.prompt_tokens, max_tokens=s.max_tokens, worker=worker))
    try:
        return run(prep, rid, warm, publish, stop, **kw)
    except RunStopped:
        return RunFailed(t_ns=clock.now_ns(), run_id=rid, scenario=s.name, error="stopped before the first token")
    except RunError as e:  # this run failed; the session goes on
        return RunFailed(t_ns=clock.now_ns(), run_id=rid, scenario=s.name, error=str(e))
    except TtftuiError as e:
        publish(RunFailed(t_ns=clock.now_ns(), run_id=rid, scenario=s.name, error=str(e)))
        raise


def select_scenarios(config: Config, names: Iterable[str] | None) -> list[str]:
    """Scenario names to run, in the order given (or config order, its optional scenarios left out);
    unknown names are an error."""
    known = [s.name for s in config.scenarios]
    if not names:
        return [s.name for s in config.scenarios if not s.optional]
    chosen: list[str] = []
    for n in names:
        # a swept scenario's own name selects every scenario it was expanded into
        # (and a matrix scenario's name without its cell, every cell's)
        group = [s.name for s in config.scenarios
                 if n in (s.name, s.sweep, s.load, s.name.removesuffix(f"@{s.cell}") if s.cell else None)
                 or (s.conversation and n == s.conversation.rsplit("@", 1)[0])]
        # a conversation's turn needs the turns before it: choosing one chooses its whole conversation
        convs = {config.scenario(g).conversation for g in group} - {None}
        group += [s.name for s in config.scenarios if s.conversation in convs and s.name not in group]
        # a scenario chosen with engine.profile_ops brings its profiled twin
        group += [f"{g}@ops" for g in list(group) if f"{g}@ops" in known and f"{g}@ops" not in group]
        if not group:
            raise UnknownScenario(f"unknown scenario {n!r} (this config defines: {', '.join(_shown(config))})")
        chosen.extend(g for g in group if g not in chosen)
    return chosen


def without_unchosen_optional(config: Config, names: Iterable[str] | None) -> Config:
    """The config without the optional scenarios that ``names`` (``--scenario``) does not choose, so
    that a plain session's config, recording and report are what they were before it had any: load
    options do not apply to them, and nothing lists them."""
    if not any(s.optional for s in config.scenarios):
        return config
    chosen = set(select_scenarios(config, names)) if names else set()
    kept = [s for s in config.scenarios if not s.optional or s.name in chosen]
    return config.model_copy(update={"scenarios": kept})


def _shown(config: Config) -> list[str]:
    """The scenario names an error lists: a conversation's turns as one entry, ``chat@keep@t1..t3``."""
    out: list[str] = []
    for s in config.scenarios:
        if s.conversation is None:
            out.append(s.name)
        elif s.turn == 1:
            out.append(f"{s.name}..t{s.turns}" if (s.turns or 1) > 1 else s.name)
    return out


def host_facts() -> dict[str, Any]:
    return {
        "hostname": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
    }


AfterRun = Callable[[Event], None]


class SessionRunner:
    """One session: its engine loaded once (or engine hosts elsewhere), every scenario prepared, then
    run as the plan says, each event published. Runs in a worker thread of either front end."""

    def __init__(
        self,
        config: Config,
        engine_factory: Callable[[], Engine],
        publish: Callable[[Event], None],
        *,
        scenarios: list[str] | None = None,
        controls: Controls | None = None,
        after_run: AfterRun | None = None,
        executors: Executors | None = None,
    ):
        self.config = config
        self.engine_factory = engine_factory
        # Every event of a live session leaves through here: names from a GGUF file, llama.cpp's
        # messages and exception texts are made safe to draw once, for every consumer.
        self.publish = lambda ev: publish(clean_event(ev))
        self.plan = Plan(config, select_scenarios(config, scenarios))
        self.controls = controls or Controls()
        self.after_run = after_run  # e.g. the alert evaluator; called with each run's end event
        self.executors = executors or Executors()
        self.engine: Engine | None = None
        self.clock: Any = None  # the session's clock: the engine's, or this process's with engine hosts
        self.sampler: Any = None
        self.error: BaseException | None = None
        self._load: LoadExecutor | None = None  # made when the first load phase starts
        self._lock = threading.Lock()  # after_run, when requests overlap (load)
        self.idle = False  # keep-alive session with nothing to do: the plan and every request are done

    @property
    def names(self) -> list[str]:
        return self.plan.names

    @property
    def planned_runs(self) -> int:
        """Runs this session will have made when it is idle again; front ends show "run k/planned_runs"."""
        return self.plan.planned

    def run(self) -> None:
        """Whole session. Exceptions are kept in ``self.error`` (and reported as events)."""
        c = self.controls
        engine = None
        clock: Any = None
        status, message = "completed", None
        hosts: HostsExecutor | None = None
        try:
            if self.config.engine_hosts:  # engines elsewhere run it; this process only gathers events
                if self.executors.hosts is None:
                    raise ConfigError(f"this configuration runs on {self.executors.hosts_name or 'engine hosts'}, "
                                      "and this front end was given none")
                clock = self.clock = Clock()
                self._session_started(clock)
                hosts = self.executors.hosts(self)
                self._run_on_hosts(hosts)
            else:
                with hosted_in(stop=c.stop):  # an engine host that hangs while starting still ends on a stop
                    engine = self.engine = self.engine_factory()
                clock = self.clock = engine.clock
                self._session_started(clock)
                self._attach(engine)
                self.open_engine(engine)
                self.run_plan(engine)
            if c.stop.is_set():
                status = c.stop_status
        except TtftuiError as e:
            self.error = e
            status, message = "failed", str(e)
            if isinstance(e, EngineCrash) and e.event is not None:
                self.publish(e.event)  # where it died, by what, and the engine's last words
        except RunError as e:
            if c.stop.is_set():  # the engine did not answer the stop in time (loading, preparing) and was killed
                status = c.stop_status
                self.publish(Notice(t_ns=clock.now_ns() if clock is not None else 0, level="warning", message=str(e)))
            else:
                self.error = e
                status, message = "failed", f"{type(e).__name__}: {e}"
        except BaseException as e:  # noqa: BLE001 - reported, then re-raised by the front end
            self.error = e
            status, message = "failed", f"{type(e).__name__}: {e}"
        finally:
            for ex in (self._load, hosts):
                if ex is not None:
                    ex.close()
            self.stop_telemetry()
            t = clock.now_ns() if clock is not None else 0
            if message:
                self.publish(Notice(t_ns=t, level="error", message=message))
            self.publish(SessionFinished(t_ns=t, status=status, message=message))  # type: ignore[arg-type]
            if engine is not None:
                engine.close()

    def _session_started(self, clock: Any) -> None:
        self.publish(SessionStarted(
            t_ns=clock.now_ns(), session_id=uuid.uuid4().hex[:12],
            started_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            ttftui_version=__version__, config=self.config.model_dump(mode="json"), host=host_facts(),
        ))

    def _attach(self, engine: Engine) -> None:
        """An engine host reports to this session what it has to say outside a run (a stall) and is
        killed when a stop is not answered in time (``HostedEngine.attach``)."""
        attach = getattr(engine, "attach", None)
        if attach is not None:
            attach(self.publish, self.controls.stop)

    def open_engine(self, engine: Engine) -> None:
        """Load the model (telemetry readings around it), publish ``EngineReady``, start sampling.
        The caller stops the sampler (:meth:`stop_telemetry`) and closes the engine."""
        self.engine = engine
        clock = engine.clock
        sampler = self._new_sampler(engine)
        if sampler is not None:
            self.publish(sampler.sample("before_load"))
        loaded = engine.load()
        self.publish(EngineReady(
            t_ns=clock.now_ns(), engine=engine.name, synthetic=engine.synthetic,  # type: ignore[arg-type]
            synthetic_reason=engine.synthetic_reason, load_ms=loaded.load_ms, model=loaded.model,
            device=loaded.device, engine_version=loaded.engine_version,
            host=engine.host, host_pid=engine.pid,  # type: ignore[arg-type]
            diffusion=loaded.diffusion,
        ))
        if sampler is not None:
            self.publish(sampler.sample("after_load"))
            sampler.start()
        if engine.synthetic:
            self.publish(Notice(t_ns=clock.now_ns(), level="warning",
                                message=f"{SYNTHETIC_NOTICE}: {engine.synthetic_reason}"))

    def run_with_engine(self, engine: Engine, prepared: dict[str, PreparedScenario], *, loaded: bool) -> None:
        """The plan on an engine this runner does not own (an engine host keeps one loaded from unit
        to unit): loaded first unless ``loaded``, sampled while it runs. The caller closes it."""
        self._attach(engine)
        try:
            if loaded:
                self.engine = engine
                sampler = self._new_sampler(engine)
                if sampler is not None:
                    sampler.start()
            else:
                self.open_engine(engine)
            self.run_plan(engine, prepared)
        finally:
            self.stop_telemetry()

    def stop_telemetry(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None

    def run_plan(self, engine: Engine, prepared: dict[str, PreparedScenario] | None = None) -> None:
        """Every selected scenario in the plan's order (after the largest-first warm-up, if asked
        for), then, for a keep-alive session, the re-runs asked for until stopped. ``prepared``
        (filled in here) lets a later call reuse the prompts built before."""
        c, plan = self.controls, self.plan
        prepared = {} if prepared is None else prepared
        for n in plan.names:
            if n not in prepared:
                prepared[n] = engine.prepare(self.config.scenario(n), self.config.run.seed)
        largest = plan.largest(prepared)
        if largest is not None and not c.stop.is_set():
            plan.add(1)
            self._run_scenario(engine, largest, runs=1, all_warmup=True)
        rounds, in_order = plan.rounds()
        if rounds:
            self._run_interleaved(engine, [prepared[n] for n in rounds])
        done: set[str] = set()
        for name in in_order:
            if c.stop.is_set():
                break
            turns = plan.conversation(name)
            if turns:  # a conversation: all its turns, in order, conversation after conversation
                if turns[0] not in done:
                    done.add(turns[0])
                    self._run_conversation(engine, [prepared[n] for n in turns])
                continue
            self._run_scenario(engine, prepared[name])
        for name in self._rerun_requests():
            turns = plan.conversation(name) or [name]
            for n in turns:
                if n not in prepared:
                    prepared[n] = engine.prepare(self.config.scenario(n), self.config.run.seed)
            plan.add(sum(plan.runs_of(n) for n in turns))
            if len(turns) > 1 or self.config.scenario(name).conversation:
                self._run_conversation(engine, [prepared[n] for n in turns])
            else:
                self._run_scenario(engine, prepared[name])

    def _run_on_hosts(self, hosts: HostsExecutor) -> None:
        """Engine hosts run the plan's scenarios, then each re-run asked for, the same way."""
        self.plan.set_planned(0)  # the hosts' units say it: one per node, or one per cell
        for names in itertools.chain([self.plan.names], ([n] for n in self._rerun_requests())):
            units = hosts.units_for(names)
            self.plan.add(sum(hosts.planned(u) for u in units))
            self.plan.drop(hosts.run(units, self.controls))

    def _rerun_requests(self) -> Iterable[str]:
        """A keep-alive session's re-run requests, one scenario name at a time, until it is stopped;
        ``idle`` says whether it is waiting for one."""
        c = self.controls
        while c.keep_alive and not c.stop.is_set():
            try:
                name = c.requests.get(timeout=0.1)
            except queue.Empty:
                self.idle = True
                continue
            self.idle = False
            yield name

    def _new_sampler(self, engine: Engine) -> Any:
        """The telemetry sampler on the engine's clock, or None (with the reason published) when time
        is virtual: an unpaced synthetic session has no real time to sample."""
        tc = self.config.telemetry
        if isinstance(engine.clock, VirtualClock):
            why = "synthetic engine on a virtual clock: no real time to sample"
            self.publish(TelemetryStatus(t_ns=engine.clock.now_ns(), backend="none", gpu_name=None,
                                         interval_ms=tc.interval_ms,
                                         unavailable={f: why for f in (*GPU_FIELDS, *HOST_FIELDS)}))
            return None
        self.sampler = TelemetrySampler(self.publish, engine.clock.now_ns, backend=tc.backend,
                                        interval_ms=tc.interval_ms, gpu_index=tc.gpu_index, pid=engine.pid)
        return self.sampler

    def _run_scenario(self, engine: Engine, prep: PreparedScenario, *, runs: int | None = None,
                      all_warmup: bool = False) -> None:
        c = self.controls
        s = prep.scenario
        c.skip_scenario.clear()
        load = plan_for(self.config.run, s) if runs is None else None
        if load is not None:
            self._run_load(engine, prep, load)
            return
        total = self.config.run.warmup + self.config.run.iterations if runs is None else runs
        for k in range(total):
            if not self._between_runs():
                break
            if c.skip_scenario.is_set():
                self.plan.drop(total - k)  # the runs the skip left out
                break
            self.one_run(engine.clock, engine.run, prep, all_warmup or k < self.config.run.warmup)

    def _run_conversation(self, engine: Engine, turns: list[PreparedScenario]) -> None:
        """A conversation's turns in order, run.warmup conversations (warm-up) then run.iterations. A
        skip leaves out the rest of the conversation and the ones after it."""
        c = self.controls
        rc = self.config.run
        c.skip_scenario.clear()
        load = plan_for(rc, turns[0].scenario)
        if load is not None:
            self._run_conversation_load(engine, turns, load)
            return
        total = rc.warmup + rc.iterations
        for k in range(total):
            for j, prep in enumerate(turns):
                if not self._between_runs():
                    return
                if c.skip_scenario.is_set():
                    self.plan.drop((total - k) * len(turns) - j)  # the turns the skip left out
                    return
                self.one_run(engine.clock, engine.run, prep, k < rc.warmup)

    def _between_runs(self) -> bool:
        """Wait while paused, then the untimed pause before every run but the session's first;
        False when the session is stopped meanwhile."""
        c = self.controls
        while c.paused.is_set() and not c.stop.is_set():
            c.stop.wait(0.05)
        if c.stop.is_set():
            return False
        gap = max(c.between_runs_s, self.config.run.pause_ms / 1000)
        if self.plan.started and gap:  # before every run but the session's first, scenarios included
            # Not timed: the run has not started. Waited in slices, so that a process stopped in
            # the pause (Ctrl-Z, SIGSTOP) still pauses for the rest of it once resumed, before the
            # run starts (its front end catches up then, not during the run).
            slices = max(1, round(gap / 0.01))
            for _ in range(slices):
                if c.stop.wait(gap / slices):
                    break
        return not c.stop.is_set()

    def _run_interleaved(self, engine: Engine, preps: list[PreparedScenario]) -> None:
        """``run.order = interleaved``: every scenario's warm-ups, then one counted run of each in
        turn. A skip leaves out the rest of the scenario whose run was the last one."""
        c = self.controls
        schedule = self.plan.interleaved(preps)
        skipped: set[str] = set()
        last: str | None = None
        c.skip_scenario.clear()
        for i, (p, warm) in enumerate(schedule):
            if c.skip_scenario.is_set() and last is not None:
                c.skip_scenario.clear()
                skipped.add(last)
                self.plan.drop(sum(1 for q, _ in schedule[i:] if q.scenario.name == last))
            if p.scenario.name in skipped:
                continue
            if not self._between_runs():
                break
            self.one_run(engine.clock, engine.run, p, warm)
            last = p.scenario.name

    def one_run(self, clock: Any, run: Callable[..., Any], prep: PreparedScenario, warm: bool, **kw: Any) -> None:
        """Start, run and end one run: ``run`` is the engine's own or one of its load workers'."""
        rid, it = self.plan.next_run(prep.scenario.name)
        end = execute_run(clock, run, prep, rid, it, warm, self.publish, self.controls.stop, **kw)
        self.publish(end)
        self.run_ended(end)

    def run_ended(self, end: Any) -> None:
        """A run's end event, published: the after-run hook (the alert evaluator) sees it."""
        if self.after_run is not None:
            with self._lock:  # the alert evaluator folds ends one at a time
                self.after_run(end)

    def _run_conversation_load(self, engine: Engine, turns: list[PreparedScenario], load: LoadPlan) -> None:
        """A conversation under load: ``concurrency`` users at once, each holding its own conversations
        (run.warmup each as warm-up, then run.iterations each), turn after turn with its think time
        between turns. A phase ends when every user's last turn has; pause, skip and stop as for load."""
        c, rc = self.controls, self.config.run
        users = load.concurrency or 1
        if self._load is None:
            self._load = (self.executors.load or LocalLoad)(self, engine)
        run = getattr(self._load, "run_conversations", None)
        if run is None:
            raise ConfigError(f"conversation {turns[0].scenario.conversation}: conversations under load are held by "
                              "users sent from this process; this session's load executor cannot hold them")
        for warm, n_each in ((True, rc.warmup), (False, rc.iterations)):
            if n_each == 0 or c.stop.is_set() or c.skip_scenario.is_set():
                continue
            with engine.observe_load(self.publish):
                left = run(turns, load, n_each, warm)
            if left:
                self.plan.drop(left + (users * rc.iterations * len(turns) if warm else 0))

    # ------------------------------------------------------------------ load: overlapping requests
    def _run_load(self, engine: Engine, prep: PreparedScenario, load: LoadPlan) -> None:
        """Warm-up requests, then the counted ones, each phase at the plan's load; a phase ends when
        its last request has. Pause holds back new requests (those in flight finish); skip and
        stop send no more."""
        for warm, n in ((True, load.n_warmup), (False, load.n_counted)):
            c = self.controls
            if n == 0 or c.stop.is_set() or c.skip_scenario.is_set():
                continue
            first = self.plan.started + 1
            engine.prepare_runs(prep, range(first, first + n))  # prompts, before any is timed
            if self._load is None:
                self._load = (self.executors.load or LocalLoad)(self, engine)
            with engine.observe_load(self.publish):
                left = self._load.run_phase(prep, load, n, warm)
            if left:
                self.plan.drop(left + (load.n_counted if warm else 0))
