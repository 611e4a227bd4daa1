"""Command line: ``ttftui`` (dashboard), ``ttftui --headless`` (JSON/CSV report) and subcommands.

Every user-caused problem ends here as one line on stderr, ``ttftui: <what is wrong>``, and its own
exit code (see :mod:`ttftui.core.errors` and the README). A traceback is only printed with
``TTFTUI_DEBUG=1``. The headless path never imports Textual.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from ttftui import __version__
from ttftui.analysis.alerts import AlertEvaluator
from ttftui.cli import headless
from ttftui.cli.doctor import run_doctor
from ttftui.cli.serve import check_host, check_new_recording, run_server, serve_access
from ttftui.core.config import cell_configs, load_config, parse_value, resolve_workloads, with_load, with_trace
from ttftui.core.definitions import definitions_text
from ttftui.core.errors import ConfigError, GateFailed, TtftuiError, exit_code_table
from ttftui.core.output import check_writable, say, write_atomic
from ttftui.measure.gguf import read_header
from ttftui.measure.prompts import check_fits
from ttftui.measure.select import select_engine
from ttftui.report.compare import baseline_table, compare_reports, load_report, parse_alpha, parse_gate, render_table
from ttftui.report.html import compare_html, pick_run, report_html
from ttftui.report.schema import report_schema
from ttftui.run.recording import Recorder, default_recording_path, read_recording
from ttftui.run.replay import SPEEDS
from ttftui.run.session import select_scenarios, without_unchosen_optional

SUBCOMMANDS = ("replay", "compare", "report", "serve", "doctor", "schema")


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line and exit with ConfigError's code."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(f"{message} (see {self.prog} --help)")


def _whole(text: str, minimum: int) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < minimum:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {v}" if minimum == 1 else f"must be 0 or more, got {v}")
    return v


def _positive_int(text: str) -> int:
    return _whole(text, 1)


def _non_negative_int(text: str) -> int:
    return _whole(text, 0)


def _int_list(text: str) -> list[int]:
    return [_positive_int(x.strip()) for x in text.split(",")]


def _speed(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a speed factor, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return v


def _float_list(text: str) -> list[float]:
    out = []
    for x in text.split(","):
        try:
            v = float(x.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number of requests per second, got {x.strip()!r}") from None
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"must be a positive number, got {x.strip()!r}")
        out.append(v)
    return out


EPILOG = f"""\
metric definitions (all times by perf_counter_ns in the working thread):
{definitions_text()}

