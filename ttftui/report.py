"""The headless report: one versioned JSON document (or CSV, one row per run), built from state.

``build_report(state)`` is a pure function of the reducer's state, so a live session and the replay
of its recording give the same report. The pydantic models below *are* the schema: ``ttftui schema``
prints it and ``schema/report.schema.json`` is the published copy (a test keeps them equal).

Conventions: units in key names (``_ms``, ``_bytes``, ``_pct``, ``_tps`` = tokens per second),
numbers as numbers, unavailable values as ``null`` (never NaN).
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ttftui import __version__, registry
from ttftui.alerts import goodput
from ttftui.cold import cold_runs
from ttftui.load import session_load
from ttftui.config import Config
from ttftui.fit import sweep_fits
from ttftui.definitions import DEFINITIONS
from ttftui.events import DeviceFacts, ModelFacts
from ttftui import gpu_driver
from ttftui.metrics import RunMetrics, ScenarioStats, telemetry_gaps
from ttftui.reducer import SessionState, scenario_order, session_stats
from ttftui.stats import Summary

SCHEMA_VERSION = 4  # 2: runs against a server (remote), the engine's phases nullable, crash, engine_host;
# 3: load scenarios (load, remote.client_lag_ms); 4: Ray engine hosts (hosts, runs[].worker of a host)
REPORT_KIND = "ttftui.report"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricSummary(BaseModel):
    """n, mean, sd (sample, null below 2), min, max and one key per configured percentile (p50, …)."""

    model_config = ConfigDict(extra="allow")
    n: int
    mean: float | None
    sd: float | None
    min: float | None
    max: float | None
    __pydantic_extra__: dict[str, float | None] = Field(init=False)  # type: ignore[assignment]


class LlamaCounters(_M):
    t_p_eval_ms: float
    n_p_eval: int
    t_eval_ms: float
    n_eval: int
    counters_enabled: bool
    prefill_compared_ms: float | None = Field(description="ttftui's prefill over the tokens llama.cpp booked as prompt eval")
    prefill_diff_pct: float | None = Field(description="(ttftui − llama.cpp) / llama.cpp × 100")


def _defined(name: str) -> str:
    """A report field's description: the metric's definition in ttftui.registry."""
    return registry.metric(name).definition


class RemoteRecord(_M):
    """A run against a server: the client's timing points (ms after t0) and the server's own account."""

    connect_ms: float | None = Field(description=_defined("connect_ms"))
    send_ms: float | None = Field(description=_defined("send_ms"))
    server_wait_ms: float | None = Field(description=_defined("server_wait_ms"))
    server_prefill_ms: float | None = Field(description=_defined("server_prefill_ms"))
    ttfb_ms: float | None = Field(description=_defined("ttfb_ms"))
    first_event_ms: float | None = Field(description=_defined("first_event_ms"))
    first_choice_ms: float | None = Field(description=_defined("first_choice_ms"))
    first_content_ms: float | None = Field(description=_defined("first_content_ms"))
    server_decode_tps: float | None = Field(None, description=_defined("server_decode_tps"))
    client_lag_ms: float | None = Field(None, description=_defined("client_lag_ms"))
    http_status: int
    finish_reason: str | None
    server_kind: str | None
    prompt_counted_by: str | None = Field(description="how the prompt's length is known: the server's tokenizer, "
                                                      "or the usage it reported")
    usage_prompt_tokens: int | None
    usage_completion_tokens: int | None
    server_prompt_n: int | None = Field(description="llama-server timings: prompt tokens it evaluated")
    server_cache_n: int | None = Field(description="llama-server timings: prompt tokens it took from its cache "
                                                   "(prefix caching is never silent)")
    server_predicted_n: int | None
    server_predicted_ms: float | None
    n_events: int = Field(description="server-sent events in the stream")
    n_chunks: int = Field(description="text chunks (a chunk may hold several tokens)")
    n_progress: int = Field(description="prompt-progress events (llama-server return_progress)")
    server_prefill_chunks_ms: list[float] = Field(default_factory=list, description="the server's own account: its "
                                                  "prefill batch by batch, from its prompt-progress events")
    server_prefill_chunk_tokens: list[int] = Field(default_factory=list)


class DecodeBreakdown(_M):
    """Where the time between output tokens went (every token but the first), per token."""

    n_tokens: int
    decode_median_ms: float = Field(description="llama_decode + llama_synchronize")
    sample_median_ms: float
    detok_median_ms: float
    rest_median_ms: float = Field(description="the rest of the loop: handing the previous token over, the stop check")
    token_decode_ms: float = Field(description=_defined("token_decode_ms"))
    token_sample_ms: float = Field(description=_defined("token_sample_ms"))
    token_detok_ms: float = Field(description=_defined("token_detok_ms"))
    token_rest_ms: float = Field(description=_defined("token_rest_ms"))


class RunRecord(_M):
    run_id: int
    scenario: str
    iteration: int
    warmup: bool
    counted: bool = Field(description="included in statistics (not warm-up, not stopped early)")
    cold: bool = Field(False, description="the first run with a new shape and an outlier for its scenario "
                                          "(ttftui.cold): still counted, but likely paying one-time costs")
    cold_reason: str | None = None
    stop_reason: str
    n_prompt_tokens: int
    n_output_tokens: int
    ttft_ms: float = Field(description=_defined("ttft_ms"))
    tokenize_ms: float | None = Field(description=_defined("tokenize_ms") + " (null: a run against a server)")
    cache_prep_ms: float | None = Field(description=_defined("cache_prep_ms") + " (null: a run against a server)")
    prefill_ms: float | None = Field(description=_defined("prefill_ms") + " (null: a run against a server)")
    prefill_chunks_ms: list[float]
    prefill_chunk_tokens: list[int]
    first_sample_ms: float | None = Field(description=_defined("first_sample_ms") + " (null: a run against a server)")
    first_detok_ms: float | None = Field(description=_defined("first_detok_ms") + " (null: a run against a server)")
    unaccounted_ms: float = Field(description=_defined("unaccounted_ms"))
    unaccounted_pct: float = Field(description=_defined("unaccounted_pct"))
    prefill_tps: float | None = Field(description=_defined("prefill_tps"))
    decode_tps: float | None = Field(description=_defined("decode_tps"))
    tpot_ms: float | None = Field(description=_defined("tpot_ms"))
    e2e_ms: float = Field(description=_defined("e2e_ms"))
    itl_ms: list[float] = Field(description=_defined("itl_ms"))
    llama: LlamaCounters | None
    remote: RemoteRecord | None = Field(None, description="a run against a server (ttftui --url)")
    decode_breakdown: DecodeBreakdown | None = Field(None, description="where decode time went (the local engine)")
    telemetry: dict[str, float | int | None] | None = Field(
        None, description="per-run and per-phase telemetry (prefill = start to first token, decode = the rest); "
                          "prefill_samples / decode_samples: how many samples each phase's figures come from; "
                          "*_driver_*: from the GPU driver's own samples (telemetry.driver), each weighted by how "
                          "much of its period lies in the phase; *_gpu_driver_span_ms: the time those samples "
                          "cover (longer than a short phase: the figure then averages that span); "
                          "*_gpu_driver_coverage_pct: how much of the phase they cover")
    telemetry_gaps: dict[str, str] = Field(
        default_factory=dict, description="per phase (prefill, decode) whose telemetry figures are null although a "
                                          "sampler ran: why (shorter than the sampling interval, or the sampler "
                                          "fell behind)")
    output_text: str
    t_start_ms: float = Field(description="session time at which the run started")
    worker: str | None = Field(None, description="the Ray client worker (node:pid) that sent it (--ray)")


class FailedRun(_M):
    run_id: int
    scenario: str
    iteration: int
    warmup: bool
    error: str


class ScenarioSummary(_M):
    n_runs: int
    n_cold: int = Field(0, description="counted runs flagged cold (runs[].cold): still in the statistics")
    n_warmup: int
    n_failed: int
    n_prompt_tokens: int | None
    dominant_component: str | None = Field(description="TTFT component with the largest median")
    dominant_share_pct: float | None
    component_medians_ms: dict[str, float]
    metrics: dict[str, MetricSummary]
    goodput_pct: float | None = None


class SessionInfo(_M):
    id: str | None
    started_at: str | None
    status: str
    message: str | None
    duration_ms: float


class NoticeRecord(_M):
    t_ms: float
    level: str
    message: str


class AlertRecord(_M):
    t_ms: float
    rule: str
    state: str
    severity: str
    scenario: str | None
    metric: str
    statistic: str
    op: str
    threshold: float
    value: float | None
    run_id: int | None
    message: str


class ModelMemory(_M):
    weights_estimate_bytes: int | None = Field(description="tensor data in the GGUF file")
    kv_cache_estimate_bytes: int | None = Field(description="K+V cache for n_ctx (f16), from GGUF metadata")
    estimate_total_bytes: int | None
    measured_gpu_delta_bytes: int | None = Field(description="GPU memory used after load minus before load")
    measured_rss_delta_bytes: int | None = Field(
        description="process RSS after load minus before (mmap'd weights count only once touched)")


class TelemetryReport(_M):
    backend: str
    gpu_name: str | None
    interval_ms: float
    n_samples: int
    missed_ticks: int | None
    sampler_cpu_s: float | None = Field(description="CPU time the sampler thread used")
    sampler_cpu_pct_of_core: float | None
    achieved_interval_ms_mean: float | None
    achieved_interval_ms_max: float | None
    unavailable: dict[str, str] = Field(description="field -> why it is N/A")
    driver: dict[str, dict[str, float | int]] = Field(
        default_factory=dict, description="the GPU driver's own buffered samples (NVML nvmlDeviceGetSamples), per "
                                          "field: n_samples and the driver's period_ms (the median gap); the "
                                          "per-phase *_driver_* figures of runs[].telemetry come from them")
    driver_unavailable: dict[str, str] = Field(
        default_factory=dict, description="field -> why the driver's sample buffer could not be read")
    session: dict[str, float | int | None]
    model_memory: ModelMemory
    series: dict[str, list[float | None]] = Field(
        default_factory=dict, description="the samples over time, at most 2000 (every k-th when there were more): "
                                          "t_ms (session time) and each field (null: N/A), for plots")


class AlertStatus(_M):
    rule: str
    scenario: str | None
    severity: str
    state: str = Field(description="firing or cleared at the end of the session")
    times_fired: int


class CrashRecord(_M):
    """The engine's process died during the session; the runs before it are complete and counted."""

    signal: str | None = Field(description="e.g. SIGSEGV; null when it exited with a code")
    exit_code: int | None
    phase: str = Field(description="load, prepare, tokenize, cache_prep, prefill_chunk, first_sample, "
                                   "first_detok, decode or idle (between runs)")
    run_id: int | None
    scenario: str | None
    chunk: int | None = Field(description="0-based prefill chunk, when phase is prefill_chunk")
    n_chunks: int | None
    token_index: int | None = Field(description="0-based output token being computed, when phase is decode")
    pid: int | None
    t_ms: float
    message: str
    log_tail: list[str] = Field(description="the engine process's last stderr / llama.cpp log lines")


