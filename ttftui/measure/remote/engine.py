"""A server as an engine: the same scenarios, runs and events as the local engine, over HTTP.

``load`` asks the server what it serves and what it is (llama-server answers ``/props``,
llama-cpp-python's server has ``/extras/tokenize``); ``prepare`` builds each scenario's prompt with
the server's own tokenizer, so its length is exact (or, where the server has none, says so and takes
the count from ``usage``); ``run`` streams one request and publishes a ``TokenEmitted`` per text
chunk as it arrives. A failed request is a failed run (``RunError``), and the session goes on.

Prefix caching is never silent: by default every run's prompt starts at another place of the text
(the server's cache cannot reuse a prefix) and llama-server is also sent ``cache_prompt: false``;
with ``server.prefix_cache = "on"`` every run sends the same prompt, to measure cache hits, and
llama-server's ``cache_n`` says how many prompt tokens came from its cache.

A conversation (``kind = "conversation"``) runs turn after turn: each turn sends the conversation so
far (its system prompt, every earlier user message and the server's answer to it, as it streamed)
and a new user message; /completions gets it as one text, /chat/completions as messages. The
scenario's ``cache`` wins over ``server.prefix_cache``: llama-server is sent ``cache_prompt`` true
(keep) or false (off), vLLM with off a ``cache_salt`` of the request's own; a server with no such
switch is said to be one. Each turn's end (``ConversationTiming``) holds how much of the prompt
the server took from its cache by its own account (llama-server's ``timings.cache_n`` and
``prompt_n``, else ``usage.prompt_tokens_details.cached_tokens``), or says it was not reported.

What the server says of itself is checked at this boundary: a ``/models`` or tokenizer answer of
another shape is an error naming it, and an impossible figure in its ``usage`` or ``timings``
(negative, not a whole number of tokens, longer than the request lasted on the client's clock) is
kept as null, with a notice saying why. A server that stops answering mid-session is *lost*
(``server.lost_after``, :meth:`RemoteEngine._no_answer`): the session ends with ServerLost, its
runs so far kept, the requests in flight failed with the reason.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

from ttftui.core.config import Config, GreedySampler, ScenarioConfig, TopKSampler, TopPSampler
from ttftui.core.errors import ConfigError, ModelLoadFailed, PromptTooLong, ServerLost
from ttftui.core.events import (
    ConversationTiming,
    DeviceFacts,
    ModelFacts,
    Notice,
    RemoteTiming,
    RunFinished,
    ServerSample,
    TokenEmitted,
)
from ttftui.core.urls import split_credentials
from ttftui.measure.engine.base import Engine, LoadResult, PreparedScenario, Publish, RunError, RunStopped, Worker
from ttftui.measure.prompts import exact_length_text, scenario_source_text
from ttftui.measure.remote.client import Endpoint, Limits, RequestFailed, StreamResult
from ttftui.measure.trace import RequestBuilder

LLAMA_SERVER = "llama-server"
# A server's queue in its Prometheus /metrics: (requests being computed, requests waiting) gauges.
QUEUE_GAUGES = (
    ("llamacpp:requests_processing", "llamacpp:requests_deferred"),  # llama-server --metrics
    ("vllm:num_requests_running", "vllm:num_requests_waiting"),  # vLLM
    ("sglang:num_running_reqs", "sglang:num_queue_reqs"),  # SGLang
)
LLAMA_CPP_PYTHON = "llama-cpp-python server"
FINAL_READING_S = 2.0  # the queue poller's last reading, after the load phase: at most this long
# A server's prefix cache in its /metrics: (prompt tokens looked up, prompt tokens found) counters.
PREFIX_CACHE_COUNTERS = (
    ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"),  # vLLM (V1 engine)
    ("sglang:prompt_tokens_total", "sglang:cached_tokens_total"),  # SGLang (summed over cache_source)
)


class _RemoteTokenizer:
    """The server's tokenizer, through its HTTP endpoints (untimed: used only to build prompts)."""

    def __init__(self, ep: Endpoint, kind: str):
        self.ep, self.kind = ep, kind
        self.stop: Any = None  # while a run builds its prompt: the session's stop (ends a request in flight)

    def _tokens(self, text: str, add_special: bool) -> list[int]:
        if self.kind == LLAMA_SERVER:
            st, doc, _ = self.ep.post_json(self.ep.root_path("/tokenize"),
                                           {"content": text, "add_special": add_special}, stop=self.stop)
        else:
            st, doc, _ = self.ep.post_json(self.ep.root_path("/extras/tokenize"), {"input": text}, stop=self.stop)
        if st != 200 or not isinstance(doc, dict) or not isinstance(doc.get("tokens"), list):
            raise RequestFailed(f"the server's tokenizer answered HTTP {st}" + ("" if st != 200 else
                                " without a list of tokens"))
        # ids, or llama-server's with_pieces: {"id": ..., "piece": ...}
        ids = [t if type(t) is int else t.get("id") if isinstance(t, dict) else None for t in doc["tokens"]]
        for raw, t in zip(doc["tokens"], ids):
            if type(t) is not int or not 0 <= t < 2**31:
                raise RequestFailed(f"the server's tokenizer answered something that is not a token id: "
                                    f"{str(raw)[:40]!r}")
        return ids  # type: ignore[return-value]

    def tokenize(self, text: str, *, chat: bool) -> list[int]:
        return self._tokens(text, True)

    def content_tokens(self, text: str, *, chat: bool) -> list[int]:
        return self._tokens(text, False)

    def detokenize(self, tokens: list[int], *, chat: bool) -> str:
        if self.kind == LLAMA_SERVER:
            st, doc, _ = self.ep.post_json(self.ep.root_path("/detokenize"), {"tokens": tokens}, stop=self.stop)
            key = "content"
        else:
            st, doc, _ = self.ep.post_json(self.ep.root_path("/extras/detokenize"), {"tokens": tokens},
                                           stop=self.stop)
            key = "text"
        if st != 200 or not isinstance(doc, dict) or not isinstance(doc.get(key), str):
            raise RequestFailed(f"the server's detokenizer answered HTTP {st}")
        return doc[key]


