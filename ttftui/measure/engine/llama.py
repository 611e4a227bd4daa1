"""The real engine: llama.cpp through llama-cpp-python's low-level (ctypes) API.

Why the low-level API: the high-level ``Llama`` class hides the phases this profiler exists to
show, samples in Python, and keeps a prefix cache that makes a repeated prompt look nearly free.
Here every run starts from a cleared KV cache, each phase is timed with ``perf_counter_ns`` in this
(the working) thread, and the loop does nothing between the timing points but what a minimal
client must do. ctypes releases the GIL during each llama.cpp call, so the dashboard's thread does
not stall the computation it measures.

llama.cpp's own counters (``llama_perf_context``) are reset before and read after each run, and kept
beside our figures as a cross-check. Note: llama.cpp books a 1-token batch as "eval", not "prompt
eval"; the report accounts for that when it compares prefill times.
"""

from __future__ import annotations

import codecs
import ctypes
import os
import platform
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttftui.core.config import Config, GreedySampler, ScenarioConfig, TopKSampler, TopPSampler
from ttftui.core.errors import EngineFailed, ModelLoadFailed, PromptTooLong
from ttftui.core.events import (
    ConversationTiming,
    DeviceFacts,
    LlamaPerf,
    ModelFacts,
    OpsProfile,
    PhaseTimed,
    PrefixTiming,
    RunFinished,
    TokenEmitted,
    token_parts,
)
from ttftui.measure.engine.base import Engine, LoadResult, PreparedScenario, Publish, RunError, RunStopped
from ttftui.measure.engine.llama_facts import build_kind, repack_choice
from ttftui.measure.gguf import GGUFHeader, read_header
from ttftui.measure.prompts import build_prompt, check_fits, conversation_messages

try:  # imported lazily by select_engine(); a missing or broken build falls back to synthetic
    import llama_cpp as L  # the engine: loaded where a llama engine runs, never in its parent
except Exception as _e:  # pragma: no cover - exercised by the fallback test through a subprocess
    L = None
    IMPORT_ERROR: str | None = f"{type(_e).__name__}: {_e}"
else:
    IMPORT_ERROR = None


_LOG_LOCK = threading.Lock()
_LOG_LINES: list[tuple[int, str]] = []
_CAPTURE = False
_BACKEND_READY = False
# In the engine host process every llama.cpp log line is also written to stderr (fd 2), which the
# parent keeps the tail of: the last lines before a crash say what llama.cpp was doing.
FORWARD_LOG_FD: int | None = None


def _log_sink(level: int, text: bytes, _user: Any) -> None:
    # llama.cpp logs from its own threads too; keep only what a load tells us, drop the rest.
    if _CAPTURE:
        with _LOG_LOCK:
            _LOG_LINES.append((level, text.decode("utf-8", errors="replace")))
    if FORWARD_LOG_FD is not None and level != 1:  # not GGML_LOG_LEVEL_DEBUG: graph dumps would push out the tail
        try:
            os.write(FORWARD_LOG_FD, text)
        except OSError:
            pass


_log_callback = L.llama_log_callback(_log_sink) if L is not None else None


def _init_backend() -> None:
    global _BACKEND_READY
    if not _BACKEND_READY:
        L.llama_log_set(_log_callback, None)  # silence llama.cpp's stderr chatter
        L.llama_backend_init()
        _BACKEND_READY = True


def system_info() -> str:
    _init_backend()
    return L.llama_print_system_info().decode("utf-8", errors="replace").strip()


DIFFUSION_API = ("llama_model_is_diffusion", "llama_set_causal_attn", "llama_vocab_mask", "llama_get_logits_ith")


def diffusion_support(architectures: tuple[str, ...]) -> dict[str, Any]:
    """Whether this build can run diffusion models: the API the diffusion engine calls, and which of
    ``architectures`` its llama.cpp knows (their names are in libllama's architecture table)."""
    missing = [f for f in DIFFUSION_API if not hasattr(L, f)]
    known: list[str] | None
    try:
        from llama_cpp import llama_cpp as _C  # the loaded library's file

        blob = Path(_C._lib._name).read_bytes()
        known = [a for a in architectures if b"\0" + a.encode() + b"\0" in blob]
    except (AttributeError, OSError, TypeError):
        known = None  # the file could not be read: unknown, not "none"
    return {"missing_api": missing, "architectures": known}


