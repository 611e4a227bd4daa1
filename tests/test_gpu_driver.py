"""The GPU driver's own sample buffer (NVML nvmlDeviceGetSamples): read through pynvml's real wrappers
over a fake libnvidia-ml (the ``nvml`` fixture, tests/conftest.py), put on the session clock, and
turned into per-phase figures weighted by overlap, with what a figure averages when the phase is the
shorter."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ttftui.analysis import gpu_driver
from ttftui.core.events import GpuDriverSamples, TelemetryStatus, event_from_json, event_to_json, shift_time
from ttftui.measure.telemetry import NvmlBackend, TelemetrySampler

from .conftest import MS, sampled_on_its_clock


def _types():
    import pynvml as N

    return N.NVML_GPU_UTILIZATION_SAMPLES, N.NVML_TOTAL_POWER_SAMPLES, N.NVML_MEMORY_UTILIZATION_SAMPLES


def test_the_driver_buffer_is_drained_once_per_sample_with_units(nvml):
    import pynvml as N

    util, power, mem = _types()
    nvml["driver"] = {util: [(1_000, 40), (2_000, 60)], power: [(1_500, 250_000)]}  # power in mW
    nvml["driver_fail"] = {mem: N.NVML_ERROR_NOT_SUPPORTED}
    b = NvmlBackend(0)
    first = b.drain(force=True)
    assert first == {"gpu_busy_pct": [(1_000, 40.0), (2_000, 60.0)], "gpu_power_w": [(1_500, 250.0)]}
    assert b.driver_off == {"gpu_mem_busy_pct": "NVML nvmlDeviceGetSamples: Not Supported"}
    assert b.drain(force=True) == {}  # nothing new: NVML answers NOT_FOUND, which is no error
    nvml["driver"][util].append((3_000, 80))
    assert b.drain(force=True) == {"gpu_busy_pct": [(3_000, 80.0)]}  # only what came since the last call
    assert set(b.driver_off) == {"gpu_mem_busy_pct"}  # the unsupported one is not asked again


def test_the_sampler_puts_driver_samples_on_the_session_clock_and_drops_older_ones(nvml):
    """The driver stamps samples with the CPU's wall clock in µs: each lands on the session clock
    where it happened; samples from before the sampler started are not this session's."""
    util, _, _ = _types()
    t0 = time.perf_counter_ns()
    session = lambda: time.perf_counter_ns() - t0  # noqa: E731
    before_us = time.time_ns() // 1000
    events = []
    s = TelemetrySampler(events.append, session, backend="nvml", interval_ms=50)
    made_us = time.time_ns() // 1000  # the sampler started between before_us and made_us
    stamps = (made_us + 1, made_us + 2)  # the driver's samples since then (one from before it, left out)
    nvml["driver"] = {util: [(before_us - 5_000_000, 10), (stamps[0], 50), (stamps[1], 70)]}
    # The session clock minus the wall clock, bracketed by reads around the drain: s_at - w_at can
    # only overstate it (the second read comes later), s_to - w_to only understate it, and the
    # sampler's own estimate is off by at most half the drain's duration. However busy the machine.
    w_at, s_at = time.time_ns(), session()
    s.drain_driver()
    s_to, w_to = session(), time.time_ns()
    half = (w_to - w_at) / 2
    got = [e for e in events if isinstance(e, GpuDriverSamples)]
    assert len(got) == 1 and got[0].field == "gpu_busy_pct" and got[0].values == (50.0, 70.0)
    for t_us, t_session in zip(stamps, got[0].times_ns):
        offset = t_session - t_us * 1000
        assert s_to - w_to - half - MS / 10 <= offset <= s_at - w_at + half + MS / 10  # (0.1 ms: clock rates)
    assert s.n_driver_samples == 2
    s.stop()
    final = events[-1]
    assert isinstance(final, TelemetryStatus) and final.n_samples == 0
    assert final.driver_unavailable == {}


def test_a_driver_clock_that_is_no_clock_of_ours_is_said_not_guessed(nvml):
    util, _, _ = _types()
    nvml["driver"] = {util: [(5_000, 10), (6_000, 20)]}  # µs near zero: neither the wall clock nor monotonic
    events = []
    s = TelemetrySampler(events.append, lambda: 0, backend="nvml", interval_ms=50)
    s.drain_driver()
    assert not any(isinstance(e, GpuDriverSamples) for e in events)
    s.sample()
    status = [e for e in events if isinstance(e, TelemetryStatus)][-1]
    assert "on no clock this process can read" in status.driver_unavailable["gpu_busy_pct"]
    s.stop()


