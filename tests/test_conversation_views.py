"""Conversations (kind = "conversation") as the views show them: the HTML report's Conversations
section (TTFT against the turn, one line per NAME@CACHE, and a table of each one's turns), the TTFT
breakdown's cached + new tokens per turn, and the dashboard's TTFT headline (the turn and what the
cache held, live and after the run). Built from a synthetic session in memory (a virtual clock: the
same events every time)."""

from __future__ import annotations

import functools
import json
import re
from typing import Any

import pytest

from ttftui.core.events import PhaseTimed, RunStarted
from ttftui.report.html import fmt, fmt_count, report_html
from ttftui.tui.app import TtftApp
from ttftui.tui.widgets import TTFTBar

from .tui_support import StaticSource, fixed_clock, report_text, synthetic_session
from .tui_support import html_section as section

TURNS = 4
CHAT = [{"name": "chat", "kind": "conversation", "turns": TURNS, "user_tokens": 48, "max_tokens": 8,
         "cache": ["keep", "off"]}]


@functools.cache
def _events() -> tuple[Any, ...]:
    return tuple(synthetic_session(iterations=3, warmup=1, scenarios=CHAT))


@functools.cache
def _report_text() -> str:
    return report_text(_events())


def report() -> dict[str, Any]:
    return json.loads(_report_text())


# ------------------------------------------------------------------------------- the HTML report
def test_the_page_has_a_line_per_conversation_with_a_point_per_turn():
    rep = report()
    page = report_html(rep)
    conv = section(page, "conversations")
    assert page.index('id="breakdown"') < page.index('id="conversations"') < page.index('id="distributions"')
    lines = re.findall(r'<path class="conversation" data-name="([^"]*)" d="([^"]*)"', conv)
    assert [n for n, _ in lines] == ["chat@keep", "chat@off"]
    for _, d in lines:
        assert len(re.findall(r"[ML]", d)) == TURNS and d.startswith("M") and d.count("M") == 1
        assert "nan" not in d and "inf" not in d
    assert conv.count("<circle ") == 2 * TURNS
    assert conv.count('class="band"') == 2  # the min–max of each line's runs
    assert "chat@keep</span>" in conv and "chat@off</span>" in conv  # the legend
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", page)  # still self-contained


def test_the_off_line_climbs_above_the_keep_line():
    """keep evaluates only each turn's new tokens, off the whole conversation: by the last turn the
    off line is the higher one (smaller y)."""
    conv = section(report_html(report()), "conversations")
    last_y = {n: float(d.split()[-1].split(",")[1])
              for n, d in re.findall(r'<path class="conversation" data-name="([^"]*)" d="([^"]*)"', conv)}
    assert last_y["chat@off"] < last_y["chat@keep"]


def test_the_tables_hold_the_reports_values():
    rep = report()
    conv = section(report_html(rep), "conversations")
    tables = re.findall(r'<h3>(chat@\w+) .*?<tbody>(.*?)</tbody>', conv, flags=re.S)
    assert [n for n, _ in tables] == ["chat@keep", "chat@off"]
    for name, body in tables:
        rows = [re.findall(r"<td>(.*?)</td>", tr) for tr in re.findall(r"<tr>(.*?)</tr>", body)]
        assert [r[0] for r in rows] == [str(t) for t in range(1, TURNS + 1)]
        for turn, depth, cached, new, ttft, hit in rows:
            sc = f"{name}@t{turn}"
            m = rep["summary"][sc]["metrics"]
            recs = [r["conversation"] for r in rep["runs"] if r["scenario"] == sc and r["counted"]]
            assert recs and all(r["conversation"] == name and r["turn"] == int(turn) for r in recs)
            assert depth == fmt_count(recs[0]["depth"]) and all(r["depth"] == recs[0]["depth"] for r in recs)
            assert cached == fmt_count(m["cached_tokens_count"]["p50"]) == fmt_count(recs[0]["cached_tokens"])
            assert new == fmt_count(m["new_tokens_count"]["p50"]) == fmt_count(recs[0]["new_tokens"])
            assert ttft == fmt(m["ttft_ms"]["p50"], "")
            assert hit == fmt(m["cache_hit_pct"]["p50"], "pct")
            if name == "chat@off" or turn == "1":
                assert cached == "0" and hit == "0 %"
            else:  # the conversation so far is cached, the new message (and the last answer's last token) is not
                assert int(cached) > 0 and int(cached) + int(new) == int(depth)


def test_the_breakdown_names_each_turns_cached_and_new_tokens():
    rep = report()
    bd = section(report_html(rep), "breakdown")
    for name, s in rep["summary"].items():
        c, n = s["metrics"]["cached_tokens_count"]["p50"], s["metrics"]["new_tokens_count"]["p50"]
        assert f">{name} · {fmt_count(c)} cached + {fmt_count(n)} new</text>" in bd


def test_a_report_without_conversations_has_no_such_section():
    rep = json.loads(report_text(synthetic_session(iterations=1, warmup=0)))
    page = report_html(rep)
    assert 'id="conversations"' not in page and " cached + " not in page


