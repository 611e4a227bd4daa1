"""The command line as a user and CI see it: exit codes, one-line errors, clean stdout, files."""

from __future__ import annotations

import csv
import io
import json
import os
import threading

import jsonschema
import pytest

from ttftui.core.errors import all_error_classes

from .conftest import ROOT, TINY, assert_one_line_error, cli

SCHEMA = json.loads((ROOT / "schema" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    p = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    p.write_text(TINY)
    return p


@pytest.mark.model
def test_headless_real_run_writes_a_valid_report(tiny_config, tmp_path):
    out = tmp_path / "r.json"
    proc = cli("--headless", "--config", str(tiny_config), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert "REAL engine llama.cpp" in proc.stderr
    rep = json.loads(out.read_text())
    jsonschema.validate(rep, SCHEMA)
    assert rep["schema_version"] == 5 and rep["synthetic"] is False
    assert rep["model"]["quantization"] == "Q4_1" and rep["device"]["kind"] == "cpu"
    assert rep["session"]["status"] == "completed"
    assert [r["scenario"] for r in rep["runs"]] == ["a"] * 3 + ["b"] * 3
    assert rep["cold_ttft_ms"] == pytest.approx(rep["load_ms"] + rep["runs"][0]["ttft_ms"])
    for r in rep["runs"]:
        parts = sum(r[k] for k in ("tokenize_ms", "cache_prep_ms", "prefill_ms", "first_sample_ms",
                                   "first_detok_ms", "unaccounted_ms"))
        assert parts == pytest.approx(r["ttft_ms"], abs=1e-6)
        assert len(r["itl_ms"]) == r["n_output_tokens"] - 1
        # llama.cpp's own counter is read and compared (how close it comes is a speed: benchmarks/bench_claims.py)
        ll = r["llama"]
        assert ll["counters_enabled"] and ll["t_p_eval_ms"] > 0 and ll["n_p_eval"] == r["n_prompt_tokens"]
        assert ll["prefill_diff_pct"] == pytest.approx((ll["prefill_compared_ms"] / ll["t_p_eval_ms"] - 1) * 100)
    for name in ("a", "b"):
        s = rep["summary"][name]
        assert s["n_runs"] == 2 and s["n_warmup"] == 1
        t = s["metrics"]["ttft_ms"]
        assert t["n"] == 2 and t["min"] <= t["p50"] <= t["p90"] <= t["p95"] <= t["p99"] <= t["max"]
        assert s["dominant_component"] == "prefill"
    assert rep["summary"]["b"]["n_prompt_tokens"] == 70


@pytest.mark.model
def test_stdout_is_pure_json_and_csv_has_a_row_per_run(tiny_config):
    proc = cli("--headless", "--config", str(tiny_config), "--scenario", "a", "--iterations", "1", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(proc.stdout)
    assert len(rep["runs"]) == 1
    proc = cli("--headless", "-q", "--config", str(tiny_config), "--format", "csv")
    assert proc.returncode == 0 and proc.stderr == ""
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 6 and rows[0]["warmup"] == "1" and rows[1]["warmup"] == "0"
    assert float(rows[1]["ttft_ms"]) > 0 and rows[1]["synthetic"] == "0"


def test_synthetic_report_is_valid_and_says_so(tmp_path):
    out = tmp_path / "r.json"
    proc = cli("--headless", "--synthetic", "-q", "--iterations", "2", "--warmup", "0", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rep = json.loads(out.read_text())
    jsonschema.validate(rep, SCHEMA)
    assert rep["synthetic"] is True and "--synthetic" in rep["synthetic_reason"]
    assert rep["device"]["kind"] == "synthetic"
    assert any("SYNTHETIC" in n["message"] for n in rep["notices"])
    assert set(rep["summary"]) == {"short", "medium", "long"}


def test_published_schema_is_current():
    proc = cli("schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == SCHEMA, "regenerate with: ttftui schema > schema/report.schema.json"


def test_headless_path_does_not_import_textual():
    code = ("import sys; from ttftui.cli.main import main; main(['--headless', '--synthetic', '-q', '--iterations', '1', "
            "'--warmup', '0', '-o', '/dev/null']); print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize(
    "args, code, pattern",
    [
        (["--model", "/nonexistent/model.gguf"], 3, r"model file not found: /nonexistent/model.gguf"),
        (["--model", str(ROOT / "config.toml")], 4, r"is not a GGUF file"),
        (["--scenario", "nope"], 8, r"unknown scenario 'nope' \(this config defines: short, medium, long, chat@keep@t1..t3, chat@off@t1..t3\)"),
        (["--iterations", "0"], 2, r"--iterations: must be at least 1, got 0"),
        (["--iterations", "-3"], 2, r"--iterations: must be at least 1, got -3"),
        (["--warmup", "-1"], 2, r"--warmup: must be 0 or more"),
        (["--set", "scenarios=[{name='x',prompt_tokens=4000,max_tokens=200}]"], 7,
         r"prompt_tokens \+ max_tokens = 4000 \+ 200 = 4200 exceeds the context n_ctx = 4096"),
        (["--set", "scenarios=[{name='x',prompt_tokens=0,max_tokens=2}]"], 2, r"prompt_tokens: input should be greater"),
        (["--set", "scenarios=[{name='x',prompt_tokens=5,max_tokens=-2}]"], 2, r"max_tokens: input should be greater"),
        (["--set", "model.n_bacth=1"], 2, r"model.n_bacth: unknown key"),
        (["-o", "/nonexistent-dir/r.json"], 9, r"cannot write report /nonexistent-dir/r.json: folder /nonexistent-dir does not exist"),
        (["--config", "/nonexistent.toml"], 2, r"config file not found: /nonexistent.toml"),
        (["--bogus-flag"], 2, r"unrecognized arguments: --bogus-flag"),
    ],
)
def test_bad_input_one_line_distinct_exit_code(args, code, pattern, tmp_path):
    proc = cli("--headless", *args, cwd=tmp_path)
    assert_one_line_error(proc, code, pattern)
    assert proc.stdout == ""


def test_truncated_gguf(tmp_path, model_path):
    cut = tmp_path / "cut.gguf"
    with open(model_path, "rb") as src:
        cut.write_bytes(src.read(30_000_000))
    out = tmp_path / "r.json"
    proc = cli("--headless", "--model", str(cut), "-o", str(out))
    assert_one_line_error(proc, 5, r"GGUF file is truncated")
    assert not out.exists() and list(tmp_path.iterdir()) == [cut]  # nothing partial left at -o


def test_unwritable_output_folder_is_refused_before_running():
    # /proc refuses new files even to root, so this holds for every user.
    proc = cli("--headless", "--synthetic", "-o", "/proc/ttftui-report.json")
    assert_one_line_error(proc, 9, r"cannot write report /proc/ttftui-report.json")
    assert "run 1" not in proc.stderr  # refused up front, not after the session


def test_output_into_a_directory_is_refused(tmp_path):
    assert_one_line_error(cli("--headless", "--synthetic", "-o", str(tmp_path)), 9, r"is a directory")


def test_special_files_are_written_in_place_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    proc = cli("--headless", "--synthetic", "-q", "--iterations", "1", "--warmup", "0", "--scenario", "short",
               "-o", str(fifo))
    reader.join(timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(got[0])["runs"]
    assert not fifo.is_file()  # still a pipe


def test_exit_codes_are_distinct_and_documented():
    codes = [c.exit_code for c in all_error_classes()]
    assert len(codes) == len(set(codes))
    readme = (ROOT / "README.md").read_text()
    from ttftui.core.errors import exit_code_table

    assert exit_code_table() in readme, "README's exit-code table is out of date (ttftui.core.errors.exit_code_table)"


def test_definitions_in_help_and_readme():
    from ttftui.core.definitions import DEFINITIONS

    proc = cli("--help")
    assert proc.returncode == 0
    readme = (ROOT / "README.md").read_text()
    for key, text in DEFINITIONS.items():
        assert key in proc.stdout
        assert f"| {key} | {text} |" in readme, f"README definition of {key} is out of date"


def test_version():
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("ttftui ")


def test_every_package_is_in_the_wheel():
    """pyproject.toml lists packages by hand: a new subpackage missing there works in a checkout
    (editable install) and is absent from a wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "ttftui").rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
