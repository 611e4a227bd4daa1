"""The real engine on the real SmolLM2 demo model (llama-cpp-python, CPU).

What is asserted here holds however busy or slow the machine is: identities between the measured
parts, what llama.cpp's counters say, orders and counts. How close our prefill comes to llama.cpp's
counter, how small the unaccounted rest is, how much of a token the decode step takes and how well a
sweep's fit predicts are speeds: benchmarks/bench_claims.py measures them, and the synthetic engine
(tests/test_synthetic.py) pins the behaviour behind them on its deterministic cost model."""

from __future__ import annotations

import statistics
import threading

import pytest

from ttftui.core.events import EngineReady, PhaseTimed, RunStarted, SessionFinished, TokenEmitted
from ttftui.analysis.reducer import session_stats

from .conftest import REAL_SCENARIOS, cli, finished_runs, make_config, run_events, write_config

pytestmark = pytest.mark.model


def test_engine_is_real_and_describes_the_model(real_events):
    ready = next(e for e in real_events if isinstance(e, EngineReady))
    assert ready.synthetic is False and ready.synthetic_reason is None
    assert ready.engine == "llama.cpp"
    m = ready.model
    assert m.architecture == "llama"
    assert m.quantization == "Q4_1"
    assert m.n_layers == 30 and m.n_heads == 9 and m.n_kv_heads == 3
    assert 130_000_000 < m.n_params < 140_000_000
    assert m.file_size_bytes > 90_000_000
    # K+V, f16: n_ctx 512 x 30 layers x 3 kv heads x (64 + 64) x 2 bytes
    assert m.kv_cache_bytes == 512 * 30 * 3 * 128 * 2
    assert m.n_ctx == 512
    d = ready.device
    assert d.kind == "cpu" and d.n_gpu_layers_offloaded == 0 and d.n_threads == 2
    # Whatever the build (CPU, CUDA, HIP...), the report names the one llama.cpp's system info shows.
    from ttftui.measure.engine.llama_facts import build_kind

    assert d.build == build_kind(d.system_info or "", d.gpu_offload_supported) and "CPU" in (d.system_info or "")
    assert ready.load_ms > 0
    assert next(e for e in real_events if isinstance(e, SessionFinished)).status == "completed"


def test_components_plus_unaccounted_equal_ttft(real_state):
    runs = [r.metrics for r in real_state.runs]
    assert len(runs) == len(REAL_SCENARIOS) * 4
    for m in runs:
        total = m.tokenize_ms + m.cache_prep_ms + m.prefill_ms + m.first_sample_ms + m.first_detok_ms + m.unaccounted_ms
        assert total == pytest.approx(m.ttft_ms, abs=1e-9)
        assert m.unaccounted_ms >= 0
        assert m.prefill_ms == pytest.approx(sum(m.prefill_chunks_ms), abs=1e-9)
        assert m.ttft_ms < m.e2e_ms


def test_unaccounted_is_the_share_of_ttft_no_phase_explains(real_state):
    # how small it is on this machine is a speed: benchmarks/bench_claims.py counters
    for r in real_state.runs:
        m = r.metrics
        assert m.unaccounted_pct == pytest.approx(m.unaccounted_ms / m.ttft_ms * 100)
        assert 0 <= m.unaccounted_pct < 100


def test_prefill_is_compared_with_llama_cpps_own_counter(real_state):
    """llama.cpp's perf counters are on and read for every run, and our prefill over the same tokens
    is set against them (how close the two come is a speed: benchmarks/bench_claims.py counters)."""
    for r in real_state.runs:
        m, ll = r.metrics, r.metrics.llama
        assert ll is not None and ll.counters_enabled, "llama.cpp perf counters are disabled"
        assert ll.t_p_eval_ms > 0 and ll.n_eval == m.n_output_tokens - 1 + (m.prefill_chunk_tokens[-1] == 1)
        assert 0 < ll.prefill_compared_ms <= m.prefill_ms
        assert ll.prefill_diff_pct == pytest.approx((ll.prefill_compared_ms - ll.t_p_eval_ms) / ll.t_p_eval_ms * 100)


def test_one_token_last_chunk_is_compared_like_for_like(real_state):
    chunked = [r.metrics for r in real_state.runs if r.scenario == "chunked"]
    for m in chunked:
        assert m.prefill_chunk_tokens == (32, 32, 1)
        assert m.llama.n_p_eval == 64  # llama.cpp booked the 1-token batch as eval
        assert m.llama.prefill_compared_ms == pytest.approx(sum(m.prefill_chunks_ms[:2]))


