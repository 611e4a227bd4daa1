"""Configuration: ``config.toml`` parsed with tomllib and validated by pydantic.

Every key has a default, so an empty file (or no file) is a valid configuration. Unknown keys are
errors, not silently ignored: a typo such as ``n_bacth`` must not fall back to a default and make a
benchmark measure something else than intended. Errors are turned into one line that names the
file, the key and what was expected (:func:`format_validation_error`).
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, Field, ValidationError, field_serializer, field_validator, model_validator

from ttftui.core.errors import ConfigError
from ttftui.core.inputs import MAX_CONFIG_BYTES, read_input
from ttftui.core.rules import AlertRule, Strict
from ttftui.core.urls import without_credentials
from ttftui.core.workload import (
    DEFAULT_BLOCK_TOKENS,
    MAX_INPUT_TOKENS,
    MAX_OUTPUT_TOKENS,
    read_prompts,
    read_trace,
)

DEFAULT_CONFIG_NAME = "config.toml"

# Bounds on the lists a config may hold, so that a config is refused at once, with a reason, instead
# of being expanded into a session no one meant (and every check on them is linear in their size).
MAX_SWEEP_VALUES = 1024  # values in one sweep list (prompt_tokens, concurrency, rate) or matrix key
MAX_SCENARIOS = 4096  # scenarios once sweeps and the matrix are expanded
MAX_MATRIX_CELLS = 256  # combinations of cluster.matrix's values
MAX_ALERTS = 1024  # alert rules
MAX_PERCENTILES = 64  # report.percentiles


class ModelConfig(Strict):
    path: str = Field("", description="GGUF file; empty means the bundled SmolLM2-135M demo model")
    n_ctx: int = Field(4096, ge=16, le=16_777_216, description="context size in tokens (at most 16M)")
    n_batch: int = Field(512, ge=1, le=1_048_576, description="prompt tokens per prefill chunk (llama_decode call)")
    n_threads: int = Field(0, ge=0, le=512, description="CPU threads; 0 = number of physical cores; at most 512 "
                                                         "(llama.cpp's own limit, GGML_MAX_N_THREADS)")
    n_gpu_layers: int = Field(0, ge=-1, description="layers to offload to the GPU; -1 = all")
    flash_attn: Literal["auto", "on", "off"] = "auto"
    repack: Literal["auto", "on", "off"] = Field(
        "auto", description="repack weights into llama.cpp's extra CPU buffer types (llama-bench --repack); "
                            "auto = off on CPUs with AMX, where llama.cpp's AMX path crashes, on elsewhere")


class EngineConfig(Strict):
    kind: Literal["auto", "llama", "diffusion", "synthetic"] = Field(
        "auto", description="auto = llama.cpp when it and the model load, else synthetic; a diffusion model "
                            "(Dream, LLaDA, RND1: its GGUF architecture says so) runs on the diffusion engine; "
                            "diffusion = require one"
    )
    synthetic_pace: bool = Field(
        True, description="synthetic engine sleeps to its modelled timings in the dashboard"
    )
    host: Literal["auto", "process", "thread"] = Field(
        "auto", description="where the engine runs: process = a child process of its own (a crash there is a "
                            "result, not the end of the session), thread = inside ttftui's process; auto = "
                            "process for llama.cpp, thread for the synthetic engine")
    # The engine host's watchdog (engine.host = process; docs/engine-host.md, "When the child stalls")
    stall_warn_s: float = Field(
        30.0, ge=0, le=86_400, description="an engine host that owes an answer and shows no progress (no event, and "
                                           "no CPU time on its heartbeat) for this long is reported stalled; 0 = never")
    stall_kill_s: float = Field(
        120.0, ge=0, le=86_400, description="... and for this long is killed, and the run fails as a crash (exit 17); "
                                            "0 = never")
    profile_ops: Literal["off", "ops", "layers"] = Field(
        "off", description="profile prefill by graph operation and layer with llama.cpp's graph callback: every "
                           "scenario gets a profiled twin, NAME@ops, kept out of its statistics (the callback "
                           "splits the graph at every node it watches, which slows what it measures: the report "
                           "sets the twin's prefill against the plain runs'); ops = every computing node, layers = "
                           "each layer's output only (fewer splits)")
    stop_grace_s: float = Field(
        5.0, gt=0, le=3_600, description="after a stop (Ctrl-C, SIGTERM, q), how long the engine host has to answer "
                                         "before it is killed, so that the session always ends")

    @model_validator(mode="after")
    def _stall_limits(self) -> "EngineConfig":
        if self.stall_warn_s and self.stall_kill_s and self.stall_kill_s <= self.stall_warn_s:
            raise ValueError(f"engine.stall_kill_s ({self.stall_kill_s:g}) must be more than engine.stall_warn_s "
                             f"({self.stall_warn_s:g}), or 0 (never kill)")
        return self


DiffusionSchedule = Literal["auto", "timestep", "block", "front_loaded"]
DiffusionAlgorithm = Literal["confidence", "entropy", "margin", "random", "origin"]


class DiffusionConfig(Strict):
    """How a diffusion model denoises its answer (docs/diffusion.md)."""

    steps: int = Field(0, ge=0, le=100_000, description="denoising steps per run (each a forward pass of the whole "
                                                        "canvas); 0 = one per answer token (max_tokens)")
    schedule: DiffusionSchedule = Field(
        "auto", description="how many positions each step commits: timestep = Dream's (1 - s/t) share of what is "
                            "still masked, over the whole answer; block = LLaDA's: the answer in blocks of "
                            "block_length, left to right, an equal share each step; front_loaded = blocks of 1, 2, "
                            "4, ... positions (up to block_length), so the first answer token is committed by the "
                            "first step; auto = block for LLaDA models, timestep otherwise")
    block_length: int = Field(32, ge=1, le=1_048_576, description="positions per block (block), the largest block "
                                                                   "(front_loaded)")
    algorithm: DiffusionAlgorithm = Field(
        "confidence", description="which masked positions a step commits first: confidence = the sampled token's "
                                  "probability, margin = top-1 minus top-2 probability, entropy = llama.cpp's "
                                  "entropy rule, random, origin = each position with the step's transfer probability")
    eps: float = Field(0.001, ge=0, lt=1, description="timestep schedule: the last timestep (Dream's eps)")
    confidence_threshold: float = Field(
        0.0, ge=0, le=1_000_000, description="also commit every masked position whose confidence is at least this, "
                                             "beyond the schedule's count (0 = off): fewer steps when the model is sure")


class DiffusionOverride(Strict):
    """A scenario's own diffusion settings (the [diffusion] table's, key by key); ``schedule`` may be a
    list: one scenario per schedule, ``NAME@SCHEDULE``."""

    steps: int | None = Field(None, ge=0, le=100_000)
    schedule: DiffusionSchedule | None = None
    block_length: int | None = Field(None, ge=1, le=1_048_576)
    algorithm: DiffusionAlgorithm | None = None
    eps: float | None = Field(None, ge=0, lt=1)
    confidence_threshold: float | None = Field(None, ge=0, le=1_000_000)


class RunConfig(Strict):
    iterations: int = Field(5, ge=1, le=100_000,  # every run's figures are kept: ~36 KB a run of 50 tokens
                            description="measured runs per scenario")
    warmup: int = Field(1, ge=0, le=100_000, description="warm-up runs per scenario (kept, not in statistics)")
    seed: int = Field(42, ge=0, le=2**64 - 1)
    warmup_policy: Literal["per_scenario", "largest_first"] = Field(
        "per_scenario", description="largest_first: before any counted run, one more warm-up run of the scenario "
                                    "with the longest prompt, so no counted run is the first to meet a larger shape")
    order: Literal["sequential", "interleaved"] = Field(
        "sequential", description="sequential: each scenario's runs one after another; interleaved: every scenario's "
                                  "warm-ups, then one counted run of each in turn, round after round, so a machine "
                                  "whose speed drifts spreads that drift over every scenario instead of confounding it "
                                  "with one (sweeps). Load scenarios run after, in order")
    pause_ms: float = Field(0.0, ge=0, le=600_000,
                            description="untimed pause before each run but the first (the dashboard pauses at "
                                        "least 300 ms, to draw each result while the engine is idle)")


class GreedySampler(Strict):
    kind: Literal["greedy"] = "greedy"


class TopKSampler(Strict):
    kind: Literal["top_k"]
    k: int = Field(40, ge=1)
    temperature: float = Field(0.8, gt=0)


class TopPSampler(Strict):
    kind: Literal["top_p"]
    p: float = Field(0.95, gt=0, le=1)
    temperature: float = Field(0.8, gt=0)


Sampler = Annotated[Union[GreedySampler, TopKSampler, TopPSampler], Field(discriminator="kind")]


class LengthDist(Strict):
    """A seeded distribution of lengths in tokens (each request of a load scenario draws its own):
    normal or lognormal by the lengths' mean and sd, uniform between min and max; draws are rounded
    and kept within [min, max]."""

    kind: Literal["normal", "lognormal", "uniform"]
    mean: float | None = Field(None, gt=0, le=MAX_INPUT_TOKENS, description="normal, lognormal: the lengths' mean")
    sd: float | None = Field(None, ge=0, le=MAX_INPUT_TOKENS, description="normal, lognormal: the lengths' "
                                                                          "standard deviation")
    min: int = Field(1, ge=1, le=MAX_INPUT_TOKENS, description="the shortest length drawn (a shorter draw is this)")
    max: int | None = Field(None, ge=1, le=MAX_INPUT_TOKENS, description="the longest length drawn (uniform: "
                                                                         "required)")

    @model_validator(mode="after")
    def _parameters(self) -> "LengthDist":
        if self.kind == "uniform":
            if self.max is None or self.mean is not None or self.sd is not None:
                raise ValueError('kind = "uniform" takes min and max (no mean, no sd)')
        elif self.mean is None or self.sd is None:
            raise ValueError(f'kind = "{self.kind}" needs mean and sd (of the lengths, in tokens)')
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is less than min ({self.min})")
        return self


class ScenarioConfig(Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-@]+$")
    sweep: str | None = Field(None, description="set by a sweep: the scenario this one was expanded from "
                                                "(prompt_tokens = [..] becomes one scenario per length, NAME@N)")
    prompt_tokens: int | None = Field(
        None, ge=1, description="exact prompt length in the model's tokens (BOS included)"
    )
    max_tokens: int = Field(ge=1, description="tokens generated per run")
    sampler: Sampler = GreedySampler()
    prompt: str | None = Field(None, description="prompt text; trimmed or repeated to prompt_tokens")
    prompt_file: str | None = Field(None, description="file holding the prompt text")
    chat: bool = Field(False, description="wrap the prompt in the model's chat template")
    stop_at_eos: bool = Field(
        False, description="stop at end-of-generation; false keeps output length fixed"
    )
    # Load (a server only, ttftui --url): many requests at once instead of one run after another.
    concurrency: int | None = Field(
        None, ge=1, le=1024, description="closed loop: keep this many requests in flight (each worker sends its next "
                                         "request when its last one ends); a list sweeps it (NAME@cN)")
    rate: float | None = Field(
        None, gt=0, le=10_000, description="open loop: requests per second, sent on schedule whether or not earlier "
                                           "ones have ended; a list sweeps it (NAME@rR)")
    arrival: Literal["poisson", "constant"] = Field(
        "poisson", description="open loop: exponential gaps (Poisson arrivals) or equal gaps of 1/rate")
    requests: int | None = Field(
        None, ge=1, le=1_000_000, description="counted requests of a load scenario; default run.iterations x "
                                              "concurrency (closed loop) or run.iterations x rate, at least 10 (open)")
    warmup_requests: int | None = Field(
        None, ge=0, le=1_000_000, description="warm-up requests sent first at the same load and left out of the "
                                              "statistics; default run.warmup x concurrency (closed) or run.warmup (open)")
    max_in_flight: int = Field(
        256, ge=1, le=4096, description="open loop: requests in flight at most; an arrival beyond it waits, and its "
                                        "wait is reported as client_lag_ms")
    load: str | None = Field(None, description="set by a load sweep: the scenario this one was expanded from")
    cell: str | None = Field(None, description="set by cluster.matrix: the matrix cell (settings) this scenario runs "
                                               "with, its name is NAME@CELL")
    diffusion: DiffusionOverride | None = Field(None, description="a diffusion model's settings for this scenario "
                                                                  "(over the [diffusion] table's)")
    # A conversation (kind = "conversation"): each turn sends the conversation so far plus a new user
    # message of user_tokens, and the model answers max_tokens. It expands into one scenario per turn
    # (and per cache setting), NAME@CACHE@tK, run turn after turn, conversation after conversation.
    kind: Literal["single", "conversation", "shared_prefix"] = Field(
        "single", description="single: one prompt per run; conversation: turns of a growing conversation; "
                              "shared_prefix: every request starts with the same prefix of prefix_tokens")
    turns: int | None = Field(None, ge=1, le=1024, description="conversation: turns per conversation")
    user_tokens: int | None = Field(None, ge=1, description="conversation: tokens of each turn's new user message")
    system_tokens: int = Field(0, ge=0, description="conversation: tokens of the system prompt every turn starts with")
    cache: Literal["keep", "off"] | None = Field(
        None, description="conversation: keep = the KV cache holds the conversation between turns and only the new "
                          "tokens are evaluated; off = every turn from an empty cache; a list runs both")
    think_time_ms: float = Field(
        0.0, ge=0, le=3_600_000, description="conversation under load (concurrency): each user's pause between "
                                            "receiving a turn's answer and sending its next turn")
    conversation: str | None = Field(None, description="set for a conversation's turn: its conversation (NAME@CACHE)")
    turn: int | None = Field(None, ge=1, description="set for a conversation's turn: 1-based")
    profile_ops: bool = Field(False, description="set for a profiled twin (engine.profile_ops): NAME@ops")
    optional: bool = Field(False, description="runs only when --scenario names it: a session without --scenario "
                                              "leaves it out (the default config's chat)")
    prefix_tokens: int | None = Field(None, ge=1, description="shared_prefix: tokens of the prefix every request "
                                                              "shares (then user_tokens of its own); cache = keep "
                                                              "evaluates it once and restores it for each request")
    # Real traffic (a server only): each request its own prompt and lengths, from a request trace,
    # a dataset of prompts, or seeded length distributions (docs/remote-and-load.md, "Real traffic").
    trace: str | None = Field(
        None, description="replay a request trace (JSONL, Mooncake's format as AIPerf and vLLM's benchmarks "
                          "read it: timestamp ms, input_length, output_length, hash_ids): each request is sent at "
                          "its timestamp with its lengths, and requests that share hash_ids share that prompt "
                          "prefix (the issue's load.trace)")
    trace_speed: float = Field(1.0, gt=0, le=1000, description="trace: its timestamps are divided by this (2 = "
                                                                  "twice as fast)")
    trace_block_tokens: int = Field(DEFAULT_BLOCK_TOKENS, ge=1, le=MAX_INPUT_TOKENS,
                                    description="trace: prompt tokens per hash_ids block (Mooncake: 512)")
    prompts: str | None = Field(
        None, description="load: a dataset of prompts (JSONL, one a line: text / prompt, OpenAI messages or "
                          "ShareGPT conversations; a conversation's first user message): each request sends one, "
                          "in a seeded order")
    prompt_tokens_dist: LengthDist | None = Field(
        None, description="load: each request's prompt length drawn from this distribution (seeded)")
    max_tokens_dist: LengthDist | None = Field(
        None, description="load: each request's max_tokens drawn from this distribution (seeded), at most max_tokens")

    @model_validator(mode="before")
    @classmethod
    def _length_from_elsewhere(cls, data: Any) -> Any:
        """A trace gives each request's output length (max_tokens, when given, caps it); a
        max_tokens distribution's max is its max_tokens."""
        if isinstance(data, dict) and data.get("max_tokens") is None:
            dist = data.get("max_tokens_dist")
            if data.get("trace") is not None:
                data = {**data, "max_tokens": MAX_OUTPUT_TOKENS}  # the trace's longest, once it is read
            elif isinstance(dist, dict) and isinstance(dist.get("max"), int):
                data = {**data, "max_tokens": dist["max"]}
        return data

    @field_validator("sampler", mode="before")
    @classmethod
    def _sampler_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    @model_validator(mode="after")
    def _prompt_source(self) -> "ScenarioConfig":
        if self.prompt is not None and self.prompt_file is not None:
            raise ValueError("give either prompt or prompt_file, not both")
        if self.prompt is not None and not self.prompt.strip():
            raise ValueError("prompt is empty")
        if self.per_request:
            self._check_per_request()
        if self.kind == "conversation":
            self._check_conversation()
        elif self.kind == "shared_prefix":
            if self.prefix_tokens is None or self.user_tokens is None:
                raise ValueError('kind = "shared_prefix" needs prefix_tokens and user_tokens')
            if self.prompt_tokens is not None or self.chat or self.is_load:
                raise ValueError('kind = "shared_prefix" builds its prompts from prefix_tokens and user_tokens: '
                                 'no prompt_tokens, no chat, no concurrency or rate')
            if self.cache is None:  # pragma: no cover - expanded
                raise ValueError("a shared prefix's cache settings are expanded from it")
        elif self.prompt_tokens is None and self.prompt is None and self.prompt_file is None and not self.per_request:
            raise ValueError("needs prompt_tokens (or a prompt / prompt_file)")
        if self.concurrency is not None and self.rate is not None:
            raise ValueError("give either concurrency (closed loop) or rate (open loop), not both")
        if self.think_time_ms and self.kind != "conversation":
            raise ValueError('think_time_ms applies to kind = "conversation" (a pause between turns)')
        if not self.is_load:
            for key in ("requests", "warmup_requests"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} applies to a load scenario (set concurrency or rate)")
        if self.trace is None:  # (a default value may be written out: a recorded config holds every key)
            for key, default in (("trace_speed", 1.0), ("trace_block_tokens", DEFAULT_BLOCK_TOKENS)):
                if getattr(self, key) != default:
                    raise ValueError(f"{key} applies to a trace scenario (set trace)")
        return self

    def _check_per_request(self) -> None:
        """A trace, a prompt dataset, length distributions: how they combine with the other keys."""
        if self.kind != "single":
            raise ValueError("trace, prompts and the length distributions apply to kind = \"single\"")
        if self.trace is not None:
            if self.concurrency is not None or self.rate is not None:
                raise ValueError("trace replays the trace's own arrival times: no concurrency or rate")
            clash = [k for k in ("prompts", "prompt_tokens", "prompt_tokens_dist", "max_tokens_dist")
                     if getattr(self, k) is not None]
            if clash:
                raise ValueError(f"trace gives each request's lengths and prompt blocks: no {clash[0]}")
            return
        for key in ("prompts", "prompt_tokens_dist", "max_tokens_dist"):
            if getattr(self, key) is not None and not self.is_load:
                raise ValueError(f"{key} applies to a load scenario (set concurrency or rate)")
        if self.prompts is not None:
            clash = [k for k in ("prompt", "prompt_file", "prompt_tokens", "prompt_tokens_dist")
                     if getattr(self, k) is not None]
            if clash:
                raise ValueError(f"prompts gives each request's prompt: no {clash[0]}")
        if self.prompt_tokens_dist is not None and self.prompt_tokens is not None:
            raise ValueError("give either prompt_tokens or prompt_tokens_dist, not both")

    def _check_conversation(self) -> None:
        if self.turns is None or self.user_tokens is None:
            raise ValueError('kind = "conversation" needs turns and user_tokens')
        if self.prompt_tokens is not None or self.chat:
            raise ValueError('kind = "conversation" builds its prompts from system_tokens, user_tokens and the '
                             'answers: no prompt_tokens, no chat')
        if self.rate is not None or self.trace is not None:
            raise ValueError('kind = "conversation" holds conversations turn after turn: no rate (concurrency = N '
                             'runs N users at once, each holding its own)')
        if self.concurrency is not None:
            for key in ("requests", "warmup_requests"):
                if getattr(self, key) is not None:
                    raise ValueError(f'kind = "conversation" under load counts conversations (run.warmup, then '
                                     f'run.iterations, per user): no {key}')
        elif self.think_time_ms:
            raise ValueError("think_time_ms is each user's pause between turns under load: set concurrency")
        if self.conversation is None or self.turn is None or self.cache is None:  # pragma: no cover - expanded
            raise ValueError("a conversation's turns are expanded from it (set turns, user_tokens and cache)")

    @property
    def depth_before(self) -> int:
        """A conversation turn's prompt tokens before its own user message: the system prompt and every
        earlier turn's message and answer (answers of max_tokens: stop_at_eos may make them shorter)."""
        return self.system_tokens + ((self.turn or 1) - 1) * ((self.user_tokens or 0) + self.max_tokens)

    @property
    def is_load(self) -> bool:
        """A load scenario: requests overlap (concurrency, rate or a trace's arrivals), against a server."""
        return self.concurrency is not None or self.rate is not None or self.trace is not None

    @property
    def per_request(self) -> bool:
        """Each request has its own prompt (and maybe max_tokens): a trace, a prompt dataset or a
        length distribution (built before each load phase: ttftui.measure.trace)."""
        return (self.trace is not None or self.prompts is not None or self.prompt_tokens_dist is not None
                or self.max_tokens_dist is not None)


