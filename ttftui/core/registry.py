"""Every metric ttftui reports, in one table: name, label, unit, how it is pooled, which way is
better, its definition, and which views show it.

The per-scenario summary, the dashboard's percentile table and TTFT bar labels, the alert rules'
metric names, ``compare``'s metrics and directions, the CSV columns, the report's definitions (and so
``--help`` and the README's definition table) are all read from here, so a metric is added in one
place. A run's value of a metric is ``RunMetrics.value(name)``: a field of the run's metrics, or an
entry of its ``extra`` figures (telemetry, and whatever a new source computes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Unit = Literal["ms", "tps", "pct", "bytes", "count"]


@dataclass(frozen=True)
class Metric:
    name: str  # the key in reports, rules and compare: units in the name (_ms, _tps, _pct, _bytes)
    label: str  # in the dashboard's table and bar
    unit: Unit
    definition: str
    pooled: bool = False  # True: pooled over tokens (ITL); False: one value per run
    higher_is_better: bool = False
    component: str | None = None  # a TTFT component (its phase name), in the order they happen
    table: bool = True  # a row of the dashboard's percentile table
    compare: bool = True  # tested by ``ttftui compare``
    rule: bool = True  # usable by an alert rule
    csv: bool = True  # a column of the CSV report
    # where the value comes from: the engine (every run has it), the telemetry samples or a server
    # (those two are summarised only where measured)
    source: Literal["engine", "telemetry", "remote"] = "engine"
    measured_only: bool = False  # summarised only where some run measured it (not every engine does)
    in_help: bool = True  # its definition is printed by --help, the README and every report
    colour: str | None = None  # a component's colour in the themes, when it borrows another's

    @property
    def telemetry(self) -> bool:
        return self.source == "telemetry"

    @property
    def optional(self) -> bool:
        """Summarised (and shown) only where some run measured it."""
        return self.source != "engine" or self.measured_only


_TELEMETRY_DEF = "per run, from the telemetry samples taken while it ran (prefill = start to first token, decode = the rest)"


def _telemetry(name: str, label: str, unit: Unit) -> Metric:
    return Metric(name, label, unit, _TELEMETRY_DEF, table=False, compare=False, csv=False, source="telemetry",
                  in_help=False)


def _remote(name: str, label: str, unit: Unit, definition: str, **kw: object) -> Metric:
    return Metric(name, label, unit, definition, source="remote", in_help=False, **kw)  # type: ignore[arg-type]


SampleUnit = Literal["bytes", "pct", "w", "c", "mhz"]
Statistic = Literal["max", "mean", "delta"]


@dataclass(frozen=True)
class RunFigure:
    """A per-run telemetry metric taken from one sample field: ``statistic`` over the run's samples
    (``delta``: last minus first), and with ``phases`` also over its prefill and its decode samples
    (``prefill_<name>``, ``decode_<name>``)."""

    name: str
    label: str
    statistic: Statistic
    phases: bool = False


@dataclass(frozen=True)
class SampleField:
    """A field of every telemetry sample (``TelemetrySample``), in one table: where it is read
    (``gpu``: pynvml / pyrsmi; ``host``: psutil), the dashboard's sparklines (``panel``), the
    report's thinned time series (``series``), its session figures (``session``: report key and
    statistic) and its per-run figures (``runs``). A field is added here and in the sample event."""

    name: str
    label: str
    unit: SampleUnit
    side: Literal["gpu", "host"]
    panel: bool = False
    series: bool = False
    session: tuple[tuple[str, Statistic], ...] = ()
    runs: tuple[RunFigure, ...] = ()


SAMPLE_FIELDS: tuple[SampleField, ...] = (
    SampleField("gpu_busy_pct", "GPU busy", "pct", "gpu", panel=True, series=True,
                session=(("gpu_busy_mean_pct", "mean"), ("gpu_busy_max_pct", "max")),
                runs=(RunFigure("gpu_busy_mean_pct", "GPU busy", "mean", phases=True),)),
    SampleField("gpu_mem_used_bytes", "GPU mem", "bytes", "gpu", panel=True, series=True,
                session=(("gpu_mem_peak_bytes", "max"),),
                runs=(RunFigure("gpu_mem_peak_bytes", "GPU mem peak", "max", phases=True),
                      RunFigure("gpu_mem_mean_bytes", "GPU mem mean", "mean"),
                      RunFigure("gpu_mem_delta_bytes", "GPU mem delta", "delta"))),
    SampleField("gpu_mem_total_bytes", "GPU mem total", "bytes", "gpu", session=(("gpu_mem_total_bytes", "max"),)),
    SampleField("gpu_power_w", "GPU power", "w", "gpu", session=(("gpu_power_mean_w", "mean"),)),
    SampleField("gpu_temp_c", "GPU temp", "c", "gpu", session=(("gpu_temp_max_c", "max"),)),
    SampleField("gpu_sm_clock_mhz", "SM clock", "mhz", "gpu"),
    SampleField("proc_cpu_pct", "CPU proc", "pct", "host", panel=True, series=True,
                session=(("proc_cpu_mean_pct", "mean"),),
                runs=(RunFigure("proc_cpu_mean_pct", "CPU (engine)", "mean", phases=True),)),
    SampleField("rss_bytes", "RSS", "bytes", "host", panel=True, series=True, session=(("rss_peak_bytes", "max"),),
                runs=(RunFigure("rss_peak_bytes", "RSS peak", "max"),)),
    SampleField("sys_cpu_pct", "CPU sys", "pct", "host", series=True, session=(("sys_cpu_mean_pct", "mean"),),
                runs=(RunFigure("sys_cpu_mean_pct", "CPU (system)", "mean"),)),
)
PHASES = ("prefill", "decode")  # a run's telemetry phases: start to first token, and the rest


def sample_fields(**flags: object) -> tuple[str, ...]:
    """Names of the sample fields whose attributes match, in table order: ``sample_fields(side="gpu")``."""
    return tuple(f.name for f in SAMPLE_FIELDS if all(getattr(f, k) == v for k, v in flags.items()))


def phase_label(label: str, phase: str) -> str:
    """"CPU (engine)" -> "CPU (engine, prefill)"; "GPU busy" -> "GPU busy (prefill)"."""
    return f"{label[:-1]}, {phase})" if label.endswith(")") else f"{label} ({phase})"


def _run_figures() -> list[tuple[str, str, Unit]]:
    """(metric, label, unit) of every per-run telemetry figure, the phases' after the run's."""
    out: list[tuple[str, str, Unit]] = []
    for f in SAMPLE_FIELDS:
        unit: Unit = "bytes" if f.unit == "bytes" else "pct"
        for r in f.runs:
            out.append((r.name, r.label, unit))
            if r.phases:
                out += [(f"{ph}_{r.name}", phase_label(r.label, ph), unit) for ph in PHASES]
    return out


METRICS: tuple[Metric, ...] = (
    Metric("ttft_ms", "TTFT", "ms", "t0 -> first token text available to the consumer"),
    Metric("tokenize_ms", "tokenize", "ms", "chat-template render (if any) + tokenize of the prompt",
           component="tokenize"),
    Metric("cache_prep_ms", "cache prep", "ms",
           "KV-cache clear before prefill (every run starts from an empty cache: no prefix reuse)",
           component="cache_prep"),
    Metric("prefill_ms", "prefill", "ms", "sum over prompt chunks of (llama_decode of the chunk + "
           "llama_synchronize); each chunk of n_batch tokens is also kept in prefill_chunks_ms", component="prefill"),
    Metric("first_sample_ms", "first sample", "ms",
           "sampling the first output token from the last prefill logits (llama.cpp sampler chain)",
           component="first_sample"),
    Metric("first_detok_ms", "first detok", "ms", "token -> text of the first token, including UTF-8 hold-back",
           component="first_detok"),
    # A diffusion model's run (Dream, LLaDA, ...) has these components instead of prefill and sampling:
    # its first readable token comes after some denoising steps, each a forward pass of the whole canvas.
    Metric("canvas_ms", "canvas set-up", "ms", "diffusion: the canvas (prompt + masked answer) written into the batch",
           component="canvas", colour="cache_prep", measured_only=True, in_help=False),
    Metric("step_forward_ms", "steps: forward", "ms", "diffusion: sum over the steps up to the first readable token of "
           "(llama_decode of the whole canvas + llama_synchronize); every step is in diffusion.steps",
           component="step_forward", colour="prefill", measured_only=True, in_help=False),
    Metric("step_select_ms", "steps: select", "ms", "diffusion: sum over the same steps of reading the logits back, "
           "choosing the positions to commit and committing them (their text included)",
           component="step_select", colour="first_sample", measured_only=True, in_help=False),
    # A run against a server (ttftui --url) has these components instead of the engine's phases.
    _remote("connect_ms", "connect", "ms", "client: a new TCP connection to the server (0 when a kept-alive one "
            "was reused)", component="connect", colour="tokenize"),
    _remote("send_ms", "send request", "ms", "client: t0 -> the request (headers and body) written, less "
            "connect_ms", component="send", colour="cache_prep"),
    # The server's part of TTFT (request written -> the TTFT point) cut so that the parts partition it:
    # the server's prefill is a duration on its clock; it is placed as late as it can be (ending at the
    # first text's arrival), the wait for the headers is what comes before it, and the rest is named
    # (server other), never a negative remainder (ttftui.analysis.metrics.remote_parts_ns).
    _remote("server_wait_ms", "server wait", "ms", "client: request written -> response headers, up to where the "
            "server's prefill begins as placed in TTFT (server_prefill_in_ttft_ms): its queue or slot wait, and what "
            "it does before answering; the rest of the wait for the headers is inside its prefill "
            "(server_wait_overlap_ms: llama-server answers after the slot has started), counted once",
            component="wait", colour="first_sample"),
    _remote("server_other_ms", "server other", "ms", "the server's time in TTFT the client cannot attribute: "
            "request written -> the TTFT point, less server_wait_ms and server_prefill_in_ttft_ms (after the "
            "headers and before its prefill, sampling and sending the first token; all of it after the headers when "
            "the server gives no prefill of its own)", component="server_other", colour="first_detok"),
    _remote("server_prefill_in_ttft_ms", "server prefill", "ms", "the server's own prefill (server_prefill_ms) "
            "placed on the client's clock as late as it can be, ending at the first text's arrival, and clipped to "
            "request written -> that point (so TTFT's parts add up; it differs from server_prefill_ms only when "
            "clipped)", component="server_prefill", colour="prefill", compare=False),
    Metric("unaccounted_ms", "unaccounted", "ms", "ttft_ms - sum of the components above (shown, never hidden)",
           component="unaccounted"),
    Metric("unaccounted_pct", "unaccounted %", "pct", "unaccounted_ms / ttft_ms x 100", table=False, compare=False,
           in_help=False),
    Metric("prefill_tps", "prefill tok/s", "tps", "per run: n_prompt_tokens / prefill_ms x 1000",
           higher_is_better=True),
    Metric("itl_ms", "ITL", "ms", "gap between consecutive output tokens becoming available (pooled over tokens)",
           pooled=True, csv=False),
    Metric("tpot_ms", "TPOT", "ms", "per run: (e2e_ms - ttft_ms) / (n_output - 1)"),
    Metric("decode_tps", "decode tok/s", "tps", "per run: (n_output - 1) / (e2e_ms - ttft_ms) x 1000",
           higher_is_better=True),
    Metric("e2e_ms", "E2E", "ms", "t0 -> last output token"),
    # Where decode time goes (the local llama.cpp engine): per run, the mean over its tokens but the
    # first; the four add up to the run's mean gap between tokens.
    Metric("token_decode_ms", "decode step", "ms", "per run, mean per output token (all but the first): "
           "llama_decode of the token + llama_synchronize", measured_only=True, in_help=False),
    Metric("token_sample_ms", "sample", "ms", "per run, mean per output token: the sampler chain",
           measured_only=True, in_help=False),
    Metric("token_detok_ms", "detokenize", "ms", "per run, mean per output token: token -> text",
           measured_only=True, in_help=False),
    Metric("token_rest_ms", "loop rest", "ms", "per run, mean per output token: the rest of the loop (handing "
           "the previous token over, the stop check)", measured_only=True, in_help=False),
    Metric("first_commit_ms", "first committed", "ms", "diffusion: t0 -> the first step that committed a token, at "
           "any answer position (ttft_ms waits for the first answer position: the first readable token)",
           measured_only=True, in_help=False),
    Metric("steps_to_readable_count", "steps to readable", "count", "diffusion: denoising steps up to and including the one "
           "that made the first answer token readable", measured_only=True, in_help=False),
    Metric("step_ms", "time per step", "ms", "diffusion: per run, mean over its steps of forward + logits read + "
           "selection + commit", measured_only=True, in_help=False),
    Metric("final_ms", "time to final", "ms", "diffusion: t0 -> every answer position committed (the last step)",
           measured_only=True, in_help=False),
    Metric("committed_tps", "committed tok/s", "tps", "diffusion: answer positions / (final_ms - the first step's "
           "start) x 1000", measured_only=True, in_help=False, higher_is_better=True),
    # A conversation's turn (kind = "conversation"): how much of its prompt came from a cache.
    Metric("cached_tokens_count", "cached tokens", "count", "conversation: prompt tokens taken from a cache (the KV "
           "cache kept from the last turn, or the server's own account) instead of evaluated", measured_only=True,
           in_help=False, higher_is_better=True),
    Metric("new_tokens_count", "new tokens", "count", "conversation: prompt tokens evaluated this turn (depth - "
           "cached)", measured_only=True, in_help=False),
    Metric("cache_hit_pct", "cache hit %", "pct", "conversation: cached_tokens_count / prompt tokens x 100",
           measured_only=True, in_help=False, higher_is_better=True),
    # A profiled run (engine.profile_ops, NAME@ops): prefill by graph operation
    Metric("prefill_matmul_pct", "prefill matmul %", "pct", "profiled run: the weight matrix multiplications' (MUL_MAT "
           "but the attention's) share of its prefill chunks' llama_decode time", measured_only=True, in_help=False),
    Metric("prefill_attention_pct", "prefill attn %", "pct", "profiled run: attention's share (FLASH_ATTN_EXT, or "
           "SOFT_MAX and the kq/kqv matmuls)", measured_only=True, in_help=False),
    Metric("prefill_ops_gap_pct", "profiler gap %", "pct", "profiled run: the share of its prefill spans outside "
           "the observed nodes' compute (graph splits, synchronisation, the callback: what profiling adds)",
           measured_only=True, in_help=False, compare=False),
    Metric("prefix_reuse_ms", "prefix restore", "ms", "shared prefix, a hit: the prefix's saved KV state restored "
           "(part of cache_prep_ms)", measured_only=True, in_help=False),
    Metric("prefix_save_ms", "prefix save", "ms", "shared prefix, keep's miss: the prefix's KV state saved after "
           "its prefill (part of cache_prep_ms)", measured_only=True, in_help=False),
    _remote("ttfb_ms", "TTFB", "ms", "client: t0 -> response headers"),
    _remote("first_event_ms", "first SSE event", "ms", "client: t0 -> the first server-sent event", table=False,
            compare=False),
    _remote("first_choice_ms", "first choice", "ms", "client: t0 -> the first event with a choice, even an empty "
            "role-only one (what vLLM's bench calls TTFT)", table=False, compare=False),
    _remote("first_content_ms", "first content", "ms", "client: t0 -> the first content text (what LLMPerf calls "
            "TTFT; ttft_ms also takes reasoning text)", table=False, compare=False),
    _remote("client_lag_ms", "client lag", "ms", "open loop: the request's scheduled arrival -> t0 (the client sent "
            "it late: every worker was busy, or it could not keep up); not part of TTFT", compare=False),
    _remote("server_prefill_ms", "server's prefill", "ms", "the server's own account: llama-server "
            "timings.prompt_ms (the prompt tokens it evaluated, not those it took from its cache), as it gave it; "
            "TTFT's bar shows it placed in TTFT (server_prefill_in_ttft_ms)", table=False),
    _remote("server_wait_overlap_ms", "wait in prefill", "ms", "the part of request written -> response headers "
            "inside the server's prefill as placed in TTFT (llama-server sends its headers after the slot has "
            "started): in server_prefill_in_ttft_ms, not in server_wait_ms", table=False, compare=False),
    _remote("server_decode_tps", "server decode tok/s", "tps", "the server's own account: predicted_n / "
            "predicted_ms x 1000", higher_is_better=True),
    # The server's prefix cache, by its own account (llama-server timings.cache_n / prompt_n, else
    # usage.prompt_tokens_details.cached_tokens / prompt_tokens): what a trace replay (scenario key
    # trace) is about; compare is left to the reader (the traffic decides it as much as the server does).
    _remote("server_cached_tokens_count", "server cached tokens", "count", "the server's own account: prompt "
            "tokens it took from its prefix cache (llama-server timings.cache_n; vLLM, SGLang "
            "usage.prompt_tokens_details.cached_tokens)", table=False, compare=False),
    _remote("server_cache_hit_pct", "server cache hit %", "pct", "the server's own account: cache_n / (cache_n + "
            "prompt_n) x 100 (llama-server), cached_tokens / prompt_tokens x 100 (usage's details): the share of "
            "the prompt it took from its prefix cache instead of evaluating it", compare=False),
    Metric("llama_prefill_diff_pct", "prefill vs llama.cpp %", "pct",
           "(ttftui's prefill_ms - llama.cpp's t_p_eval_ms) / t_p_eval_ms x 100, 1-token chunks left out on "
           "both sides", table=False, compare=False, rule=False, in_help=False),
    *(_telemetry(name, label, unit) for name, label, unit in _run_figures()),
)

# Words the definitions need that are not per-run metrics.
TERMS: dict[str, str] = {
    "t0": "the moment a request starts, before chat templating and tokenizing",
    "load_ms": "model load + context creation, once per session",
    "cold_ttft_ms": "load_ms + TTFT of the session's first request",
    "percentiles": "linear interpolation (NumPy default), always with n; warm-up runs excluded",
    "clock": "time.perf_counter_ns() in the thread that does the work, never at render time",
}

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def metric(name: str) -> Metric:
    return BY_NAME[name]


def names(**flags: bool) -> tuple[str, ...]:
    """Names of the metrics whose flags match, in table order: ``names(compare=True)``."""
    return tuple(m.name for m in METRICS if all(getattr(m, k) == v for k, v in flags.items()))


def components() -> tuple[Metric, ...]:
    """The TTFT components in the order they happen, ``unaccounted`` (derived) last."""
    return tuple(m for m in METRICS if m.component is not None)


def measured_components() -> tuple[str, ...]:
    """The phase names the engine times (its components but the derived ``unaccounted``)."""
    return tuple(m.component for m in components()  # type: ignore[misc]
                 if m.component != "unaccounted" and m.source == "engine" and not m.measured_only)


def component_colour(component: str) -> str:
    """The theme colour a component is drawn in (a server's components borrow the engine's)."""
    return next((m.colour or component for m in components() if m.component == component), component)


def component_label(component: str) -> str:
    return next((m.label for m in components() if m.component == component), component)


def definitions() -> dict[str, str]:
    """t0, the defined metrics, then the other terms: what --help, the README and every report say."""
    out = {"t0": TERMS["t0"]}
    out.update({m.name: m.definition for m in METRICS if m.in_help})
    out.update({k: v for k, v in TERMS.items() if k != "t0"})
    return out
