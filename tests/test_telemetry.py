"""Telemetry backends against the libraries' real Python APIs, with only the C layer replaced.

For NVML the fake stands in for ``libnvidia-ml`` itself (``pynvml.nvmlLib``; the ``nvml`` fixture in
tests/conftest.py): pynvml's own wrappers build the ctypes structures, call the fake "C functions"
and raise their real ``NVMLError_*`` types. For AMD the fake stands in for ``libamd_smi``
(``pyrsmi.rocml.rocm_lib``), so pyrsmi's getters run as written, including their "-1 and a logged
error" failure mode. A mistake in how ttftui calls either library fails these tests.
"""

from __future__ import annotations

import ctypes
import threading
import types

import pytest

from ttftui.core.events import TelemetrySample, TelemetryStatus
from ttftui.measure.telemetry import BackendUnavailable, HostBackend, NvmlBackend, RocmBackend, TelemetrySampler

from .conftest import GiB, made_up_run_metrics, sampled_on_its_clock, target, wait_until


def test_nvml_reads_every_field(nvml):
    b = NvmlBackend(0)
    assert b.gpu_name == "NVIDIA H100 80GB HBM3"
    out, failed = {}, {}
    b.read(out, failed)
    assert failed == {}
    assert out == {"gpu_mem_used_bytes": 5 * GiB, "gpu_mem_total_bytes": 80 * GiB, "gpu_busy_pct": 73.0,
                   "gpu_power_w": 350.0, "gpu_temp_c": 61.0, "gpu_sm_clock_mhz": 1980.0}
    b.close()


def test_nvml_unsupported_field_is_na_with_the_nvml_reason(nvml):
    import pynvml as N

    nvml["fail"]["temp"] = N.NVML_ERROR_NOT_SUPPORTED
    out, failed = {}, {}
    NvmlBackend(0).read(out, failed)
    assert failed == {"gpu_temp_c": "NVML: Not Supported"}
    assert "gpu_temp_c" not in out and out["gpu_busy_pct"] == 73.0


@pytest.mark.parametrize("where, code, text", [
    ("init", "NVML_ERROR_DRIVER_NOT_LOADED", "NVML: Driver Not Loaded"),
    ("count", "NVML_ERROR_NO_PERMISSION", "NVML: Insufficient Permissions"),
])
def test_nvml_init_failures_make_the_backend_unavailable(nvml, where, code, text):
    import pynvml as N

    nvml["fail"][where] = getattr(N, code)
    with pytest.raises(BackendUnavailable, match=text):
        NvmlBackend(0)


def test_nvml_missing_gpu_index(nvml):
    nvml["count"] = 1
    with pytest.raises(BackendUnavailable, match="no NVIDIA GPU with index 3 \\(1 found\\)"):
        NvmlBackend(3)


def test_nvml_failure_mid_session_is_announced_once_and_sampling_goes_on(nvml):
    import pynvml as N

    events = []
    s = TelemetrySampler(events.append, lambda: 0, backend="nvml", interval_ms=50)
    samples = [s.sample() for _ in range(2)]
    nvml["fail"]["mem"] = N.NVML_ERROR_GPU_IS_LOST
    samples += [s.sample() for _ in range(3)]
    nvml["fail"].clear()
    nvml["used"] = 6 * GiB
    samples += [s.sample()]
    statuses = [e for e in events if isinstance(e, TelemetryStatus)]
    assert len(statuses) == 3  # initial, mem lost, mem back: one per change, not per sample
    assert statuses[0].unavailable == {} and statuses[0].gpu_name == "NVIDIA H100 80GB HBM3"
    assert statuses[1].unavailable == {"gpu_mem_used_bytes": "NVML: GPU is lost", "gpu_mem_total_bytes": "NVML: GPU is lost"}
    assert statuses[2].unavailable == {}
    assert [x.gpu_mem_used_bytes for x in samples] == [5 * GiB, 5 * GiB, None, None, None, 6 * GiB]
    assert all(x.gpu_busy_pct == 73.0 and x.rss_bytes > 0 for x in samples)
    s.stop()
    assert isinstance(events[-1], TelemetryStatus) and events[-1].n_samples == 6


def test_nvml_without_the_real_library_names_the_reason():
    with pytest.raises(BackendUnavailable, match="NVML: NVML Shared Library Not Found"):
        NvmlBackend(0)


