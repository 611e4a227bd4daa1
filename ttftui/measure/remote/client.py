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
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

MAX_ERROR_BODY = 2048
MAX_EVENT_BYTES = 1 << 20


class RequestFailed(Exception):
    """A request that produced no complete answer; ``str(e)`` says why, in one line."""


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
                 api_key: str | None = None):
        u = urlsplit(url.rstrip("/"))
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.scheme, self.host = u.scheme, u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base = u.path or ""
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.api_key = api_key
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
        return h

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get_json(self, path: str, *, timeout_s: float | None = None) -> tuple[int, Any, dict[str, str]]:
        """A small untimed request (models, tokenize, props): (status, JSON or None, headers)."""
        return self._simple("GET", path, None, timeout_s)

    def get_text(self, path: str, *, timeout_s: float | None = None) -> tuple[int, str]:
        """A small untimed GET of a text resource (llama-server's /metrics): (status, text)."""
        conn = self._new_conn()
        try:
            conn.timeout = timeout_s or self.connect_timeout_s
            conn.request("GET", path, headers=self._headers(False))
            resp = conn.getresponse()
            return resp.status, resp.read(MAX_EVENT_BYTES).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as e:
            raise RequestFailed(_why(e, self)) from None
        finally:
            conn.close()

    def post_json(self, path: str, body: dict[str, Any], *, timeout_s: float | None = None
                  ) -> tuple[int, Any, dict[str, str]]:
        return self._simple("POST", path, body, timeout_s)

    def _simple(self, method: str, path: str, body: dict[str, Any] | None, timeout_s: float | None
                ) -> tuple[int, Any, dict[str, str]]:
        conn = self._new_conn()
        try:
            conn.timeout = timeout_s or self.connect_timeout_s
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers=self._headers(body is not None))
            resp = conn.getresponse()
            raw = resp.read(MAX_EVENT_BYTES)
            headers = {k.lower(): v for k, v in resp.getheaders()}
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            return resp.status, doc, headers
        except (OSError, http.client.HTTPException) as e:
            raise RequestFailed(_why(e, self)) from None
        finally:
            conn.close()

    def stream(self, path: str, body: dict[str, Any], *, on_chunk: Callable[[Chunk, int], None] | None = None,
               stop: Callable[[], bool] | None = None) -> StreamResult:
        """POST ``body`` (with ``stream: true``) and read the SSE stream to its end, timing it.
        ``on_chunk(chunk, index)`` is called as each text chunk arrives (its time is already
        taken); ``stop()`` is asked between events (True: close the stream and return early)."""
        data = json.dumps(body).encode()
        reused = self._conn is not None and self._conn.sock is not None
        try:
            return self._stream_once(path, data, on_chunk, stop)
        except _StaleConnection:
            # The kept-alive connection had been closed by the server (llama-server closes it after a
            # stream): nothing reached it. Send again on a new connection, timed from a new t0.
            if not reused:
                raise RequestFailed(f"{self.host}:{self.port} closed the connection before answering") from None
            return self._stream_once(path, data, on_chunk, stop)

    def _stream_once(self, path: str, data: bytes, on_chunk: Callable[[Chunk, int], None] | None,
                     stop: Callable[[], bool] | None) -> StreamResult:
        perf = time.perf_counter_ns
        headers = self._headers(True)
        t0 = perf()
        res = StreamResult(t0_ns=t0)
        conn = self._conn
        try:
            if conn is None or conn.sock is None:
                conn = self._conn = self._new_conn()
                c0 = perf()
                conn.connect()
                res.at["connect_ns"] = perf() - c0
            conn.sock.settimeout(self.read_timeout_s)  # type: ignore[union-attr]
            try:
                conn.request("POST", path, body=data, headers=headers)
                res.at["sent_ns"] = perf() - t0
                resp = conn.getresponse()
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                self.close()
                raise _StaleConnection() from None
            res.at["headers_ns"] = perf() - t0
            res.status = resp.status
            res.server_header = resp.getheader("server")
            if resp.status != 200:
                detail = resp.read(MAX_ERROR_BODY).decode("utf-8", "replace")
                self.close()
                raise RequestFailed(f"HTTP {resp.status} {resp.reason}: {_error_text(detail)}")
            self._read_events(resp, res, t0, on_chunk, stop)  # res.at["end_ns"] is taken at [DONE]
            if res.stopped or resp.will_close:
                self.close()
            else:
                resp.read()  # the rest of the body (the chunked terminator): the connection can be reused
        except (RequestFailed, _StaleConnection):
            self.close()
            raise
        except socket.timeout:
            self.close()
            where = ("before the response headers" if not res.at["headers_ns"]
                     else "while streaming (the server stalled)")
            raise RequestFailed(f"timed out after {self.read_timeout_s:g} s {where}") from None
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise RequestFailed(_why(e, self)) from None
        return res

    @staticmethod
    def _read_events(resp: http.client.HTTPResponse, res: StreamResult, t0: int,
                     on_chunk: Callable[[Chunk, int], None] | None, stop: Callable[[], bool] | None) -> None:
        perf = time.perf_counter_ns
        data_lines: list[bytes] = []
        size = 0
        done = False
        while not done:
            line = resp.readline(MAX_EVENT_BYTES + 1)
            if not line:
                break
            if len(line) > MAX_EVENT_BYTES:
                raise RequestFailed(f"malformed SSE: an event line longer than {MAX_EVENT_BYTES} bytes")
            line = line.rstrip(b"\r\n")
            if line:
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                    size += len(line)
                elif line.startswith(b":") or b":" in line:  # a comment, or event:/id:/retry: fields
                    pass
                else:
                    raise RequestFailed(f"malformed SSE: unexpected line {line[:80]!r}")
                continue
            if not data_lines:
                continue
            now = perf() - t0
            payload = b"\n".join(data_lines)
            data_lines, size = [], 0
            res.n_events += 1
            if res.at["first_event_ns"] is None:
                res.at["first_event_ns"] = now
            if payload.strip() == b"[DONE]":
                done = True
                break
            try:
                doc = json.loads(payload)
            except ValueError:
                raise RequestFailed(f"malformed SSE: an event is not JSON ({payload[:80]!r})") from None
            if not isinstance(doc, dict):
                raise RequestFailed("malformed SSE: an event is not a JSON object")
            if "error" in doc and not doc.get("choices"):
                raise RequestFailed(f"the server reported an error mid-stream: {_error_text(json.dumps(doc['error']))}")
            _take_event(doc, res, now, on_chunk)
            if stop is not None and stop():
                res.stopped = True
                break
        res.at["end_ns"] = perf() - t0
        if not done and not res.stopped and res.finish_reason is None:
            raise RequestFailed(f"the stream ended early (after {len(res.chunks)} text chunks, no [DONE])")