class FitRecord(_M):
    model: str = Field(description="a + b*n + c*n^2 (quadratic) or a + b*n (linear)")
    a: float
    b: float
    c: float | None = None
    r2: float | None
    residual_sd: float | None = Field(description="standard deviation of the residuals (y's unit)")
    cv_rmse: float | None = Field(None, description="leave-one-length-out prediction error (y's unit): how far the "
                                                  "model misses a length it was not given; part of every interval")
    n_points: int
    x_min: float
    x_max: float


class Prediction(_M):
    n_prompt_tokens: float
    ttft_ms: float
    low_ms: float | None = Field(description="95 % prediction interval: where one more run should land")
    high_ms: float | None


class SweepRecord(_M):
    """A scenario with prompt_tokens = [..]: how TTFT scales with the prompt (ttftui.fit)."""

    lengths: list[int]
    ttft: FitRecord | None = Field(description="ttft_ms against the prompt length, every counted run")
    prefill: FitRecord | None = Field(description="prefill_ms against the prompt length")
    chunk_per_token_vs_depth: FitRecord | None = Field(
        description="prefill chunk time per token (ms) against the KV depth the chunk starts at")
    predictions: list[Prediction] = Field(description="TTFT halfway between the measured lengths")


class WorkerRecord(_M):
    n_ok: int
    n_failed: int
    request_rate: float = Field(description="finished requests per second over this worker's own span")
    ttft_p50_ms: float | None
    ttft_p99_ms: float | None


