"""Statistics against NumPy, and the rules a report relies on (n always, sd only from 2 values)."""

from __future__ import annotations

import numpy as np
import pytest

from ttftui.analysis.stats import pct_key, summarize


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_percentiles_match_numpy_linear(seed):
    rng = np.random.default_rng(seed)
    values = rng.lognormal(3.0, 0.5, size=37).tolist()
    pcts = [1, 25, 50, 90, 95, 99, 99.9]
    s = summarize(values, pcts)
    want = np.percentile(values, pcts, method="linear")
    assert [s.percentiles[pct_key(p)] for p in pcts] == pytest.approx(want.tolist(), rel=1e-12)
    assert s.n == 37
    assert s.mean == pytest.approx(np.mean(values))
    assert s.sd == pytest.approx(np.std(values, ddof=1))
    assert (s.min, s.max) == (min(values), max(values))


def test_interpolates_between_samples():
    s = summarize([10.0, 20.0, 30.0, 40.0], [50, 90])
    assert s.percentiles == {"p50": 25.0, "p90": 37.0}


def test_single_value_has_no_spread():
    s = summarize([5.0], [50, 99])
    assert s.n == 1 and s.sd is None and s.percentiles == {"p50": 5.0, "p99": 5.0}


def test_empty_and_missing_values_are_null_not_nan():
    s = summarize([None, float("nan")], [50])
    assert s.n == 0 and s.mean is None and s.percentiles == {"p50": None}


def test_pct_keys():
    assert [pct_key(p) for p in (50, 90.0, 99.9, 99.99)] == ["p50", "p90", "p99_9", "p99_99"]


def test_named_statistic_lookup():
    s = summarize([1.0, 2.0, 3.0], [95])
    assert s.get("p95") == pytest.approx(2.9)
    assert s.get("max") == 3.0 and s.get("n") == 3.0 and s.get("p42") is None
