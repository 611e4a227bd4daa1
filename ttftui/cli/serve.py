"""``ttftui serve``: the live dashboard in a web browser, through textual-serve.

textual-serve starts the command (here ``python -m ttftui ...``) once per browser connection and
relays its screen over a websocket to xterm.js in the page. For a live session that would mean one
engine per tab, each competing for the same CPU or GPU and measuring the others' load. So a live
session serves **one viewer at a time**: while a tab holds the session, another tab gets a page
that says so (HTTP 409) and starts nothing; when the first tab is closed, its session ends and the
next tab starts a new one. A replay has no engine: every tab gets its own replay.

It binds to 127.0.0.1 unless ``--host`` says otherwise; anyone who can reach the port can drive the
session (start runs, quit), so another address prints a warning. The page is ttftui's own (no
fonts or scripts from elsewhere: it works offline); the terminal emulator is textual-serve's.
"""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from ttftui.core.errors import ConfigError

LOOPBACK = ("127.0.0.1", "localhost", "::1")
BUSY_PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>ttftui: in use</title>
<style>body{font:16px system-ui,sans-serif;background:#0c181f;color:#e6edf3;display:flex;align-items:center;
justify-content:center;height:100vh;margin:0;text-align:center}</style></head><body><div>
<h1>ttftui is already open in another browser tab</h1>
<p>A live session serves one viewer at a time: a second one would start a second engine, and the two
would measure each other's load.</p><p>Close the other tab (its session ends), then reload this one, or run
another <code>ttftui serve --port N</code>.</p></div></body></html>
"""


def serve_command(args: Sequence[str]) -> str:
    """The shell command textual-serve runs for each viewer: this Python, ``-m ttftui`` and the args."""
    return " ".join(shlex.quote(a) for a in (sys.executable, "-m", "ttftui", *args))


def make_server(command: str, *, host: str, port: int, title: str, one_viewer: bool) -> Any:
    try:
        from aiohttp import web  # the serve extra: only for `ttftui serve`
        from textual_serve.server import Server  # the serve extra
    except ImportError:
        raise ConfigError("ttftui serve needs textual-serve: pip install 'ttftui[serve]'") from None

    class TtftuiServer(Server):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__(command, host=host, port=port, title=title,
                             templates_path=Path(__file__).parent / "serve_page")
            self.viewers = 0

        def initialize_logging(self) -> None:  # warnings only, on stderr

            logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="ttftui serve: %(message)s")

        async def on_startup(self, app: Any) -> None:  # one line, not textual-serve's banner
            who = "one viewer at a time" if one_viewer else "each viewer its own replay"
            print(f"ttftui: serving the dashboard at {self.public_url} ({who}; Ctrl+C stops)", file=sys.stderr,
                  flush=True)

        async def handle_index(self, request: Any) -> Any:
            if one_viewer and self.viewers:
                return web.Response(text=BUSY_PAGE, content_type="text/html", status=409)
            return await super().handle_index(request)

        async def handle_websocket(self, request: Any) -> Any:
            if one_viewer and self.viewers:
                return web.Response(text="ttftui is already open in another tab", status=409)
            self.viewers += 1
            try:
                return await super().handle_websocket(request)
            finally:
                self.viewers -= 1

    return TtftuiServer()


def check_host(host: str) -> str | None:
    """A warning for an address other than loopback, else None."""
    if host in LOOPBACK:
        return None
    return (f"warning: serving on {host}: anyone who can reach this port can drive the session (start runs, "
            "quit); there is no authentication. Bind to a private network only.")


def run_server(args: Sequence[str], *, host: str, port: int, one_viewer: bool, title: str) -> int:
    server = make_server(serve_command(args), host=host, port=port, title=title, one_viewer=one_viewer)
    try:
        server.serve()
    except OSError as e:
        raise ConfigError(f"cannot serve on {host}:{port}: {e.strerror or e}") from None
    return 0
