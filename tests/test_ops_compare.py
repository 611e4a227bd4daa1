"""``ttftui compare`` of two reports profiled by operation (engine.profile_ops): prefill per operation
kind and per layer, baseline against candidate; flash attention on vs off moves the attention share.
The reports are synthetic sessions (the per-operation cost model); the real model's profiles are
tested in test_ops.py, and compared on it in benchmarks/README.md."""

from __future__ import annotations

import functools
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from ttftui.analysis.reducer import fold
from ttftui.core.config import Config
from ttftui.report.build import build_report, report_json
from ttftui.report.compare import GAPS, compare_reports, load_report, render_table
from ttftui.report.html import compare_html

from .conftest import cli

SCENARIOS = [{"name": "p", "prompt_tokens": 300, "max_tokens": 6}]
ATTENTION = {"FLASH_ATTN_EXT", "SOFT_MAX", "MUL_MAT (attention)"}


@functools.cache
def _report(flash: str, profile: str = "ops", seed: int = 3) -> str:
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"run": {"iterations": 3, "warmup": 1, "seed": seed},
                                 "engine": {"profile_ops": profile},
                                 "model": {"n_batch": 128, "flash_attn": flash}, "scenarios": SCENARIOS})
    events: list[Any] = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test data (deterministic)"), events.append).run()
    return report_json(build_report(fold(events)))


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.fixture
def on_off(tmp_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    base = load_report(_write(tmp_path, "on.json", _report("on")))
    cand = load_report(_write(tmp_path, "off.json", _report("off", seed=4)))
    return base, cand


def _medians(report: dict[str, Any], scenario: str) -> dict[str, tuple[float, float]]:
    """Each kind's median ms and share over the counted runs, computed here from the report's runs."""
    runs = [r["ops"]["prefill"] for r in report["runs"] if r["scenario"] == scenario and r["counted"]]
    kinds = {k["kind"] for p in runs for k in p["kinds"]}
    out = {}
    for kind in kinds:
        ms = [sum(k["ms"] for k in p["kinds"] if k["kind"] == kind) for p in runs]
        out[kind] = (statistics.median(ms), statistics.median(m / p["span_ms"] * 100 for m, p in zip(ms, runs)))
    gaps = [p["span_ms"] - p["compute_ms"] for p in runs]
    out[GAPS] = (statistics.median(gaps), statistics.median(g / p["span_ms"] * 100 for g, p in zip(gaps, runs)))
    return out


def test_flash_off_moves_the_attention_share_from_flash_attn_to_softmax_and_its_matmuls(on_off):
    base, cand = on_off
    rows = {r["kind"]: r for r in compare_reports(base, cand)["ops"] if r["scenario"] == "p@ops"}
    assert rows["FLASH_ATTN_EXT"]["baseline_ms"] > 0 and rows["FLASH_ATTN_EXT"]["candidate_ms"] == 0
    for kind in ("SOFT_MAX", "MUL_MAT (attention)"):
        assert rows[kind]["baseline_ms"] == 0 and rows[kind]["candidate_ms"] > 0
        assert rows[kind]["ratio"] is None  # from nothing: no ratio
    attention_b = sum(r["baseline_pct"] for k, r in rows.items() if k in ATTENTION)
    attention_c = sum(r["candidate_pct"] for k, r in rows.items() if k in ATTENTION)
    assert attention_c > attention_b + 1  # the synthetic model: 12 % with flash, 16 % without


def test_the_rows_are_the_medians_of_each_sides_runs_and_partition_the_span(on_off):
    base, cand = on_off
    result = compare_reports(base, cand)
    want_b, want_c = _medians(base, "p@ops"), _medians(cand, "p@ops")
    rows = [r for r in result["ops"] if r["scenario"] == "p@ops"]
    assert {r["kind"] for r in rows} == set(want_b) | set(want_c)
    assert rows[-1]["kind"] == GAPS  # profiling's own gaps last, the kinds by size before them
    for r in rows:
        b, c = want_b.get(r["kind"], (0.0, 0.0)), want_c.get(r["kind"], (0.0, 0.0))
        assert r["baseline_ms"] == pytest.approx(b[0]) and r["candidate_ms"] == pytest.approx(c[0])
        assert r["baseline_pct"] == pytest.approx(b[1]) and r["candidate_pct"] == pytest.approx(c[1])
        assert r["delta_ms"] == pytest.approx(c[0] - b[0])
        assert r["delta_pct_points"] == pytest.approx(c[1] - b[1])
        assert (r["n_baseline"], r["n_candidate"]) == (3, 3)
    # kinds + gaps are the whole span: the shares of each side add up to 100 (medians of 3 runs
    # whose shares are nearly equal, so within a rounding)
    assert sum(r["baseline_pct"] for r in rows) == pytest.approx(100, abs=0.5)
    assert sum(r["candidate_pct"] for r in rows) == pytest.approx(100, abs=0.5)
    # the ordinary scenario of each session has no profile, so no rows
    assert {r["scenario"] for r in result["ops"]} == {"p@ops"}


def test_every_layer_has_a_row(on_off):
    base, cand = on_off
    layers = [x for x in compare_reports(base, cand)["ops_layers"] if x["scenario"] == "p@ops"]
    n_layers = len({x["layer"] for r in base["runs"] if r.get("ops") for x in r["ops"]["prefill"]["layers"]})
    assert n_layers > 1 and [x["layer"] for x in layers] == list(range(n_layers))
    assert all(x["delta_ms"] == pytest.approx(x["candidate_ms"] - x["baseline_ms"]) for x in layers)


def test_the_terminal_table_and_the_html_show_the_section(on_off, tmp_path):
    base, cand = on_off
    result = compare_reports(base, cand)
    text = render_table(result)
    assert "inside prefill, p@ops (profiled runs, median per run, n = 3 / 3):" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("FLASH_ATTN_EXT"))
    fa = next(r for r in result["ops"] if r["kind"] == "FLASH_ATTN_EXT")
    assert float(line.split()[1]) == pytest.approx(fa["baseline_ms"], rel=0.01) and line.split()[2] == "0.000"
    assert "layers that moved most:" in text
    page = compare_html(result, "on.json", "off.json")
    assert '<h2 id="ops">Inside prefill, by operation (profiled runs)</h2>' in page
    assert "<td>SOFT_MAX</td>" in page and "<td>(profiling gaps)</td>" in page


