"""One sanitiser for text that comes from outside (a recording, a model, a server, a child process's
stderr) on its way to a terminal or a page: control characters are shown visibly (``\\x1b``), never
sent, so such text cannot move the cursor, clear the screen or write the viewer's clipboard (OSC 52).
Markup is the renderer's business: widgets append this text to ``rich.text.Text`` literally."""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL, C1 controls; and the Unicode line/paragraph separators and
# bidirectional overrides that reorder what a reader sees.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


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
