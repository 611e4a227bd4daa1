"""ttftui's diffusion engine vs llama.cpp's own ``llama-diffusion-cli``, and ttftui's schedules side by side.

Models: tiny random-weight Dream / LLaDA models built here (``ttftui.measure.tiny_diffusion``, the demo
model's tokenizer) with a chat template that renders the prompt as it is: the CLI always renders its
prompt through the model's template and ttftui's scenario has ``chat = false``, so both sides tokenize
the same text (add_special, and the same tokens: checked). Both sides sample with llama.cpp's chain
top_k(K), temperature(T), dist(seed) (CLI ``--top-k K --top-p 1 --temp T --seed S``; ttftui
``sampler = {kind = "top_k", k = K, temperature = T}`` and ``run.seed = S``), the canvas is the CLI's
``-ub`` (answer = canvas - prompt tokens = ttftui's max_tokens), and weight repacking is on on both
sides: the CLI always loads with llama.cpp's extra buffer types (it does not pass ``--no-repack``
on), which on a CPU with AMX move F16 layer weights into the AMX buffer and change the logits in the
last digits, so ttftui runs with ``model.repack = "on"`` too (its ``auto`` is off on AMX CPUs).

a. output: the answer's token ids on both sides, for the timestep schedule and the confidence,
   margin and entropy algorithms, on a Dream and a LLaDA model: MATCH, or the first step whose
   commits differ (positions and token ids from each side). The CLI's ids, its canvas before each step
   and its llama_process times are read with a small LD_PRELOAD shim compiled here (``cc``), which
   wraps llama_tokenize, common_batch::add, llama_process and llama_detokenize and changes nothing;
   without a C compiler the answers' texts are compared instead.
b. the forward pass per step, on a bigger model (--layers/--width) and canvas, ttftui's timestep run
   and one CLI process taking turns round by round (the order alternates): ttftui's step_forward
   (llama_decode + synchronize) against the CLI's own figure, time per step - sampling time per step
   (a mean over its steps, the first one in a fresh process included, plus its batch set-up and
   progress callback), and against the shim's time of each llama_process call (median per run). Both
   sides compute logits for every canvas position: llama_decode on a diffusion model (no KV cache)
   runs llama.cpp's encoder path, which outputs every position whatever the batch's logits flags say.
   Every round's tokens are compared too.
c. the schedules on the same model (ttftui only): time to the first readable token (ttft_ms), to the
   final canvas (final_ms) and steps to readable, for timestep, block and front_loaded, median over
   rounds, and front_loaded / timestep. (The CLI's block schedule tiles the whole canvas, prompt
   included, while ttftui's tiles the answer, so only the timestep schedule is compared with it.)

Usage:  python benchmarks/bench_diffusion.py [--cli PATH] [--rounds 6] [--threads 1] [--layers 8]
                                             [--width 256] [--canvas 256] [--steps 16]

--cli defaults to $TTFTUI_LLAMA_DIFFUSION_CLI, else llama-diffusion-cli on PATH; without it parts a
and b are skipped and c still runs. benchmarks/README.md ("Diffusion") says how to build the CLI.
One thread by default: on a shared 2-core machine two OpenMP threads stall whenever a neighbour takes
one core (the CLI's step went from 28 ms to 100-200 ms that way), which would swamp the comparison.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import llama_cpp  # noqa: F401 - before numpy: a CUDA build loaded after it segfaults (engine_process/__main__)

from ttftui.analysis.metrics import diffusion_figures
from ttftui.core.config import Config, ScenarioConfig
from ttftui.measure.demo_model import require_demo_model
from ttftui.measure.engine.choose import llama_engine
from ttftui.measure.engine.diffusion import DiffusionEngine
from ttftui.measure.tiny_diffusion import build

PLAIN_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
PROMPT = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep twice."
ALGORITHMS = {"origin": 0, "entropy": 1, "margin": 2, "random": 3, "confidence": 4}  # --diffusion-algorithm
SCHEDULES = ("timestep", "block", "front_loaded")

# LD_PRELOAD shim for llama-diffusion-cli: records, into $TTFTUI_SHIM_OUT, the prompt's tokens, the
# canvas each step sends (common_batch::add, one line per step), each llama_process call's duration
# and the answer's tokens (the CLI's first llama_detokenize call). It only observes.
SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
typedef int32_t tok_t;
static FILE *out_f;
static FILE *out(void) {
    if (!out_f) { const char *p = getenv("TTFTUI_SHIM_OUT"); out_f = p ? fopen(p, "w") : NULL; if (!out_f) out_f = stderr; }
    return out_f;
}
static void dump(const char *tag, const tok_t *t, int32_t n) {
    FILE *f = out();
    fprintf(f, "@@%s", tag);
    for (int32_t i = 0; i < n; i++) fprintf(f, " %d", t[i]);
    fprintf(f, "\n");
    fflush(f);
}
static tok_t *canvas; static int32_t cap, top;
static void flush_canvas(void) { if (top) { dump("CANVAS", canvas, top); top = 0; } }
int32_t llama_tokenize(const void *v, const char *text, int32_t len, tok_t *toks, int32_t max, bool add, bool parse) {
    static int32_t (*real)(const void *, const char *, int32_t, tok_t *, int32_t, bool, bool);
    if (!real) real = dlsym(RTLD_NEXT, "llama_tokenize");
    int32_t n = real(v, text, len, toks, max, add, parse);
    if (n >= 0) dump("PROMPT", toks, n);
    return n;
}
int32_t _ZN12common_batch3addEiiib(void *self, tok_t id, int32_t pos, int32_t seq, bool outp) {
    static int32_t (*real)(void *, tok_t, int32_t, int32_t, bool);
    if (!real) real = dlsym(RTLD_NEXT, "_ZN12common_batch3addEiiib");
    if (pos == 0) flush_canvas();
    if (pos >= cap) { cap = 2 * pos + 256; canvas = realloc(canvas, (size_t) cap * sizeof(tok_t)); }
    if (pos >= 0) { canvas[pos] = id; if (pos + 1 > top) top = pos + 1; }
    return real(self, id, pos, seq, outp);
}
int32_t llama_process(void *ctx, int type, void *batch) {
    static int32_t (*real)(void *, int, void *);
    if (!real) real = dlsym(RTLD_NEXT, "llama_process");
    flush_canvas();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int32_t r = real(ctx, type, batch);
    clock_gettime(CLOCK_MONOTONIC, &b);
    fprintf(out(), "@@PROCESS %lld\n", (long long) (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    return r;
}
int32_t llama_detokenize(const void *v, const tok_t *toks, int32_t n, char *text, int32_t max, bool rm, bool unparse) {
    static int32_t (*real)(const void *, const tok_t *, int32_t, char *, int32_t, bool, bool);
    static int done;
    if (!real) real = dlsym(RTLD_NEXT, "llama_detokenize");
    if (!done) { dump("ANSWER", toks, n); done = 1; }
    return real(v, toks, n, text, max, rm, unparse);
}
"""