def test_a_rocm_session_says_there_is_no_driver_buffer():
    from ttftui.measure.telemetry import RocmBackend

    assert set(RocmBackend.driver_off) == set(gpu_driver.KEYS)
    assert all("pyrsmi keeps no sample buffer" in why for why in RocmBackend.driver_off.values())


def _batch(field, times_ms, values):
    return GpuDriverSamples(t_ns=0, field=field, times_ns=tuple(int(t * MS) for t in times_ms),
                            values=tuple(float(v) for v in values))


def test_phase_figures_weight_each_sample_by_its_overlap_with_the_phase():
    # driver period 10 ms: the sample at t covers (t - 10, t]
    series = gpu_driver.build_series([_batch("gpu_busy_pct", [10, 20, 30, 40, 50], [0, 100, 50, 20, 20])])
    assert series["gpu_busy_pct"].period_ms == 10.0
    # prefill 15..35 ms: 5 ms of the 20 ms sample (100), all of 30 (50), 5 ms of 40 (20); decode 35..50
    f = gpu_driver.phase_figures(series, 15 * MS, 35 * MS, 50 * MS)
    assert f["prefill_gpu_busy_driver_pct"] == pytest.approx((5 * 100 + 10 * 50 + 5 * 20) / 20)
    assert f["prefill_gpu_driver_span_ms"] == pytest.approx(30.0)  # 10..40 ms
    assert f["prefill_gpu_driver_coverage_pct"] == pytest.approx(100.0)
    assert f["decode_gpu_busy_driver_pct"] == pytest.approx(20.0)
    # the same numbers by brute force on a 1 µs grid
    grid = np.arange(15_000, 35_000) + 0.5  # µs
    owner = np.ceil(grid / 10_000).astype(int) - 1  # which sample covers each µs
    vals = np.array([0, 100, 50, 20, 20])[owner]
    assert f["prefill_gpu_busy_driver_pct"] == pytest.approx(vals.mean())


def test_a_phase_shorter_than_the_drivers_period_is_described_not_resolved():
    series = gpu_driver.build_series([_batch("gpu_busy_pct", [0, 167, 334, 501], [5, 5, 60, 5])])
    f = gpu_driver.phase_figures(series, 200 * MS, 210 * MS, 260 * MS)  # a 10 ms prefill inside one sample
    assert f["prefill_gpu_busy_driver_pct"] == pytest.approx(60.0)
    assert f["prefill_gpu_driver_span_ms"] == pytest.approx(167.0)
    note = gpu_driver.driver_note("prefill", 10.0, f, series)
    assert note == ("the driver samples every 167.0 ms: its prefill figure averages 167.0 ms, of which the "
                    "prefill (10.0 ms) is 6 %")
    # a phase past the newest sample: not covered, so no figure (it would be a guess)
    late = gpu_driver.phase_figures(series, 498 * MS, 508 * MS, 600 * MS)
    assert late["prefill_gpu_busy_driver_pct"] is None and late["decode_gpu_busy_driver_pct"] is None
    assert late["prefill_gpu_driver_coverage_pct"] == pytest.approx(30.0)
    assert "not enough for a figure" in gpu_driver.driver_note("decode", 95.0, late, series)


def test_a_hole_in_the_driver_samples_is_not_spread_over_the_phase():
    # 10 ms samples, then nothing for 200 ms (the driver paused): the sample after the hole covers
    # its own 10 ms only, so a phase inside the hole has no figure rather than that sample's value
    series = gpu_driver.build_series([_batch("gpu_busy_pct", [10, 20, 30, 230, 240], [1, 1, 1, 99, 99])])
    f = gpu_driver.phase_figures(series, 100 * MS, 150 * MS, 160 * MS)
    assert f["prefill_gpu_busy_driver_pct"] is None and f["prefill_gpu_driver_coverage_pct"] == 0.0


def test_driver_samples_survive_a_recording_and_a_hosts_clock_shift():
    ev = _batch("gpu_power_w", [1, 2], [200, 210])
    assert event_from_json(event_to_json(ev)) == ev
    moved = shift_time(ev, 5 * MS)
    assert moved.t_ns == 5 * MS and moved.times_ns == (6 * MS, 7 * MS) and moved.values == ev.values
    with pytest.raises(Exception, match="2 times but 1 values"):
        event_from_json(b'{"type":"gpu_driver_samples","t_ns":1,"field":"gpu_busy_pct","times_ns":[1,2],'
                        b'"values":[3.0]}')


