"""A diffusion model's run in the dashboard: the token stream draws its canvas (masked cells that fill
in step by step, coloured by the step that committed them), the TTFT breakdown its steps up to the
first readable token, the percentile table its own rows; live and in replay. Hand-made events (a
fixed commit order, times in whole ms), so what each frame must show is known exactly."""

from __future__ import annotations

from textual.color import Color

from ttftui.analysis.reducer import fold
from ttftui.core.events import (
    DeviceFacts,
    DiffusionFacts,
    DiffusionStep,
    DiffusionTiming,
    EngineReady,
    ModelFacts,
    PhaseTimed,
    RunFinished,
    RunStarted,
    SessionFinished,
    TokenEmitted,
)
from ttftui.run.recording import Recorder, read_recording
from ttftui.run.replay import ReplaySource
from ttftui.tui import render as R
from ttftui.tui.app import TtftApp
from ttftui.tui.themes import load_theme
from ttftui.tui.widgets import PercentileTable, TokenStream, TTFTBar

from .conftest import MS, FakeWall, pilot_wait_until, scripted_run, session_events, session_started
from .tui_support import StaticSource, fixed_clock, synthetic_session

WORDS = ("The", " quick", " brown", " fox", " jumps", " over", " a", " dog")
ORDER = (3, 5, 0, 1, 7, 2, 4, 6)  # the answer position each step commits: position 0 at step 3
FIRST_READABLE = ORDER.index(0) + 1
N = len(ORDER)
FWD_MS, LOGITS_MS, SELECT_MS, COMMIT_MS = 10, 1, 2, 1  # one step: 14 ms
RUN_MS = 1000