def default_cli() -> str | None:
    return os.environ.get("TTFTUI_LLAMA_DIFFUSION_CLI") or shutil.which("llama-diffusion-cli")


def build_shim(directory: Path) -> Path | None:
    """The LD_PRELOAD shim, compiled into ``directory``; None without a C compiler (or on failure)."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None or not sys.platform.startswith("linux"):
        return None
    src, lib = directory / "diffusion_shim.c", directory / "diffusion_shim.so"
    src.write_text(SHIM_C)
    r = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], capture_output=True,
                       text=True, check=False)
    return lib if r.returncode == 0 else None


def build_model(path: Path, arch: str, layers: int, width: int) -> Path:
    if not path.exists():
        build(path, arch=arch, n_layer=layers, n_embd=width, n_ff=2 * width, chat_template=PLAIN_TEMPLATE)
    return path


# ------------------------------------------------------------------------------------------ results
@dataclass
class Result:
    side: str
    answer: list[int] | None = None  # token ids (None: unknown, text only)
    text: str = ""
    prompt: list[int] | None = None
    steps: list[list[tuple[int, int]]] | None = None  # per step: (answer position, token id) committed
    forward_ms: list[float] = field(default_factory=list)  # per step (ttftui: step_forward; CLI: llama_process)
    cli_step_ms: float | None = None  # the CLI's own figures (means over its steps)
    cli_sampling_ms: float | None = None
    figures: dict = field(default_factory=dict)  # ttftui: ttft_ms, final_ms, steps_to_readable_count, ...


def run_cli(cli: str, model: Path, prompt: str, *, canvas: int, steps: int, eps: float, algorithm: str, k: int,
            temp: float, seed: int, threads: int, flash_attn: str, shim: Path | None, scratch: Path) -> Result:
    """One llama-diffusion-cli process: timestep schedule (--diffusion-eps), llama.cpp's chain top_k, temp, dist."""
    cmd = [cli, "-m", str(model), "-p", prompt, "-c", str(canvas), "-b", str(canvas), "-ub", str(canvas),
           "--diffusion-steps", str(steps), "--diffusion-eps", repr(eps),
           "--diffusion-algorithm", str(ALGORITHMS[algorithm]), "--top-k", str(k), "--top-p", "1",
           "--temp", repr(temp), "--seed", str(seed), "-t", str(threads), "-fa", flash_attn,
           "--no-log-prefix", "--no-log-timestamps"]
    env = dict(os.environ)
    out = scratch / "shim.txt"
    if shim is not None:
        env["LD_PRELOAD"] = str(shim) + (":" + env["LD_PRELOAD"] if env.get("LD_PRELOAD") else "")
        env["TTFTUI_SHIM_OUT"] = str(out)
        out.unlink(missing_ok=True)
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", env=env, check=False)
    log = p.stderr + p.stdout
    m = re.search(r"total time: ([\d.]+)ms, time per step: ([\d.]+)ms, sampling time per step: ([\d.]+)ms\n", log)
    if p.returncode != 0 or m is None:
        raise RuntimeError(f"llama-diffusion-cli failed (exit {p.returncode}): {' '.join(cmd)}\n{log[-2000:]}")
    res = Result("llama-diffusion-cli", cli_step_ms=float(m.group(2)), cli_sampling_ms=float(m.group(3)))
    rest = log[m.end():]
    res.text = rest[1:-1] if rest.startswith("\n") and rest.endswith("\n") else rest.strip("\n")
    if shim is not None and out.exists():
        prompts, canvases = [], []
        for line in out.read_text().splitlines():
            tag, _, vals = line.partition(" ")
            if tag == "@@PROMPT":
                prompts.append([int(x) for x in vals.split()])
            elif tag == "@@CANVAS":
                canvases.append([int(x) for x in vals.split()])
            elif tag == "@@PROCESS":
                res.forward_ms.append(int(vals) / 1e6)
            elif tag == "@@ANSWER" and res.answer is None:
                res.answer = [int(x) for x in vals.split()]
        if prompts and canvases and res.answer is not None:
            res.prompt = prompts[-1]
            n = len(res.prompt)
            states = [c[n:] for c in canvases] + [res.answer]
            res.steps = [sorted((i, b[i]) for i in range(len(a)) if a[i] != b[i]) for a, b in pairwise(states)]
    return res


