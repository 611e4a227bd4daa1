"""Real traffic: request traces (Mooncake's JSONL, as AIPerf and vLLM's benchmarks replay it), a
dataset of the user's own prompts, seeded length distributions. The files are read bounded and line
by line (a bad line is one error naming it), a trace's arrivals are its timestamps (over its speed),
its shared hash_ids are shared prompt text, and the server's own account of its prefix cache is in
the report (checked against a llama-server lookalike that keeps a prefix cache and says so)."""

from __future__ import annotations

import json
import re
import statistics
import threading
from pathlib import Path
from typing import Any

import pytest

from ttftui.analysis.load import arrival_offsets_ns, plan_for
from ttftui.analysis.metrics import remote_figures
from ttftui.core.config import Config, LengthDist, RunConfig, ScenarioConfig, resolve_workloads, with_trace
from ttftui.core.errors import ConfigError
from ttftui.core.events import RemoteTiming
from ttftui.core.workload import read_prompts, read_trace
from ttftui.measure.datasets import dataset_order, draw_lengths, phase_rng
from ttftui.measure.trace import RequestBuilder

from .conftest import assert_one_line_error, cli
from .fake_server import JsonHandler, LoopbackServer

URL = "http://127.0.0.1:9/v1"


# ---------------------------------------------------------------------- a tokenizer and a server
class PieceTokenizer:
    """A tokenizer with merges at cuts, like BPE: a piece is optional whitespace and up to 4 other
    characters, so "ab" + "cd" is one piece where "ab" and "cd" were two. Ids are given in order of
    first sight; 1 is the BOS (``tokenize`` adds it, ``content_tokens`` does not)."""

    BOS = 1

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.pieces: dict[int, str] = {}
        self.lock = threading.Lock()

    def split(self, text: str) -> list[int]:
        out = []
        with self.lock:
            for p in re.findall(r"\s*\S{1,4}|\s+", text):
                if p not in self.ids:
                    self.ids[p] = len(self.ids) + 2
                    self.pieces[self.ids[p]] = p
                out.append(self.ids[p])
        return out

    def tokenize(self, text: str, *, chat: bool = False) -> list[int]:
        return [self.BOS] + self.split(text)

    def content_tokens(self, text: str, *, chat: bool = False) -> list[int]:
        return self.split(text)

    def detokenize(self, tokens: list[int], *, chat: bool = False) -> str:
        return "".join(self.pieces.get(t, "") for t in tokens)


class CachingServer(LoopbackServer):
    """A llama-server lookalike on 127.0.0.1: /props, /tokenize and /detokenize (PieceTokenizer), and
    /v1/completions that streams two chunks and ends with llama-server's ``timings``: its prefix cache
    is every prompt it has evaluated, and ``cache_n`` is the longest prefix (in tokens) the prompt shares
    with one of them, when the request allows ``cache_prompt`` (the last token is always evaluated)."""

    def __init__(self) -> None:
        self.tok = PieceTokenizer()
        self.bodies: list[dict[str, Any]] = []
        self.accounts: list[tuple[int, int]] = []  # (cache_n, prompt_n) of each completion, in order
        self.cache: list[list[int]] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(JsonHandler):

            def do_GET(self) -> None:
                self._lookalike_get("lookalike")

            def do_POST(self) -> None:
                doc = self._body()
                tok = outer.tok
                if self.path == "/tokenize":
                    text = doc["content"]
                    self._json(200, {"tokens": tok.tokenize(text) if doc.get("add_special") else tok.split(text)})
                elif self.path == "/detokenize":
                    self._json(200, {"content": tok.detokenize(doc["tokens"])})
                elif self.path.endswith("/completions"):
                    self._complete(doc)
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def _complete(self, doc: dict[str, Any]) -> None:
                ids = outer.tok.tokenize(doc["prompt"])
                with outer.lock:
                    lcp = 0
                    if doc.get("cache_prompt"):
                        for old in outer.cache:
                            k = 0
                            while k < min(len(old), len(ids)) and old[k] == ids[k]:
                                k += 1
                            lcp = max(lcp, k)
                    cache_n = min(lcp, len(ids) - 1)
                    outer.cache.append(ids)
                    outer.bodies.append(doc)
                    outer.accounts.append((cache_n, len(ids) - cache_n))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for text in (" hello", " world"):
                    chunk = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
                    self.wfile.write(b"data: " + json.dumps(chunk).encode() + b"\n\n")
                end = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                       "usage": {"prompt_tokens": len(ids), "completion_tokens": 2},
                       "timings": {"prompt_n": len(ids) - cache_n, "cache_n": cache_n, "prompt_ms": 0.01,
                                   "predicted_n": 2, "predicted_ms": 0.01}}
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

        self.serve(Handler)

    def prompt_tokens(self, i: int) -> list[int]:
        return self.tok.tokenize(self.bodies[i]["prompt"])