def test_prompts_have_exactly_the_configured_token_count(real_state):
    for r in real_state.runs:
        want = next(s["prompt_tokens"] for s in REAL_SCENARIOS if s["name"] == r.scenario)
        assert r.metrics.n_prompt_tokens == want
        assert r.started.prompt_tokens == want


def test_every_run_prefills_from_a_clean_cache(real_state):
    # With prefix reuse, a repeated prompt would be booked by llama.cpp as (almost) nothing.
    for r in real_state.runs:
        m = r.metrics
        assert m.llama.n_p_eval + (1 if m.prefill_chunk_tokens[-1] == 1 else 0) == m.n_prompt_tokens


def test_token_events_stream_in_order_with_itl(real_events):
    by_run: dict[int, list[TokenEmitted]] = {}
    for e in real_events:
        if isinstance(e, TokenEmitted):
            by_run.setdefault(e.run_id, []).append(e)
    for fin in finished_runs(real_events):
        toks = by_run[fin.run_id]
        assert [t.index for t in toks] == list(range(fin.n_output_tokens))
        assert all(t.dt_ns > 0 for t in toks)
        assert toks[0].dt_ns == fin.ttft_ns  # the first token's gap is its TTFT
        assert sum(t.dt_ns for t in toks) == fin.e2e_ns
        ts = [t.t_ns for t in toks]
        assert ts == sorted(ts)


def test_phase_events_arrive_in_order_before_the_first_token(real_events):
    order: dict[int, list[str]] = {}
    for e in real_events:
        if isinstance(e, PhaseTimed):
            order.setdefault(e.run_id, []).append(e.phase)
        elif isinstance(e, TokenEmitted) and e.index == 0:
            order.setdefault(e.run_id, []).append("token0")
    for phases in order.values():
        assert phases[:2] == ["tokenize", "cache_prep"]
        n_chunks = phases.count("prefill_chunk")
        assert n_chunks >= 1
        assert phases[2 + n_chunks:] == ["first_sample", "first_detok", "token0"]


def test_output_length_is_fixed_unless_stop_at_eos(real_state):
    for r in real_state.runs:
        want = next(s["max_tokens"] for s in REAL_SCENARIOS if s["name"] == r.scenario)
        assert r.metrics.n_output_tokens == want
        assert r.metrics.stop_reason == "max_tokens"


def test_greedy_is_deterministic_and_seeded_samplers_repeat(real_state):
    texts: dict[str, set[str]] = {}
    for r in real_state.runs:
        texts.setdefault(r.scenario, set()).add(r.metrics.output_text)
    assert len(texts["tiny"]) == 1  # greedy: same prompt, same output, every run
    assert len(texts["topk"]) == 1  # sampler chain reset with the same seed before each run
    assert all(texts[k] and next(iter(texts[k])) for k in texts)


def test_statistics_per_scenario(real_state):
    stats = session_stats(real_state, [50, 90, 95, 99])
    assert set(stats) == {s["name"] for s in REAL_SCENARIOS}
    for name, st in stats.items():
        assert st.n_runs == 3 and st.n_warmup == 1 and st.n_failed == 0
        ttft = st.metrics["ttft_ms"]
        assert ttft.n == 3
        p = ttft.percentiles
        assert ttft.min <= p["p50"] <= p["p90"] <= p["p95"] <= p["p99"] <= ttft.max
        assert st.metrics["itl_ms"].n == 3 * (next(s["max_tokens"] for s in REAL_SCENARIOS if s["name"] == name) - 1)
        assert st.dominant_component == "prefill"
        assert st.metrics["decode_tps"].mean > 0 and st.metrics["prefill_tps"].mean > 0


def test_warmup_runs_are_kept_but_excluded(real_state):
    warm = [r for r in real_state.runs if r.warmup]
    assert len(warm) == len(REAL_SCENARIOS)
    assert all(not r.metrics.counted for r in warm)
    assert all(r.metrics.iteration == 0 for r in warm)


