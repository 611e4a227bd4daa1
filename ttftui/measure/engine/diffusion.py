"""The diffusion engine: Dream, LLaDA, RND1 and the other diffusion LMs llama.cpp knows, timed step by step.

A diffusion model does not write left to right. Its answer starts as a row of mask tokens after the
prompt (the *canvas*); every step runs the whole canvas through the model with non-causal attention
(one ``llama_decode``), reads the logits of the masked positions back, and commits the positions it
is most sure of. The loop here is llama.cpp's own (``examples/diffusion/diffusion.cpp``, the
algorithm of ``llama-diffusion-cli``; :mod:`ttftui.measure.engine.diffusion_plan` has the schedules and
selection rules), driven from Python over llama-cpp-python's low-level API so that every part of a
step is timed where it happens:

    tokenize | canvas set-up | step 1: forward pass, logits read, selection, commit | step 2 ...

The first *committed* token may be anywhere in the answer; what a reader sees is the answer from its
start, so TTFT here is the time to the first *readable* token: the step that commits the first
answer position (and its text). Tokens become readable as the committed prefix grows, so several
may arrive at once (``TokenEmitted`` for each, at the step that made it readable).

Sampling: a greedy scenario takes each position's arg-max, its confidence from the full softmax, in
NumPy. A top_k / top_p scenario runs llama.cpp's own sampler chain on every masked position, built
as ``llama-diffusion-cli`` builds it (top_k, top_p, temperature, a seeded draw), so its output equals
that tool's token for token at the same seed.
"""

from __future__ import annotations

import codecs
import ctypes
import threading
import time
from dataclasses import dataclass
from typing import Any

from ttftui.measure.engine.llama import _FLASH, L, LlamaEngine  # llama_cpp before numpy (engine_process/__main__)

import numpy as np  # noqa: E402, I001

from ttftui.core.config import DiffusionConfig, GreedySampler, ScenarioConfig, TopKSampler, TopPSampler
from ttftui.core.errors import ConfigError, EngineFailed, ModelLoadFailed, PromptTooLong
from ttftui.core.events import DiffusionFacts, DiffusionStep, DiffusionTiming, PhaseTimed, RunFinished, TokenEmitted
from ttftui.measure.engine import diffusion_plan as plan
from ttftui.measure.engine.diffusion_plan import DIFFUSION_ARCHITECTURES
from ttftui.measure.engine.base import PreparedScenario, Publish, RunStopped
from ttftui.measure.gguf import GGUFHeader
from ttftui.measure.prompts import build_prompt

CANVAS_STEP = 256  # the context's canvas capacity grows in these steps (one compute buffer per size)
_TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


def settings_for(config_diffusion: DiffusionConfig, scenario: ScenarioConfig) -> DiffusionConfig:
    """The [diffusion] table with the scenario's own settings over it."""
    o = scenario.diffusion
    if o is None:
        return config_diffusion
    return config_diffusion.model_copy(update={k: v for k, v in o.model_dump().items() if v is not None})


@dataclass
class _Handle:
    settings: DiffusionConfig
    schedule: str
    blocks: list[plan.Block]
    chain: Any  # llama.cpp sampler chain (top_k / top_p scenarios); None: greedy
    chat_template: bytes | None
    seed: int


