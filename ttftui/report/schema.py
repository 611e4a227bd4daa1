"""The report's schema: the pydantic models below *are* it. ``ttftui schema`` prints it,
``schema/report.schema.json`` is the published copy (a test keeps them equal), and ``compare`` reads
reports through these same models (leniently, for older schema versions).

Conventions: units in key names (``_ms``, ``_bytes``, ``_pct``, ``_tps`` = tokens per second),
numbers as numbers, unavailable values as ``null`` (never NaN).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from pydantic import BaseModel, ConfigDict, Field, create_model

from ttftui.core import registry
from ttftui.core.events import AlertChanged, DeviceFacts, DiffusionFacts, ModelFacts

SCHEMA_VERSION = 5  # 2: runs against a server (remote), the engine's phases nullable, crash, engine_host;
# 3: load scenarios (load, remote.client_lag_ms); 4: Ray engine hosts (hosts, runs[].worker of a host);
# 5: diffusion models (diffusion, runs[].diffusion), conversations and shared prefixes (runs[].conversation,
# runs[].prefix), profiled runs (runs[].ops, ops_cost), a load's server cache figures (load[].server_cache_*)
REPORT_KIND = "ttftui.report"


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetricSummary(BaseModel):
    """n, mean, sd (sample, null below 2), min, max and one key per configured percentile (p50, …)."""

    model_config = ConfigDict(extra="allow")
    n: int = Field(ge=0)
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
    """A report field's description: the metric's definition in ttftui.core.registry."""
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
    usage_cached_tokens: int | None = Field(None, description="usage.prompt_tokens_details.cached_tokens: prompt "
                                                              "tokens the server took from its prefix cache (vLLM, "
                                                              "SGLang); with prompt_tokens, its cache hit rate")
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
    trace_reusable_tokens: int | None = Field(None, description="a trace's request: its prompt tokens in leading "
                                                                "blocks an earlier request of the phase already sent "
                                                                "(what an unbounded prefix cache could serve)")


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


class DiffusionRecord(_M):
    """A diffusion model's run (Dream, LLaDA, ...), step by step: TTFT is the time to the first readable
    token (the first answer position committed); the named figures are also under ``figures``."""

    schedule: str
    algorithm: str
    sampling: str = Field(description="greedy (arg-max, NumPy) or llama.cpp sampler chain (top_k / top_p, seeded)")
    steps_planned: int
    steps: int = Field(description="steps taken (fewer than planned when confidence_threshold committed early)")
    answer_tokens: int
    canvas_tokens: int = Field(description="prompt + answer positions: what every step's forward pass computes")
    canvas_ms: float = Field(description=_defined("canvas_ms"))
    first_commit_ms: float | None = Field(description=_defined("first_commit_ms"))
    first_commit_step: int | None
    first_readable_ms: float | None = Field(description="= ttft_ms: t0 -> the first answer position's text")
    first_readable_step: int | None
    final_ms: float = Field(description=_defined("final_ms"))
    per_step_forward_ms: list[float] = Field(description="per step: llama_decode of the whole canvas + llama_synchronize")
    per_step_logits_ms: list[float] = Field(description="per step: llama_get_logits, the logits buffer (selection reads the rows "
                                                 "it needs in place)")
    per_step_select_ms: list[float] = Field(description="per step: sampling and confidences, choosing the positions")
    per_step_commit_ms: list[float] = Field(description="per step: the canvas written, the committed tokens' text")
    per_step_end_ms: list[float] = Field(description="per step: when it ended, since t0")
    per_step_commits: list[int] = Field(description="per step: answer positions committed")


class ConversationRecord(_M):
    """A conversation's turn: the conversation so far plus a new user message, and how much of that
    prompt came from a cache (also under ``figures``: cached_tokens_count, new_tokens_count, cache_hit_pct)."""

    conversation: str = Field(description="NAME@CACHE: the conversation this turn belongs to")
    turn: int
    turns: int
    cache: Literal["keep", "off"]
    depth: int = Field(description="prompt tokens of this turn")
    cached_tokens: int
    new_tokens: int
    evaluated_tokens: int | None = Field(description="prompt tokens evaluated as the engine itself counted them "
                                                     "(llama.cpp's n_p_eval, a server's timings.prompt_n)")
    counted_by: str | None


class PrefixRecord(_M):
    """A request whose prompt starts with its scenario's shared prefix (kind = shared_prefix)."""

    group: str = Field(description="the scenario its keep and off variants were expanded from")
    cache: Literal["keep", "off"]
    hit: bool = Field(description="the prefix's KV cells were restored from the saved state, not evaluated")
    prefix_tokens: int
    depth: int
    cached_tokens: int
    new_tokens: int
    evaluated_tokens: int | None
    counted_by: str | None
    reuse_ms: float | None = Field(description=_defined("prefix_reuse_ms"))
    save_ms: float | None = Field(description=_defined("prefix_save_ms"))


