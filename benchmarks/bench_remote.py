"""The remote mode (ttftui --url) against what it measures.

1. For each prompt size, on the same model and threads: ttftui's client-side TTFT against a server,
   the server's own account of its prefill (llama-server's ``timings.prompt_ms``), and ttftui's
   in-process TTFT (the engine host). What transport, queueing and the server's own work add is the
   difference. The server is llama.cpp's ``llama-server`` when ``--llama-server PATH`` is given (it
   reports timings), else llama-cpp-python's server (no timings: only the client's clock).
2. Whether the client keeps up with a fast stream: a loopback server streams N text chunks as fast
   as it can (or at ``--chunk-rate``); printed are the chunks received (none may be lost), the rate,
   and the client's own CPU time per chunk.
3. The client's own CPU under load: ttftui headless at concurrency 1 and at ``--concurrency``
   (default 8) against a loopback server in another process that answers each request after
   ``--load-ttft-ms`` and then streams ``--load-chunks`` chunks ``--load-itl-ms`` apart (a server's
   pace, without a server's CPU on this machine). Printed: the ttftui process's CPU (user + system,
   from the OS) per request and per chunk and as % of one core, side by side.

Usage:  python benchmarks/bench_remote.py [--prompts 128,512,2048] [--runs 5] [--threads 2]
                                          [--llama-server PATH] [--chunks 20000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/models", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("the server did not answer in time")


def headless(args: list[str]) -> dict:
    out = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-remote-{os.getpid()}.json"
    r = subprocess.run([sys.executable, "-m", "ttftui", "--headless", "-q", *args, "-o", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"ttftui failed: {r.stderr.strip()}")
    rep = json.loads(out.read_text())
    out.unlink()
    return rep


def med(runs: list[dict], key) -> float | None:
    vals = [v for r in runs if r["counted"] and (v := key(r)) is not None]
    return statistics.median(vals) if vals else None


def ttft_comparison(args: argparse.Namespace) -> None:
    from ttftui.measure.demo_model import require_demo_model

    model = str(require_demo_model())
    sizes = [int(x) for x in args.prompts.split(",")]
    n_ctx = max(sizes) + 128
    port = free_port()
    if args.llama_server:
        cmd = [args.llama_server, "-m", model, "--host", "127.0.0.1", "--port", str(port), "-t", str(args.threads),
               "-c", str(n_ctx), "-b", "512", "-ub", "512"]
        kind = "llama-server"
    else:
        cmd = [sys.executable, str(ROOT / "tests" / "llama_cpp_python_server.py"), "--model", model, "--host",
               "127.0.0.1", "--port", str(port), "--n_threads", str(args.threads), "--n_ctx", str(n_ctx)]
        kind = "llama-cpp-python server"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    scen = [f"--set=model.n_ctx={n_ctx}", f"--set=model.n_threads={args.threads}", f"--set=run.iterations={args.runs}",
            "--set=run.warmup=1"]
    rows = []
    try:
        wait_ready(url, proc)
        for n in sizes:
            cfg = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-remote-{os.getpid()}.toml"
            cfg.write_text(f'[[scenarios]]\nname = "p{n}"\nprompt_tokens = {n}\nmax_tokens = 16\n')
            remote = headless(["--config", str(cfg), "--url", url, *scen])["runs"]
            local = headless(["--config", str(cfg), *scen])["runs"]
            cfg.unlink()
            rows.append((n, med(remote, lambda r: r["ttft_ms"]), med(remote, lambda r: r["remote"]["server_prefill_ms"]),
                         med(remote, lambda r: r["remote"]["ttfb_ms"]), med(local, lambda r: r["ttft_ms"]),
                         med(local, lambda r: r["prefill_ms"])))
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"server: {kind}; model {Path(model).name}; threads {args.threads}; {args.runs} runs each (median)")
    print(f"{'prompt':>6} {'client TTFT':>12} {'server prompt_ms':>17} {'TTFB':>8} {'in-process TTFT':>16} "
          f"{'in-proc prefill':>16} {'client/in-proc':>15} {'client - server':>16}")
    for n, ct, sp, tb, lt, lp in rows:
        f = lambda v: f"{v:.1f}" if v is not None else "–"  # noqa: E731
        diff = f(ct - sp) if ct is not None and sp is not None else "– (no timings)"
        print(f"{n:>6} {f(ct):>12} {f(sp):>17} {f(tb):>8} {f(lt):>16} {f(lp):>16} {ct / lt:>15.3f} {diff:>16}")


def keep_up(args: argparse.Namespace) -> None:
    """A loopback server that streams ``chunks`` one-word chunks; the client must take every one."""
    n_chunks, rate = args.chunks, args.chunk_rate
    piece = b'data: {"choices":[{"index":0,"text":" w","finish_reason":null}]}\n\n'

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):  # noqa: ANN002
            pass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            t0 = time.perf_counter()
            for i in range(n_chunks):
                if rate:
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                self.wfile.write(piece)
                if rate:
                    self.wfile.flush()
            end = b'data: {"choices":[{"index":0,"text":"","finish_reason":"length"}]}\n\ndata: [DONE]\n\n'
            self.wfile.write(end)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    from ttftui.measure.remote.client import Endpoint

    ep = Endpoint(f"http://127.0.0.1:{srv.server_address[1]}/v1")
    got = [0]
    c0, w0 = time.thread_time(), time.perf_counter()
    res = ep.stream("/v1/completions", {"prompt": "x", "stream": True}, on_chunk=lambda c, i: got.__setitem__(0, i + 1))
    cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
    srv.shutdown()
    print(f"\nclient keep-up: {got[0]} of {n_chunks} chunks received ({'none lost' if got[0] == n_chunks else 'LOST'}), "
          f"{got[0] / wall:,.0f} chunks/s over {wall:.2f} s ({'as fast as the server writes' if not rate else f'server paced at {rate:,.0f}/s'}); "
          f"client CPU {cpu / max(got[0], 1) * 1e6:.1f} µs per chunk ({cpu / wall * 100:.0f} % of a core); "
          f"TTFT {(res.at['first_content_ns'] or 0) / 1e6:.2f} ms")


def load_cpu(args: argparse.Namespace) -> None:
    import resource

    from tests.fake_server import start_in_process_of_its_own

    srv, url = start_in_process_of_its_own(args.load_ttft_ms / 1000, args.load_itl_ms / 1000, args.load_chunks - 1)
    try:
        print(f"\nclient CPU under load (server in another process: TTFT {args.load_ttft_ms:g} ms, "
              f"{args.load_chunks} chunks {args.load_itl_ms:g} ms apart):")
        rows = []
        for c in (1, args.concurrency):
            n = args.load_requests * c
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            w0 = time.perf_counter()
            rep = headless(["--url", url, "--scenario", "short", "--concurrency", str(c), "--requests", str(n),
                            "--set", "run.warmup=0", "--set", f"scenarios=[{{name='short', prompt_tokens=32, "
                            f"max_tokens={args.load_chunks}}}]"])
            wall = time.perf_counter() - w0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            ld = rep["load"]["short"]
            chunks = sum(r["remote"]["n_chunks"] for r in rep["runs"])
            rows.append((c, n, ld, cpu, wall, chunks))
            print(f"  concurrency {c:>2}: {ld['n_ok']}/{n} ok, {ld['request_rate']:.2f} req/s, mean in flight "
                  f"{ld['mean_in_flight']:.2f}; ttftui process CPU {cpu:.2f} s over {wall:.1f} s "
                  f"({cpu / wall * 100:.1f} % of a core, start-up included), {cpu / n * 1000:.1f} ms per request, "
                  f"{cpu / max(chunks, 1) * 1e6:.0f} µs per chunk")
        (c1, n1, _, cpu1, _, ch1), (cn, nn, _, cpun, _, chn) = rows
        # both include the same start-up (imports, the server's /models and tokenizer calls): the
        # difference is what the extra requests cost the client
        extra = max(cpun - cpu1, 0.0)
        span = rows[1][2]["span_s"]
        print(f"  marginal, concurrency {cn} over 1: {extra:.3f} s CPU for {nn - n1} more requests = "
              f"{extra / (nn - n1) * 1000:.2f} ms per request, {extra / max(chn - ch1, 1) * 1e6:.0f} µs per chunk; "
              f"{cpun - cpu1:.3f} s over a {span:.1f} s load span at {cn} in flight = about "
              f"{extra / span * 100:.1f} % of one core")
    finally:
        srv.terminate()
        srv.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", default="128,512,2048")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--llama-server", default=os.environ.get("TTFTUI_LLAMA_SERVER"))
    ap.add_argument("--chunks", type=int, default=20000)
    ap.add_argument("--chunk-rate", type=float, default=5000.0, help="0: as fast as possible")
    ap.add_argument("--skip-ttft", action="store_true")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--load-requests", type=int, default=4, help="requests per worker")
    ap.add_argument("--load-ttft-ms", type=float, default=100.0)
    ap.add_argument("--load-chunks", type=int, default=64)
    ap.add_argument("--load-itl-ms", type=float, default=10.0)
    args = ap.parse_args()
    if not args.skip_ttft:
        ttft_comparison(args)
    keep_up(args)
    load_cpu(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
