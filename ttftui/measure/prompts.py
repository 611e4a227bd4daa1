"""Prompts of an exact token length, built from real text.

A scenario that says ``prompt_tokens = 512`` must feed exactly 512 tokens to prefill, counted by the
model's own tokenizer *as the engine will tokenize it* (special tokens and chat template included).
We take real prose (the bundled corpus, or the scenario's own text), cut it at a token boundary,
turn it back into text and re-tokenize; BPE merges at the cut can shift the count by one or two,
so the cut is adjusted until the round trip gives exactly N.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Callable, Protocol

from ttftui.core.config import ScenarioConfig
from ttftui.core.errors import ConfigError, PromptTooLong
from ttftui.core.inputs import MAX_PROMPT_BYTES, InputRefused, read_regular


class PromptTokenizer(Protocol):
    def tokenize(self, text: str, *, chat: bool) -> list[int]:
        """Tokens exactly as the engine's timed tokenize phase will produce them."""

    def content_tokens(self, text: str, *, chat: bool) -> list[int]:
        """Tokens of the text alone, no BOS/template (used to cut at token boundaries); special
        tokens are parsed exactly when the timed phase parses them (chat prompts)."""

    def detokenize(self, tokens: list[int], *, chat: bool) -> str: ...


def corpus_text() -> str:
    """The bundled English prose (original text written for ttftui, no licence strings attached)."""
    return resources.files("ttftui.measure").joinpath("data/corpus.txt").read_text(encoding="utf-8")


def scenario_source_text(s: ScenarioConfig) -> str:
    """The text a scenario's prompt is cut from: its own prompt, its prompt file, or the corpus."""
    if s.prompt is not None:
        return s.prompt
    if s.prompt_file is not None:
        p = Path(s.prompt_file)
        try:
            text = read_regular(p, MAX_PROMPT_BYTES).decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"scenario {s.name}: prompt_file not found: {p}") from None
        except (OSError, UnicodeDecodeError, InputRefused) as e:
            raise ConfigError(f"scenario {s.name}: cannot read prompt_file {p}: {e}") from None
        if not text.strip():
            raise PromptTooLong(f"scenario {s.name}: the prompt is empty ({p})")
        return text
    return corpus_text()


def build_prompt(tok: PromptTokenizer, s: ScenarioConfig, n_ctx: int) -> tuple[str, int]:
    """Return (prompt text, its token count) for a scenario; check it fits the context."""
    source = scenario_source_text(s)
    if s.prompt_tokens is None:
        n = len(tok.tokenize(source, chat=s.chat))
        text = source
    else:
        text = exact_length_text(tok, source, s.prompt_tokens, chat=s.chat, name=s.name)
        n = s.prompt_tokens
    check_fits(s.name, n, s.max_tokens, n_ctx)
    return text, n


def check_fits(name: str, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
    if prompt_tokens <= 0:
        raise PromptTooLong(f"scenario {name}: the prompt is empty (0 tokens)")
    if prompt_tokens + max_tokens > n_ctx:
        raise PromptTooLong(
            f"scenario {name}: prompt_tokens + max_tokens = {prompt_tokens} + {max_tokens} = "
            f"{prompt_tokens + max_tokens} exceeds the context n_ctx = {n_ctx} "
            "(raise model.n_ctx or shorten the scenario)"
        )


def exact_length_text(
    tok: PromptTokenizer, source: str, n_tokens: int, *, chat: bool, name: str = "prompt"
) -> str:
    overhead = len(tok.tokenize("", chat=chat))
    if overhead >= n_tokens:
        raise PromptTooLong(
            f"scenario {name}: prompt_tokens = {n_tokens} is too small; the special tokens"
            f"{' and chat template' if chat else ''} alone take {overhead}"
        )
    content = tok.content_tokens(source, chat=chat)
    if not content:
        raise PromptTooLong(f"scenario {name}: the prompt is empty")
    need = n_tokens + 16
    if len(content) < need:  # repeat the text, paragraph-separated, and tokenize it as a whole
        unit = source.strip() + "\n\n"
        content = tok.content_tokens(unit * (need // len(content) + 2), chat=chat)
    count: Callable[[str], int] = lambda t: len(tok.tokenize(t, chat=chat))
    k = n_tokens - overhead
    tried: set[int] = set()
    for _ in range(64):
        if k <= 0 or k > len(content) or k in tried:
            break
        tried.add(k)
        text = tok.detokenize(content[:k], chat=chat)
        n = count(text)
        if n == n_tokens:
            return text
        k += n_tokens - n
    # Merges can make a length unreachable by whole-token cuts (e.g. "\n" + "\n" -> "\n\n" at
    # the end). Try nearby cuts with a small neutral ending instead.
    base = n_tokens - overhead
    for k in sorted(range(max(1, base - 4), min(len(content), base + 4) + 1), key=lambda x: abs(x - base)):
        stem = tok.detokenize(content[:k], chat=chat)
        for end in ("", " ", ".", ",", "\n", " and", " the"):
            for cand in (stem + end, stem.rstrip() + end):
                if cand.strip() and count(cand) == n_tokens:
                    return cand
    raise PromptTooLong(f"scenario {name}: cannot build a prompt of exactly {n_tokens} tokens from its text")


class _ContentOnly:
    """A tokenizer whose ``tokenize`` is the text's own tokens (no BOS, no template): a message that
    is appended to a conversation's tokens."""

    def __init__(self, tok: PromptTokenizer):
        self.tok = tok

    def tokenize(self, text: str, *, chat: bool) -> list[int]:
        return self.tok.content_tokens(text, chat=False)

    def content_tokens(self, text: str, *, chat: bool) -> list[int]:
        return self.tok.content_tokens(text, chat=False)

    def detokenize(self, tokens: list[int], *, chat: bool) -> str:
        return self.tok.detokenize(tokens, chat=False)


def conversation_messages(tok: PromptTokenizer, s: ScenarioConfig, n_sys: int | None = None,
                          count: int | None = None) -> tuple[str, list[str]]:
    """A conversation's system prompt and its user messages, turn by turn: consecutive stretches of the
    scenario's prose (the corpus by default), each exactly ``system_tokens`` / ``user_tokens`` tokens
    as the text's own tokens (no BOS: they are appended to the conversation). ``n_sys`` and ``count``
    (a shared prefix's length, its requests' messages) override the scenario's system_tokens and turns."""
    turns, n_user = count or s.turns or 1, s.user_tokens or 1
    n_sys = s.system_tokens if n_sys is None else n_sys
    content = tok.content_tokens(scenario_source_text(s), chat=False)
    if not content:
        raise PromptTooLong(f"scenario {s.name}: the prompt is empty")
    need = n_sys + turns * n_user + 64 * (turns + 1)
    stream = content * (need // len(content) + 1)
    only = _ContentOnly(tok)
    out: list[str] = []
    at = 0
    for n in ([n_sys] if n_sys else []) + [n_user] * turns:
        source = tok.detokenize(stream[at:at + n + 32], chat=False)
        out.append(exact_length_text(only, source, n, chat=False, name=s.name))
        at += n + 32
    return (out[0] if n_sys else ""), out[1:] if n_sys else out
