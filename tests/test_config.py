"""config.toml: documented defaults, strict validation, one-line errors naming file and key."""

from __future__ import annotations

import os

import pytest

from ttftui.core.config import Config, load_config
from ttftui.core.errors import ConfigError

from .conftest import ROOT, cli


def test_repository_config_documents_the_defaults():
    assert load_config(ROOT / "config.toml") == Config()


def test_default_scenarios_are_the_classic_three_and_an_optional_chat():
    c = Config()
    plain = [s for s in c.scenarios if not s.optional]
    assert [(s.name, s.prompt_tokens, s.max_tokens) for s in plain] == [
        ("short", 128, 50), ("medium", 512, 100), ("long", 2048, 100)]
    chat = [s for s in c.scenarios if s.optional]
    assert [(s.name, s.conversation, s.turn, s.cache) for s in chat] == [
        (f"chat@{cache}@t{k}", f"chat@{cache}", k, cache) for cache in ("keep", "off") for k in (1, 2, 3)]
    assert {(s.kind, s.system_tokens, s.user_tokens, s.max_tokens) for s in chat} == {("conversation", 32, 128, 32)}
    assert c.report.percentiles == [50, 90, 95, 99]


def test_an_optional_scenario_runs_only_when_named():
    from ttftui.run.session import select_scenarios, without_unchosen_optional
    c = Config()
    assert select_scenarios(c, None) == ["short", "medium", "long"]
    assert select_scenarios(c, ["chat"]) == [f"chat@{cache}@t{k}" for cache in ("keep", "off") for k in (1, 2, 3)]
    assert select_scenarios(c, ["chat@off"]) == ["chat@off@t1", "chat@off@t2", "chat@off@t3"]
    # a plain session's config is the classic three: load options never meet the conversation
    assert [s.name for s in without_unchosen_optional(c, None).scenarios] == ["short", "medium", "long"]
    assert [s.name for s in without_unchosen_optional(c, ["short"]).scenarios] == ["short", "medium", "long"]
    kept = without_unchosen_optional(c, ["chat@keep"]).scenarios
    assert [s.name for s in kept] == ["short", "medium", "long", "chat@keep@t1", "chat@keep@t2", "chat@keep@t3"]


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[model]\nn_bacth = 3\n", r"c.toml: model.n_bacth: unknown key \(expected one of: path, n_ctx, n_batch"),
        ("[run]\niterations = 0\n", r"c.toml: run.iterations: input should be greater than or equal to 1 \(got 0\)"),
        ("[run]\nwarmup = -1\n", r"run.warmup: input should be greater than or equal to 0"),
        ("[model]\nn_ctx = \"big\"\n", r"model.n_ctx: input should be a valid integer"),
        ("[model]\nflash_attn = \"maybe\"\n", r"model.flash_attn: input should be 'auto', 'on' or 'off'"),
        ("[[scenarios]]\nname = \"a\"\nprompt_tokens = 10\nmax_tokens = 0\n", r"scenarios\[0\] \(a\).max_tokens: input should be greater than or equal to 1"),
        ("[[scenarios]]\nname = \"a\"\nprompt_tokens = -5\nmax_tokens = 3\n", r"scenarios\[0\] \(a\).prompt_tokens"),
        ("[[scenarios]]\nname = \"a\"\nmax_tokens = 3\n", r"needs prompt_tokens"),
        ("[[scenarios]]\nname = \"a\"\nprompt_tokens = 4\nmax_tokens = 3\nsampler = \"beam\"\n", r"scenarios\[0\] \(a\).sampler"),
        ("[[scenarios]]\nname = \"a\"\nprompt_tokens = 4\nmax_tokens = 3\nsampler = {kind = \"top_p\", p = 1.5}\n", r"scenarios\[0\] \(a\).sampler.p: input should be less than or equal to 1"),
        ("[[scenarios]]\nname = \"a\"\nprompt_tokens = 4\nmax_tokens = 3\n[[scenarios]]\nname = \"a\"\nprompt_tokens = 4\nmax_tokens = 3\n", r"repeated: a"),
        ("[report]\npercentiles = [50, 101]\n", r"percentile 101"),
        ("[telemetry]\ninterval_ms = 5\n", r"telemetry.interval_ms: input should be greater than or equal to 10"),
        ("[nonsense]\n", r"nonsense: unknown key"),
        ("[model\n", r"invalid TOML"),
    ],
)
def test_bad_values_name_file_key_and_expectation(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=expected) as ei:
        load_config(write(tmp_path, text))
    assert "\n" not in str(ei.value)
    assert ei.value.exit_code == 2


