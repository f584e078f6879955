"""Invariants of the sessionizer core over arbitrary event streams."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.events import DeadLetter, Event, EventType
from contracts.journeys import PhaseTransition, SessionSnapshot
from contracts.phases import DEFAULT_PHASE_MODEL
from services.sessionizer.engine import JourneyEngine
from services.sessionizer.identities import DEDUP_WINDOW
from services.sessionizer.rules import JourneyRules
from tests.unit.factories import make_event

NAMES = [
    "Product Viewed",
    "Products Searched",
    "Product Added",
    "Checkout Started",
    "Order Completed",
    "Product Reviewed",
    "Newsletter Opened",
]
VISITORS = ["phone", "laptop", "tablet"]
CUSTOMERS = [None, None, "alice", "bob"]


@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    """Streams with gaps from seconds to weeks, events out of order, logins, aliases and
    retried (duplicate) events."""
    events: list[Event] = []
    originals: list[Event] = []  # the events that are not retries
    clock = timedelta(0)
    for _ in range(draw(st.integers(1, 40))):
        if events and draw(st.integers(0, 9)) == 0:
            # A retry of a recent event: ids are remembered for a device's last DEDUP_WINDOW
            # events, and a retry comes within seconds, not after the device's next 16.
            events.append(draw(st.sampled_from(originals[-DEDUP_WINDOW:])))
            continue
        step = draw(st.sampled_from([5, 60, 600, 1700, 2000, 7200, 86_400, 20 * 86_400]))
        clock += timedelta(seconds=step)
        skew = timedelta(seconds=draw(st.sampled_from([0, 0, 0, -300, -5000])))
        visitor = draw(st.sampled_from(VISITORS))
        user = draw(st.sampled_from(CUSTOMERS))
        kind = draw(st.sampled_from(["page", "track", "track", "identify", "alias"]))
        if kind == "alias":
            events.append(
                make_event("alias", visitor=None, user_id=user or "alice", previous_id=visitor,
                           at=clock + skew)
            )  # fmt: skip
        elif kind == "identify":
            events.append(make_event("identify", visitor=visitor, user_id=user or "bob", at=clock))
        elif kind == "page":
            events.append(make_event("page", visitor=visitor, user_id=user, at=clock + skew))
        elif user and draw(st.integers(0, 4)) == 0:  # a server-side event: no device id
            events.append(make_event("track", "Order Completed", visitor=None, user_id=user,
                                     at=clock))  # fmt: skip
        else:
            name = draw(st.sampled_from(NAMES))
            events.append(make_event("track", name, visitor=visitor, user_id=user, at=clock + skew))
        originals.append(events[-1])
    return events


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
