"""Hostile input: a recording, a config or an output target made by someone else, or a broken
environment, must never reach the terminal raw, crash the tool, or read as a result.

One test (at least) per class of the hostile-input review: (1) text from files is shown with its
control characters visible and never as markup; (2) user errors are user errors, not internal
errors; (4) what is read is bounded and must be a regular file; (5) output failures late in a
session keep what can be kept and exit 9; (6) damaged gzip, paths as data, strict types. Class 3
(compare's gates) lives in test_compare.py. Bounded fuzz tests (hypothesis) damage a real
recording and a real report.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import re
import subprocess
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ttftui.core.events import EngineReady, RunStarted, SessionStarted
from ttftui.core.textsafe import clean_event, visible

from .conftest import ROOT, cli, pty_run

OSC52 = "\x1b]52;c;aGFja2Vk\x07"  # would write the viewer's clipboard ("hacked")
CLEAR = "\x1b[2J"  # would wipe the screen
MARKUP = "[reverse]evil[/]"


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """A real (synthetic, instant) recording to mutate."""
    p = tmp_path_factory.mktemp("rec") / "s.ttftrec"
    r = cli("--headless", "-q", "--synthetic", "--iterations", "2", "--warmup", "0", "--record", str(p),
            "-o", os.devnull)
    assert r.returncode == 0, r.stderr
    return p


def hostile_copy(src: Path, dst: Path) -> Path:
    """The recording with OSC 52, a screen clear and markup in every name a viewer sees."""
    out = []
    for line in src.read_text().splitlines():
        ev = json.loads(line)
        if ev.get("type") == "engine_ready":
            ev["model"]["name"] = "model" + OSC52
            ev["model"]["path"] = "/m/" + OSC52 + ".gguf"
            ev["device"]["name"] = "dev" + CLEAR
        for key in ("scenario",):
            if key in ev:
                ev[key] = MARKUP + CLEAR
        if ev.get("type") == "session_started":
            for sc in ev["config"]["scenarios"]:
                sc["name"] = MARKUP + CLEAR
        out.append(json.dumps(ev))
    dst.write_text("\n".join(out) + "\n")
    return dst


# ------------------------------------------------------------------------------------------ class 1
def test_the_sanitiser_shows_control_characters_and_keeps_text():
    assert visible("a" + OSC52 + "b") == "a\\x1b]52;c;aGFja2Vk\\x07b"
    assert visible("\x9b2J\u202eevil") == "\\x9b2J\\u202eevil"  # C1 CSI, right-to-left override
    assert visible("naïve — ok\nnext") == "naïve — ok\nnext"
    assert visible("a\nb\tc", newlines=False) == "a\\nb\\tc"
    assert visible(MARKUP) == MARKUP  # markup is the renderer's business: it is drawn as Text, literally


def test_every_name_in_an_event_is_cleaned_but_nothing_else():
    ev = RunStarted(t_ns=1, run_id=1, scenario=MARKUP + CLEAR, iteration=0, warmup=False, prompt_tokens=3, max_tokens=2)
    assert clean_event(ev).scenario == MARKUP + "\\x1b[2J"
    s = SessionStarted(t_ns=0, session_id="x", started_at="t", ttftui_version="1",
                       config={"scenarios": [{"name": OSC52}], "n": 3})
    assert clean_event(s).config == {"scenarios": [{"name": visible(OSC52)}], "n": 3}
    plain = RunStarted(t_ns=1, run_id=1, scenario="short", iteration=0, warmup=False, prompt_tokens=3, max_tokens=2)
    assert clean_event(plain) is plain


def test_a_hostile_recording_is_cleaned_when_read(recording, tmp_path):
    from ttftui.run.recording import read_recording

    rec = read_recording(hostile_copy(recording, tmp_path / "h.ttftrec"))
    ready = next(e for e in rec.events if isinstance(e, EngineReady))
    assert "\x1b" not in ready.model.name + ready.model.path + ready.device.name
    assert ready.model.name == "model\\x1b]52;c;aGFja2Vk\\x07"
    assert all("\x1b" not in e.scenario for e in rec.events if isinstance(e, RunStarted))
    rep = cli("replay", str(tmp_path / "h.ttftrec"), "--headless")
    assert rep.returncode == 0 and "\x1b" not in rep.stdout + rep.stderr


def test_replaying_a_hostile_recording_in_the_dashboard_draws_it_escaped(recording, tmp_path):
    path = hostile_copy(recording, tmp_path / "h.ttftrec")
    code, before, out = pty_run(["replay", str(path), "--speed", "max"], {}, until=b"Percentiles", keys=b"q")
    assert code == 0, out[-3000:]
    assert b"\x1b]52" not in out  # the clipboard is never written
    assert CLEAR.encode() not in out.replace(b"\x1b[2J\x1b[H", b"")  # no clear but Textual's own at start, if any
    screen = out.decode("utf-8", errors="replace")
    assert "\\x1b]52" in screen  # shown, visibly
    assert "[reverse]evil[/]" in screen  # markup drawn literally in the percentile table and elsewhere


def test_an_error_line_never_carries_a_raw_escape(tmp_path):
    r = cli("--headless", "--model", str(tmp_path / ("m" + OSC52 + "\n.gguf")))
    assert r.returncode == 3
    assert "\x1b" not in r.stderr and r.stderr.count("\n") == 1
    assert "\\x1b]52" in r.stderr  # the path as given, its escape shown (and its newline folded into the line)


# ------------------------------------------------------------------------------------------ class 2
@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e308", "+nan", "--5", "1:-3", "9" * 40])
def test_seek_refuses_what_is_not_a_time(text):
    from ttftui.tui.app import parse_time

    assert parse_time(text, 10**9) is None


async def test_seek_to_nan_in_the_dashboard_is_refused_with_a_message(recording):
    from ttftui.run.pump import Pump
    from ttftui.run.recording import read_recording
    from ttftui.run.replay import ReplaySource
    from ttftui.tui.app import TtftApp

    rec = read_recording(recording)
    app = TtftApp(ReplaySource(rec.events, source_name=str(recording), speed=float("inf")), pump=Pump())
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        for text in ("nan", "inf", "1e308"):
            await pilot.press("g")
            await pilot.pause()
            for ch in text:
                await pilot.press(ch)
            await pilot.press("enter")
            await pilot.pause()
        notes = [str(n.message) for n in app._notifications]
        assert sum("not a time" in n for n in notes) == 3
        assert app.internal_error is None and app.is_running


def _mutated(src: Path, dst: Path, find: str, replace: str) -> Path:
    lines = src.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if find in line)
    lines[i] = lines[i].replace(find, replace, 1)
    dst.write_text("\n".join(lines) + "\n")
    return dst


@pytest.mark.parametrize("find,replace,field", [
    ('"t_ns":', '"t_ns":' + "9" * 400 + ',"_x":', "t_ns"),  # a 400-digit integer
    ('"load_ms":', '"load_ms":NaN,"_x":', "load_ms"),
    ('"load_ms":', '"load_ms":Infinity,"_x":', "load_ms"),
])
def test_absurd_numbers_in_a_recording_skip_the_line_with_a_warning(recording, tmp_path, find, replace, field):
    text = recording.read_text()
    # keep the line valid JSON apart from the number: the old value moves to an unknown key, then is dropped
    bad = tmp_path / "bad.ttftrec"
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if find in line and k > 0)
    ev = lines[i].replace(find, replace, 1)
    ev = ev.replace(',"_x":', ',"_x":', 1)
    import re

    ev = re.sub(r',"_x":-?[0-9.eE+]+', "", ev, count=1)
    lines[i] = ev
    bad.write_text("\n".join(lines) + "\n")
    r = cli("replay", str(bad), "--headless", "-o", str(tmp_path / "r.json"))
    assert r.returncode == 0, r.stderr
    assert f"line {i + 1} is not a valid event" in r.stderr and field in r.stderr
    json.loads((tmp_path / "r.json").read_text())


@pytest.mark.parametrize("setting", ["telemetry.interval_ms=inf", "telemetry.interval_ms=nan",
                                     "run.pause_ms=inf", "run.iterations=true", 'run.iterations="3"',
                                     "model.n_threads=100000", "model.n_ctx=99999999999"])
def test_config_numbers_are_finite_strict_and_bounded(setting):
    r = cli("--headless", "--synthetic", "--set", setting)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("ttftui: --set ") and r.stderr.count("\n") == 1


def test_a_toml_boolean_is_not_a_count(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[run]\niterations = true\n")
    r = cli("--headless", "--synthetic", "--config", str(cfg))
    assert r.returncode == 2 and "run.iterations" in r.stderr


def test_an_exception_in_the_dashboard_ends_with_exit_70_and_one_line(capsys):
    from ttftui.run.pump import Pump
    from ttftui.tui.app import TtftApp
    from ttftui.tui.launch import _internal_error

    from .tui_support import StaticSource

    class Broken(StaticSource):
        def drain(self):
            raise RuntimeError("a bug in a source")

    app = TtftApp(Broken([]), pump=Pump())
    app.run(headless=True, size=(100, 30))
    assert isinstance(app.internal_error, RuntimeError)
    assert _internal_error(app) == 70
    err = capsys.readouterr().err
    assert err.startswith("ttftui: internal error in the dashboard: RuntimeError: a bug in a source")
    assert err.count("\n") == 1 and "Traceback" not in err


# ------------------------------------------------------------------------------------------ class 4
def test_what_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "m.gguf"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    r = cli("--headless", "--model", str(fifo), timeout=60)
    assert r.returncode == 4 and "FIFO" in r.stderr
    r = cli("--headless", "--config", "/dev/zero", timeout=60)
    assert r.returncode == 2 and "character device" in r.stderr
    r = cli("replay", "/dev/zero", "--headless", timeout=60)
    assert r.returncode == 10 and "character device" in r.stderr
    r = cli("replay", str(fifo), "--headless", timeout=60)
    assert r.returncode == 10 and "FIFO" in r.stderr
    assert time.monotonic() - t0 < 50  # nothing blocked


def _gzip_bomb(path: Path, header: bytes, inflated: int) -> None:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    with path.open("wb") as f:
        f.write(c.compress(header))
        block = b" " * (1 << 20)
        for _ in range(inflated >> 20):
            f.write(c.compress(block))
        f.write(c.flush())


def test_a_gzip_bomb_is_refused_within_its_limit(tmp_path):
    bomb = tmp_path / "bomb.ttftrec.gz"
    _gzip_bomb(bomb, b'{"kind":"ttftui.recording","schema_version":1}\n', 300 << 20)
    assert bomb.stat().st_size < 1 << 20
    r = cli("replay", str(bomb), "--headless", timeout=120)
    assert r.returncode == 10 and "decompression bomb" in r.stderr and "MiB" in r.stderr


def test_thread_count_is_bounded_to_what_llama_cpp_can_run():
    r = cli("--headless", "--set", "model.n_threads=100000")
    assert r.returncode == 2 and "512" in r.stderr


# ------------------------------------------------------------------------------------------ class 5
def test_an_unwritable_stderr_does_not_stop_the_session(tmp_path):
    out = tmp_path / "r.json"
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "ttftui", "--headless", "--synthetic", "--iterations", "2", "-o",
                            str(out)], cwd=ROOT, stderr=full, stdout=subprocess.PIPE, timeout=120)
    assert r.returncode == 0
    assert json.loads(out.read_text())["runs"]


def test_a_closed_stdout_is_exit_9_with_a_reason():
    r = subprocess.run([sys.executable, "-m", "ttftui", "--headless", "--synthetic", "--iterations", "1"],
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    assert r.returncode == 9
    assert r.stderr.strip().splitlines()[-1].startswith("ttftui: cannot write the report to standard output")


def test_a_full_disk_while_recording_keeps_the_report_and_the_recording(tmp_path):
    import resource

    out, rec = tmp_path / "r.json", tmp_path / "r.ttftrec"
    limit = 100 * 1024  # the recording outgrows it, the report does not

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    r = subprocess.run([sys.executable, "-m", "ttftui", "--headless", "--synthetic", "--iterations", "3", "-q",
                        "--record", str(rec), "-o", str(out)], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                       timeout=120, preexec_fn=cap)
    assert r.returncode == 9, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"ttftui: cannot write recording {rec}: File too large")
    assert len(json.loads(out.read_text())["runs"]) == 12  # the report has every run (3 scenarios x 4)
    rep = cli("replay", str(rec), "--headless")
    assert rep.returncode == 0 and json.loads(rep.stdout)["runs"]  # the recording replays up to where it stopped


# ------------------------------------------------------------------------------------------ class 6
def test_a_damaged_gzip_recording_replays_what_inflates(recording, tmp_path):
    gz = gzip.compress(recording.read_bytes())
    damaged = tmp_path / "d.ttftrec.gz"
    cut = len(gz) * 2 // 3
    damaged.write_bytes(gz[:cut] + bytes(b ^ 0xFF for b in gz[cut:cut + 64]) + gz[cut + 64:])
    r = cli("replay", str(damaged), "--headless")
    assert r.returncode == 0, r.stderr
    assert "damaged" in r.stderr or "cut off" in r.stderr
    assert json.loads(r.stdout)["runs"]


def test_a_model_path_is_data_not_toml(tmp_path):
    weird = tmp_path / 'a"b\nc\\d.gguf'
    weird.write_bytes(b"not a model")
    r = cli("--headless", "--model", str(weird))
    # exit 4, not 3: the file was found and opened, so the path arrived intact (quote, newline, backslash)
    assert r.returncode == 4, r.stderr
    assert "is not a GGUF file (starts with b'not '" in r.stderr


# ------------------------------------------------------------------------------------------ fuzz
# Hypothesis makes the damaged inputs: derandomized (the same examples on every run and machine),
# no example database, no deadline (a shared CI machine), a bounded number of examples.
FUZZ = settings(max_examples=300, deadline=None, derandomize=True, database=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

EXTREMES = (0, -1, 1, 2**62, -(2**62), 2**63 - 1, 0.0, -0.5, 1e300, -1e300, "", "x", None, True, [], {})
# a value pushed to an extreme or of the wrong type; floats() includes NaN and ±inf (JSON's NaN/Infinity)
json_values = st.one_of(st.sampled_from(EXTREMES), st.integers(), st.floats(), st.text(max_size=8),
                        st.lists(st.integers(), max_size=3))
# where an edit lands: taken modulo the size of what it indexes, so it shrinks towards the start
index = st.integers(min_value=0, max_value=2**32)
extreme = st.tuples(st.just("extreme"), index, index, json_values)  # (line, value slot, value)
line_edit = st.one_of(
    st.tuples(st.just("flip"), st.lists(st.tuples(index, st.integers(0, 255)), min_size=1, max_size=8)),
    st.tuples(st.just("cut"), index),
    st.tuples(st.just("duplicate"), index, index),
    st.tuples(st.just("delete"), index),
    st.tuples(st.just("digits"), index, st.sampled_from((20, 400))),  # a 20- or 400-digit number
    st.tuples(st.just("nan"), index),
    st.tuples(st.just("escape"), index),  # OSC 52 in a string
    st.tuples(st.just("reverse"), index),
    st.tuples(st.just("nest"), index, st.sampled_from((50, 5000))),  # a value nested 50 or 5,000 deep
    st.tuples(st.just("negate"), index, index),  # a duration made negative
    extreme,
)


def _set_extreme(doc: object, slot: int, value: object) -> None:
    """Replace one value somewhere in ``doc`` (a JSON object; not an event's type) by ``value``."""
    slots: list[tuple[Any, Any]] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "type":
                    slots.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                slots.append((node, i))
                walk(v)

    walk(doc)
    if slots:
        node, key = slots[slot % len(slots)]
        node[key] = value


def _edit(data: bytes, edit: tuple[Any, ...]) -> bytes:
    """One edit of a recording's bytes (a JSON line each)."""
    op, *args = edit
    if op == "flip":
        b = bytearray(data)
        for at, byte in args[0]:
            if b:
                b[at % len(b)] = byte
        return bytes(b)
    if op == "cut":
        return data[: args[0] % max(1, len(data))]
    lines = data.split(b"\n")
    i = args[0] % len(lines)
    if op == "extreme":  # a valid JSON line (not the header) with one value pushed to an extreme
        i = 1 + args[0] % max(1, len(lines) - 2)
        try:
            doc = json.loads(lines[i])
        except (ValueError, IndexError):
            return data
        _set_extreme(doc, args[1], args[2])
        lines[i] = json.dumps(doc).encode()
    elif op == "duplicate":
        lines.insert(i, lines[args[1] % len(lines)])
    elif op == "delete":
        del lines[i]
    elif op == "digits":
        lines[i] = lines[i].replace(b"1", b"9" * args[1], 1)
    elif op == "nan":
        lines[i] = lines[i].replace(b":", b':NaN,"x":', 1)
    elif op == "escape":
        lines[i] = lines[i].replace(b'"', b'"\x1b]52;c;', 1)
    elif op == "nest":
        lines[i] = lines[i].replace(b":", b":" + b"[" * args[1] + b"]" * args[1] + b',"x":', 1)
    elif op == "negate":
        spots = [m.start(1) for m in re.finditer(rb'_(?:ns|ms)":([0-9])', lines[i])]
        if spots:
            at = spots[args[1] % len(spots)]
            lines[i] = lines[i][:at] + b"-" + lines[i][at:]
    else:
        lines[i] = lines[i][::-1]
    return b"\n".join(lines)


def _run_cli(argv: list[str]) -> tuple[int, str, str]:
    """ttftui's command line, in this process (as fast as the library calls, and the same top-level
    handler that turns an error into one line and an exit code): (exit code, stdout, stderr)."""
    from ttftui.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def _assert_one_line_error(code: int, err: str, allowed: set[int]) -> None:
    """The property: a result (0), or a ttftui error: one ``ttftui:`` line and an exit code of its own
    (never 70, the internal error, never a traceback, never a raw escape)."""
    event(f"exit {code}")  # pytest --hypothesis-show-statistics: how the examples ended
    assert code in allowed, f"exit {code}: {err!r}"
    assert "Traceback" not in err and "\x1b" not in err, err
    if code:
        assert err.count("\n") == 1 and err.startswith("ttftui: "), err
    else:
        assert err == "", err


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(edits=st.lists(line_edit, min_size=1, max_size=2),
       packing=st.sampled_from(("plain", "plain", "gzip", "gzip-cut")), cut=index,
       fmt=st.sampled_from(("json", "csv")), strict=st.booleans())
def test_fuzzed_recordings_never_cause_an_internal_error(recording, fuzz_dir, edits, packing, cut, fmt, strict):
    """Damaged copies of a real recording (plain or gzip, whole or cut off): ``replay --headless``
    (the reader, the reducer, the report) either writes a report or stops with a one-line ttftui
    error and its exit code (10 to 13), never anything else."""
    data = recording.read_bytes()
    for edit in edits:
        data = _edit(data, edit)
    if packing != "plain":
        data = gzip.compress(data)
        if packing == "gzip-cut":
            data = data[: 1 + cut % (len(data) - 1)]
    target = fuzz_dir / ("f.ttftrec.gz" if packing != "plain" else "f.ttftrec")
    target.write_bytes(data)
    code, out, err = _run_cli(["replay", str(target), "--headless", "-q", "--format", fmt]
                              + (["--strict"] if strict else []))
    _assert_one_line_error(code, err, {0, 10, 11, 12, 13})
    if code == 0 and fmt == "json":
        json.loads(out, parse_constant=lambda c: pytest.fail(f"the report has {c}"))


@pytest.fixture(scope="module")
def fuzz_report(fuzz_dir) -> tuple[Path, dict[str, Any]]:
    base = fuzz_dir / "base.json"
    r = cli("--headless", "-q", "--synthetic", "--iterations", "3", "-o", str(base))
    assert r.returncode == 0, r.stderr
    return base, json.loads(base.read_text())


@FUZZ
@given(values=st.lists(st.tuples(index, json_values), min_size=1, max_size=3),
       damage=st.none() | st.tuples(index, st.sampled_from(["", "NaN", "1e999", "\x1b]52;c;", "}", "9" * 400])),
       as_json=st.booleans())
def test_fuzzed_reports_never_cause_an_internal_error(fuzz_report, fuzz_dir, values, damage, as_json):
    """Damaged copies of a real report: ``compare`` (with two gates) either compares (0, or 1 when a
    gate fails) or refuses with a one-line ttftui error (14 for the report), never an internal error."""
    base, doc = fuzz_report
    mutated = json.loads(json.dumps(doc))
    for slot, value in values:
        _set_extreme(mutated, slot, value)
    text = json.dumps(mutated)
    if damage is not None:  # damage the text itself too
        at, what = damage
        k = at % len(text)
        text = text[:k] + what + text[k + 1:]
    target = fuzz_dir / "cand.json"
    target.write_text(text)
    code, out, err = _run_cli(["compare", str(base), str(target), "--max-regression", "ttft_ms.p95=10%",
                               "--max-regression", "short:decode_tps.p50=5%"] + (["--json"] if as_json else []))
    _assert_one_line_error(code, err, {0, 1, 14})
    if code in (0, 1) and as_json:
        json.loads(out, parse_constant=lambda c: pytest.fail(f"the comparison has {c}"))


# ------------------------------------------------------------------------------------------ the edges
# Issue 25: input that is merely malformed (nested 50,000 deep, not a regular file, values no
# measurement can produce) is a user error with its documented exit code, or is read leniently
# and said so; never exit 70, never a traceback, never a hang.
DEEP = 50_000


def _one_line(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Exit ``code`` and exactly one ``ttftui:`` line on stderr (the runs are all -q), holding every needle."""
    assert r.returncode == code, (r.returncode, r.stderr[-2000:])
    assert r.stderr.startswith("ttftui: ") and r.stderr.count("\n") == 1, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, r.stderr
    return r.stderr


@pytest.fixture(scope="module")
def report_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("rep") / "r.json"
    r = cli("--headless", "-q", "--synthetic", "--iterations", "2", "--warmup", "0", "-o", str(p))
    assert r.returncode == 0, r.stderr
    return p


def _deep_json(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize("where", ["arrays", "inline tables", "--set"])
def test_a_config_nested_50000_deep_is_exit_2(tmp_path, where):
    cfg = tmp_path / "deep.toml"
    if where == "arrays":
        cfg.write_text(f"x = {_deep_json(DEEP)}\n")
    else:
        cfg.write_text("x = " + "{a=" * DEEP + "1" + "}" * DEEP + "\n")
    args = ["--set", f"run.iterations={_deep_json(DEEP // 10)}"] if where == "--set" else ["--config", str(cfg)]
    r = cli("--headless", "-q", "--synthetic", *args, "-o", os.devnull, timeout=120)
    _one_line(r, 2, "nested too deeply")


def test_a_recording_nested_50000_deep_is_exit_11_13_or_skipped(recording, tmp_path):
    header = tmp_path / "header.ttftrec"
    header.write_text('{"kind":"ttftui.recording","schema_version":1,"x":' + _deep_json(DEEP) + "}\n")
    _one_line(cli("replay", str(header), "--headless", "-q", timeout=120), 11, "not a ttftui recording")
    first = tmp_path / "first.ttftrec"
    first.write_text(_deep_json(DEEP) + "\n")
    _one_line(cli("replay", str(first), "--headless", "-q", timeout=120), 11, "not a ttftui recording")
    # an event line nested that deep: skipped with a warning like any corrupt line; --strict: exit 13
    lines = recording.read_text().splitlines()
    lines.insert(2, '{"type":"notice","t_ns":0,"level":"info","message":' + _deep_json(DEEP) + "}")
    body = tmp_path / "body.ttftrec"
    body.write_text("\n".join(lines) + "\n")
    r = cli("replay", str(body), "--headless", "-o", str(tmp_path / "r.json"), timeout=120)
    assert r.returncode == 0 and "line 3 is not a valid event" in r.stderr and "Traceback" not in r.stderr
    _one_line(cli("replay", str(body), "--headless", "-q", "--strict", timeout=120), 13, "line 3")


def test_a_report_nested_50000_deep_is_exit_14_everywhere_it_is_read(report_file, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text(report_file.read_text()[:-2] + ', "x": ' + _deep_json(DEEP) + "}")
    out = tmp_path / "o.html"
    _one_line(cli("report", str(deep), "--html", str(out), "-q", timeout=120), 14, "nested too deeply")
    _one_line(cli("compare", str(report_file), str(deep), timeout=120), 14, "nested too deeply")
    _one_line(cli("--headless", "-q", "--synthetic", "--baseline", str(deep), timeout=120), 14, "nested too deeply")
    assert not out.exists()


def test_report_html_refuses_what_is_not_a_regular_file_at_once(report_file, tmp_path):
    """A FIFO, a directory, a device or a file far too big, given to ``report --html`` (which first
    peeks at the file to tell a recording from a report): refused with one line, never read or
    waited on. A FIFO with no writer would block an ordinary open() for ever: the timeout is the check."""
    fifo, fifo_rec, folder, huge = (tmp_path / "r.json", tmp_path / "r.ttftrec", tmp_path / "d.json",
                                    tmp_path / "huge.json")
    os.mkfifo(fifo)
    os.mkfifo(fifo_rec)
    folder.mkdir()
    with huge.open("wb") as f:
        f.truncate(3 << 30)  # sparse: 3 GiB that take no room
    out = str(tmp_path / "o.html")
    for path, code, why in ((fifo, 14, "FIFO"), (fifo_rec, 10, "FIFO"), (folder, 14, "directory"),
                            ("/dev/zero", 14, "character device"), (huge, 14, "MiB")):
        _one_line(cli("report", str(path), "--html", out, "-q", timeout=60), code, why)
    _one_line(cli("compare", str(fifo), str(report_file), timeout=60), 14, "FIFO")
    _one_line(cli("--headless", "-q", "--synthetic", "--baseline", str(fifo), timeout=60), 14, "FIFO")
    _one_line(cli("--headless", "-q", "--synthetic", "--config", str(fifo), timeout=60), 2, "FIFO")
    _one_line(cli("report", "~nosuchuser/r.json", "--html", out, "-q", timeout=60), 14, "not found")
    assert not Path(out).exists()


def _rewrite(src: Path, dst: Path, edit: Any) -> Path:
    """``src`` with ``edit(event dict, state dict)`` applied to every event line (the header kept)."""
    lines = src.read_text().splitlines()
    state: dict[str, Any] = {}
    out = [lines[0]] + [json.dumps(edit(json.loads(line), state)) for line in lines[1:]]
    dst.write_text("\n".join(out) + "\n")
    return dst


def _first_run(ev: dict[str, Any], st: dict[str, Any], **change: Any) -> dict[str, Any]:
    """The first run's run_finished changed."""
    if ev["type"] == "run_finished" and st.setdefault("first", ev["run_id"]) == ev["run_id"]:
        ev.update(change)
    return ev


def _every(kind: str, **change: Any) -> Any:
    def edit(ev: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
        if ev["type"] == kind and (kind != "token" or ev["index"] > 0):
            ev.update(change)
        return ev
    return edit


def _backwards(ev: dict[str, Any], st: dict[str, Any]) -> dict[str, Any]:
    if ev["type"] == "token" and ev["index"] == 2 and "done" not in st:
        st["done"] = ev["t_ns"] = 0  # before its own run started
    return ev


IMPOSSIBLE = {  # what is done to a real recording: (the edit, runs left out as failed, reason in the notice)
    "negative TTFT": (lambda ev, st: _first_run(ev, st, ttft_ns=-250_000_000), 1,
                      "ttft_ns = -250 ms: a negative duration"),
    "every token gap -1 s": (_every("token", dt_ns=-1_000_000_000), 6, "dt_ns = -1,000 ms: a negative duration"),
    "E2E over a year": (lambda ev, st: _first_run(ev, st, e2e_ns=10**17), 1, "longer than a year"),
    "E2E before TTFT": (lambda ev, st: _first_run(ev, st, e2e_ns=1), 1, "shorter than ttft_ns"),
    "time going backwards": (_backwards, 1, "time going backwards"),
    "negative tokenize (may be null)": (_every("run_finished", tokenize_ns=-5), 0, "tokenize_ns = -5 ns: a negative "
                                                                                   "duration: left out (null)"),
    "negative load time (may be null)": (_every("engine_ready", load_ms=-1.0), 0, "load_ms = -1 ms"),
}


def _numbers(node: Any, key: str = "") -> list[tuple[str, float]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _numbers(v, k)]
    if isinstance(node, list):
        return [x for v in node for x in _numbers(v, key)]
    return [(key, node)] if isinstance(node, (int, float)) and not isinstance(node, bool) else []


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_values_no_measurement_can_produce_are_left_out_with_a_notice(recording, tmp_path, case):
    """Negative durations, durations over a year, a TTFT after the run's end, time going backwards
    within a run: the value is null where it may be, else its run is left out of the statistics
    (counted as failed, saying why); a notice in the report says which, one warning says how many;
    --strict refuses the recording (13). What remains in the report is a time that can be."""
    edit, n_failed, why = IMPOSSIBLE[case]
    bad = _rewrite(recording, tmp_path / "bad.ttftrec", edit)
    out = tmp_path / "r.json"
    r = cli("replay", str(bad), "--headless", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "impossible value" in r.stderr and "Traceback" not in r.stderr
    rep = json.loads(out.read_text())
    assert any(why in n["message"] for n in rep["notices"]), [n["message"] for n in rep["notices"]]
    assert len(rep["failed_runs"]) == n_failed
    assert all(why.split(":")[0] in f["error"] for f in rep["failed_runs"])
    assert sum(s["n_failed"] for s in rep["summary"].values()) == n_failed
    assert len(rep["runs"]) == 6 - n_failed
    times = [(k, v) for k, v in _numbers(rep["runs"]) if k.endswith("_ms") and k != "unaccounted_ms"]
    assert all(0 <= v < 3.2e10 for _, v in times), [kv for kv in times if not 0 <= kv[1] < 3.2e10][:5]
    _one_line(cli("replay", str(bad), "--headless", "-q", "--strict"), 13, why.split(":")[0], "--strict")


def test_the_report_html_of_a_recording_with_impossible_values_shows_the_notice(recording, tmp_path):
    bad = _rewrite(recording, tmp_path / "bad.ttftrec", IMPOSSIBLE["negative TTFT"][0])
    out = tmp_path / "o.html"
    r = cli("report", str(bad), "--html", str(out), "-q")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "ttft_ns = -250 ms: a negative duration" in out.read_text()


# TOML values of every kind, absurd or of the wrong type, and nesting deep enough to exhaust a parser
toml_values = st.one_of(
    st.sampled_from(("0", "-1", "1e308", "-1e308", "inf", "nan", "true", '""', '"x"', "[]", "[1, 2]", "{}", "{a = 1}",
                     "9" * 30, "2024-01-01", '"\\u0000"', '"""\na"""')),
    st.integers(0, 3).map(lambda k: "[" * (10 ** k) + "]" * (10 ** k)),
    st.integers(0, 3).map(lambda k: "{a = " * (10 ** k) + "1" + "}" * (10 ** k)),
)
config_edit = st.one_of(
    st.tuples(st.just("value"), index, toml_values),  # a key's value replaced
    st.tuples(st.just("delete"), index),
    st.tuples(st.just("duplicate"), index, index),
    st.tuples(st.just("flip"), index, st.integers(0, 255)),
    st.tuples(st.just("key"), toml_values),  # an unknown key at the top
)


def _edit_config(text: str, edit: tuple[Any, ...]) -> str:
    op, *args = edit
    lines = text.split("\n")
    i = args[0] % len(lines) if op != "key" else 0
    if op == "value":
        keyed = [k for k, line in enumerate(lines) if "=" in line and not line.lstrip().startswith("#")]
        if keyed:
            k = keyed[args[0] % len(keyed)]
            lines[k] = lines[k].partition("=")[0] + "= " + args[1]
    elif op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(i, lines[args[1] % len(lines)])
    elif op == "flip":
        b = bytearray("\n".join(lines).encode())
        b[args[0] % len(b)] = args[1]
        return b.decode("utf-8", "replace")
    else:
        lines.insert(0, "x = " + args[0])
    return "\n".join(lines)


@FUZZ
@given(edits=st.lists(config_edit, min_size=1, max_size=3), set_value=st.none() | toml_values | st.text(max_size=30))
def test_fuzzed_configs_never_cause_an_internal_error(fuzz_dir, edits, set_value):
    """Damaged copies of the repository's config.toml, and odd ``--set`` values (newlines, nesting,
    absurd numbers): the loader either gives a config or a one-line ConfigError (exit 2), never
    another exception."""
    from ttftui.core.config import load_config
    from ttftui.core.errors import ConfigError

    text = (ROOT / "config.toml").read_text()
    for edit in edits:
        text = _edit_config(text, edit)
    target = fuzz_dir / "c.toml"
    target.write_text(text, encoding="utf-8", errors="surrogatepass")
    sets = [] if set_value is None else [f"run.iterations={set_value}", f"report.percentiles={set_value}"]
    try:
        load_config(target, sets)
        event("valid")
    except ConfigError as e:
        event("exit 2")
        assert "\n" not in str(e) and ConfigError.exit_code == 2


@settings(FUZZ, max_examples=120)
@given(values=st.lists(st.tuples(index, json_values), min_size=1, max_size=4),
       big=st.sampled_from((None, 1e308, -1e308, 5e-324, 1e19, 2**63 - 1)))
def test_fuzzed_reports_never_break_report_html(fuzz_report, fuzz_dir, values, big):
    """Damaged copies of a real report, optionally with every float made absurd: ``report --html``
    writes a page or refuses with one line (14; 11 when it is not a report at all)."""
    _, doc = fuzz_report
    mutated = json.loads(json.dumps(doc))
    if big is not None:
        stack: list[Any] = [mutated]
        while stack:
            node = stack.pop()
            for k, v in list(node.items() if isinstance(node, dict) else enumerate(node)):
                if k == "config":
                    continue
                if isinstance(v, (dict, list)):
                    stack.append(v)
                elif isinstance(v, float):
                    node[k] = float(big)
    for slot, value in values:
        _set_extreme(mutated, slot, value)
    target, out = fuzz_dir / "h.json", fuzz_dir / "h.html"
    target.write_text(json.dumps(mutated))
    code, _, err = _run_cli(["report", str(target), "--html", str(out), "-q"])
    _assert_one_line_error(code, err, {0, 11, 14})
    if code == 0:
        out.read_bytes().decode("utf-8")
