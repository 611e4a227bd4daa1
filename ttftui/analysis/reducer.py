"""The pure reducer: ``apply(state, event) -> state``.

The dashboard, the headless reporter and replay (including seek) all fold the same events with this
function, so a session looks the same whichever way it is consumed. ``apply`` never mutates the
state it is given. Growing sequences (tokens of a run, finished runs, telemetry samples) use
:class:`Log`, an append-only vector shared between successive states: appending to the newest state
is O(1), and an older state still sees exactly the items it had (``Log`` copies on a branch), which
is what keeps a 100,000-event replay fast without giving up purity.

Statistics are *not* computed here on every event; :mod:`ttftui.analysis.view` derives them from a
state on demand (per finished run at most), because recomputing percentiles per token would make the
reducer quadratic.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field, replace
from typing import Any, Generic, Iterable, Iterator, TypeVar

from pydantic import ValidationError

from ttftui.analysis.metrics import RunMetrics, ScenarioStats, run_metrics, scenario_stats
from ttftui.core.config import Config
from ttftui.core.events import (
    AlertChanged,
    DiffusionStep,
    EngineCrashed,
    EngineReady,
    EngineStalled,
    Event,
    GpuDriverSamples,
    Notice,
    PhaseTimed,
    RunFailed,
    RunFinished,
    RunStarted,
    ServerSample,
    SessionFinished,
    SessionStarted,
    TelemetrySample,
    TelemetryStatus,
    TokenEmitted,
    WorkerLost,
)

T = TypeVar("T")


class Log(Generic[T]):
    """Immutable view of the first ``n`` items of a shared, append-only list."""

    __slots__ = ("_items", "_n")

    def __init__(self, items: list[T] | None = None, n: int | None = None):
        self._items: list[T] = items if items is not None else []
        self._n = len(self._items) if n is None else n

    def append(self, item: T) -> "Log[T]":
        items = self._items
        if self._n == 0:  # never grow a possibly shared empty default
            items = []
        elif len(items) != self._n:  # someone appended to a newer state: branch off a copy
            items = items[: self._n]
        items.append(item)
        return Log(items, self._n + 1)

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[T]:
        items, n = self._items, self._n
        for i in range(n):
            yield items[i]

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return self._items[: self._n][i]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._items[i]

    def __bool__(self) -> bool:
        return self._n > 0

    def last(self) -> T | None:
        return self._items[self._n - 1] if self._n else None

    @property
    def backing(self) -> list[T]:
        """The shared list behind this view: two logs with the same backing list and length hold the
        same items (what a memo keys on, instead of comparing them)."""
        return self._items

    def to_list(self) -> list[T]:
        return self._items[: self._n]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Log) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"Log(n={self._n})"


@dataclass(frozen=True, slots=True)
class RunState:
    """A run as it unfolds: its start, its phases so far, its tokens, then how it ended."""

    started: RunStarted
    phases: tuple[PhaseTimed, ...] = ()
    tokens: Log[TokenEmitted] = field(default_factory=Log)
    steps: Log[DiffusionStep] = field(default_factory=Log)  # a diffusion model's denoising steps
    finished: RunFinished | None = None
    failed: str | None = None
    metrics: RunMetrics | None = None  # derived once, when the run finishes
    end_ns: int | None = None  # when it ended (finished or failed)

    @property
    def run_id(self) -> int:
        return self.started.run_id

    @property
    def scenario(self) -> str:
        return self.started.scenario

    @property
    def warmup(self) -> bool:
        return self.started.warmup

    @property
    def text(self) -> str:
        return "".join(t.text for t in self.tokens)


@dataclass(frozen=True, slots=True)
class SessionState:
    session: SessionStarted | None = None
    # The session's config, validated once when it started: None before, or when a recording's
    # config does not validate (another version's, or damaged): consumers then use the defaults.
    config: Config | None = None
    engine: EngineReady | None = None  # this machine's engine, or the first Ray engine host's
    # Every engine that became ready, in order (Ray engine hosts: one per node, or per matrix cell)
    engines: tuple[EngineReady, ...] = ()
    # Runs started and not yet ended, oldest first: one at a time for a local engine, many under load.
    in_flight: tuple[RunState, ...] = ()
    runs: Log[RunState] = field(default_factory=Log)  # ended runs (finished or failed), in order
    notices: Log[Notice] = field(default_factory=Log)
    telemetry: Log[TelemetrySample] = field(default_factory=Log)
    server_samples: Log[ServerSample] = field(default_factory=Log)  # a server's queue under load
    workers_lost: tuple[WorkerLost, ...] = ()  # Ray client workers that died
    telemetry_status: TelemetryStatus | None = None
    # Ray engine hosts' own samplers, per worker (their nodes' GPUs and processes): each its own
    # time-ordered log, so a run's telemetry window never mixes two machines
    worker_telemetry: dict[str, Log[TelemetrySample]] = field(default_factory=dict)
    worker_telemetry_status: dict[str, TelemetryStatus] = field(default_factory=dict)
    # the GPU driver's own buffered samples (NVML), this machine's and each engine host's
    gpu_driver: Log[GpuDriverSamples] = field(default_factory=Log)
    worker_gpu_driver: dict[str, Log[GpuDriverSamples]] = field(default_factory=dict)
    alerts: Log[AlertChanged] = field(default_factory=Log)
    crash: EngineCrashed | None = None  # the engine's process died: where, by what, its last log lines
    stalled: EngineStalled | None = None  # the engine's process makes no progress (until it resumes or dies)
    finished: SessionFinished | None = None
    n_events: int = 0
    last_t_ns: int = 0

    @property
    def synthetic(self) -> bool | None:
        """Whether any engine of the session is synthetic (None before one is ready)."""
        if len(self.engines) > 1:
            return any(e.synthetic for e in self.engines)
        return None if self.engine is None else self.engine.synthetic

    def telemetry_of(self, worker: str | None) -> "Log[TelemetrySample]":
        """The samples taken where ``worker`` ran (None: this machine)."""
        if worker is None:
            return self.telemetry
        return self.worker_telemetry.get(worker) or Log()

    def gpu_driver_of(self, worker: str | None) -> "Log[GpuDriverSamples]":
        """The GPU driver's samples where ``worker`` ran (None: this machine)."""
        if worker is None:
            return self.gpu_driver
        return self.worker_gpu_driver.get(worker) or Log()

    @property
    def current(self) -> RunState | None:
        """The newest run in flight (the one the dashboard follows), or None."""
        return self.in_flight[-1] if self.in_flight else None


