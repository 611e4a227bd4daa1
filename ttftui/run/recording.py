"""Recordings: every event of a session, one JSON object per line, after a header line.

Writing (:class:`Recorder`) appends and flushes each event as it arrives, so a session killed with
SIGKILL leaves a file that replays up to its last complete event; a stopped session ends with its
``session_finished`` event. ``.gz`` files are gzip streams flushed per event (``Z_SYNC_FLUSH``), so
they are readable up to the last event even without a gzip trailer.

Reading (:func:`read_recording`) is strict about meaning and tolerant about damage: every line must
validate as a known event; a truncated last line is skipped with a warning; a corrupt line in the
middle is skipped with its line number (or is an error under ``strict``). A file that is empty, not a
recording or from a newer schema gets a one-line error and its own exit code. Older schema versions
are upgraded by the functions in ``MIGRATIONS``.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from ttftui import __version__
from ttftui.core.errors import NotARecording, OutputNotWritable, RecordingCorrupt, RecordingNotFound, RecordingTooNew
from ttftui.core.events import SessionFinished, event_from_json, event_to_json
from ttftui.core.inputs import MAX_RECORDING_BYTES, InputRefused, inflate_gzip, read_input
from ttftui.core.textsafe import clean_event

RECORDING_KIND = "ttftui.recording"
RECORDING_SCHEMA_VERSION = 1

# version -> function(header, list of raw event dicts) -> (header, events) one version newer.
MIGRATIONS: dict[int, Callable[[dict[str, Any], list[dict[str, Any]]], tuple[dict[str, Any], list[dict[str, Any]]]]] = {}


def default_recording_path(gz: bool = False) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(f"ttftui-{stamp}.ttftrec" + (".gz" if gz else ""))


class Recorder:
    """A sink: ``recorder(event)`` appends one line and flushes it to the OS."""

    def __init__(self, path: str | os.PathLike[str], *, gzip_compress: bool | None = None):
        self.path = Path(path).expanduser()
        self.gz = self.path.suffix == ".gz" if gzip_compress is None else gzip_compress
        if self.path.exists():
            raise OutputNotWritable(f"recording {self.path} already exists (ttftui never overwrites a recording)")
        parent = self.path.parent
        if not parent.is_dir():
            raise OutputNotWritable(f"cannot write recording {self.path}: folder {parent} does not exist")
        try:
            raw = open(self.path, "xb")  # noqa: SIM115 - kept open for the session
        except OSError as e:
            raise OutputNotWritable(f"cannot write recording {self.path}: {e.strerror or e}") from None
        self._raw = raw
        self._gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) if self.gz else None
        self.n_events = 0
        self.bytes_written = 0
        self.closed = False
        self.error: str | None = None  # why recording stopped early (disk full, ...): the session goes on
        header = {"kind": RECORDING_KIND, "schema_version": RECORDING_SCHEMA_VERSION, "ttftui_version": __version__,
                  "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
        self._write(json.dumps(header, separators=(",", ":")).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        if self._gz is not None:
            self._gz.write(data)
            self._gz.flush(zlib.Z_SYNC_FLUSH)  # a complete deflate block: readable after a SIGKILL
        else:
            self._raw.write(data)
        self._raw.flush()
        self.bytes_written += len(data)

    def __call__(self, event: Any) -> None:
        if self.closed:
            return
        try:
            self._write(event_to_json(event) + b"\n")
        except OSError as e:  # disk full, file system gone: stop recording, keep measuring
            self._fail(e)
            return
        self.n_events += 1
        if isinstance(event, SessionFinished):
            self.close()

    def _fail(self, e: OSError) -> None:
        self.error = (f"cannot write recording {self.path}: {e.strerror or e} "
                      f"(it holds the first {self.n_events} events, which replay)")
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            if self._gz is not None:
                self._gz.close()
        except OSError as e:
            if self.error is None:
                self.error = f"cannot finish recording {self.path}: {e.strerror or e}"
        finally:
            try:
                self._raw.close()
            except OSError as e:
                if self.error is None:
                    self.error = f"cannot finish recording {self.path}: {e.strerror or e}"

    @property
    def file_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0


@dataclass
class Recording:
    path: str
    header: dict[str, Any]
    events: list[Any]
    warnings: list[str] = field(default_factory=list)


def _read_bytes(p: Path) -> tuple[bytes, list[str]]:
    """The recording's text and any warning about it: a regular file, bounded; a gzip stream
    inflated within limits, up to where it is damaged."""
    data = read_input(p, MAX_RECORDING_BYTES, "recording", RecordingNotFound)
    if data[:2] == b"\x1f\x8b":  # gzip, possibly without its trailer (killed writer): take what inflates
        try:
            return inflate_gzip(data, p)
        except InputRefused as e:
            raise RecordingNotFound(f"cannot read recording: {e}") from None
    return data, []


def read_recording(path: str | os.PathLike[str], *, strict: bool = False) -> Recording:
    p = Path(path).expanduser()
    data, read_warnings = _read_bytes(p)
    if not data.strip():
        if read_warnings:  # a damaged gzip stream that gave nothing: say so, not "empty"
            raise NotARecording(f"{read_warnings[0]}: nothing readable")
        raise NotARecording(f"{p} is empty: not a ttftui recording")
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    try:
        header = json.loads(lines[0])
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("kind") != RECORDING_KIND:
        raise NotARecording(f"{p} is not a ttftui recording (its first line is not a ttftui recording header)")
    version = header.get("schema_version")
    if not isinstance(version, int) or version < 0:
        raise NotARecording(f"{p}: recording header has no valid schema_version")
    if version > RECORDING_SCHEMA_VERSION:
        raise RecordingTooNew(
            f"{p} was written with recording schema {version} (ttftui {header.get('ttftui_version', '?')}); "
            f"this ttftui {__version__} reads up to schema {RECORDING_SCHEMA_VERSION}: upgrade ttftui"
        )
    warnings: list[str] = list(read_warnings)
    body = lines[1:]
    last_index = len(body) - 1
    if version < RECORDING_SCHEMA_VERSION:
        return _migrated(p, header, body, strict, warnings, ends_with_newline)
    events: list[Any] = []
    for i, raw in enumerate(body):
        if not raw.strip():
            continue
        try:
            events.append(clean_event(event_from_json(raw)))  # a recording's names never drive the terminal
        except (ValidationError, ValueError) as e:
            lineno = i + 2
            if i == last_index and not ends_with_newline:
                warnings.append(f"{p}: line {lineno} is incomplete (the recording was cut off); skipped")
                continue
            if strict:
                raise RecordingCorrupt(f"{p}: line {lineno} is not a valid event ({_why(e)})") from None
            warnings.append(f"{p}: line {lineno} is not a valid event ({_why(e)}); skipped")
    return Recording(str(p), header, events, warnings)


def _why(e: Exception) -> str:
    if isinstance(e, ValidationError):
        err = e.errors(include_url=False)[0]
        loc = ".".join(str(x) for x in err["loc"])
        return f"{loc}: {err['msg']}" if loc else err["msg"]
    return str(e).split("\n")[0]


def _migrated(p: Path, header: dict[str, Any], body: list[bytes], strict: bool, warnings: list[str],
              ends_with_newline: bool) -> Recording:
    raw_events: list[dict[str, Any]] = []
    for i, raw in enumerate(body):
        if not raw.strip():
            continue
        try:
            raw_events.append(json.loads(raw))
        except ValueError:
            if i == len(body) - 1 and not ends_with_newline:
                warnings.append(f"{p}: line {i + 2} is incomplete (the recording was cut off); skipped")
            elif strict:
                raise RecordingCorrupt(f"{p}: line {i + 2} is not valid JSON") from None
            else:
                warnings.append(f"{p}: line {i + 2} is not valid JSON; skipped")
    v = orig = header["schema_version"]
    while v < RECORDING_SCHEMA_VERSION:
        step = MIGRATIONS.get(v)
        if step is None:
            raise NotARecording(f"{p}: recording schema {v} is too old to read (no migration to {v + 1})")
        header, raw_events = step(header, raw_events)
        v += 1
        header["schema_version"] = v
    warnings.append(f"{p}: upgraded from recording schema {orig} to {RECORDING_SCHEMA_VERSION}")
    events = []
    for ev in raw_events:
        try:
            events.append(clean_event(event_from_json(json.dumps(ev))))
        except (ValidationError, ValueError) as e:
            if strict:
                raise RecordingCorrupt(f"{p}: an event does not validate after migration ({_why(e)})") from None
            warnings.append(f"{p}: an event does not validate after migration ({_why(e)}); skipped")
    return Recording(str(p), header, events, warnings)
