"""Progress on stderr for headless runs: a one-line bar on a terminal, plain lines otherwise.

Data goes to stdout (or ``-o``); everything here goes to stderr, so ``ttftui --headless > r.json``
stays a clean JSON file. It consumes the same events as every other front end.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from ttftui.events import AlertChanged, EngineReady, Notice, RunFailed, RunFinished, RunStarted, SessionFinished


class Progress:
    def __init__(self, total_runs: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = max(total_runs, 1)
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.current = ""
        self._last_draw = 0.0
        self._t0 = time.monotonic()

    def _line(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            self.stream.write("\r\x1b[2K")
        self.stream.write(text + "\n")
        self.stream.flush()

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
        self.stream.write(f"\r\x1b[2K{bar} {self.done}/{self.total} runs  {self.current}  {now - self._t0:5.1f}s")
        self.stream.flush()

    def __call__(self, ev: Any) -> None:
        if isinstance(ev, EngineReady):
            src = "SYNTHETIC" if ev.synthetic else "REAL"
            extra = f" ({ev.synthetic_reason})" if ev.synthetic_reason else ""
            self._line(f"ttftui: {src} engine {ev.engine}{extra}; model {ev.model.name}"
                       f" [{ev.model.quantization or '?'}] on {ev.device.name}; load {ev.load_ms:.0f} ms")
        elif isinstance(ev, RunStarted):
            self.current = f"{ev.scenario} #{ev.iteration + 1}{' (warm-up)' if ev.warmup else ''}"
            self._bar(force=True)
        elif isinstance(ev, RunFinished):
            self.done += 1
            if not self.tty and not self.quiet:
                self._line(f"ttftui: {ev.scenario} run {ev.run_id}{' warm-up' if ev.warmup else ''}: "
                           f"TTFT {ev.ttft_ns / 1e6:.1f} ms, {ev.n_output_tokens} tokens in {ev.e2e_ns / 1e6:.0f} ms")
            self._bar(force=True)
        elif isinstance(ev, RunFailed):
            self.done += 1
            self._line(f"ttftui: {ev.scenario} run {ev.run_id} failed: {ev.error}")
        elif isinstance(ev, Notice) and ev.level == "warning":  # errors: the CLI prints them once
            self._line(f"ttftui: {ev.level}: {ev.message}")
        elif isinstance(ev, AlertChanged):
            word = "ALERT" if ev.state == "firing" else "cleared"
            self._line(f"ttftui: {word}: {ev.message}")
        elif isinstance(ev, SessionFinished):
            if self.tty and not self.quiet:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
        else:
            self._bar()
