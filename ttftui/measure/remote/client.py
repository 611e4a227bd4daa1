"""One streaming request to an OpenAI-compatible server, timed on the client's clock.

Timing points (``time.perf_counter_ns()``, in the thread that reads the stream), all relative to
t0 = just before the request is written:

* ``connect``      a new TCP connection was made (0 when a kept-alive one was reused)
* ``sent``         the request (headers and body) is written
* ``headers``      the response's status line and headers have arrived (TTFB)
* ``first_event``  the first SSE event of the stream
* ``first_choice`` the first event with a ``choices`` entry (vLLM's bench stops its clock here,
  even for an empty role-only chunk)
* ``first_reasoning`` / ``first_content``  the first reasoning text / the first content text
* each later content chunk, and ``end`` (``[DONE]`` or the end of the stream)

TTFT is the first content *or* reasoning text (AIPerf's and GuideLLM's rule), configurable. The
server's own account is kept as it was sent: llama-server's ``timings`` (``prompt_n``,
``prompt_ms``, ``cache_n``, ``predicted_n``, ``predicted_ms``), its ``prompt_progress`` events, and
``usage``. Every fault (refused connection, timeout, HTTP error, malformed SSE, a stream that ends
early) raises :class:`RequestFailed` with a one-line reason; the caller records a failed run.

Nothing a server sends can hold the client for ever or fill its memory (:class:`Limits`): the
response headers, each SSE event and the whole request have deadlines, kept by the watchdog of
:mod:`ttftui.measure.remote.deadlines` (which also ends requests in flight at once when the session
is stopped); a line, an event, the text chunks kept and the SSE data taken per run are bounded, each
checked where the reader looks at the data anyway (a length check, no other work per token).
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

from ttftui.core.urls import ambiguous, split_credentials, without_credentials
from ttftui.measure.remote.deadlines import WATCHDOG, Watch

MAX_ERROR_BODY = 2048
MAX_EVENT_BYTES = 1 << 20  # the body of a small request (/models, /tokenize, /metrics) is read up to this
MAX_PROGRESS = 16384  # prompt-progress events kept per run (a prompt of 8M tokens in batches of 512)
MAX_REST = 1 << 16  # after [DONE], at most this much of the body is read to keep the connection


class RequestFailed(Exception):
    """A request that produced no complete answer; ``str(e)`` says why, in one line. ``lost``:
    the server gave no answer at all (refused, reset, closed early, timed out), as opposed to an
    answer that was wrong (an HTTP error, a malformed or endless stream)."""

    def __init__(self, message: str, *, lost: bool = False):
        super().__init__(message)
        self.lost = lost


@dataclass(frozen=True)
class Limits:
    """How long, and how much, one streamed request may take (``[server]`` in config.toml)."""

    headers_s: float = 120.0  # the response headers, after the request is written
    idle_s: float = 120.0  # the next SSE event, after the last one (or the headers)
    total_s: float | None = None  # the whole request; None: no overall deadline
    max_event_bytes: int = 1 << 20  # one SSE line, and one event (all its data lines together)
    max_chunks: int = 1 << 20  # text chunks kept per run
    max_stream_bytes: int = 1 << 30  # SSE data per run (it holds the text kept)


class _StaleConnection(Exception):
    """A kept-alive connection turned out closed before the server answered anything."""


@dataclass
class Chunk:
    """A piece of streamed text, when it became available on the client's clock."""

    t_ns: int  # after t0
    text: str
    kind: str  # "content" | "reasoning"
    abs_ns: int = 0  # on perf_counter_ns's own clock


# The client's timing points, ns after t0, named as ttftui.core.events.RemoteTiming names them: those
# every request has (connect_ns: a new TCP connection's duration, 0 when a kept-alive one was reused),
# and those a stream may never reach (None).
ALWAYS = ("connect_ns", "sent_ns", "headers_ns", "end_ns")
MAYBE = ("first_event_ns", "first_choice_ns", "first_reasoning_ns", "first_content_ns")