class LoadRecord(_M):
    """A load scenario (concurrency or rate, against a server): its counted requests as a whole
    (ttftui.load). Per-request figures are in runs[] and summary, as for any scenario."""

    mode: Literal["closed", "open"] = Field(description="closed: a fixed number in flight; open: a request rate")
    concurrency: int | None
    rate: float | None = Field(description="requests per second the schedule asked for")
    arrival: str | None = Field(description="open loop: poisson or constant")
    sweep: str | None = Field(description="the scenario this one was expanded from (concurrency/rate = [..])")
    n_requests: int = Field(description="counted requests that ended")
    n_ok: int
    n_failed: int
    n_good: int | None = Field(description="finished requests that met every per-run rule (null: no per-run rule)")
    span_s: float = Field(description="the first counted request's start -> the last one's end")
    request_rate: float = Field(description="finished counted requests per second over the span")
    goodput_rps: float | None = Field(description="n_good per second over the span (vLLM / AIPerf goodput)")
    output_tps: float = Field(description="output tokens of the finished counted requests per second over the span")
    max_in_flight: int = Field(description="the most requests of this scenario in flight at once")
    mean_in_flight: float = Field(description="requests in flight, time-weighted over the span")
    client_lag_p50_ms: float | None = Field(description=_defined("client_lag_ms") + "; median over counted requests")
    client_lag_max_ms: float | None
    server_queue_source: str | None = Field(None, description="the server's own view of its queue, polled while the "
                                                              "counted requests ran: llama-server /metrics or /slots")
    server_samples: int = 0
    server_processing_max: int | None = Field(None, description="the server's own account: most requests it was "
                                                                "computing at once")
    server_deferred_max: int | None = Field(None, description="the server's own account: most requests waiting for "
                                                              "a slot (llama-server requests_deferred)")
    server_deferred_mean: float | None = None
    workers: dict[str, WorkerRecord] | None = Field(None, description="Ray client workers (--ray): each one's counted "
                                                    "requests; the figures above and the summary pool them all")


