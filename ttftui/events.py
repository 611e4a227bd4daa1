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

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter

PhaseName = Literal["tokenize", "cache_prep", "prefill_chunk", "first_sample", "first_detok"]

# The TTFT components in the order they happen (DESIGN.md §2). ``unaccounted`` is derived.
COMPONENTS: tuple[str, ...] = ("tokenize", "cache_prep", "prefill", "first_sample", "first_detok")

_frozen = dict(frozen=True, slots=True, kw_only=True)


@dataclass(**_frozen)
class ModelFacts:
    """What the GGUF file says about the model (read before loading) plus llama.cpp's view."""

    path: str
    name: str
    file_size_bytes: int
    architecture: str | None = None
    quantization: str | None = None
    n_params: int | None = None
    n_layers: int | None = None
    n_heads: int | None = None
    n_kv_heads: int | None = None
    n_embd: int | None = None
    context_length: int | None = None
    vocab_size: int | None = None
    kv_cache_bytes: int | None = None  # K+V for the configured n_ctx, f16, from the metadata formula
    weights_bytes: int | None = None  # tensor data in the GGUF file (what loading must place in memory)
    n_ctx: int | None = None
    description: str | None = None  # llama.cpp's llama_model_desc()


@dataclass(**_frozen)
class DeviceFacts:
    kind: Literal["cpu", "gpu", "synthetic"]
    name: str
    n_threads: int | None = None
    n_gpu_layers_requested: int = 0
    n_gpu_layers_offloaded: int = 0
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
    n_p_eval: int
    t_eval_ms: float
    n_eval: int


@dataclass(**_frozen)
class SessionStarted:
    type: Literal["session_started"] = "session_started"
    t_ns: int = 0
    session_id: str
    started_at: str  # ISO 8601, UTC wall clock
    ttftui_version: str
    config: dict[str, Any]
    host: dict[str, Any] = field(default_factory=dict)


@dataclass(**_frozen)
class EngineReady:
    type: Literal["engine_ready"] = "engine_ready"
    t_ns: int
    engine: Literal["llama.cpp", "synthetic"]
    synthetic: bool
    synthetic_reason: str | None
    load_ms: float
    model: ModelFacts
    device: DeviceFacts
    engine_version: str | None = None
    host: Literal["process", "thread"] | None = None  # where the engine ran: its own process, or a thread
    host_pid: int | None = None


@dataclass(**_frozen)
class RunStarted:
    type: Literal["run_started"] = "run_started"
    t_ns: int
    run_id: int
    scenario: str
    iteration: int  # 0-based within the scenario, warm-up runs first
    warmup: bool
    prompt_tokens: int
    max_tokens: int


@dataclass(**_frozen)
class PhaseTimed:
    """One TTFT phase finished. ``prefill_chunk`` phases come once per ``n_batch`` chunk."""

    type: Literal["phase"] = "phase"
    t_ns: int
    run_id: int
    phase: PhaseName
    duration_ns: int
    chunk: int | None = None
    n_tokens: int | None = None


@dataclass(**_frozen)
class TokenEmitted:
    """An output token's text became available. ``dt_ns``: since the previous token (the first
    token's ``dt_ns`` is its TTFT)."""

    type: Literal["token"] = "token"
    t_ns: int
    run_id: int
    index: int
    token_id: int
    text: str
    dt_ns: int


@dataclass(**_frozen)
class RunFinished:
    """All of a run's own timings; self-contained so a report never needs the phase events."""

    type: Literal["run_finished"] = "run_finished"
    t_ns: int
    run_id: int
    scenario: str
    warmup: bool
    n_prompt_tokens: int
    n_output_tokens: int
    ttft_ns: int
    e2e_ns: int
    tokenize_ns: int
    cache_prep_ns: int
    prefill_ns: int
    prefill_chunks_ns: tuple[int, ...]
    prefill_chunk_tokens: tuple[int, ...]
    first_sample_ns: int
    first_detok_ns: int
    stop_reason: Literal["max_tokens", "eos", "stopped"]
    llama_perf: LlamaPerf | None = None