def _spread_runs(events: list, gap_ns: int) -> list:
    """A virtual-clock session with ``gap_ns`` of idle time before every run (what run.pause_ms does
    on a real clock): each run moved later by the gaps before it."""
    from ttftui.core.events import RunStarted

    out, offset = [], 0
    for e in events:
        if isinstance(e, RunStarted):
            offset += gap_ns
        out.append(shift_time(e, offset))
    return out


def _driver_busy(events: list, period_ns: int, busy_pct: float):
    """A GPU driver's utilization as it would sample this session: every ``period_ns`` the share of the
    period a run was in flight, times ``busy_pct``; returns ``extra`` for ``sampled_on_its_clock``
    (the samples taken since the last tick, read at each tick)."""
    from ttftui.core.events import RunFinished, RunStarted

    starts = [e.t_ns for e in events if isinstance(e, RunStarted)]
    ends = [e.t_ns for e in events if isinstance(e, RunFinished)]

    def busy(a: int, b: int) -> float:
        return sum(max(0, min(b, e) - max(a, s)) for s, e in zip(starts, ends)) / (b - a)

    def batch(prev: int, now: int) -> list:
        times = [t for t in range((prev // period_ns + 1) * period_ns, now + 1, period_ns)]
        if not times:
            return []
        return [GpuDriverSamples(t_ns=now, field="gpu_busy_pct", times_ns=tuple(times),
                                 values=tuple(float(round(busy_pct * busy(t - period_ns, t))) for t in times))]

    return batch


def test_a_session_with_driver_samples_reports_per_phase_figures_and_the_panel_shows_them():
    """A synthetic session (virtual clock, runs 50 ms apart) whose GPU driver samples every 5 ms
    (busy 40 % while a run is in flight, 0 between runs), read at each 100 ms tick: each run's
    prefill and decode get the driver's figures, the short prefill's gap says where its figure comes
    from, and the panel shows it."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report
    from ttftui.run.session import SessionRunner
    from ttftui.analysis.view import SessionView
    from ttftui.tui.telemetry_view import telemetry_text
    from ttftui.tui.themes import load_theme_or_default

    cfg = Config.model_validate({"run": {"iterations": 3, "warmup": 0}, "telemetry": {"interval_ms": 100},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 12}]})
    plain: list = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test", cost=CostModel.with_decode_rate(600)), plain.append).run()
    spread = _spread_runs(plain, 50 * MS)
    events = sampled_on_its_clock(spread, 100, extra=_driver_busy(spread, 5 * MS, 40.0),
                                  status={"backend": "nvml+psutil", "gpu_name": "NVIDIA H100 80GB HBM3"})
    state = fold(events)
    rep = build_report(state)
    assert rep.telemetry.driver["gpu_busy_pct"]["period_ms"] == pytest.approx(5.0)
    assert rep.telemetry.driver_unavailable == {}
    assert len(rep.runs) == 3
    for r in rep.runs:
        t = r.telemetry
        # the edges of a run blend with the idle time around it by at most one 5 ms sample each
        assert 40 * (1 - 10 / r.ttft_ms) - 1 <= t["prefill_gpu_busy_driver_pct"] <= 40.0 + 1e-9
        assert 40 * (1 - 10 / (r.e2e_ms - r.ttft_ms)) - 1 <= t["decode_gpu_busy_driver_pct"] <= 40.0 + 1e-9
        assert t["prefill_gpu_driver_coverage_pct"] == pytest.approx(100.0)
        assert r.ttft_ms <= t["prefill_gpu_driver_span_ms"] <= r.ttft_ms + 10
        if "prefill" in r.telemetry_gaps:
            assert "figures come from the GPU driver's own samples" in r.telemetry_gaps["prefill"]
    assert any("prefill" in r.telemetry_gaps for r in rep.runs)  # ~35 ms prefills, a tick every 100 ms
    text = telemetry_text(state, SessionView(state), load_theme_or_default("dark")[0], 80).plain
    assert f"run {rep.runs[-1].run_id} driver samples every 5.0 ms" in text and "prefill" in text


def test_the_sampler_reads_the_drivers_buffer_during_a_real_time_session(nvml):
    """The same path on a real clock: a paced session under the fake NVML, whose driver samples a
    steady 40 % every 5 ms. The sampler thread drains the buffer at its ticks and once more when it
    stops, every run's phases are covered by the driver's samples, and a steady signal gives each
    phase exactly its value, wherever the machine's scheduling put the reads."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report
    from ttftui.run.session import SessionRunner

    util, _, _ = _types()
    start_us = time.time_ns() // 1000 - 1_000_000  # from a second before the session: it covers it all
    made: list[tuple[int, int]] = []

    def driver_util():
        now = time.time_ns() // 1000
        t = made[-1][0] if made else start_us
        while t + 5_000 <= now:
            t += 5_000
            made.append((t, 40))
        return list(made)

    nvml["driver"] = {util: driver_util}
    # decode ~100 ms: the last run's ends a few ms before the sampler's final read, and is still covered
    cfg = Config.model_validate({"run": {"iterations": 3, "warmup": 0},
                                 "telemetry": {"interval_ms": 100, "backend": "nvml"},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 60}]})
    events: list = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test", pace=True, cost=CostModel.with_decode_rate(600)),
                  events.append).run()
    rep = build_report(fold(events))
    assert rep.telemetry.driver["gpu_busy_pct"]["period_ms"] == pytest.approx(5.0, abs=0.5)
    assert rep.telemetry.driver_unavailable == {}
    assert sum(len(e.times_ns) for e in events if isinstance(e, GpuDriverSamples)) > 0
    for r in rep.runs:
        assert r.telemetry["prefill_gpu_busy_driver_pct"] == pytest.approx(40.0)
        assert r.telemetry["decode_gpu_busy_driver_pct"] == pytest.approx(40.0)
        assert r.telemetry["prefill_gpu_driver_coverage_pct"] == pytest.approx(100.0)


