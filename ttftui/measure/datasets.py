"""A load scenario's other sources of per-request prompts: the user's own prompts (``prompts =
"file.jsonl"``, read by :func:`ttftui.core.workload.read_prompts`) in a seeded order, and seeded
length distributions (``prompt_tokens_dist``, ``max_tokens_dist``). Pure: no tokenizer, no server;
:mod:`ttftui.measure.trace` turns what these choose into prompts.

Every draw comes from a generator seeded by ``run.seed``, the scenario's name and the phase
(warm-up or counted), so a session draws the same lengths and the same order every time it runs.
"""

from __future__ import annotations

import math
import random

from ttftui.core.config import LengthDist


def phase_rng(seed: int, name: str, warm: bool, what: str) -> random.Random:
    return random.Random(f"{seed}:{name}:{'warmup' if warm else 'counted'}:{what}")


def draw_lengths(dist: LengthDist, n: int, rng: random.Random, cap: int | None = None) -> list[int]:
    """``n`` lengths in tokens: normal or lognormal with the lengths' own mean and sd, or uniform
    over [min, max]; each rounded and kept within [min, max] (and at most ``cap``)."""
    hi = dist.max if dist.max is not None else cap
    if cap is not None and hi is not None:
        hi = min(hi, cap)
    lo = dist.min if hi is None else min(dist.min, hi)
    out = []
    if dist.kind == "lognormal":
        assert dist.mean is not None and dist.sd is not None
        sigma2 = math.log1p((dist.sd / dist.mean) ** 2)  # of the log: the lengths keep their mean and sd
        mu, sigma = math.log(dist.mean) - sigma2 / 2, math.sqrt(sigma2)
    for _ in range(n):
        if dist.kind == "uniform":
            assert dist.max is not None
            x = float(rng.randint(dist.min, dist.max))
        elif dist.kind == "normal":
            assert dist.mean is not None and dist.sd is not None
            x = rng.gauss(dist.mean, dist.sd)
        else:
            x = rng.lognormvariate(mu, sigma)
        k = max(lo, round(x))
        out.append(k if hi is None else min(k, hi))
    return out


def dataset_order(n_prompts: int, n: int, rng: random.Random) -> list[int]:
    """Which of ``n_prompts`` prompts each of ``n`` requests sends: a seeded shuffle of them all,
    then another, as many as ``n`` needs (every prompt once before any twice)."""
    out: list[int] = []
    while len(out) < n:
        order = list(range(n_prompts))
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out
