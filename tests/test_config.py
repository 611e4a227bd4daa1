"""config.toml: documented defaults, strict validation, one-line errors naming file and key."""

from __future__ import annotations

import pytest

from ttftui.core.config import Config, load_config
from ttftui.core.errors import ConfigError

from .conftest import ROOT


def test_repository_config_documents_the_defaults():
    assert load_config(ROOT / "config.toml") == Config()


def test_default_scenarios_are_the_classic_three():
    c = Config()
    assert [(s.name, s.prompt_tokens, s.max_tokens) for s in c.scenarios] == [
        ("short", 128, 50), ("medium", 512, 100), ("long", 2048, 100)]
    assert c.report.percentiles == [50, 90, 95, 99]


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
