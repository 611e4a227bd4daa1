"""The engine host: llama.cpp in a process of its own.

A profiler must outlive what it profiles. llama.cpp is native code that can crash (its AMX path on
some Xeons segfaults at the first prefill; a CUDA build loaded after numpy segfaults at model load),
and in-process it shares the GIL with the dashboard. So the engine runs in a child process
(:mod:`.__main__` → :mod:`.child`) that imports ``llama_cpp`` before any other native library and
stamps every time itself on the machine's monotonic clock, which the parent shares; the parent
(:mod:`.proxy`) sees the same typed events as an in-process engine would, through a pipe, and turns
the child's death into an ``EngineCrashed`` event instead of its own.

This package's ``__init__`` imports nothing, on purpose: ``python -m ttftui.measure.engine_process``
runs it before ``__main__``, which must be first to load native code.
"""

# What the parent tells the child in its environment (constants only: this module imports nothing).
PARENT_ENV = "TTFTUI_HOST_PARENT"  # the parent's pid: a child whose parent is already gone exits at once
NICE_ENV = "TTFTUI_HOST_NICE"  # the niceness the child runs at (set by the parent; see __main__)
HEARTBEAT_ENV = "TTFTUI_HOST_HEARTBEAT_S"  # seconds between the child's heartbeats