def initial_state() -> SessionState:
    # fresh Logs: never share the class-level default instances between sessions
    return SessionState(runs=Log(), notices=Log(), telemetry=Log(), alerts=Log(), server_samples=Log(),
                        worker_telemetry={}, worker_telemetry_status={}, gpu_driver=Log(), worker_gpu_driver={})


def _in_flight(state: SessionState, run_id: int) -> int:
    """Index of the run in flight with this id (newest first, where events mostly land), or -1."""
    fl = state.in_flight
    for i in range(len(fl) - 1, -1, -1):
        if fl[i].started.run_id == run_id:
            return i
    return -1


def _with(fl: tuple[RunState, ...], i: int, run: RunState) -> tuple[RunState, ...]:
    return fl[:i] + (run,) + fl[i + 1:]


def _end(state: SessionState, i: int, run: RunState, **kw: Any) -> SessionState:
    fl = state.in_flight
    return replace(state, in_flight=fl[:i] + fl[i + 1:], runs=state.runs.append(run), **kw)


def apply(state: SessionState, ev: Event) -> SessionState:
    """Fold one event into the session state (pure; the input state is left as it was). The
    bookkeeping (event count, newest time) is done once, then one case per event type."""
    t = getattr(ev, "t_ns", state.last_t_ns)
    book = {"n_events": state.n_events + 1, "last_t_ns": t if t > state.last_t_ns else state.last_t_ns}
    fl = state.in_flight
    i = _in_flight(state, ev.run_id) if fl and isinstance(ev, _RUN_EVENTS) else -1
    match ev:
        case TokenEmitted() if i >= 0:
            run = fl[i]
            return replace(state, in_flight=_with(fl, i, replace(run, tokens=run.tokens.append(ev))), **book)
        case DiffusionStep() if i >= 0:
            run = fl[i]
            return replace(state, in_flight=_with(fl, i, replace(run, steps=run.steps.append(ev))), **book)
        case PhaseTimed() if i >= 0:
            run = fl[i]
            return replace(state, in_flight=_with(fl, i, replace(run, phases=run.phases + (ev,))), **book)
        case TelemetrySample() if ev.worker is None:
            return replace(state, telemetry=state.telemetry.append(ev), **book)
        case TelemetrySample():
            log = state.worker_telemetry.get(ev.worker) or Log()
            return replace(state, worker_telemetry={**state.worker_telemetry, ev.worker: log.append(ev)}, **book)
        case GpuDriverSamples() if ev.worker is None:
            return replace(state, gpu_driver=state.gpu_driver.append(ev), **book)
        case GpuDriverSamples():
            log = state.worker_gpu_driver.get(ev.worker) or Log()
            return replace(state, worker_gpu_driver={**state.worker_gpu_driver, ev.worker: log.append(ev)}, **book)
        case ServerSample():
            return replace(state, server_samples=state.server_samples.append(ev), **book)
        case RunStarted():
            # Runs overlap only under load, and only a server's: a local engine's run that never
            # ended (a damaged recording) is dropped, not completed with invented data.
            run = RunState(started=ev, tokens=Log(), steps=Log())
            if state.engine is not None and state.engine.engine == "remote":
                keep = fl
            else:  # one at a time per engine; Ray engine hosts (workers) run side by side
                keep = tuple(r for r in fl if r.started.worker != ev.worker)
            return replace(state, in_flight=keep + (run,), **book)
        case RunFinished() if i >= 0:
            run = fl[i]
            m = run_metrics(run.started.iteration, run.started.t_ns, ev, run.tokens,
                            telemetry_window(state.telemetry_of(run.started.worker), run.started.t_ns, ev.t_ns))
            return _end(state, i, replace(run, finished=ev, metrics=m, end_ns=ev.t_ns), **book)
        case RunFailed() if i >= 0:
            return _end(state, i, replace(fl[i], failed=ev.error, end_ns=ev.t_ns), **book)
        case AlertChanged():
            return replace(state, alerts=state.alerts.append(ev), **book)
        case Notice():
            return replace(state, notices=state.notices.append(ev), **book)
        case TelemetryStatus() if ev.worker is None:
            return replace(state, telemetry_status=ev, **book)
        case TelemetryStatus():
            return replace(state, worker_telemetry_status={**state.worker_telemetry_status, ev.worker: ev}, **book)
        case EngineReady():
            first = state.engine if state.engine is not None and ev.worker is not None else ev
            return replace(state, engine=first, engines=state.engines + (ev,), **book)
        case EngineCrashed():
            return replace(state, crash=ev, stalled=None, **book)
        case EngineStalled():
            return replace(state, stalled=ev if ev.state == "stalled" else None, **book)
        case WorkerLost():
            return replace(state, workers_lost=state.workers_lost + (ev,), **book)
        case SessionStarted():
            return replace(initial_state(), session=ev, config=session_config(ev.config), **book)
        case SessionFinished():
            return replace(state, finished=ev, in_flight=(), stalled=None, **book)
    return replace(state, **book)  # an event of another run (or a stray one): counted, nothing else


