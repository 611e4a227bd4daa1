"""Conversations under load (``kind = "conversation"`` with ``concurrency = N``, ttftui --url): N users
at once, each a worker holding its own conversation turn after turn, with ``think_time_ms`` between
its turns; every request a run of the turn it sends (NAME@CACHE@tK), the family's throughput in the
report's load section (docs/conversations.md, "Under load").

Against a llama-server-like server whose prefix cache holds every prompt it was sent (as if it had
a slot per user: ``-np N``), and against llama.cpp's llama-server where its binary is found."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any

import pytest

from ttftui.analysis.load import plan_for
from ttftui.core.config import Config
from ttftui.measure.remote.engine import TURN_SEPARATOR

from .conftest import cli, free_port, wait_ready
from .fake_server import JsonHandler, LoopbackServer
from .test_remote import _amx, _llama_server_binary
from .test_remote_conversation import BOS, _ids, _lcp, answer_char_tokenizer

THINK_MS = 100


class UsersServer(LoopbackServer):
    """llama-server's /props, /tokenize and /detokenize (a token a character) and streamed /completions, whose cache
    keeps every prompt and answer it was sent with ``cache_prompt`` and serves the longest prefix of
    any (its ``timings.cache_n``). Each completion is recorded: its body, when it arrived and when its
    answer ended (this server's clock), and the cache_n it said."""

    def __init__(self, delay_s: float = 0.02):
        self.records: list[dict[str, Any]] = []
        self.cache: list[list[int]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(JsonHandler):

            def do_GET(self) -> None:
                self._lookalike_get("users-model")

            def do_POST(self) -> None:
                body = self._body()
                if answer_char_tokenizer(self, body):
                    pass
                elif self.path.endswith("/completions"):
                    self._complete(body)
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def _complete(self, body: dict[str, Any]) -> None:
                t_in = time.monotonic_ns()
                prompt = [BOS] + _ids(body["prompt"])
                with outer.lock:
                    nth = len(outer.records) + 1
                    answer = "".join(f" r{nth}w{i}" for i in range(body["max_tokens"]))
                    cache_n = 0
                    if body.get("cache_prompt"):
                        cache_n = min(max([_lcp(c, prompt) for c in outer.cache], default=0), len(prompt) - 1)
                        outer.cache.append(prompt + _ids(answer))
                    rec = {"body": body, "answer": answer, "cache_n": cache_n, "t_in": t_in}
                    outer.records.append(rec)
                time.sleep(delay_s)  # a while in flight: the users overlap
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for i in range(body["max_tokens"]):
                    ch = {"index": 0, "text": f" r{nth}w{i}"}
                    self.wfile.write(b"data: " + json.dumps({"choices": [ch]}).encode() + b"\n\n")
                end = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                       "usage": {"prompt_tokens": len(prompt), "completion_tokens": body["max_tokens"]},
                       "timings": {"cache_n": cache_n, "prompt_n": len(prompt) - cache_n, "prompt_ms": 0.01,
                                   "predicted_n": body["max_tokens"], "predicted_ms": 0.01}}
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
                self.wfile.flush()
                rec["t_out"] = time.monotonic_ns()  # the answer's end left before the client could read it

        self.serve(Handler)


TALK = ('[[scenarios]]\nname = "talk"\nkind = "conversation"\nturns = 3\nuser_tokens = 24\nsystem_tokens = 16\n'
        f'max_tokens = 4\ncache = ["keep", "off"]\nconcurrency = 2\nthink_time_ms = {THINK_MS}\n')


# ---------------------------------------------------------------------- config and plan
def test_a_conversation_takes_concurrency_and_think_time_but_no_rate():
    url = {"server": {"url": "http://127.0.0.1:9/v1"}, "run": {"warmup": 1, "iterations": 2}}
    conv = {"name": "talk", "kind": "conversation", "turns": 3, "user_tokens": 8, "max_tokens": 2}
    cfg = Config.model_validate({**url, "scenarios": [{**conv, "concurrency": 2, "think_time_ms": 50}]})
    t2 = cfg.scenario("talk@keep@t2")
    plan = plan_for(cfg.run, t2)
    assert plan is not None and (plan.mode, plan.concurrency, plan.turns, plan.think_ms) == ("closed", 2, 3, 50)
    assert (plan.n_warmup, plan.n_counted) == (2, 4)  # one turn's requests: run.warmup / run.iterations per user
    assert "2 users" in plan.describe() and "50 ms" in plan.describe()
    swept = Config.model_validate({**url, "scenarios": [{**conv, "concurrency": [1, 2]}]})
    assert [s.name for s in swept.scenarios][:4] == ["talk@c1@keep@t1", "talk@c1@keep@t2", "talk@c1@keep@t3",
                                                     "talk@c2@keep@t1"]
    for bad, match in (({"rate": 1.0}, "no rate"), ({"concurrency": 2, "requests": 4}, "no requests"),
                       ({"think_time_ms": 10}, "set concurrency")):
        with pytest.raises(ValueError, match=match):
            Config.model_validate({**url, "scenarios": [{**conv, **bad}]})
    with pytest.raises(ValueError, match="think_time_ms applies to"):
        Config.model_validate({**url, "scenarios": [{"name": "s", "prompt_tokens": 8, "max_tokens": 2,
                                                     "concurrency": 2, "think_time_ms": 10}]})


# ---------------------------------------------------------------------- a session against the fake
def test_two_users_each_hold_their_own_conversations_with_a_think_time(tmp_path):
    """2 users x 2 conversations x 3 turns, kept and off: each request sends its own user's
    conversation so far (never another's), a user's turns are in order and at least think_time_ms
    apart, its cache_n rises turn by turn with keep (only its own prefix) and is 0 with off; the
    report has each turn's statistics and the family's load figures."""
    cfg = tmp_path / "talk.toml"
    cfg.write_text(TALK)
    out = tmp_path / "talk.json"
    with UsersServer() as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--config", str(cfg), "--set", "run.warmup=0",
                "--iterations", "2", "-o", str(out), timeout=300)
    assert r.returncode == 0, r.stderr
    recs = srv.records
    assert len(recs) == 2 * 2 * 2 * 3
    by_user: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for rec in recs:  # arrival order
        by_user.setdefault((rec["body"]["user"], rec["body"]["cache_prompt"]), []).append(rec)
    assert sorted(by_user) == [("ttftui-user-0", False), ("ttftui-user-0", True),
                               ("ttftui-user-1", False), ("ttftui-user-1", True)]
    openings = []
    for (user, keep), rs in by_user.items():
        assert len(rs) == 6, user  # 2 conversations of 3 turns
        for c in (rs[:3], rs[3:]):
            prompts = [x["body"]["prompt"] for x in c]
            system, said = prompts[0].split(TURN_SEPARATOR)
            assert (len(system), len(said)) == (16, 24)
            openings.append(system)
            for k in (1, 2):  # its own conversation so far: its last prompt, that prompt's answer, a new message
                head = prompts[k - 1] + c[k - 1]["answer"] + TURN_SEPARATOR
                assert prompts[k].startswith(head) and len(prompts[k]) == len(head) + 24, (user, k)
                # in order, and the user thought at least think_time_ms between an answer and its next turn
                assert c[k]["t_in"] - c[k - 1]["t_out"] >= THINK_MS * 1_000_000, (user, k)
            cached = [x["cache_n"] for x in c]
            if keep:
                assert cached[0] < 8 < cached[1] < cached[2], (user, cached)  # a cold turn 1, then its own prefix
                assert cached[1] == len(prompts[0]) + 1 + len(c[0]["answer"]), (user, cached)
            else:
                assert cached == [0, 0, 0]
    assert len(set(openings)) == len(openings)  # no two users' (or conversations') texts begin alike

    report = json.loads(out.read_text())
    assert report["failed_runs"] == []
    for t in (1, 2, 3):
        for c in ("keep", "off"):
            m = report["summary"][f"talk@{c}@t{t}"]["metrics"]
            assert m["ttft_ms"]["n"] == 4  # 2 users x 2 conversations, a run each
            hit = m["cache_hit_pct"]["p50"]
            assert (hit > 50 if c == "keep" and t > 1 else hit < 10), (c, t, hit)
    for run in report["runs"]:
        conv = run["conversation"]
        if conv["cache"] == "keep" and conv["turn"] > 1:
            assert conv["new_tokens"] == 26 and conv["cached_tokens"] > 8  # only its own new message evaluated
        if conv["cache"] == "off":
            assert conv["cached_tokens"] == 0
    load = report["load"]
    assert sorted(load) == ["talk@keep", "talk@off"]
    for f in load.values():
        assert (f["mode"], f["concurrency"], f["n_requests"], f["n_ok"]) == ("closed", 2, 12, 12)
        assert 1 <= f["max_in_flight"] <= 2 and f["request_rate"] > 0


