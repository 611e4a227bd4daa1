"""The headless front end: a session, or a recording, turned into its JSON/CSV report (and the
exit code CI reads), with progress lines on stderr. Never imports Textual."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ttftui.analysis.alerts import AlertEvaluator, fired
from ttftui.analysis.reducer import fold
from ttftui.cluster.executors import executors_for
from ttftui.core.errors import (
    GateFailed,
    Interrupted,
    NotARecording,
    OutputNotWritable,
    ReportError,
    ServerFailed,
    Terminated,
    TtftuiError,
)
from ttftui.core.inputs import InputRefused, expand_path, read_head
from ttftui.core.output import check_writable, say, write_atomic
from ttftui.measure.select import select_engine
from ttftui.report.build import build_report, report_json
from ttftui.report.compare import load_full_report
from ttftui.report.csv import report_csv
from ttftui.run.live import LiveSession
from ttftui.run.progress import Progress
from ttftui.run.pump import Pump, run_live
from ttftui.run.recording import read_recording


def run_headless_cli(config: Any, names: list[str], args: argparse.Namespace, recorder: Any = None) -> int:
    if args.output:
        check_writable(args.output, "report")
    factory = select_engine(config, force_synthetic=args.synthetic, pace=False)
    session = LiveSession(config, names, factory, executors=executors_for(config))
    runner = session.runner
    sinks: list[Any] = [Progress(lambda: runner.planned_runs, quiet=args.quiet)]
    if recorder is not None:
        sinks.insert(0, recorder)

    pump = Pump(sinks, evaluator=AlertEvaluator(config.alerts))
    try:
        state = run_live(session, pump)
    finally:
        if recorder is not None:
            recorder.close()
            if not args.quiet and recorder.error is None:
                say(f"recorded {recorder.n_events} events to {recorder.path}")
    # Whatever can still be written is written: a failed recording does not cost the report, nor
    # the report the recording; then the first output failure sets the exit code (9).
    failures: list[TtftuiError] = []
    if state.runs:  # nothing ran (e.g. failed while loading): leave nothing behind at -o
        report = build_report(state, source={"kind": "live"})
        text = report_csv(report) if args.format == "csv" else report_json(report)
        try:
            write_report(text, args.output)
        except OutputNotWritable as e:
            failures.append(e)
    if recorder is not None and recorder.error is not None:
        failures.append(OutputNotWritable(recorder.error))
    if failures:
        for other in [*failures[1:], *([runner.error] if isinstance(runner.error, TtftuiError) else [])]:
            say(str(other))  # said too; the exit code is the first output failure's
        raise failures[0]
    if runner.error is not None:
        raise runner.error
    status = state.finished.status if state.finished else "failed"
    if status not in ("interrupted", "terminated"):  # a stop says so (130/143), whatever the runs did
        _no_server_success(state)
    _gate(state, args.fail_on)
    if status == "interrupted":
        raise Interrupted(f"interrupted after {len(state.runs)} run(s); the report holds the completed runs")
    if status == "terminated":
        raise Terminated(f"terminated after {len(state.runs)} run(s); the report holds the completed runs")
    return 0


def write_report(text: str, output: str | None) -> None:
    """The report to ``-o`` (atomically) or to standard output; a failure is exit 9 with the reason."""

    if output:
        write_atomic(output, text)
        return
    out = sys.stdout
    if out is None:  # started with stdout closed (>&-)
        raise OutputNotWritable("cannot write the report to standard output: it is closed (use -o FILE)")
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError) as e:
        _silence_stdout()
        raise OutputNotWritable(f"cannot write the report to standard output: {getattr(e, 'strerror', None) or e} "
                                "(use -o FILE)") from None


def _silence_stdout() -> None:
    """After stdout failed, keep the interpreter's own flush at exit from failing again, loudly."""
    try:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    except OSError:
        pass


def _no_server_success(state: Any) -> None:
    """Against a server, a session where every run failed is an error (18), not an empty success."""
    if state.engine is None or state.engine.engine != "remote" or not state.runs:
        return
    if any(r.metrics is not None for r in state.runs):
        return

    first = next((r.failed for r in state.runs if r.failed), "no run finished")
    raise ServerFailed(f"no request to {state.engine.model.path} succeeded ({len(state.runs)} failed; first: {first})")


def _gate(state: Any, fail_on: str | None) -> None:
    """--fail-on: exit 1 (a gate, not an error) when a rule of that severity fired at any point."""
    if not fail_on:
        return

    hits = fired(state.alerts, fail_on)
    if hits:
        names = sorted({f"{a.rule} [{a.scenario}]" for a in hits})
        raise GateFailed(f"{len(names)} alert rule(s) of severity >= {fail_on} fired: {'; '.join(names)}")


def replay_headless(rec: Any, output: str | None, fmt: str, fail_on: str | None = None) -> int:
    state = fold(rec.events)
    report = build_report(state, source={"kind": "replay", "file": rec.path, "warnings": rec.warnings})
    text = report_csv(report) if fmt == "csv" else report_json(report)
    write_report(text, output)
    _gate(state, fail_on)
    return 0


def report_of(path: str, say: Any) -> tuple[dict[str, Any], str]:
    """(report dict, what it came from): a recording is folded into its report, a JSON report is
    read as it is; anything else is an error naming what was expected."""

    p = expand_path(path)
    if not p.exists():
        raise ReportError(f"report or recording not found: {p}")
    say(f"reading {p}")
    head = b""
    try:
        head = read_head(p, 256)  # never blocks: a FIFO or a device is refused, not opened for reading
    except (OSError, ValueError, InputRefused):
        pass  # the reader below says why, with its own exit code
    looks_recording = head.startswith(b"\x1f\x8b") or b'"ttftui.recording"' in head or p.name.endswith(
        (".ttftrec", ".ttftrec.gz"))
    if looks_recording:
        rec = read_recording(p)
        for w in rec.warnings:
            say(f"warning: {w}")
        say(f"folding {len(rec.events):,} events")
        report = build_report(fold(rec.events), source={"kind": "replay", "file": rec.path, "warnings": rec.warnings})
        return report.model_dump(mode="json"), f"a recording of {len(rec.events):,} events"
    try:
        return load_full_report(str(p)), "a JSON report"
    except ReportError as e:
        if "is not a ttftui report" in str(e) or "is not JSON" in str(e) or "not UTF-8" in str(e):
            raise NotARecording(f"{p} is neither a ttftui JSON report nor a recording") from None
        raise