@dataclass
class StreamResult:
    t0_ns: int  # absolute perf_counter_ns
    at: dict[str, int | None] = field(default_factory=lambda: dict.fromkeys(ALWAYS, 0) | dict.fromkeys(MAYBE))
    status: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    n_events: int = 0
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None  # llama-server's own account
    progress: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (t rel ns, prompt_progress)
    stopped: bool = False
    server_header: str | None = None


class Endpoint:
    """Where requests go: scheme, host, port and the API's base path (``/v1``), with one kept-alive
    connection (a new one, timed, when the server closed it)."""

    def __init__(self, url: str, *, connect_timeout_s: float = 10.0, read_timeout_s: float = 120.0,
                 api_key: str | None = None, limits: Limits | None = None,
                 abort: Callable[[], str | None] | None = None):
        # user:password@ in the URL is sent as HTTP Basic authentication and kept out of self.url
        # (which is shown, stored and put in messages)
        bare, cred = split_credentials(url.strip().rstrip("/"))
        try:
            u = urlsplit(bare)
            port = u.port
        except ValueError as e:
            why = "" if "@" in url else f" ({e})"  # its text may quote a piece of a password
            raise ValueError(f"not an http(s) URL: {without_credentials(url)!r}{why}") from None
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {without_credentials(url)!r}")
        if ambiguous(url):  # its host would be wrong, and the password sent there
            raise ValueError(f"{without_credentials(url)!r}: an '@' is left once the user and password are taken out: "
                             "percent-encode '#', '?', '/' and '@' in the password (%23, %3F, %2F, %40)")
        self.url = bare
        self.scheme, self.host = u.scheme, u.hostname
        self.port = port or (443 if u.scheme == "https" else 80)
        self.base = u.path or ""
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.api_key = api_key
        self._basic = (base64.b64encode(f"{cred[0]}:{cred[1]}".encode()).decode() if cred else None)
        self.limits = limits or Limits(headers_s=read_timeout_s, idle_s=read_timeout_s)
        self.abort = abort  # says why, once the requests in flight must end (the server was declared lost)
        self._conn: http.client.HTTPConnection | None = None

    def root_path(self, path: str) -> str:
        """A path at the server's root (llama-server's /tokenize), beside the API's base path."""
        base = self.base[: -len("/v1")] if self.base.endswith("/v1") else self.base
        return base + path

    def _new_conn(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return cls(self.host, self.port, timeout=self.connect_timeout_s)

    def _headers(self, body: bool) -> dict[str, str]:
        h = {"Accept": "application/json, text/event-stream", "User-Agent": "ttftui"}
        if body:
            h["Content-Type"] = "application/json"
        if self.api_key:
            h["Authorization"] = f"Bearer {self.api_key}"
        elif self._basic:
            h["Authorization"] = f"Basic {self._basic}"
        return h

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_json(self, path: str, *, timeout_s: float | None = None, stop: Callable[[], bool] | None = None,
                 total_s: float | None = None) -> tuple[int, Any, dict[str, str]]:
        """A small untimed request (models, tokenize, props): (status, JSON or None, headers)."""
        return self._simple("GET", path, None, timeout_s, stop, total_s=total_s)

    def get_text(self, path: str, *, timeout_s: float | None = None, stop: Callable[[], bool] | None = None
                 ) -> tuple[int, str]:
        """A small untimed GET of a text resource (llama-server's /metrics): (status, text)."""
        st, raw, _ = self._simple("GET", path, None, timeout_s, stop, parse=False)
        return st, raw.decode("utf-8", "replace")

    def post_json(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None,
                  stop: Callable[[], bool] | None = None) -> tuple[int, Any, dict[str, str]]:
        return self._simple("POST", path, body, timeout_s, stop)

    def _simple(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float | None,
                stop: Callable[[], bool] | None = None, *, parse: bool = True, total_s: float | None = None
                ) -> tuple[int, Any, dict[str, str]]:
        """A small request on a connection of its own: every read within ``timeout_s`` (default
        the smaller of connect_timeout_s and read_timeout_s) and the whole answer within
        ``total_s`` (default: that plus read_timeout_s; a server that trickles its headers or body
        is cut off); ``stop()`` ends it at once."""
        conn = self._new_conn()
        per_read = timeout_s or min(self.connect_timeout_s, self.read_timeout_s)
        w: Watch | None = None
        try:
            conn.timeout = per_read
            conn.connect()
            w = WATCHDOG.watch(Watch(conn.sock, total_s=total_s or per_read + self.read_timeout_s, stop=stop))
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=self._headers(body is not None))
            resp = conn.getresponse()
            raw = resp.read(MAX_EVENT_BYTES)
            headers = {k.lower(): v for k, v in resp.getheaders()}
            if w.kind is not None:  # cut off mid-body: what was read is not the answer
                raise OSError("cut off")
            if not parse:
                return resp.status, raw, headers
            try:
                doc = json.loads(raw) if raw else None
            except (ValueError, RecursionError):  # not JSON, or nested deeper than a parser goes
                doc = None
            return resp.status, doc, headers
        except (OSError, http.client.HTTPException, OverflowError) as e:
            if w is not None and w.kind == "stopped":
                raise RequestFailed(f"{method} {path} stopped") from None
            if w is not None and w.kind is not None:
                raise RequestFailed(f"{self.host}:{self.port} did not answer {method} {path} in full within {w.why}",
                                    lost=True) from None
            raise RequestFailed(_why(e, self), lost=_no_answer(e)) from None
        finally:
            if w is not None:
                WATCHDOG.unwatch(w)
            conn.close()

    def stream(self, path: str, body: dict[str, Any], *, on_chunk: Callable[[Chunk, int], None] | None = None,
               stop: Callable[[], bool] | None = None, limits: Limits | None = None) -> StreamResult:
        """POST ``body`` (with ``stream: true``) and read the SSE stream to its end, timing it.
        ``on_chunk(chunk, index)`` is called as each text chunk arrives (its time is already
        taken); ``stop()`` is asked between events, and by the watchdog while the reader waits
        (True: close the stream and return early). ``limits``: the endpoint's unless given."""
        data = json.dumps(body).encode()
        lim = limits or self.limits
        reused = self._conn is not None and self._conn.sock is not None
        try:
            return self._stream_once(path, data, on_chunk, stop, lim)
        except _StaleConnection:
            # The kept-alive connection had been closed by the server (llama-server closes it after a
            # stream): nothing reached it. Send again on a new connection, timed from a new t0.
            if not reused:
                raise RequestFailed(f"{self.host}:{self.port} closed the connection before answering",
                                    lost=True) from None
            return self._stream_once(path, data, on_chunk, stop, lim)

    def _stream_once(self, path: str, data: bytes, on_chunk: Callable[[Chunk, int], None] | None,
                     stop: Callable[[], bool] | None, lim: Limits) -> StreamResult:
        perf = time.perf_counter_ns
        headers = self._headers(True)
        t0 = perf()
        res = StreamResult(t0_ns=t0)
        conn = self._conn
        w: Watch | None = None
        try:
            if conn is None or conn.sock is None:
                conn = self._conn = self._new_conn()
                c0 = perf()
                conn.connect()
                res.at["connect_ns"] = perf() - c0
            conn.sock.settimeout(max(lim.headers_s, lim.idle_s))  # type: ignore[union-attr]  # a backstop
            w = WATCHDOG.watch(Watch(conn.sock, res=res, headers_s=lim.headers_s, idle_s=lim.idle_s,
                                     total_s=lim.total_s, stop=stop, abort=self.abort))
            try:
                conn.request("POST", path, body=data, headers=headers)
                res.at["sent_ns"] = perf() - t0
                resp = conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                if w.kind is not None:
                    raise
                self.close()
                raise _StaleConnection() from None
            res.at["headers_ns"] = perf() - t0
            res.status = resp.status
            res.server_header = resp.getheader("server")
            if resp.status != 200:
                detail = resp.read(MAX_ERROR_BODY).decode("utf-8", "replace")
                self.close()
                raise RequestFailed(f"HTTP {resp.status} {str(resp.reason)[:100]}: {_error_text(detail)}")
            self._read_events(resp, res, t0, on_chunk, stop, lim)  # res.at["end_ns"] is taken at [DONE]
            if res.stopped or resp.will_close:
                self.close()
            else:  # the rest of the body (the chunked terminator): the connection can be reused
                resp.read(MAX_REST)
                if not resp.isclosed():  # more after [DONE]: not a connection to reuse
                    self.close()
        except _StaleConnection:
            raise
        except (RequestFailed, OSError, http.client.HTTPException, OverflowError) as e:
            self.close()
            if w is not None and w.kind is not None:
                return _expired(w, res)
            if isinstance(e, RequestFailed):
                raise
            if isinstance(e, socket.timeout):
                where, s = (("before the response headers", lim.headers_s) if not res.status
                            else ("while streaming (the server stalled)", lim.idle_s))
                raise RequestFailed(f"timed out after {s:g} s {where}", lost=True) from None
            raise RequestFailed(_why(e, self), lost=_no_answer(e)) from None
        finally:
            if w is not None:
                WATCHDOG.unwatch(w)
        if w.kind is not None:  # expired just after the answer was complete: keep it, not the connection
            self.close()
        return res

    @staticmethod
    def _read_events(resp: http.client.HTTPResponse, res: StreamResult, t0: int,
                     on_chunk: Callable[[Chunk, int], None] | None, stop: Callable[[], bool] | None,
                     lim: Limits) -> None:
        perf = time.perf_counter_ns
        data_lines: list[bytes] = []
        size = 0
        done = False
        max_event, max_chunks = lim.max_event_bytes, lim.max_chunks
        budget = lim.max_stream_bytes  # of SSE data: a bound on the text kept, one subtraction an event
        while not done:
            line = resp.readline(max_event + 1)
            if not line:
                break
            if len(line) > max_event:
                raise RequestFailed(f"the server sent an SSE line longer than {max_event} bytes "
                                    "(server.max_event_bytes)")
            line = line.rstrip(b"\r\n")
            if line:
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                    size += len(line)
                    if size > max_event:
                        raise RequestFailed(f"the server sent an SSE event larger than {max_event} bytes "
                                            "(server.max_event_bytes)")
                elif line.startswith(b":") or b":" in line:  # a comment, or event:/id:/retry: fields
                    pass
                else:
                    raise RequestFailed(f"malformed SSE: unexpected line {line[:80]!r}")
                continue
            if not data_lines:
                continue
            now = perf() - t0
            payload = b"\n".join(data_lines)
            budget -= size
            if budget < 0:
                raise RequestFailed(f"the server sent more than {lim.max_stream_bytes} bytes of SSE data "
                                    "(server.max_stream_bytes)")
            data_lines, size = [], 0
            res.n_events += 1
            if res.at["first_event_ns"] is None:
                res.at["first_event_ns"] = now
            if payload.strip() == b"[DONE]":
                done = True
                break
            try:
                doc = json.loads(payload)
            except (ValueError, RecursionError):
                raise RequestFailed(f"malformed SSE: an event is not JSON ({payload[:80]!r})") from None
            if not isinstance(doc, dict):
                raise RequestFailed("malformed SSE: an event is not a JSON object")
            if doc.get("error") and not doc.get("choices"):
                raise RequestFailed(f"the server reported an error mid-stream: {_error_text(_dumps(doc['error']))}")
            _take_event(doc, res, now, on_chunk, max_chunks)
            if stop is not None and stop():
                res.stopped = True
                break
        res.at["end_ns"] = perf() - t0
        if not done and not res.stopped and res.finish_reason is None:
            raise RequestFailed(f"the stream ended early (after {len(res.chunks)} text chunks, no [DONE])", lost=True)


