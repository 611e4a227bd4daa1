"""The synthetic engine: same interface and events as the real one, timings from a cost model.

It exists for demos, dashboard tests and machines without a model or without llama.cpp, and it is
always labelled synthetic (``EngineReady.synthetic``, the report's top-level ``synthetic`` flag and the
dashboard's banner) together with the reason it was chosen. It never imports llama_cpp.

Cost model (all in milliseconds; defaults approximate SmolLM2-135M Q4_1 on a 2-core x86 CPU):

* tokenize      = tokenize_fixed + tokenize_per_token × N
* cache_prep    = cache_prep
* prefill chunk of m tokens starting at context depth d
                = prefill_fixed + prefill_per_token × m + prefill_attn × m × (d + m/2)
  (the last term is attention's quadratic growth: each token attends to everything before it)
* first sample  = sample (+ sample_stochastic for top-k / top-p)
* first detok   = detok
* decode step at context depth d = decode_fixed + decode_per_ctx × d + detok

Every figure is multiplied by log-normal jitter (sd ``jitter``) and, with probability ``spike_prob``,
by a spike factor, using a ``random.Random`` seeded from the run seed: the same seed and config give
the same numbers, bit for bit. Time is virtual (instant) unless ``pace`` is set, in which case the
engine sleeps so that the stream arrives at the modelled speed (the dashboard demo).
"""

from __future__ import annotations

import math
import random
import threading
import time
import zlib
from dataclasses import dataclass, replace

from ttftui.core.config import Config, GreedySampler, ScenarioConfig
from ttftui.core.events import (
    ConversationTiming,
    DeviceFacts,
    LayerTime,
    ModelFacts,
    OpKind,
    OpsPhase,
    OpsProfile,
    PhaseTimed,
    PrefixTiming,
    RunFinished,
    TokenEmitted,
)
from ttftui.measure.engine.base import Clock, Engine, LoadResult, PreparedScenario, Publish, RunStopped
from ttftui.measure.prompts import check_fits, corpus_text, scenario_source_text


@dataclass(frozen=True)
class CostModel:
    load_ms: float = 85.0
    tokenize_fixed_ms: float = 0.04
    tokenize_per_token_ms: float = 0.0011
    cache_prep_ms: float = 0.012
    prefill_fixed_ms: float = 1.5
    prefill_per_token_ms: float = 2.0
    prefill_attn_ms: float = 4e-4
    sample_ms: float = 0.12
    sample_stochastic_ms: float = 0.25
    detok_ms: float = 0.02
    decode_fixed_ms: float = 6.8
    decode_per_ctx_ms: float = 0.0012
    jitter: float = 0.03
    spike_prob: float = 0.01
    spike_factor_max: float = 2.5

    @classmethod
    def with_decode_rate(cls, tokens_per_s: float) -> "CostModel":
        """A model whose decode runs at ``tokens_per_s`` (e.g. 5,000 tok/s dashboard stress)."""
        step = 1000.0 / tokens_per_s
        return replace(cls(), decode_fixed_ms=max(step - cls.detok_ms, 0.0), decode_per_ctx_ms=0.0,
                       jitter=0.0, spike_prob=0.0)


# A profiled twin's prefill, by operation: each kind's share of a chunk's compute (a 135M llama-style
# model on a CPU, roughly), nodes per layer, and the part of the span profiling adds (its gap); the
# plain prefill is slowed by PROFILE_SLOWDOWN. Every number here is a model, labelled synthetic.
OP_SHARES: tuple[tuple[str, float, int], ...] = (
    ("MUL_MAT", 0.60, 7), ("FLASH_ATTN_EXT", 0.12, 1), ("RMS_NORM", 0.06, 2), ("ROPE", 0.05, 2),
    ("ADD", 0.05, 2), ("MUL", 0.05, 2), ("SWIGLU", 0.05, 1), ("SET_ROWS", 0.02, 2))
# model.flash_attn = "off": attention is the kq / kqv matmuls and a SOFT_MAX, and takes a larger share
OP_SHARES_NO_FLASH: tuple[tuple[str, float, int], ...] = (
    ("MUL_MAT", 0.56, 7), ("MUL_MAT (attention)", 0.10, 2), ("SOFT_MAX", 0.06, 1), ("RMS_NORM", 0.06, 2),
    ("ROPE", 0.05, 2), ("ADD", 0.05, 2), ("MUL", 0.05, 2), ("SWIGLU", 0.05, 1), ("SET_ROWS", 0.02, 2))
PROFILE_GAP = 0.03
PROFILE_SLOWDOWN = 1.6