def test_each_field_is_read_when_due_and_one_the_driver_keeps_nothing_of_is_dropped(nvml, monkeypatch):
    """Reading the driver's buffer costs (1.4 ms per utilization field on an H100): a field is read
    again after ten of its periods (within the bounds), all of them when the sampler stops."""
    import pynvml as N

    import ttftui.measure.telemetry as T

    util, power, mem = _types()
    nvml["driver"] = {util: [(1_000_000, 40), (1_200_000, 50)], power: [(1_000_000, 200_000), (1_020_000, 210_000)],
                      mem: [(1_000_000, 3), (1_200_000, 4)]}
    b = NvmlBackend(0)
    asked = []
    real = N.nvmlDeviceGetSamples
    monkeypatch.setattr(N, "nvmlDeviceGetSamples", lambda h, kind, last: (asked.append(kind), real(h, kind, last))[1])
    monkeypatch.setattr(T, "DRIVER_SILENT_S", 0.0)
    clock = [100.0]
    monkeypatch.setattr(T.time, "monotonic", lambda: clock[0])
    assert set(b.drain()) == {"gpu_busy_pct", "gpu_power_w", "gpu_mem_busy_pct"}
    assert sorted(asked) == sorted([util, power, mem, N.NVML_PROCESSOR_CLK_SAMPLES])
    assert b.driver_off == {"gpu_sm_clock_mhz": "the driver kept no samples of it in 0 s: not asked again"}
    # power (20 ms period) is due after 0.5 s (ten periods, raised to the minimum); utilization
    # (200 ms) after 2 s; a read that brought nothing new waits the minimum
    for t, due in ((100.3, []), (100.6, [power]), (101.9, [power]), (102.1, [util, mem]), (102.5, [power])):
        asked.clear()
        clock[0] = t
        b.drain()
        assert sorted(asked) == sorted(due), t
    asked.clear()
    b.drain(force=True)  # the sampler stopping: every field not dropped
    assert sorted(asked) == sorted([util, power, mem])


def test_the_panels_window_gives_the_last_runs_figures_as_the_whole_session_does():
    import dataclasses

    from ttftui.analysis.reducer import Log, initial_state
    from ttftui.analysis.view import SessionView

    log = Log()
    for k in range(50):  # a batch read every 100 ms, each with ten 10 ms samples
        batch = _batch("gpu_busy_pct", [k * 100 + 10 * i for i in range(1, 11)], [(k * 7 + i) % 100 for i in range(10)])
        log = log.append(dataclasses.replace(batch, t_ns=(k * 100 + 105) * MS))
    whole = gpu_driver.build_series(log)
    view = SessionView(initial_state())
    window = view.driver_series(None, 4_000 * MS, log=log)
    assert len(window["gpu_busy_pct"].t1) < len(whole["gpu_busy_pct"].t1) / 4  # it skipped the early batches
    run = (4_012 * MS, 4_037 * MS, 4_391 * MS)
    assert gpu_driver.phase_figures(window, *run) == pytest.approx(gpu_driver.phase_figures(whole, *run))
    assert view.driver_series(None, 4_000 * MS, log=log) is window  # asked again, unchanged: not rebuilt
    longer = log.append(dataclasses.replace(log[-1], t_ns=5_105 * MS))
    assert view.driver_series(None, 4_000 * MS, log=longer) is not window  # the log grew: rebuilt