def test_more_problems_are_counted_on_the_same_line(tmp_path):
    with pytest.raises(ConfigError, match=r"\(and 1 more problem\)"):
        load_config(write(tmp_path, "[run]\niterations = 0\nwarmup = -1\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.toml")


def test_set_overrides_are_validated_and_named(tmp_path):
    c = load_config(write(tmp_path, ""), ["model.n_batch=64", "run.iterations=2", 'model.flash_attn="on"'])
    assert (c.model.n_batch, c.run.iterations, c.model.flash_attn) == (64, 2, "on")
    with pytest.raises(ConfigError, match=r"^--set run.iterations: input should be greater"):
        load_config(write(tmp_path, ""), ["run.iterations=0"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(write(tmp_path, ""), ["run.iterations"])


def test_relative_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.toml"
    p.write_text('[model]\npath = "m.gguf"\n[[scenarios]]\nname = "a"\nprompt_file = "p.txt"\nmax_tokens = 2\n')
    c = load_config(p)
    assert c.model.path == str(tmp_path / "sub" / "m.gguf")
    assert c.scenarios[0].prompt_file == str(tmp_path / "sub" / "p.txt")


def test_sampler_forms():
    c = Config.model_validate({"scenarios": [
        {"name": "g", "prompt_tokens": 4, "max_tokens": 1, "sampler": "greedy"},
        {"name": "k", "prompt_tokens": 4, "max_tokens": 1, "sampler": {"kind": "top_k", "k": 5}},
        {"name": "p", "prompt_tokens": 4, "max_tokens": 1, "sampler": "top_p"},
    ]})
    assert [s.sampler.kind for s in c.scenarios] == ["greedy", "top_k", "top_p"]
    assert c.scenarios[1].sampler.k == 5 and c.scenarios[2].sampler.p == 0.95


# ---------------------------------------------------------------------- --set values and list sizes
def _one_line(r, code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith("ttftui: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr


@pytest.mark.parametrize("value", ['3\n[model]\npath="/etc/passwd"', '3\nwarmup = 7', '"a"\n[run]\niterations = 9',
                                   "3\r\n[model]\r\nn_ctx = 99"])
def test_a_set_value_is_one_toml_value_and_never_adds_toml(tmp_path, value):
    """``--set run.iterations=$'3\\n[model]\\npath=...'``: the value is read as one TOML value on its
    own; more TOML after it (a table, a key) is refused, on the command line and in the library."""
    r = cli("--headless", "--synthetic", "-q", "--set", f"run.iterations={value}", "-o", os.devnull)
    _one_line(r, 2, "--set run.iterations", "more than one TOML value")
    with pytest.raises(ConfigError, match="more than one TOML value"):
        load_config(write(tmp_path, ""), [f"run.iterations={value}"])


def test_set_values_are_toml_values_or_text(tmp_path):
    c = load_config(write(tmp_path, ""), ["run.iterations=3 # a comment", "report.percentiles=[50,\n99]",
                                          "model.path=/models/a b.gguf", 'model.flash_attn = "on"'])
    assert (c.run.iterations, c.report.percentiles, c.model.flash_attn) == (3, [50, 99], "on")
    assert c.model.path == "/models/a b.gguf"  # not TOML: taken as text, as typed


def test_numbers_python_cannot_hold_and_counts_no_session_could_run_are_refused(tmp_path):
    """An integer of 5,000 digits is TOML, but Python refuses to convert it (ValueError, not a TOML
    error: exit 70 before), in a config file, a --set value and a theme; a run count of 10^8 would
    keep ~36 GB of runs (~36 KB a run of 50 tokens) for the report."""
    big = "9" * 5000
    r = cli("--headless", "--synthetic", "-q", "--config", str(write(tmp_path, f"[run]\niterations = {big}\n")),
            "-o", os.devnull)
    _one_line(r, 2, "not a value a config can hold", "5000 digits")
    _one_line(cli("--headless", "--synthetic", "-q", "--set", f"run.seed={big}", "-o", os.devnull), 2,
              "--set run.seed: not a value a config can hold")
    _one_line(cli("--headless", "--synthetic", "-q", "--set", "run.iterations=100000000", "-o", os.devnull), 2,
              "run.iterations", "less than or equal to 100000")
    from ttftui.tui.themes import load_theme_or_default

    theme = tmp_path / "t.toml"
    theme.write_text(f"name = \"x\"\nn = {big}\n")
    th, problem = load_theme_or_default(str(theme))
    assert th.name == "dark" and problem is not None and "invalid TOML" in problem  # the default theme, with why


def _sweep(n: int) -> str:
    return f'[[scenarios]]\nname = "a"\nmax_tokens = 2\nprompt_tokens = [{", ".join(str(i + 1) for i in range(n))}]\n'


@pytest.mark.parametrize("text, needle", [
    (_sweep(100_000), "100,000 values; at most 1,024"),
    ('[[scenarios]]\nname = "a"\nmax_tokens = 2\nprompt_tokens = 8\nconcurrency = [' + ", ".join(
        str(i + 1) for i in range(5000)) + "]\n", "5,000 values; at most 1,024"),
    ("".join(f'[[scenarios]]\nname = "s{i}"\nmax_tokens = 2\nprompt_tokens = [8, 9, 10, 11, 12]\n'
             for i in range(1000)), "5,000 scenarios"),
    ("[cluster]\nray = \"local\"\nmatrix = {" + ", ".join(f'"model.k{i}" = [{", ".join(map(str, range(10)))}]'
                                                        for i in range(10)) + "}\n", "10,000,000,000 combinations"),
    ("".join(f'[[alerts]]\nmetric = "ttft_ms"\nvalue = 1\nname = "r{i}"\n' for i in range(20_000)), "at most 1024"),
    ("[report]\npercentiles = [" + ", ".join(str(i / 1000) for i in range(50_000)) + "]\n", "at most 64"),
], ids=["100k prompt lengths", "5k concurrency values", "5k scenarios", "1e10 matrix cells", "20k alerts",
        "50k percentiles"])
def test_long_lists_are_refused_at_once_with_the_bound(tmp_path, text, needle):
    """A sweep of 100,000 prompt lengths (and the like) is refused, naming the bound, before anything
    is expanded: checking it costs time linear in the file (the timeout is generous; a quadratic check
    of 100,000 names took over 300 s)."""
    r = cli("--headless", "--synthetic", "-q", "--config", str(write(tmp_path, text)), "-o", os.devnull, timeout=120)
    _one_line(r, 2, needle)


def test_repeated_names_among_thousands_are_found_and_named(tmp_path):
    text = "".join(f'[[scenarios]]\nname = "s{i % 3000}"\nmax_tokens = 2\nprompt_tokens = 8\n' for i in range(4000))
    with pytest.raises(ConfigError, match=r"names must be unique; repeated: s0, s1, s10, s100, .*\(1,000 in all\)"):
        load_config(write(tmp_path, text))
