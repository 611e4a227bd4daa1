"""Load: many requests to a server at once, closed loop (a fixed number in flight) or open loop
(requests on a schedule, Poisson or constant arrivals, or a request trace's own timestamps), and
what the session makes of them.

A conversation with ``concurrency = N`` is N users at once, each holding its own conversation turn
after turn (``think_time_ms`` between turns); its turns' requests are one family in the figures,
under the conversation's name (NAME@CACHE), while each turn keeps its own per-run statistics.

A load scenario has ``concurrency``, ``rate`` or ``trace`` (only against a server: ``--url``). A
trace is an open loop whose schedule is the trace's (:func:`arrival_offsets_ns`, its timestamps
divided by ``trace_speed``); its requests' lengths and prompts are built by
:mod:`ttftui.measure.trace`. A load scenario's warm-up requests go first, at the same load, and
are left out of the statistics; then the counted ones.
Each request is an ordinary run in the event stream (``RunStarted`` .. ``RunFinished`` /
``RunFailed``); runs overlap, so the reducer keeps every run in flight. What load adds is derived
from those events alone (:func:`load_figures`): the span of the counted requests, request
throughput, goodput (counted requests per second that met every per-run rule, the vLLM / AIPerf
definition), output tokens per second, the most requests in flight, and in open loop how late the
client sent requests against their schedule (``client_lag_ms``: a client that cannot keep up must
say so, or its TTFT hides the requests it never sent on time).

The scheduling itself (threads, one kept-alive connection per worker) lives in
:mod:`ttftui.run.loadloop` and :mod:`ttftui.run.executors`; this module is pure: plans, arrival times and figures
(a trace's timestamps are read through :func:`ttftui.core.workload.read_trace`, once per file).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any, Iterable, Literal

import numpy as np

from ttftui.analysis.alerts import meets_every, per_run_rules
from ttftui.analysis.reducer import SessionState
from ttftui.core.config import Config, RunConfig, ScenarioConfig
from ttftui.core.workload import read_trace

NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class LoadPlan:
    mode: Literal["closed", "open"]
    concurrency: int | None
    rate: float | None
    arrival: Literal["poisson", "constant", "trace"]
    n_warmup: int
    n_counted: int
    max_in_flight: int
    trace: str | None = None  # arrival "trace": the trace file, replayed ``trace_speed`` times as fast
    trace_speed: float = 1.0
    # a conversation under load: ``concurrency`` users, each holding conversations of ``turns`` turns
    # (n_warmup / n_counted are then one turn's requests: run.warmup / run.iterations per user)
    turns: int = 0
    think_ms: float = 0.0

    @property
    def total(self) -> int:
        return self.n_warmup + self.n_counted

    def describe(self) -> str:
        if self.turns:
            think = f", thinking {self.think_ms:g} ms between turns" if self.think_ms else ""
            return f"{self.concurrency} users, each holding conversations of {self.turns} turns{think}"
        if self.mode == "closed":
            return f"closed loop, {self.concurrency} in flight"
        if self.arrival == "trace":
            return f"trace replay, {self.n_counted:,} requests at {self.trace_speed:g}x"
        return f"open loop, {self.rate:g} req/s ({self.arrival})"


def plan_for(run: RunConfig, s: ScenarioConfig) -> LoadPlan | None:
    """The load plan of a scenario, or None for an ordinary one (one run after another)."""
    if s.concurrency is not None and s.conversation is not None:  # a turn of a conversation under load
        c = s.concurrency
        return LoadPlan("closed", c, None, s.arrival, n_warmup=run.warmup * c, n_counted=run.iterations * c,
                        max_in_flight=c, turns=s.turns or 1, think_ms=s.think_time_ms)
    if s.concurrency is not None:
        c = s.concurrency
        return LoadPlan("closed", c, None, s.arrival,
                        n_warmup=s.warmup_requests if s.warmup_requests is not None else run.warmup * c,
                        n_counted=s.requests if s.requests is not None else run.iterations * c,
                        max_in_flight=c)
    if s.trace is not None:  # the trace's own schedule; no warm-up unless asked for (it would warm its cache)
        n = s.requests if s.requests is not None else len(read_trace(s.trace).requests)
        return LoadPlan("open", None, None, "trace", n_warmup=s.warmup_requests or 0, n_counted=n,
                        max_in_flight=s.max_in_flight, trace=s.trace, trace_speed=s.trace_speed)
    if s.rate is not None:
        return LoadPlan("open", None, s.rate, s.arrival,
                        n_warmup=s.warmup_requests if s.warmup_requests is not None else run.warmup,
                        n_counted=s.requests if s.requests is not None else max(10, math.ceil(run.iterations * s.rate)),
                        max_in_flight=s.max_in_flight)
    return None


def planned_runs(config: Config, s: ScenarioConfig) -> int:
    """Runs a scenario makes: warm-up + counted runs, or a load plan's requests."""
    plan = plan_for(config.run, s)
    return plan.total if plan is not None else config.run.warmup + config.run.iterations


