"""Each request's own prompt, for a load scenario that sends real traffic: a request trace's
(``trace``), a prompt dataset's (``prompts``) or a length distribution's (``prompt_tokens_dist``,
``max_tokens_dist``). Built before each load phase, untimed, with the server's tokenizer where it
has one (:class:`RequestBuilder`); the server is asked nothing while the phase is measured.

**A trace's prompt blocks.** A trace names each request's prompt as blocks of ``trace_block_tokens``
tokens (``hash_ids``; the last block may be partial). Every block id is given its own text once per
phase: ``trace_block_tokens`` tokens cut from a *pool* (the scenario's text, by default the bundled
corpus, in shuffled pieces, tokenized once), each id at another place of it (no two ids of a phase
share a place while the pool has room). A request's prompt is its blocks' texts one after another,
the last one cut so that the whole prompt is exactly ``input_length`` of the server's tokens (BOS
included; where merges at a cut make that length unreachable, the closest one, and the run reports
its real length). So two requests that share their leading ``hash_ids`` send the same text for
those blocks, and the server's prefix cache sees exactly the trace's sharing: a block id's text is
the same wherever it appears, and a text that no earlier block id had cannot be in the cache.

Each phase (the warm-up requests, the counted ones, a re-run) and each session (``nonce``) gives
the block ids other texts: a server keeps its cache from one session to the next, and a warm-up must
not warm the counted requests' blocks. Lengths and sharing are the trace's; the words are not.

Without a tokenizer (a server with no tokenize endpoint) lengths are estimated at 4 characters a
token, as for any prompt, and ``usage.prompt_tokens`` says the real length.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Iterable, Protocol, Sequence

from ttftui.core.config import ScenarioConfig
from ttftui.core.workload import DEFAULT_BLOCK_TOKENS, blocks_of, leading_reuse, read_prompts, read_trace
from ttftui.measure.datasets import dataset_order, draw_lengths, phase_rng
from ttftui.measure.engine.base import PreparedScenario
from ttftui.measure.prompts import scenario_source_text

CHARS_PER_TOKEN = 4  # no tokenizer: the remote engine's own estimate
PIECE_WORDS = 16  # the pool is the text in pieces of this many words, shuffled
POOL_MIN_TOKENS = 1 << 16
POOL_MAX_TOKENS = 1 << 20
POOL_MARGIN = 256  # tokens after a block's place in the pool: a prompt's tail may need a few more
MAX_TRIES = 6  # cuts tried per prompt to make its length exact


class Tokenizer(Protocol):
    """The server's tokenizer (``ttftui.measure.prompts.PromptTokenizer``)."""

    def tokenize(self, text: str, *, chat: bool) -> list[int]: ...

    def content_tokens(self, text: str, *, chat: bool) -> list[int]: ...

    def detokenize(self, tokens: list[int], *, chat: bool) -> str: ...


class RequestPrompt(PreparedScenario):
    """One request's prompt: its text is its blocks' texts joined when the request is sent (the
    blocks are shared by every request that has them, so a long trace holds each block's text once,
    not every prompt's). ``scenario`` is the scenario with this request's ``max_tokens``."""

    def __init__(self, scenario: ScenarioConfig, parts: Sequence[str], n_tokens: int, line: int | None = None,
                 reusable_tokens: int | None = None):
        self._parts = tuple(parts)
        self.line = line  # the trace's or the dataset's line it comes from
        # a trace's request: its tokens in leading blocks an earlier request of its phase already sent
        # (what an unbounded prefix cache could serve; Trace.reusable_tokens, request by request)
        self.reusable_tokens = reusable_tokens
        super().__init__(scenario, "", n_tokens)

    @property  # type: ignore[override]
    def prompt_text(self) -> str:
        return "".join(self._parts)

    @prompt_text.setter
    def prompt_text(self, _value: str) -> None:  # the dataclass's __init__ sets it: the parts are the text
        pass


@dataclass
class _Spec:
    """What one request sends: ``input_length`` tokens made of ``blocks`` (trace, distribution), or
    ``text`` as it is (a dataset's prompt, the scenario's own), and its max_tokens."""

    max_tokens: int
    input_length: int | None = None
    blocks: tuple[object, ...] = ()
    text: str | None = None
    text_key: object = None  # the text's identity, to count its tokens once
    line: int | None = None


