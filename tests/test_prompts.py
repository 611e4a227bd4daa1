"""Prompts of exactly N tokens for the real tokenizer, built from real text."""

from __future__ import annotations

import pytest

from ttftui.core.config import ScenarioConfig
from ttftui.core.errors import ConfigError, PromptTooLong
from ttftui.measure.prompts import build_prompt, corpus_text

from .conftest import make_config

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def engine(model_path):
    from ttftui.measure.engine.llama import LlamaEngine

    e = LlamaEngine(make_config(model={"n_ctx": 8192, "n_threads": 2}), model_path)
    e.load()
    yield e
    e.close()


def tok(engine, template=None):
    return engine.tokenizer(template)


@pytest.mark.parametrize("n", [1, 2, 3, 7, 31, 128, 129, 500, 512, 2048, 5000])
def test_plain_prompts_are_exactly_n_tokens(engine, n):
    s = ScenarioConfig(name="x", prompt_tokens=n, max_tokens=1)
    text, count = build_prompt(tok(engine), s, 8192)
    assert count == n
    assert len(tok(engine).tokenize(text, chat=False)) == n
    assert text.strip()


def test_prompt_is_real_prose_from_the_corpus(engine):
    text, _ = build_prompt(tok(engine), ScenarioConfig(name="x", prompt_tokens=64, max_tokens=1), 8192)
    assert corpus_text().startswith(text)


@pytest.mark.parametrize("n", [30, 64, 300])
def test_chat_prompts_count_the_template(engine, n):
    import llama_cpp as L

    template = L.llama_model_chat_template(engine.model, None)
    s = ScenarioConfig(name="x", prompt_tokens=n, max_tokens=1, chat=True)
    text, count = build_prompt(tok(engine, template), s, 8192)
    assert count == n
    assert len(tok(engine, template).tokenize(text, chat=True)) == n
    rendered = engine.render_chat(template, text.encode())
    assert rendered.startswith(b"<|im_start|>user\n") and rendered.endswith(b"<|im_start|>assistant\n")


def test_own_text_is_repeated_to_reach_n(engine):
    s = ScenarioConfig(name="x", prompt="Hello world.", prompt_tokens=100, max_tokens=1)
    text, count = build_prompt(tok(engine), s, 8192)
    assert count == 100 and text.count("Hello world.") > 10


def test_prompt_file(tmp_path, engine):
    f = tmp_path / "p.txt"
    f.write_text("A short prompt from a file.")
    s = ScenarioConfig(name="x", prompt_file=str(f), max_tokens=1)
    text, count = build_prompt(tok(engine), s, 8192)
    assert text == "A short prompt from a file." and count == len(tok(engine).tokenize(text, chat=False))


def test_empty_or_missing_prompt_file(tmp_path, engine):
    f = tmp_path / "empty.txt"
    f.write_text("  \n")
    with pytest.raises(PromptTooLong, match="empty"):
        build_prompt(tok(engine), ScenarioConfig(name="x", prompt_file=str(f), max_tokens=1), 8192)
    with pytest.raises(ConfigError, match="prompt_file not found"):
        build_prompt(tok(engine), ScenarioConfig(name="x", prompt_file=str(tmp_path / "no"), max_tokens=1), 8192)


def test_chat_template_alone_larger_than_n(engine):
    import llama_cpp as L

    template = L.llama_model_chat_template(engine.model, None)
    with pytest.raises(PromptTooLong, match="too small"):
        build_prompt(tok(engine, template), ScenarioConfig(name="x", prompt_tokens=3, max_tokens=1, chat=True), 8192)


@pytest.mark.parametrize("source", [None, "Über naïve café — 東京 😀.", "[bold]x[/] <|im_start|>"])
@pytest.mark.parametrize("chat", [False, True])
def test_every_length_is_reachable(engine, source, chat):
    import llama_cpp as L

    template = L.llama_model_chat_template(engine.model, None) if chat else None
    t = tok(engine, template)
    for n in range(30 if chat else 1, 160):
        text, _ = build_prompt(t, ScenarioConfig(name="x", prompt_tokens=n, max_tokens=1, prompt=source, chat=chat), 8192)
        assert len(t.tokenize(text, chat=chat)) == n, (source, chat, n)