class DiffusionEngine(LlamaEngine):
    name = "llama.cpp"

    def __init__(self, config: Any, model_path: Any):
        super().__init__(config, model_path)
        self._cap = 0  # canvas positions the context (and batch) can take
        self._batch = None
        self._views: dict[str, np.ndarray] = {}
        self.mask_id = -1
        self.shift_logits = True
        self.n_vocab = 0

    # ---------------------------------------------------------------- load
    def _context_params(self, n_threads: int) -> Any:
        mc = self.config.model
        cp = L.llama_context_default_params()
        self._cap = min(mc.n_ctx, self._canvas_hint())
        cp.n_ctx = self._cap
        cp.n_batch = self._cap  # the whole canvas is one batch: a diffusion model keeps no KV cache
        cp.n_ubatch = self._cap
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.flash_attn_type = _FLASH[mc.flash_attn]
        cp.no_perf = False
        return cp

    def _canvas_hint(self) -> int:
        """A first canvas capacity from the scenarios (a prompt given as text is measured at prepare,
        which grows the context when it must)."""
        need = max((s.prompt_tokens or 0) + s.max_tokens for s in self.config.scenarios)
        return max(CANVAS_STEP, -(-need // CANVAS_STEP) * CANVAS_STEP)

    def _loaded(self, header: GGUFHeader) -> None:
        if not L.llama_model_is_diffusion(self.model):
            raise ModelLoadFailed(f"{self.model_path.name}: architecture {header.architecture!r} is not a diffusion "
                                  f"model to llama.cpp (diffusion architectures: {', '.join(DIFFUSION_ARCHITECTURES)})")
        self.mask_id = int(L.llama_vocab_mask(self.vocab))
        if self.mask_id < 0:
            raise ModelLoadFailed(f"{self.model_path.name}: the model has no mask token "
                                  "(tokenizer.ggml.mask_token_id), which a diffusion model needs")
        buf = ctypes.create_string_buffer(16)
        n = L.llama_model_meta_val_str(self.model, b"diffusion.shift_logits", buf, 16)
        self.shift_logits = True if n < 0 else buf.value == b"true"  # absent: true, as llama-diffusion-cli
        self.n_vocab = int(L.llama_vocab_n_tokens(self.vocab))
        L.llama_set_causal_attn(self.ctx, False)
        self._new_batch(self._cap)

    def _diffusion_facts(self) -> DiffusionFacts:
        d = self.config.diffusion
        return DiffusionFacts(mask_token_id=self.mask_id, shift_logits=self.shift_logits,
                              schedule=plan.resolve_schedule(d.schedule, self.header.architecture if self.header else None),
                              algorithm=d.algorithm, sampling=_sampling_name(self.config.scenarios[0]))

    def _new_batch(self, cap: int) -> None:
        if self._batch is not None:
            L.llama_batch_free(self._batch)
        b = L.llama_batch_init(cap, 0, 1)
        for i in range(cap):
            b.n_seq_id[i] = 1
            b.seq_id[i][0] = 0
            b.pos[i] = i
        self._batch = b
        self._views = {
            "token": np.ctypeslib.as_array(b.token, shape=(cap,)),
            "logits": np.ctypeslib.as_array(b.logits, shape=(cap,)),
        }

    def _ensure_canvas(self, n: int) -> None:
        """A context (and batch) that takes a canvas of ``n`` positions: rebuilt, untimed, when a
        scenario's canvas is larger than any before."""
        if n <= self._cap:
            return
        cap = min(self.config.model.n_ctx, -(-n // CANVAS_STEP) * CANVAS_STEP)
        L.llama_free(self.ctx)
        self._cap = cap
        cp = self._context_params(self.n_threads)
        cp.n_ctx = cp.n_batch = cp.n_ubatch = cap
        self._cap = cap
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            self.ctx = None
            raise ModelLoadFailed(f"llama.cpp could not create a context for a canvas of {n} positions: "
                                  f"{self._last_error()}")
        self.ctx = ctx
        L.llama_set_causal_attn(ctx, False)
        self._new_batch(cap)

    # ---------------------------------------------------------------- prepare
    def prepare(self, scenario: ScenarioConfig, seed: int) -> PreparedScenario:
        if scenario.kind == "conversation":
            raise ConfigError(f"scenario {scenario.name}: conversations run on autoregressive models; a diffusion "
                              "model regenerates its whole canvas every turn")
        template = None
        if scenario.chat:
            template = L.llama_model_chat_template(self.model, None)
            if not template:
                raise PromptTooLong(f"scenario {scenario.name}: chat = true but the model has no chat template")
        text, n = build_prompt(self._Tok(self, template), scenario, self.config.model.n_ctx)
        self._reserve(n + 16)
        self._ensure_canvas(n + scenario.max_tokens)
        st = settings_for(self.config.diffusion, scenario)
        schedule = plan.resolve_schedule(st.schedule, self.header.architecture if self.header else None)
        blocks = plan.plan_blocks(schedule, scenario.max_tokens, st.steps, st.block_length)
        chain = None if isinstance(scenario.sampler, GreedySampler) else self._chain(scenario, seed)
        return PreparedScenario(scenario, text, n, _Handle(st, schedule, blocks, chain, template, seed))

    def _chain(self, s: ScenarioConfig, seed: int) -> Any:
        """llama-diffusion-cli's sampler chain: top_k, top_p, temperature, then a seeded draw."""
        params = L.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = L.llama_sampler_chain_init(params)
        sp = s.sampler
        if isinstance(sp, TopKSampler):
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(sp.k))
        if isinstance(sp, TopPSampler):
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(sp.p, 1))
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sp.temperature))  # type: ignore[union-attr]
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        self._samplers.append(chain)
        return chain

    # ---------------------------------------------------------------- run
    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        s = prepared.scenario
        h: _Handle = prepared.handle
        st = h.settings
        ctx, vocab, clock = self.ctx, self.vocab, self.clock
        perf_ns = time.perf_counter_ns
        mask = self.mask_id
        answer = s.max_tokens
        n_vocab = self.n_vocab
        rng = np.random.default_rng(h.seed)
        picker = _ChainPicker(h.chain, n_vocab, st.algorithm, rng) if h.chain is not None else None
        if picker is not None:
            L.llama_sampler_reset(h.chain)
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        piece = self._piece
        text = prepared.prompt_text.encode("utf-8")

        # ---- t0: the request starts. TTFT ends when the first answer position's text is readable.
        t0 = perf_ns()
        if h.chat_template is not None:
            text = self._render_chat(h.chat_template, text)
        n_prompt = L.llama_tokenize(vocab, text, len(text), self._tokens, self._n_tokens_cap, True,
                                    h.chat_template is not None)
        t1 = perf_ns()
        publish(PhaseTimed(t_ns=clock.rel(t1), run_id=run_id, phase="tokenize", duration_ns=t1 - t0, n_tokens=n_prompt))
        if n_prompt <= 0:
            raise PromptTooLong(f"scenario {s.name}: the prompt tokenized to {n_prompt} tokens")
        n_canvas = n_prompt + answer
        if n_canvas > self._cap:
            raise PromptTooLong(f"scenario {s.name}: a canvas of {n_canvas} positions exceeds the context's "
                                f"{self._cap} (raise model.n_ctx)")

        c0 = perf_ns()
        tok = self._views["token"]
        want = self._views["logits"]
        tok[:n_prompt] = np.ctypeslib.as_array(self._tokens, shape=(self._n_tokens_cap,))[:n_prompt]
        tok[n_prompt:n_canvas] = mask
        ans = tok[n_prompt:n_canvas]  # a view: committing writes straight into the batch
        want[:n_canvas] = 0
        first_row = n_prompt - 1 if self.shift_logits else n_prompt  # the row that predicts answer position 0
        want[first_row:first_row + answer] = 1
        self._batch.n_tokens = n_canvas
        c1 = perf_ns()
        publish(PhaseTimed(t_ns=clock.rel(c1), run_id=run_id, phase="canvas", duration_ns=c1 - c0, n_tokens=n_canvas))

        fwd: list[int] = []
        lg: list[int] = []
        sel: list[int] = []
        com: list[int] = []
        ends: list[int] = []
        commits: list[int] = []
        n_planned = sum(b.steps for b in h.blocks)
        first_commit_step = first_commit_at = first_readable_step = first_readable_at = None
        readable = 0  # answer positions [0, readable) are committed and emitted
        ttft_end = None
        prev_emit = t0
        n_out = 0
        eos_at = None
        stop_reason = "max_tokens"
        step = 0
        first_step_at = perf_ns()
        batch = self._batch
        stopped = False
        for blk in h.blocks:
            shares: list[int] = []
            if h.schedule != "timestep":
                shares = plan.equal_shares(int(np.count_nonzero(ans[blk.start:blk.end] == mask)), blk.steps)
            for k in range(blk.steps):
                if stop.is_set():
                    if ttft_end is None:
                        raise RunStopped()
                    stopped = True
                    break
                masked = np.flatnonzero(ans[blk.start:blk.end] == mask) + blk.start
                if masked.size == 0:
                    break  # committed early (confidence_threshold): the next block
                s0 = perf_ns()
                rc = L.llama_decode(ctx, batch)
                L.llama_synchronize(ctx)
                a = perf_ns()
                if rc != 0:
                    raise EngineFailed(f"llama_decode failed at diffusion step {step + 1} (code {rc}) in scenario {s.name}")
                # Row i predicts answer position i. Without a KV cache llama_decode runs encode(), which
                # outputs every canvas position whatever batch.logits says: the answer's rows start at
                # batch index first_row, which llama_get_logits_ith finds either way. Read in place.
                view = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, first_row), shape=(answer, n_vocab))
                b = perf_ns()
                count = plan.transfer_count(h.schedule, k, blk.steps, masked.size, st.eps, shares)
                if st.algorithm == "origin":
                    p = count / masked.size if k < blk.steps - 1 else 1.0  # the block's last step: all that is left
                    chosen = np.flatnonzero(rng.random(masked.size) < p)
                    ids = (picker.tokens(view, masked[chosen]) if picker is not None
                           else plan.pick_greedy(view, "origin", rng, masked[chosen])[0])
                else:
                    if picker is not None:
                        cand, conf = picker.pick(view, masked)
                    else:
                        cand, conf = plan.pick_greedy(view, st.algorithm, rng, masked)
                    chosen = plan.choose(conf, count, st.confidence_threshold)
                    ids = cand[chosen]
                c = perf_ns()
                pos = masked[chosen]
                ans[pos] = ids
                texts = []
                for t in ids.tolist():
                    n = L.llama_token_to_piece(vocab, t, piece, 256, 0, False)
                    texts.append(piece.raw[:n].decode("utf-8", errors="replace") if n > 0 else "")
                new: list[tuple[int, int, str]] = []
                while readable < answer and ans[readable] != mask:
                    t = int(ans[readable])
                    n = L.llama_token_to_piece(vocab, t, piece, 256, 0, False)
                    new.append((readable, t, decoder.decode(piece.raw[:n]) if n > 0 else ""))
                    readable += 1
                d = perf_ns()
                fwd.append(a - s0)
                lg.append(b - a)
                sel.append(c - b)
                com.append(d - c)
                ends.append(d - t0)
                commits.append(int(pos.size))
                step += 1
                if pos.size and first_commit_step is None:
                    first_commit_step, first_commit_at = step, d - t0
                for i, t, txt in new:
                    if eos_at is not None:
                        break
                    is_eog = L.llama_vocab_is_eog(vocab, t)
                    if ttft_end is None and (txt or is_eog or i == answer - 1):
                        ttft_end = d
                        first_readable_step, first_readable_at = step, d - t0
                    publish(TokenEmitted(t_ns=clock.rel(d), run_id=run_id, index=i, token_id=t, text=txt,
                                         dt_ns=d - prev_emit))
                    prev_emit = d
                    n_out += 1
                    if is_eog and s.stop_at_eos:
                        eos_at = i
                        stop_reason = "eos"
                # the step's event last: an engine host that dies now is "at" the next step
                publish(DiffusionStep(t_ns=clock.rel(d), run_id=run_id, step=step - 1, n_steps=n_planned,
                                      forward_ns=a - s0, logits_ns=b - a, select_ns=c - b, commit_ns=d - c,
                                      positions=tuple(pos.tolist()), token_ids=tuple(ids.tolist()),
                                      texts=tuple(texts), masked=int(np.count_nonzero(ans == mask)),
                                      answer_tokens=answer))
            if stopped:
                stop_reason = "stopped"
                break
        t_end = ends[-1] + t0 if ends else perf_ns()
        if ttft_end is None:  # no answer position became readable (stopped, or nothing was committed)
            raise EngineFailed(f"scenario {s.name}: the diffusion run ended with its first answer position still "
                               "masked")
        timing = DiffusionTiming(
            schedule=h.schedule, algorithm=st.algorithm, sampling=_sampling_name(s), steps_planned=n_planned,
            answer_tokens=answer, canvas_tokens=n_canvas, canvas_ns=c1 - c0,
            step_forward_ns=tuple(fwd), step_logits_ns=tuple(lg), step_select_ns=tuple(sel),
            step_commit_ns=tuple(com), step_end_at_ns=tuple(ends), step_commits=tuple(commits),
            first_commit_step=first_commit_step, first_commit_at_ns=first_commit_at,
            first_readable_step=first_readable_step, first_readable_at_ns=first_readable_at,
            final_at_ns=t_end - t0, first_step_at_ns=first_step_at - t0,
        )
        return RunFinished(
            t_ns=clock.rel(t_end), run_id=run_id, scenario=s.name, warmup=warmup,
            n_prompt_tokens=n_prompt, n_output_tokens=n_out, ttft_ns=ttft_end - t0, e2e_ns=t_end - t0,
            tokenize_ns=t1 - t0, cache_prep_ns=None, prefill_ns=None, prefill_chunks_ns=(), prefill_chunk_tokens=(),
            first_sample_ns=None, first_detok_ns=None, stop_reason=stop_reason, diffusion=timing,
        )

    def close(self) -> None:
        if self._batch is not None:
            L.llama_batch_free(self._batch)
            self._batch = None
            self._views = {}
        super().close()


