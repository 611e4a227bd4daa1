"""Progress on stderr for headless runs: a one-line bar on a terminal, plain lines otherwise.

Data goes to stdout (or ``-o``); everything here goes to stderr, so ``ttftui --headless > r.json``
stays a clean JSON file. It consumes the same events as every other front end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

from ttftui.core.events import (
    AlertChanged,
    EngineReady,
    EngineStalled,
    Notice,
    RunFailed,
    RunFinished,
    RunStarted,
    SessionFinished,
    WorkerLost,
)
from ttftui.core.textsafe import visible


class Progress:
    def __init__(self, total_runs: int | Callable[[], int], stream: TextIO | None = None, quiet: bool = False):
        self._total = total_runs  # or where to read it: a Ray session knows it once its hosts are up
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.current = ""
        self._last_draw = 0.0
        self._t0 = time.monotonic()
        self._workers: dict[int, str] = {}  # run id -> the Ray engine host / client worker running it

    def _write(self, data: str) -> None:
        """Progress is a courtesy: when stderr cannot take it (closed, ``2>/dev/full``), it stops
        and the session goes on (its report and recording are what matter)."""
        try:
            self.stream.write(data)
            self.stream.flush()
        except (OSError, ValueError):
            self.quiet = True

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        # one line, and nothing in it (a name, a message) drives the terminal
        self._write(("\r\x1b[2K" if self.tty else "") + visible(text, newlines=False) + "\n")

    @property
    def total(self) -> int:
        return max(self._total() if callable(self._total) else self._total, 1)

    def _bar(self, force: bool = False) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        width = 28
        fill = int(width * self.done / self.total)
        bar = "█" * fill + "░" * (width - fill)
        self._write(f"\r\x1b[2K{bar} {self.done}/{self.total} runs  {visible(self.current, newlines=False)}  "
                    f"{now - self._t0:5.1f}s")

    def __call__(self, ev: Any) -> None:
        if isinstance(ev, EngineReady):
            src = "SYNTHETIC" if ev.synthetic else "REAL"
            extra = f" ({ev.synthetic_reason})" if ev.synthetic_reason else ""
            self._line(f"ttftui: {src} engine {ev.engine}{extra}; model {ev.model.name}"
                       f" [{ev.model.quantization or '?'}] on {ev.device.name}"
                       + (f"; load {ev.load_ms:.0f} ms" if ev.load_ms is not None else "")
                       + (f" (engine host {ev.worker})" if ev.worker else ""))
        elif isinstance(ev, RunStarted):
            if ev.worker is not None:
                self._workers[ev.run_id] = ev.worker
            self.current = f"{ev.scenario} #{ev.iteration + 1}{' (warm-up)' if ev.warmup else ''}"
            self._bar(force=True)
        elif isinstance(ev, RunFinished):
            self.done += 1
            w = self._workers.pop(ev.run_id, None)
            if not self.tty and not self.quiet:
                self._line(f"ttftui: {ev.scenario} run {ev.run_id}{' warm-up' if ev.warmup else ''}"
                           f"{f' [{w}]' if w else ''}: "
                           f"TTFT {ev.ttft_ns / 1e6:.1f} ms, {ev.n_output_tokens} tokens in {ev.e2e_ns / 1e6:.0f} ms")
            self._bar(force=True)
        elif isinstance(ev, RunFailed):
            self.done += 1
            self._workers.pop(ev.run_id, None)
            self._line(f"ttftui: {ev.scenario} run {ev.run_id} failed: {ev.error}")
        elif isinstance(ev, Notice) and ev.level != "error":  # errors: the CLI prints them once
            if ev.level == "warning" or not self.quiet:
                self._line(f"ttftui: {'note' if ev.level == 'info' else ev.level}: {ev.message}")
        elif isinstance(ev, EngineStalled):  # one line when it stalls, one when it goes on
            self._line(f"ttftui: {'warning' if ev.state == 'stalled' else 'note'}: {ev.message}"
                       + (f" [{ev.worker}]" if ev.worker else ""))
        elif isinstance(ev, WorkerLost):
            self._line(f"ttftui: warning: Ray worker {ev.worker} lost ({ev.reason}): {len(ev.lost_runs)} run(s) in "
                       f"flight failed, {ev.unsent} request(s) not sent; the others go on")
        elif isinstance(ev, AlertChanged):
            word = "ALERT" if ev.state == "firing" else "cleared"
            self._line(f"ttftui: {word}: {ev.message}")
        elif isinstance(ev, SessionFinished):
            if self.tty and not self.quiet:
                self._write("\r\x1b[2K")
        else:
            self._bar()
