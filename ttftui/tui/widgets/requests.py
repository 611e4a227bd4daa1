"""Requests under load: how many are in flight, one lane per request on a shared time axis, and
each load scenario's throughput and goodput once it has counted requests.

Shown only in a session with load scenarios (concurrency or rate, against a server). A lane runs
from the request's start to now: waiting for its first token (``·``, in the prefill colour: the
client's TTFT so far), then streaming (``━``, the decode colour); its right end says its tokens and
age. Every lane is drawn on the same axis, so a request that waits behind others is seen waiting.
Where the server tells its queue (llama-server's /metrics), the header says what it reported last,
labelled as the server's account.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from ttftui.analysis.load import LoadFigures, plan_for
from ttftui.analysis.reducer import RunState, SessionState
from ttftui.analysis.view import SessionView
from ttftui.tui import render as R
from ttftui.tui.widgets.panel import LinePanel

TAIL = 18  # columns right of each lane: tokens and age
HEAD = 14  # columns left of each lane: run id and scenario


def has_load(state: SessionState) -> bool:
    cfg = state.config
    return cfg is not None and any(s.is_load for s in cfg.scenarios)


class RequestLanes(LinePanel):
    """Line-drawn: only lanes whose text changed are repainted."""

    def __init__(self, **kw: Any):
        super().__init__("Requests", **kw)

    def view_key(self, state: SessionState, view: SessionView, now_ns: int) -> Any:
        # while requests are in flight their lanes grow with time: a new view every 100 ms
        tick = now_ns // 100_000_000 if state.in_flight else None
        return (tuple((r.run_id, len(r.tokens)) for r in state.in_flight), len(state.runs), tick,
                len(state.server_samples), len(state.workers_lost), self.theme_file and self.theme_file.name)

    def draw(self, state: SessionState, view: SessionView, now_ns: int) -> None:
        th = self.theme_file
        width, height = self.content_size
        if width <= 0 or height <= 0:
            return
        fl = state.in_flight
        figs = view.load
        rows: list[tuple[Any, Any]] = []
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{len(fl)} in flight", style="bold")
        cur = fl[-1] if fl else (state.runs[-1] if state.runs else None)
        cfg = state.config
        if cur is not None and cfg is not None:
            try:
                plan = plan_for(cfg.run, cfg.scenario(cur.scenario))
            except KeyError:
                plan = None
            if plan is not None:
                head.append(f" · {cur.scenario}: {plan.describe()}")
            f = figs.get(cur.scenario)
            if f is not None:
                head.append(f" · {f.request_rate:.2f} req/s")
                if f.goodput_rps is not None:
                    head.append(f" · goodput {f.goodput_rps:.2f} req/s")
                head.append(f" · max {f.max_in_flight} in flight", style="dim")
                hit = f.server_cache_hit_pct if f.server_cache_hit_pct is not None else f.server_metrics_cache_hit_pct
                if hit is not None:  # the server's own account of its prefix cache
                    head.append(f" · server cache hit {hit:.0f} %")
        q = state.server_samples.last()
        if fl and q is not None and now_ns - q.t_ns < 2_000_000_000:  # the server's own view, if recent
            if q.source == "metrics":
                head.append(f" · server: {q.requests_processing} computing, {q.requests_deferred} deferred (its /metrics)",
                            style="bold")
            else:
                head.append(f" · server: {q.slots_busy}/{q.slots_total} slots busy (its /slots)", style="bold")
        workers = {r.started.worker for r in fl if r.started.worker}
        if workers or state.workers_lost:
            head.append(f" · {len(workers)} Ray worker{'s' if len(workers) != 1 else ''} sending")
            if state.workers_lost:
                head.append(f", {len(state.workers_lost)} lost", style="bold red")
        rows.append(((head.plain, th.name), head))
        body = height - 1
        if fl:
            rows.extend(self._lanes(fl, now_ns, width, body))
        else:
            rows.extend(self._table(figs, width, body))
        self._paint(rows, width, height)

    def _lanes(self, fl: tuple[RunState, ...], now_ns: int, width: int, body: int) -> list[tuple[Any, Any]]:
        th = self.theme_file
        lane_w = max(width - HEAD - TAIL, 4)
        n_lanes = body if len(fl) <= body else body - 1  # the last line says how many are not shown
        shown = fl[-n_lanes:] if n_lanes > 0 else ()
        oldest = min(r.started.t_ns for r in shown) if shown else now_ns
        span = max(now_ns - oldest, 200_000_000)  # the axis: the oldest lane's age, at least 0.2 s
        t_left = now_ns - span
        wait_c = R.component_colour(th, "prefill")
        out: list[tuple[Any, Any]] = []
        for r in shown:
            col = lambda t: min(lane_w, max(0, round((t - t_left) / span * lane_w)))  # noqa: E731
            a = col(r.started.t_ns)
            first = col(r.tokens[0].t_ns) if r.tokens else lane_w
            line = Text(no_wrap=True, overflow="crop")
            who = r.started.worker  # a Ray client worker: its node:pid, shortened to the pid
            label = f"#{r.run_id} w{who.rsplit(':', 1)[-1]}" if who else f"#{r.run_id} {r.scenario}"
            line.append(label[: HEAD - 1].ljust(HEAD))
            line.append(" " * a)
            line.append("·" * max(first - a, 1 if not r.tokens else 0), style=wait_c)
            if r.tokens:
                line.append("━" * max(lane_w - first, 1), style=th.itl.normal)
            age_ms = (now_ns - r.started.t_ns) / 1e6
            pad = HEAD + lane_w - line.cell_len
            if pad > 0:
                line.append(" " * pad)
            tail = f" {len(r.tokens)} tok {R.fmt_ms(age_ms)}" if r.tokens else f" waiting {R.fmt_ms(age_ms)}"
            line.append(tail[:TAIL], style="dim")
            out.append(((line.plain, th.name), line))
        if len(fl) > len(shown) and body > 0:
            out.append((("more", len(fl) - len(shown)), Text(f"… {len(fl) - len(shown)} more in flight", style="dim")))
        return out

    def _table(self, figs: dict[str, LoadFigures], width: int, body: int) -> list[tuple[Any, Any]]:
        """No request in flight: each load scenario's figures, one line each (a load sweep reads
        down the lines)."""
        if not figs:
            return [(("none",), Text("no request has ended yet", style="dim"))]
        out: list[tuple[Any, Any]] = []
        cols = Text(f"{'scenario':<14}{'load':>10}{'req/s':>9}{'goodput':>9}{'tok/s':>9}{'in flight':>11}{'failed':>8}",
                    style="dim", no_wrap=True)
        out.append((("cols",), cols))
        for name, f in list(figs.items())[: max(body - 1, 0)]:
            load = f"c={f.concurrency}" if f.mode == "closed" else f"{f.rate:g}/s"
            good = f"{f.goodput_rps:.2f}" if f.goodput_rps is not None else "–"
            line = Text(f"{name[:13]:<14}{load:>10}{f.request_rate:>9.2f}{good:>9}{f.output_tps:>9.1f}"
                        f"{f.mean_in_flight:>7.1f} /{f.max_in_flight:<3}{f.n_failed:>6}", no_wrap=True)
            out.append(((line.plain,), line))
        return out
