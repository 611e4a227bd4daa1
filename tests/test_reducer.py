"""The pure reducer: folding, purity, and derived per-run metrics."""

from __future__ import annotations

import pytest

from ttftui.core.events import RunFailed, RunStarted, SessionFinished, SessionStarted, TokenEmitted
from ttftui.analysis.reducer import Log, apply, fold, initial_state, session_stats

from .conftest import make_config, run_events, scripted_run, session_events


def test_run_metrics_follow_the_definitions():
    s = fold([*session_events(), *scripted_run(1, ttft=10, comps=(1, 1, 6, 1, 0), itl=(2, 4))])
    m = s.runs[0].metrics
    assert m.ttft_ms == 10 and m.unaccounted_ms == 1 and m.unaccounted_pct == 10
    assert m.itl_ms == (2.0, 4.0)
    assert m.e2e_ms == 16
    assert m.tpot_ms == pytest.approx((16 - 10) / 2)
    assert m.decode_tps == pytest.approx(2 / 6 * 1000)
    assert m.prefill_tps == pytest.approx(12 / 6 * 1000)
    assert m.output_text == "Hi there there"


def test_apply_does_not_change_the_state_it_was_given():
    evs = [*session_events(), *scripted_run(1)]
    states = [initial_state()]
    for e in evs:
        states.append(apply(states[-1], e))
    mid = states[4]  # inside run 1: started, tokenize phase, first token
    before = (mid.current.run_id, len(mid.current.tokens), len(mid.runs), mid.n_events)
    # Branch: apply a different event to the same older state, then check both branches.
    other = apply(mid, TokenEmitted(t_ns=5, run_id=1, index=1, token_id=9, text="X", dt_ns=1))
    assert (mid.current.run_id, len(mid.current.tokens), len(mid.runs), mid.n_events) == before
    assert other.current.tokens[-1].text == "X"
    assert states[-1].runs[0].metrics.output_text == "Hi there there"  # the main line is untouched


def test_log_branches_on_write():
    a = Log().append(1).append(2)
    b = a.append(3)
    c = a.append(4)
    assert a.to_list() == [1, 2] and b.to_list() == [1, 2, 3] and c.to_list() == [1, 2, 4]
    assert list(b) == [1, 2, 3] and b[-1] == 3 and b.last() == 3 and len(c) == 3


def test_warmup_and_stopped_runs_are_recorded_but_not_counted():
    evs = [*session_events(), *scripted_run(1, warmup=True, ttft=100), *scripted_run(2, ttft=10), *scripted_run(3, ttft=20),
           *scripted_run(4, ttft=999, stop="stopped")]
    s = fold(evs)
    assert len(s.runs) == 4
    st = session_stats(s, [50])["a"]
    assert st.n_runs == 2 and st.n_warmup == 1
    assert st.metrics["ttft_ms"].percentiles["p50"] == 15.0


def test_failed_runs_are_counted_separately():
    evs = [*session_events(), *scripted_run(1), RunStarted(t_ns=1, run_id=2, scenario="a", iteration=1, warmup=False,
                                                  prompt_tokens=1, max_tokens=1),
           RunFailed(t_ns=2, run_id=2, scenario="a", error="boom")]
    s = fold(evs)
    assert s.runs[1].failed == "boom"
    assert session_stats(s, [50])["a"].n_failed == 1


def test_unfinished_run_is_dropped_not_invented():
    evs = [*session_events(), *list(scripted_run(1))[:-1], *scripted_run(2)]  # run 1 never finishes (damaged input)
    s = fold(evs)
    assert [r.run_id for r in s.runs] == [2]


def test_events_for_another_run_are_ignored():
    evs = [*session_events(), *list(scripted_run(1))[:2],
           TokenEmitted(t_ns=1, run_id=99, index=0, token_id=1, text="stray", dt_ns=1)]
    s = fold(evs)
    assert len(s.current.tokens) == 0


def test_dominant_component_is_named():
    evs = [*session_events(), *scripted_run(1, ttft=10, comps=(6, 1, 2, 1, 0))]
    assert session_stats(fold(evs), [50])["a"].dominant_component == "tokenize"


def test_session_finished_ends_the_session():
    s = fold([*session_events(), *scripted_run(1), SessionFinished(t_ns=5, status="interrupted")])
    assert s.finished.status == "interrupted" and s.current is None


def test_fold_of_a_synthetic_session_is_deterministic():
    cfg = make_config(run={"iterations": 2, "warmup": 1},
                      scenarios=[{"name": "a", "prompt_tokens": 100, "max_tokens": 5}])
    e1, e2 = run_events(cfg, synthetic=True), run_events(cfg, synthetic=True)
    strip = lambda evs: [e for e in evs if not isinstance(e, SessionStarted)]  # noqa: E731 (id, wall time)
    assert strip(e1) == strip(e2)
    s1, s2 = fold(e1), fold(e2)
    assert [r.metrics for r in s1.runs] == [r.metrics for r in s2.runs]
