"""A small OpenAI-compatible server that misbehaves on purpose, for the remote mode's fault tests
(the real behaviour is tested against llama-cpp-python's own server). Loopback only, bounded."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _chunk(text: str) -> bytes:
    doc = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class FakeServer:
    """``mode``: ok | http500 | malformed | close_mid | stall_after_headers | slow_headers."""

    def __init__(self, mode: str = "ok", stall_s: float = 3.0):
        self.mode = mode
        self.stall_s = stall_s
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _json(self, status: int, doc: Any) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path.endswith("/models"):
                    self._json(200, {"object": "list", "data": [{"id": "fake-model"}]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(n)
                if not self.path.endswith("/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                mode = outer.mode
                if mode == "http500":
                    self._json(500, {"error": {"message": "model exploded"}})
                    return
                if mode == "slow_headers":
                    time.sleep(outer.stall_s)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                if mode == "stall_after_headers":
                    time.sleep(outer.stall_s)
                    return
                self.wfile.write(_chunk(" hello"))
                if mode == "malformed":
                    self.wfile.write(b"data: {not json\n\n")
                    return
                if mode == "close_mid":
                    self.wfile.flush()
                    return  # closes without [DONE] or a finish_reason
                for w in (" world", " again"):
                    self.wfile.write(_chunk(w))
                end = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                       "usage": {"prompt_tokens": 12, "completion_tokens": 3}}
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
