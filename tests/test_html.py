"""The HTML report (ttftui report FILE --html, compare --html) and the dashboard in a browser
(ttftui serve), checked in headless Chromium: the plots are there and drawn, no console errors, a
key pressed in the page reaches the app. Screenshots land in tests/artifacts/."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .browser import ARTIFACTS, Browser, chromium_path, png_colours
from .conftest import cli

SESSION_TOML = """
[model]
n_ctx = 512
n_batch = 32
n_threads = 2
[run]
iterations = 3
warmup = 1
[[scenarios]]
name = "short"
prompt_tokens = 32
max_tokens = 12
[[scenarios]]
name = "medium"
prompt_tokens = 96
max_tokens = 12
[[alerts]]
metric = "ttft_ms"
statistic = "per_run"
value = 100000
"""

SECTIONS = ("breakdown", "distributions", "timeline", "telemetry", "percentiles", "alerts", "config")


@pytest.fixture(scope="module")
def browser_exe():
    exe, why = chromium_path()
    if exe is None:
        pytest.skip(why)
    return exe


@pytest.fixture(scope="module")
def session(tmp_path_factory, model_path):
    """A real demo-model session: its JSON report and its recording."""
    d = tmp_path_factory.mktemp("html")
    (d / "c.toml").write_text(SESSION_TOML)
    out, rec = d / "run.json", d / "run.ttftrec"
    r = cli("--headless", "-q", "--config", str(d / "c.toml"), "-o", str(out), "--record", str(rec))
    assert r.returncode == 0, r.stderr
    return d, out, rec


@pytest.fixture(scope="module")
def pages(session):
    d, out, rec = session
    a, b = d / "from_report.html", d / "from_recording.html"
    r = cli("report", str(out), "--html", str(a))
    assert r.returncode == 0, r.stderr
    assert "report: drawing TTFT breakdown" in r.stderr and f"wrote {a}" in r.stderr  # progress on stderr
    r = cli("report", str(rec), "--html", str(b), "--run", "2", "-q")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    return a, b


@pytest.mark.model
def test_the_page_has_every_section_and_is_self_contained(pages, session):
    a, b = pages
    page = a.read_text()
    for sid in SECTIONS:
        assert f'id="{sid}"' in page, sid
    assert "REAL" in page and "SYNTHETIC" not in page
    assert not re.search(r"<script|https?://(?!www\.w3\.org/2000/svg)", page)  # no script, nothing fetched
    assert page.count('<svg class="plot"') >= 1 + 2 * 2 + 1 + 1  # breakdown, 2 histograms a scenario, timeline, telemetry
    report = json.loads(session[1].read_text())
    for name in report["summary"]:
        assert f"<h3>{name} " in page  # every scenario has its distributions and percentiles
    assert "Token timeline: run 2 · short" in b.read_text()  # --run chooses the run drawn


@pytest.mark.model
def test_a_recording_and_its_report_give_the_same_page_but_for_the_source(pages):
    a, b = pages
    # the same but for the file's name and the run whose timeline is drawn (--run 2 for the recording)
    strip = lambda t: re.sub(r"<title>.*?</title>|<h1>.*?</h1>|<h2 id=\"timeline\">.*?(?=<h2)", "", t, flags=re.S)  # noqa: E731
    assert strip(a.read_text()) == strip(b.read_text())


@pytest.mark.model
async def test_the_report_renders_in_chromium_without_errors(pages, browser_exe):
    a, _ = pages
    async with Browser(browser_exe, width=840, height=1000) as br:
        await br.goto(a.as_uri())
        n_plots = await br.eval("document.querySelectorAll('svg.plot').length")
        bars = await br.eval("document.querySelectorAll('#breakdown ~ svg rect').length")
        sizes = await br.eval("[...document.querySelectorAll('svg.plot')].map(s => s.getBoundingClientRect().height)")
        sections = await br.eval("[...document.querySelectorAll('h2[id]')].map(h => h.id)")
        shot = await br.screenshot("report.png", full_page=True)
        colours = await png_colours(br, shot.read_bytes())
        errors = list(br.console_errors)
    assert n_plots >= 6 and bars > 10 and all(h > 20 for h in sizes)
    assert set(SECTIONS) <= set(sections)
    assert errors == []
    assert colours > 8, "the screenshot is blank"


@pytest.mark.model
async def test_compare_html_shows_ratios_with_significance(session, browser_exe, tmp_path):
    _, out, _ = session
    page = tmp_path / "cmp.html"
    r = cli("compare", str(out), str(out), "--html", str(page))
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    assert 'id="ratios"' in text and "p (Holm)" in text and "ttft_ms" in text and "baseline p50" in text
    async with Browser(browser_exe, width=840, height=900) as br:
        await br.goto(page.as_uri())
        rows = await br.eval("document.querySelectorAll('#table ~ table tbody tr').length")
        shot = await br.screenshot("compare.png")
        colours = await png_colours(br, shot.read_bytes())
        assert br.console_errors == []
    assert rows >= 2 * 5 and colours > 4


def test_text_from_a_report_is_escaped_and_bad_input_is_one_line(tmp_path):
    from ttftui.report.html import report_html

    evil = "<img src=x onerror=alert(1)>"
    rep = {"kind": "ttftui.report", "synthetic": True, "synthetic_reason": evil, "runs": [], "summary": {},
           "failed_runs": [{"run_id": 1, "scenario": "s", "error": evil}], "notices": [{"level": "info", "message": evil}],
           "config": {"x": evil}}
    page = report_html(rep)
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "SYNTHETIC" in page  # the label is never lost
    r = cli("report", str(tmp_path / "nope.json"), "--html", str(tmp_path / "o.html"))
    assert r.returncode == 14 and r.stderr.count("\n") == 1 and "not found" in r.stderr
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("hello")
    r = cli("report", str(foreign), "--html", str(tmp_path / "o.html"))
    assert r.returncode == 11 and "neither a ttftui JSON report nor a recording" in r.stderr
    assert not (tmp_path / "o.html").exists()


# ---------------------------------------------------------------------- the served dashboard
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _svg_text(p: Path) -> str:
    return p.read_text().replace("&#160;", " ")


@pytest.mark.model
async def test_the_served_dashboard_runs_in_chromium_and_takes_keys(browser_exe, tmp_path, model_path):
    (tmp_path / "c.toml").write_text(SESSION_TOML.replace("iterations = 3", "iterations = 2"))
    port = _free_port()
    srv = subprocess.Popen([sys.executable, "-m", "ttftui", "serve", "--port", str(port), "--config",
                            str(tmp_path / "c.toml")], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stderr.readline()  # type: ignore[union-attr]
        assert f"serving the dashboard at http://127.0.0.1:{port}" in line and "one viewer at a time" in line
        url = f"http://127.0.0.1:{port}/"
        async with Browser(browser_exe, width=1400, height=900) as br:
            await br.goto(url)
            await br.wait_for("document.body.classList.contains('-first-byte')", timeout=60)
            await asyncio.sleep(8)  # the session loads the model and runs
            await br.eval("document.querySelector('.xterm-helper-textarea')?.focus(), true")
            await br.type_text("s")  # the dashboard's screenshot key, typed into the page
            deadline = time.monotonic() + 30
            while not list(tmp_path.glob("*.svg")) and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
            svgs = list(tmp_path.glob("*.svg"))
            assert svgs, "the key typed in the browser did not reach the app"
            shot = await br.screenshot("serve.png")
            colours = await png_colours(br, shot.read_bytes())
            # a second viewer starts nothing: it is told the session is open elsewhere
            import aiohttp

            async with aiohttp.ClientSession() as http, http.get(url) as r:
                second = (r.status, await r.text())
        screen = _svg_text(svgs[0])
        assert "TTFT breakdown" in screen and "Percentiles" in screen and "REAL" in screen
        assert colours > 8
        assert second[0] == 409 and "already open in another browser tab" in second[1]
        (ARTIFACTS / "serve-dashboard.svg").write_bytes(svgs[0].read_bytes())
    finally:
        srv.terminate()
        srv.wait(20)


def test_serve_checks_its_options_before_serving(tmp_path):
    r = cli("serve", "--port", "70000")
    assert r.returncode == 2 and "at most 65535" in r.stderr
    r = cli("serve", "--headless")
    assert r.returncode == 2 and "--headless and -o do not apply" in r.stderr
    r = cli("serve", "--set", "run.iterations=0")
    assert r.returncode == 2 and "run.iterations" in r.stderr


def test_another_address_than_loopback_warns():
    from ttftui.cli.serve import check_host, serve_command

    assert check_host("127.0.0.1") is None and check_host("localhost") is None
    assert "anyone who can reach this port can drive the session" in check_host("0.0.0.0")
    assert serve_command(["--config", "a b.toml"]).endswith("-m ttftui --config 'a b.toml'")