def _lcp(a: list[int], b: list[int]) -> int:
    k = 0
    while k < min(len(a), len(b)) and a[k] == b[k]:
        k += 1
    return k


def write_trace(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Four requests: the second and the fourth share the first's leading block (and the fourth its
# second too); the third shares nothing. Blocks of 512 tokens, as Mooncake's.
TRACE = [
    {"timestamp": 0, "input_length": 1100, "output_length": 3, "hash_ids": [10, 11, 12]},
    {"timestamp": 200, "input_length": 900, "output_length": 5, "hash_ids": [10, 13]},
    {"timestamp": 200, "input_length": 600, "output_length": 2, "hash_ids": [20, 21], "session_id": "x"},
    {"timestamp": 500, "input_length": 1300, "output_length": 4, "hash_ids": [10, 11, 14]},
]


def _scenario(trace: Path, **kw: Any) -> ScenarioConfig:
    return ScenarioConfig.model_validate({"name": "t", "trace": str(trace), **kw})


# ---------------------------------------------------------------------- reading a trace
def test_a_traces_arrivals_follow_its_timestamps_over_its_speed(tmp_path):
    t = write_trace(tmp_path / "t.jsonl", [{**r, "timestamp": r["timestamp"] + 1000} for r in TRACE])
    run = RunConfig(warmup=3, iterations=7)  # a trace takes neither: its lines are its requests
    plan = plan_for(run, _scenario(t))
    assert (plan.mode, plan.arrival, plan.rate, plan.n_warmup, plan.n_counted) == ("open", "trace", None, 0, 4)
    assert arrival_offsets_ns(plan, 4, 42, "t") == [0, 200_000_000, 200_000_000, 500_000_000]
    fast = plan_for(run, _scenario(t, trace_speed=4.0, requests=3, warmup_requests=2))
    assert (fast.n_warmup, fast.n_counted) == (2, 3)
    # each phase replays from the trace's first line: the warm-ups' schedule is the counted one's start
    assert arrival_offsets_ns(fast, 3, 42, "t") == [0, 50_000_000, 50_000_000]
    assert arrival_offsets_ns(fast, 2, 43, "t") == [0, 50_000_000]
    assert fast.describe() == "trace replay, 3 requests at 4x"


@pytest.mark.parametrize("line, pattern", [
    ('{"timestamp": 5, "input_length": 10, "output_length": 2', r"line 3: not JSON: .*column"),
    ('[1, 2]', r"line 3: expected a JSON object"),
    ('{"input_length": 10, "output_length": 2}', r"line 3: timestamp is missing"),
    ('{"timestamp": 5, "output_length": 2}', r"line 3: input_length is missing"),
    ('{"timestamp": 5, "input_length": -1, "output_length": 2}', r"line 3: input_length: expected .* \(got -1\)"),
    ('{"timestamp": 5, "input_length": "12", "output_length": 2}', r'line 3: input_length: .*\(got "12"\)'),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2.5}', r"line 3: output_length: .*\(got 2.5\)"),
    ('{"timestamp": 1, "input_length": 10, "output_length": 2}', r"line 3: timestamp 1 is before line 2's 4"),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": [1, -2]}', r"line 3: hash_ids: .*-2"),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": "1"}', r"line 3: hash_ids: expected a list"),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": [1, 2]}', (r"line 3: hash_ids names 2 "
                                                                                      r"blocks, .* holds 1 of 512")),
    ('{"timestamp": 1e400, "input_length": 10, "output_length": 2}', r"line 3: timestamp: expected ms"),
    ('{"timestamp": 5, "input_length": 10, "output_length": 2, "hash_ids": [' + "[" * 5000 + "]" * 5000 + "]}",
     r"line 3: (nested too deeply|hash_ids)"),
])
def test_a_malformed_trace_line_is_one_error_naming_the_file_and_the_line(tmp_path, line, pattern):
    good = '{"timestamp": 0, "input_length": 600, "output_length": 2, "hash_ids": [1, 2]}\n'
    t = tmp_path / "bad.jsonl"
    t.write_text(good + '{"timestamp": 4, "input_length": 10, "output_length": 2}\n' + line + "\n")
    cfg = Config.model_validate({"server": {"url": URL}, "scenarios": [{"name": "t", "trace": str(t)}]})
    with pytest.raises(ConfigError) as e:
        resolve_workloads(cfg)
    msg = str(e.value)
    assert msg.startswith(f"{t}: line 3: ") and "\n" not in msg and re.search(pattern, msg), msg