def synthetic_ops(chunks_ns: list[int], decode_ns: int, n_tokens: int, n_layers: int,
                  flash: bool = True) -> OpsProfile:
    """The operation profile a profiled twin's run reports, from the cost model's chunk times (with
    flash attention or without: the shares move, the chunk times stay the cost model's)."""
    shares = OP_SHARES if flash else OP_SHARES_NO_FLASH

    def phase(kind: str, index: int | None, span: int, graphs: int) -> OpsPhase:
        compute = int(span * (1 - PROFILE_GAP))
        kinds = tuple(OpKind(kind=k, ns=int(compute * share), count=nodes * n_layers * graphs)
                      for k, share, nodes in shares)
        total = sum(k.ns for k in kinds)
        per_layer = total // n_layers
        layers = tuple(LayerTime(layer=i, ns=per_layer + (total - per_layer * n_layers if i == n_layers - 1 else 0),
                                 nodes=sum(nd for _, _, nd in shares) * graphs) for i in range(n_layers))
        return OpsPhase(phase=kind, index=index, span_ns=span, compute_ns=total, kinds=kinds,  # type: ignore[arg-type]
                        layers=layers)

    phases = [phase("prefill_chunk", i, ns, 1) for i, ns in enumerate(chunks_ns)]
    if n_tokens > 1:
        phases.append(phase("decode", None, decode_ns, n_tokens - 1))
    return OpsProfile(mode="ops", phases=tuple(phases))


class VirtualClock(Clock):
    """Time that only moves when the synthetic engine says so (deterministic, instant)."""

    def __init__(self) -> None:
        self.t0_ns = 0
        self._now = 0

    def now_ns(self) -> int:
        return self._now

    def advance_to(self, t_ns: int) -> None:
        self._now = max(self._now, t_ns)


