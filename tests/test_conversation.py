"""Conversations on the local engine: each turn sends the conversation so far plus a new user message.

With ``cache = "keep"`` the KV cache holds the conversation between turns and only the new tokens
(the last answer's final token, never decoded, and the new message) are evaluated, which llama.cpp's
own counter (n_p_eval) confirms; with ``off`` every turn starts from an empty cache. Both must be the
same conversation: the first token's logits agree (to the rounding of a batch against one token at a
time), and so do the answers. Turns run in order, conversation after conversation.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
import pytest

from ttftui.core.errors import ConfigError
from ttftui.core.events import PhaseTimed, RunStarted
from ttftui.run.session import select_scenarios

from .conftest import assert_one_line_error, cli, finished_runs, make_config, run_events

CHAT = {"name": "chat", "kind": "conversation", "turns": 4, "user_tokens": 40, "system_tokens": 12, "max_tokens": 6,
        "cache": ["keep", "off"]}


def _config(**kw: Any) -> Any:
    return make_config(model={"n_ctx": 1024, "n_threads": 2}, run={"iterations": 1, "warmup": 0},
                       scenarios=[{**CHAT, **kw}])


# ---------------------------------------------------------------------- the config
def test_a_conversation_expands_into_turns_per_cache_setting():
    cfg = _config()
    names = [s.name for s in cfg.scenarios]
    assert names == [f"chat@{c}@t{k}" for c in ("keep", "off") for k in range(1, 5)]
    t3 = cfg.scenario("chat@keep@t3")
    assert (t3.conversation, t3.turn, t3.turns, t3.cache, t3.sweep) == ("chat@keep", 3, 4, "keep", "chat@keep")
    assert t3.depth_before == 12 + 2 * (40 + 6)
    assert select_scenarios(cfg, ["chat"]) == names
    # one turn needs the turns before it: choosing it runs its whole conversation
    assert select_scenarios(cfg, ["chat@off@t3"]) == ["chat@off@t3", "chat@off@t1", "chat@off@t2", "chat@off@t4"]


@pytest.mark.parametrize("extra,words", [
    ({"prompt_tokens": 64}, "no prompt_tokens"),
    ({"chat": True}, "no prompt_tokens, no chat"),
    ({"turns": None}, "needs turns and user_tokens"),
    ({"cache": ["keep", "keep"]}, "distinct"),
])
def test_a_malformed_conversation_is_refused(extra, words):
    with pytest.raises((ConfigError, ValueError), match=words):
        _config(**extra)


# ---------------------------------------------------------------------- the engine (real model)
@pytest.mark.model
def test_keep_evaluates_only_the_new_tokens_by_llama_cpps_count():
    events = run_events(make_config(model={"n_ctx": 1024, "n_threads": 2}, run={"iterations": 2, "warmup": 1},
                                    scenarios=[CHAT]))
    starts = [e for e in events if isinstance(e, RunStarted)]
    # turn after turn, conversation after conversation: a warm-up conversation, then two counted ones
    assert [s.scenario for s in starts] == [f"chat@{c}@t{k}" for c in ("keep", "off") for _ in range(3)
                                            for k in range(1, 5)]
    assert [s.warmup for s in starts[:8]] == [True] * 4 + [False] * 4
    ends = {e.run_id: e for e in finished_runs(events)}
    for s in starts:
        fin = ends[s.run_id]
        c = fin.conversation
        assert fin.n_prompt_tokens == s.prompt_tokens == c.depth == 12 + (c.turn - 1) * 46 + 40
        assert c.evaluated_tokens == c.new_tokens == sum(fin.prefill_chunk_tokens)  # llama.cpp's count agrees
        assert c.counted_by.startswith("llama.cpp")
        if c.cache == "keep" and c.turn > 1:
            # the last turn's prompt and answer stay cached, but its last token (sampled, never decoded)
            assert c.cached_tokens == c.depth - 40 - 1 and c.new_tokens == 41
        else:
            assert c.cached_tokens == 0 and c.new_tokens == c.depth
        kept = next(p for p in events if isinstance(p, PhaseTimed) and p.run_id == s.run_id and p.phase == "cache_prep")
        assert kept.n_tokens == c.cached_tokens


@pytest.mark.model
def test_keep_and_off_are_the_same_conversation(model_path):
    """The first token's logits of every turn, with the cache kept and from an empty cache, agree to the
    rounding of a batch against one token at a time: correlation 0.9995+ on this machine, where a
    conversation one system token shorter correlates 0.5-0.9 with maximum differences of 12-25
    (a wrong cache, or wrong positions, is another conversation)."""
    from ttftui.measure.engine.llama import L, LlamaEngine

    logits: dict[str, list[np.ndarray]] = {}
    for cache in ("keep", "off"):
        cfg = _config(cache=cache, max_tokens=1)
        eng = LlamaEngine(cfg, model_path)
        try:
            eng.load()
            n_vocab = L.llama_vocab_n_tokens(eng.vocab)
            for i, s in enumerate(cfg.scenarios):
                eng.run(eng.prepare(s, 0), i + 1, False, lambda ev: None, threading.Event())
                row = np.ctypeslib.as_array(L.llama_get_logits_ith(eng.ctx, -1), shape=(n_vocab,))
                logits.setdefault(cache, []).append(row.copy())
        finally:
            eng.close()
    for k, (a, b) in enumerate(zip(logits["keep"], logits["off"])):
        assert np.corrcoef(a, b)[0, 1] > 0.999, f"turn {k + 1}: the kept cache holds another conversation"
        assert float(np.abs(a - b).max()) < 0.05 * float(np.abs(b).max())
        assert int(a.argmax()) in np.argsort(b)[-5:]  # the greedy choice: the same, or a near-tie


@pytest.mark.model
def test_a_turn_needs_the_turn_before_it(model_path):
    from ttftui.measure.engine.base import RunError
    from ttftui.measure.engine.llama import LlamaEngine

    cfg = _config(cache="keep")
    eng = LlamaEngine(cfg, model_path)
    try:
        eng.load()
        t2 = eng.prepare(cfg.scenario("chat@keep@t2"), 0)
        with pytest.raises(RunError, match="turn 2 needs turn 1 just before it"):
            eng.run(t2, 1, False, lambda ev: None, threading.Event())
    finally:
        eng.close()


@pytest.mark.model
def test_headless_report_has_each_turn_and_replay_rebuilds_it(tmp_path):
    out, rec = tmp_path / "c.json", tmp_path / "c.ttftrec"
    scen = ('scenarios=[{name="chat", kind="conversation", turns=3, user_tokens=32, max_tokens=4, '
            'cache=["keep", "off"]}]')
    r = cli("--headless", "--set", "model.n_ctx=512", "--set", scen, "--iterations", "2", "--warmup", "0",
            "-o", str(out), "--record", str(rec))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    for name in ("chat@keep@t3", "chat@off@t3"):
        m = report["summary"][name]["metrics"]
        assert m["cached_tokens_count"]["n"] == 2 and m["cache_hit_pct"]["n"] == 2
    assert report["summary"]["chat@keep@t3"]["metrics"]["cached_tokens_count"]["p50"] == 32 + 4 + 32 + 4 - 1
    assert report["summary"]["chat@off@t3"]["metrics"]["cached_tokens_count"]["p50"] == 0
    assert set(report["sweeps"]) == {"chat@keep", "chat@off"}  # TTFT against the context's depth
    turn = next(r for r in report["runs"] if r["scenario"] == "chat@keep@t2")["conversation"]
    assert turn == {"conversation": "chat@keep", "turn": 2, "turns": 3, "cache": "keep", "depth": 68,
                    "cached_tokens": 35, "new_tokens": 33, "evaluated_tokens": 33, "counted_by": "llama.cpp (n_p_eval)"}
    replay = cli("replay", str(rec), "--headless")
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout)["runs"] == report["runs"]


def test_the_synthetic_engine_models_the_cache():
    events = run_events(_config(), synthetic=True)
    for fin in finished_runs(events):
        c = fin.conversation
        assert c.new_tokens == (c.depth if c.cache == "off" or c.turn == 1 else 41)
        assert sum(fin.prefill_chunk_tokens) == c.new_tokens


@pytest.mark.model
def test_a_conversation_longer_than_the_context_is_refused_before_it_starts():
    r = cli("--headless", "--set", "model.n_ctx=256", "--set",
            'scenarios=[{name="chat", kind="conversation", turns=8, user_tokens=40, max_tokens=8, cache="keep"}]')
    assert_one_line_error(r, 7, r"scenario chat@keep@t\d: prompt_tokens \+ max_tokens = .* exceeds the context")


# ---------------------------------------------------------------------- shared prefixes
SHARED = {"name": "sys", "kind": "shared_prefix", "prefix_tokens": 96, "user_tokens": 24, "max_tokens": 1}


def test_a_shared_prefix_runs_keep_against_off():
    cfg = make_config(scenarios=[SHARED])
    assert [(s.name, s.cache) for s in cfg.scenarios] == [("sys@keep", "keep"), ("sys@off", "off")]
    with pytest.raises((ConfigError, ValueError), match="needs prefix_tokens and user_tokens"):
        make_config(scenarios=[{**SHARED, "prefix_tokens": None}])


@pytest.mark.model
def test_a_kept_prefix_is_evaluated_once_then_restored(model_path):
    """keep: the first request evaluates the prefix and saves its cells (a miss), every later one restores
    them and evaluates only its own message (llama.cpp's count); off evaluates it every time. The hit's
    first-token logits are the miss's, to the rounding of a batch against a restored cache."""
    from ttftui.measure.engine.llama import L, LlamaEngine

    cfg = make_config(model={"n_ctx": 512, "n_threads": 2}, run={"iterations": 3, "warmup": 0}, scenarios=[SHARED])
    eng = LlamaEngine(cfg, model_path)
    logits: dict[str, list[np.ndarray]] = {}
    ends: dict[str, list[Any]] = {}
    try:
        eng.load()
        n_vocab = L.llama_vocab_n_tokens(eng.vocab)
        for s in cfg.scenarios:
            prep = eng.prepare(s, 0)
            for i in range(3):
                ends.setdefault(s.cache, []).append(eng.run(prep, i + 1, False, lambda ev: None, threading.Event()))
                row = np.ctypeslib.as_array(L.llama_get_logits_ith(eng.ctx, -1), shape=(n_vocab,))
                logits.setdefault(s.cache, []).append(row.copy())
    finally:
        eng.close()
    keep, off = [e.prefix for e in ends["keep"]], [e.prefix for e in ends["off"]]
    assert not keep[0].hit and keep[0].save_ns > 0 and keep[0].evaluated_tokens == keep[0].depth
    for p in keep[1:]:
        assert p.hit and p.reuse_ns > 0 and p.save_ns is None
        assert p.cached_tokens == p.prefix_tokens == 96 and p.evaluated_tokens == p.new_tokens == 24
    assert all(not p.hit and p.cached_tokens == 0 and p.evaluated_tokens == p.depth == 120 for p in off)
    # the save is booked inside the miss's cache handling, the restore inside each hit's
    assert ends["keep"][0].cache_prep_ns >= keep[0].save_ns and ends["keep"][1].cache_prep_ns >= keep[1].reuse_ns
    for i in range(3):  # request i sends message i with either setting
        a, b = logits["keep"][i], logits["off"][i]
        assert np.corrcoef(a, b)[0, 1] > 0.999 and int(a.argmax()) in np.argsort(b)[-5:]
