"""``ttftui serve`` and ``replay --serve``: who may use the served dashboard (issue 25, item 1).

A real server in its own process on a real port, spoken to with raw HTTP over a socket (so that the
``Host``, ``Origin`` and ``Sec-Fetch-Site`` headers are exactly what a browser, or an attacker's page
in it, would send) and with aiohttp's websocket client for a whole session. The rules themselves
(:class:`ttftui.cli.serve.Access`) are also checked case by case without a server. The browser's
side of the token (cookie, address bar, reload) is in tests/test_html.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from ttftui.cli.serve import Access, check_host, serve_access

from .conftest import cli, free_port, spawn, wait_until

pytest.importorskip("textual_serve")  # the serve extra


# ------------------------------------------------------------------------------ raw HTTP, by hand
WS_KEY = base64.b64encode(b"0123456789abcdef").decode()


def request(port: int, path: str = "/", headers: dict[str, str] | None = None, *, websocket: bool = False,
            read_after_upgrade: float = 0.0) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request written by hand; (status, headers in lower case, body). For a websocket
    handshake that succeeds (101), ``read_after_upgrade`` seconds of what the server sends next
    (the dashboard's output) are the body."""
    h = {"Host": f"127.0.0.1:{port}", "Connection": "close"}
    if websocket:
        h.update({"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                  "Sec-WebSocket-Key": WS_KEY})
    h.update(headers or {})
    h = {k: v for k, v in h.items() if v is not None}
    raw = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(raw.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs: dict[str, str] = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs.setdefault(k.strip().lower(), v.strip())
        if status == 101:
            if read_after_upgrade:
                s.settimeout(0.2)
                end = time.monotonic() + read_after_upgrade
                while time.monotonic() < end and len(body) < 4096:
                    try:
                        chunk = s.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    body += chunk
            return status, hdrs, body
        n = int(hdrs.get("content-length", "-1"))
        while n < 0 or len(body) < n:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, hdrs, body


class Served:
    """A ``ttftui`` serving process: its URL, its token, and what it says on stderr."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.proc = spawn(*args, "--port", str(self.port), cwd=cwd, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # type: ignore[union-attr]
        wait_until(lambda: self.serving() or self.proc.poll() is not None, 60, what="the serving line")
        assert self.serving(), (self.lines, self.proc.returncode)
        self.url = re.search(r"at (\S+)", self.serving()).group(1)  # type: ignore[union-attr]
        m = re.search(r"\?token=([\w-]+)", self.url)
        self.token = m.group(1) if m else None
        assert self._listens(), "the URL was printed before the port listened (a script that opens it is refused)"

    def serving(self) -> str:
        return next((ln for ln in self.lines if ln.startswith("ttftui: serving the dashboard at ")), "")

    def _read(self) -> None:
        for ln in self.proc.stderr:  # type: ignore[union-attr]
            self.lines.append(ln.rstrip("\n"))

    def _listens(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def refusals(self) -> list[str]:
        return [ln for ln in self.lines if ln.startswith("ttftui serve: refused")]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rec")
    r = cli("--headless", "--synthetic", "--iterations", "1", "--warmup", "0", "--scenario", "short", "-q",
            "--record", str(d / "s.ttftrec"), "-o", str(d / "r.json"))
    assert r.returncode == 0, r.stderr
    return d / "s.ttftrec"


@pytest.fixture(scope="module")
def replay(recording: Path) -> Iterator[Served]:
    s = Served("replay", str(recording), "--serve", "--speed", "max", cwd=recording.parent)
    yield s
    s.stop()


def _cookie(s: Served) -> dict[str, str]:
    return {"Cookie": f"ttftui-token-{s.port}={s.token}"}


ROUTES = ["/", "/ws", "/static/js/textual.js", "/static/css/xterm.css", "/download/abc", "/nothing-here"]


# --------------------------------------------------------------------------- the token
def test_the_printed_url_carries_a_token_and_the_page_needs_it(replay: Served) -> None:
    assert replay.url.startswith(f"http://127.0.0.1:{replay.port}/?token=")
    assert replay.token and len(replay.token) >= 32
    status, _, body = request(replay.port, "/")
    assert status == 403 and body.decode().count("\n") == 1 and "no token" in body.decode()
    status, _, body = request(replay.port, f"/?token={replay.token[:-1]}x")
    assert status == 403 and "wrong token" in body.decode()
    status, hdrs, body = request(replay.port, f"/?token={replay.token}")
    assert status == 200 and b"textual-terminal" in body
    # the page keeps it as a cookie its websocket and files send: HttpOnly, SameSite=Strict, per port
    cookie = hdrs["set-cookie"]
    assert cookie.startswith(f"ttftui-token-{replay.port}={replay.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert token_not_in(body, replay.token)
    assert hdrs["x-frame-options"] == "DENY" and hdrs["referrer-policy"] == "no-referrer"
    for headers in (_cookie(replay), {"Authorization": f"token {replay.token}"},
                    {"Authorization": f"Bearer {replay.token}"}):
        status, hdrs, _ = request(replay.port, "/", headers)
        assert status == 200 and "set-cookie" not in hdrs, headers
    assert request(replay.port, "/", {"Cookie": f"ttftui-token-{replay.port}=nope"})[0] == 403
    assert request(replay.port, "/", {"Cookie": f"ttftui-token-{replay.port + 1}={replay.token}"})[0] == 403
    # cookies another local site set (cookies ignore ports): a malformed one, or one of our name with
    # a wrong value sent first, does not lock the user out
    name = f"ttftui-token-{replay.port}"
    for tossed in (f'a="x; {name}={replay.token}', f"{name}=wrong; {name}={replay.token}"):
        assert request(replay.port, "/", {"Cookie": tossed})[0] == 200, tossed


def token_not_in(body: bytes, token: str) -> bool:
    return token.encode() not in body


@pytest.mark.parametrize("path", ROUTES)
def test_every_route_needs_the_token(replay: Served, path: str) -> None:
    ws = path == "/ws"
    origin = {"Origin": f"http://127.0.0.1:{replay.port}"} if ws else {}
    status, _, body = request(replay.port, path, origin, websocket=ws)
    assert status == 403 and b"no token" in body
    status, _, _ = request(replay.port, path, {**origin, **_cookie(replay)}, websocket=ws, read_after_upgrade=0.1)
    assert status == {"/": 200, "/ws": 101, "/download/abc": 404, "/nothing-here": 404}.get(path, 200)


def test_the_websocket_needs_the_token_and_then_gets_the_dashboard(replay: Served) -> None:
    own = {"Origin": f"http://127.0.0.1:{replay.port}"}
    for extra in ({}, {"Cookie": f"ttftui-token-{replay.port}=wrong"}, {"Authorization": "token wrong"}):
        status, _, body = request(replay.port, "/ws", {**own, **extra}, websocket=True)
        assert status == 403 and b"token" in body, extra
    status, _, body = request(replay.port, "/ws?token=wrong", own, websocket=True)
    assert status == 403
    # right: the handshake completes and the dashboard's screen comes down the websocket
    for extra, path in ((_cookie(replay), "/ws"), ({}, f"/ws?token={replay.token}")):
        status, hdrs, body = request(replay.port, path, {**own, **extra}, websocket=True, read_after_upgrade=30)
        assert status == 101 and hdrs["upgrade"].lower() == "websocket"
        assert len(body) > 100, body  # frames of the app's output
    # not a browser (no Origin): the token is what lets it in
    status, _, _ = request(replay.port, "/ws", _cookie(replay), websocket=True, read_after_upgrade=0.1)
    assert status == 101
    assert request(replay.port, "/ws", {}, websocket=True)[0] == 403


# ------------------------------------------------------------------ foreign Origin and Host
FOREIGN_ORIGINS = ["http://evil.example", "https://evil.example", "http://127.0.0.1:1", "http://localhost:3000",
                   "null", "file://", "http://127.0.0.1.evil.example:{port}", "http://localhost.:1"]


@pytest.mark.parametrize("origin", FOREIGN_ORIGINS)
def test_a_page_of_another_origin_cannot_open_the_websocket_even_with_the_token(replay: Served, origin: str) -> None:
    """Another site's page, or another port's of this machine (where the browser would send the
    SameSite cookie: same *site*), is refused before the handshake: no session starts."""
    o = origin.format(port=replay.port)
    before = len(replay.refusals())
    status, hdrs, body = request(replay.port, "/ws", {"Origin": o, **_cookie(replay)}, websocket=True)
    assert status == 403 and "upgrade" not in hdrs
    assert b"Origin" in body or b"origin" in body
    line = wait_until(lambda: [ln for ln in replay.refusals()[before:] if o in ln], 10, what="the refusal on stderr")
    assert len(line) == 1 and "GET /ws" in line[0] and replay.token not in line[0]  # type: ignore[operator]
    # and the page's other routes too (a fetch() from that page)
    assert request(replay.port, "/", {"Origin": o, **_cookie(replay)})[0] == 403


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io:{port}", "localhost.evil",
                                  "[::2]:{port}", "10.1.2.3:{port}", "", "a b", "127.0.0.1@evil.example"])
@pytest.mark.parametrize("path", ROUTES)
def test_a_foreign_host_is_refused_on_every_route(replay: Served, host: str, path: str) -> None:
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, so the browser sends Host:
    evil.example and Origin: http://evil.example (same origin to the browser). The Host is refused,
    token or not."""
    h = host.format(port=replay.port)
    ws = path == "/ws"
    origin = {"Origin": f"http://{h}"} if ws and h else {}
    status, hdrs, body = request(replay.port, f"{path}?token={replay.token}", {"Host": h or None, **origin,
                                                                             **_cookie(replay)}, websocket=ws)
    if h == "":  # no Host header at all (HTTP/1.1 requires one): refused too, or rejected by aiohttp itself
        assert status in (400, 403)
        return
    assert status in (400, 403) and "set-cookie" not in hdrs
    if status == 403:
        assert body.decode().startswith("ttftui serve: refused:")


def test_the_names_of_loopback_are_all_accepted(replay: Served) -> None:
    for host in (f"localhost:{replay.port}", f"127.0.0.1:{replay.port}", f"[::1]:{replay.port}", "LocalHost",
                 f"localhost.:{replay.port}"):
        status, _, _ = request(replay.port, "/", {"Host": host, **_cookie(replay)})
        assert status == 200, host
        # the page's own origin, as the browser reached it (a tunnel: another port), opens the websocket
        status, _, _ = request(replay.port, "/ws", {"Host": host, "Origin": f"http://{host}", **_cookie(replay)},
                               websocket=True, read_after_upgrade=0.1)
        assert status == 101, host


def test_a_request_another_site_started_is_refused_without_the_token_in_its_url(replay: Served) -> None:
    """Sec-Fetch-Site: a link or form on another site's page; a link with the token (the user's own,
    pasted into a web mail, say) still opens the dashboard."""
    for site in ("cross-site", "same-site"):
        status, _, body = request(replay.port, "/", {"Sec-Fetch-Site": site, **_cookie(replay)})
        assert status == 403 and site.encode() in body
        assert request(replay.port, f"/?token={replay.token}", {"Sec-Fetch-Site": site})[0] == 200
    for site in ("none", "same-origin"):
        assert request(replay.port, "/", {"Sec-Fetch-Site": site, **_cookie(replay)})[0] == 200


def test_a_whole_session_through_aiohttp_keys_reach_the_app(replay: Served) -> None:
    """A browser-like client: page, then websocket with the page's cookie and Origin; the app's
    screen comes down, a key goes up and reaches it (q quits: the session ends)."""
    import aiohttp

    async def session() -> tuple[int, bool]:
        # a jar that keeps cookies of an IP address, as a browser does
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            async with http.get(replay.url) as r:
                assert r.status == 200
            received = 0
            async with http.ws_connect(f"ws://127.0.0.1:{replay.port}/ws?width=100&height=30",
                                       origin=f"http://127.0.0.1:{replay.port}") as ws:
                async def drain(until: float) -> bool:
                    nonlocal received
                    while True:
                        msg = await asyncio.wait_for(ws.receive(), until)
                        if msg.type == aiohttp.WSMsgType.BINARY:
                            received += len(msg.data)
                            if received > 2000:
                                return True
                        elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                            return False

                assert await drain(60)
                await ws.send_str(json.dumps(["stdin", "q"]))
                while True:  # after q the app exits and the server closes the websocket
                    msg = await asyncio.wait_for(ws.receive(), 60)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        return received, True

    received, closed = asyncio.run(session())
    assert received > 2000 and closed
    # and the same client from another site's page gets nothing

    async def foreign() -> int:
        async with aiohttp.ClientSession() as http:
            try:
                async with http.ws_connect(f"ws://127.0.0.1:{replay.port}/ws?token={replay.token}",
                                           origin="http://evil.example"):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    assert asyncio.run(foreign()) == 403


# ------------------------------------------------------------------------- a live session
def test_the_live_session_serves_one_viewer_and_only_with_the_token(tmp_path: Path) -> None:
    s = Served("serve", "--synthetic", "--iterations", "1", "--warmup", "0", cwd=tmp_path)
    try:
        assert "one viewer at a time" in s.serving() and s.token
        own = {"Origin": f"http://127.0.0.1:{s.port}"}
        assert request(s.port, "/ws", {"Origin": "http://evil.example", **_cookie(s)}, websocket=True)[0] == 403
        assert request(s.port, "/ws", {"Host": "evil.example", "Origin": "http://evil.example"},
                       websocket=True)[0] == 403
        assert request(s.port, "/ws", own, websocket=True)[0] == 403
        assert request(s.port, "/", {"Host": f"evil.example:{s.port}"})[0] == 403
        # the refused ones started nothing: the first viewer with the token gets the session
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as held:
            key = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nOrigin: http://127.0.0.1:{p}\r\nCookie: ttftui-token-{p}={t}\r\n"
            held.sendall((key.format(p=s.port, t=s.token) + "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                          f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n").encode())
            assert held.recv(12) == b"HTTP/1.1 101"
            # while it is held, a second one (with the token) is told so; without the token, refused
            assert request(s.port, "/", _cookie(s))[0] == 409
            assert request(s.port, "/")[0] == 403
    finally:
        s.stop()


def test_stopping_the_server_ends_the_open_session_at_once(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl+C) with a tab open: its websocket is closed and its app (with the engine)
    quits now, not when aiohttp's shutdown grace period runs out (it used to take over 20 s), and
    nothing is left running."""
    import aiohttp
    import psutil

    s = Served("serve", "--synthetic", "--iterations", "50", "--warmup", "0", cwd=tmp_path)

    async def hold() -> tuple[float, list[Any]]:
        async with aiohttp.ClientSession() as http, http.ws_connect(
            f"ws://127.0.0.1:{s.port}/ws?token={s.token}", origin=f"http://127.0.0.1:{s.port}") as ws:
            got = 0
            while got < 2000:  # the dashboard is up
                msg = await asyncio.wait_for(ws.receive(), 60)
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                got += len(msg.data)
            children = psutil.Process(s.proc.pid).children(recursive=True)
            assert children  # the session's app (and its engine)
            t0 = time.monotonic()
            s.proc.terminate()
            while True:
                msg = await asyncio.wait_for(ws.receive(), 60)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    return time.monotonic() - t0, children

    try:
        took, children = asyncio.run(hold())
        assert s.proc.wait(60) == 0
    finally:
        s.stop()
    assert took < 15, took  # generous: under a second here; the grace period it no longer waits for is 60 s
    wait_until(lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children), 30,
               what="the session's processes to end")


def test_no_token_is_only_for_loopback_and_still_checks_origin_and_host(recording: Path) -> None:
    r = cli("serve", "--no-token", "--host", "0.0.0.0", "--port", str(free_port()), timeout=60)
    assert r.returncode == 2 and "--no-token needs a loopback address" in r.stderr
    s = Served("replay", str(recording), "--serve", "--no-token", cwd=recording.parent)
    try:
        assert s.token is None and "no token" in s.serving()
        assert request(s.port, "/")[0] == 200
        own = {"Origin": f"http://127.0.0.1:{s.port}"}
        assert request(s.port, "/ws", own, websocket=True, read_after_upgrade=0.1)[0] == 101
        assert request(s.port, "/ws", {}, websocket=True)[0] == 403  # no Origin needs the token
        assert request(s.port, "/ws", {"Origin": "http://evil.example"}, websocket=True)[0] == 403
        assert request(s.port, "/ws", {"Host": "evil.example", "Origin": "http://evil.example"},
                       websocket=True)[0] == 403
        assert request(s.port, "/", {"Sec-Fetch-Site": "cross-site"})[0] == 403  # window.open from a foreign page
    finally:
        s.stop()


def test_allow_host_adds_a_name_and_a_proxys_origin(recording: Path) -> None:
    s = Served("replay", str(recording), "--serve", "--allow-host", "dash.example", "--allow-host",
               "tunnel.example:8443", cwd=recording.parent)
    try:
        c = _cookie(s)
        assert request(s.port, "/", {"Host": "dash.example", **c})[0] == 200
        # a proxy that sends its own Host, with the page's Origin: its name, on its default port
        for origin, code in (("https://dash.example", 101), ("http://dash.example", 101),
                             ("https://dash.example:9999", 403), ("https://tunnel.example:8443", 101),
                             ("https://tunnel.example", 403), ("http://evil.example", 403)):
            got = request(s.port, "/ws", {"Origin": origin, **c}, websocket=True, read_after_upgrade=0.05)[0]
            assert got == code, origin
        assert request(s.port, "/", {"Host": "other.example", **c})[0] == 403
    finally:
        s.stop()


def test_a_wildcard_bind_needs_the_token_and_answers_to_addresses_and_its_names(recording: Path) -> None:
    s = Served("replay", str(recording), "--serve", "--host", "0.0.0.0", cwd=recording.parent)
    try:
        assert s.lines[0].startswith("ttftui: warning: serving on 0.0.0.0") and "no TLS" in s.lines[0]
        assert s.token and f":{s.port}/?token={s.token}" in s.url
        c = _cookie(s)
        assert request(s.port, "/")[0] == 403
        for host in (f"192.0.2.7:{s.port}", f"127.0.0.1:{s.port}", socket.gethostname()):
            assert request(s.port, "/", {"Host": host, **c})[0] == 200, host
        assert request(s.port, "/", {"Host": f"evil.example:{s.port}", **c})[0] == 403
    finally:
        s.stop()


def test_a_fixed_token_from_the_environment(recording: Path) -> None:
    s = Served("replay", str(recording), "--serve", cwd=recording.parent,
               env={"TTFTUI_SERVE_TOKEN": "a-fixed-secret-of-some-length"})
    try:
        assert s.token == "a-fixed-secret-of-some-length"
        assert request(s.port, "/?token=a-fixed-secret-of-some-length")[0] == 200
    finally:
        s.stop()
    r = cli("replay", str(recording), "--serve", "--port", str(free_port()), env={"TTFTUI_SERVE_TOKEN": "short"},
            timeout=60)
    assert r.returncode == 2 and "TTFTUI_SERVE_TOKEN is too short" in r.stderr


# ----------------------------------------------------------- run options, before listening
def _bad_options(tmp_path: Path) -> list[list[str]]:
    (tmp_path / "not.gguf").write_bytes(b"not a model at all" * 10)
    (tmp_path / "exists.ttftrec").write_text("x")
    (tmp_path / "bad.toml").write_text("[run]\niterations = 0\n")
    (tmp_path / "tight.toml").write_text("[model]\nn_ctx = 64\n[[scenarios]]\nname = \"big\"\nprompt_tokens = 500\n"
                                         "max_tokens = 8\n")
    return [["--scenario", "nope"], ["--model", "/nonexistent/m.gguf"], ["--model", str(tmp_path / "not.gguf")],
            ["--config", str(tmp_path / "bad.toml")], ["--config", str(tmp_path / "missing.toml")],
            ["--config", str(tmp_path / "tight.toml")], ["--set", "model.nope=1"],
            ["--concurrency", "2", "--rate", "1"], ["--synthetic", "--concurrency", "2"],
            ["--record", str(tmp_path / "exists.ttftrec")], ["--record", str(tmp_path / "no-folder" / "r.ttftrec")],
            ["--baseline", str(tmp_path / "missing.json")], ["--iterations", "0"],
            ["--url", "ftp://x"], ["--url", "http://127.0.0.1:1/v1", "--set", "server.api_key_env=TTFTUI_NO_SUCH_VAR"]]


def test_serve_checks_the_run_options_as_headless_does_before_it_listens(tmp_path: Path) -> None:
    """Each of these exits at once with the code and message headless gives, and never listens
    (before, the server started and each browser tab got an empty page)."""
    for opts in _bad_options(tmp_path):
        port = free_port()
        headless = cli("--headless", "-o", str(tmp_path / "out.json"), *opts, cwd=tmp_path, timeout=120)
        served = cli("serve", "--port", str(port), *opts, cwd=tmp_path, timeout=120)
        assert headless.returncode not in (0, 70), (opts, headless.stderr)
        assert served.returncode == headless.returncode, (opts, served.stderr, headless.stderr)
        assert served.stderr.strip().splitlines()[-1] == headless.stderr.strip().splitlines()[-1], opts
        assert "serving the dashboard" not in served.stderr and "Traceback" not in served.stderr
    assert not (tmp_path / "out.json").exists()


def test_serve_refuses_what_only_headless_does(tmp_path: Path) -> None:
    for opts, what in ((["--headless"], "--headless and -o do not apply"), (["-o", "x.json"], "do not apply"),
                       (["--fail-on", "warning"], "--fail-on needs --headless"),
                       (["--allow-host", "http://x/"], "expected NAME or NAME:PORT")):
        r = cli("serve", "--port", str(free_port()), *opts, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and what in r.stderr, (opts, r.stderr)


def test_replay_serve_checks_its_baseline_before_it_listens(recording: Path, tmp_path: Path) -> None:
    r = cli("replay", str(recording), "--serve", "--port", str(free_port()), "--baseline",
            str(tmp_path / "missing.json"), timeout=120)
    assert r.returncode == 14 and "serving" not in r.stderr


def test_a_port_in_use_is_one_line(tmp_path: Path, recording: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = cli("replay", str(recording), "--serve", "--port", str(busy.getsockname()[1]), timeout=120)
    assert r.returncode == 2 and "cannot serve on 127.0.0.1" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------ the rules, one by one
def _access(host: str = "127.0.0.1", **kw: Any) -> Access:
    return serve_access(host, 8000, **kw)


def test_the_rules_for_a_loopback_bind() -> None:
    a = _access()
    t = a.token
    assert t and _access().token != t  # a new secret each run
    ok: dict[str, Any] = {"host": "127.0.0.1:8000", "origin": None, "websocket": False, "token": t}
    assert a.refusal(**ok) is None
    assert a.refusal(**{**ok, "host": "localhost:8000", "origin": "http://localhost:8000"}) is None
    assert a.refusal(**{**ok, "host": "[::1]:8000", "origin": "http://[::1]:8000", "websocket": True}) is None
    assert a.refusal(**{**ok, "host": "localhost:9000", "origin": "http://localhost:9000"}) is None  # ssh -L 9000
    assert "Host" in a.refusal(**{**ok, "host": "evil.example:8000"})
    assert "Host" in a.refusal(**{**ok, "host": "192.168.1.2:8000"})
    assert "Host" in a.refusal(**{**ok, "host": None})
    for origin in ("http://evil.example", "http://localhost:8001", "http://127.0.0.1", "https://127.0.0.1",
                   "null", "chrome-extension://abc", "http://127.0.0.1:8000.evil.example", "http://[::1]:8000"):
        assert a.refusal(**{**ok, "origin": origin, "websocket": True}) is not None, origin
    # the scheme is not the server's to know (a TLS proxy in front): the browser's host and port are
    assert a.refusal(**{**ok, "origin": "https://127.0.0.1:8000", "host": "127.0.0.1:8000"}) is None
    assert a.refusal(**{**ok, "token": None}).startswith("no token")
    assert a.refusal(**{**ok, "token": t + "x"}).startswith("wrong token")
    assert a.refusal(**{**ok, "token": "é" * 3}).startswith("wrong token")
    assert a.refusal(**{**ok, "fetch_site": "cross-site"}) is not None
    assert a.refusal(**{**ok, "fetch_site": "cross-site", "token_in_url": True}) is None
    assert a.refusal(**{**ok, "fetch_site": "same-origin"}) is None
    # without a token: no token needed, but a websocket must then come from this server's page
    n = _access(token=False)
    assert n.token is None and n.refusal(**{**ok, "token": None}) is None
    assert "Origin" in n.refusal(**{**ok, "token": None, "websocket": True})
    assert n.refusal(**{**ok, "token": None, "websocket": True, "origin": "http://127.0.0.1:8000"}) is None
    assert n.refusal(**{**ok, "token": None, "fetch_site": "cross-site", "token_in_url": True}) is not None


def test_the_rules_for_other_binds() -> None:
    a = _access("192.168.1.5")
    t = a.token
    assert a.refusal(host="192.168.1.5:8000", origin="http://192.168.1.5:8000", websocket=True, token=t) is None
    assert a.refusal(host="127.0.0.1:8000", origin=None, websocket=False, token=t) is not None  # not bound there
    assert a.refusal(host="192.168.1.5:8000", origin=None, websocket=False, token=None) is not None
    w = _access("0.0.0.0")
    assert w.refusal(host="203.0.113.9:8000", origin="http://203.0.113.9:8000", websocket=True, token=w.token) is None
    assert w.refusal(host="[2001:db8::1]:8000", origin=None, websocket=False, token=w.token) is None
    assert w.refusal(host="localhost:8000", origin=None, websocket=False, token=w.token) is None
    assert w.refusal(host="evil.example:8000", origin=None, websocket=False, token=w.token) is not None
    v6 = _access("::1")
    assert v6.refusal(host="[::1]:8000", origin="http://[::1]:8000", websocket=True, token=v6.token) is None
    assert v6.urls() == [f"http://[::1]:8000/?token={v6.token}"]
    with pytest.raises(Exception, match="loopback"):
        _access("0.0.0.0", token=False)
    with pytest.raises(Exception, match="NAME or NAME:PORT"):
        _access(allow_hosts=["https://x.example/"])
    p = _access(allow_hosts=["Dash.Example", "2001:db8::2", "t.example:8443"])
    assert p.refusal(host="dash.example", origin="https://dash.example", websocket=True, token=p.token) is None
    assert p.refusal(host="127.0.0.1:8000", origin="https://t.example:8443", websocket=True, token=p.token) is None
    assert p.refusal(host="[2001:db8::2]:8000", origin=None, websocket=False, token=p.token) is None


def test_the_warning_for_another_address() -> None:
    assert check_host("127.0.0.1") is None and check_host("localhost") is None and check_host("::1") is None
    w = check_host("0.0.0.0")
    assert w and "token" in w and "no TLS" in w


