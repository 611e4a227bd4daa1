"""What every engine offers the session runner.

An engine loads a model once, prepares each scenario (builds its exact-length prompt and its sampler
outside any timed region) and then performs runs. During a run it publishes ``PhaseTimed`` and
``TokenEmitted`` events as they happen and returns the ``RunFinished`` event; it never touches a
widget, a file or a statistic. Timing is the engine's own job because only it knows where each phase
begins and ends; everything downstream only folds events.
"""

from __future__ import annotations

import contextlib
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable

from ttftui.core.config import ScenarioConfig
from ttftui.core.errors import ConfigError
from ttftui.core.events import DeviceFacts, DiffusionFacts, ModelFacts, RunFinished

Publish = Callable[[Any], None]


class Clock:
    """Session clock: nanoseconds since the session started, on ``perf_counter_ns``.

    ``perf_counter_ns`` is CLOCK_MONOTONIC on Linux (and the like elsewhere): one clock for every
    process of the machine, so an engine in its own process stamps its events on the session clock
    of its parent by taking the parent's ``t0_ns``."""

    def __init__(self, t0_ns: int | None = None) -> None:
        self.t0_ns = time.perf_counter_ns() if t0_ns is None else t0_ns

    def now_ns(self) -> int:
        return time.perf_counter_ns() - self.t0_ns

    def rel(self, abs_ns: int) -> int:
        """Session-relative time of an absolute ``perf_counter_ns`` reading."""
        return abs_ns - self.t0_ns


class RunStopped(Exception):
    """The stop flag was set before the run produced its first token."""


class RunError(Exception):
    """This run failed but the session goes on (a server's request: refused, timed out, an HTTP
    error, a malformed stream). ``str(e)`` is the one-line reason recorded with the failed run."""


@dataclass(frozen=True)
class LoadResult:
    load_ms: float | None  # None: nothing was loaded here (a remote server)
    model: ModelFacts
    device: DeviceFacts
    engine_version: str | None = None
    diffusion: DiffusionFacts | None = None  # a diffusion model's engine


@dataclass
class PreparedScenario:
    scenario: ScenarioConfig
    prompt_text: str
    prompt_tokens: int
    handle: Any = None  # engine-specific (sampler chain, template, ...)


class Worker(ABC):
    """One client of an engine that can serve several at once: the unit a load scenario runs many
    of. It only emits events (through ``publish``) and returns the run's end."""

    @abstractmethod
    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event, due_ns: int | None = None) -> RunFinished:
        """Like :meth:`Engine.run`; ``due_ns`` (perf_counter_ns) is when the request was scheduled
        to be sent (open loop), so its lateness is part of the result."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


class Engine(ABC):
    name: str
    synthetic: bool
    synthetic_reason: str | None = None
    host = "thread"  # where the work is done: "thread" (this process) or "process" (ttftui.measure.engine_process)
    pid: int | None = None  # the process that does the work, when it is not this one

    def __init__(self) -> None:
        self.clock = Clock()

    @abstractmethod
    def load(self) -> LoadResult: ...

    @abstractmethod
    def prepare(self, scenario: ScenarioConfig, seed: int) -> PreparedScenario: ...

    @abstractmethod
    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        """One request from a clean KV cache. Raises ``RunStopped`` if stopped before the first
        token, ``ttftui.core.errors.EngineFailed`` if the engine reports an error."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def worker(self) -> "Worker":
        """Another client of this engine, for requests that overlap (load scenarios). Only a server
        has them: a local engine computes one request at a time."""

        raise ConfigError(f"the {self.name} engine runs one request at a time; concurrency and rate need a "
                          "server (--url)")

    def observe_load(self, publish: Publish) -> Any:
        """A context manager around a load scenario's requests: a server's engine samples the
        server's queue in it (``ServerSample`` events). Nothing here."""

        return contextlib.nullcontext()

    def prepare_runs(self, prepared: PreparedScenario, run_ids: range) -> None:  # noqa: B027 - optional hook
        """Build whatever the runs ``run_ids`` need before they start (a load phase must not ask the
        server anything but its requests while it is measured)."""

    def prepare_requests(self, prepared: PreparedScenario, n: int, warm: bool) -> list[PreparedScenario]:
        """The ``n`` requests of a load phase whose requests each have their own prompt (a trace, a
        prompts file, length distributions), built before the phase. Only a server takes load."""
        raise ConfigError(f"scenario {prepared.scenario.name}: per-request prompts are sent to a server (--url)")

    def sleep_until(self, t_ns: int) -> None:  # noqa: B027 - only the paced synthetic engine waits
        pass
