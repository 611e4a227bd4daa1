"""Start llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server`` arguments) with
ttftui's repack default: on a CPU with AMX, llama.cpp's repacked AMX path crashes at the first
prefill and the server's settings cannot turn repacking off, so its default model parameters are
patched here first (the same rule as the engine's ``model.repack = auto``)."""

from __future__ import annotations

import llama_cpp  # first: the native library before numpy (see ttftui.measure.engine_process.__main__)
import llama_cpp.llama_cpp as L

from ttftui.measure.engine.llama_facts import repack_choice

_info = L.llama_print_system_info().decode("utf-8", "replace")
_repack, _why = repack_choice("auto", _info)
if not _repack:
    _default = L.llama_model_default_params

    def _params():  # type: ignore[no-untyped-def]
        p = _default()
        p.use_extra_bufts = False
        return p

    L.llama_model_default_params = _params
    llama_cpp.llama_model_default_params = _params

if __name__ == "__main__":
    from llama_cpp.server.__main__ import main

    main()