class RemoteEngine(Engine):
    name = "remote"
    synthetic = False
    host = "remote"

    def __init__(self, config: Config):
        super().__init__()
        sc = config.server
        self.config = config
        api_key = os.environ.get(sc.api_key_env) if sc.api_key_env else None
        if sc.api_key_env and not api_key:
            raise ConfigError(f"server.api_key_env: the environment variable {sc.api_key_env} is not set")
        self._api_key = api_key
        try:
            self.ep = self._endpoint()
        except ValueError as e:
            raise ConfigError(f"server.url: {e}") from None
        self.kind = "unknown"
        self.model_name = sc.model
        self.tokenizer: _RemoteTokenizer | None = None
        # a Ray client worker's prompts were cut by the driver with the server's tokenizer
        self.prompts_from_server_tokenizer = False
        self.queue_source: str | None = None  # "metrics" | "slots": where the server's queue can be read
        self.queue_why: str = ""  # else why not
        self._queue_gauges: tuple[str, str] = ("", "")
        self._queue_noted = False
        self._variants: dict[tuple[str, int], tuple[str, int]] = {}
        self._limits: dict[int, Limits] = {}  # by max_tokens
        # a server lost mid-session (see _no_answer); the counts are shared by every load worker
        self._lock = threading.Lock()
        self._n_ok = 0  # requests that succeeded
        self._n_silent = 0  # requests in a row that got no answer
        self._probing = False
        self._lost: str | None = None  # why the server counts as lost, once it does
        self._n_noticed = 0  # notices of impossible figures so far (MAX_FIGURE_NOTICES at most)
        # conversations (kind = "conversation"): each one's texts and its turns so far, by NAME@CACHE and
        # user (None: turn after turn; a load worker's index under load: each user holds its own)
        self._conversations: dict[tuple[str, int | None], _Conversation] = {}
        # (conversation, round, piece) -> text, n; a user's conversation is named NAME@CACHE/userU
        self._pieces: dict[tuple[str, int, int], tuple[str, int]] = {}
        self._tok_lock = threading.Lock()  # users cut and count their prompts with one tokenizer
        self._conv_noted: set[str] = set()  # notices said once
        self._text_tok: _TextOnly | None = None  # the server's tokenizer, a text alone
        # per-request prompts (a trace, a prompts file, length distributions): built with each load phase
        self._requests = RequestBuilder(config.run.seed)

    def _endpoint(self) -> Endpoint:
        sc = self.config.server
        if split_credentials(sc.url)[1] is not None and self._api_key:
            raise ConfigError("server.url holds a user:password and server.api_key_env names a key: give one of them")
        return Endpoint(sc.url, connect_timeout_s=sc.connect_timeout_s, read_timeout_s=sc.read_timeout_s,
                        api_key=self._api_key, abort=lambda: self._lost)

    def limits(self, s: ScenarioConfig) -> Limits:
        """What one request of ``s`` may take (``[server]``; 0 = derived from max_tokens)."""
        lim = self._limits.get(s.max_tokens)
        if lim is None:
            sc = self.config.server
            headers_s = sc.headers_timeout_s or sc.read_timeout_s
            chunks = sc.max_chunks or 4 * s.max_tokens + 64
            lim = self._limits[s.max_tokens] = Limits(
                headers_s=headers_s, idle_s=sc.read_timeout_s,
                total_s=sc.request_timeout_s or headers_s + sc.read_timeout_s + 1.0 * s.max_tokens,
                max_event_bytes=sc.max_event_bytes, max_chunks=chunks,
                max_stream_bytes=sc.max_stream_bytes or 4096 * chunks)
        return lim

    # ------------------------------------------------------------------ load: who is there
    def load(self) -> LoadResult:
        ep = self.ep
        try:
            st, doc, headers = ep.get_json(ep.base + "/models")
        except RequestFailed as e:
            raise ModelLoadFailed(f"cannot reach the server at {ep.url}: {e}") from None
        if st != 200:
            raise ModelLoadFailed(f"the server at {ep.url} answered HTTP {st} to GET /models")
        data = doc.get("data") if isinstance(doc, dict) else None
        ids = [m["id"] for m in data if isinstance(m, dict) and isinstance(m.get("id"), str) and m["id"]] \
            if isinstance(data, list) else []
        if not self.model_name:
            if not ids:
                what = ("lists no model" if isinstance(data, list) else
                        "answers with no list of models (not an OpenAI-style {\"data\": [...]})")
                raise ModelLoadFailed(f"the server at {ep.url} {what} at GET /models; set server.model")
            self.model_name = ids[0][:200]
        self.kind = self._server_kind(headers)
        if self.kind in (LLAMA_SERVER, LLAMA_CPP_PYTHON):
            self.tokenizer = _RemoteTokenizer(ep, self.kind)
        self._find_queue()
        host = f"{ep.host}:{ep.port}"
        model = ModelFacts(path=ep.url, name=self.model_name, file_size_bytes=0,
                           description=f"served by {self.kind} at {ep.url}")
        device = DeviceFacts(kind="remote", name=f"{self.kind} at {host}", build=self.kind, n_threads=None)
        return LoadResult(load_ms=None, model=model, device=device, engine_version=self.kind)

    def _find_queue(self) -> None:
        """Where the server's queue can be read: its Prometheus /metrics (llama-server started with
        --metrics, vLLM, SGLang), else llama-server's /slots; other servers say nothing of it."""
        try:
            st, text = self.ep.get_text(self.ep.root_path("/metrics"))
            if st == 200:
                g = prometheus_gauges(text)
                for running, waiting in QUEUE_GAUGES:
                    if running in g and waiting in g:
                        self.queue_source, self._queue_gauges = "metrics", (running, waiting)
                        return
            if self.kind == LLAMA_SERVER:
                st, doc, _ = self.ep.get_json(self.ep.root_path("/slots"))
                if st == 200 and isinstance(doc, list):
                    self.queue_source = "slots"
                    return
        except RequestFailed:
            pass
        self.queue_why = ("llama-server's /metrics and /slots are off (start it with --metrics)"
                          if self.kind == LLAMA_SERVER else f"{self.kind} has no /metrics with a request queue")

    def read_queue(self, ep: Endpoint, stop: Any = None) -> ServerSample | None:
        """One reading of the server's queue, or None when it did not answer (``stop()``: give up
        the reading in flight at once)."""
        sent = self.clock.now_ns()
        try:
            if self.queue_source == "metrics":
                st, text = ep.get_text(ep.root_path("/metrics"), stop=stop)
                if st != 200:
                    return None
                g = prometheus_gauges(text)
                running, waiting = self._queue_gauges
                queried, hits = next(((g.get(q), g.get(h)) for q, h in PREFIX_CACHE_COUNTERS if q in g and h in g),
                                     (None, None))
                return ServerSample(t_ns=self.clock.now_ns(), source="metrics",
                                    requests_processing=_count(g.get(running))[0],
                                    requests_deferred=_count(g.get(waiting))[0],
                                    prefix_cache_queried=_count(queried)[0], prefix_cache_hits=_count(hits)[0],
                                    sent_ns=sent)
            if self.queue_source == "slots":
                st, doc, _ = ep.get_json(ep.root_path("/slots"), stop=stop)
                if st != 200 or not isinstance(doc, list):
                    return None
                busy = sum(1 for x in doc if isinstance(x, dict) and x.get("is_processing"))
                return ServerSample(t_ns=self.clock.now_ns(), source="slots", requests_processing=busy,
                                    slots_busy=busy, slots_total=len(doc))
        except RequestFailed:
            return None
        return None

    def observe_load(self, publish: Publish) -> "QueuePoller":
        return QueuePoller(self, publish, self.config.server.queue_poll_ms / 1000)

    def _server_kind(self, headers: dict[str, str]) -> str:
        ep = self.ep
        try:
            st, doc, _ = ep.get_json(ep.root_path("/props"))
            if st == 200 and isinstance(doc, dict) and ("default_generation_settings" in doc or "build_info" in doc):
                return LLAMA_SERVER
            st, doc, _ = ep.post_json(ep.root_path("/extras/tokenize"), {"input": "a"})
            if st == 200 and isinstance(doc, dict) and "tokens" in doc:
                return LLAMA_CPP_PYTHON
            st, _, _ = ep.get_json(ep.root_path("/version"))
            if st == 200:
                return "vLLM"
        except RequestFailed:
            pass
        return headers.get("server") or "unknown"

    # ------------------------------------------------------------------ prepare: exact prompts
    def prepare(self, scenario: ScenarioConfig, seed: int) -> PreparedScenario:
        if scenario.kind == "conversation":
            return self._prepare_turn(scenario)
        if scenario.per_request:  # each phase builds its own requests (prepare_requests); this is a first one's prompt
            first = self.prepare_requests(PreparedScenario(scenario, prompt_text="", prompt_tokens=0), 1, True)[0]
            return PreparedScenario(scenario, prompt_text=first.prompt_text, prompt_tokens=first.prompt_tokens)
        text, n = self._prepared_prompt(scenario, 0)
        return PreparedScenario(scenario, prompt_text=text, prompt_tokens=n)

    def _prepared_prompt(self, s: ScenarioConfig, variant: int) -> tuple[str, int]:
        """A prompt built before any run is timed: a tokenizer that fails here stops the session."""
        try:
            return self._prompt(s, variant)
        except RequestFailed as e:
            raise ModelLoadFailed(f"cannot build the prompt of scenario {s.name} with the server's tokenizer: "
                                  f"{e}") from None

    def _prompt(self, s: ScenarioConfig, variant: int) -> tuple[str, int]:
        """(text, tokens) of the scenario's prompt; variant k starts k words later in the text, so
        no two runs share a prefix the server could take from its cache."""
        key = (s.name, variant)
        if key in self._variants:
            return self._variants[key]
        source = scenario_source_text(s)
        if variant:
            words = source.split()
            k = (variant * 7919) % max(len(words), 1)
            source = " ".join(words[k:] + words[:k])
        tok = self.tokenizer  # its failures (RequestFailed) are the caller's to name
        if tok is not None and s.prompt_tokens is not None and not s.chat:
            text, n = exact_length_text(tok, source, s.prompt_tokens, chat=False, name=s.name), s.prompt_tokens
        elif tok is not None:
            text = source if s.prompt_tokens is None else exact_length_text(tok, source, s.prompt_tokens,
                                                                             chat=False, name=s.name)
            n = len(tok.content_tokens(text, chat=False))
        else:  # no tokenizer: about 4 characters a token; usage.prompt_tokens will say
            n = s.prompt_tokens or max(1, len(source) // 4)
            text = (source * (1 + 4 * n // max(len(source), 1)))[: 4 * n]
        self._variants[key] = (text, n)
        return text, n

    def counted_by(self, s: ScenarioConfig) -> str:
        if self.tokenizer is None and not self.prompts_from_server_tokenizer:
            return "estimate (the server has no tokenizer endpoint); see usage_prompt_tokens"
        if s.chat or self.config.server.api == "chat":
            return "server tokenizer, content only (the server adds its chat template); see usage_prompt_tokens"
        return "server tokenizer"

    # ------------------------------------------------------------------ run: one streamed request
    def _body(self, s: ScenarioConfig, text: str, *, messages: list[dict[str, str]] | None = None,
              cache_prompt: bool | None = None) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of one request: ``text`` as the prompt (or the one user message), or
        ``messages`` (a conversation's, to /chat/completions); ``cache_prompt`` (llama-server): a
        conversation's cache setting, over ``server.prefix_cache``."""
        sc = self.config.server
        body: dict[str, Any] = {"model": self.model_name, "max_tokens": s.max_tokens, "stream": True,
                                "stream_options": {"include_usage": True}}
        sp = s.sampler
        if isinstance(sp, GreedySampler):
            body["temperature"] = 0.0
        elif isinstance(sp, TopKSampler):
            body.update(temperature=sp.temperature, top_k=sp.k)
        elif isinstance(sp, TopPSampler):
            body.update(temperature=sp.temperature, top_p=sp.p)
        if self.kind == LLAMA_SERVER:
            body["cache_prompt"] = sc.prefix_cache == "on" if cache_prompt is None else cache_prompt
            body["return_progress"] = True
            body["timings_per_token"] = False
        if self.kind in (LLAMA_SERVER, "vLLM") and not s.stop_at_eos:
            body["ignore_eos"] = True  # output length fixed, like the local engine
        if messages is not None:
            body["messages"] = messages
            return self.ep.base + "/chat/completions", body
        if sc.api == "chat" or s.chat:
            body["messages"] = [{"role": "user", "content": text}]
            return self.ep.base + "/chat/completions", body
        body["prompt"] = text
        return self.ep.base + "/completions", body

    def _variant(self, run_id: int) -> int:
        return 0 if self.config.server.prefix_cache == "on" else run_id

    def prepare_runs(self, prepared: PreparedScenario, run_ids: range) -> None:
        if prepared.scenario.per_request:  # prepare_requests builds them
            return
        for rid in run_ids:
            self._prepared_prompt(prepared.scenario, self._variant(rid))

    def prepare_requests(self, prepared: PreparedScenario, n: int, warm: bool) -> list[PreparedScenario]:
        """The ``n`` requests of a load phase of a per-request scenario (a trace, a prompts file, a
        length distribution), each with its own prompt and max_tokens, built now, untimed, with the
        server's tokenizer (ttftui.measure.trace): request i of the phase sends the i-th."""
        try:
            return list(self._requests.build(prepared.scenario, n, warm, self.tokenizer))
        except RequestFailed as e:
            raise ModelLoadFailed(f"cannot build the prompts of scenario {prepared.scenario.name} with the "
                                  f"server's tokenizer: {e}") from None

    def prompt_for_run(self, s: ScenarioConfig, run_id: int) -> tuple[str, int]:
        """(text, tokens) that run ``run_id`` of ``s`` sends: what a Ray client worker is handed."""
        return self._prepared_prompt(s, self._variant(run_id))

    def use_prompt(self, s: ScenarioConfig, run_id: int, text: str, n_tokens: int) -> None:
        """Send ``text`` (``n_tokens`` long) for run ``run_id`` of ``s``: a Ray client worker takes the
        prompts the driver built, so every worker sends what a local load would."""
        self._variants[(s.name, self._variant(run_id))] = (text, n_tokens)

    def worker(self, user: int | None = None) -> "RemoteWorker":
        """A client of its own; ``user``: a conversation's user under load, holding its own conversation."""
        return RemoteWorker(self, user)

    def prepare_conversations(self, turns: list[PreparedScenario], users: int, n_each: int) -> None:
        """Cut, untimed, the texts of each user's next ``n_each`` conversations (rounds) of the turns
        ``turns`` (a load phase asks the server nothing but its requests while it is measured)."""
        if not turns:
            return
        first = turns[0].scenario
        try:
            for u in range(users):
                conv = self._conversations.get((first.conversation or first.name, u))
                start = (conv.round + 1) if conv is not None else 0
                for rnd in range(start, start + min(n_each, MAX_ROUNDS_PREPARED)):
                    for p in turns:
                        s = p.scenario
                        if s.turn == 1 and s.system_tokens:
                            self._piece(s, rnd, 0, u)
                        self._piece(s, rnd, s.turn or 1, u)
        except RequestFailed as e:
            raise ModelLoadFailed(f"cannot build the prompts of conversation {first.conversation} with the server's "
                                  f"tokenizer: {e}") from None

    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event) -> RunFinished:
        return self.request(self.ep, prepared, run_id, warmup, publish, stop)

    def request(self, ep: Endpoint, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
                stop: threading.Event, due_ns: int | None = None, user: int | None = None) -> RunFinished:
        """One streamed request on ``ep``; ``due_ns``: when it was scheduled (open loop); ``user``: the
        conversation's user under load (its own conversation so far is sent)."""
        s = prepared.scenario
        if stop.is_set():
            raise RunStopped()
        if self._lost is not None:
            raise RunError(f"not sent: {self._lost}")
        tok = self.tokenizer
        turn: _Turn | None = None
        try:  # untimed: before t0 (built in advance under load)
            if tok is not None:
                tok.stop = stop.is_set
            if s.kind == "conversation":
                if user is None:
                    turn = self._turn_prompt(s, publish)
                else:  # users share the tokenizer (and its connection): one at a time, untimed
                    with self._tok_lock:
                        turn = self._turn_prompt(s, publish, user)
                text, n_prompt = turn.text, turn.n_tokens
            elif s.per_request:  # its own, built with its phase (prepare_requests)
                text, n_prompt = prepared.prompt_text, prepared.prompt_tokens
            else:
                text, n_prompt = self._prompt(s, self._variant(run_id))
        except RequestFailed as e:  # the server went away between runs: a failed run, not a failed load
            if stop.is_set():
                raise RunStopped() from None
            self._failed(e, "cannot build the prompt with the server's tokenizer: ")
        finally:
            if tok is not None:
                tok.stop = None
        if turn is None:  # a trace's sharing is the point: llama-server may reuse its cache
            path, body = self._body(s, text, cache_prompt=True if s.trace is not None else None)
        else:
            path, body = self._turn_body(s, turn)
            if user is not None:  # the OpenAI "user": a router may keep each user's requests on one replica
                body["user"] = f"ttftui-user-{user}"
        clock = self.clock
        prev = [0]

        def on_chunk(chunk: Any, index: int) -> None:
            # One event per text chunk (a chunk may hold several tokens; n_output_tokens comes from usage).
            publish(TokenEmitted(t_ns=clock.rel(chunk.abs_ns), run_id=run_id, index=index, token_id=-1,
                                 text=chunk.text, dt_ns=chunk.t_ns - prev[0]))
            prev[0] = chunk.t_ns

        try:
            res = ep.stream(path, body, on_chunk=on_chunk, stop=stop.is_set, limits=self.limits(s))
        except RequestFailed as e:
            self._failed(e)
        lag = None if due_ns is None else max(0, res.t0_ns - due_ns)
        try:
            fin = self._finished(s, run_id, warmup, n_prompt, res, publish, lag)
        except RunError:  # it answered, with no text: a failed run, but the server is there
            self._answered(ok=False)
            raise
        reuse = getattr(prepared, "reusable_tokens", None)  # a trace's request (ttftui.measure.trace)
        if reuse is not None and fin.remote is not None:
            fin = dataclasses.replace(fin, remote=dataclasses.replace(fin.remote, trace_reusable_tokens=reuse))
        if not res.stopped:
            self._answered(ok=True)
        if turn is not None:
            fin = self._turn_finished(s, turn, res, fin, publish, user)
        return fin

    # ------------------------------------------------------------------ conversations: turn after turn
    def _prepare_turn(self, s: ScenarioConfig) -> PreparedScenario:
        """A conversation's turn: its texts (the system prompt, each turn's user message: distinct
        prose, exact in the server's tokens) are cut now, untimed, for every planned round (a warm-up
        or counted conversation); each turn's answer is the server's, as it streamed."""
        run = self.config.run
        rounds = min(run.warmup + run.iterations, MAX_ROUNDS_PREPARED)
        try:
            for rnd in range(rounds):
                if s.turn == 1 and s.system_tokens:
                    self._piece(s, rnd, 0)
                self._piece(s, rnd, s.turn or 1)
            text = self._piece(s, 0, s.turn or 1)[0]
        except RequestFailed as e:
            raise ModelLoadFailed(f"cannot build the prompt of scenario {s.name} with the server's tokenizer: "
                                  f"{e}") from None
        # the turn's prompt as planned: the conversation so far (answers of max_tokens) and its message
        return PreparedScenario(s, prompt_text=text, prompt_tokens=s.depth_before + (s.user_tokens or 0))

    def _piece(self, s: ScenarioConfig, rnd: int, piece: int, user: int | None = None) -> tuple[str, int]:
        """(text, tokens) of a conversation's system prompt (piece 0) or turn ``piece``'s user message
        in its round ``rnd``: exactly system_tokens / user_tokens of the server's tokens (the text alone:
        the BOS, the separators or the chat template come on top), each cut at another place of the
        text, so that no two pieces, rounds, conversations or users share a prefix."""
        key = (_holder(s, user), rnd, piece)
        got = self._pieces.get(key)
        if got is not None:
            return got
        n = s.system_tokens if piece == 0 else (s.user_tokens or 1)
        source = scenario_source_text(s)
        words = source.split()
        # another place per round and piece, and per conversation (keep and off do not share a turn 1)
        k = ((rnd * ((s.turns or 1) + 1) + piece) * 7919 + zlib.crc32(key[0].encode())) % max(len(words), 1)
        source = " ".join(words[k:] + words[:k])
        if self.tokenizer is not None:
            text = exact_length_text(self._text_only(), source, n, chat=False, name=s.name)
        else:  # no tokenizer: about 4 characters a token; usage.prompt_tokens will say
            text = (source * (1 + 4 * n // max(len(source), 1)))[: 4 * n]
        self._pieces[key] = (text, n)
        return text, n

    def _text_only(self) -> "_TextOnly":
        assert self.tokenizer is not None
        if self._text_tok is None or self._text_tok.tok is not self.tokenizer:
            self._text_tok = _TextOnly(self.tokenizer)
        return self._text_tok

    def _turn_prompt(self, s: ScenarioConfig, publish: Publish, user: int | None = None) -> "_Turn":
        """What turn ``s.turn`` sends: turn 1 starts a new round of its conversation (new texts);
        a later turn continues the round, and cannot be sent when the turn before it has no answer.
        Under load each user holds a conversation of its own (its own texts and answers)."""
        name, k = s.conversation or s.name, s.turn or 1
        conv = self._conversations.setdefault((name, user), _Conversation())
        if user is not None:
            name = _holder(s, user)
        if k == 1:
            conv.round += 1
            conv.history = []
            self._say_cache_off(s, publish)
        elif conv.round < 0 or len(conv.history) < k - 1:
            raise RunError(f"not sent: turn {k} of conversation {name} continues turn {k - 1}, which has no answer "
                           f"({'it failed or was stopped' if conv.round >= 0 else 'turn 1 has not run'})")
        try:
            system = self._piece(s, conv.round, 0, user)[0] if s.system_tokens else ""
            said, n_user = self._piece(s, conv.round, k, user)
        except PromptTooLong as e:
            raise RunError(f"not sent: {e}") from None
        history = conv.history[: k - 1]
        tok = self.tokenizer
        if self.config.server.api == "chat":
            messages = [{"role": "system", "content": system}] if system else []
            for u, a in history:
                messages += [{"role": "user", "content": u.text}, {"role": "assistant", "content": a.text}]
            messages.append({"role": "user", "content": said})
            if tok is not None:  # the contents' tokens (the server's chat template comes on top: see usage)
                n = (s.system_tokens if system else 0) + n_user
                for u, a in history:
                    if a.n_tokens is None:
                        a.n_tokens = len(self._text_only().content_tokens(a.text, chat=False))
                    n += u.n_tokens + a.n_tokens  # type: ignore[operator]
            else:
                n = max(1, sum(len(m["content"]) for m in messages) // 4)
            return _Turn(round=conv.round, user=_Said(said, n_user), text=said, n_tokens=n, messages=messages)
        parts = [system] if system else []
        for u, a in history:
            parts += [TURN_SEPARATOR if parts else "", u.text, a.text]
        parts += [TURN_SEPARATOR if parts else "", said]
        text = "".join(parts)
        n = len(tok.tokenize(text, chat=False)) if tok is not None else max(1, len(text) // 4)
        return _Turn(round=conv.round, user=_Said(said, n_user), text=text, n_tokens=n)

    def _turn_body(self, s: ScenarioConfig, turn: "_Turn") -> tuple[str, dict[str, Any]]:
        """The request of a turn. The scenario's cache setting wins over ``server.prefix_cache``:
        llama-server is sent ``cache_prompt: true`` (keep) or ``false`` (off); vLLM, with off, a
        ``cache_salt`` of the request's own, so that no block cached before can serve it."""
        keep = s.cache != "off"
        path, body = self._body(s, turn.text, messages=turn.messages, cache_prompt=keep)
        if not keep and self.kind == "vLLM":
            body["cache_salt"] = f"ttftui-{uuid.uuid4().hex}"
        return path, body

    def _turn_finished(self, s: ScenarioConfig, turn: "_Turn", res: StreamResult, fin: RunFinished,
                       publish: Publish, user: int | None = None) -> RunFinished:
        """The turn's answer joins its conversation; its end says how much of the prompt the server
        took from its cache, by the server's own account (never a number of ours)."""
        name, k = s.conversation or s.name, s.turn or 1
        conv = self._conversations[(name, user)]
        if conv.round == turn.round:  # (a turn 1 started meanwhile would have begun another round)
            answer = "".join(c.text for c in res.chunks if c.kind == "content")
            conv.history = conv.history[: k - 1] + [(turn.user, _Said(answer, None))]
        rm = fin.remote
        assert rm is not None
        depth = rm.usage_prompt_tokens
        if depth is None and rm.server_prompt_n is not None and rm.server_cache_n is not None:
            depth = rm.server_prompt_n + rm.server_cache_n
        if depth is None:
            depth = turn.n_tokens
        cached: int | None = None
        by = "not reported"
        if rm.server_cache_n is not None:  # llama-server's timings
            cached, by = rm.server_cache_n, "server timings"
        else:  # vLLM, SGLang (and a llama-server of today, beside its timings): usage's details
            details = (res.usage or {}).get("prompt_tokens_details")
            v = details.get("cached_tokens") if isinstance(details, dict) else None
            cached, why = _count(v)
            if why is not None:
                self._say_impossible(publish, fin.run_id,
                                     [f"usage.prompt_tokens_details.cached_tokens = {_short(v)} is {why}"])
            elif cached is not None:
                by = "server usage"
        if cached is not None and cached > depth:
            self._say_impossible(publish, fin.run_id, [f"{by}: {cached} cached tokens is more than the prompt's "
                                                       f"{depth}"])
            cached, by = None, "not reported"
        evaluated = rm.server_prompt_n  # llama-server's timings.prompt_n: what it evaluated, by its count
        if cached is None:
            self._say_not_reported(publish)
        timing = ConversationTiming(
            conversation=name, turn=k, turns=s.turns or k, cache=s.cache or "keep", depth=depth,
            cached_tokens=cached or 0, new_tokens=depth - (cached or 0), evaluated_tokens=evaluated,
            counted_by=by)
        return dataclasses.replace(fin, n_prompt_tokens=depth, conversation=timing)

    def _say_cache_off(self, s: ScenarioConfig, publish: Publish) -> None:
        """Once per conversation: ``cache = "off"`` at a server with no per-request switch we know of."""
        name = s.conversation or s.name
        if s.cache != "off" or self.kind in (LLAMA_SERVER, "vLLM") or f"off:{name}" in self._conv_noted:
            return
        self._conv_noted.add(f"off:{name}")
        how = (" (it reuses the longest prefix of its last prompt on its own)" if self.kind == LLAMA_CPP_PYTHON
               else "")
        publish(Notice(t_ns=self.clock.now_ns(), level="warning",
                       message=f"conversation {name}: cache = \"off\" cannot be enforced at {self.kind}: it has no "
                               f"per-request switch for its prefix cache that ttftui knows of{how}; its turns may "
                               "be served from its cache all the same"))

    def _say_not_reported(self, publish: Publish) -> None:
        if "not reported" in self._conv_noted:
            return
        self._conv_noted.add("not reported")
        publish(Notice(t_ns=self.clock.now_ns(), level="info",
                       message=f"{self.kind} gives no account of its prefix cache (no timings.cache_n, no "
                               "usage.prompt_tokens_details.cached_tokens): a conversation turn's cached_tokens is 0 "
                               "with counted_by \"not reported\", which is not a measurement"))

    # ------------------------------------------------------------------ a server lost mid-session
    def _answered(self, *, ok: bool) -> None:
        with self._lock:
            self._n_silent = 0
            self._n_ok += ok

    def _failed(self, e: RequestFailed, prefix: str = "") -> NoReturn:
        """A request that failed: a failed run (RunError), or, when it makes the server lost, the
        session's end (ServerLost)."""
        reason = prefix + str(e)
        if not e.lost:
            self._answered(ok=False)
        elif (lost := self._no_answer(reason)) is not None:
            raise ServerLost(lost) from None
        raise RunError(reason) from None

    def _no_answer(self, reason: str) -> str | None:
        """One more request with no answer at all. The server counts as lost when a request has
        succeeded before, ``server.lost_after`` requests in a row got no answer, and a GET /models
        (``_probe``) gets none either: returns why then, once; None otherwise."""
        k = self.config.server.lost_after
        with self._lock:
            if self._lost is not None:
                return None  # already lost: this one was cut off by it, or raced with it
            self._n_silent += 1
            if not k or not self._n_ok or self._n_silent < k or self._probing:
                return None
            self._probing = True
        try:
            probe = self._probe()
        finally:
            with self._lock:
                self._probing = False
        with self._lock:
            if probe is None:  # it answers: failed runs, not a lost server
                self._n_silent = 0
                return None
            if self._lost is not None:
                return None
            self._lost = (f"the server at {self.ep.url} was lost mid-session: {self._n_silent} requests in a row got "
                          f"no answer (the last: {reason}) and GET /models got none either ({probe}); "
                          f"{self._n_ok} request(s) had succeeded")
            return self._lost

    def _probe(self) -> str | None:
        """None when the server answers GET /models at all (any status), else why not."""
        sc = self.config.server
        t = min(sc.connect_timeout_s, sc.read_timeout_s, 10.0)
        try:
            self.ep.get_json(self.ep.base + "/models", timeout_s=t, total_s=t)
        except RequestFailed as e:
            return str(e) if e.lost else None
        return None

    def _ttft_ns(self, res: StreamResult) -> int | None:
        at = self.config.server.ttft_at
        if at == "first_event":
            return res.at["first_event_ns"]
        if at == "first_choice":
            return res.at["first_choice_ns"]
        if at == "content":
            return res.at["first_content_ns"]
        points = [p for p in (res.at["first_content_ns"], res.at["first_reasoning_ns"]) if p is not None]
        return min(points) if points else None

    def _finished(self, s: ScenarioConfig, run_id: int, warmup: bool, n_prompt: int, res: StreamResult,
                  publish: Publish | None = None, client_lag_ns: int | None = None) -> RunFinished:
        ttft = self._ttft_ns(res)
        if ttft is None:
            if res.stopped:
                raise RunStopped()
            raise RunError(f"the server sent no text (finish_reason {res.finish_reason!r}, {res.n_events} events)")
        fig, problems = server_figures(res.usage, res.timings, res.progress, res.at["end_ns"] / 1e6)
        if problems and publish is not None:
            self._say_impossible(publish, run_id, problems)
        remote = RemoteTiming(
            **res.at, n_events=res.n_events, n_chunks=len(res.chunks), status=res.status,
            finish_reason=res.finish_reason,
            server_kind=self.kind, prompt_counted_by=self.counted_by(s),
            usage_prompt_tokens=fig["usage_prompt_tokens"], usage_completion_tokens=fig["usage_completion_tokens"],
            usage_cached_tokens=fig["usage_cached_tokens"], server_prompt_n=fig["server_prompt_n"], server_prompt_ms=fig["server_prompt_ms"],
            server_cache_n=fig["server_cache_n"], server_predicted_n=fig["server_predicted_n"],
            server_predicted_ms=fig["server_predicted_ms"], n_progress=len(res.progress),
            client_lag_ns=client_lag_ns, **(progress_chunks(res.progress) if fig["progress_ok"] else {}),
        )
        last = res.chunks[-1].t_ns if res.chunks else res.at["end_ns"]
        n_out = fig["usage_completion_tokens"] or len(res.chunks)
        stop_reason = "stopped" if res.stopped else ("eos" if res.finish_reason == "stop" else "max_tokens")
        return RunFinished(
            t_ns=self.clock.rel(res.t0_ns + last), run_id=run_id, scenario=s.name, warmup=warmup,
            n_prompt_tokens=fig["usage_prompt_tokens"] or n_prompt, n_output_tokens=n_out,
            ttft_ns=ttft, e2e_ns=last, tokenize_ns=None, cache_prep_ns=None, prefill_ns=None,
            prefill_chunks_ns=(), prefill_chunk_tokens=(), first_sample_ns=None, first_detok_ns=None,
            stop_reason=stop_reason, remote=remote,  # type: ignore[arg-type]
        )

    def _say_impossible(self, publish: Publish, run_id: int, problems: list[str]) -> None:
        with self._lock:
            k = self._n_noticed
            self._n_noticed += 1
        if k < MAX_FIGURE_NOTICES:
            publish(Notice(t_ns=self.clock.now_ns(), level="warning",
                           message=f"run {run_id}: the server's own account holds impossible values, kept as null: "
                                   f"{'; '.join(problems)}"))
        elif k == MAX_FIGURE_NOTICES:
            publish(Notice(t_ns=self.clock.now_ns(), level="warning",
                           message=f"the server keeps sending impossible values (run {run_id} again); from now on "
                                   "they are kept as null without a notice"))

    def close(self) -> None:
        self.ep.close()


MAX_FIGURE_NOTICES = 20
MAX_COUNT = 100_000_000  # tokens: more than any context holds
MAX_ROUNDS_PREPARED = 64  # a conversation's rounds whose texts prepare cuts up front (the rest: before their turn 1)
TURN_SEPARATOR = "\n\n"  # /completions: before each user message, after the system prompt or the last answer


def _holder(s: ScenarioConfig, user: int | None) -> str:
    """Whose conversation a turn continues: its conversation (NAME@CACHE), or under load one user's
    of it (NAME@CACHE/userU: texts of that user's own, cut at other places)."""
    name = s.conversation or s.name
    return name if user is None else f"{name}/user{user}"


@dataclass
class _Said:
    """A conversation's message: its text and its tokens (the text alone; None until counted)."""

    text: str
    n_tokens: int | None


@dataclass
class _Conversation:
    """A conversation at the server: its round (how many times turn 1 has started, less one) and the
    round's turns so far, each its user message and the server's answer as it streamed."""

    round: int = -1
    history: list[tuple[_Said, _Said]] = field(default_factory=list)


@dataclass
class _Turn:
    """What one turn sends: the prompt (/completions: the whole conversation so far as one text,
    its tokens counted by the server's tokenizer) or ``messages`` (/chat/completions: the contents'
    tokens, the chat template on top), and its new user message."""

    round: int
    user: _Said
    text: str
    n_tokens: int
    messages: list[dict[str, str]] | None = None


class _TextOnly:
    """The server's tokenizer counting a text alone, without the BOS some servers add even there
    (llama-cpp-python's /extras/tokenize): a conversation's pieces are exact in these."""

    def __init__(self, tok: _RemoteTokenizer):
        self.tok = tok
        self.lead: list[int] | None = None

    def content_tokens(self, text: str, *, chat: bool) -> list[int]:
        if self.lead is None:
            self.lead = self.tok.content_tokens("", chat=False)
        ids = self.tok.content_tokens(text, chat=False)
        return ids[len(self.lead):] if self.lead and ids[: len(self.lead)] == self.lead else ids

    tokenize = content_tokens

    def detokenize(self, tokens: list[int], *, chat: bool) -> str:
        return self.tok.detokenize(tokens, chat=chat)


def _count(v: Any) -> tuple[int | None, str | None]:
    """A token count as the server sent it: (the count, None), or (None, why it cannot be one)."""
    if v is None:
        return None, None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None, "not a number"
    if isinstance(v, float) and not math.isfinite(v):
        return None, "not finite"
    if v < 0:
        return None, "negative"
    if v > MAX_COUNT:
        return None, f"more than {MAX_COUNT:,} tokens"
    if v != int(v):
        return None, "not a whole number of tokens"
    return int(v), None


def _ms(v: Any, limit_ms: float) -> tuple[float | None, str | None]:
    """A duration on the server's clock: (ms, None), or (None, why it cannot be one). No part of
    the server's work can take longer than the whole request did on the client's clock."""
    if v is None:
        return None, None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None, "not a number"
    if isinstance(v, float) and not math.isfinite(v):  # (an int of any size is finite: no float() of it)
        return None, "not finite"
    if v < 0:
        return None, "negative"
    if v > limit_ms * 1.01 + 1.0:  # clock rates differ, by far less than this
        return None, f"longer than the whole request ({limit_ms:.1f} ms on the client's clock)"
    return float(v), None


def server_figures(usage: dict[str, Any] | None, timings: dict[str, Any] | None, progress: list[tuple[int, dict]],
                   request_ms: float) -> tuple[dict[str, Any], list[str]]:
    """The server's own account (``usage``, llama-server's ``timings`` and prompt progress),
    validated: impossible values are None, and each one's reason is in the list returned."""
    usage, timings = usage or {}, timings or {}
    details = usage.get("prompt_tokens_details")
    details = details if isinstance(details, dict) else {}
    out: dict[str, Any] = {}
    problems: list[str] = []
    for field, doc, key, check in (
        ("usage_prompt_tokens", usage, "prompt_tokens", _count),
        ("usage_completion_tokens", usage, "completion_tokens", _count),
        ("usage_cached_tokens", details, "cached_tokens", _count),
        ("server_prompt_n", timings, "prompt_n", _count),
        ("server_cache_n", timings, "cache_n", _count),
        ("server_predicted_n", timings, "predicted_n", _count),
        ("server_prompt_ms", timings, "prompt_ms", lambda v: _ms(v, request_ms)),
        ("server_predicted_ms", timings, "predicted_ms", lambda v: _ms(v, request_ms)),
    ):
        v = doc.get(key)
        out[field], why = check(v)
        if why is not None:
            where = "usage" if doc is usage else "usage.prompt_tokens_details" if doc is details else "timings"
            problems.append(f"{where}.{key} = {_short(v)} is {why}")
    cached, prompt = out["usage_cached_tokens"], out["usage_prompt_tokens"]
    if cached is not None and prompt is not None and cached > prompt:
        problems.append(f"usage.prompt_tokens_details.cached_tokens = {cached} is more than its prompt_tokens {prompt}")
        out["usage_cached_tokens"] = None
    out["progress_ok"] = True
    for _, pp in progress:
        for key, check in (("processed", _count), ("time_ms", lambda v: _ms(v, request_ms))):
            v = pp.get(key)
            if check(v)[1] is not None:
                problems.append(f"prompt_progress.{key} = {_short(v)} is {check(v)[1]}")
                out["progress_ok"] = False
                break
        if not out["progress_ok"]:
            break
    return out, problems


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


class QueuePoller:
    """Reads the server's queue every ``interval_s`` while a load scenario's requests run, on a
    connection of its own, and publishes each reading (``ServerSample``). Says once, as a notice,
    when the server has no queue to read."""

    def __init__(self, engine: RemoteEngine, publish: Publish, interval_s: float):
        self.engine, self.publish, self.interval_s = engine, publish, interval_s
        self._stop = threading.Event()
        self._first = threading.Event()  # the first reading has been answered (or given up)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "QueuePoller":
        eng = self.engine
        if self.interval_s <= 0:
            return self
        if eng.queue_source is None:
            if not eng._queue_noted:
                eng._queue_noted = True
                self.publish(Notice(t_ns=eng.clock.now_ns(), level="info",
                                    message=f"the server's queue is not sampled: {eng.queue_why}; the client's "
                                            "clock still shows the wait (server_wait_ms before the response "
                                            "headers, the unaccounted rest after them)"))
            return self
        self._thread = threading.Thread(target=self._loop, name="ttftui-queue", daemon=True)
        self._thread.start()
        # the first reading before any request is sent: the counters' starting point (untimed; at most
        # FINAL_READING_S, a server slow to answer it does not hold the load back longer)
        self._first.wait(FINAL_READING_S)
        return self

    def _loop(self) -> None:
        ep = self.engine._endpoint()
        try:
            while True:
                sample = self.engine.read_queue(ep, stop=self._stop.is_set)
                if sample is not None:
                    self.publish(sample)
                self._first.set()
                if self._stop.wait(self.interval_s):
                    break
            # one reading after the last request: the server's counters (its prefix cache) as they
            # stand at the end, so that the phase's difference holds every counted request
            deadline = time.monotonic() + FINAL_READING_S  # a lost server does not hold the session's end
            sample = self.engine.read_queue(ep, stop=lambda: time.monotonic() > deadline)
            if sample is not None:
                self.publish(sample)
        finally:
            ep.close()

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def progress_chunks(progress: list[tuple[int, dict[str, Any]]]) -> dict[str, tuple]:
    """llama-server's prompt-progress events (cumulative ``processed`` tokens and ``time_ms`` on its
    clock, one per batch it evaluated) as the batches themselves: the remote counterpart of the
    local engine's prefill chunks."""
    ms: list[float] = []
    toks: list[int] = []
    done, at = 0, 0.0
    for _, pp in progress:
        n, t = _int(pp.get("processed")), _float(pp.get("time_ms"))
        if n is None or t is None or n < done or t < at:
            return {}  # not a sequence we understand: nothing claimed
        if n > done:
            toks.append(n - done)
            ms.append(t - at)
        done, at = n, t
    return {"server_chunks_ms": tuple(ms), "server_chunk_tokens": tuple(toks)} if toks else {}


def prometheus_gauges(text: str) -> dict[str, float]:
    """Prometheus text exposition: metric name -> value, summed over its label sets (one per model
    on a server with several); comments and lines that are not samples are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, rest = line.rpartition("}") if "}" in line else line.partition(" ")
        name = head.split("{", 1)[0].strip()
        try:
            v = float(rest.split()[0])
        except (ValueError, IndexError):
            continue
        if name:
            out[name] = out.get(name, 0.0) + v
    return out


class RemoteWorker(Worker):
    """A client of its own (one kept-alive connection) sharing the engine's prompts and facts."""

    def __init__(self, engine: RemoteEngine, user: int | None = None):
        self.engine, self.user = engine, user
        self.ep = engine._endpoint()

    def run(self, prepared: PreparedScenario, run_id: int, warmup: bool, publish: Publish,
            stop: threading.Event, due_ns: int | None = None) -> RunFinished:
        return self.engine.request(self.ep, prepared, run_id, warmup, publish, stop, due_ns, self.user)

    def close(self) -> None:
        self.ep.close()


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 2**62 else None


def _float(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e300 else None


def describe_url(url: str) -> str:
    u = urlsplit(url)
    return f"{u.hostname}:{u.port or (443 if u.scheme == 'https' else 80)}"
