"""What llama.cpp's system info says about a build and a CPU, readable without loading llama.cpp.

Kept apart from :mod:`ttftui.measure.engine.llama` (which imports ``llama_cpp``) so that the parent process
of the engine host can interpret what the host reports without loading native llama.cpp itself.
"""

from __future__ import annotations

import re


def build_kind(info: str, offload: bool) -> str:
    """Which backend this llama.cpp build has: CUDA / HIP / Metal / Vulkan / SYCL / CPU."""
    for key, name in (("CUDA", "CUDA"), ("ROCm", "HIP"), ("HIP", "HIP"), ("Metal", "Metal"),
                      ("METAL", "Metal"), ("Vulkan", "Vulkan"), ("SYCL", "SYCL")):
        if key in info:
            return name
    return "GPU (unknown backend)" if offload else "CPU"


def has_amx(info: str) -> bool:
    """Whether llama.cpp's CPU backend reports AMX (Intel Sapphire Rapids and later)."""
    return re.search(r"AMX_INT8\s*=\s*1", info) is not None


def repack_choice(setting: str, info: str) -> tuple[bool, str]:
    """(repack weights into llama.cpp's extra CPU buffer types?, why). ``auto`` turns repacking off
    where the build reports AMX_INT8 = 1: there llama.cpp's AMX path segfaults at the first prefill
    of 32 or more tokens (llama.cpp issue 20824, open as of 2026-11)."""
    if setting == "on":
        return True, "model.repack = on"
    if setting == "off":
        return False, "model.repack = off"
    if has_amx(info):
        return False, ("auto: off because this CPU has AMX (AMX_INT8 = 1), where llama.cpp's repacked AMX "
                       "path crashes at the first prefill (llama.cpp issue 20824)")
    return True, "auto: on (llama.cpp's default; no AMX on this CPU)"
