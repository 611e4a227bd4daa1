"""Recordings and replay: round trip, damage tolerance, strictness, signals, seek, replay keys."""

from __future__ import annotations

import gzip
import json
import signal
from dataclasses import dataclass

import pytest

from ttftui.core.errors import NotARecording, OutputNotWritable, RecordingCorrupt, RecordingNotFound, RecordingTooNew
from ttftui.core.events import RunStarted, SessionFinished, event_to_json
from ttftui.run.recording import RECORDING_SCHEMA_VERSION, Recorder, read_recording
from ttftui.analysis.reducer import fold
from ttftui.run.replay import ReplaySource
from ttftui.report.build import build_report

from .conftest import TINY, FakeWall, assert_one_line_error, cli, spawn, wait_until, write_config
from .tui_support import synthetic_session


def without_source(rep: dict) -> dict:
    rep = dict(rep)
    rep.pop("source")
    return rep


def record(events, path, gz=None):
    r = Recorder(path, gzip_compress=gz)
    for e in events:
        r(e)
    r.close()
    return r


def small_session():
    return synthetic_session(iterations=1, warmup=0, scenarios=[{"name": "s", "prompt_tokens": 20, "max_tokens": 3}])


# ------------------------------------------------------------------ round trip
def test_synthetic_round_trip_report_equals_live(tmp_path):
    rec, live, rep = tmp_path / "s.ttftrec", tmp_path / "live.json", tmp_path / "replay.json"
    p = cli("--headless", "--synthetic", "-q", "--iterations", "3", "--record", str(rec), "-o", str(live))
    assert p.returncode == 0, p.stderr
    p = cli("replay", str(rec), "--headless", "-o", str(rep))
    assert p.returncode == 0, p.stderr
    a, b = json.loads(live.read_text()), json.loads(rep.read_text())
    assert b["source"]["kind"] == "replay" and a["source"]["kind"] == "live"
    assert without_source(a) == without_source(b)
    assert len(a["runs"]) == 12


@pytest.mark.model
def test_real_model_round_trip_report_equals_live(tmp_path):
    cfg = write_config(tmp_path, TINY)
    rec, live, rep = tmp_path / "r.ttftrec.gz", tmp_path / "live.json", tmp_path / "replay.json"
    p = cli("--headless", "-q", "--config", str(cfg), "--record", str(rec), "-o", str(live))
    assert p.returncode == 0, p.stderr
    assert rec.read_bytes()[:2] == b"\x1f\x8b"
    p = cli("replay", str(rec), "--headless", "-o", str(rep))
    assert p.returncode == 0, p.stderr
    a, b = json.loads(live.read_text()), json.loads(rep.read_text())
    assert a["synthetic"] is False
    assert without_source(a) == without_source(b)


def test_recording_holds_every_event_in_order(tmp_path):
    events = small_session()
    record(events, tmp_path / "a.ttftrec")
    got = read_recording(tmp_path / "a.ttftrec")
    assert got.events == events and got.warnings == []
    assert got.header["schema_version"] == RECORDING_SCHEMA_VERSION
    assert isinstance(got.events[-1], SessionFinished)