class OpKindRecord(_M):
    kind: str = Field(description="ggml's name of the operation (MUL_MAT, FLASH_ATTN_EXT, ROPE, ...); MUL_MAT "
                                  "(attention): the kq / kqv matmuls")
    ms: float
    pct: float = Field(description="of the phase's llama_decode span")
    count: int
    bytes: int = Field(description="bytes the nodes wrote (copies: CPY, CONT, DUP, GET_ROWS)")


class LayerRecord(_M):
    layer: int | None = Field(description="None: the embeddings and the output head")
    ms: float


class OpsPhaseRecord(_M):
    span_ms: float = Field(description="llama_decode + synchronize spans of the phase")
    compute_ms: float = Field(description="the observed nodes' compute; span - compute is what profiling adds")
    kinds: list[OpKindRecord]
    layers: list[LayerRecord]


class OpsRecord(_M):
    """A profiled run (engine.profile_ops, scenario NAME@ops): its graph's operations by kind and layer,
    for its whole prefill, each prefill chunk and decode (every token's graph together)."""

    mode: Literal["ops", "layers"]
    prefill: OpsPhaseRecord
    chunks: list[OpsPhaseRecord]
    decode: OpsPhaseRecord | None


class OpsCostRecord(_M):
    """What profiling did to the prefill it measured: the twin's prefill against its plain scenario's."""

    plain_scenario: str
    plain_prefill_p50_ms: float | None
    profiled_prefill_p50_ms: float | None
    ratio: float | None = Field(description="profiled / plain: 1.0 = profiling cost nothing")


class RunRecord(_M):
    run_id: int
    scenario: str
    iteration: int
    warmup: bool
    counted: bool = Field(description="included in statistics (not warm-up, not stopped early)")
    cold: bool = Field(False, description="the first run with a new shape and an outlier for its scenario: "
                                          "still counted, but likely paying one-time costs")
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
    diffusion: DiffusionRecord | None = Field(None, description="a diffusion model's run, step by step")
    conversation: ConversationRecord | None = Field(None, description="a conversation's turn (kind = conversation)")
    prefix: PrefixRecord | None = Field(None, description="a request with a shared prefix (kind = shared_prefix)")
    ops: OpsRecord | None = Field(None, description="a profiled run (engine.profile_ops): operations by kind and layer")
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
    figures: dict[str, float | None] = Field(
        default_factory=dict, description="per-run values of registry metrics that have no field of their own "
                                          "above (see definitions)")
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


