"""How big recordings are, and how fast a large one replays into a report.

1. Bytes per token: a real demo-model session (SmolLM2, short prompts) is recorded twice, plain and
   gzip; printed are the file sizes divided by the number of output tokens, and the share of the
   file that token events take.
2. Replay speed: a synthetic session of about 100,000 events (virtual clock: generated in seconds)
   is recorded, then ``ttftui replay FILE --headless -o OUT`` runs as a user would run it, in a
   subprocess (interpreter start-up, reading, validation, folding, statistics and the JSON report
   included). Printed: wall time per repeat, median, and the ratio to the 3 s goal; the same for
   the gzip file. The report is checked to hold every run.

Usage:  python benchmarks/bench_replay.py [--events 100000] [--repeats 3] [--skip-real]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GOAL_S = 3.0


def record_session(config, path: Path, *, synthetic: bool) -> int:
    """Run a whole session with a recorder attached; returns the number of events written."""
    from ttftui.measure.select import select_engine
    from ttftui.run.recording import Recorder
    from ttftui.run.session import SessionRunner

    rec = Recorder(path)  # the recorder is a sink: the runner publishes straight into it
    runner = SessionRunner(config, select_engine(config, force_synthetic=synthetic), rec)
    runner.run()
    rec.close()
    if runner.error is not None:
        raise SystemExit(f"session failed: {runner.error}")
    return rec.n_events


def bytes_per_token(tmp: Path) -> None:
    from ttftui.core.config import Config
    from ttftui.run.recording import read_recording
    from ttftui.core.events import TokenEmitted

    cfg = Config.model_validate({
        "model": {"n_ctx": 1024, "n_threads": 2},
        "run": {"iterations": 2, "warmup": 1},
        "scenarios": [{"name": "short", "prompt_tokens": 128, "max_tokens": 100}],
    })
    print("recording size, real demo-model session (3 runs of 128 -> 100 tokens, telemetry at 10 Hz):")
    for name in ("real.ttftrec", "real.ttftrec.gz"):
        p = tmp / name
        n_events = record_session(cfg, p, synthetic=False)
        rec = read_recording(p)
        n_tok = sum(1 for e in rec.events if isinstance(e, TokenEmitted))
        size = p.stat().st_size
        tok_bytes = 0
        if not name.endswith(".gz"):
            tok_bytes = sum(len(line) + 1 for line in p.read_bytes().splitlines() if b'"type":"token"' in line)
        share = f"; token events are {tok_bytes / size * 100:.0f} % of the file" if tok_bytes else ""
        print(f"  {name:<17} {size:>9,} bytes, {n_events:,} events, {n_tok} tokens: "
              f"{size / n_tok:.0f} bytes per token (whole file / tokens){share}")


def big_recording(tmp: Path, n_events: int, gz: bool) -> tuple[Path, int, int]:
    from ttftui.core.config import Config

    tokens_per_run = 1000
    runs = max(1, round(n_events / (tokens_per_run + 8)))
    cfg = Config.model_validate({
        "model": {"n_ctx": tokens_per_run + 200},
        "run": {"iterations": runs, "warmup": 0, "seed": 1},
        "scenarios": [{"name": "long-answer", "prompt_tokens": 128, "max_tokens": tokens_per_run}],
    })
    p = tmp / ("big.ttftrec" + (".gz" if gz else ""))
    n = record_session(cfg, p, synthetic=True)
    return p, n, runs


def replay_timing(path: Path, n_events: int, runs: int, repeats: int) -> float:
    times = []
    for k in range(repeats):
        out = path.parent / f"out{k}.json"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ttftui", "replay", str(path), "--headless", "-q", "-o", str(out)],
                       check=True, cwd=ROOT)
        times.append(time.perf_counter() - t0)
        rep = json.loads(out.read_text())
        if len(rep["runs"]) != runs:
            raise SystemExit(f"replayed report holds {len(rep['runs'])} runs, expected {runs}")
    med = statistics.median(times)
    print(f"  {path.name:<17} {path.stat().st_size / 1e6:6.1f} MB, {n_events:,} events: "
          f"{', '.join(f'{t:.2f}' for t in times)} s -> median {med:.2f} s = {med / GOAL_S:.2f} x the {GOAL_S:g} s goal")
    return med


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-real", action="store_true", help="skip the bytes-per-token part (needs the demo model)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ttftui-bench-replay-") as d:
        tmp = Path(d)
        if not args.skip_real:
            bytes_per_token(tmp)
            print()
        print(f"ttftui replay FILE --headless -o OUT (subprocess, wall time incl. start-up), {args.repeats} repeats:")
        for gz in (False, True):
            path, n, runs = big_recording(tmp, args.events, gz)
            replay_timing(path, n, runs, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
