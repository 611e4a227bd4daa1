"""Inside prefill (``--profile-ops``) as the views show it: the HTML report's Inside prefill section (a
stacked bar per prefill chunk and decode of the operation kinds, a bar per layer, the operations'
table, what profiling cost) and the dashboard's ``o``, which switches the TTFT headline to a profiled
run's prefill by operation kind and back. Built from a synthetic session in memory (a virtual clock,
the synthetic engine's operation profile: the same events every time) and from reports edited by
hand; no model runs."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from ttftui.analysis.reducer import fold
from ttftui.core.config import Config
from ttftui.report.html import fmt, fmt_count, report_html
from ttftui.tui.app import TtftApp
from ttftui.tui.widgets import TTFTBar

from .tui_support import StaticSource, fixed_clock, report_text, synthetic_session
from .tui_support import html_section as section

# 300 prompt tokens in batches of 128: three prefill chunks
SCENARIOS = [{"name": "p", "prompt_tokens": 300, "max_tokens": 6}]


@functools.cache
def _events() -> tuple[Any, ...]:
    from ttftui.measure.engine.synthetic import SyntheticEngine
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"run": {"iterations": 3, "warmup": 1, "seed": 3}, "engine": {"profile_ops": "ops"},
                                 "model": {"n_batch": 128}, "scenarios": SCENARIOS})
    events: list[Any] = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test data (deterministic)"), events.append).run()
    return tuple(events)


@functools.cache
def _report_text() -> str:
    return report_text(_events())


def report() -> dict[str, Any]:
    return json.loads(_report_text())


def the_run(rep: dict[str, Any]) -> dict[str, Any]:
    """The profiled twin's last counted run: the one the section draws."""
    return [r for r in rep["runs"] if r["scenario"] == "p@ops" and r["counted"]][-1]


def rows_of(sec: str) -> list[tuple[str, list[str], int]]:
    """Each stacked bar: (its label, the kinds of its rects in order, how many gap rects)."""
    out = []
    for name, body in re.findall(r'<g class="ops-row" data-row="([^"]*)">(.*?)</g>', sec, flags=re.S):
        out.append((name, re.findall(r'class="op" data-kind="([^"]*)"', body), body.count('class="gap"')))
    return out


# ------------------------------------------------------------------------------- the HTML report
def test_a_bar_per_chunk_and_decode_with_a_rect_per_kind():
    rep = report()
    page = report_html(rep)
    sec = section(page, "ops")
    assert page.index('id="timeline"') < page.index('id="ops"') < page.index('id="telemetry"')
    ops = the_run(rep)["ops"]
    assert len(ops["chunks"]) == 3 and ops["decode"] is not None
    assert f"run {the_run(rep)['run_id']}" in sec
    rows = rows_of(sec)
    assert [n for n, _, _ in rows] == ["chunk 1", "chunk 2", "chunk 3", "decode"]
    for (_, kinds, gaps), ph in zip(rows, [*ops["chunks"], ops["decode"]]):
        assert kinds == [k["kind"] for k in ph["kinds"]]  # one rect per kind, in the report's order
        assert gaps == (1 if ph["span_ms"] > ph["compute_ms"] else 0)  # the gap profiling adds
    for k in ops["prefill"]["kinds"]:  # the legend: every kind, in its bar's colour
        colour = re.search(rf'fill="(#[0-9a-f]{{6}})" class="op" data-kind="{k["kind"]}"', sec)
        assert colour and f'<i class="sw" style="background:{colour.group(1)}"></i>{k["kind"]}</span>' in sec
    assert "profiling gap</span>" in sec
    assert len(re.findall(r'<rect [^>]*class="layer"', sec)) == len(ops["prefill"]["layers"])
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", page)  # still self-contained