def test_a_side_not_profiled_is_a_note_not_rows(tmp_path):
    plain = json.loads(_report("on"))
    for r in plain["runs"]:
        r["ops"] = None  # as if the twin had run without a profile
    base = load_report(_write(tmp_path, "plain.json", json.dumps(plain)))
    cand = load_report(_write(tmp_path, "off.json", _report("off")))
    result = compare_reports(base, cand)
    assert result["ops"] == [] and result["ops_layers"] == []
    assert "scenario p@ops: only the candidate was profiled by operation (no per-operation difference)" in result["notes"]
    assert "inside prefill" not in render_table(result)
    assert 'id="ops"' not in compare_html(result, "a", "b")


def test_reports_without_profiles_compare_as_before(tmp_path):
    from .tui_support import synthetic_session

    text = report_json(build_report(fold(synthetic_session(iterations=2, warmup=0))))
    a = load_report(_write(tmp_path, "a.json", text))
    result = compare_reports(a, a)
    assert result["ops"] == [] and result["ops_layers"] == [] and result["rows"]


def test_compare_on_the_command_line(tmp_path):
    a, b = _write(tmp_path, "on.json", _report("on")), _write(tmp_path, "off.json", _report("off", seed=4))
    proc = cli("compare", a, b, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {r["kind"] for r in out["ops"]} >= {"MUL_MAT", "FLASH_ATTN_EXT", "SOFT_MAX", GAPS}


def test_profile_ops_without_a_config_file_profiles_the_built_in_scenarios():
    """--profile-ops in a folder with no config.toml: the built-in scenarios get their twins too
    (they once did not: the twins were only made from a file's scenarios)."""
    cfg = Config.model_validate({"engine": {"profile_ops": "ops"}})
    names = [s.name for s in cfg.scenarios if not s.optional]
    assert names == ["short", "short@ops", "medium", "medium@ops", "long", "long@ops"]
    assert Config() == Config.model_validate({})
