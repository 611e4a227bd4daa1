"""Ray client workers (--ray) against what they must sustain.

1. Events per second the driver takes in from 2, 4 and 8 workers: each worker streams from a
   loopback server (in another process) that writes its chunks as fast as it can, so the workers
   produce events faster than one driver can take them; printed per worker count: events, the load
   span, events/s into the driver's stream, and the driver process's CPU (goal: >= 10,000 events/s).
2. The client CPU per worker at a fixed request rate: an open loop of ``--rate`` requests/s split
   over 2 workers against a paced server (TTFT ``--ttft-ms``, ``--chunks`` chunks ``--itl-ms``
   apart); each worker's own process CPU, as it reports it.

The cluster is two Ray nodes on this machine (ray.cluster_utils), started once.

Usage:  python benchmarks/bench_cluster.py [--workers 2,4,8] [--chunks-fast 4000] [--rate 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def server(delay_s: float, chunk_s: float, n_words: int) -> tuple[subprocess.Popen, str]:
    from tests.fake_server import start_in_process_of_its_own

    return start_in_process_of_its_own(delay_s, chunk_s, n_words)


def session(args: list[str]) -> tuple[dict, float, float, str]:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-cluster-{os.getpid()}.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ttftui", "--headless", *args, "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    wall = time.perf_counter() - w0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"ttftui failed: {r.stderr.strip()[-2000:]}")
    rep = json.loads(out.read_text())
    out.unlink()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rep, cpu, wall, r.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="2,4,8")
    ap.add_argument("--chunks-fast", type=int, default=4000, help="chunks per request in part 1")
    ap.add_argument("--requests-per-worker", type=int, default=2)
    ap.add_argument("--rate", type=float, default=8.0)
    ap.add_argument("--rate-requests", type=int, default=48)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    args = ap.parse_args()
    import ray
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    print(f"two-node Ray cluster on this machine up in {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs")
    fast, fast_url = server(0.0, 0.0, args.chunks_fast - 1)
    try:
        print("\n1. events into the driver (server streams as fast as it can):")
        print(f"{'workers':>8} {'events':>9} {'made in s':>10} {'made/s':>9} {'taken in s':>11} {'taken/s':>9} "
              f"{'driver CPU s':>13}")
        for w in (int(x) for x in args.workers.split(",")):
            n = w * args.requests_per_worker
            rep, cpu, wall, _ = session(["--url", fast_url, "--scenario", "short", "--set", "run.warmup=0",
                                         "--set", f"scenarios=[{{name='short', prompt_tokens=8, max_tokens={args.chunks_fast}}}]",
                                         "--concurrency", str(w), "--requests", str(n), "--ray", cluster.address,
                                         "--workers", str(w), "-q"])
            ld = rep["load"]["short"]
            events = sum(r["remote"]["n_chunks"] + 2 for r in rep["runs"])  # tokens + start + end per run
            # made: the workers' span (their clocks); taken: from the first request's start to the end of
            # the session on the driver's clock, which comes after the last batch was published
            taken = (rep["session"]["duration_ms"] - min(r["t_start_ms"] for r in rep["runs"])) / 1000
            print(f"{w:>8} {events:>9,} {ld['span_s']:>10.2f} {events / ld['span_s']:>9,.0f} {taken:>11.2f} "
                  f"{events / taken:>9,.0f} {cpu:>13.2f}  ({ld['n_ok']}/{n} ok, whole run {wall:.1f} s incl. start-up)")
    finally:
        fast.terminate()
    paced, paced_url = server(args.ttft_ms / 1000, args.itl_ms / 1000, args.chunks - 1)
    try:
        print(f"\n2. client CPU per worker, open loop {args.rate:g} req/s over 2 workers (TTFT {args.ttft_ms:g} ms, "
              f"{args.chunks} chunks {args.itl_ms:g} ms apart):")
        rep, cpu, wall, err = session(["--url", paced_url, "--scenario", "short", "--set", "run.warmup=0",
                                       "--set", f"scenarios=[{{name='short', prompt_tokens=8, max_tokens={args.chunks}}}]",
                                       "--rate", str(args.rate), "--requests", str(args.rate_requests),
                                       "--ray", cluster.address, "--workers", "2"])
        ld = rep["load"]["short"]
        print(f"   {ld['n_ok']}/{args.rate_requests} ok, {ld['request_rate']:.2f} req/s over {ld['span_s']:.1f} s, "
              f"client lag max {ld['client_lag_max_ms'] or 0:.1f} ms")
        for n in rep["notices"]:
            m = re.search(r"Ray worker (\S+): .*counted phase, (\d+) requests, its process's CPU ([\d.]+) s over "
                          r"([\d.]+) s \(([\d.]+) % of a core\)", n["message"])
            if m:
                cpu_w = float(m.group(3))
                print(f"   worker {m.group(1)}: {m.group(2)} requests, CPU {cpu_w:.3f} s over {float(m.group(4)):.1f} s "
                      f"= {m.group(5)} % of a core, {cpu_w / int(m.group(2)) * 1000:.2f} ms per request")
        print(f"   driver process CPU {cpu:.2f} s over {wall:.1f} s (start-up and Ray's client included)")
    finally:
        paced.terminate()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