def _sampling_name(s: ScenarioConfig) -> str:
    return "greedy" if isinstance(s.sampler, GreedySampler) else "llama.cpp sampler chain"


class _ChainPicker:
    """llama.cpp's sampler chain on each masked position's logits, as diffusion.cpp applies it: the
    token it selects, and the confidence the algorithm reads from the candidates it leaves."""

    def __init__(self, chain: Any, n_vocab: int, algorithm: str, rng: np.random.Generator):
        self.chain, self.algorithm, self.rng = chain, algorithm, rng
        self.data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self.ids = np.arange(n_vocab, dtype=np.int32)
        self.arr = L.llama_token_data_array(
            data=ctypes.cast(self.data.ctypes.data, L.llama_token_data_p), size=n_vocab, selected=-1, sorted=False)
        self.ref = ctypes.byref(self.arr)
        self.n_vocab = n_vocab

    def _apply(self, row: np.ndarray) -> tuple[int, np.ndarray]:
        d = self.data
        d["id"] = self.ids
        d["logit"] = row
        d["p"] = 0.0
        a = self.arr
        a.data = ctypes.cast(d.ctypes.data, L.llama_token_data_p)
        a.size = self.n_vocab
        a.selected = -1
        a.sorted = False
        L.llama_sampler_apply(self.chain, self.ref)
        n = int(a.size)
        addr = ctypes.cast(a.data, ctypes.c_void_p).value
        cur = d[:n] if addr == d.ctypes.data else np.frombuffer(
            (ctypes.c_char * (n * _TOKEN_DATA.itemsize)).from_address(addr), dtype=_TOKEN_DATA)
        return int(a.selected), cur

    def tokens(self, logits: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = np.empty(len(rows), dtype=np.int64)
        for i, r in enumerate(rows.tolist()):
            sel, cur = self._apply(logits[r])
            out[i] = cur["id"][sel]
        return out

    def pick(self, logits: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        toks = np.empty(len(rows), dtype=np.int64)
        conf = np.empty(len(rows), dtype=np.float64)
        alg = self.algorithm
        for i, r in enumerate(rows.tolist()):
            sel, cur = self._apply(logits[r])
            toks[i] = cur["id"][sel]
            p = cur["p"]
            if alg == "confidence":
                conf[i] = float(p[sel])
            elif alg == "margin":
                conf[i] = float(p[0] - p[1]) if len(p) > 1 else float(p[0])
            elif alg == "entropy":
                conf[i] = float(-(p * np.log(p + np.float32(1e-10))).sum(dtype=np.float32))
            else:  # random
                conf[i] = self.rng.random()
        return toks, conf
