"""What --profile-ops costs: the same prefill, plain and profiled (llama.cpp's graph callback), interleaved.

One engine (llama.cpp in this process, the demo model by default), a prompt of ``--prompt`` tokens in
chunks of ``--n-batch``, run plain (the context without a callback) and as its profiled twin (the
context with it), in ``ops`` mode (every computing node: a graph split each) and ``layers`` mode
(each layer's output), the order alternating round by round, an untimed pause between runs. Printed:
the median prefill of each, the profiled / plain ratio (paired per round, min..max), and the profiled
run's own account: the share of its prefill the observed nodes' compute covers, and the top
operations. The ratio is the distortion a reader of a profile must keep in mind; it is larger on a
machine whose cores are busy (each split waits for every compute thread).

Usage:  python benchmarks/bench_ops.py [--rounds 6] [--prompt 512] [--n-batch 512] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: E402,F401 - llama.cpp before numpy (engine_process/__main__ says why)

from ttftui.core.config import Config  # noqa: E402
from ttftui.measure.demo_model import require_demo_model  # noqa: E402
from ttftui.measure.engine.llama import LlamaEngine  # noqa: E402

PAUSE_S = 0.3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="")
    args = ap.parse_args()
    model = Path(args.model) if args.model else require_demo_model()
    print(f"bench_ops: prefill of {args.prompt} tokens (n_batch {args.n_batch}), {args.threads} threads, "
          f"{args.rounds} rounds", flush=True)
    for mode in ("ops", "layers"):
        cfg = Config.model_validate({
            "model": {"n_ctx": args.prompt + 64, "n_batch": args.n_batch, "n_threads": args.threads},
            "engine": {"profile_ops": mode}, "run": {"iterations": 1, "warmup": 0},
            "scenarios": [{"name": "p", "prompt_tokens": args.prompt, "max_tokens": 2}]})
        eng = LlamaEngine(cfg, model)
        eng.load()
        try:
            preps = {n: eng.prepare(cfg.scenario(n), 0) for n in ("p", "p@ops")}
            got: dict[str, list[float]] = {"p": [], "p@ops": []}
            last = None
            rid = 0
            for r in range(args.rounds + 1):  # round 0: a warm-up of each
                for name in (("p", "p@ops") if r % 2 == 0 else ("p@ops", "p")):
                    time.sleep(PAUSE_S)
                    rid += 1
                    fin = eng.run(preps[name], rid, r == 0, lambda ev: None, threading.Event())
                    if r:
                        got[name].append(fin.prefill_ns / 1e6)
                    if name == "p@ops":
                        last = fin
        finally:
            eng.close()
        ratios = [b / a for a, b in zip(got["p"], got["p@ops"])]
        chunks = [p for p in last.ops.phases if p.phase == "prefill_chunk"]
        span = sum(p.span_ns for p in chunks)
        compute = sum(p.compute_ns for p in chunks)
        kinds: dict[str, int] = {}
        for p in chunks:
            for k in p.kinds:
                kinds[k.kind] = kinds.get(k.kind, 0) + k.ns
        top = ", ".join(f"{k} {v / span * 100:.0f}%" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])[:5])
        print(f"\nmode {mode}: plain prefill {statistics.median(got['p']):.1f} ms, profiled "
              f"{statistics.median(got['p@ops']):.1f} ms; profiled / plain {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}..{max(ratios):.2f}, n {len(ratios)})")
        print(f"  the profiled run's account: observed compute {compute / span * 100:.1f}% of its prefill span; {top}")


if __name__ == "__main__":
    main()
