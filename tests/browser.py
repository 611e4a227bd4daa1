"""Headless Chromium for the tests, driven over the DevTools protocol (a websocket, aiohttp).

``chromium_path()`` finds Debian's ``chromium`` (or another Chrome), installing the package with
apt-get when it is missing and the tests run as root (part of the test set-up, so that CI's one
test command needs nothing else); without it the browser tests skip and say why. Screenshots go to
``tests/artifacts/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).parent / "artifacts"
_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_install_tried: list[str] = []


def chromium_path() -> tuple[str | None, str]:
    """(executable, why not): the browser, installed now if it can be."""
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


class Browser:
    """One headless Chromium with one page. ``console_errors`` collects console errors and uncaught
    exceptions of the page."""

    def __init__(self, exe: str, width: int = 1280, height: int = 900):
        self.exe, self.width, self.height = exe, width, height
        self.console_errors: list[str] = []
        self._id = 0
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._event = asyncio.Event()

    async def __aenter__(self) -> "Browser":
        import aiohttp

        self._profile = tempfile.mkdtemp(prefix="ttftui-chromium-")
        self.proc = await asyncio.create_subprocess_exec(
            self.exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            "--disable-dev-shm-usage", f"--window-size={self.width},{self.height}", "--remote-debugging-port=0",
            f"--user-data-dir={self._profile}", "about:blank",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        port = None
        while port is None:
            line = await asyncio.wait_for(self.proc.stderr.readline(), 60)
            if not line:
                raise RuntimeError("Chromium exited before it listened")
            m = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", line)
            if m:
                port = int(m.group(1))
        self._drain = asyncio.create_task(self._drain_stderr())
        self.http = aiohttp.ClientSession()
        async with self.http.get(f"http://127.0.0.1:{port}/json/list") as r:
            pages = [p for p in await r.json(content_type=None) if p.get("type") == "page"]
        self.ws = await self.http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self._reader = asyncio.create_task(self._read())
        for domain in ("Page", "Runtime", "Log"):
            await self.send(f"{domain}.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self._reader.cancel()
        await self.ws.close()
        await self.http.close()
        self.proc.kill()
        await self.proc.wait()
        self._drain.cancel()
        shutil.rmtree(self._profile, ignore_errors=True)

    async def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while await self.proc.stderr.readline():
            pass

    async def _read(self) -> None:
        async for msg in self.ws:
            doc = json.loads(msg.data)
            if "id" in doc and doc["id"] in self._waiters:
                self._waiters.pop(doc["id"]).set_result(doc)
                continue
            method = doc.get("method")
            p = doc.get("params") or {}
            if method == "Runtime.consoleAPICalled" and p.get("type") == "error":
                self.console_errors.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                self.console_errors.append(str(p.get("exceptionDetails", {}).get("text")))
            elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                self.console_errors.append(str(p["entry"].get("text")))
            self._events.append(doc)
            self._event.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[self._id] = fut
        await self.ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        doc = await asyncio.wait_for(fut, 60)
        if "error" in doc:
            raise RuntimeError(f"{method}: {doc['error']}")
        return doc.get("result", {})

    async def goto(self, url: str, timeout: float = 60) -> None:
        self._events.clear()
        await self.send("Page.navigate", url=url)
        await self.wait_event("Page.loadEventFired", timeout)

    async def wait_event(self, method: str, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            for ev in self._events:
                if ev.get("method") == method:
                    return ev
            self._event.clear()
            left = end - loop.time()
            if left <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            try:
                await asyncio.wait_for(self._event.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def eval(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"page script failed: {r['exceptionDetails'].get('text')}")
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 60, interval: float = 0.2) -> Any:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            v = await self.eval(expression)
            if v:
                return v
            if loop.time() > end:
                raise TimeoutError(f"{expression!r} stayed false for {timeout} s")
            await asyncio.sleep(interval)

    async def type_text(self, text: str) -> None:
        await self.send("Input.insertText", text=text)

    async def screenshot(self, name: str, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = await self.eval("Math.ceil(document.documentElement.scrollHeight)")
            params.update(clip={"x": 0, "y": 0, "width": self.width, "height": h, "scale": 1},
                          captureBeyondViewport=True)
        data = base64.b64decode((await self.send("Page.captureScreenshot", **params))["data"])
        ARTIFACTS.mkdir(exist_ok=True)
        out = ARTIFACTS / name
        out.write_bytes(data)
        return out


async def png_colours(browser: Browser, data: bytes, max_colours: int = 64) -> int:
    """How many distinct colours a PNG has (sampled, up to ``max_colours``): 1 means blank. The
    browser decodes it (an image drawn on a canvas), so no image library is needed here."""
    b64 = base64.b64encode(data).decode()
    return await browser.eval(f"""(async () => {{
        const img = new Image(); img.src = "data:image/png;base64,{b64}"; await img.decode();
        const c = document.createElement("canvas"); c.width = img.width; c.height = img.height;
        const g = c.getContext("2d"); g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, c.width, c.height).data, seen = new Set();
        for (let i = 0; i < d.length && seen.size < {max_colours}; i += 4 * 97) seen.add((d[i] << 16) | (d[i+1] << 8) | d[i+2]);
        return seen.size; }})()""")
