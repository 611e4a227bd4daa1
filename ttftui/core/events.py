"""The one event stream every part of ttftui speaks.

Engines, the telemetry sampler and the replay reader *produce* these events; the reducer, the
recorder, the headless reporter and the dashboard only *consume* them. Events are frozen, slotted
dataclasses (cheap to create in the engine's token loop) and carry a ``type`` tag so that one
pydantic ``TypeAdapter`` can turn them into JSON lines and back, with validation, for recordings.

Times: ``t_ns`` is nanoseconds since the session's start, on ``time.perf_counter_ns()``'s clock,
taken in the thread that did the work. Durations are integer nanoseconds (``*_ns``) so that sums are
exact; reports convert to milliseconds.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import AfterValidator, ConfigDict, Field, TypeAdapter

from ttftui.core import registry

PhaseName = Literal["tokenize", "cache_prep", "prefill_chunk", "first_sample", "first_detok", "canvas"]

# The TTFT components the engine times, in the order they happen (ttftui.core.registry; ``unaccounted`` is
# derived from them).
COMPONENTS: tuple[str, ...] = registry.measured_components()

_frozen = dict(frozen=True, slots=True, kw_only=True)

# What a recording may say is bounded where it is read: integers fit 64 bits (a 400-digit "time"
# would overflow every float computation downstream) and floats are finite (NaN is not a time).
Int64 = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]


def _finite_json(v: Any) -> Any:
    """A JSON value (the config and host facts echoed in a session) with finite numbers only."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError("numbers must be finite")
    if isinstance(v, int) and not isinstance(v, bool) and not -(2**63) <= v < 2**63:
        raise ValueError("integer out of range")
    if isinstance(v, dict):
        for x in v.values():
            _finite_json(x)
    elif isinstance(v, list):
        for x in v:
            _finite_json(x)
    return v


JsonDict = Annotated[dict[str, Any], AfterValidator(_finite_json)]


@dataclass(**_frozen)
class ModelFacts:
    """What the GGUF file says about the model (read before loading) plus llama.cpp's view."""

    path: str
    name: str
    file_size_bytes: Int64
    architecture: str | None = None
    quantization: str | None = None
    n_params: Int64 | None = None
    n_layers: Int64 | None = None
    n_heads: Int64 | None = None
    n_kv_heads: Int64 | None = None
    n_embd: Int64 | None = None
    context_length: Int64 | None = None
    vocab_size: Int64 | None = None
    kv_cache_bytes: Int64 | None = None  # K+V for the configured n_ctx, f16, from the metadata formula
    weights_bytes: Int64 | None = None  # tensor data in the GGUF file (what loading must place in memory)
    n_ctx: Int64 | None = None
    description: str | None = None  # llama.cpp's llama_model_desc()


@dataclass(**_frozen)
class DeviceFacts:
    kind: Literal["cpu", "gpu", "synthetic", "remote"]
    name: str
    n_threads: Int64 | None = None
    n_gpu_layers_requested: Int64 = 0
    n_gpu_layers_offloaded: Int64 = 0
    gpu_offload_supported: bool = False
    build: str | None = None  # CPU / CUDA / HIP / Metal / Vulkan, from llama.cpp's system info
    system_info: str | None = None
    # Weight repacking into llama.cpp's extra CPU buffer types (model.repack); None: not applicable
    repack: bool | None = None
    repack_reason: str | None = None


@dataclass(**_frozen)
class LlamaPerf:
    """llama.cpp's own counters for one run (``llama_perf_context``, reset before the run)."""

    t_p_eval_ms: float
    n_p_eval: Int64
    t_eval_ms: float
    n_eval: Int64


