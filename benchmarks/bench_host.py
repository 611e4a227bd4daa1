"""The engine host (llama.cpp in a child process, events through a pipe) vs the same engine in this
process, and vs llama-cpp-python's own streaming call: does moving llama.cpp out cost anything?

Same model, prompt (exactly N tokens), threads, n_batch, context size and flash attention on every
side; greedy; interleaved round by round, the order alternating, with an untimed pause between runs
(so one side's idle compute threads never overlap the other's run). Printed per prompt size: the
medians of TTFT, decode tok/s and the largest inter-token gap (max ITL, over every counted run) for
each side, and the ratios host / in-process and host / llama-cpp-python; and for the two ttftui sides
the unaccounted part of TTFT in µs (TTFT less its timed phases: what happens between two timing
points, the engine host's event writing included).

Then a synthetic stream at 5,000 tok/s through the engine host's pipe: every token must arrive
(indices contiguous, count = the runs' own count), and the stream's rate and the delivery lag (from
the child's time stamp to the parent's receipt, on the shared clock) are printed.

Usage:  python benchmarks/bench_host.py [--rounds 8] [--prompts 128,512] [--gen 128] [--threads 2]
                                         [--flash-attn off|on] [--stream-tokens 20000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp as L  # noqa: E402  - in this process llama.cpp comes first too
from llama_cpp import Llama  # noqa: E402

from _sides import engine_config, reference_llama  # noqa: E402  (benchmarks/, first on sys.path)

from ttftui.core.config import Config  # noqa: E402
from ttftui.measure.demo_model import require_demo_model  # noqa: E402
from ttftui.measure.engine.llama import LlamaEngine  # noqa: E402
from ttftui.core.events import TokenEmitted  # noqa: E402
from ttftui.measure.engine_process.proxy import HostedEngine  # noqa: E402

PAUSE_S = 0.3


def engine_run(engine, prep, run_id: int) -> dict:
    toks: list[TokenEmitted] = []
    fin = engine.run(prep, run_id, False, lambda ev: toks.append(ev) if isinstance(ev, TokenEmitted) else None,
                     threading.Event())
    gaps = [t.dt_ns / 1e6 for t in toks[1:]]
    decode_s = (fin.e2e_ns - fin.ttft_ns) / 1e9
    timed = fin.tokenize_ns + fin.cache_prep_ns + fin.prefill_ns + fin.first_sample_ns + fin.first_detok_ns
    return {"ttft_ms": fin.ttft_ns / 1e6, "decode_tps": (fin.n_output_tokens - 1) / decode_s,
            "max_itl_ms": max(gaps), "unaccounted_us": (fin.ttft_ns - timed) / 1e3,
            "text": "".join(t.text for t in toks)}


def lcp_run(llm: Llama, prompt: str, n_gen: int) -> dict:
    llm.reset()  # defeat the prefix cache: every call prefills the whole prompt
    t0 = time.perf_counter_ns()
    stamps = []
    text = []
    for chunk in llm.create_completion(prompt, max_tokens=n_gen, temperature=0.0, stream=True):
        stamps.append(time.perf_counter_ns())
        text.append(chunk["choices"][0]["text"])
    gaps = [(b - a) / 1e6 for a, b in zip(stamps, stamps[1:])]
    return {"ttft_ms": (stamps[0] - t0) / 1e6, "decode_tps": (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9),
            "max_itl_ms": max(gaps), "unaccounted_us": float("nan"), "text": "".join(text)}


def stream_check(n_tokens: int, rate: float) -> None:
    cfg = Config.model_validate({
        "model": {"n_ctx": 65536},
        "run": {"seed": 1},
        "scenarios": [{"name": "stream", "prompt_tokens": 16, "max_tokens": n_tokens}],
    })
    eng = HostedEngine(cfg, "synthetic", synthetic_reason="benchmark stream", decode_tps=rate)
    try:
        eng.load()
        prep = eng.prepare(cfg.scenario("stream"), 1)
        got: list[tuple[int, int]] = []  # (index, receipt lag ns)
        clock = eng.clock

        def publish(ev) -> None:
            if isinstance(ev, TokenEmitted):
                got.append((ev.index, clock.now_ns() - ev.t_ns))

        t0 = time.perf_counter()
        fin = eng.run(prep, 1, False, publish, threading.Event())
        wall = time.perf_counter() - t0
    finally:
        eng.close()
    idx = [i for i, _ in got]
    lags = sorted(lag / 1e6 for _, lag in got)
    lost = fin.n_output_tokens - len(got)
    print(f"\nsynthetic stream through the pipe: {len(got)} of {fin.n_output_tokens} tokens arrived "
          f"({'none lost' if lost == 0 and idx == list(range(len(idx))) else f'LOST {lost}'}), "
          f"in order: {idx == sorted(idx)}; stream rate {len(got) / wall:,.0f} tok/s (asked {rate:,.0f}); "
          f"delivery lag p50 {statistics.median(lags):.3f} ms, p99 {lags[int(0.99 * (len(lags) - 1))]:.3f} ms, "
          f"max {lags[-1]:.3f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--prompts", default="128,512")
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off")
    ap.add_argument("--stream-tokens", type=int, default=20000)
    ap.add_argument("--stream-rate", type=float, default=5000.0)
    ap.add_argument("--skip-real", action="store_true", help="only the synthetic stream (no model needed)")
    ap.add_argument("--skip-lcp", action="store_true", help="leave out llama-cpp-python's own streaming call "
                    "(its high-level Llama segfaults in llama_decode beside a second context in some builds)")
    args = ap.parse_args()
    if not args.skip_real:
        model = str(require_demo_model())
        sizes = [int(x) for x in args.prompts.split(",")]
        cfg = engine_config(sizes, args.gen, args.n_batch, args.threads, args.flash_attn)
        inproc = LlamaEngine(cfg, model)
        inproc.load()
        host = HostedEngine(cfg, "llama", model_path=model)
        host.load()
        llm = None if args.skip_lcp else reference_llama(model, args.n_batch, args.threads, args.flash_attn)
        print(f"model {Path(model).name}; threads {args.threads}; n_batch {args.n_batch}; rounds {args.rounds}; "
              f"gen {args.gen}; flash attention {args.flash_attn}; llama-cpp-python {L.__version__}; "
              f"engine host pid {host.pid}", flush=True)
        rows = []
        for sc in cfg.scenarios:
            p_in, p_host = inproc.prepare(sc, 0), host.prepare(sc, 0)
            assert p_in.prompt_text == p_host.prompt_text and p_in.prompt_tokens == p_host.prompt_tokens
            sides = {
                "host": lambda r: engine_run(host, p_host, r),
                "in-process": lambda r: engine_run(inproc, p_in, r),
                "llama-cpp-py": lambda r: lcp_run(llm, p_in.prompt_text, args.gen),
            }
            if llm is None:
                del sides["llama-cpp-py"]
            res: dict[str, list[dict]] = {k: [] for k in sides}
            for k, fn in sides.items():  # one warm-up each, not counted
                fn(0)
                time.sleep(PAUSE_S)
            names = list(sides)
            for r in range(args.rounds):
                order = names[r % len(names):] + names[:r % len(names)]
                for k in order:
                    res[k].append(sides[k](r + 1))
                    time.sleep(PAUSE_S)
            same = len({x[0]["text"] for x in res.values()}) == 1
            print(f"prompt {sc.prompt_tokens}: same greedy output on all {len(res)} sides: {same}", flush=True)
            for key, label, agg in (("ttft_ms", "TTFT ms (median)", statistics.median),
                                    ("decode_tps", "decode tok/s (median)", statistics.median),
                                    ("max_itl_ms", "max ITL ms (worst run)", max),
                                    ("max_itl_ms", "max ITL ms (median run)", statistics.median),
                                    ("unaccounted_us", "unaccounted µs (median)", statistics.median)):
                v = {k: agg(x[key] for x in res[k]) for k in sides}
                v.setdefault("llama-cpp-py", float("nan"))
                # paired per round: host / in-process, to read the ratio against the machine's own drift
                pair = [a[key] / b[key] if b[key] else float("nan") for a, b in zip(res["host"], res["in-process"])]
                rows.append((sc.prompt_tokens, label, v["host"], v["in-process"], v["llama-cpp-py"],
                             v["host"] / v["in-process"], v["host"] / v["llama-cpp-py"], min(pair), max(pair)))
        inproc.close()
        host.close()
        print()
        print(f"{'prompt':>6}  {'metric':<24} {'host':>9} {'in-proc':>9} {'lcp':>9} {'host/in':>8} {'host/lcp':>9}"
              f"  paired host/in per round (min..max)")
        for n, label, a, b, c, r1, r2, lo, hi in rows:
            print(f"{n:>6}  {label:<24} {a:>9.2f} {b:>9.2f} {c:>9.2f} {r1:>8.3f} {r2:>9.3f}  {lo:.3f}..{hi:.3f}")
    stream_check(args.stream_tokens, args.stream_rate)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