class SyntheticEngine(Engine):
    name = "synthetic"
    synthetic = True

    def __init__(self, config: Config, reason: str, *, pace: bool = False, cost: CostModel | None = None,
                 model: ModelFacts | None = None):
        super().__init__()
        self.config = config
        self.synthetic_reason = reason
        self._prefixes: set[str] = set()  # shared-prefix scenarios (keep) whose prefix has been evaluated
        self.pace = pace
        self.cost = cost or CostModel()
        self.clock = Clock() if pace else VirtualClock()
        self._model = model
        self._words = corpus_text().split()
        self._rng = random.Random(config.run.seed)

    # ------------------------------------------------------------------ helpers
    def _j(self, ms: float) -> int:
        """Jittered duration in integer nanoseconds."""
        c = self.cost
        f = math.exp(self._rng.gauss(0.0, c.jitter)) if c.jitter else 1.0
        if c.spike_prob and self._rng.random() < c.spike_prob:
            f *= self._rng.uniform(1.2, c.spike_factor_max)
        return max(1, int(ms * f * 1e6))

    def _at(self, t_ns: int) -> int:
        """Advance to session time ``t_ns``: sleep to it when paced, else move the virtual clock."""
        if self.pace:
            self.sleep_until(t_ns)
        else:
            self.clock.advance_to(t_ns)  # type: ignore[attr-defined]
        return t_ns

    def sleep_until(self, t_ns: int) -> None:
        delay = (t_ns - self.clock.now_ns()) / 1e9
        if delay > 0:
            time.sleep(delay)

    # ------------------------------------------------------------------ engine API
    def load(self) -> LoadResult:
        load_ns = self._j(self.cost.load_ms)
        self._at(self.clock.now_ns() + load_ns)
        mc = self.config.model
        model = self._model or ModelFacts(
            path="", name="synthetic (no model loaded)", file_size_bytes=0,
            description="timings from ttftui's synthetic cost model, not measured",
            n_ctx=mc.n_ctx,
        )
        device = DeviceFacts(kind="synthetic", name="synthetic cost model", n_threads=None,
                             n_gpu_layers_requested=mc.n_gpu_layers)
        return LoadResult(load_ms=load_ns / 1e6, model=model, device=device, engine_version="synthetic-1")

    def prepare(self, scenario: ScenarioConfig, seed: int) -> PreparedScenario:
        n = scenario.prompt_tokens
        if scenario.kind == "conversation":  # the conversation so far + this turn's message
            n = scenario.depth_before + (scenario.user_tokens or 0)
        elif scenario.kind == "shared_prefix":
            n = (scenario.prefix_tokens or 0) + (scenario.user_tokens or 0)
        elif n is None:  # no tokenizer here: estimate from the text, about 4 characters a token

            n = max(1, len(scenario_source_text(scenario)) // 4)
        check_fits(scenario.name, n, scenario.max_tokens, self.config.model.n_ctx)
        return PreparedScenario(scenario, prompt_text="", prompt_tokens=n, handle=None)

    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        s, c, n = prepared.scenario, self.cost, prepared.prompt_tokens
        t0 = self.clock.now_ns()
        t = t0
        tok_ns = self._j(c.tokenize_fixed_ms + c.tokenize_per_token_ms * n)
        t = self._at(t + tok_ns)
        publish(PhaseTimed(t_ns=t, run_id=run_id, phase="tokenize", duration_ns=tok_ns, n_tokens=n))
        prep_ns = self._j(c.cache_prep_ms)
        t = self._at(t + prep_ns)
        # a conversation's turn with cache = keep: the last turn's prompt and answer (but its last token)
        # stay cached, the rest is prefilled
        keep = (n - (s.user_tokens or 0) - 1) if (s.kind == "conversation" and s.cache == "keep" and (s.turn or 1) > 1) else 0
        hit = s.kind == "shared_prefix" and s.cache == "keep" and s.name in self._prefixes  # the prefix restored
        if hit:
            keep = s.prefix_tokens or 0
        elif s.kind == "shared_prefix" and s.cache == "keep":
            self._prefixes.add(s.name)
        publish(PhaseTimed(t_ns=t, run_id=run_id, phase="cache_prep", duration_ns=prep_ns,
                           n_tokens=keep if s.kind != "single" else None))
        chunks: list[int] = []
        sizes: list[int] = []
        nb = self.config.model.n_batch
        for d in range(keep, n, nb):
            if stop.is_set():
                raise RunStopped()
            m = min(nb, n - d)
            gap = self._j(0.004)  # loop overhead between chunks: shows up as "unaccounted"
            ch = self._j(c.prefill_fixed_ms + c.prefill_per_token_ms * m + c.prefill_attn_ms * m * (d + m / 2))
            if s.profile_ops:  # the graph callback's splits slow what it measures
                ch = int(ch * PROFILE_SLOWDOWN)
            t = self._at(t + gap + ch)
            chunks.append(ch)
            sizes.append(m)
            publish(PhaseTimed(t_ns=t, run_id=run_id, phase="prefill_chunk", duration_ns=ch,
                               chunk=len(chunks) - 1, n_tokens=m))
        sample_ns = self._j(c.sample_ms + (0 if isinstance(s.sampler, GreedySampler) else c.sample_stochastic_ms))
        t = self._at(t + sample_ns)
        publish(PhaseTimed(t_ns=t, run_id=run_id, phase="first_sample", duration_ns=sample_ns))
        t_sample_end = t
        ttft_t = None
        stop_reason = "max_tokens"
        n_out = 0
        prev = t0
        widx = (run_id * 7919) % len(self._words)
        for i in range(s.max_tokens):
            if i == 0:
                step = self._j(c.detok_ms)
            else:
                step = self._j(c.decode_fixed_ms + c.decode_per_ctx_ms * (n + i) + c.detok_ms)
            t = self._at(t + step)
            if ttft_t is None:
                ttft_t = t
                publish(PhaseTimed(t_ns=t, run_id=run_id, phase="first_detok", duration_ns=t - t_sample_end))
            word = self._words[(widx + i) % len(self._words)]
            text = word if i == 0 else " " + word
            publish(TokenEmitted(t_ns=t, run_id=run_id, index=i, token_id=zlib.crc32(word.encode()) & 0xFFFF,
                                 text=text, dt_ns=t - prev))
            prev = t
            n_out += 1
            if stop.is_set() and i + 1 < s.max_tokens:
                stop_reason = "stopped"
                break
        return RunFinished(
            t_ns=t, run_id=run_id, scenario=s.name, warmup=warmup,
            n_prompt_tokens=n, n_output_tokens=n_out, ttft_ns=ttft_t - t0, e2e_ns=t - t0,
            tokenize_ns=tok_ns, cache_prep_ns=prep_ns, prefill_ns=sum(chunks),
            prefill_chunks_ns=tuple(chunks), prefill_chunk_tokens=tuple(sizes),
            first_sample_ns=sample_ns, first_detok_ns=ttft_t - t_sample_end,
            stop_reason=stop_reason, llama_perf=None,
            ops=None if not s.profile_ops else synthetic_ops(
                chunks, max(t - ttft_t, 0), n_out, (self._model.n_layers if self._model and self._model.n_layers else 30),
                flash=self.config.model.flash_attn != "off"),
            prefix=None if s.kind != "shared_prefix" else PrefixTiming(
                group=s.name.rsplit("@", 1)[0], cache=s.cache or "keep", hit=hit,  # type: ignore[arg-type]
                prefix_tokens=s.prefix_tokens or 0, depth=n, cached_tokens=keep, new_tokens=n - keep),
            conversation=None if s.kind != "conversation" else ConversationTiming(
                conversation=s.conversation or s.name, turn=s.turn or 1, turns=s.turns or 1,
                cache=s.cache or "keep", depth=n, cached_tokens=keep, new_tokens=n - keep),  # type: ignore[arg-type]
        )