@dataclass(**_frozen)
class DiffusionFacts:
    """How a diffusion model generates (``EngineReady.diffusion``): it denoises a canvas of prompt +
    masked answer, every step one forward pass of the whole canvas with non-causal attention."""

    mask_token_id: Int64
    shift_logits: bool  # position p is predicted from the logits of p - 1 (Dream) or of p (LLaDA)
    schedule: str  # timestep, block or front_loaded (diffusion.schedule, "auto" resolved)
    algorithm: str  # confidence, entropy, margin, random or origin
    sampling: str  # "greedy" (argmax, NumPy) or "llama.cpp sampler chain" (top_k / top_p, seeded)


@dataclass(**_frozen)
class SessionStarted:
    type: Literal["session_started"] = "session_started"
    t_ns: Int64 = 0
    session_id: str
    started_at: str  # ISO 8601, UTC wall clock
    ttftui_version: str
    config: JsonDict
    host: JsonDict = field(default_factory=dict)


@dataclass(**_frozen)
class EngineReady:
    type: Literal["engine_ready"] = "engine_ready"
    t_ns: Int64
    engine: Literal["llama.cpp", "synthetic", "remote"]
    synthetic: bool
    synthetic_reason: str | None
    load_ms: float | None  # None for a remote server: its model was loaded before we came
    model: ModelFacts
    device: DeviceFacts
    engine_version: str | None = None
    # where the engine ran: its own process, a thread of ttftui's, or a server reached over HTTP
    host: Literal["process", "thread", "remote"] | None = None
    host_pid: Int64 | None = None
    worker: str | None = None  # a Ray engine host (node:pid) loaded it; None: this machine
    diffusion: DiffusionFacts | None = None  # a diffusion model (Dream, LLaDA, ...); None: autoregressive


@dataclass(**_frozen)
class RunStarted:
    type: Literal["run_started"] = "run_started"
    t_ns: Int64
    run_id: Int64
    scenario: str
    iteration: Int64  # 0-based within the scenario, warm-up runs first
    warmup: bool
    prompt_tokens: Int64
    max_tokens: Int64
    worker: str | None = None  # a Ray client worker (node:pid) sent it; None: this process


@dataclass(**_frozen)
class PhaseTimed:
    """One TTFT phase finished. ``prefill_chunk`` phases come once per ``n_batch`` chunk."""

    type: Literal["phase"] = "phase"
    t_ns: Int64
    run_id: Int64
    phase: PhaseName
    duration_ns: Int64
    chunk: Int64 | None = None
    n_tokens: Int64 | None = None


@dataclass(**_frozen)
class TokenEmitted:
    """An output token's text became available. ``dt_ns``: since the previous token (the first
    token's ``dt_ns`` is its TTFT)."""

    type: Literal["token"] = "token"
    t_ns: Int64
    run_id: Int64
    index: Int64
    token_id: Int64
    text: str
    dt_ns: Int64


@dataclass(**_frozen)
class DiffusionStep:
    """One denoising step of a diffusion model's run: a forward pass of the whole canvas
    (``forward_ns``: llama_decode + synchronize), getting its logits (``logits_ns``: llama_get_logits),
    choosing the positions to commit (``select_ns``: reads the masked rows in place) and committing them (``commit_ns``: canvas write and their text).
    ``positions`` are answer positions (0 = the first answer token) committed in this step, with
    their token ids and text pieces; ``masked``: answer positions still masked after it."""

    type: Literal["diffusion_step"] = "diffusion_step"
    t_ns: Int64
    run_id: Int64
    step: Int64  # 0-based
    n_steps: Int64  # steps planned for the run (a run that commits everything early takes fewer)
    forward_ns: Int64
    logits_ns: Int64
    select_ns: Int64
    commit_ns: Int64
    positions: tuple[Int64, ...] = ()
    token_ids: tuple[Int64, ...] = ()
    texts: tuple[str, ...] = ()
    masked: Int64 = 0
    answer_tokens: Int64 = 0  # the answer's length (masked cells at the start)


