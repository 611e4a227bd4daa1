"""ttftui compare: real difference found, no false alarms, refusals and notes, gates and exit codes."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from ttftui.report.compare import compare_reports, load_report, parse_gate
from ttftui.core.errors import ConfigError, ReportError

from .conftest import assert_one_line_error, cli, write_config

CFG = """
[model]
n_ctx = 1024
n_threads = 1
[run]
iterations = 10
warmup = 1
[[scenarios]]
name = "p256"
prompt_tokens = 256
max_tokens = 6
"""


def _sessions(d: Path, cfg: str, values: tuple, *extra: str) -> tuple[Path, Path]:
    """One headless session per model.n_batch value in ``values``, with the config ``cfg``."""
    conf = write_config(d, cfg)
    for nb in values:
        p = cli("--headless", "-q", "--config", str(conf), *extra, "--set", f"model.n_batch={nb}",
                "-o", str(d / f"nb{nb}.json"))
        assert p.returncode == 0, p.stderr
    return d / f"nb{values[0]}.json", d / f"nb{values[1]}.json"


@pytest.fixture(scope="module")
def n_batch_reports(tmp_path_factory):
    # The synthetic engine, whose cost model charges every prefill chunk a fixed cost: n_batch 2 cuts
    # the 256-token prompt into 128 chunks instead of one, a known and deterministic slowdown (the same
    # seed, the same numbers, however busy the machine). On the real model it is a speed, measured side
    # by side in benchmarks/bench_claims.py n_batch.
    return _sessions(tmp_path_factory.mktemp("cmp"), CFG, (512, 2), "--synthetic")


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory):
    """Two short real sessions that differ in one setting: what compare says of real reports."""
    cfg = CFG.replace("iterations = 10", "iterations = 3").replace("prompt_tokens = 256", "prompt_tokens = 64")
    return _sessions(tmp_path_factory.mktemp("real"), cfg, (512, 16))


@pytest.fixture(scope="module")
def synthetic_reports(tmp_path_factory):
    d = tmp_path_factory.mktemp("syn")
    for seed in (1, 2):
        p = cli("--headless", "-q", "--synthetic", "--iterations", "8", "--set", f"run.seed={seed}",
                "-o", str(d / f"s{seed}.json"))
        assert p.returncode == 0, p.stderr
    return d / "s1.json", d / "s2.json"


def test_n_batch_difference_is_found(n_batch_reports):
    base, cand = n_batch_reports
    r = compare_reports(load_report(str(base)), load_report(str(cand)))
    row = {x["metric"]: x for x in r["rows"]}
    assert row["prefill_ms"]["significant"] and row["prefill_ms"]["verdict"] == "worse"
    assert row["prefill_tps"]["verdict"] == "worse" and row["prefill_ms"]["ratio"] > 1.05
    assert not row["decode_tps"]["significant"]  # the chunking changes the prefill alone
    assert any("model.n_batch 512 -> 2" in n for n in r["notes"])
    assert sum("SYNTHETIC" in n for n in r["notes"]) == 2
    p = cli("compare", str(base), str(cand), "--max-regression", "prefill_ms.p50=2%")
    assert p.returncode == 1
    assert "gate FAIL: p256:prefill_ms.p50 <= 2% worse" in p.stdout
    assert p.stderr.startswith("ttftui: 1 regression gate(s) failed")
    # a gate above the regression measured passes
    loose = math.ceil((row["prefill_ms"]["ratio"] - 1) * 100) + 1
    assert cli("compare", str(base), str(cand), "--max-regression", f"prefill_ms.p50={loose}%").returncode == 0


@pytest.mark.model
def test_real_reports_compare_with_their_settings_and_gates(real_reports):
    """Whatever this machine's speed made of them: real reports are compared metric by metric with a
    p-value and a verdict, the setting that differs is named, nothing is called synthetic, and the
    exit code follows the gate's result."""
    base, cand = real_reports
    r = compare_reports(load_report(str(base)), load_report(str(cand)))
    assert any("model.n_batch 512 -> 16" in n for n in r["notes"])
    assert not any("SYNTHETIC" in n or n.startswith(("models differ", "devices differ")) for n in r["notes"])
    row = {x["metric"]: x for x in r["rows"]}
    assert {"ttft_ms", "prefill_ms", "prefill_tps", "decode_tps", "itl_ms"} <= set(row)
    for x in r["rows"]:
        n = 3 * 5 if x["metric"] == "itl_ms" else 3  # gaps are pooled: 5 a run
        assert x["scenario"] == "p256" and x["n_baseline"] == x["n_candidate"] == n
        assert x["verdict"] in ("same", "better", "worse", "different") and x["significant"] == (x["verdict"] != "same")
        assert x["p_value"] is None or 0 <= x["p_adjusted"] <= 1 and x["p_value"] <= x["p_adjusted"]
    p = cli("compare", str(base), str(cand), "--json", "--max-regression", "prefill_ms.p50=2%")
    (gate,) = json.loads(p.stdout)["gates"]
    assert p.returncode == (0 if gate["passed"] else 1), p.stderr
    assert gate["regression_pct"] == pytest.approx((row["prefill_ms"]["ratio"] - 1) * 100)


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
    with pytest.raises(ReportError, match="uses report schema 0; this ttftui reads schemas 1 to 5"):
        load_report(str(tmp_path / "old.json"))
    for old in (1, 2):  # schemas 2 and 3 only added to schema 1: all of them compare
        other["schema_version"] = old
        (tmp_path / f"v{old}.json").write_text(json.dumps(other))
        assert compare_reports(load_report(str(a)), load_report(str(tmp_path / f"v{old}.json")))["rows"]
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