# ------------------------------------------------------------------ fake libamd_smi
def fake_amdsmi_lib(state: dict):
    from pyrsmi import rocml as R

    ok = R.amdsmi_status_t.AMDSMI_STATUS_SUCCESS
    lib = types.SimpleNamespace()

    def status(name):
        return state.get("fail", {}).get(name, ok)

    lib.amdsmi_init = lambda flags: status("init")
    lib.amdsmi_shut_down = lambda: ok

    def by_type(kind, handles, pcount):
        target(pcount).value = 1
        if handles is not None:
            handles[0] = ctypes.c_void_p(0x1234)
        return ok

    def asic(h, p):
        target(p).market_name = b"AMD Instinct MI300X"
        return status("asic")

    def mem_usage(h, kind, p):
        target(p).value = state["used"]
        return status("mem")

    def mem_total(h, kind, p):
        target(p).value = 192 * GiB
        return status("mem_total")

    def activity(h, p):
        target(p).gfx_activity = state["util"]
        return status("util")

    def power(h, p):
        target(p).current_socket_power = 420
        return status("power")

    def err_string(code, p):
        target(p).value = b"AMDSMI_STATUS_NOT_SUPPORTED"
        return ok

    lib.amdsmi_get_processor_handles_by_type = by_type
    lib.amdsmi_get_gpu_asic_info = asic
    lib.amdsmi_get_gpu_memory_usage = mem_usage
    lib.amdsmi_get_gpu_memory_total = mem_total
    lib.amdsmi_get_gpu_activity = activity
    lib.amdsmi_get_power_info = power
    lib.amdsmi_status_code_to_string = err_string
    return lib


@pytest.fixture
def rocm(monkeypatch):
    from pyrsmi import rocml as R

    state = {"used": 12 * GiB, "util": 88, "fail": {}}
    monkeypatch.setattr(R, "rocm_lib", fake_amdsmi_lib(state))
    monkeypatch.setattr(R, "_driver_initialized", lambda: True)  # the OS check, not the library
    monkeypatch.setattr(R, "_processor_handles", [])
    monkeypatch.setattr(R, "_handle_initialized", False)
    monkeypatch.setattr(R, "_rocml_get_function_ptr_cache", {})
    return state


def test_rocm_reads_through_pyrsmi(rocm):
    b = RocmBackend(0)
    assert b.gpu_name == "AMD Instinct MI300X"
    out, failed = {}, {}
    b.read(out, failed)
    assert out == {"gpu_mem_used_bytes": 12 * GiB, "gpu_mem_total_bytes": 192 * GiB, "gpu_busy_pct": 88,
                   "gpu_power_w": 420.0}
    assert failed == {"gpu_temp_c": "pyrsmi has no temperature reading",
                      "gpu_sm_clock_mhz": "pyrsmi has no SM clock reading (NVIDIA only)"}
    b.close()


def test_rocm_failure_mid_session_carries_pyrsmis_reason(rocm, capsys):
    from pyrsmi import rocml as R

    events = []
    s = TelemetrySampler(events.append, lambda: 0, backend="rocm", interval_ms=50)
    first = s.sample()
    rocm["fail"]["util"] = R.amdsmi_status_t.AMDSMI_STATUS_NOT_SUPPORTED
    second = s.sample()
    third = s.sample()
    s.stop()
    assert first.gpu_busy_pct == 88 and second.gpu_busy_pct is None and third.gpu_busy_pct is None
    statuses = [e for e in events if isinstance(e, TelemetryStatus)]
    assert "AMDSMI_STATUS_NOT_SUPPORTED" in statuses[1].unavailable["gpu_busy_pct"]
    assert sum("gpu_busy_pct" in st.unavailable for st in statuses[:-1]) == 1  # announced once
    assert second.gpu_mem_used_bytes == 12 * GiB
    assert "AMDSMI" not in capsys.readouterr().err  # pyrsmi's log lines stay off the terminal


def test_rocm_init_failure(rocm):
    rocm["fail"]["init"] = 1
    with pytest.raises(BackendUnavailable, match="pyrsmi: AMD SMI initialization failed"):
        RocmBackend(0)


def test_rocm_without_the_real_library_names_the_reason(monkeypatch):
    from pyrsmi import rocml as R

    monkeypatch.setattr(R, "rocm_lib", None)
    monkeypatch.setenv("ROCM_PATH", "/nonexistent-rocm")
    with pytest.raises(BackendUnavailable, match=r"libamd_smi.so\) not found"):
        RocmBackend(0)