@dataclass(**_frozen)
class DiffusionTiming:
    """A diffusion run's own account (``RunFinished.diffusion``). Times ``*_at_ns`` are since t0; the
    per-step tuples have one entry per step taken. TTFT is the time to the first *readable* token: the
    first answer position committed, which is what a reader sees."""

    schedule: str
    algorithm: str
    sampling: str
    steps_planned: Int64
    answer_tokens: Int64
    canvas_tokens: Int64
    canvas_ns: Int64  # the canvas (prompt + masks) and its batch set up
    step_forward_ns: tuple[Int64, ...]
    step_logits_ns: tuple[Int64, ...]
    step_select_ns: tuple[Int64, ...]
    step_commit_ns: tuple[Int64, ...]
    step_end_at_ns: tuple[Int64, ...]
    step_commits: tuple[Int64, ...]
    first_commit_step: Int64 | None  # 1-based: the step that committed the first token (any position)
    first_commit_at_ns: Int64 | None
    first_readable_step: Int64 | None  # 1-based: the step that committed the first answer position
    first_readable_at_ns: Int64 | None
    final_at_ns: Int64  # every answer position committed
    first_step_at_ns: Int64  # the first step began

    def __post_init__(self) -> None:
        n = len(self.step_forward_ns)
        if any(len(x) != n for x in (self.step_logits_ns, self.step_select_ns, self.step_commit_ns,
                                     self.step_end_at_ns, self.step_commits)):
            raise ValueError("the per-step lists must have one entry per step")


@dataclass(**_frozen)
class ConversationTiming:
    """A conversation's turn (``RunFinished.conversation``): its prompt is the conversation so far plus
    a new user message. ``cached_tokens`` were taken from a cache (the engine's KV cache kept from the
    last turn, or the server's own account), ``new_tokens`` evaluated; ``evaluated_tokens`` is how
    many the engine itself counted (llama.cpp's ``n_p_eval``, a server's ``timings.prompt_n``)."""

    conversation: str  # NAME@CACHE
    turn: Int64  # 1-based
    turns: Int64
    cache: Literal["keep", "off"]
    depth: Int64  # prompt tokens of this turn
    cached_tokens: Int64
    new_tokens: Int64
    evaluated_tokens: Int64 | None = None
    counted_by: str | None = None  # who counted evaluated_tokens: "llama.cpp", "server timings", ...


@dataclass(**_frozen)
class PrefixTiming:
    """A request whose prompt starts with a prefix every request of its scenario shares (``kind =
    "shared_prefix"``, ``RunFinished.prefix``): with ``cache = "keep"`` the prefix is evaluated once,
    its KV cells saved (``save_ns``, inside that request's TTFT: a miss) and restored for every later
    request (``reuse_ns``: a hit); with ``off`` every request evaluates it (a miss)."""

    group: str  # the scenario it was expanded from
    cache: Literal["keep", "off"]
    hit: bool
    prefix_tokens: Int64
    depth: Int64
    cached_tokens: Int64
    new_tokens: Int64
    evaluated_tokens: Int64 | None = None
    counted_by: str | None = None
    reuse_ns: Int64 | None = None  # a hit: the saved state restored (llama_state_seq_set_data)
    save_ns: Int64 | None = None  # keep's miss: the prefix's state saved (llama_state_seq_get_data)


@dataclass(**_frozen)
class OpKind:
    """One kind of graph operation in a phase: its compute time, how many nodes, bytes they moved
    (copies: CPY, CONT, DUP, GET_ROWS)."""

    kind: str
    ns: Int64
    count: Int64
    bytes: Int64 = 0


@dataclass(**_frozen)
class LayerTime:
    layer: Int64 | None  # None: the embeddings and the output head
    ns: Int64
    nodes: Int64


@dataclass(**_frozen)
class OpsPhase:
    """What llama.cpp's graph callback saw in one phase of a profiled run (``--profile-ops``): a prefill
    chunk (``index``) or decode (every token's graph together). ``span_ns``: the llama_decode spans;
    ``compute_ns``: the observed nodes' compute; the rest of the span is the gap profiling adds."""

    phase: Literal["prefill_chunk", "decode"]
    index: Int64 | None
    span_ns: Int64
    compute_ns: Int64
    kinds: tuple[OpKind, ...] = ()
    layers: tuple[LayerTime, ...] = ()