def _take_event(doc: dict[str, Any], res: StreamResult, now: int, on_chunk: Callable[[Chunk, int], None] | None) -> None:
    if isinstance(doc.get("usage"), dict):
        res.usage = doc["usage"]
    if isinstance(doc.get("timings"), dict):
        res.timings = doc["timings"]
    if isinstance(doc.get("prompt_progress"), dict):
        res.progress.append((now, doc["prompt_progress"]))
    choices = doc.get("choices")
    if not isinstance(choices, list) or not choices:
        return
    if res.at["first_choice_ns"] is None:
        res.at["first_choice_ns"] = now
    ch = choices[0] if isinstance(choices[0], dict) else {}
    if ch.get("finish_reason"):
        res.finish_reason = str(ch["finish_reason"])
    delta = ch.get("delta") if isinstance(ch.get("delta"), dict) else {}
    reasoning = delta.get("reasoning_content") or delta.get("reasoning")
    content = delta.get("content") if "delta" in ch else ch.get("text")
    for text, kind in ((reasoning, "reasoning"), (content, "content")):
        if isinstance(text, str) and text:
            if kind == "reasoning" and res.at["first_reasoning_ns"] is None:
                res.at["first_reasoning_ns"] = now
            if kind == "content" and res.at["first_content_ns"] is None:
                res.at["first_content_ns"] = now
            chunk = Chunk(now, text, kind, res.t0_ns + now)
            res.chunks.append(chunk)
            if on_chunk is not None:
                on_chunk(chunk, len(res.chunks) - 1)


def _error_text(body: str) -> str:
    """The server's error message, when its body is OpenAI-style JSON, else the start of the body."""
    try:
        doc = json.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        msg = err.get("message") if isinstance(err, dict) else err
        if msg:
            return " ".join(str(msg).split())[:300]
    except ValueError:
        pass
    return " ".join(body.split())[:300] or "(no body)"


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
    return f"{type(e).__name__} talking to {where}: {e}"
