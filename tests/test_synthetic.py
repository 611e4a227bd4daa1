"""The synthetic engine: same events as the real one, deterministic, documented cost model, labelled."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
from ttftui.core.events import EngineReady, Notice, RunFinished, TokenEmitted
from ttftui.analysis.reducer import fold, session_stats

from .conftest import make_config, run_events


def cfg(**run):
    return make_config(run={"iterations": 3, "warmup": 1, **run},
                       scenarios=[{"name": "short", "prompt_tokens": 128, "max_tokens": 20},
                                  {"name": "long", "prompt_tokens": 2048, "max_tokens": 20}])


def test_labelled_synthetic_with_reason():
    evs = run_events(cfg(), synthetic=True)
    ready = next(e for e in evs if isinstance(e, EngineReady))
    assert ready.synthetic and ready.engine == "synthetic" and ready.device.kind == "synthetic"
    assert "--synthetic" in ready.synthetic_reason
    assert any(isinstance(e, Notice) and "SYNTHETIC" in e.message for e in evs)


def test_same_seed_same_numbers_other_seed_other_numbers():
    a = [e for e in run_events(cfg(seed=1), synthetic=True) if isinstance(e, RunFinished)]
    b = [e for e in run_events(cfg(seed=1), synthetic=True) if isinstance(e, RunFinished)]
    c = [e for e in run_events(cfg(seed=2), synthetic=True) if isinstance(e, RunFinished)]
    assert a == b
    assert [x.ttft_ns for x in a] != [x.ttft_ns for x in c]


def test_components_add_up_and_prefill_grows_faster_than_linearly():
    s = fold(run_events(cfg(), synthetic=True))
    for r in s.runs:
        m = r.metrics
        parts = m.tokenize_ms + m.cache_prep_ms + m.prefill_ms + m.first_sample_ms + m.first_detok_ms
        assert parts + m.unaccounted_ms == pytest.approx(m.ttft_ms)
        assert 0 <= m.unaccounted_pct < 1
    st = session_stats(s, [50])
    short, long = st["short"].metrics["prefill_ms"].mean, st["long"].metrics["prefill_ms"].mean
    assert long / short > 2048 / 128  # the quadratic attention term
    assert st["long"].metrics["itl_ms"].mean > st["short"].metrics["itl_ms"].mean  # decode slows with depth
    assert [r.metrics.prefill_chunk_tokens for r in s.runs if r.scenario == "long"][0] == (512, 512, 512, 512)


def test_cost_model_matches_its_documented_formula_without_jitter():
    c = CostModel(jitter=0.0, spike_prob=0.0)
    conf = make_config(model={"n_batch": 512}, scenarios=[{"name": "x", "prompt_tokens": 600, "max_tokens": 3}])
    eng = SyntheticEngine(conf, "test", cost=c)
    eng.load()
    fin = eng.run(eng.prepare(conf.scenarios[0], 0), 1, False, lambda e: None, threading.Event())
    expect = [c.prefill_fixed_ms + c.prefill_per_token_ms * m + c.prefill_attn_ms * m * (d + m / 2)
              for d, m in ((0, 512), (512, 88))]
    assert [ns / 1e6 for ns in fin.prefill_chunks_ns] == pytest.approx(expect, rel=1e-6)
    assert fin.first_sample_ns / 1e6 == pytest.approx(c.sample_ms)


def test_stress_model_streams_at_the_requested_rate():
    conf = make_config(scenarios=[{"name": "x", "prompt_tokens": 16, "max_tokens": 501}])
    eng = SyntheticEngine(conf, "test", cost=CostModel.with_decode_rate(5000))
    eng.load()
    toks = []
    fin = eng.run(eng.prepare(conf.scenarios[0], 0), 1, False, toks.append, threading.Event())
    gen_s = (fin.e2e_ns - fin.ttft_ns) / 1e9
    assert (fin.n_output_tokens - 1) / gen_s == pytest.approx(5000, rel=1e-3)
    assert sum(isinstance(t, TokenEmitted) for t in toks) == 501


def test_synthetic_session_never_imports_llama_cpp():
    code = ("import sys; from ttftui.cli.main import main; rc = main(['--headless', '--synthetic', '-q', "
            "'--iterations', '1', '--warmup', '0', '--scenario', 'short', '-o', '/dev/null']); "
            "print('llama_cpp' in sys.modules, 'textual' in sys.modules, rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "False", "0"], out.stderr


def test_a_synthetic_sweep_fits_chunk_time_against_kv_depth(tmp_path):
    """The cost model's attention term makes each prefill chunk's time per token grow with the depth
    it starts at: the sweep's chunk fit finds a positive slope (the real engine's is in its test)."""
    import json

    from .conftest import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text('[model]\nn_batch = 128\n[run]\niterations = 2\nwarmup = 0\n[[scenarios]]\nname = "s"\n'
                   'prompt_tokens = [256, 512, 1024, 2048]\nmax_tokens = 2\n')
    out = tmp_path / "r.json"
    r = cli("--headless", "-q", "--synthetic", "--config", str(cfg), "-o", str(out))
    assert r.returncode == 0, r.stderr
    sw = json.loads(out.read_text())["sweeps"]["s"]
    chunk = sw["chunk_per_token_vs_depth"]
    assert chunk["model"] == "a + b*n" and chunk["b"] > 0 and chunk["n_points"] == 2 * (2 + 4 + 8 + 16)
    assert sw["ttft"]["r2"] > 0.95 and sw["ttft"]["c"] > 0  # attention bends the curve upwards


def test_a_synthetic_sweep_fits_ttft_and_predicts_a_held_out_length():
    """The real-model sweep's statistical claims, where the noise is known (the cost model's 3 %
    log-normal jitter, seeded; no spikes): TTFT over seven lengths fits a + b*n + c*n² with R² > 0.99,
    and the median of the runs at a length left out of the fit lands inside that fit's 95 % prediction
    interval. (On the real model this depends on how steady the machine is: benchmarks/bench_claims.py
    sweep.)"""
    import statistics

    from ttftui.analysis.fit import polyfit
    from ttftui.report.build import build_report
    from ttftui.run.session import SessionRunner

    lengths = [16, 48, 96, 160, 224, 240, 288]
    conf = make_config(model={"n_batch": 512}, run={"iterations": 3, "warmup": 1, "order": "interleaved", "seed": 11},
                       scenarios=[{"name": "sweep", "prompt_tokens": lengths, "max_tokens": 2}])
    events: list = []
    SessionRunner(conf, lambda: SyntheticEngine(conf, "test", cost=CostModel(spike_prob=0.0)), events.append).run()
    report = build_report(fold(events)).model_dump(mode="json")
    sw = report["sweeps"]["sweep"]
    assert sw["lengths"] == lengths and sw["ttft"]["n_points"] == 21
    assert sw["ttft"]["r2"] > 0.99 and sw["ttft"]["b"] > 0 and sw["prefill"]["r2"] > 0.99
    runs = [x for x in report["runs"] if x["counted"]]
    fit_runs = [x for x in runs if x["n_prompt_tokens"] != 240]
    fit = polyfit([float(x["n_prompt_tokens"]) for x in fit_runs], [x["ttft_ms"] for x in fit_runs])
    y, lo, hi = fit.predict(240)
    held = [x["ttft_ms"] for x in runs if x["n_prompt_tokens"] == 240]
    assert len(held) == 3 and lo <= statistics.median(held) <= hi, (y, lo, hi, held)