class WorkerLostRecord(_M):
    t_ms: float
    worker: str
    reason: str
    lost_runs: list[int] = Field(description="runs it had in flight: they ended failed")
    unsent: int = Field(description="requests of its share never sent")


class HostEngineRecord(_M):
    """One engine a Ray engine host loaded (one per matrix cell it took, or one with --per-node)."""

    engine: str
    engine_version: str | None
    synthetic: bool
    synthetic_reason: str | None
    load_ms: float | None
    model: ModelFacts
    device: DeviceFacts
    engine_pid: int | None = Field(None, description="the process llama.cpp ran in, on the host's node")


class HostRecord(_M):
    """A Ray engine host (--per-node, cluster.matrix): what it loaded, its own figures, its node's
    telemetry. The report's summary pools every host's raw samples per scenario."""

    engines: list[HostEngineRecord]
    summary: dict[str, ScenarioSummary] = Field(description="per scenario, this host's runs only")
    telemetry: TelemetryReport | None = Field(None, description="the host's own sampler on its node: GPU "
                                                                  "and its engine process")


class Report(_M):
    schema_version: int = SCHEMA_VERSION
    kind: Literal["ttftui.report"] = REPORT_KIND
    ttftui_version: str
    synthetic: bool = Field(description="true: timings come from the synthetic cost model, not measured")
    synthetic_reason: str | None
    engine: str | None
    engine_version: str | None
    engine_host: str | None = Field(None, description="process: llama.cpp ran in a child process of its own; "
                                                      "thread: inside ttftui's process")
    session: SessionInfo
    device: DeviceFacts | None
    model: ModelFacts | None
    load_ms: float | None
    cold_ttft_ms: float | None = Field(description="load_ms + TTFT of the session's first run")
    percentiles: list[float]
    definitions: dict[str, str]
    config: dict[str, Any]
    runs: list[RunRecord]
    failed_runs: list[FailedRun]
    summary: dict[str, ScenarioSummary]
    notices: list[NoticeRecord]
    alerts: list[AlertRecord] = Field(default_factory=list, description="every firing/cleared transition")
    alert_status: list[AlertStatus] = Field(default_factory=list, description="each rule's state at the end")
    telemetry: TelemetryReport | None = None
    crash: CrashRecord | None = Field(None, description="set when the engine's process died during the session")
    sweeps: dict[str, SweepRecord] = Field(default_factory=dict, description="per swept scenario: fits and predictions")
    load: dict[str, LoadRecord] = Field(default_factory=dict, description="per load scenario: throughput, goodput, "
                                                                          "requests in flight, client lag")
    workers_lost: list[WorkerLostRecord] = Field(default_factory=list, description="Ray client workers or engine "
                                                                                  "hosts that died: what was lost")
    hosts: dict[str, HostRecord] = Field(default_factory=dict, description=(
        "Ray engine hosts (--per-node, cluster.matrix), by worker (node:pid): each one's engines, figures and "
        "telemetry. Top-level engine, model and device are then the first host's; synthetic is true if any "
        "host's engine was"))
    source: dict[str, Any] = Field(default_factory=dict, description="live session or replayed file")


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _summary(s: Summary) -> MetricSummary:
    return MetricSummary(**{k: _clean(v) for k, v in s.as_dict().items()})


