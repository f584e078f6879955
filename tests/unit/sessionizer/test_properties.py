"""Invariants of the sessionizer core over arbitrary event streams."""

from __future__ import annotations

from collections import defaultdict

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import DeadLetter, Event, EventType
from contracts.journeys import PhaseTransition, SessionSnapshot
from contracts.phases import DEFAULT_PHASE_MODEL
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.rules import JourneyRules
from tests.support.streams import streams


def engine() -> JourneyEngine:
    return JourneyEngine(JourneyRules(DEFAULT_PHASE_MODEL))


def run(events: list[Event], e: JourneyEngine) -> list[bytes]:
    return [output.to_bytes() for event in events for output in e.process(event)]


@settings(max_examples=150, deadline=None)
@given(streams())
def test_the_same_stream_gives_the_same_outputs(events: list[Event]) -> None:
    assert run(events, engine()) == run(events, engine())


@settings(max_examples=150, deadline=None)
@given(streams(), st.data())
def test_a_restart_from_saved_state_changes_nothing(
    events: list[Event], data: st.DataObject
) -> None:
    split = data.draw(st.integers(0, len(events)))
    before = engine()
    head = run(events[:split], before)
    after = engine()
    after.restore_state(orjson.loads(orjson.dumps(before.export_state())))
    assert head + run(events[split:], after) == run(events, engine())


@settings(max_examples=150, deadline=None)
@given(streams())
def test_the_furthest_phase_of_a_journey_never_goes_back(events: list[Event]) -> None:
    e = engine()
    furthest: dict[str, int] = {}
    for event in events:
        for output in e.process(event):
            if isinstance(output, PhaseTransition):
                position = DEFAULT_PHASE_MODEL.index(output.furthest_phase)
                assert position >= furthest.get(output.journey_id, 0)
                furthest[output.journey_id] = position


@settings(max_examples=150, deadline=None)
@given(streams())
def test_every_accepted_event_is_counted_in_exactly_one_session(events: list[Event]) -> None:
    e = engine()
    closed: dict[str, int] = defaultdict(int)
    late = 0
    for event in events:
        for output in e.process(event):
            if isinstance(output, SessionSnapshot) and output.closed:
                closed[output.session_id] = output.event_count
            late += isinstance(output, DeadLetter)
    still_open = sum(
        journey.session.events
        for journey in e.journeys.journeys.values()
        if not journey.session.closed
    )
    unique = {event.event_id: event for event in events}.values()
    aliases = sum(1 for event in unique if event.type is EventType.ALIAS)
    accepted = len(unique) - aliases - late
    assert sum(closed.values()) + still_open == accepted


@settings(max_examples=100, deadline=None)
@given(streams())
def test_a_retried_event_is_dropped(events: list[Event]) -> None:
    unique = list({event.event_id: event for event in events}.values())
    retried = [copy for event in unique for copy in (event, event)]
    assert run(retried, engine()) == run(unique, engine())
