"""The engine host's short way to write a phase's event: byte for byte what the general one writes."""

from __future__ import annotations

import dataclasses

import pytest

from hypothesis import given
from hypothesis import strategies as st

from ttftui.core.events import PhaseTimed, PhaseName, event_from_json, event_to_json, phase_to_json

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
PHASES = st.sampled_from(PhaseName.__args__)  # type: ignore[attr-defined]


@given(t=INT64, rid=INT64, phase=PHASES, d=INT64, chunk=st.none() | INT64, n=st.none() | INT64)
def test_a_phase_event_is_written_as_the_general_serializer_writes_it(t, rid, phase, d, chunk, n):
    ev = PhaseTimed(t_ns=t, run_id=rid, phase=phase, duration_ns=d, chunk=chunk, n_tokens=n)
    line = phase_to_json(ev)
    assert line == event_to_json(ev)
    assert event_from_json(line) == ev  # and read back as the same event


@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings")  # (what it says of a bool where an int belongs)
def test_what_is_not_a_plain_phase_event_goes_the_general_way():
    ev = PhaseTimed(t_ns=1, run_id=2, phase="tokenize", duration_ns=3)
    odd = [dataclasses.replace(ev, phase='to"ken'), dataclasses.replace(ev, chunk=True),  # type: ignore[arg-type]
           dataclasses.replace(ev, n_tokens=1.5)]  # type: ignore[arg-type]
    for e in odd:
        assert phase_to_json(e) == event_to_json(e)