def arrival_offsets_ns(plan: LoadPlan, n: int, seed: int, name: str) -> list[int]:
    """When each of ``n`` open-loop requests is due, in ns after the phase starts. The first is due
    at once; Poisson gaps are exponential with mean 1/rate, drawn from a generator seeded by the
    run seed and the scenario name (the same session sends on the same schedule). A trace's are its
    first ``n`` timestamps, after its first, divided by its speed (warm-ups and counted requests
    alike: each phase replays the trace from its start)."""
    if plan.arrival == "trace":
        assert plan.trace is not None
        return read_trace(plan.trace).offsets_ns(n, plan.trace_speed)
    assert plan.rate is not None
    mean_ns = NS_PER_S / plan.rate
    rng = random.Random(f"{seed}:{name}")
    out, t = [], 0.0
    for k in range(n):
        out.append(round(t))
        t += rng.expovariate(1.0) * mean_ns if plan.arrival == "poisson" else mean_ns
    return out


@dataclass(frozen=True, slots=True)
class LoadFigures:
    """A load scenario's counted requests, from their events."""

    mode: str
    concurrency: int | None
    rate: float | None
    arrival: str | None
    n_requests: int  # counted requests that ended (finished or failed)
    n_ok: int
    n_failed: int
    n_good: int | None  # finished and met every per-run rule (None: the scenario has no per-run rules)
    span_s: float  # first counted request started -> last one ended
    request_rate: float  # finished requests per second over the span
    goodput_rps: float | None  # good requests per second over the span (None without per-run rules)
    output_tps: float  # output tokens of finished requests per second over the span
    max_in_flight: int  # the most requests of this scenario in flight at once (warm-ups included)
    mean_in_flight: float  # time-weighted over the span
    client_lag_p50_ms: float | None  # open loop: how late the client sent requests against their schedule
    client_lag_max_ms: float | None
    # The server's own view of its queue over the span (ServerSample), where it gives one.
    server_queue_source: str | None = None  # "metrics" | "slots"
    server_samples: int = 0
    server_processing_max: int | None = None
    server_deferred_max: int | None = None
    server_deferred_mean: float | None = None
    # The server's prefix cache over the counted requests. Its per-request account (llama-server's
    # timings.cache_n, vLLM's usage cached_tokens), token-weighted: cached / prompt tokens of the
    # requests that reported one; and its /metrics counters' difference across them (vLLM, SGLang).
    server_cache_hit_pct: float | None = None
    server_cache_reported: int = 0  # counted requests whose answer said how many tokens were cached
    server_metrics_cache_hit_pct: float | None = None
    server_metrics_cache_queried: int | None = None  # prompt tokens the server looked up meanwhile
    trace_reusable_pct: float | None = None  # a trace: what an unbounded prefix cache could have served
    # Ray client workers: each one's counted requests (merged figures above pool every request)
    workers: dict[str, "WorkerFigures"] | None = None


@dataclass(frozen=True, slots=True)
class WorkerFigures:
    n_ok: int
    n_failed: int
    request_rate: float  # finished requests per second over the worker's own span
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None


