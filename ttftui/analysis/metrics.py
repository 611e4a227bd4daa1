"""Per-run metrics and per-scenario statistics, derived from the reducer's state.

Definitions are :mod:`ttftui.core.registry`'s (also printed by ``ttftui --help`` and the README):

* unaccounted = ttft − (tokenize + cache_prep + prefill + first_sample + first_detok), never hidden
* tpot        = (e2e − ttft) / (n_output − 1)
* decode_tps  = (n_output − 1) / (e2e − ttft) × 1000
* prefill_tps = n_prompt_tokens / prefill × 1000
* itl         = gaps between consecutive output tokens, pooled over the scenario's runs

Runs that count toward statistics: finished, not warm-up, not stopped early. The others stay in the
record, marked.

llama.cpp cross-check: llama.cpp books a 1-token batch as "eval", not "prompt eval". When the last
prefill chunk holds one token, ``n_p_eval`` is one short and that chunk's time is in ``t_eval_ms``;
the comparison then leaves that chunk out of our prefill too, so like is compared with like.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from ttftui.analysis import gpu_driver
from ttftui.analysis.stats import Summary, summarize
from ttftui.core import registry
from ttftui.core.events import DiffusionTiming, OpsProfile, RemoteTiming, RunFinished, TokenEmitted

NS_PER_MS = 1e6



def statistic(stat: str, vals: Sequence[float]) -> float | None:
    """A telemetry statistic of ``registry.SAMPLE_FIELDS`` (max, mean, or delta = last - first)."""
    if stat == "delta":
        return (vals[-1] - vals[0]) if len(vals) >= 2 else None
    if not vals:
        return None
    return max(vals) if stat == "max" else sum(vals) / len(vals)


def telemetry_figures(samples: Sequence[Any], first_token_t_ns: int | None) -> dict[str, float | None]:
    """Per-run (and per-phase) telemetry from the samples inside the run's time window: each sample
    field's run figures of ``registry.SAMPLE_FIELDS``; prefill = start to first token."""
    if not samples:
        return {}
    split = first_token_t_ns if first_token_t_ns is not None else samples[-1].t_ns + 1
    parts = {"": samples, "prefill_": [s for s in samples if s.t_ns < split],
             "decode_": [s for s in samples if s.t_ns >= split]}
    out: dict[str, float | None] = {}
    for f in registry.SAMPLE_FIELDS:
        vals = {p: [v for s in part if (v := getattr(s, f.name)) is not None] for p, part in parts.items()}
        for r in f.runs:
            for p in ("", "prefill_", "decode_") if r.phases else ("",):
                out[p + r.name] = statistic(r.statistic, vals[p])
    out["prefill_samples"] = len(parts["prefill_"])
    out["decode_samples"] = len(parts["decode_"])
    return out


def telemetry_gaps(m: "RunMetrics", interval_ms: float | None, driver: dict[str, Any] | None = None,
                   series: dict[str, Any] | None = None) -> dict[str, str]:
    """Why a phase of this run has no telemetry figure from the sampler's polls, per phase, instead of
    a bare null: the phase was shorter than the time between two polls, or the sampler fell behind.
    Where the GPU driver's own samples (``driver``: :func:`ttftui.analysis.gpu_driver.phase_figures` of this
    run; ``series``: the session's) give the phase a figure, the text says so, and what that figure
    averages when the driver's samples are longer than the phase. ``interval_ms``: the session's
    sampling interval (None: no sampler ran, nothing to explain)."""
    if interval_ms is None:
        return {}
    out: dict[str, str] = {}
    decode_ms = max(m.e2e_ms - m.ttft_ms, 0.0)
    for phase, dur in (("prefill", m.ttft_ms), ("decode", decode_ms)):
        if m.extra.get(f"{phase}_samples") or (phase == "decode" and m.n_output_tokens <= 1):
            continue  # sampled, or no decode at all
        if dur < interval_ms:
            why = (f"{phase} lasted {dur:.1f} ms, less than the {interval_ms:g} ms between samples: no "
                   "sample landed in it")
        else:
            why = (f"no sample landed in the {phase} ({dur:.1f} ms) though one was due every "
                   f"{interval_ms:g} ms: the sampler fell behind")
        if driver and series:
            has = driver.get(f"{phase}_{gpu_driver.KEYS[gpu_driver.HEADLINE]}") is not None
            note = gpu_driver.driver_note(phase, dur, driver, series)
            if has:
                why += f"; {phase}_*_driver_* figures come from the GPU driver's own samples"
            if note:
                why += f" ({note})" if has else f"; {note}"
        out[phase] = why
    return out