def _run_record(m: RunMetrics, fin: Any = None, cold_reason: str | None = None, worker: str | None = None,
                interval_ms: float | None = None, series: dict[str, gpu_driver.Series] | None = None) -> RunRecord:
    driver = gpu_driver.phase_figures(series or {}, m.t_start_ns, m.t_start_ns + int(m.ttft_ms * 1e6), m.t_end_ns)
    remote = None
    r = getattr(fin, "remote", None)
    if r is not None:
        remote = RemoteRecord(
            **{k: m.extra.get(k) for k in RemoteRecord.model_fields if k in registry.BY_NAME},
            http_status=r.status, finish_reason=r.finish_reason, server_kind=r.server_kind,
            prompt_counted_by=r.prompt_counted_by, usage_prompt_tokens=r.usage_prompt_tokens,
            usage_completion_tokens=r.usage_completion_tokens, server_prompt_n=r.server_prompt_n,
            server_cache_n=r.server_cache_n, server_predicted_n=r.server_predicted_n,
            server_predicted_ms=r.server_predicted_ms, n_events=r.n_events, n_chunks=r.n_chunks,
            n_progress=r.n_progress, server_prefill_chunks_ms=list(r.server_chunks_ms),
            server_prefill_chunk_tokens=list(r.server_chunk_tokens),
        )
    breakdown = None
    tp = getattr(fin, "token_parts", None)
    if tp is not None and tp.n:
        breakdown = DecodeBreakdown(
            n_tokens=tp.n, decode_median_ms=tp.decode_median_ns / 1e6, sample_median_ms=tp.sample_median_ns / 1e6,
            detok_median_ms=tp.detok_median_ns / 1e6, rest_median_ms=tp.rest_median_ns / 1e6,
            **{k: m.extra[k] for k in ("token_decode_ms", "token_sample_ms", "token_detok_ms", "token_rest_ms")})
    llama = None
    if m.llama is not None:
        c = m.llama
        llama = LlamaCounters(t_p_eval_ms=c.t_p_eval_ms, n_p_eval=c.n_p_eval, t_eval_ms=c.t_eval_ms, n_eval=c.n_eval,
                              counters_enabled=c.counters_enabled, prefill_compared_ms=c.prefill_compared_ms,
                              prefill_diff_pct=c.prefill_diff_pct)
    return RunRecord(
        run_id=m.run_id, scenario=m.scenario, iteration=m.iteration, warmup=m.warmup, counted=m.counted,
        stop_reason=m.stop_reason, n_prompt_tokens=m.n_prompt_tokens, n_output_tokens=m.n_output_tokens,
        ttft_ms=m.ttft_ms, tokenize_ms=m.tokenize_ms, cache_prep_ms=m.cache_prep_ms, prefill_ms=m.prefill_ms,
        prefill_chunks_ms=list(m.prefill_chunks_ms), prefill_chunk_tokens=list(m.prefill_chunk_tokens),
        first_sample_ms=m.first_sample_ms, first_detok_ms=m.first_detok_ms, unaccounted_ms=m.unaccounted_ms,
        unaccounted_pct=m.unaccounted_pct, prefill_tps=m.prefill_tps, decode_tps=m.decode_tps, tpot_ms=m.tpot_ms,
        e2e_ms=m.e2e_ms, itl_ms=list(m.itl_ms), llama=llama, remote=remote, decode_breakdown=breakdown,
        cold=cold_reason is not None, cold_reason=cold_reason,
        telemetry={**{k: v for k, v in m.extra.items() if registry.BY_NAME.get(k) is None
                      or registry.BY_NAME[k].source == "telemetry"}, **driver} or None,
        output_text=m.output_text, t_start_ms=m.t_start_ns / 1e6, worker=worker,
        telemetry_gaps=telemetry_gaps(m, interval_ms, driver, series),
    )


def _scenario_summary(s: ScenarioStats, goodput_pct: float | None = None, n_cold: int = 0) -> ScenarioSummary:
    return ScenarioSummary(
        goodput_pct=goodput_pct, n_cold=n_cold,
        n_runs=s.n_runs, n_warmup=s.n_warmup, n_failed=s.n_failed, n_prompt_tokens=s.n_prompt_tokens,
        dominant_component=s.dominant_component, dominant_share_pct=s.dominant_share_pct,
        component_medians_ms=s.component_medians_ms,
        metrics={k: _summary(v) for k, v in s.metrics.items()},
    )


def report_percentiles(state: SessionState) -> list[float]:
    return list((state.config or Config()).report.percentiles)


