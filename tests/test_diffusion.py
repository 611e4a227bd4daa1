"""Diffusion models (Dream, LLaDA): the plan and selection rules, then the engine on a real llama.cpp
model built here (random weights, 2 layers, the demo model's tokenizer plus a mask token).

What must hold: each schedule's steps and commits per step follow its plan; every answer position
ends committed; greedy runs repeat exactly; the parts of each step lie inside it and TTFT's
components plus unaccounted are TTFT; the first readable token never comes before the first
committed one, and front_loaded makes it the first step's; replay rebuilds the live report; a crash
inside a step is contained like an autoregressive engine's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ttftui.core.events import DiffusionStep, EngineReady, PhaseTimed, RunFinished, TokenEmitted
from ttftui.measure.engine import diffusion_plan as plan

from .conftest import assert_one_line_error, cli, finished_runs, make_config, run_events

pytestmark = pytest.mark.model


# ---------------------------------------------------------------------- the plan, without a model
def _simulate(schedule: str, answer: int, steps: int, block_length: int = 32, eps: float = 0.001) -> list[int]:
    """Commits per step of a run whose every chosen position commits (no threshold)."""
    out = []
    for b in plan.plan_blocks(schedule, answer, steps, block_length):
        masked = b.end - b.start
        shares = plan.equal_shares(masked, b.steps) if schedule != "timestep" else []
        for k in range(b.steps):
            if masked == 0:
                break
            n = min(plan.transfer_count(schedule, k, b.steps, masked, eps, shares), masked)
            out.append(n)
            masked -= n
    return out


@pytest.mark.parametrize("schedule", ["timestep", "block", "front_loaded"])
@pytest.mark.parametrize("answer,steps", [(16, 16), (32, 8), (50, 0), (7, 20), (64, 64)])
def test_every_schedule_commits_every_position(schedule, answer, steps):
    counts = _simulate(schedule, answer, steps, block_length=8)
    assert sum(counts) == answer
    assert all(c >= 0 for c in counts)
    assert len(counts) <= max(steps or answer, len(plan.plan_blocks(schedule, answer, steps, 8)))


def test_timestep_count_is_the_cpp_formula_in_float32():
    # Dream's schedule: (1 - s/t) of what is masked; eps = 0.001 makes the first step of 16 commit 0
    assert plan.timestep_count(0, 16, 16, 0.001) == 0
    assert plan.timestep_count(15, 16, 3, 0.001) == 3  # the last step commits what is left
    t, s = 1 - 3 / 10 * 0.999, 1 - 4 / 10 * 0.999
    assert plan.timestep_count(3, 10, 70, 0.001) == int(70 * (1 - s / t))


def test_blocks_tile_the_answer_and_front_loaded_starts_with_one_position():
    blocks = plan.plan_blocks("block", 70, 14, 32)
    assert [(b.start, b.end) for b in blocks] == [(0, 32), (32, 64), (64, 70)]
    assert sum(b.steps for b in blocks) == 14
    front = plan.plan_blocks("front_loaded", 64, 64, 16)
    assert [b.end - b.start for b in front] == [1, 2, 4, 8, 16, 16, 16, 1]
    assert front[0].steps == 1 and sum(b.steps for b in front) == 64
    assert all(1 <= b.steps <= b.end - b.start for b in front)
    few = plan.plan_blocks("front_loaded", 64, 4, 16)  # fewer steps than blocks: one each
    assert all(b.steps == 1 for b in few)


def test_choose_takes_the_most_confident_ties_to_the_left_and_the_threshold_adds():
    conf = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    assert plan.choose(conf, 2).tolist() == [1, 3]
    assert plan.choose(conf, 3).tolist() == [1, 3, 2]
    assert plan.choose(conf, 1, threshold=0.4).tolist() == [1, 3, 2]
    assert plan.choose(conf, 0).tolist() == []


def test_greedy_confidences_are_the_softmax_figures():
    rng = np.random.default_rng(1)
    rows = rng.normal(0, 3, size=(5, 300)).astype(np.float32)
    p = np.exp(rows - rows.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    tok, conf = plan.pick_greedy(rows, "confidence", rng)
    assert tok.tolist() == rows.argmax(1).tolist()
    assert np.allclose(conf, p.max(1), rtol=1e-5)
    _, margin = plan.pick_greedy(rows, "margin", rng)
    top2 = np.sort(p, 1)[:, -2:]
    assert np.allclose(margin, top2[:, 1] - top2[:, 0], rtol=1e-4)
    _, ent = plan.pick_greedy(rows, "entropy", rng)
    assert np.allclose(ent, -(p * np.log(p + 1e-10)).sum(1), rtol=1e-4)


# ---------------------------------------------------------------------- the engine, on a real model
@pytest.fixture(scope="module")
def dream(tmp_path_factory) -> Path:
    from ttftui.measure.tiny_diffusion import build

    return build(tmp_path_factory.mktemp("dream") / "dream-tiny.gguf")


@pytest.fixture(scope="module")
def llada(tmp_path_factory) -> Path:
    from ttftui.measure.tiny_diffusion import build

    return build(tmp_path_factory.mktemp("llada") / "llada-tiny.gguf", arch="llada")


def _config(model: Path, *, schedule: str = "timestep", iterations: int = 2, sampler: Any = "greedy",
            answer: int = 16, **diffusion: Any) -> Any:
    return make_config(model={"path": str(model), "n_ctx": 512, "n_threads": 2},
                       run={"iterations": iterations, "warmup": 0},
                       diffusion={"schedule": schedule, **diffusion},
                       scenarios=[{"name": "d", "prompt_tokens": 24, "max_tokens": answer, "sampler": sampler}])


def _of(events: list[Any], cls: type, run_id: int) -> list[Any]:
    return [e for e in events if isinstance(e, cls) and e.run_id == run_id]


@pytest.mark.parametrize("schedule", ["timestep", "block", "front_loaded"])
def test_steps_and_commits_follow_the_schedule_and_fill_the_canvas(dream, schedule):
    events = run_events(_config(dream, schedule=schedule, block_length=8, iterations=1, steps=12))
    ready = next(e for e in events if isinstance(e, EngineReady))
    assert ready.diffusion is not None and ready.diffusion.schedule == schedule
    assert ready.diffusion.mask_token_id == 49152 and ready.diffusion.shift_logits  # Dream predicts from p - 1
    fin = finished_runs(events)[0]
    d = fin.diffusion
    assert d is not None and d.schedule == schedule and d.answer_tokens == 16 and d.canvas_tokens == 24 + 16
    assert list(d.step_commits) == _simulate(schedule, 16, 12, block_length=8)
    steps = _of(events, DiffusionStep, fin.run_id)
    assert [s.step for s in steps] == list(range(len(d.step_commits)))
    assert [len(s.positions) for s in steps] == list(d.step_commits)
    committed = [p for s in steps for p in s.positions]
    assert sorted(committed) == list(range(16))  # every position exactly once
    assert steps[-1].masked == 0
    # what was committed is what was read: the tokens, in answer order
    by_pos = {p: t for s in steps for p, t in zip(s.positions, s.token_ids)}
    tokens = _of(events, TokenEmitted, fin.run_id)
    assert [t.index for t in tokens] == list(range(16)) and [t.token_id for t in tokens] == [by_pos[i] for i in range(16)]
    assert fin.n_output_tokens == 16 and fin.prefill_ns is None and fin.first_sample_ns is None
    phases = [p.phase for p in _of(events, PhaseTimed, fin.run_id)]
    assert phases == ["tokenize", "canvas"]


def test_greedy_runs_repeat_and_the_timing_adds_up(dream):
    events = run_events(_config(dream, iterations=2))
    a, b = finished_runs(events)
    ids = [[t.token_id for t in _of(events, TokenEmitted, r.run_id)] for r in (a, b)]
    assert ids[0] == ids[1]
    for fin in (a, b):
        d = fin.diffusion
        prev = d.first_step_at_ns
        for k in range(len(d.step_forward_ns)):
            parts = d.step_forward_ns[k] + d.step_logits_ns[k] + d.step_select_ns[k] + d.step_commit_ns[k]
            assert d.step_forward_ns[k] > 0 and min(d.step_logits_ns[k], d.step_select_ns[k], d.step_commit_ns[k]) >= 0
            assert d.step_end_at_ns[k] - parts >= prev  # each step's parts lie inside it, after the last one
            prev = d.step_end_at_ns[k]
        assert d.final_at_ns == d.step_end_at_ns[-1] == fin.e2e_ns
        assert d.first_commit_step <= d.first_readable_step
        assert d.first_commit_at_ns <= d.first_readable_at_ns == fin.ttft_ns
        assert d.step_end_at_ns[d.first_readable_step - 1] == fin.ttft_ns


def test_ttft_components_and_unaccounted_are_ttft(dream):
    from ttftui.analysis.reducer import fold

    state = fold(run_events(_config(dream, iterations=2)))
    for run in state.runs:
        m, d = run.metrics, run.finished.diffusion
        parts = m.tokenize_ms + m.extra["canvas_ms"] + m.extra["step_forward_ms"] + m.extra["step_select_ms"]
        assert parts + m.unaccounted_ms == pytest.approx(m.ttft_ms, abs=1e-6)
        assert m.unaccounted_ms >= 0  # handing each step's events over: its size is the machine's (benchmarks/)
        k = d.first_readable_step
        assert m.extra["step_forward_ms"] == pytest.approx(sum(d.step_forward_ns[:k]) / 1e6)
        assert m.extra["steps_to_readable_count"] == k and m.extra["final_ms"] == pytest.approx(m.e2e_ms)
        assert m.extra["committed_tps"] > 0 and m.extra["first_commit_ms"] <= m.ttft_ms
        assert len(run.steps) == len(d.step_forward_ns)  # the reducer keeps each step


def test_front_loaded_reads_after_one_step(dream):
    events = run_events(_config(dream, schedule="front_loaded", iterations=1))
    d = finished_runs(events)[0].diffusion
    assert d.first_readable_step == 1 and d.step_commits[0] == 1


def test_a_confidence_threshold_commits_early(dream):
    events = run_events(_config(dream, iterations=1, steps=16, confidence_threshold=1e-9))
    d = finished_runs(events)[0].diffusion
    assert d.steps_planned == 16 and len(d.step_forward_ns) == 1 and d.step_commits == (16,)


def test_a_seeded_sampler_chain_repeats_and_llada_takes_blocks(llada):
    events = run_events(_config(llada, schedule="auto", sampler={"kind": "top_k", "k": 20, "temperature": 0.9},
                                iterations=2, block_length=8))
    ready = next(e for e in events if isinstance(e, EngineReady))
    assert ready.diffusion.schedule == "block" and not ready.diffusion.shift_logits  # LLaDA: its own position
    a, b = finished_runs(events)
    assert a.diffusion.sampling == "llama.cpp sampler chain" and a.diffusion.schedule == "block"
    ids = [[t.token_id for t in _of(events, TokenEmitted, r.run_id)] for r in (a, b)]
    assert ids[0] == ids[1] and len(ids[0]) == 16


def test_headless_report_has_every_diffusion_figure_and_replay_rebuilds_it(dream, tmp_path):
    out, rec = tmp_path / "d.json", tmp_path / "d.ttftrec"
    r = cli("--model", str(dream), "--headless", "--set", "model.n_ctx=512", "--set",
            'scenarios=[{name="d", prompt_tokens=24, max_tokens=12, diffusion={schedule=["timestep", "front_loaded"]}}]',
            "--iterations", "2", "--warmup", "0", "-o", str(out), "--record", str(rec))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["diffusion"]["sampling"] == "greedy"
    for name in ("d@timestep", "d@front_loaded"):
        metrics = report["summary"][name]["metrics"]
        for key in ("ttft_ms", "canvas_ms", "step_forward_ms", "step_select_ms", "first_commit_ms",
                    "steps_to_readable_count", "step_ms", "final_ms", "committed_tps"):
            assert metrics[key]["n"] == 2, (name, key)
    run = report["runs"][0]
    assert run["diffusion"]["steps"] == len(run["diffusion"]["per_step_forward_ms"]) == 12
    assert run["diffusion"]["first_readable_ms"] == run["ttft_ms"]
    fl = report["summary"]["d@front_loaded"]["metrics"]["steps_to_readable_count"]["p50"]
    assert fl == 1
    replay = cli("replay", str(rec), "--headless")
    assert replay.returncode == 0, replay.stderr
    again = json.loads(replay.stdout)
    assert again["runs"] == report["runs"] and again["summary"] == report["summary"]
    csv = cli("report", str(out), "--csv", str(tmp_path / "d.csv"))
    if csv.returncode == 0:  # the CSV has the registry's columns
        assert "steps_to_readable_count" in (tmp_path / "d.csv").read_text().splitlines()[0]


def test_a_crash_inside_a_step_is_contained(dream, tmp_path):
    out = tmp_path / "d.json"
    r = cli("--model", str(dream), "--headless", "--set", "model.n_ctx=512", "--set",
            'scenarios=[{name="d", prompt_tokens=24, max_tokens=12}]', "--iterations", "2", "--warmup", "0",
            "-o", str(out), env={"TTFTUI_ENGINE_FAULT": "SIGSEGV run=2 after=step:2"})
    assert r.returncode == 17, r.stderr
    assert "during diffusion step 4 of 12 of run 2" in r.stderr.strip().splitlines()[-1]
    report = json.loads(out.read_text())
    assert [run["run_id"] for run in report["runs"]] == [1]
    crash = report["crash"]
    assert crash["phase"] == "diffusion_step" and crash["chunk"] == 3 and crash["n_chunks"] == 12


def test_engine_kind_diffusion_refuses_an_autoregressive_model(model_path):
    r = cli("--model", str(model_path), "--headless", "--set", "engine.kind=diffusion", "--scenario", "short")
    assert_one_line_error(r, 6, r"engine.kind = diffusion, but .* is a llama model")


def test_doctor_says_diffusion_models_run_and_smoke_runs_one(dream):
    r = cli("doctor", "--model", str(dream))
    assert "diffusion models: yes — dream, llada, llada-moe, rnd1" in r.stdout, r.stdout
    assert re.search(r"smoke run .*OK — load \d+ ms, 4 diffusion steps, first readable after \d", r.stdout), r.stdout


def test_html_and_compare_take_a_diffusion_report_beside_an_autoregressive_one(dream, model_path, tmp_path):
    scen = 'scenarios=[{name="s", prompt_tokens=24, max_tokens=8}]'
    paths = {}
    for name, model in (("ar", model_path), ("diff", dream)):
        paths[name] = tmp_path / f"{name}.json"
        r = cli("--model", str(model), "--headless", "--set", "model.n_ctx=512", "--set", scen, "--iterations", "3",
                "--warmup", "0", "-o", str(paths[name]))
        assert r.returncode == 0, r.stderr
    html = tmp_path / "d.html"
    r = cli("report", str(paths["diff"]), "--html", str(html))
    assert r.returncode == 0, r.stderr
    page = html.read_text()
    assert "time to final" in page and "steps to readable" in page and "steps: forward" in page
    r = cli("compare", str(paths["ar"]), str(paths["diff"]), "--json")
    assert r.returncode in (0, 1), r.stderr  # 1: a regression was found (which side is faster is the machine's)
    rows = json.loads(r.stdout)
    text = json.dumps(rows)
    assert "ttft_ms" in text and "e2e_ms" in text


@pytest.mark.parametrize("arch", ["dream", "llada"])
def test_the_first_step_commits_what_each_positions_own_logits_say(arch, dream, llada):
    """The logits row of answer position i is found for each position on its own (llama_get_logits_ith of
    its batch index: the position before it for Dream, its own for LLaDA); the first step must commit
    the arg-max of those rows at the positions they rank most confident."""
    import threading

    from ttftui.measure.engine.choose import llama_engine
    from ttftui.measure.engine.llama import L

    model = dream if arch == "dream" else llada
    cfg = make_config(model={"path": str(model), "n_ctx": 256, "n_threads": 2}, diffusion={"schedule": "block",
                      "block_length": 4, "steps": 16}, scenarios=[{"name": "d", "prompt_tokens": 20, "max_tokens": 16}])
    eng = llama_engine(cfg, model)
    try:
        eng.load()
        prep = eng.prepare(cfg.scenarios[0], 0)
        events: list[Any] = []
        eng.run(prep, 1, False, events.append, threading.Event())
        first = next(e for e in events if isinstance(e, DiffusionStep))
        # the canvas as it was before step 1, decoded again; each position's row read on its own
        n_prompt = prep.prompt_tokens
        eng._views["token"][n_prompt:n_prompt + 16] = eng.mask_id
        assert L.llama_decode(eng.ctx, eng._batch) == 0
        shift = 1 if eng.shift_logits else 0
        rows = np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(eng.ctx, n_prompt + i - shift), shape=(eng.n_vocab,))
                         for i in range(4)])  # the first block: answer positions 0..3
        tokens, conf = plan.pick_greedy(rows, "confidence", np.random.default_rng(0))
        want = plan.choose(conf, 1)  # block 1 of 4 positions over 4 steps: one a step
        assert first.positions == tuple(want.tolist())
        assert first.token_ids == tuple(tokens[want].tolist())
    finally:
        eng.close()