def _expired(w: Watch, res: StreamResult) -> StreamResult:
    """The end of a request the watchdog cut off (its connection already closed): a stop returns
    what had arrived (``stopped``), every other kind is a failure with its reason."""
    res.at["end_ns"] = time.perf_counter_ns() - res.t0_ns
    kind = w.kind
    if kind == "stopped":
        res.stopped = True
        return res
    if kind == "headers":
        raise RequestFailed(f"timed out after {w.why} before the response headers", lost=True)
    if kind == "idle":
        raise RequestFailed(f"timed out after {w.why} while streaming (the server stalled)", lost=True)
    if kind == "deadline":
        raise RequestFailed(f"the request took longer than its deadline of {w.why} (server.request_timeout_s; "
                            f"{len(res.chunks)} text chunks and {res.n_events} events so far)")
    raise RequestFailed(str(w.why), lost=True)  # lost: the engine's reason


def _take_event(doc: dict[str, Any], res: StreamResult, now: int, on_chunk: Callable[[Chunk, int], None] | None,
                max_chunks: int) -> None:
    if "usage" in doc and isinstance(doc["usage"], dict):
        res.usage = doc["usage"]
    if "timings" in doc and isinstance(doc["timings"], dict):
        res.timings = doc["timings"]
    if "prompt_progress" in doc and isinstance(pp := doc["prompt_progress"], dict):
        if len(res.progress) >= MAX_PROGRESS:
            raise RequestFailed(f"the server sent more than {MAX_PROGRESS} prompt-progress events")
        res.progress.append((now, {"processed": pp.get("processed"), "time_ms": pp.get("time_ms")}))
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices:
        return
    if res.at["first_choice_ns"] is None:
        res.at["first_choice_ns"] = now
    ch = choices[0] if isinstance(choices[0], dict) else {}
    if ch.get("finish_reason"):
        res.finish_reason = str(ch["finish_reason"])[:64]
    delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    content = delta.get("content") if "delta" in ch else ch.get("text")
    for text, kind in ((reasoning, "reasoning"), (content, "content")):
        if isinstance(text, str) and text:
            if kind == "reasoning" and res.at["first_reasoning_ns"] is None:
                res.at["first_reasoning_ns"] = now
            if kind == "content" and res.at["first_content_ns"] is None:
                res.at["first_content_ns"] = now
            if len(res.chunks) >= max_chunks:  # a stream that does not end: a length check
                raise RequestFailed(f"the server sent more than {max_chunks} text chunks (server.max_chunks; more "
                                    "than max_tokens asked for: a stream that does not end)")
            if not text.isascii() and _LONE_SURROGATE.search(text):  # isascii: a flag, no scan
                text = _LONE_SURROGATE.sub("\ufffd", text)
            chunk = Chunk(now, text, kind, res.t0_ns + now)
            res.chunks.append(chunk)
            if on_chunk is not None:
                on_chunk(chunk, len(res.chunks) - 1)