def test_a_malformed_trace_stops_the_command_line_with_one_line_and_exit_2(tmp_path):
    t = tmp_path / "bad.jsonl"
    t.write_text('{"timestamp": 0, "input_length": 8, "output_length": 2}\n\n{"timestamp": 9, "input_length": 8}\n')
    r = cli("--headless", "--url", URL, "--trace", str(t), timeout=120)  # nothing is sent: port 9 is never asked
    assert_one_line_error(r, 2, r"bad\.jsonl: line 3: output_length is missing")
    r = cli("--headless", "--url", URL, "--trace", str(tmp_path / "none.jsonl"), timeout=120)
    assert_one_line_error(r, 2, r"trace file not found: .*none\.jsonl")
    r = cli("--headless", "--url", URL, "--trace-speed", "2", timeout=120)
    assert_one_line_error(r, 2, r"--trace-speed applies to a trace scenario")


def test_trace_files_are_bounded(tmp_path, monkeypatch):
    import ttftui.core.workload as workload

    t = write_trace(tmp_path / "t.jsonl", TRACE)
    monkeypatch.setattr(workload, "MAX_TRACE_REQUESTS", 3)
    with pytest.raises(ConfigError, match=r"4 requests; at most 3"):
        read_trace(t)
    monkeypatch.setattr(workload, "MAX_TRACE_REQUESTS", 10)
    monkeypatch.setattr(workload, "MAX_WORKLOAD_BYTES", 100)
    with pytest.raises(ConfigError, match=r"cannot read trace file: .* MiB ttftui reads"):
        read_trace(write_trace(tmp_path / "u.jsonl", TRACE))
    (tmp_path / "e.jsonl").write_text("\n \n")
    with pytest.raises(ConfigError, match=r"e\.jsonl: no requests"):
        read_trace(tmp_path / "e.jsonl")


def test_the_trace_gives_the_counts_and_the_config_checks_what_combines(tmp_path):
    t = write_trace(tmp_path / "t.jsonl", TRACE)
    cfg = resolve_workloads(Config.model_validate({"server": {"url": URL}, "scenarios": [{"name": "t", "trace": str(t)}]}))
    s = cfg.scenarios[0]
    assert (s.requests, s.max_tokens, s.is_load, s.per_request) == (4, 5, True, True)  # every line; its longest output
    capped = Config.model_validate({"server": {"url": URL}, "scenarios": [
        {"name": "t", "trace": str(t), "requests": 2, "max_tokens": 4}]})
    assert (resolve_workloads(capped).scenarios[0].requests, resolve_workloads(capped).scenarios[0].max_tokens) == (2, 4)
    with pytest.raises(ConfigError, match=r"scenario t: requests = 9, but the trace .* holds 4 requests"):
        resolve_workloads(Config.model_validate({"server": {"url": URL}, "scenarios": [
            {"name": "t", "trace": str(t), "requests": 9}]}))
    for extra, msg in (({"rate": 2.0}, "no concurrency or rate"), ({"prompt_tokens": 8}, "no prompt_tokens"),
                       ({"prompts": "p.jsonl"}, "no prompts")):
        with pytest.raises(ValueError, match=msg):
            _scenario(t, **extra)
    with pytest.raises(ValueError, match="trace_speed applies to a trace scenario"):
        ScenarioConfig(name="s", prompt_tokens=8, max_tokens=2, trace_speed=2.0)
    with pytest.raises(ValueError, match="give its URL"):
        Config.model_validate({"scenarios": [{"name": "t", "trace": str(t)}]})
    with pytest.raises(ValueError, match="not from Ray client workers"):
        Config.model_validate({"server": {"url": URL}, "cluster": {"ray": "local"},
                               "scenarios": [{"name": "t", "trace": str(t)}]})


