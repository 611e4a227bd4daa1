"""What the live dashboard costs, and whether it keeps up.

1. Decode speed with the dashboard open vs headless, on the real demo model. Both run at once as
   live sessions with an untimed 300 ms pause before each run (``run.pause_ms``), and take turns:
   the benchmark holds one stopped (SIGSTOP) inside that pause while the other computes one run,
   then switches, so every run is counted and two runs compared are seconds apart (this shared
   machine's speed drifts by more than the effect within a minute). The dashboard runs for real in
   a terminal (a detached tmux session, 160x48); both sides record their session, and each
   recording is folded with the report's own reducer, so both get the same per-run figures (and
   both pay the recorder). Printed: median decode tok/s, TTFT and TPOT per side, the paired
   per-turn ratios with a distribution-free 95 % confidence interval of their median, and each
   process's CPU per thread from /proc (main thread = the dashboard's UI, or headless's event pump;
   llama.cpp itself computes in the engine host, a child process, whose CPU is not in these figures),
   and the largest inter-token gap (max ITL) per side: the worst run and the median run.
   ``--variant NAME:KEY=VAL`` runs more than one dashboard in the same rotation, with config
   overrides (e.g. ``unlimited:ui.busy_cpu_pct=0``), to see what a setting costs. Each dashboard
   logs its frames (TTFTUI_FRAME_LOG), and the frames are placed among its recorded tokens: printed
   are the frames a run, what the tokens right after a frame lost (the frames' cost) and the decode
   speed away from frames against headless (what everything else costs).
2. A synthetic 5,000 tok/s stream into the dashboard (in-process, Textual's headless driver): every
   token must reach the dashboard's state (no loss), and the drain lag (engine time of the newest
   event vs the moment the dashboard folded it) must stay bounded.

Usage:  python benchmarks/bench_dashboard.py [--turns 60] [--tokens 128] [--variant ...]
                                             [--skip-real] [--skip-stress]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
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
pause_ms = {pause_ms}
[[scenarios]]
name = "decode"
prompt_tokens = 128
max_tokens = {tokens}
"""


