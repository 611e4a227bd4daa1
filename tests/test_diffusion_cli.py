"""The diffusion engine against llama.cpp's own ``llama-diffusion-cli``: the same model, prompt, steps,
schedule, algorithm, sampler chain and seed give the same answer, token for token.

Runs only where the CLI is found: set TTFTUI_LLAMA_DIFFUSION_CLI to the binary (benchmarks/README.md,
"Diffusion", says how to build it from the llama.cpp that llama-cpp-python vendors). The models are
tiny random-weight Dream and LLaDA models built here with a chat template that renders the prompt as
it is (the CLI always applies the model's template; the scenario has chat = false). Both sides sample
with llama.cpp's chain top_k, temperature, dist(seed), the timestep schedule (the CLI's block schedule
tiles the canvas differently), and weight repacking on: the CLI always loads with llama.cpp's extra
buffer types, which on an AMX CPU move F16 weights into the AMX buffer and change the logits in their
last digits (enough to reorder margins), so ttftui must load the same way. The CLI's token ids come
from an LD_PRELOAD shim (benchmarks/bench_diffusion.py builds it with ``cc``); without a C compiler
the answers' texts are compared. How fast each side is: benchmarks/bench_diffusion.py."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CANVAS = 64
STEPS = 16
SEED = 42
PROMPT = "The quick brown fox jumps over the lazy dog while the farmer counts his sheep twice."


def _cli() -> str | None:
    p = os.environ.get("TTFTUI_LLAMA_DIFFUSION_CLI")
    return p if p and Path(p).is_file() else None


pytestmark = [pytest.mark.model,
              pytest.mark.skipif(_cli() is None, reason="llama.cpp's llama-diffusion-cli not found (set "
                                 "TTFTUI_LLAMA_DIFFUSION_CLI; benchmarks/README.md, \"Diffusion\", says how to build it)")]


@pytest.fixture(scope="module")
def bench():
    """benchmarks/bench_diffusion.py: the CLI driver, the shim and the ttftui side (imports llama_cpp)."""
    spec = importlib.util.spec_from_file_location("bench_diffusion", ROOT / "benchmarks" / "bench_diffusion.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("diffusion_cli")


@pytest.fixture(scope="module")
def shim(bench, work):
    return bench.build_shim(work)


@pytest.fixture(scope="module", params=["dream", "llada"])
def side(request, bench, work):
    model = bench.build_model(work / f"{request.param}.gguf", request.param, 2, 64)
    s = bench.TtftuiSide(model, PROMPT, canvas=CANVAS, steps=STEPS, eps=0.001, threads=1, flash_attn="off",
                         repack="on")
    s.model = model
    yield s
    s.close()


@pytest.mark.parametrize("algorithm", ["confidence", "margin", "entropy"])
def test_same_answer_as_llama_diffusion_cli(bench, work, shim, side, algorithm):
    sc = side.scenario(f"cli-{algorithm}", algorithm=algorithm, schedule="timestep", k=40, temp=0.8)
    ours = side.run(side.prepare(sc, SEED), 0)
    theirs = bench.run_cli(_cli(), side.model, PROMPT, canvas=CANVAS, steps=STEPS, eps=0.001, algorithm=algorithm,
                           k=40, temp=0.8, seed=SEED, threads=1, flash_attn="off", shim=shim, scratch=work)
    assert len(ours.answer) == CANVAS - len(side.prompt_ids)
    same, why = bench.compare(theirs, ours)
    assert same, why
    if shim is not None:  # the shim saw the CLI's own tokens and steps: they are ttftui's too
        assert theirs.prompt == side.prompt_ids
        assert theirs.steps == ours.steps
        assert len(theirs.forward_ms) == STEPS  # one llama_process a step, as ttftui's one llama_decode
