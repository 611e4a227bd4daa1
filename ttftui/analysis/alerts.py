"""Threshold rules, live alerts and goodput.

A rule states what must hold, e.g. "p95 of ttft_ms for scenario medium <= 200". It is checked after
every run; when it stops holding, an ``AlertChanged(state="firing")`` event is emitted, and when it
holds again, ``state="cleared"`` (so a rule can fire, clear and fire again; each transition is one
event, never one per run). Alerts are events: they are recorded, replayed and reported like the rest.

Statistics: ``per_run`` (the run that just ended), ``mean``, ``min``, ``max`` or a percentile
``pNN`` over the scenario's counted runs (warm-up excluded). For ``itl_ms`` the aggregate statistics
pool every token gap, and ``per_run`` takes the run's worst (largest) gap.

Goodput (vLLM / DistServe style) is the share of a scenario's counted runs that meet every per-run
rule that applies to it.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ttftui.analysis.metrics import RunMetrics
from ttftui.core.events import AlertChanged, RunFinished
from ttftui.core.rules import AlertRule


def run_value(metric: str, m: RunMetrics) -> float | None:
    if metric == "itl_ms":
        return max(m.itl_ms) if m.itl_ms else None
    return m.value(metric)


def aggregate(rule: AlertRule, runs: list[RunMetrics]) -> float | None:
    """The rule's statistic over the given counted runs (NumPy linear percentiles)."""

    if rule.metric == "itl_ms":
        vals = [x for r in runs for x in r.itl_ms]
    else:
        vals = [v for r in runs if (v := r.value(rule.metric)) is not None]
    if not vals:
        return None
    arr = np.asarray(vals, dtype=float)
    if rule.statistic == "mean":
        return float(arr.mean())
    if rule.statistic == "min":
        return float(arr.min())
    if rule.statistic == "max":
        return float(arr.max())
    return float(np.percentile(arr, rule.percentile))


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:.3e}"


class AlertEvaluator:
    """Pump evaluator: called with the folded state after each run ends; returns alert events."""

    def __init__(self, rules: Iterable[AlertRule]):
        self.rules = list(rules)
        self.firing: dict[tuple[str, str], bool] = {}

    def __call__(self, state: Any, ev: Any) -> list[AlertChanged]:
        if not isinstance(ev, RunFinished) or not self.rules:
            return []
        scenario = ev.scenario
        runs = [r.metrics for r in state.runs if r.metrics is not None and r.scenario == scenario and r.metrics.counted]
        last = next((r.metrics for r in reversed(state.runs) if r.run_id == ev.run_id and r.metrics is not None), None)
        out: list[AlertChanged] = []
        for rule in self.rules:
            if rule.scenario is not None and rule.scenario != scenario:
                continue
            if len(runs) < rule.min_runs or last is None or not last.counted:
                continue
            observed = run_value(rule.metric, last) if rule.statistic == "per_run" else aggregate(rule, runs)
            if observed is None:
                continue
            ok = rule.holds(observed)
            key = (rule.name, scenario)
            was = self.firing.get(key, False)
            if ok == (not was):
                continue  # no transition
            self.firing[key] = not ok
            state_name = "cleared" if ok else "firing"
            msg = (f"{rule.severity} {rule.name}: {scenario} {rule.statistic} {rule.metric} = {_fmt(observed)} "
                   f"(must be {rule.op} {rule.value:g}; n={len(runs)})")
            out.append(AlertChanged(
                t_ns=ev.t_ns, rule=rule.name, state=state_name, severity=rule.severity, scenario=scenario,
                metric=rule.metric, statistic=rule.statistic, op=rule.op, threshold=rule.value, value=observed,
                run_id=ev.run_id, message=msg,
            ))
        return out


def per_run_rules(rules: Iterable[AlertRule], scenario: str) -> list[AlertRule]:
    """The per-run rules (SLOs) that apply to a scenario."""
    return [r for r in rules if r.statistic == "per_run" and r.scenario in (None, scenario)]


def meets_every(rules: list[AlertRule], m: RunMetrics) -> bool:
    """The run met every one of these per-run rules (a metric it lacks does not meet its rule)."""
    for rule in rules:
        v = run_value(rule.metric, m)
        if v is None or not rule.holds(v):
            return False
    return True


def goodput(rules: Iterable[AlertRule], scenario: str, runs: list[RunMetrics]) -> float | None:
    """% of counted runs meeting every per-run rule for the scenario; None without such rules."""
    per_run = per_run_rules(rules, scenario)
    counted = [m for m in runs if m.counted]
    if not per_run or not counted:
        return None
    return sum(meets_every(per_run, m) for m in counted) / len(counted) * 100.0


SEVERITY_RANK = {"warning": 1, "critical": 2}


def fired(alerts: Iterable[AlertChanged], at_least: str) -> list[AlertChanged]:
    """Firing transitions of at least this severity (``warning`` includes ``critical``)."""
    need = SEVERITY_RANK[at_least]
    return [a for a in alerts if a.state == "firing" and SEVERITY_RANK[a.severity] >= need]




def latest_alerts(alerts: Iterable[AlertChanged]) -> dict[tuple[str, str | None], tuple[AlertChanged, int]]:
    """Per (rule, scenario): its latest transition and how many times it fired, in the order the
    rules first changed (the report's alert_status, the status bar, the alerts panel)."""
    out: dict[tuple[str, str | None], tuple[AlertChanged, int]] = {}
    for ev in alerts:
        key = (ev.rule, ev.scenario)
        fired = out[key][1] if key in out else 0
        out[key] = (ev, fired + (ev.state == "firing"))
    return out


def firing(alerts: Iterable[AlertChanged], severity: str | None = None) -> list[AlertChanged]:
    """The rules whose latest transition is "firing" (optionally of one severity)."""
    return [a for a, _ in latest_alerts(alerts).values()
            if a.state == "firing" and (severity is None or a.severity == severity)]
