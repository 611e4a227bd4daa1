"""Metric definitions, from the one table of metrics (:mod:`ttftui.core.registry`). Shown by ``--help``,
embedded in every JSON report and copied into the README; a test keeps the README's table in step."""

from ttftui.core.registry import definitions

DEFINITIONS: dict[str, str] = definitions()


def definitions_text() -> str:
    width = max(len(k) for k in DEFINITIONS)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in DEFINITIONS.items())
