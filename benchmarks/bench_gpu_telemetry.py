"""How finely NVML sees a GPU phase, and what reading it costs (NVIDIA GPU and a CUDA build of llama.cpp).

While llama.cpp runs the demo model on the GPU in a thread (runs of ``--prompt`` tokens, ``--gen``
generated, a pause between runs, so the GPU goes busy and idle):

1. the sampler's ordinary reading (``nvmlDeviceGetUtilizationRates``) is polled every ``--poll-ms``:
   how often its value changes. That is the driver's update period; polling faster repeats a value.
2. the driver's own sample buffer (``nvmlDeviceGetSamples``, what ttftui drains every tick) per
   field: how many samples, the median gap (the driver's period) and its spread.
3. the cost of one ``NvmlBackend.read`` (a tick's GPU reads) and one ``drain`` of every field, in
   µs of CPU, and of one ``nvmlDeviceGetSamples`` per field;
4. how many samples the driver's buffer holds per field (nothing drained for ``--hold-s``), which
   bounds how rarely the sampler may read it (``ttftui.measure.telemetry.DRIVER_DRAIN_MAX_S``).

``--load torch`` makes the GPU load with PyTorch matrix products (bursts of ``--burst-ms``) instead of
llama.cpp, for a machine without a CUDA build of llama.cpp.

Usage:  python benchmarks/bench_gpu_telemetry.py [--seconds 4] [--prompt 2048] [--gen 100] [--poll-ms 2]
                                                 [--load llama|torch] [--hold-s 8]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if "torch" not in sys.argv:
    import llama_cpp  # noqa: F401  (first: a CUDA build crashes at load when numpy came before it)

from ttftui.measure.telemetry import NvmlBackend  # noqa: E402


def load_loop(engine, prep, stop: threading.Event, pause_s: float, spans: list) -> None:
    i = 0
    while not stop.is_set():
        t0 = time.time_ns()
        engine.run(prep, 1000 + i, False, lambda ev: None, threading.Event())
        spans.append((t0, time.time_ns()))
        i += 1
        stop.wait(pause_s)


def torch_loop(stop: threading.Event, pause_s: float, burst_s: float, spans: list) -> None:
    import torch

    a = torch.randn(4096, 4096, device="cuda", dtype=torch.bfloat16)
    while not stop.is_set():
        t0 = time.time_ns()
        while time.time_ns() - t0 < burst_s * 1e9:
            a @ a
            torch.cuda.synchronize()
        spans.append((t0, time.time_ns()))
        stop.wait(pause_s)


def llama_load(args):
    from ttftui.core.config import Config
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.engine.llama import LlamaEngine

    cfg = Config.model_validate({
        "model": {"n_ctx": args.prompt + args.gen + 8, "n_batch": 2048, "n_gpu_layers": -1, "flash_attn": "on"},
        "scenarios": [{"name": "load", "prompt_tokens": args.prompt, "max_tokens": args.gen}],
    })
    engine = LlamaEngine(cfg, str(require_demo_model()))
    engine.load()
    prep = engine.prepare(cfg.scenarios[0], 0)
    engine.run(prep, 0, True, lambda ev: None, threading.Event())  # warm-up
    return engine, prep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--prompt", type=int, default=2048)
    ap.add_argument("--gen", type=int, default=100)
    ap.add_argument("--poll-ms", type=float, default=2.0)
    ap.add_argument("--pause-ms", type=float, default=150.0)
    ap.add_argument("--load", choices=("llama", "torch"), default="llama")
    ap.add_argument("--burst-ms", type=float, default=60.0, help="--load torch: each burst of work")
    ap.add_argument("--hold-s", type=float, default=8.0)
    ap.add_argument("--sampler-s", type=float, default=10.0)
    args = ap.parse_args()
    engine = None
    if args.load == "llama":
        engine, prep = llama_load(args)
    nv = NvmlBackend(0)
    what = (f"{args.prompt}-token prompt, {args.gen} generated" if engine else f"bf16 4096² products for {args.burst_ms:g} ms")
    print(f"GPU {nv.gpu_name}; load: {what}, {args.pause_ms:g} ms pause", flush=True)
    nv.drain(force=True)  # empty the driver's buffer of what came before
    stop, spans = threading.Event(), []
    if engine is not None:
        th = threading.Thread(target=load_loop, args=(engine, prep, stop, args.pause_ms / 1e3, spans), daemon=True)
    else:
        th = threading.Thread(target=torch_loop, args=(stop, args.pause_ms / 1e3, args.burst_ms / 1e3, spans),
                              daemon=True)
    th.start()
    polls: list[tuple[int, float]] = []
    drained: dict[str, list[tuple[int, float]]] = {}
    end = time.perf_counter() + args.seconds
    next_drain = time.perf_counter() + 0.1
    h, N = nv.handle, nv.N
    while time.perf_counter() < end:
        polls.append((time.time_ns(), float(N.nvmlDeviceGetUtilizationRates(h).gpu)))
        if time.perf_counter() >= next_drain:  # as the sampler does: every 100 ms
            for f, xs in nv.drain(force=True).items():
                drained.setdefault(f, []).extend(xs)
            next_drain += 0.1
        time.sleep(args.poll_ms / 1e3)
    for f, xs in nv.drain(force=True).items():
        drained.setdefault(f, []).extend(xs)
    lag = [(time.time_ns() // 1000 - max(t for t, _ in xs)) / 1e3 for xs in drained.values() if xs]
    time.sleep(args.hold_s)  # nothing drained meanwhile: how much does the driver keep?
    held = {f: len(xs) for f, xs in nv.drain(force=True).items()}
    stop.set()
    th.join()
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
        nv.drain(force=True)
    drain_us = (time.thread_time() - c0) / n * 1e6
    print(f"\n3. CPU per call: NvmlBackend.read {read_us:.0f} µs, drain of every field {drain_us:.0f} µs")
    import pynvml as N

    for f, (kind, _) in nv._driver_types.items():
        last = nv._last_seen.get(f, 0)
        c0 = time.thread_time()
        for _ in range(50):
            try:
                N.nvmlDeviceGetSamples(nv.handle, kind, last)
            except N.NVMLError:
                pass
        print(f"   nvmlDeviceGetSamples {f:<18} {(time.thread_time() - c0) / 50 * 1e6:>7.0f} µs")
    print(f"\n4. samples the driver still held after {args.hold_s:g} s without a drain: {held} "
          f"(a field's period × this = how long its buffer lasts)")
    nv.close()

    from ttftui.measure.telemetry import TelemetrySampler

    t0 = time.perf_counter_ns()
    sampler = TelemetrySampler(lambda ev: None, lambda: time.perf_counter_ns() - t0, backend="nvml", interval_ms=100)
    sampler.start()
    time.sleep(args.sampler_s)
    sampler.stop()
    print(f"\n5. ttftui's sampler as a session runs it (every 100 ms; each field of the driver's buffer "
          f"when due), {args.sampler_s:g} s: {sampler.cpu_s * 1e3:.1f} ms of CPU = "
          f"{sampler.cpu_s / args.sampler_s * 100:.2f} % of a core; {sampler.n_samples} samples, {sampler.missed} "
          f"missed ticks, {sampler.n_driver_samples} driver samples")
    if engine is not None:
        engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
