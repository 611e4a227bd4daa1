"""Inside prefill (engine.profile_ops): llama.cpp's graph callback times each operation of a profiled
twin's graph, NAME@ops, on a context of its own; plain runs never see the callback.

What must hold on the demo model: the operations' compute of a chunk lies inside its llama_decode
span (the rest is the gap profiling adds, accounted as such); every layer appears, each with the same
nodes; MUL_MAT leads; decode's graph has prefill's operations (only the shapes differ); the report
sets the twin's prefill against the plain runs'.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from ttftui.run.session import select_scenarios

from .conftest import cli, make_config




def _config(mode: str = "ops") -> Any:
    return make_config(model={"n_ctx": 512, "n_batch": 64, "n_threads": 2}, engine={"profile_ops": mode},
                       run={"iterations": 1, "warmup": 0},
                       scenarios=[{"name": "p", "prompt_tokens": 96, "max_tokens": 4}])


def test_every_ordinary_scenario_gets_a_profiled_twin():
    cfg = make_config(engine={"profile_ops": "ops"}, scenarios=[
        {"name": "a", "prompt_tokens": [32, 64], "max_tokens": 2},
        {"name": "c", "kind": "conversation", "turns": 2, "user_tokens": 8, "max_tokens": 2, "cache": "keep"}])
    names = [s.name for s in cfg.scenarios]
    assert names == ["a@32", "a@32@ops", "a@64", "a@64@ops", "c@keep@t1", "c@keep@t2"]
    twin = cfg.scenario("a@32@ops")
    assert twin.profile_ops and twin.sweep is None  # not in the sweep's fit
    assert select_scenarios(cfg, ["a@32"]) == ["a@32", "a@32@ops"]
    assert [s.name for s in make_config(scenarios=[{"name": "a", "prompt_tokens": 8, "max_tokens": 1}]).scenarios] == ["a"]


def _profiled_run(model_path: Any, mode: str) -> Any:
    from ttftui.measure.engine.llama import LlamaEngine

    cfg = _config(mode)
    eng = LlamaEngine(cfg, model_path)
    try:
        eng.load()
        plain = eng.run(eng.prepare(cfg.scenario("p"), 0), 1, False, lambda ev: None, threading.Event())
        twin = eng.run(eng.prepare(cfg.scenario("p@ops"), 0), 2, False, lambda ev: None, threading.Event())
        n_layer = eng.header.arch_key("block_count")
    finally:
        eng.close()
    assert plain.ops is None  # the plain context has no callback
    return twin, n_layer


@pytest.mark.model
def test_a_profiled_prefill_by_operation_and_layer(model_path):
    fin, n_layer = _profiled_run(model_path, "ops")
    ops = fin.ops
    chunks = [p for p in ops.phases if p.phase == "prefill_chunk"]
    assert [c.index for c in chunks] == [0, 1] and len(fin.prefill_chunks_ns) == 2
    for c, ns in zip(chunks, fin.prefill_chunks_ns):
        assert c.span_ns == ns  # the chunk's llama_decode + synchronize, as the run timed it
        assert sum(k.ns for k in c.kinds) == c.compute_ns == sum(lt.ns for lt in c.layers)
        assert 0 < c.compute_ns <= c.span_ns  # the rest of the span: the gap profiling adds
        assert [lt.layer for lt in c.layers] == [*range(n_layer), None]  # every layer, then embeddings and head
        nodes = [lt.nodes for lt in c.layers if lt.layer is not None]
        # each layer has the same nodes; the last one also picks the rows that get logits (2 GET_ROWS)
        assert len(set(nodes[:-1])) == 1 and nodes[-1] == nodes[0] + 2
        top = [k.kind for k in c.kinds[:3]]
        assert "MUL_MAT" in top
        assert {"FLASH_ATTN_EXT", "ROPE", "RMS_NORM"} <= {k.kind for k in c.kinds} or "SOFT_MAX" in {k.kind for k in c.kinds}
    decode = next(p for p in ops.phases if p.phase == "decode")
    tokens = fin.n_output_tokens - 1  # the first token is sampled from prefill's logits
    # decode's graph is prefill's, with other shapes: the same operations, once per token
    assert {k.kind: k.count for k in decode.kinds} == {k.kind: k.count * tokens for k in chunks[0].kinds}
    assert decode.span_ns == fin.token_parts.decode_sum_ns


@pytest.mark.model
def test_layers_mode_watches_only_each_layers_output(model_path):
    fin, n_layer = _profiled_run(model_path, "layers")
    c = next(p for p in fin.ops.phases if p.phase == "prefill_chunk")
    assert {k.kind for k in c.kinds} == {"layer", "output head"}
    assert next(k for k in c.kinds if k.kind == "layer").count == n_layer
    assert [lt.layer for lt in c.layers] == [*range(n_layer), None]


@pytest.mark.model
def test_the_report_sets_the_twin_against_the_plain_runs(tmp_path):
    out = tmp_path / "ops.json"
    r = cli("--headless", "--profile-ops", "--set", "model.n_ctx=512", "--set", "model.n_batch=64", "--set",
            'scenarios=[{name="p", prompt_tokens=96, max_tokens=4}]', "--iterations", "2", "--warmup", "0",
            "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.read_text())
    cost = rep["ops_cost"]["p@ops"]
    assert cost["plain_scenario"] == "p" and cost["ratio"] == pytest.approx(
        cost["profiled_prefill_p50_ms"] / cost["plain_prefill_p50_ms"])
    plain = [x for x in rep["runs"] if x["scenario"] == "p"]
    twins = [x for x in rep["runs"] if x["scenario"] == "p@ops"]
    assert all(x["ops"] is None for x in plain) and len(twins) == 2
    ops = twins[0]["ops"]
    assert ops["mode"] == "ops" and len(ops["chunks"]) == 2
    assert sum(k["ms"] for k in ops["prefill"]["kinds"]) == pytest.approx(ops["prefill"]["compute_ms"])
    assert 0 < twins[0]["figures"]["prefill_matmul_pct"] < 100
    assert rep["summary"]["p@ops"]["metrics"]["prefill_attention_pct"]["n"] == 2
    assert "prefill_matmul_pct" not in rep["summary"]["p"]["metrics"]  # the plain runs have no profile


def test_the_synthetic_engine_has_a_cost_model_per_operation():
    """No model needed: a profiled twin's runs carry an operation profile that holds together (the views
    and reports are tested on it), and its prefill is slower than the plain runs', as a real one is."""
    from .conftest import finished_runs, run_events

    cfg = make_config(engine={"profile_ops": "ops"}, run={"iterations": 2, "warmup": 0},
                      scenarios=[{"name": "p", "prompt_tokens": 600, "max_tokens": 3}])
    ends = finished_runs(run_events(cfg, synthetic=True))
    twins = [e for e in ends if e.scenario == "p@ops"]
    assert all(e.ops is None for e in ends if e.scenario == "p") and len(twins) == 2
    for e in twins:
        chunks = [p for p in e.ops.phases if p.phase == "prefill_chunk"]
        assert [c.span_ns for c in chunks] == list(e.prefill_chunks_ns)
        for c in chunks:
            assert sum(k.ns for k in c.kinds) == c.compute_ns == sum(lt.ns for lt in c.layers) <= c.span_ns
            assert c.kinds[0].kind == "MUL_MAT"
    plain = [e.prefill_ns for e in ends if e.scenario == "p"]
    assert min(e.prefill_ns for e in twins) > max(plain)
