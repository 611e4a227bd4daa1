"""A small OpenAI-compatible server that misbehaves on purpose, for the remote mode's fault tests
(the real behaviour is tested against llama-cpp-python's own server). Loopback only, bounded."""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .hostile import HOSTILE, hostile  # noqa: F401 - the hostile modes' bodies


def _chunk(text: str) -> bytes:
    doc = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class JsonHandler(BaseHTTPRequestHandler):
    """What a test server's handler starts from: HTTP/1.1, quiet, and a JSON answer."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def _json(self, status: int, doc: Any) -> None:
        self._raw(status, json.dumps(doc).encode())

    def _raw(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        """The request's JSON body."""
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))

    def _lookalike_get(self, model: str, *, props: bool = True, version: bool = False) -> None:
        """GET as a llama-server (``props``: its /props) or a vLLM (``version``: its /version) answers it:
        /models lists ``model``; anything else is 404."""
        if self.path.endswith("/models"):
            self._json(200, {"object": "list", "data": [{"id": model}]})
        elif props and self.path == "/props":
            self._json(200, {"default_generation_settings": {}, "build_info": "fake"})
        elif version and self.path == "/version":
            self._json(200, {"version": "fake"})
        else:
            self._json(404, {"error": {"message": "not found"}})


class LoopbackServer:
    """A test server on 127.0.0.1, in a thread of this process: ``serve(Handler)`` in the constructor,
    then ``with`` starts and stops it; ``url`` is its OpenAI base URL."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Any:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # a burst of 64 connections at once is accepted, not reset

class FakeServer:
    """``mode``: ok | http500 | malformed | close_mid | stall_after_headers | slow_headers, or one
    of the hostile ones (``HOSTILE``: streams that never end, trickle or ping, headers that never
    finish, huge events, odd JSON shapes, absurd figures, no answer at all, dying mid-session).
    ``active`` / ``max_active``: completion requests open at the server (now, at most at once).
    ``models``: how GET /models answers (ok | list | data5 | nested | slowloris); ``llama``: also
    answer llama-server's /props and /tokenize (``tokens``: ok | strings | dicts | nested);
    ``after``: die_after / stall_after / close_after answer this many completions normally first."""

    def __init__(self, mode: str = "ok", stall_s: float = 3.0, delay_s: float = 0.0, chunk_s: float = 0.0,
                 n_words: int = 2, batch: int = 0, batch_timeout_s: float = 60.0, models: str = "ok",
                 llama: bool = False, tokens: str = "ok", after: int = 0, huge_mb: int = 600,
                 cache: tuple[int, int] | None = None):
        self.mode = mode
        # ``cache`` = (looked up, found): each answer says it found 9 of its 12 prompt tokens in a prefix
        # cache (usage.prompt_tokens_details.cached_tokens) and adds (looked up, found) tokens to
        # vLLM's /metrics counters, which GET /metrics serves with its queue gauges
        self.cache = cache
        self.cache_queried = self.cache_hits = 0
        self.models, self.llama, self.tokens, self.after, self.huge_mb = models, llama, tokens, after, huge_mb
        self.n_answered = 0  # completion requests answered so far (die_after / stall_after count them)
        self.n_done = 0  # answers written whole ("ok" streams), and the condition die_after waits on
        self.done = threading.Condition()
        self.gone = threading.Event()  # stall_after: the server has stopped answering anything
        self._never = threading.Event()
        self.stall_s = stall_s
        self.delay_s = delay_s  # "ok": wait this long before the first chunk (a prefill)
        self.chunk_s = chunk_s  # "ok": and this long before each later chunk
        self.n_words = n_words  # "ok": chunks after the first
        # A barrier: each completion request is held, unanswered, until ``batch`` of them have arrived
        # since the last release, and then they are all answered. Whether a client keeps N requests
        # in flight is then a fact of the order of events, not of timing: with fewer, it never fills
        # the batch, and after ``batch_timeout_s`` the server answers anyway and counts it here.
        self.batch = batch
        self.batch_timeout_s = batch_timeout_s
        self.batch_timeouts = 0
        self._arrived = 0  # since the last release
        self._released = 0  # releases so far
        self.lock = threading.Lock()
        self._batch_cv = threading.Condition(self.lock)
        self.active = 0  # completion requests being answered now
        self.max_active = 0
        self.arrivals: list[float] = []  # time.monotonic() of each completion request
        self.bodies: list[dict[str, Any]] = []  # each completion request's JSON body, in arrival order
        self.auth: list[str | None] = []  # each request's Authorization header
        outer = self

        class Handler(JsonHandler):

            def do_GET(self) -> None:
                outer.auth.append(self.headers.get("Authorization"))
                if outer.gone.is_set():
                    outer.hang()  # stalled: accepts and never answers
                if self.path.endswith("/models"):
                    shape = outer.models
                    if shape == "slowloris":
                        hostile.slowloris(self.wfile, outer.stall_s)
                    elif shape in hostile.MODELS:
                        self._raw(200, hostile.MODELS[shape])
                    else:
                        self._json(200, {"object": "list", "data": [{"id": "fake-model"}]})
                elif outer.cache is not None and self.path == "/metrics":
                    with outer.lock:
                        text = ("# TYPE vllm:num_requests_running gauge\n"
                                f'vllm:num_requests_running{{model_name="fake-model"}} {outer.active}.0\n'
                                f'vllm:num_requests_waiting{{model_name="fake-model"}} 0.0\n'
                                "# TYPE vllm:prefix_cache_queries_total counter\n"
                                f'vllm:prefix_cache_queries_total{{model_name="fake-model"}} {outer.cache_queried}.0\n'
                                f'vllm:prefix_cache_hits_total{{model_name="fake-model"}} {outer.cache_hits}.0\n')
                    self._raw(200, text.encode(), "text/plain")
                elif outer.llama and self.path == "/props":
                    self._json(200, {"default_generation_settings": {}, "build_info": "fake"})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                outer.auth.append(self.headers.get("Authorization"))
                if outer.gone.is_set():
                    outer.hang()
                if outer.llama and self.path in ("/tokenize", "/detokenize"):
                    self._raw(200, hostile.tokenizer(self.path, json.loads(body), outer.tokens))
                    return
                if not self.path.endswith("/completions"):
                    self._json(404, {"error": {"message": "not found"}})
                    return
                with outer.lock:
                    outer.arrivals.append(time.monotonic())
                    try:
                        outer.bodies.append(json.loads(body))
                    except ValueError:
                        outer.bodies.append({"unparsed": body.decode("utf-8", "replace")})
                    outer.active += 1
                    outer.max_active = max(outer.max_active, outer.active)
                try:
                    outer.hold_for_batch()
                    self._answer()
                finally:
                    with outer.lock:
                        outer.active -= 1

            def _answer(self) -> None:
                mode = outer.mode
                with outer.lock:
                    outer.n_answered += 1
                    nth = outer.n_answered
                if mode == "close_after":  # answers, then closes every stream early (and still lists its models)
                    mode = "close_mid" if nth > outer.after else "ok"
                if mode in ("die_after", "stall_after") and nth > outer.after:
                    if mode == "die_after":
                        # the first ``after`` answers are written whole first (with 8 in flight, a later request
                        # may arrive while they stream): "died after N answers" is then a fact, not a race
                        outer.done.wait_for(lambda: outer.n_done >= outer.after, timeout=10)
                        os._exit(0)  # the whole process, at once: connections reset, the port refuses
                    outer.gone.set()
                    outer.hang()
                    return
                if mode in hostile.STREAMS:
                    hostile.STREAMS[mode](self, outer)
                    return
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
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                self.wfile.write(_chunk(" hello"))
                if mode == "malformed":
                    self.wfile.write(b"data: {not json\n\n")
                    return
                if mode == "close_mid":
                    self.wfile.flush()
                    return  # closes without [DONE] or a finish_reason
                for k in range(outer.n_words):
                    if outer.chunk_s:
                        self.wfile.flush()
                        time.sleep(outer.chunk_s)
                    self.wfile.write(_chunk((" world", " again")[k % 2]))
                end: dict[str, Any] = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                                       "usage": {"prompt_tokens": 12, "completion_tokens": 1 + outer.n_words}}
                if outer.cache is not None:
                    end["usage"]["prompt_tokens_details"] = {"cached_tokens": 9}
                    with outer.lock:  # counted before the answer ends: a reading after it holds it
                        outer.cache_queried += outer.cache[0]
                        outer.cache_hits += outer.cache[1]
                self.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")
                self.wfile.flush()
                with outer.done:
                    outer.n_done += 1
                    outer.done.notify_all()

        self.httpd = _Server(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def hang(self) -> None:
        """Hold the request, unanswered, until the server is shut down."""
        self._never.wait(3600)

    def hold_for_batch(self) -> None:
        """The barrier (``batch``): wait until the batch this request belongs to is full."""
        if self.batch <= 1:
            return
        with self._batch_cv:
            mine = self._released
            self._arrived += 1
            if self._arrived >= self.batch:
                self._arrived = 0
                self._released += 1
                self._batch_cv.notify_all()
                return
            if not self._batch_cv.wait_for(lambda: self._released != mine, timeout=self.batch_timeout_s):
                self.batch_timeouts += 1  # the client never filled the batch: answered anyway
                self._arrived = 0
                self._released += 1
                self._batch_cv.notify_all()

    def __enter__(self) -> "FakeServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._never.set()
        self.httpd.shutdown()
        self.httpd.server_close()


class ServerProcess:
    """A FakeServer in a process of its own (``python -m tests.fake_server --json KW``): what it
    costs is not the measured client's, and die_after can end the whole process. ``url``."""

    def __init__(self, **kw: Any):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fake_server", "--json", json.dumps(kw)],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     cwd=str(Path(__file__).parent.parent))
        self.url = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not self.url:
            raise RuntimeError(f"the fake server did not start (exit {self.proc.wait()})")

    def __enter__(self) -> "ServerProcess":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def start_in_process_of_its_own(delay_s: float, chunk_s: float, n_words: int) -> tuple[Any, str]:
    """A paced "ok" server in another process (so its CPU is not the measuring process's), for the
    benchmarks: (its Popen, its URL)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "tests.fake_server", str(delay_s), str(chunk_s), str(n_words)],
                         stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).parent.parent))
    return p, p.stdout.readline().strip()  # type: ignore[union-attr]


if __name__ == "__main__":
    import sys

    if sys.argv[1] == "--json":  # ServerProcess
        srv = FakeServer(**json.loads(sys.argv[2]))
    else:
        srv = FakeServer("ok", delay_s=float(sys.argv[1]), chunk_s=float(sys.argv[2]), n_words=int(sys.argv[3]))
    srv.__enter__()
    print(srv.url, flush=True)
    threading.Event().wait()  # serve until the benchmark that started this process ends it
