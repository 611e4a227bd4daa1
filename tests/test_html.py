"""The HTML report (ttftui report FILE --html, compare --html) and the dashboard in a browser
(ttftui serve), checked in headless Chromium driven by Playwright (pytest-playwright's ``page``
fixture): the plots are there and drawn, no console errors, a key pressed in the page reaches the
app. Screenshots land in tests/artifacts/.

The browser is Debian's ``chromium`` (Playwright's own browser downloads need a network that CI and
the development machines do not have). ``chromium_path()`` finds it, installing the package with
apt-get when it is missing and the tests run as root (CI's clean Debian machine: part of the test
set-up, so that CI's one test command needs nothing else); only where it cannot be had do the
browser tests skip, and they say why.

Playwright's sync API marks its event loop as the thread's running loop between calls, so while it
runs, no ``asyncio.run`` (nor pytest-asyncio's async tests) can. pytest-playwright keeps it for the
whole session; here ``playwright``, ``browser`` and the fixtures between are module-scoped instead,
so Playwright stops at the end of this module and the async tests of later modules run as before.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .conftest import cli, free_port, wait_until

ARTIFACTS = Path(__file__).parent / "artifacts"

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


# ------------------------------------------------------------------------------- the browser
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, no sandbox (CI runs as root), and no connection of Chromium's own: without the
# background-networking flags it calls Google's servers, and a closed network refuses them.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", "--hide-scrollbars"]
_install_tried: list[str] = []


def chromium_path() -> tuple[str | None, str]:
    """(executable, why not): the system's Chromium, installed now if it can be."""
    for n in _NAMES:
        if p := shutil.which(n):
            return p, ""
    if os.environ.get("TTFTUI_NO_BROWSER_INSTALL"):
        return None, "no Chromium and TTFTUI_NO_BROWSER_INSTALL is set"
    if not _install_tried:
        _install_tried.append(_install())
    for n in _NAMES:
        if p := shutil.which(n):
            return p, ""
    return None, f"Chromium is not installed and could not be ({_install_tried[0]}): apt-get install chromium"


def _install() -> str:
    apt = shutil.which("apt-get")
    if apt is None:
        return "no apt-get on this system"
    if os.geteuid() != 0:
        return "not root, so apt-get cannot install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in ([apt, "install", "-y", "-q", "--no-install-recommends", "chromium"],
                [apt, "update", "-q"], [apt, "install", "-y", "-q", "--no-install-recommends", "chromium"]):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"{' '.join(cmd[1:3])} failed: {e}"
        if r.returncode == 0 and cmd[1] == "install":
            return "installed"
    return "apt-get install chromium failed"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def browser_type(playwright: Any) -> Any:
    return playwright.chromium  # the system's Chromium, whatever --browser says


@pytest.fixture(scope="module")
def launch_browser(browser_type_launch_args: dict, browser_type: Any) -> Callable[..., Any]:
    exe, why = chromium_path()
    if exe is None:
        pytest.skip(why)

    def launch(**kwargs: Any) -> Any:
        # --headed, --slowmo (pytest-playwright's options) still apply
        options = {"executable_path": exe, "args": CHROMIUM_ARGS, **browser_type_launch_args, **kwargs}
        if options.get("headless") is False:
            options["args"] = [a for a in CHROMIUM_ARGS if a != "--headless"]
        return browser_type.launch(**options)

    return launch


@pytest.fixture(scope="module")
def browser(launch_browser: Callable[..., Any]) -> Iterator[Any]:
    b = launch_browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def browser_context_args() -> dict:
    return {}  # a test's own size: @pytest.mark.browser_context_args(viewport=...)