def test_a_chunk_draws_the_kinds_it_has():
    rep = report()
    run = the_run(rep)
    run["ops"]["chunks"][1]["kinds"] = run["ops"]["chunks"][1]["kinds"][:3]
    rows = rows_of(section(report_html(rep), "ops"))
    assert [len(k) for _, k, _ in rows] == [8, 3, 8, 8]


def test_the_table_and_the_cost_hold_the_reports_values():
    rep = report()
    sec = section(report_html(rep), "ops")
    body = re.search(r'<table class="ops">.*?<tbody>(.*?)</tbody>', sec, flags=re.S).group(1)
    rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]
    kinds = the_run(rep)["ops"]["prefill"]["kinds"]
    assert len(rows) == len(kinds)
    for (kind, ms, pct, count, nbytes), k in zip(rows, kinds):
        assert re.sub(r"<i [^>]*></i>", "", kind) == k["kind"]
        assert (ms, pct, count) == (fmt(k["ms"], ""), fmt(k["pct"], "pct"), fmt_count(k["count"]))
        assert nbytes == (fmt(k["bytes"], "bytes") if k["bytes"] else "")
    cost = rep["ops_cost"]["p@ops"]
    assert cost["ratio"] > 1
    assert f"profiled prefill ×{cost['ratio']:.2f} the plain runs'" in sec
    assert f"p50 {fmt(cost['profiled_prefill_p50_ms'])} vs {fmt(cost['plain_prefill_p50_ms'])} of p:" in sec


def test_a_report_without_profiled_runs_has_no_such_section():
    rep = json.loads(report_text(synthetic_session(iterations=1, warmup=0)))
    page = report_html(rep)
    assert 'id="ops"' not in page and "Inside prefill" not in page and 'class="ops-row"' not in page


def test_odd_operation_records_are_drawn_leniently():
    """A report from elsewhere: kinds without numbers, markup in names, numbers no measurement can be,
    chunks that are no records, layers out of order: the page is written, escaped, every coordinate finite."""
    rep = report()
    run = the_run(rep)
    ops = run["ops"]
    ops["chunks"][0]["kinds"] = [{"kind": "<b>MUL_MAT</b>", "ms": 2.0, "pct": "x", "count": True},
                                 {"kind": "huge", "ms": 1e300}, {"kind": None, "ms": -5}, "not a kind",
                                 {"kind": "NaNish", "ms": float("nan")}]
    ops["chunks"][1] = "not a chunk"
    ops["chunks"][2]["span_ms"] = None
    ops["prefill"]["layers"] = [{"layer": "<i>", "ms": 2.0}, {"layer": None, "ms": None}, {"layer": 3, "ms": 1e308}, 7]
    ops["prefill"]["kinds"].append({"kind": "<script>x</script>", "ms": "fast", "pct": None, "count": 2.5, "bytes": -1})
    ops["decode"] = {"kinds": "many"}
    rep["ops_cost"]["p@ops"]["ratio"] = None
    sec = section(report_html(rep), "ops")
    assert "<b>MUL_MAT" not in sec and "&lt;b&gt;MUL_MAT&lt;/b&gt;" in sec and "<script>" not in sec
    assert "no plain runs of p to set the profiled prefill against" in sec
    for attr in re.findall(r' (?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"', sec):
        assert attr not in ("nan", "inf", "-inf") and float(attr) == float(attr)
    rows = rows_of(sec)
    assert [n for n, _, _ in rows] == ["chunk 1", "chunk 2", "decode"]  # the chunk no record is left out
    assert rows[0][1] == ["&lt;b&gt;MUL_MAT&lt;/b&gt;", "None"] and rows[2][1] == []  # kinds without a number too
    assert report_html({"runs": [{"scenario": "x@ops", "ops": {}}, {"ops": {"chunks": 3, "prefill": []}}]})


def test_a_scenario_with_no_counted_profiled_run_shows_its_last():
    rep = report()
    for r in rep["runs"]:
        if r["scenario"] == "p@ops":
            r["counted"] = False
    last = [r for r in rep["runs"] if r["scenario"] == "p@ops"][-1]
    sec = section(report_html(rep), "ops")
    assert f"run {last['run_id']} (not counted)" in sec


