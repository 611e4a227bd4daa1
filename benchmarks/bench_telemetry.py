"""What the telemetry sampler costs.

1. CPU: the sampler thread runs for a while at 10 Hz (and at 100 Hz for scale) with the backends
   this machine has; its own thread CPU time (``time.thread_time``) divided by the wall time is
   its cost as a share of one core. Printed with the cost of one sample and the missed ticks.
2. Decode speed: the real demo model runs the same request with the sampler off and on (10 Hz),
   interleaved round by round (the order alternates), engine loop called directly so nothing else
   differs. Printed: medians per side, the ratio on/off and the per-round paired ratios (their
   spread is the machine's noise).

Usage:  python benchmarks/bench_telemetry.py [--seconds 20] [--rounds 8] [--skip-real]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ttftui.measure.engine.base import Clock  # noqa: E402
from ttftui.measure.telemetry import TelemetrySampler  # noqa: E402


def sampler_cpu(seconds: float, interval_ms: float) -> None:
    clock = Clock()
    events: list = []
    s = TelemetrySampler(events.append, clock.now_ns, backend="auto", interval_ms=interval_ms)
    t0 = time.perf_counter()
    s.start()
    time.sleep(seconds)
    s.stop()
    wall = time.perf_counter() - t0
    per_sample_us = s.cpu_s / max(s.n_samples, 1) * 1e6
    print(f"  {1000 / interval_ms:>5.0f} Hz ({s.backend_name}): {s.n_samples} samples in {wall:.1f} s, "
          f"thread CPU {s.cpu_s * 1000:.0f} ms = {s.cpu_s / wall * 100:.3f} % of one core "
          f"({per_sample_us:.0f} us per sample), missed ticks {s.missed}")


def decode_with_and_without(rounds: int, threads: int, gen: int) -> None:
    from ttftui.core.config import Config
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.engine.llama import LlamaEngine
    from ttftui.core.events import TokenEmitted
    from ttftui.analysis.metrics import run_metrics

    cfg = Config.model_validate({"model": {"n_ctx": 1024, "n_threads": threads},
                                 "scenarios": [{"name": "d", "prompt_tokens": 128, "max_tokens": gen}]})
    eng = LlamaEngine(cfg, require_demo_model())
    eng.load()
    prep = eng.prepare(cfg.scenarios[0], 0)

    def one(run_id: int, telemetry: bool) -> tuple[float, float]:
        sampler = None
        if telemetry:
            sampler = TelemetrySampler(lambda e: None, eng.clock.now_ns, backend="auto", interval_ms=100)
            sampler.start()
        toks: list = []
        fin = eng.run(prep, run_id, False, toks.append, threading.Event())
        if sampler is not None:
            sampler.stop()
        m = run_metrics(0, 0, fin, [t for t in toks if isinstance(t, TokenEmitted)])
        return m.decode_tps, m.ttft_ms

    one(0, False)  # warm-up, not counted
    off: list[tuple[float, float]] = []
    on: list[tuple[float, float]] = []
    paired: list[float] = []
    for r in range(rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        got = {}
        for tel in order:
            got[tel] = one(r * 2 + 1 + tel, tel)
        off.append(got[False])
        on.append(got[True])
        paired.append(got[True][0] / got[False][0])
        print(f"  round {r + 1}: decode off {got[False][0]:6.1f} tok/s, on {got[True][0]:6.1f} tok/s", flush=True)
    eng.close()
    d_off, d_on = statistics.median(x[0] for x in off), statistics.median(x[0] for x in on)
    t_off, t_on = statistics.median(x[1] for x in off), statistics.median(x[1] for x in on)
    print(f"\n{'metric':<24} {'off':>9} {'on (10 Hz)':>11} {'ratio':>7}")
    print(f"{'decode tok/s (median)':<24} {d_off:>9.1f} {d_on:>11.1f} {d_on / d_off:>7.3f}")
    print(f"{'TTFT ms (median)':<24} {t_off:>9.1f} {t_on:>11.1f} {t_on / t_off:>7.3f}")
    ps = sorted(paired)
    print(f"paired per-round decode ratio on/off: median {statistics.median(ps):.3f}, "
          f"range {ps[0]:.3f} .. {ps[-1]:.3f} (n = {len(ps)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=200)
    ap.add_argument("--skip-real", action="store_true")
    args = ap.parse_args()
    print("sampler thread CPU (idle process, host via psutil + whatever GPU backend loads):")
    sampler_cpu(args.seconds, 100.0)
    sampler_cpu(args.seconds / 2, 10.0)
    if not args.skip_real:
        print(f"\ndecode speed, demo model, 128 -> {args.gen} tokens, {args.threads} threads, sampler off vs on, interleaved:")
        decode_with_and_without(args.rounds, args.threads, args.gen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
