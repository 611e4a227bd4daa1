"""What a measurement can be, and text that UTF-8 can carry: the checks made where numbers and text
from elsewhere (a recording, a server's own account) enter ttftui.

Measurements. The events' field names say what a number is (``ttftui.core.events``): ``t_ns`` and
``times_ns`` are points on the session clock; every other numeric field whose name ends in ``_ns``,
``_ms`` or ``_s`` is a duration in that unit. Nothing that ttftui measures is negative, not a number,
or longer than :data:`MAX_DURATION_NS` (a year), and no session lasts longer than that either.
:func:`problem` says why one value cannot be a measurement; :func:`check_event` applies it to every
such field of an event, nested facts included, driven by those names (a new ``*_ns`` field is
checked without being listed here), and nulls what was impossible where the field may be null.

Text. A Python string may hold lone surrogates (a JSON ``"\\ud800"`` escape from a server makes
one); UTF-8 cannot encode them, so writing one fails. :func:`utf8_text` and :func:`utf8_event` give
what a file can hold: pairs joined, a lone surrogate replaced by U+FFFD.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

NS_PER = {"_ns": 1, "_ms": 1_000_000, "_s": 1_000_000_000}  # a duration's unit, by the end of its name
MAX_DURATION_NS = 365 * 24 * 3600 * 1_000_000_000  # a year: longer than any session, let alone a run
TIMESTAMPS = frozenset({"t_ns", "times_ns"})  # points on the session clock, not durations

Kind = Literal["duration", "timestamp"]


def field_kind(name: str) -> tuple[Kind, int] | None:
    """What a numeric field is, by its name: ("timestamp", 1), ("duration", ns per unit) or None (a
    count, a percentage, an id: not checked here)."""
    if name in TIMESTAMPS:
        return "timestamp", 1
    for suffix, ns in NS_PER.items():
        if name.endswith(suffix):
            return "duration", ns
    return None


def _shown(value: float, ns_per: int) -> str:
    ms = value * ns_per / 1e6
    if abs(ms) < 1e-3:
        return f"{value * ns_per:g} ns"
    return f"{ms:,.6g} ms" if abs(ms) < 1e7 else f"{ms / 86_400_000:,.4g} days"


def problem(name: str, value: Any) -> str | None:
    """Why ``value`` cannot be a measured ``name`` (one phrase: "-250 ms: a negative duration"), or
    None when it can (or when the name is not a time). Fields ending in _ns/_ms/_s are durations
    (non-negative, finite, at most a year); ``t_ns``/``times_ns`` are session times (finite, within a
    year of the session's start)."""
    kind = field_kind(name)
    if kind is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    what, ns_per = kind
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value}: not a number of any size"
    if what == "duration" and value < 0:
        return f"{_shown(value, ns_per)}: a negative duration"
    if abs(value) * ns_per > MAX_DURATION_NS:
        if what == "duration":
            return f"{_shown(value, ns_per)}: longer than a year"
        return f"{_shown(value, ns_per)} from the session's start: more than a year"
    return None


@dataclass(frozen=True)
class Problem:
    """An impossible value in an event: ``where`` (``ttft_ns``, ``remote.end_ns``,
    ``prefill_chunks_ns[2]``), ``why`` (from :func:`problem`) and whether it was made null
    (``nulled``; False: the field cannot be null and the event cannot stand)."""

    where: str
    why: str
    nulled: bool

    def __str__(self) -> str:
        return f"{self.where} = {self.why}"


# (field name, kind or None, may be null, nested dataclass type or None, is a tuple of numbers)
_Spec = tuple[str, "tuple[Kind, int] | None", bool, "type | None", bool]
_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _unwrap(hint: Any) -> tuple[Any, bool]:
    """(the type inside Optional/Annotated, whether None is allowed)."""
    optional = False
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(hint))
            if len(args) != 1:
                return hint, optional
            hint = args[0]
        else:
            return hint, optional