@dataclass(frozen=True)
class LlamaCompare:
    t_p_eval_ms: float
    n_p_eval: int
    t_eval_ms: float
    n_eval: int
    counters_enabled: bool
    prefill_compared_ms: float | None  # our prefill over the same tokens llama.cpp booked as prompt eval
    prefill_diff_pct: float | None  # (ours − llama.cpp) / llama.cpp × 100


@dataclass(frozen=True)
class RunMetrics:
    run_id: int
    scenario: str
    iteration: int
    warmup: bool
    counted: bool
    stop_reason: str
    n_prompt_tokens: int
    n_output_tokens: int
    ttft_ms: float
    tokenize_ms: float | None  # the engine's phases: None for a run against a server
    cache_prep_ms: float | None
    prefill_ms: float | None
    prefill_chunks_ms: tuple[float, ...]
    prefill_chunk_tokens: tuple[int, ...]
    first_sample_ms: float | None
    first_detok_ms: float | None
    unaccounted_ms: float
    unaccounted_pct: float
    prefill_tps: float | None
    itl_ms: tuple[float, ...]
    tpot_ms: float | None
    decode_tps: float | None
    e2e_ms: float
    llama: LlamaCompare | None
    output_text: str = ""
    t_start_ns: int = 0
    t_end_ns: int = 0
    extra: dict[str, float | None] = field(default_factory=dict)

    def pooled(self, metric: str) -> tuple[float, ...]:
        """A pooled metric's values in this run (ITL: one per gap between tokens)."""
        v = getattr(self, metric, None)
        if isinstance(v, tuple):
            return v
        extra = self.extra.get(metric)
        return tuple(extra) if isinstance(extra, (list, tuple)) else ()

    def value(self, metric: str) -> float | None:
        if metric == "llama_prefill_diff_pct":
            return self.llama.prefill_diff_pct if self.llama else None
        if metric in self.extra:
            return self.extra[metric]
        v = getattr(self, metric, None)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def remote_parts_ns(r: RemoteTiming, ttft_ns: int) -> dict[str, int | None]:
    """A server run's TTFT cut into parts on the client's clock, in ns, keyed by metric name: every
    part >= 0, and connect + send + wait + other + prefill + unaccounted = ttft_ns exactly.

    The client sees connect [0, C], send [C, S] (S: the request written), the response headers at H
    and the TTFT point T; the server's own prefill is a duration on its clock (``prompt_ms``), not a
    place on ours. It is placed as late as it can be: ending at E, the first text's arrival (the
    first token is sent after the prefill; E = T unless ``server.ttft_at`` looks at something else),
    and clipped to the window [S, E] it must fit in: P = min(prompt_ms, E - S), on [E - P, E].

    * server_wait_ms = min(H, E - P) - S: the wait for the headers, up to where the prefill begins
      (llama-server sends its headers after the slot has started: that overlap is the prefill's,
      server_wait_overlap_ms, counted once, not twice);
    * server_other_ms = (T - S) - wait - P: the server's time the client cannot attribute (after the
      headers and before the prefill, sampling and sending the first token, and [E, T]); all of
      T - H when the server gives no prefill of its own;
    * unaccounted_ms = T - the parts: 0, as every ns of [0, T] is in one part (the TTFT point is
      taken as the event arrives, before the client parses it).

    The points are clamped into order (0 <= C <= S <= H <= T) so that no part is negative even when
    the points are inconsistent (an old or edited recording)."""
    t = max(ttft_ns, 0)
    c = min(max(r.connect_ns, 0), t)
    s = min(max(r.sent_ns, c), t)
    h = min(max(r.headers_ns, s), t)
    texts = [p for p in (r.first_reasoning_ns, r.first_content_ns) if p is not None]
    e = min(max(min(texts, default=t), s), t)
    prefill = None if r.server_prompt_ms is None else min(max(int(round(r.server_prompt_ms * NS_PER_MS)), 0), e - s)
    begins = e - (prefill or 0)
    wait = min(h, begins) - s
    other = (t - s) - wait - (prefill or 0)
    return {"connect_ms": c, "send_ms": s - c, "server_wait_ms": wait, "server_other_ms": other,
            "server_prefill_in_ttft_ms": prefill,
            "server_wait_overlap_ms": None if prefill is None else max(min(h, e) - begins, 0),
            "unaccounted_ms": t - (s + wait + other + (prefill or 0))}


