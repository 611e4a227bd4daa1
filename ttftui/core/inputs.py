"""Reading files that someone else may have made: only regular files, only as much as makes sense.

A FIFO given as a model blocks for ever, ``/dev/zero`` given as a config or a recording is read for
ever, and a 14 MB gzip "recording" can inflate to gigabytes. Every input file goes through
:func:`read_regular` (or :func:`check_regular` before a reader of its own opens it, or
:func:`read_head` to peek at its first bytes), which refuses what is not a regular file and what is
larger than its limit, with a message naming the limit;
:func:`inflate_gzip` inflates in pieces, within a size and ratio limit, and keeps what inflated
before damage.
"""

from __future__ import annotations

import os
import stat
import zlib
from pathlib import Path
from typing import Callable

MiB = 1 << 20

MAX_CONFIG_BYTES = 4 * MiB
MAX_PROMPT_BYTES = 64 * MiB
MAX_THEME_BYTES = 1 * MiB
MAX_RECORDING_BYTES = 2048 * MiB  # as stored (compressed or not)
MAX_INFLATED_BYTES = 2048 * MiB
MAX_GZIP_RATIO = 64  # recordings compress about 4x; a bomb compresses 1000x


def expand_path(path: str | os.PathLike[str]) -> Path:
    """``~`` expanded, or the path as written when there is no such home (``~nosuchuser/r.json``):
    then it is simply not found, rather than an internal error."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


class InputRefused(Exception):
    """Why a file cannot be read (one line); callers wrap it in their own error class."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(path: str | os.PathLike[str], max_bytes: int | None = None) -> int:
    """The file's size, once it is known to be a regular file within ``max_bytes``.
    Raises FileNotFoundError, PermissionError (OSError) or InputRefused."""
    return _refuse_unless_regular(path, os.stat(path), max_bytes)


def _refuse_unless_regular(path: str | os.PathLike[str], st: os.stat_result, max_bytes: int | None) -> int:
    if not stat.S_ISREG(st.st_mode):
        raise InputRefused(f"{path} is {_kind(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise InputRefused(f"{path} is {st.st_size / MiB:.1f} MiB, more than the {max_bytes / MiB:.0f} MiB "
                           "ttftui reads for such a file")
    return st.st_size


def _open_regular(path: str | os.PathLike[str], max_bytes: int | None) -> int:
    """A descriptor of ``path``, opened without blocking (so even a FIFO opens, and is refused, at
    once) and checked on the descriptor itself (the file cannot be swapped between check and read)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        _refuse_unless_regular(path, os.fstat(fd), max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` (:func:`_open_regular`); a file that grows while
    read is still bounded."""
    fd = _open_regular(path, max_bytes)
    try:
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise InputRefused(f"{path} grew past the {max_bytes / MiB:.0f} MiB ttftui reads for such a file")
    return data


def read_head(path: str | os.PathLike[str], n: int) -> bytes:
    """The first ``n`` bytes of a regular file (to tell what kind of file it is), opened without
    blocking and checked on the open descriptor like :func:`read_regular`: a FIFO or a device is
    refused (InputRefused) before anything is read, so a peek never hangs."""
    fd = _open_regular(path, None)
    try:
        return os.read(fd, n)
    finally:
        os.close(fd)


def read_input(path: str | os.PathLike[str], max_bytes: int, what: str, error: Callable[[str], Exception]) -> bytes:
    """:func:`read_regular`, each way it can fail as one line naming ``what`` (e.g. "config file"),
    raised as ``error``: missing ("{what} not found: PATH"), refused (not a regular file, too big) or
    unreadable."""
    try:
        return read_regular(path, max_bytes)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except InputRefused as e:
        raise error(f"cannot read {what}: {e}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError as e:  # a path the OS cannot take (an embedded NUL)
        raise error(f"cannot read {what} {path!r}: {e}") from None


def inflate_gzip(data: bytes, where: str | Path) -> tuple[bytes, list[str]]:
    """Inflate a gzip stream piece by piece: at most ``MAX_INFLATED_BYTES`` and ``MAX_GZIP_RATIO``
    times the input (else InputRefused, a decompression bomb); a damaged or cut-off stream gives what
    inflated before the damage, with a warning."""
    limit = min(MAX_INFLATED_BYTES, max(64 * MiB, MAX_GZIP_RATIO * len(data)))
    d = zlib.decompressobj(wbits=31)
    out: list[bytes] = []
    size = 0
    warnings: list[str] = []
    step = 4 * 1024  # small pieces: a damaged piece loses only what it alone would have inflated
    pos = 0
    try:
        while pos < len(data) and not d.eof:
            piece = data[pos:pos + step]
            pos += step
            while piece:
                chunk = d.decompress(piece, max(1, limit + 1 - size))
                out.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise InputRefused(f"{where} inflates to more than {limit / MiB:.0f} MiB ({MAX_GZIP_RATIO}x its size "
                                       "at most): refused as a decompression bomb")
                piece = d.unconsumed_tail
        if not d.eof:
            warnings.append(f"{where}: the gzip stream is cut off; replaying what inflated "
                            f"({size / 1024:.0f} KiB)")
    except zlib.error as e:
        warnings.append(f"{where}: the gzip stream is damaged ({e}); replaying what inflated before the damage "
                        f"({size / 1024:.0f} KiB)")
    return b"".join(out), warnings