def physical_cores() -> int:
    try:
        import psutil  # in the engine process, loaded after llama.cpp (engine_process/__main__ says why)

        n = psutil.cpu_count(logical=False)
    except Exception:
        n = None
    return n or os.cpu_count() or 1


_FLASH = {"auto": -1, "off": 0, "on": 1}


@dataclass
class _Turn:
    """A conversation's turn: its place in the conversation, and its new user message's buffer."""

    conversation: str
    turn: int
    turns: int
    cache: str  # keep | off
    prefix: list[int]  # BOS (if the model wants one) and the system prompt's tokens
    user_buf: Any  # llama_token array the timed tokenize fills


@dataclass
class _Conversation:
    """A conversation so far, as this engine holds it: its last prompt and answer, how many of those
    tokens the KV cache holds (the last answer token is sampled, never decoded), the last turn done."""

    prompt: list[int]
    answer: list[int]
    in_cache: int = 0
    done: int = 0


@dataclass
class _Shared:
    """A shared-prefix scenario: the prefix's tokens, each request's own message (in turn), and with
    cache = keep the prefix's KV state once it has been evaluated."""

    group: str
    cache: str
    prefix: list[int]
    messages: list[bytes]
    user_buf: Any
    state: Any = None  # the saved state of sequence 0 holding the prefix (bytes)
    next: int = 0


@dataclass
class _Handle:
    sampler: Any
    chat_template: bytes | None
    turn: _Turn | None = None
    shared: _Shared | None = None