def chunks_in_ttft(chunks: Sequence[float], total: float) -> list[float]:
    """Prefill chunks as the ``total`` ms of prefill that TTFT holds. A server's chunks are its whole
    prefill by its own account; placed in TTFT (``remote_parts_ns``) it ends at the first token and a
    clipped one lost its beginning: the last chunks are kept, the first kept cut to fit. Chunks that
    add up to no more than ``total`` (the engine's own, exactly its prefill) are kept as they are."""
    out: list[float] = []
    left = max(total, 0.0)
    for ch in reversed(chunks):
        if left <= 0:
            break
        out.append(min(max(ch, 0.0), left))
        left -= ch
    return out[::-1]


def remote_figures(r: RemoteTiming, ttft_ns: int | None = None) -> dict[str, float | None]:
    """A server run's components (``remote_parts_ns``; given its TTFT) and timing points in ms
    (ttftui.core.registry's remote metrics): the client's clock, and the server's own account where
    it gave one, as it gave it (``server_prefill_ms``: its ``prompt_ms``, unclipped)."""
    ms = lambda ns: None if ns is None else ns / NS_PER_MS  # noqa: E731
    out: dict[str, float | None] = {}
    if ttft_ns is not None:
        out.update({k: ms(v) for k, v in remote_parts_ns(r, ttft_ns).items() if k != "unaccounted_ms"})
    out.update({
        "server_prefill_ms": r.server_prompt_ms,
        "ttfb_ms": ms(r.headers_ns),
        "first_event_ms": ms(r.first_event_ns),
        "first_choice_ms": ms(r.first_choice_ns),
        "first_content_ms": ms(r.first_content_ns),
    })
    if r.client_lag_ns is not None:
        out["client_lag_ms"] = ms(r.client_lag_ns)
    if r.server_predicted_n and r.server_predicted_ms:
        out["server_decode_tps"] = r.server_predicted_n / r.server_predicted_ms * 1000.0
    if r.server_cache_n is not None and r.server_prompt_n is not None:  # its prefix cache, by its own account
        out["server_cached_tokens_count"] = float(r.server_cache_n)
        seen = r.server_cache_n + r.server_prompt_n
        out["server_cache_hit_pct"] = r.server_cache_n / seen * 100.0 if seen > 0 else None
    elif (r.usage_cached_tokens is not None and r.usage_prompt_tokens  # vLLM, SGLang: usage's details
          and r.usage_cached_tokens <= r.usage_prompt_tokens):  # (more is refused as impossible when read)
        out["server_cached_tokens_count"] = float(r.usage_cached_tokens)
        out["server_cache_hit_pct"] = r.usage_cached_tokens / r.usage_prompt_tokens * 100.0
    return out


ATTENTION_KINDS = frozenset({"FLASH_ATTN_EXT", "SOFT_MAX", "MUL_MAT (attention)"})


def ops_figures(ops: OpsProfile) -> dict[str, float | None]:
    """A profiled run's prefill by operation (registry: prefill_matmul_pct, prefill_attention_pct,
    prefill_ops_gap_pct), in % of its prefill chunks' llama_decode spans."""
    chunks = [p for p in ops.phases if p.phase == "prefill_chunk"]
    span = sum(p.span_ns for p in chunks)
    if not span or ops.mode != "ops":
        return {"prefill_ops_gap_pct": (span - sum(p.compute_ns for p in chunks)) / span * 100 if span else None}
    by: dict[str, int] = {}
    for p in chunks:
        for k in p.kinds:
            by[k.kind] = by.get(k.kind, 0) + k.ns
    return {
        "prefill_matmul_pct": by.get("MUL_MAT", 0) / span * 100,
        "prefill_attention_pct": sum(v for k, v in by.items() if k in ATTENTION_KINDS) / span * 100,
        "prefill_ops_gap_pct": (span - sum(p.compute_ns for p in chunks)) / span * 100,
    }


def diffusion_components_ns(d: DiffusionTiming) -> tuple[int, int, int]:
    """(canvas, forward passes, selection) of a diffusion run's TTFT: the steps up to the first
    readable one; selection = logits read + choosing + committing."""
    k = d.first_readable_step or len(d.step_forward_ns)
    sel = sum(d.step_logits_ns[:k]) + sum(d.step_select_ns[:k]) + sum(d.step_commit_ns[:k])
    return d.canvas_ns, sum(d.step_forward_ns[:k]), sel