class Side:
    """One live ttftui process (headless or the dashboard, each in a tmux terminal) that the benchmark
    starts once and then lets compute in turns, holding it stopped (SIGSTOP) while the other side
    has the machine. Its recording is read as it grows: run ids in start order, runs ended."""

    def __init__(self, name: str, cfg: Path, tmp: Path, sets: list[str] | None = None):
        self.name, self.rec = name, tmp / f"{name}.ttftrec"
        self._off, self._tail = 0, b""
        self.started: list[int] = []  # run ids in the order they started
        self.ended = 0
        self.windows: list[tuple[float, float, float]] = []  # (main-thread CPU s, other threads CPU s, wall s)
        self.turns: list[list[int]] = []  # per turn, the run ids counted
        opts = " ".join(f"--set {kv}" for kv in (sets or []))
        # Both sides run the same way, each in a terminal of its own (a detached tmux session, 160x48):
        # same session and scheduling group, same pty; the only difference is the dashboard.
        # Not as the pane's own process: tmux sends SIGCONT to a pane process that stops, so each
        # runs under a shell that waits for it (``; true`` keeps sh from exec'ing it).
        self.tmux = f"ttftui-bench-{os.getpid()}-{name}"
        head = f"--headless -q -o {tmp / f'{name}.json'}" if name.startswith("headless") else ""
        # the dashboard logs its frames (TTFTUI_FRAME_LOG): each is placed among the recorded tokens
        self.frames = None if head else tmp / f"{name}.frames.jsonl"
        env = f"env TTFTUI_FRAME_LOG={self.frames} " if self.frames else ""
        cmd = f"sh -c '{env}{sys.executable} -m ttftui {head} --config {cfg} {opts} --record {self.rec}; true'"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.tmux, "-x", "160", "-y", "48", cmd],
                       check=True, cwd=ROOT)
        self.pid = _pane_python(self.tmux)

    def read(self) -> None:
        """Take in what the recording gained since the last read (the recorder flushes every event)."""
        if not self.rec.exists():
            return
        with self.rec.open("rb") as f:
            f.seek(self._off)
            chunk = f.read()
        self._off += len(chunk)
        lines = (self._tail + chunk).split(b"\n")
        self._tail = lines.pop()
        for line in lines:
            if b'"type":"run_started"' in line:
                self.started.append(json.loads(line)["run_id"])
            elif b'"type":"run_finished"' in line or b'"type":"run_failed"' in line:
                self.ended += 1

    def alive(self) -> bool:
        return Path(f"/proc/{self.pid}").exists() and "zombie" not in Path(f"/proc/{self.pid}/status").read_text()

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait_run_end(self, n_ended: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.ended < n_ended:
            if time.monotonic() > deadline or not self.alive():
                raise SystemExit(f"{self.name}: no progress (is the session still running?)")
            time.sleep(0.02)
            self.read()

    def turn(self) -> None:
        """Let this side compute one run: it was stopped inside the untimed pause before it (its
        front end had drawn the previous result by then), so the run starts as soon as it is let
        go; stop it again inside the pause after it, once its front end has had the time to draw."""
        self.read()
        n = self.ended
        t0, a = time.monotonic(), thread_cpu_s(self.pid)
        self.signal(signal.SIGCONT)
        self.wait_run_end(n + 1)
        time.sleep(SETTLE_S)
        t1, b = time.monotonic(), thread_cpu_s(self.pid)
        self.signal(signal.SIGSTOP)
        self.read()
        main = b.get(self.pid, 0.0) - a.get(self.pid, 0.0)
        rest = sum(v - a.get(k, 0.0) for k, v in b.items() if k != self.pid)
        self.windows.append((main, rest, t1 - t0))
        self.turns.append(self.started[n:n + 1])

    def close(self) -> None:
        try:
            self.signal(signal.SIGCONT)
            if self.name.startswith("headless"):
                self.signal(signal.SIGINT)
            else:
                subprocess.run(["tmux", "send-keys", "-t", self.tmux, "q"], check=False)
            for _ in range(100):
                if not self.alive():
                    break
                time.sleep(0.1)
        except OSError:
            pass
        finally:
            subprocess.run(["tmux", "kill-session", "-t", self.tmux], capture_output=True)

    def tokens(self) -> dict[int, list]:
        """Every run's tokens (TokenEmitted events, in order), by run id."""
        from ttftui.core.events import TokenEmitted
        from ttftui.run.recording import read_recording

        runs: dict[int, list] = {}
        for e in read_recording(self.rec).events:
            if isinstance(e, TokenEmitted):
                runs.setdefault(e.run_id, []).append(e)
        return runs

    def results(self) -> list[list[dict]]:
        """Per turn, the counted runs' report rows (the recording folded by the same reducer as the
        headless report)."""
        from ttftui.run.recording import read_recording
        from ttftui.analysis.reducer import fold
        from ttftui.report.build import build_report

        rows = {r["run_id"]: r for r in json.loads(build_report(fold(read_recording(self.rec).events))
                                                   .model_dump_json())["runs"]}
        return [[rows[i] for i in ids if i in rows and rows[i]["counted"]] for ids in self.turns]


PAUSE_MS = 300  # both sides pause (untimed) before each run; the benchmark switches sides inside it
SETTLE_S = 0.15  # how long into that pause a side is stopped: its front end has drawn the result by then


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


def _pane_python(session: str) -> int:
    """The ttftui process in a tmux pane (the pane's own process, or its child if a shell is between)."""
    pid = int(subprocess.run(["tmux", "list-panes", "-t", session, "-F", "#{pane_pid}"], capture_output=True,
                             text=True, check=True).stdout.split()[0])
    for _ in range(20):
        if "python" in Path(f"/proc/{pid}/comm").read_text():
            return pid
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            pid = int(kids[0])
        else:
            time.sleep(0.05)
    return pid


def real_comparison(turns: int, threads: int, tokens: int, refresh_hz: float,
                    variants: dict[str, list[str]] | None = None) -> None:
    if not shutil.which("tmux"):
        print("tmux not found: the dashboard-vs-headless comparison needs a real terminal; skipped")
        return
    tmp = Path(tempfile.mkdtemp(prefix="ttftui-bench-"))
    cfg = tmp / "c.toml"
    per_side = 1 + turns + 2  # the warm-up, one run a turn, a margin
    cfg.write_text(CONFIG.format(threads=threads, tokens=tokens, iterations=per_side, refresh_hz=refresh_hz,
                                 pause_ms=PAUSE_MS))
    names = ["headless", *(variants or {"dashboard": []})]
    sides: list[Side] = []
    try:
        for name in names:  # start each, let it load and do its warm-up, then hold it in the pause after
            side = Side(name, cfg, tmp, (variants or {}).get(name))
            sides.append(side)
            side.wait_run_end(1, timeout=180)
            time.sleep(SETTLE_S)
            side.signal(signal.SIGSTOP)
        for t in range(turns):
            for side in (sides if t % 2 == 0 else sides[::-1]):
                side.turn()
            if (t + 1) % 10 == 0 or t + 1 == turns:
                print(f"  {t + 1}/{turns} turns", flush=True)
    finally:
        for side in sides:
            side.close()
    res = {s.name: s.results() for s in sides}
    base = res["headless"]
    flat = {k: [r for turn in v for r in turn] for k, v in res.items()}
    print()
    print(f"{'metric (median of runs)':<26} " + " ".join(f"{k:>12}" for k in names) + "   ratios to headless")
    for key, label in (("decode_tps", "decode tok/s"), ("ttft_ms", "TTFT ms"), ("tpot_ms", "TPOT ms"),
                       ("unaccounted_ms", "unaccounted ms")):
        med = {k: statistics.median(r[key] for r in v) for k, v in flat.items()}
        print(f"{label:<26} " + " ".join(f"{med[k]:>12.2f}" for k in names) + "   " +
              " ".join(f"{med[k] / med['headless']:.3f}" for k in names[1:]))
    for label, agg in (("max ITL ms (worst run)", max), ("max ITL ms (median run)", statistics.median)):
        med = {k: agg(max(r["itl_ms"]) for r in v if r["itl_ms"]) for k, v in flat.items()}
        print(f"{label:<26} " + " ".join(f"{med[k]:>12.2f}" for k in names) + "   " +
              " ".join(f"{med[k] / med['headless']:.3f}" for k in names[1:]))
    print(f"(n = {len(flat['headless'])} runs a side, one a turn, {tokens} tokens each, 128-token prompt)")
    cores = os.cpu_count() or 1
    for s in sides:
        main, rest, wall = (sum(w[i] for w in s.windows) for i in range(3))
        print(f"CPU over its turns (a run and {SETTLE_S * 1000:.0f} ms of the pause after it), {s.name}: "
              f"main thread {main / wall * 100:.2f} % of one core, other threads {rest / wall * 100:.1f} % "
              f"(of {cores * 100} %)")
    for name in names[1:]:
        for key, label in (("decode_tps", "decode tok/s"), ("ttft_ms", "TTFT")):
            rs = sorted(statistics.median(r[key] for r in d) / statistics.median(r[key] for r in h)
                        for d, h in zip(res[name], base))
            lo, hi = _median_ci(rs)
            print(f"paired per-turn ratio {name}/headless, {label}: median {statistics.median(rs):.3f}, "
                  f"95 % CI of the median {lo:.3f}..{hi:.3f} ({len(rs)} turns; quartiles "
                  f"{rs[len(rs) // 4]:.3f}, {rs[(3 * len(rs)) // 4]:.3f})")
    by_name = {s.name: s for s in sides}
    for name in names[1:]:
        if by_name[name].frames is not None:
            frame_attribution(name, by_name[name], by_name["headless"])


AFTER_FRAME_S = 0.3  # how long after a frame began its tokens are counted as the frame's


def frame_attribution(name: str, dash: Side, head: Side) -> None:
    """Where the dashboard's cost lies, from its frame log placed among its recorded tokens (same
    clock): each token's gap is compared with the headless side's mean gap at the same position in
    the answer (the gaps grow with the context), scaled to the run's own speed away from frames.
    What tokens within AFTER_FRAME_S of a frame lost beyond that is the frames' cost; the run's speed
    away from frames, paired with the headless run of the same turn, is what the rest costs."""
    frames = [json.loads(line) for line in dash.frames.read_text().splitlines() if line.strip()]
    d_tok, h_tok = dash.tokens(), head.tokens()
    turns = [(d, h) for d, h in zip(dash.turns, head.turns) if d and h and d[0] in d_tok and h[0] in h_tok]
    ref: dict[int, list[float]] = {}
    for _, (h,) in turns:
        for t in h_tok[h][1:]:
            ref.setdefault(t.index, []).append(t.dt_ns / 1e6)
    mean_ref = {i: statistics.fmean(v) for i, v in ref.items()}
    lost_ms = decode_ms = 0.0
    n_frames = 0
    frame_cpu: list[float] = []
    away: list[float] = []  # per turn: dashboard's speed away from frames / headless speed
    for (d,), (h,) in turns:
        toks = d_tok[d]
        starts = [f["t_ns"] for f in frames if f.get("run") == d and f.get("tokens", 0) > 0
                  and f["t_ns"] < toks[-1].t_ns]
        n_frames += len(starts)
        frame_cpu += [f["frame_ms"] for f in frames if f.get("run") == d and f.get("tokens", 0) > 0]
        near, far = [], []
        for t in toks[1:]:
            gap, r = t.dt_ns / 1e6, mean_ref[t.index]
            hit = any(s < t.t_ns and t.t_ns - s < AFTER_FRAME_S * 1e9 for s in starts)
            (near if hit else far).append((gap, r))
            decode_ms += gap
        if not far:
            continue
        speed = statistics.fmean(g / r for g, r in far)  # > 1: slower than headless's mean
        lost_ms += sum(g - r * speed for g, r in near)
        h_speed = statistics.fmean(t.dt_ns / 1e6 / mean_ref[t.index] for t in h_tok[h][1:])
        away.append(h_speed / speed)
    if not away:
        return
    away.sort()
    lo, hi = _median_ci(away)
    cpu = f", {statistics.median(frame_cpu):.1f} ms of UI CPU each (median)" if frame_cpu else ""
    print(f"{name}: {n_frames / len(away):.2f} frames a run while tokens streamed{cpu}; tokens within "
          f"{AFTER_FRAME_S * 1000:.0f} ms after a frame lost {lost_ms / max(n_frames, 1):.1f} ms per frame, "
          f"{lost_ms / decode_ms * 100:.2f} % of decode time")
    print(f"{name}: decode tok/s away from frames, paired per-turn ratio to headless: median "
          f"{statistics.median(away):.3f}, 95 % CI {lo:.3f}..{hi:.3f}")


def _median_ci(xs: list[float]) -> tuple[float, float]:
    """Distribution-free 95 % confidence interval of the median (order statistics of the binomial)."""
    from math import comb

    n = len(xs)
    xs = sorted(xs)
    if n < 6:
        return xs[0], xs[-1]
    best = (0, n - 1)
    for k in range(n // 2):  # the widest inner pair whose coverage is still >= 95 %
        cover = sum(comb(n, i) for i in range(k + 1, n - k)) / 2 ** n
        if cover >= 0.95:
            best = (k, n - 1 - k)
        else:
            break
    return xs[best[0]], xs[best[1]]


def stress(rate: int, tokens: int, runs: int) -> None:
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.tui.app import TtftApp
    from ttftui.run.live import LiveSource

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
    ap.add_argument("--turns", type=int, default=60, help="runs each side computes, one a turn (default 60)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=128, help="tokens generated a run (default 128)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME[:KEY=VAL,...]",
                    help="instead of one default dashboard, one dashboard per --variant, with these config "
                         "overrides (ttftui --set), e.g. --variant default --variant unlimited:ui.busy_cpu_pct=0; "
                         "a name starting with 'headless' is a second headless session (an A/A control)")
    ap.add_argument("--refresh-hz", type=float, default=4.0, help="the dashboard's ui.refresh_hz (default 4)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--skip-stress", action="store_true")
    args = ap.parse_args()
    if not args.skip_real:
        print(f"decode speed: dashboard (tmux, 160x48, {args.refresh_hz:g} Hz) vs headless, demo model, interleaved")
        variants = {}
        for v in args.variant:
            name, _, sets = v.partition(":")
            variants[name] = [kv for kv in sets.split(",") if kv]
        real_comparison(args.turns, args.threads, args.tokens, args.refresh_hz,
                        variants or None)
        print()
    if not args.skip_stress:
        stress(5000, 5000, 3)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