def _specs(cls: type) -> tuple[_Spec, ...]:
    specs = _SPECS.get(cls)
    if specs is None:
        hints = typing.get_type_hints(cls, include_extras=True)
        out: list[_Spec] = []
        for f in dataclasses.fields(cls):
            inner, optional = _unwrap(hints[f.name])
            if isinstance(inner, type) and dataclasses.is_dataclass(inner):
                out.append((f.name, None, optional, inner, False))
                continue
            kind = field_kind(f.name)
            if kind is None:
                continue
            is_tuple = typing.get_origin(inner) is tuple
            out.append((f.name, kind, optional, None, is_tuple))
        specs = _SPECS[cls] = tuple(out)
    return specs


# Relations between two fields of one event that a measurement cannot break: (smaller, larger).
ORDERED: dict[str, tuple[tuple[str, str], ...]] = {
    "RunFinished": (("ttft_ns", "e2e_ns"),),  # the first token cannot come after the run's end
}

_FATAL = object()


def check_event(ev: Any) -> tuple[Any, list[Problem]]:
    """``ev`` with every impossible time in it made null where the field may be null (an optional
    field, or else the innermost optional part that holds it, e.g. a run's ``llama_perf``), and the
    problems found. When an impossible value sits where nothing may be null (a run's ``ttft_ns``, a
    token's ``dt_ns``, a ``t_ns``), the event is returned as None: it cannot stand as measured."""
    if not dataclasses.is_dataclass(ev) or isinstance(ev, type):
        return ev, []
    problems: list[Problem] = []
    out = _check(ev, "", problems)
    return (None if out is _FATAL else out), problems


def _check(obj: Any, prefix: str, problems: list[Problem]) -> Any:
    changes: dict[str, Any] = {}
    for name, kind, optional, nested, is_tuple in _specs(type(obj)):
        v = getattr(obj, name)
        if v is None:
            continue
        where = prefix + name
        if nested is not None:
            start = len(problems)
            new = _check(v, where + ".", problems)
            if new is _FATAL:
                if not optional:
                    return _FATAL
                problems[start:] = [dataclasses.replace(p, nulled=True) for p in problems[start:]]
                changes[name] = None
            elif new is not v:
                changes[name] = new
            continue
        if is_tuple:
            bad = next(((i, why) for i, x in enumerate(v) if (why := problem(name, x)) is not None), None)
            if bad is not None:
                problems.append(Problem(f"{where}[{bad[0]}]", bad[1], optional))
                if not optional:
                    return _FATAL
                changes[name] = None
            continue
        why = problem(name, v)
        if why is not None:
            problems.append(Problem(where, why, optional))
            if not optional:
                return _FATAL
            changes[name] = None
    for small, large in ORDERED.get(type(obj).__name__, ()):
        a, b = changes.get(small, getattr(obj, small)), changes.get(large, getattr(obj, large))
        if a is not None and b is not None and a > b:
            problems.append(Problem(prefix + large, f"{_shown(b, 1)}: shorter than {small} ({_shown(a, 1)})", False))
            return _FATAL
    return dataclasses.replace(obj, **changes) if changes else obj


# ---------------------------------------------------------------------------------------- text
def utf8_text(text: str) -> str:
    """``text`` as UTF-8 can hold it: surrogate pairs joined into their character, a lone surrogate
    replaced by U+FFFD. The same string when it already encodes (the common case, checked first)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def utf8_value(v: Any) -> Any:
    """:func:`utf8_text` on every string in ``v`` (dicts, lists, tuples and dataclasses walked);
    ``v`` itself when nothing changed."""
    if isinstance(v, str):
        return utf8_text(v)
    if isinstance(v, (list, tuple)):
        out = [utf8_value(x) for x in v]
        if all(a is b for a, b in zip(out, v)):
            return v
        return type(v)(out) if isinstance(v, list) else tuple(out)
    if isinstance(v, dict):
        items = [(utf8_value(k), utf8_value(x)) for k, x in v.items()]
        if all(k is k0 and x is x0 for (k, x), (k0, x0) in zip(items, v.items())):
            return v
        return dict(items)
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return utf8_event(v)
    return v


def utf8_event(ev: Any) -> Any:
    """``ev`` with :func:`utf8_text` applied to every string in it, nested facts included."""
    changes = {}
    for f in dataclasses.fields(ev):
        v = getattr(ev, f.name)
        c = utf8_value(v)
        if c is not v:
            changes[f.name] = c
    return dataclasses.replace(ev, **changes) if changes else ev