@dataclass(**_frozen)
class OpsProfile:
    mode: Literal["ops", "layers"]
    phases: tuple[OpsPhase, ...] = ()


@dataclass(**_frozen)
class RemoteTiming:
    """A request to a server, on the client's clock (ns after t0 = just before the request was
    written; None: never happened) and, beside it, the server's own account as it sent it."""

    connect_ns: Int64 = 0  # a new TCP connection (0: a kept-alive one was reused)
    sent_ns: Int64 = 0
    headers_ns: Int64 = 0  # TTFB
    first_event_ns: Int64 | None = None
    first_choice_ns: Int64 | None = None
    first_reasoning_ns: Int64 | None = None
    first_content_ns: Int64 | None = None
    end_ns: Int64 = 0
    n_events: Int64 = 0
    n_chunks: Int64 = 0
    status: Int64 = 0
    finish_reason: str | None = None
    server_kind: str | None = None
    prompt_counted_by: str | None = None  # how the prompt's length was known: "server tokenizer", "usage", ...
    usage_prompt_tokens: Int64 | None = None
    usage_completion_tokens: Int64 | None = None
    usage_cached_tokens: Int64 | None = None  # usage.prompt_tokens_details.cached_tokens (vLLM, SGLang, OpenAI)
    server_prompt_n: Int64 | None = None  # llama-server timings: prompt tokens it evaluated (the uncached part)
    server_prompt_ms: float | None = None
    server_cache_n: Int64 | None = None  # prompt tokens it took from its cache
    server_predicted_n: Int64 | None = None
    server_predicted_ms: float | None = None
    n_progress: Int64 = 0  # prompt-progress events (llama-server return_progress)
    # the server's prefill batch by batch, from its prompt-progress events (its clock, ms; tokens)
    server_chunks_ms: tuple[float, ...] = ()
    server_chunk_tokens: tuple[Int64, ...] = ()
    # open loop: the request was sent this long after its scheduled arrival (the client fell behind)
    client_lag_ns: Int64 | None = None
    # a trace's request: its prompt tokens in leading blocks an earlier request of the phase sent
    trace_reusable_tokens: Int64 | None = None


@dataclass(**_frozen)
class TokenParts:
    """Where the time between output tokens went (every token but the first), per token: median
    and sum of llama_decode + synchronize, sampling, detokenizing and the rest of the loop (handing
    the previous token over, the stop check). The four sums add up to the run's decode time."""

    n: Int64
    decode_median_ns: Int64
    sample_median_ns: Int64
    detok_median_ns: Int64
    rest_median_ns: Int64
    decode_sum_ns: Int64
    sample_sum_ns: Int64
    detok_sum_ns: Int64
    rest_sum_ns: Int64


def token_parts(parts: list[tuple[int, int, int, int]]) -> TokenParts | None:
    """Summarise the engine's per-token (decode, sample, detok, rest) durations; None without any."""
    if not parts:
        return None

    cols = list(zip(*parts))
    med = [int(statistics.median(c)) for c in cols]
    return TokenParts(n=len(parts), decode_median_ns=med[0], sample_median_ns=med[1], detok_median_ns=med[2],
                      rest_median_ns=med[3], decode_sum_ns=sum(cols[0]), sample_sum_ns=sum(cols[1]),
                      detok_sum_ns=sum(cols[2]), rest_sum_ns=sum(cols[3]))