def console_errors(page: Any) -> list[str]:
    """The page's console errors and uncaught exceptions from now on (a list that fills)."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    return errors


def screenshot(page: Any, name: str, full_page: bool = False) -> bytes:
    ARTIFACTS.mkdir(exist_ok=True)
    return page.screenshot(path=ARTIFACTS / name, full_page=full_page)


def png_colours(page: Any, data: bytes, max_colours: int = 64) -> int:
    """How many distinct colours a PNG has (sampled, up to ``max_colours``): 1 means blank. The
    browser decodes it (an image drawn on a canvas, in a blank page of its own), so no image
    library is needed here."""
    blank = page.context.new_page()
    try:
        return blank.evaluate("""async ([b64, max]) => {
            const img = new Image(); img.src = "data:image/png;base64," + b64; await img.decode();
            const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
            const g = c.getContext("2d"); g.drawImage(img, 0, 0);
            const d = g.getImageData(0, 0, c.width, c.height).data, seen = new Set();
            for (let i = 0; i < d.length && seen.size < max; i += 4 * 97) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
            return seen.size; }""", [base64.b64encode(data).decode(), max_colours])
    finally:
        blank.close()


# ------------------------------------------------------------------------------- the report
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
@pytest.mark.browser_context_args(viewport={"width": 840, "height": 1000})
def test_the_report_renders_in_chromium_without_errors(pages, page):
    a, _ = pages
    errors = console_errors(page)
    page.goto(a.as_uri())
    n_plots = page.locator("svg.plot").count()
    bars = page.locator("#breakdown ~ svg rect").count()
    sizes = page.eval_on_selector_all("svg.plot", "ss => ss.map(s => s.getBoundingClientRect().height)")
    sections = page.eval_on_selector_all("h2[id]", "hs => hs.map(h => h.id)")
    colours = png_colours(page, screenshot(page, "report.png", full_page=True))
    assert n_plots >= 6 and bars > 10 and all(h > 20 for h in sizes)
    assert set(SECTIONS) <= set(sections)
    assert errors == []
    assert colours > 8, "the screenshot is blank"


@pytest.mark.model
@pytest.mark.browser_context_args(viewport={"width": 840, "height": 900})
def test_compare_html_shows_ratios_with_significance(session, page, tmp_path):
    _, out, _ = session
    html = tmp_path / "cmp.html"
    r = cli("compare", str(out), str(out), "--html", str(html))
    assert r.returncode == 0, r.stderr
    text = html.read_text()
    assert 'id="ratios"' in text and "p (Holm)" in text and "ttft_ms" in text and "baseline p50" in text
    errors = console_errors(page)
    page.goto(html.as_uri())
    rows = page.locator("#table ~ table tbody tr").count()
    colours = png_colours(page, screenshot(page, "compare.png"))
    assert errors == []
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
def _svg_text(p: Path) -> str:
    return p.read_text().replace("&#160;", " ")


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.mark.model
@pytest.mark.browser_context_args(viewport={"width": 1400, "height": 900})
def test_the_served_dashboard_runs_in_chromium_and_takes_keys(page, tmp_path, model_path):
    (tmp_path / "c.toml").write_text(SESSION_TOML.replace("iterations = 3", "iterations = 2"))
    port = free_port()
    srv = subprocess.Popen([sys.executable, "-m", "ttftui", "serve", "--port", str(port), "--config",
                            str(tmp_path / "c.toml")], cwd=tmp_path, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        line = srv.stderr.readline()  # type: ignore[union-attr]
        assert f"serving the dashboard at http://127.0.0.1:{port}/?token=" in line and "one viewer at a time" in line
        url = re.search(r"at (\S+)", line).group(1)  # type: ignore[union-attr]
        page.goto(url)
        page.wait_for_function("document.body.classList.contains('-first-byte')", timeout=60_000)
        page.locator(".xterm-helper-textarea").focus()

        def shot() -> Path:
            """The dashboard's screenshot key, typed into the page: the SVG the app saves for it."""
            before = set(tmp_path.glob("*.svg"))
            page.keyboard.type("s")
            new = wait_until(lambda: set(tmp_path.glob("*.svg")) - before, 60,
                             what="the screenshot of the key typed in the browser (it did not reach the app)")
            return new.pop()

        # once the model is loaded and a run has ended, the screen says REAL and has its percentiles
        def loaded() -> Path | None:
            svg = shot()
            return svg if "REAL" in _svg_text(svg) and "Percentiles" in _svg_text(svg) else None

        svg = wait_until(loaded, 300, what="a screenshot of the loaded session", interval=0.5)
        svgs = [svg]
        colours = png_colours(page, screenshot(page, "serve.png"))
        # a second viewer (with the token) starts nothing: it is told the session is open elsewhere
        second = _get(url)
        screen = _svg_text(svgs[0])
        assert "TTFT breakdown" in screen and "Percentiles" in screen and "REAL" in screen
        assert colours > 8
        assert second[0] == 409 and "already open in another browser tab" in second[1]
        (ARTIFACTS / "serve-dashboard.svg").write_bytes(svgs[0].read_bytes())
    finally:
        page.close()  # the viewer leaves first: the server ends its session, then stops
        srv.terminate()
        srv.wait(20)