def _event_record(event: type, name: str) -> type[BaseModel]:
    """A report record holding an event's fields, its time in ms after the session's start instead of
    its ns: a field added to the event is in the report (and its schema) with nothing else to edit."""
    hints = get_type_hints(event, include_extras=True)
    fields: dict[str, Any] = {"t_ms": (float, Field(description="ms after the session started"))}
    for f in dataclasses.fields(event):
        if f.name in ("type", "t_ns"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else ...
        fields[f.name] = (hints[f.name], default)
    return create_model(name, __base__=_M, **fields)


AlertRecord = _event_record(AlertChanged, "AlertRecord")  # every firing/cleared transition of an alert rule


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
    """A scenario with prompt_tokens = [..]: how TTFT scales with the prompt."""

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
    """A load scenario (concurrency or rate, against a server): its counted requests as a
    whole. Per-request figures are in runs[] and summary, as for any scenario."""

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
    server_cache_hit_pct: float | None = Field(None, description="the server's own account, request by request "
                                                                 "(llama-server timings.cache_n, usage cached_tokens): "
                                                                 "cached / prompt tokens of the counted requests that "
                                                                 "reported one, x 100 (token-weighted)")
    server_cache_reported: int = Field(0, description="counted requests whose answer gave a cached-token count")
    server_metrics_cache_hit_pct: float | None = Field(
        None, description="the server's /metrics prefix-cache counters (vLLM prefix_cache_hits / queries, SGLang "
                          "cached_tokens / prompt_tokens), their difference from the last reading before the first "
                          "counted request to the first after the last one, x 100 (server-wide: other traffic counts)")
    server_metrics_cache_queried: int | None = Field(None, description="prompt tokens the server looked up in its "
                                                                       "prefix cache meanwhile, by those counters")
    trace_reusable_pct: float | None = Field(None, description="a trace: the share of the counted requests' prompt "
                                                               "tokens in leading blocks an earlier request had sent, "
                                                               "x 100: what an unbounded prefix cache could serve, "
                                                               "beside server_cache_hit_pct (what it did)")
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
    diffusion: DiffusionFacts | None = Field(None, description="the model is a diffusion LM: how it generates "
                                                               "(runs[].diffusion has each run's steps)")
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
    ops_cost: dict[str, OpsCostRecord] = Field(default_factory=dict, description="per profiled twin (NAME@ops): its "
                                                                                 "prefill against the plain runs'")
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


def report_schema() -> dict[str, Any]:
    schema = Report.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://ttftui.invalid/schema/report-v{SCHEMA_VERSION}.json"
    return schema


# ---------------------------------------------------------------------------- reading reports back
def lenient(model: type, *, required: tuple[str, ...] = (), typed: dict[str, type] | None = None) -> type[BaseModel]:
    """The report read back (``compare``, the dashboard's baseline column): ``model``'s own shape,
    but every field may be missing (an older schema's report lacks what later schemas added; a list
    or a mapping is then empty, anything else null) except those ``required``, and unknown keys are
    ignored. What is there is checked strictly: a number must be a finite JSON number, not text that
    looks like one. ``typed`` gives a field kept as a plain mapping its model (the session's config)."""
    return _lenient(model, {}, required, typed or {})


def _lenient(model: type, done: dict[type, type[BaseModel]], required: tuple[str, ...] = (),
             typed: dict[str, type] | None = None) -> type[BaseModel]:
    if model in done:
        return done[model]
    if isinstance(model, type) and issubclass(model, BaseModel):
        fields = {n: (f.annotation, f.metadata) for n, f in model.model_fields.items()}
        extra = model.model_config.get("extra") == "allow"
    else:  # a dataclass of the event vocabulary (DeviceFacts, ModelFacts)
        hints = get_type_hints(model, include_extras=True)
        fields = {f.name: (hints[f.name], []) for f in dataclasses.fields(model)}
        extra = False
    ann: dict[str, Any] = {}
    ns: dict[str, Any] = {"__annotations__": ann, "__module__": __name__,
                          "model_config": ConfigDict(extra="allow" if extra else "ignore", strict=True,
                                                     allow_inf_nan=False)}
    for name, (hint, meta) in fields.items():
        if typed and name in typed:
            hint, meta = typed[name], []
        t = _lenient_type(hint, done)
        if meta:
            t = Annotated[t, *meta]
        origin = get_origin(hint)
        if name in required:
            ann[name] = t
        elif origin in (list, tuple):
            ann[name], ns[name] = t, Field(default_factory=list)
        elif origin is dict:
            ann[name], ns[name] = t, Field(default_factory=dict)
        else:
            ann[name], ns[name] = t | None, None
    if extra:  # a summary's statistics: one key per configured percentile
        ann["__pydantic_extra__"] = dict[str, float | None]
        ns["__pydantic_extra__"] = Field(init=False)
    done[model] = type(f"Lenient{model.__name__}", (BaseModel,), ns)
    return done[model]


def _lenient_type(t: Any, done: dict[type, type[BaseModel]]) -> Any:
    origin, args = get_origin(t), get_args(t)
    if origin is Annotated:
        return Annotated[_lenient_type(args[0], done), *args[1:]]
    if origin in (Union, types.UnionType):
        return functools.reduce(operator.or_, (_lenient_type(a, done) for a in args))
    if origin in (list, tuple):  # a JSON array either way
        return list[_lenient_type(args[0], done)] if args else list
    if origin is dict:
        return dict[args[0], _lenient_type(args[1], done)]
    if isinstance(t, type) and (issubclass(t, BaseModel) or dataclasses.is_dataclass(t)):
        return _lenient(t, done)
    return t


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else getattr(obj, key, None)


def run_value(run: Any, name: str) -> Any:
    """A registry metric's value in one run of a report (a :class:`RunRecord`, or the same as a
    dict): at the run's top level, or where the report keeps it (the server's account under
    ``remote``, the per-token parts under ``decode_breakdown``, telemetry figures under
    ``telemetry``, any other registry metric under ``figures``). The CSV's columns and ``compare``'s
    per-run samples both read it here."""
    if name == "llama_prefill_diff_pct":
        return _get(_get(run, "llama") or {}, "prefill_diff_pct")
    if name in RunRecord.model_fields:
        return _get(run, name)
    for part, model in (("remote", RemoteRecord), ("decode_breakdown", DecodeBreakdown)):
        if name in model.model_fields and (sub := _get(run, part)) is not None:
            return _get(sub, name)
    return {**(_get(run, "telemetry") or {}), **(_get(run, "figures") or {})}.get(name)
