"""Request traces and prompt datasets: the files a load scenario may replay, read once, bounded,
checked line by line.

A **trace** (``trace = "file.jsonl"``) is the JSONL that AIPerf and vLLM's benchmarks replay
(Mooncake's format): one request a line, ``{"timestamp": ms, "input_length": tokens,
"output_length": tokens, "hash_ids": [...]}``. ``timestamp`` is when the request arrives (ms, in
time order); ``hash_ids`` name the request's prompt blocks of ``block_tokens`` tokens (512 in
Mooncake), so that two requests with the same leading ids share that prefix. Other keys (AIPerf's
``session_id``, ...) are left alone.

A **prompt dataset** (``prompts = "file.jsonl"``) holds the user's own prompts, one a line: a
``text`` (or ``prompt``) string, OpenAI-style ``messages`` (``[{"role": "user", "content": ...}]``)
or ShareGPT-style ``conversations`` (``[{"from": "human", "value": ...}]``); a conversation's first
user message is the prompt, as vLLM's ShareGPT benchmark takes it.

Both are read through :func:`ttftui.core.inputs.read_input` (a regular file, within
``MAX_WORKLOAD_BYTES``), every line is checked, and anything wrong is one ``ConfigError`` line
naming the file and the line. A file is parsed once per content (cached by its path, size and
modification time): the config loader, the load plan and the prompt builder all read it.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

from ttftui.core.errors import ConfigError
from ttftui.core.inputs import MiB, read_input

MAX_WORKLOAD_BYTES = 64 * MiB  # a trace or a prompt dataset as stored
MAX_TRACE_REQUESTS = 1_000_000  # lines of a trace (as many as a load scenario's requests may be)
MAX_TRACE_BLOCKS = 4_000_000  # hash ids in a whole trace
MAX_INPUT_TOKENS = 1_048_576  # one request's input_length
MAX_OUTPUT_TOKENS = 262_144  # one request's output_length
MAX_TIMESTAMP_MS = 1e12  # 31 years after the trace's start
MAX_HASH_ID = 2**63 - 1
MAX_DATASET_PROMPTS = 1_000_000
DEFAULT_BLOCK_TOKENS = 512  # Mooncake's block of hash_ids


@dataclass(frozen=True, slots=True)
class TraceRequest:
    line: int  # 1-based line of the file
    timestamp_ms: float
    input_length: int
    output_length: int
    hash_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Trace:
    path: str
    requests: tuple[TraceRequest, ...]

    def offsets_ns(self, n: int, speed: float) -> list[int]:
        """When each of the first ``n`` requests arrives, in ns after the first one, the trace's
        timestamps divided by ``speed`` (2 = twice as fast)."""
        reqs = self.requests[:n]
        if not reqs:
            return []
        t0 = reqs[0].timestamp_ms
        return [round((r.timestamp_ms - t0) * 1e6 / speed) for r in reqs]

    def check_blocks(self, block_tokens: int) -> None:
        """Every request's ``hash_ids`` fit its ``input_length`` in blocks of ``block_tokens``
        (fewer ids than blocks is allowed: the rest of the prompt is the request's own)."""
        for r in self.requests:
            k = blocks_of(r.input_length, block_tokens)
            if len(r.hash_ids) > k:
                raise ConfigError(f"{self.path}: line {r.line}: hash_ids names {len(r.hash_ids):,} blocks, but "
                                  f"input_length {r.input_length:,} holds {k:,} of {block_tokens} tokens "
                                  "(trace_block_tokens)")

    def reusable_tokens(self, n: int, block_tokens: int) -> tuple[int, int]:
        """(prompt tokens of the first ``n`` requests whose blocks an earlier request already sent,
        all their prompt tokens): what an unbounded prefix cache would serve. A request reuses its
        leading blocks up to the first one not seen before (a prefix cache serves a prefix)."""
        seen: set[object] = set()
        reused = total = 0
        for r in self.requests[:n]:
            total += r.input_length
            reused += leading_reuse(r.hash_ids, r.input_length, block_tokens, seen)
        return reused, total


def leading_reuse(blocks: Sequence[object], input_length: int, block_tokens: int, seen: set[object]) -> int:
    """A request's prompt tokens in its leading blocks already in ``seen`` (a prefix cache serves a
    prefix: up to the first block not seen before); its blocks are then added to ``seen``."""
    reused, lead = 0, True
    for j, b in enumerate(blocks):
        lead = lead and b in seen
        if lead:
            reused += min(block_tokens, input_length - j * block_tokens)
        seen.add(b)
    return reused


def blocks_of(n_tokens: int, block_tokens: int) -> int:
    return max(1, -(-n_tokens // block_tokens))


@dataclass(frozen=True, slots=True)
class DatasetPrompt:
    line: int
    text: str


@dataclass(frozen=True, slots=True)
class PromptDataset:
    path: str
    prompts: tuple[DatasetPrompt, ...]


# ---------------------------------------------------------------------- reading, cached
T = TypeVar("T")
_cache: dict[tuple[str, str, int, int], Any] = {}
_cache_lock = threading.Lock()
_CACHED_FILES = 8


def _cached(kind: str, path: str, what: str, parse: Callable[[str, bytes], T]) -> T:
    """``parse(path, data)`` of the file, once per (path, size, mtime)."""
    try:
        st = os.stat(path)
        key = (kind, os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except (OSError, ValueError):
        key = None  # read_input says what is wrong with it
    if key is not None:
        with _cache_lock:
            if key in _cache:
                return _cache[key]  # type: ignore[no-any-return]
    out = parse(path, read_input(path, MAX_WORKLOAD_BYTES, what, ConfigError))
    if key is not None:
        with _cache_lock:
            while len(_cache) >= _CACHED_FILES:
                _cache.pop(next(iter(_cache)))
            _cache[key] = out
    return out


def read_trace(path: str | os.PathLike[str]) -> Trace:
    """The trace at ``path``; ConfigError (one line, naming the file and the line) when it cannot be
    one."""
    return _cached("trace", os.fspath(path), "trace file", _parse_trace)


def read_prompts(path: str | os.PathLike[str]) -> PromptDataset:
    """The prompt dataset at ``path``; ConfigError (one line, naming the file and the line)."""
    return _cached("prompts", os.fspath(path), "prompts file", _parse_prompts)


def _lines(path: str, data: bytes) -> list[tuple[int, bytes]]:
    """(1-based line number, line) of the lines that are not blank."""
    return [(i, line) for i, line in enumerate(data.split(b"\n"), 1) if line.strip()]


def _object(path: str, i: int, raw: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: line {i}: not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{path}: line {i}: nested too deeply") from None
    except ValueError as e:  # JSONDecodeError, and an integer of thousands of digits
        msg = e.msg if isinstance(e, json.JSONDecodeError) else str(e).split(";")[0]
        col = f" (column {e.colno})" if isinstance(e, json.JSONDecodeError) else ""
        raise ConfigError(f"{path}: line {i}: not JSON: {msg}{col}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: line {i}: expected a JSON object {{...}}, got {type(doc).__name__}")
    return doc


def _shown(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _whole(path: str, i: int, doc: dict[str, Any], key: str, lo: int, hi: int, what: str) -> int:
    if key not in doc:
        raise ConfigError(f"{path}: line {i}: {key} is missing")
    v = doc[key]
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # 512.0 is 512 tokens
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{path}: line {i}: {key}: expected {what} from {lo:,} to {hi:,} (got {_shown(v)})")
    return v


def _parse_trace(path: str, data: bytes) -> Trace:
    lines = _lines(path, data)
    if not lines:
        raise ConfigError(f"{path}: no requests (the trace is empty)")
    if len(lines) > MAX_TRACE_REQUESTS:
        raise ConfigError(f"{path}: {len(lines):,} requests; at most {MAX_TRACE_REQUESTS:,} (cut the trace)")
    out: list[TraceRequest] = []
    n_blocks = 0
    last: TraceRequest | None = None
    for i, raw in lines:
        doc = _object(path, i, raw)
        if "timestamp" not in doc:
            raise ConfigError(f"{path}: line {i}: timestamp is missing (ms after the trace's start)")
        ts = doc["timestamp"]
        if isinstance(ts, bool) or not isinstance(ts, (int, float)) or not 0 <= ts <= MAX_TIMESTAMP_MS:
            raise ConfigError(f"{path}: line {i}: timestamp: expected ms from 0 to {MAX_TIMESTAMP_MS:.0e} "
                              f"(got {_shown(ts)})")
        if last is not None and ts < last.timestamp_ms:
            raise ConfigError(f"{path}: line {i}: timestamp {ts:g} is before line {last.line}'s "
                              f"{last.timestamp_ms:g} (a trace's requests are in time order)")
        n_in = _whole(path, i, doc, "input_length", 1, MAX_INPUT_TOKENS, "a number of tokens")
        n_out = _whole(path, i, doc, "output_length", 1, MAX_OUTPUT_TOKENS, "a number of tokens")
        ids = doc.get("hash_ids", [])
        if not isinstance(ids, list):
            raise ConfigError(f"{path}: line {i}: hash_ids: expected a list of block ids (got {_shown(ids)})")
        for h in ids:
            if isinstance(h, bool) or not isinstance(h, int) or not 0 <= h <= MAX_HASH_ID:
                raise ConfigError(f"{path}: line {i}: hash_ids: expected whole numbers from 0 to 2^63-1 "
                                  f"(got {_shown(h)})")
        n_blocks += len(ids)
        if n_blocks > MAX_TRACE_BLOCKS:
            raise ConfigError(f"{path}: line {i}: more than {MAX_TRACE_BLOCKS:,} hash ids in the trace (cut it)")
        last = TraceRequest(line=i, timestamp_ms=float(ts), input_length=n_in, output_length=n_out,
                            hash_ids=tuple(ids))
        out.append(last)
    return Trace(path=path, requests=tuple(out))


_USER_ROLES = ("user", "human")


def _parse_prompts(path: str, data: bytes) -> PromptDataset:
    lines = _lines(path, data)
    if not lines:
        raise ConfigError(f"{path}: no prompts (the file is empty)")
    if len(lines) > MAX_DATASET_PROMPTS:
        raise ConfigError(f"{path}: {len(lines):,} prompts; at most {MAX_DATASET_PROMPTS:,}")
    out = []
    for i, raw in lines:
        doc = _object(path, i, raw)
        text = _prompt_text(path, i, doc)
        if not text.strip():
            raise ConfigError(f"{path}: line {i}: the prompt is empty")
        out.append(DatasetPrompt(line=i, text=text))
    return PromptDataset(path=path, prompts=tuple(out))


def _prompt_text(path: str, i: int, doc: dict[str, Any]) -> str:
    """A dataset line's prompt: ``text`` / ``prompt``, or the first user message of ``messages`` /
    ``conversations``."""
    for key in ("text", "prompt"):
        if key in doc:
            v = doc[key]
            if not isinstance(v, str):
                raise ConfigError(f"{path}: line {i}: {key}: expected a string (got {_shown(v)})")
            return v
    for key, role_key, text_key in (("messages", "role", "content"), ("conversations", "from", "value")):
        if key not in doc:
            continue
        turns = doc[key]
        if not isinstance(turns, list):
            raise ConfigError(f"{path}: line {i}: {key}: expected a list of messages (got {_shown(turns)})")
        for k, m in enumerate(turns):
            if not isinstance(m, dict) or not isinstance(m.get(role_key), str):
                raise ConfigError(f"{path}: line {i}: {key}[{k}]: expected {{\"{role_key}\": ..., "
                                  f"\"{text_key}\": ...}} (got {_shown(m)})")
            if m[role_key].lower() in _USER_ROLES:
                v = m.get(text_key)
                if not isinstance(v, str):
                    raise ConfigError(f"{path}: line {i}: {key}[{k}].{text_key}: expected a string "
                                      f"(got {_shown(v)})")
                return v
        raise ConfigError(f"{path}: line {i}: {key} has no {' or '.join(_USER_ROLES)} message")
    raise ConfigError(f"{path}: line {i}: no prompt: expected a text, prompt, messages or conversations key")
