"""ttftui compare: real difference found, no false alarms, refusals and notes, gates and exit codes."""

from __future__ import annotations

import json

import pytest

from ttftui.compare import compare_reports, load_report, parse_gate
from ttftui.errors import ConfigError, ReportError

from .conftest import cli
from .test_cli import assert_one_line_error

CFG = """
[model]
n_ctx = 1024
n_threads = 2
[run]
iterations = 10
warmup = 1
[[scenarios]]
name = "p256"
prompt_tokens = 256
max_tokens = 6
"""


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory):
    # n_batch 2 doubles prefill (128 llama_decode calls instead of one), an effect this shared machine's
    # noise (+-15 %, now and then a stall) cannot hide; n_batch 16 (+30 %) sometimes lost significance.
    # 10 runs a side: with 6, Holm over the table's 12 metrics needs every run of one side to be slower
    # than every run of the other.
    d = tmp_path_factory.mktemp("cmp")
    (d / "c.toml").write_text(CFG)
    for nb in (512, 2):
        p = cli("--headless", "-q", "--config", str(d / "c.toml"), "--set", f"model.n_batch={nb}",
                "-o", str(d / f"nb{nb}.json"))
        assert p.returncode == 0, p.stderr
    return d / "nb512.json", d / "nb2.json"


@pytest.fixture(scope="module")
def synthetic_reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    for seed in (1, 2):
        p = cli("--headless", "-q", "--synthetic", "--iterations", "8", "--set", f"run.seed={seed}",
                "-o", str(d / f"s{seed}.json"))
        assert p.returncode == 0, p.stderr
    return d / "s1.json", d / "s2.json"


@pytest.mark.model
def test_real_n_batch_difference_is_found(real_reports):
    base, cand = real_reports
    r = compare_reports(load_report(str(base)), load_report(str(cand)))
    row = {x["metric"]: x for x in r["rows"]}
    assert row["prefill_ms"]["significant"] and row["prefill_ms"]["verdict"] == "worse"
    assert row["prefill_tps"]["verdict"] == "worse" and row["prefill_ms"]["ratio"] > 1.05
    assert any("model.n_batch 512 -> 2" in n for n in r["notes"])
    assert not any("SYNTHETIC" in n for n in r["notes"])
    p = cli("compare", str(base), str(cand), "--max-regression", "prefill_ms.p50=2%")
    assert p.returncode == 1
    assert "gate FAIL: p256:prefill_ms.p50 <= 2% worse" in p.stdout
    assert p.stderr.startswith("ttftui: 1 regression gate(s) failed")
    assert cli("compare", str(base), str(cand), "--max-regression", "prefill_ms.p50=500%").returncode == 0


def test_same_distribution_is_not_called_different(synthetic_reports):
    a, b = synthetic_reports
    r = compare_reports(load_report(str(a)), load_report(str(b)))
    assert len(r["rows"]) == 3 * 12
    assert not [x for x in r["rows"] if x["significant"]]
    assert sum(1 for n in r["notes"] if "SYNTHETIC" in n) == 2


def test_identical_reports(synthetic_reports):
    a, _ = synthetic_reports
    r = compare_reports(load_report(str(a)), load_report(str(a)))
    assert all(x["ratio"] == 1 and not x["significant"] for x in r["rows"])


def test_json_output_and_table(synthetic_reports):
    a, b = synthetic_reports
    p = cli("compare", str(a), str(b), "--json")
    assert p.returncode == 0
    data = json.loads(p.stdout)
    assert {"rows", "notes", "gates", "alpha"} <= set(data)
    p = cli("compare", str(a), str(b))
    assert "p (Holm)" in p.stdout and "short" in p.stdout and "note: baseline is SYNTHETIC" in p.stdout


def test_refuses_other_schema_and_foreign_files(tmp_path, synthetic_reports):
    a, _ = synthetic_reports
    other = json.loads(a.read_text())
    other["schema_version"] = 0
    (tmp_path / "old.json").write_text(json.dumps(other))
    with pytest.raises(ReportError, match="cannot compare report schema 1"):
        compare_reports(load_report(str(a)), load_report(str(tmp_path / "old.json")))
    (tmp_path / "x.json").write_text('{"hello": 1}')
    assert_one_line_error(cli("compare", str(a), str(tmp_path / "x.json")), 14, r"is not a ttftui report")
    (tmp_path / "y.json").write_text("{nope")
    assert_one_line_error(cli("compare", str(a), str(tmp_path / "y.json")), 14, r"is not JSON")
    assert_one_line_error(cli("compare", str(a), str(tmp_path / "none.json")), 14, r"report not found")


def test_scenario_mismatch_is_said_out_loud(tmp_path, synthetic_reports):
    a, b = synthetic_reports
    cand = json.loads(b.read_text())
    cand["summary"].pop("long")
    cand["summary"]["extra"] = cand["summary"]["short"]
    (tmp_path / "c.json").write_text(json.dumps(cand))
    r = compare_reports(load_report(str(a)), load_report(str(tmp_path / "c.json")))
    assert any("only in baseline: long; only in candidate: extra" in n for n in r["notes"])
    assert {x["scenario"] for x in r["rows"]} == {"short", "medium"}
    none = dict(cand, summary={"zzz": cand["summary"]["short"]})
    (tmp_path / "d.json").write_text(json.dumps(none))
    with pytest.raises(ReportError, match="share no scenario"):
        compare_reports(load_report(str(a)), load_report(str(tmp_path / "d.json")))


def test_device_difference_is_flagged(tmp_path, synthetic_reports):
    a, b = synthetic_reports
    cand = json.loads(b.read_text())
    cand["device"]["name"] = "NVIDIA H100"
    cand["device"]["kind"] = "gpu"
    (tmp_path / "g.json").write_text(json.dumps(cand))
    r = compare_reports(load_report(str(a)), load_report(str(tmp_path / "g.json")))
    assert any(n.startswith("devices differ") for n in r["notes"])


def test_gate_parsing():
    assert parse_gate("ttft_ms.p95=10%") == {"scenario": None, "metric": "ttft_ms", "stat": "p95", "max_pct": 10.0}
    assert parse_gate("medium:decode_tps.p50=5")["scenario"] == "medium"
    for bad in ("ttft_ms=10%", "nope.p95=1%", "ttft_ms.p95=x%"):
        with pytest.raises(ConfigError):
            parse_gate(bad)


def test_higher_is_better_gates(synthetic_reports):
    a, b = synthetic_reports
    base, cand = load_report(str(a)), load_report(str(b))
    cand["summary"]["short"]["metrics"]["decode_tps"]["p50"] = base["summary"]["short"]["metrics"]["decode_tps"]["p50"] * 0.9
    r = compare_reports(base, cand, gates=[parse_gate("short:decode_tps.p50=5%")])
    g = r["gates"][0]
    assert not g["passed"] and g["regression_pct"] == pytest.approx(10.0)