# A lone surrogate (a "\ud800" escape without its pair: JSON allows it, no UTF-8 can hold it) in a
# text chunk becomes U+FFFD, so that what is recorded and reported stays UTF-8. The server's other
# strings reach the outputs through ttftui.core.textsafe, which shows them escaped.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _dumps(v: Any) -> str:
    try:
        return json.dumps(v)
    except (ValueError, RecursionError):
        return "(unreadable)"


def _error_text(body: str) -> str:
    """The server's error message, when its body is OpenAI-style JSON, else the start of the body."""
    try:
        doc = json.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return " ".join(str(msg).split())[:300]
    except (ValueError, RecursionError):
        pass
    return " ".join(body.split())[:300] or "(no body)"


def _no_answer(e: BaseException) -> bool:
    """Whether a transport error means the server gave no answer at all (refused, reset, closed,
    timed out, unreachable), rather than one that was not HTTP."""
    return isinstance(e, (OSError, http.client.RemoteDisconnected, http.client.IncompleteRead))


def _why(e: BaseException, ep: Endpoint) -> str:
    where = f"{ep.host}:{ep.port}"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused by {where} (is the server running?)"
    if isinstance(e, socket.timeout):
        return f"timed out talking to {where}"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve {ep.host}: {e.strerror or e}"
    if isinstance(e, (http.client.RemoteDisconnected, ConnectionResetError, http.client.IncompleteRead)):
        return f"{where} closed the connection mid-response ({type(e).__name__})"
    if isinstance(e, OverflowError):  # http.client reading a chunk size or length no C size holds
        return f"{where} sent malformed HTTP framing (a chunk size or length too large to read)"
    return f"{type(e).__name__} talking to {where}: {e}"
