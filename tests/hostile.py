"""The hostile modes of the fake server (tests/fake_server.py): responses that never end, trickle,
ping, never finish their headers, are huge, have every JSON shape but the expected one, hold
impossible figures, or never come. Kept apart from the fake server's ordinary modes."""

from __future__ import annotations

import json
import time
from typing import Any


def _chunk(text: str) -> bytes:
    doc = {"choices": [{"index": 0, "text": text, "finish_reason": None}]}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


class Hostile:
    """The hostile modes' bodies (kept apart from the ordinary ones): each writes a response to
    ``h`` (the request handler) for the server ``srv``; none ends by itself unless it says so."""

    MODELS = {
        "list": json.dumps([{"id": "fake-model"}]).encode(),
        "data5": json.dumps({"data": 5}).encode(),
        "nested": b"[" * 200_000 + b"]" * 200_000,  # deeper than any JSON parser recurses
    }

    @staticmethod
    def sse_headers(h: Any) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.flush()

    @staticmethod
    def slowloris(w: Any, gap_s: float) -> None:
        """A status line, then header bytes one at a time, ``gap_s`` apart, never the blank line."""
        w.write(b"HTTP/1.1 200 OK\r\n")
        w.flush()
        while True:
            w.write(b"X")
            w.flush()
            time.sleep(gap_s)

    def endless(self, h: Any, srv: Any) -> None:  # text chunks, srv.chunk_s apart, forever
        self.sse_headers(h)
        piece = _chunk(" and")
        while True:
            h.wfile.write(piece)
            if srv.chunk_s:
                h.wfile.flush()
                time.sleep(srv.chunk_s)

    def endless_empty(self, h: Any, srv: Any) -> None:  # events with no text, forever
        self.sse_headers(h)
        h.wfile.write(_chunk(" hi"))
        while True:
            h.wfile.write(b'data: {"choices": []}\n\n')
            h.wfile.flush()
            time.sleep(srv.chunk_s or 0.05)

    def trickle(self, h: Any, srv: Any) -> None:  # one byte every stall_s, never a newline
        self.sse_headers(h)
        h.wfile.write(_chunk(" hi") + b"data: ")
        while True:
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(srv.stall_s)

    def pings(self, h: Any, srv: Any) -> None:  # SSE comments, forever
        self.sse_headers(h)
        h.wfile.write(_chunk(" hi"))
        while True:
            h.wfile.write(b": ping\n\n")
            h.wfile.flush()
            time.sleep(srv.chunk_s or 0.2)

    def slowloris_stream(self, h: Any, srv: Any) -> None:
        self.slowloris(h.wfile, srv.stall_s)

    def huge_event(self, h: Any, srv: Any) -> None:  # one event of huge_mb MB in 64 KiB data lines
        self.sse_headers(h)
        line = b"data: " + b"x" * 65536 + b"\n"
        for _ in range(srv.huge_mb * 16):
            h.wfile.write(line)
        h.wfile.write(b"\n")

    def huge_line(self, h: Any, srv: Any) -> None:  # one data line of huge_mb MB
        self.sse_headers(h)
        h.wfile.write(b"data: ")
        block = b"x" * (1 << 20)
        for _ in range(srv.huge_mb):
            h.wfile.write(block)
        h.wfile.write(b"\n\n")

    def odd_shapes(self, h: Any, srv: Any) -> None:  # valid JSON, every shape but the expected
        self.sse_headers(h)
        for doc in ({"choices": {"a": 1}}, {"choices": [5]}, {"choices": [{"delta": "x"}]},
                    {"choices": [{"delta": {"content": 5}}]}, {"choices": [{"text": ["a"]}]},
                    {"usage": [1], "timings": "fast", "prompt_progress": 7}, {"error": None, "choices": []},
                    {"choices": [{"finish_reason": {"x": 1}, "text": " ok"}]}):
            h.wfile.write(b"data: " + json.dumps(doc).encode() + b"\n\n")
        h.wfile.write(_chunk(" fine") + b"data: [DONE]\n\n")

    def nested_event(self, h: Any, srv: Any) -> None:  # JSON nested deeper than any parser recurses
        self.sse_headers(h)
        h.wfile.write(_chunk(" hi") + b'data: {"choices": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\n")

    def odd_text(self, h: Any, srv: Any) -> None:  # lone surrogates, NUL and controls in the text
        self.sse_headers(h)
        for raw in (rb'"a\ud800b"', rb'"\u0000nul"', rb'"\udfff\ud83d"', rb'"\ud83d\ude00 ok"', rb'"\u001b[2J\u0007"'):
            h.wfile.write(b'data: {"choices": [{"index": 0, "text": ' + raw + b', "finish_reason": null}]}\n\n')
        end = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}], "usage": {"completion_tokens": 5},
               "model": "m\ud800"}
        h.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

    def absurd(self, h: Any, srv: Any) -> None:  # an ordinary stream whose own account is impossible
        self.sse_headers(h)
        h.wfile.write(_chunk(" hello") + _chunk(" world"))
        end = {"choices": [{"index": 0, "text": "", "finish_reason": "length"}],
               "usage": {"prompt_tokens": 1e30, "completion_tokens": -1000},
               "timings": {"prompt_n": -5, "prompt_ms": 1e30, "cache_n": 10**30, "predicted_n": 2,
                           "predicted_ms": -1000.0}}
        h.wfile.write(b"data: " + json.dumps(end).encode() + b"\n\ndata: [DONE]\n\n")

    @staticmethod
    def chunk_huge_size(h: Any, srv: Any) -> None:  # chunked, with a chunk size no C size_t holds
        h.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"ffffffffffffffffffff\r\n")
        h.wfile.flush()
        time.sleep(2)

    def never_answer(self, h: Any, srv: Any) -> None:  # accepts, reads the request, never answers
        srv.hang()

    @staticmethod
    def tokenizer(path: str, body: Any, shape: str) -> bytes:
        if path == "/detokenize":
            return json.dumps({"content": "".join(chr(96 + t % 26) if isinstance(t, int) else "a"
                                                  for t in body.get("tokens", []))}).encode()
        ids = list(range(1, 1 + len(str(body.get("content", ""))) // 4))
        if shape == "strings":
            return json.dumps({"tokens": [str(t) for t in ids]}).encode()
        if shape == "dicts":
            return json.dumps({"tokens": [{"piece": "x"} for _ in ids]}).encode()
        if shape == "nested":
            return b'{"tokens": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        return json.dumps({"tokens": ids}).encode()

    @property
    def STREAMS(self) -> dict[str, Any]:
        return {"endless": self.endless, "endless_fast": self.endless, "endless_empty": self.endless_empty,
                "trickle": self.trickle, "pings": self.pings, "slowloris": self.slowloris_stream,
                "huge_event": self.huge_event, "huge_line": self.huge_line, "odd_shapes": self.odd_shapes,
                "odd_text": self.odd_text, "nested_event": self.nested_event, "absurd": self.absurd,
                "never_answer": self.never_answer, "chunk_huge_size": self.chunk_huge_size}


hostile = Hostile()
HOSTILE = tuple(hostile.STREAMS) + ("die_after", "stall_after", "close_after")