# --- hostile or broken input: a user error (2 or 14), never an internal error (70) or a verdict (0/1) ---

def _compare(capsys, *args: str) -> tuple[int, str, str]:
    """``ttftui compare ARGS`` in this process (fast); returns exit code, stdout, stderr."""
    from ttftui.cli.main import main

    code = main(["compare", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _assert_error(capsys, code: int, pattern: str, *args: str) -> str:
    """Exit ``code`` and exactly one line on stderr, ``ttftui: ...`` matching ``pattern``; no traceback."""
    got, _, err = _compare(capsys, *args)
    assert got == code, (got, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ttftui: ") and "Traceback" not in err, err
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


def _write(tmp_path, src, change, name: str = "m.json"):
    """A copy of the report ``src`` with ``change(data)`` applied."""
    data = json.loads(src.read_text())
    change(data)
    out = tmp_path / name
    out.write_text(json.dumps(data))
    return out


def test_gate_the_reports_cannot_answer_is_a_report_error(capsys, tmp_path, synthetic_reports):
    a, b = synthetic_reports
    line = _assert_error(capsys, 14, r"gate ttft_ms\.p77=10% cannot be evaluated: the reports have no statistic p77",
                         str(a), str(b), "--max-regression", "ttft_ms.p77=10%")
    assert "mean, sd, min, max, p50, p90, p95, p99" in line
    line = _assert_error(capsys, 14, r"gate nope:ttft_ms\.p95=10% cannot be evaluated: scenario 'nope' is in neither",
                         str(a), str(b), "--max-regression", "nope:ttft_ms.p95=10%")
    assert "scenarios in both: short, medium, long" in line
    extra = _write(tmp_path, b, lambda d: d["summary"].update(extra=d["summary"]["short"]))
    _assert_error(capsys, 14, r"scenario 'extra' is only in the candidate",
                  str(a), str(extra), "--max-regression", "extra:ttft_ms.p95=10%")
    no_itl = _write(tmp_path, b, lambda d: d["summary"]["short"]["metrics"].pop("itl_ms"), "n.json")
    _assert_error(capsys, 14, r"the candidate has no itl_ms for scenario short",
                  str(a), str(no_itl), "--max-regression", "short:itl_ms.p50=10%")


def test_gate_without_a_value_or_with_a_zero_baseline(synthetic_reports):
    a, b = synthetic_reports
    gate = [parse_gate("short:ttft_ms.p95=10%")]
    base, cand = load_report(str(a)), load_report(str(b))
    cand["summary"]["short"]["metrics"]["ttft_ms"]["p95"] = None  # e.g. no counted run on that side
    with pytest.raises(ReportError, match=r"the candidate's p95 of short:ttft_ms is null"):
        compare_reports(base, cand, gates=gate)
    cand["summary"]["short"]["metrics"]["ttft_ms"]["p95"] = 5.0
    base["summary"]["short"]["metrics"]["ttft_ms"]["p95"] = 0.0
    with pytest.raises(ReportError, match=r"baseline's p95 of short:ttft_ms is 0; a change in percent"):
        compare_reports(base, cand, gates=gate)
    cand["summary"]["short"]["metrics"]["ttft_ms"]["p95"] = 0.0
    g = compare_reports(base, cand, gates=gate)["gates"][0]
    assert g["passed"] and g["regression_pct"] == 0.0 and "no change" in g["message"]


def test_gate_usage_errors(capsys, synthetic_reports):
    for bad in ("ttft_ms.foo=10%", "ttft_ms.n=10%", "ttft_ms.p101=10%", "ttft_ms.P95=10%", "ttft_ms.p95=nan%",
                "ttft_ms.p95=inf%", "ttft_ms.p95=-5%", "ttft_ms.p95=1.2.3%", "ttft_ms.p95=", "ttft_ms.p95=1e3%",
                "ttft_ms.p95=" + "9" * 400 + "%", "ttft_ms.p95=10%%"):
        with pytest.raises(ConfigError, match="--max-regression"):
            parse_gate(bad)
    for good, stat, pct in (("ttft_ms.p99_9=5.%", "p99_9", 5.0), ("itl_ms.sd=.5", "sd", 0.5),
                            ("e2e_ms.mean=0%", "mean", 0.0), ("ttft_ms.p100=1", "p100", 1.0)):
        assert (parse_gate(good)["stat"], parse_gate(good)["max_pct"]) == (stat, pct)
    a, b = synthetic_reports
    _assert_error(capsys, 2, r"'foo' is not a statistic", str(a), str(b), "--max-regression", "ttft_ms.foo=10%")
    _assert_error(capsys, 2, r"PCT must be a finite number", str(a), str(b), "--max-regression", "ttft_ms.p95=nan%")


def test_sd_gate_is_worse_when_higher_for_every_metric(synthetic_reports):
    a, b = synthetic_reports
    base, cand = load_report(str(a)), load_report(str(b))
    sd = base["summary"]["short"]["metrics"]["decode_tps"]["sd"]
    cand["summary"]["short"]["metrics"]["decode_tps"]["sd"] = sd * 1.5
    g = compare_reports(base, cand, gates=[parse_gate("short:decode_tps.sd=20%")])["gates"][0]
    assert not g["passed"] and g["regression_pct"] == pytest.approx(50.0)


def test_alpha_must_lie_strictly_between_0_and_1(capsys, synthetic_reports):
    from ttftui.report.compare import parse_alpha

    for bad in ("0", "1", "-0.1", "1.5", "nan", "inf", "-inf", "x", ""):
        with pytest.raises(ConfigError, match="--alpha"):
            parse_alpha(bad)
    assert parse_alpha("0.01") == 0.01
    a, b = synthetic_reports
    with pytest.raises(ConfigError, match="between 0 and 1"):
        compare_reports(load_report(str(a)), load_report(str(b)), alpha=float("nan"))
    _assert_error(capsys, 2, r"--alpha 'nan': expected a number between 0 and 1", str(a), str(b), "--alpha", "nan")
    _assert_error(capsys, 2, r"--alpha '2'", str(a), str(b), "--alpha", "2")
    assert _compare(capsys, str(a), str(b), "--alpha", "0.01")[0] == 0


MALFORMED = [
    (lambda d: d.update(runs="abc"), r"runs: expected a list \(got 'abc'\)"),
    (lambda d: d["runs"][3].update(ttft_ms="fast"), r"runs\.3\.ttft_ms: expected a number \(got 'fast'\)"),
    (lambda d: d["runs"][2].update(ttft_ms=True), r"runs\.2\.ttft_ms: expected a number"),
    (lambda d: d["runs"][1].update(counted="yes"), r"runs\.1\.counted: expected true or false"),
    (lambda d: d["runs"][1].update(scenario=7), r"runs\.1\.scenario: expected a string"),
    (lambda d: d["runs"][1].update(itl_ms=[1.0, "x"]), r"runs\.1\.itl_ms\.1: expected a number"),
    (lambda d: d["runs"].__setitem__(0, "run"), r"runs\.0: expected an object"),
    (lambda d: d.pop("runs"), r"runs: required key is missing"),
    (lambda d: d.pop("summary"), r"summary: required key is missing"),
    (lambda d: d.update(summary=[]), r"summary: expected an object"),
    (lambda d: d["summary"].update(short="x"), r"summary\.short: expected an object"),
    (lambda d: d["summary"]["short"]["metrics"]["ttft_ms"].update(p95="x"),
     r"summary\.short\.metrics\.ttft_ms\.p95: expected a number"),
    (lambda d: d["summary"]["short"]["metrics"]["ttft_ms"].update(n=-1), r"summary\.short\.metrics\.ttft_ms\.n"),
    (lambda d: d.update(device="gpu"), r"device: expected an object"),
    (lambda d: d["config"].update(model=[1]), r"config\.model: expected an object"),
    (lambda d: d.update(schema_version=True), r"report has no schema_version"),
    (lambda d: d.update(synthetic="no"), r"synthetic: expected true or false"),
]


def test_malformed_report_is_refused_naming_file_and_field(capsys, tmp_path, synthetic_reports):
    a, b = synthetic_reports
    for i, (change, pattern) in enumerate(MALFORMED):
        bad = _write(tmp_path, b, change, f"bad{i}.json")
        with pytest.raises(ReportError, match=rf"^{re.escape(str(bad))}:? .*{pattern}"):
            load_report(str(bad))
    line = _assert_error(capsys, 14, r"bad1\.json: runs\.3\.ttft_ms: expected a number",
                         str(a), str(tmp_path / "bad1.json"))
    assert str(tmp_path) in line
    _assert_error(capsys, 14, r"bad7\.json: runs: required key is missing", str(tmp_path / "bad7.json"), str(a))


def test_non_finite_and_out_of_range_numbers_are_refused(capsys, tmp_path, synthetic_reports):
    a, b = synthetic_reports
    text = b.read_text()
    for i, (literal, pattern) in enumerate([
        ("NaN", r"NaN is not a number"), ("Infinity", r"Infinity is not a number"),
        ("-Infinity", r"-Infinity is not a number"), ("1e400", r"1e400 is out of range"),
        ("-1e400", r"-1e400 is out of range"), ("9" * 400, r"an integer of 400 digits is out of range"),
        ("-" + "9" * 5000, r"an integer of 5000 digits"),
        ("[" * 100_000 + "]" * 100_000, r"nested too deeply"),
    ]):
        bad = tmp_path / f"n{i}.json"
        bad.write_text(re.sub(r'"ttft_ms": [0-9.]+', lambda _: f'"ttft_ms": {literal}', text, count=1))
        with pytest.raises(ReportError, match=pattern):
            load_report(str(bad))
    _assert_error(capsys, 14, r"n5\.json: an integer of 400 digits", str(a), str(tmp_path / "n5.json"))
    (tmp_path / "latin1.json").write_bytes(b'{"kind": "\xff"}')
    _assert_error(capsys, 14, r"is not UTF-8 text", str(a), str(tmp_path / "latin1.json"))


def test_only_a_regular_file_of_sane_size_is_read(capsys, tmp_path, synthetic_reports):
    from ttftui.report.compare import MAX_REPORT_BYTES

    a, _ = synthetic_reports
    _assert_error(capsys, 14, r"is a directory, not a regular file", str(a), str(tmp_path))
    huge = tmp_path / "huge.json"
    with huge.open("wb") as f:
        f.truncate(MAX_REPORT_BYTES + 1)  # sparse: costs no disk, and must not be read
    _assert_error(capsys, 14, r"huge\.json is 256\.0 MiB, more than the 256 MiB", str(a), str(huge))
    with pytest.raises(ReportError, match="report not found"):
        load_report("~no_such_user_ttftui/r.json")
    # these would block or never end if read; a subprocess, so that a regression times out instead of hanging
    specials = [p for p in ("/dev/zero",) if Path(p).exists()]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo")
        specials.append(str(tmp_path / "fifo"))
    for path in specials:
        kind = "a FIFO" if path.endswith("fifo") else "a character device"
        assert_one_line_error(cli("compare", str(a), path, timeout=60), 14, rf"is {kind}")


def test_report_text_reaches_the_terminal_escaped(capsys, tmp_path, synthetic_reports):
    a, _ = synthetic_reports
    evil = "x\x1b]52;c;AAAA\x07\ud800"

    def change(d):
        d["summary"][evil] = d["summary"]["short"]
        d["device"]["name"] = "gpu\x1b[2J"

    p = _write(tmp_path, a, change)
    code, out, err = _compare(capsys, str(a), str(p))
    assert code == 0, err
    assert "\x1b" not in out and "\ud800" not in out
    assert "x\\x1b]52;c;AAAA\\x07\\ud800" in out and "gpu\\x1b[2J" in out
    code, out, _ = _compare(capsys, str(p), str(p), "--json")
    assert code == 0 and evil in {r["scenario"] for r in json.loads(out)["rows"]}


def test_derived_numbers_stay_finite(synthetic_reports):
    a, b = synthetic_reports
    base, cand = load_report(str(a)), load_report(str(b))
    base["summary"]["short"]["metrics"]["ttft_ms"].update(p50=1e-300, p95=1e-300)
    cand["summary"]["short"]["metrics"]["ttft_ms"].update(p50=1e300, p95=1e300)
    r = compare_reports(base, cand, gates=[parse_gate("short:ttft_ms.p95=10%")])
    row = next(x for x in r["rows"] if (x["scenario"], x["metric"]) == ("short", "ttft_ms"))
    assert row["ratio"] is None and row["change_pct"] is None
    g = r["gates"][0]
    assert not g["passed"] and g["regression_pct"] is None
    json.dumps(r, allow_nan=False)  # valid JSON: no Infinity


def test_significant_difference_without_direction_is_not_called_worse(synthetic_reports):
    """The verdict's direction comes from the medians: a significant difference with equal or
    missing medians is "different", and a baseline median of 0 still has a direction."""
    a, b = synthetic_reports
    base, cand = load_report(str(a)), load_report(str(b))

    def shift(scenario: str, metric: str, base_p50, cand_p50=None) -> None:
        """The candidate's runs ten times the baseline's (a significant difference), medians as given."""
        for r in cand["runs"]:
            if r["scenario"] == scenario and r.get(metric) is not None:
                r[metric] = r[metric] * 10 + 1
        base["summary"][scenario]["metrics"][metric]["p50"] = base_p50
        if cand_p50 is not None:
            cand["summary"][scenario]["metrics"][metric]["p50"] = cand_p50

    shift("short", "ttft_ms", 5.0, 5.0)  # equal medians
    shift("medium", "ttft_ms", 0.0, 5.0)  # from 0: higher is worse for a time...
    shift("long", "decode_tps", 0.0, 5.0)  # ...and better for a rate
    shift("short", "e2e_ms", None)  # no baseline median
    rows = {(x["scenario"], x["metric"]): x for x in compare_reports(base, cand)["rows"]}
    got = [rows[k] for k in (("short", "ttft_ms"), ("medium", "ttft_ms"), ("long", "decode_tps"), ("short", "e2e_ms"))]
    assert all(x["significant"] for x in got)
    assert [x["verdict"] for x in got] == ["different", "worse", "better", "different"]
    assert rows[("medium", "ttft_ms")]["ratio"] is None  # a ratio to 0 is unknown, the direction is not