@dataclass(**_frozen)
class RunFinished:
    """All of a run's own timings; self-contained so a report never needs the phase events. A run
    against a server has ``remote`` instead of the engine's phases (those are None: not measured)."""

    type: Literal["run_finished"] = "run_finished"
    t_ns: Int64
    run_id: Int64
    scenario: str
    warmup: bool
    n_prompt_tokens: Int64
    n_output_tokens: Int64
    ttft_ns: Int64
    e2e_ns: Int64
    tokenize_ns: Int64 | None
    cache_prep_ns: Int64 | None
    prefill_ns: Int64 | None
    prefill_chunks_ns: tuple[Int64, ...]
    prefill_chunk_tokens: tuple[Int64, ...]
    first_sample_ns: Int64 | None
    first_detok_ns: Int64 | None
    stop_reason: Literal["max_tokens", "eos", "stopped"]
    llama_perf: LlamaPerf | None = None
    remote: RemoteTiming | None = None
    token_parts: TokenParts | None = None  # the local engine's decode breakdown
    diffusion: DiffusionTiming | None = None  # a diffusion model's steps (its prefill/sample fields are None)
    conversation: ConversationTiming | None = None  # a conversation's turn
    prefix: PrefixTiming | None = None  # a request with a shared prefix
    ops: OpsProfile | None = None  # a profiled run (--profile-ops): its graph's operations by kind and layer


@dataclass(**_frozen)
class RunFailed:
    type: Literal["run_failed"] = "run_failed"
    t_ns: Int64
    run_id: Int64
    scenario: str
    error: str


@dataclass(**_frozen)
class Notice:
    """Something a user must know about the numbers (e.g. llama.cpp counters disabled)."""

    type: Literal["notice"] = "notice"
    t_ns: Int64
    level: Literal["info", "warning", "error"]
    message: str


@dataclass(**_frozen)
class TelemetrySample:
    """One sampler tick. ``None`` means N/A; the reason is in the backend's ``TelemetryStatus``."""

    type: Literal["telemetry"] = "telemetry"
    t_ns: Int64
    gpu_mem_used_bytes: Int64 | None = None
    gpu_mem_total_bytes: Int64 | None = None
    gpu_busy_pct: float | None = None
    gpu_power_w: float | None = None
    gpu_temp_c: float | None = None
    gpu_sm_clock_mhz: float | None = None
    rss_bytes: Int64 | None = None
    proc_cpu_pct: float | None = None
    sys_cpu_pct: float | None = None
    mark: Literal["before_load", "after_load"] | None = None  # explicit readings around model load
    worker: str | None = None  # sampled on a Ray engine host's node (node:pid); None: this machine


# What the GPU driver keeps in its own sample buffer (NVML ``nvmlDeviceGetSamples``), per field.
DriverField = Literal["gpu_busy_pct", "gpu_mem_busy_pct", "gpu_power_w", "gpu_sm_clock_mhz"]
DRIVER_FIELDS: tuple[str, ...] = get_args(DriverField)


def _same_length(ev: "GpuDriverSamples") -> None:
    if len(ev.times_ns) != len(ev.values):
        raise ValueError(f"{len(ev.times_ns)} times but {len(ev.values)} values")


@dataclass(**_frozen)
class GpuDriverSamples:
    """The GPU driver's own buffered samples of one field (NVML ``nvmlDeviceGetSamples``), taken from
    its buffer at one sampler tick. The driver samples at its own period, finer than the sampler's
    polls on some GPUs; each value covers the driver's sample period that *ends* at its time.
    ``times_ns`` are on the session clock (the driver stamps them with the CPU's clock, in µs)."""

    type: Literal["gpu_driver_samples"] = "gpu_driver_samples"
    t_ns: Int64  # when they were read
    field: DriverField
    times_ns: tuple[Int64, ...]
    values: tuple[float, ...]
    worker: str | None = None  # a Ray engine host's node (node:pid); None: this machine

    def __post_init__(self) -> None:
        _same_length(self)


def shift_time(ev: Any, offset_ns: int) -> Any:
    """``ev`` moved onto another time line by ``offset_ns`` (a Ray host's clock onto the session's):
    its ``t_ns`` and any other point in time it carries; durations stay as they are."""
    if not offset_ns:
        return ev
    if isinstance(ev, GpuDriverSamples):
        return replace(ev, t_ns=ev.t_ns + offset_ns, times_ns=tuple(t + offset_ns for t in ev.times_ns))
    return replace(ev, t_ns=ev.t_ns + offset_ns)