@dataclass(frozen=True, slots=True)
class Request:
    """What :func:`load_figures` needs of one ended run."""

    start_ns: int
    end_ns: int
    warmup: bool
    ok: bool
    good: bool
    n_output: int
    client_lag_ns: int | None = None
    worker: str | None = None  # the Ray client worker that sent it
    ttft_ms: float | None = None
    n_prompt: int = 0
    cached: int | None = None  # prompt tokens the server says it took from its cache (None: it did not say)
    reusable: int | None = None  # a trace's request: its tokens in blocks an earlier request had sent


def load_figures(plan: LoadPlan, requests: Iterable[Request], slo: bool = False) -> LoadFigures | None:
    """``slo``: the scenario has per-run rules (``Request.good`` says whether each met them all)."""
    reqs = list(requests)
    counted = [r for r in reqs if not r.warmup]
    if not counted:
        return None
    t_first = min(r.start_ns for r in counted)
    t_last = max(r.end_ns for r in counted)
    span_s = max(t_last - t_first, 1) / NS_PER_S
    ok = [r for r in counted if r.ok]
    good = [r for r in ok if r.good]
    busy = sum(max(0, min(r.end_ns, t_last) - max(r.start_ns, t_first)) for r in reqs)
    lags = sorted(r.client_lag_ns for r in counted if r.client_lag_ns is not None)
    return LoadFigures(
        mode=plan.mode, concurrency=plan.concurrency, rate=plan.rate,
        arrival=plan.arrival if plan.mode == "open" else None,
        n_requests=len(counted), n_ok=len(ok), n_failed=len(counted) - len(ok), n_good=len(good) if slo else None,
        span_s=span_s, request_rate=len(ok) / span_s, goodput_rps=len(good) / span_s if slo else None,
        output_tps=sum(r.n_output for r in ok) / span_s,
        max_in_flight=max_overlap((r.start_ns, r.end_ns) for r in reqs),
        mean_in_flight=busy / (span_s * NS_PER_S),
        client_lag_p50_ms=_median(lags) / 1e6 if lags else None,
        client_lag_max_ms=lags[-1] / 1e6 if lags else None,
    )


