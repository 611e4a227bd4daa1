"""Writing result files safely: checked before the session starts, written atomically at the end.

A report is written to a temporary file in the destination folder and renamed over the target, so a
reader (or a CI step) never sees half a report, and an interrupted write leaves nothing at ``-o``.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from ttftui.core.errors import OutputNotWritable
from ttftui.core.inputs import expand_path
from ttftui.core.sane import utf8_text
from ttftui.core.textsafe import visible
from ttftui.core.urls import redact


def say(msg: str) -> None:
    """One ``ttftui:`` line on stderr: whitespace collapsed, control characters shown as escapes (a
    path or a name can never drive the terminal), no user:password@ (core.urls.redact). A stderr that cannot be written (closed,
    ``2>/dev/full``) is no reason to fail: the exit code still tells what happened."""
    try:
        sys.stderr.write(f"ttftui: {visible(' '.join(redact(msg).split()), newlines=False)}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


def _is_special(p: Path) -> bool:
    """A device or pipe (/dev/null, /dev/stdout, a FIFO): written in place, never replaced."""
    return p.exists() and not p.is_file() and not p.is_dir()


def check_writable(path: str | os.PathLike[str], what: str = "output") -> Path:
    """Fail now, not after a long session, if ``path`` cannot be written."""
    p = expand_path(path)
    if _is_special(p):
        if not os.access(p, os.W_OK):
            raise OutputNotWritable(f"cannot write {what} {p}: permission denied")
        return p
    if p.is_dir():
        raise OutputNotWritable(f"{what} path {p} is a directory; give a file name")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputNotWritable(f"cannot write {what} {p}: folder {parent} does not exist")
    if not parent.is_dir():
        raise OutputNotWritable(f"cannot write {what} {p}: {parent} is not a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".ttftui-check-", dir=parent)
    except OSError as e:
        raise OutputNotWritable(f"cannot write {what} {p}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(tmp)
    if p.exists() and not os.access(p, os.W_OK):
        raise OutputNotWritable(f"cannot write {what} {p}: the existing file is read-only")
    return p


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    p = expand_path(path)
    text = utf8_text(text)  # a lone surrogate from someone else's text cannot fail the write
    if _is_special(p):
        try:
            with open(p, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        except OSError as e:
            raise OutputNotWritable(f"cannot write {p}: {e.strerror or e}") from None
        return
    parent = p.parent if str(p.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=parent)
    except OSError as e:
        raise OutputNotWritable(f"cannot write {p}: {e.strerror or e}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; a report is an ordinary file
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputNotWritable(f"cannot write {p}: {e.strerror or e}") from None
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