@dataclass(**_frozen)
class RunFailed:
    type: Literal["run_failed"] = "run_failed"
    t_ns: int
    run_id: int
    scenario: str
    error: str


@dataclass(**_frozen)
class Notice:
    """Something a user must know about the numbers (e.g. llama.cpp counters disabled)."""

    type: Literal["notice"] = "notice"
    t_ns: int
    level: Literal["info", "warning", "error"]
    message: str


@dataclass(**_frozen)
class TelemetrySample:
    """One sampler tick. ``None`` means N/A; the reason is in the backend's ``TelemetryStatus``."""

    type: Literal["telemetry"] = "telemetry"
    t_ns: int
    gpu_mem_used_bytes: int | None = None
    gpu_mem_total_bytes: int | None = None
    gpu_busy_pct: float | None = None
    gpu_power_w: float | None = None
    gpu_temp_c: float | None = None
    gpu_sm_clock_mhz: float | None = None
    rss_bytes: int | None = None
    proc_cpu_pct: float | None = None
    sys_cpu_pct: float | None = None
    mark: Literal["before_load", "after_load"] | None = None  # explicit readings around model load


@dataclass(**_frozen)
class TelemetryStatus:
    """Which telemetry fields are available, and why the others are not (sent once per change)."""

    type: Literal["telemetry_status"] = "telemetry_status"
    t_ns: int
    backend: str
    gpu_name: str | None
    interval_ms: float
    unavailable: dict[str, str] = field(default_factory=dict)  # field -> reason
    n_samples: int | None = None  # in the final status, sent when the sampler stops
    missed_ticks: int | None = None
    sampler_cpu_s: float | None = None


@dataclass(**_frozen)
class AlertChanged:
    type: Literal["alert"] = "alert"
    t_ns: int
    rule: str
    state: Literal["firing", "cleared"]
    severity: Literal["warning", "critical"]
    scenario: str | None
    metric: str
    statistic: str
    op: str
    threshold: float
    value: float | None
    run_id: int | None = None
    message: str = ""


@dataclass(**_frozen)
class EngineCrashed:
    """The engine's process died (a native fault, a kill, an unexpected exit). Completed runs stand;
    the run in flight (if any) ends with ``RunFailed``. ``phase`` is where it was, inferred from the
    last event the engine had sent: ``load``, ``prepare``, ``tokenize``, ``cache_prep``,
    ``prefill_chunk`` (``chunk`` 0-based, of ``n_chunks``), ``first_sample``, ``first_detok``,
    ``decode`` (``token_index`` = the output token being computed) or ``idle`` (between runs)."""

    type: Literal["engine_crashed"] = "engine_crashed"
    t_ns: int
    signal: str | None  # e.g. "SIGSEGV"; None when the process exited with a code
    exit_code: int | None  # the process's own exit status when it was not a signal
    phase: str
    run_id: int | None = None
    scenario: str | None = None
    chunk: int | None = None
    n_chunks: int | None = None
    token_index: int | None = None
    pid: int | None = None
    log_tail: tuple[str, ...] = ()  # the engine's last stderr / llama.cpp log lines
    message: str = ""  # one line: what happened, where, and a hint


@dataclass(**_frozen)
class SessionFinished:
    type: Literal["session_finished"] = "session_finished"
    t_ns: int
    status: Literal["completed", "interrupted", "terminated", "failed"]
    message: str | None = None


Event = Annotated[
    Union[
        SessionStarted,
        EngineReady,
        RunStarted,
        PhaseTimed,
        TokenEmitted,
        RunFinished,
        RunFailed,
        Notice,
        TelemetrySample,
        TelemetryStatus,
        AlertChanged,
        EngineCrashed,
        SessionFinished,
    ],
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


def event_to_json(event: Any) -> bytes:
    """One event as compact JSON (no newline)."""
    return EVENT_ADAPTER.dump_json(event)


def event_from_json(line: str | bytes) -> Any:
    """Parse and validate one JSON event; raises ``pydantic.ValidationError`` when it is not one."""
    return EVENT_ADAPTER.validate_json(line)