def test_stop_flag_ends_a_run_between_tokens(model_path):
    """In this process (engine.host = thread) the flag set while token 4 is handed over is seen right
    after it: the run ends with exactly 5 tokens, however fast or slow the machine. (Across the engine
    host's pipe the flag lands some tokens later: tests/test_host.py, and how many is a speed measured
    by benchmarks/bench_claims.py stop.)"""
    from ttftui.measure.engine.llama import LlamaEngine
    from ttftui.measure.select import select_engine

    cfg = make_config(model={"n_ctx": 256, "n_threads": 2}, engine={"host": "thread"},
                      scenarios=[{"name": "s", "prompt_tokens": 16, "max_tokens": 200}])
    engine = select_engine(cfg)()
    assert isinstance(engine, LlamaEngine)
    engine.load()
    prep = engine.prepare(cfg.scenarios[0], 1)
    stop = threading.Event()
    seen = []

    def publish(ev):
        seen.append(ev)
        if isinstance(ev, TokenEmitted) and ev.index == 4:
            stop.set()

    fin = engine.run(prep, 1, False, publish, stop)
    engine.close()
    assert fin.stop_reason == "stopped"
    tokens = [e for e in seen if isinstance(e, TokenEmitted)]
    assert fin.n_output_tokens == len(tokens) == 5 and [t.index for t in tokens] == list(range(5))


def test_stop_at_eos_can_end_early(model_path):
    # Chat-formatted greeting: the instruct model answers briefly and emits <|im_end|>.
    cfg = make_config(model={"n_ctx": 1024, "n_threads": 2}, run={"iterations": 1, "warmup": 0},
                      scenarios=[{"name": "s", "prompt": "Say hi.", "max_tokens": 400, "chat": True, "stop_at_eos": True}])
    fin = finished_runs(run_events(cfg))[0]
    assert fin.stop_reason == "eos"
    assert fin.n_output_tokens < 400


def test_prompt_longer_than_context_is_rejected(model_path):
    from ttftui.core.errors import PromptTooLong

    cfg = make_config(model={"n_ctx": 64, "n_threads": 2}, run={"iterations": 1, "warmup": 0},
                      scenarios=[{"name": "s", "prompt": "word " * 200, "max_tokens": 4}])
    with pytest.raises(PromptTooLong, match="exceeds the context"):
        run_events(cfg)


def test_run_started_events_number_runs_per_scenario(real_events):
    starts = [e for e in real_events if isinstance(e, RunStarted)]
    assert [e.run_id for e in starts] == list(range(1, len(starts) + 1))
    for name in {s["name"] for s in REAL_SCENARIOS}:
        its = [(e.iteration, e.warmup) for e in starts if e.scenario == name]
        assert its == [(0, True), (1, False), (2, False), (3, False)]


def test_decode_breakdown_accounts_for_every_gap_between_tokens(real_state):
    """Per token after the first: llama_decode + synchronize, sampling, detokenizing and the rest of
    the loop, read back to back on one clock: their per-run means add up to the run's mean gap between
    tokens (how much of it the decode step takes is a speed: benchmarks/bench_claims.py counters)."""
    for r in real_state.runs:
        m, tp = r.metrics, r.finished.token_parts
        if m.n_output_tokens < 2:
            continue
        assert tp is not None and tp.n == m.n_output_tokens - 1
        parts = m.extra["token_decode_ms"] + m.extra["token_sample_ms"] + m.extra["token_detok_ms"] + m.extra["token_rest_ms"]
        assert parts == pytest.approx(statistics.fmean(m.itl_ms), rel=1e-6)
        assert m.extra["token_decode_ms"] > 0
        assert min(tp.decode_median_ns, tp.sample_median_ns, tp.detok_median_ns, tp.rest_median_ns) >= 0


def small_config(tmp_path, *, iterations: int, warmup: int, scenarios: str, n_batch: int = 64, n_threads: int = 2,
                 order: str = "sequential"):
    """A config file for a CLI session on the demo model: small context, 64-token chunks, 2 threads."""
    return write_config(tmp_path, f"[model]\nn_ctx = 1024\nn_batch = {n_batch}\nn_threads = {n_threads}\n[run]\n"
                                  f"iterations = {iterations}\nwarmup = {warmup}\norder = \"{order}\"\n{scenarios}")


