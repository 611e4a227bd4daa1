"""``ttftui serve``: the live dashboard in a web browser, through textual-serve.

textual-serve starts the command (here ``python -m ttftui ...``) once per browser connection and
relays its screen over a websocket to xterm.js in the page. For a live session that would mean one
engine per tab, each competing for the same CPU or GPU and measuring the others' load. So a live
session serves **one viewer at a time**: while a tab holds the session, another tab gets a page
that says so (HTTP 409) and starts nothing; when the first tab is closed, its session ends and the
next tab starts a new one. A replay has no engine: every tab gets its own replay.

**Who may connect** (docs/serve.md has the threat model). Whoever opens the websocket drives the
session, and binding to 127.0.0.1 keeps out other machines but not other web pages in the user's own
browser. So every request, on every route (the page, the websocket, the static files, downloads,
unknown paths), passes :class:`Access` first:

- its ``Host`` must be one of the names this server answers to (the bound address; for a loopback
  bind also localhost, 127.0.0.1 and ::1; ``--allow-host NAME``): a page on another name that
  resolves here (DNS rebinding) is refused;
- an ``Origin``, when the request has one, must be this server as the browser sees it (the
  ``Host`` it sent) or an ``--allow-host`` name: a page on another site, or another port of
  localhost, cannot open the websocket; a websocket without an ``Origin`` (not a browser) needs the
  token;
- a per-run secret, printed in the URL on start (``?token=``, compared in constant time), unless
  ``--no-token`` (loopback binds only). The page keeps it as a cookie (HttpOnly, SameSite=Strict,
  named after the port) for its websocket, static files and reloads, and takes it out of the
  address bar. Clients that are not browsers may send ``Authorization: token SECRET``.

A refusal is HTTP 403 with a one-line reason, and one line on stderr. The page is ttftui's own (no
fonts or scripts from elsewhere: it works offline); the terminal emulator is textual-serve's.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import urlsplit

from ttftui.core.errors import ConfigError, OutputNotWritable
from ttftui.core.output import check_writable

LOOPBACK = ("127.0.0.1", "localhost", "::1")
WILDCARD = ("0.0.0.0", "::", "")
log = logging.getLogger("ttftui.serve")

BUSY_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ttftui: in use</title>
<style>body{font:16px system-ui,sans-serif;background:#0c181f;color:#e6edf3;display:flex;align-items:center;
justify-content:center;height:100vh;margin:0;text-align:center}</style></head><body><div>
<h1>ttftui is already open in another browser tab</h1>
<p>A live session serves one viewer at a time: a second one would start a second engine, and the two
would measure each other's load.</p><p>Close the other tab (its session ends), then reload this one, or run
another <code>ttftui serve --port N</code>.</p></div></body></html>
"""
# Every answer: no framing by other sites (the page takes keys), no Referer with the URL's token.
SAFETY_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                  "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"}


def serve_command(args: Sequence[str]) -> str:
    """The shell command textual-serve runs for each viewer: this Python, ``-m ttftui`` and the args."""
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "ttftui", *args))


# --------------------------------------------------------------------------------- who may connect
def _name(host: str) -> str:
    """A host name as compared: lower case, no brackets around IPv6, no trailing dot."""
    return host.strip().strip("[]").rstrip(".").lower()


def _ip(name: str) -> Any:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def is_loopback(host: str) -> bool:
    n = _name(host)
    ip = _ip(n)
    return n == "localhost" or (ip is not None and ip.is_loopback)


def _split_hostport(text: str) -> tuple[str, int | None] | None:
    """``name[:port]`` (a Host header; IPv6 in brackets) as (name, port), or None when malformed."""
    if not text or any(c in text for c in "/?#@ \t\\"):
        return None
    try:
        u = urlsplit("//" + text)
        port = u.port
    except ValueError:
        return None
    if not u.hostname:
        return None
    return _name(u.hostname), port


