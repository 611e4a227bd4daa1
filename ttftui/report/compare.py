"""``ttftui compare BASE.json CANDIDATE.json``: per scenario and metric, baseline vs candidate.

Significance comes from SciPy's Mann–Whitney U test (two-sided) on the per-run values of each side
(pooled token gaps for ``itl_ms``): it assumes no distribution shape, which suits latency, and with
few runs it simply cannot reach significance. A comparison tests many metrics at once, so the
p-values are Holm-adjusted over the whole table: "significant" then means the chance of *any*
false alarm in the table is at most alpha, and two reports of the same distribution are not called
different. Regression gates compare one statistic (e.g. p95) and set the exit code.

Reports of a schema version this ttftui does not read are refused (schemas 2 to 4 only added to
schema 1, so all four compare); scenarios present on one side only, a synthetic
side, another device, model or engine settings are all said out loud before the table.

A report is input from outside, so it is checked at the door (``load_report``): only a regular file
of at most ``MAX_REPORT_BYTES`` is read (a FIFO or ``/dev/zero`` would block or fill memory), its
JSON may hold no NaN, Infinity or out-of-range number, and the report's own schema, read leniently
(:func:`ttftui.report.schema.lenient`), must accept it. Text from a report reaches the terminal escaped.

Exit codes, so that CI can tell a slower build from a broken pipeline:

* 0: compared; no gate given, or every gate passed.
* 1 (GateFailed): a gate was evaluated and failed: the candidate really is slower.
* 2 (ConfigError): a bad option: a malformed gate, an unknown statistic, a percentage that is not a
  finite number of 0 or more, an ``--alpha`` outside (0, 1).
* 14 (ReportError): a report is missing, unreadable, not a regular file, too big, not JSON, not a
  ttftui report, malformed, of another schema version; or the reports cannot answer a gate (no such
  scenario, metric or statistic in both, no value, a baseline of 0). A gate that cannot be evaluated
  is never a pass (0) and never a regression (1).
* 70: a bug in ttftui.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ttftui.core import registry
from ttftui.core.config import Config
from ttftui.core.errors import ConfigError, ReportError
from ttftui.core.inputs import expand_path, read_input
from ttftui.core.textsafe import visible
from ttftui.report.schema import REPORT_KIND, SCHEMA_VERSION, Report, lenient, run_value

# What compare tests, and which way is better: ttftui.core.registry's metrics with compare=True.
COMPARE_METRICS: tuple[str, ...] = registry.names(compare=True)
HIGHER_IS_BETTER = {m.name for m in registry.METRICS if m.higher_is_better}
MAX_REPORT_BYTES = 256 * 1024 * 1024
MIN_SCHEMA_VERSION = 1  # schemas 2 to 5 only added to schema 1: all five are read and compared
_MAX_INT_DIGITS = 19  # ttftui writes nothing bigger (byte counts); anything longer is not a report's
_GATE = re.compile(r"(?:(?P<scenario>[A-Za-z0-9_.\-]+):)?(?P<metric>[a-z0-9_]+)\.(?P<stat>\w+)=(?P<pct>[^%]*)%?")
_PCT = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_STAT = re.compile(r"mean|sd|min|max|p(?P<whole>[0-9]+)(?:_[0-9]+)?")  # stats.pct_key: 99.9 -> p99_9


# What compare reads of a report: the report's own schema, leniently (an older schema's report lacks
# what later ones added; unknown keys are ignored; numbers must be finite JSON numbers).
_ReportIn = lenient(Report, required=("runs", "summary"), typed={"config": Config})


class _BadNumber(ValueError):
    """A JSON number compare cannot hold as a finite float (NaN, Infinity, 1e400, 400 digits)."""


def _json_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_INT_DIGITS:
        raise _BadNumber(f"an integer of {digits} digits is out of range")
    return int(text)


def _json_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise _BadNumber(f"the number {text[:24]} is out of range")
    return v


def _json_constant(text: str) -> float:
    raise _BadNumber(f"{text} is not a number (JSON has no NaN or Infinity)")


def _safe(text: str) -> str:
    """Report text on its way to a terminal or an error line: control characters and lone surrogates
    (which a JSON ``\\ud800`` escape can produce, and which stdout cannot encode) shown escaped."""
    return visible(text, newlines=False)  # the one sanitiser escapes lone surrogates too


def _read_bytes(p: Path) -> bytes:
    """The file's bytes, refusing before reading what is not a regular file of sane size: a FIFO would
    block, ``/dev/zero`` never ends (``ttftui.core.inputs.read_regular``, as for every input file)."""
    try:
        return read_input(p, MAX_REPORT_BYTES, "report", ReportError)
    except ValueError as e:  # a path os.open refuses (an embedded NUL)
        raise ReportError(f"cannot read report {p}: {e}") from None


def _parse_json(raw: bytes, p: Path) -> Any:
    try:
        return json.loads(raw.decode("utf-8"), parse_int=_json_int, parse_float=_json_float,
                          parse_constant=_json_constant)
    except UnicodeDecodeError as e:
        raise ReportError(f"{p} is not UTF-8 text (byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ReportError(f"{p} is not JSON ({e.msg} at line {e.lineno})") from None
    except _BadNumber as e:
        raise ReportError(f"{p}: {e}") from None
    except RecursionError:
        raise ReportError(f"{p}: JSON nested too deeply to be a report") from None


_EXPECTED = {
    "float_type": "expected a number", "finite_number": "expected a finite number",
    "int_type": "expected a whole number", "string_type": "expected a string", "bool_type": "expected true or false",
    "list_type": "expected a list", "dict_type": "expected an object", "model_type": "expected an object",
    "missing": "required key is missing",
}


def _validation_message(err: ValidationError) -> str:
    """One line: ``runs.3.ttft_ms: expected a number (got 'fast')``, and how many more problems."""
    errors = err.errors(include_url=False)
    first = errors[0]
    key = ".".join(str(part)[:40] for part in first["loc"]) or "(top level)"
    msg = _EXPECTED.get(first["type"]) or first["msg"][:1].lower() + first["msg"][1:]
    if first["type"] != "missing" and not isinstance(first.get("input"), (dict, list)):
        got = repr(first.get("input"))
        msg += f" (got {got[:40]}{'...' if len(got) > 40 else ''})"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{key}: {msg}{more}"


def _expand(path: str) -> Path:
    return expand_path(path)  # "~nosuchuser/r.json": no home directory to expand to, not found


def load_report(path: str) -> dict[str, Any]:
    """A report as a dict with only what compare reads, plus ``_path``; ReportError when it is not one
    (see the module docstring for what is refused and why)."""
    return _load(path)[1]


def load_full_report(path: str) -> dict[str, Any]:
    """The whole report as parsed (for ``ttftui report --html``), after the same checks as
    ``load_report``: its kind, schema version and the shape compare reads."""
    return _load(path)[0]


def _load(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    p = _expand(path)
    data = _parse_json(_read_bytes(p), p)
    where = _safe(str(p))
    if not isinstance(data, dict) or data.get("kind") != REPORT_KIND:
        raise ReportError(f"{where} is not a ttftui report (no \"kind\": \"{REPORT_KIND}\")")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ReportError(f"{where}: report has no schema_version")
    if not MIN_SCHEMA_VERSION <= version <= SCHEMA_VERSION:  # before the shape check: another schema's shape differs
        raise ReportError(f"{where} uses report schema {version}; this ttftui reads schemas "
                          f"{MIN_SCHEMA_VERSION} to {SCHEMA_VERSION}")
    try:
        report = _ReportIn.model_validate(data)
    except ValidationError as e:
        raise ReportError(f"{where}: {_safe(_validation_message(e))}") from None
    out = report.model_dump()
    out["_path"] = str(p)
    return data, out


def parse_alpha(text: str) -> float:
    """``--alpha``: a significance level must lie strictly between 0 and 1 (0 or nan would call nothing
    significant, 1 or more everything)."""
    try:
        alpha = float(text)
    except ValueError:
        alpha = math.nan
    _check_alpha(alpha, text)
    return alpha


def _check_alpha(alpha: float, text: str | None = None) -> None:
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise ConfigError(f"--alpha {text if text is not None else alpha!r}: expected a number between 0 and 1 "
                          "(exclusive), e.g. 0.05")


def parse_gate(text: str) -> dict[str, Any]:
    """``[SCENARIO:]METRIC.STAT=PCT%``. A gate that can never be evaluated (unknown metric or statistic,
    a percentage that is not a finite number of 0 or more) is a usage error here, before any report
    is read."""
    m = _GATE.fullmatch(text.strip())
    if not m:
        raise ConfigError(f"--max-regression {text!r}: expected [SCENARIO:]METRIC.STAT=PCT%, e.g. ttft_ms.p95=10%")
    if m["metric"] not in COMPARE_METRICS:
        raise ConfigError(f"--max-regression {text!r}: unknown metric {m['metric']!r} (one of: {', '.join(COMPARE_METRICS)})")
    st = _STAT.fullmatch(m["stat"])
    if not st or (st["whole"] is not None and int(st["whole"]) > 100):
        raise ConfigError(f"--max-regression {text!r}: {m['stat']!r} is not a statistic a gate can compare "
                          "(mean, sd, min, max or a percentile such as p50, p95, p99_9)")
    pct = float(m["pct"]) if _PCT.fullmatch(m["pct"]) else math.nan
    if not math.isfinite(pct):
        raise ConfigError(f"--max-regression {text!r}: PCT must be a finite number of 0 or more, got {m['pct']!r}")
    return {"scenario": m["scenario"], "metric": m["metric"], "stat": m["stat"], "max_pct": pct}


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
        elif (v := run_value(r, metric)) is not None:
            out.append(float(v))
    return out


def _p_value(a: list[float], b: list[float]) -> float | None:
    """Mann-Whitney U, two-sided; None when a side has fewer than two values."""
    if len(a) < 2 or len(b) < 2:
        return None
    if len(set(a)) == 1 and set(a) == set(b):
        return 1.0
    from scipy.stats import mannwhitneyu  # SciPy: heavy to import, needed by compare alone

    p = float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def _finite(v: float | None) -> float | None:
    """A derived number (ratio, percent change) as JSON can hold it: an overflow is "unknown", not inf."""
    return v if v is not None and math.isfinite(v) else None


def _direction(r: dict[str, Any]) -> str:
    """better/worse from the medians, not from the ratio (which is unknown when the baseline's is 0);
    "different" when a significant difference has equal or missing medians."""
    b, c = r["baseline_p50"], r["candidate_p50"]
    if b is None or c is None or b == c:
        return "different"
    higher = c > b
    return "better" if higher == (r["metric"] in HIGHER_IS_BETTER) else "worse"


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
        r["verdict"] = _direction(r) if sig else "same"


def _device(r: dict[str, Any]) -> str:
    d = r.get("device") or {}
    layers = d.get("n_gpu_layers_offloaded") or 0
    return f"{d.get('kind')} {d.get('name')} (build {d.get('build')}, {layers} GPU layers)"


def _settings(r: dict[str, Any]) -> dict[str, Any]:
    m = (r.get("config") or {}).get("model") or {}
    return {f"model.{k}": m.get(k) for k in ("n_ctx", "n_batch", "n_threads", "n_gpu_layers", "flash_attn")}


def compare_reports(base: dict[str, Any], cand: dict[str, Any], *, gates: list[dict[str, Any]] | None = None,
                    alpha: float = 0.05) -> dict[str, Any]:
    """Reports from ``load_report``. ConfigError for a bad alpha; ReportError when the reports cannot be
    compared or cannot answer a gate, raised before the (slower) significance tests."""
    _check_alpha(alpha)
    # Schema 2 only added to schema 1 (runs against a server; the engine's phases may be null), so
    # the two compare; a schema this ttftui does not know was refused when the report was loaded.
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
    gate_results = [r for g in gates or [] for r in _check_gate(g, bs, cs, common)]
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
            ratio = _finite(c50 / b50) if b50 and c50 is not None else None
            p = _p_value(_per_run(base, name, metric), _per_run(cand, name, metric))
            rows.append({"scenario": name, "metric": metric, "baseline_p50": b50, "candidate_p50": c50,
                         "ratio": ratio, "change_pct": _finite((ratio - 1) * 100) if ratio is not None else None,
                         "n_baseline": sb_m.get("n"), "n_candidate": sc_m.get("n"), "p_value": p})
    _holm(rows, alpha)
    ops, ops_layers = _ops_rows(base, cand, common, notes)
    return {"baseline": base["_path"], "candidate": cand["_path"], "alpha": alpha, "notes": notes, "rows": rows,
            "gates": gate_results, "ops": ops, "ops_layers": ops_layers}


# ------------------------------------------------------------ profiled runs: prefill by operation
GAPS = "(profiling gaps)"  # span - compute: what the callback itself added between the nodes


def _prefill_profiles(report: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """The counted runs' prefill profiles (``runs[].ops.prefill``) of one scenario."""
    out = []
    for r in report.get("runs", []):
        ops = r.get("ops") if r.get("scenario") == scenario and r.get("counted") else None
        pre = ops.get("prefill") if isinstance(ops, dict) else None
        if isinstance(pre, dict) and pre.get("span_ms"):
            out.append(pre)
    return out


def _by_kind(profiles: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Per operation kind, the median over runs of its ms and of its share of the prefill span (%); a
    kind a run lacks counts 0 in it (flash attention on has no SOFT_MAX). Profiling's own gaps are a
    kind of their own, so the kinds partition the span."""
    kinds = {k["kind"] for p in profiles for k in p.get("kinds") or []} | {GAPS}
    out = {}
    for kind in kinds:
        ms, pct = [], []
        for p in profiles:
            if kind == GAPS:
                v = max(0.0, p["span_ms"] - (p.get("compute_ms") or 0.0))
            else:
                v = sum(k["ms"] for k in p.get("kinds") or [] if k["kind"] == kind)
            ms.append(v)
            pct.append(v / p["span_ms"] * 100)
        out[kind] = (statistics.median(ms), statistics.median(pct))
    return out


def _by_layer(profiles: list[dict[str, Any]]) -> dict[int | None, float]:
    layers = {x.get("layer") for p in profiles for x in p.get("layers") or []}
    return {la: statistics.median([sum(x["ms"] for x in p.get("layers") or [] if x.get("layer") == la) for p in profiles])
            for la in layers}


def _ops_rows(base: dict[str, Any], cand: dict[str, Any], common: list[str],
              notes: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """For every scenario both reports profiled by operation (NAME@ops): prefill per operation kind
    and per layer, baseline against candidate (medians over counted runs; descriptive: the registry's
    prefill_matmul_pct / prefill_attention_pct rows above carry the significance tests)."""
    kinds_out: list[dict[str, Any]] = []
    layers_out: list[dict[str, Any]] = []
    for name in common:
        pb, pc = _prefill_profiles(base, name), _prefill_profiles(cand, name)
        if not pb or not pc:
            if pb or pc:
                notes.append(f"scenario {name}: only the {'baseline' if pb else 'candidate'} was profiled by "
                             "operation (no per-operation difference)")
            continue
        kb, kc = _by_kind(pb), _by_kind(pc)
        order = sorted(set(kb) | set(kc), key=lambda k: (k == GAPS, -max(kb.get(k, (0, 0))[0], kc.get(k, (0, 0))[0]), k))
        for kind in order:
            (bms, bpct), (cms, cpct) = kb.get(kind, (0.0, 0.0)), kc.get(kind, (0.0, 0.0))
            kinds_out.append({"scenario": name, "kind": kind, "baseline_ms": bms, "candidate_ms": cms,
                              "delta_ms": cms - bms, "ratio": _finite(cms / bms) if bms > 0 else None,
                              "baseline_pct": bpct, "candidate_pct": cpct, "delta_pct_points": cpct - bpct,
                              "n_baseline": len(pb), "n_candidate": len(pc)})
        lb, lc = _by_layer(pb), _by_layer(pc)
        for la in sorted(set(lb) | set(lc), key=lambda x: (x is None, x if x is not None else 0)):
            bms, cms = lb.get(la, 0.0), lc.get(la, 0.0)
            layers_out.append({"scenario": name, "layer": la, "baseline_ms": bms, "candidate_ms": cms,
                               "delta_ms": cms - bms, "ratio": _finite(cms / bms) if bms > 0 else None})
    return kinds_out, layers_out


def _gate_text(g: dict[str, Any]) -> str:
    return f"{g['scenario'] + ':' if g['scenario'] else ''}{g['metric']}.{g['stat']}={g['max_pct']:g}%"


def _unanswerable(g: dict[str, Any], why: str) -> ReportError:
    """A gate the reports cannot answer: neither a pass (exit 0) nor a regression (exit 1)."""
    return ReportError(_safe(f"gate {_gate_text(g)} cannot be evaluated: {why}"))


def _gate_values(g: dict[str, Any], name: str, bs: dict[str, Any], cs: dict[str, Any],
                 common: list[str]) -> tuple[float, float]:
    """Baseline and candidate value of the gate's statistic in one scenario, or why there are none."""
    if name not in common:
        where = "only in the baseline" if name in bs else "only in the candidate" if name in cs else "in neither report"
        raise _unanswerable(g, f"scenario {name!r} is {where} (scenarios in both: {', '.join(common)})")
    metric, st = g["metric"], g["stat"]
    sides = (("baseline", bs[name]["metrics"].get(metric)), ("candidate", cs[name]["metrics"].get(metric)))
    for side, summary in sides:
        if not summary:
            raise _unanswerable(g, f"the {side} has no {metric} for scenario {name}")
    b_sum, c_sum = sides[0][1], sides[1][1]
    if st not in b_sum or st not in c_sum:
        have = [k for k in b_sum if k in c_sum and k != "n"]
        raise _unanswerable(g, f"the reports have no statistic {st} for {name}:{metric} "
                               f"(statistics in both: {', '.join(have) or 'none'})")
    for side, summary in sides:
        if summary[st] is None:
            raise _unanswerable(g, f"the {side}'s {st} of {name}:{metric} is null "
                                   f"({summary.get('n')} counted values)")
    b, c = b_sum[st], c_sum[st]
    if b <= 0 and c != b:
        raise _unanswerable(g, f"the baseline's {st} of {name}:{metric} is {b:g}; "
                               "a change in percent of it is undefined")
    return b, c


def _regression_pct(g: dict[str, Any], b: float, c: float) -> float:
    """How much worse the candidate is, in percent of the baseline. Spread (sd) is worse when higher for
    every metric; otherwise lower is worse for *_tps, higher for the rest."""
    if b == c:
        return 0.0
    lower_is_worse = g["metric"] in HIGHER_IS_BETTER and g["stat"] != "sd"
    return (b - c) / b * 100 if lower_is_worse else (c - b) / b * 100


def _check_gate(g: dict[str, Any], bs: dict[str, Any], cs: dict[str, Any], common: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in [g["scenario"]] if g["scenario"] else common:
        b, c = _gate_values(g, name, bs, cs, common)
        worse = _regression_pct(g, b, c)
        label = f"{name}:{g['metric']}.{g['stat']} <= {g['max_pct']:g}% worse"
        word = "worse" if worse > 0 else "better" if worse < 0 else "no change"
        out.append({**g, "scenario": name, "baseline": b, "candidate": c, "regression_pct": _finite(worse),
                    "passed": worse <= g["max_pct"], "message": f"{label}: {b:.4g} -> {c:.4g} ({worse:+.1f}% {word})"})
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
    """The table for a terminal; every line passes through ``_safe`` (scenario names, device and model
    names and paths come from the reports)."""
    lines = [f"baseline:  {result['baseline']}", f"candidate: {result['candidate']}"]
    for n in result["notes"]:
        lines.append(f"note: {n}")
    sw = max([10] + [len(r["scenario"]) for r in result["rows"]])  # columns as wide as their longest name
    mw = max([16] + [len(r["metric"]) for r in result["rows"]])
    head = (f"{'scenario':<{sw}} {'metric':<{mw}} {'base p50':>10} {'cand p50':>10} {'ratio':>7} {'change':>8} "
            f"{'p (Holm)':>9}  verdict")
    lines += ["", head, "-" * len(head)]
    for r in result["rows"]:
        change = f"{r['change_pct']:+.1f}%" if r["change_pct"] is not None else "–"
        pv = f"{r['p_adjusted']:.3g}" if r["p_adjusted"] is not None else "n<2"
        verdict = r["verdict"] + (" *" if r["significant"] else "")
        lines.append(f"{r['scenario']:<{sw}} {r['metric']:<{mw}} {_num(r['baseline_p50'], 10)} {_num(r['candidate_p50'], 10)} "
                     f"{_num(r['ratio'], 7)} {change:>8} {pv:>9}  {verdict}")
    lines += ["", f"* significant at alpha = {result['alpha']:g}: Mann-Whitney U, two-sided, on per-run values "
              "(ITL: pooled token gaps), Holm-adjusted over the table. 'worse' is higher for *_ms, lower for *_tps."]
    lines += _ops_table(result.get("ops") or [], result.get("ops_layers") or [])
    for g in result["gates"]:
        lines.append(f"gate {'PASS' if g['passed'] else 'FAIL'}: {g['message']}")
    return "\n".join(_safe(line) for line in lines) + "\n"


def _signed(v: float, digits: int) -> str:
    """+1.25 / -0.40 / 0.00: a change too small to show has no sign."""
    r = round(v, digits)
    return f"{r:+.{digits}f}" if r else f"{0:.{digits}f}"


def _ops_table(ops: list[dict[str, Any]], layers: list[dict[str, Any]]) -> list[str]:
    """Inside prefill, per profiled scenario: each operation kind's median ms and share of the span,
    baseline -> candidate; then the layers that moved most."""
    if not ops:
        return []
    lines: list[str] = []
    for name in dict.fromkeys(r["scenario"] for r in ops):
        rows = [r for r in ops if r["scenario"] == name]
        n = f"n = {rows[0]['n_baseline']} / {rows[0]['n_candidate']}"
        head = (f"{'operation':<22} {'base ms':>9} {'cand ms':>9} {'delta ms':>9} {'base %':>7} {'cand %':>7} "
                f"{'delta pp':>9}")
        lines += ["", f"inside prefill, {name} (profiled runs, median per run, {n}):", head, "-" * len(head)]
        for r in rows:
            lines.append(f"{r['kind'][:22]:<22} {_num(r['baseline_ms'], 9)} {_num(r['candidate_ms'], 9)} "
                         f"{_signed(r['delta_ms'], 2):>9} {r['baseline_pct']:>7.1f} {r['candidate_pct']:>7.1f} "
                         f"{_signed(r['delta_pct_points'], 1):>9}")
        moved = sorted((x for x in layers if x["scenario"] == name and x["layer"] is not None),
                       key=lambda x: -abs(x["delta_ms"]))[:3]
        if moved:
            lines.append("layers that moved most: " + ", ".join(
                f"{x['layer']} {x['baseline_ms']:.2f} -> {x['candidate_ms']:.2f} ms" for x in moved))
    return lines