@dataclass(**_frozen)
class ServerSample:
    """The server's own view of its queue while a load scenario runs (llama-server's ``/metrics``
    gauges, or its ``/slots`` when metrics are off), polled by the client. ``None``: not reported."""

    type: Literal["server_sample"] = "server_sample"
    t_ns: Int64  # when the answer arrived, on the client's clock
    source: Literal["metrics", "slots"]
    requests_processing: Int64 | None = None
    requests_deferred: Int64 | None = None  # waiting for a free slot: the server's queue
    slots_busy: Int64 | None = None
    slots_total: Int64 | None = None
    # The server's prefix cache, cumulative since it started, in prompt tokens (its /metrics counters:
    # vLLM's prefix_cache_queries_total / prefix_cache_hits_total, SGLang's prompt_tokens_total /
    # cached_tokens_total); None: not reported.
    prefix_cache_queried: Int64 | None = None
    prefix_cache_hits: Int64 | None = None
    sent_ns: Int64 | None = None  # when the reading was asked for (its counters are from between then and t_ns)


@dataclass(**_frozen)
class TelemetryStatus:
    """Which telemetry fields are available, and why the others are not (sent once per change)."""

    type: Literal["telemetry_status"] = "telemetry_status"
    t_ns: Int64
    backend: str
    gpu_name: str | None
    interval_ms: float
    unavailable: dict[str, str] = field(default_factory=dict)  # field -> reason
    n_samples: Int64 | None = None  # in the final status, sent when the sampler stops
    missed_ticks: Int64 | None = None
    sampler_cpu_s: float | None = None
    worker: str | None = None  # a Ray engine host's sampler (node:pid); None: this machine's
    # the GPU driver's own sample buffer (GpuDriverSamples), per field: why it cannot be read
    driver_unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(**_frozen)
class AlertChanged:
    type: Literal["alert"] = "alert"
    t_ns: Int64
    rule: str
    state: Literal["firing", "cleared"]
    severity: Literal["warning", "critical"]
    scenario: str | None
    metric: str
    statistic: str
    op: str
    threshold: float
    value: float | None
    run_id: Int64 | None = None
    message: str = ""


@dataclass(**_frozen)
class EngineCrashed:
    """The engine's process died (a native fault, a kill, an unexpected exit). Completed runs stand;
    the run in flight (if any) ends with ``RunFailed``. ``phase`` is where it was, inferred from the
    last event the engine had sent: ``load``, ``prepare``, ``tokenize``, ``cache_prep``,
    ``prefill_chunk`` (``chunk`` 0-based, of ``n_chunks``), ``first_sample``, ``first_detok``,
    ``decode`` (``token_index`` = the output token being computed) or ``idle`` (between runs)."""

    type: Literal["engine_crashed"] = "engine_crashed"
    t_ns: Int64
    signal: str | None  # e.g. "SIGSEGV"; None when the process exited with a code
    exit_code: Int64 | None  # the process's own exit status when it was not a signal
    phase: str
    run_id: Int64 | None = None
    scenario: str | None = None
    chunk: Int64 | None = None
    n_chunks: Int64 | None = None
    token_index: Int64 | None = None
    pid: Int64 | None = None
    log_tail: tuple[str, ...] = ()  # the engine's last stderr / llama.cpp log lines
    message: str = ""  # one line: what happened, where, and a hint
    worker: str | None = None  # a Ray engine host's engine (node:pid); None: this machine's


