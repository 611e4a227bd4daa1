"""GPU and host telemetry: a fixed-cadence sampler thread publishing ``TelemetrySample`` events.

Backends are probed once: AMD through pyrsmi (``pyrsmi.rocml``), NVIDIA through nvidia-ml-py
(``pynvml``), and the host through psutil (always). A missing library, no device, or a call that
starts failing mid-session turns *that field* into N/A with the reason, announced once in a
``TelemetryStatus`` event (again only when the set of unavailable fields changes), and sampling goes
on: telemetry never stops a session.

Timing: samples are stamped with the session clock (the engine's ``perf_counter_ns`` clock) so they
line up with run phases. The loop sleeps to absolute deadlines ``start + k × interval`` (no drift);
a deadline that has already passed is skipped and counted, never caught up in a burst.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
import time
from typing import Any, Callable, Iterator

import psutil

from ttftui.core import registry
from ttftui.core.events import DRIVER_FIELDS, GpuDriverSamples, TelemetrySample, TelemetryStatus

GPU_FIELDS = registry.sample_fields(side="gpu")
HOST_FIELDS = registry.sample_fields(side="host")


class BackendUnavailable(Exception):
    """This backend cannot be used at all (library missing, no device, init failed)."""


class _LastLogMessage(logging.Handler):
    """pyrsmi reports failures through ``logging.error`` and returns -1: keep the last message as
    the reason, and keep it off the terminal (stray stderr would tear the dashboard)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.last = record.getMessage()


def _optional(module: str, package: str) -> Any:
    """A GPU library, imported when its backend is probed (once per session): a missing one is
    BackendUnavailable naming the package to install, and that GPU's fields are N/A with it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"{package} is not installed ({e})") from None


class NvmlBackend:
    """NVIDIA through nvidia-ml-py's ``pynvml``."""

    name = "nvml"

    def __init__(self, index: int = 0):
        self.N = N = _optional("pynvml", "nvidia-ml-py")
        try:
            N.nvmlInit()
        except N.NVMLError as e:
            raise BackendUnavailable(f"NVML: {e}") from None
        try:
            count = N.nvmlDeviceGetCount()
            if index >= count:
                raise BackendUnavailable(f"NVML: no NVIDIA GPU with index {index} ({count} found)")
            self.handle = N.nvmlDeviceGetHandleByIndex(index)
            name = N.nvmlDeviceGetName(self.handle)
            self.gpu_name = name.decode() if isinstance(name, bytes) else str(name)
        except N.NVMLError as e:
            raise BackendUnavailable(f"NVML: {e}") from None
        self.errors = N.NVMLError
        # the driver's own sample buffer (nvmlDeviceGetSamples): field -> (sampling type, scale)
        self._driver_types = {
            "gpu_busy_pct": (N.NVML_GPU_UTILIZATION_SAMPLES, 1.0),
            "gpu_mem_busy_pct": (N.NVML_MEMORY_UTILIZATION_SAMPLES, 1.0),
            "gpu_power_w": (N.NVML_TOTAL_POWER_SAMPLES, 1e-3),  # mW
            "gpu_sm_clock_mhz": (N.NVML_PROCESSOR_CLK_SAMPLES, 1.0),
        }
        self._last_seen: dict[str, int] = {}
        self._empty_since: dict[str, float] = {}  # field -> since when its buffer has given nothing
        self._due: dict[str, float] = {}  # field -> when to read its buffer next (time.monotonic)
        self.driver_off: dict[str, str] = {}  # field -> why its buffer is not read

    def drain(self, force: bool = False) -> dict[str, list[tuple[int, float]]]:
        """The driver's samples taken since the last call, per field: (CPU timestamp in µs, value).

        Each field's buffer is read only when due (``force``: every one now): reading it costs
        driver time (more for utilization than for power; benchmarks/README.md), and the buffer keeps a
        few seconds, so a field is read again after ten of its periods, at least
        ``DRIVER_DRAIN_MIN_S`` and at most ``DRIVER_DRAIN_MAX_S`` later. A field whose buffer cannot
        be read, or that the driver keeps no samples of (none for ``DRIVER_SILENT_S``), is left out
        from then on, with the reason in ``driver_off``."""
        N = self.N
        out: dict[str, list[tuple[int, float]]] = {}
        now = time.monotonic()
        for f, (kind, scale) in self._driver_types.items():
            if f in self.driver_off or (not force and self._due.get(f, 0.0) > now):
                continue
            last = self._last_seen.get(f, 0)
            try:
                vtype, samples = N.nvmlDeviceGetSamples(self.handle, kind, last)
            except self.errors as e:
                if getattr(e, "value", None) != N.NVML_ERROR_NOT_FOUND:
                    self.driver_off[f] = f"NVML nvmlDeviceGetSamples: {e}"
                    continue
                vtype, samples = 0, []  # nothing new since ``last``
            attr = _NVML_VALUE_FIELD.get(int(vtype))
            if attr is None:
                self.driver_off[f] = f"NVML nvmlDeviceGetSamples: value type {vtype} not understood"
                continue
            got = [(int(s.timeStamp), float(getattr(s.sampleValue, attr)) * scale) for s in samples
                   if int(s.timeStamp) > last]
            wait = DRIVER_DRAIN_MIN_S
            if got:
                times = sorted(t for t, _ in got)
                if len(times) >= 2:  # ten of the driver's periods (µs) for this field
                    period_s = (times[-1] - times[0]) / (len(times) - 1) / 1e6
                    wait = min(max(10 * period_s, DRIVER_DRAIN_MIN_S), DRIVER_DRAIN_MAX_S)
                self._last_seen[f] = times[-1]
                self._empty_since.pop(f, None)
                out[f] = got
            elif f not in self._last_seen and now - self._empty_since.setdefault(f, now) >= DRIVER_SILENT_S:
                self.driver_off[f] = f"the driver kept no samples of it in {DRIVER_SILENT_S:g} s: not asked again"
            self._due[f] = now + wait
        return out

    def read(self, out: dict[str, Any], failed: dict[str, str]) -> None:
        N, h = self.N, self.handle

        def call(fields: tuple[str, ...], fn: Callable[[], tuple[Any, ...]]) -> None:
            try:
                values = fn()
            except self.errors as e:
                for f in fields:
                    failed[f] = f"NVML: {e}"
                return
            for f, v in zip(fields, values):
                out[f] = v

        call(("gpu_mem_used_bytes", "gpu_mem_total_bytes"), lambda: _mem(N.nvmlDeviceGetMemoryInfo(h)))
        call(("gpu_busy_pct",), lambda: (float(N.nvmlDeviceGetUtilizationRates(h).gpu),))
        call(("gpu_power_w",), lambda: (N.nvmlDeviceGetPowerUsage(h) / 1000.0,))
        call(("gpu_temp_c",), lambda: (float(N.nvmlDeviceGetTemperature(h, N.NVML_TEMPERATURE_GPU)),))
        call(("gpu_sm_clock_mhz",), lambda: (float(N.nvmlDeviceGetClockInfo(h, N.NVML_CLOCK_SM)),))

    def close(self) -> None:
        try:
            self.N.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutting down telemetry must never fail a session
            pass


