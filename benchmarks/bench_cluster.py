"""Ray client workers (--ray) against what they must sustain.

1. Events per second the driver takes in from 2, 4 and 8 workers: each worker streams from a
   loopback server (in another process) that writes its chunks as fast as it can, so the workers
   produce events faster than one driver can take them; printed per worker count: events, the load
   span, events/s into the driver's stream, and the driver process's CPU (goal: >= 10,000 events/s).
   Then the same with the dashboard open (``--dashboard``, needs tmux): ttftui runs in a 160x50 tmux
   pane with ``--record``; the dashboard's own loop drains the events, folds them, draws and writes
   each one to the recording, so the recording growing is the dashboard taking events in. Timed from
   the first run_started line to the last request's end line as they reach the file (polled every
   20 ms; the dashboard stays open for re-runs, so the session itself ends only at q); counted from
   the recording, replayed.
2. The client CPU per worker at a fixed request rate: an open loop of ``--rate`` requests/s split
   over 2 workers against a paced server (TTFT ``--ttft-ms``, ``--chunks`` chunks ``--itl-ms``
   apart); each worker's own process CPU, as it reports it.
3. What a Ray engine host adds to what it measures: the same real-model scenario (the demo model,
   1 thread, ``--host-runs`` counted runs after 2 warm-ups) run by this machine's own engine host
   (plain ``ttftui --headless``) and by a Ray engine host (a one-cell matrix, so one node computes
   at a time), alternated ``--host-rounds`` times; TTFT, prefill and decode medians side by side
   and their ratios (goal: 1.00 within noise: the host is the same runner over the same engine).

The cluster is two Ray nodes on this machine (ray.cluster_utils), started once.

Usage:  python benchmarks/bench_cluster.py [--workers 2,4,8] [--chunks-fast 4000] [--rate 8]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import resource
import shutil
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


def recorded_session(args: list[str], n_requests: int, dashboard: bool, timeout_s: float = 300
                     ) -> tuple[int, float, float, int]:
    """ttftui recording a session, headless or with its dashboard in a tmux pane (160x50): (events
    of the load, seconds from the first run_started to the last request's end reaching the
    recording, the ttftui process's CPU seconds, requests ok). The file is read incrementally, so
    watching it costs little next to what is measured."""
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    rec, cpu_file = tmp / f"bench-rec-{os.getpid()}.ttftrec", tmp / f"bench-rec-{os.getpid()}.cpu"
    for f in (rec, cpu_file):
        f.unlink(missing_ok=True)
    name = f"ttftui-bench-{os.getpid()}"
    argv = [sys.executable, "-m", "ttftui", *args, "--record", str(rec)]
    if not dashboard:
        argv += ["--headless", "-q", "-o", os.devnull]
    # the process's own CPU, user + system, as its shell sees it when it exits (bash's `times`)
    script = f"cd {shlex.quote(str(ROOT))} && {' '.join(map(shlex.quote, argv))}; times > {shlex.quote(str(cpu_file))}"
    if dashboard:
        subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "160", "-y", "50", "bash", "-c", script],
                       check=True)
        proc = None
    else:
        proc = subprocess.Popen(["bash", "-c", script], stderr=subprocess.DEVNULL)
    first = last = None
    ends, pos, tail = 0, 0, b""
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if rec.exists():
                with rec.open("rb") as f:
                    f.seek(pos)
                    chunk = f.read()
                pos += len(chunk)
                data, tail = (tail + chunk).rpartition(b"\n")[::2] if b"\n" in chunk else (b"", tail + chunk)
                now = time.perf_counter()
                if first is None and b'"type":"run_started"' in data:
                    first = now
                ends += data.count(b'"type":"run_finished"') + data.count(b'"type":"run_failed"')
                if ends >= n_requests:
                    last = now
                    break
            time.sleep(0.02)
        if first is None or last is None:
            raise SystemExit(f"the session did not finish in {timeout_s:.0f} s")
        if dashboard:  # it stays open for re-runs: quit it
            subprocess.run(["tmux", "send-keys", "-t", name, "q"], check=True)
        while not cpu_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        if dashboard:
            subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
        elif proc is not None:
            proc.wait(60)
    # bash's `times`: the shell's own line, then its children's (ttftui): "0m1.234s 0m0.567s"
    child = cpu_file.read_text().splitlines()[-1].split()
    cpu = sum(float(m.group(1)) * 60 + float(m.group(2)) for m in (re.match(r"(\d+)m([\d.]+)s", x) for x in child) if m)
    r = subprocess.run([sys.executable, "-m", "ttftui", "replay", str(rec), "--headless"], cwd=ROOT,
                       capture_output=True, text=True)
    rec.unlink(missing_ok=True)
    cpu_file.unlink(missing_ok=True)
    if r.returncode != 0:
        raise SystemExit(f"replay failed: {r.stderr.strip()[-2000:]}")
    rep = json.loads(r.stdout)
    events = sum(x["remote"]["n_chunks"] + 2 for x in rep["runs"])
    return events, last - first, cpu, rep["load"]["short"]["n_ok"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", default="2,4,8")
    ap.add_argument("--chunks-fast", type=int, default=4000, help="chunks per request in part 1")
    ap.add_argument("--requests-per-worker", type=int, default=4)
    ap.add_argument("--rate", type=float, default=8.0)
    ap.add_argument("--rate-requests", type=int, default=48)
    ap.add_argument("--ttft-ms", type=float, default=50.0)
    ap.add_argument("--chunks", type=int, default=50)
    ap.add_argument("--itl-ms", type=float, default=10.0)
    ap.add_argument("--host-runs", type=int, default=10)
    ap.add_argument("--host-rounds", type=int, default=2)
    ap.add_argument("--host-prompt", type=int, default=256)
    ap.add_argument("--dashboard", action=argparse.BooleanOptionalAction, default=shutil.which("tmux") is not None,
                    help="also measure part 1 with the dashboard open in tmux (default: when tmux is installed)")
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
        print("\n1b. events taken in, timed as the recording grows (first request's start line to the last end line "
              "reaching the file), headless and with the dashboard open" + ("" if args.dashboard else " (skipped: no tmux)")
              + ":")
        print(f"{'workers':>8} {'events':>9} {'headless/s':>11} {'CPU s':>6} {'dashboard/s':>12} {'CPU s':>6} "
              f"{'dashboard/headless':>19}")
        for w in (int(x) for x in args.workers.split(",")):
            n = w * args.requests_per_worker
            load = ["--url", fast_url, "--scenario", "short", "--set", "run.warmup=0",
                    "--set", f"scenarios=[{{name='short', prompt_tokens=8, max_tokens={args.chunks_fast}}}]",
                    "--concurrency", str(w), "--requests", str(n), "--ray", cluster.address, "--workers", str(w)]
            ev_h, t_h, cpu_h, ok_h = recorded_session(load, n, dashboard=False)
            line = f"{w:>8} {ev_h:>9,} {ev_h / t_h:>11,.0f} {cpu_h:>6.2f}"
            if args.dashboard:
                ev_d, t_d, cpu_d, ok_d = recorded_session(load, n, dashboard=True)
                line += f" {ev_d / t_d:>12,.0f} {cpu_d:>6.2f} {(ev_d / t_d) / (ev_h / t_h):>19.2f}  ({ok_h}+{ok_d}/{2 * n} ok)"
            print(line)
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
        print(f"\n3. a Ray engine host vs this machine's own (demo model, {args.host_prompt}-token prompt, 1 thread, "
              f"{args.host_runs} counted runs, alternated {args.host_rounds}x):")
        scen = f"scenarios=[{{name='s', prompt_tokens={args.host_prompt}, max_tokens=32}}]"
        common = ["--set", "model.n_threads=1", "--set", "run.warmup=2", "--set", f"run.iterations={args.host_runs}",
                  "--set", scen, "-q"]
        med: dict[str, dict[str, list[float]]] = {"local": {}, "ray": {}}
        for _ in range(args.host_rounds):
            for side, extra in (("local", []), ("ray", ["--ray", cluster.address, "--matrix", "model.n_threads=1"])):
                rep, _cpu, _wall, _err = session([*extra, *common])
                (summ,) = rep["summary"].values()
                for m in ("ttft_ms", "prefill_ms", "decode_tps"):
                    med[side].setdefault(m, []).append(summ["metrics"][m]["p50"])
        head = "metric (median over rounds of p50)"
        print(f"   {head:<38} {'local':>10} {'Ray host':>10} {'ratio':>7}")
        for m in ("ttft_ms", "prefill_ms", "decode_tps"):
            a = sorted(med["local"][m])[len(med["local"][m]) // 2]
            b = sorted(med["ray"][m])[len(med["ray"][m]) // 2]
            print(f"   {m:<38} {a:>10.2f} {b:>10.2f} {b / a:>7.3f}")
    finally:
        paced.terminate()
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