def test_a_long_scenario_after_a_short_one_has_its_first_run_flagged_cold(model_path, tmp_path):
    """A session that starts short and then goes long: the long scenario's first counted run meets
    a new shape (a deeper KV cache, more chunks). Flagged when it is also an outlier; and
    warmup_policy = largest_first leaves no counted run that is the first of its shape."""
    import json

    from ttftui.analysis.cold import cold_runs

    cfg = small_config(tmp_path, iterations=4, warmup=0, scenarios="""
[[scenarios]]
name = "short"
prompt_tokens = 32
max_tokens = 4
[[scenarios]]
name = "long"
prompt_tokens = 600
max_tokens = 4
""")
    out = tmp_path / "r.json"
    assert cli("--headless", "-q", "--config", str(cfg), "-o", str(out)).returncode == 0
    report = json.loads(out.read_text())
    by_id = {r["run_id"]: r for r in report["runs"]}
    firsts = [r for r in report["runs"] if r["iteration"] == 0]
    for r in report["runs"]:  # a flag is only ever on a run that was the first of its shape
        assert not r["cold"] or r in firsts
    for r in firsts:
        if r["cold"]:
            assert "first run with" in r["cold_reason"] and "x the scenario's median" in r["cold_reason"]
    assert sum(s["n_cold"] for s in report["summary"].values()) == sum(r["cold"] for r in by_id.values())
    out2 = tmp_path / "r2.json"
    assert cli("--headless", "-q", "--config", str(cfg), "--set", 'run.warmup_policy="largest_first"',
               "-o", str(out2)).returncode == 0
    report2 = json.loads(out2.read_text())
    first = report2["runs"][0]
    assert first["warmup"] and first["scenario"] == "long" and first["n_prompt_tokens"] == 600
    assert not any(r["cold"] for r in report2["runs"])
    assert cold_runs([]) == {}


def test_cold_rule_on_made_up_runs():
    from dataclasses import replace

    from ttftui.analysis.cold import cold_runs

    from .conftest import made_up_run_metrics

    runs = [made_up_run_metrics(run_id=1, ttft_ms=30.0), made_up_run_metrics(run_id=2),
            made_up_run_metrics(run_id=3, ttft_ms=11.0)]
    assert list(cold_runs(runs)) == [1]  # first of its shape and 3x the others' median
    runs[0] = replace(runs[0], ttft_ms=12.0)
    assert cold_runs(runs) == {}  # first of its shape but not an outlier
    runs[0] = replace(runs[0], ttft_ms=30.0, warmup=True, counted=False)
    assert cold_runs(runs) == {}  # a warm-up is where a cold run belongs


def test_a_sweep_fits_ttft_and_predicts_a_held_out_length(tmp_path):
    """Seven prompt lengths on the real model, interleaved (run.order), one prefill chunk a run: the
    report holds the sweep's fits with their fields and a prediction with a finite interval around it
    for every length between those measured, and a fit of the runs without one length predicts it
    with an interval that contains the prediction. How well the fits fit (R²) and whether the held-out
    length lands inside its interval depend on how steady this machine's speed is:
    benchmarks/bench_claims.py sweep measures that, and tests/test_synthetic.py pins it on the
    synthetic engine, whose noise is known."""
    import json
    import math

    from ttftui.analysis.fit import polyfit

    cfg = small_config(tmp_path, iterations=2, warmup=1, n_batch=512, n_threads=1, order="interleaved", scenarios="""
[[scenarios]]
name = "sweep"
prompt_tokens = [16, 48, 96, 160, 224, 240, 288]
max_tokens = 2
""")
    out = tmp_path / "r.json"
    r = cli("--headless", "-q", "--config", str(cfg), "-o", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    sw = report["sweeps"]["sweep"]
    assert sw["lengths"] == [16, 48, 96, 160, 224, 240, 288]
    for key in ("ttft", "prefill"):
        fit = sw[key]
        assert fit["n_points"] == 14 and math.isfinite(fit["r2"]) and fit["r2"] <= 1
        assert all(math.isfinite(fit[c]) for c in ("a", "b", "c"))
    assert sw["chunk_per_token_vs_depth"] is None  # one chunk a run, all at depth 0: nothing to fit, said as null
    assert len(sw["predictions"]) == 6
    for p in sw["predictions"]:
        assert all(math.isfinite(p[k]) for k in ("ttft_ms", "low_ms", "high_ms")) and p["low_ms"] < p["ttft_ms"] < p["high_ms"]
    runs = [x for x in report["runs"] if x["counted"]]
    assert [x["n_prompt_tokens"] for x in runs[:7]] == sw["lengths"]  # interleaved: one of each length in turn
    fit_runs = [x for x in runs if x["n_prompt_tokens"] != 240]
    fit = polyfit([float(x["n_prompt_tokens"]) for x in fit_runs], [x["ttft_ms"] for x in fit_runs])
    y, lo, hi = fit.predict(240)
    assert lo is not None and hi is not None and math.isfinite(y) and lo < y < hi, (y, lo, hi)
    assert len([x for x in runs if x["n_prompt_tokens"] == 240]) == 2