# The default config's conversation: optional (ttftui --scenario chat runs it; a plain session does not).
DEFAULT_CHAT: dict[str, Any] = {"name": "chat", "kind": "conversation", "turns": 3, "system_tokens": 32,
                                "user_tokens": 128, "max_tokens": 32, "cache": ["keep", "off"], "optional": True}


def _default_scenarios() -> list[ScenarioConfig]:
    return [
        ScenarioConfig(name="short", prompt_tokens=128, max_tokens=50),
        ScenarioConfig(name="medium", prompt_tokens=512, max_tokens=100),
        ScenarioConfig(name="long", prompt_tokens=2048, max_tokens=100),
        *(ScenarioConfig.model_validate(sc) for sc in _expand_conversation(DEFAULT_CHAT)),
    ]


class ReportConfig(Strict):
    percentiles: list[float] = Field(default_factory=lambda: [50.0, 90.0, 95.0, 99.0], min_length=1,
                                     max_length=MAX_PERCENTILES)

    @field_validator("percentiles")
    @classmethod
    def _in_range(cls, v: list[float]) -> list[float]:
        for p in v:
            if not 0 <= p <= 100:
                raise ValueError(f"percentile {p} is outside 0..100")
        return sorted(set(float(p) for p in v))


class UIConfig(Strict):
    theme: str = Field("dark", description="a theme name from themes/ or a path to a theme file")
    refresh_hz: float = Field(4.0, ge=1, le=30, description="dashboard redraws per second (events are drained at 10 Hz)")
    busy_cpu_pct: float = Field(
        1.0, ge=0, le=100,
        description="while a run computes on every CPU (llama.cpp threads >= CPUs), the dashboard draws only as "
                    "often as keeps its frames' cost (their CPU + 10 ms each) under this % of one core "
                    "(0 = no limit)")