def max_overlap(intervals: Iterable[tuple[int, int]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t opens)."""
    spans = list(intervals)
    # sorted by time, an end (-1) before a start (+1) at the same instant
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = cur = 0
    for _, d in edges:
        cur += d
        best = max(best, cur)
    return best


def _median(xs: list[int]) -> float:
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def session_load(state: SessionState) -> dict[str, LoadFigures]:
    """Load figures of every load scenario of a session that has ended counted requests."""

    cfg = state.config
    if cfg is None:
        return {}
    out: dict[str, LoadFigures] = {}
    for s in cfg.scenarios:
        plan = plan_for(cfg.run, s)
        if plan is None:
            continue
        # a conversation under load is one family: every turn's requests, under its name (NAME@CACHE)
        key = s.conversation if plan.turns and s.conversation else s.name
        if key in out:
            continue
        names = ({x.name for x in cfg.scenarios if x.conversation == key} if key != s.name else {s.name})
        rules = {n: per_run_rules(cfg.alerts, n) for n in names}
        reqs = []
        for r in state.runs:
            if r.scenario not in names or r.end_ns is None:
                continue
            m, fin = r.metrics, r.finished
            lag = fin.remote.client_lag_ns if fin is not None and fin.remote is not None else None
            cached = m.value("server_cached_tokens_count") if m is not None else None
            reqs.append(Request(start_ns=r.started.t_ns, end_ns=r.end_ns, warmup=r.warmup, ok=m is not None,
                                good=m is not None and meets_every(rules[r.scenario], m),
                                n_output=fin.n_output_tokens if fin is not None else 0, client_lag_ns=lag,
                                worker=r.started.worker, ttft_ms=m.ttft_ms if m is not None else None,
                                n_prompt=fin.n_prompt_tokens if fin is not None else 0,
                                cached=int(cached) if cached is not None else None,
                                reusable=fin.remote.trace_reusable_tokens
                                if fin is not None and fin.remote is not None else None))
        figs = load_figures(plan, reqs, slo=any(rules.values()))
        if figs is not None:
            counted = [r for r in reqs if not r.warmup]
            figs = with_server_cache(with_server_queue(figs, counted, state.server_samples), counted,
                                     state.server_samples)
            out[key] = replace(figs, workers=per_worker(reqs))
    return out


def with_server_queue(f: LoadFigures, counted: list[Request], samples: Iterable[Any]) -> LoadFigures:
    """``f`` with the server's queue readings taken while its counted requests ran."""

    lo = min(r.start_ns for r in counted)
    hi = max(r.end_ns for r in counted)
    inside = [x for x in samples if lo <= x.t_ns <= hi]
    if not inside:
        return f
    proc = [x.requests_processing for x in inside if x.requests_processing is not None]
    deferred = [x.requests_deferred for x in inside if x.requests_deferred is not None]
    return replace(f, server_queue_source=inside[-1].source, server_samples=len(inside),
                   server_processing_max=max(proc) if proc else None,
                   server_deferred_max=max(deferred) if deferred else None,
                   server_deferred_mean=sum(deferred) / len(deferred) if deferred else None)


def with_server_cache(f: LoadFigures, counted: list[Request], samples: Iterable[Any]) -> LoadFigures:
    """``f`` with the server's prefix cache over its counted requests: the per-request account,
    token-weighted, and the /metrics counters' difference from the last reading answered before the
    first counted request started to the first reading asked for after the last one ended (so that
    every counted request's lookups fall between the two; the counters are the server's, whole: other
    traffic, and warm-ups in flight at the first reading, count in them too)."""

    told = [r for r in counted if r.ok and r.cached is not None and r.n_prompt > 0]
    if told:
        f = replace(f, server_cache_hit_pct=sum(r.cached for r in told) / sum(r.n_prompt for r in told) * 100,
                    server_cache_reported=len(told))
    traced = [r for r in counted if r.ok and r.reusable is not None and r.n_prompt > 0]
    if traced:  # over the same prompt tokens as the server's account, where both are given
        f = replace(f, trace_reusable_pct=min(sum(r.reusable for r in traced) / sum(r.n_prompt for r in traced), 1.0)
                    * 100)
    lo = min(r.start_ns for r in counted)
    hi = max(r.end_ns for r in counted)
    read = [x for x in samples if x.prefix_cache_queried is not None and x.prefix_cache_hits is not None]
    before = [x for x in read if x.t_ns <= lo]
    after = [x for x in read if (x.sent_ns if x.sent_ns is not None else x.t_ns) >= hi]
    if not before or not after:
        return f
    a, b = before[-1], after[0]
    queried, hits = b.prefix_cache_queried - a.prefix_cache_queried, b.prefix_cache_hits - a.prefix_cache_hits
    if queried < 0 or hits < 0:  # the server restarted meanwhile: its counters went back, no difference holds
        return f
    if queried == 0:  # nothing looked up meanwhile: no rate
        return replace(f, server_metrics_cache_queried=0)
    return replace(f, server_metrics_cache_hit_pct=min(hits / queried, 1.0) * 100, server_metrics_cache_queried=queried)


def per_worker(reqs: list[Request]) -> dict[str, WorkerFigures] | None:
    """Each Ray client worker's counted requests; None when no request came from one."""

    by: dict[str, list[Request]] = {}
    for r in reqs:
        if r.worker is not None and not r.warmup:
            by.setdefault(r.worker, []).append(r)
    if not by:
        return None
    out = {}
    for w, rs in sorted(by.items()):
        ok = [r for r in rs if r.ok]
        span = max(max(r.end_ns for r in rs) - min(r.start_ns for r in rs), 1) / NS_PER_S
        ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
        pct = (lambda q: float(np.percentile(ttft, q))) if ttft else (lambda q: None)
        out[w] = WorkerFigures(n_ok=len(ok), n_failed=len(rs) - len(ok), request_rate=len(ok) / span,
                               ttft_p50_ms=pct(50), ttft_p99_ms=pct(99))
    return out
