"""ttftui's engine vs llama-cpp-python's own streaming call (and llama-bench, when available).

Same model, same prompt text (exactly N tokens), same threads, n_batch, context size and flash
attention setting (llama-cpp-python's Llama only knows on/off and defaults to off, while ttftui's
and llama-bench's default "auto" turns it on for CPU: left alone, the sides would run different
kernels), greedy sampling, interleaved round by round (the order alternates) so that drift in a shared, noisy
machine hits both sides alike. Printed: medians per side and the ratio ttftui / reference.

* TTFT: ttftui's ttft_ms vs the time from calling ``create_completion(stream=True)`` to its first
  chunk (llama-cpp-python's prefix cache is defeated with ``Llama.reset()`` before every call).
* prefill tok/s: ttftui's prefill_tps vs llama-cpp-python's own counters (n_p_eval / t_p_eval_ms).
* decode tok/s: (n_output − 1) / (e2e − ttft) on both sides.
* With ``--llama-bench PATH`` (llama.cpp's own benchmark binary, built from the same llama.cpp):
  pp<N> and tg<M> at depth N, run in the same session (llama-bench -p N -n 0 / -n M -d N).

Usage:  python benchmarks/bench_engine.py [--rounds 5] [--prompts 128,512] [--gen 64]
                                           [--threads 2] [--llama-bench PATH]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp as L  # noqa: E402
from llama_cpp import Llama  # noqa: E402

from _sides import engine_config, reference_llama  # noqa: E402  (benchmarks/, first on sys.path)

from ttftui.measure.demo_model import require_demo_model  # noqa: E402
from ttftui.measure.engine.llama import LlamaEngine  # noqa: E402
from ttftui.analysis.metrics import run_metrics  # noqa: E402


def ttftui_run(engine: LlamaEngine, prep, run_id: int):
    toks = []
    fin = engine.run(prep, run_id, False, toks.append, threading.Event())
    m = run_metrics(0, 0, fin, [t for t in toks if getattr(t, "type", "") == "token"])
    tp = fin.token_parts
    parts = {k: getattr(tp, f"{k}_median_ns") / 1e6 for k in ("decode", "sample", "detok", "rest")} if tp else {}
    return {"ttft_ms": m.ttft_ms, "prefill_tps": m.prefill_tps, "decode_tps": m.decode_tps,
            "text": m.output_text, "n_out": m.n_output_tokens, "parts": parts}


def lcp_run(llm: Llama, prompt: str, n_gen: int):
    llm.reset()  # defeat the prefix cache: every call prefills the whole prompt
    L.llama_perf_context_reset(llm._ctx.ctx)
    t0 = time.perf_counter_ns()
    first = None
    n = 0
    text = []
    for chunk in llm.create_completion(prompt, max_tokens=n_gen, temperature=0.0, stream=True):
        now = time.perf_counter_ns()
        if first is None:
            first = now
        n += 1
        text.append(chunk["choices"][0]["text"])
    end = time.perf_counter_ns()
    p = L.llama_perf_context(llm._ctx.ctx)
    return {"ttft_ms": (first - t0) / 1e6, "prefill_tps": p.n_p_eval / (p.t_p_eval_ms / 1e3),
            "decode_tps": (n - 1) / ((end - first) / 1e9) if n > 1 else None, "text": "".join(text), "n_out": n}


def llama_bench(path: str, model: str, n_prompt: int, n_gen: int, threads: int, n_batch: int, flash_attn: str,
                repack: bool = True, n_gpu_layers: int = 0):
    ngl = 999 if n_gpu_layers < 0 else n_gpu_layers  # llama-bench has no -1: a count above the layers means all
    cmd = [path, "-m", model, "-t", str(threads), "-b", str(n_batch), "-ub", str(n_batch), "-fa", flash_attn,
           "--repack", "1" if repack else "0", "-ngl", str(ngl), "-r", "3", "-o", "json"]
    pp = json.loads(subprocess.run(cmd + ["-p", str(n_prompt), "-n", "0"], capture_output=True, text=True,
                                   check=True).stdout)
    tg = json.loads(subprocess.run(cmd + ["-p", "0", "-n", str(n_gen), "-d", str(n_prompt)], capture_output=True,
                                   text=True, check=True).stdout)
    return pp[0]["avg_ts"], tg[0]["avg_ts"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--prompts", default="128,512")
    ap.add_argument("--gen", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-batch", type=int, default=512)
    ap.add_argument("--llama-bench", default=shutil.which("llama-bench"))
    ap.add_argument("--bench-rounds", type=int, default=4, help="llama-bench calls per prompt size, interleaved")
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off",
                    help="the same on every side (default off: llama-cpp-python's default)")
    ap.add_argument("--n-gpu-layers", type=int, default=0, help="layers offloaded on every side (-1: all; needs a "
                                                                 "CUDA/HIP build)")
    args = ap.parse_args()
    model = str(require_demo_model())
    sizes = [int(x) for x in args.prompts.split(",")]
    cfg = engine_config(sizes, args.gen, args.n_batch, args.threads, args.flash_attn, args.n_gpu_layers)
    engine = LlamaEngine(cfg, model)
    engine.load()
    llm = reference_llama(model, args.n_batch, args.threads, args.flash_attn, args.n_gpu_layers)
    print(f"model {Path(model).name}; threads {args.threads}; n_batch {args.n_batch}; rounds {args.rounds}; "
          f"gen {args.gen}; flash attention {args.flash_attn}; GPU layers {args.n_gpu_layers}; "
          f"llama-cpp-python {L.__version__}", flush=True)
    rows = []
    for sc in cfg.scenarios:
        prep = engine.prepare(sc, 0)
        ours: list[dict] = []
        ref: list[dict] = []
        ttftui_run(engine, prep, 0)  # one warm-up each, not counted
        lcp_run(llm, prep.prompt_text, args.gen)
        for r in range(args.rounds):
            first, second = ((ttftui_run, lcp_run) if r % 2 == 0 else (lcp_run, ttftui_run))
            for fn in (first, second):
                if fn is ttftui_run:
                    ours.append(ttftui_run(engine, prep, r + 1))
                else:
                    ref.append(lcp_run(llm, prep.prompt_text, args.gen))
        same = ours[0]["text"] == ref[0]["text"]
        for key, label in (("ttft_ms", "TTFT ms (lower is better)"), ("prefill_tps", "prefill tok/s"),
                           ("decode_tps", "decode tok/s")):
            a = statistics.median(x[key] for x in ours)
            b = statistics.median(x[key] for x in ref)
            rows.append((sc.prompt_tokens, label, a, b, a / b))
        print(f"prompt {sc.prompt_tokens}: same greedy output on both sides: {same}", flush=True)
    print()
    print(f"{'prompt':>6}  {'metric':<26} {'ttftui':>10} {'llama-cpp-py':>13} {'ratio':>7}")
    for n, label, a, b, ratio in rows:
        print(f"{n:>6}  {label:<26} {a:>10.2f} {b:>13.2f} {ratio:>7.3f}")
    if args.llama_bench:
        breakdown: list[tuple[int, dict, float]] = []
        print()
        print(f"{'prompt':>6}  {'metric':<26} {'ttftui':>10} {'llama-bench':>13} {'ratio':>7}")
        # llama-bench sizes its context to the test (prompt + generated tokens); so does ttftui here
        for sc in cfg.scenarios:
            small = cfg.model_copy(update={"model": cfg.model.model_copy(update={"n_ctx": sc.prompt_tokens + args.gen})})
            eng = LlamaEngine(small, model)
            eng.load()
            prep = eng.prepare(sc, 0)
            ttftui_run(eng, prep, 0)  # warm-up, like llama-bench's own
            runs, pps, tgs = [], [], []
            for r in range(args.bench_rounds):  # interleaved: two ttftui runs, one llama-bench call, ...
                runs += [ttftui_run(eng, prep, 100 + 2 * r + i) for i in range(2)]
                pp, tg = llama_bench(args.llama_bench, model, sc.prompt_tokens, args.gen, args.threads, args.n_batch,
                                     args.flash_attn, repack=eng.repack is not False, n_gpu_layers=args.n_gpu_layers)
                pps.append(pp)
                tgs.append(tg)
            eng.close()
            a_pp = statistics.median(x["prefill_tps"] for x in runs)
            a_tg = statistics.median(x["decode_tps"] for x in runs)
            pp, tg = statistics.median(pps), statistics.median(tgs)
            print(f"{sc.prompt_tokens:>6}  {'prefill tok/s (pp' + str(sc.prompt_tokens) + ')':<26} {a_pp:>10.2f} {pp:>13.2f} {a_pp / pp:>7.3f}")
            print(f"{sc.prompt_tokens:>6}  {'decode tok/s (tg' + str(args.gen) + ' @d' + str(sc.prompt_tokens) + ')':<26} {a_tg:>10.2f} {tg:>13.2f} {a_tg / tg:>7.3f}")
            parts = {k: statistics.median(x["parts"][k] for x in runs) for k in ("decode", "sample", "detok", "rest")}
            breakdown.append((sc.prompt_tokens, parts, 1000.0 / tg))
        print("(llama-bench's tg feeds tokens without sampling; ttftui's decode samples and detokenizes every token, "
              "as a real request must)")
        print(f"\nwhere ttftui's decode time goes (median ms per token) against llama-bench's tg time per token; "
              f"repack {'on' if engine.repack else 'off'}, flash attention {args.flash_attn}, n_ctx = prompt + gen:")
        print(f"{'prompt':>6} {'llama_decode':>13} {'sample':>8} {'detok':>8} {'rest':>8} {'sum':>8} {'llama-bench':>12} "
              f"{'decode/lb':>10}")
        for n, p, lb in breakdown:
            tot = sum(p.values())
            print(f"{n:>6} {p['decode']:>13.3f} {p['sample']:>8.3f} {p['detok']:>8.3f} {p['rest']:>8.3f} {tot:>8.3f} "
                  f"{lb:>12.3f} {p['decode'] / lb:>10.3f}")
    else:
        print("\n(llama-bench not found: pass --llama-bench PATH to compare with llama.cpp's own benchmark too)")
    engine.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