class TelemetryConfig(Strict):
    backend: Literal["auto", "rocm", "nvml", "none"] = "auto"
    interval_ms: float = Field(100.0, ge=10, description="sampling period; floor 10 ms")
    gpu_index: int = Field(0, ge=0)


class RecordingConfig(Strict):
    enabled: bool = False
    path: str = Field("", description="file to record to; empty = ttftui-<time>.ttftrec[.gz]")
    gzip: bool = False


class ServerConfig(Strict):
    url: str = Field("", description="an OpenAI-compatible server's base URL, e.g. http://127.0.0.1:8080/v1; "
                                     "empty = the local engine (same as --url)")
    api: Literal["completions", "chat"] = Field("completions", description="/completions (the prompt as sent, "
                                                "exact length) or /chat/completions (the server applies the template)")
    model: str = Field("", description="model name to send; empty = the first the server lists at /models")
    api_key_env: str = Field("", description="name of an environment variable holding the API key (never the key)")
    connect_timeout_s: float = Field(10.0, gt=0, le=3600)
    read_timeout_s: float = Field(120.0, gt=0, le=86400, description="longest wait for the headers or the next event")
    prefix_cache: Literal["off", "on"] = Field(
        "off", description="off: every run's prompt starts differently and llama-server is asked not to reuse its "
                           "cache, so TTFT is never the uncached suffix of a repeated prompt; on: the same prompt every "
                           "run, to measure cache hits")
    queue_poll_ms: float = Field(
        250.0, ge=0, le=60_000, description="during a load scenario, read the server's queue (llama-server /metrics, "
                                            "else /slots) this often; 0 = never (each read is a request the server "
                                            "answers between its decode steps)")
    ttft_at: Literal["content_or_reasoning", "content", "first_choice", "first_event"] = Field(
        "content_or_reasoning", description="which point of the stream is the first token (the others are reported "
                                            "beside it)")
    # What a server may take of the client, whatever it sends (docs/remote-and-load.md, "Limits")
    headers_timeout_s: float = Field(0.0, ge=0, le=86400, description="longest wait for the response headers, after "
                                                                     "the request is written; 0 = read_timeout_s")
    request_timeout_s: float = Field(0.0, ge=0, le=86400 * 7, description=(
        "deadline of one whole request; 0 = the headers' timeout + read_timeout_s + 1 s per max_tokens token"))
    max_event_bytes: int = Field(1 << 20, ge=1024, le=1 << 30, description="largest SSE line or event (all its "
                                                                          "data lines) a server may send")
    max_chunks: int = Field(0, ge=0, le=1 << 30, description="text chunks one run may keep; 0 = 4 x max_tokens + 64")
    max_stream_bytes: int = Field(0, ge=0, le=1 << 40, description="SSE data one run may take (it holds the text "
                                                                  "kept); 0 = 4096 bytes per chunk allowed")
    lost_after: int = Field(3, ge=0, le=1_000_000, description=(
        "after a request has succeeded, this many requests in a row that get no answer (refused, reset, timed out), "
        "with a GET /models that gets none either, make the server lost: the session ends (exit 19); 0 = never"))

    @field_serializer("url", when_used="json")
    def _url_as_shown(self, url: str, info: Any) -> str:
        """user:password@ never leaves in a recording or a report (``context={"credentials": True}``
        keeps it, for a Ray client worker that must send it)."""
        return url if (info.context or {}).get("credentials") else without_credentials(url)