# ------------------------------------------------------------------ sampler and host
def test_auto_without_gpus_reports_both_reasons_per_field(monkeypatch):
    from pyrsmi import rocml as R

    monkeypatch.setattr(R, "rocm_lib", None)
    events = []
    s = TelemetrySampler(events.append, lambda: 0, backend="auto")
    sample = s.sample()
    s.stop()
    status = next(e for e in events if isinstance(e, TelemetryStatus))
    reason = status.unavailable["gpu_busy_pct"]
    assert "rocm: pyrsmi:" in reason and "nvml: NVML: NVML Shared Library Not Found" in reason
    assert set(status.unavailable) == {"gpu_mem_used_bytes", "gpu_mem_total_bytes", "gpu_busy_pct", "gpu_power_w",
                                       "gpu_temp_c", "gpu_sm_clock_mhz"}
    assert sample.gpu_busy_pct is None and sample.rss_bytes > 10 * 2**20 and sample.proc_cpu_pct is not None


def test_backend_none_still_samples_the_host():
    events = []
    s = TelemetrySampler(events.append, lambda: 0, backend="none")
    assert s.sample().rss_bytes > 0
    s.stop()
    assert "telemetry.backend = none" in next(e for e in events if isinstance(e, TelemetryStatus)).unavailable["gpu_busy_pct"]


def test_host_backend_failure_is_na_not_a_crash(monkeypatch):
    import psutil

    h = HostBackend()
    monkeypatch.setattr(h.proc, "memory_info", lambda: (_ for _ in ()).throw(psutil.NoSuchProcess(1)))
    out, failed = {}, {}
    h.read(out, failed)
    assert set(failed) == {"rss_bytes", "proc_cpu_pct", "sys_cpu_pct"} and failed["rss_bytes"].startswith("psutil:")


def test_sampler_thread_keeps_a_fixed_cadence_without_drift():
    """On an injected clock: each wait ends a little late (and one sample overruns by 2.5 periods);
    sample k is still taken at first + k x 20 ms, the overrun skips the ticks it missed instead of
    bursting, and lateness never accumulates."""
    clock = [0]
    late = iter([1_000_000, 3_000_000, 50_000_000] + [2_000_000] * 100)  # ns each wait overshoots
    waits = []

    def wait(timeout_s: float) -> bool:
        waits.append(timeout_s)
        clock[0] += int(timeout_s * 1e9) + next(late)
        return len(waits) >= 20  # then stop

    events = []
    s = TelemetrySampler(events.append, lambda: clock[0], backend="none", interval_ms=20,
                         mono_ns=lambda: clock[0], wait=wait)
    s.start()
    wait_until(lambda: len(waits) >= 20, what="the sampler's 20th wait")  # its thread then ends by itself
    s.stop()
    samples = [e for e in events if isinstance(e, TelemetrySample)]
    assert len(samples) == 20 and s.missed == 2  # the 50 ms overshoot cost two ticks
    first = samples[0].t_ns
    slots = [(smp.t_ns - first) / 20e6 for smp in samples]
    # every sample but the one taken when the long wait finally ended sits on the 20 ms grid (a
    # little after its slot); that one is late by its wait's overshoot, and the next is back on it
    off = [i for i, x in enumerate(slots) if not 0 <= x - int(x) < 0.2]
    assert off == [3] and slots[3] > 4
    assert [int(x) for x in slots[4:]] == list(range(6, 22))  # 2 ticks skipped, then one per period
    assert slots[-1] - int(slots[-1]) < 0.2  # lateness never accumulated


def test_synthetic_paced_session_reports_telemetry_per_run():
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report
    from ttftui.run.session import SessionRunner

    cfg = Config.model_validate({"run": {"iterations": 2, "warmup": 0}, "telemetry": {"interval_ms": 10},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 120}]})
    events = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test", pace=True, cost=CostModel.with_decode_rate(600)),
                  events.append).run()
    rep = build_report(fold(events))
    assert rep.telemetry is not None and rep.telemetry.n_samples >= 10
    assert rep.telemetry.model_memory.measured_rss_delta_bytes is not None
    for r in rep.runs:
        assert r.telemetry["rss_peak_bytes"] > 0 and r.telemetry["gpu_busy_mean_pct"] is None
    assert "rss_peak_bytes" in rep.summary["s"].metrics


def test_unpaced_synthetic_session_says_why_there_is_no_telemetry():
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report

    from .tui_support import synthetic_session

    rep = build_report(fold(synthetic_session(iterations=1, warmup=0)))
    assert rep.telemetry.n_samples == 0
    assert "virtual clock" in rep.telemetry.unavailable["rss_bytes"]