def _url_host(name: str) -> str:
    return f"[{name}]" if ":" in name else name


@dataclass(frozen=True)
class Access:
    """Which requests the server answers: by their Host, their Origin and the session's token."""

    host: str  # the address bound to
    port: int
    names: frozenset[str]  # Host names answered to
    extra: frozenset[tuple[str, int | None]]  # --allow-host NAME[:PORT]: also a page's Origin (a proxy's name)
    any_ip: bool  # a wildcard bind answers to an IP address literal as Host (no DNS, so no rebinding)
    token: str | None

    @property
    def cookie(self) -> str:
        # cookies are per host, not per port: two servers on one machine must not overwrite each other's
        return f"ttftui-token-{self.port}"

    def urls(self) -> list[str]:
        """The URLs to print: the bound address (for a wildcard bind, this machine's name and loopback)."""
        hosts = [socket.gethostname(), "127.0.0.1"] if _name(self.host) in WILDCARD else [_name(self.host)]
        query = f"/?token={self.token}" if self.token else "/"
        return [f"http://{_url_host(h)}:{self.port}{query}" for h in hosts]

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(presented.encode("utf-8", "replace"), self.token.encode())

    def refusal(self, *, host: str | None, origin: str | None, websocket: bool, token: str | None,
                fetch_site: str | None = None, token_in_url: bool = False) -> str | None:
        """Why a request is refused (one line), or None when it is let in. ``fetch_site`` is the
        browser's Sec-Fetch-Site: a request another site's page started (a link, a form, a window it
        opened) is refused unless it carries the token in its URL (a link the user was given)."""
        if not host:
            return "the request has no Host header"
        hp = _split_hostport(host)
        if hp is None:
            return f"malformed Host header {host[:100]!r}"
        name = hp[0]
        if not (name in self.names or name in {n for n, _ in self.extra} or (self.any_ip and _ip(name) is not None)):
            return (f"Host {host[:100]!r} is not a name of this server (another site's page, e.g. by DNS "
                    "rebinding); serve --allow-host NAME adds a name")
        if origin is not None:
            why = self._origin_refusal(origin, host)
            if why is not None:
                return why
        elif websocket and self.token is None:
            return "a websocket without an Origin header (not a browser) needs the token; serve was started with --no-token"
        if fetch_site in ("cross-site", "same-site") and not (token_in_url and self.token is not None):
            return f"a request started by another site's page (Sec-Fetch-Site: {fetch_site})"
        if not self.token_ok(token):
            return ("wrong token" if token else "no token") + ": open the URL that ttftui serve printed (it ends in ?token=...)"
        return None

    def _origin_refusal(self, origin: str, host: str) -> str | None:
        o = origin.strip()
        try:
            u = urlsplit(o)
            port = u.port
        except ValueError:
            return f"malformed Origin {o[:100]!r}"
        if u.scheme not in ("http", "https") or not u.hostname:
            return f"a page with no usable origin (Origin: {o[:100]}) may not use this server"
        name = _name(u.hostname)
        default = 80 if u.scheme == "http" else 443
        if (name, port or default) in self.extra or (port in (None, default) and (name, None) in self.extra):
            return None
        netloc = _url_host(name) + ("" if port in (None, default) else f":{port}")
        hp = _split_hostport(host)
        seen = None if hp is None else _url_host(hp[0]) + ("" if hp[1] in (None, default) else f":{hp[1]}")
        if netloc != seen:
            return (f"Origin {o[:100]} is another site than this server ({host[:100]}): "
                    "its pages may not use the dashboard")
        return None


