"""Entry point of the engine host process: ``python -m ttftui.measure.engine_process KIND`` (KIND: llama | synthetic).

The first thing this process does, before any module that loads native code (numpy and its
OpenBLAS, pydantic-core, psutil), is import ``llama_cpp`` when KIND is llama: a CUDA build of
llama.cpp loaded after numpy segfaults inside ``llama_model_load_from_file`` (seen with
llama-cpp-python 0.3.36 and numpy 2.5). ``tests/test_host.py`` pins the order.
"""

import sys


def _main() -> None:
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

    sys.exit(serve(kind, import_error, loaded_before=before))


if __name__ == "__main__":
    _main()