def test_the_trace_option_makes_or_retargets_the_trace_scenarios(tmp_path):
    t, u = write_trace(tmp_path / "t.jsonl", TRACE), write_trace(tmp_path / "u.jsonl", TRACE[:2])
    base = Config.model_validate({"server": {"url": URL}})  # the three default scenarios
    cfg = resolve_workloads(with_trace(base, str(t), 2.0))
    assert [(s.name, s.trace, s.trace_speed, s.requests) for s in cfg.scenarios] == [("trace", str(t), 2.0, 4)]
    # a config's trace scenario (as a config file gives it, before its files are read) replays the other file
    again = resolve_workloads(with_trace(with_trace(base, str(t), 2.0), str(u)))
    assert [(s.name, s.trace, s.trace_speed, s.requests) for s in again.scenarios] == [("trace", str(u), 2.0, 2)]
    with pytest.raises(ConfigError, match=r"^--trace-speed applies to a trace scenario"):
        with_trace(base, None, 3.0)
    with pytest.raises(ConfigError, match=r"^--trace: .*give its URL"):
        with_trace(Config(), str(t))


# ---------------------------------------------------------------------- prompts from the trace's blocks
def _build(s: ScenarioConfig, n: int, tok: Any, *, warm: bool = False, builder: RequestBuilder | None = None):
    return (builder or RequestBuilder(42, nonce="test")).build(s, n, warm, tok)


def test_shared_hash_ids_give_identical_prompt_prefixes_and_exact_lengths(tmp_path):
    tok = PieceTokenizer()
    s = _scenario(write_trace(tmp_path / "t.jsonl", TRACE))
    reqs = _build(s, 4, tok)
    ids = [tok.tokenize(r.prompt_text) for r in reqs]
    assert [len(x) for x in ids] == [r["input_length"] for r in TRACE]  # the server's count, BOS included
    assert [r.prompt_tokens for r in reqs] == [r["input_length"] for r in TRACE]
    assert [r.scenario.max_tokens for r in reqs] == [r["output_length"] for r in TRACE]
    assert [r.line for r in reqs] == [1, 2, 3, 4]
    text = [r.prompt_text for r in reqs]
    block1 = text[0][: len(tok.detokenize(tok.content_tokens(text[0])[:512]))]
    # the block the first, second and fourth requests share is the same text in each...
    assert text[1].startswith(block1) and text[3].startswith(block1)
    # ... and the fourth shares the first's second block too: 1024 tokens, give or take a merge at a cut
    assert 1 + 1024 - 2 <= _lcp(ids[0], ids[3]) <= 1 + 1024 + 2
    assert 1 + 512 - 2 <= _lcp(ids[0], ids[1]) <= 1 + 512 + 2
    assert _lcp(ids[0], ids[2]) <= 1 + 2 and _lcp(ids[1], ids[2]) <= 1 + 2  # nothing shared but the BOS


def test_other_phases_and_sessions_give_the_same_blocks_other_text(tmp_path):
    tok = PieceTokenizer()
    s = _scenario(write_trace(tmp_path / "t.jsonl", TRACE))
    b = RequestBuilder(42)
    warm, counted = _build(s, 2, tok, warm=True, builder=b), _build(s, 4, tok, builder=b)
    assert [r.prompt_tokens for r in warm] == [1100, 900]  # the trace's lengths, from its first line
    assert _lcp(tok.tokenize(warm[0].prompt_text), tok.tokenize(counted[0].prompt_text)) <= 3  # no warm cache
    other = _build(s, 4, tok, builder=RequestBuilder(42))  # another session
    assert _lcp(tok.tokenize(other[0].prompt_text), tok.tokenize(counted[0].prompt_text)) <= 3


