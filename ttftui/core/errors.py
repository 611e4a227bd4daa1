"""Errors a user can cause, each with its own exit code.

Every failure that bad input can provoke is raised as a :class:`TtftuiError` subclass. The CLI
catches them at the top, prints ``ttftui: <message>`` on one line and exits with the class's code,
so a script (or CI) can tell *what* went wrong from the exit status alone. The table below is the
single source of truth; the README's exit-code table is generated from it (see ``exit_code_table``).
"""

from __future__ import annotations


class TtftuiError(Exception):
    """Base class: a one-line, user-facing problem with a distinct exit code."""

    exit_code = 70
    label = "internal error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split())


class GateFailed(TtftuiError):
    exit_code = 1
    label = "a threshold rule or regression gate failed (not an error)"


class ConfigError(TtftuiError):
    exit_code = 2
    label = "bad config file, bad option or bad value (zero/negative counts included)"


class ModelNotFound(TtftuiError):
    exit_code = 3
    label = "model file missing (or the demo model package is not installed)"


class ModelNotGGUF(TtftuiError):
    exit_code = 4
    label = "model file is not a GGUF file"


class ModelCorrupt(TtftuiError):
    exit_code = 5
    label = "GGUF file truncated or corrupt"


class ModelLoadFailed(TtftuiError):
    exit_code = 6
    label = "llama.cpp could not load the model"


class PromptTooLong(TtftuiError):
    exit_code = 7
    label = "prompt_tokens + max_tokens exceeds the context (n_ctx), or the prompt is empty"


class UnknownScenario(TtftuiError):
    exit_code = 8
    label = "a --scenario name that the config does not define"


class OutputNotWritable(TtftuiError):
    exit_code = 9
    label = "the output path (-o, --record) cannot be written"


class RecordingNotFound(TtftuiError):
    exit_code = 10
    label = "recording file missing or unreadable"


class NotARecording(TtftuiError):
    exit_code = 11
    label = "file is not a ttftui recording (or is empty)"


class RecordingTooNew(TtftuiError):
    exit_code = 12
    label = "recording written by a newer schema version"


class RecordingCorrupt(TtftuiError):
    exit_code = 13
    label = "corrupt line in a recording under --strict"


class ReportError(TtftuiError):
    exit_code = 14
    label = ("a report given to compare/--baseline is missing, not a ttftui report, malformed or incompatible, or "
             "cannot answer a --max-regression gate")


class EngineFailed(TtftuiError):
    exit_code = 16
    label = "the engine failed during a run (llama.cpp returned an error)"


class EngineCrash(TtftuiError):
    exit_code = 17
    label = ("the engine process crashed (native fault, killed, or exited); completed runs, the report and "
             "the recording are kept")

    def __init__(self, message: str, event: object = None):
        super().__init__(message)
        self.event = event  # the EngineCrashed event that says where it happened


class ServerFailed(TtftuiError):
    exit_code = 18
    label = "no request to the server succeeded (every run failed: refused, timed out, HTTP error, bad stream)"


class ServerLost(TtftuiError):
    exit_code = 19
    label = ("the server was lost mid-session (after a success, server.lost_after requests in a row got no answer "
             "and neither did GET /models); the runs so far are kept, requests in flight fail with the reason, no "
             "more are sent")


class Interrupted(TtftuiError):
    exit_code = 130
    label = "interrupted by Ctrl-C (SIGINT); completed runs are kept"


class Terminated(TtftuiError):
    exit_code = 143
    label = "terminated by SIGTERM; completed runs are kept"


def all_error_classes() -> list[type[TtftuiError]]:
    """Every concrete error class, ordered by exit code."""
    seen: list[type[TtftuiError]] = []
    stack = list(TtftuiError.__subclasses__())
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return sorted(seen, key=lambda c: c.exit_code)


def exit_code_table() -> str:
    """Markdown table of exit codes (kept in the README; a test checks they agree)."""
    entries = [(c.exit_code, c.label) for c in all_error_classes()]
    entries.append((TtftuiError.exit_code, f"{TtftuiError.label}: a bug; please report it"))
    rows = ["| code | meaning |", "|---|---|", "| 0 | success |"]
    rows += [f"| {code} | {label} |" for code, label in sorted(entries)]
    return "\n".join(rows)
