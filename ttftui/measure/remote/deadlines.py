"""Deadlines for requests in flight, kept by one watchdog thread per process.

A blocking read can only be bounded per ``recv``: a server that sends one byte a second, an SSE
comment now and then, or response headers that never finish keeps every ``recv`` short and the
request alive forever. The reader itself cannot look at a clock while it is blocked, and making it
look between lines would add work to every token. So the reader only registers its request (once,
not per token) and the watchdog looks at it a few times a second: when a deadline has passed, the
session was stopped, or the server was declared lost, it shuts the request's socket down, which
wakes the blocked reader at once; the reader then reads *why* here and ends the request with that
reason. The stream's progress is read from counters the reader keeps anyway (``status``,
``n_events``), so the normal path costs nothing per token.

Kinds of expiry: ``headers`` (no response headers within ``headers_s``), ``idle`` (no SSE event
within ``idle_s`` of the last one; comments and partial lines are not events), ``deadline`` (the
whole request took longer than ``total_s``), ``stopped`` (the session's stop request) and
``lost`` (the engine declared the server lost; ``abort()`` says why).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable

TICK_S = 0.1  # how often the watchdog looks: the precision of every deadline, and of a stop


class Watch:
    """One request in flight: its socket, its deadlines, and (once expired) why."""

    __slots__ = ("sock", "res", "headers_s", "idle_s", "total_s", "stop", "abort", "t0", "end_at", "seen",
                 "seen_at", "kind", "why")

    def __init__(self, sock: Any, *, res: Any = None, headers_s: float | None = None, idle_s: float | None = None,
                 total_s: float | None = None, stop: Callable[[], bool] | None = None,
                 abort: Callable[[], str | None] | None = None):
        self.sock, self.res = sock, res
        self.headers_s, self.idle_s, self.total_s = headers_s, idle_s, total_s
        self.stop, self.abort = stop, abort
        now = time.monotonic()
        self.t0 = now
        self.end_at = now + total_s if total_s else None
        self.seen: tuple[int, int] = (0, 0)  # (status, n_events) when last looked at
        self.seen_at = now
        self.kind: str | None = None
        self.why: str | None = None

    def check(self, now: float) -> None:
        if self.kind is not None:
            return
        if self.stop is not None and self.stop():
            self._expire("stopped", "stopped")
        elif self.abort is not None and (why := self.abort()):
            self._expire("lost", why)
        elif self.end_at is not None and now >= self.end_at:
            self._expire("deadline", f"{self.total_s:g} s")
        elif self.res is not None:
            res = self.res
            seen = (res.status, res.n_events)
            if seen != self.seen:
                self.seen, self.seen_at = seen, now
            elif not seen[0] and self.headers_s and now - self.seen_at >= self.headers_s:
                self._expire("headers", f"{self.headers_s:g} s")
            elif seen[0] and self.idle_s and now - self.seen_at >= self.idle_s:
                self._expire("idle", f"{self.idle_s:g} s")

    def _expire(self, kind: str, why: str) -> None:
        self.why = why
        self.kind = kind  # set last: the reader looks at kind
        try:  # wakes a reader blocked in recv (the socket itself is closed by its owner, in its thread)
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        except (OSError, TypeError, AttributeError):
            pass


class Watchdog:
    """The process's one watchdog thread, started when the first request is watched; it sleeps
    while nothing is in flight."""

    def __init__(self) -> None:
        self._watches: set[Watch] = set()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, w: Watch) -> Watch:
        with self._cv:
            self._watches.add(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="ttftui-deadlines", daemon=True)
                self._thread.start()
            self._cv.notify()
        return w

    def unwatch(self, w: Watch) -> None:
        with self._cv:
            self._watches.discard(w)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._watches:
                    self._cv.wait()
                watches = list(self._watches)
            now = time.monotonic()
            for w in watches:
                w.check(now)
            time.sleep(TICK_S)


WATCHDOG = Watchdog()