# ------------------------------------------------------------------------------- the dashboard
def make_app(events):
    src = StaticSource(list(events))
    return TtftApp(src, clock=fixed_clock(list(events)))


def bar_text(app) -> str:
    return app.query_one(TTFTBar).content.plain


def footer_keys(app) -> list[str]:
    return [b.binding.description for b in app.screen.active_bindings.values() if b.binding.show]


async def test_o_switches_the_headline_to_operation_kinds_and_back():
    rep = report()
    run = the_run(rep)
    last = max(r["run_id"] for r in rep["runs"] if r["ops"] is not None)
    app = make_app(_events())
    async with app.run_test(size=(140, 44)) as pilot:
        await pilot.pause()
        before = bar_text(app)
        assert "TTFT" in before.splitlines()[0] and "by operation kind" not in before
        assert "Ops" in footer_keys(app)  # offered: a profiled run has ended
        await pilot.press("o")
        await pilot.pause()
        text = bar_text(app)
        head = text.splitlines()
        assert head[0].startswith(f"last run {last} • p@ops  prefill ") and "in 3 chunks by operation kind" in head[0]
        kinds = the_run(rep)["ops"]["prefill"]["kinds"]
        assert all(f"■ {k['kind']} " in text for k in kinds[:5]) and "■ profiling gap " in text
        top = next(line for line in head if line.startswith("top "))
        assert top.split(" · ")[0] == f"top  {kinds[0]['kind']} {kinds[0]['pct']:.1f}% ×{kinds[0]['count']:,}"
        strip = next(line for line in head if line.startswith("layers "))
        n_layers = len(run["ops"]["prefill"]["layers"])
        assert strip.startswith("layers 0 ") and f" {n_layers - 1}  peak " in strip
        assert len(strip.split(" ")[2]) == n_layers  # a cell per layer
        ratio = rep["ops_cost"]["p@ops"]["ratio"]
        assert f"profiled prefill ×{ratio:.2f} the plain runs'" in text
        assert "p     median" in text and "p@ops median" in text  # the medians stay below
        await pilot.press("o")
        await pilot.pause()
        assert bar_text(app) == before


async def test_o_says_so_when_no_run_was_profiled_and_an_ordinary_session_looks_as_before():
    app = make_app(synthetic_session())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        before = bar_text(app)
        keys = footer_keys(app)
        assert "Ops" not in keys  # the footer is as it was
        await pilot.press("o")
        await pilot.pause()
        assert any("no profiled run in this session" in str(n.message) for n in app._notifications)
        assert bar_text(app) == before and not app.query_one(TTFTBar).ops_view
        assert footer_keys(app) == keys


async def test_the_ops_headline_fits_a_small_terminal():
    """80x24: the headline by operation kind still fits the breakdown's rows (title, bar, a legend of
    two lines, the top operations, the layer strip, the cost), each line within the panel."""
    app = make_app(_events())
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("o")
        await pilot.pause()
        w = app.query_one(TTFTBar)
        lines = bar_text(app).splitlines()
        assert w.core_lines <= 7 and all(len(line.rstrip()) <= w.content_size.width for line in lines)
        assert lines[w.core_lines - 1].startswith("profiled prefill ×")


def test_the_twin_cost_on_the_dashboard_equals_the_reports():
    from ttftui.analysis.view import SessionView
    from ttftui.tui.widgets.ops import ops_cost

    view = SessionView(fold(list(_events())))
    ratio, pb, pa = ops_cost(view, "p@ops")
    cost = report()["ops_cost"]["p@ops"]
    assert (ratio, pb, pa) == (cost["ratio"], cost["profiled_prefill_p50_ms"], cost["plain_prefill_p50_ms"])
    assert ops_cost(view, "p") is None
