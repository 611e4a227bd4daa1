"""ttftui: a terminal profiler for the time to first token (TTFT) of local GGUF models."""

__version__ = "0.2.0"