@dataclass(**_frozen)
class EngineStalled:
    """The engine's process made no progress for ``stalled_s`` seconds while it owed an answer
    (``state`` ``stalled``; ``silent``: it sent nothing at all, not even its heartbeat, e.g. stopped
    with SIGSTOP; else it was alive but neither computed nor sent an event), or made progress again
    (``resumed``). ``kill_after_s``: when ttftui's watchdog kills it (None: never). ``phase`` as in
    ``EngineCrashed``; ``message`` says it in one line (docs/engine-host.md, "When the child stalls")."""

    type: Literal["engine_stalled"] = "engine_stalled"
    t_ns: Int64
    state: Literal["stalled", "resumed"]
    stalled_s: float
    silent: bool = False
    phase: str = "idle"
    run_id: Int64 | None = None
    scenario: str | None = None
    kill_after_s: float | None = None
    pid: Int64 | None = None
    message: str = ""
    worker: str | None = None  # a Ray engine host's engine (node:pid); None: this machine's


@dataclass(**_frozen)
class WorkerLost:
    """A Ray client worker (or its node) died during a load phase: the runs it had in flight ended
    failed (``lost_runs``), ``unsent`` of its requests were never sent; its completed runs stand."""

    type: Literal["worker_lost"] = "worker_lost"
    t_ns: Int64
    worker: str
    reason: str
    lost_runs: tuple[Int64, ...] = ()
    unsent: Int64 = 0


@dataclass(**_frozen)
class SessionFinished:
    type: Literal["session_finished"] = "session_finished"
    t_ns: Int64
    status: Literal["completed", "interrupted", "terminated", "failed"]
    message: str | None = None


Event = Annotated[
    Union[
        SessionStarted,
        EngineReady,
        RunStarted,
        PhaseTimed,
        TokenEmitted,
        DiffusionStep,
        RunFinished,
        RunFailed,
        Notice,
        TelemetrySample,
        GpuDriverSamples,
        ServerSample,
        TelemetryStatus,
        AlertChanged,
        EngineCrashed,
        EngineStalled,
        WorkerLost,
        SessionFinished,
    ],
    Field(discriminator="type"),
]

for _cls in (ModelFacts, DeviceFacts, LlamaPerf, RemoteTiming, TokenParts, DiffusionFacts, DiffusionStep, DiffusionTiming,
             ConversationTiming, PrefixTiming, OpKind, LayerTime, OpsPhase, OpsProfile,
             SessionStarted, EngineReady, RunStarted, PhaseTimed, TokenEmitted,
             RunFinished, RunFailed, Notice, TelemetrySample, GpuDriverSamples, ServerSample, TelemetryStatus, AlertChanged, EngineCrashed,
             EngineStalled, WorkerLost, SessionFinished):
    _cls.__pydantic_config__ = ConfigDict(allow_inf_nan=False)  # type: ignore[attr-defined]

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def event_to_json(event: Any) -> bytes:
    """One event as compact JSON (no newline)."""
    return EVENT_ADAPTER.dump_json(event)


_PHASE_NAMES = frozenset(get_args(PhaseName))


def phase_to_json(ev: PhaseTimed) -> bytes:
    """``event_to_json(ev)`` of a :class:`PhaseTimed`, byte for byte, without pydantic's serializer.
    The engine host writes one between two of TTFT's timing points, and there, with the caches cold
    after a prefill chunk, pydantic's path took 30-70 µs on a 2-core Xeon (this one takes a few).
    Anything but plain ints and a known phase name goes the general way."""
    t, rid, ph, d, ch, nt = ev.t_ns, ev.run_id, ev.phase, ev.duration_ns, ev.chunk, ev.n_tokens
    if (ph not in _PHASE_NAMES or type(t) is not int or type(rid) is not int or type(d) is not int
            or not (ch is None or type(ch) is int) or not (nt is None or type(nt) is int)):
        return event_to_json(ev)
    return (b'{"type":"phase","t_ns":%d,"run_id":%d,"phase":"%s","duration_ns":%d,"chunk":%s,"n_tokens":%s}'
            % (t, rid, ph.encode(), d, b"null" if ch is None else b"%d" % ch, b"null" if nt is None else b"%d" % nt))


def event_from_json(line: str | bytes) -> Any:
    """Parse and validate one JSON event; raises ``pydantic.ValidationError`` when it is not one."""
    return EVENT_ADAPTER.validate_json(line)
