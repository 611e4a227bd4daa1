"""Layer 3, what takes measurements: engines (llama.cpp, synthetic), the engine process that
isolates llama.cpp, the remote client for OpenAI-compatible servers, telemetry samplers, prompts and
GGUF facts.

This package's ``__init__`` imports nothing, on purpose: the engine process
(``python -m ttftui.measure.engine_process``) passes through it before it loads llama.cpp, which must
be the first native library of that process."""
