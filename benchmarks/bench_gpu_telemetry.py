"""How finely NVML sees a GPU phase, and what reading it costs (NVIDIA GPU and a CUDA build of llama.cpp).

While llama.cpp runs the demo model on the GPU in a thread (runs of ``--prompt`` tokens, ``--gen``
generated, a pause between runs, so the GPU goes busy and idle):

1. the sampler's ordinary reading (``nvmlDeviceGetUtilizationRates``) is polled every ``--poll-ms``:
   how often its value changes. That is the driver's update period; polling faster repeats a value.
2. the driver's own sample buffer (``nvmlDeviceGetSamples``, what ttftui drains every tick) per
   field: how many samples, the median gap (the driver's period) and its spread.
3. the cost of one ``NvmlBackend.read`` (a tick's GPU reads) and one ``drain``, in µs of CPU.

Usage:  python benchmarks/bench_gpu_telemetry.py [--seconds 4] [--prompt 2048] [--gen 100] [--poll-ms 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402,F401  (first: a CUDA build crashes at load when numpy came before it)

from ttftui.config import Config  # noqa: E402
from ttftui.demo_model import require_demo_model  # noqa: E402
from ttftui.engine.llama import LlamaEngine  # noqa: E402
from ttftui.telemetry import NvmlBackend  # noqa: E402


def load_loop(engine: LlamaEngine, prep, stop: threading.Event, pause_s: float, spans: list) -> None:
    i = 0
    while not stop.is_set():
        t0 = time.time_ns()
        engine.run(prep, 1000 + i, False, lambda ev: None, threading.Event())
        spans.append((t0, time.time_ns()))
        i += 1
        stop.wait(pause_s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--gen", type=int, default=100)
    ap.add_argument("--poll-ms", type=float, default=2.0)
    ap.add_argument("--pause-ms", type=float, default=150.0)
    args = ap.parse_args()
    cfg = Config.model_validate({
        "model": {"n_ctx": args.prompt + args.gen + 8, "n_batch": 2048, "n_gpu_layers": -1, "flash_attn": "on"},
        "scenarios": [{"name": "load", "prompt_tokens": args.prompt, "max_tokens": args.gen}],
    })
    engine = LlamaEngine(cfg, str(require_demo_model()))
    engine.load()
    prep = engine.prepare(cfg.scenarios[0], 0)
    engine.run(prep, 0, True, lambda ev: None, threading.Event())  # warm-up
    nv = NvmlBackend(0)
    print(f"GPU {nv.gpu_name}; load: {args.prompt}-token prompt, {args.gen} generated, {args.pause_ms:g} ms pause",
          flush=True)
    nv.drain()  # empty the driver's buffer of what came before
    stop, spans = threading.Event(), []
    th = threading.Thread(target=load_loop, args=(engine, prep, stop, args.pause_ms / 1e3, spans), daemon=True)
    th.start()
    polls: list[tuple[int, float]] = []
    drained: dict[str, list[tuple[int, float]]] = {}
    end = time.perf_counter() + args.seconds
    next_drain = time.perf_counter() + 0.1
    h, N = nv.handle, nv.N
    while time.perf_counter() < end:
        polls.append((time.time_ns(), float(N.nvmlDeviceGetUtilizationRates(h).gpu)))
        if time.perf_counter() >= next_drain:  # as the sampler does: every 100 ms
            for f, xs in nv.drain().items():
                drained.setdefault(f, []).extend(xs)
            next_drain += 0.1
        time.sleep(args.poll_ms / 1e3)
    stop.set()
    th.join()
    for f, xs in nv.drain().items():
        drained.setdefault(f, []).extend(xs)
    runs_ms = [(b - a) / 1e6 for a, b in spans]
    print(f"runs under load: {len(spans)}, each {statistics.median(runs_ms):.1f} ms (median)")

    changes = [t for (t, v), (_, v0) in zip(polls[1:], polls) if v != v0]
    gaps = [(b - a) / 1e6 for a, b in zip(changes, changes[1:])]
    print(f"\n1. nvmlDeviceGetUtilizationRates polled every {args.poll_ms:g} ms: {len(polls)} polls, "
          f"{len(changes)} changes of value; median time between changes "
          f"{statistics.median(gaps) if gaps else float('nan'):.1f} ms (min {min(gaps) if gaps else float('nan'):.1f})")

    print("\n2. the driver's sample buffer (nvmlDeviceGetSamples), drained every 100 ms:")
    print(f"{'field':<18} {'samples':>8} {'period ms':>10} {'p10 gap':>8} {'p90 gap':>8}  first values")
    for f, xs in drained.items():
        ts = sorted(t for t, _ in xs)
        g = [(b - a) / 1e3 for a, b in zip(ts, ts[1:])]
        q = statistics.quantiles(g, n=10) if len(g) >= 2 else [float("nan")] * 9
        print(f"{f:<18} {len(xs):>8} {statistics.median(g) if g else float('nan'):>10.2f} {q[0]:>8.2f} {q[-1]:>8.2f}  "
              f"{[round(v, 1) for _, v in xs[:8]]}")
    for f, why in nv.driver_off.items():
        print(f"{f:<18} unavailable: {why}")
    lag = [(time.time_ns() // 1000 - max(t for t, _ in xs)) / 1e3 for xs in drained.values() if xs]
    print(f"(newest sample's age when the probe ended: {min(lag) if lag else float('nan'):.1f} ms; the "
          "timestamps are on the wall clock if this is small and positive)")

    out, failed = {}, {}
    n = 200
    c0 = time.thread_time()
    for _ in range(n):
        nv.read(out, failed)
    read_us = (time.thread_time() - c0) / n * 1e6
    c0 = time.thread_time()
    for _ in range(n):
        nv.drain()
    drain_us = (time.thread_time() - c0) / n * 1e6
    print(f"\n3. CPU per call: NvmlBackend.read {read_us:.0f} µs, drain {drain_us:.0f} µs "
          f"(at 100 ms ticks: {(read_us + drain_us) / 1e3:.2f} % of a core)")
    nv.close()
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