_RUN_EVENTS = (TokenEmitted, PhaseTimed, DiffusionStep, RunFinished, RunFailed)


def session_config(recorded: dict[str, Any]) -> Config | None:
    """A session's recorded config as a ``Config``, or None when it does not validate."""
    try:
        return Config.model_validate(recorded)
    except (ValidationError, ValueError, TypeError):
        return None


def fold(events: Any, state: SessionState | None = None) -> SessionState:
    s = state if state is not None else initial_state()
    for ev in events:
        s = apply(s, ev)
    return s


def telemetry_window(log: Log[TelemetrySample], start_ns: int, end_ns: int) -> list[TelemetrySample]:
    """Samples with start <= t_ns <= end (samples arrive in time order from one sampler thread)."""
    if not log:
        return []
    items, n = log._items, len(log)
    lo = bisect.bisect_left(items, start_ns, 0, n, key=lambda s: s.t_ns)
    hi = bisect.bisect_right(items, end_ns, lo, n, key=lambda s: s.t_ns)
    return items[lo:hi]


def finished_metrics(state: SessionState) -> list[RunMetrics]:
    return [r.metrics for r in state.runs if r.metrics is not None]


def scenario_order(state: SessionState) -> list[str]:
    """Scenarios in config order, then any others in order of appearance."""
    names: list[str] = [s.name for s in state.config.scenarios] if state.config is not None else []
    for r in state.runs:
        if r.scenario not in names:
            names.append(r.scenario)
    if state.current is not None and state.current.scenario not in names:
        names.append(state.current.scenario)
    return names


def session_stats(state: SessionState, percentiles: tuple[float, ...] | list[float],
                  runs: Iterable[RunState] | None = None) -> dict[str, ScenarioStats]:
    """Per-scenario statistics of the runs that have ended (or of ``runs``, some of them), in the
    session's scenario order. :class:`ttftui.analysis.view.SessionView` keeps them, so that each set
    of runs is summarised once."""
    by: dict[str, list[RunMetrics]] = {}
    failed: dict[str, int] = {}
    for r in state.runs if runs is None else runs:
        if r.metrics is not None:
            by.setdefault(r.scenario, []).append(r.metrics)
        elif r.failed is not None:
            failed[r.scenario] = failed.get(r.scenario, 0) + 1
    out = {
        name: scenario_stats(name, by.get(name, []), failed.get(name, 0), percentiles)
        for name in scenario_order(state)
        if name in by or name in failed
    }
    return out