# The driver keeps each field's samples at a period of its own, for a few seconds, and reading them
# costs CPU (benchmarks/bench_gpu_telemetry.py measures both; benchmarks/README.md has the figures).
# A field is read again after ten of its periods, within these bounds, and dropped when it gives
# nothing for DRIVER_SILENT_S.
DRIVER_DRAIN_MIN_S = 0.5
DRIVER_DRAIN_MAX_S = 2.0
DRIVER_SILENT_S = 3.0

# nvmlValueType_t -> the member of the nvmlValue_t union holding the value
_NVML_VALUE_FIELD = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _mem(info: Any) -> tuple[int, int]:
    return int(info.used), int(info.total)


@contextlib.contextmanager
def _real_stderr() -> Iterator[None]:
    """pyrsmi silences libdrm by dup2-ing ``sys.stderr.fileno()``; under the dashboard (Textual
    captures stderr) or a test runner that object has no file descriptor, so lend it the real one."""
    saved = sys.stderr
    try:
        saved.fileno()
    except (AttributeError, OSError, ValueError):
        if sys.__stderr__ is not None:
            sys.stderr = sys.__stderr__
    try:
        yield
    finally:
        sys.stderr = saved


class RocmBackend:
    """AMD through pyrsmi (``pyrsmi.rocml``). Its getters return -1 on failure and log the reason."""

    name = "rocm"

    def __init__(self, index: int = 0):
        self.R = rocml = _optional("pyrsmi.rocml", "pyrsmi")
        self.index = index
        self._log = _LastLogMessage()
        root = logging.getLogger()
        root.addHandler(self._log)
        try:
            with _real_stderr():
                rocml.smi_initialize()
        except Exception as e:  # noqa: BLE001 - pyrsmi raises its own ROCMLError_* and RuntimeError
            self.close()
            raise BackendUnavailable(f"pyrsmi: {e}") from None
        count = rocml.smi_get_device_count()
        if count <= index:
            self.close()
            raise BackendUnavailable(f"pyrsmi: no AMD GPU with index {index} ({max(count, 0)} found)")
        self.gpu_name = rocml.smi_get_device_name(index) or f"AMD GPU {index}"

    def read(self, out: dict[str, Any], failed: dict[str, str]) -> None:
        R, i = self.R, self.index

        def take(field: str, value: float | int, scale: float = 1.0) -> None:
            if value is None or value < 0:
                failed[field] = f"pyrsmi: {self._log.last or 'call failed (returned -1)'}"
            else:
                out[field] = value * scale if scale != 1.0 else value

        take("gpu_mem_used_bytes", R.smi_get_device_memory_used(i))
        take("gpu_mem_total_bytes", R.smi_get_device_memory_total(i))
        take("gpu_busy_pct", R.smi_get_device_utilization(i))
        take("gpu_power_w", R.smi_get_device_average_power(i))
        failed.setdefault("gpu_temp_c", "pyrsmi has no temperature reading")
        failed.setdefault("gpu_sm_clock_mhz", "pyrsmi has no SM clock reading (NVIDIA only)")

    driver_off = {f: "pyrsmi keeps no sample buffer: the sampler's own polls only (NVML's nvmlDeviceGetSamples "
                     "has no counterpart there)" for f in DRIVER_FIELDS}

    def close(self) -> None:
        logging.getLogger().removeHandler(self._log)
        try:
            self.R.smi_shutdown()
        except Exception:  # noqa: BLE001
            pass


