"""Recordings: every event of a session, one JSON object per line, after a header line.

Writing (:class:`Recorder`) appends and flushes each event as it arrives, so a session killed with
SIGKILL leaves a file that replays up to its last complete event; a stopped session ends with its
``session_finished`` event. ``.gz`` files are gzip streams flushed per event (``Z_SYNC_FLUSH``), so
they are readable up to the last event even without a gzip trailer.

Reading (:func:`read_recording`) is strict about meaning and tolerant about damage: every line must
validate as a known event; a truncated last line is skipped with a warning; a corrupt line in the
middle is skipped with its line number (or is an error under ``strict``). A file that is empty, not a
recording or from a newer schema gets a one-line error and its own exit code. Older schema versions
are upgraded by the functions in ``MIGRATIONS``. Values no measurement can produce (a negative
duration, one over a year, time going backwards in a run) are not kept as measured: they are made
null, or their run is left out as failed, each said in a notice (``_Sanity``; ``--strict``: an error).

Text UTF-8 cannot hold (a lone surrogate from a server's ``"\\ud800"``) is written with
U+FFFD in its place: every line the recorder writes is UTF-8 JSON.
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import os
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from ttftui import __version__
from ttftui.core.errors import NotARecording, OutputNotWritable, RecordingCorrupt, RecordingNotFound, RecordingTooNew
from ttftui.core.events import (
    Notice,
    PhaseTimed,
    RunFailed,
    RunFinished,
    RunStarted,
    SessionFinished,
    TokenEmitted,
    event_from_json,
    event_to_json,
)
from ttftui.core.inputs import MAX_RECORDING_BYTES, InputRefused, expand_path, inflate_gzip, read_input
from ttftui.core.sane import Problem, check_event, problem, utf8_event
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
        self.path = expand_path(path)
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
            self._write(_line(event))
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


def _line(event: Any) -> bytes:
    """One event as a line of UTF-8 JSON. Text UTF-8 cannot encode (a lone surrogate, which a server's
    JSON ``"\\ud800"`` escape makes) is written as U+FFFD instead of failing the session's recording;
    NUL and control characters are JSON escapes, as always."""
    try:
        return event_to_json(event) + b"\n"
    except ValueError:  # pydantic's serialisation error: UnicodeEncodeError inside
        return event_to_json(utf8_event(event)) + b"\n"


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
    p = expand_path(path)
    data, read_warnings = _read_bytes(p)
    if not data.strip():
        if read_warnings:  # a damaged gzip stream that gave nothing: say so, not "empty"
            raise NotARecording(f"{read_warnings[0]}: nothing readable")
        raise NotARecording(f"{p} is empty: not a ttftui recording")
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    try:
        header = json.loads(lines[0])
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: [[[[... nested too deeply
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
    sane = _Sanity(p, strict)
    for i, raw in enumerate(body):
        if not raw.strip():
            continue
        lineno = i + 2
        try:
            ev = clean_event(event_from_json(raw))  # a recording's names never drive the terminal
        except (ValidationError, ValueError, RecursionError) as e:
            if i == last_index and not ends_with_newline:
                warnings.append(f"{p}: line {lineno} is incomplete (the recording was cut off); skipped")
                continue
            if strict:
                raise RecordingCorrupt(f"{p}: line {lineno} is not a valid event ({_why(e)})") from None
            warnings.append(f"{p}: line {lineno} is not a valid event ({_why(e)}); skipped")
            continue
        sane.feed(ev, f"line {lineno}", events)
    sane.finish(events, warnings)
    return Recording(str(p), header, events, warnings)


class _Sanity:
    """Values no measurement can produce, refused where a recording is read (``ttftui.core.sane``):
    a negative duration, one longer than a year, a time more than a year from the session's start, a
    TTFT after the run's end, or a run's events going back in time (one run's events come from one
    thread of one clock, in order). An impossible value that may be null becomes null; one that
    may not (a run's TTFT, a token's gap, a time) takes its run out of the statistics: the run ends
    as failed, saying why, and its impossible events are dropped; any other event that cannot stand
    is dropped. Each is said in a ``Notice`` event (the report and the dashboard show them; at most
    ``MAX_NOTICES``, then a count) and counted in one warning; under ``strict`` the first is an error."""

    MAX_NOTICES = 20

    def __init__(self, p: Path, strict: bool):
        self.p, self.strict = p, strict
        self.last_t: dict[int, int] = {}  # run id -> time of its last event kept
        self.failed: dict[int, str] = {}  # run id -> why it cannot stand
        self.told: set[tuple[int, str]] = set()  # (run id, kind of notice) already given
        self.n_notices = 0
        self.n_values = self.n_nulled = self.n_dropped = 0
        self.failed_runs: set[int] = set()
        self.last_ns = 0

    def feed(self, ev: Any, where: str, out: list[Any]) -> None:
        """Append ``ev`` to ``out`` as it may stand (or not at all), with a notice when it changed."""
        fixed, problems = check_event(ev)
        rid = ev.run_id if isinstance(ev, (*_RUN_EVENTS, RunStarted)) else None
        if fixed is not None and rid is not None and not isinstance(ev, RunStarted):
            before = self.last_t.get(rid)
            if before is not None and ev.t_ns < before:
                problems.append(Problem("t_ns", f"{ev.t_ns / 1e6:,.6g} ms: before the run's previous event "
                                                f"({before / 1e6:,.6g} ms), time going backwards", False))
                fixed = None
        if problems:
            if self.strict:
                raise RecordingCorrupt(f"{self.p}: {where}: {problems[0]}: no measurement is that "
                                       "(--strict; without it the value is left out, with a notice)")
            self.n_values += len(problems)
            self.n_nulled += sum(p.nulled for p in problems)
        t = self._time(ev, rid) if problems else ev.t_ns
        if fixed is not None:
            if isinstance(fixed, RunFinished) and rid in self.failed:  # an earlier event of it could not stand
                self._fail_run(fixed, t, out)
                return
            if problems:
                self._notice(t, rid, "null", f"{self._run(ev)}{_listed(problems)}: left out (null)", out)
            self._keep(fixed, rid, out)
            return
        if rid is None:  # not a run's: nothing else depends on it, dropped
            self.n_dropped += 1
            self._notice(t, None, "drop", f"{ev.type} event at {t / 1e6:,.6g} ms: {_listed(problems)}: dropped", out)
            return
        if isinstance(ev, RunStarted):  # where the run began is unknown: its events have no run to join
            self.n_dropped += 1
            self.failed_runs.add(rid)
            self._notice(t, rid, "fail", f"{self._run(ev)}{_listed(problems)}: the run is left out", out)
            return
        bad = [p for p in problems if not p.nulled] or problems
        self.failed.setdefault(rid, _listed(bad))
        if isinstance(ev, RunFinished):
            self._fail_run(ev, t, out)
        elif isinstance(ev, RunFailed):  # it failed anyway: kept, at a time that can be
            self._keep(replace(ev, t_ns=t), rid, out)
        else:  # a token or a phase: dropped, and its run ends as failed
            self.n_dropped += 1

    def _fail_run(self, ev: RunFinished, t: int, out: list[Any]) -> None:
        """The run ends as failed, saying why, instead of finishing with figures that cannot be."""
        why = self.failed[ev.run_id]
        self.failed_runs.add(ev.run_id)
        self._notice(t, ev.run_id, "fail", f"{self._run(ev)}{why}; the run is left out of the statistics "
                                           "(counted as failed)", out)
        self._keep(RunFailed(t_ns=t, run_id=ev.run_id, scenario=ev.scenario,
                             error=f"impossible timing in the recording: {why}"), ev.run_id, out)

    def _keep(self, ev: Any, rid: int | None, out: list[Any]) -> None:
        if isinstance(ev, RunStarted):
            self.last_t[ev.run_id] = ev.t_ns
        elif isinstance(ev, (RunFinished, RunFailed)):
            self.last_t.pop(ev.run_id, None)
        elif rid is not None:
            self.last_t[rid] = max(ev.t_ns, self.last_t.get(rid, ev.t_ns))
        self.last_ns = max(self.last_ns, ev.t_ns)
        out.append(ev)

    def _time(self, ev: Any, rid: int | None) -> int:
        """A time to file the event's notice (and a failed run's end) at: its own when possible."""
        t = ev.t_ns
        if problem("t_ns", t) is None and (rid is None or isinstance(ev, RunStarted) or t >= self.last_t.get(rid, t)):
            return t
        return self.last_t.get(rid, self.last_ns) if rid is not None else self.last_ns

    @staticmethod
    def _run(ev: Any) -> str:
        if isinstance(ev, (*_RUN_EVENTS, RunStarted)):
            scenario = getattr(ev, "scenario", None)
            return f"run {ev.run_id}{f' ({scenario})' if scenario else ''}: "
        return f"{ev.type} event: "

    def _notice(self, t: int, rid: int | None, kind: str, text: str, out: list[Any]) -> None:
        """A notice, at most one of each kind per run, at most ``MAX_NOTICES`` in all."""
        if rid is not None:
            if (rid, kind) in self.told:
                return
            self.told.add((rid, kind))
        if self.n_notices >= self.MAX_NOTICES:
            return
        self.n_notices += 1
        out.append(Notice(t_ns=t, level="warning", message=f"recording: {text}"))

    def finish(self, out: list[Any], warnings: list[str]) -> None:
        """One warning that counts it all, and the same as a closing notice (before the session's end)."""
        if not self.n_values:
            return
        parts = []
        if self.failed_runs:
            parts.append(f"{len(self.failed_runs)} run{'s' if len(self.failed_runs) != 1 else ''} left out as failed")
        if self.n_nulled:
            parts.append(f"{self.n_nulled} value{'s' if self.n_nulled != 1 else ''} left out (null)")
        if self.n_dropped:
            parts.append(f"{self.n_dropped} event{'s' if self.n_dropped != 1 else ''} dropped")
        text = (f"{self.n_values} impossible value{'s' if self.n_values != 1 else ''} (negative or over-a-year "
                f"times, a TTFT after the run's end, time going backwards): {', '.join(parts)}")
        warnings.append(f"{self.p}: {text}; the report's notices say which")
        summary = Notice(t_ns=self.last_ns, level="warning", message=f"recording: {text}")
        at = len(out) - 1 if out and isinstance(out[-1], SessionFinished) else len(out)
        out.insert(at, summary)


def _listed(problems: list[Problem]) -> str:
    more = len(problems) - 1
    return f"{problems[0]}" + (f" (and {more} more)" if more else "")


_RUN_EVENTS = (TokenEmitted, PhaseTimed, RunFinished, RunFailed)


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
        except (ValueError, RecursionError):
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
    events: list[Any] = []
    sane = _Sanity(p, strict)
    for k, ev in enumerate(raw_events):
        try:
            parsed = clean_event(event_from_json(json.dumps(ev)))
        except (ValidationError, ValueError, RecursionError) as e:
            if strict:
                raise RecordingCorrupt(f"{p}: an event does not validate after migration ({_why(e)})") from None
            warnings.append(f"{p}: an event does not validate after migration ({_why(e)}); skipped")
            continue
        sane.feed(parsed, f"event {k + 1}", events)
    sane.finish(events, warnings)
    return Recording(str(p), header, events, warnings)
