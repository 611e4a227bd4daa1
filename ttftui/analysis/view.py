"""One analysis of a session state, shared by every output.

What the report and the dashboard show beyond the raw events is derived here, and only here:
per-scenario statistics, cold-run flags, sweep fits, load figures, the GPU driver's series, and the
same per Ray engine host. A :class:`SessionView` computes each figure at most once, when it is first
asked for. The report builder makes one view per report; the dashboard keeps a :class:`Views`,
which hands out the same view until a run ends (its figures depend only on the ended runs), so a
frame that redraws a panel never derives anything again.
"""

from __future__ import annotations

import bisect
from dataclasses import replace
from functools import cached_property
from typing import Any

from ttftui.analysis import gpu_driver
from ttftui.analysis.alerts import goodput
from ttftui.analysis.cold import cold_runs
from ttftui.analysis.fit import sweep_fits
from ttftui.analysis.load import LoadFigures, session_load
from ttftui.analysis.metrics import RunMetrics, ScenarioStats
from ttftui.analysis.reducer import Log, RunState, SessionState, session_stats
from ttftui.core.config import Config


class SessionView:
    def __init__(self, state: SessionState):
        self.state = state
        self._series: dict[tuple[str | None, int], tuple[Any, int, dict[str, gpu_driver.Series]]] = {}
        self._hosts: dict[str, dict[str, ScenarioStats]] = {}
        self._host_runs: dict[str, Log[RunState]] = {}

    # ------------------------------------------------------------------ the session's runs
    @cached_property
    def config(self) -> Config:
        """The session's configuration, or the defaults when it has none (a damaged recording)."""
        return self.state.config or Config()

    @cached_property
    def percentiles(self) -> list[float]:
        return list(self.config.report.percentiles)

    @cached_property
    def metrics(self) -> list[RunMetrics]:
        """The finished runs' metrics, in the order they ended."""
        return [r.metrics for r in self.state.runs if r.metrics is not None]

    @cached_property
    def stats(self) -> dict[str, ScenarioStats]:
        """Per-scenario statistics of the ended runs, at the configured percentiles."""
        return session_stats(self.state, self.percentiles)

    @cached_property
    def cold(self) -> dict[int, str]:
        """Run id -> why it looks cold (:mod:`ttftui.analysis.cold`)."""
        return cold_runs(self.metrics)

    @cached_property
    def sweep_of(self) -> dict[str, str]:
        """Scenario -> the sweep it was expanded from."""
        return {s.name: s.sweep for s in self.config.scenarios if s.sweep}

    @cached_property
    def sweeps(self) -> dict[str, dict[str, Any]]:
        """Per swept family: its fits and predictions (:mod:`ttftui.analysis.fit`)."""
        return sweep_fits(self.metrics, self.sweep_of) if self.sweep_of else {}

    @cached_property
    def load(self) -> dict[str, LoadFigures]:
        """Per load scenario: throughput, goodput, requests in flight, client lag."""
        return session_load(self.state)

    def goodput(self, scenario: str) -> float | None:
        return goodput(self.config.alerts, scenario, [m for m in self.metrics if m.scenario == scenario])

    def n_cold(self, scenario: str) -> int:
        return sum(1 for m in self.metrics if m.scenario == scenario and m.run_id in self.cold)

    # ------------------------------------------------------------------ the GPU driver's samples
    def driver_series(self, worker: str | None = None, since_ns: int = 0,
                      log: Log[Any] | None = None) -> dict[str, gpu_driver.Series]:
        """The GPU driver's samples where ``worker`` ran (None: this machine) from ``since_ns`` on,
        as series; ``log`` (default: this view's state's) may be a newer state's, for the dashboard,
        whose view outlives the states that only add samples. Rebuilt only when the log grew."""
        log = self.state.gpu_driver_of(worker) if log is None else log
        items = log.backing if isinstance(log, Log) else list(log)
        n = len(log)
        key = (worker, since_ns)
        hit = self._series.get(key)
        if hit is not None and hit[0] is items and hit[1] == n:
            return hit[2]
        # A sample after since_ns is in a batch read after it: batches are in time order.
        first = bisect.bisect_right(items, since_ns, 0, n, key=lambda b: b.t_ns)
        value = gpu_driver.build_series(items[first:n])
        self._series[key] = (items, n, value)  # holds the list, so its identity is never reused
        return value

    # ------------------------------------------------------------------ Ray engine hosts
    @cached_property
    def hosts(self) -> dict[str, list[Any]]:
        """Engine host (worker) -> the engines that became ready on it, in order."""
        out: dict[str, list[Any]] = {}
        for e in self.state.engines:
            if e.worker is not None:
                out.setdefault(e.worker, []).append(e)
        return out

    def host_runs(self, worker: str) -> Log[RunState]:
        """The ended runs of one engine host."""
        if worker not in self._host_runs:
            self._host_runs[worker] = Log([r for r in self.state.runs if r.started.worker == worker])
        return self._host_runs[worker]

    def host_stats(self, worker: str) -> dict[str, ScenarioStats]:
        """One engine host's own per-scenario statistics (the session's pool every host's runs)."""
        if worker not in self._hosts:
            self._hosts[worker] = session_stats(self.state, self.percentiles, self.host_runs(worker))
        return self._hosts[worker]

    @cached_property
    def host_counted(self) -> dict[str, tuple[int, int, list[float]]]:
        """Engine host -> its counted runs over every scenario: (finished, failed, their TTFTs)."""
        out: dict[str, tuple[int, int, list[float]]] = {}
        for r in self.state.runs:
            w = r.started.worker
            if w is None or r.warmup:
                continue
            ok, bad, ttft = out.get(w, (0, 0, []))
            out[w] = (ok + 1, bad, ttft + [r.metrics.ttft_ms]) if r.metrics is not None else (ok, bad + 1, ttft)
        return out

    def host_state(self, state: SessionState, worker: str | None) -> SessionState:
        """``state`` as seen from one engine host: its runs (in flight and ended) and its node's
        telemetry (None: the whole state)."""
        if worker is None:
            return state
        return replace(state, in_flight=tuple(r for r in state.in_flight if r.started.worker == worker),
                       runs=self.host_runs(worker), telemetry=state.telemetry_of(worker),
                       gpu_driver=state.gpu_driver_of(worker),
                       telemetry_status=state.worker_telemetry_status.get(worker, state.telemetry_status))


class Views:
    """The dashboard's views: the same :class:`SessionView` while no run has ended and the session
    is the same one, a new one after. Held by the app, never by a module."""

    def __init__(self) -> None:
        self._view: SessionView | None = None
        self._key: tuple[Any, ...] = ()

    def of(self, state: SessionState) -> SessionView:
        # identity for the objects (the runs' backing list, the session, its config), equality for counts
        key = (state.runs.backing, state.session, state.config, len(state.runs), len(state.engines))
        k = self._key
        if self._view is None or not k or any(a is not b for a, b in zip(key[:3], k[:3])) or key[3:] != k[3:]:
            self._view = SessionView(state)
            self._key = key  # holds the runs' list, so its identity is never reused
        return self._view