exit codes: 0 success, 1 gate failed, 2 config/usage, 3 model missing, 4 not GGUF, 5 truncated GGUF,
6 load failed, 7 prompt too long/empty, 8 unknown scenario, 9 output not writable, 10-13 recording
problems, 14 report problems, 16 engine failure, 17 engine crashed, 18 no request to a server succeeded,
130 Ctrl-C, 143 SIGTERM (README has the full table).
"""


def _run_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="ttftui",
        description="Profile the time to first token (TTFT) of a local GGUF model, phase by phase. "
        "With no options: the live dashboard on the bundled demo model. "
        f"Subcommands: {', '.join(SUBCOMMANDS)} (ttftui SUBCOMMAND --help).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"ttftui {__version__}")
    p.add_argument("--config", metavar="FILE", help="config file (default: ./config.toml if present, else built-in defaults)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.n_batch=64 (repeatable)")
    p.add_argument("--model", metavar="PATH", help="GGUF model file (default: the bundled demo model)")
    p.add_argument("--url", metavar="URL", help="profile an OpenAI-compatible server instead, e.g. "
                   "http://127.0.0.1:8080/v1 (streaming; see [server] in config.toml)")
    p.add_argument("--synthetic", action="store_true", help="use the synthetic engine (labelled synthetic everywhere)")
    p.add_argument("--profile-ops", nargs="?", const="ops", choices=("ops", "layers"), default=None,
                   help="profile prefill by graph operation and layer (llama.cpp's graph callback): every scenario "
                        "gets a profiled twin NAME@ops, kept out of its statistics; layers = each layer's output "
                        "only, fewer graph splits (engine.profile_ops; docs/measurement.md)")
    p.add_argument("--scenario", metavar="NAME", action="append", help="run only this scenario (repeatable)")
    p.add_argument("--iterations", metavar="N", type=_positive_int, help="measured runs per scenario")
    p.add_argument("--warmup", metavar="N", type=_non_negative_int, help="warm-up runs per scenario")
    p.add_argument("--concurrency", metavar="N[,N..]", type=_int_list,
                   help="load, with --url: keep N requests in flight in every scenario (closed loop); several "
                        "values sweep it")
    p.add_argument("--rate", metavar="R[,R..]", type=_float_list,
                   help="load, with --url: send R requests per second in every scenario (open loop, Poisson "
                        "arrivals); several values sweep it")
    p.add_argument("--requests", metavar="N", type=_positive_int, help="load: counted requests per load scenario")
    p.add_argument("--trace", metavar="FILE", help="load, with --url: replay a request trace (JSONL, Mooncake's format: "
                   "timestamp ms, input_length, output_length, hash_ids) at its own arrival times, with its lengths "
                   "and its shared prompt prefixes; replaces the config's scenarios with one, trace (or the file of "
                   "its trace scenarios)")
    p.add_argument("--trace-speed", metavar="X", type=_speed, help="replay the trace X times as fast (default 1)")
    p.add_argument("--ray", metavar="ADDRESS", help="load, with --url: send the requests from client workers on a Ray "
                   "cluster (host:port, auto, or local); pip install 'ttftui[ray]'")
    p.add_argument("--workers", metavar="N", type=_positive_int, help="Ray client workers (default 2)")
    p.add_argument("--per-node", action="store_true", help="with --ray, no --url: one engine host on every node of "
                   "the cluster runs the scenarios on its own engine, side by side")
    p.add_argument("--matrix", metavar="KEY=V1,V2", action="append", type=_matrix_arg,
                   help="with --ray: engine hosts run every combination of these settings (repeatable, e.g. "
                        "--matrix model.n_batch=64,512 --matrix 'model.path=[\"a.gguf\", \"b.gguf\"]'), spread over "
                        "the nodes")
    p.add_argument("--headless", action="store_true", help="no dashboard: write a report (JSON by default)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")
    p.add_argument("--format", choices=("json", "csv"), default="json", help="report format (csv: one row per run)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--record", metavar="PATH", nargs="?", const="",
                   help="record every event to PATH (default name ttftui-<time>.ttftrec; .gz compresses)")
    p.add_argument("--fail-on", choices=("warning", "critical"),
                   help="headless gate: exit 1 if an alert rule of this severity (or worse) fired")
    p.add_argument("--baseline", metavar="REPORT",
                   help="dashboard: a JSON report to show a Δ-vs-baseline column against")
    return p


def _overrides(args: argparse.Namespace) -> list[Any]:
    """--set texts, then the options that set one key, as (key, value) data."""
    out: list[Any] = list(args.set)
    if args.model:
        out.append(("model.path", args.model))
    if args.url:
        out.append(("server.url", args.url))
    if args.iterations is not None:
        out.append(("run.iterations", args.iterations))
    if args.warmup is not None:
        out.append(("run.warmup", args.warmup))
    if getattr(args, "profile_ops", None):
        out.append(("engine.profile_ops", args.profile_ops))
    if getattr(args, "ray", None):
        out.append(("cluster.ray", args.ray))
    if getattr(args, "workers", None) is not None:
        out.append(("cluster.workers", args.workers))
    if getattr(args, "per_node", False):
        out.append(("cluster.per_node", True))
    if getattr(args, "matrix", None):
        out.append(("cluster.matrix", dict(args.matrix)))
    return out


def _matrix_arg(text: str) -> tuple[str, list[Any]]:
    """``KEY=V1,V2`` (each value read as TOML when it parses) or ``KEY=[TOML array]``."""

    key, eq, values = text.partition("=")
    if not eq or not key.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=V1,V2 (e.g. model.n_batch=64,512)")
    what = f"--matrix {key.strip()}"  # each value one TOML value, or text: never more TOML
    parsed = parse_value(values.strip(), what)
    if not isinstance(parsed, list):
        parsed = [parse_value(v.strip(), what) for v in values.split(",") if v.strip()]
    return key.strip(), parsed


def _preflight(config: Any, names: list[str]) -> None:
    """Checks that need only the config: a prompt that cannot fit fails before anything loads."""

    if config.server.url:  # the server has its own context size; it says so if a prompt does not fit
        return
    if config.cluster.matrix:  # each cell with its own settings (its context size, its model file)


        for _label, cell in cell_configs(config):  # the config dumped once, not once per cell
            if cell.model.path:
                read_header(Path(cell.model.path))  # missing / not GGUF: one line, its own exit code
            by_name = {x.name: x for x in cell.scenarios}
            for n in names:
                s = by_name.get(n)
                if s is not None and s.prompt_tokens is not None:
                    check_fits(s.name, s.prompt_tokens, s.max_tokens, cell.model.n_ctx)
        return
    by_name = {x.name: x for x in config.scenarios}  # thousands of scenarios: one lookup each
    for n in names:
        s = by_name[n]
        if s.prompt_tokens is not None:
            check_fits(s.name, s.prompt_tokens, s.max_tokens, config.model.n_ctx)


def _checked_run(args: argparse.Namespace) -> tuple[Any, list[str]]:
    """The run options checked as every front end checks them before it starts anything (the dashboard,
    headless, and ``serve`` before it listens): the config, load options, scenarios, what fits."""

    config = load_config(args.config, _overrides(args))
    if args.concurrency and args.rate:
        raise ConfigError("give either --concurrency (closed loop) or --rate (open loop), not both")
    config = without_unchosen_optional(config, args.scenario)  # the default chat only when named
    config = with_trace(config, args.trace, args.trace_speed)
    config = with_load(config, concurrency=args.concurrency, rate=args.rate, requests=args.requests)
    config = resolve_workloads(config)  # traces and prompt files read and checked now, before anything starts
    names = select_scenarios(config, args.scenario)
    if args.synthetic and any(config.scenario(n).is_load for n in names):
        raise ConfigError("--synthetic runs one request at a time; concurrency and rate need a server (--url)")
    _preflight(config, names)
    return config, names


def cmd_run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)

    config, names = _checked_run(args)
    if not args.headless and args.output:
        raise ConfigError("-o/--output needs --headless (the dashboard saves screenshots with its own key)")
    if args.fail_on and not args.headless:
        raise ConfigError("--fail-on needs --headless (it sets the exit code of a headless run)")
    baseline = _baseline(args.baseline) if args.baseline else None
    recorder = _recorder(config, args)
    if not args.headless:
        from ttftui.tui.launch import run_dashboard  # Textual: the dashboard only; headless never loads it

        return run_dashboard(config, names, synthetic=args.synthetic, recorder=recorder,
                             evaluator=AlertEvaluator(config.alerts), n_rules=len(config.alerts), baseline=baseline)
    return headless.run_headless_cli(config, names, args, recorder)


def _baseline(path: str) -> Any:
    return baseline_table(load_report(path))


def _recorder(config: Any, args: argparse.Namespace) -> Any:
    """The recording sink asked for by --record or [recording], created now so a bad path fails early."""

    path = _recording_path(config, args)
    return None if path is None else Recorder(path)


def _recording_path(config: Any, args: argparse.Namespace) -> str | None:
    if args.record is None and not config.recording.enabled:
        return None
    path = args.record if args.record else (config.recording.path if args.record is None else "")
    if not path:
        path = str(default_recording_path(config.recording.gzip))
    elif config.recording.gzip and not path.endswith(".gz"):
        path += ".gz"
    return path


def cmd_replay(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui replay", description="Replay a recorded session into the dashboard, or rebuild "
                "its report with --headless (the same report the live session wrote).")
    p.add_argument("file", metavar="FILE", help="a .ttftrec (or .ttftrec.gz) recording")
    p.add_argument("--headless", action="store_true", help="no dashboard: write the report")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report here (atomically) instead of stdout")
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--speed", default="1", help="dashboard pace: 0.25 .. 16, or max (default 1)")
    p.add_argument("--strict", action="store_true", help="a corrupt line is an error instead of being skipped")
    p.add_argument("--theme", default=None, help="dashboard theme (default: ui.theme of ./config.toml, else dark)")
    p.add_argument("-q", "--quiet", action="store_true", help="no warnings on stderr")
    p.add_argument("--fail-on", choices=("warning", "critical"),
                   help="with --headless: exit 1 if a recorded alert of this severity (or worse) fired")
    p.add_argument("--baseline", metavar="REPORT", help="dashboard: show a Δ-vs-baseline column")
    p.add_argument("--serve", action="store_true", help="serve the replay to a web browser instead (each tab its "
                   "own replay; --host, --port)")
    _serve_args(p)
    args = p.parse_args(argv)

    try:
        speed = float("inf") if args.speed == "max" else float(args.speed)
    except ValueError:
        raise ConfigError(f"--speed: expected one of {', '.join('max' if x == float('inf') else f'{x:g}' for x in SPEEDS)}, got {args.speed!r}") from None
    if speed not in SPEEDS:
        raise ConfigError(f"--speed: expected one of {', '.join('max' if x == float('inf') else f'{x:g}' for x in SPEEDS)}, got {args.speed!r}")
    if args.output and not args.headless:
        raise ConfigError("-o/--output needs --headless")
    if args.output:
        check_writable(args.output, "report")
    rec = read_recording(args.file, strict=args.strict)
    if not args.quiet:
        for w in rec.warnings:
            _print_error(f"warning: {w}")
    if args.serve:
        if args.headless or args.fail_on:
            raise ConfigError("--serve shows the dashboard: --headless and --fail-on do not apply")

        access = serve_access(args.host, args.port, allow_hosts=args.allow_host, token=not args.no_token)
        if args.baseline:
            _baseline(args.baseline)
        if (w := check_host(args.host)) is not None:
            _say(w)
        forward = ["replay", str(Path(args.file).resolve()), "--speed", args.speed, "-q"]
        forward += [x for flag, v in (("--theme", args.theme), ("--baseline", args.baseline)) if v for x in (flag, v)]
        forward += ["--strict"] if args.strict else []
        return run_server(forward, access=access, one_viewer=False, title="ttftui replay")
    if args.headless:
        return headless.replay_headless(rec, args.output, args.format, args.fail_on)
    if args.fail_on:
        raise ConfigError("--fail-on needs --headless")
    baseline = _baseline(args.baseline) if args.baseline else None
    from ttftui.tui.launch import run_replay_dashboard  # Textual: the dashboard only

    theme = args.theme
    if theme is None:
        try:
            theme = load_config(None).ui.theme
        except TtftuiError:
            theme = "dark"
    return run_replay_dashboard(rec, theme=theme, speed=speed, baseline=baseline)


def cmd_compare(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui compare", description="Compare two JSON reports per scenario and metric: "
                "baseline, candidate, ratio and whether the difference is significant (Mann-Whitney U on "
                "the per-run values, two-sided, alpha 0.05).",
                epilog="gates: --max-regression ttft_ms.p95=10% fails (exit 1) when the candidate's p95 TTFT "
                "is more than 10% worse than the baseline's in any scenario; prefix a scenario to restrict "
                "it: --max-regression medium:decode_tps.p50=5%. STAT is mean, sd, min, max or a percentile "
                "the reports have (p50, p95, p99_9 ...). 'Worse' is higher for *_ms, lower for *_tps; for sd, "
                "higher for every metric. exit codes: 0 compared, every gate passed; 1 a gate failed: the "
                "candidate is slower (a real regression); 2 bad option (gate syntax, unknown statistic, PCT not "
                "a finite number >= 0, --alpha outside (0, 1)); 14 a report is missing, unreadable, not a "
                "regular file, over 256 MiB, not JSON, not a ttftui report, malformed or of another schema, "
                "or the reports cannot answer a gate (no such scenario or statistic in both, no value, a "
                "baseline of 0); 70 internal error (a bug).")
    p.add_argument("baseline", metavar="BASE.json")
    p.add_argument("candidate", metavar="CANDIDATE.json")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--max-regression", metavar="[SCENARIO:]METRIC.STAT=PCT%", action="append", default=[])
    p.add_argument("--alpha", metavar="A", default="0.05",
                   help="significance level, between 0 and 1 exclusive (default 0.05)")
    p.add_argument("--html", metavar="OUT.html", help="also write the comparison as a self-contained HTML page")
    args = p.parse_args(argv)

    alpha = parse_alpha(args.alpha)
    gates = [parse_gate(g) for g in args.max_regression]
    if args.html:
        check_writable(args.html, "HTML page")
    result = compare_reports(load_report(args.baseline), load_report(args.candidate), gates=gates, alpha=alpha)
    if args.html:
        write_atomic(args.html, compare_html(result, args.baseline, args.candidate))
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2, allow_nan=False) + "\n")
    else:
        sys.stdout.write(render_table(result))
    failed = [g for g in result["gates"] if not g["passed"]]
    if failed:
        raise GateFailed(f"{len(failed)} regression gate(s) failed: " + "; ".join(g["message"] for g in failed))
    return 0


def _serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; another address warns: no TLS; docs/serve.md "
                        "has the threat model)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--allow-host", metavar="NAME[:PORT]", action="append", default=[],
                   help="also answer to this host name, and its pages (a proxy's or tunnel's name; repeatable): "
                        "pages of other names and sites are refused")
    p.add_argument("--no-token", action="store_true",
                   help="no secret in the URL (loopback addresses only): any local user may then connect")


def _port(text: str) -> int:
    v = _positive_int(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {v}")
    return v


def cmd_serve(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui serve", description="Serve the live dashboard to a web browser (textual-serve). "
                "Every other option is a run option (ttftui --help) and is checked now. One viewer at a time: "
                "a second browser tab is told the session is open elsewhere and starts nothing. Open the URL it "
                "prints: it carries a secret token, and pages of other sites or names are refused (docs/serve.md).")
    _serve_args(p)
    args, rest = p.parse_known_args(argv)
    access = serve_access(args.host, args.port, allow_hosts=args.allow_host, token=not args.no_token)
    run_args = _run_parser().parse_args(rest)  # bad run options fail here, not in the browser
    if run_args.headless or run_args.output:
        raise ConfigError("ttftui serve shows the dashboard: --headless and -o do not apply")
    if run_args.fail_on:
        raise ConfigError("--fail-on needs --headless (it sets the exit code of a headless run)")
    # every session a viewer starts is checked now, as the dashboard and headless check theirs, with
    # the same exit code: the config, scenarios, what fits, the model file, the baseline, the recording
    config, _names = _checked_run(run_args)
    select_engine(config, force_synthetic=run_args.synthetic, pace=config.engine.synthetic_pace)
    if run_args.baseline:
        _baseline(run_args.baseline)
    if (rec := _recording_path(config, run_args)) is not None:
        check_new_recording(rec)

    if (w := check_host(args.host)) is not None:
        _say(w)
    return run_server(rest, access=access, one_viewer=True, title="ttftui")


def cmd_report(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui report", description="Turn a JSON report or a recording into one self-contained "
                "HTML page (plots drawn as inline SVG; no script, nothing fetched: it opens offline).")
    p.add_argument("file", metavar="FILE", help="a JSON report (ttftui --headless -o) or a recording (.ttftrec[.gz])")
    p.add_argument("--html", metavar="OUT.html", required=True, help="the page to write")
    p.add_argument("--run", metavar="N", type=_positive_int,
                   help="the run whose token timeline is drawn (default: the median-TTFT run of the last scenario)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    args = p.parse_args(argv)

    check_writable(args.html, "HTML page")
    say = (lambda _m: None) if args.quiet else (lambda m: _say(f"report: {m}"))
    rep, what = headless.report_of(args.file, say)

    if args.run is not None and pick_run(rep.get("runs") or [], args.run) is None:
        ids = [r.get("run_id") for r in rep.get("runs") or []]
        raise ConfigError(f"--run {args.run}: no such run in {args.file} (its runs: "
                          f"{_ranges(i for i in ids if isinstance(i, int)) or 'none'})")
    title = f"ttftui report · {Path(args.file).name}"
    page = report_html(rep, run_id=args.run, title=title,
                       progress=lambda m: say(f"drawing {m}"))
    write_atomic(args.html, page)
    say(f"wrote {args.html} ({len(page.encode()) / 1024:,.0f} KiB) from {what}")
    return 0


def _ranges(ids: Any) -> str:
    xs = sorted(set(ids))
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(f"{xs[i]}" if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ", ".join(out)


def cmd_doctor(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui doctor", description="Which engine build and telemetry backends this installation "
                "has, why the others are unavailable, and what to install; then a smoke run of the engine "
                "(load, a 32-token prefill, 4 tokens) in its own process. Exit code: 0, or the error's code "
                "(e.g. 17 when llama.cpp crashed).")
    p.add_argument("--config", metavar="FILE", help="config file (default: ./config.toml if present)")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override a config key, e.g. --set model.n_gpu_layers=-1")
    p.add_argument("--model", metavar="PATH", help="GGUF model for the smoke run (default: the demo model)")
    args = p.parse_args(argv)

    sets: list[Any] = [*args.set, *([("model.path", args.model)] if args.model else [])]
    return run_doctor(config=load_config(args.config, sets))


def cmd_schema(argv: Sequence[str]) -> int:
    p = _Parser(prog="ttftui schema", description="Print the JSON Schema of ttftui's JSON report.")
    p.parse_args(argv)


    sys.stdout.write(json.dumps(report_schema(), indent=2) + "\n")
    return 0


def dispatch(argv: Sequence[str]) -> int:
    if argv and argv[0] in SUBCOMMANDS:
        name, rest = argv[0], argv[1:]
        handler = {"schema": cmd_schema, "replay": cmd_replay, "compare": cmd_compare, "doctor": cmd_doctor,
                   "report": cmd_report, "serve": cmd_serve}[name]
        return handler(rest)
    return cmd_run(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return dispatch(argv)
    except TtftuiError as e:
        _print_error(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the interpreter's flush at exit
        except OSError:
            pass
        return 0
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("TTFTUI_DEBUG"):
            traceback.print_exc()
        _print_error(f"internal error: {type(e).__name__}: {e} (set TTFTUI_DEBUG=1 for a traceback; please report it)")
        return 70


def _print_error(msg: str) -> None:
    _say(msg)


def _say(msg: str) -> None:
    say(msg)


def exit_codes_markdown() -> str:
    return exit_code_table()
