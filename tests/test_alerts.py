"""Threshold rules: parsing, every operator and statistic, hysteresis, goodput, the headless gate."""

from __future__ import annotations

import json

import pytest

from ttftui.analysis.alerts import AlertEvaluator, aggregate, goodput, run_value
from ttftui.core.rules import AlertRule
from ttftui.core.config import Config, load_config
from ttftui.core.errors import ConfigError
from ttftui.core.events import AlertChanged
from ttftui.run.pump import Pump

from .conftest import cli, scripted_run, session_events


def rule(**kw) -> AlertRule:
    kw.setdefault("metric", "ttft_ms")
    kw.setdefault("value", 100)
    return AlertRule.model_validate(kw)


def fold_with(rules, ttfts, **run_kw):
    """Pump a session whose runs have the given TTFTs through the evaluator; return alert events."""
    pump = Pump(evaluator=AlertEvaluator(rules))
    pump.feed(session_events())
    for i, t in enumerate(ttfts, start=1):
        pump.feed(scripted_run(i, ttft=t, comps=(1, 0, t - 2, 1, 0), **run_kw))
    return pump.state, [a for a in pump.state.alerts]


@pytest.mark.parametrize("op, value, observed, holds", [
    ("<", 10, 9.9, True), ("<", 10, 10, False), ("<=", 10, 10, True), ("<=", 10, 10.1, False),
    (">", 10, 10.1, True), (">", 10, 10, False), (">=", 10, 10, True), (">=", 10, 9.9, False),
])
def test_every_operator(op, value, observed, holds):
    assert rule(op=op, value=value).holds(observed) is holds


def test_every_statistic_over_runs():
    state, _ = fold_with([], [10, 20, 30, 40])
    runs = [r.metrics for r in state.runs]
    assert aggregate(rule(statistic="mean"), runs) == 25
    assert aggregate(rule(statistic="min"), runs) == 10
    assert aggregate(rule(statistic="max"), runs) == 40
    assert aggregate(rule(statistic="p50"), runs) == 25
    assert aggregate(rule(statistic="p90"), runs) == pytest.approx(37)
    assert aggregate(rule(statistic="p99.9"), runs) == pytest.approx(39.97)
    assert run_value("ttft_ms", runs[-1]) == 40
    assert run_value("itl_ms", runs[-1]) == 3  # per-run ITL = the run's worst gap
    assert aggregate(rule(metric="itl_ms", statistic="max"), runs) == 3  # pooled gaps