class ClusterConfig(Strict):
    ray: str = Field("", description="run load scenarios' requests from client workers on a Ray cluster: an address "
                                     "(host:port of a running cluster), auto (the cluster this machine belongs to) or "
                                     "local (start a one-machine Ray here); empty = no Ray (same as --ray)")
    workers: int = Field(2, ge=1, le=256, description="Ray client workers; the load is split among them")
    batch_ms: float = Field(50.0, ge=5, le=5000, description="a worker sends its events to this process this often")
    per_node: bool = Field(False, description="one engine host on every node of the cluster runs the scenarios with "
                                              "its own local engine and telemetry (same as --per-node)")
    matrix: dict[str, list[Any]] = Field(default_factory=dict, description=(
        "engine hosts run every combination of these model./engine. settings, e.g. {\"model.path\" = [\"a.gguf\", "
        "\"b.gguf\"], \"model.n_gpu_layers\" = [0, -1]}; each combination (cell) runs every scenario as "
        "NAME@CELL, and cells go to the nodes as they become free"))

    @field_validator("matrix", mode="before")
    @classmethod
    def _matrix_lists(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v
        for key, values in v.items():
            if not isinstance(key, str) or not key.startswith(MATRIX_SECTIONS):
                raise ValueError(f"matrix key {key!r}: only {' / '.join(s + '*' for s in MATRIX_SECTIONS)} settings "
                                 "can vary")
            if not isinstance(values, list) or not values:
                raise ValueError(f"matrix key {key!r}: needs a non-empty list of values")
            _bounded(f"matrix key {key!r}", values)
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"matrix key {key!r}: needs distinct values")
        _check_cells(v)
        return v