def serve_access(host: str, port: int, *, allow_hosts: Sequence[str] = (), token: bool = True) -> Access:
    """The access rules for a bind, checked now (exit 2): ``--no-token`` only on loopback."""
    extra = set()
    for a in allow_hosts:
        hp = (_name(a), None) if _ip(_name(a)) is not None else _split_hostport(a.strip())
        if hp is None or not hp[0]:
            raise ConfigError(f"--allow-host {a!r}: expected NAME or NAME:PORT (a host name or address; no scheme "
                              "or path)")
        extra.add(hp)
    bound = _name(host)
    if not token and not is_loopback(host):
        raise ConfigError(f"--no-token needs a loopback address (127.0.0.1, localhost, ::1): on {host or '*'} "
                          "anyone who can reach the port would drive the session")
    names = {bound} - {""}
    if is_loopback(host) or bound in WILDCARD:
        names |= set(LOOPBACK)
    if bound in WILDCARD:
        names |= {_name(socket.gethostname()), _name(socket.getfqdn())}
    env_token = os.environ.get("TTFTUI_SERVE_TOKEN", "").strip()
    if env_token and len(env_token) < 16:
        raise ConfigError("TTFTUI_SERVE_TOKEN is too short: use 16 characters or more (or leave it unset for a "
                          "random one)")
    secret = (env_token or secrets.token_urlsafe(24)) if token else None
    return Access(host=host, port=port, names=frozenset(names), extra=frozenset(extra),
                  any_ip=bound in WILDCARD, token=secret)


def check_host(host: str) -> str | None:
    """A warning for an address other than loopback, else None."""
    if is_loopback(host):
        return None
    return (f"warning: serving on {host or '*'}: anyone who can reach this port and has the URL's token can drive "
            "the session (start runs, quit), and nothing is encrypted (no TLS): bind to a private network, or "
            "tunnel it (ssh -L)")


def check_new_recording(path: str) -> None:
    """What the recorder of each session would refuse, found before serving: it never overwrites."""
    p = Path(path).expanduser()
    if p.exists():
        raise OutputNotWritable(f"recording {p} already exists (ttftui never overwrites a recording)")
    check_writable(p, "recording")


def _presented_token(request: Any, access: Access) -> tuple[str | None, bool]:
    """(token the request carries, whether it came in the URL): ?token=, the cookie, or Authorization."""
    q = request.query.get("token")
    if q:
        return q, True
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip(), False
    # Cookies read one by one, not with SimpleCookie, which gives up at the first malformed one: a
    # page on another port of this host can set cookies here (cookies ignore ports), and one bad
    # cookie, or one of our name with a wrong value sent first, would lock the user out.
    found = [value.strip().strip('"') for part in request.headers.get("Cookie", "").split(";")
             for name, eq, value in [part.strip().partition("=")] if eq and name == access.cookie]
    for value in found:
        if access.token is not None and hmac.compare_digest(value.encode(), access.token.encode()):
            return value, False
    return (found[0] if found else None), False


