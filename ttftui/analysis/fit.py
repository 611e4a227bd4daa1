"""How TTFT scales with the prompt: least-squares fits over a sweep of prompt lengths.

TTFT(n) and prefill(n) are fitted as ``a + b·n + c·n²`` (attention's cost grows with the context,
so a straight line bends at long prompts) with NumPy's least squares, on every counted run (not on
medians: the scatter is what the interval is made of). Each fit reports its coefficients, R² and
the residuals' standard deviation, and predicts at a length not measured with a 95 % *prediction*
interval: where one more run at that length should land. The interval adds three things: the fit's
own uncertainty, the runs' scatter, and how far the model misses a length it was not given
(``cv_rmse``: each measured length left out in turn, predicted from the others). The last matters
on a quiet machine, where runs scatter by a millisecond but llama.cpp's speed is not exactly a
quadratic in n (its kernels have preferred sizes): without it the interval is narrower than the
model's own error. Student's t from SciPy. Per-chunk prefill time is fitted against the KV depth the chunk
starts at (``a + b·depth``): how much each token already in the cache slows the next chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Fit:
    """``y = sum(coef[k] * x**k)``; ``degree`` 2 (quadratic) or 1 (linear)."""

    coef: tuple[float, ...]
    r2: float | None
    residual_sd: float | None
    n: int
    x_min: float
    x_max: float
    _xtx_inv: tuple[tuple[float, ...], ...]
    cv_rmse: float | None = None  # leave-one-x-out prediction error (model error at an unmeasured x)
    n_x: int = 0  # distinct x values

    @property
    def degree(self) -> int:
        return len(self.coef) - 1

    def predict(self, x: float, level: float = 0.95) -> tuple[float, float | None, float | None]:
        """(prediction, low, high): the interval is None when there are too few points for one."""
        v = np.array([x ** k for k in range(len(self.coef))])
        y = float(v @ np.array(self.coef))
        dof = self.n - len(self.coef)
        if dof <= 0 or self.residual_sd is None:
            return y, None, None
        from scipy.stats import t as student_t  # SciPy: heavy to import, needed by sweeps alone

        q = 0.5 + level / 2
        noise = float(student_t.ppf(q, dof)) ** 2 * self.residual_sd ** 2 * (1.0 + float(v @ np.array(self._xtx_inv) @ v))
        # the model's own error is estimated from only as many points as there are distinct lengths
        # (left out one at a time), so its quantile has that few degrees of freedom: with 6 lengths
        # and 3 coefficients, t = 3.18, not the 2.13 of 18 runs (the narrower interval misses
        # held-out lengths on a real model, where kernel shapes make TTFT step)
        dof_x = max(self.n_x - len(self.coef), 1) if self.n_x else dof
        model = float(student_t.ppf(q, dof_x)) ** 2 * (self.cv_rmse or 0.0) ** 2
        half = float(np.sqrt(noise + model))
        return y, y - half, y + half

    def as_dict(self) -> dict[str, object]:
        names = ("a", "b", "c")[: len(self.coef)]
        return {"model": "a + b*n + c*n^2" if self.degree == 2 else "a + b*n",
                **{k: v for k, v in zip(names, self.coef)}, "r2": self.r2, "residual_sd": self.residual_sd,
                "cv_rmse": self.cv_rmse, "n_points": self.n, "x_min": self.x_min, "x_max": self.x_max}


def sweep_fits(runs: list, sweep_of: dict[str, str]) -> dict[str, dict[str, object]]:
    """Per sweep (scenarios expanded from one ``prompt_tokens = [..]``): the fits of TTFT and
    prefill against the prompt length, per-chunk prefill time per token against KV depth, and
    predictions with their interval halfway between the measured lengths."""
    fams: dict[str, list] = {}
    for m in runs:
        fam = sweep_of.get(m.scenario)
        if fam is not None and m.counted:
            fams.setdefault(fam, []).append(m)
    out: dict[str, dict[str, object]] = {}
    for fam, ms in fams.items():
        lengths = sorted({m.n_prompt_tokens for m in ms})
        if len(lengths) < 3:
            continue
        x = [float(m.n_prompt_tokens) for m in ms]
        ttft = polyfit(x, [m.ttft_ms for m in ms])
        pre = [(float(m.n_prompt_tokens), m.prefill_ms) for m in ms if m.prefill_ms is not None]
        prefill = polyfit([a for a, _ in pre], [b for _, b in pre]) if pre else None
        depth_x, per_tok = [], []
        for m in ms:
            d = 0
            for c_ms, k in zip(m.prefill_chunks_ms, m.prefill_chunk_tokens):
                if k > 1:  # a 1-token chunk is llama.cpp's "eval", not a prompt chunk
                    depth_x.append(float(d))
                    per_tok.append(c_ms / k)
                d += k
        chunk = polyfit(depth_x, per_tok, degree=1)
        preds = []
        for lo, hi in zip(lengths, lengths[1:]):
            mid = (lo + hi) / 2
            if ttft is not None:
                y, a, b = ttft.predict(mid)
                preds.append({"n_prompt_tokens": mid, "ttft_ms": y, "low_ms": a, "high_ms": b})
        out[fam] = {"lengths": lengths, "ttft": ttft, "prefill": prefill, "chunk_per_token_vs_depth": chunk,
                    "predictions": preds}
    return out


def polyfit(xs: list[float], ys: list[float], degree: int = 2) -> Fit | None:
    """Least squares of ``ys`` on powers of ``xs`` up to ``degree``; None with too few distinct x."""
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    if len(x) < degree + 1 or len(np.unique(x)) < degree + 1 or not np.all(np.isfinite(y)):
        return None
    X = np.vander(x, degree + 1, increasing=True)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ coef
    ss_res = float(resid @ resid)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    dof = len(x) - (degree + 1)
    sd = float(np.sqrt(ss_res / dof)) if dof > 0 else None
    xtx_inv = np.linalg.pinv(X.T @ X)
    return Fit(coef=tuple(float(c) for c in coef), r2=(1.0 - ss_res / ss_tot) if ss_tot > 0 else None,
               residual_sd=sd, n=len(x), x_min=float(x.min()), x_max=float(x.max()),
               _xtx_inv=tuple(tuple(float(v) for v in row) for row in xtx_inv), cv_rmse=_cv_rmse(x, y, degree),
               n_x=int(len(np.unique(x))))


def _cv_rmse(x: np.ndarray, y: np.ndarray, degree: int) -> float | None:
    """Root mean square of (mean y at x) − (prediction at x from the fit without x), over every x:
    the model's error at a length it was not given. None with too few distinct x to leave one out."""
    xs = np.unique(x)
    if len(xs) < degree + 2:
        return None
    errs = []
    for x0 in xs:
        keep = x != x0
        X = np.vander(x[keep], degree + 1, increasing=True)
        coef, *_ = np.linalg.lstsq(X, y[keep], rcond=None)
        pred = float(np.vander(np.array([x0]), degree + 1, increasing=True)[0] @ coef)
        errs.append(float(y[~keep].mean()) - pred)
    return float(np.sqrt(np.mean(np.square(errs))))
