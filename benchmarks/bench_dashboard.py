"""What the live dashboard costs, and whether it keeps up.

1. Decode speed with the dashboard open vs headless, on the real demo model, interleaved round by
   round. The dashboard runs for real in a terminal (a detached tmux session, 160x48) and records
   its session; the recording is folded with the same reducer to get the same per-run figures the
   headless report has (both sides record, so the recorder's cost is on both). Printed: median
   decode tok/s and TTFT per side, their ratio, and per-round paired ratios (their spread is the
   machine's noise). Because wall-clock speed on a shared machine moves by more than the effect,
   the CPU time of each process's main thread (the dashboard's UI, or headless's event pump) is
   read from /proc too: with llama.cpp using every core, that CPU is what the front end takes from
   the engine.
2. A synthetic 5,000 tok/s stream into the dashboard (in-process, Textual's headless driver): every
   token must reach the dashboard's state (no loss), and the drain lag (engine time of the newest
   event vs the moment the dashboard folded it) must stay bounded.

Usage:  python benchmarks/bench_dashboard.py [--rounds 3] [--skip-real] [--skip-stress]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """
[ui]
refresh_hz = {refresh_hz}
[model]
n_ctx = 1024
n_threads = {threads}
[run]
iterations = {iterations}
warmup = 1
[[scenarios]]
name = "decode"
prompt_tokens = 128
max_tokens = {tokens}
"""


def _runs(report_or_state) -> list[dict]:
    return [r for r in report_or_state["runs"] if r["counted"]]


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of every thread of ``pid``, from /proc."""
    tck = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / tck
    return out


class CpuWatch:
    """Per-thread CPU of one process, read from /proc every poll and tied to what its recording
    says is happening. The main thread is the consumer: the dashboard's UI, or headless's event
    pump; every other thread is the engine's (llama.cpp workers) or the telemetry sampler.

    Two windows: the whole session (engine ready to last run ended) and only the stretches while a
    run is computing (between two polls that both saw a run in progress): a front end's work in the
    gaps between runs takes nothing from the engine, its work during a run does."""

    def __init__(self, pid: int, rec: Path, n_runs: int):
        self.pid, self.rec, self.n_runs = pid, rec, n_runs
        self.first: tuple[float, dict[int, float]] | None = None
        self.last: tuple[float, dict[int, float]] | None = None
        self.done = False
        self._prev: tuple[bool, float, dict[int, float]] | None = None
        self.in_run = [0.0, 0.0, 0.0]  # main-thread CPU s, other threads CPU s, wall s

    def poll(self) -> bool:
        """Take a reading; True once every run has ended (the readings stop there: after it the
        engine threads exit and the main thread writes the report, neither of which is the cost
        of watching a run)."""
        if self.done:
            return True
        data = self.rec.read_bytes() if self.rec.exists() else b""
        ended = data.count(b'"type":"run_finished"') + data.count(b'"type":"run_failed"')
        if ended >= self.n_runs:
            self.done = True  # the previous reading (at most one poll earlier) is the last one
            return True
        try:
            snap = (time.monotonic(), thread_cpu_s(self.pid))
        except OSError:
            self.done = True
            return True
        if self._prev is not None and not self._prev[2].keys() <= snap[1].keys():
            self.done = True  # threads are exiting (the recording lags the engine): the session is over
            return True
        if self.first is None and b'"type":"engine_ready"' in data:
            self.first = snap
        if self.first is not None:
            self.last = snap
        running = data.count(b'"type":"run_started"') > ended
        if self._prev is not None and self._prev[0] and running:
            _, t0, a = self._prev
            main, rest = self._split(a, snap[1])
            self.in_run[0] += main
            self.in_run[1] += rest
            self.in_run[2] += snap[0] - t0
        self._prev = (running, *snap)
        return False

    def _split(self, a: dict[int, float], b: dict[int, float]) -> tuple[float, float]:
        main = b.get(self.pid, 0.0) - a.get(self.pid, 0.0)
        rest = sum(v - a.get(k, 0.0) for k, v in b.items() if k != self.pid)
        return main, rest

    def shares(self) -> tuple[float, float]:
        """(main thread, all other threads) CPU in % of one core over the whole session."""
        (t0, a), (t1, b) = self.first, self.last  # type: ignore[misc]
        main, rest = self._split(a, b)
        wall = max(t1 - t0, 1e-9)
        return main / wall * 100, rest / wall * 100

    def run_shares(self) -> tuple[float, float]:
        """The same, only while runs were computing."""
        main, rest, wall = self.in_run
        wall = max(wall, 1e-9)
        return main / wall * 100, rest / wall * 100


