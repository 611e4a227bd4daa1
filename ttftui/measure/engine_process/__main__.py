"""Entry point of the engine host process: ``python -m ttftui.measure.engine_process KIND`` (KIND: llama | synthetic).

The first thing this process does, before any module that loads native code (numpy and its
OpenBLAS, pydantic-core, psutil), is import ``llama_cpp`` when KIND is llama: a CUDA build of
llama.cpp loaded after numpy segfaults inside ``llama_model_load_from_file`` (seen with
llama-cpp-python 0.3.36 and numpy 2.5). ``tests/test_host.py`` pins the order.

Before even that, while this process has one thread: it ties its life to its parent's (on Linux
the kernel kills it with SIGKILL when the parent dies, even when it is stopped) and takes the
niceness its parent asks for, which every thread started later (llama.cpp's included) inherits.
"""

import os
import signal
import sys

from ttftui.measure.engine_process import NICE_ENV, PARENT_ENV  # constants; the package imports nothing

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """On Linux, SIGKILL from the kernel when the parent dies: SIGKILL because a stopped process
    (SIGSTOP, Ctrl-Z) acts on no other signal until it is continued. The parent may have died
    before this line ran (then nothing would ever come): checked after it, by the parent's pid."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes  # libffi: native, but loaded by llama_cpp itself anyway

            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl here: the heartbeat's parent check still holds
            pass
    parent = os.environ.get(PARENT_ENV)
    if parent and parent.isdigit() and os.getppid() != int(parent):
        os._exit(0)  # orphaned before we began: nobody is left to read what we would measure


def _renice() -> dict:
    """Take the niceness the parent asked for (``NICE_ENV``), with this process's only thread, so
    that every thread started later inherits it (on Linux niceness is per thread). Lowering it
    needs CAP_SYS_NICE or RLIMIT_NICE: when that is refused the parent is told and warns."""
    wanted = os.environ.get(NICE_ENV, "")
    try:
        before = os.getpriority(os.PRIO_PROCESS, 0)
    except (OSError, AttributeError):  # no such call on this platform
        return {}
    out = {"before": before, "wanted": None, "now": before, "error": None}
    if not wanted.lstrip("-").isdigit():
        return out
    out["wanted"] = want = int(wanted)
    if before != want:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, want)
        except OSError as e:
            out["error"] = e.strerror or str(e)
        out["now"] = os.getpriority(os.PRIO_PROCESS, 0)
    return out


def _main() -> None:
    _die_with_parent()
    nice = _renice()
    kind = sys.argv[1] if len(sys.argv) > 1 else "llama"
    import_error = None
    # Native libraries already loaded before llama.cpp (must be none; the parent can check).
    before = [m for m in ("numpy", "pydantic_core", "psutil", "scipy") if m in sys.modules]
    if kind == "llama":
        try:
            import llama_cpp  # noqa: F401 - the first native library of this process, on purpose
        except Exception as e:  # noqa: BLE001 - reported to the parent, which decides what to do
            import_error = f"{type(e).__name__}: {e}"
    from ttftui.measure.engine_process.child import serve  # after llama_cpp, on purpose

    sys.exit(serve(kind, import_error, loaded_before=before, nice=nice))


if __name__ == "__main__":
    _main()