def test_odd_conversation_records_are_drawn_leniently():
    """A report from elsewhere: turns out of order, a turn no number, a conversation's scenario with
    no summary, numbers no measurement can be: the page is written, every coordinate finite."""
    rep = report()
    runs = rep["runs"]
    runs[0]["conversation"]["turn"] = "two"
    runs[1]["conversation"] = "not a record"
    runs.append({**runs[-1], "scenario": "ghost", "conversation": {**runs[-1]["conversation"], "turn": 9}})
    runs.append({**runs[-1], "scenario": "huge", "conversation": {**runs[-1]["conversation"], "turn": 10**30}})
    rep["summary"]["chat@keep@t2"]["metrics"]["ttft_ms"]["p50"] = 1e308
    rep["summary"]["chat@keep@t3"]["metrics"]["ttft_ms"].update(min=float("nan"), max=-5.0)
    page = report_html(rep)
    conv = section(page, "conversations")
    for v in re.findall(r' (?:x|y|x1|x2|y1|y2|cx|cy|width|height)="([^"]*)"', conv):
        assert abs(float(v)) <= 1e6
    for d in re.findall(r' d="([^"]*)"', conv):
        assert "nan" not in d and "inf" not in d
    keep = dict(re.findall(r'data-name="([^"]*)" d="([^"]*)"', conv))["chat@keep"]
    assert keep.count("M") == 2  # turn 2 has no TTFT (beyond any measurement): the line breaks there
    assert "<td>9</td>" in conv and "larger than any measurement" in page


# ------------------------------------------------------------------------------- the dashboard
def _app(events: list[Any]) -> TtftApp:
    return TtftApp(StaticSource(events), clock=fixed_clock(events))


def _headline(app: TtftApp) -> str:
    return app.query_one(TTFTBar).content.plain.split("\n")[0]


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_after_a_turn_the_headline_says_the_turn_and_the_cache(size):
    events = list(_events())
    rep = report()
    last = rep["runs"][-1]
    c = last["conversation"]
    app = _app(events)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        head = _headline(app)
        bar = app.query_one(TTFTBar).content.plain
        width = app.query_one(TTFTBar).content_size.width
    want = f"last run {last['run_id']} • {last['scenario']} · turn {c['turn']}/{c['turns']} · " \
           f"{c['cached_tokens']:,} cached + {c['new_tokens']:,} new  TTFT"
    assert head.startswith(want) and len(head) <= width, head
    # each turn's median: the name says the turn; beside it the cache hit, not the fit against the depth
    rows = [ln for ln in bar.split("\n") if " median " in ln]
    assert rows and all(re.match(r"chat@(keep|off)@t\d ", ln) for ln in rows)
    assert all(len(ln) <= width for ln in rows)
    assert "fit " not in bar and "cache hit 0%" in bar


async def test_keep_and_off_bars_share_one_scale():
    """A conversation's cache settings are two sweep families; their medians are drawn on one scale
    so that keep's short bars stand beside off's long ones."""
    app = _app(list(_events()))
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        bar = app.query_one(TTFTBar).content.plain
    blocks = {m.group(1): m.group(2).count("█")
              for m in re.finditer(r"^(chat@\w+@t\d) +median +\S+ ms (█+)", bar, flags=re.M)}
    assert blocks[f"chat@off@t{TURNS}"] > 1.5 * blocks[f"chat@keep@t{TURNS}"], blocks


def _cut_after(events: list[Any], scenario: str, phase: str | None) -> list[Any]:
    """The session up to the last (counted) run of ``scenario``, just after its ``phase`` (None: just
    after it started)."""
    start = max(i for i, e in enumerate(events) if isinstance(e, RunStarted) and e.scenario == scenario)
    rid = events[start].run_id
    if phase is None:
        return events[: start + 1]
    end = next(i for i, e in enumerate(events) if i > start and isinstance(e, PhaseTimed)
               and e.run_id == rid and e.phase == phase)
    return events[: end + 1]


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_a_turn_in_progress_says_what_its_cache_kept(size):
    events = _cut_after(list(_events()), "chat@keep@t3", "cache_prep")
    prep = events[-1]
    started = next(e for e in events if isinstance(e, RunStarted) and e.run_id == prep.run_id)
    assert prep.n_tokens and prep.n_tokens > 0
    app = _app(events)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        head = _headline(app)
        width = app.query_one(TTFTBar).content_size.width
    assert head.startswith(f"run {prep.run_id} • chat@keep@t3"), head
    assert f"{prep.n_tokens} cached + {started.prompt_tokens - prep.n_tokens} new" in head, head
    assert "so far" in head and len(head) <= width, head
    if size[0] >= 120:
        assert f"turn 3/{TURNS}" in head and "running" in head


async def test_before_its_cache_is_prepared_a_turn_says_only_its_place():
    events = _cut_after(list(_events()), "chat@off@t2", "tokenize")
    app = _app(events)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        head = _headline(app)
    assert "chat@off@t2 · turn 2/4  TTFT" in head and "cached" not in head, head


async def test_an_ordinary_run_has_nothing_new_in_its_headline():
    events = synthetic_session(iterations=2, warmup=0)
    for evs, prefix in ((events, "last run"), (_cut_after(events, "long", "cache_prep"), "run")):
        app = _app(evs)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            head = _headline(app)
            bar = app.query_one(TTFTBar).content.plain
        assert head.startswith(f"{prefix} ") and " • long  TTFT " in head, head
        assert "turn" not in bar and "cached" not in bar and "cache hit" not in bar