class _Pool:
    """The text block texts are cut from: the source in shuffled pieces, as tokens (with a
    tokenizer) or characters (without)."""

    def __init__(self, source: str, size: int, seed: str, tok: Tokenizer | None, lead: list[int]):
        words = source.split() or ["text"]
        rng = random.Random(seed)
        pieces, n_chars = [], 0
        target = size * (CHARS_PER_TOKEN + 1) if tok is not None else size * CHARS_PER_TOKEN
        while n_chars < target:
            k = rng.randrange(len(words))
            piece = " ".join((words[k:] + words[:k])[:PIECE_WORDS]) if len(words) > PIECE_WORDS else " ".join(words)
            pieces.append(piece)
            n_chars += len(piece) + 1
        self.text = " ".join(pieces)
        self.tok = tok
        if tok is not None:
            ids = tok.content_tokens(self.text, chat=False)
            self.ids = ids[len(lead):] if lead and ids[: len(lead)] == lead else ids
            self.size = len(self.ids)
        else:
            self.ids = []
            self.size = len(self.text) // CHARS_PER_TOKEN

    def cut(self, at: int, n: int) -> str:
        """The text of ``n`` tokens (characters / 4 without a tokenizer) from place ``at``."""
        if self.tok is None:
            return self.text[at * CHARS_PER_TOKEN:(at + n) * CHARS_PER_TOKEN]
        return self.tok.detokenize(self.ids[at:at + n], chat=False)