def test_telemetry_never_stops_a_session_even_if_a_backend_raises(monkeypatch):
    """A backend bug (an exception our wrappers do not expect) ends sampling, not the session."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.core.events import RunFinished, SessionFinished
    from ttftui.run.session import SessionRunner

    def boom(self, out, failed):
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(HostBackend, "read", boom)
    cfg = Config.model_validate({"run": {"iterations": 1, "warmup": 0}, "telemetry": {"interval_ms": 10},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 30}]})
    events = []
    runner = SessionRunner(cfg, lambda: SyntheticEngine(cfg, "t", pace=True, cost=CostModel.with_decode_rate(500)),
                           events.append)
    runner.run()
    assert runner.error is None
    assert any(isinstance(e, RunFinished) for e in events)
    assert events[-1].status == "completed" and isinstance(events[-1], SessionFinished)
    assert threading.active_count() < 10


def _metrics(ttft_ms: float, e2e_ms: float, n_out: int, prefill_samples: int | None, decode_samples: int | None):
    extra = {} if prefill_samples is None else {"prefill_samples": prefill_samples, "decode_samples": decode_samples}
    return made_up_run_metrics(ttft_ms=ttft_ms, e2e_ms=e2e_ms, n_output_tokens=n_out, extra=extra)


def test_a_phase_without_a_sample_says_why_instead_of_a_bare_null():
    from ttftui.analysis.metrics import telemetry_gaps

    short = telemetry_gaps(_metrics(12.0, 80.0, 8, None, None), 100)  # no sample in the whole run
    assert short == {"prefill": "prefill lasted 12.0 ms, less than the 100 ms between samples: no sample landed in it",
                     "decode": "decode lasted 68.0 ms, less than the 100 ms between samples: no sample landed in it"}
    late = telemetry_gaps(_metrics(450.0, 900.0, 8, 0, 4), 100)  # due 4 times in the prefill, none came
    assert list(late) == ["prefill"] and "the sampler fell behind" in late["prefill"]
    assert telemetry_gaps(_metrics(450.0, 900.0, 8, 4, 4), 100) == {}  # both sampled
    # a 12 ms prefill holds one 10 ms tick at least: none there is the sampler's lateness; one token, no decode
    assert list(telemetry_gaps(_metrics(12.0, 12.0, 1, 0, 0), 10)) == ["prefill"]
    assert telemetry_gaps(_metrics(12.0, 80.0, 8, 0, 0), None) == {}  # no sampler: nothing to explain


def test_the_report_and_the_panel_say_which_phase_was_too_short_to_sample():
    """A synthetic session sampled every 100 ms of its own clock, whose runs last about 60 ms: the
    runs with no sample in a phase say why in the report, and the telemetry panel says it for the
    last run."""
    from ttftui.core.config import Config
    from ttftui.measure.engine.synthetic import CostModel, SyntheticEngine
    from ttftui.analysis.reducer import fold
    from ttftui.report.build import build_report
    from ttftui.run.session import SessionRunner
    from ttftui.analysis.view import SessionView
    from ttftui.tui.telemetry_view import telemetry_text
    from ttftui.tui.themes import load_theme_or_default

    cfg = Config.model_validate({"run": {"iterations": 6, "warmup": 0}, "telemetry": {"interval_ms": 100},
                                 "scenarios": [{"name": "s", "prompt_tokens": 16, "max_tokens": 12}]})
    events = []
    SessionRunner(cfg, lambda: SyntheticEngine(cfg, "test", cost=CostModel.with_decode_rate(600)), events.append).run()
    state = fold(sampled_on_its_clock(events, 100))
    rep = build_report(state)
    assert rep.telemetry.n_samples > 0
    for r in rep.runs:
        t = r.telemetry or {}
        for phase, dur in (("prefill", r.ttft_ms), ("decode", r.e2e_ms - r.ttft_ms)):
            assert dur < 100  # every phase is shorter than the interval: a tick lands in it or it says why
            assert (phase in r.telemetry_gaps) == (not t.get(f"{phase}_samples")), r
            if phase in r.telemetry_gaps:
                assert "less than the 100 ms between samples: no sample landed in it" in r.telemetry_gaps[phase]
    assert any(r.telemetry_gaps for r in rep.runs) and any((r.telemetry or {}).get("prefill_samples") for r in rep.runs)
    text = telemetry_text(state, SessionView(state), load_theme_or_default("dark")[0], 60).plain
    last = rep.runs[-1]
    if last.telemetry_gaps:
        assert f"run {last.run_id}: " in text and "< 100 ms interval: not sampled" in text
    else:
        assert "not sampled" not in text
