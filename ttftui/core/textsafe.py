"""One sanitiser for text that comes from outside (a recording, a model, a server, a child process's
stderr) on its way to a terminal or a page: control characters are shown visibly (``\\x1b``), never
sent, so such text cannot move the cursor, clear the screen or write the viewer's clipboard (OSC 52).
Markup is the renderer's business: widgets append this text to ``rich.text.Text`` literally."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# C0 controls but tab and newline, DEL, C1 controls; the Unicode line/paragraph separators and
# bidirectional overrides that reorder what a reader sees; and lone surrogates (a JSON "\ud800"
# escape makes one), which no terminal encoding can even write.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def visible(text: str, *, newlines: bool = True) -> str:
    """``text`` with every control character replaced by its escape (newline kept unless
    ``newlines`` is false, then shown as ``\\n``)."""
    out = _CONTROL.sub(_escape, text)
    if not newlines:
        out = out.replace("\n", "\\n").replace("\t", "\\t")
    return out


def _clean_value(v: Any) -> Any:
    if isinstance(v, str):
        return visible(v) if _CONTROL.search(v) else v
    if isinstance(v, tuple):
        out = tuple(_clean_value(x) for x in v)
        return v if all(a is b for a, b in zip(out, v)) else out
    if isinstance(v, list):
        return [_clean_value(x) for x in v]
    if isinstance(v, dict):
        return {_clean_value(k): _clean_value(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return clean_event(v)
    return v


# Events whose text is either validated (a Literal) or absent: nothing to clean, and they are most of
# a session (a replay of 100,000 events must stay fast). A token's text is the model's output and is
# kept byte-exact (the report's output_text); the token stream draws it through ``visible`` itself.
_NO_FREE_TEXT = frozenset({"token", "telemetry", "gpu_driver_samples", "phase", "server_sample"})


def clean_event(ev: Any) -> Any:
    """``ev`` with every string in it (names, messages, config values; nested facts included)
    passed through :func:`visible`, so that a name from a GGUF file or a recording can never drive
    the terminal. Returns ``ev`` itself when there was nothing to change (the common case)."""
    t = getattr(ev, "type", None)
    if t in _NO_FREE_TEXT and getattr(ev, "worker", None) is None:  # a Ray host's samples name their host
        return ev
    changes = {}
    for f in dataclasses.fields(ev):
        v = getattr(ev, f.name)
        c = _clean_value(v)
        if c is not v and c != v:
            changes[f.name] = c
    return dataclasses.replace(ev, **changes) if changes else ev
