"""Conversations against a server (``kind = "conversation"``, ttftui --url): turn after turn, each
sending the conversation so far, with the server's cache kept or not, and how much of each prompt
the server took from its cache read from its own account.

Against a small llama-server-like (or vLLM-like) server that keeps a prefix cache and says so
(below), llama-cpp-python's own server running the demo model for real (it reuses the longest
prefix of its last prompt but reports nothing of it: said so), and llama.cpp's llama-server where
its binary is found (TTFTUI_LLAMA_SERVER or llama-server on PATH). The runs are driven through the
engine itself (prepare every turn, run the turns in order), except the one CLI test at the end,
which runs them through the session runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from ttftui.core.config import Config
from ttftui.core.events import Notice, RunFinished
from ttftui.measure.engine.base import RunError
from ttftui.measure.remote.engine import TURN_SEPARATOR, RemoteEngine

from .conftest import cli, free_port, wait_ready
from .fake_server import JsonHandler, LoopbackServer
from .test_remote import _amx, _llama_server_binary

BOS = 1


def _ids(text: str) -> list[int]:
    return [ord(c) + 2 for c in text]  # one token a character: lengths are easy to check


def answer_char_tokenizer(h: JsonHandler, body: dict[str, Any]) -> bool:
    """llama-server's /tokenize and /detokenize, a token a character (``_ids``); False: another path."""
    if h.path == "/tokenize":
        h._json(200, {"tokens": ([BOS] if body.get("add_special") else []) + _ids(body["content"])})
    elif h.path == "/detokenize":
        h._json(200, {"content": "".join(chr(t - 2) for t in body["tokens"] if t >= 2)})
    else:
        return False
    return True