MATRIX_SECTIONS = ("model.", "engine.")


def _bounded(what: str, values: list[Any]) -> None:
    if len(values) > MAX_SWEEP_VALUES:
        raise ValueError(f"{what}: {len(values):,} values; at most {MAX_SWEEP_VALUES:,} (split such a sweep "
                         "into several sessions)")


def _check_cells(matrix: dict[str, Any]) -> int:
    """How many cells the matrix makes; ValueError beyond ``MAX_MATRIX_CELLS`` (checked before they are
    made: ten keys of ten values would be ten billion)."""
    n = math.prod(len(v) for v in matrix.values() if isinstance(v, list))
    if n > MAX_MATRIX_CELLS:
        raise ValueError(f"cluster.matrix makes {n:,} combinations; at most {MAX_MATRIX_CELLS:,}")
    return n


def _check_scenarios(n: int) -> None:
    if n > MAX_SCENARIOS:
        raise ValueError(f"{n:,} scenarios (once sweeps and the matrix are expanded); at most {MAX_SCENARIOS:,} "
                         "(split such a session into several)")


def _label_part(key: str, value: Any) -> str:
    if key == "model.path":
        text = Path(str(value)).stem or "model"
    else:
        text = f"{key.rsplit('.', 1)[-1]}_{str(value).lower() if isinstance(value, bool) else value}"
    return "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in text)


