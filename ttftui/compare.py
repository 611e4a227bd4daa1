"""``ttftui compare BASE.json CANDIDATE.json``: per scenario and metric, baseline vs candidate.

Significance comes from SciPy's Mann–Whitney U test (two-sided) on the per-run values of each side
(pooled token gaps for ``itl_ms``): it assumes no distribution shape, which suits latency, and with
few runs it simply cannot reach significance. A comparison tests many metrics at once, so the
p-values are Holm-adjusted over the whole table: "significant" then means the chance of *any*
false alarm in the table is at most alpha, and two reports of the same distribution are not called
different. Regression gates compare one statistic (e.g. p95) and set the exit code.

Reports from different schema versions are refused; scenarios present on one side only, a synthetic
side, another device, model or engine settings are all said out loud before the table.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from ttftui.errors import ConfigError, ReportError
from ttftui.report import REPORT_KIND, SCHEMA_VERSION

COMPARE_METRICS: tuple[str, ...] = (
    "ttft_ms", "tokenize_ms", "cache_prep_ms", "prefill_ms", "first_sample_ms", "first_detok_ms",
    "unaccounted_ms", "prefill_tps", "itl_ms", "tpot_ms", "decode_tps", "e2e_ms",
)
HIGHER_IS_BETTER = {"prefill_tps", "decode_tps"}
_GATE = re.compile(r"^(?:(?P<scenario>[A-Za-z0-9_.\-]+):)?(?P<metric>[a-z_]+)\.(?P<stat>[a-z0-9_]+)=(?P<pct>[0-9.]+)%?$")


def load_report(path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"report not found: {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ReportError(f"cannot read report {p}: {e}") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{p} is not JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise ReportError(f"{p} is not a ttftui report (no \"kind\": \"{REPORT_KIND}\")")
    if not isinstance(data.get("schema_version"), int):
        raise ReportError(f"{p}: report has no schema_version")
    if data["schema_version"] > SCHEMA_VERSION:
        raise ReportError(f"{p} uses report schema {data['schema_version']}; this ttftui reads up to {SCHEMA_VERSION}")
    data["_path"] = str(p)
    return data


def parse_gate(text: str) -> dict[str, Any]:
    m = _GATE.match(text.strip())
    if not m:
        raise ConfigError(f"--max-regression {text!r}: expected [SCENARIO:]METRIC.STAT=PCT%, e.g. ttft_ms.p95=10%")
    if m["metric"] not in COMPARE_METRICS:
        raise ConfigError(f"--max-regression {text!r}: unknown metric {m['metric']!r} (one of: {', '.join(COMPARE_METRICS)})")
    return {"scenario": m["scenario"], "metric": m["metric"], "stat": m["stat"], "max_pct": float(m["pct"])}


def baseline_table(report: dict[str, Any]) -> dict[str, dict[str, dict[str, float | None]]]:
    """{scenario: {metric: summary}} for the dashboard's Δ-vs-baseline column."""
    return {name: s.get("metrics", {}) for name, s in report.get("summary", {}).items()}


def _per_run(report: dict[str, Any], scenario: str, metric: str) -> list[float]:
    out: list[float] = []
    for r in report.get("runs", []):
        if r.get("scenario") != scenario or not r.get("counted"):
            continue
        if metric == "itl_ms":
            out.extend(r.get("itl_ms") or [])
        elif (v := r.get(metric)) is not None:
            out.append(float(v))
    return out