def test_gzip_round_trip(tmp_path):
    events = small_session()
    record(events, tmp_path / "a.ttftrec.gz")
    assert (tmp_path / "a.ttftrec.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress((tmp_path / "a.ttftrec.gz").read_bytes()).count(b"\n") == len(events) + 1
    assert read_recording(tmp_path / "a.ttftrec.gz").events == events


# ------------------------------------------------------------------ damage
def _check_prefix(got_events, events):
    assert got_events == events[: len(got_events)], "replay invented or changed data"


def test_truncation_at_every_byte_offset(tmp_path):
    events = small_session()
    record(events, tmp_path / "full.ttftrec")
    data = (tmp_path / "full.ttftrec").read_bytes()
    header_len = data.index(b"\n") + 1
    cut = tmp_path / "cut.ttftrec"
    for k in range(len(data) + 1):
        cut.write_bytes(data[:k])
        if k < header_len - 1:
            with pytest.raises(NotARecording):
                read_recording(cut)
            continue
        got = read_recording(cut)
        _check_prefix(got.events, events)
        state = fold(got.events)  # replay never crashes on what is left
        build_report(state)
        cut_mid_line = k > header_len and data[k - 1:k] != b"\n" and data[k:k + 1] != b"\n"
        if cut_mid_line:  # a line cut short is reported, never half-used
            assert any("incomplete" in w for w in got.warnings)


def test_truncated_gzip_recording_reads_up_to_the_last_flushed_event(tmp_path):
    events = small_session()
    record(events, tmp_path / "full.ttftrec.gz")
    data = (tmp_path / "full.ttftrec.gz").read_bytes()
    cut = tmp_path / "cut.ttftrec.gz"
    seen_partial = False
    for k in range(10, len(data) + 1):
        cut.write_bytes(data[:k])
        try:
            got = read_recording(cut)
        except NotARecording:
            continue  # header not flushed yet
        _check_prefix(got.events, events)
        seen_partial |= 0 < len(got.events) < len(events)
    assert seen_partial


def test_corrupt_middle_line_is_skipped_with_its_number_or_fails_strict(tmp_path):
    events = small_session()
    path = tmp_path / "c.ttftrec"
    record(events, path)
    lines = path.read_bytes().split(b"\n")
    lines[5] = b'{"type": "token", "t_ns": "soon"}'
    path.write_bytes(b"\n".join(lines))
    got = read_recording(path)
    assert len(got.events) == len(events) - 1
    assert any("line 6" in w and "skipped" in w for w in got.warnings)
    with pytest.raises(RecordingCorrupt, match="line 6"):
        read_recording(path, strict=True)
    p = cli("replay", str(path), "--headless", "-o", str(tmp_path / "r.json"))
    assert p.returncode == 0 and "line 6" in p.stderr and "warning" in p.stderr
    assert_one_line_error(cli("replay", str(path), "--headless", "--strict"), 13, r"line 6 is not a valid event")


def test_unknown_event_type_is_corrupt_not_ignored(tmp_path):
    path = tmp_path / "u.ttftrec"
    events = small_session()
    record(events, path)
    data = path.read_bytes().replace(b'"type":"notice"', b'"type":"mystery"', 1)
    path.write_bytes(data)
    with pytest.raises(RecordingCorrupt):
        read_recording(path, strict=True)


@pytest.mark.parametrize(
    "content, exc, code, pattern",
    [
        (b"", NotARecording, 11, r"is empty"),
        (b"\n\n", NotARecording, 11, r"is empty"),
        (b"[model]\nn_ctx = 5\n", NotARecording, 11, r"is not a ttftui recording"),
        (b'{"kind": "something.else", "schema_version": 1}\n', NotARecording, 11, r"is not a ttftui recording"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", NotARecording, 11, r"is not a ttftui recording"),
        (b'{"kind": "ttftui.recording", "schema_version": 99, "ttftui_version": "9.9"}\n', RecordingTooNew, 12,
         r"written with recording schema 99 \(ttftui 9.9\).*upgrade ttftui"),
    ],
)
def test_foreign_empty_and_newer_files(tmp_path, content, exc, code, pattern):
    path = tmp_path / "x.ttftrec"
    path.write_bytes(content)
    with pytest.raises(exc, match=pattern):
        read_recording(path)
    assert_one_line_error(cli("replay", str(path), "--headless"), code, pattern)


def test_missing_recording(tmp_path):
    with pytest.raises(RecordingNotFound):
        read_recording(tmp_path / "nope.ttftrec")
    assert_one_line_error(cli("replay", str(tmp_path / "nope.ttftrec"), "--headless"), 10, r"recording not found")


def test_old_versions_are_migrated(tmp_path, monkeypatch):
    """The migration path: a schema-0 file (hypothetical: events tagged "event" instead of "type") is
    upgraded by the registered step before validation."""
    from ttftui.run import recording

    def v0_to_v1(header, events):
        return header, [{("type" if k == "event" else k): v for k, v in e.items()} for e in events]

    monkeypatch.setitem(recording.MIGRATIONS, 0, v0_to_v1)
    events = small_session()
    lines = [json.dumps({"kind": "ttftui.recording", "schema_version": 0})]
    for e in events:
        d = json.loads(event_to_json(e))
        d["event"] = d.pop("type")
        lines.append(json.dumps(d))
    path = tmp_path / "old.ttftrec"
    path.write_text("\n".join(lines) + "\n")
    got = read_recording(path)
    assert got.events == events
    assert any("upgraded from recording schema 0" in w for w in got.warnings)


def test_recorder_never_overwrites_and_checks_its_folder(tmp_path):
    (tmp_path / "x.ttftrec").write_text("keep me")
    with pytest.raises(OutputNotWritable, match="already exists"):
        Recorder(tmp_path / "x.ttftrec")
    assert (tmp_path / "x.ttftrec").read_text() == "keep me"
    with pytest.raises(OutputNotWritable, match="does not exist"):
        Recorder(tmp_path / "no" / "x.ttftrec")
    assert_one_line_error(cli("--headless", "--synthetic", "--record", str(tmp_path / "no" / "r.ttftrec")), 9,
                          r"cannot write recording")


# ------------------------------------------------------------------ signals
def _wait_for_runs(path, n):
    """Until the recording at ``path`` holds ``n`` finished runs (the session is under way)."""
    wait_until(lambda: path.exists() and path.read_bytes().count(b'"type":"run_finished"') >= n, 120,
               what=f"{n} finished runs in {path.name}")


LONG = TINY.replace("iterations = 2", "iterations = 500")


@pytest.mark.model
@pytest.mark.parametrize("sig, code, status", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_signal_finishes_recording_and_report_cleanly(tmp_path, sig, code, status):
    write_config(tmp_path, LONG)
    rec, out = tmp_path / "r.ttftrec", tmp_path / "r.json"
    proc = spawn("--headless", "-q", "--config", "c.toml", "--record", str(rec), "-o", str(out), cwd=tmp_path)
    _wait_for_runs(rec, 2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("ttftui: ")
    got = read_recording(rec)
    assert got.warnings == []
    assert isinstance(got.events[-1], SessionFinished) and got.events[-1].status == status
    rep = json.loads(out.read_text())
    assert rep["session"]["status"] == status and len(rep["runs"]) >= 2


@pytest.mark.model
def test_sigkill_leaves_a_replayable_recording(tmp_path):
    write_config(tmp_path, LONG)
    rec = tmp_path / "r.ttftrec"
    proc = spawn("--headless", "-q", "--config", "c.toml", "--record", str(rec), cwd=tmp_path)
    _wait_for_runs(rec, 2)
    proc.kill()
    proc.communicate(timeout=30)
    got = read_recording(rec)
    assert not any(isinstance(e, SessionFinished) for e in got.events)
    state = fold(got.events)
    assert len(state.runs) >= 2
    rep = cli("replay", str(rec), "--headless")
    assert rep.returncode == 0
    assert json.loads(rep.stdout)["session"]["status"] == "incomplete"


# ------------------------------------------------------------------ seek and pacing
def test_seek_state_equals_folding_from_the_start():
    events = synthetic_session(iterations=2, warmup=1)
    src = ReplaySource(events, wall=FakeWall(0.0))
    src.start()
    end = src.end_ns
    for frac in (0.0, 0.1, 0.33, 0.5, 0.77, 0.99, 1.0, 0.2):
        t = int(end * frac)
        src.seek(t)
        state = src.take_reset()
        want = fold([e for e in events if e.t_ns <= t])
        assert build_report(state) == build_report(want)
        assert (state.current and (state.current.run_id, len(state.current.tokens))) == \
               (want.current and (want.current.run_id, len(want.current.tokens)))


def test_replay_paces_by_recorded_time_and_speed():
    events = synthetic_session(iterations=1, warmup=0)
    wall = FakeWall(0.0)
    src = ReplaySource(events, wall=wall, speed=2.0)
    src.start()
    got = src.drain()
    assert all(e.t_ns <= events[0].t_ns for e in got)
    wall.t = 1.0  # one wall second at 2x = two recorded seconds
    got += src.drain()
    assert got == [e for e in events if e.t_ns <= 2_000_000_000]
    src.toggle_pause()
    wall.t = 5.0
    assert src.drain() == []
    src.toggle_pause()
    src.speed = float("inf")
    while not src.finished:
        got += src.drain()
    assert got == events


def test_run_stepping():
    events = synthetic_session(iterations=2, warmup=0)
    starts = [e.t_ns for e in events if isinstance(e, RunStarted)]
    src = ReplaySource(events, wall=FakeWall(0.0))
    src.start()
    src.seek_run(+1)
    assert src.now_ns() == starts[0]
    src.seek_run(+1)
    assert src.now_ns() == starts[1]
    src.seek_run(-1)
    assert src.now_ns() == starts[0]
    src.seek_end()
    assert src.finished
    src.seek_start()
    assert src.now_ns() == 0


async def test_replay_keys_in_the_dashboard():
    from ttftui.tui.app import TtftApp

    events = synthetic_session(iterations=2, warmup=0)
    wall = FakeWall(0.0)
    src = ReplaySource(events, wall=wall, source_name="test.ttftrec")
    app = TtftApp(src)
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("space")
        assert src.paused
        await pilot.press("plus", "plus")
        assert src.speed == 4.0
        await pilot.press("minus")
        assert src.speed == 2.0
        await pilot.press("right_square_bracket", "right_square_bracket")
        await pilot.pause()
        runs_started = sum(isinstance(e, RunStarted) for e in events if e.t_ns <= src.now_ns())
        assert runs_started == 2
        assert app.pump.state.current is not None and app.pump.state.current.run_id == 2
        await pilot.press("end")
        await pilot.pause()
        assert src.finished and len(app.pump.state.runs) == 6
        await pilot.press("home")
        await pilot.pause()
        assert len(app.pump.state.runs) == 0
        await pilot.press("g")
        await pilot.pause()
        await pilot.press(*"0:06", "enter")
        await pilot.pause()
        assert src.now_ns() == 6_000_000_000
        assert app.pump.state.last_t_ns <= 6_000_000_000
        await pilot.press("r")  # live-only: disabled in replay
        await pilot.press("q")
    assert app.return_code == 0
    assert "REPLAY" in app.w_status.content.plain and "test.ttftrec" in app.w_status.content.plain


def test_previous_run_from_the_end_and_twice_while_playing():
    """At the end the run shown is the last that ended: "[" goes to the one before it. A second "["
    soon after goes one further back even though the replay played on meanwhile; later, "[" restarts
    the run in progress."""
    events = synthetic_session(iterations=3, warmup=0)
    starts = [e.t_ns for e in events if isinstance(e, RunStarted)]
    wall = FakeWall(0.0)
    src = ReplaySource(events, wall=wall, speed=1.0)
    src.start()
    src.seek_end()
    src.seek_run(-1)
    assert src.now_ns() == starts[-2]
    wall.t += 0.3
    src.drain()  # it plays on for 0.3 s
    assert src.now_ns() > starts[-2]
    src.seek_run(-1)
    assert src.now_ns() == starts[-3]
    wall.t += 0.1
    src.drain()
    wall.t += 5.0  # much later, inside the same run: "[" restarts it
    src.seek_run(-1)
    assert src.now_ns() == starts[-3]


# ------------------------------------------------------------------ what UTF-8 cannot hold
def test_a_recording_stays_utf8_json_when_text_has_lone_surrogates_or_nul(tmp_path):
    """A server's JSON ``"\\ud800"`` escape makes a string UTF-8 cannot encode; the recorder writes it
    as U+FFFD (a pair of surrogates as the character it makes) instead of failing, and NUL and
    control characters as JSON escapes: every line is UTF-8 JSON that replays."""
    from ttftui.core.events import Notice, TokenEmitted

    base = [e for e in small_session() if not isinstance(e, SessionFinished)]
    odd = ["a\ud800b", "\x00nul", "\udfff\ud83d", "\ud83d\ude00 ok", "\x1b[2J\x07"]
    tokens = [TokenEmitted(t_ns=10**9 + i, run_id=99, index=i, token_id=i, text=t, dt_ns=1) for i, t in enumerate(odd)]
    events = base + tokens + [Notice(t_ns=2 * 10**9, level="info", message="m\ud800")] + [SessionFinished(
        t_ns=3 * 10**9, status="completed")]
    for gz in (False, True):
        p = tmp_path / ("odd.ttftrec" + (".gz" if gz else ""))
        rec = record(events, p)
        assert rec.error is None and rec.n_events == len(events)
        data = gzip.decompress(p.read_bytes()) if gz else p.read_bytes()
        lines = data.decode("utf-8").splitlines()  # strict UTF-8: raises on anything else
        assert [json.loads(line).get("text") for line in lines if '"token"' in line][-5:] == [
            "a\ufffdb", "\x00nul", "\ufffd\ufffd", "\U0001F600 ok", "\x1b[2J\x07"]
        got = read_recording(p)
        assert got.warnings == [] and len(got.events) == len(events)
        r = cli("replay", str(p), "--headless", "-q", "-o", str(tmp_path / "r.json"))
        assert r.returncode == 0 and r.stderr == "", r.stderr
        (tmp_path / "r.json").read_bytes().decode("utf-8")


@dataclass(frozen=True)
class Inner:
    wait_s: float


@dataclass(frozen=True)
class Probe:
    t_ns: int
    new_thing_ns: int
    other_ms: float | None = None
    inner: Inner | None = None
    count: int = -5  # not a time: never checked


def test_the_measurement_check_is_driven_by_field_names():
    """``ttftui.core.sane``: any ``*_ns``/``*_ms``/``*_s`` field is a duration and ``t_ns`` a time,
    without a list of fields; an impossible optional value is nulled, a required one sinks the event,
    and one inside an optional part nulls that part."""
    from ttftui.core.sane import check_event, problem

    assert problem("x_ms", -1.0) == "-1 ms: a negative duration"
    assert problem("x_ns", float("nan")) is not None and problem("x_ms", 4e10) is not None
    assert problem("t_ns", -5) is None and problem("t_ns", 10**17) is not None and problem("n_tokens", -1) is None
    ok = Probe(t_ns=1, new_thing_ns=2, other_ms=3.0, inner=Inner(wait_s=1.0))
    assert check_event(ok) == (ok, [])
    fixed, probs = check_event(Probe(t_ns=1, new_thing_ns=2, other_ms=-3.0, inner=Inner(wait_s=-1.0)))
    assert fixed == Probe(t_ns=1, new_thing_ns=2) and [(p.where, p.nulled) for p in probs] == [
        ("other_ms", True), ("inner.wait_s", True)]
    gone, probs = check_event(Probe(t_ns=1, new_thing_ns=-2))
    assert gone is None and [(p.where, p.nulled) for p in probs] == [("new_thing_ns", False)]