def matrix_cells(matrix: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the matrix's values (first key slowest), each as ``(label, {key:
    value})``; the label (a scenario-name suffix) joins one part per key with ``@``."""

    keys = list(matrix)
    out = []
    for combo in itertools.product(*(matrix[k] for k in keys)):
        out.append(("@".join(_label_part(k, v) for k, v in zip(keys, combo)), dict(zip(keys, combo))))
    return out


def expand_matrix(data: Any) -> Any:
    """With ``cluster.matrix`` set, every scenario becomes one scenario per cell, ``NAME@CELL``,
    each remembering its cell (scenarios already expanded, e.g. from a recorded config, stay)."""
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        return data
    cluster = data.get("cluster")
    matrix = cluster.get("matrix") if isinstance(cluster, dict) else None
    if not isinstance(matrix, dict) or not matrix or not all(isinstance(v, list) and v for v in matrix.values()):
        return data  # nothing to expand (a malformed matrix is reported by its own validator)
    n_cells = _check_cells(matrix)
    _check_scenarios(sum(n_cells if isinstance(sc, dict) and sc.get("cell") is None else 1 for sc in data["scenarios"]))
    out = []
    for sc in data["scenarios"]:
        if not isinstance(sc, dict) or sc.get("cell") is not None:
            out.append(sc)
            continue
        out.extend({**sc, "name": f"{sc.get('name')}@{label}", "cell": label}
                   for label, _ in matrix_cells(matrix))
    return {**data, "scenarios": out}


def expand_profiled(data: Any) -> Any:
    """``engine.profile_ops``: every ordinary scenario gets a profiled twin right after it, ``NAME@ops``
    (twins already there, e.g. from a recorded config, stay; load, conversations and shared prefixes
    have none)."""
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        return data
    engine = data.get("engine")
    if not isinstance(engine, dict) or engine.get("profile_ops") in (None, "off", False):
        return data
    out: list[Any] = []
    have = {sc.get("name") for sc in data["scenarios"] if isinstance(sc, dict)}
    for sc in data["scenarios"]:
        out.append(sc)
        if (isinstance(sc, dict) and not sc.get("profile_ops") and sc.get("kind", "single") == "single"
                and sc.get("concurrency") is None and sc.get("rate") is None and sc.get("trace") is None
                and f"{sc.get('name')}@ops" not in have):
            out.append({**sc, "name": f"{sc.get('name')}@ops", "profile_ops": True, "sweep": None})
    _check_scenarios(len(out))
    return {**data, "scenarios": out}


def expand_sweeps(data: Any) -> Any:
    """``prompt_tokens = [128, 256, ...]`` in a scenario becomes one scenario per length, named
    ``NAME@N``, each remembering the sweep it belongs to (its fit is in the report). Likewise
    ``concurrency = [1, 2, 4]`` becomes ``NAME@c1``, ``NAME@c2``, ... and ``rate = [..]`` ``NAME@rR``
    (a load sweep; both kinds may be combined: ``NAME@512@c4``)."""
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        return data
    _check_scenarios(sum(map(_n_expanded, data["scenarios"])))  # before making any of them
    out: list[Any] = []
    for sc in data["scenarios"]:
        for x in _expand_lengths(sc):
            for y in _expand_load(x):
                for z in _expand_schedules(y):
                    out.extend(_expand_conversation(z))
    return {**data, "scenarios": out}


def _n_expanded(sc: Any) -> int:
    """How many scenarios ``sc`` becomes (each sweep list bounded first)."""
    if not isinstance(sc, dict):
        return 1
    lists = {k: v for k in ("prompt_tokens", "concurrency", "rate") if isinstance(v := sc.get(k), list)}
    for key, values in lists.items():
        _bounded(f"scenario {str(sc.get('name'))[:40]!r}: {key} = [...]", values)
    load = lists.get("concurrency", lists.get("rate", [None]))  # one load sweep at most (_expand_load)
    diff = sc.get("diffusion")
    schedules = diff.get("schedule") if isinstance(diff, dict) else None
    if isinstance(schedules, list):
        _bounded(f"scenario {str(sc.get('name'))[:40]!r}: diffusion.schedule = [...]", schedules)
    n_sched = len(schedules) if isinstance(schedules, list) else 1
    n_turns = 1
    if sc.get("kind") == "shared_prefix" and not isinstance(sc.get("cache"), str):
        n_turns = len(sc["cache"]) if isinstance(sc.get("cache"), list) else 2
    if sc.get("kind") == "conversation" and sc.get("turn") is None and isinstance(sc.get("turns"), int):
        caches = sc.get("cache")
        n_turns = min(max(sc["turns"], 1), 1024) * (len(caches) if isinstance(caches, list) else 1)
    return len(lists.get("prompt_tokens", [None])) * len(load) * n_sched * n_turns


def _distinct(sc: dict[str, Any], key: str, values: list[Any]) -> None:
    _bounded(f"scenario {str(sc.get('name'))[:40]!r}: {key} = [...]", values)
    if not values or len(set(map(str, values))) != len(values):
        raise ValueError(f"scenario {sc.get('name')!r}: {key} = [...] needs distinct values")


def _expand_lengths(sc: Any) -> list[Any]:
    lengths = sc.get("prompt_tokens") if isinstance(sc, dict) else None
    if not isinstance(lengths, list):
        return [sc]
    _distinct(sc, "prompt_tokens", lengths)
    return [{**sc, "name": f"{sc.get('name')}@{n}", "prompt_tokens": n, "sweep": sc.get("name")} for n in lengths]


def _expand_conversation(sc: Any) -> list[Any]:
    """``kind = "conversation"``: one scenario per cache setting and turn, ``NAME@CACHE@tK``, each
    remembering its conversation (``NAME@CACHE``, also its sweep: TTFT against the context's depth)
    and turn. Already expanded turns (a recorded config) stay."""
    if isinstance(sc, dict) and sc.get("kind") == "shared_prefix" and not isinstance(sc.get("cache"), str):
        caches = sc.get("cache") or ["keep", "off"]  # a hit against a miss, by default
        caches = caches if isinstance(caches, list) else [caches]
        _distinct(sc, "cache", caches)
        return [{**sc, "name": f"{sc.get('name')}@{c}", "cache": c} for c in caches]
    if not isinstance(sc, dict) or sc.get("kind") != "conversation" or sc.get("turn") is not None:
        return [sc]
    turns = sc.get("turns")
    caches = sc.get("cache", "keep")
    caches = caches if isinstance(caches, list) else [caches]
    if not isinstance(turns, int) or isinstance(turns, bool) or not 1 <= turns <= 1024:
        return [{**sc, "cache": caches[0] if caches else None}]  # reported by the scenario's own validator
    _distinct(sc, "cache", caches)
    name = sc.get("name")
    return [{**sc, "name": f"{name}@{c}@t{k}", "cache": c, "conversation": f"{name}@{c}", "turn": k,
             "sweep": f"{name}@{c}"} for c in caches for k in range(1, turns + 1)]


def _expand_schedules(sc: Any) -> list[Any]:
    """``diffusion = {schedule = ["timestep", "front_loaded"]}``: one scenario per schedule, NAME@SCHEDULE."""
    diff = sc.get("diffusion") if isinstance(sc, dict) else None
    values = diff.get("schedule") if isinstance(diff, dict) else None
    if not isinstance(values, list):
        return [sc]
    _distinct(sc, "diffusion.schedule", values)
    return [{**sc, "name": f"{sc.get('name')}@{v}", "diffusion": {**diff, "schedule": v}} for v in values]


def _expand_load(sc: Any) -> list[Any]:
    if not isinstance(sc, dict):
        return [sc]
    for key, tag in (("concurrency", "c"), ("rate", "r")):
        values = sc.get(key)
        if isinstance(values, list):
            _distinct(sc, key, values)
            return [{**sc, "name": f"{sc.get('name')}@{tag}{v:g}" if isinstance(v, (int, float)) else
                     f"{sc.get('name')}@{tag}{v}", key: v, "load": sc.get("name")} for v in values]
    return [sc]


class Config(Strict):
    model: ModelConfig = ModelConfig()
    engine: EngineConfig = EngineConfig()
    run: RunConfig = RunConfig()
    report: ReportConfig = ReportConfig()
    ui: UIConfig = UIConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    recording: RecordingConfig = RecordingConfig()
    server: ServerConfig = ServerConfig()
    cluster: ClusterConfig = ClusterConfig()
    diffusion: DiffusionConfig = DiffusionConfig()
    scenarios: list[ScenarioConfig] = Field(default_factory=_default_scenarios, min_length=1)
    alerts: list[AlertRule] = Field(default_factory=list, max_length=MAX_ALERTS,
                                    description="threshold rules checked after every run")

    @model_validator(mode="before")
    @classmethod
    def _sweeps(cls, data: Any) -> Any:
        if isinstance(data, dict) and "scenarios" not in data:
            # the built-in scenarios, expanded like a file's: profiled twins, a matrix's cells
            data = {**data, "scenarios": [s.model_dump(mode="python", exclude_defaults=True)
                                          for s in _default_scenarios()]}
        return expand_profiled(expand_matrix(expand_sweeps(data)))

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        names = [s.name for s in self.scenarios]
        dup = _repeated(names)
        if dup:
            raise ValueError(f"scenario names must be unique; repeated: {dup}")
        known = set(names)
        for i, rule in enumerate(self.alerts):
            if rule.scenario is not None and rule.scenario not in known:
                raise ValueError(f"alerts[{i}] ({rule.name}): scenario {rule.scenario!r} is not defined "
                                 f"(scenarios: {_some(names)})")
        cc = self.cluster
        if (cc.per_node or cc.matrix) and not cc.ray:
            raise ValueError(f"cluster.{'per_node' if cc.per_node else 'matrix'} runs engine hosts on a Ray cluster: "
                             "give cluster.ray (--ray ADDRESS|auto|local)")
        if (cc.per_node or cc.matrix) and self.server.url:
            raise ValueError("engine hosts (cluster.per_node, cluster.matrix) run a local engine on each node; "
                             "client workers against a server (--url) are the other mode: choose one")
        if cc.per_node and cc.matrix:
            raise ValueError("cluster.per_node runs the same settings on every node and cluster.matrix spreads "
                             "combinations over the nodes: choose one")
        if cc.ray and not self.server.url and not (cc.per_node or cc.matrix):
            raise ValueError("cluster.ray: Ray client workers send requests to a server; give its URL (--url or "
                             "server.url), or run engine hosts (--per-node, cluster.matrix)")
        if cc.matrix:
            base = self.model_dump(mode="python")  # once: each cell is checked with its own scenarios only
            for label, cell in matrix_cells(cc.matrix):
                try:
                    Config.model_validate(_cell_data(base, label, cell))
                except ValidationError as e:
                    shown = label if len(label) <= 60 else label[:57] + "..."
                    raise ValueError(format_validation_error(f"cluster.matrix: cell {shown}", e)) from None
        load = [s.name for s in self.scenarios if s.is_load]
        if load and not self.server.url:
            raise ValueError(f"scenario {load[0]}: concurrency, rate and trace send requests to a server; give its URL "
                             "(--url or server.url)")
        own = [s.name for s in self.scenarios if s.per_request]
        if own and cc.ray:
            raise ValueError(f"scenario {own[0]}: a trace, a prompts file or a length distribution is sent from this "
                             "process, not from Ray client workers (cluster.ray)")
        dup = _repeated([r.name for r in self.alerts])
        if dup:
            raise ValueError(f"alert rule names must be unique; repeated: {dup}")
        return self

    @property
    def engine_hosts(self) -> bool:
        """Ray engine hosts run the session (one per node, or the matrix's cells)."""
        return bool(self.cluster.ray and (self.cluster.per_node or self.cluster.matrix))

    def scenario(self, name: str) -> ScenarioConfig:
        for s in self.scenarios:
            if s.name == name:
                return s
        raise KeyError(name)


def _repeated(names: list[str]) -> str:
    """The names given more than once (counted in one pass), a few of them, or ""."""
    return _some(sorted(n for n, k in Counter(names).items() if k > 1))


def _some(names: list[str], n: int = 12) -> str:
    return ", ".join(names[:n]) + (f", ... ({len(names):,} in all)" if len(names) > n else "")


def cell_config(cfg: Config, label: str | None) -> Config:
    """The config an engine host runs: ``cfg`` without the cluster, with a matrix cell's settings
    and only that cell's scenarios (``label`` None: every scenario, as ``--per-node`` runs them)."""
    cell = dict(matrix_cells(cfg.cluster.matrix))[label] if label is not None else None
    return Config.model_validate(_cell_data(cfg.model_dump(mode="python"), label, cell))


def cell_configs(cfg: Config) -> list[tuple[str, Config]]:
    """Every matrix cell's :func:`cell_config`, with ``cfg`` dumped once (not once per cell: 256
    cells of 4,096 scenarios would dump a million)."""
    base = cfg.model_dump(mode="python")
    return [(label, Config.model_validate(_cell_data(base, label, cell)))
            for label, cell in matrix_cells(cfg.cluster.matrix)]


def _cell_data(base: dict[str, Any], label: str | None, cell: dict[str, Any] | None) -> dict[str, Any]:
    """:func:`cell_config`'s data from a config's dump (``base`` is left as it was)."""
    data = {**base, "cluster": {}, "alerts": []}  # rules are evaluated once, where the session's events meet
    if label is not None and cell is not None:
        data.update(model=dict(base["model"]), engine=dict(base["engine"]))  # the cell's settings land in copies
        data = apply_overrides(data, list(cell.items()))
        data["scenarios"] = [sc for sc in base["scenarios"] if sc["cell"] == label]
    return data


def with_load(cfg: Config, *, concurrency: list[int] | None = None, rate: list[float] | None = None,
              requests: int | None = None) -> Config:
    """The config with every scenario made a load scenario (``--concurrency``, ``--rate``,
    ``--requests``); a list of several values sweeps it."""
    if concurrency is None and rate is None and requests is None:
        return cfg
    data = cfg.model_dump(mode="python")
    if concurrency is not None or rate is not None:  # a load sweep of the file is replaced, not swept again
        seen: set[str] = set()
        kept = []
        for sc in data["scenarios"]:
            if sc["load"] is not None:
                if sc["load"] in seen:
                    continue
                seen.add(sc["load"])
                sc.update(name=sc["load"], load=None)
            kept.append(sc)
        data["scenarios"] = kept
    for sc in data["scenarios"]:
        if concurrency is not None:
            sc.update(concurrency=concurrency[0] if len(concurrency) == 1 else concurrency, rate=None)
        if rate is not None:
            sc.update(rate=rate[0] if len(rate) == 1 else rate, concurrency=None)
        if requests is not None:
            sc["requests"] = requests
    flag = "--concurrency" if concurrency is not None else "--rate" if rate is not None else "--requests"
    return _revalidated(data, flag, key_in_source=True)


def _revalidated(changed: dict[str, Any], flag: str, **where: Any) -> Config:
    """The config a command-line option changed, validated again: a problem is one line naming the option."""
    try:
        return Config.model_validate(changed)
    except ValidationError as e:
        raise ConfigError(format_validation_error(flag, e, **where)) from None
    except ValueError as e:
        raise ConfigError(f"{flag}: {e}") from None


def with_trace(cfg: Config, trace: str | None = None, speed: float | None = None) -> Config:
    """The config with ``--trace FILE`` / ``--trace-speed X``: the trace scenarios of the config
    replay FILE instead (at speed X), or, where it has none, one scenario ``trace`` replaces its
    scenarios. Call :func:`resolve_workloads` once every option is applied."""
    if trace is None and speed is None:
        return cfg
    data = cfg.model_dump(mode="python")
    traced = [sc for sc in data["scenarios"] if sc["trace"] is not None]
    flag = "--trace" if trace is not None else "--trace-speed"
    if trace is not None:
        path = os.path.abspath(os.path.expanduser(trace))
        if not traced:
            traced = [{"name": "trace", "trace": path}]
            data["scenarios"] = traced
        for sc in traced:
            sc["trace"] = path
    elif not traced:
        raise ConfigError("--trace-speed applies to a trace scenario: give --trace FILE (or a scenario with "
                          "trace = FILE)")
    if speed is not None:
        for sc in traced:
            sc["trace_speed"] = speed
    return _revalidated(data, flag, data=data)


def resolve_workloads(cfg: Config) -> Config:
    """Every trace and prompt dataset of the config read and checked now, so that a malformed line
    is a one-line error (ConfigError, naming the file and the line) before anything starts; a trace
    scenario's counts are filled in from its file: ``requests`` (default: every line; never more
    than it holds) and ``max_tokens`` (the longest output_length replayed, at most max_tokens). A
    recording keeps the config as it is then, so its replay needs none of these files."""
    if not any(s.per_request for s in cfg.scenarios):
        return cfg
    out = []
    for s in cfg.scenarios:
        if s.prompts is not None:
            read_prompts(s.prompts)
        if s.trace is not None:
            t = read_trace(s.trace)
            t.check_blocks(s.trace_block_tokens)
            n_lines = len(t.requests)
            n = s.requests if s.requests is not None else n_lines
            for key, k in (("requests", n), ("warmup_requests", s.warmup_requests or 0)):
                if k > n_lines:
                    raise ConfigError(f"scenario {s.name}: {key} = {k:,}, but the trace {s.trace} holds "
                                      f"{n_lines:,} request{'s' if n_lines != 1 else ''}")
            longest = max(r.output_length for r in t.requests[:max(n, s.warmup_requests or 0)])
            s = s.model_copy(update={"requests": n, "max_tokens": min(s.max_tokens, longest)})
        out.append(s)
    return cfg.model_copy(update={"scenarios": out})


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("greedy", "top_k", "top_p") and out.endswith("sampler"):
            continue  # discriminated-union tag: not a key the user wrote
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(source: str, err: ValidationError, *, key_in_source: bool = False,
                            data: dict[str, Any] | None = None) -> str:
    """One line: ``FILE: key.path: what was expected (got VALUE)``; counts further problems."""
    errors = err.errors(include_url=False)
    first = errors[0]
    key = _loc(first["loc"])
    loc = first["loc"]
    if data and len(loc) >= 2 and loc[0] in ("alerts", "scenarios") and isinstance(loc[1], int):
        try:
            label = data[loc[0]][loc[1]].get("name")
        except (IndexError, KeyError, TypeError, AttributeError):
            label = None
        if label:  # name the rule / scenario, not just its index
            key = key.replace(f"{loc[0]}[{loc[1]}]", f"{loc[0]}[{loc[1]}] ({label})", 1)
    kind = first["type"]
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        msg = f"unknown key{_allowed_keys(parent)}"
    elif kind == "missing":
        msg = "required key is missing"
    elif kind == "value_error":
        msg = str(first["msg"]).removeprefix("Value error, ")
    else:
        msg = first["msg"][0].lower() + first["msg"][1:]
        if "input" in first and not isinstance(first["input"], (dict, list)):
            msg += f" (got {first['input']!r})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    where = source if key_in_source else f"{source}: {key}"
    return f"{where}: {msg}{more}"


def _allowed_keys(parent: tuple[Any, ...]) -> str:
    model: Any = Config
    for part in parent:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return ""
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        model = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if model is None:
            return ""
    keys = list(getattr(model, "model_fields", {}))
    return f" (expected one of: {', '.join(keys)})" if keys else ""


def _first_clause(e: Exception) -> str:
    """Python's message up to its advice for programmers ("...; use sys.set_int_max_str_digits()")."""
    return str(e).split(";")[0]


def parse_value(text: str, what: str = "--set") -> Any:
    """A ``--set`` value: one TOML value when it is one (a number, a boolean, a quoted string, an
    array, an inline table), else the text itself, as a string. It is read as that one value and
    nothing more: text that holds more TOML after it (a newline, then ``[model]`` and a key) is
    refused (ConfigError naming ``what``), never spliced into the config."""
    try:
        doc = tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise ConfigError(f"{what}: the value is nested too deeply") from None
    except ValueError as e:  # e.g. an integer of thousands of digits
        raise ConfigError(f"{what}: not a value a config can hold: {_first_clause(e)}") from None
    if list(doc) != ["v"]:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise ConfigError(f"{what}: {shown!r} is more than one TOML value (a value may not add keys or tables "
                          "to the config; quote it to mean text)")
    return doc["v"]


Override = Union[str, tuple[str, Any]]


def override_key(item: Override) -> str:
    return item[0] if isinstance(item, tuple) else item.partition("=")[0].strip()


def apply_overrides(data: dict[str, Any], overrides: list[Override]) -> dict[str, Any]:
    """Apply overrides to raw config data: ``section.key=value`` text from ``--set`` (the value read
    as TOML), or ``(key, value)`` pairs from options such as ``--model`` (the value taken as data,
    never spliced into TOML text: a path may hold quotes or a newline)."""
    for item in overrides:
        if isinstance(item, tuple):
            key, value = item
        else:
            if "=" not in item:
                raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. model.n_batch=64")
            key, _, text = item.partition("=")
            value = parse_value(text.strip(), f"--set {key.strip()}")
        parts = key.strip().split(".")
        node = data
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {p} is not a table")
        node[parts[-1]] = value
    return data


def find_default_config() -> Path | None:
    """``./config.toml`` if it exists (the repository's documented file), else none."""
    p = Path.cwd() / DEFAULT_CONFIG_NAME
    return p if p.is_file() else None


def load_config(path: str | os.PathLike[str] | None = None, overrides: list[Override] | None = None) -> Config:
    """Read and validate a config file; ``path=None`` uses ./config.toml or built-in defaults."""
    source = "defaults"
    data: dict[str, Any] = {}
    p = Path(path) if path is not None else find_default_config()
    if p is not None:
        source = str(p)
        raw = read_input(p, MAX_CONFIG_BYTES, "config file", ConfigError)
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not a UTF-8 text file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{p}: invalid TOML: {e}") from None
        except ValueError as e:  # what TOML allows and Python cannot hold (an integer of thousands of digits)
            raise ConfigError(f"{p}: not a value a config can hold: {_first_clause(e)}") from None
        except RecursionError:  # [[[[... or {a={a={... thousands deep
            raise ConfigError(f"{p}: arrays or tables nested too deeply to be a config") from None
    data = apply_overrides(data, overrides or [])
    try:
        cfg = Config.model_validate(data)
    except RecursionError:
        raise ConfigError(f"{source}: arrays or tables nested too deeply to be a config") from None
    except ValidationError as e:
        key = _loc(e.errors(include_url=False)[0]["loc"])
        for item in overrides or []:
            k = override_key(item)
            if key == k or key.startswith(k + ".") or key.startswith(k + "["):
                # the bad value came from the command line, not from the file
                raise ConfigError(format_validation_error(f"--set {key}", e, key_in_source=True)) from None
        raise ConfigError(format_validation_error(source, e, data=data)) from None
    return resolve_paths(cfg, p.parent if p is not None else Path.cwd())


def resolve_paths(cfg: Config, base: Path) -> Config:
    """Relative model/prompt paths are relative to the config file, as a user reading it expects."""

    def fix(path: str | None) -> str | None:
        if not path:
            return path
        q = Path(path).expanduser()
        return str(q if q.is_absolute() else (base / q))

    scenarios = [s.model_copy(update={"prompt_file": fix(s.prompt_file), "trace": fix(s.trace),
                                      "prompts": fix(s.prompts)}) for s in cfg.scenarios]
    model = cfg.model.model_copy(update={"path": fix(cfg.model.path) or ""})
    cluster = cfg.cluster
    if "model.path" in cluster.matrix:  # the cells' labels stay those of the paths as written
        cluster = cluster.model_copy(update={"matrix": {**cluster.matrix, "model.path": [
            fix(p) if isinstance(p, str) else p for p in cluster.matrix["model.path"]]}})
    return cfg.model_copy(update={"scenarios": scenarios, "model": model, "cluster": cluster})