def run_headless(cfg: Path, out: Path, rec: Path, n_runs: int) -> tuple[list[dict], CpuWatch]:
    p = subprocess.Popen([sys.executable, "-m", "ttftui", "--headless", "-q", "--config", str(cfg), "-o", str(out),
                          "--record", str(rec)], cwd=ROOT)
    watch = CpuWatch(p.pid, rec, n_runs)
    while p.poll() is None:
        watch.poll()
        time.sleep(0.1)
    if p.returncode != 0:
        raise SystemExit(f"headless run failed with exit code {p.returncode}")
    return _runs(json.loads(out.read_text())), watch


def _pane_python(session: str) -> int:
    """The ttftui process in a tmux pane (the pane's own process, or its child if a shell is between)."""
    pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                             text=True, check=True).stdout.split()[0])
    for _ in range(3):
        if "python" in Path(f"/proc/{pid}/comm").read_text():
            return pid
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if not kids:
            break
        pid = int(kids[0])
    return pid


def run_dashboard_tmux(cfg: Path, rec: Path, n_runs: int) -> tuple[list[dict], CpuWatch]:
    from ttftui.recording import read_recording
    from ttftui.reducer import fold
    from ttftui.report import build_report

    session = f"ttftui-bench-{os.getpid()}"
    cmd = f"{sys.executable} -m ttftui --config {cfg} --record {rec}"
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True, cwd=ROOT)
    try:
        time.sleep(0.5)
        watch = CpuWatch(_pane_python(session), rec, n_runs)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not watch.poll():
            time.sleep(0.1)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        for _ in range(100):
            if subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    rep = build_report(fold(read_recording(rec).events))
    return _runs(json.loads(rep.model_dump_json())), watch