class RequestBuilder:
    """Builds the requests of each load phase of a per-request scenario (``ScenarioConfig.per_request``).
    One per engine: it keeps the pools (tokenized once) and counts each scenario's phases."""

    def __init__(self, seed: int, nonce: str | None = None):
        self.seed = seed
        self.nonce = uuid.uuid4().hex[:12] if nonce is None else nonce
        self._phases: dict[str, int] = {}
        self._pools: dict[tuple[str, int, int], _Pool] = {}
        self._overhead: dict[int, tuple[int, list[int]]] = {}  # by tokenizer: (BOS and such, content lead)

    def build(self, s: ScenarioConfig, n: int, warm: bool, tok: Tokenizer | None) -> list[RequestPrompt]:
        """The ``n`` requests of a phase of ``s``, in the order they are sent."""
        phase = self._phases.get(s.name, 0)
        self._phases[s.name] = phase + 1
        salt = f"{self.nonce}:{s.name}:{phase}"
        specs = list(self._specs(s, n, warm))
        overhead, lead = self._overhead_of(tok)
        blocks = _BlockTexts(self._pool_for(s, specs, tok, lead), salt, _block_tokens(s), specs)
        counted: dict[object, int] = {}
        by_max: dict[int, ScenarioConfig] = {s.max_tokens: s}  # the scenario with each max_tokens, made once
        seen: set[object] = set()  # a trace's blocks sent so far in this phase
        block = _block_tokens(s)
        out = []
        for spec in specs:
            sc = by_max.get(spec.max_tokens)
            if sc is None:
                sc = by_max[spec.max_tokens] = s.model_copy(update={"max_tokens": spec.max_tokens})
            if spec.text is not None:  # as it is: its length is what the tokenizer counts
                if spec.text_key not in counted:
                    counted[spec.text_key] = (len(tok.tokenize(spec.text, chat=False)) if tok is not None
                                              else max(1, len(spec.text) // CHARS_PER_TOKEN))
                out.append(RequestPrompt(sc, (spec.text,), counted[spec.text_key], spec.line))
                continue
            assert spec.input_length is not None
            parts, n_tokens = blocks.prompt(spec, tok, overhead)
            reuse = leading_reuse(spec.blocks, spec.input_length, block, seen) if s.trace is not None else None
            out.append(RequestPrompt(sc, parts, n_tokens, spec.line, reusable_tokens=reuse))
        return out

    # ------------------------------------------------------------------ what each request sends
    def _specs(self, s: ScenarioConfig, n: int, warm: bool) -> Iterable[_Spec]:
        if s.trace is not None:  # each phase replays the trace from its first line
            for i, r in enumerate(read_trace(s.trace).requests[:n]):
                k = blocks_of(r.input_length, s.trace_block_tokens)
                own = tuple(("own", i, j) for j in range(len(r.hash_ids), k))  # blocks the trace leaves unnamed
                yield _Spec(max_tokens=min(r.output_length, s.max_tokens), input_length=r.input_length,
                            blocks=tuple(r.hash_ids) + own, line=r.line)
            return
        outs = (draw_lengths(s.max_tokens_dist, n, phase_rng(self.seed, s.name, warm, "max_tokens"), s.max_tokens)
                if s.max_tokens_dist is not None else [s.max_tokens] * n)
        if s.prompts is not None:
            ds = read_prompts(s.prompts)
            order = dataset_order(len(ds.prompts), n, phase_rng(self.seed, s.name, warm, "prompts"))
            for i, k in enumerate(order):
                yield _Spec(max_tokens=outs[i], text=ds.prompts[k].text, text_key=k, line=ds.prompts[k].line)
            return
        if s.prompt_tokens_dist is not None:
            lengths = draw_lengths(s.prompt_tokens_dist, n, phase_rng(self.seed, s.name, warm, "prompt_tokens"))
        elif s.prompt_tokens is not None:
            lengths = [s.prompt_tokens] * n
        else:  # max_tokens_dist with the scenario's own text, as it is
            text = scenario_source_text(s)
            for i in range(n):
                yield _Spec(max_tokens=outs[i], text=text, text_key="scenario")
            return
        for i, length in enumerate(lengths):  # every block the request's own
            k = blocks_of(length, DEFAULT_BLOCK_TOKENS)
            yield _Spec(max_tokens=outs[i], input_length=length, blocks=tuple(("own", i, j) for j in range(k)))

    # ------------------------------------------------------------------ the pool and the tokenizer
    def _overhead_of(self, tok: Tokenizer | None) -> tuple[int, list[int]]:
        """(tokens an empty prompt has: the BOS, content tokens an empty text has: a server that adds
        the BOS even there)."""
        if tok is None:
            return 0, []
        got = self._overhead.get(id(tok))
        if got is None:
            got = self._overhead[id(tok)] = (len(tok.tokenize("", chat=False)), tok.content_tokens("", chat=False))
        return got

    def _pool_for(self, s: ScenarioConfig, specs: list[_Spec], tok: Tokenizer | None, lead: list[int]) -> _Pool:
        """A pool with room for every block of the phase at a place of its own (a power of two of
        tokens, from 64K to 1M, and twice the blocks), made once per text and size."""
        distinct = len({b for sp in specs for b in sp.blocks})
        size = POOL_MIN_TOKENS
        while size < min(2 * distinct + _block_tokens(s) + POOL_MARGIN, POOL_MAX_TOKENS):
            size *= 2
        source = scenario_source_text(s)
        key = (hashlib.sha256(source.encode()).hexdigest(), size, id(tok))
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(source, size + _block_tokens(s) + POOL_MARGIN, f"{self.seed}:pool:{key[0]}",
                                            tok, lead)
        return pool


def _block_tokens(s: ScenarioConfig) -> int:
    return s.trace_block_tokens if s.trace is not None else DEFAULT_BLOCK_TOKENS


class _BlockTexts:
    """A phase's block ids, each at its own place of the pool, and each one's text (cut once)."""

    def __init__(self, pool: _Pool, salt: str, block: int, specs: list[_Spec]):
        self.pool, self.block = pool, block
        room = max(1, pool.size - block - POOL_MARGIN)
        order: dict[object, None] = {}
        for sp in specs:
            for b in sp.blocks:
                order.setdefault(b, None)
        rng = random.Random(salt)
        k = len(order)
        places = rng.sample(range(room), k) if k <= room else [rng.randrange(room) for _ in range(k)]
        self.place = dict(zip(order, places))
        self.texts: dict[object, str] = {}

    def text(self, b: object) -> str:
        t = self.texts.get(b)
        if t is None:
            t = self.texts[b] = self.pool.cut(self.place[b], self.block)
        return t

    def prompt(self, spec: _Spec, tok: Tokenizer | None, overhead: int) -> tuple[tuple[str, ...], int]:
        """(the prompt's texts, its length): its full blocks, then its last block cut to make the
        whole exactly ``input_length`` tokens (the closest reachable length otherwise)."""
        n = spec.input_length
        assert n is not None
        content = max(1, n - overhead)
        k = blocks_of(content, self.block)
        full = tuple(self.text(b) for b in spec.blocks[: k - 1])
        last = spec.blocks[min(k, len(spec.blocks)) - 1]
        r = content - (k - 1) * self.block  # the last block's tokens, as first guessed
        if tok is None:
            return full + (self.pool.cut(self.place[last], r),), n
        best: tuple[int, tuple[str, ...], int] | None = None
        tried: set[int] = set()
        for _ in range(MAX_TRIES):
            r = max(1, min(r, self.block + POOL_MARGIN))
            if r in tried:
                break
            tried.add(r)
            tail = self.text(last) if r == self.block else self.pool.cut(self.place[last], r)
            parts = full + (tail,)
            got = len(tok.tokenize("".join(parts), chat=False))
            if best is None or abs(got - n) < best[0]:
                best = (abs(got - n), parts, got)
            if got == n:
                break
            r += n - got
        assert best is not None
        return best[1], best[2]