class TtftuiSide:
    """ttftui's diffusion engine on one model, in this process (loaded once, warmed up per scenario)."""

    def __init__(self, model: Path, prompt: str, *, canvas: int, steps: int, eps: float, threads: int,
                 flash_attn: str, repack: str):
        self.prompt = prompt
        self.base = {"model": {"path": str(model), "n_ctx": canvas, "n_threads": threads, "flash_attn": flash_attn,
                               "repack": repack},
                     "diffusion": {"steps": steps, "eps": eps}}
        cfg = Config.model_validate({**self.base, "scenarios": [{"name": "probe", "prompt": prompt, "max_tokens": 1}]})
        self.engine = llama_engine(cfg, model)
        assert isinstance(self.engine, DiffusionEngine), "not a diffusion model"
        self.load = self.engine.load()
        self.prompt_ids = self.engine.tokenizer(None).tokenize(prompt, chat=False)
        self.answer = canvas - len(self.prompt_ids)
        if self.answer < 1:
            raise SystemExit(f"the prompt takes {len(self.prompt_ids)} tokens: no room in a canvas of {canvas}")

    def scenario(self, name: str, *, algorithm: str, schedule: str, k: int, temp: float) -> ScenarioConfig:
        sc = {"name": name, "prompt": self.prompt, "max_tokens": self.answer,
              "sampler": {"kind": "top_k", "k": k, "temperature": temp},
              "diffusion": {"algorithm": algorithm, "schedule": schedule}}
        return Config.model_validate({**self.base, "scenarios": [sc]}).scenarios[0]

    def prepare(self, sc: ScenarioConfig, seed: int):
        return self.engine.prepare(sc, seed)

    def run(self, prep, run_id: int) -> Result:
        events: list = []
        fin = self.engine.run(prep, run_id, False, events.append, threading.Event())
        d = fin.diffusion
        toks = [e for e in events if type(e).__name__ == "TokenEmitted"]
        res = Result("ttftui", answer=[t.token_id for t in toks], text="".join(t.text for t in toks),
                     prompt=list(self.prompt_ids),
                     steps=[sorted(zip(e.positions, e.token_ids)) for e in events if type(e).__name__ == "DiffusionStep"],
                     forward_ms=[x / 1e6 for x in d.step_forward_ns])
        res.figures = {"ttft_ms": fin.ttft_ns / 1e6, **diffusion_figures(d, fin.ttft_ns),
                       "n_steps": len(d.step_forward_ns)}
        return res

    def close(self) -> None:
        self.engine.close()