def test_a_trace_without_a_tokenizer_is_estimated_in_characters(tmp_path):
    s = _scenario(write_trace(tmp_path / "t.jsonl", TRACE))
    reqs = _build(s, 4, None)
    assert [r.prompt_tokens for r in reqs] == [1100, 900, 600, 1300]
    assert [len(r.prompt_text) for r in reqs] == [4 * n for n in (1100, 900, 600, 1300)]
    assert reqs[1].prompt_text[: 4 * 512] == reqs[0].prompt_text[: 4 * 512] != reqs[2].prompt_text[: 4 * 512]


def test_unnamed_blocks_are_the_requests_own(tmp_path):
    t = write_trace(tmp_path / "t.jsonl", [{"timestamp": 0, "input_length": 1100, "output_length": 2},
                                           {"timestamp": 1, "input_length": 1100, "output_length": 2}])
    tok = PieceTokenizer()
    a, b = _build(_scenario(t), 2, tok)
    assert _lcp(tok.tokenize(a.prompt_text), tok.tokenize(b.prompt_text)) <= 3


def test_the_ideal_reuse_of_a_trace_counts_leading_blocks_seen_before(tmp_path):
    path = write_trace(tmp_path / "t.jsonl", TRACE)
    t = read_trace(path)
    # the 2nd reuses block 10 (512), the 4th blocks 10 and 11 (1024); 14 is new; the 3rd nothing
    assert t.reusable_tokens(4, 512) == (512 + 1024, 1100 + 900 + 600 + 1300)
    # each request's prompt says its own part of it; a phase starts from nothing seen, as each phase's
    # text is its own
    b = RequestBuilder(42, nonce="test")
    for warm in (True, False):
        reqs = _build(_scenario(path), 4, PieceTokenizer(), warm=warm, builder=b)
        assert [r.reusable_tokens for r in reqs] == [0, 512, 0, 1024]
        assert [sum(r.reusable_tokens for r in reqs[:n]) for n in range(1, 5)] == [
            t.reusable_tokens(n, 512)[0] for n in range(1, 5)]


# ---------------------------------------------------------------------- datasets and distributions
def test_a_prompt_dataset_takes_text_messages_and_sharegpt_lines(tmp_path):
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps(d) for d in (
        {"text": "one two three"},
        {"prompt": "four"},
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "five six"}]},
        {"conversations": [{"from": "human", "value": "seven"}, {"from": "gpt", "value": "eight"}]},
    )) + "\n")
    ds = read_prompts(p)
    assert [(x.line, x.text) for x in ds.prompts] == [(1, "one two three"), (2, "four"), (3, "five six"), (4, "seven")]
    s = ScenarioConfig(name="d", prompts=str(p), max_tokens=3, concurrency=2)
    tok = PieceTokenizer()
    reqs = _build(s, 6, tok)
    assert sorted(r.prompt_text for r in reqs[:4]) == sorted(x.text for x in ds.prompts)  # each once before any twice
    assert all(r.prompt_tokens == len(tok.tokenize(r.prompt_text)) for r in reqs)
    assert [r.prompt_text for r in reqs] == [r.prompt_text for r in _build(s, 6, tok)]  # a seeded order


@pytest.mark.parametrize("doc, pattern", [
    ({"messages": [{"role": "assistant", "content": "x"}]}, r"line 2: messages has no user or human message"),
    ({"conversations": [{"from": "human", "value": ["x"]}]}, r"line 2: conversations\[0\]\.value: expected a string"),
    ({"text": 5}, r"line 2: text: expected a string"),
    ({"other": "x"}, r"line 2: no prompt"),
    ({"text": "  "}, r"line 2: the prompt is empty"),
])
def test_a_malformed_dataset_line_is_one_error_naming_it(tmp_path, doc, pattern):
    p = tmp_path / "p.jsonl"
    p.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps(doc) + "\n")
    cfg = Config.model_validate({"server": {"url": URL}, "scenarios": [
        {"name": "d", "prompts": str(p), "max_tokens": 2, "rate": 1.0}]})
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(p))}: {pattern}"):
        resolve_workloads(cfg)