def diffusion_figures(d: DiffusionTiming, ttft_ns: int) -> dict[str, float | None]:
    """A diffusion run's registry figures (ttftui.core.registry), in ms where they are times."""
    canvas, fwd, sel = diffusion_components_ns(d)
    n = len(d.step_forward_ns)
    steps_ns = sum(d.step_forward_ns) + sum(d.step_logits_ns) + sum(d.step_select_ns) + sum(d.step_commit_ns)
    span_ns = d.final_at_ns - d.first_step_at_ns
    return {
        "canvas_ms": canvas / NS_PER_MS,
        "step_forward_ms": fwd / NS_PER_MS,
        "step_select_ms": sel / NS_PER_MS,
        "first_commit_ms": None if d.first_commit_at_ns is None else d.first_commit_at_ns / NS_PER_MS,
        "steps_to_readable_count": float(d.first_readable_step) if d.first_readable_step is not None else None,
        "step_ms": steps_ns / n / NS_PER_MS if n else None,
        "final_ms": d.final_at_ns / NS_PER_MS,
        "committed_tps": d.answer_tokens / (span_ns / 1e9) if span_ns > 0 else None,
    }


def run_metrics(iteration: int, t_start_ns: int, fin: RunFinished, tokens: Iterable[TokenEmitted],
                samples: Sequence[Any] = ()) -> RunMetrics:
    toks = list(tokens)
    extra = telemetry_figures(samples, toks[0].t_ns if toks else None)
    if fin.token_parts is not None and fin.token_parts.n:  # where decode time went, per token (means)
        tp = fin.token_parts
        extra.update(token_decode_ms=tp.decode_sum_ns / tp.n / NS_PER_MS, token_sample_ms=tp.sample_sum_ns / tp.n / NS_PER_MS,
                     token_detok_ms=tp.detok_sum_ns / tp.n / NS_PER_MS, token_rest_ms=tp.rest_sum_ns / tp.n / NS_PER_MS)
    if fin.diffusion is not None:  # a diffusion model's run: steps instead of prefill and sampling
        extra.update(diffusion_figures(fin.diffusion, fin.ttft_ns))
    if fin.ops is not None:  # a profiled run: prefill's time by operation
        extra.update(ops_figures(fin.ops))
    cached = fin.conversation or fin.prefix  # a conversation's turn, a request with a shared prefix
    if cached is not None:  # what the cache held; a server that does not say has no figure, not 0
        known = cached.counted_by != "not reported"
        extra.update(cached_tokens_count=float(cached.cached_tokens) if known else None,
                     new_tokens_count=float(cached.new_tokens),
                     cache_hit_pct=cached.cached_tokens / cached.depth * 100.0 if known and cached.depth > 0 else None)
    if fin.prefix is not None:
        p = fin.prefix
        extra.update(prefix_reuse_ms=None if p.reuse_ns is None else p.reuse_ns / NS_PER_MS,
                     prefix_save_ms=None if p.save_ns is None else p.save_ns / NS_PER_MS)
    if fin.remote is not None:  # a server's run: its components are the remote ones
        extra.update(remote_figures(fin.remote, fin.ttft_ns))
        parts = remote_parts_ns(fin.remote, fin.ttft_ns)  # in ns: the parts add up to TTFT exactly
        unacc_ns = fin.ttft_ns - sum(v for c in registry.components() if c.source == "remote"
                                     and c.component != "unaccounted" and (v := parts.get(c.name)) is not None)
    else:
        comp_ns = sum(v or 0 for v in (fin.tokenize_ns, fin.cache_prep_ns, fin.prefill_ns, fin.first_sample_ns,
                                       fin.first_detok_ns))
        if fin.diffusion is not None:
            comp_ns += sum(diffusion_components_ns(fin.diffusion))
        unacc_ns = fin.ttft_ns - comp_ns
    n_out = fin.n_output_tokens
    gen_ns = fin.e2e_ns - fin.ttft_ns
    tpot = gen_ns / (n_out - 1) / NS_PER_MS if n_out > 1 else None
    decode_tps = (n_out - 1) / (gen_ns / 1e9) if n_out > 1 and gen_ns > 0 else None
    prefill_ns = fin.prefill_ns
    if fin.remote is not None and fin.remote.server_prompt_ms:  # the server's own prefill, on its clock
        prefill_ns = int(fin.remote.server_prompt_ms * NS_PER_MS)
        n_prefilled = fin.remote.server_prompt_n or fin.n_prompt_tokens
    else:
        n_prefilled = fin.n_prompt_tokens
    prefill_tps = n_prefilled / (prefill_ns / 1e9) if prefill_ns else None
    llama = None
    if fin.llama_perf is not None:
        p = fin.llama_perf
        enabled = p.n_p_eval > 0 or p.n_eval > 0
        compared = None
        diff = None
        if enabled:
            # Chunks of one token are booked by llama.cpp as "eval": leave them out of ours too.
            one_tok = sum(ns for ns, k in zip(fin.prefill_chunks_ns, fin.prefill_chunk_tokens) if k == 1)
            ours_ns = fin.prefill_ns - (one_tok if p.n_p_eval < fin.n_prompt_tokens else 0)
            compared = ours_ns / NS_PER_MS
            if p.t_p_eval_ms > 0:
                diff = (compared - p.t_p_eval_ms) / p.t_p_eval_ms * 100.0
        llama = LlamaCompare(p.t_p_eval_ms, p.n_p_eval, p.t_eval_ms, p.n_eval, enabled, compared, diff)
    counted = not fin.warmup and fin.stop_reason != "stopped"
    return RunMetrics(
        run_id=fin.run_id, scenario=fin.scenario, iteration=iteration, warmup=fin.warmup, counted=counted,
        stop_reason=fin.stop_reason, n_prompt_tokens=fin.n_prompt_tokens, n_output_tokens=n_out,
        ttft_ms=fin.ttft_ns / NS_PER_MS, tokenize_ms=_ms(fin.tokenize_ns),
        cache_prep_ms=_ms(fin.cache_prep_ns), prefill_ms=_ms(fin.prefill_ns),
        prefill_chunks_ms=tuple(c / NS_PER_MS for c in fin.prefill_chunks_ns),
        prefill_chunk_tokens=tuple(fin.prefill_chunk_tokens),
        first_sample_ms=_ms(fin.first_sample_ns), first_detok_ms=_ms(fin.first_detok_ns),
        unaccounted_ms=unacc_ns / NS_PER_MS,
        unaccounted_pct=(unacc_ns / fin.ttft_ns * 100.0) if fin.ttft_ns > 0 else 0.0,
        prefill_tps=prefill_tps, itl_ms=tuple(t.dt_ns / NS_PER_MS for t in toks[1:]),
        tpot_ms=tpot, decode_tps=decode_tps, e2e_ms=fin.e2e_ns / NS_PER_MS, llama=llama,
        output_text="".join(t.text for t in toks), t_start_ns=t_start_ns, t_end_ns=fin.t_ns,
        extra=extra,
    )