class HostBackend:
    """The engine's process and the machine, through psutil (always on). ``pid``: the engine host's
    process when llama.cpp runs in one (its RSS holds the model), else this process."""

    def __init__(self, pid: int | None = None) -> None:
        self.psutil = psutil
        self.proc = psutil.Process(pid)
        self.proc.cpu_percent(None)  # prime: the first reading is relative to this call
        psutil.cpu_percent(None)

    def read(self, out: dict[str, Any], failed: dict[str, str]) -> None:
        try:
            out["rss_bytes"] = int(self.proc.memory_info().rss)
            out["proc_cpu_pct"] = float(self.proc.cpu_percent(None))
            out["sys_cpu_pct"] = float(self.psutil.cpu_percent(None))
        except Exception as e:  # noqa: BLE001 - psutil.Error and OSError alike
            for f in HOST_FIELDS:
                failed[f] = f"psutil: {e}"


def _driver_clock(newest_ns: int) -> Callable[[], int] | None:
    """The clock the driver stamps its samples with: the one whose now is just after the newest
    sample (NVML documents a CPU timestamp; which CPU clock is not said, so both are tried)."""
    best, best_lag = None, None
    for clock in (time.time_ns, time.monotonic_ns):
        lag = clock() - newest_ns
        if -1_000_000_000 < lag < 60_000_000_000 and (best_lag is None or abs(lag) < abs(best_lag)):
            best, best_lag = clock, lag
    return best


def probe_gpu(backend: str, index: int) -> tuple[Any | None, dict[str, str]]:
    """(backend or None, {backend name: why not}) for telemetry.backend = auto | rocm | nvml | none."""
    if backend == "none":
        return None, {"config": "telemetry.backend = none"}
    order = {"auto": ("rocm", "nvml"), "rocm": ("rocm",), "nvml": ("nvml",)}[backend]
    reasons: dict[str, str] = {}
    for name in order:
        try:
            return (RocmBackend(index) if name == "rocm" else NvmlBackend(index)), reasons
        except BackendUnavailable as e:
            reasons[name] = str(e)
    return None, reasons