def test_seeded_length_distributions_keep_their_shape_and_bounds():
    def rng():
        return phase_rng(42, "s", False, "prompt_tokens")

    normal = draw_lengths(LengthDist(kind="normal", mean=500, sd=100, min=200, max=800), 4000, rng())
    assert normal == draw_lengths(LengthDist(kind="normal", mean=500, sd=100, min=200, max=800), 4000, rng())
    assert 200 <= min(normal) and max(normal) <= 800
    assert statistics.fmean(normal) == pytest.approx(500, rel=0.03)
    assert statistics.pstdev(normal) == pytest.approx(100, rel=0.08)
    logn = draw_lengths(LengthDist(kind="lognormal", mean=300, sd=150), 6000, rng())
    assert statistics.fmean(logn) == pytest.approx(300, rel=0.05) and statistics.median(logn) < 300  # skewed
    uni = draw_lengths(LengthDist(kind="uniform", min=10, max=20), 2000, rng())
    assert set(uni) == set(range(10, 21))
    assert max(draw_lengths(LengthDist(kind="normal", mean=50, sd=40), 500, rng(), cap=60)) == 60
    assert sorted(dataset_order(3, 6, rng())) == [0, 0, 1, 1, 2, 2]
    for bad, msg in (({"kind": "uniform", "min": 5}, "takes min and max"), ({"kind": "normal", "mean": 5},
                     "needs mean and sd"), ({"kind": "uniform", "min": 9, "max": 3}, "less than min")):
        with pytest.raises(ValueError, match=msg):
            LengthDist.model_validate(bad)


def test_a_length_distribution_gives_each_request_its_own_exact_prompt():
    s = ScenarioConfig.model_validate({"name": "d", "rate": 2.0, "prompt_tokens_dist": {
        "kind": "uniform", "min": 40, "max": 900}, "max_tokens_dist": {"kind": "uniform", "min": 1, "max": 9}})
    assert s.max_tokens == 9  # the distribution's max, when no max_tokens is given
    tok = PieceTokenizer()
    reqs = _build(s, 12, tok)
    want = draw_lengths(s.prompt_tokens_dist, 12, phase_rng(42, "d", False, "prompt_tokens"))
    assert [len(tok.tokenize(r.prompt_text)) for r in reqs] == [r.prompt_tokens for r in reqs] == want
    assert all(1 <= r.scenario.max_tokens <= 9 for r in reqs) and len({r.scenario.max_tokens for r in reqs}) > 1
    assert max(_lcp(tok.tokenize(a.prompt_text), tok.tokenize(b.prompt_text))
               for a in reqs for b in reqs if a is not b) <= 3  # no two share a prefix
    with pytest.raises(ValueError, match="prompt_tokens_dist applies to a load scenario"):
        ScenarioConfig.model_validate({"name": "d", "max_tokens": 2, "prompt_tokens_dist": {
            "kind": "uniform", "min": 4, "max": 9}})


# ---------------------------------------------------------------------- the server's own account
def test_the_servers_cache_account_is_a_per_run_figure():
    base = dict(connect_ns=0, sent_ns=1, headers_ns=2, first_event_ns=3, first_choice_ns=3, first_content_ns=3,
                end_ns=4, n_events=3, n_chunks=2, status=200, finish_reason="length", server_kind="llama-server",
                prompt_counted_by="server tokenizer")
    f = remote_figures(RemoteTiming(**base, server_cache_n=300, server_prompt_n=100))
    assert f["server_cache_hit_pct"] == 75.0 and f["server_cached_tokens_count"] == 300.0
    assert "server_cache_hit_pct" not in remote_figures(RemoteTiming(**base))  # not reported: not a figure


def _needs_per_request_prompts() -> None:
    from ttftui.measure.remote.engine import RemoteEngine

    if not hasattr(RemoteEngine, "prepare_requests"):
        pytest.skip("the remote engine does not send per-request prompts yet (RemoteEngine.prepare_requests)")