def _ms(ns: int | None) -> float | None:
    return None if ns is None else ns / NS_PER_MS


@dataclass(frozen=True)
class ScenarioStats:
    scenario: str
    n_runs: int  # counted runs
    n_warmup: int
    n_failed: int
    n_prompt_tokens: int | None
    metrics: dict[str, Summary]
    component_medians_ms: dict[str, float]
    dominant_component: str | None
    dominant_share_pct: float | None


def scenario_stats(name: str, runs: Sequence[RunMetrics], n_failed: int, percentiles: Sequence[float]) -> ScenarioStats:
    counted = [r for r in runs if r.counted]
    metrics: dict[str, Summary] = {}
    for spec in registry.METRICS:
        m = spec.name
        if spec.pooled:  # ITL: every token of every counted run
            metrics[m] = summarize([x for r in counted for x in r.pooled(m)], percentiles)
        elif not spec.optional or any(r.value(m) is not None for r in counted):
            # telemetry and a server's figures: only what was measured; N/A fields stay out of the tables
            metrics[m] = summarize((r.value(m) for r in counted), percentiles)
    medians: dict[str, float] = {}
    if counted:
        for spec in registry.components():
            vals = [v for r in counted if (v := r.value(spec.name)) is not None]
            if vals:
                medians[spec.component] = float(np.median(vals))  # type: ignore[index]
    dominant = max(medians, key=medians.__getitem__) if medians else None
    total = sum(v for v in medians.values() if v > 0)
    share = (medians[dominant] / total * 100.0) if dominant and total > 0 else None
    prompt_sizes = {r.n_prompt_tokens for r in runs}
    return ScenarioStats(
        scenario=name, n_runs=len(counted), n_warmup=sum(r.warmup for r in runs), n_failed=n_failed,
        n_prompt_tokens=prompt_sizes.pop() if len(prompt_sizes) == 1 else None,
        metrics=metrics, component_medians_ms=medians, dominant_component=dominant, dominant_share_pct=share,
    )
