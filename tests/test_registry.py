"""One table of metrics (ttftui.core.registry): every view reads it, so a metric is added in one place."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from ttftui.core import registry
from ttftui.core.registry import Metric


@pytest.fixture
def with_queue_metric(monkeypatch):
    """A new per-run metric, added only to the registry (its value arrives in a run's extra figures,
    as telemetry's do)."""
    new = Metric("queue_ms", "queue", "ms", "time spent waiting for a slot (test metric)")
    metrics = (*registry.METRICS, new)
    monkeypatch.setattr(registry, "METRICS", metrics)
    monkeypatch.setattr(registry, "BY_NAME", {m.name: m for m in metrics})
    yield new
    monkeypatch.undo()
    import ttftui.report.compare
    import ttftui.core.definitions

    importlib.reload(ttftui.core.definitions)
    importlib.reload(ttftui.report.compare)


def _runs(n: int = 3):
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.analysis.reducer import fold
    from ttftui.run.session import SessionRunner

    from .conftest import make_config

    cfg = make_config(run={"iterations": n, "warmup": 0}, scenarios=[{"name": "s", "prompt_tokens": 32, "max_tokens": 4}])
    events = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test"), events.append).run()
    state = fold(events)
    runs = []
    for i, r in enumerate(state.runs):
        m = dataclasses.replace(r.metrics, extra={**r.metrics.extra, "queue_ms": 1.0 + i})
        runs.append(m)
    return runs


def test_a_metric_added_to_the_registry_reaches_every_view(with_queue_metric):
    import ttftui.report.compare
    import ttftui.core.definitions
    from ttftui.core.rules import AlertRule
    from ttftui.analysis.metrics import scenario_stats
    from ttftui.report.csv import csv_columns
    from ttftui.tui.widgets import table_metrics

    runs = _runs()
    st = scenario_stats("s", runs, 0, [50.0])
    assert st.metrics["queue_ms"].n == 3 and st.metrics["queue_ms"].mean == pytest.approx(2.0)
    assert ("queue_ms", "queue", "ms") in table_metrics()
    assert AlertRule.model_validate({"metric": "queue_ms", "value": 5}).metric == "queue_ms"
    assert "queue_ms" in csv_columns()
    importlib.reload(ttftui.core.definitions)
    assert ttftui.core.definitions.DEFINITIONS["queue_ms"] == with_queue_metric.definition
    importlib.reload(ttftui.report.compare)
    assert "queue_ms" in ttftui.report.compare.COMPARE_METRICS
    # compare tests it on the runs' own values, read where the report keeps a metric with no field of its own
    def report(path, values):
        return {"_path": path, "runs": [{"scenario": "s", "counted": True, "figures": {"queue_ms": v}} for v in values],
                "summary": {"s": {"n_prompt_tokens": 32, "metrics": {"queue_ms": {"n": len(values), "p50": values[1]}}}}}

    (row,) = ttftui.report.compare.compare_reports(report("a", [1.0, 2.0, 3.0]), report("b", [11.0, 12.0, 13.0]))["rows"]
    assert row["metric"] == "queue_ms" and row["n_baseline"] == 3 and row["p_value"] is not None


def test_the_lists_views_read_are_the_registrys():
    from ttftui.report.compare import COMPARE_METRICS, HIGHER_IS_BETTER
    from ttftui.core.definitions import DEFINITIONS
    from ttftui.core.events import COMPONENTS
    from ttftui.tui.render import component_label

    assert COMPONENTS == ("tokenize", "cache_prep", "prefill", "first_sample", "first_detok")
    assert [m.component for m in registry.components()][-1] == "unaccounted"
    assert COMPARE_METRICS[0] == "ttft_ms" and "itl_ms" in COMPARE_METRICS and "unaccounted_pct" not in COMPARE_METRICS
    assert HIGHER_IS_BETTER == {"prefill_tps", "decode_tps", "server_decode_tps", "committed_tps", "cached_tokens_count",
                                "cache_hit_pct"}
    assert component_label("cache_prep") == "cache prep" and component_label("pending") == "running"
    assert list(DEFINITIONS)[:2] == ["t0", "ttft_ms"] and "clock" in DEFINITIONS
    names = [m.name for m in registry.METRICS]
    assert len(names) == len(set(names))
    for m in registry.METRICS:  # units are in the names
        assert m.name.endswith({"ms": "_ms", "tps": "_tps", "pct": "_pct", "bytes": "_bytes", "count": "_count"}[m.unit])