@pytest.fixture(scope="module")
def trace_session(tmp_path_factory):
    _needs_per_request_prompts()
    d = tmp_path_factory.mktemp("trace")
    t = write_trace(d / "t.jsonl", [{**r, "timestamp": r["timestamp"] * 2} for r in TRACE])
    out, rec = d / "r.json", d / "r.ttftrec"
    with CachingServer() as srv:
        r = cli("--headless", "-q", "--url", srv.url, "--trace", str(t), "--trace-speed", "4", "-o", str(out),
                "--record", str(rec), "--set", "telemetry.backend=none", timeout=300)
        assert r.returncode == 0, r.stderr
        return json.loads(out.read_text()), rec, srv


def test_a_replayed_trace_sends_its_shared_blocks_as_shared_text(trace_session):
    report, _, srv = trace_session
    bodies = srv.bodies
    assert len(bodies) == 4 and all(b["cache_prompt"] is True for b in bodies)  # the server may use its cache
    by_len = {len(srv.tok.tokenize(b["prompt"])): (i, b) for i, b in enumerate(bodies)}
    assert sorted(by_len) == sorted(r["input_length"] for r in TRACE)  # exact, by the server's own tokenizer
    assert [by_len[r["input_length"]][1]["max_tokens"] for r in TRACE] == [r["output_length"] for r in TRACE]
    first, second, third, fourth = (srv.prompt_tokens(by_len[r["input_length"]][0]) for r in TRACE)
    assert 511 <= _lcp(first, second) <= 515 and 1023 <= _lcp(first, fourth) <= 1027 and _lcp(first, third) <= 3
    runs = report["runs"]
    assert sorted(r["n_prompt_tokens"] for r in runs) == sorted(r["input_length"] for r in TRACE)
    load = report["load"]["trace"]
    assert (load["mode"], load["arrival"], load["rate"], load["n_requests"], load["n_ok"]) == ("open", "trace", None,
                                                                                                 4, 4)


def test_the_report_has_the_servers_own_cache_hits_per_run_and_per_scenario(trace_session):
    report, _, srv = trace_session
    hits = sorted(r["figures"]["server_cache_hit_pct"] for r in report["runs"])
    assert hits == pytest.approx(sorted(c / (c + p) * 100 for c, p in srv.accounts))
    assert sorted(r["figures"]["server_cached_tokens_count"] for r in report["runs"]) == sorted(
        c for c, _ in srv.accounts)
    assert sum(h > 40 for h in hits) == 2 and sum(h < 1 for h in hits) == 2  # the 2nd and 4th reuse the 1st's blocks
    m = report["summary"]["trace"]["metrics"]["server_cache_hit_pct"]
    assert m["n"] == 4 and m["mean"] == pytest.approx(statistics.fmean(hits))
    # the whole trace: what the server served against what its sharing allows, over the same tokens
    load, runs = report["load"]["trace"], report["runs"]
    assert sorted(r["remote"]["trace_reusable_tokens"] for r in runs) == [0, 0, 512, 1024]
    prompt = sum(r["n_prompt_tokens"] for r in runs)
    assert load["trace_reusable_pct"] == pytest.approx((512 + 1024) / prompt * 100)
    assert load["server_cache_hit_pct"] == pytest.approx(sum(c for c, _ in srv.accounts) / prompt * 100)
    assert load["server_cache_reported"] == 4


def test_a_trace_sessions_recording_replays_to_the_same_figures(trace_session):
    report, rec, _ = trace_session
    r = cli("replay", str(rec), "--headless")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert again["runs"] == report["runs"] and again["summary"] == report["summary"] and again["load"] == report["load"]


def test_a_dataset_and_a_distribution_are_sent_under_load(tmp_path):
    _needs_per_request_prompts()
    p = tmp_path / "p.jsonl"
    p.write_text("\n".join(json.dumps({"text": f"prompt number {i} " * (i + 1)}) for i in range(5)) + "\n")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[run]