class TelemetrySampler:
    """Samples at a fixed cadence in its own thread and publishes events; ``stop()`` ends it."""

    def __init__(self, publish: Callable[[Any], None], now_ns: Callable[[], int], *, backend: str = "auto",
                 interval_ms: float = 100.0, gpu_index: int = 0, pid: int | None = None,
                 mono_ns: Callable[[], int] = time.perf_counter_ns, wait: Callable[[float], bool] | None = None):
        self.publish = publish
        # the schedule's clock and its wait (True: stop now); tests inject both, so the cadence is
        # checked without depending on how busy the machine is
        self._mono_ns = mono_ns
        self._wait = wait
        self.now_ns = now_ns
        self.interval_ns = int(max(interval_ms, 10.0) * 1e6)
        self.gpu, why = probe_gpu(backend, gpu_index)
        self.backend_name = (self.gpu.name if self.gpu else "none") + "+psutil"
        self.host = HostBackend(pid)
        reason = "; ".join(f"{k}: {v}" for k, v in why.items()) if self.gpu is None else None
        self._static_na = {f: f"no GPU telemetry ({reason})" for f in GPU_FIELDS} if reason else {}
        self._announced: tuple[dict[str, str], dict[str, str]] | None = None
        # the driver's own sample buffer: its timestamps' clock, chosen at the first samples, and
        # where this sampler started on each candidate clock (older samples are not this session's)
        self._driver_clock: Callable[[], int] | None = None
        self._driver_start = {time.time_ns: time.time_ns(), time.monotonic_ns: time.monotonic_ns()}
        self._driver_failed: dict[str, str] = {}
        self._driver_dead = False
        self.n_driver_samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.n_samples = 0
        self.missed = 0
        self.cpu_s = 0.0  # thread CPU time spent sampling (the overhead we add)

    @property
    def gpu_name(self) -> str | None:
        return getattr(self.gpu, "gpu_name", None)

    def sample(self, mark: str | None = None) -> TelemetrySample:
        """One reading now (also used directly around model load, with ``mark``)."""
        values: dict[str, Any] = {}
        failed: dict[str, str] = dict(self._static_na)
        for backend, fields in ((self.gpu, GPU_FIELDS), (self.host, HOST_FIELDS)):
            if backend is None:
                continue
            try:
                backend.read(values, failed)
            except Exception as e:  # noqa: BLE001 - a backend bug must not stop the session
                for f in fields:
                    values.pop(f, None)
                    failed[f] = f"{type(e).__name__}: {e}"
        self._announce(failed)
        self.n_samples += 1
        return TelemetrySample(t_ns=self.now_ns(), mark=mark, **values)  # type: ignore[arg-type]

    def _driver_unavailable(self) -> dict[str, str]:
        return {**getattr(self.gpu, "driver_off", {}), **self._driver_failed}

    def _status(self, failed: dict[str, str], **final: Any) -> TelemetryStatus:
        return TelemetryStatus(t_ns=self.now_ns(), backend=self.backend_name, gpu_name=self.gpu_name,
                               interval_ms=self.interval_ns / 1e6, unavailable=dict(failed),
                               driver_unavailable=self._driver_unavailable(), **final)

    def _announce(self, failed: dict[str, str]) -> None:
        now = (failed, self._driver_unavailable())
        if now != self._announced:  # once per change, not once per sample
            self._announced = (dict(failed), dict(now[1]))
            self.publish(self._status(failed))

    def drain_driver(self, force: bool = False) -> None:
        """Publish the GPU driver's buffered samples taken since the last call (NVML only), each
        stamped on the session clock. Called at every tick (the backend reads the fields that are
        due), and once more for every field when sampling stops (``force``)."""
        drain = getattr(self.gpu, "drain", None)
        if drain is None or self._driver_dead:
            return
        try:
            got = drain(force)
        except Exception as e:  # noqa: BLE001 - a backend bug must not stop the session
            self._driver_failed = {f: f"{type(e).__name__}: {e}" for f in DRIVER_FIELDS}
            self._driver_dead = True  # not again
            return
        if not got:
            return
        if self._driver_clock is None:
            newest = max(t for samples in got.values() for t, _ in samples) * 1000
            self._driver_clock = _driver_clock(newest)
            if self._driver_clock is None:
                self._driver_failed = {f: f"the driver's timestamps ({newest // 1000} µs) are on no clock this "
                                          "process can read" for f in got}
                self._driver_dead = True
                return
        clock = self._driver_clock
        # the session clock minus the driver's, read back to back (the mean of two reads around one)
        a = clock()
        now = self.now_ns()
        b = clock()
        offset = now - (a + b) // 2
        start = self._driver_start[clock]
        for f, samples in got.items():
            keep = [(t * 1000, v) for t, v in samples if t * 1000 >= start]
            if keep:
                self.n_driver_samples += len(keep)
                self.publish(GpuDriverSamples(t_ns=now, field=f,  # type: ignore[arg-type]
                                              times_ns=tuple(t + offset for t, _ in keep),
                                              values=tuple(v for _, v in keep)))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="ttftui-telemetry", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        c0 = time.thread_time()
        mono = self._mono_ns
        wait = self._wait or self._stop.wait
        start = mono()
        k = 0
        try:
            while not self._stop.is_set():
                self.publish(self.sample())
                self.drain_driver()  # the driver's own buffer: the fields that are due
                k += 1
                deadline = start + k * self.interval_ns
                now = mono()
                if now > deadline:  # overran: skip the missed ticks instead of bursting
                    skipped = (now - deadline) // self.interval_ns + 1
                    self.missed += int(skipped)
                    k += int(skipped)
                    deadline = start + k * self.interval_ns
                self.cpu_s = time.thread_time() - c0
                if wait(max(deadline - mono(), 0) / 1e9):
                    break
        finally:
            self.cpu_s = time.thread_time() - c0

    def stop(self) -> None:
        """Stop sampling and publish the final status (sample count, missed ticks, our CPU time)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self.gpu is not None:
            if self._thread is None or not self._thread.is_alive():
                c0 = time.thread_time()
                self.drain_driver(force=True)  # what the driver sampled since it was last read
                self.cpu_s += time.thread_time() - c0
            self.gpu.close()
        self.publish(self._status(self._announced[0] if self._announced else {}, n_samples=self.n_samples,
                                  missed_ticks=self.missed, sampler_cpu_s=round(self.cpu_s, 6)))