class LlamaEngine(Engine):
    name = "llama.cpp"
    synthetic = False

    def __init__(self, config: Config, model_path: str | os.PathLike[str]):
        super().__init__()
        if L is None:
            raise ModelLoadFailed(f"llama-cpp-python cannot be imported ({IMPORT_ERROR})")
        self.config = config
        self.model_path = Path(model_path)
        self.model = None
        self.ctx = None
        self.vocab = None
        self.header: GGUFHeader | None = None
        self._samplers: list[Any] = []
        self._piece = ctypes.create_string_buffer(256)
        self._n_tokens_cap = 0
        self._tokens = None
        self.repack: bool | None = None
        self.repack_reason: str | None = None
        self._ops: Any = None  # engine.profile_ops: the graph callback's recorder, and its context
        self.ctx_ops = None
        self._conversations: dict[str, _Conversation] = {}
        self._messages: dict[str, tuple[str, list[str]]] = {}  # a conversation's system prompt and user messages

    # ---------------------------------------------------------------- load
    def load(self) -> LoadResult:
        global _CAPTURE
        self.header = header = read_header(self.model_path)  # one-line errors for bad files
        _init_backend()
        mc = self.config.model
        n_threads = mc.n_threads or physical_cores()
        mp = L.llama_model_default_params()
        mp.n_gpu_layers = mc.n_gpu_layers  # negative = all layers
        self.repack, self.repack_reason = repack_choice(mc.repack, system_info())
        mp.use_extra_bufts = self.repack
        cp = self._context_params(n_threads)
        with _LOG_LOCK:
            _LOG_LINES.clear()
        _CAPTURE = True
        try:
            t0 = time.perf_counter_ns()
            model = L.llama_model_load_from_file(str(self.model_path).encode(), mp)
            if not model:
                raise ModelLoadFailed(f"llama.cpp could not load {self.model_path}: {self._last_error()}")
            ctx = L.llama_init_from_model(model, cp)
            if not ctx:
                L.llama_model_free(model)
                raise ModelLoadFailed(
                    f"llama.cpp could not create a context (n_ctx={mc.n_ctx}, n_batch={mc.n_batch}): "
                    f"{self._last_error()}"
                )
            load_ns = time.perf_counter_ns() - t0
        finally:
            _CAPTURE = False
        self.model, self.ctx = model, ctx
        self.n_threads = n_threads
        self.vocab = L.llama_model_get_vocab(model)
        self._reserve(mc.n_ctx)
        if self.config.engine.profile_ops != "off":  # profiled twins run on a context of their own, with the callback
            from ttftui.measure.engine.ops import OpsRecorder  # the graph callback: only when asked for

            self._ops = OpsRecorder(self.config.engine.profile_ops)
            cp = self._context_params(n_threads)
            cp.cb_eval = self._ops.cb
            self.ctx_ops = L.llama_init_from_model(model, cp)
            if not self.ctx_ops:
                raise ModelLoadFailed(f"llama.cpp could not create the profiling context: {self._last_error()}")
        self._loaded(header)
        with _LOG_LOCK:
            log = "".join(t for _, t in _LOG_LINES)
        return LoadResult(
            load_ms=load_ns / 1e6,
            model=self._model_facts(header),
            device=self._device_facts(log, n_threads),
            engine_version=f"llama-cpp-python {L.__version__}",
            diffusion=self._diffusion_facts(),
        )

    def _loaded(self, header: GGUFHeader) -> None:  # noqa: B027 - the diffusion engine checks its model here
        """After the model and context exist, before the load is reported."""

    def _diffusion_facts(self) -> Any:
        return None

    def _context_params(self, n_threads: int) -> Any:
        mc = self.config.model
        cp = L.llama_context_default_params()
        cp.n_ctx = mc.n_ctx
        cp.n_batch = mc.n_batch
        cp.n_ubatch = mc.n_batch  # one chunk = one compute pass, so chunk timings mean something
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        cp.flash_attn_type = _FLASH[mc.flash_attn]
        cp.no_perf = False  # some llama-cpp-python versions disabled the counters we cross-check
        return cp

    def _last_error(self) -> str:
        with _LOG_LOCK:
            errs = [t.strip() for lvl, t in _LOG_LINES if lvl in (3, 4) and t.strip()]
        detail = [e for e in errs if "error loading model" in e or "failed to" not in e]
        return (detail or errs or ["no reason given"])[0]

    def _model_facts(self, h: GGUFHeader) -> ModelFacts:
        desc = ctypes.create_string_buffer(256)
        L.llama_model_desc(self.model, desc, 256)
        n_head = L.llama_model_n_head(self.model)
        n_head_kv = L.llama_model_n_head_kv(self.model)
        return ModelFacts(
            path=str(self.model_path),
            name=h.get("general.name") or self.model_path.stem,
            file_size_bytes=h.file_size,
            architecture=h.architecture,
            quantization=h.quantization,
            n_params=int(L.llama_model_n_params(self.model)),
            n_layers=int(L.llama_model_n_layer(self.model)),
            n_heads=int(n_head),
            n_kv_heads=int(n_head_kv),
            n_embd=h.arch_key("embedding_length"),
            context_length=h.arch_key("context_length"),
            vocab_size=int(L.llama_vocab_n_tokens(self.vocab)),
            kv_cache_bytes=h.kv_cache_bytes(self.config.model.n_ctx),
            weights_bytes=h.tensor_bytes,
            n_ctx=int(L.llama_n_ctx(self.ctx)),
            description=desc.value.decode("utf-8", errors="replace"),
        )

    def _device_facts(self, log: str, n_threads: int) -> DeviceFacts:
        info = system_info()
        offload = bool(L.llama_supports_gpu_offload())
        requested = self.config.model.n_gpu_layers
        m = re.search(r"offloaded (\d+)/(\d+) layers to GPU", log)
        offloaded = int(m.group(1)) if m else 0
        dev = re.search(r"using device (\S+) \(([^)]*)\)", log)
        on_gpu = offload and offloaded > 0
        name = dev.group(2) if (on_gpu and dev) else _cpu_name()
        return DeviceFacts(
            kind="gpu" if on_gpu else "cpu",
            name=name,
            n_threads=n_threads,
            n_gpu_layers_requested=requested,
            n_gpu_layers_offloaded=offloaded,
            gpu_offload_supported=offload,
            build=build_kind(info, offload),
            system_info=info,
            repack=self.repack,
            repack_reason=self.repack_reason,
        )

    # ---------------------------------------------------------------- tokenizer (untimed helpers)
    def _reserve(self, n: int) -> None:
        if n > self._n_tokens_cap:
            self._tokens = (L.llama_token * n)()
            self._n_tokens_cap = n

    def _tokenize_into(self, text: bytes, add_special: bool, parse_special: bool) -> int:
        n = L.llama_tokenize(self.vocab, text, len(text), self._tokens, self._n_tokens_cap, add_special, parse_special)
        if n < 0:  # buffer too small: grow once and retry
            self._reserve(-n)
            n = L.llama_tokenize(self.vocab, text, len(text), self._tokens, self._n_tokens_cap, add_special, parse_special)
        return n

    def _render_chat(self, template: bytes, text: bytes) -> bytes:
        msgs = (L.llama_chat_message * 1)(L.llama_chat_message(role=b"user", content=text))
        size = len(text) * 2 + 1024
        buf = ctypes.create_string_buffer(size)
        n = L.llama_chat_apply_template(template, msgs, 1, True, buf, size)
        if n > size:
            buf = ctypes.create_string_buffer(n + 1)
            n = L.llama_chat_apply_template(template, msgs, 1, True, buf, n + 1)
        if n < 0:
            raise PromptTooLong("the model's chat template is not supported by llama.cpp's template engine")
        return buf.raw[:n]

    def tokenizer(self, chat_template: bytes | None = None) -> "LlamaEngine._Tok":
        """The exact tokenization the timed phase uses (as a chat prompt when ``chat_template`` is
        given): what ``prepare`` builds exact-length prompts with."""
        return self._Tok(self, chat_template)

    def render_chat(self, template: bytes, text: bytes) -> bytes:
        """``text`` as the user's message in the chat ``template``, rendered by llama.cpp as a run does."""
        return self._render_chat(template, text)

    class _Tok:
        """The exact tokenization the timed phase uses, for building exact-length prompts."""

        def __init__(self, eng: "LlamaEngine", template: bytes | None):
            self.eng, self.template = eng, template

        def tokenize(self, text: str, *, chat: bool) -> list[int]:
            b = text.encode("utf-8")
            if chat:
                b = self.eng._render_chat(self.template, b)
            n = self.eng._tokenize_into(b, True, chat)
            return list(self.eng._tokens[:n])

        def content_tokens(self, text: str, *, chat: bool) -> list[int]:
            b = text.encode("utf-8")
            n = self.eng._tokenize_into(b, False, chat)
            return list(self.eng._tokens[:n])

        def detokenize(self, tokens: list[int], *, chat: bool) -> str:
            arr = (L.llama_token * len(tokens))(*tokens)
            size = len(tokens) * 32 + 16
            buf = ctypes.create_string_buffer(size)
            n = L.llama_detokenize(self.eng.vocab, arr, len(tokens), buf, size, False, chat)
            if n < 0:  # buffer too small: llama.cpp says how much it needs
                buf = ctypes.create_string_buffer(-n)
                n = L.llama_detokenize(self.eng.vocab, arr, len(tokens), buf, -n, False, chat)
            return buf.raw[: max(n, 0)].decode("utf-8", errors="ignore")

    # ---------------------------------------------------------------- prepare
    def prepare(self, scenario: ScenarioConfig, seed: int) -> PreparedScenario:
        if scenario.kind == "conversation":
            return self._prepare_turn(scenario, seed)
        if scenario.kind == "shared_prefix":
            return self._prepare_shared(scenario, seed)
        template = None
        if scenario.chat:
            template = L.llama_model_chat_template(self.model, None)
            if not template:
                raise PromptTooLong(f"scenario {scenario.name}: chat = true but the model has no chat template")
        text, n = build_prompt(self._Tok(self, template), scenario, self.config.model.n_ctx)
        self._reserve(n + 16)
        sampler = self._make_sampler(scenario, seed)
        return PreparedScenario(scenario, text, n, _Handle(sampler, template))

    def _prepare_turn(self, s: ScenarioConfig, seed: int) -> PreparedScenario:
        """A conversation's turn: its user message (exactly user_tokens), and the prompt it will have
        (the system prompt, every earlier turn's message and answer, this message)."""
        tok = self._Tok(self, None)
        key = s.conversation or s.name
        if key not in self._messages:
            self._messages[key] = conversation_messages(tok, s)
        system, users = self._messages[key]
        prefix = tok.tokenize("", chat=False) + (tok.content_tokens(system, chat=False) if system else [])
        depth = len(prefix) - s.system_tokens + s.depth_before + (s.user_tokens or 0)
        check_fits(s.name, depth, s.max_tokens, self.config.model.n_ctx)
        user = users[(s.turn or 1) - 1]
        turn = _Turn(key, s.turn or 1, s.turns or 1, s.cache or "keep", prefix, (L.llama_token * ((s.user_tokens or 0) + 16))())
        return PreparedScenario(s, user, depth, _Handle(self._make_sampler(s, seed), None, turn))

    def _prepare_shared(self, s: ScenarioConfig, seed: int) -> PreparedScenario:
        """A shared prefix of prefix_tokens, and a message of user_tokens for each request (a pool of
        distinct ones, used in turn)."""
        tok = self._Tok(self, None)
        count = max(1, min(self.config.run.warmup + self.config.run.iterations, 64))
        system, users = conversation_messages(tok, s, n_sys=s.prefix_tokens or 0, count=count)
        prefix = tok.tokenize("", chat=False) + tok.content_tokens(system, chat=False)
        depth = len(prefix) + (s.user_tokens or 0)
        check_fits(s.name, depth, s.max_tokens, self.config.model.n_ctx)
        shared = _Shared(s.name.rsplit("@", 1)[0], s.cache or "keep", prefix, [u.encode("utf-8") for u in users],
                         (L.llama_token * ((s.user_tokens or 0) + 16))())
        return PreparedScenario(s, users[0], depth, _Handle(self._make_sampler(s, seed), None, shared=shared))

    def _shared_prompt(self, sh: _Shared, n_user: int, mem: Any) -> tuple[int, int, int | None]:
        """Put the prefix and this request's message in the token buffer; with a saved prefix, restore
        it: (prompt tokens, tokens restored, restore time in ns or None)."""
        prompt = sh.prefix + list(sh.user_buf[:n_user])
        n = len(prompt)
        self._reserve(n)
        self._tokens[:n] = prompt
        L.llama_memory_clear(mem, False)
        if sh.cache != "keep" or sh.state is None:
            return n, 0, None
        r0 = time.perf_counter_ns()
        ok = L.llama_state_seq_set_data(self.ctx, sh.state, len(sh.state), 0)
        r1 = time.perf_counter_ns()
        if not ok:
            raise EngineFailed(f"llama.cpp could not restore the shared prefix's saved state ({len(sh.state)} bytes)")
        return n, len(sh.prefix), r1 - r0

    def _save_prefix(self, sh: _Shared) -> int:
        """The prefix's cells (sequence 0, nothing else evaluated yet) saved: the time it took."""
        t0 = time.perf_counter_ns()
        size = L.llama_state_seq_get_size(self.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        n = L.llama_state_seq_get_data(self.ctx, buf, size, 0)
        t1 = time.perf_counter_ns()
        if n != size:
            raise EngineFailed(f"llama.cpp saved {n} of the shared prefix's {size} state bytes")
        sh.state = buf
        return t1 - t0

    def _turn_prompt(self, t: _Turn, n_user: int, mem: Any, name: str) -> tuple[int, int]:
        """Put turn ``t``'s prompt (the conversation so far + its message) in the token buffer and the
        cache in the state the turn's setting wants: (prompt tokens, tokens the cache keeps)."""
        conv = self._conversations.get(t.conversation)
        if t.turn == 1:
            conv = self._conversations[t.conversation] = _Conversation(list(t.prefix), [])
            prompt = conv.prompt + list(t.user_buf[:n_user])
        elif conv is None or conv.done != t.turn - 1:
            raise RunError(f"conversation {t.conversation}: turn {t.turn} needs turn {t.turn - 1} just before it")
        else:
            prompt = conv.prompt + conv.answer + list(t.user_buf[:n_user])
        n = len(prompt)
        if n + 1 > self.config.model.n_ctx:
            raise PromptTooLong(f"scenario {name}: the conversation has {n} tokens, more than n_ctx allows")
        self._reserve(n)
        self._tokens[:n] = prompt
        keep = conv.in_cache if (t.cache == "keep" and t.turn > 1) else 0
        if keep:
            L.llama_memory_seq_rm(mem, 0, keep, -1)  # drop whatever followed the kept prefix
        else:
            L.llama_memory_clear(mem, False)
        conv.prompt, conv.answer, conv.in_cache = prompt, [], 0
        return n, keep

    def _make_sampler(self, s: ScenarioConfig, seed: int) -> Any:
        """llama.cpp's own sampler chain, built once per scenario and reset before each run."""
        params = L.llama_sampler_chain_default_params()
        params.no_perf = True
        chain = L.llama_sampler_chain_init(params)
        sp = s.sampler
        if isinstance(sp, GreedySampler):
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        elif isinstance(sp, TopKSampler):
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(sp.k))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sp.temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        elif isinstance(sp, TopPSampler):
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(sp.p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(sp.temperature))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed))
        self._samplers.append(chain)
        return chain

    # ---------------------------------------------------------------- run
    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        s = prepared.scenario
        h: _Handle = prepared.handle
        rec = self._ops if s.profile_ops else None  # a profiled twin: its own context, the callback on
        ctx, vocab, clock = (self.ctx_ops if rec is not None else self.ctx), self.vocab, self.clock
        perf_ns = time.perf_counter_ns
        n_batch = self.config.model.n_batch
        text = prepared.prompt_text.encode("utf-8")
        piece = self._piece
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        mem = L.llama_get_memory(ctx)
        one = (L.llama_token * 1)()
        batch1 = L.llama_batch_get_one(one, 1)
        L.llama_sampler_reset(h.sampler)
        L.llama_perf_context_reset(ctx)
        turn = h.turn  # a conversation's turn: its answer is kept for the next turn's prompt
        if turn is not None:
            answer: list[int] = []
            publish = _keeping_tokens(publish, answer)
        shared = h.shared  # a request with a shared prefix: this request's own message
        if shared is not None:
            text = shared.messages[shared.next % len(shared.messages)]
            shared.next += 1
            turn_buf = shared.user_buf
        elif turn is not None:
            turn_buf = turn.user_buf

        if rec is not None:
            rec.start_run()

        # ---- t0: the request starts. Everything up to the first token's text is TTFT.
        t0 = perf_ns()
        if turn is not None or shared is not None:  # the new message (the rest is tokens already)
            n_user = L.llama_tokenize(vocab, text, len(text), turn_buf, len(turn_buf), False, False)
            n_tok = n_user
        else:
            if h.chat_template is not None:
                text = self._render_chat(h.chat_template, text)
            n_tok = n_prompt = L.llama_tokenize(vocab, text, len(text), self._tokens, self._n_tokens_cap, True,
                                                h.chat_template is not None)
        t1 = perf_ns()
        publish(PhaseTimed(t_ns=clock.rel(t1), run_id=run_id, phase="tokenize", duration_ns=t1 - t0, n_tokens=n_tok))
        if n_tok <= 0:
            raise PromptTooLong(f"scenario {s.name}: the prompt tokenized to {n_tok} tokens")

        t2s = perf_ns()
        save_at = reuse_ns = None
        if turn is not None:  # the conversation's prompt; with cache = keep, the cells of the last turn stay
            n_prompt, n_keep = self._turn_prompt(turn, n_user, mem, s.name)
        elif shared is not None:  # the shared prefix restored (a hit), or evaluated here (and saved, keep)
            n_prompt, n_keep, reuse_ns = self._shared_prompt(shared, n_user, mem)
            if shared.cache == "keep" and shared.state is None:
                save_at = len(shared.prefix)
        else:
            L.llama_memory_clear(mem, False)  # forget every cell: no silent prefix reuse, the whole prompt is prefilled
            n_keep = 0
        t2 = perf_ns()
        publish(PhaseTimed(t_ns=clock.rel(t2), run_id=run_id, phase="cache_prep", duration_ns=t2 - t2s,
                           n_tokens=n_keep if (turn is not None or shared is not None) else None))
        cache_prep_ns = t2 - t2s
        save_ns = None

        chunks: list[int] = []
        chunk_tokens: list[int] = []
        base = ctypes.addressof(self._tokens)
        tok_size = ctypes.sizeof(L.llama_token)
        # one span, or two around a shared prefix's save (its cells alone in the cache then)
        for lo, hi in ((n_keep, n_prompt),) if save_at is None else ((0, save_at), (save_at, n_prompt)):
            for i in range(lo, hi, n_batch):
                if stop.is_set():
                    raise RunStopped()
                m = min(n_batch, hi - i)
                ptr = ctypes.cast(base + i * tok_size, ctypes.POINTER(L.llama_token))
                if rec is not None:
                    rec.enter("prefill_chunk", len(chunks))
                c0, c1 = _decode(ctx, L.llama_batch_get_one(ptr, m), s.name)
                if rec is not None:
                    rec.add_span(c1 - c0)
                chunks.append(c1 - c0)
                chunk_tokens.append(m)
                publish(PhaseTimed(t_ns=clock.rel(c1), run_id=run_id, phase="prefill_chunk",
                                   duration_ns=c1 - c0, chunk=len(chunks) - 1, n_tokens=m))
            if hi == save_at:  # keep's first request: the prefix saved, booked as cache handling
                save_ns = self._save_prefix(shared)  # type: ignore[arg-type]
                cache_prep_ns += save_ns
                publish(PhaseTimed(t_ns=clock.now_ns(), run_id=run_id, phase="cache_prep", duration_ns=save_ns))

        if rec is not None:
            rec.enter("decode", None)
        s0 = perf_ns()
        token = L.llama_sampler_sample(h.sampler, ctx, -1)
        s1 = perf_ns()
        publish(PhaseTimed(t_ns=clock.rel(s1), run_id=run_id, phase="first_sample", duration_ns=s1 - s0))

        # ---- decode loop. Token i's text is "available" once its piece has been decoded.
        max_tokens = s.max_tokens
        stop_at_eos = s.stop_at_eos
        ttft_end = None
        first_detok_ns = 0
        stop_reason = "max_tokens"
        prev = s1
        n_out = 0
        # Where each later token's time goes: three clock reads, before and after llama_decode (+
        # synchronize, so that a GPU's work is not booked to sampling) and after sampling; the
        # token's own time (after detokenizing) closes it. One tuple appended per token.
        parts: list[tuple[int, int, int, int]] = []
        a = b = c = 0
        for i in range(max_tokens):
            if i > 0:
                one[0] = token
                a, b = _decode(ctx, batch1, s.name, i)
                token = L.llama_sampler_sample(h.sampler, ctx, -1)
                c = perf_ns()
            n = L.llama_token_to_piece(vocab, token, piece, 256, 0, False)
            piece_text = decoder.decode(piece.raw[:n]) if n > 0 else ""
            now = perf_ns()
            if i > 0:
                parts.append((b - a, c - b, now - c, a - prev))  # decode, sample, detokenize, rest of the loop
            n_out += 1
            is_eog = L.llama_vocab_is_eog(vocab, token)
            if ttft_end is None and (piece_text or is_eog or i == max_tokens - 1):
                # UTF-8 hold-back: a token that ends mid-character has no text yet; TTFT waits.
                ttft_end = now
                first_detok_ns = now - s1
                publish(PhaseTimed(t_ns=clock.rel(now), run_id=run_id, phase="first_detok", duration_ns=first_detok_ns))
            publish(TokenEmitted(t_ns=clock.rel(now), run_id=run_id, index=i, token_id=token,
                                 text=piece_text, dt_ns=now - (t0 if i == 0 else prev)))
            prev = now
            if is_eog and stop_at_eos:
                stop_reason = "eos"
                break
            if stop.is_set() and i + 1 < max_tokens:
                stop_reason = "stopped"
                break
        t_end = prev
        p = L.llama_perf_context(ctx)
        perf = LlamaPerf(t_p_eval_ms=p.t_p_eval_ms, n_p_eval=p.n_p_eval, t_eval_ms=p.t_eval_ms, n_eval=p.n_eval)
        conversation = None
        if turn is not None:
            conv = self._conversations[turn.conversation]
            conv.answer, conv.in_cache, conv.done = answer, n_prompt + max(n_out - 1, 0), turn.turn
            conversation = ConversationTiming(
                conversation=turn.conversation, turn=turn.turn, turns=turn.turns, cache=turn.cache,  # type: ignore[arg-type]
                depth=n_prompt, cached_tokens=n_keep, new_tokens=n_prompt - n_keep, evaluated_tokens=p.n_p_eval,
                counted_by="llama.cpp (n_p_eval)")
        ops = None
        if rec is not None:
            rec.add_span(sum(q[0] for q in parts))  # every token's llama_decode + synchronize
            ops = OpsProfile(mode=rec.mode, phases=rec.end_run())
        prefix = None
        if shared is not None:
            prefix = PrefixTiming(
                group=shared.group, cache=shared.cache, hit=n_keep > 0, prefix_tokens=len(shared.prefix),  # type: ignore[arg-type]
                depth=n_prompt, cached_tokens=n_keep, new_tokens=n_prompt - n_keep, evaluated_tokens=p.n_p_eval,
                counted_by="llama.cpp (n_p_eval)", reuse_ns=reuse_ns, save_ns=save_ns)
        return RunFinished(
            t_ns=clock.rel(t_end), run_id=run_id, scenario=s.name, warmup=warmup,
            n_prompt_tokens=n_prompt, n_output_tokens=n_out,
            ttft_ns=ttft_end - t0, e2e_ns=t_end - t0,
            tokenize_ns=t1 - t0, cache_prep_ns=cache_prep_ns, prefill_ns=sum(chunks),
            prefill_chunks_ns=tuple(chunks), prefill_chunk_tokens=tuple(chunk_tokens),
            first_sample_ns=s1 - s0, first_detok_ns=first_detok_ns,
            stop_reason=stop_reason, llama_perf=perf, token_parts=token_parts(parts), conversation=conversation,
            prefix=prefix, ops=ops,
        )

    def close(self) -> None:
        for sm in self._samplers:
            L.llama_sampler_free(sm)
        self._samplers.clear()
        if self.ctx:
            L.llama_free(self.ctx)
            self.ctx = None
        if self.ctx_ops:
            L.llama_free(self.ctx_ops)
            self.ctx_ops = None
        if self.model:
            L.llama_model_free(self.model)
            self.model = None


def _keeping_tokens(publish: Publish, into: list[int]) -> Publish:
    """``publish`` that also keeps each output token's id (a conversation's answer, for its next turn)."""

    def keep(ev: Any) -> None:
        if type(ev) is TokenEmitted:
            into.append(ev.token_id)
        publish(ev)

    return keep


def _decode(ctx: Any, batch: Any, scenario: str, token: int | None = None) -> tuple[int, int]:
    """One ``llama_decode`` + ``llama_synchronize`` (so a GPU's work is inside the timed span), timed
    on ``perf_counter_ns``: (start, end). A failure is EngineFailed saying where: the prefill, or
    output token ``token``."""
    start = time.perf_counter_ns()
    rc = L.llama_decode(ctx, batch)
    L.llama_synchronize(ctx)
    end = time.perf_counter_ns()
    if rc != 0:
        where = "during prefill" if token is None else f"at output token {token}"
        raise EngineFailed(f"llama_decode failed {where} (code {rc}) in scenario {scenario}")
    return start, end


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass

    return platform.processor() or platform.machine() or "CPU"