warmup = 0
[[scenarios]]
name = "data"
prompts = "{p.name}"
max_tokens = 2
concurrency = 2
requests = 5
[[scenarios]]
name = "dist"
prompt_tokens_dist = {{ kind = "lognormal", mean = 200, sd = 80, max = 600 }}
max_tokens = 2
rate = 50
arrival = "constant"
requests = 6
""")
    with CachingServer() as srv:
        out = tmp_path / "r.json"
        r = cli("--headless", "-q", "--config", str(cfg), "--url", srv.url, "-o", str(out),
                "--set", "telemetry.backend=none", timeout=300)
        assert r.returncode == 0, r.stderr
    sent = [b["prompt"] for b in srv.bodies]
    assert sorted(sent[:5]) == sorted(json.loads(x)["text"] for x in p.read_text().splitlines())
    assert all(b["cache_prompt"] is False for b in srv.bodies)  # server.prefix_cache = "off" as ever
    report = json.loads(out.read_text())
    dist = [r for r in report["runs"] if r["scenario"] == "dist"]
    want = draw_lengths(LengthDist(kind="lognormal", mean=200, sd=80, max=600), 6, phase_rng(42, "dist", False,
                                                                                            "prompt_tokens"))
    assert sorted(r["n_prompt_tokens"] for r in dist) == sorted(want)


# ---------------------------------------------------------------------- a real tokenizer, a real server
REAL_TRACE = [  # blocks of 64 tokens (trace_block_tokens): the demo server's context is 1,024
    {"timestamp": 0, "input_length": 300, "output_length": 3, "hash_ids": [1, 2, 3, 4, 5]},
    {"timestamp": 100, "input_length": 200, "output_length": 2, "hash_ids": [1, 2, 6, 7]},
    {"timestamp": 200, "input_length": 150, "output_length": 4, "hash_ids": [8, 9, 10]},
    {"timestamp": 300, "input_length": 420, "output_length": 2, "hash_ids": [1, 2, 3, 4, 11, 12, 13]},
]


def test_trace_prompts_are_exact_and_shared_in_a_real_servers_tokens(lcp_server, tmp_path):
    """SmolLM2's byte-level BPE through llama-cpp-python's server (which adds a BOS even to a text
    alone): merges at the cuts, and the lengths still come out exact, the shared blocks shared."""
    from ttftui.measure.remote.engine import RemoteEngine

    t = write_trace(tmp_path / "t.jsonl", REAL_TRACE)
    cfg = Config.model_validate({"server": {"url": lcp_server}, "scenarios": [
        {"name": "t", "trace": str(t), "trace_block_tokens": 64}]})
    eng = RemoteEngine(cfg)
    try:
        eng.load()
        tok = eng.tokenizer
        assert tok is not None
        reqs = RequestBuilder(42, nonce="real").build(cfg.scenarios[0], 4, False, tok)
        ids = [tok.tokenize(r.prompt_text, chat=False) for r in reqs]
    finally:
        eng.close()
    assert [len(x) for x in ids] == [r.prompt_tokens for r in reqs] == [r["input_length"] for r in REAL_TRACE]
    assert 1 + 128 - 2 <= _lcp(ids[0], ids[1]) <= 1 + 128 + 2  # blocks 1 and 2
    assert 1 + 256 - 2 <= _lcp(ids[0], ids[3]) <= 1 + 256 + 2  # blocks 1 to 4
    assert _lcp(ids[0], ids[2]) <= 1 + 2


def test_a_trace_replays_against_a_real_server(lcp_server, tmp_path):
    _needs_per_request_prompts()
    t = write_trace(tmp_path / "t.jsonl", REAL_TRACE)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[scenarios]]\nname = "real"\ntrace = "{t.name}"\ntrace_block_tokens = 64\ntrace_speed = 2\n')
    out = tmp_path / "r.json"
    r = cli("--headless", "-q", "--config", str(cfg), "--url", lcp_server, "-o", str(out),
            "--set", "telemetry.backend=none", timeout=600)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    runs = report["runs"]
    # exact by the server's own tokenizer (this server's stream has no usage to say it again)
    assert sorted(x["n_prompt_tokens"] for x in runs) == sorted(x["input_length"] for x in REAL_TRACE)
    assert {x["remote"]["prompt_counted_by"] for x in runs} == {"server tokenizer"}
    assert (report["load"]["real"]["arrival"], report["load"]["real"]["n_ok"]) == ("trace", 4)