@pytest.mark.parametrize("bad, pattern", [
    ({"metric": "ttft"}, r"alerts\[0\] \(r1\).metric: unknown metric 'ttft'"),
    ({"statistic": "p101"}, r"alerts\[0\] \(r1\).statistic: unknown statistic 'p101'"),
    ({"statistic": "median"}, r"unknown statistic 'median'"),
    ({"op": "=="}, r"alerts\[0\] \(r1\).op: input should be '<', '<=', '>' or '>='"),
    ({"severity": "fatal"}, r"alerts\[0\] \(r1\).severity"),
    ({"min_runs": 0}, r"alerts\[0\] \(r1\).min_runs"),
    ({"scenario": "nope"}, r"alerts\[0\] \(r1\): scenario 'nope' is not defined"),
    ({"value": "fast"}, r"alerts\[0\] \(r1\).value"),
    ({"colour": "red"}, r"alerts\[0\] \(r1\).colour: unknown key"),
])
def test_rule_validation_names_the_rule(tmp_path, bad, pattern):
    r = {"name": "r1", "metric": "ttft_ms", "value": 100, **bad}
    lines = [f"{k} = {json.dumps(v)}" for k, v in r.items()]
    (tmp_path / "c.toml").write_text("[[alerts]]\n" + "\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=pattern):
        load_config(tmp_path / "c.toml")


def test_rule_names_are_derived_and_unique():
    assert rule(statistic="p95", op="<=", value=200, scenario=None).name == "p95 ttft_ms <= 200"
    with pytest.raises(Exception, match="unique"):
        Config.model_validate({"alerts": [{"metric": "ttft_ms", "value": 1}, {"metric": "ttft_ms", "value": 1}]})


def test_fires_once_clears_and_fires_again():
    r = rule(statistic="per_run", op="<=", value=50, severity="critical")
    _, alerts = fold_with([r], [40, 60, 70, 45, 42, 80, 90])
    assert [(a.state, a.run_id) for a in alerts] == [("firing", 2), ("cleared", 4), ("firing", 6)]
    assert all(isinstance(a, AlertChanged) and a.severity == "critical" for a in alerts)
    assert alerts[0].value == 60 and alerts[0].threshold == 50 and "must be <= 50" in alerts[0].message


def test_aggregate_rule_waits_for_min_runs():
    r = rule(statistic="p50", op="<", value=50, min_runs=3)
    _, alerts = fold_with([r], [90, 90, 90, 90])
    assert [(a.state, a.run_id) for a in alerts] == [("firing", 3)]


def test_warmup_runs_never_fire():
    r = rule(statistic="per_run", op="<=", value=50)
    _, alerts = fold_with([r], [999], warmup=True)
    assert alerts == []


def test_scenario_filter_and_per_scenario_instances():
    pump = Pump(evaluator=AlertEvaluator([rule(statistic="per_run", value=50), rule(statistic="max", value=15, scenario="b")]))
    pump.feed(session_events())
    pump.feed(scripted_run(1, ttft=60, comps=(1, 0, 58, 1, 0), scenario="a"))
    pump.feed(scripted_run(2, ttft=20, comps=(1, 0, 18, 1, 0), scenario="b"))
    got = [(a.rule, a.scenario, a.state) for a in pump.state.alerts]
    assert got == [("per_run ttft_ms <= 50", "a", "firing"), ("max ttft_ms <= 15 [b]", "b", "firing")]


def test_goodput_counts_runs_meeting_every_per_run_rule():
    state, _ = fold_with([], [40, 60, 45, 48])
    runs = [r.metrics for r in state.runs]
    rules = [rule(statistic="per_run", value=50), rule(statistic="p95", value=1)]  # the p95 rule is not per-run
    assert goodput(rules, "a", runs) == 75.0
    assert goodput([rule(statistic="per_run", value=50, scenario="other")], "a", runs) is None
    assert goodput([], "a", runs) is None


ALERT_CFG = """
[run]
iterations = 4
warmup = 1
[[scenarios]]
name = "short"
prompt_tokens = 128
max_tokens = 10
[[alerts]]
name = "short TTFT p95"
metric = "ttft_ms"
statistic = "p95"
op = "<="
value = {value}
scenario = "short"
severity = "{severity}"
"""


@pytest.mark.parametrize("value, severity, fail_on, code", [
    (1, "critical", "critical", 1),      # fires, gate on critical -> 1
    (1, "warning", "critical", 0),       # a warning does not trip a critical gate
    (1, "warning", "warning", 1),
    (1, "critical", "warning", 1),       # warning gate includes critical
    (100000, "critical", "critical", 0), # never fires
])
def test_headless_gate_exit_codes(tmp_path, value, severity, fail_on, code):
    (tmp_path / "c.toml").write_text(ALERT_CFG.format(value=value, severity=severity))
    out = tmp_path / "r.json"
    p = cli("--headless", "--synthetic", "--config", "c.toml", "-o", str(out), "--fail-on", fail_on, cwd=tmp_path)
    assert p.returncode == code, p.stderr
    rep = json.loads(out.read_text())  # the report is written either way
    fired = [a for a in rep["alerts"] if a["state"] == "firing"]
    assert bool(fired) == (value == 1)
    if code == 1:
        assert p.stderr.strip().splitlines()[-1].startswith("ttftui: 1 alert rule(s) of severity >=")
        assert "ALERT:" in p.stderr
    assert rep["summary"]["short"]["goodput_pct"] is None  # no per-run rule
    if fired:
        assert rep["alert_status"][0]["state"] == "firing" and rep["alert_status"][0]["times_fired"] == 1


def test_replayed_alerts_gate_the_same(tmp_path):
    (tmp_path / "c.toml").write_text(ALERT_CFG.format(value=1, severity="critical"))
    rec = tmp_path / "r.ttftrec"
    p = cli("--headless", "-q", "--synthetic", "--config", "c.toml", "--record", str(rec), "-o", "/dev/null",
            cwd=tmp_path)
    assert p.returncode == 0
    assert cli("replay", str(rec), "--headless", "--fail-on", "critical", "-o", str(tmp_path / "x.json")).returncode == 1


def test_fail_on_needs_headless():
    p = cli("--fail-on", "critical", "--synthetic")
    assert p.returncode == 2 and "needs --headless" in p.stderr
