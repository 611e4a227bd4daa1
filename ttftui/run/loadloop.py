"""The threads that send a load phase's requests: a closed loop (``k`` workers, each sending its
next request when its last one ended) or an open loop (requests due on a schedule, handed to up to
``max_workers`` workers). Used by the session for a server it reaches itself, and by each Ray
client worker (ttftui.cluster.clients) for its share: the same code in both places. A conversation
under load is a third loop (:meth:`LoadLoop.users`): each worker a user holding its own
conversation, turn after turn, with a think time between turns.

``one(worker, i, due_ns)`` sends request ``i`` of the phase (``due_ns``: when it was due, open loop
only) with ``worker``, a client of its own (``make_worker()``; closed after its thread ends). Pause
holds back new requests (those in flight finish), skip and stop send no more (an open loop's
requests already due but not yet taken by a worker are dropped too: a stop never waits for a
backlog); both loops return how many requests were not sent. The requests in flight end by
themselves: the remote client's watchdog cuts them off at once on a stop.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any, Callable, Sequence

One = Callable[[Any, int, "int | None"], None]


class LoadLoop:
    def __init__(self, make_worker: Callable[[], Any], one: One, *, stop: threading.Event,
                 paused: threading.Event | None = None, skip: threading.Event | None = None):
        self.make_worker, self.one = make_worker, one
        self.stop = stop
        self.paused = paused or threading.Event()
        self.skip = skip or threading.Event()
        self._lock = threading.Lock()

    def hold(self) -> bool:
        """Wait while paused; True when no more requests may start."""
        while self.paused.is_set() and not self.stop.is_set():
            self.stop.wait(0.05)
        return self.stop.is_set() or self.skip.is_set()

    def closed(self, n: int, k: int) -> int:
        issued = [0]

        def work() -> None:
            w = self.make_worker()
            try:
                while True:
                    with self._lock:
                        if issued[0] >= n:
                            return
                        i = issued[0]
                        issued[0] += 1
                    if self.hold():
                        with self._lock:
                            issued[0] -= 1
                        return
                    self.one(w, i, None)
            finally:
                w.close()

        self._join(*self._start(work, min(max(k, 1), n)))
        return n - issued[0]

    def open(self, offsets_ns: Sequence[int], max_workers: int) -> int:
        perf = time.perf_counter_ns
        due: "queue.SimpleQueue[tuple[int, int] | None]" = queue.SimpleQueue()
        dropped = [0]

        def work() -> None:
            w = self.make_worker()
            try:
                while (item := due.get()) is not None:
                    if self.stop.is_set() or self.skip.is_set():  # due, but no more may start
                        with self._lock:
                            dropped[0] += 1
                        continue
                    self.one(w, item[0], item[1])
            finally:
                w.close()

        threads, errors = self._start(work, min(max_workers, len(offsets_ns)))
        sent = 0
        start = perf()
        try:
            for i, off in enumerate(offsets_ns):
                paused_at = perf() if self.paused.is_set() else None
                if self.hold():
                    break
                if paused_at is not None:  # the schedule resumes where it was, not with a burst
                    start += perf() - paused_at
                t = start + off
                while (wait := t - perf()) > 0:
                    if self.stop.wait(min(wait / 1e9, 0.05)):
                        break
                if self.stop.is_set():
                    break
                due.put((i, t))
                sent += 1
        finally:
            for _ in threads:
                due.put(None)
            self._join(threads, errors)
        return len(offsets_ns) - sent + dropped[0]

    def users(self, make_worker: Callable[[int], Any], k: int, n_each: int, turns: int,
              one: Callable[[Any, int, int], None], think_s: float = 0.0) -> int:
        """``k`` users at once, each a thread with a client of its own (``make_worker(u)``) holding
        ``n_each`` conversations of ``turns`` turns, one after another: ``one(worker, u, t)`` sends turn
        ``t`` (0-based) of user ``u``'s conversation and returns when its answer has ended; the user
        then thinks ``think_s`` seconds before its next turn (not before a conversation's first).
        Pause holds back each user's next turn, skip and stop send no more (a stop ends a think at
        once); returns how many turns were not sent."""
        left = [0]
        ids = iter(range(k))

        def user() -> None:
            with self._lock:
                u = next(ids)
            w = make_worker(u)
            try:
                for c in range(n_each):
                    for t in range(turns):
                        if t and think_s > 0:
                            self.stop.wait(think_s)
                        if self.hold():
                            with self._lock:
                                left[0] += (n_each - c) * turns - t
                            return
                        one(w, u, t)
            finally:
                w.close()

        if k < 1 or n_each < 1 or turns < 1:
            return 0
        self._join(*self._start(user, k))
        return left[0]

    def _start(self, fn: Callable[[], None], k: int) -> tuple[list[threading.Thread], list[BaseException]]:
        errors: list[BaseException] = []

        def guard() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                errors.append(e)
                self.skip.set()  # the other workers send no more

        threads = [threading.Thread(target=guard, name=f"ttftui-load-{i}", daemon=True) for i in range(k)]
        for th in threads:
            th.start()
        return threads, errors

    @staticmethod
    def _join(threads: list[threading.Thread], errors: list[BaseException]) -> None:
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