def real_comparison(rounds: int, threads: int, tokens: int, iterations: int, refresh_hz: float) -> None:
    if not shutil.which("tmux"):
        print("tmux not found: the dashboard-vs-headless comparison needs a real terminal; skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="ttftui-bench-"))
    cfg = tmp / "c.toml"
    cfg.write_text(CONFIG.format(threads=threads, tokens=tokens, iterations=iterations, refresh_hz=refresh_hz))
    head: list[dict] = []
    dash: list[dict] = []
    paired: dict[str, list[float]] = {"decode_tps": [], "ttft_ms": []}
    cpu: dict[str, list[tuple[float, float, float, float]]] = {"h": [], "d": []}
    for r in range(rounds):
        order = ("h", "d") if r % 2 == 0 else ("d", "h")
        this: dict[str, list[dict]] = {}
        for side in order:
            if side == "h":
                got, watch = run_headless(cfg, tmp / f"h{r}.json", tmp / f"h{r}.ttftrec", iterations + 1)
                head += got
            else:
                got, watch = run_dashboard_tmux(cfg, tmp / f"d{r}.ttftrec", iterations + 1)
                dash += got
            this[side] = got
            main, rest = watch.shares()
            run_main, run_rest = watch.run_shares()
            cpu[side].append((main, rest, run_main, run_rest))
            print(f"  round {r + 1} {'headless ' if side == 'h' else 'dashboard'}: decode "
                  f"{statistics.median(x['decode_tps'] for x in got):.1f} tok/s, TTFT "
                  f"{statistics.median(x['ttft_ms'] for x in got):.1f} ms; % of a core, main thread "
                  f"{main:.1f} (during runs {run_main:.1f}), other threads {rest:.0f} (during runs {run_rest:.0f})",
                  flush=True)
        for key in paired:  # the ratio within a round: the machine's drift between rounds cancels
            paired[key].append(statistics.median(x[key] for x in this["d"]) / statistics.median(x[key] for x in this["h"]))
    print()
    print(f"{'metric':<28} {'headless':>10} {'dashboard':>10} {'ratio':>7}")
    for key, label in (("decode_tps", "decode tok/s (median)"), ("ttft_ms", "TTFT ms (median)"),
                       ("unaccounted_ms", "unaccounted ms (median)")):
        a = statistics.median(x[key] for x in head)
        b = statistics.median(x[key] for x in dash)
        print(f"{label:<28} {a:>10.2f} {b:>10.2f} {b / a:>7.3f}")
    p99 = lambda runs: statistics.quantiles([g for x in runs for g in x["itl_ms"]], n=100)[98]  # noqa: E731
    print(f"{'ITL p99 ms':<28} {p99(head):>10.2f} {p99(dash):>10.2f} {p99(dash) / p99(head):>7.3f}")
    print(f"(n = {len(head)} headless runs, {len(dash)} dashboard runs)")
    cores = os.cpu_count() or 1
    for i, what in ((0, "whole session"), (2, "while runs compute")):
        hm = statistics.median(c[i] for c in cpu["h"])
        dm = statistics.median(c[i] for c in cpu["d"])
        print(f"main-thread CPU, {what} (median over rounds, % of one core): headless consumer {hm:.2f}, "
              f"dashboard UI {dm:.2f}; the dashboard's extra {dm - hm:.2f} % of one core = "
              f"{(dm - hm) / cores:.2f} % of this {cores}-core machine")
    for key, label in (("decode_tps", "decode tok/s"), ("ttft_ms", "TTFT")):
        rs = sorted(paired[key])
        print(f"paired per-round ratio dashboard/headless, {label}: median {statistics.median(rs):.3f} "
              f"(rounds: {', '.join(f'{x:.3f}' for x in rs)})")


def stress(rate: int, tokens: int, runs: int) -> None:
    from ttftui.config import Config
    from ttftui.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.tui.app import TtftApp
    from ttftui.tui.sources import LiveSource

    cfg = Config.model_validate({"run": {"iterations": runs, "warmup": 0}, "model": {"n_ctx": tokens + 64},
                                 "scenarios": [{"name": "stress", "prompt_tokens": 32, "max_tokens": tokens}]})
    src = LiveSource(cfg, ["stress"], lambda: SyntheticEngine(cfg, "stress test", pace=True,
                                                              cost=CostModel.with_decode_rate(rate)))
    app = TtftApp(src, refresh_hz=10)
    lags: list[float] = []
    drained = [0]
    orig = src.drain

    def drain():
        events = orig()
        if events:
            drained[0] += len(events)
            lags.append((src.now_ns() - events[-1].t_ns) / 1e6)
        return events

    src.drain = drain  # type: ignore[method-assign]

    async def main():
        async with app.run_test(size=(160, 48)) as pilot:
            t0 = time.monotonic()
            while len(app.pump.state.runs) < runs and time.monotonic() - t0 < 120:
                if src.error_message():
                    raise SystemExit(f"stress session failed: {src.error_message()}")
                await pilot.pause(0.05)
            wall = time.monotonic() - t0
            await pilot.press("q")
            return wall

    wall = asyncio.run(main())
    state = app.pump.state
    got = sum(len(r.tokens) for r in state.runs)
    complete = all([t.index for t in r.tokens] == list(range(tokens)) for r in state.runs)
    rates = [r.metrics.decode_tps for r in state.runs]
    print(f"stream of {runs} x {tokens} tokens at {rate} tok/s (synthetic, paced) into the dashboard:")
    print(f"  tokens in the dashboard's state: {got} of {runs * tokens}  (every index present: {complete})")
    print(f"  achieved stream rate: {statistics.median(rates):.0f} tok/s; wall {wall:.1f} s")
    print(f"  drain lag (newest event age when folded): median {statistics.median(lags):.1f} ms, "
          f"max {max(lags):.1f} ms over {len(lags)} drains")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--refresh-hz", type=float, default=4.0, help="the dashboard's ui.refresh_hz (default 4)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-stress", action="store_true")
    args = ap.parse_args()
    if not args.skip_real:
        print(f"decode speed: dashboard (tmux, 160x48, {args.refresh_hz:g} Hz) vs headless, demo model, interleaved")
        real_comparison(args.rounds, args.threads, args.tokens, args.iterations, args.refresh_hz)
        print()
    if not args.skip_stress:
        stress(5000, 5000, 3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
