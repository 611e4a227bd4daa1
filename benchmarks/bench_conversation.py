"""TTFT turn by turn in a conversation, with the KV cache kept between turns and without it.

One engine (llama.cpp in this process, the demo model by default), one conversation of ``--turns``
turns of ``--user`` new tokens and ``--answer`` generated ones, run twice a round: with
``cache = keep`` (only the new tokens are evaluated) and ``cache = off`` (every turn prefills the
whole conversation), the order alternating round by round, an untimed pause between runs. Printed per
turn: the context's depth, the tokens each setting evaluated (llama.cpp's own count), the median TTFT of
each, and off / keep with its spread over the rounds (paired: the same round's two runs).

With ``--llama-server PATH`` (llama.cpp's server, built as benchmarks/README.md says), the same
conversation goes to that server on 127.0.0.1 with ``cache_prompt`` true and false, and its own
account (timings.cache_n, prompt_n, prompt_ms) is printed beside the client's TTFT.

Usage:  python benchmarks/bench_conversation.py [--rounds 5] [--turns 8] [--user 256] [--answer 32]
                                                 [--threads 2] [--llama-server PATH [--skip-local]]
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


def _config(args: argparse.Namespace, cache: str) -> Config:
    n_ctx = 64 + args.turns * (args.user + args.answer) + 64
    return Config.model_validate({
        "model": {"n_ctx": max(512, n_ctx), "n_threads": args.threads, "n_batch": 512},
        "run": {"iterations": 1, "warmup": 0},
        "scenarios": [{"name": "chat", "kind": "conversation", "turns": args.turns, "user_tokens": args.user,
                       "system_tokens": args.system, "max_tokens": args.answer, "cache": cache}],
    })


def _spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}..{max(xs):.2f})"


def local(args: argparse.Namespace) -> None:
    model = require_demo_model() if not args.model else Path(args.model)
    engines, preps = {}, {}
    for cache in ("keep", "off"):
        cfg = _config(args, cache)
        eng = LlamaEngine(cfg, model)
        eng.load()
        engines[cache] = eng
        preps[cache] = [eng.prepare(s, 0) for s in cfg.scenarios]
    ttft: dict[str, list[list[float]]] = {c: [[] for _ in range(args.turns)] for c in engines}
    seen: dict[str, list[tuple[int, int, int]]] = {c: [] for c in engines}
    run_id = 0
    try:
        # one warm-up conversation each, then the rounds
        for r in range(args.rounds + 1):
            order = ("keep", "off") if r % 2 == 0 else ("off", "keep")
            for cache in order:
                eng = engines[cache]
                for k, p in enumerate(preps[cache]):
                    time.sleep(PAUSE_S)
                    run_id += 1
                    fin = eng.run(p, run_id, r == 0, lambda ev: None, threading.Event())
                    c = fin.conversation
                    if r == 0:
                        seen[cache].append((c.depth, c.cached_tokens, c.evaluated_tokens or 0))
                        continue
                    ttft[cache][k].append(fin.ttft_ns / 1e6)
            if r:
                print(f"  round {r}/{args.rounds}: turn {args.turns} TTFT keep {ttft['keep'][-1][-1]:.1f} ms, "
                      f"off {ttft['off'][-1][-1]:.1f} ms", flush=True)
    finally:
        for eng in engines.values():
            eng.close()
    print(f"\nTTFT per turn, {args.turns} turns of {args.user} new tokens + {args.answer} answered, "
          f"{args.rounds} rounds (median, paired off/keep with min..max over rounds)")
    print(f"  {'turn':>4} {'depth':>6} {'keep: cached':>13} {'evaluated':>10} {'off: evaluated':>15} "
          f"{'keep ms':>9} {'off ms':>9}   off/keep")
    for k in range(args.turns):
        depth, cached, ev_keep = seen["keep"][k]
        ev_off = seen["off"][k][2]
        ratios = [o / kk for o, kk in zip(ttft["off"][k], ttft["keep"][k])]
        print(f"  {k + 1:>4} {depth:>6} {cached:>13} {ev_keep:>10} {ev_off:>15} "
              f"{statistics.median(ttft['keep'][k]):>9.1f} {statistics.median(ttft['off'][k]):>9.1f}   "
              f"{_spread(ratios)}")


def server(args: argparse.Namespace) -> None:
    """The same conversation against llama-server, cache_prompt true vs false, its own account."""
    import json
    import socket
    import subprocess
    import urllib.request

    model = require_demo_model() if not args.model else Path(args.model)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    n_ctx = 64 + args.turns * (args.user + args.answer) + 256
    from ttftui.measure.engine.llama import system_info
    from ttftui.measure.engine.llama_facts import has_amx

    # llama.cpp's repacked AMX path crashes or stalls at the first prefill (docs/engine-host.md): not on AMX
    repack = ["--no-repack"] if has_amx(system_info()) else []
    proc = subprocess.Popen([args.llama_server, "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                             "-c", str(n_ctx), "-t", str(args.threads), "-np", "1", *repack],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        from ttftui.measure.prompts import corpus_text

        words = corpus_text().split()

        def message(k: int) -> str:  # about --user tokens of prose (the server counts them)
            n = int(args.user * 0.75)
            at = (k * n) % max(len(words) - n, 1)
            return " ".join(words[at:at + n])

        def ask(prompt: str, cache: bool) -> tuple[float, dict, str]:
            body = json.dumps({"prompt": prompt, "n_predict": args.answer, "cache_prompt": cache, "stream": True,
                               "temperature": 0, "ignore_eos": True}).encode()
            req = urllib.request.Request(url + "/completion", body, {"Content-Type": "application/json"})
            t0 = time.perf_counter()
            first = None
            text, timings = [], {}
            with urllib.request.urlopen(req, timeout=600) as r:
                for raw in r:
                    line = raw.decode().strip()
                    if not line.startswith("data:"):
                        continue
                    ev = json.loads(line[5:])
                    if ev.get("content") and first is None:
                        first = time.perf_counter()
                    text.append(ev.get("content", ""))
                    timings = ev.get("timings") or timings
            return ((first or time.perf_counter()) - t0) * 1000, timings, "".join(text)

        rows: dict[bool, list[list[tuple[float, dict]]]] = {True: [[] for _ in range(args.turns)],
                                                             False: [[] for _ in range(args.turns)]}
        for r in range(args.rounds + 1):
            for i, cache in enumerate((True, False) if r % 2 == 0 else (False, True)):
                convo = ""
                first = (2 * r + i) * args.turns  # a conversation of its own each time: no reuse across them
                for k in range(args.turns):
                    convo += ("\n\n" if convo else "") + message(first + k)
                    time.sleep(PAUSE_S)
                    ms, tm, answer = ask(convo, cache)
                    convo += answer
                    if r:
                        rows[cache][k].append((ms, tm))
        print(f"\nllama-server ({args.llama_server}), the same conversation: cache_prompt true vs false")
        print(f"  {'turn':>4} {'true: cache_n':>14} {'prompt_n':>9} {'TTFT ms':>8} {'false: prompt_n':>16} "
              f"{'TTFT ms':>8}   false/true")
        for k in range(args.turns):
            on, off = rows[True][k], rows[False][k]
            ratios = [b[0] / a[0] for a, b in zip(on, off)]
            print(f"  {k + 1:>4} {on[-1][1].get('cache_n', '?'):>14} {on[-1][1].get('prompt_n', '?'):>9} "
                  f"{statistics.median(x[0] for x in on):>8.1f} {off[-1][1].get('prompt_n', '?'):>16} "
                  f"{statistics.median(x[0] for x in off):>8.1f}   {_spread(ratios)}")
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--turns", type=int, default=8)
    ap.add_argument("--user", type=int, default=256, help="new user tokens per turn")
    ap.add_argument("--answer", type=int, default=32, help="answer tokens per turn")
    ap.add_argument("--system", type=int, default=0, help="system prompt tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="", help="GGUF (default: the demo model)")
    ap.add_argument("--llama-server", default="", help="llama.cpp's llama-server binary: the server side too")
    ap.add_argument("--skip-local", action="store_true", help="only the server side")
    args = ap.parse_args()
    print(f"bench_conversation: {args.turns} turns x ({args.user} + {args.answer}) tokens, {args.rounds} rounds, "
          f"{args.threads} threads", flush=True)
    if not args.skip_local:
        local(args)
    if args.llama_server:
        server(args)


if __name__ == "__main__":
    main()