# --------------------------------------------------------------------------------------- the server
def make_server(command: str, *, access: Access, title: str, one_viewer: bool) -> Any:
    try:
        import aiohttp_jinja2
        from aiohttp import web  # the serve extra: only for `ttftui serve`
        from textual_serve.server import Server  # the serve extra
    except ImportError:
        raise ConfigError("ttftui serve needs textual-serve: pip install 'ttftui[serve]'") from None

    @web.middleware
    async def guard(request: Any, handler: Any) -> Any:
        """Every route passes here first: the page, /ws, /static, /download, and what is not found."""
        token, in_url = _presented_token(request, access)
        websocket = request.headers.get("Upgrade", "").lower() == "websocket"
        why = access.refusal(host=request.headers.get("Host"), origin=request.headers.get("Origin"),
                             websocket=websocket, token=token, fetch_site=request.headers.get("Sec-Fetch-Site"),
                             token_in_url=in_url)
        if why is not None:
            peer = request.remote or "?"
            log.warning("refused %s %s from %s: %s", request.method, request.path, peer, why)
            return web.Response(status=403, text=f"ttftui serve: refused: {why}\n", headers=SAFETY_HEADERS)
        response = await handler(request)
        if not response.prepared:  # a websocket, a download: already on their way
            response.headers.update(SAFETY_HEADERS)
            if in_url and access.token is not None:
                response.set_cookie(access.cookie, access.token, path="/", httponly=True, samesite="Strict")
        return response

    class TtftuiServer(Server):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(command, host=access.host, port=access.port, title=title,
                             public_url=access.urls()[0].split("/?")[0].rstrip("/"),
                             templates_path=Path(__file__).parent / "serve_page")
            self.viewers = 0
            self.sessions: set[Any] = set()

        def initialize_logging(self) -> None:  # warnings only, one line each, on stderr
            logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="ttftui serve: %(message)s")

        async def _make_app(self) -> Any:
            app = await super()._make_app()
            app.middlewares.append(guard)
            return app

        async def on_startup(self, app: Any) -> None:  # not textual-serve's banner: ours comes in serve()
            pass

        def serve(self, debug: bool = False) -> None:
            """textual-serve's, with the URL printed once the port listens (from aiohttp's own hook):
            printed at startup, before the listen, a script or test that opened it at once was refused."""
            self.debug = debug
            self.initialize_logging()
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.request_exit)
            web.run_app(self._make_app(), host=access.host, port=access.port, handle_signals=False, loop=loop,
                        print=lambda *_: self._announce())

        def _announce(self) -> None:
            who = "one viewer at a time" if one_viewer else "each viewer its own replay"
            urls = access.urls()
            also = f", or {' '.join(urls[1:])}" if len(urls) > 1 else ""
            secret = "" if access.token else "; no token: any local user may connect"
            print(f"ttftui: serving the dashboard at {urls[0]}{also} ({who}{secret}; Ctrl+C stops)", file=sys.stderr,
                  flush=True)

        async def handle_index(self, request: Any) -> Any:
            if one_viewer and self.viewers:
                return web.Response(text=BUSY_PAGE, content_type="text/html", status=409)
            # the websocket and static URLs are the page's own origin, as the browser reached it (a
            # tunnel's port, a proxy's name), not the bound address; the page's script does the same
            context = {
                "font_size": max(6, min(64, _to_int(request.query.get("fontsize", "16"), 16))),
                "app_websocket_url": f"ws://{_page_host(request.headers.get('Host', ''))}/ws",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title},
            }
            response = aiohttp_jinja2.render_template("app_index.html", request, context)
            response.headers["Cache-Control"] = "no-store"
            return response

        async def handle_websocket(self, request: Any) -> Any:
            if one_viewer and self.viewers:
                return web.Response(text="ttftui is already open in another tab", status=409)
            self.viewers += 1
            task = asyncio.current_task()
            self.sessions.add(task)
            try:
                return await super().handle_websocket(request)
            finally:
                self.sessions.discard(task)
                self.viewers -= 1

        async def on_shutdown(self, app: Any) -> None:
            # Ctrl+C or SIGTERM with a tab open: end its session now (its websocket closes, the app
            # is told to quit and its engine stops), not when aiohttp's grace period runs out
            for task in list(self.sessions):
                task.cancel()
            if self.sessions:
                await asyncio.wait(list(self.sessions), timeout=30)

    return TtftuiServer()


def _page_host(host: str) -> str:
    """The Host the guard let in, rebuilt from its parts (no character of the header reaches the page)."""
    hp = _split_hostport(host)
    if hp is None:
        return "127.0.0.1"
    return _url_host(hp[0]) + ("" if hp[1] is None else f":{hp[1]}")


def _to_int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def run_server(args: Sequence[str], *, access: Access, one_viewer: bool, title: str) -> int:
    server = make_server(serve_command(args), access=access, title=title, one_viewer=one_viewer)
    try:
        server.serve()
    except OSError as e:
        raise ConfigError(f"cannot serve on {access.host}:{access.port}: {e.strerror or e}") from None
    return 0