def sampling_interval_ms(state: SessionState, worker: str | None) -> float | None:
    """The sampling interval where ``worker`` ran (None: no sampler there, or nothing it can sample)."""
    st = state.telemetry_status if worker is None else state.worker_telemetry_status.get(worker)
    return st.interval_ms if st is not None and st.backend != "none" else None


def _telemetry(state: SessionState, worker: str | None = None, model: ModelFacts | None = None,
               driver: dict[str, gpu_driver.Series] | None = None) -> TelemetryReport | None:
    """The session's telemetry, or (``worker``) a Ray engine host's own; ``driver``: the GPU driver's
    samples there, as the runs' figures used them."""
    st = state.telemetry_status if worker is None else state.worker_telemetry_status.get(worker)
    if st is None:
        return None
    log = state.telemetry_of(worker)
    samples = [s for s in log if s.mark is None]
    marked = {s.mark: s for s in log if s.mark is not None}

    def vals(field: str) -> list[float]:
        return [v for s in samples if (v := getattr(s, field)) is not None]

    def delta(field: str) -> int | None:
        a, b = marked.get("before_load"), marked.get("after_load")
        if a is None or b is None or getattr(a, field) is None or getattr(b, field) is None:
            return None
        return int(getattr(b, field) - getattr(a, field))

    gaps = [(b.t_ns - a.t_ns) / 1e6 for a, b in zip(samples, samples[1:])]
    dur_s = (state.last_t_ns - (state.session.t_ns if state.session else 0)) / 1e9
    mean = lambda xs: (sum(xs) / len(xs)) if xs else None  # noqa: E731
    if worker is None:
        model = state.engine.model if state.engine else None
    w = model.weights_bytes if model else None
    kv = model.kv_cache_bytes if model else None
    return TelemetryReport(
        backend=st.backend, gpu_name=st.gpu_name, interval_ms=st.interval_ms,
        n_samples=len(samples), missed_ticks=st.missed_ticks, sampler_cpu_s=st.sampler_cpu_s,
        sampler_cpu_pct_of_core=(st.sampler_cpu_s / dur_s * 100) if st.sampler_cpu_s is not None and dur_s > 0 else None,
        achieved_interval_ms_mean=mean(gaps), achieved_interval_ms_max=max(gaps) if gaps else None,
        unavailable=dict(st.unavailable),
        driver=gpu_driver.periods(driver or {}),
        driver_unavailable=dict(st.driver_unavailable),
        session={
            "gpu_mem_peak_bytes": max(vals("gpu_mem_used_bytes"), default=None),
            "gpu_mem_total_bytes": max(vals("gpu_mem_total_bytes"), default=None),
            "gpu_busy_mean_pct": mean(vals("gpu_busy_pct")),
            "gpu_busy_max_pct": max(vals("gpu_busy_pct"), default=None),
            "gpu_power_mean_w": mean(vals("gpu_power_w")),
            "gpu_temp_max_c": max(vals("gpu_temp_c"), default=None),
            "rss_peak_bytes": max(vals("rss_bytes"), default=None),
            "proc_cpu_mean_pct": mean(vals("proc_cpu_pct")),
            "sys_cpu_mean_pct": mean(vals("sys_cpu_pct")),
        },
        series=_series(samples),
        model_memory=ModelMemory(
            weights_estimate_bytes=w, kv_cache_estimate_bytes=kv,
            estimate_total_bytes=(w + kv) if w is not None and kv is not None else None,
            measured_gpu_delta_bytes=delta("gpu_mem_used_bytes"), measured_rss_delta_bytes=delta("rss_bytes"),
        ),
    )


SERIES_FIELDS = ("gpu_busy_pct", "gpu_mem_used_bytes", "proc_cpu_pct", "sys_cpu_pct", "rss_bytes")
MAX_SERIES = 2000