def compare(cli: Result, ours: Result) -> tuple[bool, str]:
    """(same?, one line): token ids when the CLI's are known, else the answers' texts."""
    if cli.answer is None:
        if cli.text == ours.text:
            return True, "MATCH (text; no C compiler for the shim, so token ids were not compared)"
        i = next((j for j, (a, b) in enumerate(zip(cli.text, ours.text)) if a != b), min(len(cli.text), len(ours.text)))
        return False, f"text differs at character {i}: CLI {cli.text[i:i + 30]!r} vs ttftui {ours.text[i:i + 30]!r}"
    if cli.prompt is not None and ours.prompt is not None and cli.prompt != ours.prompt:
        return False, f"prompt tokens differ: CLI {cli.prompt} vs ttftui {ours.prompt}"
    if cli.answer == ours.answer:
        return True, f"MATCH ({len(ours.answer)} tokens)"
    n_diff = sum(a != b for a, b in zip(cli.answer, ours.answer)) + abs(len(cli.answer) - len(ours.answer))
    first = next((j for j, (a, b) in enumerate(zip(cli.answer, ours.answer)) if a != b), None)
    msg = f"MISMATCH: {n_diff} of {len(cli.answer)} tokens differ, the first at answer position {first}"
    if cli.steps is not None and ours.steps is not None:
        for s, (a, b) in enumerate(zip(cli.steps, ours.steps)):
            if a != b:
                msg += f"; step {s} is the first whose commits differ: CLI (position, token) {a[:8]} vs ttftui {b[:8]}"
                break
    return False, msg


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} (min {min(xs):.3f}, max {max(xs):.3f}, n {len(xs)})"


# ------------------------------------------------------------------------------------------- parts
def part_a(cli: str, shim: Path | None, work: Path, args) -> bool:
    print("\n== a. output: ttftui vs llama-diffusion-cli, timestep schedule, top_k "
          f"{args.top_k} / temperature {args.temp} / seed {args.seed}, small models", flush=True)
    ok_all = True
    for arch in ("dream", "llada"):
        model = build_model(work / f"{arch}-small.gguf", arch, 2, 64)
        side = TtftuiSide(model, args.prompt, canvas=64, steps=16, eps=args.eps, threads=args.threads,
                          flash_attn=args.flash_attn, repack=args.repack)
        try:
            for alg in ("confidence", "margin", "entropy"):
                prep = side.prepare(side.scenario(f"a-{alg}", algorithm=alg, schedule="timestep", k=args.top_k,
                                                  temp=args.temp), args.seed)
                ours = side.run(prep, 0)
                theirs = run_cli(cli, model, args.prompt, canvas=64, steps=16, eps=args.eps, algorithm=alg,
                                 k=args.top_k, temp=args.temp, seed=args.seed, threads=args.threads,
                                 flash_attn=args.flash_attn, shim=shim, scratch=work)
                ok, msg = compare(theirs, ours)
                ok_all &= ok
                print(f"  {arch:<6} {alg:<11} prompt {len(side.prompt_ids)} + answer {side.answer}: {msg}", flush=True)
        finally:
            side.close()
    return ok_all


