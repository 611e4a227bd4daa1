"""A diffusion run's plan and its choices, in NumPy: which steps run over which answer positions, how
many positions each step commits, and which ones.

Ported from llama.cpp's ``examples/diffusion/diffusion.cpp`` (the algorithm ``llama-diffusion-cli``
runs), so that a run here and a run of that tool make the same choices:

* **timestep** (Dream): one block, the whole answer; step ``i`` of ``T`` commits
  ``int(masked × (1 − s/t))`` with ``t = 1 − i/T·(1 − eps)`` and ``s = 1 − (i+1)/T·(1 − eps)``
  (every masked position at the last step), in float32 like the C++.
* **block** (LLaDA): the answer in blocks of ``block_length``, left to right; each block's steps
  commit an equal share of its masked positions (the first ``masked % steps`` one more). llama.cpp's
  tool tiles the *whole canvas* (prompt included) with blocks and so leaves its last blocks empty;
  here the blocks tile the answer, as LLaDA's reference does.
* **front_loaded**: blocks of 1, 2, 4, ... positions (up to ``block_length``), the steps shared
  out in proportion to their sizes (at least one each): the first answer position is committed by
  the first step, so the first readable token comes after one forward pass.

Selection (``pick_greedy``): the token is the arg-max; its confidence is, per algorithm, the
token's probability under the full softmax (confidence), top-1 minus top-2 probability (margin),
llama.cpp's entropy figure (−Σ p·log p, highest first, as diffusion.cpp ranks it) or a random
number; the positions with the highest confidence are committed, ties to the leftmost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DIFFUSION_ARCHITECTURES = ("dream", "llada", "llada-moe", "rnd1")  # llama.cpp's llama_model_is_diffusion
ROWS_AT_ONCE = 64  # softmax rows computed together: bounds the scratch memory (rows x vocab floats)


@dataclass(frozen=True)
class Block:
    start: int  # answer positions [start, end)
    end: int
    steps: int


def resolve_schedule(schedule: str, architecture: str | None) -> str:
    if schedule != "auto":
        return schedule
    return "block" if (architecture or "").startswith("llada") else "timestep"


def plan_blocks(schedule: str, answer: int, steps: int, block_length: int) -> list[Block]:
    """The blocks of a run with ``answer`` masked positions and ``steps`` planned steps (0: one per
    position). A block has at least one step, so a run takes ``max(steps, blocks)`` steps at most."""
    steps = steps or answer
    if schedule == "timestep":
        return [Block(0, answer, steps)]
    if schedule == "block":
        sizes = [min(block_length, answer - i) for i in range(0, answer, block_length)]
        n = len(sizes)
        base, rem = divmod(steps, n)
        block_steps = [max(1, base + (1 if i < rem else 0)) for i in range(n)]
    elif schedule == "front_loaded":
        sizes = []
        size, left = 1, answer
        while left > 0:
            sizes.append(min(size, left, block_length))
            left -= sizes[-1]
            size = min(size * 2, block_length)
        block_steps = _share(steps, sizes)
    else:
        raise ValueError(f"unknown diffusion schedule {schedule!r}")
    out, start = [], 0
    for size, k in zip(sizes, block_steps):
        out.append(Block(start, start + size, k))
        start += size
    return out


def _share(steps: int, sizes: list[int]) -> list[int]:
    """``steps`` shared out in proportion to ``sizes`` (largest remainders), at least 1 and at most
    ``size`` each (a step commits one position at least)."""
    total = sum(sizes)
    steps = min(max(steps, len(sizes)), total)
    exact = [steps * s / total for s in sizes]
    out = [max(1, min(s, int(e))) for s, e in zip(sizes, exact)]
    while sum(out) > steps:  # the ones raised to 1 came from the others: take back from the largest
        i = max((j for j in range(len(out)) if out[j] > 1), key=lambda j: (out[j] - exact[j], out[j]))
        out[i] -= 1
    left = steps - sum(out)
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - int(exact[i])), i))
    while left > 0 and any(out[i] < sizes[i] for i in order):
        for i in order:
            if left > 0 and out[i] < sizes[i]:
                out[i] += 1
                left -= 1
    return out


def equal_shares(masked: int, steps: int) -> list[int]:
    """diffusion.cpp's get_num_transfer_tokens: ``masked`` over ``steps``, the first ones one more."""
    base, rem = divmod(masked, steps)
    return [base + (1 if i < rem else 0) for i in range(steps)]


def timestep_count(step: int, total: int, masked: int, eps: float) -> int:
    """diffusion.cpp's timestep count, in float32 as the C++ computes it."""
    f = np.float32
    one = f(1.0)
    t = one - f(step) / f(total) * (one - f(eps))
    s = one - f(step + 1) / f(total) * (one - f(eps))
    p = (one - s / t) if step < total - 1 else one
    return int(f(masked) * f(p))


def transfer_count(schedule: str, step: int, steps: int, masked: int, eps: float, shares: list[int]) -> int:
    """How many of the block's ``masked`` positions step ``step`` (of the block's ``steps``) commits."""
    if schedule == "timestep":
        return timestep_count(step, steps, masked, eps)
    if step < len(shares):
        return min(shares[step], masked)
    return masked // max(steps - step, 1)


def pick_greedy(logits: np.ndarray, algorithm: str, rng: np.random.Generator,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(token, confidence) per row of ``logits`` (float32; only the rows ``rows`` when given: the
    rows are gathered a few at a time, never all copied at once, which with a 150k vocabulary and a
    long answer would be hundreds of MB a step)."""
    n = logits.shape[0] if rows is None else len(rows)
    tokens = np.empty(n, dtype=np.int64)
    conf = np.empty(n, dtype=np.float64)
    for lo in range(0, n, ROWS_AT_ONCE):
        r = logits[lo:lo + ROWS_AT_ONCE] if rows is None else logits[rows[lo:lo + ROWS_AT_ONCE]]
        top = r.argmax(axis=1)
        m = r[np.arange(len(r)), top]
        e = np.exp(r - m[:, None])
        z = e.sum(axis=1, dtype=np.float64)
        tokens[lo:lo + len(r)] = top
        if algorithm in ("confidence", "origin"):
            conf[lo:lo + len(r)] = 1.0 / z
        elif algorithm == "margin":
            second = np.partition(r, -2, axis=1)[:, -2] if r.shape[1] > 1 else m
            conf[lo:lo + len(r)] = (1.0 - np.exp(second - m)) / z
        elif algorithm == "entropy":
            p = e / z[:, None]
            conf[lo:lo + len(r)] = -(p * np.log(p + 1e-10)).sum(axis=1, dtype=np.float64)
        elif algorithm == "random":
            conf[lo:lo + len(r)] = rng.random(len(r))
        else:
            raise ValueError(f"unknown diffusion algorithm {algorithm!r}")
    return tokens, conf


def choose(conf: np.ndarray, count: int, threshold: float = 0.0) -> np.ndarray:
    """Indices of the ``count`` highest confidences (ties: the leftmost first), plus every other one
    at or above ``threshold`` when it is set; in that order."""
    n = len(conf)
    if threshold > 0:
        count = max(count, int(np.count_nonzero(conf >= threshold)))
    count = min(max(count, 0), n)
    if count == 0:
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((np.arange(n), -conf))  # by confidence, descending; then by position
    return order[:count]