# ---------------------------------------------------------------------- llama.cpp's llama-server
@pytest.mark.model
@pytest.mark.skipif(_llama_server_binary() is None, reason="llama.cpp's llama-server binary not found "
                    "(set TTFTUI_LLAMA_SERVER or build it: benchmarks/README.md)")
def test_two_users_against_llama_server_reuse_their_own_prefixes(model_path, tmp_path):
    """Two slots (-np 2) for two users: each user's later turns come from its slot's cache by
    llama-server's own account (timings.cache_n), with the users interleaved."""
    port = free_port()
    cmd = [_llama_server_binary(), "-m", str(model_path), "--host", "127.0.0.1", "--port", str(port), "-t", "2",
           "-c", "4096", "-np", "2"] + (["--no-repack"] if _amx() else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    cfg = tmp_path / "talk.toml"
    cfg.write_text(TALK.replace('cache = ["keep", "off"]', 'cache = "keep"'))
    out = tmp_path / "talk.json"
    try:
        wait_ready(url, proc)
        r = cli("--headless", "-q", "--url", url, "--config", str(cfg), "--set", "run.warmup=0",
                "--iterations", "2", "-o", str(out), timeout=600)
    finally:
        proc.terminate()
        proc.wait(10)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["failed_runs"] == []
    convs = [run["conversation"] for run in report["runs"]]
    assert all(c["counted_by"] == "server timings" for c in convs)
    assert all(c["cached_tokens"] <= 1 for c in convs if c["turn"] == 1)  # a cold turn 1 (its BOS at most)
    later = [c for c in convs if c["turn"] > 1]
    # most later turns come from the user's own slot (a new conversation may take the slot of a user
    # that is thinking: then that user's next turn is cold)
    hits = [c for c in later if c["cached_tokens"] >= c["depth"] // 2]
    assert len(hits) >= len(later) // 2, convs
    for t in (1, 2, 3):
        m = report["summary"][f"talk@keep@t{t}"]["metrics"]
        assert m["ttft_ms"]["n"] == 4 and "cache_hit_pct" in m
    f = report["load"]["talk@keep"]
    assert (f["mode"], f["concurrency"], f["n_ok"]) == ("closed", 2, 12)