def _series(samples: list[Any]) -> dict[str, list[float | None]]:
    if not samples:
        return {}
    step = -(-len(samples) // MAX_SERIES)
    picked = samples[::step]
    out: dict[str, list[float | None]] = {"t_ms": [s.t_ns / 1e6 for s in picked]}
    for f in SERIES_FIELDS:
        vals = [getattr(s, f) for s in picked]
        if any(v is not None for v in vals):
            out[f] = [None if v is None else float(v) for v in vals]
    return out


def _alert_status(state: SessionState) -> list[AlertStatus]:
    out: dict[tuple[str, str | None], AlertStatus] = {}
    for a in state.alerts:
        key = (a.rule, a.scenario)
        prev = out.get(key)
        fired_n = (prev.times_fired if prev else 0) + (a.state == "firing")
        out[key] = AlertStatus(rule=a.rule, scenario=a.scenario, severity=a.severity, state=a.state, times_fired=fired_n)
    return list(out.values())


def _sweeps(state: SessionState, runs: list[RunMetrics]) -> dict[str, SweepRecord]:
    if state.config is None:
        return {}
    sweep_of = {s.name: s.sweep for s in state.config.scenarios if s.sweep}
    out = {}
    for fam, f in sweep_fits(runs, sweep_of).items():
        fits = {k: (FitRecord(**f[k].as_dict()) if f[k] is not None else None)  # type: ignore[union-attr]
                for k in ("ttft", "prefill", "chunk_per_token_vs_depth")}
        out[fam] = SweepRecord(lengths=f["lengths"], predictions=[Prediction(**p) for p in f["predictions"]],  # type: ignore[arg-type]
                               **fits)
    return out


def _load(state: SessionState) -> dict[str, LoadRecord]:
    from dataclasses import asdict

    cfg = state.config
    return {name: LoadRecord(**asdict(f), sweep=cfg.scenario(name).load if cfg is not None else None)
            for name, f in session_load(state).items()}  # asdict turns the workers' figures into dicts too


def _crash(state: SessionState) -> CrashRecord | None:
    c = state.crash
    if c is None:
        return None
    return CrashRecord(signal=c.signal, exit_code=c.exit_code, phase=c.phase, run_id=c.run_id, scenario=c.scenario,
                       chunk=c.chunk, n_chunks=c.n_chunks, token_index=c.token_index, pid=c.pid,
                       t_ms=c.t_ns / 1e6, message=c.message, log_tail=list(c.log_tail))


def _hosts(state: SessionState, runs: list[RunMetrics], pcts: list[float],
           driver: dict[str | None, dict[str, gpu_driver.Series]]) -> dict[str, HostRecord]:
    """Each Ray engine host's engines, own per-scenario figures and telemetry."""
    from ttftui.metrics import scenario_stats

    engines: dict[str, list[Any]] = {}
    for e in state.engines:
        if e.worker is not None:
            engines.setdefault(e.worker, []).append(e)
    if not engines:
        return {}
    by: dict[tuple[str, str], list[RunMetrics]] = {}
    failed: dict[tuple[str, str], int] = {}
    worker_of = {r.run_id: r.started.worker for r in state.runs}
    for m in runs:
        w = worker_of.get(m.run_id)
        if w is not None:
            by.setdefault((w, m.scenario), []).append(m)
    for r in state.runs:
        if r.failed is not None and r.started.worker is not None:
            key = (r.started.worker, r.scenario)
            failed[key] = failed.get(key, 0) + 1
    out = {}
    for w, es in engines.items():
        names = [n for n in scenario_order(state) if (w, n) in by or (w, n) in failed]
        out[w] = HostRecord(
            engines=[HostEngineRecord(engine=e.engine, engine_version=e.engine_version, synthetic=e.synthetic,
                                      synthetic_reason=e.synthetic_reason, load_ms=e.load_ms, model=e.model,
                                      device=e.device, engine_pid=e.host_pid) for e in es],
            summary={n: _scenario_summary(scenario_stats(n, by.get((w, n), []), failed.get((w, n), 0), pcts))
                     for n in names},
            telemetry=_telemetry(state, w, es[-1].model, driver.get(w)),
        )
    return out


def build_report(state: SessionState, source: dict[str, Any] | None = None) -> Report:
    pcts = report_percentiles(state)
    rules = list(state.config.alerts) if state.config is not None else []
    eng = state.engine
    runs = [r.metrics for r in state.runs if r.metrics is not None]
    cold_flags = cold_runs(runs)
    failed = [
        FailedRun(run_id=r.run_id, scenario=r.scenario, iteration=r.started.iteration, warmup=r.warmup, error=r.failed)
        for r in state.runs if r.failed is not None
    ]
    first = runs[0] if runs else None
    cold = ((eng.load_ms + first.ttft_ms)
            if (eng is not None and eng.load_ms is not None and first is not None and first.run_id == 1) else None)
    fin = state.finished
    start_t = state.session.t_ns if state.session else 0
    driver = {w: gpu_driver.build_series(state.gpu_driver_of(w))
              for w in {None, *state.worker_gpu_driver}}  # the GPU driver's samples, per machine
    return Report(
        ttftui_version=state.session.ttftui_version if state.session else __version__,
        synthetic=bool(state.synthetic),
        synthetic_reason=eng.synthetic_reason if eng else None,
        engine=eng.engine if eng else None,
        engine_version=eng.engine_version if eng else None,
        engine_host=eng.host if eng else None,
        crash=_crash(state),
        sweeps=_sweeps(state, runs),
        load=_load(state),
        workers_lost=[WorkerLostRecord(t_ms=w.t_ns / 1e6, worker=w.worker, reason=w.reason,
                                       lost_runs=list(w.lost_runs), unsent=w.unsent) for w in state.workers_lost],
        session=SessionInfo(
            id=state.session.session_id if state.session else None,
            started_at=state.session.started_at if state.session else None,
            status=fin.status if fin else "incomplete",
            message=fin.message if fin else None,
            duration_ms=(state.last_t_ns - start_t) / 1e6,
        ),
        device=eng.device if eng else None,
        model=eng.model if eng else None,
        load_ms=eng.load_ms if eng else None,
        cold_ttft_ms=cold,
        percentiles=pcts,
        definitions=DEFINITIONS,
        config=state.session.config if state.session else {},
        runs=[_run_record(r.metrics, r.finished, cold_flags.get(r.run_id), r.started.worker,
                          sampling_interval_ms(state, r.started.worker), driver.get(r.started.worker))
              for r in state.runs if r.metrics is not None],
        failed_runs=failed,
        summary={k: _scenario_summary(v, goodput(rules, k, [m for m in runs if m.scenario == k]),
                                      sum(1 for m in runs if m.scenario == k and m.run_id in cold_flags))
                 for k, v in session_stats(state, pcts).items()},
        notices=[NoticeRecord(t_ms=n.t_ns / 1e6, level=n.level, message=n.message) for n in state.notices],
        alerts=[
            AlertRecord(t_ms=a.t_ns / 1e6, rule=a.rule, state=a.state, severity=a.severity, scenario=a.scenario,
                        metric=a.metric, statistic=a.statistic, op=a.op, threshold=a.threshold, value=a.value,
                        run_id=a.run_id, message=a.message)
            for a in state.alerts
        ],
        alert_status=_alert_status(state),
        telemetry=_telemetry(state, driver=driver[None]),
        hosts=_hosts(state, runs, pcts, driver),
        source=source or {},
    )


def report_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


_CSV_ID = ("scenario", "run_id", "iteration", "warmup", "counted", "stop_reason", "n_prompt_tokens",
           "n_output_tokens")
_CSV_TAIL = ("itl_p50_ms", "itl_max_ms", "prefill_chunks_ms", "llama_t_p_eval_ms", "synthetic", "device")


def csv_columns() -> tuple[str, ...]:
    """One row per run: who it was, then every per-run metric of ttftui.registry with csv=True (in
    the registry's order), then ITL's median and max, the prefill chunks, llama.cpp's prefill time."""
    return (*_CSV_ID, *registry.names(csv=True), *_CSV_TAIL)


def _run_value(r: RunRecord, name: str) -> Any:
    if name == "llama_prefill_diff_pct":
        return r.llama.prefill_diff_pct if r.llama else None
    if name in RunRecord.model_fields:
        return getattr(r, name)
    if r.remote is not None and name in RemoteRecord.model_fields:
        return getattr(r.remote, name)
    if r.decode_breakdown is not None and name in DecodeBreakdown.model_fields:
        return getattr(r.decode_breakdown, name)
    return (r.telemetry or {}).get(name)


def report_csv(report: Report) -> str:
    import numpy as np

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_columns())
    dev = report.device.name if report.device else ""
    for r in report.runs:
        itl = np.asarray(r.itl_ms) if r.itl_ms else None
        w.writerow([
            r.scenario, r.run_id, r.iteration, int(r.warmup), int(r.counted), r.stop_reason, r.n_prompt_tokens,
            r.n_output_tokens,
            *(_na(_run_value(r, name)) for name in registry.names(csv=True)),
            _na(float(np.percentile(itl, 50)) if itl is not None else None),
            _na(float(itl.max()) if itl is not None else None),
            ";".join(f"{c:.6f}" for c in r.prefill_chunks_ms),
            _na(r.llama.t_p_eval_ms if r.llama else None),
            int(report.synthetic), dev,
        ])
    return buf.getvalue()


def _na(v: float | None) -> Any:
    return "" if v is None else v


def report_schema() -> dict[str, Any]:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://ttftui.invalid/schema/report-v{SCHEMA_VERSION}.json"
    return schema