def _lcp(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ConversationServer(LoopbackServer):
    """An OpenAI-compatible server with a prefix cache and an account of it, over a tokenizer of one
    token a character. ``flavour``: "llama" (llama-server: /props, /tokenize, one slot whose cache
    holds the last prompt and its answer, reused when the request says ``cache_prompt``; its
    ``timings`` say ``cache_n`` and ``prompt_n``) or "vllm" (/version, no tokenizer endpoint, every
    prompt cached in blocks of 16 under its ``cache_salt``; ``usage.prompt_tokens_details``).
    "plain": /version too, ``usage`` with nothing of a cache. ``fail``: completion requests (1-based)
    answered with HTTP 500; ``lies``: completion request -> the cached_tokens a "vllm" one says, of its
    prompt's length."""

    def __init__(self, flavour: str = "llama", fail: tuple[int, ...] = (), lies: dict[int, Any] | None = None):
        self.flavour, self.fail, self.lies = flavour, fail, lies or {}
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[str] = []
        self.slot: list[int] = []  # llama: the slot's cache
        self.blocks: list[tuple[str | None, list[int]]] = []  # vllm: (salt, tokens) cached
        self.lock = threading.Lock()
        outer = self

        class Handler(JsonHandler):

            def do_GET(self) -> None:
                self._lookalike_get("conversation-model", props=outer.flavour == "llama",
                                    version=outer.flavour in ("vllm", "plain"))

            def do_POST(self) -> None:
                body = self._body()
                if outer.flavour == "llama" and answer_char_tokenizer(self, body):
                    pass
                elif self.path.endswith("/completions"):
                    self._complete(body)
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def _complete(self, body: dict[str, Any]) -> None:
                with outer.lock:
                    outer.bodies.append(body)
                    nth = len(outer.bodies)
                    if nth in outer.fail:
                        self._json(500, {"error": {"message": "the slot crashed"}})
                        return
                    if "messages" in body:
                        text = "".join(f"<|{m['role']}|>{m['content']}<|end|>" for m in body["messages"])
                        text += "<|assistant|>"
                    else:
                        text = body["prompt"]
                    prompt = [BOS] + _ids(text)
                    answer = "".join(f" r{nth}w{i}" for i in range(body["max_tokens"]))
                    outer.answers.append(answer)
                    if outer.flavour == "llama":
                        cache_n = _lcp(outer.slot, prompt) if body.get("cache_prompt") else 0
                        cache_n = min(cache_n, len(prompt) - 1)  # the last prompt token is evaluated again
                        outer.slot = prompt + _ids(answer)
                    else:
                        salt = body.get("cache_salt")
                        best = max([_lcp(t, prompt) for s, t in outer.blocks if s == salt], default=0)
                        cache_n = min(best, len(prompt) - 1) // 16 * 16
                        outer.blocks.append((salt, prompt + _ids(answer)))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                chat = "messages" in body
                for i in range(body["max_tokens"]):
                    piece = f" r{nth}w{i}"
                    ch = {"index": 0, "delta": {"content": piece}} if chat else {"index": 0, "text": piece}
                    self.wfile.write(b"data: " + json.dumps({"choices": [ch]}).encode() + b"\n\n")
                end: dict[str, Any] = {
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "length"} if chat else
                                {"index": 0, "text": "", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": len(prompt), "completion_tokens": body["max_tokens"]}}
                if outer.flavour == "llama":
                    end["timings"] = {"cache_n": cache_n, "prompt_n": len(prompt) - cache_n, "prompt_ms": 0.01,
                                      "predicted_n": body["max_tokens"], "predicted_ms": 0.01}
                elif outer.flavour == "vllm":
                    lie = outer.lies.get(nth)
                    end["usage"]["prompt_tokens_details"] = {"cached_tokens": cache_n if lie is None else
                                                             lie(len(prompt))}
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

        self.serve(Handler)


TALK = {"name": "talk", "kind": "conversation", "turns": 3, "user_tokens": 24, "system_tokens": 16, "max_tokens": 4}


def _config(url: str, cache: Any = ("keep", "off"), **server: Any) -> Config:
    return Config.model_validate({"server": {"url": url, **server}, "run": {"iterations": 1, "warmup": 0},
                                  "scenarios": [{**TALK, "cache": list(cache)}]})


class Driver:
    """The engine, driven the way the session runs a conversation: every turn prepared up front, then
    turn 1..T of a conversation, round after round, then the next conversation."""

    def __init__(self, config: Config):
        self.config = config
        self.engine = RemoteEngine(config)
        self.engine.load()
        self.prepared = {s.name: self.engine.prepare(s, 0) for s in config.scenarios}
        self.events: list[Any] = []
        self.run_id = 0

    def turn(self, name: str) -> RunFinished:
        self.run_id += 1
        return self.engine.run(self.prepared[name], self.run_id, False, self.events.append, threading.Event())

    def conversation(self, conv: str, rounds: int = 1) -> list[list[RunFinished]]:
        turns = [s.name for s in self.config.scenarios if s.conversation == conv]
        return [[self.turn(n) for n in turns] for _ in range(rounds)]

    def notices(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, Notice)]

    def close(self) -> None:
        self.engine.close()


def conversations(srv: "ConversationServer", *convs: str, **config: Any) -> tuple[Driver, list[list[RunFinished]]]:
    """Each conversation of ``convs`` held once against ``srv``, in order; the driver closed after."""
    d = Driver(_config(srv.url, **config))
    try:
        return d, [d.conversation(c)[0] for c in convs]
    finally:
        d.close()


def _conv(fins: list[RunFinished]) -> list[dict[str, Any]]:
    out = []
    for f in fins:
        assert f.conversation is not None
        out.append({k: getattr(f.conversation, k) for k in ("turn", "depth", "cached_tokens", "new_tokens",
                                                            "evaluated_tokens", "counted_by")})
    return out


# ---------------------------------------------------------------------- a llama-server-like server
def test_the_cache_kept_rises_turn_by_turn_and_off_stays_at_zero_by_the_servers_account():
    """The scenario's cache wins over server.prefix_cache (off here): keep sends cache_prompt true,
    off false. Each turn's prompt is the last one, its answer as it streamed, and a new user message
    of exactly user_tokens; the server's cache_n rises turn by turn with keep and is 0 with off."""
    with ConversationServer("llama") as srv:
        d, (keep, off) = conversations(srv, "talk@keep", "talk@off")
    assert [b["cache_prompt"] for b in srv.bodies] == [True] * 3 + [False] * 3
    prompts = [b["prompt"] for b in srv.bodies]
    for conv in (prompts[:3], prompts[3:]):
        assert conv[0].count(TURN_SEPARATOR) == 1
        system, user1 = conv[0].split(TURN_SEPARATOR)
        assert (len(system), len(user1)) == (16, 24)  # exact, in the server's tokens (a character each)
    for k in (1, 2, 4, 5):  # each turn continues the last: its prompt, its answer, a separator, a new message
        head = prompts[k - 1] + srv.answers[k - 1] + TURN_SEPARATOR
        assert prompts[k].startswith(head) and len(prompts[k]) == len(head) + 24
    assert len({p[:40] for p in (prompts[0], prompts[3])}) == 2  # keep and off: other texts (a cold turn 1)

    k1, k2, k3 = _conv(keep)
    assert [c["depth"] for c in (k1, k2, k3)] == [1 + len(p) for p in prompts[:3]]  # usage.prompt_tokens: BOS too
    assert k1["cached_tokens"] == 0 and k1["new_tokens"] == k1["depth"]
    for prev, cur in ((k1, k2), (k2, k3)):  # everything but the new message (and its separator) came from the cache
        assert cur["cached_tokens"] == prev["depth"] + 4 * len(" r1w0") and cur["new_tokens"] == 2 + 24
        assert cur["cached_tokens"] > prev["cached_tokens"]
    for c in (k1, k2, k3):
        assert c["evaluated_tokens"] == c["new_tokens"] and c["counted_by"] == "server timings"
    for c in _conv(off):
        assert c["cached_tokens"] == 0 and c["new_tokens"] == c["evaluated_tokens"] == c["depth"]
        assert c["counted_by"] == "server timings"
    for f, s in zip(keep + off, d.config.scenarios):
        assert f.scenario == s.name and f.n_prompt_tokens == f.conversation.depth  # type: ignore[union-attr]
        c = f.conversation
        assert c is not None and (c.conversation, c.turns, c.cache) == (s.conversation, 3, s.cache)
    assert d.notices() == []  # the server gave its account: nothing to say


def test_the_scenarios_cache_wins_over_server_prefix_cache_on():
    with ConversationServer("llama") as srv:
        d = Driver(_config(srv.url, cache=("off",), prefix_cache="on"))
        try:
            (off,) = d.conversation("talk@off")
        finally:
            d.close()
    assert [b["cache_prompt"] for b in srv.bodies] == [False] * 3
    assert [c["cached_tokens"] for c in _conv(off)] == [0, 0, 0]


def test_each_round_is_a_new_conversation_and_a_turn_without_its_predecessor_is_not_sent():
    """Turn 1 starts a round (a warm-up or counted conversation) with texts of its own: its cache is
    cold. A turn whose predecessor failed is a failed run (not sent); the next turn 1 starts afresh."""
    with ConversationServer("llama", fail=(5,)) as srv:  # round 2's turn 2 fails
        d = Driver(_config(srv.url, cache=("keep",)))
        try:
            (r1,) = d.conversation("talk@keep")
            t1 = d.turn("talk@keep@t1")
            with pytest.raises(RunError, match="HTTP 500"):
                d.turn("talk@keep@t2")
            with pytest.raises(RunError, match="not sent: turn 3 of conversation talk@keep continues turn 2, "
                                               "which has no answer"):
                d.turn("talk@keep@t3")
            (r3,) = d.conversation("talk@keep")
        finally:
            d.close()
    assert len(srv.bodies) == 8  # the turn not sent never reached the server
    first = [b["prompt"] for b in srv.bodies if b["prompt"].count(TURN_SEPARATOR) == 1]
    assert len(first) == 3 and len({p[:16] for p in first}) == 3  # three rounds, three system prompts
    assert t1.conversation.cached_tokens < 8  # type: ignore[union-attr]  # round 2 is not served from round 1
    assert [c["cached_tokens"] > 16 for c in _conv(r3)] == [False, True, True]
    assert _conv(r1)[1]["new_tokens"] == _conv(r3)[1]["new_tokens"] == 26

    with ConversationServer("llama") as srv2:
        d = Driver(_config(srv2.url, cache=("keep",)))
        try:
            with pytest.raises(RunError, match="turn 1 has not run"):
                d.turn("talk@keep@t2")
        finally:
            d.close()
    assert srv2.bodies == []


def test_chat_sends_the_conversation_as_messages():
    with ConversationServer("llama") as srv:
        d, (keep,) = conversations(srv, "talk@keep", cache=("keep",), api="chat")
    roles = [[m["role"] for m in b["messages"]] for b in srv.bodies]
    assert roles == [["system", "user"], ["system", "user", "assistant", "user"],
                     ["system", "user", "assistant", "user", "assistant", "user"]]
    last = srv.bodies[-1]["messages"]
    assert [m["content"] for m in last[2::2]] == srv.answers[:2]  # the answers as they streamed
    assert last[:4] == srv.bodies[1]["messages"] and len(last[0]["content"]) == 16
    assert all(len(m["content"]) == 24 for m in last[1::2])
    c = _conv(keep)
    assert c[0]["cached_tokens"] == 0 and c[1]["cached_tokens"] > c[0]["depth"] > 0
    assert c[2]["cached_tokens"] > c[1]["depth"]
    assert keep[0].remote.prompt_counted_by.startswith("server tokenizer, content only")  # type: ignore[union-attr]


# ---------------------------------------------------------------------- a vLLM-like server
def test_vllm_off_salts_every_request_and_its_usage_is_the_account():
    with ConversationServer("vllm") as srv:
        d, (keep, off) = conversations(srv, "talk@keep", "talk@off")
    assert d.engine.kind == "vLLM" and d.engine.tokenizer is None
    assert all("cache_salt" not in b and "cache_prompt" not in b for b in srv.bodies[:3])
    salts = [b["cache_salt"] for b in srv.bodies[3:]]
    assert len(set(salts)) == 3 and all(s.startswith("ttftui-") for s in salts)
    k = _conv(keep)
    assert k[0]["cached_tokens"] == 0 and 0 < k[1]["cached_tokens"] < k[2]["cached_tokens"]
    assert all(c["counted_by"] == "server usage" and c["evaluated_tokens"] is None for c in k + _conv(off))
    assert [c["cached_tokens"] for c in _conv(off)] == [0, 0, 0]
    assert all(c["depth"] == 1 + len(b["prompt"]) for c, b in zip(k, srv.bodies))  # usage.prompt_tokens
    assert d.notices() == []


def test_an_impossible_or_missing_cache_account_is_not_reported_with_a_notice():
    lies = {2: lambda depth: depth + 1, 3: lambda depth: -3}  # turn 2: more than its prompt; turn 3: negative
    with ConversationServer("vllm", lies=lies) as srv:
        d, (keep,) = conversations(srv, "talk@keep", cache=("keep",))
    c = _conv(keep)
    assert c[0]["counted_by"] == "server usage"
    for x in c[1:]:
        assert (x["cached_tokens"], x["new_tokens"], x["counted_by"]) == (0, x["depth"], "not reported")
    notes = d.notices()
    assert any(f"{c[1]['depth'] + 1} cached tokens is more than the prompt's {c[1]['depth']}" in n for n in notes)
    assert any("usage.prompt_tokens_details.cached_tokens = -3 is negative" in n for n in notes)
    assert sum("gives no account of its prefix cache" in n for n in notes) == 1

    with ConversationServer("plain") as srv:  # usage, nothing of a cache
        d, (keep,) = conversations(srv, "talk@keep", cache=("keep",))
    assert all(x["counted_by"] == "not reported" and x["cached_tokens"] == 0 for x in _conv(keep))
    assert [n for n in d.notices() if "gives no account of its prefix cache" in n]


# ---------------------------------------------------------------------- llama-cpp-python's server
@pytest.mark.model
def test_llama_cpp_python_conversations_say_its_cache_is_not_reported(lcp_server):
    """llama-cpp-python's server reports no usage and no timings in a stream: each turn's depth is the
    prompt's length by its own tokenizer, growing turn by turn, its cache "not reported" (with a
    notice), and cache = off is said to be unenforceable there. Its own log shows that it did reuse
    the conversation's prefix: a cached_tokens of 0 there is not a measurement."""
    cfg = Config.model_validate({"server": {"url": lcp_server}, "run": {"iterations": 1, "warmup": 0},
                                 "scenarios": [{**TALK, "user_tokens": 32, "max_tokens": 8, "cache": ["keep", "off"]}]})
    d = Driver(cfg)
    try:
        (keep,) = d.conversation("talk@keep")
        (off,) = d.conversation("talk@off")
        tok = d.engine.tokenizer
        assert tok is not None
        sys_text = d.engine._pieces[("talk@keep", 0, 0)][0]
        users = [d.engine._pieces[("talk@keep", 0, k)][0] for k in (1, 2, 3)]
        assert len(tok.content_tokens(sys_text, chat=False)) == 16
        assert [len(tok.content_tokens(u, chat=False)) for u in users] == [32, 32, 32]
        first = sys_text + TURN_SEPARATOR + users[0]
        assert keep[0].conversation.depth == len(tok.tokenize(first, chat=False))  # type: ignore[union-attr]
    finally:
        d.close()
    assert d.engine.kind == "llama-cpp-python server"
    for fins in (keep, off):
        c = _conv(fins)
        assert all(x["counted_by"] == "not reported" and x["cached_tokens"] == 0 and x["evaluated_tokens"] is None
                   and x["new_tokens"] == x["depth"] for x in c)
        assert c[0]["depth"] >= 16 + 32 and all(b["depth"] - a["depth"] >= 32 + 1 for a, b in zip(c, c[1:]))
        assert [f.n_prompt_tokens for f in fins] == [x["depth"] for x in c]
        assert all(f.remote.usage_prompt_tokens is None and f.remote.server_cache_n is None  # type: ignore[union-attr]
                   for f in fins)
    notes = d.notices()
    assert sum("gives no account of its prefix cache" in n for n in notes) == 1
    assert sum('conversation talk@off: cache = "off" cannot be enforced at llama-cpp-python server' in n
               for n in notes) == 1
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"lcp-server-{lcp_server.rsplit(':', 1)[1].split('/')[0]}.log"
    if log.exists():  # its own word (verbose): every later turn reused the conversation's prefix, off's too
        hits = [int(n) for n in re.findall(r"Llama\.generate: (\d+) prefix-match hit", log.read_text())]
        assert sum(n >= keep[0].conversation.depth for n in hits) >= 4  # type: ignore[union-attr]


# ---------------------------------------------------------------------- llama.cpp's llama-server
@pytest.mark.model
@pytest.mark.skipif(_llama_server_binary() is None, reason="llama.cpp's llama-server binary not found "
                    "(set TTFTUI_LLAMA_SERVER or build it: benchmarks/README.md)")
def test_llama_servers_cache_n_rises_with_the_cache_kept_and_stays_zero_with_it_off(model_path):
    port = free_port()
    cmd = [_llama_server_binary(), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-t", "2",
           "-c", "2048", "-np", "1"] + (["--no-repack"] if _amx() else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        wait_ready(url, proc)
        for api in ("completions", "chat"):
            d = Driver(_config(url, api=api))
            try:
                (keep,) = d.conversation("talk@keep")
                (off,) = d.conversation("talk@off")
            finally:
                d.close()
            k, o = _conv(keep), _conv(off)
            assert all(c["counted_by"] == "server timings" for c in k + o), (api, k, o)
            assert k[0]["cached_tokens"] <= 1  # a cold turn 1 (its BOS at most)
            assert k[0]["cached_tokens"] < k[1]["cached_tokens"] < k[2]["cached_tokens"], (api, k)
            assert k[1]["cached_tokens"] >= k[0]["depth"] - 2, (api, k)  # the last turn's prompt, from the cache
            assert all(c["new_tokens"] == c["evaluated_tokens"] for c in k + o), (api, k, o)
            assert all(c["cached_tokens"] == 0 and c["evaluated_tokens"] == c["depth"] for c in o), (api, o)
            assert d.notices() == []
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------- the whole session, headless
def test_a_headless_session_runs_conversations_turn_by_turn(tmp_path):
    """The session runs a conversation's turns in order (turn 1..T of a round, the warm-up rounds
    first: SessionRunner._run_conversation), conversation after conversation. Warm-up 1 and 2
    counted rounds of each conversation: 3 rounds in all, each a new conversation."""
    cfg = tmp_path / "conv.toml"
    cfg.write_text('[[scenarios]]\nname = "talk"\nkind = "conversation"\nturns = 3\nuser_tokens = 24\n'
                   'system_tokens = 16\nmax_tokens = 4\ncache = ["keep", "off"]\n')
    out = tmp_path / "conv.json"
    with ConversationServer("llama") as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--config", str(cfg), "--set", "run.warmup=1",
                "--iterations", "2", "-o", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["failed_runs"] == []
    runs = report["runs"]
    assert [r["scenario"] for r in runs] == [f"talk@{c}@t{k}" for c in ("keep", "off") for _ in range(3)
                                             for k in (1, 2, 3)]
    assert [b["cache_prompt"] for b in srv.bodies] == [True] * 9 + [False] * 9
    for i in range(0, 18, 3):
        turns = [run["conversation"] for run in runs[i:i + 3]]
        assert [t["turn"] for t in turns] == [1, 2, 3]
        if turns[0]["cache"] == "keep":
            assert turns[0]["cached_tokens"] < 8 < turns[1]["cached_tokens"] < turns[2]["cached_tokens"]
            assert [t["new_tokens"] for t in turns[1:]] == [26, 26]
        else:
            assert [t["cached_tokens"] for t in turns] == [0, 0, 0]
        assert all(t["counted_by"] == "server timings" for t in turns)
    assert {"talk@keep@t3", "talk@off@t3"} <= set(report["summary"])
