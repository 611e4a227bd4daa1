"""Ray engine hosts (``--per-node``, ``cluster.matrix``): one line per host.

Each line says which host (node:pid), what it loaded (REAL or SYNTHETIC, model, quantization,
device), what it runs now (scenario, run, tokens so far), its own counted runs so far with their
TTFT median and p99 (its runs only: the percentile table below pools every host's raw samples), and
its node's last telemetry reading. The host the dashboard follows (``w`` cycles it) is marked
``▶``: the token stream, the TTFT bar and the telemetry panel then show that host's runs and node.
Shown only in a session with engine hosts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.text import Text

from ttftui.analysis.reducer import SessionState
from ttftui.analysis.view import SessionView
from ttftui.tui import render as R
from ttftui.tui.widgets.panel import LinePanel


def host_names(state: SessionState) -> list[str]:
    """The engine hosts of the session, in the order their first engine became ready."""
    out: list[str] = []
    for e in state.engines:
        if e.worker is not None and e.worker not in out:
            out.append(e.worker)
    return out


class HostsPanel(LinePanel):
    def __init__(self, **kw: Any):
        super().__init__("Engine hosts", **kw)
        self.selected: str | None = None

    def view_key(self, state: SessionState, view: SessionView) -> Any:
        return (tuple((r.run_id, len(r.tokens)) for r in state.in_flight), len(state.runs), len(state.engines),
                len(state.workers_lost), self.selected, self.theme_file and self.theme_file.name,
                tuple(len(v) // 10 for v in state.worker_telemetry.values()))

    def draw(self, state: SessionState, view: SessionView) -> None:
        th = self.theme_file
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return
        names = host_names(state)
        lost = {w.worker for w in state.workers_lost}
        engine_of = {e.worker: e for e in state.engines if e.worker is not None}  # the latest per host
        running = {r.started.worker: r for r in state.in_flight if r.started.worker}
        done = view.host_counted
        rows: list[tuple[Any, Any]] = []
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{len(names)} engine host{'s' if len(names) != 1 else ''}", style="bold")
        head.append(f", {len(running)} running")
        if lost:
            head.append(f", {len(lost)} lost", style="bold red")
        head.append(" · w: follow " + (self.selected or "the newest run"), style="dim")
        rows.append(((head.plain, th.name), head))
        for w in names[: max(height - 1, 0)]:
            e = engine_of[w]
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append("▶ " if w == self.selected else "  ", style="bold")
            line.append(f"{w:<16} ", style="bold red" if w in lost else "bold")
            line.append("SYNTH " if e.synthetic else "REAL  ", style="bold yellow" if e.synthetic else "")
            line.append(f"{e.model.quantization or '?'} {e.device.name[:18]} ", style="dim")
            r = running.get(w)
            if w in lost:
                line.append("lost", style="bold red")
            elif r is not None:
                now = f"{r.scenario} #{r.started.iteration + 1}" + (" (warm-up)" if r.warmup else "")
                line.append(f"{now}: {len(r.tokens)} tok " if r.tokens else f"{now}: prefill ",
                            style=R.component_colour(th, "prefill") if not r.tokens else th.itl.normal)
            else:
                line.append("idle ", style="dim")
            ok, bad, ttft = done.get(w, (0, 0, []))
            if ttft:
                p50, p99 = np.percentile(ttft, [50, 99])
                line.append(f"│ {ok} runs TTFT p50 {R.fmt_ms(float(p50))} p99 {R.fmt_ms(float(p99))}")
            if bad:
                line.append(f", {bad} failed", style="bold red")
            last = state.telemetry_of(w).last()
            if last is not None:
                bits = []
                if last.gpu_busy_pct is not None:
                    bits.append(f"GPU {last.gpu_busy_pct:.0f}%")
                if last.proc_cpu_pct is not None:
                    bits.append(f"CPU {last.proc_cpu_pct:.0f}%")
                if last.rss_bytes is not None:
                    bits.append(f"RSS {last.rss_bytes / 2**20:.0f} MiB")
                if bits:
                    line.append(" │ " + " ".join(bits), style="dim")
            rows.append(((line.plain, th.name), line))
        self._paint(rows, width, height)