def rounds(cli: str | None, shim: Path | None, work: Path, args) -> None:
    model = build_model(work / f"dream-{args.layers}x{args.width}.gguf", "dream", args.layers, args.width)
    print(f"\n== model {model.name} ({model.stat().st_size / 1e6:.0f} MB): Dream, {args.layers} layers, width "
          f"{args.width}, canvas {args.canvas}, {args.steps} steps, {args.threads} thread(s), flash attention "
          f"{args.flash_attn}, repack {args.repack}, {args.rounds} rounds", flush=True)
    side = TtftuiSide(model, args.prompt, canvas=args.canvas, steps=args.steps, eps=args.eps, threads=args.threads,
                      flash_attn=args.flash_attn, repack=args.repack)
    print(f"   prompt {len(side.prompt_ids)} tokens + answer {side.answer} = canvas {args.canvas}; ttftui repack: "
          f"{side.engine.repack_reason}", flush=True)
    preps = {s: side.prepare(side.scenario(f"s@{s}", algorithm="confidence", schedule=s, k=args.top_k, temp=args.temp),
                             args.seed) for s in SCHEDULES}
    for s in SCHEDULES:  # one warm-up each, not counted
        side.run(preps[s], 0)
    names = ([] if cli is None else ["cli"]) + list(SCHEDULES)
    got: dict[str, list[Result]] = {n: [] for n in names}
    mismatches = []
    t_start = time.monotonic()
    try:
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            if r % 2:
                order = order[::-1]
            for n in order:
                if n == "cli":
                    got[n].append(run_cli(cli, model, args.prompt, canvas=args.canvas, steps=args.steps, eps=args.eps,
                                          algorithm="confidence", k=args.top_k, temp=args.temp, seed=args.seed,
                                          threads=args.threads, flash_attn=args.flash_attn, shim=shim, scratch=work))
                else:
                    got[n].append(side.run(preps[n], r + 1))
            line = f"   round {r + 1}/{args.rounds} ({time.monotonic() - t_start:.0f} s): "
            tt = got["timestep"][-1]
            line += f"ttftui forward {statistics.median(tt.forward_ms):.1f} ms/step"
            if cli is not None:
                c = got["cli"][-1]
                ok, msg = compare(c, tt)
                if not ok:
                    mismatches.append((r + 1, msg))
                fwd = f"{statistics.median(c.forward_ms):.1f} (llama_process), " if c.forward_ms else ""
                line += (f"; CLI {fwd}{c.cli_step_ms - c.cli_sampling_ms:.1f} (time/step - sampling/step) ms/step; "
                         f"tokens {'MATCH' if ok else 'MISMATCH'}")
            print(line, flush=True)
    finally:
        side.close()

    if cli is not None:
        print("\n== b. forward pass per step, ttftui (timestep, confidence) vs llama-diffusion-cli, same canvas")
        if mismatches:
            print(f"   tokens: {len(mismatches)} of {args.rounds} rounds differ; round {mismatches[0][0]}: "
                  f"{mismatches[0][1]}")
        else:
            print(f"   tokens: MATCH in all {args.rounds} rounds")
        tts, cs = got["timestep"], got["cli"]
        med_t = [statistics.median(x.forward_ms) for x in tts]
        mean_t = [statistics.fmean(x.forward_ms) for x in tts]
        own_c = [x.cli_step_ms - x.cli_sampling_ms for x in cs]
        print(f"   {'figure (ms per step)':<58} {'ttftui':>9} {'CLI':>9} {'ratio':>7}   paired ratio per round")
        rows = [("ttftui mean step_forward vs CLI time/step - sampling/step", mean_t, own_c)]
        if all(x.forward_ms for x in cs):
            rows.insert(0, ("median step_forward vs median llama_process (shim)", med_t,
                            [statistics.median(x.forward_ms) for x in cs]))
        for label, a, b in rows:
            pr = [x / y for x, y in zip(a, b)]
            print(f"   {label:<58} {statistics.median(a):>9.2f} {statistics.median(b):>9.2f} "
                  f"{statistics.median(a) / statistics.median(b):>7.3f}   {spread(pr)}")
        print(f"   CLI sampling time per step (its chain on every masked position): "
              f"{statistics.median(x.cli_sampling_ms for x in cs):.2f} ms; ttftui logits read + select + commit per "
              f"step: {statistics.median(x.figures['step_ms'] - statistics.fmean(x.forward_ms) for x in tts):.2f} ms")

    print("\n== c. schedules (ttftui; top_k sampler, confidence), median over rounds")
    print(f"   {'schedule':<13} {'ttft_ms':>9} {'final_ms':>9} {'steps_to_readable':>18} {'steps':>6}")
    med = {}
    for s in SCHEDULES:
        rs = got[s]
        med[s] = {key: statistics.median(x.figures[key] for x in rs)
                  for key in ("ttft_ms", "final_ms", "steps_to_readable_count", "n_steps")}
        m = med[s]
        print(f"   {s:<13} {m['ttft_ms']:>9.1f} {m['final_ms']:>9.1f} {m['steps_to_readable_count']:>18.0f} "
              f"{m['n_steps']:>6.0f}")
    pr = [f.figures["ttft_ms"] / t.figures["ttft_ms"] for f, t in zip(got["front_loaded"], got["timestep"])]
    pf = [f.figures["final_ms"] / t.figures["final_ms"] for f, t in zip(got["front_loaded"], got["timestep"])]
    print(f"   front_loaded / timestep: ttft {med['front_loaded']['ttft_ms'] / med['timestep']['ttft_ms']:.3f} "
          f"(paired {spread(pr)}), final {med['front_loaded']['final_ms'] / med['timestep']['final_ms']:.3f} "
          f"(paired {spread(pf)})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", default=default_cli(), help="llama-diffusion-cli (default: $TTFTUI_LLAMA_DIFFUSION_CLI, "
                                                         "else on PATH)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--canvas", type=int, default=256, help="positions: prompt + answer (the CLI's -ub)")
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--temp", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--flash-attn", choices=("off", "on"), default="off")
    ap.add_argument("--repack", choices=("on", "off", "auto"), default="on",
                    help="ttftui's model.repack (default on: the CLI always uses llama.cpp's extra buffer types)")
    ap.add_argument("--models", type=Path, default=None, help="keep the built models here (default: a temporary "
                                                               "folder)")
    ap.add_argument("--skip-output", action="store_true", help="skip part a")
    args = ap.parse_args()
    require_demo_model()  # its tokenizer is copied into the models
    cli = args.cli if args.cli and Path(args.cli).is_file() else None
    with tempfile.TemporaryDirectory(prefix="bench_diffusion_") as tmp:
        work = Path(tmp)
        if args.models:
            args.models.mkdir(parents=True, exist_ok=True)
            work = args.models
        if cli is None:
            print(f"llama-diffusion-cli not found ({args.cli or 'set --cli or TTFTUI_LLAMA_DIFFUSION_CLI'}): parts a "
                  "and b are skipped (benchmarks/README.md, \"Diffusion\", says how to build it); c runs", flush=True)
            shim = None
        else:
            shim = build_shim(Path(tmp))
            print(f"llama-diffusion-cli: {cli}; token ids from the CLI: "
                  f"{'LD_PRELOAD shim' if shim else 'no (no C compiler): the texts are compared'}", flush=True)
        ok = True
        if cli is not None and not args.skip_output:
            ok = part_a(cli, shim, work, args)
        rounds(cli, shim, work, args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