def _p_value(a: list[float], b: list[float]) -> float | None:
    """Mann-Whitney U, two-sided; None when a side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    if len(set(a)) == 1 and set(a) == set(b):
        return 1.0
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def _holm(rows: list[dict[str, Any]], alpha: float) -> None:
    """Holm-Bonferroni over the table: adds p_adjusted, significant and verdict to each row."""
    tested = sorted((r for r in rows if r["p_value"] is not None), key=lambda r: r["p_value"])
    m = len(tested)
    running = 0.0
    for k, r in enumerate(tested):
        running = max(running, min(1.0, (m - k) * r["p_value"]))
        r["p_adjusted"] = running
    for r in rows:
        r.setdefault("p_adjusted", None)
        sig = r["p_adjusted"] is not None and r["p_adjusted"] < alpha
        r["significant"] = sig
        better = None
        if sig and r["ratio"] is not None:
            better = (r["ratio"] > 1) if r["metric"] in HIGHER_IS_BETTER else (r["ratio"] < 1)
        r["verdict"] = "same" if not sig else ("better" if better else "worse")


def _device(r: dict[str, Any]) -> str:
    d = r.get("device") or {}
    return f"{d.get('kind')} {d.get('name')} (build {d.get('build')}, {d.get('n_gpu_layers_offloaded', 0)} GPU layers)"


def _settings(r: dict[str, Any]) -> dict[str, Any]:
    m = (r.get("config") or {}).get("model", {})
    return {f"model.{k}": m.get(k) for k in ("n_ctx", "n_batch", "n_threads", "n_gpu_layers", "flash_attn")}


def compare_reports(base: dict[str, Any], cand: dict[str, Any], *, gates: list[dict[str, Any]] | None = None,
                    alpha: float = 0.05) -> dict[str, Any]:
    if base["schema_version"] != cand["schema_version"]:
        raise ReportError(f"cannot compare report schema {base['schema_version']} ({base['_path']}) with schema "
                          f"{cand['schema_version']} ({cand['_path']})")
    notes: list[str] = []
    for side, r in (("baseline", base), ("candidate", cand)):
        if r.get("synthetic"):
            notes.append(f"{side} is SYNTHETIC ({r.get('synthetic_reason')}): its numbers were not measured")
    if _device(base) != _device(cand):
        notes.append(f"devices differ: baseline {_device(base)} vs candidate {_device(cand)}")
    bm, cm = base.get("model") or {}, cand.get("model") or {}
    if (bm.get("name"), bm.get("quantization")) != (cm.get("name"), cm.get("quantization")):
        notes.append(f"models differ: {bm.get('name')} {bm.get('quantization')} vs {cm.get('name')} {cm.get('quantization')}")
    sb, sc = _settings(base), _settings(cand)
    for k in sb:
        if sb[k] != sc[k]:
            notes.append(f"settings differ: {k} {sb[k]} -> {sc[k]}")
    bs, cs = base.get("summary", {}), cand.get("summary", {})
    common = [s for s in bs if s in cs]
    only_b = [s for s in bs if s not in cs]
    only_c = [s for s in cs if s not in bs]
    if only_b or only_c:
        notes.append("scenarios differ: only in baseline: " + (", ".join(only_b) or "none")
                     + "; only in candidate: " + (", ".join(only_c) or "none") + " (compared: common ones)")
    if not common:
        raise ReportError(f"nothing to compare: {base['_path']} and {cand['_path']} share no scenario")
    rows: list[dict[str, Any]] = []
    for name in common:
        nb, nc = bs[name].get("n_prompt_tokens"), cs[name].get("n_prompt_tokens")
        if nb != nc:
            notes.append(f"scenario {name}: prompt sizes differ ({nb} vs {nc} tokens)")
        for metric in COMPARE_METRICS:
            sb_m, sc_m = bs[name]["metrics"].get(metric), cs[name]["metrics"].get(metric)
            if not sb_m or not sc_m:
                continue
            b50, c50 = sb_m.get("p50"), sc_m.get("p50")
            ratio = (c50 / b50) if b50 and c50 is not None else None
            p = _p_value(_per_run(base, name, metric), _per_run(cand, name, metric))
            rows.append({"scenario": name, "metric": metric, "baseline_p50": b50, "candidate_p50": c50,
                         "ratio": ratio, "change_pct": (ratio - 1) * 100 if ratio is not None else None,
                         "n_baseline": sb_m.get("n"), "n_candidate": sc_m.get("n"), "p_value": p})
    _holm(rows, alpha)
    gate_results = [_check_gate(g, bs, cs, common) for g in gates or []]
    return {"baseline": base["_path"], "candidate": cand["_path"], "alpha": alpha, "notes": notes, "rows": rows,
            "gates": [r for rs in gate_results for r in rs]}


def _check_gate(g: dict[str, Any], bs: dict[str, Any], cs: dict[str, Any], common: list[str]) -> list[dict[str, Any]]:
    out = []
    names = [g["scenario"]] if g["scenario"] else common
    for name in names:
        label = f"{name}:{g['metric']}.{g['stat']} <= {g['max_pct']:g}% worse"
        if name not in common:
            out.append({**g, "scenario": name, "passed": False, "regression_pct": None,
                        "message": f"{label}: scenario missing from one report"})
            continue
        b = (bs[name]["metrics"].get(g["metric"]) or {}).get(g["stat"])
        c = (cs[name]["metrics"].get(g["metric"]) or {}).get(g["stat"])
        if b is None or c is None or b == 0:
            out.append({**g, "scenario": name, "passed": False, "regression_pct": None,
                        "message": f"{label}: statistic {g['stat']} not available in both reports"})
            continue
        worse = (b - c) / b * 100 if g["metric"] in HIGHER_IS_BETTER else (c - b) / b * 100
        ok = worse <= g["max_pct"]
        out.append({**g, "scenario": name, "baseline": b, "candidate": c, "regression_pct": worse, "passed": ok,
                    "message": f"{label}: {b:.4g} -> {c:.4g} ({worse:+.1f}% {'worse' if worse > 0 else 'better'})"})
    return out


def _num(v: Any, width: int) -> str:
    if v is None:
        return "–".rjust(width)
    if isinstance(v, float):
        a = abs(v)
        text = f"{v:.3f}" if a < 1 else f"{v:.2f}" if a < 100 else f"{v:.1f}" if a < 10000 else f"{v:.0f}"
    else:
        text = str(v)
    return text.rjust(width)


def render_table(result: dict[str, Any]) -> str:
    lines = [f"baseline:  {result['baseline']}", f"candidate: {result['candidate']}"]
    for n in result["notes"]:
        lines.append(f"note: {n}")
    head = (f"{'scenario':<10} {'metric':<16} {'base p50':>10} {'cand p50':>10} {'ratio':>7} {'change':>8} "
            f"{'p (Holm)':>9}  verdict")
    lines += ["", head, "-" * len(head)]
    for r in result["rows"]:
        change = f"{r['change_pct']:+.1f}%" if r["change_pct"] is not None else "–"
        pv = f"{r['p_adjusted']:.3g}" if r["p_adjusted"] is not None else "n<2"
        verdict = r["verdict"] + (" *" if r["significant"] else "")
        lines.append(f"{r['scenario']:<10} {r['metric']:<16} {_num(r['baseline_p50'], 10)} {_num(r['candidate_p50'], 10)} "
                     f"{_num(r['ratio'], 7)} {change:>8} {pv:>9}  {verdict}")
    lines.append(f"\n* significant at alpha = {result['alpha']:g}: Mann-Whitney U, two-sided, on per-run values "
                 "(ITL: pooled token gaps), Holm-adjusted over the table. 'worse' is higher for *_ms, lower for *_tps.")
    for g in result["gates"]:
        lines.append(f"gate {'PASS' if g['passed'] else 'FAIL'}: {g['message']}")
    return "\n".join(lines) + "\n"