def diffusion_run(rid: int, *, warmup: bool = False, scenario: str = "canvas") -> list:
    """A run as the diffusion engine publishes it: tokenize, canvas, then one step per position of
    ORDER; the tokens that became readable in a step come just before its step event, at its time."""
    t0 = rid * RUN_MS * MS
    out: list = [RunStarted(t_ns=t0, run_id=rid, scenario=scenario, iteration=rid - 1, warmup=warmup, prompt_tokens=16,
                            max_tokens=N),
                 PhaseTimed(t_ns=t0 + 1 * MS, run_id=rid, phase="tokenize", duration_ns=1 * MS, n_tokens=16),
                 PhaseTimed(t_ns=t0 + 2 * MS, run_id=rid, phase="canvas", duration_ns=MS // 2, n_tokens=16 + N)]
    t, prev, committed, readable = t0 + 2 * MS, t0, set(), 0
    ends: list[int] = []
    for k, p in enumerate(ORDER):
        t += (FWD_MS + LOGITS_MS + SELECT_MS + COMMIT_MS) * MS
        committed.add(p)
        while readable in committed:
            out.append(TokenEmitted(t_ns=t, run_id=rid, index=readable, token_id=100 + readable, text=WORDS[readable],
                                    dt_ns=t - prev))
            prev, readable = t, readable + 1
        out.append(DiffusionStep(t_ns=t, run_id=rid, step=k, n_steps=N, forward_ns=FWD_MS * MS,
                                 logits_ns=LOGITS_MS * MS, select_ns=SELECT_MS * MS, commit_ns=COMMIT_MS * MS,
                                 positions=(p,), token_ids=(100 + p,), texts=(WORDS[p],), masked=N - k - 1,
                                 answer_tokens=N))
        ends.append(t - t0)
    ttft = ends[FIRST_READABLE - 1]
    timing = DiffusionTiming(
        schedule="timestep", algorithm="confidence", sampling="greedy", steps_planned=N, answer_tokens=N,
        canvas_tokens=16 + N, canvas_ns=MS // 2, step_forward_ns=(FWD_MS * MS,) * N,
        step_logits_ns=(LOGITS_MS * MS,) * N, step_select_ns=(SELECT_MS * MS,) * N,
        step_commit_ns=(COMMIT_MS * MS,) * N, step_end_at_ns=tuple(ends),
        step_commits=(1,) * N, first_commit_step=1, first_commit_at_ns=ends[0], first_readable_step=FIRST_READABLE,
        first_readable_at_ns=ttft, final_at_ns=ends[-1], first_step_at_ns=2 * MS)
    out.append(RunFinished(
        t_ns=t, run_id=rid, scenario=scenario, warmup=warmup, n_prompt_tokens=16, n_output_tokens=N, ttft_ns=ttft,
        e2e_ns=ends[-1], tokenize_ns=1 * MS, cache_prep_ns=None, prefill_ns=None, prefill_chunks_ns=(),
        prefill_chunk_tokens=(), first_sample_ns=None, first_detok_ns=None, stop_reason="max_tokens", diffusion=timing))
    return out


def diffusion_session(runs: int = 2, *, n_threads: int = 2) -> list:
    """A session on a diffusion model (llama.cpp on the CPU): a warm-up run, then counted runs."""
    events: list = [session_started({"scenarios": [{"name": "canvas", "prompt_tokens": 16, "max_tokens": N}],
                                     "run": {"iterations": runs - 1, "warmup": 1}}),
                    EngineReady(t_ns=1, engine="llama.cpp", synthetic=False, synthetic_reason=None, load_ms=5.0,
                                model=ModelFacts(path="dream-tiny.gguf", name="dream-tiny", file_size_bytes=0,
                                                 architecture="dream", n_layers=2),
                                device=DeviceFacts(kind="cpu", name="cpu", n_threads=n_threads),
                                diffusion=DiffusionFacts(mask_token_id=9, shift_logits=True, schedule="timestep",
                                                         algorithm="confidence", sampling="greedy"))]
    for rid in range(1, runs + 1):
        events += diffusion_run(rid, warmup=rid == 1)
    last = events[-1].t_ns
    return [*events, SessionFinished(t_ns=last + MS, status="completed")]


def cut_after_step(events: list, rid: int, step: int) -> list:
    """The session up to run ``rid``'s step ``step`` (1-based): that run is in flight."""
    i = next(i for i, e in enumerate(events) if isinstance(e, DiffusionStep) and e.run_id == rid and e.step == step - 1)
    return events[: i + 1]


def make_app(events: list, **kw) -> TtftApp:
    return TtftApp(StaticSource(events, **kw), clock=fixed_clock(events))


def drawn(stream: TokenStream, text: str) -> list[tuple[str, bool]]:
    """(colour, underlined) of each drawn segment whose text is ``text``."""
    return [(seg.style.color.triplet.hex.upper(), bool(seg.style.underline))
            for y in range(stream.drawn_rows) for seg in stream.render_line(y) if seg.text == text]


def colour(c: str) -> str:
    return Color.parse(c).hex.upper()


def test_the_events_are_what_the_engine_sends():
    """The hand-made run folds as a real one does: its steps kept, its TTFT components summed over the
    steps up to the first readable one."""
    state = fold(diffusion_session())
    run = state.runs[-1]
    assert len(run.steps) == N and [t.index for t in run.tokens] == list(range(N))
    m = run.metrics
    assert m.value("steps_to_readable_count") == FIRST_READABLE
    assert m.value("step_forward_ms") == FIRST_READABLE * FWD_MS
    assert m.value("step_select_ms") == FIRST_READABLE * (LOGITS_MS + SELECT_MS + COMMIT_MS)
    assert m.value("unaccounted_ms") == 2 - 1 - 0.5  # the 2 ms before the first step less tokenize and canvas


async def test_the_canvas_shows_masked_cells_then_the_committed_text():
    events = diffusion_session()
    app = make_app(cut_after_step(events, 2, 2))  # run 2 after two steps: positions 3 and 5 committed
    th = load_theme("dark")
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.query_one(TokenStream)
        await pilot_wait_until(pilot, lambda: "run 2 canvas" in stream.visible_text(), what="run 2's canvas")
        text = stream.visible_text()
        assert "run 2 canvas · diffusion · 14.0 ms/step · timestep, confidence" in text
        assert "step 2/8 · 2 of 8 committed · not readable yet" in text
        assert "░░░ fox░ over░░" in text  # six masked cells around the two committed positions
        assert "The" not in text and "ITL" not in text  # no inter-token latency for a canvas
        # each committed cell in the colour of its step (a gradient from the theme's primary colour)
        assert drawn(stream, " fox") == [(colour(th.textual.primary), False)]  # step 1: the gradient's start
        assert drawn(stream, " over") == [(colour(R.step_colour(th, 1, N)), False)]
        assert colour(R.step_colour(th, 1, N)) != colour(th.textual.primary)
        assert drawn(stream, "░░░") == [(colour(th.components.pending), False)]

        stream.show(fold(cut_after_step(events, 2, FIRST_READABLE)))  # position 0: the first token readable
        text = stream.visible_text()
        assert f"step {FIRST_READABLE}/8 · 3 of 8 committed · first readable after step {FIRST_READABLE}" in text
        assert "The░░ fox░ over░░" in text
        assert drawn(stream, "The") == [(colour(R.step_colour(th, FIRST_READABLE - 1, N)), True)]

        stream.show(fold(events))  # the run has ended: every position committed, the answer reads in order
        text = stream.visible_text()
        assert "step 8/8 · 8 of 8 committed · first readable after step 3" in text
        assert "The quick brown fox jumps over a dog" in text and "░" not in text.split("\n", 3)[3]
        assert drawn(stream, " a") == [(colour(th.textual.accent), False)]  # the last step: the gradient's end


async def test_a_narrow_panel_shortens_the_step_counter_and_a_long_canvas_follows_its_frontier():
    """At 80x24 the stream is narrow and a few rows high: the step counter in fewer words, and a canvas
    longer than the panel shows the rows around its first masked position."""
    events = diffusion_session()
    app = make_app(cut_after_step(events, 2, 2))
    async with app.run_test(size=(80, 24)) as pilot:
        stream = app.query_one(TokenStream)
        await pilot_wait_until(pilot, lambda: "run 2 canvas" in stream.visible_text(), what="run 2's canvas")
        assert "step 2/8 · 2 of 8 committed · not readable yet" in stream.visible_text()  # it fits
        stream.show(fold(events))
        assert "step 8/8 · 8/8 committed · readable after 3\n" in stream.visible_text()  # the long one would not

    stream = TokenStream()
    stream.theme_file = load_theme("dark")
    state = fold(cut_after_step(events, 2, 2))
    _, styles, frontier = stream._canvas_layout(state.current, stream.theme_file, 4)  # one word a line
    assert len(styles) == N and frontier == 0  # position 0 is masked: the first line
    rows = stream._canvas_rows(state.current, stream.theme_file, 4, 3)
    assert [k[1] for k, _ in rows[1:]] == ["canvas", "canvas"] and "more below" in rows[0][1].plain


async def test_a_replayed_recording_draws_the_canvas_step_by_step(tmp_path):
    """Replay folds the recorded events like a live session: the canvas mid-run, complete at the end,
    and mid-run again after seeking back."""
    path = tmp_path / "d.ttftrec"
    rec = Recorder(path)
    for e in diffusion_session():
        rec(e)
    events = read_recording(path).events
    assert sum(isinstance(e, DiffusionStep) for e in events) == 2 * N  # the steps come back from the file
    src = ReplaySource(events, wall=FakeWall())
    src.paused = True
    mid = next(e.t_ns for e in events if isinstance(e, DiffusionStep) and e.run_id == 2 and e.step == 1)
    src.seek(mid)  # run 2 after its second step
    app = TtftApp(src, clock=src.now_ns)
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.query_one(TokenStream)
        await pilot_wait_until(pilot, lambda: "run 2 canvas" in stream.visible_text(), what="run 2's canvas")
        assert "step 2/8 · 2 of 8 committed · not readable yet" in stream.visible_text()
        assert "░░░ fox░ over░░" in stream.visible_text()
        src.seek_end()
        await pilot_wait_until(pilot, lambda: "step 8/8" in stream.visible_text(), what="the full canvas")
        assert "The quick brown fox jumps over a dog" in stream.visible_text()
        src.seek(mid)
        await pilot_wait_until(pilot, lambda: "step 2/8" in stream.visible_text(), what="the canvas after a seek")
        assert "░░░ fox░ over░░" in stream.visible_text() and "quick" not in stream.visible_text()


def test_the_bar_splits_each_step_into_its_forward_pass_and_selection():
    th = load_theme("dark")
    c = th.components
    parts = {"tokenize": 1.0, "canvas": 0.5, "step_forward": 30.0, "step_select": 6.0, "unaccounted": 0.5}
    segs = R.component_segments(th, parts, steps=[(10.0, 2.0)] * 3)
    assert [s.key for s in segs] == ["tokenize", "canvas", *["step_forward", "step_select"] * 3, "unaccounted"]
    fwd = [s.color for s in segs if s.key == "step_forward"]
    sel = [s.color for s in segs if s.key == "step_select"]
    assert fwd == [c.prefill, c.prefill_alt, c.prefill]  # every other step in the alternate shade
    assert sel[0] == sel[2] == c.first_sample and sel[1] not in (c.first_sample, *fwd)
    bar = R.stacked_bar(segs, 100)
    assert bar.cell_len == 100 and len(bar.spans) == 9  # one run of cells per segment
    # without the steps, the two step components are one segment each (the scenario medians)
    assert [s.key for s in R.component_segments(th, parts)] == list(parts)
    for name in ("dark", "light", "high-contrast"):  # the derived shade differs from the base in every theme
        t = load_theme(name)
        assert R.alt_shade(t, t.components.first_sample) != t.components.first_sample


async def test_the_bar_grows_step_by_step_then_shows_the_steps_to_the_first_readable_token():
    events = diffusion_session()
    app = make_app(cut_after_step(events, 2, 2))
    async with app.run_test(size=(120, 40)) as pilot:
        bar = app.query_one(TTFTBar)
        await pilot_wait_until(pilot, lambda: "run 2 • canvas" in str(bar.content), what="run 2's bar")
        text = bar.content.plain
        assert "(so far; diffusion step 3/8 running)" in text
        assert "tokenize" in text and "canvas set-up" in text and "steps: forward×2 20.0 ms" in text
        assert "steps: select 8.00 ms" in text and "running" in text
        bar.show(fold(cut_after_step(events, 2, 6)), app.views.of(fold(events)), events[-1].t_ns)
        text = bar.content.plain
        assert "so far" not in text and "TTFT 44.0 ms" in text  # readable after step 3: 2 + 3 x 14 ms
        assert f"steps: forward×{FIRST_READABLE} 30.0 ms" in text and "unaccounted" in text
        state = fold(events)
        bar.show(state, app.views.of(state), events[-1].t_ns)  # the run has ended: from its metrics
        text = bar.content.plain
        assert "last run 2 • canvas  TTFT 44.0 ms" in text and f"steps: forward×{FIRST_READABLE} 30.0 ms" in text
        assert "canvas median" in text


async def test_the_percentile_table_has_the_diffusion_rows_only_in_a_diffusion_session():
    diffusion = ("canvas_ms", "step_forward_ms", "step_select_ms", "first_commit_ms", "steps_to_readable_count",
                 "step_ms", "final_ms", "committed_tps")
    engine_phases = ("cache_prep_ms", "prefill_ms", "first_sample_ms", "first_detok_ms", "prefill_tps")
    for events, present, absent in ((diffusion_session(3), diffusion, engine_phases),
                                    (synthetic_session(), engine_phases, diffusion)):
        app = make_app(events)
        async with app.run_test(size=(160, 48)) as pilot:
            table = app.query_one(PercentileTable)
            await pilot_wait_until(pilot, lambda t=table: t.row_count > 0, what="the table's rows")
            metrics = {str(k.value).split(":", 1)[1] for k in table.rows}
            assert set(present) <= metrics and not set(absent) & metrics, metrics
            # the metric column is as wide as its longest label ("steps to readable"), or as before
            assert table.columns["metric"].width == (17 if present is diffusion else 13)


async def test_an_autoregressive_run_is_drawn_as_before():
    """An ordinary run has no steps: its text with the inter-token latency, no canvas."""
    app = make_app(synthetic_session())
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.query_one(TokenStream)
        await pilot_wait_until(pilot, lambda: "run 12 long" in stream.visible_text(), what="the last run")
        lines = stream.visible_text().split("\n")
        assert lines[0].startswith("run 12 long · 24 tok") and lines[1].startswith("ITL ")
        assert "of median gap" in lines[2] and "░" not in stream.visible_text() and "diffusion" not in lines[0]
        bar = app.query_one(TTFTBar).content.plain
        assert "prefill" in bar and "steps" not in bar


async def test_tokens_that_arrive_together_do_not_stop_the_stream():
    """A median gap of 0 (every token after the first in the same instant, as a diffusion step or a
    server's single chunk hands them over) once divided by zero and ended the dashboard."""
    events = [*session_events(), *scripted_run(1, itl=(0, 0, 0))]
    app = make_app(events)
    async with app.run_test(size=(120, 40)) as pilot:
        stream = app.query_one(TokenStream)
        await pilot_wait_until(pilot, lambda: "run 1 a · 4 tok" in stream.visible_text(), what="the run")
        await pilot.pause()
        assert app.is_running and "Hi there there there" in stream.visible_text()


async def test_a_rationed_frame_before_the_first_token_draws_the_bar_and_the_canvas():
    """While llama.cpp has every CPU, a frame between full ones redraws only what shows the run's
    progress: before a diffusion run's first readable token that is its bar and its canvas."""
    from ttftui.run.pump import Pump
    from ttftui.tui.frames import usable_cpus

    events = cut_after_step(diffusion_session(n_threads=usable_cpus()), 2, 2)
    app = TtftApp(StaticSource(events), busy_cpu_pct=1.0, refresh_hz=4, pump=Pump(), clock=fixed_clock(events))
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        assert app.rationed()
        calls: list[str] = []
        def counted(show, name):
            return lambda *a, **k: calls.append(name) or show(*a, **k)

        for w in (app.query_one(TokenStream), app.query_one(TTFTBar)):
            w.show = counted(w.show, type(w).__name__)  # type: ignore[method-assign]
        wall = FakeWall()
        f = app.frames
        f.wall = wall
        f.budget_run = app.pump.state.current.run_id
        f.budget_from = (wall.t - 5, 0.0)
        f.last_draw = f.last_full = wall.t - 1.5
        f.seen_run = (f.budget_run, wall.t - 5)
        app.redraw()
        assert calls == ["TTFTBar", "TokenStream"]
        assert "step 2/8" in app.query_one(TokenStream).visible_text()