def _served(args: list[str], cwd: Path) -> tuple[subprocess.Popen, str]:
    srv = subprocess.Popen([sys.executable, "-m", "ttftui", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    line = srv.stderr.readline()  # type: ignore[union-attr]
    m = re.search(r"serving the dashboard at (\S+)", line)
    assert m, line
    return srv, m.group(1)


@pytest.mark.browser_context_args(viewport={"width": 1000, "height": 700})
def test_the_served_page_keeps_its_token_as_a_cookie_and_out_of_the_address_bar(page, tmp_path):
    """The URL ``serve`` prints opens the dashboard; the page's websocket and files get the token
    from the cookie, the address bar loses it, a reload (the page's "Start another") still works,
    and another site's page gets nothing."""
    rec = tmp_path / "s.ttftrec"
    r = cli("--headless", "--synthetic", "--iterations", "1", "--warmup", "0", "--scenario", "short", "-q",
            "--record", str(rec), "-o", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    port = free_port()
    srv, url = _served(["replay", str(rec), "--serve", "--speed", "max", "--port", str(port)], tmp_path)
    (tmp_path / "index.html").write_text("<!DOCTYPE html><title>another local site</title>")
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(tmp_path)))
    evil_port = evil.server_address[1]
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        assert "?token=" in url
        errors = console_errors(page)
        page.goto(url)
        page.wait_for_function("document.body.classList.contains('-first-byte')", timeout=60_000)
        assert page.url == f"http://127.0.0.1:{port}/"  # no token in the address bar, nor in the history
        cookie = next(c for c in page.context.cookies() if c["name"] == f"ttftui-token-{port}")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert page.evaluate("document.cookie") == ""  # the page's scripts cannot read it
        page.reload()
        page.wait_for_function("document.body.classList.contains('-first-byte')", timeout=60_000)
        assert not errors, errors
        # the same browser on another web server's page on this machine (127.0.0.1, another port):
        # the same *site*, so the browser sends it the SameSite cookie; its Origin is refused
        other = page.context.new_page()
        other.goto(f"http://127.0.0.1:{evil_port}/")
        opened = other.evaluate(f"""() => new Promise(done => {{
            const ws = new WebSocket("ws://127.0.0.1:{port}/ws?width=80&height=24");
            ws.onopen = () => done("open"); ws.onerror = () => done("refused"); }})""")
        assert opened == "refused"
        other.goto(f"http://localhost:{port}/")  # another name for it: no cookie there, no token
        assert "no token" in other.content()
        other.close()
    finally:
        page.close()
        srv.terminate()
        srv.wait(20)
        evil.shutdown()
    said = srv.stderr.read()  # type: ignore[union-attr]
    assert f"refused GET /ws from 127.0.0.1: Origin http://127.0.0.1:{evil_port} is another site" in said, said


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
    assert "anyone who can reach this port and has the URL's token can drive the session" in check_host("0.0.0.0")
    assert serve_command(["--config", "a b.toml"]).endswith("-m ttftui --config 'a b.toml'")


# ---------------------------------------------------------------------- reports read leniently
@pytest.fixture(scope="module")
def plain_report(tmp_path_factory) -> Path:
    """A real report with telemetry series, sweeps of nothing, every section the page draws."""
    p = tmp_path_factory.mktemp("lenient") / "r.json"
    r = cli("--headless", "-q", "--synthetic", "--iterations", "3", "--warmup", "1", "-o", str(p))
    assert r.returncode == 0, r.stderr
    return p


def _every_number(node: Any, value: Any, ints: bool = False) -> Any:
    """Every float (and with ``ints`` every int) in the report but its config and kind set to ``value``."""
    if isinstance(node, dict):
        return {k: v if k in ("config", "schema_version", "run_id") else _every_number(v, value, ints)
                for k, v in node.items()}
    if isinstance(node, list):
        return [_every_number(v, value, ints) for v in node]
    if isinstance(node, float) or (ints and isinstance(node, int) and not isinstance(node, bool)):
        return value
    return node


def _page_is_sound(path: Path) -> str:
    text = path.read_bytes().decode("utf-8")  # strict: a lone surrogate would not have been written
    attrs = re.findall(r' (?:x|y|x1|x2|y1|y2|width|height)="([^"]*)"', text)
    assert attrs and all(float(a) == float(a) and abs(float(a)) <= 1e6 for a in attrs), \
        [a for a in attrs if not abs(float(a)) <= 1e6][:5]
    for path_d in re.findall(r'<path d="([^"]*)"', text):
        assert "inf" not in path_d and "nan" not in path_d
    return text


@pytest.mark.parametrize("value, ints", [(1e308, False), (-1e308, False), (5e-324, False), (1e308, True)])
def test_report_html_draws_absurd_numbers_without_overflow(plain_report, tmp_path, value, ints):
    """1e308 everywhere (a sum of two is inf, a span from -1e308 to 1e308 overflows), or the smallest
    float (a span whose tick step underflows to 0): the page is written, its absurd numbers shown as
    "–" and said so, every coordinate finite."""
    doc = _every_number(json.loads(plain_report.read_text()), value, ints)
    src, out = tmp_path / "absurd.json", tmp_path / "o.html"
    src.write_text(json.dumps(doc))
    r = cli("report", str(src), "--html", str(out), "-q")
    if r.returncode == 14:  # a value its schema bounds (a count of 1e308): refused with one line
        assert r.stderr.startswith("ttftui: ") and r.stderr.count("\n") == 1, r.stderr
        return
    assert r.returncode == 0 and r.stderr == "", r.stderr
    text = _page_is_sound(out)
    if abs(value) > 1e19:
        assert "larger than any measurement" in text


def test_report_html_of_text_utf8_cannot_hold(plain_report, tmp_path):
    doc = json.loads(plain_report.read_text())
    doc["notices"].append({"t_ms": 1.0, "level": "info", "message": "lone \ud800 surrogate"})
    doc["session"]["started_at"] = "\udfff"
    src, out = tmp_path / "sur.json", tmp_path / "o.html"
    src.write_text(json.dumps(doc))  # ASCII JSON with \ud800 escapes, as a report from elsewhere may be
    r = cli("report", str(src), "--html", str(out), "-q")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "lone \ufffd surrogate" in _page_is_sound(out)
    r = cli("compare", str(src), str(plain_report), "--html", str(tmp_path / "c.html"))
    assert r.returncode == 0, r.stderr
    (tmp_path / "c.html").read_bytes().decode("utf-8")


@pytest.mark.parametrize("edit", [
    lambda d: d.update(summary="fast"),
    lambda d: d.update(runs={"a": 1}),
    lambda d: d["runs"][0].update(ttft_ms="fast"),
    lambda d: d["runs"][0].update(itl_ms=[1, "x"]),
    lambda d: d.update(notices=5),
    lambda d: d["telemetry"].update(series={"t_ms": "soon"}),
    lambda d: d.update(percentiles=["p50"]),
])
def test_report_html_of_fields_of_the_wrong_type_is_exit_14(plain_report, tmp_path, edit):
    doc = json.loads(plain_report.read_text())
    edit(doc)
    src, out = tmp_path / "wrong.json", tmp_path / "o.html"
    src.write_text(json.dumps(doc))
    r = cli("report", str(src), "--html", str(out), "-q")
    assert r.returncode == 14 and r.stderr.startswith("ttftui: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_tick_marks_survive_spans_their_numbers_cannot_resolve():
    from ttftui.report.html import nice_ticks

    assert nice_ticks(0.0, 10.0) == [0, 2, 4, 6, 8, 10]
    for lo, hi in ((5e-324, 5e-324), (0.0, 5e-324), (1e17, 1e17 + 64), (1e15, 1e15 + 0.5), (-1e18, 1e18),
                   (float("nan"), 1.0), (2.0, 1.0)):
        ticks = nice_ticks(lo, hi)  # returns at once: no endless loop where t + step == t
        assert len(ticks) <= 60 and all(t == t for t in ticks)
